//! Fail-over of the chat adapters between two real `callbridge` processes on one PostgreSQL:
//! the leader is killed with SIGKILL while commands are queued in its pacer, and the other
//! node takes Telegram and Discord over within 10 s, answers every command exactly once (none
//! twice, none lost), and keeps the open cards updating.

mod common;
#[path = "support/discord_double.rs"]
mod discord_double;
#[path = "support/telegram_double.rs"]
mod telegram_double;

use common::{API_TOKEN, Db, TestDb, eventually};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use telegram_double::{BOT_TOKEN, BotApiDouble};

const GROUP: i64 = -1001111111111;
/// A second chat, whose budget the queued replies of the first do not spend.
const OTHER_GROUP: i64 = -1002222222222;
const HOST: i64 = 444;
const WAIT: Duration = Duration::from_secs(20);

struct Node {
    process: common::Process,
    base: String,
    log: PathBuf,
}

impl Node {
    async fn start(dir: &Path, db: &TestDb, tg: &BotApiDouble, dc: &discord_double::DiscordDouble) -> Node {
        let (config, log) = (dir.join("callbridge.toml"), dir.join("daemon.log"));
        let process = common::start_daemon(&config, &log, "info,sqlx=warn", |port| {
            format!(
                r#"[server]
listen = "127.0.0.1:{port}"
join_rate_per_minute = 0
socket_rate_per_minute = 0
[storage]
url = "{url}"
data_dir = "{dir}"
[rooms]
ice_servers = []
[api]
token = "{API_TOKEN}"
[sfu]
listen = "127.0.0.1:0"
[telegram]
token = "{BOT_TOKEN}"
api_url = "{tg}"
debounce = "100ms"
poll_timeout = "2s"
[discord]
token = "{dc_token}"
application_id = "{dc_app}"
api_url = "{dc}"
guild_ids = ["{dc_guild}"]
"#,
                url = db.url,
                dir = dir.display(),
                tg = tg.url,
                dc = dc.url,
                dc_token = discord_double::BOT_TOKEN,
                dc_app = discord_double::APP_ID,
                dc_guild = discord_double::GUILD,
            )
        })
        .await;
        Node { base: process.base.clone(), process, log }
    }

    async fn health(&self) -> Option<Value> {
        let r = reqwest::get(format!("{}/healthz", self.base)).await.ok()?;
        (r.status() == StatusCode::OK).then_some(())?;
        r.json().await.ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        self.process.kill();
    }
}

/// The node that leads `platform`'s adapter, by the database.
async fn leader(db: &TestDb, platform: &str) -> Option<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.ok()?;
    sqlx::query_scalar("SELECT value FROM adapter_state WHERE platform = $1 AND key = 'leader'")
        .bind(platform)
        .fetch_optional(&mut conn)
        .await
        .ok()?
}

fn cards(tg: &BotApiDouble) -> Vec<(String, String)> {
    cards_in(tg, GROUP)
}

/// The cards in a chat: (room, text).
fn cards_in(tg: &BotApiDouble, chat: i64) -> Vec<(String, String)> {
    tg.messages_in(chat)
        .into_iter()
        .filter(|(_, m)| m.reply_markup.to_string().contains("\"url\""))
        .map(|(_, m)| {
            let url = m.reply_markup["inline_keyboard"][0][0]["url"].as_str().unwrap_or_default();
            (url.rsplit('/').next().unwrap_or_default().to_owned(), m.text)
        })
        .collect()
}

/// The bot's plain replies in the group.
fn replies(tg: &BotApiDouble) -> Vec<String> {
    tg.messages_in(GROUP).into_iter().filter(|(_, m)| m.reply_markup.is_null()).map(|(_, m)| m.text).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_node_takes_the_adapters_over_after_a_sigkill() {
    let tg = BotApiDouble::start().await;
    tg.start_bot(HOST);
    let dc = discord_double::DiscordDouble::start().await;
    let db = TestDb::new(Db::Postgres).await;
    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut nodes = vec![Node::start(dir1.path(), &db, &tg, &dc).await, Node::start(dir2.path(), &db, &tg, &dc).await];
    let ids: Vec<String> = futures::future::join_all(nodes.iter().map(|n| async { n.health().await.unwrap()["node_id"].as_str().unwrap().to_owned() })).await;
    assert!(eventually(WAIT, || async { leader(&db, "telegram").await.is_some() }).await, "a Telegram leader");
    assert!(eventually(WAIT, || async { dc.identified() == 1 }).await, "one Discord gateway session");
    let leading = tg_leader(&db).await;
    let lead = ids.iter().position(|id| Some(id) == leading.as_ref()).expect("the leader is one of the two");

    tg.say(GROUP, HOST, "Ada", "/call Before");
    assert!(eventually(WAIT, || async { cards(&tg).len() == 1 }).await, "a card");
    let room = cards(&tg)[0].0.clone();
    let http = reqwest::Client::new();
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let join = |node: usize, name: &'static str| {
        let (http, base, room) = (http.clone(), bases[node].clone(), room.clone());
        async move {
            let r = http.post(format!("{base}/r/{room}/join")).json(&serde_json::json!({"name": name})).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    };
    join(lead ^ 1, "Bea").await;
    assert!(eventually(WAIT, || async { cards(&tg)[0].1.contains("Bea") }).await, "the card shows a join on the other node");

    // Ten commands queue in the leader's pacer (one reply a second in a chat); the leader dies
    // half-way between two replies, with most of them taken and not yet answered.
    for i in 0..10 {
        tg.say(GROUP, HOST, "Ada", &format!("/who {i}"));
    }
    assert!(eventually(WAIT, || async { replies(&tg).len() >= 2 }).await, "the leader answers");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answered_before = replies(&tg).len();
    nodes[lead].kill();
    let killed = Instant::now();
    // Five more arrive while there is no leader.
    for i in 10..15 {
        tg.say(GROUP, HOST, "Ada", &format!("/who {i}"));
    }
    tg.say(OTHER_GROUP, HOST, "Ada", "/call After");
    let survivor = &nodes[lead ^ 1];
    assert!(
        eventually(Duration::from_secs(10), || async { cards_in(&tg, OTHER_GROUP).len() == 1 }).await,
        "within 10 s of the kill the other node answers /call; its log:\n{}",
        survivor.log()
    );
    eprintln!("the other node answered /call {:?} after the kill ({answered_before} of 15 answered before it)", killed.elapsed());
    assert_eq!(tg_leader(&db).await.as_deref(), Some(ids[lead ^ 1].as_str()));
    assert!(eventually(Duration::from_secs(10), || async { dc.identified() == 2 }).await, "the other node's Discord gateway session");

    // Every command is answered exactly once: none twice, none lost.
    assert!(eventually(Duration::from_secs(30), || async { replies(&tg).len() >= 15 }).await, "every /who answered: {:?}", replies(&tg));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(replies(&tg).len(), 15, "no command answered twice: {:?}", replies(&tg));
    assert_eq!((cards(&tg).len(), cards_in(&tg, OTHER_GROUP).len()), (1, 1), "one card per /call");
    // Overlapping long polls: at most the dead process's own, which nobody was reading.
    assert!(tg.conflicts() <= 1, "{} overlapping polls", tg.conflicts());

    // The open card keeps updating from the new leader.
    join(lead ^ 1, "Cid").await;
    assert!(eventually(WAIT, || async { cards(&tg)[0].1.contains("Cid") }).await, "{}", cards(&tg)[0].1);
    assert_eq!(tg.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    drop(nodes);
    db.drop_db().await;
}

async fn tg_leader(db: &TestDb) -> Option<String> {
    leader(db, "telegram").await
}
