//! A Discord double on loopback, following Discord's documented payloads closely enough for
//! the adapter and serenity's gateway client: the gateway (`GET /gateway`, then a websocket:
//! HELLO, IDENTIFY → READY, heartbeats, INTERACTION_CREATE dispatches), interaction callbacks,
//! bulk command registration, channel messages (create, edit) with embeds and
//! components, the interaction webhook (edit the original response, follow-ups), bot-token
//! auth, and Discord's rate limits for messages, measured on arrival with no tolerance: 5 per
//! 5 s in a channel (429 with `X-RateLimit-Scope: user` and the bucket) and 50 a second for the
//! bot (429 with `X-RateLimit-Global`), each `{"retry_after": …}`. Webhook edits and follow-ups
//! need an interaction token that is live (15 minutes) and, through the gateway, an initial
//! answer first. With a fault plan (`set_faults`) it
//! also fails a share of message calls with 429s, 5xx and stalls. It also signs interactions with a
//! fixed Ed25519 key, as Discord does when it POSTs them to the bot.
#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::{Json, Router};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BOT_TOKEN: &str = "MTAwMDAwMDAwMDAwMDAwMDAx.test.discord-bot-token";
pub const APP_ID: &str = "1000000000000000001";
pub const GUILD: &str = "5000000000000000005";
const SIGNING_SEED: [u8; 32] = [7; 32];
/// Discord's limit on messages in one channel: 5 per 5 s.
const CHANNEL_LIMIT: usize = 5;
const CHANNEL_WINDOW: Duration = Duration::from_secs(5);
/// Discord's global limit: 50 requests a second per bot.
const GLOBAL_PER_SECOND: usize = 50;
/// An interaction token works for 15 minutes.
const TOKEN_LIFE: Duration = Duration::from_secs(15 * 60);

/// A message as the channel shows it now.
#[derive(Debug, Clone)]
pub struct Posted {
    pub channel: String,
    pub body: Value,
    pub edits: usize,
}

#[derive(Default)]
struct State {
    /// `METHOD /path` of each request that came over TLS, as `discord.com`.
    tls_calls: Vec<String>,
    messages: HashMap<String, Posted>,
    next_id: u64,
    commands: HashMap<String, Value>,
    originals: HashMap<String, Value>,
    followups: HashMap<String, Vec<Value>>,
    channel_calls: HashMap<String, VecDeque<Instant>>,
    /// The bot's REST calls within the last second (interaction answers aside).
    bot_calls: VecDeque<Instant>,
    rate_limited: usize,
    mention_violations: usize,
    unauthorized: usize,
    faults: Option<Faults>,
    fault_tick: usize,
    faults_injected: HashMap<&'static str, usize>,
    /// channel → no call before this (an injected 429's `retry_after`).
    blocked_until: HashMap<String, Instant>,
    /// The next message call gets a global 429 with this `retry_after` (`limit_globally`).
    global_next: Option<f64>,
    /// No message call into any channel before this (an injected global 429).
    global_until: Option<Instant>,
    retry_after_violations: usize,
    /// Until then, every edit of a message is refused as Discord refuses edits of messages
    /// older than an hour once their budget is spent (400, code 30046).
    old_edits_refused_until: Option<Instant>,
    /// Interaction id → the answer the bot POSTed to its callback (gateway mode).
    callbacks: HashMap<String, Value>,
    /// The live gateway sessions' outboxes.
    sessions: Vec<tokio::sync::mpsc::UnboundedSender<Value>>,
    identified: usize,
    /// DM channel id → its recipient.
    dms: HashMap<String, String>,
    /// Users who share no server with the bot or closed their DMs: a message to them is
    /// refused with 50007, as Discord does.
    closed_dms: std::collections::HashSet<String>,
    /// Payloads Discord would refuse (50035 Invalid Form Body, 50109 invalid JSON), each with
    /// why: a test that sees any has found a bug.
    malformed: Vec<String>,
    /// Interaction id → when the gateway delivered it: its first answer is due within 3 s.
    dispatched: HashMap<String, Instant>,
    /// Interaction tokens made this much older than they are (`age_interactions`).
    aged: Duration,
}

/// A fault plan: every `every`-th message call fails, in turn with a 429 (`retry_after`), a
/// 502, or a stall: no answer for `stall`, then 504 without carrying the call out.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub every: usize,
    pub retry_after: f64,
    pub stall: Duration,
}

#[derive(Clone)]
pub struct DiscordDouble {
    state: Arc<Mutex<State>>,
    pub url: String,
    /// Where the double also answers over TLS, as `discord.com` (see [`DiscordDouble::client`]).
    tls_addr: std::net::SocketAddr,
    /// Its certificate for `discord.com`, self-signed, DER.
    tls_cert: Arc<Vec<u8>>,
}

/// The application's public key (hex), as the Developer Portal shows it.
pub fn public_key_hex() -> String {
    hex::encode(SigningKey::from_bytes(&SIGNING_SEED).verifying_key().to_bytes())
}

/// Discord's signature headers for `body` sent at `timestamp` (Unix seconds).
pub fn sign(body: &[u8], timestamp: u64) -> (String, String) {
    let ts = timestamp.to_string();
    let signature = SigningKey::from_bytes(&SIGNING_SEED).sign(&[ts.as_bytes(), body].concat());
    (hex::encode(signature.to_bytes()), ts)
}

/// POSTs an interaction to the daemon's endpoint at `base`, signed like Discord (or with the
/// given signature and timestamp); returns the status and the JSON answer.
pub async fn post_interaction(http: &reqwest::Client, base: &str, body: &Value, signature: Option<(String, String)>) -> (StatusCode, Value) {
    let raw = serde_json::to_vec(body).unwrap();
    let (sig, ts) = signature.unwrap_or_else(|| sign(&raw, now_unix()));
    let r = http
        .post(format!("{base}/discord/interactions"))
        .header("content-type", "application/json")
        .header("x-signature-ed25519", sig)
        .header("x-signature-timestamp", ts)
        .body(raw)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let answer: Value = r.json().await.unwrap_or(Value::Null);
    // What the bot answers at once must be a message Discord takes.
    if let Some(why) = answer.get("data").and_then(payload_refusal) {
        panic!("Discord would refuse this interaction response ({why}): {answer}");
    }
    (status, answer)
}

/// Why Discord would refuse a message payload (create, edit, follow-up or interaction
/// response data), by its documented limits: content 2,000 characters; at most 10 embeds, each
/// title 256, description 4,096, all embeds 6,000 together; at most 5 action rows of at most 5
/// buttons; a button's label 80 and `custom_id` 100 characters; a link button has a `url` and
/// no `custom_id`, any other button a `custom_id`.
pub fn payload_refusal(body: &Value) -> Option<String> {
    let chars = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    if chars(&body["content"]) > 2000 {
        return Some("content: Must be 2000 or fewer in length.".into());
    }
    let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
    if embeds.len() > 10 {
        return Some("embeds: Must be 10 or fewer in length.".into());
    }
    let mut total = 0;
    for (i, e) in embeds.iter().enumerate() {
        if chars(&e["title"]) > 256 {
            return Some(format!("embeds.{i}.title: Must be 256 or fewer in length."));
        }
        if chars(&e["description"]) > 4096 {
            return Some(format!("embeds.{i}.description: Must be 4096 or fewer in length."));
        }
        total += chars(&e["title"]) + chars(&e["description"]);
    }
    if total > 6000 {
        return Some("embeds: Embed size exceeds maximum size of 6000".into());
    }
    let rows = body["components"].as_array().cloned().unwrap_or_default();
    if rows.len() > 5 {
        return Some("components: Must be 5 or fewer in length.".into());
    }
    for (r, row) in rows.iter().enumerate() {
        let buttons = row["components"].as_array().cloned().unwrap_or_default();
        if row["type"] != 1 || buttons.is_empty() || buttons.len() > 5 {
            return Some(format!("components.{r}: an action row holds 1 to 5 components"));
        }
        for (b, button) in buttons.iter().enumerate() {
            let at = format!("components.{r}.components.{b}");
            if chars(&button["label"]) > 80 || chars(&button["label"]) == 0 {
                return Some(format!("{at}.label: Must be between 1 and 80 in length."));
            }
            let link = button["style"] == 5;
            if link != button["url"].is_string() || link == button["custom_id"].is_string() {
                return Some(format!("{at}: a link button has a url and no custom_id, other buttons a custom_id"));
            }
            if chars(&button["custom_id"]) > 100 {
                return Some(format!("{at}.custom_id: Must be 100 or fewer in length."));
            }
        }
    }
    None
}

/// Refuses a payload Discord would refuse, remembering why.
fn refuse_malformed(st: &mut State, body: &Value) -> Option<Response> {
    let why = payload_refusal(body)?;
    st.malformed.push(why.clone());
    Some((StatusCode::BAD_REQUEST, Json(json!({"code": 50035, "message": "Invalid Form Body", "errors": why}))).into_response())
}

fn now_millis() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn user(id: &str, name: &str) -> Value {
    json!({"id": id, "username": name.to_lowercase().replace(' ', "_"), "global_name": name, "discriminator": "0", "avatar": null})
}

fn base(kind: u8, id: &str, user_id: &str, name: &str, permissions: &str, roles: &[&str]) -> Value {
    json!({"type": kind, "id": id, "application_id": APP_ID, "token": format!("itoken-{id}-{}", now_millis()), "version": 1,
        "locale": "en-US", "guild_id": GUILD, "channel_id": CHANNEL, "entitlements": [], "attachment_size_limit": 10485760,
        "app_permissions": "2251799813685247",
        "member": {"user": user(user_id, name), "nick": null, "roles": roles, "joined_at": "2024-01-01T00:00:00+00:00",
            "deaf": false, "mute": false, "flags": 0, "permissions": permissions}})
}

pub const CHANNEL: &str = "3000000000000000003";

/// A slash command interaction (type 2) as Discord sends it.
pub fn command(id: &str, name: &str, options: Value, user_id: &str, user_name: &str, permissions: &str) -> Value {
    let mut i = base(2, id, user_id, user_name, permissions, &[]);
    i["data"] = json!({"id": "1100", "name": name, "type": 1, "options": options});
    i
}

/// A button press (type 3) on `message_id` in the bot's DM `channel` with the user: no guild,
/// no member, the user itself.
pub fn press_in_dm(id: &str, custom_id: &str, channel: &str, message_id: &str, user_id: &str, user_name: &str) -> Value {
    let mut i = press(id, custom_id, message_id, user_id, user_name, "0", &[]);
    let map = i.as_object_mut().unwrap();
    map.remove("member");
    map.remove("guild_id");
    i["user"] = user(user_id, user_name);
    i["channel_id"] = json!(channel);
    i["message"]["channel_id"] = json!(channel);
    i
}

/// A button press (type 3) on `message_id`.
pub fn press(id: &str, custom_id: &str, message_id: &str, user_id: &str, user_name: &str, permissions: &str, roles: &[&str]) -> Value {
    let mut i = base(3, id, user_id, user_name, permissions, roles);
    i["data"] = json!({"custom_id": custom_id, "component_type": 2});
    i["message"] = json!({"id": message_id, "channel_id": CHANNEL, "content": "", "author": user(APP_ID, "Callbridge"),
        "timestamp": "2024-01-01T00:00:00.000000+00:00", "edited_timestamp": null, "tts": false, "mention_everyone": false,
        "mentions": [], "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0, "flags": 0, "components": []});
    i
}

impl DiscordDouble {
    pub async fn start() -> DiscordDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["discord.com".to_owned()]).unwrap();
        let double = DiscordDouble {
            state: Arc::default(),
            url: format!("http://{}", listener.local_addr().unwrap()),
            tls_addr: tls_listener.local_addr().unwrap(),
            tls_cert: Arc::new(certified.cert.der().to_vec()),
        };
        let app = Router::new()
            .route("/api/v10/applications/{app}/commands", put(register))
            .route("/api/v10/applications/{app}/guilds/{guild}/commands", put(register_guild))
            .route("/api/v10/channels/{channel}/messages", post(create_message))
            .route("/api/v10/channels/{channel}/messages/{message}", patch(edit_message))
            .route("/api/v10/webhooks/{app}/{token}/messages/@original", patch(edit_original))
            .route("/api/v10/webhooks/{app}/{token}", post(followup))
            .route("/api/v10/interactions/{id}/{token}/callback", post(callback))
            .route("/api/v10/users/@me", get(current_user))
            .route("/api/v10/users/@me/channels", post(open_dm))
            .route("/api/v10/applications/@me", get(current_application))
            .route("/api/v10/gateway", get(gateway_url))
            .route("/api/v10/gateway/bot", get(gateway_url))
            .route("/gateway", get(gateway))
            .with_state(double.clone());
        let tls_app = app.clone().layer(axum::middleware::from_fn_with_state(double.clone(), note_tls));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let tls = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        let tls_listener = TlsListener { tcp: tls_listener, acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls)) };
        tokio::spawn(async move { axum::serve(tls_listener, tls_app).await.unwrap() });
        double
    }

    /// An HTTP client for which `https://discord.com` is this double: it resolves the name to
    /// the double's TLS port and trusts its certificate. Given to the adapter, it lets the bot
    /// run with Discord's real base URL and serenity's own rate limiter, as in production.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .user_agent(callbridge_discord::rest::USER_AGENT)
            .resolve("discord.com", self.tls_addr)
            .add_root_certificate(reqwest::Certificate::from_der(&self.tls_cert).unwrap())
            .build()
            .unwrap()
    }

    /// `METHOD /path` of each request that reached the double over TLS, as `discord.com`.
    pub fn tls_calls(&self) -> Vec<String> {
        self.lock().tls_calls.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `user` cannot be written to privately (50007).
    pub fn close_dms(&self, user: &str) {
        self.lock().closed_dms.insert(user.to_owned());
    }

    /// The DM channel the bot opened with `user`, if any.
    pub fn dm_with(&self, user: &str) -> Option<String> {
        self.lock().dms.iter().find(|(_, u)| *u == user).map(|(c, _)| c.clone())
    }

    pub fn commands(&self) -> HashMap<String, Value> {
        self.lock().commands.clone()
    }
    /// Messages in a channel, oldest first: (id, message).
    pub fn messages_in(&self, channel: &str) -> Vec<(String, Posted)> {
        let st = self.lock();
        let mut v: Vec<_> = st.messages.iter().filter(|(_, m)| m.channel == channel).map(|(id, m)| (id.clone(), m.clone())).collect();
        v.sort_by_key(|(id, _)| id.parse::<u64>().unwrap_or(0));
        v
    }
    /// The card: the message with a Join link button (or, once ended, an attendance embed).
    pub fn card(&self, channel: &str) -> Option<(String, Posted)> {
        self.messages_in(channel).into_iter().find(|(_, m)| m.body["embeds"].is_array())
    }
    pub fn original(&self, token: &str) -> Option<Value> {
        self.lock().originals.get(token).cloned()
    }
    pub fn followups(&self, token: &str) -> Vec<Value> {
        self.lock().followups.get(token).cloned().unwrap_or_default()
    }
    /// Every payload the double refused as Discord would, with why.
    pub fn malformed(&self) -> Vec<String> {
        self.lock().malformed.clone()
    }
    /// 429s the double sent because the bot broke the channel limit.
    pub fn rate_limited(&self) -> usize {
        self.lock().rate_limited
    }
    /// Messages sent without empty `allowed_mentions`.
    pub fn mention_violations(&self) -> usize {
        self.lock().mention_violations
    }
    pub fn unauthorized(&self) -> usize {
        self.lock().unauthorized
    }
    /// Gateway sessions that identified with the bot token.
    pub fn identified(&self) -> usize {
        self.lock().identified
    }
    /// Sends an INTERACTION_CREATE dispatch to every gateway session; false when none is up.
    pub fn dispatch(&self, interaction: &Value) -> bool {
        let mut st = self.lock();
        st.sessions.retain(|s| !s.is_closed());
        let sent = st.sessions.iter().all(|s| s.send(interaction.clone()).is_ok()) && !st.sessions.is_empty();
        if sent && let Some(id) = interaction["id"].as_str() {
            st.dispatched.insert(id.to_owned(), Instant::now());
        }
        sent
    }
    /// Takes `interaction` as delivered through the gateway now, without a session to carry it.
    pub fn mark_dispatched(&self, interaction: &Value) {
        self.lock().dispatched.insert(interaction["id"].as_str().unwrap().to_owned(), Instant::now());
    }
    /// Makes every interaction token `by` older (to see what the bot does past 15 minutes).
    pub fn age_interactions(&self, by: Duration) {
        self.lock().aged += by;
    }
    /// The answer the bot gave an interaction through its callback.
    pub fn callback(&self, interaction_id: &str) -> Option<Value> {
        self.lock().callbacks.get(interaction_id).cloned()
    }
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = Some(faults);
    }
    pub fn faults_injected(&self, kind: &str) -> usize {
        self.lock().faults_injected.get(kind).copied().unwrap_or(0)
    }
    /// The next message call, into whatever channel, gets a global 429 (`X-RateLimit-Global`,
    /// `"global": true`) with `retry_after`; until then no message call may reach any channel.
    pub fn limit_globally(&self, retry_after: f64) {
        self.lock().global_next = Some(retry_after);
    }
    /// Refuses every message edit for `how_long` with Discord's 30046 ("Maximum number of
    /// edits to messages older than 1 hour reached"); `faults_injected("30046")` counts them.
    pub fn refuse_old_message_edits(&self, how_long: Duration) {
        self.lock().old_edits_refused_until = Some(Instant::now() + how_long);
    }
    /// Calls into a channel before an injected 429's `retry_after` had passed.
    pub fn retry_after_violations(&self) -> usize {
        self.lock().retry_after_violations
    }
}

fn message_json(id: &str, channel: &str, body: &Value) -> Value {
    json!({"id": id, "channel_id": channel, "author": user(APP_ID, "Callbridge"), "content": body["content"].as_str().unwrap_or(""),
        "timestamp": "2024-01-01T00:00:00.000000+00:00", "edited_timestamp": null, "tts": false, "mention_everyone": false,
        "mentions": [], "mention_roles": [], "attachments": [], "embeds": body.get("embeds").cloned().unwrap_or(json!([])),
        "pinned": false, "type": 0, "flags": body["flags"].as_u64().unwrap_or(0), "components": body.get("components").cloned().unwrap_or(json!([]))})
}

fn authorized(d: &DiscordDouble, headers: &HeaderMap) -> bool {
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bot {BOT_TOKEN}"));
    if !ok {
        d.lock().unauthorized += 1;
    }
    ok
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"message": "401: Unauthorized", "code": 0}))).into_response()
}

fn check_mentions(st: &mut State, body: &Value) {
    if body["allowed_mentions"] != json!({"parse": []}) {
        st.mention_violations += 1;
    }
}

/// Discord's per-channel message limit, with its headers; `Err` is the 429.
// The error is the 429 answered as is; boxing it would only move it.
#[allow(clippy::result_large_err)]
fn channel_budget(st: &mut State, channel: &str) -> Result<HeaderMap, Response> {
    let now = Instant::now();
    global_budget(st, now)?;
    let calls = st.channel_calls.entry(channel.to_owned()).or_default();
    while calls.front().is_some_and(|t| now.duration_since(*t) >= CHANNEL_WINDOW) {
        calls.pop_front();
    }
    let reset_after = |calls: &VecDeque<Instant>| calls.front().map_or(0.0, |t| (CHANNEL_WINDOW - now.duration_since(*t)).as_secs_f64());
    if calls.len() >= CHANNEL_LIMIT {
        st.rate_limited += 1;
        let retry = reset_after(calls);
        let mut h = HeaderMap::new();
        h.insert("retry-after", format!("{retry:.3}").parse().unwrap());
        h.insert("x-ratelimit-limit", CHANNEL_LIMIT.to_string().parse().unwrap());
        h.insert("x-ratelimit-remaining", "0".parse().unwrap());
        h.insert("x-ratelimit-reset-after", format!("{retry:.3}").parse().unwrap());
        h.insert("x-ratelimit-bucket", format!("channel-{channel}").parse().unwrap());
        h.insert("x-ratelimit-scope", "user".parse().unwrap());
        return Err((StatusCode::TOO_MANY_REQUESTS, h, Json(json!({"message": "You are being rate limited.", "retry_after": retry, "global": false})))
            .into_response());
    }
    calls.push_back(now);
    let mut h = HeaderMap::new();
    h.insert("x-ratelimit-limit", CHANNEL_LIMIT.to_string().parse().unwrap());
    h.insert("x-ratelimit-remaining", (CHANNEL_LIMIT - calls.len()).to_string().parse().unwrap());
    h.insert("x-ratelimit-reset-after", format!("{:.3}", reset_after(calls)).parse().unwrap());
    h.insert("x-ratelimit-bucket", format!("channel-{channel}").parse().unwrap());
    Ok(h)
}

/// What tests look answers up by: `itoken-<id>`, the token without when it was made.
fn interaction_key(token: &str) -> String {
    token.rsplit_once('-').map_or(token, |(key, _)| key).to_owned()
}

/// Discord's global limit: 50 calls of the bot in any second; `Err` is the global 429.
#[allow(clippy::result_large_err)]
fn global_budget(st: &mut State, now: Instant) -> Result<(), Response> {
    while st.bot_calls.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
        st.bot_calls.pop_front();
    }
    if st.bot_calls.len() >= GLOBAL_PER_SECOND {
        st.rate_limited += 1;
        let retry = (Duration::from_secs(1) - now.duration_since(st.bot_calls[0])).as_secs_f64();
        let until = now + Duration::from_secs_f64(retry);
        st.global_until = Some(st.global_until.map_or(until, |u| u.max(until)));
        return Err(global_429(retry));
    }
    st.bot_calls.push_back(now);
    Ok(())
}

/// Discord's answer to a call past the bot's global limit.
fn global_429(retry_after: f64) -> Response {
    let mut h = HeaderMap::new();
    h.insert("retry-after", format!("{retry_after:.3}").parse().unwrap());
    h.insert("x-ratelimit-global", "true".parse().unwrap());
    h.insert("x-ratelimit-scope", "global".parse().unwrap());
    let body = json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": true});
    (StatusCode::TOO_MANY_REQUESTS, h, Json(body)).into_response()
}

/// Why Discord would refuse a webhook call with this interaction token: unknown or older than
/// 15 minutes (50027), or, for an interaction the gateway delivered, before its initial answer
/// (10015; one POSTed to the endpoint is answered by the POST's response itself). The double's
/// tokens say when they were made: `itoken-<id>-<Unix ms>`.
fn token_refusal(st: &State, token: &str) -> Option<Response> {
    let (id, made) = token.strip_prefix("itoken-").and_then(|t| t.rsplit_once('-')).unwrap_or_default();
    let age = made.parse::<u128>().ok().map(|made| Duration::from_millis(now_millis().saturating_sub(made) as u64) + st.aged);
    if age.is_none_or(|age| age > TOKEN_LIFE) {
        return Some((StatusCode::UNAUTHORIZED, Json(json!({"code": 50027, "message": "Invalid Webhook Token"}))).into_response());
    }
    if st.dispatched.contains_key(id) && !st.callbacks.contains_key(id) {
        return Some((StatusCode::NOT_FOUND, Json(json!({"code": 10015, "message": "Unknown Webhook"}))).into_response());
    }
    None
}

/// The fault plan's verdict on a message call into `channel`: `Some` is the answer to give
/// instead (after the stall, if any).
async fn injected(d: &DiscordDouble, channel: &str) -> Option<Response> {
    let (answer, stall) = {
        let mut st = d.lock();
        let now = Instant::now();
        if st.blocked_until.get(channel).into_iter().chain(&st.global_until).any(|until| now < *until) {
            st.retry_after_violations += 1;
        }
        if let Some(retry_after) = st.global_next.take() {
            *st.faults_injected.entry("global 429").or_default() += 1;
            st.global_until = Some(now + Duration::from_secs_f64(retry_after));
            return Some(global_429(retry_after));
        }
        let plan = st.faults?;
        st.fault_tick += 1;
        if !st.fault_tick.is_multiple_of(plan.every) {
            return None;
        }
        match (st.fault_tick / plan.every - 1) % 3 {
            0 => {
                *st.faults_injected.entry("429").or_default() += 1;
                st.blocked_until.insert(channel.to_owned(), now + Duration::from_secs_f64(plan.retry_after));
                let mut h = HeaderMap::new();
                h.insert("retry-after", format!("{:.3}", plan.retry_after).parse().unwrap());
                let body = json!({"message": "You are being rate limited.", "retry_after": plan.retry_after, "global": false});
                ((StatusCode::TOO_MANY_REQUESTS, h, Json(body)).into_response(), None)
            }
            1 => {
                *st.faults_injected.entry("5xx").or_default() += 1;
                ((StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>").into_response(), None)
            }
            _ => {
                *st.faults_injected.entry("stall").or_default() += 1;
                ((StatusCode::GATEWAY_TIMEOUT, Json(json!({"message": "timeout", "code": 0}))).into_response(), Some(plan.stall))
            }
        }
    };
    if let Some(stall) = stall {
        tokio::time::sleep(stall).await;
    }
    Some(answer)
}

fn registered(d: &DiscordDouble, scope: String, body: &Value) -> Response {
    let commands: Vec<Value> = body.as_array().cloned().unwrap_or_default().into_iter().enumerate().map(|(i, mut c)| {
        c["id"] = json!(format!("11{i:02}"));
        c["application_id"] = json!(APP_ID);
        c["version"] = json!("1");
        c["default_member_permissions"] = json!(null);
        c
    }).collect();
    d.lock().commands.insert(scope, Value::Array(commands.clone()));
    Json(Value::Array(commands)).into_response()
}

async fn register(AxState(d): AxState<DiscordDouble>, Path(app): Path<String>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !authorized(&d, &headers) || app != APP_ID {
        return unauthorized();
    }
    registered(&d, "global".into(), &body)
}

async fn register_guild(AxState(d): AxState<DiscordDouble>, Path((app, guild)): Path<(String, String)>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !authorized(&d, &headers) || app != APP_ID {
        return unauthorized();
    }
    registered(&d, guild, &body)
}

async fn create_message(AxState(d): AxState<DiscordDouble>, Path(channel): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&d, &headers) {
        return unauthorized();
    }
    if let Some(fault) = injected(&d, &channel).await {
        return fault;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        d.lock().malformed.push("invalid JSON".into());
        return (StatusCode::BAD_REQUEST, Json(json!({"code": 50109, "message": "The request body contains invalid JSON."}))).into_response();
    };
    let mut st = d.lock();
    let h = match channel_budget(&mut st, &channel) {
        Ok(h) => h,
        Err(limited) => return limited,
    };
    check_mentions(&mut st, &body);
    if let Some(refused) = refuse_malformed(&mut st, &body) {
        return refused;
    }
    if st.dms.get(&channel).is_some_and(|user| st.closed_dms.contains(user)) {
        return (StatusCode::FORBIDDEN, Json(json!({"code": 50007, "message": "Cannot send messages to this user"}))).into_response();
    }
    st.next_id += 1;
    let id = format!("{}", 2_000_000_000_000_000_000u64 + st.next_id);
    st.messages.insert(id.clone(), Posted { channel: channel.clone(), body: body.clone(), edits: 0 });
    (h, Json(message_json(&id, &channel, &body))).into_response()
}

/// `POST /users/@me/channels`: the DM channel with a user (the same one each time).
async fn open_dm(AxState(d): AxState<DiscordDouble>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !authorized(&d, &headers) {
        return unauthorized();
    }
    let Some(user) = body["recipient_id"].as_str().map(str::to_owned) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"code": 50035, "message": "Invalid Form Body"}))).into_response();
    };
    let mut st = d.lock();
    if let Err(limited) = global_budget(&mut st, Instant::now()) {
        return limited;
    }
    let id = match st.dms.iter().find(|(_, u)| **u == user) {
        Some((id, _)) => id.clone(),
        None => {
            st.next_id += 1;
            let id = format!("{}", 4_000_000_000_000_000_000u64 + st.next_id);
            st.dms.insert(id.clone(), user.clone());
            id
        }
    };
    Json(json!({"id": id, "type": 1, "last_message_id": null, "flags": 0, "recipients": [user_json(&user)]})).into_response()
}

fn user_json(id: &str) -> Value {
    user(id, "User")
}

async fn edit_message(AxState(d): AxState<DiscordDouble>, Path((channel, message)): Path<(String, String)>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !authorized(&d, &headers) {
        return unauthorized();
    }
    if let Some(fault) = injected(&d, &channel).await {
        return fault;
    }
    let mut st = d.lock();
    let h = match channel_budget(&mut st, &channel) {
        Ok(h) => h,
        Err(limited) => return limited,
    };
    check_mentions(&mut st, &body);
    if let Some(refused) = refuse_malformed(&mut st, &body) {
        return refused;
    }
    if st.old_edits_refused_until.is_some_and(|until| Instant::now() < until) {
        *st.faults_injected.entry("30046").or_default() += 1;
        let refusal = json!({"message": "Maximum number of edits to messages older than 1 hour reached. Try again later", "code": 30046});
        return (StatusCode::BAD_REQUEST, h, Json(refusal)).into_response();
    }
    let Some(m) = st.messages.get_mut(&message).filter(|m| m.channel == channel) else {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "Unknown Message", "code": 10008}))).into_response();
    };
    m.body = body.clone();
    m.edits += 1;
    (h, Json(message_json(&message, &channel, &body))).into_response()
}

async fn edit_original(AxState(d): AxState<DiscordDouble>, Path((app, token)): Path<(String, String)>, Json(body): Json<Value>) -> Response {
    if app != APP_ID {
        return unauthorized();
    }
    let mut st = d.lock();
    if let Some(refused) = token_refusal(&st, &token) {
        st.malformed.push(format!("a webhook call with token {token}: {}", refused.status()));
        return refused;
    }
    check_mentions(&mut st, &body);
    if let Some(refused) = refuse_malformed(&mut st, &body) {
        return refused;
    }
    st.originals.insert(interaction_key(&token), body.clone());
    Json(message_json("9000", CHANNEL, &body)).into_response()
}

async fn followup(AxState(d): AxState<DiscordDouble>, Path((app, token)): Path<(String, String)>, Json(body): Json<Value>) -> Response {
    if app != APP_ID {
        return unauthorized();
    }
    let mut st = d.lock();
    if let Some(refused) = token_refusal(&st, &token) {
        st.malformed.push(format!("a webhook call with token {token}: {}", refused.status()));
        return refused;
    }
    check_mentions(&mut st, &body);
    if let Some(refused) = refuse_malformed(&mut st, &body) {
        return refused;
    }
    st.followups.entry(interaction_key(&token)).or_default().push(body.clone());
    Json(message_json("9001", CHANNEL, &body)).into_response()
}

async fn callback(AxState(d): AxState<DiscordDouble>, Path((id, _token)): Path<(String, String)>, Json(body): Json<Value>) -> Response {
    let mut st = d.lock();
    // Discord's rules for the first answer: once, and within 3 seconds of the interaction.
    if st.callbacks.contains_key(&id) {
        st.malformed.push(format!("interaction {id} answered twice (40060)"));
        return (StatusCode::BAD_REQUEST, Json(json!({"code": 40060, "message": "Interaction has already been acknowledged."}))).into_response();
    }
    if st.dispatched.get(&id).is_some_and(|at| at.elapsed() > Duration::from_secs(3)) {
        st.malformed.push(format!("interaction {id} answered after its 3 seconds (10062)"));
        return (StatusCode::NOT_FOUND, Json(json!({"code": 10062, "message": "Unknown interaction"}))).into_response();
    }
    if let Some(refused) = body.get("data").and_then(|data| refuse_malformed(&mut st, data)) {
        return refused;
    }
    st.callbacks.insert(id, body);
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /users/@me`: the bot's own user (Discord: 401 for a wrong token).
async fn current_user(AxState(d): AxState<DiscordDouble>, headers: HeaderMap) -> Response {
    if !authorized(&d, &headers) {
        return unauthorized();
    }
    Json(json!({"id": "2000000000000000002", "username": "callbridge", "discriminator": "0", "global_name": null, "avatar": null, "bot": true}))
        .into_response()
}

/// `GET /applications/@me`: the token's application.
async fn current_application(AxState(d): AxState<DiscordDouble>, headers: HeaderMap) -> Response {
    if !authorized(&d, &headers) {
        return unauthorized();
    }
    Json(json!({"id": APP_ID, "name": "callbridge", "bot_public": false})).into_response()
}

async fn gateway_url(AxState(d): AxState<DiscordDouble>) -> Response {
    let url = format!("{}/gateway", d.url.replacen("http://", "ws://", 1));
    Json(json!({"url": url, "shards": 1, "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}}))
        .into_response()
}

async fn gateway(AxState(d): AxState<DiscordDouble>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| gateway_session(d, socket))
}

/// One gateway session: HELLO, then IDENTIFY (with the bot token) → READY, heartbeats → ACK,
/// and dispatches pushed by the test. Frames are plain JSON text (compression is optional).
async fn gateway_session(d: DiscordDouble, mut ws: WebSocket) {
    let (tx, mut outbox) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let mut seq = 0u64;
    let hello = json!({"op": 10, "d": {"heartbeat_interval": 41250}});
    if ws.send(Message::Text(hello.to_string().into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            frame = ws.recv() => {
                // Keep reading after a Close: the websocket layer answers it.
                let Some(Ok(frame)) = frame else { return };
                let Message::Text(text) = frame else { continue };
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let reply = match v["op"].as_u64() {
                    Some(2) if v["d"]["token"] == format!("Bot {BOT_TOKEN}") => {
                        seq += 1;
                        let url = format!("{}/gateway", d.url.replacen("http://", "ws://", 1));
                        {
                            let mut st = d.lock();
                            st.identified += 1;
                            st.sessions.push(tx.clone());
                        }
                        json!({"op": 0, "s": seq, "t": "READY", "d": {"v": 10, "session_id": format!("session-{seq}"),
                            "user": {"id": APP_ID, "username": "callbridge", "discriminator": "0", "avatar": null, "bot": true},
                            "guilds": [], "resume_gateway_url": url, "shard": [0, 1], "application": {"id": APP_ID, "flags": 0}}})
                    }
                    // Authentication failed: Discord closes with 4004.
                    Some(2) => {
                        d.lock().unauthorized += 1;
                        let _ = ws.send(Message::Close(Some(axum::extract::ws::CloseFrame { code: 4004, reason: "Authentication failed.".into() }))).await;
                        return;
                    }
                    Some(1) => json!({"op": 11}),
                    // No resuming here: start a new session.
                    Some(6) => json!({"op": 9, "d": false}),
                    _ => continue,
                };
                if ws.send(Message::Text(reply.to_string().into())).await.is_err() {
                    return;
                }
            }
            Some(interaction) = outbox.recv() => {
                seq += 1;
                let dispatch = json!({"op": 0, "s": seq, "t": "INTERACTION_CREATE", "d": interaction});
                if ws.send(Message::Text(dispatch.to_string().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Records a request that came over TLS.
async fn note_tls(AxState(d): AxState<DiscordDouble>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    d.lock().tls_calls.push(format!("{} {}", request.method(), request.uri().path()));
    next.run(request).await
}

/// The double's TLS port: each connection's handshake, then HTTP as on the plain port.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else { continue };
            // A handshake that fails (a client that does not trust the certificate) is dropped.
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(tcp)).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
