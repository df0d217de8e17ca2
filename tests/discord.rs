//! The Discord adapter end to end: the real daemon with its interactions endpoint, bridge and
//! card updater, against a Discord double on loopback (tests/support/discord_double.rs).
//! Interactions are signed with a fixed Ed25519 key, as Discord signs them.

mod common;
#[path = "support/discord_double.rs"]
mod discord_double;

use common::{Db, Harness, TestDb, config, eventually};
use discord_double::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use callbridge_discord::Mode as DiscordMode;
use std::time::{Duration, Instant};

const HOST: &str = "6000000000000000006";
const MEMBER: &str = "6000000000000000007";
const MODERATOR: &str = "6000000000000000008";
const MANAGE_CHANNELS: &str = "16";
const CALL_ADMIN_ROLE: &str = "7000000000000000007";
const WAIT: Duration = Duration::from_secs(15);

fn discord_config(db: &TestDb, double: &DiscordDouble, mode: DiscordMode) -> callbridge::config::Config {
    with_discord(db, discord_settings(double, mode))
}

fn with_discord(db: &TestDb, settings: callbridge_discord::Settings) -> callbridge::config::Config {
    let mut c = config(db);
    c.adapters.push(Box::new(settings));
    c.rooms.max_participants = Some(60);
    c
}

fn discord_settings(double: &DiscordDouble, mode: DiscordMode) -> callbridge_discord::Settings {
    callbridge_discord::Settings {
        mode,
        token: Some(callbridge::config::Secret::new(BOT_TOKEN)),
        application_id: Some(APP_ID.parse().unwrap()),
        public_key: public_key_hex(),
        guild_ids: vec![GUILD.parse().unwrap()],
        admin_role_ids: vec![CALL_ADMIN_ROLE.parse().unwrap()],
        // Discord's real base URL: the double's client resolves discord.com to the double's
        // TLS port, so serenity runs with its own rate limiter, as in production.
        http_client: Some(double.client()),
        debounce: Duration::from_millis(200),
        ..Default::default()
    }
}

/// A daemon on SQLite whose Discord adapter takes interactions at its endpoint, with its double
/// and database (kept alive by the caller).
async fn on_the_endpoint() -> (DiscordDouble, TestDb, Harness) {
    let double = DiscordDouble::start().await;
    let db = TestDb::new(Db::Sqlite).await;
    let h = Harness::start(discord_config(&db, &double, DiscordMode::Interactions)).await;
    (double, db, h)
}

/// Delivers an interaction as Discord would in `mode`, and returns the bot's immediate answer
/// (in gateway mode, what it POSTed to the interaction's callback).
async fn send(h: &Harness, double: &DiscordDouble, mode: DiscordMode, body: &Value) -> (StatusCode, Value) {
    match mode {
        DiscordMode::Interactions => post_signed(h, body, None).await,
        DiscordMode::Gateway => {
            assert!(eventually(WAIT, || async { double.dispatch(body) }).await, "a gateway session is up");
            let id = body["id"].as_str().unwrap();
            assert!(eventually(WAIT, || async { double.callback(id).is_some() }).await, "interaction {id} answered");
            (StatusCode::OK, double.callback(id).unwrap())
        }
    }
}

/// POSTs an interaction to the daemon's endpoint, signed (or not) like Discord.
async fn post_signed(h: &Harness, body: &Value, signature: Option<(String, String)>) -> (StatusCode, Value) {
    post_interaction(&h.http, &h.base, body, signature).await
}

/// Only Discord's signature gets in: forged, stale, misdirected or missing signatures get 401.
async fn signature_checks(h: &Harness) {
    let ping = json!({"type": 1, "id": "1", "application_id": APP_ID, "token": "t", "version": 1});
    assert_eq!(post_signed(h, &ping, None).await, (StatusCode::OK, json!({"type": 1})));
    let raw = serde_json::to_vec(&ping).unwrap();
    let (good, ts) = sign(&raw, now_unix());
    let mut forged = good.clone().into_bytes();
    forged[10] = if forged[10] == b'0' { b'1' } else { b'0' };
    assert_eq!(post_signed(h, &ping, Some((String::from_utf8(forged).unwrap(), ts.clone()))).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(post_signed(h, &ping, Some(sign(&raw, now_unix() - 3600))).await.0, StatusCode::UNAUTHORIZED, "a stale timestamp");
    assert_eq!(post_signed(h, &json!({"type": 1, "id": "2"}), Some((good, ts))).await.0, StatusCode::UNAUTHORIZED, "signature of another body");
    let r = h.http.post(format!("{}/discord/interactions", h.base)).json(&ping).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no signature");
}

fn card_text(double: &DiscordDouble) -> String {
    double.card(CHANNEL).map(|(_, m)| m.body["embeds"][0].to_string()).unwrap_or_default()
}

async fn card_shows(double: &DiscordDouble, needle: &str) -> bool {
    eventually(WAIT, || async { card_text(double).contains(needle) }).await
}

fn room_of(double: &DiscordDouble) -> String {
    let (_, card) = double.card(CHANNEL).unwrap();
    card.body["components"][0]["components"][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_card_lock_knock_end_over_the_gateway() {
    call_card_lock_knock_end(DiscordMode::Gateway).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_card_lock_knock_end_over_the_interactions_endpoint() {
    call_card_lock_knock_end(DiscordMode::Interactions).await
}

async fn call_card_lock_knock_end(mode: DiscordMode) {
    let _ = tracing_subscriber::fmt().with_env_filter("info,sqlx=warn").with_test_writer().try_init();
    let double = DiscordDouble::start().await;
    let db = TestDb::new(Db::Sqlite).await;
    let h = Harness::start(discord_config(&db, &double, mode)).await;

    // Commands are registered in the configured guild, with their options.
    assert!(eventually(WAIT, || async { double.commands().contains_key(GUILD) }).await, "commands registered");
    let commands = &double.commands()[GUILD];
    for name in ["call", "lock", "unlock", "end", "who", "help"] {
        assert!(commands.as_array().unwrap().iter().any(|c| c["name"] == name), "{name}");
    }
    assert_eq!(double.unauthorized(), 0, "the bot authenticates with its token");
    if mode == DiscordMode::Gateway {
        assert!(eventually(WAIT, || async { double.identified() == 1 }).await, "the bot identified on the gateway");
        // serenity asked https://discord.com for the gateway's address, through its rate limiter.
        assert!(double.tls_calls().iter().any(|c| c.starts_with("GET /api/v10/gateway")), "{:?}", double.tls_calls());
        let r = h.http.post(format!("{}/discord/interactions", h.base)).json(&json!({"type": 1})).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "no endpoint in gateway mode");
    } else {
        signature_checks(&h).await;
    }

    // `/call` answers "thinking…" to the caller alone, then posts the card in the channel and
    // hands the host their link ephemerally.
    let call = command("100", "call", json!([{"name": "kind", "type": 3, "value": "voice"}, {"name": "title", "type": 3, "value": "Standup **now** @everyone"}]), HOST, "Ada <@&1>", "0");
    assert_eq!(send(&h, &double, mode, &call).await, (StatusCode::OK, json!({"type": 5, "data": {"flags": 64}})));
    assert!(eventually(WAIT, || async { double.card(CHANNEL).is_some() }).await, "a card is posted");
    let (card_id, card) = double.card(CHANNEL).unwrap();
    let embed = &card.body["embeds"][0];
    assert!(embed["title"].as_str().unwrap().contains("Standup \\*\\*now\\*\\* @\u{200B}everyone"), "{embed}");
    assert!(embed["description"].as_str().unwrap().contains("Voice call hosted by **Ada <@\u{200B}&1\\>**"), "{embed}");
    let join = &card.body["components"][0]["components"][0];
    assert_eq!((join["style"].as_u64(), join["label"].as_str()), (Some(5), Some("Join")));
    let room = room_of(&double);
    assert_eq!(room.len(), 22);
    assert!(eventually(WAIT, || async { double.original("itoken-100").is_some_and(|o| o["content"].as_str().unwrap().contains("#host=")) }).await,
        "the host link, ephemerally");

    // A `when` that is no start time is answered to its sender alone, in their own language.
    let mut unclear = command("140", "call", json!([{"name": "when", "type": 3, "value": "someday"}]), MEMBER, "Mallory", "0");
    unclear["locale"] = json!("es-ES");
    let (_, answer) = send(&h, &double, mode, &unclear).await;
    assert_eq!(answer["data"]["flags"], 64, "{answer}");
    assert!(answer["data"]["content"].as_str().unwrap().starts_with("Di cuándo así: in 30m"), "{answer}");

    // A browser-side join shows on the card.
    assert_eq!(h.join(&room, "Bob @everyone", None).await.0, StatusCode::OK);
    assert!(card_shows(&double, "In the call (1):** Bob @\u{200B}everyone").await, "{}", card_text(&double));
    let (_, card) = double.card(CHANNEL).unwrap();

    // "Join as me": a personal link, to the presser alone, that joins under their Discord name
    // whatever they type; forged, misdirected or expired links are refused.
    let me = &card.body["components"][0]["components"][1];
    assert_eq!((me["label"].as_str(), me["custom_id"].as_str()), (Some("🙋 Join as me"), Some("me")));
    send(&h, &double, mode, &press("150", "me", &card_id, MEMBER, "Mallory *the* Member", "0", &[])).await;
    assert!(eventually(WAIT, || async { !double.followups("itoken-150").is_empty() }).await, "the personal link");
    let personal = double.followups("itoken-150")[0].clone();
    assert_eq!(personal["flags"], 64, "ephemeral");
    let text = personal["content"].as_str().unwrap();
    let token = text.split("#as=").nth(1).expect("a personal link").split_whitespace().next().unwrap().to_owned();
    let join_as = |name: &str, identity: &str| {
        let (h, room, body) = (&h, &room, json!({"name": name, "identity": identity}));
        async move {
            let r = h.http.post(format!("{}/r/{room}/join", h.base)).json(&body).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, v) = join_as("Someone Else", &token).await;
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("Mallory *the* Member")));
    let forged = token.replacen(&hex::encode("Mallory *the* Member"), &hex::encode("The Host"), 1);
    let (s, v) = join_as("x", &forged).await;
    assert_eq!((s, v["error"].as_str()), (StatusCode::FORBIDDEN, Some("invalid_identity")));
    let (other_room, _) = h.create_room(json!({})).await;
    let r = h.http.post(format!("{}/r/{other_room}/join", h.base)).json(&json!({"name": "x", "identity": token})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a personal link is for one room");
    let description = || double.card(CHANNEL).map(|(_, m)| m.body["embeds"][0]["description"].as_str().unwrap_or("").to_owned()).unwrap_or_default();
    assert!(eventually(WAIT, || async { description().contains(r"Mallory \*the\* Member") }).await, "{}", description());

    // A plain member's Lock is refused to them alone; a moderator's works.
    assert_eq!(send(&h, &double, mode, &press("200", "lock", &card_id, MEMBER, "Mallory", "0", &[])).await, (StatusCode::OK, json!({"type": 6})));
    assert!(eventually(WAIT, || async { !double.followups("itoken-200").is_empty() }).await, "the refusal");
    let refusal = &double.followups("itoken-200")[0];
    assert_eq!(refusal["flags"], 64);
    assert!(!card_text(&double).contains("Locked"));
    send(&h, &double, mode, &press("201", "lock", &card_id, MODERATOR, "Mod", MANAGE_CHANNELS, &[])).await;
    assert!(card_shows(&double, "Locked").await);
    assert!(double.followups("itoken-201").is_empty(), "success needs no message: the card shows it");
    // A member holding one of `admin_role_ids` (and no permission bits) has host powers too.
    send(&h, &double, mode, &press("203", "unlock", &card_id, MEMBER, "Mallory", "0", &[CALL_ADMIN_ROLE])).await;
    assert!(eventually(WAIT, || async { !card_text(&double).contains("Locked") }).await, "unlocked by the role");
    send(&h, &double, mode, &press("204", "lock", &card_id, MEMBER, "Mallory", "0", &[CALL_ADMIN_ROLE])).await;
    assert!(card_shows(&double, "Locked").await);
    assert_eq!(h.join(&room, "Late", None).await.0, StatusCode::LOCKED);

    // Knock, then Admit from the card.
    let r = h.http.post(format!("{}/r/{room}/knock", h.base)).json(&json!({"name": "Cy"})).send().await.unwrap();
    let knock: Value = r.json().await.unwrap();
    assert!(card_shows(&double, "Asking to join").await);
    let (_, card) = double.card(CHANNEL).unwrap();
    let admit = card.body["components"][1]["components"][0]["custom_id"].as_str().unwrap().to_owned();
    assert!(card.body["components"][1]["components"][0]["label"].as_str().unwrap().contains("Admit Cy"));
    send(&h, &double, mode, &press("202", &admit, &card_id, HOST, "Ada", "0", &[])).await;
    let status_url = format!("{}/r/{room}/knocks/{}?token={}", h.base, knock["knock_id"].as_str().unwrap(), knock["token"].as_str().unwrap());
    assert!(eventually(WAIT, || async {
        let v: Value = h.http.get(&status_url).send().await.unwrap().json().await.unwrap();
        v["status"] == "admitted"
    }).await);

    // `/who` answers the caller; `/end` by the host; the card shows the attendance.
    send(&h, &double, mode, &command("300", "who", json!([]), MEMBER, "Mallory", "0")).await;
    assert!(eventually(WAIT, || async { double.original("itoken-300").is_some_and(|o| o["content"].as_str().unwrap().contains("In the call")) }).await);
    send(&h, &double, mode, &command("301", "end", json!([]), HOST, "Ada", "0")).await;
    assert!(card_shows(&double, "Attendance").await, "{}", card_text(&double));
    // Every slash command gets its answer, even one whose result the card already shows.
    assert!(eventually(WAIT, || async { double.original("itoken-301").is_some() }).await, "the /end caller is answered");
    // An ended card keeps one button: Call again.
    let ended = double.card(CHANNEL).unwrap().1.body["components"].clone();
    assert_eq!(ended[0]["components"].as_array().unwrap().iter().map(|b| b["custom_id"].clone()).collect::<Vec<_>>(), [json!("again")], "{ended}");
    assert_eq!(h.join(&room, "After", None).await.0, StatusCode::GONE);

    assert_eq!(double.mention_violations(), 0, "every message carries empty allowed_mentions");
    assert_eq!(double.rate_limited(), 0);
    assert_eq!(double.malformed(), Vec::<String>::new(), "payloads Discord would refuse");
    // Every card and answer went to https://discord.com, over TLS, as the bot sends them in production.
    let tls = double.tls_calls();
    assert!(tls.iter().any(|c| c == &format!("POST /api/v10/channels/{CHANNEL}/messages")) && tls.iter().any(|c| c.starts_with("PATCH /api/v10/webhooks/")), "{tls:?}");
    h.stop().await;
}

/// 50 joins within a second: the card shows all 50 within 6 s of the burst, and the updater
/// never trips Discord's per-channel limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_50_joins_shows_within_6s_without_429() {
    let double = DiscordDouble::start().await;
    let db = TestDb::new(Db::Sqlite).await;
    let mode = DiscordMode::Gateway;
    let h = std::sync::Arc::new(Harness::start(discord_config(&db, &double, mode)).await);
    send(&h, &double, mode, &command("100", "call", json!([]), HOST, "Ada", "0")).await;
    assert!(eventually(WAIT, || async { double.card(CHANNEL).is_some() }).await);
    let room = room_of(&double);
    let start = Instant::now();
    let joins: Vec<_> = (0..50u64)
        .map(|i| {
            let (h, room) = (h.clone(), room.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until((start + Duration::from_millis(i * 20)).into()).await;
                h.join(&room, &format!("Guest {i}"), None).await.0
            })
        })
        .collect();
    for j in joins {
        assert_eq!(j.await.unwrap(), StatusCode::OK);
    }
    let burst_end = Instant::now();
    assert!(
        eventually(Duration::from_secs(6), || async { card_text(&double).contains("In the call (50)") }).await,
        "the card showed all 50 within 6 s of the burst"
    );
    let shown = burst_end.elapsed();
    let edits = double.card(CHANNEL).unwrap().1.edits;
    eprintln!("50 joins: card complete {:.2} s after the burst ({:.2} s after the first join), {edits} edits, {} × 429",
        shown.as_secs_f64(), start.elapsed().as_secs_f64(), double.rate_limited());
    assert_eq!(double.rate_limited(), 0, "the updater kept Discord's per-channel limit");
    std::sync::Arc::into_inner(h).unwrap().stop().await;
}

/// Every second message call fails (a 429 with `retry_after`, a 502, or a stall past the bot's
/// request timeout, in turn); the card still converges to the final attendance, and no call
/// reaches a channel before its `retry_after` has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_converge_under_injected_faults() {
    let double = DiscordDouble::start().await;
    double.set_faults(Faults { every: 2, retry_after: 1.5, stall: Duration::from_millis(1500) });
    let db = TestDb::new(Db::Sqlite).await;
    let mode = DiscordMode::Gateway;
    let settings = callbridge_discord::Settings { request_timeout: Duration::from_millis(500), ..discord_settings(&double, mode) };
    let h = Harness::start(with_discord(&db, settings)).await;
    const LONG: Duration = Duration::from_secs(60);
    send(&h, &double, mode, &command("100", "call", json!([]), HOST, "Ada", "0")).await;
    assert!(eventually(LONG, || async { double.card(CHANNEL).is_some() }).await, "a card is posted despite faults");
    let room = room_of(&double);
    for i in 0..6 {
        assert_eq!(h.join(&room, &format!("Guest {i}"), None).await.0, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(eventually(LONG, || async { card_text(&double).contains("In the call (6)") }).await, "{}", card_text(&double));
    send(&h, &double, mode, &command("101", "lock", json!([]), HOST, "Ada", "0")).await;
    assert!(eventually(LONG, || async { card_text(&double).contains("Locked") }).await);
    send(&h, &double, mode, &command("102", "end", json!([]), HOST, "Ada", "0")).await;
    assert!(eventually(LONG, || async { card_text(&double).contains("Attendance** (6)") }).await, "{}", card_text(&double));
    let r = h.http.get(format!("{}/healthz", h.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (throttled, failed, stalled) = (double.faults_injected("429"), double.faults_injected("5xx"), double.faults_injected("stall"));
    eprintln!("discord faults injected: {throttled} × 429, {failed} × 5xx, {stalled} stalls");
    assert!(throttled > 0 && failed > 0 && stalled > 0, "every kind of fault was injected");
    assert_eq!(double.retry_after_violations(), 0, "a call reached a channel before its retry_after");
    assert_eq!(double.malformed(), Vec::<String>::new(), "payloads Discord would refuse");
    h.stop().await;
}

/// Discord answers one card edit with a global 429: no call of the bot reaches any channel
/// before its `retry_after` has passed (the per-channel pacer alone would let the other
/// channel's edit through), and both cards still show their joiner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_rate_limit_holds_every_channel() {
    const OTHER: &str = "3000000000000000004";
    let (double, _db, h) = on_the_endpoint().await;
    let mode = DiscordMode::Interactions;
    send(&h, &double, mode, &command("800", "call", json!([]), HOST, "Ada", "0")).await;
    let mut elsewhere = command("801", "call", json!([]), HOST, "Ada", "0");
    elsewhere["channel_id"] = json!(OTHER);
    send(&h, &double, mode, &elsewhere).await;
    assert!(eventually(WAIT, || async { double.card(CHANNEL).is_some() && double.card(OTHER).is_some() }).await, "a card in each channel");
    let card = |channel: &str| double.card(channel).map(|(_, m)| m.body).unwrap_or_default();
    let room_in = |channel: &str| card(channel)["components"][0]["components"][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let (here, there) = (room_in(CHANNEL), room_in(OTHER));
    double.limit_globally(2.0);
    assert_eq!(h.join(&here, "Guest A", None).await.0, StatusCode::OK);
    // Guest B arrives once the global 429 is out, so the other channel's edit comes after the
    // bot was told (a fixed 100 ms here let that edit leave while the 429 was still on its way
    // back on a loaded machine: a request in flight, not a rule broken).
    assert!(eventually(WAIT, || async { double.faults_injected("global 429") == 1 }).await, "the global 429 was served");
    assert_eq!(h.join(&there, "Guest B", None).await.0, StatusCode::OK);
    let shown = || async { card(CHANNEL)["embeds"].to_string().contains("Guest A") && card(OTHER)["embeds"].to_string().contains("Guest B") };
    assert!(eventually(WAIT, shown).await, "{} / {}", card(CHANNEL)["embeds"], card(OTHER)["embeds"]);
    assert_eq!(double.faults_injected("global 429"), 1, "the global 429 was served");
    assert_eq!(double.retry_after_violations(), 0, "a call reached Discord during a global rate limit");
    assert_eq!(double.malformed(), Vec::<String>::new(), "payloads Discord would refuse");
    h.stop().await;
}

/// Two people type `/call` in one channel at once: each gets their own host link, in their own
/// answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_calls_at_once_each_answer_their_caller() {
    let (double, _db, h) = on_the_endpoint().await;
    let mode = DiscordMode::Interactions;
    let (first, second) = (command("700", "call", json!([]), HOST, "Ada", "0"), command("701", "call", json!([]), MEMBER, "Bob", "0"));
    let (a, b) = tokio::join!(send(&h, &double, mode, &first), send(&h, &double, mode, &second));
    assert_eq!((a.0, b.0), (StatusCode::OK, StatusCode::OK));
    let link = |token: &str| double.original(token).and_then(|o| o["content"].as_str().map(str::to_owned));
    assert!(eventually(WAIT, || async { link("itoken-700").is_some() && link("itoken-701").is_some() }).await);
    let (la, lb) = (link("itoken-700").unwrap(), link("itoken-701").unwrap());
    assert!(la.contains("#host=") && lb.contains("#host="), "{la} / {lb}");
    assert_ne!(la, lb, "each caller got their own room's host link");
    assert_eq!(double.messages_in(CHANNEL).len(), 2, "two cards");
    assert_eq!(double.malformed(), Vec::<String>::new(), "payloads Discord would refuse");
    h.stop().await;
}

/// A stopped adapter's webhook refuses work it cannot hand over (503), the bridge answers it
/// again once started, and the route itself stays mounted throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interactions_endpoint_follows_its_adapter() {
    let (double, _db, h) = on_the_endpoint().await;
    assert!(h.daemon.adapters.stop("discord").await);
    let (status, body) = post_signed(&h, &command("900", "call", json!([]), HOST, "Ada", "0"), None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("busy")), "{body}");
    assert_eq!(post_signed(&h, &json!({"type": 1}), None).await.0, StatusCode::OK, "Discord's pings are still answered");
    assert!(h.daemon.adapters.start("discord"));
    let (status, answer) = post_signed(&h, &command("901", "call", json!([]), HOST, "Ada", "0"), None).await;
    assert_eq!((status, answer["type"].as_i64()), (StatusCode::OK, Some(5)), "{answer}");
    assert!(eventually(WAIT, || async { double.card(CHANNEL).is_some() }).await, "the call after the start gets its card");
    assert_eq!(double.malformed(), Vec::<String>::new(), "payloads Discord would refuse");
    h.stop().await;
}

/// Hardening point 11: a signed `/call` replayed within its five-minute window (the same
/// body, signature and timestamp) is answered as before but acted on once: one room, one card.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_interaction_is_not_acted_on_twice() {
    let (double, _db, h) = on_the_endpoint().await;
    let call = command("950", "call", json!([]), HOST, "Ada", "0");
    let raw = serde_json::to_vec(&call).unwrap();
    let signature = sign(&raw, now_unix());
    let first = post_signed(&h, &call, Some(signature.clone())).await;
    assert!(eventually(WAIT, || async { double.card(CHANNEL).is_some() }).await, "the first one is acted on");
    let replay = post_signed(&h, &call, Some(signature)).await;
    assert_eq!(replay, first, "a replay gets the same answer");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(double.messages_in(CHANNEL).len(), 1, "one card: the replay minted no room");
    // A new interaction (another id) is acted on as usual.
    send(&h, &double, DiscordMode::Interactions, &command("951", "call", json!([]), HOST, "Ada", "0")).await;
    assert!(eventually(WAIT, || async { double.messages_in(CHANNEL).len() == 2 }).await, "a second /call gets its card");
    assert_eq!(double.malformed(), Vec::<String>::new(), "payloads Discord would refuse");
    h.stop().await;
}

/// Hardening point 12: Discord limits edits of messages older than an hour (400, code 30046).
/// A card kept live through a long call meets it; the updater backs off with the latest state
/// and the card converges once edits are taken again, never dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_waits_out_discords_edit_limit_on_old_messages() {
    let (double, _db, h) = on_the_endpoint().await;
    send(&h, &double, DiscordMode::Interactions, &command("960", "call", json!([]), HOST, "Ada", "0")).await;
    assert!(eventually(WAIT, || async { double.card(CHANNEL).is_some() }).await, "a card");
    let room = room_of(&double);
    double.refuse_old_message_edits(Duration::from_secs(4));
    assert_eq!(h.join(&room, "Early Guest", None).await.0, StatusCode::OK);
    assert!(eventually(WAIT, || async { double.faults_injected("30046") > 0 }).await, "an edit met the limit");
    assert_eq!(h.join(&room, "Later Guest", None).await.0, StatusCode::OK);
    let both = || async { card_text(&double).contains("Early Guest") && card_text(&double).contains("Later Guest") };
    assert!(eventually(Duration::from_secs(40), both).await, "the card converged after the limit: {}", card_text(&double));
    assert_eq!(double.malformed(), Vec::<String>::new(), "payloads Discord would refuse");
    h.stop().await;
}

/// Ringing on Discord: `/ringme`, `/ring` with a mentioned member (Discord names the user in
/// the option), the prompt in a DM with Accept and Decline buttons, Accept from the DM, and a
/// member whose DMs are closed shown as not reachable. Answers to commands stay ephemeral.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringing_through_direct_messages() {
    let (double, db, h) = on_the_endpoint().await;
    let mode = DiscordMode::Interactions;
    const CLOSED: &str = "6000000000000000009";
    double.close_dms(CLOSED);
    assert!(eventually(WAIT, || async { double.commands().values().any(|c| c.to_string().contains("\"ringme\"")) }).await, "/ringme is registered");

    // The member opts in (an ephemeral answer); the host calls and rings the member and, by
    // mention, someone who never opted in but whose DMs are closed.
    send(&h, &double, mode, &command("400", "ringme", json!([]), MEMBER, "Mallory", "0")).await;
    assert!(eventually(WAIT, || async { double.original("itoken-400").is_some_and(|o| o["content"].as_str().unwrap().contains("rung privately")) }).await);
    send(&h, &double, mode, &command("401", "call", json!([{"name": "title", "type": 3, "value": "Sync"}]), HOST, "Ada", "0")).await;
    assert!(eventually(WAIT, || async { double.card(CHANNEL).is_some() }).await);
    let card_id = double.card(CHANNEL).unwrap().0;
    let room = room_of(&double);
    send(&h, &double, mode, &command("402", "ring", json!([{"name": "message", "type": 3, "value": "@everyone **now**"}]), HOST, "Ada", "0")).await;
    send(&h, &double, mode, &command("403", "ring", json!([{"name": "who", "type": 6, "value": CLOSED}]), HOST, "Ada", "0")).await;

    // The member's DM: the prompt, inert, with two buttons.
    assert!(eventually(WAIT, || async { double.dm_with(MEMBER).is_some_and(|dm| !double.messages_in(&dm).is_empty()) }).await, "a DM");
    let dm = double.dm_with(MEMBER).unwrap();
    let (prompt_id, prompt) = double.messages_in(&dm).into_iter().next().unwrap();
    let content = prompt.body["content"].as_str().unwrap();
    assert!(content.contains("Ada is calling you: “Sync”") && content.contains("\\*\\*now\\*\\*"), "{content}");
    assert_eq!(prompt.body["allowed_mentions"], json!({"parse": []}));
    let ids: Vec<&str> = prompt.body["components"][0]["components"].as_array().unwrap().iter().map(|b| b["custom_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["accept", "decline"]);
    assert!(card_shows(&double, "Mallory 📞 ringing").await, "{}", card_text(&double));
    assert!(card_shows(&double, "not reachable privately").await, "the member with closed DMs: {}", card_text(&double));

    // Accept in the DM: the prompt becomes the personal link, and the card says accepted.
    assert_eq!(send(&h, &double, mode, &press_in_dm("404", "accept", &dm, &prompt_id, MEMBER, "Mallory")).await, (StatusCode::OK, json!({"type": 6})));
    assert!(eventually(WAIT, || async {
        double.messages_in(&dm).first().is_some_and(|(_, m)| m.body["content"].as_str().unwrap().contains("#as=") && m.body["components"] == json!([]))
    }).await, "{:?}", double.messages_in(&dm).first().map(|(_, m)| m.body.clone()));
    assert!(card_shows(&double, "Mallory ✅ accepted").await, "{}", card_text(&double));
    let _ = (card_id, room);
    assert_eq!(double.mention_violations(), 0, "every message carries empty allowed_mentions");
    assert_eq!(double.rate_limited(), 0);
    assert_eq!(double.malformed(), Vec::<String>::new(), "payloads Discord would refuse");
    h.stop().await;
    db.drop_db().await;
}

/// The double refuses what Discord refuses, with Discord's own codes, so a bot that passes
/// the other tests would pass Discord: limits on payloads, invalid JSON, the channel's 5 per
/// 5 s (429 with its scope and bucket) and the bot's 50 a second (a global 429), both on
/// arrival with no tolerance, and webhook calls with a dead token or before the initial answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_double_refuses_what_discord_refuses() {
    let double = DiscordDouble::start().await;
    let http = reqwest::Client::new();
    let api = format!("{}/api/v10", double.url);
    let send = |path: String, body: String| {
        let request = http.post(format!("{api}{path}")).header("authorization", format!("Bot {BOT_TOKEN}")).header("content-type", "application/json").body(body);
        async move {
            let r = request.send().await.unwrap();
            let headers = r.headers().clone();
            (r.status(), headers, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let message = |content: &str| json!({"content": content, "allowed_mentions": {"parse": []}}).to_string();
    let (status, _, body) = send(format!("/channels/{CHANNEL}/messages"), "{not json".into()).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::BAD_REQUEST, json!(50109)));
    let (status, _, body) = send(format!("/channels/{CHANNEL}/messages"), message(&"x".repeat(2001))).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::BAD_REQUEST, json!(50035)));
    let buttons = json!({"content": "x", "components": [{"type": 1, "components": [{"type": 2, "style": 1, "label": "l", "custom_id": "c".repeat(101)}]}]});
    let (status, _, _) = send("/channels/1/messages".into(), buttons.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a custom_id over 100 characters");

    // The channel's 5 per 5 s: the sixth is refused, with the scope and the bucket.
    for n in 0..5 {
        assert_eq!(send("/channels/10/messages".into(), message("hi")).await.0, StatusCode::OK, "message {n}");
    }
    let (status, headers, body) = send("/channels/10/messages".into(), message("hi")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!((headers["x-ratelimit-scope"].to_str().unwrap(), headers["x-ratelimit-bucket"].to_str().unwrap()), ("user", "channel-10"));
    assert!(body["retry_after"].as_f64().unwrap() > 4.0, "{body}");
    // The bot's 50 a second across channels: the 51st is a global 429 (once the calls above
    // are a second old).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = Instant::now();
    let mut refused = None;
    for n in 0..60 {
        let (status, headers, body) = send(format!("/channels/{}/messages", 100 + n), message("hi")).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((n, headers["x-ratelimit-scope"].to_str().unwrap().to_owned(), body["global"].clone()));
            break;
        }
    }
    assert!(start.elapsed() < Duration::from_secs(1), "the loop must fit in the second it tests");
    assert_eq!(refused, Some((50, "global".to_owned(), json!(true))));

    // A follow-up through the gateway before the initial answer, then with a dead token.
    let call = command("950", "who", json!([]), HOST, "Ada", "0");
    let token = call["token"].as_str().unwrap().to_owned();
    double.mark_dispatched(&call);
    let (status, _, body) = send(format!("/webhooks/{APP_ID}/{token}"), message("early")).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::NOT_FOUND, json!(10015)));
    double.age_interactions(Duration::from_secs(15 * 60 + 1));
    let (status, _, body) = send(format!("/webhooks/{APP_ID}/{token}"), message("late")).await;
    assert_eq!((status, body["code"].clone()), (StatusCode::UNAUTHORIZED, json!(50027)));
    assert_eq!(double.malformed().len(), 5, "each refusal is a bug of the bot: {:?}", double.malformed());
}
