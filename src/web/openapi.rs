//! The OpenAPI document, generated from the handlers' annotations.

use crate::room::{MAX_NAME_CHARS, MAX_TITLE_CHARS};
use axum::Json;
use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "callbridge", description = "Call links with live join cards. Errors are `{\"error\": \"<code>\", \"message\": \"...\"}`."),
    paths(
        super::healthz,
        super::join::join, super::join::knock, super::join::knock_status,
        super::api::create_room, super::api::get_room, super::api::lock, super::api::unlock, super::api::end,
        super::api::remove, super::api::mute_participant, super::api::mute_all, super::api::admit, super::api::deny,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;
impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The API token, or the room's host token"))
                    .build(),
            ),
        );
    }
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> Json<serde_json::Value> {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    // A mesh holds at most 8 people: a rule across two fields, which the derived schema cannot
    // say (JSON Schema's `if`/`then`, as OpenAPI 3.1 allows).
    if let Some(body) = doc.pointer_mut("/components/schemas/CreateRoomBody") {
        body["if"] = serde_json::json!({"properties": {"media": {"const": "mesh"}}, "required": ["media"]});
        body["then"] = serde_json::json!({"properties": {"max_participants": {"maximum": crate::room::MESH_MAX_PARTICIPANTS}}});
    }
    Json(doc)
}

// What `room::clean_name` and `room::clean_title` accept, as JSON Schema patterns, so that
// clients and schema-driven fuzzers (scripts/fuzz-api.sh) know the rule: once bidirectional
// controls are dropped and the text is trimmed (`str::trim`), 1..=max characters (or none, for
// optional text), none of them a control character.
/// `char::is_control`: Unicode Cc.
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";
/// What `str::trim` strips (Unicode White_Space), less the control characters among it.
const SPACE: &str = r" \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// The control characters `str::trim` strips too.
const CONTROL_SPACE: &str = r"\t\n\x0b\x0c\r\x85";
/// The bidirectional controls `room::clean_name` drops first: anywhere, and never counted.
const BIDI: &str = r"\u202a-\u202e\u2066-\u2069";

/// The pattern of such text of 1..=`max` (≥ 2) characters, unanchored.
fn trimmed_text(max: usize) -> String {
    let edge = format!("[{CONTROL_SPACE}{SPACE}{BIDI}]*");
    let bidi = format!("[{BIDI}]*");
    let end = format!("[^{CONTROL}{SPACE}{BIDI}]");
    let inner = format!("[^{CONTROL}{BIDI}]");
    format!("{edge}{end}{bidi}(?:(?:{inner}{bidi}){{0,{}}}{end})?{edge}", max - 2)
}

/// A display name (`room::clean_name`).
pub fn name_schema() -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^{}$", trimmed_text(MAX_NAME_CHARS))))
        .description(Some("Trimmed, 1–64 characters, no control characters."))
        .build()
}

/// An optional display name (`service::create`): blank means none. Blank is checked before
/// bidirectional controls are dropped, so a name of only those is refused, not taken as none.
pub fn optional_name_schema() -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(format!("^(?:[{CONTROL_SPACE}{SPACE}]*|{})$", trimmed_text(MAX_NAME_CHARS))))
        .description(Some("The host's display name: trimmed, up to 64 characters, no control characters; blank means none."))
        .build()
}

/// An optional room title (`room::clean_title`): blank (once bidirectional controls are dropped) means none.
pub fn optional_title_schema() -> utoipa::openapi::Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(format!("^(?:[{CONTROL_SPACE}{SPACE}{BIDI}]*|{})$", trimmed_text(MAX_TITLE_CHARS))))
        .description(Some("Trimmed, up to 120 characters, no control characters; blank means none."))
        .build()
}
