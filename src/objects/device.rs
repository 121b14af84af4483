//! One Durable Object per linked WhatsApp number: its pairing state, its
//! messages, and the paced send queue that alarms drain into the bridge.
//! Its storage and the rules it applies are `store::device`; this object runs the alarms,
//! talks to the bridge and carries the follow-ups to the other objects.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::future::select;
use wagate_contract::wire::{
    device_path, error_code, send_path, LinkRequest, LinkResponse, MediaRef, SendRequest, SendResponse, LINK_PATH,
};
use worker::{durable_object, Delay, DurableObject, Env, Request, Response, SqlStorage, State};

use super::retention;
use super::{call, end_alarm, migrate, serve};
use crate::bridge::{Bridge, CallError};
use crate::domain::device::DeviceStatus;
use crate::domain::error::ApiError;
use crate::domain::events::InboundMedia;
use crate::domain::ids::{AppId, MessageId};
use crate::domain::links;
use crate::domain::message::{MessageStatus, MAX_SEND_WAIT_MS};
use crate::domain::phone::Recipient;
use crate::protocol::app::AppOutboxOp;
use crate::protocol::device::{
    ApplyEvent, AwaitOutcome, CreateDevice, DeleteDevice, Device, DeviceHandler, DeviceView, Enqueue, GetDevice,
    GetMessage, MessageView, RefreshQr, Withdraw,
};
use crate::runtime::{config, iso, now_ms, required_config};
use crate::store::device::{self as store, FollowUp, MessageRow, Outbound, Outbox, Status, ToCampaign, MIGRATIONS};

/// How long a send attempt may stay unanswered before it is tried again
/// (the bridge's journal makes the retry harmless).
const SEND_LEASE_MS: u64 = 30_000;
/// Default gap between two sends from one number: a few per second is what
/// WhatsApp tolerates without flagging the number.
const DEFAULT_PACE_MS: u64 = 250;
const RETRY_BASE_MS: u64 = 1_000;
/// How long accepted messages wait for an offline device before they fail.
const DEFAULT_QUEUE_EXPIRY_MS: u64 = 24 * 60 * 60 * 1000;
const RETRY_MAX_MS: u64 = 60_000;

#[durable_object]
pub struct DeviceObject {
    state: State,
    env: Env,
    /// Send requests waiting for their message's outcome (`AwaitOutcome`), woken by whatever
    /// settles it. Memory only, on purpose: a wait is bounded by its request, so an object that
    /// restarts loses nothing durable (its waiters' requests end with it, answered as queued).
    /// The object runs on one thread and no borrow is held across an await.
    waiters: RefCell<HashMap<MessageId, Vec<oneshot::Sender<()>>>>,
}

impl DurableObject for DeviceObject {
    fn new(state: State, env: Env) -> Self {
        migrate(&state, "device", &MIGRATIONS);
        Self { state, env, waiters: RefCell::default() }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        serve::<Device, _>(req, |op| op.dispatch(self)).await
    }

    async fn alarm(&self) -> worker::Result<Response> {
        // No retry of its own: the tick arms the next alarm for whatever it left waiting.
        end_alarm(&self.state, "device alarm", self.tick().await, None).await
    }
}

impl DeviceHandler for DeviceObject {
    async fn create(&self, op: CreateDevice) -> Result<DeviceView, ApiError> {
        let (device_id, app_id) = (op.device_id.clone(), op.app_id.clone());
        store::create(&self.sql(), op)?;
        // Pairing starts now if the bridge answers; otherwise the alarm keeps trying.
        if let Err(e) = self.link().await {
            worker::console_warn!("linking {device_id} deferred: {e:?}");
            self.state.storage().set_alarm(RETRY_BASE_MS as i64).await?;
        }
        store::view(&self.sql(), &app_id)
    }

    async fn get(&self, GetDevice { app_id }: GetDevice) -> Result<DeviceView, ApiError> {
        store::view(&self.sql(), &app_id)
    }

    async fn refresh_qr(&self, RefreshQr { app_id, pair_phone }: RefreshQr) -> Result<DeviceView, ApiError> {
        if store::device_of(&self.sql(), &app_id)?.status == DeviceStatus::Online {
            return Err(ApiError::Conflict { message: "The device is connected; there is no QR to refresh".into() });
        }
        if let Some(phone) = pair_phone {
            store::pair_by_code(&self.sql(), phone)?;
        }
        self.link().await?;
        store::view(&self.sql(), &app_id)
    }

    async fn delete(&self, DeleteDevice { app_id }: DeleteDevice) -> Result<(), ApiError> {
        self.retire(&app_id).await
    }

    async fn enqueue(&self, Enqueue { message }: Enqueue) -> Result<MessageView, ApiError> {
        let sql = self.sql();
        store::device_of(&sql, &message.app_id)?;
        if store::withdrawn(&sql, &message.message_id)? {
            return Err(ApiError::Conflict { message: "This message was withdrawn; send it again".into() });
        }
        store::insert_message(&sql, &message)?;
        self.wake().await?;
        store::message(&sql, &message.app_id, &message.message_id)
    }

    async fn withdraw(&self, Withdraw { app_id, message_id }: Withdraw) -> Result<Option<MessageView>, ApiError> {
        let sql = self.sql();
        if store::message_row(&sql, &message_id)?.is_some_and(|m| m.app_id == app_id.as_str()) {
            self.wake().await?; // the failed enqueue may not have set the alarm
            return Ok(Some(store::message(&sql, &app_id, &message_id)?));
        }
        store::withdraw(&sql, &message_id, now_ms())?;
        Ok(None)
    }

    async fn get_message(&self, GetMessage { app_id, message_id }: GetMessage) -> Result<MessageView, ApiError> {
        store::message(&self.sql(), &app_id, &message_id)
    }

    /// Waits on a channel and a timer, never on storage, so the object's input gate stays open:
    /// the alarm that dispatches this very message, and the bridge's events, run meanwhile.
    async fn await_outcome(&self, op: AwaitOutcome) -> Result<MessageView, ApiError> {
        let AwaitOutcome { app_id, message_id, within_ms } = op;
        let sql = self.sql();
        let view = store::message(&sql, &app_id, &message_id)?;
        if store::wait_over(&sql, &message_id)? {
            return Ok(view);
        }
        // Registered before the first await: nothing can settle the message in between.
        let (woken, wake) = oneshot::channel();
        self.waiters.borrow_mut().entry(message_id.clone()).or_default().push(woken);
        let bound = Delay::from(Duration::from_millis(within_ms.min(MAX_SEND_WAIT_MS)));
        drop(select(wake, Box::pin(bound)).await);
        // Timed out: drop this request's waiter (its receiver is gone) and any others like it.
        self.waiters.borrow_mut().retain(|_, senders| {
            senders.retain(|sender| !sender.is_canceled());
            !senders.is_empty()
        });
        store::message(&self.sql(), &app_id, &message_id)
    }

    async fn event(&self, ApplyEvent { event, origin }: ApplyEvent) -> Result<(), ApiError> {
        let follow_ups = store::apply(&self.sql(), event, |media, at| self.media_view(media, &origin, at))?;
        self.follow_up(follow_ups).await
    }
}

impl DeviceObject {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    /// Asks the bridge for a pairing session and records what it answers.
    async fn link(&self) -> Result<(), ApiError> {
        let device = store::device(&self.sql())?;
        let bridge = Bridge::from_env(&self.env)?;
        let request = LinkRequest { device_id: device.device_id, pair_phone: device.pair_phone };
        let linked: LinkResponse = bridge.post(LINK_PATH, &request).await?;
        let sql = self.sql();
        let follow_ups = match (linked.qr, linked.phone) {
            (_, Some(phone)) => store::set_status(&sql, Status::Online { phone }, now_ms())?,
            (Some(qr), None) => {
                let follow_ups = store::set_status(&sql, Status::WaitingForScan { qr }, now_ms())?;
                if let Some(code) = linked.pair_code {
                    store::set_pair_code(&sql, code)?;
                }
                follow_ups
            }
            // Pairing started; the engine has no QR yet and reports it as an event.
            (None, None) => vec![],
        };
        self.follow_up(follow_ups).await
    }

    /// An inbound file as webhooks show it, with a link that serves it for a limited time.
    fn media_view(&self, media: &MediaRef, origin: &str, at: u64) -> Result<InboundMedia, ApiError> {
        let ttl = config(&self.env, "MEDIA_LINK_TTL_S").and_then(|v| v.parse().ok()).unwrap_or(links::MEDIA_TTL_S);
        let expires = at / 1000 + ttl;
        let key = required_config(&self.env, "WEBHOOK_KEY")?;
        let origin = config(&self.env, "PUBLIC_URL").unwrap_or_else(|| origin.to_owned());
        let path = links::media_path(key.as_bytes(), &media.sha256, &media.mime_type, expires);
        Ok(InboundMedia {
            mime_type: media.mime_type.clone(),
            size: media.size,
            sha256: media.sha256.clone(),
            file_name: media.file_name.clone(),
            url: format!("{}{path}", origin.trim_end_matches('/')),
            url_expires_at: iso(expires * 1000),
        })
    }

    /// Writes the follow-ups' outbox entries, then runs them. Every change to a message's status
    /// or the device's comes through here, so this is where waiting requests learn of it.
    async fn follow_up(&self, follow_ups: Vec<FollowUp>) -> Result<(), ApiError> {
        let drain = store::record(&self.sql(), follow_ups)?;
        self.wake_waiters();
        if drain {
            self.wake().await?;
        }
        self.flush_outboxes().await;
        Ok(())
    }

    /// Delivers the outboxes to the app's object and the campaigns, in order; on failure the
    /// alarm tries again.
    async fn flush_outboxes(&self) {
        let result = match self.flush_app_outbox().await {
            Ok(()) => self.flush_campaign_outbox().await,
            failed => failed,
        };
        if let Err(e) = result {
            worker::console_warn!("outbox delivery deferred: {e}");
            if let Err(e) = self.alarm_within(RETRY_BASE_MS).await {
                worker::console_error!("cannot schedule the outbox retry: {e}");
            }
        }
    }

    async fn flush_app_outbox(&self) -> Result<(), ApiError> {
        let sql = self.sql();
        let app_id = store::device(&sql)?.app_id;
        while let Some(entry) = store::next_app_op(&sql)? {
            let (seq, op) = match entry {
                Outbound::Op { seq, op } => (seq, op),
                Outbound::DeadLetter { seq, error } => {
                    worker::console_error!("app outbox entry {seq} dropped: {error}");
                    continue;
                }
            };
            let reply = match op {
                AppOutboxOp::Record(op) => call(&self.env, &app_id, op).await?.auto_reply,
                AppOutboxOp::DeviceChanged(op) => call(&self.env, &app_id, op).await.map(|()| None)?,
                AppOutboxOp::RemoveDevice(op) => call(&self.env, &app_id, op).await.map(|()| None)?,
                AppOutboxOp::Refund(op) => call(&self.env, &app_id, op).await.map(|()| None)?,
            };
            // Queued with the outbox entry's removal, so a reply is neither lost nor doubled.
            let replied = reply.is_some();
            if let Some(reply) = reply {
                store::queue_auto_reply(&sql, &app_id, reply, now_ms())?;
            }
            store::delivered(&sql, Outbox::App, seq)?;
            if replied {
                self.wake().await?;
            }
        }
        Ok(())
    }

    /// A campaign deleted meanwhile is not found, and its entries are dropped.
    async fn flush_campaign_outbox(&self) -> Result<(), ApiError> {
        let sql = self.sql();
        while let Some(entry) = store::next_campaign_outcome(&sql)? {
            let (seq, ToCampaign { campaign_id, outcome }) = match entry {
                Outbound::Op { seq, op } => (seq, op),
                Outbound::DeadLetter { seq, error } => {
                    worker::console_error!("campaign outbox entry {seq} dropped: {error}");
                    continue;
                }
            };
            match call(&self.env, &campaign_id, outcome).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            store::delivered(&sql, Outbox::Campaign, seq)?;
        }
        Ok(())
    }

    /// Logs out at the bridge first: if that fails the device stays, and the client can retry.
    async fn retire(&self, app_id: &AppId) -> Result<(), ApiError> {
        let device = store::device_of(&self.sql(), app_id)?;
        match Bridge::from_env(&self.env)?.delete(&device_path(&device.device_id)).await {
            Ok(()) => {}
            Err(CallError::Refused { error, .. }) if error.code == error_code::DEVICE_NOT_FOUND => {}
            Err(e) => return Err(e.into()),
        }
        let follow_ups = store::retire(&self.sql(), &device, now_ms())?;
        self.follow_up(follow_ups).await
    }

    /// Wakes the requests whose wait is over (`store::wait_over`); they read the message
    /// themselves once this task yields. Should storage fail here they are woken too: each
    /// answers with what it can read, and the edge takes a failed read as "queued".
    fn wake_waiters(&self) {
        let sql = self.sql();
        let mut waiters = self.waiters.borrow_mut();
        let over: Vec<MessageId> =
            waiters.keys().filter(|id| store::wait_over(&sql, id).unwrap_or(true)).cloned().collect();
        for sender in over.iter().filter_map(|id| waiters.remove(id)).flatten() {
            // A waiter that timed out meanwhile has no receiver left: nothing to tell.
            let _ = sender.send(());
        }
    }

    /// Makes sure the queue drains from the earliest moment the pace allows. A pending
    /// alarm may sit further out (a send lease, a retry backoff), so it is brought forward.
    async fn wake(&self) -> Result<(), ApiError> {
        let device = store::device(&self.sql())?;
        self.alarm_within((device.last_dispatch_at + self.pace_ms()).saturating_sub(now_ms())).await
    }

    /// Makes the alarm fire within `delay_ms` from now, keeping an earlier one.
    async fn alarm_within(&self, delay_ms: u64) -> Result<(), ApiError> {
        let now = now_ms();
        let storage = self.state.storage();
        match storage.get_alarm().await? {
            Some(at) if at as u64 <= now + delay_ms => {}
            _ => storage.set_alarm(delay_ms as i64).await?,
        }
        Ok(())
    }

    fn pace_ms(&self) -> u64 {
        config(&self.env, "DEVICE_PACE_MS").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_PACE_MS)
    }

    /// One alarm: finish pairing if it is pending, else send the next due message
    /// and schedule the next tick at the device's pace.
    async fn tick(&self) -> Result<(), ApiError> {
        self.flush_outboxes().await;
        let now = now_ms();
        let trimmed = match retention::due(&self.state.storage(), &self.env, now).await {
            Ok(Some(cutoff)) => store::trim(&self.sql(), cutoff),
            other => other.map(drop),
        };
        if let Err(e) = trimmed {
            worker::console_error!("trimming history: {e}");
        }
        let device = store::device(&self.sql())?;
        if device.status == DeviceStatus::Registering {
            if let Err(e) = self.link().await {
                worker::console_warn!("linking {} deferred: {e:?}", device.device_id);
                self.state.storage().set_alarm(RETRY_BASE_MS as i64 * 5).await?;
            }
            return Ok(());
        }
        self.expire_codes(now).await?;
        if device.status != DeviceStatus::Online {
            // The Connected event wakes the queue again; until then messages wait, up to the expiry.
            return self.expire_waiting(now).await;
        }
        if let Some(row) = store::due(&self.sql(), now)? {
            self.dispatch(row, now).await?;
        }
        if let Some(next) = store::next_attempt(&self.sql())? {
            let delay = next.saturating_sub(now_ms()).max(self.pace_ms());
            self.state.storage().set_alarm(delay as i64).await?;
        }
        Ok(())
    }

    /// Fails the one-time codes still waiting when their code expires, online or not, and wakes
    /// up again when the next one would.
    async fn expire_codes(&self, now: u64) -> Result<(), ApiError> {
        self.follow_up(store::expire_codes(&self.sql(), now)?).await?;
        if let Some(next) = store::next_code_expiry(&self.sql())? {
            self.alarm_within(next.saturating_sub(now)).await?;
        }
        Ok(())
    }

    /// Fails the queued messages that waited for an offline device longer than the expiry,
    /// and wakes up again when the next one would.
    async fn expire_waiting(&self, now: u64) -> Result<(), ApiError> {
        let expiry =
            config(&self.env, "QUEUE_EXPIRY_MS").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_QUEUE_EXPIRY_MS);
        let reason = format!("the device stayed offline for longer than {} s", expiry / 1000);
        self.follow_up(store::expire_waiting(&self.sql(), now.saturating_sub(expiry), &reason, now)?).await?;
        if let Some(oldest) = store::oldest_queued(&self.sql())? {
            self.alarm_within((oldest + expiry).saturating_sub(now)).await?;
        }
        Ok(())
    }

    async fn dispatch(&self, row: MessageRow, now: u64) -> Result<(), ApiError> {
        let sql = self.sql();
        let id = MessageId::parse(&row.id).ok_or_else(|| ApiError::internal("stored message id is malformed"))?;
        let attempts = row.attempts + 1;
        store::lease(&sql, &id, attempts, now + SEND_LEASE_MS)?;
        let recipient: Recipient = serde_json::from_str(&row.recipient).map_err(ApiError::internal)?;
        let request = SendRequest {
            message_id: row.id.clone(),
            to: recipient.jid(),
            content: serde_json::from_str(&row.content).map_err(ApiError::internal)?,
            sensitive: row.sensitive != 0,
            // A code still waiting at the bridge when it expires must not go out either.
            expires_at_ms: row.expires_at,
        };
        let bridge = Bridge::from_env(&self.env)?;
        let answer = bridge.post::<_, SendResponse>(&send_path(&store::device(&sql)?.device_id), &request).await;
        // The pace runs from the moment the bridge has the message, so WhatsApp never sees two
        // sends closer together than the pace, however long each hand-over took.
        store::dispatched(&sql, now_ms())?;
        let follow_ups = match answer {
            Ok(SendResponse::Accepted) => vec![],
            Ok(SendResponse::Sent { external_id }) => {
                store::advance(&sql, &row.id, MessageStatus::Sent, now_ms(), Some(external_id), None)?
            }
            Ok(SendResponse::Failed { code, reason }) => {
                store::advance(&sql, &row.id, MessageStatus::Failed, now_ms(), None, Some((code, reason)))?
            }
            Err(e) => {
                let offline =
                    matches!(&e, CallError::Refused { error, .. } if error.code == error_code::DEVICE_OFFLINE);
                worker::console_warn!("send {} deferred: {e:?}", row.id);
                let backoff = (RETRY_BASE_MS << attempts.min(6)).min(RETRY_MAX_MS);
                store::requeue(&sql, &id, now_ms() + backoff)?;
                if offline {
                    let reason = "the bridge reports the device is not connected".to_owned();
                    store::set_status(&sql, Status::Offline { reason, logged_out: false }, now_ms())?
                } else {
                    vec![]
                }
            }
        };
        self.follow_up(follow_ups).await
    }
}
