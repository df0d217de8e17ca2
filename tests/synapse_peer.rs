//! The Synapse test peer itself (tests/support/synapse.rs): a real homeserver on loopback,
//! users from the shared-secret admin API, and the plain-HTTP helpers the Matrix tests use.

#[path = "support/synapse.rs"]
mod synapse;

use reqwest::{Method, StatusCode};
use std::time::{Duration, Instant};
use synapse::Synapse;

#[tokio::test]
async fn a_real_synapse_registers_users_and_carries_a_conversation() {
    let started = Instant::now();
    let hs = Synapse::start().await;
    eprintln!("Synapse answered at {} after {:?}", hs.url, started.elapsed());

    let alice = hs.register("alice", true).await;
    let bob = hs.register("bob", false).await;
    assert_eq!(alice.user_id, hs.user_id("alice"));
    assert_eq!(bob.user_id, "@bob:localhost");
    // The admin flag is real: only alice may use the admin API.
    let whois = format!("/_synapse/admin/v2/users/{}", bob.user_id);
    assert_eq!(hs.call_ok(&alice, Method::GET, &whois, None).await["admin"], false);
    assert_eq!(hs.call(&bob, Method::GET, &whois, None).await.0, StatusCode::FORBIDDEN);

    let room = hs.create_room(&alice, "calls", &[&bob.user_id], false).await;
    assert!(hs.state(&alice, &room, "m.room.encryption", "").await.is_none());
    hs.join(&bob, &room).await;
    hs.wait_for_join(&alice, &room, &bob.user_id, Duration::from_secs(10)).await;
    assert_eq!(hs.joined_members(&bob, &room).await, vec![alice.user_id.clone(), bob.user_id.clone()]);

    // Rate limits are raised: Synapse's default (a burst of 10 messages) would refuse these.
    for i in 0..30 {
        hs.send_text(&bob, &room, &format!("burst {i}")).await;
    }
    let sent = hs.send_text(&alice, &room, "join the call").await;
    hs.react(&bob, &room, &sent, "👍").await;
    let timeline = hs.messages(&bob, &room).await;
    let i = timeline.iter().position(|e| e["event_id"] == sent.as_str()).expect("bob sees alice's message");
    assert_eq!(timeline[i]["sender"], alice.user_id.as_str());
    assert_eq!(timeline[i]["content"]["body"], "join the call");
    let reaction = timeline.last().unwrap();
    assert_eq!(reaction["type"], "m.reaction", "oldest first: the reaction comes last");
    assert_eq!(reaction["content"]["m.relates_to"]["event_id"], sent.as_str());

    // Bob may not change power levels until alice (the creator) raises him.
    let (status, _) = hs.call(&bob, Method::PUT, &format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"), Some(&serde_json::json!({"topic": "x"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    hs.set_power_level(&alice, &room, &bob.user_id, 100).await;
    let levels = hs.state(&bob, &room, "m.room.power_levels", "").await.unwrap();
    assert_eq!(levels["users"][&bob.user_id], 100);
    hs.put_state(&bob, &room, "m.room.topic", "", &serde_json::json!({"topic": "calls here"})).await;

    let secret = hs.create_room(&alice, "secret", &[], true).await;
    let encryption = hs.state(&alice, &secret, "m.room.encryption", "").await.expect("encrypted");
    assert_eq!(encryption["algorithm"], "m.megolm.v1.aes-sha2");
}
