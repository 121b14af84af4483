//! When an object trims its history past the retention (`RETENTION_DAYS`, 30 by default). Each
//! object says what its history is: the app its recorded events and settled webhook
//! deliveries, a device its finished messages and the bridge events it has applied.

use worker::{Env, Storage};

use crate::domain::error::ApiError;
use crate::domain::retention::Retention;
use crate::runtime::config;

const TRIMMED_AT: &str = "trimmed_at";

/// The cutoff to trim before, when a trim is due; it is then recorded as done.
pub(super) async fn due(storage: &Storage, env: &Env, now: u64) -> Result<Option<u64>, ApiError> {
    let retention = Retention::from_days(config(env, "RETENTION_DAYS").and_then(|v| v.parse().ok()));
    if !retention.due(storage.get::<u64>(TRIMMED_AT).await?, now) {
        return Ok(None);
    }
    storage.put(TRIMMED_AT, now).await?;
    Ok(Some(retention.cutoff(now)))
}
