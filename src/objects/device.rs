//! One Durable Object per linked WhatsApp number: its pairing state, its
//! messages, and the paced send queue that alarms drain into the bridge.

use serde::Deserialize;
use serde_json::json;
use wagate_contract::wire::{
    device_path, error_code, send_path, BridgeEvent, Content, EventKind, LinkRequest, LinkResponse, MediaRef,
    SendRequest, SendResponse, LINK_PATH,
};
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, State};

use super::retention;
use super::{call, end_alarm, int, migrate, number, rows, serve};
use crate::bridge::{Bridge, CallError};
use crate::domain::device::{self, DeviceStatus, Signal};
use crate::domain::error::ApiError;
use crate::domain::events::{
    DeviceConnected, DeviceDisconnected, Event, InboundMedia, Incoming, MessageProgress, QrReady, What,
};
use crate::domain::ids::{trace_id, AppId, DeviceId, MessageId};
use crate::domain::links;
use crate::domain::message::{MessageStatus, Priority};
use crate::domain::phone::Recipient;
use crate::domain::schema::Migration;
use crate::protocol::app::AutoReply;
use crate::protocol::app::{self, AppOutboxOp};
use crate::protocol::campaign::{CampaignOp, ContactOutcome};
use crate::protocol::device::{
    ApplyEvent, CampaignRef, CreateDevice, DeleteDevice, Device, DeviceHandler, DeviceView, Enqueue, GetDevice,
    GetMessage, MessageView, NewMessage, RefreshQr, Withdraw,
};
use crate::runtime::{config, iso, now_ms, required_config};

/// How long a send attempt may stay unanswered before it is tried again
/// (the bridge's journal makes the retry harmless).
const SEND_LEASE_MS: u64 = 30_000;
/// Default gap between two sends from one number: a few per second is what
/// WhatsApp tolerates without flagging the number.
const DEFAULT_PACE_MS: u64 = 250;
const RETRY_BASE_MS: u64 = 1_000;
/// What a one-time code message shows once it left: the code itself is not kept.
const WITHHELD_TEXT: &str = "[one-time code withheld]";
/// How long accepted messages wait for an offline device before they fail.
const DEFAULT_QUEUE_EXPIRY_MS: u64 = 24 * 60 * 60 * 1000;
const RETRY_MAX_MS: u64 = 60_000;

#[derive(Deserialize)]
struct DeviceRow {
    device_id: String,
    app_id: String,
    label: Option<String>,
    status: DeviceStatus,
    qr: Option<String>,
    pair_phone: Option<String>,
    pair_code: Option<String>,
    phone: Option<String>,
    disconnect_reason: Option<String>,
    deleted: i64,
    created_at: u64,
    last_seen_at: Option<u64>,
    last_dispatch_at: u64,
}

#[derive(Deserialize)]
struct MessageRow {
    id: String,
    app_id: String,
    recipient: String,
    content: String,
    status: String,
    external_id: Option<String>,
    error_code: Option<String>,
    error_reason: Option<String>,
    trace_id: String,
    created_at: u64,
    sent_at: Option<u64>,
    delivered_at: Option<u64>,
    read_at: Option<u64>,
    failed_at: Option<u64>,
    attempts: u64,
    sensitive: i64,
    /// A one-time code's expiry (Unix ms), from `NewMessage::code_expires_at`.
    expires_at: Option<u64>,
}

#[derive(Deserialize)]
struct Due {
    next_attempt_at: u64,
}

/// Where a device's pairing and connection stand.
enum Status {
    WaitingForScan { qr: String },
    Online { phone: String },
    Offline { reason: String, logged_out: bool },
}

/// Work that follows a state change. Operations on the app's object go through a durable
/// outbox in this object, written with the change itself, so a failed call is retried by the
/// alarm rather than lost; they are idempotent, so a retry that overlaps does no harm.
enum FollowUp {
    App(AppOutboxOp),
    Campaign { campaign_id: String, op: CampaignOp },
    DrainQueue,
}

#[derive(Deserialize)]
struct PendingAppOp {
    seq: i64,
    op: String,
}

/// Oldest first; append, never edit (see `domain::schema`).
const MIGRATIONS: [Migration; 2] = [
    Migration::Sql(&[
        "CREATE TABLE IF NOT EXISTS device (
            one INTEGER PRIMARY KEY CHECK (one = 1), device_id TEXT NOT NULL, app_id TEXT NOT NULL, label TEXT,
            status TEXT NOT NULL, qr TEXT, pair_phone TEXT, pair_code TEXT, phone TEXT, disconnect_reason TEXT,
            deleted INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, last_seen_at INTEGER,
            last_dispatch_at INTEGER NOT NULL DEFAULT 0)",
        "CREATE TABLE IF NOT EXISTS messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, app_id TEXT NOT NULL,
            recipient TEXT NOT NULL, content TEXT NOT NULL, status TEXT NOT NULL, external_id TEXT,
            error_code TEXT, error_reason TEXT, trace_id TEXT NOT NULL, meta TEXT, created_at INTEGER NOT NULL,
            sent_at INTEGER, delivered_at INTEGER, read_at INTEGER, failed_at INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL DEFAULT 0,
            priority INTEGER NOT NULL DEFAULT 1, sensitive INTEGER NOT NULL DEFAULT 0)",
        "CREATE INDEX IF NOT EXISTS messages_due ON messages (status, priority, seq)",
        "CREATE TABLE IF NOT EXISTS applied_events (event_id TEXT PRIMARY KEY, at INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS app_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS campaign_messages (
            message_id TEXT PRIMARY KEY, campaign_id TEXT NOT NULL, contact INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS campaign_outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, campaign_id TEXT NOT NULL, op TEXT NOT NULL)",
        // Message ids this device answered it never stored (`Withdraw`): refused from then on.
        "CREATE TABLE IF NOT EXISTS withdrawn (message_id TEXT PRIMARY KEY, at INTEGER NOT NULL)",
    ]),
    // Added on every construction by releases from before versioning.
    Migration::AddColumns(&[("messages", "expires_at", "INTEGER")]),
];

#[durable_object]
pub struct DeviceObject {
    state: State,
    env: Env,
}

impl DurableObject for DeviceObject {
    fn new(state: State, env: Env) -> Self {
        migrate(&state, "device", &MIGRATIONS);
        Self { state, env }
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
        let CreateDevice { device_id, app_id, label, pair_phone, now } = op;
        self.sql().exec(
            "INSERT INTO device (one, device_id, app_id, label, status, pair_phone, created_at)
             VALUES (1, ?, ?, ?, ?, ?, ?)",
            vec![
                device_id.as_str().into(),
                app_id.as_str().into(),
                label.into(),
                DeviceStatus::Registering.as_str().into(),
                pair_phone.into(),
                int(now),
            ],
        )?;
        // Pairing starts now if the bridge answers; otherwise the alarm keeps trying.
        if let Err(e) = self.link().await {
            worker::console_warn!("linking {device_id} deferred: {e:?}");
            self.state.storage().set_alarm(RETRY_BASE_MS as i64).await?;
        }
        self.view(&app_id)
    }

    async fn get(&self, GetDevice { app_id }: GetDevice) -> Result<DeviceView, ApiError> {
        self.view(&app_id)
    }

    async fn refresh_qr(&self, RefreshQr { app_id, pair_phone }: RefreshQr) -> Result<DeviceView, ApiError> {
        if self.device_of(&app_id)?.status == DeviceStatus::Online {
            return Err(ApiError::Conflict { message: "The device is connected; there is no QR to refresh".into() });
        }
        if let Some(phone) = pair_phone {
            self.sql().exec("UPDATE device SET pair_phone = ?, pair_code = NULL", vec![phone.into()])?;
        }
        self.link().await?;
        self.view(&app_id)
    }

    async fn delete(&self, DeleteDevice { app_id }: DeleteDevice) -> Result<(), ApiError> {
        self.retire(&app_id).await
    }

    async fn enqueue(&self, Enqueue { message }: Enqueue) -> Result<MessageView, ApiError> {
        self.device_of(&message.app_id)?;
        let withdrawn = "SELECT COUNT(*) AS n FROM withdrawn WHERE message_id = ?";
        if number(&self.sql(), withdrawn, vec![message.message_id.as_str().into()])?.unwrap_or(0) > 0 {
            return Err(ApiError::Conflict { message: "This message was withdrawn; send it again".into() });
        }
        self.insert_message(&message)?;
        self.wake().await?;
        self.message(&message.app_id, &message.message_id)
    }

    async fn withdraw(&self, Withdraw { app_id, message_id }: Withdraw) -> Result<Option<MessageView>, ApiError> {
        if self.message_row(&message_id)?.is_some_and(|m| m.app_id == app_id.as_str()) {
            self.wake().await?; // the failed enqueue may not have set the alarm
            return Ok(Some(self.message(&app_id, &message_id)?));
        }
        self.sql().exec(
            "INSERT OR IGNORE INTO withdrawn (message_id, at) VALUES (?, ?)",
            vec![message_id.as_str().into(), int(now_ms())],
        )?;
        Ok(None)
    }

    async fn get_message(&self, GetMessage { app_id, message_id }: GetMessage) -> Result<MessageView, ApiError> {
        self.message(&app_id, &message_id)
    }

    async fn event(&self, ApplyEvent { event, origin }: ApplyEvent) -> Result<(), ApiError> {
        let follow_ups = self.apply(event, &origin)?;
        self.follow_up(follow_ups).await
    }
}

impl DeviceObject {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    /// Queues a message; a retried insert of the same id changes nothing.
    fn insert_message(&self, message: &NewMessage) -> Result<(), ApiError> {
        self.sql().exec(
            "INSERT OR IGNORE INTO messages
             (id, app_id, recipient, content, status, trace_id, meta, created_at, priority, sensitive, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            vec![
                message.message_id.as_str().into(),
                message.app_id.as_str().into(),
                serde_json::to_string(&message.recipient).map_err(ApiError::internal)?.into(),
                serde_json::to_string(&message.content).map_err(ApiError::internal)?.into(),
                MessageStatus::Queued.as_str().into(),
                message.trace_id.as_str().into(),
                message.meta.as_ref().map(|m| m.to_string()).into(),
                int(message.now),
                int(message.priority.rank()),
                int(message.code_expires_at.is_some() as u64),
                message.code_expires_at.map(int).into(),
            ],
        )?;
        if let Some(campaign) = &message.campaign {
            self.sql().exec(
                "INSERT OR IGNORE INTO campaign_messages (message_id, campaign_id, contact) VALUES (?, ?, ?)",
                vec![message.message_id.as_str().into(), campaign.campaign_id.as_str().into(), campaign.contact.into()],
            )?;
        }
        Ok(())
    }

    /// Queues the auto-reply the app's rules chose for an inbound message, quota reserved.
    fn queue_auto_reply(&self, app_id: &str, reply: AutoReply) -> Result<(), ApiError> {
        let (Some(message_id), Some(app_id)) = (MessageId::parse(&reply.message_id), AppId::parse(app_id)) else {
            return Err(ApiError::internal("an auto-reply names a malformed id"));
        };
        let recipient = Recipient::parse(&reply.to, None).map_err(|e| ApiError::internal(format!("{e:?}")))?;
        self.insert_message(&NewMessage {
            message_id,
            app_id,
            recipient,
            content: Content::Text { text: reply.text },
            trace_id: trace_id(),
            meta: Some(json!({"auto_reply_rule": reply.rule_id})),
            priority: Priority::Normal,
            code_expires_at: None,
            campaign: None,
            now: now_ms(),
        })
    }

    fn device(&self) -> Result<DeviceRow, ApiError> {
        rows::<DeviceRow>(self.sql().exec("SELECT * FROM device", None)?)?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found("device"))
    }

    /// The device, provided it belongs to `app_id`: other apps get a plain 404.
    fn device_of(&self, app_id: &AppId) -> Result<DeviceRow, ApiError> {
        let device = self.device()?;
        if device.app_id == app_id.as_str() && device.deleted == 0 {
            Ok(device)
        } else {
            Err(ApiError::not_found("device"))
        }
    }

    fn device_id(&self, device: &DeviceRow) -> Result<DeviceId, ApiError> {
        DeviceId::parse(&device.device_id).ok_or_else(|| ApiError::internal("stored device id is malformed"))
    }

    fn view(&self, app_id: &AppId) -> Result<DeviceView, ApiError> {
        let d = self.device_of(app_id)?;
        Ok(DeviceView {
            device_id: d.device_id,
            label: d.label,
            status: d.status,
            qr: d.qr,
            pair_code: d.pair_code,
            phone: d.phone,
            disconnect_reason: d.disconnect_reason,
            created_at: d.created_at,
            last_seen_at: d.last_seen_at,
        })
    }

    fn message_row(&self, message_id: &MessageId) -> Result<Option<MessageRow>, ApiError> {
        Ok(rows::<MessageRow>(
            self.sql().exec("SELECT * FROM messages WHERE id = ?", vec![message_id.as_str().into()])?,
        )?
        .into_iter()
        .next())
    }

    fn message(&self, app_id: &AppId, message_id: &MessageId) -> Result<MessageView, ApiError> {
        let row = self
            .message_row(message_id)?
            .filter(|m| m.app_id == app_id.as_str())
            .ok_or_else(|| ApiError::not_found("message"))?;
        let decode = |e: serde_json::Error| ApiError::internal(format!("stored message {} is corrupt: {e}", row.id));
        Ok(MessageView {
            device_id: message_id.device().to_string(),
            recipient: serde_json::from_str(&row.recipient).map_err(decode)?,
            content: serde_json::from_str(&row.content).map_err(decode)?,
            status: MessageStatus::parse(&row.status).ok_or_else(|| ApiError::internal("stored status is unknown"))?,
            id: row.id,
            external_id: row.external_id,
            error_code: row.error_code,
            error_reason: row.error_reason,
            trace_id: row.trace_id,
            created_at: row.created_at,
            sent_at: row.sent_at,
            delivered_at: row.delivered_at,
            read_at: row.read_at,
            failed_at: row.failed_at,
        })
    }

    /// Asks the bridge for a pairing session and records what it answers.
    async fn link(&self) -> Result<(), ApiError> {
        let device = self.device()?;
        let bridge = Bridge::from_env(&self.env)?;
        let request = LinkRequest { device_id: device.device_id.clone(), pair_phone: device.pair_phone.clone() };
        let linked: LinkResponse = bridge.post(LINK_PATH, &request).await?;
        let follow_ups = match (linked.qr, linked.phone) {
            (_, Some(phone)) => self.set_status(Status::Online { phone }, now_ms())?,
            (Some(qr), None) => {
                let follow_ups = self.set_status(Status::WaitingForScan { qr }, now_ms())?;
                if let Some(code) = linked.pair_code {
                    self.sql().exec("UPDATE device SET pair_code = ?", vec![code.into()])?;
                }
                follow_ups
            }
            // Pairing started; the engine has no QR yet and reports it as an event.
            (None, None) => vec![],
        };
        self.follow_up(follow_ups).await
    }

    /// Records a new pairing/connection state, if `domain::device::transition` makes one of
    /// it, and the follow-ups it asks for.
    fn set_status(&self, status: Status, at: u64) -> Result<Vec<FollowUp>, ApiError> {
        let device = self.device()?;
        let current = if device.deleted != 0 { DeviceStatus::Deleted } else { device.status };
        let signal = match status {
            Status::WaitingForScan { .. } => Signal::QrShown,
            Status::Online { .. } => Signal::Connected,
            Status::Offline { .. } => Signal::Disconnected,
        };
        let Some(transition) = device::transition(current, signal) else { return Ok(vec![]) };
        let device_id = self.device_id(&device)?;
        let next = transition.status;
        let (qr, phone, reason, what) = match status {
            Status::WaitingForScan { qr } => {
                let what =
                    What::DeviceQrReady(QrReady { device_id: device_id.clone(), status: next, qr_code: qr.clone() });
                (Some(qr), None, None, what)
            }
            Status::Online { phone } => {
                let what = What::DeviceConnected(DeviceConnected {
                    device_id: device_id.clone(),
                    status: next,
                    phone_number: phone.clone(),
                });
                (None, Some(phone), None, what)
            }
            Status::Offline { reason, logged_out } => {
                let what = What::DeviceDisconnected(DeviceDisconnected {
                    device_id: device_id.clone(),
                    status: next,
                    phone_number: device.phone.clone(),
                    reason: reason.clone(),
                    logged_out,
                });
                (None, None, Some(reason), what)
            }
        };
        // A pair code belongs to one pairing session: it goes once the device links or drops.
        self.sql().exec(
            "UPDATE device SET status = ?1, qr = ?2, phone = COALESCE(?3, phone), disconnect_reason = ?4,
             last_seen_at = ?5, pair_code = CASE WHEN ?6 THEN pair_code END",
            vec![
                next.as_str().into(),
                qr.into(),
                phone.clone().into(),
                reason.into(),
                int(at),
                int((next == DeviceStatus::QrWaiting) as u64),
            ],
        )?;
        let mut announce = Some((what, phone));
        let follow_ups = transition.follow_ups.iter().filter_map(|follow_up| match follow_up {
            device::FollowUp::Announce => announce.take().map(|(what, phone)| {
                let event = Event::new(Some(device_id.clone()), at, what);
                let op = app::DeviceChanged { device_id: device_id.clone(), status: next, phone, event };
                FollowUp::App(AppOutboxOp::DeviceChanged(op))
            }),
            device::FollowUp::DrainQueue => Some(FollowUp::DrainQueue),
        });
        Ok(follow_ups.collect())
    }

    /// Applies a bridge event once; a redelivered event id is acknowledged and ignored.
    fn apply(&self, event: BridgeEvent, origin: &str) -> Result<Vec<FollowUp>, ApiError> {
        let seen = number(
            &self.sql(),
            "SELECT COUNT(*) AS n FROM applied_events WHERE event_id = ?",
            vec![event.event_id.as_str().into()],
        )?;
        if seen.unwrap_or(0) > 0 || self.device().map_or(true, |d| d.deleted != 0) {
            return Ok(vec![]);
        }
        self.sql().exec(
            "INSERT INTO applied_events (event_id, at) VALUES (?, ?)",
            vec![event.event_id.into(), int(event.at_ms)],
        )?;
        let at = event.at_ms;
        match event.kind {
            EventKind::QrUpdated { qr } => self.set_status(Status::WaitingForScan { qr }, at),
            EventKind::PairCode { code } => {
                self.sql().exec("UPDATE device SET pair_code = ?", vec![code.into()])?;
                Ok(vec![])
            }
            EventKind::Connected { phone } => self.set_status(Status::Online { phone }, at),
            EventKind::Disconnected { reason, logged_out } => {
                self.set_status(Status::Offline { reason, logged_out }, at)
            }
            EventKind::MessageSent { message_id, external_id } => {
                self.advance(&message_id, MessageStatus::Sent, "sent_at", at, Some(external_id), None)
            }
            EventKind::MessageDelivered { message_id } => {
                self.advance(&message_id, MessageStatus::Delivered, "delivered_at", at, None, None)
            }
            EventKind::MessageRead { message_id } => {
                self.advance(&message_id, MessageStatus::Read, "read_at", at, None, None)
            }
            EventKind::MessageFailed { message_id, code, reason } => {
                self.advance(&message_id, MessageStatus::Failed, "failed_at", at, None, Some((code, reason)))
            }
            EventKind::Inbound { external_id, from, push_name, content } => {
                let device_id = self.device_id(&self.device()?)?;
                let group = from.ends_with("@g.us");
                let from = from.split('@').next().unwrap_or_default().to_owned();
                let (kind, body) = match &content {
                    Content::Text { text } => ("text", Some(text.clone())),
                    Content::Media { kind, caption, .. } => (kind.as_str(), caption.clone()),
                    Content::Location { name, .. } => ("location", name.clone()),
                    Content::Reaction { emoji, .. } => ("reaction", Some(emoji.clone())),
                };
                let media = match &content {
                    Content::Media { media, .. } => Some(self.media_view(media, origin, at)?),
                    _ => None,
                };
                let what = What::MessageIncoming(Box::new(Incoming {
                    message_id: MessageId::generate(&device_id),
                    from,
                    body,
                    device_id: device_id.clone(),
                    external_id,
                    name: push_name,
                    group,
                    kind: kind.to_owned(),
                    content,
                    media,
                    auto_reply: None,
                }));
                let event = Event::new(Some(device_id), at, what);
                Ok(vec![FollowUp::App(AppOutboxOp::Record(app::Record { event }))])
            }
        }
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

    /// Moves a message forward in its lifecycle, stamping `time_column`. Receipts
    /// that skip a step (read before delivered) stamp the skipped steps too.
    fn advance(
        &self,
        message_id: &str,
        next: MessageStatus,
        time_column: &str,
        at: u64,
        external_id: Option<String>,
        failure: Option<(String, String)>,
    ) -> Result<Vec<FollowUp>, ApiError> {
        let Some(id) = MessageId::parse(message_id) else { return Ok(vec![]) };
        let Some(row) = self.message_row(&id)? else { return Ok(vec![]) };
        let current =
            MessageStatus::parse(&row.status).ok_or_else(|| ApiError::internal("stored status is unknown"))?;
        if !current.can_become(next) {
            return Ok(vec![]);
        }
        let (code, reason) = failure.unzip();
        self.sql().exec(
            &format!(
                "UPDATE messages SET status = ?, {time_column} = ?, external_id = COALESCE(?, external_id),
                 error_code = COALESCE(?, error_code), error_reason = COALESCE(?, error_reason),
                 sent_at = CASE WHEN ? THEN COALESCE(sent_at, ?) ELSE sent_at END,
                 delivered_at = CASE WHEN ? THEN COALESCE(delivered_at, ?) ELSE delivered_at END
                 WHERE id = ?"
            ),
            vec![
                next.as_str().into(),
                int(at),
                external_id.into(),
                code.into(),
                reason.into(),
                int(matches!(next, MessageStatus::Delivered | MessageStatus::Read) as u64),
                int(at),
                int((next == MessageStatus::Read) as u64),
                int(at),
                id.as_str().into(),
            ],
        )?;
        if row.sensitive != 0 && matches!(next, MessageStatus::Sent | MessageStatus::Failed) {
            let withheld = Content::Text { text: WITHHELD_TEXT.into() };
            let withheld = serde_json::to_string(&withheld).map_err(ApiError::internal)?;
            self.sql()
                .exec("UPDATE messages SET content = ? WHERE id = ?", vec![withheld.into(), id.as_str().into()])?;
        }
        let recipient: Recipient = serde_json::from_str(&row.recipient).map_err(ApiError::internal)?;
        let updated = self.message_row(&id)?.ok_or_else(|| ApiError::internal("message vanished"))?;
        let device_id = id.device();
        let progress = MessageProgress {
            message_id: id.clone(),
            device_id: device_id.clone(),
            phone: recipient.display(),
            remote_jid: recipient.jid(),
            status: next,
            external_id: updated.external_id,
            error_code: updated.error_code.clone(),
            error_reason: updated.error_reason,
            trace_id: updated.trace_id,
        };
        let Some(what) = What::of_message(next, progress) else { return Ok(vec![]) };
        let mut follow_ups =
            vec![FollowUp::App(AppOutboxOp::Record(app::Record { event: Event::new(Some(device_id), at, what) }))];
        let campaign = rows::<CampaignRef>(self.sql().exec(
            "SELECT campaign_id, contact FROM campaign_messages WHERE message_id = ?",
            vec![id.as_str().into()],
        )?)?;
        if let Some(CampaignRef { campaign_id, contact }) = campaign.into_iter().next() {
            let op = CampaignOp::Outcome(ContactOutcome {
                contact,
                message_id: id.to_string(),
                status: next,
                error_code: updated.error_code,
            });
            follow_ups.push(FollowUp::Campaign { campaign_id, op });
        }
        if next == MessageStatus::Failed {
            follow_ups.push(FollowUp::App(AppOutboxOp::Refund(app::Refund { message_id: id })));
        }
        Ok(follow_ups)
    }

    async fn follow_up(&self, follow_ups: Vec<FollowUp>) -> Result<(), ApiError> {
        let mut drain = false;
        for follow_up in follow_ups {
            match follow_up {
                FollowUp::App(op) => {
                    let op = serde_json::to_string(&op).map_err(ApiError::internal)?;
                    self.sql().exec("INSERT INTO app_outbox (op) VALUES (?)", vec![op.into()])?;
                }
                FollowUp::Campaign { campaign_id, op } => {
                    let op = serde_json::to_string(&op).map_err(ApiError::internal)?;
                    self.sql().exec(
                        "INSERT INTO campaign_outbox (campaign_id, op) VALUES (?, ?)",
                        vec![campaign_id.into(), op.into()],
                    )?;
                }
                FollowUp::DrainQueue => drain = true,
            }
        }
        if drain {
            self.wake().await?;
        }
        self.flush_app_outbox().await;
        Ok(())
    }

    /// Delivers the outbox to the app's object in order; on failure the alarm tries again.
    async fn flush_app_outbox(&self) {
        let result: Result<(), ApiError> = async {
            let app_id = self.device()?.app_id;
            loop {
                let pending = rows::<PendingAppOp>(
                    self.sql().exec("SELECT seq, op FROM app_outbox ORDER BY seq LIMIT 1", None)?,
                )?;
                let Some(pending) = pending.into_iter().next() else { return Ok(()) };
                let op = match serde_json::from_str::<AppOutboxOp>(&pending.op) {
                    Ok(op) => op,
                    Err(e) => {
                        // It would block every entry behind it forever: dropped, logged without
                        // its text (serde's message may quote a message's).
                        worker::console_error!(
                            "app outbox entry {} dropped: {:?} error at {}:{}",
                            pending.seq,
                            e.classify(),
                            e.line(),
                            e.column()
                        );
                        self.sql().exec("DELETE FROM app_outbox WHERE seq = ?", vec![pending.seq.into()])?;
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
                    self.queue_auto_reply(&app_id, reply)?;
                }
                self.sql().exec("DELETE FROM app_outbox WHERE seq = ?", vec![pending.seq.into()])?;
                if replied {
                    self.wake().await?;
                }
            }
        }
        .await;
        let result = match result {
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

    /// Campaign progress, in order per campaign; a campaign deleted meanwhile is not found
    /// and its entries are dropped.
    async fn flush_campaign_outbox(&self) -> Result<(), ApiError> {
        #[derive(Deserialize)]
        struct Pending {
            seq: i64,
            campaign_id: String,
            op: String,
        }
        loop {
            let pending =
                rows::<Pending>(self.sql().exec("SELECT * FROM campaign_outbox ORDER BY seq LIMIT 1", None)?)?;
            let Some(pending) = pending.into_iter().next() else { return Ok(()) };
            let CampaignOp::Outcome(outcome) = serde_json::from_str(&pending.op).map_err(ApiError::internal)? else {
                return Err(ApiError::internal("the campaign outbox holds an operation other than an outcome"));
            };
            match call(&self.env, &pending.campaign_id, outcome).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            self.sql().exec("DELETE FROM campaign_outbox WHERE seq = ?", vec![pending.seq.into()])?;
        }
    }

    /// Logs out at the bridge first: if that fails the device stays, and the client can retry.
    /// Messages still waiting end FAILED with a reason rather than vanishing with the device.
    async fn retire(&self, app_id: &AppId) -> Result<(), ApiError> {
        let device = self.device_of(app_id)?;
        match Bridge::from_env(&self.env)?.delete(&device_path(&device.device_id)).await {
            Ok(()) => {}
            Err(CallError::Refused { error, .. }) if error.code == error_code::DEVICE_NOT_FOUND => {}
            Err(e) => return Err(e.into()),
        }
        let now = now_ms();
        let waiting = rows::<MessageRow>(self.sql().exec(
            "SELECT * FROM messages WHERE status IN (?, ?)",
            vec![MessageStatus::Queued.as_str().into(), MessageStatus::Sending.as_str().into()],
        )?)?;
        let mut follow_ups = vec![];
        for message in waiting {
            let failure = Some(("device_deleted".to_owned(), "the sending device was deleted".to_owned()));
            follow_ups.extend(self.advance(&message.id, MessageStatus::Failed, "failed_at", now, None, failure)?);
        }
        self.sql().exec(
            "UPDATE device SET deleted = 1, status = ?, qr = NULL, pair_code = NULL",
            vec![DeviceStatus::Offline.as_str().into()],
        )?;
        let device_id = self.device_id(&device)?;
        let what = What::DeviceDisconnected(DeviceDisconnected {
            device_id: device_id.clone(),
            status: DeviceStatus::Deleted,
            phone_number: device.phone,
            reason: "device deleted".into(),
            logged_out: true,
        });
        let event = Event::new(Some(device_id.clone()), now, what);
        follow_ups.push(FollowUp::App(AppOutboxOp::RemoveDevice(app::RemoveDevice { device_id, event })));
        self.follow_up(follow_ups).await
    }

    /// Makes sure the queue drains from the earliest moment the pace allows. A pending
    /// alarm may sit further out (a send lease, a retry backoff), so it is brought forward.
    async fn wake(&self) -> Result<(), ApiError> {
        let device = self.device()?;
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
        self.flush_app_outbox().await;
        if let Err(e) = self.trim_history(now_ms()).await {
            worker::console_error!("trimming history: {e}");
        }
        let device = self.device()?;
        if device.status == DeviceStatus::Registering {
            if let Err(e) = self.link().await {
                worker::console_warn!("linking {} deferred: {e:?}", device.device_id);
                self.state.storage().set_alarm(RETRY_BASE_MS as i64 * 5).await?;
            }
            return Ok(());
        }
        let now = now_ms();
        self.expire_codes(now).await?;
        if device.status != DeviceStatus::Online {
            // The Connected event wakes the queue again; until then messages wait, up to the expiry.
            return self.expire_waiting(now).await;
        }
        let due = rows::<MessageRow>(self.sql().exec(
            "SELECT * FROM messages WHERE status IN (?, ?) AND next_attempt_at <= ? ORDER BY priority, seq LIMIT 1",
            vec![MessageStatus::Queued.as_str().into(), MessageStatus::Sending.as_str().into(), int(now)],
        )?)?;
        if let Some(row) = due.into_iter().next() {
            self.dispatch(row, now).await?;
        }
        let next: Vec<Due> = rows(self.sql().exec(
            "SELECT MIN(next_attempt_at) AS next_attempt_at FROM messages WHERE status IN (?, ?) HAVING COUNT(*) > 0",
            vec![MessageStatus::Queued.as_str().into(), MessageStatus::Sending.as_str().into()],
        )?)?;
        if let Some(next) = next.first() {
            let delay = next.next_attempt_at.saturating_sub(now_ms()).max(self.pace_ms());
            self.state.storage().set_alarm(delay as i64).await?;
        }
        Ok(())
    }

    /// Finished messages (their content with them) and applied bridge events past the retention.
    /// A receipt for a trimmed message finds nothing to update and is ignored.
    async fn trim_history(&self, now: u64) -> Result<(), ApiError> {
        let Some(cutoff) = retention::due(&self.state.storage(), &self.env, now).await? else { return Ok(()) };
        let sql = self.sql();
        sql.exec(
            "DELETE FROM messages WHERE status NOT IN (?, ?) AND created_at < ?",
            vec![MessageStatus::Queued.as_str().into(), MessageStatus::Sending.as_str().into(), int(cutoff)],
        )?;
        sql.exec("DELETE FROM campaign_messages WHERE message_id NOT IN (SELECT id FROM messages)", None)?;
        sql.exec("DELETE FROM applied_events WHERE at < ?", vec![int(cutoff)])?;
        sql.exec("DELETE FROM withdrawn WHERE at < ?", vec![int(cutoff)])?;
        Ok(())
    }

    /// Fails the one-time codes still waiting when their code expires, online or not, and wakes
    /// up again when the next one would.
    async fn expire_codes(&self, now: u64) -> Result<(), ApiError> {
        let queued = MessageStatus::Queued.as_str();
        let overdue = rows::<MessageRow>(self.sql().exec(
            "SELECT * FROM messages WHERE status = ? AND expires_at <= ? ORDER BY seq",
            vec![queued.into(), int(now)],
        )?)?;
        let mut follow_ups = vec![];
        for message in overdue {
            let failure =
                Some((error_code::EXPIRED.to_owned(), "the one-time code expired before it could be sent".to_owned()));
            follow_ups.extend(self.advance(&message.id, MessageStatus::Failed, "failed_at", now, None, failure)?);
        }
        self.follow_up(follow_ups).await?;
        let next: Vec<Due> = rows(self.sql().exec(
            "SELECT MIN(expires_at) AS next_attempt_at FROM messages WHERE status = ? AND expires_at IS NOT NULL
             HAVING COUNT(*) > 0",
            vec![queued.into()],
        )?)?;
        if let Some(next) = next.first() {
            self.alarm_within(next.next_attempt_at.saturating_sub(now)).await?;
        }
        Ok(())
    }

    /// Fails the queued messages that waited for an offline device longer than the expiry,
    /// and wakes up again when the next one would.
    async fn expire_waiting(&self, now: u64) -> Result<(), ApiError> {
        let expiry =
            config(&self.env, "QUEUE_EXPIRY_MS").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_QUEUE_EXPIRY_MS);
        let queued = MessageStatus::Queued.as_str();
        let overdue = rows::<MessageRow>(self.sql().exec(
            "SELECT * FROM messages WHERE status = ? AND created_at <= ? ORDER BY seq",
            vec![queued.into(), int(now.saturating_sub(expiry))],
        )?)?;
        let mut follow_ups = vec![];
        for message in overdue {
            let reason = format!("the device stayed offline for longer than {} s", expiry / 1000);
            let failure = Some((error_code::EXPIRED.to_owned(), reason));
            follow_ups.extend(self.advance(&message.id, MessageStatus::Failed, "failed_at", now, None, failure)?);
        }
        self.follow_up(follow_ups).await?;
        let oldest: Vec<Due> = rows(self.sql().exec(
            "SELECT MIN(created_at) AS next_attempt_at FROM messages WHERE status = ? HAVING COUNT(*) > 0",
            vec![queued.into()],
        )?)?;
        if let Some(oldest) = oldest.first() {
            self.alarm_within((oldest.next_attempt_at + expiry).saturating_sub(now)).await?;
        }
        Ok(())
    }

    async fn dispatch(&self, row: MessageRow, now: u64) -> Result<(), ApiError> {
        let id = MessageId::parse(&row.id).ok_or_else(|| ApiError::internal("stored message id is malformed"))?;
        let attempts = row.attempts + 1;
        self.sql().exec(
            "UPDATE messages SET status = ?, attempts = ?, next_attempt_at = ? WHERE id = ?",
            vec![MessageStatus::Sending.as_str().into(), int(attempts), int(now + SEND_LEASE_MS), id.as_str().into()],
        )?;
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
        let answer = bridge.post::<_, SendResponse>(&send_path(&self.device()?.device_id), &request).await;
        // The pace runs from the moment the bridge has the message, so WhatsApp never sees two
        // sends closer together than the pace, however long each hand-over took.
        self.sql().exec("UPDATE device SET last_dispatch_at = ?", vec![int(now_ms())])?;
        let follow_ups = match answer {
            Ok(SendResponse::Accepted) => vec![],
            Ok(SendResponse::Sent { external_id }) => {
                self.advance(&row.id, MessageStatus::Sent, "sent_at", now_ms(), Some(external_id), None)?
            }
            Ok(SendResponse::Failed { code, reason }) => {
                self.advance(&row.id, MessageStatus::Failed, "failed_at", now_ms(), None, Some((code, reason)))?
            }
            Err(e) => {
                let offline =
                    matches!(&e, CallError::Refused { error, .. } if error.code == error_code::DEVICE_OFFLINE);
                worker::console_warn!("send {} deferred: {e:?}", row.id);
                let backoff = (RETRY_BASE_MS << attempts.min(6)).min(RETRY_MAX_MS);
                self.sql().exec(
                    "UPDATE messages SET status = ?, next_attempt_at = ? WHERE id = ? AND status = ?",
                    vec![
                        MessageStatus::Queued.as_str().into(),
                        int(now_ms() + backoff),
                        id.as_str().into(),
                        MessageStatus::Sending.as_str().into(),
                    ],
                )?;
                if offline {
                    let reason = "the bridge reports the device is not connected".to_owned();
                    self.set_status(Status::Offline { reason, logged_out: false }, now_ms())?
                } else {
                    vec![]
                }
            }
        };
        self.follow_up(follow_ups).await
    }
}
