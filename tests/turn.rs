//! TURN credentials that expire (hardening point 9), against a real coturn started here on
//! loopback with `use-auth-secret`: an admitted participant's room page gets credentials of
//! its own, coturn grants an allocation with them, and refuses them once they expired.

mod common;
use common::*;
use futures::StreamExt;
use serde_json::{Value, json};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "turn-shared-secret-for-tests";

/// A port free for UDP and TCP, with the next one free too (coturn's alternate port).
fn free_port_pair() -> u16 {
    loop {
        let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let free = |p: u16| UdpSocket::bind(("127.0.0.1", p)).is_ok() && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if port < u16::MAX && free(port) && free(port + 1) {
            return port;
        }
    }
}

/// A coturn on 127.0.0.1, stopped on drop.
struct Coturn {
    child: Child,
    port: u16,
}

impl Coturn {
    /// Starts coturn on a free port; a start that does not answer (its port or the next one,
    /// which coturn also takes, was grabbed meanwhile) is tried again on another.
    fn start() -> Coturn {
        for _ in 0..3 {
            let port = free_port_pair();
            let child = Command::new("turnserver")
                .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--use-auth-secret", "--realm=callbridge"])
                .arg(format!("--listening-port={port}"))
                .arg(format!("--static-auth-secret={SECRET}"))
                .args(["--no-tls", "--no-dtls", "--no-cli", "--allow-loopback-peers", "--log-file=stdout", "--min-port=49160", "--max-port=49260"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("coturn's turnserver is not installed (scripts/test-peers.sh installs it)");
            let coturn = Coturn { child, port };
            if coturn.answers_within(Duration::from_secs(5)) {
                return coturn;
            }
        }
        panic!("coturn did not answer STUN on 127.0.0.1 in three starts");
    }

    /// Sends STUN binding requests until one is answered, or `within` passes.
    fn answers_within(&self, within: Duration) -> bool {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        request.extend_from_slice(b"callbridge12");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            socket.send_to(&request, ("127.0.0.1", self.port)).unwrap();
            let mut answer = [0u8; 512];
            if socket.recv(&mut answer).is_ok_and(|n| n >= 20 && answer[..2] == [0x01, 0x01]) {
                return true;
            }
        }
        false
    }

    /// Whether coturn grants a TURN allocation to these credentials (coturn's own client).
    fn allocates(&self, username: &str, credential: &str) -> bool {
        let status = Command::new("turnutils_uclient")
            .args(["-n", "1", "-m", "1", "-e", "127.0.0.1", "-r", "3480"])
            .args(["-p", &self.port.to_string(), "-u", username, "-w", credential, "127.0.0.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("coturn's turnutils_uclient is not installed (scripts/test-peers.sh installs it)");
        status.success()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitted_pages_get_turn_credentials_that_expire() {
    let coturn = Coturn::start();
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
