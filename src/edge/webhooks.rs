//! LoginWA's webhooks API (paths in CONTRACT.md), with wagate's `format` and `device_id`,
//! delivery listing and replay.

use serde_json::{Map, Value};
use worker::Request;

use super::{date_time, json_body, Ctx, Outcome, Reply};
use crate::dialect::loginwa_webhooks;
use crate::dialect::routes::loginwa::Webhooks;
use crate::domain::delivery::DeliveryStatus;
use crate::domain::error::{ApiError, Rule};
use crate::domain::events::EventName;
use crate::domain::scope;
use crate::domain::time::seconds_offset;
use crate::domain::validate::Fields;
use crate::domain::webhook::{self, Format};
use crate::objects::call;
use crate::protocol::app::Tenant;
use crate::protocol::webhooks::{
    CreateEndpoint, DeleteEndpoint, EndpointPatch, EndpointSpec, GetEndpoint, ListDeliveries, ListEndpoints,
    RegenerateSecret, Replay, TestEndpoint, UpdateEndpoint,
};
use crate::runtime::{egress, now_ms};

const DEFAULT_RETRIES: i64 = 3;
const SECRET_MAX_CHARS: usize = 256;

pub async fn route(req: &mut Request, ctx: &Ctx<'_>, tenant: &Tenant, route: Webhooks<'_>) -> Outcome {
    let (env, app, now) = (ctx.env, tenant.app_id.as_str(), now_ms());
    let scope = tenant.device_scope.clone();
    let id = |s: &str| s.to_owned();
    let (status, body) = match route {
        Webhooks::List => {
            (200, loginwa_webhooks::endpoints(&call(env, app, ListEndpoints { scope }).await?, seconds_offset))
        }
        Webhooks::Create => {
            let create = CreateEndpoint { scope, spec: spec(&json_body(req).await?, ctx, tenant)?, now };
            (201, loginwa_webhooks::created(&call(env, app, create).await?, seconds_offset))
        }
        Webhooks::Get { id: wh } => {
            (200, loginwa_webhooks::endpoint(&call(env, app, GetEndpoint { scope, id: id(wh) }).await?, seconds_offset))
        }
        Webhooks::Update { id: wh } => {
            let update = UpdateEndpoint { scope, id: id(wh), patch: patch(&json_body(req).await?, ctx)?, now };
            (200, loginwa_webhooks::endpoint(&call(env, app, update).await?, seconds_offset))
        }
        Webhooks::Delete { id: wh } => {
            call(env, app, DeleteEndpoint { scope, id: id(wh) }).await?;
            (200, loginwa_webhooks::deleted())
        }
        Webhooks::Test { id: wh } => {
            (200, loginwa_webhooks::test_queued(&call(env, app, TestEndpoint { scope, id: id(wh), now }).await?))
        }
        Webhooks::RegenerateSecret { id: wh } => {
            let rotated = call(env, app, RegenerateSecret { scope, id: id(wh), now }).await?;
            (200, loginwa_webhooks::rotated(&rotated, seconds_offset))
        }
        Webhooks::Deliveries { id: wh } => {
            let query: DeliveryQuery = ctx.query()?;
            let status = match query.status.as_deref() {
                None => None,
                Some(name @ ("pending" | "succeeded" | "failed")) => DeliveryStatus::parse(name),
                Some(_) => {
                    let reason = "must be one of pending, succeeded, failed".into();
                    return Err(ApiError::field("status", Rule::Invalid { reason }));
                }
            };
            let listed = call(env, app, ListDeliveries { scope, id: id(wh), status }).await?;
            (200, loginwa_webhooks::deliveries(&listed, seconds_offset))
        }
        Webhooks::ReplayDelivery { id: wh, delivery } => {
            let replay = Replay { scope, id: id(wh), delivery_id: Some(id(delivery)), since: None, now };
            (200, loginwa_webhooks::replayed(&call(env, app, replay).await?))
        }
        Webhooks::Replay { id: wh } => {
            let body = json_body(req).await?;
            let mut f = Fields::new(&body);
            let since = date_time(&mut f, "since", true);
            f.finish()?;
            let replay = Replay { scope, id: id(wh), delivery_id: None, since, now };
            (200, loginwa_webhooks::replayed(&call(env, app, replay).await?))
        }
    };
    Ok(Reply::json(status, body))
}

#[derive(serde::Deserialize)]
struct DeliveryQuery {
    status: Option<String>,
}

fn url(f: &mut Fields<'_>, ctx: &Ctx<'_>, required: bool) -> Option<String> {
    let url = f.string("url", required, 1, 2048)?;
    match egress(ctx.env, "WEBHOOK_HOSTS").refusal(&url) {
        None => Some(url),
        Some(reason) => {
            f.fail("url", Rule::Invalid { reason });
            None
        }
    }
}

/// LoginWA's event names, or SPWP's (each stands for the events it names, see
/// `webhook::events_named`), or both.
fn events(f: &mut Fields<'_>, body: &Map<String, Value>) -> Option<Vec<EventName>> {
    let value = body.get("events").filter(|v| !v.is_null())?;
    let named = value.as_array().and_then(|names| {
        let mut events = Vec::new();
        for name in names {
            for event in webhook::events_named(name.as_str()?)? {
                if !events.contains(&event) {
                    events.push(event);
                }
            }
        }
        Some(events)
    });
    match named {
        Some(events) => Some(events),
        None => {
            let reason = "must be a list of event names from available_events".into();
            f.fail("events", Rule::Invalid { reason });
            None
        }
    }
}

/// The reference sets no bounds on a chosen secret: any non-empty one up to 256 characters.
fn secret(f: &mut Fields<'_>) -> Option<String> {
    let secret = f.string("secret", false, 0, SECRET_MAX_CHARS)?;
    if secret.trim().is_empty() {
        f.fail("secret", Rule::Invalid { reason: "must not be blank".into() });
        return None;
    }
    Some(secret)
}

/// A device-scoped key's endpoint is always for its own device: an unscoped one would receive
/// every other number's inbound messages.
fn spec(body: &Map<String, Value>, ctx: &Ctx<'_>, tenant: &Tenant) -> Result<EndpointSpec, ApiError> {
    let mut f = Fields::new(body);
    let url = url(&mut f, ctx, true);
    let events = events(&mut f, body).unwrap_or_default();
    let secret = secret(&mut f);
    let retry_count = f.integer("retry_count", 0, 10).unwrap_or(DEFAULT_RETRIES);
    let format = match f.string("format", false, 1, 16) {
        Some(name) => Format::parse(&name).or_else(|| {
            f.fail("format", Rule::Invalid { reason: "must be one of loginwa, spwp, standard".into() });
            None
        }),
        None => Some(Format::default()),
    };
    let device_id = f.device_id("device_id");
    f.finish()?;
    let device_id = scope::device_for(tenant.device_scope.as_ref(), device_id)?.map(|d| d.to_string());
    let (Some(url), Some(format)) = (url, format) else { return Err(ApiError::internal("validated fields missing")) };
    Ok(EndpointSpec { url, events, format, device_id, retry_count, secret })
}

fn patch(body: &Map<String, Value>, ctx: &Ctx<'_>) -> Result<EndpointPatch, ApiError> {
    let mut f = Fields::new(body);
    let patch = EndpointPatch {
        url: url(&mut f, ctx, false),
        events: events(&mut f, body),
        active: f.boolean("active"),
        secret: secret(&mut f),
        retry_count: f.integer("retry_count", 0, 10),
    };
    f.finish()?;
    Ok(patch)
}
