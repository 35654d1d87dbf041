//! The worker's configuration: [`Worker`]'s defaults, its setters, and
//! [`Worker::spawn`].

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::super::Inbox;
use super::super::backoff::Backoff;
use super::super::job::Job;
use super::super::mailbox::Mailboxes;
use super::fold::fold_counts;
#[cfg(feature = "metrics")]
use super::gauges::gauges;
use super::hours::keep_hours;
use super::retention::retention;
use super::{DEFAULT_HANDLER_TIMEOUT, DEFAULT_LEASE, NoEvents, Worker, WorkerHandle};

impl<H> fmt::Debug for Worker<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("inbox", &self.inbox)
            .field("concurrency", &self.concurrency)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("lease", &self.lease)
            .field("handler_timeout", &self.handler_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("mailboxes", &self.mailboxes)
            .field("events", &self.events)
            .field("mails", &self.mails)
            .finish_non_exhaustive()
    }
}

impl<H, F, E> Worker<H>
where
    H: Fn(Job) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    pub(crate) fn new(inbox: Inbox, handler: H) -> Worker<H> {
        Worker {
            inbox,
            handler: Arc::new(handler),
            concurrency: 16,
            max_attempts: 12,
            backoff: Backoff::default(),
            lease: DEFAULT_LEASE,
            handler_timeout: DEFAULT_HANDLER_TIMEOUT,
            poll_interval: Duration::from_secs(1),
            gauges_every: Duration::from_secs(15),
            suppressions: Some(crate::suppression::SuppressionPolicy::default()),
            mailboxes: None,
            events: true,
            mails: true,
        }
    }

    /// Hands only events to the handler, and leaves the inbox's mails to
    /// the workers with [`mailboxes`](Worker::mailboxes) (a
    /// [`mailbox_worker`](Inbox::mailbox_worker) beside this one). Without
    /// it, a worker takes mails too, for its own handler: next to a mailbox
    /// worker, it would take mails the mailboxes never see.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox, mailboxes: cmc_webhook_inbox::mailbox::Mailboxes) {
    /// use cmc_webhook_inbox::Job;
    ///
    /// let events = inbox
    ///     .worker(|job: Job| async move { println!("{}", job.key); Ok::<(), String>(()) })
    ///     .events_only()
    ///     .spawn();
    /// let mails = inbox.mailbox_worker(mailboxes).spawn();
    /// # let _ = (events, mails);
    /// # }
    /// ```
    pub fn events_only(mut self) -> Worker<H> {
        self.mails = false;
        self
    }

    /// A worker that takes no events: only the mailboxes' mails.
    pub(crate) fn without_events(mut self) -> Worker<H> {
        self.events = false;
        self
    }

    /// Routes the inbox's mails to `mailboxes` instead of this worker's
    /// handler, and runs each mailbox's handler with its own concurrency
    /// and retry policy; see [`mailbox`](crate::mailbox). The handler still
    /// takes the events. The worker also deletes, every
    /// [`prune_every`](Mailboxes::prune_every), the deliveries past their
    /// mailbox's retention, and warns of deliveries waiting for a mailbox
    /// it does not declare.
    ///
    /// Give every worker of a store the same mailboxes: a worker without
    /// them hands mails to its own handler, unrouted.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), Box<dyn std::error::Error>> {
    /// use cmc_webhook_inbox::mailbox::{Mailbox, Mailboxes, MailJob};
    /// use cmc_webhook_inbox::{Item, Job};
    ///
    /// let mailboxes = Mailboxes::new()
    ///     .mailbox(Mailbox::new("support", |job: MailJob| async move {
    ///         println!("{}", job.mail.subject);
    ///         Ok::<(), String>(())
    ///     }))?
    ///     .fallback("support")?;
    /// let worker = inbox
    ///     .worker(|job: Job| async move {
    ///         if let Item::Event(event) = &job.item {
    ///             println!("{}", event.event_type());
    ///         }
    ///         Ok::<(), String>(())
    ///     })
    ///     .mailboxes(mailboxes)
    ///     .spawn();
    /// # let _ = worker;
    /// # Ok(()) }
    /// ```
    pub fn mailboxes(mut self, mailboxes: Mailboxes) -> Worker<H> {
        self.mailboxes = Some(Arc::new(mailboxes));
        self
    }

    /// How many handlers run at once (16 by default).
    pub fn concurrency(mut self, n: usize) -> Worker<H> {
        self.concurrency = n.max(1);
        self
    }

    /// Runs of the handler per row before it is dead (12 by default).
    pub fn max_attempts(mut self, n: u32) -> Worker<H> {
        self.max_attempts = n.max(1);
        self
    }

    /// The wait before each retry.
    pub fn backoff(mut self, backoff: Backoff) -> Worker<H> {
        self.backoff = backoff;
        self
    }

    /// How long a claimed row stays with this worker unless the worker
    /// renews it (30 s by default, at least 1 s). The worker renews the
    /// leases of its running handlers every third of this, so a handler
    /// may run longer; the lease is how soon the rows of a worker that
    /// died, was killed and started again, or lost its store are claimed
    /// by another (or by itself, once started again). A longer lease
    /// rides out longer outages of the store without a second run of the
    /// same row; a shorter one hands a dead worker's rows over sooner.
    pub fn lease(mut self, lease: Duration) -> Worker<H> {
        self.lease = lease.max(Duration::from_secs(1));
        self
    }

    /// The longest one run of a handler may take (5 minutes by default,
    /// at least 1 ms): past it the run is cancelled and counts as a failed
    /// attempt, retried after the backoff, so that a handler hung on a
    /// call without a timeout of its own does not hold its slot (and its
    /// row) for good. Mailbox handlers and the unrouted hook have the same
    /// limit.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) {
    /// use std::time::Duration;
    /// let worker = inbox
    ///     .worker(|_job| async { Ok::<(), std::io::Error>(()) })
    ///     .handler_timeout(Duration::from_secs(30))
    ///     .spawn();
    /// # worker.abort();
    /// # }
    /// ```
    pub fn handler_timeout(mut self, limit: Duration) -> Worker<H> {
        self.handler_timeout = limit.max(Duration::from_millis(1));
        self
    }

    /// How often the worker looks for due rows when nothing woke it (1 s
    /// by default): for retries coming due and rows other processes stored.
    pub fn poll_interval(mut self, every: Duration) -> Worker<H> {
        self.poll_interval = every.max(Duration::from_millis(1));
        self
    }

    /// How often the worker reads the inbox's row counts and the age of
    /// its oldest pending row into the `cmc_webhook_inbox_rows` and
    /// `cmc_webhook_inbox_oldest_pending_seconds` gauges (15 s by default;
    /// only with the `metrics` feature). Each reading costs one count of
    /// each table by state.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) {
    /// use std::time::Duration;
    ///
    /// let worker = inbox
    ///     .worker(|_job| async { Ok::<(), String>(()) })
    ///     .gauges_every(Duration::from_secs(60))
    ///     .spawn();
    /// # let _ = worker;
    /// # }
    /// ```
    pub fn gauges_every(mut self, every: Duration) -> Worker<H> {
        self.gauges_every = every.max(Duration::from_millis(10));
        self
    }

    /// Keeps the inbox's [suppression list](crate::suppression) from the
    /// bounces, succeeded deliveries and `blocks` records this worker
    /// marks done, under `policy` rather than the default one, in the same
    /// transaction: each event counts once, however often CMC sends it or
    /// the handler is retried. A worker keeps the list with
    /// [`SuppressionPolicy::default()`](crate::suppression::SuppressionPolicy)
    /// unless told [`without_suppressions`](Self::without_suppressions).
    pub fn suppressions(mut self, policy: crate::suppression::SuppressionPolicy) -> Worker<H> {
        self.suppressions = Some(policy);
        self
    }

    /// Marks events done without keeping the suppression list: for an
    /// application that keeps its own. The store records it, and
    /// [`Suppressions::keeping`](crate::suppression::Suppressions::keeping)
    /// says since when; a check on an inbox whose list no worker ever kept
    /// fails with [`InboxErrorKind::NotKept`](crate::InboxErrorKind::NotKept)
    /// rather than answer "not suppressed" for an address that bounced.
    ///
    /// ```
    /// # async fn doc(inbox: cmc_webhook_inbox::Inbox) {
    /// let worker = inbox
    ///     .worker(|_job| async { Ok::<(), String>(()) })
    ///     .without_suppressions()
    ///     .spawn();
    /// # let _ = worker;
    /// # }
    /// ```
    pub fn without_suppressions(mut self) -> Worker<H> {
        self.suppressions = None;
        self
    }

    /// Runs the worker on the current tokio runtime.
    pub fn spawn(self) -> WorkerHandle {
        if self.events && self.suppressions.is_some() {
            // Known at once in this process; the worker records it in the
            // store for the others.
            self.inbox
                .inner
                .suppressions_kept
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let (stop, stopping) = watch::channel(None);
        #[cfg(feature = "metrics")]
        tokio::spawn(gauges(
            self.inbox.clone(),
            self.gauges_every,
            stopping.clone(),
        ));
        #[cfg(not(feature = "metrics"))]
        let _ = self.gauges_every;
        if self.inbox.inner.store.is_postgres() {
            tokio::spawn(fold_counts(self.inbox.clone(), stopping.clone()));
        }
        tokio::spawn(keep_hours(self.inbox.clone(), stopping.clone()));
        let retention = self.mailboxes.as_ref().map(|mailboxes| {
            tokio::spawn(retention(
                self.inbox.clone(),
                mailboxes.clone(),
                stopping.clone(),
            ))
        });
        WorkerHandle {
            stop,
            task: tokio::spawn(self.run(stopping)),
            retention,
        }
    }
}

impl Inbox {
    /// A worker that runs `handler` on each stored event and mail; see
    /// [`Worker`].
    pub fn worker<H, F, E>(&self, handler: H) -> Worker<H>
    where
        H: Fn(Job) -> F + Send + Sync + 'static,
        F: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        Worker::new(self.clone(), handler)
    }

    /// A worker that routes the inbox's mails to `mailboxes` and runs
    /// their handlers, and takes no events: leave those to a worker made
    /// [`events_only`](Worker::events_only), or use [`Worker::mailboxes`]
    /// to have one worker do both. See [`mailbox`](crate::mailbox). Each mailbox has its
    /// own concurrency, attempts and backoff; the worker's
    /// [`lease`](Worker::lease) and
    /// [`poll_interval`](Worker::poll_interval) apply.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), Box<dyn std::error::Error>> {
    /// use cmc_webhook_inbox::mailbox::{MailJob, Mailbox, Mailboxes};
    ///
    /// let mailboxes = Mailboxes::new()
    ///     .mailbox(Mailbox::new("orders", |job: MailJob| async move {
    ///         println!("order mail {}", job.mail_id);
    ///         Ok::<(), String>(())
    ///     }))?
    ///     .route("*@orders.example.jp", "orders")?;
    /// let worker = inbox.mailbox_worker(mailboxes).spawn();
    /// # let _ = worker;
    /// # Ok(()) }
    /// ```
    pub fn mailbox_worker(&self, mailboxes: Mailboxes) -> Worker<NoEvents> {
        let none: NoEvents = |_| std::future::ready(Ok(()));
        Worker::new(self.clone(), none)
            .without_events()
            .mailboxes(mailboxes)
    }
}
