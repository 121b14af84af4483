//! SPWP dialect: `/api/v1/public/messages/…`, answers wrapped in `{data, meta}`.

use serde_json::Value;
use wagate_contract::wire::Content;
use worker::{Method, Request};

use super::send::{self, Outgoing};
use super::{auth, json_body, Ctx, Outcome, Reply};
use crate::dialect::spwp::{envelope, message, MessageFields};
use crate::domain::error::{ApiError, Rule};
use crate::domain::message::TEXT_MAX_CHARS;
use crate::domain::phone::Recipient;
use crate::domain::validate::Fields;
use crate::objects::device::MessageView;
use crate::runtime::iso;

pub async fn route(req: &mut Request, ctx: &Ctx<'_>, method: &Method, rest: &[&str]) -> Outcome {
    if !matches!(rest, ["messages", _]) {
        return Err(ApiError::RouteNotFound);
    }
    let tenant = auth::tenant(req, ctx).await?;
    match (rest, method) {
        (["messages", "text"], Method::Post) => {
            let body = json_body(req).await?;
            let mut f = Fields::new(&body);
            let to = f.string("to", true, 1, 64);
            let text = f.string("text", true, 1, TEXT_MAX_CHARS);
            let recipient = to.and_then(|to| {
                Recipient::parse(&to, Some(&tenant.default_country_code))
                    .map_err(|e| f.fail("to", Rule::Invalid { reason: e.to_string() }))
                    .ok()
            });
            f.finish()?;
            let (Some(recipient), Some(text)) = (recipient, text) else {
                return Err(ApiError::internal("validated fields missing"));
            };
            let out = Outgoing { recipient, content: Content::Text { text }, device_id: None, meta: None };
            let accepted = send::accept(ctx, &tenant, out).await?;
            Ok(Reply::json(202, envelope(render(&accepted.message), &ctx.meta)))
        }
        (["messages", "text"], _) => Err(ApiError::MethodNotAllowed),
        (["messages", id], Method::Get) => {
            let message = send::lookup(ctx, &tenant, id).await?;
            Ok(Reply::json(200, envelope(render(&message), &ctx.meta)))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
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
        recipient: &m.recipient,
        content: &m.content,
        status: m.status,
        external_id: m.external_id.as_deref(),
        error_code: m.error_code.as_deref(),
        error_reason: m.error_reason.as_deref(),
    };
    message(fields, times.into_iter().filter_map(|(k, t)| t.map(|t| (k, iso(t)))))
}
