//! Webhook bodies and signatures in the three formats wagate speaks, and the retry schedule.
//! Pure: the delivery loop hands in the event, the secret and the clock.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;

use super::events::{Event, EventName};

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
        EventName::MessageIncoming => Some("MESSAGE_RECEIVED"),
        EventName::MessageSent | EventName::MessageDelivered | EventName::MessageRead | EventName::MessageFailed => {
            Some("MESSAGE_STATUS")
        }
        EventName::DeviceConnected => Some("ACCOUNT_CONNECTED"),
        EventName::DeviceDisconnected => Some("ACCOUNT_DISCONNECTED"),
        _ => None,
    }
}

pub fn event_name(name: EventName) -> String {
    serde_json::to_value(name).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// The body a delivery of `event` carries, fixed once for the delivery's life; `None` when the
/// format has no name for the event. `iso` formats a time in ms.
pub fn body(format: Format, event: &Event, iso: impl Fn(u64) -> String) -> Option<(String, Vec<u8>)> {
    let name = event_name(event.name);
    let (header_name, body) = match format {
        Format::Loginwa => (name.clone(), json!({"event": name, "timestamp": iso(event.at_ms), "data": event.data})),
        Format::Standard => (name.clone(), json!({"type": name, "timestamp": iso(event.at_ms), "data": event.data})),
        Format::Spwp => {
            let spwp = spwp_name(event.name)?;
            let d = &event.data;
            let data = match event.name {
                EventName::MessageIncoming => {
                    let mut payload = d["content"].clone();
                    if let (Some(payload), Some(url)) = (payload.as_object_mut(), d["media"].get("url")) {
                        payload.insert("mediaUrl".into(), url.clone());
                    }
                    json!({
                        "id": d["message_id"], "direction": "IN", "type": d["type"].as_str().map(str::to_uppercase),
                        "remoteJid": format!("{}@s.whatsapp.net", d["from"].as_str().unwrap_or_default()),
                        "externalId": d["external_id"], "status": "RECEIVED", "payload": payload,
                    })
                }
                EventName::DeviceConnected | EventName::DeviceDisconnected => json!({
                    "status": d["status"], "phoneNumber": d["phone_number"], "reason": d.get("reason").cloned().unwrap_or(Value::Null),
                }),
                _ => json!({
                    "id": d["message_id"], "externalId": d["external_id"], "status": d["status"],
                    "errorCode": d["error_code"], "errorReason": d["error_reason"],
                }),
            };
            (
                spwp.to_owned(),
                json!({"event": spwp, "accountId": event.device_id, "occurredAt": iso(event.at_ms), "data": data}),
            )
        }
    };
    Some((header_name, body.to_string().into_bytes()))
}

/// The headers of one delivery attempt. Each secret in `secrets` signs (the previous one too,
/// during a rotation's grace period) where the scheme carries several signatures.
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

    fn event() -> Event {
        Event {
            id: "evt_1".into(),
            name: EventName::MessageDelivered,
            device_id: Some("dev_1".into()),
            at_ms: 1_780_000_000_000,
            data: json!({"message_id": "msg_1", "external_id": "3EB0", "status": "DELIVERED", "error_code": null, "error_reason": null}),
        }
    }

    fn iso(ms: u64) -> String {
        format!("t{ms}")
    }

    #[test]
    fn loginwa_signs_the_raw_body_in_hex() {
        let (name, body) = body(Format::Loginwa, &event(), iso).unwrap();
        assert_eq!(name, "message.delivered");
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["event"], "message.delivered");
        assert_eq!(parsed["data"]["message_id"], "msg_1");
        let headers = headers(Format::Loginwa, &["s3cret"], "dlv_1", &name, &body, 0);
        assert_eq!(headers[1], ("x-loginwa-signature", hex::encode(hmac(b"s3cret", &[&body]))));
    }

    #[test]
    fn spwp_signs_timestamp_dot_body_and_maps_names() {
        let (name, body) = body(Format::Spwp, &event(), iso).unwrap();
        assert_eq!(name, "MESSAGE_STATUS");
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (parsed["accountId"].as_str(), parsed["data"]["status"].as_str()),
            (Some("dev_1"), Some("DELIVERED"))
        );
        let h = headers(Format::Spwp, &["new", "old"], "dlv_1", &name, &body, 1234);
        let expected = |k: &[u8]| hex::encode(hmac(k, &[b"1234", b".", &body]));
        assert_eq!(h[3].1, format!("t=1234,v1={},v1={}", expected(b"new"), expected(b"old")));
        let otp = Event { name: EventName::OtpVerified, ..event() };
        assert_eq!(super::body(Format::Spwp, &otp, iso), None, "SPWP has no OTP events");
    }

    #[test]
    fn standard_signs_id_timestamp_body_with_the_decoded_secret() {
        let secret = new_secret(Format::Standard);
        assert!(secret.starts_with("whsec_"));
        let key = base64::engine::general_purpose::STANDARD.decode(&secret[6..]).unwrap();
        let (_, body) = body(Format::Standard, &event(), iso).unwrap();
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
