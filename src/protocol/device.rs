//! Linked WhatsApp numbers, one object per device (named by its id): what the edge and the
//! campaigns ask of them, and the views they answer with.

use serde::{Deserialize, Serialize};
use wagate_contract::wire::{BridgeEvent, Content};

use crate::domain::device::DeviceStatus;
use crate::domain::ids::{AppId, DeviceId, MessageId};
use crate::domain::message::{Direction, MessageStatus, Priority};
use crate::domain::phone::Recipient;

crate::protocol! {
    /// The `DEVICES` namespace.
    Device = "DEVICES", DeviceOp, DeviceHandler {
        Create(CreateDevice) -> DeviceView => create,
        Get(GetDevice) -> DeviceView => get,
        /// A fresh pairing session, for a device waiting for a scan or unlinked.
        RefreshQr(RefreshQr) -> DeviceView => refresh_qr,
        /// Logs the device out of WhatsApp and retires it; its messages stay readable.
        Delete(DeleteDevice) -> () => delete,
        Enqueue(Enqueue) -> MessageView => enqueue,
        /// Asked after an `Enqueue` whose answer was lost: the message if it is held. If it is
        /// not, it never will be (a late `Enqueue` of it is refused), so its quota can go back.
        Withdraw(Withdraw) -> Option<MessageView> => withdraw,
        GetMessage(GetMessage) -> MessageView => get_message,
        /// The message once WhatsApp took it (SENT or later) or refused it (FAILED), or as it
        /// stands after `within_ms` or while the device is not online (it then waits for a
        /// reconnect, not for WhatsApp). An old object does not know it: the edge answers as queued.
        AwaitOutcome(AwaitOutcome) -> MessageView => await_outcome,
        Event(ApplyEvent) -> () => event,
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CreateDevice {
    pub device_id: DeviceId,
    pub app_id: AppId,
    pub label: Option<String>,
    pub pair_phone: Option<String>,
    pub now: u64,
}

/// Every operation the edge sends names the app it acts for: another app's device is not
/// found, as if absent.
#[derive(Debug, Serialize, Deserialize)]
pub struct GetDevice {
    pub app_id: AppId,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RefreshQr {
    pub app_id: AppId,
    /// Pair by code for this number instead of by QR.
    pub pair_phone: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct DeleteDevice {
    pub app_id: AppId,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Enqueue {
    pub message: NewMessage,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Withdraw {
    pub app_id: AppId,
    pub message_id: MessageId,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GetMessage {
    pub app_id: AppId,
    pub message_id: MessageId,
}

/// Answered from the object's memory, not with a durable timer: the wait is the request's own
/// bound, and whatever happens after it is told by webhooks, as for any queued message.
#[derive(Debug, Serialize, Deserialize)]
pub struct AwaitOutcome {
    pub app_id: AppId,
    pub message_id: MessageId,
    pub within_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyEvent {
    pub event: BridgeEvent,
    /// Where clients reach the API tier, for the download links of inbound media.
    pub origin: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewMessage {
    pub message_id: MessageId,
    pub app_id: AppId,
    pub recipient: Recipient,
    pub content: Content,
    pub trace_id: String,
    pub meta: Option<serde_json::Value>,
    pub priority: Priority,
    /// A one-time code valid until then: its text is withheld once WhatsApp has it, and it is
    /// never sent after this (it ends FAILED `expired` instead: a late code is worthless).
    pub code_expires_at: Option<u64>,
    /// The campaign contact this message is for, told of the message's progress.
    #[serde(default)]
    pub campaign: Option<CampaignRef>,
    pub now: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignRef {
    pub campaign_id: String,
    pub contact: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceView {
    pub device_id: String,
    pub label: Option<String>,
    pub status: DeviceStatus,
    pub qr: Option<String>,
    pub pair_code: Option<String>,
    pub phone: Option<String>,
    pub disconnect_reason: Option<String>,
    pub created_at: u64,
    pub last_seen_at: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageView {
    pub id: String,
    pub device_id: String,
    pub recipient: Recipient,
    pub content: Content,
    pub status: MessageStatus,
    pub external_id: Option<String>,
    pub error_code: Option<String>,
    pub error_reason: Option<String>,
    pub trace_id: String,
    pub created_at: u64,
    pub sent_at: Option<u64>,
    pub delivered_at: Option<u64>,
    pub read_at: Option<u64>,
    pub failed_at: Option<u64>,
    /// Absent from the objects of releases that stored outbound messages only.
    #[serde(default)]
    pub direction: Direction,
    /// An inbound group message's author, by number (`recipient` is then the group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operations keep the wire form of the enum they replaced, so an edge and an object of
    /// different releases (during a deployment) still understand each other.
    #[test]
    fn operations_keep_their_wire_form() {
        let app_id = AppId::generate();
        let wire = |op: DeviceOp| serde_json::to_value(op).unwrap();
        assert_eq!(
            wire(RefreshQr { app_id: app_id.clone(), pair_phone: Some("628123".into()) }.into()),
            serde_json::json!({"op": "refresh_qr", "app_id": app_id.as_str(), "pair_phone": "628123"})
        );
        assert_eq!(
            wire(DeleteDevice { app_id: app_id.clone() }.into()),
            serde_json::json!({"op": "delete", "app_id": app_id.as_str()})
        );
        let old = format!(r#"{{"op":"get","app_id":"{}"}}"#, app_id.as_str());
        assert!(matches!(serde_json::from_str(&old).unwrap(), DeviceOp::Get(GetDevice { .. })));
    }
}
