//! Webhook bodies and signatures in the three formats wagate speaks, and the retry schedule.
//! Pure: the delivery loop hands in the event, the secret and the clock.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::device::DeviceStatus;
use super::events::{Data, Event, EventName, MessageProgress, What};
use super::ids::{DeviceId, MessageId};
use super::message::MessageStatus;
use super::phone::Recipient;
use super::time;
// SPWP's one payload renderer, which its message lookups use too.
use crate::dialect::spwp;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `X-LoginWA-Signature`: hex HMAC of the raw body.
    #[default]
    Loginwa,
    /// `X-WA-Signature: t=<ms>,v1=<hex HMAC of "<ms>.<body>">`.
    Spwp,
    /// Standard Webhooks: `webhook-signature: v1,<base64 HMAC of "<id>.<s>.<body>">`.
    Standard,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "loginwa" => Some(Self::Loginwa),
            "spwp" => Some(Self::Spwp),
            "standard" => Some(Self::Standard),
            _ => None,
        }
    }

    /// A body's time: LoginWA's reference prints `2026-06-01T12:00:00+00:00`; SPWP's, and
    /// Standard Webhooks bodies, carry milliseconds.
    pub fn timestamp(self, ms: u64) -> String {
        match self {
            Self::Loginwa => time::seconds_offset(ms),
            Self::Spwp | Self::Standard => time::millis(ms),
        }
    }

    /// Whether a replaced secret goes on signing through its grace. `X-LoginWA-Signature` is
    /// one bare hex HMAC, with no room for a second signature, so a LoginWA endpoint's new
    /// secret takes over at once; SPWP's and Standard Webhooks' headers carry one signature
    /// per secret.
    pub fn signs_with_previous_secret(self) -> bool {
        !matches!(self, Self::Loginwa)
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// A new signing secret in the form the format's receivers expect.
pub fn new_secret(format: Format) -> String {
    let raw = super::ids::random_hex(24);
    match format {
        Format::Standard => {
            format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(hex::decode(raw).expect("hex")))
        }
        Format::Loginwa | Format::Spwp => format!("whsec_{raw}"),
    }
}

/// The HMAC key of a secret: Standard Webhooks signs with the base64-decoded part of
/// `whsec_…`; the other formats with the secret's bytes as given.
fn key_of(format: Format, secret: &str) -> Vec<u8> {
    match (format, secret.strip_prefix("whsec_")) {
        (Format::Standard, Some(encoded)) => {
            base64::engine::general_purpose::STANDARD.decode(encoded).unwrap_or_else(|_| secret.as_bytes().to_vec())
        }
        _ => secret.as_bytes().to_vec(),
    }
}

/// SPWP's event names; events it has none for are not sent to `spwp` endpoints.
fn spwp_name(name: EventName) -> Option<&'static str> {
    match name {
        EventName::MessageIncoming => Some(SPWP_RECEIVED),
        EventName::MessageSent | EventName::MessageDelivered | EventName::MessageRead | EventName::MessageFailed => {
            Some(SPWP_STATUS)
        }
        EventName::DeviceConnected => Some("ACCOUNT_CONNECTED"),
        EventName::DeviceDisconnected => Some("ACCOUNT_DISCONNECTED"),
        _ => None,
    }
}

const SPWP_RECEIVED: &str = "MESSAGE_RECEIVED";
const SPWP_STATUS: &str = "MESSAGE_STATUS";
/// wagate's name for a test delivery in SPWP's words (the reference has no test event).
pub const SPWP_TEST: &str = "WEBHOOK_TEST";

/// The events an endpoint's `events` filter entry stands for: a LoginWA name is itself; an
/// SPWP name is every event SPWP delivers under it (`MESSAGE_STATUS` is four), so a client
/// written from either reference can subscribe in its own words. `None` for unknown names.
pub fn events_named(name: &str) -> Option<Vec<EventName>> {
    if let Some(event) = EventName::parse(name) {
        return Some(vec![event]);
    }
    let named: Vec<EventName> = EventName::ALL.into_iter().filter(|e| spwp_name(*e) == Some(name)).collect();
    (!named.is_empty()).then_some(named)
}

/// `{"event"|"type": <name>, "timestamp", "data"}`: LoginWA and Standard Webhooks bodies.
#[derive(Serialize)]
struct NamedBody<'a, D> {
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    timestamp: String,
    data: D,
}

/// LoginWA's `data`: the event's body, a message's status in lowercase as the reference
/// writes statuses (`delivered`).
#[derive(Serialize)]
#[serde(untagged)]
enum LoginwaData<'a> {
    Progress(Box<MessageProgress<&'static str>>),
    Other(Data<'a>),
}

fn loginwa_data(what: &What) -> LoginwaData<'_> {
    match what {
        What::MessageSent(m) | What::MessageDelivered(m) | What::MessageRead(m) | What::MessageFailed(m) => {
            LoginwaData::Progress(Box::new(m.lowercase()))
        }
        other => LoginwaData::Other(other.data()),
    }
}

/// SPWP's envelope: `{"event", "accountId", "occurredAt", "data"}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpwpBody<'a, D> {
    event: &'a str,
    account_id: Option<&'a str>,
    occurred_at: String,
    data: D,
}

#[derive(Serialize)]
#[serde(untagged)]
enum SpwpData<'a> {
    Received(SpwpReceived<'a>),
    Status(SpwpStatus<'a>),
    Account(SpwpAccount<'a>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpwpReceived<'a> {
    id: &'a MessageId,
    direction: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    remote_jid: String,
    /// A group message's author as a JID (wagate's addition; `remoteJid` is the group's).
    #[serde(skip_serializing_if = "Option::is_none")]
    participant: Option<String>,
    external_id: &'a str,
    status: &'static str,
    payload: serde_json::Value,
}

/// `…At` fields appear once the message reached that status; the error only on failure.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpwpStatus<'a> {
    id: &'a MessageId,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
    status: MessageStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_reason: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpwpAccount<'a> {
    status: DeviceStatus,
    phone_number: Option<&'a str>,
    reason: Option<&'a str>,
}

fn spwp_data(what: &What) -> Option<SpwpData<'_>> {
    Some(match what {
        What::MessageIncoming(m) => {
            // The payload as `GET /public/messages/{id}` shows it, with the file's link for media.
            let (kind, mut payload) = spwp::content(&m.content);
            if let (Some(media), Some(fields)) = (&m.media, payload.as_object_mut()) {
                fields.insert("mediaUrl".into(), media.url.as_str().into());
            }
            SpwpData::Received(SpwpReceived {
                id: &m.message_id,
                direction: "IN",
                kind,
                remote_jid: m.remote_jid(),
                participant: m.participant.clone().map(|number| Recipient::Phone(number).jid()),
                external_id: &m.external_id,
                status: "RECEIVED",
                payload,
            })
        }
        What::MessageSent(m) | What::MessageDelivered(m) | What::MessageRead(m) | What::MessageFailed(m) => {
            let failed = m.status == MessageStatus::Failed;
            SpwpData::Status(SpwpStatus {
                id: &m.message_id,
                external_id: m.external_id.as_deref(),
                status: m.status,
                sent_at: m.sent_at.map(time::millis),
                delivered_at: m.delivered_at.map(time::millis),
                read_at: m.read_at.map(time::millis),
                error_code: m.error_code.as_deref().filter(|_| failed),
                error_reason: m.error_reason.as_deref().filter(|_| failed),
            })
        }
        What::DeviceConnected(d) => {
            SpwpData::Account(SpwpAccount { status: d.status, phone_number: Some(&d.phone_number), reason: None })
        }
        What::DeviceDisconnected(d) => SpwpData::Account(SpwpAccount {
            status: d.status,
            phone_number: d.phone_number.as_deref(),
            reason: Some(&d.reason),
        }),
        What::DeviceQrReady(_)
        | What::OtpVerified(_)
        | What::OtpExpired(_)
        | What::CampaignPaused(_)
        | What::CampaignCompleted(_) => return None,
    })
}

/// The test delivery an endpoint's owner asks for: its event name and body. LoginWA and
/// Standard Webhooks endpoints get `webhook.test`; SPWP ones an SPWP envelope named
/// [`SPWP_TEST`] with the endpoint's account (if it is limited to one) as `accountId`; each
/// with its format's time.
pub fn test_body(format: Format, webhook_id: &str, account_id: Option<&str>, at_ms: u64) -> (String, String) {
    const MESSAGE: &str = "This is a test event from wagate";
    let timestamp = format.timestamp(at_ms);
    let body = match format {
        Format::Loginwa | Format::Standard => {
            #[derive(Serialize)]
            struct TestData<'a> {
                message: &'a str,
                webhook_id: &'a str,
            }
            #[derive(Serialize)]
            struct Test<'a> {
                data: TestData<'a>,
                event: &'a str,
                timestamp: String,
                r#type: &'a str,
            }
            let data = TestData { message: MESSAGE, webhook_id };
            let test = Test { data, event: TEST, timestamp, r#type: TEST };
            return (TEST.to_owned(), serde_json::to_string(&test).expect("a test body always encodes"));
        }
        Format::Spwp => {
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase")]
            struct TestData<'a> {
                webhook_id: &'a str,
                message: &'a str,
            }
            let data = TestData { webhook_id, message: MESSAGE };
            SpwpBody { event: SPWP_TEST, account_id, occurred_at: timestamp, data }
        }
    };
    (SPWP_TEST.to_owned(), serde_json::to_string(&body).expect("a test body always encodes"))
}

const TEST: &str = "webhook.test";

/// The body a delivery of `event` carries, fixed once for the delivery's life, and the event
/// name its headers carry; `None` when the format has no name for the event.
pub fn body(format: Format, event: &Event) -> Option<(String, Vec<u8>)> {
    let name = event.name().as_str();
    let timestamp = format.timestamp(event.at_ms);
    let (header_name, body) = match format {
        Format::Loginwa => {
            let body = NamedBody { event: Some(name), kind: None, timestamp, data: loginwa_data(&event.what) };
            (name, serde_json::to_vec(&body))
        }
        Format::Standard => {
            let body = NamedBody { event: None, kind: Some(name), timestamp, data: event.what.data() };
            (name, serde_json::to_vec(&body))
        }
        Format::Spwp => {
            let spwp = spwp_name(event.name())?;
            let body = SpwpBody {
                event: spwp,
                account_id: event.device_id.as_ref().map(DeviceId::as_str),
                occurred_at: timestamp,
                data: spwp_data(&event.what)?,
            };
            (spwp, serde_json::to_vec(&body))
        }
    };
    Some((header_name.to_owned(), body.expect("webhook bodies serialise")))
}

/// The headers of one delivery attempt. `secrets` are the current one first, then the previous
/// one during a rotation's grace period where the format keeps it
/// (`Format::signs_with_previous_secret`); LoginWA's single signature is the current secret's.
pub fn headers(
    format: Format,
    secrets: &[&str],
    delivery_id: &str,
    event: &str,
    body: &[u8],
    now_ms: u64,
) -> Vec<(&'static str, String)> {
    match format {
        Format::Loginwa => {
            let signature = hex::encode(hmac(&key_of(format, secrets[0]), &[body]));
            vec![("x-loginwa-event", event.to_owned()), ("x-loginwa-signature", signature)]
        }
        Format::Spwp => {
            let ts = now_ms.to_string();
            let v1: Vec<String> = secrets
                .iter()
                .map(|s| format!("v1={}", hex::encode(hmac(&key_of(format, s), &[ts.as_bytes(), b".", body]))))
                .collect();
            vec![
                ("x-wa-event", event.to_owned()),
                ("x-wa-delivery-id", delivery_id.to_owned()),
                ("x-wa-timestamp", ts.clone()),
                ("x-wa-signature", format!("t={ts},{}", v1.join(","))),
            ]
        }
        Format::Standard => {
            let ts = (now_ms / 1000).to_string();
            let signatures: Vec<String> = secrets
                .iter()
                .map(|s| {
                    let mac = hmac(&key_of(format, s), &[delivery_id.as_bytes(), b".", ts.as_bytes(), b".", body]);
                    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac))
                })
                .collect();
            vec![
                ("webhook-id", delivery_id.to_owned()),
                ("webhook-timestamp", ts),
                ("webhook-signature", signatures.join(" ")),
            ]
        }
    }
}

/// Delay before retry `n` (1-based): the Standard Webhooks / Svix schedule (5 s, 5 min, 30 min,
/// 2 h, 5 h, then 10 h), so a receiver down for hours still gets everything. `jitter` in
/// [-1, 1] spreads retries ±10 % so recovering receivers are not hit all at once.
pub fn retry_delay_ms(n: u32, jitter: f64) -> u64 {
    const SCHEDULE_S: [u64; 6] = [5, 300, 1800, 7200, 18_000, 36_000];
    let base = SCHEDULE_S[(n.max(1) as usize - 1).min(SCHEDULE_S.len() - 1)] * 1000;
    (base as f64 * (1.0 + 0.1 * jitter.clamp(-1.0, 1.0))) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::{DeviceConnected, InboundMedia, Incoming, MessageProgress, OtpEnded, QrReady};
    use serde_json::Value;
    use wagate_contract::wire::Content;

    const DEVICE: &str = "dev_0123456789abcdef";

    #[test]
    fn the_test_body_is_as_receivers_got_it() {
        // Keys sorted, as `json!` wrote them before (its maps are sorted).
        let loginwa = r#"{"data":{"message":"This is a test event from wagate","webhook_id":"wh_1"},"event":"webhook.test","timestamp":"2026-01-01T00:00:00.000Z","type":"webhook.test"}"#;
        let test = test_body(Format::Standard, "wh_1", Some(DEVICE), 1_767_225_600_000);
        assert_eq!(test, ("webhook.test".to_owned(), loginwa.to_owned()));
        let (name, body) = test_body(Format::Loginwa, "wh_1", Some(DEVICE), 1_767_225_600_000);
        assert_eq!(name, "webhook.test");
        assert_eq!(body, loginwa.replace("00:00:00.000Z", "00:00:00+00:00"));
    }

    /// SPWP's envelope, as its events are: an SPWP receiver parses it like any other.
    #[test]
    fn an_spwp_test_body_is_an_spwp_event() {
        let (name, body) = test_body(Format::Spwp, "wh_1", Some(DEVICE), DELIVERED_AT);
        assert_eq!(name, "WEBHOOK_TEST");
        assert_eq!(
            body,
            format!(
                r#"{{"event":"WEBHOOK_TEST","accountId":"{DEVICE}","occurredAt":"2026-05-04T13:24:21.402Z","data":{{"webhookId":"wh_1","message":"This is a test event from wagate"}}}}"#
            )
        );
        let (_, unscoped) = test_body(Format::Spwp, "wh_1", None, DELIVERED_AT);
        assert!(unscoped.contains(r#""accountId":null"#), "{unscoped}");
    }

    #[test]
    fn a_filter_takes_either_references_names() {
        assert_eq!(events_named("message.read"), Some(vec![EventName::MessageRead]));
        assert_eq!(events_named("MESSAGE_RECEIVED"), Some(vec![EventName::MessageIncoming]));
        let status =
            [EventName::MessageSent, EventName::MessageDelivered, EventName::MessageRead, EventName::MessageFailed];
        assert_eq!(events_named("MESSAGE_STATUS"), Some(status.to_vec()));
        assert_eq!(events_named("ACCOUNT_CONNECTED"), Some(vec![EventName::DeviceConnected]));
        assert_eq!(events_named("ACCOUNT_DISCONNECTED"), Some(vec![EventName::DeviceDisconnected]));
        for unknown in ["", "message_received", "WEBHOOK_TEST", "webhook.test", "MESSAGE_STATUS ", &"A".repeat(10_000)]
        {
            assert_eq!(events_named(unknown), None, "{unknown:?}");
        }
    }
    const MESSAGE: &str = "msg_0123456789abcdef0123456789abcdef";

    fn device() -> DeviceId {
        DeviceId::parse(DEVICE).unwrap()
    }

    fn at(what: What) -> Event {
        Event { id: "evt_1".into(), device_id: Some(device()), at_ms: 1_780_000_000_000, what }
    }

    fn delivered() -> Event {
        at(What::MessageDelivered(MessageProgress {
            message_id: MessageId::parse(MESSAGE).unwrap(),
            device_id: device(),
            phone: "9647507644809".into(),
            remote_jid: "9647507644809@s.whatsapp.net".into(),
            status: MessageStatus::Delivered,
            external_id: Some("3EB0870363BFDA49AB9A72".into()),
            error_code: None,
            error_reason: None,
            trace_id: "trace".into(),
            sent_at: None,
            delivered_at: Some(DELIVERED_AT),
            read_at: None,
        }))
    }

    /// The reference's example times: 2026-05-04T13:24:21.402Z and 13:24:19.121Z.
    const DELIVERED_AT: u64 = 1_777_901_061_402;
    const SENT_AT: u64 = 1_777_901_059_121;

    /// `event` when the reference's examples happened.
    fn as_in_the_reference(event: Event) -> Event {
        Event { at_ms: DELIVERED_AT, ..event }
    }

    fn incoming(from: &str, group: bool, text: &str) -> Incoming {
        Incoming {
            message_id: MessageId::parse(MESSAGE).unwrap(),
            from: from.into(),
            body: Some(text.into()),
            device_id: device(),
            external_id: "3EB08703".into(),
            name: None,
            group,
            participant: None,
            kind: "text".into(),
            content: Content::Text { text: text.into() },
            media: None,
            auto_reply: None,
        }
    }

    fn text(body: &[u8]) -> &str {
        std::str::from_utf8(body).unwrap()
    }

    /// The reference's `message.incoming` example, key for key and in its order.
    #[test]
    fn loginwa_incoming_is_the_references_example() {
        let (name, body) =
            body(Format::Loginwa, &at(What::MessageIncoming(Box::new(incoming("6281234567890", false, "Hello!")))))
                .unwrap();
        assert_eq!(name, "message.incoming");
        let expected = format!(
            r#"{{"event":"message.incoming","timestamp":"2026-05-28T20:26:40+00:00","data":{{"message_id":"{MESSAGE}","from":"6281234567890","body":"Hello!","device_id":"{DEVICE}","#
        );
        assert!(text(&body).starts_with(&expected), "{}", text(&body));
    }

    #[test]
    fn loginwa_signs_the_raw_body_in_hex() {
        let (name, body) = body(Format::Loginwa, &delivered()).unwrap();
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (parsed["event"].as_str(), parsed["data"]["status"].as_str()),
            (Some("message.delivered"), Some("delivered")),
            "LoginWA writes statuses in lowercase"
        );
        let expected = format!(
            r#"{{"event":"message.delivered","timestamp":"2026-05-28T20:26:40+00:00","data":{{"message_id":"{MESSAGE}","device_id":"{DEVICE}","phone":"9647507644809","remote_jid":"9647507644809@s.whatsapp.net","status":"delivered","external_id":"3EB0870363BFDA49AB9A72","error_code":null,"error_reason":null,"trace_id":"trace"}}}}"#
        );
        assert_eq!(text(&body), expected);
        let headers = headers(Format::Loginwa, &["s3cret"], "dlv_1", &name, &body, 0);
        assert_eq!(headers[1], ("x-loginwa-signature", hex::encode(hmac(b"s3cret", &[&body]))));
        assert!(!Format::Loginwa.signs_with_previous_secret(), "one hex signature has no room for the old secret's");
        assert!(Format::Spwp.signs_with_previous_secret() && Format::Standard.signs_with_previous_secret());
    }

    /// The reference's inbound text example, byte for byte (with wagate's ids).
    #[test]
    fn spwp_inbound_text_is_the_references_example() {
        let event =
            as_in_the_reference(at(What::MessageIncoming(Box::new(incoming("9647507644809", false, "Hi there!")))));
        let (name, body) = body(Format::Spwp, &event).unwrap();
        assert_eq!(name, "MESSAGE_RECEIVED");
        let expected = format!(
            r#"{{"event":"MESSAGE_RECEIVED","accountId":"{DEVICE}","occurredAt":"2026-05-04T13:24:21.402Z","data":{{"id":"{MESSAGE}","direction":"IN","type":"TEXT","remoteJid":"9647507644809@s.whatsapp.net","externalId":"3EB08703","status":"RECEIVED","payload":{{"text":"Hi there!"}}}}}}"#
        );
        assert_eq!(text(&body), expected);
    }

    #[test]
    fn spwp_keeps_a_group_messages_group_and_names_its_author() {
        let mut message = incoming("120363025246125486", true, "hi all");
        message.participant = Some("447911123456".into());
        let (_, body) = body(Format::Spwp, &at(What::MessageIncoming(Box::new(message)))).unwrap();
        let expected = format!(
            r#""data":{{"id":"{MESSAGE}","direction":"IN","type":"TEXT","remoteJid":"120363025246125486@g.us","participant":"447911123456@s.whatsapp.net","externalId":"3EB08703","#
        );
        assert!(text(&body).contains(&expected), "{}", text(&body));
        let (_, loginwa) = super::body(
            Format::Loginwa,
            &at(What::MessageIncoming(Box::new(Incoming {
                participant: Some("447911123456".into()),
                ..incoming("120363025246125486", true, "hi all")
            }))),
        )
        .unwrap();
        let data = &serde_json::from_slice::<Value>(&loginwa).unwrap()["data"];
        assert_eq!(
            (&data["from"], &data["group"], &data["participant"]),
            (&"120363025246125486".into(), &true.into(), &"447911123456".into())
        );
    }

    /// Reactions and locations in the payload shape their lookups show.
    #[test]
    fn spwp_payloads_are_those_of_a_lookup() {
        for content in [
            Content::Reaction { target_external_id: "3EB0AB".into(), emoji: "👍".into() },
            Content::Location { latitude: 36.1911, longitude: 44.0094, name: None, address: Some("Erbil".into()) },
        ] {
            let message = Incoming { content: content.clone(), ..incoming("9647507644809", false, "") };
            let (_, body) = body(Format::Spwp, &at(What::MessageIncoming(Box::new(message)))).unwrap();
            let data = &serde_json::from_slice::<Value>(&body).unwrap()["data"];
            let (kind, payload) = spwp::content(&content);
            assert_eq!((data["type"].as_str(), &data["payload"]), (Some(kind), &payload));
        }
    }

    #[test]
    fn spwp_media_links_its_file() {
        use wagate_contract::wire::{MediaKind, MediaRef};
        let file =
            MediaRef { sha256: "ab".into(), size: 3, mime_type: "image/png".into(), file_name: Some("a.png".into()) };
        let mut message = incoming("9647507644809", false, "");
        message.kind = "image".into();
        message.content = Content::Media { kind: MediaKind::Image, media: file, caption: Some("look".into()) };
        message.media = Some(InboundMedia {
            mime_type: "image/png".into(),
            size: 3,
            sha256: "ab".into(),
            file_name: Some("a.png".into()),
            url: "https://x/api/v1/media/ab".into(),
            url_expires_at: "t".into(),
        });
        let (_, body) = body(Format::Spwp, &at(What::MessageIncoming(Box::new(message)))).unwrap();
        assert!(
            text(&body).contains(
                r#""type":"IMAGE","remoteJid":"9647507644809@s.whatsapp.net","externalId":"3EB08703","status":"RECEIVED","payload":{"caption":"look","fileName":"a.png","mediaUrl":"https://x/api/v1/media/ab","mimeType":"image/png","sha256":"ab","size":3}}"#
            ),
            "{}",
            text(&body)
        );
    }

    /// The reference's status example, byte for byte (with wagate's ids).
    #[test]
    fn spwp_status_is_the_references_example_and_signs_timestamp_dot_body() {
        let (name, body) = body(Format::Spwp, &as_in_the_reference(delivered())).unwrap();
        assert_eq!(name, "MESSAGE_STATUS");
        let expected = format!(
            r#"{{"event":"MESSAGE_STATUS","accountId":"{DEVICE}","occurredAt":"2026-05-04T13:24:21.402Z","data":{{"id":"{MESSAGE}","externalId":"3EB0870363BFDA49AB9A72","status":"DELIVERED","deliveredAt":"2026-05-04T13:24:21.402Z"}}}}"#
        );
        assert_eq!(text(&body), expected);
        let h = headers(Format::Spwp, &["new", "old"], "dlv_1", &name, &body, 1234);
        let expected = |k: &[u8]| hex::encode(hmac(k, &[b"1234", b".", &body]));
        assert_eq!(h[3].1, format!("t=1234,v1={},v1={}", expected(b"new"), expected(b"old")));
    }

    #[test]
    fn spwp_status_says_when_and_why_it_failed() {
        let What::MessageDelivered(progress) = delivered().what else { unreachable!() };
        let read = MessageProgress {
            status: MessageStatus::Read,
            sent_at: Some(SENT_AT),
            read_at: Some(DELIVERED_AT),
            error_code: Some("stale".into()),
            ..progress.clone()
        };
        let (_, body) = body(Format::Spwp, &as_in_the_reference(at(What::MessageRead(read)))).unwrap();
        assert!(
            text(&body).ends_with(r#""status":"READ","sentAt":"2026-05-04T13:24:19.121Z","deliveredAt":"2026-05-04T13:24:21.402Z","readAt":"2026-05-04T13:24:21.402Z"}}"#),
            "an error only on failure: {}",
            text(&body)
        );
        let failed = MessageProgress {
            status: MessageStatus::Failed,
            external_id: None,
            delivered_at: None,
            error_code: Some("engine_error".into()),
            error_reason: Some("boom".into()),
            ..progress
        };
        let (_, body) = super::body(Format::Spwp, &at(What::MessageFailed(failed))).unwrap();
        assert!(
            text(&body).ends_with(&format!(
                r#""data":{{"id":"{MESSAGE}","status":"FAILED","errorCode":"engine_error","errorReason":"boom"}}}}"#
            )),
            "{}",
            text(&body)
        );
    }

    #[test]
    fn spwp_accounts_and_the_events_it_has_no_name_for() {
        let connected = at(What::DeviceConnected(DeviceConnected {
            device_id: device(),
            status: DeviceStatus::Online,
            phone_number: "62811".into(),
        }));
        let (name, body) = body(Format::Spwp, &connected).unwrap();
        assert_eq!(name, "ACCOUNT_CONNECTED");
        assert!(
            text(&body).ends_with(r#""data":{"status":"online","phoneNumber":"62811","reason":null}}"#),
            "{}",
            text(&body)
        );
        let otp =
            at(What::OtpVerified(OtpEnded { session_id: "s".into(), phone_number: "62".into(), verified_at: None }));
        assert_eq!(super::body(Format::Spwp, &otp), None, "SPWP has no OTP events");
        let qr = at(What::DeviceQrReady(QrReady {
            device_id: device(),
            status: DeviceStatus::QrWaiting,
            qr_code: "q".into(),
        }));
        assert_eq!(super::body(Format::Spwp, &qr), None, "SPWP has no QR events");
    }

    #[test]
    fn standard_signs_id_timestamp_body_with_the_decoded_secret() {
        let secret = new_secret(Format::Standard);
        assert!(secret.starts_with("whsec_"));
        let key = base64::engine::general_purpose::STANDARD.decode(&secret[6..]).unwrap();
        let (_, body) = body(Format::Standard, &delivered()).unwrap();
        assert!(
            text(&body).starts_with(r#"{"type":"message.delivered","timestamp":"2026-05-28T20:26:40.000Z","data":{"#)
        );
        assert!(text(&body).contains(r#""status":"DELIVERED""#), "Standard Webhooks bodies keep the stored status");
        let h = headers(Format::Standard, &[&secret], "dlv_1", "message.delivered", &body, 1_700_000_123_456);
        assert_eq!(h[1], ("webhook-timestamp", "1700000123".to_owned()));
        let mac = hmac(&key, &[b"dlv_1.1700000123.", &body]);
        assert_eq!(h[2].1, format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac)));
    }

    #[test]
    fn retries_spread_out_over_hours() {
        assert_eq!(retry_delay_ms(1, 0.0), 5_000);
        assert_eq!(retry_delay_ms(2, 0.0), 300_000);
        assert_eq!(retry_delay_ms(9, 0.0), 36_000_000);
        assert_eq!(retry_delay_ms(1, 1.0), 5_500);
        assert_eq!(retry_delay_ms(1, -5.0), 4_500, "jitter is clamped");
    }
}
