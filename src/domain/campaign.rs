//! Broadcast campaigns: the status state machine, progress as the LoginWA reference counts it,
//! and the ban-risk governor's rules (jittered delays, warm-up caps for new numbers, auto-pause
//! on failures, opt-out keywords). Pure: times and randomness are handed in.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    Draft,
    Queued,
    Sending,
    Paused,
    Completed,
    Failed,
}

impl CampaignStatus {
    pub const ALL: [Self; 6] = [Self::Draft, Self::Queued, Self::Sending, Self::Paused, Self::Completed, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Created with a `schedule_at`: waits for it.
    Schedule,
    /// The client starts it (`POST …/send`).
    Send,
    /// The scheduled time came.
    Start,
    Pause,
    /// The governor stopped it (device offline, failures, quota).
    AutoPause,
    Resume,
    /// Every contact reached a final state.
    Complete,
    Fail,
    Delete,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Self::Schedule => "schedule",
            Self::Send => "send",
            Self::Start => "start",
            Self::Pause | Self::AutoPause => "pause",
            Self::Resume => "resume",
            Self::Complete => "complete",
            Self::Fail => "fail",
            Self::Delete => "delete",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionError {
    pub from: CampaignStatus,
    pub action: Action,
}

impl std::fmt::Display for TransitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.action, self.from) {
            (Action::Delete, CampaignStatus::Sending) => {
                f.write_str("A campaign cannot be deleted while it is sending: pause it first")
            }
            (Action::Send, CampaignStatus::Paused) => f.write_str("The campaign is paused: resume it instead"),
            (action, from) => write!(f, "A campaign that is {} cannot {}", from.as_str(), action.verb()),
        }
    }
}

/// The one place that says which status changes are allowed.
pub fn transition(from: CampaignStatus, action: Action) -> Result<CampaignStatus, TransitionError> {
    use Action as A;
    use CampaignStatus as S;
    let to = match (from, action) {
        (S::Draft, A::Schedule) => S::Queued,
        (S::Draft | S::Queued, A::Send) => S::Sending,
        (S::Queued, A::Start) => S::Sending,
        (S::Sending | S::Queued, A::Pause) => S::Paused,
        (S::Sending, A::AutoPause) => S::Paused,
        (S::Paused, A::Resume) => S::Sending,
        (S::Sending, A::Complete) => S::Completed,
        (S::Sending | S::Queued, A::Fail) => S::Failed,
        (S::Draft | S::Queued | S::Paused | S::Completed | S::Failed, A::Delete) => from,
        _ => return Err(TransitionError { from, action }),
    };
    Ok(to)
}

/// Progress as the reference counts it: `sent` includes what was since delivered or read,
/// `delivered` includes read, `pending` is what has not gone out yet; the percentage is the
/// share that went out or failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub total: u64,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub pending: u64,
}

impl Progress {
    pub fn percentage(&self) -> f64 {
        if self.total == 0 {
            return 100.0;
        }
        ((self.sent + self.failed) as f64 * 1000.0 / self.total as f64).round() / 10.0
    }

    pub fn finished(&self) -> bool {
        self.pending == 0
    }
}

/// The wait before the next contact: `delay_seconds` ± 30 %, so sends are not a metronome,
/// never below the device's pace. `unit` is a uniform random number in [0, 1).
pub fn jittered_delay_ms(delay_seconds: u32, pace_ms: u64, unit: f64) -> u64 {
    let base = f64::from(delay_seconds) * 1000.0;
    let delay = base * (0.7 + 0.6 * unit.clamp(0.0, 1.0));
    (delay as u64).max(pace_ms)
}

pub fn estimated_duration_secs(contacts: usize, delay_seconds: u32) -> u64 {
    contacts as u64 * u64::from(delay_seconds)
}

/// "15 seconds", "4 minutes", "3 hours": how the reference words `estimated_duration`.
pub fn humanize_secs(secs: u64) -> String {
    let (n, unit) = match secs {
        0..120 => (secs, "second"),
        120..7200 => (secs.div_ceil(60), "minute"),
        _ => (secs.div_ceil(3600), "hour"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// How much campaign traffic a newly linked number may carry per day while it warms up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmUp {
    pub first_day_cap: u64,
    pub growth_percent: u64,
    /// Once a day's cap would exceed this, the number is uncapped.
    pub uncapped_after: u64,
}

impl Default for WarmUp {
    fn default() -> Self {
        Self { first_day_cap: 200, growth_percent: 50, uncapped_after: 5000 }
    }
}

impl WarmUp {
    /// Days since linking, counted in 24 h steps from the link time.
    pub fn day(linked_at_ms: u64, now_ms: u64) -> u64 {
        now_ms.saturating_sub(linked_at_ms) / DAY_MS
    }

    /// The cap of the day `now` falls in, `None` once uncapped. Computed from the day number in
    /// one step, so a small cap with slow growth still grows (no rounding at every step).
    pub fn daily_cap(&self, linked_at_ms: u64, now_ms: u64) -> Option<u64> {
        let day = i32::try_from(Self::day(linked_at_ms, now_ms)).unwrap_or(i32::MAX);
        let cap = self.first_day_cap as f64 * (1.0 + self.growth_percent as f64 / 100.0).powi(day);
        (cap <= self.uncapped_after as f64).then_some(cap as u64)
    }

    /// When the next day's allowance starts.
    pub fn next_day_start_ms(linked_at_ms: u64, now_ms: u64) -> u64 {
        linked_at_ms + (Self::day(linked_at_ms, now_ms) + 1) * DAY_MS
    }
}

/// Recent send outcomes looked at, the fewest that may trip, and the failure share that does.
pub const FAILURE_WINDOW: usize = 20;
pub const FAILURE_MIN_SAMPLES: usize = 10;
pub const FAILURE_THRESHOLD: f64 = 0.5;

/// Whether recent outcomes (`true` = failed, newest last) say the number is in trouble.
pub fn failure_rate_trips(recent: &[bool]) -> bool {
    let window = &recent[recent.len().saturating_sub(FAILURE_WINDOW)..];
    window.len() >= FAILURE_MIN_SAMPLES
        && window.iter().filter(|failed| **failed).count() as f64 / window.len() as f64 >= FAILURE_THRESHOLD
}

pub const DEFAULT_OPT_OUT_KEYWORDS: [&str; 5] = ["STOP", "STOP ALL", "UNSUBSCRIBE", "BERHENTI", "STOP PROMO"];

/// Whether an inbound text is an opt-out: the whole message is a keyword, ignoring case,
/// surrounding space and whatever trails it that is not a letter or digit: punctuation of any
/// script, emoji ("stop", " Stop! ", "STOP！", "stop 🙏"; not "don't stop").
pub fn is_opt_out(text: &str, keywords: &[String]) -> bool {
    let said = text.trim().trim_end_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
    !said.is_empty() && keywords.iter().any(|k| k.trim().to_lowercase() == said)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action as A;
    use CampaignStatus as S;

    #[test]
    fn every_transition_is_as_the_table_says() {
        let allowed = [
            (S::Draft, A::Schedule, S::Queued),
            (S::Draft, A::Send, S::Sending),
            (S::Queued, A::Send, S::Sending),
            (S::Queued, A::Start, S::Sending),
            (S::Sending, A::Pause, S::Paused),
            (S::Queued, A::Pause, S::Paused),
            (S::Sending, A::AutoPause, S::Paused),
            (S::Paused, A::Resume, S::Sending),
            (S::Sending, A::Complete, S::Completed),
            (S::Sending, A::Fail, S::Failed),
            (S::Queued, A::Fail, S::Failed),
            (S::Draft, A::Delete, S::Draft),
            (S::Queued, A::Delete, S::Queued),
            (S::Paused, A::Delete, S::Paused),
            (S::Completed, A::Delete, S::Completed),
            (S::Failed, A::Delete, S::Failed),
        ];
        let actions =
            [A::Schedule, A::Send, A::Start, A::Pause, A::AutoPause, A::Resume, A::Complete, A::Fail, A::Delete];
        for from in S::ALL {
            for action in actions {
                let expected = allowed.iter().find(|(f, a, _)| *f == from && *a == action).map(|(_, _, to)| *to);
                assert_eq!(transition(from, action).ok(), expected, "{from:?} {action:?}");
            }
        }
    }

    #[test]
    fn refusals_say_what_to_do() {
        let sending = transition(S::Sending, A::Delete).unwrap_err().to_string();
        assert!(sending.contains("pause it first"), "{sending}");
        assert_eq!(
            transition(S::Completed, A::Pause).unwrap_err().to_string(),
            "A campaign that is completed cannot pause"
        );
        assert!(transition(S::Paused, A::Send).unwrap_err().to_string().contains("resume"));
        assert_eq!(S::parse("paused"), Some(S::Paused));
        assert_eq!(S::parse("nope"), None);
    }

    #[test]
    fn progress_counts_as_the_reference() {
        // The reference's example: 3 contacts, 2 sent of which 1 delivered, 1 pending.
        let p = Progress { total: 3, sent: 2, delivered: 1, failed: 0, pending: 1 };
        assert_eq!(p.percentage(), 66.7);
        assert!(!p.finished());
        assert_eq!(Progress { total: 3, sent: 2, failed: 1, ..Default::default() }.percentage(), 100.0);
    }

    #[test]
    fn delays_jitter_around_the_setting_and_respect_the_pace() {
        assert_eq!(jittered_delay_ms(5, 250, 0.0), 3500);
        assert_eq!(jittered_delay_ms(5, 250, 0.5), 5000);
        assert_eq!(jittered_delay_ms(5, 250, 0.999_999), 6499);
        assert_eq!(jittered_delay_ms(1, 2000, 0.5), 2000, "never faster than the device's pace");
        assert_eq!(estimated_duration_secs(3, 5), 15);
        assert_eq!(humanize_secs(15), "15 seconds");
        assert_eq!(humanize_secs(1), "1 second");
        assert_eq!(humanize_secs(50_000 * 5 / 100), "42 minutes");
        assert_eq!(humanize_secs(10_000 * 5), "14 hours");
    }

    #[test]
    fn new_numbers_warm_up_day_by_day() {
        let w = WarmUp::default();
        let linked = 1_000;
        let caps: Vec<Option<u64>> = (0..10).map(|day| w.daily_cap(linked, linked + day * DAY_MS + 5)).collect();
        assert_eq!(
            caps,
            [Some(200), Some(300), Some(450), Some(675), Some(1012), Some(1518), Some(2278), Some(3417), None, None]
        );
        assert_eq!(WarmUp::next_day_start_ms(linked, linked + 5), linked + DAY_MS);
        assert_eq!(WarmUp::next_day_start_ms(linked, linked + DAY_MS), linked + 2 * DAY_MS);
        let flat = WarmUp { first_day_cap: 100, growth_percent: 0, uncapped_after: 5000 };
        assert_eq!(flat.daily_cap(0, 30 * DAY_MS), Some(100));
        let slow = WarmUp { first_day_cap: 10, growth_percent: 5, uncapped_after: 5000 };
        assert_eq!(slow.daily_cap(0, 15 * DAY_MS), Some(20), "small caps grow too");
        assert_eq!(w.daily_cap(0, 10_000 * DAY_MS), None);
    }

    #[test]
    fn a_run_of_failures_trips_the_breaker() {
        assert!(!failure_rate_trips(&[true; 9]), "too few samples");
        assert!(failure_rate_trips(&[true; 10]));
        let mut mostly_fine = vec![false; 15];
        mostly_fine.extend([true; 5]);
        assert!(!failure_rate_trips(&mostly_fine));
        let mut recent_trouble = vec![false; 30];
        recent_trouble.extend([true; 10]);
        assert!(failure_rate_trips(&recent_trouble), "only the last window counts");
    }

    #[test]
    fn opt_out_is_the_whole_message() {
        let keywords: Vec<String> = DEFAULT_OPT_OUT_KEYWORDS.iter().map(|k| k.to_string()).collect();
        for said in ["STOP", "stop", " Stop! ", "berhenti.", "Stop all", "STOP！", "stop 🙏", "Stop…"] {
            assert!(is_opt_out(said, &keywords), "{said}");
        }
        for said in ["don't stop", "stopwatch", "", "!!!"] {
            assert!(!is_opt_out(said, &keywords), "{said}");
        }
    }
}
