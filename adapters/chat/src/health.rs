//! How an adapter is doing, as `/healthz` shows it: whether it reaches its platform now, and
//! the last failure it met. Each adapter keeps one [`Health`] and reports into it where it
//! already logs; the daemon reads it (and masks secrets in the error) for `/healthz`.

use std::sync::Mutex;
use std::time::SystemTime;

/// What `/healthz` says of one adapter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthReport {
    /// The last exchange with the platform worked (logged in, polled, synced, connected).
    pub connected: bool,
    /// The last failure, and when (seconds since the Unix epoch).
    pub last_error: Option<(String, u64)>,
}

/// An adapter's health, updated as it runs. A std Mutex, held for a copy.
#[derive(Debug, Default)]
pub struct Health(Mutex<HealthReport>);

impl Health {
    /// The platform answered.
    pub fn ok(&self) {
        self.lock().connected = true;
    }

    /// A request to the platform failed: `connected` tells whether the adapter still reaches it
    /// (a refused message is not a lost connection).
    pub fn failed(&self, error: &dyn std::fmt::Display, connected: bool) {
        let at = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut report = self.lock();
        report.connected = connected;
        report.last_error = Some((error.to_string(), at));
    }

    /// The adapter stopped.
    pub fn stopped(&self) {
        self.lock().connected = false;
    }

    pub fn report(&self) -> HealthReport {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthReport> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
