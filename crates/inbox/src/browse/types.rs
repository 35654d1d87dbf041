//! The values of the console's reads ([`super`]), their statements and
//! how a row is read; the store imports this file, never `browse/mod.rs`
//! (whose [`access`](super::access) reaches the `Inbox`).

use jiff::Timestamp;

use crate::job::{JobId, Kind, State};
use crate::ops::{Replayed, like_pattern};
use cmc_webhook_core::IdempotencyKey;

/// How many of the most recent mails a subject search looks at.
pub const SUBJECT_WINDOW: i64 = 10_000;

/// How many of the most recent rows (of the states and source asked) a
/// filter by error text ([`RowQuery::error_contains`]) looks at: no index
/// serves a `LIKE '%text%'`, so without a bound a text that few rows hold
/// would read every dead row (a page of 50 that finds 3 reads them all).
/// The pages stop at the [`ERROR_WINDOW`]-th most recent row and say so.
pub const ERROR_WINDOW: i64 = 10_000;

/// The most characters of a summary, a last error or a Message-ID a row
/// read by [`Inbox::rows`](crate::Inbox::rows) carries (the rest is cut;
/// [`RowSummary::cut`] says so).
pub const TEXT_LIMIT: i64 = 2000;

/// How long after its end an hour is taken as closed by
/// [`Inbox::hours`](crate::Inbox::hours) (on the inbox's clock): a row
/// stamped within the hour by a writer whose transaction commits a little
/// later, or whose clock is a little behind, is still counted.
pub const CLOSED_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// An hour's length in milliseconds: hour numbers (since 1970, UTC) are
/// times `div_euclid` this.
pub(crate) const HOUR_MS: i64 = 3_600_000;

/// The most closed hours one call of [`Inbox::hours`](crate::Inbox::hours)
/// records as counted (a leap year's): a longer range is answered whole,
/// and its most recent hours kept.
pub const HOURS_KEPT_AT_ONCE: usize = 366 * 24;

/// Events received in one hour with one type and status, as
/// [`Inbox::activity`](crate::Inbox::activity) counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HourCount {
    /// The hour's start (UTC).
    pub hour: Timestamp,
    /// `deliveries`, `bounces`, `blocks`, or CMC's new name.
    pub event_type: String,
    /// The delivery status or the bounce code, as stored.
    pub status: Option<String>,
    /// How many.
    pub count: u64,
}

/// What [`RowQuery`] looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Find {
    /// Every row (of the states asked).
    All,
    /// The rows of a sent mail's Message-ID (with its angle brackets);
    /// events in CMC's order.
    MessageId(String),
    /// The row with this key.
    Key(IdempotencyKey),
    /// Events to this recipient, mails to this envelope address (ASCII
    /// case ignored).
    Recipient(String),
    /// Mails whose subject holds every one of these words (among the
    /// [`SUBJECT_WINDOW`] most recent mails; events have no subject
    /// column and are not searched).
    Subject(Vec<String>),
}

/// Which states [`RowQuery`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RowStates {
    /// Any state.
    Any,
    /// Dead rows.
    Dead,
    /// Rows waiting for another attempt after a failed one (pending or
    /// running, with an error).
    Failing,
}

/// Rows of one kind to list: what to find, in which states, of which
/// source, with which error, and a page of them (newest first, before
/// the id `before`).
///
/// ```
/// use cmc_webhook_inbox::Kind;
/// use cmc_webhook_inbox::browse::{Find, RowQuery, RowStates};
///
/// let dead_timeouts = RowQuery::new(Kind::Event)
///     .states(RowStates::Dead)
///     .error_contains("timed out")
///     .limit(50);
/// let to_alice = RowQuery::new(Kind::Mail).find(Find::Recipient("alice@example.com".into()));
/// # let _ = (dead_timeouts, to_alice);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowQuery {
    pub(crate) kind: Kind,
    pub(crate) find: Find,
    pub(crate) states: RowStates,
    pub(crate) source: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) before: Option<i64>,
    pub(crate) limit: i64,
}

impl RowQuery {
    /// The most rows one query returns.
    pub const MAX_LIMIT: usize = 500;

    /// Every row of `kind`, 50 at a time.
    pub fn new(kind: Kind) -> RowQuery {
        RowQuery {
            kind,
            find: Find::All,
            states: RowStates::Any,
            source: None,
            error: None,
            before: None,
            limit: 50,
        }
    }

    /// What to look for.
    pub fn find(mut self, find: Find) -> RowQuery {
        self.find = find;
        self
    }

    /// Only rows in these states.
    pub fn states(mut self, states: RowStates) -> RowQuery {
        self.states = states;
        self
    }

    /// Only rows of the source named `name`.
    pub fn source(mut self, name: impl Into<String>) -> RowQuery {
        self.source = Some(name.into());
        self
    }

    /// Only rows whose last error holds `text` (ASCII case ignored),
    /// among the [`ERROR_WINDOW`] most recent rows of the states and
    /// source asked (every page of the query looks in the same rows).
    pub fn error_contains(mut self, text: &str) -> RowQuery {
        self.error = Some(like_pattern(text));
        self
    }

    /// Only rows with an id below `id` (the next page: the last id of
    /// the previous one).
    pub fn before(mut self, id: i64) -> RowQuery {
        self.before = Some(id);
        self
    }

    /// At most `n` rows (at most [`RowQuery::MAX_LIMIT`], at least 1).
    pub fn limit(mut self, n: usize) -> RowQuery {
        self.limit = n.clamp(1, Self::MAX_LIMIT) as i64;
        self
    }
}

/// A row as [`Inbox::rows`](crate::Inbox::rows) lists it: what it was,
/// where its handling is, and its long texts cut at [`TEXT_LIMIT`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RowSummary {
    /// The row.
    pub id: JobId,
    /// Its key (as stored: 32 hex digits).
    pub key: String,
    /// Its state.
    pub state: State,
    /// For an event: its type, recipient and status; for a mail: its
    /// envelope and subject.
    pub summary: String,
    /// The `message_id` column.
    pub message_id: Option<String>,
    /// Handler runs started.
    pub attempts: u32,
    /// The last error.
    pub last_error: Option<String>,
    /// When it was stored.
    pub received_at: Timestamp,
    /// When it was done or died.
    pub done_at: Option<Timestamp>,
    /// The source (CMC account) it came from.
    pub source: String,
    /// When it was last replayed, and by whom.
    pub replayed: Option<Replayed>,
    /// The raw request it came in, when one is kept.
    pub raw_request: Option<i64>,
    /// Whether a text (summary, last error, Message-ID) was cut at
    /// [`TEXT_LIMIT`] characters.
    pub cut: bool,
}

/// A bound parameter of a built statement.
#[derive(Debug, Clone)]
pub(crate) enum Param {
    Int(i64),
    Text(String),
}

/// The statement of a [`RowQuery`] (the same for both backends, `?N`
/// parameters) and its parameters in order. Its columns: id, key, state,
/// summary, message_id, attempts, last_error, received_at, done_at,
/// source, replayed_by, replayed_at, raw_request_id, and whether a text
/// was cut.
pub(crate) fn rows_sql(q: &RowQuery) -> Option<(String, Vec<Param>)> {
    let table = q.kind.table();
    let summary = crate::ops::DEAD_SUMMARIES
        .iter()
        .find(|(k, _)| *k == q.kind)
        .map(|(_, s)| *s)
        .unwrap_or("''");
    let mut params = Vec::new();
    let mut conditions = Vec::new();
    let push = |params: &mut Vec<Param>, p: Param| {
        params.push(p);
        params.len()
    };
    let mut order = "id DESC";
    match &q.find {
        Find::All => {}
        Find::MessageId(id) => {
            let n = push(&mut params, Param::Text(id.clone()));
            conditions.push(format!(
                "substr(message_id, 1, 200) = substr(CAST(?{n} AS TEXT), 1, 200) \
                 AND message_id = CAST(?{n} AS TEXT)"
            ));
            if q.kind == Kind::Event {
                order = "created, id";
            }
        }
        Find::Key(key) => {
            let n = push(&mut params, Param::Text(key.to_string()));
            conditions.push(format!("idempotency_key = CAST(?{n} AS TEXT)"));
        }
        Find::Recipient(address) => {
            let column = match q.kind {
                Kind::Event => "recipient",
                Kind::Mail => "envelope_to",
            };
            let n = push(&mut params, Param::Text(address.clone()));
            conditions.push(format!(
                "lower(substr({column}, 1, 200)) = lower(substr(CAST(?{n} AS TEXT), 1, 200)) \
                 AND lower({column}) = lower(CAST(?{n} AS TEXT))"
            ));
        }
        Find::Subject(words) => {
            if q.kind == Kind::Event || words.is_empty() {
                return None;
            }
            conditions.push(format!(
                "id > (SELECT COALESCE(MAX(id), 0) - {SUBJECT_WINDOW} FROM {table})"
            ));
            for word in words.iter().take(8) {
                let n = push(&mut params, Param::Text(like_pattern(word)));
                conditions.push(format!(
                    "lower(subject) LIKE lower(CAST(?{n} AS TEXT)) ESCAPE '\\'"
                ));
            }
        }
    }
    match q.states {
        RowStates::Any => {}
        RowStates::Dead => conditions.push("state = 'dead'".to_owned()),
        RowStates::Failing => conditions.push(
            "state IN ('pending', 'running') AND attempts > 0 AND last_error IS NOT NULL"
                .to_owned(),
        ),
    }
    if let Some(source) = &q.source {
        let n = push(&mut params, Param::Text(source.clone()));
        conditions.push(format!("source = CAST(?{n} AS TEXT)"));
    }
    if let Some(pattern) = &q.error {
        // The window: the ERROR_WINDOW most recent rows of the states and
        // source asked, found through their index (the dead rows' by
        // source and id, the active rows' by id) without reading the rows.
        let offset = ERROR_WINDOW - 1;
        let source = match &q.source {
            Some(_) => format!(" AND source = CAST(?{} AS TEXT)", params.len()),
            None => String::new(),
        };
        conditions.push(match q.states {
            RowStates::Dead => format!(
                "id >= COALESCE((SELECT id FROM {table} WHERE state = 'dead'{source} \
                 ORDER BY id DESC LIMIT 1 OFFSET {offset}), 0)"
            ),
            RowStates::Failing => format!(
                "id >= COALESCE((SELECT id FROM {table} WHERE state IN ('pending', 'running') \
                 ORDER BY id DESC LIMIT 1 OFFSET {offset}), 0)"
            ),
            RowStates::Any => {
                format!("id > (SELECT COALESCE(MAX(id), 0) - {ERROR_WINDOW} FROM {table})")
            }
        });
        let n = push(&mut params, Param::Text(pattern.clone()));
        conditions.push(format!(
            "lower(last_error) LIKE lower(CAST(?{n} AS TEXT)) ESCAPE '\\'"
        ));
    }
    if let Some(before) = q.before {
        let n = push(&mut params, Param::Int(before));
        conditions.push(format!("id < ?{n}"));
    }
    let n = push(&mut params, Param::Int(q.limit));
    let limit = TEXT_LIMIT;
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    Some((
        format!(
            "SELECT id, idempotency_key, state, substr({summary}, 1, {limit}), \
             substr(message_id, 1, {limit}), attempts, substr(last_error, 1, {limit}), \
             @ms(received_at), @ms(done_at), source, substr(replayed_by, 1, 200), \
             @ms(replayed_at), raw_request_id, \
             CAST(CASE WHEN length({summary}) > {limit} OR length(last_error) > {limit} \
             OR length(message_id) > {limit} THEN 1 ELSE 0 END AS BIGINT) \
             FROM {table}{filter} ORDER BY {order} LIMIT ?{n}"
        ),
        params,
    ))
}

/// The statement of [`Inbox::activity`](crate::Inbox::activity): `?1` and
/// `?2` the range's ends (milliseconds).
pub(crate) const ACTIVITY_SQL: &str = "SELECT CAST(@ms(received_at) / 3600000 AS BIGINT), \
     event_type, status, COUNT(*) FROM cmc_events \
     WHERE received_at >= @ts(?1) AND received_at < @ts(?2) \
     GROUP BY CAST(@ms(received_at) / 3600000 AS BIGINT), event_type, status";

/// The same on PostgreSQL: the rows grouped by their hour
/// (`date_trunc` of the time in UTC, whatever the session's time zone),
/// and each group's hour turned into a number once, instead of turning
/// every row's `timestamptz` into milliseconds (a `numeric`) and grouping
/// by that.
pub(crate) const ACTIVITY_SQL_PG: &str = "SELECT CAST(EXTRACT(EPOCH FROM hour) AS BIGINT) / 3600, \
     event_type, status, n FROM (SELECT date_trunc('hour', received_at AT TIME ZONE 'UTC') AS hour, \
     event_type, status, COUNT(*) AS n FROM cmc_events \
     WHERE received_at >= @ts(?1) AND received_at < @ts(?2) \
     GROUP BY 1, 2, 3) hours";

/// A row of [`rows_sql`]'s statement.
#[allow(clippy::type_complexity)]
pub(crate) fn row_summary<R>(kind: Kind, r: &R) -> Result<RowSummary, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let state: String = r.try_get(2)?;
    let done_at: Option<i64> = r.try_get(8)?;
    Ok(RowSummary {
        id: JobId {
            kind,
            id: r.try_get(0)?,
        },
        key: r.try_get(1)?,
        state: State::from_column(&state).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "state".into(),
            source: format!("unknown state {state:?}").into(),
        })?,
        summary: r.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
        message_id: r.try_get(4)?,
        attempts: u32::try_from(r.try_get::<i64, _>(5)?).unwrap_or(u32::MAX),
        last_error: r.try_get(6)?,
        received_at: crate::clock::from_millis(r.try_get(7)?),
        done_at: done_at.map(crate::clock::from_millis),
        source: r.try_get(9)?,
        replayed: Replayed::of(r.try_get(10)?, r.try_get(11)?),
        raw_request: r.try_get(12)?,
        cut: r.try_get::<i64, _>(13)? != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_take_wildcards_as_they_are() {
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }

    #[test]
    fn a_subject_search_of_events_finds_nothing() {
        let q = RowQuery::new(Kind::Event).find(Find::Subject(vec!["x".into()]));
        assert!(rows_sql(&q).is_none());
        let q = RowQuery::new(Kind::Mail).find(Find::Subject(vec!["x".into()]));
        let (sql, params) = rows_sql(&q).unwrap();
        assert!(sql.contains("- 10000"), "{sql}");
        assert_eq!(params.len(), 2);
    }

    #[test]
    fn limits_are_clamped() {
        assert_eq!(RowQuery::new(Kind::Mail).limit(0).limit, 1);
        assert_eq!(RowQuery::new(Kind::Mail).limit(10_000).limit, 500);
    }
}
