//! A linked number's storage: its pairing state, its messages and their send queue, the bridge
//! events it applied, and the outboxes that carry what a change tells the app's object and the
//! campaigns. The device's object keeps the alarms, the bridge and the calls to other objects.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use wagate_contract::wire::{BridgeEvent, Content, EventKind, MediaRef};

use super::Sql;
use crate::domain::device::{self, DeviceStatus, Signal};
use crate::domain::error::ApiError;
use crate::domain::events::{
    DeviceConnected, DeviceDisconnected, Event, InboundMedia, Incoming, MessageProgress, QrReady, What,
};
use crate::domain::ids::{trace_id, AppId, DeviceId, MessageId};
use crate::domain::message::{Direction, MessageStatus, Priority};
use crate::domain::phone::Recipient;
use crate::domain::schema::Migration;
use crate::protocol::app::{self, AppOutboxOp, AutoReply};
use crate::protocol::campaign::{CampaignOp, ContactOutcome};
use crate::protocol::device::{CampaignRef, CreateDevice, DeviceView, MessageView, NewMessage};

/// Oldest first; append, never edit (see `domain::schema`).
pub const MIGRATIONS: [Migration; 3] = [
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
    // Inbound messages are kept too, for `GET …/messages/{id}`; every earlier row was outbound.
    Migration::Sql(&[
        "ALTER TABLE messages ADD COLUMN direction TEXT NOT NULL DEFAULT 'out'",
        "ALTER TABLE messages ADD COLUMN participant TEXT",
    ]),
];

/// What a one-time code message shows once it left: the code itself is not kept.
const WITHHELD_TEXT: &str = "[one-time code withheld]";

#[derive(Debug, Deserialize)]
pub struct DeviceRow {
    pub device_id: String,
    pub app_id: String,
    pub label: Option<String>,
    pub status: DeviceStatus,
    pub qr: Option<String>,
    pub pair_phone: Option<String>,
    pub pair_code: Option<String>,
    pub phone: Option<String>,
    pub disconnect_reason: Option<String>,
    pub deleted: i64,
    pub created_at: u64,
    pub last_seen_at: Option<u64>,
    pub last_dispatch_at: u64,
}

impl DeviceRow {
    pub fn id(&self) -> Result<DeviceId, ApiError> {
        DeviceId::parse(&self.device_id).ok_or_else(|| ApiError::internal("stored device id is malformed"))
    }
}

#[derive(Debug, Deserialize)]
pub struct MessageRow {
    pub id: String,
    pub app_id: String,
    pub recipient: String,
    pub content: String,
    pub status: String,
    pub external_id: Option<String>,
    pub error_code: Option<String>,
    pub error_reason: Option<String>,
    pub trace_id: String,
    pub created_at: u64,
    pub sent_at: Option<u64>,
    pub delivered_at: Option<u64>,
    pub read_at: Option<u64>,
    pub failed_at: Option<u64>,
    pub attempts: u64,
    pub sensitive: i64,
    /// A one-time code's expiry (Unix ms), from `NewMessage::code_expires_at`.
    pub expires_at: Option<u64>,
    pub direction: String,
    pub participant: Option<String>,
}

#[derive(Deserialize)]
struct Due {
    next_attempt_at: u64,
}

/// Where the bridge says a device's pairing and connection stand.
pub enum Status {
    WaitingForScan { qr: String },
    Online { phone: String },
    Offline { reason: String, logged_out: bool },
}

/// Work that follows a state change. Operations on the app's object go through a durable
/// outbox, written with the change itself, so a failed call is retried by the alarm rather
/// than lost; they are idempotent, so a retry that overlaps does no harm.
#[derive(Debug)]
pub enum FollowUp {
    App(AppOutboxOp),
    Campaign { campaign_id: String, op: CampaignOp },
    DrainQueue,
}

/// The oldest entry of one of the outboxes.
#[derive(Debug, PartialEq)]
pub enum Outbound<T> {
    Op {
        seq: i64,
        op: T,
    },
    /// An entry that no longer decodes, already deleted so the entries behind it flow; what
    /// went wrong is said without the entry's text (it may hold a message's).
    DeadLetter {
        seq: i64,
        error: String,
    },
}

/// A campaign's outcome for one of its contacts, still to be told to it.
#[derive(Debug, PartialEq)]
pub struct ToCampaign {
    pub campaign_id: String,
    pub outcome: ContactOutcome,
}

const WAITING: [MessageStatus; 2] = [MessageStatus::Queued, MessageStatus::Sending];

fn waiting() -> Vec<super::Bind> {
    WAITING.iter().map(|s| s.as_str().into()).collect()
}

pub fn create(sql: &impl Sql, op: CreateDevice) -> Result<(), ApiError> {
    let CreateDevice { device_id, app_id, label, pair_phone, now } = op;
    sql.run(
        "INSERT INTO device (one, device_id, app_id, label, status, pair_phone, created_at)
         VALUES (1, ?, ?, ?, ?, ?, ?)",
        vec![
            device_id.as_str().into(),
            app_id.as_str().into(),
            label.into(),
            DeviceStatus::Registering.as_str().into(),
            pair_phone.into(),
            now.into(),
        ],
    )?;
    Ok(())
}

pub fn device(sql: &impl Sql) -> Result<DeviceRow, ApiError> {
    sql.row("SELECT * FROM device", vec![])?.ok_or_else(|| ApiError::not_found("device"))
}

/// The device, provided it belongs to `app_id`: other apps get a plain 404.
pub fn device_of(sql: &impl Sql, app_id: &AppId) -> Result<DeviceRow, ApiError> {
    let device = device(sql)?;
    if device.app_id == app_id.as_str() && device.deleted == 0 {
        Ok(device)
    } else {
        Err(ApiError::not_found("device"))
    }
}

pub fn view(sql: &impl Sql, app_id: &AppId) -> Result<DeviceView, ApiError> {
    let d = device_of(sql, app_id)?;
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

/// Pairing by code for `phone` from the next pairing session on.
pub fn pair_by_code(sql: &impl Sql, phone: String) -> Result<(), ApiError> {
    sql.run("UPDATE device SET pair_phone = ?, pair_code = NULL", vec![phone.into()])?;
    Ok(())
}

pub fn set_pair_code(sql: &impl Sql, code: String) -> Result<(), ApiError> {
    sql.run("UPDATE device SET pair_code = ?", vec![code.into()])?;
    Ok(())
}

/// When the bridge last took a message from this device, which the pace runs from.
pub fn dispatched(sql: &impl Sql, at: u64) -> Result<(), ApiError> {
    sql.run("UPDATE device SET last_dispatch_at = ?", vec![at.into()])?;
    Ok(())
}

/// Records a new pairing/connection state, if `domain::device::transition` makes one of it,
/// and the follow-ups it asks for.
pub fn set_status(sql: &impl Sql, status: Status, at: u64) -> Result<Vec<FollowUp>, ApiError> {
    let device = device(sql)?;
    let current = if device.deleted != 0 { DeviceStatus::Deleted } else { device.status };
    let signal = match status {
        Status::WaitingForScan { .. } => Signal::QrShown,
        Status::Online { .. } => Signal::Connected,
        Status::Offline { .. } => Signal::Disconnected,
    };
    let Some(transition) = device::transition(current, signal) else { return Ok(vec![]) };
    let device_id = device.id()?;
    let next = transition.status;
    let (qr, phone, reason, what) = match status {
        Status::WaitingForScan { qr } => {
            let what = What::DeviceQrReady(QrReady { device_id: device_id.clone(), status: next, qr_code: qr.clone() });
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
    sql.run(
        "UPDATE device SET status = ?1, qr = ?2, phone = COALESCE(?3, phone), disconnect_reason = ?4,
         last_seen_at = ?5, pair_code = CASE WHEN ?6 THEN pair_code END",
        vec![
            next.as_str().into(),
            qr.into(),
            phone.clone().into(),
            reason.into(),
            at.into(),
            (next == DeviceStatus::QrWaiting).into(),
        ],
    )?;
    let mut announce = Some((what, phone));
    let follow_ups = transition.follow_ups.iter().filter_map(|follow_up| match follow_up {
        device::FollowUp::Announce => announce.take().map(|(what, phone)| {
            let event = Event::new(Some(device_id.clone()), at, what);
            FollowUp::App(AppOutboxOp::DeviceChanged(app::DeviceChanged {
                device_id: device_id.clone(),
                status: next,
                phone,
                event,
            }))
        }),
        device::FollowUp::DrainQueue => Some(FollowUp::DrainQueue),
    });
    Ok(follow_ups.collect())
}

/// Retires the device once the bridge logged it out: messages still waiting end FAILED with a
/// reason rather than vanishing with it, and the app's object is told to forget it.
pub fn retire(sql: &impl Sql, device: &DeviceRow, now: u64) -> Result<Vec<FollowUp>, ApiError> {
    let waiting = sql.rows::<MessageRow>("SELECT * FROM messages WHERE status IN (?, ?)", waiting())?;
    let mut follow_ups = vec![];
    for message in waiting {
        let failure = Some(("device_deleted".to_owned(), "the sending device was deleted".to_owned()));
        follow_ups.extend(advance(sql, &message.id, MessageStatus::Failed, now, None, failure)?);
    }
    sql.run(
        "UPDATE device SET deleted = 1, status = ?, qr = NULL, pair_code = NULL",
        vec![DeviceStatus::Offline.as_str().into()],
    )?;
    let device_id = device.id()?;
    let what = What::DeviceDisconnected(DeviceDisconnected {
        device_id: device_id.clone(),
        status: DeviceStatus::Deleted,
        phone_number: device.phone.clone(),
        reason: "device deleted".into(),
        logged_out: true,
    });
    let event = Event::new(Some(device_id.clone()), now, what);
    follow_ups.push(FollowUp::App(AppOutboxOp::RemoveDevice(app::RemoveDevice { device_id, event })));
    Ok(follow_ups)
}

pub fn withdrawn(sql: &impl Sql, message_id: &MessageId) -> Result<bool, ApiError> {
    let query = "SELECT COUNT(*) AS n FROM withdrawn WHERE message_id = ?";
    Ok(sql.any(query, vec![message_id.as_str().into()])?)
}

/// Remembers that `message_id` was never stored here, so a late enqueue of it is refused.
pub fn withdraw(sql: &impl Sql, message_id: &MessageId, at: u64) -> Result<(), ApiError> {
    sql.run(
        "INSERT OR IGNORE INTO withdrawn (message_id, at) VALUES (?, ?)",
        vec![message_id.as_str().into(), at.into()],
    )?;
    Ok(())
}

/// Queues a message; a retried insert of the same id changes nothing.
pub fn insert_message(sql: &impl Sql, message: &NewMessage) -> Result<(), ApiError> {
    sql.run(
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
            message.now.into(),
            message.priority.rank().into(),
            message.code_expires_at.is_some().into(),
            message.code_expires_at.into(),
        ],
    )?;
    if let Some(campaign) = &message.campaign {
        sql.run(
            "INSERT OR IGNORE INTO campaign_messages (message_id, campaign_id, contact) VALUES (?, ?, ?)",
            vec![message.message_id.as_str().into(), campaign.campaign_id.as_str().into(), campaign.contact.into()],
        )?;
    }
    Ok(())
}

/// Queues the auto-reply the app's rules chose for an inbound message, quota reserved.
pub fn queue_auto_reply(sql: &impl Sql, app_id: &str, reply: AutoReply, now: u64) -> Result<(), ApiError> {
    let (Some(message_id), Some(app_id)) = (MessageId::parse(&reply.message_id), AppId::parse(app_id)) else {
        return Err(ApiError::internal("an auto-reply names a malformed id"));
    };
    let recipient = Recipient::parse(&reply.to, None).map_err(|e| ApiError::internal(format!("{e:?}")))?;
    insert_message(
        sql,
        &NewMessage {
            message_id,
            app_id,
            recipient,
            content: Content::Text { text: reply.text },
            trace_id: trace_id(),
            meta: Some(json!({"auto_reply_rule": reply.rule_id})),
            priority: Priority::Normal,
            code_expires_at: None,
            campaign: None,
            now,
        },
    )
}

pub fn message_row(sql: &impl Sql, message_id: &MessageId) -> Result<Option<MessageRow>, ApiError> {
    Ok(sql.row("SELECT * FROM messages WHERE id = ?", vec![message_id.as_str().into()])?)
}

/// The message, provided it belongs to `app_id`: other apps get a plain 404.
pub fn message(sql: &impl Sql, app_id: &AppId, message_id: &MessageId) -> Result<MessageView, ApiError> {
    let row = message_row(sql, message_id)?
        .filter(|m| m.app_id == app_id.as_str())
        .ok_or_else(|| ApiError::not_found("message"))?;
    let decode = |e: serde_json::Error| ApiError::internal(format!("stored message {} is corrupt: {e}", row.id));
    Ok(MessageView {
        direction: Direction::parse(&row.direction).ok_or_else(|| ApiError::internal("stored direction is unknown"))?,
        participant: row.participant,
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

/// Whether a request waiting on this message's outcome may answer now: WhatsApp took the message
/// or refused it, or the device is not online (the message then waits for a reconnect, which may
/// be a day away), or there is no such message (nothing will ever settle it).
pub fn wait_over(sql: &impl Sql, message_id: &MessageId) -> Result<bool, ApiError> {
    let Some(row) = message_row(sql, message_id)? else { return Ok(true) };
    let settled = MessageStatus::parse(&row.status).is_none_or(MessageStatus::is_settled);
    let device = device(sql)?;
    Ok(settled || device.deleted != 0 || device.status != DeviceStatus::Online)
}

/// The next message to hand to the bridge: waiting and due, most urgent first, then oldest.
/// One being sent whose lease ran out is due again.
pub fn due(sql: &impl Sql, now: u64) -> Result<Option<MessageRow>, ApiError> {
    let mut binds = waiting();
    binds.push(now.into());
    let query = "SELECT * FROM messages WHERE status IN (?, ?) AND next_attempt_at <= ? ORDER BY priority, seq LIMIT 1";
    Ok(sql.row(query, binds)?)
}

/// When the earliest waiting message falls due, if any waits.
pub fn next_attempt(sql: &impl Sql) -> Result<Option<u64>, ApiError> {
    let query =
        "SELECT MIN(next_attempt_at) AS next_attempt_at FROM messages WHERE status IN (?, ?) HAVING COUNT(*) > 0";
    Ok(sql.row::<Due>(query, waiting())?.map(|d| d.next_attempt_at))
}

/// Marks a message as being sent, for one more attempt, until `until`.
pub fn lease(sql: &impl Sql, id: &MessageId, attempts: u64, until: u64) -> Result<(), ApiError> {
    sql.run(
        "UPDATE messages SET status = ?, attempts = ?, next_attempt_at = ? WHERE id = ?",
        vec![MessageStatus::Sending.as_str().into(), attempts.into(), until.into(), id.as_str().into()],
    )?;
    Ok(())
}

/// Puts a message whose send did not reach WhatsApp back in the queue, due at `at`; one the
/// bridge reported on meanwhile is left as it is.
pub fn requeue(sql: &impl Sql, id: &MessageId, at: u64) -> Result<(), ApiError> {
    sql.run(
        "UPDATE messages SET status = ?, next_attempt_at = ? WHERE id = ? AND status = ?",
        vec![
            MessageStatus::Queued.as_str().into(),
            at.into(),
            id.as_str().into(),
            MessageStatus::Sending.as_str().into(),
        ],
    )?;
    Ok(())
}

/// Fails the one-time codes still queued when their code expires.
pub fn expire_codes(sql: &impl Sql, now: u64) -> Result<Vec<FollowUp>, ApiError> {
    let overdue = sql.rows::<MessageRow>(
        "SELECT * FROM messages WHERE status = ? AND expires_at <= ? ORDER BY seq",
        vec![MessageStatus::Queued.as_str().into(), now.into()],
    )?;
    let mut follow_ups = vec![];
    for message in overdue {
        let failure = Some((
            wagate_contract::wire::error_code::EXPIRED.to_owned(),
            "the one-time code expired before it could be sent".to_owned(),
        ));
        follow_ups.extend(advance(sql, &message.id, MessageStatus::Failed, now, None, failure)?);
    }
    Ok(follow_ups)
}

/// When the next queued one-time code expires, if one is queued.
pub fn next_code_expiry(sql: &impl Sql) -> Result<Option<u64>, ApiError> {
    let query = "SELECT MIN(expires_at) AS next_attempt_at FROM messages WHERE status = ? AND expires_at IS NOT NULL
             HAVING COUNT(*) > 0";
    Ok(sql.row::<Due>(query, vec![MessageStatus::Queued.as_str().into()])?.map(|d| d.next_attempt_at))
}

/// Fails the queued messages accepted at or before `cutoff` (they waited too long for the device).
pub fn expire_waiting(sql: &impl Sql, cutoff: u64, reason: &str, now: u64) -> Result<Vec<FollowUp>, ApiError> {
    let overdue = sql.rows::<MessageRow>(
        "SELECT * FROM messages WHERE status = ? AND created_at <= ? ORDER BY seq",
        vec![MessageStatus::Queued.as_str().into(), cutoff.into()],
    )?;
    let mut follow_ups = vec![];
    for message in overdue {
        let failure = Some((wagate_contract::wire::error_code::EXPIRED.to_owned(), reason.to_owned()));
        follow_ups.extend(advance(sql, &message.id, MessageStatus::Failed, now, None, failure)?);
    }
    Ok(follow_ups)
}

/// When the oldest queued message was accepted, if one is queued.
pub fn oldest_queued(sql: &impl Sql) -> Result<Option<u64>, ApiError> {
    let query = "SELECT MIN(created_at) AS next_attempt_at FROM messages WHERE status = ? HAVING COUNT(*) > 0";
    Ok(sql.row::<Due>(query, vec![MessageStatus::Queued.as_str().into()])?.map(|d| d.next_attempt_at))
}

/// Finished messages (their content with them) and applied bridge events from before `cutoff`.
/// A receipt for a trimmed message finds nothing to update and is ignored.
pub fn trim(sql: &impl Sql, cutoff: u64) -> Result<(), ApiError> {
    let mut binds = waiting();
    binds.push(cutoff.into());
    sql.run("DELETE FROM messages WHERE status NOT IN (?, ?) AND created_at < ?", binds)?;
    sql.run("DELETE FROM campaign_messages WHERE message_id NOT IN (SELECT id FROM messages)", vec![])?;
    sql.run("DELETE FROM applied_events WHERE at < ?", vec![cutoff.into()])?;
    sql.run("DELETE FROM withdrawn WHERE at < ?", vec![cutoff.into()])?;
    Ok(())
}

/// The time columns a move to `status` stamps (each once: an earlier stamp stays), with the
/// steps a skipping receipt passed over (read before delivered); none for a status no report sets.
fn stamped(status: MessageStatus) -> &'static [&'static str] {
    match status {
        MessageStatus::Sent => &["sent_at"],
        MessageStatus::Delivered => &["sent_at", "delivered_at"],
        MessageStatus::Read => &["sent_at", "delivered_at", "read_at"],
        MessageStatus::Failed => &["failed_at"],
        MessageStatus::Queued | MessageStatus::Sending | MessageStatus::Received => &[],
    }
}

/// Moves a message forward in its lifecycle, stamping the time of `next`. Receipts that skip a
/// step (read before delivered) stamp the skipped steps too. An unknown message, or a report
/// that would move it back, changes nothing.
pub fn advance(
    sql: &impl Sql,
    message_id: &str,
    next: MessageStatus,
    at: u64,
    external_id: Option<String>,
    failure: Option<(String, String)>,
) -> Result<Vec<FollowUp>, ApiError> {
    let columns = stamped(next);
    if columns.is_empty() {
        return Ok(vec![]);
    }
    let Some(id) = MessageId::parse(message_id) else { return Ok(vec![]) };
    let Some(row) = message_row(sql, &id)? else { return Ok(vec![]) };
    let current = MessageStatus::parse(&row.status).ok_or_else(|| ApiError::internal("stored status is unknown"))?;
    if !current.can_become(next) {
        return Ok(vec![]);
    }
    let (code, reason) = failure.unzip();
    // One assignment per column: SQLite keeps only the last of several to the same column.
    let stamps: String = columns.iter().map(|c| format!(", {c} = COALESCE({c}, ?)")).collect();
    let mut binds = vec![next.as_str().into(), external_id.into(), code.into(), reason.into()];
    binds.extend(columns.iter().map(|_| at.into()));
    binds.push(id.as_str().into());
    sql.run(
        &format!(
            "UPDATE messages SET status = ?, external_id = COALESCE(?, external_id),
             error_code = COALESCE(?, error_code), error_reason = COALESCE(?, error_reason){stamps}
             WHERE id = ?"
        ),
        binds,
    )?;
    if row.sensitive != 0 && matches!(next, MessageStatus::Sent | MessageStatus::Failed) {
        let withheld = Content::Text { text: WITHHELD_TEXT.into() };
        let withheld = serde_json::to_string(&withheld).map_err(ApiError::internal)?;
        sql.run("UPDATE messages SET content = ? WHERE id = ?", vec![withheld.into(), id.as_str().into()])?;
    }
    let recipient: Recipient = serde_json::from_str(&row.recipient).map_err(ApiError::internal)?;
    let updated = message_row(sql, &id)?.ok_or_else(|| ApiError::internal("message vanished"))?;
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
        sent_at: updated.sent_at,
        delivered_at: updated.delivered_at,
        read_at: updated.read_at,
    };
    let Some(what) = What::of_message(next, progress) else { return Ok(vec![]) };
    let event = Event::new(Some(device_id), at, what);
    let mut follow_ups = vec![FollowUp::App(AppOutboxOp::Record(app::Record { event }))];
    let query = "SELECT campaign_id, contact FROM campaign_messages WHERE message_id = ?";
    if let Some(CampaignRef { campaign_id, contact }) = sql.row(query, vec![id.as_str().into()])? {
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

/// Applies a bridge event once; a redelivered event id, or any event for a retired device, is
/// ignored. `media` makes an inbound file's view (its link needs the worker's settings).
pub fn apply(
    sql: &impl Sql,
    event: BridgeEvent,
    media: impl FnOnce(&MediaRef, u64) -> Result<InboundMedia, ApiError>,
) -> Result<Vec<FollowUp>, ApiError> {
    let seen =
        sql.any("SELECT COUNT(*) AS n FROM applied_events WHERE event_id = ?", vec![event.event_id.as_str().into()])?;
    if seen || device(sql).map_or(true, |d| d.deleted != 0) {
        return Ok(vec![]);
    }
    sql.run(
        "INSERT INTO applied_events (event_id, at) VALUES (?, ?)",
        vec![event.event_id.into(), event.at_ms.into()],
    )?;
    let at = event.at_ms;
    match event.kind {
        EventKind::QrUpdated { qr } => set_status(sql, Status::WaitingForScan { qr }, at),
        EventKind::PairCode { code } => set_pair_code(sql, code).map(|()| vec![]),
        EventKind::Connected { phone } => set_status(sql, Status::Online { phone }, at),
        EventKind::Disconnected { reason, logged_out } => set_status(sql, Status::Offline { reason, logged_out }, at),
        EventKind::MessageSent { message_id, external_id } => {
            advance(sql, &message_id, MessageStatus::Sent, at, Some(external_id), None)
        }
        EventKind::MessageDelivered { message_id } => {
            advance(sql, &message_id, MessageStatus::Delivered, at, None, None)
        }
        EventKind::MessageRead { message_id } => advance(sql, &message_id, MessageStatus::Read, at, None, None),
        EventKind::MessageFailed { message_id, code, reason } => {
            advance(sql, &message_id, MessageStatus::Failed, at, None, Some((code, reason)))
        }
        EventKind::Inbound { external_id, from, push_name, content, participant } => {
            let device = device(sql)?;
            let device_id = device.id()?;
            let group = from.ends_with("@g.us");
            let user = |jid: String| jid.split('@').next().unwrap_or_default().to_owned();
            let (from, participant) = (user(from), participant.map(user));
            let (kind, body) = match &content {
                Content::Text { text } => ("text", Some(text.clone())),
                Content::Media { kind, caption, .. } => (kind.as_str(), caption.clone()),
                Content::Location { name, .. } => ("location", name.clone()),
                Content::Reaction { emoji, .. } => ("reaction", Some(emoji.clone())),
            };
            let media = match &content {
                Content::Media { media: file, .. } => Some(media(file, at)?),
                _ => None,
            };
            let message_id = MessageId::generate(&device_id);
            let chat = if group { Recipient::Group(from.clone()) } else { Recipient::Phone(from.clone()) };
            // Kept as the app's outbound messages are, for as long, so its id can be looked up.
            sql.run(
                "INSERT INTO messages (id, app_id, recipient, content, status, external_id, trace_id, created_at,
                 direction, participant) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                vec![
                    message_id.as_str().into(),
                    device.app_id.as_str().into(),
                    serde_json::to_string(&chat).map_err(ApiError::internal)?.into(),
                    serde_json::to_string(&content).map_err(ApiError::internal)?.into(),
                    MessageStatus::Received.as_str().into(),
                    external_id.as_str().into(),
                    trace_id().into(),
                    at.into(),
                    Direction::In.as_str().into(),
                    participant.clone().into(),
                ],
            )?;
            let what = What::MessageIncoming(Box::new(Incoming {
                message_id,
                from,
                body,
                device_id: device_id.clone(),
                external_id,
                name: push_name,
                group,
                participant,
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

/// Writes the outbox entries among `follow_ups`; answers whether the queue should run.
pub fn record(sql: &impl Sql, follow_ups: Vec<FollowUp>) -> Result<bool, ApiError> {
    let mut drain = false;
    for follow_up in follow_ups {
        match follow_up {
            FollowUp::App(op) => {
                let op = serde_json::to_string(&op).map_err(ApiError::internal)?;
                sql.run("INSERT INTO app_outbox (op) VALUES (?)", vec![op.into()])?;
            }
            FollowUp::Campaign { campaign_id, op } => {
                let op = serde_json::to_string(&op).map_err(ApiError::internal)?;
                sql.run(
                    "INSERT INTO campaign_outbox (campaign_id, op) VALUES (?, ?)",
                    vec![campaign_id.into(), op.into()],
                )?;
            }
            FollowUp::DrainQueue => drain = true,
        }
    }
    Ok(drain)
}

/// The oldest entry of an outbox table, if any. One that does not decode would otherwise block
/// every entry behind it forever: it is deleted and answered as a dead letter, to be logged.
fn oldest<T>(
    sql: &impl Sql,
    table: Outbox,
    decode: impl FnOnce(&str, Option<String>) -> Result<T, String>,
) -> Result<Option<Outbound<T>>, ApiError> {
    #[derive(Deserialize)]
    struct Pending {
        seq: i64,
        op: String,
        campaign_id: Option<String>,
    }
    let query = match table {
        Outbox::App => "SELECT seq, op, NULL AS campaign_id FROM app_outbox ORDER BY seq LIMIT 1",
        Outbox::Campaign => "SELECT seq, op, campaign_id FROM campaign_outbox ORDER BY seq LIMIT 1",
    };
    let Some(Pending { seq, op, campaign_id }) = sql.row::<Pending>(query, vec![])? else { return Ok(None) };
    Ok(Some(match decode(&op, campaign_id) {
        Ok(op) => Outbound::Op { seq, op },
        Err(error) => {
            delivered(sql, table, seq)?;
            Outbound::DeadLetter { seq, error }
        }
    }))
}

/// serde's message may quote the entry (a message's text): only where, and what kind.
fn undecodable(e: serde_json::Error) -> String {
    format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column())
}

fn decoded<T: DeserializeOwned>(op: &str) -> Result<T, String> {
    serde_json::from_str(op).map_err(undecodable)
}

/// The two outboxes a device writes with its changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outbox {
    App,
    Campaign,
}

/// The oldest operation still to run on the app's object.
pub fn next_app_op(sql: &impl Sql) -> Result<Option<Outbound<AppOutboxOp>>, ApiError> {
    oldest(sql, Outbox::App, |op, _| decoded(op))
}

/// The oldest outcome still to tell its campaign, in order per campaign.
pub fn next_campaign_outcome(sql: &impl Sql) -> Result<Option<Outbound<ToCampaign>>, ApiError> {
    oldest(sql, Outbox::Campaign, |op, campaign_id| match decoded(op)? {
        CampaignOp::Outcome(outcome) => Ok(ToCampaign { campaign_id: campaign_id.unwrap_or_default(), outcome }),
        _ => Err("an operation other than an outcome".into()),
    })
}

/// Removes an outbox entry once its operation ran (or was found undeliverable).
pub fn delivered(sql: &impl Sql, table: Outbox, seq: i64) -> Result<(), ApiError> {
    let query = match table {
        Outbox::App => "DELETE FROM app_outbox WHERE seq = ?",
        Outbox::Campaign => "DELETE FROM campaign_outbox WHERE seq = ?",
    };
    sql.run(query, vec![seq.into()])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use wagate_contract::wire::error_code;

    use super::*;
    use crate::domain::events::EventName;
    use crate::store::memory::Memory;

    const DEVICE: &str = "dev_0123456789abcdef";
    const APP: &str = "app_0123456789abcdef";

    fn app() -> AppId {
        AppId::parse(APP).unwrap()
    }

    fn store() -> Memory {
        let sql = Memory::default();
        super::super::migrate(&sql, &MIGRATIONS).unwrap();
        let device_id = DeviceId::parse(DEVICE).unwrap();
        let op = CreateDevice { device_id, app_id: app(), label: None, pair_phone: None, now: 1 };
        create(&sql, op).unwrap();
        sql
    }

    fn message(priority: Priority, code_expires_at: Option<u64>, now: u64) -> NewMessage {
        NewMessage {
            message_id: MessageId::generate(&DeviceId::parse(DEVICE).unwrap()),
            app_id: app(),
            recipient: Recipient::parse("6281234567890", None).unwrap(),
            content: Content::Text { text: "the text".into() },
            trace_id: "trace".into(),
            meta: None,
            priority,
            code_expires_at,
            campaign: None,
            now,
        }
    }

    fn queued(sql: &Memory, message: NewMessage) -> MessageId {
        insert_message(sql, &message).unwrap();
        message.message_id
    }

    fn bridge(event_id: &str, at_ms: u64, kind: EventKind) -> BridgeEvent {
        BridgeEvent { event_id: event_id.into(), device_id: DEVICE.into(), at_ms, kind }
    }

    fn status(sql: &Memory, id: &MessageId) -> MessageStatus {
        MessageStatus::parse(&message_row(sql, id).unwrap().unwrap().status).unwrap()
    }

    /// The names of the events and the kinds of the other follow-ups, in order.
    fn kinds(follow_ups: &[FollowUp]) -> Vec<String> {
        follow_ups
            .iter()
            .map(|f| match f {
                FollowUp::App(AppOutboxOp::Record(r)) => format!("record {}", r.event.name().as_str()),
                FollowUp::App(AppOutboxOp::DeviceChanged(c)) => format!("changed {}", c.status.as_str()),
                FollowUp::App(AppOutboxOp::RemoveDevice(_)) => "remove".into(),
                FollowUp::App(AppOutboxOp::Refund(_)) => "refund".into(),
                FollowUp::Campaign { campaign_id, .. } => format!("campaign {campaign_id}"),
                FollowUp::DrainQueue => "drain".into(),
            })
            .collect()
    }

    #[test]
    fn another_app_cannot_see_the_device_or_its_messages() {
        let sql = store();
        let other = AppId::parse("app_fedcba9876543210").unwrap();
        assert!(matches!(view(&sql, &other), Err(ApiError::NotFound { .. })));
        let id = queued(&sql, message(Priority::Normal, None, 5));
        assert!(matches!(super::message(&sql, &other, &id), Err(ApiError::NotFound { .. })));
        assert_eq!(super::message(&sql, &app(), &id).unwrap().status, MessageStatus::Queued);
        assert_eq!(view(&sql, &app()).unwrap().status, DeviceStatus::Registering);
    }

    #[test]
    fn a_retried_enqueue_changes_nothing_and_a_withdrawn_id_is_remembered() {
        let sql = store();
        let first = message(Priority::Normal, None, 5);
        let retried = NewMessage { content: Content::Text { text: "other".into() }, ..first.clone() };
        insert_message(&sql, &first).unwrap();
        insert_message(&sql, &retried).unwrap();
        assert_eq!(sql.number("SELECT COUNT(*) AS n FROM messages", vec![]), Ok(Some(1)));
        assert_eq!(super::message(&sql, &app(), &first.message_id).unwrap().content, first.content);
        let never = MessageId::generate(&DeviceId::parse(DEVICE).unwrap());
        assert!(!withdrawn(&sql, &never).unwrap());
        withdraw(&sql, &never, 9).unwrap();
        withdraw(&sql, &never, 9).unwrap();
        assert!(withdrawn(&sql, &never).unwrap());
    }

    #[test]
    fn codes_jump_the_queue_and_a_lapsed_lease_is_due_again() {
        let sql = store();
        let bulk = queued(&sql, message(Priority::Normal, None, 5));
        let code = queued(&sql, message(Priority::Otp, Some(1_000_000), 6));
        assert_eq!(due(&sql, 10).unwrap().unwrap().id, code.as_str());
        lease(&sql, &code, 1, 40).unwrap();
        assert_eq!(due(&sql, 10).unwrap().unwrap().id, bulk.as_str(), "a leased code waits for its lease");
        lease(&sql, &bulk, 1, 50).unwrap();
        assert!(due(&sql, 10).unwrap().is_none());
        assert_eq!(next_attempt(&sql).unwrap(), Some(40));
        assert_eq!(due(&sql, 40).unwrap().unwrap().id, code.as_str(), "the lease lapsed");
        requeue(&sql, &bulk, 70).unwrap();
        assert_eq!(status(&sql, &bulk), MessageStatus::Queued);
        advance(&sql, code.as_str(), MessageStatus::Sent, 41, Some("wamid".into()), None).unwrap();
        requeue(&sql, &code, 99).unwrap();
        assert_eq!(status(&sql, &code), MessageStatus::Sent, "a reported send is not requeued");
        assert_eq!(next_attempt(&sql).unwrap(), Some(70));
    }

    #[test]
    fn receipts_move_a_message_forward_only_and_stamp_skipped_steps() {
        let sql = store();
        let id = queued(&sql, message(Priority::Normal, None, 5));
        let read = advance(&sql, id.as_str(), MessageStatus::Read, 30, None, None).unwrap();
        assert_eq!(kinds(&read), ["record message.read"]);
        let row = message_row(&sql, &id).unwrap().unwrap();
        assert_eq!((row.sent_at, row.delivered_at, row.read_at), (Some(30), Some(30), Some(30)));
        assert!(advance(&sql, id.as_str(), MessageStatus::Delivered, 40, None, None).unwrap().is_empty());
        assert_eq!(status(&sql, &id), MessageStatus::Read);
        assert!(advance(&sql, "msg_unknown", MessageStatus::Sent, 40, None, None).unwrap().is_empty());
    }

    /// Each status stamps its own time (the SQL once assigned `sent_at` and `delivered_at` twice,
    /// and SQLite keeps only the last assignment), and its event says when each step happened.
    #[test]
    fn each_step_stamps_its_time_and_its_event_carries_them() {
        let sql = store();
        let id = queued(&sql, message(Priority::Normal, None, 5));
        let times = |follow_ups: Vec<FollowUp>| {
            let Some(FollowUp::App(AppOutboxOp::Record(app::Record { event }))) = follow_ups.into_iter().next() else {
                panic!("no event")
            };
            let (What::MessageSent(p) | What::MessageDelivered(p) | What::MessageRead(p)) = event.what else {
                panic!("{event:?}")
            };
            (p.sent_at, p.delivered_at, p.read_at)
        };
        let sent = advance(&sql, id.as_str(), MessageStatus::Sent, 10, Some("wamid".into()), None).unwrap();
        assert_eq!(times(sent), (Some(10), None, None));
        let delivered = advance(&sql, id.as_str(), MessageStatus::Delivered, 20, None, None).unwrap();
        assert_eq!(times(delivered), (Some(10), Some(20), None));
        let read = advance(&sql, id.as_str(), MessageStatus::Read, 30, None, None).unwrap();
        assert_eq!(times(read), (Some(10), Some(20), Some(30)));
        let shown = super::message(&sql, &app(), &id).unwrap();
        assert_eq!(
            (shown.sent_at, shown.delivered_at, shown.read_at, shown.failed_at),
            (Some(10), Some(20), Some(30), None)
        );
    }

    #[test]
    fn a_sent_code_withholds_its_text_and_a_failure_refunds_and_tells_its_campaign() {
        let sql = store();
        let code = queued(&sql, message(Priority::Otp, Some(1_000), 5));
        advance(&sql, code.as_str(), MessageStatus::Sent, 10, Some("wamid".into()), None).unwrap();
        let shown = super::message(&sql, &app(), &code).unwrap();
        assert_eq!(shown.content, Content::Text { text: WITHHELD_TEXT.into() });
        assert_eq!(shown.external_id.as_deref(), Some("wamid"));

        let campaign = CampaignRef { campaign_id: "cmp_1".into(), contact: 3 };
        let bulk = queued(&sql, NewMessage { campaign: Some(campaign), ..message(Priority::Normal, None, 5) });
        let failure = Some(("not_on_whatsapp".to_owned(), "no account".to_owned()));
        let failed = advance(&sql, bulk.as_str(), MessageStatus::Failed, 20, None, failure).unwrap();
        assert_eq!(kinds(&failed), ["record message.failed", "campaign cmp_1", "refund"]);
        let FollowUp::Campaign { op: CampaignOp::Outcome(outcome), .. } = &failed[1] else { panic!("{failed:?}") };
        assert_eq!((outcome.contact, outcome.error_code.as_deref()), (3, Some("not_on_whatsapp")));
        let row = message_row(&sql, &bulk).unwrap().unwrap();
        assert_eq!(row.content, r#"{"type":"text","text":"the text"}"#, "only codes are withheld");
    }

    #[test]
    fn bridge_events_apply_once_and_not_to_a_retired_device() {
        let sql = store();
        let no_media = |_: &MediaRef, _| -> Result<InboundMedia, ApiError> { unreachable!("no file") };
        let connected = bridge("e1", 10, EventKind::Connected { phone: "628111".into() });
        assert_eq!(kinds(&apply(&sql, connected.clone(), no_media).unwrap()), ["changed online", "drain"]);
        assert!(apply(&sql, connected, no_media).unwrap().is_empty(), "a redelivered event is ignored");
        let d = device(&sql).unwrap();
        assert_eq!((d.status, d.phone.as_deref(), d.last_seen_at), (DeviceStatus::Online, Some("628111"), Some(10)));
        let stale_qr = bridge("e2", 11, EventKind::QrUpdated { qr: "qr".into() });
        assert!(apply(&sql, stale_qr, no_media).unwrap().is_empty(), "a stale pairing session's QR");

        let waiting = queued(&sql, message(Priority::Normal, None, 12));
        let retired = retire(&sql, &device(&sql).unwrap(), 20).unwrap();
        assert_eq!(kinds(&retired), ["record message.failed", "refund", "remove"]);
        assert_eq!(message_row(&sql, &waiting).unwrap().unwrap().error_code.as_deref(), Some("device_deleted"));
        let late = bridge("e3", 30, EventKind::Disconnected { reason: "bye".into(), logged_out: true });
        assert!(apply(&sql, late, no_media).unwrap().is_empty());
        assert!(matches!(view(&sql, &app()), Err(ApiError::NotFound { .. })));
    }

    #[test]
    fn a_wait_on_a_message_is_over_once_whatsapp_decided_or_the_device_is_not_online() {
        let sql = store();
        let online = Status::Online { phone: "628111".into() };
        set_status(&sql, online, 2).unwrap();
        let [sent, refused, waiting] = [(); 3].map(|()| queued(&sql, message(Priority::Normal, None, 5)));
        lease(&sql, &waiting, 1, 100).unwrap();
        assert!(!wait_over(&sql, &waiting).unwrap(), "SENDING: the bridge has not answered yet");
        advance(&sql, sent.as_str(), MessageStatus::Sent, 10, Some("wamid".into()), None).unwrap();
        let failure = Some(("not_on_whatsapp".to_owned(), "no account".to_owned()));
        advance(&sql, refused.as_str(), MessageStatus::Failed, 10, None, failure).unwrap();
        assert!(wait_over(&sql, &sent).unwrap() && wait_over(&sql, &refused).unwrap());
        let unknown = MessageId::generate(&DeviceId::parse(DEVICE).unwrap());
        assert!(wait_over(&sql, &unknown).unwrap(), "nothing will settle a message this device lacks");

        let offline = Status::Offline { reason: "unlinked".into(), logged_out: false };
        set_status(&sql, offline, 20).unwrap();
        assert!(wait_over(&sql, &waiting).unwrap(), "it waits for a reconnect, not for WhatsApp");
    }

    #[test]
    fn an_inbound_group_message_names_its_group_and_author_and_is_kept_for_its_app() {
        let sql = store();
        let inbound = EventKind::Inbound {
            external_id: "wamid.in".into(),
            from: "120363025246125244@g.us".into(),
            push_name: Some("Ann".into()),
            content: Content::Text { text: "hello".into() },
            participant: Some("447911123456@s.whatsapp.net".into()),
        };
        let no_media = |_: &MediaRef, _| -> Result<InboundMedia, ApiError> { unreachable!("no file") };
        let follow_ups = apply(&sql, bridge("e1", 10, inbound), no_media).unwrap();
        let [FollowUp::App(AppOutboxOp::Record(app::Record { event }))] = follow_ups.as_slice() else {
            panic!("{follow_ups:?}")
        };
        assert_eq!(event.name(), EventName::MessageIncoming);
        let What::MessageIncoming(incoming) = &event.what else { panic!("{event:?}") };
        assert_eq!((incoming.from.as_str(), incoming.group), ("120363025246125244", true));
        assert_eq!(incoming.participant.as_deref(), Some("447911123456"));
        assert_eq!((incoming.body.as_deref(), incoming.name.as_deref()), (Some("hello"), Some("Ann")));

        let shown = super::message(&sql, &app(), &incoming.message_id).unwrap();
        assert_eq!((shown.direction, shown.status), (Direction::In, MessageStatus::Received));
        assert_eq!(shown.recipient, Recipient::Group("120363025246125244".into()));
        assert_eq!(
            (shown.external_id.as_deref(), shown.participant.as_deref()),
            (Some("wamid.in"), Some("447911123456"))
        );
        assert_eq!(shown.content, Content::Text { text: "hello".into() });
        let other = AppId::parse("app_fedcba9876543210").unwrap();
        assert!(matches!(super::message(&sql, &other, &incoming.message_id), Err(ApiError::NotFound { .. })));
        assert!(advance(&sql, incoming.message_id.as_str(), MessageStatus::Read, 11, None, None).unwrap().is_empty());
        assert!(due(&sql, 100).unwrap().is_none(), "an inbound message is never sent");
        trim(&sql, 11).unwrap();
        assert!(message_row(&sql, &incoming.message_id).unwrap().is_none(), "kept as long as outbound ones");
    }

    #[test]
    fn codes_expire_while_queued_and_messages_expire_waiting_for_an_offline_device() {
        let sql = store();
        let code = queued(&sql, message(Priority::Otp, Some(100), 5));
        let old = queued(&sql, message(Priority::Normal, None, 6));
        let young = queued(&sql, message(Priority::Normal, None, 60));
        assert_eq!(next_code_expiry(&sql).unwrap(), Some(100));
        assert!(expire_codes(&sql, 99).unwrap().is_empty());
        assert_eq!(kinds(&expire_codes(&sql, 100).unwrap()), ["record message.failed", "refund"]);
        assert_eq!(message_row(&sql, &code).unwrap().unwrap().error_code.as_deref(), Some(error_code::EXPIRED));
        assert_eq!(next_code_expiry(&sql).unwrap(), None);
        assert_eq!(oldest_queued(&sql).unwrap(), Some(6));
        assert_eq!(expire_waiting(&sql, 10, "offline too long", 200).unwrap().len(), 2);
        assert_eq!((status(&sql, &old), status(&sql, &young)), (MessageStatus::Failed, MessageStatus::Queued));
        assert_eq!(message_row(&sql, &old).unwrap().unwrap().error_reason.as_deref(), Some("offline too long"));
    }

    #[test]
    fn trimming_keeps_what_is_still_waiting() {
        let sql = store();
        let waiting = queued(&sql, message(Priority::Normal, None, 5));
        let campaign = CampaignRef { campaign_id: "cmp_1".into(), contact: 0 };
        let done = queued(&sql, NewMessage { campaign: Some(campaign), ..message(Priority::Normal, None, 5) });
        advance(&sql, done.as_str(), MessageStatus::Sent, 6, Some("wamid".into()), None).unwrap();
        let no_media = |_: &MediaRef, _| -> Result<InboundMedia, ApiError> { unreachable!("no file") };
        apply(&sql, bridge("e1", 7, EventKind::PairCode { code: "ABCD".into() }), no_media).unwrap();
        trim(&sql, 50).unwrap();
        assert!(message_row(&sql, &waiting).unwrap().is_some());
        assert!(message_row(&sql, &done).unwrap().is_none());
        assert_eq!(sql.number("SELECT COUNT(*) AS n FROM campaign_messages", vec![]), Ok(Some(0)));
        assert_eq!(sql.number("SELECT COUNT(*) AS n FROM applied_events", vec![]), Ok(Some(0)));
    }

    #[test]
    fn outboxes_hand_out_their_entries_in_order_and_skip_one_that_does_not_decode() {
        let sql = store();
        let id = queued(&sql, message(Priority::Normal, None, 5));
        let campaign = CampaignRef { campaign_id: "cmp_1".into(), contact: 0 };
        let bulk = queued(&sql, NewMessage { campaign: Some(campaign), ..message(Priority::Normal, None, 5) });
        let mut follow_ups = advance(&sql, id.as_str(), MessageStatus::Sent, 6, Some("w1".into()), None).unwrap();
        follow_ups.push(FollowUp::DrainQueue);
        assert!(record(&sql, follow_ups).unwrap(), "the queue is asked to run");
        sql.run("INSERT INTO app_outbox (op) VALUES ('{\"op\":\"list_keys\",\"text\":\"secret\"}')", vec![]).unwrap();
        sql.run("INSERT INTO campaign_outbox (campaign_id, op) VALUES ('cmp_0', 'not json')", vec![]).unwrap();
        let failed = advance(&sql, bulk.as_str(), MessageStatus::Failed, 7, None, None).unwrap();
        assert!(!record(&sql, failed).unwrap());

        let Some(Outbound::Op { seq, op: AppOutboxOp::Record(_) }) = next_app_op(&sql).unwrap() else { panic!() };
        delivered(&sql, Outbox::App, seq).unwrap();
        let Some(Outbound::DeadLetter { error, .. }) = next_app_op(&sql).unwrap() else { panic!() };
        assert!(!error.contains("secret") && !error.contains("list_keys"), "{error}");
        let Some(Outbound::Op { op: AppOutboxOp::Record(_), seq }) = next_app_op(&sql).unwrap() else { panic!() };
        delivered(&sql, Outbox::App, seq).unwrap();
        assert!(matches!(next_app_op(&sql).unwrap(), Some(Outbound::Op { op: AppOutboxOp::Refund(_), .. })));

        assert!(matches!(next_campaign_outcome(&sql).unwrap(), Some(Outbound::DeadLetter { .. })));
        let Some(Outbound::Op { seq, op }) = next_campaign_outcome(&sql).unwrap() else { panic!() };
        assert_eq!((op.campaign_id.as_str(), op.outcome.status), ("cmp_1", MessageStatus::Failed));
        delivered(&sql, Outbox::Campaign, seq).unwrap();
        assert_eq!(next_campaign_outcome(&sql).unwrap(), None);
    }

    #[test]
    fn a_new_pairing_session_drops_the_old_pair_code() {
        let sql = store();
        set_pair_code(&sql, "ABCD-EFGH".into()).unwrap();
        let no_media = |_: &MediaRef, _| -> Result<InboundMedia, ApiError> { unreachable!("no file") };
        apply(&sql, bridge("e1", 5, EventKind::QrUpdated { qr: "qr1".into() }), no_media).unwrap();
        assert_eq!(view(&sql, &app()).unwrap().pair_code.as_deref(), Some("ABCD-EFGH"), "kept while pairing");
        apply(&sql, bridge("e2", 6, EventKind::Connected { phone: "628".into() }), no_media).unwrap();
        let shown = view(&sql, &app()).unwrap();
        assert_eq!((shown.pair_code, shown.qr), (None, None));
        pair_by_code(&sql, "628999".into()).unwrap();
        assert_eq!(device(&sql).unwrap().pair_phone.as_deref(), Some("628999"));
    }
}
