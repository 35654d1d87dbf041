//! The relay's circuit breaker: after a number of failed attempts in a
//! row, the target is paused for a while, and the attempts wait for the
//! pause to end rather than hammer a target that is down (and spend their
//! rows' attempts in a burst). When the pause is over, one attempt goes
//! first, alone (the probe): its success releases the others, its failure
//! pauses the target again.
//!
//! Only failures that say the target as a whole is unwell count: no
//! connection, no answer in time, a 5xx, 429, 408, or 401, 403, 404 and
//! 405 (a wrong secret, clock or URL). Other refusals (400, 413, 422, ...)
//! concern one row, say that the target is up, and count as an answer:
//! a stranger's oversized mail must not pause everyone's webhooks.
//!
//! Each change of state (paused, probing, closed) is published on a watch
//! channel ([`Breaker::changes`]), never each attempt: the relay records
//! the latest in the store from a task of its own, so that other
//! processes see it (see [`super::record`]: one recorder per process, at most one write a second).

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use cmc_webhook_inbox::targets::TargetCondition;
use tokio::sync::watch;

/// A change of a breaker's state, as published on [`Breaker::changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// Where the breaker stands now.
    pub condition: TargetCondition,
    /// Failed attempts in a row.
    pub failures: u32,
    /// When a pause ends, or a probe is due by (none when closed).
    pub until: Option<jiff::Timestamp>,
    /// How many times the target was paused.
    pub pauses: u64,
    /// When it changed.
    pub at: jiff::Timestamp,
}

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
    /// How long a probe may take (its deadline, as published).
    probe_limit: Duration,
    target: String,
    state: Mutex<State>,
    /// The latest change (none before the first).
    changes: watch::Sender<Option<Change>>,
}

#[derive(Debug, Default)]
struct State {
    failures: u32,
    paused_until: Option<Instant>,
    pauses: u64,
    /// An attempt is testing the target after a pause.
    probing: bool,
}

/// How often attempts waiting for a probe look again.
const PROBE_POLL: Duration = Duration::from_millis(50);

/// Leave to make one attempt, from [`Breaker::admit`]. Tell it how the
/// attempt went; one dropped untold (a cancelled attempt) lets another
/// attempt probe.
#[derive(Debug)]
pub struct Admission<'a> {
    breaker: &'a Breaker,
    probe: bool,
}

impl Admission<'_> {
    /// Whether this attempt is the probe after a pause.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The target answered 2xx, or refused this row alone (it is up).
    pub fn answered(mut self) {
        self.probe = false;
        self.breaker.success();
    }

    /// The target as a whole failed this attempt.
    pub fn failed(mut self) {
        self.probe = false;
        self.breaker.failure();
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if self.probe {
            let mut state = self.breaker.state();
            state.probing = false;
            // Paused again as before the probe, the pause over: the next
            // attempt probes.
            let until = state.paused_until;
            self.breaker
                .publish(&state, TargetCondition::Paused, until.map(wall));
        }
    }
}

impl Breaker {
    /// Pauses `target` for `pause` after `cap` failures in a row (a cap of
    /// 0 never pauses).
    pub fn new(cap: u32, pause: Duration, target: &str) -> Breaker {
        metrics::gauge!("cmc_receiver_relay_paused", "target" => target.to_owned()).set(0.0);
        Breaker {
            cap,
            pause,
            probe_limit: pause,
            target: target.to_owned(),
            state: Mutex::default(),
            changes: watch::Sender::new(None),
        }
    }

    /// The longest a probe may take before it is known to be lost (the
    /// attempt's timeout): the deadline published while probing. The
    /// pause by default.
    pub fn with_probe_limit(mut self, limit: Duration) -> Breaker {
        self.probe_limit = limit;
        self
    }

    /// The changes of state: the latest (none before the first), one per
    /// change, never per attempt.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cmc_receiver::relay::breaker::{Breaker, TargetCondition};
    ///
    /// let breaker = Breaker::new(1, Duration::from_secs(30), "https://app.example.jp/hooks");
    /// let changes = breaker.changes();
    /// assert!(changes.borrow().is_none());
    /// breaker.failure();
    /// let paused = changes.borrow().clone().unwrap();
    /// assert_eq!(paused.condition, TargetCondition::Paused);
    /// assert_eq!((paused.failures, paused.pauses), (1, 1));
    /// ```
    pub fn changes(&self) -> watch::Receiver<Option<Change>> {
        self.changes.subscribe()
    }

    /// Publishes a change, the state locked (so that changes go out in
    /// their order). Never waits: the watch keeps the latest.
    fn publish(&self, state: &State, condition: TargetCondition, until: Option<jiff::Timestamp>) {
        self.changes.send_replace(Some(Change {
            condition,
            failures: state.failures,
            until,
            pauses: state.pauses,
            at: jiff::Timestamp::now(),
        }));
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

    /// Whether the target is paused or being probed after a pause.
    pub fn is_open(&self) -> bool {
        self.cap > 0 && self.state().failures >= self.cap
    }

    /// Waits until an attempt may go: through a pause, then, after it,
    /// while another attempt probes the target.
    pub async fn admit(&self) -> Admission<'_> {
        loop {
            let wait = {
                let mut state = self.state();
                let now = Instant::now();
                match state.paused_until {
                    Some(until) if until > now => until - now,
                    _ if self.cap > 0 && state.failures >= self.cap => {
                        if state.probing {
                            PROBE_POLL
                        } else {
                            state.probing = true;
                            let due = jiff::Timestamp::now()
                                + jiff::SignedDuration::try_from(self.probe_limit)
                                    .unwrap_or(jiff::SignedDuration::MAX);
                            self.publish(&state, TargetCondition::Probing, Some(due));
                            return Admission {
                                breaker: self,
                                probe: true,
                            };
                        }
                    }
                    _ => {
                        return Admission {
                            breaker: self,
                            probe: false,
                        };
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// An attempt succeeded: the count starts again, a pause ends.
    pub fn success(&self) {
        let mut state = self.state();
        let was_paused = state.failures >= self.cap && self.cap > 0;
        state.failures = 0;
        state.paused_until = None;
        state.probing = false;
        if was_paused {
            self.publish(&state, TargetCondition::Closed, None);
        }
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
        state.probing = false;
        let now = Instant::now();
        let pausing = state.failures >= self.cap && state.paused_until.is_none_or(|u| u <= now);
        if pausing {
            state.paused_until = Some(now + self.pause);
            state.pauses += 1;
            let failures = state.failures;
            self.publish(
                &state,
                TargetCondition::Paused,
                state.paused_until.map(wall),
            );
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

/// A monotonic instant as the wall clock's time (for a reader elsewhere).
fn wall(at: Instant) -> jiff::Timestamp {
    let now = Instant::now();
    let wall = jiff::Timestamp::now();
    let offset =
        |d: Duration| jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    match at.checked_duration_since(now) {
        Some(ahead) => wall.saturating_add(offset(ahead)).unwrap_or(wall),
        None => wall.saturating_sub(offset(now - at)).unwrap_or(wall),
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
        let probe = breaker.admit().await;
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert!(probe.is_probe());
        drop(probe);
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

    #[tokio::test]
    async fn after_a_pause_one_probe_goes_alone_and_its_answer_releases_the_rest() {
        let breaker = std::sync::Arc::new(Breaker::new(1, Duration::from_millis(30), "t"));
        breaker.failure();
        assert!(breaker.is_open());
        let probe = breaker.admit().await;
        assert!(probe.is_probe());
        // A second attempt waits while the probe is out.
        let other = {
            let breaker = breaker.clone();
            tokio::spawn(async move { breaker.admit().await.is_probe() })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!other.is_finished(), "an attempt went beside the probe");
        // The probe fails: paused again; the waiting attempt becomes the
        // next probe once that pause is over.
        probe.failed();
        assert_eq!(breaker.pauses(), 2);
        assert!(other.await.unwrap(), "the next attempt probes");
        // A probe cancelled untold lets the next attempt probe.
        let probe = breaker.admit().await;
        assert!(probe.is_probe());
        drop(probe);
        let probe = breaker.admit().await;
        assert!(probe.is_probe());
        // A probe answered closes it: attempts go freely.
        probe.answered();
        assert!(!breaker.is_open());
        assert!(!breaker.admit().await.is_probe());
    }

    #[tokio::test]
    async fn each_change_of_state_is_published_once_and_attempts_publish_nothing() {
        let breaker = Breaker::new(3, Duration::from_millis(30), "t")
            .with_probe_limit(Duration::from_secs(40));
        let mut changes = breaker.changes();
        // Below the cap, and successes while closed: no change.
        breaker.failure();
        breaker.failure();
        breaker.success();
        breaker.failure();
        breaker.failure();
        drop(breaker.admit().await);
        assert!(!changes.has_changed().unwrap());
        let before = jiff::Timestamp::now();
        breaker.failure();
        assert!(changes.has_changed().unwrap());
        let paused = changes.borrow_and_update().clone().unwrap();
        assert_eq!(paused.condition, TargetCondition::Paused);
        assert_eq!((paused.failures, paused.pauses), (3, 1));
        let until = paused.until.unwrap();
        assert!(
            until >= before + jiff::SignedDuration::from_millis(25),
            "{until}"
        );
        assert!(until <= jiff::Timestamp::now() + jiff::SignedDuration::from_millis(35));
        // Failures during the pause change nothing.
        breaker.failure();
        assert!(!changes.has_changed().unwrap());
        // The probe: due by its limit.
        let probe = breaker.admit().await;
        let probing = changes.borrow_and_update().clone().unwrap();
        assert_eq!(probing.condition, TargetCondition::Probing);
        let due = probing.until.unwrap() - probing.at;
        let due = due.as_millis();
        assert!((39_900..=40_000).contains(&due), "{due}");
        probe.answered();
        let closed = changes.borrow_and_update().clone().unwrap();
        assert_eq!(closed.condition, TargetCondition::Closed);
        assert_eq!((closed.failures, closed.until, closed.pauses), (0, None, 1));
        // Closed again: successes publish nothing more.
        breaker.success();
        assert!(!changes.has_changed().unwrap());
    }
}
