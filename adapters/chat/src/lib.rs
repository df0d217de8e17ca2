//! # The chat adapter port
//!
//! The neutral vocabulary between the callbridge core and every chat platform. An adapter
//! (Telegram, Matrix, Discord) turns platform events into [`ChatEvent`]s — a parsed
//! [`Command`] or a press on a card button — and turns a neutral [`Card`] into the
//! platform's message. No room rule lives in an adapter, and no platform crate lives here.
//!
//! * [`command`] — the `Command` enum and its pure parser.
//! * [`card`] — the `Card` an adapter renders, and the button actions it can carry.
//! * [`adapter`] — the `ChatAdapter` trait (its lifecycle, its webhook, its sends), its errors
//!   and its pacing limits.
//! * [`platform`] — how an adapter's config section becomes opaque settings the daemon builds
//!   it from, without the core naming the platform.
//! * [`settings`] — what every section shares: `Secret`, human durations, the section reader
//!   that keeps line numbers, and the common checks.
//! * [`state`] — what an adapter keeps in the shared database: values across runs and the
//!   inbound updates already taken.
//! * [`health`] — whether an adapter reaches its platform, and its last failure (`/healthz`).
//! * [`lang`] — English, Spanish and French: a card's words in each, and the template filler.
//! * [`retry`] — the one backoff helper.
//! * [`text`] — escaping and length budgets the card renderers share.

pub mod adapter;
pub mod card;
pub mod command;
pub mod health;
pub mod lang;
pub mod platform;
pub mod retry;
pub mod settings;
pub mod state;
pub mod text;

pub use adapter::{ActionAck, BoxFuture, ChatAdapter, Pacing, Prompt, SendError, webhook_error};
pub use card::{Attendance, Card, CardAction, CardStatus, KNOCK_CODE_LEN, Knock, RingLine, RingState, human_seconds, knock_code};
pub use health::{Health, HealthReport};
pub use lang::{CardWords, Lang, fill};
pub use command::{Command, CommandInfo, Day, Kind, MAX_RING_TARGETS, MENU, MOST_AHEAD, PRIVATE_WORD, RING_WORD, StartAt, parse_command};
pub use platform::{AdapterSettings, Basics, BuildContext, BuildError, Env, Platform, Section, platform};
pub use retry::{Backoff, sleep_or_cancel};
pub use settings::{Secret, SettingsError, human_duration, invalid};
pub use state::{AdapterState, Inbound, MemoryState, Receipt};

/// An opaque reference to a chat (a Telegram chat id, a Matrix room id, a Discord channel).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChatRef(pub String);

/// An opaque reference to a chat user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserRef(pub String);

/// An opaque reference to a posted message (a card).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageRef(pub String);

macro_rules! str_ref {
    ($($t:ty),*) => {$(
        impl $t {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
str_ref!(ChatRef, UserRef, MessageRef);

/// Who sent a command or pressed a button, as the adapter knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The platform user.
    pub user: UserRef,
    /// The name to show (the room's host name when this user mints a room).
    pub display_name: String,
    /// Whether the platform says this user administers the chat (host powers follow).
    pub is_admin: bool,
    /// The user's @-name where the platform has one apart from their id (a Telegram or
    /// Discord username), so `/ring @name` finds them.
    pub handle: Option<String>,
}

impl ChatEvent {
    /// The chat it happened in.
    pub fn chat(&self) -> &ChatRef {
        match self {
            ChatEvent::Command { chat, .. } | ChatEvent::Action { chat, .. } => chat,
        }
    }
}

/// Something a chat user did that the core must decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// A command typed in a chat.
    Command {
        chat: ChatRef,
        actor: Actor,
        command: Command,
        /// Whether the chat is a private (one-to-one) chat with the bot.
        private: bool,
        /// The chat's name as its members see it (a group's title, `#channel`), where the
        /// platform says it; rings say which chat calls.
        chat_name: Option<String>,
        /// Where the platform wants the answer to this command, seen by its sender alone
        /// (Discord's deferred interaction response); `None` answers in the chat.
        answer: Option<ActionAck>,
    },
    /// A press on a button of a posted card.
    Action {
        chat: ChatRef,
        /// The card the button belongs to.
        message: MessageRef,
        actor: Actor,
        action: CardAction,
        /// What the adapter needs to answer the press (e.g. a callback query id).
        ack: ActionAck,
    },
}
