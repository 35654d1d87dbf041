//! The `Inbox` methods of the console's reads.

use jiff::Timestamp;

use super::types::{
    CLOSED_AFTER, HOUR_MS, HOURS_KEPT_AT_ONCE, HourCount, RowQuery, RowSummary, rows_sql,
};

/// How long recording the hours counted waits for the store's lock.
const KEEP_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The most counts one call of `Inbox::hours` writes.
const KEPT_ROWS_AT_ONCE: usize = 20_000;

impl crate::Inbox {
    /// The events received from `from` to `to` (excluded), counted by
    /// hour (UTC), type and status, in no particular order: through the
    /// index of `received_at`, so that the work is that of the range.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// let now = jiff::Timestamp::now();
    /// let day = now - jiff::SignedDuration::from_hours(24);
    /// for h in inbox.activity(day, now).await? {
    ///     println!("{} {} {:?} {}", h.hour, h.event_type, h.status, h.count);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn activity(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<HourCount>, crate::InboxError> {
        self.inner
            .store
            .activity(from.as_millisecond(), to.as_millisecond())
            .await
    }

    /// The events received in the hours (UTC) that begin from `from`'s
    /// hour to before `to`, counted by hour, type and status, in no
    /// particular order: what [`activity`](Self::activity) counts, whole
    /// hours at a time, but the closed hours (those that ended more than
    /// [`CLOSED_AFTER`] ago on the inbox's clock, [`now`](Self::now)) are
    /// counted once and kept in the store (`cmc_event_hours`): a later
    /// call reads them there, a few rows an hour, instead of every event
    /// of the range. The open hours are counted each time.
    ///
    /// The closed hours not yet kept are counted from the events in one
    /// range read, then recorded in one short transaction (at most
    /// [`HOURS_KEPT_AT_ONCE`] hours, the most recent, and 20 000 counts:
    /// an hour of more distinct types and statuses than that is answered
    /// and not kept); an hour that
    /// another reader records at the same time is kept once. A store
    /// that takes no writes (opened read-only, locked for longer than a
    /// second, a user without the right) still answers, with the hours
    /// counted: the failure is logged at debug level. Nothing on the
    /// write path keeps these counts: what a closed hour holds does not
    /// change, but for the retention, which deletes its hours with the
    /// rows ([`prune`](Self::prune)), and a row stamped in an hour already
    /// closed (a writer's clock more than [`CLOSED_AFTER`] behind), which
    /// is not counted there.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// let now = inbox.now();
    /// let week = now - jiff::SignedDuration::from_hours(24 * 7);
    /// let total: u64 = inbox.hours(week, now).await?.iter().map(|h| h.count).sum();
    /// println!("{total} events in the last 7 days");
    /// # Ok(()) }
    /// ```
    pub async fn hours(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<HourCount>, crate::InboxError> {
        let first = from.as_millisecond().div_euclid(HOUR_MS);
        let to = to.as_millisecond();
        let end = (to.div_euclid(HOUR_MS) + i64::from(to.rem_euclid(HOUR_MS) != 0)).max(first);
        let closed_after = i64::try_from(CLOSED_AFTER.as_millis()).unwrap_or(i64::MAX);
        let closed = self
            .now()
            .as_millisecond()
            .saturating_sub(closed_after)
            .div_euclid(HOUR_MS)
            .clamp(first, end);
        let mut counts = if first < closed {
            self.closed_hours(first, closed).await?
        } else {
            Vec::new()
        };
        if closed < end {
            counts.extend(
                self.inner
                    .store
                    .activity(closed * HOUR_MS, end * HOUR_MS)
                    .await?,
            );
        }
        Ok(counts)
    }

    /// The counts of the closed hours `first..end`: those kept, and the
    /// others counted from the events (and kept, if the store takes it).
    async fn closed_hours(
        &self,
        first: i64,
        end: i64,
    ) -> Result<Vec<HourCount>, crate::InboxError> {
        let store = &self.inner.store;
        let (done, mut counts) = match store.hours_kept(first, end).await {
            Ok(kept) => kept,
            Err(e) => {
                tracing::debug!(error = %e, "the hours counted could not be read; counting them");
                (Vec::new(), Vec::new())
            }
        };
        let done: std::collections::BTreeSet<i64> = done.into_iter().collect();
        // The hours missing: the lowest, and the most recent to keep
        // (bounded: a range of centuries is not walked hour by hour).
        let Some(lowest) = (first..end).find(|h| !done.contains(h)) else {
            return Ok(counts);
        };
        let mut keep = Vec::new();
        let mut hour = end - 1;
        while hour >= lowest && keep.len() < HOURS_KEPT_AT_ONCE {
            if !done.contains(&hour) {
                keep.push(hour);
            }
            hour -= 1;
        }
        let highest = keep.first().copied().unwrap_or(lowest);
        let counted: Vec<HourCount> = store
            .activity(lowest * HOUR_MS, (highest + 1) * HOUR_MS)
            .await?
            .into_iter()
            .filter(|c| !done.contains(&c.hour.as_millisecond().div_euclid(HOUR_MS)))
            .collect();
        // A bounded write: at most KEPT_ROWS_AT_ONCE counts (the types
        // and statuses are the senders'; an hour of many distinct ones is
        // answered, and kept only if it fits), the most recent hours first.
        let mut rows = std::collections::BTreeMap::<i64, usize>::new();
        for c in &counted {
            *rows
                .entry(c.hour.as_millisecond().div_euclid(HOUR_MS))
                .or_default() += 1;
        }
        let mut total = 0;
        keep.retain(|h| {
            // An hour that does not fit is left out alone: the older
            // hours after it are still kept.
            let r = rows.get(h).copied().unwrap_or(0);
            let fits = total + r <= KEPT_ROWS_AT_ONCE;
            total += if fits { r } else { 0 };
            fits
        });
        if let Err(e) = store.keep_hours(&keep, &counted, KEEP_WAIT).await {
            tracing::debug!(error = %e, "the hours counted could not be kept; they will be counted again");
        }
        counts.extend(counted);
        Ok(counts)
    }

    /// The rows `query` finds, newest first (a Message-ID's events in
    /// CMC's order), each with its long texts cut.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// use cmc_webhook_inbox::Kind;
    /// use cmc_webhook_inbox::browse::{RowQuery, RowStates};
    ///
    /// let page = inbox.rows(&RowQuery::new(Kind::Event).states(RowStates::Dead)).await?;
    /// if let Some(last) = page.last() {
    ///     let next = inbox
    ///         .rows(&RowQuery::new(Kind::Event).states(RowStates::Dead).before(last.id.id))
    ///         .await?;
    ///     # let _ = next;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn rows(&self, query: &RowQuery) -> Result<Vec<RowSummary>, crate::InboxError> {
        match rows_sql(query) {
            Some((statement, params)) => {
                self.inner
                    .store
                    .browse_rows(query.kind, &statement, &params)
                    .await
            }
            None => Ok(Vec::new()),
        }
    }
}
