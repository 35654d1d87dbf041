//! When a failed row is tried again: exponential backoff with jitter.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The wait before the next attempt of a row whose handler failed: `base`
/// after the first failure, doubling after each, at most `max`, then
/// shortened by a random part of up to `jitter` of itself, so that rows
/// that failed together do not come back together.
///
/// The default is 10 s, doubling up to 1 h, with 25 % jitter: with the
/// worker's default of 12 attempts a row is retried for about 7 hours
/// before it is dead.
///
/// ```
/// use std::time::Duration;
/// use cmc_webhook_inbox::Backoff;
///
/// let backoff = Backoff::exponential(Duration::from_secs(1))
///     .max(Duration::from_secs(60))
///     .jitter(0.5);
/// // After the third failure: 4 s, less up to half.
/// assert_eq!(backoff.bounds(3), (Duration::from_secs(2), Duration::from_secs(4)));
/// // Never beyond the cap.
/// assert_eq!(backoff.bounds(30).1, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(10),
            max: Duration::from_secs(3600),
            jitter: 0.25,
        }
    }
}

impl Backoff {
    /// `base` after the first failure, doubling; capped at one hour and
    /// 25 % jitter until set otherwise.
    pub fn exponential(base: Duration) -> Backoff {
        Backoff {
            base,
            ..Backoff::default()
        }
    }

    /// The longest wait.
    pub fn max(mut self, max: Duration) -> Backoff {
        self.max = max;
        self
    }

    /// The part of each wait that is random, from 0 (none) to 1 (anything
    /// from zero to the full wait); clamped to that range.
    pub fn jitter(mut self, fraction: f64) -> Backoff {
        self.jitter = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        self
    }

    /// The shortest and the longest wait after failed attempt `attempt`
    /// (1 for the first).
    pub fn bounds(&self, attempt: u32) -> (Duration, Duration) {
        let doublings = attempt.saturating_sub(1);
        let full = 1u32
            .checked_shl(doublings)
            .and_then(|factor| self.base.checked_mul(factor))
            .map_or(self.max, |wait| wait.min(self.max));
        (full.mul_f64(1.0 - self.jitter), full)
    }

    /// A wait after failed attempt `attempt`, within [`bounds`](Backoff::bounds).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let (low, high) = self.bounds(attempt);
        low + (high - low).mul_f64(random_unit())
    }
}

/// A number in `[0, 1)`, from the standard library's randomly keyed
/// hasher: jitter needs no stronger randomness.
fn random_unit() -> f64 {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(SEQUENCE.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let b = Backoff::exponential(Duration::from_secs(10))
            .max(Duration::from_secs(3600))
            .jitter(0.0);
        let waits: Vec<u64> = (1..=11).map(|n| b.bounds(n).1.as_secs()).collect();
        assert_eq!(
            waits,
            [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(b.bounds(u32::MAX).1, Duration::from_secs(3600));
        assert_eq!(b.bounds(0).1, Duration::from_secs(10));
    }

    #[test]
    fn delays_stay_within_their_bounds_and_vary() {
        let b = Backoff::exponential(Duration::from_secs(8)).jitter(0.5);
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(2)).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_secs(8) && *d <= Duration::from_secs(16))
        );
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "{} distinct delays", distinct.len());
    }

    #[test]
    fn jitter_is_clamped() {
        assert_eq!(Backoff::default().jitter(7.0).bounds(1).0, Duration::ZERO);
        assert_eq!(
            Backoff::default().jitter(f64::NAN).bounds(1).0,
            Duration::from_secs(10)
        );
    }
}
