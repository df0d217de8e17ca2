//! SQLite's admission writer: a thread of its own, deciding batches through rusqlite.
//!
//! The thread opens its own connection to the database file. So that it never fights the
//! pool's write connection for SQLite's write lock (SQLite's busy handler sleeps for
//! milliseconds), it holds that pool connection while it writes: every other write of the
//! process then waits its turn in the pool's queue, in order. It keeps it for a short burst
//! of batches while joins keep coming ([`HOLD_WRITE_LOCK`]), since taking it costs a wake-up.

use super::{
    AdmissionDb, BY_TOKEN, END_REASON, Fresh, HELD, INSERT_ROW, Job, Known, MAX_BATCH, READMIT, RoomRules,
    USER_BANNED, answer_all, decide_batch, refusal_for, retrying,
};
use crate::room::{Admission, Refusal};
use crate::store::rooms::CLOSE_ROOM;
use crate::store::{Store, StoreError};
use rusqlite::{OptionalExtension, named_params};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long the writer keeps the write lock while joins keep coming, before the process's
/// other writes (locks, presence) get their turn.
const HOLD_WRITE_LOCK: Duration = Duration::from_millis(5);

/// A room's rules and the places held, read in one statement. SQLite's writer holds the
/// database's write lock from BEGIN, so it needs no row lock (PostgreSQL's `LOCK_ROOM`) and
/// nothing can change between this read and the batch's writes.
const RULES_COUNTING: &str = "SELECT locked, knock, max_participants, last_active_at, \
     (SELECT count(*) FROM participants WHERE room_id = $1 AND left_at IS NULL) \
     FROM rooms WHERE id = $1 AND ended_at IS NULL AND last_active_at >= $3";
/// Records a room's use, which defers its expiry.
const TOUCH_ROOM: &str = "UPDATE rooms SET last_active_at = $2 WHERE id = $1";
/// How stale `last_active_at` may be before a join writes it again. Expiry counts in minutes
/// at least (`expire_after` ≥ 1m), and skipping the write spares a busy room's batches a page
/// of the WAL each: the rooms row is otherwise the one page every batch would write.
const ACTIVITY_RESOLUTION_MS: i64 = 1000;

/// The writer's loop; runs on a blocking thread until `cancel` fires or the queue closes.
pub(super) fn run_writer(
    store: Store,
    mut db: rusqlite::Connection,
    expire_after: Duration,
    mut rx: mpsc::Receiver<Job>,
    cancel: CancellationToken,
) {
    let rt = tokio::runtime::Handle::current();
    let expire_ms = expire_after.as_millis() as i64;
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    loop {
        let received = rt.block_on(async {
            tokio::select! {
                _ = cancel.cancelled() => 0,
                n = rx.recv_many(&mut batch, MAX_BATCH) => n,
            }
        });
        if received == 0 {
            break;
        }
        let gate = rt.block_on(store.write.acquire());
        let held = Instant::now();
        loop {
            batch.sort_by(|a, b| a.req.room_id.cmp(&b.req.room_id));
            let now = store.clock.now_ms();
            match decide(&rt, &mut db, &batch, now, expire_ms) {
                Ok(answers) => answer_all(&mut batch, answers),
                Err(error) => {
                    retrying(&error, &batch);
                    for job in batch.drain(..) {
                        let answer = decide(&rt, &mut db, std::slice::from_ref(&job), now, expire_ms);
                        let _ = job.reply.send(answer.map(|mut a| a.remove(0)));
                    }
                }
            }
            if held.elapsed() >= HOLD_WRITE_LOCK || gate.is_err() {
                break;
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                break;
            }
        }
        drop(gate);
    }
}

/// Opens the writer's connection to the file the pools opened (and migrated): never creates
/// one, so a path read differently fails the start instead of writing elsewhere.
pub(super) fn open(store: &Store) -> Result<rusqlite::Connection, rusqlite::Error> {
    use rusqlite::OpenFlags;
    let path = store.sqlite_path.as_deref().unwrap_or_default();
    let db = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    let tables: i64 = db.query_row("SELECT count(*) FROM sqlite_master WHERE name IN ('rooms', 'participants')", [], |r| r.get(0))?;
    if tables != 2 {
        return Err(rusqlite::Error::InvalidPath(path.into()));
    }
    // As the pool's connections (see `sqlite_pool`), and the writer's checkpoint backstop (see
    // `Store::connect`): WAL is set on the file already.
    db.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA wal_autocheckpoint = 16000;",
    )?;
    db.set_prepared_statement_cache_capacity(16);
    Ok(db)
}

/// Decides a batch in one IMMEDIATE transaction (the write lock from the start).
fn decide(rt: &tokio::runtime::Handle, db: &mut rusqlite::Connection, batch: &[Job], now: i64, expire_ms: i64) -> Result<Vec<Admission>, StoreError> {
    db.execute_batch("BEGIN IMMEDIATE")?;
    let decided = rt.block_on(decide_batch(&mut Tx(db), batch, now, expire_ms));
    match decided {
        Ok(answers) => match db.execute_batch("COMMIT") {
            Ok(()) => Ok(answers),
            Err(error) => {
                let _ = db.execute_batch("ROLLBACK");
                Err(error.into())
            }
        },
        Err(error) => {
            let _ = db.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// The writer's connection inside its open transaction, as [`AdmissionDb`]: each statement
/// is a plain call (the futures are ready at once). Parameters are bound by name: SQLite
/// numbers `$N` by first appearance, not by N. It holds the connection by `&mut`, which
/// is `Send`, where rusqlite's own `Transaction` is not.
struct Tx<'a>(&'a mut rusqlite::Connection);

impl AdmissionDb for Tx<'_> {
    async fn lock_room(&mut self, room_id: &str, now: i64, active_since: i64) -> Result<Option<RoomRules>, StoreError> {
        let mut stmt = self.0.prepare_cached(RULES_COUNTING)?;
        let Some((rules, last_active)) = stmt
            .query_row(named_params! { "$1": room_id, "$3": active_since }, |r| {
                let rules = RoomRules { locked: r.get::<_, i64>(0)? != 0, knock: r.get::<_, i64>(1)? != 0, max: r.get(2)?, held: r.get(4)? };
                Ok((rules, r.get::<_, i64>(3)?))
            })
            .optional()?
        else {
            return Ok(None);
        };
        if now - last_active >= ACTIVITY_RESOLUTION_MS {
            self.0.prepare_cached(TOUCH_ROOM)?.execute(named_params! { "$1": room_id, "$2": now })?;
        }
        Ok(Some(rules))
    }
    async fn gone_or_unknown(&mut self, room_id: &str, now: i64) -> Result<Refusal, StoreError> {
        let reason = self.0.prepare_cached(END_REASON)?.query_row(named_params! { "$1": room_id }, |r| r.get::<_, Option<String>>(0)).optional()?;
        let (refusal, expire) = refusal_for(reason);
        if expire && self.0.execute(CLOSE_ROOM[0], named_params! { "$1": room_id, "$2": now, "$3": "expired" })? > 0 {
            for sql in &CLOSE_ROOM[1..] {
                self.0.execute(sql, named_params! { "$1": room_id, "$2": now })?;
            }
        }
        Ok(refusal)
    }
    async fn by_token(&mut self, room_id: &str, participant_id: &str, token_hash: &str) -> Result<Option<Known>, StoreError> {
        let mut stmt = self.0.prepare_cached(BY_TOKEN)?;
        Ok(stmt
            .query_row(named_params! { "$1": room_id, "$2": participant_id, "$3": token_hash }, |r| {
                Ok(Known { id: r.get(0)?, name: r.get(1)?, banned: r.get::<_, Option<i64>>(2)?.is_some() })
            })
            .optional()?)
    }
    async fn readmit(&mut self, room_id: &str, participant_id: &str, now: i64) -> Result<(), StoreError> {
        self.0.prepare_cached(READMIT)?.execute(named_params! { "$1": room_id, "$2": participant_id, "$3": now })?;
        Ok(())
    }
    async fn user_banned(&mut self, room_id: &str, user_ref: &str) -> Result<bool, StoreError> {
        Ok(self.0.prepare_cached(USER_BANNED)?.exists(named_params! { "$1": room_id, "$2": user_ref })?)
    }
    async fn held(&mut self, room_id: &str) -> Result<i64, StoreError> {
        Ok(self.0.prepare_cached(HELD)?.query_row(named_params! { "$1": room_id }, |r| r.get(0))?)
    }
    async fn insert(&mut self, room_id: &str, fresh: &[Fresh], now: i64) -> Result<(), StoreError> {
        let mut stmt = self.0.prepare_cached(INSERT_ROW)?;
        for f in fresh {
            stmt.execute(named_params! { "$1": room_id, "$2": now, "$3": f.id, "$4": f.token_hash, "$5": f.name, "$6": f.user_ref })?;
        }
        Ok(())
    }
}
