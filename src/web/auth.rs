//! Who is calling, as extractors: [`ApiCaller`] holds the API token (any room); [`HostOf`]
//! has host powers over the room its path names (the API token, or that room's host token).
//! `RoomService::authorize` decides; this only reads the request.

use super::AppState;
use super::error::ApiError;
use crate::ids::RoomId;
use crate::service::{Credential, Power};
use axum::extract::{FromRequestParts, Path};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use std::collections::HashMap;

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A request with the API token: 401 without a token, 403 with another.
pub struct ApiCaller;

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        if state.rooms.is_api_token(token) { Ok(ApiCaller) } else { Err(ApiError::forbidden()) }
    }
}

/// A request with host powers over the room of its path's `{id}`: 401 without a token, 403
/// with a token that has no power there, whether or not the room exists (tokens cannot probe
/// for rooms). A malformed id is 404 for the API token, which may ask after any room.
pub struct HostOf {
    pub room: RoomId,
    pub power: Power,
}

impl FromRequestParts<AppState> for HostOf {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?.to_owned();
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found())?;
        let Some(room) = params.get("id").and_then(|id| RoomId::parse(id)) else {
            return Err(if state.rooms.is_api_token(&token) { ApiError::not_found() } else { ApiError::forbidden() });
        };
        match state.rooms.authorize(&room, Credential::Token(&token)).await? {
            Power::Guest => Err(ApiError::forbidden()),
            power => Ok(HostOf { room, power }),
        }
    }
}
