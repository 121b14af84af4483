//! wagate's auto-replies API (the LoginWA reference keeps its rules in a dashboard):
//! `GET/POST /api/v1/auto-replies`, `GET/PATCH/DELETE /api/v1/auto-replies/{id}`.

use serde_json::{Map, Value};
use worker::Request;

use super::{json_body, Ctx, Outcome, Reply};
use crate::dialect::loginwa_autoreplies;
use crate::dialect::routes::loginwa::AutoReplies;
use crate::domain::autoreply::{MatchKind, PATTERN_MAX_CHARS};
use crate::domain::error::{ApiError, Rule};
use crate::domain::message::TEXT_MAX_CHARS;
use crate::domain::scope;
use crate::domain::validate::Fields;
use crate::objects::call;
use crate::protocol::app::Tenant;
use crate::protocol::autoreplies::{CreateRule, DeleteRule, GetRule, ListRules, RulePatch, RuleSpec, UpdateRule};
use crate::runtime::{iso, now_ms};

pub async fn route(req: &mut Request, ctx: &Ctx<'_>, tenant: &Tenant, route: AutoReplies<'_>) -> Outcome {
    let (env, app, now) = (ctx.env, tenant.app_id.as_str(), now_ms());
    let scope = tenant.device_scope.clone();
    let (status, body) = match route {
        AutoReplies::List => (200, loginwa_autoreplies::rules(&call(env, app, ListRules { scope }).await?, iso)),
        AutoReplies::Create => {
            let create = CreateRule { scope, spec: spec(&json_body(req).await?, tenant)?, now };
            (201, loginwa_autoreplies::rule(&call(env, app, create).await?, iso))
        }
        AutoReplies::Get { id } => {
            (200, loginwa_autoreplies::rule(&call(env, app, GetRule { scope, id: id.to_string() }).await?, iso))
        }
        AutoReplies::Update { id } => {
            let update = UpdateRule { scope, id: id.to_string(), patch: patch(&json_body(req).await?, tenant)?, now };
            (200, loginwa_autoreplies::rule(&call(env, app, update).await?, iso))
        }
        AutoReplies::Delete { id } => {
            call(env, app, DeleteRule { scope, id: id.to_string() }).await?;
            (200, loginwa_autoreplies::deleted())
        }
    };
    Ok(Reply::json(status, body))
}

fn match_kind(f: &mut Fields<'_>, required: bool) -> Option<MatchKind> {
    let name = f.string("match", required, 1, 16)?;
    let kind = MatchKind::parse(&name);
    if kind.is_none() {
        f.fail("match", Rule::Invalid { reason: "must be one of exact, contains, regex".into() });
    }
    kind
}

/// A device-scoped key's rules answer on its own device only.
fn spec(body: &Map<String, Value>, tenant: &Tenant) -> Result<RuleSpec, ApiError> {
    let mut f = Fields::new(body);
    let match_kind = match_kind(&mut f, true);
    let pattern = f.string("pattern", true, 1, PATTERN_MAX_CHARS);
    let reply = f.string("reply", true, 1, TEXT_MAX_CHARS);
    let device_id = f.device_id("device_id");
    let active = f.boolean("active").unwrap_or(true);
    let priority = f.integer("priority", -1000, 1000).unwrap_or(0);
    f.finish()?;
    let device_id = scope::device_for(tenant.device_scope.as_ref(), device_id)?;
    let (Some(match_kind), Some(pattern), Some(reply)) = (match_kind, pattern, reply) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    Ok(RuleSpec { match_kind, pattern, reply, device_id, active, priority })
}

fn patch(body: &Map<String, Value>, tenant: &Tenant) -> Result<RulePatch, ApiError> {
    let mut f = Fields::new(body);
    let mut patch = RulePatch {
        match_kind: match_kind(&mut f, false),
        pattern: f.string("pattern", false, 1, PATTERN_MAX_CHARS),
        reply: f.string("reply", false, 1, TEXT_MAX_CHARS),
        device_id: f.device_id("device_id"),
        active: f.boolean("active"),
        priority: f.integer("priority", -1000, 1000),
    };
    f.finish()?;
    patch.device_id = scope::device_for(tenant.device_scope.as_ref(), patch.device_id)?;
    Ok(patch)
}
