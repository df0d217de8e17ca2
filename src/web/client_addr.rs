//! The client address the rate limits key on.
//!
//! Behind reverse proxies, the address is the rightmost `X-Forwarded-For` hop that is not one
//! of `[server] trusted_proxies` (each proxy appends the address it saw, so everything left
//! of the first untrusted hop may be made up by the client), and only when the connection
//! itself comes from a trusted proxy. `trust_forwarded_for` keeps the older rule: the last
//! hop, for exactly one appending proxy.
//!
//! An IPv6 client is keyed by its /64: one subscriber line usually holds a whole /64, and
//! keying single addresses would hand one client 2^64 buckets.

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Who the request comes from, as far as the proxies in front of the bridge can tell.
pub fn client_ip(parts: &Parts, trusted_proxies: &[IpNet], trust_forwarded_for: bool) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ci| ci.0.ip().to_canonical())?;
    let forwarded = || parts.headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    if trusted(&peer) {
        let hops = forwarded();
        let mut hops = hops.split(',').rev().map(|h| h.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()));
        return Some(match hops.find(|hop| !hop.as_ref().is_ok_and(trusted)) {
            Some(Ok(client)) => client,
            // A hop that is not an address: the client wrote it, so the last proxy saw this one.
            Some(Err(_)) | None => peer,
        });
    }
    if trust_forwarded_for && let Some(ip) = forwarded().rsplit(',').next().and_then(|s| s.trim().parse::<IpAddr>().ok()) {
        return Some(ip.to_canonical());
    }
    Some(peer)
}

/// The key a client is rate-limited by: its IPv4 address, or its IPv6 /64.
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(peer: &str, forwarded: Option<&str>) -> Parts {
        let mut req = Request::builder();
        if let Some(f) = forwarded {
            req = req.header("x-forwarded-for", f);
        }
        let (mut parts, _) = req.body(()).unwrap().into_parts();
        parts.extensions.insert(ConnectInfo(SocketAddr::new(peer.parse().unwrap(), 40000)));
        parts
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let ip = |p: &str, f: Option<&str>| client_ip(&parts(p, f), &proxies, false).unwrap().to_string();
        assert_eq!(ip("10.0.0.1", Some("203.0.113.7")), "203.0.113.7");
        // A client that writes its own X-Forwarded-For cannot choose its key.
        assert_eq!(ip("10.0.0.1", Some("6.6.6.6, 203.0.113.7")), "203.0.113.7");
        assert_eq!(ip("10.0.0.1", Some("6.6.6.6, 203.0.113.7, 10.0.0.9")), "203.0.113.7", "two proxies in a row");
        assert_eq!(ip("10.0.0.1", Some("not-an-ip, 10.0.0.9")), "10.0.0.1");
        // From anyone else, the header is the client's own word: ignored.
        assert_eq!(ip("198.51.100.4", Some("203.0.113.7")), "198.51.100.4");
        assert_eq!(ip("10.0.0.1", None), "10.0.0.1");
        assert_eq!(ip("::ffff:198.51.100.4", None), "198.51.100.4", "an IPv4 client over IPv6 is an IPv4 client");
        // The older switch: the last hop, whoever sent it.
        assert_eq!(client_ip(&parts("198.51.100.4", Some("6.6.6.6, 7.7.7.7")), &[], true).unwrap().to_string(), "7.7.7.7");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let key = |s: &str| rate_key(s.parse().unwrap()).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
    }
}
