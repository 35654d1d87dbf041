//! Reads for a console: events per hour over a range of time
//! ([`Inbox::activity`]), and rows found by Message-ID, key, recipient or
//! subject words, or by state with paging ([`Inbox::rows`]). Each read is
//! bounded: the range through an index of `received_at`, a page of at most
//! [`RowQuery::MAX_LIMIT`] rows by the keyset `before`, a search through
//! the index of its column, a subject search over the most recent
//! [`SUBJECT_WINDOW`] mails only, a filter by error text over the most
//! recent [`ERROR_WINDOW`] rows of its states, and each long text cut at
//! [`TEXT_LIMIT`] characters.
//!
//! [`Inbox::activity`]: crate::Inbox::activity
//! [`Inbox::rows`]: crate::Inbox::rows

mod access;
#[cfg(all(test, feature = "sqlite"))]
mod plans;
pub(crate) mod types;

pub use types::*;
