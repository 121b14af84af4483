//! The outbound message lifecycle: QUEUED → SENDING → SENT → DELIVERED → READ, or FAILED.

use serde::{Deserialize, Serialize};

/// WhatsApp's limit for a text body, which both references adopt.
pub const TEXT_MAX_CHARS: usize = 4096;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageStatus {
    Queued,
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl MessageStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Read | Self::Failed)
    }

    fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Sending => 1,
            Self::Sent => 2,
            Self::Delivered => 3,
            Self::Read => 4,
            Self::Failed => 5,
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
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Queued, Self::Sending, Self::Sent, Self::Delivered, Self::Read, Self::Failed]
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
}
