//! The live side of rooms on this node: which room pages are connected, the signaling relay
//! between them, and pushing room changes to them.
//!
//! The map is behind a std `Mutex`: every critical section is a few map operations and a
//! `try_send`, never an `.await`, so an async mutex would only add cost. Messages to a socket
//! go through a bounded queue; a page that cannot keep up is disconnected (it reconnects),
//! rather than letting one slow page grow the daemon's memory.

use crate::events::{RoomEvent, RoomEventKind, Subscription};
use crate::ids::RoomId;
use crate::sfu::{Command as SfuCommand, Sfu};
use crate::service::{Knocks, RoomService};
use crate::signaling::ToPage;
use axum::extract::ws::Utf8Bytes;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Most frames queued for one socket.
const SOCKET_QUEUE: usize = 256;
/// Most bytes queued for one socket: a page that stops reading pins at most this much of the
/// daemon's memory (plus the frame being written) until its send times out and it is dropped.
pub const SOCKET_QUEUE_BYTES: usize = 128 * 1024;

/// What the session task of a socket is asked to do.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// Send this text frame.
    Text(Utf8Bytes),
    /// Tell the page why (`ended`, `removed`, `replaced`, `overloaded`) and close.
    Close(&'static str),
}

struct Peer {
    conn: u64,
    name: String,
    host: bool,
    tx: QueueTx,
}

/// The sending half of a socket's queue, bounded in frames and in bytes.
pub struct QueueTx {
    tx: mpsc::Sender<Outbound>,
    bytes: Arc<AtomicUsize>,
}

/// The receiving half, owned by the socket's session task.
pub struct QueueRx {
    rx: mpsc::Receiver<Outbound>,
    bytes: Arc<AtomicUsize>,
}

/// A fresh queue for one socket.
pub fn socket_queue() -> (QueueTx, QueueRx) {
    let (tx, rx) = mpsc::channel(SOCKET_QUEUE);
    let bytes = Arc::new(AtomicUsize::new(0));
    (QueueTx { tx, bytes: bytes.clone() }, QueueRx { rx, bytes })
}

impl QueueTx {
    /// Queues a message; false when the queue is full (in frames or in bytes).
    fn push(&self, msg: Outbound) -> bool {
        let len = msg.len();
        if self.bytes.fetch_add(len, Ordering::Relaxed) + len > SOCKET_QUEUE_BYTES {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        match self.tx.try_send(msg) {
            Ok(()) => true,
            Err(error) => {
                self.bytes.fetch_sub(len, Ordering::Relaxed);
                // A closed queue means the session is ending; only a full one is an overload.
                matches!(error, mpsc::error::TrySendError::Closed(_))
            }
        }
    }

    /// Queues a close, which carries no payload and so fits whenever a frame slot is free.
    fn close(&self, reason: &'static str) {
        let _ = self.tx.try_send(Outbound::Close(reason));
    }
}

impl QueueRx {
    /// The next message, `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Outbound> {
        let msg = self.rx.recv().await?;
        self.bytes.fetch_sub(msg.len(), Ordering::Relaxed);
        Some(msg)
    }
}

impl Outbound {
    fn len(&self) -> usize {
        match self {
            Outbound::Text(text) => text.len(),
            Outbound::Close(_) => 0,
        }
    }
}

/// The connected room pages of this node.
#[derive(Clone, Default)]
pub struct Live {
    rooms: Arc<Mutex<HashMap<String, HashMap<String, Peer>>>>,
    next_conn: Arc<AtomicU64>,
}

/// A peer as the welcome message lists it.
pub struct PeerInfo {
    pub id: String,
    pub name: String,
}

impl Live {
    /// Adds a socket for a participant; an older socket of the same participant is told it was
    /// replaced. Returns the connection number and the other peers.
    pub fn register(&self, room: &str, pid: &str, name: &str, host: bool, tx: QueueTx) -> (u64, Vec<PeerInfo>) {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut rooms = self.rooms.lock().expect("live map poisoned");
        let peers = rooms.entry(room.to_owned()).or_default();
        let others = peers
            .iter()
            .filter(|(id, _)| id.as_str() != pid)
            .map(|(id, p)| PeerInfo { id: id.clone(), name: p.name.clone() })
            .collect();
        if let Some(old) = peers.insert(pid.to_owned(), Peer { conn, name: name.to_owned(), host, tx }) {
            old.tx.close("replaced");
        }
        (conn, others)
    }

    /// Removes a socket. Returns true when it was the participant's current socket (so the
    /// participant has no socket here any more).
    pub fn unregister(&self, room: &str, pid: &str, conn: u64) -> bool {
        let mut rooms = self.rooms.lock().expect("live map poisoned");
        let Some(peers) = rooms.get_mut(room) else { return false };
        if peers.get(pid).is_none_or(|p| p.conn != conn) {
            return false;
        }
        peers.remove(pid);
        if peers.is_empty() {
            rooms.remove(room);
        }
        true
    }

    /// Whether the participant has a socket on this node.
    pub fn is_connected(&self, room: &str, pid: &str) -> bool {
        self.rooms.lock().expect("live map poisoned").get(room).is_some_and(|p| p.contains_key(pid))
    }

    /// How many sockets this node holds.
    pub fn socket_count(&self) -> usize {
        self.rooms.lock().expect("live map poisoned").values().map(HashMap::len).sum()
    }

    /// Sends to one participant. False when it has no socket here.
    pub fn send_to(&self, room: &str, pid: &str, msg: Outbound) -> bool {
        let rooms = self.rooms.lock().expect("live map poisoned");
        match rooms.get(room).and_then(|p| p.get(pid)) {
            Some(peer) => {
                deliver(peer, msg);
                true
            }
            None => false,
        }
    }

    /// Sends to one socket of a participant: nothing when it was replaced meanwhile.
    pub fn send_to_conn(&self, room: &str, pid: &str, conn: u64, msg: Outbound) -> bool {
        let rooms = self.rooms.lock().expect("live map poisoned");
        match rooms.get(room).and_then(|p| p.get(pid)).filter(|p| p.conn == conn) {
            Some(peer) => {
                deliver(peer, msg);
                true
            }
            None => false,
        }
    }

    /// Sends to everyone in a room but `except`.
    pub fn broadcast(&self, room: &str, except: Option<&str>, msg: Outbound) {
        let rooms = self.rooms.lock().expect("live map poisoned");
        for (id, peer) in rooms.get(room).into_iter().flatten() {
            if Some(id.as_str()) != except {
                deliver(peer, msg.clone());
            }
        }
    }

    /// Sends `host_msg` to host sockets and `guest_msg` to the others.
    fn broadcast_split(&self, room: &str, host_msg: Utf8Bytes, guest_msg: Utf8Bytes) {
        let rooms = self.rooms.lock().expect("live map poisoned");
        for peer in rooms.get(room).into_iter().flat_map(HashMap::values) {
            deliver(peer, Outbound::Text(if peer.host { host_msg.clone() } else { guest_msg.clone() }));
        }
    }

    fn has_room(&self, room: &str) -> bool {
        self.rooms.lock().expect("live map poisoned").contains_key(room)
    }

    fn room_ids(&self) -> Vec<String> {
        self.rooms.lock().expect("live map poisoned").keys().cloned().collect()
    }
}

fn deliver(peer: &Peer, msg: Outbound) {
    if !peer.tx.push(msg) {
        // The page is not reading. Closing makes it reconnect with a fresh state. The close
        // itself may not fit; the session then ends when its send times out.
        peer.tx.close("overloaded");
    }
}

/// Applies room events to the connected pages until `cancel`: ended rooms and removed
/// participants are disconnected at once; other changes are coalesced and pushed as a fresh
/// room view at most every 100 ms per room.
pub async fn run_dispatcher(
    rooms: RoomService,
    live: Live,
    sfu: Arc<Sfu>,
    mut events: Subscription,
    cancel: CancellationToken,
) {
    let mut dirty: HashSet<RoomId> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            event = events.recv() => match event {
                Ok(RoomEvent { room_id, kind }) => {
                    // Media stops at the SFU at once, not only when the page hears of it.
                    match &kind {
                        RoomEventKind::Ended { .. } => sfu.send(SfuCommand::End { room: room_id.clone() }),
                        RoomEventKind::Removed { participant_id, .. } => {
                            sfu.send(SfuCommand::Remove { room: room_id.clone(), pid: participant_id.clone() })
                        }
                        RoomEventKind::Muted { participant_id, audio, video } => {
                            sfu.send(SfuCommand::Mute { room: room_id.clone(), pid: participant_id.clone(), audio: *audio, video: *video });
                            let told = ToPage::Muted { audio: *audio, video: *video }.frame();
                            live.send_to(&room_id, participant_id, Outbound::Text(told));
                            continue;
                        }
                        _ => {}
                    }
                    if !live.has_room(&room_id) { continue; }
                    match &kind {
                        RoomEventKind::Ended { expired } => {
                            let reason = if *expired { "expired" } else { "ended" };
                            live.broadcast(&room_id, None, Outbound::Close(reason));
                            continue;
                        }
                        RoomEventKind::Removed { participant_id, .. } => {
                            live.send_to(&room_id, participant_id, Outbound::Close("removed"));
                        }
                        _ => {}
                    }
                    dirty.insert(room_id);
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "room page updates lagged; refreshing every live room");
                    dirty.extend(live.room_ids().into_iter().map(RoomId::trusted));
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = tick.tick(), if !dirty.is_empty() => {
                for room_id in std::mem::take(&mut dirty) {
                    push_room_view(&rooms, &live, &room_id).await;
                }
            }
        }
    }
}

async fn push_room_view(rooms: &RoomService, live: &Live, room_id: &RoomId) {
    match rooms.view(room_id, Knocks::Shown).await {
        Ok(mut view) => {
            let host_msg = ToPage::Room { room: &view }.frame();
            view.knocks = None;
            let guest_msg = ToPage::Room { room: &view }.frame();
            live.broadcast_split(room_id, host_msg, guest_msg);
        }
        Err(error) => tracing::warn!(%room_id, %error, "cannot refresh room pages"),
    }
}
