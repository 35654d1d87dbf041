//! The SQLite backend: one file, WAL mode, the schema of
//! `migrations/sqlite/`.
//!
//! Two pools share the file. The receiving side writes through a single
//! connection at the configured `synchronous` level (`FULL` by default:
//! a 200 survives power loss). The worker and the operations use a second
//! pool at `NORMAL`: their marks survive a crash of the process, and after
//! a power loss a handler may run again, which at-least-once allows.
//!
//! Every state change is one statement below.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, Row, SqliteConnection};

use super::mailbox::sqlite as mailbox_sql;
use super::raw::sqlite as raw_sql;
use super::suppression::sqlite as suppression_sql;
use super::types::{Claim, Outcome, Renew, Settle, lost_outcomes};
use crate::error::{InboxError, InboxErrorKind};
use crate::job::Kind;
use crate::ops::Receipt;
use crate::rows::{Arrival, Assembly, Claimed, chunks, claimed_row};
use crate::schema::{self, Migrated, Opening};
use crate::suppression::policy::SuppressionPolicy as Policy;
use suppression_sql::rekey_once as rekey_suppressions;

/// How a SQLite inbox commits: the `synchronous` pragma of the receiving
/// connection, in WAL mode.
///
/// ```
/// use cmc_webhook_inbox::{Inbox, Synchronous};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// # let dir = std::env::temp_dir().join(format!("cmc-doc-sync-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let inbox = Inbox::sqlite(dir.join("inbox.sqlite3"))
///     .synchronous(Synchronous::Normal)
///     .open()
///     .await?;
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// `NORMAL`: a commit is not synced to disk; the WAL is synced at
    /// checkpoints. A committed webhook survives a crash of the process
    /// (even `kill -9`), but a power loss or an OS crash may take the
    /// last commits: webhooks already answered 200.
    Normal,
    /// `FULL`, the default: each commit syncs the WAL before the 200 is
    /// sent, so a committed webhook survives power loss too. Concurrent
    /// requests share one sync (group commit).
    #[default]
    Full,
    /// `EXTRA`: `FULL`, and the directory is synced when the WAL is
    /// created or removed.
    Extra,
}

impl Synchronous {
    fn pragma(self) -> SqliteSynchronous {
        match self {
            Synchronous::Normal => SqliteSynchronous::Normal,
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Extra => SqliteSynchronous::Extra,
        }
    }
}

/// What a SQLite inbox is opened with.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    pub busy_timeout: Duration,
    /// Whether a missing file is created (or opening fails).
    pub create: bool,
    pub opening: Opening,
    /// The application's pool, when the inbox opens on it rather than on
    /// connections of its own to `path`.
    pub pool: Option<SqlitePool>,
}

impl Options {
    pub fn new(path: PathBuf) -> Options {
        Options {
            path,
            synchronous: Synchronous::default(),
            busy_timeout: Duration::from_secs(5),
            create: true,
            opening: Opening::Migrate,
            pool: None,
        }
    }

    /// The inbox on the application's `pool`.
    pub fn on_pool(pool: SqlitePool) -> Options {
        Options {
            path: pool.connect_options().get_filename().to_owned(),
            pool: Some(pool),
            ..Options::new(PathBuf::new())
        }
    }
}

/// Fails unless the application's `pool` gives the inbox what it needs:
/// a database in a file (not in memory), in WAL mode, with foreign keys
/// enforced (the inbox's `ON DELETE CASCADE`), a busy timeout (another
/// writer of the file waits instead of failing at once), and at least two
/// connections (the worker holds one while a handler reads another).
/// Returns the file.
async fn check_pool(pool: &SqlitePool) -> Result<PathBuf, InboxError> {
    let refused = |why: String| {
        InboxError::new(
            InboxErrorKind::Config,
            format!("the application's SQLite pool cannot hold the inbox: {why}"),
        )
    };
    let max = pool.options().get_max_connections();
    if max < 2 {
        return Err(refused(format!(
            "it has at most {max} connection; the inbox needs at least 2 \
             (SqlitePoolOptions::max_connections)"
        )));
    }
    let failed = |e: sqlx::Error| {
        InboxError::new(
            InboxErrorKind::Open,
            format!("could not read the application's SQLite pool: {e}"),
        )
        .with_source(e)
    };
    let mut conn = pool.acquire().await.map_err(failed)?;
    let file: String =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(&mut *conn)
            .await
            .map_err(failed)?;
    if file.is_empty() {
        return Err(refused(
            "its database is in memory or temporary: an inbox must be a file (an in-memory \
             database loses what was acknowledged)"
                .into(),
        ));
    }
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await
        .map_err(failed)?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(refused(format!(
            "its journal mode is {journal}, not WAL: receiving would block the readers and \
             the readers receiving (SqliteConnectOptions::journal_mode(SqliteJournalMode::Wal))"
        )));
    }
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&mut *conn)
        .await
        .map_err(failed)?;
    if foreign_keys != 1 {
        return Err(refused(
            "its connections do not enforce foreign keys, which the inbox's deletions rely on \
             (SqliteConnectOptions::foreign_keys(true), sqlx's default)"
                .into(),
        ));
    }
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(&mut *conn)
        .await
        .map_err(failed)?;
    if busy <= 0 {
        return Err(refused(
            "its connections have no busy timeout: a write of the application would make \
             receiving fail at once (SqliteConnectOptions::busy_timeout)"
                .into(),
        ));
    }
    Ok(PathBuf::from(file))
}

/// An open SQLite inbox.
#[derive(Debug, Clone)]
pub(crate) struct Sqlite {
    /// The receiving connection (one: SQLite has one writer at a time, and
    /// the group commit feeds it).
    receive: SqlitePool,
    /// The worker's and the operations' connections.
    work: SqlitePool,
    /// Taken around every write transaction of this process: SQLite has
    /// one writer at a time, and a connection that finds the file locked
    /// sleeps in its busy handler (1, 2, 5, 10 ms and more) where a queue
    /// hands over at once. Other processes still meet the busy timeout.
    write: Arc<tokio::sync::Mutex<()>>,
    /// The file, and which file it was when the inbox opened: a 200 is
    /// only given while the path still leads to it.
    path: PathBuf,
    identity: Option<FileIdentity>,
    /// The WAL file, once a commit has written it: it holds what was
    /// committed since the last checkpoint, so it must not change either.
    wal: Arc<std::sync::Mutex<Option<FileIdentity>>>,
    /// The connection that opened the file, kept idle while the inbox is
    /// open: SQLite removes the WAL when the last connection closes, which
    /// the pools alone could do (an idle timeout, a connection dropped
    /// after an error), and a WAL that comes back new would look replaced.
    pin: Arc<tokio::sync::Mutex<Option<SqliteConnection>>>,
    /// Whether the pools are the application's: closing the inbox leaves
    /// them open.
    borrowed: bool,
    /// Why the file can no longer be written, once a check found it
    /// removed or replaced (or its WAL): from then on every writer of this
    /// process stops, the worker's and the operations' too, not only
    /// receiving. A restart opens the file the path leads to now.
    broken: Arc<std::sync::OnceLock<InboxError>>,
}

/// Which file a path leads to: device and inode (Unix only; elsewhere the
/// check is skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity(u64, u64);

impl FileIdentity {
    #[cfg(unix)]
    fn of(path: &Path) -> std::io::Result<Option<FileIdentity>> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Some(FileIdentity(m.dev(), m.ino())))
    }

    #[cfg(not(unix))]
    fn of(path: &Path) -> std::io::Result<Option<FileIdentity>> {
        std::fs::metadata(path).map(|_| None)
    }
}

/// The page cache of the receiving connection, as `PRAGMA cache_size`
/// (negative: KiB).
const RECEIVE_CACHE_KIB: &str = "-32768";

/// The migrations of `migrations/sqlite/`, compiled in.
static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> = schema::migrator!(
    "sqlite",
    "0001_inbox.sql",
    "0002_lease_index.sql",
    "0003_attachment_chunks.sql",
    "0004_suppressions.sql",
    "0005_mail_deliveries.sql",
    "0006_message_id_prefix.sql",
    "0007_address_form.sql",
    "0008_event_texts.sql",
    "0009_raw_requests.sql",
    "0010_sources.sql",
    "0011_suppression_keeping.sql",
    "0012_console.sql",
    "0013_target_states.sql",
    "0014_state_counts.sql",
    "0016_event_hours.sql",
);

/// The write that proves, at open, that the store takes writes.
const OPENED: &str = "INSERT INTO cmc_inbox_opened (id, at, process) VALUES (1, ?1, ?2) \
     ON CONFLICT (id) DO UPDATE SET at = excluded.at, process = excluded.process";

/// The version the store's schema is at ([`schema::effective`]; `None`: none, or no table),
/// in the inbox's table, or else in sqlx's default table where the
/// previous release kept it.
async fn applied_version(conn: &mut SqliteConnection) -> Result<Option<i64>, sqlx::Error> {
    match sqlx::query_scalar::<_, i64>(schema::APPLIED)
        .fetch_all(&mut *conn)
        .await
    {
        Ok(versions) => Ok(schema::effective(versions, &MIGRATOR)),
        Err(e) if schema::is_missing_table(&e) => {
            match sqlx::query_as::<_, (i64, Vec<u8>)>(schema::APPLIED_LEGACY)
                .fetch_all(&mut *conn)
                .await
            {
                Ok(rows) => Ok(schema::newest_own(&rows, &MIGRATOR)),
                Err(e) if schema::is_missing_table(&e) => Ok(None),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Whether sqlx's default migrations table exists.
async fn has_legacy_table(conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut *conn)
    .await
}

/// Moves the inbox's own rows of a history the previous release kept in
/// `_sqlx_migrations` into `cmc_webhook_migrations` (see
/// [`schema::ADOPT`]), in one `BEGIN IMMEDIATE` transaction: a second
/// process opening at once waits for it, then finds nothing to move.
async fn adopt_history(conn: &mut SqliteConnection) -> Result<(), sqlx::migrate::MigrateError> {
    use sqlx::migrate::Migrate;
    if !has_legacy_table(conn).await? {
        return Ok(());
    }
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    if !has_legacy_table(&mut tx).await? {
        return Ok(());
    }
    tx.ensure_migrations_table(schema::MIGRATIONS_TABLE).await?;
    for m in MIGRATOR.iter() {
        for statement in schema::ADOPT {
            sqlx::query(statement)
                .bind(m.version)
                .bind(&*m.checksum)
                .execute(&mut *tx)
                .await?;
        }
    }
    let left: i64 = sqlx::query_scalar(schema::LEGACY_LEFT)
        .fetch_one(&mut *tx)
        .await?;
    if left == 0 {
        sqlx::query(schema::DROP_LEGACY).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Adopts a history kept by the previous release, then applies the
/// migrations the store has not seen.
async fn run_migrations(conn: &mut SqliteConnection) -> Result<(), sqlx::migrate::MigrateError> {
    adopt_history(conn).await?;
    MIGRATOR.run_direct(None, conn, false).await
}

/// Applies the migrations `path` has not seen; opens nothing else.
pub(crate) async fn migrate(options: &Options) -> Result<Migrated, InboxError> {
    if let Some(pool) = &options.pool {
        let store = check_pool(pool).await?.display().to_string();
        let failed = |e: sqlx::migrate::MigrateError| {
            InboxError::new(
                InboxErrorKind::Open,
                format!("could not migrate {store}: {e}"),
            )
            .with_source(e)
        };
        let mut conn = pool.acquire().await.map_err(|e| failed(e.into()))?;
        let before = applied_version(&mut conn)
            .await
            .map_err(|e| failed(e.into()))?;
        run_migrations(&mut conn).await.map_err(failed)?;
        rekey_suppressions(&mut conn, crate::clock::millis(jiff::Timestamp::now()))
            .await
            .map_err(|e| failed(e.into()))?;
        return Ok(schema::migrated(&MIGRATOR, before));
    }
    let connect = SqliteConnectOptions::new()
        .filename(&options.path)
        .create_if_missing(options.create)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(options.synchronous.pragma())
        .busy_timeout(options.busy_timeout)
        .foreign_keys(true)
        .pragma("recursive_triggers", "ON");
    let store = options.path.display().to_string();
    let failed = |e: sqlx::Error| {
        InboxError::new(
            InboxErrorKind::Open,
            format!("could not migrate {store}: {e}"),
        )
        .with_source(e)
    };
    let mut conn = SqliteConnection::connect_with(&connect)
        .await
        .map_err(failed)?;
    let before = applied_version(&mut conn).await.map_err(failed)?;
    run_migrations(&mut conn).await.map_err(|e| {
        InboxError::new(
            InboxErrorKind::Open,
            format!("could not migrate {store}: {e}"),
        )
        .with_source(e)
    })?;
    rekey_suppressions(&mut conn, crate::clock::millis(jiff::Timestamp::now()))
        .await
        .map_err(failed)?;
    let _ = conn.close().await;
    Ok(schema::migrated(&MIGRATOR, before))
}

/// Whether `e` says SQLite cannot make the files a WAL database needs
/// beside it: CANTOPEN (a read-only file system), or
/// READONLY_DIRECTORY (a directory this process may not write).
fn is_cant_open(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("14" | "1544")))
}

impl Sqlite {
    /// The inbox on the application's pool: checked ([`check_pool`]),
    /// migrated or checked as `options.opening` says, and then shared by
    /// receiving and the worker (this process's writes still take turns
    /// under the inbox's write lock; the durability of a commit is the
    /// pool's `synchronous` level).
    async fn open_on_pool(pool: SqlitePool, options: &Options) -> Result<Sqlite, InboxError> {
        let path = check_pool(&pool).await?;
        let store = path.display().to_string();
        let failed = |e: sqlx::Error| {
            InboxError::new(InboxErrorKind::Open, format!("could not open {store}: {e}"))
                .with_source(e)
        };
        let mut conn = pool.acquire().await.map_err(failed)?;
        match options.opening {
            Opening::Migrate => {
                run_migrations(&mut conn).await.map_err(|e| {
                    InboxError::new(
                        InboxErrorKind::Open,
                        format!("could not migrate {store}: {e}"),
                    )
                    .with_source(e)
                })?;
                rekey_suppressions(&mut conn, crate::clock::millis(jiff::Timestamp::now()))
                    .await
                    .map_err(failed)?;
            }
            Opening::Check | Opening::ReadOnly => {
                let applied = applied_version(&mut conn).await.map_err(failed)?;
                schema::check(applied, &MIGRATOR, &store)?;
            }
        }
        if options.opening != Opening::ReadOnly {
            sqlx::query(OPENED)
                .bind(crate::clock::millis(jiff::Timestamp::now()))
                .bind(schema::process_name())
                .execute(&mut *conn)
                .await
                .map_err(|e| {
                    InboxError::new(
                        InboxErrorKind::Open,
                        format!("{store} cannot be written: {e}"),
                    )
                    .with_source(e)
                })?;
        }
        drop(conn);
        // A connection of the inbox's own, kept idle while it is open: the
        // WAL stays even if the application's pool closes every connection.
        let pin = SqliteConnection::connect_with(&pool.connect_options())
            .await
            .map_err(failed)?;
        let identity = FileIdentity::of(&path).map_err(|e| {
            InboxError::new(InboxErrorKind::Open, format!("could not open {store}: {e}"))
                .with_source(e)
        })?;
        Ok(Sqlite {
            receive: pool.clone(),
            work: pool,
            write: Arc::default(),
            path,
            identity,
            wal: Arc::default(),
            pin: Arc::new(tokio::sync::Mutex::new(Some(pin))),
            borrowed: true,
            broken: Arc::default(),
        })
    }

    pub async fn open(options: &Options) -> Result<Sqlite, InboxError> {
        if let Some(pool) = &options.pool {
            return Sqlite::open_on_pool(pool.clone(), options).await;
        }
        let read_only = options.opening == Opening::ReadOnly;
        let immutable = std::sync::atomic::AtomicBool::new(false);
        let connect = |synchronous: SqliteSynchronous, create: bool| {
            // `recursive_triggers`: a row that `REPLACE` (or an upsert's
            // `OR REPLACE`) deletes fires the DELETE triggers that keep
            // `cmc_state_counts`; SQLite's default skips them.
            let o = SqliteConnectOptions::new()
                .filename(&options.path)
                .busy_timeout(options.busy_timeout)
                .foreign_keys(true)
                .pragma("recursive_triggers", "ON");
            if read_only {
                // Nothing is written, not even the journal mode.
                o.read_only(true)
                    .immutable(immutable.load(std::sync::atomic::Ordering::Relaxed))
            } else {
                o.create_if_missing(create)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(synchronous)
            }
        };
        let opening = |e: sqlx::Error| {
            InboxError::new(
                InboxErrorKind::Open,
                format!("could not open {}: {e}", options.path.display()),
            )
            .with_source(e)
        };
        // One connection makes the file (if it may) and migrates it; the
        // pools never make it: a file missing later was removed, and must
        // not come back empty.
        let mut first =
            SqliteConnection::connect_with(&connect(options.synchronous.pragma(), options.create))
                .await
                .map_err(opening)?;
        let store = options.path.display().to_string();
        match options.opening {
            Opening::Migrate => {
                run_migrations(&mut first).await.map_err(|e| {
                    InboxError::new(
                        InboxErrorKind::Open,
                        format!("could not migrate {store}: {e}"),
                    )
                    .with_source(e)
                })?;
                rekey_suppressions(&mut first, crate::clock::millis(jiff::Timestamp::now()))
                    .await
                    .map_err(|e| {
                        InboxError::new(
                            InboxErrorKind::Open,
                            format!("could not migrate {store}: {e}"),
                        )
                        .with_source(e)
                    })?;
            }
            Opening::Check | Opening::ReadOnly => {
                let applied = match applied_version(&mut first).await {
                    // A WAL file on read-only media, closed cleanly (no
                    // `-shm` left, and none can be made): read as
                    // immutable, since no process can be writing it.
                    Err(e) if read_only && is_cant_open(&e) => {
                        // Unless a WAL holds commits: read as immutable,
                        // they would be left out without a word.
                        let mut wal = options.path.clone().into_os_string();
                        wal.push("-wal");
                        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                            return Err(InboxError::new(
                                InboxErrorKind::Open,
                                format!(
                                    "could not open {store} read-only: its WAL holds commits, \
                                     and SQLite cannot read them where it cannot write its \
                                     shared-memory file; copy the files to a writable place \
                                     ({e})"
                                ),
                            ));
                        }
                        immutable.store(true, std::sync::atomic::Ordering::Relaxed);
                        first = SqliteConnection::connect_with(&connect(
                            options.synchronous.pragma(),
                            false,
                        ))
                        .await
                        .map_err(opening)?;
                        applied_version(&mut first).await.map_err(opening)?
                    }
                    result => result.map_err(opening)?,
                };
                schema::check(applied, &MIGRATOR, &store)?;
            }
        }
        if options.opening != Opening::ReadOnly {
            // Refuse to start on a store that cannot be written (a
            // read-only file, directory or file system) rather than
            // answer 503 to every webhook.
            sqlx::query(OPENED)
                .bind(crate::clock::millis(jiff::Timestamp::now()))
                .bind(schema::process_name())
                .execute(&mut first)
                .await
                .map_err(|e| {
                    InboxError::new(
                        InboxErrorKind::Open,
                        format!("{store} cannot be written: {e}"),
                    )
                    .with_source(e)
                })?;
        }
        let receive = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            .idle_timeout(None)
            .max_lifetime(None)
            // A page cache of up to 32 MiB (SQLite's default is 2 MiB): a
            // group commit of many batches dirties more pages than 2 MiB
            // holds, and spilling them mid-transaction cost about 12 % of
            // the receiving throughput.
            .connect_with(
                connect(options.synchronous.pragma(), false)
                    .pragma("cache_size", RECEIVE_CACHE_KIB),
            )
            .await
            .map_err(opening)?;
        let work = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(60))
            // No ping when a connection is taken: sqlx pings it when it
            // comes back (and drops it if that fails), and a connection to
            // a file has nothing to lose while idle. The ping is a round
            // trip to the connection's thread, a third of a check's time.
            .test_before_acquire(false)
            .connect_with(connect(SqliteSynchronous::Normal, false))
            .await
            .map_err(opening)?;
        let identity = FileIdentity::of(&options.path).map_err(|e| {
            InboxError::new(
                InboxErrorKind::Open,
                format!("could not open {}: {e}", options.path.display()),
            )
            .with_source(e)
        })?;
        Ok(Sqlite {
            receive,
            work,
            write: Arc::default(),
            path: options.path.clone(),
            identity,
            wal: Arc::default(),
            pin: Arc::new(tokio::sync::Mutex::new(Some(first))),
            borrowed: false,
            broken: Arc::default(),
        })
    }

    /// Fails when the path no longer leads to the file the inbox opened
    /// (removed, or replaced): what was just committed went into a file
    /// that nobody can open again, so it must not be acknowledged. Once it
    /// has failed, it fails for good (see `broken`).
    fn still_at_path(&self) -> Result<(), InboxError> {
        if let Some(e) = self.broken.get() {
            return Err(e.clone());
        }
        self.check_path().inspect_err(|e| {
            if self.broken.set(e.clone()).is_ok() {
                tracing::error!(error = %e, "the inbox stops writing: every write of this process now fails until it is restarted");
            }
        })
    }

    /// Checked before every write transaction but receiving's (which
    /// checks after its commit, before the 200): whether the file may
    /// still be written.
    fn writable(&self) -> Result<(), InboxError> {
        self.still_at_path()
    }

    fn check_path(&self) -> Result<(), InboxError> {
        let mut wal_path = self.path.clone().into_os_string();
        wal_path.push("-wal");
        let wal_now = FileIdentity::of(Path::new(&wal_path));
        {
            let mut wal = self.wal.lock().unwrap_or_else(|e| e.into_inner());
            match (&*wal, wal_now) {
                (None, Ok(now)) => *wal = now,
                (None, Err(_)) => {}
                (Some(then), Ok(now)) if now == Some(*then) => {}
                (Some(_), _) => {
                    return Err(InboxError::new(
                        InboxErrorKind::Database,
                        format!(
                            "{} was removed or replaced while the inbox had it open: what was \
                             committed since the last checkpoint is gone with it; restart",
                            Path::new(&wal_path).display()
                        ),
                    ));
                }
            }
        }
        match FileIdentity::of(&self.path) {
            Ok(now) if now == self.identity => Ok(()),
            Ok(_) => Err(InboxError::new(
                InboxErrorKind::Database,
                format!(
                    "{} was replaced by another file while the inbox had it open; \
                     restart to use the new file",
                    self.path.display()
                ),
            )),
            Err(e) => Err(InboxError::new(
                InboxErrorKind::Database,
                format!(
                    "{} is gone ({e}): it was removed while the inbox had it open",
                    self.path.display()
                ),
            )
            .with_source(e)),
        }
    }

    /// Stores the arrivals in one transaction: one receipt each, or one
    /// error for all.
    pub async fn insert(&self, arrivals: &[&Arrival]) -> Result<Vec<Receipt>, InboxError> {
        let failed = |e: sqlx::Error| InboxError::database("could not store the webhook", e);
        let _writing = self.write.lock().await;
        if let Some(e) = self.broken.get() {
            return Err(e.clone());
        }
        let mut conn = self.receive.acquire().await.map_err(failed)?;
        let result = async {
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
            let mut receipts = vec![Receipt::default(); arrivals.len()];
            let raw_ids = raw_sql::insert_requests(&mut tx, arrivals)
                .await
                .map_err(failed)?;
            insert_events(&mut tx, arrivals, &raw_ids, &mut receipts)
                .await
                .map_err(failed)?;
            for ((arrival, receipt), raw_id) in arrivals.iter().zip(&mut receipts).zip(&raw_ids) {
                let receipt = &mut *receipt;
                if let Some(m) = &arrival.mail {
                    let row = sqlx::query(
                        "INSERT INTO cmc_mails (idempotency_key, message_id, envelope_from, \
                     envelope_to, subject, filter, server_composition, client, received_at, \
                     attachments, size, mail, run_at, raw_request_id, source) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?9, ?13, ?14) \
                     ON CONFLICT (idempotency_key) DO UPDATE SET repeats = repeats + 1 \
                     RETURNING id, repeats",
                    )
                    .bind(&m.key)
                    .bind(&m.message_id)
                    .bind(&m.envelope_from)
                    .bind(&m.envelope_to)
                    .bind(&m.subject)
                    .bind(&m.filter)
                    .bind(&arrival.server_composition)
                    .bind(&arrival.client)
                    .bind(arrival.received_at)
                    .bind(m.attachments.len() as i64)
                    .bind(m.size)
                    .bind(&m.json)
                    .bind(raw_id)
                    .bind(&arrival.source)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(failed)?;
                    let (id, repeats): (i64, i64) = (
                        row.try_get(0).map_err(failed)?,
                        row.try_get(1).map_err(failed)?,
                    );
                    if let (crate::rows::RawRef::Keep(raw), Some(raw_id)) = (&arrival.raw, raw_id)
                        && raw.refers_to_attachments()
                    {
                        raw_sql::set_mail(&mut tx, *raw_id, id)
                            .await
                            .map_err(failed)?;
                    }
                    if repeats == 0 {
                        for (position, data) in m.stored_apart() {
                            // In chunks: sqlx copies each value it binds,
                            // and SQLite builds each record whole.
                            for (start, chunk) in chunks(data) {
                                sqlx::query(
                                    "INSERT INTO cmc_mail_attachments \
                                     (mail_id, position, start, data) VALUES (?1, ?2, ?3, ?4)",
                                )
                                .bind(id)
                                .bind(position)
                                .bind(start as i64)
                                .bind(chunk)
                                .execute(&mut *tx)
                                .await
                                .map_err(failed)?;
                            }
                        }
                    }
                    count(receipt, repeats);
                }
            }
            tx.commit().await.map_err(failed)?;
            Ok(receipts)
        }
        .await;
        let result = result.and_then(|receipts| {
            self.still_at_path()?;
            Ok(receipts)
        });
        if result.is_err() {
            // A failed transaction can leave sqlx's connection unable to
            // begin another (SQLite rolls back by itself on a full disk,
            // and the ROLLBACK sqlx then sends fails): start afresh.
            conn.close_on_drop();
        }
        result
    }

    /// The attachments of mail `id`, each assembled from its chunks into
    /// one buffer of its exact size (read one chunk at a time). Read by the
    /// job's task when it starts, outside any write transaction: a large
    /// attachment neither holds up receiving nor a worker's round.
    pub async fn attachments(&self, id: i64) -> Result<Vec<Vec<u8>>, InboxError> {
        self.read_attachments(id)
            .await
            .map_err(|e| InboxError::database("could not read the attachments", e))
    }

    async fn read_attachments(&self, id: i64) -> Result<Vec<Vec<u8>>, sqlx::Error> {
        use futures_util::TryStreamExt;
        let mut conn = self.work.acquire().await?;
        let sizes: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT position, SUM(length(data)) FROM cmc_mail_attachments \
             WHERE mail_id = ?1 AND position >= 0 GROUP BY position ORDER BY position",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let mut assembly = Assembly::new(id, &sizes).map_err(sqlx::Error::Protocol)?;
        let mut chunks = sqlx::query(
            "SELECT position, start, data FROM cmc_mail_attachments \
             WHERE mail_id = ?1 AND position >= 0 ORDER BY position, start",
        )
        .bind(id)
        .fetch(&mut *conn);
        while let Some(row) = chunks.try_next().await? {
            let data: &[u8] = row.try_get(2)?;
            assembly
                .push(row.try_get(0)?, row.try_get(1)?, data)
                .map_err(sqlx::Error::Protocol)?;
        }
        Ok(assembly.finish())
    }

    /// One slice of the unrouted mails' retention.
    pub async fn prune_unrouted(&self, before: i64) -> Result<u64, InboxError> {
        let failed = |e| InboxError::database("could not prune the unrouted mails", e);
        let _writing = self.write.lock().await;
        self.writable()?;
        let mut conn = self.work.acquire().await.map_err(failed)?;
        let result = mailbox_sql::prune_unrouted(&mut conn, before).await;
        if result.is_err() {
            conn.close_on_drop();
        }
        result.map_err(failed)
    }

    /// Runs `body` in a write transaction, begun with `BEGIN IMMEDIATE`
    /// under the store's write lock (receiving waits for it, and a worker's
    /// statements never meet SQLITE_BUSY halfway), and commits it. After an
    /// error the connection is closed rather than given back: a failed
    /// transaction can leave sqlx's connection unable to begin another.
    /// `doing` says what failed.
    pub(crate) async fn writing<T>(
        &self,
        doing: &str,
        body: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, InboxError>,
    ) -> Result<T, InboxError> {
        let failed = |e| InboxError::database(doing, e);
        let _writing = self.write.lock().await;
        self.writable()?;
        let mut conn = self.work.acquire().await.map_err(failed)?;
        let result = async {
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
            let out = body(&mut tx).await?;
            tx.commit().await.map_err(failed)?;
            Ok(out)
        }
        .await;
        if result.is_err() {
            conn.close_on_drop();
        }
        result
    }

    /// [`writing`](Self::writing) for a write that must not hold the
    /// store's writer long (the targets' states): the connection's busy
    /// timeout is `limit` meanwhile (another process's lock is waited for
    /// that long at most), then set back.
    pub(crate) async fn writing_within<T>(
        &self,
        doing: &str,
        limit: std::time::Duration,
        body: impl AsyncFnOnce(&mut SqliteConnection) -> Result<T, InboxError>,
    ) -> Result<T, InboxError> {
        let failed = |e| InboxError::database(doing, e);
        let _writing = self.write.lock().await;
        self.writable()?;
        let mut conn = self.work.acquire().await.map_err(failed)?;
        let result = async {
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(&mut *conn)
                .await
                .map_err(failed)?;
            let ms = i64::try_from(limit.as_millis())
                .unwrap_or(i64::MAX)
                .min(busy.max(1));
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA busy_timeout = {ms}")))
                .execute(&mut *conn)
                .await
                .map_err(failed)?;
            let out = async {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(failed)?;
                let out = body(&mut tx).await?;
                tx.commit().await.map_err(failed)?;
                Ok(out)
            }
            .await;
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA busy_timeout = {busy}")))
                .execute(&mut *conn)
                .await
                .map_err(failed)?;
            out
        }
        .await;
        if result.is_err() {
            conn.close_on_drop();
        }
        result
    }

    /// The pool the shared reads (`reads.rs`) use, outside any write
    /// transaction.
    pub(crate) fn reads(&self) -> &sqlx::Pool<sqlx::Sqlite> {
        &self.work
    }

    pub async fn close(&self) {
        if !self.borrowed {
            self.receive.close().await;
            self.work.close().await;
        }
        if let Some(pin) = self.pin.lock().await.take() {
            let _ = pin.close().await;
        }
    }
}

/// The most event rows one `INSERT` carries (12 parameters each).
const EVENTS_PER_STATEMENT: usize = 64;

/// Inserts the events of all `arrivals` with multi-row `INSERT`s, in order
/// of arrival, and counts each in its arrival's receipt.
///
/// A statement carries 64 rows, or a power of two below that for the rest,
/// so that at most seven statement texts are ever prepared and cached, and
/// a 100-event batch takes three statements rather than a hundred (each
/// statement is a round trip to sqlx's SQLite thread, which costs more than
/// the insert itself). `RETURNING` does not promise an order, so the
/// returned counts are matched back by key: the occurrences of one key
/// are inserted in input order, so the lowest `repeats` belongs to the
/// first.
async fn insert_events(
    tx: &mut sqlx::SqliteConnection,
    arrivals: &[&Arrival],
    raw_ids: &[Option<i64>],
    receipts: &mut [Receipt],
) -> Result<(), sqlx::Error> {
    let rows: Vec<(usize, &crate::rows::NewEvent)> = arrivals
        .iter()
        .enumerate()
        .flat_map(|(i, a)| a.events.iter().map(move |e| (i, e)))
        .collect();
    let mut rest = &rows[..];
    while !rest.is_empty() {
        let n = if rest.len() >= EVENTS_PER_STATEMENT {
            EVENTS_PER_STATEMENT
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut sql = String::with_capacity(300 + n * 48);
        sql.push_str(
            "INSERT INTO cmc_events (idempotency_key, event_type, message_id, recipient, \
             status, created, server_composition, client, received_at, event, run_at, \
             raw_request_id, source) VALUES ",
        );
        // Anonymous parameters: sqlx looks each numbered one up by name,
        // a scan of all of them, which made a 64-row statement quadratic.
        for i in 0..n {
            if i > 0 {
                sql.push(',');
            }
            sql.push_str("(?,?,?,?,?,?,?,?,?,?,?,?,?)");
        }
        sql.push_str(
            " ON CONFLICT (idempotency_key) DO UPDATE SET repeats = repeats + 1 \
             RETURNING idempotency_key, repeats, id",
        );
        let mut query = sqlx::query(super::statement::built(sql));
        for (i, e) in chunk {
            let a = arrivals[*i];
            query = query
                .bind(&e.key)
                .bind(&e.event_type)
                .bind(&e.message_id)
                .bind(&e.recipient)
                .bind(&e.status)
                .bind(&e.created)
                .bind(&a.server_composition)
                .bind(&a.client)
                .bind(a.received_at)
                .bind(&e.json)
                .bind(a.received_at)
                .bind(raw_ids[*i])
                .bind(&a.source);
        }
        let returned = query.fetch_all(&mut *tx).await?;
        let mut by_key: std::collections::HashMap<String, Vec<(i64, i64)>> =
            std::collections::HashMap::with_capacity(returned.len());
        for row in &returned {
            by_key
                .entry(row.try_get(0)?)
                .or_default()
                .push((row.try_get(1)?, row.try_get(2)?));
        }
        for counts in by_key.values_mut() {
            counts.sort_unstable_by(|a, b| b.cmp(a));
        }
        for (i, e) in chunk {
            let (repeats, id) = by_key.get_mut(&e.key).and_then(Vec::pop).ok_or_else(|| {
                sqlx::Error::Protocol("an inserted event was not returned".into())
            })?;
            count(&mut receipts[*i], repeats);
            if let Some(subject) = e.subject.as_ref().filter(|_| repeats == 0) {
                for (start, chunk) in chunks(subject) {
                    sqlx::query(
                        "INSERT INTO cmc_event_texts (event_id, field, start, data) \
                         VALUES (?1, 'subject', ?2, ?3)",
                    )
                    .bind(id)
                    .bind(start as i64)
                    .bind(chunk)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
    }
    Ok(())
}

fn count(receipt: &mut Receipt, repeats: i64) {
    if repeats == 0 {
        receipt.stored += 1;
    } else {
        receipt.repeated += 1;
    }
}

/// The path of a `sqlite:` address (`url`, `rest` what follows `sqlite:`):
/// `sqlite:PATH` or `sqlite://PATH`.
///
/// An in-memory database is refused (each connection would have its own,
/// and nothing stored would survive), and so are query parameters: the
/// options are set with [`Inbox::sqlite`](crate::Inbox::sqlite)'s builder,
/// and a `?` would otherwise become part of the file name.
pub(crate) fn path_of<'a>(url: &str, rest: &'a str) -> Result<&'a Path, String> {
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    if rest.is_empty() {
        Err(format!("{url:?} names no file: expected sqlite:PATH"))
    } else if rest == ":memory:" || rest.starts_with("file:") {
        Err(format!(
            "{url:?}: an inbox must be a file (an in-memory database loses what was \
             acknowledged)"
        ))
    } else if rest.contains('?') {
        Err(format!(
            "{url:?}: query parameters are not read; set the options with \
             Inbox::sqlite(path) instead"
        ))
    } else {
        Ok(Path::new(rest))
    }
}

// The round on the job tables, in this database's dialect.
super::jobs::statements! {
    db: sqlx::Sqlite,
    pg: false,
    skip: "",
    ids: |ids: Vec<i64>| serde_json::to_string(&ids).unwrap_or_default(),
    in_ids: |p: &str| format!("IN (SELECT value FROM json_each({p}))"),
    not_in_ids: |p: &str| format!("NOT IN (SELECT value FROM json_each({p}))"),
    text: std::convert::identity::<&str>,
}

use suppression_sql::keep as keep_suppression;

#[cfg(test)]
mod migrations {
    #[tokio::test]
    async fn the_compiled_in_migrations_are_the_directory_s() {
        crate::schema::same_as_directory(&super::MIGRATOR, "sqlite").await;
    }
}

#[cfg(test)]
mod connections {
    /// Every connection the inbox opens (receiving, working) has
    /// `recursive_triggers` on: a row that `REPLACE` deletes fires the
    /// DELETE trigger that keeps its count.
    #[tokio::test]
    async fn the_inbox_s_connections_fire_triggers_on_replace() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::Sqlite::open(&super::Options::new(dir.path().join("inbox.sqlite3")))
            .await
            .unwrap();
        for pool in [&store.receive, &store.work] {
            let on: i64 = sqlx::query_scalar("PRAGMA recursive_triggers")
                .fetch_one(pool)
                .await
                .unwrap();
            assert_eq!(on, 1);
        }
        // A row replaced through them is counted once, in its new state.
        for sql in [
            "INSERT INTO cmc_events (id, idempotency_key, event_type, server_composition, \
             received_at, event, run_at) VALUES (7, 'k', 'deliveries', 'pro', 0, '{}', 0)",
            "REPLACE INTO cmc_events (id, idempotency_key, event_type, server_composition, \
             received_at, event, run_at, state, done_at) \
             VALUES (7, 'k', 'deliveries', 'pro', 0, '{}', 0, 'dead', 1)",
        ] {
            sqlx::query(sql).execute(&store.work).await.unwrap();
        }
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, n FROM cmc_state_counts WHERE tbl = 'events' AND n <> 0 ORDER BY state",
        )
        .fetch_all(&store.work)
        .await
        .unwrap();
        assert_eq!(counts, [("dead".to_owned(), 1)]);
    }
}
