//! `callbridge doctor`: what `check-config` cannot know, asked of the world a line at a time:
//! the database answers and is migrated; each chat platform accepts its bot; browsers will
//! grant camera and microphone at `public_url`; the SFU's UDP port and announced addresses;
//! the TURN servers answer. A failed line makes the exit code non-zero. Nothing printed ever
//! holds a secret: every line passes the same mask as the logs.

use crate::config::Config;
use crate::store::Store;
use callbridge_chat::BuildContext;
use std::net::{SocketAddr, UdpSocket};

use std::time::Duration;

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// Runs every check.
pub async fn run(config: &Config) -> Vec<Line> {
    let mut lines = vec![database(config).await];
    for adapter in &config.adapters {
        let platform = adapter.platform();
        let ctx = BuildContext {
            state_dir: config.storage.data_dir.join(platform),
            on_secret: crate::logging::mask,
            state: callbridge_chat::MemoryState::shared(),
        };
        let answer = tokio::time::timeout(Duration::from_secs(30), adapter.probe(&ctx)).await.unwrap_or_else(|_| Err("no answer within 30 s".into()));
        lines.push(line(platform, answer));
    }
    lines.push(public_url(config));
    lines.push(sfu(config));
    for url in turn_urls(config) {
        lines.push(line(&format!("turn {url}"), stun_binding(&url).await));
    }
    let secrets = config.secrets();
    lines.into_iter().map(|l| Line { detail: crate::logging::redact(&l.detail, &secrets), ..l }).collect()
}

fn line(what: &str, answer: Result<String, String>) -> Line {
    match answer {
        Ok(detail) => Line { what: what.to_owned(), ok: true, detail },
        Err(detail) => Line { what: what.to_owned(), ok: false, detail },
    }
}

async fn database(config: &Config) -> Line {
    let answer = match Store::migration_status(&config.storage_url()).await {
        Ok(None) => Ok("no database yet: the daemon creates it at first start".to_owned()),
        Ok(Some(m)) if m.unknown > 0 => Err(format!("{} migrations come from a newer callbridge than this one", m.unknown)),
        Ok(Some(m)) if m.pending > 0 => Err(format!("{} of {} migrations not applied: the daemon applies them at start (back up first)", m.pending, m.pending + m.applied)),
        Ok(Some(m)) => Ok(format!("answers; migrations current ({})", m.applied)),
        Err(error) => Err(format!("does not answer: {error}")),
    };
    line("database", answer)
}

fn public_url(config: &Config) -> Line {
    let url = config.public_url();
    let secure = url::Url::parse(&url).ok().is_some_and(|u| {
        u.scheme() == "https" || matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
    });
    let answer = match secure {
        true => Ok(format!("{url}: browsers grant camera and microphone there")),
        false => Err(format!("{url}: browsers refuse camera and microphone outside https:// (or http://localhost)")),
    };
    line("public_url", answer)
}

fn sfu(config: &Config) -> Line {
    let listen = config.sfu.listen;
    let bound = match UdpSocket::bind(listen) {
        Ok(_) => Ok(format!("{listen} (UDP) can be bound")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Ok(format!("{listen} (UDP) is in use (a running callbridge holds it, or another program)")),
        Err(e) => Err(format!("cannot bind {listen} (UDP): {e}")),
    };
    let answer = bound.and_then(|ok| {
        let odd: Vec<String> = config.sfu.announce.iter().filter(|ip| ip.is_unspecified() || ip.is_multicast()).map(|ip| ip.to_string()).collect();
        match odd.is_empty() {
            true => Ok(ok),
            false => Err(format!("announced addresses no browser can send to: {}", odd.join(", "))),
        }
    });
    line("sfu", answer)
}

/// The TURN servers configured (`[rooms.turn]` and `turn:` ICE servers), as `host:port`.
fn turn_urls(config: &Config) -> Vec<String> {
    let rooms = &config.rooms;
    let urls = rooms.turn.iter().flat_map(|t| t.urls.iter()).chain(rooms.ice_servers.iter().flat_map(|s| s.urls.iter()));
    let mut found: Vec<String> = urls
        .filter_map(|u| u.strip_prefix("turn:"))
        .map(|rest| rest.split('?').next().unwrap_or(rest).to_owned())
        .map(|hostport| if hostport.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) { hostport } else { format!("{hostport}:3478") })
        .collect();
    found.dedup();
    found
}

/// Sends a STUN binding request (RFC 8489, no credentials needed) and waits for the answer.
async fn stun_binding(hostport: &str) -> Result<String, String> {
    let target: SocketAddr = tokio::net::lookup_host(hostport).await.map_err(|e| format!("cannot resolve: {e}"))?.next().ok_or("no address")?;
    let socket = tokio::net::UdpSocket::bind(if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).await.map_err(|e| e.to_string())?;
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend(rand::random::<[u8; 12]>());
    let mut answer = [0u8; 1024];
    for _ in 0..3 {
        socket.send_to(&request, target).await.map_err(|e| e.to_string())?;
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(700), socket.recv_from(&mut answer)).await
            && n >= 20
            && answer[8..20] == request[8..20]
        {
            return Ok(format!("answers STUN at {target}"));
        }
    }
    Err(format!("no STUN answer from {target} within 2 s"))
}

/// Prints the lines; `true` when every check passed.
pub fn print(lines: &[Line]) -> bool {
    for l in lines {
        println!("{} {:<22} {}", if l.ok { "ok  " } else { "FAIL" }, l.what, l.detail);
    }
    let failed = lines.iter().filter(|l| !l.ok).count();
    match failed {
        0 => println!("all {} checks passed", lines.len()),
        n => println!("{n} of {} checks failed", lines.len()),
    }
    failed == 0
}

