//! Typed, prefixed identifiers.
//!
//! Ids carry the Durable Object they route to: a message id embeds its device,
//! so `GET /messages/{id}` reaches the right object with no global index.

use serde::{Deserialize, Serialize};

/// Random hex of `bytes` bytes from the platform CSPRNG.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).expect("the platform CSPRNG is available");
    hex::encode(buf)
}

/// Length of the random part of every id, in hex characters (64 bits).
const ID_HEX: usize = 16;

fn is_id_body(s: &str) -> bool {
    s.len() == ID_HEX && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, random_hex(ID_HEX / 2)))
            }

            pub fn parse(s: &str) -> Option<Self> {
                s.strip_prefix($prefix).filter(|b| is_id_body(b)).map(|_| Self(s.to_owned()))
            }

            /// The random part, without the prefix.
            pub fn body(&self) -> &str {
                &self.0[$prefix.len()..]
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                Self::parse(&s).ok_or_else(|| format!("not a valid {} id: {s}", $prefix))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(AppId, "app_");
prefixed_id!(KeyId, "key_");
prefixed_id!(DeviceId, "dev_");
prefixed_id!(CampaignId, "camp_");

/// `msg_<device body><random>`: the device that holds the message is part of its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageId(String);

impl MessageId {
    const PREFIX: &'static str = "msg_";

    pub fn generate(device: &DeviceId) -> Self {
        Self(format!("{}{}{}", Self::PREFIX, device.body(), random_hex(ID_HEX / 2)))
    }

    pub fn parse(s: &str) -> Option<Self> {
        let body = s.strip_prefix(Self::PREFIX)?;
        (body.len() == 2 * ID_HEX && is_id_body(&body[..ID_HEX]) && is_id_body(&body[ID_HEX..]))
            .then(|| Self(s.to_owned()))
    }

    pub fn device(&self) -> DeviceId {
        DeviceId(format!("{}{}", DeviceId::PREFIX, &self.0[Self::PREFIX.len()..][..ID_HEX]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MessageId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("not a valid message id: {s}"))
    }
}

impl From<MessageId> for String {
    fn from(id: MessageId) -> String {
        id.0
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A UUID-v4-shaped id, as the LoginWA reference shows `trace_id`.
pub fn trace_id() -> String {
    let h = random_hex(16);
    let variant = ["8", "9", "a", "b"][usize::from_str_radix(&h[16..17], 16).unwrap_or(0) % 4];
    format!("{}-{}-4{}-{variant}{}-{}", &h[..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_reject_other_kinds() {
        let app = AppId::generate();
        assert!(app.as_str().starts_with("app_"));
        assert_eq!(AppId::parse(app.as_str()), Some(app.clone()));
        assert_eq!(DeviceId::parse(app.as_str()), None);
        assert_eq!(AppId::parse("app_XYZ"), None);
        assert_eq!(AppId::parse("app_0123456789ABCDEF"), None, "ids are lowercase");
        assert_ne!(AppId::generate(), AppId::generate());
    }

    #[test]
    fn message_id_routes_to_its_device() {
        let device = DeviceId::generate();
        let msg = MessageId::generate(&device);
        assert_eq!(msg.device(), device);
        assert_eq!(MessageId::parse(msg.as_str()), Some(msg));
        assert_eq!(MessageId::parse("msg_abc123"), None);
        assert_eq!(MessageId::parse(&format!("msg_{}", "g".repeat(32))), None);
    }

    #[test]
    fn ids_deserialize_only_when_valid() {
        assert!(serde_json::from_str::<DeviceId>("\"dev_0123456789abcdef\"").is_ok());
        assert!(serde_json::from_str::<DeviceId>("\"dev_nope\"").is_err());
    }
}
