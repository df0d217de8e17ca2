//! Admission throughput and latency: `POST /r/{id}/join` on callbridge (SQLite, PostgreSQL)
//! side by side with a bare axum handler, in one run on the same machine.
//!
//!     cargo bench --bench admission [-- --seconds 10 --connections 64 --rounds 3 --slices 5 --targets sqlite,postgres]
//!
//! Each round gives every target turns of its own beside a fresh bare handler: the two run
//! side by side and, after a warm-up of each, the load visits them in turn, `--slices` windows
//! each (of `--seconds` ÷ `--slices`), bare, SQLite, bare, SQLite, … with a pause before each;
//! then both stop and PostgreSQL's turns follow the same way. This machine's speed drifts from
//! one minute to the next, and taking turns puts a target and its bare handler in the same
//! spells, where one whole run after another could give the bare handler a fast minute and
//! callbridge a slow one. One target's server never runs beside another's: with all of them
//! in one rotation, SQLite's rounds missed their target far more often, most likely because
//! PostgreSQL's server was still checkpointing and vacuuming what its windows wrote. Every
//! ratio is taken against the bare handler of the same turns, and the summary gives the
//! medians of the rounds and how many rounds met the target.
//!
//! Each server runs in its own child process (this binary again, with `CB_BENCH_SERVE` set);
//! this process is the load generator, with `--connections` keep-alive connections each
//! sending one request after another. Every callbridge join is a real admission: rooms of 1000
//! places are minted up front and filled in turn, so every answer is a 200 written to disk.
//! PostgreSQL comes from `CALLBRIDGE_TEST_PG` (default 127.0.0.1:5432, database `test`).
//!
//! Where the time goes is printed beside the figures (Linux, from `/proc`): the CPU time the
//! server process and the load generator spent per answered request (for PostgreSQL, its own
//! processes are not counted), and how much of the machine sat idle or was taken by the host
//! (a virtual machine's steal time), over the measured windows.

use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The daemon binary's allocator, for both servers (and the load generator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROOM_SIZE: u64 = 1000;
const API_TOKEN: &str = "bench-api-token-0123456789";

fn main() {
    if let Ok(kind) = std::env::var("CB_BENCH_SERVE") {
        return serve(&kind);
    }
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let (seconds, connections, rounds) = (arg("--seconds", 10), arg("--connections", 64) as usize, arg("--rounds", 3).max(1));
    let slices = arg("--slices", 5).clamp(1, seconds.max(1)) as u32;
    let targets = args.iter().position(|a| a == "--targets").and_then(|i| args.get(i + 1)).map_or("sqlite,postgres", |v| v.as_str());
    // Every target is read against a bare handler loaded in turns with it, so a slow or fast
    // spell of the machine moves both.
    let targets: Vec<&str> = targets.split(',').filter(|t| ["sqlite", "postgres"].contains(t)).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!(
        "admission benchmark: {connections} connections, {seconds} s per server in {slices} windows, {rounds} rounds, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    // runs[round][target]: each target's figures beside the bare handler's of the same turns.
    let mut runs: Vec<Vec<Pair>> = Vec::new();
    for round in 0..rounds {
        let mut pairs = Vec::new();
        for target in &targets {
            let pair = rt.block_on(take_turns(target, seconds, connections, slices));
            for (name, r) in [("bare", &pair.bare), (*target, &pair.target)] {
                println!(
                    "round {}  {name:>8} (turns with {target}): {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} ok, {} other)",
                    round + 1, r.rps, r.p50, r.p99, r.ok, r.other
                );
            }
            pairs.push(pair);
        }
        runs.push(pairs);
    }
    println!(
        "\n| round | server | joins/s | p50 ms | p90 ms | p99 ms | p99.9 ms | vs bare throughput | vs bare p99 \
         | server CPU µs/req | load CPU µs/req | idle | steal |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let shown = |v: Option<f64>, unit: &str| v.map_or("–".to_owned(), |v| format!("{v:.1}{unit}"));
    for (round, pairs) in runs.iter().enumerate() {
        for (target, pair) in targets.iter().zip(pairs) {
            for (name, r) in [(format!("bare (turns with {target})"), &pair.bare), (target.to_string(), &pair.target)] {
                println!(
                    "| {} | {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2}× | {:.2}× | {} | {} | {} | {} |",
                    round + 1, r.rps, r.p50, r.p90, r.p99, r.p999, r.rps / pair.bare.rps, r.p99 / pair.bare.p99,
                    shown(r.cpu.map(|c| c.server_us), ""), shown(r.cpu.map(|c| c.load_us), ""),
                    shown(r.cpu.map(|c| c.idle_pct), " %"), shown(r.cpu.map(|c| c.steal_pct), " %"),
                );
            }
        }
    }
    // Medians over the rounds; the ratios are each round's own, then their median.
    println!(
        "\nmedians of {rounds} rounds; target for SQLite: ≥ {MIN_THROUGHPUT}× the bare handler's throughput and p99 ≤ {MAX_P99}× its p99\n\n\
         | target | joins/s | p99 ms | bare req/s | bare p99 ms | vs bare throughput | vs bare p99 | rounds within the target |\n\
         |---|---|---|---|---|---|---|---|"
    );
    for (i, target) in targets.iter().enumerate() {
        let of = |f: &dyn Fn(&Pair) -> f64| median(runs.iter().map(|pairs| f(&pairs[i])).collect());
        let within = runs.iter().filter(|pairs| pairs[i].throughput_ratio() >= MIN_THROUGHPUT && pairs[i].p99_ratio() <= MAX_P99).count();
        println!(
            "| {target} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2}× | {:.2}× | {within} of {rounds} |",
            of(&|p| p.target.rps),
            of(&|p| p.target.p99),
            of(&|p| p.bare.rps),
            of(&|p| p.bare.p99),
            of(&Pair::throughput_ratio),
            of(&Pair::p99_ratio),
        );
    }
}

/// The admission target the README reports against.
const MIN_THROUGHPUT: f64 = 0.6;
const MAX_P99: f64 = 1.5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// A target's figures and the bare handler's, from the same turns.
struct Pair {
    bare: Figures,
    target: Figures,
}

impl Pair {
    fn throughput_ratio(&self) -> f64 {
        self.target.rps / self.bare.rps
    }

    fn p99_ratio(&self) -> f64 {
        self.target.p99 / self.bare.p99
    }
}

struct Figures {
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    ok: u64,
    other: u64,
    cpu: Option<Cpu>,
}

/// Where the time of a measured window went.
#[derive(Clone, Copy)]
struct Cpu {
    /// CPU time of the server process per answered request.
    server_us: f64,
    /// CPU time of this process (the load generator) per answered request.
    load_us: f64,
    /// Share of the machine's cores that sat idle.
    idle_pct: f64,
    /// Share of the machine's cores that the host gave to something else (a virtual machine's
    /// steal time): the bench cannot tell that from slow code, so it is shown.
    steal_pct: f64,
}

/// A process's CPU time in seconds (user + system), from `/proc/PID/stat`.
fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // /proc reports in USER_HZ, which Linux fixes at 100 for user space.
    Some(ticks as f64 / 100.0)
}

/// The machine's time in ticks, from `/proc/stat`.
#[derive(Clone, Copy)]
struct MachineTime {
    idle: u64,
    steal: u64,
    total: u64,
}

fn machine_time() -> Option<MachineTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).take(8).filter_map(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: idle and iowait are idle cores; steal is
    // time the host ran something else on this machine's virtual cores.
    Some(MachineTime { idle: ticks.get(3)? + ticks.get(4)?, steal: *ticks.get(7)?, total: ticks.iter().sum() })
}

/// A snapshot to measure a window from.
struct CpuMark {
    server: f64,
    load: f64,
    machine: MachineTime,
}

impl CpuMark {
    fn take(server_pid: u32) -> Option<CpuMark> {
        Some(CpuMark { server: process_cpu(server_pid)?, load: process_cpu(std::process::id())?, machine: machine_time()? })
    }
}

/// One server under test, started and filled with rooms, waiting for load.
struct Server {
    child: Child,
    base: String,
    client: reqwest::Client,
    rooms: Arc<Vec<String>>,
    counter: Arc<AtomicU64>,
    /// The throwaway PostgreSQL database, dropped at the end.
    pg_db: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts `target` and mints enough rooms of 1000 places for `seconds` of joins.
    async fn start(target: &str, seconds: u64, connections: usize) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut pg_db = None;
        let storage = match target {
            "sqlite" => format!("sqlite://{}/bench.db", dir.path().display()),
            "postgres" => {
                use sqlx::Connection;
                let admin_url = std::env::var("CALLBRIDGE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
                let name = format!("cb_bench_{}", std::process::id());
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.expect("PostgreSQL for the benchmark");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
                let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);
                pg_db = Some((admin_url, name));
                url
            }
            _ => String::new(),
        };
        let mut child = spawn_server(target, &storage, dir.path());
        let base = format!("http://{}", read_addr(&mut child));
        let client = reqwest::Client::builder().pool_max_idle_per_host(connections).build().unwrap();
        let rooms = if target == "bare" {
            vec!["AAAAAAAAAAAAAAAAAAAAAA".into()]
        } else {
            let n = (seconds + 3) * 60_000 / ROOM_SIZE;
            let mut ids = Vec::new();
            for _ in 0..n {
                let v: Value = client.post(format!("{base}/api/v1/rooms")).bearer_auth(API_TOKEN)
                    .json(&json!({"max_participants": ROOM_SIZE})).send().await.unwrap().json().await.unwrap();
                ids.push(v["id"].as_str().unwrap().to_owned());
            }
            ids
        };
        let counter = Arc::new(AtomicU64::new(0));
        Server { child, base, client, rooms: Arc::new(rooms), counter, pg_db, _dir: dir }
    }

    /// `connections` connections sending joins one after another for `duration`: the
    /// latencies in µs (when `record`), the 200s and the other answers.
    async fn load(&self, connections: usize, duration: Duration, record: bool) -> (Vec<u32>, u64, u64) {
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                let (client, base, rooms, counter) = (self.client.clone(), self.base.clone(), self.rooms.clone(), self.counter.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    let (mut ok, mut other) = (0u64, 0u64);
                    let end = Instant::now() + duration;
                    while Instant::now() < end {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let room = &rooms[((n / ROOM_SIZE) as usize) % rooms.len()];
                        let t = Instant::now();
                        let r = client.post(format!("{base}/r/{room}/join")).json(&json!({"name": "bench"})).send().await;
                        let good = matches!(&r, Ok(r) if r.status() == 200);
                        if let Ok(r) = r {
                            let _ = r.bytes().await;
                        }
                        if record {
                            lat.push(t.elapsed().as_micros() as u32);
                        }
                        if good { ok += 1 } else { other += 1 }
                    }
                    (lat, ok, other)
                })
            })
            .collect();
        let mut all = (Vec::new(), 0, 0);
        for t in tasks {
            let (l, ok, other) = t.await.unwrap();
            all.0.extend(l);
            all.1 += ok;
            all.2 += other;
        }
        all
    }

    async fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some((admin_url, name)) = self.pg_db {
            use sqlx::Connection;
            let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut admin).await;
            // A checkpoint now, at full speed, rather than one spread over the next target's
            // turns: the joins' WAL has usually started one that would run for minutes.
            sqlx::query("CHECKPOINT").execute(&mut admin).await.expect("CHECKPOINT (the bench's PostgreSQL role must be a superuser)");
        }
    }
}

/// What one target's measured windows of a round add up to.
#[derive(Default)]
struct Tally {
    lat: Vec<u32>,
    ok: u64,
    other: u64,
    seconds: f64,
    server_cpu: f64,
    load_cpu: f64,
    idle: u64,
    steal: u64,
    ticks: u64,
    /// A window whose `/proc` figures could not be read.
    cpu_lost: bool,
}

impl Tally {
    fn figures(mut self) -> Figures {
        self.lat.sort_unstable();
        let lat = &self.lat;
        let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1000.0;
        let requests = (self.ok + self.other).max(1) as f64;
        let share = |t: u64| 100.0 * t as f64 / self.ticks.max(1) as f64;
        let cpu = (!self.cpu_lost).then(|| Cpu {
            server_us: self.server_cpu * 1e6 / requests,
            load_us: self.load_cpu * 1e6 / requests,
            idle_pct: share(self.idle),
            steal_pct: share(self.steal),
        });
        Figures { rps: self.ok as f64 / self.seconds, p50: pct(0.50), p90: pct(0.90), p99: pct(0.99), p999: pct(0.999), ok: self.ok, other: self.other, cpu }
    }
}

/// One target's turns: it and a bare handler run side by side, idle but for their turn; after
/// a warm-up each, the load visits them in turn, `slices` windows each, so that a slow or fast
/// spell of the machine falls on both alike. Each target gets its own turns, after the one
/// before has stopped (see the module's doc).
async fn take_turns(target: &str, seconds: u64, connections: usize, slices: u32) -> Pair {
    let servers = [Server::start("bare", seconds, connections).await, Server::start(target, seconds, connections).await];
    for server in &servers {
        server.load(connections, Duration::from_secs(2), false).await;
    }
    let window = Duration::from_secs(seconds) / slices;
    let mut tallies = [Tally::default(), Tally::default()];
    for _ in 0..slices {
        for (server, tally) in servers.iter().zip(&mut tallies) {
            // A pause between windows, so that one server's leftovers (a checkpoint, a sweep)
            // finish before the next one is measured.
            tokio::time::sleep(SETTLE).await;
            let mark = CpuMark::take(server.child.id());
            let start = Instant::now();
            let (lat, ok, other) = server.load(connections, window, true).await;
            tally.seconds += start.elapsed().as_secs_f64();
            tally.lat.extend(lat);
            tally.ok += ok;
            tally.other += other;
            match (mark, CpuMark::take(server.child.id())) {
                (Some(a), Some(b)) => {
                    tally.server_cpu += b.server - a.server;
                    tally.load_cpu += b.load - a.load;
                    tally.idle += b.machine.idle - a.machine.idle;
                    tally.steal += b.machine.steal - a.machine.steal;
                    tally.ticks += b.machine.total - a.machine.total;
                }
                _ => tally.cpu_lost = true,
            }
        }
    }
    for server in servers {
        server.stop().await;
    }
    let [bare, target] = tallies.map(Tally::figures);
    Pair { bare, target }
}

/// The unmeasured pause before each window.
const SETTLE: Duration = Duration::from_millis(500);

fn spawn_server(kind: &str, storage: &str, dir: &std::path::Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env("CB_BENCH_SERVE", kind)
        .env("CB_BENCH_STORAGE", storage)
        .env("CB_BENCH_DIR", dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn server")
}

fn read_addr(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    line.trim().strip_prefix("READY ").expect("server prints READY addr").to_owned()
}

/// The child: a bare axum handler, or the real daemon.
fn serve(kind: &str) {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        if kind == "bare" {
            // The same route and a similar answer, with no database behind it.
            let app = axum::Router::new().route(
                "/r/{id}/join",
                post(|axum::extract::Path(id): axum::extract::Path<String>, Json(body): Json<Value>| async move {
                    Json(json!({"participant_id": "bare", "token": "t", "name": body["name"], "rejoin": false, "room_id": id}))
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            println!("READY {}", listener.local_addr().unwrap());
            axum::serve(listener, app).await.unwrap();
        } else {
            let mut c = callbridge::config::Config::default();
            c.server.listen = "127.0.0.1:0".parse().unwrap();
            c.server.join_rate_per_minute = 0;
            c.storage.url = Some(callbridge::config::Secret::new(std::env::var("CB_BENCH_STORAGE").unwrap()));
            c.storage.data_dir = std::env::var("CB_BENCH_DIR").unwrap().into();
            c.api.token = Some(callbridge::config::Secret::new(API_TOKEN));
            c.rooms.max_participants = Some(ROOM_SIZE as u32);
            let daemon = callbridge::daemon::Daemon::start(c).await.unwrap();
            println!("READY {}", daemon.addr);
            std::future::pending::<()>().await;
        }
    });
}
