//! Who is calling: tenants by API key (routed to their app's object by the key
//! itself), operators by the admin token.

use std::net::IpAddr;

use subtle::ConstantTimeEq;
use worker::{Cache, Headers, Request, Response};

use super::Ctx;
use crate::dialect::routes::KeyAccess;
use crate::domain::allowlist::{budget_subject, client_ip};
use crate::domain::error::ApiError;
use crate::domain::keys;
use crate::domain::scope;
use crate::objects::call;
use crate::protocol::app::{Authenticate, LimitClass, Tenant};
use crate::protocol::guard::AuthFailed;
use crate::protocol::registry::{self, HasApp};
use crate::runtime::{config, now_ms, required_config};

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// The client's address. Cloudflare sets this header at its edge; clients cannot forge it (see
/// the README for local runs).
fn address(req: &Request) -> Option<IpAddr> {
    client_ip(header(req, "cf-connecting-ip").as_deref())
}

/// The calling app of a request to a tenant path, allowed what the path asks of its key.
pub async fn admit(req: &Request, ctx: &Ctx<'_>, access: KeyAccess) -> Result<Tenant, ApiError> {
    let tenant = tenant(req, ctx, access.ip_exempt).await?;
    scope::admit(tenant.device_scope.as_ref(), access.capability)?;
    Ok(tenant)
}

/// The calling app, by its key. `ip_exempt` skips the IP allow-list (for the list's own
/// endpoints). An address over its failure budget is refused before its key is looked at; a
/// failed authentication counts against the budget.
async fn tenant(req: &Request, ctx: &Ctx<'_>, ip_exempt: bool) -> Result<Tenant, ApiError> {
    let ip = address(req);
    let guard = Guard::of(ctx, ip);
    guard.admit().await?;
    match authenticate(req, ctx, ip.map(|ip| ip.to_string()), ip_exempt).await {
        Ok(tenant) => {
            ctx.extra_headers.borrow_mut().extend(tenant.rate.0.iter().cloned());
            Ok(tenant)
        }
        Err(ApiError::Unauthorized) => Err(guard.failed().await),
        Err(e) => Err(e),
    }
}

async fn authenticate(req: &Request, ctx: &Ctx<'_>, ip: Option<String>, ip_exempt: bool) -> Result<Tenant, ApiError> {
    let (authorization, x_api_key) = (header(req, "authorization"), header(req, "x-api-key"));
    let key = keys::presented(authorization.as_deref(), x_api_key.as_deref()).ok_or(ApiError::Unauthorized)?;
    // A key the worker did not issue stops here, before any object exists for it.
    let key_secret = required_config(ctx.env, "KEY_SECRET")?;
    let parsed = keys::authentic(key_secret.as_bytes(), key).ok_or(ApiError::Unauthorized)?;
    // A key from before tags is taken only for an app the registry (one object, which exists
    // already) lists: asking the app's own object would create it for a forged app id.
    if !parsed.tagged && !call(ctx.env, registry::NAME, HasApp { app_id: parsed.app_id.clone() }).await? {
        return Err(ApiError::Unauthorized);
    }
    let class = if ctx.meta.path.starts_with("/api/auth/") { LimitClass::Auth } else { LimitClass::Api };
    let op = Authenticate { key_id: parsed.key_id, key_hash: keys::hash(key), class, ip, ip_exempt, now: now_ms() };
    call(ctx.env, parsed.app_id.as_str(), op).await
}

/// The failed-authentication budget of one client address (an IPv6 client's whole /64): after
/// `AUTH_FAILURES_PER_MIN` (20) failures in a minute, with API keys or the admin token alike,
/// every request from it answers 429 until the budget refills, without its credential being
/// looked at, so that an address guessing keys or the token learns nothing more.
///
/// The budget itself lives in the address's `GuardObject`, which only failures reach. When a
/// failure spends it, the refusal is remembered in the edge cache until the budget refills, and
/// that cache is what every request asks first: checking first costs no object, and an address
/// that never failed has no storage anywhere.
struct Guard<'a> {
    ctx: &'a Ctx<'a>,
    subject: String,
}

impl<'a> Guard<'a> {
    fn of(ctx: &'a Ctx<'a>, ip: Option<IpAddr>) -> Self {
        Self { ctx, subject: budget_subject(ip) }
    }

    fn cache_key(&self) -> String {
        format!("https://auth-budget.wagate.invalid/{}", hex::encode(&self.subject))
    }

    /// Refuses an address whose budget is spent. The cache being unreadable does not lock
    /// anyone out: the request goes on to its credential check, and failures are still counted.
    async fn admit(&self) -> Result<(), ApiError> {
        let until = match Cache::default().get(self.cache_key(), false).await {
            Ok(Some(mut refusal)) => refusal.text().await.ok().and_then(|t| t.parse::<u64>().ok()),
            Ok(None) => None,
            Err(e) => {
                worker::console_warn!("auth budget not consulted: {e}");
                None
            }
        };
        let now = now_ms();
        match until {
            Some(until) if until > now => Err(throttled((until - now).div_ceil(1000))),
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication; the error to answer it with.
    async fn failed(&self) -> ApiError {
        let per_minute = config(self.ctx.env, "AUTH_FAILURES_PER_MIN").and_then(|v| v.parse().ok()).unwrap_or(20);
        match call(self.ctx.env, &self.subject, AuthFailed { per_minute, now: now_ms() }).await {
            Ok(throttle) => {
                if let Some(secs) = throttle.spent_for_secs {
                    self.remember(secs).await;
                }
                throttle.retry_after_secs.map_or(ApiError::Unauthorized, throttled)
            }
            Err(e) => {
                worker::console_warn!("auth failure not counted: {e}");
                ApiError::Unauthorized
            }
        }
    }

    async fn remember(&self, secs: u64) {
        let refusal = Response::ok((now_ms() + secs * 1000).to_string()).and_then(|r| {
            let headers = Headers::new();
            headers.set("cache-control", &format!("max-age={}", secs.max(1)))?;
            Ok(r.with_headers(headers))
        });
        let stored = match refusal {
            Ok(refusal) => Cache::default().put(self.cache_key(), refusal).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            worker::console_warn!("auth budget refusal not cached: {e}");
        }
    }
}

fn throttled(retry_after_secs: u64) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs,
        message: "Too many failed authentications from this address; try again later".into(),
        headers: vec![],
    }
}

pub async fn operator(req: &Request, ctx: &Ctx<'_>) -> Result<(), ApiError> {
    let guard = Guard::of(ctx, address(req));
    guard.admit().await?;
    let expected = required_config(ctx.env, "ADMIN_TOKEN")?;
    let authorization = header(req, "authorization");
    let presented = keys::presented(authorization.as_deref(), None);
    if presented.is_some_and(|presented| bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))) {
        Ok(())
    } else {
        Err(guard.failed().await)
    }
}
