//! One Durable Object per linked WhatsApp number: its pairing state, its
//! messages, and the paced send queue that alarms drain into the bridge.

use serde::{Deserialize, Serialize};
use wagate_contract::wire::{
    error_code, send_path, BridgeEvent, Content, EventKind, LinkRequest, LinkResponse, SendRequest, SendResponse,
    LINK_PATH,
};
use worker::{durable_object, DurableObject, Env, Request, Response, SqlStorage, SqlStorageValue, State};

use super::app::{AppOp, ONLINE};
use super::{call, rows, serve, to_json, APPS};
use crate::bridge::{Bridge, CallError};
use crate::domain::error::ApiError;
use crate::domain::ids::{AppId, DeviceId, MessageId};
use crate::domain::message::MessageStatus;
use crate::domain::phone::Recipient;
use crate::runtime::{config, now_ms};

pub const REGISTERING: &str = "registering";
pub const QR_WAITING: &str = "qr_waiting";
pub const OFFLINE: &str = "offline";

/// How long a send attempt may stay unanswered before it is tried again
/// (the bridge's journal makes the retry harmless).
const SEND_LEASE_MS: u64 = 30_000;
/// Default gap between two sends from one number: a few per second is what
/// WhatsApp tolerates without flagging the number.
const DEFAULT_PACE_MS: u64 = 250;
const RETRY_BASE_MS: u64 = 1_000;
const RETRY_MAX_MS: u64 = 60_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewMessage {
    pub message_id: MessageId,
    pub app_id: AppId,
    pub recipient: Recipient,
    pub content: Content,
    pub trace_id: String,
    pub meta: Option<serde_json::Value>,
    pub now: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DeviceOp {
    Create { device_id: DeviceId, app_id: AppId, label: Option<String>, now: u64 },
    Get { app_id: AppId },
    Enqueue { message: NewMessage },
    GetMessage { app_id: AppId, message_id: MessageId },
    Event { event: BridgeEvent },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceView {
    pub device_id: String,
    pub label: Option<String>,
    pub status: String,
    pub qr: Option<String>,
    pub phone: Option<String>,
    pub created_at: u64,
    pub last_seen_at: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageView {
    pub id: String,
    pub device_id: String,
    pub recipient: Recipient,
    pub content: Content,
    pub status: MessageStatus,
    pub external_id: Option<String>,
    pub error_code: Option<String>,
    pub error_reason: Option<String>,
    pub trace_id: String,
    pub created_at: u64,
    pub sent_at: Option<u64>,
    pub delivered_at: Option<u64>,
    pub read_at: Option<u64>,
    pub failed_at: Option<u64>,
}

#[derive(Deserialize)]
struct DeviceRow {
    device_id: String,
    app_id: String,
    label: Option<String>,
    status: String,
    qr: Option<String>,
    phone: Option<String>,
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
}

#[derive(Deserialize)]
struct Due {
    next_attempt_at: u64,
}

fn int(n: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(n as i64)
}

/// Work that follows a state change and needs other objects.
enum FollowUp {
    DeviceStatus { status: String, phone: Option<String> },
    Refund(MessageId),
    DrainQueue,
}

#[durable_object]
pub struct DeviceObject {
    state: State,
    env: Env,
}

impl DurableObject for DeviceObject {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        for ddl in [
            "CREATE TABLE IF NOT EXISTS device (
                one INTEGER PRIMARY KEY CHECK (one = 1), device_id TEXT NOT NULL, app_id TEXT NOT NULL, label TEXT,
                status TEXT NOT NULL, qr TEXT, phone TEXT, created_at INTEGER NOT NULL, last_seen_at INTEGER,
                last_dispatch_at INTEGER NOT NULL DEFAULT 0)",
            "CREATE TABLE IF NOT EXISTS messages (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, app_id TEXT NOT NULL,
                recipient TEXT NOT NULL, content TEXT NOT NULL, status TEXT NOT NULL, external_id TEXT,
                error_code TEXT, error_reason TEXT, trace_id TEXT NOT NULL, meta TEXT, created_at INTEGER NOT NULL,
                sent_at INTEGER, delivered_at INTEGER, read_at INTEGER, failed_at INTEGER,
                attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at INTEGER NOT NULL DEFAULT 0)",
            "CREATE INDEX IF NOT EXISTS messages_due ON messages (status, next_attempt_at, seq)",
            "CREATE TABLE IF NOT EXISTS applied_events (event_id TEXT PRIMARY KEY, at INTEGER NOT NULL)",
        ] {
            sql.exec(ddl, None).expect("schema statements are valid");
        }
        Self { state, env }
    }

    async fn fetch(&self, req: Request) -> worker::Result<Response> {
        serve(req, |op: DeviceOp| self.handle(op)).await
    }

    async fn alarm(&self) -> worker::Result<Response> {
        if let Err(e) = self.tick().await {
            worker::console_error!("device alarm: {e}");
        }
        Response::empty()
    }
}

impl DeviceObject {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    async fn handle(&self, op: DeviceOp) -> Result<serde_json::Value, ApiError> {
        match op {
            DeviceOp::Create { device_id, app_id, label, now } => {
                self.sql().exec(
                    "INSERT INTO device (one, device_id, app_id, label, status, created_at) VALUES (1, ?, ?, ?, ?, ?)",
                    vec![device_id.as_str().into(), app_id.as_str().into(), label.into(), REGISTERING.into(), int(now)],
                )?;
                // Pairing starts now if the bridge answers; otherwise the alarm keeps trying.
                if let Err(e) = self.link().await {
                    worker::console_warn!("linking {device_id} deferred: {e:?}");
                    self.state.storage().set_alarm(RETRY_BASE_MS as i64).await?;
                }
                to_json(&self.view(&app_id)?)
            }
            DeviceOp::Get { app_id } => to_json(&self.view(&app_id)?),
            DeviceOp::Enqueue { message } => {
                self.device_of(&message.app_id)?;
                self.sql().exec(
                    "INSERT INTO messages (id, app_id, recipient, content, status, trace_id, meta, created_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    vec![
                        message.message_id.as_str().into(),
                        message.app_id.as_str().into(),
                        serde_json::to_string(&message.recipient).map_err(ApiError::internal)?.into(),
                        serde_json::to_string(&message.content).map_err(ApiError::internal)?.into(),
                        MessageStatus::Queued.as_str().into(),
                        message.trace_id.into(),
                        message.meta.map(|m| m.to_string()).into(),
                        int(message.now),
                    ],
                )?;
                self.wake().await?;
                to_json(&self.message(&message.app_id, &message.message_id)?)
            }
            DeviceOp::GetMessage { app_id, message_id } => to_json(&self.message(&app_id, &message_id)?),
            DeviceOp::Event { event } => {
                let follow_ups = self.apply(event)?;
                self.follow_up(follow_ups).await?;
                Ok(serde_json::Value::Null)
            }
        }
    }

    fn device(&self) -> Result<DeviceRow, ApiError> {
        rows::<DeviceRow>(self.sql().exec("SELECT * FROM device", None)?)?
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::not_found("device"))
    }

    /// The device, provided it belongs to `app_id`: other apps get a plain 404.
    fn device_of(&self, app_id: &AppId) -> Result<DeviceRow, ApiError> {
        self.device().and_then(|d| if d.app_id == app_id.as_str() { Ok(d) } else { Err(ApiError::not_found("device")) })
    }

    fn view(&self, app_id: &AppId) -> Result<DeviceView, ApiError> {
        let d = self.device_of(app_id)?;
        Ok(DeviceView {
            device_id: d.device_id,
            label: d.label,
            status: d.status,
            qr: d.qr,
            phone: d.phone,
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
        let linked: LinkResponse = bridge.post(LINK_PATH, &LinkRequest { device_id: device.device_id.clone() }).await?;
        let follow_ups = match (linked.qr, linked.phone) {
            (_, Some(phone)) => self.set_status(ONLINE, None, Some(phone), now_ms())?,
            (Some(qr), None) => self.set_status(QR_WAITING, Some(qr), None, now_ms())?,
            (None, None) => return Err(ApiError::internal("bridge returned neither a QR nor a phone")),
        };
        self.follow_up(follow_ups).await
    }

    fn set_status(
        &self,
        status: &str,
        qr: Option<String>,
        phone: Option<String>,
        now: u64,
    ) -> Result<Vec<FollowUp>, ApiError> {
        let previous = self.device()?.status;
        self.sql().exec(
            "UPDATE device SET status = ?, qr = ?, phone = COALESCE(?, phone), last_seen_at = ?",
            vec![status.into(), qr.into(), phone.clone().into(), int(now)],
        )?;
        let mut follow_ups = vec![];
        if previous != status {
            follow_ups.push(FollowUp::DeviceStatus { status: status.to_owned(), phone });
        }
        if status == ONLINE {
            follow_ups.push(FollowUp::DrainQueue);
        }
        Ok(follow_ups)
    }

    /// Applies a bridge event once; a redelivered event id is acknowledged and ignored.
    fn apply(&self, event: BridgeEvent) -> Result<Vec<FollowUp>, ApiError> {
        let seen: Vec<Due> = rows(self.sql().exec(
            "SELECT at AS next_attempt_at FROM applied_events WHERE event_id = ?",
            vec![event.event_id.as_str().into()],
        )?)?;
        if !seen.is_empty() || self.device().is_err() {
            return Ok(vec![]);
        }
        self.sql().exec(
            "INSERT INTO applied_events (event_id, at) VALUES (?, ?)",
            vec![event.event_id.into(), int(event.at_ms)],
        )?;
        let at = event.at_ms;
        match event.kind {
            EventKind::QrUpdated { qr } => {
                if self.device()?.status == ONLINE {
                    return Ok(vec![]);
                }
                self.set_status(QR_WAITING, Some(qr), None, at)
            }
            EventKind::Connected { phone } => self.set_status(ONLINE, None, Some(phone), at),
            EventKind::Disconnected { .. } => self.set_status(OFFLINE, None, None, at),
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
            EventKind::Inbound { .. } => Ok(vec![]),
        }
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
        Ok(if next == MessageStatus::Failed { vec![FollowUp::Refund(id)] } else { vec![] })
    }

    async fn follow_up(&self, follow_ups: Vec<FollowUp>) -> Result<(), ApiError> {
        for follow_up in follow_ups {
            match follow_up {
                FollowUp::DeviceStatus { status, phone } => {
                    let device = self.device()?;
                    let device_id =
                        DeviceId::parse(&device.device_id).ok_or_else(|| ApiError::internal("bad device id"))?;
                    let op = AppOp::DeviceStatus { device_id, status, phone, now: now_ms() };
                    call::<_, serde_json::Value>(&self.env, APPS, &device.app_id, &op).await?;
                }
                FollowUp::Refund(message_id) => {
                    let app_id = self.device()?.app_id;
                    call::<_, serde_json::Value>(&self.env, APPS, &app_id, &AppOp::Refund { message_id }).await?;
                }
                FollowUp::DrainQueue => self.wake().await?,
            }
        }
        Ok(())
    }

    /// Makes sure the queue drains from the earliest moment the pace allows. A pending
    /// alarm may sit further out (a send lease, a retry backoff), so it is brought forward.
    async fn wake(&self) -> Result<(), ApiError> {
        let now = now_ms();
        let due = (self.device()?.last_dispatch_at + self.pace_ms()).max(now);
        let storage = self.state.storage();
        match storage.get_alarm().await? {
            Some(at) if at as u64 <= due => {}
            _ => storage.set_alarm((due - now) as i64).await?,
        }
        Ok(())
    }

    fn pace_ms(&self) -> u64 {
        config(&self.env, "DEVICE_PACE_MS").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_PACE_MS)
    }

    /// One alarm: finish pairing if it is pending, else send the next due message
    /// and schedule the next tick at the device's pace.
    async fn tick(&self) -> Result<(), ApiError> {
        let device = self.device()?;
        if device.status == REGISTERING {
            if let Err(e) = self.link().await {
                worker::console_warn!("linking {} deferred: {e:?}", device.device_id);
                self.state.storage().set_alarm(RETRY_BASE_MS as i64 * 5).await?;
            }
            return Ok(());
        }
        if device.status != ONLINE {
            return Ok(()); // the Connected event wakes the queue again
        }
        let now = now_ms();
        let due = rows::<MessageRow>(self.sql().exec(
            "SELECT * FROM messages WHERE status IN (?, ?) AND next_attempt_at <= ? ORDER BY seq LIMIT 1",
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

    async fn dispatch(&self, row: MessageRow, now: u64) -> Result<(), ApiError> {
        let id = MessageId::parse(&row.id).ok_or_else(|| ApiError::internal("stored message id is malformed"))?;
        let attempts = row.attempts + 1;
        self.sql().exec(
            "UPDATE messages SET status = ?, attempts = ?, next_attempt_at = ? WHERE id = ?",
            vec![MessageStatus::Sending.as_str().into(), int(attempts), int(now + SEND_LEASE_MS), id.as_str().into()],
        )?;
        self.sql().exec("UPDATE device SET last_dispatch_at = ?", vec![int(now)])?;
        let recipient: Recipient = serde_json::from_str(&row.recipient).map_err(ApiError::internal)?;
        let request = SendRequest {
            message_id: row.id.clone(),
            to: recipient.jid(),
            content: serde_json::from_str(&row.content).map_err(ApiError::internal)?,
        };
        let bridge = Bridge::from_env(&self.env)?;
        let follow_ups = match bridge.post::<_, SendResponse>(&send_path(&self.device()?.device_id), &request).await {
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
                    self.set_status(OFFLINE, None, None, now_ms())?
                } else {
                    vec![]
                }
            }
        };
        self.follow_up(follow_ups).await
    }
}
