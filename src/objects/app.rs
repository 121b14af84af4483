//! One Durable Object per app: settings, API key hashes, quota and the app's
//! device registry (with each device's last reported status, for auto-selection).

use std::cell::Cell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::retention;
use super::{end_alarm, serve};
use crate::domain::error::ApiError;
use crate::domain::events::Event;
use crate::domain::idempotency::Decision;
use crate::domain::ids::DeviceId;
use crate::protocol::app::*;
use crate::protocol::{self, app};
use crate::runtime::{iso, month_of, now_ms};
use crate::store::webhooks::Outbox;
use crate::store::{access, audience, autoreplies, devices, events, idempotency, keys, quota, tenant, webhooks};
use crate::store::{Bind, Sql, SqlError};

#[durable_object]
pub struct AppObject {
    /// Shared with the detached webhook deliveries, which settle after the alarm has returned.
    state: Rc<State>,
    env: Env,
    /// Whether the app was created: until then the object has no tables and answers nothing.
    exists: Cell<bool>,
}

impl DurableObject for AppObject {
    fn new(state: State, env: Env) -> Self {
        // A key naming an app that was never created reaches an object with no tables; it stays
        // without storage (tables are made when the app is created, and brought up to date on
        // each construction of an app that exists).
        let exists = state
            .storage()
            .sql()
            .any("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'app'", vec![])
            .unwrap_or(false);
        if exists {
            migrate(&state);
        }
        Self { state: Rc::new(state), env, exists: Cell::new(exists) }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        serve::<App, _>(req, |op| async move {
            // Until the app is created the object has no tables: it answers nothing but the creation.
            match &op {
                AppOp::Create(_) => {
                    migrate(&self.state);
                    self.exists.set(true);
                }
                AppOp::Authenticate(_) if !self.exists.get() => {
                    return protocol::encode::<()>(&Err(ApiError::Unauthorized))
                }
                _ if !self.exists.get() => return protocol::encode::<()>(&Err(ApiError::not_found("app"))),
                _ => {}
            }
            op.dispatch(self).await
        })
        .await
    }

    async fn alarm(&self) -> worker::Result<Response> {
        // The month's quota starts over at the first alarm of a new month (one is always set for it).
        let now = now_ms();
        if let Err(e) = quota::in_period(self, &month_of(now), now) {
            worker::console_error!("quota period: {e}");
        }
        if let Err(e) = self.trim_history(now).await {
            worker::console_error!("trimming history: {e}");
        }
        end_alarm(&self.state, "webhook deliveries", self.deliver_due().await, Some(5_000)).await
    }
}

/// Creates the app's tables, or brings those of an earlier release up to date.
fn migrate(state: &State) {
    super::migrate(state, "app", &tenant::MIGRATIONS);
}

impl AppObject {
    /// Recorded events, their auto-reply marks and settled webhook deliveries past the retention;
    /// deliveries still being retried stay whatever their age.
    async fn trim_history(&self, now: u64) -> Result<(), ApiError> {
        let Some(cutoff) = retention::due(&self.state.storage(), &self.env, now).await? else { return Ok(()) };
        events::trim(self, cutoff)?;
        autoreplies::trim(self, now)?;
        webhooks::trim_settled(self, cutoff)
    }

    pub(super) fn env(&self) -> &Env {
        &self.env
    }

    pub(super) fn state(&self) -> &Rc<State> {
        &self.state
    }

    pub(super) fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    /// Events are recorded in the app's object so that webhook fan-out (per app) can join
    /// the same transaction as the recording.
    /// Returns whether webhook deliveries were queued for the event.
    fn record(&self, event: &Event) -> Result<bool, ApiError> {
        Ok(events::record(self, event)? && webhooks::fan_out(self, event, now_ms())?)
    }

    /// For the facets that send from the app's quota (auto-replies, opt-out confirmations).
    pub(super) fn reserve(&self, device_id: Option<DeviceId>, period: &str, now: u64) -> Result<Reservation, ApiError> {
        quota::reserve(self, device_id, period, now)
    }
}

/// The app's object is its storage: the facets of `store` run on it.
impl Sql for AppObject {
    fn run(&self, query: &str, binds: Vec<Bind>) -> Result<(), SqlError> {
        self.sql().run(query, binds)
    }

    fn rows<T: DeserializeOwned>(&self, query: &str, binds: Vec<Bind>) -> Result<Vec<T>, SqlError> {
        self.sql().rows(query, binds)
    }
}

impl AppHandler for AppObject {
    async fn create(&self, op: app::Create) -> Result<(), ApiError> {
        tenant::create(self, op)?;
        self.wake().await // arms the alarm that starts each month's quota
    }

    async fn get(&self, op: Get) -> Result<AppView, ApiError> {
        tenant::view(self, &op.period, now_ms(), audience::governor(self)?)
    }

    async fn update(&self, op: Update) -> Result<AppView, ApiError> {
        let Update { patch, period } = op;
        let now = now_ms();
        quota::in_period(self, &period, now)?;
        let governor = tenant::patched_governor(audience::governor(self)?, &patch)?;
        tenant::update(self, patch, now)?;
        audience::set_governor(self, &governor)?;
        tenant::view(self, &period, now, governor)
    }

    async fn add_key(&self, op: AddKey) -> Result<(), ApiError> {
        let expiry = op.expires_at.map(iso);
        keys::add(self, op, expiry)
    }

    async fn list_keys(&self, _: ListKeys) -> Result<Vec<KeyView>, ApiError> {
        tenant::app(self)?;
        keys::list(self)
    }

    async fn list_audit(&self, _: Audit) -> Result<Vec<AuditEntry>, ApiError> {
        tenant::app(self)?;
        access::audit_trail(self)
    }

    async fn revoke_key(&self, op: RevokeKey) -> Result<(), ApiError> {
        keys::revoke(self, op.key_id, op.now)
    }

    async fn authenticate(&self, op: Authenticate) -> Result<Tenant, ApiError> {
        keys::check_key(self, op)
    }

    async fn add_device(&self, op: AddDevice) -> Result<(), ApiError> {
        let AddDevice { device_id, label, now } = op;
        devices::add(self, &device_id, label, tenant::app(self)?.max_devices, now)
    }

    async fn device_changed(&self, op: DeviceChanged) -> Result<(), ApiError> {
        let DeviceChanged { device_id, status, phone, event } = op;
        audience::note_linked(self, &device_id, status, event.at_ms)?;
        devices::changed(self, &device_id, status, phone, event.at_ms)?;
        if self.record(&event)? {
            self.wake().await?;
        }
        Ok(())
    }

    async fn remove_device(&self, op: RemoveDevice) -> Result<(), ApiError> {
        let RemoveDevice { device_id, event } = op;
        devices::remove(self, &device_id)?;
        if self.record(&event)? {
            self.wake().await?;
        }
        Ok(())
    }

    async fn record_event(&self, op: Record) -> Result<Recorded, ApiError> {
        let Record { mut event } = op;
        if events::recorded(self, &event.id)? {
            return Ok(Recorded { auto_reply: autoreplies::earlier_reply(self, &event.id)? });
        }
        audience::note_opt_out(self, &event)?;
        let period = month_of(event.at_ms);
        let auto_reply = autoreplies::auto_reply(self, &mut event, &period)?;
        if self.record(&event)? {
            self.wake().await?;
        }
        Ok(Recorded { auto_reply })
    }

    async fn events(&self, op: Events) -> Result<Vec<RecordedEvent>, ApiError> {
        tenant::app(self)?;
        events::list(self, op)
    }

    async fn list_devices(&self, _: ListDevices) -> Result<Vec<DeviceEntry>, ApiError> {
        devices::list(self)
    }

    async fn pick_device(&self, op: PickDevice) -> Result<DeviceId, ApiError> {
        devices::pick(self, op.device_id)
    }

    async fn reserve_send(&self, op: ReserveSend) -> Result<Reservation, ApiError> {
        quota::reservation_for(self, op)
    }

    async fn idempotency_begin(&self, op: IdempotencyBegin) -> Result<Decision, ApiError> {
        idempotency::begin(self, op)
    }

    async fn idempotency_finish(&self, op: IdempotencyFinish) -> Result<(), ApiError> {
        idempotency::finish(self, op)
    }

    async fn refund(&self, op: Refund) -> Result<(), ApiError> {
        quota::refund(self, &op.message_id)
    }
}
