//! The Telegram adapter end to end: the real daemon, its bridge and card updater, teloxide, and
//! a Bot API double on loopback (tests/support/telegram_double.rs).

mod common;
#[path = "support/telegram_double.rs"]
mod telegram_double;

use common::{Db, Harness, TestDb, config, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use telegram_double::{BOT_TOKEN, BotApiDouble, Faults};

const GROUP: i64 = -1001234567890;
const HOST: i64 = 111;
const HOST_NAME: &str = "Ada <b>&";
const OTHER: i64 = 222;
const OTHER_GROUP: i64 = -1009876543210;
const WAIT: Duration = Duration::from_secs(15);

fn telegram_config(db: &TestDb, double: &BotApiDouble) -> callbridge::config::Config {
    with_telegram(db, telegram_settings(double))
}

fn with_telegram(db: &TestDb, settings: callbridge_telegram::Settings) -> callbridge::config::Config {
    let mut c = config(db);
    c.adapters.push(Box::new(settings));
    c
}

fn telegram_settings(double: &BotApiDouble) -> callbridge_telegram::Settings {
    callbridge_telegram::Settings {
        token: Some(callbridge::config::Secret::new(BOT_TOKEN)),
        api_url: double.url.parse().unwrap(),
        debounce: Duration::from_millis(200),
        poll_timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

/// The card (first message with a Join button) in `chat`: (message id, text, markup).
fn card(double: &BotApiDouble, chat: i64) -> Option<(i64, String, Value)> {
    double
        .messages_in(chat)
        .into_iter()
        .find(|(_, m)| m.reply_markup.to_string().contains("\"url\"") || m.text.contains("Attendance"))
        .map(|(id, m)| (id, m.text, m.reply_markup))
}

async fn card_shows(double: &BotApiDouble, chat: i64, needle: &str) -> bool {
    eventually(WAIT, || async { card(double, chat).is_some_and(|(_, text, _)| text.contains(needle)) }).await
}

async fn press(double: &BotApiDouble, message: i64, user: i64, name: &str, data: &str) -> Value {
    let q = double.press(GROUP, message, user, name, data);
    assert!(eventually(WAIT, || async { double.answer_to(&q).is_some() }).await, "press {data} was answered");
    double.answer_to(&q).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_card_lock_knock_end_across_a_restart_sqlite() {
    call_card_lock_knock_end_across_a_restart(Db::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_card_lock_knock_end_across_a_restart_postgres() {
    call_card_lock_knock_end_across_a_restart(Db::Postgres).await
}

async fn call_card_lock_knock_end_across_a_restart(backend: Db) {
    let _ = tracing_subscriber::fmt().with_env_filter("info,sqlx=warn").with_test_writer().try_init();
    let double = BotApiDouble::start().await;
    double.start_bot(HOST);
    let db = TestDb::new(backend).await;
    let h = Harness::start(telegram_config(&db, &double)).await;

    assert!(eventually(WAIT, || async { !double.calls_of("setMyCommands").is_empty() }).await, "setMyCommands on start");
    let commands = &double.calls_of("setMyCommands")[0].body["commands"];
    for c in ["call", "lock", "unlock", "end", "who", "help"] {
        assert!(commands.as_array().unwrap().iter().any(|x| x["command"] == c && x["description"].as_str().unwrap().len() >= 3), "{c}");
    }

    // `/call@Bot Standup` in the group posts a card with a Join URL button.
    double.say(GROUP, HOST, HOST_NAME, "/call@CallbridgeBot <i>Standup</i> & more");
    assert!(eventually(WAIT, || async { card(&double, GROUP).is_some() }).await, "a card is posted");
    let (card_id, text, markup) = card(&double, GROUP).unwrap();
    assert!(text.contains("&lt;i&gt;Standup&lt;/i&gt; &amp; more"), "{text}");
    assert!(text.contains("Ada &lt;b&gt;&amp;"), "{text}");
    let join_url = markup["inline_keyboard"][0][0]["url"].as_str().expect("Join URL button").to_owned();
    assert_eq!(markup["inline_keyboard"][0][0]["text"], "Join");
    let room_id = join_url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(room_id.len(), 22);
    // The host got the host link privately.
    assert!(eventually(WAIT, || async { double.messages_in(HOST).iter().any(|(_, m)| m.text.contains("#host=")) }).await);

    // A browser-side join shows on the card.
    let (s, _) = h.join(&room_id, "Bob <b>bold</b> & co", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(card_shows(&double, GROUP, "Bob &lt;b&gt;bold&lt;/b&gt; &amp; co").await, "{:?}", card(&double, GROUP));

    // "Join as me": the personal link goes to the presser's private chat with the bot, and it
    // joins under their Telegram name; someone who never started the bot is told how.
    let (_, _, markup) = card(&double, GROUP).unwrap();
    assert_eq!(markup["inline_keyboard"][0][1]["callback_data"], "me");
    let told = press(&double, card_id, OTHER, "Mallory", "me").await;
    assert_eq!(told["show_alert"], true);
    assert!(told["text"].as_str().unwrap().contains("private chat"), "{told}");
    let sent = press(&double, card_id, HOST, HOST_NAME, "me").await;
    assert!(sent["text"].as_str().unwrap().contains("sent you"), "{sent}");
    let dm = double.messages_in(HOST).into_iter().map(|(_, m)| m.text).find(|t| t.contains("#as=")).expect("the personal link, privately");
    assert!(!double.messages_in(GROUP).iter().any(|(_, m)| m.text.contains("#as=")), "never in the group");
    let identity = dm.split("#as=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let r = h.http.post(format!("{}/r/{room_id}/join", h.base)).json(&json!({"name": "typed", "identity": identity})).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["name"], HOST_NAME);

    // `/who` answers in plain text.
    double.say(GROUP, OTHER, "Mallory", "/who");
    assert!(eventually(WAIT, || async {
        double.messages_in(GROUP).iter().any(|(_, m)| m.parse_mode.is_none() && m.text.contains("Bob <b>bold</b> & co"))
    })
    .await);

    // A non-admin's Lock is refused with an alert; the room stays open.
    let answer = press(&double, card_id, OTHER, "Mallory", "lock").await;
    assert_eq!(answer["show_alert"], true, "{answer}");
    assert!(answer["text"].as_str().unwrap().contains("Only"), "{answer}");
    assert_eq!(h.room(&room_id).await["locked"], false);

    // The host's Lock works: the card shows Locked and a new join gets 423.
    let answer = press(&double, card_id, HOST, HOST_NAME, "lock").await;
    assert_ne!(answer["show_alert"], true, "{answer}");
    assert!(card_shows(&double, GROUP, "Locked").await);
    assert!(card(&double, GROUP).unwrap().2.to_string().contains("\"unlock\""));
    let (s, _) = h.join(&room_id, "Eve", None).await;
    assert_eq!(s, StatusCode::LOCKED);

    // A knock appears on the card; Admit from the card lets Carol in.
    let r = h.http.post(format!("{}/r/{room_id}/knock", h.base)).json(&json!({"name": "Carol"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let knock: Value = r.json().await.unwrap();
    let knock_id = knock["knock_id"].as_str().unwrap().to_owned();
    let admit = format!("admit:{knock_id}");
    assert!(eventually(WAIT, || async { card(&double, GROUP).is_some_and(|c| c.2.to_string().contains(&admit)) }).await);
    let answer = press(&double, card_id, HOST, HOST_NAME, &admit).await;
    assert_ne!(answer["show_alert"], true, "{answer}");
    let status_url = format!("{}/r/{room_id}/knocks/{knock_id}?token={}", h.base, knock["token"].as_str().unwrap());
    let status: Value = h.http.get(&status_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["status"], "admitted");
    assert!(eventually(WAIT, || async { card(&double, GROUP).is_some_and(|c| !c.2.to_string().contains(&admit)) }).await);

    // Restart between two joins, at once: the card still updates. The pacer's budgets live in
    // memory, so the new run's first send into a chat waits the interval from its start,
    // which keeps Telegram's second whatever the old run sent last.
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
    let sends_into_group = |double: &BotApiDouble| {
        double.calls().into_iter().filter(|c| c.body["chat_id"] == GROUP && (c.method == "sendMessage" || c.method.starts_with("editMessage"))).map(|c| c.at).collect::<Vec<_>>()
    };
    let last_before = sends_into_group(&double).into_iter().max().unwrap();
    let h = Harness::start(telegram_config(&db, &double)).await;
    let (s, _) = h.http.post(format!("{}/api/v1/rooms/{room_id}/unlock", h.base)).bearer_auth(common::API_TOKEN).send().await.map(|r| (r.status(), ())).unwrap();
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h.join(&room_id, "Dan", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(card_shows(&double, GROUP, "Dan").await, "{:?}", card(&double, GROUP));
    let first_after = sends_into_group(&double).into_iter().filter(|at| *at > last_before).min().unwrap();
    assert!(first_after - last_before >= Duration::from_secs(1), "the first send after the restart came {:?} after the last", first_after - last_before);

    // `/end` from the host: the card shows the attendance, and Call again is its one button.
    double.say(GROUP, HOST, HOST_NAME, "/end");
    assert!(card_shows(&double, GROUP, "Attendance").await, "{:?}", card(&double, GROUP));
    let (_, text, markup) = card(&double, GROUP).unwrap();
    assert!(text.contains("Bob &lt;b&gt;bold&lt;/b&gt; &amp; co — joined"), "{text}");
    assert!(text.contains("Dan — joined"), "{text}");
    assert_eq!(markup["inline_keyboard"], json!([[{"text": "📞 Call again", "callback_data": "again"}]]));
    let (s, _) = h.join(&room_id, "Frank", None).await;
    assert_eq!(s, StatusCode::GONE);

    // Names stayed inert in every HTML text the bot sent, and flood control never tripped.
    for call in double.calls().iter().filter(|c| c.body["parse_mode"] == "HTML") {
        let t = call.body["text"].as_str().unwrap();
        for raw in ["Bob <b>bold</b>", "Ada <b>&", "<i>Standup"] {
            assert!(!t.contains(raw), "unescaped {raw:?} in {t}");
        }
    }
    assert_eq!(double.rate_limited(), 0, "the bot tripped flood control");
    assert!(double.calls().iter().all(|c| c.status != 429));
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updater_honours_retry_after_and_not_modified() {
    let double = BotApiDouble::start().await;
    double.make_admin(GROUP, OTHER);
    let db = TestDb::new(Db::Sqlite).await;
    let h = Harness::start(telegram_config(&db, &double)).await;

    double.say(GROUP, HOST, "Host", "/call voice");
    assert!(eventually(WAIT, || async { card(&double, GROUP).is_some() }).await, "a card is posted");
    let (card_id, text, _) = card(&double, GROUP).unwrap();
    assert!(text.contains("Voice call"), "{text}");
    // The host never started the bot: the group is told, without the link.
    assert!(eventually(WAIT, || async {
        double.messages_in(GROUP).iter().any(|(_, m)| m.text.contains("could not send you your host link") && !m.text.contains("#host="))
    })
    .await);
    let room_id = card(&double, GROUP).unwrap().2["inline_keyboard"][0][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();

    // The next edit is refused with a 429: the updater waits and still shows the final state.
    double.inject_retry_after("editMessageText", 2);
    let names: Vec<String> = (0..5).map(|i| format!("Guest {i}")).collect();
    for n in &names {
        assert_eq!(h.join(&room_id, n, None).await.0, StatusCode::OK);
    }
    assert!(card_shows(&double, GROUP, "Guest 4").await, "{:?}", card(&double, GROUP));
    let (_, text, _) = card(&double, GROUP).unwrap();
    assert!(names.iter().all(|n| text.contains(n.as_str())), "{text}");
    let edits = double.calls_of("editMessageText");
    let limited = edits.iter().position(|c| c.status == 429).expect("the injected 429 was hit");
    let next = &edits[limited + 1];
    assert!(next.at.duration_since(edits[limited].at) >= Duration::from_secs(2), "retry_after was honoured");

    // "message is not modified" counts as shown; an admin (not the host) may lock.
    double.inject_not_modified("editMessageText");
    let answer = press(&double, card_id, OTHER, "Admin", "lock").await;
    assert_ne!(answer["show_alert"], true, "{answer}");
    // The injected 400 swallowed the Locked edit: the bot takes it as shown.
    let swallowed = || double.calls_of("editMessageText").iter().position(|c| c.status == 400);
    assert!(eventually(WAIT, || async { swallowed().is_some() }).await, "the injected 400 was hit");
    assert_eq!(h.join(&room_id, "Guest 0", None).await.0, StatusCode::LOCKED);
    // The card converges on the next change.
    double.say(GROUP, OTHER, "Admin", "/unlock");
    assert!(eventually(WAIT, || async { h.room(&room_id).await["locked"] == false }).await);
    assert_eq!(h.join(&room_id, "Late", None).await.0, StatusCode::OK);
    assert!(card_shows(&double, GROUP, "Late").await, "{:?}", card(&double, GROUP));
    assert!(card(&double, GROUP).unwrap().1.contains("Open"));
    // The edit answered "not modified" counts as shown: its text is never sent again.
    let (edits, swallowed) = (double.calls_of("editMessageText"), swallowed().unwrap());
    let again = edits[swallowed + 1..].iter().filter(|c| c.body["text"] == edits[swallowed].body["text"]).count();
    assert_eq!(again, 0, "the text answered \"not modified\" was sent again");
    assert_eq!(double.rate_limited(), 0, "the bot tripped flood control");
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
}

/// Every third call of the bot fails (a 429 with `retry_after`, a 5xx, or a stall past the
/// bot's request timeout, in turn) while a call runs its course; the card still ends showing
/// the final attendance, `retry_after` is honoured, and the bot keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_converge_under_injected_faults() {
    let _ = tracing_subscriber::fmt().with_env_filter("info,sqlx=warn").with_test_writer().try_init();
    let double = BotApiDouble::start().await;
    double.start_bot(HOST);
    double.set_faults(Faults { every: 3, retry_after: 2, stall: Duration::from_millis(1500) });
    let db = TestDb::new(Db::Sqlite).await;
    let settings = callbridge_telegram::Settings { request_timeout: Duration::from_millis(500), ..telegram_settings(&double) };
    let h = Harness::start(with_telegram(&db, settings)).await;
    const LONG: Duration = Duration::from_secs(60);
    // `/healthz` is polled all through the run, not once at the end.
    let stop_polling = tokio_util::sync::CancellationToken::new();
    let poller = tokio::spawn({
        let (http, url, stop) = (h.http.clone(), format!("{}/healthz", h.base), stop_polling.clone());
        async move {
            let mut answers = Vec::new();
            while !stop.is_cancelled() {
                let status = http.get(&url).timeout(Duration::from_secs(2)).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                answers.push(status);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            answers
        }
    });

    double.say(GROUP, HOST, HOST_NAME, "/call Faulty");
    assert!(eventually(LONG, || async { card(&double, GROUP).is_some() }).await, "a card is posted despite faults");
    let (_, _, markup) = card(&double, GROUP).unwrap();
    let room_id = markup["inline_keyboard"][0][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    for i in 0..6 {
        assert_eq!(h.join(&room_id, &format!("Guest {i}"), None).await.0, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        eventually(LONG, || async { card(&double, GROUP).is_some_and(|(_, t, _)| t.contains("In the call (6)")) }).await,
        "the card caught up with the joins"
    );
    double.say(GROUP, HOST, HOST_NAME, "/lock");
    assert!(eventually(LONG, || async { card(&double, GROUP).is_some_and(|(_, t, _)| t.contains("Locked")) }).await);
    double.say(GROUP, HOST, HOST_NAME, "/end");
    assert!(
        eventually(LONG, || async {
            card(&double, GROUP).is_some_and(|(_, t, m)| t.contains("Attendance</b> (6)") && m["inline_keyboard"].to_string().contains("again"))
        })
        .await,
        "the card converged to the final attendance: {:?}",
        card(&double, GROUP)
    );
    // Still serving: a later command is answered.
    double.say(GROUP, OTHER, "Bob", "/who");
    assert!(eventually(LONG, || async { double.messages_in(GROUP).iter().any(|(_, m)| m.text.starts_with("No open call")) }).await);
    stop_polling.cancel();
    let answers = poller.await.unwrap();
    let not_ok: Vec<_> = answers.iter().filter(|s| **s != 200).collect();
    assert!(answers.len() >= 20 && not_ok.is_empty(), "/healthz through the fault run: {} polls, not ok: {not_ok:?}", answers.len());

    let (throttled, failed, stalled) = (double.faults_injected("429"), double.faults_injected("5xx"), double.faults_injected("stall"));
    eprintln!("faults injected: {throttled} × 429, {failed} × 5xx, {stalled} stalls; calls {}", double.calls().len());
    assert!(throttled > 0 && failed > 0 && stalled > 0, "every kind of fault was injected");
    if double.retry_after_violations() > 0 {
        let t0 = double.calls()[0].at;
        for c in double.calls().iter().filter(|c| c.method != "getUpdates") {
            eprintln!("{:>6} ms {} chat {} → {}", (c.at - t0).as_millis(), c.method, c.body["chat_id"], c.status);
        }
    }
    assert_eq!(double.retry_after_violations(), 0, "the bot called a chat before its retry_after had passed");
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
}

/// The daemon stops one adapter on its own and starts it again (what a node that loses or
/// wins a platform's leadership does): while stopped, nothing is polled or answered; started
/// again, it picks up what was said meanwhile, once, and the cards already posted stay live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_adapter_stops_and_starts_on_its_own() {
    let double = BotApiDouble::start().await;
    double.start_bot(HOST);
    let db = TestDb::new(Db::Sqlite).await;
    let h = Harness::start(telegram_config(&db, &double)).await;
    let adapters = &h.daemon.adapters;
    assert_eq!(adapters.platforms(), vec!["telegram"]);
    assert!(adapters.is_running("telegram"));
    let cards_in = |chat: i64| double.messages_in(chat).into_iter().filter(|(_, m)| m.reply_markup.to_string().contains("\"url\"")).count();

    double.say(GROUP, HOST, HOST_NAME, "/call First");
    assert!(eventually(WAIT, || async { cards_in(GROUP) == 1 }).await, "a card is posted");
    let room_id = card(&double, GROUP).unwrap().2["inline_keyboard"][0][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();

    assert!(adapters.stop("telegram").await, "it was running");
    assert!(!adapters.is_running("telegram"));
    assert!(!adapters.stop("telegram").await, "a second stop finds nothing to stop");
    let polls = double.calls_of("getUpdates").len();
    double.say(OTHER_GROUP, HOST, HOST_NAME, "/call Second");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cards_in(OTHER_GROUP), 0, "a stopped adapter answers nothing");
    assert_eq!(double.calls_of("getUpdates").len(), polls, "a stopped adapter polls nothing");

    assert!(adapters.start("telegram"));
    assert!(!adapters.start("telegram"), "it runs already");
    assert!(eventually(WAIT, || async { cards_in(OTHER_GROUP) == 1 }).await, "what was said while stopped is answered");
    // The card posted before the stop is still kept current by the new run.
    assert_eq!(h.join(&room_id, "Bob", None).await.0, StatusCode::OK);
    assert!(card_shows(&double, GROUP, "Bob").await, "{:?}", card(&double, GROUP));
    assert_eq!(cards_in(GROUP), 1, "nothing said before the stop is handled twice");
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
}

/// Hardening point 7: anyone with the link can knock under any name, so `/admit NAME` never
/// guesses between two people of one name: it asks for the code the card shows, and the code
/// admits exactly that request. A name only one person has still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admit_by_name_never_guesses_between_two_knockers() {
    let double = BotApiDouble::start().await;
    double.start_bot(HOST);
    let db = TestDb::new(Db::Sqlite).await;
    let h = Harness::start(telegram_config(&db, &double)).await;
    double.say(GROUP, HOST, HOST_NAME, "/call Private");
    assert!(eventually(WAIT, || async { card(&double, GROUP).is_some() }).await, "a card");
    let room = card(&double, GROUP).unwrap().2["inline_keyboard"][0][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    double.say(GROUP, HOST, HOST_NAME, "/lock");
    assert!(card_shows(&double, GROUP, "Locked").await);
    let knock = |name: &'static str| {
        let r = h.http.post(format!("{}/r/{room}/knock", h.base)).json(&json!({"name": name}));
        async move {
            let v: Value = r.send().await.unwrap().json().await.unwrap();
            (v["knock_id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned())
        }
    };
    let status = |(id, token): &(String, String)| {
        let r = h.http.get(format!("{}/r/{room}/knocks/{id}", h.base)).query(&[("token", token)]);
        async move { r.send().await.unwrap().json::<Value>().await.unwrap()["status"].as_str().unwrap().to_owned() }
    };
    let impostor = knock("Alice").await;
    let alice = knock("Alice").await;
    let code = &alice.0[alice.0.len() - 4..];
    assert!(card_shows(&double, GROUP, &format!("(#{code})")).await, "the card shows each request's code: {:?}", card(&double, GROUP));

    let replies = || double.messages_in(GROUP).into_iter().map(|(_, m)| m.text).collect::<Vec<_>>().join("\n");
    double.say(GROUP, HOST, HOST_NAME, "/admit Alice");
    assert!(eventually(WAIT, || async { replies().contains("More than one person called Alice") }).await, "{}", replies());
    assert_eq!((status(&impostor).await, status(&alice).await), ("pending".to_owned(), "pending".to_owned()), "nobody was let in on a guess");

    double.say(GROUP, HOST, HOST_NAME, &format!("/admit #{code}"));
    assert!(eventually(WAIT, || async { status(&alice).await == "admitted" }).await, "the code admits that request");
    assert_eq!(status(&impostor).await, "pending", "and only that one");
    // A name only one waiting person has is enough.
    double.say(GROUP, HOST, HOST_NAME, "/deny alice");
    assert!(eventually(WAIT, || async { status(&impostor).await == "denied" }).await);
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
}

/// Hardening point 1: one chat flooding the bot (300 `/who` in a private chat, whose replies
/// Telegram allows at 20 a minute) stalls no other chat: a `/call` in a group gets its card at
/// once, the flooded chat never gets more than its budget, and `/call` has a quota per user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_chat_never_stalls_another() {
    let double = BotApiDouble::start().await;
    double.start_bot(HOST);
    double.start_bot(OTHER);
    let db = TestDb::new(Db::Sqlite).await;
    let mut c = telegram_config(&db, &double);
    c.rooms.calls_per_user_per_hour = 2;
    let h = Harness::start(c).await;
    assert!(eventually(WAIT, || async { !double.calls_of("setMyCommands").is_empty() }).await, "the bot is up");
    for _ in 0..300 {
        double.say(OTHER, OTHER, "Mallory", "/who");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    double.say(GROUP, HOST, HOST_NAME, "/call Urgent");
    assert!(eventually(Duration::from_secs(5), || async { card(&double, GROUP).is_some() }).await, "the group's card waited behind the flood");
    eprintln!("card posted {:?} after /call, with 300 /who queued in another chat", started.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(double.rate_limited(), 0, "a chat got more than its budget");
    let answered = double.messages_in(OTHER).len();
    assert!((1..=20).contains(&answered), "the flooded chat got {answered} replies in under a minute");
    // The quota: a third /call within the hour by one user is refused.
    double.say(GROUP, HOST, HOST_NAME, "/call Second");
    double.say(GROUP, HOST, HOST_NAME, "/call Third");
    let texts = || double.messages_in(GROUP).into_iter().map(|(_, m)| m.text).collect::<Vec<_>>().join("\n");
    assert!(eventually(WAIT, || async { texts().contains("Many calls were started here lately") }).await, "{}", texts());
    let cards = double.messages_in(GROUP).into_iter().filter(|(_, m)| m.reply_markup.to_string().contains("\"url\"")).count();
    assert_eq!(cards, 2, "two calls, not three");
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
}

/// `/healthz` shows the adapter: leading, connected once the Bot API answers, and its last
/// failure, never with the bot token (every configured secret is masked in it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_shows_the_adapter_and_never_its_token() {
    let db = TestDb::new(Db::Sqlite).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let unreachable = callbridge_telegram::Settings { api_url: format!("http://{closed}").parse().unwrap(), ..telegram_settings(&BotApiDouble::start().await) };
    let h = Harness::start(with_telegram(&db, unreachable)).await;
    let health = || async { h.http.get(format!("{}/healthz", h.base)).send().await.unwrap().json::<Value>().await.unwrap() };
    assert!(eventually(WAIT, || async { health().await["adapters"]["telegram"]["last_error"].is_object() }).await, "a failure shows");
    let shown = health().await;
    let telegram = &shown["adapters"]["telegram"];
    assert_eq!((telegram["leader"].as_bool(), telegram["connected"].as_bool()), (Some(true), Some(false)), "{shown}");
    let message = telegram["last_error"]["message"].as_str().unwrap();
    assert!(!shown.to_string().contains(BOT_TOKEN) && !shown.to_string().contains("TEST-token"), "{shown}");
    assert!(message.contains("network error"), "{message}");
    h.stop().await;

    let double = BotApiDouble::start().await;
    let db = TestDb::new(Db::Sqlite).await;
    let h = Harness::start(telegram_config(&db, &double)).await;
    let health = || async { h.http.get(format!("{}/healthz", h.base)).send().await.unwrap().json::<Value>().await.unwrap() };
    assert!(eventually(WAIT, || async { health().await["adapters"]["telegram"]["connected"] == true }).await, "connected once the Bot API answers");
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
}

/// The README's card burst: 50 joins spread over one second into a room whose card is in a
/// group. The card shows all 50 within 3 s of the first join, in at most 3 edits, without a
/// single 429 (the double keeps Telegram's second and minute on arrival, with no tolerance).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_50_joins_shows_on_the_card_within_3_seconds() {
    const JOINS: u64 = 50;
    let double = BotApiDouble::start().await;
    let db = TestDb::new(Db::Sqlite).await;
    let mut c = config(&db);
    c.rooms.max_participants = Some(JOINS as u32);
    // The production pacing and debounce: the bound is about them.
    c.adapters.push(Box::new(callbridge_telegram::Settings { debounce: callbridge_telegram::Settings::default().debounce, ..telegram_settings(&double) }));
    let h = Harness::start(c).await;
    double.say(GROUP, HOST, "Host", "/call Town hall");
    assert!(eventually(WAIT, || async { card(&double, GROUP).is_some() }).await, "the card is posted");
    let (message, _, markup) = card(&double, GROUP).unwrap();
    let room = markup["inline_keyboard"][0][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    // The burst starts once the group's budget has refilled (its last send a second old), as
    // a burst would some time after the card.
    let last_send = || double.calls().iter().filter(|c| c.body["chat_id"] == GROUP && c.method == "sendMessage").map(|c| c.at).max().unwrap();
    assert!(eventually(WAIT, || async { last_send().elapsed() >= Duration::from_secs(1) }).await);

    let start = std::time::Instant::now();
    let joins: Vec<_> = (0..JOINS)
        .map(|i| {
            let (http, base, room) = (h.http.clone(), h.base.clone(), room.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until((start + Duration::from_millis(i * 1000 / JOINS)).into()).await;
                let r = http.post(format!("{base}/r/{room}/join")).json(&json!({"name": format!("Guest {i}")})).send().await.unwrap();
                assert_eq!(r.status(), StatusCode::OK, "join {i}");
            })
        })
        .collect();
    let want = format!("In the call ({JOINS})");
    assert!(eventually(Duration::from_secs(30), || async { double.message(GROUP, message).is_some_and(|m| m.text.contains(&want)) }).await);
    let shown_after = double.calls_of("editMessageText").iter().find(|c| c.status == 200 && c.body["text"].as_str().is_some_and(|t| t.contains(&want))).unwrap().at - start;
    for j in joins {
        j.await.unwrap();
    }
    // Anything still queued goes out within the next seconds: it would count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let edits = double.calls_of("editMessageText").iter().filter(|c| c.at >= start && c.body["message_id"] == message).count();
    eprintln!("card burst: all {JOINS} shown {shown_after:?} after the first join, {edits} edits, {} × 429", double.rate_limited());
    assert!(shown_after <= Duration::from_secs(3), "all {JOINS} shown after {shown_after:?}");
    assert!(edits <= 3, "{edits} edits");
    assert_eq!(double.rate_limited(), 0, "429s during the burst");
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
}

/// Where `public_url` is a host Telegram takes no link button to (`localhost`), the card
/// carries the link as text beside "Join as me", and Telegram refuses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_telegram_refuses_as_a_button_goes_in_the_text() {
    let double = BotApiDouble::start().await;
    let db = TestDb::new(Db::Sqlite).await;
    let mut c = telegram_config(&db, &double);
    c.server.public_url = Some("http://localhost:8080".into());
    let h = Harness::start(c).await;
    double.say(GROUP, HOST, "Host", "/call Local");
    let posted = || double.messages_in(GROUP).into_iter().find(|(_, m)| m.text.contains("Local"));
    assert!(eventually(WAIT, || async { posted().is_some() }).await, "the card is posted: {:?}", double.malformed());
    let (_, shown) = posted().unwrap();
    assert!(shown.text.contains("http://localhost:8080/r/"), "{}", shown.text);
    assert_eq!(shown.reply_markup["inline_keyboard"][0], json!([{"text": "🙋 Join as me", "callback_data": "me"}]));
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
}

/// The double refuses what Telegram refuses, in Telegram's words, so a bot that passes the
/// other tests would pass Telegram: HTML it cannot parse, empty and long texts, bad buttons
/// (data over 64 bytes, a link to localhost), unknown queries, edits that change nothing, and
/// flood control on arrival with no tolerance: a second send into a chat within a second,
/// and a 31st send of the bot within a second across chats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_double_refuses_what_telegram_refuses() {
    let double = BotApiDouble::start().await;
    let http = reqwest::Client::new();
    let call = |method: &str, body: Value| {
        let request = http.post(format!("{}/bot{BOT_TOKEN}/{method}", double.url)).json(&body);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let refused = [
        json!({"chat_id": -1, "text": "<b>open", "parse_mode": "HTML"}),
        json!({"chat_id": -2, "text": "<blink>x</blink>", "parse_mode": "HTML"}),
        json!({"chat_id": -3, "text": " "}),
        json!({"chat_id": -4, "text": "x".repeat(4097)}),
        json!({"chat_id": -5, "text": "x", "reply_markup": {"inline_keyboard": [[{"text": "b", "callback_data": "d".repeat(65)}]]}}),
        json!({"chat_id": -6, "text": "x", "reply_markup": {"inline_keyboard": [[{"text": "Join", "url": "http://localhost:8080/r/x"}]]}}),
    ];
    for body in refused {
        let (status, answer) = call("sendMessage", body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
    }
    let (status, _) = call("answerCallbackQuery", json!({"callback_query_id": "never-pressed"})).await;
    assert_eq!(status, 400);
    // A sent message, edited to the same text.
    let (status, sent) = call("sendMessage", json!({"chat_id": -7, "text": "same"})).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _) = call("editMessageText", json!({"chat_id": -7, "message_id": sent["result"]["message_id"], "text": "same"})).await;
    assert_eq!(status, 400);
    let why = double.malformed().join("\n");
    for words in ["can't parse entities", "unsupported start tag", "text is empty", "too long", "BUTTON_DATA_INVALID", "BUTTON_URL_INVALID", "query is too old", "not modified"] {
        assert!(why.contains(words), "{words} not among:\n{why}");
    }
    assert_eq!(double.rate_limited(), 0);

    // Flood control: a second send into one chat at once is a 429; so is the bot's 31st send
    // within a second, whatever the chats.
    assert_eq!(call("sendMessage", json!({"chat_id": -8, "text": "one"})).await.0, 200);
    let (status, answer) = call("sendMessage", json!({"chat_id": -8, "text": "two"})).await;
    assert_eq!((status, answer["parameters"]["retry_after"].clone()), (429, json!(1)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start = std::time::Instant::now();
    let mut first_refused = None;
    for n in 0..40 {
        if call("sendMessage", json!({"chat_id": -100 - n, "text": "hi"})).await.0 == 429 {
            first_refused = Some(n);
            break;
        }
    }
    assert!(start.elapsed() < Duration::from_secs(1), "the loop must fit in the second it tests");
    assert_eq!(first_refused, Some(30), "the 31st send within a second");
    assert_eq!(double.rate_limited(), 2);
}
