//! [`InboxError`]: why the inbox could not open, store or update.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// Why an inbox operation failed.
///
/// Receiving answers 503 on any of these, so that CMC sends the webhook
/// again; nothing is acknowledged that was not committed.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// use cmc_webhook_inbox::{Inbox, InboxErrorKind};
///
/// let err = Inbox::open("mysql://db/cmc").await.unwrap_err();
/// assert_eq!(err.kind(), InboxErrorKind::Config);
/// assert!(err.to_string().contains("sqlite:"));
/// # });
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct InboxError {
    kind: InboxErrorKind,
    message: String,
    source: Option<Arc<dyn Error + Send + Sync>>,
}

/// The class of an [`InboxError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InboxErrorKind {
    /// The store's address or options are not usable.
    Config,
    /// The database could not be opened or its schema migrated.
    Open,
    /// A statement or a commit failed (the database is locked, full,
    /// read-only, gone).
    Database,
    /// A stored row does not read back (a row written by hand, or by a
    /// newer version of this crate).
    Corrupt,
    /// The inbox's writer has stopped (the runtime is shutting down).
    Closed,
    /// An argument is not usable (an address without `@`).
    Invalid,
    /// The suppression list was asked about, but no worker has ever kept
    /// it: every address would read "not suppressed", bounced or not (see
    /// [`Suppressions::keeping`](crate::suppression::Suppressions::keeping)).
    NotKept,
}

impl InboxError {
    pub(crate) fn new(kind: InboxErrorKind, message: impl Into<String>) -> InboxError {
        InboxError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(mut self, source: impl Error + Send + Sync + 'static) -> InboxError {
        self.source = Some(Arc::new(source));
        self
    }

    pub(crate) fn database(doing: &str, e: impl Error + Send + Sync + 'static) -> InboxError {
        InboxError::new(InboxErrorKind::Database, format!("{doing}: {e}")).with_source(e)
    }

    /// Whether the store answered a statement with an error that may be
    /// down to the values one request brought (a constraint, a byte
    /// sequence, a value too big for an index, or any class unknown
    /// today), rather than the store as a whole being unavailable
    /// (unreachable, locked, full, read-only, shutting down, out of
    /// connections). Only then are the requests of a group commit stored
    /// one by one, so that no value can fail the requests that shared its
    /// commit; a store-wide failure fails them all at once, without
    /// trying each again against a store that cannot answer.
    pub(crate) fn is_statement_error(&self) -> bool {
        let mut source: Option<&(dyn Error + 'static)> = Error::source(self);
        while let Some(s) = source {
            if let Some(sqlx::Error::Database(db)) = s.downcast_ref::<sqlx::Error>() {
                let code = db.code().unwrap_or_default();
                #[cfg(feature = "sqlite")]
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    return code
                        .parse::<i32>()
                        .is_ok_and(|c| !SQLITE_STORE_WIDE.contains(&(c & 0xff)));
                }
                return !PG_STORE_WIDE.iter().any(|class| code.starts_with(class));
            }
            source = s.source();
        }
        false
    }

    /// The class of the failure.
    pub fn kind(&self) -> InboxErrorKind {
        self.kind
    }
}

/// SQLite's primary result codes that say the database as a whole cannot
/// take the commit: BUSY, LOCKED, NOMEM, READONLY, INTERRUPT, IOERR,
/// CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
#[cfg(feature = "sqlite")]
const SQLITE_STORE_WIDE: [i32; 11] = [5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 26];

/// PostgreSQL's SQLSTATE classes that say the server as a whole cannot
/// take the commit: connection exception (08), invalid transaction state
/// (25), transaction rollback (40: deadlocks, tried again before this),
/// insufficient resources (53: disk full, out of memory, too many
/// connections), operator intervention (57: shutdown, statement timeout),
/// system error (58) and internal error (XX).
const PG_STORE_WIDE: [&str; 7] = ["08", "25", "40", "53", "57", "58", "XX"];

impl fmt::Display for InboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for InboxError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}
