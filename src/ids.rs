//! Room ids, participant ids and secret tokens.
//!
//! Everything here comes from the operating system's CSPRNG (`rand::rngs::OsRng` through
//! `rand::rng()`, which is a CSPRNG reseeded from the OS). Room ids are 22 characters of
//! `[A-Za-z0-9]`: 62^22 ≈ 2^131, so a link cannot be guessed. Tokens are never stored:
//! the database keeps their SHA-256, and a lookup by hash leaks nothing useful through
//! timing, because an attacker cannot choose what the hash of a guess looks like.

use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length of a room id.
pub const ROOM_ID_LEN: usize = 22;
/// Length of a participant or knock id (not a secret; only unique within a room).
pub const PARTICIPANT_ID_LEN: usize = 12;
/// Length of a secret token (host, participant, knock): 43 × log2(62) ≈ 256 bits.
pub const TOKEN_LEN: usize = 43;

fn random_alnum(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// A fresh, unguessable room id.
pub fn new_room_id() -> String {
    random_alnum(ROOM_ID_LEN)
}

/// A fresh participant (or knock) id.
pub fn new_participant_id() -> String {
    random_alnum(PARTICIPANT_ID_LEN)
}

/// A fresh secret token.
pub fn new_token() -> String {
    random_alnum(TOKEN_LEN)
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

/// Whether `s` has the shape of a token (any other input is refused before hashing).
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
    fn shape_checks_refuse_malformed_input() {
        assert!(!is_room_id("short"));
        assert!(!is_room_id("aaaaaaaaaaaaaaaaaaaaa-"));
        assert!(!is_room_id("ááááááááááá"));
        assert!(!is_token("x"));
        assert!(is_token(&new_token()));
    }

    #[test]
    fn secret_eq_compares_values() {
        assert!(secret_eq("abc", "abc"));
        assert!(!secret_eq("abc", "abd"));
        assert!(!secret_eq("abc", "abcd"));
    }
}
