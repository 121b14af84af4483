//! How long an app's history (recorded events, settled webhook deliveries) is kept, and how
//! often it is trimmed.

const DAY_MS: f64 = 86_400_000.0;
pub const DEFAULT_DAYS: f64 = 30.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    keep_ms: u64,
}

impl Retention {
    /// From the `RETENTION_DAYS` setting; fractions are allowed, anything not positive means the default.
    pub fn from_days(days: Option<f64>) -> Self {
        let days = days.filter(|d| d.is_finite() && *d > 0.0).unwrap_or(DEFAULT_DAYS);
        Self { keep_ms: (days * DAY_MS).max(1.0) as u64 }
    }

    /// Rows from before this time may go.
    pub fn cutoff(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.keep_ms)
    }

    /// Trimming runs at most thirty times per retention period (daily by default), so an app
    /// whose alarm fires often does not rescan its history each time.
    pub fn due(&self, last_trimmed_ms: Option<u64>, now_ms: u64) -> bool {
        last_trimmed_ms.is_none_or(|last| now_ms.saturating_sub(last) >= self.keep_ms / 30)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_settings_mean_thirty_days() {
        let default = Retention::from_days(None);
        assert_eq!(default.keep_ms, 30 * 86_400_000);
        for days in [0.0, -3.0, f64::NAN, f64::INFINITY] {
            assert_eq!(Retention::from_days(Some(days)), default, "{days}");
        }
        assert_eq!(Retention::from_days(Some(0.5)).keep_ms, 43_200_000);
    }

    #[test]
    fn the_cutoff_is_the_retention_before_now_and_never_underflows() {
        let r = Retention::from_days(Some(1.0));
        assert_eq!(r.cutoff(100_000_000), 100_000_000 - 86_400_000);
        assert_eq!(r.cutoff(5), 0);
    }

    #[test]
    fn trimming_is_due_daily_by_default_and_first_time_always() {
        let r = Retention::from_days(None);
        let day = 86_400_000;
        assert!(r.due(None, 0));
        assert!(!r.due(Some(1_000), 1_000 + day - 1));
        assert!(r.due(Some(1_000), 1_000 + day));
    }
}
