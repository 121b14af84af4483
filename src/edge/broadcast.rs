//! LoginWA's broadcast API (`/api/v1/broadcast/campaigns…`, paths in CONTRACT.md) and wagate's
//! opt-out list (`/api/v1/opt-outs`). Every answer is wrapped in `{"success": true, "data": …}`.

use std::collections::HashSet;

use futures_util::future::join_all;
use serde_json::{Map, Value};
use wagate_contract::wire::{Content, MediaKind};
use worker::Request;

use super::media::{self, MediaInput};
use super::{date_time, json_body, Ctx, Outcome, Reply};
use crate::dialect::loginwa_campaigns;
use crate::dialect::routes::loginwa::{Campaigns, OptOuts};
use crate::domain::campaign::ContactFilter;
use crate::domain::error::{ApiError, FieldError, Rule};
use crate::domain::ids::{CampaignId, DeviceId};
use crate::domain::message::TEXT_MAX_CHARS;
use crate::domain::phone::Recipient;
use crate::domain::scope;
use crate::domain::template::Template;
use crate::domain::time::seconds_z;
use crate::domain::validate::Fields;
use crate::objects::call;
use crate::protocol::app::{AppView, DeviceEntry, Get, ListDevices, Tenant};
use crate::protocol::audience::{AddOptOut, IndexCampaign, ListCampaigns, ListOptOuts, RemoveOptOut, PAGE_SIZE};
use crate::protocol::campaign::{
    CampaignMedia, CampaignSpec, CampaignView, ContactSpec, CreateCampaign, DeleteCampaign, GetCampaign, ListContacts,
    PauseCampaign, ResumeCampaign, SendCampaign,
};
use crate::runtime::{iso, month_of, now_ms};

const MAX_CONTACTS: usize = 10_000;
/// How far ahead a campaign may be scheduled (alarms cannot be set arbitrarily far out).
const MAX_SCHEDULE_AHEAD_MS: u64 = 366 * 24 * 60 * 60 * 1000;
/// Per-contact errors listed in one answer; the rest would only repeat the pattern.
const MAX_CONTACT_ERRORS: usize = 20;

fn ok(status: u16, data: Value) -> Outcome {
    Ok(Reply::json(status, loginwa_campaigns::success(data)))
}

/// What a request does to one campaign.
enum Act {
    Get,
    Delete,
    Send,
    Pause,
    Resume,
    Contacts { status: Option<ContactFilter>, page: i64 },
}

pub async fn campaigns(req: &mut Request, ctx: &Ctx<'_>, tenant: &Tenant, route: Campaigns<'_>) -> Outcome {
    let (id, act) = match route {
        Campaigns::List => return list(ctx, tenant).await,
        Campaigns::Create => return create(req, ctx, tenant).await,
        Campaigns::Get { id } => (id, Act::Get),
        Campaigns::Delete { id } => (id, Act::Delete),
        Campaigns::Send { id } => (id, Act::Send),
        Campaigns::Pause { id } => (id, Act::Pause),
        Campaigns::Resume { id } => (id, Act::Resume),
        Campaigns::Contacts { id } => {
            #[derive(serde::Deserialize)]
            struct Query {
                status: Option<String>,
            }
            let query: Query = ctx.query()?;
            let status = match query.status.as_deref().map(ContactFilter::parse) {
                Some(None) => {
                    let reason = "must be one of sent, failed, pending".into();
                    return Err(ApiError::field("status", Rule::Invalid { reason }));
                }
                filter => filter.flatten(),
            };
            (id, Act::Contacts { status, page: ctx.page()? })
        }
    };
    let campaign_id = CampaignId::parse(id).ok_or_else(|| ApiError::not_found("campaign"))?;
    let (env, name, app_id, now) = (ctx.env, campaign_id.as_str(), tenant.app_id.clone(), now_ms());
    if tenant.device_scope.is_some() {
        // A scoped key acts only on campaigns sent from its one device.
        let view = call(env, name, GetCampaign { app_id: app_id.clone() }).await?;
        let sole = scope::sole_device(&view.device_ids).map(DeviceId::as_str);
        if !scope::visible(tenant.device_scope.as_ref(), sole) {
            return Err(ApiError::not_found("campaign"));
        }
    }
    let view = |view: &CampaignView| loginwa_campaigns::campaign(view, seconds_z);
    let data = match act {
        Act::Get => view(&call(env, name, GetCampaign { app_id }).await?),
        Act::Send => view(&call(env, name, SendCampaign { app_id, now }).await?),
        Act::Pause => view(&call(env, name, PauseCampaign { app_id, now }).await?),
        Act::Resume => view(&call(env, name, ResumeCampaign { app_id, now }).await?),
        Act::Delete => loginwa_campaigns::deleted(&call(env, name, DeleteCampaign { app_id }).await?),
        Act::Contacts { status, page } => {
            loginwa_campaigns::contacts(&call(env, name, ListContacts { app_id, status, page }).await?)
        }
    };
    ok(200, data)
}

async fn list(ctx: &Ctx<'_>, tenant: &Tenant) -> Outcome {
    let page = ctx.page()?;
    let index = ListCampaigns { page, scope: tenant.device_scope.clone() };
    let listed = call(ctx.env, tenant.app_id.as_str(), index).await?;
    let views =
        join_all(listed.ids.iter().map(|id| call(ctx.env, id.as_str(), GetCampaign { app_id: tenant.app_id.clone() })))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
    ok(200, loginwa_campaigns::campaigns(page, PAGE_SIZE, listed.total, &views, seconds_z))
}

struct Contacts {
    contacts: Vec<ContactSpec>,
    errors: Vec<FieldError>,
}

/// Normalised, deduplicated contacts (first occurrence wins), with per-contact errors named
/// by their index in the request.
fn contacts(body: &Map<String, Value>, default_country_code: &str) -> Contacts {
    let mut out = Contacts { contacts: vec![], errors: vec![] };
    let fail = |errors: &mut Vec<FieldError>, field: String, reason: String| {
        if errors.len() < MAX_CONTACT_ERRORS {
            errors.push(FieldError { field, rule: Rule::Invalid { reason } });
        }
    };
    let Some(list) = body.get("contacts").and_then(Value::as_array) else {
        let rule = if body.contains_key("contacts") { Rule::Type { expected: "array".into() } } else { Rule::Required };
        out.errors.push(FieldError { field: "contacts".into(), rule });
        return out;
    };
    if list.is_empty() || list.len() > MAX_CONTACTS {
        let reason = format!("must list 1 to {MAX_CONTACTS} contacts");
        out.errors.push(FieldError { field: "contacts".into(), rule: Rule::Invalid { reason } });
        return out;
    }
    let mut seen = HashSet::new();
    for (i, item) in list.iter().enumerate() {
        let Some(contact) = item.as_object() else {
            fail(&mut out.errors, format!("contacts.{i}"), "must be an object".into());
            continue;
        };
        let phone =
            match contact.get("phone").and_then(Value::as_str).map(|p| Recipient::parse(p, Some(default_country_code)))
            {
                Some(Ok(Recipient::Phone(digits))) => digits,
                Some(Ok(Recipient::Group(_))) => {
                    fail(&mut out.errors, format!("contacts.{i}.phone"), "must be a phone number, not a group".into());
                    continue;
                }
                Some(Err(e)) => {
                    fail(&mut out.errors, format!("contacts.{i}.phone"), e.to_string());
                    continue;
                }
                None => {
                    fail(&mut out.errors, format!("contacts.{i}.phone"), "is required and must be a string".into());
                    continue;
                }
            };
        let name = match contact.get("name").filter(|v| !v.is_null()) {
            None => None,
            Some(Value::String(name)) if name.chars().count() <= 100 => Some(name.trim().to_owned()),
            Some(_) => {
                fail(
                    &mut out.errors,
                    format!("contacts.{i}.name"),
                    "must be a string of at most 100 characters".into(),
                );
                continue;
            }
        };
        let variables = match contact.get("variables").filter(|v| !v.is_null()) {
            None => Map::new(),
            Some(Value::Object(vars)) if vars.values().all(|v| v.is_string() || v.is_number()) => vars.clone(),
            Some(_) => {
                fail(
                    &mut out.errors,
                    format!("contacts.{i}.variables"),
                    "must be an object of texts and numbers".into(),
                );
                continue;
            }
        };
        if seen.insert(phone.clone()) {
            out.contacts.push(ContactSpec { phone, name, variables });
        }
    }
    out
}

/// Every placeholder must have a value for every contact: a gap is refused now rather than
/// sent as a blank (or a literal `{city}`) to a customer.
fn check_template(message: &str, contacts: &[ContactSpec], errors: &mut Vec<FieldError>) {
    let known: HashSet<&str> = ["name", "phone"]
        .into_iter()
        .chain(contacts.iter().flat_map(|c| c.variables.keys().map(String::as_str)))
        .collect();
    let template = match Template::parse(message, |name| known.contains(name)) {
        Ok(template) => template,
        Err(e) => {
            errors.push(FieldError { field: "message".into(), rule: Rule::Invalid { reason: e.to_string() } });
            return;
        }
    };
    let used: Vec<&str> = template.variables().collect();
    let mut missing = 0;
    for (i, contact) in contacts.iter().enumerate() {
        let gap = used.iter().find(|name| match **name {
            "name" => contact.name.as_deref().is_none_or(str::is_empty),
            "phone" => false,
            other => !contact.variables.contains_key(other),
        });
        if let Some(name) = gap {
            missing += 1;
            if missing <= MAX_CONTACT_ERRORS {
                let reason = format!("has no value for {{{name}}}, which the message uses");
                errors.push(FieldError { field: format!("contacts.{i}"), rule: Rule::Invalid { reason } });
            }
        }
    }
}

async fn create(req: &mut Request, ctx: &Ctx<'_>, tenant: &Tenant) -> Outcome {
    let body = json_body(req).await?;
    let now = now_ms();
    let mut f = Fields::new(&body);
    let name = f.string("name", true, 1, 255);
    let message = f.string("message", true, 1, TEXT_MAX_CHARS);
    let media_url = f.string("media_url", false, 1, 2048);
    let media_source = media_url
        .as_deref()
        .and_then(|url| media::source(ctx, url).map_err(|e| f.fail("media_url", Rule::Invalid { reason: e.0 })).ok());
    let media_type = f.string("media_type", media_url.is_some(), 1, 16);
    let kind = media_type.as_deref().and_then(|t| {
        let kind = [MediaKind::Image, MediaKind::Video, MediaKind::Document, MediaKind::Audio]
            .into_iter()
            .find(|k| k.as_str() == t);
        if kind.is_none() {
            f.fail("media_type", Rule::Invalid { reason: "must be one of image, video, document, audio".into() });
        }
        kind
    });
    let delay_seconds = f.integer("delay_seconds", 1, 60).unwrap_or(5) as u32;
    let schedule_at = date_time(&mut f, "schedule_at", false);
    if schedule_at.is_some_and(|at| at <= now || at > now + MAX_SCHEDULE_AHEAD_MS) {
        f.fail("schedule_at", Rule::Invalid { reason: "must be in the future, within a year".into() });
    }
    let device_ids = scope::devices_for(tenant.device_scope.as_ref(), device_ids(&mut f, &body).unwrap_or_default())?;
    let mut listed = contacts(&body, &tenant.default_country_code);
    if let Some(message) = &message {
        check_template(message, &listed.contacts, &mut listed.errors);
    }
    if !device_ids.is_empty() {
        let devices: Vec<DeviceEntry> = call(ctx.env, tenant.app_id.as_str(), ListDevices {}).await?;
        let own: HashSet<&str> = devices.iter().map(|d| d.device_id.as_str()).collect();
        if let Some(stranger) = device_ids.iter().find(|d| !own.contains(d.as_str())) {
            f.fail(
                "device_ids",
                Rule::Invalid { reason: format!("names {stranger}, which is not a device of this app") },
            );
        }
    }
    let mut result = f.finish();
    if !listed.errors.is_empty() {
        let mut errors = match result {
            Err(ApiError::Validation { errors }) => errors,
            _ => vec![],
        };
        errors.append(&mut listed.errors);
        result = Err(ApiError::Validation { errors });
    }
    result?;
    let (Some(name), Some(message)) = (name, message) else {
        return Err(ApiError::internal("validated fields missing"));
    };

    let period = month_of(now);
    let app: AppView = call(ctx.env, tenant.app_id.as_str(), Get { period }).await?;
    let required = listed.contacts.len() as i64;
    if required > app.quota_remaining {
        return Err(ApiError::QuotaInsufficient { required, remaining: app.quota_remaining });
    }
    // Fetched and checked once for the whole campaign, not per contact.
    let media = match (media_source, kind) {
        (Some(source), Some(kind)) => {
            let input = MediaInput { kind, caption: None, file_name: None, mime_type: None };
            match media::prepare(ctx, input, source).await? {
                Content::Media { kind, media, .. } => Some(CampaignMedia { kind, media }),
                _ => return Err(ApiError::internal("media preparation returned no media")),
            }
        }
        _ => None,
    };
    let campaign_id = CampaignId::generate();
    let spec = CampaignSpec {
        campaign_id: campaign_id.clone(),
        app_id: tenant.app_id.clone(),
        name,
        message,
        media,
        delay_seconds,
        schedule_at,
        device_ids: device_ids.clone(),
        contacts: listed.contacts,
        now,
    };
    let view = call(ctx.env, campaign_id.as_str(), CreateCampaign { spec }).await?;
    let device_id = scope::sole_device(&device_ids).cloned();
    call(ctx.env, tenant.app_id.as_str(), IndexCampaign { campaign_id, device_id, now }).await?;
    ok(201, loginwa_campaigns::campaign(&view, seconds_z))
}

fn device_ids(f: &mut Fields<'_>, body: &Map<String, Value>) -> Option<Vec<DeviceId>> {
    let value = body.get("device_ids").filter(|v| !v.is_null())?;
    let ids: Option<Vec<DeviceId>> =
        value.as_array().and_then(|list| list.iter().map(|v| v.as_str().and_then(DeviceId::parse)).collect());
    if ids.is_none() {
        f.fail("device_ids", Rule::Invalid { reason: "must be a list of device ids".into() });
    }
    // One entry per number, in the order given.
    ids.map(|ids| {
        let mut seen = HashSet::new();
        ids.into_iter().filter(|id| seen.insert(id.to_string())).collect()
    })
}

/// `GET/POST /api/v1/opt-outs`, `DELETE /api/v1/opt-outs/{phone}`.
pub async fn opt_outs(req: &mut Request, ctx: &Ctx<'_>, tenant: &Tenant, route: OptOuts<'_>) -> Outcome {
    let (env, app) = (ctx.env, tenant.app_id.as_str());
    match route {
        OptOuts::List => ok(200, loginwa_campaigns::opt_outs(&call(env, app, ListOptOuts {}).await?, iso)),
        OptOuts::Add => {
            let body = json_body(req).await?;
            let mut f = Fields::new(&body);
            let phone = f.phone_number("phone", true, Some(&tenant.default_country_code));
            f.finish()?;
            let phone = phone.ok_or_else(|| ApiError::internal("validated fields missing"))?;
            let phone = call(env, app, AddOptOut { phone, now: now_ms() }).await?;
            ok(201, loginwa_campaigns::opted_out(&phone))
        }
        OptOuts::Remove { phone } => {
            let phone = match Recipient::parse(phone, Some(&tenant.default_country_code)) {
                Ok(Recipient::Phone(digits)) => digits,
                _ => return Err(ApiError::not_found("opt-out")),
            };
            call(env, app, RemoveOptOut { phone }).await?;
            ok(200, loginwa_campaigns::opt_in())
        }
    }
}
