//! One-time-code sessions, one object per app and phone (named by `domain::otp::phone_key`,
//! which a session id carries, see `domain::otp::phone_key_of`).

use serde::{Deserialize, Serialize};

use crate::domain::ids::AppId;
use crate::domain::otp::Verdict;

crate::protocol! {
    /// The `OTPS` namespace.
    Otp = "OTPS", OtpOp, OtpHandler {
        Start(StartSession) -> Started => start,
        /// The code could not be sent: the session and its send record go; earlier codes stay valid.
        Cancel(CancelSession) -> () => cancel,
        /// The code is queued for sending: every earlier code for this phone stops working.
        Accepted(SessionAccepted) -> () => accepted,
        Verify(VerifyCode) -> Verified => verify,
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StartSession {
    pub session_id: String,
    pub app_id: AppId,
    /// International number, digits only.
    pub phone: String,
    /// The code's keyed hash (`domain::otp::hash_code`); the code itself never reaches the object.
    pub code_hash: Vec<u8>,
    pub expires_at: u64,
    pub resend_cooldown_ms: u64,
    pub hourly_cap: usize,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CancelSession {
    pub session_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SessionAccepted {
    pub session_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct VerifyCode {
    pub session_id: String,
    pub app_id: AppId,
    pub code: String,
    pub now: u64,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Started {
    Started,
    Throttled { retry_after_secs: u64 },
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    pub verdict: Verdict,
    /// Empty for a session that is not found.
    pub phone: String,
    pub verified_at: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, encode};

    fn app() -> AppId {
        AppId::parse("app_0123456789abcdef").unwrap()
    }

    #[test]
    fn operations_keep_their_wire_form() {
        let verify = OtpOp::from(VerifyCode { session_id: "s-1".into(), app_id: app(), code: "1234".into(), now: 5 });
        assert_eq!(
            serde_json::to_string(&verify).unwrap(),
            r#"{"op":"verify","session_id":"s-1","app_id":"app_0123456789abcdef","code":"1234","now":5}"#
        );
        let accepted = OtpOp::from(SessionAccepted { session_id: "s-1".into() });
        assert_eq!(serde_json::to_string(&accepted).unwrap(), r#"{"op":"accepted","session_id":"s-1"}"#);
        let start: OtpOp = serde_json::from_str(
            r#"{"op":"start","session_id":"s-1","app_id":"app_0123456789abcdef","phone":"628123",
                "code_hash":[1,2],"expires_at":9,"resend_cooldown_ms":30000,"hourly_cap":5,"now":1}"#,
        )
        .unwrap();
        assert!(matches!(start, OtpOp::Start(StartSession { code_hash, hourly_cap: 5, .. }) if code_hash == [1, 2]));
        assert!(matches!(
            serde_json::from_str(r#"{"op":"cancel","session_id":"s-2"}"#).unwrap(),
            OtpOp::Cancel(CancelSession { session_id }) if session_id == "s-2"
        ));
    }

    #[test]
    fn answers_keep_their_wire_form() {
        let throttled = Started::Throttled { retry_after_secs: 30 };
        assert_eq!(
            String::from_utf8(encode(&Ok(throttled))).unwrap(),
            r#"{"Ok":{"outcome":"throttled","retry_after_secs":30}}"#
        );
        assert_eq!(decode::<StartSession>("OTPS", br#"{"Ok":{"outcome":"started"}}"#).unwrap(), Started::Started);
        let wrong =
            Verified { verdict: Verdict::InvalidCode { attempts_left: 2 }, phone: "628".into(), verified_at: None };
        let bytes = encode(&Ok(wrong));
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"Ok":{"verdict":{"invalid_code":{"attempts_left":2}},"phone":"628","verified_at":null}}"#
        );
        assert_eq!(decode::<VerifyCode>("OTPS", &bytes).unwrap().verdict, Verdict::InvalidCode { attempts_left: 2 });
        // Nothing to answer is `null`, as the untyped calls answered.
        assert_eq!(encode::<()>(&Ok(())), br#"{"Ok":null}"#);
        decode::<CancelSession>("OTPS", br#"{"Ok":null}"#).unwrap();
    }
}
