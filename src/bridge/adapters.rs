//! The chat adapters of this node and their lifecycle: every adapter is started and stopped
//! the same way, all together or one on its own (a node that is not the leader of a platform
//! keeps that adapter stopped).
//!
//! Starting an adapter starts its bridge (card updater and command loop) on a task tracker of
//! its own, then [`ChatAdapter::run`] with a fresh inbox. Stopping cancels that run and the
//! bridge, and waits (bounded) for every task of it.

use super::{BridgeSettings, start as start_bridge};
use crate::service::RoomService;
use callbridge_chat::ChatAdapter;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a stop waits for an adapter's tasks.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Room for events between an adapter and its bridge.
const INBOX: usize = 256;

/// The node's chat adapters, by platform name. Cheap to clone.
#[derive(Clone)]
pub struct Adapters(Arc<Inner>);

struct Inner {
    rooms: RoomService,
    /// Fires on shutdown; every run's token is a child of it.
    shutdown: CancellationToken,
    /// A std Mutex, never held across an `.await`.
    entries: Mutex<BTreeMap<&'static str, Entry>>,
    /// Set by [`Adapters::stop_all`]: the node is stopping, and no adapter starts again.
    closed: AtomicBool,
    /// The adapters' standby work (see [`Adapters::standby_all`]), stopped by `stop_all`.
    standby: Running,
}

struct Entry {
    adapter: Arc<dyn ChatAdapter>,
    bridge: BridgeSettings,
    running: Option<Running>,
}

/// One run of an adapter: what stops it and what to wait for.
struct Running {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Adapters {
    pub fn new(rooms: RoomService, shutdown: CancellationToken) -> Adapters {
        let standby = Running { cancel: shutdown.child_token(), tasks: TaskTracker::new() };
        Adapters(Arc::new(Inner { rooms, shutdown, entries: Mutex::default(), closed: AtomicBool::new(false), standby }))
    }

    fn entries(&self) -> MutexGuard<'_, BTreeMap<&'static str, Entry>> {
        self.0.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a built adapter, stopped; one per platform.
    pub fn add(&self, adapter: Arc<dyn ChatAdapter>, bridge: BridgeSettings) {
        self.entries().insert(adapter.platform(), Entry { adapter, bridge, running: None });
    }

    /// The platforms added, in name order.
    pub fn platforms(&self) -> Vec<&'static str> {
        self.entries().keys().copied().collect()
    }

    /// Each adapter's platform, whether it runs here, and its health (for `/healthz`).
    pub fn health(&self) -> Vec<(&'static str, bool, callbridge_chat::HealthReport)> {
        self.entries().iter().map(|(platform, e)| (*platform, e.running.is_some(), e.adapter.health())).collect()
    }

    /// Whether `platform`'s adapter runs now.
    pub fn is_running(&self, platform: &str) -> bool {
        self.entries().get(platform).is_some_and(|e| e.running.is_some())
    }

    /// Starts `platform`'s adapter and its bridge; `false` when there is no such adapter, it
    /// runs already, or the node is shutting down.
    pub fn start(&self, platform: &str) -> bool {
        if self.0.shutdown.is_cancelled() || self.0.closed.load(Ordering::SeqCst) {
            return false;
        }
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(platform).filter(|e| e.running.is_none()) else { return false };
        let (cancel, tasks) = (self.0.shutdown.child_token(), TaskTracker::new());
        let (inbox, events) = tokio::sync::mpsc::channel(INBOX);
        start_bridge(self.0.rooms.clone(), entry.adapter.clone(), events, entry.bridge, &tasks, cancel.clone());
        tasks.spawn(entry.adapter.clone().run(inbox, cancel.clone()));
        tasks.close();
        entry.running = Some(Running { cancel, tasks });
        tracing::info!(platform, "chat adapter started");
        true
    }

    /// Starts every adapter that is stopped.
    pub fn start_all(&self) {
        for platform in self.platforms() {
            self.start(platform);
        }
    }

    /// Stops `platform`'s adapter and its bridge, and waits for their tasks; `false` when it
    /// was not running.
    pub async fn stop(&self, platform: &str) -> bool {
        let running = self.entries().get_mut(platform).and_then(|e| e.running.take());
        let Some(running) = running else { return false };
        running.cancel.cancel();
        if tokio::time::timeout(STOP_TIMEOUT, running.tasks.wait()).await.is_err() {
            tracing::warn!(platform, "chat adapter did not stop in time");
        } else {
            tracing::info!(platform, "chat adapter stopped");
        }
        true
    }

    /// Prepares every adapter on a node that another node may lead (see
    /// [`ChatAdapter::standby`]), beside whatever runs.
    pub fn standby_all(&self) {
        let standby = &self.0.standby;
        for entry in self.entries().values() {
            standby.tasks.spawn(entry.adapter.clone().standby(standby.cancel.clone()));
        }
    }

    /// Stops every adapter (in parallel) and waits for them; none starts again.
    pub async fn stop_all(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
        let standby = &self.0.standby;
        standby.cancel.cancel();
        standby.tasks.close();
        if tokio::time::timeout(STOP_TIMEOUT, standby.tasks.wait()).await.is_err() {
            tracing::warn!("chat adapters' standby work did not stop in time");
        }
        futures::future::join_all(self.platforms().into_iter().map(|p| async move { self.stop(p).await })).await;
    }
}
