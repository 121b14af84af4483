//! `Idempotency-Key` on sends, with Stripe's semantics: the same key and body within 24 h
//! answer the original response; the same key with another body is refused.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a key remembers its response.
pub const RETENTION_MS: u64 = 24 * 60 * 60 * 1000;
/// A request that holds a key this long without finishing is taken to have died.
pub const STALE_PENDING_MS: u64 = 60 * 1000;
pub const MAX_KEY_CHARS: usize = 255;

/// What the store holds for a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub fingerprint: String,
    /// `None` while the first request is still being handled.
    pub response: Option<SavedResponse>,
    pub created_at: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedResponse {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// First use (or the earlier use expired or died): handle the request and save its answer.
    Proceed,
    Replay(SavedResponse),
    /// The first request with this key is still being handled.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
}

/// Binds a key to one request: the route and the exact body bytes.
pub fn fingerprint(path: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(path.as_bytes());
    hash.update(b"\n");
    hash.update(body);
    hex::encode(hash.finalize())
}

pub fn decide(existing: Option<&Stored>, fingerprint: &str, now: u64) -> Decision {
    let Some(stored) = existing.filter(|s| now.saturating_sub(s.created_at) < RETENTION_MS) else {
        return Decision::Proceed;
    };
    if stored.fingerprint != fingerprint {
        return Decision::Mismatch;
    }
    match &stored.response {
        Some(response) => Decision::Replay(response.clone()),
        None if now.saturating_sub(stored.created_at) >= STALE_PENDING_MS => Decision::Proceed,
        None => Decision::InFlight,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_780_000_000_000;

    fn stored(fingerprint: &str, response: Option<SavedResponse>, age: u64) -> Stored {
        Stored { fingerprint: fingerprint.into(), response, created_at: NOW - age }
    }

    fn ok() -> SavedResponse {
        SavedResponse { status: 200, body: "{\"message_id\":\"msg_1\"}".into() }
    }

    #[test]
    fn same_key_and_body_replays_the_response() {
        assert_eq!(decide(None, "a", NOW), Decision::Proceed);
        assert_eq!(decide(Some(&stored("a", Some(ok()), 1000)), "a", NOW), Decision::Replay(ok()));
    }

    #[test]
    fn a_different_body_is_refused_even_while_in_flight() {
        assert_eq!(decide(Some(&stored("a", Some(ok()), 1000)), "b", NOW), Decision::Mismatch);
        assert_eq!(decide(Some(&stored("a", None, 1000)), "b", NOW), Decision::Mismatch);
    }

    #[test]
    fn concurrent_duplicates_wait_and_dead_attempts_are_retried() {
        assert_eq!(decide(Some(&stored("a", None, 1000)), "a", NOW), Decision::InFlight);
        assert_eq!(decide(Some(&stored("a", None, STALE_PENDING_MS)), "a", NOW), Decision::Proceed);
    }

    #[test]
    fn keys_are_forgotten_after_24_hours() {
        assert_eq!(decide(Some(&stored("a", Some(ok()), RETENTION_MS - 1)), "a", NOW), Decision::Replay(ok()));
        assert_eq!(decide(Some(&stored("a", Some(ok()), RETENTION_MS)), "b", NOW), Decision::Proceed);
    }

    #[test]
    fn fingerprints_bind_route_and_body() {
        assert_eq!(fingerprint("/a", b"{}"), fingerprint("/a", b"{}"));
        assert_ne!(fingerprint("/a", b"{}"), fingerprint("/b", b"{}"));
        assert_ne!(fingerprint("/a", b"{}"), fingerprint("/a", b"{ }"));
    }
}
