//! What happened, as webhooks will tell it: one record per event, named as the
//! LoginWA reference names them. Each dialect's webhook format is derived from it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::random_hex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventName {
    #[serde(rename = "message.incoming")]
    MessageIncoming,
    #[serde(rename = "message.sent")]
    MessageSent,
    #[serde(rename = "message.delivered")]
    MessageDelivered,
    #[serde(rename = "message.read")]
    MessageRead,
    #[serde(rename = "message.failed")]
    MessageFailed,
    #[serde(rename = "device.connected")]
    DeviceConnected,
    #[serde(rename = "device.disconnected")]
    DeviceDisconnected,
    #[serde(rename = "device.qr_ready")]
    DeviceQrReady,
    #[serde(rename = "otp.verified")]
    OtpVerified,
    #[serde(rename = "otp.expired")]
    OtpExpired,
    #[serde(rename = "campaign.paused")]
    CampaignPaused,
    #[serde(rename = "campaign.completed")]
    CampaignCompleted,
}

/// An event about to be recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `evt_…`, unique; webhook deliveries of this event carry it.
    pub id: String,
    pub name: EventName,
    /// The WhatsApp account it concerns, if any (SPWP's `accountId`).
    pub device_id: Option<String>,
    pub at_ms: u64,
    pub data: Value,
}

impl Event {
    pub fn new(name: EventName, device_id: Option<&str>, at_ms: u64, data: Value) -> Self {
        Self { id: format!("evt_{}", random_hex(12)), name, device_id: device_id.map(str::to_owned), at_ms, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_the_references_event_names() {
        assert_eq!(serde_json::to_value(EventName::DeviceQrReady).unwrap(), "device.qr_ready");
        assert_eq!(serde_json::to_value(EventName::MessageIncoming).unwrap(), "message.incoming");
        assert_eq!(serde_json::from_value::<EventName>(json!("otp.expired")).unwrap(), EventName::OtpExpired);
    }

    #[test]
    fn each_event_gets_its_own_id() {
        let a = Event::new(EventName::DeviceConnected, Some("dev_1"), 5, json!({}));
        let b = Event::new(EventName::DeviceConnected, Some("dev_1"), 5, json!({}));
        assert!(a.id.starts_with("evt_") && a.id != b.id);
    }
}
