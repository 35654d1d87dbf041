//! The suppression list: per recipient, kept from CMC's bounce, delivery
//! and `blocks` events by the inbox's worker, so that a sender stops
//! mailing addresses that cannot or must not receive mail.
//!
//! - **Kept by every worker.** A worker keeps the list with the default
//!   [`SuppressionPolicy`], or the one given to
//!   [`Worker::suppressions`](crate::Worker::suppressions), unless built
//!   [`without_suppressions`](crate::Worker::without_suppressions). A
//!   check on an inbox whose list no worker, in any process, has ever kept
//!   fails with [`InboxErrorKind::NotKept`](crate::InboxErrorKind::NotKept)
//!   instead of answering "not suppressed"; [`Suppressions::keeping`]
//!   says since when the list is kept, and whether a worker has run
//!   without it since.
//! - **Kept once.** A worker applies
//!   each bounce, succeeded delivery and `blocks` record to its recipient's
//!   row in the transaction that marks the event done. The event's
//!   idempotency key is written to `cmc_suppression_history` under a unique
//!   index first, so an event counts once however often CMC sends it, the
//!   handler is retried, or the row is replayed.
//! - **Per recipient.** The row is keyed by the recipient of the event (the
//!   `to` of a bounce, never the other recipients of the message),
//!   normalised: trimmed, and lower-cased whole (see [`normalize`]).
//! - **The policy is data.** [`SuppressionPolicy`] maps each CMC bounce
//!   code to a [`Class`] and sets the thresholds and how long each
//!   [`SuppressionReason`] lasts;
//!   its documentation has the table of codes and the defaults, with
//!   Postal's for comparison.
//! - **By hand.** [`Suppressions::add`] and [`Suppressions::remove`] with a
//!   note; [`Suppressions::history`] lists every change.
//!
//! Before sending, check the recipients in one call:
//!
#![cfg_attr(feature = "sqlite", doc = "```")]
#![cfg_attr(not(feature = "sqlite"), doc = "```ignore")]
//! use cmc_webhook_inbox::Inbox;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! # let dir = tempfile::tempdir()?;
//! # let inbox = Inbox::open(&format!("sqlite:{}", dir.path().join("inbox.sqlite3").display())).await?;
//! // The worker keeps the list from the bounces it handles.
//! let worker = inbox.worker(|_job| async { Ok::<(), String>(()) }).spawn();
//! inbox.suppressions().add("gone@example.jp", None, "asked us to stop").await?;
//!
//! let recipients = ["user@example.jp", "Gone@Example.jp"];
//! let checks = inbox.suppressions().check_many(recipients).await?;
//! let to_send: Vec<&str> = recipients.iter().zip(&checks).filter(|(_, c)| !c.suppressed).map(|(r, _)| *r).collect();
//! assert_eq!(to_send, ["user@example.jp"]);
//! # worker.shutdown(std::time::Duration::from_secs(5)).await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use jiff::Timestamp;

use cmc_webhook_core::IdempotencyKey;

use crate::store::{Manual, SuppressionQuery};
pub use normal::normalize;
pub use policy::{Class, SuppressionPolicy, SuppressionReason};

/// The former name of [`SuppressionPolicy`], renamed because
/// `cmc_webhook::Policy` is the policy of request reading. It names the
/// same type, and warns:
///
/// ```
/// # #[allow(deprecated)]
/// # fn f() {
/// use cmc_webhook_inbox::suppression::{Policy, SuppressionPolicy};
///
/// let old: Policy = SuppressionPolicy::default().hard_after(2);
/// let new: SuppressionPolicy = old;
/// # let _ = new;
/// # }
/// ```
///
/// ```compile_fail
/// #![deny(deprecated)]
/// let _ = cmc_webhook_inbox::suppression::Policy::default();
/// ```
#[deprecated(
    since = "0.2.0",
    note = "renamed `SuppressionPolicy`: `cmc_webhook::Policy` is the policy of request reading"
)]
pub type Policy = SuppressionPolicy;

/// The former name of [`SuppressionReason`], renamed because
/// `cmc_webhook::Reason` is why a request was rejected. It names the same
/// type, variants included, and warns:
///
/// ```
/// # #[allow(deprecated)]
/// # fn f() {
/// use cmc_webhook_inbox::suppression::{Reason, SuppressionReason};
///
/// assert_eq!(Reason::Hard, SuppressionReason::Hard);
/// # }
/// # f();
/// ```
///
/// ```compile_fail
/// #![deny(deprecated)]
/// let _ = cmc_webhook_inbox::suppression::Reason::Hard;
/// ```
#[deprecated(
    since = "0.2.0",
    note = "renamed `SuppressionReason`: `cmc_webhook::Reason` is why a request was rejected"
)]
pub type Reason = SuppressionReason;
use rows::{RawChange, RawEntry, RawSuppression};

pub(crate) mod normal;
pub(crate) mod policy;
pub(crate) mod rows;
pub(crate) mod sql;
// The tests open SQLite inboxes.
#[cfg(all(test, feature = "sqlite"))]
mod tests;

/// An address's standing on the list, from [`Suppressions::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Check {
    /// The address, normalised (trimmed, lower-cased).
    pub address: String,
    /// Whether mail to it must not be sent now.
    pub suppressed: bool,
    /// Why, when suppressed.
    pub reason: Option<SuppressionReason>,
    /// Since when, when suppressed.
    pub since: Option<Timestamp>,
    /// Until when, when suppressed (`None`: until removed by hand).
    pub until: Option<Timestamp>,
    /// The note of an entry added by hand.
    pub note: Option<String>,
}

/// A recipient's row on the list, from [`Suppressions::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// The address, normalised.
    pub address: String,
    /// The suppression, if one was ever set and not removed (see
    /// [`Entry::suppressed_at`]: it may have expired).
    pub reason: Option<SuppressionReason>,
    /// Since when.
    pub since: Option<Timestamp>,
    /// Until when (`None` with a reason: until removed by hand).
    pub until: Option<Timestamp>,
    /// A note.
    pub note: Option<String>,
    /// The events behind the suppression, by idempotency key.
    pub events: Vec<IdempotencyKey>,
    /// Hard bounces counted.
    pub hard_bounces: u32,
    /// Soft bounces within the window.
    pub soft_bounces: u32,
    /// Bounces with codes this crate does not know.
    pub unknown_bounces: u32,
    /// The last change.
    pub updated_at: Timestamp,
}

impl Entry {
    /// Whether the entry suppresses its address at `now`.
    pub fn suppressed_at(&self, now: Timestamp) -> bool {
        self.reason.is_some() && self.until.is_none_or(|until| now < until)
    }
}

/// One change of an address's row: an event applied, or a change by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// What happened: `bounce 2`, `succeeded`, `cmc_list add`,
    /// `cmc_list remove`, `added`, `removed`.
    pub change: String,
    /// The event's key (`None` for a change by hand).
    pub key: Option<IdempotencyKey>,
    /// The suppression after the change.
    pub reason: Option<SuppressionReason>,
    /// The note of a change by hand.
    pub note: Option<String>,
    /// When the change was made.
    pub at: Timestamp,
    /// The name of the source (CMC account) whose event made the change
    /// (`None` for a change by hand, or one recorded before sources
    /// existed).
    pub source: Option<String>,
    /// The change's number in the history: a later change has a larger
    /// one. [`HistoryPage::older`] is one.
    pub id: i64,
}

/// The most changes [`Suppressions::history`] returns (the newest).
pub const HISTORY_LIMIT: usize = 10_000;

/// The most changes one [`Suppressions::history_page`] holds.
pub const HISTORY_PAGE_MAX: usize = 1_000;

/// One page of an address's history ([`Suppressions::history_page`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryPage {
    /// The changes, newest first.
    pub changes: Vec<Change>,
    /// How many changes the address's row has had in all.
    pub total: u64,
    /// What to pass as `before` for the next page, of older changes
    /// (the [`id`](Change::id) of this page's oldest); `None` when this
    /// page ends with the first change.
    pub older: Option<i64>,
}

/// Which rows [`Suppressions::list`] returns, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListFilter {
    /// Only rows with this reason.
    pub reason: Option<SuppressionReason>,
    /// Only rows that suppress their address now (not counts only, not
    /// expired).
    pub suppressed_only: bool,
    /// Rows after this address, in the order of addresses (paging). An
    /// address holds no U+0000 (which PostgreSQL's text cannot hold
    /// either): [`Suppressions::list`] refuses one that does.
    pub after: Option<String>,
    /// The most rows returned (1 000 at most).
    pub limit: usize,
}

impl Default for ListFilter {
    fn default() -> Self {
        ListFilter {
            reason: None,
            suppressed_only: true,
            after: None,
            limit: 100,
        }
    }
}

impl fmt::Display for SuppressionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The suppression list of an inbox: kept by its workers (see
/// [`Worker::suppressions`](crate::Worker::suppressions)), read and
/// changed by hand here.
#[derive(Debug, Clone)]
pub struct Suppressions {
    inbox: crate::Inbox,
}

impl crate::Inbox {
    /// The suppression list kept in this inbox.
    pub fn suppressions(&self) -> Suppressions {
        Suppressions {
            inbox: self.clone(),
        }
    }
}

fn invalid(address: &str) -> crate::InboxError {
    crate::InboxError::new(
        crate::InboxErrorKind::Invalid,
        format!(
            "`{}` is not an email address",
            cmc_webhook_core::printable(address, 100)
        ),
    )
}

/// Who keeps an inbox's suppression list, as its workers recorded it in
/// the store (from every process on it): from [`Suppressions::keeping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Keeping {
    /// When a worker that keeps the list first ran: the list holds what
    /// was marked done from then on. `None`: no worker ever kept it.
    pub since: Option<Timestamp>,
    /// When a worker that does not keep it
    /// ([`without_suppressions`](crate::Worker::without_suppressions))
    /// last started: events it marks done never reach the list.
    pub skipped: Option<Timestamp>,
}

impl Keeping {
    /// Whether a worker has ever kept the list.
    pub fn is_kept(&self) -> bool {
        self.since.is_some()
    }

    /// Whether a worker without the list has started since it was first
    /// kept, so that bounces it handled may be missing.
    pub fn is_skipped_since_kept(&self) -> bool {
        matches!((self.since, self.skipped), (Some(since), Some(skipped)) if skipped >= since)
    }
}

impl Suppressions {
    /// Since when a worker keeps the list, and when one last ran without
    /// it.
    ///
    #[cfg_attr(feature = "sqlite", doc = "```")]
    #[cfg_attr(not(feature = "sqlite"), doc = "```ignore")]
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// use cmc_webhook_inbox::{Inbox, InboxErrorKind};
    ///
    /// let inbox = Inbox::sqlite(dir.path().join("inbox.sqlite3")).open().await?;
    /// assert!(!inbox.suppressions().keeping().await?.is_kept());
    /// // No worker keeps the list: a check says so rather than "not suppressed".
    /// let err = inbox.suppressions().check("user@example.jp").await.unwrap_err();
    /// assert_eq!(err.kind(), InboxErrorKind::NotKept);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn keeping(&self) -> Result<Keeping, crate::InboxError> {
        let (since, skipped) = self.inbox.inner.store.suppression_keeping().await?;
        let at = |ms: Option<i64>| ms.and_then(|ms| Timestamp::from_millisecond(ms).ok());
        Ok(Keeping {
            since: at(since),
            skipped: at(skipped),
        })
    }

    /// Fails with [`InboxErrorKind::NotKept`](crate::InboxErrorKind::NotKept)
    /// unless a worker (of this process, or recorded in the store by any)
    /// keeps the list; asks the store until it has once said yes.
    async fn ensure_kept(&self) -> Result<(), crate::InboxError> {
        use std::sync::atomic::Ordering;
        let kept = &self.inbox.inner.suppressions_kept;
        if kept.load(Ordering::Relaxed) {
            return Ok(());
        }
        if self.keeping().await?.is_kept() {
            kept.store(true, Ordering::Relaxed);
            return Ok(());
        }
        Err(crate::InboxError::new(
            crate::InboxErrorKind::NotKept,
            "no worker keeps this inbox's suppression list, so it cannot say whether an \
             address bounced: run a worker on the inbox (workers keep the list unless built \
             `without_suppressions()`), or the receiver",
        ))
    }

    /// Whether mail to `address` must not be sent now, why, and until when.
    ///
    /// Fails with [`InboxErrorKind::NotKept`](crate::InboxErrorKind::NotKept)
    /// when no worker has ever kept the list (see [`keeping`](Self::keeping)).
    pub async fn check(&self, address: &str) -> Result<Check, crate::InboxError> {
        let mut checks = self.check_many([address]).await?;
        checks.pop().ok_or_else(|| invalid(address))
    }

    /// [`check`](Self::check) for many addresses at once, in their order
    /// (one query per 1 000 addresses): the check of a send loop.
    pub async fn check_many<S: AsRef<str>>(
        &self,
        addresses: impl IntoIterator<Item = S>,
    ) -> Result<Vec<Check>, crate::InboxError> {
        self.ensure_kept().await?;
        let normal: Vec<String> = addresses
            .into_iter()
            .map(|a| normalize(a.as_ref()).ok_or_else(|| invalid(a.as_ref())))
            .collect::<Result<_, _>>()?;
        let mut unique = normal.clone();
        unique.sort();
        unique.dedup();
        let rows = self.inbox.inner.store.suppressions_of(&unique).await?;
        let entries: std::collections::HashMap<String, Entry> = rows
            .into_iter()
            .map(|r| {
                let e = r.into_entry();
                (e.address.clone(), e)
            })
            .collect();
        let now = self.inbox.now();
        Ok(normal
            .into_iter()
            .map(|a| {
                let entry = entries.get(&a);
                Check::of(a, entry, now)
            })
            .collect())
    }

    /// The rows `filter` takes, in the order of addresses. An
    /// [`after`](ListFilter::after) with U+0000 in it is refused
    /// ([`Invalid`](crate::InboxErrorKind::Invalid)), on every backend.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<Entry>, crate::InboxError> {
        if filter.after.as_deref().is_some_and(|a| a.contains('\0')) {
            return Err(crate::InboxError::new(
                crate::InboxErrorKind::Invalid,
                "the address a page of the suppression list starts after holds U+0000, \
                 which no address holds",
            ));
        }
        let now = self.inbox.now().as_millisecond();
        Ok(self
            .inbox
            .inner
            .store
            .suppression_list(&filter.query(), now)
            .await?
            .into_iter()
            .map(RawEntry::into_entry)
            .collect())
    }

    /// Suppresses `address` by hand, for `lasts` (`None`: until removed),
    /// with a note, and says what that did ([`Added`]): the address as the
    /// list keeps it, and whether it was suppressed anew, an earlier
    /// suppression replaced, or nothing changed because the address is
    /// unsubscribed (an unsubscribe is for good, and outranks an entry by
    /// hand). A `lasts` of zero is refused: it would end as it starts.
    ///
    #[cfg_attr(feature = "sqlite", doc = "```")]
    #[cfg_attr(not(feature = "sqlite"), doc = "```ignore")]
    /// use std::time::Duration;
    /// use cmc_webhook_inbox::suppression::AddOutcome;
    /// # use cmc_webhook_inbox::Inbox;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// # let inbox = Inbox::open(&format!("sqlite:{}", dir.path().join("inbox.sqlite3").display())).await?;
    /// let list = inbox.suppressions();
    /// let added = list.add("Gone@Example.JP", None, "asked us to stop").await?;
    /// assert_eq!(added.address, "gone@example.jp");
    /// assert_eq!(added.outcome, AddOutcome::Added);
    ///
    /// let again = list.add("gone@example.jp", Some(Duration::from_secs(3600)), "for an hour").await?;
    /// assert!(matches!(again.outcome, AddOutcome::Replaced { .. }));
    /// assert!(list.add("gone@example.jp", Some(Duration::ZERO), "-").await.is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn add(
        &self,
        address: &str,
        lasts: Option<std::time::Duration>,
        note: &str,
    ) -> Result<Added, crate::InboxError> {
        let address = normalize(address).ok_or_else(|| invalid(address))?;
        if lasts.is_some_and(|d| d.as_millis() == 0) {
            return Err(crate::InboxError::new(
                crate::InboxErrorKind::Invalid,
                "a suppression that lasts less than a millisecond ends as it starts: \
                 give a longer time, or none for one that lasts until removed"
                    .to_owned(),
            ));
        }
        let now = self.inbox.now();
        let until = lasts.map(|d| {
            now.checked_add(d)
                .unwrap_or(Timestamp::MAX)
                .as_millisecond()
        });
        // What stood before, for the report: read outside the change's
        // transaction, so a change made in between by a worker may be
        // missed in it (never in the list).
        let before = self
            .inbox
            .inner
            .store
            .suppressions_of(std::slice::from_ref(&address))
            .await?
            .into_iter()
            .map(RawSuppression::into_entry)
            .find(|e| e.address == address && e.suppressed_at(now));
        let changed = self
            .inbox
            .inner
            .store
            .suppression_change(&address, Manual::Add { until }, note, now.as_millisecond())
            .await?;
        let outcome = match (changed, before) {
            (false, _) => AddOutcome::Unchanged {
                because: NotAdded::Unsubscribed,
            },
            (true, Some(e)) => AddOutcome::Replaced {
                previous: e.reason.unwrap_or(SuppressionReason::Manual),
                previous_until: e.until,
            },
            (true, None) => AddOutcome::Added,
        };
        Ok(Added {
            until: match outcome {
                AddOutcome::Unchanged { .. } => None,
                _ => until.and_then(|u| Timestamp::from_millisecond(u).ok()),
            },
            address,
            outcome,
        })
    }

    /// Lifts the suppression of `address` and clears its counts, with a
    /// note; `false` when the list held nothing for it.
    pub async fn remove(&self, address: &str, note: &str) -> Result<bool, crate::InboxError> {
        let address = normalize(address).ok_or_else(|| invalid(address))?;
        let now = self.inbox.now().as_millisecond();
        self.inbox
            .inner
            .store
            .suppression_change(&address, Manual::Remove, note, now)
            .await
    }

    /// The changes of `address`'s row, oldest first: every change, or,
    /// for an address with more than [`HISTORY_LIMIT`], the newest
    /// [`HISTORY_LIMIT`] (a stranger's events can make a history long:
    /// [`history_page`](Suppressions::history_page) reads any of it a
    /// page at a time, and says how long it is).
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// for change in inbox.suppressions().history("user@example.jp").await? {
    ///     println!("{} {} {:?}", change.at, change.change, change.note);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn history(&self, address: &str) -> Result<Vec<Change>, crate::InboxError> {
        let address = normalize(address).ok_or_else(|| invalid(address))?;
        let (changes, _) = self
            .inbox
            .inner
            .store
            .suppression_history(&address, i64::MAX, HISTORY_LIMIT as i64, false)
            .await?;
        Ok(changes
            .into_iter()
            .rev()
            .map(RawChange::into_change)
            .collect())
    }

    /// Up to `limit` changes of `address`'s row (1 to
    /// [`HISTORY_PAGE_MAX`]; a larger limit reads that many), newest
    /// first: the newest with `before` `None`, else those older than the
    /// change whose [`id`](Change::id) is `before` (a page's
    /// [`older`](HistoryPage::older)). With the number of changes in all.
    /// Each page reads its own rows through an index, however long the
    /// history.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// let list = inbox.suppressions();
    /// let mut page = list.history_page("user@example.jp", None, 50).await?;
    /// println!("{} changes", page.total);
    /// while let Some(before) = page.older {
    ///     page = list.history_page("user@example.jp", Some(before), 50).await?;
    ///     for change in &page.changes {
    ///         println!("{} {}", change.at, change.change);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn history_page(
        &self,
        address: &str,
        before: Option<i64>,
        limit: usize,
    ) -> Result<HistoryPage, crate::InboxError> {
        let address = normalize(address).ok_or_else(|| invalid(address))?;
        if limit == 0 {
            return Err(crate::InboxError::new(
                crate::InboxErrorKind::Invalid,
                "a page of the suppression history holds at least 1 change",
            ));
        }
        let limit = limit.min(HISTORY_PAGE_MAX);
        let (mut changes, total) = self
            .inbox
            .inner
            .store
            .suppression_history(&address, before.unwrap_or(i64::MAX), limit as i64 + 1, true)
            .await?;
        let more = changes.len() > limit;
        changes.truncate(limit);
        let changes: Vec<Change> = changes.into_iter().map(RawChange::into_change).collect();
        Ok(HistoryPage {
            older: if more {
                changes.last().map(|c| c.id)
            } else {
                None
            },
            total: total.unwrap_or(0).max(0) as u64,
            changes,
        })
    }
}

impl ListFilter {
    /// The filter as the store's statement binds it.
    fn query(&self) -> SuppressionQuery {
        SuppressionQuery {
            reason: self.reason.map(|r| r.as_str()),
            suppressed_only: self.suppressed_only,
            after: self.after.clone(),
            limit: self.limit,
        }
    }
}

impl RawSuppression {
    /// The row as an entry, read as [`RawEntry::into_entry`] reads it,
    /// with no counts and no events.
    fn into_entry(self) -> Entry {
        RawEntry {
            recipient: self.recipient,
            reason: self.reason,
            since: self.since,
            until: self.until,
            note: self.note,
            events: String::new(),
            hard_count: 0,
            soft_times: String::new(),
            unknown_count: 0,
            updated_at: 0,
        }
        .into_entry()
    }
}

impl RawEntry {
    fn into_entry(self) -> Entry {
        let state = policy::State::from_columns(
            self.reason.as_deref(),
            self.since,
            self.until,
            self.note,
            &self.events,
            self.hard_count,
            &self.soft_times,
            self.unknown_count,
        );
        let s = state.suppression;
        Entry {
            address: self.recipient,
            reason: s.as_ref().map(|s| s.reason),
            since: s.as_ref().map(|s| s.since),
            until: s.as_ref().and_then(|s| s.until),
            note: s.as_ref().and_then(|s| s.note.clone()),
            events: s.map(|s| s.events).unwrap_or_default(),
            hard_bounces: state.hard,
            soft_bounces: u32::try_from(state.soft.len()).unwrap_or(u32::MAX),
            unknown_bounces: state.unknown,
            updated_at: Timestamp::from_millisecond(self.updated_at)
                .unwrap_or(Timestamp::UNIX_EPOCH),
        }
    }
}

impl RawChange {
    fn into_change(self) -> Change {
        Change {
            change: self.change,
            key: self.key.and_then(|k| k.parse().ok()),
            reason: self.reason,
            note: self.note,
            at: Timestamp::from_millisecond(self.at).unwrap_or(Timestamp::UNIX_EPOCH),
            source: self.source,
            id: self.id,
        }
    }
}

/// What [`Suppressions::add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Added {
    /// The address, normalised as the list keeps it.
    pub address: String,
    /// Whether the list changed, and how.
    pub outcome: AddOutcome,
    /// Until when the entry by hand suppresses the address (`None`: until
    /// removed, or nothing was added).
    pub until: Option<Timestamp>,
}

/// How [`Suppressions::add`] changed the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddOutcome {
    /// The address was not suppressed; it is now.
    Added,
    /// The address was suppressed already; the entry by hand took the
    /// place of that suppression (its reason and end are here), whether it
    /// ends sooner or later.
    Replaced {
        /// The reason it was suppressed for.
        previous: SuppressionReason,
        /// When that suppression would have ended (`None`: never).
        previous_until: Option<Timestamp>,
    },
    /// Nothing changed, and no history row was written.
    Unchanged {
        /// Why.
        because: NotAdded,
    },
}

/// Why [`Suppressions::add`] changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotAdded {
    /// The address is unsubscribed, which is for good and outranks an
    /// entry by hand.
    Unsubscribed,
}

impl AddOutcome {
    /// `added`, `replaced` or `unchanged`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AddOutcome::Added => "added",
            AddOutcome::Replaced { .. } => "replaced",
            AddOutcome::Unchanged { .. } => "unchanged",
        }
    }
}

impl NotAdded {
    /// `unsubscribed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NotAdded::Unsubscribed => "unsubscribed",
        }
    }
}

impl Check {
    /// The standing of `address` at `now`, given its row.
    pub(crate) fn of(address: String, entry: Option<&Entry>, now: Timestamp) -> Check {
        match entry.filter(|e| e.suppressed_at(now)) {
            Some(e) => Check {
                address,
                suppressed: true,
                reason: e.reason,
                since: e.since,
                until: e.until,
                note: e.note.clone(),
            },
            None => Check {
                address,
                suppressed: false,
                reason: None,
                since: None,
                until: None,
                note: None,
            },
        }
    }
}
