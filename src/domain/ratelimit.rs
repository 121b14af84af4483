//! Per-key request limits by GCRA (the generic cell rate algorithm): one timestamp of state per
//! key, smooth rather than fixed windows, and exact — a key allowed `limit` requests per window
//! may burst up to `limit` at once, then gets one more every `window / limit`.

use serde::{Deserialize, Serialize};

/// A limit of `limit` requests per `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    pub limit: u64,
    pub window_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The state to store when allowed (the theoretical arrival time, ms).
    pub tat: u64,
    /// Requests still allowed right now.
    pub remaining: u64,
    /// Seconds until the full allowance is back (the IETF `RateLimit` header's `t`).
    pub reset_secs: u64,
    /// Seconds to wait before a refused request can succeed (`Retry-After`).
    pub retry_after_secs: u64,
}

impl Gcra {
    fn interval(&self) -> u64 {
        (self.window_ms / self.limit.max(1)).max(1)
    }

    /// Decides one request at `now_ms` given the stored `tat` (none for a new key). A clock that
    /// went backwards is treated as no time passing, never as credit.
    pub fn check(&self, tat: Option<u64>, now_ms: u64) -> Verdict {
        let interval = self.interval();
        let capacity = interval * self.limit.max(1);
        let tat = tat.unwrap_or(now_ms).max(now_ms);
        let new_tat = tat + interval;
        let allow_at = new_tat.saturating_sub(capacity);
        if now_ms < allow_at {
            let used = tat - now_ms;
            return Verdict {
                allowed: false,
                tat,
                remaining: 0,
                reset_secs: used.div_ceil(1000),
                retry_after_secs: (allow_at - now_ms).div_ceil(1000),
            };
        }
        let used = new_tat - now_ms;
        Verdict {
            allowed: true,
            tat: new_tat,
            remaining: (capacity - used) / interval,
            reset_secs: used.div_ceil(1000),
            retry_after_secs: 0,
        }
    }
}

/// What one failed authentication does to a client address's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttle {
    /// This failure was over the budget: answer 429, to be retried after this many seconds.
    pub retry_after_secs: Option<u64>,
    /// The budget is spent (by this failure or before it): for this long, no request from the
    /// address should have its credential checked.
    pub spent_for_secs: Option<u64>,
}

/// Counts one failed authentication against a budget of `per_minute` failures whose stored
/// state is `tat`: the throttle it comes to, and the state to store (none when the failure
/// was refused, so hammering a spent budget does not push its refill further out).
pub fn count_failure(per_minute: u64, tat: Option<u64>, now_ms: u64) -> (Throttle, Option<u64>) {
    let gcra = Gcra { limit: per_minute.max(1), window_ms: 60_000 };
    let verdict = gcra.check(tat, now_ms);
    if !verdict.allowed {
        let refused = Some(verdict.retry_after_secs);
        return (Throttle { retry_after_secs: refused, spent_for_secs: refused }, None);
    }
    // Whether this failure spent the budget: then the next request need not be tried at all.
    let next = gcra.check(Some(verdict.tat), now_ms);
    let spent_for_secs = (!next.allowed).then_some(next.retry_after_secs);
    (Throttle { retry_after_secs: None, spent_for_secs }, Some(verdict.tat))
}

/// `RateLimit-Policy` and `RateLimit` header values (draft-ietf-httpapi-ratelimit-headers).
pub fn headers(limit: &Gcra, verdict: &Verdict) -> [(&'static str, String); 2] {
    let window_secs = limit.window_ms / 1000;
    [
        ("ratelimit-policy", format!("\"default\";q={};w={window_secs}", limit.limit)),
        ("ratelimit", format!("\"default\";r={};t={}", verdict.remaining, verdict.reset_secs)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_MINUTE: Gcra = Gcra { limit: 120, window_ms: 60_000 };
    const T0: u64 = 1_780_000_000_000;

    fn run(limit: &Gcra, times: impl IntoIterator<Item = u64>) -> (Option<u64>, Vec<Verdict>) {
        let mut tat = None;
        let verdicts = times
            .into_iter()
            .map(|now| {
                let v = limit.check(tat, now);
                if v.allowed {
                    tat = Some(v.tat);
                }
                v
            })
            .collect();
        (tat, verdicts)
    }

    #[test]
    fn a_full_burst_then_the_121st_is_refused() {
        let (_, verdicts) = run(&PER_MINUTE, std::iter::repeat_n(T0, 121));
        assert!(verdicts[..120].iter().all(|v| v.allowed));
        assert_eq!(verdicts[0].remaining, 119);
        assert_eq!(verdicts[119].remaining, 0);
        let refused = verdicts[120];
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_secs, 1, "one interval (500 ms), rounded up");
        assert_eq!(refused.reset_secs, 60);
    }

    #[test]
    fn allowance_refills_smoothly() {
        let (tat, _) = run(&PER_MINUTE, std::iter::repeat_n(T0, 120));
        assert!(!PER_MINUTE.check(tat, T0 + 499).allowed);
        assert!(PER_MINUTE.check(tat, T0 + 500).allowed, "one request back after one interval");
        let later = PER_MINUTE.check(tat, T0 + 30_000);
        assert!(later.allowed && later.remaining == 59, "half the window gives back half the allowance");
        let (_, steady) = run(&PER_MINUTE, (0..1000).map(|i| T0 + i * 500));
        assert!(steady.iter().all(|v| v.allowed), "the sustained rate is always allowed");
    }

    #[test]
    fn a_clock_going_backwards_gives_no_credit() {
        let (tat, _) = run(&PER_MINUTE, std::iter::repeat_n(T0, 120));
        assert!(!PER_MINUTE.check(tat, T0 - 10_000).allowed);
        let fresh = PER_MINUTE.check(None, T0 - 10_000);
        assert!(fresh.allowed && fresh.remaining == 119);
    }

    #[test]
    fn the_failure_that_spends_the_budget_says_so_and_later_ones_are_refused() {
        let mut tat = None;
        for n in 1..20 {
            let (throttle, stored) = count_failure(20, tat, T0);
            assert_eq!(throttle, Throttle { retry_after_secs: None, spent_for_secs: None }, "failure {n}");
            tat = stored;
        }
        let (twentieth, stored) = count_failure(20, tat, T0);
        assert_eq!(twentieth, Throttle { retry_after_secs: None, spent_for_secs: Some(3) }, "one interval of 3 s");
        tat = stored;
        let (refused, stored) = count_failure(20, tat, T0 + 1_000);
        assert_eq!(refused, Throttle { retry_after_secs: Some(2), spent_for_secs: Some(2) });
        assert_eq!(stored, None, "a refused failure leaves the budget as it was");
        let (refilled, _) = count_failure(20, tat, T0 + 3_000);
        assert_eq!(refilled.retry_after_secs, None, "one failure allowed again after one interval");
    }

    #[test]
    fn a_budget_of_zero_still_allows_one_failure_a_minute() {
        let (first, tat) = count_failure(0, None, T0);
        assert_eq!(first, Throttle { retry_after_secs: None, spent_for_secs: Some(60) });
        assert_eq!(count_failure(0, tat, T0 + 59_000).0.retry_after_secs, Some(1));
    }

    #[test]
    fn headers_follow_the_ietf_draft() {
        let v = PER_MINUTE.check(None, T0);
        assert_eq!(
            headers(&PER_MINUTE, &v),
            [
                ("ratelimit-policy", "\"default\";q=120;w=60".to_owned()),
                ("ratelimit", "\"default\";r=119;t=1".to_owned())
            ]
        );
    }
}
