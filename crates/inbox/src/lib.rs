//! The durable inbox of [cmc-webhook](https://docs.rs/cmc-webhook), on
//! SQLite (feature `sqlite`, on by default) or PostgreSQL (feature
//! `postgres`): every accepted event and mail is
//! stored before the webhook is answered 200, never twice, then handed to
//! your handler with retries.
//!
//! CMC sends each webhook once it is answered 200 and never again, repeats
//! batches, and gives events no ids. So a receiver that crashes after the
//! 200 loses events for good, and one that handles events inline handles
//! some twice. The inbox closes both gaps:
//!
//! 1. **Receiving** ([`Inbox::receive`], a tower service behind the
//!    [`WebhookLayer`]): the webhook is parsed and its rows committed in
//!    one transaction, then answered 200. Concurrent requests share a
//!    commit. An event is keyed by its [`idempotency_key`], a mail by
//!    [its own](cmc_webhook_core::InboundMail::idempotency_key); a key already
//!    stored is counted in the row's `repeats` and not stored again. When
//!    the store fails the answer is 503, and CMC sends the webhook again.
//! 2. **Processing** ([`Inbox::worker`]): a worker claims due rows in
//!    order of arrival, runs your async handler on each ([`Job`]), and
//!    records the outcome: `done`, a retry after a [`Backoff`], or `dead`
//!    after the last attempt. Claims are leases: the rows of a worker that
//!    died are claimed again when the lease runs out.
//! 3. **Operating**: [`counts`](Inbox::counts), the [`dead`](Inbox::dead)
//!    rows, [`replay`](Inbox::replay), a sent mail's
//!    [`history`](Inbox::history), and [`prune`](Inbox::prune) of done rows
//!    after a retention.
//!
//! The tables (`cmc_events`, `cmc_mails`, `cmc_mail_attachments`) are a
//! public contract, documented in the README; migrations only move forward
//! and run when the inbox opens.
//!
//! ```
//! use std::time::Duration;
//! use axum::{routing::post_service, Router};
//! use cmc_webhook_inbox::{Inbox, Item, Job};
//! use cmc_webhook_core::WebhookLayer;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! # let dir = std::env::temp_dir().join(format!("cmc-doc-inbox-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let inbox = Inbox::open(&format!("sqlite:{}", dir.join("cmc-inbox.sqlite3").display())).await?;
//!
//! // Receive: stored before the 200.
//! let gate = WebhookLayer::builder().allow("203.0.113.0/24".parse::<ipnet::IpNet>()?).build()?;
//! let app: Router = Router::new().route("/mails", post_service(inbox.receive()).layer(gate));
//!
//! // Process: at least once, in order of arrival, with retries.
//! let worker = inbox
//!     .worker(|job: Job| async move {
//!         match &job.item {
//!             Item::Event(event) => println!("{} {}", event.event_type(), job.key),
//!             Item::Mail(mail) => println!("mail for {}", mail.envelope_to),
//!             _ => {}
//!         }
//!         Ok::<(), std::convert::Infallible>(())
//!     })
//!     .spawn();
//! # let _ = app;
//! worker.shutdown(Duration::from_secs(10)).await?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`WebhookLayer`]: cmc_webhook_core::WebhookLayer
//! [`idempotency_key`]: cmc_webhook_core::Event::idempotency_key

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a backend the contract, the types and the statements still
// compile (so that a build missing one is checked), but nothing can open
// a store, so most of the storage code has no caller.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports, unused_variables, unreachable_code)
)]

mod backoff;
mod clock;
mod error;
mod job;
pub mod mailbox;
mod ops;
mod options;
mod receive;
mod rows;
mod schema;
mod store;
pub mod suppression;
mod telemetry;
mod worker;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

pub use backoff::Backoff;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{InboxError, InboxErrorKind};
pub use job::{Item, Job, JobId, Kind, State};
pub use ops::{
    Counts, DeadRow, Filter, History, HistoryEntry, Pruned, Receipt, StateCounts, Unreadable,
};
#[cfg(feature = "postgres")]
pub use options::PostgresOptions;
#[cfg(feature = "sqlite")]
pub use options::SqliteOptions;
pub use options::StoreOptions;
pub use receive::{Receive, ResponseFuture};
pub use schema::Migrated;
use schema::Opening;
#[cfg(feature = "sqlite")]
pub use store::sqlite::Synchronous;
#[cfg(feature = "metrics")]
pub use telemetry::describe_metrics;
pub use worker::{NoEvents, Stopped, Worker, WorkerHandle};

use self::rows::Arrival;
use self::store::Store;
#[cfg(feature = "postgres")]
use self::store::postgres;
#[cfg(feature = "sqlite")]
use self::store::sqlite;
use cmc_webhook_core::Webhook;

/// The retention of [`Inbox::prune`] that the receiver example uses, and a
/// good default: 30 days, as ActionMailbox keeps its mails.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Mails whose attachments are larger than this are keyed and encoded on
/// a blocking thread, not on the runtime's.
const BLOCKING_MAIL_SIZE: usize = 256 * 1024;

/// A durable inbox of CMC webhooks: cheap to clone, all clones share the
/// store. See the [module documentation](self).
#[derive(Clone)]
pub struct Inbox {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    queue: mpsc::Sender<receive::Pending>,
    wake: watch::Sender<u64>,
    clock: Arc<dyn Clock>,
    describe: String,
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("store", &self.inner.describe)
            .field("clock", &self.inner.clock)
            .finish()
    }
}

/// Options of an inbox before it opens: the store's, typed by backend
/// (`S`: [`SqliteOptions`], [`PostgresOptions`], or [`StoreOptions`] for
/// either), and those of every backend (clock, migrations, read-only).
/// Made by [`Inbox::sqlite`], `Inbox::postgres` (feature `postgres`),
/// [`Inbox::builder`] (an address of either backend) or
/// [`InboxBuilder::new`]. The options of one backend are methods of its
/// builder only: `Inbox::postgres(url).synchronous(..)` does not compile.
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use std::time::Duration;
/// use cmc_webhook_inbox::{Inbox, InboxBuilder, Synchronous};
///
/// let sqlite = Inbox::sqlite("inbox.sqlite3")
///     .synchronous(Synchronous::Normal)
///     .busy_timeout(Duration::from_secs(2))
///     .read_only(true);
/// // Either backend, as one type.
/// let any: InboxBuilder = sqlite.into();
/// # let _ = any;
/// # }
/// ```
///
/// An option of the other backend is a compile error, not ignored:
///
/// ```compile_fail
/// use cmc_webhook_inbox::{Inbox, Synchronous};
///
/// let _ = Inbox::postgres("postgres://cmc@127.0.0.1/cmc").synchronous(Synchronous::Normal);
/// ```
///
/// ```compile_fail
/// use std::time::Duration;
/// use cmc_webhook_inbox::Inbox;
///
/// let _ = Inbox::sqlite("inbox.sqlite3").connect_timeout(Duration::from_secs(2));
/// ```
#[derive(Debug, Clone)]
pub struct InboxBuilder<S = StoreOptions> {
    store: S,
    /// `None`: the system's clock on SQLite, the database server's on
    /// PostgreSQL.
    clock: Option<Arc<dyn Clock>>,
    migrate_on_open: bool,
    read_only: bool,
}

#[cfg(feature = "sqlite")]
impl InboxBuilder<SqliteOptions> {
    /// How commits are made durable; [`Synchronous::Full`] by default
    /// ([`SqliteOptions::synchronous`]).
    pub fn synchronous(mut self, level: Synchronous) -> Self {
        self.store = self.store.synchronous(level);
        self
    }

    /// How long a statement waits for another connection's lock before it
    /// fails (5 s by default); receiving then answers 503
    /// ([`SqliteOptions::busy_timeout`]).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.store = self.store.busy_timeout(timeout);
        self
    }

    /// Whether a missing file is created (the default) or opening fails
    /// with [`InboxErrorKind::Open`] ([`SqliteOptions::create_if_missing`]).
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.store = self.store.create_if_missing(create);
        self
    }
}

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
impl InboxBuilder<PostgresOptions> {
    /// The most connections of this inbox's pool (10 by default, at least
    /// 2; [`PostgresOptions::pool_size`]).
    pub fn pool_size(mut self, connections: u32) -> Self {
        self.store = self.store.pool_size(connections);
        self
    }

    /// The longest a statement may run before the server cancels it
    /// (`statement_timeout`, 30 s by default); receiving then answers 503
    /// ([`PostgresOptions::statement_timeout`]).
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.store = self.store.statement_timeout(timeout);
        self
    }

    /// How long to wait for a connection (5 s by default); while the
    /// server is down, receiving answers 503 after this
    /// ([`PostgresOptions::connect_timeout`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.store = self.store.connect_timeout(timeout);
        self
    }
}

#[cfg(feature = "sqlite")]
impl From<InboxBuilder<SqliteOptions>> for InboxBuilder {
    fn from(b: InboxBuilder<SqliteOptions>) -> InboxBuilder {
        b.map_store(StoreOptions::from)
    }
}

#[cfg(feature = "postgres")]
impl From<InboxBuilder<PostgresOptions>> for InboxBuilder {
    fn from(b: InboxBuilder<PostgresOptions>) -> InboxBuilder {
        b.map_store(StoreOptions::from)
    }
}

impl<S: Into<StoreOptions>> InboxBuilder<S> {
    /// The builder of the inbox in `store`, with the default options.
    pub fn new(store: S) -> InboxBuilder<S> {
        InboxBuilder {
            store,
            clock: None,
            migrate_on_open: true,
            read_only: false,
        }
    }

    /// The store's options.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn map_store<T>(self, f: impl FnOnce(S) -> T) -> InboxBuilder<T> {
        InboxBuilder {
            store: f(self.store),
            clock: self.clock,
            migrate_on_open: self.migrate_on_open,
            read_only: self.read_only,
        }
    }

    /// The clock every stored time comes from. By default the system's on
    /// SQLite, and on PostgreSQL the database server's (this machine's
    /// clock corrected by the offset measured against the server's at
    /// open and every minute), so that receivers and workers whose own
    /// clocks disagree still decide leases and due times by one clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Whether opening applies the migrations the store has not seen
    /// (the default, for a serving receiver), or only checks that the
    /// store's schema is this version's, failing with
    /// [`InboxErrorKind::Open`] and what to do otherwise. Deploys that
    /// migrate as a step of their own ([`migrate`](InboxBuilder::migrate),
    /// `cmc-receiver migrate`) turn it off, so that a new binary never
    /// changes a production schema by surprise.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// # let dir = std::env::temp_dir().join(format!("cmc-doc-migrate-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// use cmc_webhook_inbox::{Inbox, InboxErrorKind};
    ///
    /// let url = format!("sqlite:{}/inbox.sqlite3", dir.display());
    /// // A store never migrated is refused...
    /// let err = Inbox::builder(&url)?.migrate_on_open(false).open().await.unwrap_err();
    /// assert_eq!(err.kind(), InboxErrorKind::Open);
    /// // ...until the deploy's own step migrates it.
    /// Inbox::builder(&url)?.migrate().await?;
    /// let inbox = Inbox::builder(&url)?.migrate_on_open(false).open().await?;
    /// # inbox.close().await;
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn migrate_on_open(mut self, migrate: bool) -> Self {
        self.migrate_on_open = migrate;
        self
    }

    /// Opens the store for reading only: no migration (the schema must be
    /// this version's), and nothing written, so that a read-only file, a
    /// read-only PostgreSQL role or a replica can be inspected (`counts`,
    /// `dead`, `history`). Writes through it fail.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// What opening does with the schema.
    fn opening(&self) -> Opening {
        match (self.read_only, self.migrate_on_open) {
            (true, _) => Opening::ReadOnly,
            (false, true) => Opening::Migrate,
            (false, false) => Opening::Check,
        }
    }

    /// Applies the migrations the store has not seen (creating the SQLite
    /// file unless [`create_if_missing`](InboxBuilder::create_if_missing)
    /// is off), under the migrator's lock, and opens nothing else: the
    /// step a deploy runs before starting receivers that do not migrate.
    pub async fn migrate(self) -> Result<Migrated, InboxError> {
        match self.store.into() {
            #[cfg(feature = "sqlite")]
            StoreOptions::Sqlite(o) => sqlite::migrate(&o.inner).await,
            #[cfg(feature = "postgres")]
            StoreOptions::Postgres(o) => postgres::migrate(&o.inner).await,
        }
    }

    /// Opens the store (creating the file), applies the migrations it has
    /// not seen, checks that it takes writes, and starts the writer task
    /// on the current tokio runtime. With
    /// [`migrate_on_open(false)`](InboxBuilder::migrate_on_open) it checks
    /// the schema's version instead of migrating (and still proves the
    /// store takes writes); with [`read_only`](InboxBuilder::read_only) it
    /// checks the version and writes nothing.
    pub async fn open(self) -> Result<Inbox, InboxError> {
        let opening = self.opening();
        match self.store.into() {
            #[cfg(feature = "sqlite")]
            StoreOptions::Sqlite(mut o) => {
                o.inner.opening = opening;
                let store = Store::Sqlite(sqlite::Sqlite::open(&o.inner).await?);
                let describe = format!("sqlite:{}", o.inner.path.display());
                let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
                Ok(Inbox::start(store, clock, describe))
            }
            #[cfg(feature = "postgres")]
            StoreOptions::Postgres(mut o) => {
                o.inner.opening = opening;
                let pg = postgres::Postgres::open(&o.inner).await?;
                let describe = pg.describe();
                let clock: Arc<dyn Clock> = match self.clock {
                    Some(clock) => clock,
                    None => {
                        let (server_ms, at, _) = pg.server_time().await?;
                        let server = Arc::new(clock::ServerClock::new(server_ms, at));
                        follow_server_clock(pg.clone(), Arc::downgrade(&server));
                        server
                    }
                };
                let inbox = Inbox::start(Store::Postgres(pg.clone()), clock, describe);
                let inner = Arc::downgrade(&inbox.inner);
                pg.listen(move || match inner.upgrade() {
                    Some(inner) => {
                        inner.wake.send_modify(|n| *n = n.wrapping_add(1));
                        true
                    }
                    None => false,
                });
                Ok(inbox)
            }
        }
    }
}

/// How often the offset to the database server's clock is measured again.
#[cfg(feature = "postgres")]
pub(crate) const SERVER_CLOCK_EVERY: Duration = Duration::from_secs(60);

/// Reads the server's clock again every [`SERVER_CLOCK_EVERY`], until
/// the inbox is gone. A reading whose round trip took over a second (a
/// loaded server, a lost packet) is not taken; a failed one keeps the last.
#[cfg(feature = "postgres")]
fn follow_server_clock(pg: postgres::Postgres, clock: std::sync::Weak<clock::ServerClock>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SERVER_CLOCK_EVERY).await;
            if pg.is_closed() {
                return;
            }
            let Some(clock) = clock.upgrade() else { return };
            match pg.server_time().await {
                Ok((server_ms, at, round_trip)) if round_trip <= Duration::from_secs(1) => {
                    let drift = server_ms - clock.millis_at(at);
                    if drift.abs() > 1000 {
                        tracing::warn!(
                            drift_ms = drift,
                            "the database server's clock moved against this process's monotonic clock by more than a second"
                        );
                    }
                    clock.set(server_ms, at);
                }
                Ok((_, _, round_trip)) => tracing::debug!(
                    ?round_trip,
                    "the database's clock was read too slowly to be taken; keeping the last reading"
                ),
                Err(e) => {
                    tracing::debug!(error = %e, "could not read the database server's clock; keeping the last reading")
                }
            }
        }
    });
}

impl Inbox {
    /// Opens the inbox at `url`: `sqlite:PATH` (the file is created if
    /// missing) with the default options.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// # let dir = std::env::temp_dir().join(format!("cmc-doc-open-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// use cmc_webhook_inbox::Inbox;
    ///
    /// let inbox = Inbox::open(&format!("sqlite:{}/cmc-inbox.sqlite3", dir.display())).await?;
    /// assert_eq!(inbox.counts().await?.events.total(), 0);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn open(url: &str) -> Result<Inbox, InboxError> {
        Inbox::builder(url)?.open().await
    }

    /// The options of the inbox at `url` (as for [`open`](Inbox::open)),
    /// to configure before opening it.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// # let dir = std::env::temp_dir().join(format!("cmc-doc-builder-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// use cmc_webhook_inbox::{Inbox, InboxErrorKind};
    ///
    /// let url = format!("sqlite:{}/typo.sqlite3", dir.display());
    /// let missing = Inbox::builder(&url)?.create_if_missing(false).open().await;
    /// assert_eq!(missing.unwrap_err().kind(), InboxErrorKind::Open);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(url: &str) -> Result<InboxBuilder, InboxError> {
        Ok(InboxBuilder::new(url.parse::<StoreOptions>()?))
    }

    /// An inbox in the SQLite file at `path`, to configure before
    /// [`open`](InboxBuilder::open)ing it.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite(path: impl Into<std::path::PathBuf>) -> InboxBuilder<SqliteOptions> {
        InboxBuilder::new(SqliteOptions::new(path))
    }

    /// An inbox in the PostgreSQL database at `url`
    /// (`postgres://USER:PASSWORD@HOST:PORT/DB`), to configure before
    /// opening it. Any number of receivers and workers may share it.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres(url: impl Into<String>) -> InboxBuilder<PostgresOptions> {
        InboxBuilder::new(PostgresOptions::new(url))
    }

    fn start(store: Store, clock: Arc<dyn Clock>, describe: String) -> Inbox {
        let (queue, waiting) = mpsc::channel(1024);
        let (wake, _) = watch::channel(0);
        tokio::spawn(receive::write_loop(store.clone(), waiting, wake.clone()));
        Inbox {
            inner: Arc::new(Inner {
                store,
                queue,
                wake,
                clock,
                describe,
            }),
        }
    }

    /// Where the inbox stores, for logs: `sqlite:PATH`, or a PostgreSQL
    /// address without its password.
    pub fn describe(&self) -> &str {
        &self.inner.describe
    }

    /// The tower service that stores webhooks; see [`Receive`].
    pub fn receive(&self) -> Receive {
        Receive::new(self.clone())
    }

    /// Stores a webhook that arrived from `client`, and returns once it is
    /// committed: the framework-free form of [`receive`](Inbox::receive).
    ///
    /// ```
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
        let now = self.now();
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
        let arrival = if large {
            tokio::task::spawn_blocking(move || Arrival::new(webhook, client, now))
                .await
                .map_err(|e| InboxError::new(InboxErrorKind::Closed, e.to_string()))??
        } else {
            Arrival::new(webhook, client, now)?
        };
        let closed = || InboxError::new(InboxErrorKind::Closed, "the inbox's writer has stopped");
        let (reply, receipt) = oneshot::channel();
        self.inner
            .queue
            .send(receive::Pending { arrival, reply })
            .await
            .map_err(|_| closed())?;
        let receipt = receipt.await.map_err(|_| closed())??;
        crate::telemetry::stored(
            kind.as_str(),
            receipt.stored as u64,
            receipt.repeated as u64,
        );
        Ok(receipt)
    }

    /// A worker that runs `handler` on each stored event and mail; see
    /// [`Worker`].
    pub fn worker<H, F, E>(&self, handler: H) -> Worker<H>
    where
        H: Fn(Job) -> F + Send + Sync + 'static,
        F: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        Worker::new(self.clone(), handler)
    }

    /// A worker that routes the inbox's mails to `mailboxes` and runs
    /// their handlers, and takes no events: leave those to a worker made
    /// [`events_only`](Worker::events_only), or use [`Worker::mailboxes`]
    /// to have one worker do both. See [`mailbox`]. Each mailbox has its
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
    pub fn mailbox_worker(&self, mailboxes: mailbox::Mailboxes) -> Worker<NoEvents> {
        let none: NoEvents = |_| std::future::ready(Ok(()));
        Worker::new(self.clone(), none)
            .without_events()
            .mailboxes(mailboxes)
    }

    /// The deliveries of the inbox's mails to mailboxes: counts, lists,
    /// replay and retention; see [`mailbox`].
    pub fn deliveries(&self) -> mailbox::Deliveries {
        mailbox::Deliveries::new(self.clone())
    }

    /// How many events and mails are in each state.
    pub async fn counts(&self) -> Result<Counts, InboxError> {
        self.inner.store.counts().await
    }

    /// Up to `limit` dead rows, oldest first, with their last errors.
    pub async fn dead(&self, limit: usize) -> Result<Vec<DeadRow>, InboxError> {
        self.inner.store.dead(limit).await
    }

    /// Sets the `done` or `dead` rows that `filter` takes back to
    /// `pending` with their attempts reset, and wakes the workers; returns
    /// how many rows it took. A mail routed to [`mailbox`]es is routed
    /// again: the mailboxes it reached keep their delivery (replay those
    /// with [`Deliveries::replay`](mailbox::Deliveries::replay)).
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
        let n = self
            .inner
            .store
            .replay(filter, clock::millis(self.now()))
            .await?;
        self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
        Ok(n)
    }

    /// Every event stored for the sent mail `message_id` (as CMC sends it,
    /// with its angle brackets), in the order CMC dated them: what
    /// happened to this mail?
    pub async fn history(&self, message_id: &str) -> Result<History, InboxError> {
        let mut history = self.inner.store.history(message_id).await?;
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
    /// replayed. See [`DEFAULT_RETENTION`].
    pub async fn prune(&self, retain: Duration) -> Result<Pruned, InboxError> {
        let before = self
            .now()
            .as_millisecond()
            .saturating_sub(i64::try_from(retain.as_millis()).unwrap_or(i64::MAX));
        self.inner.store.prune(before).await
    }

    /// Closes the store's connections: later calls fail. Clones of the
    /// inbox share the store, so close only the last one in use.
    pub async fn close(&self) {
        self.inner.store.close().await;
    }

    /// Wakes the workers of this inbox, as a stored row does: after
    /// changing rows by hand, or moving a [`ManualClock`].
    pub fn wake(&self) {
        self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub(crate) fn now(&self) -> jiff::Timestamp {
        self.inner.clock.now()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.wake.subscribe()
    }
}
