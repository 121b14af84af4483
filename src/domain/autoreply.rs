//! Auto-reply rules: which inbound text a rule answers, and with what. Patterns are matched
//! case-insensitively; regexes run on a linear-time engine with size limits, so no rule can
//! make the worker spin on a crafted message.

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

/// A reply template, checked for placeholders it could never fill.
pub fn reply_template(text: &str) -> Result<Template, TemplateError> {
    Template::parse(text, |name| REPLY_VARIABLES.contains(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

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
