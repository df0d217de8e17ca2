//! Ringing: who asked to be rung in a chat (`ring_optins`), who was rung into a room and how
//! they answered (`rings`), the private prompts the bot sent (`prompts`), and the host's
//! notices (`rooms.notify_host`, `knocks.notified_at`).

use super::{Store, StoreError};
use crate::ids::RoomId;
use callbridge_chat::{ChatRef, MessageRef, RingState};
use sqlx::Row;

/// A chat member who asked to be rung.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptIn {
    pub user_ref: String,
    pub name: String,
    /// Their @-name, lowercase, where the platform has one.
    pub handle: Option<String>,
}

/// One person rung into a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    pub platform: String,
    pub user_ref: String,
    pub name: String,
    pub rung_by: String,
    pub rung_by_name: String,
    pub state: RingState,
    pub message: Option<String>,
}

/// What a private prompt is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A ring: the subject is the rung user's ref.
    Ring,
    /// A knock for the host: the subject is the knock id.
    Knock,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Ring => "ring",
            Purpose::Knock => "knock",
        }
    }
}

/// A private prompt the bot sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptRef {
    pub room_id: RoomId,
    pub purpose: Purpose,
    pub subject: String,
}

impl Store {
    /// Turns `user`'s opt-in for `chat` on or off; `false` when it already was so.
    pub async fn set_ring_optin(&self, platform: &str, chat: &ChatRef, who: &OptIn, on: bool) -> Result<bool, StoreError> {
        let done = if on {
            sqlx::query(
                "INSERT INTO ring_optins (platform, chat_ref, user_ref, name, handle, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (platform, chat_ref, user_ref) DO NOTHING",
            )
            .bind(platform)
            .bind(chat.as_str())
            .bind(&who.user_ref)
            .bind(&who.name)
            .bind(&who.handle)
            .bind(self.clock.now_ms())
            .execute(&self.write)
            .await?
        } else {
            sqlx::query("DELETE FROM ring_optins WHERE platform = $1 AND chat_ref = $2 AND user_ref = $3")
                .bind(platform)
                .bind(chat.as_str())
                .bind(&who.user_ref)
                .execute(&self.write)
                .await?
        };
        Ok(done.rows_affected() > 0)
    }

    /// Everyone who asked to be rung in `chat`, oldest first.
    pub async fn ring_optins(&self, platform: &str, chat: &ChatRef) -> Result<Vec<OptIn>, StoreError> {
        let rows = sqlx::query("SELECT user_ref, name, handle FROM ring_optins WHERE platform = $1 AND chat_ref = $2 ORDER BY created_at")
            .bind(platform)
            .bind(chat.as_str())
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok(OptIn { user_ref: r.try_get(0)?, name: r.try_get(1)?, handle: r.try_get(2)? }))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Rings `who` into `room` (again, when an earlier ring was answered or missed); `false`
    /// when they are being rung already.
    pub async fn add_ring(&self, room: &RoomId, platform: &str, who: &OptIn, by: &OptIn, message: Option<&str>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO rings (room_id, platform, user_ref, name, rung_by, rung_by_name, state, rung_at, message) \
             VALUES ($1, $2, $3, $4, $5, $8, 'ringing', $6, $7) \
             ON CONFLICT (room_id, platform, user_ref) DO UPDATE SET state = 'ringing', rung_at = excluded.rung_at, \
             answered_at = NULL, rung_by = excluded.rung_by, rung_by_name = excluded.rung_by_name, message = excluded.message \
             WHERE rings.state <> 'ringing'",
        )
        .bind(room.as_str())
        .bind(platform)
        .bind(&who.user_ref)
        .bind(&who.name)
        .bind(&by.user_ref)
        .bind(self.clock.now_ms())
        .bind(message)
        .bind(&by.name)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Moves a ring to `state` from one of `from`; `false` when it was in none of them.
    pub async fn set_ring_state(&self, room: &RoomId, platform: &str, user_ref: &str, state: RingState, from: &[RingState]) -> Result<bool, StoreError> {
        let from = from.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ");
        // The list is made of the states' own words, never of input.
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE rings SET state = $1, answered_at = $2 WHERE room_id = $3 AND platform = $4 AND user_ref = $5 AND state IN ({from})"
        )))
        .bind(state.as_str())
        .bind(self.clock.now_ms())
        .bind(room.as_str())
        .bind(platform)
        .bind(user_ref)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Takes back a ring that was never answered (whoever rang them, or the host).
    pub async fn delete_ring(&self, room: &RoomId, platform: &str, user_ref: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM rings WHERE room_id = $1 AND platform = $2 AND user_ref = $3")
            .bind(room.as_str())
            .bind(platform)
            .bind(user_ref)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks missed every ring of `platform` unanswered since before `rung_before`, or whose
    /// room ended; returns them (room, user ref).
    pub async fn miss_overdue_rings(&self, platform: &str, rung_before: i64) -> Result<Vec<(RoomId, String)>, StoreError> {
        let rows = sqlx::query(
            "UPDATE rings SET state = 'missed', answered_at = $1 WHERE platform = $2 AND state = 'ringing' \
             AND (rung_at <= $3 OR room_id IN (SELECT id FROM rooms WHERE ended_at IS NOT NULL)) RETURNING room_id, user_ref",
        )
        .bind(self.clock.now_ms())
        .bind(platform)
        .bind(rung_before)
        .fetch_all(&self.write)
        .await?;
        rows.iter()
            .map(|r| Ok((RoomId::trusted(r.try_get(0)?), r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// When the oldest unanswered ring of `platform` was rung (to time the next miss).
    pub async fn oldest_ringing(&self, platform: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT MIN(rung_at) FROM rings WHERE platform = $1 AND state = 'ringing'")
            .bind(platform)
            .fetch_one(&self.read)
            .await?)
    }

    /// Everyone rung into `room`, in the order they were first rung.
    pub async fn rings_of(&self, room: &RoomId) -> Result<Vec<Ring>, StoreError> {
        let rows = sqlx::query("SELECT platform, user_ref, name, rung_by, state, message, rung_by_name FROM rings WHERE room_id = $1 ORDER BY rung_at, name")
            .bind(room.as_str())
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get(4)?;
                Ok(Ring {
                    platform: r.try_get(0)?,
                    user_ref: r.try_get(1)?,
                    name: r.try_get(2)?,
                    rung_by: r.try_get(3)?,
                    rung_by_name: r.try_get(6)?,
                    state: RingState::parse(&state).unwrap_or(RingState::Missed),
                    message: r.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// The chat user refs (`platform:user`) of the participants holding a place in `room`.
    pub async fn present_user_refs(&self, room: &RoomId) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT user_ref FROM participants WHERE room_id = $1 AND left_at IS NULL AND user_ref IS NOT NULL")
            .bind(room.as_str())
            .fetch_all(&self.read)
            .await?)
    }

    /// Records a private prompt the bot sent.
    pub async fn insert_prompt(&self, platform: &str, chat: &ChatRef, message: &MessageRef, prompt: &PromptRef) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO prompts (platform, chat_ref, message_ref, room_id, purpose, subject) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(platform)
            .bind(chat.as_str())
            .bind(message.as_str())
            .bind(prompt.room_id.as_str())
            .bind(prompt.purpose.as_str())
            .bind(&prompt.subject)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// What a private message of the bot's asks, when it is a prompt.
    pub async fn prompt_of(&self, platform: &str, chat: &ChatRef, message: &MessageRef) -> Result<Option<PromptRef>, StoreError> {
        let row = sqlx::query("SELECT room_id, purpose, subject FROM prompts WHERE platform = $1 AND chat_ref = $2 AND message_ref = $3")
            .bind(platform)
            .bind(chat.as_str())
            .bind(message.as_str())
            .fetch_optional(&self.read)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let purpose: String = r.try_get(1)?;
        Ok(Some(PromptRef {
            room_id: RoomId::trusted(r.try_get(0)?),
            purpose: if purpose == "knock" { Purpose::Knock } else { Purpose::Ring },
            subject: r.try_get(2)?,
        }))
    }

    /// The prompts of `platform` sent about one subject (a ring's, a knock's): (chat, message).
    pub async fn prompts_about(&self, platform: &str, prompt: &PromptRef) -> Result<Vec<(ChatRef, MessageRef)>, StoreError> {
        let rows = sqlx::query("SELECT chat_ref, message_ref FROM prompts WHERE room_id = $1 AND purpose = $2 AND subject = $3 AND platform = $4")
            .bind(prompt.room_id.as_str())
            .bind(prompt.purpose.as_str())
            .bind(&prompt.subject)
            .bind(platform)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((ChatRef(r.try_get(0)?), MessageRef(r.try_get(1)?))))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Turns the host's arrival notices for `room` on or off; `false` when already so.
    pub async fn set_notify_host(&self, room: &RoomId, on: bool) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE rooms SET notify_host = $1 WHERE id = $2 AND notify_host <> $3")
            .bind(on as i64)
            .bind(room.as_str())
            .bind(on as i64)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether the host of `room` asked for arrival notices.
    pub async fn notify_host(&self, room: &RoomId) -> Result<bool, StoreError> {
        let on: Option<i64> = sqlx::query_scalar("SELECT notify_host FROM rooms WHERE id = $1").bind(room.as_str()).fetch_optional(&self.read).await?;
        Ok(on == Some(1))
    }

    /// Claims the private notice of a knock; `false` when it was sent already (by any node).
    pub async fn claim_knock_notice(&self, room: &RoomId, knock: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE knocks SET notified_at = $1 WHERE room_id = $2 AND id = $3 AND notified_at IS NULL AND answer IS NULL")
            .bind(self.clock.now_ms())
            .bind(room.as_str())
            .bind(knock)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The chat's calls for its log: every open one, then the `ended` most recent that ended.
    pub async fn chat_calls(&self, platform: &str, chat: &ChatRef, ended: i64) -> Result<Vec<RoomId>, StoreError> {
        let open: Vec<String> = sqlx::query_scalar(
            "SELECT c.room_id FROM cards c JOIN rooms r ON r.id = c.room_id \
             WHERE c.platform = $1 AND c.chat_ref = $2 AND r.ended_at IS NULL ORDER BY c.created_at DESC LIMIT 20",
        )
        .bind(platform)
        .bind(chat.as_str())
        .fetch_all(&self.read)
        .await?;
        let over: Vec<String> = sqlx::query_scalar(
            "SELECT c.room_id FROM cards c JOIN rooms r ON r.id = c.room_id \
             WHERE c.platform = $1 AND c.chat_ref = $2 AND r.ended_at IS NOT NULL ORDER BY r.ended_at DESC LIMIT $3",
        )
        .bind(platform)
        .bind(chat.as_str())
        .bind(ended)
        .fetch_all(&self.read)
        .await?;
        Ok(open.into_iter().chain(over).map(RoomId::trusted).collect())
    }
}
