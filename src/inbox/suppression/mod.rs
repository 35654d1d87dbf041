//! The suppression list: per recipient, kept from CMC's bounce, delivery
//! and `blocks` events by the inbox's worker, so that a sender stops
//! mailing addresses that cannot or must not receive mail.
//!
//! - **Kept once.** A worker given a [`Policy`]
//!   ([`Worker::suppressions`](crate::inbox::Worker::suppressions)) applies
//!   each bounce, succeeded delivery and `blocks` record to its recipient's
//!   row in the transaction that marks the event done. The event's
//!   idempotency key is written to `cmc_suppression_history` under a unique
//!   index first, so an event counts once however often CMC sends it, the
//!   handler is retried, or the row is replayed.
//! - **Per recipient.** The row is keyed by the recipient of the event (the
//!   `to` of a bounce, never the other recipients of the message),
//!   normalised: trimmed, and lower-cased whole (see [`normalize`]).
//! - **The policy is data.** [`Policy`] maps each CMC bounce code to a
//!   [`Class`] and sets the thresholds and how long each [`Reason`] lasts;
//!   its documentation has the table of codes and the defaults, with
//!   Postal's for comparison.
//! - **By hand.** [`Suppressions::add`] and [`Suppressions::remove`] with a
//!   note; [`Suppressions::history`] lists every change.
//!
//! Before sending, check the recipients in one call:
//!
//! ```
//! use cmc_webhook::inbox::Inbox;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! # let dir = tempfile::tempdir()?;
//! # let inbox = Inbox::open(&format!("sqlite:{}", dir.path().join("inbox.sqlite3").display())).await?;
//! inbox.suppressions().add("gone@example.jp", None, "asked us to stop").await?;
//!
//! let recipients = ["user@example.jp", "Gone@Example.jp"];
//! let checks = inbox.suppressions().check_many(recipients).await?;
//! let to_send: Vec<&str> = recipients.iter().zip(&checks).filter(|(_, c)| !c.suppressed).map(|(r, _)| *r).collect();
//! assert_eq!(to_send, ["user@example.jp"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

pub use policy::{Class, Policy, Reason};

pub(crate) mod policy;

/// An address's standing on the list, from [`Suppressions::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Check {
    /// The address, normalised (trimmed, lower-cased).
    pub address: String,
    /// Whether mail to it must not be sent now.
    pub suppressed: bool,
    /// Why, when suppressed.
    pub reason: Option<Reason>,
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
    pub reason: Option<Reason>,
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
    pub reason: Option<Reason>,
    /// The note of a change by hand.
    pub note: Option<String>,
    /// When the change was made.
    pub at: Timestamp,
}

/// Which rows [`Suppressions::list`] returns, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListFilter {
    /// Only rows with this reason.
    pub reason: Option<Reason>,
    /// Only rows that suppress their address now (not counts only, not
    /// expired).
    pub suppressed_only: bool,
    /// Rows after this address, in the order of addresses (paging).
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

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recipient address in the list's normal form: trimmed, and lower-cased
/// whole. `None` for text that is not an address (no `@`, nothing on one
/// side of it, or white space inside).
///
/// ```
/// use cmc_webhook::inbox::suppression::normalize;
///
/// assert_eq!(normalize(" User@Example.JP ").as_deref(), Some("user@example.jp"));
/// assert_eq!(normalize("no-at-sign"), None);
/// ```
///
/// The local part is lower-cased too, although RFC 5321 lets a server
/// treat `John@` and `john@` as two mailboxes: virtually every mailbox
/// provider treats them as one, and suppressing both is the safe mistake
/// (mailing an address that bounced is what costs reputation).
pub fn normalize(address: &str) -> Option<String> {
    let address = address.trim();
    let (local, domain) = address.rsplit_once('@')?;
    // The root's dot (`example.jp.`) names the same domain.
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if local.is_empty()
        || domain.is_empty()
        || address.len() > MAX_ADDRESS
        || address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || crate::filename::is_invisible_format(c))
    {
        return None;
    }
    Some(format!(
        "{}@{}",
        local.to_lowercase(),
        domain.to_lowercase()
    ))
}

/// The longest address taken, in bytes: RFC 5321's path holds 256 octets,
/// two of them the angle brackets.
const MAX_ADDRESS: usize = 254;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_trimmed_and_lower_cased() {
        assert_eq!(
            normalize(" User@Example.JP ").as_deref(),
            Some("user@example.jp")
        );
        assert_eq!(
            normalize("\"a@b\"@example.jp").as_deref(),
            Some("\"a@b\"@example.jp")
        );
        assert_eq!(
            normalize("ユーザー@例え.JP").as_deref(),
            Some("ユーザー@例え.jp")
        );
        assert_eq!(
            normalize("user@Example.jp.").as_deref(),
            Some("user@example.jp")
        );
        let long = format!("{}@example.jp", "a".repeat(300));
        for bad in [
            "",
            "user",
            "@example.jp",
            "user@",
            "a b@example.jp",
            "a\0b@x.jp",
            "a\u{200b}b@x.jp",
            &long,
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
    }
}

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::event::IdempotencyKey;
use policy::{Observed, State, Suppressed, What};

/// What a done event's row says, for the policy: the recipient, the event
/// as the policy sees it, and the change as the history writes it. `None`
/// for rows that say nothing about suppression.
pub(crate) fn observed_from_columns(
    event_type: &str,
    recipient: Option<&str>,
    status: Option<&str>,
    created: Option<&str>,
    key: &str,
    received_at: i64,
    tz: &TimeZone,
) -> Option<(String, Observed, String)> {
    let recipient = normalize(recipient?)?;
    let key: IdempotencyKey = key.parse().ok()?;
    let (what, change) = match (event_type, status) {
        ("bounces", Some(code)) => (What::Bounce(code.to_owned()), format!("bounce {code}")),
        ("deliveries", Some("succeeded")) => (What::Succeeded, "succeeded".to_owned()),
        ("blocks", status) => {
            let removed = status.is_some_and(policy::means_removed);
            (
                What::CmcList { removed },
                if removed {
                    "cmc_list remove"
                } else {
                    "cmc_list add"
                }
                .to_owned(),
            )
        }
        _ => return None,
    };
    // When it happened: `created` in the console's zone, else when it was
    // stored.
    // A `created` later than a day after the event was stored is not
    // believed (a clock far off, or a made-up date): the time it was stored
    // is used instead.
    let stored = Timestamp::from_millisecond(received_at).ok()?;
    let at = created
        .and_then(|c| c.parse::<jiff::civil::DateTime>().ok())
        .and_then(|c| c.to_zoned_datetime(tz.clone()).ok())
        .map(|z| z.timestamp())
        .filter(|at| {
            *at <= stored
                .checked_add(jiff::SignedDuration::from_hours(24))
                .unwrap_or(Timestamp::MAX)
        })
        .unwrap_or(stored);
    Some((recipient, Observed { key, at, what }, change))
}

/// A `cmc_suppressions` row's columns, as the backends bind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Columns {
    pub reason: Option<&'static str>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub note: Option<String>,
    pub events: String,
    pub hard_count: i64,
    pub soft_times: String,
    pub unknown_count: i64,
}

impl State {
    pub(crate) fn to_columns(&self) -> Columns {
        let s = self.suppression.as_ref();
        Columns {
            reason: s.map(|s| s.reason.as_str()),
            since: s.map(|s| s.since.as_millisecond()),
            until: s.and_then(|s| s.until).map(|t| t.as_millisecond()),
            note: s.and_then(|s| s.note.clone()),
            events: serde_json::to_string(
                &s.map(|s| s.events.iter().map(ToString::to_string).collect::<Vec<_>>())
                    .unwrap_or_default(),
            )
            .unwrap_or_else(|_| "[]".into()),
            hard_count: i64::from(self.hard),
            soft_times: serde_json::to_string(
                &self
                    .soft
                    .iter()
                    .map(|t| t.as_millisecond())
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_else(|_| "[]".into()),
            unknown_count: i64::from(self.unknown),
        }
    }

    /// The state a row holds; unreadable parts read as empty.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_columns(
        reason: Option<&str>,
        since: Option<i64>,
        until: Option<i64>,
        note: Option<String>,
        events: &str,
        hard_count: i64,
        soft_times: &str,
        unknown_count: i64,
    ) -> State {
        let ms = |v: i64| Timestamp::from_millisecond(v).ok();
        let suppression = reason
            .and_then(policy::Reason::from_column)
            .map(|reason| Suppressed {
                reason,
                since: since.and_then(ms).unwrap_or(Timestamp::UNIX_EPOCH),
                until: until.and_then(ms),
                events: serde_json::from_str::<Vec<String>>(events)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|k| k.parse().ok())
                    .collect(),
                note,
            });
        State {
            hard: u32::try_from(hard_count).unwrap_or(0),
            soft: serde_json::from_str::<Vec<i64>>(soft_times)
                .unwrap_or_default()
                .into_iter()
                .filter_map(ms)
                .collect(),
            unknown: u32::try_from(unknown_count).unwrap_or(0),
            suppression,
        }
    }
}

#[cfg(test)]
mod store_tests {
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::policy::Policy;
    use super::{ListFilter, Reason};
    use crate::inbox::{Filter, Inbox};
    use crate::Webhook;

    const BATCH: &str = r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[
      {"created":"2026-01-01 09:00:00","status":"2","to":"Gone@Example.JP","messageId":"<m1@x>"},
      {"created":"2026-01-01 09:00:01","status":"5","to":"full@example.jp","messageId":"<m1@x>"}],
      "deliveries":[
      {"created":"2026-01-01 08:59:00","status":"succeeded","to":"fine@example.jp","messageId":"<m1@x>"}]}}"#;

    async fn settle(inbox: &Inbox, done: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while inbox.counts().await.unwrap().events.done < done {
            assert!(Instant::now() < deadline, "not done");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The recipients' rows as (recipient, reason, hard count, soft
    /// bounces in the window), and the number of history rows.
    type Rows = Vec<(String, Option<String>, i64, usize)>;
    /// The same, as read: the soft bounces as their JSON column.
    type RawRows = Vec<(String, Option<String>, i64, String)>;

    async fn read_back(url: &str) -> (Rows, i64) {
        const ROWS: &str = "SELECT recipient, reason, hard_count, soft_times FROM cmc_suppressions ORDER BY recipient";
        const HISTORY: &str = "SELECT COUNT(*) FROM cmc_suppression_history";
        let (rows, history): (RawRows, i64) = if url.starts_with("postgres") {
            #[cfg(feature = "postgres")]
            {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                (
                    sqlx::query_as(ROWS).fetch_all(&pool).await.unwrap(),
                    sqlx::query_scalar(HISTORY).fetch_one(&pool).await.unwrap(),
                )
            }
            #[cfg(not(feature = "postgres"))]
            unreachable!()
        } else {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            (
                sqlx::query_as(ROWS).fetch_all(&pool).await.unwrap(),
                sqlx::query_scalar(HISTORY).fetch_one(&pool).await.unwrap(),
            )
        };
        let rows = rows
            .into_iter()
            .map(|(r, reason, hard, soft)| {
                let soft: Vec<i64> = serde_json::from_str(&soft).unwrap();
                (r, reason, hard, soft.len())
            })
            .collect();
        (rows, history)
    }

    /// Where the test runs: a SQLite file, and a fresh PostgreSQL database
    /// when `CMC_POSTGRES_URL` names a server.
    async fn places(dir: &std::path::Path) -> Vec<String> {
        // Only pushed to with the `postgres` feature.
        #[cfg_attr(not(feature = "postgres"), allow(unused_mut))]
        let mut urls = vec![format!("sqlite:{}", dir.join("inbox.sqlite3").display())];
        #[cfg(feature = "postgres")]
        if let Ok(admin) = std::env::var("CMC_POSTGRES_URL") {
            use sqlx::Connection;
            let name = format!("cmc_suppression_unit_{}", std::process::id());
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            for sql in [
                format!("DROP DATABASE IF EXISTS {name}"),
                format!("CREATE DATABASE {name}"),
            ] {
                sqlx::query(&sql).execute(&mut conn).await.unwrap();
            }
            urls.push(format!("{}/{name}", admin.rsplit_once('/').unwrap().0));
        }
        urls
    }

    /// The worker keeps the list in the round that marks events done: only
    /// the recipient that bounced hard is suppressed, and the same events
    /// sent again or replayed never count twice.
    #[tokio::test]
    async fn the_worker_keeps_the_list_once_per_event() {
        let dir = tempfile::tempdir().unwrap();
        for url in places(dir.path()).await {
            // The events happened on 2026-01-01; it is the day after.
            let clock = crate::inbox::ManualClock::new("2026-01-02T00:00:00Z".parse().unwrap());
            let inbox = Inbox::builder(&url)
                .unwrap()
                .clock(clock)
                .open()
                .await
                .unwrap();
            let webhook =
                Webhook::parse("application/json", Bytes::from_static(BATCH.as_bytes())).unwrap();
            inbox.store(webhook.clone(), None).await.unwrap();
            let worker = inbox
                .worker(|_job| async { Ok::<(), String>(()) })
                .suppressions(Policy::default())
                .poll_interval(Duration::from_millis(10))
                .spawn();
            settle(&inbox, 3).await;
            // Sent again (stored once), and replayed (handled again).
            inbox.store(webhook, None).await.unwrap();
            assert_eq!(
                inbox.replay(&Filter::message_id("<m1@x>")).await.unwrap(),
                3
            );
            settle(&inbox, 3).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            worker.shutdown(Duration::from_secs(5)).await.unwrap();
            let (rows, history) = read_back(&url).await;
            let rows: Vec<(&str, Option<&str>, i64, usize)> = rows
                .iter()
                .map(|(r, reason, hard, soft)| (r.as_str(), reason.as_deref(), *hard, *soft))
                .collect();
            assert_eq!(
                rows,
                [
                    ("full@example.jp", None, 0, 1),
                    ("gone@example.jp", Some("hard"), 1, 0),
                ],
                "{url}"
            );
            // A success for an address the list does not hold writes
            // nothing.
            assert_eq!(history, 2, "{url}");

            // The API over the same rows.
            let list = inbox.suppressions();
            let checks = list
                .check_many(["GONE@example.jp", "full@example.jp", "new@example.jp"])
                .await
                .unwrap();
            let standing: Vec<(&str, bool, Option<Reason>)> = checks
                .iter()
                .map(|c| (c.address.as_str(), c.suppressed, c.reason))
                .collect();
            assert_eq!(
                standing,
                [
                    ("gone@example.jp", true, Some(Reason::Hard)),
                    ("full@example.jp", false, None),
                    ("new@example.jp", false, None),
                ]
            );
            assert!(list.check("not an address").await.is_err());
            list.add("New@Example.jp", None, "asked by phone")
                .await
                .unwrap();
            let check = list.check("new@example.jp").await.unwrap();
            assert_eq!(
                (check.suppressed, check.reason, check.until),
                (true, Some(Reason::Manual), None)
            );
            assert_eq!(check.note.as_deref(), Some("asked by phone"));
            let suppressed: Vec<String> = list
                .list(&ListFilter::default())
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.address)
                .collect();
            assert_eq!(suppressed, ["gone@example.jp", "new@example.jp"]);
            assert!(list
                .remove("gone@example.jp", "the mailbox exists again")
                .await
                .unwrap());
            assert!(!list.remove("never@example.jp", "-").await.unwrap());
            assert!(!list.check("gone@example.jp").await.unwrap().suppressed);
            let changes: Vec<(String, Option<Reason>)> = list
                .history("gone@example.jp")
                .await
                .unwrap()
                .into_iter()
                .map(|c| (c.change, c.reason))
                .collect();
            assert_eq!(
                changes,
                [
                    ("bounce 2".to_owned(), Some(Reason::Hard)),
                    ("removed".to_owned(), None)
                ]
            );
        }
    }
}

/// The columns a check selects, in this order: a row's suppression, not
/// its counts and events, which a check does not read.
pub(crate) const CHECK_COLUMNS: &str = "recipient, reason, since, until, note";

/// A `cmc_suppressions` row as a check reads it, selected with
/// `CHECK_COLUMNS` and only when it has a reason: a row without one (counts
/// only) suppresses nothing, as a missing row.
#[derive(Debug, Clone)]
pub(crate) struct RawSuppression {
    pub recipient: String,
    pub reason: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub note: Option<String>,
}

impl RawSuppression {
    /// The row as an entry, read as [`RawEntry::into_entry`] reads it,
    /// with no counts and no events.
    pub(crate) fn into_entry(self) -> Entry {
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

/// A `cmc_suppressions` row as the backends read it, with the columns of
/// `sql::LIST` in their order.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    pub recipient: String,
    pub reason: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub note: Option<String>,
    pub events: String,
    pub hard_count: i64,
    pub soft_times: String,
    pub unknown_count: i64,
    pub updated_at: i64,
}

impl RawEntry {
    pub(crate) fn into_entry(self) -> Entry {
        let state = State::from_columns(
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

/// The statements both backends run, with `?N` parameters (PostgreSQL
/// turns them into `$N`).
pub(crate) mod sql {
    /// The rows of chosen addresses: `IN` a list the backend binds its way.
    pub const LIST: &str = "SELECT recipient, reason, since, until, note, events, hard_count, \
         soft_times, unknown_count, updated_at FROM cmc_suppressions \
         WHERE (?1 IS NULL OR reason = ?1) \
         AND (?2 = 0 OR (reason IS NOT NULL AND (until IS NULL OR until > ?3))) \
         AND (?4 IS NULL OR recipient > ?4) ORDER BY recipient LIMIT ?5";
    pub const HISTORY: &str = "SELECT change, idempotency_key, reason, note, at \
         FROM cmc_suppression_history WHERE recipient = ?1 ORDER BY id";
    /// An unsubscribed address stays so: an entry by hand would end it.
    pub const ADD: &str = "INSERT INTO cmc_suppressions (recipient, reason, since, until, note, \
         events, updated_at) VALUES (?1, 'manual', ?2, ?3, ?4, '[]', ?2) \
         ON CONFLICT (recipient) DO UPDATE SET reason = 'manual', since = ?2, until = ?3, \
         note = ?4, events = '[]', updated_at = ?2 \
         WHERE cmc_suppressions.reason IS DISTINCT FROM 'unsubscribed'";
    pub const REMOVE: &str = "UPDATE cmc_suppressions SET reason = NULL, since = NULL, \
         until = NULL, note = ?2, events = '[]', hard_count = 0, soft_times = '[]', \
         unknown_count = 0, updated_at = ?3 WHERE recipient = ?1";
    /// Whether a row exists (a success for an address without one changes
    /// nothing, and is not written down).
    pub const EXISTS: &str = "SELECT 1 FROM cmc_suppressions WHERE recipient = ?1";
    pub const NOTE: &str = "INSERT INTO cmc_suppression_history (recipient, idempotency_key, \
         change, reason, note, at) VALUES (?1, NULL, ?2, ?3, ?4, ?5)";

    /// `sql` with PostgreSQL's `$N` parameters.
    #[cfg(feature = "postgres")]
    pub fn pg(sql: &str) -> String {
        sql.replace('?', "$")
    }
}

/// The suppression list of an inbox: kept by its workers (see
/// [`Worker::suppressions`](crate::inbox::Worker::suppressions)), read and
/// changed by hand here.
#[derive(Debug, Clone)]
pub struct Suppressions {
    inbox: crate::inbox::Inbox,
}

impl crate::inbox::Inbox {
    /// The suppression list kept in this inbox.
    pub fn suppressions(&self) -> Suppressions {
        Suppressions {
            inbox: self.clone(),
        }
    }
}

fn invalid(address: &str) -> crate::inbox::InboxError {
    crate::inbox::InboxError::new(
        crate::inbox::InboxErrorKind::Invalid,
        format!(
            "`{}` is not an email address",
            crate::text::printable(address, 100)
        ),
    )
}

impl Suppressions {
    /// Whether mail to `address` must not be sent now, why, and until when.
    pub async fn check(&self, address: &str) -> Result<Check, crate::inbox::InboxError> {
        let mut checks = self.check_many([address]).await?;
        checks.pop().ok_or_else(|| invalid(address))
    }

    /// [`check`](Self::check) for many addresses at once, in their order
    /// (one query per 1 000 addresses): the check of a send loop.
    pub async fn check_many<S: AsRef<str>>(
        &self,
        addresses: impl IntoIterator<Item = S>,
    ) -> Result<Vec<Check>, crate::inbox::InboxError> {
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

    /// The rows `filter` takes, in the order of addresses.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<Entry>, crate::inbox::InboxError> {
        let now = self.inbox.now().as_millisecond();
        Ok(self
            .inbox
            .inner
            .store
            .suppression_list(filter, now)
            .await?
            .into_iter()
            .map(RawEntry::into_entry)
            .collect())
    }

    /// Suppresses `address` by hand, for `lasts` (`None`: until removed),
    /// with a note; returns the address as the list keeps it. An
    /// unsubscribed address is left as it is (it is suppressed for good).
    pub async fn add(
        &self,
        address: &str,
        lasts: Option<std::time::Duration>,
        note: &str,
    ) -> Result<String, crate::inbox::InboxError> {
        let address = normalize(address).ok_or_else(|| invalid(address))?;
        let now = self.inbox.now();
        let until = lasts.map(|d| {
            now.checked_add(d)
                .unwrap_or(Timestamp::MAX)
                .as_millisecond()
        });
        self.inbox
            .inner
            .store
            .suppression_change(&address, Manual::Add { until }, note, now.as_millisecond())
            .await?;
        Ok(address)
    }

    /// Lifts the suppression of `address` and clears its counts, with a
    /// note; `false` when the list held nothing for it.
    pub async fn remove(
        &self,
        address: &str,
        note: &str,
    ) -> Result<bool, crate::inbox::InboxError> {
        let address = normalize(address).ok_or_else(|| invalid(address))?;
        let now = self.inbox.now().as_millisecond();
        self.inbox
            .inner
            .store
            .suppression_change(&address, Manual::Remove, note, now)
            .await
    }

    /// Every change of `address`'s row, oldest first.
    pub async fn history(&self, address: &str) -> Result<Vec<Change>, crate::inbox::InboxError> {
        let address = normalize(address).ok_or_else(|| invalid(address))?;
        self.inbox.inner.store.suppression_history(&address).await
    }
}

/// A change by hand.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Manual {
    Add { until: Option<i64> },
    Remove,
}

/// A history row, selected with the columns of `sql::HISTORY`.
pub(crate) fn change_row<R>(r: &R) -> Result<Change, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Change {
        change: r.try_get(0)?,
        key: r
            .try_get::<Option<String>, _>(1)?
            .and_then(|k| k.parse().ok()),
        reason: r
            .try_get::<Option<String>, _>(2)?
            .as_deref()
            .and_then(Reason::from_column),
        note: r.try_get(3)?,
        at: Timestamp::from_millisecond(r.try_get(4)?).unwrap_or(Timestamp::UNIX_EPOCH),
    })
}

/// The rows of `cmc_suppressions` and of done events, as both backends
/// read them (the same columns in the same order).
pub(crate) mod rows {
    use jiff::tz::TimeZone;

    use super::policy::{Observed, State};
    use super::{RawEntry, RawSuppression};

    /// A row selected with `CHECK_COLUMNS`.
    pub(crate) fn raw_suppression<R>(r: &R) -> Result<RawSuppression, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(RawSuppression {
            recipient: r.try_get(0)?,
            reason: r.try_get(1)?,
            since: r.try_get(2)?,
            until: r.try_get(3)?,
            note: r.try_get(4)?,
        })
    }

    /// A row selected with the columns of `sql::LIST`.
    pub(crate) fn raw_entry<R>(r: &R) -> Result<RawEntry, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(RawEntry {
            recipient: r.try_get(0)?,
            reason: r.try_get(1)?,
            since: r.try_get(2)?,
            until: r.try_get(3)?,
            note: r.try_get(4)?,
            events: r.try_get(5)?,
            hard_count: r.try_get(6)?,
            soft_times: r.try_get(7)?,
            unknown_count: r.try_get(8)?,
            updated_at: r.try_get(9)?,
        })
    }

    /// A recipient's state, selected as `reason, since, until, note,
    /// events, hard_count, soft_times, unknown_count`.
    pub(crate) fn state<R>(r: &R) -> Result<State, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(State::from_columns(
            r.try_get::<Option<String>, _>(0)?.as_deref(),
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            &r.try_get::<String, _>(4)?,
            r.try_get(5)?,
            &r.try_get::<String, _>(6)?,
            r.try_get(7)?,
        ))
    }

    /// What the done events a round marked say for the list, in the order
    /// of recipients (so that two workers lock the rows they share in the
    /// same order): rows returned as `idempotency_key, event_type,
    /// recipient, status, created, received_at`.
    pub(crate) fn observed<R>(
        rows: &[R],
        tz: &TimeZone,
    ) -> Result<Vec<(String, Observed, String)>, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        let mut all = Vec::new();
        for r in rows {
            all.extend(super::observed_from_columns(
                &r.try_get::<String, _>(1)?,
                r.try_get::<Option<String>, _>(2)?.as_deref(),
                r.try_get::<Option<String>, _>(3)?.as_deref(),
                r.try_get::<Option<String>, _>(4)?.as_deref(),
                &r.try_get::<String, _>(0)?,
                r.try_get(5)?,
                tz,
            ));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }
}
