//! LoginWA's answers of `POST /api/auth/start` and `POST /api/auth/verify` (its refusals are
//! errors, see `loginwa::error`).

use serde_json::{json, Value};

use crate::protocol::otp::Verified;

/// A code is on its way; `debug_code` is shown only outside production.
pub fn started(session_id: &str, expires_in_secs: u64, debug_code: Option<&str>) -> Value {
    json!({"session_id": session_id, "expires_in": expires_in_secs, "debug_code": debug_code})
}

/// The code matched.
pub fn verified(outcome: &Verified, iso: impl Fn(u64) -> String) -> Value {
    json!({"status": "verified", "phone_number": outcome.phone, "verified_at": outcome.verified_at.map(iso)})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::otp::Verdict;

    #[test]
    fn start_answers_as_the_reference() {
        let body = started("3bbaaf0b-3c11-44a2-8a7e-4edc426c5fcd", 300, Some("482913"));
        assert_eq!(
            body.to_string(),
            r#"{"debug_code":"482913","expires_in":300,"session_id":"3bbaaf0b-3c11-44a2-8a7e-4edc426c5fcd"}"#
        );
        assert_eq!(started("s", 60, None)["debug_code"], Value::Null, "present, null in production");
    }

    #[test]
    fn verify_answers_as_the_reference() {
        let outcome = Verified { verdict: Verdict::Verified, phone: "6281234567890".into(), verified_at: Some(1_000) };
        assert_eq!(
            verified(&outcome, |ms| format!("t{ms}")).to_string(),
            r#"{"phone_number":"6281234567890","status":"verified","verified_at":"t1000"}"#
        );
    }
}
