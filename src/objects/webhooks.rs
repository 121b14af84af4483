//! The app's webhook endpoints and its durable delivery outbox. Recording an event inserts one
//! delivery per matching endpoint in the same transaction; the app object's alarm sends them,
//! retries with the Standard Webhooks schedule, and keeps failures for replay.

use std::collections::HashMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{Env, SqlStorage, State};

use super::app::AppObject;
use super::{call, int, number, rows};
use crate::domain::egress::Egress;
use crate::domain::error::{ApiError, Rule};
use crate::domain::events::{Event, EventName};
use crate::domain::ids::{random_hex, DeviceId};
use crate::domain::scope;
use crate::domain::secretbox;
use crate::domain::webhook::{self, Format};
use crate::protocol::sender::{Attempt, PostDelivery};
use crate::runtime::{config, egress, iso, next_month_start_ms, now_ms, required_config};

pub const MAX_ENDPOINTS: i64 = 5;
/// Deliveries looked at per alarm, and how many one endpoint may have in flight at once.
const CANDIDATES: i64 = 100;
const PER_ENDPOINT: i64 = 4;
/// A claimed delivery is retried by a later alarm if its attempt has not settled by then.
const LEASE_MS: u64 = super::sender::TIMEOUT_MS + 5_000;
/// The old secret keeps signing alongside a regenerated one for this long.
const ROTATION_GRACE_MS: u64 = 24 * 60 * 60 * 1000;
/// An endpoint that has failed continuously for this long (5 days) is disabled.
const DISABLE_AFTER_S: u64 = 5 * 24 * 60 * 60;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointSpec {
    pub url: String,
    pub events: Vec<EventName>,
    pub format: Format,
    pub device_id: Option<String>,
    pub retry_count: i64,
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<EventName>>,
    pub active: Option<bool>,
    pub secret: Option<String>,
    pub retry_count: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum WebhookCall {
    List,
    Create { spec: EndpointSpec, now: u64 },
    Get { id: String },
    Update { id: String, patch: EndpointPatch, now: u64 },
    Delete { id: String },
    RegenerateSecret { id: String, now: u64 },
    Test { id: String, now: u64 },
    Deliveries { id: String, status: Option<String> },
    Replay { id: String, delivery_id: Option<String>, since: Option<u64>, now: u64 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EndpointRow {
    id: String,
    url: String,
    events: String,
    format: String,
    device_id: Option<String>,
    secret: String,
    previous_secret: Option<String>,
    previous_until: Option<u64>,
    retry_count: i64,
    active: i64,
    created_at: u64,
    attempts: i64,
    successes: i64,
    failures: i64,
    consecutive_failures: i64,
    last_success_at: Option<u64>,
    last_failure_at: Option<u64>,
    last_status: Option<i64>,
    disabled_reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct DeliveryRow {
    id: String,
    webhook_id: String,
    event_id: String,
    event_name: String,
    body: String,
    status: String,
    attempts: i64,
    next_attempt_at: u64,
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: u64,
}

const PENDING: &str = "pending";
/// Claimed by an attempt under way; listed as pending.
const IN_FLIGHT: &str = "in_flight";
pub(super) const SUCCEEDED: &str = "succeeded";
pub(super) const FAILED: &str = "failed";

pub const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS webhooks (
        id TEXT PRIMARY KEY, url TEXT NOT NULL, events TEXT NOT NULL, format TEXT NOT NULL, device_id TEXT,
        secret TEXT NOT NULL, previous_secret TEXT, previous_until INTEGER, retry_count INTEGER NOT NULL,
        active INTEGER NOT NULL DEFAULT 1, created_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        successes INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
        consecutive_failures INTEGER NOT NULL DEFAULT 0, last_success_at INTEGER, last_failure_at INTEGER,
        last_status INTEGER, disabled_reason TEXT)",
    "CREATE TABLE IF NOT EXISTS deliveries (
        id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, event_id TEXT NOT NULL, event_name TEXT NOT NULL,
        body TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL, last_status INTEGER, last_error TEXT, created_at INTEGER NOT NULL)",
];

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Loginwa => "loginwa",
        Format::Spwp => "spwp",
        Format::Standard => "standard",
    }
}

fn endpoint_json(e: &EndpointRow) -> Value {
    let events: Value = serde_json::from_str(&e.events).unwrap_or(Value::Array(vec![]));
    json!({
        "id": e.id, "url": e.url, "events": events, "format": e.format, "device_id": e.device_id,
        "retry_count": e.retry_count, "active": e.active != 0, "disabled_reason": e.disabled_reason,
        "created_at": iso(e.created_at),
        "health": {
            "attempts": e.attempts, "successes": e.successes, "failures": e.failures,
            "consecutive_failures": e.consecutive_failures,
            "last_success_at": e.last_success_at.map(iso), "last_failure_at": e.last_failure_at.map(iso),
            "last_status_code": e.last_status,
        },
    })
}

fn delivery_json(d: &DeliveryRow) -> Value {
    let pending = d.status == PENDING || d.status == IN_FLIGHT;
    json!({
        "id": d.id, "event_id": d.event_id, "event": d.event_name, "status": if pending { PENDING } else { &d.status },
        "attempts": d.attempts, "last_status_code": d.last_status, "last_error": d.last_error,
        "created_at": iso(d.created_at), "next_attempt_at": pending.then(|| iso(d.next_attempt_at)),
    })
}

fn find_endpoint(sql: &SqlStorage, id: &str) -> Result<Option<EndpointRow>, ApiError> {
    Ok(rows::<EndpointRow>(sql.exec("SELECT * FROM webhooks WHERE id = ?", vec![id.into()])?)?.into_iter().next())
}

fn not_found() -> ApiError {
    ApiError::not_found("webhook")
}

impl AppObject {
    fn key_material(&self) -> Result<String, ApiError> {
        required_config(self.env(), "WEBHOOK_KEY")
    }

    /// Tests compress the retry schedule (`WEBHOOK_RETRY_SCALE`, default 1) instead of waiting hours.
    fn retry_scale(&self) -> f64 {
        config(self.env(), "WEBHOOK_RETRY_SCALE").and_then(|v| v.parse().ok()).filter(|s: &f64| *s > 0.0).unwrap_or(1.0)
    }

    fn endpoint(&self, id: &str) -> Result<EndpointRow, ApiError> {
        find_endpoint(&self.sql(), id)?.ok_or_else(not_found)
    }

    /// `scope`: a device-scoped key sees and changes only its device's endpoints.
    pub(super) async fn webhooks(&self, call: WebhookCall, scope: Option<&DeviceId>) -> Result<Value, ApiError> {
        let endpoint = |id: &str| {
            self.endpoint(id).and_then(|e| match scope::visible(scope, e.device_id.as_deref()) {
                true => Ok(e),
                false => Err(not_found()),
            })
        };
        match call {
            WebhookCall::List => {
                let all = rows::<EndpointRow>(self.sql().exec("SELECT * FROM webhooks ORDER BY created_at", None)?)?;
                let all: Vec<EndpointRow> =
                    all.into_iter().filter(|e| scope::visible(scope, e.device_id.as_deref())).collect();
                let names: Vec<&str> = EventName::ALL.iter().map(|n| n.as_str()).collect();
                Ok(json!({"webhooks": all.iter().map(endpoint_json).collect::<Vec<_>>(), "available_events": names}))
            }
            WebhookCall::Create { spec, now } => {
                let count = number(&self.sql(), "SELECT COUNT(*) AS n FROM webhooks", vec![])?;
                if count.unwrap_or(0) >= MAX_ENDPOINTS {
                    let reason = format!("cannot be added: an app may register at most {MAX_ENDPOINTS} webhooks");
                    return Err(ApiError::field("url", Rule::Invalid { reason }));
                }
                let id = format!("wh_{}", random_hex(8));
                let secret = spec.secret.clone().unwrap_or_else(|| webhook::new_secret(spec.format));
                self.sql().exec(
                    "INSERT INTO webhooks (id, url, events, format, device_id, secret, retry_count, created_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    vec![
                        id.as_str().into(),
                        spec.url.into(),
                        serde_json::to_string(&spec.events).map_err(ApiError::internal)?.into(),
                        format_name(spec.format).into(),
                        spec.device_id.into(),
                        secretbox::seal(&self.key_material()?, &secret).into(),
                        spec.retry_count.into(),
                        int(now),
                    ],
                )?;
                let mut view = endpoint_json(&endpoint(&id)?);
                view["secret"] = secret.into();
                Ok(view)
            }
            WebhookCall::Get { id } => Ok(endpoint_json(&endpoint(&id)?)),
            WebhookCall::Update { id, patch, now } => {
                let current = endpoint(&id)?;
                let sealed =
                    patch.secret.as_deref().map(|s| self.key_material().map(|k| secretbox::seal(&k, s))).transpose()?;
                self.sql().exec(
                    "UPDATE webhooks SET url = COALESCE(?, url), events = COALESCE(?, events),
                     active = COALESCE(?, active), retry_count = COALESCE(?, retry_count),
                     previous_secret = CASE WHEN ? IS NULL THEN previous_secret ELSE secret END,
                     previous_until = CASE WHEN ? IS NULL THEN previous_until ELSE ? END,
                     secret = COALESCE(?, secret),
                     consecutive_failures = CASE WHEN ? = 1 THEN 0 ELSE consecutive_failures END,
                     disabled_reason = CASE WHEN ? = 1 THEN NULL ELSE disabled_reason END
                     WHERE id = ?",
                    vec![
                        patch.url.into(),
                        patch.events.map(|e| serde_json::to_string(&e).unwrap_or_default()).into(),
                        patch.active.map(|a| a as i64).into(),
                        patch.retry_count.into(),
                        sealed.clone().into(),
                        sealed.clone().into(),
                        int(now + ROTATION_GRACE_MS),
                        sealed.into(),
                        int(patch.active.is_some_and(|a| a) as u64),
                        int(patch.active.is_some_and(|a| a) as u64),
                        current.id.into(),
                    ],
                )?;
                if patch.active == Some(true) {
                    self.wake_deliveries().await?;
                }
                Ok(endpoint_json(&endpoint(&id)?))
            }
            WebhookCall::Delete { id } => {
                endpoint(&id)?;
                self.sql().exec("DELETE FROM webhooks WHERE id = ?", vec![id.as_str().into()])?;
                self.sql().exec("DELETE FROM deliveries WHERE webhook_id = ?", vec![id.into()])?;
                Ok(json!({"success": true}))
            }
            WebhookCall::RegenerateSecret { id, now } => {
                let current = endpoint(&id)?;
                let format = Format::parse(&current.format).unwrap_or_default();
                let secret = webhook::new_secret(format);
                self.sql().exec(
                    "UPDATE webhooks SET previous_secret = secret, previous_until = ?, secret = ? WHERE id = ?",
                    vec![
                        int(now + ROTATION_GRACE_MS),
                        secretbox::seal(&self.key_material()?, &secret).into(),
                        id.into(),
                    ],
                )?;
                Ok(
                    json!({"id": current.id, "secret": secret, "previous_secret_valid_until": iso(now + ROTATION_GRACE_MS)}),
                )
            }
            WebhookCall::Test { id, now } => {
                let endpoint = endpoint(&id)?;
                let data = json!({"webhook_id": endpoint.id, "message": "This is a test event from wagate"});
                let body =
                    json!({"event": "webhook.test", "type": "webhook.test", "timestamp": iso(now), "data": data});
                let delivery_id =
                    self.insert_delivery(&endpoint.id, "evt_test", "webhook.test", &body.to_string(), now)?;
                self.wake_deliveries().await?;
                Ok(json!({"success": true, "delivery_id": delivery_id}))
            }
            WebhookCall::Deliveries { id, status } => {
                endpoint(&id)?;
                let listed = rows::<DeliveryRow>(self.sql().exec(
                    "SELECT * FROM deliveries WHERE webhook_id = ? AND (? IS NULL OR status = ? OR (? = ? AND status = ?))
                     ORDER BY created_at DESC, id LIMIT 100",
                    vec![
                        id.into(),
                        status.clone().into(),
                        status.clone().into(),
                        status.into(),
                        PENDING.into(),
                        IN_FLIGHT.into(),
                    ],
                )?)?;
                Ok(json!({"deliveries": listed.iter().map(delivery_json).collect::<Vec<_>>()}))
            }
            WebhookCall::Replay { id, delivery_id, since, now } => {
                endpoint(&id)?;
                // Replays keep their delivery id and body; only the schedule starts over.
                let replayed = match (delivery_id, since) {
                    (Some(delivery_id), _) => {
                        let found = number(
                            &self.sql(),
                            "SELECT COUNT(*) AS n FROM deliveries WHERE id = ? AND webhook_id = ?",
                            vec![delivery_id.as_str().into(), id.as_str().into()],
                        )?;
                        if found.unwrap_or(0) == 0 {
                            return Err(ApiError::not_found("delivery"));
                        }
                        self.sql().exec(
                            "UPDATE deliveries SET status = ?, attempts = 0, next_attempt_at = ? WHERE id = ?",
                            vec![PENDING.into(), int(now), delivery_id.into()],
                        )?;
                        1
                    }
                    (None, since) => {
                        let failed = number(&self.sql(), "SELECT COUNT(*) AS n FROM deliveries WHERE webhook_id = ? AND status = ? AND created_at >= ?", vec![id.as_str().into(), FAILED.into(), int(since.unwrap_or(0))],)?;
                        self.sql().exec(
                            "UPDATE deliveries SET status = ?, attempts = 0, next_attempt_at = ?
                             WHERE webhook_id = ? AND status = ? AND created_at >= ?",
                            vec![PENDING.into(), int(now), id.into(), FAILED.into(), int(since.unwrap_or(0))],
                        )?;
                        failed.unwrap_or(0)
                    }
                };
                self.wake_deliveries().await?;
                Ok(json!({"success": true, "replayed": replayed}))
            }
        }
    }

    fn insert_delivery(
        &self,
        webhook_id: &str,
        event_id: &str,
        name: &str,
        body: &str,
        now: u64,
    ) -> Result<String, ApiError> {
        let id = format!("dlv_{}", random_hex(12));
        self.sql().exec(
            "INSERT INTO deliveries (id, webhook_id, event_id, event_name, body, status, next_attempt_at, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                id.as_str().into(),
                webhook_id.into(),
                event_id.into(),
                name.into(),
                body.into(),
                PENDING.into(),
                int(now),
                int(now),
            ],
        )?;
        Ok(id)
    }

    /// One delivery per matching active endpoint; called in the transaction that records `event`.
    /// Returns whether any delivery was queued.
    pub(super) fn fan_out(&self, event: &Event) -> Result<bool, ApiError> {
        let endpoints = rows::<EndpointRow>(self.sql().exec("SELECT * FROM webhooks WHERE active = 1", None)?)?;
        let mut queued = false;
        for endpoint in endpoints {
            let wanted: Vec<EventName> = serde_json::from_str(&endpoint.events).unwrap_or_default();
            let for_device = endpoint.device_id.is_none()
                || endpoint.device_id.as_deref() == event.device_id.as_ref().map(DeviceId::as_str);
            if !(wanted.is_empty() || wanted.contains(&event.name())) || !for_device {
                continue;
            }
            let format = Format::parse(&endpoint.format).unwrap_or_default();
            if let Some((name, body)) = webhook::body(format, event, iso) {
                let body = String::from_utf8(body).map_err(ApiError::internal)?;
                self.insert_delivery(&endpoint.id, &event.id, &name, &body, now_ms())?;
                queued = true;
            }
        }
        Ok(queued)
    }

    pub(super) async fn wake_deliveries(&self) -> Result<(), ApiError> {
        let storage = self.state().storage();
        if storage.get_alarm().await?.is_none_or(|at| at as u64 > now_ms()) {
            storage.set_alarm(0i64).await?;
        }
        Ok(())
    }

    /// Claims the due deliveries and sends each from a detached task, so that the alarm never
    /// waits on a receiver: a slow endpoint holds up only its own deliveries, at most
    /// `PER_ENDPOINT` at a time. A claim is a lease; a task lost with its isolate leaves a lease
    /// that expires, and a later alarm claims the delivery again (at least once, same id).
    pub(super) async fn deliver_due(&self) -> Result<(), ApiError> {
        let courier = Courier {
            state: self.state().clone(),
            env: self.env().clone(),
            key: self.key_material()?.into(),
            retry_scale: self.retry_scale(),
            disable_after_ms: self.disable_after_ms(),
            egress: egress(self.env(), "WEBHOOK_HOSTS"),
        };
        let now = now_ms();
        let due = rows::<DeliveryRow>(self.sql().exec(
            "SELECT d.* FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.status IN (?, ?) AND d.next_attempt_at <= ? AND w.active = 1 ORDER BY d.next_attempt_at LIMIT ?",
            vec![PENDING.into(), IN_FLIGHT.into(), int(now), CANDIDATES.into()],
        )?)?;
        let busy = rows::<Busy>(self.sql().exec(
            "SELECT webhook_id, COUNT(*) AS n FROM deliveries WHERE status = ? AND next_attempt_at > ? GROUP BY webhook_id",
            vec![IN_FLIGHT.into(), int(now)],
        )?)?;
        let mut load: HashMap<String, i64> = busy.into_iter().map(|b| (b.webhook_id, b.n)).collect();
        let mut endpoints: HashMap<String, Rc<EndpointRow>> = HashMap::new();
        for delivery in due {
            let in_flight = load.entry(delivery.webhook_id.clone()).or_default();
            if *in_flight >= PER_ENDPOINT {
                continue;
            }
            *in_flight += 1;
            let endpoint = match endpoints.get(&delivery.webhook_id) {
                Some(endpoint) => endpoint.clone(),
                None => {
                    let endpoint = Rc::new(self.endpoint(&delivery.webhook_id)?);
                    endpoints.insert(delivery.webhook_id.clone(), endpoint.clone());
                    endpoint
                }
            };
            self.sql().exec(
                "UPDATE deliveries SET status = ?, next_attempt_at = ? WHERE id = ?",
                vec![IN_FLIGHT.into(), int(now + LEASE_MS), delivery.id.as_str().into()],
            )?;
            let courier = courier.clone();
            self.state().wait_until(async move { courier.deliver(&endpoint, &delivery).await });
        }
        courier.schedule().await
    }

    fn disable_after_ms(&self) -> u64 {
        config(self.env(), "WEBHOOK_DISABLE_AFTER_S").and_then(|v| v.parse::<u64>().ok()).unwrap_or(DISABLE_AFTER_S)
            * 1000
    }
}

#[derive(Deserialize)]
struct Busy {
    webhook_id: String,
    n: i64,
}

/// What a detached delivery needs once the alarm that started it has returned.
#[derive(Clone)]
struct Courier {
    state: Rc<State>,
    env: Env,
    key: Rc<str>,
    retry_scale: f64,
    disable_after_ms: u64,
    egress: Egress,
}

impl Courier {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    async fn deliver(&self, endpoint: &EndpointRow, delivery: &DeliveryRow) {
        // Checked again at delivery: a URL accepted in development is refused in production.
        let outcome = match self.egress.refusal(&endpoint.url) {
            None => attempt(&self.env, &self.key, endpoint, delivery).await,
            Some(why) => Attempt { ok: false, status: None, error: Some(format!("URL refused: {why}")) },
        };
        if let Err(e) = self.settle(&endpoint.id, delivery, outcome) {
            worker::console_error!("settling webhook delivery {}: {e}", delivery.id);
        }
        if let Err(e) = self.schedule().await {
            worker::console_error!("scheduling webhook deliveries: {e}");
        }
    }

    /// Sets the alarm for the earliest lease expiry or pending delivery, or else for the start
    /// of next month, when the app's quota starts over. Deliveries waiting for a busy endpoint
    /// are left out: the attempt that frees a slot schedules them, whereas an alarm for them now
    /// would only find the endpoint busy again, over and over, and hold up everyone's deliveries.
    async fn schedule(&self) -> Result<(), ApiError> {
        let now = now_ms();
        let next = number(
            &self.sql(),
            "SELECT MIN(d.next_attempt_at) AS n FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE w.active = 1 AND (d.status = ? OR (d.status = ? AND
                (SELECT COUNT(*) FROM deliveries f WHERE f.webhook_id = d.webhook_id AND f.status = ? AND f.next_attempt_at > ?) < ?))
             HAVING COUNT(*) > 0",
            vec![IN_FLIGHT.into(), PENDING.into(), IN_FLIGHT.into(), int(now), PER_ENDPOINT.into()],
        )?;
        let at = next.map_or(u64::MAX, |n| n as u64).min(next_month_start_ms(now));
        self.state.storage().set_alarm(at.saturating_sub(now) as i64).await?;
        Ok(())
    }

    fn settle(&self, webhook_id: &str, delivery: &DeliveryRow, outcome: Attempt) -> Result<(), ApiError> {
        let now = now_ms();
        let attempts = delivery.attempts + 1;
        let Some(endpoint) = find_endpoint(&self.sql(), webhook_id)? else {
            return Ok(()); // deleted meanwhile, with its deliveries
        };
        let (status, next_at) = match outcome.ok {
            true => (SUCCEEDED, now),
            // `retry_count` retries after the first attempt; then the delivery is kept as failed.
            false if attempts > endpoint.retry_count => (FAILED, now),
            false => {
                let jitter = (u8::from_str_radix(&random_hex(1), 16).unwrap_or(128) as f64 / 127.5) - 1.0;
                let delay = webhook::retry_delay_ms(attempts as u32, jitter) as f64 * self.retry_scale;
                (PENDING, now + delay as u64)
            }
        };
        self.sql().exec(
            "UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_status = ?, last_error = ? WHERE id = ?",
            vec![
                status.into(),
                attempts.into(),
                int(next_at),
                outcome.status.map(i64::from).into(),
                outcome.error.into(),
                delivery.id.as_str().into(),
            ],
        )?;
        self.sql().exec(
            "UPDATE webhooks SET attempts = attempts + 1, last_status = ?,
             successes = successes + ?, failures = failures + ?,
             consecutive_failures = CASE WHEN ? THEN 0 ELSE consecutive_failures + 1 END,
             last_success_at = CASE WHEN ? THEN ? ELSE last_success_at END,
             last_failure_at = CASE WHEN ? THEN last_failure_at ELSE ? END
             WHERE id = ?",
            vec![
                outcome.status.map(i64::from).into(),
                int(outcome.ok as u64),
                int(!outcome.ok as u64),
                int(outcome.ok as u64),
                int(outcome.ok as u64),
                int(now),
                int(outcome.ok as u64),
                int(now),
                endpoint.id.as_str().into(),
            ],
        )?;
        // An endpoint failing without a break for too long is switched off and says why; what
        // queued meanwhile stays pending and goes out once it is re-enabled.
        let since = endpoint.last_success_at.unwrap_or(endpoint.created_at);
        if !outcome.ok && now.saturating_sub(since) >= self.disable_after_ms {
            let reason = format!("disabled after failing continuously since {}", iso(since));
            self.sql().exec(
                "UPDATE webhooks SET active = 0, disabled_reason = ? WHERE id = ?",
                vec![reason.into(), endpoint.id.as_str().into()],
            )?;
        }
        Ok(())
    }
}

/// Signs one attempt of a delivery (fresh timestamp, same bytes) and has the endpoint's sender
/// object post it. The post runs in that object, not here: a receiver whose address cannot even be
/// resolved or connected to can upset the object that fetches, and that must never be the app's.
async fn attempt(env: &Env, key: &str, endpoint: &EndpointRow, delivery: &DeliveryRow) -> Attempt {
    let failed = |error: String| Attempt { ok: false, status: None, error: Some(error) };
    let Some(secret) = secretbox::open(key, &endpoint.secret) else {
        return failed("the signing secret cannot be decrypted (WEBHOOK_KEY changed?)".into());
    };
    let now = now_ms();
    let previous = endpoint
        .previous_secret
        .as_deref()
        .filter(|_| endpoint.previous_until.is_some_and(|until| until > now))
        .and_then(|sealed| secretbox::open(key, sealed));
    let mut secrets = vec![secret.as_str()];
    secrets.extend(previous.as_deref());
    let format = Format::parse(&endpoint.format).unwrap_or_default();
    let headers = webhook::headers(format, &secrets, &delivery.id, &delivery.event_name, delivery.body.as_bytes(), now)
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    let post = PostDelivery { url: endpoint.url.clone(), headers, body: delivery.body.clone() };
    call(env, &endpoint.id, post).await.unwrap_or_else(|e| failed(format!("not sent: {e}")))
}
