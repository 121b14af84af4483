//! LoginWA dialect: devices and `messages/send`.

use serde_json::Value;
use wagate_contract::wire::Content;
use worker::Request;

use super::send::{self, Outgoing};
use super::{
    auth, autoreplies, broadcast, idempotency, ipwhitelist, json_body, linkpage, media, otp, raw_body, webhooks, Ctx,
    Outcome, Reply,
};
use crate::dialect::loginwa_devices;
use crate::dialect::routes::loginwa::{Keyed, LoginWa};
use crate::domain::error::{ApiError, Rule};
use crate::domain::ids::{random_hex, DeviceId};
use crate::domain::message::Priority;
use crate::domain::message::TEXT_MAX_CHARS;
use crate::domain::phone::Recipient;
use crate::domain::qr;
use crate::domain::scope;
use crate::domain::time::seconds_offset;
use crate::domain::validate::{json_object, Fields};
use crate::objects::call;
use crate::protocol::app::{AddDevice, DeviceEntry, ListDevices, Tenant};
use crate::protocol::device::{CreateDevice, DeleteDevice, Device, DeviceView, GetDevice, RefreshQr};
use crate::protocol::Operation;
use crate::runtime::now_ms;

pub async fn route(req: &mut Request, ctx: &Ctx<'_>, route: LoginWa<'_>) -> Outcome {
    let known = match route {
        LoginWa::Media { sha256 } => return media::download(ctx, sha256).await,
        LoginWa::Link { device, action } => return linkpage::route(req, ctx, device, action).await,
        LoginWa::Keyed(known) => known,
    };
    let tenant = auth::admit(req, ctx, known.access).await?;
    match known.route? {
        Keyed::Webhooks(route) => webhooks::route(req, ctx, &tenant, route).await,
        Keyed::AutoReplies(route) => autoreplies::route(req, ctx, &tenant, route).await,
        Keyed::Campaigns(route) => broadcast::campaigns(req, ctx, &tenant, route).await,
        Keyed::IpWhitelist(route) => ipwhitelist::route(req, ctx, &tenant, route).await,
        Keyed::OptOuts(route) => broadcast::opt_outs(req, ctx, &tenant, route).await,
        Keyed::AuthStart => otp::start(req, ctx, &tenant).await,
        Keyed::AuthVerify => otp::verify(req, ctx, &tenant).await,
        Keyed::ListDevices => list_devices(ctx, &tenant).await,
        Keyed::CreateDevice => create_device(req, ctx, &tenant).await,
        Keyed::GetDevice { id } => {
            let device = device(ctx, &tenant, id, GetDevice { app_id: tenant.app_id.clone() }).await?;
            Ok(Reply::json(200, loginwa_devices::device(&device, &seconds_offset)))
        }
        Keyed::DeleteDevice { id } => {
            device(ctx, &tenant, id, DeleteDevice { app_id: tenant.app_id.clone() }).await?;
            Ok(Reply::json(200, loginwa_devices::removed()))
        }
        Keyed::LinkToken { id } => {
            let device = device(ctx, &tenant, id, GetDevice { app_id: tenant.app_id.clone() }).await?;
            linkpage::issue(ctx, &tenant.app_id, &device).await
        }
        Keyed::RefreshQr { id } => {
            let refresh = RefreshQr { app_id: tenant.app_id.clone(), pair_phone: None };
            let device = device(ctx, &tenant, id, refresh).await?;
            Ok(Reply::json(202, pairing_json(ctx, &device)))
        }
        Keyed::DeviceQr { id, picture } => {
            let device = device(ctx, &tenant, id, GetDevice { app_id: tenant.app_id.clone() }).await?;
            let qr = device.qr.ok_or_else(|| ApiError::Conflict {
                message: format!("The device is {}; there is no QR code to scan", device.status.as_str()),
            })?;
            let unrenderable = |e: qr::QrError| ApiError::internal(e);
            Ok(if picture == "qr.svg" {
                Reply::bytes("image/svg+xml", qr::svg(&qr).map_err(unrenderable)?.into_bytes())
            } else {
                Reply::bytes("image/png", qr::png(&qr).map_err(unrenderable)?)
            })
        }
        Keyed::SendMessage => {
            let key = idempotency::key(req)?;
            let raw = raw_body(req).await?;
            idempotency::once(ctx, &tenant, key, &raw, send_message(&raw, ctx, &tenant)).await
        }
    }
}

async fn list_devices(ctx: &Ctx<'_>, tenant: &Tenant) -> Outcome {
    let devices: Vec<DeviceEntry> = call(ctx.env, tenant.app_id.as_str(), ListDevices {}).await?;
    let visible = devices.iter().filter(|d| scope::visible(tenant.device_scope.as_ref(), Some(&d.device_id)));
    Ok(Reply::json(200, loginwa_devices::devices(visible, &seconds_offset)))
}

async fn create_device(req: &mut Request, ctx: &Ctx<'_>, tenant: &Tenant) -> Outcome {
    let body = json_body(req).await?;
    let mut f = Fields::new(&body);
    let label = f.string("label", false, 0, 100);
    let pair_phone = f.phone_number("pair_phone", false, None);
    f.finish()?;
    let device_id = DeviceId::generate();
    let now = now_ms();
    let register = AddDevice { device_id: device_id.clone(), label: label.clone(), now };
    call(ctx.env, tenant.app_id.as_str(), register).await?;
    let create = CreateDevice { device_id: device_id.clone(), app_id: tenant.app_id.clone(), label, pair_phone, now };
    let device = call(ctx.env, device_id.as_str(), create).await?;
    Ok(Reply::json(202, pairing_json(ctx, &device)))
}

/// The answer to starting or refreshing a pairing, with a fresh job id.
fn pairing_json(ctx: &Ctx<'_>, device: &DeviceView) -> Value {
    loginwa_devices::pairing(device, &format!("job_{}", random_hex(8)), &ctx.origin)
}

/// Runs `op` on the device `id` of this tenant (a device-scoped key sees only its own device).
async fn device<O: Operation<Object = Device>>(
    ctx: &Ctx<'_>,
    tenant: &Tenant,
    id: &str,
    op: O,
) -> Result<O::Answer, ApiError> {
    let device_id = DeviceId::parse(id).ok_or_else(|| ApiError::not_found("device"))?;
    if !scope::visible(tenant.device_scope.as_ref(), Some(device_id.as_str())) {
        return Err(ApiError::not_found("device"));
    }
    call(ctx.env, device_id.as_str(), op).await
}

async fn send_message(raw: &[u8], ctx: &Ctx<'_>, tenant: &Tenant) -> Outcome {
    let body = json_object(raw)?;
    let mut f = Fields::new(&body);
    let phone = f.string("phone", true, 1, 64);
    let text = f.string("message", true, 1, TEXT_MAX_CHARS);
    let device_id = f.device_id("device_id");
    let meta = f.object("meta");
    let country_code = f.country_code("country_code");
    let recipient = phone.and_then(|p| {
        let is_jid = p.contains('@');
        let length = p.chars().count();
        // The reference bounds plain numbers at 10–20 characters; JIDs are wagate's addition.
        if !is_jid && !(10..=20).contains(&length) {
            f.fail("phone", Rule::Invalid { reason: "must be between 10 and 20 characters".into() });
            return None;
        }
        Recipient::parse_with_country_code(&p, country_code.as_ref(), &tenant.default_country_code)
            .map_err(|e| f.fail("phone", Rule::Invalid { reason: e.to_string() }))
            .ok()
    });
    f.finish()?;
    let (Some(recipient), Some(text)) = (recipient, text) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    let meta = meta.map(Value::Object);
    let out = Outgoing {
        recipient,
        content: Content::Text { text },
        device_id,
        meta,
        priority: Priority::Normal,
        code_expires_at: None,
    };
    let accepted = send::settle(ctx, tenant, send::accept(ctx, tenant, out).await?).await?;
    Ok(Reply::json(200, loginwa_devices::sent(&accepted.message, accepted.quota_remaining)))
}
