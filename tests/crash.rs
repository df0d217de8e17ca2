//! Crash safety and secrets in logs, with the real `callbridge` binary in a child process.
//!
//! A join load runs against the daemon, which is killed with SIGKILL mid-load and started
//! again on the same database. Every join a client saw acknowledged must still be recorded (and
//! its token must still rejoin), no room or lock may be lost, and the Telegram card of the room
//! must resume updating within 10 s of the restart. The daemon runs with every log level on;
//! afterwards its captured output is searched for every secret it handled: the API token, the
//! bot token, host tokens and participant tokens.

mod common;
#[path = "support/discord_double.rs"]
mod discord_double;
#[path = "support/telegram_double.rs"]
mod telegram_double;

use common::{API_TOKEN, Db, TestDb};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use telegram_double::{BOT_TOKEN, BotApiDouble};

const GROUP: i64 = -1009876543210;
const HOST: i64 = 333;
/// A password in the database URL (PostgreSQL's trust authentication ignores it): a secret
/// the log must not show either.
const DB_PASSWORD: &str = "Pw4db7ZqK2mXv9Lr";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_nothing_sqlite() {
    sigkill_mid_load_loses_nothing(Db::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_nothing_postgres() {
    sigkill_mid_load_loses_nothing(Db::Postgres).await
}

/// Sends a request and reads its JSON answer.
async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

async fn sigkill_mid_load_loses_nothing(backend: Db) {
    let discord = discord_double::DiscordDouble::start().await;
    let double = BotApiDouble::start().await;
    double.start_bot(HOST);
    let db = TestDb::new(backend).await;
    let config = db.dir.path().join("callbridge.toml");
    let log = db.dir.path().join("daemon.log");
    // Every level of every crate, so the search for secrets below means something.
    let mut node = common::start_daemon(&config, &log, "trace", |port| {
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
join_rate_per_minute = 0
socket_rate_per_minute = 0
[storage]
url = "{url}"
data_dir = "{dir}"
[rooms]
max_participants = 1000
ice_servers = []
[api]
token = "{API_TOKEN}"
[sfu]
listen = "127.0.0.1:0"
[telegram]
token = "{BOT_TOKEN}"
api_url = "{api_url}"
debounce = "200ms"
poll_timeout = "1s"
[discord]
token = "{discord_token}"
application_id = "{discord_app}"
api_url = "{discord_url}"
guild_ids = ["{discord_guild}"]
"#,
            url = with_password(&db.url),
            dir = db.dir.path().display(),
            api_url = double.url,
            discord_token = discord_double::BOT_TOKEN,
            discord_app = discord_double::APP_ID,
            discord_url = discord.url,
            discord_guild = discord_double::GUILD,
        )
    })
    .await;
    let (port, base) = (node.port, node.base.clone());
    let http = reqwest::Client::new();

    // The Discord bot identified on the gateway (its token crossed a websocket frame that
    // libraries log at trace).
    assert!(common::eventually(Duration::from_secs(20), || async { discord.identified() >= 1 }).await, "discord gateway up");

    // A card in a group, and rooms minted through the API, half of them locked.
    double.say(GROUP, HOST, "Host", "/call Crash test");
    let card = |d: &BotApiDouble| d.messages_in(GROUP).into_iter().find(|(_, m)| m.reply_markup.to_string().contains("\"url\""));
    assert!(common::eventually(Duration::from_secs(20), || async { card(&double).is_some() }).await, "the card is posted");
    let (card_id, shown) = card(&double).unwrap();
    let card_room = shown.reply_markup["inline_keyboard"][0][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    let mut rooms = Vec::new();
    for i in 0..10 {
        let v = json_of(http.post(format!("{base}/api/v1/rooms")).bearer_auth(API_TOKEN).json(&json!({"title": format!("Room {i}")}))).await;
        let (id, host_token) = (v["id"].as_str().unwrap().to_owned(), v["host_token"].as_str().unwrap().to_owned());
        if i % 2 == 0 {
            let r = http.post(format!("{base}/api/v1/rooms/{id}/lock")).bearer_auth(&host_token).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        rooms.push((id, host_token, i % 2 == 0));
    }

    // The load: 16 joiners, one request after another, into the card's room and four rooms of
    // 1000 places (more than the load can fill before the kill), until the daemon is gone.
    let mut load_rooms = vec![card_room.clone()];
    for _ in 0..4 {
        let v = json_of(http.post(format!("{base}/api/v1/rooms")).bearer_auth(API_TOKEN).json(&json!({"max_participants": 1000}))).await;
        load_rooms.push(v["id"].as_str().unwrap().to_owned());
    }
    let acked: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let load: Vec<_> = (0..16)
        .map(|w| {
            let (http, base, room, acked) = (http.clone(), base.clone(), load_rooms[w % load_rooms.len()].clone(), acked.clone());
            tokio::spawn(async move {
                for n in 0.. {
                    let Ok(r) = http.post(format!("{base}/r/{room}/join")).json(&json!({"name": format!("w{w} #{n}")})).send().await else {
                        return None; // the daemon is gone
                    };
                    if r.status() != StatusCode::OK {
                        return Some(r.status());
                    }
                    let Ok(v) = r.json::<Value>().await else { return None };
                    let entry = (room.clone(), v["participant_id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned());
                    acked.lock().unwrap().push(entry);
                }
                unreachable!()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    node.kill();
    for t in load {
        assert_eq!(t.await.unwrap(), None, "every joiner was still going when the daemon was killed");
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() > 20, "the load ran before the kill ({} joins acknowledged)", acked.len());

    let restarted = Instant::now();
    let mut node = common::restart_daemon(&config, &log, "trace", port).await.expect("the port is ours again after the kill");

    // Every acknowledged join is recorded.
    let mut recorded = HashSet::new();
    for room in &load_rooms {
        let v = json_of(http.get(format!("{base}/api/v1/rooms/{room}")).bearer_auth(API_TOKEN)).await;
        recorded.extend(v["participants"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()));
    }
    let lost = acked.iter().filter(|(_, id, _)| !recorded.contains(id)).count();
    assert_eq!(lost, 0, "{lost} of {} acknowledged joins were lost", acked.len());
    // Every acknowledged token still rejoins, as the same participant.
    for (room, id, token) in &acked {
        let r = json_of(http.post(format!("{base}/r/{room}/join")).json(&json!({"name": "again", "token": token}))).await;
        assert_eq!((r["participant_id"].as_str(), r["rejoin"].as_bool()), (Some(id.as_str()), Some(true)), "{r}");
    }

    // No room and no lock is lost.
    for (id, _, locked) in &rooms {
        let r = http.post(format!("{base}/r/{id}/join")).json(&json!({"name": "after"})).send().await.unwrap();
        let want = if *locked { StatusCode::LOCKED } else { StatusCode::OK };
        assert_eq!(r.status(), want, "room {id} (locked: {locked}) after the crash");
    }

    // The open card resumes: lock the room and see the card say so.
    let r = http.post(format!("{base}/api/v1/rooms/{card_room}/lock")).bearer_auth(API_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let resumed = common::eventually(Duration::from_secs(10), || async {
        double.message(GROUP, card_id).is_some_and(|m| m.text.contains("Locked"))
    })
    .await;
    let after = restarted.elapsed();
    assert!(resumed && after <= Duration::from_secs(10), "the card resumed within 10 s of the restart ({after:?})");
    eprintln!(
        "{backend:?}: {} joins acknowledged before SIGKILL, all {} recorded after restart; card updated {:.1} s after the restart",
        acked.len(),
        recorded.len(),
        after.as_secs_f64()
    );
    node.kill();

    // No secret in the logs.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.len() > 10_000, "the daemon logged ({} bytes)", text.len());
    for secret in [API_TOKEN, BOT_TOKEN, BOT_TOKEN.split(':').nth(1).unwrap(), discord_double::BOT_TOKEN, DB_PASSWORD] {
        assert!(!text.contains(secret), "a configured secret appears in the daemon's log");
    }
    // Host tokens and the secret part of participant tokens (after the participant id, which
    // is public), searched by halves: a log that cut a token in two would still leak it.
    let secrets = rooms.iter().map(|(_, t, _)| t.as_str()).chain(acked.iter().map(|(_, id, t)| t.strip_prefix(id.as_str()).unwrap()));
    let halves: HashSet<&str> = secrets.flat_map(|s| [&s[..s.len() / 2], &s[s.len() / 2..]]).collect();
    let leaked = leaked_halves(&text, &halves);
    assert!(leaked.is_empty(), "{} halves of host or participant tokens appear in the daemon's log", leaked.len());
    // The host link went to the host privately, never into the log.
    assert!(double.messages_in(HOST).iter().any(|(_, m)| m.text.contains("#host=")));
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    db.drop_db().await;
}

/// `url` with a password, where it names a PostgreSQL user without one.
fn with_password(url: &str) -> String {
    match url.strip_prefix("postgres://").and_then(|rest| rest.split_once('@')) {
        Some((user, host)) if !user.contains(':') => format!("postgres://{user}:{DB_PASSWORD}@{host}"),
        _ => url.to_owned(),
    }
}

/// Which of `halves` (alphanumeric strings) occur anywhere in `text`.
fn leaked_halves<'a>(text: &str, halves: &HashSet<&'a str>) -> Vec<&'a str> {
    let lengths: HashSet<usize> = halves.iter().map(|h| h.len()).collect();
    let mut found = Vec::new();
    for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        for &n in &lengths {
            for i in 0..(word.len() + 1).saturating_sub(n) {
                if let Some(h) = halves.get(&word[i..i + n]) {
                    found.push(*h);
                }
            }
        }
    }
    found
}
