//! `POST /discord/interactions`: Discord's interactions endpoint (Discord's protocol, not part
//! of the REST API), offered to the bridge's web server as a route. Every request must carry a
//! valid Ed25519 signature by the application's key over timestamp + body, recent enough;
//! anything else gets 401, as Discord's own probes of the endpoint require. The interaction
//! becomes Discord's immediate answer and an event for the bridge.

use crate::DiscordAdapter;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use callbridge_chat::webhook_error;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A button press carries its whole message (embed and buttons): more than a join body.
const MAX_INTERACTION_BYTES: usize = 256 * 1024;

/// The endpoint's route.
pub fn routes(adapter: Arc<DiscordAdapter>) -> Router {
    Router::new()
        .route("/discord/interactions", post(interactions).layer(DefaultBodyLimit::max(MAX_INTERACTION_BYTES)))
        .with_state(adapter)
}

async fn interactions(State(adapter): State<Arc<DiscordAdapter>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if !adapter.verify(header("x-signature-ed25519"), header("x-signature-timestamp"), &body, now) {
        return webhook_error(StatusCode::UNAUTHORIZED, "bad_signature", "invalid request signature");
    }
    match adapter.interaction(&body) {
        Ok((answer, event)) => {
            if let Some(event) = event {
                let inbox = adapter.endpoint_inbox().clone();
                let delivered = inbox.is_some_and(|inbox| inbox.try_send(event.into()).is_ok());
                if !delivered {
                    tracing::warn!("discord: the bridge is stopped or backed up; refusing an interaction");
                    return webhook_error(StatusCode::SERVICE_UNAVAILABLE, "busy", "try again in a moment");
                }
            }
            axum::Json(answer).into_response()
        }
        Err(why) => webhook_error(StatusCode::BAD_REQUEST, "invalid_interaction", &why),
    }
}
