//! TURN credentials that expire (hardening point 9), against a real coturn started here on
//! loopback with `use-auth-secret`: an admitted participant's room page gets credentials of
//! its own, coturn grants an allocation with them, and refuses them once they expired.

mod common;
#[path = "support/coturn.rs"]
mod coturn;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "turn-shared-secret-for-tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitted_pages_get_turn_credentials_that_expire() {
    let coturn = coturn::Coturn::start(SECRET);
    let tdb = TestDb::new(Db::Sqlite).await;
    let mut c = config(&tdb);
    c.rooms.turn = Some(callbridge::config::TurnConfig {
        urls: vec![format!("turn:127.0.0.1:{}?transport=udp", coturn.port)],
        secret: callbridge::config::Secret::new(SECRET),
        ttl: Duration::from_secs(3),
    });
    let h = Harness::start(c).await;
    let (id, _) = h.create_room(json!({})).await;
    let (_, joined) = h.join(&id, "Ada", None).await;
    let (token, pid) = (joined["token"].as_str().unwrap(), joined["participant_id"].as_str().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(h.ws_url(&id, token)).await.unwrap();
    let welcome: Value = loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "welcome" {
                break v;
            }
        }
    };
    let turn = welcome["ice_servers"].as_array().unwrap().iter().find(|s| s["username"].is_string()).expect("a TURN server with credentials").clone();
    let (username, credential) = (turn["username"].as_str().unwrap(), turn["credential"].as_str().unwrap());
    assert!(username.ends_with(&format!(":{pid}")), "the credentials are this participant's own: {username}");
    assert!(coturn.allocates(username, credential), "coturn refused fresh credentials");
    assert!(!coturn.allocates(username, "bm90IHRoZSBwYXNzd29yZA=="), "coturn took a wrong password");
    // Nobody but an admitted participant's page gets any: the socket is refused first.
    let refused = tokio_tungstenite::connect_async(h.ws_url(&id, &format!("{}{}", callbridge::ids::new_participant_id(), callbridge::ids::new_token()))).await;
    assert!(matches!(refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401));

    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!coturn.allocates(username, credential), "coturn took expired credentials");
    h.stop().await;
}
