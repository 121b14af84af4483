//! WhatsApp addresses: phone numbers and JIDs, parsed once at the edge.

use std::fmt;

const USER_SERVER: &str = "s.whatsapp.net";
const GROUP_SERVER: &str = "g.us";

/// E.164 allows at most 15 digits; the shortest national plans give 7.
const MIN_DIGITS: usize = 7;
const MAX_DIGITS: usize = 15;
const MAX_GROUP_LEN: usize = 40;

/// An international number: digits only, country code first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("phone number must be {MIN_DIGITS}-{MAX_DIGITS} digits with the country code, nothing else")]
pub struct InvalidPhone;

impl PhoneNumber {
    pub fn parse(s: &str) -> Result<Self, InvalidPhone> {
        let valid = (MIN_DIGITS..=MAX_DIGITS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidPhone)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn jid(&self) -> Jid {
        Jid::User(self.clone())
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a message goes: a person (`<digits>@s.whatsapp.net`) or a group
/// (`<digits>@g.us`, or the older `<creator>-<timestamp>@g.us`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jid {
    User(PhoneNumber),
    Group(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("recipient must be a JID: <digits>@s.whatsapp.net or <group id>@g.us")]
pub struct InvalidJid;

impl Jid {
    pub fn parse(s: &str) -> Result<Self, InvalidJid> {
        match s.split_once('@') {
            Some((user, USER_SERVER)) => PhoneNumber::parse(user).map(Self::User).map_err(|_| InvalidJid),
            Some((group, GROUP_SERVER)) if is_group_id(group) => Ok(Self::Group(group.to_owned())),
            _ => Err(InvalidJid),
        }
    }

    /// The part before `@`: a phone number or a group id.
    pub fn user(&self) -> &str {
        match self {
            Self::User(phone) => phone.as_str(),
            Self::Group(id) => id,
        }
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(phone) => write!(f, "{phone}@{USER_SERVER}"),
            Self::Group(id) => write!(f, "{id}@{GROUP_SERVER}"),
        }
    }
}

/// Digits, or two digit runs joined by one `-`.
pub fn is_group_id(s: &str) -> bool {
    s.len() <= MAX_GROUP_LEN
        && s.split('-').count() <= 2
        && s.split('-').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_group_jids_round_trip() {
        for jid in ["6281234567890@s.whatsapp.net", "120363025246125486@g.us", "6281234567-1546527040@g.us"] {
            assert_eq!(Jid::parse(jid).unwrap().to_string(), jid);
        }
        assert_eq!(Jid::parse("6281234567890@s.whatsapp.net").unwrap().user(), "6281234567890");
    }

    #[test]
    fn anything_else_is_rejected() {
        for bad in [
            "6281234567890",
            "6281234567890@c.us",
            "+6281234567890@s.whatsapp.net",
            "123456@s.whatsapp.net",
            "1234567890123456@s.whatsapp.net",
            "12-34-56@g.us",
            "-1@g.us",
            "abc@g.us",
            "",
        ] {
            assert_eq!(Jid::parse(bad), Err(InvalidJid), "{bad:?} accepted");
        }
    }

    #[test]
    fn phone_numbers_are_7_to_15_digits() {
        assert!(PhoneNumber::parse("1234567").is_ok());
        assert!(PhoneNumber::parse("123456789012345").is_ok());
        for bad in ["123456", "1234567890123456", "+6281234567", "62 812345678", ""] {
            assert_eq!(PhoneNumber::parse(bad), Err(InvalidPhone), "{bad:?} accepted");
        }
    }
}
