//! The outbound message lifecycle: QUEUED → SENDING → SENT → DELIVERED → READ, or FAILED.
//! An inbound message is RECEIVED, and stays so.

use serde::{Deserialize, Serialize};

/// WhatsApp's limit for a text body, which both references adopt.
pub const TEXT_MAX_CHARS: usize = 4096;

/// How long a LoginWA send waits for WhatsApp to take or refuse its message (`SEND_WAIT_MS`):
/// the reference answers 200 once sent and 502 `send_failed` when refused. Codes and direct
/// sends are at the head of the queue, so the wait is one send's round trip, well within this.
pub const DEFAULT_SEND_WAIT_MS: u64 = 10_000;
/// The most `SEND_WAIT_MS` may ask: clients and proxies commonly give up on a request at 30 s,
/// and an answer "queued" (200) at the bound is worth more to them than none.
pub const MAX_SEND_WAIT_MS: u64 = 25_000;

/// `SEND_WAIT_MS` as a wait in ms (0: answer once queued, as SPWP does); unset is the default.
/// A value that is not a whole number of ms, or above the maximum, is refused with the reason,
/// for the caller to log and fall back to the default: a typo in a setting must not take sends down.
pub fn send_wait_ms(setting: Option<&str>) -> Result<u64, String> {
    let Some(raw) = setting.map(str::trim) else { return Ok(DEFAULT_SEND_WAIT_MS) };
    match raw.parse::<u64>() {
        Ok(ms) if ms <= MAX_SEND_WAIT_MS => Ok(ms),
        Ok(ms) => Err(format!("SEND_WAIT_MS={ms} is above the maximum of {MAX_SEND_WAIT_MS}")),
        Err(_) => Err(format!("SEND_WAIT_MS={raw:?} is not a whole number of milliseconds")),
    }
}

/// Which queued message a number sends first: lower goes first, then oldest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// One-time codes: someone is waiting at a login screen.
    Otp,
    #[default]
    Normal,
    /// Campaign traffic: direct sends and codes go first.
    Bulk,
}

impl Priority {
    pub fn rank(self) -> u64 {
        match self {
            Self::Otp => 0,
            Self::Normal => 1,
            Self::Bulk => 2,
        }
    }
}

/// Whether the app sent a message or one of its numbers received it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    In,
    #[default]
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::In => "in",
            Self::Out => "out",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::In, Self::Out].into_iter().find(|d| d.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
    /// Inbound: someone sent it to the number. No report moves it.
    Received,
}

impl MessageStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Read | Self::Failed | Self::Received)
    }

    /// Whether WhatsApp has decided on the message: it took it (SENT or later) or refused it.
    pub fn is_settled(self) -> bool {
        !matches!(self, Self::Queued | Self::Sending)
    }

    fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Sending => 1,
            Self::Sent => 2,
            Self::Delivered => 3,
            Self::Read => 4,
            Self::Failed => 5,
            Self::Received => 6,
        }
    }

    /// Whether a status report may move a message from `self` to `next`.
    /// Reports can arrive late, twice or out of order (a read receipt before the
    /// delivery receipt), so a status only ever moves forward; FAILED is reachable
    /// only before WhatsApp accepted the message, and nothing leaves it.
    /// `Sending → Queued` is the one step back: a send attempt that did not reach
    /// WhatsApp (device offline, bridge unreachable) is retried later.
    pub fn can_become(self, next: Self) -> bool {
        match (self, next) {
            (Self::Received, _) | (_, Self::Received) => false,
            (Self::Sending, Self::Queued) => true,
            (Self::Failed, _) | (_, Self::Queued) => false,
            (Self::Queued | Self::Sending, Self::Failed) => true,
            (_, Self::Failed) => false,
            _ => next.rank() > self.rank(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Sending => "SENDING",
            Self::Sent => "SENT",
            Self::Delivered => "DELIVERED",
            Self::Read => "READ",
            Self::Failed => "FAILED",
            Self::Received => "RECEIVED",
        }
    }

    /// LoginWA's spelling: the reference writes statuses in lowercase (`sent`, `delivered`).
    pub fn as_lowercase(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Received => "received",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Sending, Self::Sent, Self::Delivered, Self::Read, Self::Failed, Self::Received]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::MessageStatus::*;
    use super::*;

    #[test]
    fn moves_forward_only() {
        assert!(Queued.can_become(Sending));
        assert!(Sending.can_become(Sent));
        assert!(Sent.can_become(Read), "a read receipt may overtake the delivery receipt");
        assert!(!Read.can_become(Delivered));
        assert!(!Delivered.can_become(Sent));
        assert!(!Sent.can_become(Sent), "duplicates are no-ops");
    }

    #[test]
    fn failure_is_terminal_and_only_before_sent() {
        assert!(Queued.can_become(Failed));
        assert!(Sending.can_become(Failed));
        assert!(!Sent.can_become(Failed));
        for next in [Queued, Sending, Sent, Delivered, Read, Failed] {
            assert!(!Failed.can_become(next));
        }
    }

    #[test]
    fn a_received_message_never_moves() {
        for other in [Queued, Sending, Sent, Delivered, Read, Failed] {
            assert!(!Received.can_become(other) && !other.can_become(Received), "{other:?}");
        }
        assert_eq!(MessageStatus::parse("RECEIVED"), Some(Received));
        assert!(Received.is_terminal());
    }

    #[test]
    fn only_an_unfinished_attempt_goes_back_to_the_queue() {
        assert!(Sending.can_become(Queued));
        assert!(!Sent.can_become(Queued));
        assert!(!Queued.can_become(Queued));
    }

    #[test]
    fn codes_go_before_everything_else() {
        assert!(Priority::Otp.rank() < Priority::Normal.rank());
        assert_eq!(Priority::default(), Priority::Normal);
    }

    #[test]
    fn names_round_trip() {
        for s in [Queued, Sending, Sent, Delivered, Read, Failed] {
            assert_eq!(MessageStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(s.as_lowercase(), s.as_str().to_ascii_lowercase());
        }
        assert!(Read.is_terminal() && Failed.is_terminal() && !Delivered.is_terminal());
    }

    #[test]
    fn a_message_is_settled_once_whatsapp_took_or_refused_it() {
        assert!(!Queued.is_settled() && !Sending.is_settled());
        assert!([Sent, Delivered, Read, Failed].iter().all(|s| s.is_settled()));
    }

    #[test]
    fn the_send_wait_setting_falls_back_on_nonsense() {
        assert_eq!(send_wait_ms(None), Ok(DEFAULT_SEND_WAIT_MS));
        assert_eq!(send_wait_ms(Some("0")), Ok(0), "0 answers once queued");
        assert_eq!(send_wait_ms(Some(" 1500 ")), Ok(1500));
        assert_eq!(send_wait_ms(Some("25000")), Ok(MAX_SEND_WAIT_MS));
        for bad in ["", "-1", "1.5", "10s", "25001", "99999999999999999999999"] {
            assert!(send_wait_ms(Some(bad)).unwrap_err().contains("SEND_WAIT_MS"), "{bad:?}");
        }
    }
}
