//! The app itself: its row (name, plan, suspension, country code, quota counter), created once,
//! changed by the operator's patch, shown as its view.

use serde::Deserialize;

use super::access::{self, Actor, Change};
use super::{audience, autoreplies, devices, events, idempotency, keys, quota, webhooks, Sql};
use crate::domain::error::{ApiError, Rule};
use crate::domain::schema::Migration;
use crate::protocol::app::{AppPatch, AppView, Create, Governor, Plan, DEFAULT_COUNTRY_CODE};

pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS app (
        one INTEGER PRIMARY KEY CHECK (one = 1), app_id TEXT NOT NULL, name TEXT NOT NULL,
        monthly_messages INTEGER NOT NULL, api_rpm INTEGER NOT NULL, auth_rpm INTEGER NOT NULL,
        max_devices INTEGER NOT NULL, default_country_code TEXT NOT NULL, suspended INTEGER NOT NULL DEFAULT 0,
        quota_period TEXT NOT NULL DEFAULT '', quota_used INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL)";

/// The app's first migration, in the order it always ran.
pub const CORE: [&str; 7] =
    [SCHEMA, keys::SCHEMA, devices::SCHEMA, quota::SCHEMA, keys::RATE_LIMITS, idempotency::SCHEMA, events::SCHEMA];

/// The app's storage, oldest first; append, never edit (see `domain::schema`). Each facet
/// brings its own tables.
pub const MIGRATIONS: [Migration; 6] = [
    Migration::Sql(&CORE),
    Migration::Sql(&webhooks::SCHEMA),
    Migration::Sql(&autoreplies::SCHEMA),
    Migration::Sql(&audience::SCHEMA),
    Migration::Sql(&access::SCHEMA),
    // Added on every construction by releases from before versioning.
    Migration::AddColumns(&[
        keys::ADDED_COLUMNS[0],
        ("campaigns", "device_id", "TEXT"),
        idempotency::ADDED_COLUMNS[0],
        idempotency::ADDED_COLUMNS[1],
    ]),
];

#[derive(Deserialize)]
pub struct App {
    pub app_id: String,
    name: String,
    pub monthly_messages: i64,
    pub api_rpm: i64,
    pub auth_rpm: i64,
    pub max_devices: i64,
    pub default_country_code: String,
    pub suspended: i64,
    pub quota_period: String,
    pub quota_used: i64,
    created_at: u64,
}

impl App {
    pub fn quota_remaining(&self) -> i64 {
        (self.monthly_messages - self.quota_used).max(0)
    }
}

pub fn app(sql: &impl Sql) -> Result<App, ApiError> {
    sql.row("SELECT * FROM app", vec![])?.ok_or_else(|| ApiError::not_found("app"))
}

/// Creates the app with its first key.
pub fn create(sql: &impl Sql, op: Create) -> Result<(), ApiError> {
    let Create { app_id, name, plan, key_id, key_hash, now } = op;
    sql.run(
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
            now.into(),
        ],
    )?;
    keys::insert(sql, &key_id, &key_hash, None, None, now)?;
    access::audit(sql, &Actor::Operator, &Change::AppCreated { key_id }, now)
}

/// The app as of `period` (a new month's quota starts at zero), with `governor`'s settings.
pub fn view(sql: &impl Sql, period: &str, now: u64, governor: Governor) -> Result<AppView, ApiError> {
    let app = quota::in_period(sql, period, now)?;
    Ok(AppView {
        quota_remaining: app.quota_remaining(),
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
        keys: keys::list(sql)?,
        governor,
        created_at: app.created_at,
    })
}

/// The governor `patch` makes of `governor`, checked before anything is written: an error must
/// leave the app as it was.
pub fn patched_governor(mut governor: Governor, patch: &AppPatch) -> Result<Governor, ApiError> {
    let warm_up = &mut governor.warm_up;
    warm_up.first_day_cap = patch.warm_up_first_day_cap.unwrap_or(warm_up.first_day_cap);
    warm_up.growth_percent = patch.warm_up_growth_percent.unwrap_or(warm_up.growth_percent);
    warm_up.uncapped_after = patch.warm_up_uncapped_after.unwrap_or(warm_up.uncapped_after);
    // A first day above the threshold would mean no warm-up at all, silently.
    if warm_up.first_day_cap > warm_up.uncapped_after {
        let reason = format!("must be at least the first day's cap ({})", warm_up.first_day_cap);
        return Err(ApiError::field("warm_up_uncapped_after", Rule::Invalid { reason }));
    }
    if let Some(keywords) = &patch.opt_out_keywords {
        governor.opt_out_keywords = keywords.clone();
    }
    let limits = &mut governor.auto_reply;
    limits.cooldown_secs = patch.auto_reply_cooldown_s.unwrap_or(limits.cooldown_secs);
    limits.hourly_cap = patch.auto_reply_hourly_cap.unwrap_or(limits.hourly_cap);
    Ok(governor)
}

/// Writes the app's columns `patch` sets, audited as the operator's.
pub fn update(sql: &impl Sql, patch: AppPatch, now: u64) -> Result<(), ApiError> {
    let sets: [(&str, Option<super::Bind>); 7] = [
        ("suspended", patch.suspended.map(Into::into)),
        ("monthly_messages", patch.monthly_messages.map(Into::into)),
        ("api_rpm", patch.api_rpm.map(Into::into)),
        ("auth_rpm", patch.auth_rpm.map(Into::into)),
        ("max_devices", patch.max_devices.map(Into::into)),
        ("default_country_code", patch.default_country_code.clone().map(Into::into)),
        ("quota_used", patch.quota_used.map(Into::into)),
    ];
    for (column, value) in sets {
        if let Some(value) = value {
            sql.run(&format!("UPDATE app SET {column} = ?"), vec![value])?;
        }
    }
    access::audit(sql, &Actor::Operator, &Change::AppUpdated(patch), now)
}

/// An app's storage as its migrations make it, for the tests of the app's facets.
#[cfg(test)]
pub mod testing {
    use super::*;
    use crate::domain::ids::{AppId, KeyId};
    use crate::store::memory::Memory;

    pub fn storage() -> Memory {
        let sql = Memory::default();
        crate::store::migrate(&sql, &MIGRATIONS).unwrap();
        sql
    }

    pub fn created(plan: Plan, now: u64) -> Memory {
        let sql = storage();
        let app_id = AppId::parse("app_0123456789abcdef").unwrap();
        let key_id = KeyId::parse("key_0123456789abcdef").unwrap();
        create(&sql, Create { app_id, name: "shop".into(), plan, key_id, key_hash: "h".into(), now }).unwrap();
        sql
    }

    pub fn plan(monthly_messages: i64) -> Plan {
        Plan { monthly_messages, api_rpm: 2, auth_rpm: 1, max_devices: 3 }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{created, plan};
    use super::*;

    #[test]
    fn a_created_app_shows_its_plan_and_its_first_key() {
        let sql = created(plan(10), 5);
        let view = view(&sql, "2026-12", 6, Governor::default()).unwrap();
        assert_eq!((view.name.as_str(), view.plan.monthly_messages, view.quota_remaining), ("shop", 10, 10));
        assert_eq!((view.quota_period.as_str(), view.suspended, view.keys.len()), ("2026-12", false, 1));
        assert_eq!(view.default_country_code, DEFAULT_COUNTRY_CODE);
        let trail = access::audit_trail(&sql).unwrap();
        assert_eq!(trail[0].action, "app.created");
        assert!(
            create(
                &sql,
                Create {
                    app_id: crate::domain::ids::AppId::parse("app_0123456789abcdef").unwrap(),
                    name: "again".into(),
                    plan: plan(1),
                    key_id: crate::domain::ids::KeyId::parse("key_fedcba9876543210").unwrap(),
                    key_hash: "h".into(),
                    now: 7,
                }
            )
            .is_err(),
            "an app is created once"
        );
    }

    #[test]
    fn a_patch_writes_only_what_it_sets_and_a_bad_governor_writes_nothing() {
        let sql = created(plan(10), 5);
        let patch = AppPatch { suspended: Some(true), quota_used: Some(4), ..AppPatch::default() };
        update(&sql, patch, 6).unwrap();
        let view = view(&sql, "", 7, Governor::default()).unwrap();
        assert_eq!((view.suspended, view.quota_used, view.quota_remaining, view.plan.api_rpm), (true, 4, 6, 2));
        assert_eq!(access::audit_trail(&sql).unwrap()[0].detail, r#"{"quota_used":4,"suspended":true}"#);
        let bad =
            AppPatch { warm_up_first_day_cap: Some(500), warm_up_uncapped_after: Some(10), ..AppPatch::default() };
        assert!(matches!(patched_governor(Governor::default(), &bad), Err(ApiError::Validation { .. })));
        let good = AppPatch { auto_reply_hourly_cap: Some(3), ..AppPatch::default() };
        assert_eq!(patched_governor(Governor::default(), &good).unwrap().auto_reply.hourly_cap, 3);
    }
}
