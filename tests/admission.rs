//! The admission rules and every status code of the join gate and the API, on SQLite and on
//! PostgreSQL, through the real HTTP server.

mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name(Db::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name(Db::Postgres).await }
        }
    )*};
}

on_both!(
    every_outcome_has_its_status,
    capacity_holds_under_1000_concurrent_joins,
    joins_racing_a_lock_admit_nobody_after_it,
    state_survives_a_restart,
    knock_admit_and_deny,
    auth_and_bad_input,
    rooms_expire_when_unused,
    a_joiner_who_never_comes_gives_the_place_back,
    old_tokens_do_not_pass_a_lock_or_a_full_room,
);

async fn every_outcome_has_its_status(db: Db) {
    let tdb = TestDb::new(db).await;
    let h = Harness::start(config(&tdb)).await;
    let (id, host) = h.create_room(json!({"title": "Standup", "max_participants": 2})).await;

    // unknown and malformed ids
    assert_eq!(h.join("AAAAAAAAAAAAAAAAAAAAAA", "Ada", None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(h.join("x'; DROP TABLE rooms;--", "Ada", None).await.0, StatusCode::NOT_FOUND);
    // names
    assert_eq!(h.join(&id, "   ", None).await.1["error"], "invalid_name");
    assert_eq!(h.join(&id, &"n".repeat(65), None).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(h.join(&id, "a\u{7}b", None).await.0, StatusCode::BAD_REQUEST);

    // admitted, then full
    let (s, ada) = h.join(&id, "  Ada  ", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ada["name"], "Ada");
    assert_eq!(ada["rejoin"], false);
    let ada_token = ada["token"].as_str().unwrap().to_owned();
    let (s, bob) = h.join(&id, "Bob", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = h.join(&id, "Cy", None).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::CONFLICT, Some("full")));

    // locked: new joiners refused, with the knock hint; a rejoin by token passes
    assert_eq!(h.act(&id, "lock", &host).await.0, StatusCode::OK);
    let (s, body) = h.join(&id, "Dee", None).await;
    assert_eq!((s, body["error"].as_str(), body["knock"].as_bool()), (StatusCode::LOCKED, Some("locked"), Some(true)));
    let (s, again) = h.join(&id, "Ada", Some(&ada_token)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((again["rejoin"].as_bool(), again["participant_id"].clone()), (Some(true), ada["participant_id"].clone()));
    assert_eq!(again["token"], ada_token);
    // a token naming Ada's participant id with another secret is nobody's: no rejoin, no socket
    let forged_ada = format!("{}{}", &ada_token[..12], "x".repeat(ada_token.len() - 12));
    let (s, body) = h.join(&id, "Ada", Some(&forged_ada)).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::LOCKED, Some("locked")));
    let r = h.http.get(format!("{}/r/{id}/ws?token={forged_ada}", h.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // locked beats full for a new joiner (order: locked before full)
    assert_eq!(h.join(&id, "Eve", None).await.1["error"], "locked");
    // the host passes the lock with the host token (a forged one does not)
    let as_host = |token: &str| {
        let body = json!({"name": "Hana", "host_token": token});
        h.http.post(format!("{}/r/{id}/join", h.base)).json(&body).send()
    };
    assert_eq!(as_host("forged").await.unwrap().status(), StatusCode::LOCKED);
    assert_eq!(as_host(&host).await.unwrap().status(), StatusCode::CONFLICT, "the host still cannot overshoot capacity");

    // removed: refused on rejoin, even after unlock
    let bob_pid = bob["participant_id"].as_str().unwrap();
    let r = h.http.delete(format!("{}/api/v1/rooms/{id}/participants/{bob_pid}", h.base)).bearer_auth(&host).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(h.act(&id, "unlock", &host).await.0, StatusCode::OK);
    let (s, body) = h.join(&id, "Bob", bob["token"].as_str()).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::FORBIDDEN, Some("banned")));
    // Bob's place was freed by the removal
    assert_eq!(h.join(&id, "Fay", None).await.0, StatusCode::OK);

    let room = h.room(&id).await;
    // In order of arrival; Ada and Bob may join within one millisecond, which the order does
    // not break by arrival, so they are looked up by name.
    let people = room["participants"].as_array().unwrap();
    let mut names: Vec<&str> = people.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names.pop(), Some("Fay"));
    names.sort();
    assert_eq!(names, ["Ada", "Bob"]);
    let who = |name: &str| people.iter().find(|p| p["name"] == name).unwrap();
    assert_eq!(who("Bob")["removed"], true);
    assert!(who("Bob")["left_at"].is_string());
    assert!(who("Ada")["left_at"].is_null());
    assert_eq!(who("Ada")["present"], false);

    // ended: 410 for everyone, the rejoin included
    assert_eq!(h.act(&id, "end", &host).await.0, StatusCode::OK);
    let (s, body) = h.join(&id, "Ada", Some(&ada_token)).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::GONE, Some("ended")));
    assert_eq!(h.act(&id, "lock", &host).await.0, StatusCode::GONE);
    let room = h.room(&id).await;
    assert_eq!((room["status"].as_str(), room["ended"].as_bool()), (Some("ended"), Some(true)));
    assert!(room["participants"].as_array().unwrap().iter().all(|p| p["left_at"].is_string()));
    h.stop().await;
    tdb.drop_db().await;
}

async fn capacity_holds_under_1000_concurrent_joins(db: Db) {
    let tdb = TestDb::new(db).await;
    let h = Arc::new(Harness::start(config(&tdb)).await);
    let (id, _) = h.create_room(json!({"max_participants": 50})).await;
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let (h, id) = (h.clone(), id.clone());
            tokio::spawn(async move { h.join(&id, &format!("guest {i}"), None).await.0 })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 50);
    assert_eq!(h.room(&id).await["participants"].as_array().unwrap().len(), 50);
    Arc::into_inner(h).unwrap().stop().await;
    tdb.drop_db().await;
}

/// Five hundred rounds: 16 joins fire 400 µs apart while the lock is sent at a varying point
/// among them, and 4 more the moment the lock call returns (the lock may take longer than
/// the 6.4 ms the others span); no join sent after the lock call returned is admitted, and the
/// room holds exactly the admitted ones.
async fn joins_racing_a_lock_admit_nobody_after_it(db: Db) {
    const ROUNDS: usize = 500;
    const RACERS: u64 = 16;
    const CHASERS: u64 = 4;
    let tdb = TestDb::new(db).await;
    let h = Arc::new(Harness::start(config(&tdb)).await);
    let (mut before, mut after) = (0, 0);
    for round in 0..ROUNDS {
        let (id, host) = h.create_room(json!({"max_participants": 1000})).await;
        let locked_at: Arc<std::sync::OnceLock<()>> = Arc::default();
        let (lock_returned, returned) = tokio::sync::watch::channel(false);
        let tasks: Vec<_> = (0..RACERS + CHASERS)
            .map(|i| {
                let (h, id, locked_at, mut returned) = (h.clone(), id.clone(), locked_at.clone(), returned.clone());
                tokio::spawn(async move {
                    if i < RACERS {
                        tokio::time::sleep(Duration::from_micros(400 * i)).await;
                    } else {
                        returned.wait_for(|r| *r).await.unwrap();
                    }
                    let sent_after_lock = locked_at.get().is_some();
                    (sent_after_lock, h.join(&id, &format!("racer {i}"), None).await.0)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_micros(400 * (round as u64 % (RACERS / 2)))).await;
        assert_eq!(h.act(&id, "lock", &host).await.0, StatusCode::OK);
        locked_at.set(()).unwrap();
        lock_returned.send(true).unwrap();
        let mut admitted = 0;
        for t in tasks {
            let (sent_after, status) = t.await.unwrap();
            if sent_after {
                after += 1;
                assert_eq!(status, StatusCode::LOCKED, "round {round}: a join sent after the lock returned was admitted");
            } else {
                before += 1;
            }
            match status {
                StatusCode::OK => admitted += 1,
                StatusCode::LOCKED => {}
                other => panic!("round {round}: unexpected status {other}"),
            }
        }
        assert_eq!(h.room(&id).await["participants"].as_array().unwrap().len(), admitted, "round {round}");
    }
    // The race was real: joins landed on both sides of the lock.
    assert!(before > 0 && after >= CHASERS as usize * ROUNDS, "{before} joins before, {after} after");
    eprintln!("{ROUNDS} rounds: {before} joins sent before the lock returned, {after} after (all refused)");
    Arc::into_inner(h).unwrap().stop().await;
    tdb.drop_db().await;
}

async fn state_survives_a_restart(db: Db) {
    let tdb = TestDb::new(db).await;
    let h = Harness::start(config(&tdb)).await;
    let (id, host) = h.create_room(json!({"title": "Persist", "kind": "voice"})).await;
    let (_, ada) = h.join(&id, "Ada", None).await;
    h.act(&id, "lock", &host).await;
    h.stop().await;

    let h = Harness::start(config(&tdb)).await;
    let room = h.room(&id).await;
    assert_eq!((room["title"].as_str(), room["kind"].as_str(), room["locked"].as_bool()), (Some("Persist"), Some("voice"), Some(true)));
    assert_eq!(room["participants"][0]["name"], "Ada");
    assert_eq!(h.join(&id, "Bob", None).await.0, StatusCode::LOCKED);
    assert_eq!(h.join(&id, "Ada", ada["token"].as_str()).await.0, StatusCode::OK);
    // the host token still works
    assert_eq!(h.act(&id, "unlock", &host).await.0, StatusCode::OK);
    h.stop().await;
    tdb.drop_db().await;
}

async fn knock_admit_and_deny(db: Db) {
    let tdb = TestDb::new(db).await;
    let h = Harness::start(config(&tdb)).await;
    let (id, host) = h.create_room(json!({})).await;
    let knock = |name: &'static str| {
        let (h, id) = (&h, id.clone());
        async move {
            let r = h.http.post(format!("{}/r/{id}/knock", h.base)).json(&json!({"name": name})).send().await.unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    // an open room takes joins, not knocks
    let (s, body) = knock("Early").await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::CONFLICT, Some("not_locked")));
    h.act(&id, "lock", &host).await;
    let (s, k1) = knock("Kim").await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (_, k2) = knock("Lou").await;
    let status = |k: &serde_json::Value| {
        let url = format!("{}/r/{id}/knocks/{}?token={}", h.base, k["knock_id"].as_str().unwrap(), k["token"].as_str().unwrap());
        let http = h.http.clone();
        async move { http.get(url).send().await.unwrap().json::<serde_json::Value>().await.unwrap()["status"].as_str().unwrap().to_owned() }
    };
    assert_eq!(status(&k1).await, "pending");
    let room = h.room(&id).await;
    assert_eq!(room["knocks"].as_array().unwrap().len(), 2);

    let admit = format!("knocks/{}/admit", k1["knock_id"].as_str().unwrap());
    assert_eq!(h.act(&id, &admit, &host).await.0, StatusCode::OK);
    let deny = format!("knocks/{}/deny", k2["knock_id"].as_str().unwrap());
    assert_eq!(h.act(&id, &deny, &host).await.0, StatusCode::OK);
    assert_eq!(status(&k1).await, "admitted");
    assert_eq!(status(&k2).await, "denied");
    // the admitted knocker enters the locked room with its knock token; the denied one cannot
    let (s, kim) = h.join(&id, "Kim", k1["token"].as_str()).await;
    assert_eq!((s, kim["name"].as_str()), (StatusCode::OK, Some("Kim")));
    assert_eq!(h.join(&id, "Lou", k2["token"].as_str()).await.0, StatusCode::LOCKED);
    // a wrong knock token learns nothing
    let r = h.http.get(format!("{}/r/{id}/knocks/{}?token=nope", h.base, k1["knock_id"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let k1_token = k1["token"].as_str().unwrap();
    let forged_k1 = format!("{}{}", &k1_token[..12], "x".repeat(k1_token.len() - 12));
    let r = h.http.get(format!("{}/r/{id}/knocks/{}?token={forged_k1}", h.base, k1["knock_id"].as_str().unwrap())).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "the knock's id with another secret");
    h.stop().await;
    tdb.drop_db().await;
}

async fn auth_and_bad_input(db: Db) {
    let tdb = TestDb::new(db).await;
    let mut c = config(&tdb);
    c.server.join_rate_per_minute = 5;
    let h = Harness::start(c).await;
    let (id, host) = h.create_room(json!({})).await;
    let (other, other_host) = h.create_room(json!({})).await;
    let url = |p: &str| format!("{}{p}", h.base);

    // minting needs the API token; a host token is not enough
    assert_eq!(h.http.post(url("/api/v1/rooms")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(h.http.post(url("/api/v1/rooms")).bearer_auth(&host).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    // a room's host token has no power over another room
    assert_eq!(h.act(&other, "lock", &host).await.0, StatusCode::FORBIDDEN);
    assert_eq!(h.act(&other, "lock", &other_host).await.0, StatusCode::OK);
    assert_eq!(h.http.get(url(&format!("/api/v1/rooms/{id}"))).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // unknown rooms: 404 to the API token, 403 to anything else (no probing with tokens)
    assert_eq!(h.act("AAAAAAAAAAAAAAAAAAAAAA", "lock", API_TOKEN).await.0, StatusCode::NOT_FOUND);
    assert_eq!(h.act("AAAAAAAAAAAAAAAAAAAAAA", "lock", &host).await.0, StatusCode::FORBIDDEN);
    // bad bodies
    let r = h.http.post(url("/api/v1/rooms")).bearer_auth(API_TOKEN).json(&json!({"kind": "hologram"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = h.http.post(url("/api/v1/rooms")).bearer_auth(API_TOKEN).json(&json!({"max_participants": 0})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Media: an SFU room holds 50 unless told, a mesh 8 and never more.
    let create = |body: serde_json::Value| h.http.post(url("/api/v1/rooms")).bearer_auth(API_TOKEN).json(&body).send();
    let sfu: serde_json::Value = create(json!({})).await.unwrap().json().await.unwrap();
    assert_eq!((sfu["media"].as_str(), sfu["max_participants"].as_u64()), (Some("sfu"), Some(50)), "{sfu}");
    let mesh: serde_json::Value = create(json!({"media": "mesh"})).await.unwrap().json().await.unwrap();
    assert_eq!((mesh["media"].as_str(), mesh["max_participants"].as_u64()), (Some("mesh"), Some(8)), "{mesh}");
    assert_eq!(h.room(mesh["id"].as_str().unwrap()).await["media"], "mesh");
    let r = create(json!({"media": "mesh", "max_participants": 9})).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["message"].as_str().unwrap().contains("mesh"), "{e}");
    assert_eq!(create(json!({"media": "p2p"})).await.unwrap().status(), StatusCode::BAD_REQUEST);
    // The OpenAPI document says so, for clients and the schema fuzzer (scripts/fuzz-api.sh).
    let doc: serde_json::Value = h.http.get(url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    let body = &doc["components"]["schemas"]["CreateRoomBody"];
    assert_eq!(body["if"]["properties"]["media"]["const"], "mesh", "{body}");
    assert_eq!(body["then"]["properties"]["max_participants"]["maximum"], 8, "{body}");
    let huge = json!({"name": "x".repeat(20_000)});
    let r = h.http.post(url(&format!("/r/{id}/join"))).json(&huge).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "too_large");
    let r = h.http.post(url(&format!("/r/{id}/join"))).header("content-type", "application/json").body("{nope").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_json");
    // bodies are objects: serde would also read a struct from an array of its fields
    let r = h.http.post(url(&format!("/r/{id}/join"))).json(&json!(["Mallory"])).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_json");
    let r = h.http.post(url("/api/v1/rooms")).bearer_auth(API_TOKEN).json(&json!([null, null, null, null])).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no room from an array");
    // the rate limit: 5 per minute per address; the oversized and broken bodies above count
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(h.join(&id, &format!("p{i}"), None).await.0);
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    let (s, body) = h.join(&id, "late", None).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")));
    // the room socket refuses anyone without a valid token
    let r = h.http.get(url(&format!("/r/{id}/ws?token=forged"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // health
    let v: serde_json::Value = h.http.get(url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["status"], "ok");
    h.stop().await;
    tdb.drop_db().await;
}

async fn rooms_expire_when_unused(db: Db) {
    let tdb = TestDb::new(db).await;
    let clock = callbridge::clock::Clock::default();
    let h = Harness::start_with_clock(config(&tdb), clock.clone()).await;
    let (id, _) = h.create_room(json!({})).await;
    let (fresh, _) = h.create_room(json!({})).await;
    clock.advance(Duration::from_secs(89 * 86_400));
    assert_eq!(h.join(&fresh, "Keeps it alive", None).await.0, StatusCode::OK);
    clock.advance(Duration::from_secs(2 * 86_400));
    let (s, body) = h.join(&id, "Late", None).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::GONE, Some("expired")));
    assert_eq!(h.room(&id).await["status"], "expired");
    assert_eq!(h.join(&fresh, "Still fine", None).await.0, StatusCode::OK);
    h.stop().await;
    tdb.drop_db().await;
}

async fn a_joiner_who_never_comes_gives_the_place_back(db: Db) {
    let tdb = TestDb::new(db).await;
    let clock = callbridge::clock::Clock::default();
    let mut c = config(&tdb);
    c.rooms.connect_timeout = Duration::from_secs(60);
    let h = Harness::start_with_clock(c, clock.clone()).await;
    let (id, _) = h.create_room(json!({"max_participants": 2})).await;
    assert_eq!(h.join(&id, "Never came", None).await.0, StatusCode::OK);
    clock.advance(Duration::from_secs(61));
    // Admitted after the timeout's start: keeps the place though the page never connected yet.
    assert_eq!(h.join(&id, "Just joined", None).await.0, StatusCode::OK);
    assert_eq!(h.join(&id, "Third", None).await.0, StatusCode::CONFLICT);
    // The presence sweep (every few seconds) releases only the one admitted over 60 s ago.
    let released = eventually(Duration::from_secs(15), || async {
        h.room(&id).await["participants"].as_array().unwrap().iter().any(|p| p["name"] == "Never came" && p["left_at"].is_string())
    })
    .await;
    assert!(released, "the participant who never came still holds a place: {}", h.room(&id).await);
    let room = h.room(&id).await;
    let just = room["participants"].as_array().unwrap().iter().find(|p| p["name"] == "Just joined").unwrap().clone();
    assert!(just["left_at"].is_null(), "a recent joiner was released: {room}");
    assert_eq!(h.join(&id, "Third", None).await.0, StatusCode::OK, "the released place is free again");
    h.stop().await;
    tdb.drop_db().await;
}

/// The attack of hardening point 2: collect tokens while the room is open (joining without
/// ever connecting, so each place is given back after `connect_timeout`), lock, then rejoin
/// with all of them. A token passes the lock and the capacity only while its participant
/// holds its place or gave it back within `presence_grace`; any older one joins like anyone.
async fn old_tokens_do_not_pass_a_lock_or_a_full_room(db: Db) {
    let tdb = TestDb::new(db).await;
    let clock = callbridge::clock::Clock::default();
    let mut c = config(&tdb);
    c.rooms.connect_timeout = Duration::from_secs(60);
    let h = Harness::start_with_clock(c, clock.clone()).await;
    let (id, host) = h.create_room(json!({"max_participants": 2})).await;
    let mut collected = Vec::new();
    for round in 0..3 {
        for n in 0..2 {
            let (s, body) = h.join(&id, &format!("Collector {round}.{n}"), None).await;
            assert_eq!(s, StatusCode::OK, "{body}");
            collected.push(body["token"].as_str().unwrap().to_owned());
        }
        clock.advance(Duration::from_secs(61));
        let released = eventually(Duration::from_secs(15), || async {
            h.room(&id).await["participants"].as_array().unwrap().iter().filter(|p| p["left_at"].is_string()).count() == 2 * (round + 1)
        })
        .await;
        assert!(released, "the sweep gave the places back: {}", h.room(&id).await);
    }
    // Past the grace period of the last ones released: six tokens whose places were given
    // back a while ago, and two holders.
    clock.advance(Duration::from_secs(11));
    let (s, body) = h.join(&id, "Holder A", None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let holder = body["token"].as_str().unwrap().to_owned();
    assert_eq!(h.join(&id, "Holder B", None).await.0, StatusCode::OK);
    assert_eq!(h.act(&id, "lock", &host).await.0, StatusCode::OK);
    for token in &collected {
        let (s, body) = h.join(&id, "Collector", Some(token)).await;
        assert_eq!((s, body["error"].as_str()), (StatusCode::LOCKED, Some("locked")), "an old token passed the lock");
    }
    let (s, body) = h.join(&id, "Holder A", Some(&holder)).await;
    assert_eq!((s, body["rejoin"].as_bool()), (StatusCode::OK, Some(true)), "a holder's token passes the lock: {body}");
    // Unlocked but full: an old token waits like a new joiner.
    assert_eq!(h.act(&id, "unlock", &host).await.0, StatusCode::OK);
    let (s, body) = h.join(&id, "Collector", Some(&collected[0])).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::CONFLICT, Some("full")), "an old token passed a full room");
    let room = h.room(&id).await;
    let holding = room["participants"].as_array().unwrap().iter().filter(|p| p["left_at"].is_null()).count();
    assert_eq!(holding, 2, "the room of 2 holds 2: {room}");
    h.stop().await;
    tdb.drop_db().await;
}

/// A SQLite database written before migration 0005 (participants in a rowid table) keeps every
/// participant through the upgrade: who holds a place, who left, who was removed, and the
/// tokens that rejoin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_upgrade_to_0005_keeps_every_participant() {
    use callbridge::ids::{hash_token, new_participant_id, new_participant_token, new_room_id, new_token};
    let tdb = TestDb::new(Db::Sqlite).await;
    // The database as the daemon of the version before left it: migrations 0001–0004.
    let before = tempfile::tempdir().unwrap();
    for file in std::fs::read_dir("migrations/sqlite").unwrap() {
        let path = file.unwrap().path();
        if path.file_name().unwrap().to_str().unwrap() < "0005" {
            std::fs::copy(&path, before.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", tdb.url)).await.unwrap();
    sqlx::migrate::Migrator::new(before.path()).await.unwrap().run(&pool).await.unwrap();
    let (id, host) = (new_room_id(), new_token());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    sqlx::query(
        "INSERT INTO rooms (id, kind, title, host_token_hash, max_participants, knock, created_at, last_active_at) \
         VALUES ($1, 'video', 'Before', $2, 3, 1, $3, $3)",
    )
    .bind(&id)
    .bind(hash_token(&host))
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    // Ada and Bob hold places, Cy left, Dee was removed.
    let mut tokens = Vec::new();
    for (name, left, banned) in [("Ada", None, None), ("Bob", None, None), ("Cy", Some(now), None), ("Dee", Some(now), Some(now))] {
        let pid = new_participant_id();
        let token = new_participant_token(&pid);
        sqlx::query(
            "INSERT INTO participants (room_id, id, name, token_hash, joined_at, admitted_at, left_at, banned_at) \
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7)",
        )
        .bind(&id)
        .bind(&pid)
        .bind(name)
        .bind(hash_token(&token))
        .bind(now)
        .bind(left)
        .bind(banned)
        .execute(&pool)
        .await
        .unwrap();
        tokens.push(token);
    }
    pool.close().await;

    let h = Harness::start(config(&tdb)).await;
    let room = h.room(&id).await;
    let names: Vec<&str> = room["participants"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 4, "every participant carried over: {names:?}");
    for name in ["Ada", "Bob", "Cy", "Dee"] {
        assert!(names.contains(&name), "{name} carried over: {names:?}");
    }
    // Two of three places are held: one newcomer fits, the next is refused.
    assert_eq!(h.join(&id, "Eve", None).await.0, StatusCode::OK);
    assert_eq!(h.join(&id, "Fay", None).await.0, StatusCode::CONFLICT);
    // Ada's token rejoins; Dee's stays refused.
    let (s, ada) = h.join(&id, "Ada", Some(&tokens[0])).await;
    assert_eq!((s, ada["rejoin"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(h.join(&id, "Dee", Some(&tokens[3])).await.0, StatusCode::FORBIDDEN);
    // The table is now kept in its key's order.
    let pool = sqlx::SqlitePool::connect(&tdb.url).await.unwrap();
    let sql: String = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'participants'").fetch_one(&pool).await.unwrap();
    assert!(sql.contains("WITHOUT ROWID"), "{sql}");
    pool.close().await;
    h.stop().await;
}
