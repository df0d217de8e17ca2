//! The join gate: `POST /r/{id}/join`, knocking, and the knock status a waiting page polls.

use super::{AppState, RateLimiter};
use super::error::{ApiError, ErrorBody};
use super::json_object::ApiJson;
use crate::ids::{KnockId, RoomId};
use crate::room::{Admission, JoinRequest, Refusal};
use crate::service::Credential;
use crate::store::KnockOutcome;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST /r/{id}/join`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinBody {
    /// Display name: trimmed, 1–64 characters, no control characters.
    #[schema(schema_with = super::openapi::name_schema)]
    pub name: String,
    /// A previous admission's token, to rejoin (passes a lock; a removed participant's token is refused).
    #[serde(default)]
    pub token: Option<String>,
    /// The room's host token: the host enters even when the room is locked.
    #[serde(default)]
    pub host_token: Option<String>,
    /// A personal link's token (`#as=…`): joins under the chat name it carries, whatever `name` says.
    #[serde(default)]
    pub identity: Option<String>,
}

/// A granted admission.
#[derive(Debug, Serialize, ToSchema)]
pub struct JoinResponse {
    pub participant_id: String,
    /// Secret: opens the room page's WebSocket and rejoins later.
    pub token: String,
    pub name: String,
    /// True when this token was admitted before.
    pub rejoin: bool,
    #[schema(value_type = String)]
    pub room_id: RoomId,
    /// Path of the room page's WebSocket (add `?token=`).
    pub ws_path: String,
}

/// Body of `POST /r/{id}/knock`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KnockBody {
    #[schema(schema_with = super::openapi::name_schema)]
    pub name: String,
}

/// A waiting request to join.
#[derive(Debug, Serialize, ToSchema)]
pub struct KnockResponse {
    pub knock_id: String,
    /// Secret: polls the status, and becomes the participant token once admitted.
    pub token: String,
}

/// Where a knock stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct KnockStatus {
    /// `pending`, `admitted` or `denied`.
    pub status: String,
}

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    pub token: Option<String>,
}

/// The per-address join rate limit, as an extractor: it runs before the body is read, and
/// looks at the request head in place (taking `Parts` would copy the headers and extensions).
pub struct WithinJoinRate;

impl FromRequestParts<AppState> for WithinJoinRate {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        within_rate(state.join_limiter.as_deref(), parts, state, "too many join attempts; wait a minute").map(|_| WithinJoinRate)
    }
}

/// The per-address limit of room socket upgrades, as an extractor (see [`WithinJoinRate`]).
pub struct WithinSocketRate;

impl FromRequestParts<AppState> for WithinSocketRate {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        within_rate(state.socket_limiter.as_deref(), parts, state, "too many connection attempts; wait a minute").map(|_| WithinSocketRate)
    }
}

/// Spends one of the client's attempts on `limiter` (none: no limit); 429 when none is left.
fn within_rate(limiter: Option<&RateLimiter>, parts: &Parts, state: &AppState, message: &'static str) -> Result<(), ApiError> {
    let Some(limiter) = limiter else { return Ok(()) };
    // Another node passing a page's socket on counted it against the page's address already.
    if crate::cluster::proxy::from_peer(&parts.headers, &state.rooms) {
        return Ok(());
    }
    let server = &state.rooms.config().server;
    let Some(ip) = super::client_addr::client_ip(parts, &server.trusted_proxies, server.trust_forwarded_for) else { return Ok(()) };
    limiter
        .check_key(&super::client_addr::rate_key(ip))
        .map_err(|_| ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message))
}

/// Enter a room.
#[utoipa::path(post, path = "/r/{id}/join", tag = "rooms",
    params(("id" = String, Path, description = "Room id")),
    request_body = JoinBody,
    responses(
        (status = 200, description = "Admitted", body = JoinResponse),
        (status = 400, description = "invalid_name / invalid_json", body = ErrorBody),
        (status = 403, description = "banned: removed by the host; invalid_identity: a personal link that is forged, for another room, or expired", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "full", body = ErrorBody),
        (status = 410, description = "ended or expired", body = ErrorBody),
        (status = 413, description = "too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 423, description = "locked (`knock` says whether asking to join is possible)", body = ErrorBody),
        (status = 425, description = "not_yet: a scheduled call opens 10 minutes before its start (`opens_at`)", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ))]
pub async fn join(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _: WithinJoinRate,
    ApiJson(body): ApiJson<JoinBody>,
) -> Result<Json<JoinResponse>, ApiError> {
    let id = RoomId::parse(&id).ok_or(ApiError::refused(Refusal::NotFound))?;
    let host = match &body.host_token {
        Some(t) => state.rooms.authorize(&id, Credential::Token(t)).await?.is_host(),
        None => false,
    };
    let (name, user_ref) = match body.identity.as_deref() {
        Some(token) => {
            // A seal that does not hold is a refused credential, like a wrong token: 403.
            let who = state.rooms.identity(&id, token).map_err(|e| ApiError::new(StatusCode::FORBIDDEN, "invalid_identity", e.to_string()))?;
            (who.name, Some(who.user_ref))
        }
        None => (body.name, None),
    };
    let req = JoinRequest { room_id: id.clone(), name, token: body.token, user_ref, host };
    match state.rooms.join(req).await? {
        Admission::Admitted(a) => Ok(Json(JoinResponse {
            participant_id: a.participant_id,
            token: a.token,
            name: a.name,
            rejoin: a.rejoin,
            ws_path: format!("/r/{id}/ws"),
            room_id: id,
        })),
        Admission::Refused(r) => Err(ApiError::refused(r)),
    }
}

/// Ask the host to let you into a locked room.
#[utoipa::path(post, path = "/r/{id}/knock", tag = "rooms",
    params(("id" = String, Path, description = "Room id")),
    request_body = KnockBody,
    responses(
        (status = 202, description = "Waiting for the host", body = KnockResponse),
        (status = 400, description = "invalid_name", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "not_locked: join instead", body = ErrorBody),
        (status = 410, description = "ended or expired", body = ErrorBody),
        (status = 413, description = "too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 423, description = "locked, and this room takes no requests", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
    ))]
pub async fn knock(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _: WithinJoinRate,
    ApiJson(body): ApiJson<KnockBody>,
) -> Result<(StatusCode, Json<KnockResponse>), ApiError> {
    let id = RoomId::parse(&id).ok_or(ApiError::refused(Refusal::NotFound))?;
    match state.rooms.knock(&id, &body.name).await? {
        KnockOutcome::Waiting { knock_id, token } => Ok((StatusCode::ACCEPTED, Json(KnockResponse { knock_id, token }))),
        KnockOutcome::NotLocked => Err(ApiError::new(StatusCode::CONFLICT, "not_locked", "the room is open: join it")),
        KnockOutcome::TooMany => Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many people are already waiting to join")),
        KnockOutcome::Refused(r) => Err(ApiError::refused(r)),
    }
}

/// Where a request to join stands.
#[utoipa::path(get, path = "/r/{id}/knocks/{knock_id}", tag = "rooms",
    params(("id" = String, Path), ("knock_id" = String, Path),
        ("token" = Option<String>, Query, description = "The knock token, for scripts; the join page sends it as `Authorization: Bearer`, which stays out of access logs")),
    responses(
        (status = 200, body = KnockStatus),
        (status = 400, description = "invalid_request: no token", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    ))]
pub async fn knock_status(
    State(state): State<AppState>,
    Path((id, knock_id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Json<KnockStatus>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_request", e.body_text()))?;
    let token = super::auth::bearer(&headers).map(str::to_owned).or(q.token).ok_or_else(|| {
        ApiError::bad_request("invalid_request", "no token: send the knock token as Authorization: Bearer")
    })?;
    let (Some(id), Some(knock_id)) = (RoomId::parse(&id), KnockId::parse(&knock_id)) else {
        return Err(ApiError::refused(Refusal::NotFound));
    };
    match state.rooms.knock_status(&id, &knock_id, &token).await? {
        Some(status) => Ok(Json(KnockStatus { status })),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such request")),
    }
}
