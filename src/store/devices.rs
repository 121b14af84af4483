//! The app's device index: each device's last reported status, for picking the one to send from.

use super::Sql;
use crate::domain::device::DeviceStatus;
use crate::domain::error::ApiError;
use crate::domain::ids::DeviceId;
use crate::protocol::app::DeviceEntry;

pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS devices (
        device_id TEXT PRIMARY KEY, label TEXT, status TEXT NOT NULL, phone TEXT,
        created_at INTEGER NOT NULL, last_seen_at INTEGER, last_used_at INTEGER NOT NULL DEFAULT 0)";

pub fn entry(sql: &impl Sql, device_id: &DeviceId) -> Result<DeviceEntry, ApiError> {
    sql.row(
        "SELECT device_id, label, status, phone, created_at, last_seen_at FROM devices WHERE device_id = ?",
        vec![device_id.as_str().into()],
    )?
    .ok_or_else(|| ApiError::not_found("device"))
}

pub fn list(sql: &impl Sql) -> Result<Vec<DeviceEntry>, ApiError> {
    Ok(sql.rows(
        "SELECT device_id, label, status, phone, created_at, last_seen_at FROM devices ORDER BY created_at, device_id",
        vec![],
    )?)
}

/// Registers a device, unless the app already has `max_devices`.
pub fn add(
    sql: &impl Sql,
    device_id: &DeviceId,
    label: Option<String>,
    max_devices: i64,
    now: u64,
) -> Result<(), ApiError> {
    if sql.number("SELECT COUNT(*) AS n FROM devices", vec![])?.unwrap_or(0) >= max_devices {
        return Err(ApiError::DeviceLimitReached { max_devices });
    }
    sql.run(
        "INSERT INTO devices (device_id, label, status, created_at) VALUES (?, ?, ?, ?)",
        vec![device_id.as_str().into(), label.into(), DeviceStatus::Registering.as_str().into(), now.into()],
    )?;
    Ok(())
}

/// Mirrors a device's new status (and its number, once known).
pub fn changed(
    sql: &impl Sql,
    device_id: &DeviceId,
    status: DeviceStatus,
    phone: Option<String>,
    at: u64,
) -> Result<(), ApiError> {
    sql.run(
        "UPDATE devices SET status = ?, phone = COALESCE(?, phone), last_seen_at = ? WHERE device_id = ?",
        vec![status.as_str().into(), phone.into(), at.into(), device_id.as_str().into()],
    )?;
    Ok(())
}

pub fn remove(sql: &impl Sql, device_id: &DeviceId) -> Result<(), ApiError> {
    sql.run("DELETE FROM devices WHERE device_id = ?", vec![device_id.as_str().into()])?;
    Ok(())
}

/// The device to act for: the one asked for if it is online, else the least recently used online
/// one, so an app's traffic spreads over its numbers.
pub fn pick(sql: &impl Sql, device_id: Option<DeviceId>) -> Result<DeviceId, ApiError> {
    match device_id {
        Some(device_id) => match entry(sql, &device_id)?.status == DeviceStatus::Online {
            true => Ok(device_id),
            false => Err(ApiError::DeviceNotConnected),
        },
        None => sql
            .row::<DeviceEntry>(
                "SELECT device_id, label, status, phone, created_at, last_seen_at FROM devices
                 WHERE status = ? ORDER BY last_used_at, device_id LIMIT 1",
                vec![DeviceStatus::Online.as_str().into()],
            )?
            .and_then(|d| DeviceId::parse(&d.device_id))
            .ok_or(ApiError::NoDeviceAvailable),
    }
}

/// Marks the device as just sent from, so the next pick prefers another.
pub fn used(sql: &impl Sql, device_id: &DeviceId, now: u64) -> Result<(), ApiError> {
    sql.run("UPDATE devices SET last_used_at = ? WHERE device_id = ?", vec![now.into(), device_id.as_str().into()])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::Memory;

    fn device(n: u8) -> DeviceId {
        DeviceId::parse(&format!("dev_{:016x}", n)).unwrap()
    }

    fn store(online: &[u8], offline: &[u8]) -> Memory {
        let sql = Memory::default();
        sql.run(SCHEMA, vec![]).unwrap();
        for n in online.iter().chain(offline) {
            add(&sql, &device(*n), None, 10, 1).unwrap();
        }
        for n in online {
            changed(&sql, &device(*n), DeviceStatus::Online, Some("628".into()), 2).unwrap();
        }
        sql
    }

    #[test]
    fn the_least_recently_used_online_device_is_picked_so_sends_spread() {
        let sql = store(&[1, 2, 3], &[4]);
        let mut picked = vec![];
        for now in 10..16 {
            let id = pick(&sql, None).unwrap();
            used(&sql, &id, now).unwrap();
            picked.push(id);
        }
        assert_eq!(picked, [1, 2, 3, 1, 2, 3].map(device), "the offline one never");
    }

    #[test]
    fn a_device_asked_for_must_be_online_and_known() {
        let sql = store(&[1], &[4]);
        assert_eq!(pick(&sql, Some(device(1))), Ok(device(1)));
        assert_eq!(pick(&sql, Some(device(4))), Err(ApiError::DeviceNotConnected));
        assert_eq!(pick(&sql, Some(device(9))), Err(ApiError::not_found("device")));
        changed(&sql, &device(1), DeviceStatus::Offline, None, 3).unwrap();
        assert_eq!(pick(&sql, None), Err(ApiError::NoDeviceAvailable));
        assert_eq!(entry(&sql, &device(1)).unwrap().phone.as_deref(), Some("628"), "the number is kept");
    }

    #[test]
    fn an_app_holds_at_most_its_max_devices() {
        let sql = store(&[], &[]);
        add(&sql, &device(1), Some("a".into()), 2, 1).unwrap();
        add(&sql, &device(2), None, 2, 1).unwrap();
        assert_eq!(add(&sql, &device(3), None, 2, 1), Err(ApiError::DeviceLimitReached { max_devices: 2 }));
        assert!(add(&sql, &device(1), None, 5, 1).is_err(), "an id registers once");
        remove(&sql, &device(1)).unwrap();
        add(&sql, &device(3), None, 2, 1).unwrap();
        let ids: Vec<_> = list(&sql).unwrap().into_iter().map(|d| d.device_id).collect();
        assert_eq!(ids, [device(2).to_string(), device(3).to_string()]);
        assert_eq!(add(&sql, &device(4), None, 0, 1), Err(ApiError::DeviceLimitReached { max_devices: 0 }));
    }
}
