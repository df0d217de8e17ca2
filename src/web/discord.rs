//! `POST /discord/interactions`: Discord's interactions endpoint (Discord's protocol, not part
//! of the REST API). Every request must carry a valid Ed25519 signature by the application's
//! key over timestamp + body, recent enough; anything else gets 401, as Discord's own probes
//! of the endpoint require. The adapter turns the interaction into Discord's immediate answer
//! and an event for the bridge.

use super::AppState;
use super::error::ApiError;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use callbridge_chat::ChatEvent;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What the endpoint hands interactions to.
#[derive(Clone)]
pub struct DiscordHook {
    pub adapter: Arc<callbridge_discord::DiscordAdapter>,
    pub inbox: mpsc::Sender<ChatEvent>,
}

pub async fn interactions(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(hook) = &state.discord else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "Discord is not configured").into_response();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = (state.rooms.store.clock().now_ms() / 1000).max(0) as u64;
    if !hook.adapter.verify(header("x-signature-ed25519"), header("x-signature-timestamp"), &body, now) {
        return ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", "invalid request signature").into_response();
    }
    match hook.adapter.interaction(&body) {
        Ok((answer, event)) => {
            if let Some(event) = event
                && hook.inbox.try_send(event).is_err()
            {
                tracing::warn!("discord: the bridge is backed up; refusing an interaction");
                return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "try again in a moment").into_response();
            }
            Json(answer).into_response()
        }
        Err(why) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_interaction", why).into_response(),
    }
}
