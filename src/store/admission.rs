//! Admission: who may enter a room, decided in one transaction per batch of joins.
//!
//! Joins go through writer tasks that take every join waiting in their queue (up to
//! [`MAX_BATCH`]) and decide them one after another inside a single transaction. Each
//! decision sees the ones before it, so the rules hold exactly; the batch shares one
//! BEGIN/COMMIT, one room row lock and one occupancy count per room, and one INSERT for its
//! new participants, which is what makes SQLite admit tens of thousands of joins a second.
//! Joins are routed to a writer by room id, so one room's joins keep their arrival order.
//! Within a batch the joins are sorted by room id, so two writers (or two daemons) always
//! take room row locks in the same order and cannot deadlock.

use super::{Backend, Store, StoreError};
use crate::ids::{hash_token, is_token, new_participant_id, new_token};
use crate::room::{Admission, Admitted, JoinRequest, Refusal};
use sqlx::{AnyConnection, Row};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most joins decided in one transaction.
const MAX_BATCH: usize = 256;

struct Job {
    req: JoinRequest,
    reply: oneshot::Sender<Result<Admission, StoreError>>,
}

/// The queue in front of the writer tasks. Cheap to clone.
#[derive(Clone)]
pub struct AdmissionWriter {
    shards: Vec<mpsc::Sender<Job>>,
}

impl AdmissionWriter {
    /// Starts the writer tasks on `tracker`; they stop when `cancel` fires or every handle is
    /// dropped. SQLite gets one writer (it has one write lock); PostgreSQL four.
    pub fn start(store: Store, expire_after: Duration, tracker: &TaskTracker, cancel: CancellationToken) -> Self {
        let writers = match store.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        let shards = (0..writers)
            .map(|_| {
                let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
                tracker.spawn(run_writer(store.clone(), expire_after, rx, cancel.clone()));
                tx
            })
            .collect();
        AdmissionWriter { shards }
    }

    /// Decides one join.
    pub async fn join(&self, req: JoinRequest) -> Result<Admission, StoreError> {
        let shard = req.room_id.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        let (reply, answer) = oneshot::channel();
        self.shards[shard % self.shards.len()].send(Job { req, reply }).await.map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

async fn run_writer(store: Store, expire_after: Duration, mut rx: mpsc::Receiver<Job>, cancel: CancellationToken) {
    let expire_ms = expire_after.as_millis() as i64;
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = tokio::select! {
            _ = cancel.cancelled() => break,
            n = rx.recv_many(&mut batch, MAX_BATCH) => n,
        };
        if received == 0 {
            break;
        }
        batch.sort_by(|a, b| a.req.room_id.cmp(&b.req.room_id));
        match decide_batch(&store, &batch, expire_ms).await {
            Ok(answers) => {
                for (job, answer) in batch.drain(..).zip(answers) {
                    let _ = job.reply.send(Ok(answer));
                }
            }
            Err(error) => {
                // One bad join (or a deadlock victim) must not fail the others: decide each
                // alone, so only the join that really fails reports an error.
                tracing::warn!(%error, size = batch.len(), "admission batch failed; retrying one by one");
                for job in batch.drain(..) {
                    let answer = decide_batch(&store, std::slice::from_ref(&job), expire_ms).await;
                    let _ = job.reply.send(answer.map(|mut a| a.remove(0)));
                }
            }
        }
    }
}

async fn decide_batch(store: &Store, batch: &[Job], expire_ms: i64) -> Result<Vec<Admission>, StoreError> {
    let now = store.clock.now_ms();
    let mut tx = store.write.begin().await?;
    let mut answers = Vec::with_capacity(batch.len());
    for room_jobs in batch.chunk_by(|a, b| a.req.room_id == b.req.room_id) {
        decide_room(&mut tx, room_jobs, now, expire_ms, &mut answers).await?;
    }
    tx.commit().await?;
    Ok(answers)
}

/// A participant admitted in this batch, not yet written.
struct Fresh {
    id: String,
    token_hash: String,
    name: String,
    user_ref: Option<String>,
}

/// Decides one room's joins of a batch in arrival order, by the rule of the contract: unknown →
/// gone → banned → rejoin → locked → full → admitted. The room row is locked once and its
/// occupancy counted once; each decision then sees the ones before it through a running
/// count, and the new participants are written with one multi-row INSERT. That keeps a burst
/// into one room at a handful of statements per batch instead of several per join.
async fn decide_room(
    conn: &mut AnyConnection,
    jobs: &[Job],
    now: i64,
    expire_ms: i64,
    answers: &mut Vec<Admission>,
) -> Result<(), sqlx::Error> {
    use Admission::Refused;
    let room_id = &jobs[0].req.room_id;
    // Takes the room's row lock until commit; every rule below is read under it.
    let room = sqlx::query(
        "UPDATE rooms SET last_active_at = $2, version = version + 1 \
         WHERE id = $1 AND ended_at IS NULL AND last_active_at >= $3 \
         RETURNING locked, knock, max_participants",
    )
    .bind(room_id)
    .bind(now)
    .bind(now - expire_ms)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(room) = room else {
        let refusal = gone_or_unknown(conn, room_id, now).await?;
        answers.extend(jobs.iter().map(|_| Refused(refusal)));
        return Ok(());
    };
    let locked = room.try_get::<i64, _>(0)? != 0;
    let knock = room.try_get::<i64, _>(1)? != 0;
    let max = room.try_get::<i64, _>(2)?;

    // Slots held, counting this batch's admissions; `None` once a rejoin may have changed it.
    let mut occupied: Option<i64> = None;
    let mut fresh: Vec<Fresh> = Vec::new();
    for Job { req, .. } in jobs {
        if let Some(token) = req.token.as_deref().filter(|t| is_token(t)) {
            let known = sqlx::query("SELECT id, name, banned_at FROM participants WHERE room_id = $1 AND token_hash = $2")
                .bind(room_id)
                .bind(hash_token(token))
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(p) = known {
                if p.try_get::<Option<i64>, _>(2)?.is_some() {
                    answers.push(Refused(Refusal::Banned));
                    continue;
                }
                let participant_id: String = p.try_get(0)?;
                sqlx::query("UPDATE participants SET left_at = NULL, admitted_at = $3 WHERE room_id = $1 AND id = $2")
                    .bind(room_id)
                    .bind(&participant_id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                occupied = None;
                answers.push(Admission::Admitted(Admitted {
                    participant_id,
                    token: token.to_owned(),
                    name: p.try_get(1)?,
                    rejoin: true,
                }));
                continue;
            }
        }
        if let Some(user_ref) = &req.user_ref {
            let banned = sqlx::query("SELECT 1 FROM participants WHERE room_id = $1 AND user_ref = $2 AND banned_at IS NOT NULL LIMIT 1")
                .bind(room_id)
                .bind(user_ref)
                .fetch_optional(&mut *conn)
                .await?;
            if banned.is_some() {
                answers.push(Refused(Refusal::Banned));
                continue;
            }
        }
        if locked && !req.host {
            answers.push(Refused(Refusal::Locked { knock }));
            continue;
        }
        let held = match occupied {
            Some(n) => n,
            None => {
                insert_fresh(conn, room_id, &mut fresh, now).await?;
                sqlx::query_scalar("SELECT count(*) FROM participants WHERE room_id = $1 AND left_at IS NULL")
                    .bind(room_id)
                    .fetch_one(&mut *conn)
                    .await?
            }
        };
        if held >= max {
            occupied = Some(held);
            answers.push(Refused(Refusal::Full));
            continue;
        }
        occupied = Some(held + 1);
        let (participant_id, token) = (new_participant_id(), new_token());
        fresh.push(Fresh { id: participant_id.clone(), token_hash: hash_token(&token), name: req.name.clone(), user_ref: req.user_ref.clone() });
        answers.push(Admission::Admitted(Admitted { participant_id, token, name: req.name.clone(), rejoin: false }));
    }
    insert_fresh(conn, room_id, &mut fresh, now).await
}

/// Most rows in one INSERT (4 parameters each plus 2 shared: far below both databases' limits).
const INSERT_ROWS: usize = 128;

/// Writes (and empties) `fresh` with multi-row INSERTs of power-of-two sizes, so a handful of
/// prepared statements serve every batch size and stay in the connection's statement cache.
async fn insert_fresh(conn: &mut AnyConnection, room_id: &str, fresh: &mut Vec<Fresh>, now: i64) -> Result<(), sqlx::Error> {
    let mut rest: &[Fresh] = fresh;
    while !rest.is_empty() {
        let n = INSERT_ROWS.min(1 << rest.len().ilog2());
        let (rows, tail) = rest.split_at(n);
        rest = tail;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(insert_sql(n))).bind(room_id).bind(now);
        for f in rows {
            q = q.bind(&f.id).bind(&f.token_hash).bind(&f.name).bind(&f.user_ref);
        }
        q.execute(&mut *conn).await?;
    }
    fresh.clear();
    Ok(())
}

/// `INSERT … VALUES` for `rows` participants: `$1` room id, `$2` time, then four per row.
fn insert_sql(rows: usize) -> String {
    // SQLite numbers `$N` parameters by first appearance, so they appear in order.
    let mut sql = String::from("INSERT INTO participants (room_id, joined_at, admitted_at, id, token_hash, name, user_ref) VALUES ");
    for i in 0..rows {
        let p = 3 + i * 4;
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!("($1, $2, $2, ${}, ${}, ${}, ${})", p, p + 1, p + 2, p + 3));
    }
    sql
}

/// Why a room that did not take the row lock is not joinable; marks a newly expired room.
pub(super) async fn gone_or_unknown(conn: &mut AnyConnection, room_id: &str, now: i64) -> Result<Refusal, sqlx::Error> {
    let row = sqlx::query("SELECT end_reason FROM rooms WHERE id = $1").bind(room_id).fetch_optional(&mut *conn).await?;
    let Some(row) = row else { return Ok(Refusal::NotFound) };
    match row.try_get::<Option<String>, _>(0)?.as_deref() {
        Some("ended") => Ok(Refusal::Ended),
        Some(_) => Ok(Refusal::Expired),
        None => {
            super::rooms::close_room(conn, room_id, now, "expired").await?;
            Ok(Refusal::Expired)
        }
    }
}
