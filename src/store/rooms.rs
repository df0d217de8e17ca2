//! Creating rooms, host actions (lock, unlock, end, remove), host checks and the room view.

use super::{Store, StoreError};
use crate::clock::rfc3339;
use crate::room::{Media, RoomKind};
use crate::ids::{RoomId, hash_token, is_token, new_room_id, new_token, secret_eq};
use crate::room::{CreatedRoom, KnockView, NewRoom, OPENS_BEFORE_START, ParticipantView, RoomStatus, RoomView};
use sqlx::{AnyConnection, Row};

/// The result of lock, unlock and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateChange {
    /// The room changed.
    Changed,
    /// The room already was in that state.
    Unchanged,
    NotFound,
    /// The room has ended or expired.
    Gone,
}

/// The result of removing a participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// Removed and banned; carries the participant's name.
    Removed(String),
    AlreadyRemoved,
    NotFound,
}

/// Whether a token holds host powers over a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCheck {
    Host,
    NotHost,
    NoRoom,
}

impl Store {
    /// Mints a room.
    pub async fn create_room(&self, new: &NewRoom) -> Result<CreatedRoom, StoreError> {
        let now = self.clock.now_ms();
        let (id, host_token) = (RoomId::trusted(new_room_id()), new_token());
        sqlx::query(
            "INSERT INTO rooms (id, kind, title, host_name, host_ref, chat_ref, host_token_hash, \
             max_participants, knock, created_at, last_active_at, media, chat_name, starts_at, platform) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14)",
        )
        .bind(id.as_str())
        .bind(new.kind.as_str())
        .bind(&new.title)
        .bind(&new.host_name)
        .bind(&new.host_ref)
        .bind(&new.chat_ref)
        .bind(hash_token(&host_token))
        .bind(new.max_participants as i64)
        .bind(new.knock as i64)
        .bind(now)
        .bind(new.media.as_str())
        .bind(&new.chat_name)
        .bind(new.starts_at)
        .bind(&new.platform)
        .execute(&self.write)
        .await?;
        Ok(CreatedRoom { id, host_token })
    }

    /// The chat user who minted a room (`None`: minted on the web, or no such room).
    pub async fn room_host_ref(&self, room_id: &str) -> Result<Option<String>, StoreError> {
        let host: Option<Option<String>> =
            sqlx::query_scalar("SELECT host_ref FROM rooms WHERE id = $1").bind(room_id).fetch_optional(&self.read).await?;
        Ok(host.flatten())
    }

    /// Checks a host token in constant time.
    pub async fn check_host_token(&self, room_id: &str, token: &str) -> Result<HostCheck, StoreError> {
        let stored: Option<String> = sqlx::query_scalar("SELECT host_token_hash FROM rooms WHERE id = $1")
            .bind(room_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(match stored {
            None => HostCheck::NoRoom,
            Some(hash) if is_token(token) && secret_eq(&hash, &hash_token(token)) => HostCheck::Host,
            Some(_) => HostCheck::NotHost,
        })
    }

    /// Locks or unlocks a room. Takes the row lock, so a join that commits after this returns
    /// sees the new state.
    pub async fn set_locked(&self, room_id: &str, locked: bool) -> Result<StateChange, StoreError> {
        let now = self.clock.now_ms();
        let done = sqlx::query(
            "UPDATE rooms SET locked = $2, version = version + 1, last_active_at = $3 \
             WHERE id = $1 AND ended_at IS NULL AND locked <> $2",
        )
        .bind(room_id)
        .bind(locked as i64)
        .bind(now)
        .execute(&self.write)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(StateChange::Changed);
        }
        self.unchanged_or_missing(room_id).await
    }

    /// Ends a room: the link is gone, everyone has left, pending knocks are denied.
    pub async fn end_room(&self, room_id: &str) -> Result<StateChange, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.write.begin().await?;
        let changed = close_room(&mut tx, room_id, now, "ended").await?;
        tx.commit().await?;
        if changed {
            return Ok(StateChange::Changed);
        }
        self.unchanged_or_missing(room_id).await
    }

    async fn unchanged_or_missing(&self, room_id: &str) -> Result<StateChange, StoreError> {
        let ended: Option<Option<i64>> = sqlx::query_scalar("SELECT ended_at FROM rooms WHERE id = $1")
            .bind(room_id)
            .fetch_optional(&self.write)
            .await?;
        Ok(match ended {
            None => StateChange::NotFound,
            Some(Some(_)) => StateChange::Gone,
            Some(None) => StateChange::Unchanged,
        })
    }

    /// Removes a participant: frees its place and bans its token (and chat identity).
    pub async fn remove_participant(&self, room_id: &str, participant_id: &str) -> Result<RemoveOutcome, StoreError> {
        let now = self.clock.now_ms();
        let row = sqlx::query(
            "UPDATE participants SET banned_at = $3, left_at = COALESCE(left_at, $3), \
             present_ms = present_ms + COALESCE($3 - present_since, 0), present_since = NULL \
             WHERE room_id = $1 AND id = $2 AND banned_at IS NULL RETURNING name",
        )
        .bind(room_id)
        .bind(participant_id)
        .bind(now)
        .fetch_optional(&self.write)
        .await?;
        if let Some(row) = row {
            return Ok(RemoveOutcome::Removed(row.try_get(0)?));
        }
        let exists = sqlx::query("SELECT 1 FROM participants WHERE room_id = $1 AND id = $2")
            .bind(room_id)
            .bind(participant_id)
            .fetch_optional(&self.write)
            .await?;
        Ok(if exists.is_some() { RemoveOutcome::AlreadyRemoved } else { RemoveOutcome::NotFound })
    }

    /// The whole state of a room; `None` when unknown. `with_knocks` adds the knock list (host
    /// and API only).
    pub async fn room_view(&self, room_id: &str, base_url: &str, with_knocks: bool) -> Result<Option<RoomView>, StoreError> {
        let now = self.clock.now_ms();
        let Some(r) = sqlx::query(
            "SELECT kind, title, host_name, host_ref, chat_ref, max_participants, knock, locked, \
             created_at, ended_at, end_reason, media, chat_name, starts_at, platform FROM rooms WHERE id = $1",
        )
        .bind(room_id)
        .fetch_optional(&self.read)
        .await?
        else {
            return Ok(None);
        };
        let participants = sqlx::query(
            "SELECT id, name, joined_at, left_at, present_since, present_ms, banned_at, user_ref FROM participants \
             WHERE room_id = $1 ORDER BY joined_at, id",
        )
        .bind(room_id)
        .fetch_all(&self.read)
        .await?
        .into_iter()
        .map(|p| {
            let present_since: Option<i64> = p.try_get(4)?;
            let present_ms: i64 = p.try_get(5)?;
            Ok(ParticipantView {
                id: p.try_get(0)?,
                name: p.try_get(1)?,
                joined_at: rfc3339(p.try_get(2)?),
                left_at: p.try_get::<Option<i64>, _>(3)?.map(rfc3339),
                present: present_since.is_some(),
                seconds_present: (present_ms + present_since.map_or(0, |s| (now - s).max(0))) / 1000,
                removed: p.try_get::<Option<i64>, _>(6)?.is_some(),
                vouched_by: p.try_get::<Option<String>, _>(7)?.and_then(|u| u.split_once(':').map(|(platform, _)| platform.to_owned())),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let knocks = if with_knocks {
            let rows = sqlx::query("SELECT id, name, created_at, answer FROM knocks WHERE room_id = $1 ORDER BY created_at, id")
                .bind(room_id)
                .fetch_all(&self.read)
                .await?;
            Some(
                rows.into_iter()
                    .map(|k| {
                        Ok(KnockView {
                            id: k.try_get(0)?,
                            name: k.try_get(1)?,
                            created_at: rfc3339(k.try_get(2)?),
                            status: k.try_get::<Option<String>, _>(3)?.unwrap_or_else(|| "pending".into()),
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()?,
            )
        } else {
            None
        };
        let max: i64 = r.try_get(5)?;
        let locked = r.try_get::<i64, _>(7)? != 0;
        let ended_at: Option<i64> = r.try_get(9)?;
        let end_reason: Option<String> = r.try_get(10)?;
        let occupied = participants.iter().filter(|p| p.left_at.is_none()).count() as i64;
        let status = match (ended_at, end_reason.as_deref()) {
            (Some(_), Some("expired")) => RoomStatus::Expired,
            (Some(_), _) => RoomStatus::Ended,
            _ if locked => RoomStatus::Locked,
            _ if occupied >= max => RoomStatus::Full,
            _ => RoomStatus::Open,
        };
        Ok(Some(RoomView {
            id: room_id.to_owned(),
            url: format!("{base_url}/r/{room_id}"),
            kind: RoomKind::parse(&r.try_get::<String, _>(0)?).unwrap_or_default(),
            media: Media::parse(&r.try_get::<String, _>(11)?).unwrap_or(Media::Mesh),
            title: r.try_get(1)?,
            host_name: r.try_get(2)?,
            host_ref: r.try_get(3)?,
            chat_ref: r.try_get(4)?,
            chat_name: r.try_get(12)?,
            platform: r.try_get(14)?,
            starts_at: r.try_get::<Option<i64>, _>(13)?.map(rfc3339),
            opens_at: r.try_get::<Option<i64>, _>(13)?.map(|s| rfc3339(s - OPENS_BEFORE_START.as_millis() as i64)),
            starts_at_ms: r.try_get(13)?,
            status,
            locked,
            ended: ended_at.is_some(),
            knock: r.try_get::<i64, _>(6)? != 0,
            capacity: max as u32,
            max_participants: max as u32,
            created_at: rfc3339(r.try_get(8)?),
            ended_at: ended_at.map(rfc3339),
            participants,
            knocks,
        }))
    }
}

/// Marks a room ended (or expired) with everyone out and knocks denied. Returns whether the
/// room was open before.
pub(super) async fn close_room(conn: &mut AnyConnection, room_id: &str, now: i64, reason: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(CLOSE_ROOM[0]).bind(room_id).bind(now).bind(reason).execute(&mut *conn).await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    for sql in &CLOSE_ROOM[1..] {
        sqlx::query(*sql).bind(room_id).bind(now).execute(&mut *conn).await?;
    }
    Ok(true)
}

/// Closing a room: `$1` room id, `$2` time, and in the first statement `$3` the reason. The
/// others run only when the first changed a row: everyone leaves, pending knocks are denied.
pub(super) const CLOSE_ROOM: [&str; 3] = [
    "UPDATE rooms SET ended_at = $2, end_reason = $3, version = version + 1 WHERE id = $1 AND ended_at IS NULL",
    "UPDATE participants SET left_at = COALESCE(left_at, $2), \
     present_ms = present_ms + COALESCE($2 - present_since, 0), present_since = NULL WHERE room_id = $1",
    "UPDATE knocks SET answer = 'denied', answered_at = $2 WHERE room_id = $1 AND answer IS NULL",
];
