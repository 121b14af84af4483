//! The app's event log: each event recorded once (a retried recording is a no-op), listed by
//! sequence, trimmed past the retention.

use super::Sql;
use crate::domain::error::ApiError;
use crate::domain::events::Event;
use crate::domain::ids::DeviceId;
use crate::protocol::app::{Events, RecordedEvent};

pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
        device_id TEXT, data TEXT NOT NULL, at INTEGER NOT NULL)";

pub fn recorded(sql: &impl Sql, event_id: &str) -> Result<bool, ApiError> {
    Ok(sql.any("SELECT COUNT(*) AS n FROM events WHERE id = ?", vec![event_id.into()])?)
}

/// Records `event`; answers whether it is new (a retried recording fans out nothing).
pub fn record(sql: &impl Sql, event: &Event) -> Result<bool, ApiError> {
    if recorded(sql, &event.id)? {
        return Ok(false);
    }
    let (name, data) = event.what.stored();
    sql.run(
        "INSERT OR IGNORE INTO events (id, name, device_id, data, at) VALUES (?, ?, ?, ?, ?)",
        vec![
            event.id.as_str().into(),
            name.into(),
            event.device_id.as_ref().map(DeviceId::to_string).into(),
            data.into(),
            event.at_ms.into(),
        ],
    )?;
    Ok(true)
}

pub fn list(sql: &impl Sql, op: Events) -> Result<Vec<RecordedEvent>, ApiError> {
    Ok(sql.rows(
        "SELECT seq, id, name, device_id, data, at FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
        vec![op.after.into(), op.limit.into()],
    )?)
}

/// Drops events recorded before `cutoff`.
pub fn trim(sql: &impl Sql, cutoff: u64) -> Result<(), ApiError> {
    sql.run("DELETE FROM events WHERE at < ?", vec![cutoff.into()])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::{OtpEnded, What};
    use crate::store::memory::Memory;

    fn store() -> Memory {
        let sql = Memory::default();
        sql.run(SCHEMA, vec![]).unwrap();
        sql
    }

    fn event(at_ms: u64) -> Event {
        let what = What::OtpExpired(OtpEnded { session_id: "s".into(), phone_number: "628".into(), verified_at: None });
        Event::new(DeviceId::parse("dev_0123456789abcdef"), at_ms, what)
    }

    #[test]
    fn an_event_is_recorded_once_however_often_it_is_sent() {
        let sql = store();
        let first = event(7);
        assert_eq!(record(&sql, &first), Ok(true));
        assert_eq!(record(&sql, &first), Ok(false), "a retried recording");
        assert_eq!(record(&sql, &event(8)), Ok(true));
        let listed = list(&sql, Events { after: 0, limit: 100 }).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(
            (listed[0].id.as_str(), listed[0].name.as_str(), listed[0].at),
            (first.id.as_str(), "otp.expired", 7)
        );
        assert_eq!(listed[0].data, r#"{"session_id":"s","phone_number":"628"}"#);
        assert_eq!(listed[0].device_id.as_ref().map(DeviceId::as_str), Some("dev_0123456789abcdef"));
        assert!(recorded(&sql, &first.id).unwrap());
        assert!(!recorded(&sql, "evt_unknown").unwrap());
    }

    #[test]
    fn listing_pages_by_sequence_and_trimming_keeps_the_recent() {
        let sql = store();
        for at in 1..=5 {
            record(&sql, &event(at)).unwrap();
        }
        let page = list(&sql, Events { after: 2, limit: 2 }).unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
        assert!(list(&sql, Events { after: i64::MAX, limit: 10 }).unwrap().is_empty());
        trim(&sql, 4).unwrap();
        let left = list(&sql, Events { after: 0, limit: 10 }).unwrap();
        assert_eq!(left.iter().map(|e| e.at).collect::<Vec<_>>(), [4, 5]);
    }
}
