//! The app's webhook endpoints and its durable delivery outbox. Recording an event inserts one
//! delivery per matching endpoint in the same transaction; the app object's alarm sends them,
//! retries with the Standard Webhooks schedule, and keeps failures for replay.

use std::collections::HashMap;
use std::rc::Rc;

use serde::Deserialize;
use worker::{Env, SqlStorage, State};

use super::app::AppObject;
use super::{call, int, number, rows};
use crate::domain::delivery::{self, DeliveryStatus};
use crate::domain::egress::Egress;
use crate::domain::error::{ApiError, Rule};
use crate::domain::events::{Event, EventName};
use crate::domain::ids::{random_hex, DeviceId};
use crate::domain::scope;
use crate::domain::secretbox;
use crate::domain::webhook::{self, Format};
use crate::protocol::sender::{Attempt, PostDelivery};
use crate::protocol::webhooks::{
    CreateEndpoint, CreatedEndpoint, DeleteEndpoint, DeliveryView, EndpointView, GetEndpoint, Health, ListDeliveries,
    ListEndpoints, RegenerateSecret, Replay, Replayed, RotatedSecret, TestEndpoint, TestQueued, UpdateEndpoint,
    WebhookHandler,
};
use crate::runtime::{config, egress, iso, next_month_start_ms, now_ms, required_config};

pub const MAX_ENDPOINTS: i64 = 5;
/// Deliveries looked at per alarm, and how many one endpoint may have in flight at once.
const CANDIDATES: i64 = 100;
const PER_ENDPOINT: i64 = 4;
/// A claimed delivery is retried by a later alarm if its attempt has not settled by then.
const LEASE_MS: u64 = super::sender::TIMEOUT_MS + 5_000;
/// An endpoint that has failed continuously for this long (5 days) is disabled.
const DISABLE_AFTER_S: u64 = 5 * 24 * 60 * 60;

#[derive(Debug, Clone, Deserialize)]
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

const PENDING: &str = DeliveryStatus::Pending.as_str();
const IN_FLIGHT: &str = DeliveryStatus::InFlight.as_str();
const FAILED: &str = DeliveryStatus::Failed.as_str();

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Loginwa => "loginwa",
        Format::Spwp => "spwp",
        Format::Standard => "standard",
    }
}

impl EndpointRow {
    fn view(&self) -> EndpointView {
        EndpointView {
            id: self.id.clone(),
            url: self.url.clone(),
            events: serde_json::from_str(&self.events).unwrap_or_default(),
            format: Format::parse(&self.format).unwrap_or_default(),
            device_id: self.device_id.clone(),
            retry_count: self.retry_count,
            active: self.active != 0,
            disabled_reason: self.disabled_reason.clone(),
            created_at: self.created_at,
            health: Health {
                attempts: self.attempts,
                successes: self.successes,
                failures: self.failures,
                consecutive_failures: self.consecutive_failures,
                last_success_at: self.last_success_at,
                last_failure_at: self.last_failure_at,
                last_status_code: self.last_status,
            },
        }
    }
}

impl DeliveryRow {
    fn view(self) -> DeliveryView {
        DeliveryView {
            // An unknown stored status is an attempt that never settled: pending.
            status: DeliveryStatus::parse(&self.status).unwrap_or(DeliveryStatus::Pending),
            id: self.id,
            event_id: self.event_id,
            event: self.event_name,
            attempts: self.attempts,
            last_status_code: self.last_status,
            last_error: self.last_error,
            created_at: self.created_at,
            next_attempt_at: self.next_attempt_at,
        }
    }
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

    /// The endpoint `id`, if `scope` (a device-scoped key's device) may see it.
    fn visible_endpoint(&self, id: &str, scope: Option<&DeviceId>) -> Result<EndpointRow, ApiError> {
        self.endpoint(id).and_then(|e| match scope::visible(scope, e.device_id.as_deref()) {
            true => Ok(e),
            false => Err(not_found()),
        })
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
        let jitter = (u8::from_str_radix(&random_hex(1), 16).unwrap_or(128) as f64 / 127.5) - 1.0;
        let (status, next_at) =
            delivery::settle(outcome.ok, attempts, endpoint.retry_count, now, jitter, self.retry_scale);
        self.sql().exec(
            "UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_status = ?, last_error = ? WHERE id = ?",
            vec![
                status.as_str().into(),
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
        if delivery::disables(outcome.ok, since, now, self.disable_after_ms) {
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
        .filter(|_| delivery::previous_signs(endpoint.previous_until, now))
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

impl WebhookHandler for AppObject {
    async fn list_endpoints(&self, ListEndpoints { scope }: ListEndpoints) -> Result<Vec<EndpointView>, ApiError> {
        let all = rows::<EndpointRow>(self.sql().exec("SELECT * FROM webhooks ORDER BY created_at", None)?)?;
        Ok(all
            .iter()
            .filter(|e| scope::visible(scope.as_ref(), e.device_id.as_deref()))
            .map(EndpointRow::view)
            .collect())
    }

    async fn create_endpoint(
        &self,
        CreateEndpoint { spec, now, .. }: CreateEndpoint,
    ) -> Result<CreatedEndpoint, ApiError> {
        // The edge has already bound a scoped key's endpoint to its device.
        let count = number(&self.sql(), "SELECT COUNT(*) AS n FROM webhooks", vec![])?;
        if count.unwrap_or(0) >= MAX_ENDPOINTS {
            let reason = format!("cannot be added: an app may register at most {MAX_ENDPOINTS} webhooks");
            return Err(ApiError::field("url", Rule::Invalid { reason }));
        }
        let id = format!("wh_{}", random_hex(8));
        let secret = spec.secret.clone().unwrap_or_else(|| webhook::new_secret(spec.format));
        self.sql().exec(
            "INSERT INTO webhooks (id, url, events, format, device_id, secret, retry_count, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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
        Ok(CreatedEndpoint { endpoint: self.endpoint(&id)?.view(), secret })
    }

    async fn get_endpoint(&self, GetEndpoint { scope, id }: GetEndpoint) -> Result<EndpointView, ApiError> {
        Ok(self.visible_endpoint(&id, scope.as_ref())?.view())
    }

    async fn update_endpoint(&self, op: UpdateEndpoint) -> Result<EndpointView, ApiError> {
        let UpdateEndpoint { scope, id, patch, now } = op;
        let current = self.visible_endpoint(&id, scope.as_ref())?;
        let sealed =
            patch.secret.as_deref().map(|s| self.key_material().map(|k| secretbox::seal(&k, s))).transpose()?;
        let reenabled = patch.active == Some(true);
        // A new secret keeps the replaced one signing through its grace; re-enabling starts the
        // failure streak over.
        self.sql().exec(
            "UPDATE webhooks SET url = COALESCE(?1, url), events = COALESCE(?2, events),
             active = COALESCE(?3, active), retry_count = COALESCE(?4, retry_count),
             previous_secret = CASE WHEN ?5 IS NULL THEN previous_secret ELSE secret END,
             previous_until = CASE WHEN ?5 IS NULL THEN previous_until ELSE ?6 END,
             secret = COALESCE(?5, secret),
             consecutive_failures = CASE WHEN ?7 = 1 THEN 0 ELSE consecutive_failures END,
             disabled_reason = CASE WHEN ?7 = 1 THEN NULL ELSE disabled_reason END
             WHERE id = ?8",
            vec![
                patch.url.into(),
                patch.events.map(|e| serde_json::to_string(&e).unwrap_or_default()).into(),
                patch.active.map(|a| a as i64).into(),
                patch.retry_count.into(),
                sealed.into(),
                int(delivery::previous_until(now)),
                int(reenabled as u64),
                current.id.into(),
            ],
        )?;
        if reenabled {
            self.wake_deliveries().await?;
        }
        Ok(self.endpoint(&id)?.view())
    }

    async fn delete_endpoint(&self, DeleteEndpoint { scope, id }: DeleteEndpoint) -> Result<(), ApiError> {
        self.visible_endpoint(&id, scope.as_ref())?;
        self.sql().exec("DELETE FROM webhooks WHERE id = ?", vec![id.as_str().into()])?;
        self.sql().exec("DELETE FROM deliveries WHERE webhook_id = ?", vec![id.into()])?;
        Ok(())
    }

    async fn regenerate_secret(&self, op: RegenerateSecret) -> Result<RotatedSecret, ApiError> {
        let RegenerateSecret { scope, id, now } = op;
        let current = self.visible_endpoint(&id, scope.as_ref())?;
        let format = Format::parse(&current.format).unwrap_or_default();
        let secret = webhook::new_secret(format);
        let until = delivery::previous_until(now);
        self.sql().exec(
            "UPDATE webhooks SET previous_secret = secret, previous_until = ?, secret = ? WHERE id = ?",
            vec![int(until), secretbox::seal(&self.key_material()?, &secret).into(), id.into()],
        )?;
        Ok(RotatedSecret { id: current.id, secret, previous_secret_valid_until: until })
    }

    async fn test_endpoint(&self, TestEndpoint { scope, id, now }: TestEndpoint) -> Result<TestQueued, ApiError> {
        let endpoint = self.visible_endpoint(&id, scope.as_ref())?;
        let body = webhook::test_body(&endpoint.id, iso(now));
        let delivery_id = self.insert_delivery(&endpoint.id, "evt_test", "webhook.test", &body, now)?;
        self.wake_deliveries().await?;
        Ok(TestQueued { delivery_id })
    }

    async fn list_deliveries(&self, op: ListDeliveries) -> Result<Vec<DeliveryView>, ApiError> {
        let ListDeliveries { scope, id, status } = op;
        self.visible_endpoint(&id, scope.as_ref())?;
        // Clients ask for pending ones, which includes those under way.
        let status = status.map(DeliveryStatus::as_str);
        let listed = rows::<DeliveryRow>(self.sql().exec(
            "SELECT * FROM deliveries WHERE webhook_id = ?1 AND (?2 IS NULL OR status = ?2 OR (?2 = ?3 AND status = ?4))
             ORDER BY created_at DESC, id LIMIT 100",
            vec![id.into(), status.into(), PENDING.into(), IN_FLIGHT.into()],
        )?)?;
        Ok(listed.into_iter().map(DeliveryRow::view).collect())
    }

    async fn replay(&self, Replay { scope, id, delivery_id, since, now }: Replay) -> Result<Replayed, ApiError> {
        self.visible_endpoint(&id, scope.as_ref())?;
        let replayed = match delivery_id {
            // Only this endpoint's: another endpoint's delivery id is not found here.
            Some(delivery_id) => {
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
            None => {
                let failed = rows::<Failed>(self.sql().exec(
                    "SELECT id, created_at FROM deliveries WHERE webhook_id = ? AND status = ?",
                    vec![id.as_str().into(), FAILED.into()],
                )?)?;
                let chosen: Vec<&str> = failed
                    .iter()
                    .filter(|f| delivery::replays(DeliveryStatus::Failed, f.created_at, since))
                    .map(|f| f.id.as_str())
                    .collect();
                let chosen_json = serde_json::to_string(&chosen).map_err(ApiError::internal)?;
                self.sql().exec(
                    "UPDATE deliveries SET status = ?, attempts = 0, next_attempt_at = ?
                     WHERE id IN (SELECT value FROM json_each(?))",
                    vec![PENDING.into(), int(now), chosen_json.into()],
                )?;
                chosen.len() as i64
            }
        };
        self.wake_deliveries().await?;
        Ok(Replayed { replayed })
    }
}

#[derive(Deserialize)]
struct Failed {
    id: String,
    created_at: u64,
}
