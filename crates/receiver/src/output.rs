//! Output that cannot stall receiving.
//!
//! The lines of webhooks go to stdout, the logs to stderr. Either may be a
//! pipe that nobody reads (a stalled log shipper, a paused pager): a write
//! then blocks, and a blocked write on one of the runtime's threads stalls
//! the HTTP side with it. So neither is written on a runtime thread:
//!
//! - **stdout** ([`Lines`]): a queue bounded in bytes
//!   ([`QUEUE_BYTES`]), drained by a dedicated thread that does the
//!   blocking writes. A printer waits *asynchronously* until its line is
//!   written, at most [`WAIT`]; past that the line is withdrawn (unless the
//!   writer has started it) and the printer is told [`Stalled`]. Nothing is
//!   lost: the worker's handler fails the attempt, so the row stays in the
//!   inbox and is tried again later (after `--max-attempts` it is dead, and
//!   `replay --dead` hands it over again); without a store the request is
//!   answered 503 with `Retry-After`, so CMC sends it again. A row is done,
//!   or a request answered 200, only once its line has been written.
//! - **stderr** ([`Logs`]): a queue of [`LOG_LINES`] lines, drained by a
//!   dedicated thread. When it is full, a log line is dropped and counted;
//!   the count is written as soon as stderr is read again, and in the
//!   summary on exit. Logging never waits.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Where the lines of webhooks are written, on the writer's own thread
/// (stdout in the receiver, a buffer in tests). It may block.
pub type Sink = Arc<dyn Fn(String) -> bool + Send + Sync>;

/// The most bytes of lines waiting for stdout. A longer line is written
/// alone, once the queue is empty.
pub const QUEUE_BYTES: usize = 8 << 20;

/// How long a printer waits for its line to be written.
pub const WAIT: Duration = Duration::from_secs(10);

/// The most log lines waiting for stderr.
pub const LOG_LINES: usize = 4096;

/// A line could not be written in time: stdout is not being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled;

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout is not being read: the line was not written (tried again later)")
    }
}

impl std::error::Error for Stalled {}

struct Queued {
    line: String,
    /// Told once the line is written; closed when the printer gave up.
    written: oneshot::Sender<()>,
    /// The line's room in the queue, given back once it is written.
    _room: OwnedSemaphorePermit,
}

/// The stdout queue: cheap to clone, all clones share one writer thread,
/// which ends once every clone is dropped.
#[derive(Clone)]
pub struct Lines {
    queue: mpsc::Sender<Queued>,
    room: Arc<Semaphore>,
    budget: usize,
    wait: Duration,
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines")
            .field("budget", &self.budget)
            .field("room", &self.room.available_permits())
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl Lines {
    /// A queue of [`QUEUE_BYTES`] whose lines `sink` writes, on a thread
    /// of its own.
    pub fn new(sink: Sink) -> Lines {
        Lines::with_limits(sink, QUEUE_BYTES, WAIT)
    }

    /// A queue of `budget` bytes whose printers wait at most `wait`.
    pub fn with_limits(sink: Sink, budget: usize, wait: Duration) -> Lines {
        let budget = budget.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let (queue, lines) = mpsc::channel::<Queued>();
        std::thread::Builder::new()
            .name("stdout-writer".into())
            .spawn(move || {
                for queued in lines {
                    // The printer gave up before the line was started: it
                    // is printed by a later attempt instead.
                    if queued.written.is_closed() {
                        continue;
                    }
                    // A line that could not be written is not reported
                    // written: its printer fails (the row is tried again,
                    // the request answered 503).
                    if sink(queued.line) {
                        let _ = queued.written.send(());
                    }
                }
            })
            .expect("a thread for the stdout writer");
        Lines {
            queue,
            room: Arc::new(Semaphore::new(budget)),
            budget,
            wait,
        }
    }

    /// Queues `line` and waits (asynchronously) until it is written, at
    /// most the queue's wait; [`Stalled`] past that, the line withdrawn.
    pub async fn print(&self, line: String) -> Result<(), Stalled> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let size = u32::try_from(line.len().clamp(1, self.budget)).unwrap_or(u32::MAX);
        let room = tokio::time::timeout_at(deadline, self.room.clone().acquire_many_owned(size))
            .await
            .map_err(|_| Stalled)?
            .map_err(|_| Stalled)?;
        let (written, done) = oneshot::channel();
        self.queue
            .send(Queued {
                line,
                written,
                _room: room,
            })
            .map_err(|_| Stalled)?;
        tokio::time::timeout_at(deadline, done)
            .await
            .map_err(|_| Stalled)?
            .map_err(|_| Stalled)
    }
}

/// The stdout of the process as a [`Sink`]. A closed stdout
/// (`receiver | head`, a log shipper that died) fails each line, said
/// once: no row is marked done, no webhook answered 200, whose line was
/// not written.
pub fn stdout() -> Sink {
    let warned = std::sync::atomic::AtomicBool::new(false);
    Arc::new(move |line| {
        let mut out = std::io::stdout().lock();
        let written = writeln!(out, "{line}").and_then(|()| out.flush()).is_ok();
        if !written && !warned.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "stdout is closed: the lines of accepted webhooks cannot be written; their rows wait in the inbox (answered 503 without a store) until the receiver is started again with a stdout that is read"
            );
        }
        written
    })
}

/// The log queue to stderr, as a `tracing_subscriber` writer: logging
/// never blocks; when the queue is full the line is dropped and counted.
#[derive(Clone)]
pub struct Logs {
    queue: mpsc::SyncSender<Vec<u8>>,
    shared: Arc<LogCounts>,
}

impl std::fmt::Debug for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logs").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct LogCounts {
    /// Dropped since the writer last said so.
    unsaid: AtomicU64,
    /// Dropped in all.
    dropped: AtomicU64,
    /// Queued and not yet written.
    waiting: AtomicUsize,
}

impl Logs {
    /// A queue of `lines` log lines written to `out` on a thread of its
    /// own.
    pub fn new(lines: usize, mut out: Box<dyn std::io::Write + Send>) -> Logs {
        let (queue, rx) = mpsc::sync_channel::<Vec<u8>>(lines.max(1));
        let shared = Arc::new(LogCounts::default());
        let counts = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                for line in rx {
                    let unsaid = counts.unsaid.swap(0, Ordering::Relaxed);
                    if unsaid > 0 {
                        let _ = writeln!(
                            out,
                            "... {unsaid} log lines dropped: stderr was not being read"
                        );
                    }
                    let _ = out.write_all(&line);
                    let _ = out.flush();
                    counts.waiting.fetch_sub(1, Ordering::Relaxed);
                }
            })
            .expect("a thread for the log writer");
        Logs { queue, shared }
    }

    /// The queue of [`LOG_LINES`] to the process's stderr.
    pub fn stderr() -> Logs {
        Logs::new(LOG_LINES, Box::new(std::io::stderr()))
    }

    /// Log lines dropped so far because stderr was not read.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits (blocking) until the lines queued are written, at most
    /// `limit`: before the process exits.
    pub fn flush(&self, limit: Duration) {
        let end = std::time::Instant::now() + limit;
        while self.shared.waiting.load(Ordering::Relaxed) > 0 && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// One log line being formatted; queued when dropped.
#[derive(Debug)]
pub struct LogLine<'a> {
    logs: &'a Logs,
    buf: Vec<u8>,
}

impl std::io::Write for LogLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let shared = &self.logs.shared;
        shared.waiting.fetch_add(1, Ordering::Relaxed);
        if self
            .logs
            .queue
            .try_send(std::mem::take(&mut self.buf))
            .is_err()
        {
            shared.waiting.fetch_sub(1, Ordering::Relaxed);
            shared.unsaid.fetch_add(1, Ordering::Relaxed);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = LogLine<'a>;

    fn make_writer(&'a self) -> LogLine<'a> {
        LogLine {
            logs: self,
            buf: Vec::new(),
        }
    }
}
