//! The keeping of the last closed hours' event counts
//! ([`Inbox::hours`]), run on its own task, so that a console's first
//! view after a long idle time reads only kept hours.

use std::time::Duration;

use tokio::sync::watch;

use super::super::Inbox;
use crate::browse::CLOSED_AFTER;
use crate::browse::types::HOUR_MS;

/// How often a worker records the hours that closed since its last look
/// (a look at hours already kept reads two marker rows).
pub(super) const KEEP_HOURS_EVERY: Duration = Duration::from_secs(10 * 60);

/// The hours a look covers: the last ones closed (more than one, so that
/// a look missed, by a restart or a lock, is made up by the next).
const HOURS_LOOKED_AT: i64 = 3;

/// Records the last closed hours every [`KEEP_HOURS_EVERY`] until the
/// worker is told to stop; a failure is logged at debug level (the next
/// read of the hours counts them).
pub(super) async fn keep_hours(inbox: Inbox, mut stop: watch::Receiver<Option<Duration>>) {
    let mut tick = tokio::time::interval(KEEP_HOURS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = stop.changed() => if changed.is_err() || stop.borrow().is_some() {
                return;
            },
        }
        let closed_after = i64::try_from(CLOSED_AFTER.as_millis()).unwrap_or(i64::MAX);
        let closed = inbox
            .now()
            .as_millisecond()
            .saturating_sub(closed_after)
            .div_euclid(HOUR_MS)
            .saturating_mul(HOUR_MS);
        let from = closed.saturating_sub(HOURS_LOOKED_AT * HOUR_MS);
        // Only closed hours: the range ends where the open ones begin.
        if let Err(e) = inbox
            .hours(
                crate::clock::from_millis(from),
                crate::clock::from_millis(closed),
            )
            .await
        {
            tracing::debug!(error = %e, "could not record the last closed hours' events");
        }
    }
}
