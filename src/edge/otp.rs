//! LoginWA's OTP product: `POST /api/auth/start` and `POST /api/auth/verify`.

use serde_json::Value;
use wagate_contract::wire::Content;
use worker::Request;

use super::send::{self, Outgoing};
use super::{json_body, Ctx, Outcome, Reply};
use crate::dialect::loginwa_otp;
use crate::domain::error::{ApiError, Rule};
use crate::domain::message::Priority;
use crate::domain::otp::{self, Verdict};
use crate::domain::phone::Recipient;
use crate::domain::time::seconds_z;
use crate::domain::validate::Fields;
use crate::objects::call;
use crate::protocol::app::Tenant;
use crate::protocol::otp::{CancelSession, SessionAccepted, StartSession, Started, VerifyCode};
use crate::runtime::{config, is_production, now_ms, required_config};

fn setting(ctx: &Ctx<'_>, name: &str, default: u64) -> u64 {
    config(ctx.env, name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub async fn start(req: &mut Request, ctx: &Ctx<'_>, tenant: &Tenant) -> Outcome {
    let body = json_body(req).await?;
    let mut f = Fields::new(&body);
    let country_code = f.country_code("country_code");
    let length = f.integer("otp_length", otp::MIN_LENGTH as i64, otp::MAX_LENGTH as i64);
    let template = f.string("message_template", false, 1, otp::TEMPLATE_MAX_CHARS);
    if template.as_deref().is_some_and(|t| !t.contains(otp::CODE_PLACEHOLDER)) {
        f.fail("message_template", Rule::Invalid { reason: "must contain the {code} placeholder".into() });
    }
    let meta = f.object("meta");
    let digits = f.phone_number_with("phone", country_code.as_ref(), &tenant.default_country_code);
    f.finish()?;
    let digits = digits.ok_or_else(|| ApiError::internal("validated fields missing"))?;

    let secret = required_config(ctx.env, "OTP_SECRET")?;
    let phone_key = otp::phone_key(secret.as_bytes(), tenant.app_id.as_str(), &digits);
    let session_id = otp::new_session_id(&phone_key);
    let code = otp::generate_code(length.map_or(otp::DEFAULT_LENGTH, |l| l as usize));
    let ttl_secs = setting(ctx, "OTP_TTL_S", otp::DEFAULT_TTL_SECS);
    let now = now_ms();
    let expires_at = now + ttl_secs * 1000;
    let start = StartSession {
        session_id: session_id.clone(),
        app_id: tenant.app_id.clone(),
        phone: digits.clone(),
        code_hash: otp::hash_code(secret.as_bytes(), &session_id, &code),
        expires_at,
        resend_cooldown_ms: setting(ctx, "OTP_RESEND_COOLDOWN_S", otp::DEFAULT_RESEND_COOLDOWN_SECS) * 1000,
        hourly_cap: setting(ctx, "OTP_HOURLY_CAP", otp::DEFAULT_HOURLY_CAP as u64) as usize,
        now,
    };
    if let Started::Throttled { retry_after_secs } = call(ctx.env, &phone_key, start).await? {
        return Err(ApiError::RateLimited {
            retry_after_secs,
            message: format!("Too many codes sent to this phone number; retry in {retry_after_secs} s"),
            headers: vec![],
        });
    }
    let text = otp::render(template.as_deref().unwrap_or(otp::DEFAULT_TEMPLATE), &code);
    let out = Outgoing {
        recipient: Recipient::Phone(digits),
        content: Content::Text { text },
        device_id: None,
        meta: meta.map(Value::Object),
        priority: Priority::Otp,
        code_expires_at: Some(expires_at),
    };
    let sent = match send::accept(ctx, tenant, out).await {
        Ok(accepted) => send::settle(ctx, tenant, accepted).await.map(drop),
        Err(e) => Err(e),
    };
    // Not sent, or refused by WhatsApp (502 `send_failed`; its quota unit goes back with the
    // failed message): no one holds the code, so the session ends and cannot be verified.
    if let Err(e) = sent {
        call(ctx.env, &phone_key, CancelSession { session_id }).await?;
        return Err(e);
    }
    // Only now that the new code is on its way do the earlier ones stop working. Should this
    // call fail, they stay valid until they expire, as they would have without the new one.
    let accepted = SessionAccepted { session_id: session_id.clone() };
    if let Err(e) = call(ctx.env, &phone_key, accepted).await {
        worker::console_warn!("earlier codes left valid: {e}");
    }
    let debug_code = (!is_production(ctx.env)).then_some(code.as_str());
    Ok(Reply::json(200, loginwa_otp::started(&session_id, ttl_secs, debug_code)))
}

pub async fn verify(req: &mut Request, ctx: &Ctx<'_>, tenant: &Tenant) -> Outcome {
    let body = json_body(req).await?;
    let mut f = Fields::new(&body);
    let session_id = f.string("session_id", true, 1, 64);
    let code = f.string("otp_code", true, 1, 16);
    f.finish()?;
    let (Some(session_id), Some(code)) = (session_id, code) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let Some(phone_key) = otp::phone_key_of(&session_id) else {
        return Err(ApiError::OtpRejected { verdict: Verdict::Expired });
    };
    let op = VerifyCode { session_id, app_id: tenant.app_id.clone(), code: code.trim().to_owned(), now: now_ms() };
    let outcome = call(ctx.env, &phone_key, op).await?;
    match outcome.verdict {
        Verdict::Verified => Ok(Reply::json(200, loginwa_otp::verified(&outcome, seconds_z))),
        verdict => Err(ApiError::OtpRejected { verdict }),
    }
}
