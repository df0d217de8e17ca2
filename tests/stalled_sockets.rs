//! Hardening point 3, measured on the real `callbridge` binary in a child process: 200 room
//! pages that stop reading while other pages keep signaling to them at full budget. The
//! daemon's resident memory must stay flat (bounded per stalled socket, not by what is sent to
//! it), and every stalled page must be dropped and marked left.

mod common;

use common::{API_TOKEN, Db, TestDb};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const ROOMS: usize = 10;
const STALLED_PER_ROOM: usize = 20;
const TALKERS_PER_ROOM: usize = 4;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc is readable");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_stalled_pages_leave_memory_flat() {
    let db = TestDb::new(Db::Sqlite).await;
    let config = db.dir.path().join("callbridge.toml");
    let mut daemon = common::start_daemon(&config, &db.dir.path().join("daemon.log"), "warn,callbridge::daemon=info", |port| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\njoin_rate_per_minute = 0\nsocket_rate_per_minute = 0\n\
             [storage]\nurl = \"{url}\"\ndata_dir = \"{dir}\"\n\
             [rooms]\nmax_participants = 50\npresence_grace = \"1s\"\nice_servers = []\n\
             [api]\ntoken = \"{API_TOKEN}\"\n[sfu]\nlisten = \"127.0.0.1:0\"\n",
            url = db.url,
            dir = db.dir.path().display(),
        )
    })
    .await;
    let (port, base, pid) = (daemon.port, daemon.base.clone(), daemon.child.id());
    let http = reqwest::Client::new();

    let join = |id: String, name: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let r = http.post(format!("{base}/r/{id}/join")).json(&json!({"name": name})).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let v: Value = r.json().await.unwrap();
            (v["participant_id"].as_str().unwrap().to_owned(), v["token"].as_str().unwrap().to_owned())
        }
    };
    let ws_url = |id: &str, token: &str| format!("ws://127.0.0.1:{port}/r/{id}/ws?token={token}");

    // Every room: 20 pages that read their welcome and then never again, 4 that talk.
    let mut rooms = Vec::new();
    let mut stalled = Vec::new();
    let mut talkers = Vec::new();
    for r in 0..ROOMS {
        let created: Value = http
            .post(format!("{base}/api/v1/rooms"))
            .bearer_auth(API_TOKEN)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        let mut targets = Vec::new();
        for s in 0..STALLED_PER_ROOM {
            let (pid, token) = join(id.clone(), format!("stalled {r}.{s}")).await;
            let mut ws = common::connect_stalled(&ws_url(&id, &token)).await;
            ws.next().await.expect("welcome").unwrap();
            targets.push(pid);
            stalled.push(ws);
        }
        for t in 0..TALKERS_PER_ROOM {
            let (_, token) = join(id.clone(), format!("talker {r}.{t}")).await;
            talkers.push((ws_url(&id, &token), targets.clone()));
        }
        rooms.push(id);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss_kib(pid);

    // Each talker signals its room's stalled pages at its whole frame budget (just under 200
    // frames a second, 10 to each target) with frames just under the 16 KiB cap.
    // They go on until every stalled page was dropped and 240 MiB were sent in all (12 s on
    // a quick machine), or for 60 s.
    let blob = "x".repeat(15_000);
    let deadline = Instant::now() + Duration::from_secs(60);
    let total = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = talkers
        .into_iter()
        .map(|(url, targets)| {
            let (blob, total, stop) = (blob.clone(), total.clone(), stop.clone());
            tokio::spawn(async move {
                let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("talker connects");
                let (mut tx, mut rx) = ws.split();
                // Drain what the talker is sent, so only the stalled pages stall.
                let drain = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
                let mut sent = 0u64;
                let mut tick = tokio::time::interval(Duration::from_millis(110));
                // A late tick on a busy machine must not be made up in a burst: that would
                // break the per-socket budget and get the talker dropped.
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    for to in &targets {
                        let frame = json!({"type": "signal", "to": to, "data": {"blob": &blob}}).to_string();
                        if tx.send(Message::Text(frame.into())).await.is_err() {
                            drain.abort();
                            return sent;
                        }
                        sent += blob.len() as u64;
                        total.fetch_add(blob.len() as u64, Ordering::Relaxed);
                    }
                }
                drain.abort();
                sent
            })
        })
        .collect();
    // Every stalled page is dropped and marked left: at once when its queue overflowed, else
    // when a send (at the latest the next ping, every 25 s) timed out.
    let all_left = || async {
        let mut all = true;
        for id in &rooms {
            let room: Value =
                http.get(format!("{base}/api/v1/rooms/{id}")).bearer_auth(API_TOKEN).send().await.unwrap().json().await.unwrap();
            all &= room["participants"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["name"].as_str().unwrap().starts_with("stalled"))
                .all(|p| p["left_at"].is_string());
        }
        all
    };
    let (mut peak, mut left, mut checked) = (baseline, false, Instant::now());
    while Instant::now() < deadline {
        peak = peak.max(rss_kib(pid));
        if total.load(Ordering::Relaxed) >= 240 * 1048576 && checked.elapsed() >= Duration::from_secs(1) {
            checked = Instant::now();
            if all_left().await {
                left = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).sum();
    let left = left || common::eventually(Duration::from_secs(45), all_left).await;
    let growth_mib = (peak - baseline) as f64 / 1024.0;
    eprintln!(
        "{} stalled pages, {:.0} MiB signaled at them: RSS {:.1} MiB before, peak {:.1} MiB (+{growth_mib:.1} MiB)",
        stalled.len(),
        sent as f64 / 1048576.0,
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
    drop(stalled);
    daemon.kill();
    // The bound: what one stalled socket may pin (its queue, 128 KiB, and its write buffer,
    // 128 KiB), for 200 sockets, plus 32 MiB for the allocator's own slack. Without the bound
    // on the queue's bytes this grew by 400 MiB.
    assert!(sent > 200 * 1048576, "the load was too light to mean anything: {sent} bytes");
    assert!(growth_mib < 200.0 * 0.25 + 32.0, "resident memory grew {growth_mib:.1} MiB under 200 stalled pages");
    assert!(left, "some stalled page still holds its place");
}
