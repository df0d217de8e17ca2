//! Knocks: asking to enter a locked room, and the host's answer.
//!
//! A knock carries its own token. Admitting it creates the participant with that same token,
//! so the knocker enters through the ordinary join (a rejoin by token), which passes the lock.

use super::admission::gone_or_unknown;
use super::{Store, StoreError};
use crate::ids::{hash_token, new_participant_id, new_participant_token, participant_token_id};
use crate::room::Refusal;
use sqlx::Row;

/// Most requests to join that may wait in one room: each one shows on the card and in the
/// host view, so a flood of them would bury the real ones.
pub const MAX_PENDING_KNOCKS: i64 = 50;

/// The result of knocking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnockOutcome {
    /// The request waits for the host.
    Waiting { knock_id: String, token: String },
    /// The room is open: join instead.
    NotLocked,
    /// The room has [`MAX_PENDING_KNOCKS`] requests waiting already.
    TooMany,
    /// The room does not take requests (knocking off), or is gone or unknown.
    Refused(Refusal),
}

/// The result of answering a knock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnockAnswer {
    /// Admitted or denied; carries the knocker's name.
    Answered(String),
    /// Admitting would overshoot the room's capacity.
    Full,
    AlreadyAnswered,
    NotFound,
}

impl Store {
    /// Asks to enter a locked room.
    pub async fn knock(&self, room_id: &str, name: &str) -> Result<KnockOutcome, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.write.begin().await?;
        let room = sqlx::query(
            "UPDATE rooms SET version = version + 1 WHERE id = $1 AND ended_at IS NULL RETURNING locked, knock",
        )
        .bind(room_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(room) = room else {
            let why = gone_or_unknown(&mut tx, room_id, now).await?;
            tx.commit().await?;
            return Ok(KnockOutcome::Refused(why));
        };
        if room.try_get::<i64, _>(0)? == 0 {
            return Ok(KnockOutcome::NotLocked);
        }
        if room.try_get::<i64, _>(1)? == 0 {
            return Ok(KnockOutcome::Refused(Refusal::Locked { knock: false }));
        }
        // Counted under the room's row lock: concurrent knocks cannot overshoot the cap.
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM knocks WHERE room_id = $1 AND answer IS NULL")
            .bind(room_id)
            .fetch_one(&mut *tx)
            .await?;
        if pending >= MAX_PENDING_KNOCKS {
            return Ok(KnockOutcome::TooMany);
        }
        // The knock's id becomes the participant's id when the host admits it, so its token
        // is already the participant token it will be.
        let knock_id = new_participant_id();
        let token = new_participant_token(&knock_id);
        sqlx::query("INSERT INTO knocks (room_id, id, name, token_hash, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(room_id)
            .bind(&knock_id)
            .bind(name)
            .bind(hash_token(&token))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(KnockOutcome::Waiting { knock_id, token })
    }

    /// Where a knock stands (`pending`, `admitted`, `denied`); `None` unless the token matches.
    pub async fn knock_status(&self, room_id: &str, knock_id: &str, token: &str) -> Result<Option<String>, StoreError> {
        if participant_token_id(token) != Some(knock_id) {
            return Ok(None);
        }
        let answer: Option<Option<String>> =
            sqlx::query_scalar("SELECT answer FROM knocks WHERE room_id = $1 AND id = $2 AND token_hash = $3")
                .bind(room_id)
                .bind(knock_id)
                .bind(hash_token(token))
                .fetch_optional(&self.read)
                .await?;
        Ok(answer.map(|a| a.unwrap_or_else(|| "pending".into())))
    }

    /// Admits or denies a pending knock. Admission still respects capacity.
    pub async fn answer_knock(&self, room_id: &str, knock_id: &str, admit: bool) -> Result<KnockAnswer, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.write.begin().await?;
        let room = sqlx::query(
            "UPDATE rooms SET version = version + 1, last_active_at = $2 WHERE id = $1 AND ended_at IS NULL \
             RETURNING max_participants",
        )
        .bind(room_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(room) = room else { return Ok(KnockAnswer::NotFound) };
        let max: i64 = room.try_get(0)?;
        let Some(knock) = sqlx::query("SELECT name, token_hash, answer FROM knocks WHERE room_id = $1 AND id = $2")
            .bind(room_id)
            .bind(knock_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(KnockAnswer::NotFound);
        };
        if knock.try_get::<Option<String>, _>(2)?.is_some() {
            return Ok(KnockAnswer::AlreadyAnswered);
        }
        let name: String = knock.try_get(0)?;
        if admit {
            let occupied: i64 =
                sqlx::query_scalar("SELECT count(*) FROM participants WHERE room_id = $1 AND left_at IS NULL")
                    .bind(room_id)
                    .fetch_one(&mut *tx)
                    .await?;
            if occupied >= max {
                return Ok(KnockAnswer::Full);
            }
            sqlx::query(
                "INSERT INTO participants (room_id, id, name, token_hash, joined_at, admitted_at) \
                 VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(room_id)
            .bind(knock_id)
            .bind(&name)
            .bind(knock.try_get::<String, _>(1)?)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE knocks SET answer = $3, answered_at = $4 WHERE room_id = $1 AND id = $2")
            .bind(room_id)
            .bind(knock_id)
            .bind(if admit { "admitted" } else { "denied" })
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(KnockAnswer::Answered(name))
    }

    /// A room's pending requests to join, oldest first: (id, name).
    pub async fn pending_knocks(&self, room_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as("SELECT id, name FROM knocks WHERE room_id = $1 AND answer IS NULL ORDER BY created_at")
            .bind(room_id)
            .fetch_all(&self.read)
            .await?)
    }
}
