//! What the engine remembers beyond whatsapp-rust's own session stores:
//!
//! - the device registry: which devices exist and where each stands, so that
//!   `restore` knows whose session to rebuild after a restart;
//! - the send record: the WhatsApp message id each wagate send went out under,
//!   so a repeated send of one message id never reaches WhatsApp twice, and a
//!   receipt (which names WhatsApp's id) finds wagate's id again.
//!
//! The session stores themselves (keys, Signal sessions, app state) live in one
//! SQLite file per device, owned by whatsapp-rust; see [`session_path`].

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use wagate_contract::wire::{Content, EventKind};

use crate::clock::now_ms;
use crate::db::{parsed_column, Db};
use crate::engine::OutgoingMessage;
use crate::ids::{DeviceId, MessageId};
use crate::jid::Jid;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS wa_devices (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (
        (state = 'pairing')
        OR (state = 'linked' AND phone IS NOT NULL)
        OR state = 'logged_out'),
    phone TEXT,
    -- Link by pairing code on this phone instead of a QR scan.
    pair_phone TEXT,
    updated_ms INTEGER NOT NULL
);
-- One row per wagate message id handed to WhatsApp. `sending` rows are retried
-- when their device connects; their recipient and content are kept for exactly that,
-- and blanked once `sent`.
CREATE TABLE IF NOT EXISTS wa_sends (
    message_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    external_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    content TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('sending', 'sent')),
    delivered INTEGER NOT NULL DEFAULT 0,
    read INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS wa_sends_by_external ON wa_sends (device_id, external_id);
";

/// How long a send is remembered: receipts for older messages are dropped, and
/// an idempotent resend older than this would go out again.
pub const SEND_RETENTION_MS: u64 = 30 * 24 * 3600 * 1000;

/// Where a device stands in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Link requested, no phone has completed it yet.
    Pairing {
        pair_phone: Option<String>,
    },
    Linked {
        phone: String,
    },
    /// The phone unlinked it (or WhatsApp logged it out); its session is gone.
    LoggedOut,
}

/// A receipt as the engine cares about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    Delivered,
    Read,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendState {
    /// Handed to WhatsApp, outcome not recorded yet (in flight, or cut off by a
    /// disconnect or crash and waiting for the device to connect again).
    Sending,
    Sent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRecord {
    pub device_id: DeviceId,
    pub external_id: String,
    pub state: SendState,
}

/// A send that has not gone out yet, as recorded: its media is resolved again
/// against the media store when it is retried.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingSend {
    pub message_id: MessageId,
    pub to: Jid,
    pub content: Content,
}

/// What `mark_sent` found: receipts that arrived while the send was still
/// `sending` are reported right after its `MessageSent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EarlyReceipts {
    pub delivered: bool,
    pub read: bool,
}

/// The SQLite file holding one device's whatsapp-rust session.
pub fn session_path(sessions_dir: &Path, device_id: &DeviceId) -> PathBuf {
    // Device ids are letters, digits, '_', '-', '.': safe as a file name, never a path.
    sessions_dir.join(format!("{}.db", device_id.as_str()))
}

/// Deletes a device's session store with its WAL and shared-memory files.
pub fn delete_session(sessions_dir: &Path, device_id: &DeviceId) -> std::io::Result<()> {
    let main = session_path(sessions_dir, device_id);
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = main.clone().into_os_string();
        name.push(suffix);
        match std::fs::remove_file(PathBuf::from(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The WhatsApp message id a wagate message goes out under: shaped like WA Web's
/// own (`3EB0` and 18 upper-case hex digits) and derived from the ids, so that
/// resending a message after a crash reuses its id and recipients, who drop
/// duplicates by id, show it once.
pub fn external_id(device_id: &DeviceId, message_id: &MessageId) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"wagate/whatsapp-message-id/v1\0");
    hasher.update(device_id.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(message_id.as_str().as_bytes());
    format!("3EB0{}", hex::encode_upper(&hasher.finalize()[..9]))
}

#[derive(Clone)]
pub struct EngineStore {
    db: Db,
}

impl EngineStore {
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        Ok(Self { db: Db::open(path, SCHEMA)? })
    }

    pub fn device(&self, device_id: &DeviceId) -> rusqlite::Result<Option<Registration>> {
        self.db
            .lock()
            .query_row(
                "SELECT state, phone, pair_phone FROM wa_devices WHERE id = ?1",
                [device_id.as_str()],
                registration,
            )
            .optional()
    }

    pub fn devices(&self) -> rusqlite::Result<Vec<(DeviceId, Registration)>> {
        let conn = self.db.lock();
        let mut stmt = conn.prepare("SELECT state, phone, pair_phone, id FROM wa_devices ORDER BY id")?;
        let rows = stmt.query_map([], |row| Ok((parsed_column(row, 3, DeviceId::parse)?, registration(row)?)))?;
        rows.collect()
    }

    /// Registers the device as waiting for a phone, whatever it was before.
    pub fn start_pairing(&self, device_id: &DeviceId, pair_phone: Option<&str>) -> rusqlite::Result<()> {
        self.db.lock().execute(
            "INSERT INTO wa_devices (id, state, phone, pair_phone, updated_ms) VALUES (?1, 'pairing', NULL, ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET state = 'pairing', phone = NULL, pair_phone = excluded.pair_phone,
                 updated_ms = excluded.updated_ms",
            params![device_id.as_str(), pair_phone, now_ms_sql()],
        )?;
        Ok(())
    }

    pub fn set_linked(&self, device_id: &DeviceId, phone: &str) -> rusqlite::Result<()> {
        self.db.lock().execute(
            "INSERT INTO wa_devices (id, state, phone, pair_phone, updated_ms) VALUES (?1, 'linked', ?2, NULL, ?3)
             ON CONFLICT (id) DO UPDATE SET state = 'linked', phone = excluded.phone, pair_phone = NULL,
                 updated_ms = excluded.updated_ms",
            params![device_id.as_str(), phone, now_ms_sql()],
        )?;
        Ok(())
    }

    /// Marks the session as ended by WhatsApp; the device needs pairing again.
    /// Returns the sends that can no longer go out, which the caller fails.
    pub fn set_logged_out(&self, device_id: &DeviceId) -> rusqlite::Result<Vec<MessageId>> {
        let mut conn = self.db.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE wa_devices SET state = 'logged_out', phone = NULL, pair_phone = NULL, updated_ms = ?2 WHERE id = ?1",
            params![device_id.as_str(), now_ms_sql()],
        )?;
        let abandoned = take_unsent(&tx, device_id)?;
        tx.commit()?;
        Ok(abandoned)
    }

    /// Forgets the device and everything sent from it. Returns whether it was
    /// registered, and the sends that never went out.
    pub fn remove_device(&self, device_id: &DeviceId) -> rusqlite::Result<(bool, Vec<MessageId>)> {
        let mut conn = self.db.lock();
        let tx = conn.transaction()?;
        let removed = tx.execute("DELETE FROM wa_devices WHERE id = ?1", [device_id.as_str()])? == 1;
        let abandoned = take_unsent(&tx, device_id)?;
        tx.execute("DELETE FROM wa_sends WHERE device_id = ?1", [device_id.as_str()])?;
        tx.commit()?;
        Ok((removed, abandoned))
    }

    pub fn send(&self, message_id: &MessageId) -> rusqlite::Result<Option<SendRecord>> {
        self.db
            .lock()
            .query_row(
                "SELECT device_id, external_id, state FROM wa_sends WHERE message_id = ?1",
                [message_id.as_str()],
                |row| {
                    let state: String = row.get(2)?;
                    Ok(SendRecord {
                        device_id: parsed_column(row, 0, DeviceId::parse)?,
                        external_id: row.get(1)?,
                        state: if state == "sent" { SendState::Sent } else { SendState::Sending },
                    })
                },
            )
            .optional()
    }

    /// Records a send about to be handed to WhatsApp (idempotent: a row that
    /// exists is left as it is).
    pub fn begin_send(
        &self,
        device_id: &DeviceId,
        message: &OutgoingMessage,
        external_id: &str,
    ) -> rusqlite::Result<()> {
        let content = serde_json::to_string(&message.payload.to_content())
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        self.db.lock().execute(
            "INSERT INTO wa_sends (message_id, device_id, external_id, recipient, content, state, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 'sending', ?6)
             ON CONFLICT (message_id) DO NOTHING",
            params![
                message.message_id.as_str(),
                device_id.as_str(),
                external_id,
                message.to.to_string(),
                content,
                now_ms_sql()
            ],
        )?;
        Ok(())
    }

    /// WhatsApp took the message, so its recipient and content are no longer
    /// needed (only its ids are, for receipts). Returns receipts that overtook this call.
    pub fn mark_sent(&self, message_id: &MessageId) -> rusqlite::Result<EarlyReceipts> {
        let conn = self.db.lock();
        conn.execute(
            "UPDATE wa_sends SET state = 'sent', recipient = '', content = '' WHERE message_id = ?1",
            [message_id.as_str()],
        )?;
        Ok(conn
            .query_row("SELECT delivered, read FROM wa_sends WHERE message_id = ?1", [message_id.as_str()], |row| {
                Ok(EarlyReceipts { delivered: row.get(0)?, read: row.get(1)? })
            })
            .optional()?
            .unwrap_or_default())
    }

    /// The send failed for good: forget it, so that a later send of the same id is tried afresh.
    pub fn forget_send(&self, message_id: &MessageId) -> rusqlite::Result<()> {
        self.db.lock().execute("DELETE FROM wa_sends WHERE message_id = ?1", [message_id.as_str()])?;
        Ok(())
    }

    /// The device's sends still waiting to go out, oldest first.
    pub fn pending_sends(&self, device_id: &DeviceId) -> rusqlite::Result<Vec<PendingSend>> {
        let conn = self.db.lock();
        let mut stmt = conn.prepare(
            "SELECT message_id, recipient, content FROM wa_sends
             WHERE device_id = ?1 AND state = 'sending' ORDER BY created_ms, message_id",
        )?;
        let rows = stmt.query_map([device_id.as_str()], |row| {
            let content: String = row.get(2)?;
            Ok(PendingSend {
                message_id: parsed_column(row, 0, MessageId::parse)?,
                to: parsed_column(row, 1, Jid::parse)?,
                content: serde_json::from_str::<Content>(&content).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
                })?,
            })
        })?;
        rows.collect()
    }

    /// Applies a receipt for one WhatsApp message id and returns the events it
    /// causes: none for a message we did not send (or not from this device) or a
    /// receipt already applied; a read receipt implies delivery. Receipts for a
    /// send not yet marked sent are kept for [`Self::mark_sent`].
    pub fn receipt(
        &self,
        device_id: &DeviceId,
        external_id: &str,
        kind: ReceiptKind,
    ) -> rusqlite::Result<Vec<EventKind>> {
        let mut conn = self.db.lock();
        let tx = conn.transaction()?;
        let row = tx
            .query_row(
                "SELECT message_id, state, delivered, read FROM wa_sends WHERE device_id = ?1 AND external_id = ?2",
                params![device_id.as_str(), external_id],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)? == "sent",
                        row.get::<_, bool>(2)?,
                        row.get::<_, bool>(3)?,
                    ))
                },
            )
            .optional()?;
        let Some((message_id, sent, delivered, read)) = row else {
            return Ok(Vec::new());
        };
        let mut events = Vec::new();
        if !delivered {
            events.push(EventKind::MessageDelivered { message_id: message_id.clone() });
        }
        if kind == ReceiptKind::Read && !read {
            events.push(EventKind::MessageRead { message_id: message_id.clone() });
        }
        if events.is_empty() {
            return Ok(events);
        }
        tx.execute(
            "UPDATE wa_sends SET delivered = 1, read = read OR ?2 WHERE message_id = ?1",
            params![message_id, kind == ReceiptKind::Read],
        )?;
        tx.commit()?;
        Ok(if sent { events } else { Vec::new() })
    }

    /// Forgets sends older than [`SEND_RETENTION_MS`] that went out.
    pub fn prune_sends(&self) -> rusqlite::Result<usize> {
        let cutoff = now_ms().saturating_sub(SEND_RETENTION_MS);
        self.db.lock().execute(
            "DELETE FROM wa_sends WHERE state = 'sent' AND created_ms < ?1",
            [i64::try_from(cutoff).unwrap_or(i64::MAX)],
        )
    }
}

fn registration(row: &rusqlite::Row<'_>) -> rusqlite::Result<Registration> {
    let state: String = row.get(0)?;
    match (state.as_str(), row.get::<_, Option<String>>(1)?) {
        ("pairing", _) => Ok(Registration::Pairing { pair_phone: row.get(2)? }),
        ("linked", Some(phone)) => Ok(Registration::Linked { phone }),
        ("logged_out", _) => Ok(Registration::LoggedOut),
        _ => Err(rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("device row in impossible state {state:?}").into(),
        )),
    }
}

/// Removes the device's sends that never went out and returns their ids.
fn take_unsent(conn: &Connection, device_id: &DeviceId) -> rusqlite::Result<Vec<MessageId>> {
    let ids = {
        let mut stmt = conn.prepare(
            "SELECT message_id FROM wa_sends WHERE device_id = ?1 AND state = 'sending' ORDER BY created_ms",
        )?;
        let rows = stmt.query_map([device_id.as_str()], |row| parsed_column(row, 0, MessageId::parse))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    conn.execute("DELETE FROM wa_sends WHERE device_id = ?1 AND state = 'sending'", [device_id.as_str()])?;
    Ok(ids)
}

fn now_ms_sql() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (EngineStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        (EngineStore::open(&dir.path().join("engine.db")).unwrap(), dir)
    }

    use super::super::tests::{id, text};

    fn pending(message: &OutgoingMessage) -> PendingSend {
        PendingSend {
            message_id: message.message_id.clone(),
            to: message.to.clone(),
            content: message.payload.to_content(),
        }
    }

    #[test]
    fn external_ids_are_stable_per_device_and_shaped_like_wa_web() {
        let msg = MessageId::parse("msg_1").unwrap();
        let a = external_id(&id("dev_a"), &msg);
        assert_eq!(a, external_id(&id("dev_a"), &msg));
        assert_ne!(a, external_id(&id("dev_b"), &msg));
        assert_ne!(a, external_id(&id("dev_a"), &MessageId::parse("msg_2").unwrap()));
        assert_eq!(a.len(), 22);
        assert!(a.starts_with("3EB0"));
        assert!(a[4..].bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)), "{a}");
    }

    #[test]
    fn registry_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.db");
        {
            let store = EngineStore::open(&path).unwrap();
            store.start_pairing(&id("dev_a"), None).unwrap();
            store.start_pairing(&id("dev_b"), Some("6281234567890")).unwrap();
            store.start_pairing(&id("dev_c"), None).unwrap();
            store.set_linked(&id("dev_a"), "14155552671").unwrap();
            store.set_logged_out(&id("dev_c")).unwrap();
        }
        let store = EngineStore::open(&path).unwrap();
        assert_eq!(
            store.devices().unwrap(),
            vec![
                (id("dev_a"), Registration::Linked { phone: "14155552671".into() }),
                (id("dev_b"), Registration::Pairing { pair_phone: Some("6281234567890".into()) }),
                (id("dev_c"), Registration::LoggedOut),
            ]
        );
        assert_eq!(store.device(&id("dev_x")).unwrap(), None);
        // Linking again starts over.
        store.start_pairing(&id("dev_a"), None).unwrap();
        assert_eq!(store.device(&id("dev_a")).unwrap(), Some(Registration::Pairing { pair_phone: None }));
        assert_eq!(store.remove_device(&id("dev_a")).unwrap(), (true, vec![]));
        assert_eq!(store.remove_device(&id("dev_a")).unwrap(), (false, vec![]));
    }

    #[test]
    fn message_id_mapping_survives_reopening_and_drives_receipts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.db");
        let dev = id("dev_a");
        let msg = text("msg_1");
        let ext = external_id(&dev, &msg.message_id);
        {
            let store = EngineStore::open(&path).unwrap();
            store.begin_send(&dev, &msg, &ext).unwrap();
            assert_eq!(store.mark_sent(&msg.message_id).unwrap(), EarlyReceipts::default());
        }
        let store = EngineStore::open(&path).unwrap();
        assert_eq!(
            store.send(&msg.message_id).unwrap(),
            Some(SendRecord { device_id: dev.clone(), external_id: ext.clone(), state: SendState::Sent })
        );
        let delivered = EventKind::MessageDelivered { message_id: "msg_1".into() };
        let read = EventKind::MessageRead { message_id: "msg_1".into() };
        assert_eq!(store.receipt(&dev, &ext, ReceiptKind::Delivered).unwrap(), vec![delivered]);
        // Every receipt is reported once, however often WhatsApp repeats it (groups send one per member).
        assert_eq!(store.receipt(&dev, &ext, ReceiptKind::Delivered).unwrap(), vec![]);
        assert_eq!(store.receipt(&dev, &ext, ReceiptKind::Read).unwrap(), vec![read]);
        assert_eq!(store.receipt(&dev, &ext, ReceiptKind::Read).unwrap(), vec![]);
        // Ids we never sent, or sent from another device, are not ours to report.
        assert_eq!(store.receipt(&dev, "3EB0FFFFFFFFFFFFFFFFFF", ReceiptKind::Read).unwrap(), vec![]);
        assert_eq!(store.receipt(&id("dev_b"), &ext, ReceiptKind::Read).unwrap(), vec![]);
    }

    #[test]
    fn read_implies_delivered_and_early_receipts_wait_for_the_send() {
        let (store, _dir) = store();
        let dev = id("dev_a");
        let msg = text("msg_1");
        let ext = external_id(&dev, &msg.message_id);
        store.begin_send(&dev, &msg, &ext).unwrap();
        // The recipient's read receipt overtook our own bookkeeping of the send.
        assert_eq!(store.receipt(&dev, &ext, ReceiptKind::Read).unwrap(), vec![]);
        assert_eq!(store.mark_sent(&msg.message_id).unwrap(), EarlyReceipts { delivered: true, read: true });

        let other = text("msg_2");
        let ext2 = external_id(&dev, &other.message_id);
        store.begin_send(&dev, &other, &ext2).unwrap();
        store.mark_sent(&other.message_id).unwrap();
        assert_eq!(
            store.receipt(&dev, &ext2, ReceiptKind::Read).unwrap(),
            vec![
                EventKind::MessageDelivered { message_id: "msg_2".into() },
                EventKind::MessageRead { message_id: "msg_2".into() },
            ]
        );
    }

    #[test]
    fn unsent_messages_wait_and_are_handed_back_when_the_device_goes() {
        let (store, _dir) = store();
        let dev = id("dev_a");
        store.start_pairing(&dev, None).unwrap();
        store.set_linked(&dev, "14155552671").unwrap();
        for m in ["msg_1", "msg_2", "msg_3"] {
            let msg = text(m);
            store.begin_send(&dev, &msg, &external_id(&dev, &msg.message_id)).unwrap();
        }
        // A second begin of the same id changes nothing.
        store.begin_send(&dev, &text("msg_1"), "3EB0OTHER").unwrap();
        store.mark_sent(&MessageId::parse("msg_2").unwrap()).unwrap();
        store.forget_send(&MessageId::parse("msg_3").unwrap()).unwrap();
        let waiting = store.pending_sends(&dev).unwrap();
        assert_eq!(waiting, vec![pending(&text("msg_1"))]);
        let first = &waiting[0].message_id;
        assert_eq!(store.send(first).unwrap().unwrap().external_id, external_id(&dev, first));

        assert_eq!(store.set_logged_out(&dev).unwrap(), vec![MessageId::parse("msg_1").unwrap()]);
        assert_eq!(store.pending_sends(&dev).unwrap(), vec![]);
        assert_eq!(store.device(&dev).unwrap(), Some(Registration::LoggedOut));
        assert!(store.send(&MessageId::parse("msg_2").unwrap()).unwrap().is_some());
        assert_eq!(store.remove_device(&dev).unwrap(), (true, vec![]));
        assert_eq!(store.send(&MessageId::parse("msg_2").unwrap()).unwrap(), None);
    }

    #[test]
    fn session_files_are_deleted_with_their_sidecars() {
        let dir = tempfile::tempdir().unwrap();
        let dev = id("dev_a");
        let main = session_path(dir.path(), &dev);
        assert_eq!(main, dir.path().join("dev_a.db"));
        for suffix in ["", "-wal", "-shm"] {
            std::fs::write(format!("{}{suffix}", main.display()), b"x").unwrap();
        }
        std::fs::write(dir.path().join("dev_b.db"), b"x").unwrap();
        delete_session(dir.path(), &dev).unwrap();
        delete_session(dir.path(), &dev).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("dev_b.db")]);
    }
}
