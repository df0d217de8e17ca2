//! Personal links: a chat vouches for who someone is, and the join gate takes its word.
//!
//! A personal link carries `#as=<token>` in its fragment (never sent to servers or logs). The
//! token names the room, the person's chat identity (`chat:1234`) and display name, and an
//! expiry, sealed with HMAC-SHA256 under a key kept in the database, so every node accepts the
//! links any node made. Joining with it puts that name on the card (and lets bans by chat
//! identity hold) whatever the joiner types.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a personal link works.
pub const PERSONAL_LINK_TTL_MS: i64 = 12 * 60 * 60 * 1000;

/// The signing key.
#[derive(Clone)]
pub struct IdentityKey([u8; 32]);

/// Who a valid token says the joiner is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_ref: String,
    pub name: String,
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentityKey(<redacted>)")
    }
}

impl IdentityKey {
    /// A key from 64 hex characters (as stored).
    pub fn from_hex(hex_key: &str) -> Option<IdentityKey> {
        hex::decode(hex_key).ok()?.try_into().ok().map(IdentityKey)
    }

    /// A new random key, hex-encoded for storage.
    pub fn generate_hex() -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    fn mac(&self, room_id: &str, expires_ms: i64, user_ref: &str, name: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        for part in ["callbridge-identity-v1", room_id, &expires_ms.to_string(), user_ref, name] {
            mac.update(part.as_bytes());
            mac.update(&[0]);
        }
        mac
    }

    /// A token for `room_id` valid until `expires_ms`.
    pub fn sign(&self, room_id: &str, user_ref: &str, name: &str, expires_ms: i64) -> String {
        let tag = self.mac(room_id, expires_ms, user_ref, name).finalize().into_bytes();
        format!("{expires_ms}.{}.{}.{}", hex::encode(user_ref), hex::encode(name), hex::encode(tag))
    }

    /// Checks a token for `room_id` at `now_ms` (in constant time over the tag).
    pub fn verify(&self, room_id: &str, token: &str, now_ms: i64) -> Result<Identity, &'static str> {
        const BAD: &str = "this personal link is not valid";
        let mut parts = token.splitn(4, '.');
        let (Some(exp), Some(user), Some(name), Some(tag)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(BAD);
        };
        let expires_ms: i64 = exp.parse().map_err(|_| BAD)?;
        let decode = |h: &str| hex::decode(h).ok().and_then(|b| String::from_utf8(b).ok());
        let (Some(user_ref), Some(name), Some(tag)) = (decode(user), decode(name), hex::decode(tag).ok()) else { return Err(BAD) };
        self.mac(room_id, expires_ms, &user_ref, &name).verify_slice(&tag).map_err(|_| BAD)?;
        if now_ms > expires_ms {
            return Err("this personal link has expired; ask the chat for a new one");
        }
        Ok(Identity { user_ref, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_only_as_made() {
        let key = IdentityKey::from_hex(&IdentityKey::generate_hex()).unwrap();
        let t = key.sign("room1", "chat:42", "Ada <b>", 1_000);
        assert_eq!(key.verify("room1", &t, 999), Ok(Identity { user_ref: "chat:42".into(), name: "Ada <b>".into() }));
        assert!(key.verify("room2", &t, 999).is_err(), "another room");
        assert!(key.verify("room1", &t, 1_001).unwrap_err().contains("expired"));
        let forged = t.replace(&hex::encode("Ada <b>"), &hex::encode("Admin"));
        assert!(key.verify("room1", &forged, 999).is_err(), "another name");
        let later = t.replacen("1000", "9999", 1);
        assert!(key.verify("room1", &later, 999).is_err(), "a longer life");
        let other = IdentityKey::from_hex(&IdentityKey::generate_hex()).unwrap();
        assert!(other.verify("room1", &t, 999).is_err(), "another key");
        for junk in ["", "...", "1.2.3", "x.y.z.w", &"9".repeat(5000)] {
            assert!(key.verify("room1", junk, 0).is_err());
        }
    }
}
