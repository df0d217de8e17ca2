//! Ringing people into a call, the host's private notices and the call log, end to end on
//! Telegram: the real daemon and bridge, teloxide, and the Bot API double.

mod common;
#[path = "support/telegram_double.rs"]
mod telegram_double;

use common::{Db, Harness, TestDb, config, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use telegram_double::{BOT_TOKEN, BotApiDouble, Shown};

const GROUP: i64 = -1001234567890;
const HOST: i64 = 111;
const HOST_NAME: &str = "Hana <b>&";
const ADA: i64 = 301;
const BOB: i64 = 302;
const CY: i64 = 303;
/// Never opened a private chat with the bot.
const DEE: i64 = 304;
const HOSTILE: &str = "<b>come</b> & <a href=\"x\">now</a>";
const WAIT: Duration = Duration::from_secs(15);
const RING_TIMEOUT: Duration = Duration::from_secs(3);

fn ringing_config(db: &TestDb, double: &BotApiDouble) -> callbridge::config::Config {
    let mut c = config(db);
    c.rooms.ring_timeout = RING_TIMEOUT;
    c.adapters.push(Box::new(callbridge_telegram::Settings {
        token: Some(callbridge::config::Secret::new(BOT_TOKEN)),
        api_url: double.url.parse().unwrap(),
        debounce: Duration::from_millis(200),
        poll_timeout: Duration::from_secs(2),
        ..Default::default()
    }));
    c
}

/// The group's card: (message id, text, markup).
fn card(double: &BotApiDouble) -> Option<(i64, Shown)> {
    double.messages_in(GROUP).into_iter().rev().find(|(_, m)| m.parse_mode.as_deref() == Some("HTML"))
}

async fn card_shows(double: &BotApiDouble, needle: &str) -> bool {
    eventually(WAIT, || async { card(double).is_some_and(|(_, m)| m.text.contains(needle)) }).await
}

/// The latest private message to `user` whose text holds `needle`.
fn private(double: &BotApiDouble, user: i64, needle: &str) -> Option<(i64, Shown)> {
    double.messages_in(user).into_iter().rev().find(|(_, m)| m.text.contains(needle))
}

async fn private_shows(double: &BotApiDouble, user: i64, needle: &str) -> (i64, Shown) {
    assert!(
        eventually(WAIT, || async { private(double, user, needle).is_some() }).await,
        "{user} got a private message with {needle:?}: {:?}",
        double.messages_in(user)
    );
    private(double, user, needle).unwrap()
}

async fn group_says(double: &BotApiDouble, needle: &str) -> bool {
    eventually(WAIT, || async { double.messages_in(GROUP).iter().any(|(_, m)| m.parse_mode.is_none() && m.text.contains(needle)) }).await
}

/// Presses a button of a message in `chat`; returns the answer.
async fn press(double: &BotApiDouble, chat: i64, message: i64, user: i64, name: &str, data: &str) -> Value {
    let q = double.press(chat, message, user, name, data);
    assert!(eventually(WAIT, || async { double.answer_to(&q).is_some() }).await, "press {data} was answered");
    double.answer_to(&q).unwrap()
}

fn buttons(m: &Shown) -> Vec<String> {
    m.reply_markup["inline_keyboard"].as_array().into_iter().flatten().flat_map(|row| row.as_array().unwrap().iter()).filter_map(|b| b["callback_data"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringing_sqlite() {
    ringing(Db::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ringing_postgres() {
    ringing(Db::Postgres).await
}

/// Three members opt in, one cannot; the host rings: one accepts and joins under their name,
/// one declines, one never answers (missed); names and messages stay inert; `/ring @name`
/// finds people by their @-name and says whom it cannot ring.
async fn ringing(backend: Db) {
    let _ = tracing_subscriber::fmt().with_env_filter("info,sqlx=warn").with_test_writer().try_init();
    let double = BotApiDouble::start().await;
    for user in [HOST, ADA, BOB, CY] {
        double.start_bot(user);
    }
    double.set_username(ADA, "ada_l");
    let db = TestDb::new(backend).await;
    let h = Harness::start(ringing_config(&db, &double)).await;

    // Opting in: a private confirmation, and a word in the group.
    for (user, name) in [(ADA, "Ada"), (BOB, "Bob"), (CY, "Cy <i>")] {
        double.say(GROUP, user, name, "/ringme");
        private_shows(&double, user, "You will be rung here").await;
    }
    assert!(group_says(&double, "Cy <i>: you will be rung privately for calls here.").await);
    // `/ringme on` again changes nothing and says so.
    double.say(GROUP, BOB, "Bob", "/ringme on");
    assert!(group_says(&double, "You are rung for calls here.").await);
    // Someone the bot cannot write to is told how, and is not opted in.
    double.say(GROUP, DEE, "Dee", "/ringme");
    assert!(group_says(&double, "Dee: I cannot write to you privately yet. Open a private chat with me and send /start").await);

    // The host starts a call and rings everyone who opted in, with a hostile message.
    double.start_bot(HOST);
    double.say(GROUP, HOST, HOST_NAME, "/call Standup");
    assert!(eventually(WAIT, || async { card(&double).is_some() }).await, "a card");
    let (card_id, shown) = card(&double).unwrap();
    let room_id = shown.reply_markup["inline_keyboard"][0][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    double.say(GROUP, HOST, HOST_NAME, &format!("/ring {HOSTILE}"));
    let mut prompts = Vec::new();
    for user in [ADA, BOB, CY] {
        let (id, m) = private_shows(&double, user, "is calling you").await;
        assert!(m.text.contains(&format!("{HOST_NAME} is calling you: “Standup”, from Team chat.")), "{}", m.text);
        assert!(m.text.contains(&format!("“{HOSTILE}”")), "the message as typed: {}", m.text);
        assert_eq!(m.parse_mode, None, "a prompt is plain text: nothing in it is markup");
        assert_eq!(buttons(&m), ["accept", "decline"]);
        prompts.push(id);
    }
    assert!(private(&double, DEE, "calling").is_none());
    assert!(card_shows(&double, "<b>Ringing:</b> Ada 📞 ringing, Bob 📞 ringing, Cy &lt;i&gt; 📞 ringing").await, "{:?}", card(&double));

    // Ada accepts: her prompt becomes her personal link, and she joins under her name.
    let answer = press(&double, ADA, prompts[0], ADA, "Ada", "accept").await;
    assert_ne!(answer["show_alert"], true, "{answer}");
    let (_, accepted) = private_shows(&double, ADA, "#as=").await;
    assert!(buttons(&accepted).is_empty(), "an answered prompt keeps no buttons");
    let identity = accepted.text.split("#as=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let r = h.http.post(format!("{}/r/{room_id}/join", h.base)).json(&json!({"name": "typed", "identity": identity})).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "Ada");
    assert!(card_shows(&double, "Ada ✅ accepted").await, "{:?}", card(&double));
    assert!(card_shows(&double, "<b>In the call (1):</b> Ada").await, "{:?}", card(&double));
    // A ring is answered by whom it rang only.
    let refused = press(&double, BOB, prompts[1], ADA, "Ada", "decline").await;
    assert_eq!(refused["show_alert"], true, "{refused}");

    // Bob declines; Cy never answers and is missed after the timeout, told so privately.
    press(&double, BOB, prompts[1], BOB, "Bob", "decline").await;
    assert!(card_shows(&double, "Bob ✖ declined").await, "{:?}", card(&double));
    assert!(card_shows(&double, "Cy &lt;i&gt; ⌛ missed").await, "{:?}", card(&double));
    let (_, missed) = private_shows(&double, CY, "Missed call from").await;
    assert_eq!(buttons(&missed), ["accept"], "a missed call can still be joined while it is on");

    // `/ring` again rings nobody new (Ada is in; Bob and Cy answered: they are rung again).
    // `/ring @ada_l` finds Ada by her @-name (she is in the call: skipped); an unknown name is said.
    double.say(GROUP, HOST, HOST_NAME, "/ring @ada_l @nobody hi");
    assert!(group_says(&double, "I cannot ring @nobody: people I can ring send /ringme here first.").await);

    // The card's 🔔 button switches the presser's opt-in.
    assert!(buttons(&card(&double).unwrap().1).contains(&"ringme".to_owned()));
    let switched = press(&double, GROUP, card_id, BOB, "Bob", "ringme").await;
    assert!(switched["text"].as_str().unwrap().contains("not be rung"), "{switched}");

    // `/calls` goes to the asker privately: the open call with its link.
    double.say(GROUP, HOST, HOST_NAME, "/calls");
    let (_, log) = private_shows(&double, HOST, "Calls in this chat").await;
    assert!(log.text.contains("Open now:\n🟢 “Standup” — hosted by Hana <b>& — in now (1): Ada"), "{}", log.text);
    assert!(log.text.contains(&format!("/r/{room_id}")), "{}", log.text);

    // The call ends: its card offers Call again; the log lists it with who came.
    let (s, _) = h.act(&room_id, "end", common::API_TOKEN).await;
    assert_eq!(s, StatusCode::OK);
    assert!(card_shows(&double, "Attendance").await);
    assert_eq!(buttons(&card(&double).unwrap().1), ["again"]);
    double.say(GROUP, HOST, HOST_NAME, "/calls");
    let (_, log) = private_shows(&double, HOST, "Ended (the last 1)").await;
    assert!(log.text.contains("⚫ “Standup” — ") && log.text.contains("came (1): Ada"), "{}", log.text);

    // Call again: a new card, and the people rung last time rung again.
    let before = double.messages_in(ADA).len();
    let again = press(&double, GROUP, card_id, HOST, HOST_NAME, "again").await;
    assert_ne!(again["show_alert"], true, "{again}");
    assert!(
        eventually(WAIT, || async { card(&double).is_some_and(|(id, m)| id != card_id && m.text.contains("Standup") && m.text.contains("Ringing")) }).await,
        "{:?}",
        card(&double)
    );
    assert!(eventually(WAIT, || async { double.messages_in(ADA).len() > before }).await, "Ada is rung again");
    assert!(card_shows(&double, "Ada 📞 ringing").await, "{:?}", card(&double));

    // The host takes Ada's ring back: her prompt says so, and the card no longer lists her.
    double.say(GROUP, HOST, HOST_NAME, "/unring @ada_l");
    private_shows(&double, ADA, "took back the call “Standup”").await;
    assert!(eventually(WAIT, || async { card(&double).is_some_and(|(_, m)| m.text.contains("Ringing") && !m.text.contains("Ada 📞")) }).await, "{:?}", card(&double));
    // Someone who rang nobody has nothing to take back.
    double.say(GROUP, BOB, "Bob", "/unring");
    assert!(group_says(&double, "No ring of yours to take back there").await);

    assert_eq!(double.rate_limited(), 0, "every send kept Telegram's pacing");
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_hears_knocks_and_arrivals_privately() {
    let _ = tracing_subscriber::fmt().with_env_filter("info,sqlx=warn").with_test_writer().try_init();
    let double = BotApiDouble::start().await;
    double.start_bot(HOST);
    let db = TestDb::new(Db::Sqlite).await;
    let h = Harness::start(ringing_config(&db, &double)).await;
    double.say(GROUP, HOST, HOST_NAME, "/call Office hours");
    assert!(eventually(WAIT, || async { card(&double).is_some() }).await, "a card");
    let (_, shown) = card(&double).unwrap();
    let room_id = shown.reply_markup["inline_keyboard"][0][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();

    // Arrival notices, once asked for (host only).
    double.say(GROUP, ADA, "Ada", "/notify");
    assert!(group_says(&double, "Only the host of this call hears who arrives.").await);
    double.say(GROUP, HOST, HOST_NAME, "/notify");
    assert!(group_says(&double, "I will tell you privately who arrives in your call.").await);
    let (s, _) = h.join(&room_id, "Bob <script>", None).await;
    assert_eq!(s, StatusCode::OK);
    private_shows(&double, HOST, "🚪 Bob <script> joined your call “Office hours” (1 in now).").await;

    // A knock on the locked room reaches the host privately; Admit there lets the knocker in.
    let (s, _) = h.act(&room_id, "lock", common::API_TOKEN).await;
    assert_eq!(s, StatusCode::OK);
    let r = h.http.post(format!("{}/r/{room_id}/knock", h.base)).json(&json!({"name": "Eve <i>"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let knock: Value = r.json().await.unwrap();
    let (id, prompt) = private_shows(&double, HOST, "Eve <i>").await;
    assert!(prompt.text.contains("asks to join your locked call “Office hours”"), "{}", prompt.text);
    assert_eq!(buttons(&prompt), ["accept", "decline"]);
    // Only the host (or an admin) may answer it.
    let refused = press(&double, HOST, id, ADA, "Ada", "accept").await;
    assert_eq!(refused["show_alert"], true, "{refused}");
    press(&double, HOST, id, HOST, HOST_NAME, "accept").await;
    let status_url = format!("{}/r/{room_id}/knocks/{}?token={}", h.base, knock["knock_id"].as_str().unwrap(), knock["token"].as_str().unwrap());
    let status: Value = h.http.get(&status_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["status"], "admitted");
    let (_, answered) = private_shows(&double, HOST, "was let in").await;
    assert!(buttons(&answered).is_empty());
    // Exactly one notice for that knock.
    let notices = double.calls_of("sendMessage").into_iter().filter(|c| c.body["chat_id"] == HOST && c.body["text"].as_str().unwrap().contains("asks to join"));
    assert_eq!(notices.count(), 1);
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
    db.drop_db().await;
}

/// A call scheduled 30 minutes ahead: its card shows the start, its link counts down and joins
/// wait; 10 minutes before, a reminder and the room opens; a restart in between loses nothing;
/// at the start, a reminder and the opted-in member is rung, and the card drops the start. A
/// cancelled one never fires, and a time that has passed is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_calls() {
    let _ = tracing_subscriber::fmt().with_env_filter("info,sqlx=warn").with_test_writer().try_init();
    let double = BotApiDouble::start().await;
    for user in [HOST, ADA] {
        double.start_bot(user);
    }
    let db = TestDb::new(Db::Sqlite).await;
    let clock = callbridge::clock::Clock::default();
    let h = Harness::start_with_clock(ringing_config(&db, &double), clock.clone()).await;
    double.say(GROUP, ADA, "Ada", "/ringme");
    private_shows(&double, ADA, "You will be rung here").await;

    double.say(GROUP, HOST, HOST_NAME, "/call in 30m Standup");
    assert!(card_shows(&double, "🕒 Starts ").await, "{:?}", card(&double));
    let (card_id, shown) = card(&double).unwrap();
    assert!(shown.text.contains("(UTC)"), "{}", shown.text);
    let room_id = shown.reply_markup["inline_keyboard"][0][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    assert!(private(&double, ADA, "is calling you").is_none(), "nobody is rung before the start");

    // The link waits: joins get 425 with the opening time; the page counts down.
    let (s, body) = h.join(&room_id, "Early", None).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::TOO_EARLY, Some("not_yet")), "{body}");
    assert!(body["opens_at"].is_string(), "{body}");
    assert!(h.room(&room_id).await["starts_at"].is_string());
    let page = h.http.get(format!("{}/r/{room_id}", h.base)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("data-state=\"scheduled\"") && page.contains("id=\"countdown\"") && page.contains("data-opens-at="), "the waiting page");

    // 20 minutes on: the reminder, and the room is open.
    clock.advance(Duration::from_secs(20 * 60 + 5));
    assert!(group_says(&double, "⏰ “Standup” starts in 10 min: ").await);
    assert_eq!(h.join(&room_id, "On time", None).await.0, StatusCode::OK);

    // A restart between the two reminders, at once, loses nothing and repeats nothing (the new
    // run's pacer counts its start as a send, so its first send keeps Telegram's second).
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
    let h = Harness::start_with_clock(ringing_config(&db, &double), clock.clone()).await;
    clock.advance(Duration::from_secs(10 * 60));
    assert!(group_says(&double, "📞 “Standup” is starting now: ").await);
    private_shows(&double, ADA, "is calling you: “Standup”").await;
    assert!(eventually(WAIT, || async { double.message(GROUP, card_id).is_some_and(|m| !m.text.contains("🕒")) }).await, "the card drops the start");
    let said = |needle: &'static str| double.messages_in(GROUP).iter().filter(|(_, m)| m.text.contains(needle)).count();
    assert_eq!((said("starts in 10 min"), said("is starting now")), (1, 1), "each reminder once");

    // A cancelled call never fires; a time that has passed is refused.
    double.say(GROUP, HOST, HOST_NAME, "/call in 15m Later");
    assert!(card_shows(&double, "Later").await);
    double.say(GROUP, HOST, HOST_NAME, "/end");
    assert!(card_shows(&double, "Ended").await, "{:?}", card(&double));
    clock.advance(Duration::from_secs(16 * 60));
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(double.messages_in(GROUP).iter().filter(|(_, m)| m.parse_mode.is_none() && m.text.contains("Later")).count(), 0);
    double.say(GROUP, HOST, HOST_NAME, "/call today at 0:00 Past");
    assert!(group_says(&double, "That time has passed").await);
    let limited: Vec<String> = double.calls().iter().filter(|c| c.status == 429).map(|c| format!("{} {}", c.method, c.body)).collect();
    assert_eq!(double.rate_limited(), 0, "{limited:?}");
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
    db.drop_db().await;
}
