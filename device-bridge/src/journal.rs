//! The send journal: one row per wagate message id, written before the engine
//! sees the message. A retried send finds its row and gets the recorded state
//! instead of a second send; a row still `pending` after a crash tells recovery
//! exactly which sends were interrupted.
//!
//! Recipient and content are kept only while a crash could need them to send
//! again: they are blanked when the send is resolved, and for a sensitive
//! message (a one-time code) as soon as the engine has it ([`Keep`]). What stays
//! is a tombstone (ids, state, times) that still answers a repeated id with its
//! outcome; [`prune`] deletes tombstones past `RETENTION_DAYS`. The worker never
//! sends an id again once it knows the outcome, and retries an unanswered send
//! only while the message is queued (`QUEUE_EXPIRY_MS`, a day by default), so a
//! retention longer than that keeps every send exactly once; the worker's own
//! message rows dedupe ids too, for the same `RETENTION_DAYS`.

use rusqlite::{params, Connection, OptionalExtension};
use wagate_contract::wire::{Content, EventKind, SendResponse};

use crate::clock::now_ms;
use crate::db::parsed_column;
use crate::engine::OutgoingMessage;
use crate::ids::{DeviceId, MessageId};
use crate::jid::Jid;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS journal (
    message_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    content TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    external_id TEXT,
    fail_code TEXT,
    fail_reason TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    expires_ms INTEGER
);
CREATE INDEX IF NOT EXISTS journal_pending ON journal (created_ms) WHERE state = 'pending';
";

/// Journals written before sends could expire lack `expires_ms`: their sends never expire.
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_expiry: bool =
        conn.query_row("SELECT count(*) > 0 FROM pragma_table_info('journal') WHERE name = 'expires_ms'", [], |row| {
            row.get(0)
        })?;
    if !has_expiry {
        conn.execute_batch("ALTER TABLE journal ADD COLUMN expires_ms INTEGER")?;
    }
    Ok(())
}

/// How long a send's recipient and content stay in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Until the outcome is known: an interrupted send can be handed over again.
    UntilResolved,
    /// Until the engine has it: a one-time code is not kept a moment longer than
    /// needed. A crash before its outcome is recorded then fails it (see [`withheld`]).
    UntilHandedOver,
}

impl Keep {
    pub fn of(sensitive: bool) -> Self {
        if sensitive {
            Self::UntilHandedOver
        } else {
            Self::UntilResolved
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Claim {
    /// The id was new: this caller owns the send.
    New,
    /// The id was journaled before: its recorded state, and nothing to send.
    Existing(SendResponse),
}

/// A journaled send whose outcome was never recorded, as the worker asked for it:
/// its media is resolved again when it is resumed.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingSend {
    pub device_id: DeviceId,
    pub message_id: MessageId,
    pub to: Jid,
    pub content: Content,
    /// When a one-time code stops being worth sending (Unix ms).
    pub expires_at_ms: Option<u64>,
}

pub fn state(conn: &Connection, message_id: &MessageId) -> rusqlite::Result<Option<SendResponse>> {
    conn.query_row(
        "SELECT state, external_id, fail_code, fail_reason FROM journal WHERE message_id = ?1",
        [message_id.as_str()],
        |row| {
            let state: String = row.get(0)?;
            Ok(match state.as_str() {
                "sent" => SendResponse::Sent { external_id: row.get::<_, Option<String>>(1)?.unwrap_or_default() },
                "failed" => SendResponse::Failed {
                    code: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    reason: row.get::<_, Option<String>>(3)?.unwrap_or_default(),
                },
                _ => SendResponse::Accepted,
            })
        },
    )
    .optional()
}

/// Journals the message as pending unless its id is already journaled; atomic,
/// so of two concurrent sends of one id exactly one gets [`Claim::New`].
pub fn claim(
    conn: &Connection,
    device_id: &DeviceId,
    message: &OutgoingMessage,
    expires_at_ms: Option<u64>,
) -> rusqlite::Result<Claim> {
    let content = serde_json::to_string(&message.payload.to_content())
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let now = now_ms_sql();
    let inserted = conn.execute(
        "INSERT INTO journal (message_id, device_id, recipient, content, state, created_ms, updated_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?5, ?6)
         ON CONFLICT (message_id) DO NOTHING",
        params![
            message.message_id.as_str(),
            device_id.as_str(),
            message.to.to_string(),
            content,
            now,
            expires_at_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
        ],
    )?;
    if inserted == 1 {
        return Ok(Claim::New);
    }
    Ok(Claim::Existing(state(conn, &message.message_id)?.unwrap_or(SendResponse::Accepted)))
}

/// Forgets a pending send the engine refused without sending, so a later retry is a fresh send.
pub fn release(conn: &Connection, message_id: &MessageId) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM journal WHERE message_id = ?1 AND state = 'pending'", [message_id.as_str()])?;
    Ok(())
}

/// Records a send's outcome. Called inside the transaction that enqueues the
/// event reporting it, so the journal never disagrees with what the worker hears.
pub fn resolve(conn: &Connection, event: &EventKind) -> rusqlite::Result<()> {
    let now = now_ms_sql();
    match event {
        EventKind::MessageSent { message_id, external_id } => conn.execute(
            "UPDATE journal SET state = 'sent', external_id = ?2, updated_ms = ?3, recipient = '', content = ''
             WHERE message_id = ?1 AND state = 'pending'",
            params![message_id, external_id, now],
        )?,
        EventKind::MessageFailed { message_id, code, reason } => conn.execute(
            "UPDATE journal SET state = 'failed', fail_code = ?2, fail_reason = ?3, updated_ms = ?4,
                                recipient = '', content = ''
             WHERE message_id = ?1 AND state = 'pending'",
            params![message_id, code, reason, now],
        )?,
        _ => 0,
    };
    Ok(())
}

/// Blanks the recipient and content of a send the engine now has ([`Keep::UntilHandedOver`]).
pub fn withhold(conn: &Connection, message_id: &MessageId) -> rusqlite::Result<()> {
    conn.execute("UPDATE journal SET recipient = '', content = '' WHERE message_id = ?1", [message_id.as_str()])?;
    Ok(())
}

/// Every pending send whose content is kept, oldest first.
pub fn pending(conn: &Connection) -> rusqlite::Result<Vec<PendingSend>> {
    let mut stmt = conn.prepare(
        "SELECT message_id, device_id, recipient, content, expires_ms FROM journal
         WHERE state = 'pending' AND content != ''
         ORDER BY created_ms",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(PendingSend {
            device_id: parsed_column(row, 1, DeviceId::parse)?,
            message_id: parsed_column(row, 0, MessageId::parse)?,
            to: parsed_column(row, 2, Jid::parse)?,
            content: parsed_column(row, 3, |json| serde_json::from_str::<Content>(json))?,
            expires_at_ms: row.get::<_, Option<i64>>(4)?.map(|ms| u64::try_from(ms).unwrap_or(0)),
        })
    })?;
    rows.collect()
}

/// Pending sends whose content was withheld once the engine had them: a crash
/// came before their outcome was recorded, and there is nothing left to send again.
pub fn withheld(conn: &Connection) -> rusqlite::Result<Vec<(DeviceId, MessageId)>> {
    let mut stmt = conn.prepare(
        "SELECT device_id, message_id FROM journal WHERE state = 'pending' AND content = '' ORDER BY created_ms",
    )?;
    let rows = stmt
        .query_map([], |row| Ok((parsed_column(row, 0, DeviceId::parse)?, parsed_column(row, 1, MessageId::parse)?)))?;
    rows.collect()
}

/// Deletes the tombstones of sends resolved before `before_ms`; pending sends stay.
pub fn prune(conn: &Connection, before_ms: u64) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM journal WHERE state != 'pending' AND updated_ms < ?1",
        [i64::try_from(before_ms).unwrap_or(i64::MAX)],
    )
}

/// The media files pending sends, undelivered events and dead letters refer to.
pub fn referenced_media(conn: &Connection) -> rusqlite::Result<std::collections::HashSet<String>> {
    let mut stmt = conn.prepare(
        "SELECT json_extract(content, '$.media.sha256') FROM journal WHERE state = 'pending' AND content != ''
         UNION SELECT json_extract(body, '$.content.media.sha256') FROM outbox
         UNION SELECT json_extract(body, '$.content.media.sha256') FROM dead_letters",
    )?;
    let rows = stmt.query_map([], |row| row.get::<_, Option<String>>(0))?;
    rows.filter_map(Result::transpose).collect()
}

pub fn pending_count(conn: &Connection) -> rusqlite::Result<u64> {
    let count: i64 = conn.query_row("SELECT count(*) FROM journal WHERE state = 'pending'", [], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

fn now_ms_sql() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::engine::Payload;

    fn message(id: &str) -> OutgoingMessage {
        OutgoingMessage {
            message_id: MessageId::parse(id).unwrap(),
            to: Jid::parse("14155552671@s.whatsapp.net").unwrap(),
            payload: Payload::Text { text: "hi".into() },
        }
    }

    fn pending_send(dev: &DeviceId, message: &OutgoingMessage) -> PendingSend {
        PendingSend {
            device_id: dev.clone(),
            message_id: message.message_id.clone(),
            to: message.to.clone(),
            content: message.payload.to_content(),
            expires_at_ms: None,
        }
    }

    #[test]
    fn a_message_id_is_claimed_once_and_then_reports_its_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("bridge.db"), SCHEMA).unwrap();
        let conn = db.lock();
        let dev = DeviceId::parse("dev_a").unwrap();
        let (m1, m2) = (message("msg_1"), message("msg_2"));

        assert_eq!(claim(&conn, &dev, &m1, None).unwrap(), Claim::New);
        assert_eq!(claim(&conn, &dev, &m1, None).unwrap(), Claim::Existing(SendResponse::Accepted));
        assert_eq!(claim(&conn, &dev, &m2, None).unwrap(), Claim::New);
        assert_eq!(pending(&conn).unwrap(), [pending_send(&dev, &m1), pending_send(&dev, &m2)]);
        assert_eq!(pending_count(&conn).unwrap(), 2);

        let sent = EventKind::MessageSent { message_id: "msg_1".into(), external_id: "3EB0AA".into() };
        resolve(&conn, &sent).unwrap();
        let failed = EventKind::MessageFailed { message_id: "msg_1".into(), code: "x".into(), reason: "y".into() };
        resolve(&conn, &failed).unwrap(); // an outcome is final
        assert_eq!(
            claim(&conn, &dev, &m1, None).unwrap(),
            Claim::Existing(SendResponse::Sent { external_id: "3EB0AA".into() })
        );

        let failed =
            EventKind::MessageFailed { message_id: "msg_2".into(), code: "engine_error".into(), reason: "boom".into() };
        resolve(&conn, &failed).unwrap();
        assert_eq!(
            state(&conn, &m2.message_id).unwrap(),
            Some(SendResponse::Failed { code: "engine_error".into(), reason: "boom".into() })
        );
        assert!(pending(&conn).unwrap().is_empty());
        assert_eq!(pending_count(&conn).unwrap(), 0);

        // Released sends can be claimed again; resolved ones cannot be released.
        let m3 = message("msg_3");
        claim(&conn, &dev, &m3, None).unwrap();
        release(&conn, &m3.message_id).unwrap();
        release(&conn, &m1.message_id).unwrap();
        assert_eq!(claim(&conn, &dev, &m3, None).unwrap(), Claim::New);
        assert!(matches!(state(&conn, &m1.message_id).unwrap(), Some(SendResponse::Sent { .. })));
    }
}
