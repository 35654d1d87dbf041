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
    let mut seen = std::collections::BTreeSet::<String>::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = stop.changed() => if changed.is_err() || stop.borrow().is_some() {
                return;
            },
        }
        match inbox.counts_by_source().await {
            Ok(by_source) => {
                let now = inbox.now();
                // A source whose rows are all pruned reads 0, not its last
                // value.
                for gone in seen.iter().filter(|s| !by_source.contains_key(*s)) {
                    set(gone, &crate::ops::Counts::default(), now);
                }
                for (source, counts) in &by_source {
                    set(source, counts, now);
                }
                seen = by_source.into_keys().collect();
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the inbox's counts for the metrics")
            }
        }
    }
}

/// Sets the gauges of `source`.
#[cfg(feature = "metrics")]
fn set(source: &str, counts: &crate::ops::Counts, now: jiff::Timestamp) {
    for kind in [Kind::Event, Kind::Mail] {
        let c = counts.of(kind);
        for state in [State::Pending, State::Running, State::Done, State::Dead] {
            crate::telemetry::rows(kind.as_str(), source, state.as_str(), c.get(state));
        }
        let age = c
            .oldest_pending
            .and_then(|at| Duration::try_from(now.duration_since(at)).ok())
            .unwrap_or_default();
        crate::telemetry::oldest_pending(kind.as_str(), source, age);
    }
}
