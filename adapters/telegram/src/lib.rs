//! # The Telegram adapter
//!
//! Long-polls the Bot API (`getUpdates`), turns `/call`-style messages and card-button presses
//! into [`ChatEvent`]s, and renders neutral [`Card`]s as HTML messages with inline keyboards.
//! It holds no room rule: it only reports whether a user administers a chat
//! (`getChatMember`, cached briefly), and the core decides.
//!
//! * this file — the `[telegram]` settings, building the adapter, and the `ChatAdapter` sends.
//! * [`inbound`] — `getUpdates` → `ChatEvent`s, and the admin checks they carry.
//! * `card` — `Card` → HTML text and inline keyboard (every user string escaped).

mod card;
pub mod inbound;

pub use card::{escape_html, link_button_accepted, render_html, render_keyboard};

use callbridge_chat::settings::{check_http_url, env_secret, require_secret};
use callbridge_chat::{
    ActionAck, AdapterState, BoxFuture, Health, HealthReport, Inbound, MemoryState, BuildContext, BuildError, Card, ChatAdapter, ChatRef, Env, MessageRef, Pacing, Prompt,
    Basics, Secret, Section, SendError, SettingsError, UserRef, human_duration, invalid,
};

use std::collections::HashMap;
use std::sync::atomic::AtomicI32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use teloxide::payloads::{AnswerCallbackQuerySetters, EditMessageTextSetters, SendMessageSetters};
use teloxide::requests::Requester;
use teloxide::types::{CallbackQueryId, ChatId, LinkPreviewOptions, MessageId, ParseMode};
use teloxide::{ApiError, Bot, RequestError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

callbridge_chat::adapter_section! {
    /// `[telegram]`: the bot that posts join cards in Telegram chats.
    pub struct Settings {
        /// The bot token from @BotFather. REQUIRED when enabled (or `CALLBRIDGE_TELEGRAM_TOKEN`).
        pub token: Option<Secret>,
        /// The Bot API server (a local `telegram-bot-api` or a test double).
        pub api_url: url::Url,
        /// Chat ids the bot serves; empty means every chat it is added to.
        pub allowed_chats: Vec<i64>,
        /// Long-polling timeout of `getUpdates`.
        #[serde(with = "human_duration")]
        pub poll_timeout: Duration,
        /// How long a chat member's admin status is cached.
        #[serde(with = "human_duration")]
        pub admin_cache: Duration,
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            token: None,
            api_url: url::Url::parse("https://api.telegram.org").expect("a valid default"),
            allowed_chats: Vec::new(),
            min_interval: Duration::from_secs(1),
            per_minute: 20,
            debounce: Duration::from_millis(300),
            poll_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            admin_cache: Duration::from_secs(60),
        }
    }
}

impl Section for Settings {
    const NAME: &'static str = "telegram";
    const MOST_PER_MINUTE: u32 = 60;
    const ENV: &'static [(&'static str, &'static str)] =
        &[("CALLBRIDGE_TELEGRAM_TOKEN", "[telegram] token (turns Telegram on when the section is absent)")];

    fn apply_env(section: Option<Self>, env: Env<'_>) -> Result<Option<Self>, SettingsError> {
        let mut section = section;
        if let Some(token) = env_secret(env, "CALLBRIDGE_TELEGRAM_TOKEN") {
            section.get_or_insert_with(Settings::default).token = Some(token);
        }
        Ok(section)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        require_secret("telegram.token", self.token.as_ref(), "CALLBRIDGE_TELEGRAM_TOKEN")?;
        check_http_url("telegram.api_url", &self.api_url)?;
        if self.poll_timeout > Duration::from_secs(50) {
            return Err(invalid("telegram.poll_timeout", "must be at most 50s"));
        }
        Ok(())
    }

    fn probe<'a>(&'a self, _ctx: &'a BuildContext) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let adapter = TelegramAdapter::new(self.clone()).map_err(|e| e.to_string())?;
            match adapter.call(adapter.bot.get_me()).await {
                Ok(me) => Ok(format!("the token works: the bot is @{}", me.user.username.clone().unwrap_or_default())),
                Err(SendError::Refused(why)) => Err(format!("Telegram refuses the token ({why})")),
                Err(error) => Err(format!("the Bot API at {} does not answer: {error}", self.api_url)),
            }
        })
    }

    fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn ChatAdapter>, BuildError> {
        Ok(TelegramAdapter::with_state(self.clone(), ctx.state.clone())?)
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
    /// The `getUpdates` offset: the first update not handled yet. Kept across runs, and saved
    /// in `state`, so a run after a stop, here or on another node, neither handles an update
    /// twice nor skips one.
    next_update: AtomicI32,
    /// The offset and the updates taken, in the database every node shares.
    state: Arc<dyn AdapterState>,
    /// Whether it reaches the Bot API (`/healthz`).
    health: Health,
}

impl TelegramAdapter {
    /// Builds the adapter with its state in memory (one process); nothing is sent until it runs.
    pub fn new(settings: Settings) -> Result<Arc<Self>, TelegramError> {
        Self::with_state(settings, MemoryState::shared())
    }

    /// Builds the adapter with its state in `state`; nothing is sent until it runs.
    pub fn with_state(settings: Settings, state: Arc<dyn AdapterState>) -> Result<Arc<Self>, TelegramError> {
        let token = settings.token.as_ref().map(|t| t.expose().to_owned()).unwrap_or_default();
        let bot_with_timeout = |timeout: Duration| {
            let client = teloxide::net::default_reqwest_settings()
                .timeout(timeout)
                .build()
                .map_err(|e| TelegramError::Client(e.to_string()))?;
            Ok::<_, TelegramError>(Bot::with_client(token.clone(), client).set_api_url(settings.api_url.clone()))
        };
        let bot = bot_with_timeout(settings.request_timeout)?;
        let poller = bot_with_timeout(settings.poll_timeout + Duration::from_secs(15))?;
        Ok(Arc::new(TelegramAdapter {
            bot,
            poller,
            settings,
            username: OnceLock::new(),
            admins: Mutex::default(),
            next_update: AtomicI32::new(0),
            state,
            health: Health::default(),
        }))
    }

    /// Sends one Bot API request, bounded as a whole by `request_timeout`: a stalled server must
    /// not hold a chat's cards, and teloxide waits 10 s after any 5xx before reporting it.
    async fn call<T>(&self, request: impl IntoFuture<Output = Result<T, RequestError>>) -> Result<T, SendError> {
        match tokio::time::timeout(self.settings.request_timeout, request).await {
            Ok(result) => result.map_err(send_error),
            Err(_) => Err(SendError::Transient(format!("no answer within {:?}", self.settings.request_timeout))),
        }
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

    fn run(self: Arc<Self>, inbox: mpsc::Sender<Inbound>, cancel: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(inbound::run(self, inbox, cancel))
    }

    fn pacing(&self) -> Pacing {
        // Telegram's broadcast limit: about 30 messages a second per bot, in all chats.
        Pacing { per_second: 30, ..self.settings.pacing() }
    }

    fn health(&self) -> HealthReport {
        self.health.report()
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

    fn send_prompt<'a>(&'a self, user: &'a UserRef, prompt: &'a Prompt) -> BoxFuture<'a, Result<(ChatRef, MessageRef), SendError>> {
        Box::pin(async move {
            let chat = ChatRef(user.0.clone());
            // Plain text: names and messages in it are shown as typed.
            let sent = self
                .call(self.bot.send_message(chat_id(&chat)?, &prompt.text).link_preview_options(no_preview()).reply_markup(card::prompt_keyboard(prompt)))
                .await?;
            Ok((chat, MessageRef(sent.id.0.to_string())))
        })
    }

    fn edit_prompt<'a>(&'a self, chat: &'a ChatRef, message: &'a MessageRef, prompt: &'a Prompt) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            self.call(
                self.bot
                    .edit_message_text(chat_id(chat)?, message_id(message)?, &prompt.text)
                    .link_preview_options(no_preview())
                    .reply_markup(card::prompt_keyboard(prompt)),
            )
            .await?;
            Ok(())
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_chat::settings::{example_differences, read_section, section};
    use callbridge_chat::AdapterSettings;


    #[test]
    fn the_example_section_is_the_defaults() {
        let example = include_str!("../../../config.example.toml");
        assert_eq!(example_differences::<Settings>(example, &["token"]), Vec::<String>::new());
    }

    #[test]
    fn telegram_needs_a_token_from_file_or_env() {
        let t = read_section::<Settings>("[telegram]\n", &[]).unwrap().unwrap();
        assert!(t.validate().unwrap_err().to_string().contains("telegram.token"));
        let t = read_section::<Settings>("[telegram]\n", &[("CALLBRIDGE_TELEGRAM_TOKEN", "123:abc")]).unwrap().unwrap();
        t.validate().unwrap();
        // The token alone turns the adapter on.
        let t = read_section::<Settings>("", &[("CALLBRIDGE_TELEGRAM_TOKEN", "123:abc")]).unwrap().expect("on from the environment");
        assert_eq!(t.token.as_ref().unwrap().expose(), "123:abc");
        assert!(!toml::to_string(&t).unwrap().contains("123:abc"));
        assert_eq!(t.secrets(), vec!["123:abc".to_owned()]);
        assert!(read_section::<Settings>("", &[]).unwrap().is_none());
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut t = read_section::<Settings>("[telegram]\ntoken = \"t\"\npoll_timeout = \"2m\"\n", &[]).unwrap().unwrap();
        assert!(t.validate().unwrap_err().to_string().contains("telegram.poll_timeout"));
        (t.poll_timeout, t.per_minute) = (Duration::from_secs(5), 0);
        assert!(t.check().unwrap_err().to_string().contains("telegram.per_minute"));
        assert!(section::<Settings>("[telegram]\napi_url = \"not a url\"\n", "telegram").is_err());
    }
}
