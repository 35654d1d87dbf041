//! The inbox's handle: [`Inbox`], cheap to clone, and what it does on
//! its own (storing, counting, replaying, pruning). The services made from
//! it are in their own files, as `impl Inbox` blocks: opening in
//! `builder.rs`, receiving in `receive.rs`, workers in `worker/`,
//! deliveries in `mailbox/`.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use cmc_webhook_core::source::DEFAULT_SOURCE;
use cmc_webhook_core::{Sourced, Webhook};

use crate::clock::{self, Clock};
use crate::commit::Pending;
use crate::error::{InboxError, InboxErrorKind};
use crate::job::Kind;
use crate::ops::{Counts, DeadRow, Filter, History, Pruned, Receipt};

use crate::store::Store;

/// The retention of [`Inbox::prune`] that the receiver example uses, and a
/// good default: 30 days, as ActionMailbox keeps its mails.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Mails whose attachments are larger than this are keyed and encoded on
/// a blocking thread, not on the runtime's.
const BLOCKING_MAIL_SIZE: usize = 256 * 1024;

/// A durable inbox of CMC webhooks: cheap to clone, all clones share the
/// store. See the [crate documentation](crate).
#[derive(Clone)]
pub struct Inbox {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) queue: mpsc::Sender<Pending>,
    pub(crate) wake: watch::Sender<u64>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) describe: String,
    /// Whether a worker was seen to keep the suppression list (once true,
    /// it stays: a check need not ask again).
    pub(crate) suppressions_kept: std::sync::atomic::AtomicBool,
    /// What is kept of each request as it arrived.
    pub(crate) raw: crate::raw::types::RawRequests,
    /// The refused bodies kept in the current window.
    pub(crate) refused: crate::raw::budget::Budget,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("store", &self.inner.describe)
            .field("clock", &self.inner.clock)
            .finish()
    }
}

impl Inbox {
    pub(crate) fn start(
        store: Store,
        clock: Arc<dyn Clock>,
        describe: String,
        raw: crate::raw::types::RawRequests,
    ) -> Inbox {
        let (queue, waiting) = mpsc::channel(1024);
        let (wake, _) = watch::channel(0);
        tokio::spawn(crate::commit::write_loop(
            store.clone(),
            waiting,
            wake.clone(),
        ));
        Inbox {
            inner: Arc::new(Inner {
                store,
                queue,
                wake,
                clock,
                describe,
                suppressions_kept: std::sync::atomic::AtomicBool::new(false),
                refused: crate::raw::budget::Budget::new(raw.refused),
                raw,
            }),
        }
    }

    /// Where the inbox stores, for logs: `sqlite:PATH`, or a PostgreSQL
    /// address without its password.
    pub fn describe(&self) -> &str {
        &self.inner.describe
    }

    /// Stores a webhook that arrived from `client`, and returns once it is
    /// committed: the framework-free form of [`receive`](Inbox::receive),
    /// for one CMC account (its rows are recorded as the source `default`;
    /// [`store_sourced`](Inbox::store_sourced) records another).
    ///
    #[cfg_attr(feature = "sqlite", doc = "```")]
    #[cfg_attr(not(feature = "sqlite"), doc = "```ignore")]
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// # let dir = std::env::temp_dir().join(format!("cmc-doc-store-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// use bytes::Bytes;
    /// use cmc_webhook_core::Webhook;
    /// use cmc_webhook_inbox::Inbox;
    ///
    /// let inbox = Inbox::sqlite(dir.join("inbox.sqlite3")).open().await?;
    /// let body = r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[
    ///   {"created":"2023-01-25 14:03:09","status":"2015","to":"x@example.jp","messageId":"<1@x>"}]}}"#;
    /// let first = inbox.store(Webhook::parse("application/json", Bytes::from(body))?, None).await?;
    /// let again = inbox.store(Webhook::parse("application/json", Bytes::from(body))?, None).await?;
    /// assert_eq!((first.stored, first.repeated), (1, 0));
    /// assert_eq!((again.stored, again.repeated), (0, 1));
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn store(
        &self,
        webhook: Webhook,
        client: Option<IpAddr>,
    ) -> Result<Receipt, InboxError> {
        self.store_kept(DEFAULT_SOURCE, webhook, client, None).await
    }

    /// Stores a webhook with the [`Source`](cmc_webhook_core::Source) (CMC
    /// account) it came from, as
    /// [`read_sourced_webhook`](cmc_webhook_core::read_sourced_webhook) and
    /// the [`Sourced`] extractor give it: each row records the source's
    /// name ([`Job::source`](crate::Job::source)). An event or mail stored
    /// before (from any source) is counted as repeated and keeps the
    /// source it was first stored with.
    ///
    #[cfg_attr(feature = "sqlite", doc = "```")]
    #[cfg_attr(not(feature = "sqlite"), doc = "```ignore")]
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// # let dir = std::env::temp_dir().join(format!("cmc-doc-sourced-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// use bytes::Bytes;
    /// use cmc_webhook_core::{Source, Sourced, Webhook};
    /// use cmc_webhook_inbox::Inbox;
    ///
    /// let inbox = Inbox::sqlite(dir.join("inbox.sqlite3")).open().await?;
    /// let body = r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[
    ///   {"created":"2023-01-25 14:03:09","status":"2015","to":"x@example.jp","messageId":"<1@x>"}]}}"#;
    /// let sandbox = Source::new("sandbox", jiff::tz::TimeZone::UTC, None);
    /// let webhook = Webhook::parse("application/json", Bytes::from(body))?;
    /// inbox.store_sourced(Sourced(sandbox, webhook), None).await?;
    /// assert_eq!(inbox.counts_of("sandbox").await?.events.pending, 1);
    /// assert_eq!(inbox.counts_of("default").await?.events.pending, 0);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn store_sourced(
        &self,
        webhook: Sourced<Webhook>,
        client: Option<IpAddr>,
    ) -> Result<Receipt, InboxError> {
        let Sourced(source, webhook) = webhook;
        self.store_kept(source.name(), webhook, client, None).await
    }

    /// [`store`](Inbox::store), with the request's body and headers kept
    /// as it arrived (when the inbox keeps raw requests).
    pub(crate) async fn store_kept(
        &self,
        source: &str,
        webhook: Webhook,
        client: Option<IpAddr>,
        raw: Option<(bytes::Bytes, crate::raw::types::Headers)>,
    ) -> Result<Receipt, InboxError> {
        let now = self.now();
        let raw = raw.filter(|_| self.inner.raw.keep);
        let source = source.to_owned();
        let kind = match &webhook {
            Webhook::Events(_) => Kind::Event,
            Webhook::Inbound(_) => Kind::Mail,
        };
        let large = match &webhook {
            Webhook::Inbound(mail) => {
                mail.attachments.iter().map(|a| a.data.len()).sum::<usize>() > BLOCKING_MAIL_SIZE
            }
            _ => false,
        };
        let large = large
            || raw
                .as_ref()
                .is_some_and(|(b, _)| b.len() > BLOCKING_MAIL_SIZE);
        let arrival = if large {
            tokio::task::spawn_blocking(move || {
                crate::raw::arrival::arrival(&source, webhook, client, now, raw)
            })
            .await
            .map_err(|e| InboxError::new(InboxErrorKind::Closed, e.to_string()))??
        } else {
            crate::raw::arrival::arrival(&source, webhook, client, now, raw)?
        };
        let source = arrival.source.clone();
        let closed = || InboxError::new(InboxErrorKind::Closed, "the inbox's writer has stopped");
        let (reply, receipt) = oneshot::channel();
        self.inner
            .queue
            .send(Pending { arrival, reply })
            .await
            .map_err(|_| closed())?;
        let receipt = receipt.await.map_err(|_| closed())??;
        crate::telemetry::stored(
            kind.as_str(),
            &source,
            receipt.stored as u64,
            receipt.repeated as u64,
        );
        Ok(receipt)
    }

    /// How many events and mails are in each state: read from the
    /// counters the store's triggers keep as rows change (table
    /// `cmc_state_counts`), so the time does not grow with the rows.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// let counts = inbox.counts().await?;
    /// println!("{} events pending, {} dead", counts.events.pending, counts.events.dead);
    /// # Ok(()) }
    /// ```
    pub async fn counts(&self) -> Result<Counts, InboxError> {
        self.inner.store.counts(None).await
    }

    /// How many events and mails of the source (CMC account) named
    /// `source` are in each state (`default` for a layer configured for
    /// one account, and for rows stored before sources existed).
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// let sandbox = inbox.counts_of("sandbox").await?;
    /// println!("sandbox: {} dead events", sandbox.events.dead);
    /// # Ok(()) }
    /// ```
    pub async fn counts_of(&self, source: &str) -> Result<Counts, InboxError> {
        self.inner.store.counts(Some(source)).await
    }

    /// The counts of each source that has rows, by name: what
    /// [`counts_of`](Inbox::counts_of) gives for each, in one read of
    /// the counters.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// for (source, counts) in inbox.counts_by_source().await? {
    ///     println!("{source}: {} pending", counts.events.pending + counts.mails.pending);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn counts_by_source(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Counts>, InboxError> {
        self.inner.store.counts_by_source().await
    }

    /// Rebuilds the counts of rows per state (table `cmc_state_counts`,
    /// which [`counts`](Inbox::counts), the deliveries' counts and the
    /// console read) from a `GROUP BY` of the tables, and returns the
    /// counters that were wrong, with what they said and the rows there
    /// are (empty when every count was right).
    ///
    /// The store's triggers keep the counts exact through every insert,
    /// update and delete, whoever makes them, and through PostgreSQL's
    /// `TRUNCATE`. What they cannot see needs this: triggers disabled
    /// (`ALTER TABLE ... DISABLE TRIGGER`, PostgreSQL's
    /// `session_replication_role = replica`), rows that an application's
    /// own SQLite connections delete by `REPLACE` without
    /// `recursive_triggers`, a table dropped or restored from elsewhere,
    /// writes to `cmc_state_counts` itself.
    ///
    /// It takes about a second per million rows. On SQLite it is one
    /// write transaction (receiving waits, as for any write); readers go
    /// on. On PostgreSQL it locks no table: after an advisory lock that
    /// only recounts take (two recounts take turns), one statement on
    /// one snapshot compares the rows with the counters and appends the
    /// difference to each wrong one; receivers, workers and readers go
    /// on meanwhile, and what they commit is counted by their triggers.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// for fixed in inbox.recount().await? {
    ///     println!("{} {} {}: {} -> {}", fixed.table, fixed.scope, fixed.state, fixed.was, fixed.now);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn recount(&self) -> Result<Vec<crate::ops::Recounted>, InboxError> {
        self.inner.store.recount().await
    }

    /// Up to `limit` dead rows, oldest first, with their last errors.
    pub async fn dead(&self, limit: usize) -> Result<Vec<DeadRow>, InboxError> {
        self.inner.store.dead(limit, None).await
    }

    /// [`dead`](Inbox::dead), of the source named `source` only.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// for row in inbox.dead_of("sandbox", 20).await? {
    ///     println!("{} {} {:?}", row.source, row.summary, row.last_error);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn dead_of(&self, source: &str, limit: usize) -> Result<Vec<DeadRow>, InboxError> {
        self.inner.store.dead(limit, Some(source)).await
    }

    /// Sets the `done` or `dead` rows that `filter` takes back to
    /// `pending` with their attempts reset, and wakes the workers; returns
    /// how many rows it took. A mail routed to [`mailbox`](crate::mailbox)es is routed
    /// again: the mailboxes it reached keep their delivery (replay those
    /// with [`Deliveries::replay`](crate::mailbox::Deliveries::replay)).
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// use cmc_webhook_inbox::Filter;
    ///
    /// let replayed = inbox.replay(&Filter::dead()).await?;
    /// println!("{replayed} rows will be handled again");
    /// # Ok(()) }
    /// ```
    pub async fn replay(&self, filter: &Filter) -> Result<u64, InboxError> {
        self.replay_as(filter, None).await
    }

    /// [`replay`](Inbox::replay), recorded as done by `actor` (a user
    /// name): each row replayed keeps who and when in its
    /// `replayed_by` and `replayed_at` columns, which
    /// [`HistoryEntry::replayed`](crate::HistoryEntry::replayed) and
    /// [`RowSummary::replayed`](crate::browse::RowSummary::replayed) show.
    /// The same slices as a replay: one statement per slice.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// use cmc_webhook_inbox::Filter;
    ///
    /// let replayed = inbox.replay_by(&Filter::dead().error_contains("timeout"), "alice").await?;
    /// println!("alice replayed {replayed} rows");
    /// # Ok(()) }
    /// ```
    pub async fn replay_by(&self, filter: &Filter, actor: &str) -> Result<u64, InboxError> {
        self.replay_as(filter, Some(actor)).await
    }

    async fn replay_as(&self, filter: &Filter, actor: Option<&str>) -> Result<u64, InboxError> {
        let n = self
            .inner
            .store
            .replay(filter, clock::millis(self.now()), actor)
            .await?;
        self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
        Ok(n)
    }

    /// Every event stored for the sent mail `message_id` (as CMC sends it,
    /// with its angle brackets), in the order CMC dated them: what
    /// happened to this mail?
    pub async fn history(&self, message_id: &str) -> Result<History, InboxError> {
        self.history_in(message_id, None).await
    }

    /// [`history`](Inbox::history), of the events of the source named
    /// `source` only (each entry names its
    /// [`source`](crate::HistoryEntry::source)).
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// let history = inbox.history_of("sandbox", "<20230125140309.1234@example.com>").await?;
    /// for entry in history.iter() {
    ///     println!("{} {}", entry.source, entry.event.event_type());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn history_of(&self, source: &str, message_id: &str) -> Result<History, InboxError> {
        self.history_in(message_id, Some(source)).await
    }

    async fn history_in(
        &self,
        message_id: &str,
        source: Option<&str>,
    ) -> Result<History, InboxError> {
        let mut history = self.inner.store.history(message_id, source).await?;
        for entry in &mut history.entries {
            self.inner
                .store
                .load_event_apart(entry.id.id, &mut entry.event)
                .await?;
        }
        Ok(history)
    }

    /// Deletes the rows that have been `done` for longer than `retain`
    /// (mails with their attachments); `dead` rows stay until they are
    /// replayed. See [`DEFAULT_RETENTION`]. The raw requests received
    /// longer ago than their own retention go too
    /// ([`RawRequests::retention`](crate::RawRequests::retention), 7 days by
    /// default; [`prune_raw_requests`](Inbox::prune_raw_requests) takes
    /// another), and the target states unchanged for longer than `retain`
    /// ([`prune_target_states`](Inbox::prune_target_states)).
    pub async fn prune(&self, retain: Duration) -> Result<Pruned, InboxError> {
        let mut pruned = self.inner.store.prune(self.before(retain)).await?;
        pruned.raw_requests = self.prune_raw_requests(self.inner.raw.retention).await?;
        pruned.target_states = self.prune_target_states(retain).await?;
        // The events counted per hour (`Inbox::hours`) of the hours that
        // ended before the retention's bound.
        self.inner
            .store
            .prune_hours(
                self.before(retain)
                    .div_euclid(crate::browse::types::HOUR_MS),
            )
            .await?;
        Ok(pruned)
    }

    /// Deletes the raw requests received longer than `retain` ago: how
    /// many. The rows that point to them read as before.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// use std::time::Duration;
    ///
    /// let pruned = inbox.prune_raw_requests(Duration::from_secs(24 * 3600)).await?;
    /// println!("{pruned} raw requests deleted");
    /// # Ok(()) }
    /// ```
    pub async fn prune_raw_requests(&self, retain: Duration) -> Result<u64, InboxError> {
        self.inner.store.prune_raw(self.before(retain)).await
    }

    pub(crate) fn before(&self, retain: Duration) -> i64 {
        self.now()
            .as_millisecond()
            .saturating_sub(i64::try_from(retain.as_millis()).unwrap_or(i64::MAX))
    }

    /// Closes the store's connections: later calls fail. Clones of the
    /// inbox share the store, so close only the last one in use.
    pub async fn close(&self) {
        self.inner.store.close().await;
    }

    /// Wakes the workers of this inbox, as a stored row does: after
    /// changing rows by hand, or moving a [`ManualClock`](crate::ManualClock).
    pub fn wake(&self) {
        self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The time as the inbox reckons it, which every time it writes or
    /// compares follows: on PostgreSQL the database server's (the offset
    /// of this process's clock to the server's is measured at open and
    /// every minute), so that processes on hosts whose clocks differ
    /// agree; otherwise this host's, or the clock given to the builder.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) {
    /// let skew = inbox.now().duration_since(jiff::Timestamp::now());
    /// println!("the store's clock is {skew:?} ahead of this host's");
    /// # }
    /// ```
    pub fn now(&self) -> jiff::Timestamp {
        self.inner.clock.now()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.wake.subscribe()
    }
}
