//! LoginWA's webhooks answers (`/api/v1/webhooks…`), with wagate's format, device, health,
//! deliveries and replays. A signing secret is shown only when made or regenerated.

use serde_json::{json, Value};

use crate::domain::delivery::DeliveryStatus;
use crate::domain::events::EventName;
use crate::protocol::webhooks::{CreatedEndpoint, DeliveryView, EndpointView, Replayed, RotatedSecret, TestQueued};

pub fn endpoints(list: &[EndpointView], iso: impl Fn(u64) -> String) -> Value {
    let names: Vec<&str> = EventName::ALL.iter().map(|n| n.as_str()).collect();
    json!({"webhooks": list.iter().map(|e| endpoint(e, &iso)).collect::<Vec<_>>(), "available_events": names})
}

pub fn endpoint(e: &EndpointView, iso: impl Fn(u64) -> String) -> Value {
    let h = &e.health;
    json!({
        "id": e.id, "url": e.url, "events": e.events, "format": e.format, "device_id": e.device_id,
        "retry_count": e.retry_count, "active": e.active, "disabled_reason": e.disabled_reason,
        "created_at": iso(e.created_at),
        "health": {
            "attempts": h.attempts, "successes": h.successes, "failures": h.failures,
            "consecutive_failures": h.consecutive_failures,
            "last_success_at": h.last_success_at.map(&iso), "last_failure_at": h.last_failure_at.map(&iso),
            "last_status_code": h.last_status_code,
        },
    })
}

pub fn created(c: &CreatedEndpoint, iso: impl Fn(u64) -> String) -> Value {
    let mut shown = endpoint(&c.endpoint, iso);
    shown["secret"] = c.secret.clone().into();
    shown
}

pub fn rotated(r: &RotatedSecret, iso: impl Fn(u64) -> String) -> Value {
    json!({"id": r.id, "secret": r.secret, "previous_secret_valid_until": r.previous_secret_valid_until.map(iso)})
}

pub fn deleted() -> Value {
    json!({"success": true})
}

pub fn test_queued(t: &TestQueued) -> Value {
    json!({"success": true, "delivery_id": t.delivery_id})
}

pub fn deliveries(list: &[DeliveryView], iso: impl Fn(u64) -> String) -> Value {
    json!({"deliveries": list.iter().map(|d| delivery(d, &iso)).collect::<Vec<_>>()})
}

fn delivery(d: &DeliveryView, iso: impl Fn(u64) -> String) -> Value {
    let status = d.status.shown();
    json!({
        "id": d.id, "event_id": d.event_id, "event": d.event, "status": status.as_str(),
        "attempts": d.attempts, "last_status_code": d.last_status_code, "last_error": d.last_error,
        "created_at": iso(d.created_at),
        "next_attempt_at": (status == DeliveryStatus::Pending).then(|| iso(d.next_attempt_at)),
    })
}

pub fn replayed(r: &Replayed) -> Value {
    json!({"success": true, "replayed": r.replayed})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::webhook::Format;
    use crate::protocol::webhooks::Health;

    fn iso(ms: u64) -> String {
        format!("t{ms}")
    }

    fn view() -> EndpointView {
        EndpointView {
            id: "wh_1".into(),
            url: "https://example.com/hook".into(),
            events: vec![],
            format: Format::Spwp,
            device_id: None,
            retry_count: 3,
            active: true,
            disabled_reason: None,
            created_at: 1,
            health: Health {
                attempts: 2,
                successes: 1,
                failures: 1,
                consecutive_failures: 1,
                last_success_at: Some(2),
                last_failure_at: None,
                last_status_code: Some(500),
            },
        }
    }

    #[test]
    fn the_secret_is_shown_on_creation_only() {
        assert!(endpoint(&view(), iso).get("secret").is_none());
        let made = created(&CreatedEndpoint { endpoint: view(), secret: "whsec_x".into() }, iso);
        assert_eq!(made["secret"], "whsec_x");
        assert_eq!(made["format"], "spwp");
        assert_eq!(made["health"]["last_success_at"], "t2");
        assert_eq!(made["health"]["last_failure_at"], Value::Null);
    }

    #[test]
    fn an_attempt_under_way_shows_as_pending_with_its_next_time() {
        let d = DeliveryView {
            id: "dlv_1".into(),
            event_id: "evt_1".into(),
            event: "message.received".into(),
            status: DeliveryStatus::InFlight,
            attempts: 1,
            last_status_code: None,
            last_error: None,
            created_at: 1,
            next_attempt_at: 9,
        };
        let shown = deliveries(std::slice::from_ref(&d), iso);
        assert_eq!(shown["deliveries"][0]["status"], "pending");
        assert_eq!(shown["deliveries"][0]["next_attempt_at"], "t9");
        let done = deliveries(&[DeliveryView { status: DeliveryStatus::Succeeded, ..d }], iso);
        assert_eq!(done["deliveries"][0]["next_attempt_at"], Value::Null);
    }
}
