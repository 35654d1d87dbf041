//! Where an inbox's store is, and the options of its backend, typed per
//! backend (as sqlx's `SqliteConnectOptions` and `PgConnectOptions`): an
//! option of one backend cannot be given to the other. The string form
//! (`sqlite:PATH`, `postgres://...`) reads into a [`StoreOptions`].

use std::str::FromStr;
#[cfg(feature = "postgres")]
use std::time::Duration;

use crate::error::{InboxError, InboxErrorKind};
#[cfg(feature = "postgres")]
use crate::store::postgres;
#[cfg(feature = "sqlite")]
use crate::store::sqlite::{self, Synchronous};

/// An inbox in a SQLite file (feature `sqlite`): its path and how it is
/// opened. Made by [`SqliteOptions::new`], [`Inbox::sqlite`](crate::Inbox::sqlite)
/// (which wraps it in an [`InboxBuilder`](crate::InboxBuilder)), or read
/// from `sqlite:PATH`.
///
/// ```
/// use std::time::Duration;
/// use cmc_webhook_inbox::{Inbox, InboxBuilder, SqliteOptions, Synchronous};
///
/// let store = SqliteOptions::new("inbox.sqlite3")
///     .synchronous(Synchronous::Normal)
///     .busy_timeout(Duration::from_secs(2))
///     .create_if_missing(false);
/// assert_eq!(store.path(), std::path::Path::new("inbox.sqlite3"));
/// let builder = InboxBuilder::new(store).read_only(true);
/// # let _ = builder;
/// ```
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub(crate) inner: sqlite::Options,
}

#[cfg(feature = "sqlite")]
impl SqliteOptions {
    /// The SQLite file at `path`, with the default options.
    pub fn new(path: impl Into<std::path::PathBuf>) -> SqliteOptions {
        SqliteOptions {
            inner: sqlite::Options::new(path.into()),
        }
    }

    /// The file.
    pub fn path(&self) -> &std::path::Path {
        &self.inner.path
    }

    /// How commits are made durable; [`Synchronous::Full`] by default.
    pub fn synchronous(mut self, level: Synchronous) -> SqliteOptions {
        self.inner.synchronous = level;
        self
    }

    /// How long a statement waits for another connection's lock before it
    /// fails (5 s by default); receiving then answers 503.
    pub fn busy_timeout(mut self, timeout: std::time::Duration) -> SqliteOptions {
        self.inner.busy_timeout = timeout;
        self
    }

    /// Whether a missing file is created (the default) or opening fails
    /// with [`InboxErrorKind::Open`]: tools that only read an existing
    /// inbox turn it off, so that a mistyped path is an error rather than
    /// an empty report.
    pub fn create_if_missing(mut self, create: bool) -> SqliteOptions {
        self.inner.create = create;
        self
    }
}

/// An inbox in a PostgreSQL database (feature `postgres`): its address
/// (`postgres://USER:PASSWORD@HOST:PORT/DB`) and its pool. Made by
/// [`PostgresOptions::new`], [`Inbox::postgres`](crate::Inbox::postgres),
/// or read from `postgres://...`. Its `Debug` never shows the password.
///
/// ```
/// use std::time::Duration;
/// use cmc_webhook_inbox::{InboxBuilder, PostgresOptions};
///
/// let store = PostgresOptions::new("postgres://cmc:s3cret@127.0.0.1/cmc")
///     .pool_size(4)
///     .statement_timeout(Duration::from_secs(10))
///     .connect_timeout(Duration::from_secs(2));
/// assert!(!format!("{store:?}").contains("s3cret"));
/// let builder = InboxBuilder::new(store);
/// # let _ = builder;
/// ```
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub(crate) inner: postgres::Options,
}

#[cfg(feature = "postgres")]
impl PostgresOptions {
    /// The PostgreSQL database at `url`, with the default options.
    pub fn new(url: impl Into<String>) -> PostgresOptions {
        PostgresOptions {
            inner: postgres::Options::new(url.into()),
        }
    }

    /// The most connections of this inbox's pool (10 by default, at
    /// least 2).
    pub fn pool_size(mut self, connections: u32) -> PostgresOptions {
        self.inner.pool_size = connections;
        self
    }

    /// The longest a statement may run before the server cancels it
    /// (`statement_timeout`, 30 s by default); receiving then answers 503.
    pub fn statement_timeout(mut self, timeout: Duration) -> PostgresOptions {
        self.inner.statement_timeout = timeout;
        self
    }

    /// How long to wait for a connection (5 s by default); while the
    /// server is down, receiving answers 503 after this.
    pub fn connect_timeout(mut self, timeout: Duration) -> PostgresOptions {
        self.inner.connect_timeout = timeout;
        self
    }

    /// The schema of the inbox's tables and of its migration history
    /// (`cmc_webhook` by default), made by the first migration if
    /// missing. Every statement names its tables with it, whatever the
    /// connections' `search_path`, so that two inboxes in two schemas of
    /// one database are independent. It must be a plain identifier
    /// (lowercase ASCII letters, digits and `_`, not starting with a
    /// digit); another is refused when the inbox opens or migrates, with
    /// [`InboxErrorKind::Config`].
    pub fn schema(mut self, schema: impl Into<String>) -> PostgresOptions {
        self.inner.schema = schema.into();
        self
    }

    /// The schema of the inbox's tables.
    pub fn get_schema(&self) -> &str {
        &self.inner.schema
    }
}

/// An inbox in the database of the application's own
/// [`SqlitePool`](sqlx::SqlitePool) (feature `sqlite`), on the pool's
/// connections: made by [`Inbox::sqlite_pool`](crate::Inbox::sqlite_pool),
/// which says what the pool must give. The pool's settings are the
/// application's, so the file options of [`SqliteOptions`] are not here.
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
#[derive(Debug, Clone)]
pub struct SqlitePoolStore(SqliteOptions);

#[cfg(feature = "sqlite")]
impl SqlitePoolStore {
    /// The inbox on `pool`.
    pub fn new(pool: sqlx::SqlitePool) -> SqlitePoolStore {
        SqlitePoolStore(SqliteOptions {
            inner: sqlite::Options::on_pool(pool),
        })
    }
}

#[cfg(feature = "sqlite")]
impl From<SqlitePoolStore> for StoreOptions {
    fn from(o: SqlitePoolStore) -> StoreOptions {
        StoreOptions::Sqlite(o.0)
    }
}

/// An inbox in the database of the application's own
/// [`PgPool`](sqlx::PgPool) (feature `postgres`), on the pool's
/// connections: made by [`Inbox::postgres_pool`](crate::Inbox::postgres_pool).
/// The pool's size, timeouts and settings are the application's, so the
/// pool options of [`PostgresOptions`] are not here.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
#[derive(Debug, Clone)]
pub struct PgPoolStore(PostgresOptions);

#[cfg(feature = "postgres")]
impl PgPoolStore {
    /// The inbox on `pool`.
    pub fn new(pool: sqlx::PgPool) -> PgPoolStore {
        PgPoolStore(PostgresOptions {
            inner: postgres::Options::on_pool(pool),
        })
    }

    /// The schema of the inbox's tables (`cmc_webhook` by default;
    /// [`PostgresOptions::schema`]).
    pub fn schema(self, schema: impl Into<String>) -> PgPoolStore {
        PgPoolStore(self.0.schema(schema))
    }
}

#[cfg(feature = "postgres")]
impl From<PgPoolStore> for StoreOptions {
    fn from(o: PgPoolStore) -> StoreOptions {
        StoreOptions::Postgres(o.0)
    }
}

/// The store of an inbox, on whichever backend: what an address in the
/// string form reads into (`"sqlite:PATH".parse()`), and what
/// [`Inbox::builder`](crate::Inbox::builder) opens. A backend whose feature
/// is off has no variant here, and its addresses are refused with an
/// error that names the feature.
///
/// ```
/// # #[cfg(feature = "sqlite")] {
/// use cmc_webhook_inbox::{InboxBuilder, StoreOptions};
///
/// // The options of one backend, where the address may name either.
/// let store = match "sqlite:inbox.sqlite3".parse::<StoreOptions>()? {
///     StoreOptions::Sqlite(o) => StoreOptions::Sqlite(o.create_if_missing(false)),
///     other => other,
/// };
/// let builder = InboxBuilder::new(store);
/// # let _ = builder;
/// # }
/// # Ok::<(), cmc_webhook_inbox::InboxError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StoreOptions {
    /// A SQLite file.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    Sqlite(SqliteOptions),
    /// A PostgreSQL database.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    Postgres(PostgresOptions),
}

#[cfg(feature = "sqlite")]
impl From<SqliteOptions> for StoreOptions {
    fn from(o: SqliteOptions) -> StoreOptions {
        StoreOptions::Sqlite(o)
    }
}

#[cfg(feature = "postgres")]
impl From<PostgresOptions> for StoreOptions {
    fn from(o: PostgresOptions) -> StoreOptions {
        StoreOptions::Postgres(o)
    }
}

/// The error for an address of a backend this build does not have.
#[cfg_attr(all(feature = "sqlite", feature = "postgres"), allow(dead_code))]
fn not_built(backend: &str, feature: &str) -> InboxError {
    InboxError::new(
        InboxErrorKind::Config,
        format!(
            "this build has no {backend} backend: enable the feature `{feature}` \
             (of cmc-webhook-inbox, or of cmc-webhook)"
        ),
    )
}

/// Whether `url` names a PostgreSQL database.
fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl FromStr for StoreOptions {
    type Err = InboxError;

    /// Reads `sqlite:PATH` (or `sqlite://PATH`) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` (or `postgresql://`), with
    /// the default options. An address of a backend whose feature is off
    /// is an error that says which feature to enable; the error never
    /// shows the address itself (it may hold a password).
    fn from_str(url: &str) -> Result<StoreOptions, InboxError> {
        if is_postgres(url) {
            #[cfg(feature = "postgres")]
            return Ok(StoreOptions::Postgres(PostgresOptions::new(url)));
            #[cfg(not(feature = "postgres"))]
            return Err(not_built("PostgreSQL", "postgres"));
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            #[cfg(feature = "sqlite")]
            return match sqlite::path_of(url, rest) {
                Ok(path) => Ok(StoreOptions::Sqlite(SqliteOptions::new(path))),
                Err(why) => Err(InboxError::new(InboxErrorKind::Config, why)),
            };
            #[cfg(not(feature = "sqlite"))]
            return {
                let _ = rest;
                Err(not_built("SQLite", "sqlite"))
            };
        }
        Err(InboxError::new(
            InboxErrorKind::Config,
            format!(
                "{} is not an inbox address: expected sqlite:PATH or \
                 postgres://USER@HOST:PORT/DB",
                // Only its scheme: a mistyped address may carry a password
                // anywhere.
                match url.split_once(':') {
                    Some((scheme, _))
                        if !scheme.is_empty()
                            && scheme.len() <= 20
                            && scheme
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
                        format!("an address of scheme {scheme:?}"),
                    _ => "the address given (not shown: it may hold a password)".to_owned(),
                },
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_of_a_backend_not_built_names_the_feature() {
        let e = not_built("PostgreSQL", "postgres");
        assert_eq!(e.kind(), InboxErrorKind::Config);
        assert!(
            e.to_string()
                .contains("this build has no PostgreSQL backend: enable the feature `postgres`")
        );
    }

    #[cfg(not(feature = "postgres"))]
    #[test]
    fn a_postgres_address_without_the_feature_is_refused_with_its_name() {
        let e = "postgres://cmc:s3cret@127.0.0.1/cmc"
            .parse::<StoreOptions>()
            .unwrap_err();
        assert_eq!(e.kind(), InboxErrorKind::Config);
        let text = e.to_string();
        assert!(text.contains("enable the feature `postgres`"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[cfg(not(feature = "sqlite"))]
    #[test]
    fn a_sqlite_address_without_the_feature_is_refused_with_its_name() {
        let e = "sqlite:inbox.sqlite3".parse::<StoreOptions>().unwrap_err();
        assert_eq!(e.kind(), InboxErrorKind::Config);
        assert!(
            e.to_string()
                .contains("this build has no SQLite backend: enable the feature `sqlite`")
        );
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn a_sqlite_address_reads_its_path() {
        match "sqlite://var/inbox.sqlite3"
            .parse::<StoreOptions>()
            .unwrap()
        {
            StoreOptions::Sqlite(o) => {
                assert_eq!(o.path(), std::path::Path::new("var/inbox.sqlite3"))
            }
            #[allow(unreachable_patterns)]
            other => panic!("{other:?}"),
        }
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn a_postgres_address_reads_as_postgres_and_hides_its_password() {
        let store = "postgresql://cmc:s3cret@127.0.0.1/cmc"
            .parse::<StoreOptions>()
            .unwrap();
        assert!(matches!(store, StoreOptions::Postgres(_)));
        assert!(!format!("{store:?}").contains("s3cret"));
    }
}
