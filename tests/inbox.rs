//! The inbox on real stores: what is stored (once, whatever the
//! encoding), how the worker treats each row (order, retries, backoff,
//! dead rows, leases, shutdown), the operations (replay, history, prune),
//! and what a failing store answers. Time is a `ManualClock`.
//!
//! The tests of behaviour run on both backends, from the same code (the
//! modules `on_sqlite` and `on_postgres` at the end): on SQLite files, and
//! on PostgreSQL when `CMC_POSTGRES_URL` names a server (each test in a
//! database of its own; without a server they print one line and pass,
//! unless `CMC_REQUIRE_POSTGRES` is set). The tests of SQLite's files
//! (full disk, locked or removed file, migration of old files) run on
//! SQLite only.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cmc_webhook::inbox::{
    Backoff, Filter, Inbox, InboxBuilder, Item, Job, Kind, ManualClock, SqliteOptions, State,
    Synchronous,
};
use cmc_webhook::test_util::{encode, sample_inbound, CmcRequest, WireEncoding};
use cmc_webhook::{IdempotencyKey, InboundMail, Webhook};
use http_body_util::BodyExt;

mod common;
use tower::ServiceExt;

const T0: &str = "2026-01-01T00:00:00Z";

fn clock() -> ManualClock {
    ManualClock::new(T0.parse().unwrap())
}

/// The backend the current test runs on.
#[derive(Debug, Clone)]
enum Backend {
    Sqlite,
    /// The server's admin address.
    #[allow(dead_code)]
    Postgres(String),
}

tokio::task_local! {
    static BACKEND: Backend;
}

/// Where a test's inbox is: a SQLite file in a temporary directory
/// (removed with it), or a database of its own on the test server.
enum Place {
    Sqlite(tempfile::TempDir),
    #[allow(dead_code)]
    Postgres(String),
}

/// Anything that names a store, for the tests' own connections.
trait Locate {
    fn url(&self) -> String;
}

impl Locate for tempfile::TempDir {
    fn url(&self) -> String {
        format!("sqlite:{}", self.path().join("inbox.sqlite3").display())
    }
}

impl Locate for Place {
    fn url(&self) -> String {
        match self {
            Place::Sqlite(dir) => dir.url(),
            Place::Postgres(url) => url.clone(),
        }
    }
}

/// A fresh inbox on the current test's backend, with `clock`.
async fn open(clock: &ManualClock) -> (Inbox, Place) {
    open_with(|b| b.clock(clock.clone())).await
}

/// A fresh inbox on the current test's backend, configured by `configure`.
async fn open_with(configure: impl FnOnce(InboxBuilder) -> InboxBuilder) -> (Inbox, Place) {
    match BACKEND.try_with(Backend::clone).unwrap_or(Backend::Sqlite) {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let inbox = configure(Inbox::sqlite(dir.path().join("inbox.sqlite3")).into())
                .open()
                .await
                .unwrap();
            (inbox, Place::Sqlite(dir))
        }
        #[cfg(feature = "postgres")]
        Backend::Postgres(admin) => {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "t_inbox_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            );
            let url = common::inbox::fresh_database(&admin, &name).await;
            let inbox = configure(Inbox::postgres(&url).into())
                .open()
                .await
                .unwrap();
            (inbox, Place::Postgres(url))
        }
        #[cfg(not(feature = "postgres"))]
        Backend::Postgres(_) => unreachable!("PostgreSQL tests need the feature postgres"),
    }
}

/// (position, start, length) of every attachment chunk stored.
async fn chunk_sizes(place: &impl Locate) -> Vec<(i64, i64, i64)> {
    use sqlx::Connection;
    let sql = "SELECT position, start, CAST(length(data) AS BIGINT) \
               FROM cmc_mail_attachments ORDER BY position, start";
    let url = place.url();
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        return sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap();
    }
    #[cfg(feature = "postgres")]
    {
        let mut conn = common::inbox::pg_store(&url).await;
        return sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap();
    }
    #[allow(unreachable_code)]
    {
        unreachable!("a PostgreSQL place without the feature")
    }
}

/// Time `ms` (milliseconds since the epoch, SQL text) as the store's time
/// columns hold it: milliseconds on SQLite, `timestamptz` on PostgreSQL.
fn time(place: &impl Locate, ms: &str) -> String {
    if place.url().starts_with("sqlite:") {
        ms.to_owned()
    } else {
        format!("(TIMESTAMPTZ 'epoch' + {ms} * INTERVAL '1 millisecond')")
    }
}

/// Time column `column` in milliseconds since the epoch, as SQL on the
/// store (see [`time`]).
fn millis(place: &impl Locate, column: &str) -> String {
    if place.url().starts_with("sqlite:") {
        column.to_owned()
    } else {
        format!("CAST(EXTRACT(EPOCH FROM {column}) * 1000 AS BIGINT) AS {column}")
    }
}

/// SQL that breaks the JSON of event `id`: its text cut short. On
/// PostgreSQL the `jsonb` column takes no such text: it goes in
/// `event_exact`, the exact text reads take first.
fn broken_event(place: &impl Locate, id: i64) -> String {
    let column = if place.url().starts_with("sqlite:") {
        "event"
    } else {
        "event_exact"
    };
    format!("UPDATE cmc_events SET {column} = '{{\"kind\":' WHERE id = {id}")
}

/// Runs `sql` on the store, with a connection of the test's own.
async fn execute(place: &impl Locate, sql: &str) {
    use sqlx::Connection;
    let url = place.url();
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        #[cfg(feature = "postgres")]
        {
            let mut conn = common::inbox::pg_store(&url).await;
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

fn builder(dir: &tempfile::TempDir, clock: &ManualClock) -> InboxBuilder<SqliteOptions> {
    Inbox::sqlite(dir.path().join("inbox.sqlite3")).clock(clock.clone())
}

/// A batch of delivery events: (message id, status, created).
fn deliveries(events: &[(&str, &str, &str)]) -> Webhook {
    let records: Vec<String> = events
        .iter()
        .map(|(id, status, created)| {
            format!(
                r#"{{"created":"{created}","status":"{status}","to":"user@example.jp","from":"info@example.com","messageId":"{id}","reason":"","subject":"s","apiData":"","returnPath":"info@example.com"}}"#
            )
        })
        .collect();
    let body = format!(
        r#"{{"event_type":"deliveries","server_composition":"pro","event":{{"deliveries":[{}]}}}}"#,
        records.join(",")
    );
    Webhook::parse("application/json", Bytes::from(body)).unwrap()
}

/// `n` distinct events, numbered from `from`.
fn numbered(from: usize, n: usize) -> Webhook {
    let ids: Vec<String> = (from..from + n)
        .map(|i| format!("<{i}@example.com>"))
        .collect();
    let events: Vec<(&str, &str, &str)> = ids
        .iter()
        .map(|id| (id.as_str(), "queued", "2026-01-01 09:00:00"))
        .collect();
    deliveries(&events)
}

/// Waits (real time) until `check` holds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Lets a worker run for a while, for checks that something does not
/// happen.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

/// The columns of one row, read with a connection of the test's own.
async fn row(place: &impl Locate, kind: Kind, id: i64) -> BTreeMap<String, String> {
    use sqlx::Connection;
    let table = match kind {
        Kind::Event => "cmc_events",
        _ => "cmc_mails",
    };
    let sql = format!(
        "SELECT state, attempts, {}, {}, last_error, repeats, {} FROM {table} WHERE id = {id}",
        millis(place, "run_at"),
        millis(place, "locked_until"),
        millis(place, "done_at"),
    );
    let url = place.url();
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        columns(
            &sqlx::query(sqlx::AssertSqlSafe(&*sql))
                .fetch_one(&mut conn)
                .await
                .unwrap(),
        )
    } else {
        #[cfg(feature = "postgres")]
        {
            let mut conn = common::inbox::pg_store(&url).await;
            return columns(
                &sqlx::query(sqlx::AssertSqlSafe(&*sql))
                    .fetch_one(&mut conn)
                    .await
                    .unwrap(),
            );
        }
        #[allow(unreachable_code)]
        {
            unreachable!("a PostgreSQL place without the feature")
        }
    }
}

/// A row's columns as text (`NULL` for null).
fn columns<R>(r: &R) -> BTreeMap<String, String>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    use sqlx::Column;
    r.columns()
        .iter()
        .map(|c| {
            let v: Option<String> = r
                .try_get::<Option<i64>, _>(c.ordinal())
                .map(|v| v.map(|n| n.to_string()))
                .or_else(|_| r.try_get::<Option<String>, _>(c.ordinal()))
                .unwrap();
            (c.name().to_owned(), v.unwrap_or_else(|| "NULL".into()))
        })
        .collect()
}

fn millis_after_t0(secs: i64) -> String {
    (T0.parse::<jiff::Timestamp>().unwrap().as_millisecond() + secs * 1000).to_string()
}

/// A handler that records each job's key and attempt, and answers what
/// `outcome` says.
type Log = Arc<Mutex<Vec<(IdempotencyKey, u32)>>>;

fn recording(
    outcome: impl Fn(&Job) -> Result<(), String> + Send + Sync + 'static,
) -> (
    Log,
    impl Fn(Job) -> std::future::Ready<Result<(), String>> + Send + Sync + 'static,
) {
    let log: Log = Arc::default();
    let seen = log.clone();
    (log, move |job: Job| {
        seen.lock().unwrap().push((job.key, job.attempt));
        std::future::ready(outcome(&job))
    })
}

fn calls(log: &Log) -> usize {
    log.lock().unwrap().len()
}

async fn each_event_is_stored_once_whatever_the_encoding_and_repeats_are_counted() {
    let (inbox, dir) = open(&clock()).await;
    let batch = numbered(0, 20);
    let mut receipts = Vec::new();
    for encoding in WireEncoding::ALL {
        let wire = encode(&batch, encoding);
        let webhook = Webhook::parse(&wire.content_type, wire.body).unwrap();
        receipts.push(inbox.store(webhook, None).await.unwrap());
    }
    let got: Vec<(usize, usize)> = receipts.iter().map(|r| (r.stored, r.repeated)).collect();
    assert_eq!(got, [(20, 0), (0, 20), (0, 20)]);
    let counts = inbox.counts().await.unwrap();
    assert_eq!(counts.events.pending, 20);
    assert_eq!(counts.events.total(), 20);
    assert_eq!(row(&dir, Kind::Event, 1).await["repeats"], "2");
}

async fn a_mail_is_stored_once_with_its_attachments_and_reads_back_equal() {
    let (inbox, _dir) = open(&clock()).await;
    let mail = sample_inbound(true);
    for encoding in [WireEncoding::Multipart, WireEncoding::Multipart] {
        let wire = encode(&Webhook::Inbound(mail.clone()), encoding);
        let webhook = Webhook::parse(&wire.content_type, wire.body).unwrap();
        inbox
            .store(webhook, Some([203, 0, 113, 7].into()))
            .await
            .unwrap();
    }
    // The same mail without its attachment is another mail.
    inbox
        .store(Webhook::Inbound(sample_inbound(false)), None)
        .await
        .unwrap();
    assert_eq!(inbox.counts().await.unwrap().mails.pending, 2);

    let received: Arc<Mutex<Vec<Job>>> = Arc::default();
    let sink = received.clone();
    let worker = inbox
        .worker(move |job: Job| {
            sink.lock().unwrap().push(job);
            async { Ok::<(), String>(()) }
        })
        .concurrency(1)
        .spawn();
    eventually("both mails handled", || async {
        received.lock().unwrap().len() == 2
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let jobs = received.lock().unwrap();
    let Item::Mail(first) = &jobs[0].item else {
        panic!("not a mail: {:?}", jobs[0])
    };
    let mut expected: InboundMail = mail.clone();
    expected.api_key = None;
    assert_eq!(first, &expected);
    assert_eq!(jobs[0].key, mail.idempotency_key());
    assert_eq!(jobs[0].client, Some([203, 0, 113, 7].into()));
    assert_eq!(&first.attachments[0].data, &mail.attachments[0].data);
    let Item::Mail(second) = &jobs[1].item else {
        panic!()
    };
    assert!(second.attachments.is_empty());
}

async fn rows_are_handled_in_order_of_arrival() {
    let (inbox, _dir) = open(&clock()).await;
    let mut expected = Vec::new();
    for b in 0..4 {
        let batch = numbered(b * 10, 10);
        if let Webhook::Events(batch) = &batch {
            expected.extend(batch.events.iter().map(|e| e.idempotency_key()));
        }
        inbox.store(batch, None).await.unwrap();
    }
    let (log, handler) = recording(|_| Ok(()));
    let worker = inbox.worker(handler).concurrency(1).spawn();
    eventually("40 events handled", || async { calls(&log) == 40 }).await;
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let order: Vec<IdempotencyKey> = log.lock().unwrap().iter().map(|(k, _)| *k).collect();
    assert_eq!(order, expected);
}

async fn a_failing_handler_is_retried_after_its_backoff_then_the_row_is_dead() {
    let clock = clock();
    let (inbox, dir) = open(&clock).await;
    inbox.store(numbered(0, 1), None).await.unwrap();
    let (log, handler) = recording(|job| Err(format!("boom on attempt {}", job.attempt)));
    let worker = inbox
        .worker(handler)
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_secs(10)).jitter(0.0))
        .poll_interval(Duration::from_millis(5))
        .spawn();

    eventually("first attempt", || async { calls(&log) == 1 }).await;
    eventually("retry scheduled", || async {
        row(&dir, Kind::Event, 1).await["state"] == "pending"
    })
    .await;
    let r = row(&dir, Kind::Event, 1).await;
    assert_eq!(r["attempts"], "1");
    assert_eq!(r["run_at"], millis_after_t0(10));
    assert_eq!(r["last_error"], "boom on attempt 1");

    // Not before its time...
    clock.advance(Duration::from_millis(9_999));
    settle().await;
    assert_eq!(calls(&log), 1);
    // ... then at once.
    clock.advance(Duration::from_millis(1));
    eventually("second attempt", || async { calls(&log) == 2 }).await;
    eventually("second retry scheduled", || async {
        row(&dir, Kind::Event, 1).await["state"] == "pending"
    })
    .await;
    // The wait doubles: 20 s after the second failure.
    assert_eq!(
        row(&dir, Kind::Event, 1).await["run_at"],
        millis_after_t0(30)
    );
    clock.advance(Duration::from_secs(20));
    eventually("third attempt", || async { calls(&log) == 3 }).await;
    eventually("dead", || async {
        row(&dir, Kind::Event, 1).await["state"] == "dead"
    })
    .await;
    clock.advance(Duration::from_secs(3600));
    settle().await;
    assert_eq!(calls(&log), 3, "a dead row is not tried again");
    let attempts: Vec<u32> = log.lock().unwrap().iter().map(|(_, a)| *a).collect();
    assert_eq!(attempts, [1, 2, 3]);

    let dead = inbox.dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].last_error.as_deref(), Some("boom on attempt 3"));
    assert_eq!(dead[0].message_id.as_deref(), Some("<0@example.com>"));
    assert_eq!(dead[0].summary, "deliveries user@example.jp queued");
    let stopped = worker.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!((stopped.done, stopped.failed), (0, 3));
}

async fn a_handler_that_panics_counts_as_a_failed_attempt() {
    let (inbox, dir) = open(&clock()).await;
    inbox.store(numbered(0, 1), None).await.unwrap();
    let worker = inbox
        .worker(|_job: Job| async { panic!("handler bug") as Result<(), String> })
        .max_attempts(1)
        .spawn();
    eventually("dead", || async {
        row(&dir, Kind::Event, 1).await["state"] == "dead"
    })
    .await;
    assert_eq!(
        row(&dir, Kind::Event, 1).await["last_error"],
        "the handler panicked: handler bug"
    );
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A handler that never finishes, and says when it started.
fn hanging(started: Arc<AtomicUsize>) -> impl Fn(Job) -> std::future::Pending<Result<(), String>> {
    move |_job| {
        started.fetch_add(1, Ordering::SeqCst);
        std::future::pending()
    }
}

async fn the_rows_of_a_worker_that_died_are_claimed_again_when_their_lease_expires() {
    let clock = clock();
    let (inbox, dir) = open(&clock).await;
    inbox.store(numbered(0, 1), None).await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let first = inbox
        .worker(hanging(started.clone()))
        .lease(Duration::from_secs(60))
        .spawn();
    eventually("the first worker started", || async {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    first.abort();
    assert_eq!(row(&dir, Kind::Event, 1).await["state"], "running");

    let (log, handler) = recording(|_| Ok(()));
    let second = inbox
        .worker(handler)
        .poll_interval(Duration::from_millis(5))
        .spawn();
    clock.advance(Duration::from_secs(59));
    settle().await;
    assert_eq!(calls(&log), 0, "the lease still holds");
    clock.advance(Duration::from_secs(1));
    eventually("claimed again", || async { calls(&log) == 1 }).await;
    assert_eq!(log.lock().unwrap()[0].1, 2, "the second run is attempt 2");
    eventually("done", || async {
        row(&dir, Kind::Event, 1).await["state"] == "done"
    })
    .await;
    second.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn a_lease_that_expires_on_the_last_attempt_makes_the_row_dead() {
    let clock = clock();
    let (inbox, dir) = open(&clock).await;
    inbox.store(numbered(0, 1), None).await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let first = inbox
        .worker(hanging(started.clone()))
        .max_attempts(1)
        .lease(Duration::from_secs(60))
        .spawn();
    eventually("started", || async { started.load(Ordering::SeqCst) == 1 }).await;
    first.abort();
    let (log, handler) = recording(|_| Ok(()));
    let second = inbox
        .worker(handler)
        .max_attempts(1)
        .poll_interval(Duration::from_millis(5))
        .spawn();
    clock.advance(Duration::from_secs(61));
    eventually("dead", || async {
        row(&dir, Kind::Event, 1).await["state"] == "dead"
    })
    .await;
    assert_eq!(calls(&log), 0);
    let dead = inbox.dead(10).await.unwrap();
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("the lease expired on attempt 1"),
        "{dead:?}"
    );
    second.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn shutdown_waits_for_handlers_in_flight_and_releases_those_past_the_deadline() {
    let (inbox, dir) = open(&clock()).await;
    inbox.store(numbered(0, 2), None).await.unwrap();
    let finished = Arc::new(AtomicUsize::new(0));
    let done = finished.clone();
    let started = Arc::new(AtomicUsize::new(0));
    let begun = started.clone();
    let worker = inbox
        .worker(move |job: Job| {
            begun.fetch_add(1, Ordering::SeqCst);
            let done = done.clone();
            async move {
                if job.id.id == 1 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    done.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                } else {
                    std::future::pending::<Result<(), String>>().await
                }
            }
        })
        .spawn();
    eventually("both started", || async {
        started.load(Ordering::SeqCst) == 2
    })
    .await;
    let stopped = worker.shutdown(Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        finished.load(Ordering::SeqCst),
        1,
        "the short handler finished"
    );
    assert_eq!((stopped.done, stopped.failed, stopped.released), (1, 0, 1));
    assert_eq!(row(&dir, Kind::Event, 1).await["state"], "done");
    let released = row(&dir, Kind::Event, 2).await;
    assert_eq!(released["state"], "pending");
    assert_eq!(released["locked_until"], "NULL");

    // A stopped worker claims nothing more; the next one takes over.
    inbox.store(numbered(10, 1), None).await.unwrap();
    settle().await;
    assert_eq!(inbox.counts().await.unwrap().events.pending, 2);
    let (log, handler) = recording(|_| Ok(()));
    let next = inbox.worker(handler).spawn();
    eventually("the rest handled", || async { calls(&log) == 2 }).await;
    next.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn the_worker_wakes_at_once_when_a_row_is_stored() {
    let (inbox, _dir) = open(&clock()).await;
    let (log, handler) = recording(|_| Ok(()));
    // Polling alone would take an hour.
    let worker = inbox
        .worker(handler)
        .poll_interval(Duration::from_secs(3600))
        .spawn();
    settle().await;
    for n in 0..3 {
        inbox.store(numbered(n, 1), None).await.unwrap();
        eventually("handled without polling", || async { calls(&log) == n + 1 }).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn replay_takes_dead_rows_by_filter_and_done_rows_by_key() {
    let (inbox, dir) = open(&clock()).await;
    inbox
        .store(
            deliveries(&[
                ("<a@x>", "queued", "2026-01-01 09:00:00"),
                ("<b@x>", "queued", "2026-01-01 09:00:00"),
                ("<c@x>", "queued", "2026-01-01 09:00:00"),
            ]),
            None,
        )
        .await
        .unwrap();
    // <a@x> fails, the others succeed.
    let fail = Arc::new(Mutex::new(true));
    let failing = fail.clone();
    let (log, handler) = recording(move |job| match &job.item {
        Item::Event(e) if e.message_id() == Some("<a@x>") && *failing.lock().unwrap() => {
            Err("down".into())
        }
        _ => Ok(()),
    });
    let worker = inbox.worker(handler).max_attempts(1).spawn();
    eventually("all handled", || async {
        let c = inbox.counts().await.unwrap().events;
        c.done == 2 && c.dead == 1
    })
    .await;

    // Nothing matches: no change.
    assert_eq!(
        inbox
            .replay(&Filter::dead().kind(Kind::Mail))
            .await
            .unwrap(),
        0
    );
    // The dead row is handled again, with its attempts reset.
    *fail.lock().unwrap() = false;
    assert_eq!(inbox.replay(&Filter::dead()).await.unwrap(), 1);
    eventually("replayed", || async { calls(&log) == 4 }).await;
    eventually("done", || async {
        inbox.counts().await.unwrap().events.done == 3
    })
    .await;
    assert_eq!(log.lock().unwrap()[3].1, 1, "attempts start again");
    assert_eq!(row(&dir, Kind::Event, 1).await["last_error"], "NULL");

    // A done row, by its key and by its Message-ID.
    let key = log.lock().unwrap()[1].0;
    assert_eq!(inbox.replay(&Filter::key(key)).await.unwrap(), 1);
    eventually("replayed by key", || async { calls(&log) == 5 }).await;
    assert_eq!(log.lock().unwrap()[4].0, key);
    eventually("done again", || async {
        inbox.counts().await.unwrap().events.done == 3
    })
    .await;
    assert_eq!(
        inbox
            .replay(&Filter::message_id("<c@x>").kind(Kind::Event))
            .await
            .unwrap(),
        1
    );
    eventually("replayed by message id", || async { calls(&log) == 6 }).await;
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    // Pending rows are never taken by a replay, whatever the filter says.
    inbox.store(numbered(100, 1), None).await.unwrap();
    let all = Filter::dead().states(State::ALL);
    assert_eq!(inbox.replay(&all).await.unwrap(), 3);
}

async fn history_lists_a_messages_events_in_the_order_cmc_dated_them() {
    let (inbox, _dir) = open(&clock()).await;
    // Stored out of order, and with another message in between.
    inbox
        .store(
            deliveries(&[
                ("<m@x>", "succeeded", "2026-01-01 09:00:09"),
                ("<other@x>", "queued", "2026-01-01 09:00:01"),
            ]),
            None,
        )
        .await
        .unwrap();
    inbox
        .store(
            deliveries(&[
                ("<m@x>", "queued", "2026-01-01 09:00:00"),
                ("<m@x>", "deferred", "2026-01-01 09:00:05"),
            ]),
            None,
        )
        .await
        .unwrap();
    let history = inbox.history("<m@x>").await.unwrap();
    let statuses: Vec<String> = history
        .iter()
        .map(|h| match &h.event {
            cmc_webhook::Event::Delivery(d) => d.status.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(statuses, ["queued", "deferred", "succeeded"]);
    assert!(history.iter().all(|h| h.state == State::Pending));
    assert!(inbox.history("<nobody@x>").await.unwrap().is_empty());
}

async fn prune_deletes_rows_done_before_the_retention_with_their_attachments() {
    let clock = clock();
    let (inbox, dir) = open(&clock).await;
    inbox.store(numbered(0, 3), None).await.unwrap();
    inbox
        .store(Webhook::Inbound(sample_inbound(true)), None)
        .await
        .unwrap();
    let (log, handler) = recording(|job| match &job.item {
        Item::Event(e) if e.message_id() == Some("<2@example.com>") => Err("no".into()),
        _ => Ok(()),
    });
    let worker = inbox.worker(handler).max_attempts(1).spawn();
    eventually("handled", || async { calls(&log) == 4 }).await;
    eventually("settled", || async {
        let c = inbox.counts().await.unwrap();
        c.events.done == 2 && c.events.dead == 1 && c.mails.done == 1
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    // Another event, done a day later.
    clock.advance(Duration::from_secs(86_400));
    inbox.store(numbered(10, 1), None).await.unwrap();
    let (log, handler) = recording(|_| Ok(()));
    let worker = inbox.worker(handler).spawn();
    eventually("handled", || async { calls(&log) == 1 }).await;
    eventually("done", || async {
        inbox.counts().await.unwrap().events.done == 3
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await.unwrap();

    // 30 days after the first rows were done: those go, the later one stays.
    clock.advance(Duration::from_secs(29 * 86_400));
    let pruned = inbox.prune(Duration::from_secs(30 * 86_400)).await.unwrap();
    assert_eq!(
        (pruned.events, pruned.mails),
        (0, 0),
        "not yet: exactly 30 days"
    );
    clock.advance(Duration::from_millis(1));
    let pruned = inbox.prune(Duration::from_secs(30 * 86_400)).await.unwrap();
    assert_eq!((pruned.events, pruned.mails), (2, 1));
    let c = inbox.counts().await.unwrap();
    assert_eq!((c.events.done, c.events.dead, c.mails.total()), (1, 1, 0));
    assert_eq!(
        chunk_sizes(&dir).await,
        [],
        "the attachments went with their mail"
    );
}

async fn a_row_that_does_not_read_back_is_dead_and_the_others_go_on() {
    let (inbox, dir) = open(&clock()).await;
    inbox.store(numbered(0, 2), None).await.unwrap();
    execute(&dir, &broken_event(&dir, 1)).await;
    let (log, handler) = recording(|_| Ok(()));
    let worker = inbox.worker(handler).spawn();
    eventually("the good row handled", || async { calls(&log) == 1 }).await;
    eventually("the bad row dead", || async {
        row(&dir, Kind::Event, 1).await["state"] == "dead"
    })
    .await;
    assert!(row(&dir, Kind::Event, 1).await["last_error"]
        .starts_with("the stored row does not read back: event: "));
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Posts through the inbox's tower service; returns the status.
async fn post(inbox: &Inbox, webhook: &Webhook) -> (u16, Option<String>) {
    let request = CmcRequest::body(encode(webhook, WireEncoding::Json)).into_request();
    let response = inbox.receive().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!body.is_empty());
    (status, retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_answered_503_and_nothing_unstored_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = builder(&dir, &clock())
        .busy_timeout(Duration::from_millis(100))
        .open()
        .await
        .unwrap();
    assert_eq!(post(&inbox, &numbered(0, 5)).await, (200, None));

    // Another process holds the write lock.
    use sqlx::Connection;
    let mut other = sqlx::SqliteConnection::connect(&format!(
        "sqlite:{}",
        dir.path().join("inbox.sqlite3").display()
    ))
    .await
    .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    assert_eq!(
        post(&inbox, &numbered(5, 5)).await,
        (503, Some("10".to_owned()))
    );
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();

    // Only what was answered 200 is there; the refused batch, sent again,
    // is stored in full.
    assert_eq!(inbox.counts().await.unwrap().events.total(), 5);
    assert_eq!(post(&inbox, &numbered(5, 5)).await, (200, None));
    assert_eq!(inbox.counts().await.unwrap().events.total(), 10);
}

/// A tmpfs of 4 MiB: SQLite's writes fail with "database or disk is full".
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount() -> SmallDisk {
        let dir = std::env::temp_dir().join(format!("cmc-inbox-full-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a 4 MiB tmpfs needs root");
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_answered_503_and_every_200_is_stored() {
    let disk = SmallDisk::mount();
    let path = disk.0.join("inbox.sqlite3");
    // Ballast, removed later to give the space back (enough for the WAL
    // to grow to its checkpoint while the worker marks every row).
    let ballast = disk.0.join("ballast");
    std::fs::write(&ballast, vec![0u8; 2 << 20]).unwrap();
    let inbox = Inbox::sqlite(&path)
        .synchronous(Synchronous::Full)
        .open()
        .await
        .unwrap();
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut n = 0;
    while refused < 5 {
        let batch = numbered(n * 20, 20);
        match post(&inbox, &batch).await.0 {
            200 => acknowledged.push(n),
            503 => refused += 1,
            other => panic!("status {other}"),
        }
        n += 1;
        assert!(n < 2000, "the disk never filled");
    }
    assert!(!acknowledged.is_empty());

    // Space again: the same inbox, without a restart, stores again, and
    // its worker handles rows (as many as the space allows: the WAL grows
    // with every mark until a checkpoint).
    std::fs::remove_file(&ballast).unwrap();
    for _ in 0..3 {
        let batch = numbered(n * 20, 20);
        assert_eq!(
            post(&inbox, &batch).await.0,
            200,
            "batch {n} after space came back"
        );
        acknowledged.push(n);
        n += 1;
    }
    let handled = Arc::new(AtomicUsize::new(0));
    let worker = {
        let handled = handled.clone();
        inbox
            .worker(move |_job: Job| {
                handled.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), String>(()) }
            })
            .spawn()
    };
    eventually("the worker handles events", || {
        let handled = handled.clone();
        async move { handled.load(Ordering::SeqCst) >= 100 }
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    inbox.close().await;
    drop(inbox);

    // Opened again: every acknowledged event is there, once.
    let inbox = Inbox::sqlite(&path).open().await.unwrap();
    let counts = inbox.counts().await.unwrap();
    assert_eq!(counts.events.total(), 20 * acknowledged.len() as u64);
    for n in acknowledged.iter().step_by(7) {
        let history = inbox
            .history(&format!("<{}@example.com>", n * 20))
            .await
            .unwrap();
        assert_eq!(history.len(), 1, "batch {n}");
    }
    inbox.close().await;
}

async fn a_handler_running_past_its_lease_keeps_its_row_and_runs_once() {
    // The system clock: leases run out in real time here.
    let (inbox, dir) = open_with(|b| b).await;
    inbox.store(numbered(0, 1), None).await.unwrap();
    let runs = Arc::new(Mutex::new(Vec::new()));
    let slow = |runs: Arc<Mutex<Vec<u32>>>| {
        move |job: Job| {
            runs.lock().unwrap().push(job.attempt);
            async {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                Ok::<(), String>(())
            }
        }
    };
    // Two workers with 1 s leases; the handler takes 2.5 s.
    let workers: Vec<_> = (0..2)
        .map(|_| {
            inbox
                .worker(slow(runs.clone()))
                .lease(Duration::from_secs(1))
                .max_attempts(2)
                .poll_interval(Duration::from_millis(20))
                .spawn()
        })
        .collect();
    eventually("done", || async {
        row(&dir, Kind::Event, 1).await["state"] == "done"
    })
    .await;
    settle().await;
    assert_eq!(*runs.lock().unwrap(), vec![1], "one run, attempt 1");
    assert_eq!(row(&dir, Kind::Event, 1).await["attempts"], "1");
    for worker in workers {
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
    }
}

async fn a_run_cancelled_at_shutdown_does_not_use_up_an_attempt() {
    let clock = clock();
    let (inbox, dir) = open(&clock).await;
    inbox.store(numbered(0, 1), None).await.unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    for round in 1..=3 {
        let worker = inbox
            .worker(hanging(started.clone()))
            .max_attempts(2)
            .spawn();
        eventually("the handler started", || async {
            started.load(Ordering::SeqCst) == round
        })
        .await;
        let stopped = worker.shutdown(Duration::from_millis(20)).await.unwrap();
        assert_eq!(stopped.released, 1);
        assert_eq!(row(&dir, Kind::Event, 1).await["attempts"], "0");
    }
    let (log, handler) = recording(|_| Err("no".to_owned()));
    let worker = inbox.worker(handler).max_attempts(2).spawn();
    eventually("the first real attempt failed", || async {
        calls(&log) == 1
    })
    .await;
    assert_eq!(
        log.lock().unwrap()[0].1,
        1,
        "the first real run is attempt 1"
    );
    settle().await;
    assert_eq!(row(&dir, Kind::Event, 1).await["state"], "pending");
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_keeps_its_deadline_when_the_store_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = builder(&dir, &clock())
        .busy_timeout(Duration::from_millis(100))
        .open()
        .await
        .unwrap();
    inbox.store(numbered(0, 1), None).await.unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let started = Arc::new(AtomicUsize::new(0));
    let worker = {
        let (release, started) = (release.clone(), started.clone());
        inbox
            .worker(move |_job: Job| {
                started.fetch_add(1, Ordering::SeqCst);
                let release = release.clone();
                async move {
                    release.notified().await;
                    Ok::<(), String>(())
                }
            })
            .spawn()
    };
    eventually("the handler started", || async {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    use sqlx::Connection;
    let mut other = sqlx::SqliteConnection::connect(&format!(
        "sqlite:{}",
        dir.path().join("inbox.sqlite3").display()
    ))
    .await
    .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    release.notify_one();
    let stopped = tokio::time::timeout(
        Duration::from_secs(20),
        worker.shutdown(Duration::from_millis(500)),
    )
    .await
    .expect("shutdown returns after its deadline")
    .unwrap();
    assert_eq!((stopped.done, stopped.unrecorded), (1, 1));
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    // Not recorded: the row is still leased, and comes back after it.
    assert_eq!(row(&dir, Kind::Event, 1).await["state"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_file_removed_while_open_is_answered_503() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.sqlite3");
    let inbox = Inbox::sqlite(&path).open().await.unwrap();
    assert_eq!(post(&inbox, &numbered(0, 5)).await, (200, None));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    assert_eq!(
        post(&inbox, &numbered(5, 5)).await,
        (503, Some("10".to_owned()))
    );
    assert!(!path.exists(), "no empty file was made in its place");
    // A file put in its place is not written to either.
    std::fs::write(&path, b"").unwrap();
    assert_eq!(post(&inbox, &numbered(10, 5)).await.0, 503);
}

#[tokio::test]
async fn an_inbox_is_a_file_and_its_address_has_no_parameters() {
    use cmc_webhook::inbox::InboxErrorKind;
    for url in [
        "sqlite::memory:",
        "sqlite://:memory:",
        "sqlite:file:x?mode=memory",
        "sqlite:/tmp/x.sqlite3?mode=ro",
        "sqlite:",
        "mysql://localhost/x",
        "inbox.sqlite3",
    ] {
        let error = Inbox::open(url).await.unwrap_err();
        assert_eq!(error.kind(), InboxErrorKind::Config, "{url}: {error}");
    }
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.sqlite3");
    let error = Inbox::sqlite(&missing)
        .create_if_missing(false)
        .open()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), InboxErrorKind::Open, "{error}");
    assert!(!missing.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_from_the_first_schema_is_migrated_and_its_attachments_read_back() {
    use sqlx::Connection;
    let clock = clock();
    // A mail as the current schema stores it, in a scratch inbox.
    let (scratch, scratch_dir) = open(&clock).await;
    let mail = sample_inbound(true);
    scratch
        .store(Webhook::Inbound(mail.clone()), None)
        .await
        .unwrap();
    scratch.close().await;
    let columns = "idempotency_key, message_id, envelope_from, envelope_to, subject, filter, \
                   server_composition, client, received_at, attachments, size, mail, run_at";
    let url = |dir: &std::path::Path| format!("sqlite:{}", dir.join("inbox.sqlite3").display());

    // A file with only the first migration, holding that mail the way the
    // first schema did: each attachment whole, in one row.
    let old = tempfile::tempdir().unwrap();
    let first = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crates/inbox/migrations/sqlite/0001_inbox.sql"
        ),
        first.path().join("0001_inbox.sql"),
    )
    .unwrap();
    let mut conn = sqlx::SqliteConnection::connect_with(
        &url(old.path())
            .parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::migrate::Migrator::new(first.path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(&*format!(
        "ATTACH DATABASE '{}' AS scratch",
        scratch_dir.url().trim_start_matches("sqlite:")
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(&*format!(
        "INSERT INTO cmc_mails ({columns}) SELECT {columns} FROM scratch.cmc_mails"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("INSERT INTO cmc_mail_attachments (mail_id, position, data) VALUES (1, 0, ?1)")
        .bind(mail.attachments[0].data.as_ref())
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    // Opened by the inbox: migrated, and the mail reads back equal.
    let inbox = Inbox::sqlite(old.path().join("inbox.sqlite3"))
        .clock(clock.clone())
        .open()
        .await
        .unwrap();
    let read = common::inbox::handle_all(&inbox, 1).await;
    let Item::Mail(read) = &read[0] else {
        panic!("a mail")
    };
    assert_eq!(*read, mail);
}

async fn attachments_of_several_chunks_and_empty_ones_read_back_equal() {
    let clock = clock();
    let (inbox, dir) = open(&clock).await;
    let mut mail = sample_inbound(true);
    let big: Vec<u8> = (0..(5 << 19) + 7).map(|i| (i * 31 % 251) as u8).collect();
    let template = mail.attachments[0].clone();
    mail.attachments = vec![template.clone(), template.clone(), template];
    mail.attachments[0].data = Bytes::from(big);
    mail.attachments[1].data = Bytes::new();
    let receipt = inbox
        .store(Webhook::Inbound(mail.clone()), None)
        .await
        .unwrap();
    assert_eq!(receipt.stored, 1);
    // 2.5 MiB and 7 bytes: three chunks; the empty one: one empty chunk.
    let chunks = chunk_sizes(&dir).await;
    let png = mail.attachments[2].data.len() as i64;
    assert_eq!(
        chunks,
        vec![
            (0, 0, 1 << 20),
            (0, 1 << 20, 1 << 20),
            (0, 2 << 20, (1 << 19) + 7),
            (1, 0, 0),
            (2, 0, png)
        ]
    );
    let read = common::inbox::handle_all(&inbox, 1).await;
    let Item::Mail(read) = &read[0] else {
        panic!("a mail")
    };
    assert_eq!(*read, mail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_file_removed_while_open_is_answered_503() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.sqlite3");
    let inbox = Inbox::sqlite(&path).open().await.unwrap();
    assert_eq!(post(&inbox, &numbered(0, 5)).await, (200, None));
    std::fs::remove_file(dir.path().join("inbox.sqlite3-wal")).unwrap();
    assert_eq!(
        post(&inbox, &numbered(5, 5)).await,
        (503, Some("10".to_owned()))
    );
    assert_eq!(post(&inbox, &numbered(10, 5)).await.0, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiving_goes_on_after_the_pools_let_their_connections_go() {
    // The WAL stays while the inbox is open, even when the connections
    // that wrote it are dropped after an error: a locked file makes the
    // receiving connection close, and receiving resumes afterwards.
    let dir = tempfile::tempdir().unwrap();
    let inbox = builder(&dir, &clock())
        .busy_timeout(Duration::from_millis(50))
        .open()
        .await
        .unwrap();
    assert_eq!(post(&inbox, &numbered(0, 5)).await.0, 200);
    use sqlx::Connection;
    let mut other = sqlx::SqliteConnection::connect(&format!(
        "sqlite:{}",
        dir.path().join("inbox.sqlite3").display()
    ))
    .await
    .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    assert_eq!(post(&inbox, &numbered(5, 5)).await.0, 503);
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    for n in 1..4 {
        assert_eq!(post(&inbox, &numbered(n * 5, 5)).await.0, 200, "batch {n}");
    }
    assert_eq!(inbox.counts().await.unwrap().events.total(), 20);
}

// Hardening, round 3: what an outside attack and fault injection found.

/// `n` characters a compressor cannot shrink (a B-tree entry on
/// PostgreSQL is compressed before its size is checked), from `seed`.
fn incompressible(n: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+";
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ALPHABET[(x >> 33) as usize % ALPHABET.len()] as char
        })
        .collect()
}

async fn a_message_id_of_any_length_is_stored_found_and_replayed() {
    // A mail's sender writes its Message-ID: over 2.7 KB, PostgreSQL's
    // B-tree index on the whole value refused the row (and its commit).
    let (inbox, dir) = open(&clock()).await;
    let long = format!("<{}@example.com>", incompressible(4000, 1));
    // Another of the same first 200 characters: found apart.
    let twin = format!("{}{}", &long[..300], incompressible(3000, 2));
    inbox
        .store(
            deliveries(&[
                (&long, "queued", "2026-01-01 09:00:00"),
                (&twin, "queued", "2026-01-01 09:00:01"),
                (&long, "succeeded", "2026-01-01 09:00:02"),
            ]),
            None,
        )
        .await
        .unwrap();
    let mut mail = sample_inbound(false);
    let header_id = format!("<{}@example.jp>", incompressible(3000, 3));
    mail.headers = vec![cmc_webhook::Header::new("Message-ID", header_id.as_str())]
        .into_iter()
        .collect();
    inbox.store(Webhook::Inbound(mail), None).await.unwrap();

    let history = inbox.history(&long).await.unwrap();
    assert_eq!(history.len(), 2);
    assert!(history
        .iter()
        .all(|e| e.event.message_id() == Some(long.as_str())));
    assert_eq!(inbox.history(&twin).await.unwrap().len(), 1);

    for table in ["cmc_events", "cmc_mails"] {
        execute(
            &dir,
            &format!(
                "UPDATE {table} SET state = 'done', done_at = {}",
                time(&dir, "1")
            ),
        )
        .await;
    }
    assert_eq!(inbox.replay(&Filter::message_id(&long)).await.unwrap(), 2);
    assert_eq!(
        inbox.replay(&Filter::message_id(&header_id)).await.unwrap(),
        1
    );
}

async fn a_statement_error_fails_only_the_request_that_caused_it() {
    // Any statement error of a shared commit (here a trigger's, of a class
    // the split did not know: 54000 on PostgreSQL) fails only the request
    // whose rows caused it; the others that shared its commit are stored.
    let (inbox, dir) = open(&clock()).await;
    if dir.url().starts_with("sqlite:") {
        execute(
            &dir,
            "CREATE TRIGGER poison BEFORE INSERT ON cmc_events \
             WHEN NEW.message_id = '<poison@example.com>' \
             BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
        )
        .await;
    } else {
        execute(
            &dir,
            "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
             IF NEW.message_id = '<poison@example.com>' THEN \
             RAISE EXCEPTION 'poisoned' USING ERRCODE = '54000'; END IF; \
             RETURN NEW; END $$ LANGUAGE plpgsql",
        )
        .await;
        execute(
            &dir,
            "CREATE TRIGGER poison BEFORE INSERT ON cmc_events \
             FOR EACH ROW EXECUTE FUNCTION poison()",
        )
        .await;
    }
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let inbox = inbox.clone();
        tasks.push(tokio::spawn(async move {
            let webhook = if i == 100 {
                deliveries(&[("<poison@example.com>", "queued", "2026-01-01 09:00:00")])
            } else {
                numbered(i * 2, 2)
            };
            (i, inbox.store(webhook, None).await)
        }));
    }
    let mut failed = Vec::new();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        if let Err(e) = result {
            failed.push((i, e.to_string()));
        }
    }
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, 100);
    assert!(failed[0].1.contains("poisoned"), "{}", failed[0].1);
    assert_eq!(inbox.counts().await.unwrap().events.total(), 398);
}

async fn a_replay_of_many_rows_takes_each_once_in_slices() {
    // Replays go a slice at a time (each its own transaction); every row
    // the filter takes is replayed once, across the slices.
    let (inbox, dir) = open(&clock()).await;
    inbox.store(numbered(0, 2500), None).await.unwrap();
    execute(
        &dir,
        &format!(
            "UPDATE cmc_events SET state = CASE WHEN id % 7 = 0 THEN 'done' ELSE 'dead' END, \
             attempts = 3, done_at = {}",
            time(&dir, "1")
        ),
    )
    .await;
    let dead = inbox.counts().await.unwrap().events.dead;
    assert!(dead > 2000, "{dead}");
    assert_eq!(inbox.replay(&Filter::dead()).await.unwrap(), dead);
    let counts = inbox.counts().await.unwrap().events;
    assert_eq!((counts.pending, counts.dead), (dead, 0));
    assert_eq!(counts.done, 2500 - dead);
    assert_eq!(inbox.replay(&Filter::dead()).await.unwrap(), 0);
}

async fn rows_of_a_claim_whose_answer_was_lost_are_taken_back_by_the_same_worker() {
    // A claim that committed but whose answer never came back leaves rows
    // `running` under a live worker's name. Once their lease runs out they
    // are free for every worker, that one included.
    let clock = clock();
    let (inbox, dir) = open(&clock).await;
    inbox.store(numbered(0, 1), None).await.unwrap();
    let release = Arc::new(tokio::sync::Notify::new());
    let log: Log = Arc::default();
    let worker = {
        let (log, release) = (log.clone(), release.clone());
        inbox
            .worker(move |job: Job| {
                let first = job.id.id == 1;
                log.lock().unwrap().push((job.key, job.attempt));
                let release = release.clone();
                async move {
                    if first {
                        release.notified().await;
                    }
                    Ok::<(), String>(())
                }
            })
            .concurrency(1)
            .lease(Duration::from_secs(60))
            .poll_interval(Duration::from_millis(5))
            .spawn()
    };
    eventually("the first row started", || async { calls(&log) == 1 }).await;
    let locked_by = locked_by(&dir, 1).await;
    // Five rows claimed by this worker in a claim whose answer was lost.
    inbox.store(numbered(1, 5), None).await.unwrap();
    execute(
        &dir,
        &format!(
            "UPDATE cmc_events SET state = 'running', attempts = 1, locked_by = '{locked_by}', \
             locked_until = {} WHERE id > 1",
            time(&dir, &millis_after_t0(60))
        ),
    )
    .await;
    release.notify_one();
    eventually("the first row done", || async {
        row(&dir, Kind::Event, 1).await["state"] == "done"
    })
    .await;
    settle().await;
    assert_eq!(calls(&log), 1, "their lease still holds");
    clock.advance(Duration::from_secs(61));
    eventually("the stranded rows handled", || async { calls(&log) == 6 }).await;
    eventually("all done", || async {
        inbox.counts().await.unwrap().events.done == 6
    })
    .await;
    assert!(log.lock().unwrap()[1..]
        .iter()
        .all(|(_, attempt)| *attempt == 2));
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// The `locked_by` of event `id`.
async fn locked_by(place: &impl Locate, id: i64) -> String {
    use sqlx::Connection;
    let sql = format!("SELECT locked_by FROM cmc_events WHERE id = {id}");
    let url = place.url();
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        return sqlx::query_scalar(sqlx::AssertSqlSafe(&*sql))
            .fetch_one(&mut conn)
            .await
            .unwrap();
    }
    #[cfg(feature = "postgres")]
    {
        let mut conn = common::inbox::pg_store(&url).await;
        return sqlx::query_scalar(sqlx::AssertSqlSafe(&*sql))
            .fetch_one(&mut conn)
            .await
            .unwrap();
    }
    #[allow(unreachable_code)]
    {
        unreachable!("a PostgreSQL place without the feature")
    }
}

async fn a_hung_handler_is_cancelled_at_its_timeout_as_a_failed_attempt() {
    // One slot, a handler that hangs on its first run: the timeout frees
    // the slot for the next row, and the hung row is retried.
    let (inbox, dir) = open(&clock()).await;
    inbox.store(numbered(0, 2), None).await.unwrap();
    let log: Log = Arc::default();
    let worker = {
        let log = log.clone();
        inbox
            .worker(move |job: Job| {
                log.lock().unwrap().push((job.key, job.attempt));
                let hang = job.id.id == 1 && job.attempt == 1;
                async move {
                    if hang {
                        std::future::pending::<()>().await;
                    }
                    Ok::<(), String>(())
                }
            })
            .concurrency(1)
            .handler_timeout(Duration::from_millis(200))
            .backoff(Backoff::exponential(Duration::ZERO).jitter(0.0))
            .poll_interval(Duration::from_millis(5))
            .spawn()
    };
    eventually("both rows done", || async {
        inbox.counts().await.unwrap().events.done == 2
    })
    .await;
    let first = row(&dir, Kind::Event, 1).await;
    assert_eq!(first["attempts"], "2");
    assert_eq!(calls(&log), 3);
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn a_history_skips_and_flags_a_row_that_does_not_read_back() {
    let (inbox, dir) = open(&clock()).await;
    inbox
        .store(
            deliveries(&[
                ("<m@x>", "queued", "2026-01-01 09:00:00"),
                ("<m@x>", "succeeded", "2026-01-01 09:00:01"),
            ]),
            None,
        )
        .await
        .unwrap();
    execute(&dir, &broken_event(&dir, 1)).await;
    let history = inbox.history("<m@x>").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].id.id, 2);
    assert_eq!(history.unreadable().len(), 1);
    assert_eq!(history.unreadable()[0].id.id, 1);
    assert!(history.unreadable()[0].error.contains("does not read back"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_without_migrating_checks_the_schema_and_migrate_is_a_step_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.url();
    let never = Inbox::builder(&url)
        .unwrap()
        .migrate_on_open(false)
        .open()
        .await
        .unwrap_err();
    assert!(never.to_string().contains("no migration"), "{never}");
    let migrated = Inbox::builder(&url).unwrap().migrate().await.unwrap();
    assert!(migrated.applied.len() >= 6, "{migrated:?}");
    assert_eq!(migrated.applied.last(), Some(&migrated.version));
    let again = Inbox::builder(&url).unwrap().migrate().await.unwrap();
    assert!(again.applied.is_empty());
    let inbox = Inbox::builder(&url)
        .unwrap()
        .migrate_on_open(false)
        .open()
        .await
        .unwrap();
    inbox.store(numbered(0, 1), None).await.unwrap();
    inbox.close().await;

    // A store a newer version migrated is not touched.
    execute(
        &dir,
        "INSERT INTO cmc_webhook_migrations (version, description, success, checksum, execution_time) \
         VALUES (999999, 'from the future', 1, x'00', 0)",
    )
    .await;
    let newer = Inbox::builder(&url)
        .unwrap()
        .read_only(true)
        .open()
        .await
        .unwrap_err();
    assert!(newer.to_string().contains("newer"), "{newer}");
}

/// Mounts a small tmpfs at `dir` (for file-system faults), or says why not
/// in one line and returns `false`.
fn mount_tmpfs(dir: &std::path::Path, size: &str) -> bool {
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root and mount rights)");
    }
    ok
}

fn unmount(dir: &std::path::Path) {
    let _ = std::process::Command::new("umount").arg(dir).status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_on_a_read_only_file_system_is_refused_at_open_and_can_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let made = dir.path().join("inbox.sqlite3");
    let inbox = Inbox::sqlite(&made).open().await.unwrap();
    inbox.store(numbered(0, 3), None).await.unwrap();
    inbox.close().await;
    drop(inbox);
    // Everything in the main file (the pools close their connections on
    // threads of their own: the last one may not have checkpointed yet).
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", made.display()))
            .await
            .unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    if !mount_tmpfs(&mnt, "8m") {
        return;
    }
    let path = mnt.join("inbox.sqlite3");
    let result = async move {
        std::fs::copy(&made, &path).unwrap();
        let ro = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(path.parent().unwrap())
            .status()
            .unwrap();
        assert!(ro.success());
        let refused = Inbox::sqlite(&path).open().await.unwrap_err();
        assert!(
            refused.to_string().contains("cannot be written")
                || refused.to_string().contains("could not"),
            "{refused}"
        );
        let reader = Inbox::sqlite(&path).read_only(true).open().await.unwrap();
        assert_eq!(reader.counts().await.unwrap().events.total(), 3);
        assert_eq!(reader.history("<1@example.com>").await.unwrap().len(), 1);
        assert!(reader.replay(&Filter::dead()).await.is_err());
        reader.close().await;
    };
    let outcome = tokio::spawn(result).await;
    unmount(&dir.path().join("mnt"));
    outcome.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_wal_is_replaced_every_writer_stops() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::sqlite(dir.path().join("inbox.sqlite3"))
        .open()
        .await
        .unwrap();
    assert_eq!(post(&inbox, &numbered(0, 5)).await.0, 200);
    std::fs::remove_file(dir.path().join("inbox.sqlite3-wal")).unwrap();
    assert_eq!(post(&inbox, &numbered(5, 5)).await.0, 503);
    // Not only receiving: the worker's marks and the operations too.
    let replay = inbox.replay(&Filter::dead()).await.unwrap_err();
    assert!(
        replay.to_string().contains("removed or replaced"),
        "{replay}"
    );
    assert!(inbox.prune(Duration::ZERO).await.is_err());
    let handled = Arc::new(AtomicUsize::new(0));
    let worker = {
        let handled = handled.clone();
        inbox
            .worker(move |_job: Job| {
                handled.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), String>(()) }
            })
            .spawn()
    };
    settle().await;
    assert_eq!(handled.load(Ordering::SeqCst), 0, "no claim was made");
    worker.abort();
}

/// Every operation of the inbox can be spawned on a multi-threaded
/// runtime: checked when this file compiles (a future that is `Send` for
/// one lifetime only, as `Migrator::run` on a borrowed connection made
/// `open`'s, fails here).
#[test]
fn the_inbox_futures_can_be_spawned() {
    fn spawnable<T: Send + 'static>(_: T) {}
    let inbox: Option<Inbox> = None;
    let Some(inbox) = inbox else { return };
    spawnable(async { Inbox::sqlite("x").open().await });
    spawnable(async { Inbox::sqlite("x").migrate().await });
    let i = inbox.clone();
    spawnable(async move { i.replay(&Filter::dead()).await });
    let i = inbox.clone();
    spawnable(async move { i.history("<m@x>").await });
    let i = inbox.clone();
    spawnable(async move { i.prune(Duration::ZERO).await });
    let i = inbox.clone();
    spawnable(async move { i.counts().await });
    let i = inbox.clone();
    spawnable(async move { i.dead(10).await });
    spawnable(async move { inbox.store(numbered(0, 1), None).await });
}

async fn suppression_rows_of_the_old_address_form_are_moved_to_the_new_once() {
    // The old form lower-cased all of Unicode and kept Unicode domains as
    // written; the new one keeps non-ASCII case and writes domains as
    // A-labels. Opening a store of the old form moves its rows, merging
    // two rows that are one recipient now (the stronger suppression stays,
    // the counts add up), with their history.
    let (inbox, dir) = open(&clock()).await;
    inbox.close().await;
    let t = |ms: &str| time(&dir, ms);
    for sql in [
        format!(
            "INSERT INTO cmc_suppressions (recipient, reason, since, until, note, events, \
             hard_count, soft_times, unknown_count, updated_at) \
             VALUES ('user@例え.jp', 'unsubscribed', {}, NULL, NULL, '[]', 0, '[]', 0, {})",
            t("1"),
            t("1")
        ),
        format!(
            "INSERT INTO cmc_suppressions (recipient, reason, since, until, note, events, \
             hard_count, soft_times, unknown_count, updated_at) \
             VALUES ('user@xn--r8jz45g.jp', 'hard', {}, {}, NULL, '[]', 1, '[]', 2, {})",
            t("2"),
            t("9000000000000"),
            t("2")
        ),
        format!(
            "INSERT INTO cmc_suppressions (recipient, reason, since, until, note, events, \
             hard_count, soft_times, unknown_count, updated_at) \
             VALUES ('other@例え.jp', NULL, NULL, NULL, NULL, '[]', 0, '[]', 1, {})",
            t("1")
        ),
        format!(
            "INSERT INTO cmc_suppression_history (recipient, idempotency_key, change, reason, at) \
             VALUES ('user@例え.jp', NULL, 'added', 'unsubscribed', {})",
            t("1")
        ),
        "INSERT INTO cmc_suppressions_rekey (pending) VALUES (1)".to_owned(),
        // A worker kept the list (else a check says nobody does).
        format!(
            "INSERT INTO cmc_suppression_keeping (fact, at) VALUES ('kept', {})",
            t("1")
        ),
    ] {
        execute(&dir, &sql).await;
    }
    let inbox = Inbox::builder(&dir.url())
        .unwrap()
        .clock(clock())
        .open()
        .await
        .unwrap();
    let list = inbox.suppressions();
    let check = list.check("user@例え.jp").await.unwrap();
    assert!(check.suppressed, "{check:?}");
    let entries = list
        .list(&{
            let mut all = cmc_webhook::inbox::suppression::ListFilter::default();
            all.suppressed_only = false;
            all
        })
        .await
        .unwrap();
    let keys: Vec<&str> = entries.iter().map(|e| e.address.as_str()).collect();
    assert_eq!(keys, ["other@xn--r8jz45g.jp", "user@xn--r8jz45g.jp"]);
    let user = &entries[1];
    assert_eq!(user.reason.map(|r| r.as_str()), Some("unsubscribed"));
    assert_eq!((user.hard_bounces, user.unknown_bounces), (1, 2));
    assert_eq!(list.history("user@xn--r8jz45g.jp").await.unwrap().len(), 1);
    // Once: the request is gone, and opening again moves nothing.
    inbox.close().await;
    let again = Inbox::builder(&dir.url()).unwrap().open().await.unwrap();
    assert_eq!(
        again
            .suppressions()
            .list(&{
                let mut all = cmc_webhook::inbox::suppression::ListFilter::default();
                all.suppressed_only = false;
                all
            })
            .await
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn a_mistyped_store_address_is_never_echoed() {
    // It may carry a password anywhere: only its scheme is named.
    for url in [
        "pg://u@h/db?password=SECRETPW",
        "postgres//h/db?password=SECRETPW",
        "u:SECRETPW@h",
        "mysql://u:SECRETPW@h/db",
    ] {
        let err = Inbox::builder(url).unwrap_err().to_string();
        assert!(!err.contains("SECRETPW"), "{err}");
        assert!(err.contains("sqlite:PATH"), "{err}");
    }
}

/// Each test of behaviour, once per backend.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::BACKEND.scope(super::Backend::Sqlite, super::$test()).await
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(admin) = crate::common::inbox::postgres_server("inbox (PostgreSQL runs)") else { return };
                    super::BACKEND.scope(super::Backend::Postgres(admin), super::$test()).await
                }
            )*
        }
    };
}

on_both_backends!(
    each_event_is_stored_once_whatever_the_encoding_and_repeats_are_counted,
    a_mail_is_stored_once_with_its_attachments_and_reads_back_equal,
    rows_are_handled_in_order_of_arrival,
    a_failing_handler_is_retried_after_its_backoff_then_the_row_is_dead,
    a_handler_that_panics_counts_as_a_failed_attempt,
    the_rows_of_a_worker_that_died_are_claimed_again_when_their_lease_expires,
    a_lease_that_expires_on_the_last_attempt_makes_the_row_dead,
    shutdown_waits_for_handlers_in_flight_and_releases_those_past_the_deadline,
    the_worker_wakes_at_once_when_a_row_is_stored,
    replay_takes_dead_rows_by_filter_and_done_rows_by_key,
    history_lists_a_messages_events_in_the_order_cmc_dated_them,
    prune_deletes_rows_done_before_the_retention_with_their_attachments,
    a_row_that_does_not_read_back_is_dead_and_the_others_go_on,
    a_handler_running_past_its_lease_keeps_its_row_and_runs_once,
    a_run_cancelled_at_shutdown_does_not_use_up_an_attempt,
    attachments_of_several_chunks_and_empty_ones_read_back_equal,
    a_message_id_of_any_length_is_stored_found_and_replayed,
    a_statement_error_fails_only_the_request_that_caused_it,
    a_replay_of_many_rows_takes_each_once_in_slices,
    rows_of_a_claim_whose_answer_was_lost_are_taken_back_by_the_same_worker,
    a_hung_handler_is_cancelled_at_its_timeout_as_a_failed_attempt,
    a_history_skips_and_flags_a_row_that_does_not_read_back,
    suppression_rows_of_the_old_address_form_are_moved_to_the_new_once,
);
