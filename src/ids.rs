//! Room ids, participant ids and secret tokens.
//!
//! Everything here comes from the operating system's CSPRNG (`rand::rngs::OsRng` through
//! `rand::rng()`, which is a CSPRNG reseeded from the OS). Room ids are 22 characters of
//! `[A-Za-z0-9]`: 62^22 ≈ 2^131, so a link cannot be guessed. Tokens are never stored:
//! the database keeps their SHA-256, and a comparison of hashes leaks nothing useful through
//! timing, because an attacker cannot choose what the hash of a guess looks like.
//!
//! A participant token starts with its participant id, so the store finds its row by primary
//! key and then checks the hash; no index over random token hashes has to be kept up to date
//! on every join. Participant ids start with the time, so a room's new rows land at the end of
//! its part of that key instead of on a random page each (every page a join touches is a page
//! its commit writes).

use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Declares an id type: a `String` of a checked shape. Made only by [`parse`](RoomId::parse)
/// at the edge (a malformed id is answered 404 there) or from what the database returns.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id, when `s` has its shape.
            pub fn parse(s: &str) -> Option<$name> {
                $check(s).then(|| $name(s.to_owned()))
            }
            /// An id the bridge made or stored itself.
            pub(crate) fn trusted(s: String) -> $name {
                debug_assert!($check(&s), "{s:?}");
                $name(s)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        /// Read back only with its shape checked (events from other nodes carry ids).
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| serde::de::Error::custom(concat!("not a ", stringify!($name))))
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

id_type!(
    /// A room's id: [`ROOM_ID_LEN`] characters of `[A-Za-z0-9]` from a CSPRNG.
    RoomId,
    is_room_id
);
id_type!(
    /// A participant's id, unique within its room (see [`new_participant_id`]).
    ParticipantId,
    is_participant_id
);
id_type!(
    /// A request to join's id, unique within its room; shaped like a participant id.
    KnockId,
    is_participant_id
);

/// Length of a room id.
pub const ROOM_ID_LEN: usize = 22;
/// Length of a participant or knock id (not a secret; only unique within a room).
pub const PARTICIPANT_ID_LEN: usize = 12;
/// Length of a secret (a host token; the secret part of a participant token):
/// 43 × log2(62) ≈ 256 bits.
pub const TOKEN_LEN: usize = 43;
/// Length of a participant (or knock) token: its participant id, then a secret.
pub const PARTICIPANT_TOKEN_LEN: usize = PARTICIPANT_ID_LEN + TOKEN_LEN;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Leading characters of a participant id that spell the time: milliseconds modulo 62^5
/// (about 10.6 days; a wrap only costs one room one out-of-order page).
const TIME_CHARS: usize = 5;

fn random_alnum(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// A fresh, unguessable room id.
pub fn new_room_id() -> String {
    random_alnum(ROOM_ID_LEN)
}

/// A fresh participant (or knock) id: the time in milliseconds (base 62, so ids of one room
/// mostly sort in the order they were made), then 7 random characters (62^7 ≈ 2^41), so two
/// ids of one room made in the same millisecond differ all but surely. If they ever do not,
/// the primary key refuses the second and admission decides that join again with a new id.
pub fn new_participant_id() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let mut t = (ms % 62u128.pow(TIME_CHARS as u32)) as usize;
    let mut time = [0u8; TIME_CHARS];
    for c in time.iter_mut().rev() {
        *c = ALPHABET[t % 62];
        t /= 62;
    }
    let mut id: String = time.iter().map(|&b| char::from(b)).collect();
    id.push_str(&random_alnum(PARTICIPANT_ID_LEN - TIME_CHARS));
    id
}

/// A fresh secret token (host tokens).
pub fn new_token() -> String {
    random_alnum(TOKEN_LEN)
}

/// A fresh token for the participant (or knock) `id`.
pub fn new_participant_token(id: &str) -> String {
    debug_assert!(is_participant_id(id));
    let mut token = String::with_capacity(PARTICIPANT_TOKEN_LEN);
    token.push_str(id);
    token.push_str(&random_alnum(TOKEN_LEN));
    token
}

/// The participant id a participant token names, if it has the shape of one (any other
/// input is refused before hashing or SQL).
pub fn participant_token_id(token: &str) -> Option<&str> {
    (token.len() == PARTICIPANT_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_alphanumeric())).then(|| &token[..PARTICIPANT_ID_LEN])
}

/// Whether `s` has the shape of a room id. Checked before any database work so that
/// malformed ids are answered cheaply and never reach SQL.
pub fn is_room_id(s: &str) -> bool {
    s.len() == ROOM_ID_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether `s` has the shape of a participant or knock id.
pub fn is_participant_id(s: &str) -> bool {
    s.len() == PARTICIPANT_ID_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether `s` has the shape of a host token (any other input is refused before hashing).
pub fn is_token(s: &str) -> bool {
    s.len() == TOKEN_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The stored form of a token: hex SHA-256.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time equality for secrets compared directly (the API token).
pub fn secret_eq(a: &str, b: &str) -> bool {
    // Hash both sides first so the comparison time does not depend on the lengths either.
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.ct_eq(&hb).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ten_thousand_room_ids_are_distinct_and_well_formed() {
        let ids: HashSet<String> = (0..10_000).map(|_| new_room_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in &ids {
            assert_eq!(id.len(), 22);
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
            assert!(is_room_id(id));
        }
    }

    #[test]
    fn typed_ids_parse_only_their_shape() {
        let room = new_room_id();
        assert_eq!(RoomId::parse(&room).unwrap().as_str(), room);
        assert_eq!(serde_json::to_string(&RoomId::parse(&room).unwrap()).unwrap(), format!("\"{room}\""));
        for bad in ["", "short", "aaaaaaaaaaaaaaaaaaaaa-", "../../../etc/passwdxxx"] {
            assert!(RoomId::parse(bad).is_none(), "{bad}");
        }
        let pid = new_participant_id();
        assert!(ParticipantId::parse(&pid).is_some() && KnockId::parse(&pid).is_some());
        assert!(ParticipantId::parse(&room).is_none(), "a room id is not a participant id");
    }

    #[test]
    fn shape_checks_refuse_malformed_input() {
        assert!(!is_room_id("short"));
        assert!(!is_room_id("aaaaaaaaaaaaaaaaaaaaa-"));
        assert!(!is_room_id("ááááááááááá"));
        assert!(!is_token("x"));
        assert!(is_token(&new_token()));
    }

    #[test]
    fn participant_tokens_name_their_participant() {
        let id = new_participant_id();
        assert!(is_participant_id(&id), "{id}");
        let token = new_participant_token(&id);
        assert_eq!(participant_token_id(&token), Some(id.as_str()));
        assert_eq!(participant_token_id(&new_token()), None, "a host token is not a participant token");
        assert_eq!(participant_token_id(&format!("{}-", &token[1..])), None);
        assert_eq!(participant_token_id(&"é".repeat(PARTICIPANT_TOKEN_LEN / 2)), None);
    }

    #[test]
    fn participant_ids_made_later_sort_later_and_stay_distinct() {
        let first = new_participant_id();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let ids: HashSet<String> = (0..10_000).map(|_| new_participant_id()).collect();
        assert_eq!(ids.len(), 10_000);
        // Unless the 10.6-day cycle of the time part wrapped in between.
        assert!(ids.iter().all(|id| id[..TIME_CHARS] > first[..TIME_CHARS] || first.starts_with("zzzz")), "{first}");
    }

    #[test]
    fn secret_eq_compares_values() {
        assert!(secret_eq("abc", "abc"));
        assert!(!secret_eq("abc", "abd"));
        assert!(!secret_eq("abc", "abcd"));
    }
}
