//! The bridge: chat commands in, join cards out.
//!
//! An adapter delivers [`ChatEvent`]s (commands and card-button presses); the bridge decides
//! through [`RoomService`] and answers through the adapter. It never names a platform.
//!
//! * `adapters` — every adapter's lifecycle: start and stop, all or one.
//! * `calllog` — the chat's call log (`/calls`) and the ended card's Call again.
//! * `cards` — the room ↔ posted-card mapping (table `cards`) and `RoomView` → `Card`.
//! * `gateways` — one call's cards in every chat of its gateway, on every platform.
//! * `notices` — what the host hears privately: knocks (Admit, Deny) and arrivals.
//! * `ringing` — `/ringme`, `/ring`, the private prompts that ring, and missed calls.
//! * `schedule` — scheduled calls: their start time, reminders, and ringing at the start.
//! * `pacer` — per-chat send budgets shared by every message and edit of the bot.
//! * `state` — what an adapter keeps in the database (offsets, updates taken).
//! * `texts` — everything the bridge says, in English, Spanish and French.
//! * `updater` — `CardUpdater`, which keeps posted cards current.

pub mod adapters;
mod calllog;
pub mod cards;
mod gateways;
mod notices;
pub mod pacer;
mod ringing;
mod schedule;
pub mod state;
mod texts;
pub mod updater;

use crate::room::{Media, RoomKind};
use crate::ids::{KnockId, RoomId};
use crate::service::{CreateOptions, Credential, KnockDecision, KnockMatch, Knocks, Lock, RoomService, ServiceError};
use crate::store::{KnockAnswer, PostedCard, Purpose, StateChange};
use callbridge_chat::{Actor, CardAction, ChatAdapter, ChatEvent, ChatRef, Command, Inbound, Kind, MENU, SendError, UserRef, fill};
use crate::policy::{ChatPolicy, WhoMayCall};
use crate::room::RoomView;
use texts::{Texts, texts};
use std::collections::HashMap;
use pacer::ChatPacer;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
pub use updater::CardUpdater;

/// How the bridge of one adapter behaves.
#[derive(Debug, Clone, Copy)]
pub struct BridgeSettings {
    /// How long a burst of room changes is gathered before a card is edited.
    pub debounce: Duration,
}

/// Starts the bridge of one adapter: its card updater (which first re-renders the cards left
/// open by an earlier run) and its command loop. Both stop when `cancel` fires.
pub fn start(
    rooms: RoomService,
    adapter: Arc<dyn ChatAdapter>,
    inbox: mpsc::Receiver<Inbound>,
    settings: BridgeSettings,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) {
    let pacer = Arc::new(ChatPacer::new(adapter.pacing()));
    let updater =
        CardUpdater::new(rooms.clone(), adapter.clone(), pacer.clone(), settings.debounce, tracker.clone(), cancel.clone());
    let events = rooms.subscribe();
    let notices = rooms.subscribe();
    tracker.spawn({
        let updater = updater.clone();
        async move {
            match updater.resume().await {
                Ok(n) => tracing::info!(cards = n, "card updater resumed open cards"),
                Err(error) => tracing::warn!(%error, "cannot resume open cards"),
            }
            updater.run(events).await;
        }
    });
    let calls = CallQuota::new(&rooms.config().rooms);
    let bridge = Arc::new(Bridge { rooms, adapter, pacer, updater, calls, tracker: tracker.clone(), rings_due: Notify::new() });
    tracker.spawn({
        let (bridge, cancel) = (bridge.clone(), cancel.clone());
        async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = bridge.catch_up_gateways() => {}
            }
        }
    });
    tracker.spawn(bridge.clone().miss_rings(cancel.clone()));
    tracker.spawn(bridge.clone().remind(cancel.clone()));
    tracker.spawn(bridge.clone().notices(notices, cancel.clone()));
    tracker.spawn(bridge.run(inbox, cancel));
}

/// Events waiting in one chat. A chat that sends faster than the bot may answer there fills
/// it, and its further events are dropped: never queued without bound, never in the way of
/// another chat.
const CHAT_QUEUE: usize = 16;
/// A chat's worker ends after this long without an event (a new one starts on the next).
const CHAT_IDLE: Duration = Duration::from_secs(60);
/// How long a stopping bridge lets the event in hand finish.
const FINISH_GRACE: Duration = Duration::from_secs(5);
/// How often the dispatcher forgets the workers that ended.
const FORGET_ENDED_EVERY: usize = 64;

/// The command side of the bridge.
struct Bridge {
    rooms: RoomService,
    adapter: Arc<dyn ChatAdapter>,
    pacer: Arc<ChatPacer>,
    updater: CardUpdater,
    calls: CallQuota,
    /// Owns the per-chat workers, so stopping the adapter waits for them.
    tracker: TaskTracker,
    /// Wakes the missed-call timer when someone is rung.
    rings_due: Notify,
}

/// Whom a new call rings at once.
enum RingList {
    Nobody,
    /// Every opted-in member of the chat (`/call ring`).
    OptedIn,
    /// These people (Call again rings whoever the ended call rang).
    These(Vec<crate::store::OptIn>),
}

/// A call to start and post in a chat.
struct CallRequest {
    kind: Option<Kind>,
    title: Option<String>,
    media: Option<Media>,
    /// The host link is the command's answer (a private chat, or an answer only the sender sees).
    private: bool,
    ring: RingList,
    chat_name: Option<String>,
    /// Words for the people rung.
    message: Option<String>,
    /// A scheduled call's start: its room opens 10 minutes before, and the chat's opted-in
    /// members are rung then (not now).
    starts_at: Option<i64>,
}

/// How many calls one user, and one chat, may start per hour (`[rooms]`).
struct CallQuota {
    per_user: Option<governor::DefaultKeyedRateLimiter<String>>,
    per_chat: Option<governor::DefaultKeyedRateLimiter<String>>,
}

impl CallQuota {
    fn new(rooms: &crate::config::RoomsConfig) -> CallQuota {
        let limiter = |n: u32| std::num::NonZeroU32::new(n).map(|n| governor::RateLimiter::keyed(governor::Quota::per_hour(n)));
        CallQuota { per_user: limiter(rooms.calls_per_user_per_hour), per_chat: limiter(rooms.calls_per_chat_per_hour) }
    }

    /// Spends one call of `user` and of `chat`; `false` when either has none left.
    fn allows(&self, user: &UserRef, chat: &ChatRef) -> bool {
        let spend = |limiter: &Option<governor::DefaultKeyedRateLimiter<String>>, key: &str| {
            limiter.as_ref().is_none_or(|l| l.check_key(&key.to_owned()).is_ok())
        };
        spend(&self.per_user, user.as_str()) && spend(&self.per_chat, chat.as_str())
    }
}

/// Why a host action was refused, or what it did.
type Outcome = Result<String, String>;

impl Bridge {
    /// The policy of `chat` on this bridge's platform.
    fn policy(&self, chat: &ChatRef) -> ChatPolicy {
        self.rooms.config().policy(self.adapter.platform(), chat.as_str())
    }

    /// What the bridge says in `chat`.
    fn t(&self, chat: &ChatRef) -> &'static Texts {
        texts(self.policy(chat).language)
    }

    /// The policy of the chat a room was started in (the defaults' for a room of the API).
    fn policy_of(&self, view: &RoomView) -> ChatPolicy {
        let config = self.rooms.config();
        config.policy(view.platform.as_deref().unwrap_or_default(), view.chat_ref.as_deref().unwrap_or_default())
    }

    /// What the bridge says about a room (privately, too): its chat's language.
    fn t_of(&self, view: &RoomView) -> &'static Texts {
        texts(self.policy_of(view).language)
    }

    /// Whether the room was started from this bridge's platform: its host is a user here.
    fn started_here(&self, view: &RoomView) -> bool {
        view.platform.as_deref() == Some(self.adapter.platform())
    }

    /// Hands each event to its chat's worker: chats proceed side by side, and within a chat in
    /// order (a `/lock` right after a `/call` must see the new room).
    async fn run(self: Arc<Self>, mut inbox: mpsc::Receiver<Inbound>, cancel: CancellationToken) {
        let mut chats: HashMap<ChatRef, mpsc::Sender<Inbound>> = HashMap::new();
        let mut seen = 0usize;
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                e = inbox.recv() => match e { Some(e) => e, None => return },
            };
            seen += 1;
            if seen.is_multiple_of(FORGET_ENDED_EVERY) {
                chats.retain(|_, worker| !worker.is_closed());
            }
            let chat = event.event.chat().clone();
            let mut event = Some(event);
            while let Some(e) = event.take() {
                let worker = chats.entry(chat.clone()).or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(CHAT_QUEUE);
                    self.tracker.spawn(self.clone().chat_worker(rx, cancel.clone()));
                    tx
                });
                match worker.try_send(e) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(dropped)) => {
                        tracing::warn!(chat = %chat, "a chat outpaces its budget; an event is dropped");
                        // Dropped on purpose: no later run should handle it either.
                        if let Some(receipt) = dropped.receipt {
                            self.tracker.spawn(receipt.done());
                        }
                    }
                    // That worker just ended for idleness: start another.
                    Err(mpsc::error::TrySendError::Closed(e)) => {
                        chats.remove(&chat);
                        event = Some(e);
                    }
                }
            }
        }
    }

    /// Handles one chat's events in order; ends after [`CHAT_IDLE`] without one, handling
    /// whatever arrived meanwhile first.
    async fn chat_worker(self: Arc<Self>, mut events: mpsc::Receiver<Inbound>, cancel: CancellationToken) {
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                e = tokio::time::timeout(CHAT_IDLE, events.recv()) => match e {
                    Ok(Some(e)) => e,
                    Ok(None) => return,
                    Err(_) => {
                        events.close();
                        match events.try_recv() {
                            Ok(e) => e,
                            Err(_) => return,
                        }
                    }
                },
            };
            // A stop lets the event in hand finish (within FINISH_GRACE): a command half
            // handled (its card posted, the host's link not yet sent) would be handled again
            // by the next run. What is queued behind it stays unfinished, for the next run
            // (here or on another node) to handle.
            let handling = self.handle(event.event);
            tokio::pin!(handling);
            tokio::select! {
                _ = &mut handling => {}
                _ = cancel.cancelled() => {
                    if tokio::time::timeout(FINISH_GRACE, handling).await.is_err() {
                        return;
                    }
                }
            }
            if let Some(receipt) = event.receipt {
                receipt.done().await;
            }
        }
    }

    async fn handle(&self, event: ChatEvent) {
        let platform = self.adapter.platform();
        let t = self.t(event.chat());
        match event {
            ChatEvent::Command { chat, actor, command, private, answer, chat_name } => {
                let span = tracing::info_span!("command", platform, chat = %chat);
                let _ = &span;
                tracing::debug!(parent: &span, ?command, "command");
                metrics::counter!("callbridge_chat_commands_total", "platform" => platform, "command" => command.name()).increment(1);
                let reply = match command {
                    // With an answer handle, the host link is the command's (private) answer.
                    Command::Call { kind, title, mesh, ring, at } => 'call: {
                        let starts_at = match at.map(|at| schedule::start_ms(at, self.rooms.now_ms(), self.policy(&chat).tz())) {
                            Some(Err(why)) => break 'call Some(why.text(t).to_owned()),
                            Some(Ok(start)) => Some(start),
                            None => None,
                        };
                        let request = CallRequest {
                            kind,
                            title,
                            media: mesh.then_some(Media::Mesh),
                            private: private || answer.is_some(),
                            ring: if ring { RingList::OptedIn } else { RingList::Nobody },
                            chat_name,
                            message: None,
                            starts_at,
                        };
                        self.call(&chat, &actor, request).await
                    }
                    Command::Help => Some(help(self.adapter.command_prefix(), t)),
                    _ if private && command.in_group_only() => Some(t.group_only.into()),
                    Command::RingMe { on } => Some(self.ring_me(&chat, &actor, on, chat_name.as_deref()).await.unwrap_or_else(|why| why)),
                    Command::Ring { targets, message } => self.ring_command(&chat, &actor, targets, message).await,
                    Command::Unring { targets } => self.unring_command(&chat, &actor, targets).await,
                    Command::Notify { on } => self.notify_command(&chat, &actor, on).await,
                    Command::Calls => {
                        let log = self.call_log(&chat, t).await;
                        // Privately where the platform allows; the answer handle is private already.
                        if answer.is_some() || private {
                            Some(log)
                        } else {
                            match self.private(&actor.user, &log).await {
                                Ok(()) => None,
                                Err(_) => Some(log),
                            }
                        }
                    }
                    other => self.room_command(&chat, &actor, other).await,
                };
                match (answer, reply) {
                    // A command awaiting its answer always gets one: the card shows the rest.
                    (Some(ack), reply) => {
                        let text = reply.unwrap_or_else(|| t.done_card_shows.to_owned());
                        if let Err(error) = self.adapter.answer_command(&ack, &text).await {
                            tracing::warn!(%error, "cannot answer a command");
                        }
                    }
                    (None, Some(text)) => self.reply(&chat, &text).await,
                    (None, None) => {}
                }
            }
            ChatEvent::Action { chat, message, actor, action, ack } if matches!(action, CardAction::Accept | CardAction::Decline) => {
                // A private prompt's buttons.
                let accept = action == CardAction::Accept;
                let outcome = match self.rooms.prompt_of(platform, &chat, &message).await {
                    Ok(Some(prompt)) if prompt.purpose == Purpose::Ring => self.answer_ring(&prompt, (&chat, &message), &actor, accept).await,
                    Ok(Some(prompt)) => self.answer_knock_prompt(&prompt, &actor, accept).await,
                    // Not a prompt (a ✅ reaction on anything else, on Matrix): nothing to do.
                    Ok(None) => {
                        if let Err(error) = self.adapter.answer_action(&ack, None, false).await {
                            tracing::debug!(%error, "cannot answer a button press");
                        }
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot look up a prompt");
                        Err(t.went_wrong.to_owned())
                    }
                };
                self.answer(&chat, &ack, outcome).await;
            }
            ChatEvent::Action { chat, message, actor, action, ack } => {
                let room = self.rooms.room_of_card(platform, &chat, &message).await;
                let outcome = match room {
                    Ok(Some(room_id)) if action == CardAction::JoinAsMe => self.personal_link(platform, &room_id, &actor, t).await,
                    Ok(Some(room_id)) if action == CardAction::RingMe => {
                        let chat_name = self.rooms.view(&room_id, Knocks::Hidden).await.ok().and_then(|v| v.chat_name);
                        self.ring_me(&chat, &actor, None, chat_name.as_deref()).await
                    }
                    Ok(Some(room_id)) if action == CardAction::CallAgain => self.call_again(&chat, &room_id, &actor).await,
                    Ok(Some(room_id)) => self.host_action(&room_id, &actor, action, t).await,
                    Ok(None) => Err(t.card_inactive.to_owned()),
                    Err(error) => {
                        tracing::warn!(%error, "cannot look up a card");
                        Err(t.went_wrong.to_owned())
                    }
                };
                self.answer(&chat, &ack, outcome).await;
            }
        }
    }

    /// Answers a button press with what it did, or (as an alert) why not.
    async fn answer(&self, chat: &ChatRef, ack: &callbridge_chat::ActionAck, outcome: Outcome) {
        let (text, alert) = match &outcome {
            Ok(done) => (done.as_str(), false),
            Err(why) => (why.as_str(), true),
        };
        // Where an answer is a message in the chat, it spends the chat's budget too.
        let turn = if alert && self.adapter.alerts_in_chat() { Some(self.pacer.wait_turn(chat).await) } else { None };
        if let Err(error) = self.adapter.answer_action(ack, Some(text), alert).await {
            tracing::warn!(%error, "cannot answer a button press");
        }
        drop(turn);
    }

    /// `/call`: mint a room, post its card, hand the host their link, ring whom it asks.
    async fn call(&self, chat: &ChatRef, actor: &Actor, request: CallRequest) -> Option<String> {
        let CallRequest { kind, title, media, private, ring, chat_name, message: ring_message, starts_at } = request;
        let policy = self.policy(chat);
        let t = texts(policy.language);
        if policy.who_may_call == WhoMayCall::Admins && !actor.is_admin {
            return Some(t.only_admins_call.into());
        }
        if !self.calls.allows(&actor.user, chat) {
            return Some(t.too_many_calls.into());
        }
        // The chat's policy decides what the command leaves open.
        let media = media.unwrap_or(policy.media);
        let opts = CreateOptions {
            title: title.map(|t| t.chars().take(crate::room::MAX_TITLE_CHARS).collect()),
            kind: Some(kind.map_or(policy.kind, |k| match k {
                Kind::Video => RoomKind::Video,
                Kind::Voice => RoomKind::Voice,
            })),
            host_name: Some(actor.display_name.chars().take(crate::room::MAX_NAME_CHARS).collect()),
            host_ref: Some(actor.user.0.clone()),
            chat_ref: Some(chat.0.clone()),
            platform: Some(self.adapter.platform().to_owned()),
            chat_name,
            starts_at,
            media: Some(media),
            // `/call private` in a chat whose rooms are SFU rooms: a mesh's own size.
            max_participants: (media == policy.media).then_some(policy.max_participants),
            knock: Some(policy.knock),
        };
        let created = match self.rooms.create(opts).await {
            Ok(c) => c,
            Err(ServiceError::Invalid(why)) => return Some(fill(t.cannot_start_why, &[("why", why)])),
            Err(error) => {
                tracing::error!(%error, "cannot create a room");
                return Some(t.cannot_start.into());
            }
        };
        if policy.lock_on_start
            && let Err(error) = self.rooms.set_lock(&created.id, Lock::Locked).await
        {
            tracing::warn!(%error, room_id = %created.id, "cannot lock a new room");
        }
        match self.post_card(&created.id, chat).await {
            Ok(true) => self.rooms.announce_card(&created.id, self.adapter.platform(), chat.as_str()),
            Ok(false) => return None,
            Err(()) => return Some(t.cannot_start.into()),
        }
        let ring = match ring {
            // A scheduled call rings the chat's opted-in members at its start.
            _ if starts_at.is_some() => Vec::new(),
            RingList::Nobody => Vec::new(),
            RingList::OptedIn => self.rooms.ring_optins(self.adapter.platform(), chat).await.unwrap_or_default(),
            RingList::These(people) => people,
        };
        let ring: Vec<_> = ring.into_iter().filter(|o| o.user_ref != actor.user.0).collect();
        if !ring.is_empty() {
            self.ring(&created.id, &ring, actor, ring_message.as_deref()).await;
        }

        let host_text = fill(t.host_link, &[("link", &self.rooms.host_url(&created.id, &created.host_token))]);
        if private {
            return Some(host_text);
        }
        match self.private(&actor.user, &host_text).await {
            Ok(()) => None,
            Err(error) => {
                tracing::info!(%error, "cannot send the host link privately");
                Some(fill(t.host_link_failed, &[("name", &actor.display_name), ("p", self.adapter.command_prefix())]))
            }
        }
    }

    /// Posts the card of `room` in `chat`, records and tracks it: `Ok(false)` when the platform
    /// refused it, `Err` when the room cannot be read.
    async fn post_card(&self, room: &RoomId, chat: &ChatRef) -> Result<bool, ()> {
        let card = match cards::card_of(&self.rooms, room, self.adapter.platform(), chat).await {
            Ok(card) => card,
            Err(error) => {
                tracing::error!(%error, %room, "cannot read a new room");
                return Err(());
            }
        };
        let message = loop {
            let turn = self.pacer.wait_turn(chat).await;
            let posted = self.adapter.post_card(chat, &card).await;
            drop(turn);
            let outcome = crate::telemetry::send_outcome(&posted);
            metrics::counter!("callbridge_card_sends_total", "platform" => self.adapter.platform(), "kind" => "post", "outcome" => outcome).increment(1);
            match posted {
                Ok(m) => break m,
                Err(SendError::RetryAfter(wait)) => self.pacer.back_off(chat, wait),
                Err(SendError::Transient(error)) => {
                    tracing::warn!(%error, "cannot post a card; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(error) => {
                    tracing::warn!(%error, %room, "cannot post a card");
                    return Ok(false);
                }
            }
        };
        let posted = PostedCard { room_id: room.clone(), chat: chat.clone(), message, rendered: Some(cards::digest(&card)) };
        if let Err(error) = self.rooms.record_card(self.adapter.platform(), &posted).await {
            tracing::error!(%error, %room, "cannot record a posted card");
        }
        self.updater.track(posted);
        tracing::info!(%room, chat = %chat, "join card posted");
        Ok(true)
    }

    /// `/lock`, `/unlock`, `/end`, `/who`, `/admit`, `/deny` on the chat's latest open room.
    async fn room_command(&self, chat: &ChatRef, actor: &Actor, command: Command) -> Option<String> {
        let t = self.t(chat);
        let p = self.adapter.command_prefix();
        let room_id = match self.rooms.latest_open_room(self.adapter.platform(), chat).await {
            Ok(Some(id)) => id,
            Ok(None) => return Some(fill(t.no_call, &[("p", p)])),
            Err(error) => {
                tracing::warn!(%error, "cannot find the chat's room");
                return Some(t.went_wrong.into());
            }
        };
        if command == Command::Who {
            return Some(match self.rooms.view(&room_id, Knocks::Hidden).await {
                Ok(view) => {
                    let card = cards::card_from_view(&view, &[]);
                    if card.present.is_empty() {
                        t.nobody_in_call.into()
                    } else {
                        fill(t.in_call, &[("n", &card.present.len().to_string()), ("names", &card.present.join(", "))])
                    }
                }
                Err(_) => t.call_unavailable.into(),
            });
        }
        let admit = matches!(command, Command::Admit { .. });
        let action = match command {
            Command::Lock => CardAction::Lock,
            Command::Unlock => CardAction::Unlock,
            Command::End => CardAction::End,
            Command::Admit { name: who } | Command::Deny { name: who } if who.is_empty() => {
                return Some(fill(t.say_whom, &[("p", p)]));
            }
            Command::Admit { name: who } | Command::Deny { name: who } => {
                match self.rooms.find_pending_knock(&room_id, &who).await {
                    Ok(KnockMatch::One(id)) if admit => CardAction::Admit(id.into()),
                    Ok(KnockMatch::One(id)) => CardAction::Deny(id.into()),
                    Ok(KnockMatch::Several(codes)) => {
                        let verb = if admit { "admit" } else { "deny" };
                        let codes = codes.iter().map(|c| format!("{p}{verb} #{c}")).collect::<Vec<_>>().join(", ");
                        return Some(fill(t.several_waiting, &[("name", &who), ("codes", &codes)]));
                    }
                    _ => return Some(fill(t.nobody_waiting, &[("name", &who)])),
                }
            }
            _ => return None,
        };
        // The card shows what changed; a reply would only spend the chat's budget.
        self.host_action(&room_id, actor, action, t).await.err()
    }

    /// A link that joins the presser under their chat name. It goes to them alone, never to
    /// the chat: in a private chat where the platform has one, else as an answer only they
    /// see (an alert, which some platforms show as a message to them alone).
    async fn personal_link(&self, platform: &str, room_id: &RoomId, actor: &Actor, t: &Texts) -> Outcome {
        let view = self.rooms.view(room_id, Knocks::Hidden).await.map_err(|_| t.call_unavailable.to_owned())?;
        if view.ended {
            return Err(t.call_ended.into());
        }
        let name: String = actor.display_name.chars().filter(|c| !c.is_control()).take(crate::room::MAX_NAME_CHARS).collect();
        let name = if name.trim().is_empty() { t.guest.to_owned() } else { name.trim().to_owned() };
        let link = self.rooms.personal_url(room_id, &format!("{platform}:{}", actor.user), &name);
        let text = fill(t.personal_link, &[("name", &name), ("link", &link)]);
        if self.adapter.private_chat(&actor.user).is_none() {
            return Err(text);
        }
        match self.private(&actor.user, &text).await {
            Ok(()) => Ok(t.personal_link_sent.into()),
            Err(error) => {
                tracing::info!(%error, "cannot send a personal link privately");
                Err(t.personal_link_failed.into())
            }
        }
    }

    /// A host power, checked: the room's host or a chat admin.
    async fn host_action(&self, room_id: &RoomId, actor: &Actor, action: CardAction, t: &Texts) -> Outcome {
        let decision = if matches!(action, CardAction::Admit(_)) { KnockDecision::Admit } else { KnockDecision::Deny };
        let view = self.rooms.view(room_id, Knocks::Hidden).await.map_err(|_| t.call_unavailable.to_owned())?;
        let credential = Credential::ChatUser { user_ref: actor.user.as_str(), chat_admin: actor.is_admin };
        let power = self.rooms.authorize(room_id, credential).await.map_err(|_| t.went_wrong.to_owned())?;
        if !power.is_host() {
            let host = view.host_name.as_deref().unwrap_or(t.the_host);
            let refusal = match action {
                CardAction::Lock => t.only_host_lock,
                CardAction::Unlock => t.only_host_unlock,
                CardAction::End => t.only_host_end,
                CardAction::Admit(_) => t.only_host_admit,
                CardAction::Deny(_) => t.only_host_deny,
                _ => t.only_host_change,
            };
            return Err(fill(refusal, &[("host", host)]));
        }
        let gone = || t.call_ended.to_owned();
        let failed = |e: ServiceError| {
            tracing::warn!(error = %e, %room_id, "host action failed");
            t.went_wrong.to_owned()
        };
        match action {
            CardAction::Lock | CardAction::Unlock => {
                let lock = if action == CardAction::Lock { Lock::Locked } else { Lock::Unlocked };
                let locked = lock == Lock::Locked;
                match self.rooms.set_lock(room_id, lock).await.map_err(failed)? {
                    StateChange::Changed => Ok(if locked { t.locked_done } else { t.unlocked_done }.into()),
                    StateChange::Unchanged => Ok(if locked { t.already_locked } else { t.already_unlocked }.into()),
                    StateChange::NotFound | StateChange::Gone => Err(gone()),
                }
            }
            CardAction::End => match self.rooms.end(room_id).await.map_err(failed)? {
                StateChange::Changed | StateChange::Unchanged => Ok(t.ended_done.into()),
                StateChange::NotFound | StateChange::Gone => Err(gone()),
            },
            CardAction::Admit(knock) | CardAction::Deny(knock) => {
                // A knock id comes back from a button: one of another shape was never ours.
                let Some(knock) = KnockId::parse(&knock) else { return Err(knock_refusal(&KnockAnswer::NotFound, t)) };
                match self.rooms.answer_knock(room_id, &knock, decision).await.map_err(failed)? {
                    KnockAnswer::Answered(name) => Ok(match decision {
                        KnockDecision::Admit => fill(t.may_join, &[("name", &name)]),
                        KnockDecision::Deny => fill(t.turned_away, &[("name", &name)]),
                    }),
                    other => Err(knock_refusal(&other, t)),
                }
            }
            CardAction::JoinAsMe | CardAction::Accept | CardAction::Decline | CardAction::RingMe | CardAction::CallAgain => {
                unreachable!("handled before host powers are checked")
            }
        }
    }

    /// Sends plain text to a chat within its budget.
    async fn reply(&self, chat: &ChatRef, text: &str) {
        if let Err(error) = self.paced(chat, || self.adapter.reply(chat, text)).await {
            tracing::warn!(%error, "cannot reply");
        }
    }

    /// One send into `chat` (or a private chat's pacing key) within its budget: waits its
    /// turn, honours the platform's `retry_after`, and tries a failure worth retrying again, up
    /// to [`SEND_TRIES`] times in all.
    async fn paced<T, F>(&self, chat: &ChatRef, mut send: impl FnMut() -> F) -> Result<T, SendError>
    where
        F: std::future::Future<Output = Result<T, SendError>>,
    {
        let mut last = SendError::Transient("not tried".into());
        for _ in 0..SEND_TRIES {
            let turn = self.pacer.wait_turn(chat).await;
            let sent = send().await;
            drop(turn);
            match sent {
                Err(SendError::RetryAfter(wait)) => {
                    self.pacer.back_off(chat, wait);
                    last = SendError::RetryAfter(wait);
                }
                Err(SendError::Transient(error)) => {
                    tracing::warn!(%error, "a send failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    last = SendError::Transient(error);
                }
                done => return done,
            }
        }
        Err(last)
    }
}

/// How many times one message or edit is tried when the platform asks to wait or fails for a
/// moment.
const SEND_TRIES: usize = 5;

fn knock_refusal(answer: &KnockAnswer, t: &Texts) -> String {
    match answer {
        KnockAnswer::Answered(_) => t.done.into(),
        KnockAnswer::Full => t.full.into(),
        _ => t.already_answered.into(),
    }
}

/// What `/help` says: the port's command menu, with the platform's command prefix.
fn help(p: &str, t: &Texts) -> String {
    let commands = MENU.iter().map(|c| {
        let usage = if c.usage.is_empty() { String::new() } else { format!(" {}", c.usage) };
        format!("{p}{}{usage} — {}", c.name, t.describe(c.name, c.description))
    });
    format!("{}\n{}\n{}", t.help_intro, commands.collect::<Vec<_>>().join("\n"), t.help_outro)
}
