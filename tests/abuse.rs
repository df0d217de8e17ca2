//! Abuse of the join gate: a flood from one address, and probing for room ids.

mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn random_room_id() -> String {
    callbridge::ids::new_room_id()
}

/// 4,000 join attempts from one address, 64 at a time, into a real room and at random ids:
/// the per-address limit (30 a minute) lets through its burst and nothing more, a probe at an
/// unknown id spends the budget like a real join, and the daemon keeps answering meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_flood_from_one_address_is_held_to_the_rate() {
    const RATE: u32 = 30;
    const ATTEMPTS: usize = 4000;
    let tdb = TestDb::new(Db::Sqlite).await;
    let mut c = config(&tdb);
    c.server.join_rate_per_minute = RATE;
    let h = Arc::new(Harness::start(c).await);
    let (room, _) = h.create_room(json!({"max_participants": 1000})).await;

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let passed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (h, room, next, passed) = (h.clone(), room.clone(), next.clone(), passed.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < ATTEMPTS {
                    let n = next.load(Ordering::Relaxed);
                    let target = if n % 2 == 0 { room.clone() } else { random_room_id() };
                    let (status, body) = h.join(&target, "flood", None).await;
                    match status {
                        StatusCode::TOO_MANY_REQUESTS => assert_eq!(body["error"], "rate_limited"),
                        StatusCode::OK | StatusCode::NOT_FOUND => {
                            passed.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("unexpected {other} during the flood"),
                    }
                }
            })
        })
        .collect();
    // The daemon stays responsive to everyone else while the flood runs.
    let mut health_worst = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        let r = h.http.get(format!("{}/healthz", h.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        health_worst = health_worst.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    let passed = passed.load(Ordering::Relaxed);
    // The burst, plus what the quota refills while the flood runs (one every 2 s).
    let allowed = RATE as usize + (elapsed.as_secs() as usize / 2) + 1;
    eprintln!("{ATTEMPTS} attempts in {elapsed:?}: {passed} answered, the rest 429; /healthz worst {health_worst:?}");
    assert!(passed <= allowed, "{passed} attempts got through; the limit allows {allowed}");
    assert!(passed >= RATE as usize, "the burst of {RATE} was served ({passed})");
    assert!(health_worst < Duration::from_secs(1), "/healthz took {health_worst:?} under the flood");
    // The room holds only what got through.
    assert!(h.room(&room).await["participants"].as_array().unwrap().len() <= passed);
    Arc::into_inner(h).unwrap().stop().await;
    tdb.drop_db().await;
}

/// Room ids are not guessable (22 characters of a 62-letter alphabet) and a miss looks like a
/// hit from outside: probing unknown ids takes the same path through the admission writer as
/// joining a real (locked) room, so the answer time says nothing about which ids exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_costs_what_a_hit_costs() {
    let tdb = TestDb::new(Db::Sqlite).await;
    let mut c = config(&tdb);
    // The rate limit on, as in production, with room for the probes: both pay for it.
    c.server.join_rate_per_minute = 10_000;
    let h = Harness::start(c).await;
    let (room, host) = h.create_room(json!({})).await;
    assert_eq!(h.act(&room, "lock", &host).await.0, StatusCode::OK);
    // Warm the connection and the writer first; then hits and misses alternate.
    for _ in 0..40 {
        h.join(&room, "warm", None).await;
        h.join(&random_room_id(), "warm", None).await;
    }
    let (mut hits, mut misses) = (Vec::new(), Vec::new());
    for i in 0..600 {
        let (target, into) = if i % 2 == 0 { (room.clone(), &mut hits) } else { (random_room_id(), &mut misses) };
        let t = Instant::now();
        let (status, _) = h.join(&target, "probe", None).await;
        into.push(t.elapsed());
        assert_eq!(status, if i % 2 == 0 { StatusCode::LOCKED } else { StatusCode::NOT_FOUND });
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (hit, miss) = (median(&mut hits), median(&mut misses));
    let ratio = miss.as_secs_f64() / hit.as_secs_f64();
    eprintln!("median answer: existing room {hit:?}, unknown id {miss:?} (ratio {ratio:.2})");
    assert!((0.8..=1.25).contains(&ratio), "a miss ({miss:?}) and a hit ({hit:?}) are told apart by time");
    h.stop().await;
    tdb.drop_db().await;
}

/// Hardening point 5: behind a trusted proxy, the client is the rightmost hop the proxy did not
/// add, so a client cannot pick its bucket by writing X-Forwarded-For itself; IPv6 clients are
/// one bucket per /64, so a subscriber's 2^64 addresses are one client; and a locked room
/// holds at most 50 waiting requests to join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_key_clients_as_proxies_and_ipv6_see_them() {
    let tdb = TestDb::new(Db::Sqlite).await;
    let mut c = config(&tdb);
    c.server.join_rate_per_minute = 2;
    c.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    let h = Harness::start(c).await;
    let (room, host) = h.create_room(json!({"max_participants": 1000})).await;
    let join_via = |forwarded: &str| {
        let request = h.http.post(format!("{}/r/{room}/join", h.base)).header("x-forwarded-for", forwarded).json(&json!({"name": "Guest"}));
        async move { request.send().await.unwrap().status() }
    };
    // Two joins from one /64 spend its budget; another address in it is the same client.
    assert_eq!(join_via("2001:db8:0:1::1").await, StatusCode::OK);
    assert_eq!(join_via("2001:db8:0:1::2").await, StatusCode::OK);
    assert_eq!(join_via("2001:db8:0:1:ffff::3").await, StatusCode::TOO_MANY_REQUESTS, "a new address in the same /64");
    assert_eq!(join_via("2001:db8:0:2::1").await, StatusCode::OK, "the next /64 is another client");
    // A made-up hop in front of the real one changes nothing.
    assert_eq!(join_via("203.0.113.9").await, StatusCode::OK);
    assert_eq!(join_via("203.0.113.9").await, StatusCode::OK);
    assert_eq!(join_via("198.51.100.1, 203.0.113.9").await, StatusCode::TOO_MANY_REQUESTS, "the client chose its bucket");

    // Knocks: 50 wait, the 51st is turned away until one is answered.
    assert_eq!(h.act(&room, "lock", &host).await.0, StatusCode::OK);
    let knock = |n: usize| {
        let request = h.http.post(format!("{}/r/{room}/knock", h.base)).header("x-forwarded-for", format!("10.0.{}.{}", n / 200, n % 200 + 1)).json(&json!({"name": format!("Knocker {n}")}));
        async move {
            let r = request.send().await.unwrap();
            let status = r.status();
            (status, r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let mut first = None;
    for n in 0..50 {
        let (s, body) = knock(n).await;
        assert_eq!(s, StatusCode::ACCEPTED, "knock {n}: {body}");
        first.get_or_insert(body["knock_id"].as_str().unwrap().to_owned());
    }
    let (s, body) = knock(50).await;
    assert_eq!((s, body["error"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")), "{body}");
    assert_eq!(h.act(&room, &format!("knocks/{}/deny", first.unwrap()), &host).await.0, StatusCode::OK);
    assert_eq!(knock(51).await.0, StatusCode::ACCEPTED, "a place in the queue is free again");
    h.stop().await;
}
