//! Who is calling: tenants by API key (routed to their app's object by the key
//! itself), operators by the admin token.

use subtle::ConstantTimeEq;
use worker::Request;

use super::Ctx;
use crate::domain::error::ApiError;
use crate::domain::keys;
use crate::objects::app::{AppOp, LimitClass, Tenant};
use crate::objects::{call, APPS};
use crate::runtime::{now_ms, required_config};

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

pub async fn tenant(req: &Request, ctx: &Ctx<'_>) -> Result<Tenant, ApiError> {
    let (authorization, x_api_key) = (header(req, "authorization"), header(req, "x-api-key"));
    let key = keys::presented(authorization.as_deref(), x_api_key.as_deref()).ok_or(ApiError::Unauthorized)?;
    let parsed = keys::parse(key).ok_or(ApiError::Unauthorized)?;
    let class = if ctx.meta.path.starts_with("/api/auth/") { LimitClass::Auth } else { LimitClass::Api };
    let op = AppOp::Authenticate { key_id: parsed.key_id, key_hash: keys::hash(key), class, now: now_ms() };
    let result = call::<_, Tenant>(ctx.env, APPS, parsed.app_id.as_str(), &op).await;
    if let Ok(tenant) = &result {
        ctx.extra_headers.borrow_mut().extend(tenant.rate.0.iter().cloned());
    }
    result
}

pub fn operator(req: &Request, ctx: &Ctx<'_>) -> Result<(), ApiError> {
    let expected = required_config(ctx.env, "ADMIN_TOKEN")?;
    let authorization = header(req, "authorization");
    let presented = keys::presented(authorization.as_deref(), None).ok_or(ApiError::Unauthorized)?;
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}
