//! Request and response bodies exchanged between worker and bridge, and the paths they travel on.
//!
//! Worker → bridge: [`LINK_PATH`], [`device_path`], [`send_path`].
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkRequest {
    pub device_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkResponse {
    /// The QR reference to show while waiting for a scan; `None` once linked.
    pub qr: Option<String>,
    /// The phone number when the device is already linked.
    pub phone: Option<String>,
}

/// What a message carries; the same shape travels out (send) and in (inbound).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Content {
    Text { text: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendRequest {
    /// wagate's message id; the bridge sends each id to WhatsApp at most once.
    pub message_id: String,
    /// Recipient JID (`…@s.whatsapp.net` or `…@g.us`).
    pub to: String,
    pub content: Content,
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
    QrUpdated { qr: String },
    Connected { phone: String },
    Disconnected { reason: String, logged_out: bool },
    MessageSent { message_id: String, external_id: String },
    MessageDelivered { message_id: String },
    MessageRead { message_id: String },
    MessageFailed { message_id: String, code: String, reason: String },
    Inbound { external_id: String, from: String, content: Content },
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
    fn send_response_is_tagged_by_state() {
        let json = serde_json::to_string(&SendResponse::Sent { external_id: "3EB0".into() }).unwrap();
        assert_eq!(json, r#"{"state":"sent","external_id":"3EB0"}"#);
    }
}
