//! The metrics' gauges, read on their own task.

use std::time::Duration;

use tokio::sync::watch;

use super::super::Inbox;
use super::super::job::{Kind, State};

/// Reads the gauges every `every`, until the worker is told to stop.
#[cfg(feature = "metrics")]
pub(super) async fn gauges(
    inbox: Inbox,
    every: Duration,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = stop.changed() => if changed.is_err() || stop.borrow().is_some() {
                return;
            },
        }
        match inbox.counts().await {
            Ok(counts) => {
                let now = inbox.now();
                for kind in [Kind::Event, Kind::Mail] {
                    let c = counts.of(kind);
                    for state in [State::Pending, State::Running, State::Done, State::Dead] {
                        crate::telemetry::rows(kind.as_str(), state.as_str(), c.get(state));
                    }
                    let age = c
                        .oldest_pending
                        .and_then(|at| Duration::try_from(now.duration_since(at)).ok())
                        .unwrap_or_default();
                    crate::telemetry::oldest_pending(kind.as_str(), age);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the inbox's counts for the metrics")
            }
        }
    }
}
