//! How the daemon knows a platform without naming it: each adapter crate describes its config
//! section as a [`Section`], and the daemon holds every configured one as an opaque
//! [`AdapterSettings`], builds the adapter from it and runs it through [`ChatAdapter::run`].
//!
//! [`Platform`] is the entry the daemon registers for each adapter compiled in: the section's
//! name, the environment variables it reads, and [`Platform::configure`], which reads the
//! section out of the whole file (see [`crate::settings::section`]) and applies the
//! environment.

use crate::adapter::{ChatAdapter, Pacing};
use crate::settings::{SettingsError, check_limits, secrets_in, section};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Reads an environment variable (the real environment, or a test's map).
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Why an adapter could not be built from its settings.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// What the daemon lends an adapter it builds.
#[derive(Clone)]
pub struct BuildContext {
    /// A folder of the adapter's own for state it keeps across restarts (a login session, an
    /// encryption store), below the daemon's data directory. Created by the adapter if needed.
    pub state_dir: PathBuf,
    /// Told every secret the adapter learns while running (an access token), so the logs can
    /// mask it.
    pub on_secret: fn(&str),
    /// The adapter's values and inbound claims in the database every node shares.
    pub state: std::sync::Arc<dyn crate::state::AdapterState>,
}

/// The keys every adapter's section has, which [`adapter_section!`](crate::adapter_section)
/// declares and reads the same way for each.
pub trait Basics {
    /// Whether the adapter is on (`enabled = false` keeps the section but turns it off).
    fn enabled(&self) -> bool;
    /// The per-chat limits of the bot's sends (`min_interval`, `per_minute`).
    fn pacing(&self) -> Pacing;
    /// How long the card updater gathers a burst of room changes before editing a card.
    fn debounce(&self) -> Duration;
    /// How long one request to the platform may take.
    fn request_timeout(&self) -> Duration;
}

/// An adapter's `[section]`, typed by its crate (declared with
/// [`adapter_section!`](crate::adapter_section)). The port turns it into a [`Platform`] and
/// an [`AdapterSettings`]; the adapter writes only what is its own. Its secrets are found by
/// [`secrets_in`].
pub trait Section: Basics + Serialize + DeserializeOwned + Default + Clone + Debug + Send + Sync + 'static {
    /// The section's name (`telegram`), which is also the platform's name on stored cards.
    const NAME: &'static str;
    /// The environment variables the section reads, with what each sets.
    const ENV: &'static [(&'static str, &'static str)];
    /// The most `per_minute` the platform allows a bot in one chat.
    const MOST_PER_MINUTE: u32;
    /// Default log directives for the platform's libraries (`RUST_LOG` syntax), used when
    /// `RUST_LOG` is unset.
    const LOG_FILTER: &'static str = "";

    /// Applies the environment over the file's section (`None`: the file has none). A secret
    /// may turn the adapter on by itself, so the result may be `Some` when `section` was not.
    fn apply_env(section: Option<Self>, env: Env<'_>) -> Result<Option<Self>, SettingsError>;
    /// Checks the adapter's own values (the shared keys are checked for it); the error names
    /// the full key.
    fn validate(&self) -> Result<(), SettingsError>;
    /// Builds the adapter. Nothing is sent until it is run.
    fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn ChatAdapter>, BuildError>;
    /// The path under `public_url` the platform sends requests to, when it does (Discord's
    /// interactions endpoint): the platform reaches it over https only.
    fn webhook_path(&self) -> Option<&'static str> {
        None
    }
    /// Asks the platform whether these settings work (`callbridge doctor`): what it answered,
    /// or why not. Never says a secret.
    fn probe<'a>(&'a self, ctx: &'a BuildContext) -> crate::BoxFuture<'a, Result<String, String>> {
        let _ = ctx;
        Box::pin(async { Ok("no check for this platform".to_owned()) })
    }
}

/// Declares an adapter's `[section]` type: its own keys, then the keys every adapter has
/// (`enabled`, `min_interval`, `per_minute`, `debounce`, `request_timeout`), typed and read
/// the same way, unknown keys refused; and implements [`Basics`] for it. The `Default` is the
/// adapter's to write: each platform has its own limits.
#[macro_export]
macro_rules! adapter_section {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$fmeta:meta])* pub $field:ident : $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            /// Turns the adapter off without removing the section.
            pub enabled: bool,
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Least time between two messages or edits of the bot in one chat.
            #[serde(with = "callbridge_chat::human_duration")]
            pub min_interval: std::time::Duration,
            /// Most messages and edits of the bot per chat per minute.
            pub per_minute: u32,
            /// How long the card updater gathers a burst of room changes before editing a card.
            #[serde(with = "callbridge_chat::human_duration")]
            pub debounce: std::time::Duration,
            /// How long one request to the platform may take before it is abandoned and retried.
            #[serde(with = "callbridge_chat::human_duration")]
            pub request_timeout: std::time::Duration,
        }

        impl $crate::Basics for $name {
            fn enabled(&self) -> bool {
                self.enabled
            }
            fn pacing(&self) -> $crate::Pacing {
                $crate::Pacing { min_interval: self.min_interval, per_minute: self.per_minute, per_second: 0 }
            }
            fn debounce(&self) -> std::time::Duration {
                self.debounce
            }
            fn request_timeout(&self) -> std::time::Duration {
                self.request_timeout
            }
        }
    };
}

/// One configured adapter's settings, opaque to the core.
pub trait AdapterSettings: Debug + Send + Sync {
    /// The platform's name, as [`Section::NAME`].
    fn platform(&self) -> &'static str;
    /// Checks every value, the shared keys' and the adapter's own.
    fn check(&self) -> Result<(), SettingsError>;
    fn secrets(&self) -> Vec<String>;
    /// The section as TOML, secrets redacted (what `check-config` prints).
    fn to_redacted_toml(&self) -> toml::Value;
    fn debounce(&self) -> Duration;
    fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn ChatAdapter>, BuildError>;
    fn clone_box(&self) -> Box<dyn AdapterSettings>;
    /// See [`Section::webhook_path`].
    fn webhook_path(&self) -> Option<&'static str>;
    /// See [`Section::probe`].
    fn probe<'a>(&'a self, ctx: &'a BuildContext) -> crate::BoxFuture<'a, Result<String, String>>;
}

impl<S: Section> AdapterSettings for S {
    fn platform(&self) -> &'static str {
        S::NAME
    }
    fn check(&self) -> Result<(), SettingsError> {
        check_limits(S::NAME, self.pacing().per_minute, S::MOST_PER_MINUTE, self.request_timeout())?;
        Section::validate(self)
    }
    fn secrets(&self) -> Vec<String> {
        secrets_in(self)
    }
    fn to_redacted_toml(&self) -> toml::Value {
        toml::Value::try_from(self).unwrap_or_else(|e| toml::Value::String(format!("cannot render: {e}")))
    }
    fn debounce(&self) -> Duration {
        Basics::debounce(self)
    }
    fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn ChatAdapter>, BuildError> {
        Section::build(self, ctx)
    }
    fn clone_box(&self) -> Box<dyn AdapterSettings> {
        Box::new(self.clone())
    }
    fn webhook_path(&self) -> Option<&'static str> {
        Section::webhook_path(self)
    }
    fn probe<'a>(&'a self, ctx: &'a BuildContext) -> crate::BoxFuture<'a, Result<String, String>> {
        Section::probe(self, ctx)
    }
}

impl Clone for Box<dyn AdapterSettings> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// A platform compiled into the daemon, as its registry lists it.
pub trait Platform: Send + Sync {
    /// The section's name.
    fn name(&self) -> &'static str;
    /// The environment variables it reads, with what each sets.
    fn env_vars(&self) -> &'static [(&'static str, &'static str)];
    /// Default log directives for its libraries.
    fn log_filter(&self) -> &'static str {
        ""
    }
    /// Reads `[name]` from the whole document (`None`: no file), applies the environment, and
    /// returns the settings when the adapter is on. Validation is the caller's next step.
    fn configure(&self, doc: Option<&str>, env: Env<'_>) -> Result<Option<Box<dyn AdapterSettings>>, SettingsError>;
}

struct PlatformOf<S>(PhantomData<fn() -> S>);

impl<S: Section> Platform for PlatformOf<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }
    fn env_vars(&self) -> &'static [(&'static str, &'static str)] {
        S::ENV
    }
    fn log_filter(&self) -> &'static str {
        S::LOG_FILTER
    }
    fn configure(&self, doc: Option<&str>, env: Env<'_>) -> Result<Option<Box<dyn AdapterSettings>>, SettingsError> {
        let from_file = match doc {
            Some(doc) => section::<S>(doc, S::NAME)?,
            None => None,
        };
        let settings = S::apply_env(from_file, env)?.filter(Basics::enabled);
        Ok(settings.map(|s| Box::new(s) as Box<dyn AdapterSettings>))
    }
}

/// The [`Platform`] of a section type.
pub fn platform<S: Section>() -> &'static dyn Platform {
    // A zero-sized value: leaking it allocates nothing.
    Box::leak(Box::new(PlatformOf::<S>(PhantomData)))
}
