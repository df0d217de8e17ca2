//! Who is calling: the API token (any room) or a room's host token (that room only).

use super::AppState;
use super::error::ApiError;
use crate::ids::secret_eq;
use crate::store::HostCheck;
use axum::http::HeaderMap;

/// The caller's power over a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The API token: every room.
    Api,
    /// The room's host token.
    Host,
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Requires the API token. 401 without a token, 403 with a wrong one.
pub fn require_api(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    if secret_eq(token, state.api_token.expose()) { Ok(Caller::Api) } else { Err(ApiError::forbidden()) }
}

/// Requires the API token or `room_id`'s host token. A wrong token gets 403 whether or not
/// the room exists, so tokens cannot be used to probe for rooms.
pub async fn require_host(state: &AppState, headers: &HeaderMap, room_id: &str) -> Result<Caller, ApiError> {
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    if secret_eq(token, state.api_token.expose()) {
        return Ok(Caller::Api);
    }
    match state.rooms.is_host(room_id, token).await? {
        HostCheck::Host => Ok(Caller::Host),
        HostCheck::NotHost | HostCheck::NoRoom => Err(ApiError::forbidden()),
    }
}
