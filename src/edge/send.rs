//! The one send path under both dialects: pick the device and reserve quota in
//! the app's object, then queue the message in the device's object.

use serde_json::Value;
use wagate_contract::wire::Content;

use super::Ctx;
use crate::domain::error::ApiError;
use crate::domain::ids::{trace_id, DeviceId, MessageId};
use crate::domain::message::Priority;
use crate::domain::phone::Recipient;
use crate::domain::scope;
use crate::objects::app::{AppOp, Reservation, Tenant};
use crate::objects::device::{DeviceOp, MessageView, NewMessage};
use crate::objects::{call, APPS, DEVICES};
use crate::runtime::{month_of, now_ms};

pub struct Outgoing {
    pub recipient: Recipient,
    pub content: Content,
    /// Explicit sender; `None` lets the key's scope or auto-selection decide.
    pub device_id: Option<DeviceId>,
    pub meta: Option<Value>,
    pub priority: Priority,
    /// A one-time code: withheld from storage once sent.
    pub sensitive: bool,
}

pub struct Accepted {
    pub message: MessageView,
    pub quota_remaining: i64,
}

pub async fn accept(ctx: &Ctx<'_>, tenant: &Tenant, out: Outgoing) -> Result<Accepted, ApiError> {
    let reservation = reserve(ctx, tenant, out.device_id.clone()).await?;
    enqueue(ctx, tenant, reservation, out).await
}

/// Picks the device and reserves a unit of quota: everything that may refuse a send (plan,
/// quota, device scope, no device online), decided before any work is spent on its content.
pub async fn reserve(ctx: &Ctx<'_>, tenant: &Tenant, asked: Option<DeviceId>) -> Result<Reservation, ApiError> {
    let device_id = scope::device_for(tenant.device_scope.as_ref(), asked)?;
    let now = now_ms();
    let reserve = AppOp::ReserveSend { device_id, period: month_of(now), now };
    call(ctx.env, APPS, tenant.app_id.as_str(), &reserve).await
}

/// Queues `out` under `reservation` (whose device it goes from); the quota unit goes back if
/// the device's object refuses it.
pub async fn enqueue(
    ctx: &Ctx<'_>,
    tenant: &Tenant,
    reservation: Reservation,
    out: Outgoing,
) -> Result<Accepted, ApiError> {
    let message = NewMessage {
        message_id: reservation.message_id.clone(),
        app_id: tenant.app_id.clone(),
        recipient: out.recipient,
        content: out.content,
        trace_id: trace_id(),
        meta: out.meta,
        priority: out.priority,
        sensitive: out.sensitive,
        campaign: None,
        now: now_ms(),
    };
    let enqueue = DeviceOp::Enqueue { message };
    match call::<_, MessageView>(ctx.env, DEVICES, reservation.device_id.as_str(), &enqueue).await {
        Ok(message) => Ok(Accepted { message, quota_remaining: reservation.quota_remaining }),
        Err(e) => {
            release(ctx, tenant, reservation).await?;
            Err(e)
        }
    }
}

/// Gives a reservation's quota unit back: nothing was queued under it.
pub async fn release(ctx: &Ctx<'_>, tenant: &Tenant, reservation: Reservation) -> Result<(), ApiError> {
    let refund = AppOp::Refund { message_id: reservation.message_id };
    call::<_, Value>(ctx.env, APPS, tenant.app_id.as_str(), &refund).await.map(drop)
}

pub async fn lookup(ctx: &Ctx<'_>, tenant: &Tenant, id: &str) -> Result<MessageView, ApiError> {
    let message_id = MessageId::parse(id).ok_or_else(|| ApiError::not_found("message"))?;
    let device = message_id.device();
    if !scope::visible(tenant.device_scope.as_ref(), Some(device.as_str())) {
        return Err(ApiError::not_found("message"));
    }
    let op = DeviceOp::GetMessage { app_id: tenant.app_id.clone(), message_id };
    call(ctx.env, DEVICES, device.as_str(), &op).await
}
