//! The app's webhook endpoints and delivery outbox: their tables and statements. Recording an
//! event inserts one delivery per matching endpoint ([`fan_out`]) in the same transaction; the
//! app object's alarm claims the due ones ([`claim_due`]), sends them, [`settle`]s each attempt
//! with the Standard Webhooks retry schedule and keeps failures for replay. The endpoint facet is
//! served by any [`Sql`] that is also an [`Outbox`], so the app's object answers it by being its
//! storage.

use std::collections::HashMap;
use std::rc::Rc;

use serde::Deserialize;

use super::Sql;
use crate::domain::delivery::{self, DeliveryStatus};
use crate::domain::error::{ApiError, Rule};
use crate::domain::events::{Event, EventName};
use crate::domain::ids::{random_hex, DeviceId};
use crate::domain::scope;
use crate::domain::webhook::{self, Format};
use crate::protocol::sender::Attempt;
use crate::protocol::webhooks::{
    CreateEndpoint, CreatedEndpoint, DeleteEndpoint, DeliveryView, EndpointView, GetEndpoint, Health, ListDeliveries,
    ListEndpoints, RegenerateSecret, Replay, Replayed, RotatedSecret, TestEndpoint, TestQueued, UpdateEndpoint,
    WebhookHandler,
};

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

/// Drops the deliveries that succeeded or were given up on before `cutoff`.
pub fn trim_settled(sql: &impl Sql, cutoff: u64) -> Result<(), ApiError> {
    sql.run(
        "DELETE FROM deliveries WHERE status IN (?, ?) AND created_at < ?",
        vec![DeliveryStatus::Succeeded.as_str().into(), DeliveryStatus::Failed.as_str().into(), cutoff.into()],
    )?;
    Ok(())
}

pub const MAX_ENDPOINTS: i64 = 5;
/// Deliveries looked at per alarm, and how many one endpoint may have in flight at once.
const CANDIDATES: i64 = 100;
const PER_ENDPOINT: i64 = 4;

/// What only the app's object can do for its endpoints: it holds the deployment's webhook key,
/// and its alarm sends the deliveries.
#[allow(async_fn_in_trait)]
pub trait Outbox: Sql {
    /// A signing secret sealed for storage (`WEBHOOK_KEY`).
    fn seal(&self, secret: &str) -> Result<String, ApiError>;
    /// Brings the delivery alarm forward to now, for deliveries just queued or made due.
    async fn wake(&self) -> Result<(), ApiError>;
}

/// How a failed delivery is retried and when its endpoint gives up (configuration of the
/// deployment).
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Compresses the retry schedule (tests), 1 in production.
    pub scale: f64,
    pub disable_after_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    pub events: String,
    pub format: String,
    pub device_id: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_until: Option<u64>,
    pub retry_count: i64,
    pub active: i64,
    pub created_at: u64,
    pub attempts: i64,
    pub successes: i64,
    pub failures: i64,
    pub consecutive_failures: i64,
    pub last_success_at: Option<u64>,
    pub last_failure_at: Option<u64>,
    pub last_status: Option<i64>,
    pub disabled_reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_name: String,
    pub body: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: u64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: u64,
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

fn find_endpoint(sql: &impl Sql, id: &str) -> Result<Option<EndpointRow>, ApiError> {
    Ok(sql.row::<EndpointRow>("SELECT * FROM webhooks WHERE id = ?", vec![id.into()])?)
}

fn not_found() -> ApiError {
    ApiError::not_found("webhook")
}

fn endpoint(sql: &impl Sql, id: &str) -> Result<EndpointRow, ApiError> {
    find_endpoint(sql, id)?.ok_or_else(not_found)
}

/// The endpoint `id`, if `scope` (a device-scoped key's device) may see it.
fn visible_endpoint(sql: &impl Sql, id: &str, scope: Option<&DeviceId>) -> Result<EndpointRow, ApiError> {
    endpoint(sql, id).and_then(|e| match scope::visible(scope, e.device_id.as_deref()) {
        true => Ok(e),
        false => Err(not_found()),
    })
}

fn insert_delivery(
    sql: &impl Sql,
    webhook_id: &str,
    event_id: &str,
    name: &str,
    body: &str,
    now: u64,
) -> Result<String, ApiError> {
    let id = format!("dlv_{}", random_hex(12));
    sql.run(
        "INSERT INTO deliveries (id, webhook_id, event_id, event_name, body, status, next_attempt_at, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            id.as_str().into(),
            webhook_id.into(),
            event_id.into(),
            name.into(),
            body.into(),
            PENDING.into(),
            now.into(),
            now.into(),
        ],
    )?;
    Ok(id)
}

/// One delivery per matching active endpoint; called in the transaction that records `event`.
/// Returns whether any delivery was queued.
pub fn fan_out(sql: &impl Sql, event: &Event, now: u64) -> Result<bool, ApiError> {
    let endpoints = sql.rows::<EndpointRow>("SELECT * FROM webhooks WHERE active = 1", vec![])?;
    let mut queued = false;
    for endpoint in endpoints {
        let wanted: Vec<EventName> = serde_json::from_str(&endpoint.events).unwrap_or_default();
        let for_device = endpoint.device_id.is_none()
            || endpoint.device_id.as_deref() == event.device_id.as_ref().map(DeviceId::as_str);
        if !(wanted.is_empty() || wanted.contains(&event.name())) || !for_device {
            continue;
        }
        let format = Format::parse(&endpoint.format).unwrap_or_default();
        if let Some((name, body)) = webhook::body(format, event) {
            let body = String::from_utf8(body).map_err(ApiError::internal)?;
            insert_delivery(sql, &endpoint.id, &event.id, &name, &body, now)?;
            queued = true;
        }
    }
    Ok(queued)
}

/// Claims the deliveries due at `now` for `lease_ms`, with their endpoints, at most
/// `PER_ENDPOINT` in flight per endpoint. A claim is a lease: one whose attempt never settles
/// (its task lost with the isolate) is due again when the lease expires, under the same id.
pub fn claim_due(sql: &impl Sql, now: u64, lease_ms: u64) -> Result<Vec<(Rc<EndpointRow>, DeliveryRow)>, ApiError> {
    #[derive(Deserialize)]
    struct Busy {
        webhook_id: String,
        n: i64,
    }
    let due = sql.rows::<DeliveryRow>(
        "SELECT d.* FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
         WHERE d.status IN (?, ?) AND d.next_attempt_at <= ? AND w.active = 1 ORDER BY d.next_attempt_at LIMIT ?",
        vec![PENDING.into(), IN_FLIGHT.into(), now.into(), CANDIDATES.into()],
    )?;
    let busy = sql.rows::<Busy>(
        "SELECT webhook_id, COUNT(*) AS n FROM deliveries WHERE status = ? AND next_attempt_at > ? GROUP BY webhook_id",
        vec![IN_FLIGHT.into(), now.into()],
    )?;
    let mut load: HashMap<String, i64> = busy.into_iter().map(|b| (b.webhook_id, b.n)).collect();
    let mut endpoints: HashMap<String, Rc<EndpointRow>> = HashMap::new();
    let mut claimed = vec![];
    for delivery in due {
        let in_flight = load.entry(delivery.webhook_id.clone()).or_default();
        if *in_flight >= PER_ENDPOINT {
            continue;
        }
        *in_flight += 1;
        let endpoint = match endpoints.get(&delivery.webhook_id) {
            Some(endpoint) => endpoint.clone(),
            None => {
                let endpoint = Rc::new(endpoint(sql, &delivery.webhook_id)?);
                endpoints.insert(delivery.webhook_id.clone(), endpoint.clone());
                endpoint
            }
        };
        sql.run(
            "UPDATE deliveries SET status = ?, next_attempt_at = ? WHERE id = ?",
            vec![IN_FLIGHT.into(), (now + lease_ms).into(), delivery.id.as_str().into()],
        )?;
        claimed.push((endpoint, delivery));
    }
    Ok(claimed)
}

/// When the next delivery falls due: the earliest lease expiry or pending delivery. Deliveries
/// waiting for a busy endpoint are left out: the attempt that frees a slot schedules them,
/// whereas an alarm for them now would only find the endpoint busy again, over and over, and
/// hold up everyone's deliveries.
pub fn next_due(sql: &impl Sql, now: u64) -> Result<Option<u64>, ApiError> {
    let next = sql.number(
        "SELECT MIN(d.next_attempt_at) AS n FROM deliveries d JOIN webhooks w ON w.id = d.webhook_id
         WHERE w.active = 1 AND (d.status = ? OR (d.status = ? AND
            (SELECT COUNT(*) FROM deliveries f WHERE f.webhook_id = d.webhook_id AND f.status = ? AND f.next_attempt_at > ?) < ?))
         HAVING COUNT(*) > 0",
        vec![IN_FLIGHT.into(), PENDING.into(), IN_FLIGHT.into(), now.into(), PER_ENDPOINT.into()],
    )?;
    Ok(next.map(|n| n as u64))
}

/// Records how an attempt of `delivery` went, on the delivery (its next attempt, `jitter` in
/// [-1, 1] spreading it) and on its endpoint's health.
pub fn settle(
    sql: &impl Sql,
    delivery: &DeliveryRow,
    outcome: Attempt,
    now: u64,
    jitter: f64,
    retry: Retry,
    iso: impl Fn(u64) -> String,
) -> Result<(), ApiError> {
    let attempts = delivery.attempts + 1;
    let Some(endpoint) = find_endpoint(sql, &delivery.webhook_id)? else {
        return Ok(()); // deleted meanwhile, with its deliveries
    };
    let (status, next_at) = delivery::settle(outcome.ok, attempts, endpoint.retry_count, now, jitter, retry.scale);
    sql.run(
        "UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_status = ?, last_error = ? WHERE id = ?",
        vec![
            status.as_str().into(),
            attempts.into(),
            next_at.into(),
            outcome.status.map(i64::from).into(),
            outcome.error.into(),
            delivery.id.as_str().into(),
        ],
    )?;
    sql.run(
        "UPDATE webhooks SET attempts = attempts + 1, last_status = ?,
         successes = successes + ?, failures = failures + ?,
         consecutive_failures = CASE WHEN ? THEN 0 ELSE consecutive_failures + 1 END,
         last_success_at = CASE WHEN ? THEN ? ELSE last_success_at END,
         last_failure_at = CASE WHEN ? THEN last_failure_at ELSE ? END
         WHERE id = ?",
        vec![
            outcome.status.map(i64::from).into(),
            outcome.ok.into(),
            (!outcome.ok).into(),
            outcome.ok.into(),
            outcome.ok.into(),
            now.into(),
            outcome.ok.into(),
            now.into(),
            endpoint.id.as_str().into(),
        ],
    )?;
    // An endpoint failing without a break for too long is switched off and says why; what
    // queued meanwhile stays pending and goes out once it is re-enabled.
    let since = endpoint.last_success_at.unwrap_or(endpoint.created_at);
    if delivery::disables(outcome.ok, since, now, retry.disable_after_ms) {
        let reason = format!("disabled after failing continuously since {}", iso(since));
        sql.run(
            "UPDATE webhooks SET active = 0, disabled_reason = ? WHERE id = ?",
            vec![reason.into(), endpoint.id.as_str().into()],
        )?;
    }
    Ok(())
}

impl<S: Outbox> WebhookHandler for S {
    async fn list_endpoints(&self, ListEndpoints { scope }: ListEndpoints) -> Result<Vec<EndpointView>, ApiError> {
        let all = self.rows::<EndpointRow>("SELECT * FROM webhooks ORDER BY created_at", vec![])?;
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
        let count = self.number("SELECT COUNT(*) AS n FROM webhooks", vec![])?;
        if count.unwrap_or(0) >= MAX_ENDPOINTS {
            let reason = format!("cannot be added: an app may register at most {MAX_ENDPOINTS} webhooks");
            return Err(ApiError::field("url", Rule::Invalid { reason }));
        }
        let id = format!("wh_{}", random_hex(8));
        let secret = spec.secret.clone().unwrap_or_else(|| webhook::new_secret(spec.format));
        self.run(
            "INSERT INTO webhooks (id, url, events, format, device_id, secret, retry_count, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            vec![
                id.as_str().into(),
                spec.url.into(),
                serde_json::to_string(&spec.events).map_err(ApiError::internal)?.into(),
                format_name(spec.format).into(),
                spec.device_id.into(),
                self.seal(&secret)?.into(),
                spec.retry_count.into(),
                now.into(),
            ],
        )?;
        Ok(CreatedEndpoint { endpoint: endpoint(self, &id)?.view(), secret })
    }

    async fn get_endpoint(&self, GetEndpoint { scope, id }: GetEndpoint) -> Result<EndpointView, ApiError> {
        Ok(visible_endpoint(self, &id, scope.as_ref())?.view())
    }

    async fn update_endpoint(&self, op: UpdateEndpoint) -> Result<EndpointView, ApiError> {
        let UpdateEndpoint { scope, id, patch, now } = op;
        let current = visible_endpoint(self, &id, scope.as_ref())?;
        let sealed = patch.secret.as_deref().map(|s| self.seal(s)).transpose()?;
        let reenabled = patch.active == Some(true);
        let until = delivery::previous_until(Format::parse(&current.format).unwrap_or_default(), now);
        // A new secret keeps the replaced one signing through its grace where the format has
        // one; re-enabling starts the failure streak over.
        self.run(
            "UPDATE webhooks SET url = COALESCE(?1, url), events = COALESCE(?2, events),
             active = COALESCE(?3, active), retry_count = COALESCE(?4, retry_count),
             previous_secret = CASE WHEN ?5 IS NULL THEN previous_secret WHEN ?6 IS NULL THEN NULL ELSE secret END,
             previous_until = CASE WHEN ?5 IS NULL THEN previous_until ELSE ?6 END,
             secret = COALESCE(?5, secret),
             consecutive_failures = CASE WHEN ?7 = 1 THEN 0 ELSE consecutive_failures END,
             disabled_reason = CASE WHEN ?7 = 1 THEN NULL ELSE disabled_reason END
             WHERE id = ?8",
            vec![
                patch.url.into(),
                patch.events.map(|e| serde_json::to_string(&e).unwrap_or_default()).into(),
                patch.active.into(),
                patch.retry_count.into(),
                sealed.into(),
                until.into(),
                reenabled.into(),
                current.id.into(),
            ],
        )?;
        if reenabled {
            self.wake().await?;
        }
        Ok(endpoint(self, &id)?.view())
    }

    async fn delete_endpoint(&self, DeleteEndpoint { scope, id }: DeleteEndpoint) -> Result<(), ApiError> {
        visible_endpoint(self, &id, scope.as_ref())?;
        self.run("DELETE FROM webhooks WHERE id = ?", vec![id.as_str().into()])?;
        self.run("DELETE FROM deliveries WHERE webhook_id = ?", vec![id.into()])?;
        Ok(())
    }

    async fn regenerate_secret(&self, op: RegenerateSecret) -> Result<RotatedSecret, ApiError> {
        let RegenerateSecret { scope, id, now } = op;
        let current = visible_endpoint(self, &id, scope.as_ref())?;
        let format = Format::parse(&current.format).unwrap_or_default();
        let secret = webhook::new_secret(format);
        let until = delivery::previous_until(format, now);
        self.run(
            "UPDATE webhooks SET previous_secret = CASE WHEN ?1 IS NULL THEN NULL ELSE secret END,
             previous_until = ?1, secret = ?2 WHERE id = ?3",
            vec![until.into(), self.seal(&secret)?.into(), id.into()],
        )?;
        Ok(RotatedSecret { id: current.id, secret, previous_secret_valid_until: until })
    }

    async fn test_endpoint(&self, TestEndpoint { scope, id, now }: TestEndpoint) -> Result<TestQueued, ApiError> {
        let endpoint = visible_endpoint(self, &id, scope.as_ref())?;
        let format = Format::parse(&endpoint.format).unwrap_or_default();
        let (name, body) = webhook::test_body(format, &endpoint.id, endpoint.device_id.as_deref(), now);
        let delivery_id = insert_delivery(self, &endpoint.id, "evt_test", &name, &body, now)?;
        self.wake().await?;
        Ok(TestQueued { delivery_id })
    }

    async fn list_deliveries(&self, op: ListDeliveries) -> Result<Vec<DeliveryView>, ApiError> {
        let ListDeliveries { scope, id, status } = op;
        visible_endpoint(self, &id, scope.as_ref())?;
        // Clients ask for pending ones, which includes those under way.
        let status = status.map(DeliveryStatus::as_str);
        let listed = self.rows::<DeliveryRow>(
            "SELECT * FROM deliveries WHERE webhook_id = ?1 AND (?2 IS NULL OR status = ?2 OR (?2 = ?3 AND status = ?4))
             ORDER BY created_at DESC, id LIMIT 100",
            vec![id.into(), status.into(), PENDING.into(), IN_FLIGHT.into()],
        )?;
        Ok(listed.into_iter().map(DeliveryRow::view).collect())
    }

    async fn replay(&self, Replay { scope, id, delivery_id, since, now }: Replay) -> Result<Replayed, ApiError> {
        #[derive(Deserialize)]
        struct Failed {
            id: String,
            created_at: u64,
        }
        visible_endpoint(self, &id, scope.as_ref())?;
        let replayed = match delivery_id {
            // Only this endpoint's: another endpoint's delivery id is not found here.
            Some(delivery_id) => {
                let found = self.any(
                    "SELECT COUNT(*) AS n FROM deliveries WHERE id = ? AND webhook_id = ?",
                    vec![delivery_id.as_str().into(), id.as_str().into()],
                )?;
                if !found {
                    return Err(ApiError::not_found("delivery"));
                }
                self.run(
                    "UPDATE deliveries SET status = ?, attempts = 0, next_attempt_at = ? WHERE id = ?",
                    vec![PENDING.into(), now.into(), delivery_id.into()],
                )?;
                1
            }
            None => {
                let failed = self.rows::<Failed>(
                    "SELECT id, created_at FROM deliveries WHERE webhook_id = ? AND status = ?",
                    vec![id.as_str().into(), FAILED.into()],
                )?;
                let chosen: Vec<&str> = failed
                    .iter()
                    .filter(|f| delivery::replays(DeliveryStatus::Failed, f.created_at, since))
                    .map(|f| f.id.as_str())
                    .collect();
                let chosen_json = serde_json::to_string(&chosen).map_err(ApiError::internal)?;
                self.run(
                    "UPDATE deliveries SET status = ?, attempts = 0, next_attempt_at = ?
                     WHERE id IN (SELECT value FROM json_each(?))",
                    vec![PENDING.into(), now.into(), chosen_json.into()],
                )?;
                chosen.len() as i64
            }
        };
        self.wake().await?;
        Ok(Replayed { replayed })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use serde::de::DeserializeOwned;

    use super::*;
    use crate::domain::events::{OtpEnded, What};
    use crate::protocol::webhooks::{EndpointPatch, EndpointSpec};
    use crate::store::memory::{now, Memory};
    use crate::store::{Bind, SqlError};

    const T0: u64 = 1_800_000_000_000;
    const RETRY: Retry = Retry { scale: 1.0, disable_after_ms: 1_000 };

    /// The app's object as the facet sees it: its tables, a reversible seal and a count of wakes.
    struct App {
        sql: Memory,
        wakes: Cell<u32>,
    }

    impl Sql for App {
        fn run(&self, query: &str, binds: Vec<Bind>) -> Result<(), SqlError> {
            self.sql.run(query, binds)
        }

        fn rows<T: DeserializeOwned>(&self, query: &str, binds: Vec<Bind>) -> Result<Vec<T>, SqlError> {
            self.sql.rows(query, binds)
        }
    }

    impl Outbox for App {
        fn seal(&self, secret: &str) -> Result<String, ApiError> {
            Ok(format!("sealed:{secret}"))
        }

        async fn wake(&self) -> Result<(), ApiError> {
            self.wakes.set(self.wakes.get() + 1);
            Ok(())
        }
    }

    fn app() -> App {
        App { sql: Memory::with(&SCHEMA), wakes: Cell::new(0) }
    }

    fn iso(ms: u64) -> String {
        format!("t{ms}")
    }

    fn device(n: u8) -> DeviceId {
        DeviceId::parse(&format!("dev_{n:016x}")).unwrap()
    }

    fn spec(device_id: Option<&DeviceId>, events: Vec<EventName>) -> EndpointSpec {
        EndpointSpec {
            url: "https://example.com/hook".into(),
            events,
            format: Format::Loginwa,
            device_id: device_id.map(|d| d.to_string()),
            retry_count: 2,
            secret: Some("s1".into()),
        }
    }

    fn create(app: &App, device_id: Option<&DeviceId>, events: Vec<EventName>) -> Result<String, ApiError> {
        let op = CreateEndpoint { scope: None, spec: spec(device_id, events), now: T0 };
        Ok(now(app.create_endpoint(op))?.endpoint.id)
    }

    fn row(app: &App, id: &str) -> EndpointRow {
        endpoint(app, id).unwrap()
    }

    fn event(device_id: Option<DeviceId>, verified: bool, at: u64) -> Event {
        let ended = OtpEnded { session_id: "s".into(), phone_number: "628".into(), verified_at: None };
        let what = if verified { What::OtpVerified(ended) } else { What::OtpExpired(ended) };
        Event::new(device_id, at, what)
    }

    /// Queues a delivery of an event at `at` to every endpoint.
    fn queue(app: &App, at: u64) {
        assert!(fan_out(app, &event(None, true, at), at).unwrap());
    }

    fn deliveries(app: &App, webhook_id: &str) -> Vec<DeliveryRow> {
        app.rows("SELECT * FROM deliveries WHERE webhook_id = ? ORDER BY created_at, id", vec![webhook_id.into()])
            .unwrap()
    }

    fn listed(app: &App, id: &str, status: Option<DeliveryStatus>) -> Vec<DeliveryView> {
        now(app.list_deliveries(ListDeliveries { scope: None, id: id.into(), status })).unwrap()
    }

    fn failure() -> Attempt {
        Attempt { ok: false, status: Some(500), error: Some("boom".into()) }
    }

    #[test]
    fn an_app_registers_at_most_five_endpoints() {
        let app = app();
        for _ in 0..MAX_ENDPOINTS {
            create(&app, None, vec![]).unwrap();
        }
        let refused = create(&app, None, vec![]).unwrap_err();
        let reason = format!("cannot be added: an app may register at most {MAX_ENDPOINTS} webhooks");
        assert_eq!(refused, ApiError::field("url", Rule::Invalid { reason }));
        let all = now(app.list_endpoints(ListEndpoints { scope: None })).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(row(&app, &all[0].id).secret, "sealed:s1", "the secret is stored sealed");
    }

    #[test]
    fn a_scoped_key_sees_and_changes_only_its_devices_endpoints() {
        let app = app();
        let (mine, theirs) = (device(1), device(2));
        let own = create(&app, Some(&mine), vec![]).unwrap();
        let other = create(&app, Some(&theirs), vec![]).unwrap();
        let shared = create(&app, None, vec![]).unwrap();
        let scope = Some(mine.clone());
        let visible = now(app.list_endpoints(ListEndpoints { scope: scope.clone() })).unwrap();
        assert_eq!(visible.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), [own.as_str()]);
        assert!(now(app.get_endpoint(GetEndpoint { scope: scope.clone(), id: own.clone() })).is_ok());
        for id in [&other, &shared] {
            let get = now(app.get_endpoint(GetEndpoint { scope: scope.clone(), id: id.clone() }));
            assert_eq!(get.unwrap_err(), not_found());
            let patch = EndpointPatch { url: Some("https://evil.example".into()), ..Default::default() };
            let update = UpdateEndpoint { scope: scope.clone(), id: id.clone(), patch, now: T0 };
            assert_eq!(now(app.update_endpoint(update)).unwrap_err(), not_found());
            let delete = DeleteEndpoint { scope: scope.clone(), id: id.clone() };
            assert_eq!(now(app.delete_endpoint(delete)).unwrap_err(), not_found());
            assert_eq!(row(&app, id).url, "https://example.com/hook");
        }
        let unknown = GetEndpoint { scope: None, id: "wh_unknown".into() };
        assert_eq!(now(app.get_endpoint(unknown)).unwrap_err(), not_found());
    }

    #[test]
    fn a_new_secret_keeps_the_replaced_one_signing_through_its_grace() {
        let app = app();
        let op =
            CreateEndpoint { scope: None, spec: EndpointSpec { format: Format::Spwp, ..spec(None, vec![]) }, now: T0 };
        let id = now(app.create_endpoint(op)).unwrap().endpoint.id;
        let patch = EndpointPatch { secret: Some("s2".into()), ..Default::default() };
        now(app.update_endpoint(UpdateEndpoint { scope: None, id: id.clone(), patch, now: T0 + 5 })).unwrap();
        let rotated = row(&app, &id);
        assert_eq!(rotated.secret, "sealed:s2");
        assert_eq!(rotated.previous_secret.as_deref(), Some("sealed:s1"));
        assert_eq!(rotated.previous_until, delivery::previous_until(Format::Spwp, T0 + 5));
        assert!(rotated.previous_until.is_some());
        // A change without a secret leaves both as they are.
        let patch = EndpointPatch { retry_count: Some(7), ..Default::default() };
        now(app.update_endpoint(UpdateEndpoint { scope: None, id: id.clone(), patch, now: T0 + 9 })).unwrap();
        let after = row(&app, &id);
        assert_eq!(
            (after.secret.as_str(), after.previous_until, after.retry_count),
            ("sealed:s2", rotated.previous_until, 7)
        );

        let regenerated =
            now(app.regenerate_secret(RegenerateSecret { scope: None, id: id.clone(), now: T0 + 20 })).unwrap();
        assert_eq!(regenerated.previous_secret_valid_until, delivery::previous_until(Format::Spwp, T0 + 20));
        let after = row(&app, &id);
        assert_eq!(after.secret, format!("sealed:{}", regenerated.secret));
        assert_eq!(after.previous_secret.as_deref(), Some("sealed:s2"));
        assert_eq!(app.wakes.get(), 0, "nothing was queued");
    }

    /// `X-LoginWA-Signature` holds one signature: a LoginWA endpoint's new secret takes over at once.
    #[test]
    fn a_loginwa_endpoints_new_secret_takes_over_at_once() {
        let app = app();
        let id = create(&app, None, vec![]).unwrap();
        let patch = EndpointPatch { secret: Some("s2".into()), ..Default::default() };
        now(app.update_endpoint(UpdateEndpoint { scope: None, id: id.clone(), patch, now: T0 + 5 })).unwrap();
        let patched = row(&app, &id);
        assert_eq!(
            (patched.secret.as_str(), patched.previous_secret, patched.previous_until),
            ("sealed:s2", None, None)
        );
        let regenerated =
            now(app.regenerate_secret(RegenerateSecret { scope: None, id: id.clone(), now: T0 + 20 })).unwrap();
        assert_eq!(regenerated.previous_secret_valid_until, None);
        let after = row(&app, &id);
        assert_eq!((after.previous_secret, after.previous_until), (None, None));
    }

    #[test]
    fn re_enabling_starts_the_failure_streak_over_and_wakes_the_outbox() {
        let app = app();
        let id = create(&app, None, vec![]).unwrap();
        app.run(
            "UPDATE webhooks SET active = 0, consecutive_failures = 9, disabled_reason = 'failing' WHERE id = ?",
            vec![id.as_str().into()],
        )
        .unwrap();
        let patch = EndpointPatch { active: Some(false), ..Default::default() };
        now(app.update_endpoint(UpdateEndpoint { scope: None, id: id.clone(), patch, now: T0 })).unwrap();
        assert_eq!((row(&app, &id).consecutive_failures, app.wakes.get()), (9, 0));
        let patch = EndpointPatch { active: Some(true), ..Default::default() };
        let view = now(app.update_endpoint(UpdateEndpoint { scope: None, id: id.clone(), patch, now: T0 })).unwrap();
        assert!(view.active);
        assert_eq!((view.health.consecutive_failures, view.disabled_reason), (0, None));
        assert_eq!(app.wakes.get(), 1);
    }

    #[test]
    fn an_event_is_queued_once_for_each_active_endpoint_that_wants_it() {
        let app = app();
        let (a, b) = (device(1), device(2));
        let every = create(&app, None, vec![]).unwrap();
        let verified_only = create(&app, None, vec![EventName::OtpVerified]).unwrap();
        let expired_only = create(&app, None, vec![EventName::OtpExpired]).unwrap();
        let for_a = create(&app, Some(&a), vec![]).unwrap();
        let inactive = create(&app, None, vec![]).unwrap();
        app.run("UPDATE webhooks SET active = 0 WHERE id = ?", vec![inactive.as_str().into()]).unwrap();

        let verified = event(Some(b.clone()), true, T0);
        assert!(fan_out(&app, &verified, T0 + 1).unwrap());
        let queued = deliveries(&app, &every);
        assert_eq!(queued.len(), 1);
        let first = &queued[0];
        assert_eq!((first.event_id.as_str(), first.event_name.as_str()), (verified.id.as_str(), "otp.verified"));
        assert_eq!((first.status.as_str(), first.next_attempt_at, first.created_at), (PENDING, T0 + 1, T0 + 1));
        assert!(first.body.contains(r#""timestamp":"2027-01-15T08:00:00+00:00""#), "{}", first.body);
        assert_eq!(deliveries(&app, &verified_only).len(), 1);
        for id in [&expired_only, &for_a, &inactive] {
            assert!(deliveries(&app, id).is_empty(), "{id}");
        }
        assert!(fan_out(&app, &event(Some(a), false, T0), T0 + 2).unwrap());
        assert_eq!(deliveries(&app, &for_a).len(), 1);
        assert_eq!(deliveries(&app, &expired_only).len(), 1);
        assert_eq!(deliveries(&app, &every).len(), 2);
        app.run("UPDATE webhooks SET active = 0", vec![]).unwrap();
        assert!(!fan_out(&app, &event(None, true, T0), T0 + 3).unwrap(), "nothing queued");
    }

    #[test]
    fn a_claim_leases_at_most_four_due_deliveries_per_endpoint() {
        let app = app();
        let busy = create(&app, None, vec![]).unwrap();
        for n in 0..6 {
            queue(&app, T0 + n);
        }
        let quiet = create(&app, None, vec![]).unwrap();
        queue(&app, T0 + 10);
        queue(&app, T0 + 100); // not due yet
        let claimed = claim_due(&app, T0 + 50, 15_000).unwrap();
        let ids = |claimed: &[(Rc<EndpointRow>, DeliveryRow)], webhook_id: &str| -> Vec<String> {
            claimed.iter().filter(|(e, _)| e.id == webhook_id).map(|(_, d)| d.id.clone()).collect()
        };
        assert_eq!(ids(&claimed, &busy), deliveries(&app, &busy)[..4].iter().map(|d| d.id.clone()).collect::<Vec<_>>());
        assert_eq!(ids(&claimed, &quiet).len(), 1);
        for (endpoint, delivery) in &claimed {
            assert_eq!(delivery.webhook_id, endpoint.id);
            let stored =
                app.row::<DeliveryRow>("SELECT * FROM deliveries WHERE id = ?", vec![delivery.id.as_str().into()]);
            let stored = stored.unwrap().unwrap();
            assert_eq!((stored.status.as_str(), stored.next_attempt_at), (IN_FLIGHT, T0 + 50 + 15_000));
        }
        // While the leases hold, the busy endpoint gets nothing more; once they expire, its slots are free.
        let again = claim_due(&app, T0 + 60, 15_000).unwrap();
        assert!(ids(&again, &busy).is_empty());
        let expired = claim_due(&app, T0 + 50 + 15_000, 15_000).unwrap();
        assert_eq!(ids(&expired, &busy).len(), 4);
    }

    #[test]
    fn the_next_due_delivery_passes_over_those_waiting_for_a_busy_endpoint() {
        let app = app();
        assert_eq!(next_due(&app, T0).unwrap(), None);
        let id = create(&app, None, vec![]).unwrap();
        for n in 0..5 {
            queue(&app, T0 + n);
        }
        assert_eq!(next_due(&app, T0).unwrap(), Some(T0));
        claim_due(&app, T0 + 10, 1_000).unwrap();
        // Four in flight: the fifth waits for a slot, so only the leases count.
        assert_eq!(next_due(&app, T0 + 10).unwrap(), Some(T0 + 1_010));
        let first = &deliveries(&app, &id)[0];
        settle(&app, first, Attempt { ok: true, status: Some(200), error: None }, T0 + 20, 0.0, RETRY, iso).unwrap();
        assert_eq!(next_due(&app, T0 + 20).unwrap(), Some(T0 + 4), "a slot is free again");
        app.run("UPDATE webhooks SET active = 0", vec![]).unwrap();
        assert_eq!(next_due(&app, T0 + 20).unwrap(), None, "a disabled endpoint's wait");
    }

    #[test]
    fn settling_counts_the_attempt_and_schedules_a_retry_or_gives_up() {
        let app = app();
        let id = create(&app, None, vec![]).unwrap();
        queue(&app, T0);
        let (_, delivery) = claim_due(&app, T0, 1_000).unwrap().remove(0);
        settle(&app, &delivery, failure(), T0 + 100, 0.0, RETRY, iso).unwrap();
        let retried = &deliveries(&app, &id)[0];
        assert_eq!((retried.status.as_str(), retried.attempts), (PENDING, 1));
        assert_eq!(retried.next_attempt_at, T0 + 100 + webhook::retry_delay_ms(1, 0.0));
        assert_eq!((retried.last_status, retried.last_error.as_deref()), (Some(500), Some("boom")));
        let health = row(&app, &id);
        assert_eq!((health.attempts, health.failures, health.consecutive_failures), (1, 1, 1));
        assert_eq!((health.last_failure_at, health.last_success_at), (Some(T0 + 100), None));
        assert_eq!(health.active, 1, "not yet failing for long");

        let ok = Attempt { ok: true, status: Some(204), error: None };
        settle(&app, retried, ok, T0 + 200, 0.0, RETRY, iso).unwrap();
        let delivered = &deliveries(&app, &id)[0];
        assert_eq!(
            (delivered.status.as_str(), delivered.attempts, delivered.last_error.as_deref()),
            ("succeeded", 2, None)
        );
        let health = row(&app, &id);
        assert_eq!((health.attempts, health.successes, health.failures, health.consecutive_failures), (2, 1, 1, 0));
        assert_eq!((health.last_success_at, health.last_status), (Some(T0 + 200), Some(204)));

        // The retry count spent, a failure is kept.
        let exhausted = DeliveryRow { attempts: 2, ..delivered.clone() };
        settle(&app, &exhausted, failure(), T0 + 300, 0.0, RETRY, iso).unwrap();
        assert_eq!(deliveries(&app, &id)[0].status, FAILED);
    }

    #[test]
    fn an_endpoint_failing_continuously_past_the_limit_is_disabled() {
        let app = app();
        let id = create(&app, None, vec![]).unwrap();
        queue(&app, T0);
        let (_, delivery) = claim_due(&app, T0, 1_000).unwrap().remove(0);
        settle(&app, &delivery, failure(), T0 + 999, 0.0, RETRY, iso).unwrap();
        assert_eq!(row(&app, &id).active, 1);
        settle(&app, &delivery, failure(), T0 + 1_000, 0.0, RETRY, iso).unwrap();
        let disabled = row(&app, &id);
        assert_eq!(disabled.active, 0);
        assert_eq!(
            disabled.disabled_reason.as_deref(),
            Some("disabled after failing continuously since t1800000000000")
        );
        // What was queued stays pending for when it is re-enabled, but nothing is claimed meanwhile.
        assert_eq!(deliveries(&app, &id)[0].status, PENDING);
        assert!(claim_due(&app, T0 + 10_000_000, 1_000).unwrap().is_empty());

        // A delivery whose endpoint went meanwhile settles into nothing.
        now(app.delete_endpoint(DeleteEndpoint { scope: None, id })).unwrap();
        settle(&app, &delivery, failure(), T0 + 2_000, 0.0, RETRY, iso).unwrap();
    }

    #[test]
    fn a_replay_starts_one_delivery_or_the_failures_since_a_time_over() {
        let app = app();
        let id = create(&app, None, vec![]).unwrap();
        let other = create(&app, None, vec![]).unwrap();
        for at in [T0, T0 + 10, T0 + 20] {
            queue(&app, at);
        }
        app.run("UPDATE deliveries SET status = ?, attempts = 3", vec![FAILED.into()]).unwrap();
        let mine = deliveries(&app, &id);
        let theirs = deliveries(&app, &other);

        let foreign =
            Replay { scope: None, id: id.clone(), delivery_id: Some(theirs[0].id.clone()), since: None, now: T0 };
        assert_eq!(now(app.replay(foreign)).unwrap_err(), ApiError::not_found("delivery"));
        assert_eq!(app.wakes.get(), 0);

        let one =
            Replay { scope: None, id: id.clone(), delivery_id: Some(mine[0].id.clone()), since: None, now: T0 + 50 };
        assert_eq!(now(app.replay(one)).unwrap(), Replayed { replayed: 1 });
        let replayed = &deliveries(&app, &id)[0];
        assert_eq!((replayed.status.as_str(), replayed.attempts, replayed.next_attempt_at), (PENDING, 0, T0 + 50));
        assert_eq!((replayed.body.as_str(), replayed.id.as_str()), (mine[0].body.as_str(), mine[0].id.as_str()));

        let since = Replay { scope: None, id: id.clone(), delivery_id: None, since: Some(T0 + 10), now: T0 + 60 };
        assert_eq!(now(app.replay(since)).unwrap(), Replayed { replayed: 2 });
        let statuses: Vec<_> = deliveries(&app, &id).into_iter().map(|d| (d.status, d.next_attempt_at)).collect();
        assert_eq!(statuses, [(PENDING.into(), T0 + 50), (PENDING.into(), T0 + 60), (PENDING.into(), T0 + 60)]);
        assert!(deliveries(&app, &other).iter().all(|d| d.status == FAILED), "only this endpoint's");
        let none = Replay { scope: None, id, delivery_id: None, since: None, now: T0 + 70 };
        assert_eq!(now(app.replay(none)).unwrap(), Replayed { replayed: 0 });
        assert_eq!(app.wakes.get(), 3);
    }

    #[test]
    fn pending_deliveries_as_listed_include_those_under_way() {
        let app = app();
        let id = create(&app, None, vec![]).unwrap();
        for at in [T0, T0 + 1, T0 + 2] {
            queue(&app, at);
        }
        let rows = deliveries(&app, &id);
        app.run("UPDATE deliveries SET status = ? WHERE id = ?", vec![IN_FLIGHT.into(), rows[1].id.as_str().into()])
            .unwrap();
        app.run("UPDATE deliveries SET status = ? WHERE id = ?", vec![FAILED.into(), rows[2].id.as_str().into()])
            .unwrap();
        let ids = |views: Vec<DeliveryView>| views.into_iter().map(|v| v.id).collect::<Vec<_>>();
        let pending = ids(listed(&app, &id, Some(DeliveryStatus::Pending)));
        assert_eq!(pending, [rows[1].id.clone(), rows[0].id.clone()], "newest first");
        assert_eq!(ids(listed(&app, &id, Some(DeliveryStatus::Failed))), [rows[2].id.clone()]);
        let all = listed(&app, &id, None);
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].status, DeliveryStatus::InFlight);
    }

    #[test]
    fn a_test_delivery_is_queued_and_wakes_the_outbox() {
        let app = app();
        let id = create(&app, None, vec![]).unwrap();
        let queued = now(app.test_endpoint(TestEndpoint { scope: None, id: id.clone(), now: T0 + 3 })).unwrap();
        let stored = &deliveries(&app, &id)[0];
        assert_eq!((stored.id.as_str(), stored.event_name.as_str()), (queued.delivery_id.as_str(), "webhook.test"));
        assert_eq!(stored.body, webhook::test_body(Format::Loginwa, &id, None, T0 + 3).1);
        assert_eq!(app.wakes.get(), 1);

        let account = device(1);
        let op = CreateEndpoint {
            scope: None,
            spec: EndpointSpec { format: Format::Spwp, ..spec(Some(&account), vec![]) },
            now: T0,
        };
        let spwp = now(app.create_endpoint(op)).unwrap().endpoint.id;
        now(app.test_endpoint(TestEndpoint { scope: None, id: spwp.clone(), now: T0 + 4 })).unwrap();
        let stored = &deliveries(&app, &spwp)[0];
        assert_eq!(stored.event_name, webhook::SPWP_TEST, "the SPWP headers name it in SPWP's words");
        assert_eq!(stored.body, webhook::test_body(Format::Spwp, &spwp, Some(account.as_str()), T0 + 4).1);
    }

    #[test]
    fn deleting_an_endpoint_drops_its_deliveries() {
        let app = app();
        let id = create(&app, None, vec![]).unwrap();
        let other = create(&app, None, vec![]).unwrap();
        queue(&app, T0);
        now(app.delete_endpoint(DeleteEndpoint { scope: None, id: id.clone() })).unwrap();
        assert!(find_endpoint(&app, &id).unwrap().is_none());
        assert!(deliveries(&app, &id).is_empty());
        assert_eq!(deliveries(&app, &other).len(), 1);
    }

    fn stored_delivery(sql: &Memory, id: &str, status: DeliveryStatus, created_at: u64) {
        sql.run(
            "INSERT INTO deliveries (id, webhook_id, event_id, event_name, body, status, next_attempt_at, created_at)
             VALUES (?, 'wh_1', 'evt_1', 'message.sent', '{}', ?, ?, ?)",
            vec![id.into(), status.as_str().into(), created_at.into(), created_at.into()],
        )
        .unwrap();
    }

    #[test]
    fn trimming_drops_old_settled_deliveries_and_keeps_those_still_retrying() {
        let sql = Memory::with(&SCHEMA);
        stored_delivery(&sql, "old_ok", DeliveryStatus::Succeeded, 10);
        stored_delivery(&sql, "old_failed", DeliveryStatus::Failed, 10);
        stored_delivery(&sql, "old_pending", DeliveryStatus::Pending, 10);
        stored_delivery(&sql, "old_in_flight", DeliveryStatus::InFlight, 10);
        stored_delivery(&sql, "new_ok", DeliveryStatus::Succeeded, 100);
        stored_delivery(&sql, "at_cutoff", DeliveryStatus::Failed, 50);
        trim_settled(&sql, 50).unwrap();
        trim_settled(&sql, 50).unwrap();
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        let left: Vec<String> = sql
            .rows::<Id>("SELECT id FROM deliveries ORDER BY id", vec![])
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left, ["at_cutoff", "new_ok", "old_in_flight", "old_pending"]);
    }
}
