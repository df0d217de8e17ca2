//! The one error type of the web layer: a status, a stable code and a message for the client.
//! Internal errors are logged here and shown to the client only as `internal`.

use crate::room::Refusal;
use crate::service::ServiceError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The JSON body of every error: `{"error": "<code>", "message": "..."}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code (`not_found`, `locked`, `full`, …).
    pub error: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// On `locked`: whether the room takes requests to join.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knock: Option<bool>,
    /// On `not_yet`: when the scheduled call's room opens (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<String>,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, body: ErrorBody { error, message: message.into(), knock: None, opens_at: None } }
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such room")
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "a bearer token is required")
    }
    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "this token has no power over this room")
    }
    pub fn bad_request(error: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, message)
    }
    /// The contract's answer to a refused join.
    pub fn refused(r: Refusal) -> Self {
        let (status, message) = match r {
            Refusal::NotFound => (StatusCode::NOT_FOUND, "no such room"),
            Refusal::Ended => (StatusCode::GONE, "this room has ended"),
            Refusal::Expired => (StatusCode::GONE, "this link has expired"),
            Refusal::Banned => (StatusCode::FORBIDDEN, "you were removed from this room"),
            Refusal::NotYet { .. } => (StatusCode::TOO_EARLY, "this scheduled call has not opened yet"),
            Refusal::Locked { .. } => (StatusCode::LOCKED, "the host has locked this room"),
            Refusal::Full => (StatusCode::CONFLICT, "this room is full"),
        };
        let mut e = Self::new(status, r.code(), message);
        match r {
            Refusal::Locked { knock } => e.body.knock = Some(knock),
            Refusal::NotYet { opens_at } => e.body.opens_at = Some(crate::clock::rfc3339(opens_at)),
            _ => {}
        }
        e
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::InvalidName(msg) => Self::bad_request("invalid_name", msg),
            ServiceError::Invalid(msg) => Self::bad_request("invalid_request", msg),
            ServiceError::NotFound => Self::not_found(),
            ServiceError::Store(err) => {
                tracing::error!(error = %err, "store error");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "internal", "the bridge could not reach its database")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Turns axum's JSON extraction failures into the contract's error shape.
pub fn json_rejection(r: axum::extract::rejection::JsonRejection) -> ApiError {
    use axum::extract::rejection::JsonRejection::*;
    match r {
        BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "request body too large")
        }
        MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        other => ApiError::bad_request("invalid_json", other.body_text()),
    }
}
