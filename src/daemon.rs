//! The daemon's lifecycle: wire the parts, serve, and stop in order.
//!
//! Shutdown order: stop accepting and finish in-flight requests; tell every room page why it
//! closes and stop timers; stop the background workers (admission writers, housekeeping,
//! dispatcher); close the database pools. Each wait is bounded.

use crate::identity::IdentityKey;
use crate::clock::Clock;
use crate::config::{Config, Secret};
use crate::events::{EventBus, RoomEventKind};
use crate::live::{Live, run_dispatcher};
use crate::service::RoomService;
use crate::store::{AdmissionWriter, Store};
use crate::web::{AppState, Shared, app};
use anyhow::Context;
use governor::{Quota, RateLimiter};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the node beats and sweeps presence.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(5);
/// A node silent this long is dead: its sockets are gone.
const NODE_STALE: Duration = Duration::from_secs(30);
/// How long shutdown waits for each stage.
const STAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running daemon.
pub struct Daemon {
    /// The address the web server listens on.
    pub addr: SocketAddr,
    pub state: AppState,
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
        // Bind first: with port 0 the links must name the port actually bound.
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        if config.server.public_url.is_none() {
            config.server.public_url = Some(format!("http://{addr}"));
        }
        let config = Arc::new(config);
        let store = Store::connect(&config.storage_url(), config.storage.max_connections, clock)
            .await
            .context("cannot open the database")?;
        let api_token = ensure_api_token(&config)?;

        let (stop_workers, workers) = (CancellationToken::new(), TaskTracker::new());
        let events = EventBus::default();
        let admissions = AdmissionWriter::start(store.clone(), config.rooms.expire_after, &workers, stop_workers.clone())?;
        let identity_key = store.secret("identity_key", IdentityKey::generate_hex).await?;
        let identity = IdentityKey::from_hex(&identity_key).context("the stored identity key is not 32 bytes of hex")?;
        let rooms = RoomService::new(store.clone(), events.clone(), admissions, config.clone(), identity);
        let live = Live::default();
        let join_limiter = NonZeroU32::new(config.server.join_rate_per_minute)
            .map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n))));
        let node_id: Arc<str> = crate::ids::new_participant_id().into();
        store.heartbeat(&node_id).await?;

        #[cfg(feature = "discord")]
        let discord = start_discord(&config, &rooms, &workers, &stop_workers)?;
        let (sessions_cancel, sessions) = (CancellationToken::new(), TaskTracker::new());
        let state = AppState::new(Shared {
            rooms: rooms.clone(),
            live: live.clone(),
            node_id: node_id.clone(),
            api_token,
            join_limiter,
            cancel: sessions_cancel,
            tracker: sessions,
            #[cfg(feature = "discord")]
            discord,
        });
        workers.spawn(run_dispatcher(rooms.clone(), live, events.subscribe(), stop_workers.clone()));
        workers.spawn(housekeeping(state.clone(), stop_workers.clone()));
        workers.spawn(checkpoints(store.clone(), stop_workers.clone()));
        start_adapters(&config, &rooms, &workers, &stop_workers)?;

        let stop_server = CancellationToken::new();
        let router = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn({
            let stop = stop_server.clone();
            async move { axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await }
        });
        tracing::info!(%addr, public_url = %config.public_url(), node_id = %node_id, "callbridge is listening");
        Ok(Daemon { addr, state, stop_server, server, stop_workers, workers })
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
        self.stop_workers.cancel();
        self.workers.close();
        if tokio::time::timeout(STAGE_TIMEOUT, self.workers.wait()).await.is_err() {
            tracing::warn!("background workers did not stop in time");
        }
        self.state.rooms.store.close().await;
        tracing::info!("stopped");
    }
}

/// Starts the Discord adapter and its bridge when `[discord]` is on: in gateway mode with its
/// websocket, in interactions mode behind the web server's endpoint, fed through the returned
/// hook.
#[cfg(feature = "discord")]
fn start_discord(
    config: &Config,
    rooms: &RoomService,
    workers: &TaskTracker,
    stop: &CancellationToken,
) -> anyhow::Result<Option<crate::web::discord::DiscordHook>> {
    use callbridge_chat::Pacing;
    let Some(d) = config.discord_enabled() else { return Ok(None) };
    let settings = callbridge_discord::Settings {
        token: d.token.as_ref().map(|s| s.expose().to_owned()).unwrap_or_default(),
        application_id: d.application_id.clone(),
        public_key: Some(d.public_key.clone()).filter(|k| !k.is_empty()),
        guild_ids: d.guild_ids.clone(),
        admin_role_ids: d.admin_role_ids.clone(),
        api_url: url::Url::parse(&d.api_url).context("discord.api_url")?,
        request_timeout: d.request_timeout,
        pacing: Pacing { min_interval: d.min_interval, per_minute: d.per_minute },
    };
    let adapter = callbridge_discord::DiscordAdapter::new(settings)?;
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    crate::bridge::start(rooms.clone(), adapter.clone(), rx, crate::bridge::BridgeSettings { debounce: d.debounce }, workers, stop.clone());
    workers.spawn(adapter.clone().run(stop.clone()));
    match d.mode {
        crate::config::DiscordMode::Gateway => {
            workers.spawn(callbridge_discord::gateway::run(adapter, tx, stop.clone()));
            tracing::info!(api_url = %d.api_url, "discord adapter started (gateway)");
            Ok(None)
        }
        crate::config::DiscordMode::Interactions => {
            tracing::info!(api_url = %d.api_url, "discord adapter started (interactions endpoint: POST /discord/interactions)");
            Ok(Some(crate::web::discord::DiscordHook { adapter, inbox: tx }))
        }
    }
}

/// Starts each enabled chat adapter and its bridge on the workers; they stop with them.
fn start_adapters(config: &Config, rooms: &RoomService, workers: &TaskTracker, stop: &CancellationToken) -> anyhow::Result<()> {
    #[cfg(feature = "telegram")]
    if let Some(t) = config.telegram_enabled() {
        use callbridge_chat::Pacing;
        let settings = callbridge_telegram::Settings {
            token: t.token.as_ref().map(|s| s.expose().to_owned()).unwrap_or_default(),
            api_url: url::Url::parse(&t.api_url).context("telegram.api_url")?,
            allowed_chats: t.allowed_chats.clone(),
            pacing: Pacing { min_interval: t.min_interval, per_minute: t.per_minute },
            poll_timeout: t.poll_timeout,
            request_timeout: t.request_timeout,
            admin_cache: t.admin_cache,
        };
        let adapter = callbridge_telegram::TelegramAdapter::new(settings)?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        crate::bridge::start(
            rooms.clone(),
            adapter.clone(),
            rx,
            crate::bridge::BridgeSettings { debounce: t.debounce },
            workers,
            stop.clone(),
        );
        workers.spawn(adapter.run(tx, stop.clone()));
        tracing::info!(api_url = %t.api_url, "telegram adapter started");
    }
    #[cfg(feature = "matrix")]
    if let Some(m) = config.matrix_enabled() {
        use callbridge_chat::Pacing;
        let expose = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().trim().to_owned()).filter(|s| !s.is_empty());
        let settings = callbridge_matrix::Settings {
            homeserver: url::Url::parse(&m.homeserver).context("matrix.homeserver")?,
            user: m.user.clone(),
            password: expose(&m.password),
            access_token: expose(&m.access_token),
            device_name: m.device_name.clone(),
            command_prefix: m.command_prefix.clone(),
            admin_power_level: m.admin_power_level,
            auto_join: callbridge_matrix::AutoJoin { inviters: m.auto_join_inviters.clone(), servers: m.auto_join_servers.clone() },
            widget: m.widget,
            store_dir: config.storage.data_dir.join("matrix"),
            max_command_age: Duration::from_secs(600),
            pacing: Pacing { min_interval: m.min_interval, per_minute: m.per_minute },
            request_timeout: m.request_timeout,
            on_secret: crate::logging::mask,
        };
        let adapter = callbridge_matrix::MatrixAdapter::new(settings);
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        crate::bridge::start(rooms.clone(), adapter.clone(), rx, crate::bridge::BridgeSettings { debounce: m.debounce }, workers, stop.clone());
        workers.spawn(adapter.run(tx, stop.clone()));
        tracing::info!(homeserver = %m.homeserver, "matrix adapter started");
    }
    #[cfg(not(feature = "matrix"))]
    if config.matrix_enabled().is_some() {
        anyhow::bail!("[matrix] is configured but this build has no `matrix` feature");
    }
    #[cfg(not(feature = "discord"))]
    if config.discord_enabled().is_some() {
        anyhow::bail!("[discord] is configured but this build has no `discord` feature");
    }
    #[cfg(not(feature = "telegram"))]
    if config.telegram_enabled().is_some() {
        anyhow::bail!("[telegram] is configured but this build has no `telegram` feature");
    }
    let _ = (config, rooms, workers, stop);
    Ok(())
}

/// Heartbeat, presence sweeps, expiry and limiter upkeep.
async fn housekeeping(state: AppState, cancel: CancellationToken) {
    let rooms = &state.rooms;
    let config = rooms.config();
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
    let mut rounds: u64 = 0;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        rounds += 1;
        if let Err(error) = rooms.store.heartbeat(&state.node_id).await {
            tracing::warn!(%error, "heartbeat failed");
            continue;
        }
        match rooms.store.sweep_presence(NODE_STALE.as_millis() as i64, config.rooms.connect_timeout.as_millis() as i64).await {
            Ok(left) => {
                for p in left {
                    rooms.events.publish(&p.room_id, RoomEventKind::Left { participant_id: p.participant_id, name: p.name });
                }
            }
            Err(error) => tracing::warn!(%error, "presence sweep failed"),
        }
        if rounds % 12 == 1 {
            match rooms.store.sweep_expired(config.rooms.expire_after.as_millis() as i64).await {
                Ok(ids) => ids.iter().for_each(|id| rooms.events.publish(id, RoomEventKind::Ended { expired: true })),
                Err(error) => tracing::warn!(%error, "expiry sweep failed"),
            }
            if let Some(limiter) = &state.join_limiter {
                limiter.retain_recent();
            }
        }
    }
}

/// Keeps SQLite's WAL short from outside the writer's path (see `Store::checkpoint`).
async fn checkpoints(store: Store, cancel: CancellationToken) {
    if store.backend() != crate::store::Backend::Sqlite {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(error) = store.checkpoint().await {
            tracing::debug!(%error, "checkpoint skipped");
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
    std::fs::create_dir_all(&config.storage.data_dir)
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
