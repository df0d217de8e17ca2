//! One node at a time holds each role (a chat adapter, the housekeeping sweeps): elected with a
//! PostgreSQL advisory lock, held by a connection of the role's own.
//!
//! Every node tries the lock every [`TRY_EVERY`]; the holder checks its connection as often.
//! A leader that dies (even `kill -9`) closes its connection and PostgreSQL releases the lock
//! at once; a leader cut off from the database finds out within a few seconds and steps down
//! (stops the adapter) *before* the server gives the lock away, which it does once the silent
//! session times out ([`SESSION_TIMEOUT`]). So a follower takes over within about 10 s, and two
//! nodes never run one adapter together.

use futures::future::BoxFuture;
use sqlx::{Connection, Executor, PgConnection};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a follower tries the lock, and a leader checks its connection.
const TRY_EVERY: Duration = Duration::from_secs(2);
/// How long a check may take before the leader steps down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the server keeps a silent session (and its lock) of a leader cut off from it.
/// Longer than a check's period plus its timeout, so a live leader never loses it.
const SESSION_TIMEOUT: &str = "8s";

/// Runs the election for `role` until `cancel`: `on_change(true)` when this node becomes the
/// leader, `on_change(false)` when it stops being one (it is awaited before anyone else can
/// lead, as long as this process runs).
pub async fn elect(url: String, role: String, on_change: impl Fn(bool) -> BoxFuture<'static, ()>, cancel: CancellationToken) {
    let key = format!("callbridge:{role}");
    let mut logged_failure = false;
    while !cancel.is_cancelled() {
        let mut conn = match connect(&url).await {
            Ok(conn) => {
                logged_failure = false;
                conn
            }
            Err(error) => {
                if !logged_failure {
                    tracing::warn!(%error, role, "cannot reach the database for the election; retrying");
                    logged_failure = true;
                }
                if !pause(&cancel).await {
                    return;
                }
                continue;
            }
        };
        // Follower: try until the lock is ours, or the connection fails (then reconnect).
        let won = loop {
            let attempt = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock(hashtextextended($1, 0))").bind(&key).fetch_one(&mut conn);
            match tokio::time::timeout(CHECK_TIMEOUT, attempt).await {
                Ok(Ok(true)) => break true,
                Ok(Ok(false)) => {
                    if !pause(&cancel).await {
                        return;
                    }
                }
                _ => break false,
            }
        };
        if !won {
            continue;
        }
        tracing::info!(role, "this node now leads");
        on_change(true).await;
        loop {
            if !pause(&cancel).await {
                on_change(false).await;
                return;
            }
            let alive = tokio::time::timeout(CHECK_TIMEOUT, conn.ping()).await;
            if !matches!(alive, Ok(Ok(()))) {
                tracing::warn!(role, "lost the database connection that holds the lead; stepping down");
                on_change(false).await;
                break;
            }
        }
    }
}

/// A connection of its own, whose session the server ends when it falls silent.
async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    // PostgreSQL 14 and later; older servers keep the session until TCP gives up on it.
    let _ = conn.execute(sqlx::AssertSqlSafe(format!("SET idle_session_timeout = '{SESSION_TIMEOUT}'"))).await;
    let _ = conn.execute("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 2").await;
    Ok(conn)
}

/// Waits one period; `false` when cancelled first.
async fn pause(cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(TRY_EVERY) => true,
    }
}
