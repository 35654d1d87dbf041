//! The folding of the counters' appended rows (PostgreSQL), run on its
//! own task.

use std::time::Duration;

use tokio::sync::watch;

use super::super::Inbox;

/// How often a worker folds the rows the PostgreSQL triggers append to
/// `cmc_state_counts` (migration 0014): the reads of the counts fold them
/// too, but a store whose counts nobody reads would otherwise keep a row
/// per statement that changed a state.
pub(super) const FOLD_EVERY: Duration = Duration::from_secs(60);

/// Folds the counters every [`FOLD_EVERY`] until the worker is told to
/// stop (a no-op on SQLite).
pub(super) async fn fold_counts(inbox: Inbox, mut stop: watch::Receiver<Option<Duration>>) {
    let mut tick = tokio::time::interval(FOLD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = stop.changed() => if changed.is_err() || stop.borrow().is_some() {
                return;
            },
        }
        if let Err(e) = inbox.inner.store.fold_counts().await {
            tracing::warn!(error = %e, "could not fold the counts of rows per state");
        }
    }
}
