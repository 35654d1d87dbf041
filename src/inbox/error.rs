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
/// use cmc_webhook::inbox::{Inbox, InboxErrorKind};
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

    /// The class of the failure.
    pub fn kind(&self) -> InboxErrorKind {
        self.kind
    }
}

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
