//! The room domain: what a room is, who may enter, and the views every surface shows.
//!
//! The rules themselves run inside the store's transactions (see `store::admission`); this
//! module holds the vocabulary and the checks that need no database (names, titles).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Video (camera and microphone) or voice (microphone only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    #[default]
    Video,
    Voice,
}

impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Video => "video",
            RoomKind::Voice => "voice",
        }
    }
    pub fn parse(s: &str) -> Option<RoomKind> {
        match s.to_ascii_lowercase().as_str() {
            "video" => Some(RoomKind::Video),
            "voice" | "audio" => Some(RoomKind::Voice),
            _ => None,
        }
    }
}

/// How a room's media travels: through the daemon's SFU, or browser to browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Media {
    /// Each browser sends once to the daemon, which forwards to everyone else (rooms of 50).
    #[default]
    Sfu,
    /// Every browser sends to every other; media never touches the server (small private rooms).
    Mesh,
}

/// Most people a mesh room may hold: beyond this, browsers cannot send to everyone.
pub const MESH_MAX_PARTICIPANTS: u32 = 8;
/// How many people an SFU room holds unless told otherwise (Messenger Rooms' size).
pub const SFU_DEFAULT_PARTICIPANTS: u32 = 50;

impl Media {
    pub fn as_str(self) -> &'static str {
        match self {
            Media::Sfu => "sfu",
            Media::Mesh => "mesh",
        }
    }
    pub fn parse(s: &str) -> Option<Media> {
        match s.to_ascii_lowercase().as_str() {
            "sfu" => Some(Media::Sfu),
            "mesh" => Some(Media::Mesh),
            _ => None,
        }
    }
    /// `max_participants` when nothing sets it.
    pub fn default_max_participants(self) -> u32 {
        match self {
            Media::Sfu => SFU_DEFAULT_PARTICIPANTS,
            Media::Mesh => MESH_MAX_PARTICIPANTS,
        }
    }
    /// The most `max_participants` may be.
    pub fn most_participants(self) -> u32 {
        match self {
            Media::Sfu => crate::config::MAX_PARTICIPANTS_LIMIT,
            Media::Mesh => MESH_MAX_PARTICIPANTS,
        }
    }
}

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest room title, in characters.
pub const MAX_TITLE_CHARS: usize = 120;

/// A request to mint a room.
#[derive(Debug, Clone)]
pub struct NewRoom {
    pub title: Option<String>,
    pub kind: RoomKind,
    pub host_name: Option<String>,
    /// Opaque chat user ref of the host (adapters only).
    pub host_ref: Option<String>,
    /// Opaque chat ref of where the room was minted (adapters only).
    pub chat_ref: Option<String>,
    /// The platform of that chat.
    pub platform: Option<String>,
    /// That chat's name, as its members see it.
    pub chat_name: Option<String>,
    /// A scheduled call's start (milliseconds since the epoch).
    pub starts_at: Option<i64>,
    pub media: Media,
    pub max_participants: u32,
    pub knock: bool,
}

/// A minted room: its id and the host token, which is shown once and stored only hashed.
#[derive(Debug, Clone)]
pub struct CreatedRoom {
    pub id: crate::ids::RoomId,
    pub host_token: String,
}

/// A request to enter a room.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub room_id: crate::ids::RoomId,
    pub name: String,
    /// A previous admission's token: a rejoin is not a new joiner.
    pub token: Option<String>,
    /// Opaque chat user ref, when the link was personal to a chat user.
    pub user_ref: Option<String>,
    /// The room's host (checked by the caller): a lock does not keep the host out.
    pub host: bool,
}

/// The answer to a join, decided in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Admitted(Admitted),
    Refused(Refusal),
}

/// A granted admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub participant_id: String,
    /// The participant token: new for a new joiner, the same one for a rejoin.
    pub token: String,
    pub name: String,
    /// True when this was an earlier participant coming back.
    pub rejoin: bool,
}

/// Why a join was refused. The order of the checks is the order of these variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    Ended,
    Expired,
    Banned,
    /// A scheduled call whose room opens at `opens_at` (milliseconds since the epoch).
    NotYet { opens_at: i64 },
    /// `knock`: whether the room takes requests to join.
    Locked { knock: bool },
    Full,
}

/// How long before a scheduled call's start its room opens.
pub const OPENS_BEFORE_START: std::time::Duration = std::time::Duration::from_secs(600);

impl Refusal {
    /// The stable error code of the public contract.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NotFound => "not_found",
            Refusal::Ended => "ended",
            Refusal::Expired => "expired",
            Refusal::Banned => "banned",
            Refusal::NotYet { .. } => "not_yet",
            Refusal::Locked { .. } => "locked",
            Refusal::Full => "full",
        }
    }
}

/// Bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069). A name
/// carrying them can reorder the text around it on a card or page ("Bob\u{202E}nimda" reads as
/// "Bobadmin"); right-to-left names need none of them, so they are dropped.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn without_bidi_controls(raw: &str) -> std::borrow::Cow<'_, str> {
    if raw.chars().any(is_bidi_control) { raw.chars().filter(|c| !is_bidi_control(*c)).collect() } else { raw.into() }
}

/// Trims and checks a display name: 1–64 characters, no control characters; bidirectional
/// overrides are dropped.
pub fn clean_name(raw: &str) -> Result<String, &'static str> {
    let raw = without_bidi_controls(raw);
    let name = raw.trim();
    if name.is_empty() {
        return Err("name must not be empty");
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("name must be at most 64 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("name must not contain control characters");
    }
    Ok(name.to_owned())
}

/// Trims and checks a title: up to 120 characters, no control characters; empty means none.
pub fn clean_title(raw: Option<&str>) -> Result<Option<String>, &'static str> {
    let raw = raw.map(without_bidi_controls);
    let Some(title) = raw.as_deref().map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err("title must be at most 120 characters");
    }
    if title.chars().any(char::is_control) {
        return Err("title must not contain control characters");
    }
    Ok(Some(title.to_owned()))
}

/// Where a room stands, as one word for cards and pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoomStatus {
    Open,
    Locked,
    Full,
    Ended,
    Expired,
}

impl RoomStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomStatus::Open => "open",
            RoomStatus::Locked => "locked",
            RoomStatus::Full => "full",
            RoomStatus::Ended => "ended",
            RoomStatus::Expired => "expired",
        }
    }
}

/// One participant as the API, pages and cards show it.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct ParticipantView {
    pub id: String,
    pub name: String,
    /// First admission (RFC 3339).
    pub joined_at: String,
    /// When the participant last left; `null` while holding a place in the room.
    pub left_at: Option<String>,
    /// Whether a room page of this participant is connected now.
    pub present: bool,
    /// Time spent connected, in seconds, over every visit.
    pub seconds_present: i64,
    /// Whether the host removed this participant.
    pub removed: bool,
    /// The chat platform that vouched for the name (`telegram`, `discord`, `matrix`): the
    /// participant came through a personal link. Absent for a name typed on the page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vouched_by: Option<String>,
}

/// A pending or answered request to enter a locked room.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct KnockView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// `pending`, `admitted` or `denied`.
    pub status: String,
}

/// The whole state of a room.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoomView {
    pub id: String,
    pub url: String,
    pub kind: RoomKind,
    /// `sfu`: media passes through this server, encrypted in transit; `mesh`: browser to browser.
    pub media: Media,
    pub title: Option<String>,
    pub host_name: Option<String>,
    pub status: RoomStatus,
    pub locked: bool,
    pub ended: bool,
    pub knock: bool,
    /// Most people in the room at once (`max_participants`).
    pub capacity: u32,
    pub max_participants: u32,
    pub created_at: String,
    pub ended_at: Option<String>,
    /// Everyone ever admitted, in order of arrival.
    pub participants: Vec<ParticipantView>,
    /// Requests to join; only shown to the host and the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub knocks: Option<Vec<KnockView>>,
    /// Opaque chat user ref of the host (not serialized).
    #[serde(skip)]
    pub host_ref: Option<String>,
    /// Opaque chat ref where it was minted (not serialized).
    #[serde(skip)]
    pub chat_ref: Option<String>,
    /// That chat's name (not serialized).
    #[serde(skip)]
    pub chat_name: Option<String>,
    /// That chat's platform (not serialized).
    #[serde(skip)]
    pub platform: Option<String>,
    /// A scheduled call's start (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// When a scheduled call's room opens, 10 minutes before its start (RFC 3339); joins before
    /// then get 425 `not_yet`, but the host's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<String>,
    /// The start in milliseconds (not serialized).
    #[serde(skip)]
    pub starts_at_ms: Option<i64>,
}

impl RoomView {
    /// The people in the room now.
    pub fn present(&self) -> impl Iterator<Item = &ParticipantView> {
        self.participants.iter().filter(|p| p.present)
    }
    /// How many people hold a place (present or about to connect).
    pub fn occupied(&self) -> usize {
        self.participants.iter().filter(|p| p.left_at.is_none() && !p.removed).count()
    }
    /// The pending knocks.
    pub fn pending_knocks(&self) -> impl Iterator<Item = &KnockView> {
        self.knocks.iter().flatten().filter(|k| k.status == "pending")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(clean_name("  Ada  ").unwrap(), "Ada");
        assert!(clean_name("   ").is_err());
        assert!(clean_name(&"x".repeat(65)).is_err());
        assert!(clean_name(&"é".repeat(64)).is_ok());
        assert!(clean_name("a\u{0}b").is_err());
        assert!(clean_name("a\nb").is_err());
        assert_eq!(clean_name("<img src=x onerror=alert(1)>").unwrap(), "<img src=x onerror=alert(1)>");
    }

    #[test]
    fn titles_may_be_absent() {
        assert_eq!(clean_title(None).unwrap(), None);
        assert_eq!(clean_title(Some("  ")).unwrap(), None);
        assert_eq!(clean_title(Some(" Standup ")).unwrap(), Some("Standup".into()));
        assert!(clean_title(Some(&"t".repeat(121))).is_err());
    }

    #[test]
    fn bidi_overrides_are_dropped_but_rtl_text_stays() {
        assert_eq!(clean_name("Bob\u{202E}nimda").unwrap(), "Bobnimda");
        assert_eq!(clean_name("\u{2067}שלום\u{2069}").unwrap(), "שלום");
        assert_eq!(clean_name("مرحبا").unwrap(), "مرحبا");
        assert!(clean_name("\u{202E}\u{202D}").is_err());
        assert_eq!(clean_title(Some("\u{202E}txt.exe")).unwrap(), Some("txt.exe".into()));
    }
}
