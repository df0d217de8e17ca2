//! Posted cards: which chat message shows which room (table `cards`), and what it shows now.

use super::{Store, StoreError};
use crate::ids::RoomId;
use callbridge_chat::{ChatRef, MessageRef};
use sqlx::Row;

/// A card posted in a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedCard {
    pub room_id: RoomId,
    pub chat: ChatRef,
    pub message: MessageRef,
    /// Digest of the content last shown (`None` when unknown).
    pub rendered: Option<String>,
}

/// A card whose scheduled call is due a reminder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueReminder {
    pub room_id: RoomId,
    pub chat: ChatRef,
    /// The call's start, in milliseconds since the epoch.
    pub starts_at: i64,
}

/// A reminder goes out this long before a scheduled call's start (when its room opens).
const REMIND_BEFORE_MS: i64 = crate::room::OPENS_BEFORE_START.as_millis() as i64;

impl Store {
    /// The cards of `platform` whose scheduled call is due a reminder at `now`: 10 minutes
    /// before its start, or at it.
    pub async fn due_reminders(&self, platform: &str, now: i64) -> Result<Vec<DueReminder>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.room_id, c.chat_ref, r.starts_at FROM cards c JOIN rooms r ON r.id = c.room_id \
             WHERE c.platform = $1 AND c.closed = 0 AND r.ended_at IS NULL AND r.starts_at IS NOT NULL \
             AND ((c.reminded < 1 AND r.starts_at <= $2 + $3) OR (c.reminded < 2 AND r.starts_at <= $2))",
        )
        .bind(platform)
        .bind(now)
        .bind(REMIND_BEFORE_MS)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok(DueReminder { room_id: RoomId::trusted(r.try_get(0)?), chat: ChatRef(r.try_get(1)?), starts_at: r.try_get(2)? }))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// When the next reminder of `platform`'s cards falls due.
    pub async fn next_reminder(&self, platform: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(CASE WHEN c.reminded < 1 THEN r.starts_at - $2 ELSE r.starts_at END) FROM cards c JOIN rooms r ON r.id = c.room_id \
             WHERE c.platform = $1 AND c.closed = 0 AND r.ended_at IS NULL AND r.starts_at IS NOT NULL AND c.reminded < 2",
        )
        .bind(platform)
        .bind(REMIND_BEFORE_MS)
        .fetch_one(&self.read)
        .await?)
    }

    /// Claims a card's reminder `stage` (1: before the start, 2: the start; a later stage
    /// passes over an earlier one missed while down); `false` when it was sent already.
    pub async fn claim_reminder(&self, room: &RoomId, platform: &str, chat: &ChatRef, stage: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE cards SET reminded = $4 WHERE room_id = $1 AND platform = $2 AND chat_ref = $3 AND reminded < $4")
            .bind(room.as_str())
            .bind(platform)
            .bind(chat.as_str())
            .bind(stage)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a freshly posted card.
    pub async fn insert_card(&self, platform: &str, card: &PostedCard) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cards (room_id, platform, chat_ref, message_ref, created_at, rendered, closed) \
             VALUES ($1, $2, $3, $4, $5, $6, 0)",
        )
        .bind(card.room_id.as_str())
        .bind(platform)
        .bind(card.chat.as_str())
        .bind(card.message.as_str())
        .bind(self.clock.now_ms())
        .bind(&card.rendered)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Every card of `platform` whose final state is not shown yet.
    pub async fn open_cards(&self, platform: &str) -> Result<Vec<PostedCard>, StoreError> {
        let rows = sqlx::query(
            "SELECT room_id, chat_ref, message_ref, rendered FROM cards WHERE platform = $1 AND closed = 0 ORDER BY created_at",
        )
        .bind(platform)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(PostedCard {
                    room_id: RoomId::trusted(r.try_get(0)?),
                    chat: ChatRef(r.try_get(1)?),
                    message: MessageRef(r.try_get(2)?),
                    rendered: r.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Remembers what a card shows now (`rendered`; `None` keeps what was known), and whether
    /// it is `closed`: it shows its final state, or can be edited no more.
    pub async fn update_card(&self, platform: &str, card: &PostedCard, rendered: Option<&str>, closed: bool) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE cards SET rendered = COALESCE($1, rendered), closed = $2 \
             WHERE room_id = $3 AND platform = $4 AND chat_ref = $5",
        )
        .bind(rendered)
        .bind(closed as i64)
        .bind(card.room_id.as_str())
        .bind(platform)
        .bind(card.chat.as_str())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Whether a card of `room` was posted in `chat`.
    pub async fn card_in(&self, room: &RoomId, platform: &str, chat: &ChatRef) -> Result<bool, StoreError> {
        let found: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cards WHERE room_id = $1 AND platform = $2 AND chat_ref = $3")
            .bind(room.as_str())
            .bind(platform)
            .bind(chat.as_str())
            .fetch_one(&self.read)
            .await?;
        Ok(found > 0)
    }

    /// The room a posted message shows.
    pub async fn room_of_message(&self, platform: &str, chat: &ChatRef, message: &MessageRef) -> Result<Option<RoomId>, StoreError> {
        let room: Option<String> = sqlx::query_scalar("SELECT room_id FROM cards WHERE platform = $1 AND chat_ref = $2 AND message_ref = $3")
            .bind(platform)
            .bind(chat.as_str())
            .bind(message.as_str())
            .fetch_optional(&self.read)
            .await?;
        Ok(room.map(RoomId::trusted))
    }

    /// The chat's most recent room that has not ended.
    pub async fn latest_open_room(&self, platform: &str, chat: &ChatRef) -> Result<Option<RoomId>, StoreError> {
        let room: Option<String> = sqlx::query_scalar(
            "SELECT c.room_id FROM cards c JOIN rooms r ON r.id = c.room_id \
             WHERE c.platform = $1 AND c.chat_ref = $2 AND r.ended_at IS NULL \
             ORDER BY c.created_at DESC LIMIT 1",
        )
        .bind(platform)
        .bind(chat.as_str())
        .fetch_optional(&self.read)
        .await?;
        Ok(room.map(RoomId::trusted))
    }
}
