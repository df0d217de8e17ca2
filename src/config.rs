//! The daemon's configuration: one TOML file, typed, `deny_unknown_fields`.
//!
//! Every section is optional and every key has a default, so the daemon runs with no file at
//! all. Secrets can also come from the environment (see [`ENV_SECRETS`]); the environment wins
//! over the file so a secret never has to be written to disk. `Secret` values never print:
//! `Debug` and `Serialize` both show `<redacted>`, which is what `check-config` relies on.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variables that can carry secrets or override the file, with what they set.
pub const ENV_SECRETS: &[(&str, &str)] = &[
    ("CALLBRIDGE_API_TOKEN", "[api] token"),
    ("CALLBRIDGE_STORAGE_URL", "[storage] url (may carry a database password)"),
    ("CALLBRIDGE_TELEGRAM_TOKEN", "[telegram] token (turns Telegram on when the section is absent)"),
    ("CALLBRIDGE_DISCORD_TOKEN", "[discord] token (turns Discord on when the section is absent)"),
    ("CALLBRIDGE_DISCORD_APPLICATION_ID", "[discord] application_id"),
    ("CALLBRIDGE_DISCORD_PUBLIC_KEY", "[discord] public_key"),
    ("CALLBRIDGE_MATRIX_PASSWORD", "[matrix] password"),
    ("CALLBRIDGE_MATRIX_ACCESS_TOKEN", "[matrix] access_token"),
];

/// Errors loading or validating the configuration. Messages name the file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: invalid value for {key}: {message}")]
    Invalid { path: PathBuf, key: &'static str, message: String },
}

/// A secret string: deserializes like a string, never prints.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call sites that need it are few and obvious.
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// Durations written the human way: `"90d"`, `"10s"`, `"1h 30m"`.
pub mod human_duration {
    use super::*;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
    /// The shortest exact form: `90d`, `10s`, `1500ms`.
    pub fn format(d: Duration) -> String {
        let ms = d.as_millis();
        for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if ms > 0 && ms.is_multiple_of(size) {
                return format!("{}{unit}", ms / size);
            }
        }
        format!("{ms}ms")
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The web server: join pages, room pages, REST API.
    pub server: ServerConfig,
    /// Where rooms, participants and cards are kept.
    pub storage: StorageConfig,
    /// Defaults and limits for rooms.
    pub rooms: RoomsConfig,
    /// The REST API.
    pub api: ApiConfig,
    /// The Telegram bot; on when the section is present (and `enabled` is not false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telegram: Option<TelegramConfig>,
    /// The Discord bot; on when the section is present (and `enabled` is not false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discord: Option<DiscordConfig>,
    /// The Matrix bot; on when the section is present (and `enabled` is not false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matrix: Option<MatrixConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the web server binds.
    pub listen: SocketAddr,
    /// The base URL links are minted with (what users' browsers reach). Default: `http://{listen}`.
    pub public_url: Option<String>,
    /// Join attempts allowed per client address per minute; 0 turns the limit off.
    pub join_rate_per_minute: u32,
    /// Take the client address from the last `X-Forwarded-For` hop (only behind a reverse proxy).
    pub trust_forwarded_for: bool,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}
impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".parse().expect("valid default"),
            public_url: None,
            join_rate_per_minute: 30,
            trust_forwarded_for: false,
            max_body_bytes: 16 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite://PATH` or `postgres://…`. Default: `sqlite://{data_dir}/callbridge.db`.
    pub url: Option<Secret>,
    /// Directory for the SQLite file, the generated API token and adapter state.
    pub data_dir: PathBuf,
    /// Connection pool size (PostgreSQL; SQLite uses one writer and this many readers).
    pub max_connections: u32,
}
impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { url: None, data_dir: PathBuf::from("data"), max_connections: 8 }
    }
}

/// Video (camera and microphone) or voice (microphone only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoomKind {
    #[default]
    Video,
    Voice,
}
impl RoomKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Video => "video",
            RoomKind::Voice => "voice",
        }
    }
    pub fn parse(s: &str) -> Option<RoomKind> {
        match s.to_ascii_lowercase().as_str() {
            "video" => Some(RoomKind::Video),
            "voice" | "audio" => Some(RoomKind::Voice),
            _ => None,
        }
    }
}

/// One STUN or TURN server, handed to browsers as an `RTCIceServer`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:host:port` or `turn:host:port?transport=udp` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential. Browsers need it in clear, so it is sent to admitted participants only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Secret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// Kind of a room when the command or request names none.
    pub default_kind: RoomKind,
    /// Most people in a room at once (built-in rooms are a mesh: see the README).
    pub max_participants: u32,
    /// A room unused this long expires and its link answers 410.
    #[serde(with = "human_duration")]
    pub expire_after: Duration,
    /// Whether a locked room lets people ask to join.
    pub knock: bool,
    /// How long a closed room page may take to reconnect before its participant counts as left.
    #[serde(with = "human_duration")]
    pub presence_grace: Duration,
    /// How long an admission may wait for its room page to connect before the slot is freed.
    #[serde(with = "human_duration")]
    pub connect_timeout: Duration,
    /// STUN/TURN servers for browsers.
    pub ice_servers: Vec<IceServer>,
}
impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            default_kind: RoomKind::Video,
            max_participants: 8,
            expire_after: Duration::from_secs(90 * 86_400),
            knock: true,
            presence_grace: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(60),
            ice_servers: vec![IceServer {
                urls: vec!["stun:stun.l.google.com:19302".into()],
                username: None,
                credential: None,
            }],
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Bearer token for `/api/v1`. When unset, the daemon generates one into
    /// `{data_dir}/api-token` (mode 0600) so the CLI on the same machine can use it.
    pub token: Option<Secret>,
}

/// `[telegram]`: the bot that posts join cards in Telegram chats.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelegramConfig {
    /// Turns the adapter off without removing the section.
    pub enabled: bool,
    /// The bot token from @BotFather. REQUIRED when enabled (or `CALLBRIDGE_TELEGRAM_TOKEN`).
    pub token: Option<Secret>,
    /// The Bot API server (a local `telegram-bot-api` or a test double).
    pub api_url: String,
    /// Chat ids the bot serves; empty means every chat it is added to.
    pub allowed_chats: Vec<i64>,
    /// Least time between two messages or edits of the bot in one chat.
    #[serde(with = "human_duration")]
    pub min_interval: Duration,
    /// Most messages and edits of the bot per chat per minute.
    pub per_minute: u32,
    /// How long the card updater gathers a burst of room changes before editing a card.
    #[serde(with = "human_duration")]
    pub debounce: Duration,
    /// Long-polling timeout of `getUpdates`.
    #[serde(with = "human_duration")]
    pub poll_timeout: Duration,
    /// How long any other Bot API call may take before it is abandoned and retried.
    #[serde(with = "human_duration")]
    pub request_timeout: Duration,
    /// How long a chat member's admin status is cached.
    #[serde(with = "human_duration")]
    pub admin_cache: Duration,
}
impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            enabled: true,
            token: None,
            api_url: "https://api.telegram.org".into(),
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

/// How Discord reaches the bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscordMode {
    /// Discord POSTs interactions to `POST /discord/interactions` on this server.
    Interactions,
    /// The bot holds a websocket to Discord's gateway; no public URL needed.
    Gateway,
}

/// `[discord]`: the bot that answers `/call` in Discord channels.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordConfig {
    /// Turns the adapter off without removing the section.
    pub enabled: bool,
    /// The bot token. REQUIRED when enabled (or `CALLBRIDGE_DISCORD_TOKEN`).
    pub token: Option<Secret>,
    /// The application id. REQUIRED (or `CALLBRIDGE_DISCORD_APPLICATION_ID`).
    pub application_id: String,
    /// The application's public key, hex. REQUIRED in interactions mode (or `CALLBRIDGE_DISCORD_PUBLIC_KEY`).
    pub public_key: String,
    /// How Discord reaches the bot.
    pub mode: DiscordMode,
    /// Guilds to register the commands in at once; empty registers them globally.
    pub guild_ids: Vec<String>,
    /// Roles whose members have host powers, beside Manage Channels.
    pub admin_role_ids: Vec<String>,
    /// Discord's API base (a test server in tests).
    pub api_url: String,
    /// Least time between two messages or edits of the bot in one channel.
    #[serde(with = "human_duration")]
    pub min_interval: Duration,
    /// Most messages and edits of the bot per channel per minute.
    pub per_minute: u32,
    /// How long the card updater gathers a burst of room changes before editing a card.
    #[serde(with = "human_duration")]
    pub debounce: Duration,
    /// How long one REST call may take before it is abandoned and retried.
    #[serde(with = "human_duration")]
    pub request_timeout: Duration,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        DiscordConfig {
            enabled: true,
            token: None,
            application_id: String::new(),
            public_key: String::new(),
            mode: DiscordMode::Gateway,
            guild_ids: Vec::new(),
            admin_role_ids: Vec::new(),
            api_url: "https://discord.com".into(),
            min_interval: Duration::from_secs(1),
            per_minute: 50,
            debounce: Duration::from_millis(300),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// `[matrix]`: the bot account that answers `!call` in Matrix rooms.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatrixConfig {
    /// Turns the adapter off without removing the section.
    pub enabled: bool,
    /// The homeserver's client-server API base, e.g. `https://matrix.example.org`. REQUIRED.
    pub homeserver: String,
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
    /// Least time between two messages or edits of the bot in one room.
    #[serde(with = "human_duration")]
    pub min_interval: Duration,
    /// Most messages and edits of the bot per room per minute.
    pub per_minute: u32,
    /// How long the card updater gathers a burst of room changes before editing a card.
    #[serde(with = "human_duration")]
    pub debounce: Duration,
    /// How long one request may take before it is abandoned and retried.
    #[serde(with = "human_duration")]
    pub request_timeout: Duration,
}

impl Default for MatrixConfig {
    fn default() -> Self {
        MatrixConfig {
            enabled: true,
            homeserver: String::new(),
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

/// The pacing keys every chat adapter section has: (value, largest allowed), and its timeout.
struct AdapterLimits {
    per_minute: (u32, u32),
    request_timeout: Duration,
}

/// Checks what every chat adapter section shares; `Err` names the key.
fn check_adapter(section: &'static str, token: Option<&Secret>, api_url: &str, limits: AdapterLimits) -> Result<(), (&'static str, String)> {
    let (token_key, url_key) = if section == "matrix" { ("password", "homeserver") } else { ("token", "api_url") };
    let key = |k: &str| -> &'static str {
        const KEYS: &[&str] = &[
            "telegram.token", "telegram.api_url", "telegram.per_minute", "telegram.request_timeout",
            "discord.token", "discord.api_url", "discord.per_minute", "discord.request_timeout",
            "matrix.password", "matrix.homeserver", "matrix.per_minute", "matrix.request_timeout",
        ];
        KEYS.iter().copied().find(|full| full.strip_prefix(section).and_then(|r| r.strip_prefix('.')) == Some(k)).unwrap_or(section)
    };
    if token.is_none_or(|t| t.expose().trim().is_empty()) {
        let message = match section {
            "matrix" => "or matrix.access_token is required (or set CALLBRIDGE_MATRIX_PASSWORD or CALLBRIDGE_MATRIX_ACCESS_TOKEN)".into(),
            _ => format!("is required (or set CALLBRIDGE_{}_TOKEN)", section.to_uppercase()),
        };
        return Err((key(token_key), message));
    }
    if !url::Url::parse(api_url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
        return Err((key(url_key), "must be an http(s) URL".into()));
    }
    let (per_minute, most) = limits.per_minute;
    if !(1..=most).contains(&per_minute) {
        return Err((key("per_minute"), format!("must be 1..={most}")));
    }
    if limits.request_timeout < Duration::from_millis(100) || limits.request_timeout > Duration::from_secs(120) {
        return Err((key("request_timeout"), "must be 100ms..=120s".into()));
    }
    Ok(())
}

/// Most people a room may ever hold; a mesh beyond this is not usable.
pub const MAX_PARTICIPANTS_LIMIT: u32 = 1000;

impl Config {
    /// Reads `path`, or the embedded defaults when `path` is `None`; then applies the
    /// environment and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                Config::parse(&text, path)?
            }
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok());
        config.validate(path.unwrap_or(Path::new("<defaults>")))?;
        Ok(config)
    }

    /// Parses TOML text; errors carry the file name, line, column and key.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let mut message = e.to_string();
            if let Some(span) = e.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                message = format!("line {line}: {}", message.trim_end());
            }
            ConfigError::Parse { path: path.to_owned(), message }
        })
    }

    /// Environment values override the file.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("CALLBRIDGE_API_TOKEN").filter(|v| !v.is_empty()) {
            self.api.token = Some(Secret(v));
        }
        if let Some(v) = get("CALLBRIDGE_STORAGE_URL").filter(|v| !v.is_empty()) {
            self.storage.url = Some(Secret(v));
        }
        if let Some(v) = get("CALLBRIDGE_TELEGRAM_TOKEN").filter(|v| !v.is_empty()) {
            self.telegram.get_or_insert_with(TelegramConfig::default).token = Some(Secret(v));
        }
        if let Some(v) = get("CALLBRIDGE_DISCORD_TOKEN").filter(|v| !v.is_empty()) {
            self.discord.get_or_insert_with(DiscordConfig::default).token = Some(Secret(v));
        }
        if let Some(v) = get("CALLBRIDGE_DISCORD_APPLICATION_ID").filter(|v| !v.is_empty()) {
            self.discord.get_or_insert_with(DiscordConfig::default).application_id = v;
        }
        if let Some(v) = get("CALLBRIDGE_DISCORD_PUBLIC_KEY").filter(|v| !v.is_empty()) {
            self.discord.get_or_insert_with(DiscordConfig::default).public_key = v;
        }
        // The Matrix secrets never turn the adapter on alone: it needs a homeserver and a user.
        if let Some(m) = self.matrix.as_mut() {
            if let Some(v) = get("CALLBRIDGE_MATRIX_PASSWORD").filter(|v| !v.is_empty()) {
                m.password = Some(Secret(v));
            }
            if let Some(v) = get("CALLBRIDGE_MATRIX_ACCESS_TOKEN").filter(|v| !v.is_empty()) {
                m.access_token = Some(Secret(v));
            }
        }
    }

    /// The Discord section when the adapter is on.
    pub fn discord_enabled(&self) -> Option<&DiscordConfig> {
        self.discord.as_ref().filter(|d| d.enabled)
    }

    /// The Matrix section when the adapter is on.
    pub fn matrix_enabled(&self) -> Option<&MatrixConfig> {
        self.matrix.as_ref().filter(|m| m.enabled)
    }

    /// The Telegram section when the adapter is on.
    pub fn telegram_enabled(&self) -> Option<&TelegramConfig> {
        self.telegram.as_ref().filter(|t| t.enabled)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, message: String| ConfigError::Invalid { path: path.to_owned(), key, message };
        if !(1..=MAX_PARTICIPANTS_LIMIT).contains(&self.rooms.max_participants) {
            return Err(invalid("rooms.max_participants", format!("must be 1..={MAX_PARTICIPANTS_LIMIT}")));
        }
        if self.rooms.expire_after < Duration::from_secs(60) {
            return Err(invalid("rooms.expire_after", "must be at least 1m".into()));
        }
        if let Some(url) = &self.server.public_url {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return Err(invalid("server.public_url", "must be an http(s) URL".into())),
            }
        }
        let url = self.storage_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid("storage.url", "must start with sqlite:// or postgres://".into()));
        }
        for s in &self.rooms.ice_servers {
            if s.urls.iter().any(|u| !(u.starts_with("stun:") || u.starts_with("turn:") || u.starts_with("turns:"))) {
                return Err(invalid("rooms.ice_servers", "urls must start with stun:, turn: or turns:".into()));
            }
        }
        if let Some(t) = self.telegram_enabled() {
            let limits = AdapterLimits { per_minute: (t.per_minute, 60), request_timeout: t.request_timeout };
            check_adapter("telegram", t.token.as_ref(), &t.api_url, limits).map_err(|(key, m)| invalid(key, m))?;
            if t.poll_timeout > Duration::from_secs(50) {
                return Err(invalid("telegram.poll_timeout", "must be at most 50s".into()));
            }
        }
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024".into()));
        }
        if let Some(d) = self.discord_enabled() {
            let limits = AdapterLimits { per_minute: (d.per_minute, 120), request_timeout: d.request_timeout };
            check_adapter("discord", d.token.as_ref(), &d.api_url, limits).map_err(|(key, m)| invalid(key, m))?;
            let snowflake = |id: &String| !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
            if !d.guild_ids.iter().all(snowflake) {
                return Err(invalid("discord.guild_ids", "must be numeric guild ids".into()));
            }
            if !d.admin_role_ids.iter().all(snowflake) {
                return Err(invalid("discord.admin_role_ids", "must be numeric role ids".into()));
            }
            if d.application_id.is_empty() || !d.application_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("discord.application_id", "is required: the application's numeric id".into()));
            }
            let needs_key = d.mode == DiscordMode::Interactions || !d.public_key.is_empty();
            if needs_key && (d.public_key.len() != 64 || !d.public_key.bytes().all(|b| b.is_ascii_hexdigit())) {
                return Err(invalid("discord.public_key", "must be the application's 64-character hex public key (required in interactions mode)".into()));
            }
        }
        if let Some(m) = self.matrix_enabled() {
            let limits = AdapterLimits { per_minute: (m.per_minute, 600), request_timeout: m.request_timeout };
            let credential = m.password.as_ref().or(m.access_token.as_ref());
            check_adapter("matrix", credential, &m.homeserver, limits).map_err(|(key, m)| invalid(key, m))?;
            let user_ok = match m.user.strip_prefix('@') {
                Some(full) => full.split_once(':').is_some_and(|(local, server)| !local.is_empty() && !server.is_empty()),
                None => !m.user.is_empty() && !m.user.contains(':'),
            };
            if !user_ok || m.user.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(invalid("matrix.user", "is required: the bot's user id (@name:server) or localpart".into()));
            }
            let prefix_ok = (1..=8).contains(&m.command_prefix.chars().count())
                && !m.command_prefix.chars().any(|c| c.is_whitespace() || c.is_control() || c.is_alphanumeric());
            if !prefix_ok {
                return Err(invalid("matrix.command_prefix", "must be 1 to 8 symbols, such as ! or .".into()));
            }
            let server_ok = |s: &String| !s.is_empty() && !s.contains(['@', '/', ' ']);
            if !m.auto_join_inviters.iter().all(|u| u.starts_with('@') && u.contains(':')) {
                return Err(invalid("matrix.auto_join_inviters", "must be full user ids (@name:server)".into()));
            }
            if !m.auto_join_servers.iter().all(server_ok) {
                return Err(invalid("matrix.auto_join_servers", "must be server names (example.org)".into()));
            }
        }
        Ok(())
    }

    /// Every configured secret, to keep out of logs.
    pub fn secrets(&self) -> Vec<String> {
        let mut all: Vec<String> = [&self.api.token]
            .into_iter()
            .chain(self.telegram.iter().map(|t| &t.token))
            .chain(self.discord.iter().map(|d| &d.token))
            .chain(self.matrix.iter().flat_map(|m| [&m.password, &m.access_token]))
            .flatten()
            .map(|s| s.expose().to_owned())
            .collect();
        // A database URL's password on its own, too.
        if let Some(password) = self.storage.url.as_ref().and_then(|u| url::Url::parse(u.expose()).ok()).and_then(|u| u.password().map(str::to_owned)) {
            all.push(password);
        }
        all
    }

    /// The storage URL in effect.
    pub fn storage_url(&self) -> String {
        match &self.storage.url {
            Some(url) => url.expose().to_owned(),
            None => format!("sqlite://{}/callbridge.db", self.storage.data_dir.display()),
        }
    }

    /// The base URL of links, without a trailing slash.
    pub fn public_url(&self) -> String {
        match &self.server.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.server.listen),
        }
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", Path::new("x.toml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("x.toml"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("lisen"), "{msg}");
    }

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let text = include_str!("../config.example.toml");
        let c = Config::parse(text, Path::new("config.example.toml")).unwrap();
        let d = Config::default();
        assert_eq!(c.server.listen, d.server.listen);
        assert_eq!(c.server.join_rate_per_minute, d.server.join_rate_per_minute);
        assert_eq!(c.rooms.max_participants, d.rooms.max_participants);
        assert_eq!(c.rooms.expire_after, d.rooms.expire_after);
        assert_eq!(c.rooms.presence_grace, d.rooms.presence_grace);
        assert_eq!(c.rooms.knock, d.rooms.knock);
        assert_eq!(c.rooms.default_kind, d.rooms.default_kind);
        assert_eq!(c.rooms.ice_servers, d.rooms.ice_servers);
        assert_eq!(c.storage.data_dir, d.storage.data_dir);
        assert!(c.telegram.is_none(), "the example keeps [telegram] commented out");
        let t = text
            .lines()
            .skip_while(|l| !l.starts_with("# [telegram]"))
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .filter(|l| {
                l.starts_with('[')
                    || l.split_once(" = ").is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            })
            .collect::<Vec<_>>()
            .join("\n");
        let tc = Config::parse(&t, Path::new("config.example.toml")).unwrap().telegram.expect("[telegram] example");
        let td = TelegramConfig::default();
        assert_eq!((tc.api_url, tc.min_interval, tc.per_minute, tc.debounce, tc.poll_timeout, tc.request_timeout, tc.admin_cache),
                   (td.api_url, td.min_interval, td.per_minute, td.debounce, td.poll_timeout, td.request_timeout, td.admin_cache));
        assert!(c.discord.is_none(), "the example keeps [discord] commented out");
        let dc = Config::parse(&t, Path::new("config.example.toml")).unwrap().discord.expect("[discord] example");
        let dd = DiscordConfig::default();
        assert_eq!((dc.api_url, dc.mode, dc.min_interval, dc.per_minute, dc.debounce, dc.request_timeout, dc.guild_ids),
                   (dd.api_url, dd.mode, dd.min_interval, dd.per_minute, dd.debounce, dd.request_timeout, dd.guild_ids));
        assert!(c.matrix.is_none(), "the example keeps [matrix] commented out");
        let mc = Config::parse(&t, Path::new("config.example.toml")).unwrap().matrix.expect("[matrix] example");
        let md = MatrixConfig::default();
        assert_eq!(
            (mc.device_name, mc.command_prefix, mc.admin_power_level, mc.widget, mc.min_interval, mc.per_minute, mc.debounce, mc.request_timeout),
            (md.device_name, md.command_prefix, md.admin_power_level, md.widget, md.min_interval, md.per_minute, md.debounce, md.request_timeout)
        );
    }

    #[test]
    fn matrix_needs_homeserver_user_and_a_credential() {
        let path = Path::new("m.toml");
        let base = "[matrix]\nhomeserver = \"https://hs.example\"\nuser = \"@bot:hs.example\"\n";
        let mut c = Config::parse(base, path).unwrap();
        let err = c.validate(path).unwrap_err().to_string();
        assert!(err.contains("matrix.password") && err.contains("CALLBRIDGE_MATRIX_ACCESS_TOKEN"), "{err}");
        c.apply_env(|k| (k == "CALLBRIDGE_MATRIX_PASSWORD").then(|| "hunter2-secret".into()));
        c.validate(path).unwrap();
        assert!(!c.to_redacted_toml().contains("hunter2-secret"));
        assert!(c.secrets().contains(&"hunter2-secret".to_owned()));
        for (bad, key) in [
            ("user = \"@bot\"", "matrix.user"),
            ("command_prefix = \"go \"", "matrix.command_prefix"),
            ("auto_join_inviters = [\"alice\"]", "matrix.auto_join_inviters"),
            ("homeserver = \"matrix.example\"", "matrix.homeserver"),
        ] {
            let text = format!("[matrix]\nhomeserver = \"https://hs.example\"\nuser = \"bot\"\npassword = \"p\"\n{bad}\n");
            // A later duplicate key is a parse error; build the section from the pieces instead.
            let text = text.lines().filter(|l| l.split('=').next() != bad.split('=').next() || l.contains(bad)).collect::<Vec<_>>().join("\n");
            let c = Config::parse(&text, path).unwrap();
            assert!(c.validate(path).unwrap_err().to_string().contains(key), "{bad}");
        }
        // The environment alone does not turn Matrix on: it needs a homeserver and a user.
        let mut none = Config::default();
        none.apply_env(|k| (k == "CALLBRIDGE_MATRIX_PASSWORD").then(|| "x".into()));
        assert!(none.matrix.is_none());
    }

    #[test]
    fn discord_needs_token_application_and_key() {
        let path = Path::new("x.toml");
        let c = Config::parse("[discord]\nmode = \"interactions\"\ntoken = \"t\"\napplication_id = \"12\"\n", path).unwrap();
        assert!(c.validate(path).unwrap_err().to_string().contains("discord.public_key"));
        let gateway = Config::parse("[discord]\ntoken = \"t\"\napplication_id = \"12\"\n", path).unwrap();
        gateway.validate(path).expect("the gateway needs no public key");
        let key = "ab".repeat(32);
        let mut c = Config::parse(&format!("[discord]\napplication_id = \"12\"\npublic_key = \"{key}\"\n"), path).unwrap();
        assert!(c.validate(path).unwrap_err().to_string().contains("discord.token"));
        c.apply_env(|k| (k == "CALLBRIDGE_DISCORD_TOKEN").then(|| "secret-bot-token".into()));
        c.validate(path).unwrap();
        assert!(!c.to_redacted_toml().contains("secret-bot-token"));
    }

    #[test]
    fn telegram_needs_a_token_from_file_or_env() {
        let path = Path::new("t.toml");
        let mut c = Config::parse("[telegram]\n", path).unwrap();
        assert!(c.validate(path).unwrap_err().to_string().contains("telegram.token"));
        c.apply_env(|k| (k == "CALLBRIDGE_TELEGRAM_TOKEN").then(|| "123:abc".to_string()));
        c.validate(path).unwrap();
        let mut none = Config::default();
        none.apply_env(|k| (k == "CALLBRIDGE_TELEGRAM_TOKEN").then(|| "123:abc".to_string()));
        assert_eq!(none.telegram_enabled().unwrap().token.as_ref().unwrap().expose(), "123:abc");
        assert!(!none.to_redacted_toml().to_string().contains("123:abc"));
    }

    #[test]
    fn secrets_never_print_and_env_wins() {
        let mut c = Config::parse("[api]\ntoken = \"file-secret\"\n", Path::new("c.toml")).unwrap();
        c.apply_env(|k| (k == "CALLBRIDGE_API_TOKEN").then(|| "env-secret".to_string()));
        assert_eq!(c.api.token.as_ref().unwrap().expose(), "env-secret");
        let shown = format!("{} {:?}", c.to_redacted_toml(), c);
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!(human_duration::format(Duration::from_secs(90 * 86_400)), "90d");
        assert_eq!(human_duration::format(Duration::from_millis(1500)), "1500ms");
        let c = Config::parse("[rooms]\nexpire_after = \"2h\"\n", Path::new("c")).unwrap();
        assert_eq!(c.rooms.expire_after, Duration::from_secs(7200));
    }
}
