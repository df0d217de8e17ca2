//! Several nodes on one PostgreSQL, as one service: real daemons (in this process, each with
//! its own pools, elections, listener and data directory) on one real PostgreSQL database, with
//! Telegram (double), Discord (double, interactions endpoint) and Matrix (Synapse) configured on
//! every node. The fail-over under `kill -9` is in `tests/failover.rs` (child processes).

mod common;
#[path = "support/discord_double.rs"]
mod discord_double;
#[path = "support/synapse.rs"]
mod synapse;
#[path = "support/telegram_double.rs"]
mod telegram_double;

use callbridge::clock::Clock;
use callbridge::config::{Config, Secret};
use common::{API_TOKEN, Db, Harness, TestDb, Ws, config, eventually};
use discord_double::{APP_ID, CHANNEL, DiscordDouble, GUILD, command, post_interaction, public_key_hex};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use synapse::{Synapse, User};
use telegram_double::{BOT_TOKEN, BotApiDouble};
use tokio_tungstenite::tungstenite::Message;

const GROUP: i64 = -1001234567890;
const HOST: i64 = 111;
const WAIT: Duration = Duration::from_secs(20);
/// The room pages' own patience with a frame.
const FRAME_WAIT: Duration = Duration::from_secs(10);
const PLATFORMS: [&str; 3] = ["discord", "matrix", "telegram"];

/// A node's config: the shared database, its own data directory, every adapter.
fn node_config(db: &TestDb, data_dir: &Path, tg: &BotApiDouble, dc: &DiscordDouble, hs: &Synapse, bot: &User) -> Config {
    let mut c = config(db);
    c.storage.data_dir = data_dir.to_owned();
    c.rooms.max_participants = Some(50);
    c.adapters.push(Box::new(callbridge_telegram::Settings {
        token: Some(Secret::new(BOT_TOKEN)),
        api_url: tg.url.parse().unwrap(),
        debounce: Duration::from_millis(100),
        poll_timeout: Duration::from_secs(2),
        ..Default::default()
    }));
    c.adapters.push(Box::new(callbridge_discord::Settings {
        mode: callbridge_discord::Mode::Interactions,
        token: Some(Secret::new(discord_double::BOT_TOKEN)),
        application_id: Some(APP_ID.parse().unwrap()),
        public_key: public_key_hex(),
        guild_ids: vec![GUILD.parse().unwrap()],
        api_url: dc.url.parse().unwrap(),
        debounce: Duration::from_millis(100),
        ..Default::default()
    }));
    c.adapters.push(Box::new(callbridge_matrix::Settings {
        homeserver: Some(hs.url.parse().unwrap()),
        user: bot.user_id.clone(),
        password: Some(Secret::new(bot.password.clone())),
        debounce: Duration::from_millis(100),
        min_interval: Duration::from_millis(200),
        per_minute: 120,
        ..Default::default()
    }));
    c
}

/// Which of `nodes` run `platform`'s adapter now.
fn runners(nodes: &[&Harness], platform: &str) -> Vec<usize> {
    nodes.iter().enumerate().filter(|(_, h)| h.daemon.adapters.is_running(platform)).map(|(i, _)| i).collect()
}

/// Waits until exactly one node runs each adapter, and it stays so for two election rounds.
async fn one_leader_each(nodes: &[&Harness]) {
    for platform in PLATFORMS {
        assert!(eventually(WAIT, || async { runners(nodes, platform).len() == 1 }).await, "{platform}: one node leads it");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    for platform in PLATFORMS {
        assert_eq!(runners(nodes, platform).len(), 1, "{platform}: still exactly one node runs it");
    }
}

/// The Telegram cards (messages with a Join button, or an attendance) in the group: (room, text).
fn telegram_cards(tg: &BotApiDouble) -> Vec<(String, String)> {
    tg.messages_in(GROUP)
        .into_iter()
        .filter(|(_, m)| m.reply_markup.to_string().contains("\"url\"") || m.text.contains("Attendance"))
        .map(|(_, m)| {
            let url = m.reply_markup["inline_keyboard"][0][0]["url"].as_str().unwrap_or_default();
            (url.rsplit('/').next().unwrap_or_default().to_owned(), m.text)
        })
        .collect()
}

/// The Matrix cards (the bot's notices with HTML that are not edits) in a room.
async fn matrix_cards(hs: &Synapse, user: &User, room: &str, bot: &str) -> usize {
    hs.messages(user, room)
        .await
        .iter()
        .filter(|e| e["sender"] == bot && e["content"]["formatted_body"].is_string() && e["content"]["m.relates_to"].is_null())
        .count()
}

/// A room page: joins through `node` and opens its socket there. Returns the socket, the
/// participant's id and token, and the welcome.
async fn page(node: &Harness, room: &str, name: &str) -> (Ws, String, String, Value) {
    let (status, joined) = node.join(room, name, None).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let (pid, token) = (joined["participant_id"].as_str().unwrap().to_owned(), joined["token"].as_str().unwrap().to_owned());
    let (mut ws, _) = tokio_tungstenite::connect_async(node.ws_url(room, &token)).await.expect("the room socket opens");
    let welcome = next_of(&mut ws, "welcome").await.expect("a welcome");
    (ws, pid, token, welcome)
}

/// The next frame of `kind` (skipping others), or `None` when the socket closes or stays quiet.
async fn next_of(ws: &mut Ws, kind: &str) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + FRAME_WAIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.ok()??.ok()?;
        if let Message::Text(text) = frame {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == kind {
                return Some(v);
            }
        }
    }
}

/// Waits for a room update that satisfies `check`.
async fn room_update(ws: &mut Ws, check: impl Fn(&Value) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + FRAME_WAIT;
    while tokio::time::Instant::now() < deadline {
        match next_of(ws, "room").await {
            Some(v) if check(&v["room"]) => return true,
            Some(_) => {}
            None => return false,
        }
    }
    false
}

/// Whether the page is told it closes for `reason` (a `closed` frame, then the close).
async fn closed_for(ws: &mut Ws, reason: &str) -> bool {
    next_of(ws, "closed").await.is_some_and(|v| v["reason"] == reason)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_database_are_one_service() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,sqlx=warn,matrix_sdk=warn,matrix_sdk_crypto=warn,matrix_sdk_base=warn")
        .with_test_writer()
        .try_init();
    let tg = BotApiDouble::start().await;
    tg.start_bot(HOST);
    let dc = DiscordDouble::start().await;
    let hs = Synapse::start().await;
    let bot = hs.register("nodebot", false).await;
    let host = hs.register("nodehost", false).await;
    let b = bot.user_id.as_str();
    let mroom = hs.create_room(&host, "team", &[b], false).await;
    hs.set_power_level(&host, &mroom, b, 50).await;

    let db = TestDb::new(Db::Postgres).await;
    let dir_b = tempfile::tempdir().unwrap();
    let a = Harness::start(node_config(&db, db.dir.path(), &tg, &dc, &hs, &bot)).await;
    let nb = Harness::start(node_config(&db, dir_b.path(), &tg, &dc, &hs, &bot)).await;
    let nodes = [&a, &nb];
    one_leader_each(&nodes).await;
    assert!(eventually(WAIT, || async { dc.commands().contains_key(GUILD) }).await, "Discord commands registered by the leader");
    hs.wait_for_join(&host, &mroom, b, WAIT).await;
    // /healthz says which node leads each adapter, and that it reaches its platform.
    for platform in PLATFORMS {
        let leads = |node: &Harness| {
            let url = format!("{}/healthz", node.base);
            async move { reqwest::get(url).await.unwrap().json::<Value>().await.unwrap()["adapters"][platform].clone() }
        };
        let (on_a, on_b) = (leads(&a).await, leads(&nb).await);
        assert_eq!([&on_a["leader"], &on_b["leader"]].iter().filter(|l| ***l == true).count(), 1, "{platform}: {on_a} {on_b}");
        let leader = if on_a["leader"] == true { &a } else { &nb };
        assert!(eventually(WAIT, || async { leads(leader).await["connected"] == true }).await, "{platform} connected on its leader");
    }

    // One `/call` on each platform: exactly one card each, whichever node received it.
    tg.say(GROUP, HOST, "Ada", "/call Standup");
    assert!(eventually(WAIT, || async { telegram_cards(&tg).len() == 1 }).await, "a Telegram card");
    // Discord's interaction goes to the node that does not run the adapter: it is passed on.
    let follower = runners(&nodes, "discord")[0] ^ 1;
    let call = command("900", "call", json!([{"name": "title", "type": 3, "value": "Planning"}]), "4000000000000000004", "Ada", "0");
    let (status, answer) = post_interaction(&nodes[follower].http, &nodes[follower].base, &call, None).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"type": 5, "data": {"flags": 64}})), "the leader's answer comes back");
    assert!(eventually(WAIT, || async { dc.card(CHANNEL).is_some() }).await, "a Discord card");
    hs.send_text(&host, &mroom, "!call Retro").await;
    assert!(eventually(WAIT, || async { matrix_cards(&hs, &host, &mroom, b).await == 1 }).await, "a Matrix card");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(telegram_cards(&tg).len(), 1, "one Telegram card, not one per node");
    assert_eq!(dc.messages_in(CHANNEL).iter().filter(|(_, m)| m.body["components"].is_array()).count(), 1, "one Discord card");
    assert_eq!(matrix_cards(&hs, &host, &mroom, b).await, 1, "one Matrix card");
    assert_eq!(tg.conflicts(), 0, "one Telegram poller: no 409 Conflict");

    // A join through either node shows on the card within 2 s.
    let (room, _) = telegram_cards(&tg).remove(0);
    assert_eq!(room.len(), 22, "{:?}", telegram_cards(&tg));
    let leader = runners(&nodes, "telegram")[0];
    let other = nodes[leader ^ 1];
    let started = Instant::now();
    assert_eq!(other.join(&room, "Bea", None).await.0, StatusCode::OK);
    assert!(
        eventually(Duration::from_secs(2), || async { telegram_cards(&tg)[0].1.contains("Bea") }).await,
        "a join on the node that does not run the adapter shows within 2 s: {}",
        telegram_cards(&tg)[0].1
    );
    eprintln!("card showed a join on the other node after {:?}", started.elapsed());

    // Pages of one room on both nodes meet: Ann's socket reaches A, which becomes the room's
    // home; Cy's reaches B and is passed on to A. They see each other and signal.
    let (mut ann, ann_id, _, _) = page(&a, &room, "Ann").await;
    let (mut cy, cy_id, _, welcome) = page(&nb, &room, "Cy").await;
    assert!(welcome["peers"].as_array().unwrap().iter().any(|p| p["id"] == ann_id.as_str()), "Cy meets Ann: {welcome}");
    let joined = next_of(&mut ann, "peer-joined").await.expect("Ann hears of Cy");
    assert_eq!(joined["peer"]["id"], cy_id.as_str());
    ann.send(Message::text(json!({"type": "signal", "to": cy_id, "data": {"sdp": "offer"}}).to_string())).await.unwrap();
    let signal = next_of(&mut cy, "signal").await.expect("Cy gets Ann's signal");
    assert_eq!((signal["from"].as_str(), &signal["data"]), (Some(ann_id.as_str()), &json!({"sdp": "offer"})));

    // A lock through B: A refuses with 423, and A's pages hear of it.
    assert_eq!(nb.act(&room, "lock", API_TOKEN).await.0, StatusCode::OK);
    assert_eq!(a.join(&room, "Dee", None).await.0, StatusCode::LOCKED);
    assert!(room_update(&mut ann, |r| r["locked"] == true).await, "Ann's page (on A) shows the lock decided on B");
    assert!(room_update(&mut cy, |r| r["locked"] == true).await, "so does Cy's (through B)");
    assert!(eventually(WAIT, || async { telegram_cards(&tg)[0].1.contains("Locked") }).await, "{}", telegram_cards(&tg)[0].1);

    // A removal through A disconnects Cy's page, which reached B.
    let r = a.http.delete(format!("{}/api/v1/rooms/{room}/participants/{cy_id}", a.base)).bearer_auth(API_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(closed_for(&mut cy, "removed").await, "Cy's page is closed as removed");

    // End through B closes every page, on both nodes.
    assert_eq!(nb.act(&room, "unlock", API_TOKEN).await.0, StatusCode::OK);
    let (mut eve, _, _, _) = page(&nb, &room, "Eve").await;
    assert_eq!(nb.act(&room, "end", API_TOKEN).await.0, StatusCode::OK);
    assert!(closed_for(&mut ann, "ended").await, "Ann's page (A) closes");
    assert!(closed_for(&mut eve, "ended").await, "Eve's page (B) closes");
    assert!(eventually(WAIT, || async { telegram_cards(&tg)[0].1.contains("Ended") }).await, "{}", telegram_cards(&tg)[0].1);

    // A lost listener connection resynchronises: a page whose node lost the event link gets a
    // fresh view of its room although nothing changed.
    let (room2, _) = a.create_room(json!({"title": "Second"})).await;
    let (mut fay, _, _, _) = page(&a, &room2, "Fay").await;
    drain(&mut fay).await;
    let killed = terminate_listeners(&db).await;
    assert!(killed >= 2, "both nodes listen ({killed} listeners)");
    assert!(next_of(&mut fay, "room").await.is_some(), "the page is refreshed after its node lost the event link");

    // A cleanly stopped node retires: the people whose page it held are marked left at once
    // (not after the 15 s a silent node is given), and the room moves to a live node. The node
    // stopped is the one leading Matrix, so the other takes over a bot whose commands it never
    // saw (a new device, recent history): it must not handle one of them again.
    let (gone, a) = if runners(&nodes, "matrix") == [1] { (nb, a) } else { (a, nb) };
    let (room3, _) = a.create_room(json!({"title": "Third"})).await;
    let (mut gus, gus_id, gus_token, _) = page(&gone, &room3, "Gus").await;
    let (mut hal, hal_id, _, _) = page(&a, &room3, "Hal").await;
    let _ = (&mut gus, &mut hal);
    let stopping = Instant::now();
    gone.stop().await;
    let left = |id: String| {
        let a = &a;
        let room3 = room3.clone();
        async move { a.room(&room3).await["participants"].as_array().unwrap().iter().any(|p| p["id"] == id.as_str() && p["left_at"].is_string()) }
    };
    assert!(eventually(Duration::from_secs(3), || left(gus_id.clone())).await, "Gus, on the stopped node, is marked left at once");
    assert!(eventually(Duration::from_secs(3), || left(hal_id.clone())).await, "so is Hal, whose socket reached the live node but lived on the stopped one");
    assert!(stopping.elapsed() < Duration::from_secs(12), "{:?}", stopping.elapsed());
    // Gus's page rejoins with its token through the live node, which is now the room's home.
    assert_eq!(a.join(&room3, "Gus", Some(&gus_token)).await.0, StatusCode::OK);
    let (mut gus2, _) = tokio_tungstenite::connect_async(a.ws_url(&room3, &gus_token)).await.expect("the socket opens on the live node");
    assert!(next_of(&mut gus2, "welcome").await.is_some());
    // The live node takes over every adapter the stopped one led.
    for platform in PLATFORMS {
        assert!(eventually(WAIT, || async { a.daemon.adapters.is_running(platform) }).await, "the live node runs {platform} now");
    }
    tg.say(GROUP, HOST, "Ada", "/call After");
    assert!(eventually(WAIT, || async { telegram_cards(&tg).len() == 2 }).await, "the live node answers /call");
    hs.send_text(&host, &mroom, "!call Again").await;
    assert!(eventually(WAIT, || async { matrix_cards(&hs, &host, &mroom, b).await == 2 }).await, "the live node answers !call");
    // Whatever it took over, it handles nothing a second time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(telegram_cards(&tg).len(), 2, "no Telegram command handled twice");
    assert_eq!(matrix_cards(&hs, &host, &mroom, b).await, 2, "no Matrix command handled twice");
    assert_eq!(tg.conflicts(), 0);
    assert_eq!(tg.malformed(), Vec::<String>::new(), "calls Telegram would refuse");
    a.stop().await;
    db.drop_db().await;
}

/// Reads whatever frames are queued now.
async fn drain(ws: &mut Ws) {
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {}
}

/// Ends every session listening for room events on the test database; returns how many.
async fn terminate_listeners(db: &TestDb) -> i64 {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()) t",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap()
}

/// Three nodes, 1,000 joins at once spread over them, on a room of 50: exactly 50 get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_admit_exactly_fifty() {
    let db = TestDb::new(Db::Postgres).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for dir in &dirs {
        let mut c = config(&db);
        c.storage.data_dir = dir.path().to_owned();
        c.storage.max_connections = 16;
        nodes.push(Harness::start(c).await);
    }
    let (room, _) = nodes[0].create_room(json!({"max_participants": 50})).await;
    let joins = (0..1000).map(|i| {
        let node = &nodes[i % 3];
        let room = room.clone();
        async move { node.join(&room, &format!("Guest {i}"), None).await.0 }
    });
    let statuses = futures::future::join_all(joins).await;
    let admitted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let full = statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count();
    assert_eq!((admitted, full), (50, 950), "{:?}", statuses.iter().filter(|s| ![StatusCode::OK, StatusCode::CONFLICT].contains(s)).collect::<Vec<_>>());
    for node in &nodes {
        assert_eq!(node.room(&room).await["participants"].as_array().unwrap().len(), 50, "every node sees the same 50");
    }
    for node in nodes {
        node.stop().await;
    }
    db.drop_db().await;
}

/// A node whose machine clock is 10 minutes slow follows the database's clock: the other node,
/// which sweeps, does not take it for dead, and presence times agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_wrong_clock_follows_the_database() {
    let db = TestDb::new(Db::Postgres).await;
    let dir_b = tempfile::tempdir().unwrap();
    let a = Harness::start(config(&db)).await;
    // A leads housekeeping (it started first) and sweeps B's heartbeats.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut cb = config(&db);
    cb.storage.data_dir = dir_b.path().to_owned();
    let slow = Harness::start_with_clock(cb, Clock::with_wall_error(-10 * 60 * 1000)).await;
    let (room, _) = a.create_room(json!({})).await;
    let (mut ws, pid, _, _) = page(&slow, &room, "Ivy").await;
    // Three heartbeats and sweeps.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let view = a.room(&room).await;
    let me = view["participants"].as_array().unwrap().iter().find(|p| p["id"] == pid.as_str()).unwrap().clone();
    assert!(me["left_at"].is_null(), "Ivy, on the slow node, is still in: {me}");
    let joined = chrono::DateTime::parse_from_rfc3339(me["joined_at"].as_str().unwrap()).unwrap();
    let skew = (chrono::Utc::now() - joined.with_timezone(&chrono::Utc)).num_seconds().abs();
    assert!(skew < 60, "the slow node stamps with the database's time, not its own: {me}");
    drain(&mut ws).await;
    slow.stop().await;
    a.stop().await;
    db.drop_db().await;
}
