//! # callbridge — call links with live join cards
//!
//! A user types `/call` in a chat; the bridge mints an unguessable room link, posts a join
//! card, keeps it current with who is in, and lets the host lock the room. The link opens a
//! real audio/video room served by this daemon. A tour of the crate:
//!
//! * [`config`] — the TOML file, typed; secrets from the environment; [`policy`] — per-chat
//!   policy and gateways (`[[chats]]`, `[[gateways]]`).
//! * [`ids`] — room ids and tokens from a CSPRNG; hashing and constant-time comparison.
//! * [`identity`] — personal links: a chat vouches for a joiner's name, sealed with HMAC.
//! * [`room`] — the domain vocabulary: requests, admissions, refusals, views.
//! * [`store`] — SQLite or PostgreSQL; every rule that must hold under concurrency runs in a
//!   transaction there (admission, lock, end, remove, knocks, presence).
//! * [`events`] — every room change, published after it commits.
//! * [`service`] — `RoomService`, the one door to rooms for the web, the CLI and chat commands.
//! * [`bridge`] — chat commands → `RoomService` → join cards; the `CardUpdater` keeps them current.
//! * [`live`] — connected room pages on this node: signaling relay and live updates;
//!   [`signaling`] — the room socket's messages, typed.
//! * [`telemetry`] — Prometheus metrics on a listener of their own (`[metrics] listen`).
//! * [`turn`] — TURN credentials that expire, for admitted participants only.
//! * [`web`] — axum: pages, join gate, room socket, REST API, OpenAPI.
//! * [`cluster`] — several nodes on one PostgreSQL: events across nodes, one leader per chat
//!   adapter, rooms' home nodes.
//! * [`deployment`] — what a valid config can still get wrong for users once deployed;
//!   [`doctor`] — what only the world can say (database, bots, ports, TURN).
//! * [`daemon`] — wiring, background work and ordered shutdown; [`cli`] — the command line;
//!   [`logging`] — logs with every configured secret masked; [`private_files`] — the data
//!   directory for the daemon's user alone.

pub mod bridge;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod deployment;
pub mod doctor;
pub mod events;
pub mod identity;
pub mod ids;
pub mod live;
pub mod logging;
pub mod policy;
pub mod private_files;
pub mod room;
pub mod service;
pub mod sfu;
pub mod signaling;
pub mod store;
pub mod telemetry;
pub mod turn;
pub mod web;
