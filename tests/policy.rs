//! Per-chat policy, end to end on Telegram (the real daemon and bridge, teloxide, the Bot API
//! double): who may call, the chat's language on cards, replies and private messages, the
//! size, kind, knock and lock of the rooms minted there, and who else hears knocks.

mod common;
#[path = "support/telegram_double.rs"]
mod telegram_double;

use common::{Db, Harness, TestDb, config, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;
use telegram_double::{BOT_TOKEN, BotApiDouble, Shown};

/// A Spanish chat where only admins call, voice rooms of 3, locked from the start.
const SPANISH: i64 = -1001000000001;
/// A chat with no entry: the defaults.
const PLAIN: i64 = -1001000000002;
const ADMIN: i64 = 201;
const MEMBER: i64 = 202;
/// Hears the Spanish chat's knocks (`knock_notices`) without being its admin.
const DOORKEEPER: i64 = 203;
const WAIT: Duration = Duration::from_secs(15);

fn policy_config(db: &TestDb, double: &BotApiDouble) -> callbridge::config::Config {
    let file = format!(
        r#"
[[chats]]
platform = "telegram"
chat = "{SPANISH}"
who_may_call = "admins"
language = "es"
kind = "voice"
max_participants = 3
lock_on_start = true
knock_notices = ["telegram:{DOORKEEPER}"]
"#
    );
    let parsed = callbridge::config::Config::parse(&file, Path::new("policy.toml"), &[]).unwrap();
    let mut c = config(db);
    c.policies = parsed.policies;
    c.validate(Path::new("policy.toml")).unwrap();
    c.adapters.push(Box::new(callbridge_telegram::Settings {
        token: Some(callbridge::config::Secret::new(BOT_TOKEN)),
        api_url: double.url.parse().unwrap(),
        debounce: Duration::from_millis(200),
        poll_timeout: Duration::from_secs(2),
        ..Default::default()
    }));
    c
}

fn card(double: &BotApiDouble, chat: i64) -> Option<(i64, Shown)> {
    double.messages_in(chat).into_iter().rev().find(|(_, m)| m.parse_mode.as_deref() == Some("HTML"))
}

async fn says(double: &BotApiDouble, chat: i64, needle: &str) -> bool {
    eventually(WAIT, || async { double.messages_in(chat).iter().any(|(_, m)| m.text.contains(needle)) }).await
}

fn labels(m: &Shown) -> Vec<String> {
    m.reply_markup["inline_keyboard"].as_array().into_iter().flatten().flat_map(|row| row.as_array().unwrap().iter()).filter_map(|b| b["text"].as_str().map(str::to_owned)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chats_policy_decides_who_calls_and_how_its_rooms_behave() {
    let _ = tracing_subscriber::fmt().with_env_filter("info,sqlx=warn").with_test_writer().try_init();
    let double = BotApiDouble::start().await;
    for user in [ADMIN, MEMBER, DOORKEEPER] {
        double.start_bot(user);
    }
    double.make_admin(SPANISH, ADMIN);
    let db = TestDb::new(Db::Sqlite).await;
    let h = Harness::start(policy_config(&db, &double)).await;

    // A plain member may not call here, and is told why in Spanish; nothing is minted.
    double.say(SPANISH, MEMBER, "Mia", "/call Reunión");
    assert!(says(&double, SPANISH, "Aquí solo los administradores del chat pueden empezar llamadas.").await, "{:?}", double.messages_in(SPANISH));
    assert!(card(&double, SPANISH).is_none());
    // `/help` speaks Spanish too.
    double.say(SPANISH, MEMBER, "Mia", "/help");
    assert!(says(&double, SPANISH, "Publico enlaces de llamada").await);
    assert!(says(&double, SPANISH, "/ringme [on|off] — Que te llamen en privado").await);

    // The admin's call: a Spanish voice card, locked from the start; the host link in Spanish.
    double.say(SPANISH, ADMIN, "Ana <b>", "/call Reunión");
    assert!(eventually(WAIT, || async { card(&double, SPANISH).is_some() }).await, "a card");
    let (_, shown) = card(&double, SPANISH).unwrap();
    for want in ["🎙 <b>Reunión</b>", "Llamada de voz de Ana &lt;b&gt;", "🔒 Cerrada: no entra nadie más", "Todavía no hay nadie."] {
        assert!(shown.text.contains(want), "{want} in {}", shown.text);
    }
    assert!(labels(&shown).iter().any(|l| l == "Entrar") && labels(&shown).iter().any(|l| l == "🔓 Abrir"), "{:?}", labels(&shown));
    assert!(says(&double, ADMIN, "Eres el anfitrión de esta llamada.").await);
    let room_id = shown.reply_markup["inline_keyboard"][0][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let view: Value = h.http.get(format!("{}/api/v1/rooms/{room_id}", h.base)).bearer_auth(common::API_TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!((view["kind"].as_str(), view["max_participants"].as_u64(), view["locked"].as_bool()), (Some("voice"), Some(3), Some(true)), "{view}");

    // A knock reaches the host and the doorkeeper, in Spanish; the doorkeeper's Admit lets
    // the knocker in, though the doorkeeper administers nothing.
    let r = h.http.post(format!("{}/r/{room_id}/knock", h.base)).json(&json!({"name": "Eve <i>"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let knock: Value = r.json().await.unwrap();
    assert!(says(&double, ADMIN, "Eve <i>").await);
    assert!(says(&double, DOORKEEPER, "pide entrar en la llamada cerrada «Reunión» de Ana <b>").await, "{:?}", double.messages_in(DOORKEEPER));
    let (prompt_id, prompt) = double.messages_in(DOORKEEPER).into_iter().rev().find(|(_, m)| m.text.contains("pide entrar")).unwrap();
    assert_eq!(labels(&prompt), ["✅ Dejar entrar", "✖ Rechazar"]);
    let q = double.press(DOORKEEPER, prompt_id, DOORKEEPER, "Doorkeeper", "accept");
    assert!(eventually(WAIT, || async { double.answer_to(&q).is_some() }).await);
    assert_eq!(double.answer_to(&q).unwrap()["show_alert"], false, "{:?}", double.answer_to(&q));
    let status_url = format!("{}/r/{room_id}/knocks/{}?token={}", h.base, knock["knock_id"].as_str().unwrap(), knock["token"].as_str().unwrap());
    // The waiting page polls its knock: it reads "admitted" soon after the press.
    let status = || async { h.http.get(&status_url).send().await.unwrap().json::<Value>().await.unwrap()["status"].clone() };
    assert!(eventually(WAIT, || async { status().await == "admitted" }).await, "{}", status().await);
    // Both prompts say what happened, in Spanish.
    assert!(says(&double, ADMIN, "✅ Eve <i> pudo entrar.").await);

    // `/who` and a refused host button speak Spanish as well.
    double.say(SPANISH, MEMBER, "Mia", "/who");
    assert!(says(&double, SPANISH, "En la llamada (1): Eve <i>").await, "{:?}", double.messages_in(SPANISH));
    let (card_id, _) = card(&double, SPANISH).unwrap();
    let q = double.press(SPANISH, card_id, MEMBER, "Mia", "end");
    assert!(eventually(WAIT, || async { double.answer_to(&q).is_some() }).await);
    let refused = double.answer_to(&q).unwrap();
    assert!(refused["text"].as_str().unwrap().contains("Solo Ana <b> (el anfitrión) o un administrador del chat puede terminar esta llamada."), "{refused}");

    // A chat with no entry keeps the defaults: anyone calls, English, video, open, 50.
    double.say(PLAIN, MEMBER, "Mia", "/call");
    assert!(eventually(WAIT, || async { card(&double, PLAIN).is_some() }).await, "a card in the plain chat");
    let (_, plain) = card(&double, PLAIN).unwrap();
    assert!(plain.text.contains("Video call hosted by Mia") && plain.text.contains("🟢 Open"), "{}", plain.text);
    let plain_room = plain.reply_markup["inline_keyboard"][0][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let view: Value = h.http.get(format!("{}/api/v1/rooms/{plain_room}", h.base)).bearer_auth(common::API_TOKEN).send().await.unwrap().json().await.unwrap();
    assert_eq!((view["kind"].as_str(), view["max_participants"].as_u64()), (Some("video"), Some(50)), "{view}");

    // The admin ends the Spanish call: its attendance in Spanish, and Call again.
    double.say(SPANISH, ADMIN, "Ana <b>", "/end");
    let ended = || async { card(&double, SPANISH).is_some_and(|(_, m)| m.text.contains("⚫ Terminada") && m.text.contains("<b>Asistencia</b> (1):\n• Eve &lt;i&gt; — entró a las")) };
    assert!(eventually(WAIT, ended).await, "{:?}", card(&double, SPANISH));
    assert_eq!(labels(&card(&double, SPANISH).unwrap().1), ["📞 Llamar otra vez"]);
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
    db.drop_db().await;
}
