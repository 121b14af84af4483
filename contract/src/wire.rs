//! Request and response bodies exchanged between worker and bridge, and the paths they travel on.
//!
//! Worker → bridge: [`LINK_PATH`], [`device_path`], [`send_path`], [`check_path`], [`media_path`],
//! [`DEAD_LETTERS_PATH`], [`replay_path`].
//! Bridge → worker: [`EVENTS_PATH`], one [`BridgeEvent`] per request, acknowledged by any 2xx.

use serde::{Deserialize, Serialize};

/// `POST` [`LinkRequest`] → [`LinkResponse`]: start (or resume) pairing a device.
pub const LINK_PATH: &str = "/v1/devices";
/// `POST` [`BridgeEvent`] on the worker.
pub const EVENTS_PATH: &str = "/bridge/v1/events";

/// `DELETE`: log the device out of WhatsApp and free its slot.
pub fn device_path(device_id: &str) -> String {
    format!("{LINK_PATH}/{device_id}")
}

/// `POST` [`SendRequest`] → [`SendResponse`].
pub fn send_path(device_id: &str) -> String {
    format!("{LINK_PATH}/{device_id}/messages")
}

/// `POST` [`CheckRequest`] → [`CheckResponse`]: which numbers are on WhatsApp.
pub fn check_path(device_id: &str) -> String {
    format!("{LINK_PATH}/{device_id}/check")
}

/// `PUT` the raw bytes of a media file (at most [`MAX_MEDIA_BYTES`]) → [`MediaRef`] without
/// `mime_type`/`file_name` set; `GET` returns the bytes. Content-addressed, so idempotent.
pub fn media_path(sha256_hex: &str) -> String {
    format!("/v1/media/{sha256_hex}")
}

/// `GET` (`?limit=N`, at most 1000) → [`DeadLetters`]: events the worker refused for good.
pub const DEAD_LETTERS_PATH: &str = "/v1/dead-letters";

/// `POST` → 202 [`Replayed`]: queue a dead letter again; 404 `not_found` for an unknown id.
pub fn replay_path(event_id: &str) -> String {
    format!("{DEAD_LETTERS_PATH}/{event_id}/replay")
}

/// WhatsApp's limit for media other than documents, and what both references allow.
pub const MAX_MEDIA_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkRequest {
    pub device_id: String,
    /// Link by an 8-character pairing code entered on this phone instead of a QR scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair_phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkResponse {
    /// The QR reference to show while waiting for a scan; `None` once linked.
    pub qr: Option<String>,
    /// The pairing code to type on `pair_phone`, when one was asked for and is ready.
    #[serde(default)]
    pub pair_code: Option<String>,
    /// The phone number when the device is already linked.
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRequest {
    /// International numbers, digits only.
    pub phones: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResponse {
    pub results: Vec<CheckResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    pub phone: String,
    pub exists: bool,
    /// The JID WhatsApp knows the number by, when it exists.
    pub jid: Option<String>,
}

/// A media file held by the bridge's content-addressed store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaRef {
    /// Lowercase hex SHA-256 of the bytes: the file's name in the store.
    pub sha256: String,
    pub size: u64,
    pub mime_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    Document,
    Sticker,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
            Self::Sticker => "sticker",
        }
    }
}

/// What a message carries; the same shape travels out (send) and in (inbound).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    Text {
        text: String,
    },
    Media {
        kind: MediaKind,
        media: MediaRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
    },
    Location {
        latitude: f64,
        longitude: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
    /// Inbound only: an emoji reaction to an earlier message (empty emoji = removed).
    Reaction {
        target_external_id: String,
        emoji: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRequest {
    /// wagate's message id; the bridge sends each id to WhatsApp at most once.
    pub message_id: String,
    /// Recipient JID (`…@s.whatsapp.net` or `…@g.us`).
    pub to: String,
    pub content: Content,
    /// A one-time code or the like: the bridge keeps its content only until the
    /// engine has it, not until the message is resolved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    /// A one-time code's expiry (Unix ms): from then on the bridge hands the message to no
    /// engine and ends it failed with [`error_code::EXPIRED`], since a late code is worthless.
    /// Absent for messages that do not expire, and left out then, so a bridge or worker that
    /// predates it reads and writes the same bodies as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

/// Where the bridge's journal stands for a message id. A retried send answers
/// with the journaled state instead of sending again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SendResponse {
    /// Handed to the engine; the outcome follows as events.
    Accepted,
    Sent {
        external_id: String,
    },
    Failed {
        code: String,
        reason: String,
    },
}

/// Error body for any non-2xx answer of the bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeError {
    pub code: String,
    pub message: String,
}

/// Error codes the worker acts upon.
pub mod error_code {
    /// The device is not linked or not connected right now: keep the message queued.
    pub const DEVICE_OFFLINE: &str = "device_offline";
    pub const DEVICE_NOT_FOUND: &str = "device_not_found";
    pub const INVALID_REQUEST: &str = "invalid_request";
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// A send's failure: the one-time code expired before the message reached WhatsApp.
    pub const EXPIRED: &str = "expired";
}

/// An event the worker refused for good, as the bridge keeps it for the operator:
/// what it was and why it was refused, never what it said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The event's `event_id`, under which it is replayed.
    pub id: String,
    pub device_id: String,
    /// The event's `type`, e.g. `inbound`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The worker's HTTP status.
    pub status: u16,
    /// The worker's error code, as far as it gave one.
    pub error: String,
    /// When the event happened and when it was refused, Unix milliseconds.
    pub created_ms: u64,
    pub dead_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetters {
    pub dead_letters: Vec<DeadLetter>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replayed {
    pub replayed: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeEvent {
    /// Unique per event; the worker ignores an id it has already applied.
    pub event_id: String,
    pub device_id: String,
    /// When it happened, in Unix milliseconds.
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    QrUpdated {
        qr: String,
    },
    PairCode {
        code: String,
    },
    Connected {
        phone: String,
    },
    Disconnected {
        reason: String,
        logged_out: bool,
    },
    MessageSent {
        message_id: String,
        external_id: String,
    },
    MessageDelivered {
        message_id: String,
    },
    MessageRead {
        message_id: String,
    },
    MessageFailed {
        message_id: String,
        code: String,
        reason: String,
    },
    Inbound {
        external_id: String,
        from: String,
        /// The name the sender set in WhatsApp, when it came with the message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        push_name: Option<String>,
        content: Content,
        /// A group message's author, as a person's JID (`from` is then the group's). Absent
        /// otherwise, and from bridges that predate it, which read and write the old bodies.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_is_flat_json_tagged_by_type() {
        let event = BridgeEvent {
            event_id: "evt_1".into(),
            device_id: "dev_a".into(),
            at_ms: 5,
            kind: EventKind::MessageFailed {
                message_id: "msg_1".into(),
                code: "engine_error".into(),
                reason: "boom".into(),
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "message_failed");
        assert_eq!(json["message_id"], "msg_1");
        assert_eq!(serde_json::from_value::<BridgeEvent>(json).unwrap(), event);
    }

    #[test]
    fn media_content_round_trips() {
        let content = Content::Media {
            kind: MediaKind::Image,
            media: MediaRef { sha256: "ab".repeat(32), size: 3, mime_type: "image/png".into(), file_name: None },
            caption: Some("hi".into()),
        };
        let json = serde_json::to_value(&content).unwrap();
        assert_eq!(json["type"], "media");
        assert_eq!(json["kind"], "image");
        assert_eq!(json["media"]["mime_type"], "image/png");
        assert!(json["media"].get("file_name").is_none());
        assert_eq!(serde_json::from_value::<Content>(json).unwrap(), content);
    }

    #[test]
    fn link_request_without_pair_phone_is_the_old_shape() {
        let req: LinkRequest = serde_json::from_str(r#"{"device_id":"dev_a"}"#).unwrap();
        assert_eq!(req.pair_phone, None);
        assert_eq!(serde_json::to_string(&req).unwrap(), r#"{"device_id":"dev_a"}"#);
    }

    #[test]
    fn a_send_without_expiry_is_the_old_shape_and_one_with_it_round_trips() {
        let old = r#"{"message_id":"msg_1","to":"1@s.whatsapp.net","content":{"type":"text","text":"hi"}}"#;
        let req: SendRequest = serde_json::from_str(old).unwrap();
        assert_eq!(req.expires_at_ms, None);
        assert_eq!(serde_json::to_string(&req).unwrap(), old);

        let otp = SendRequest { sensitive: true, expires_at_ms: Some(1_800_000_000_000), ..req };
        let json = serde_json::to_value(&otp).unwrap();
        assert_eq!(json["expires_at_ms"], 1_800_000_000_000u64);
        assert_eq!(serde_json::from_value::<SendRequest>(json).unwrap(), otp);
    }

    #[test]
    fn an_inbound_without_participant_is_the_old_shape() {
        let old = r#"{"type":"inbound","external_id":"3EB0","from":"1@s.whatsapp.net","content":{"type":"text","text":"hi"}}"#;
        let kind: EventKind = serde_json::from_str(old).unwrap();
        assert!(matches!(&kind, EventKind::Inbound { participant: None, .. }), "{kind:?}");
        assert_eq!(serde_json::to_string(&kind).unwrap(), old);
    }

    #[test]
    fn send_response_is_tagged_by_state() {
        let json = serde_json::to_string(&SendResponse::Sent { external_id: "3EB0".into() }).unwrap();
        assert_eq!(json, r#"{"state":"sent","external_id":"3EB0"}"#);
    }
}
