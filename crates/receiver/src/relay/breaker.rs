//! The relay's circuit breaker: after a number of failed attempts in a
//! row, the target is paused for a while, and the attempts wait for the
//! pause to end rather than hammer a target that is down (and spend their
//! rows' attempts in a burst). The first success closes it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts a target's failures in a row and pauses it at the cap.
///
/// ```
/// use std::time::Duration;
/// use cmc_receiver::relay::breaker::Breaker;
///
/// let breaker = Breaker::new(2, Duration::from_secs(30), "https://app.example.jp/hooks");
/// breaker.failure();
/// assert!(breaker.paused_for().is_none());
/// breaker.failure();
/// assert!(breaker.paused_for().is_some());
/// breaker.success();
/// assert!(breaker.paused_for().is_none());
/// ```
#[derive(Debug)]
pub struct Breaker {
    cap: u32,
    pause: Duration,
    target: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    paused_until: Option<Instant>,
    pauses: u64,
}

impl Breaker {
    /// Pauses `target` for `pause` after `cap` failures in a row (a cap of
    /// 0 never pauses).
    pub fn new(cap: u32, pause: Duration, target: &str) -> Breaker {
        metrics::gauge!("cmc_receiver_relay_paused", "target" => target.to_owned()).set(0.0);
        Breaker {
            cap,
            pause,
            target: target.to_owned(),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How much longer the target is paused, if it is.
    pub fn paused_for(&self) -> Option<Duration> {
        let until = self.state().paused_until?;
        until.checked_duration_since(Instant::now())
    }

    /// How many times the target was paused.
    pub fn pauses(&self) -> u64 {
        self.state().pauses
    }

    /// Waits until the target is not paused.
    pub async fn wait(&self) {
        while let Some(left) = self.paused_for() {
            tokio::time::sleep(left).await;
        }
    }

    /// An attempt succeeded: the count starts again, a pause ends.
    pub fn success(&self) {
        let mut state = self.state();
        let was_paused = state.failures >= self.cap && self.cap > 0;
        state.failures = 0;
        state.paused_until = None;
        drop(state);
        if was_paused {
            metrics::gauge!("cmc_receiver_relay_paused", "target" => self.target.clone()).set(0.0);
            tracing::info!(target_url = %self.target, "the relay target answers again: resumed");
        }
    }

    /// An attempt failed: at the cap, and at each failure past it once the
    /// pause is over, the target is paused again.
    pub fn failure(&self) {
        if self.cap == 0 {
            return;
        }
        let mut state = self.state();
        state.failures = state.failures.saturating_add(1);
        let now = Instant::now();
        let pausing = state.failures >= self.cap && state.paused_until.is_none_or(|u| u <= now);
        if pausing {
            state.paused_until = Some(now + self.pause);
            state.pauses += 1;
            let failures = state.failures;
            drop(state);
            metrics::gauge!("cmc_receiver_relay_paused", "target" => self.target.clone()).set(1.0);
            metrics::counter!("cmc_receiver_relay_pauses_total", "target" => self.target.clone())
                .increment(1);
            tracing::warn!(
                target_url = %self.target,
                failures,
                pause_s = self.pause.as_secs_f64(),
                "the relay target failed {failures} times in a row: paused"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pause_ends_by_itself_and_fails_again_at_once() {
        let breaker = Breaker::new(3, Duration::from_millis(50), "t");
        for _ in 0..2 {
            breaker.failure();
        }
        assert!(breaker.paused_for().is_none());
        breaker.failure();
        assert!(breaker.paused_for().is_some());
        // More failures during the pause do not lengthen it.
        breaker.failure();
        assert_eq!(breaker.pauses(), 1);
        let started = Instant::now();
        breaker.wait().await;
        assert!(started.elapsed() >= Duration::from_millis(40));
        // The probe after the pause fails: paused again at once.
        breaker.failure();
        assert_eq!(breaker.pauses(), 2);
        breaker.success();
        assert!(breaker.paused_for().is_none());
        let never = Breaker::new(0, Duration::from_secs(60), "t");
        for _ in 0..100 {
            never.failure();
        }
        assert!(never.paused_for().is_none());
    }
}
