//! # The Discord adapter
//!
//! Slash commands and button presses reach callbridge as interactions, in one of two modes:
//!
//! * **gateway** ([`gateway`], the default): the bot holds a websocket to Discord (serenity) and
//!   answers each interaction with a REST callback;
//! * **interactions endpoint**: Discord POSTs them to the bridge's own web server
//!   (`POST /discord/interactions`), signed with Ed25519; the core's web layer hands the raw
//!   request to [`DiscordAdapter::verify`] and [`DiscordAdapter::interaction`] and answers
//!   with the returned JSON.
//!
//! Either way the [`ChatEvent`] goes to the bridge. Everything the bot sends goes over Discord's REST API with the
//! bot token ([`rest`]), reading `X-RateLimit-*` and honouring 429 `retry_after`.
//!
//! A slash command is answered at once with a deferred, ephemeral ("only you can see this")
//! response; the event carries its token, and the bridge's answer (or the host link) fills it
//! in. The join card itself is
//! a channel message, so it can be edited with the bot token long after the interaction's
//! 15-minute token has expired.
//!
//! * [`card`] — `Card` → embed and buttons.
//! * [`gateway`] — gateway mode.
//! * [`interaction`] — signature checks and interaction payloads → `ChatEvent`s.
//! * [`rest`] — the REST client and its rate-limit buckets.

pub mod card;
pub mod gateway;
pub mod interaction;
pub mod rest;

use callbridge_chat::{ActionAck, BoxFuture, Card, ChatAdapter, ChatRef, MessageRef, Pacing, SendError};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the adapter needs to run.
#[derive(Clone)]
pub struct Settings {
    /// The bot token (Developer Portal → Bot).
    pub token: String,
    /// The application id (Developer Portal → General Information).
    pub application_id: String,
    /// The application's public key, hex (Developer Portal → General Information); needed by
    /// the interactions endpoint only.
    pub public_key: Option<String>,
    /// Guilds to register the commands in (instantly); empty registers them globally.
    pub guild_ids: Vec<String>,
    /// Roles whose members have host powers in every room of their guild.
    pub admin_role_ids: Vec<String>,
    /// Discord's API base (`https://discord.com`), or a test server.
    pub api_url: url::Url,
    /// How long one REST call may take.
    pub request_timeout: Duration,
    /// Per-channel limits of the bot's messages and edits.
    pub pacing: Pacing,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("token", &"<redacted>")
            .field("application_id", &self.application_id)
            .field("api_url", &self.api_url.as_str())
            .finish()
    }
}

/// Errors of the adapter itself.
#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("discord.public_key must be the application's 64-character hex public key")]
    PublicKey,
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The Discord adapter. Share it as `Arc<DiscordAdapter>`.
pub struct DiscordAdapter {
    settings: Settings,
    /// Checks interactions-endpoint requests; `None` in gateway mode.
    key: Option<ed25519_dalek::VerifyingKey>,
    rest: rest::Rest,
}

impl DiscordAdapter {
    pub fn new(settings: Settings) -> Result<std::sync::Arc<Self>, DiscordError> {
        let key = match settings.public_key.as_deref() {
            Some(hex_key) => Some(interaction::public_key(hex_key).ok_or(DiscordError::PublicKey)?),
            None => None,
        };
        let rest = rest::Rest::new(&settings).map_err(|e| DiscordError::Client(e.to_string()))?;
        Ok(std::sync::Arc::new(DiscordAdapter { settings, key, rest }))
    }

    /// Registers the slash commands (retried until they are in), then idles until `cancel`.
    pub async fn run(self: std::sync::Arc<Self>, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.register_commands().await {
                Ok(()) => {
                    tracing::info!(guilds = self.settings.guild_ids.len(), "discord slash commands registered");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, ?backoff, "discord: cannot register the slash commands; retrying");
                    let wait = match error {
                        SendError::RetryAfter(d) => d,
                        _ => backoff,
                    };
                    if !sleep_or_cancel(&cancel, wait).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
        cancel.cancelled().await;
    }

    /// Bulk-overwrites the commands: per guild when `guild_ids` is set, else globally.
    pub async fn register_commands(&self) -> Result<(), SendError> {
        let app = &self.settings.application_id;
        let commands = interaction::command_definitions();
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

    fn pacing(&self) -> Pacing {
        self.settings.pacing
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

    fn answer_command<'a>(&'a self, ack: &'a ActionAck, text: &'a str) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            // Fills in the deferred ("thinking…") answer only the sender sees.
            let app = &self.settings.application_id;
            let body = json!({"content": clip(&card::escape_markdown(text)), "allowed_mentions": card::no_mentions()});
            self.webhook(Method::PATCH, &format!("/webhooks/{app}/{}/messages/@original", ack.0), body).await
        })
    }

    fn answer_action<'a>(&'a self, ack: &'a ActionAck, text: Option<&'a str>, alert: bool) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            // The press was acknowledged when it arrived; the card's edit shows what it did.
            // A refusal is told to the presser alone.
            let Some(text) = text.filter(|_| alert) else { return Ok(()) };
            let app = &self.settings.application_id;
            let body = json!({"content": clip(&card::escape_markdown(text)), "flags": 64, "allowed_mentions": card::no_mentions()});
            self.webhook(Method::POST, &format!("/webhooks/{app}/{}", ack.0), body).await
        })
    }
}

async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}
