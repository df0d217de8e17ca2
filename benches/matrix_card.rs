//! `!call` → card latency on a real Synapse, side by side with a minimal echo bot on the same
//! homeserver in the same run.
//!
//!     cargo bench --bench matrix_card [-- --rounds 100 --warmup 5 --pause-ms 300]
//!
//! One Synapse (tests/support/synapse.rs) on loopback, three accounts: the callbridge bot, an
//! echo bot and a user. The echo bot is matrix-sdk (the adapter's version and features, a
//! SQLite store, password login) in this process, on the adapter's path and nothing more: a
//! `sync_once` loop with a 30 s long-poll, an `m.room.message` event handler, and an
//! `m.notice` sent with `room.send` for every `!echo …`. callbridge is the real daemon (SQLite)
//! in this process with `[matrix]` pointed at the same Synapse; its pacing is 10 ms apart and
//! 600 a minute (the test Synapse's rate limits are raised), so the figures are the bot's
//! latency, not its spacing. The widget is off.
//!
//! The user shares one unencrypted room with each bot and keeps a long-poll `/sync` of its
//! own (plain HTTP, a filter that leaves out its own events). A round is one `!echo Bench-n`
//! in the echo room and one `!call Bench-n` in callbridge's room, in alternating order from
//! round to round, so drift of the machine hits both alike. The clock starts when the user's
//! send request is issued and stops when the answer (the echo notice, the card) arrives in the
//! user's `/sync`. After a card, the bench waits for callbridge's host-link direct message to
//! arrive too (the user joins that room), then pauses `--pause-ms` before the next send, so
//! no measurement queues behind the previous one's work. `--warmup` rounds are discarded.
//!
//! Target: callbridge's p50 ≤ 1.2× the echo bot's; the benchmark exits non-zero otherwise.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/support/synapse.rs"]
mod synapse;

use common::{Db, Harness, TestDb, config};
use matrix_sdk::config::{RequestConfig, SyncSettings};
use matrix_sdk::ruma::events::Mentions;
use matrix_sdk::ruma::events::room::member::{MembershipState, StrippedRoomMemberEvent};
use matrix_sdk::ruma::events::room::message::{MessageType, OriginalSyncRoomMessageEvent, RoomMessageEventContent};
use matrix_sdk::{Client, Room, RoomState};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use synapse::{Synapse, User};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long one answer may take before the benchmark gives up.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The long-poll of the bots' and the user's `/sync` (the adapter's).
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// The acceptance target: callbridge's p50 within this factor of the echo bot's.
const TARGET_RATIO: f64 = 1.2;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: u64| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let (rounds, warmup, pause) = (arg("--rounds", 100).max(1), arg("--warmup", 5), Duration::from_millis(arg("--pause-ms", 300)));
    // Quiet unless RUST_LOG asks for more.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,matrix_sdk=off,matrix_sdk_base=off,matrix_sdk_crypto=off".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let met = rt.block_on(run(rounds, warmup, pause));
    // Everything (Synapse, the daemon, the echo bot) is down by now.
    drop(rt);
    if !met {
        std::process::exit(1);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bot {
    Echo,
    Callbridge,
}

/// An event of someone else's, as it reached the user's `/sync`.
#[derive(Debug)]
enum Seen {
    Event { at: Instant, room: String, event: Value },
    Invite { room: String },
}

/// One answered command.
struct Sample {
    /// From issuing the send request to the answer in the user's `/sync`.
    latency: Duration,
    /// The answer's `origin_server_ts` minus the command's: the bot's turnaround as Synapse
    /// stamped it (ms).
    turnaround_ms: i64,
}

async fn run(rounds: u64, warmup: u64, pause: Duration) -> bool {
    let hs = Synapse::start().await;
    let cb_bot = hs.register("callbridge", false).await;
    let echo_bot = hs.register("echo", false).await;
    let user = hs.register("user", false).await;

    // callbridge: the real daemon, its bot paced for latency rather than spacing.
    let db = TestDb::new(Db::Sqlite).await;
    let mut c = config(&db);
    let matrix = callbridge_matrix::Settings {
        homeserver: Some(hs.url.parse().unwrap()),
        user: cb_bot.user_id.clone(),
        password: Some(callbridge::config::Secret::new(cb_bot.password.clone())),
        min_interval: Duration::from_millis(10),
        per_minute: 600,
        widget: false,
        ..Default::default()
    };
    c.adapters.push(Box::new(matrix.clone()));
    let pacing = (matrix.min_interval, matrix.per_minute);
    let h = Harness::start(c).await;

    // The echo bot.
    let cancel = CancellationToken::new();
    let echo_dir = tempfile::tempdir().expect("temp dir");
    let echo = tokio::spawn(run_echo_bot(hs.url.clone(), echo_bot.clone(), echo_dir.path().to_owned(), cancel.clone()));

    // A room with each bot.
    let echo_room = hs.create_room(&user, "echo", &[&echo_bot.user_id], false).await;
    let cb_room = hs.create_room(&user, "callbridge", &[&cb_bot.user_id], false).await;
    hs.wait_for_join(&user, &echo_room, &echo_bot.user_id, ANSWER_TIMEOUT).await;
    hs.wait_for_join(&user, &cb_room, &cb_bot.user_id, ANSWER_TIMEOUT).await;

    // The user's own long-poll `/sync`, from now on.
    let (tx, rx) = mpsc::unbounded_channel();
    let mut inbox = Inbox { rx, invited_to: Vec::new() };
    let syncer = tokio::spawn(user_sync(hs.url.clone(), user.clone(), tx, cancel.clone()));

    println!(
        "matrix card benchmark: {rounds} rounds (+{warmup} warm-up) per bot, {} ms pause; callbridge paced ≥ {:?} apart, ≤ {}/min; {} cores",
        pause.as_millis(),
        pacing.0,
        pacing.1,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut results: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    let mut dm_after = Vec::new();
    for round in 0..warmup + rounds {
        let order = if round % 2 == 0 { [Bot::Echo, Bot::Callbridge] } else { [Bot::Callbridge, Bot::Echo] };
        for bot in order {
            let token = format!("Bench-{round}");
            let (room, text, from) = match bot {
                Bot::Echo => (&echo_room, format!("!echo {token}"), &echo_bot.user_id),
                Bot::Callbridge => (&cb_room, format!("!call {token}"), &cb_bot.user_id),
            };
            inbox.drain(&hs, &user).await;
            let t0 = Instant::now();
            let command = hs.send_text(&user, room, &text).await;
            let (at, answer) = inbox.wait_for(&hs, &user, |room_id, e| {
                room_id == room.as_str()
                    && e["sender"] == from.as_str()
                    && e["type"] == "m.room.message"
                    && e["content"]["msgtype"] == "m.notice"
                    && e["content"]["m.relates_to"].is_null()
                    && e["content"]["body"].as_str().is_some_and(|b| names(b, &token))
                    && (bot == Bot::Echo || e["content"]["formatted_body"].is_string())
            })
            .await
            .unwrap_or_else(|| panic!("{bot:?} did not answer {text:?} within {ANSWER_TIMEOUT:?}"));
            let latency = at - t0;
            if bot == Bot::Callbridge {
                // The host link goes out after the card; the next command must not queue behind it.
                let dm = inbox
                    .wait_for(&hs, &user, |room_id, e| {
                        room_id != cb_room
                            && e["sender"] == cb_bot.user_id.as_str()
                            && (e["type"] == "m.room.encrypted" || e["type"] == "m.room.message")
                    })
                    .await
                    .unwrap_or_else(|| panic!("no host-link direct message within {ANSWER_TIMEOUT:?} of {text:?}"));
                if round >= warmup {
                    dm_after.push(dm.0 - at);
                }
            }
            let path = format!("/_matrix/client/v3/rooms/{}/event/{}", enc(room), enc(&command));
            let sent = hs.call_ok(&user, Method::GET, &path, None).await;
            let turnaround_ms = answer["origin_server_ts"].as_i64().unwrap_or(0) - sent["origin_server_ts"].as_i64().unwrap_or(0);
            if round >= warmup {
                results[bot as usize].push(Sample { latency, turnaround_ms });
            }
            tokio::time::sleep(pause).await;
        }
        if round + 1 == warmup {
            println!("warm-up done ({warmup} rounds)");
        } else if round >= warmup && (round + 1 - warmup).is_multiple_of(10) {
            let last = |b: Bot| results[b as usize].last().map_or(0.0, |s| ms(s.latency));
            println!("{:>4}/{rounds} rounds; last: echo {:.1} ms, callbridge {:.1} ms", round + 1 - warmup, last(Bot::Echo), last(Bot::Callbridge));
        }
    }

    cancel.cancel();
    let _ = syncer.await;
    let _ = echo.await;
    h.stop().await;
    db.drop_db().await;
    drop(hs);

    let lat = |b: Bot| Stats::of(results[b as usize].iter().map(|s| ms(s.latency)).collect());
    let turn = |b: Bot| Stats::of(results[b as usize].iter().map(|s| s.turnaround_ms as f64).collect());
    let (echo, cb) = (lat(Bot::Echo), lat(Bot::Callbridge));
    let (echo_t, cb_t) = (turn(Bot::Echo), turn(Bot::Callbridge));
    let dm = Stats::of(dm_after.iter().map(|d| ms(*d)).collect());
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::INFINITY };
    let p50_ratio = ratio(cb.p50, echo.p50);

    println!("\n`!call` → card vs `!echo` → notice, as the user's /sync sees them ({rounds} rounds each, interleaved):\n");
    println!("| bot | p50 ms | p90 ms | p99 ms | mean ms |");
    println!("|---|---|---|---|---|");
    println!("| echo bot (matrix-sdk, `!echo` → notice) | {:.1} | {:.1} | {:.1} | {:.1} |", echo.p50, echo.p90, echo.p99, echo.mean);
    println!("| callbridge (`!call` → card) | {:.1} | {:.1} | {:.1} | {:.1} |", cb.p50, cb.p90, cb.p99, cb.mean);
    println!(
        "| callbridge ÷ echo | {:.2}× | {:.2}× | {:.2}× | {:.2}× |",
        p50_ratio,
        ratio(cb.p90, echo.p90),
        ratio(cb.p99, echo.p99),
        ratio(cb.mean, echo.mean)
    );
    println!("\nThe bots' turnaround as Synapse stamped it (answer's origin_server_ts − command's, ms):\n");
    println!("| bot | p50 ms | p90 ms | p99 ms | mean ms |");
    println!("|---|---|---|---|---|");
    println!("| echo bot | {:.0} | {:.0} | {:.0} | {:.1} |", echo_t.p50, echo_t.p90, echo_t.p99, echo_t.mean);
    println!("| callbridge | {:.0} | {:.0} | {:.0} | {:.1} |", cb_t.p50, cb_t.p90, cb_t.p99, cb_t.mean);
    println!(
        "\nHost-link direct message after the card (encrypted, into {} direct room(s)): p50 {:.1} ms, p99 {:.1} ms.",
        inbox.invited_to.len(),
        dm.p50,
        dm.p99
    );

    let met = p50_ratio <= TARGET_RATIO;
    if met {
        println!("\nTarget (callbridge p50 ≤ {TARGET_RATIO}× the echo bot's): met ({p50_ratio:.2}×).");
    } else {
        println!("\nTARGET NOT MET: callbridge's p50 is {p50_ratio:.2}× the echo bot's (target ≤ {TARGET_RATIO}×).");
    }
    met
}

/// The echo bot: log in, accept invitations, answer `!echo …` with a notice; nothing else.
async fn run_echo_bot(homeserver: String, me: User, store: std::path::PathBuf, cancel: CancellationToken) {
    let client = Client::builder()
        .homeserver_url(&homeserver)
        .sqlite_store(&store, None)
        // As the adapter: one attempt per request.
        .request_config(RequestConfig::new().retry_limit(1).timeout(Duration::from_secs(10)))
        .build()
        .await
        .expect("echo bot: client");
    client.matrix_auth().login_username(&me.user_id, &me.password).initial_device_display_name("echo").send().await.expect("echo bot: login");
    let my_id = client.user_id().expect("echo bot: user id").to_owned();
    let id = my_id.clone();
    client.add_event_handler(move |ev: StrippedRoomMemberEvent, room: Room| {
        let id = id.clone();
        async move {
            if ev.state_key != id || ev.content.membership != MembershipState::Invite {
                return;
            }
            tokio::spawn(async move {
                let mut wait = Duration::from_millis(250);
                for _ in 0..6 {
                    if room.join().await.is_ok() {
                        return;
                    }
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                eprintln!("echo bot: cannot join {}", room.room_id());
            });
        }
    });
    let id = my_id;
    client.add_event_handler(move |ev: OriginalSyncRoomMessageEvent, room: Room| {
        let id = id.clone();
        async move {
            if ev.sender == id || room.state() != RoomState::Joined {
                return;
            }
            let MessageType::Text(text) = &ev.content.msgtype else { return };
            let Some(rest) = text.body.strip_prefix("!echo") else { return };
            let mut content = RoomMessageEventContent::notice_plain(rest.trim());
            content.mentions = Some(Mentions::new());
            if let Err(error) = room.send(content).await {
                eprintln!("echo bot: cannot answer: {error}");
            }
        }
    });
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = client.sync_once(SyncSettings::default().timeout(SYNC_TIMEOUT)) => {
                if let Err(error) = r {
                    eprintln!("echo bot: sync failed: {error}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// The user's long-poll `/sync` (plain HTTP, `since` tokens, a filter that leaves out the
/// user's own events and everything but timelines and invitations). Each event is stamped
/// when the response carrying it has been read.
async fn user_sync(homeserver: String, user: User, tx: mpsc::UnboundedSender<Seen>, cancel: CancellationToken) {
    let http = reqwest::Client::builder().timeout(SYNC_TIMEOUT + Duration::from_secs(30)).build().unwrap();
    let none = json!({"not_types": ["*"]});
    let filter = json!({
        "presence": none,
        "account_data": none,
        "room": {
            "account_data": none,
            "ephemeral": none,
            "state": {"lazy_load_members": true},
            "timeline": {"not_senders": [user.user_id], "limit": 50},
        },
    })
    .to_string();
    let sync = |since: Option<String>, timeout: Duration| {
        let mut query = vec![("filter", filter.clone()), ("timeout", timeout.as_millis().to_string())];
        if let Some(s) = since {
            query.push(("since", s));
        }
        http.get(format!("{homeserver}/_matrix/client/v3/sync")).bearer_auth(&user.access_token).query(&query).send()
    };
    // Skip what happened before the rounds.
    let first: Value = sync(None, Duration::ZERO).await.expect("user: first sync").json().await.expect("user: first sync body");
    let mut since = first["next_batch"].as_str().expect("next_batch").to_owned();
    loop {
        let response = tokio::select! {
            _ = cancel.cancelled() => return,
            r = sync(Some(since.clone()), SYNC_TIMEOUT) => r,
        };
        let body = match response {
            Ok(r) if r.status().is_success() => r.bytes().await,
            Ok(r) => {
                eprintln!("user: sync answered {}", r.status());
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(error) => {
                eprintln!("user: sync failed: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let at = Instant::now();
        let Ok(v) = body.map_err(|_| ()).and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|_| ())) else { continue };
        if let Some(next) = v["next_batch"].as_str() {
            since = next.to_owned();
        }
        for (room, joined) in v["rooms"]["join"].as_object().into_iter().flatten() {
            for event in joined["timeline"]["events"].as_array().into_iter().flatten() {
                let _ = tx.send(Seen::Event { at, room: room.clone(), event: event.clone() });
            }
        }
        for room in v["rooms"]["invite"].as_object().into_iter().flatten().map(|(k, _)| k) {
            let _ = tx.send(Seen::Invite { room: room.clone() });
        }
    }
}

/// What the user's sync delivers, and the rooms the user was invited into on the way
/// (callbridge's direct room, where its host links go).
struct Inbox {
    rx: mpsc::UnboundedReceiver<Seen>,
    invited_to: Vec<String>,
}

impl Inbox {
    /// Takes in what the user's sync has delivered so far.
    async fn drain(&mut self, hs: &Synapse, user: &User) {
        while let Ok(s) = self.rx.try_recv() {
            self.take(hs, user, s).await;
        }
    }

    /// Waits for an event that `matches` (room id, event); returns when it arrived in the
    /// user's sync, and the event.
    async fn wait_for(&mut self, hs: &Synapse, user: &User, matches: impl Fn(&str, &Value) -> bool) -> Option<(Instant, Value)> {
        let deadline = tokio::time::Instant::now() + ANSWER_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await.ok()?? {
                Seen::Event { at, room, event } if matches(&room, &event) => return Some((at, event)),
                other => self.take(hs, user, other).await,
            }
        }
    }

    /// Accepts invitations (the direct room's events show once the user is in).
    async fn take(&mut self, hs: &Synapse, user: &User, seen: Seen) {
        if let Seen::Invite { room } = seen
            && !self.invited_to.contains(&room)
        {
            hs.join(user, &room).await;
            self.invited_to.push(room);
        }
    }
}

/// Whether `body` names `token` (`Bench-1` is not `Bench-10`).
fn names(body: &str, token: &str) -> bool {
    body.match_indices(token).any(|(i, _)| !body[i + token.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// Percent-encodes one path segment.
fn enc(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Stats {
    p50: f64,
    p90: f64,
    p99: f64,
    mean: f64,
}

impl Stats {
    /// Nearest-rank percentiles and the mean.
    fn of(mut v: Vec<f64>) -> Stats {
        if v.is_empty() {
            return Stats { p50: 0.0, p90: 0.0, p99: 0.0, mean: 0.0 };
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Stats { p50: at(0.50), p90: at(0.90), p99: at(0.99), mean: v.iter().sum::<f64>() / v.len() as f64 }
    }
}
