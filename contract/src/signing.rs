//! HMAC-SHA256 request signing used in both directions between worker and bridge.
//!
//! The signed string binds the timestamp, method, path (with query) and raw body,
//! so a captured request cannot be replayed later, sent to another route or
//! altered. Idempotency by message/event id covers replays inside the window.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TIMESTAMP_HEADER: &str = "x-wagate-timestamp";
pub const SIGNATURE_HEADER: &str = "x-wagate-signature";

/// How far a request's timestamp may be from the receiver's clock.
pub const MAX_SKEW_SECS: u64 = 300;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    MalformedTimestamp,
    Stale,
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Missing => "signature or timestamp header missing",
            Self::MalformedTimestamp => "timestamp header is not a number",
            Self::Stale => "timestamp outside the allowed window",
            Self::Mismatch => "signature does not match",
        })
    }
}

impl std::error::Error for SignatureError {}

fn mac(secret: &[u8], ts_secs: u64, method: &str, path: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(ts_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(method.as_bytes());
    mac.update(b".");
    mac.update(path.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Hex signature for a request; sent in [`SIGNATURE_HEADER`] next to `ts_secs` in [`TIMESTAMP_HEADER`].
pub fn sign(secret: &[u8], ts_secs: u64, method: &str, path: &str, body: &[u8]) -> String {
    hex::encode(mac(secret, ts_secs, method, path, body).finalize().into_bytes())
}

/// A request's signature headers, read and checked for what can be checked without its body:
/// present, a fresh timestamp, a signature of the right shape. A receiver refuses anything else
/// before reading the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    ts_secs: u64,
    signature: Vec<u8>,
}

impl Presented {
    pub fn read(timestamp: Option<&str>, signature: Option<&str>, now_secs: u64) -> Result<Self, SignatureError> {
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
            return Err(SignatureError::Missing);
        };
        let ts_secs: u64 = timestamp.trim().parse().map_err(|_| SignatureError::MalformedTimestamp)?;
        if ts_secs.abs_diff(now_secs) > MAX_SKEW_SECS {
            return Err(SignatureError::Stale);
        }
        let signature = hex::decode(signature.trim()).map_err(|_| SignatureError::Mismatch)?;
        if signature.len() != 32 {
            return Err(SignatureError::Mismatch);
        }
        Ok(Self { ts_secs, signature })
    }

    /// Checks the signature against the method, path and body, in constant time (`Mac::verify_slice`).
    pub fn verify(&self, secret: &[u8], method: &str, path: &str, body: &[u8]) -> Result<(), SignatureError> {
        mac(secret, self.ts_secs, method, path, body)
            .verify_slice(&self.signature)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// Checks a received request's headers against its method, path and body.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    now_secs: u64,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(), SignatureError> {
    Presented::read(timestamp, signature, now_secs)?.verify(secret, method, path, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"bridge-secret";
    const NOW: u64 = 1_780_000_000;

    fn check(sig: &str, ts: u64, method: &str, path: &str, body: &[u8]) -> Result<(), SignatureError> {
        verify(SECRET, Some(&ts.to_string()), Some(sig), NOW, method, path, body)
    }

    #[test]
    fn round_trip_verifies() {
        let sig = sign(SECRET, NOW, "POST", "/v1/devices/dev_a/messages", b"{}");
        assert_eq!(check(&sig, NOW, "POST", "/v1/devices/dev_a/messages", b"{}"), Ok(()));
    }

    #[test]
    fn any_tampering_is_rejected() {
        let sig = sign(SECRET, NOW, "POST", "/v1/x", b"{\"a\":1}");
        assert_eq!(check(&sig, NOW, "POST", "/v1/x", b"{\"a\":2}"), Err(SignatureError::Mismatch));
        assert_eq!(check(&sig, NOW, "PUT", "/v1/x", b"{\"a\":1}"), Err(SignatureError::Mismatch));
        assert_eq!(check(&sig, NOW, "POST", "/v1/y", b"{\"a\":1}"), Err(SignatureError::Mismatch));
        assert_eq!(check(&sig, NOW - 1, "POST", "/v1/x", b"{\"a\":1}"), Err(SignatureError::Mismatch));
        let other = sign(b"other", NOW, "POST", "/v1/x", b"{\"a\":1}");
        assert_eq!(check(&other, NOW, "POST", "/v1/x", b"{\"a\":1}"), Err(SignatureError::Mismatch));
        assert_eq!(check("zz-not-hex", NOW, "POST", "/v1/x", b"{\"a\":1}"), Err(SignatureError::Mismatch));
        assert_eq!(check(&sig[..62], NOW, "POST", "/v1/x", b"{\"a\":1}"), Err(SignatureError::Mismatch), "short");
    }

    #[test]
    fn stale_and_missing_headers_are_rejected() {
        let old = NOW - MAX_SKEW_SECS - 1;
        let sig = sign(SECRET, old, "GET", "/", b"");
        assert_eq!(check(&sig, old, "GET", "/", b""), Err(SignatureError::Stale));
        let future = NOW + MAX_SKEW_SECS + 1;
        let sig = sign(SECRET, future, "GET", "/", b"");
        assert_eq!(check(&sig, future, "GET", "/", b""), Err(SignatureError::Stale));
        assert_eq!(verify(SECRET, None, Some("00"), NOW, "GET", "/", b""), Err(SignatureError::Missing));
        assert_eq!(
            verify(SECRET, Some("soon"), Some("00"), NOW, "GET", "/", b""),
            Err(SignatureError::MalformedTimestamp)
        );
    }

    #[test]
    fn headers_are_judged_without_the_body() {
        let sig = sign(SECRET, NOW, "POST", "/v1/x", b"body");
        assert!(Presented::read(Some(&NOW.to_string()), Some(&sig), NOW).is_ok());
        assert_eq!(Presented::read(Some(&NOW.to_string()), None, NOW), Err(SignatureError::Missing));
        assert_eq!(Presented::read(Some("1"), Some(&sig), NOW), Err(SignatureError::Stale));
        assert_eq!(Presented::read(Some(&NOW.to_string()), Some("00ff"), NOW), Err(SignatureError::Mismatch));
    }
}
