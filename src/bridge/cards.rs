//! `RoomView` → `Card`, and the digest that tells whether a posted card shows it already.
//! (Which message shows which room is kept by the store: `store::cards`.)

use crate::room::{Media, RoomKind};
use crate::room::{RoomStatus, RoomView};
use crate::ids::RoomId;
use crate::service::{Knocks, RoomService, ServiceError};
use crate::store::Ring;
use callbridge_chat::{Attendance, Card, CardStatus, ChatRef, Kind, Knock, RingLine};
use sha2::{Digest, Sha256};

/// The card of a room as it stands now (its view with knocks, and who was rung), as `chat`
/// on `platform` shows it: in that chat's language and time zone.
pub async fn card_of(rooms: &RoomService, room: &RoomId, platform: &str, chat: &ChatRef) -> Result<Card, ServiceError> {
    let view = rooms.view(room, Knocks::Shown).await?;
    let rings = rooms.rings_of(room).await?;
    let mut card = card_from_view(&view, &rings);
    let config = rooms.config();
    let policy = config.policy(platform, chat.as_str());
    card.lang = policy.language;
    // Across a gateway, who came through which platform's personal link says who vouched.
    if !card.status.is_over() && config.policies.gateway_of(platform, chat.as_str()).is_some() {
        card.present = present(&view).map(|p| match &p.vouched_by {
            Some(by) => format!("{} ({})", p.name, platform_name(by)),
            None => p.name.clone(),
        }).collect();
    }
    let format = super::texts::texts(policy.language).date_format;
    card.starts = view.starts_at_ms.filter(|s| *s > rooms.now_ms()).map(|s| (s / 1000, super::schedule::start_label(s, policy.tz(), format)));
    Ok(card)
}

/// The card of a room. `view` must carry its knocks.
pub fn card_from_view(view: &RoomView, rings: &[Ring]) -> Card {
    let status = match view.status {
        RoomStatus::Open => CardStatus::Open,
        RoomStatus::Locked => CardStatus::Locked,
        RoomStatus::Full => CardStatus::Full,
        RoomStatus::Ended => CardStatus::Ended,
        RoomStatus::Expired => CardStatus::Expired,
    };
    let over = status.is_over();
    Card {
        room_id: view.id.clone(),
        title: view.title.clone(),
        host_name: view.host_name.clone(),
        kind: match view.kind {
            RoomKind::Video => Kind::Video,
            RoomKind::Voice => Kind::Voice,
        },
        private: view.media == Media::Mesh,
        status,
        // Who holds a place: admitted and not gone (a page that is connecting counts).
        present: if over {
            Vec::new()
        } else {
            present(view).map(|p| p.name.clone()).collect()
        },
        entered: view.participants.len(),
        link: view.url.clone(),
        knocks: if over {
            Vec::new()
        } else {
            view.pending_knocks().map(|k| Knock { id: k.id.clone(), name: k.name.clone() }).collect()
        },
        attendance: over.then(|| {
            view.participants
                .iter()
                .map(|p| Attendance {
                    name: p.name.clone(),
                    joined: p.joined_at.get(11..16).unwrap_or_default().to_owned(),
                    seconds: p.seconds_present,
                })
                .collect()
        }),
        // Once it is over, the attendance says who came.
        ringing: if over { Vec::new() } else { rings.iter().map(|r| RingLine { name: r.name.clone(), state: r.state }).collect() },
        starts: None,
        lang: Default::default(),
    }
}

/// Who holds a place: admitted and not gone (a page that is connecting counts).
fn present(view: &RoomView) -> impl Iterator<Item = &crate::room::ParticipantView> {
    view.participants.iter().filter(|p| p.left_at.is_none() && !p.removed)
}

/// A platform as people write it.
fn platform_name(platform: &str) -> &str {
    match platform {
        "telegram" => "Telegram",
        "discord" => "Discord",
        "matrix" => "Matrix",
        other => other,
    }
}

/// A digest of what a card shows: equal digests need no edit.
pub fn digest(card: &Card) -> String {
    let json = serde_json::to_vec(card).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}
