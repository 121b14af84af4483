//! LoginWA's IP whitelist (`/api/v1/ip-whitelist…`, paths in CONTRACT.md), with CIDR ranges as
//! wagate's addition. These endpoints skip the check they manage, so a client can always fix
//! its list.

use worker::Request;

use super::{json_body, Ctx, Outcome, Reply};
use crate::dialect::loginwa_access;
use crate::dialect::routes::loginwa::IpWhitelist;
use crate::domain::error::{ApiError, Rule};
use crate::domain::validate::Fields;
use crate::objects::call;
use crate::protocol::access::{AllowIp, DisallowIp, ListAllowed, Restrict};
use crate::protocol::app::Tenant;
use crate::runtime::{iso, now_ms};

pub async fn route(req: &mut Request, ctx: &Ctx<'_>, tenant: &Tenant, route: IpWhitelist<'_>) -> Outcome {
    let (env, app, now) = (ctx.env, tenant.app_id.as_str(), now_ms());
    let actor = tenant.key_id.clone();
    match route {
        IpWhitelist::List => {
            Ok(Reply::json(200, loginwa_access::allow_list(&call(env, app, ListAllowed { actor }).await?, iso)))
        }
        IpWhitelist::Add => {
            let body = json_body(req).await?;
            let mut f = Fields::new(&body);
            let ip_address = f.string("ip_address", true, 1, 64);
            let label = f.string("label", false, 1, 100);
            f.finish()?;
            let ip_address = ip_address.ok_or_else(|| ApiError::internal("validated fields missing"))?;
            let added = call(env, app, AllowIp { actor, ip_address, label, now }).await?;
            Ok(Reply::json(201, loginwa_access::entry(&added, iso)))
        }
        IpWhitelist::Restrict => {
            let body = json_body(req).await?;
            let mut f = Fields::new(&body);
            let enabled = f.boolean("enabled");
            if body.get("enabled").is_none_or(serde_json::Value::is_null) {
                f.fail("enabled", Rule::Required);
            }
            f.finish()?;
            let list = call(env, app, Restrict { actor, enabled: enabled.unwrap_or_default(), now }).await?;
            Ok(Reply::json(200, loginwa_access::allow_list(&list, iso)))
        }
        IpWhitelist::Remove { id } => {
            call(env, app, DisallowIp { actor, id: id.to_string(), now }).await?;
            Ok(Reply::json(200, loginwa_access::success()))
        }
    }
}
