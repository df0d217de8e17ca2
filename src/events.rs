//! Room events: every change to a room is published here after its transaction commits.
//!
//! Subscribers (the card updater, room-page sockets, logs) get every event in order; a
//! subscriber that falls behind is told how many it missed (`RecvError::Lagged`) and re-reads
//! the room from the store, because events say *that* a room changed and the store says *how*.
//!
//! With several nodes on one PostgreSQL, every event published here is also handed to the
//! node's outbox ([`EventBus::set_outbox`], see `cluster::notify`), which sends it to the other
//! nodes with `pg_notify`; their listeners republish it into their own bus
//! ([`EventBus::republish`]). When a listener loses its connection, events may have been missed:
//! it calls [`EventBus::resync`], which every subscriber sees as a lag.

use crate::ids::{KnockId, ParticipantId, RoomId};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};
use tokio::sync::{broadcast, mpsc};

/// What happened to a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RoomEventKind {
    Created,
    /// Admitted (a new joiner, or a rejoin when `rejoin`).
    Joined { participant_id: String, name: String, rejoin: bool },
    /// A room page connected.
    Arrived { participant_id: ParticipantId, name: String },
    /// The participant's page closed and did not come back within the grace period.
    Left { participant_id: ParticipantId, name: String },
    Locked,
    Unlocked,
    /// The host ended the room, or it expired.
    Ended { expired: bool },
    Removed { participant_id: ParticipantId, name: String },
    /// A host muted (`true`) or let speak again (`false`) a participant's audio or video for
    /// everyone; `None` leaves that one as it is.
    Muted { participant_id: ParticipantId, audio: Option<bool>, video: Option<bool> },
    Knocked { knock_id: String, name: String },
    KnockAnswered { knock_id: KnockId, name: String, admitted: bool },
    /// Who is rung into the room, or how one of them answered, changed.
    Rang,
    /// A scheduled call reached its start.
    Started,
    /// A join card was posted in a chat (the chats of its gateway follow).
    Posted { platform: String, chat: String },
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomEvent {
    pub room_id: RoomId,
    #[serde(flatten)]
    pub kind: RoomEventKind,
}

/// What travels on the local bus: an event, or word that events may have been missed.
#[derive(Debug, Clone)]
enum Item {
    Event(RoomEvent),
    Resync,
}

/// The in-process event bus.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Item>,
    /// Where events decided on this node go to reach the other nodes (PostgreSQL only).
    outbox: Arc<OnceLock<mpsc::Sender<RoomEvent>>>,
}

impl Default for EventBus {
    fn default() -> Self {
        // Large enough that a burst of joins does not make the card updater lag.
        EventBus { tx: broadcast::channel(16 * 1024).0, outbox: Arc::default() }
    }
}

impl EventBus {
    /// Publishes an event decided on this node: here, and to the other nodes.
    pub fn publish(&self, room_id: &RoomId, kind: RoomEventKind) {
        tracing::debug!(%room_id, event = ?kind, "room event");
        let event = RoomEvent { room_id: room_id.clone(), kind };
        if let Some(outbox) = self.outbox.get()
            && outbox.try_send(event.clone()).is_err()
        {
            tracing::warn!(room_id = %event.room_id, "the other nodes' event queue is full; they re-read the room on its next change");
        }
        // No subscriber is fine: nothing listens in a bare API deployment.
        let _ = self.tx.send(Item::Event(event));
    }

    /// Publishes here an event another node decided (it reached the others already).
    pub fn republish(&self, event: RoomEvent) {
        tracing::debug!(room_id = %event.room_id, event = ?event.kind, "room event from another node");
        let _ = self.tx.send(Item::Event(event));
    }

    /// Tells every subscriber that events may have been missed: re-read everything.
    pub fn resync(&self) {
        let _ = self.tx.send(Item::Resync);
    }

    /// Sends every event published from now on to `outbox` too (once, at start).
    pub fn set_outbox(&self, outbox: mpsc::Sender<RoomEvent>) {
        let _ = self.outbox.set(outbox);
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription(self.tx.subscribe())
    }
}

/// A subscriber's end of the bus.
pub struct Subscription(broadcast::Receiver<Item>);

impl Subscription {
    /// The next event. `Err(Lagged)` when events were missed (this subscriber fell behind, or
    /// a listener for other nodes lost its connection): re-read from the store.
    pub async fn recv(&mut self) -> Result<RoomEvent, broadcast::error::RecvError> {
        match self.0.recv().await? {
            Item::Event(event) => Ok(event),
            Item::Resync => Err(broadcast::error::RecvError::Lagged(0)),
        }
    }
}
