//! One Durable Object per app: settings, API key hashes, quota and the app's
//! device registry (with each device's last reported status, for auto-selection).

use std::cell::Cell;
use std::rc::Rc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, SqlStorageValue, State};

use super::{audience, autoreplies, retention, webhooks};
use super::{end_alarm, int, number, rows, serve};
use crate::domain::autoreply::HOUR_MS;
use crate::domain::device::DeviceStatus;
use crate::domain::error::{ApiError, Rule};
use crate::domain::events::Event;
use crate::domain::idempotency::{self, Decision, SavedResponse, Stored};
use crate::domain::ids::{AppId, DeviceId, KeyId, MessageId};
use crate::domain::keys;
use crate::domain::ratelimit::{self, Gcra};
use crate::domain::schema::Migration;
use crate::protocol::app::*;
use crate::protocol::{self, app};
use crate::runtime::{iso, month_of, now_ms};
use crate::store::access::{self, Actor, Change};
use crate::store::{Bind, Sql, SqlError};

#[derive(Deserialize)]
struct Tat {
    tat: u64,
}

#[derive(Deserialize)]
struct IdempotencyRow {
    fingerprint: String,
    status: Option<u16>,
    body: Option<String>,
    created_at: u64,
    leased_at: Option<u64>,
}

impl From<IdempotencyRow> for Stored {
    fn from(row: IdempotencyRow) -> Self {
        let response = row.status.zip(row.body).map(|(status, body)| SavedResponse { status, body });
        Stored { fingerprint: row.fingerprint, response, created_at: row.created_at, leased_at: row.leased_at }
    }
}

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
        let exists = number(
            &state.storage().sql(),
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'app'",
            vec![],
        )
        .ok()
        .flatten()
        .unwrap_or(0)
            > 0;
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
        if let Err(e) = self.app().and_then(|app| self.roll_over(app, &month_of(now), now)) {
            worker::console_error!("quota period: {e}");
        }
        if let Err(e) = self.trim_history(now).await {
            worker::console_error!("trimming history: {e}");
        }
        end_alarm(&self.state, "webhook deliveries", self.deliver_due().await, Some(5_000)).await
    }
}

/// The app's storage, oldest first; append, never edit (see `domain::schema`). Each facet
/// brings its own tables.
const MIGRATIONS: [Migration; 6] = [
    Migration::Sql(&[
        "CREATE TABLE IF NOT EXISTS app (
        one INTEGER PRIMARY KEY CHECK (one = 1), app_id TEXT NOT NULL, name TEXT NOT NULL,
        monthly_messages INTEGER NOT NULL, api_rpm INTEGER NOT NULL, auth_rpm INTEGER NOT NULL,
        max_devices INTEGER NOT NULL, default_country_code TEXT NOT NULL, suspended INTEGER NOT NULL DEFAULT 0,
        quota_period TEXT NOT NULL DEFAULT '', quota_used INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS keys (
        key_id TEXT PRIMARY KEY, hash TEXT NOT NULL, device_id TEXT,
        created_at INTEGER NOT NULL, revoked_at INTEGER, last_used_at INTEGER)",
        "CREATE TABLE IF NOT EXISTS devices (
        device_id TEXT PRIMARY KEY, label TEXT, status TEXT NOT NULL, phone TEXT,
        created_at INTEGER NOT NULL, last_seen_at INTEGER, last_used_at INTEGER NOT NULL DEFAULT 0)",
        "CREATE TABLE IF NOT EXISTS reservations (message_id TEXT PRIMARY KEY)",
        "CREATE TABLE IF NOT EXISTS rate_limits (
            key_id TEXT NOT NULL, class TEXT NOT NULL, tat INTEGER NOT NULL, PRIMARY KEY (key_id, class))",
        "CREATE TABLE IF NOT EXISTS idempotency (
        key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER, body TEXT, created_at INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
        device_id TEXT, data TEXT NOT NULL, at INTEGER NOT NULL)",
    ]),
    Migration::Sql(&webhooks::SCHEMA),
    Migration::Sql(&autoreplies::SCHEMA),
    Migration::Sql(&audience::SCHEMA),
    Migration::Sql(&access::SCHEMA),
    // Added on every construction by releases from before versioning.
    Migration::AddColumns(&[
        ("keys", "expires_at", "INTEGER"),
        ("campaigns", "device_id", "TEXT"),
        // The lease of the request handling a key, and the message id the key is bound to.
        ("idempotency", "leased_at", "INTEGER"),
        ("idempotency", "message_id", "TEXT"),
    ]),
];

/// Creates the app's tables, or brings those of an earlier release up to date.
fn migrate(state: &State) {
    super::migrate(state, "app", &MIGRATIONS);
}

#[derive(Deserialize)]
struct AppRow {
    app_id: String,
    name: String,
    monthly_messages: i64,
    api_rpm: i64,
    auth_rpm: i64,
    max_devices: i64,
    default_country_code: String,
    suspended: i64,
    quota_period: String,
    quota_used: i64,
    created_at: u64,
}

#[derive(Deserialize)]
struct KeyRow {
    hash: String,
    device_id: Option<String>,
    revoked_at: Option<u64>,
    expires_at: Option<u64>,
}

impl AppObject {
    /// Recorded events, their auto-reply marks and settled webhook deliveries past the retention;
    /// deliveries still being retried stay whatever their age.
    async fn trim_history(&self, now: u64) -> Result<(), ApiError> {
        let Some(cutoff) = retention::due(&self.state.storage(), &self.env, now).await? else { return Ok(()) };
        let sql = self.sql();
        sql.exec("DELETE FROM events WHERE at < ?", vec![int(cutoff)])?;
        sql.exec("DELETE FROM auto_replied WHERE event_id NOT IN (SELECT id FROM events)", None)?;
        // The reply log keeps an hour (trimmed as replies are rationed); streaks without a reply go.
        sql.exec("DELETE FROM auto_reply_log WHERE at <= ?", vec![int(now.saturating_sub(HOUR_MS))])?;
        sql.exec("DELETE FROM auto_reply_senders WHERE sender NOT IN (SELECT sender FROM auto_reply_log)", None)?;
        sql.exec(
            "DELETE FROM deliveries WHERE status IN (?, ?) AND created_at < ?",
            vec![webhooks::SUCCEEDED.into(), webhooks::FAILED.into(), int(cutoff)],
        )?;
        Ok(())
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
        if self.recorded(&event.id)? {
            return Ok(false); // a retried recording
        }
        let (name, data) = event.what.stored();
        self.sql().exec(
            "INSERT OR IGNORE INTO events (id, name, device_id, data, at) VALUES (?, ?, ?, ?, ?)",
            vec![
                event.id.as_str().into(),
                name.into(),
                event.device_id.as_ref().map(DeviceId::to_string).into(),
                data.into(),
                int(event.at_ms),
            ],
        )?;
        self.fan_out(event)
    }

    fn recorded(&self, event_id: &str) -> Result<bool, ApiError> {
        Ok(number(&self.sql(), "SELECT COUNT(*) AS n FROM events WHERE id = ?", vec![event_id.into()])?.unwrap_or(0)
            > 0)
    }

    fn app(&self) -> Result<AppRow, ApiError> {
        rows::<AppRow>(self.sql().exec("SELECT * FROM app", None)?)?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found("app"))
    }

    /// The app row with its quota counter moved to `period` (a new month starts at zero).
    fn app_in_period(&self, period: &str) -> Result<AppRow, ApiError> {
        self.roll_over(self.app()?, period, now_ms())
    }

    fn roll_over(&self, mut app: AppRow, period: &str, now: u64) -> Result<AppRow, ApiError> {
        if app.quota_period != period {
            self.sql().exec("UPDATE app SET quota_period = ?, quota_used = 0", vec![period.into()])?;
            self.sql().exec("DELETE FROM reservations", None)?;
            if !app.quota_period.is_empty() {
                let change = Change::QuotaReset { from: app.quota_period, to: period.to_owned(), used: app.quota_used };
                access::audit(self, &Actor::System, &change, now)?;
            }
            app.quota_period = period.to_owned();
            app.quota_used = 0;
        }
        Ok(app)
    }

    fn keys(&self) -> Result<Vec<KeyView>, ApiError> {
        rows::<KeyView>(self.sql().exec(
            "SELECT key_id, device_id, created_at, revoked_at, last_used_at, expires_at FROM keys ORDER BY created_at, key_id",
            None,
        )?)
    }

    fn insert_key(
        &self,
        key_id: &KeyId,
        hash: &str,
        device_id: Option<&DeviceId>,
        expires_at: Option<u64>,
        now: u64,
    ) -> Result<(), ApiError> {
        self.sql().exec(
            "INSERT INTO keys (key_id, hash, device_id, expires_at, created_at) VALUES (?, ?, ?, ?, ?)",
            vec![
                key_id.as_str().into(),
                hash.into(),
                device_id.map(|d| d.as_str()).into(),
                expires_at.map(int).into(),
                int(now),
            ],
        )?;
        Ok(())
    }

    fn view(&self, period: &str) -> Result<AppView, ApiError> {
        let app = self.app_in_period(period)?;
        let keys = self.keys()?;
        Ok(AppView {
            quota_remaining: (app.monthly_messages - app.quota_used).max(0),
            app_id: app.app_id,
            name: app.name,
            plan: Plan {
                monthly_messages: app.monthly_messages,
                api_rpm: app.api_rpm,
                auth_rpm: app.auth_rpm,
                max_devices: app.max_devices,
            },
            suspended: app.suspended != 0,
            default_country_code: app.default_country_code,
            quota_period: app.quota_period,
            quota_used: app.quota_used,
            keys,
            governor: self.governor()?,
            created_at: app.created_at,
        })
    }

    fn check_key(
        &self,
        key_id: KeyId,
        presented_hash: &str,
        class: LimitClass,
        ip: Option<&str>,
        ip_exempt: bool,
        now: u64,
    ) -> Result<Tenant, ApiError> {
        let app = self.app().map_err(|_| ApiError::Unauthorized)?;
        let key = rows::<KeyRow>(self.sql().exec(
            "SELECT hash, device_id, revoked_at, expires_at FROM keys WHERE key_id = ?",
            vec![key_id.as_str().into()],
        )?)?
        .into_iter()
        .next()
        .ok_or(ApiError::Unauthorized)?;
        let expired = key.expires_at.is_some_and(|at| at <= now);
        if !keys::hashes_match(&key.hash, presented_hash) || key.revoked_at.is_some() || expired {
            return Err(ApiError::Unauthorized);
        }
        if app.suspended != 0 {
            return Err(ApiError::Suspended);
        }
        if !ip_exempt {
            access::ip_allowed(self, ip)?;
        }
        let (rpm, class_name) = match class {
            LimitClass::Api => (app.api_rpm, "api"),
            LimitClass::Auth => (app.auth_rpm, "auth"),
        };
        let gcra = Gcra { limit: rpm.max(1) as u64, window_ms: 60_000 };
        let stored = rows::<Tat>(self.sql().exec(
            "SELECT tat FROM rate_limits WHERE key_id = ? AND class = ?",
            vec![key_id.as_str().into(), class_name.into()],
        )?)?;
        let verdict = gcra.check(stored.first().map(|t| t.tat), now);
        let rate =
            RateHeaders(ratelimit::headers(&gcra, &verdict).map(|(name, value)| (name.to_owned(), value)).into());
        if !verdict.allowed {
            return Err(ApiError::RateLimited {
                retry_after_secs: verdict.retry_after_secs,
                message: format!("Too many requests: this key may make {rpm} per minute here"),
                headers: rate.0,
            });
        }
        self.sql().exec(
            "INSERT INTO rate_limits (key_id, class, tat) VALUES (?, ?, ?)
             ON CONFLICT (key_id, class) DO UPDATE SET tat = excluded.tat",
            vec![key_id.as_str().into(), class_name.into(), int(verdict.tat)],
        )?;
        self.sql().exec("UPDATE keys SET last_used_at = ? WHERE key_id = ?", vec![int(now), key_id.as_str().into()])?;
        Ok(Tenant {
            rate,
            app_id: AppId::parse(&app.app_id).ok_or_else(|| ApiError::internal("stored app id is malformed"))?,
            key_id,
            device_scope: key.device_id.as_deref().and_then(DeviceId::parse),
            default_country_code: app.default_country_code,
        })
    }

    fn device_entry(&self, device_id: &DeviceId) -> Result<DeviceEntry, ApiError> {
        rows::<DeviceEntry>(self.sql().exec(
            "SELECT device_id, label, status, phone, created_at, last_seen_at FROM devices WHERE device_id = ?",
            vec![device_id.as_str().into()],
        )?)?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("device"))
    }

    fn pick(&self, device_id: Option<DeviceId>) -> Result<DeviceId, ApiError> {
        match device_id {
            Some(device_id) => {
                if self.device_entry(&device_id)?.status != DeviceStatus::Online.as_str() {
                    return Err(ApiError::DeviceNotConnected);
                }
                Ok(device_id)
            }
            // Least recently used first, so an app's traffic spreads over its numbers.
            None => rows::<DeviceEntry>(self.sql().exec(
                "SELECT device_id, label, status, phone, created_at, last_seen_at FROM devices
                 WHERE status = ? ORDER BY last_used_at, device_id LIMIT 1",
                vec![DeviceStatus::Online.as_str().into()],
            )?)?
            .into_iter()
            .next()
            .and_then(|d| DeviceId::parse(&d.device_id))
            .ok_or(ApiError::NoDeviceAvailable),
        }
    }

    /// A send's reservation: the one its `Idempotency-Key` is bound to, else a new one, bound to it.
    fn reservation_for(
        &self,
        device_id: Option<DeviceId>,
        period: &str,
        now: u64,
        idempotency_key: Option<String>,
    ) -> Result<Reservation, ApiError> {
        #[derive(Deserialize)]
        struct Bound {
            message_id: Option<String>,
        }
        let Some(key) = idempotency_key else { return self.reserve(device_id, period, now) };
        let bound = rows::<Bound>(
            self.sql().exec("SELECT message_id FROM idempotency WHERE key = ?", vec![key.as_str().into()])?,
        )?;
        if let Some(message_id) = bound.into_iter().find_map(|b| b.message_id).as_deref().and_then(MessageId::parse) {
            let app = self.app_in_period(period)?;
            let quota_remaining = (app.monthly_messages - app.quota_used).max(0);
            return Ok(Reservation { device_id: message_id.device(), message_id, quota_remaining });
        }
        let reservation = self.reserve(device_id, period, now)?;
        self.sql().exec(
            "UPDATE idempotency SET message_id = ? WHERE key = ?",
            vec![reservation.message_id.as_str().into(), key.into()],
        )?;
        Ok(reservation)
    }

    pub(super) fn reserve(&self, device_id: Option<DeviceId>, period: &str, now: u64) -> Result<Reservation, ApiError> {
        let app = self.app_in_period(period)?;
        let device_id = self.pick(device_id)?;
        if app.quota_used >= app.monthly_messages {
            return Err(ApiError::QuotaExceeded);
        }
        let message_id = MessageId::generate(&device_id);
        self.sql().exec("UPDATE app SET quota_used = quota_used + 1", None)?;
        self.sql().exec("INSERT INTO reservations (message_id) VALUES (?)", vec![message_id.as_str().into()])?;
        self.sql().exec(
            "UPDATE devices SET last_used_at = ? WHERE device_id = ?",
            vec![int(now), device_id.as_str().into()],
        )?;
        Ok(Reservation { device_id, message_id, quota_remaining: app.monthly_messages - app.quota_used - 1 })
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
        let app::Create { app_id, name, plan, key_id, key_hash, now } = op;
        self.sql().exec(
            "INSERT INTO app (one, app_id, name, monthly_messages, api_rpm, auth_rpm, max_devices, default_country_code, created_at)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            vec![
                app_id.as_str().into(),
                name.into(),
                plan.monthly_messages.into(),
                plan.api_rpm.into(),
                plan.auth_rpm.into(),
                plan.max_devices.into(),
                DEFAULT_COUNTRY_CODE.into(),
                int(now),
            ],
        )?;
        self.insert_key(&key_id, &key_hash, None, None, now)?;
        access::audit(self, &Actor::Operator, &Change::AppCreated { key_id }, now)?;
        self.wake_deliveries().await // arms the alarm that starts each month's quota
    }

    async fn get(&self, op: Get) -> Result<AppView, ApiError> {
        self.view(&op.period)
    }

    async fn update(&self, op: Update) -> Result<AppView, ApiError> {
        let Update { patch, period } = op;
        self.app_in_period(&period)?;
        let change = Change::AppUpdated(patch.clone());
        // Checked before anything is written: an error must leave the app as it was.
        let mut governor = self.governor()?;
        let warm_up = &mut governor.warm_up;
        warm_up.first_day_cap = patch.warm_up_first_day_cap.unwrap_or(warm_up.first_day_cap);
        warm_up.growth_percent = patch.warm_up_growth_percent.unwrap_or(warm_up.growth_percent);
        warm_up.uncapped_after = patch.warm_up_uncapped_after.unwrap_or(warm_up.uncapped_after);
        // A first day above the threshold would mean no warm-up at all, silently.
        if warm_up.first_day_cap > warm_up.uncapped_after {
            let reason = format!("must be at least the first day's cap ({})", warm_up.first_day_cap);
            return Err(ApiError::field("warm_up_uncapped_after", Rule::Invalid { reason }));
        }
        governor.opt_out_keywords = patch.opt_out_keywords.unwrap_or(governor.opt_out_keywords);
        let limits = &mut governor.auto_reply;
        limits.cooldown_secs = patch.auto_reply_cooldown_s.unwrap_or(limits.cooldown_secs);
        limits.hourly_cap = patch.auto_reply_hourly_cap.unwrap_or(limits.hourly_cap);
        let sets: [(&str, Option<SqlStorageValue>); 7] = [
            ("suspended", patch.suspended.map(|b| SqlStorageValue::Integer(b as i64))),
            ("monthly_messages", patch.monthly_messages.map(Into::into)),
            ("api_rpm", patch.api_rpm.map(Into::into)),
            ("auth_rpm", patch.auth_rpm.map(Into::into)),
            ("max_devices", patch.max_devices.map(Into::into)),
            ("default_country_code", patch.default_country_code.map(Into::into)),
            ("quota_used", patch.quota_used.map(Into::into)),
        ];
        for (column, value) in sets {
            if let Some(value) = value {
                self.sql().exec(&format!("UPDATE app SET {column} = ?"), vec![value])?;
            }
        }
        self.set_governor(&governor)?;
        access::audit(self, &Actor::Operator, &change, now_ms())?;
        self.view(&period)
    }

    async fn add_key(&self, op: AddKey) -> Result<(), ApiError> {
        let AddKey { key_id, key_hash, device_id, expires_at, now } = op;
        self.app()?;
        if let Some(device) = &device_id {
            self.device_entry(device)?;
        }
        self.insert_key(&key_id, &key_hash, device_id.as_ref(), expires_at, now)?;
        let change = Change::KeyCreated { key_id, device_id, expires_at: expires_at.map(iso) };
        access::audit(self, &Actor::Operator, &change, now)
    }

    async fn list_keys(&self, _: ListKeys) -> Result<Vec<KeyView>, ApiError> {
        self.app()?;
        self.keys()
    }

    async fn list_audit(&self, _: Audit) -> Result<Vec<AuditEntry>, ApiError> {
        self.app()?;
        access::audit_trail(self)
    }

    async fn revoke_key(&self, op: RevokeKey) -> Result<(), ApiError> {
        let RevokeKey { key_id, now } = op;
        let exists =
            number(&self.sql(), "SELECT COUNT(*) AS n FROM keys WHERE key_id = ?", vec![key_id.as_str().into()])?;
        if exists.unwrap_or(0) == 0 {
            return Err(ApiError::not_found("key"));
        }
        self.sql().exec(
            "UPDATE keys SET revoked_at = COALESCE(revoked_at, ?) WHERE key_id = ?",
            vec![int(now), key_id.as_str().into()],
        )?;
        access::audit(self, &Actor::Operator, &Change::KeyRevoked { key_id }, now)
    }

    async fn authenticate(&self, op: Authenticate) -> Result<Tenant, ApiError> {
        let Authenticate { key_id, key_hash, class, ip, ip_exempt, now } = op;
        self.check_key(key_id, &key_hash, class, ip.as_deref(), ip_exempt, now)
    }

    async fn add_device(&self, op: AddDevice) -> Result<(), ApiError> {
        let AddDevice { device_id, label, now } = op;
        let app = self.app()?;
        let count = number(&self.sql(), "SELECT COUNT(*) AS n FROM devices", vec![])?;
        if count.unwrap_or(0) >= app.max_devices {
            return Err(ApiError::DeviceLimitReached { max_devices: app.max_devices });
        }
        self.sql().exec(
            "INSERT INTO devices (device_id, label, status, created_at) VALUES (?, ?, 'registering', ?)",
            vec![device_id.as_str().into(), label.into(), int(now)],
        )?;
        Ok(())
    }

    async fn device_changed(&self, op: DeviceChanged) -> Result<(), ApiError> {
        let DeviceChanged { device_id, status, phone, event } = op;
        self.note_linked(&device_id, status, event.at_ms)?;
        self.sql().exec(
            "UPDATE devices SET status = ?, phone = COALESCE(?, phone), last_seen_at = ? WHERE device_id = ?",
            vec![status.as_str().into(), phone.into(), int(event.at_ms), device_id.as_str().into()],
        )?;
        if self.record(&event)? {
            self.wake_deliveries().await?;
        }
        Ok(())
    }

    async fn remove_device(&self, op: RemoveDevice) -> Result<(), ApiError> {
        let RemoveDevice { device_id, event } = op;
        self.sql().exec("DELETE FROM devices WHERE device_id = ?", vec![device_id.as_str().into()])?;
        if self.record(&event)? {
            self.wake_deliveries().await?;
        }
        Ok(())
    }

    async fn record_event(&self, op: Record) -> Result<Recorded, ApiError> {
        let Record { mut event } = op;
        if self.recorded(&event.id)? {
            return Ok(Recorded { auto_reply: self.earlier_reply(&event.id)? });
        }
        self.note_opt_out(&event)?;
        let auto_reply = self.auto_reply(&mut event)?;
        if self.record(&event)? {
            self.wake_deliveries().await?;
        }
        Ok(Recorded { auto_reply })
    }

    async fn events(&self, op: Events) -> Result<Vec<RecordedEvent>, ApiError> {
        self.app()?;
        rows::<RecordedEvent>(self.sql().exec(
            "SELECT seq, id, name, device_id, data, at FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            vec![op.after.into(), op.limit.into()],
        )?)
    }

    async fn list_devices(&self, _: ListDevices) -> Result<Vec<DeviceEntry>, ApiError> {
        rows::<DeviceEntry>(self.sql().exec(
            "SELECT device_id, label, status, phone, created_at, last_seen_at FROM devices ORDER BY created_at, device_id",
            None,
        )?)
    }

    async fn pick_device(&self, op: PickDevice) -> Result<DeviceId, ApiError> {
        self.pick(op.device_id)
    }

    async fn reserve_send(&self, op: ReserveSend) -> Result<Reservation, ApiError> {
        let ReserveSend { device_id, period, now, idempotency_key } = op;
        self.reservation_for(device_id, &period, now, idempotency_key)
    }

    async fn idempotency_begin(&self, op: IdempotencyBegin) -> Result<Decision, ApiError> {
        let IdempotencyBegin { key, fingerprint, now, lease_ms } = op;
        self.sql().exec(
            "DELETE FROM idempotency WHERE created_at < ?",
            vec![int(now.saturating_sub(idempotency::RETENTION_MS))],
        )?;
        let stored = rows::<IdempotencyRow>(self.sql().exec(
            "SELECT fingerprint, status, body, created_at, leased_at FROM idempotency WHERE key = ?",
            vec![key.as_str().into()],
        )?)?
        .into_iter()
        .next()
        .map(Stored::from);
        let decision = idempotency::decide(stored.as_ref(), &fingerprint, now, lease_ms);
        if decision == Decision::Proceed {
            // A retry takes the lease over and keeps the key's message id.
            self.sql().exec(
                "INSERT INTO idempotency (key, fingerprint, created_at, leased_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (key) DO UPDATE SET leased_at = excluded.leased_at",
                vec![key.into(), fingerprint.into(), int(now), int(now)],
            )?;
        }
        Ok(decision)
    }

    async fn idempotency_finish(&self, op: IdempotencyFinish) -> Result<(), ApiError> {
        let sql = self.sql();
        match op.response {
            Some(response) => {
                sql.exec(
                    "UPDATE idempotency SET status = ?, body = ? WHERE key = ?",
                    vec![int(response.status.into()), response.body.into(), op.key.into()],
                )?;
            }
            None => {
                // A key that reserved nothing is forgotten; one bound to a message id keeps it
                // (the device may hold the message) and only lets go of the lease.
                sql.exec(
                    "DELETE FROM idempotency WHERE key = ? AND status IS NULL AND message_id IS NULL",
                    vec![op.key.as_str().into()],
                )?;
                sql.exec(
                    "UPDATE idempotency SET leased_at = NULL WHERE key = ? AND status IS NULL",
                    vec![op.key.into()],
                )?;
            }
        }
        Ok(())
    }

    async fn refund(&self, op: Refund) -> Result<(), ApiError> {
        let message_id = op.message_id;
        let found = number(
            &self.sql(),
            "SELECT COUNT(*) AS n FROM reservations WHERE message_id = ?",
            vec![message_id.as_str().into()],
        )?;
        if found.unwrap_or(0) > 0 {
            self.sql().exec("DELETE FROM reservations WHERE message_id = ?", vec![message_id.as_str().into()])?;
            self.sql().exec("UPDATE app SET quota_used = MAX(quota_used - 1, 0)", None)?;
        }
        // A retry under the key then sends afresh: this id will never go out.
        self.sql().exec(
            "UPDATE idempotency SET message_id = NULL WHERE message_id = ? AND status IS NULL",
            vec![message_id.as_str().into()],
        )?;
        Ok(())
    }
}
