//! One Durable Object per broadcast campaign (named by its id): the campaign, its contacts with
//! their rendered texts, and the alarm that feeds them one at a time into the device queues at
//! the campaign's jittered pace, under the governor's rules. A contact is reserved under a
//! reference and queued under the id that reservation returns, so a dispatch retried after a
//! crash sends nothing twice.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use wagate_contract::wire::{check_path, CheckRequest, CheckResponse, Content, MediaKind, MediaRef};
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::app::{AppOp, Reservation};
use super::audience::{AudienceCall, Pick};
use super::device::{CampaignRef, DeviceOp, MessageView, NewMessage};
use super::{create_schema, int, legacy_call, legacy_serve, number, rows, APPS, DEVICES};
use crate::bridge::Bridge;
use crate::domain::campaign::{
    estimated_duration_secs, failure_rate_trips, humanize_secs, jittered_delay_ms, transition, Action, CampaignStatus,
    Progress, FAILURE_WINDOW,
};
use crate::domain::error::ApiError;
use crate::domain::events::{CampaignCompleted, CampaignPaused, Event, What};
use crate::domain::ids::{random_hex, trace_id, AppId, CampaignId, DeviceId};
use crate::domain::message::{MessageStatus, Priority};
use crate::domain::paging;
use crate::domain::phone::Recipient;
use crate::domain::template::Template;
use crate::runtime::{config, iso, month_of, now_ms};

/// Contacts checked against WhatsApp per bridge call.
const CHECK_BATCH: i64 = 50;
const CONTACTS_PAGE: i64 = 50;
const RETRY_MS: u64 = 5_000;
const DEFAULT_PACE_MS: u64 = 250;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContactSpec {
    /// International number, digits only.
    pub phone: String,
    pub name: Option<String>,
    pub variables: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignMedia {
    pub kind: MediaKind,
    pub media: MediaRef,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignSpec {
    pub campaign_id: CampaignId,
    pub app_id: AppId,
    pub name: String,
    /// The template, already checked against every contact's values.
    pub message: String,
    pub media: Option<CampaignMedia>,
    pub delay_seconds: u32,
    pub schedule_at: Option<u64>,
    pub device_ids: Vec<DeviceId>,
    pub contacts: Vec<ContactSpec>,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CampaignOp {
    Create {
        spec: CampaignSpec,
    },
    Get {
        app_id: AppId,
    },
    Contacts {
        app_id: AppId,
        status: Option<String>,
        page: i64,
    },
    Send {
        app_id: AppId,
        now: u64,
    },
    Pause {
        app_id: AppId,
        now: u64,
    },
    Resume {
        app_id: AppId,
        now: u64,
    },
    Delete {
        app_id: AppId,
    },
    /// A contact's message moved on (from the device's outbox).
    Outcome {
        contact: i64,
        message_id: String,
        status: MessageStatus,
        error_code: Option<String>,
    },
}

#[derive(Deserialize)]
struct CampaignRow {
    id: String,
    app_id: String,
    name: String,
    media: Option<String>,
    delay_seconds: u32,
    schedule_at: Option<u64>,
    device_ids: String,
    status: String,
    pause_reason: Option<String>,
    waiting_reason: Option<String>,
    waiting_until: Option<u64>,
    total: u64,
    created_at: u64,
    started_at: Option<u64>,
    completed_at: Option<u64>,
}

impl CampaignRow {
    fn status(&self) -> Result<CampaignStatus, ApiError> {
        CampaignStatus::parse(&self.status).ok_or_else(|| ApiError::internal("stored campaign status is unknown"))
    }

    fn device_ids(&self) -> Vec<DeviceId> {
        serde_json::from_str(&self.device_ids).unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct ContactRow {
    seq: i64,
    phone: String,
    name: Option<String>,
    text: String,
    status: String,
    checked: i64,
    message_id: Option<String>,
    device_id: Option<String>,
    error_code: Option<String>,
}

const PENDING: &str = "pending";
const QUEUED: &str = "queued";
const FAILED: &str = "failed";

#[durable_object]
pub struct CampaignObject {
    state: State,
    env: Env,
}

impl DurableObject for CampaignObject {
    fn new(state: State, env: Env) -> Self {
        create_schema(
            &state,
            &[
                "CREATE TABLE IF NOT EXISTS campaign (
                one INTEGER PRIMARY KEY CHECK (one = 1), id TEXT NOT NULL, app_id TEXT NOT NULL, name TEXT NOT NULL,
                media TEXT, delay_seconds INTEGER NOT NULL, schedule_at INTEGER, device_ids TEXT NOT NULL,
                status TEXT NOT NULL, pause_reason TEXT, waiting_reason TEXT, waiting_until INTEGER,
                total INTEGER NOT NULL, created_at INTEGER NOT NULL, started_at INTEGER, completed_at INTEGER)",
                // status: pending → queued (handed to a device) → sent | delivered | read | failed.
                "CREATE TABLE IF NOT EXISTS contacts (
                seq INTEGER PRIMARY KEY, phone TEXT NOT NULL, name TEXT, text TEXT NOT NULL, status TEXT NOT NULL,
                checked INTEGER NOT NULL DEFAULT 0, message_id TEXT, device_id TEXT, error_code TEXT,
                updated_at INTEGER)",
                "CREATE INDEX IF NOT EXISTS contacts_status ON contacts (status, seq)",
                // The last send outcomes (1 = failed), for the failure-rate breaker.
                "CREATE TABLE IF NOT EXISTS outcomes (seq INTEGER PRIMARY KEY AUTOINCREMENT, failed INTEGER NOT NULL)",
            ],
        );
        Self { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        legacy_serve(req, |op: CampaignOp| self.handle(op)).await
    }

    async fn alarm(&self) -> worker::Result<Response> {
        if let Err(e) = self.tick().await {
            worker::console_error!("campaign alarm: {e}");
            self.state.storage().set_alarm(RETRY_MS as i64).await?;
        }
        Response::empty()
    }
}

/// `sent`, `delivered`, `read` and `failed` are final for the campaign; the first three go on
/// moving forward as receipts arrive.
fn contact_rank(status: &str) -> u8 {
    match status {
        PENDING => 0,
        QUEUED => 1,
        "sent" => 2,
        "delivered" => 3,
        "read" => 4,
        _ => 5,
    }
}

/// Progress as the API and the campaign events show it.
fn progress_json(p: &Progress) -> Value {
    json!({
        "total": p.total, "sent": p.sent, "delivered": p.delivered,
        "failed": p.failed, "pending": p.pending, "percentage": p.percentage(),
    })
}

impl CampaignObject {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    fn campaign(&self) -> Result<CampaignRow, ApiError> {
        rows::<CampaignRow>(self.sql().exec("SELECT * FROM campaign", None)?)?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found("campaign"))
    }

    /// The campaign, if it belongs to `app_id`; another app's is not found, as if absent.
    fn campaign_of(&self, app_id: &AppId) -> Result<CampaignRow, ApiError> {
        self.campaign().ok().filter(|c| c.app_id == app_id.as_str()).ok_or_else(|| ApiError::not_found("campaign"))
    }

    async fn handle(&self, op: CampaignOp) -> Result<Value, ApiError> {
        match op {
            CampaignOp::Create { spec } => {
                self.create(spec)?;
                if let Some(at) = self.campaign()?.schedule_at {
                    self.alarm_at(at).await?;
                }
                self.view()
            }
            CampaignOp::Get { app_id } => {
                self.campaign_of(&app_id)?;
                self.view()
            }
            CampaignOp::Contacts { app_id, status, page } => {
                self.campaign_of(&app_id)?;
                self.contacts(status.as_deref(), page)
            }
            CampaignOp::Send { app_id, now } => {
                let campaign = self.campaign_of(&app_id)?;
                let to = self.allowed(&campaign, Action::Send)?;
                let pick = AudienceCall::Pick { device_ids: campaign.device_ids(), phone: None, now };
                if let Pick::NoDevice = self.app_call::<Pick>(&campaign, AppOp::Audience { call: pick }).await? {
                    return Err(ApiError::NoDeviceAvailable);
                }
                self.set_status(to, None, now)?;
                self.alarm_at(now).await?;
                self.view()
            }
            CampaignOp::Pause { app_id, now } => {
                let campaign = self.campaign_of(&app_id)?;
                let to = self.allowed(&campaign, Action::Pause)?;
                self.set_status(to, Some("paused by the client"), now)?;
                self.view()
            }
            CampaignOp::Resume { app_id, now } => {
                let campaign = self.campaign_of(&app_id)?;
                let to = self.allowed(&campaign, Action::Resume)?;
                self.set_status(to, None, now)?;
                self.sql().exec("DELETE FROM outcomes", None)?; // a fresh start for the breaker
                self.alarm_at(now).await?;
                self.view()
            }
            CampaignOp::Delete { app_id } => {
                let campaign = self.campaign_of(&app_id)?;
                self.allowed(&campaign, Action::Delete)?;
                let unindex = AudienceCall::Unindex {
                    campaign_id: CampaignId::parse(&campaign.id).ok_or_else(|| ApiError::internal("bad id"))?,
                };
                self.app_call::<Value>(&campaign, AppOp::Audience { call: unindex }).await?;
                self.state.storage().delete_alarm().await?;
                for table in ["contacts", "outcomes", "campaign"] {
                    self.sql().exec(&format!("DELETE FROM {table}"), None)?;
                }
                Ok(json!({"id": campaign.id, "deleted": true}))
            }
            CampaignOp::Outcome { contact, message_id, status, error_code } => {
                self.outcome(contact, &message_id, status, error_code).await?;
                Ok(Value::Null)
            }
        }
    }

    fn allowed(&self, campaign: &CampaignRow, action: Action) -> Result<CampaignStatus, ApiError> {
        transition(campaign.status()?, action).map_err(|e| ApiError::Conflict { message: e.to_string() })
    }

    fn create(&self, spec: CampaignSpec) -> Result<(), ApiError> {
        if self.campaign().is_ok() {
            return Err(ApiError::Conflict { message: "this campaign already exists".into() });
        }
        let template = Template::parse(&spec.message, |_| true).map_err(ApiError::internal)?;
        let status = match spec.schedule_at {
            Some(_) => transition(CampaignStatus::Draft, Action::Schedule).map_err(ApiError::internal)?,
            None => CampaignStatus::Draft,
        };
        let media = spec.media.as_ref().map(serde_json::to_string).transpose().map_err(ApiError::internal)?;
        self.sql().exec(
            "INSERT INTO campaign (one, id, app_id, name, media, delay_seconds, schedule_at, device_ids, status, total, created_at)
             VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                spec.campaign_id.as_str().into(),
                spec.app_id.as_str().into(),
                spec.name.into(),
                media.into(),
                i64::from(spec.delay_seconds).into(),
                spec.schedule_at.map(int).into(),
                serde_json::to_string(&spec.device_ids).map_err(ApiError::internal)?.into(),
                status.as_str().into(),
                int(spec.contacts.len() as u64),
                int(spec.now),
            ],
        )?;
        for (seq, contact) in spec.contacts.into_iter().enumerate() {
            let value = |name: &str| match name {
                "name" => contact.name.clone(),
                "phone" => Some(contact.phone.clone()),
                other => contact.variables.get(other).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)),
            };
            // Each contact's own pick among the alternatives, stable for the campaign.
            let seed = spec
                .campaign_id
                .body()
                .bytes()
                .chain(contact.phone.bytes())
                .fold(0u64, |h, b| h.rotate_left(7) ^ u64::from(b));
            let text = template.render(value, seed);
            self.sql().exec(
                "INSERT INTO contacts (seq, phone, name, text, status) VALUES (?, ?, ?, ?, ?)",
                vec![(seq as i64).into(), contact.phone.into(), contact.name.into(), text.into(), PENDING.into()],
            )?;
        }
        Ok(())
    }

    fn progress(&self) -> Result<Progress, ApiError> {
        #[derive(Deserialize)]
        struct Count {
            status: String,
            n: u64,
        }
        let counts =
            rows::<Count>(self.sql().exec("SELECT status, COUNT(*) AS n FROM contacts GROUP BY status", None)?)?;
        let mut p = Progress::default();
        for Count { status, n } in counts {
            p.total += n;
            match contact_rank(&status) {
                0 | 1 => p.pending += n,
                2 => p.sent += n,
                3 | 4 => {
                    p.sent += n;
                    p.delivered += n;
                }
                _ => p.failed += n,
            }
        }
        Ok(p)
    }

    fn view(&self) -> Result<Value, ApiError> {
        let c = self.campaign()?;
        let progress = self.progress()?;
        let media: Option<CampaignMedia> = c.media.as_deref().and_then(|m| serde_json::from_str(m).ok());
        let waiting = c.waiting_until.filter(|_| c.status == CampaignStatus::Sending.as_str());
        Ok(json!({
            "id": c.id, "name": c.name, "status": c.status, "pause_reason": c.pause_reason,
            "waiting": waiting.map(|until| json!({"reason": c.waiting_reason, "until": iso(until)})),
            "total_contacts": c.total,
            "progress": progress_json(&progress),
            "delay_seconds": c.delay_seconds,
            "estimated_duration": humanize_secs(estimated_duration_secs(c.total as usize, c.delay_seconds)),
            "schedule_at": c.schedule_at.map(iso),
            "media": media.map(|m| json!({"type": m.kind.as_str(), "mime_type": m.media.mime_type, "sha256": m.media.sha256, "size": m.media.size})),
            "device_ids": c.device_ids(),
            "created_at": iso(c.created_at), "started_at": c.started_at.map(iso), "completed_at": c.completed_at.map(iso),
        }))
    }

    fn contacts(&self, status: Option<&str>, page: i64) -> Result<Value, ApiError> {
        // `sent` covers what was since delivered or read; `pending` what has not gone out yet.
        let statuses: &[&str] = match status {
            Some("sent") => &["sent", "delivered", "read"],
            Some("failed") => &[FAILED],
            Some(_) => &[PENDING, QUEUED],
            None => &[],
        };
        let filter = serde_json::to_string(statuses).map_err(ApiError::internal)?;
        let total = number(
            &self.sql(),
            "SELECT COUNT(*) AS n FROM contacts WHERE ? = '[]' OR status IN (SELECT value FROM json_each(?))",
            vec![filter.as_str().into(), filter.as_str().into()],
        )?
        .unwrap_or(0);
        let page = page.max(1);
        let listed = rows::<ContactRow>(self.sql().exec(
            "SELECT * FROM contacts
             WHERE ? = '[]' OR status IN (SELECT value FROM json_each(?)) ORDER BY seq LIMIT ? OFFSET ?",
            vec![
                filter.as_str().into(),
                filter.as_str().into(),
                CONTACTS_PAGE.into(),
                paging::offset(page, CONTACTS_PAGE).into(),
            ],
        )?)?;
        let data: Vec<Value> = listed
            .iter()
            .map(|c| {
                json!({"index": c.seq, "phone": c.phone, "name": c.name, "text": c.text,
                       "status": if c.status == QUEUED { PENDING } else { &c.status },
                       "message_id": c.message_id, "device_id": c.device_id, "error": c.error_code})
            })
            .collect();
        Ok(json!({
            "current_page": page, "data": data, "per_page": CONTACTS_PAGE, "total": total,
            "last_page": paging::last_page(total, CONTACTS_PAGE),
        }))
    }

    fn set_status(&self, status: CampaignStatus, pause_reason: Option<&str>, now: u64) -> Result<(), ApiError> {
        self.sql().exec(
            "UPDATE campaign SET status = ?, pause_reason = ?, waiting_until = NULL, waiting_reason = NULL,
             started_at = CASE WHEN ? = 'sending' THEN COALESCE(started_at, ?) ELSE started_at END,
             completed_at = CASE WHEN ? = 'completed' THEN ? ELSE completed_at END",
            vec![
                status.as_str().into(),
                pause_reason.into(),
                status.as_str().into(),
                int(now),
                status.as_str().into(),
                int(now),
            ],
        )?;
        Ok(())
    }

    async fn alarm_at(&self, at: u64) -> Result<(), ApiError> {
        self.state.storage().set_alarm(at.saturating_sub(now_ms()) as i64).await?;
        Ok(())
    }

    async fn app_call<T: serde::de::DeserializeOwned>(&self, campaign: &CampaignRow, op: AppOp) -> Result<T, ApiError> {
        legacy_call(&self.env, APPS, &campaign.app_id, &op).await
    }

    async fn record(&self, campaign: &CampaignRow, what: What) -> Result<(), ApiError> {
        let event = Event::new(None, now_ms(), what);
        self.app_call::<Value>(campaign, AppOp::Record { event }).await.map(drop)
    }

    /// The governor stops the campaign and says why.
    async fn auto_pause(&self, campaign: &CampaignRow, reason: &str) -> Result<(), ApiError> {
        let to = self.allowed(campaign, Action::AutoPause)?;
        self.set_status(to, Some(reason), now_ms())?;
        let what = What::CampaignPaused(CampaignPaused {
            campaign_id: campaign.id.clone(),
            name: campaign.name.clone(),
            reason: reason.to_owned(),
            progress: self.progress()?.into(),
        });
        self.record(campaign, what).await
    }

    /// Completes the campaign once no contact is left to go out.
    async fn finish_if_done(&self, campaign: &CampaignRow) -> Result<(), ApiError> {
        let progress = self.progress()?;
        if campaign.status()? != CampaignStatus::Sending || !progress.finished() {
            return Ok(());
        }
        self.set_status(
            transition(CampaignStatus::Sending, Action::Complete).map_err(ApiError::internal)?,
            None,
            now_ms(),
        )?;
        let what = What::CampaignCompleted(CampaignCompleted {
            campaign_id: campaign.id.clone(),
            name: campaign.name.clone(),
            progress: progress.into(),
        });
        self.record(campaign, what).await
    }

    fn fail_contact(&self, seq: i64, code: &str) -> Result<(), ApiError> {
        self.sql().exec(
            "UPDATE contacts SET status = ?, error_code = ?, updated_at = ? WHERE seq = ?",
            vec![FAILED.into(), code.into(), int(now_ms()), seq.into()],
        )?;
        Ok(())
    }

    fn pace_ms(&self) -> u64 {
        config(&self.env, "DEVICE_PACE_MS").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_PACE_MS)
    }

    /// Tests compress campaign delays (`CAMPAIGN_DELAY_SCALE`, default 1).
    fn next_delay_ms(&self, delay_seconds: u32) -> u64 {
        let scale = config(&self.env, "CAMPAIGN_DELAY_SCALE").and_then(|v| v.parse::<f64>().ok()).unwrap_or(1.0);
        let unit = u32::from_str_radix(&random_hex(4), 16).unwrap_or(0) as f64 / (u32::MAX as f64 + 1.0);
        let delay = jittered_delay_ms(delay_seconds, 0, unit) as f64 * scale;
        (delay as u64).max(self.pace_ms())
    }

    /// One step of a sending campaign: check the next numbers against WhatsApp if needed, then
    /// hand the next contact to a device and come back after the jittered delay.
    async fn tick(&self) -> Result<(), ApiError> {
        let Ok(mut campaign) = self.campaign() else { return Ok(()) };
        let now = now_ms();
        match campaign.status()? {
            CampaignStatus::Queued => {
                if let Some(at) = campaign.schedule_at.filter(|at| *at > now) {
                    return self.alarm_at(at).await;
                }
                let to = self.allowed(&campaign, Action::Start)?;
                self.set_status(to, None, now)?;
                campaign = self.campaign()?;
            }
            CampaignStatus::Sending => {}
            _ => return Ok(()),
        }
        let pending = rows::<ContactRow>(
            self.sql().exec("SELECT * FROM contacts WHERE status = ? ORDER BY seq LIMIT 1", vec![PENDING.into()])?,
        )?;
        let Some(contact) = pending.into_iter().next() else {
            return self.finish_if_done(&campaign).await;
        };
        if contact.checked == 0 {
            return self.check_numbers(&campaign).await;
        }
        let pick = AudienceCall::Pick { device_ids: campaign.device_ids(), phone: Some(contact.phone.clone()), now };
        let device_id = match self.app_call::<Pick>(&campaign, AppOp::Audience { call: pick }).await? {
            Pick::Device { device_id } => device_id,
            Pick::OptedOut => {
                self.fail_contact(contact.seq, "opted_out")?;
                return self.alarm_at(now + self.pace_ms()).await;
            }
            Pick::NoDevice => return self.auto_pause(&campaign, NO_DEVICE).await,
            Pick::WarmingUp { until } => {
                self.sql()
                    .exec("UPDATE campaign SET waiting_reason = 'warm_up_cap', waiting_until = ?", vec![int(until)])?;
                return self.alarm_at(until).await;
            }
        };
        let reserve = AudienceCall::Reserve {
            device_id,
            reference: format!("{}:{}", campaign.id, contact.seq),
            period: month_of(now),
            now,
        };
        let reservation = match self.app_call::<Reservation>(&campaign, AppOp::Audience { call: reserve }).await {
            Ok(reservation) => reservation,
            Err(ApiError::QuotaExceeded) => return self.auto_pause(&campaign, QUOTA_USED_UP).await,
            Err(ApiError::DeviceNotConnected) => return self.alarm_at(now + self.pace_ms()).await,
            Err(e) => return Err(e),
        };
        self.sql().exec("UPDATE campaign SET waiting_until = NULL, waiting_reason = NULL", None)?;
        let media: Option<CampaignMedia> = campaign.media.as_deref().and_then(|m| serde_json::from_str(m).ok());
        let content = match media {
            Some(CampaignMedia { kind, media }) => Content::Media { kind, media, caption: Some(contact.text.clone()) },
            None => Content::Text { text: contact.text.clone() },
        };
        let message = NewMessage {
            message_id: reservation.message_id.clone(),
            app_id: AppId::parse(&campaign.app_id).ok_or_else(|| ApiError::internal("stored app id is malformed"))?,
            recipient: Recipient::Phone(contact.phone.clone()),
            content,
            trace_id: trace_id(),
            meta: Some(json!({"campaign_id": campaign.id})),
            priority: Priority::Bulk,
            code_expires_at: None,
            campaign: Some(CampaignRef { campaign_id: campaign.id.clone(), contact: contact.seq }),
            now,
        };
        let enqueue = DeviceOp::Enqueue { message };
        legacy_call::<_, MessageView>(&self.env, DEVICES, reservation.device_id.as_str(), &enqueue).await?;
        // An outcome may already have overtaken this (it sets the message id too).
        self.sql().exec(
            "UPDATE contacts SET status = ?, message_id = ?, device_id = ?, updated_at = ? WHERE seq = ? AND status = ?",
            vec![
                QUEUED.into(),
                reservation.message_id.as_str().into(),
                reservation.device_id.as_str().into(),
                int(now),
                contact.seq.into(),
                PENDING.into(),
            ],
        )?;
        self.alarm_at(now + self.next_delay_ms(campaign.delay_seconds)).await
    }

    /// Asks WhatsApp which of the next numbers exist; those that do not end `not_on_whatsapp`
    /// without spending quota.
    async fn check_numbers(&self, campaign: &CampaignRow) -> Result<(), ApiError> {
        let now = now_ms();
        let batch = rows::<ContactRow>(self.sql().exec(
            "SELECT * FROM contacts WHERE status = ? AND checked = 0 ORDER BY seq LIMIT ?",
            vec![PENDING.into(), CHECK_BATCH.into()],
        )?)?;
        let pick = AudienceCall::Pick { device_ids: campaign.device_ids(), phone: None, now };
        let Pick::Device { device_id } = self.app_call::<Pick>(campaign, AppOp::Audience { call: pick }).await? else {
            return self.auto_pause(campaign, NO_DEVICE).await;
        };
        let request = CheckRequest { phones: batch.iter().map(|c| c.phone.clone()).collect() };
        let checked: CheckResponse =
            Bridge::from_env(&self.env)?.post(&check_path(device_id.as_str()), &request).await?;
        for contact in &batch {
            let exists = checked.results.iter().find(|r| r.phone == contact.phone).is_none_or(|r| r.exists);
            self.sql().exec("UPDATE contacts SET checked = 1 WHERE seq = ?", vec![contact.seq.into()])?;
            if !exists {
                self.fail_contact(contact.seq, "not_on_whatsapp")?;
            }
        }
        self.alarm_at(now + self.pace_ms()).await
    }

    async fn outcome(
        &self,
        seq: i64,
        message_id: &str,
        status: MessageStatus,
        error_code: Option<String>,
    ) -> Result<(), ApiError> {
        let next = match status {
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Failed => FAILED,
            MessageStatus::Queued | MessageStatus::Sending => return Ok(()),
        };
        let Ok(campaign) = self.campaign() else { return Ok(()) };
        let current = rows::<ContactRow>(self.sql().exec("SELECT * FROM contacts WHERE seq = ?", vec![seq.into()])?)?;
        let Some(current) = current.into_iter().next() else { return Ok(()) };
        if contact_rank(next) <= contact_rank(&current.status) {
            return Ok(());
        }
        self.sql().exec(
            "UPDATE contacts SET status = ?, message_id = ?, error_code = COALESCE(?, error_code), updated_at = ? WHERE seq = ?",
            vec![next.into(), message_id.into(), error_code.into(), int(now_ms()), seq.into()],
        )?;
        if contact_rank(&current.status) <= 1 {
            // The first final outcome of a send feeds the failure-rate breaker.
            self.sql().exec("INSERT INTO outcomes (failed) VALUES (?)", vec![int((next == FAILED) as u64)])?;
            self.sql().exec(
                "DELETE FROM outcomes WHERE seq <= (SELECT MAX(seq) FROM outcomes) - ?",
                vec![(FAILURE_WINDOW as i64).into()],
            )?;
            #[derive(Deserialize)]
            struct Outcome {
                failed: i64,
            }
            let recent: Vec<bool> =
                rows::<Outcome>(self.sql().exec("SELECT failed FROM outcomes ORDER BY seq", None)?)?
                    .into_iter()
                    .map(|o| o.failed != 0)
                    .collect();
            if campaign.status()? == CampaignStatus::Sending && failure_rate_trips(&recent) {
                return self.auto_pause(&campaign, FAILING).await;
            }
        }
        self.finish_if_done(&campaign).await
    }
}

const NO_DEVICE: &str = "device_offline: none of the campaign's WhatsApp numbers is connected";
const QUOTA_USED_UP: &str = "quota_exceeded: the month's message quota is used up";
const FAILING: &str = "failure_rate: too many of the latest messages failed";
