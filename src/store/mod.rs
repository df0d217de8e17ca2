//! The store: the database is the source of truth for rooms, participants, knocks and cards.
//!
//! One set of SQL runs on SQLite and PostgreSQL through sqlx's `Any` driver (`$N` parameters
//! work on both). Rules that must hold under concurrency are decided inside one transaction
//! that first takes the room's row lock (`UPDATE rooms … RETURNING`), so two daemons on one
//! PostgreSQL, or a thousand concurrent joiners, cannot overshoot a capacity or pass a lock.
//!
//! * `admission` — joins, batched into shared transactions by writer tasks.
//! * `rooms` — create, lock, unlock, end, remove, and the room view.
//! * `knocks` — requests to enter a locked room.
//! * `presence` — room-page connections, leaving, node heartbeats and sweeps.
//! * `cards` — which chat message shows which room, and what it shows now.
//! * `rings` — who asked to be rung, who was rung and how they answered, the bot's private
//!   prompts, the host's notices, and a chat's call log.
//! * `nodes` — the nodes of one deployment: where each is reached, rooms' home nodes,
//!   retirement, and what chat adapters keep across runs and nodes.

mod admission;
mod cards;
mod knocks;
mod nodes;
mod presence;
mod rings;
mod rooms;

pub use admission::{AdmissionWriter, Timing};
pub use cards::{DueReminder, PostedCard};
pub use knocks::{KnockAnswer, KnockOutcome};
pub use nodes::Home;
pub use presence::PresenceChange;
pub use rings::{OptIn, PromptRef, Purpose, Ring};
pub use rooms::{HostCheck, RemoveOutcome, StateChange};

use crate::clock::Clock;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};
use std::time::Duration;

/// Errors from the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("the admission writer has stopped")]
    WriterGone,
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// A database against this build's migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrations {
    pub applied: usize,
    /// This build's migrations the database has not had yet (the daemon applies them at start).
    pub pending: usize,
    /// Migrations the database had from a newer build.
    pub unknown: usize,
}

/// What the metrics count in the database.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub rooms_open: i64,
    pub present: i64,
    pub knocks_pending: i64,
}

/// Which database is behind the pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Handles to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Writes. On SQLite a single connection: SQLite has one writer at a time anyway, and one
    /// connection queues writers in order instead of letting them spin on `SQLITE_BUSY`.
    pub(crate) write: AnyPool,
    /// Reads. WAL lets SQLite readers run beside the writer.
    pub(crate) read: AnyPool,
    pub(crate) backend: Backend,
    pub(crate) clock: Clock,
    /// The SQLite file, which the admission writer opens for itself.
    pub(crate) sqlite_path: Option<String>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connects, creating the SQLite file (and its directory) when needed, and migrates.
    pub async fn connect(url: &str, max_connections: u32, clock: Clock) -> Result<Store, StoreError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let store = match backend {
            Backend::Sqlite => {
                let (url, path) = sqlite_url(url);
                if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
                    // The admission writer opens the file for itself; a memory database is not shared.
                    return Err(StoreError::Db(sqlx::Error::Configuration("storage.url must name a SQLite file, not a memory database".into())));
                }
                if let Some(dir) = std::path::Path::new(&path).parent().filter(|d| !d.as_os_str().is_empty()) {
                    crate::private_files::create_dir(dir).map_err(|e| StoreError::DataDir(dir.display().to_string(), e))?;
                    crate::private_files::warn_if_shared(dir);
                }
                let file = std::path::Path::new(&path);
                crate::private_files::create_file(file).map_err(|e| StoreError::DataDir(path.clone(), e))?;
                crate::private_files::warn_if_shared(file);
                let write = sqlite_pool(&url, 1).await?;
                // WAL persists in the file; set it once, from the writer. Checkpoints run beside
                // the writer (`checkpoint`), not inside a join's commit; the writer's own
                // automatic checkpoint is only a backstop should that task fall behind.
                write.execute("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 16000;").await?;
                let read = sqlite_pool(&url, max_connections.max(2)).await?;
                Store { write, read, backend, clock, sqlite_path: Some(path) }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections.max(4))
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?;
                Store { write: pool.clone(), read: pool, backend, clock, sqlite_path: None }
            }
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&store.write).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&store.write).await?,
        }
        Ok(store)
    }

    /// Where the database at `url` stands against this build's migrations, without changing
    /// it: `None` when a SQLite file does not exist yet.
    pub async fn migration_status(url: &str) -> Result<Option<Migrations>, StoreError> {
        install_default_drivers();
        let (known, url) = if url.starts_with("sqlite:") {
            let (url, path) = sqlite_url(url);
            if !std::path::Path::new(&path).exists() {
                return Ok(None);
            }
            (&SQLITE_MIGRATIONS, url.replace("mode=rwc", "mode=ro"))
        } else {
            (&POSTGRES_MIGRATIONS, url.to_owned())
        };
        let pool = AnyPoolOptions::new().max_connections(1).acquire_timeout(Duration::from_secs(5)).connect(&url).await?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
        pool.close().await;
        let known: Vec<i64> = known.iter().map(|m| m.version).collect();
        Ok(Some(Migrations {
            pending: known.iter().filter(|v| !applied.contains(v)).count(),
            unknown: applied.iter().filter(|v| !known.contains(v)).count(),
            applied: applied.len(),
        }))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// The deployment-wide secret `name`, made with `generate` by whichever node asks first.
    pub async fn secret(&self, name: &str, generate: impl FnOnce() -> String) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(generate())
            .execute(&self.write)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1").bind(name).fetch_one(&self.write).await?)
    }

    /// Copies the WAL into the database file from a reader connection (SQLite; a no-op on
    /// PostgreSQL), so that the admission writer's commits never pay for a checkpoint.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&self.read).await?;
        }
        Ok(())
    }

    /// Rooms open, participants present and knocks pending, in the whole database.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        let (rooms_open, present, knocks_pending): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM rooms WHERE ended_at IS NULL), \
             (SELECT count(*) FROM participants WHERE present_since IS NOT NULL), \
             (SELECT count(*) FROM knocks k JOIN rooms r ON r.id = k.room_id WHERE k.answered_at IS NULL AND r.ended_at IS NULL)",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(Counts { rooms_open, present, knocks_pending })
    }

    /// Each pool's name, size and idle connections (on PostgreSQL one pool serves both).
    pub fn pool_use(&self) -> Vec<(&'static str, u32, usize)> {
        match self.backend {
            Backend::Sqlite => vec![("write", self.write.size(), self.write.num_idle()), ("read", self.read.size(), self.read.num_idle())],
            Backend::Postgres => vec![("shared", self.write.size(), self.write.num_idle())],
        }
    }

    /// Closes both pools, waiting for running queries.
    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// Normalizes a `sqlite:` URL so the file is created when missing; returns (url, path).
fn sqlite_url(url: &str) -> (String, String) {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or(rest).to_owned();
    let url = if rest.contains("mode=") {
        format!("sqlite://{rest}")
    } else if rest.contains('?') {
        format!("sqlite://{rest}&mode=rwc")
    } else {
        format!("sqlite://{rest}?mode=rwc")
    };
    (url, path)
}

async fn sqlite_pool(url: &str, max: u32) -> Result<AnyPool, StoreError> {
    Ok(AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(1)
        // An in-process database needs no liveness ping on every acquire (the admission writer
        // takes the write connection for every burst of joins).
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // synchronous = NORMAL in WAL mode: a commit is written to the WAL before it
                // returns, so a killed process (SIGKILL, panic) loses nothing that was
                // acknowledged; only a power cut or kernel crash can drop the last commits
                // (FULL would fsync every commit for that, at a large cost per join).
                conn.execute(
                    "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                )
                .await?;
                Ok(())
            })
        })
        .connect(url)
        .await?)
}
