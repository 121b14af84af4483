//! Trims an app's history past its retention (`RETENTION_DAYS`, 30 by default): recorded events,
//! the auto-reply marks of events that are gone, and settled webhook deliveries. Deliveries still
//! pending stay whatever their age; their own retry schedule ends them.

use super::app::AppObject;
use super::webhooks::{FAILED, SUCCEEDED};
use super::{int, number};
use crate::domain::error::ApiError;
use crate::domain::retention::Retention;
use crate::runtime::config;

impl AppObject {
    pub(super) fn trim_history(&self, now: u64) -> Result<(), ApiError> {
        let retention = Retention::from_days(config(self.env(), "RETENTION_DAYS").and_then(|v| v.parse().ok()));
        let last =
            number(&self.sql(), "SELECT CAST(value AS INTEGER) AS n FROM settings WHERE name = 'trimmed_at'", vec![])?;
        if !retention.due(last.map(|n| n as u64), now) {
            return Ok(());
        }
        let cutoff = int(retention.cutoff(now));
        let sql = self.sql();
        sql.exec("DELETE FROM events WHERE at < ?", vec![cutoff.clone()])?;
        sql.exec("DELETE FROM auto_replied WHERE event_id NOT IN (SELECT id FROM events)", None)?;
        sql.exec(
            "DELETE FROM deliveries WHERE status IN (?, ?) AND created_at < ?",
            vec![SUCCEEDED.into(), FAILED.into(), cutoff],
        )?;
        sql.exec(
            "INSERT INTO settings (name, value) VALUES ('trimmed_at', ?)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            vec![now.to_string().into()],
        )?;
        Ok(())
    }
}
