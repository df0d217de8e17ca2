//! The web server: join and room pages, the join gate, the room socket and the REST API.
//!
//! * `pages` — HTML pages and embedded assets; `i18n` — their strings in three languages.
//! * `join` — `POST /r/{id}/join` and knocking; `ws` — the room page's socket.
//! * `api` — `/api/v1`; `auth` — API and host tokens; `openapi` — the generated document.
//! * `error` — the one error type, `{"error","message"}` with a stable code.

pub mod api;
pub mod auth;
pub mod client_addr;
pub mod error;
pub mod i18n;
pub mod join;
pub mod json_object;
pub mod openapi;
pub mod pages;
pub mod ws;

use crate::live::Live;
use crate::service::RoomService;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Request, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use governor::DefaultKeyedRateLimiter;
use serde_json::{Value, json};
use std::net::IpAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;

/// What every handler can reach: cloned for every request, so one shared allocation.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// A rate limiter keyed by client (see `client_addr::rate_key`).
pub type RateLimiter = DefaultKeyedRateLimiter<IpAddr>;

/// The contents of [`AppState`].
pub struct Shared {
    pub rooms: RoomService,
    pub live: Live,
    /// The media of SFU rooms.
    pub sfu: Arc<crate::sfu::Sfu>,
    /// The chat adapters of this node (their state shows on `/healthz`).
    pub adapters: crate::bridge::adapters::Adapters,
    /// Per-address limiter of the join gate; `None` when `join_rate_per_minute = 0`.
    pub join_limiter: Option<Arc<RateLimiter>>,
    /// Per-address limiter of room socket upgrades; `None` when `socket_rate_per_minute = 0`.
    pub socket_limiter: Option<Arc<RateLimiter>>,
    /// Fires on shutdown: sockets say goodbye, grace timers stop.
    pub cancel: CancellationToken,
    /// Owns every socket session and timer, so shutdown can wait for them.
    pub tracker: TaskTracker,
}

/// The whole application, with the inbound webhooks chat adapters offer mounted as given.
pub fn app(state: AppState, webhooks: Vec<Router>) -> Router {
    let max_body = state.rooms.config().server.max_body_bytes;
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/r/{id}/join", post(join::join))
        .route("/r/{id}/knock", post(join::knock))
        .route("/r/{id}/knocks/{knock_id}", get(join::knock_status))
        .route("/r/{id}/ws", get(ws::ws))
        .route("/api/v1/rooms", post(api::create_room))
        .route("/api/v1/rooms/{id}", get(api::get_room))
        .route("/api/v1/rooms/{id}/lock", post(api::lock))
        .route("/api/v1/rooms/{id}/unlock", post(api::unlock))
        .route("/api/v1/rooms/{id}/end", post(api::end))
        .route("/api/v1/rooms/{id}/participants/{pid}", delete(api::remove))
        .route("/api/v1/rooms/{id}/participants/{pid}/mute", post(api::mute_participant))
        .route("/api/v1/rooms/{id}/mute", post(api::mute_all))
        .route("/api/v1/rooms/{id}/knocks/{knock_id}/admit", post(api::admit))
        .route("/api/v1/rooms/{id}/knocks/{knock_id}/deny", post(api::deny))
        .route("/api/v1/openapi.json", get(openapi::document))
        .merge(pages::routes())
        .fallback(|| async { error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such page") })
        .with_state(state);
    webhooks
        .into_iter()
        .fold(router, Router::merge)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(
            // The span names the path only: queries carry tokens and never reach the logs.
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request<_>| tracing::debug_span!("http", method = %req.method(), path = %req.uri().path())),
        )
}

/// Liveness and readiness.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "`{\"status\":\"ok\", \"storage\", \"node_id\", \"sockets\", \"adapters\": {\"telegram\": {\"leader\": true, \"connected\": true, \"last_error\": null}}}`: each chat adapter, whether this node runs it (leads it), whether it reaches its platform, and its last failure (`{\"message\", \"at\"}`, secrets masked)"), (status = 503, description = "The database does not answer")))]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let storage = state.rooms.storage_name();
    let (status, word) = if state.rooms.ping().await { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "degraded") };
    (status, Json(json!({
        "status": word,
        "version": env!("CARGO_PKG_VERSION"),
        "storage": storage,
        "node_id": state.rooms.node_id(),
        "sockets": state.live.socket_count(),
        "adapters": adapter_health(&state),
    })))
}

/// Each chat adapter: whether this node leads it (runs it), whether it reaches its platform,
/// and its last failure, with every secret masked.
fn adapter_health(state: &AppState) -> Value {
    let secrets = state.rooms.config().secrets();
    let adapters = state.adapters.health().into_iter().map(|(platform, leader, health)| {
        let last_error = health.last_error.map(|(message, at)| {
            json!({"message": crate::logging::redact(&message, &secrets), "at": crate::clock::rfc3339(at as i64 * 1000)})
        });
        (platform.to_owned(), json!({"leader": leader, "connected": leader && health.connected, "last_error": last_error}))
    });
    Value::Object(adapters.collect())
}
