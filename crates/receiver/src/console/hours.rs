//! The events per hour the overview's chart shows, with the closed hours
//! counted once and kept ([`HourCache`]).

use cmc_webhook_inbox::browse::HourCount;

/// An hour's length in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// The hours the overview shows: the last 7 days' (this one included).
pub const WEEK_HOURS: i64 = 24 * 7;

/// How long after its end an hour is taken as closed: a row stamped
/// within the hour by a writer whose transaction commits a little later,
/// or whose clock is a little behind, is still counted (the inbox's own,
/// [`cmc_webhook_inbox::browse::CLOSED_AFTER`]).
pub const CLOSED_AFTER: jiff::SignedDuration = cmc_webhook_inbox::browse::CLOSED_AFTER;

/// The events per hour of the closed hours (those that ended more than
/// [`CLOSED_AFTER`] ago), counted once and kept by the console; only the
/// open hours are counted again at each load of the overview. The closed
/// hours come from [`Inbox::hours`](cmc_webhook_inbox::Inbox::hours),
/// which keeps them in the store: a store of a million events is counted
/// once whatever the number of consoles and restarts (at the first load,
/// or by [`Console::warm`](crate::console::state::Console::warm) at start),
/// then a console reads the week's few hundred rows once, and an hour's
/// worth of events at a time.
///
/// What it keeps is what was received: a row of a closed hour that is
/// pruned later stays counted, and a row written later into a closed hour
/// (a writer's clock more than [`CLOSED_AFTER`] behind) is not counted
/// until the console restarts.
#[derive(Debug, Default)]
pub struct HourCache {
    closed: tokio::sync::Mutex<Option<Closed>>,
}

/// The closed hours counted: `from` to `to` (hour numbers since 1970,
/// `to` excluded).
#[derive(Debug)]
struct Closed {
    from: i64,
    to: i64,
    counts: Vec<HourCount>,
}

fn at_hour(hour: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(hour.saturating_mul(HOUR_MS)).unwrap_or(jiff::Timestamp::MAX)
}

impl HourCache {
    /// The events per hour of the [`WEEK_HOURS`] hours up to `now`'s.
    pub async fn week(
        &self,
        inbox: &cmc_webhook_inbox::Inbox,
        now: jiff::Timestamp,
    ) -> Result<Vec<HourCount>, cmc_webhook_inbox::InboxError> {
        let this_hour = now.as_millisecond().div_euclid(HOUR_MS);
        let first = this_hour - WEEK_HOURS + 1;
        let closed_end = (now - CLOSED_AFTER)
            .as_millisecond()
            .div_euclid(HOUR_MS)
            .max(first);
        let mut week = {
            let mut cached = self.closed.lock().await;
            let reuse = cached
                .as_ref()
                .is_some_and(|c| c.from <= first && first <= c.to && c.to <= closed_end);
            if !reuse {
                *cached = None;
            }
            let from = cached.as_ref().map_or(first, |c| c.to);
            let mut counts = cached.take().map(|c| c.counts).unwrap_or_default();
            if from < closed_end {
                counts.extend(inbox.hours(at_hour(from), at_hour(closed_end)).await?);
            }
            counts.retain(|c| c.hour >= at_hour(first));
            let week = counts.clone();
            *cached = Some(Closed {
                from: first,
                to: closed_end,
                counts,
            });
            week
        };
        week.extend(
            inbox
                .activity(at_hour(closed_end), at_hour(this_hour + 1))
                .await?,
        );
        Ok(week)
    }
}
