//! # The Discord adapter
//!
//! Slash commands and button presses reach callbridge as interactions, in one of two modes:
//!
//! * **gateway** ([`gateway`], the default): the bot holds a websocket to Discord (serenity) and
//!   answers each interaction with a REST callback;
//! * **interactions endpoint** ([`webhook`]): Discord POSTs them to the bridge's own web server
//!   (`POST /discord/interactions`, a route this adapter offers the web server), signed with
//!   Ed25519.
//!
//! Either way [`inbound`] turns the interaction into Discord's immediate answer and a
//! [`ChatEvent`] for the bridge. Everything the bot sends goes over Discord's REST API with the
//! bot token ([`rest`]), reading `X-RateLimit-*` and honouring 429 `retry_after`.
//!
//! A slash command is answered at once with a deferred, ephemeral ("only you can see this")
//! response; the event carries its token, and the bridge's answer (or the host link) fills it
//! in. The join card itself is a channel message, so it can be edited with the bot token long
//! after the interaction's 15-minute token has expired.
//!
//! * this file — the `[discord]` settings, building and running the adapter, its sends.
//! * [`card`] — `Card` → embed and buttons.
//! * [`inbound`] — signature checks, the slash commands we register, interactions → `ChatEvent`s.
//! * [`gateway`] — gateway mode; [`webhook`] — the interactions endpoint.
//! * [`rest`] — the REST client and its rate-limit buckets.

pub mod card;
pub mod gateway;
pub mod inbound;
pub mod rest;
pub mod webhook;

use callbridge_chat::settings::{check_http_url, env_secret, require_secret};
use callbridge_chat::{
    ActionAck, Backoff, BoxFuture, BuildContext, BuildError, Card, ChatAdapter, ChatRef, Env, Inbound, MessageRef,
    Basics, Health, HealthReport, Pacing, Prompt, Secret, Section, SendError, SettingsError, invalid, sleep_or_cancel, UserRef,
};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A Discord id (application, guild, role): a number, written as a string in the file as
/// Discord writes it (a TOML integer is taken too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Snowflake(pub u64);

impl std::str::FromStr for Snowflake {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(Snowflake)
    }
}
impl std::fmt::Display for Snowflake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
impl Serialize for Snowflake {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
impl<'de> Deserialize<'de> for Snowflake {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Number(u64),
        }
        match Written::deserialize(d)? {
            Written::Number(n) => Ok(Snowflake(n)),
            Written::Text(t) => t.parse().map_err(|_| serde::de::Error::custom("must be a numeric Discord id")),
        }
    }
}

/// How Discord reaches the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Discord POSTs interactions to `POST /discord/interactions` on this server.
    Interactions,
    /// The bot holds a websocket to Discord's gateway; no public URL needed.
    Gateway,
}

callbridge_chat::adapter_section! {
    /// `[discord]`: the bot that answers `/call` in Discord channels.
    pub struct Settings {
        /// The bot token. REQUIRED when enabled (or `CALLBRIDGE_DISCORD_TOKEN`).
        pub token: Option<Secret>,
        /// The application id. REQUIRED (or `CALLBRIDGE_DISCORD_APPLICATION_ID`).
        pub application_id: Option<Snowflake>,
        /// The application's public key, hex. REQUIRED in interactions mode (or `CALLBRIDGE_DISCORD_PUBLIC_KEY`).
        pub public_key: String,
        /// How Discord reaches the bot.
        pub mode: Mode,
        /// Guilds to register the commands in at once; empty registers them globally.
        pub guild_ids: Vec<Snowflake>,
        /// Roles whose members have host powers, beside Manage Channels.
        pub admin_role_ids: Vec<Snowflake>,
        /// Discord's API base (a test server in tests).
        pub api_url: url::Url,
        /// Not a config key: the HTTP client for Discord's API, when not the default one. Tests
        /// give one that resolves discord.com to their double and trusts its certificate, so
        /// the bot runs as in production (serenity's own rate limiter on).
        #[serde(skip)]
        pub http_client: Option<reqwest::Client>,
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            token: None,
            application_id: None,
            public_key: String::new(),
            mode: Mode::Gateway,
            guild_ids: Vec::new(),
            admin_role_ids: Vec::new(),
            api_url: url::Url::parse("https://discord.com").expect("a valid default"),
            http_client: None,
            min_interval: Duration::from_secs(1),
            per_minute: 50,
            debounce: Duration::from_millis(300),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl Section for Settings {
    const NAME: &'static str = "discord";
    const MOST_PER_MINUTE: u32 = 120;
    const LOG_FILTER: &'static str = "serenity=warn";
    const ENV: &'static [(&'static str, &'static str)] = &[
        ("CALLBRIDGE_DISCORD_TOKEN", "[discord] token (turns Discord on when the section is absent)"),
        ("CALLBRIDGE_DISCORD_APPLICATION_ID", "[discord] application_id"),
        ("CALLBRIDGE_DISCORD_PUBLIC_KEY", "[discord] public_key"),
    ];

    fn apply_env(section: Option<Self>, env: Env<'_>) -> Result<Option<Self>, SettingsError> {
        let mut section = section;
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        if let Some(token) = env_secret(env, "CALLBRIDGE_DISCORD_TOKEN") {
            section.get_or_insert_with(Settings::default).token = Some(token);
        }
        // Only the token turns Discord on: the application's id and key alone (left over from
        // another setup, say) complete a section, they do not make one.
        let Some(on) = section.as_mut() else { return Ok(None) };
        if let Some(v) = get("CALLBRIDGE_DISCORD_APPLICATION_ID") {
            let id = v.parse().map_err(|_| invalid("discord.application_id", "CALLBRIDGE_DISCORD_APPLICATION_ID must be the application's numeric id"))?;
            on.application_id = Some(id);
        }
        if let Some(v) = get("CALLBRIDGE_DISCORD_PUBLIC_KEY") {
            on.public_key = v;
        }
        Ok(section)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        require_secret("discord.token", self.token.as_ref(), "CALLBRIDGE_DISCORD_TOKEN")?;
        check_http_url("discord.api_url", &self.api_url)?;
        if self.application_id.is_none() {
            return Err(invalid("discord.application_id", "is required: the application's numeric id"));
        }
        let needs_key = self.mode == Mode::Interactions || !self.public_key.is_empty();
        if needs_key && inbound::public_key(&self.public_key).is_none() {
            return Err(invalid(
                "discord.public_key",
                "must be the application's 64-character hex public key (required in interactions mode)",
            ));
        }
        Ok(())
    }

    fn probe<'a>(&'a self, _ctx: &'a BuildContext) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let rest = rest::Rest::new(self).map_err(|e| e.to_string())?;
            let refused = |what: &str, e: SendError| match e {
                SendError::Refused(why) => format!("Discord refuses the token for {what} ({why})"),
                SendError::Transient(why) if why.contains("401") || why.contains("403") => format!("Discord refuses the token for {what} ({why})"),
                other => format!("Discord's API at {} does not answer {what}: {other}", self.api_url),
            };
            let me = rest.call(reqwest::Method::GET, "/users/@me", None).await.map_err(|e| refused("/users/@me", e))?;
            let app = rest.call(reqwest::Method::GET, "/applications/@me", None).await.map_err(|e| refused("/applications/@me", e))?;
            let configured = self.application_id.map(|id| id.0.to_string()).unwrap_or_default();
            if app["id"].as_str() != Some(configured.as_str()) {
                return Err(format!("the token belongs to application {}, not to discord.application_id {configured}", app["id"].as_str().unwrap_or("?")));
            }
            let mode = match self.mode {
                Mode::Interactions => "interactions endpoint, public key set",
                Mode::Gateway => "gateway",
            };
            Ok(format!("the token works: the bot is {}, application {configured} ({mode})", me["username"].as_str().unwrap_or("?")))
        })
    }

    fn webhook_path(&self) -> Option<&'static str> {
        (self.mode == Mode::Interactions).then_some("/discord/interactions")
    }

    fn build(&self, _ctx: &BuildContext) -> Result<Arc<dyn ChatAdapter>, BuildError> {
        Ok(DiscordAdapter::new(self.clone())?)
    }
}

/// Errors of the adapter itself.
#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("discord.public_key must be the application's 64-character hex public key")]
    PublicKey,
    #[error("discord.application_id is required")]
    ApplicationId,
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The Discord adapter. Share it as `Arc<DiscordAdapter>`.
pub struct DiscordAdapter {
    settings: Settings,
    /// The application id (required, checked when built).
    application_id: Snowflake,
    /// Checks interactions-endpoint requests; `None` in gateway mode.
    key: Option<ed25519_dalek::VerifyingKey>,
    rest: rest::Rest,
    /// Where the interactions endpoint delivers while the adapter runs; `None` while stopped.
    endpoint_inbox: Mutex<Option<mpsc::Sender<Inbound>>>,
    /// Interaction ids acted on, with when: a replayed signed request is answered, not acted on.
    /// A std Mutex, never held across an `.await`.
    seen: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Whether it reaches Discord (`/healthz`).
    pub(crate) health: Health,
}

impl DiscordAdapter {
    pub fn new(settings: Settings) -> Result<Arc<Self>, DiscordError> {
        let key = match settings.public_key.as_str() {
            "" => None,
            hex_key => Some(inbound::public_key(hex_key).ok_or(DiscordError::PublicKey)?),
        };
        let application_id = settings.application_id.ok_or(DiscordError::ApplicationId)?;
        let rest = rest::Rest::new(&settings).map_err(|e| DiscordError::Client(e.to_string()))?;
        Ok(Arc::new(DiscordAdapter { settings, application_id, key, rest, endpoint_inbox: Mutex::default(), seen: Mutex::default(), health: Health::default() }))
    }

    /// Registers the slash commands, retried until they are in.
    async fn register_until_done(&self, cancel: &CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        loop {
            match self.register_commands().await {
                Ok(()) => {
                    tracing::info!(guilds = self.settings.guild_ids.len(), "discord slash commands registered");
                    // In interactions mode this is the adapter's one exchange with Discord.
                    if self.settings.mode == Mode::Interactions {
                        self.health.ok();
                    }
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "discord: cannot register the slash commands; retrying");
                    self.health.failed(&error, false);
                    let wait = backoff.next_wait();
                    let wait = match error {
                        SendError::RetryAfter(d) => d,
                        _ => wait,
                    };
                    if !sleep_or_cancel(cancel, wait).await {
                        return;
                    }
                }
            }
        }
    }

    /// The endpoint's inbox, a std Mutex never held across an `.await`.
    fn endpoint_inbox(&self) -> std::sync::MutexGuard<'_, Option<mpsc::Sender<Inbound>>> {
        self.endpoint_inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bulk-overwrites the commands: per guild when `guild_ids` is set, else globally.
    pub async fn register_commands(&self) -> Result<(), SendError> {
        let app = self.application_id;
        let commands = inbound::command_definitions();
        if self.settings.guild_ids.is_empty() {
            self.rest.call(Method::PUT, &format!("/applications/{app}/commands"), Some(commands.clone())).await?;
        }
        for guild in &self.settings.guild_ids {
            self.rest.call(Method::PUT, &format!("/applications/{app}/guilds/{guild}/commands"), Some(commands.clone())).await?;
        }
        Ok(())
    }

    /// Gives Discord the immediate answer to an interaction that came over the gateway.
    pub async fn respond(&self, interaction_id: &str, token: &str, answer: serde_json::Value) -> Result<(), SendError> {
        self.rest.call(Method::POST, &format!("/interactions/{interaction_id}/{token}/callback"), Some(answer)).await.map(|_| ())
    }

    /// A call on an interaction's webhook. In endpoint mode the bridge can get there before
    /// Discord has taken the endpoint's own answer, so "unknown webhook" is retried briefly.
    async fn webhook(&self, method: Method, path: &str, body: serde_json::Value) -> Result<(), SendError> {
        let mut tries = 0;
        loop {
            match self.rest.call(method.clone(), path, Some(body.clone())).await {
                Err(SendError::Refused(why)) if why.contains("404") && tries < 4 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other.map(|_| ()),
            }
        }
    }
}

/// Discord's 2000-character limit on message content.
fn clip(text: &str) -> String {
    if text.chars().count() <= 2000 { text.to_owned() } else { text.chars().take(1999).chain(['…']).collect() }
}

impl ChatAdapter for DiscordAdapter {
    fn platform(&self) -> &'static str {
        "discord"
    }

    fn run(self: Arc<Self>, inbox: mpsc::Sender<Inbound>, cancel: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            match self.settings.mode {
                // The gateway connects while the commands register.
                Mode::Gateway => {
                    tokio::join!(self.register_until_done(&cancel), gateway::run(self.clone(), inbox, cancel.clone()));
                }
                Mode::Interactions => {
                    *self.endpoint_inbox() = Some(inbox);
                    self.register_until_done(&cancel).await;
                    cancel.cancelled().await;
                    *self.endpoint_inbox() = None;
                }
            }
        })
    }

    fn webhook(self: Arc<Self>) -> Option<axum::Router> {
        (self.settings.mode == Mode::Interactions).then(|| webhook::routes(self))
    }

    fn health(&self) -> HealthReport {
        self.health.report()
    }

    fn pacing(&self) -> Pacing {
        // Discord's global limit: 50 requests a second per bot (interaction answers aside).
        Pacing { per_second: 50, ..self.settings.pacing() }
    }

    fn post_card<'a>(&'a self, chat: &'a ChatRef, card: &'a Card) -> BoxFuture<'a, Result<MessageRef, SendError>> {
        Box::pin(async move {
            let sent = self.rest.call(Method::POST, &format!("/channels/{}/messages", chat.0), Some(card::render(card))).await?;
            let id = sent["id"].as_str().ok_or_else(|| SendError::Transient("a message without an id".into()))?;
            Ok(MessageRef(id.to_owned()))
        })
    }

    fn edit_card<'a>(&'a self, chat: &'a ChatRef, message: &'a MessageRef, card: &'a Card) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let path = format!("/channels/{}/messages/{}", chat.0, message.0);
            self.rest.call(Method::PATCH, &path, Some(card::render(card))).await.map(|_| ())
        })
    }

    fn reply<'a>(&'a self, chat: &'a ChatRef, text: &'a str) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            // Shown as typed: Markdown escaped, no pings.
            let text = card::escape_markdown(text);
            let body = json!({"content": clip(&text), "allowed_mentions": card::no_mentions()});
            self.rest.call(Method::POST, &format!("/channels/{}/messages", chat.0), Some(body)).await.map(|_| ())
        })
    }

    fn send_prompt<'a>(&'a self, user: &'a UserRef, prompt: &'a Prompt) -> BoxFuture<'a, Result<(ChatRef, MessageRef), SendError>> {
        Box::pin(async move {
            // The DM channel with the user (Discord gives the same one each time); a user who
            // shares no server with the bot, or closed their DMs, is refused (50007).
            let channel = self.rest.call(Method::POST, "/users/@me/channels", Some(json!({"recipient_id": user.0}))).await?;
            let channel = channel["id"].as_str().ok_or_else(|| SendError::Transient("a channel without an id".into()))?.to_owned();
            let sent = self.rest.call(Method::POST, &format!("/channels/{channel}/messages"), Some(card::prompt(prompt))).await?;
            let id = sent["id"].as_str().ok_or_else(|| SendError::Transient("a message without an id".into()))?;
            Ok((ChatRef(channel), MessageRef(id.to_owned())))
        })
    }

    fn edit_prompt<'a>(&'a self, chat: &'a ChatRef, message: &'a MessageRef, prompt: &'a Prompt) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let path = format!("/channels/{}/messages/{}", chat.0, message.0);
            self.rest.call(Method::PATCH, &path, Some(card::prompt(prompt))).await.map(|_| ())
        })
    }

    fn mentioned_user(&self, word: &str) -> Option<UserRef> {
        // `<@123>` (or the older `<@!123>`), as Discord writes a mention.
        let id = word.strip_prefix("<@")?.strip_suffix('>')?.trim_start_matches('!');
        (!id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())).then(|| UserRef(id.to_owned()))
    }

    fn answer_command<'a>(&'a self, ack: &'a ActionAck, text: &'a str) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            // Fills in the deferred ("thinking…") answer only the sender sees.
            let app = self.application_id;
            let body = json!({"content": clip(&card::escape_markdown(text)), "allowed_mentions": card::no_mentions()});
            self.webhook(Method::PATCH, &format!("/webhooks/{app}/{}/messages/@original", ack.0), body).await
        })
    }

    fn answer_action<'a>(&'a self, ack: &'a ActionAck, text: Option<&'a str>, alert: bool) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            // The press was acknowledged when it arrived; the card's edit shows what it did.
            // A refusal is told to the presser alone.
            let Some(text) = text.filter(|_| alert) else { return Ok(()) };
            let app = self.application_id;
            let body = json!({"content": clip(&card::escape_markdown(text)), "flags": 64, "allowed_mentions": card::no_mentions()});
            self.webhook(Method::POST, &format!("/webhooks/{app}/{}", ack.0), body).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_chat::settings::{example_differences, read_section};


    #[test]
    fn the_example_section_is_the_defaults() {
        let example = include_str!("../../../config.example.toml");
        assert_eq!(example_differences::<Settings>(example, &["token", "application_id", "public_key"]), Vec::<String>::new());
    }

    #[test]
    fn discord_needs_token_application_and_key() {
        let c = read_section::<Settings>("[discord]\nmode = \"interactions\"\ntoken = \"t\"\napplication_id = \"12\"\n", &[]).unwrap().unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("discord.public_key"));
        let gateway = read_section::<Settings>("[discord]\ntoken = \"t\"\napplication_id = \"12\"\n", &[]).unwrap().unwrap();
        gateway.validate().expect("the gateway needs no public key");
        // Ed25519's base point: a valid public key.
        let key = format!("58{}", "66".repeat(31));
        let bad = read_section::<Settings>(&format!("[discord]\ntoken = \"t\"\napplication_id = \"1\"\npublic_key = \"{}\"\n", "zz".repeat(32)), &[]);
        assert!(bad.unwrap().unwrap().validate().unwrap_err().to_string().contains("discord.public_key"));
        let doc = format!("[discord]\napplication_id = \"12\"\npublic_key = \"{key}\"\n");
        let c = read_section::<Settings>(&doc, &[]).unwrap().unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("discord.token"));
        let c = read_section::<Settings>(&doc, &[("CALLBRIDGE_DISCORD_TOKEN", "secret-bot-token")]).unwrap().unwrap();
        c.validate().unwrap();
        assert!(!toml::to_string(&c).unwrap().contains("secret-bot-token"));
        let c = read_section::<Settings>("[discord]\ntoken = \"t\"\n", &[]).unwrap().unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("discord.application_id"));
    }

    #[test]
    fn ids_are_numbers() {
        let c = read_section::<Settings>("[discord]\napplication_id = 12\nguild_ids = [\"34\"]\n", &[]).unwrap().unwrap();
        assert_eq!((c.application_id, c.guild_ids), (Some(Snowflake(12)), vec![Snowflake(34)]));
        assert!(read_section::<Settings>("[discord]\nguild_ids = [\"general\"]\n", &[]).is_err());
        assert!(read_section::<Settings>("[discord]\nadmin_role_ids = [\"12a\"]\n", &[]).is_err());
        let bad_env = read_section::<Settings>("[discord]\n", &[("CALLBRIDGE_DISCORD_APPLICATION_ID", "app")]).unwrap_err();
        assert!(bad_env.to_string().contains("discord.application_id"), "{bad_env}");
    }

    #[test]
    fn only_the_token_turns_discord_on() {
        let id_and_key = [("CALLBRIDGE_DISCORD_APPLICATION_ID", "12"), ("CALLBRIDGE_DISCORD_PUBLIC_KEY", "00")];
        assert!(read_section::<Settings>("", &id_and_key).unwrap().is_none(), "the id and key alone leave Discord off");
        let with_token = [id_and_key[0], id_and_key[1], ("CALLBRIDGE_DISCORD_TOKEN", "t")];
        let on = read_section::<Settings>("", &with_token).unwrap().expect("the token turns it on");
        assert_eq!((on.application_id, on.public_key.as_str()), (Some(Snowflake(12)), "00"));
    }
}
