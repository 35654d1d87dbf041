//! What the inbox reports and takes for its operations: [`Receipt`],
//! [`Counts`], [`DeadRow`], [`Filter`], [`HistoryEntry`], [`Pruned`].

use std::fmt;

use jiff::Timestamp;

use super::job::{JobId, Kind, State};
use cmc_webhook_core::{Event, IdempotencyKey};

/// What storing one webhook did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Receipt {
    /// Rows inserted: events, or 1 for a new mail.
    pub stored: usize,
    /// Events or mails that were stored before (CMC sent them again):
    /// counted in their row's `repeats`, not stored again.
    pub repeated: usize,
}

/// How many rows are in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StateCounts {
    /// Waiting for a worker (due or retrying later).
    pub pending: u64,
    /// Claimed by a worker.
    pub running: u64,
    /// Handled.
    pub done: u64,
    /// Failed on every attempt.
    pub dead: u64,
    /// When the oldest pending row was received (`None` when nothing is
    /// pending): how far behind the worker is.
    pub oldest_pending: Option<Timestamp>,
}

impl StateCounts {
    /// The count for `state`.
    pub fn get(&self, state: State) -> u64 {
        match state {
            State::Pending => self.pending,
            State::Running => self.running,
            State::Done => self.done,
            State::Dead => self.dead,
        }
    }

    pub(crate) fn add(&mut self, state: State, n: u64) {
        let slot = match state {
            State::Pending => &mut self.pending,
            State::Running => &mut self.running,
            State::Done => &mut self.done,
            State::Dead => &mut self.dead,
        };
        *slot = slot.saturating_add(n);
    }

    /// Rows in all states.
    pub fn total(&self) -> u64 {
        self.pending
            .saturating_add(self.running)
            .saturating_add(self.done)
            .saturating_add(self.dead)
    }
}

/// Rows per state, for events and for mails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Counts {
    /// `cmc_events`.
    pub events: StateCounts,
    /// `cmc_mails`.
    pub mails: StateCounts,
}

impl Counts {
    /// Adds the `(state, rows)` pairs a backend counted in `kind`'s table
    /// (states it does not know are left out). A negative sum (the
    /// counters missed inserts that were later deleted: triggers turned
    /// off, writes to `cmc_state_counts` itself) reads as 0, with a
    /// warning that names the repair.
    pub(crate) fn add_rows(&mut self, kind: Kind, rows: Vec<(String, i64)>) {
        let slot = self.of_mut(kind);
        for (state, n) in rows {
            if let Some(state) = State::from_column(&state) {
                slot.add(state, rows_of(kind.counted_as(), state.as_str(), n));
            }
        }
    }

    /// Sets when `kind`'s oldest pending row was received (the store's
    /// milliseconds), as a backend read it.
    pub(crate) fn set_oldest_pending(&mut self, kind: Kind, received_at: Option<i64>) {
        self.of_mut(kind).oldest_pending =
            received_at.and_then(|ms| Timestamp::from_millisecond(ms).ok());
    }

    /// The counts of `kind`'s table.
    pub fn of(&self, kind: Kind) -> &StateCounts {
        match kind {
            Kind::Event => &self.events,
            Kind::Mail => &self.mails,
        }
    }

    fn of_mut(&mut self, kind: Kind) -> &mut StateCounts {
        match kind {
            Kind::Event => &mut self.events,
            Kind::Mail => &mut self.mails,
        }
    }
}

/// A counter's sum as a number of rows: a negative one (only possible
/// when the counters missed rows, see [`Counts::add_rows`]) is 0, and
/// logged as a warning naming `cmc-receiver counts --recount`.
pub(crate) fn rows_of(table: &str, state: &str, n: i64) -> u64 {
    u64::try_from(n).unwrap_or_else(|_| {
        tracing::warn!(
            table,
            state,
            sum = n,
            "a counter of rows per state is negative (it missed rows: triggers disabled, \
             or cmc_state_counts written directly); read as 0 until \
             `cmc-receiver counts --recount` (Inbox::recount) rebuilds it"
        );
        0
    })
}

/// The rows of one table per (scope, state), from the counts the
/// triggers of migration 0014 keep (`?1`: `events`, `mails` or
/// `deliveries`): the sum of a key's rows (on PostgreSQL the triggers
/// append differences), without the keys whose rows all went.
pub(crate) const STATE_COUNTS: &str = "SELECT scope, state, CAST(SUM(n) AS BIGINT) \
     FROM cmc_state_counts WHERE tbl = ?1 GROUP BY scope, state HAVING SUM(n) <> 0";

/// PostgreSQL: folds the differences the triggers appended to
/// `cmc_state_counts` into one row per (tbl, scope, state), in one
/// statement. It changes no sum. A fold running at the same time waits on
/// the rows this one deletes (at most [`FOLD_WAIT`], then it gives up and
/// folds later), then skips them (they are gone), so no row is taken
/// twice; writers only append, so they never wait on it.
pub(crate) const FOLD_COUNTS: &str = "WITH gone AS (DELETE FROM cmc_state_counts \
     RETURNING tbl, scope, state, n) \
     INSERT INTO cmc_state_counts (tbl, scope, state, n) \
     SELECT tbl, scope, state, SUM(n) FROM gone GROUP BY tbl, scope, state HAVING SUM(n) <> 0";

/// PostgreSQL: how long a fold waits for the rows it folds (another fold
/// holds them) before it leaves them for later, for the transaction of
/// the fold only.
pub(crate) const FOLD_WAIT: &str = "SET LOCAL lock_timeout = '50ms'";

/// Every counter of `cmc_state_counts`, summed per (tbl, scope, state),
/// without those at zero: what a recount compares.
pub(crate) const ALL_STATE_COUNTS: &str = "SELECT tbl, scope, state, CAST(SUM(n) AS BIGINT) \
     FROM cmc_state_counts GROUP BY tbl, scope, state HAVING SUM(n) <> 0";

/// PostgreSQL: the key of the transaction-level advisory lock a recount
/// takes first, in a statement of its own, so that two recounts never run
/// at once (each would append the same correction). Nothing else takes
/// it: receivers, workers and folds never wait on a recount.
pub(crate) const RECOUNT_LOCK: &str = "SELECT pg_advisory_xact_lock(7301185143226478963)";

/// PostgreSQL: the recount, in one READ COMMITTED statement (one
/// snapshot): per (tbl, scope, state), the rows there are (`now`) and
/// what the counters sum to (`was`); it appends `now - was` where they
/// differ, and returns those. No table lock: each writer commits its rows
/// together with its counters' appends, so the snapshot sees both or
/// neither, and a fold (which changes no sum) before or after the
/// snapshot gives the same sums.
pub(crate) const RECOUNT_PG: &str = "WITH d AS (\
     SELECT tbl, scope, state, CAST(SUM(now) AS BIGINT) AS now, CAST(SUM(was) AS BIGINT) AS was \
     FROM (\
     SELECT 'events' AS tbl, source AS scope, state, COUNT(*) AS now, 0 AS was \
     FROM cmc_events GROUP BY source, state \
     UNION ALL SELECT 'mails', source, state, COUNT(*), 0 FROM cmc_mails GROUP BY source, state \
     UNION ALL SELECT 'deliveries', COALESCE(mailbox, ''), state, COUNT(*), 0 \
     FROM cmc_mail_deliveries GROUP BY COALESCE(mailbox, ''), state \
     UNION ALL SELECT tbl, scope, state, 0, n FROM cmc_state_counts\
     ) rows GROUP BY tbl, scope, state HAVING SUM(now) <> SUM(was)), \
     fixed AS (INSERT INTO cmc_state_counts (tbl, scope, state, n) \
     SELECT tbl, scope, state, now - was FROM d) \
     SELECT tbl, scope, state, was, now FROM d ORDER BY tbl, scope, state";

/// SQLite: the counters rebuilt from the rows (after `DELETE FROM
/// cmc_state_counts`), as migration 0014 first made them.
pub(crate) const RECOUNT: [&str; 3] = [
    "INSERT INTO cmc_state_counts (tbl, scope, state, n) \
     SELECT 'events', source, state, COUNT(*) FROM cmc_events GROUP BY source, state",
    "INSERT INTO cmc_state_counts (tbl, scope, state, n) \
     SELECT 'mails', source, state, COUNT(*) FROM cmc_mails GROUP BY source, state",
    "INSERT INTO cmc_state_counts (tbl, scope, state, n) \
     SELECT 'deliveries', COALESCE(mailbox, ''), state, COUNT(*) FROM cmc_mail_deliveries \
     GROUP BY COALESCE(mailbox, ''), state",
];

/// A counter of rows per state that [`Inbox::recount`](crate::Inbox::recount)
/// found wrong, and rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recounted {
    /// The counted table: `events`, `mails` or `deliveries` (mailbox
    /// deliveries).
    pub table: String,
    /// The rows' source (events, mails) or mailbox (deliveries; empty for
    /// unrouted mails).
    pub scope: String,
    /// The rows' state (`pending`, `running`, `done`, `dead`, or a
    /// delivery's state).
    pub state: String,
    /// What the counter said.
    pub was: i64,
    /// The rows there are.
    pub now: i64,
}

impl Recounted {
    pub(crate) fn new(
        table: String,
        scope: String,
        state: String,
        was: i64,
        now: i64,
    ) -> Recounted {
        Recounted {
            table,
            scope,
            state,
            was,
            now,
        }
    }

    /// The counters that differ between `before` and `after` (rows of
    /// [`ALL_STATE_COUNTS`]), in the order of (table, scope, state).
    pub(crate) fn changes(
        before: Vec<(String, String, String, i64)>,
        after: Vec<(String, String, String, i64)>,
    ) -> Vec<Recounted> {
        use std::collections::BTreeMap;
        let mut both: BTreeMap<(String, String, String), (i64, i64)> = BTreeMap::new();
        for (tbl, scope, state, n) in before {
            both.entry((tbl, scope, state)).or_default().0 += n;
        }
        for (tbl, scope, state, n) in after {
            both.entry((tbl, scope, state)).or_default().1 += n;
        }
        both.into_iter()
            .filter(|(_, (was, now))| was != now)
            .map(|((table, scope, state), (was, now))| Recounted {
                table,
                scope,
                state,
                was,
                now,
            })
            .collect()
    }
}

/// The query (the same for both backends) for when the oldest pending row
/// of a table was received: the first pending one in the order of `id`,
/// through the index of active rows.
/// With `source`, only that source's rows (`?1` its name).
pub(crate) fn oldest_pending_sql(kind: Kind, source: bool) -> String {
    format!(
        "SELECT @ms(received_at) FROM {} WHERE state IN ('pending', 'running') AND state = 'pending'{} \
         ORDER BY id LIMIT 1",
        kind.table(),
        if source { " AND source = ?1" } else { "" }
    )
}

/// `AND source = ?n` when a read is scoped to a source.
pub(crate) fn source_condition(source: Option<&str>, n: usize) -> String {
    match source {
        Some(_) => format!(" AND source = ?{n}"),
        None => String::new(),
    }
}

/// `%text%` for `LIKE ... ESCAPE '\\'`, with `%`, `_` and `\\` taken as
/// they are.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The SQL expression (the same for both backends) that summarises a dead
/// row of each table in [`DeadRow::summary`].
/// The most rows one slice of a replay sets back to pending, each slice
/// its own transaction: a replay of a million dead rows never holds the
/// store for long, so receiving goes on meanwhile.
pub(crate) const REPLAY_SLICE: u64 = 1000;

/// The ids one slice of a replay by state alone looks at: a window of the
/// primary key, so that each slice scans a bounded stretch of the table
/// however few of its rows the filter takes.
pub(crate) const REPLAY_WINDOW: i64 = 2000;

/// How a replay walks a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayWalk {
    /// By the index of its key or Message-ID, [`REPLAY_SLICE`] matches a
    /// slice: `?3` is the slice's size.
    Matches,
    /// By windows of [`REPLAY_WINDOW`] ids: `?3` is the window's last id.
    Windows,
}

impl ReplayWalk {
    /// The bound `?3` of the slice after `after`.
    pub(crate) fn bound(self, after: i64) -> i64 {
        match self {
            ReplayWalk::Matches => REPLAY_SLICE as i64,
            ReplayWalk::Windows => after.saturating_add(REPLAY_WINDOW),
        }
    }

    /// Where the next slice starts once one bound by `bound` replayed
    /// `ids`, with `last` the table's last id; `None` when the walk is
    /// over.
    pub(crate) fn next(self, ids: &[i64], bound: i64, last: i64) -> Option<i64> {
        match self {
            ReplayWalk::Matches if ids.len() as u64 == REPLAY_SLICE => ids.iter().max().copied(),
            ReplayWalk::Matches => None,
            ReplayWalk::Windows => (bound < last).then_some(bound),
        }
    }
}

/// The statement of one slice of a replay of `kind` (`None`: the filter
/// takes no state a replay changes), with `?N` parameters: `?1` now, `?2`
/// the last id already walked, `?3` as the walk says, then the key, the
/// Message-ID, the source and the error's pattern when the filter has
/// them, in that order, and last the actor (NULL for none). The states
/// are written in (they are this crate's names), so that no `? IS NULL
/// OR` keeps the database from the index.
pub(crate) fn replay_sql(kind: Kind, filter: &Filter) -> Option<(String, ReplayWalk)> {
    let states = filter.state_names(true);
    if states.is_empty() {
        return None;
    }
    let states: Vec<String> = states.iter().map(|s| format!("'{s}'")).collect();
    let mut conditions = vec![format!("state IN ({})", states.join(", "))];
    let mut next = 4;
    if filter.key.is_some() {
        conditions.push(format!("idempotency_key = CAST(?{next} AS TEXT)"));
        next += 1;
    }
    if filter.message_id.is_some() {
        conditions.push(format!(
            "substr(message_id, 1, 200) = substr(CAST(?{next} AS TEXT), 1, 200) \
             AND message_id = CAST(?{next} AS TEXT)"
        ));
        next += 1;
    }
    if filter.source.is_some() {
        conditions.push(format!("source = CAST(?{next} AS TEXT)"));
        next += 1;
    }
    if filter.error.is_some() {
        conditions.push(format!(
            "lower(last_error) LIKE lower(CAST(?{next} AS TEXT)) ESCAPE '\\'"
        ));
        next += 1;
    }
    if let Some(ids) = &filter.ids {
        // Numbers written in: no text of the caller's reaches the SQL.
        let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
        conditions.push(format!(
            "id IN ({})",
            if ids.is_empty() {
                "NULL".to_owned()
            } else {
                ids.join(", ")
            }
        ));
    }
    if let Some(up_to) = filter.up_to {
        // A number written in, like the ids.
        conditions.push(format!("id <= {up_to}"));
    }
    let walk = if filter.key.is_some() || filter.message_id.is_some() || filter.ids.is_some() {
        ReplayWalk::Matches
    } else {
        ReplayWalk::Windows
    };
    let (range, order) = match walk {
        ReplayWalk::Matches => ("id > ?2", " ORDER BY id LIMIT ?3"),
        ReplayWalk::Windows => ("id > ?2 AND id <= ?3", ""),
    };
    Some((
        format!(
            "UPDATE {table} SET state = 'pending', attempts = 0, run_at = @ts(?1), done_at = NULL, \
             locked_by = NULL, locked_until = NULL, replayed_at = @ts(?1), \
             replayed_by = CAST(?{next} AS TEXT) WHERE id IN (SELECT id FROM {table} \
             WHERE {range} AND {}{order}) RETURNING id",
            conditions.join(" AND "),
            table = kind.table()
        ),
        walk,
    ))
}

pub(crate) const DEAD_SUMMARIES: [(Kind, &str); 2] = [
    (
        Kind::Event,
        "event_type || ' ' || COALESCE(recipient, '-') || ' ' || COALESCE(status, '-')",
    ),
    (
        Kind::Mail,
        "envelope_from || ' -> ' || envelope_to || ': ' || subject",
    ),
];

/// The dead rows of both tables, oldest first, at most `limit`.
pub(crate) fn oldest_dead(mut dead: Vec<DeadRow>, limit: usize) -> Vec<DeadRow> {
    dead.sort_by_key(|d| (d.received_at, d.id));
    dead.truncate(limit);
    dead
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, c) in [("events", self.events), ("mails", self.mails)] {
            writeln!(
                f,
                "{name:<6} pending {:>8}  running {:>8}  done {:>10}  dead {:>8}{}",
                c.pending,
                c.running,
                c.done,
                c.dead,
                match c.oldest_pending {
                    Some(at) => format!(
                        "  oldest pending received {}",
                        at.round(jiff::Unit::Second).unwrap_or(at)
                    ),
                    None => String::new(),
                }
            )?;
        }
        Ok(())
    }
}

/// A dead row: what it was and why its handler gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadRow {
    /// The row.
    pub id: JobId,
    /// Its `idempotency_key`, for [`Filter::key`].
    pub key: IdempotencyKey,
    /// For an event: its type, recipient and status; for a mail: its
    /// envelope and subject.
    pub summary: String,
    /// The `message_id` column.
    pub message_id: Option<String>,
    /// Handler runs started.
    pub attempts: u32,
    /// The last error the handler returned.
    pub last_error: Option<String>,
    /// When it was stored.
    pub received_at: Timestamp,
    /// When it died.
    pub died_at: Option<Timestamp>,
    /// The name of the source (CMC account) it came from.
    pub source: String,
}

/// Which rows an operation takes: by key, by Message-ID, by kind, by
/// state and by source.
///
/// ```
/// use cmc_webhook_inbox::{Filter, Kind, State};
///
/// // Every dead row, events and mails.
/// let dead = Filter::dead();
/// // Everything stored for one sent mail that is done or dead.
/// let message = Filter::message_id("<031a32d4@example.com>").kind(Kind::Event);
/// // The done rows too, for a replay after a bug fix.
/// let all = Filter::dead().states([State::Done, State::Dead]);
/// // The dead rows of one CMC account only.
/// let sandbox = Filter::dead().source("sandbox");
/// # let _ = (dead, message, all, sandbox);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub(crate) key: Option<IdempotencyKey>,
    pub(crate) message_id: Option<String>,
    pub(crate) kinds: Vec<Kind>,
    pub(crate) states: Vec<State>,
    pub(crate) source: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) ids: Option<Vec<i64>>,
    pub(crate) up_to: Option<i64>,
}

impl Filter {
    /// The dead rows, events and mails.
    pub fn dead() -> Filter {
        Filter {
            key: None,
            message_id: None,
            kinds: vec![Kind::Event, Kind::Mail],
            states: vec![State::Dead],
            source: None,
            error: None,
            ids: None,
            up_to: None,
        }
    }

    /// The rows of `kind` with these ids (at most [`Filter::MAX_IDS`];
    /// the rest are left out), when they are done or dead: a selection.
    ///
    /// ```
    /// use cmc_webhook_inbox::{Filter, Kind, State};
    ///
    /// let picked = Filter::ids(Kind::Event, [12, 15, 40]).states([State::Dead]);
    /// # let _ = picked;
    /// ```
    pub fn ids(kind: Kind, ids: impl IntoIterator<Item = i64>) -> Filter {
        Filter {
            ids: Some(ids.into_iter().take(Self::MAX_IDS).collect()),
            kinds: vec![kind],
            states: vec![State::Done, State::Dead],
            ..Filter::dead()
        }
    }

    /// The most ids [`Filter::ids`] takes.
    pub const MAX_IDS: usize = 1000;

    /// Only rows whose last error contains `text` (ASCII letters in any
    /// case; `%` and `_` are plain characters).
    pub fn error_contains(mut self, text: &str) -> Filter {
        self.error = Some(like_pattern(text));
        self
    }

    /// The row with this key, when it is done or dead.
    pub fn key(key: IdempotencyKey) -> Filter {
        Filter {
            key: Some(key),
            states: vec![State::Done, State::Dead],
            ..Filter::dead()
        }
    }

    /// The rows whose `message_id` is `id`, when they are done or dead.
    pub fn message_id(id: impl Into<String>) -> Filter {
        Filter {
            message_id: Some(id.into()),
            states: vec![State::Done, State::Dead],
            ..Filter::dead()
        }
    }

    /// Only rows of this kind.
    pub fn kind(mut self, kind: Kind) -> Filter {
        self.kinds = vec![kind];
        self
    }

    /// Only rows that came from the source (CMC account) named `name`
    /// (`default` for a layer configured for one account).
    pub fn source(mut self, name: impl Into<String>) -> Filter {
        self.source = Some(name.into());
        self
    }

    /// Only rows whose id is at most `id`: those a confirmation showed,
    /// not the ones stored since (ids only grow; a row stored before and
    /// dead since is still taken).
    ///
    /// ```
    /// use cmc_webhook_inbox::{Filter, Kind};
    ///
    /// // The dead events the operator saw, the newest of them event 4 120.
    /// let seen = Filter::dead().kind(Kind::Event).up_to(4_120);
    /// # let _ = seen;
    /// ```
    pub fn up_to(mut self, id: i64) -> Filter {
        self.up_to = Some(id);
        self
    }

    /// Only rows in these states. Replay never takes `pending` or
    /// `running` rows, whatever is asked: they are still on their way.
    pub fn states(mut self, states: impl IntoIterator<Item = State>) -> Filter {
        self.states = states.into_iter().collect();
        self
    }

    /// The states' column values (for a replay, only done and dead).
    pub(crate) fn state_names(&self, replay: bool) -> Vec<&'static str> {
        self.states
            .iter()
            .filter(|s| !replay || matches!(s, State::Done | State::Dead))
            .map(State::as_str)
            .collect()
    }
}

/// One event stored for a Message-ID, as [`Inbox::history`] lists them.
///
/// [`Inbox::history`]: super::Inbox::history
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// The row.
    pub id: JobId,
    /// Its key.
    pub key: IdempotencyKey,
    /// The event.
    pub event: Event,
    /// When it was stored.
    pub received_at: Timestamp,
    /// Where its handling is.
    pub state: State,
    /// Handler runs started.
    pub attempts: u32,
    /// The last error, when it failed.
    pub last_error: Option<String>,
    /// The name of the source (CMC account) it came from.
    pub source: String,
    /// When it was last set back to pending, and by whom.
    pub replayed: Option<Replayed>,
    /// The raw request it came in ([`Inbox::raw_body`](crate::Inbox::raw_body)),
    /// when one is kept.
    pub raw_request: Option<i64>,
}

/// When a row was last replayed, and by whom ([`Inbox::replay_by`]'s
/// actor; `None` for a replay without one).
///
/// [`Inbox::replay_by`]: crate::Inbox::replay_by
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Replayed {
    /// When.
    pub at: Timestamp,
    /// Who (the actor given to [`Inbox::replay_by`](crate::Inbox::replay_by)).
    pub by: Option<String>,
}

impl Replayed {
    /// From the `replayed_by` and `replayed_at` (milliseconds) columns.
    pub(crate) fn of(by: Option<String>, at: Option<i64>) -> Option<Replayed> {
        Some(Replayed {
            at: super::clock::from_millis(at?),
            by,
        })
    }
}

/// A sent mail's events, as [`Inbox::history`](super::Inbox::history)
/// reads them: the entries that read back, in CMC's order, and the rows
/// that do not (a row edited by hand, or written by a newer version),
/// each with why, skipped so that one bad row never hides the rest.
/// Derefs to the entries.
///
/// ```
/// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
/// let history = inbox.history("<20230125140309.1234@example.com>").await?;
/// for entry in history.iter() {
///     println!("{} {:?}", entry.event.event_type(), entry.state);
/// }
/// for bad in history.unreadable() {
///     eprintln!("{} does not read back: {}", bad.id, bad.error);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct History {
    pub(crate) entries: Vec<HistoryEntry>,
    pub(crate) unreadable: Vec<Unreadable>,
}

impl History {
    /// The events that read back, in CMC's order.
    pub fn entries(&self) -> &[HistoryEntry] {
        &self.entries
    }

    /// The rows of this Message-ID that do not read back.
    pub fn unreadable(&self) -> &[Unreadable] {
        &self.unreadable
    }
}

impl std::ops::Deref for History {
    type Target = [HistoryEntry];

    fn deref(&self) -> &[HistoryEntry] {
        &self.entries
    }
}

impl IntoIterator for History {
    type Item = HistoryEntry;
    type IntoIter = std::vec::IntoIter<HistoryEntry>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a> IntoIterator for &'a History {
    type Item = &'a HistoryEntry;
    type IntoIter = std::slice::Iter<'a, HistoryEntry>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

/// A stored row that does not read back, and why.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Unreadable {
    /// The row.
    pub id: JobId,
    /// Why it does not read back.
    pub error: String,
}

/// What [`Inbox::prune`](super::Inbox::prune) deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Pruned {
    /// Done events deleted.
    pub events: u64,
    /// Done mails deleted, with their attachments.
    pub mails: u64,
    /// Raw requests deleted after their own retention.
    pub raw_requests: u64,
    /// Target states unchanged for longer than the retention
    /// ([`crate::targets`]).
    pub target_states: u64,
}
