//! What the virtual phones received, and which receipts they still owe.

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use wagate_contract::wire::MediaKind;

use crate::clock::{now_ms, rfc3339_now};
use crate::db::parsed_column;
use crate::engine::{OutgoingMessage, Payload};
use crate::ids::DeviceId;
use crate::media::Sha256Hex;

pub(super) const SCHEMA: &str = "
-- `phone` is the recipient (a number or a group id).
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

/// One message as a virtual phone shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhoneMessage {
    pub message_id: String,
    pub external_id: String,
    pub from: String,
    /// `text`, `image`, `video`, `audio`, `document` or `location`.
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    pub caption: Option<String>,
    pub media: Option<PhoneMedia>,
    pub location: Option<PhoneLocation>,
    pub at: String,
}

/// The file as the phone received it: hash and size are of the bytes that arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhoneMedia {
    pub mime_type: String,
    pub sha256: String,
    pub size: u64,
    pub file_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhoneLocation {
    pub latitude: f64,
    pub longitude: f64,
    pub name: Option<String>,
    pub address: Option<String>,
}

/// A message as it lands in an inbox, before it has an id there.
pub(super) struct Arrival {
    kind: &'static str,
    text: Option<String>,
    caption: Option<String>,
    media: Option<PhoneMedia>,
    location: Option<PhoneLocation>,
}

impl Arrival {
    /// Reads a media file's bytes, as a phone downloading it would.
    pub async fn of(payload: &Payload) -> std::io::Result<Self> {
        let none = Self { kind: "text", text: None, caption: None, media: None, location: None };
        Ok(match payload {
            Payload::Text { text } => Self { text: Some(text.clone()), ..none },
            Payload::Media(media) => {
                let bytes = media.file.read().await?;
                Self {
                    kind: kind_name(media.kind),
                    caption: media.caption.clone(),
                    media: Some(PhoneMedia {
                        mime_type: media.mime_type.clone(),
                        sha256: Sha256Hex::of(&bytes).to_string(),
                        size: bytes.len() as u64,
                        file_name: media.file_name.clone(),
                    }),
                    ..none
                }
            }
            Payload::Location(l) => Self {
                kind: "location",
                location: Some(PhoneLocation {
                    latitude: l.latitude,
                    longitude: l.longitude,
                    name: l.name.clone(),
                    address: l.address.clone(),
                }),
                ..none
            },
        })
    }
}

fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Image => "image",
        MediaKind::Video => "video",
        MediaKind::Audio => "audio",
        MediaKind::Document => "document",
        MediaKind::Sticker => "sticker",
    }
}

pub(super) struct Deposit {
    pub external_id: String,
    pub sent_ms: u64,
    /// False when the phone already had this message id.
    pub fresh: bool,
}

/// Puts the message in the recipient's inbox, once per message id.
pub(super) fn deposit(
    conn: &Connection,
    device_id: &DeviceId,
    sender: &str,
    message: &OutgoingMessage,
    arrival: &Arrival,
    receipts: bool,
) -> rusqlite::Result<Deposit> {
    let external_id = super::new_external_id();
    let sent_ms = now_ms();
    let inserted = conn.execute(
        "INSERT INTO inbox (message_id, phone, device_id, external_id, sender, type, text, caption, media, location,
                            at, sent_ms, receipts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (message_id) DO NOTHING",
        params![
            message.message_id.as_str(),
            message.to.user(),
            device_id.as_str(),
            external_id,
            sender,
            arrival.kind,
            arrival.text,
            arrival.caption,
            arrival.media.as_ref().map(to_json).transpose()?,
            arrival.location.as_ref().map(to_json).transpose()?,
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

/// What a phone (or group) has received, oldest first.
pub(super) fn messages(conn: &Connection, phone: &str) -> rusqlite::Result<Vec<PhoneMessage>> {
    let mut stmt = conn.prepare(
        "SELECT message_id, external_id, sender, type, text, caption, media, location, at
         FROM inbox WHERE phone = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([phone], |row| {
        Ok(PhoneMessage {
            message_id: row.get(0)?,
            external_id: row.get(1)?,
            from: row.get(2)?,
            kind: row.get(3)?,
            text: row.get(4)?,
            caption: row.get(5)?,
            media: from_json(row, 6)?,
            location: from_json(row, 7)?,
            at: row.get(8)?,
        })
    })?;
    rows.collect()
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Receipt {
    Delivered,
    Read,
}

/// Records a receipt unless it was already sent or the sending device is gone
/// (a logged-out device gets no more receipts). True when it should be emitted.
pub(super) fn mark(conn: &Connection, receipt: Receipt, message_id: &str) -> rusqlite::Result<bool> {
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
    Ok(conn.execute(sql, [message_id])? == 1)
}

/// A message whose read receipt is still owed.
pub(super) struct Owed {
    pub device_id: DeviceId,
    pub message_id: String,
    pub sent_ms: u64,
    pub delivered: bool,
}

/// Receipts still owed by phones whose sender is connected.
pub(super) fn owed(conn: &Connection) -> rusqlite::Result<Vec<Owed>> {
    conn.prepare(
        "SELECT device_id, message_id, sent_ms, delivered FROM inbox
         WHERE receipts = 1 AND read = 0
         AND EXISTS (SELECT 1 FROM devices WHERE id = inbox.device_id AND status = 'connected')",
    )?
    .query_map([], |row| {
        Ok(Owed {
            device_id: parsed_column(row, 0, DeviceId::parse)?,
            message_id: row.get(1)?,
            sent_ms: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
            delivered: row.get(3)?,
        })
    })?
    .collect()
}

fn to_json(value: &impl Serialize) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn from_json<T: serde::de::DeserializeOwned>(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<T>> {
    match row.get::<_, Option<String>>(idx)? {
        Some(_) => parsed_column(row, idx, |json| serde_json::from_str::<T>(json)).map(Some),
        None => Ok(None),
    }
}
