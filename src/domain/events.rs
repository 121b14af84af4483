//! What happened, as webhooks will tell it: one record per event, with a typed body per kind,
//! named and shaped as the LoginWA reference names them (LoginWA webhooks carry the body as
//! `data` unchanged). Every other reader — the SPWP and Standard Webhooks formats, auto-replies,
//! opt-outs — `match`es on the kind, so a field renamed or missing is a compile error.
//!
//! Stored forms (the app's event log, the device's outbox) are `{"id", "device_id", "at_ms",
//! "name", "data"}`: the same JSON as before the bodies were typed, so stored events still read.

use serde::{Deserialize, Serialize};
use wagate_contract::wire::Content;

use super::autoreply::Suppressed;
use super::campaign::Progress;
use super::device::DeviceStatus;
use super::ids::{random_hex, CampaignId, DeviceId, MessageId};
use super::message::MessageStatus;

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

impl EventName {
    /// Every event, in the order `available_events` lists them.
    pub const ALL: [EventName; 12] = [
        Self::MessageIncoming,
        Self::MessageSent,
        Self::MessageDelivered,
        Self::MessageRead,
        Self::MessageFailed,
        Self::DeviceConnected,
        Self::DeviceDisconnected,
        Self::DeviceQrReady,
        Self::OtpVerified,
        Self::OtpExpired,
        Self::CampaignPaused,
        Self::CampaignCompleted,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageIncoming => "message.incoming",
            Self::MessageSent => "message.sent",
            Self::MessageDelivered => "message.delivered",
            Self::MessageRead => "message.read",
            Self::MessageFailed => "message.failed",
            Self::DeviceConnected => "device.connected",
            Self::DeviceDisconnected => "device.disconnected",
            Self::DeviceQrReady => "device.qr_ready",
            Self::OtpVerified => "otp.verified",
            Self::OtpExpired => "otp.expired",
            Self::CampaignPaused => "campaign.paused",
            Self::CampaignCompleted => "campaign.completed",
        }
    }
}

/// An event about to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_…`, unique; webhook deliveries of this event carry it.
    pub id: String,
    /// The WhatsApp account it concerns, if any (SPWP's `accountId`).
    pub device_id: Option<DeviceId>,
    pub at_ms: u64,
    pub what: What,
}

impl Event {
    pub fn new(device_id: Option<DeviceId>, at_ms: u64, what: What) -> Self {
        Self { id: format!("evt_{}", random_hex(12)), device_id, at_ms, what }
    }

    pub fn name(&self) -> EventName {
        self.what.name()
    }
}

// By hand rather than derived (`flatten` over a tagged enum), so each body's `Serialize` and
// `Deserialize` are compiled once, not once per serde buffer type: that is Wasm the edge ships.
impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut event = serializer.serialize_struct("Event", 5)?;
        event.serialize_field("id", &self.id)?;
        event.serialize_field("device_id", &self.device_id)?;
        event.serialize_field("at_ms", &self.at_ms)?;
        event.serialize_field("name", &self.name())?;
        event.serialize_field("data", &self.what.data())?;
        event.end()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EventVisitor)
    }
}

/// Reads an event's fields as they come; its body is decoded straight into the type its name
/// names, so the name must come first, as every wagate version writes it. (An event that went
/// through a `serde_json::Value`, which sorts keys, is refused rather than buffered: buffering
/// would compile every body's decoder once more.)
struct EventVisitor;

impl<'de> serde::de::Visitor<'de> for EventVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an event")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        use serde::de::Error;
        let (mut id, mut device_id, mut at_ms, mut name, mut what) = (None, None, None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "id" => id = Some(map.next_value()?),
                "device_id" => device_id = Some(map.next_value()?),
                "at_ms" => at_ms = Some(map.next_value()?),
                "name" => name = Some(map.next_value()?),
                "data" => {
                    let name = name.ok_or_else(|| A::Error::custom("an event's name must come before its data"))?;
                    what = Some(map.next_value_seed(BodyOf(name))?);
                }
                _ => drop(map.next_value::<serde::de::IgnoredAny>()?),
            }
        }
        Ok(Event {
            id: id.ok_or_else(|| A::Error::missing_field("id"))?,
            device_id: device_id.unwrap_or_default(),
            at_ms: at_ms.ok_or_else(|| A::Error::missing_field("at_ms"))?,
            what: what.ok_or_else(|| A::Error::missing_field("data"))?,
        })
    }
}

/// Decodes the body of an event named `.0`.
struct BodyOf(EventName);

impl<'de> serde::de::DeserializeSeed<'de> for BodyOf {
    type Value = What;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<What, D::Error> {
        Ok(match self.0 {
            EventName::MessageIncoming => What::MessageIncoming(Deserialize::deserialize(d)?),
            EventName::MessageSent => What::MessageSent(Deserialize::deserialize(d)?),
            EventName::MessageDelivered => What::MessageDelivered(Deserialize::deserialize(d)?),
            EventName::MessageRead => What::MessageRead(Deserialize::deserialize(d)?),
            EventName::MessageFailed => What::MessageFailed(Deserialize::deserialize(d)?),
            EventName::DeviceConnected => What::DeviceConnected(Deserialize::deserialize(d)?),
            EventName::DeviceDisconnected => What::DeviceDisconnected(Deserialize::deserialize(d)?),
            EventName::DeviceQrReady => What::DeviceQrReady(Deserialize::deserialize(d)?),
            EventName::OtpVerified => What::OtpVerified(Deserialize::deserialize(d)?),
            EventName::OtpExpired => What::OtpExpired(Deserialize::deserialize(d)?),
            EventName::CampaignPaused => What::CampaignPaused(Deserialize::deserialize(d)?),
            EventName::CampaignCompleted => What::CampaignCompleted(Deserialize::deserialize(d)?),
        })
    }
}

/// Each kind of event with its body.
#[derive(Debug, Clone, PartialEq)]
pub enum What {
    /// Boxed: by far the largest body.
    MessageIncoming(Box<Incoming>),
    MessageSent(MessageProgress),
    MessageDelivered(MessageProgress),
    MessageRead(MessageProgress),
    MessageFailed(MessageProgress),
    DeviceConnected(DeviceConnected),
    DeviceDisconnected(DeviceDisconnected),
    DeviceQrReady(QrReady),
    OtpVerified(OtpEnded),
    OtpExpired(OtpEnded),
    CampaignPaused(CampaignPaused),
    CampaignCompleted(CampaignCompleted),
}

impl What {
    pub fn name(&self) -> EventName {
        match self {
            Self::MessageIncoming(_) => EventName::MessageIncoming,
            Self::MessageSent(_) => EventName::MessageSent,
            Self::MessageDelivered(_) => EventName::MessageDelivered,
            Self::MessageRead(_) => EventName::MessageRead,
            Self::MessageFailed(_) => EventName::MessageFailed,
            Self::DeviceConnected(_) => EventName::DeviceConnected,
            Self::DeviceDisconnected(_) => EventName::DeviceDisconnected,
            Self::DeviceQrReady(_) => EventName::DeviceQrReady,
            Self::OtpVerified(_) => EventName::OtpVerified,
            Self::OtpExpired(_) => EventName::OtpExpired,
            Self::CampaignPaused(_) => EventName::CampaignPaused,
            Self::CampaignCompleted(_) => EventName::CampaignCompleted,
        }
    }

    /// The event a message's new status makes; `None` for the statuses nobody is told of.
    pub fn of_message(status: MessageStatus, progress: MessageProgress) -> Option<Self> {
        match status {
            MessageStatus::Sent => Some(Self::MessageSent(progress)),
            MessageStatus::Delivered => Some(Self::MessageDelivered(progress)),
            MessageStatus::Read => Some(Self::MessageRead(progress)),
            MessageStatus::Failed => Some(Self::MessageFailed(progress)),
            MessageStatus::Queued | MessageStatus::Sending | MessageStatus::Received => None,
        }
    }

    /// The event log's columns: the name and the body's JSON (read back only as JSON, to list).
    pub fn stored(&self) -> (&'static str, String) {
        (self.name().as_str(), serde_json::to_string(&self.data()).expect("event bodies serialise"))
    }

    /// The body alone, as LoginWA and Standard Webhooks carry it in `data`.
    pub fn data(&self) -> Data<'_> {
        Data(self)
    }
}

/// An event's body without its name; serialises as the body's own fields, in their order.
pub struct Data<'a>(&'a What);

impl Serialize for Data<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            What::MessageIncoming(d) => d.serialize(serializer),
            What::MessageSent(d) | What::MessageDelivered(d) | What::MessageRead(d) | What::MessageFailed(d) => {
                d.serialize(serializer)
            }
            What::DeviceConnected(d) => d.serialize(serializer),
            What::DeviceDisconnected(d) => d.serialize(serializer),
            What::DeviceQrReady(d) => d.serialize(serializer),
            What::OtpVerified(d) | What::OtpExpired(d) => d.serialize(serializer),
            What::CampaignPaused(d) => d.serialize(serializer),
            What::CampaignCompleted(d) => d.serialize(serializer),
        }
    }
}

/// `message.incoming`: a message someone sent one of the app's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incoming {
    pub message_id: MessageId,
    /// The sender's number, or the group's id for a group message: the JID without its server.
    pub from: String,
    /// The text, caption, place name or emoji, when the message has one.
    pub body: Option<String>,
    pub device_id: DeviceId,
    pub external_id: String,
    /// The name the sender set in WhatsApp.
    pub name: Option<String>,
    /// Sent to a group (`…@g.us`) rather than to the number itself.
    pub group: bool,
    /// In a group, the number of the member who wrote it (`from` is the group's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
    /// `text`, `image`, `video`, `audio`, `document`, `sticker`, `location` or `reaction`.
    #[serde(rename = "type")]
    pub kind: String,
    pub content: Content,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<InboundMedia>,
    /// What the app's auto-reply rules made of it, once recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_reply: Option<AutoReplyNote>,
}

impl Incoming {
    /// The chat the message came from, as a JID.
    pub fn remote_jid(&self) -> String {
        let server = if self.group { "g.us" } else { "s.whatsapp.net" };
        format!("{}@{server}", self.from)
    }
}

/// An inbound file, with the link that serves it for a limited time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMedia {
    pub mime_type: String,
    pub size: u64,
    pub sha256: String,
    pub file_name: Option<String>,
    pub url: String,
    pub url_expires_at: String,
}

/// Which rule answered an inbound message, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NoteFields", into = "NoteFields")]
pub struct AutoReplyNote {
    pub rule_id: String,
    pub outcome: AutoReplyOutcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AutoReplyOutcome {
    /// The reply was queued as this message.
    Queued { message_id: String },
    /// The rationing held the reply back.
    Suppressed { suppressed: Suppressed },
    /// The reply could not go out (`quota_exceeded`, `device_not_connected`).
    Skipped { skipped: String },
}

/// A note as it is written: the rule and the one field its outcome names.
#[derive(Serialize, Deserialize)]
struct NoteFields {
    rule_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    suppressed: Option<Suppressed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    skipped: Option<String>,
}

impl TryFrom<NoteFields> for AutoReplyNote {
    type Error = &'static str;

    fn try_from(note: NoteFields) -> Result<Self, Self::Error> {
        let outcome = match (note.message_id, note.suppressed, note.skipped) {
            (Some(message_id), None, None) => AutoReplyOutcome::Queued { message_id },
            (None, Some(suppressed), None) => AutoReplyOutcome::Suppressed { suppressed },
            (None, None, Some(skipped)) => AutoReplyOutcome::Skipped { skipped },
            _ => return Err("an auto-reply note names exactly one of message_id, suppressed, skipped"),
        };
        Ok(Self { rule_id: note.rule_id, outcome })
    }
}

impl From<AutoReplyNote> for NoteFields {
    fn from(note: AutoReplyNote) -> Self {
        let mut fields = NoteFields { rule_id: note.rule_id, message_id: None, suppressed: None, skipped: None };
        match note.outcome {
            AutoReplyOutcome::Queued { message_id } => fields.message_id = Some(message_id),
            AutoReplyOutcome::Suppressed { suppressed } => fields.suppressed = Some(suppressed),
            AutoReplyOutcome::Skipped { skipped } => fields.skipped = Some(skipped),
        }
        fields
    }
}

/// `message.sent|delivered|read|failed`: an outbound message moved on. `S` is how the status is
/// written: the stored `MessageStatus` (`DELIVERED`), or LoginWA's lowercase (`lowercase`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageProgress<S = MessageStatus> {
    pub message_id: MessageId,
    pub device_id: DeviceId,
    /// The recipient as the client wrote it (number or group JID).
    pub phone: String,
    pub remote_jid: String,
    pub status: S,
    pub external_id: Option<String>,
    pub error_code: Option<String>,
    pub error_reason: Option<String>,
    pub trace_id: String,
    /// When it reached each status (Unix ms), as far as known; absent from events stored by
    /// releases that did not record them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<u64>,
}

impl MessageProgress {
    /// The same progress with the status as LoginWA's webhooks write it: `delivered`, as the
    /// reference writes every status, and without the times of each status, which its bodies
    /// do not carry.
    pub fn lowercase(&self) -> MessageProgress<&'static str> {
        let Self {
            message_id,
            device_id,
            phone,
            remote_jid,
            status,
            external_id,
            error_code,
            error_reason,
            trace_id,
            ..
        } = self.clone();
        let status = status.as_lowercase();
        MessageProgress {
            message_id,
            device_id,
            phone,
            remote_jid,
            status,
            external_id,
            error_code,
            error_reason,
            trace_id,
            sent_at: None,
            delivered_at: None,
            read_at: None,
        }
    }
}

/// `device.connected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceConnected {
    pub device_id: DeviceId,
    pub status: DeviceStatus,
    pub phone_number: String,
}

/// `device.disconnected`: it dropped, was logged out, or was deleted (`status: deleted`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceDisconnected {
    pub device_id: DeviceId,
    pub status: DeviceStatus,
    pub phone_number: Option<String>,
    pub reason: String,
    pub logged_out: bool,
}

/// `device.qr_ready`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QrReady {
    pub device_id: DeviceId,
    pub status: DeviceStatus,
    pub qr_code: String,
}

/// `otp.verified|expired`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtpEnded {
    pub session_id: String,
    pub phone_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
}

/// `campaign.paused`: the governor stopped it, and says why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignPaused {
    pub campaign_id: CampaignId,
    pub name: String,
    pub reason: String,
    pub progress: ProgressReport,
}

/// `campaign.completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignCompleted {
    pub campaign_id: CampaignId,
    pub name: String,
    pub progress: ProgressReport,
}

/// A campaign's progress as its events and views show it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProgressReport {
    pub total: u64,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub pending: u64,
    pub percentage: f64,
}

impl From<Progress> for ProgressReport {
    fn from(p: Progress) -> Self {
        Self {
            total: p.total,
            sent: p.sent,
            delivered: p.delivered,
            failed: p.failed,
            pending: p.pending,
            percentage: p.percentage(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn device() -> DeviceId {
        DeviceId::parse("dev_0123456789abcdef").unwrap()
    }

    #[test]
    fn names_are_the_references_event_names() {
        for name in EventName::ALL {
            assert_eq!(serde_json::to_value(name).unwrap(), name.as_str());
            assert_eq!(EventName::parse(name.as_str()), Some(name));
        }
        assert_eq!(serde_json::from_value::<EventName>(json!("otp.expired")).unwrap(), EventName::OtpExpired);
    }

    #[test]
    fn each_event_gets_its_own_id() {
        let what =
            || What::OtpExpired(OtpEnded { session_id: "s".into(), phone_number: "62".into(), verified_at: None });
        let (a, b) = (Event::new(None, 5, what()), Event::new(None, 5, what()));
        assert!(a.id.starts_with("evt_") && a.id != b.id);
    }

    /// The stored form from before the bodies were typed: an outbox row or event-log entry
    /// written by an older deployment reads as the typed event.
    #[test]
    fn an_event_stored_untyped_reads_typed() {
        const STORED: &str = r#"{"id": "evt_1", "name": "message.incoming", "device_id": "dev_0123456789abcdef",
            "at_ms": 7, "data": {"message_id": "msg_0123456789abcdef0123456789abcdef", "external_id": "3EB0",
            "device_id": "dev_0123456789abcdef", "from": "6281234567890", "name": null, "group": false,
            "type": "text", "body": "STOP", "content": {"type": "text", "text": "STOP"},
            "auto_reply": {"rule_id": "ar_1", "suppressed": "cooldown"}}}"#;
        let stored: serde_json::Value = serde_json::from_str(STORED).unwrap();
        let event: Event = serde_json::from_str(STORED).unwrap();
        let What::MessageIncoming(incoming) = &event.what else { panic!("{event:?}") };
        assert_eq!(incoming.body.as_deref(), Some("STOP"));
        assert_eq!(
            incoming.auto_reply.as_ref().unwrap().outcome,
            AutoReplyOutcome::Suppressed { suppressed: Suppressed::Cooldown }
        );
        assert_eq!(serde_json::to_value(&event).unwrap(), stored);
        let (name, data) = event.what.stored();
        assert_eq!(
            (name, serde_json::from_str::<serde_json::Value>(&data).unwrap()),
            ("message.incoming", stored["data"].clone())
        );
        assert!(serde_json::from_value::<Event>(stored).is_err(), "a body before its name is refused");
        let nameless = json!({"id": "evt_1", "at_ms": 7, "data": {}});
        assert!(serde_json::from_value::<Event>(nameless).is_err());
    }

    #[test]
    fn auto_reply_notes_keep_their_three_forms() {
        for note in [
            json!({"rule_id": "ar_1", "message_id": "msg_1"}),
            json!({"rule_id": "ar_1", "suppressed": "hourly_cap"}),
            json!({"rule_id": "ar_1", "skipped": "quota_exceeded"}),
        ] {
            let parsed: AutoReplyNote = serde_json::from_value(note.clone()).unwrap();
            assert_eq!(serde_json::to_value(parsed).unwrap(), note);
        }
        assert!(serde_json::from_value::<AutoReplyNote>(json!({"rule_id": "ar_1"})).is_err());
    }

    #[test]
    fn a_group_message_comes_from_its_group() {
        let what = |group| Incoming {
            message_id: MessageId::generate(&device()),
            from: "120363025246125486".into(),
            body: None,
            device_id: device(),
            external_id: "3EB0".into(),
            name: None,
            group,
            participant: None,
            kind: "text".into(),
            content: Content::Text { text: "hi".into() },
            media: None,
            auto_reply: None,
        };
        assert_eq!(what(true).remote_jid(), "120363025246125486@g.us");
        assert_eq!(what(false).remote_jid(), "120363025246125486@s.whatsapp.net");
    }

    #[test]
    fn a_message_status_names_its_event() {
        let progress = MessageProgress {
            message_id: MessageId::generate(&device()),
            device_id: device(),
            phone: "6281234567890".into(),
            remote_jid: "6281234567890@s.whatsapp.net".into(),
            status: MessageStatus::Read,
            external_id: None,
            error_code: None,
            error_reason: None,
            trace_id: "t".into(),
            sent_at: None,
            delivered_at: None,
            read_at: None,
        };
        assert_eq!(What::of_message(MessageStatus::Read, progress.clone()).unwrap().name(), EventName::MessageRead);
        assert!(What::of_message(MessageStatus::Sending, progress).is_none());
    }
}
