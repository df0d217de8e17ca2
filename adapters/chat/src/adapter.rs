//! The adapter trait: what the core asks of a chat platform.
//!
//! One lifecycle for every adapter: it is built from its settings (see [`crate::platform`]),
//! then [`ChatAdapter::run`] until its cancellation token fires; the daemon may stop it and
//! run it again. Inbound, `run` delivers [`ChatEvent`]s to the inbox it is given; a platform
//! that pushes events over HTTP also offers a [`ChatAdapter::webhook`] router, which the web
//! server mounts as given. Outbound, the core calls the other methods. Every one makes one
//! platform request and reports rate limits and failures as [`SendError`]s, so that pacing,
//! retries and coalescing live once, in the core.

use crate::card::Card;
use crate::state::Inbound;
use crate::{ChatRef, MessageRef, UserRef};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A boxed future, so the trait can be used as `dyn ChatAdapter`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a platform request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The platform asks us to wait (HTTP 429 / flood control).
    #[error("rate limited; retry after {0:?}")]
    RetryAfter(Duration),
    /// An edit changed nothing; the message already shows this content.
    #[error("message is not modified")]
    NotModified,
    /// A network error, a timeout or a server error: worth retrying.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The platform refused for good (message deleted, bot removed, forbidden).
    #[error("refused: {0}")]
    Refused(String),
    /// This adapter cannot do that (e.g. no private messages on this platform).
    #[error("not supported by this platform")]
    Unsupported,
}

/// What the adapter needs to answer a button press or a command (a Telegram callback query
/// id, a Discord interaction token).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActionAck(pub String);

/// A private message with buttons (a ring, a knock for the host): plain text, never markup,
/// and buttons that come back as [`ChatEvent::Action`](crate::ChatEvent)s on the prompt's
/// message. `buttons` empty: the prompt was answered and keeps only its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub text: String,
    /// Each button's label and action (at most two, [`CardAction::Accept`] and
    /// [`CardAction::Decline`]; a platform without buttons names them in the text).
    pub buttons: Vec<(String, crate::CardAction)>,
    /// The language of the text, for what the platform adds around the buttons.
    pub lang: crate::Lang,
}

/// A platform's limits on how often the bot may send: into one chat, and in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Least time between two messages or edits of the bot in one chat.
    pub min_interval: Duration,
    /// Most messages and edits of the bot in one chat per minute.
    pub per_minute: u32,
    /// Most messages and edits of the bot per second in all its chats (0: no such limit).
    pub per_second: u32,
}

/// A chat platform, as the core sees it.
pub trait ChatAdapter: Send + Sync + 'static {
    /// A short lowercase name (`telegram`), stored beside each posted card.
    fn platform(&self) -> &'static str;

    /// What starts a command in this platform's chats, as help texts should show it.
    fn command_prefix(&self) -> &str {
        "/"
    }

    /// Runs the inbound side until `cancel` fires: logs in, polls or holds a session, and sends
    /// every command and button press to `inbox`. Failures are retried here; nothing ends the
    /// daemon. Returns soon after `cancel`. May be called again after it returned, to start the
    /// adapter anew with a new inbox.
    fn run(self: Arc<Self>, inbox: mpsc::Sender<Inbound>, cancel: CancellationToken) -> BoxFuture<'static, ()>;

    /// Prepares the adapter on a node that does not run it (another node leads it), once at
    /// start, until `cancel`: a platform where each node is a participant of its own (a Matrix
    /// device) makes itself known now, so that a fail-over to this node loses nothing. Most
    /// platforms need nothing.
    fn standby(self: Arc<Self>, cancel: CancellationToken) -> BoxFuture<'static, ()> {
        let _ = cancel;
        Box::pin(async {})
    }

    /// Routes to mount on the bridge's web server when the platform pushes events over HTTP
    /// (Discord's interactions endpoint). Called once, before the adapter first runs; the routes
    /// deliver to the inbox of the current run and answer 503 while the adapter is stopped.
    fn webhook(self: Arc<Self>) -> Option<axum::Router> {
        None
    }

    /// Whether the adapter reaches its platform now, and its last failure (for `/healthz`).
    fn health(&self) -> crate::HealthReport {
        crate::HealthReport::default()
    }

    /// The per-chat limits every send and edit of the bot must keep.
    fn pacing(&self) -> Pacing;

    /// Posts a card; returns the posted message.
    fn post_card<'a>(&'a self, chat: &'a ChatRef, card: &'a Card) -> BoxFuture<'a, Result<MessageRef, SendError>>;

    /// Replaces a posted card's content and buttons.
    fn edit_card<'a>(&'a self, chat: &'a ChatRef, message: &'a MessageRef, card: &'a Card) -> BoxFuture<'a, Result<(), SendError>>;

    /// Sends plain text (never interpreted as markup) to a chat.
    fn reply<'a>(&'a self, chat: &'a ChatRef, text: &'a str) -> BoxFuture<'a, Result<(), SendError>>;

    /// Sends plain text privately to one user, where the platform allows it; returns the chat
    /// it went to (for pacing). `Unsupported` or `Refused` when it cannot.
    fn send_private<'a>(&'a self, user: &'a UserRef, text: &'a str) -> BoxFuture<'a, Result<ChatRef, SendError>> {
        let _ = (user, text);
        Box::pin(async { Err(SendError::Unsupported) })
    }

    /// Sends a [`Prompt`] privately to `user`; returns the private chat and the message, which
    /// its button presses name. `Refused` when the user cannot be reached privately (they never
    /// opened a private chat with the bot).
    fn send_prompt<'a>(&'a self, user: &'a UserRef, prompt: &'a Prompt) -> BoxFuture<'a, Result<(ChatRef, MessageRef), SendError>> {
        let _ = (user, prompt);
        Box::pin(async { Err(SendError::Unsupported) })
    }

    /// Replaces a sent prompt's text and buttons.
    fn edit_prompt<'a>(&'a self, chat: &'a ChatRef, message: &'a MessageRef, prompt: &'a Prompt) -> BoxFuture<'a, Result<(), SendError>> {
        let _ = (chat, message, prompt);
        Box::pin(async { Err(SendError::Unsupported) })
    }

    /// The user a word of `/ring @…` names on its own, where the platform's mentions carry the
    /// id (a Discord `<@123>`, a Matrix `@ada:example.org`); `None` leaves the word to be
    /// matched against the chat's opted-in members.
    fn mentioned_user(&self, word: &str) -> Option<UserRef> {
        let _ = word;
        None
    }

    /// The chat a private message to `user` would go to, for pacing; `None` when unsupported.
    fn private_chat(&self, user: &UserRef) -> Option<ChatRef> {
        let _ = user;
        None
    }

    /// Answers a command that carried an `answer` handle, to its sender alone.
    fn answer_command<'a>(&'a self, ack: &'a ActionAck, text: &'a str) -> BoxFuture<'a, Result<(), SendError>> {
        let _ = (ack, text);
        Box::pin(async { Err(SendError::Unsupported) })
    }

    /// Whether [`answer_action`](Self::answer_action) says an alert in the chat itself (where
    /// the platform has no private answer to a button): the core then paces it with the chat's
    /// other messages.
    fn alerts_in_chat(&self) -> bool {
        false
    }

    /// Answers a button press: `text` is shown to the presser only; `alert` asks for something
    /// the presser must see (a dialog on Telegram, a private message on Discord) rather than a
    /// passing notice. Refusals and personal links are alerts.
    fn answer_action<'a>(&'a self, ack: &'a ActionAck, text: Option<&'a str>, alert: bool) -> BoxFuture<'a, Result<(), SendError>>;
}

/// An error answer of a webhook route, in the shape of every error the bridge's web server
/// gives: `{"error": "<code>", "message": "..."}`.
pub fn webhook_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({"error": code, "message": message}))).into_response()
}
