//! Identifiers the worker hands us, parsed once at the edge so that past it a
//! device id can never be confused with a message id, nor carry odd bytes into
//! SQL, logs or paths.

use std::fmt;

const MAX_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} must be 1-{MAX_LEN} characters of letters, digits, '_', '-' or '.'")]
pub struct InvalidId {
    field: &'static str,
}

fn well_formed(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                if well_formed(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(InvalidId { field: $field })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// The worker's id for one WhatsApp account (`dev_…`).
    DeviceId,
    "device_id"
);
id_type!(
    /// The worker's id for one outgoing message (`msg_…`); the journal's key.
    MessageId,
    "message_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_worker_ids_and_rejects_odd_ones() {
        assert_eq!(DeviceId::parse("dev_01HZX-a.b").unwrap().as_str(), "dev_01HZX-a.b");
        for bad in ["", "dev a", "dev/../x", "dev_ü", &"x".repeat(MAX_LEN + 1)] {
            assert!(DeviceId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            MessageId::parse("msg 1").unwrap_err().to_string(),
            "message_id must be 1-128 characters of letters, digits, '_', '-' or '.'"
        );
    }
}
