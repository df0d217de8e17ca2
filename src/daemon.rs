//! The daemon's lifecycle: wire the parts, serve, and stop in order.
//!
//! Every configured chat adapter is built from its settings and started the same way, in one
//! loop ([`Adapters`]); the web server mounts the webhook routes they offer.
//!
//! With PostgreSQL the node joins its deployment (see [`crate::cluster`]): each adapter runs
//! only while this node leads it, and the sweeps only while it leads housekeeping. On SQLite
//! it is the only node and leads everything.
//!
//! Shutdown order: stop accepting and finish in-flight requests; tell every room page why it
//! closes and stop timers; stop the chat adapters and their bridges; stop the background
//! workers (admission writers, housekeeping, dispatcher, elections); with PostgreSQL, retire
//! the node (its people are marked left at once); stop the event link to other nodes; close
//! the database pools. Each wait is bounded.

use crate::bridge::BridgeSettings;
use crate::bridge::adapters::Adapters;
use crate::cluster::leader;
use crate::cluster::proxy::ToLeader;
use crate::clock::Clock;
use crate::config::{Config, Secret};
use crate::live::{Live, run_dispatcher};
use crate::service::RoomService;
use crate::sfu::Sfu;
use crate::web::{AppState, Shared, app};
use anyhow::Context;
use callbridge_chat::{AdapterSettings, BuildContext, Env, Platform, SettingsError};
use governor::{Quota, RateLimiter};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long shutdown waits for each stage.
const STAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running daemon.
pub struct Daemon {
    /// The address the web server listens on.
    pub addr: SocketAddr,
    pub state: AppState,
    /// The chat adapters: each can be stopped and started on its own.
    pub adapters: Adapters,
    stop_server: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    stop_workers: CancellationToken,
    workers: TaskTracker,
}

impl Daemon {
    /// Connects the store, starts the workers and binds the web server.
    pub async fn start(config: Config) -> anyhow::Result<Daemon> {
        Self::start_with_clock(config, Clock::default()).await
    }

    /// As `start`, with a clock tests can move.
    pub async fn start_with_clock(mut config: Config, clock: Clock) -> anyhow::Result<Daemon> {
        for warning in crate::deployment::review(&config) {
            tracing::warn!(key = warning.key, "{}", warning.message);
        }
        // Bind first: with port 0 the links must name the port actually bound.
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        // The metrics listener too, before anything runs: a port that cannot be had stops the
        // start with nothing left behind.
        let metrics_listener = match config.metrics.listen {
            Some(at) => Some(tokio::net::TcpListener::bind(at).await.with_context(|| format!("metrics cannot listen on {at}"))?),
            None => None,
        };
        if config.server.public_url.is_none() {
            config.server.public_url = Some(format!("http://{addr}"));
        }
        if config.server.internal_url.is_none() {
            config.server.internal_url = Some(format!("http://{addr}"));
        }
        let config = Arc::new(config);
        if config.shared_storage() && config.api.token.is_none() {
            anyhow::bail!("api.token {}", crate::config::API_TOKEN_SHARED);
        }
        let api_token = ensure_api_token(&config)?;
        let (stop_workers, workers) = (CancellationToken::new(), TaskTracker::new());
        // A start that fails part way stops the workers it had started.
        let stop_on_error = stop_workers.clone().drop_guard();
        let node_id: Arc<str> = crate::ids::new_participant_id().into();
        let rooms = RoomService::start(config.clone(), api_token, clock, node_id.clone(), &workers, stop_workers.clone())
            .await
            .context("cannot open the database")?;
        let live = Live::default();
        let sfu = Arc::new(
            Sfu::start(&config.sfu, live.clone(), stop_workers.child_token())
                .with_context(|| format!("the SFU cannot receive media on {} (UDP)", config.sfu.listen))?,
        );
        let limiter = |per_minute| NonZeroU32::new(per_minute).map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n))));
        let (join_limiter, socket_limiter) = (limiter(config.server.join_rate_per_minute), limiter(config.server.socket_rate_per_minute));
        rooms.heartbeat().await?;

        let adapters = Adapters::new(rooms.clone(), stop_workers.child_token());
        let webhooks = build_adapters(&config, &adapters, &rooms)?;
        let (sessions_cancel, sessions) = (CancellationToken::new(), TaskTracker::new());
        let state = AppState::new(Shared {
            rooms: rooms.clone(),
            live: live.clone(),
            sfu: sfu.clone(),
            adapters: adapters.clone(),
            join_limiter,
            socket_limiter,
            cancel: sessions_cancel,
            tracker: sessions,
        });
        workers.spawn(run_dispatcher(rooms.clone(), live, sfu, rooms.subscribe(), stop_workers.clone()));
        let (sweeper, sweeps) = tokio::sync::watch::channel(!rooms.is_shared());
        if rooms.is_shared() {
            adapters.standby_all();
            start_elections(&config, &rooms, &adapters, sweeper, &workers, &stop_workers);
        } else {
            adapters.start_all();
        }
        workers.spawn(housekeeping(state.clone(), sweeps, stop_workers.clone()));
        if let Some(listener) = metrics_listener
            && let Some(handle) = crate::telemetry::recorder()
        {
            let scrape = crate::telemetry::Scrape { handle, rooms: rooms.clone(), live: state.live.clone(), adapters: adapters.clone() };
            tracing::info!(addr = %listener.local_addr()?, "metrics listening");
            workers.spawn(crate::telemetry::serve(listener, scrape, stop_workers.clone()));
        }

        let stop_server = CancellationToken::new();
        let router = app(state.clone(), webhooks).into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn({
            let stop = stop_server.clone();
            let listener = axum::serve::ListenerExt::tap_io(listener, bound_send_buffer);
            async move { axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await }
        });
        stop_on_error.disarm();
        tracing::info!(%addr, public_url = %config.public_url(), node_id = %node_id, "callbridge is listening");
        Ok(Daemon { addr, state, adapters, stop_server, server, stop_workers, workers })
    }

    /// Runs until SIGINT or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await;
        Ok(())
    }

    /// Stops everything in order (see the module doc).
    pub async fn shutdown(self) {
        self.stop_server.cancel();
        // Room sockets are upgraded connections the server no longer waits for: tell them now.
        self.state.cancel.cancel();
        if tokio::time::timeout(STAGE_TIMEOUT, self.server).await.is_err() {
            tracing::warn!("in-flight requests did not finish in time");
        }
        self.state.tracker.close();
        if tokio::time::timeout(STAGE_TIMEOUT, self.state.tracker.wait()).await.is_err() {
            tracing::warn!("room sockets did not close in time");
        }
        self.adapters.stop_all().await;
        self.stop_workers.cancel();
        self.workers.close();
        if tokio::time::timeout(STAGE_TIMEOUT, self.workers.wait()).await.is_err() {
            tracing::warn!("background workers did not stop in time");
        }
        // Its thread saw the same cancel; joining it is quick (and off the async workers).
        let sfu = self.state.sfu.clone();
        let _ = tokio::task::spawn_blocking(move || sfu.join()).await;
        // With several nodes, the others take its people over at once. The only node (SQLite)
        // keeps them: their pages reconnect to it after a restart as if nothing happened.
        if self.state.rooms.is_shared()
            && let Err(error) = self.state.rooms.retire().await
        {
            tracing::warn!(%error, "cannot retire this node; the others will find it silent");
        }
        self.state.rooms.close().await;
        tracing::info!("stopped");
    }
}

/// The chat platforms this build has, as the config reads them. A platform left out of the
/// build still knows its section, to say so instead of calling it an unknown key.
pub fn platforms() -> Vec<&'static dyn Platform> {
    vec![
        #[cfg(feature = "discord")]
        callbridge_chat::platform::<callbridge_discord::Settings>(),
        #[cfg(not(feature = "discord"))]
        &NotBuilt("discord"),
        #[cfg(feature = "matrix")]
        callbridge_chat::platform::<callbridge_matrix::Settings>(),
        #[cfg(not(feature = "matrix"))]
        &NotBuilt("matrix"),
        #[cfg(feature = "telegram")]
        callbridge_chat::platform::<callbridge_telegram::Settings>(),
        #[cfg(not(feature = "telegram"))]
        &NotBuilt("telegram"),
    ]
}

/// A platform whose cargo feature this build lacks.
#[allow(dead_code)]
struct NotBuilt(&'static str);

impl Platform for NotBuilt {
    fn name(&self) -> &'static str {
        self.0
    }
    fn env_vars(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    fn configure(&self, doc: Option<&str>, _env: Env<'_>) -> Result<Option<Box<dyn AdapterSettings>>, SettingsError> {
        match doc.map(|doc| callbridge_chat::settings::section::<toml::Value>(doc, self.0)).transpose()? {
            Some(Some(_)) => Err(callbridge_chat::invalid(self.0, format!("is configured but this build has no `{}` feature", self.0))),
            _ => Ok(None),
        }
    }
}

/// Builds every configured adapter, stopped, and the webhook routes they offer (which pass a
/// request on to the adapter's leader when this node does not run it).
fn build_adapters(config: &Config, adapters: &Adapters, rooms: &RoomService) -> anyhow::Result<Vec<axum::Router>> {
    let mut webhooks = Vec::new();
    let http = reqwest::Client::new();
    for settings in &config.adapters {
        let platform = settings.platform();
        let state = Arc::new(crate::bridge::state::StateInDb::new(rooms.clone(), platform));
        let ctx = BuildContext { state_dir: config.storage.data_dir.join(platform), on_secret: crate::logging::mask, state };
        let adapter = settings.build(&ctx).map_err(|e| anyhow::anyhow!("cannot build the {platform} adapter: {e}"))?;
        if let Some(routes) = adapter.clone().webhook() {
            let to = ToLeader { platform, adapters: adapters.clone(), rooms: rooms.clone(), http: http.clone() };
            webhooks.push(routes.layer(axum::middleware::from_fn_with_state(to, crate::cluster::proxy::to_leader)));
        }
        adapters.add(adapter, BridgeSettings { debounce: settings.debounce() });
    }
    Ok(webhooks)
}

/// Elections (PostgreSQL): one per chat adapter, which runs here only while this node leads
/// it, and one for the sweeps (`sweeper`).
fn start_elections(
    config: &Config,
    rooms: &RoomService,
    adapters: &Adapters,
    sweeper: tokio::sync::watch::Sender<bool>,
    workers: &TaskTracker,
    cancel: &CancellationToken,
) {
    let url = config.storage_url();
    for platform in adapters.platforms() {
        let (adapters, rooms) = (adapters.clone(), rooms.clone());
        let on_change = move |lead: bool| -> futures::future::BoxFuture<'static, ()> {
            let (adapters, rooms) = (adapters.clone(), rooms.clone());
            Box::pin(async move {
                if lead {
                    if let Err(error) = rooms.lead_adapter(platform).await {
                        tracing::warn!(%error, platform, "cannot record this node as the adapter's leader");
                    }
                    adapters.start(platform);
                } else {
                    adapters.stop(platform).await;
                }
            })
        };
        workers.spawn(leader::elect(url.clone(), format!("adapter:{platform}"), on_change, cancel.clone()));
    }
    let on_change = move |lead: bool| -> futures::future::BoxFuture<'static, ()> {
        let _ = sweeper.send(lead);
        Box::pin(async {})
    };
    workers.spawn(leader::elect(url, "housekeeping".into(), on_change, cancel.clone()));
}

/// Heartbeat (and the database's clock) on every node; presence sweeps, expiry and limiter
/// upkeep on the one node that leads housekeeping (`sweeps`).
async fn housekeeping(state: AppState, sweeps: tokio::sync::watch::Receiver<bool>, cancel: CancellationToken) {
    let rooms = &state.rooms;
    let config = rooms.config();
    let mut tick = tokio::time::interval(crate::cluster::HEARTBEAT_EVERY);
    let mut rounds: u64 = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        rounds += 1;
        if let Err(error) = rooms.heartbeat().await {
            tracing::warn!(%error, "heartbeat failed");
            continue;
        }
        if rounds % 12 == 1 {
            for limiter in [&state.join_limiter, &state.socket_limiter].into_iter().flatten() {
                limiter.retain_recent();
            }
        }
        if !*sweeps.borrow() {
            continue;
        }
        if let Err(error) = rooms.sweep_presence(crate::cluster::NODE_STALE, config.rooms.connect_timeout).await {
            tracing::warn!(%error, "presence sweep failed");
        }
        if rounds % 12 == 1
            && let Err(error) = rooms.sweep_expired().await
        {
            tracing::warn!(%error, "expiry sweep failed");
        }
    }
}

/// The API token in effect: from the config or environment, else the one in
/// `{data_dir}/api-token`, generated on first start (readable by its owner only).
pub fn ensure_api_token(config: &Config) -> anyhow::Result<Secret> {
    if let Some(token) = &config.api.token {
        return Ok(token.clone());
    }
    let path = config.storage.data_dir.join("api-token");
    if let Some(token) = read_token_file(&path)? {
        return Ok(token);
    }
    crate::private_files::create_dir(&config.storage.data_dir)
        .with_context(|| format!("cannot create {}", config.storage.data_dir.display()))?;
    let token = crate::ids::new_token();
    write_private(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated an API token");
    Ok(Secret::new(token))
}

/// Reads a token file, if present.
pub fn read_token_file(path: &Path) -> anyhow::Result<Option<Secret>> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(Secret::new(text.trim()))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Most bytes the kernel buffers for sending on one connection (Linux doubles it). Without a
/// bound, autotuning lets a client that stops reading pin megabytes of kernel memory per
/// socket; this is plenty for pages and signaling.
const SEND_BUFFER: usize = 256 * 1024;

fn bound_send_buffer(stream: &mut tokio::net::TcpStream) {
    let socket = socket2::SockRef::from(&*stream);
    if let Err(error) = socket.set_send_buffer_size(SEND_BUFFER) {
        tracing::debug!(%error, "cannot bound a connection's send buffer");
    }
    let _ = stream.set_nodelay(true);
}
