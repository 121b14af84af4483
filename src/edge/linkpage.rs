//! Linking a WhatsApp number without handing out the API key: the app asks for a short-lived
//! signed token (`POST /api/v1/devices/{id}/link-token`), and the page at `/link/{id}?token=…`
//! (a static asset) polls `/api/v1/link/{id}` with it for the QR, a pair code, and the moment
//! the number is connected.

use worker::Request;

use super::{json_body, Ctx, Outcome, Reply};
use crate::dialect::loginwa_devices;
use crate::dialect::routes::loginwa::LinkAction;
use crate::dialect::routes::RouteError;
use crate::domain::error::ApiError;
use crate::domain::ids::{AppId, DeviceId};
use crate::domain::links;
use crate::domain::qr;
use crate::domain::validate::Fields;
use crate::objects::call;
use crate::protocol::device::{DeviceView, GetDevice, RefreshQr};
use crate::runtime::{config, iso, now_ms, required_config};

fn key(ctx: &Ctx<'_>) -> Result<String, ApiError> {
    required_config(ctx.env, "WEBHOOK_KEY")
}

/// `POST /api/v1/devices/{id}/link-token`, for a device the tenant has been shown to own.
pub async fn issue(ctx: &Ctx<'_>, app_id: &AppId, device: &DeviceView) -> Outcome {
    let device_id =
        DeviceId::parse(&device.device_id).ok_or_else(|| ApiError::internal("stored device id is malformed"))?;
    let ttl = config(ctx.env, "LINK_PAGE_TTL_S").and_then(|v| v.parse().ok()).unwrap_or(links::LINK_PAGE_TTL_S);
    let expires = now_ms() / 1000 + ttl;
    let token = links::device_token(key(ctx)?.as_bytes(), app_id, &device_id, expires);
    let url = format!("{}/link/{device_id}?token={token}", ctx.origin);
    let body = loginwa_devices::link_issued(device_id.as_str(), &token, &url, &iso(expires * 1000));
    Ok(Reply::json(201, body))
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    token: String,
}

/// `/api/v1/link/{id}…`: what the page may do with its token, and nothing else.
/// The link is the credential: the device and its token are checked before the method.
pub async fn route(req: &mut Request, ctx: &Ctx<'_>, id: &str, action: Result<LinkAction, RouteError>) -> Outcome {
    let device_id = DeviceId::parse(id).ok_or_else(|| ApiError::not_found("device"))?;
    let token = ctx.query::<TokenQuery>()?.token;
    let app_id = links::verify_device_token(key(ctx)?.as_bytes(), &device_id, &token, now_ms() / 1000)
        .map_err(|e| ApiError::Forbidden { code: "invalid_link".into(), message: e.to_string() })?;
    let get = || GetDevice { app_id: app_id.clone() };
    match action? {
        LinkAction::Page => {
            let device = call(ctx.env, device_id.as_str(), get()).await?;
            Ok(Reply::json(200, loginwa_devices::link_page(&device)))
        }
        LinkAction::Qr => {
            let device = call(ctx.env, device_id.as_str(), get()).await?;
            let qr =
                device.qr.ok_or_else(|| ApiError::Conflict { message: "There is no QR code to scan now".into() })?;
            Ok(Reply::bytes("image/svg+xml", qr::svg(&qr).map_err(ApiError::internal)?.into_bytes()))
        }
        LinkAction::PairCode => {
            let body = json_body(req).await?;
            let mut f = Fields::new(&body);
            let phone = f.phone_number("phone", true, None);
            f.finish()?;
            let refresh = RefreshQr { app_id, pair_phone: phone };
            let device = call(ctx.env, device_id.as_str(), refresh).await?;
            Ok(Reply::json(200, loginwa_devices::link_page(&device)))
        }
    }
}
