//! Presence: a participant is in the room while a room page of it is connected.
//!
//! Each daemon is a node with a heartbeat row; a participant's open socket is recorded with
//! its node. When a node dies (kill -9), the others — or the node itself on restart — see its
//! heartbeat go stale and mark its participants as left, so nobody stays "in" forever.

use super::{Store, StoreError};
use crate::ids::{hash_token, participant_token_id};
use sqlx::Row;

/// Participants who never came released in one transaction: each chunk holds the write
/// connection (and so keeps admissions waiting) for a few milliseconds at most.
const NEVER_CAME_CHUNK: usize = 64;

/// A presence change for one participant, for events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    pub room_id: String,
    pub participant_id: String,
    pub name: String,
}

impl Store {
    /// Records an opened room page. `None` when the token is not an admitted participant of
    /// an open room (never admitted, removed, left, or the room ended). The flag says whether
    /// the participant was absent before (a reload within the grace period is not an arrival).
    pub async fn connect_participant(
        &self,
        room_id: &str,
        token: &str,
        node_id: &str,
    ) -> Result<Option<(PresenceChange, bool)>, StoreError> {
        let Some(participant_id) = participant_token_id(token) else { return Ok(None) };
        let now = self.clock.now_ms();
        let row = sqlx::query(
            "UPDATE participants SET present_since = COALESCE(present_since, $3), node_id = $4 \
             WHERE room_id = $1 AND id = $5 AND token_hash = $2 AND left_at IS NULL AND banned_at IS NULL \
             AND EXISTS (SELECT 1 FROM rooms WHERE id = $1 AND ended_at IS NULL) \
             RETURNING id, name, present_since",
        )
        .bind(room_id)
        .bind(hash_token(token))
        .bind(now)
        .bind(node_id)
        .bind(participant_id)
        .fetch_optional(&self.write)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let change = PresenceChange { room_id: room_id.to_owned(), participant_id: row.try_get(0)?, name: row.try_get(1)? };
        Ok(Some((change, row.try_get::<i64, _>(2)? == now)))
    }

    /// Records that a participant has left (its page closed and the grace period passed).
    /// Only the node holding its socket may do so: a page that reconnected to another node
    /// moved `node_id` there. Returns the change when the participant was present.
    pub async fn leave_participant(&self, room_id: &str, participant_id: &str, node_id: &str) -> Result<Option<PresenceChange>, StoreError> {
        let now = self.clock.now_ms();
        let row = sqlx::query(
            "UPDATE participants SET left_at = $3, present_ms = present_ms + ($3 - present_since), \
             present_since = NULL WHERE room_id = $1 AND id = $2 AND present_since IS NOT NULL AND node_id = $4 \
             RETURNING name",
        )
        .bind(room_id)
        .bind(participant_id)
        .bind(now)
        .bind(node_id)
        .fetch_optional(&self.write)
        .await?;
        Ok(match row {
            Some(r) => Some(PresenceChange {
                room_id: room_id.to_owned(),
                participant_id: participant_id.to_owned(),
                name: r.try_get(0)?,
            }),
            None => None,
        })
    }

    /// Whether a token is an admitted participant of an open room (no change recorded).
    pub async fn is_participant(&self, room_id: &str, token: &str) -> Result<bool, StoreError> {
        let Some(participant_id) = participant_token_id(token) else { return Ok(false) };
        let row = sqlx::query(
            "SELECT 1 FROM participants WHERE room_id = $1 AND id = $2 AND token_hash = $3 AND left_at IS NULL AND banned_at IS NULL",
        )
        .bind(room_id)
        .bind(participant_id)
        .bind(hash_token(token))
        .fetch_optional(&self.read)
        .await?;
        Ok(row.is_some())
    }

    /// Marks as left everyone whose room page sat on a node that stopped beating for
    /// `stale_ms`, and everyone admitted more than `connect_timeout_ms` ago whose page never
    /// connected. Returns who left.
    pub async fn sweep_presence(&self, stale_ms: i64, connect_timeout_ms: i64) -> Result<Vec<PresenceChange>, StoreError> {
        let now = self.clock.now_ms();
        let orphans = sqlx::query(
            "UPDATE participants SET left_at = $1, present_ms = present_ms + ($1 - present_since), present_since = NULL \
             WHERE present_since IS NOT NULL AND (node_id IS NULL OR node_id NOT IN \
             (SELECT id FROM nodes WHERE seen_at >= $2)) RETURNING room_id, id, name",
        )
        .bind(now)
        .bind(now - stale_ms)
        .fetch_all(&self.write)
        .await?;
        // Finding who never came reads every participant holding a place, which takes tens of
        // milliseconds once there are hundreds of thousands: that scan runs on a reader, so it
        // never holds the write connection the admission writer needs. Only those found are
        // written, a few at a time, each update checking again that they still never came.
        let cutoff = now - connect_timeout_ms;
        let candidates: Vec<(String, String)> = sqlx::query_as(
            "SELECT room_id, id FROM participants WHERE left_at IS NULL AND present_since IS NULL AND admitted_at < $1",
        )
        .bind(cutoff)
        .fetch_all(&self.read)
        .await?;
        let mut never_came = Vec::new();
        for chunk in candidates.chunks(NEVER_CAME_CHUNK) {
            let released = async {
                let mut tx = self.write.begin().await?;
                let mut left = Vec::with_capacity(chunk.len());
                for (room_id, id) in chunk {
                    let row = sqlx::query(
                        "UPDATE participants SET left_at = $1 WHERE room_id = $2 AND id = $3 \
                         AND left_at IS NULL AND present_since IS NULL AND admitted_at < $4 RETURNING room_id, id, name",
                    )
                    .bind(now)
                    .bind(room_id)
                    .bind(id)
                    .bind(cutoff)
                    .fetch_optional(&mut *tx)
                    .await?;
                    left.extend(row);
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(left)
            };
            // Chunks already committed are reported, so their Left events are not lost; the
            // rest waits for the next sweep.
            match released.await {
                Ok(left) => never_came.extend(left),
                Err(error) => {
                    tracing::warn!(%error, "releasing participants who never came failed; next sweep retries");
                    break;
                }
            }
        }
        sqlx::query("DELETE FROM nodes WHERE seen_at < $1").bind(now - 10 * stale_ms).execute(&self.write).await?;
        orphans
            .into_iter()
            .chain(never_came)
            .map(|r| Ok(PresenceChange { room_id: r.try_get(0)?, participant_id: r.try_get(1)?, name: r.try_get(2)? }))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Marks rooms unused for `expire_ms` as expired; returns their ids.
    pub async fn sweep_expired(&self, expire_ms: i64) -> Result<Vec<String>, StoreError> {
        let now = self.clock.now_ms();
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM rooms WHERE ended_at IS NULL AND last_active_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM participants p WHERE p.room_id = rooms.id AND p.present_since IS NOT NULL)",
        )
        .bind(now - expire_ms)
        .fetch_all(&self.read)
        .await?;
        let mut expired = Vec::new();
        for id in ids {
            let mut tx = self.write.begin().await?;
            if super::rooms::close_room(&mut tx, &id, now, "expired").await? {
                expired.push(id);
            }
            tx.commit().await?;
        }
        Ok(expired)
    }
}
