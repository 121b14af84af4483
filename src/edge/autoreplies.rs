//! wagate's auto-replies API (the LoginWA reference keeps its rules in a dashboard):
//! `GET/POST /api/v1/auto-replies`, `GET/PATCH/DELETE /api/v1/auto-replies/{id}`.

use serde_json::{Map, Value};
use worker::Request;

use super::{json_body, Ctx, Outcome, Reply};
use crate::dialect::routes::loginwa::AutoReplies;
use crate::domain::autoreply::{MatchKind, PATTERN_MAX_CHARS};
use crate::domain::error::{ApiError, Rule};
use crate::domain::message::TEXT_MAX_CHARS;
use crate::domain::scope;
use crate::domain::validate::Fields;
use crate::objects::autoreplies::{AutoReplyCall, RulePatch, RuleSpec};
use crate::objects::{legacy_call, to_json, APPS};
use crate::protocol::app::{self, AppOp, Tenant};
use crate::runtime::now_ms;

pub async fn route(req: &mut Request, ctx: &Ctx<'_>, tenant: &Tenant, route: AutoReplies<'_>) -> Outcome {
    let now = now_ms();
    let (status, auto_reply_call) = match route {
        AutoReplies::List => (200, AutoReplyCall::List),
        AutoReplies::Create => (201, AutoReplyCall::Create { spec: spec(&json_body(req).await?, tenant)?, now }),
        AutoReplies::Get { id } => (200, AutoReplyCall::Get { id: id.to_string() }),
        AutoReplies::Update { id } => {
            (200, AutoReplyCall::Update { id: id.to_string(), patch: patch(&json_body(req).await?, tenant)?, now })
        }
        AutoReplies::Delete { id } => (200, AutoReplyCall::Delete { id: id.to_string() }),
    };
    let op =
        AppOp::AutoReplies(app::AutoReplies { call: to_json(&auto_reply_call)?, scope: tenant.device_scope.clone() });
    let answer: Value = legacy_call(ctx.env, APPS, tenant.app_id.as_str(), &op).await?;
    Ok(Reply::json(status, answer))
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
