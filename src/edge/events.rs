//! Events the bridge posts back: verified, then applied by the device's object.

use serde_json::json;
use wagate_contract::signing::{Presented, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use wagate_contract::wire::{BridgeEvent, EVENTS_PATH};
use worker::Request;

use super::{raw_body, Ctx, Outcome, Reply};
use crate::domain::error::ApiError;
use crate::domain::ids::DeviceId;
use crate::objects::call;
use crate::protocol::device::ApplyEvent;
use crate::runtime::{now_ms, required_config};

/// Unsigned or stale posts are refused from their headers alone, before the body is read; the
/// body (capped like any other) is read only to check its signature, and parsed only after.
pub async fn receive(req: &mut Request, ctx: &Ctx<'_>) -> Outcome {
    let secret = required_config(ctx.env, "BRIDGE_SECRET")?;
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let (timestamp, signature) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER));
    let presented = Presented::read(timestamp.as_deref(), signature.as_deref(), now_ms() / 1000)
        .map_err(|_| ApiError::Unauthorized)?;
    let body = raw_body(req).await?;
    presented.verify(secret.as_bytes(), "POST", EVENTS_PATH, &body).map_err(|_| ApiError::Unauthorized)?;
    let event: BridgeEvent = serde_json::from_slice(&body).map_err(|_| ApiError::MalformedJson)?;
    // An event for a device we never created is acknowledged, or the bridge would retry it forever.
    let Some(device_id) = DeviceId::parse(&event.device_id) else {
        return Ok(Reply::json(202, json!({"status": "ignored"})));
    };
    call(ctx.env, device_id.as_str(), ApplyEvent { event, origin: ctx.origin.clone() }).await?;
    Ok(Reply::json(200, json!({"status": "applied"})))
}
