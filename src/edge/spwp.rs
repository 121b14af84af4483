//! SPWP dialect: `/api/v1/public/messages/…`, answers wrapped in `{data, meta}`.

use serde_json::Value;
use wagate_contract::wire::{check_path, error_code, CheckRequest, CheckResponse, Content, MediaKind};
use worker::Request;

use super::media::{self, MediaInput};
use super::send::{self, Outgoing};
use super::{auth, idempotency, json_body, raw_body, Ctx, Outcome, Reply};
use crate::bridge::{Bridge, CallError};
use crate::dialect::routes::spwp::Spwp;
use crate::dialect::routes::Known;
use crate::dialect::spwp::{envelope, message, phone_check, MessageFields, PhoneCheck};
use crate::domain::error::{ApiError, Rule};
use crate::domain::ids::DeviceId;
use crate::domain::media::Source;
use crate::domain::message::Priority;
use crate::domain::message::TEXT_MAX_CHARS;
use crate::domain::phone::Recipient;
use crate::domain::scope;
use crate::domain::validate::{json_object, Fields};
use crate::objects::call;
use crate::protocol::app::{PickDevice, Tenant};
use crate::protocol::device::MessageView;
use crate::runtime::iso;

const CAPTION_MAX_CHARS: usize = 1024;
/// A data URL of the largest file (16 MB) is about 22 million characters of base64.
const SOURCE_MAX_CHARS: usize = 23_000_000;

pub async fn route(req: &mut Request, ctx: &Ctx<'_>, known: Known<Spwp<'_>>) -> Outcome {
    let tenant = auth::admit(req, ctx, known.access).await?;
    match known.route? {
        Spwp::CheckPhone => check_phone(req, ctx, &tenant).await,
        Spwp::Send { kind } | Spwp::SendMedia { kind } => {
            let key = idempotency::key(req)?;
            let raw = raw_body(req).await?;
            idempotency::once(ctx, &tenant, key, &raw, send_message(&raw, ctx, &tenant, kind)).await
        }
        Spwp::Status { id } => {
            let message = send::lookup(ctx, &tenant, id).await?;
            Ok(Reply::json(200, envelope(render(&message), &ctx.meta)))
        }
    }
}

/// What a send request carries once validated; media still has to be fetched.
enum Body {
    Ready(Content),
    Media(MediaInput, Source),
}

fn recipient(f: &mut Fields<'_>, field: &str, tenant: &Tenant) -> Option<Recipient> {
    let raw = f.string(field, true, 1, 64)?;
    Recipient::parse(&raw, Some(&tenant.default_country_code))
        .map_err(|e| f.fail(field, Rule::Invalid { reason: e.to_string() }))
        .ok()
}

async fn send_message(raw: &[u8], ctx: &Ctx<'_>, tenant: &Tenant, kind: &str) -> Outcome {
    let body = json_object(raw)?;
    let mut f = Fields::new(&body);
    let recipient = recipient(&mut f, "to", tenant);
    let content = match kind {
        "text" => f.string("text", true, 1, TEXT_MAX_CHARS).map(|text| Body::Ready(Content::Text { text })),
        "location" => {
            let latitude = f.number("latitude", true, -90.0, 90.0);
            let longitude = f.number("longitude", true, -180.0, 180.0);
            let name = f.string("name", false, 0, 256);
            let address = f.string("address", false, 0, 512);
            latitude
                .zip(longitude)
                .map(|(latitude, longitude)| Body::Ready(Content::Location { latitude, longitude, name, address }))
        }
        media => {
            let kind = match media {
                "image" => MediaKind::Image,
                "video" => MediaKind::Video,
                "audio" => MediaKind::Audio,
                _ => MediaKind::Document,
            };
            let source = f.string("source", true, 1, SOURCE_MAX_CHARS).and_then(|source| {
                media::source(ctx, &source).map_err(|e| f.fail("source", Rule::Invalid { reason: e.0 })).ok()
            });
            let caption = f.string("caption", false, 0, CAPTION_MAX_CHARS);
            let file_name = f.string("fileName", false, 1, 255);
            let mime_type = f.string("mimeType", false, 3, 255);
            source.map(|source| Body::Media(MediaInput { kind, caption, file_name, mime_type }, source))
        }
    };
    f.finish()?;
    let (Some(recipient), Some(content)) = (recipient, content) else {
        return Err(ApiError::internal("validated fields missing"));
    };
    // Reserved before any media is fetched or uploaded: a key that may not send costs nothing.
    let reservation = send::reserve(ctx, tenant, None).await?;
    let content = match content {
        Body::Ready(content) => content,
        Body::Media(input, source) => match media::prepare(ctx, input, source).await {
            Ok(content) => content,
            Err(e) => {
                send::release(ctx, tenant, reservation).await?;
                return Err(e);
            }
        },
    };
    let out =
        Outgoing { recipient, content, device_id: None, meta: None, priority: Priority::Normal, code_expires_at: None };
    let accepted = send::enqueue(ctx, tenant, reservation, out).await?;
    Ok(Reply::json(202, envelope(render(&accepted.message), &ctx.meta)))
}

async fn check_phone(req: &mut Request, ctx: &Ctx<'_>, tenant: &Tenant) -> Outcome {
    let body = json_body(req).await?;
    let mut f = Fields::new(&body);
    let phone = f.phone_number("phone", true, Some(&tenant.default_country_code));
    f.finish()?;
    let phone = phone.ok_or_else(|| ApiError::internal("validated fields missing"))?;
    // The reference answers an offline account in the body rather than with an error.
    let not_connected = || Ok(Reply::json(200, envelope(phone_check(&phone, PhoneCheck::NotConnected), &ctx.meta)));
    let pick = PickDevice { device_id: scope::device_for(tenant.device_scope.as_ref(), None)? };
    let device: DeviceId = match call(ctx.env, tenant.app_id.as_str(), pick).await {
        Ok(device) => device,
        Err(ApiError::NoDeviceAvailable | ApiError::DeviceNotConnected) => return not_connected(),
        Err(e) => return Err(e),
    };
    let request = CheckRequest { phones: vec![phone.clone()] };
    let checked: CheckResponse = match Bridge::from_env(ctx.env)?.post(&check_path(device.as_str()), &request).await {
        Ok(checked) => checked,
        Err(CallError::Refused { error, .. }) if error.code == error_code::DEVICE_OFFLINE => return not_connected(),
        Err(e) => return Err(e.into()),
    };
    let result = checked.results.into_iter().find(|r| r.phone == phone);
    let found = match result {
        Some(r) => PhoneCheck::Checked { exists: r.exists, jid: r.jid },
        None => PhoneCheck::Checked { exists: false, jid: None },
    };
    Ok(Reply::json(200, envelope(phone_check(&phone, found), &ctx.meta)))
}

fn render(m: &MessageView) -> Value {
    let times = [
        ("createdAt", Some(m.created_at)),
        ("sentAt", m.sent_at),
        ("deliveredAt", m.delivered_at),
        ("readAt", m.read_at),
        ("failedAt", m.failed_at),
    ];
    let fields = MessageFields {
        id: &m.id,
        device_id: &m.device_id,
        direction: m.direction,
        recipient: &m.recipient,
        participant: m.participant.as_deref(),
        content: &m.content,
        status: m.status,
        external_id: m.external_id.as_deref(),
        error_code: m.error_code.as_deref(),
        error_reason: m.error_reason.as_deref(),
    };
    message(fields, times.into_iter().filter_map(|(k, t)| t.map(|t| (k, iso(t)))))
}
