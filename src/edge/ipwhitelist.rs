//! LoginWA's IP whitelist (`/api/v1/ip-whitelist…`, paths in CONTRACT.md), with CIDR ranges as
//! wagate's addition. These endpoints skip the check they manage, so a client can always fix
//! its list.

use serde_json::Value;
use worker::Request;

use super::{json_body, Ctx, Outcome, Reply};
use crate::dialect::routes::loginwa::IpWhitelist;
use crate::domain::error::{ApiError, Rule};
use crate::domain::validate::Fields;
use crate::objects::access::AllowListCall;
use crate::objects::{legacy_call, to_json, APPS};
use crate::protocol::app::{AllowList, AppOp, Tenant};
use crate::runtime::now_ms;

pub async fn route(req: &mut Request, ctx: &Ctx<'_>, tenant: &Tenant, route: IpWhitelist<'_>) -> Outcome {
    let now = now_ms();
    let (status, allow_list_call) = match route {
        IpWhitelist::List => (200, AllowListCall::List),
        IpWhitelist::Add => {
            let body = json_body(req).await?;
            let mut f = Fields::new(&body);
            let ip_address = f.string("ip_address", true, 1, 64);
            let label = f.string("label", false, 1, 100);
            f.finish()?;
            let ip_address = ip_address.ok_or_else(|| ApiError::internal("validated fields missing"))?;
            (201, AllowListCall::Add { ip_address, label, now })
        }
        IpWhitelist::Restrict => {
            let body = json_body(req).await?;
            let mut f = Fields::new(&body);
            let enabled = f.boolean("enabled");
            if body.get("enabled").is_none_or(serde_json::Value::is_null) {
                f.fail("enabled", Rule::Required);
            }
            f.finish()?;
            (200, AllowListCall::Restrict { enabled: enabled.unwrap_or_default(), now })
        }
        IpWhitelist::Remove { id } => (200, AllowListCall::Remove { id: id.to_string(), now }),
    };
    let op = AppOp::AllowList(AllowList { call: to_json(&allow_list_call)?, actor: tenant.key_id.clone() });
    let answer: Value = legacy_call(ctx.env, APPS, tenant.app_id.as_str(), &op).await?;
    Ok(Reply::json(status, answer))
}
