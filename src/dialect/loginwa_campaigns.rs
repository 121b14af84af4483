//! LoginWA's broadcast answers (`/api/v1/broadcast/campaigns…`): `{"success": true, "data": …}`
//! around a campaign, a page of campaigns or contacts, or a deletion. Progress is worded as in
//! the campaign events (`ProgressReport`).

use serde_json::{json, Value};

use crate::domain::campaign::{estimated_duration_secs, humanize_secs};
use crate::domain::events::ProgressReport;
use crate::domain::paging;
use crate::protocol::audience::OptOut;
use crate::protocol::campaign::{CampaignView, ContactPage, Deleted, CONTACTS_PAGE};

/// Every broadcast answer, errors aside.
pub fn success(data: Value) -> Value {
    json!({"success": true, "data": data})
}

pub fn campaign(c: &CampaignView, iso: impl Fn(u64) -> String) -> Value {
    let media = c.media.as_ref().map(|m| {
        json!({"type": m.kind.as_str(), "mime_type": m.media.mime_type, "sha256": m.media.sha256, "size": m.media.size})
    });
    json!({
        "id": c.id, "name": c.name, "status": c.status.as_str(), "pause_reason": c.pause_reason,
        "waiting": c.waiting.as_ref().map(|w| json!({"reason": w.reason, "until": iso(w.until)})),
        "total_contacts": c.total_contacts,
        "progress": ProgressReport::from(c.progress),
        "delay_seconds": c.delay_seconds,
        "estimated_duration": humanize_secs(estimated_duration_secs(c.total_contacts as usize, c.delay_seconds)),
        "schedule_at": c.schedule_at.map(&iso),
        "media": media,
        "device_ids": c.device_ids,
        "created_at": iso(c.created_at), "started_at": c.started_at.map(&iso), "completed_at": c.completed_at.map(&iso),
    })
}

/// One page of the app's campaigns, `per_page` to a page.
pub fn campaigns(page: i64, per_page: i64, total: i64, views: &[CampaignView], iso: impl Fn(u64) -> String) -> Value {
    paged(page, per_page, total, views.iter().map(|v| campaign(v, &iso)).collect())
}

pub fn contacts(p: &ContactPage) -> Value {
    let data = p
        .contacts
        .iter()
        .map(|c| {
            json!({"index": c.index, "phone": c.phone, "name": c.name, "text": c.text,
                   "status": c.status.shown().as_str(),
                   "message_id": c.message_id, "device_id": c.device_id, "error": c.error_code})
        })
        .collect();
    paged(p.page, CONTACTS_PAGE, p.total, data)
}

pub fn deleted(d: &Deleted) -> Value {
    json!({"id": d.id, "deleted": true})
}

/// The app's opt-out list (`/api/v1/opt-outs`), newest first.
pub fn opt_outs(list: &[OptOut], iso: impl Fn(u64) -> String) -> Value {
    let shown: Vec<Value> =
        list.iter().map(|o| json!({"phone": o.phone, "source": o.source, "created_at": iso(o.created_at)})).collect();
    json!({"opt_outs": shown, "count": shown.len()})
}

pub fn opted_out(phone: &str) -> Value {
    json!({"phone": phone})
}

/// A removal from the opt-out list.
pub fn opt_in() -> Value {
    json!({"success": true})
}

/// Laravel's paginator, as the reference pages its lists.
fn paged(page: i64, per_page: i64, total: i64, data: Vec<Value>) -> Value {
    json!({
        "current_page": page, "data": data, "per_page": per_page, "total": total,
        "last_page": paging::last_page(total, per_page),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::campaign::{CampaignStatus, ContactStatus, Progress};
    use crate::domain::ids::{CampaignId, DeviceId};
    use crate::protocol::campaign::{CampaignMedia, ContactView, Waiting};
    use wagate_contract::wire::{MediaKind, MediaRef};

    fn iso(ms: u64) -> String {
        format!("t{ms}")
    }

    fn view() -> CampaignView {
        CampaignView {
            id: CampaignId::parse("camp_0123456789abcdef").unwrap(),
            name: "Summer Sale 2026".into(),
            status: CampaignStatus::Draft,
            pause_reason: None,
            waiting: None,
            total_contacts: 3,
            progress: Progress { total: 3, pending: 3, ..Progress::default() },
            delay_seconds: 5,
            schedule_at: None,
            media: None,
            device_ids: vec![],
            created_at: 1_000,
            started_at: None,
            completed_at: None,
        }
    }

    #[test]
    fn a_new_campaign_answers_as_the_reference_example() {
        assert_eq!(
            success(campaign(&view(), iso)).to_string(),
            concat!(
                r#"{"data":{"completed_at":null,"created_at":"t1000","delay_seconds":5,"device_ids":[],"#,
                r#""estimated_duration":"15 seconds","id":"camp_0123456789abcdef","media":null,"name":"Summer Sale 2026","#,
                r#""pause_reason":null,"progress":{"delivered":0,"failed":0,"pending":3,"percentage":0.0,"sent":0,"total":3},"#,
                r#""schedule_at":null,"started_at":null,"status":"draft","total_contacts":3,"waiting":null},"success":true}"#
            )
        );
    }

    #[test]
    fn a_sending_campaign_shows_its_wait_media_and_times() {
        let media =
            MediaRef { sha256: "ab".into(), size: 9, mime_type: "image/jpeg".into(), file_name: Some("x.jpg".into()) };
        let sending = CampaignView {
            status: CampaignStatus::Sending,
            waiting: Some(Waiting { reason: Some("warm_up_cap".into()), until: 9_000 }),
            media: Some(CampaignMedia { kind: MediaKind::Image, media }),
            device_ids: vec![DeviceId::parse("dev_0123456789abcdef").unwrap()],
            schedule_at: Some(500),
            started_at: Some(2_000),
            progress: Progress { total: 3, sent: 2, delivered: 1, failed: 0, pending: 1 },
            ..view()
        };
        let body = campaign(&sending, iso);
        assert_eq!(body["status"], "sending");
        assert_eq!(body["waiting"], json!({"reason": "warm_up_cap", "until": "t9000"}));
        assert_eq!(body["media"], json!({"type": "image", "mime_type": "image/jpeg", "sha256": "ab", "size": 9}));
        assert_eq!(body["device_ids"], json!(["dev_0123456789abcdef"]));
        assert_eq!((&body["schedule_at"], &body["started_at"]), (&json!("t500"), &json!("t2000")));
        assert_eq!(body["progress"]["percentage"], 66.7);
    }

    #[test]
    fn pages_count_as_laravel() {
        let listed = campaigns(2, 20, 41, &[view()], iso);
        assert_eq!(
            (&listed["current_page"], &listed["last_page"], &listed["per_page"]),
            (&json!(2), &json!(3), &json!(20))
        );
        assert_eq!(listed["data"][0]["id"], "camp_0123456789abcdef");
        let contact = ContactView {
            index: 0,
            phone: "628111".into(),
            name: Some("Ani".into()),
            text: "Hi Ani".into(),
            status: ContactStatus::Queued,
            message_id: Some("msg_1".into()),
            device_id: None,
            error_code: None,
        };
        let page = contacts(&ContactPage { page: 1, total: 1, contacts: vec![contact] });
        assert_eq!(
            page.to_string(),
            concat!(
                r#"{"current_page":1,"data":[{"device_id":null,"error":null,"index":0,"message_id":"msg_1","name":"Ani","#,
                r#""phone":"628111","status":"pending","text":"Hi Ani"}],"last_page":1,"per_page":50,"total":1}"#
            )
        );
        assert_eq!(contacts(&ContactPage { page: 1, total: 0, contacts: vec![] })["last_page"], 1);
    }

    #[test]
    fn a_deletion_names_the_campaign() {
        let d = Deleted { id: CampaignId::parse("camp_0123456789abcdef").unwrap() };
        assert_eq!(deleted(&d).to_string(), r#"{"deleted":true,"id":"camp_0123456789abcdef"}"#);
    }
}
