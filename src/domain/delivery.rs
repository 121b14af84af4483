//! A webhook delivery's life: pending until an attempt claims it, then succeeded, retried on
//! the Standard Webhooks schedule (`webhook::retry_delay_ms`) or kept as failed for replay; an
//! endpoint failing without a break for too long is switched off; a regenerated secret leaves
//! the old one signing alongside it for a grace period where the format carries two signatures.

use serde::{Deserialize, Serialize};

use super::webhook;

/// As stored in `deliveries.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    /// Claimed by an attempt under way, until its lease runs out.
    InFlight,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::InFlight => "in_flight",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::InFlight, Self::Succeeded, Self::Failed].into_iter().find(|st| st.as_str() == s)
    }

    /// What clients see: an attempt under way is still pending to them.
    pub fn shown(self) -> Self {
        match self {
            Self::InFlight => Self::Pending,
            other => other,
        }
    }
}

/// The old secret keeps signing alongside a regenerated one for this long.
pub const ROTATION_GRACE_MS: u64 = 24 * 60 * 60 * 1000;

/// Until when the secret an endpoint of `format` replaced at `now` still signs; `None` when the
/// new one takes over at once (LoginWA: `webhook::Format::signs_with_previous_secret`). A second
/// rotation within the grace replaces the previous secret: only the one just replaced goes on
/// signing.
pub fn previous_until(format: webhook::Format, now: u64) -> Option<u64> {
    format.signs_with_previous_secret().then_some(now + ROTATION_GRACE_MS)
}

/// Whether the replaced secret still signs at `now`.
pub fn previous_signs(previous_until: Option<u64>, now: u64) -> bool {
    previous_until.is_some_and(|until| until > now)
}

/// Where a delivery goes after its `attempts`-th attempt (counting this one): `retry_count`
/// retries follow the first attempt, then a failure is kept. `jitter` in [-1, 1]; `scale`
/// compresses the schedule for tests.
pub fn settle(ok: bool, attempts: i64, retry_count: i64, now: u64, jitter: f64, scale: f64) -> (DeliveryStatus, u64) {
    match ok {
        true => (DeliveryStatus::Succeeded, now),
        false if attempts > retry_count => (DeliveryStatus::Failed, now),
        false => {
            let attempt = u32::try_from(attempts).unwrap_or(u32::MAX);
            let delay = webhook::retry_delay_ms(attempt, jitter) as f64 * scale;
            (DeliveryStatus::Pending, now + delay as u64)
        }
    }
}

/// Whether a failed attempt at `now` switches the endpoint off: it has failed without a break
/// since `since` (its last success, else its creation) for at least `disable_after_ms`.
pub fn disables(ok: bool, since: u64, now: u64, disable_after_ms: u64) -> bool {
    !ok && now.saturating_sub(since) >= disable_after_ms
}

/// The failed deliveries a bulk replay starts over: those created at or after `since` (all of
/// them without it).
pub fn replays(status: DeliveryStatus, created_at: u64, since: Option<u64>) -> bool {
    status == DeliveryStatus::Failed && created_at >= since.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_their_stored_names_and_in_flight_shows_as_pending() {
        for status in
            [DeliveryStatus::Pending, DeliveryStatus::InFlight, DeliveryStatus::Succeeded, DeliveryStatus::Failed]
        {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        assert_eq!(DeliveryStatus::InFlight.shown(), DeliveryStatus::Pending);
        assert_eq!(DeliveryStatus::Failed.shown(), DeliveryStatus::Failed);
        assert_eq!(DeliveryStatus::parse("PENDING"), None);
    }

    #[test]
    fn a_failure_is_retried_on_schedule_until_the_retries_are_spent() {
        assert_eq!(settle(true, 1, 3, 10, 0.0, 1.0), (DeliveryStatus::Succeeded, 10));
        assert_eq!(settle(false, 1, 3, 10, 0.0, 1.0), (DeliveryStatus::Pending, 10 + 5_000));
        assert_eq!(settle(false, 2, 3, 10, 0.0, 0.001), (DeliveryStatus::Pending, 10 + 300));
        assert_eq!(settle(false, 4, 3, 10, 0.0, 1.0), (DeliveryStatus::Failed, 10), "three retries after the first");
        assert_eq!(settle(false, 1, 0, 10, 0.0, 1.0), (DeliveryStatus::Failed, 10), "no retries at all");
        let (_, far) = settle(false, i64::MAX - 1, i64::MAX, 0, 1.0, 1.0);
        assert_eq!(far, 39_600_000, "a huge attempt count stays on the last step");
    }

    #[test]
    fn an_endpoint_is_switched_off_only_by_a_failure_past_the_limit() {
        assert!(disables(false, 0, 100, 100));
        assert!(!disables(false, 0, 99, 100));
        assert!(!disables(true, 0, 1_000, 100), "a success never disables");
        assert!(!disables(false, 200, 100, 100), "a clock behind the last success is no failure streak");
    }

    #[test]
    fn a_replaced_secret_signs_through_its_grace_only() {
        use webhook::Format::{Loginwa, Spwp, Standard};
        let until = previous_until(Spwp, 1_000).unwrap();
        assert!(previous_signs(Some(until), until - 1));
        assert!(!previous_signs(Some(until), until));
        assert!(!previous_signs(None, 0));
        // Rotating twice within the grace: the second replaces the first's new secret, whose
        // grace starts afresh; the original stops signing then.
        assert_eq!(previous_until(Spwp, 2_000), Some(until + 1_000));
        assert_eq!(previous_until(Standard, 1_000), Some(until));
        assert_eq!(previous_until(Loginwa, 1_000), None, "one hex signature: the new secret takes over at once");
    }

    #[test]
    fn a_bulk_replay_takes_failures_from_since_on() {
        assert!(replays(DeliveryStatus::Failed, 5, None));
        assert!(replays(DeliveryStatus::Failed, 5, Some(5)));
        assert!(!replays(DeliveryStatus::Failed, 5, Some(6)));
        assert!(!replays(DeliveryStatus::Failed, 5, Some(u64::MAX)), "a huge since replays nothing");
        assert!(!replays(DeliveryStatus::Pending, 5, None));
        assert!(!replays(DeliveryStatus::Succeeded, 5, None));
    }
}
