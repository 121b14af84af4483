//! The operator API (`/admin/v1`): apps, plans and keys, and the bridge's dead
//! letters. Errors speak LoginWA.

use futures_util::future::join_all;
use serde_json::{json, Value};
use worker::Request;

use super::{auth, date_time, json_body, Ctx, Outcome, Reply};
use wagate_contract::wire::{replay_path, DeadLetters, Replayed, DEAD_LETTERS_PATH};

use crate::bridge::{Bridge, CallError};
use crate::dialect::admin as render;
use crate::dialect::routes::admin::Admin;
use crate::dialect::routes::{self, Method};
use crate::domain::error::{ApiError, Rule};
use crate::domain::ids::{AppId, KeyId};
use crate::domain::keys;
use crate::domain::validate::Fields;
use crate::objects::call;
use crate::protocol::app::{AddKey, AppPatch, Audit, Create, Events, Get, ListKeys, Plan, RevokeKey, Update};
use crate::protocol::registry::{self, AddApp, ListApps};
use crate::runtime::{iso, month_of, now_ms, required_config};

const DEFAULT_MONTHLY_MESSAGES: i64 = 5000;
const DEFAULT_API_RPM: i64 = 120;
const DEFAULT_AUTH_RPM: i64 = 60;
const DEFAULT_MAX_DEVICES: i64 = 10;
const LIMIT_MAX: i64 = 1_000_000_000;

/// The operator's token is checked first, unknown paths included.
pub async fn route(req: &mut Request, ctx: &Ctx<'_>, method: Method, rest: &[&str]) -> Outcome {
    auth::operator(req, ctx).await?;
    match routes::admin::resolve(method, rest)? {
        Admin::CreateApp => create_app(req, ctx).await,
        Admin::ListApps => list_apps(ctx).await,
        Admin::ViewApp { app: id } => view(ctx, &app_id(id)?).await,
        Admin::UpdateApp { app: id } => update(req, ctx, &app_id(id)?).await,
        Admin::CreateKey { app: id } => create_key(req, ctx, &app_id(id)?).await,
        Admin::ListKeys { app: id } => {
            let app_id = app_id(id)?;
            let keys = call(ctx.env, app_id.as_str(), ListKeys {}).await?;
            Ok(Reply::json(200, render::keys(&app_id, &keys, now_ms(), &iso)))
        }
        Admin::Audit { app: id } => {
            Ok(Reply::json(200, render::audit(&call(ctx.env, app_id(id)?.as_str(), Audit {}).await?, &iso)))
        }
        Admin::Events { app: id } => {
            let page: EventsPage = ctx.query()?;
            let (after, limit) = (page.after.unwrap_or(0), page.limit.unwrap_or(100));
            // Up to 2^53 - 1, the largest integer every JSON client reads exactly.
            if !(0..=MAX_SAFE_INTEGER).contains(&after) {
                return Err(ApiError::field("after", Rule::Range { min: 0, max: MAX_SAFE_INTEGER }));
            }
            if !(1..=1000).contains(&limit) {
                return Err(ApiError::field("limit", Rule::Range { min: 1, max: 1000 }));
            }
            let events = call(ctx.env, app_id(id)?.as_str(), Events { after, limit }).await?;
            Ok(Reply::json(200, render::events(events, &iso)?))
        }
        Admin::RevokeKey { app: id, key } => {
            let key_id = KeyId::parse(key).ok_or_else(|| ApiError::not_found("key"))?;
            call(ctx.env, app_id(id)?.as_str(), RevokeKey { key_id, now: now_ms() }).await?;
            Ok(Reply::no_content())
        }
        Admin::DeadLetters => dead_letters(ctx).await,
        Admin::ReplayDeadLetter { id } => replay(ctx, id).await,
    }
}

const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// `GET /admin/v1/bridge/dead-letters?limit=N`: the events the bridge could not
/// hand to the worker because the worker refused them for good, oldest first.
async fn dead_letters(ctx: &Ctx<'_>) -> Outcome {
    #[derive(serde::Deserialize)]
    struct Page {
        limit: Option<i64>,
    }
    let limit = ctx.query::<Page>()?.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::field("limit", Rule::Range { min: 1, max: 1000 }));
    }
    let listed: DeadLetters =
        Bridge::from_env(ctx.env)?.get_json(&format!("{DEAD_LETTERS_PATH}?limit={limit}")).await?;
    Ok(Reply::json(200, render::dead_letters(&listed.dead_letters, &iso)))
}

/// `POST /admin/v1/bridge/dead-letters/{id}/replay`: the bridge queues the event
/// again under its own id (the worker applies an id at most once).
async fn replay(ctx: &Ctx<'_>, id: &str) -> Outcome {
    // Only an event id goes into the bridge's path.
    let well_formed =
        id.strip_prefix("evt_").is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return Err(ApiError::not_found("dead letter"));
    }
    match Bridge::from_env(ctx.env)?.post::<_, Replayed>(&replay_path(id), &json!({})).await {
        Ok(replayed) => Ok(Reply::json(202, render::replayed(&replayed))),
        Err(CallError::Refused { status: 404, .. }) => Err(ApiError::not_found("dead letter")),
        Err(e) => Err(e.into()),
    }
}

#[derive(serde::Deserialize)]
struct EventsPage {
    after: Option<i64>,
    limit: Option<i64>,
}

/// `GET /admin/v1/apps?page=N`: 50 apps a page, oldest first, each as `GET …/{id}` shows it.
async fn list_apps(ctx: &Ctx<'_>) -> Outcome {
    let page = ctx.page()?;
    let listed = call(ctx.env, registry::NAME, ListApps { page }).await?;
    let period = month_of(now_ms());
    let views = join_all(listed.app_ids.iter().map(|id| {
        let op = Get { period: period.clone() };
        async move { call(ctx.env, id.as_str(), op).await }
    }))
    .await;
    let now = now_ms();
    let apps: Vec<Value> =
        views.into_iter().map(|v| v.map(|app| render::app(&app, now, &iso))).collect::<Result<_, _>>()?;
    Ok(Reply::json(200, render::apps(apps, page, registry::PAGE_SIZE, listed.total)))
}

fn app_id(s: &str) -> Result<AppId, ApiError> {
    AppId::parse(s).ok_or_else(|| ApiError::not_found("app"))
}

async fn create_app(req: &mut Request, ctx: &Ctx<'_>) -> Outcome {
    let body = json_body(req).await?;
    let mut f = Fields::new(&body);
    let name = f.string("name", true, 1, 200);
    let plan = Plan {
        monthly_messages: f.integer("monthly_messages", 0, LIMIT_MAX).unwrap_or(DEFAULT_MONTHLY_MESSAGES),
        api_rpm: f.integer("api_rpm", 1, LIMIT_MAX).unwrap_or(DEFAULT_API_RPM),
        auth_rpm: f.integer("auth_rpm", 1, LIMIT_MAX).unwrap_or(DEFAULT_AUTH_RPM),
        max_devices: f.integer("max_devices", 0, 10_000).unwrap_or(DEFAULT_MAX_DEVICES),
    };
    f.finish()?;
    let name = name.unwrap_or_default();
    let (app_id, key_id) = (AppId::generate(), KeyId::generate());
    let api_key = keys::generate(required_config(ctx.env, "KEY_SECRET")?.as_bytes(), &app_id, &key_id);
    let op = Create {
        app_id: app_id.clone(),
        name: name.clone(),
        plan,
        key_id: key_id.clone(),
        key_hash: keys::hash(&api_key),
        now: now_ms(),
    };
    call(ctx.env, app_id.as_str(), op).await?;
    call(ctx.env, registry::NAME, AddApp { app_id: app_id.clone(), name: name.clone(), now: now_ms() }).await?;
    Ok(Reply::json(201, render::created_app(&app_id, &api_key, &key_id)))
}

async fn view(ctx: &Ctx<'_>, app_id: &AppId) -> Outcome {
    let app = call(ctx.env, app_id.as_str(), Get { period: month_of(now_ms()) }).await?;
    Ok(Reply::json(200, render::app(&app, now_ms(), &iso)))
}

async fn update(req: &mut Request, ctx: &Ctx<'_>, app_id: &AppId) -> Outcome {
    let body = json_body(req).await?;
    let mut f = Fields::new(&body);
    let patch = AppPatch {
        suspended: f.boolean("suspended"),
        monthly_messages: f.integer("monthly_messages", 0, LIMIT_MAX),
        api_rpm: f.integer("api_rpm", 1, LIMIT_MAX),
        auth_rpm: f.integer("auth_rpm", 1, LIMIT_MAX),
        max_devices: f.integer("max_devices", 0, 10_000),
        default_country_code: f.country_code("default_country_code").map(|cc| cc.as_str().to_owned()),
        quota_used: f.integer("quota_used", 0, LIMIT_MAX),
        warm_up_first_day_cap: f.integer("warm_up_first_day_cap", 1, LIMIT_MAX).map(|n| n as u64),
        warm_up_growth_percent: f.integer("warm_up_growth_percent", 0, 1000).map(|n| n as u64),
        warm_up_uncapped_after: f.integer("warm_up_uncapped_after", 1, LIMIT_MAX).map(|n| n as u64),
        auto_reply_cooldown_s: f.integer("auto_reply_cooldown_s", 0, 86_400).map(|n| n as u64),
        auto_reply_hourly_cap: f.integer("auto_reply_hourly_cap", 0, 3_600).map(|n| n as u64),
        opt_out_keywords: body.get("opt_out_keywords").filter(|v| !v.is_null()).and_then(|v| {
            let keywords: Option<Vec<String>> = serde_json::from_value(v.clone()).ok();
            let keywords = keywords.filter(|k| k.iter().all(|k| (1..=32).contains(&k.trim().chars().count())));
            if keywords.is_none() {
                let reason = "must be a list of keywords of 1 to 32 characters".into();
                f.fail("opt_out_keywords", Rule::Invalid { reason });
            }
            keywords
        }),
    };
    f.finish()?;
    let app = call(ctx.env, app_id.as_str(), Update { patch, period: month_of(now_ms()) }).await?;
    Ok(Reply::json(200, render::app(&app, now_ms(), &iso)))
}

async fn create_key(req: &mut Request, ctx: &Ctx<'_>, app_id: &AppId) -> Outcome {
    let body = json_body(req).await?;
    let mut f = Fields::new(&body);
    let device_id = f.device_id("device_id");
    let expires_at = date_time(&mut f, "expires_at", false);
    if expires_at.is_some_and(|at| at <= now_ms()) {
        f.fail("expires_at", Rule::Invalid { reason: "must be in the future".into() });
    }
    f.finish()?;
    let key_id = KeyId::generate();
    let api_key = keys::generate(required_config(ctx.env, "KEY_SECRET")?.as_bytes(), app_id, &key_id);
    let op = AddKey {
        key_id: key_id.clone(),
        key_hash: keys::hash(&api_key),
        device_id: device_id.clone(),
        expires_at,
        now: now_ms(),
    };
    call(ctx.env, app_id.as_str(), op).await?;
    Ok(Reply::json(201, render::created_key(&key_id, &api_key, device_id.as_ref(), expires_at, &iso)))
}
