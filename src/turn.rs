//! TURN credentials that expire: the TURN REST scheme coturn implements as `use-auth-secret`.
//! The bridge and the TURN server share `[rooms.turn] secret`; each admitted participant's
//! room page gets a user name `{expiry}:{participant}` and the password
//! base64(HMAC-SHA1(secret, user name)), good until `expiry` (Unix seconds). Nobody who was
//! not admitted ever sees one, and a leaked one stops working within `ttl`.

use crate::config::TurnConfig;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// One participant's TURN user name and password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredentials {
    pub username: String,
    pub credential: String,
}

/// Credentials for `participant`, valid for `turn.ttl` from `now_ms`.
pub fn credentials(turn: &TurnConfig, participant: &str, now_ms: i64) -> TurnCredentials {
    let expiry = now_ms / 1000 + turn.ttl.as_secs() as i64;
    let username = format!("{expiry}:{participant}");
    let mut mac = Hmac::<Sha1>::new_from_slice(turn.secret.expose().as_bytes()).expect("HMAC takes a key of any length");
    mac.update(username.as_bytes());
    let credential = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    TurnCredentials { username, credential }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use std::time::Duration;

    #[test]
    fn coturns_scheme() {
        // The expected value comes from an independent HMAC-SHA1 (Python's hmac and base64).
        let turn = TurnConfig { urls: vec![], secret: Secret::new("s3cret"), ttl: Duration::from_secs(600) };
        let c = credentials(&turn, "alice", 1_000_000_000);
        assert_eq!(c.username, "1000600:alice");
        assert_eq!(c.credential, "WArXTW1V1HCEEN+krrm2umr8b4c=");
    }
}
