//! Test harness: a real daemon on 127.0.0.1:0 over a fresh SQLite file or a fresh PostgreSQL
//! database, and a small HTTP client for the public contract.
#![allow(dead_code)]

use callbridge::clock::Clock;
use callbridge::config::{Config, Secret};
use callbridge::daemon::Daemon;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

pub const API_TOKEN: &str = "test-api-token-0123456789";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests use (the test command makes sure one answers).
pub fn pg_admin_url() -> String {
    std::env::var("CALLBRIDGE_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database for one test: a temp SQLite file or a fresh PostgreSQL database.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(db: Db) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match db {
            Db::Sqlite => TestDb { url: format!("sqlite://{}/test.db", dir.path().display()), dir, pg_name: None },
            Db::Postgres => {
                use sqlx::Connection;
                let name = format!("cbt_{}", callbridge::ids::new_participant_id().to_lowercase());
                let mut admin = sqlx::PgConnection::connect(&pg_admin_url())
                    .await
                    .expect("PostgreSQL must answer at CALLBRIDGE_TEST_PG (default 127.0.0.1:5432/test); the test command starts one");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.expect("create test database");
                let base = pg_admin_url();
                let url = format!("{}/{name}", base.rsplit_once('/').expect("db url").0);
                TestDb { url, dir, pg_name: Some(name) }
            }
        }
    }

    /// Drops the PostgreSQL database (call at the end of a test).
    pub async fn drop_db(self) {
        if let Some(name) = self.pg_name {
            use sqlx::Connection;
            if let Ok(mut admin) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&mut admin).await;
            }
        }
    }
}

/// A config for tests: ephemeral port, no STUN, the test API token, rate limit off.
pub fn config(db: &TestDb) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.join_rate_per_minute = 0;
    c.server.socket_rate_per_minute = 0;
    c.storage.url = Some(Secret::new(db.url.clone()));
    c.storage.data_dir = db.dir.path().to_owned();
    c.rooms.ice_servers = vec![];
    c.api.token = Some(Secret::new(API_TOKEN));
    c.sfu.listen = "127.0.0.1:0".parse().unwrap();
    c
}

/// A running daemon and a client for it.
pub struct Harness {
    pub daemon: Daemon,
    pub base: String,
    pub http: reqwest::Client,
}

impl Harness {
    pub async fn start(config: Config) -> Harness {
        Self::start_with_clock(config, Clock::default()).await
    }

    pub async fn start_with_clock(config: Config, clock: Clock) -> Harness {
        let daemon = Daemon::start_with_clock(config, clock).await.expect("daemon starts");
        let base = format!("http://{}", daemon.addr);
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
        Harness { daemon, base, http }
    }

    pub async fn stop(self) {
        self.daemon.shutdown().await;
    }

    /// Mints a room through the API; returns (id, host_token).
    pub async fn create_room(&self, body: Value) -> (String, String) {
        let r = self.http.post(format!("{}/api/v1/rooms", self.base)).bearer_auth(API_TOKEN).json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.unwrap();
        (v["id"].as_str().unwrap().to_owned(), v["host_token"].as_str().unwrap().to_owned())
    }

    /// `POST /r/{id}/join`; returns status and body.
    pub async fn join(&self, id: &str, name: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut body = json!({"name": name});
        if let Some(t) = token {
            body["token"] = json!(t);
        }
        let r = self.http.post(format!("{}/r/{id}/join", self.base)).json(&body).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A host/API action: POST `/api/v1/rooms/{id}/{action}`.
    pub async fn act(&self, id: &str, action: &str, token: &str) -> (StatusCode, Value) {
        let r = self.http.post(format!("{}/api/v1/rooms/{id}/{action}", self.base)).bearer_auth(token).send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn room(&self, id: &str) -> Value {
        let r = self.http.get(format!("{}/api/v1/rooms/{id}", self.base)).bearer_auth(API_TOKEN).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    pub fn ws_url(&self, id: &str, token: &str) -> String {
        format!("ws://{}/r/{id}/ws?token={token}", self.daemon.addr)
    }
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A room socket's client side.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a room socket with a tiny receive buffer, as a page on a stalled network would look.
pub async fn connect_stalled(url: &str) -> Ws {
    let addr = url.trim_start_matches("ws://").split('/').next().unwrap().parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream)).await.expect("socket opens").0
}

/// Runs a test body on a runtime of its own, within `limit`, and shuts that runtime down
/// without waiting for blocking work left behind (an SDK's store thread after a failed
/// assertion): a failure fails the test, it never hangs the suite.
pub fn bounded<F>(limit: Duration, body: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let outcome = rt.block_on(async move { tokio::time::timeout(limit, tokio::spawn(body)).await });
    rt.shutdown_timeout(Duration::from_secs(5));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(failed)) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
        Ok(Err(failed)) => panic!("the test body stopped: {failed}"),
        Err(_) => panic!("the test took longer than {limit:?}"),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago. Another process may take it before
/// the server meant for it binds: start servers through `start_daemon` or `Harness::on_free_port`
/// (or retry as Synapse and coturn do), which pick another port then.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().unwrap().port()
}

/// How many ports a start tries before it gives up.
const PORT_TRIES: usize = 5;

/// Starts an in-process daemon whose `config` needs a port of its own beside the web one (the
/// metrics listener): `config(port)` with a port free a moment ago, another when that one
/// was taken in between.
pub async fn harness_on_free_port(mut config: impl FnMut(u16) -> Config) -> (Harness, u16) {
    for _ in 0..PORT_TRIES {
        let port = free_port();
        match Daemon::start(config(port)).await {
            Ok(daemon) => {
                let base = format!("http://{}", daemon.addr);
                let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
                return (Harness { daemon, base, http }, port);
            }
            Err(e) if format!("{e:#}").contains("in use") => eprintln!("port {port} was taken before the daemon bound it: {e:#}; trying another"),
            Err(e) => panic!("daemon starts: {e:#}"),
        }
    }
    panic!("no free port in {PORT_TRIES} tries");
}

/// A callbridge process started by a test, killed (SIGKILL) when dropped.
pub struct Process {
    pub child: std::process::Child,
    pub port: u16,
    pub base: String,
}

impl Process {
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
        self.child.wait().unwrap();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the callbridge binary on the config `text(port)` written to `config`, for a port
/// free a moment ago, its output appended to `log` at `rust_log`; waits until this process
/// (not another that holds the port) says it listens and `/healthz` answers. When the port was
/// taken between the pick and the bind, the daemon says "cannot listen" and exits: another port.
pub async fn start_daemon(config: &std::path::Path, log: &std::path::Path, rust_log: &str, text: impl Fn(u16) -> String) -> Process {
    for _ in 0..PORT_TRIES {
        let port = free_port();
        std::fs::write(config, text(port)).unwrap();
        match restart_daemon(config, log, rust_log, port).await {
            Ok(process) => return process,
            Err(taken) => eprintln!("{taken}; trying another port"),
        }
    }
    panic!("no free port in {PORT_TRIES} tries");
}

/// Starts the callbridge binary on `config`, which names `port`, and waits as `start_daemon`
/// does; `Err` when the port was taken (a restart keeps its port, as in production).
pub async fn restart_daemon(config: &std::path::Path, log: &std::path::Path, rust_log: &str, port: u16) -> Result<Process, String> {
    use std::process::{Command, Stdio};
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let from = out.metadata().unwrap().len() as usize;
    let child = Command::new(env!("CARGO_BIN_EXE_callbridge"))
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .expect("the callbridge binary starts");
    let mut process = Process { child, port, base: format!("http://127.0.0.1:{port}") };
    let ours = format!("127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read(log).map(|b| String::from_utf8_lossy(&b[from.min(b.len())..]).into_owned()).unwrap_or_default();
        if let Some(status) = process.child.try_wait().unwrap() {
            if text.contains("cannot listen on") && text.contains("in use") {
                return Err(format!("port {port} was taken before the daemon bound it"));
            }
            panic!("the daemon exited ({status}) before it answered; its log:\n{text}");
        }
        let listening = text.lines().any(|l| l.contains("callbridge is listening") && l.contains(&ours));
        if listening && http.get(format!("{}/healthz", process.base)).send().await.is_ok_and(|r| r.status() == StatusCode::OK) {
            return Ok(process);
        }
        assert!(tokio::time::Instant::now() < deadline, "the daemon did not answer /healthz within 30 s; its log:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
