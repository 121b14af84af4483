//! One Durable Object per broadcast campaign (named by its id): the campaign, its contacts with
//! their rendered texts, and the alarm that feeds them one at a time into the device queues at
//! the campaign's jittered pace, under the governor's rules. A contact is reserved under a
//! reference and queued under the id that reservation returns, so a dispatch retried after a
//! crash sends nothing twice.

use serde::Deserialize;
use serde_json::json;
use wagate_contract::wire::{check_path, CheckRequest, CheckResponse, Content};
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, SqlStorageValue, State};

use super::{call, end_alarm, int, migrate, number, rows, serve};
use crate::bridge::Bridge;
use crate::domain::campaign::{
    advance, contact_text, failure_rate_trips, next_delay_ms, step, transition, Action, Advance, CampaignStatus,
    ContactStatus, PauseReason, Progress, Step, FAILURE_WINDOW,
};
use crate::domain::error::ApiError;
use crate::domain::events::{CampaignCompleted, CampaignPaused, Event, What};
use crate::domain::ids::{random_hex, trace_id, AppId, CampaignId, DeviceId};
use crate::domain::message::Priority;
use crate::domain::paging;
use crate::domain::phone::Recipient;
use crate::domain::schema::Migration;
use crate::domain::template::Template;
use crate::protocol::app::Record;
use crate::protocol::audience::{Pick, PickSender, ReserveContact, UnindexCampaign};
use crate::protocol::campaign::{
    Campaign, CampaignHandler, CampaignMedia, CampaignSpec, CampaignView, ContactOutcome, ContactPage, ContactView,
    CreateCampaign, DeleteCampaign, Deleted, GetCampaign, ListContacts, PauseCampaign, ResumeCampaign, SendCampaign,
    Waiting, CONTACTS_PAGE,
};
use crate::protocol::device::{CampaignRef, Enqueue, NewMessage};
use crate::runtime::{config, month_of, now_ms};

/// Contacts checked against WhatsApp per bridge call.
const CHECK_BATCH: i64 = 50;
const RETRY_MS: u64 = 5_000;
const DEFAULT_PACE_MS: u64 = 250;

#[derive(Deserialize)]
struct CampaignRow {
    id: CampaignId,
    app_id: AppId,
    name: String,
    media: Option<String>,
    delay_seconds: u32,
    schedule_at: Option<u64>,
    device_ids: String,
    status: CampaignStatus,
    pause_reason: Option<String>,
    waiting_reason: Option<String>,
    waiting_until: Option<u64>,
    total: u64,
    created_at: u64,
    started_at: Option<u64>,
    completed_at: Option<u64>,
}

impl CampaignRow {
    fn device_ids(&self) -> Vec<DeviceId> {
        serde_json::from_str(&self.device_ids).unwrap_or_default()
    }

    fn media(&self) -> Option<CampaignMedia> {
        self.media.as_deref().and_then(|m| serde_json::from_str(m).ok())
    }
}

#[derive(Deserialize)]
struct ContactRow {
    seq: i64,
    phone: String,
    name: Option<String>,
    text: String,
    status: ContactStatus,
    checked: i64,
    message_id: Option<String>,
    device_id: Option<String>,
    error_code: Option<String>,
}

/// A contact status as the `contacts` table holds it.
fn stored(status: ContactStatus) -> SqlStorageValue {
    status.as_str().into()
}

/// One row, its columns named beside their values, so that no value can land in another's column.
fn insert(sql: &SqlStorage, table: &str, row: Vec<(&str, SqlStorageValue)>) -> Result<(), ApiError> {
    let (columns, values): (Vec<&str>, Vec<SqlStorageValue>) = row.into_iter().unzip();
    let marks = vec!["?"; columns.len()].join(", ");
    sql.exec(&format!("INSERT INTO {table} ({}) VALUES ({marks})", columns.join(", ")), values)?;
    Ok(())
}

/// Oldest first; append, never edit (see `domain::schema`).
const MIGRATIONS: [Migration; 1] = [Migration::Sql(&[
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
])];

#[durable_object]
pub struct CampaignObject {
    state: State,
    env: Env,
}

impl DurableObject for CampaignObject {
    fn new(state: State, env: Env) -> Self {
        migrate(&state, "campaign", &MIGRATIONS);
        Self { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        serve::<Campaign, _>(req, |op| op.dispatch(self)).await
    }

    async fn alarm(&self) -> worker::Result<Response> {
        end_alarm(&self.state, "campaign alarm", self.tick().await, Some(RETRY_MS)).await
    }
}

impl CampaignHandler for CampaignObject {
    async fn create(&self, CreateCampaign { spec }: CreateCampaign) -> Result<CampaignView, ApiError> {
        self.insert_campaign(spec)?;
        if let Some(at) = self.campaign()?.schedule_at {
            self.alarm_at(at).await?;
        }
        self.view()
    }

    async fn get(&self, GetCampaign { app_id }: GetCampaign) -> Result<CampaignView, ApiError> {
        self.campaign_of(&app_id)?;
        self.view()
    }

    async fn contacts(&self, ListContacts { app_id, status, page }: ListContacts) -> Result<ContactPage, ApiError> {
        self.campaign_of(&app_id)?;
        let statuses: Vec<&str> = status.map_or(&[][..], |f| f.statuses()).iter().map(|s| s.as_str()).collect();
        let filter = serde_json::to_string(&statuses).map_err(ApiError::internal)?;
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
        let contacts = listed
            .into_iter()
            .map(|c| ContactView {
                index: c.seq,
                phone: c.phone,
                name: c.name,
                text: c.text,
                status: c.status,
                message_id: c.message_id,
                device_id: c.device_id,
                error_code: c.error_code,
            })
            .collect();
        Ok(ContactPage { page, total, contacts })
    }

    async fn send(&self, SendCampaign { app_id, now }: SendCampaign) -> Result<CampaignView, ApiError> {
        let campaign = self.campaign_of(&app_id)?;
        let to = self.allowed(&campaign, Action::Send)?;
        let pick = PickSender { device_ids: campaign.device_ids(), phone: None, now };
        if let Pick::NoDevice = call(&self.env, campaign.app_id.as_str(), pick).await? {
            return Err(ApiError::NoDeviceAvailable);
        }
        self.set_status(to, None, now)?;
        self.alarm_at(now).await?;
        self.view()
    }

    async fn pause(&self, PauseCampaign { app_id, now }: PauseCampaign) -> Result<CampaignView, ApiError> {
        let campaign = self.campaign_of(&app_id)?;
        let to = self.allowed(&campaign, Action::Pause)?;
        self.set_status(to, Some(PauseReason::Client.as_str()), now)?;
        self.view()
    }

    async fn resume(&self, ResumeCampaign { app_id, now }: ResumeCampaign) -> Result<CampaignView, ApiError> {
        let campaign = self.campaign_of(&app_id)?;
        let to = self.allowed(&campaign, Action::Resume)?;
        self.set_status(to, None, now)?;
        self.sql().exec("DELETE FROM outcomes", None)?; // a fresh start for the breaker
        self.alarm_at(now).await?;
        self.view()
    }

    async fn delete(&self, DeleteCampaign { app_id }: DeleteCampaign) -> Result<Deleted, ApiError> {
        let campaign = self.campaign_of(&app_id)?;
        self.allowed(&campaign, Action::Delete)?;
        call(&self.env, campaign.app_id.as_str(), UnindexCampaign { campaign_id: campaign.id.clone() }).await?;
        self.state.storage().delete_alarm().await?;
        for table in ["contacts", "outcomes", "campaign"] {
            self.sql().exec(&format!("DELETE FROM {table}"), None)?;
        }
        Ok(Deleted { id: campaign.id })
    }

    async fn outcome(&self, outcome: ContactOutcome) -> Result<(), ApiError> {
        let ContactOutcome { contact: seq, message_id, status: message, error_code } = outcome;
        let Ok(campaign) = self.campaign() else { return Ok(()) };
        let current = rows::<ContactRow>(self.sql().exec("SELECT * FROM contacts WHERE seq = ?", vec![seq.into()])?)?;
        let Some(current) = current.into_iter().next() else { return Ok(()) };
        let Some(Advance { to, outcome }) = advance(current.status, message) else { return Ok(()) };
        self.sql().exec(
            "UPDATE contacts SET status = ?, message_id = ?, error_code = COALESCE(?, error_code), updated_at = ? WHERE seq = ?",
            vec![stored(to), message_id.into(), error_code.into(), int(now_ms()), seq.into()],
        )?;
        if outcome {
            self.sql()
                .exec("INSERT INTO outcomes (failed) VALUES (?)", vec![int((to == ContactStatus::Failed) as u64)])?;
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
            if campaign.status == CampaignStatus::Sending && failure_rate_trips(&recent) {
                return self.auto_pause(&campaign, PauseReason::Failing).await;
            }
        }
        self.finish_if_done(&campaign).await
    }
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
        self.campaign().ok().filter(|c| c.app_id == *app_id).ok_or_else(|| ApiError::not_found("campaign"))
    }

    fn allowed(&self, campaign: &CampaignRow, action: Action) -> Result<CampaignStatus, ApiError> {
        transition(campaign.status, action).map_err(|e| ApiError::Conflict { message: e.to_string() })
    }

    fn insert_campaign(&self, spec: CampaignSpec) -> Result<(), ApiError> {
        if self.campaign().is_ok() {
            return Err(ApiError::Conflict { message: "this campaign already exists".into() });
        }
        let template = Template::parse(&spec.message, |_| true).map_err(ApiError::internal)?;
        let status = match spec.schedule_at {
            Some(_) => transition(CampaignStatus::Draft, Action::Schedule).map_err(ApiError::internal)?,
            None => CampaignStatus::Draft,
        };
        let media = spec.media.as_ref().map(serde_json::to_string).transpose().map_err(ApiError::internal)?;
        insert(
            &self.sql(),
            "campaign",
            vec![
                ("one", 1.into()),
                ("id", spec.campaign_id.as_str().into()),
                ("app_id", spec.app_id.as_str().into()),
                ("name", spec.name.into()),
                ("media", media.into()),
                ("delay_seconds", i64::from(spec.delay_seconds).into()),
                ("schedule_at", spec.schedule_at.map(int).into()),
                ("device_ids", serde_json::to_string(&spec.device_ids).map_err(ApiError::internal)?.into()),
                ("status", status.as_str().into()),
                ("total", int(spec.contacts.len() as u64)),
                ("created_at", int(spec.now)),
            ],
        )?;
        for (seq, contact) in spec.contacts.into_iter().enumerate() {
            let text = contact_text(
                &template,
                spec.campaign_id.body(),
                &contact.phone,
                contact.name.as_deref(),
                &contact.variables,
            );
            insert(
                &self.sql(),
                "contacts",
                vec![
                    ("seq", (seq as i64).into()),
                    ("phone", contact.phone.into()),
                    ("name", contact.name.into()),
                    ("text", text.into()),
                    ("status", stored(ContactStatus::Pending)),
                ],
            )?;
        }
        Ok(())
    }

    fn progress(&self) -> Result<Progress, ApiError> {
        #[derive(Deserialize)]
        struct Count {
            status: ContactStatus,
            n: u64,
        }
        let counts =
            rows::<Count>(self.sql().exec("SELECT status, COUNT(*) AS n FROM contacts GROUP BY status", None)?)?;
        Ok(Progress::of(counts.into_iter().map(|c| (c.status, c.n))))
    }

    fn view(&self) -> Result<CampaignView, ApiError> {
        let c = self.campaign()?;
        let progress = self.progress()?;
        let media = c.media();
        let device_ids = c.device_ids();
        let waiting = c.waiting_until.filter(|_| c.status == CampaignStatus::Sending);
        Ok(CampaignView {
            id: c.id,
            name: c.name,
            status: c.status,
            pause_reason: c.pause_reason,
            waiting: waiting.map(|until| Waiting { reason: c.waiting_reason, until }),
            total_contacts: c.total,
            progress,
            delay_seconds: c.delay_seconds,
            schedule_at: c.schedule_at,
            media,
            device_ids,
            created_at: c.created_at,
            started_at: c.started_at,
            completed_at: c.completed_at,
        })
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

    async fn record(&self, campaign: &CampaignRow, what: What) -> Result<(), ApiError> {
        let event = Event::new(None, now_ms(), what);
        call(&self.env, campaign.app_id.as_str(), Record { event }).await.map(drop)
    }

    /// The governor stops the campaign and says why.
    async fn auto_pause(&self, campaign: &CampaignRow, reason: PauseReason) -> Result<(), ApiError> {
        let reason = reason.as_str();
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
        if campaign.status != CampaignStatus::Sending || !progress.finished() {
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
            vec![stored(ContactStatus::Failed), code.into(), int(now_ms()), seq.into()],
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
        next_delay_ms(delay_seconds, scale, self.pace_ms(), unit)
    }

    /// One step of a sending campaign: check the next numbers against WhatsApp if needed, then
    /// hand the next contact to a device and come back after the jittered delay.
    async fn tick(&self) -> Result<(), ApiError> {
        let Ok(mut campaign) = self.campaign() else { return Ok(()) };
        let now = now_ms();
        match step(campaign.status, campaign.schedule_at, now) {
            Step::Idle => return Ok(()),
            Step::WaitUntil(at) => return self.alarm_at(at).await,
            Step::Start => {
                let to = self.allowed(&campaign, Action::Start)?;
                self.set_status(to, None, now)?;
                campaign = self.campaign()?;
            }
            Step::Send => {}
        }
        let pending = rows::<ContactRow>(self.sql().exec(
            "SELECT * FROM contacts WHERE status = ? ORDER BY seq LIMIT 1",
            vec![stored(ContactStatus::Pending)],
        )?)?;
        let Some(contact) = pending.into_iter().next() else {
            return self.finish_if_done(&campaign).await;
        };
        if contact.checked == 0 {
            return self.check_numbers(&campaign).await;
        }
        let pick = PickSender { device_ids: campaign.device_ids(), phone: Some(contact.phone.clone()), now };
        let device_id = match call(&self.env, campaign.app_id.as_str(), pick).await? {
            Pick::Device { device_id } => device_id,
            Pick::OptedOut => {
                self.fail_contact(contact.seq, "opted_out")?;
                return self.alarm_at(now + self.pace_ms()).await;
            }
            Pick::NoDevice => return self.auto_pause(&campaign, PauseReason::NoDevice).await,
            Pick::WarmingUp { until } => {
                self.sql()
                    .exec("UPDATE campaign SET waiting_reason = 'warm_up_cap', waiting_until = ?", vec![int(until)])?;
                return self.alarm_at(until).await;
            }
        };
        let reserve = ReserveContact {
            device_id,
            reference: format!("{}:{}", campaign.id, contact.seq),
            period: month_of(now),
            now,
        };
        let reservation = match call(&self.env, campaign.app_id.as_str(), reserve).await {
            Ok(reservation) => reservation,
            Err(ApiError::QuotaExceeded) => return self.auto_pause(&campaign, PauseReason::QuotaUsedUp).await,
            Err(ApiError::DeviceNotConnected) => return self.alarm_at(now + self.pace_ms()).await,
            Err(e) => return Err(e),
        };
        self.sql().exec("UPDATE campaign SET waiting_until = NULL, waiting_reason = NULL", None)?;
        let content = match campaign.media() {
            Some(CampaignMedia { kind, media }) => Content::Media { kind, media, caption: Some(contact.text.clone()) },
            None => Content::Text { text: contact.text.clone() },
        };
        let message = NewMessage {
            message_id: reservation.message_id.clone(),
            app_id: campaign.app_id.clone(),
            recipient: Recipient::Phone(contact.phone.clone()),
            content,
            trace_id: trace_id(),
            meta: Some(json!({"campaign_id": campaign.id})),
            priority: Priority::Bulk,
            code_expires_at: None,
            campaign: Some(CampaignRef { campaign_id: campaign.id.to_string(), contact: contact.seq }),
            now,
        };
        call(&self.env, reservation.device_id.as_str(), Enqueue { message }).await?;
        // An outcome may already have overtaken this (it sets the message id too).
        self.sql().exec(
            "UPDATE contacts SET status = ?, message_id = ?, device_id = ?, updated_at = ? WHERE seq = ? AND status = ?",
            vec![
                stored(ContactStatus::Queued),
                reservation.message_id.as_str().into(),
                reservation.device_id.as_str().into(),
                int(now),
                contact.seq.into(),
                stored(ContactStatus::Pending),
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
            vec![stored(ContactStatus::Pending), CHECK_BATCH.into()],
        )?)?;
        let pick = PickSender { device_ids: campaign.device_ids(), phone: None, now };
        let Pick::Device { device_id } = call(&self.env, campaign.app_id.as_str(), pick).await? else {
            return self.auto_pause(campaign, PauseReason::NoDevice).await;
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
}
