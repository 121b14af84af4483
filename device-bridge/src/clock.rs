//! Wall-clock time as the contract carries it: Unix seconds and milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> u64 {
    // A clock before 1970 is a broken host, not a reason to stop serving.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Timestamps shown to people (the simulated phones' inboxes), e.g. `2026-05-01T10:00:00.123Z`.
pub fn rfc3339_now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
