//! # The Matrix adapter of callbridge
//!
//! A bot account on a homeserver, driven by matrix-sdk with end-to-end encryption and its
//! SQLite stores, so it reads `!call` and posts cards in encrypted rooms as well as plain ones.
//!
//! * [`session`] — logging in once (password or access token), then restoring that session,
//!   its sync token and its crypto store from the data directory on every later start.
//! * [`inbound`] — the sync loop: commands from `m.room.message`, reactions on cards as
//!   button presses, invitations accepted subject to the allowlist.
//! * [`card`] — `Card` → an `m.notice` with an HTML `formatted_body` and a plain fallback.
//!
//! Outbound, a card is posted once and then kept current with edits (`m.replace` carrying
//! `m.new_content`); pacing and coalescing are the core's. The SDK's own retries are turned
//! off so a 429 reaches the core's pacer with its `retry_after_ms`.

pub mod card;
pub mod inbound;
pub mod session;

use callbridge_chat::{ActionAck, BoxFuture, Card, ChatAdapter, ChatRef, MessageRef, Pacing, SendError, UserRef};
use matrix_sdk::ruma::api::error::{ErrorKind, RetryAfter};
use matrix_sdk::ruma::events::Mentions;
use matrix_sdk::ruma::events::room::message::{ReplacementMetadata, RoomMessageEventContent};
use matrix_sdk::ruma::{EventId, OwnedEventId, OwnedTransactionId, OwnedUserId, RoomId, UserId};
use matrix_sdk::{Client, Room};
use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};
use url::Url;

/// Who may invite the bot into a room (it joins only then).
#[derive(Debug, Clone, Default)]
pub struct AutoJoin {
    /// Full user ids (`@alice:example.org`) whose invitations are accepted.
    pub inviters: Vec<String>,
    /// Homeservers (`example.org`) whose users' invitations are accepted.
    pub servers: Vec<String>,
}

impl AutoJoin {
    /// Whether an invitation from `inviter` is accepted; an empty allowlist accepts anyone.
    pub fn allows(&self, inviter: &UserId) -> bool {
        (self.inviters.is_empty() && self.servers.is_empty())
            || self.inviters.iter().any(|u| u == inviter.as_str())
            || self.servers.iter().any(|s| s == inviter.server_name().as_str())
    }
}

/// What the adapter needs to run.
#[derive(Clone)]
pub struct Settings {
    /// The homeserver's client-server API base.
    pub homeserver: Url,
    /// The bot's user id (`@callbridge:example.org`) or localpart.
    pub user: String,
    /// The bot's password, used once to log in; the session is kept afterwards.
    pub password: Option<String>,
    /// Or an access token of an existing device.
    pub access_token: Option<String>,
    /// The device's display name on first login.
    pub device_name: String,
    /// What starts a command (`!`); `/call` works too.
    pub command_prefix: String,
    /// Least power level that gives host powers in a room.
    pub admin_power_level: i64,
    /// Whose invitations are accepted.
    pub auto_join: AutoJoin,
    /// Also add an Element widget with the join link to the room.
    pub widget: bool,
    /// Where the session, sync token and crypto store are kept.
    pub store_dir: PathBuf,
    /// Commands older than this (the bot was away) are not acted on.
    pub max_command_age: Duration,
    pub pacing: Pacing,
    /// How long one request may take before it is abandoned and retried.
    pub request_timeout: Duration,
    /// Told the session's access token once known, so the logs can mask it.
    pub on_secret: fn(&str),
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("homeserver", &self.homeserver.as_str())
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("access_token", &self.access_token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Errors of the adapter itself (as opposed to a request's [`SendError`]).
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("matrix: {0}")]
    Setup(String),
}

/// How many card event ids are remembered, to tell reactions on cards from others cheaply.
const KNOWN_CARDS: usize = 4096;

/// The Matrix adapter. Share it as `Arc<MatrixAdapter>`.
pub struct MatrixAdapter {
    settings: Settings,
    /// Set once logged in; requests made before then are transient failures.
    client: OnceLock<Client>,
    /// Cards this process posted or saw reacted to (newest last), bounded.
    cards: Mutex<(HashSet<OwnedEventId>, VecDeque<OwnedEventId>)>,
}

impl MatrixAdapter {
    pub fn new(settings: Settings) -> Arc<Self> {
        Arc::new(MatrixAdapter { settings, client: OnceLock::new(), cards: Mutex::default() })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn client(&self) -> Result<&Client, SendError> {
        self.client.get().ok_or_else(|| SendError::Transient("not logged in to the homeserver yet".into()))
    }

    fn room(&self, chat: &ChatRef) -> Result<Room, SendError> {
        let id = <&RoomId>::try_from(chat.as_str()).map_err(|_| SendError::Refused(format!("not a Matrix room id: {chat}")))?;
        self.client()?.get_room(id).ok_or_else(|| SendError::Refused(format!("the bot is not in {chat}")))
    }

    pub(crate) fn remember_card(&self, id: OwnedEventId) {
        let mut guard = self.cards.lock().unwrap_or_else(|e| e.into_inner());
        let (set, order) = &mut *guard;
        if set.insert(id.clone()) {
            order.push_back(id);
            if order.len() > KNOWN_CARDS
                && let Some(old) = order.pop_front()
            {
                set.remove(&old);
            }
        }
    }

    pub(crate) fn is_known_card(&self, id: &EventId) -> bool {
        self.cards.lock().unwrap_or_else(|e| e.into_inner()).0.contains(id)
    }

    /// A card as message content: a notice that mentions nobody (names on the card must not
    /// ping their owners).
    fn content(&self, card: &Card) -> RoomMessageEventContent {
        let r = card::render(card, &self.settings.command_prefix);
        let mut content = RoomMessageEventContent::notice_html(r.plain, r.html);
        content.mentions = Some(Mentions::new());
        content
    }

    /// Adds, or removes once the call is over, an Element widget with the join link.
    /// Best effort: rooms often keep state events for moderators, and the card works without.
    async fn set_widget(&self, room: &Room, card: &Card) {
        let state_key = format!("callbridge_{}", card.room_id);
        let content = if card.status.is_over() {
            serde_json::json!({})
        } else {
            serde_json::json!({
                "type": "m.custom",
                "url": card.link,
                "name": card.title.as_deref().unwrap_or("Call"),
                "data": { "title": card.title.as_deref().unwrap_or("Call") },
                "creatorUserId": self.client.get().and_then(|c| c.user_id()).map(|u| u.to_string()),
                "id": state_key,
            })
        };
        if let Err(error) = room.send_state_event_raw("im.vector.modular.widgets", &state_key, content).await {
            tracing::info!(%error, room = %room.room_id(), "matrix: cannot set the call widget");
        }
    }

    /// Bounds a request by `request_timeout`.
    async fn call<T>(&self, request: impl Future<Output = matrix_sdk::Result<T>>) -> Result<T, SendError> {
        match tokio::time::timeout(self.settings.request_timeout, request).await {
            Ok(result) => result.map_err(|e| send_error(&e)),
            Err(_) => Err(SendError::Transient(format!("no answer within {:?}", self.settings.request_timeout))),
        }
    }

    /// The direct-message room with `user`, made (and the user invited) when there is none
    /// that holds just the two of them. A room's direct flag is the inviter's to set, so it
    /// alone never makes a room private.
    async fn dm_room(&self, user: &UserId) -> Result<Room, SendError> {
        let client = self.client()?;
        for room in client.get_dm_rooms(user) {
            if room.state() == matrix_sdk::RoomState::Joined && self.just_us(&room, user).await {
                return Ok(room);
            }
        }
        self.call(client.create_dm(user)).await
    }

    /// Whether `room`'s members (joined or invited) are exactly the bot and `user`.
    pub(crate) async fn just_us(&self, room: &Room, user: &UserId) -> bool {
        let Some(me) = self.client.get().and_then(|c| c.user_id()) else { return false };
        match tokio::time::timeout(self.settings.request_timeout, room.members(matrix_sdk::RoomMemberships::ACTIVE)).await {
            Ok(Ok(members)) => members.len() == 2 && members.iter().all(|m| m.user_id() == me || m.user_id() == user),
            _ => false,
        }
    }
}

/// Sorts a failed request into what the core can act on.
pub fn send_error(error: &matrix_sdk::Error) -> SendError {
    let http = match error {
        matrix_sdk::Error::Http(http) => http.as_ref(),
        other => return SendError::Transient(other.to_string()),
    };
    if let Some(api) = http.as_client_api_error() {
        if let Some(ErrorKind::LimitExceeded(data)) = api.error_kind() {
            let wait = match &data.retry_after {
                Some(RetryAfter::Delay(d)) => *d,
                Some(RetryAfter::DateTime(at)) => at.duration_since(SystemTime::now()).unwrap_or_default(),
                None => Duration::from_secs(1),
            };
            return SendError::RetryAfter(wait);
        }
        let status = api.status_code.as_u16();
        // 401 is the bot's session, not the room: the card is still there once it is mended.
        return if status >= 500 || status == 408 || status == 401 {
            SendError::Transient(error.to_string())
        } else {
            SendError::Refused(error.to_string())
        };
    }
    SendError::Transient(error.to_string())
}

fn event_id(message: &MessageRef) -> Result<OwnedEventId, SendError> {
    EventId::parse(message.as_str()).map_err(|_| SendError::Refused(format!("not a Matrix event id: {message}")))
}

fn user_id(user: &UserRef) -> Result<OwnedUserId, SendError> {
    UserId::parse(user.as_str()).map_err(|_| SendError::Refused(format!("not a Matrix user id: {user}")))
}

/// An answer handle: the room and the reaction that pressed the button.
pub(crate) fn encode_ack(room: &RoomId, reaction: &EventId) -> ActionAck {
    ActionAck(format!("{room} {reaction}"))
}

impl ChatAdapter for MatrixAdapter {
    fn platform(&self) -> &'static str {
        "matrix"
    }

    fn pacing(&self) -> Pacing {
        self.settings.pacing
    }

    fn command_prefix(&self) -> &str {
        &self.settings.command_prefix
    }

    fn post_card<'a>(&'a self, chat: &'a ChatRef, card: &'a Card) -> BoxFuture<'a, Result<MessageRef, SendError>> {
        Box::pin(async move {
            let room = self.room(chat)?;
            // A fixed transaction id per card: a retry after a timeout (the homeserver may have
            // taken the first attempt) gets the same event back instead of a second card.
            let txn = OwnedTransactionId::from(format!("callbridge-card-{}", card.room_id));
            let sent = self.call(room.send(self.content(card)).with_transaction_id(txn).into_future()).await?;
            let id = sent.response.event_id;
            self.remember_card(id.clone());
            if self.settings.widget {
                self.set_widget(&room, card).await;
            }
            Ok(MessageRef(id.to_string()))
        })
    }

    fn edit_card<'a>(&'a self, chat: &'a ChatRef, message: &'a MessageRef, card: &'a Card) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let room = self.room(chat)?;
            let original = event_id(message)?;
            self.remember_card(original.clone());
            // A fresh transaction id each time: a card may go back to a content it showed
            // before (locked, unlocked, locked), and a homeserver answers a reused id with the
            // old event instead of applying the edit. A retried edit the homeserver did take is
            // only a repeat of the same content.
            let edit = self.content(card).make_replacement(ReplacementMetadata::new(original, Some(Mentions::new())));
            self.call(room.send(edit).into_future()).await?;
            if self.settings.widget && card.status.is_over() {
                self.set_widget(&room, card).await;
            }
            Ok(())
        })
    }

    fn reply<'a>(&'a self, chat: &'a ChatRef, text: &'a str) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let room = self.room(chat)?;
            let mut content = RoomMessageEventContent::notice_plain(text);
            content.mentions = Some(Mentions::new());
            self.call(room.send(content).into_future()).await?;
            Ok(())
        })
    }

    fn send_private<'a>(&'a self, user: &'a UserRef, text: &'a str) -> BoxFuture<'a, Result<ChatRef, SendError>> {
        Box::pin(async move {
            let room = self.dm_room(&user_id(user)?).await?;
            let chat = ChatRef(room.room_id().to_string());
            self.reply(&chat, text).await?;
            Ok(chat)
        })
    }

    fn private_chat(&self, user: &UserRef) -> Option<ChatRef> {
        // Always some (a direct room is made on demand); the user's id keys its pacing.
        Some(ChatRef(user.0.clone()))
    }

    fn answer_action<'a>(&'a self, ack: &'a ActionAck, text: Option<&'a str>, alert: bool) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            // A reaction has no private answer: a refusal is said in the room, a success shows
            // on the card itself.
            let (Some(text), true) = (text, alert) else { return Ok(()) };
            let room = ack.0.split_once(' ').map(|(room, _)| room).unwrap_or_default();
            self.reply(&ChatRef(room.to_owned()), text).await
        })
    }
}
