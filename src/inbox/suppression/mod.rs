//! The suppression list: per recipient, kept from bounce, delivery and
//! `blocks` events by the inbox's worker.
//!
//! Work in progress (issue 14). Here now: the policy as data and the pure
//! function that applies one event to a recipient's state
//! ([`policy::apply`]), and the recipient's normal form. To come, in this
//! order:
//!
//! 1. Tables, in both backends: `cmc_suppressions` (one row per normalised
//!    recipient: the counts, the suppression's reason, since, until, note,
//!    the keys of its events, its source) and `cmc_suppression_history`
//!    (one row per event applied, `UNIQUE (idempotency_key)`, plus the
//!    additions and removals by hand).
//! 2. The worker's round: the `UPDATE ... SET state = 'done'` of events
//!    returns the rows it marked (`RETURNING`, so that a row whose lease
//!    was lost is not counted); for each bounce, succeeded delivery and
//!    block among them, an `INSERT ... ON CONFLICT DO NOTHING` into the
//!    history, and only when it inserted, the recipient's row read,
//!    [`policy::apply`]'d and written, all in the round's transaction: an
//!    event counts once however often it is sent or retried.
//! 3. The API on `Inbox`: `check`, a bulk check (one query per chunk of
//!    addresses, `IN` a JSON array / `= ANY($1)`), `list` with filters and
//!    paging, `add` and `remove` with a note, the history of an address;
//!    the policy set on the worker.
//! 4. The receiver: kept by default with a store; `suppressions check |
//!    list | remove`.

#![allow(dead_code)]

pub(crate) mod policy;

/// A recipient address in the list's normal form: trimmed, and lower-cased
/// whole. `None` for text that is not an address (no `@`, or nothing on
/// one side of it).
///
/// The local part is lower-cased too, although RFC 5321 lets a server
/// treat `John@` and `john@` as two mailboxes: virtually every mailbox
/// provider treats them as one, and suppressing both is the safe mistake
/// (mailing an address that bounced is what costs reputation).
pub(crate) fn normalize(address: &str) -> Option<String> {
    let address = address.trim();
    let (local, domain) = address.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() || address.chars().any(char::is_whitespace) {
        return None;
    }
    Some(format!(
        "{}@{}",
        local.to_lowercase(),
        domain.to_lowercase()
    ))
}

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
        for bad in ["", "user", "@example.jp", "user@", "a b@example.jp"] {
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
    let at = created
        .and_then(|c| c.parse::<jiff::civil::DateTime>().ok())
        .and_then(|c| c.to_zoned_datetime(tz.clone()).ok())
        .map(|z| z.timestamp())
        .or_else(|| Timestamp::from_millisecond(received_at).ok())?;
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
            let inbox = Inbox::open(&url).await.unwrap();
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
                    ("fine@example.jp", None, 0, 0),
                    ("full@example.jp", None, 0, 1),
                    ("gone@example.jp", Some("hard"), 1, 0),
                ],
                "{url}"
            );
            assert_eq!(history, 3, "{url}");
        }
    }
}
