//! `Idempotency-Key` on sends, with Stripe's semantics: the same key and body within 24 h
//! answer the original response; the same key with another body is refused; a retry while the
//! first request runs is refused as in flight (409).
//!
//! The key is bound to the message id its first request reserved, and every later attempt under
//! the key re-drives that id (the device's queue ignores an id it holds). So neither a lease that
//! runs out under a slow request nor a failure between the app's and the device's objects can
//! make a retry send a second message.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a key remembers its response.
pub const RETENTION_MS: u64 = 24 * 60 * 60 * 1000;
/// A request that holds a key this long without finishing is taken to have died, and a retry
/// may take over (`IDEMPOTENCY_LEASE_MS`). Taking over re-drives the bound message id, so a
/// lease too short for a slow request costs a duplicate request, never a duplicate message.
pub const DEFAULT_LEASE_MS: u64 = 60 * 1000;
pub const MAX_KEY_CHARS: usize = 255;

/// What the store holds for a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub fingerprint: String,
    /// `None` while the first request is still being handled.
    pub response: Option<SavedResponse>,
    pub created_at: u64,
    /// When the request handling the key claimed it; `None` once that request gave up (failed).
    pub leased_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedResponse {
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// First use, or the earlier attempt failed or died: handle the request (under the key's
    /// bound message id, if it has one) and save its answer.
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

pub fn decide(existing: Option<&Stored>, fingerprint: &str, now: u64, lease_ms: u64) -> Decision {
    let Some(stored) = existing.filter(|s| now.saturating_sub(s.created_at) < RETENTION_MS) else {
        return Decision::Proceed;
    };
    if stored.fingerprint != fingerprint {
        return Decision::Mismatch;
    }
    match &stored.response {
        Some(response) => Decision::Replay(response.clone()),
        None => match stored.leased_at {
            Some(at) if now.saturating_sub(at) < lease_ms => Decision::InFlight,
            _ => Decision::Proceed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_780_000_000_000;

    const LEASE: u64 = DEFAULT_LEASE_MS;

    fn stored(fingerprint: &str, response: Option<SavedResponse>, age: u64) -> Stored {
        Stored { fingerprint: fingerprint.into(), response, created_at: NOW - age, leased_at: Some(NOW - age) }
    }

    fn ok() -> SavedResponse {
        SavedResponse { status: 200, body: "{\"message_id\":\"msg_1\"}".into() }
    }

    #[test]
    fn same_key_and_body_replays_the_response() {
        assert_eq!(decide(None, "a", NOW, LEASE), Decision::Proceed);
        assert_eq!(decide(Some(&stored("a", Some(ok()), 1000)), "a", NOW, LEASE), Decision::Replay(ok()));
    }

    #[test]
    fn a_different_body_is_refused_even_while_in_flight() {
        assert_eq!(decide(Some(&stored("a", Some(ok()), 1000)), "b", NOW, LEASE), Decision::Mismatch);
        assert_eq!(decide(Some(&stored("a", None, 1000)), "b", NOW, LEASE), Decision::Mismatch);
    }

    #[test]
    fn concurrent_duplicates_wait_and_dead_attempts_are_retried() {
        assert_eq!(decide(Some(&stored("a", None, 1000)), "a", NOW, LEASE), Decision::InFlight);
        assert_eq!(decide(Some(&stored("a", None, LEASE)), "a", NOW, LEASE), Decision::Proceed);
        assert_eq!(decide(Some(&stored("a", None, 10)), "a", NOW, 5), Decision::Proceed, "the lease is configurable");
    }

    #[test]
    fn a_failed_attempt_frees_the_key_at_once() {
        let released = Stored { leased_at: None, ..stored("a", None, 10) };
        assert_eq!(decide(Some(&released), "a", NOW, LEASE), Decision::Proceed);
        assert_eq!(decide(Some(&released), "b", NOW, LEASE), Decision::Mismatch, "still bound to its body");
    }

    #[test]
    fn keys_are_forgotten_after_24_hours() {
        assert_eq!(decide(Some(&stored("a", Some(ok()), RETENTION_MS - 1)), "a", NOW, LEASE), Decision::Replay(ok()));
        assert_eq!(decide(Some(&stored("a", Some(ok()), RETENTION_MS)), "b", NOW, LEASE), Decision::Proceed);
    }

    #[test]
    fn fingerprints_bind_route_and_body() {
        assert_eq!(fingerprint("/a", b"{}"), fingerprint("/a", b"{}"));
        assert_ne!(fingerprint("/a", b"{}"), fingerprint("/b", b"{}"));
        assert_ne!(fingerprint("/a", b"{}"), fingerprint("/a", b"{ }"));
    }
}
