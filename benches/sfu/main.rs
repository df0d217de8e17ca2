//! The SFU under rooms of synthetic participants (`examples/sfu_load/client.rs`: str0m clients
//! publishing pre-encoded VP8 at 15 fps and Opus in 60 ms frames, each receiving everyone it is
//! sent). The daemon runs as its own process (release); the participants run here, on the same
//! cores. For each room size it reports the daemon's CPU and memory, the streams it forwards,
//! and the CPU per forwarded stream; then how the CPU grows with several rooms of 50, and how
//! long a newcomer to a busy room waits for its first video frame.
//!
//! With `--janus URL --janus-pid PID --janus-ip IP`, every shape also runs against Janus's
//! VideoRoom in the same run (`janus.rs`), subscribing to the same streams callbridge forwards;
//! `scripts/bench-sfu.sh` sets that up (Janus does not offer loopback candidates, so it runs in a
//! network namespace of its own with a dummy interface).
//!
//! ```sh
//! scripts/bench-sfu.sh        # both, in a namespace
//! cargo bench --bench sfu -- --sizes 10,25,50 --seconds 20 --rooms-of-50 1,2 --newcomers 20
//! ```

#[allow(dead_code)] // the load tool's client; the benchmark reads only part of what it reports
#[path = "../../examples/sfu_load/client.rs"]
mod client;
mod janus;

use client::{Media, Synthetic};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const API_TOKEN: &str = "sfu-bench-api-token-0123456789abcdef";

struct Args {
    sizes: Vec<usize>,
    seconds: u64,
    rooms_of_50: Vec<usize>,
    newcomers: usize,
    janus: Option<(String, u32, std::net::IpAddr)>,
}

fn args() -> Args {
    let mut a = Args { sizes: vec![10, 25, 50], seconds: 20, rooms_of_50: vec![1, 2], newcomers: 20, janus: None };
    let (mut janus_url, mut janus_pid, mut janus_ip) = (None, None, None);
    let list = |v: &str| v.split(',').map(|n| n.trim().parse().expect("a number")).collect::<Vec<usize>>();
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--sizes" => a.sizes = list(&value),
            "--seconds" => a.seconds = value.parse().expect("--seconds N"),
            "--rooms-of-50" => a.rooms_of_50 = list(&value),
            "--newcomers" => a.newcomers = value.parse().expect("--newcomers N"),
            "--janus" => janus_url = Some(value),
            "--janus-pid" => janus_pid = Some(value.parse().expect("--janus-pid PID")),
            "--janus-ip" => janus_ip = Some(value.parse().expect("--janus-ip IP")),
            other => panic!("unknown flag {other}"),
        }
    }
    if let (Some(url), Some(pid), Some(ip)) = (janus_url, janus_pid, janus_ip) {
        a.janus = Some((url, pid, ip));
    }
    a
}

/// CPU time (user + system) and resident memory of a process.
fn usage(pid: u32) -> (Duration, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    (Duration::from_millis(ticks * 10), rss)
}

struct Daemon {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_daemon() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("callbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\njoin_rate_per_minute = 0\nsocket_rate_per_minute = 0\n\
             [storage]\ndata_dir = \"{}\"\n[rooms]\nice_servers = []\n[api]\ntoken = \"{API_TOKEN}\"\n\
             [sfu]\nlisten = \"127.0.0.1:0\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the daemon starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Daemon { child, base, _dir: dir }
}

async fn room(http: &reqwest::Client, base: &str) -> String {
    let v: serde_json::Value =
        http.post(format!("{base}/api/v1/rooms")).bearer_auth(API_TOKEN).send().await.unwrap().json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// Streams the SFU forwards in a room of `n`: each page gets at most 16 cameras and 8 voices.
fn forwarded(n: usize) -> usize {
    n * ((n - 1).min(16) + (n - 1).min(8))
}

/// Frames all participants received in total.
fn frames(people: &[Synthetic]) -> u64 {
    people.iter().flat_map(|s| s.received().into_values()).map(|r| r.video_frames + r.audio_frames).sum()
}

/// Fills `rooms` rooms of `n`, waits for media to settle, and measures `seconds`.
async fn measure(d: &Daemon, http: &reqwest::Client, media: &Arc<Media>, rooms: usize, n: usize, seconds: u64) -> (f64, f64, f64, usize) {
    let pid = d.child.id();
    let (_, rss_before) = usage(pid);
    let mut people = Vec::new();
    for _ in 0..rooms {
        let id = room(http, &d.base).await;
        for i in 0..n {
            people.push(Synthetic::join(http, &d.base, &id, &format!("P{i}"), media.clone()).await.expect("joins"));
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu0, _) = usage(pid);
    let (f0, t0) = (frames(&people), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, rss) = usage(pid);
    let (f1, elapsed) = (frames(&people), t0.elapsed().as_secs_f64());
    for p in people {
        p.leave().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cores = (cpu1 - cpu0).as_secs_f64() / elapsed;
    let mib_per_room = (rss.saturating_sub(rss_before)) as f64 / 1024.0 / rooms as f64;
    ((f1 - f0) as f64 / elapsed, cores, mib_per_room, rooms * forwarded(n))
}

/// The same shape at Janus: `rooms` VideoRooms of `n` publishers, each participant subscribing
/// to the cameras and voices callbridge would forward it.
async fn measure_janus(url: &str, pid: u32, ip: std::net::IpAddr, http: &reqwest::Client, media: &Arc<Media>, rooms: usize, n: usize, seconds: u64) -> (f64, f64, f64, usize) {
    static NEXT_ROOM: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(4000);
    let (_, rss_before) = usage(pid);
    let admin = janus::Session::create(http, url).await;
    let (handle, _) = admin.attach().await;
    let mut people: Vec<janus::Participant> = Vec::new();
    let mut shape = Vec::new();
    for _ in 0..rooms {
        let room = NEXT_ROOM.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let created = admin
            .message(handle, serde_json::json!({"request": "create", "room": room, "publishers": n + 1, "videocodec": "vp8", "audiocodec": "opus", "bitrate": 0}), None)
            .await;
        assert_eq!(created["plugindata"]["data"]["videoroom"], "created", "{created}");
        let start = people.len();
        for i in 0..n {
            people.push(janus::Participant::publish(http, url, room, ip, media.clone(), &format!("P{i}")).await);
        }
        shape.push((room, start, people.len()));
    }
    for (room, start, end) in shape {
        let feeds: Vec<(u64, (String, String))> = people[start..end].iter().map(|p| (p.feed, p.mids.clone())).collect();
        for (i, p) in people[start..end].iter_mut().enumerate() {
            let others: Vec<&(u64, (String, String))> = feeds.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, f)| f).collect();
            let videos: Vec<(u64, String)> = others.iter().take(16).map(|(f, (_, v))| (*f, v.clone())).collect();
            let audios: Vec<(u64, String)> = others.iter().take(8).map(|(f, (a, _))| (*f, a.clone())).collect();
            p.subscribe(room, ip, &videos, &audios).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (cpu0, _) = usage(pid);
    let f0: u64 = people.iter().map(janus::Participant::frames).sum();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, rss) = usage(pid);
    let f1: u64 = people.iter().map(janus::Participant::frames).sum();
    let elapsed = t0.elapsed().as_secs_f64();
    for p in people {
        p.leave().await;
    }
    admin.destroy().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cores = (cpu1 - cpu0).as_secs_f64() / elapsed;
    ((f1 - f0) as f64 / elapsed, cores, rss.saturating_sub(rss_before) as f64 / 1024.0 / rooms as f64, rooms * forwarded(n))
}

#[tokio::main]
async fn main() {
    let a = args();
    let media = Arc::new(Media::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media")).unwrap());
    let http = reqwest::Client::new();
    let d = start_daemon().await;
    println!("| server | rooms × publishers | streams forwarded | frames received/s | server CPU (cores) | CPU per stream (% of a core) | RSS per room (MiB) |");
    println!("|---|---|---|---|---|---|---|");
    let mut shapes: Vec<(usize, usize)> = a.sizes.iter().map(|n| (1, *n)).collect();
    shapes.extend(a.rooms_of_50.iter().filter(|r| **r > 1).map(|r| (*r, 50)));
    for (rooms, n) in shapes {
        let (fps, cores, mib, streams) = measure(&d, &http, &media, rooms, n, a.seconds).await;
        println!("| callbridge | {rooms} × {n} | {streams} | {fps:.0} | {cores:.3} | {:.4} | {mib:.1} |", cores * 100.0 / streams as f64);
        if let Some((url, pid, ip)) = &a.janus {
            let (fps, cores, mib, streams) = measure_janus(url, *pid, *ip, &http, &media, rooms, n, a.seconds).await;
            println!("| Janus | {rooms} × {n} | {streams} | {fps:.0} | {cores:.3} | {:.4} | {mib:.1} |", cores * 100.0 / streams as f64);
        }
    }

    // Newcomers to a busy room of 25: join request → first video frame.
    if a.newcomers > 0 {
        let id = room(&http, &d.base).await;
        let mut busy = Vec::new();
        for i in 0..25 {
            busy.push(Synthetic::join(&http, &d.base, &id, &format!("B{i}"), media.clone()).await.unwrap());
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut waits = Vec::new();
        for i in 0..a.newcomers {
            let s = Synthetic::join(&http, &d.base, &id, &format!("N{i}"), media.clone()).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while s.first_video.lock().unwrap().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let wait = *s.first_video.lock().unwrap();
            waits.push(wait.unwrap_or(Duration::from_secs(10)));
            s.leave().await;
        }
        waits.sort();
        let at = |q: f64| waits[((waits.len() as f64 * q).ceil() as usize).clamp(1, waits.len()) - 1];
        println!("\njoin to first video frame, {} newcomers to a room of 25: p50 {:?}, p99 {:?}", waits.len(), at(0.5), at(0.99));
        for s in busy {
            s.leave().await;
        }
    }
}
