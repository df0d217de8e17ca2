//! Room sockets: who may connect, presence with a grace period, and host actions reaching
//! every page at once. Also two daemons sharing one PostgreSQL.

mod common;
use common::*;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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
