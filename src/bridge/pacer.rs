//! Pacing: every message and edit of the bot in one chat shares one budget, and every one of
//! them, in whatever chat, shares the bot's budget a second.
//!
//! Platforms count a send when it *arrives*, and a request can take longer on its way than the
//! one after it. So a budget is spent when a send's answer is back (by then it has surely
//! arrived), not when it leaves, and a chat sends one thing at a time: the next send in a chat
//! leaves `min_interval` after the previous one's answer, and a send leaves only while fewer
//! than `per_second` sends are on their way or were answered within the last second. That
//! keeps the platform's rules exactly, whatever the network does, at the cost of one round
//! trip a send.

use callbridge_chat::{ChatRef, Pacing};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OwnedMutexGuard};
use tokio::time::Instant;

const MINUTE: Duration = Duration::from_secs(60);
const SECOND: Duration = Duration::from_secs(1);

/// Hands out turns to send: per chat, one at a time, at least `min_interval` apart, at most
/// `per_minute` in any minute and none before a `retry_after` the platform asked for; for the
/// whole bot, at most `per_second` in any second.
pub struct ChatPacer {
    pacing: Pacing,
    /// The window of `per_minute`: a minute (shorter in unit tests).
    minute: Duration,
    /// When this pacer (this run of the bridge) started: a chat's first send waits
    /// `min_interval` from then, since the last run may have sent into it a moment before.
    started: Instant,
    // std Mutexes: held for a few steps, never across an `.await`.
    chats: Mutex<HashMap<ChatRef, Chat>>,
    bot: Mutex<BotWindow>,
    /// A send of the bot was answered: a place in its second may have freed.
    bot_freed: Notify,
}

struct Chat {
    /// Answer times of the chat's sends within the last minute, ascending. Its lock is held
    /// by the one turn of the chat, from before it waits until its send was answered, so
    /// turns of a chat go one after another in the order they asked (tokio's lock is fair).
    answered: Arc<tokio::sync::Mutex<VecDeque<Instant>>>,
    /// No send before this (a 429's `retry_after`).
    blocked_until: Option<Instant>,
}

#[derive(Default)]
struct BotWindow {
    on_the_way: usize,
    /// Answer times within the last second, ascending.
    answered: VecDeque<Instant>,
}

/// The right to send once into a chat. Dropping it marks the send answered (call
/// [`Turn::forgo`] when nothing was sent after all).
pub struct Turn<'a> {
    pacer: &'a ChatPacer,
    answered: OwnedMutexGuard<VecDeque<Instant>>,
    counts_for_bot: bool,
    sent: bool,
}

impl Turn<'_> {
    /// Gives the turn back without having sent: it costs the chat nothing.
    pub fn forgo(mut self) {
        self.sent = false;
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        if self.sent {
            self.answered.push_back(now);
        }
        if self.counts_for_bot {
            let mut bot = self.pacer.bot.lock().unwrap_or_else(|e| e.into_inner());
            bot.on_the_way -= 1;
            if self.sent {
                bot.answered.push_back(now);
            }
            drop(bot);
            self.pacer.bot_freed.notify_waiters();
        }
    }
}

impl ChatPacer {
    pub fn new(pacing: Pacing) -> Self {
        ChatPacer {
            pacing,
            minute: MINUTE,
            started: Instant::now(),
            chats: Mutex::new(HashMap::new()),
            bot: Mutex::new(BotWindow::default()),
            bot_freed: Notify::new(),
        }
    }

    /// Waits until the bot may send into `chat`, and holds the chat's turn until dropped.
    pub async fn wait_turn(&self, chat: &ChatRef) -> Turn<'_> {
        let answered = {
            let mut chats = self.chats.lock().unwrap_or_else(|e| e.into_inner());
            let entry = chats.entry(chat.clone()).or_insert_with(|| Chat {
                answered: Arc::new(tokio::sync::Mutex::new(VecDeque::from([self.started]))),
                blocked_until: None,
            });
            entry.answered.clone()
        };
        let mut answered = answered.lock_owned().await;
        // The chat's own rules (a `back_off` may move them on while this turn waits).
        loop {
            let now = Instant::now();
            while answered.front().is_some_and(|t| *t + self.minute <= now) {
                answered.pop_front();
            }
            let mut at = now;
            if let Some(blocked) = self.chats.lock().unwrap_or_else(|e| e.into_inner()).get(chat).and_then(|c| c.blocked_until) {
                at = at.max(blocked);
            }
            if let Some(last) = answered.back() {
                at = at.max(*last + self.pacing.min_interval);
            }
            let per_minute = self.pacing.per_minute.max(1) as usize;
            if answered.len() >= per_minute {
                at = at.max(answered[answered.len() - per_minute] + self.minute);
            }
            if at <= now {
                break;
            }
            tokio::time::sleep_until(at).await;
        }
        // The bot's second.
        let per_second = self.pacing.per_second as usize;
        if per_second > 0 {
            loop {
                let freed = self.bot_freed.notified();
                let next = {
                    let now = Instant::now();
                    let mut bot = self.bot.lock().unwrap_or_else(|e| e.into_inner());
                    while bot.answered.front().is_some_and(|t| *t + SECOND <= now) {
                        bot.answered.pop_front();
                    }
                    if bot.on_the_way + bot.answered.len() < per_second {
                        bot.on_the_way += 1;
                        break;
                    }
                    bot.answered.front().map(|t| *t + SECOND)
                };
                match next {
                    Some(at) => tokio::select! {
                        _ = freed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    },
                    None => freed.await,
                }
            }
        }
        Turn { pacer: self, answered, counts_for_bot: per_second > 0, sent: true }
    }

    /// The platform said to wait `retry_after` before sending into `chat` again.
    pub fn back_off(&self, chat: &ChatRef, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut chats = self.chats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = chats.get_mut(chat) {
            c.blocked_until = Some(c.blocked_until.map_or(until, |b| b.max(until)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time (tokio's paused clock would need its test-util feature, which slows every
    // `Instant::now()` of the daemon the integration tests build): lower bounds are exact,
    // upper bounds leave room for a busy machine.
    const SLACK: Duration = Duration::from_millis(150);

    fn pacer(min_interval: u64, per_minute: u32, per_second: u32) -> ChatPacer {
        let mut pacer = ChatPacer::new(Pacing { min_interval: Duration::from_millis(min_interval), per_minute, per_second });
        pacer.minute = Duration::from_secs(1);
        pacer
    }

    #[tokio::test]
    async fn a_chat_keeps_its_interval_from_answers_and_its_minute() {
        // 100 ms apart, 5 a "minute" of 1 s.
        let pacer = pacer(100, 5, 0);
        let chat = ChatRef("-1".into());
        let start = pacer.started;
        let mut left = Vec::new();
        for n in 0..5 {
            let turn = pacer.wait_turn(&chat).await;
            left.push(Instant::now() - start);
            // The second send's answer takes 200 ms.
            if n == 1 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            drop(turn);
        }
        assert!(left[0] >= Duration::from_millis(100), "a chat's first send waits the interval from the start: {left:?}");
        assert!(left[2] - left[1] >= Duration::from_millis(300), "the interval runs from the previous answer: {left:?}");
        // The start counts as a send of the last run: 4 sends fit in the first window.
        assert!(left[4] >= Duration::from_secs(1) && left[3] < Duration::from_secs(1), "the 5th send waits for the window: {left:?}");
        let other = ChatRef("-2".into());
        let before = Instant::now();
        drop(pacer.wait_turn(&other).await);
        assert!(before.elapsed() < SLACK, "chats have their own budgets");
        pacer.back_off(&other, Duration::from_millis(400));
        let before = Instant::now();
        let turn = pacer.wait_turn(&other).await;
        assert!(before.elapsed() >= Duration::from_millis(400), "a back-off holds the chat");
        turn.forgo();
        let before = Instant::now();
        drop(pacer.wait_turn(&other).await);
        assert!(before.elapsed() < SLACK, "a forgone turn costs nothing");
    }

    #[tokio::test]
    async fn a_chat_sends_one_thing_at_a_time_in_order() {
        let pacer = Arc::new(pacer(100, 60, 0));
        let chat = ChatRef("-1".into());
        let order = Arc::new(Mutex::new(Vec::new()));
        let tasks: Vec<_> = (0..3)
            .map(|n| {
                let (pacer, chat, order) = (pacer.clone(), chat.clone(), order.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(10 * n)).await;
                    let _turn = pacer.wait_turn(&chat).await;
                    order.lock().unwrap().push((n, Instant::now()));
                    // A send stalls 300 ms: the next waits for its answer, then the interval.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(order.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [0, 1, 2]);
        for pair in order.windows(2) {
            assert!(pair[1].1 - pair[0].1 >= Duration::from_millis(400), "{order:?}");
        }
    }

    #[tokio::test]
    async fn the_bot_keeps_its_second_across_chats() {
        let pacer = Arc::new(pacer(100, 60, 30));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let tasks: Vec<_> = (0..75)
            .map(|n| {
                let pacer = pacer.clone();
                tokio::spawn(async move {
                    let _turn = pacer.wait_turn(&ChatRef(format!("-{n}"))).await;
                    let left = Instant::now();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    (left, Instant::now())
                })
            })
            .collect();
        let mut sends = Vec::new();
        for t in tasks {
            sends.push(t.await.unwrap());
        }
        sends.sort();
        let first = sends[0].0;
        assert!(sends[29].0 - first < SLACK, "30 leave at once");
        assert!(sends[30].0 - first >= Duration::from_millis(1050), "the 31st waits a second from the first answer");
        // Whenever a send leaves, fewer than 30 others are on their way or were answered
        // within the second before: so no second holds more than 30 arrivals.
        for (left, _) in &sends {
            let busy = sends.iter().filter(|(l, answered)| l < left && *answered + SECOND > *left).count();
            assert!(busy < 30, "{busy} sends on their way or answered within the second before one left");
        }
    }
}
