//! Several nodes on one PostgreSQL: how fast an event decided on one node reaches another, how
//! fresh a card is when the join came through the node that does not run the adapter, and what
//! a second node does to admission throughput.
//!
//!     cargo bench --bench nodes [-- --events 2000 --joins-per-chat 5 --seconds 10 --connections 64 --rounds 3]
//!
//! Two real `callbridge` processes (the release binary) share a fresh database on the server in
//! `CALLBRIDGE_TEST_PG`, with Telegram configured on both against the tests' Bot API double
//! (Telegram's per-chat flood control included), which runs in this process with the load.
//!
//! * **Events**: lock and unlock 200 rooms in turn through node 1's API, `--events` times; this
//!   process listens on the nodes' channel as a third node would, and takes the time from
//!   sending the request until the event arrives, beside the time until node 1's own answer
//!   (when the change is committed and published on node 1).
//! * **Card freshness**: 20 chats each get a card; then `--joins-per-chat` joins per chat, 2 s
//!   apart in a chat (Telegram allows an edit a second), first through the node that does not
//!   run the Telegram adapter, then through the one that does: time from the join's answer until
//!   the card shows the name.
//! * **Admission**: `--connections` keep-alive clients join round-robin over 1,000 open rooms
//!   of 1,000 places for `--seconds`, first all through node 1 (node 2 idle), then spread over
//!   both nodes; `--rounds` times, alternating. Joins per second and latency.

#[path = "../tests/common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;
#[path = "../tests/support/telegram_double.rs"]
mod telegram_double;

use common::{API_TOKEN, eventually, pg_admin_url};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use telegram_double::{BOT_TOKEN, BotApiDouble};

const HOST: i64 = 111;
const CHATS: i64 = 20;
const EVENT_ROOMS: usize = 200;
const LOAD_ROOMS: usize = 1000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let opts = Opts {
        events: arg("--events", 2000) as usize,
        joins_per_chat: arg("--joins-per-chat", 5) as usize,
        seconds: arg("--seconds", 10),
        connections: arg("--connections", 64) as usize,
        rounds: arg("--rounds", 3) as usize,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(opts));
}

struct Opts {
    events: usize,
    joins_per_chat: usize,
    seconds: u64,
    connections: usize,
    rounds: usize,
}

struct Node {
    child: Child,
    base: String,
    id: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_node(db_url: &str, tg: &BotApiDouble, dir: &std::path::Path) -> Node {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.join("callbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\njoin_rate_per_minute = 0\nsocket_rate_per_minute = 0\n\
             [storage]\nurl = \"{db_url}\"\ndata_dir = \"{dir}\"\nmax_connections = 16\n\
             [rooms]\nice_servers = []\nmax_participants = 1000\n[api]\ntoken = \"{API_TOKEN}\"\n\
             [sfu]\nlisten = \"127.0.0.1:0\"\n[telegram]\ntoken = \"{BOT_TOKEN}\"\napi_url = \"{tg}\"\npoll_timeout = \"2s\"\n",
            dir = dir.display(),
            tg = tg.url,
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the callbridge binary starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let health = || async { http.get(format!("{base}/healthz")).send().await.ok().filter(|r| r.status().is_success()) };
    assert!(eventually(Duration::from_secs(30), || async { health().await.is_some() }).await, "node at {base} answers");
    let id = health().await.unwrap().json::<Value>().await.unwrap()["node_id"].as_str().unwrap().to_owned();
    Node { child, base, id }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!("p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n = {})", percentile(&v, 0.5), percentile(&v, 0.99), v.last().copied().unwrap_or(f64::NAN), v.len())
}

async fn create_room(http: &reqwest::Client, base: &str, body: Value) -> String {
    let r = http.post(format!("{base}/api/v1/rooms")).bearer_auth(API_TOKEN).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn run(opts: Opts) {
    use sqlx::Connection;
    let name = format!("cbbench_{}", callbridge::ids::new_participant_id().to_lowercase());
    let mut admin = sqlx::PgConnection::connect(&pg_admin_url()).await.expect("PostgreSQL at CALLBRIDGE_TEST_PG");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    let db_url = format!("{}/{name}", pg_admin_url().rsplit_once('/').unwrap().0);
    let tg = BotApiDouble::start().await;
    tg.start_bot(HOST);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let nodes = [start_node(&db_url, &tg, dirs[0].path()).await, start_node(&db_url, &tg, dirs[1].path()).await];
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    println!("two nodes on one PostgreSQL ({} cores)", std::thread::available_parallelism().map_or(0, |n| n.get()));

    events(&opts, &db_url, &nodes, &http).await;
    cards(&opts, &db_url, &tg, &nodes, &http).await;
    admission(&opts, &nodes, &http).await;

    drop(nodes);
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut admin).await;
}

/// Commit on node 1 → the event heard on the nodes' channel.
async fn events(opts: &Opts, db_url: &str, nodes: &[Node; 2], http: &reqwest::Client) {
    let mut rooms = Vec::new();
    for _ in 0..EVENT_ROOMS {
        rooms.push(create_room(http, &nodes[0].base, json!({})).await);
    }
    let mut listener = sqlx::postgres::PgListener::connect(db_url).await.unwrap();
    listener.listen("callbridge_events").await.unwrap();
    let (mut heard, mut answered) = (Vec::new(), Vec::new());
    for i in 0..opts.events {
        let room = &rooms[i % EVENT_ROOMS];
        let (action, kind) = if (i / EVENT_ROOMS) % 2 == 0 { ("lock", "locked") } else { ("unlock", "unlocked") };
        let sent = Instant::now();
        let r = http.post(format!("{}/api/v1/rooms/{room}/{action}", nodes[0].base)).bearer_auth(API_TOKEN).send().await.unwrap();
        assert!(r.status().is_success());
        answered.push(sent.elapsed().as_secs_f64() * 1e3);
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await.expect("the event arrives").unwrap();
            let wire: Value = serde_json::from_str(n.payload()).unwrap();
            if wire["event"]["room_id"] == room.as_str() && wire["event"]["type"] == kind {
                heard.push(sent.elapsed().as_secs_f64() * 1e3);
                break;
            }
        }
    }
    println!("\nEvents ({} lock/unlock over {EVENT_ROOMS} rooms through node 1), from the request sent:", opts.events);
    println!("  node 1 answers (committed, published there): {}", summary(answered));
    println!("  heard by another node (LISTEN):              {}", summary(heard));
}

/// Join → the card shows the name, through either node.
async fn cards(opts: &Opts, db_url: &str, tg: &BotApiDouble, nodes: &[Node; 2], http: &reqwest::Client) {
    let chats: Vec<i64> = (0..CHATS).map(|i| -1_000_000_000_000 - i).collect();
    for chat in &chats {
        tg.say(*chat, HOST, "Ada", "/call Bench");
    }
    let card_room = |chat: i64| {
        tg.messages_in(chat).into_iter().find_map(|(_, m)| {
            m.reply_markup["inline_keyboard"][0][0]["url"].as_str().map(|u| u.rsplit('/').next().unwrap().to_owned())
        })
    };
    assert!(eventually(Duration::from_secs(60), || async { chats.iter().all(|c| card_room(*c).is_some()) }).await, "every chat has a card");
    let leader: String = {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(db_url).await.unwrap();
        sqlx::query_scalar("SELECT value FROM adapter_state WHERE platform = 'telegram' AND key = 'leader'").fetch_one(&mut c).await.unwrap()
    };
    let lead = nodes.iter().position(|n| n.id == leader).expect("a node leads Telegram");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut report = Vec::new();
    for (label, node) in [("through the node that does not run the adapter", lead ^ 1), ("through the node that runs it", lead)] {
        let mut fresh = Vec::new();
        for round in 0..opts.joins_per_chat {
            let joins = chats.iter().map(|chat| {
                let (http, base, room) = (http.clone(), nodes[node].base.clone(), card_room(*chat).unwrap());
                let name = format!("P{node}r{round}c{}", -chat % 100);
                async move {
                    let r = http.post(format!("{base}/r/{room}/join")).json(&json!({"name": name})).send().await.unwrap();
                    assert!(r.status().is_success());
                    let joined = Instant::now();
                    let shown = eventually(Duration::from_secs(20), || async {
                        tg.messages_in(*chat).iter().any(|(_, m)| m.text.contains(&name))
                    })
                    .await;
                    assert!(shown, "the card shows {name}");
                    joined.elapsed().as_secs_f64() * 1e3
                }
            });
            fresh.extend(futures::future::join_all(joins).await);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        report.push((label, fresh));
    }
    println!("\nCard freshness ({CHATS} chats, {} joins each way, Telegram's default debounce 300 ms), join answered → card shows the name:", opts.joins_per_chat);
    for (label, fresh) in report {
        println!("  {label:48} {}", summary(fresh));
    }
    println!("  429s from the double: {}", tg.rate_limited());
}

/// Joins per second, one node beside two.
async fn admission(opts: &Opts, nodes: &[Node; 2], http: &reqwest::Client) {
    println!("\nAdmission ({} connections, joins round-robin over {LOAD_ROOMS} rooms, {} s a turn):", opts.connections, opts.seconds);
    let mut results: Vec<(usize, f64, Vec<f64>)> = Vec::new();
    for round in 0..opts.rounds {
        for spread in [1usize, 2] {
            let mut rooms = Vec::new();
            for _ in 0..LOAD_ROOMS {
                rooms.push(create_room(http, &nodes[0].base, json!({"max_participants": 1000})).await);
            }
            let rooms = Arc::new(rooms);
            let next = Arc::new(AtomicUsize::new(0));
            let bases: Arc<Vec<String>> = Arc::new(nodes.iter().take(spread).map(|n| n.base.clone()).collect());
            let deadline = Instant::now() + Duration::from_secs(opts.seconds);
            let clients = (0..opts.connections).map(|_| {
                let (http, rooms, next, bases) = (http.clone(), rooms.clone(), next.clone(), bases.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let (room, base) = (&rooms[i % LOAD_ROOMS], &bases[i % bases.len()]);
                        let sent = Instant::now();
                        let r = http.post(format!("{base}/r/{room}/join")).json(&json!({"name": format!("Guest {i}")})).send().await.unwrap();
                        assert!(r.status().is_success(), "{}", r.status());
                        latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                    }
                    latencies
                })
            });
            let started = Instant::now();
            let latencies: Vec<f64> = futures::future::join_all(clients).await.into_iter().flat_map(|r| r.unwrap()).collect();
            let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
            println!("  round {}, {} node{}: {rate:.0} joins/s, {}", round + 1, spread, if spread == 1 { "" } else { "s" }, summary(latencies.clone()));
            results.push((spread, rate, latencies));
        }
    }
    for spread in [1, 2] {
        let mut rates: Vec<f64> = results.iter().filter(|r| r.0 == spread).map(|r| r.1).collect();
        rates.sort_by(f64::total_cmp);
        let all: Vec<f64> = results.iter().filter(|r| r.0 == spread).flat_map(|r| r.2.iter().copied()).collect();
        println!("  {spread} node{}: median {:.0} joins/s; all rounds {}", if spread == 1 { " " } else { "s" }, rates[rates.len() / 2], summary(all));
    }
}
