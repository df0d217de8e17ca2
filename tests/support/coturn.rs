//! A real coturn for tests, on loopback with `use-auth-secret` (Debian's coturn; the test
//! command installs it).
#![allow(dead_code)]

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
pub struct Coturn {
    child: Child,
    pub port: u16,
}

impl Coturn {
    /// Starts coturn on a free port; a start that does not answer (its port or the next one,
    /// which coturn also takes, was grabbed meanwhile) is tried again on another.
    pub fn start(secret: &str) -> Coturn {
        for _ in 0..3 {
            let port = free_port_pair();
            let child = Command::new("turnserver")
                .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--use-auth-secret", "--realm=callbridge"])
                .arg(format!("--listening-port={port}"))
                .arg(format!("--static-auth-secret={secret}"))
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
    pub fn answers_within(&self, within: Duration) -> bool {
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
    pub fn allocates(&self, username: &str, credential: &str) -> bool {
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
