//! Room events: every change to a room is published here after its transaction commits.
//!
//! Subscribers (the card updater, room-page sockets, logs) get every event in order; a
//! subscriber that falls behind is told how many it missed (`RecvError::Lagged`) and re-reads
//! the room from the store, because events say *that* a room changed and the store says *how*.

use crate::ids::{KnockId, ParticipantId, RoomId};
use serde::Serialize;
use tokio::sync::broadcast;

/// What happened to a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomEvent {
    pub room_id: RoomId,
    #[serde(flatten)]
    pub kind: RoomEventKind,
}

/// The in-process event bus.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<RoomEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        // Large enough that a burst of joins does not make the card updater lag.
        EventBus { tx: broadcast::channel(16 * 1024).0 }
    }
}

impl EventBus {
    pub fn publish(&self, room_id: &RoomId, kind: RoomEventKind) {
        tracing::debug!(%room_id, event = ?kind, "room event");
        // No subscriber is fine: nothing listens in a bare API deployment.
        let _ = self.tx.send(RoomEvent { room_id: room_id.clone(), kind });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RoomEvent> {
        self.tx.subscribe()
    }
}
