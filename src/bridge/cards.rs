//! Posted cards: the room ↔ message mapping in the `cards` table, and `RoomView` → `Card`.

use crate::room::RoomKind;
use crate::room::{RoomStatus, RoomView};
use crate::store::{Store, StoreError};
use callbridge_chat::{Attendance, Card, CardStatus, ChatRef, Kind, Knock, MessageRef};
use sha2::{Digest, Sha256};
use sqlx::Row;

/// A card posted in a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedCard {
    pub room_id: String,
    pub chat: ChatRef,
    pub message: MessageRef,
    /// Digest of the content last shown (`None` when unknown).
    pub rendered: Option<String>,
}

/// Records a freshly posted card.
pub async fn insert_card(store: &Store, platform: &str, card: &PostedCard) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO cards (room_id, platform, chat_ref, message_ref, created_at, rendered, closed) \
         VALUES ($1, $2, $3, $4, $5, $6, 0)",
    )
    .bind(&card.room_id)
    .bind(platform)
    .bind(card.chat.as_str())
    .bind(card.message.as_str())
    .bind(store.clock.now_ms())
    .bind(&card.rendered)
    .execute(&store.write)
    .await?;
    Ok(())
}

/// Every card of `platform` whose final state is not shown yet.
pub async fn open_cards(store: &Store, platform: &str) -> Result<Vec<PostedCard>, StoreError> {
    let rows = sqlx::query(
        "SELECT room_id, chat_ref, message_ref, rendered FROM cards WHERE platform = $1 AND closed = 0 ORDER BY created_at",
    )
    .bind(platform)
    .fetch_all(&store.read)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(PostedCard {
                room_id: r.try_get(0)?,
                chat: ChatRef(r.try_get(1)?),
                message: MessageRef(r.try_get(2)?),
                rendered: r.try_get(3)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

/// Remembers what a card shows now; `closed` once it shows the final state.
pub async fn mark_rendered(store: &Store, platform: &str, card: &PostedCard, digest: &str, closed: bool) -> Result<(), StoreError> {
    sqlx::query("UPDATE cards SET rendered = $1, closed = $2 WHERE room_id = $3 AND platform = $4 AND chat_ref = $5")
        .bind(digest)
        .bind(closed as i64)
        .bind(&card.room_id)
        .bind(platform)
        .bind(card.chat.as_str())
        .execute(&store.write)
        .await?;
    Ok(())
}

/// Stops updating a card for good (the message is gone or the bot was removed).
pub async fn close_card(store: &Store, platform: &str, card: &PostedCard) -> Result<(), StoreError> {
    sqlx::query("UPDATE cards SET closed = 1 WHERE room_id = $1 AND platform = $2 AND chat_ref = $3")
        .bind(&card.room_id)
        .bind(platform)
        .bind(card.chat.as_str())
        .execute(&store.write)
        .await?;
    Ok(())
}

/// The room a posted message shows.
pub async fn room_of_message(store: &Store, platform: &str, chat: &ChatRef, message: &MessageRef) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar("SELECT room_id FROM cards WHERE platform = $1 AND chat_ref = $2 AND message_ref = $3")
        .bind(platform)
        .bind(chat.as_str())
        .bind(message.as_str())
        .fetch_optional(&store.read)
        .await?)
}

/// The chat's most recent room that has not ended.
pub async fn latest_open_room(store: &Store, platform: &str, chat: &ChatRef) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT c.room_id FROM cards c JOIN rooms r ON r.id = c.room_id \
         WHERE c.platform = $1 AND c.chat_ref = $2 AND r.ended_at IS NULL \
         ORDER BY c.created_at DESC LIMIT 1",
    )
    .bind(platform)
    .bind(chat.as_str())
    .fetch_optional(&store.read)
    .await?)
}

/// The card of a room. `view` must carry its knocks.
pub fn card_from_view(view: &RoomView) -> Card {
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
        status,
        // Who holds a place: admitted and not gone (a page that is connecting counts).
        present: if over {
            Vec::new()
        } else {
            view.participants.iter().filter(|p| p.left_at.is_none() && !p.removed).map(|p| p.name.clone()).collect()
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
    }
}

/// A digest of what a card shows: equal digests need no edit.
pub fn digest(card: &Card) -> String {
    let json = serde_json::to_vec(card).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}
