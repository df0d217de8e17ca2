//! Metrics as a real Prometheus sees them: Debian's `prometheus` (started here on loopback,
//! scraping every second) scrapes the daemon's metrics listener while a scripted scenario runs
//! (a `/call` on the Telegram double, joins, a lock, a burst of joins on the card), and its
//! HTTP API must return the counts the scenario made.

mod common;
#[path = "support/telegram_double.rs"]
mod telegram_double;

use common::{API_TOKEN, Db, TestDb, config, eventually};
use reqwest::StatusCode;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;
use telegram_double::{BOT_TOKEN, BotApiDouble};

const GROUP: i64 = -1003333333333;
const HOST: i64 = 555;

/// Kills the Prometheus server when the test ends, however it ends.
struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Prometheus scraping the daemon's metrics every second, on a port free a moment ago,
/// and on another when that one was taken before Prometheus bound it (it exits then).
async fn start_prometheus(binary: &str, dir: &std::path::Path, metrics_port: u16, http: &reqwest::Client) -> (Prometheus, String) {
    std::fs::write(
        dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: callbridge\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"),
    )
    .unwrap();
    for _ in 0..5 {
        let port = common::free_port();
        let mut prometheus = Prometheus(
            Command::new(binary)
                .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("prometheus starts"),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        // Ready while still running: a Prometheus that could not bind its port has exited.
        while prometheus.0.try_wait().unwrap().is_none() && tokio::time::Instant::now() < deadline {
            if http.get(format!("{url}/-/ready")).send().await.is_ok_and(|r| r.status().is_success()) && prometheus.0.try_wait().unwrap().is_none() {
                return (prometheus, url);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("Prometheus did not come up on port {port} (taken meanwhile?); trying another");
    }
    panic!("Prometheus did not start in five tries");
}

/// The value of an instant query, when Prometheus has one.
async fn query(http: &reqwest::Client, prometheus: &str, q: &str) -> Option<f64> {
    let v: Value = http.get(format!("{prometheus}/api/v1/query")).query(&[("query", q)]).send().await.ok()?.json().await.ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_what_happened() {
    let binary = "prometheus";
    assert!(
        Command::new(binary).arg("--version").output().is_ok_and(|o| o.status.success()),
        "Debian's prometheus must be installed (the test command installs it)"
    );
    let double = BotApiDouble::start().await;
    double.start_bot(HOST);
    let db = TestDb::new(Db::Sqlite).await;
    let (h, metrics_port) = common::harness_on_free_port(|port| {
        let mut c = config(&db);
        c.metrics.listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
        c.adapters.push(Box::new(callbridge_telegram::Settings {
            token: Some(callbridge::config::Secret::new(BOT_TOKEN)),
            api_url: double.url.parse().unwrap(),
            poll_timeout: Duration::from_secs(2),
            ..Default::default()
        }));
        c
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (_prometheus, prometheus) = start_prometheus(binary, dir.path(), metrics_port, &http).await;
    assert!(
        eventually(Duration::from_secs(30), || async { query(&http, &prometheus, "up{job=\"callbridge\"}").await == Some(1.0) }).await,
        "Prometheus scrapes the daemon"
    );

    // The scenario: a card, 10 joins, a lock and 3 refused joins, an unlock, a burst of 20.
    double.say(GROUP, HOST, "Ada", "/call Metrics");
    assert!(eventually(Duration::from_secs(20), || async { !double.messages_in(GROUP).is_empty() }).await, "a card");
    let room = double.messages_in(GROUP)[0].1.reply_markup["inline_keyboard"][0][0]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
    for i in 0..10 {
        assert_eq!(h.join(&room, &format!("Guest {i}"), None).await.0, StatusCode::OK);
    }
    assert_eq!(h.act(&room, "lock", API_TOKEN).await.0, StatusCode::OK);
    for i in 0..3 {
        assert_eq!(h.join(&room, &format!("Late {i}"), None).await.0, StatusCode::LOCKED);
    }
    assert_eq!(h.act(&room, "unlock", API_TOKEN).await.0, StatusCode::OK);
    let burst = (0..20).map(|i| {
        let (h, room) = (&h, room.clone());
        async move { h.join(&room, &format!("Burst {i}"), None).await.0 }
    });
    assert!(futures::future::join_all(burst).await.iter().all(|s| *s == StatusCode::OK));
    assert!(eventually(Duration::from_secs(20), || async { double.messages_in(GROUP)[0].1.text.contains("Burst") }).await);

    // What Prometheus stored.
    let expected: &[(&str, f64)] = &[
        ("callbridge_joins_total{outcome=\"admitted\"}", 30.0),
        ("callbridge_joins_total{outcome=\"locked\"}", 3.0),
        ("callbridge_admission_seconds_count", 33.0),
        ("callbridge_chat_commands_total{platform=\"telegram\",command=\"call\"}", 1.0),
        ("callbridge_card_sends_total{platform=\"telegram\",kind=\"post\",outcome=\"ok\"}", 1.0),
        ("callbridge_rooms_open", 1.0),
        ("callbridge_adapter_leader{platform=\"telegram\"}", 1.0),
        ("callbridge_adapter_up{platform=\"telegram\"}", 1.0),
    ];
    for (q, want) in expected {
        let got = eventually(Duration::from_secs(20), || async { query(&http, &prometheus, q).await == Some(*want) }).await;
        assert!(got, "{q}: Prometheus has {:?}, the scenario made {want}", query(&http, &prometheus, q).await);
    }
    let edits = "sum(callbridge_card_sends_total{platform=\"telegram\",kind=\"edit\",outcome=\"ok\"})";
    assert!(eventually(Duration::from_secs(20), || async { query(&http, &prometheus, edits).await.is_some_and(|n| n >= 1.0) }).await, "card edits");
    let fresh = "callbridge_card_freshness_seconds_count{platform=\"telegram\"}";
    assert!(eventually(Duration::from_secs(20), || async { query(&http, &prometheus, fresh).await.is_some_and(|n| n >= 1.0) }).await, "card freshness");

    // The text itself: no room id, name or token, and not on the public listener.
    let text = http.get(format!("http://127.0.0.1:{metrics_port}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("# HELP callbridge_joins_total") && text.contains("callbridge_db_connections"), "{text}");
    for secret in [room.as_str(), "Guest", "Burst", BOT_TOKEN, API_TOKEN] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }
    let public = http.get(format!("{}/metrics", h.base)).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND, "metrics are never on the public listener");
    assert_eq!(double.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    h.stop().await;
}
