//! A Bot API server double on loopback, following the Bot API documentation closely enough
//! for teloxide 0.17: full `User`/`Me`/`Chat`/`Message`/`CallbackQuery`/`ChatMember` objects,
//! long-polling `getUpdates` with `offset` (confirmed updates are forgotten), the real error
//! shapes (429 with `parameters.retry_after`, 400 "message is not modified", 403 for a user
//! who never started the bot), and Telegram's per-chat flood control: a bot that sends or
//! edits twice within a second in one chat, more than 20 times a minute, or more than 30 times a
//! second in all chats, gets a 429 (measured on arrival, with no tolerance); a
//! text over 4096 characters gets 400 "message is too long". A call into a chat before a 429's
//! `retry_after` has passed is refused again and counted. With a fault plan (`set_faults`) it
//! also fails a share of calls with 429s, 5xx and stalls. Two overlapping `getUpdates` calls are
//! two bot instances polling one token: the earlier gets 409 Conflict, and it is counted.
#![allow(dead_code)]

use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::post};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub const BOT_TOKEN: &str = "123456:TEST-token";
pub const BOT_ID: i64 = 123456;
pub const BOT_USERNAME: &str = "CallbridgeBot";
/// Telegram's broadcast limit: about 30 messages a second per bot, in all its chats.
const BOT_PER_SECOND: usize = 30;
const NOT_MODIFIED: &str = "Bad Request: message is not modified: specified new message content and reply markup are \
exactly the same as a current content and reply markup of the message";

/// One call the bot made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub body: Value,
    pub at: Instant,
    /// The HTTP status the double answered.
    pub status: u16,
}

/// A message as the chat shows it now.
#[derive(Debug, Clone)]
pub struct Shown {
    pub text: String,
    pub parse_mode: Option<String>,
    pub reply_markup: Value,
    pub edits: usize,
}

#[derive(Default)]
struct State {
    updates: VecDeque<Value>,
    next_update_id: i64,
    messages: HashMap<(i64, i64), Shown>,
    next_message_id: i64,
    calls: Vec<Call>,
    sends: HashMap<i64, Vec<Instant>>,
    /// Every send and edit of the bot within the last second, in whatever chat.
    bot_sends: VecDeque<Instant>,
    injected: HashMap<String, VecDeque<(u16, Value)>>,
    admins: HashSet<(i64, i64)>,
    started: HashSet<i64>,
    users: HashMap<i64, String>,
    /// Users' @-names, where they have one.
    usernames: HashMap<i64, String>,
    rate_limited: usize,
    faults: Option<Faults>,
    /// Eligible calls seen while faults are on; every `every`-th one fails.
    fault_tick: usize,
    /// How many faults of each kind were injected ("429", "5xx", "stall").
    faults_injected: HashMap<&'static str, usize>,
    /// (chat, "send" or a method) → until when a 429 told the bot not to repeat it. Sends and
    /// edits share one budget per chat; other methods are limited on their own.
    blocked_until: HashMap<(i64, String), Instant>,
    /// Calls into a chat before its `retry_after` had passed.
    retry_after_violations: usize,
    /// Long polls started, and how many are open now: a poll that starts while another is
    /// open terminates it with 409 Conflict, as Telegram does when two instances poll one bot.
    poll_generation: u64,
    polls_open: usize,
    conflicts: usize,
    /// Callback queries pressed and not answered yet: Telegram takes one answer per query.
    open_queries: HashSet<String>,
    /// Calls Telegram would refuse as malformed ("can't parse entities", empty or long text,
    /// BUTTON_DATA_INVALID, BUTTON_URL_INVALID, an unknown or twice-answered query): each is a bug
    /// of the bot.
    malformed: Vec<String>,
}

/// A fault plan: every `every`-th call of the bot (other than long polls, which get only 5xx)
/// fails, cycling through a 429 with `retry_after`, a 5xx, and a stall: no answer for `stall`,
/// then 504 without carrying the call out (the bot should have given up by then).
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub every: usize,
    pub retry_after: u64,
    pub stall: Duration,
}

/// The double. Clone it freely.
#[derive(Clone)]
pub struct BotApiDouble {
    state: Arc<Mutex<State>>,
    new_update: Arc<Notify>,
    pub url: String,
    /// Whether the double enforces Telegram's per-chat flood control.
    pub enforce_pacing: bool,
}

impl BotApiDouble {
    /// Starts the double on 127.0.0.1:0 inside the test process.
    pub async fn start() -> BotApiDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let double = BotApiDouble {
            state: Arc::new(Mutex::new(State { next_update_id: 1000, next_message_id: 1, ..State::default() })),
            new_update: Arc::new(Notify::new()),
            url,
            enforce_pacing: true,
        };
        let app = Router::new().route("/{bot}/{method}", post(handle)).with_state(double.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        double
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Long polls that overlapped another (two bot instances polling one token).
    pub fn conflicts(&self) -> usize {
        self.lock().conflicts
    }

    /// Makes `user` an administrator of `chat`.
    pub fn make_admin(&self, chat: i64, user: i64) {
        self.lock().admins.insert((chat, user));
    }

    /// `user` has started the bot (private messages to them work).
    pub fn start_bot(&self, user: i64) {
        self.lock().started.insert(user);
    }

    /// The next `n` calls of `method` get this answer instead.
    pub fn inject(&self, method: &str, status: u16, body: Value) {
        self.lock().injected.entry(method.to_owned()).or_default().push_back((status, body));
    }

    pub fn inject_retry_after(&self, method: &str, seconds: u64) {
        self.inject(method, 429, json!({"ok": false, "error_code": 429,
            "description": format!("Too Many Requests: retry after {seconds}"), "parameters": {"retry_after": seconds}}));
    }

    /// Turns fault injection on.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = Some(faults);
    }

    /// Faults injected so far, by kind ("429", "5xx", "stall").
    pub fn faults_injected(&self, kind: &str) -> usize {
        self.lock().faults_injected.get(kind).copied().unwrap_or(0)
    }

    /// Calls the bot made into a chat before a 429's `retry_after` had passed.
    pub fn retry_after_violations(&self) -> usize {
        self.lock().retry_after_violations
    }

    pub fn inject_not_modified(&self, method: &str) {
        self.inject(method, 400, json!({"ok": false, "error_code": 400, "description": NOT_MODIFIED}));
    }

    /// `user` has the @-name `username`.
    pub fn set_username(&self, user: i64, username: &str) {
        self.lock().usernames.insert(user, username.to_owned());
    }

    fn user(id: i64, name: &str, st: &State) -> Value {
        let mut u = json!({"id": id, "is_bot": false, "first_name": name, "language_code": "en"});
        if let Some(username) = st.usernames.get(&id) {
            u["username"] = json!(username);
        }
        u
    }

    fn chat(id: i64, st: &State) -> Value {
        if id < 0 {
            json!({"id": id, "type": "supergroup", "title": "Team chat"})
        } else {
            json!({"id": id, "type": "private", "first_name": st.users.get(&id).cloned().unwrap_or_else(|| "User".into())})
        }
    }

    fn push_update(&self, st: &mut State, kind: &str, payload: Value) {
        let id = st.next_update_id;
        st.next_update_id += 1;
        st.updates.push_back(json!({"update_id": id, kind: payload}));
        self.new_update.notify_waiters();
    }

    /// A user types `text` in `chat`.
    pub fn say(&self, chat: i64, user: i64, name: &str, text: &str) {
        let mut st = self.lock();
        st.users.insert(user, name.to_owned());
        let message_id = st.next_message_id;
        st.next_message_id += 1;
        let msg = json!({"message_id": message_id, "from": Self::user(user, name, &st), "chat": Self::chat(chat, &st),
            "date": 1_700_000_000, "text": text});
        self.push_update(&mut st, "message", msg);
    }

    /// A user presses a callback button of a message; returns the callback query id.
    pub fn press(&self, chat: i64, message_id: i64, user: i64, name: &str, data: &str) -> String {
        let mut st = self.lock();
        st.users.insert(user, name.to_owned());
        let id = format!("cq{}", st.next_update_id);
        let shown = st.messages.get(&(chat, message_id)).cloned();
        let mut message = json!({"message_id": message_id, "from": {"id": BOT_ID, "is_bot": true, "first_name": "Callbridge",
            "username": BOT_USERNAME}, "chat": Self::chat(chat, &st), "date": 1_700_000_000});
        if let Some(shown) = shown {
            message["text"] = json!(shown.text);
            message["reply_markup"] = shown.reply_markup;
        }
        let query = json!({"id": id, "from": Self::user(user, name, &st), "message": message,
            "chat_instance": format!("ci{chat}"), "data": data});
        st.open_queries.insert(id.clone());
        self.push_update(&mut st, "callback_query", query);
        id
    }

    /// Every call the double refused as Telegram would (malformed text, markup or answers, an
    /// edit that changes nothing), with Telegram's description: a test that sees any has found
    /// a bug. Answers injected by the test are not counted.
    pub fn malformed(&self) -> Vec<String> {
        self.lock().malformed.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.lock().calls.iter().filter(|c| c.method == method).cloned().collect()
    }

    /// How many 429s the double sent for flood control (injected ones not counted).
    pub fn rate_limited(&self) -> usize {
        self.lock().rate_limited
    }

    pub fn message(&self, chat: i64, message_id: i64) -> Option<Shown> {
        self.lock().messages.get(&(chat, message_id)).cloned()
    }

    /// Every message in `chat`, oldest first.
    pub fn messages_in(&self, chat: i64) -> Vec<(i64, Shown)> {
        let st = self.lock();
        let mut v: Vec<_> = st.messages.iter().filter(|((c, _), _)| *c == chat).map(|((_, m), s)| (*m, s.clone())).collect();
        v.sort_by_key(|(m, _)| *m);
        v
    }

    /// The answer to a callback query, once given.
    pub fn answer_to(&self, query_id: &str) -> Option<Value> {
        self.lock().calls.iter().find(|c| c.method == "answerCallbackQuery" && c.body["callback_query_id"] == query_id).map(|c| c.body.clone())
    }
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

fn err(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
}

async fn handle(AxState(d): AxState<BotApiDouble>, Path((bot, method)): Path<(String, String)>, body: Option<Json<Value>>) -> Response {
    let body = body.map(|Json(v)| v).unwrap_or(json!({}));
    // Bot API method names are case-insensitive (teloxide sends `GetMe`).
    let method = ["getMe", "getUpdates", "sendMessage", "editMessageText", "editMessageReplyMarkup", "answerCallbackQuery",
        "setMyCommands", "getChatMember", "getChatAdministrators"]
        .into_iter()
        .find(|m| m.eq_ignore_ascii_case(&method))
        .map(str::to_owned)
        .unwrap_or(method);
    if bot != format!("bot{BOT_TOKEN}") {
        return err(401, json!({"ok": false, "error_code": 401, "description": "Unauthorized"}));
    }
    match injected_fault(&d, &method, &body) {
        Some(Fault::Stall(wait)) => {
            tokio::time::sleep(wait).await;
            d.lock().calls.push(Call { method, body, at: Instant::now(), status: 504 });
            return err(504, json!({"ok": false, "error_code": 504, "description": "Gateway Timeout"}));
        }
        Some(Fault::Answer(status, v)) => {
            d.lock().calls.push(Call { method, body, at: Instant::now(), status });
            return err(status, v);
        }
        None => {}
    }
    if method == "getUpdates" {
        return get_updates(&d, &body).await;
    }
    let response = answer(&d, &method, &body);
    let status = response.0;
    d.lock().calls.push(Call { method, body, at: Instant::now(), status });
    match response.1 {
        Ok(v) => ok(v),
        Err(v) => err(status, v),
    }
}

enum Fault {
    Answer(u16, Value),
    Stall(Duration),
}

/// Telegram's answer to a call into a chat still under a 429, or the fault plan's next fault.
fn injected_fault(d: &BotApiDouble, method: &str, body: &Value) -> Option<Fault> {
    let mut st = d.lock();
    let now = Instant::now();
    let chat = body["chat_id"].as_i64();
    let scope = if matches!(method, "sendMessage" | "editMessageText" | "editMessageReplyMarkup") { "send" } else { method };
    if let Some(until) = chat.and_then(|c| st.blocked_until.get(&(c, scope.to_owned()))).copied()
        && now < until {
            st.retry_after_violations += 1;
            let left = (until - now).as_millis().div_ceil(1000) as u64;
            return Some(Fault::Answer(429, json!({"ok": false, "error_code": 429,
                "description": format!("Too Many Requests: retry after {left}"), "parameters": {"retry_after": left}})));
        }
    let plan = st.faults?;
    if method == "getMe" {
        return None;
    }
    st.fault_tick += 1;
    if !st.fault_tick.is_multiple_of(plan.every) {
        return None;
    }
    let nth = st.fault_tick / plan.every;
    let kind = if method == "getUpdates" { 1 } else { nth % 3 };
    match kind {
        0 => {
            *st.faults_injected.entry("429").or_default() += 1;
            if let Some(c) = chat {
                st.blocked_until.insert((c, scope.to_owned()), now + Duration::from_secs(plan.retry_after));
            }
            Some(Fault::Answer(429, json!({"ok": false, "error_code": 429,
                "description": format!("Too Many Requests: retry after {}", plan.retry_after),
                "parameters": {"retry_after": plan.retry_after}})))
        }
        1 => {
            *st.faults_injected.entry("5xx").or_default() += 1;
            let (status, text) = if nth.is_multiple_of(2) { (500, "Internal Server Error") } else { (502, "Bad Gateway") };
            Some(Fault::Answer(status, json!({"ok": false, "error_code": status, "description": text})))
        }
        _ => {
            *st.faults_injected.entry("stall").or_default() += 1;
            Some(Fault::Stall(plan.stall))
        }
    }
}

/// Closes a long poll's place when its request ends (answered, or its client went away).
struct OpenPoll(BotApiDouble);

impl Drop for OpenPoll {
    fn drop(&mut self) {
        self.0.lock().polls_open -= 1;
    }
}

async fn get_updates(d: &BotApiDouble, body: &Value) -> Response {
    let offset = body["offset"].as_i64().unwrap_or(0);
    let timeout = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0).min(10));
    let deadline = tokio::time::Instant::now() + timeout;
    let generation = {
        let mut st = d.lock();
        // Recorded as it arrives: a poll whose client went away (a stopped bot) may still be
        // answered here, and must not count as a call the bot made afterwards.
        st.calls.push(Call { method: "getUpdates".into(), body: body.clone(), at: Instant::now(), status: 200 });
        if st.polls_open > 0 {
            st.conflicts += 1;
        }
        st.polls_open += 1;
        st.poll_generation += 1;
        st.poll_generation
    };
    let _open = OpenPoll(d.clone());
    d.new_update.notify_waiters();
    loop {
        let notified = d.new_update.notified();
        {
            let mut st = d.lock();
            if st.poll_generation != generation {
                return err(409, json!({"ok": false, "error_code": 409,
                    "description": "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"}));
            }
            // Updates below the offset are confirmed: Telegram forgets them.
            while st.updates.front().is_some_and(|u| u["update_id"].as_i64().unwrap() < offset) {
                st.updates.pop_front();
            }
            if !st.updates.is_empty() || tokio::time::Instant::now() >= deadline {
                let updates: Vec<Value> = st.updates.iter().cloned().collect();
                return ok(Value::Array(updates));
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

/// Telegram's flood control, measured as sends arrive, with no tolerance: in one chat ≥ 1 s
/// between sends and ≤ 20 a minute; for the bot ≤ 30 a second in all chats.
fn flood(st: &mut State, chat: i64, enforce: bool) -> Option<(u16, Result<Value, Value>)> {
    let now = Instant::now();
    while st.bot_sends.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
        st.bot_sends.pop_front();
    }
    let bot_full = st.bot_sends.len() >= BOT_PER_SECOND;
    let sends = st.sends.entry(chat).or_default();
    sends.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
    let too_soon = sends.last().is_some_and(|t| now.duration_since(*t) < Duration::from_secs(1));
    if enforce && (too_soon || sends.len() >= 20 || bot_full) {
        st.rate_limited += 1;
        st.blocked_until.insert((chat, "send".to_owned()), now + Duration::from_secs(1));
        return Some((429, Err(json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1}}))));
    }
    sends.push(now);
    st.bot_sends.push_back(now);
    None
}

/// What Telegram refuses as malformed, in its own words: a message's text (empty, over 4096
/// characters once parsed, HTML it cannot parse), an inline keyboard (a button without text,
/// `callback_data` over 64 bytes), or an answer to a callback query (unknown or answered
/// already, text over 200 characters).
fn malformed(st: &mut State, method: &str, body: &Value) -> Option<String> {
    match method {
        "sendMessage" | "editMessageText" => {
            let text = body["text"].as_str().unwrap_or_default();
            let visible = match (body["parse_mode"] == "HTML").then(|| parse_html(text)) {
                Some(Ok(visible)) => visible,
                Some(Err(why)) => return Some(format!("can't parse entities: {why}")),
                None => text.to_owned(),
            };
            if visible.trim().is_empty() {
                return Some("message text is empty".into());
            }
            if visible.encode_utf16().count() > 4096 {
                return Some("message is too long".into());
            }
            keyboard_refusal(&body["reply_markup"])
        }
        "editMessageReplyMarkup" => keyboard_refusal(&body["reply_markup"]),
        "answerCallbackQuery" => {
            let id = body["callback_query_id"].as_str().unwrap_or_default();
            if !st.open_queries.remove(id) {
                return Some("query is too old and response timeout expired or query ID is invalid".into());
            }
            (body["text"].as_str().unwrap_or_default().chars().count() > 200).then(|| "MESSAGE_TOO_LONG".into())
        }
        _ => None,
    }
}

/// Telegram's HTML: its tags only (`<a>` with an `href`), balanced, and its four named entities
/// or numeric ones; the visible text, or why not.
fn parse_html(html: &str) -> Result<String, String> {
    const TAGS: [&str; 16] = ["b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "tg-spoiler", "span", "blockquote", "tg-emoji"];
    let (mut visible, mut open, mut rest) = (String::new(), Vec::<String>::new(), html);
    while let Some(c) = rest.chars().next() {
        match c {
            '<' => {
                let end = rest.find('>').ok_or("unclosed start tag")?;
                let tag = &rest[1..end];
                let (closing, tag) = tag.strip_prefix('/').map_or((false, tag), |t| (true, t));
                let name = tag.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
                if !TAGS.contains(&name.as_str()) {
                    return Err(format!("unsupported start tag \"{name}\""));
                }
                if closing {
                    if open.pop().as_deref() != Some(name.as_str()) {
                        return Err(format!("unexpected end tag \"{name}\""));
                    }
                } else {
                    if name == "a" && !tag.contains("href=") {
                        return Err("a tag without href".into());
                    }
                    open.push(name);
                }
                rest = &rest[end + 1..];
            }
            '&' => {
                let end = rest.find(';').filter(|e| *e <= 10).ok_or("unclosed entity")?;
                let entity = &rest[1..end];
                visible.push(match entity {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    numeric if numeric.starts_with('#') => numeric[1..].parse::<u32>().ok().and_then(char::from_u32).ok_or("bad numeric entity")?,
                    other => return Err(format!("unsupported entity \"{other}\"")),
                });
                rest = &rest[end + 1..];
            }
            c => {
                visible.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    match open.last() {
        Some(tag) => Err(format!("can't find end tag corresponding to start tag \"{tag}\"")),
        None => Ok(visible),
    }
}

/// An inline keyboard Telegram refuses: a button without text, `callback_data` over 64 bytes,
/// a link Telegram does not take as a button.
fn keyboard_refusal(markup: &Value) -> Option<String> {
    let buttons = markup["inline_keyboard"].as_array().into_iter().flatten().filter_map(Value::as_array).flatten();
    for button in buttons {
        if button["text"].as_str().is_none_or(|t| t.trim().is_empty()) {
            return Some("BUTTON_TEXT_EMPTY".into());
        }
        if button["callback_data"].as_str().is_some_and(|d| d.is_empty() || d.len() > 64) {
            return Some("BUTTON_DATA_INVALID".into());
        }
        // Telegram takes http(s) links to a host with a dot in it (not `localhost`), and tg:.
        if let Some(link) = button["url"].as_str() {
            let accepted = url::Url::parse(link).is_ok_and(|u| match u.scheme() {
                "http" | "https" => u.host_str().is_some_and(|h| h.contains('.') && !h.starts_with('[')),
                "tg" => true,
                _ => false,
            });
            if !accepted {
                return Some("BUTTON_URL_INVALID".into());
            }
        }
    }
    None
}

fn answer(d: &BotApiDouble, method: &str, body: &Value) -> (u16, Result<Value, Value>) {
    let mut st = d.lock();
    if let Some((status, v)) = st.injected.get_mut(method).and_then(|q| q.pop_front()) {
        return (status, Err(v));
    }
    if let Some(why) = malformed(&mut st, method, body) {
        st.malformed.push(format!("{method}: {why}"));
        return (400, Err(json!({"ok": false, "error_code": 400, "description": format!("Bad Request: {why}")})));
    }
    let bot = json!({"id": BOT_ID, "is_bot": true, "first_name": "Callbridge", "username": BOT_USERNAME});
    match method {
        "getMe" => (200, Ok(json!({"id": BOT_ID, "is_bot": true, "first_name": "Callbridge", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false,
            "can_connect_to_business": false, "has_main_web_app": false}))),
        "setMyCommands" | "answerCallbackQuery" => (200, Ok(json!(true))),
        "sendMessage" => {
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            if chat > 0 && !st.started.contains(&chat) {
                return (403, Err(json!({"ok": false, "error_code": 403,
                    "description": "Forbidden: bot can't initiate conversation with a user"})));
            }
            if let Some(limited) = flood(&mut st, chat, d.enforce_pacing) {
                return limited;
            }
            let id = st.next_message_id;
            st.next_message_id += 1;
            let text = body["text"].as_str().unwrap_or_default().to_owned();
            let markup = body.get("reply_markup").cloned().unwrap_or(Value::Null);
            st.messages.insert((chat, id), Shown {
                text: text.clone(), parse_mode: body["parse_mode"].as_str().map(str::to_owned), reply_markup: markup.clone(), edits: 0,
            });
            let mut msg = json!({"message_id": id, "from": bot, "chat": BotApiDouble::chat(chat, &st), "date": 1_700_000_000, "text": text});
            if !markup.is_null() {
                msg["reply_markup"] = markup;
            }
            (200, Ok(msg))
        }
        "editMessageText" | "editMessageReplyMarkup" => {
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            let id = body["message_id"].as_i64().unwrap_or(0);
            let Some(shown) = st.messages.get(&(chat, id)).cloned() else {
                return (400, Err(json!({"ok": false, "error_code": 400, "description": "Bad Request: message to edit not found"})));
            };
            let text = body["text"].as_str().map(str::to_owned).unwrap_or(shown.text.clone());
            let empty = json!({"inline_keyboard": []});
            let markup = body.get("reply_markup").cloned().unwrap_or(empty.clone());
            let same_markup = markup == shown.reply_markup || (markup == empty && shown.reply_markup.is_null());
            if text == shown.text && same_markup {
                // An edit that changes nothing: the bot should have known it shows this already.
                st.malformed.push(format!("{method}: message is not modified"));
                return (400, Err(json!({"ok": false, "error_code": 400, "description": NOT_MODIFIED})));
            }
            if let Some(limited) = flood(&mut st, chat, d.enforce_pacing) {
                return limited;
            }
            let parse_mode = body["parse_mode"].as_str().map(str::to_owned);
            st.messages.insert((chat, id), Shown { text: text.clone(), parse_mode, reply_markup: markup.clone(), edits: shown.edits + 1 });
            let mut msg = json!({"message_id": id, "from": bot, "chat": BotApiDouble::chat(chat, &st), "date": 1_700_000_000,
                "edit_date": 1_700_000_001, "text": text});
            if markup != empty {
                msg["reply_markup"] = markup;
            }
            (200, Ok(msg))
        }
        "getChatMember" => {
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            let user = body["user_id"].as_i64().unwrap_or(0);
            let name = st.users.get(&user).cloned().unwrap_or_else(|| "User".into());
            (200, Ok(member(&st, chat, user, &name)))
        }
        "getChatAdministrators" => {
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            let admins: Vec<Value> = st.admins.iter().filter(|(c, _)| *c == chat)
                .map(|(_, u)| member(&st, chat, *u, &st.users.get(u).cloned().unwrap_or_else(|| "Admin".into()))).collect();
            (200, Ok(Value::Array(admins)))
        }
        _ => (404, Err(json!({"ok": false, "error_code": 404, "description": "Not Found: method not found"}))),
    }
}

fn member(st: &State, chat: i64, user: i64, name: &str) -> Value {
    let u = BotApiDouble::user(user, name, st);
    if st.admins.contains(&(chat, user)) {
        json!({"user": u, "status": "administrator", "can_be_edited": false, "is_anonymous": false,
            "can_manage_chat": true, "can_delete_messages": true, "can_manage_video_chats": true,
            "can_restrict_members": true, "can_promote_members": false, "can_change_info": true,
            "can_invite_users": true, "can_post_stories": false, "can_edit_stories": false,
            "can_delete_stories": false, "can_pin_messages": true, "can_manage_topics": false})
    } else {
        json!({"user": u, "status": "member"})
    }
}
