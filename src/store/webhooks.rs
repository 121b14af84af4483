//! The app's webhook endpoints and delivery outbox: their tables, and the trimming of settled
//! deliveries from the app's history (those still being retried stay whatever their age).

use super::Sql;
use crate::domain::delivery::DeliveryStatus;
use crate::domain::error::ApiError;

pub const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS webhooks (
        id TEXT PRIMARY KEY, url TEXT NOT NULL, events TEXT NOT NULL, format TEXT NOT NULL, device_id TEXT,
        secret TEXT NOT NULL, previous_secret TEXT, previous_until INTEGER, retry_count INTEGER NOT NULL,
        active INTEGER NOT NULL DEFAULT 1, created_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        successes INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
        consecutive_failures INTEGER NOT NULL DEFAULT 0, last_success_at INTEGER, last_failure_at INTEGER,
        last_status INTEGER, disabled_reason TEXT)",
    "CREATE TABLE IF NOT EXISTS deliveries (
        id TEXT PRIMARY KEY, webhook_id TEXT NOT NULL, event_id TEXT NOT NULL, event_name TEXT NOT NULL,
        body TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL, last_status INTEGER, last_error TEXT, created_at INTEGER NOT NULL)",
];

/// Drops the deliveries that succeeded or were given up on before `cutoff`.
pub fn trim_settled(sql: &impl Sql, cutoff: u64) -> Result<(), ApiError> {
    sql.run(
        "DELETE FROM deliveries WHERE status IN (?, ?) AND created_at < ?",
        vec![DeliveryStatus::Succeeded.as_str().into(), DeliveryStatus::Failed.as_str().into(), cutoff.into()],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::store::memory::Memory;

    fn store() -> Memory {
        Memory::with(&SCHEMA)
    }

    fn delivery(sql: &Memory, id: &str, status: DeliveryStatus, created_at: u64) {
        sql.run(
            "INSERT INTO deliveries (id, webhook_id, event_id, event_name, body, status, next_attempt_at, created_at)
             VALUES (?, 'wh_1', 'evt_1', 'message.sent', '{}', ?, ?, ?)",
            vec![id.into(), status.as_str().into(), created_at.into(), created_at.into()],
        )
        .unwrap();
    }

    #[test]
    fn trimming_drops_old_settled_deliveries_and_keeps_those_still_retrying() {
        let sql = store();
        delivery(&sql, "old_ok", DeliveryStatus::Succeeded, 10);
        delivery(&sql, "old_failed", DeliveryStatus::Failed, 10);
        delivery(&sql, "old_pending", DeliveryStatus::Pending, 10);
        delivery(&sql, "old_in_flight", DeliveryStatus::InFlight, 10);
        delivery(&sql, "new_ok", DeliveryStatus::Succeeded, 100);
        delivery(&sql, "at_cutoff", DeliveryStatus::Failed, 50);
        trim_settled(&sql, 50).unwrap();
        trim_settled(&sql, 50).unwrap();
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        let left: Vec<String> = sql
            .rows::<Id>("SELECT id FROM deliveries ORDER BY id", vec![])
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left, ["at_cutoff", "new_ok", "old_in_flight", "old_pending"]);
    }
}
