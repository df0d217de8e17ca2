//! Room sockets: who may connect, presence with a grace period, and host actions reaching
//! every page at once. Also two daemons sharing one PostgreSQL.

mod common;
use common::*;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.expect("socket opens").0
}

/// The next JSON frame of `type` (skipping others), within 5 s.
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == kind {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended while waiting for {kind}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} frame within 5 s"))
}

fn present(room: &Value) -> Vec<String> {
    room["participants"].as_array().unwrap().iter().filter(|p| p["present"] == true).map(|p| p["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_relay_and_host_actions() {
    let tdb = TestDb::new(Db::Sqlite).await;
    let mut c = config(&tdb);
    c.rooms.presence_grace = Duration::from_millis(300);
    let h = Harness::start(c).await;
    let (id, host) = h.create_room(json!({"title": "Live"})).await;
    let (_, ada) = h.join(&id, "Ada", None).await;
    let (_, bob) = h.join(&id, "<b>Bob</b>", None).await;
    let (ada_tok, bob_tok) = (ada["token"].as_str().unwrap(), bob["token"].as_str().unwrap());
    let (ada_id, bob_id) = (ada["participant_id"].as_str().unwrap(), bob["participant_id"].as_str().unwrap());

    let mut a = connect(&format!("{}&host={host}", h.ws_url(&id, ada_tok))).await;
    let welcome = next_of(&mut a, "welcome").await;
    assert_eq!(welcome["self"]["host"], true);
    assert_eq!(welcome["peers"].as_array().unwrap().len(), 0);
    assert!(welcome["room"]["knocks"].is_array(), "hosts see knocks");

    let mut b = connect(&h.ws_url(&id, bob_tok)).await;
    let welcome = next_of(&mut b, "welcome").await;
    assert_eq!(welcome["self"]["host"], false);
    assert_eq!(welcome["peers"][0]["id"], ada_id);
    assert!(welcome["room"].get("knocks").is_none(), "guests never see knocks");
    assert_eq!(next_of(&mut a, "peer-joined").await["peer"]["name"], "<b>Bob</b>");

    // signaling reaches exactly the addressed peer, stamped with the sender
    b.send(Message::text(json!({"type": "signal", "to": ada_id, "data": {"description": {"type": "offer", "sdp": "v=0"}}}).to_string())).await.unwrap();
    let sig = next_of(&mut a, "signal").await;
    assert_eq!((sig["from"].as_str(), sig["data"]["description"]["type"].as_str()), (Some(bob_id), Some("offer")));

    // presence: both in, in the API and in pushed room updates
    assert!(eventually(Duration::from_secs(3), || async { present(&h.room(&id).await).len() == 2 }).await);

    // a reload within the grace period is not a departure
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut b = connect(&h.ws_url(&id, bob_tok)).await;
    next_of(&mut b, "welcome").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let room = h.room(&id).await;
    assert_eq!(present(&room).len(), 2);
    assert!(room["participants"][1]["left_at"].is_null());

    // closing for longer than the grace period is a departure
    b.close(None).await.unwrap();
    assert!(eventually(Duration::from_secs(3), || async { present(&h.room(&id).await) == ["Ada"] }).await);
    let room = h.room(&id).await;
    assert!(room["participants"][1]["left_at"].is_string());
    // a departed participant's socket is refused; rejoining by token reopens it
    let r = tokio_tungstenite::connect_async(h.ws_url(&id, bob_tok)).await;
    assert!(r.is_err(), "a participant who left must rejoin first");
    assert_eq!(h.join(&id, "Bob", Some(bob_tok)).await.0, StatusCode::OK);
    let mut b = connect(&h.ws_url(&id, bob_tok)).await;
    next_of(&mut b, "welcome").await;

    // remove: the page is told and disconnected at once; the token is refused after
    let r = h.http.delete(format!("{}/api/v1/rooms/{id}/participants/{bob_id}", h.base)).bearer_auth(&host).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(next_of(&mut b, "closed").await["reason"], "removed");
    assert!(tokio_tungstenite::connect_async(h.ws_url(&id, bob_tok)).await.is_err());
    assert_eq!(h.join(&id, "Bob", Some(bob_tok)).await.0, StatusCode::FORBIDDEN);

    // lock shows on the host's page
    h.act(&id, "lock", &host).await;
    let update = loop {
        let u = next_of(&mut a, "room").await;
        if u["room"]["locked"] == true {
            break u;
        }
    };
    assert_eq!(update["room"]["status"], "locked");

    // end closes every page with the reason
    h.act(&id, "end", &host).await;
    assert_eq!(next_of(&mut a, "closed").await["reason"], "ended");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_socket_replaces_the_first_and_shutdown_says_goodbye() {
    let tdb = TestDb::new(Db::Sqlite).await;
    let h = Harness::start(config(&tdb)).await;
    let (id, _) = h.create_room(json!({})).await;
    let (_, ada) = h.join(&id, "Ada", None).await;
    let url = h.ws_url(&id, ada["token"].as_str().unwrap());
    let mut first = connect(&url).await;
    next_of(&mut first, "welcome").await;
    let mut second = connect(&url).await;
    next_of(&mut second, "welcome").await;
    assert_eq!(next_of(&mut first, "closed").await["reason"], "replaced");
    let stopping = tokio::spawn(h.stop());
    assert_eq!(next_of(&mut second, "closed").await["reason"], "shutdown");
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_postgres_never_overshoot() {
    let tdb = TestDb::new(Db::Postgres).await;
    let h1 = std::sync::Arc::new(Harness::start(config(&tdb)).await);
    let h2 = std::sync::Arc::new(Harness::start(config(&tdb)).await);
    let (id, host) = h1.create_room(json!({"max_participants": 50})).await;
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let h = if i % 2 == 0 { h1.clone() } else { h2.clone() };
        let id = id.clone();
        tasks.push(tokio::spawn(async move { h.join(&id, &format!("g{i}"), None).await.0 }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 50);
    // a lock through one daemon binds the other at once
    assert_eq!(h1.act(&id, "unlock", &host).await.0, StatusCode::OK);
    let (id2, host2) = h2.create_room(json!({})).await;
    assert_eq!(h1.act(&id2, "lock", &host2).await.0, StatusCode::OK);
    assert_eq!(h2.join(&id2, "late", None).await.0, StatusCode::LOCKED);
    std::sync::Arc::into_inner(h1).unwrap().stop().await;
    std::sync::Arc::into_inner(h2).unwrap().stop().await;
    tdb.drop_db().await;
}

/// Hardening point 3: a page that stops reading while another page keeps signaling to it is
/// dropped (its sends time out) and marked left after the grace period; the sender stays.
/// Signals to oneself and past the per-target budget go nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_stops_reading_is_dropped_and_marked_left() {
    let tdb = TestDb::new(Db::Sqlite).await;
    let mut c = config(&tdb);
    c.rooms.presence_grace = Duration::from_millis(500);
    let h = Harness::start(c).await;
    let (id, _) = h.create_room(json!({})).await;
    let (_, stalled) = h.join(&id, "Stalled", None).await;
    let (_, talker) = h.join(&id, "Talker", None).await;
    let stalled_id = stalled["participant_id"].as_str().unwrap().to_owned();
    let mut s = connect_stalled(&h.ws_url(&id, stalled["token"].as_str().unwrap())).await;
    next_of(&mut s, "welcome").await;
    let mut t = connect(&h.ws_url(&id, talker["token"].as_str().unwrap())).await;
    next_of(&mut t, "welcome").await;
    // From here on `s` is never read again.
    let blob = "x".repeat(15_000);
    let left = || async {
        let room = h.room(&id).await;
        room["participants"].as_array().unwrap().iter().any(|p| p["name"] == "Stalled" && p["left_at"].is_string())
    };
    let started = std::time::Instant::now();
    let mut dropped = false;
    while started.elapsed() < Duration::from_secs(60) {
        for _ in 0..10 {
            let frame = json!({"type": "signal", "to": &stalled_id, "data": {"blob": &blob}}).to_string();
            t.send(Message::Text(frame.into())).await.expect("the talker is never dropped");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // Drain what the talker is sent (room updates), so only the stalled page stalls.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), t.next()).await {}
        if left().await {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the stalled page still holds its place after {:?}", started.elapsed());
    eprintln!("stalled page marked left {:?} after the flood began", started.elapsed());
    let room = h.room(&id).await;
    assert_eq!(present(&room), vec!["Talker".to_owned()], "{room}");
    // A signal to oneself is not echoed.
    let me = talker["participant_id"].as_str().unwrap();
    t.send(Message::Text(json!({"type": "signal", "to": me, "data": {"x": 1}}).to_string().into())).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            if let Some(Ok(Message::Text(text))) = t.next().await
                && text.contains("\"signal\"")
            {
                return;
            }
        }
    })
    .await;
    assert!(echoed.is_err(), "a page was sent its own signal");
    drop(s);
    h.stop().await;
}

/// Hardening point 4: a flood of room-socket upgrades with made-up tokens gets 401 without
/// queueing on the store's write connection, so a lock and an end meanwhile answer at once;
/// and upgrades are limited per client address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_socket_upgrades_neither_write_nor_crowd_out_the_host() {
    let tdb = TestDb::new(Db::Sqlite).await;
    let h = std::sync::Arc::new(Harness::start(config(&tdb)).await);
    let (id, host) = h.create_room(json!({})).await;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood: Vec<_> = (0..32)
        .map(|_| {
            let (h, id, next) = (h.clone(), id.clone(), next.clone());
            tokio::spawn(async move {
                let mut refused = 0;
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 5000 {
                    let token = format!("{}{}", callbridge::ids::new_participant_id(), callbridge::ids::new_token());
                    match tokio_tungstenite::connect_async(h.ws_url(&id, &token)).await {
                        Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401 => refused += 1,
                        other => panic!("a made-up token was not refused: {:?}", other.map(|_| ())),
                    }
                }
                refused
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let timed = |action: &'static str| {
        let (h, id, host) = (h.clone(), id.clone(), host.clone());
        async move {
            let started = std::time::Instant::now();
            assert_eq!(h.act(&id, action, &host).await.0, StatusCode::OK, "{action}");
            started.elapsed()
        }
    };
    let (lock, end) = (timed("lock").await, timed("end").await);
    let refused: usize = futures::future::join_all(flood).await.into_iter().map(|r| r.unwrap()).sum();
    eprintln!("lock {lock:?}, end {end:?} during {refused} refused upgrades");
    assert!(refused >= 5000 - 32, "{refused}");
    assert!(lock < Duration::from_secs(1) && end < Duration::from_secs(1), "lock {lock:?}, end {end:?}");
    std::sync::Arc::try_unwrap(h).ok().expect("the flood is over").stop().await;

    // With the per-address limit on: the sixth upgrade in a minute is refused before any check.
    let tdb = TestDb::new(Db::Sqlite).await;
    let mut c = config(&tdb);
    c.server.socket_rate_per_minute = 5;
    let h = Harness::start(c).await;
    let (id, _) = h.create_room(json!({})).await;
    let statuses: Vec<u16> = futures::future::join_all((0..6).map(|_| {
        let url = h.ws_url(&id, "made-up");
        async move {
            match tokio_tungstenite::connect_async(url).await {
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                _ => 101,
            }
        }
    }))
    .await;
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "{statuses:?}");
    h.stop().await;
}
