//! Who is calling: tenants by API key (routed to their app's object by the key
//! itself), operators by the admin token.

use subtle::ConstantTimeEq;
use worker::Request;

use super::Ctx;
use crate::domain::allowlist::client_ip;
use crate::domain::error::ApiError;
use crate::domain::keys;
use crate::objects::app::{AppOp, LimitClass, Tenant};
use crate::objects::guard::{GuardOp, Throttle};
use crate::objects::{call, APPS, GUARDS};
use crate::runtime::{config, now_ms, required_config};

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// The client's address. Cloudflare sets this header at its edge; clients cannot forge it (see
/// the README for local runs).
fn address(req: &Request) -> Option<String> {
    client_ip(header(req, "cf-connecting-ip").as_deref()).map(|ip| ip.to_string())
}

/// The calling app, by its key. `ip_exempt` skips the IP allow-list (for the list's own
/// endpoints). A failed authentication counts against the client address's budget.
pub async fn tenant(req: &Request, ctx: &Ctx<'_>, ip_exempt: bool) -> Result<Tenant, ApiError> {
    let ip = address(req);
    let result = authenticate(req, ctx, ip.clone(), ip_exempt).await;
    match result {
        Ok(tenant) => {
            ctx.extra_headers.borrow_mut().extend(tenant.rate.0.iter().cloned());
            Ok(tenant)
        }
        Err(ApiError::Unauthorized) => Err(failed(ctx, ip.as_deref()).await),
        Err(e) => Err(e),
    }
}

async fn authenticate(req: &Request, ctx: &Ctx<'_>, ip: Option<String>, ip_exempt: bool) -> Result<Tenant, ApiError> {
    let (authorization, x_api_key) = (header(req, "authorization"), header(req, "x-api-key"));
    let key = keys::presented(authorization.as_deref(), x_api_key.as_deref()).ok_or(ApiError::Unauthorized)?;
    let parsed = keys::parse(key).ok_or(ApiError::Unauthorized)?;
    let class = if ctx.meta.path.starts_with("/api/auth/") { LimitClass::Auth } else { LimitClass::Api };
    let op =
        AppOp::Authenticate { key_id: parsed.key_id, key_hash: keys::hash(key), class, ip, ip_exempt, now: now_ms() };
    call::<_, Tenant>(ctx.env, APPS, parsed.app_id.as_str(), &op).await
}

/// After `AUTH_FAILURES_PER_MIN` (20) failures in a minute from one address, with API keys or
/// the admin token alike, further failures answer 429 until the budget refills; valid
/// credentials from the address are not affected.
async fn failed(ctx: &Ctx<'_>, ip: Option<&str>) -> ApiError {
    let per_minute = config(ctx.env, "AUTH_FAILURES_PER_MIN").and_then(|v| v.parse().ok()).unwrap_or(20);
    let op = GuardOp::Failed { per_minute, now: now_ms() };
    match call::<_, Throttle>(ctx.env, GUARDS, &format!("ip:{}", ip.unwrap_or("unknown")), &op).await {
        Ok(Throttle { retry_after_secs: Some(retry_after_secs) }) => ApiError::RateLimited {
            retry_after_secs,
            message: "Too many failed authentications from this address; try again later".into(),
            headers: vec![],
        },
        Ok(_) => ApiError::Unauthorized,
        Err(e) => {
            worker::console_warn!("auth failure not counted: {e}");
            ApiError::Unauthorized
        }
    }
}

pub async fn operator(req: &Request, ctx: &Ctx<'_>) -> Result<(), ApiError> {
    let expected = required_config(ctx.env, "ADMIN_TOKEN")?;
    let authorization = header(req, "authorization");
    let presented = keys::presented(authorization.as_deref(), None);
    if presented.is_some_and(|presented| bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))) {
        Ok(())
    } else {
        Err(failed(ctx, address(req).as_deref()).await)
    }
}
