//! The failed-authentication budgets, one object per client address (an IPv6 client's /64,
//! named by `domain::allowlist::budget_subject`).

use serde::{Deserialize, Serialize};

use crate::domain::ratelimit::Throttle;

crate::protocol! {
    /// The `GUARDS` namespace.
    Guard = "GUARDS", GuardOp, GuardHandler {
        /// Counts one failed authentication; answers whether the address is now throttled.
        Failed(AuthFailed) -> Throttle => failed,
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AuthFailed {
    /// The budget: failures allowed per minute.
    pub per_minute: u64,
    pub now: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, encode};

    #[test]
    fn operations_keep_their_wire_form() {
        let op = GuardOp::from(AuthFailed { per_minute: 20, now: 7 });
        assert_eq!(serde_json::to_string(&op).unwrap(), r#"{"op":"failed","per_minute":20,"now":7}"#);
        let back: GuardOp = serde_json::from_str(r#"{"op":"failed","per_minute":3,"now":9}"#).unwrap();
        assert!(matches!(back, GuardOp::Failed(AuthFailed { per_minute: 3, now: 9 })));
    }

    #[test]
    fn the_throttle_crosses_the_stub_as_it_left() {
        let throttle = Throttle { retry_after_secs: Some(2), spent_for_secs: Some(2) };
        assert_eq!(
            String::from_utf8(encode(&Ok(throttle))).unwrap(),
            r#"{"Ok":{"retry_after_secs":2,"spent_for_secs":2}}"#
        );
        assert_eq!(decode::<AuthFailed>("GUARDS", &encode(&Ok(throttle))).unwrap(), throttle);
    }
}
