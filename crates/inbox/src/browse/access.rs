//! The `Inbox` methods of the console's reads.

use jiff::Timestamp;

use super::types::{HourCount, RowQuery, RowSummary, rows_sql};

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
