//! Per-chat pacing: every message and edit of the bot in one chat shares one budget.

use callbridge_chat::{ChatRef, Pacing};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);

/// Hands out send slots per chat: at least `min_interval` apart, at most `per_minute` in any
/// minute, and none before a `retry_after` the platform asked for.
pub struct ChatPacer {
    pacing: Pacing,
    // A std Mutex: it is held for a few arithmetic steps and never across an `.await`.
    chats: Mutex<HashMap<ChatRef, Budget>>,
}

#[derive(Default)]
struct Budget {
    /// Reserved send times, ascending (some may lie in the future).
    sent: VecDeque<Instant>,
    /// No send before this (a 429's `retry_after`).
    blocked_until: Option<Instant>,
}

impl ChatPacer {
    pub fn new(pacing: Pacing) -> Self {
        ChatPacer { pacing, chats: Mutex::new(HashMap::new()) }
    }

    /// Reserves the next free slot in `chat` and returns when it starts.
    pub fn reserve(&self, chat: &ChatRef) -> Instant {
        let now = Instant::now();
        let mut chats = self.chats.lock().unwrap_or_else(|e| e.into_inner());
        let budget = chats.entry(chat.clone()).or_default();
        while budget.sent.front().is_some_and(|t| *t + WINDOW <= now) {
            budget.sent.pop_front();
        }
        let mut at = now;
        if let Some(blocked) = budget.blocked_until {
            at = at.max(blocked);
        }
        if let Some(last) = budget.sent.back() {
            at = at.max(*last + self.pacing.min_interval);
        }
        let per_minute = self.pacing.per_minute.max(1) as usize;
        if budget.sent.len() >= per_minute {
            at = at.max(budget.sent[budget.sent.len() - per_minute] + WINDOW);
        }
        budget.sent.push_back(at);
        at
    }

    /// Waits for the next free slot in `chat`.
    pub async fn wait_turn(&self, chat: &ChatRef) {
        let at = self.reserve(chat);
        tokio::time::sleep_until(at).await;
    }

    /// The platform said to wait `retry_after` before sending into `chat` again.
    pub fn back_off(&self, chat: &ChatRef, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut chats = self.chats.lock().unwrap_or_else(|e| e.into_inner());
        let budget = chats.entry(chat.clone()).or_default();
        budget.blocked_until = Some(budget.blocked_until.map_or(until, |b| b.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_keep_interval_and_minute_budget() {
        let pacer = ChatPacer::new(Pacing { min_interval: Duration::from_secs(1), per_minute: 20 });
        let chat = ChatRef("-1".into());
        let start = Instant::now();
        let slots: Vec<_> = (0..25).map(|_| pacer.reserve(&chat) - start).collect();
        for pair in slots.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_secs(1));
        }
        assert_eq!(slots[20] - slots[0], Duration::from_secs(60), "the 21st send waits for the minute");
        let other = pacer.reserve(&ChatRef("-2".into()));
        assert!(other <= Instant::now(), "chats have their own budgets");
        let before = Instant::now();
        pacer.back_off(&ChatRef("-2".into()), Duration::from_secs(7));
        assert!(pacer.reserve(&ChatRef("-2".into())) >= before + Duration::from_secs(7));
    }
}
