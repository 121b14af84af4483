//! When to try a lost connection again.
//!
//! Exponential with "equal jitter": the n-th consecutive failure waits between
//! half and all of `first * 2^n` (capped), so a fleet of devices that lost
//! WhatsApp together (a network outage, a bridge restart) spreads its
//! reconnects out instead of knocking on the servers in lockstep, while no
//! retry ever comes sooner than half its ceiling.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling of the first retry.
    pub first: Duration,
    /// No retry waits longer than this.
    pub max: Duration,
}

impl Backoff {
    /// Reconnecting a device: 2 s, 4 s, 8 s … up to 5 minutes.
    pub const RECONNECT: Self = Self { first: Duration::from_secs(2), max: Duration::from_secs(300) };

    /// The wait before jitter after `failures` consecutive failures (0 = first retry).
    pub fn ceiling(&self, failures: u32) -> Duration {
        // 2^20 first-delays exceed any sane cap; stopping there keeps the math in range.
        self.first.saturating_mul(1 << failures.min(20)).min(self.max)
    }

    /// The wait for this retry; `unit` is a random draw from `[0, 1)`.
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(failures);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// [`Self::delay`] with a fresh random draw.
    pub fn jittered(&self, failures: u32) -> Duration {
        self.delay(failures, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_then_stay_at_the_cap() {
        let b = Backoff::RECONNECT;
        let secs: Vec<u64> = (0..10).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(b.ceiling(u32::MAX), b.max);
    }

    #[test]
    fn jitter_stays_between_half_and_the_ceiling() {
        let b = Backoff::RECONNECT;
        for failures in [0, 3, 8, 50] {
            let ceiling = b.ceiling(failures);
            assert_eq!(b.delay(failures, 0.0), ceiling / 2);
            assert_eq!(b.delay(failures, 1.0), ceiling);
            for _ in 0..200 {
                let d = b.jittered(failures);
                assert!(d >= ceiling / 2 && d <= ceiling, "{d:?} outside [{:?}, {ceiling:?}]", ceiling / 2);
            }
        }
        // Out-of-range draws are clamped, never outside the bounds.
        assert_eq!(b.delay(1, -3.0), b.ceiling(1) / 2);
        assert_eq!(b.delay(1, 7.0), b.ceiling(1));
    }

    #[test]
    fn draws_actually_spread() {
        let b = Backoff::RECONNECT;
        let draws: std::collections::HashSet<Duration> = (0..50).map(|_| b.jittered(6)).collect();
        assert!(draws.len() > 10, "jitter produced only {} distinct delays", draws.len());
    }
}
