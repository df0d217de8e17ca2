//! Room-page sockets one daemon holds, its memory, and the signaling relay's latency.
//!
//!     cargo bench --bench sockets [-- --rooms 2000 --per-room 5 --seconds 10]
//!
//! The daemon (SQLite) runs in a child process. This process mints the rooms, admits
//! `--per-room` people to each through `POST /r/{id}/join`, opens every room socket, and keeps
//! reading all of them. Then, with every socket open, one participant per room in 200 rooms
//! sends signaling frames to another (10 per second each) and the receive time of each is
//! taken; the daemon's resident memory is read from /proc.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const API_TOKEN: &str = "bench-api-token-0123456789";

fn main() {
    if std::env::var("CB_BENCH_SERVE").is_ok() {
        return serve();
    }
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let (rooms, per_room, seconds) = (arg("--rooms", 2000), arg("--per-room", 5), arg("--seconds", 10));
    tokio::runtime::Runtime::new().unwrap().block_on(run(rooms, per_room, seconds as u64));
}

async fn run(rooms: usize, per_room: usize, seconds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("CB_BENCH_SERVE", "1")
        .env("CB_BENCH_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("READY ").unwrap().to_owned();
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let rss = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()))
            .unwrap_or(0) / 1024
    };
    let idle_rss = rss(child.id());

    // Mint and admit.
    let t = Instant::now();
    let mut tokens: Vec<Vec<(String, String)>> = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..rooms {
        let v: Value = http.post(format!("{base}/api/v1/rooms")).bearer_auth(API_TOKEN).json(&json!({"max_participants": per_room}))
            .send().await.unwrap().json().await.unwrap();
        let id = v["id"].as_str().unwrap().to_owned();
        let mut people = Vec::new();
        for i in 0..per_room {
            let j: Value = http.post(format!("{base}/r/{id}/join")).json(&json!({"name": format!("p{i}")})).send().await.unwrap().json().await.unwrap();
            people.push((j["participant_id"].as_str().unwrap().to_owned(), j["token"].as_str().unwrap().to_owned()));
        }
        ids.push(id);
        tokens.push(people);
    }
    println!("minted {rooms} rooms and admitted {} people in {:.1} s", rooms * per_room, t.elapsed().as_secs_f64());

    // Open every socket; each is read by its own task; signal frames go to the collector.
    let (sig_tx, mut sig_rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let t = Instant::now();
    let mut senders = Vec::new();
    let mut opened = 0usize;
    for (room, people) in ids.iter().zip(&tokens) {
        for (i, (_, token)) in people.iter().enumerate() {
            let url = format!("ws://{addr}/r/{room}/ws?token={token}");
            let (ws, _) = tokio_tungstenite::connect_async_with_config(&url, Some(config), false).await.expect("socket opens");
            opened += 1;
            let (sink, mut stream) = ws.split();
            let sig_tx = sig_tx.clone();
            tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    if let Message::Text(t) = msg
                        && t.contains("\"signal\"")
                    {
                        let v: Value = serde_json::from_str(&t).unwrap();
                        let _ = sig_tx.send((v["data"]["seq"].as_u64().unwrap(), Instant::now()));
                    }
                }
            });
            if i == 0 { senders.push(sink) } else { drop(sink) }
        }
    }
    println!("opened {opened} sockets in {:.1} s", t.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let health: Value = http.get(format!("{base}/healthz")).send().await.unwrap().json().await.unwrap();
    let held = health["sockets"].as_u64().unwrap();
    let full_rss = rss(child.id());

    // Relay latency: 200 senders, 10 frames per second each, to the second person of their room.
    let sent: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
    let relay_rooms = senders.len().min(200);
    let rounds = seconds * 10;
    let t = Instant::now();
    for round in 0..rounds {
        for (r, sink) in senders.iter_mut().take(relay_rooms).enumerate() {
            let seq = round * relay_rooms as u64 + r as u64;
            let to = &tokens[r][1].0;
            sent.lock().unwrap().push(Instant::now());
            sink.send(Message::text(json!({"type": "signal", "to": to, "data": {"seq": seq}}).to_string())).await.unwrap();
        }
        tokio::time::sleep_until((t + Duration::from_millis(100 * (round + 1))).into()).await;
    }
    let expected = (rounds as usize) * relay_rooms;
    let mut lat = Vec::with_capacity(expected);
    let deadline = Instant::now() + Duration::from_secs(5);
    while lat.len() < expected && Instant::now() < deadline {
        if let Ok(Some((seq, at))) = tokio::time::timeout(Duration::from_millis(200), sig_rx.recv()).await {
            lat.push(at.duration_since(sent.lock().unwrap()[seq as usize]).as_micros() as u64);
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1000.0;
    println!("\n| sockets held | rooms | daemon RSS idle | daemon RSS with all sockets | relayed | relay p50 | relay p99 |");
    println!("|---|---|---|---|---|---|---|");
    println!("| {held} | {rooms} | {idle_rss} MB | {full_rss} MB | {}/{expected} | {:.2} ms | {:.2} ms |", lat.len(), pct(0.5), pct(0.99));
    let _ = child.kill();
    let _ = child.wait();
}

fn serve() {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let dir = std::path::PathBuf::from(std::env::var("CB_BENCH_DIR").unwrap());
        let mut c = callbridge::config::Config::default();
        c.server.listen = "127.0.0.1:0".parse().unwrap();
        c.server.join_rate_per_minute = 0;
        c.server.socket_rate_per_minute = 0;
        c.storage.data_dir = dir;
        c.api.token = Some(callbridge::config::Secret::new(API_TOKEN));
        c.rooms.ice_servers = vec![];
        let daemon = callbridge::daemon::Daemon::start(c).await.unwrap();
        println!("READY {}", daemon.addr);
        std::future::pending::<()>().await;
    });
}
