//! The daemon's configuration: one TOML file, typed, unknown keys refused.
//!
//! Every section is optional and every key has a default, so the daemon runs with no file at
//! all. Secrets can also come from the environment (see [`ENV_SECRETS`]); the environment wins
//! over the file so a secret never has to be written to disk. `Secret` values never print:
//! `Debug` and `Serialize` both show `<redacted>`, which is what `check-config` relies on.
//!
//! This file holds the core's sections. Each chat adapter's section belongs to its crate: the
//! daemon passes the [`Platform`]s it was built with, each reads its own section out of the
//! same text (so its errors name the line too) and its own environment variables, and the
//! result is kept here as opaque [`AdapterSettings`].

use crate::room::{Media, RoomKind};
pub use callbridge_chat::{Secret, human_duration};
use callbridge_chat::settings::describe;
use callbridge_chat::{AdapterSettings, Env, Platform, SettingsError};
use serde::Deserializer as _;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variables that can carry secrets or override the file, with what they set.
/// The core's own; each adapter lists its own in [`Platform::env_vars`].
pub const ENV_SECRETS: &[(&str, &str)] = &[
    ("CALLBRIDGE_API_TOKEN", "[api] token"),
    ("CALLBRIDGE_STORAGE_URL", "[storage] url (may carry a database password)"),
    ("CALLBRIDGE_TURN_SECRET", "[rooms.turn] secret"),
];

/// Errors loading or validating the configuration. Messages name the file, line and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: invalid value for {key}: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
    #[error("{path}: line {line}: invalid value for {key}: {message}")]
    InvalidAt { path: PathBuf, line: usize, key: String, message: String },
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Config {
    /// The web server: join pages, room pages, REST API.
    pub server: ServerConfig,
    /// Where rooms, participants and cards are kept.
    pub storage: StorageConfig,
    /// Defaults and limits for rooms.
    pub rooms: RoomsConfig,
    /// The REST API.
    pub api: ApiConfig,
    /// The selective forwarding unit that carries SFU rooms' media.
    pub sfu: SfuConfig,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
    /// Per-chat policy (`[[chats]]`, `[chat_defaults]`) and gateways (`[[gateways]]`).
    #[serde(flatten)]
    pub policies: crate::policy::Policies,
    /// The chat adapters that are on, each typed and checked by its own crate.
    #[serde(skip)]
    pub adapters: Vec<Box<dyn AdapterSettings>>,
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
    /// Room socket upgrades allowed per client address per minute; 0 turns the limit off.
    pub socket_rate_per_minute: u32,
    /// Take the client address from the last `X-Forwarded-For` hop (behind exactly one
    /// reverse proxy that appends it). `trusted_proxies` is the better rule.
    pub trust_forwarded_for: bool,
    /// The reverse proxies in front of the bridge (CIDRs): from them, the client is the
    /// rightmost `X-Forwarded-For` hop not among them.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Where the other nodes of a deployment reach this one (PostgreSQL storage): room
    /// sockets that hit another node are passed on here when this node is the room's home, and
    /// chat webhooks when it leads that adapter. Default: `http://{listen}`.
    pub internal_url: Option<String>,
}
impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".parse().expect("valid default"),
            public_url: None,
            join_rate_per_minute: 30,
            socket_rate_per_minute: 120,
            trust_forwarded_for: false,
            trusted_proxies: Vec::new(),
            max_body_bytes: 16 * 1024,
            internal_url: None,
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

/// `[rooms.turn]`: a TURN server sharing a secret with the bridge (TURN REST credentials).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnConfig {
    /// `turn:host:port?transport=udp` (and `turns:`) URLs of the server.
    pub urls: Vec<String>,
    /// The server's `static-auth-secret` (or `CALLBRIDGE_TURN_SECRET`).
    #[serde(default)]
    pub secret: Secret,
    /// How long one participant's credentials work (a page that reconnects gets new ones).
    #[serde(with = "human_duration", default = "default_turn_ttl")]
    pub ttl: Duration,
}

fn default_turn_ttl() -> Duration {
    Duration::from_secs(2 * 3600)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsConfig {
    /// Kind of a room when the command or request names none.
    pub default_kind: RoomKind,
    /// How a room's media travels when the command or request does not say: `sfu` (through
    /// this daemon, rooms of 50) or `mesh` (browser to browser, at most 8 people).
    pub media: Media,
    /// Most people in a room at once; unset: 50 in an SFU room, 8 in a mesh.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_participants: Option<u32>,
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
    /// A TURN server that takes expiring credentials (coturn's `use-auth-secret`): each
    /// admitted participant gets their own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn: Option<TurnConfig>,
    /// Calls one chat user may start per hour (`/call`); 0 turns the limit off.
    pub calls_per_user_per_hour: u32,
    /// Calls that may be started in one chat per hour; 0 turns the limit off.
    pub calls_per_chat_per_hour: u32,
    /// How long a ring waits for its answer before it counts as missed.
    #[serde(with = "human_duration")]
    pub ring_timeout: Duration,
    /// The IANA time zone scheduled calls are read and shown in (`/call at 18:00`).
    pub timezone: String,
}
impl RoomsConfig {
    /// `timezone`, read (checked by validation; UTC if it were not).
    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::UTC)
    }

    /// `max_participants`, or the default of `media`.
    pub fn max_participants(&self) -> u32 {
        self.max_participants.unwrap_or(self.media.default_max_participants())
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            default_kind: RoomKind::Video,
            media: Media::Sfu,
            max_participants: None,
            expire_after: Duration::from_secs(90 * 86_400),
            knock: true,
            presence_grace: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(60),
            ice_servers: vec![IceServer {
                urls: vec!["stun:stun.l.google.com:19302".into()],
                username: None,
                credential: None,
            }],
            turn: None,
            calls_per_user_per_hour: 20,
            calls_per_chat_per_hour: 60,
            ring_timeout: Duration::from_secs(60),
            timezone: "UTC".into(),
        }
    }
}

/// `[metrics]`: Prometheus metrics on a listener of their own. No section, no listener.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Where `GET /metrics` is served, e.g. `127.0.0.1:9464`.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Bearer token for `/api/v1`. When unset, the daemon generates one into
    /// `{data_dir}/api-token` (mode 0600) so the CLI on the same machine can use it. Required
    /// with PostgreSQL storage: every node of a deployment must accept the same token.
    pub token: Option<Secret>,
}

/// `url` with its password, if any, replaced by `<redacted>`.
fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("<redacted>"));
            parsed.to_string().replace("%3Credacted%3E", "<redacted>")
        }
        _ => url.to_owned(),
    }
}

/// Why `[api] token` must be set with PostgreSQL.
pub const API_TOKEN_SHARED: &str =
    "is required with PostgreSQL storage, so that every node accepts the same token (set it, or CALLBRIDGE_API_TOKEN)";

/// `[sfu]`: where the SFU receives media, and what it tells browsers to send it to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SfuConfig {
    /// The UDP socket of every SFU room of this node (port 0: any free port).
    pub listen: SocketAddr,
    /// The addresses browsers are told to send media to, as ICE candidates, on the listen
    /// port. Empty: the listen address when it names one, else every address of this host
    /// (loopback included). Behind 1:1 NAT, the public address.
    pub announce: Vec<IpAddr>,
}

/// The SFU's port unless told otherwise: UDP, open it in the firewall.
pub const DEFAULT_SFU_PORT: u16 = 50000;

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig { listen: SocketAddr::from(([0, 0, 0, 0], DEFAULT_SFU_PORT)), announce: Vec::new() }
    }
}

/// The core's own sections.
const CORE_SECTIONS: &[&str] = &["server", "storage", "rooms", "api", "sfu", "metrics", "chats", "chat_defaults", "gateways"];

/// Reads the core's sections of the file and passes over the adapters' (`.0`, their names),
/// which their own crates read; any other key is an error at its line.
struct CoreSections<'a>(&'a [&'a str]);

impl<'de> Visitor<'de> for CoreSections<'_> {
    type Value = Config;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a callbridge configuration")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Config, A::Error> {
        let mut config = Config::default();
        while let Some(key) = map.next_key_seed(SectionName(self.0))? {
            match key.as_str() {
                "server" => config.server = map.next_value()?,
                "storage" => config.storage = map.next_value()?,
                "rooms" => config.rooms = map.next_value()?,
                "api" => config.api = map.next_value()?,
                "sfu" => config.sfu = map.next_value()?,
                "metrics" => config.metrics = map.next_value()?,
                "chats" => config.policies.chats = map.next_value()?,
                "chat_defaults" => config.policies.chat_defaults = Some(map.next_value()?),
                "gateways" => config.policies.gateways = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(config)
    }
}

/// A top-level key, refused while it is read when no one owns it: TOML then points at the
/// key's own line.
struct SectionName<'a>(&'a [&'a str]);

impl<'de> DeserializeSeed<'de> for SectionName<'_> {
    type Value = String;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        let key = String::deserialize(d)?;
        if CORE_SECTIONS.contains(&key.as_str()) || self.0.contains(&key.as_str()) {
            return Ok(key);
        }
        let known = CORE_SECTIONS.iter().chain(self.0).map(|k| format!("`{k}`")).collect::<Vec<_>>();
        Err(serde::de::Error::custom(format!("unknown field `{key}`, expected one of {}", known.join(", "))))
    }
}

/// Most people a room may ever hold; a mesh beyond this is not usable.
pub const MAX_PARTICIPANTS_LIMIT: u32 = 1000;

impl Config {
    /// Reads `path`, or the embedded defaults when `path` is `None`; then applies the
    /// environment and validates. `platforms` are the chat adapters this build has.
    pub fn load(path: Option<&Path>, platforms: &[&dyn Platform]) -> Result<Config, ConfigError> {
        let text = match path {
            Some(path) => {
                Some(std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?)
            }
            None => None,
        };
        let path = path.unwrap_or(Path::new("<defaults>"));
        let config = Config::read(text.as_deref(), path, platforms, &|k| std::env::var(k).ok())?;
        config.validate(path)?;
        Ok(config)
    }

    /// Parses TOML text alone (no environment, not validated); errors carry the file name,
    /// line and key.
    pub fn parse(text: &str, path: &Path, platforms: &[&dyn Platform]) -> Result<Config, ConfigError> {
        Config::read(Some(text), path, platforms, &|_| None)
    }

    /// The file's text (`None`: no file) and the environment, read by the core and by each
    /// platform.
    fn read(text: Option<&str>, path: &Path, platforms: &[&dyn Platform], env: Env<'_>) -> Result<Config, ConfigError> {
        let parse_error = |text: &str, e: toml::de::Error| ConfigError::Parse { path: path.to_owned(), message: describe(text, &e) };
        let mut config = match text {
            Some(text) => {
                let names: Vec<&str> = platforms.iter().map(|p| p.name()).collect();
                let mut config: Config = toml::Deserializer::new(text).deserialize_map(CoreSections(&names)).map_err(|e| parse_error(text, e))?;
                config.policies.locate(text);
                config
            }
            None => Config::default(),
        };
        config.apply_env(env);
        // Effective from here on, so `check-config` shows the size rooms get.
        config.rooms.max_participants = Some(config.rooms.max_participants());
        for platform in platforms {
            let settings = platform.configure(text, env).map_err(|e| match e {
                SettingsError::Parse(e) => parse_error(text.unwrap_or_default(), e),
                SettingsError::Invalid { key, message } => ConfigError::Invalid { path: path.to_owned(), key, message },
            })?;
            config.adapters.extend(settings);
        }
        Ok(config)
    }

    /// Environment values of the core's keys override the file (adapters read their own).
    pub fn apply_env(&mut self, get: Env<'_>) {
        if let Some(v) = get("CALLBRIDGE_API_TOKEN").filter(|v| !v.is_empty()) {
            self.api.token = Some(Secret::new(v));
        }
        if let Some(v) = get("CALLBRIDGE_STORAGE_URL").filter(|v| !v.is_empty()) {
            self.storage.url = Some(Secret::new(v));
        }
        // The TURN secret needs its section's URLs: it never turns TURN on alone.
        if let (Some(turn), Some(v)) = (self.rooms.turn.as_mut(), get("CALLBRIDGE_TURN_SECRET").filter(|v| !v.is_empty())) {
            turn.secret = Secret::new(v);
        }
    }

    /// Checks every value, the adapters' too; the error names the key.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid { path: path.to_owned(), key: key.to_owned(), message };
        let most = self.rooms.media.most_participants();
        if !(1..=most).contains(&self.rooms.max_participants()) {
            let why = match self.rooms.media {
                Media::Mesh => format!("must be 1..={most} while rooms.media is \"mesh\" (a mesh beyond {most} people is not usable)"),
                Media::Sfu => format!("must be 1..={most}"),
            };
            return Err(invalid("rooms.max_participants", why));
        }
        if self.shared_storage() && self.api.token.is_none() {
            return Err(invalid("api.token", API_TOKEN_SHARED.into()));
        }
        if self.rooms.expire_after < Duration::from_secs(60) {
            return Err(invalid("rooms.expire_after", "must be at least 1m".into()));
        }
        if self.rooms.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(invalid("rooms.timezone", "must be an IANA time zone name, such as UTC or Europe/Madrid".into()));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.rooms.ring_timeout) {
            return Err(invalid("rooms.ring_timeout", "must be between 1s and 1h".into()));
        }
        if let Some(url) = &self.server.public_url {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return Err(invalid("server.public_url", "must be an http(s) URL".into())),
            }
        }
        if let Some(url) = &self.server.internal_url {
            match url::Url::parse(url) {
                Ok(u) if u.scheme() == "http" && u.host().is_some() => {}
                _ => {
                    let why = "must be an http:// URL with a host, on the nodes' private network (nodes do not speak TLS to each other)";
                    return Err(invalid("server.internal_url", why.into()));
                }
            }
        }
        let url = self.storage_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid("storage.url", "must start with sqlite:// or postgres://".into()));
        }
        if let Some(turn) = &self.rooms.turn {
            if turn.urls.is_empty() || turn.urls.iter().any(|u| !(u.starts_with("turn:") || u.starts_with("turns:"))) {
                return Err(invalid("rooms.turn.urls", "must be turn: or turns: URLs".into()));
            }
            if turn.secret.is_blank() {
                return Err(invalid("rooms.turn.secret", "is required (or set CALLBRIDGE_TURN_SECRET)".into()));
            }
            if turn.ttl < Duration::from_secs(1) {
                return Err(invalid("rooms.turn.ttl", "must be at least 1s".into()));
            }
        }
        for s in &self.rooms.ice_servers {
            if s.urls.iter().any(|u| !(u.starts_with("stun:") || u.starts_with("turn:") || u.starts_with("turns:"))) {
                return Err(invalid("rooms.ice_servers", "urls must start with stun:, turn: or turns:".into()));
            }
        }
        if let Err(e) = self.policies.validate(&self.rooms) {
            return Err(ConfigError::InvalidAt { path: path.to_owned(), line: e.line, key: e.key, message: e.message });
        }
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024".into()));
        }
        for adapter in &self.adapters {
            adapter.check().map_err(|e| match e {
                SettingsError::Invalid { key, message } => ConfigError::Invalid { path: path.to_owned(), key, message },
                other => ConfigError::Parse { path: path.to_owned(), message: other.to_string() },
            })?;
        }
        // Valid on its own, and still broken for users once deployed.
        let refused = crate::deployment::review(self).into_iter().find(|f| f.severity == crate::deployment::Severity::Refuse);
        if let Some(finding) = refused {
            return Err(invalid(finding.key, finding.message));
        }
        Ok(())
    }

    /// Every configured secret, to keep out of logs.
    pub fn secrets(&self) -> Vec<String> {
        // Every `Secret` of the core's sections (API token, storage URL, TURN secret and
        // credentials), then each adapter's.
        let mut all = callbridge_chat::settings::secrets_in(self);
        all.extend(self.adapters.iter().flat_map(|a| a.secrets()));
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

    /// Where the other nodes reach this one (`[server] internal_url`, default `http://{listen}`).
    pub fn internal_url(&self) -> String {
        match &self.server.internal_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.server.listen),
        }
    }

    /// Whether the storage is PostgreSQL, which several nodes can share.
    pub fn shared_storage(&self) -> bool {
        !self.storage_url().starts_with("sqlite:")
    }

    /// The policy of a chat (see [`crate::policy`]).
    pub fn policy(&self, platform: &str, chat: &str) -> crate::policy::ChatPolicy {
        self.policies.policy(platform, chat, &self.rooms)
    }

    /// What `check-config` adds after the file: each listed chat's effective policy and
    /// gateway, as TOML comments (the output stays a valid file).
    pub fn effective_policies(&self) -> String {
        let mut out = String::new();
        for (platform, chat) in self.policies.listed() {
            let policy = self.policy(&platform, &chat);
            let gateway = self.policies.gateway_of(&platform, &chat).map(|g| format!(" (gateway {:?})", g.name.get_ref())).unwrap_or_default();
            let keys = toml::to_string(&policy).unwrap_or_default().lines().collect::<Vec<_>>().join(", ");
            out.push_str(&format!("# {platform} {chat}{gateway}: {keys}\n"));
        }
        let fallback = toml::to_string(&self.policy("", "")).unwrap_or_default().lines().collect::<Vec<_>>().join(", ");
        out.push_str(&format!("# any other chat: {fallback}\n"));
        out
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        let rendered = toml::Table::try_from(self).map(|mut table| {
            for adapter in &self.adapters {
                table.insert(adapter.platform().to_owned(), adapter.to_redacted_toml());
            }
            // The effective public_url, and the storage URL with only its password hidden:
            // which database, as whom, is what an operator checks.
            if let Some(server) = table.get_mut("server").and_then(toml::Value::as_table_mut) {
                server.insert("public_url".into(), self.public_url().into());
            }
            if let Some(storage) = table.get_mut("storage").and_then(toml::Value::as_table_mut) {
                storage.insert("url".into(), redact_password(&self.storage_url()).into());
            }
            table
        });
        rendered.and_then(|t| toml::to_string_pretty(&t)).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use callbridge_chat::{BuildContext, BuildError, ChatAdapter, Section, invalid};
    use std::sync::Arc;

    callbridge_chat::adapter_section! {
        /// A section of a made-up platform, to test the plumbing every adapter goes through.
        pub struct Demo {
            pub token: Option<Secret>,
            pub level: u32,
        }
    }

    impl Default for Demo {
        fn default() -> Self {
            let second = Duration::from_secs(1);
            Demo { enabled: true, token: None, level: 0, min_interval: second, per_minute: 10, debounce: second, request_timeout: second }
        }
    }

    impl Section for Demo {
        const NAME: &'static str = "demo";
        const ENV: &'static [(&'static str, &'static str)] = &[("DEMO_TOKEN", "[demo] token")];
        const MOST_PER_MINUTE: u32 = 20;
        fn apply_env(section: Option<Self>, env: Env<'_>) -> Result<Option<Self>, SettingsError> {
            let mut section = section;
            if let Some(v) = env("DEMO_TOKEN") {
                section.get_or_insert_with(Demo::default).token = Some(Secret::new(v));
            }
            Ok(section)
        }
        fn validate(&self) -> Result<(), SettingsError> {
            if self.level > 3 { Err(invalid("demo.level", "must be 0..=3")) } else { Ok(()) }
        }
        fn build(&self, _: &BuildContext) -> Result<Arc<dyn ChatAdapter>, BuildError> {
            Err("not a real platform".into())
        }
    }

    fn demo() -> [&'static dyn Platform; 1] {
        [callbridge_chat::platform::<Demo>()]
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", Path::new("x.toml"), &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("x.toml"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("lisen"), "{msg}");
    }

    #[test]
    fn adapter_sections_are_read_by_their_platform_and_nothing_else_passes() {
        let path = Path::new("d.toml");
        let text = "[server]\nlisten = \"127.0.0.1:1\"\n\n[demo]\ntoken = \"file-secret\"\nlevel = 2\n";
        let c = Config::parse(text, path, &demo()).unwrap();
        assert_eq!(c.adapters.len(), 1);
        assert_eq!(c.secrets(), vec!["file-secret".to_owned()]);
        let shown = c.to_redacted_toml();
        assert!(shown.contains("[demo]") && shown.contains("level = 2") && !shown.contains("file-secret"), "{shown}");
        // Without its platform the section is an unknown key, at its line.
        let err = Config::parse(text, path, &[]).unwrap_err().to_string();
        assert!(err.contains("line 4") && err.contains("unknown field `demo`"), "{err}");
        // The platform's own errors name the line and the full key.
        let err = Config::parse("[demo]\nlevl = 2\n", path, &demo()).unwrap_err().to_string();
        assert!(err.contains("d.toml") && err.contains("line 2: demo.levl"), "{err}");
        let c = Config::parse("[demo]\nlevel = 9\n", path, &demo()).unwrap();
        assert!(c.validate(path).unwrap_err().to_string().contains("invalid value for demo.level"));
        let c = Config::parse("[demo]\nper_minute = 21\n", path, &demo()).unwrap();
        assert!(c.validate(path).unwrap_err().to_string().contains("invalid value for demo.per_minute"), "the shared keys are checked");
        let c = Config::parse("[demo]\nenabled = false\n", path, &demo()).unwrap();
        assert!(c.adapters.is_empty(), "enabled = false keeps the adapter off");
        // The environment alone can turn a platform on.
        let c = Config::read(None, path, &demo(), &|k| (k == "DEMO_TOKEN").then(|| "env-secret".into())).unwrap();
        assert_eq!(c.secrets(), vec!["env-secret".to_owned()]);
        assert!(!format!("{} {:?}", c.to_redacted_toml(), c).contains("env-secret"));
    }

    /// Every `# OPTIONAL (default V; BOUND)` comment of the example, with the key it documents:
    /// (section, key, default text, bound text, the value on the key's line, whether that line
    /// is the default: uncommented, or in a section the example leaves commented out whole).
    fn documented(example: &str) -> Vec<(String, String, String, Option<String>, String, bool)> {
        let mut found = Vec::new();
        let (mut section, mut comment) = (String::new(), None::<(String, Option<String>)>);
        let mut section_commented = false;
        for line in example.lines() {
            let bare = line.trim_start_matches('#').trim();
            if bare.starts_with('[') && bare.ends_with(']') && !bare.contains(' ') {
                section = bare.trim_matches(|c| c == '[' || c == ']').to_owned();
                section_commented = line.starts_with('#');
                comment = None;
            } else if let Some(rest) = bare.strip_prefix("OPTIONAL (default ") {
                let inside = rest.split_once("):").map_or(rest, |(inside, _)| inside);
                let (default, bound) = match inside.split_once("; ") {
                    Some((d, b)) => (d.to_owned(), Some(b.to_owned())),
                    None => (inside.to_owned(), None),
                };
                comment = Some((default, bound));
            } else if let Some((key, value)) = bare.split_once(" = ")
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                && let Some((default, bound)) = comment.take()
            {
                let is_default = !line.starts_with('#') || section_commented;
                found.push((section.clone(), key.to_owned(), default, bound, value.to_owned(), is_default));
            }
        }
        found
    }

    /// One step past a documented bound: `n` ± 1 of its unit (an integer, `ms` or `s`).
    fn past(value: &str, up: bool) -> String {
        let v = value.trim_matches('"');
        let (digits, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
        let (n, unit): (i64, &str) = match unit {
            "" => (digits.parse().unwrap(), ""),
            "ms" => (digits.parse().unwrap(), "ms"),
            other => (humantime::parse_duration(&format!("{digits}{other}")).unwrap().as_secs() as i64, "s"),
        };
        let n = if up { n + 1 } else { n - 1 };
        if unit.is_empty() { n.to_string() } else { format!("\"{n}{unit}\"") }
    }

    /// The example states every enforced bound and every literal default, and the code agrees:
    /// a value on each bound is taken, one step past it is refused naming the key, and each
    /// default written as a value is the value on the key's line (which the tests below and
    /// each adapter's check against the code's defaults).
    #[test]
    fn the_example_states_every_bound_and_default_the_code_enforces() {
        let example = include_str!("../config.example.toml");
        let platforms = crate::daemon::platforms();
        // What each section needs besides the key under test to be valid.
        let needs = |section: &str| match section {
            "telegram" => "token = \"1:t\"\n",
            "discord" => "token = \"t\"\napplication_id = \"12\"\n",
            "matrix" => "homeserver = \"http://127.0.0.1:1\"\nuser = \"@b:x\"\npassword = \"p\"\n",
            "rooms.turn" => "urls = [\"turn:t.example.org\"]\nsecret = \"s\"\n",
            _ => "",
        };
        let check = |section: &str, key: &str, value: &str| {
            let path = Path::new("e.toml");
            let text = format!("[{section}]\n{}{key} = {value}\n", needs(section));
            Config::parse(&text, path, &platforms).and_then(|c| c.validate(path)).map_err(|e| e.to_string())
        };
        let entries = documented(example);
        let mut bounds = 0;
        for (section, key, default, bound, value, is_default) in &entries {
            let full = format!("{section}.{key}");
            // A default written as a TOML value is the value on the key's line (a commented
            // line in a section that is on shows an example instead: `public_url`, `url`).
            if *is_default && let Ok(literal) = toml::from_str::<toml::Table>(&format!("v = {default}")) {
                let line: toml::Table = toml::from_str(&format!("v = {value}")).unwrap();
                assert_eq!(literal, line, "{full}: the comment's default differs from the line's value");
            }
            let Some(bound) = bound else { continue };
            let (low, high) = if let Some(n) = bound.strip_prefix("at most ") {
                (None, Some(n))
            } else if let Some(n) = bound.strip_prefix("at least ") {
                (Some(n), None)
            } else {
                let (l, h) = bound.split_once("..=").unwrap_or_else(|| panic!("{full}: unreadable bound {bound}"));
                (Some(l), Some(h))
            };
            for (edge, up) in low.map(|l| (l, false)).into_iter().chain(high.map(|h| (h, true))) {
                bounds += 1;
                assert!(check(section, key, edge).is_ok(), "{full} = {edge} is documented as allowed: {:?}", check(section, key, edge));
                let beyond = past(edge, up);
                let refused = check(section, key, &beyond).expect_err(&format!("{full} = {beyond} is past the documented {bound}"));
                assert!(refused.contains(&full), "{full} = {beyond}: {refused}");
            }
        }
        assert!(entries.len() > 40 && bounds >= 14, "{} documented keys, {bounds} bounds read", entries.len());
    }

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let text = include_str!("../config.example.toml");
        let c = Config::parse(text, Path::new("config.example.toml"), &[]).unwrap();
        let d = Config::default();
        assert_eq!(c.server.listen, d.server.listen);
        assert_eq!(c.server.join_rate_per_minute, d.server.join_rate_per_minute);
        assert_eq!(c.server.socket_rate_per_minute, d.server.socket_rate_per_minute);
        assert_eq!(c.server.trusted_proxies, d.server.trusted_proxies);
        assert_eq!(c.rooms.max_participants(), d.rooms.max_participants());
        assert_eq!(c.rooms.expire_after, d.rooms.expire_after);
        assert_eq!(c.rooms.ring_timeout, d.rooms.ring_timeout);
        assert_eq!(c.rooms.timezone, d.rooms.timezone);
        assert_eq!(c.rooms.presence_grace, d.rooms.presence_grace);
        assert_eq!(c.rooms.knock, d.rooms.knock);
        assert_eq!(c.rooms.default_kind, d.rooms.default_kind);
        assert_eq!(c.rooms.ice_servers, d.rooms.ice_servers);
        assert_eq!((c.rooms.calls_per_user_per_hour, c.rooms.calls_per_chat_per_hour), (d.rooms.calls_per_user_per_hour, d.rooms.calls_per_chat_per_hour));
        assert_eq!(c.storage.data_dir, d.storage.data_dir);
        assert!(c.adapters.is_empty(), "the example keeps every adapter commented out");
        // Each adapter crate checks its own commented section against its defaults.
    }

    #[test]
    fn secrets_never_print_and_env_wins() {
        let mut c = Config::parse("[api]\ntoken = \"file-secret\"\n", Path::new("c.toml"), &[]).unwrap();
        c.apply_env(&|k| (k == "CALLBRIDGE_API_TOKEN").then(|| "env-secret".to_string()));
        assert_eq!(c.api.token.as_ref().unwrap().expose(), "env-secret");
        let shown = format!("{} {:?}", c.to_redacted_toml(), c);
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn room_sizes_follow_the_media() {
        let path = Path::new("m.toml");
        let size = |text: &str| {
            let c = Config::parse(text, path, &[])?;
            c.validate(path).map(|()| c.rooms.max_participants())
        };
        assert_eq!(size("").unwrap(), 50);
        assert_eq!(size("[rooms]\nmedia = \"mesh\"\n").unwrap(), 8);
        assert_eq!(size("[rooms]\nmedia = \"sfu\"\nmax_participants = 200\n").unwrap(), 200);
        let msg = size("[rooms]\nmedia = \"mesh\"\nmax_participants = 9\n").unwrap_err().to_string();
        assert!(msg.contains("m.toml") && msg.contains("rooms.max_participants") && msg.contains("mesh"), "{msg}");
        let msg = size("[rooms]\nmedia = \"p2p\"\n").unwrap_err().to_string();
        assert!(msg.contains("line 2") && msg.contains("sfu") && msg.contains("mesh"), "{msg}");
        let msg = size("[sfu]\nlisten = \"nowhere\"\n").unwrap_err().to_string();
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn several_nodes_need_a_shared_token_and_an_internal_url_with_a_host() {
        let path = Path::new("n.toml");
        let check = |text: &str| Config::parse(text, path, &[]).and_then(|c| c.validate(path));
        let pg = "[storage]\nurl = \"postgres://cb@db/cb\"\n";
        let msg = check(pg).unwrap_err().to_string();
        assert!(msg.contains("n.toml") && msg.contains("api.token") && msg.contains("PostgreSQL"), "{msg}");
        check(&format!("{pg}[api]\ntoken = \"t\"\n")).unwrap();
        let msg = check("[server]\ninternal_url = \"10.0.0.5:8080\"\n").unwrap_err().to_string();
        assert!(msg.contains("server.internal_url"), "{msg}");
        check("[server]\ninternal_url = \"http://10.0.0.5:8080\"\n").unwrap();
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!(human_duration::format(Duration::from_secs(90 * 86_400)), "90d");
        assert_eq!(human_duration::format(Duration::from_millis(1500)), "1500ms");
        let c = Config::parse("[rooms]\nexpire_after = \"2h\"\n", Path::new("c"), &[]).unwrap();
        assert_eq!(c.rooms.expire_after, Duration::from_secs(7200));
    }
}
