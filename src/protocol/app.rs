//! One object per tenant app (named by its id): settings, key hashes, rate limits, quota, the
//! device index, idempotency and the event log. What the edge and the other objects ask of it,
//! and the views it answers with.
//!
//! Its facets (allow-list, audience, auto-replies, webhooks) are sub-protocols, each in its own
//! file (`protocol::{access, audience, autoreplies, webhooks}`).

use serde::{Deserialize, Serialize};

use super::access::{AllowListHandler, AllowListOp};
use super::audience::{AudienceHandler, AudienceOp};
use super::autoreplies::{AutoReplyHandler, AutoReplyOp};
use super::webhooks::{WebhookHandler, WebhookOp};
use crate::domain::autoreply::ReplyLimits;
use crate::domain::campaign::{WarmUp, DEFAULT_OPT_OUT_KEYWORDS};
use crate::domain::device::DeviceStatus;
use crate::domain::events::Event;
use crate::domain::idempotency::{Decision, SavedResponse};
use crate::domain::ids::{AppId, DeviceId, KeyId, MessageId};

crate::protocol! {
    /// The `APPS` namespace.
    App = "APPS", AppOp, AppHandler {
        Create(Create) -> () => create,
        Get(Get) -> AppView => get,
        Update(Update) -> AppView => update,
        AddKey(AddKey) -> () => add_key,
        ListKeys(ListKeys) -> Vec<KeyView> => list_keys,
        Audit(Audit) -> Vec<AuditEntry> => list_audit,
        RevokeKey(RevokeKey) -> () => revoke_key,
        Authenticate(Authenticate) -> Tenant => authenticate,
        AddDevice(AddDevice) -> () => add_device,
        /// Sent from the device's `app_outbox`, which stores it serialized (as
        /// `store::device::AppOutboxOp`), as are `RemoveDevice`, `Record` and `Refund`: their wire
        /// forms are durable, see the tests.
        DeviceChanged(DeviceChanged) -> () => device_changed,
        RemoveDevice(RemoveDevice) -> () => remove_device,
        Record(Record) -> Recorded => record_event,
        Events(Events) -> Vec<RecordedEvent> => events,
        ListDevices(ListDevices) -> Vec<DeviceEntry> => list_devices,
        PickDevice(PickDevice) -> DeviceId => pick_device,
        ReserveSend(ReserveSend) -> Reservation => reserve_send,
        IdempotencyBegin(IdempotencyBegin) -> Decision => idempotency_begin,
        IdempotencyFinish(IdempotencyFinish) -> () => idempotency_finish,
        Refund(Refund) -> () => refund,
    }
    facets {
        AllowList(AllowListOp: AllowListHandler),
        Audience(AudienceOp: AudienceHandler),
        AutoReplies(AutoReplyOp: AutoReplyHandler),
        Webhooks(WebhookOp: WebhookHandler),
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Create {
    pub app_id: AppId,
    pub name: String,
    pub plan: Plan,
    pub key_id: KeyId,
    pub key_hash: String,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Get {
    pub period: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Update {
    pub patch: AppPatch,
    pub period: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AddKey {
    pub key_id: KeyId,
    pub key_hash: String,
    pub device_id: Option<DeviceId>,
    /// After this the key stops working by itself.
    pub expires_at: Option<u64>,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ListKeys {}

#[derive(Debug, Serialize, Deserialize)]
pub struct Audit {}

#[derive(Debug, Serialize, Deserialize)]
pub struct RevokeKey {
    pub key_id: KeyId,
    pub now: u64,
}

/// Checks a key and counts the request against its per-minute limit for `class`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Authenticate {
    pub key_id: KeyId,
    pub key_hash: String,
    pub class: LimitClass,
    /// The client's address (`CF-Connecting-IP`), checked against the allow-list.
    pub ip: Option<String>,
    /// The allow-list's own endpoints stay reachable, so a client can always fix its list.
    pub ip_exempt: bool,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AddDevice {
    pub device_id: DeviceId,
    pub label: Option<String>,
    pub now: u64,
}

/// A device's new status, mirrored here for auto-selection, and the event it makes.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeviceChanged {
    pub device_id: DeviceId,
    pub status: DeviceStatus,
    pub phone: Option<String>,
    pub event: Event,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RemoveDevice {
    pub device_id: DeviceId,
    pub event: Event,
}

/// Records an event; an inbound message may get an auto-reply, answered as `Recorded`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    pub event: Event,
}

/// Recorded events, oldest first, after sequence number `after`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Events {
    pub after: i64,
    pub limit: i64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ListDevices {}

/// The device to act for: the one asked for if connected, else the least recently used online one.
#[derive(Debug, Serialize, Deserialize)]
pub struct PickDevice {
    pub device_id: Option<DeviceId>,
}

/// Picks the sending device and reserves one unit of quota for a new message. Under an
/// `Idempotency-Key` the reservation is bound to the key: a later attempt under the same
/// key gets the same message id back, charged once.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReserveSend {
    pub device_id: Option<DeviceId>,
    pub period: String,
    pub now: u64,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Claims an `Idempotency-Key` for a request, or says what became of its earlier use.
#[derive(Debug, Serialize, Deserialize)]
pub struct IdempotencyBegin {
    pub key: String,
    pub fingerprint: String,
    pub now: u64,
    pub lease_ms: u64,
}

/// Saves the answer to replay (`None`: the attempt failed; the key is free for a retry,
/// which re-drives the message id the key is bound to).
#[derive(Debug, Serialize, Deserialize)]
pub struct IdempotencyFinish {
    pub key: String,
    pub response: Option<SavedResponse>,
}

/// Gives back the unit of a message that failed or that its device confirmed it never
/// stored; idempotent per message. A key still waiting for its answer lets go of the id.
#[derive(Debug, Serialize, Deserialize)]
pub struct Refund {
    pub message_id: MessageId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub monthly_messages: i64,
    pub api_rpm: i64,
    pub auth_rpm: i64,
    pub max_devices: i64,
}

/// Operator changes; absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppPatch {
    pub suspended: Option<bool>,
    pub monthly_messages: Option<i64>,
    pub api_rpm: Option<i64>,
    pub auth_rpm: Option<i64>,
    pub max_devices: Option<i64>,
    pub default_country_code: Option<String>,
    /// Messages used this period, as the operator corrects it.
    pub quota_used: Option<i64>,
    /// The campaign governor: warm-up of new numbers, opt-out keywords.
    pub warm_up_first_day_cap: Option<u64>,
    pub warm_up_growth_percent: Option<u64>,
    pub warm_up_uncapped_after: Option<u64>,
    pub opt_out_keywords: Option<Vec<String>>,
    /// Auto-reply rationing per sender: a rule's cooldown, replies per hour.
    pub auto_reply_cooldown_s: Option<u64>,
    pub auto_reply_hourly_cap: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyView {
    pub key_id: String,
    pub device_id: Option<String>,
    pub created_at: u64,
    pub revoked_at: Option<u64>,
    pub last_used_at: Option<u64>,
    pub expires_at: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppView {
    pub app_id: String,
    pub name: String,
    pub plan: Plan,
    pub suspended: bool,
    pub default_country_code: String,
    pub quota_period: String,
    pub quota_used: i64,
    pub quota_remaining: i64,
    pub keys: Vec<KeyView>,
    pub governor: Governor,
    pub created_at: u64,
}

/// Who is calling, once a key checks out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tenant {
    pub app_id: AppId,
    pub key_id: KeyId,
    /// A key bound to one WhatsApp account acts for that device only.
    pub device_scope: Option<DeviceId>,
    pub default_country_code: String,
    /// Rate-limit headers for the response.
    pub rate: RateHeaders,
}

/// Which per-minute limit a request counts against: `/api/auth/*` has its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitClass {
    Api,
    Auth,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RateHeaders(pub Vec<(String, String)>);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceEntry {
    pub device_id: String,
    pub label: Option<String>,
    pub status: DeviceStatus,
    pub phone: Option<String>,
    pub created_at: u64,
    pub last_seen_at: Option<u64>,
}

/// One change in the app's audit trail, newest first in a listing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: u64,
    /// `operator`, `system` or `key:<id>`.
    pub actor: String,
    pub action: String,
    /// The JSON the change was recorded with, as it was stored.
    pub detail: String,
}

/// An event as recorded, with its position in the app's event log; its body stays the JSON
/// it was stored as (the listing shows it as it is).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub seq: i64,
    pub id: String,
    pub name: String,
    pub device_id: Option<DeviceId>,
    pub data: String,
    pub at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reservation {
    pub device_id: DeviceId,
    pub message_id: MessageId,
    pub quota_remaining: i64,
}

pub const DEFAULT_COUNTRY_CODE: &str = "62";

/// Operator settings of the governor, per app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Governor {
    pub warm_up: WarmUp,
    pub opt_out_keywords: Vec<String>,
    /// Rationing of auto-replies per sender (settings saved before it existed have none).
    #[serde(default)]
    pub auto_reply: ReplyLimits,
}

impl Default for Governor {
    fn default() -> Self {
        Self {
            warm_up: WarmUp::default(),
            opt_out_keywords: DEFAULT_OPT_OUT_KEYWORDS.map(str::to_owned).to_vec(),
            auto_reply: ReplyLimits::default(),
        }
    }
}

/// A reply to queue on the device that received the message; its quota is already reserved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AutoReply {
    pub message_id: String,
    pub rule_id: String,
    /// The sender's number, digits only.
    pub to: String,
    pub text: String,
}

/// The operations a device's `app_outbox` holds, stored in the wire form of the `AppOp` of the
/// same name, so rows written by earlier releases still decode.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AppOutboxOp {
    Record(Record),
    DeviceChanged(DeviceChanged),
    RemoveDevice(RemoveDevice),
    Refund(Refund),
}

/// What recording an event answers to the device that reported it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Recorded {
    pub auto_reply: Option<AutoReply>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An operation as a device's `app_outbox` holds it: it still decodes, as `expected` says,
    /// and is written back byte for byte the same.
    fn stored(json: &str, expected: impl Fn(&AppOp) -> bool) {
        let op: AppOp = serde_json::from_str(json).unwrap();
        assert!(expected(&op), "{json} decoded as {op:?}");
        assert_eq!(serde_json::to_string(&op).unwrap(), json, "and is written the same");
    }

    const EVENT: &str = r#"{"id":"evt_otp_1","device_id":"dev_0123456789abcdef","at_ms":7,"name":"otp.expired","data":{"session_id":"s","phone_number":"628"}}"#;

    #[test]
    fn the_outbox_operations_keep_their_stored_form() {
        stored(
            &format!(
                r#"{{"op":"device_changed","device_id":"dev_0123456789abcdef","status":"online","phone":"628","event":{EVENT}}}"#
            ),
            |op| matches!(op, AppOp::DeviceChanged(DeviceChanged { status, phone: Some(_), .. }) if *status == DeviceStatus::Online),
        );
        stored(
            &format!(r#"{{"op":"remove_device","device_id":"dev_0123456789abcdef","event":{EVENT}}}"#),
            |op| matches!(op, AppOp::RemoveDevice(RemoveDevice { event, .. }) if event.id == "evt_otp_1"),
        );
        stored(
            &format!(r#"{{"op":"record","event":{EVENT}}}"#),
            |op| matches!(op, AppOp::Record(Record { event }) if event.at_ms == 7),
        );
        stored(
            r#"{"op":"refund","message_id":"msg_0123456789abcdeffedcba9876543210"}"#,
            |op| matches!(op, AppOp::Refund(Refund { message_id }) if message_id.device().as_str() == "dev_0123456789abcdef"),
        );
    }

    #[test]
    fn the_outbox_holds_only_its_operations_in_the_same_form() {
        let rows = [
            format!(
                r#"{{"op":"device_changed","device_id":"dev_0123456789abcdef","status":"online","phone":"628","event":{EVENT}}}"#
            ),
            format!(r#"{{"op":"remove_device","device_id":"dev_0123456789abcdef","event":{EVENT}}}"#),
            format!(r#"{{"op":"record","event":{EVENT}}}"#),
            r#"{"op":"refund","message_id":"msg_0123456789abcdeffedcba9876543210"}"#.to_owned(),
        ];
        for row in rows {
            let op: AppOutboxOp = serde_json::from_str(&row).unwrap();
            assert_eq!(serde_json::to_string(&op).unwrap(), row);
        }
        assert!(serde_json::from_str::<AppOutboxOp>(r#"{"op":"list_keys"}"#).is_err());
    }

    #[test]
    fn operations_without_fields_keep_their_wire_form() {
        assert_eq!(serde_json::to_string(&AppOp::from(ListKeys {})).unwrap(), r#"{"op":"list_keys"}"#);
        assert!(matches!(serde_json::from_str(r#"{"op":"list_devices"}"#).unwrap(), AppOp::ListDevices(_)));
        // A send from before idempotency keys decodes without one.
        let reserve: AppOp =
            serde_json::from_str(r#"{"op":"reserve_send","device_id":null,"period":"2026-01","now":1}"#).unwrap();
        assert!(matches!(reserve, AppOp::ReserveSend(ReserveSend { idempotency_key: None, .. })));
    }
}
