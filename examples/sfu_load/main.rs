//! `sfu_load`: synthetic participants in one SFU room, for the room-of-50 test and the SFU
//! benchmark. Each joins through the join gate and room socket, publishes pre-encoded VP8 and
//! Opus, and counts what it receives from whom; at the end one JSON object goes to stdout:
//! `{"joined": n, "refused": [status…], "participants": [{"name", "pid", "received": {pid: …},
//! "closed", "first_video_ms", "connected_ms", "slots", "offers_answered"}]}`.
//!
//! ```sh
//! cargo run --release --example sfu_load -- --base http://127.0.0.1:8080 --room ID --count 48 --seconds 20
//! ```

mod client;

use client::{Media, Synthetic};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

struct Args {
    base: String,
    rooms: Vec<String>,
    count: usize,
    seconds: u64,
    media: PathBuf,
    fps: u64,
    /// How long the peer connections may take to come up before the measured time starts.
    connect_within: Duration,
}

fn args() -> Args {
    let mut a = Args { base: String::new(), rooms: Vec::new(), count: 1, seconds: 10, media: PathBuf::from("tests/media"), fps: client::VIDEO_FPS, connect_within: Duration::from_secs(60) };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--base" => a.base = value,
            // Several rooms: participants are spread over them in turn.
            "--room" => a.rooms.push(value),
            "--count" => a.count = value.parse().expect("--count N"),
            "--seconds" => a.seconds = value.parse().expect("--seconds N"),
            "--media" => a.media = PathBuf::from(value),
            // Fewer video frames a second (the same loop, slower): room logic under a light load.
            "--fps" => a.fps = value.parse().expect("--fps N"),
            "--connect-within" => a.connect_within = Duration::from_secs(value.parse().expect("--connect-within SECONDS")),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!a.base.is_empty() && !a.rooms.is_empty(), "usage: sfu_load --base URL --room ID [--room ID…] [--count N] [--seconds N] [--media DIR] [--fps N] [--connect-within SECONDS]");
    a
}

#[tokio::main]
async fn main() {
    let a = args();
    let media = Arc::new(Media::load(&a.media).expect("the synthetic media (scripts/make-test-media.sh)").with_fps(a.fps));
    media.publish.store(false, std::sync::atomic::Ordering::Relaxed);
    let http = reqwest::Client::new();
    let mut joined: Vec<Synthetic> = Vec::new();
    let mut refused = Vec::new();
    for i in 0..a.count {
        let room = &a.rooms[i % a.rooms.len()];
        match Synthetic::join(&http, &a.base, room, &format!("Synthetic {i}"), media.clone()).await {
            Ok(s) => joined.push(s),
            Err((status, body)) => refused.push(json!({"status": status, "body": body})),
        }
    }
    eprintln!("sfu_load: {} joined, {} refused", joined.len(), refused.len());
    // The measured time starts once every peer connection is up (ICE and DTLS take a while
    // when dozens arrive at once on a loaded machine), or after `--connect-within` at most.
    let since = std::time::Instant::now();
    while since.elapsed() < a.connect_within && joined.iter().any(|s| s.connected.lock().unwrap().is_none() && s.closed.lock().unwrap().is_none()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connected = joined.iter().filter(|s| s.connected.lock().unwrap().is_some()).count();
    eprintln!("sfu_load: {connected} connected after {} ms; running {} s", since.elapsed().as_millis(), a.seconds);
    // Only now does anyone publish: handshakes done on a busy forwarding thread lose packets
    // to full socket buffers and wait out DTLS retransmission backoff.
    media.publish.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(a.seconds)).await;
    let participants: Vec<_> =
        joined.iter().map(|s| json!({"name": s.name, "pid": s.pid, "received": s.received(), "closed": *s.closed.lock().unwrap(),
            "first_video_ms": s.first_video.lock().unwrap().map(|d| d.as_millis() as u64),
            "connected_ms": s.connected.lock().unwrap().map(|d| d.as_millis() as u64),
            "slots": s.slots.lock().unwrap().0, "offers_answered": s.slots.lock().unwrap().1})).collect();
    println!("{}", json!({"joined": joined.len(), "refused": refused, "participants": participants}));
    for s in joined {
        s.leave().await;
    }
}
