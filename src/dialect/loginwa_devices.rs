//! LoginWA's devices and sends, as its reference prints them; and the link page's answers,
//! which speak the same dialect to the phone's owner.

use serde_json::{json, Value};

use crate::domain::device::DeviceStatus;
use crate::protocol::app::DeviceEntry;
use crate::protocol::device::{DeviceView, MessageView};

/// `GET /api/v1/devices/{id}`.
pub fn device(d: &DeviceView, iso: &impl Fn(u64) -> String) -> Value {
    json!({
        "id": d.device_id,
        "engine_device_id": d.device_id,
        "label": d.label,
        "status": d.status,
        "phone_number": d.phone,
        "is_online": d.status == DeviceStatus::Online,
        "qr_code": d.qr,
        "pair_code": d.pair_code,
        "disconnect_reason": d.disconnect_reason,
        "last_seen_at": d.last_seen_at.map(iso),
        "created_at": iso(d.created_at),
    })
}

/// `GET /api/v1/devices`: the devices the key may see.
pub fn devices<'a>(devices: impl Iterator<Item = &'a DeviceEntry>, iso: &impl Fn(u64) -> String) -> Value {
    let devices: Vec<Value> = devices
        .map(|d| {
            json!({
                "id": d.device_id,
                "label": d.label,
                "status": d.status,
                "phone_number": d.phone,
                "is_online": d.status == DeviceStatus::Online,
                "last_seen_at": d.last_seen_at.map(iso),
                "created_at": iso(d.created_at),
            })
        })
        .collect();
    json!({"count": devices.len(), "devices": devices})
}

/// `DELETE /api/v1/devices/{id}`.
pub fn removed() -> Value {
    json!({"success": true, "message": "Device disconnected and removed"})
}

/// The answer to starting or refreshing a pairing: `job_id` names the pairing job, and
/// `qr_status_url` is the device's own URL under `origin`, polled for the QR token.
pub fn pairing(device: &DeviceView, job_id: &str, origin: &str) -> Value {
    json!({
        "device_id": device.device_id,
        "engine_device_id": device.device_id,
        "label": device.label,
        "status": device.status,
        "qr_code": device.qr,
        "pair_code": device.pair_code,
        "job_id": job_id,
        "qr_status_url": format!("{origin}/api/v1/devices/{}", device.device_id),
        "message": "Scan QR code with WhatsApp to connect device",
    })
}

/// `POST /api/v1/messages/send`, with the quota left after it.
pub fn sent(message: &MessageView, quota_remaining: i64) -> Value {
    json!({
        "success": true,
        "message_id": message.id,
        "trace_id": message.trace_id,
        "device_id": message.device_id,
        "phone": message.recipient.display(),
        "quota_remaining": quota_remaining,
    })
}

/// `POST /api/v1/devices/{id}/link-token`: a page the phone's owner may open until `expires_at`.
pub fn link_issued(device_id: &str, token: &str, url: &str, expires_at: &str) -> Value {
    json!({"device_id": device_id, "token": token, "url": url, "expires_at": expires_at})
}

/// The link page's view of its device: only what the phone's owner needs to see.
pub fn link_page(device: &DeviceView) -> Value {
    json!({
        "device_id": device.device_id, "label": device.label, "status": device.status,
        "connected": device.status == DeviceStatus::Online, "phone_number": device.phone,
        "has_qr": device.qr.is_some(), "qr_code": device.qr, "pair_code": device.pair_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(ms: u64) -> String {
        format!("t{ms}")
    }

    fn view(status: DeviceStatus) -> DeviceView {
        DeviceView {
            device_id: "dev_abc123".into(),
            label: Some("My WhatsApp".into()),
            status,
            qr: Some("2@A1b2C3".into()),
            pair_code: None,
            phone: Some("6281234567890".into()),
            disconnect_reason: None,
            created_at: 1,
            last_seen_at: Some(2),
        }
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        keys
    }

    #[test]
    fn a_pairing_has_the_references_fields_and_a_pollable_url() {
        let body = pairing(&view(DeviceStatus::QrWaiting), "job_xyz", "https://api.loginwa.com");
        let mut reference = vec![
            "device_id",
            "engine_device_id",
            "label",
            "status",
            "qr_code",
            "job_id",
            "qr_status_url",
            "message",
            "pair_code",
        ];
        reference.sort();
        assert_eq!(keys(&body), reference);
        assert_eq!(body["qr_status_url"], "https://api.loginwa.com/api/v1/devices/dev_abc123");
        assert_eq!(body["status"], "qr_waiting");
        assert_eq!(body["qr_code"], "2@A1b2C3");
    }

    #[test]
    fn a_listing_counts_what_it_shows_with_the_references_fields() {
        let entry = |status: DeviceStatus| DeviceEntry {
            device_id: "dev_abc123".into(),
            label: Some("My WhatsApp".into()),
            status,
            phone: Some("6281234567890".into()),
            created_at: 1,
            last_seen_at: None,
        };
        let listed = [entry(DeviceStatus::Online), entry(DeviceStatus::Offline)];
        let body = devices(listed.iter(), &iso);
        assert_eq!(body["count"], 2);
        let first = &body["devices"][0];
        let mut reference = vec!["id", "label", "status", "phone_number", "is_online", "last_seen_at", "created_at"];
        reference.sort();
        assert_eq!(keys(first), reference);
        assert_eq!((first["is_online"].clone(), body["devices"][1]["is_online"].clone()), (json!(true), json!(false)));
        assert_eq!(first["last_seen_at"], Value::Null);
        assert_eq!(devices([].iter(), &iso), json!({"count": 0, "devices": []}));
    }

    #[test]
    fn a_device_is_online_only_when_connected() {
        assert_eq!(device(&view(DeviceStatus::Online), &iso)["is_online"], true);
        assert_eq!(device(&view(DeviceStatus::QrWaiting), &iso)["is_online"], false);
        assert_eq!(device(&view(DeviceStatus::Online), &iso)["last_seen_at"], "t2");
        let page = link_page(&view(DeviceStatus::QrWaiting));
        assert_eq!((page["connected"].clone(), page["has_qr"].clone()), (json!(false), json!(true)));
        assert!(page.get("disconnect_reason").is_none(), "the page shows the owner no more than it needs");
    }
}
