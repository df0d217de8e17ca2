//! The nodes of one deployment: where each is reached, which node serves a room's pages, a
//! node's retirement, and what chat adapters keep across nodes (their state and the inbound
//! updates already taken).

use super::{PresenceChange, Store, StoreError};
use sqlx::Row;

/// Which node serves a room's page sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Home {
    /// This node (it is now recorded as the room's home).
    Here,
    /// Another live node, reached at this internal URL.
    At(String),
}

impl Store {
    /// The database server's clock, in milliseconds since the Unix epoch (PostgreSQL).
    pub async fn server_time_ms(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)").fetch_one(&self.read).await?)
    }

    /// The node's heartbeat, with where the other nodes reach it.
    pub async fn heartbeat(&self, node_id: &str, internal_url: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO nodes (id, seen_at, internal_url) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, internal_url = excluded.internal_url",
        )
        .bind(node_id)
        .bind(self.clock.now_ms())
        .bind(internal_url)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The home of a room's page sockets, seen from `node_id`: its recorded home when that node
    /// beat within `stale_ms`, else this node, which is recorded (so the room moves to a live
    /// node when its home is gone). An unknown room is `Here` (its socket is refused there).
    pub async fn room_home(&self, room_id: &str, node_id: &str, stale_ms: i64) -> Result<Home, StoreError> {
        let alive_since = self.clock.now_ms() - stale_ms;
        let claimed = sqlx::query(
            "UPDATE rooms SET home_node = $2 WHERE id = $1 AND ended_at IS NULL AND (home_node IS NULL OR home_node = $2 \
             OR home_node NOT IN (SELECT id FROM nodes WHERE seen_at >= $3)) RETURNING id",
        )
        .bind(room_id)
        .bind(node_id)
        .bind(alive_since)
        .fetch_optional(&self.write)
        .await?;
        if claimed.is_some() {
            return Ok(Home::Here);
        }
        let url: Option<Option<String>> = sqlx::query_scalar(
            "SELECT n.internal_url FROM rooms r JOIN nodes n ON n.id = r.home_node WHERE r.id = $1 AND r.home_node <> $2",
        )
        .bind(room_id)
        .bind(node_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(match url.flatten() {
            Some(url) => Home::At(url),
            None => Home::Here,
        })
    }

    /// Where another node is reached, when it is alive.
    pub async fn node_url(&self, node_id: &str, stale_ms: i64) -> Result<Option<String>, StoreError> {
        let url: Option<Option<String>> = sqlx::query_scalar("SELECT internal_url FROM nodes WHERE id = $1 AND seen_at >= $2")
            .bind(node_id)
            .bind(self.clock.now_ms() - stale_ms)
            .fetch_optional(&self.read)
            .await?;
        Ok(url.flatten())
    }

    /// A cleanly stopping node leaves: its row goes, the rooms it was home to are free to move,
    /// and everyone whose page it held is marked left at once. Returns who left.
    pub async fn retire(&self, node_id: &str) -> Result<Vec<PresenceChange>, StoreError> {
        let now = self.clock.now_ms();
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM nodes WHERE id = $1").bind(node_id).execute(&mut *tx).await?;
        sqlx::query("UPDATE rooms SET home_node = NULL WHERE home_node = $1").bind(node_id).execute(&mut *tx).await?;
        let left = sqlx::query(
            "UPDATE participants SET left_at = $1, present_ms = present_ms + ($1 - present_since), present_since = NULL \
             WHERE node_id = $2 AND present_since IS NOT NULL RETURNING room_id, id, name",
        )
        .bind(now)
        .bind(node_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        left.into_iter()
            .map(|r| Ok(PresenceChange { room_id: r.try_get(0)?, participant_id: r.try_get(1)?, name: r.try_get(2)? }))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// A value a chat adapter keeps (`None` when never saved).
    pub async fn adapter_value(&self, platform: &str, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM adapter_state WHERE platform = $1 AND key = $2")
            .bind(platform)
            .bind(key)
            .fetch_optional(&self.read)
            .await?)
    }

    /// Saves a value a chat adapter keeps.
    pub async fn set_adapter_value(&self, platform: &str, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO adapter_state (platform, key, value) VALUES ($1, $2, $3) \
             ON CONFLICT (platform, key) DO UPDATE SET value = excluded.value",
        )
        .bind(platform)
        .bind(key)
        .bind(value)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Takes an inbound update for an adapter's run (`node_id`: the node and its run of the
    /// adapter): `true` the first time `key` is taken for `platform`, and when another run took
    /// it and never finished (only the adapter's leader takes updates, one run at a time, so
    /// that run has stopped); `false` once it is finished, or taken by this run. `payload` is kept until it is finished, for a leader that takes it over.
    pub async fn claim_update(&self, platform: &str, key: &str, node_id: &str, payload: Option<&str>) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "INSERT INTO handled (platform, key, at, node_id, done, payload) VALUES ($1, $2, $3, $4, 0, $5)              ON CONFLICT (platform, key) DO UPDATE SET node_id = excluded.node_id, at = excluded.at              WHERE handled.done = 0 AND handled.node_id <> excluded.node_id",
        )
        .bind(platform)
        .bind(key)
        .bind(self.clock.now_ms())
        .bind(node_id)
        .bind(payload)
        .execute(&self.write)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    /// Marks an update's handling finished.
    pub async fn finish_update(&self, platform: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE handled SET done = 1, payload = NULL WHERE platform = $1 AND key = $2")
            .bind(platform)
            .bind(key)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Updates other runs took and never finished, oldest first, with their payloads.
    pub async fn unfinished_updates(&self, platform: &str, node_id: &str) -> Result<Vec<(String, Option<String>)>, StoreError> {
        Ok(sqlx::query_as("SELECT key, payload FROM handled WHERE platform = $1 AND done = 0 AND node_id <> $2 ORDER BY at")
            .bind(platform)
            .bind(node_id)
            .fetch_all(&self.read)
            .await?)
    }

    /// Forgets updates taken more than `older_than_ms` ago (no platform delivers them again).
    pub async fn prune_claims(&self, older_than_ms: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM handled WHERE at < $1").bind(self.clock.now_ms() - older_than_ms).execute(&self.write).await?;
        Ok(())
    }
}
