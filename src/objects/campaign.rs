//! One Durable Object per broadcast campaign (named by its id): the campaign, its contacts with
//! their rendered texts, and the alarm that feeds them one at a time into the device queues at
//! the campaign's jittered pace, under the governor's rules. A contact is reserved under a
//! reference and queued under the id that reservation returns, so a dispatch retried after a
//! crash sends nothing twice.

use serde_json::json;
use wagate_contract::wire::{check_path, CheckRequest, CheckResponse, Content};
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::{call, end_alarm, migrate, serve};
use crate::bridge::Bridge;
use crate::domain::campaign::{next_delay_ms, step, transition, Action, CampaignStatus, PauseReason, Step};
use crate::domain::error::ApiError;
use crate::domain::events::{CampaignCompleted, CampaignPaused, Event, What};
use crate::domain::ids::{random_hex, trace_id};
use crate::domain::message::Priority;
use crate::domain::phone::Recipient;
use crate::protocol::app::Record;
use crate::protocol::audience::{Pick, PickSender, ReserveContact, UnindexCampaign};
use crate::protocol::campaign::{
    Campaign, CampaignHandler, CampaignMedia, CampaignView, ContactOutcome, ContactPage, CreateCampaign,
    DeleteCampaign, Deleted, GetCampaign, ListContacts, PauseCampaign, ResumeCampaign, SendCampaign,
};
use crate::protocol::device::{CampaignRef, Enqueue, NewMessage};
use crate::runtime::{config, month_of, now_ms};
use crate::store::campaign::{self as campaigns, AfterOutcome, CampaignRow, MIGRATIONS};

/// Contacts checked against WhatsApp per bridge call.
const CHECK_BATCH: i64 = 50;
const RETRY_MS: u64 = 5_000;
const DEFAULT_PACE_MS: u64 = 250;

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
        let schedule_at = spec.schedule_at;
        campaigns::create(&self.sql(), spec)?;
        if let Some(at) = schedule_at {
            self.alarm_at(at).await?;
        }
        campaigns::view(&self.sql())
    }

    async fn get(&self, GetCampaign { app_id }: GetCampaign) -> Result<CampaignView, ApiError> {
        campaigns::campaign_of(&self.sql(), &app_id)?;
        campaigns::view(&self.sql())
    }

    async fn contacts(&self, ListContacts { app_id, status, page }: ListContacts) -> Result<ContactPage, ApiError> {
        campaigns::campaign_of(&self.sql(), &app_id)?;
        campaigns::contacts(&self.sql(), status, page)
    }

    async fn send(&self, SendCampaign { app_id, now }: SendCampaign) -> Result<CampaignView, ApiError> {
        let campaign = campaigns::campaign_of(&self.sql(), &app_id)?;
        let to = campaign.allowed(Action::Send)?;
        let pick = PickSender { device_ids: campaign.device_ids(), phone: None, now };
        if let Pick::NoDevice = call(&self.env, campaign.app_id.as_str(), pick).await? {
            return Err(ApiError::NoDeviceAvailable);
        }
        campaigns::set_status(&self.sql(), to, None, now)?;
        self.alarm_at(now).await?;
        campaigns::view(&self.sql())
    }

    async fn pause(&self, PauseCampaign { app_id, now }: PauseCampaign) -> Result<CampaignView, ApiError> {
        let to = campaigns::campaign_of(&self.sql(), &app_id)?.allowed(Action::Pause)?;
        campaigns::set_status(&self.sql(), to, Some(PauseReason::Client.as_str()), now)?;
        campaigns::view(&self.sql())
    }

    async fn resume(&self, ResumeCampaign { app_id, now }: ResumeCampaign) -> Result<CampaignView, ApiError> {
        let to = campaigns::campaign_of(&self.sql(), &app_id)?.allowed(Action::Resume)?;
        campaigns::set_status(&self.sql(), to, None, now)?;
        campaigns::forget_outcomes(&self.sql())?;
        self.alarm_at(now).await?;
        campaigns::view(&self.sql())
    }

    async fn delete(&self, DeleteCampaign { app_id }: DeleteCampaign) -> Result<Deleted, ApiError> {
        let campaign = campaigns::campaign_of(&self.sql(), &app_id)?;
        campaign.allowed(Action::Delete)?;
        call(&self.env, campaign.app_id.as_str(), UnindexCampaign { campaign_id: campaign.id.clone() }).await?;
        self.state.storage().delete_alarm().await?;
        campaigns::delete(&self.sql())?;
        Ok(Deleted { id: campaign.id })
    }

    async fn outcome(&self, outcome: ContactOutcome) -> Result<(), ApiError> {
        let after = campaigns::outcome(&self.sql(), outcome, now_ms())?;
        let Ok(campaign) = campaigns::campaign(&self.sql()) else { return Ok(()) };
        match after {
            AfterOutcome::Nothing => Ok(()),
            AfterOutcome::Trip => self.auto_pause(&campaign, PauseReason::Failing).await,
            AfterOutcome::Moved => self.finish_if_done(&campaign).await,
        }
    }
}

impl CampaignObject {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
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
        let to = campaign.allowed(Action::AutoPause)?;
        campaigns::set_status(&self.sql(), to, Some(reason), now_ms())?;
        let what = What::CampaignPaused(CampaignPaused {
            campaign_id: campaign.id.clone(),
            name: campaign.name.clone(),
            reason: reason.to_owned(),
            progress: campaigns::progress(&self.sql())?.into(),
        });
        self.record(campaign, what).await
    }

    /// Completes the campaign once no contact is left to go out.
    async fn finish_if_done(&self, campaign: &CampaignRow) -> Result<(), ApiError> {
        let progress = campaigns::progress(&self.sql())?;
        if campaign.status != CampaignStatus::Sending || !progress.finished() {
            return Ok(());
        }
        let to = transition(CampaignStatus::Sending, Action::Complete).map_err(ApiError::internal)?;
        campaigns::set_status(&self.sql(), to, None, now_ms())?;
        let what = What::CampaignCompleted(CampaignCompleted {
            campaign_id: campaign.id.clone(),
            name: campaign.name.clone(),
            progress: progress.into(),
        });
        self.record(campaign, what).await
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
        let Ok(mut campaign) = campaigns::campaign(&self.sql()) else { return Ok(()) };
        let now = now_ms();
        match step(campaign.status, campaign.schedule_at, now) {
            Step::Idle => return Ok(()),
            Step::WaitUntil(at) => return self.alarm_at(at).await,
            Step::Start => {
                campaigns::set_status(&self.sql(), campaign.allowed(Action::Start)?, None, now)?;
                campaign = campaigns::campaign(&self.sql())?;
            }
            Step::Send => {}
        }
        let Some(contact) = campaigns::next_pending(&self.sql())? else {
            return self.finish_if_done(&campaign).await;
        };
        if contact.checked == 0 {
            return self.check_numbers(&campaign).await;
        }
        let pick = PickSender { device_ids: campaign.device_ids(), phone: Some(contact.phone.clone()), now };
        let device_id = match call(&self.env, campaign.app_id.as_str(), pick).await? {
            Pick::Device { device_id } => device_id,
            Pick::OptedOut => {
                campaigns::fail_contact(&self.sql(), contact.seq, "opted_out", now)?;
                return self.alarm_at(now + self.pace_ms()).await;
            }
            Pick::NoDevice => return self.auto_pause(&campaign, PauseReason::NoDevice).await,
            Pick::WarmingUp { until } => {
                campaigns::wait_for_warm_up(&self.sql(), Some(until))?;
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
        campaigns::wait_for_warm_up(&self.sql(), None)?;
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
        let (message_id, device_id) = (reservation.message_id.as_str(), reservation.device_id.as_str());
        campaigns::queued(&self.sql(), contact.seq, message_id, device_id, now)?;
        self.alarm_at(now + self.next_delay_ms(campaign.delay_seconds)).await
    }

    /// Asks WhatsApp which of the next numbers exist; those that do not end `not_on_whatsapp`
    /// without spending quota.
    async fn check_numbers(&self, campaign: &CampaignRow) -> Result<(), ApiError> {
        let now = now_ms();
        let batch = campaigns::unchecked(&self.sql(), CHECK_BATCH)?;
        let pick = PickSender { device_ids: campaign.device_ids(), phone: None, now };
        let Pick::Device { device_id } = call(&self.env, campaign.app_id.as_str(), pick).await? else {
            return self.auto_pause(campaign, PauseReason::NoDevice).await;
        };
        let request = CheckRequest { phones: batch.iter().map(|c| c.phone.clone()).collect() };
        let checked: CheckResponse =
            Bridge::from_env(&self.env)?.post(&check_path(device_id.as_str()), &request).await?;
        for contact in &batch {
            let exists = checked.results.iter().find(|r| r.phone == contact.phone).is_none_or(|r| r.exists);
            campaigns::checked(&self.sql(), contact.seq, exists, now)?;
        }
        self.alarm_at(now + self.pace_ms()).await
    }
}
