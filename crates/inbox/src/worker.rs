//! The worker: claims due rows, runs the handler on each, and records what
//! it returned. The loop is [`Worker::run`]; every state change it makes is
//! one statement of the backend's `round`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};
use tokio::time::{sleep, sleep_until, Instant};

use super::backoff::Backoff;
use super::clock::{millis, millis_after};
use super::error::InboxError;
#[cfg(feature = "metrics")]
use super::job::State;
use super::job::{Item, Job, JobId, Kind};
use super::mailbox::{DeliveryState, Handled, Mailboxes};
use super::store::{
    Claim, DeliveryOutcome, DeliveryRound, DeliverySettle, DeliveryStep, Outcome, Renew, Settle,
    Store,
};
use super::Inbox;

/// Runs a handler on every stored event and mail, in order of arrival,
/// with retries, leases and a graceful shutdown. Made by
/// [`Inbox::worker`].
///
/// - `Ok(())` marks the row `done`.
/// - `Err(e)` schedules another attempt after the [`Backoff`]; after
///   [`max_attempts`](Worker::max_attempts) the row is `dead` and keeps
///   `e` as its `last_error`. A handler that panics counts as an `Err`.
/// - A claimed row is leased to this worker for
///   [`lease`](Worker::lease), renewed while its handler runs; if the
///   worker dies, the row is claimed again once the lease has run out.
/// - The worker wakes as soon as the inbox stores a row, and polls every
///   [`poll_interval`](Worker::poll_interval) for rows stored by other
///   processes and retries coming due.
///
/// Handlers run at least once per row: after a crash, a handler that was
/// running, or had finished but whose `done` was not yet recorded (they
/// are recorded with the next claim, or within 20 ms), runs again. Make
/// handlers idempotent (the job's [`key`](Job::key) is stable). A mail's
/// attachments are read when its handler starts.
///
/// ```
/// use std::time::Duration;
/// use cmc_webhook_inbox::{Inbox, Item, Job};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// # let dir = std::env::temp_dir().join(format!("cmc-doc-worker-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let inbox = Inbox::sqlite(dir.join("inbox.sqlite3")).open().await?;
/// let worker = inbox
///     .worker(|job: Job| async move {
///         if let Item::Event(event) = &job.item {
///             println!("{}: {}", job.key, event.event_type());
///         }
///         Ok::<(), std::io::Error>(())
///     })
///     .concurrency(8)
///     .max_attempts(5)
///     .spawn();
/// // ... serve ...
/// let stopped = worker.shutdown(Duration::from_secs(30)).await?;
/// assert_eq!(stopped.released, 0);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Worker<H> {
    inbox: Inbox,
    handler: Arc<H>,
    concurrency: usize,
    max_attempts: u32,
    backoff: Backoff,
    lease: Duration,
    handler_timeout: Duration,
    poll_interval: Duration,
    gauges_every: Duration,
    suppressions: Option<super::suppression::policy::Policy>,
    mailboxes: Option<Arc<Mailboxes>>,
    /// Whether this worker's handler takes events (not a mailbox worker's).
    events: bool,
    /// Whether it takes mails (not an events-only worker).
    mails: bool,
}

/// The handler of a worker made by
/// [`Inbox::mailbox_worker`](super::Inbox::mailbox_worker): it takes no
/// events, so this is never called.
pub type NoEvents = fn(Job) -> std::future::Ready<Result<(), std::convert::Infallible>>;

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

/// What a stopped worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stopped {
    /// Handler runs that returned `Ok` (mailbox handlers' included).
    pub done: u64,
    /// Mailbox handler runs that bounced their mail.
    pub bounced: u64,
    /// Handler runs that returned `Err` (or panicked).
    pub failed: u64,
    /// Rows whose handler was still running at the shutdown deadline:
    /// cancelled and made due again at once.
    pub released: u64,
    /// Outcomes (of the runs counted above) that could not be recorded
    /// before the deadline because the store was unreachable: their rows
    /// are claimed again when their lease runs out.
    pub unrecorded: u64,
}

/// A worker running on the runtime; stop it with
/// [`shutdown`](WorkerHandle::shutdown).
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<Option<Duration>>,
    task: tokio::task::JoinHandle<Stopped>,
    /// The mailboxes' retention, waited for at shutdown: no prune of
    /// this worker runs once `shutdown` has returned.
    retention: Option<tokio::task::JoinHandle<()>>,
}

impl WorkerHandle {
    /// Stops claiming rows, lets the handlers in flight finish for up to
    /// `deadline`, cancels those still running then (their rows become due
    /// again), and records every outcome.
    pub async fn shutdown(self, deadline: Duration) -> Result<Stopped, InboxError> {
        let _ = self.stop.send(Some(deadline));
        let stopped = self.task.await.map_err(|e| {
            InboxError::new(
                super::InboxErrorKind::Closed,
                format!("the worker did not stop cleanly: {e}"),
            )
        });
        if let Some(retention) = self.retention {
            let _ = retention.await;
        }
        stopped
    }

    /// Stops the worker at once, as a crash would: nothing more is
    /// recorded, and the rows it held are claimed again when their lease
    /// runs out.
    pub fn abort(self) {
        self.task.abort();
        if let Some(retention) = &self.retention {
            retention.abort();
        }
    }
}

/// A claim's lease unless [`Worker::lease`] says otherwise: short, and
/// renewed every third of it, so that the rows of a worker that died (or
/// was killed and started again) are taken back within 30 s.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The longest a handler's run may take unless
/// [`Worker::handler_timeout`] says otherwise.
pub(crate) const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(300);

/// The longest an outcome waits to be recorded with others.
const SETTLE_WAIT: Duration = Duration::from_millis(20);

/// The longest `last_error` stored, in bytes.
const MAX_ERROR: usize = 4096;

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
            suppressions: None,
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
    /// and retry policy; see [`mailbox`](super::mailbox). The handler still
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

    /// Keeps the inbox's [suppression list](super::suppression) from the
    /// bounces, succeeded deliveries and `blocks` records this worker
    /// marks done, under `policy`, in the same transaction: each event
    /// counts once, however often CMC sends it or the handler is retried.
    pub fn suppressions(mut self, policy: super::suppression::policy::Policy) -> Worker<H> {
        self.suppressions = Some(policy);
        self
    }

    /// Runs the worker on the current tokio runtime.
    pub fn spawn(self) -> WorkerHandle {
        let (stop, stopping) = watch::channel(None);
        #[cfg(feature = "metrics")]
        tokio::spawn(gauges(
            self.inbox.clone(),
            self.gauges_every,
            stopping.clone(),
        ));
        #[cfg(not(feature = "metrics"))]
        let _ = self.gauges_every;
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

    /// The worker's loop, until `stop` holds a deadline and the handlers in
    /// flight have finished (or the deadline has passed).
    async fn run(self, mut stop: watch::Receiver<Option<Duration>>) -> Stopped {
        let me = worker_name();
        let mut wake = self.inbox.subscribe();
        let mut lanes = Lanes::new(self.mailboxes.as_deref());
        // The mailboxes as the round's statements see them.
        let slots = self
            .mailboxes
            .as_deref()
            .map(Mailboxes::slots)
            .unwrap_or_default();
        let mut stats = Stopped::default();
        let mut deadline: Option<Instant> = None;
        let mut turn = 0usize;
        let renew_every = self.lease / 3;
        let mut renewed = Instant::now();
        let mut swept: Option<Instant> = None;
        // Which kinds may have due rows (event, mail); with mailboxes, the
        // mails' flag says whether mails may wait to be routed.
        let mut due = [true; 2];
        let kinds = [self.events, self.mailboxes.is_none() && self.mails];
        let mut first_finished: Option<Instant> = None;
        loop {
            if deadline.is_none() {
                deadline = stop.borrow().map(|d| Instant::now() + d);
            }
            let free = self.concurrency - lanes.rows;
            let sweep_due = swept.is_none_or(|at| at.elapsed() >= self.poll_interval);
            let wanted = [due[0] && kinds[0], due[1] && kinds[1]];
            let claim = (deadline.is_none()
                && ((lanes.rows == 0 || free >= self.concurrency.div_ceil(4))
                    && wanted.contains(&true)
                    || sweep_due))
                .then(|| {
                    turn += 1;
                    let now = self.inbox.now();
                    if sweep_due {
                        swept = Some(Instant::now());
                    }
                    Claim {
                        sweep: sweep_due,
                        held: lanes.held_rows(),
                        kinds,
                        due: wanted,
                        order: [[Kind::Event, Kind::Mail], [Kind::Mail, Kind::Event]][turn % 2],
                        limit: free,
                        now: millis(now),
                        lease_until: millis_after(now, self.lease),
                        max_attempts: self.max_attempts,
                    }
                });
            // The mailboxes: what each may claim, and whether mails wait
            // to be routed.
            let boxes = self.mailboxes.as_deref();
            let box_claims: Vec<(usize, usize)> = match (boxes, deadline) {
                (Some(m), None) => lanes.claims(m),
                _ => Vec::new(),
            };
            let route = if boxes.is_some() && deadline.is_none() && due[1] {
                ROUTE_BATCH
            } else {
                0
            };
            let renew_due = !lanes.held.is_empty() && renewed.elapsed() >= renew_every;
            let renew = renew_due.then(|| Renew {
                ids: lanes.held_rows(),
                until: millis_after(self.inbox.now(), self.lease),
            });
            let renew_boxes = if renew_due {
                lanes.held_deliveries()
            } else {
                Vec::new()
            };
            // Outcomes wait for the next claim (so that each round records
            // several), unless nothing else runs, the worker is stopping,
            // or the oldest has waited SETTLE_WAIT.
            let unsettled = !lanes.finished.is_empty() || !lanes.delivered.is_empty();
            let settle_now = unsettled
                && (lanes.running.is_empty()
                    || deadline.is_some()
                    || first_finished.is_some_and(|at| at.elapsed() >= SETTLE_WAIT));
            let box_work = box_claims.iter().any(|(_, room)| *room > 0) || route > 0;
            let held_boxes = if boxes.is_some() {
                lanes.held_deliveries()
            } else {
                Vec::new()
            };
            if settle_now || claim.is_some() || renew.is_some() || box_work {
                let now = self.inbox.now();
                let routing = boxes.map(Mailboxes::routing);
                let deliveries = routing.as_ref().map(|router| DeliveryRound {
                    mailboxes: &slots,
                    router,
                    settle: &lanes.delivered,
                    renew: renew.as_ref().map(|r| (renew_boxes.as_slice(), r.until)),
                    route,
                    claims: &box_claims,
                    sweep: claim.as_ref().is_some_and(|c| c.sweep),
                    held: &held_boxes,
                    now: millis(now),
                    lease_until: millis_after(now, self.lease),
                });
                let result = {
                    let round = self.inbox.inner.store.round(
                        &me,
                        &lanes.finished,
                        renew.as_ref(),
                        claim.as_ref(),
                        self.suppressions.as_ref(),
                        deliveries.as_ref(),
                    );
                    // Stopping: a round that waits for an unreachable store
                    // (the pool's connect timeout) gives up at the deadline, a
                    // second past it at least, to record what the deadline
                    // itself released. A stop that comes during a round sets
                    // the deadline at once.
                    let mut round = std::pin::pin!(round);
                    let mut early = None;
                    if deadline.is_none() {
                        tokio::select! {
                            biased;
                            result = &mut round => early = Some(result),
                            Ok(()) = stop.changed() => {
                                deadline = stop.borrow().map(|d| Instant::now() + d);
                            }
                        }
                    }
                    let result = match (early, deadline) {
                        (Some(result), _) => result,
                        (None, Some(at)) => tokio::time::timeout_at(
                            at.max(Instant::now() + Duration::from_secs(1)),
                            &mut round,
                        )
                        .await
                        .unwrap_or_else(|_| {
                            Err(InboxError::new(
                                super::InboxErrorKind::Database,
                                "the store did not answer before the shutdown deadline",
                            ))
                        }),
                        (None, None) => round.await,
                    };
                    result
                };
                match result {
                    Ok((claimed, step)) => {
                        lanes.finished.clear();
                        lanes.delivered.clear();
                        first_finished = None;
                        if let Some(c) = &claim {
                            // A kind that returned fewer rows than it had
                            // room for has no more due now.
                            let mut room = c.limit;
                            for kind in c.order {
                                if !c.due[kind.slot()] {
                                    continue;
                                }
                                let got = claimed.iter().filter(|r| r.id.kind == kind).count();
                                if got < room {
                                    due[kind.slot()] = false;
                                }
                                room = room.saturating_sub(got);
                            }
                        }
                        if renew.is_some() {
                            renewed = Instant::now();
                        }
                        for row in claimed {
                            match row.into_job() {
                                Ok(job) => {
                                    let (id, attempt) = (job.id, job.attempt);
                                    let task = lanes.running.spawn(within(
                                        self.handler_timeout,
                                        call(
                                            self.handler.clone(),
                                            self.inbox.inner.store.clone(),
                                            job,
                                        ),
                                    ));
                                    lanes.hold(task.id(), Target::Row(id), attempt);
                                }
                                Err((id, why)) => {
                                    tracing::error!(job = %id, error = %why, "a stored row is dead: it does not read back");
                                    lanes.finished.push(self.settle_error(id, u32::MAX, why));
                                }
                            }
                        }
                        if let Some(mailboxes) = &self.mailboxes {
                            if route > 0 && !step.more {
                                due[1] = false;
                            }
                            self.started_deliveries(mailboxes, &box_claims, step, &mut lanes);
                        }
                    }
                    Err(e) => {
                        if let Some(at) = deadline.filter(|at| Instant::now() >= *at) {
                            // Shutting down, out of time, and the store is
                            // unreachable: stop; the rows come back when
                            // their leases run out.
                            lanes.running.abort_all();
                            while let Some(result) = lanes.running.join_next_with_id().await {
                                self.finished(result, &mut lanes, &mut stats);
                            }
                            stats.unrecorded =
                                (lanes.finished.len() + lanes.delivered.len()) as u64;
                            lanes.wait_hooks(deadline).await;
                            tracing::error!(error = %e, unrecorded = stats.unrecorded, past = ?at.elapsed(), "the inbox worker stopped at its deadline without recording every outcome: the store is unreachable");
                            return stats;
                        }
                        tracing::error!(error = %e, "the inbox worker could not reach its store; trying again");
                        let pause = Instant::now() + self.poll_interval.min(Duration::from_secs(1));
                        sleep_until(deadline.map_or(pause, |d| d.max(Instant::now()).min(pause)))
                            .await;
                        continue;
                    }
                }
            }
            if deadline.is_some()
                && lanes.running.is_empty()
                && lanes.finished.is_empty()
                && lanes.delivered.is_empty()
            {
                lanes.wait_hooks(deadline).await;
                return stats;
            }
            while lanes.hooks.try_join_next().is_some() {}
            tokio::select! {
                Some(result) = lanes.running.join_next_with_id(), if !lanes.running.is_empty() => {
                    self.finished(result, &mut lanes, &mut stats);
                    while let Some(result) = lanes.running.try_join_next_with_id() {
                        self.finished(result, &mut lanes, &mut stats);
                    }
                    first_finished.get_or_insert_with(Instant::now);
                }
                () = sleep_until(first_finished.map_or_else(Instant::now, |at| at + SETTLE_WAIT)),
                    if first_finished.is_some() && deadline.is_none() => {}
                Ok(()) = wake.changed(), if deadline.is_none() => {
                    due = [true; 2];
                    lanes.all_due();
                }
                () = sleep(self.poll_interval), if deadline.is_none() => {
                    due = [true; 2];
                    lanes.all_due();
                }
                Ok(()) = stop.changed(), if deadline.is_none() => {}
                () = sleep_until(renewed + renew_every), if !lanes.held.is_empty() => {}
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    lanes.running.abort_all();
                    while let Some(result) = lanes.running.join_next_with_id().await {
                        self.finished(result, &mut lanes, &mut stats);
                    }
                }
            }
        }
    }

    /// After a round: counts what it routed, calls the unrouted hook, and
    /// starts the handlers of the deliveries it claimed.
    fn started_deliveries(
        &self,
        mailboxes: &Arc<Mailboxes>,
        claims: &[(usize, usize)],
        step: DeliveryStep,
        lanes: &mut Lanes,
    ) {
        for reached in &step.reached {
            crate::telemetry::routed(reached.map(|i| mailboxes.boxes[i].name.as_str()));
        }
        if step.routed > 0 {
            // New deliveries: every mailbox may have some due.
            lanes.all_due();
        }
        for &(index, room) in claims {
            let got = step.claimed.iter().filter(|d| d.mailbox == index).count();
            if room > 0 && got < room && step.routed == 0 {
                lanes.due[index] = false;
            }
        }
        for (mail_id, recipients) in step.unrouted {
            // A stranger writes the envelope: escaped and cut (it may be 20 MB).
            let shown: Vec<String> = recipients
                .iter()
                .take(5)
                .map(|r| cmc_webhook_core::printable(r, 200))
                .collect();
            tracing::warn!(mail = mail_id, recipients = recipients.len(), first = %shown.join(", "), "an inbound mail was stored unrouted: no route takes it and there is no fallback");
            if let Some(hook) = mailboxes.unrouted.clone() {
                // At most as many hooks at once as handlers: each holds
                // its mail, and strangers' mails arrive at their pace.
                if lanes.hooks.len() >= self.concurrency {
                    tracing::warn!(mail = mail_id, running = lanes.hooks.len(), "the unrouted hook was not called for this mail: as many hooks run as the worker's concurrency (the mail is kept, unrouted)");
                    continue;
                }
                let store = self.inbox.inner.store.clone();
                let limit = self.handler_timeout;
                lanes.hooks.spawn(async move {
                    match super::mailbox::unrouted(&store, mail_id, recipients).await {
                        Ok(mail) => {
                            if tokio::time::timeout(limit, hook(mail)).await.is_err() {
                                tracing::error!(mail = mail_id, limit = ?limit, "the unrouted hook did not finish in time: cancelled");
                            }
                        }
                        Err(e) => {
                            tracing::error!(mail = mail_id, error = %e, "could not read an unrouted mail back for the hook")
                        }
                    }
                });
            }
        }
        for claimed in step.claimed {
            let (index, id, attempts) = (claimed.mailbox, claimed.id, claimed.attempts);
            let attempt = u32::try_from(attempts).unwrap_or(u32::MAX);
            match super::mailbox::into_job(claimed, mailboxes, &self.inbox.inner.store) {
                Ok(job) => {
                    let handler = mailboxes.boxes[index].handler.clone();
                    let store = self.inbox.inner.store.clone();
                    let run = async move {
                        let mut job = job;
                        store
                            .load_mail_apart(job.mail_id, &mut job.mail)
                            .await
                            .map_err(|e| e.to_string())?;
                        handler(job).await
                    };
                    let task = lanes.running.spawn(within(self.handler_timeout, run));
                    lanes.hold(task.id(), Target::Delivery { mailbox: index, id }, attempt);
                }
                Err(why) => {
                    tracing::error!(delivery = id, error = %why, "a delivery is dead: it does not read back");
                    crate::telemetry::mailbox_handled(&mailboxes.boxes[index].name, "dead");
                    lanes.delivered.push(DeliverySettle {
                        id,
                        at: millis(self.inbox.now()),
                        outcome: DeliveryOutcome::Dead { error: why },
                    });
                }
            }
        }
    }

    /// Records a finished (or cancelled) handler run.
    fn finished(
        &self,
        result: Result<(tokio::task::Id, Result<Handled, String>), JoinError>,
        lanes: &mut Lanes,
        stats: &mut Stopped,
    ) {
        let mut panicked = false;
        let (task, outcome) = match result {
            Ok((task, outcome)) => (task, outcome),
            Err(e) if e.is_cancelled() => {
                if let Some((target, _, started)) = lanes.release(e.id()) {
                    stats.released += 1;
                    let at = millis(self.inbox.now());
                    match target {
                        Target::Row(id) => {
                            crate::telemetry::handled(
                                id.kind.as_str(),
                                "released",
                                started.elapsed(),
                            );
                            lanes.finished.push(Settle {
                                id,
                                at,
                                outcome: Outcome::Released,
                            });
                        }
                        Target::Delivery { mailbox, id } => {
                            self.count_delivery(mailbox, "released");
                            lanes.delivered.push(DeliverySettle {
                                id,
                                at,
                                outcome: DeliveryOutcome::Released,
                            });
                        }
                    }
                }
                return;
            }
            Err(e) => {
                panicked = true;
                (
                    e.id(),
                    Err(format!("the handler panicked: {}", panic_text(e))),
                )
            }
        };
        let Some((target, attempt, started)) = lanes.release(task) else {
            return;
        };
        match outcome {
            Ok(handled) => {
                stats.done += u64::from(handled == Handled::Delivered);
                stats.bounced += u64::from(handled != Handled::Delivered);
                let at = millis(self.inbox.now());
                match target {
                    Target::Row(id) => {
                        crate::telemetry::handled(id.kind.as_str(), "done", started.elapsed());
                        lanes.finished.push(Settle {
                            id,
                            at,
                            outcome: Outcome::Done,
                        });
                    }
                    Target::Delivery { mailbox, id } => {
                        let outcome = match handled {
                            Handled::Bounced { reason } => {
                                self.count_delivery(mailbox, "bounced");
                                tracing::info!(delivery = id, reason = %reason, "a mailbox's handler bounced its mail");
                                DeliveryOutcome::Bounced { reason }
                            }
                            Handled::Delivered => {
                                self.count_delivery(mailbox, "delivered");
                                DeliveryOutcome::Delivered
                            }
                        };
                        lanes.delivered.push(DeliverySettle { id, at, outcome });
                    }
                }
            }
            Err(error) => {
                stats.failed += 1;
                match target {
                    Target::Row(id) => {
                        let label = if panicked { "panicked" } else { "failed" };
                        crate::telemetry::handled(id.kind.as_str(), label, started.elapsed());
                        lanes.finished.push(self.settle_error(id, attempt, error));
                    }
                    Target::Delivery { mailbox, id } => {
                        let settle = self.delivery_error(mailbox, id, attempt, error, panicked);
                        lanes.delivered.push(settle);
                    }
                }
            }
        }
    }

    fn count_delivery(&self, mailbox: usize, outcome: &'static str) {
        if let Some(m) = &self.mailboxes {
            crate::telemetry::mailbox_handled(&m.boxes[mailbox].name, outcome);
        }
    }

    /// A failed mailbox handler run: retried after its mailbox's backoff,
    /// or dead on its mailbox's last attempt.
    fn delivery_error(
        &self,
        mailbox: usize,
        id: i64,
        attempt: u32,
        error: String,
        panicked: bool,
    ) -> DeliverySettle {
        let error = truncated(error);
        let now = self.inbox.now();
        let Some(m) = self.mailboxes.as_ref().map(|m| &m.boxes[mailbox]) else {
            // Deliveries are only claimed by a worker with mailboxes.
            return DeliverySettle {
                id,
                at: millis(now),
                outcome: DeliveryOutcome::Released,
            };
        };
        let outcome = if attempt >= m.max_attempts {
            crate::telemetry::mailbox_handled(&m.name, "dead");
            tracing::error!(mailbox = %m.name, delivery = id, attempt, error = %error, "a mailbox's handler failed on its last attempt: the delivery is dead");
            DeliveryOutcome::Dead { error }
        } else {
            let label = if panicked { "panicked" } else { "failed" };
            crate::telemetry::mailbox_handled(&m.name, label);
            let wait = m.backoff.delay(attempt);
            tracing::warn!(mailbox = %m.name, delivery = id, attempt, error = %error, retry_in = ?wait, "a mailbox's handler failed; it will be tried again");
            DeliveryOutcome::Failed {
                retry_at: millis_after(now, wait),
                error,
            }
        };
        DeliverySettle {
            id,
            at: millis(now),
            outcome,
        }
    }

    /// A failed run: retried after the backoff, or dead on the last attempt.
    fn settle_error(&self, id: JobId, attempt: u32, error: String) -> Settle {
        let error = truncated(error);
        let now = self.inbox.now();
        crate::telemetry::failed_row(id.kind.as_str(), attempt >= self.max_attempts);
        let outcome = if attempt >= self.max_attempts {
            tracing::error!(job = %id, attempt, error = %error, "the handler failed on its last attempt: the row is dead");
            Outcome::Dead { error }
        } else {
            let wait = self.backoff.delay(attempt);
            tracing::warn!(job = %id, attempt, error = %error, retry_in = ?wait, "the handler failed; it will be tried again");
            Outcome::Retry {
                at: millis_after(now, wait),
                error,
            }
        };
        Settle {
            id,
            at: millis(now),
            outcome,
        }
    }
}

/// `error` cut to at most [`MAX_ERROR`] bytes, on a character boundary.
fn truncated(mut error: String) -> String {
    if error.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
    }
    error
}

/// Mails routed per round at most.
const ROUTE_BATCH: usize = 64;

/// What a running handler works on: a row of the inbox, or a delivery to
/// a mailbox (by index).
#[derive(Debug, Clone, Copy)]
enum Target {
    Row(JobId),
    Delivery { mailbox: usize, id: i64 },
}

/// The worker's handlers in flight and their outcomes not yet recorded.
struct Lanes {
    running: JoinSet<Result<Handled, String>>,
    held: HashMap<tokio::task::Id, (Target, u32, Instant)>,
    /// Handlers of rows running.
    rows: usize,
    /// Handlers of each mailbox running.
    busy: Vec<usize>,
    /// Whether each mailbox may have due deliveries.
    due: Vec<bool>,
    /// Concurrency of each mailbox.
    limits: Vec<usize>,
    finished: Vec<Settle>,
    delivered: Vec<DeliverySettle>,
    /// The unrouted hooks running: given until the shutdown deadline.
    hooks: JoinSet<()>,
}

impl Lanes {
    fn new(mailboxes: Option<&Mailboxes>) -> Lanes {
        let limits: Vec<usize> = mailboxes
            .map(|m| m.boxes.iter().map(|b| b.concurrency).collect())
            .unwrap_or_default();
        Lanes {
            running: JoinSet::new(),
            held: HashMap::new(),
            rows: 0,
            busy: vec![0; limits.len()],
            due: vec![true; limits.len()],
            limits,
            finished: Vec::new(),
            delivered: Vec::new(),
            hooks: JoinSet::new(),
        }
    }

    fn hold(&mut self, task: tokio::task::Id, target: Target, attempt: u32) {
        match target {
            Target::Row(_) => self.rows += 1,
            Target::Delivery { mailbox, .. } => self.busy[mailbox] += 1,
        }
        self.held.insert(task, (target, attempt, Instant::now()));
    }

    fn release(&mut self, task: tokio::task::Id) -> Option<(Target, u32, Instant)> {
        let held = self.held.remove(&task)?;
        match held.0 {
            Target::Row(_) => self.rows -= 1,
            Target::Delivery { mailbox, .. } => self.busy[mailbox] -= 1,
        }
        Some(held)
    }

    /// Lets the unrouted hooks still running finish, until `deadline` (a
    /// second at least); cancels the rest.
    async fn wait_hooks(&mut self, deadline: Option<Instant>) {
        let until = deadline
            .unwrap_or_else(Instant::now)
            .max(Instant::now() + Duration::from_secs(1));
        let hooks = &mut self.hooks;
        let all = async { while hooks.join_next().await.is_some() {} };
        if tokio::time::timeout_at(until, all).await.is_err() {
            tracing::warn!(
                cancelled = self.hooks.len(),
                "unrouted hooks still running at the shutdown deadline were cancelled"
            );
            self.hooks.abort_all();
        }
    }

    fn all_due(&mut self) {
        self.due.iter_mut().for_each(|d| *d = true);
    }

    /// For each mailbox, how many deliveries to claim: its free room, when
    /// it may have due ones and a quarter of its concurrency is free (or
    /// nothing of it runs).
    fn claims(&self, mailboxes: &Mailboxes) -> Vec<(usize, usize)> {
        (0..mailboxes.boxes.len())
            .map(|i| {
                let room = self.limits[i] - self.busy[i];
                let wanted = self.due[i]
                    && room > 0
                    && (self.busy[i] == 0 || room >= self.limits[i].div_ceil(4));
                (i, if wanted { room } else { 0 })
            })
            .collect()
    }

    fn held_rows(&self) -> Vec<JobId> {
        self.held
            .values()
            .filter_map(|(t, _, _)| match t {
                Target::Row(id) => Some(*id),
                Target::Delivery { .. } => None,
            })
            .collect()
    }

    fn held_deliveries(&self) -> Vec<i64> {
        self.held
            .values()
            .filter_map(|(t, _, _)| match t {
                Target::Delivery { id, .. } => Some(*id),
                Target::Row(_) => None,
            })
            .collect()
    }
}

/// Deletes the deliveries past their mailbox's retention, every
/// `prune_every`, until the worker is told to stop.
async fn retention(
    inbox: Inbox,
    mailboxes: Arc<Mailboxes>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let mut tick = tokio::time::interval(mailboxes.prune_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deliveries = inbox.deliveries();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = stop.changed() => if changed.is_err() || stop.borrow().is_some() {
                return;
            },
        }
        // Deliveries waiting for a mailbox that this worker does not
        // declare (renamed, or removed) would wait unseen.
        if let Ok(counts) = deliveries.counts().await {
            for c in counts {
                let Some(name) = c.mailbox.as_deref() else {
                    continue;
                };
                let waiting = c.get(DeliveryState::Pending) + c.get(DeliveryState::Failed);
                if waiting > 0 && !mailboxes.boxes.iter().any(|b| b.name == name) {
                    tracing::warn!(mailbox = %name, waiting, "deliveries wait for a mailbox this worker does not declare: declare it again, or run a worker that does");
                }
            }
        }
        match deliveries
            .prune_unrouted(mailboxes.unrouted_retention)
            .await
        {
            Ok(0) => {}
            Ok(mails) => tracing::info!(mails, "deleted the unrouted mails past their retention"),
            Err(e) => {
                tracing::warn!(error = %e, "could not delete the unrouted mails past their retention")
            }
        }
        for mailbox in &mailboxes.boxes {
            match deliveries.prune(&mailbox.name, mailbox.retention).await {
                Ok(p) if p.deliveries > 0 => {
                    tracing::info!(mailbox = %mailbox.name, deliveries = p.deliveries, mails = p.mails, "deleted the deliveries past the mailbox's retention")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(mailbox = %mailbox.name, error = %e, "could not delete the deliveries past the mailbox's retention")
                }
            }
        }
    }
}

/// One handler run, its error as text. A mail's attachments are read
/// first (so that only the mails being handled are in memory); a failed
/// read is a failed attempt.
async fn call<H, F, E>(handler: Arc<H>, store: Store, mut job: Job) -> Result<Handled, String>
where
    H: Fn(Job) -> F,
    F: Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    if let Item::Event(event) = &mut job.item {
        store
            .load_event_apart(job.id.id, event)
            .await
            .map_err(|e| e.to_string())?;
    }
    if let Item::Mail(mail) = &mut job.item {
        store
            .load_mail_apart(job.id.id, mail)
            .await
            .map_err(|e| e.to_string())?;
        if !mail.attachments.is_empty() {
            let data = store
                .attachments(job.id.id)
                .await
                .map_err(|e| e.to_string())?;
            if data.len() != mail.attachments.len() {
                return Err(format!(
                    "the mail lists {} attachments, cmc_mail_attachments holds {}",
                    mail.attachments.len(),
                    data.len()
                ));
            }
            for (a, data) in mail.attachments.iter_mut().zip(data) {
                a.data = Bytes::from(data);
            }
        }
    }
    match handler(job).await {
        Ok(()) => Ok(Handled::Delivered),
        Err(e) => Err(e.to_string()),
    }
}

/// `run`, cancelled past `limit` as a failed attempt.
async fn within<T>(
    limit: Duration,
    run: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
        Err(format!(
            "the handler did not finish within {limit:?} (the worker's handler_timeout): \
             cancelled, and counted as a failed attempt"
        ))
    })
}

/// Reads the gauges every `every`, until the worker is told to stop.
#[cfg(feature = "metrics")]
async fn gauges(inbox: Inbox, every: Duration, mut stop: watch::Receiver<Option<Duration>>) {
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

fn panic_text(e: JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned()),
        Err(e) => e.to_string(),
    }
}

/// The `locked_by` of this worker: the process and a number, unique on
/// the host.
fn worker_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "pid{}-w{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        jiff::Timestamp::now().as_millisecond()
    )
}
