//! The one send path under both dialects: pick the device and reserve quota in
//! the app's object, then queue the message in the device's object.

use serde_json::Value;
use wagate_contract::wire::Content;

use std::time::Duration;

use worker::Delay;

use super::fault::Fault;
use super::Ctx;
use crate::domain::error::ApiError;
use crate::domain::ids::{trace_id, DeviceId, MessageId};
use crate::domain::message::{send_wait_ms, MessageStatus, Priority};
use crate::domain::phone::Recipient;
use crate::domain::scope;
use crate::objects::call;
use crate::protocol::app::{Refund, Reservation, ReserveSend, Tenant};
use crate::protocol::device::{AwaitOutcome, Enqueue, GetMessage, MessageView, NewMessage, Withdraw};
use crate::runtime::{config, month_of, now_ms};

pub struct Outgoing {
    pub recipient: Recipient,
    pub content: Content,
    /// Explicit sender; `None` lets the key's scope or auto-selection decide.
    pub device_id: Option<DeviceId>,
    pub meta: Option<Value>,
    pub priority: Priority,
    /// A one-time code valid until then: withheld from storage once sent, never sent later.
    pub code_expires_at: Option<u64>,
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
/// Under an `Idempotency-Key` the reservation is bound to the key, so a retry gets the same id.
pub async fn reserve(ctx: &Ctx<'_>, tenant: &Tenant, asked: Option<DeviceId>) -> Result<Reservation, ApiError> {
    let device_id = scope::device_for(tenant.device_scope.as_ref(), asked)?;
    let now = now_ms();
    let idempotency_key = ctx.idempotency_key.borrow().clone();
    let reserve = ReserveSend { device_id, period: month_of(now), now, idempotency_key };
    call(ctx.env, tenant.app_id.as_str(), reserve).await
}

/// Queues `out` under `reservation` (whose device it goes from); the quota unit goes back only
/// if the device's object confirms it holds nothing under the reservation's id.
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
        code_expires_at: out.code_expires_at,
        campaign: None,
        now: now_ms(),
    };
    if let Fault::DelayEnqueue { ms } = ctx.fault {
        Delay::from(Duration::from_millis(ms)).await;
    }
    let device = reservation.device_id.as_str();
    let mut enqueued = call(ctx.env, device, Enqueue { message }).await;
    if enqueued.is_ok() && matches!(ctx.fault, Fault::EnqueueAnswerLost | Fault::DeviceLostAfterEnqueue) {
        enqueued = Err(ApiError::internal("injected fault: the device's answer was lost"));
    }
    let accepted = |message| Accepted { message, quota_remaining: reservation.quota_remaining };
    let Err(e) = enqueued else { return enqueued.map(accepted) };
    // The device may have stored the message before its answer went missing: only its word that
    // it holds nothing gives the unit back. Without that word the charge stays, and a retry under
    // the same Idempotency-Key re-drives this message id, which the queue takes once.
    let withdraw = Withdraw { app_id: tenant.app_id.clone(), message_id: reservation.message_id.clone() };
    let held = match ctx.fault {
        Fault::DeviceLostAfterEnqueue => Err(ApiError::internal("injected fault: the device is unreachable")),
        _ => call(ctx.env, device, withdraw).await,
    };
    match held {
        Ok(Some(message)) => Ok(accepted(message)),
        Ok(None) => {
            release(ctx, tenant, reservation).await?;
            Err(e)
        }
        Err(unknown) => {
            worker::console_warn!("send {} left charged, its device unreachable: {unknown}", reservation.message_id);
            Err(e)
        }
    }
}

/// LoginWA's answer to a send is WhatsApp's: 200 once it took the message, 502 `send_failed`
/// when it refused it (the reference). So a LoginWA send waits, up to `SEND_WAIT_MS`, for the
/// device's object to learn the outcome of this one message (the bridge's answer to the send, or
/// its event). A message still waiting at the bound, or while its device is offline, is answered
/// as queued and carries on, its outcome told by webhooks; so is one whose object cannot be asked
/// (an object of an older release, or one that restarted): the send was accepted, never a 500.
/// Asking the object to hold the request costs one round trip, where polling `GetMessage` would
/// cost one per poll and answer up to a poll interval late.
pub async fn settle(ctx: &Ctx<'_>, tenant: &Tenant, accepted: Accepted) -> Result<Accepted, ApiError> {
    let within_ms = send_wait_ms(config(ctx.env, "SEND_WAIT_MS").as_deref()).unwrap_or_else(|e| {
        worker::console_warn!("{e}; waiting the default instead");
        crate::domain::message::DEFAULT_SEND_WAIT_MS
    });
    let Some(message_id) = MessageId::parse(&accepted.message.id).filter(|_| within_ms > 0) else {
        return Ok(accepted);
    };
    let device = message_id.device();
    let op = AwaitOutcome { app_id: tenant.app_id.clone(), message_id, within_ms };
    let message = match call(ctx.env, device.as_str(), op).await {
        Ok(message) => message,
        Err(e) => {
            worker::console_warn!("answering {} as queued, its outcome unknown: {e}", accepted.message.id);
            return Ok(accepted);
        }
    };
    if message.status == MessageStatus::Failed {
        let MessageView { id, error_code, error_reason, .. } = message;
        return Err(ApiError::SendFailed { message_id: id, error_code, error_reason });
    }
    Ok(Accepted { message, ..accepted })
}

/// Gives a reservation's quota unit back: nothing was queued under it (a key bound to it lets go).
pub async fn release(ctx: &Ctx<'_>, tenant: &Tenant, reservation: Reservation) -> Result<(), ApiError> {
    let refund = Refund { message_id: reservation.message_id };
    call(ctx.env, tenant.app_id.as_str(), refund).await
}

pub async fn lookup(ctx: &Ctx<'_>, tenant: &Tenant, id: &str) -> Result<MessageView, ApiError> {
    let message_id = MessageId::parse(id).ok_or_else(|| ApiError::not_found("message"))?;
    let device = message_id.device();
    if !scope::visible(tenant.device_scope.as_ref(), Some(device.as_str())) {
        return Err(ApiError::not_found("message"));
    }
    let op = GetMessage { app_id: tenant.app_id.clone(), message_id };
    call(ctx.env, device.as_str(), op).await
}
