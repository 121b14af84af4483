//! Broadcast campaigns: the status state machine, progress as the LoginWA reference counts it,
//! and the ban-risk governor's rules (jittered delays, warm-up caps for new numbers, auto-pause
//! on failures, opt-out keywords). Pure: times and randomness are handed in.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::message::MessageStatus;
use super::template::Template;

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

impl Progress {
    /// Counts contacts by where they stand (`counts`: each status with its number of contacts).
    pub fn of(counts: impl IntoIterator<Item = (ContactStatus, u64)>) -> Self {
        let mut p = Self::default();
        for (status, n) in counts {
            p.total += n;
            match status {
                ContactStatus::Pending | ContactStatus::Queued => p.pending += n,
                ContactStatus::Sent => p.sent += n,
                ContactStatus::Delivered | ContactStatus::Read => {
                    p.sent += n;
                    p.delivered += n;
                }
                ContactStatus::Failed => p.failed += n,
            }
        }
        p
    }
}

/// Where one contact stands, in the order it moves: `pending` → `queued` (handed to a device)
/// → `sent` | `delivered` | `read` | `failed`. The last four are final for the campaign; the
/// first three of them go on moving forward as receipts arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactStatus {
    Pending,
    Queued,
    Sent,
    Delivered,
    Read,
    Failed,
}

impl ContactStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
        }
    }

    /// As the API shows it: a contact handed to a device has not gone out yet either.
    pub fn shown(self) -> Self {
        match self {
            Self::Queued => Self::Pending,
            other => other,
        }
    }

    /// The status a message's own status gives its contact; none before the message went out.
    fn of_message(status: MessageStatus) -> Option<Self> {
        match status {
            MessageStatus::Sent => Some(Self::Sent),
            MessageStatus::Delivered => Some(Self::Delivered),
            MessageStatus::Read => Some(Self::Read),
            MessageStatus::Failed => Some(Self::Failed),
            MessageStatus::Queued | MessageStatus::Sending | MessageStatus::Received => None,
        }
    }
}

/// The contacts `GET …/contacts?status=` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactFilter {
    /// What went out, including what was since delivered or read.
    Sent,
    Failed,
    /// What has not gone out yet.
    Pending,
}

impl ContactFilter {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sent" => Some(Self::Sent),
            "failed" => Some(Self::Failed),
            "pending" => Some(Self::Pending),
            _ => None,
        }
    }

    pub fn statuses(self) -> &'static [ContactStatus] {
        match self {
            Self::Sent => &[ContactStatus::Sent, ContactStatus::Delivered, ContactStatus::Read],
            Self::Failed => &[ContactStatus::Failed],
            Self::Pending => &[ContactStatus::Pending, ContactStatus::Queued],
        }
    }
}

/// What a message's new status does to its contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    pub to: ContactStatus,
    /// The send's first final outcome (the contact was not out yet): it feeds the
    /// failure-rate breaker; later receipts do not.
    pub outcome: bool,
}

/// Moves a contact standing at `current` on for a message now `message`; none when the
/// message has not gone out yet or the news is not past where the contact stands (receipts
/// may arrive out of order, and `failed` is never undone).
pub fn advance(current: ContactStatus, message: MessageStatus) -> Option<Advance> {
    let to = ContactStatus::of_message(message)?;
    (to > current).then_some(Advance { to, outcome: current <= ContactStatus::Queued })
}

/// Why the campaign was paused, as the API and the `campaign.paused` event word it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    Client,
    NoDevice,
    QuotaUsedUp,
    Failing,
}

impl PauseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "paused by the client",
            Self::NoDevice => "device_offline: none of the campaign's WhatsApp numbers is connected",
            Self::QuotaUsedUp => "quota_exceeded: the month's message quota is used up",
            Self::Failing => "failure_rate: too many of the latest messages failed",
        }
    }
}

/// What a campaign's alarm does, given where the campaign stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not sending, nor due to: nothing.
    Idle,
    /// Scheduled for later: come back then.
    WaitUntil(u64),
    /// The scheduled time came: start, then send.
    Start,
    /// Sending: hand out the next contact.
    Send,
}

pub fn step(status: CampaignStatus, schedule_at: Option<u64>, now_ms: u64) -> Step {
    match status {
        CampaignStatus::Queued => match schedule_at.filter(|at| *at > now_ms) {
            Some(at) => Step::WaitUntil(at),
            None => Step::Start,
        },
        CampaignStatus::Sending => Step::Send,
        _ => Step::Idle,
    }
}

/// The wait before the next contact: jittered around `delay_seconds` (see
/// [`jittered_delay_ms`]), times `scale` (tests compress delays), never below the device's pace.
pub fn next_delay_ms(delay_seconds: u32, scale: f64, pace_ms: u64, unit: f64) -> u64 {
    ((jittered_delay_ms(delay_seconds, 0, unit) as f64 * scale) as u64).max(pace_ms)
}

/// A contact's text: `{name}`, `{phone}` and its own variables filled in, and its own pick
/// among the template's alternatives, stable for the campaign (seeded by the campaign's
/// random part and the phone), so a retried dispatch renders the same text.
pub fn contact_text(
    template: &Template,
    campaign_body: &str,
    phone: &str,
    name: Option<&str>,
    variables: &Map<String, Value>,
) -> String {
    let value = |key: &str| match key {
        "name" => name.map(str::to_owned),
        "phone" => Some(phone.to_owned()),
        other => variables.get(other).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
    };
    let seed = campaign_body.bytes().chain(phone.bytes()).fold(0u64, |h, b| h.rotate_left(7) ^ u64::from(b));
    template.render(value, seed)
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

/// What a number sent of its campaign traffic on the warm-up day it last sent on (nothing for
/// a number that never came online here: it starts warming up now).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub linked_at: Option<u64>,
    pub day: Option<i64>,
    pub count: Option<i64>,
}

impl WarmUp {
    /// The first of `numbers` (in the order they take turns) still under today's cap, or else
    /// when the earliest of them gets its next day's allowance.
    pub fn first_allowed(&self, numbers: &[Sent], now_ms: u64) -> Result<usize, u64> {
        let mut next_allowance = u64::MAX;
        for (index, sent) in numbers.iter().enumerate() {
            let linked_at = sent.linked_at.unwrap_or(now_ms);
            let today = Self::day(linked_at, now_ms) as i64;
            let sent_today = if sent.day == Some(today) { sent.count.unwrap_or(0) as u64 } else { 0 };
            match self.daily_cap(linked_at, now_ms) {
                Some(cap) if sent_today >= cap => {
                    next_allowance = next_allowance.min(Self::next_day_start_ms(linked_at, now_ms));
                }
                _ => return Ok(index),
            }
        }
        Err(next_allowance)
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
    fn progress_counts_contacts_by_status() {
        use ContactStatus as C;
        let p = Progress::of([
            (C::Pending, 2),
            (C::Queued, 1),
            (C::Sent, 3),
            (C::Delivered, 4),
            (C::Read, 5),
            (C::Failed, 6),
        ]);
        assert_eq!(p, Progress { total: 21, sent: 12, delivered: 9, failed: 6, pending: 3 });
        assert!(Progress::of([(C::Read, 1), (C::Failed, 1)]).finished());
        assert_eq!(Progress::of([]), Progress::default());
    }

    #[test]
    fn contacts_only_move_forward() {
        use ContactStatus as C;
        use MessageStatus as M;
        assert_eq!(advance(C::Queued, M::Sent), Some(Advance { to: C::Sent, outcome: true }));
        assert_eq!(
            advance(C::Pending, M::Failed),
            Some(Advance { to: C::Failed, outcome: true }),
            "an outcome overtaking the queueing"
        );
        assert_eq!(
            advance(C::Sent, M::Read),
            Some(Advance { to: C::Read, outcome: false }),
            "a receipt is no second outcome"
        );
        assert_eq!(advance(C::Read, M::Delivered), None, "a late receipt");
        assert_eq!(advance(C::Sent, M::Sent), None);
        assert_eq!(advance(C::Failed, M::Read), None, "failed is final");
        assert_eq!(advance(C::Queued, M::Sending), None);
        assert_eq!(advance(C::Pending, M::Queued), None);
    }

    #[test]
    fn contacts_show_and_filter_as_the_reference() {
        use ContactStatus as C;
        let stored: Vec<C> =
            serde_json::from_str(r#"["pending","queued","sent","delivered","read","failed"]"#).unwrap();
        assert_eq!(stored, [C::Pending, C::Queued, C::Sent, C::Delivered, C::Read, C::Failed]);
        assert!(stored.iter().all(|s| serde_json::to_value(s).unwrap() == s.as_str()));
        assert_eq!(C::Queued.shown(), C::Pending);
        assert_eq!(C::Delivered.shown(), C::Delivered);
        assert_eq!(
            ContactFilter::parse("sent").map(ContactFilter::statuses),
            Some(&[C::Sent, C::Delivered, C::Read][..])
        );
        assert_eq!(ContactFilter::parse("failed"), Some(ContactFilter::Failed));
        assert_eq!(ContactFilter::parse("pending").map(ContactFilter::statuses), Some(&[C::Pending, C::Queued][..]));
        assert_eq!(ContactFilter::parse("queued"), None, "not a filter the API offers");
        assert_eq!(ContactFilter::parse("read"), None);
    }

    #[test]
    fn the_alarm_starts_a_due_campaign_and_waits_for_a_scheduled_one() {
        assert_eq!(step(S::Queued, Some(50), 10), Step::WaitUntil(50));
        assert_eq!(step(S::Queued, Some(10), 10), Step::Start);
        assert_eq!(step(S::Queued, None, 10), Step::Start);
        assert_eq!(step(S::Sending, Some(50), 10), Step::Send);
        for idle in [S::Draft, S::Paused, S::Completed, S::Failed] {
            assert_eq!(step(idle, None, 10), Step::Idle, "{idle:?}");
        }
    }

    #[test]
    fn the_next_delay_is_scaled_but_never_below_the_pace() {
        assert_eq!(next_delay_ms(5, 1.0, 250, 0.5), 5000);
        assert_eq!(next_delay_ms(5, 0.01, 250, 0.5), 250, "compressed below the pace");
        assert_eq!(next_delay_ms(5, 0.1, 250, 0.0), 350);
    }

    #[test]
    fn each_contact_gets_its_own_values_and_a_stable_pick() {
        let template = Template::parse("{Hi|Hello|Hey} {name} from {city}, {phone} ({n})", |_| true).unwrap();
        let vars: Map<String, Value> = serde_json::from_str(r#"{"city": "Jakarta", "n": 3}"#).unwrap();
        let text = contact_text(&template, "0123456789abcdef", "628111", Some("Ani"), &vars);
        assert!(text.ends_with(" Ani from Jakarta, 628111 (3)"), "{text}");
        assert_eq!(text, contact_text(&template, "0123456789abcdef", "628111", Some("Ani"), &vars), "stable");
        let greetings: std::collections::HashSet<String> = (0..40)
            .map(|i| contact_text(&template, "0123456789abcdef", &format!("6281{i}"), None, &vars))
            .map(|t| t.split(' ').next().unwrap().to_owned())
            .collect();
        assert!(greetings.len() > 1, "contacts do not all get the same pick: {greetings:?}");
    }

    #[test]
    fn pause_reasons_say_why() {
        assert_eq!(PauseReason::Client.as_str(), "paused by the client");
        assert!(PauseReason::NoDevice.as_str().starts_with("device_offline: "));
        assert!(PauseReason::QuotaUsedUp.as_str().starts_with("quota_exceeded: "));
        assert!(PauseReason::Failing.as_str().starts_with("failure_rate: "));
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

    #[test]
    fn the_first_number_under_its_cap_sends_else_the_earliest_new_day() {
        let warm_up = WarmUp { first_day_cap: 10, growth_percent: 100, uncapped_after: 1000 };
        let now = 3 * DAY_MS + 5;
        // Linked at 0: day 3, cap 80. Linked at 1 h: day 2, cap 40.
        let full = Sent { linked_at: Some(0), day: Some(3), count: Some(80) };
        let other_full = Sent { linked_at: Some(3_600_000), day: Some(2), count: Some(40) };
        assert_eq!(warm_up.first_allowed(&[full, other_full], now), Err(3 * DAY_MS + 3_600_000));
        let yesterday = Sent { day: Some(2), ..full };
        assert_eq!(warm_up.first_allowed(&[full, yesterday], now), Ok(1), "yesterday's count is spent");
        assert_eq!(warm_up.first_allowed(&[full, Sent::default()], now), Ok(1), "a new number starts at day 0");
        let old = Sent { linked_at: Some(0), day: Some(30), count: Some(1_000_000) };
        assert_eq!(warm_up.first_allowed(&[old], 30 * DAY_MS), Ok(0), "uncapped once past the ceiling");
        assert_eq!(warm_up.first_allowed(&[], now), Err(u64::MAX));
    }

    #[test]
    fn opt_out_keywords_ignore_case_and_surrounding_space_only() {
        let keywords: Vec<String> = DEFAULT_OPT_OUT_KEYWORDS.iter().map(|k| k.to_string()).collect();
        for said in ["stop all", "  STOP ALL \n", "Stop Promo!", "\tunsubscribe"] {
            assert!(is_opt_out(said, &keywords), "{said:?}");
        }
        for said in ["stop  all", "stopall", "s t o p", "STOP ALL PLEASE"] {
            assert!(!is_opt_out(said, &keywords), "{said:?}");
        }
        assert!(is_opt_out("Halt", &[" halt ".into()]), "a keyword as the operator typed it");
    }
}
