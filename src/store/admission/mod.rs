//! Admission: who may enter a room, decided in one transaction per batch of joins.
//!
//! Joins go through writer tasks that take every join waiting in their queue (up to
//! [`MAX_BATCH`]) and decide them one after another inside a single transaction. Each
//! decision sees the ones before it, so the rules hold exactly; the batch shares one
//! BEGIN/COMMIT, one read of each room's rules and occupancy (under PostgreSQL's row lock;
//! SQLite's writer holds the whole database), and the writes of its new participants. Joins
//! are routed to a writer by room id, so one room's joins keep their arrival order. Within a
//! batch the joins are sorted by room id, so two writers (or two daemons) always take room
//! row locks in the same order and cannot deadlock.
//!
//! The rules are written once ([`decide_room`]) over the few statements they need
//! ([`AdmissionDb`]). PostgreSQL runs them through sqlx on four writer tasks. SQLite, which
//! has one writer anyway, runs them on a thread of its own through rusqlite (the same SQLite
//! library sqlx links): a batch is then plain function calls, where every statement through
//! sqlx's worker thread cost a wake-up of another thread, and on a busy machine that
//! scheduling, not SQLite, bounded how many joins a second one writer could decide; it also
//! keeps each room's rules and count from one batch to the next while no other connection
//! has committed.

use super::{Backend, Store, StoreError};
use crate::ids::{hash_token, new_participant_id, new_participant_token, participant_token_id};
use crate::room::{Admission, Admitted, JoinRequest, OPENS_BEFORE_START, Refusal};
use sqlx::{AnyConnection, Row};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod sqlite;

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
    pub fn start(store: Store, timing: Timing, tracker: &TaskTracker, cancel: CancellationToken) -> Result<Self, StoreError> {
        let writers = match store.backend {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        let mut shards = Vec::with_capacity(writers);
        for _ in 0..writers {
            let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
            let (store, cancel) = (store.clone(), cancel.clone());
            match store.backend {
                Backend::Sqlite => {
                    let db = sqlite::open(&store)?;
                    tracker.spawn_blocking(move || sqlite::run_writer(store, db, timing, rx, cancel));
                }
                Backend::Postgres => {
                    tracker.spawn(run_writer(store, timing, rx, cancel));
                }
            }
            shards.push(tx);
        }
        Ok(AdmissionWriter { shards })
    }

    /// Decides one join.
    pub async fn join(&self, req: JoinRequest) -> Result<Admission, StoreError> {
        let shard = req.room_id.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        let (reply, answer) = oneshot::channel();
        self.shards[shard % self.shards.len()].send(Job { req, reply }).await.map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }
}

async fn run_writer(store: Store, timing: Timing, mut rx: mpsc::Receiver<Job>, cancel: CancellationToken) {
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
        let now = store.clock.now_ms();
        match decide_in_tx(&store, &batch, now, timing).await {
            Ok(answers) => answer_all(&mut batch, answers),
            Err(error) => {
                retrying(&error, &batch);
                for job in batch.drain(..) {
                    let answer = decide_in_tx(&store, std::slice::from_ref(&job), now, timing).await;
                    let _ = job.reply.send(answer.map(|mut a| a.remove(0)));
                }
            }
        }
    }
}

async fn decide_in_tx(store: &Store, jobs: &[Job], now: i64, timing: Timing) -> Result<Vec<Admission>, StoreError> {
    let waiting = std::time::Instant::now();
    let mut tx = store.write.begin().await?;
    metrics::histogram!("callbridge_db_wait_seconds", "pool" => "write").record(waiting.elapsed().as_secs_f64());
    let answers = decide_batch(&mut *tx, jobs, now, timing).await?;
    tx.commit().await?;
    Ok(answers)
}

/// Answers every job of `batch` (emptying it) with its decision.
fn answer_all(batch: &mut Vec<Job>, answers: Vec<Admission>) {
    for (job, answer) in batch.drain(..).zip(answers) {
        let _ = job.reply.send(Ok(answer));
    }
}

/// A failed batch is decided again one join at a time, so only a join that really fails
/// reports an error (one bad join, or a deadlock victim, must not fail the others).
fn retrying(error: &StoreError, batch: &[Job]) {
    tracing::warn!(%error, size = batch.len(), "admission batch failed; retrying one by one");
}

/// Decides a batch (sorted by room) inside the caller's transaction.
async fn decide_batch(db: &mut (impl AdmissionDb + Send), batch: &[Job], now: i64, timing: Timing) -> Result<Vec<Admission>, StoreError> {
    let mut answers = Vec::with_capacity(batch.len());
    for room_jobs in batch.chunk_by(|a, b| a.req.room_id == b.req.room_id) {
        decide_room(db, room_jobs, now, timing, &mut answers).await?;
    }
    Ok(answers)
}

/// What a room's row lock returns: its rules and how many places are held.
struct RoomRules {
    locked: bool,
    knock: bool,
    max: i64,
    held: i64,
    /// A scheduled call's start: its room opens [`OPENS_BEFORE_START`] before.
    starts_at: Option<i64>,
}

/// A participant found by its token.
struct Known {
    id: String,
    name: String,
    banned: bool,
    /// When the participant gave its place back (`None`: it holds one).
    left_at: Option<i64>,
}

/// The times admission rules depend on, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// A room unused this long is expired.
    pub expire_ms: i64,
    /// A participant who left this recently may still come back past a lock or a full room
    /// (a reload, a network change); after that, its token joins like anyone new.
    pub grace_ms: i64,
}

/// A participant admitted in this batch, not yet written.
struct Fresh {
    id: String,
    token_hash: String,
    name: String,
    user_ref: Option<String>,
}

/// The statements admission needs, inside one transaction on one connection. (The futures
/// are `Send` so the PostgreSQL writers can run on the shared runtime.)
trait AdmissionDb {
    /// The room's rules and places held, if it is open and unexpired, and its use recorded;
    /// no other writer can change the room until commit (PostgreSQL: the room's row lock;
    /// SQLite: the writer holds the database's write lock).
    fn lock_room(&mut self, room_id: &str, now: i64, active_since: i64) -> impl Future<Output = Result<Option<RoomRules>, StoreError>> + Send;
    /// Why a room that gave no row lock cannot be joined (marking a newly expired room).
    fn gone_or_unknown(&mut self, room_id: &str, now: i64) -> impl Future<Output = Result<Refusal, StoreError>> + Send;
    /// The participant a token names, if the token is really theirs.
    fn by_token(&mut self, room_id: &str, participant_id: &str, token_hash: &str) -> impl Future<Output = Result<Option<Known>, StoreError>> + Send;
    /// Admits an earlier participant again.
    fn readmit(&mut self, room_id: &str, participant_id: &str, now: i64) -> impl Future<Output = Result<(), StoreError>> + Send;
    fn user_banned(&mut self, room_id: &str, user_ref: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn held(&mut self, room_id: &str) -> impl Future<Output = Result<i64, StoreError>> + Send;
    fn insert(&mut self, room_id: &str, fresh: &[Fresh], now: i64) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Decides one room's joins of a batch in arrival order, by the rule of the contract: unknown →
/// gone → banned → rejoin → locked → full → admitted. The room row is locked once and its
/// occupancy counted with it; each decision then sees the ones before it through a running
/// count, and the new participants are written together at the end (one INSERT on PostgreSQL).
/// That keeps a burst into one room at a handful of statements per batch, not several per join.
async fn decide_room(
    db: &mut (impl AdmissionDb + Send),
    jobs: &[Job],
    now: i64,
    timing: Timing,
    answers: &mut Vec<Admission>,
) -> Result<(), StoreError> {
    use Admission::Refused;
    let room_id = &jobs[0].req.room_id;
    let Some(room) = db.lock_room(room_id, now, now - timing.expire_ms).await? else {
        let refusal = db.gone_or_unknown(room_id, now).await?;
        answers.extend(jobs.iter().map(|_| Refused(refusal)));
        return Ok(());
    };
    // Places held, counting this batch's admissions; `None` once a rejoin may have changed it.
    let mut occupied: Option<i64> = Some(room.held);
    let mut fresh: Vec<Fresh> = Vec::new();
    for Job { req, .. } in jobs {
        if let Some(token) = req.token.as_deref()
            && let Some(participant_id) = participant_token_id(token)
            && let Some(known) = db.by_token(room_id, participant_id, &hash_token(token)).await?
        {
            if known.banned {
                answers.push(Refused(Refusal::Banned));
                continue;
            }
            // Only a participant that still holds its place, or gave it back moments ago, comes
            // back past a lock or a full room: an old token is a new join, or a collection of
            // tokens would fill a locked room past its capacity.
            let long_gone = known.left_at.is_some_and(|left_at| left_at < now - timing.grace_ms);
            if long_gone && let Err(refusal) = take_place(db, room_id, &room, req, &mut occupied, &mut fresh, now).await? {
                answers.push(Refused(refusal));
                continue;
            }
            db.readmit(room_id, &known.id, now).await?;
            if !long_gone {
                // Its place was held, or was given back moments ago: count again.
                occupied = None;
            }
            answers.push(Admission::Admitted(Admitted { participant_id: known.id, token: token.to_owned(), name: known.name, rejoin: true }));
            continue;
        }
        if let Some(user_ref) = &req.user_ref
            && db.user_banned(room_id, user_ref).await?
        {
            answers.push(Refused(Refusal::Banned));
            continue;
        }
        if let Err(refusal) = take_place(db, room_id, &room, req, &mut occupied, &mut fresh, now).await? {
            answers.push(Refused(refusal));
            continue;
        }
        let participant_id = new_participant_id();
        let token = new_participant_token(&participant_id);
        fresh.push(Fresh { id: participant_id.clone(), token_hash: hash_token(&token), name: req.name.clone(), user_ref: req.user_ref.clone() });
        answers.push(Admission::Admitted(Admitted { participant_id, token, name: req.name.clone(), rejoin: false }));
    }
    db.insert(room_id, &fresh, now).await
}

/// Takes a place for one joiner, counting this batch's (`occupied`, counted again from the
/// database when `None`, writing `fresh` first): refused when the room is locked (but for its
/// host) or full.
async fn take_place(
    db: &mut (impl AdmissionDb + Send),
    room_id: &str,
    room: &RoomRules,
    req: &JoinRequest,
    occupied: &mut Option<i64>,
    fresh: &mut Vec<Fresh>,
    now: i64,
) -> Result<Result<(), Refusal>, StoreError> {
    // A scheduled call's room opens shortly before its start, but to its host.
    if let Some(opens_at) = room.starts_at.map(|s| s - OPENS_BEFORE_START.as_millis() as i64)
        && now < opens_at
        && !req.host
    {
        return Ok(Err(Refusal::NotYet { opens_at }));
    }
    if room.locked && !req.host {
        return Ok(Err(Refusal::Locked { knock: room.knock }));
    }
    let held = match *occupied {
        Some(n) => n,
        None => {
            db.insert(room_id, fresh, now).await?;
            fresh.clear();
            db.held(room_id).await?
        }
    };
    if held >= room.max {
        *occupied = Some(held);
        return Ok(Err(Refusal::Full));
    }
    *occupied = Some(held + 1);
    Ok(Ok(()))
}

/// The row lock: bumps the room's version if it is open and unexpired, returning its rules.
/// On PostgreSQL the places held are counted by a statement of their own, after this one:
/// under READ COMMITTED a count inside it would read the snapshot taken before it waited for
/// the lock, and miss the admissions of the transaction it waited for.
const LOCK_ROOM: &str = "UPDATE rooms SET last_active_at = $2, version = version + 1 \
     WHERE id = $1 AND ended_at IS NULL AND last_active_at >= $3 \
     RETURNING locked, knock, max_participants, starts_at";
const BY_TOKEN: &str = "SELECT id, name, banned_at, left_at FROM participants WHERE room_id = $1 AND id = $2 AND token_hash = $3";
const READMIT: &str = "UPDATE participants SET left_at = NULL, admitted_at = $3 WHERE room_id = $1 AND id = $2";
const USER_BANNED: &str = "SELECT 1 FROM participants WHERE room_id = $1 AND user_ref = $2 AND banned_at IS NOT NULL LIMIT 1";
const HELD: &str = "SELECT count(*) FROM participants WHERE room_id = $1 AND left_at IS NULL";
/// One new participant: SQLite's writer runs it in-process once per row, which costs less
/// than building and parsing a JSON array.
const INSERT_ROW: &str = "INSERT INTO participants (room_id, joined_at, admitted_at, id, token_hash, name, user_ref) \
     VALUES ($1, $2, $2, $3, $4, $5, $6)";
/// `$1` room id, `$2` time, `$3` a JSON array of `[id, token_hash, name, user_ref]`: one
/// statement (one plan, one round trip) whatever the batch's size.
const INSERT_POSTGRES: &str = "INSERT INTO participants (room_id, joined_at, admitted_at, id, token_hash, name, user_ref) \
     SELECT $1, $2, $2, r ->> 0, r ->> 1, r ->> 2, r ->> 3 FROM jsonb_array_elements($3::jsonb) AS r";

/// The new participants as the JSON array the INSERTs read.
fn fresh_json(fresh: &[Fresh]) -> String {
    let rows: Vec<[Option<&str>; 4]> =
        fresh.iter().map(|f| [Some(f.id.as_str()), Some(f.token_hash.as_str()), Some(f.name.as_str()), f.user_ref.as_deref()]).collect();
    serde_json::to_string(&rows).expect("strings serialize")
}

/// The PostgreSQL writers' statements (SQLite's writer has its own, in `sqlite`).
impl AdmissionDb for AnyConnection {
    async fn lock_room(&mut self, room_id: &str, now: i64, active_since: i64) -> Result<Option<RoomRules>, StoreError> {
        let row = sqlx::query(LOCK_ROOM).bind(room_id).bind(now).bind(active_since).fetch_optional(&mut *self).await?;
        let Some(row) = row else { return Ok(None) };
        let (locked, knock, max) = (row.try_get::<i64, _>(0)? != 0, row.try_get::<i64, _>(1)? != 0, row.try_get(2)?);
        Ok(Some(RoomRules { locked, knock, max, held: self.held(room_id).await?, starts_at: row.try_get(3)? }))
    }
    async fn gone_or_unknown(&mut self, room_id: &str, now: i64) -> Result<Refusal, StoreError> {
        Ok(gone_or_unknown(self, room_id, now).await?)
    }
    async fn by_token(&mut self, room_id: &str, participant_id: &str, token_hash: &str) -> Result<Option<Known>, StoreError> {
        let row = sqlx::query(BY_TOKEN).bind(room_id).bind(participant_id).bind(token_hash).fetch_optional(&mut *self).await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Known {
            id: row.try_get(0)?,
            name: row.try_get(1)?,
            banned: row.try_get::<Option<i64>, _>(2)?.is_some(),
            left_at: row.try_get(3)?,
        }))
    }
    async fn readmit(&mut self, room_id: &str, participant_id: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(READMIT).bind(room_id).bind(participant_id).bind(now).execute(&mut *self).await?;
        Ok(())
    }
    async fn user_banned(&mut self, room_id: &str, user_ref: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query(USER_BANNED).bind(room_id).bind(user_ref).fetch_optional(&mut *self).await?.is_some())
    }
    async fn held(&mut self, room_id: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(HELD).bind(room_id).fetch_one(&mut *self).await?)
    }
    async fn insert(&mut self, room_id: &str, fresh: &[Fresh], now: i64) -> Result<(), StoreError> {
        if fresh.is_empty() {
            return Ok(());
        }
        sqlx::query(INSERT_POSTGRES).bind(room_id).bind(now).bind(fresh_json(fresh)).execute(&mut *self).await?;
        Ok(())
    }
}

const END_REASON: &str = "SELECT end_reason FROM rooms WHERE id = $1";

/// Why a room that did not take the row lock is not joinable, from its `end_reason` (`None`
/// for no such room); `true` when a newly expired room must be marked so.
fn refusal_for(end_reason: Option<Option<String>>) -> (Refusal, bool) {
    match end_reason {
        None => (Refusal::NotFound, false),
        Some(Some(reason)) if reason == "ended" => (Refusal::Ended, false),
        Some(Some(_)) => (Refusal::Expired, false),
        Some(None) => (Refusal::Expired, true),
    }
}

/// Why a room that did not take the row lock is not joinable; marks a newly expired room.
pub(in crate::store) async fn gone_or_unknown(conn: &mut AnyConnection, room_id: &str, now: i64) -> Result<Refusal, sqlx::Error> {
    let row = sqlx::query(END_REASON).bind(room_id).fetch_optional(&mut *conn).await?;
    let reason = row.map(|r| r.try_get::<Option<String>, _>(0)).transpose()?;
    let (refusal, expire) = refusal_for(reason);
    if expire {
        super::rooms::close_room(conn, room_id, now, "expired").await?;
    }
    Ok(refusal)
}
