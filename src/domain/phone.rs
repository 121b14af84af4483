//! Recipients: plain international numbers and WhatsApp JIDs, normalised in one place.

use serde::{Deserialize, Serialize};

const USER_SERVER: &str = "s.whatsapp.net";
const LEGACY_USER_SERVER: &str = "c.us";
const GROUP_SERVER: &str = "g.us";

/// E.164 allows at most 15 digits; the shortest national plans give 7.
const MIN_DIGITS: usize = 7;
const MAX_DIGITS: usize = 15;

/// A country calling code as a request or an app gives it: `62` or `+62`, kept as digits.
/// E.164 codes have 1 to 3 digits; 4 are allowed for the NANP areas often written so (`1684`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountryCode(String);

impl CountryCode {
    pub const RULE: &'static str = "must be 1 to 4 digits, optionally after a +, not starting with 0";

    pub fn parse(input: &str) -> Option<Self> {
        let digits = input.trim();
        let digits = digits.strip_prefix('+').unwrap_or(digits);
        let valid =
            (1..=4).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        valid.then(|| Self(digits.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A valid recipient. Past the edge of the API a `Recipient` is always well-formed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Recipient {
    /// International number, digits only, with country code.
    Phone(String),
    /// Group id, the part before `@g.us`.
    Group(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneError {
    Empty,
    InvalidCharacters,
    TooShort,
    TooLong,
    /// A leading-zero local number and no default country code to complete it.
    MissingCountryCode,
    UnknownServer(String),
    InvalidGroup,
}

impl std::fmt::Display for PhoneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("is empty"),
            Self::InvalidCharacters => {
                f.write_str("may contain only digits, optionally a leading + (spaces and dashes are ignored)")
            }
            Self::TooShort => write!(f, "must have at least {MIN_DIGITS} digits including the country code"),
            Self::TooLong => write!(f, "must have at most {MAX_DIGITS} digits including the country code"),
            Self::MissingCountryCode => f.write_str("must start with the country code, not 0"),
            Self::UnknownServer(s) => write!(f, "has an unsupported JID server '{s}' (use @s.whatsapp.net or @g.us)"),
            Self::InvalidGroup => f.write_str("is not a valid group JID"),
        }
    }
}

impl Recipient {
    /// Parses a number (`+62 812-3456-7890`, `6281234567890`, `081234567890` with a default
    /// country code) or a JID (`…@s.whatsapp.net`, `…@c.us`, `…@g.us`).
    pub fn parse(input: &str, default_country_code: Option<&str>) -> Result<Self, PhoneError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(PhoneError::Empty);
        }
        match input.split_once('@') {
            Some((user, server)) => match server.to_ascii_lowercase().as_str() {
                USER_SERVER | LEGACY_USER_SERVER => international_digits(user).map(Self::Phone),
                GROUP_SERVER => group_id(user).map(Self::Group),
                other => Err(PhoneError::UnknownServer(other.to_owned())),
            },
            None => number(input, default_country_code).map(Self::Phone),
        }
    }

    /// Parses a number with LoginWA's `country_code`, "default country code if not in phone":
    /// a national number takes `given` (`81234567890` with `62` is `6281234567890`; a leading 0
    /// is replaced by it). A number is taken to hold its country code already when it is written
    /// internationally (`+…`, `00…`, a JID), begins with `given` itself, or is too long to be a
    /// national number (with `given` in front it would pass E.164's 15 digits, so it must be an
    /// international one); any other number of another country must be written with `+`.
    /// Without `given`, only a leading-zero local number is completed, with the app's
    /// `app_default`.
    pub fn parse_with_country_code(
        input: &str,
        given: Option<&CountryCode>,
        app_default: &str,
    ) -> Result<Self, PhoneError> {
        let Some(cc) = given else { return Self::parse(input, Some(app_default)) };
        let digits = cleaned(input.trim());
        let national = !input.contains('@')
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
            && !digits.starts_with(cc.as_str())
            && cc.as_str().len() + digits.len() <= MAX_DIGITS;
        match national {
            true => international_digits(&format!("{}{digits}", cc.as_str())).map(Self::Phone),
            false => Self::parse(input, Some(cc.as_str())),
        }
    }

    pub fn jid(&self) -> String {
        match self {
            Self::Phone(digits) => format!("{digits}@{USER_SERVER}"),
            Self::Group(id) => format!("{id}@{GROUP_SERVER}"),
        }
    }

    /// The number as the LoginWA dialect shows it: digits for people, the JID for groups.
    pub fn display(&self) -> String {
        match self {
            Self::Phone(digits) => digits.clone(),
            Self::Group(_) => self.jid(),
        }
    }
}

/// The number without the separators people write in it.
fn cleaned(input: &str) -> String {
    input.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.')).collect()
}

fn number(input: &str, default_country_code: Option<&str>) -> Result<String, PhoneError> {
    let cleaned = cleaned(input);
    let (has_plus, digits) = match cleaned.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, cleaned.as_str()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PhoneError::InvalidCharacters);
    }
    if let Some(international) = digits.strip_prefix("00").filter(|_| !has_plus) {
        return international_digits(international);
    }
    match digits.strip_prefix('0') {
        Some(local) if !has_plus => match default_country_code {
            Some(cc) => international_digits(&format!("{cc}{}", local.trim_start_matches('0'))),
            None => Err(PhoneError::MissingCountryCode),
        },
        _ => international_digits(digits),
    }
}

fn international_digits(digits: &str) -> Result<String, PhoneError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PhoneError::InvalidCharacters);
    }
    if digits.starts_with('0') {
        return Err(PhoneError::MissingCountryCode);
    }
    match digits.len() {
        n if n < MIN_DIGITS => Err(PhoneError::TooShort),
        n if n > MAX_DIGITS => Err(PhoneError::TooLong),
        _ => Ok(digits.to_owned()),
    }
}

/// Group ids are digits, or the older `<creator>-<timestamp>` form.
fn group_id(id: &str) -> Result<String, PhoneError> {
    let valid = !id.is_empty()
        && id.len() <= 40
        && id.split('-').count() <= 2
        && id.split('-').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    valid.then(|| id.to_owned()).ok_or(PhoneError::InvalidGroup)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(input: &str) -> Result<Recipient, PhoneError> {
        Recipient::parse(input, Some("62"))
    }

    #[test]
    fn international_numbers_normalise_to_digits() {
        for input in ["6281234567890", "+62 812-3456-7890", "+62 (812) 3456.7890", " 6281234567890 ", "006281234567890"]
        {
            assert_eq!(phone(input), Ok(Recipient::Phone("6281234567890".into())), "{input}");
        }
        assert_eq!(phone("14155552671").unwrap().jid(), "14155552671@s.whatsapp.net");
    }

    #[test]
    fn leading_zero_takes_the_default_country_code() {
        assert_eq!(phone("081234567890"), Ok(Recipient::Phone("6281234567890".into())));
        assert_eq!(Recipient::parse("081234567890", None), Err(PhoneError::MissingCountryCode));
        assert_eq!(phone("+081234567890"), Err(PhoneError::MissingCountryCode));
    }

    #[test]
    fn country_codes_are_digits_with_an_optional_plus() {
        assert_eq!(CountryCode::parse("62").unwrap().as_str(), "62");
        assert_eq!(CountryCode::parse("+62").unwrap().as_str(), "62");
        assert_eq!(CountryCode::parse(" 1684 ").unwrap().as_str(), "1684");
        for bad in ["", "+", "062", "0", "6a", "12345", "++62", "62+", "６２", "-62", &"9".repeat(500)] {
            assert_eq!(CountryCode::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_given_country_code_completes_national_numbers() {
        let cc = CountryCode::parse("+62").unwrap();
        let with = |input: &str| Recipient::parse_with_country_code(input, Some(&cc), "1");
        let indonesian = Ok(Recipient::Phone("6281234567890".into()));
        for input in
            ["81234567890", "081234567890", "6281234567890", "+6281234567890", "812-3456-7890", "006281234567890"]
        {
            assert_eq!(with(input), indonesian, "{input}");
        }
        assert_eq!(with("+14155552671"), Ok(Recipient::Phone("14155552671".into())), "written internationally");
        assert_eq!(with("14155552671"), Ok(Recipient::Phone("6214155552671".into())), "bare: taken as national");
        assert_eq!(with("9647507644809@s.whatsapp.net"), Ok(Recipient::Phone("9647507644809".into())));
        assert_eq!(with("120363025246125486@g.us"), Ok(Recipient::Group("120363025246125486".into())));
        assert_eq!(with("81234567890123"), Ok(Recipient::Phone("81234567890123".into())), "too long to be national");
        assert_eq!(with("8123456789012"), Ok(Recipient::Phone("628123456789012".into())), "15 digits with it");
        assert_eq!(with("8123456789012345"), Err(PhoneError::TooLong));
        assert_eq!(with("081234567890123"), Err(PhoneError::TooLong), "the country code replacing the 0 counts");
        assert_eq!(with("81a"), Err(PhoneError::InvalidCharacters));
        assert_eq!(with(""), Err(PhoneError::Empty));
    }

    #[test]
    fn without_a_given_country_code_only_local_numbers_take_the_apps() {
        let without = |input: &str| Recipient::parse_with_country_code(input, None, "62");
        assert_eq!(without("081234567890"), Ok(Recipient::Phone("6281234567890".into())));
        assert_eq!(without("14155552671"), Ok(Recipient::Phone("14155552671".into())));
    }

    #[test]
    fn jids_are_accepted() {
        assert_eq!(phone("9647507644809@s.whatsapp.net"), Ok(Recipient::Phone("9647507644809".into())));
        assert_eq!(phone("9647507644809@c.us").unwrap().jid(), "9647507644809@s.whatsapp.net");
        let group = phone("120363025246125486@g.us").unwrap();
        assert_eq!(group, Recipient::Group("120363025246125486".into()));
        assert_eq!(group.jid(), "120363025246125486@g.us");
        assert_eq!(group.display(), "120363025246125486@g.us");
        assert_eq!(phone("6281234567-1546527040@g.us").unwrap().jid(), "6281234567-1546527040@g.us");
    }

    #[test]
    fn invalid_recipients_are_rejected_with_a_reason() {
        assert_eq!(phone(""), Err(PhoneError::Empty));
        assert_eq!(phone("62812abc"), Err(PhoneError::InvalidCharacters));
        assert_eq!(phone("+"), Err(PhoneError::InvalidCharacters));
        assert_eq!(phone("12345"), Err(PhoneError::TooShort));
        assert_eq!(phone("1234567890123456"), Err(PhoneError::TooLong));
        assert_eq!(phone("123@broadcast"), Err(PhoneError::UnknownServer("broadcast".into())));
        assert_eq!(phone("abc@s.whatsapp.net"), Err(PhoneError::InvalidCharacters));
        assert_eq!(phone("1-2-3@g.us"), Err(PhoneError::InvalidGroup));
        assert_eq!(phone("@g.us"), Err(PhoneError::InvalidGroup));
        assert!(PhoneError::TooShort.to_string().contains("7 digits"));
    }
}
