//! `CardUpdater`: keeps posted cards in step with their rooms.
//!
//! Events only say *that* a room changed; each card's task then reads the room and edits the
//! card. Bursts coalesce (a dirty flag, a short debounce, and a second read right before the
//! send, so the latest state wins), edits that would change nothing are skipped, every edit
//! takes a slot from the chat's pacer, a 429 blocks the chat for its `retry_after`, transient
//! failures retry with backoff, and a card is only closed once its final state is shown. On
//! start every card not yet closed is re-rendered, so cards keep updating across restarts.

use super::cards;
use crate::ids::RoomId;
use crate::service::CardState;
use crate::store::PostedCard;
use super::pacer::ChatPacer;
use crate::events::Subscription;
use crate::service::{RoomService, ServiceError};
use callbridge_chat::{Backoff, ChatAdapter, SendError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// First retry delay after a transient failure; doubles up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The card updater of one adapter. Cheap to clone.
#[derive(Clone)]
pub struct CardUpdater {
    inner: Arc<Inner>,
}

struct Inner {
    rooms: RoomService,
    adapter: Arc<dyn ChatAdapter>,
    pacer: Arc<ChatPacer>,
    debounce: Duration,
    /// Room id → the cards showing it. A std Mutex: never held across an `.await`.
    cards: Mutex<HashMap<RoomId, Vec<Arc<Slot>>>>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

/// One posted card and its pending work.
struct Slot {
    card: PostedCard,
    dirty: Notify,
    /// When the oldest change the card does not show yet happened (for the freshness metric).
    dirty_since: Mutex<Option<std::time::Instant>>,
}

impl CardUpdater {
    pub fn new(
        rooms: RoomService,
        adapter: Arc<dyn ChatAdapter>,
        pacer: Arc<ChatPacer>,
        debounce: Duration,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        CardUpdater {
            inner: Arc::new(Inner { rooms, adapter, pacer, debounce, cards: Mutex::default(), tracker, cancel }),
        }
    }

    /// Follows room events until cancelled. Subscribe before calling [`resume`](Self::resume)
    /// so nothing that happens in between is missed.
    pub async fn run(self, mut events: Subscription) {
        loop {
            let event = tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                e = events.recv() => e,
            };
            match event {
                Ok(event) => self.touch(&event.room_id),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "card updater lagged; refreshing every card");
                    let all: Vec<Arc<Slot>> = self.lock().values().flatten().cloned().collect();
                    all.iter().for_each(|s| s.dirty.notify_one());
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Re-renders every card whose final state is not shown yet (after a restart).
    pub async fn resume(&self) -> Result<usize, ServiceError> {
        let open = self.inner.rooms.open_cards(self.inner.adapter.platform()).await?;
        let n = open.len();
        for card in open {
            self.track(card);
        }
        Ok(n)
    }

    /// Starts keeping a posted card up to date.
    pub fn track(&self, card: PostedCard) {
        let slot = Arc::new(Slot { card, dirty: Notify::new(), dirty_since: Mutex::default() });
        slot.dirty.notify_one();
        self.lock().entry(slot.card.room_id.clone()).or_default().push(slot.clone());
        let this = self.clone();
        self.inner.tracker.spawn(async move {
            let room_id = slot.card.room_id.clone();
            this.keep_current(&slot).await;
            let mut cards = this.lock();
            if let Some(list) = cards.get_mut(&room_id) {
                list.retain(|s| !Arc::ptr_eq(s, &slot));
                if list.is_empty() {
                    cards.remove(&room_id);
                }
            }
        });
    }

    /// Whether a card of this platform shows `room` and is still kept current.
    pub fn shows(&self, room_id: &RoomId) -> bool {
        self.lock().contains_key(room_id)
    }

    fn touch(&self, room_id: &RoomId) {
        if let Some(slots) = self.lock().get(room_id) {
            for slot in slots {
                slot.dirty_since.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(std::time::Instant::now);
                slot.dirty.notify_one();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RoomId, Vec<Arc<Slot>>>> {
        self.inner.cards.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One card's loop; returns once the card shows its final state (or is gone).
    async fn keep_current(&self, slot: &Slot) {
        let inner = &self.inner;
        let platform = inner.adapter.platform();
        let card_ref = &slot.card;
        let span = tracing::info_span!("card", room_id = %card_ref.room_id, platform, chat = %card_ref.chat);
        let _ = &span;
        let mut shown = card_ref.rendered.clone();
        loop {
            tokio::select! {
                _ = inner.cancel.cancelled() => return,
                _ = slot.dirty.notified() => {}
            }
            if !self.sleep(inner.debounce).await {
                return;
            }
            let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
            // This chat's turn to send, once taken: held from before the last read to the edit's answer.
            let mut turn: Option<super::pacer::Turn<'_>> = None;
            loop {
                let card = match cards::card_of(&inner.rooms, &card_ref.room_id, platform, &card_ref.chat).await {
                    Ok(card) => card,
                    Err(ServiceError::NotFound) => return,
                    Err(error) => {
                        tracing::warn!(parent: &span, %error, "cannot read the room; retrying");
                        if let Some(t) = turn.take() { t.forgo() }
                        if !self.sleep(backoff.next_wait()).await {
                            return;
                        }
                        continue;
                    }
                };
                let digest = cards::digest(&card);
                let over = card.status.is_over();
                if shown.as_deref() == Some(digest.as_str()) {
                    // The card shows this already: nothing is stale.
                    if let Some(t) = turn.take() { t.forgo() }
                    slot.dirty_since.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if over {
                        let _ = inner.rooms.update_card(platform, card_ref, CardState::Final(&digest)).await;
                        return;
                    }
                    break;
                }
                if turn.is_none() {
                    // Wait for this chat's turn, then read again: whatever happened meanwhile
                    // rides along in this one edit.
                    tokio::select! {
                        _ = inner.cancel.cancelled() => return,
                        t = inner.pacer.wait_turn(&card_ref.chat) => turn = Some(t),
                    }
                    continue;
                }
                let edited = inner.adapter.edit_card(&card_ref.chat, &card_ref.message, &card).await;
                drop(turn.take());
                let outcome = crate::telemetry::send_outcome(&edited);
                metrics::counter!("callbridge_card_sends_total", "platform" => platform, "kind" => "edit", "outcome" => outcome).increment(1);
                match edited {
                    Ok(()) | Err(SendError::NotModified) => {
                        if let Some(since) = slot.dirty_since.lock().unwrap_or_else(|e| e.into_inner()).take() {
                            metrics::histogram!("callbridge_card_freshness_seconds", "platform" => platform).record(since.elapsed().as_secs_f64());
                        }
                        tracing::debug!(parent: &span, status = ?card.status, present = card.present.len(), "card edited");
                        shown = Some(digest.clone());
                        let state = if over { CardState::Final(&digest) } else { CardState::Shows(&digest) };
                        if let Err(error) = inner.rooms.update_card(platform, card_ref, state).await {
                            tracing::warn!(parent: &span, %error, "cannot record the card's state");
                        }
                        if over {
                            return;
                        }
                        break;
                    }
                    Err(SendError::RetryAfter(wait)) => {
                        tracing::warn!(parent: &span, ?wait, "rate limited; waiting");
                        inner.pacer.back_off(&card_ref.chat, wait);
                    }
                    Err(SendError::Transient(error)) => {
                        tracing::warn!(parent: &span, %error, "card edit failed; retrying");
                        if !self.sleep(backoff.next_wait()).await {
                            return;
                        }
                    }
                    Err(error @ (SendError::Refused(_) | SendError::Unsupported)) => {
                        tracing::warn!(parent: &span, %error, "card cannot be edited any more; dropping it");
                        let _ = inner.rooms.update_card(platform, card_ref, CardState::Abandoned).await;
                        return;
                    }
                }
            }
        }
    }

    /// Sleeps unless cancelled first; false when cancelled.
    async fn sleep(&self, d: Duration) -> bool {
        if d.is_zero() {
            return !self.inner.cancel.is_cancelled();
        }
        tokio::select! {
            _ = self.inner.cancel.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}
