//! The operator API's answers (`/admin/v1`): apps, keys, the audit trail and the event log, as
//! JSON from the app object's views. Times are worded by `iso` (the runtime's clock formats them).

use serde_json::{json, Value};

use wagate_contract::wire::{DeadLetter, Replayed};

use crate::domain::error::ApiError;
use crate::domain::ids::{AppId, KeyId};
use crate::domain::keys;
use crate::domain::paging;
use crate::protocol::app::{AppView, AuditEntry, KeyView, RecordedEvent};

/// A key as the operator sees it: never the secret, only the part that identifies it.
pub fn key(app_id: &AppId, k: &KeyView, now: u64, iso: &impl Fn(u64) -> String) -> Value {
    let state = match (k.revoked_at, k.expires_at) {
        (Some(_), _) => "revoked",
        (None, Some(at)) if at <= now => "expired",
        _ => "active",
    };
    json!({
        "key_id": k.key_id,
        "prefix": KeyId::parse(&k.key_id).map(|id| keys::prefix(app_id, &id)),
        "device_id": k.device_id,
        "state": state,
        "created_at": iso(k.created_at),
        "last_used_at": k.last_used_at.map(iso),
        "expires_at": k.expires_at.map(iso),
        "revoked": k.revoked_at.is_some(),
        "revoked_at": k.revoked_at.map(iso),
    })
}

pub fn keys(app_id: &AppId, keys: &[KeyView], now: u64, iso: &impl Fn(u64) -> String) -> Value {
    json!({"keys": keys.iter().map(|k| key(app_id, k, now, iso)).collect::<Vec<_>>()})
}

pub fn app(app: &AppView, now: u64, iso: &impl Fn(u64) -> String) -> Value {
    let keys: Vec<Value> = match AppId::parse(&app.app_id) {
        Some(app_id) => app.keys.iter().map(|k| key(&app_id, k, now, iso)).collect(),
        None => vec![],
    };
    json!({
        "app_id": app.app_id,
        "name": app.name,
        "plan": app.plan,
        "quota": {
            "period": app.quota_period,
            "monthly_messages": app.plan.monthly_messages,
            "used": app.quota_used,
            "remaining": app.quota_remaining,
        },
        "suspended": app.suspended,
        "default_country_code": app.default_country_code,
        "governor": app.governor,
        "keys": keys,
        "created_at": iso(app.created_at),
    })
}

/// `GET /admin/v1/apps/{app}/audit`: each change with the detail it was recorded with.
pub fn audit(trail: &[AuditEntry], iso: &impl Fn(u64) -> String) -> Value {
    let entries: Vec<Value> = trail
        .iter()
        .map(|e| {
            let detail: Value = serde_json::from_str(&e.detail).unwrap_or(Value::Null);
            json!({"at": iso(e.at), "actor": e.actor, "action": e.action, "detail": detail})
        })
        .collect();
    json!({"audit": entries})
}

/// `GET /admin/v1/apps?page=N`.
pub fn apps(apps: Vec<Value>, page: i64, per_page: i64, total: i64) -> Value {
    json!({"apps": apps, "page": page, "per_page": per_page, "total": total,
           "last_page": paging::last_page(total, per_page)})
}

/// `POST /admin/v1/apps`: the app's first key, shown this once.
pub fn created_app(app_id: &AppId, api_key: &str, key_id: &KeyId) -> Value {
    json!({"app_id": app_id, "api_key": api_key, "key_id": key_id})
}

/// `POST /admin/v1/apps/{id}/keys`: the key, shown this once.
pub fn created_key(
    key_id: &KeyId,
    api_key: &str,
    device_id: Option<&crate::domain::ids::DeviceId>,
    expires_at: Option<u64>,
    iso: &impl Fn(u64) -> String,
) -> Value {
    json!({"key_id": key_id, "api_key": api_key, "device_id": device_id, "expires_at": expires_at.map(iso)})
}

/// The event log as recorded: each event's body as it was stored.
pub fn events(events: Vec<RecordedEvent>, iso: &impl Fn(u64) -> String) -> Result<Value, ApiError> {
    let events: Vec<Value> = events
        .into_iter()
        .map(|e| {
            let data = serde_json::from_str::<Value>(&e.data)
                .map_err(|err| ApiError::internal(format!("stored event {} is corrupt: {err}", e.id)))?;
            Ok(json!({"seq": e.seq, "id": e.id, "event": e.name, "device_id": e.device_id,
                      "timestamp": iso(e.at), "data": data}))
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(json!({"events": events}))
}

/// The bridge's dead letters, as the operator API lists them.
pub fn dead_letters(letters: &[DeadLetter], iso: &impl Fn(u64) -> String) -> Value {
    let rendered: Vec<Value> = letters
        .iter()
        .map(|d| {
            json!({"id": d.id, "device_id": d.device_id, "type": d.kind, "status": d.status, "error": d.error,
                   "created_at": iso(d.created_ms), "dead_at": iso(d.dead_ms)})
        })
        .collect();
    json!({"dead_letters": rendered})
}

/// A dead letter queued again, under the id the bridge gave it.
pub fn replayed(replayed: &Replayed) -> Value {
    json!({"replayed": replayed.replayed})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_trail_shows_each_detail_as_recorded_and_a_corrupt_one_as_null() {
        let entry = |detail: &str| AuditEntry {
            at: 0,
            actor: "operator".into(),
            action: "key.revoked".into(),
            detail: detail.into(),
        };
        let trail = audit(&[entry(r#"{"key_id":"k1"}"#), entry("{not json")], &|at| format!("t{at}"));
        assert_eq!(
            trail,
            json!({"audit": [
                {"at": "t0", "actor": "operator", "action": "key.revoked", "detail": {"key_id": "k1"}},
                {"at": "t0", "actor": "operator", "action": "key.revoked", "detail": null},
            ]})
        );
    }

    #[test]
    fn dead_letters_show_when_they_died_and_under_which_id_they_replay() {
        let letter = DeadLetter {
            id: "evt_1".into(),
            device_id: "dev_1".into(),
            kind: "inbound".into(),
            status: 500,
            error: "internal".into(),
            created_ms: 1,
            dead_ms: 2,
        };
        let listed = dead_letters(&[letter], &|ms| format!("t{ms}"));
        assert_eq!(
            listed,
            json!({"dead_letters": [{"id": "evt_1", "device_id": "dev_1", "type": "inbound", "status": 500,
                   "error": "internal", "created_at": "t1", "dead_at": "t2"}]})
        );
        assert_eq!(replayed(&Replayed { replayed: "evt_2".into() }), json!({"replayed": "evt_2"}));
    }
}
