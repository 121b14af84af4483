//! Runs a send at most once per `Idempotency-Key` (see `domain::idempotency`).

use std::future::Future;

use serde_json::Value;
use worker::Request;

use super::{Ctx, Outcome, Reply};
use crate::dialect::{self, Dialect};
use crate::domain::error::{ApiError, Rule};
use crate::domain::idempotency::{fingerprint, Decision, SavedResponse, DEFAULT_LEASE_MS, MAX_KEY_CHARS};
use crate::objects::call;
use crate::protocol::app::{IdempotencyBegin, IdempotencyFinish, Tenant};
use crate::runtime::{config, now_ms};

pub fn key(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(key) = req.headers().get("idempotency-key").ok().flatten() else { return Ok(None) };
    let key = key.trim().to_owned();
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        let reason = format!("must be 1 to {MAX_KEY_CHARS} characters");
        return Err(ApiError::field("Idempotency-Key", Rule::Invalid { reason }));
    }
    Ok(Some(key))
}

/// Runs `handle` unless this key already answered this request; saves a successful or final answer.
/// While `handle` runs, the key is the request's claim (`Ctx::idempotency_key`), so its send
/// reserves the key's message id.
pub async fn once<F: Future<Output = Outcome>>(
    ctx: &Ctx<'_>,
    tenant: &Tenant,
    key: Option<String>,
    body: &[u8],
    handle: F,
) -> Outcome {
    let Some(key) = key else { return handle.await };
    let app = tenant.app_id.as_str();
    let lease_ms = config(ctx.env, "IDEMPOTENCY_LEASE_MS").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_LEASE_MS);
    let fingerprint = fingerprint(&ctx.meta.path, body);
    let begin = IdempotencyBegin { key: key.clone(), fingerprint, now: now_ms(), lease_ms };
    match call(ctx.env, app, begin).await? {
        Decision::Replay(saved) => {
            let body: Value = serde_json::from_str(&saved.body).map_err(ApiError::internal)?;
            Ok(Reply::json(saved.status, body).replayed())
        }
        Decision::InFlight => Err(ApiError::IdempotencyInFlight),
        Decision::Mismatch => Err(ApiError::IdempotencyMismatch),
        Decision::Proceed => {
            *ctx.idempotency_key.borrow_mut() = Some(key.clone());
            let outcome = handle.await;
            let response = match &outcome {
                Ok(reply) => reply.saved(),
                // A refusal that stays true (WhatsApp refused the message) is replayed as given;
                // any other leaves the key free for a retry.
                Err(e) if e.is_final() => {
                    let (status, body) = dialect::error(Dialect::of_path(&ctx.meta.path), e, &ctx.meta);
                    Some(SavedResponse { status, body: body.to_string() })
                }
                Err(_) => None,
            };
            call(ctx.env, app, IdempotencyFinish { key, response }).await?;
            outcome
        }
    }
}

impl Reply {
    /// What a replay of this answer sends: successful JSON answers only.
    fn saved(&self) -> Option<SavedResponse> {
        match self.json_body() {
            Some(body) if (200..300).contains(&self.status) => {
                Some(SavedResponse { status: self.status, body: body.to_string() })
            }
            _ => None,
        }
    }
}
