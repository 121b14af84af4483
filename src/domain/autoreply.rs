//! Auto-reply rules: which inbound text a rule answers, and with what. Patterns are matched
//! case-insensitively; regexes run on a linear-time engine with size limits, so no rule can
//! make the worker spin on a crafted message.
//!
//! Every reply costs quota and ban risk, and a stranger decides how many messages arrive, so
//! replies are rationed per sender ([`verdict`]): a cooldown per rule, an hourly cap over all
//! rules, and no reply at all to what looks like another program answering ours.

use regex_lite::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use super::template::{Template, TemplateError};

pub const PATTERN_MAX_CHARS: usize = 500;
/// Compiled-program budget for one regex (regex-lite counts in bytes of its program).
const REGEX_SIZE_LIMIT: usize = 64 * 1024;
const REGEX_NEST_LIMIT: u32 = 20;

/// What a reply may say about the message it answers: `{name}` is the sender's WhatsApp name
/// (their number when they have none), `{phone}` their number, `{message}` what they wrote.
pub const REPLY_VARIABLES: [&str; 3] = ["name", "phone", "message"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    Exact,
    Contains,
    Regex,
}

impl MatchKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "exact" => Some(Self::Exact),
            "contains" => Some(Self::Contains),
            "regex" => Some(Self::Regex),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub enum Matcher {
    /// The lower-cased pattern, compared with the lower-cased, trimmed message.
    Exact(String),
    Contains(String),
    Regex(Regex),
}

impl Matcher {
    /// The matcher of a rule, or why its pattern is unusable (worded after the field name).
    pub fn new(kind: MatchKind, pattern: &str) -> Result<Self, String> {
        Ok(match kind {
            MatchKind::Exact => Self::Exact(pattern.trim().to_lowercase()),
            MatchKind::Contains => Self::Contains(pattern.to_lowercase()),
            MatchKind::Regex => Self::Regex(
                RegexBuilder::new(pattern)
                    .case_insensitive(true)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .nest_limit(REGEX_NEST_LIMIT)
                    .build()
                    .map_err(|e| format!("is not a usable regular expression: {e}"))?,
            ),
        })
    }

    pub fn matches(&self, text: &str) -> bool {
        match self {
            Self::Exact(pattern) => text.trim().to_lowercase() == *pattern,
            Self::Contains(pattern) => text.to_lowercase().contains(pattern.as_str()),
            Self::Regex(regex) => regex.is_match(text),
        }
    }
}

/// How often one sender may draw an auto-reply; the operator sets both per app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyLimits {
    /// Least time between two replies of one rule to one sender: repeating a question
    /// gets one answer, not one per message.
    pub cooldown_secs: u64,
    /// Most replies one sender gets in any hour, all rules together (0: none).
    pub hourly_cap: u64,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        Self { cooldown_secs: 60, hourly_cap: 5 }
    }
}

pub const HOUR_MS: u64 = 60 * 60 * 1000;
/// An inbound message this soon after an auto-reply to its sender answers it faster than a
/// person reads and types: it is taken for a program's answer.
pub const LOOP_ANSWER_MS: u64 = 10_000;
/// After this many such answers in a row the conversation is two programs replying to each
/// other, and it gets no reply until the sender pauses for `LOOP_ANSWER_MS`.
pub const LOOP_STRIKES: u32 = 3;

/// One auto-reply the app sent a sender, as the rationing reads it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SentReply {
    pub rule_id: String,
    pub at: u64,
}

/// Why a matching rule did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suppressed {
    Loop,
    HourlyCap,
    Cooldown,
}

/// How many inbound messages in a row, this one included, answered an auto-reply within
/// `LOOP_ANSWER_MS`, given the count before it and the replies the sender got in the last hour.
pub fn quick_answers(before: u32, replies: &[SentReply], now: u64) -> u32 {
    match replies.iter().map(|r| r.at).max() {
        Some(last) if now.saturating_sub(last) < LOOP_ANSWER_MS => before.saturating_add(1),
        _ => 0,
    }
}

/// Whether `rule_id` may answer a sender now, given what that sender got in the last hour and
/// how many quick answers in a row they sent (see [`quick_answers`]).
pub fn verdict(
    limits: &ReplyLimits,
    replies: &[SentReply],
    quick_answers: u32,
    rule_id: &str,
    now: u64,
) -> Result<(), Suppressed> {
    let within = |ms: u64| move |r: &&SentReply| now.saturating_sub(r.at) < ms;
    if quick_answers >= LOOP_STRIKES {
        return Err(Suppressed::Loop);
    }
    if replies.iter().filter(within(HOUR_MS)).count() as u64 >= limits.hourly_cap {
        return Err(Suppressed::HourlyCap);
    }
    if replies.iter().filter(within(limits.cooldown_secs * 1000)).any(|r| r.rule_id == rule_id) {
        return Err(Suppressed::Cooldown);
    }
    Ok(())
}

/// A reply template, checked for placeholders it could never fill.
pub fn reply_template(text: &str) -> Result<Template, TemplateError> {
    Template::parse(text, |name| REPLY_VARIABLES.contains(&name))
}

/// What can be checked of a rule once its fields parse: its pattern under its match kind, and
/// its reply's placeholders. Each problem names its field.
pub fn problems(kind: MatchKind, pattern: &str, reply: &str) -> Vec<(&'static str, String)> {
    [
        Matcher::new(kind, pattern).err().map(|reason| ("pattern", reason)),
        reply_template(reply).err().map(|e| ("reply", e.to_string())),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The first of `rules` (in precedence order) whose pattern matches `text`; a stored pattern
/// that no longer compiles matches nothing, rather than stopping the rules after it.
pub fn first_match<'a>(rules: impl IntoIterator<Item = (MatchKind, &'a str)>, text: &str) -> Option<usize> {
    rules.into_iter().position(|(kind, pattern)| Matcher::new(kind, pattern).is_ok_and(|m| m.matches(text)))
}

/// Picks among a reply's alternatives by the event it answers, so that a retried recording of
/// the same event says the same.
pub fn seed(event_id: &str) -> u64 {
    event_id.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_rule_that_matches_answers_and_a_broken_one_is_passed_over() {
        let rules = [(MatchKind::Regex, "(unclosed"), (MatchKind::Exact, "harga"), (MatchKind::Contains, "HARGA")];
        assert_eq!(first_match(rules, "  Harga "), Some(1), "case and surrounding space do not matter");
        assert_eq!(first_match(rules, "berapa harga?"), Some(2));
        assert_eq!(first_match(rules, "halo"), None);
        assert_eq!(first_match([], "harga"), None);
    }

    #[test]
    fn a_rule_names_each_field_at_fault() {
        assert!(problems(MatchKind::Exact, "hi", "Hello {name}").is_empty());
        let found = problems(MatchKind::Regex, "(unclosed", "Hello {nama}");
        assert_eq!(found.iter().map(|(field, _)| *field).collect::<Vec<_>>(), ["pattern", "reply"]);
        assert!(problems(MatchKind::Exact, "(unclosed", "ok").is_empty(), "only a regex is compiled as one");
    }

    #[test]
    fn the_seed_is_the_events_own() {
        assert_eq!(seed("evt_1"), seed("evt_1"));
        assert_ne!(seed("evt_1"), seed("evt_2"));
        assert_eq!(seed(""), 0);
    }

    #[test]
    fn exact_and_contains_ignore_case() {
        let exact = Matcher::new(MatchKind::Exact, "Price").unwrap();
        assert!(exact.matches("  PRICE ") && !exact.matches("price?"));
        let contains = Matcher::new(MatchKind::Contains, "ÖFFNUNG").unwrap();
        assert!(contains.matches("Wann ist die öffnungszeit?") && !contains.matches("open"));
    }

    #[test]
    fn regexes_ignore_case_and_are_bounded() {
        let regex = Matcher::new(MatchKind::Regex, r"^(order|pesanan)\s+#?\d+$").unwrap();
        assert!(regex.matches("ORDER #123") && regex.matches("pesanan 9") && !regex.matches("order abc"));
        assert!(Matcher::new(MatchKind::Regex, "(unclosed").unwrap_err().starts_with("is not a usable"));
        assert!(Matcher::new(
            MatchKind::Regex,
            &"(".repeat(30).chars().chain(")".repeat(30).chars()).collect::<String>()
        )
        .is_err());
        assert!(Matcher::new(MatchKind::Regex, "a{1000}{1000}").is_err(), "over the size limit");
    }

    #[test]
    fn a_catastrophic_pattern_still_runs_in_linear_time() {
        // Exponential on a backtracking engine; regex-lite answers at once.
        let regex = Matcher::new(MatchKind::Regex, "^(a+)+$").unwrap();
        assert!(!regex.matches(&format!("{}!", "a".repeat(5000))));
    }

    const NOW: u64 = 1_780_000_000_000;

    fn sent(rule_id: &str, ago: u64) -> SentReply {
        SentReply { rule_id: rule_id.into(), at: NOW - ago }
    }

    #[test]
    fn a_rule_answers_one_sender_once_per_cooldown() {
        let limits = ReplyLimits { cooldown_secs: 60, hourly_cap: 5 };
        assert_eq!(verdict(&limits, &[], 0, "ar_a", NOW), Ok(()));
        let replies = [sent("ar_a", 59_999)];
        assert_eq!(verdict(&limits, &replies, 0, "ar_a", NOW), Err(Suppressed::Cooldown));
        assert_eq!(verdict(&limits, &replies, 0, "ar_b", NOW), Ok(()), "another rule has its own cooldown");
        assert_eq!(verdict(&limits, &[sent("ar_a", 60_000)], 0, "ar_a", NOW), Ok(()));
        let none = ReplyLimits { cooldown_secs: 0, ..limits };
        assert_eq!(verdict(&none, &[sent("ar_a", 0)], 0, "ar_a", NOW), Ok(()));
    }

    #[test]
    fn a_sender_gets_at_most_the_hourly_cap_over_all_rules() {
        let limits = ReplyLimits { cooldown_secs: 0, hourly_cap: 3 };
        let three = [sent("ar_a", 10 * 60_000), sent("ar_b", 20 * 60_000), sent("ar_c", 59 * 60_000)];
        assert_eq!(verdict(&limits, &three, 0, "ar_d", NOW), Err(Suppressed::HourlyCap));
        let one_old = [sent("ar_a", 10 * 60_000), sent("ar_b", 20 * 60_000), sent("ar_c", HOUR_MS)];
        assert_eq!(verdict(&limits, &one_old, 0, "ar_d", NOW), Ok(()), "the hour slides");
        let closed = ReplyLimits { hourly_cap: 0, ..limits };
        assert_eq!(verdict(&closed, &[], 0, "ar_a", NOW), Err(Suppressed::HourlyCap));
    }

    #[test]
    fn answers_faster_than_a_person_types_three_times_in_a_row_are_a_loop() {
        let just_replied = [sent("ar_a", LOOP_ANSWER_MS - 1)];
        assert_eq!(quick_answers(0, &just_replied, NOW), 1);
        assert_eq!(quick_answers(2, &just_replied, NOW), 3);
        assert_eq!(quick_answers(2, &[sent("ar_a", LOOP_ANSWER_MS)], NOW), 0, "a pause resets the count");
        assert_eq!(quick_answers(2, &[], NOW), 0, "no reply to answer");
        let limits = ReplyLimits { cooldown_secs: 0, hourly_cap: 100 };
        assert_eq!(verdict(&limits, &just_replied, LOOP_STRIKES - 1, "ar_a", NOW), Ok(()));
        assert_eq!(verdict(&limits, &just_replied, LOOP_STRIKES, "ar_a", NOW), Err(Suppressed::Loop));
    }

    #[test]
    fn replies_may_only_use_known_variables() {
        let template = reply_template("Hi {name}, you wrote {message}").unwrap();
        let text = template.render(|v| Some(format!("<{v}>")), 0);
        assert_eq!(text, "Hi <name>, you wrote <message>");
        assert!(reply_template("Hi {city}").is_err());
        assert_eq!(MatchKind::parse("regex"), Some(MatchKind::Regex));
        assert_eq!(MatchKind::parse("glob"), None);
    }
}
