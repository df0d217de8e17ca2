//! Wall-clock milliseconds, with a test offset so expiry and presence can be tested
//! without sleeping.
//!
//! With several nodes on one PostgreSQL, each node's clock follows the database's: the
//! housekeeping task measures how far this machine's wall clock is from the server's and
//! [`Clock::follow`]s it, so presence, heartbeats and expiry agree across nodes whose own
//! clocks drift.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A clock shared by the store and the service.
#[derive(Clone, Default, Debug)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
    /// The database's clock minus this machine's (0 on SQLite: one machine).
    skew_ms: Arc<AtomicI64>,
    /// An error of this machine's wall clock, for tests of nodes whose clocks disagree.
    wall_error_ms: i64,
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.wall_ms() + self.skew_ms.load(Ordering::Relaxed) + self.offset_ms.load(Ordering::Relaxed)
    }

    /// This machine's wall clock, in milliseconds since the Unix epoch.
    pub fn wall_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0) + self.wall_error_ms
    }

    /// Follows a reference clock that read `reference_ms` while this machine's wall clock read
    /// `wall_ms`.
    pub fn follow(&self, reference_ms: i64, wall_ms: i64) {
        self.skew_ms.store(reference_ms - wall_ms, Ordering::Relaxed);
    }

    /// A clock whose machine's wall clock is `error_ms` off (tests of clock skew).
    pub fn with_wall_error(error_ms: i64) -> Clock {
        Clock { wall_error_ms: error_ms, ..Clock::default() }
    }
    /// Moves this clock (and every clone of it) forward; for tests.
    pub fn advance(&self, by: Duration) {
        self.offset_ms.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }
}

/// RFC 3339 text of a millisecond timestamp, as the API shows times.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
