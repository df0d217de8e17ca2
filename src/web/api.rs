//! The REST API under `/api/v1`: mint rooms (API token) and act on them (API or host token).

use super::AppState;
use super::auth::{ApiCaller, HostOf};
use super::error::{ApiError, ErrorBody, json_rejection};
use super::json_object::JsonObject;
use crate::room::{Media, RoomKind};
use crate::room::RoomView;
use crate::ids::{KnockId, ParticipantId};
use crate::service::{CreateOptions, KnockDecision, Knocks, Lock, ServiceError};
use crate::store::{KnockAnswer, RemoveOutcome, StateChange};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of `POST /api/v1/rooms` (every field optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoomBody {
    /// Up to 120 characters.
    #[schema(schema_with = super::openapi::optional_title_schema)]
    pub title: Option<String>,
    /// `video` (default from `[rooms] default_kind`) or `voice`.
    pub kind: Option<RoomKind>,
    /// The host's display name.
    #[schema(schema_with = super::openapi::optional_name_schema)]
    pub host_name: Option<String>,
    /// `sfu` (media through this server, up to 1000 people, 50 by default) or `mesh` (browser
    /// to browser, at most 8); default from `[rooms] media`.
    pub media: Option<Media>,
    /// 1–1000 (a mesh: 1–8); default from `[rooms] max_participants`, else 50 (SFU) or 8 (mesh).
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub max_participants: Option<u32>,
    /// A scheduled call's start (RFC 3339). Until 10 minutes before it the link shows a
    /// countdown and joins get 425 `not_yet` (the host may come early); a start less than a
    /// minute ahead, or past, opens the room now.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<String>,
}

/// A `u32` that may be written `8.0`: JSON Schema, and so the OpenAPI document, counts it as an integer.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else { return Ok(None) };
    let whole = n.as_u64().or_else(|| {
        let f = n.as_f64()?;
        (f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&f)).then_some(f as u64)
    });
    match whole.and_then(|v| u32::try_from(v).ok()) {
        Some(v) => Ok(Some(v)),
        None => Err(serde::de::Error::custom(format_args!("{n} is not a whole number from 0 to {}", u32::MAX))),
    }
}

/// A minted room.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedRoomResponse {
    #[schema(value_type = String)]
    pub id: crate::ids::RoomId,
    /// The join link to share.
    pub url: String,
    /// The link that opens the room with host powers (carries the host token in its fragment).
    pub host_url: String,
    /// Secret: host powers over this room. Shown once.
    pub host_token: String,
    pub kind: RoomKind,
    pub media: Media,
    pub title: Option<String>,
    pub host_name: Option<String>,
    pub max_participants: u32,
}

/// Mint a room. Without a body (and without `Content-Type`), or with `null`, the room takes every default.
#[utoipa::path(post, path = "/api/v1/rooms", tag = "api", request_body = Option<CreateRoomBody>,
    security(("bearer" = [])),
    responses(
        (status = 201, body = CreatedRoomResponse),
        (status = 400, description = "invalid_json / invalid_request / invalid_name", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, description = "too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type: a body needs `Content-Type: application/json`", body = ErrorBody),
    ))]
pub async fn create_room(
    State(state): State<AppState>,
    _: ApiCaller,
    headers: HeaderMap,
    body: Result<Json<Option<JsonObject<CreateRoomBody>>>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedRoomResponse>), ApiError> {
    // No body (or `null`) is a room on every default.
    let body = match body {
        Ok(Json(b)) => b.map(|JsonObject(b)| b).unwrap_or_default(),
        Err(JsonRejection::MissingJsonContentType(_)) if !headers.contains_key(axum::http::header::CONTENT_TYPE) => {
            CreateRoomBody::default()
        }
        Err(e) => return Err(json_rejection(e)),
    };
    let starts_at = match body.starts_at.as_deref().map(chrono::DateTime::parse_from_rfc3339) {
        None => None,
        Some(Ok(at)) => Some(at.timestamp_millis()).filter(|at| *at >= state.rooms.now_ms() + 60_000),
        Some(Err(_)) => return Err(ServiceError::Invalid("starts_at must be an RFC 3339 date-time").into()),
    };
    let created = state
        .rooms
        .create(CreateOptions {
            title: body.title,
            kind: body.kind,
            host_name: body.host_name,
            media: body.media,
            max_participants: body.max_participants,
            starts_at,
            ..Default::default()
        })
        .await?;
    let view = state.rooms.view(&created.id, Knocks::Hidden).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedRoomResponse {
            host_url: state.rooms.host_url(&created.id, &created.host_token),
            url: view.url,
            id: created.id,
            host_token: created.host_token,
            kind: view.kind,
            media: view.media,
            title: view.title,
            host_name: view.host_name,
            max_participants: view.max_participants,
        }),
    ))
}

/// The state of a room, with everyone who entered and the requests to join.
#[utoipa::path(get, path = "/api/v1/rooms/{id}", tag = "api", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = RoomView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_room(State(state): State<AppState>, host: HostOf) -> Result<Json<RoomView>, ApiError> {
    Ok(Json(state.rooms.view(&host.room, Knocks::Shown).await?))
}

async fn set_lock(state: &AppState, host: HostOf, lock: Lock) -> Result<Json<RoomView>, ApiError> {
    match state.rooms.set_lock(&host.room, lock).await? {
        StateChange::NotFound => Err(ApiError::not_found()),
        StateChange::Gone => Err(ApiError::new(StatusCode::GONE, "ended", "this room has ended")),
        StateChange::Changed | StateChange::Unchanged => Ok(Json(state.rooms.view(&host.room, Knocks::Shown).await?)),
    }
}

/// Lock the room: nobody new may enter; people inside stay.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/lock", tag = "api", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = RoomView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn lock(State(state): State<AppState>, host: HostOf) -> Result<Json<RoomView>, ApiError> {
    set_lock(&state, host, Lock::Locked).await
}

/// Unlock the room.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/unlock", tag = "api", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = RoomView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn unlock(State(state): State<AppState>, host: HostOf) -> Result<Json<RoomView>, ApiError> {
    set_lock(&state, host, Lock::Unlocked).await
}

/// End the room for everyone; the link answers 410 from now on.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/end", tag = "api", params(("id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = RoomView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn end(State(state): State<AppState>, host: HostOf) -> Result<Json<RoomView>, ApiError> {
    match state.rooms.end(&host.room).await? {
        StateChange::NotFound => Err(ApiError::not_found()),
        _ => Ok(Json(state.rooms.view(&host.room, Knocks::Shown).await?)),
    }
}

/// Remove a participant: disconnected now, and refused on rejoin.
#[utoipa::path(delete, path = "/api/v1/rooms/{id}/participants/{pid}", tag = "api",
    params(("id" = String, Path), ("pid" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = RoomView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    host: HostOf,
    Path(ids): Path<(String, String)>,
) -> Result<Json<RoomView>, ApiError> {
    let no_such = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such participant");
    let pid = ParticipantId::parse(&ids.1).ok_or_else(no_such)?;
    match state.rooms.remove(&host.room, &pid).await? {
        RemoveOutcome::NotFound => Err(no_such()),
        RemoveOutcome::Removed(_) | RemoveOutcome::AlreadyRemoved => Ok(Json(state.rooms.view(&host.room, Knocks::Shown).await?)),
    }
}

/// What to mute: `true` mutes, `false` lets speak again; absent, audio is muted.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MuteBody {
    pub audio: Option<bool>,
    pub video: Option<bool>,
    /// Muting everyone: a participant left out (the host's own page).
    pub except: Option<String>,
}

/// Whom a mute applied to.
#[derive(Debug, Serialize, ToSchema)]
pub struct MutedResponse {
    pub participants: Vec<String>,
}

async fn mute(state: &AppState, host: &HostOf, who: Option<&ParticipantId>, body: MuteBody) -> Result<Vec<String>, ApiError> {
    let (audio, video) = match (body.audio, body.video) {
        (None, None) => (Some(true), None),
        both => both,
    };
    match state.rooms.mute(&host.room, who, body.except.as_deref(), audio, video).await? {
        None => Err(ApiError::new(StatusCode::GONE, "ended", "this room has ended")),
        Some(done) => Ok(done.into_iter().map(|p| p.as_str().to_owned()).collect()),
    }
}

/// The body of a mute, if any: no body (or `null`) takes the defaults.
fn mute_body(body: Result<Json<Option<JsonObject<MuteBody>>>, JsonRejection>, headers: &HeaderMap) -> Result<MuteBody, ApiError> {
    match body {
        Ok(Json(b)) => Ok(b.map(|JsonObject(b)| b).unwrap_or_default()),
        Err(JsonRejection::MissingJsonContentType(_)) if !headers.contains_key(axum::http::header::CONTENT_TYPE) => Ok(MuteBody::default()),
        Err(e) => Err(json_rejection(e)),
    }
}

/// Mute one participant's audio (or video) for everyone. In an SFU room their media stops at
/// the server at once; their page turns the device off and tells them. They may turn it on
/// again themselves.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/participants/{pid}/mute", tag = "api",
    params(("id" = String, Path), ("pid" = String, Path)), request_body = Option<MuteBody>, security(("bearer" = [])),
    responses((status = 200, body = MutedResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "no such participant in the room now", body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn mute_participant(
    State(state): State<AppState>,
    host: HostOf,
    Path(ids): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<Option<JsonObject<MuteBody>>>, JsonRejection>,
) -> Result<Json<MutedResponse>, ApiError> {
    let no_such = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such participant in the room now");
    let pid = ParticipantId::parse(&ids.1).ok_or_else(no_such)?;
    let participants = mute(&state, &host, Some(&pid), mute_body(body, &headers)?).await?;
    if participants.is_empty() {
        return Err(no_such());
    }
    Ok(Json(MutedResponse { participants }))
}

/// Mute everyone in the room (their audio, unless the body says otherwise), but `except`.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/mute", tag = "api",
    params(("id" = String, Path)), request_body = Option<MuteBody>, security(("bearer" = [])),
    responses((status = 200, body = MutedResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn mute_all(
    State(state): State<AppState>,
    host: HostOf,
    headers: HeaderMap,
    body: Result<Json<Option<JsonObject<MuteBody>>>, JsonRejection>,
) -> Result<Json<MutedResponse>, ApiError> {
    let participants = mute(&state, &host, None, mute_body(body, &headers)?).await?;
    Ok(Json(MutedResponse { participants }))
}

async fn answer(state: AppState, host: HostOf, knock: String, decision: KnockDecision) -> Result<Json<RoomView>, ApiError> {
    let no_such = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such request");
    let knock = KnockId::parse(&knock).ok_or_else(no_such)?;
    match state.rooms.answer_knock(&host.room, &knock, decision).await? {
        KnockAnswer::Answered(_) | KnockAnswer::AlreadyAnswered => Ok(Json(state.rooms.view(&host.room, Knocks::Shown).await?)),
        KnockAnswer::Full => Err(ApiError::new(StatusCode::CONFLICT, "full", "the room is full")),
        KnockAnswer::NotFound => Err(no_such()),
    }
}

/// Let a knocking person in (capacity still applies).
#[utoipa::path(post, path = "/api/v1/rooms/{id}/knocks/{knock_id}/admit", tag = "api",
    params(("id" = String, Path), ("knock_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = RoomView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn admit(State(state): State<AppState>, host: HostOf, Path(ids): Path<(String, String)>) -> Result<Json<RoomView>, ApiError> {
    answer(state, host, ids.1, KnockDecision::Admit).await
}

/// Turn a knocking person away.
#[utoipa::path(post, path = "/api/v1/rooms/{id}/knocks/{knock_id}/deny", tag = "api",
    params(("id" = String, Path), ("knock_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = RoomView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn deny(State(state): State<AppState>, host: HostOf, Path(ids): Path<(String, String)>) -> Result<Json<RoomView>, ApiError> {
    answer(state, host, ids.1, KnockDecision::Deny).await
}
