//! The simulated devices' sessions as WhatsApp's servers see them: waiting for
//! a QR scan (and maybe a pairing code), connected to a phone, or unlinked.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::clock::now_ms;
use crate::db::parsed_column;
use crate::engine::{DeviceStatus, EngineError};
use crate::ids::DeviceId;
use crate::jid::PhoneNumber;
use crate::pair_code::PairCode;

pub(super) const SCHEMA: &str = "
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
-- The pairing code asked for a waiting device, and the number it was asked for.
CREATE TABLE IF NOT EXISTS pair_codes (
    device_id TEXT PRIMARY KEY,
    phone TEXT NOT NULL,
    code TEXT NOT NULL
);
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum DeviceState {
    Waiting { qr: String, code: Option<CodePairing> },
    Connected { phone: String },
    Unlinked,
}

/// A pairing code that links the device to `phone` when typed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CodePairing {
    pub phone: String,
    pub code: PairCode,
}

pub(super) fn state(conn: &Connection, device_id: &DeviceId) -> rusqlite::Result<Option<DeviceState>> {
    conn.query_row(
        "SELECT d.status, d.qr, d.phone, p.phone, p.code
         FROM devices d LEFT JOIN pair_codes p ON p.device_id = d.id WHERE d.id = ?1",
        [device_id.as_str()],
        |row| {
            let status: String = row.get(0)?;
            match (status.as_str(), row.get(1)?, row.get(2)?, row.get::<_, Option<String>>(3)?) {
                ("waiting", Some(qr), _, code_phone) => {
                    let code = match code_phone {
                        Some(phone) => Some(CodePairing { phone, code: parsed_column(row, 4, PairCode::parse)? }),
                        None => None,
                    };
                    Ok(DeviceState::Waiting { qr, code })
                }
                ("connected", _, Some(phone), _) => Ok(DeviceState::Connected { phone }),
                ("unlinked", _, _, _) => Ok(DeviceState::Unlinked),
                _ => Err(rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    format!("device row in impossible state {status:?}").into(),
                )),
            }
        },
    )
    .optional()
}

/// The sending device's own number, or why it cannot send.
pub(super) fn connected_phone(conn: &Connection, device_id: &DeviceId) -> Result<String, EngineError> {
    match state(conn, device_id)? {
        None => Err(EngineError::DeviceNotFound),
        Some(DeviceState::Connected { phone }) => Ok(phone),
        Some(_) => Err(EngineError::DeviceOffline),
    }
}

/// Starts (or restarts) waiting for a scan of `qr`.
pub(super) fn wait_for_scan(conn: &Connection, device_id: &DeviceId, qr: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO devices (id, status, qr, phone, updated_ms) VALUES (?1, 'waiting', ?2, NULL, ?3)
         ON CONFLICT (id) DO UPDATE SET status = 'waiting', qr = excluded.qr, phone = NULL,
             updated_ms = excluded.updated_ms",
        params![device_id.as_str(), qr, now_ms_sql()],
    )?;
    Ok(())
}

/// Replaces the QR of a device still waiting; false when it no longer waits.
pub(super) fn rotate_qr(conn: &Connection, device_id: &DeviceId, qr: &str) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE devices SET qr = ?2, updated_ms = ?3 WHERE id = ?1 AND status = 'waiting'",
        params![device_id.as_str(), qr, now_ms_sql()],
    )?;
    Ok(changed == 1)
}

/// Asks for a fresh pairing code for `phone`, replacing any earlier one.
pub(super) fn new_pair_code(
    conn: &Connection,
    device_id: &DeviceId,
    phone: &PhoneNumber,
) -> rusqlite::Result<PairCode> {
    let code = PairCode::generate();
    conn.execute(
        "INSERT INTO pair_codes (device_id, phone, code) VALUES (?1, ?2, ?3)
         ON CONFLICT (device_id) DO UPDATE SET phone = excluded.phone, code = excluded.code",
        params![device_id.as_str(), phone.as_str(), code.to_string()],
    )?;
    Ok(code)
}

/// Links the device to `phone`; any pairing code dies with the pairing. In this
/// order, a crash between the statements leaves a device that still waits.
pub(super) fn connect(conn: &Connection, device_id: &DeviceId, phone: &str) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM pair_codes WHERE device_id = ?1", [device_id.as_str()])?;
    conn.execute(
        "UPDATE devices SET status = 'connected', phone = ?2, qr = NULL, updated_ms = ?3 WHERE id = ?1",
        params![device_id.as_str(), phone, now_ms_sql()],
    )?;
    Ok(())
}

pub(super) fn unlink(conn: &Connection, device_id: &DeviceId) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE devices SET status = 'unlinked', phone = NULL, qr = NULL, updated_ms = ?2 WHERE id = ?1",
        params![device_id.as_str(), now_ms_sql()],
    )?;
    Ok(())
}

/// False when there was no such device.
pub(super) fn delete(conn: &Connection, device_id: &DeviceId) -> rusqlite::Result<bool> {
    conn.execute("DELETE FROM pair_codes WHERE device_id = ?1", [device_id.as_str()])?;
    Ok(conn.execute("DELETE FROM devices WHERE id = ?1", [device_id.as_str()])? == 1)
}

pub(super) fn connected(conn: &Connection) -> rusqlite::Result<Vec<(DeviceId, String)>> {
    conn.prepare("SELECT id, phone FROM devices WHERE status = 'connected'")?
        .query_map([], |row| Ok((parsed_column(row, 0, DeviceId::parse)?, row.get(1)?)))?
        .collect()
}

/// Waiting devices, with the number a pairing code was asked for, if any.
pub(super) fn waiting(conn: &Connection) -> rusqlite::Result<Vec<(DeviceId, Option<PhoneNumber>)>> {
    conn.prepare(
        "SELECT d.id, p.phone FROM devices d LEFT JOIN pair_codes p ON p.device_id = d.id
         WHERE d.status = 'waiting'",
    )?
    .query_map([], |row| {
        let phone = match row.get::<_, Option<String>>(1)? {
            Some(_) => Some(parsed_column(row, 1, PhoneNumber::parse)?),
            None => None,
        };
        Ok((parsed_column(row, 0, DeviceId::parse)?, phone))
    })?
    .collect()
}

pub(super) fn count_by_status(conn: &Connection) -> rusqlite::Result<HashMap<DeviceStatus, u64>> {
    conn.prepare("SELECT status, count(*) FROM devices GROUP BY status")?
        .query_map([], |row| {
            let status = match row.get::<_, String>(0)?.as_str() {
                "waiting" => DeviceStatus::Pairing,
                "connected" => DeviceStatus::Connected,
                _ => DeviceStatus::Disconnected,
            };
            Ok((status, u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0)))
        })?
        .collect()
}

fn now_ms_sql() -> i64 {
    i64::try_from(now_ms()).unwrap_or(i64::MAX)
}
