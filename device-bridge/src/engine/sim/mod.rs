//! The simulated WhatsApp network of CONTRACT.md: it stands in for WhatsApp's
//! servers and for the phones on the other side, so the whole stack can run and
//! be tested on a machine that cannot reach WhatsApp.
//!
//! Its state lives in its own SQLite file (`sim.db`) so that a bridge restart
//! looks to the worker like a real reconnect: linked devices come back, the
//! phones keep what they received, and receipts still due are still sent.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use tokio::task::AbortHandle;
use wagate_contract::wire::{Content, EventKind};

use super::{DeviceStatus, Engine, EngineError, EventSink, LinkState, OutgoingMessage};
use crate::clock::{now_ms, rfc3339_now};
use crate::db::{parsed_column, Db};
use crate::ids::DeviceId;
use crate::jid::{Jid, PhoneNumber};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimTimings {
    /// From send to the delivery receipt.
    pub deliver: Duration,
    /// From send to the read receipt (never before delivery).
    pub read: Duration,
    /// How long each QR reference stays valid before the next one replaces it.
    pub qr_ttl: Duration,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (
        (status = 'waiting' AND qr IS NOT NULL)
        OR (status = 'connected' AND phone IS NOT NULL)
        OR status = 'unlinked'),
    qr TEXT,
    phone TEXT,
    updated_ms INTEGER NOT NULL
);
-- What the virtual phones received. `phone` is the recipient (a number or a group id).
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    phone TEXT NOT NULL,
    device_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    text TEXT,
    caption TEXT,
    media TEXT,
    location TEXT,
    at TEXT NOT NULL,
    sent_ms INTEGER NOT NULL,
    receipts INTEGER NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    read INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS inbox_by_phone ON inbox (phone, seq);
";

/// Errors of the simulator's control API (the phone side of the network).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("device not found")]
    DeviceNotFound,
    #[error("device is not waiting for a QR scan")]
    NotWaitingForScan,
    #[error("device is not connected")]
    NotConnected,
    #[error("simulator storage failed: {0}")]
    Storage(#[from] rusqlite::Error),
}

/// One message as a virtual phone shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhoneMessage {
    pub message_id: String,
    pub external_id: String,
    pub from: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    pub caption: Option<String>,
    pub media: Option<serde_json::Value>,
    pub location: Option<serde_json::Value>,
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DeviceState {
    Waiting { qr: String },
    Connected { phone: String },
    Unlinked,
}

/// What the network does with a message, decided by the recipient (CONTRACT.md's number rules).
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Refuse { code: &'static str, reason: String },
    Deposit { receipts: bool },
}

impl Route {
    fn of(to: &Jid) -> Self {
        let Jid::User(phone) = to else {
            return Self::Deposit { receipts: true };
        };
        let number = phone.as_str();
        if number.starts_with("999") {
            Self::Refuse { code: "not_on_whatsapp", reason: format!("{number} is not on WhatsApp") }
        } else if number.starts_with("997") {
            Self::Refuse {
                code: "engine_error",
                reason: "simulated engine error: numbers starting with 997 always fail".into(),
            }
        } else {
            Self::Deposit { receipts: !number.starts_with("998") }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Receipt {
    Delivered,
    Read,
}

/// Cheap to clone: every clone drives the same network.
#[derive(Clone)]
pub struct SimEngine {
    db: Db,
    timings: SimTimings,
    events: EventSink,
    /// The QR rotation task of each device waiting for a scan.
    pairings: Arc<Mutex<HashMap<DeviceId, AbortHandle>>>,
}

impl SimEngine {
    pub fn open(path: &Path, timings: SimTimings, events: EventSink) -> rusqlite::Result<Self> {
        Ok(Self { db: Db::open(path, SCHEMA)?, timings, events, pairings: Arc::default() })
    }

    /// The phone scans the device's current QR.
    pub fn scan(&self, device_id: &DeviceId, phone: &PhoneNumber) -> Result<(), SimError> {
        {
            let conn = self.db.lock();
            match device_state(&conn, device_id)? {
                None => return Err(SimError::DeviceNotFound),
                Some(DeviceState::Waiting { .. }) => {}
                Some(_) => return Err(SimError::NotWaitingForScan),
            }
            conn.execute(
                "UPDATE devices SET status = 'connected', phone = ?2, qr = NULL, updated_ms = ?3 WHERE id = ?1",
                params![device_id.as_str(), phone.as_str(), now_ms_sql()],
            )?;
        }
        self.stop_pairing(device_id);
        self.events.emit(device_id, EventKind::Connected { phone: phone.to_string() });
        Ok(())
    }

    /// The phone removes the linked device.
    pub fn unlink(&self, device_id: &DeviceId) -> Result<(), SimError> {
        {
            let conn = self.db.lock();
            match device_state(&conn, device_id)? {
                None => return Err(SimError::DeviceNotFound),
                Some(DeviceState::Connected { .. }) => {}
                Some(_) => return Err(SimError::NotConnected),
            }
            conn.execute(
                "UPDATE devices SET status = 'unlinked', phone = NULL, qr = NULL, updated_ms = ?2 WHERE id = ?1",
                params![device_id.as_str(), now_ms_sql()],
            )?;
        }
        self.events.emit(device_id, EventKind::Disconnected { reason: "unlinked from phone".into(), logged_out: true });
        Ok(())
    }

    /// A phone sends the device a text; returns the message's WhatsApp id.
    pub fn inbound(&self, device_id: &DeviceId, from: &PhoneNumber, text: String) -> Result<String, SimError> {
        match device_state(&self.db.lock(), device_id)? {
            None => return Err(SimError::DeviceNotFound),
            Some(DeviceState::Connected { .. }) => {}
            Some(_) => return Err(SimError::NotConnected),
        }
        let external_id = new_external_id();
        self.events.emit(
            device_id,
            EventKind::Inbound {
                external_id: external_id.clone(),
                from: from.jid().to_string(),
                content: Content::Text { text },
            },
        );
        Ok(external_id)
    }

    /// What a phone (or group) has received, oldest first.
    pub fn phone_messages(&self, phone: &str) -> rusqlite::Result<Vec<PhoneMessage>> {
        let conn = self.db.lock();
        let mut stmt = conn.prepare(
            "SELECT message_id, external_id, sender, type, text, caption, media, location, at
             FROM inbox WHERE phone = ?1 ORDER BY seq",
        )?;
        let json = |row: &rusqlite::Row<'_>, idx| -> rusqlite::Result<Option<serde_json::Value>> {
            row.get::<_, Option<String>>(idx)?.map(|text| json_value(&text, idx)).transpose()
        };
        let rows = stmt.query_map([phone], |row| {
            Ok(PhoneMessage {
                message_id: row.get(0)?,
                external_id: row.get(1)?,
                from: row.get(2)?,
                kind: row.get(3)?,
                text: row.get(4)?,
                caption: row.get(5)?,
                media: json(row, 6)?,
                location: json(row, 7)?,
                at: row.get(8)?,
            })
        })?;
        rows.collect()
    }

    /// Rotates the device's QR every TTL until it is scanned or logged out.
    fn start_pairing(&self, device_id: &DeviceId, first_rotation_in: Duration) {
        let engine = self.clone();
        let id = device_id.clone();
        let task = tokio::spawn(async move {
            let mut wait = first_rotation_in;
            loop {
                tokio::time::sleep(wait).await;
                wait = engine.timings.qr_ttl;
                let qr = new_qr();
                let rotated = engine.db.lock().execute(
                    "UPDATE devices SET qr = ?2, updated_ms = ?3 WHERE id = ?1 AND status = 'waiting'",
                    params![id.as_str(), qr, now_ms_sql()],
                );
                match rotated {
                    Ok(0) => return,
                    Ok(_) => engine.events.emit(&id, EventKind::QrUpdated { qr }),
                    Err(e) => tracing::warn!(device_id = %id, error = %e, "QR rotation failed; retrying next period"),
                }
            }
        });
        if let Some(previous) = self.pairings_lock().insert(device_id.clone(), task.abort_handle()) {
            previous.abort();
        }
    }

    fn stop_pairing(&self, device_id: &DeviceId) {
        if let Some(task) = self.pairings_lock().remove(device_id) {
            task.abort();
        }
    }

    fn pairings_lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, AbortHandle>> {
        self.pairings.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends the receipts still due for a message, timed from when it was sent.
    fn schedule_receipts(&self, device_id: DeviceId, message_id: String, sent_ms: u64, delivered: bool) {
        let engine = self.clone();
        let deliver_at = sent_ms.saturating_add(duration_ms(self.timings.deliver));
        let read_at = sent_ms.saturating_add(duration_ms(self.timings.read)).max(deliver_at);
        tokio::spawn(async move {
            if !delivered {
                sleep_until_ms(deliver_at).await;
                if !engine.mark(Receipt::Delivered, &message_id) {
                    return;
                }
                engine.events.emit(&device_id, EventKind::MessageDelivered { message_id: message_id.clone() });
            }
            sleep_until_ms(read_at).await;
            if engine.mark(Receipt::Read, &message_id) {
                engine.events.emit(&device_id, EventKind::MessageRead { message_id });
            }
        });
    }

    /// Records a receipt unless it was already sent or the sending device is gone
    /// (a logged-out device gets no more receipts). True when it should be emitted.
    fn mark(&self, receipt: Receipt, message_id: &str) -> bool {
        let sql = match receipt {
            Receipt::Delivered => {
                "UPDATE inbox SET delivered = 1 WHERE message_id = ?1 AND delivered = 0
                 AND EXISTS (SELECT 1 FROM devices WHERE id = inbox.device_id AND status = 'connected')"
            }
            Receipt::Read => {
                "UPDATE inbox SET read = 1 WHERE message_id = ?1 AND delivered = 1 AND read = 0
                 AND EXISTS (SELECT 1 FROM devices WHERE id = inbox.device_id AND status = 'connected')"
            }
        };
        match self.db.lock().execute(sql, [message_id]) {
            Ok(changed) => changed == 1,
            Err(e) => {
                tracing::warn!(message_id, ?receipt, error = %e, "could not record receipt; skipping it");
                false
            }
        }
    }
}

#[async_trait]
impl Engine for SimEngine {
    async fn restore(&self) -> Result<(), EngineError> {
        let (connected, waiting, receipts) = {
            let conn = self.db.lock();
            let connected = query_vec(&conn, "SELECT id, phone FROM devices WHERE status = 'connected'", |row| {
                Ok((parsed_column(row, 0, DeviceId::parse)?, row.get::<_, String>(1)?))
            })?;
            let waiting = query_vec(&conn, "SELECT id FROM devices WHERE status = 'waiting'", |row| {
                parsed_column(row, 0, DeviceId::parse)
            })?;
            let receipts = query_vec(
                &conn,
                "SELECT device_id, message_id, sent_ms, delivered FROM inbox
                 WHERE receipts = 1 AND read = 0
                 AND EXISTS (SELECT 1 FROM devices WHERE id = inbox.device_id AND status = 'connected')",
                |row| {
                    Ok((
                        parsed_column(row, 0, DeviceId::parse)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, bool>(3)?,
                    ))
                },
            )?;
            (connected, waiting, receipts)
        };
        for (device_id, phone) in connected {
            self.events.emit(&device_id, EventKind::Connected { phone });
        }
        for device_id in &waiting {
            // The old QR died with the previous process, as a real pairing session would.
            self.start_pairing(device_id, Duration::ZERO);
        }
        for (device_id, message_id, sent_ms, delivered) in receipts {
            self.schedule_receipts(device_id, message_id, u64::try_from(sent_ms).unwrap_or(0), delivered);
        }
        Ok(())
    }

    async fn link(&self, device_id: &DeviceId) -> Result<LinkState, EngineError> {
        let qr = {
            let conn = self.db.lock();
            match device_state(&conn, device_id)? {
                Some(DeviceState::Connected { phone }) => return Ok(LinkState::Linked { phone }),
                Some(DeviceState::Waiting { qr }) => return Ok(LinkState::Pairing { qr }),
                None | Some(DeviceState::Unlinked) => {}
            }
            let qr = new_qr();
            conn.execute(
                "INSERT INTO devices (id, status, qr, phone, updated_ms) VALUES (?1, 'waiting', ?2, NULL, ?3)
                 ON CONFLICT (id) DO UPDATE SET status = 'waiting', qr = excluded.qr, phone = NULL,
                     updated_ms = excluded.updated_ms",
                params![device_id.as_str(), qr, now_ms_sql()],
            )?;
            qr
        };
        self.events.emit(device_id, EventKind::QrUpdated { qr: qr.clone() });
        self.start_pairing(device_id, self.timings.qr_ttl);
        Ok(LinkState::Pairing { qr })
    }

    async fn logout(&self, device_id: &DeviceId) -> Result<(), EngineError> {
        let removed = self.db.lock().execute("DELETE FROM devices WHERE id = ?1", [device_id.as_str()])?;
        if removed == 0 {
            return Err(EngineError::DeviceNotFound);
        }
        self.stop_pairing(device_id);
        Ok(())
    }

    async fn status(&self, device_id: &DeviceId) -> Result<Option<DeviceStatus>, EngineError> {
        Ok(device_state(&self.db.lock(), device_id)?.map(|state| match state {
            DeviceState::Waiting { .. } => DeviceStatus::Pairing,
            DeviceState::Connected { .. } => DeviceStatus::Connected,
            DeviceState::Unlinked => DeviceStatus::Disconnected,
        }))
    }

    async fn send(&self, device_id: &DeviceId, message: &OutgoingMessage) -> Result<(), EngineError> {
        let message_id = message.message_id.to_string();
        match Route::of(&message.to) {
            Route::Refuse { code, reason } => {
                connected_phone(&self.db.lock(), device_id)?;
                self.events.emit(device_id, EventKind::MessageFailed { message_id, code: code.into(), reason });
            }
            Route::Deposit { receipts } => {
                let deposit = {
                    let conn = self.db.lock();
                    let sender = connected_phone(&conn, device_id)?;
                    deposit(&conn, device_id, &sender, message, receipts)?
                };
                self.events.emit(
                    device_id,
                    EventKind::MessageSent { message_id: message_id.clone(), external_id: deposit.external_id },
                );
                // A repeated send reports the original outcome; its receipts are
                // already scheduled (or were resumed by `restore`).
                if deposit.fresh && receipts {
                    self.schedule_receipts(device_id.clone(), message_id, deposit.sent_ms, false);
                }
            }
        }
        Ok(())
    }
}

struct Deposit {
    external_id: String,
    sent_ms: u64,
    /// False when the phone already had this message id.
    fresh: bool,
}

/// Puts the message in the recipient's inbox, once per message id.
fn deposit(
    conn: &Connection,
    device_id: &DeviceId,
    sender: &str,
    message: &OutgoingMessage,
    receipts: bool,
) -> rusqlite::Result<Deposit> {
    let (kind, text) = match &message.content {
        Content::Text { text } => ("text", text),
    };
    let external_id = new_external_id();
    let sent_ms = now_ms();
    let inserted = conn.execute(
        "INSERT INTO inbox (message_id, phone, device_id, external_id, sender, type, text, at, sent_ms, receipts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (message_id) DO NOTHING",
        params![
            message.message_id.as_str(),
            message.to.user(),
            device_id.as_str(),
            external_id,
            sender,
            kind,
            text,
            rfc3339_now(),
            i64::try_from(sent_ms).unwrap_or(i64::MAX),
            receipts,
        ],
    )?;
    if inserted == 1 {
        return Ok(Deposit { external_id, sent_ms, fresh: true });
    }
    conn.query_row(
        "SELECT external_id, sent_ms FROM inbox WHERE message_id = ?1",
        [message.message_id.as_str()],
        |row| {
            Ok(Deposit {
                external_id: row.get(0)?,
                sent_ms: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                fresh: false,
            })
        },
    )
}

fn device_state(conn: &Connection, device_id: &DeviceId) -> rusqlite::Result<Option<DeviceState>> {
    conn.query_row("SELECT status, qr, phone FROM devices WHERE id = ?1", [device_id.as_str()], |row| {
        let status: String = row.get(0)?;
        match (status.as_str(), row.get(1)?, row.get(2)?) {
            ("waiting", Some(qr), _) => Ok(DeviceState::Waiting { qr }),
            ("connected", _, Some(phone)) => Ok(DeviceState::Connected { phone }),
            ("unlinked", _, _) => Ok(DeviceState::Unlinked),
            _ => Err(rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("device row in impossible state {status:?}").into(),
            )),
        }
    })
    .optional()
}

/// The sending device's own number, or why it cannot send.
fn connected_phone(conn: &Connection, device_id: &DeviceId) -> Result<String, EngineError> {
    match device_state(conn, device_id)? {
        None => Err(EngineError::DeviceNotFound),
        Some(DeviceState::Connected { phone }) => Ok(phone),
        Some(_) => Err(EngineError::DeviceOffline),
    }
}

fn query_vec<T>(
    conn: &Connection,
    sql: &str,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    conn.prepare(sql)?.query_map([], map)?.collect()
}

fn json_value(text: &str, idx: usize) -> rusqlite::Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
}

/// Shaped like WhatsApp's pairing references: `2@<ref>,<noise key>,<identity key>,<adv secret>`.
fn new_qr() -> String {
    format!(
        "2@{},{},{},{}",
        BASE64.encode(rand::random::<[u8; 30]>()),
        BASE64.encode(rand::random::<[u8; 32]>()),
        BASE64.encode(rand::random::<[u8; 32]>()),
        BASE64.encode(rand::random::<[u8; 32]>()),
    )
}

/// Shaped like the ids WhatsApp Web gives its messages: `3EB0` and 18 hex digits.
fn new_external_id() -> String {
    format!("3EB0{}", hex::encode_upper(rand::random::<[u8; 9]>()))
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn now_ms_sql() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}

async fn sleep_until_ms(at_ms: u64) {
    tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms()))).await;
}

#[cfg(test)]
mod tests;
