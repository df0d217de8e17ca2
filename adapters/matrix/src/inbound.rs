//! The sync loop: what the bot hears.
//!
//! * `m.room.message` text that parses as a command (`!call`, or `/call` as clients send
//!   unknown slash commands) becomes a `ChatEvent::Command`.
//! * A reaction (🔒 🔓 ⏹ 🙋) on one of the bot's cards becomes a `ChatEvent::Action`.
//! * An invitation is accepted when the allowlist allows its sender.
//!
//! Events in encrypted rooms arrive decrypted (matrix-sdk's olm machine). On the very first
//! start the bot syncs once without listening, so a room's history is never taken for new
//! commands; later starts resume from the stored sync token.

use crate::card::reaction_action;
use crate::session::{self, SYNCED_MARKER};
use crate::{MAX_COMMAND_AGE, MatrixAdapter, encode_ack};
use callbridge_chat::{Actor, Backoff, ChatEvent, ChatRef, Command, Inbound, MessageRef, UserRef, parse_command};
use matrix_sdk::config::SyncSettings;
use matrix_sdk::ruma::events::reaction::OriginalSyncReactionEvent;
use matrix_sdk::ruma::events::room::member::{MembershipState, StrippedRoomMemberEvent};
use matrix_sdk::ruma::events::room::message::{MessageType, OriginalSyncRoomMessageEvent, Relation};
use matrix_sdk::ruma::events::room::power_levels::UserPowerLevel;
use matrix_sdk::ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use matrix_sdk::event_handler::EventHandlerHandle;
use matrix_sdk::ruma::events::room::encrypted::OriginalSyncRoomEncryptedEvent;
use matrix_sdk::{Client, Room, RoomState};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long one long-poll `/sync` waits for news.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

impl MatrixAdapter {
    /// The logged-in client: the one in `login`, or a new login (or restored session), retried
    /// until it works; `None` when cancelled first.
    async fn log_in(&self, login: &mut Option<Client>, cancel: &CancellationToken) -> Option<Client> {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        while login.is_none() {
            tokio::select! {
                _ = cancel.cancelled() => return None,
                r = session::connect(&self.settings, &self.store_dir, self.on_secret) => match r {
                    Ok(client) => *login = Some(client),
                    Err(error) => {
                        tracing::warn!(%error, "matrix: cannot log in; retrying");
                        self.health.failed(&error, false);
                        if !backoff.wait(cancel).await { return None; }
                    }
                }
            }
        }
        login.clone()
    }

    /// On a node that does not lead the bot: logs in and syncs once, which uploads this node's
    /// device keys. Users' clients then encrypt for this device too, so after a fail-over it
    /// reads what is sent in encrypted rooms at once. Nothing is acted on.
    pub(crate) async fn make_device_known(&self, cancel: CancellationToken) {
        let mut login = self.login.lock().await;
        let Some(client) = self.log_in(&mut login, &cancel).await else { return };
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = client.sync_once(SyncSettings::default().timeout(Duration::ZERO)) => match r {
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "matrix: standby sync failed; retrying");
                        if !backoff.wait(&cancel).await { return; }
                    }
                }
            }
        }
        // What came before this sync was the leader's to handle.
        if let Err(error) = std::fs::write(self.store_dir.join(SYNCED_MARKER), b"") {
            tracing::warn!(%error, "matrix: cannot mark the store as synced");
        }
        tracing::info!(device = ?client.device_id(), "matrix: this node's device is known; standing by");
    }

    /// Logs in (or restores; a run after a stop keeps the client it had), then syncs and sends every command and card reaction to `inbox`
    /// until `cancel` fires. Failures are retried with backoff; nothing here ends the daemon.
    pub(crate) async fn sync(self: Arc<Self>, inbox: mpsc::Sender<Inbound>, cancel: CancellationToken) {
        let Some(client) = self.log_in(&mut *self.login.lock().await, &cancel).await else { return };
        let Some(me) = client.user_id().map(ToOwned::to_owned) else {
            tracing::error!("matrix: the session has no user id");
            return;
        };
        let marker = self.store_dir.join(SYNCED_MARKER);
        // A node new to a deployment whose bot already runs (it takes the adapter over from
        // another node) must not skip what arrived meanwhile: it acts on recent history, and
        // the events other nodes took are marked as such.
        let deployment_synced = matches!(self.state.load(SYNCED_MARKER).await, Ok(Some(_)));
        // Events an earlier run took and did not finish come again with the sync (from this
        // store's sync token, or a new store's recent history) and are taken over then.
        if let Err(error) = self.state.begin_run().await {
            tracing::warn!(%error, "matrix: cannot start a run in the database");
        }
        if !marker.exists() && !deployment_synced {
            // First start: take in the rooms' state and history without acting on any of it.
            let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
            loop {
                let first = client.sync_once(SyncSettings::default().timeout(Duration::ZERO));
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = first => match r {
                        Ok(_) => break,
                        Err(error) => {
                            tracing::warn!(%error, "matrix: first sync failed; retrying");
                            if !backoff.wait(&cancel).await { return; }
                        }
                    }
                }
            }
        }
        if !marker.exists() {
            if let Err(error) = std::fs::write(&marker, b"") {
                tracing::warn!(%error, "matrix: cannot mark the store as synced");
            }
            if let Err(error) = self.state.save(SYNCED_MARKER, "1").await {
                tracing::warn!(%error, "matrix: cannot mark the deployment as synced");
            }
        }
        // Only now do sends find their rooms: before the first sync a fresh store knows none,
        // and a card's room that is "not found" would be given up for good.
        let _ = self.client.set(client.clone());
        tracing::info!(user = %me, "matrix bot connected");
        let tasks = TaskTracker::new();
        let listener = Arc::new(Listener {
            adapter: self.clone(),
            inbox,
            me,
            tasks: tasks.clone(),
            cancel: cancel.clone(),
            joined_at: Mutex::default(),
            not_cards: Mutex::default(),
        });
        let handlers = listener.clone().register(&client);
        // Invitations that arrived while the bot was away (or during the first sync).
        for room in client.invited_rooms() {
            if let Ok(invite) = room.invite_details().await {
                listener.consider_invite(room, invite.inviter_id);
            }
        }
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        loop {
            let sync = client.sync_once(SyncSettings::default().timeout(SYNC_TIMEOUT));
            tokio::select! {
                _ = cancel.cancelled() => break,
                r = sync => match r {
                    Ok(_) => {
                        backoff.reset();
                        self.health.ok();
                    }
                    Err(error) => {
                        let unknown_token = matches!(
                            error.as_client_api_error().and_then(|e| e.error_kind()),
                            Some(matrix_sdk::ruma::api::error::ErrorKind::UnknownToken(_))
                        );
                        if unknown_token {
                            tracing::error!(dir = %self.store_dir.display(), "matrix: the homeserver no longer accepts the bot's session; remove session.json in this directory to log in again");
                        } else {
                            tracing::warn!(%error, "matrix: sync failed; retrying");
                        }
                        self.health.failed(&error, false);
                        if !backoff.wait(&cancel).await { break; }
                    }
                }
            }
        }
        // The handlers hold the listener, which holds this adapter and so the client.
        for handle in handlers {
            client.remove_event_handler(handle);
        }
        tasks.close();
        tasks.wait().await;
    }
}

/// What the event handlers share.
struct Listener {
    adapter: Arc<MatrixAdapter>,
    inbox: mpsc::Sender<Inbound>,
    me: OwnedUserId,
    /// Invitation joins run beside the sync (a join can take a while to be allowed).
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// When this process joined a room: the history a join brings along is not new commands.
    joined_at: Mutex<HashMap<OwnedRoomId, MilliSecondsSinceUnixEpoch>>,
    /// Events found not to be cards (reactions on them are ignored without asking again).
    not_cards: Mutex<HashSet<OwnedEventId>>,
}

impl Listener {
    fn register(self: Arc<Self>, client: &Client) -> Vec<EventHandlerHandle> {
        let l = self.clone();
        let messages = client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
            let l = l.clone();
            async move { l.on_message(ev, room).await }
        });
        let l = self.clone();
        let reactions = client.add_event_handler(move |ev: OriginalSyncReactionEvent, room: Room| {
            let l = l.clone();
            async move { l.on_reaction(ev, room).await }
        });
        // Events that reach a handler as `m.room.encrypted` could not be decrypted (no key
        // yet, or a client that withholds keys from unverified devices): say so, since a
        // command among them goes unanswered.
        let undecrypted = client.add_event_handler(|ev: OriginalSyncRoomEncryptedEvent, room: Room| async move {
            tracing::info!(room = %room.room_id(), sender = %ev.sender, "matrix: a message the bot cannot decrypt (no room key for its device)");
        });
        let l = self;
        let invites = client.add_event_handler(move |ev: StrippedRoomMemberEvent, room: Room| {
            let l = l.clone();
            async move {
                if ev.state_key == l.me && ev.content.membership == MembershipState::Invite {
                    l.consider_invite(room, ev.sender);
                }
            }
        });
        vec![messages, reactions, undecrypted, invites]
    }

    /// Whether an event is too old to act on: sent before the bot joined the room (history),
    /// or while the bot was away for long.
    fn stale(&self, room: &RoomId, sent: MilliSecondsSinceUnixEpoch) -> bool {
        if self.joined_at.lock().unwrap_or_else(|e| e.into_inner()).get(room).is_some_and(|at| sent < *at) {
            return true;
        }
        let age_ms = MilliSecondsSinceUnixEpoch::now().get().saturating_sub(sent.get());
        Duration::from_millis(age_ms.into()) > MAX_COMMAND_AGE
    }

    async fn on_message(&self, ev: OriginalSyncRoomMessageEvent, room: Room) {
        if ev.sender == self.me || room.state() != RoomState::Joined {
            return;
        }
        // Edits of a command are not new commands.
        if matches!(ev.content.relates_to, Some(Relation::Replacement(_))) {
            return;
        }
        let MessageType::Text(text) = &ev.content.msgtype else { return };
        let body = strip_reply_fallback(&text.body);
        let prefix = self.adapter.settings.command_prefix.as_str();
        let Some(command) = parse_command(body, prefix, None).or_else(|| parse_command(body, "/", None)) else { return };
        if self.stale(room.room_id(), ev.origin_server_ts) {
            tracing::info!(room = %room.room_id(), "matrix: ignoring a command sent long ago");
            return;
        }
        let actor = self.actor(&room, &ev.sender, command.asks_admin()).await;
        // Private means just the two of them, counted now: a room's direct flag is set by
        // whoever invited the bot, and a host link must never land in a group.
        let private = matches!(command, Command::Call { .. }) && self.adapter.just_us(&room, &ev.sender).await;
        let chat_name = room.name();
        let event = ChatEvent::Command { chat: ChatRef(room.room_id().to_string()), actor, command, private, answer: None, chat_name };
        if let Some(receipt) = self.adapter.take(&ev.event_id).await {
            let _ = self.inbox.send(Inbound { event, receipt: Some(receipt) }).await;
        }
    }

    async fn on_reaction(&self, ev: OriginalSyncReactionEvent, room: Room) {
        if ev.sender == self.me || room.state() != RoomState::Joined {
            return;
        }
        let Some(action) = reaction_action(&ev.content.relates_to.key) else { return };
        let card = &ev.content.relates_to.event_id;
        if self.stale(room.room_id(), ev.origin_server_ts) || !self.is_our_card(&room, card).await {
            return;
        }
        let actor = self.actor(&room, &ev.sender, true).await;
        let event = ChatEvent::Action {
            chat: ChatRef(room.room_id().to_string()),
            message: MessageRef(card.to_string()),
            actor,
            action,
            ack: encode_ack(room.room_id(), &ev.event_id),
        };
        if let Some(receipt) = self.adapter.take(&ev.event_id).await {
            let _ = self.inbox.send(Inbound { event, receipt: Some(receipt) }).await;
        }
    }

    /// Whether `event` is a message of the bot's (a card); asks the homeserver once per event
    /// this process has not seen.
    async fn is_our_card(&self, room: &Room, event: &EventId) -> bool {
        if self.adapter.is_known_card(event) {
            return true;
        }
        if self.not_cards.lock().unwrap_or_else(|e| e.into_inner()).contains(event) {
            return false;
        }
        let fetched = tokio::time::timeout(self.adapter.settings.request_timeout, room.event(event, None)).await;
        // A card is the bot's notice with HTML; its replies and help are plain notices.
        let ours = matches!(&fetched, Ok(Ok(e)) if e.sender().as_deref() == Some(&*self.me)
            && e.raw().get_field::<serde_json::Value>("content").ok().flatten().is_some_and(|c| c["formatted_body"].is_string() && c["m.relates_to"].is_null()));
        if ours {
            self.adapter.remember_card(event.to_owned());
        } else if matches!(fetched, Ok(Ok(_))) {
            let mut not_cards = self.not_cards.lock().unwrap_or_else(|e| e.into_inner());
            if not_cards.len() > 4096 {
                not_cards.clear();
            }
            not_cards.insert(event.to_owned());
        }
        ours
    }

    /// Who `user` is in `room`: their room display name and, when asked, whether their power
    /// level gives host powers (room creators in room version 12 have unlimited power).
    async fn actor(&self, room: &Room, user: &UserId, check_admin: bool) -> Actor {
        let member = room.get_member_no_sync(user).await.ok().flatten();
        let display_name = member.as_ref().map(|m| m.name().to_owned()).unwrap_or_else(|| user.localpart().to_owned());
        let is_admin = check_admin
            && match room.get_user_power_level(user).await {
                Ok(UserPowerLevel::Infinite) => true,
                Ok(UserPowerLevel::Int(level)) => i64::from(level) >= self.adapter.settings.admin_power_level,
                Ok(_) => false,
                Err(error) => {
                    tracing::warn!(%error, "matrix: cannot read power levels; treating as not an admin");
                    false
                }
            };
        Actor { user: UserRef(user.to_string()), display_name, is_admin, handle: None }
    }

    /// Joins an invited room when the allowlist allows the inviter; a refused invitation is
    /// declined so it does not linger.
    fn consider_invite(self: &Arc<Self>, room: Room, inviter: OwnedUserId) {
        let allowed = self.adapter.settings.accepts_invite_from(&inviter);
        let cancel = self.cancel.clone();
        let this = self.clone();
        self.tasks.spawn(async move {
            if !allowed {
                tracing::info!(room = %room.room_id(), %inviter, "matrix: invitation from someone not in auto_join; declined");
                let _ = room.leave().await;
                return;
            }
            // Homeservers can refuse a join for a moment right after the invitation.
            let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(8));
            // Noted before joining: the sync that brings the room may beat the join's answer.
            this.joined_at.lock().unwrap_or_else(|e| e.into_inner()).insert(room.room_id().to_owned(), MilliSecondsSinceUnixEpoch::now());
            for attempt in 1..=6 {
                match room.join().await {
                    Ok(()) => {
                        tracing::info!(room = %room.room_id(), %inviter, "matrix: joined a room on invitation");
                        return;
                    }
                    Err(error) if attempt < 6 => {
                        tracing::debug!(%error, attempt, "matrix: join failed; retrying");
                        if !backoff.wait(&cancel).await { return; }
                    }
                    Err(error) => tracing::warn!(%error, room = %room.room_id(), "matrix: cannot join a room it was invited to"),
                }
            }
        });
    }
}

/// A reply's body starts with the quoted original (`> <@user> text`, then a blank line).
fn strip_reply_fallback(body: &str) -> &str {
    if !body.starts_with("> ") {
        return body;
    }
    match body.find("\n\n") {
        Some(i) => &body[i + 2..],
        None => body,
    }
}

/// The adapter's run: the sync loop above.
pub(crate) async fn run(adapter: Arc<MatrixAdapter>, inbox: mpsc::Sender<Inbound>, cancel: CancellationToken) {
    adapter.sync(inbox, cancel).await
}
