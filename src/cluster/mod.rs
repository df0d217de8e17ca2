//! Several nodes on one PostgreSQL, acting as one service, with nothing but PostgreSQL between
//! them. On SQLite there is one node and none of this runs.
//!
//! * [`notify`] — every room event reaches every node (LISTEN/NOTIFY); a lost listener
//!   resynchronises like a lagged subscriber.
//! * [`leader`] — one node at a time runs each chat adapter and the housekeeping sweeps,
//!   elected with advisory locks; fail-over within about 10 s.
//! * [`proxy`] — a room's page sockets (and so its signaling and SFU media) live on the room's
//!   home node, whichever node the browser reached; chat webhooks reach the adapter's leader.
//!
//! The rest lives where it belongs: heartbeats, homes, retirement and adapter state in the
//! store (`store::nodes`), the database's clock in [`crate::clock`], the wiring in
//! [`crate::daemon`].

pub mod leader;
pub mod notify;
pub mod proxy;

use std::time::Duration;

/// How often a node beats (and follows the database's clock).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// A node silent this long is gone: its sockets are dropped, its rooms move.
pub const NODE_STALE: Duration = Duration::from_secs(15);
