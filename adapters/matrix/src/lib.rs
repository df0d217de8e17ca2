//! # The Matrix adapter of callbridge
//!
//! A bot account on a homeserver, driven by matrix-sdk with end-to-end encryption and its
//! SQLite stores, so it reads `!call` and posts cards in encrypted rooms as well as plain ones.
//!
//! * this file — the `[matrix]` settings, building the adapter, and the `ChatAdapter` sends.
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
mod probe;
mod session;

use callbridge_chat::settings::{check_http_url, env_secret};
use callbridge_chat::{
    ActionAck, AdapterState, BoxFuture, Health, HealthReport, Inbound, Receipt, BuildContext, BuildError, Card, ChatAdapter, ChatRef, Env, MessageRef, Pacing, Prompt,
    Basics, Secret, Section, SendError, SettingsError, UserRef, invalid,
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
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

callbridge_chat::adapter_section! {
    /// `[matrix]`: the bot account that answers `!call` in Matrix rooms.
    pub struct Settings {
        /// The homeserver's client-server API base, e.g. `https://matrix.example.org`. REQUIRED.
        pub homeserver: Option<Url>,
        /// The bot's user id, `@callbridge:example.org` (or its localpart). REQUIRED.
        pub user: String,
        /// The bot's password, used for the first login only (or `CALLBRIDGE_MATRIX_PASSWORD`).
        pub password: Option<Secret>,
        /// Or an access token of an existing device (or `CALLBRIDGE_MATRIX_ACCESS_TOKEN`).
        pub access_token: Option<Secret>,
        /// The name of the bot's device, shown in members' device lists.
        pub device_name: String,
        /// What starts a command; `/call` works as well.
        pub command_prefix: String,
        /// Least power level that gives host powers (50 is a moderator).
        pub admin_power_level: i64,
        /// User ids whose invitations the bot accepts; with `auto_join_servers` both empty, anyone's.
        pub auto_join_inviters: Vec<String>,
        /// Homeservers whose users' invitations the bot accepts.
        pub auto_join_servers: Vec<String>,
        /// Also add an Element widget with the join link to the room (needs the power to send state).
        pub widget: bool,
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            homeserver: None,
            user: String::new(),
            password: None,
            access_token: None,
            device_name: "callbridge".into(),
            command_prefix: "!".into(),
            admin_power_level: 50,
            auto_join_inviters: Vec::new(),
            auto_join_servers: Vec::new(),
            widget: false,
            // Synapse's default allows a user 0.2 messages a second after a burst of 10.
            min_interval: Duration::from_secs(1),
            per_minute: 12,
            debounce: Duration::from_millis(300),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl Settings {
    /// The password, when one is set and not blank.
    pub fn password(&self) -> Option<&str> {
        self.password.as_ref().filter(|s| !s.is_blank()).map(|s| s.expose().trim())
    }

    /// The access token, when one is set and not blank.
    pub fn access_token(&self) -> Option<&str> {
        self.access_token.as_ref().filter(|s| !s.is_blank()).map(|s| s.expose().trim())
    }

    /// Whether an invitation from `inviter` is accepted; an empty allowlist accepts anyone.
    pub fn accepts_invite_from(&self, inviter: &UserId) -> bool {
        (self.auto_join_inviters.is_empty() && self.auto_join_servers.is_empty())
            || self.auto_join_inviters.iter().any(|u| u == inviter.as_str())
            || self.auto_join_servers.iter().any(|s| s == inviter.server_name().as_str())
    }

    fn homeserver(&self) -> &Url {
        self.homeserver.as_ref().expect("validated: the homeserver is set")
    }
}

impl Section for Settings {
    const NAME: &'static str = "matrix";
    const MOST_PER_MINUTE: u32 = 600;
    /// matrix-sdk reports expected 404s (account data not set yet) as errors, and a missing key
    /// backup (the bot keeps none) at every sync; its own failures reach us as results.
    const LOG_FILTER: &'static str =
        "matrix_sdk=warn,matrix_sdk::http_client=off,matrix_sdk_crypto=warn,matrix_sdk_crypto::backups=error";
    const ENV: &'static [(&'static str, &'static str)] = &[
        ("CALLBRIDGE_MATRIX_PASSWORD", "[matrix] password"),
        ("CALLBRIDGE_MATRIX_ACCESS_TOKEN", "[matrix] access_token"),
    ];

    fn apply_env(section: Option<Self>, env: Env<'_>) -> Result<Option<Self>, SettingsError> {
        // The Matrix secrets never turn the adapter on alone: it needs a homeserver and a user.
        let mut section = section;
        if let Some(m) = section.as_mut() {
            m.password = env_secret(env, "CALLBRIDGE_MATRIX_PASSWORD").or(m.password.take());
            m.access_token = env_secret(env, "CALLBRIDGE_MATRIX_ACCESS_TOKEN").or(m.access_token.take());
        }
        Ok(section)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        if self.password().is_none() && self.access_token().is_none() {
            return Err(invalid(
                "matrix.password",
                "or matrix.access_token is required (or set CALLBRIDGE_MATRIX_PASSWORD or CALLBRIDGE_MATRIX_ACCESS_TOKEN)",
            ));
        }
        match &self.homeserver {
            None => return Err(invalid("matrix.homeserver", "is required: the homeserver's http(s) URL")),
            Some(url) => check_http_url("matrix.homeserver", url)?,
        }
        let user_ok = match self.user.strip_prefix('@') {
            Some(full) => full.split_once(':').is_some_and(|(local, server)| !local.is_empty() && !server.is_empty()),
            None => !self.user.is_empty() && !self.user.contains(':'),
        };
        if !user_ok || self.user.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("matrix.user", "is required: the bot's user id (@name:server) or localpart"));
        }
        let prefix_ok = (1..=8).contains(&self.command_prefix.chars().count())
            && !self.command_prefix.chars().any(|c| c.is_whitespace() || c.is_control() || c.is_alphanumeric());
        if !prefix_ok {
            return Err(invalid("matrix.command_prefix", "must be 1 to 8 symbols, such as ! or ."));
        }
        if !self.auto_join_inviters.iter().all(|u| UserId::parse(u.as_str()).is_ok()) {
            return Err(invalid("matrix.auto_join_inviters", "must be full user ids (@name:server)"));
        }
        if !self.auto_join_servers.iter().all(|s| !s.is_empty() && !s.contains(['@', '/', ' '])) {
            return Err(invalid("matrix.auto_join_servers", "must be server names (example.org)"));
        }
        Ok(())
    }

    fn probe<'a>(&'a self, ctx: &'a BuildContext) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(probe::probe(self, &ctx.state_dir))
    }

    fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn ChatAdapter>, BuildError> {
        if self.homeserver.is_none() {
            return Err(MatrixError::Setup("matrix.homeserver is required".into()).into());
        }
        Ok(MatrixAdapter::new(self.clone(), ctx))
    }
}

/// Commands older than this (the bot was away) are not acted on.
const MAX_COMMAND_AGE: Duration = Duration::from_secs(600);

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
    /// Where the session, sync token and crypto store are kept.
    store_dir: PathBuf,
    /// Told the session's access token once known, so the logs can mask it.
    on_secret: fn(&str),
    /// Set once logged in and synced; requests made before then are transient failures.
    client: OnceLock<Client>,
    /// The logged-in client, once there is one; held while logging in (and while a standby
    /// node makes its device known), so a run and a standby never log in twice.
    login: tokio::sync::Mutex<Option<Client>>,
    /// Cards this process posted or saw reacted to (newest last), bounded.
    cards: Mutex<(HashSet<OwnedEventId>, VecDeque<OwnedEventId>)>,
    /// The events taken, and whether any node ever synced, in the database every node shares.
    state: Arc<dyn AdapterState>,
    /// Whether it reaches the homeserver (`/healthz`).
    pub(crate) health: Health,
}

impl MatrixAdapter {
    pub fn new(settings: Settings, ctx: &BuildContext) -> Arc<Self> {
        Arc::new(MatrixAdapter {
            settings,
            store_dir: ctx.state_dir.clone(),
            on_secret: ctx.on_secret,
            client: OnceLock::new(),
            login: tokio::sync::Mutex::new(None),
            cards: Mutex::default(),
            state: ctx.state.clone(),
            health: Health::default(),
        })
    }

    /// Takes an event for handling: its receipt, or `None` when a run (here or on another
    /// node) took it already. A database that does not answer lets it through.
    pub(crate) async fn take(&self, event: &matrix_sdk::ruma::EventId) -> Option<Receipt> {
        match self.state.claim(event.as_str(), None).await {
            Ok(false) => return None,
            Ok(true) => {}
            Err(error) => tracing::warn!(%error, "matrix: cannot mark an event as taken; handling it"),
        }
        Some(Receipt::new(self.state.clone(), event.to_string()))
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

    fn run(self: Arc<Self>, inbox: mpsc::Sender<Inbound>, cancel: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(inbound::run(self, inbox, cancel))
    }

    fn standby(self: Arc<Self>, cancel: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.make_device_known(cancel).await })
    }

    fn pacing(&self) -> Pacing {
        self.settings.pacing()
    }

    fn health(&self) -> HealthReport {
        self.health.report()
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

    fn send_prompt<'a>(&'a self, user: &'a UserRef, prompt: &'a Prompt) -> BoxFuture<'a, Result<(ChatRef, MessageRef), SendError>> {
        Box::pin(async move {
            let room = self.dm_room(&user_id(user)?).await?;
            let sent = self.call(room.send(card::prompt_content(prompt)).into_future()).await?;
            // Reactions on it are presses, as on a card.
            self.remember_card(sent.response.event_id.clone());
            Ok((ChatRef(room.room_id().to_string()), MessageRef(sent.response.event_id.to_string())))
        })
    }

    fn edit_prompt<'a>(&'a self, chat: &'a ChatRef, message: &'a MessageRef, prompt: &'a Prompt) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let room = self.room(chat)?;
            let original = event_id(message)?;
            let edit = card::prompt_content(prompt).make_replacement(ReplacementMetadata::new(original, Some(Mentions::new())));
            self.call(room.send(edit).into_future()).await?;
            Ok(())
        })
    }

    fn mentioned_user(&self, word: &str) -> Option<UserRef> {
        // A Matrix user id names its user.
        UserId::parse(word).ok().map(|u| UserRef(u.to_string()))
    }

    fn private_chat(&self, user: &UserRef) -> Option<ChatRef> {
        // Always some (a direct room is made on demand); the user's id keys its pacing.
        Some(ChatRef(user.0.clone()))
    }

    fn alerts_in_chat(&self) -> bool {
        // A reaction has no private answer: refusals are notices in the room.
        true
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

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_chat::settings::{example_differences, read_section, section};
    use callbridge_chat::AdapterSettings;


    #[test]
    fn the_example_section_is_the_defaults() {
        let example = include_str!("../../../config.example.toml");
        assert_eq!(example_differences::<Settings>(example, &["homeserver", "user", "password", "access_token"]), Vec::<String>::new());
    }

    #[test]
    fn matrix_needs_homeserver_user_and_a_credential() {
        let base = "[matrix]\nhomeserver = \"https://hs.example\"\nuser = \"@bot:hs.example\"\n";
        let m = read_section::<Settings>(base, &[]).unwrap().unwrap();
        let err = m.validate().unwrap_err().to_string();
        assert!(err.contains("matrix.password") && err.contains("CALLBRIDGE_MATRIX_ACCESS_TOKEN"), "{err}");
        let m = read_section::<Settings>(base, &[("CALLBRIDGE_MATRIX_PASSWORD", "hunter2-secret")]).unwrap().unwrap();
        m.validate().unwrap();
        assert!(!toml::to_string(&m).unwrap().contains("hunter2-secret"));
        assert!(m.secrets().contains(&"hunter2-secret".to_owned()));
        for (bad, key) in [
            ("user = \"@bot\"", "matrix.user"),
            ("command_prefix = \"go \"", "matrix.command_prefix"),
            ("auto_join_inviters = [\"alice\"]", "matrix.auto_join_inviters"),
            ("homeserver = \"ftp://matrix.example\"", "matrix.homeserver"),
        ] {
            let text = format!("[matrix]\nhomeserver = \"https://hs.example\"\nuser = \"bot\"\npassword = \"p\"\n{bad}\n");
            // A later duplicate key is a parse error; build the section from the pieces instead.
            let text = text.lines().filter(|l| l.split('=').next() != bad.split('=').next() || l.contains(bad)).collect::<Vec<_>>().join("\n");
            let m = read_section::<Settings>(&text, &[]).unwrap().unwrap();
            assert!(m.validate().unwrap_err().to_string().contains(key), "{bad}");
        }
        // A homeserver that is not a URL at all is refused where it is written.
        let doc = "[matrix]\nhomeserver = \"matrix.example\"\n";
        let err = section::<Settings>(doc, "matrix").unwrap_err();
        assert!(callbridge_chat::settings::describe(doc, &err).starts_with("line 2: matrix.homeserver"));
        // The environment alone does not turn Matrix on: it needs a homeserver and a user.
        assert!(read_section::<Settings>("", &[("CALLBRIDGE_MATRIX_PASSWORD", "x")]).unwrap().is_none());
    }
}
