//! The SFU against hostile input and vanishing peers, with synthetic participants (str0m
//! clients publishing pre-encoded VP8 and Opus, `examples/sfu_load/client.rs`) in two rooms.
//!
//! While garbage datagrams, fake RTP, DTLS-looking junk and STUN checks with wrong credentials
//! flood the SFU's socket, and one participant vanishes without a word, everyone else keeps
//! receiving everyone else.

mod common;
#[path = "../examples/sfu_load/client.rs"]
mod client;

use client::{Media, Received, Synthetic};
use common::{Db, Harness, TestDb, config};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Frames received from each sender since `before`.
fn progress(now: &HashMap<String, Received>, before: &HashMap<String, Received>) -> HashMap<String, u64> {
    now.iter()
        .map(|(pid, r)| {
            let b = before.get(pid).copied().unwrap_or_default();
            (pid.clone(), (r.video_frames - b.video_frames) + (r.audio_frames - b.audio_frames))
        })
        .collect()
}

/// A STUN binding request (RFC 5389) with a made-up USERNAME and a bogus MESSAGE-INTEGRITY.
fn stun_with_wrong_credentials(n: u32) -> Vec<u8> {
    let username = format!("nosuch{n}:peer");
    let mut attrs = Vec::new();
    attrs.extend_from_slice(&0x0006u16.to_be_bytes());
    attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attrs.extend_from_slice(username.as_bytes());
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    attrs.extend_from_slice(&0x0008u16.to_be_bytes());
    attrs.extend_from_slice(&20u16.to_be_bytes());
    attrs.extend_from_slice(&[0xab; 20]);
    let mut msg = Vec::new();
    msg.extend_from_slice(&0x0001u16.to_be_bytes());
    msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    msg.extend_from_slice(&0x2112A442u32.to_be_bytes());
    msg.extend_from_slice(&n.to_be_bytes());
    msg.extend_from_slice(&[7; 8]);
    msg.extend_from_slice(&attrs);
    msg
}

/// Datagrams no real peer sends: random bytes, an RTP header over junk, a DTLS record header
/// over junk, truncated STUN, STUN with wrong credentials, empty and oversized datagrams.
fn garbage(n: u32) -> Vec<u8> {
    let noise: Vec<u8> = (0..(n % 1200 + 1)).map(|i| (i.wrapping_mul(2654435761).wrapping_add(n) >> 7) as u8).collect();
    match n % 7 {
        0 => noise,
        1 => [&[0x80, 0x60, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef][..], &noise].concat(),
        2 => [&[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 40][..], &noise].concat(),
        3 => stun_with_wrong_credentials(n)[..11].to_vec(),
        4 => stun_with_wrong_credentials(n),
        5 => Vec::new(),
        _ => vec![0x42; 1999],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_sfu_socket_and_a_vanishing_peer_disturb_nobody() {
    let tdb = TestDb::new(Db::Sqlite).await;
    let h = Harness::start(config(&tdb)).await;
    let sfu: SocketAddr = h.daemon.state.sfu.addrs[0];
    let media = Arc::new(Media::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/media")).unwrap());
    let mut rooms = Vec::new();
    for _ in 0..2 {
        let (id, _) = h.create_room(json!({})).await;
        let mut people = Vec::new();
        for name in ["Ana", "Ben", "Cai"] {
            people.push(Synthetic::join(&h.http, &h.base, &id, name, media.clone()).await.expect("joins"));
        }
        rooms.push(people);
    }
    // Everyone receives both others in their room.
    let all_flowing = |rooms: &Vec<Vec<Synthetic>>| {
        rooms.iter().all(|people| {
            people.iter().all(|s| {
                let got = s.received();
                people.iter().filter(|o| o.pid != s.pid).all(|o| got.get(&o.pid).is_some_and(|r| r.video_frames > 0 && r.audio_frames > 0))
            })
        })
    };
    assert!(common::eventually(Duration::from_secs(20), || async { all_flowing(&rooms) }).await, "media flows in both rooms");
    let waits: Vec<Duration> = rooms.iter().flatten().filter_map(|s| *s.first_video.lock().unwrap()).collect();
    eprintln!("join to first video frame: {waits:?}");

    // Five seconds of hostile datagrams from many addresses, while media keeps flowing.
    let before: Vec<Vec<HashMap<String, Received>>> = rooms.iter().map(|p| p.iter().map(Synthetic::received).collect()).collect();
    let flood = tokio::spawn(async move {
        let sockets: Vec<tokio::net::UdpSocket> = futures::future::join_all((0..16).map(|_| tokio::net::UdpSocket::bind("127.0.0.1:0")))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let (started, mut sent) = (Instant::now(), 0u32);
        while started.elapsed() < Duration::from_secs(5) {
            for (i, socket) in sockets.iter().enumerate() {
                let _ = socket.send_to(&garbage(sent.wrapping_add(i as u32)), sfu).await;
                sent += 1;
            }
            if sent % 512 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        sent
    });
    let sent = flood.await.unwrap();
    eprintln!("{sent} hostile datagrams in 5 s");
    assert!(sent > 10_000, "the flood was too light to mean anything: {sent}");
    for (people, before) in rooms.iter().zip(&before) {
        for (s, before) in people.iter().zip(before) {
            let moved = progress(&s.received(), before);
            for other in people.iter().filter(|o| o.pid != s.pid) {
                // 5 s of 15 fps video and 60 ms audio is about 150 frames; at least a third arrived.
                let frames = moved.get(&other.pid).copied().unwrap_or(0);
                assert!(frames >= 50, "{} got {frames} frames from {} during the flood", s.name, other.name);
            }
        }
    }

    // One participant of the first room vanishes without a word; the other two go on, and the
    // second room never notices.
    let mut first = rooms.remove(0);
    first.remove(0).vanish();
    let before: Vec<HashMap<String, Received>> = first.iter().map(Synthetic::received).collect();
    let other_before: Vec<HashMap<String, Received>> = rooms[0].iter().map(Synthetic::received).collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (s, before) in first.iter().zip(&before) {
        let moved = progress(&s.received(), before);
        let other = first.iter().find(|o| o.pid != s.pid).unwrap();
        assert!(moved.get(&other.pid).copied().unwrap_or(0) >= 30, "{} stopped receiving {} after a peer vanished", s.name, other.name);
    }
    for (s, before) in rooms[0].iter().zip(&other_before) {
        let moved = progress(&s.received(), before);
        assert!(moved.values().filter(|f| **f >= 30).count() == 2, "the second room was disturbed: {moved:?}");
    }
    for s in first.into_iter().chain(rooms.remove(0)) {
        assert_eq!(*s.closed.lock().unwrap(), None, "{}'s socket was closed", s.name);
        s.leave().await;
    }
    h.stop().await;
}
