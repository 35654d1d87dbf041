//! The rows of `cmc_suppressions`, of its history and of done events, as
//! both backends read and write them (the same columns in the same order).

use jiff::Timestamp;
use jiff::tz::TimeZone;

use cmc_webhook_core::IdempotencyKey;

use super::normal::normalize;
use super::policy::SuppressionReason;
use super::policy::{self, Observed, State, Suppressed, What};

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
/// recipient, status, created, received_at, source`, each `created` read
/// in its source's zone. Each comes with its change and its source.
pub(crate) fn observed<R>(
    rows: &[R],
    policy: &super::policy::SuppressionPolicy,
) -> Result<Vec<(String, Observed, String, String)>, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let mut all = Vec::new();
    for r in rows {
        let source: String = r.try_get(6)?;
        let found = observed_from_columns(
            &r.try_get::<String, _>(1)?,
            r.try_get::<Option<String>, _>(2)?.as_deref(),
            r.try_get::<Option<String>, _>(3)?.as_deref(),
            r.try_get::<Option<String>, _>(4)?.as_deref(),
            &r.try_get::<String, _>(0)?,
            r.try_get(5)?,
            policy.zone_of(&source),
        );
        all.extend(
            found.map(|(recipient, observed, change)| (recipient, observed, change, source)),
        );
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(all)
}

/// A history row, selected with the columns of `sql::HISTORY`.
pub(crate) fn change_row<R>(r: &R) -> Result<RawChange, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RawChange {
        change: r.try_get(0)?,
        key: r.try_get(1)?,
        reason: r
            .try_get::<Option<String>, _>(2)?
            .as_deref()
            .and_then(SuppressionReason::from_column),
        note: r.try_get(3)?,
        at: r.try_get(4)?,
        source: r.try_get(5)?,
        id: r.try_get(6)?,
    })
}

/// A `cmc_suppression_history` row as the backends read it, with the
/// columns of `sql::HISTORY` in their order.
#[derive(Debug, Clone)]
pub(crate) struct RawChange {
    pub change: String,
    pub key: Option<String>,
    pub reason: Option<SuppressionReason>,
    pub note: Option<String>,
    pub at: i64,
    pub source: Option<String>,
    pub id: i64,
}

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
            .and_then(policy::SuppressionReason::from_column)
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
