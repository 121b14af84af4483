//! SPWP: success wrapped in `{"data", "meta"}`; errors as
//! `{"statusCode", "code", "message", "details", "path", "timestamp"}` with
//! SCREAMING_SNAKE codes and class-validator wording.

use serde_json::{json, Value};

use wagate_contract::wire::{Content, MediaKind};

use super::RequestMeta;
use crate::domain::error::{ApiError, Rule};
use crate::domain::message::{Direction, MessageStatus};
use crate::domain::phone::Recipient;

pub fn envelope(data: Value, meta: &RequestMeta) -> Value {
    json!({"data": data, "meta": {"requestId": meta.request_id, "timestamp": meta.timestamp}})
}

/// `POST …/check-phone`: whether `phone` has WhatsApp, with its JID when it has. An account
/// that is not connected is answered in the body, as the reference does, not with an error.
pub fn phone_check(phone: &str, found: PhoneCheck) -> Value {
    match found {
        PhoneCheck::NotConnected => json!({"phone": phone, "exists": false, "reason": "NOT_CONNECTED"}),
        PhoneCheck::Checked { exists, jid } => json!({"phone": phone, "exists": exists, "jid": jid}),
    }
}

/// What the linked number learnt of a phone.
pub enum PhoneCheck {
    NotConnected,
    Checked { exists: bool, jid: Option<String> },
}

/// The fields of a stored message that SPWP shows.
pub struct MessageFields<'a> {
    pub id: &'a str,
    pub device_id: &'a str,
    pub direction: Direction,
    /// The chat: the recipient of an outbound message, the sender (or group) of an inbound one.
    pub recipient: &'a Recipient,
    /// An inbound group message's author, by number.
    pub participant: Option<&'a str>,
    pub content: &'a Content,
    pub status: MessageStatus,
    pub external_id: Option<&'a str>,
    pub error_code: Option<&'a str>,
    pub error_reason: Option<&'a str>,
}

/// A message as SPWP shows it; `times` are the `…At` fields already formatted.
pub fn message(m: MessageFields<'_>, times: impl IntoIterator<Item = (&'static str, String)>) -> Value {
    let (kind, payload) = content(m.content);
    let direction = match m.direction {
        Direction::In => "IN",
        Direction::Out => "OUT",
    };
    let mut body = json!({
        "id": m.id,
        "accountId": m.device_id,
        "direction": direction,
        "type": kind,
        "remoteJid": m.recipient.jid(),
        "status": m.status,
        "payload": payload,
    });
    let fields = body.as_object_mut().expect("built as an object");
    if let Some(number) = m.participant {
        fields.insert("participant".into(), Recipient::Phone(number.to_owned()).jid().into());
    }
    let optional = [("externalId", m.external_id), ("errorCode", m.error_code), ("errorReason", m.error_reason)];
    for (key, value) in optional {
        if let Some(value) = value {
            fields.insert(key.into(), value.into());
        }
    }
    for (key, time) in times {
        fields.insert(key.into(), time.into());
    }
    body
}

/// SPWP's message `type` and `payload` for what a message carries, sent or received: message
/// lookups and `MESSAGE_RECEIVED` webhooks show the same shape.
pub fn content(content: &Content) -> (&'static str, Value) {
    match content {
        Content::Text { text } => ("TEXT", json!({ "text": text })),
        Content::Media { kind, media, caption } => {
            let kind = match kind {
                MediaKind::Image => "IMAGE",
                MediaKind::Video => "VIDEO",
                MediaKind::Audio => "AUDIO",
                MediaKind::Document => "DOCUMENT",
                MediaKind::Sticker => "STICKER",
            };
            let mut payload = json!({ "mimeType": media.mime_type, "size": media.size, "sha256": media.sha256 });
            let fields = payload.as_object_mut().expect("built as an object");
            if let Some(caption) = caption {
                fields.insert("caption".into(), caption.as_str().into());
            }
            if let Some(file_name) = &media.file_name {
                fields.insert("fileName".into(), file_name.as_str().into());
            }
            (kind, payload)
        }
        Content::Location { latitude, longitude, name, address } => {
            let mut payload = json!({ "latitude": latitude, "longitude": longitude });
            let fields = payload.as_object_mut().expect("built as an object");
            for (key, value) in [("name", name), ("address", address)] {
                if let Some(value) = value {
                    fields.insert(key.into(), value.as_str().into());
                }
            }
            ("LOCATION", payload)
        }
        Content::Reaction { target_external_id, emoji } => {
            ("REACTION", json!({ "targetExternalId": target_external_id, "emoji": emoji }))
        }
    }
}

pub fn error(err: &ApiError, meta: &RequestMeta) -> (u16, Value) {
    let mut details = Vec::new();
    let (status, code, message) = match err {
        ApiError::Unauthorized => {
            (401, "INVALID_API_KEY", "Missing or invalid API key, or the key has been revoked".to_owned())
        }
        ApiError::Suspended => {
            (402, "SUBSCRIPTION_SUSPENDED", "Subscription inactive, suspended, or past due".to_owned())
        }
        ApiError::Validation { errors } => {
            details =
                errors.iter().map(|e| json!({"field": e.field, "message": field_message(&e.field, &e.rule)})).collect();
            let first = details.first().and_then(|d| d["message"].as_str()).unwrap_or("Validation failed");
            (400, "VALIDATION_FAILED", first.to_owned())
        }
        ApiError::MalformedJson => (400, "VALIDATION_FAILED", "Request body is not valid JSON".to_owned()),
        ApiError::NotFound { resource } => (404, "NOT_FOUND", format!("{resource} not found")),
        ApiError::RouteNotFound => (404, "NOT_FOUND", "Route not found".to_owned()),
        ApiError::MethodNotAllowed { .. } => (405, "METHOD_NOT_ALLOWED", "Method not allowed on this route".to_owned()),
        ApiError::QuotaExceeded => (429, "QUOTA_EXCEEDED", "Monthly message quota exceeded".to_owned()),
        ApiError::QuotaInsufficient { required, remaining } => {
            (402, "QUOTA_EXCEEDED", format!("This needs {required} messages but only {remaining} remain this month"))
        }
        ApiError::NoDeviceAvailable | ApiError::DeviceNotConnected => (
            409,
            "ACCOUNT_NOT_CONNECTED",
            "The WhatsApp account this key belongs to is offline. Reconnect before sending.".to_owned(),
        ),
        ApiError::Conflict { message } => (409, "CONFLICT", message.clone()),
        ApiError::IpNotAllowed { ip } => {
            details = vec![json!({"field": "ip", "message": format!("{ip} is not on this key's IP whitelist")})];
            (403, "IP_NOT_ALLOWED", "Requests from this IP address are not allowed for this API key".to_owned())
        }
        ApiError::Forbidden { message, .. } => (403, "FORBIDDEN", message.clone()),
        ApiError::DeviceLimitReached { max_devices } => {
            (403, "ACCOUNT_LIMIT_REACHED", format!("This app may link at most {max_devices} WhatsApp accounts"))
        }
        ApiError::PayloadTooLarge { max_bytes } => (
            413,
            "PAYLOAD_TOO_LARGE",
            format!("The request body is larger than the {max_bytes} bytes this route accepts"),
        ),
        ApiError::RateLimited { message, .. } => (429, "RATE_LIMITED", message.clone()),
        // SPWP has no one-time codes; its routes never produce this.
        ApiError::OtpRejected { .. } => (422, "OTP_REJECTED", "The one-time code was not accepted".to_owned()),
        ApiError::IdempotencyMismatch => {
            (422, "IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was already used with a different request".to_owned())
        }
        ApiError::IdempotencyInFlight => (409, "IDEMPOTENCY_KEY_IN_USE", super::IDEMPOTENCY_IN_FLIGHT.to_owned()),
        ApiError::MediaFetchFailed { message } => (400, "MEDIA_FETCH_FAILED", message.clone()),
        // SPWP answers 202 once queued and never waits for the outcome, so only the bridge
        // being unreachable reaches its clients as SEND_FAILED.
        ApiError::BridgeUnavailable { .. } | ApiError::SendFailed { .. } => {
            (502, "SEND_FAILED", "WhatsApp engine failed to send the message".to_owned())
        }
        ApiError::Internal { .. } => (500, "INTERNAL_ERROR", "Something went wrong on our side".to_owned()),
    };
    let body = json!({
        "statusCode": status,
        "code": code,
        "message": message,
        "details": details,
        "path": meta.path,
        "timestamp": meta.timestamp,
        "requestId": meta.request_id,
    });
    (status, body)
}

fn field_message(field: &str, rule: &Rule) -> String {
    match rule {
        Rule::Required => format!("{field} should not be empty"),
        Rule::Type { expected } => match expected.as_str() {
            "integer" => format!("{field} must be an integer number"),
            "number" => format!("{field} must be a number"),
            "boolean" => format!("{field} must be a boolean value"),
            other => format!("{field} must be a {other}"),
        },
        Rule::MinChars { min } => format!("{field} must be longer than or equal to {min} characters"),
        Rule::MaxChars { max } => format!("{field} must be shorter than or equal to {max} characters"),
        Rule::Range { min, max } => format!("{field} must not be less than {min} or greater than {max}"),
        Rule::Invalid { reason } => format!("{field} {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::FieldError;

    fn meta() -> RequestMeta {
        RequestMeta {
            request_id: "01J7ABC".into(),
            path: "/api/v1/public/messages/text".into(),
            timestamp: "2026-05-04T13:24:18.835Z".into(),
        }
    }

    #[test]
    fn validation_error_has_the_reference_shape() {
        let err = ApiError::Validation { errors: vec![FieldError { field: "to".into(), rule: Rule::Required }] };
        let (status, body) = error(&err, &meta());
        assert_eq!(status, 400);
        assert_eq!(body["statusCode"], 400);
        assert_eq!(body["code"], "VALIDATION_FAILED");
        assert_eq!(body["message"], "to should not be empty");
        assert_eq!(body["details"], json!([{"field": "to", "message": "to should not be empty"}]));
        assert_eq!(body["path"], "/api/v1/public/messages/text");
        assert_eq!(body["timestamp"], "2026-05-04T13:24:18.835Z");
    }

    #[test]
    fn codes_and_statuses_follow_the_reference() {
        let cases = [
            (ApiError::Unauthorized, 401, "INVALID_API_KEY"),
            (ApiError::DeviceNotConnected, 409, "ACCOUNT_NOT_CONNECTED"),
            (ApiError::NoDeviceAvailable, 409, "ACCOUNT_NOT_CONNECTED"),
            (ApiError::MalformedJson, 400, "VALIDATION_FAILED"),
            (ApiError::internal("boom"), 500, "INTERNAL_ERROR"),
            (ApiError::RouteNotFound, 404, "NOT_FOUND"),
            (ApiError::PayloadTooLarge { max_bytes: 10 }, 413, "PAYLOAD_TOO_LARGE"),
        ];
        for (err, status, code) in cases {
            let (s, body) = error(&err, &meta());
            assert_eq!((s, body["code"].as_str().unwrap()), (status, code));
            assert_eq!(body["statusCode"], status);
            assert_eq!(body["details"], json!([]));
        }
    }

    #[test]
    fn message_shows_only_what_it_has() {
        let recipient = Recipient::Phone("9647507644809".into());
        let content = Content::Text { text: "hi".into() };
        let fields = MessageFields {
            id: "msg_1",
            device_id: "dev_1",
            direction: Direction::Out,
            recipient: &recipient,
            participant: None,
            content: &content,
            status: MessageStatus::Failed,
            external_id: None,
            error_code: Some("engine_error"),
            error_reason: Some("boom"),
        };
        let body = message(fields, [("createdAt", "2026-05-04T13:24:18.835Z".to_owned())]);
        assert_eq!(
            body,
            json!({
                "id": "msg_1", "accountId": "dev_1", "direction": "OUT", "type": "TEXT",
                "remoteJid": "9647507644809@s.whatsapp.net", "status": "FAILED", "payload": {"text": "hi"},
                "errorCode": "engine_error", "errorReason": "boom", "createdAt": "2026-05-04T13:24:18.835Z",
            })
        );
    }

    /// An inbound group message looked up: the reference's message shape, direction IN.
    #[test]
    fn a_received_message_shows_its_chat_and_author() {
        let group = Recipient::Group("120363025246125486".into());
        let content = Content::Text { text: "hi all".into() };
        let fields = MessageFields {
            id: "msg_1",
            device_id: "dev_1",
            direction: Direction::In,
            recipient: &group,
            participant: Some("447911123456"),
            content: &content,
            status: MessageStatus::Received,
            external_id: Some("3EB08703"),
            error_code: None,
            error_reason: None,
        };
        let body = message(fields, [("createdAt", "2026-05-04T13:24:21.402Z".to_owned())]);
        assert_eq!(
            body,
            json!({
                "id": "msg_1", "accountId": "dev_1", "direction": "IN", "type": "TEXT",
                "remoteJid": "120363025246125486@g.us", "participant": "447911123456@s.whatsapp.net",
                "externalId": "3EB08703", "status": "RECEIVED", "payload": {"text": "hi all"},
                "createdAt": "2026-05-04T13:24:21.402Z",
            })
        );
    }

    #[test]
    fn payloads_are_camel_case_and_text_is_only_its_text() {
        use wagate_contract::wire::MediaRef;
        assert_eq!(content(&Content::Text { text: "Hi there!".into() }), ("TEXT", json!({"text": "Hi there!"})));
        let media = MediaRef {
            sha256: "ab".repeat(32),
            size: 3,
            mime_type: "application/pdf".into(),
            file_name: Some("invoice-3214.pdf".into()),
        };
        let document = Content::Media { kind: MediaKind::Document, media, caption: Some("Your invoice".into()) };
        assert_eq!(
            content(&document),
            (
                "DOCUMENT",
                json!({"mimeType": "application/pdf", "size": 3, "sha256": "ab".repeat(32),
                       "caption": "Your invoice", "fileName": "invoice-3214.pdf"})
            )
        );
        let place = Content::Location {
            latitude: 36.1911,
            longitude: 44.0094,
            name: Some("Erbil Citadel".into()),
            address: None,
        };
        assert_eq!(
            content(&place),
            ("LOCATION", json!({"latitude": 36.1911, "longitude": 44.0094, "name": "Erbil Citadel"}))
        );
        let reaction = Content::Reaction { target_external_id: "3EB0".into(), emoji: "👍".into() };
        assert_eq!(content(&reaction), ("REACTION", json!({"targetExternalId": "3EB0", "emoji": "👍"})));
    }

    #[test]
    fn envelope_carries_request_meta() {
        let body = envelope(json!({"id": "msg_1"}), &meta());
        assert_eq!(body["data"]["id"], "msg_1");
        assert_eq!(body["meta"]["requestId"], "01J7ABC");
        assert_eq!(body["meta"]["timestamp"], "2026-05-04T13:24:18.835Z");
    }

    #[test]
    fn a_phone_check_answers_in_the_body_even_when_nothing_is_connected() {
        let offline = phone_check("+6281234567890", PhoneCheck::NotConnected);
        assert_eq!(offline, json!({"phone": "+6281234567890", "exists": false, "reason": "NOT_CONNECTED"}));
        let unknown = phone_check("+6281234567890", PhoneCheck::Checked { exists: false, jid: None });
        assert_eq!(unknown, json!({"phone": "+6281234567890", "exists": false, "jid": null}));
        let jid = Some("6281234567890@s.whatsapp.net".to_owned());
        assert_eq!(phone_check("+6281234567890", PhoneCheck::Checked { exists: true, jid })["exists"], true);
    }
}
