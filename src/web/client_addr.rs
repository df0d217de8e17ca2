//! The client address the join gate limits: the peer address, or the last `X-Forwarded-For`
//! hop when the bridge sits behind a reverse proxy that appends it.

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use std::net::{IpAddr, SocketAddr};

pub fn client_ip(parts: &Parts, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        if let Some(ip) = forwarded.and_then(|v| v.rsplit(',').next()).and_then(|s| s.trim().parse().ok()) {
            return Some(ip);
        }
    }
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip())
}
