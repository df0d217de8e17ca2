//! One call across Telegram, Discord and Matrix: a gateway of a Telegram group (the Bot API
//! double), a Discord channel (the Discord double, interactions endpoint) and a Matrix room (a
//! real Synapse), with one daemon running all three adapters.

mod common;
#[path = "support/discord_double.rs"]
mod discord_double;
#[path = "support/synapse.rs"]
mod synapse;
#[path = "support/telegram_double.rs"]
mod telegram_double;

use common::{Db, Harness, TestDb, config, eventually};
use discord_double::{CHANNEL, DiscordDouble};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use synapse::{Synapse, User};
use telegram_double::BotApiDouble;

const GROUP: i64 = -1001234567890;
const TG_HOST: i64 = 401;
const TG_MEMBER: i64 = 402;
const DISCORD_MOD: &str = "6000000000000000018";
const MANAGE_CHANNELS: &str = "16";
const WAIT: Duration = Duration::from_secs(20);

struct Platforms {
    telegram: BotApiDouble,
    discord: DiscordDouble,
    hs: Synapse,
    bot: User,
    owner: User,
    room: String,
}

impl Platforms {
    /// What each chat's card shows now: (Telegram text, Discord embed description, Matrix body).
    async fn cards(&self) -> (String, String, String) {
        let telegram = self.telegram.messages_in(GROUP).into_iter().rev().find(|(_, m)| m.parse_mode.as_deref() == Some("HTML")).map(|(_, m)| m.text).unwrap_or_default();
        let discord = discord_card(&self.discord).map(|(_, p)| p.body["embeds"][0]["description"].as_str().unwrap_or_default().to_owned()).unwrap_or_default();
        let matrix = matrix_card(&self.hs, &self.owner, &self.room, &self.bot.user_id).await.unwrap_or_default();
        (telegram, discord, matrix)
    }

    /// Whether every card shows `needle`, within the wait.
    async fn all_show(&self, needle: &str) -> bool {
        eventually(WAIT, || async {
            let (t, d, m) = self.cards().await;
            t.contains(needle) && d.contains(needle) && m.contains(needle)
        })
        .await
    }
}

/// The newest card in the Discord channel.
fn discord_card(discord: &DiscordDouble) -> Option<(String, discord_double::Posted)> {
    discord.messages_in(CHANNEL).into_iter().rev().find(|(_, m)| m.body["embeds"].is_array())
}

/// The bot's newest card in a Matrix room, newest edit applied: its plain body.
async fn matrix_card(hs: &Synapse, user: &User, room: &str, bot: &str) -> Option<String> {
    let timeline = hs.messages(user, room).await;
    let original = timeline.iter().rev().find(|e| e["sender"] == bot && e["content"]["formatted_body"].is_string() && e["content"]["m.relates_to"].is_null())?;
    let id = original["event_id"].as_str()?;
    let latest = timeline
        .iter()
        .filter(|e| e["sender"] == bot && e["content"]["m.relates_to"]["rel_type"] == "m.replace" && e["content"]["m.relates_to"]["event_id"] == id)
        .map(|e| &e["content"]["m.new_content"])
        .next_back()
        .unwrap_or(&original["content"]);
    latest["body"].as_str().map(str::to_owned)
}

fn gateway_config(db: &TestDb, p: &Platforms) -> callbridge::config::Config {
    let file = format!(
        r#"
[[gateways]]
name = "friends"
chats = [
  {{ platform = "telegram", chat = "{GROUP}" }},
  {{ platform = "discord", chat = "{CHANNEL}" }},
  {{ platform = "matrix", chat = "{}" }},
]

[[chats]]
platform = "discord"
chat = "{CHANNEL}"
language = "es"
"#,
        p.room
    );
    let parsed = callbridge::config::Config::parse(&file, Path::new("gateways.toml"), &[]).unwrap();
    let mut c = config(db);
    c.policies = parsed.policies;
    c.validate(Path::new("gateways.toml")).unwrap();
    c.adapters.push(Box::new(callbridge_telegram::Settings {
        token: Some(callbridge::config::Secret::new(telegram_double::BOT_TOKEN)),
        api_url: p.telegram.url.parse().unwrap(),
        debounce: Duration::from_millis(200),
        poll_timeout: Duration::from_secs(2),
        ..Default::default()
    }));
    c.adapters.push(Box::new(callbridge_discord::Settings {
        mode: callbridge_discord::Mode::Interactions,
        token: Some(callbridge::config::Secret::new(discord_double::BOT_TOKEN)),
        application_id: Some(discord_double::APP_ID.parse().unwrap()),
        public_key: discord_double::public_key_hex(),
        guild_ids: vec![discord_double::GUILD.parse().unwrap()],
        http_client: Some(p.discord.client()),
        debounce: Duration::from_millis(200),
        ..Default::default()
    }));
    c.adapters.push(Box::new(callbridge_matrix::Settings {
        homeserver: Some(p.hs.url.parse().unwrap()),
        user: p.bot.user_id.clone(),
        password: Some(callbridge::config::Secret::new(p.bot.password.clone())),
        debounce: Duration::from_millis(200),
        min_interval: Duration::from_millis(200),
        per_minute: 120,
        ..Default::default()
    }));
    c
}

/// A call started while Discord's adapter was off gets its Discord card when it starts; then
/// `/call` in Telegram posts a card in all three chats (the Discord one in Spanish, its
/// chat's language); a join shows on all three; a Discord member with Manage Channels locks
/// from the Discord card and all three show it while a new join gets 423; a plain Telegram
/// member's Lock is refused; 50 joins in a burst reach every card with no platform's limit
/// broken; `/end` in Matrix ends it and all three show the attendance.
#[test]
fn one_call_in_three_chats() {
    // Bounded: a failure must not leave the daemon's Matrix client holding the process.
    common::bounded(Duration::from_secs(300), one_call_in_three_chats_body());
}

async fn one_call_in_three_chats_body() {
    let _ = tracing_subscriber::fmt().with_env_filter("info,sqlx=warn,matrix_sdk=warn,matrix_sdk_crypto=warn").with_test_writer().try_init();
    let hs = Synapse::start().await;
    let bot = hs.register("callbot", false).await;
    let owner = hs.register("owner", false).await;
    let room = hs.create_room(&owner, "friends", &[], false).await;
    let p = Platforms { telegram: BotApiDouble::start().await, discord: DiscordDouble::start().await, hs, bot, owner, room };
    for user in [TG_HOST, TG_MEMBER] {
        p.telegram.start_bot(user);
    }
    let db = TestDb::new(Db::Sqlite).await;

    // A call started while only Telegram runs (Discord's adapter was off, or its node down):
    // once Discord's bridge starts, it posts the card it missed.
    let mut telegram_only = gateway_config(&db, &p);
    telegram_only.adapters.retain(|a| a.platform() == "telegram");
    let early = Harness::start(telegram_only).await;
    p.telegram.say(GROUP, TG_HOST, "Tess", "/call Early");
    assert!(eventually(WAIT, || async { p.telegram.messages_in(GROUP).iter().any(|(_, m)| m.text.contains("Early")) }).await);
    early.stop().await;
    let h = Harness::start(gateway_config(&db, &p)).await;
    let caught_up = || async { discord_card(&p.discord).is_some_and(|(_, m)| m.body["embeds"][0]["title"].as_str().unwrap_or_default().contains("Early")) };
    assert!(eventually(WAIT, caught_up).await, "the missed card, posted at start");
    p.telegram.say(GROUP, TG_HOST, "Tess", "/end");
    assert!(eventually(WAIT, || async { discord_card(&p.discord).is_some_and(|(_, m)| m.body["embeds"][0]["description"].as_str().unwrap_or_default().contains("Terminada")) }).await);

    p.hs.invite(&p.owner, &p.room, &p.bot.user_id).await;
    p.hs.wait_for_join(&p.owner, &p.room, &p.bot.user_id, WAIT).await;

    // One /call in Telegram: a card in each chat.
    p.telegram.say(GROUP, TG_HOST, "Tess", "/call Friends <b>sync</b>");
    assert!(
        eventually(WAIT, || async {
            let (t, d, m) = p.cards().await;
            !t.is_empty() && !d.is_empty() && !m.is_empty()
        })
        .await,
        "a card in every chat: {:?}",
        p.cards().await
    );
    let (telegram, discord, matrix) = p.cards().await;
    assert!(telegram.contains("Video call hosted by Tess") && matrix.contains("Video call hosted by Tess"), "{telegram}\n{matrix}");
    assert!(discord.contains("Videollamada de **Tess**"), "the Discord chat speaks Spanish: {discord}");
    let (discord_card, posted) = discord_card(&p.discord).unwrap();
    assert_eq!(posted.body["embeds"][0]["title"], "🎥 Friends <b\\>sync</b\\>", "Markdown escaped");
    let link = posted.body["embeds"][0]["url"].as_str().unwrap().to_owned();
    let room_id = link.rsplit('/').next().unwrap().to_owned();
    // Each platform's card links the same room.
    let (tg_card, tg_shown) = p.telegram.messages_in(GROUP).into_iter().rev().find(|(_, m)| m.parse_mode.as_deref() == Some("HTML")).unwrap();
    assert_eq!(tg_shown.reply_markup["inline_keyboard"][0][0]["url"].as_str(), Some(link.as_str()));

    // A join shows on all three.
    let (s, _) = h.join(&room_id, "Zoe", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(p.all_show("Zoe").await, "{:?}", p.cards().await);

    // A Telegram member joins as themselves: every card says Telegram vouched for the name.
    let q = p.telegram.press(GROUP, tg_card, TG_MEMBER, "Mo <i>", "me");
    assert!(eventually(WAIT, || async { p.telegram.answer_to(&q).is_some() }).await);
    assert!(eventually(WAIT, || async { p.telegram.messages_in(TG_MEMBER).iter().any(|(_, m)| m.text.contains("#as=")) }).await, "a personal link");
    let (_, personal) = p.telegram.messages_in(TG_MEMBER).into_iter().find(|(_, m)| m.text.contains("#as=")).unwrap();
    let identity = personal.text.split("#as=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let r = h.http.post(format!("{}/r/{room_id}/join", h.base)).json(&serde_json::json!({"name": "typed", "identity": identity})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        eventually(WAIT, || async {
            let (t, d, m) = p.cards().await;
            t.contains("Mo &lt;i&gt; (Telegram)") && d.contains("Mo <i\\> (Telegram)") && m.contains("Mo <i> (Telegram)")
        })
        .await,
        "{:?}",
        p.cards().await
    );
    let view = h.room(&room_id).await;
    assert!(view["participants"].as_array().unwrap().iter().any(|p| p["name"] == "Mo <i>" && p["vouched_by"] == "telegram"), "{view}");

    // A plain Telegram member may not lock from the Telegram card.
    let q = p.telegram.press(GROUP, tg_card, TG_MEMBER, "Mo", "lock");
    assert!(eventually(WAIT, || async { p.telegram.answer_to(&q).is_some() }).await);
    assert_eq!(p.telegram.answer_to(&q).unwrap()["show_alert"], true);
    assert_eq!(h.room(&room_id).await["locked"], false);

    // A Discord member with Manage Channels locks from the Discord card: all three say so.
    let press = discord_double::press("900", "lock", &discord_card, DISCORD_MOD, "Dee", MANAGE_CHANNELS, &[]);
    let (s, _) = discord_double::post_interaction(&h.http, &h.base, &press, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(eventually(WAIT, || async { h.room(&room_id).await["locked"] == true }).await);
    let (telegram, discord, matrix) = (
        "🔒 Locked — no new joiners",
        "🔒 Cerrada: no entra nadie más",
        "🔒 Locked — no new joiners",
    );
    assert!(
        eventually(WAIT, || async {
            let (t, d, m) = p.cards().await;
            t.contains(telegram) && d.contains(discord) && m.contains(matrix)
        })
        .await,
        "{:?}",
        p.cards().await
    );
    assert_eq!(h.join(&room_id, "Late", None).await.0, StatusCode::LOCKED);

    // Unlocked again from Telegram by the host; a burst of 50 joins reaches every card.
    p.telegram.press(GROUP, tg_card, TG_HOST, "Tess", "unlock");
    assert!(eventually(WAIT, || async { h.room(&room_id).await["locked"] == false }).await);
    let joins = (0..48).map(|i| {
        let h = &h;
        let room_id = &room_id;
        async move { h.join(room_id, &format!("Guest {i:02}"), None).await.0 }
    });
    let statuses = futures::future::join_all(joins).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    assert!(p.all_show("(50)").await, "every card counts 50: {:?}", p.cards().await);
    assert_eq!(p.telegram.rate_limited(), 0, "Telegram's limits held");
    assert_eq!(p.telegram.retry_after_violations(), 0);
    assert_eq!((p.discord.rate_limited(), p.discord.retry_after_violations()), (0, 0), "Discord's limits held");

    // `/end` in Matrix (the room's owner administers it): every card shows the attendance.
    p.hs.send_text(&p.owner, &p.room, "!end").await;
    assert!(
        eventually(WAIT, || async {
            let (t, d, m) = p.cards().await;
            t.contains("Attendance") && t.contains("Zoe") && d.contains("Asistencia") && d.contains("Zoe") && m.contains("Attendance") && m.contains("Zoe")
        })
        .await,
        "{:?}",
        p.cards().await
    );
    let view: Value = h.room(&room_id).await;
    assert_eq!(view["ended"], true);
    assert_eq!(p.telegram.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    assert_eq!(p.discord.malformed(), Vec::<String>::new(), "payloads Discord would refuse");
    h.stop().await;
    db.drop_db().await;
}
