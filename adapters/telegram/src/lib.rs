//! # The Telegram adapter
//!
//! Long-polls the Bot API (`getUpdates`), turns `/call`-style messages and card-button presses
//! into [`ChatEvent`]s, and renders neutral [`Card`]s as HTML messages with inline keyboards.
//! It holds no room rule: it only reports whether a user administers a chat
//! (`getChatMember`, cached briefly), and the core decides.
//!
//! * `card` — `Card` → HTML text and inline keyboard (every user string escaped).
//! * this file — the adapter: polling, commands, admin checks, and the `ChatAdapter` methods.

mod card;

pub use card::{escape_html, render_html, render_keyboard};

use callbridge_chat::{
    ActionAck, Actor, BoxFuture, Card, CardAction, ChatAdapter, ChatEvent, ChatRef, Command, MessageRef, Pacing,
    SendError, UserRef, parse_command,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use teloxide::payloads::{AnswerCallbackQuerySetters, EditMessageTextSetters, GetUpdatesSetters, SendMessageSetters};
use teloxide::requests::{Request, Requester};
use teloxide::types::{
    AllowedUpdate, BotCommand, CallbackQuery, CallbackQueryId, ChatId, LinkPreviewOptions, Message, MessageId,
    ParseMode, UpdateKind, UserId,
};
use teloxide::{ApiError, Bot, RequestError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the adapter needs to run.
#[derive(Clone)]
pub struct Settings {
    /// The bot token from @BotFather.
    pub token: String,
    /// The Bot API server.
    pub api_url: url::Url,
    /// Chats the bot serves; empty means all.
    pub allowed_chats: Vec<i64>,
    /// Per-chat limits of the bot's messages and edits.
    pub pacing: Pacing,
    /// Long-polling timeout of `getUpdates`.
    pub poll_timeout: Duration,
    /// Timeout of every other call.
    pub request_timeout: Duration,
    /// How long an admin check is trusted.
    pub admin_cache: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings").field("token", &"<redacted>").field("api_url", &self.api_url.as_str()).finish()
    }
}

/// Errors of the adapter itself.
#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The Telegram adapter. Share it as `Arc<TelegramAdapter>`.
pub struct TelegramAdapter {
    /// Sends, edits and checks, with a short timeout so a stalled call is retried soon.
    bot: Bot,
    /// `getUpdates` only: its timeout must outlast a long poll.
    poller: Bot,
    settings: Settings,
    /// The bot's username, known after `getMe`; `/call@ThisBot` is ours.
    username: OnceLock<String>,
    /// (chat, user) → (is admin, checked at). A std Mutex, never held across an `.await`.
    admins: Mutex<HashMap<(i64, u64), (bool, Instant)>>,
}

/// The commands shown in Telegram's command menu.
const COMMANDS: &[(&str, &str)] = &[
    ("call", "Start a call: /call [voice|video] [title]"),
    ("lock", "Stop new people joining the call (host or admins)"),
    ("unlock", "Let new people join the call again"),
    ("end", "End the call for everyone (host or admins)"),
    ("who", "Who is in the call"),
    ("help", "What this bot does"),
];

impl TelegramAdapter {
    /// Builds the adapter; nothing is sent until [`run`](Self::run).
    pub fn new(settings: Settings) -> Result<Arc<Self>, TelegramError> {
        let bot_with_timeout = |timeout: Duration| {
            let client = teloxide::net::default_reqwest_settings()
                .timeout(timeout)
                .build()
                .map_err(|e| TelegramError::Client(e.to_string()))?;
            Ok::<_, TelegramError>(Bot::with_client(settings.token.clone(), client).set_api_url(settings.api_url.clone()))
        };
        let bot = bot_with_timeout(settings.request_timeout)?;
        let poller = bot_with_timeout(settings.poll_timeout + Duration::from_secs(15))?;
        Ok(Arc::new(TelegramAdapter { bot, poller, settings, username: OnceLock::new(), admins: Mutex::default() }))
    }

    /// Says hello (`getMe`, `setMyCommands`, retried until they work), then long-polls and
    /// sends every command and button press to `inbox` until `cancel` fires.
    pub async fn run(self: Arc<Self>, inbox: mpsc::Sender<ChatEvent>, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        while self.username.get().is_none() {
            let hello = async {
                let me = self.call(self.bot.get_me()).await?;
                let commands = COMMANDS.iter().map(|(c, d)| BotCommand::new(*c, *d));
                self.call(self.bot.set_my_commands(commands)).await?;
                Ok::<_, SendError>(me)
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = hello => match r {
                    Ok(me) => {
                        let name = me.user.username.clone().unwrap_or_default();
                        tracing::info!(bot = %name, "telegram bot connected");
                        let _ = self.username.set(name);
                    }
                    Err(error) => {
                        tracing::warn!(%error, ?backoff, "telegram: getMe/setMyCommands failed; retrying");
                        if !sleep_or_cancel(&cancel, backoff).await { return; }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        }
        let mut offset: i32 = 0;
        let mut backoff = Duration::from_millis(500);
        loop {
            let poll = self
                .poller
                .get_updates()
                .offset(offset)
                .timeout(self.settings.poll_timeout.as_secs() as u32)
                .allowed_updates([AllowedUpdate::Message, AllowedUpdate::CallbackQuery])
                .send();
            // Bounded as a whole, like every call (see `call`), with room for the long poll.
            let poll = tokio::time::timeout(self.settings.poll_timeout + self.settings.request_timeout, poll);
            let updates = tokio::select! {
                _ = cancel.cancelled() => return,
                r = poll => r.unwrap_or_else(|_| Err(RequestError::Io(std::sync::Arc::new(std::io::ErrorKind::TimedOut.into())))),
            };
            let updates = match updates {
                Ok(u) => {
                    backoff = Duration::from_millis(500);
                    u
                }
                Err(RequestError::RetryAfter(s)) => {
                    if !sleep_or_cancel(&cancel, s.duration()).await { return; }
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, ?backoff, "telegram: getUpdates failed; retrying");
                    if !sleep_or_cancel(&cancel, backoff).await { return; }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            for update in updates {
                offset = offset.max(update.id.0 as i32 + 1);
                let event = match update.kind {
                    UpdateKind::Message(m) => self.on_message(&m).await,
                    UpdateKind::CallbackQuery(q) => self.on_callback(&q).await,
                    _ => None,
                };
                if let Some(event) = event {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        r = inbox.send(event) => if r.is_err() { return },
                    }
                }
            }
        }
    }

    fn allowed(&self, chat: ChatId) -> bool {
        self.settings.allowed_chats.is_empty() || self.settings.allowed_chats.contains(&chat.0)
    }

    async fn on_message(&self, m: &Message) -> Option<ChatEvent> {
        let text = m.text()?;
        let from = m.from.as_ref().filter(|u| !u.is_bot)?;
        let command = parse_command(text, "/", self.username.get().map(String::as_str))?;
        if !self.allowed(m.chat.id) {
            tracing::info!(chat = m.chat.id.0, "telegram: command from a chat not in allowed_chats; ignored");
            return None;
        }
        let private = m.chat.is_private();
        let needs_admin = matches!(
            command,
            Command::Lock | Command::Unlock | Command::End | Command::Admit { .. } | Command::Deny { .. }
        );
        let is_admin = needs_admin && !private && self.is_admin(m.chat.id, from.id).await;
        Some(ChatEvent::Command {
            answer: None,
            chat: ChatRef(m.chat.id.0.to_string()),
            actor: Actor { user: UserRef(from.id.0.to_string()), display_name: from.full_name(), is_admin },
            command,
            private,
        })
    }

    async fn on_callback(&self, q: &CallbackQuery) -> Option<ChatEvent> {
        let message = q.message.as_ref();
        let action = q.data.as_deref().and_then(CardAction::decode);
        let (Some(message), Some(action)) = (message, action) else {
            let _ = self.call(self.bot.answer_callback_query(q.id.clone())).await;
            return None;
        };
        let chat = message.chat();
        if !self.allowed(chat.id) {
            let _ = self.call(self.bot.answer_callback_query(q.id.clone())).await;
            return None;
        }
        let is_admin = !chat.is_private() && self.is_admin(chat.id, q.from.id).await;
        Some(ChatEvent::Action {
            chat: ChatRef(chat.id.0.to_string()),
            message: MessageRef(message.id().0.to_string()),
            actor: Actor { user: UserRef(q.from.id.0.to_string()), display_name: q.from.full_name(), is_admin },
            action,
            ack: ActionAck(q.id.0.clone()),
        })
    }

    /// Sends one Bot API request, bounded as a whole by `request_timeout`: a stalled server must
    /// not hold a chat's cards, and teloxide waits 10 s after any 5xx before reporting it.
    async fn call<T>(&self, request: impl IntoFuture<Output = Result<T, RequestError>>) -> Result<T, SendError> {
        match tokio::time::timeout(self.settings.request_timeout, request).await {
            Ok(result) => result.map_err(send_error),
            Err(_) => Err(SendError::Transient(format!("no answer within {:?}", self.settings.request_timeout))),
        }
    }

    /// Whether `user` administers `chat` (creator or administrator), cached for `admin_cache`.
    async fn is_admin(&self, chat: ChatId, user: UserId) -> bool {
        let key = (chat.0, user.0);
        if let Some((admin, at)) = self.admins.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && at.elapsed() < self.settings.admin_cache
        {
            return *admin;
        }
        // A throttled or failed check is retried a little: refusing a real admin over a
        // passing error would be wrong, and this runs while the update waits.
        let mut attempt = 0;
        let admin = loop {
            attempt += 1;
            match self.call(self.bot.get_chat_member(chat, user)).await {
                Ok(member) => break member.kind.is_privileged(),
                Err(SendError::RetryAfter(wait)) if attempt < 3 => tokio::time::sleep(wait.min(Duration::from_secs(5))).await,
                Err(SendError::Transient(_)) if attempt < 3 => tokio::time::sleep(Duration::from_millis(300)).await,
                Err(error) => {
                    tracing::warn!(%error, chat = chat.0, "telegram: getChatMember failed; treating as not an admin");
                    return false;
                }
            }
        };
        let mut admins = self.admins.lock().unwrap_or_else(|e| e.into_inner());
        if admins.len() > 10_000 {
            let ttl = self.settings.admin_cache;
            admins.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        admins.insert(key, (admin, Instant::now()));
        admin
    }
}

async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

fn chat_id(chat: &ChatRef) -> Result<ChatId, SendError> {
    chat.0.parse().map(ChatId).map_err(|_| SendError::Refused(format!("not a Telegram chat id: {chat}")))
}

fn message_id(message: &MessageRef) -> Result<MessageId, SendError> {
    message.0.parse().map(MessageId).map_err(|_| SendError::Refused(format!("not a Telegram message id: {message}")))
}

/// Sorts a Bot API failure into what the core can act on.
fn send_error(error: RequestError) -> SendError {
    match error {
        RequestError::RetryAfter(s) => SendError::RetryAfter(s.duration()),
        RequestError::Api(ApiError::MessageNotModified) => SendError::NotModified,
        RequestError::Api(ApiError::Unknown(text)) if text.contains("message is not modified") => SendError::NotModified,
        // Telegram's own 5xx answers come as JSON errors teloxide does not know by name.
        RequestError::Api(ApiError::Unknown(text)) if is_server_error(&text) => SendError::Transient(text),
        RequestError::Api(e) => SendError::Refused(e.to_string()),
        RequestError::MigrateToChatId(id) => SendError::Refused(format!("the group moved to {}", id.0)),
        e @ (RequestError::Network(_) | RequestError::InvalidJson { .. } | RequestError::Io(_)) => {
            SendError::Transient(e.to_string())
        }
    }
}

/// Whether an error description is one of the Bot API's server-side failures (HTTP 5xx).
fn is_server_error(description: &str) -> bool {
    let d = description.to_ascii_lowercase();
    ["internal server error", "bad gateway", "service unavailable", "gateway timeout"].iter().any(|s| d.contains(s))
}

fn no_preview() -> LinkPreviewOptions {
    LinkPreviewOptions { is_disabled: true, url: None, prefer_small_media: false, prefer_large_media: false, show_above_text: false }
}

impl ChatAdapter for TelegramAdapter {
    fn platform(&self) -> &'static str {
        "telegram"
    }

    fn pacing(&self) -> Pacing {
        self.settings.pacing
    }

    fn post_card<'a>(&'a self, chat: &'a ChatRef, card: &'a Card) -> BoxFuture<'a, Result<MessageRef, SendError>> {
        Box::pin(async move {
            let sent = self
                .call(
                    self.bot
                        .send_message(chat_id(chat)?, render_html(card))
                        .parse_mode(ParseMode::Html)
                        .link_preview_options(no_preview())
                        .reply_markup(render_keyboard(card)),
                )
                .await?;
            Ok(MessageRef(sent.id.0.to_string()))
        })
    }

    fn edit_card<'a>(&'a self, chat: &'a ChatRef, message: &'a MessageRef, card: &'a Card) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            self.call(
                self.bot
                    .edit_message_text(chat_id(chat)?, message_id(message)?, render_html(card))
                    .parse_mode(ParseMode::Html)
                    .link_preview_options(no_preview())
                    .reply_markup(render_keyboard(card)),
            )
            .await?;
            Ok(())
        })
    }

    fn reply<'a>(&'a self, chat: &'a ChatRef, text: &'a str) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            // No parse mode: the text is shown as typed, never as markup.
            self.call(self.bot.send_message(chat_id(chat)?, text).link_preview_options(no_preview())).await?;
            Ok(())
        })
    }

    fn send_private<'a>(&'a self, user: &'a UserRef, text: &'a str) -> BoxFuture<'a, Result<ChatRef, SendError>> {
        Box::pin(async move {
            // A user's private chat with the bot has the user's id; it exists once they have
            // started the bot, otherwise Telegram answers 403.
            let chat = ChatRef(user.0.clone());
            self.reply(&chat, text).await?;
            Ok(chat)
        })
    }

    fn private_chat(&self, user: &UserRef) -> Option<ChatRef> {
        Some(ChatRef(user.0.clone()))
    }

    fn answer_action<'a>(&'a self, ack: &'a ActionAck, text: Option<&'a str>, alert: bool) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let mut req = self.bot.answer_callback_query(CallbackQueryId(ack.0.clone())).show_alert(alert);
            if let Some(text) = text {
                // Telegram shows at most 200 characters.
                req = req.text(text.chars().take(200).collect::<String>());
            }
            self.call(req).await?;
            Ok(())
        })
    }
}
