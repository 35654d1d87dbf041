//! The worker: claims due rows, runs the handler on each, and records what
//! it returned. The loop is [`Worker::run`]; every state change it makes is
//! one statement of the backend's `round`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::backoff::Backoff;
use super::error::InboxError;
use super::job::Job;
use super::mailbox::Mailboxes;
use crate::inbox::Inbox;

use super::store::{Claim, Outcome, Renew, Settle};

mod builder;
mod deliveries;
mod fold;
#[cfg(feature = "metrics")]
mod gauges;
mod hours;
mod lanes;
mod retention;
mod run;
mod settle;

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
#[cfg_attr(feature = "sqlite", doc = "```")]
#[cfg_attr(not(feature = "sqlite"), doc = "```ignore")]
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
    suppressions: Option<super::suppression::SuppressionPolicy>,
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

/// `error` cut to at most [`MAX_ERROR`] bytes, on a character boundary.
pub(crate) fn truncated(mut error: String) -> String {
    if error.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !error.is_char_boundary(end) {
            end -= 1;
        }
        error.truncate(end);
    }
    error
}
