//! Opening an inbox: [`InboxBuilder`], its options (typed per backend),
//! migrations and the read-only mode, and the constructors on [`Inbox`].

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::error::InboxError;
use crate::inbox::Inbox;
use crate::options::StoreOptions;
#[cfg(feature = "postgres")]
use crate::options::{PgPoolStore, PostgresOptions};
#[cfg(feature = "sqlite")]
use crate::options::{SqliteOptions, SqlitePoolStore};
use crate::schema::{Migrated, Opening};
use crate::store::Store;
#[cfg(feature = "postgres")]
use crate::store::postgres;
#[cfg(feature = "sqlite")]
use crate::store::sqlite::{self, Synchronous};

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
    raw: crate::raw::types::RawRequests,
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
    /// with [`InboxErrorKind::Open`](crate::InboxErrorKind::Open) ([`SqliteOptions::create_if_missing`]).
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

    /// The schema of the inbox's tables (`cmc_webhook` by default;
    /// [`PostgresOptions::schema`]).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.store = self.store.schema(schema);
        self
    }
}

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
impl InboxBuilder<PgPoolStore> {
    /// The schema of the inbox's tables (`cmc_webhook` by default;
    /// [`PostgresOptions::schema`]).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.store = self.store.schema(schema);
        self
    }
}

#[cfg(feature = "sqlite")]
impl From<InboxBuilder<SqliteOptions>> for InboxBuilder {
    fn from(b: InboxBuilder<SqliteOptions>) -> InboxBuilder {
        b.map_store(StoreOptions::from)
    }
}

#[cfg(feature = "sqlite")]
impl From<InboxBuilder<SqlitePoolStore>> for InboxBuilder {
    fn from(b: InboxBuilder<SqlitePoolStore>) -> InboxBuilder {
        b.map_store(StoreOptions::from)
    }
}

#[cfg(feature = "postgres")]
impl From<InboxBuilder<PgPoolStore>> for InboxBuilder {
    fn from(b: InboxBuilder<PgPoolStore>) -> InboxBuilder {
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
            raw: crate::raw::types::RawRequests::default(),
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
            raw: self.raw,
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
    /// [`InboxErrorKind::Open`](crate::InboxErrorKind::Open) and what to do otherwise. Deploys that
    /// migrate as a step of their own ([`migrate`](InboxBuilder::migrate),
    /// `cmc-receiver migrate`) turn it off, so that a new binary never
    /// changes a production schema by surprise.
    ///
    #[cfg_attr(feature = "sqlite", doc = "```")]
    #[cfg_attr(not(feature = "sqlite"), doc = "```ignore")]
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

    /// What is kept of each request as it arrived, and for how long
    /// (on by default, for 7 days): see [`RawRequests`](crate::RawRequests).
    pub fn raw_requests(mut self, raw: crate::raw::types::RawRequests) -> Self {
        self.raw = raw;
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
                let clock = self
                    .clock
                    .unwrap_or_else(|| Arc::new(crate::clock::SystemClock));
                Ok(Inbox::start(store, clock, describe, self.raw))
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
                        let server = Arc::new(crate::clock::ServerClock::new(server_ms, at));
                        follow_server_clock(pg.clone(), Arc::downgrade(&server));
                        server
                    }
                };
                let inbox = Inbox::start(Store::Postgres(pg.clone()), clock, describe, self.raw);
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
fn follow_server_clock(pg: postgres::Postgres, clock: std::sync::Weak<crate::clock::ServerClock>) {
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
    #[cfg_attr(feature = "sqlite", doc = "```")]
    #[cfg_attr(not(feature = "sqlite"), doc = "```ignore")]
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
    #[cfg_attr(feature = "sqlite", doc = "```")]
    #[cfg_attr(not(feature = "sqlite"), doc = "```ignore")]
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// # let dir = std::env::temp_dir().join(format!("cmc-doc-builder-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// use cmc_webhook_inbox::{Inbox, InboxBuilder, InboxErrorKind, StoreOptions};
    ///
    /// // The options every backend has, whatever the address:
    /// let url = format!("sqlite:{}/cmc-inbox.sqlite3", dir.display());
    /// let inbox = Inbox::builder(&url)?.migrate_on_open(true).open().await?;
    /// # drop(inbox);
    ///
    /// // A backend's own options, by matching on the address's backend:
    /// let url = format!("sqlite:{}/typo.sqlite3", dir.display());
    /// let builder = match url.parse::<StoreOptions>()? {
    ///     StoreOptions::Sqlite(file) => {
    ///         InboxBuilder::new(StoreOptions::Sqlite(file.create_if_missing(false)))
    ///     }
    ///     other => InboxBuilder::new(other),
    /// };
    /// let missing = builder.open().await;
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

    /// The inbox in the database of the application's own SQLite `pool`,
    /// on its connections, to configure before
    /// [`open`](InboxBuilder::open)ing (or [`migrate`](InboxBuilder::migrate)-ing)
    /// it. The inbox's tables and its migration history
    /// ([`MIGRATIONS_TABLE`](crate::MIGRATIONS_TABLE)) sit beside the
    /// application's, whose own `sqlx::migrate!` is not disturbed.
    /// [`Inbox::close`] leaves the pool open.
    ///
    /// Opening checks that the pool gives what the inbox needs, and fails
    /// with [`InboxErrorKind::Config`](crate::InboxErrorKind::Config)
    /// saying which option to set otherwise: a file (not `:memory:`), WAL
    /// (`journal_mode(SqliteJournalMode::Wal)`: sqlx leaves the journal
    /// mode alone by default), foreign keys on (sqlx's default; the
    /// inbox's deletions cascade), a busy timeout (sqlx's default is 5 s),
    /// and at least two connections. How durable a 200 is follows the
    /// pool's `synchronous` level (`FULL` for a 200 that survives power
    /// loss; sqlx's default in WAL is `FULL`).
    ///
    /// The inbox leaves the pool's `recursive_triggers` as the application
    /// set it (its own connections turn it on; turning it on here would
    /// change what the application's own triggers do). With it off, the
    /// default, a row of the inbox's tables deleted by the application's
    /// `REPLACE` or `INSERT OR REPLACE` fires no DELETE trigger, and the
    /// counts of rows per state keep it: set
    /// `.pragma("recursive_triggers", "ON")` on the pool's options if the
    /// application's SQL replaces such rows, or repair the counts with
    /// [`Inbox::recount`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// # let dir = std::env::temp_dir().join(format!("cmc-doc-pool-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool};
    /// use cmc_webhook_inbox::Inbox;
    ///
    /// // The application's pool, on its own database.
    /// let pool = SqlitePool::connect_with(
    ///     SqliteConnectOptions::new()
    ///         .filename(dir.join("app.sqlite3"))
    ///         .create_if_missing(true)
    ///         .journal_mode(SqliteJournalMode::Wal),
    /// )
    /// .await?;
    /// let inbox = Inbox::sqlite_pool(pool.clone()).open().await?;
    /// assert_eq!(inbox.counts().await?.events.total(), 0);
    /// inbox.close().await;
    /// // The application's pool is still its own, and open.
    /// assert!(!pool.is_closed());
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite_pool(pool: sqlx::SqlitePool) -> InboxBuilder<SqlitePoolStore> {
        InboxBuilder::new(SqlitePoolStore::new(pool))
    }

    /// The inbox in the database of the application's own PostgreSQL
    /// `pool`, on its connections, to configure before opening (or
    /// migrating) it. Its migration history is kept in
    /// [`MIGRATIONS_TABLE`](crate::MIGRATIONS_TABLE), so the
    /// application's own `sqlx::migrate!` and the inbox's run in either
    /// order. The pool's size, timeouts and settings are the
    /// application's; [`Inbox::close`] leaves it open. The inbox's tables
    /// are made and found through the connections' `search_path` (its
    /// first schema, as for any sqlx migration): every connection of the
    /// pool must have the same one.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use cmc_webhook_inbox::Inbox;
    ///
    /// let pool = sqlx::PgPool::connect("postgres://app@127.0.0.1/app").await?;
    /// // The deploy's step...
    /// Inbox::postgres_pool(pool.clone()).migrate().await?;
    /// // ...and the serving processes, which never migrate.
    /// let inbox = Inbox::postgres_pool(pool.clone())
    ///     .migrate_on_open(false)
    ///     .open()
    ///     .await?;
    /// # let _ = inbox;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres_pool(pool: sqlx::PgPool) -> InboxBuilder<PgPoolStore> {
        InboxBuilder::new(PgPoolStore::new(pool))
    }

    /// An inbox in the PostgreSQL database at `url`
    /// (`postgres://USER:PASSWORD@HOST:PORT/DB`), to configure before
    /// opening it. Any number of receivers and workers may share it.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres(url: impl Into<String>) -> InboxBuilder<PostgresOptions> {
        InboxBuilder::new(PostgresOptions::new(url))
    }
}
