//! SQLite's admission writer: a thread of its own, deciding batches through rusqlite.
//!
//! The thread opens its own connection to the database file. So that it never fights the
//! pool's write connection for SQLite's write lock (SQLite's busy handler sleeps for
//! milliseconds), it holds that pool connection while it writes: every other write of the
//! process then waits its turn in the pool's queue, in order. It keeps it for a short burst
//! of batches while joins keep coming ([`HOLD_WRITE_LOCK`]), since taking it costs a wake-up.
//!
//! It remembers each room's rules and places held from one batch to the next ([`Rooms`]), as
//! long as no other connection has committed in between: SQLite's `PRAGMA data_version`,
//! read once the batch holds the write lock, says so. A busy room's batches then skip the
//! read that counted its places, which scanned every participant of the room.

use super::{
    AdmissionDb, BY_TOKEN, END_REASON, Fresh, HELD, INSERT_ROW, Job, Known, MAX_BATCH, READMIT, RoomRules, Timing,
    USER_BANNED, answer_all, decide_batch, refusal_for, retrying,
};
use crate::room::{Admission, Refusal};
use crate::store::rooms::CLOSE_ROOM;
use crate::store::{Store, StoreError};
use rusqlite::{OptionalExtension, named_params};
use std::collections::HashMap;
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
     (SELECT count(*) FROM participants WHERE room_id = $1 AND left_at IS NULL), starts_at \
     FROM rooms WHERE id = $1 AND ended_at IS NULL AND last_active_at >= $3";
/// Records a room's use, which defers its expiry.
const TOUCH_ROOM: &str = "UPDATE rooms SET last_active_at = $2 WHERE id = $1";
/// How stale `last_active_at` may be before a join writes it again. Expiry counts in minutes
/// at least (`expire_after` ≥ 1m), and skipping the write spares a busy room's batches a page
/// of the WAL each: the rooms row is otherwise the one page every batch would write.
const ACTIVITY_RESOLUTION_MS: i64 = 1000;
/// Most rooms remembered between batches; past it the writer starts afresh.
const ROOMS_REMEMBERED: usize = 4096;

/// What the writer knows of the rooms it admitted into, exact while the database holds only
/// its own commits since `data_version` was read: nothing else can then have changed a room.
#[derive(Default)]
struct Rooms {
    data_version: Option<i64>,
    rooms: HashMap<String, KnownRoom>,
}

/// A room as the writer's last read, and its own writes since, left it.
struct KnownRoom {
    locked: bool,
    knock: bool,
    max: i64,
    held: i64,
    last_active: i64,
    starts_at: Option<i64>,
}

impl Rooms {
    /// Called inside the write lock, before the batch reads anything: forgets every room if
    /// another connection (a lock, a leave, a removal, another process) has committed since.
    fn check(&mut self, db: &rusqlite::Connection) -> rusqlite::Result<()> {
        let version = db.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.data_version != Some(version) || self.rooms.len() > ROOMS_REMEMBERED {
            self.rooms.clear();
            self.data_version = Some(version);
        }
        Ok(())
    }

    /// Forgets everything: a batch rolled back, so what it wrote into `rooms` never happened.
    fn forget(&mut self) {
        self.rooms.clear();
        self.data_version = None;
    }
}

/// The writer's loop; runs on a blocking thread until `cancel` fires or the queue closes.
pub(super) fn run_writer(
    store: Store,
    mut db: rusqlite::Connection,
    timing: Timing,
    mut rx: mpsc::Receiver<Job>,
    cancel: CancellationToken,
) {
    let rt = tokio::runtime::Handle::current();
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut rooms = Rooms::default();
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
        let waiting = Instant::now();
        let gate = rt.block_on(store.write.acquire());
        metrics::histogram!("callbridge_db_wait_seconds", "pool" => "write").record(waiting.elapsed().as_secs_f64());
        let held = Instant::now();
        loop {
            batch.sort_by(|a, b| a.req.room_id.cmp(&b.req.room_id));
            let now = store.clock.now_ms();
            match decide(&rt, &mut db, &mut rooms, &batch, now, timing) {
                Ok(answers) => answer_all(&mut batch, answers),
                Err(error) => {
                    retrying(&error, &batch);
                    for job in batch.drain(..) {
                        let answer = decide(&rt, &mut db, &mut rooms, std::slice::from_ref(&job), now, timing);
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
fn decide(
    rt: &tokio::runtime::Handle,
    db: &mut rusqlite::Connection,
    rooms: &mut Rooms,
    batch: &[Job],
    now: i64,
    timing: Timing,
) -> Result<Vec<Admission>, StoreError> {
    db.execute_batch("BEGIN IMMEDIATE")?;
    let decided = match rooms.check(db) {
        Ok(()) => rt.block_on(decide_batch(&mut Tx { db: &mut *db, rooms: &mut *rooms }, batch, now, timing)),
        Err(error) => Err(error.into()),
    };
    let committed = decided.and_then(|answers| db.execute_batch("COMMIT").map(|()| answers).map_err(StoreError::from));
    if committed.is_err() {
        let _ = db.execute_batch("ROLLBACK");
        rooms.forget();
    }
    committed
}

/// The writer's connection inside its open transaction, as [`AdmissionDb`]: each statement
/// is a plain call (the futures are ready at once). Parameters are bound by name: SQLite
/// numbers `$N` by first appearance, not by N. It holds the connection by `&mut`, which
/// is `Send`, where rusqlite's own `Transaction` is not. Every write it makes to a room's
/// places it also makes to what `rooms` remembers of the room.
struct Tx<'a> {
    db: &'a mut rusqlite::Connection,
    rooms: &'a mut Rooms,
}

impl AdmissionDb for Tx<'_> {
    async fn lock_room(&mut self, room_id: &str, now: i64, active_since: i64) -> Result<Option<RoomRules>, StoreError> {
        let room = match self.rooms.rooms.get_mut(room_id) {
            Some(room) => room,
            None => {
                let mut stmt = self.db.prepare_cached(RULES_COUNTING)?;
                let Some(room) = stmt
                    .query_row(named_params! { "$1": room_id, "$3": active_since }, |r| {
                        Ok(KnownRoom {
                            locked: r.get::<_, i64>(0)? != 0,
                            knock: r.get::<_, i64>(1)? != 0,
                            max: r.get(2)?,
                            last_active: r.get(3)?,
                            held: r.get(4)?,
                            starts_at: r.get(5)?,
                        })
                    })
                    .optional()?
                else {
                    return Ok(None);
                };
                self.rooms.rooms.entry(room_id.to_owned()).or_insert(room)
            }
        };
        // A remembered room may have expired since; the caller then marks it so.
        if room.last_active < active_since {
            self.rooms.rooms.remove(room_id);
            return Ok(None);
        }
        if now - room.last_active >= ACTIVITY_RESOLUTION_MS {
            self.db.prepare_cached(TOUCH_ROOM)?.execute(named_params! { "$1": room_id, "$2": now })?;
            room.last_active = now;
        }
        Ok(Some(RoomRules { locked: room.locked, knock: room.knock, max: room.max, held: room.held, starts_at: room.starts_at }))
    }
    async fn gone_or_unknown(&mut self, room_id: &str, now: i64) -> Result<Refusal, StoreError> {
        self.rooms.rooms.remove(room_id);
        let reason = self.db.prepare_cached(END_REASON)?.query_row(named_params! { "$1": room_id }, |r| r.get::<_, Option<String>>(0)).optional()?;
        let (refusal, expire) = refusal_for(reason);
        if expire && self.db.execute(CLOSE_ROOM[0], named_params! { "$1": room_id, "$2": now, "$3": "expired" })? > 0 {
            for sql in &CLOSE_ROOM[1..] {
                self.db.execute(sql, named_params! { "$1": room_id, "$2": now })?;
            }
        }
        Ok(refusal)
    }
    async fn by_token(&mut self, room_id: &str, participant_id: &str, token_hash: &str) -> Result<Option<Known>, StoreError> {
        let mut stmt = self.db.prepare_cached(BY_TOKEN)?;
        Ok(stmt
            .query_row(named_params! { "$1": room_id, "$2": participant_id, "$3": token_hash }, |r| {
                Ok(Known { id: r.get(0)?, name: r.get(1)?, banned: r.get::<_, Option<i64>>(2)?.is_some(), left_at: r.get(3)? })
            })
            .optional()?)
    }
    async fn readmit(&mut self, room_id: &str, participant_id: &str, now: i64) -> Result<(), StoreError> {
        // The participant may or may not have held a place: the count is read again.
        self.rooms.rooms.remove(room_id);
        self.db.prepare_cached(READMIT)?.execute(named_params! { "$1": room_id, "$2": participant_id, "$3": now })?;
        Ok(())
    }
    async fn user_banned(&mut self, room_id: &str, user_ref: &str) -> Result<bool, StoreError> {
        Ok(self.db.prepare_cached(USER_BANNED)?.exists(named_params! { "$1": room_id, "$2": user_ref })?)
    }
    async fn held(&mut self, room_id: &str) -> Result<i64, StoreError> {
        // Only asked after a readmission, which made the writer forget the room.
        Ok(self.db.prepare_cached(HELD)?.query_row(named_params! { "$1": room_id }, |r| r.get(0))?)
    }
    async fn insert(&mut self, room_id: &str, fresh: &[Fresh], now: i64) -> Result<(), StoreError> {
        let mut stmt = self.db.prepare_cached(INSERT_ROW)?;
        for f in fresh {
            stmt.execute(named_params! { "$1": room_id, "$2": now, "$3": f.id, "$4": f.token_hash, "$5": f.name, "$6": f.user_ref })?;
        }
        if let Some(room) = self.rooms.rooms.get_mut(room_id) {
            room.held += fresh.len() as i64;
        }
        Ok(())
    }
}
