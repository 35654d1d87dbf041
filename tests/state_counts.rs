//! The rows per state that `Inbox::counts`, `counts_by_source` and the
//! deliveries' `counts` read are kept by the triggers of migration 0014
//! (`cmc_state_counts`), not counted: after each step of a mixed workload
//! (stores from two sources, a worker's claims, successes, retries and
//! deaths, mailbox deliveries delivered, bounced and dead, replays,
//! releases at shutdown, retention prunes, an application's own SQL) they
//! must equal a real `GROUP BY` of the tables. On a SQLite file, and on
//! PostgreSQL when `CMC_POSTGRES_URL` names a server.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cmc_webhook::inbox::mailbox::{DeliveryFilter, Handled, MailJob, Mailbox, Mailboxes};
use cmc_webhook::inbox::{Backoff, Filter, Inbox, Job, Kind};
use cmc_webhook::{Source, Sourced, Webhook};

/// (table, scope, state) → rows.
type Tally = BTreeMap<(String, String, String), i64>;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// A batch of `n` delivery events numbered from `from`.
fn events(from: usize, n: usize) -> Webhook {
    let records: Vec<String> = (from..from + n)
        .map(|i| {
            format!(
                r#"{{"created":"2026-01-01 09:00:00","status":"queued","to":"u{i}@example.jp","messageId":"<{i}@example.com>"}}"#
            )
        })
        .collect();
    Webhook::parse(
        "application/json",
        Bytes::from(format!(
            r#"{{"event_type":"deliveries","server_composition":"pro","event":{{"deliveries":[{}]}}}}"#,
            records.join(",")
        )),
    )
    .unwrap()
}

/// An inbound mail to `to`.
fn mail(to: &str, subject: &str) -> Webhook {
    let body = serde_json::json!({
        "server_composition": "pro",
        "filter": "f",
        "headers": [{"name": "Subject", "value": subject}],
        "subject": subject,
        "envelope-from": "sender@example.com",
        "envelope-to": to,
        "text": "hello\r\n",
    });
    Webhook::parse("application/json", Bytes::from(body.to_string())).unwrap()
}

/// The real counts: a `GROUP BY` of each table, on a connection of the
/// test's own.
async fn grouped(url: &str) -> Tally {
    const QUERIES: [(&str, &str); 3] = [
        (
            "events",
            "SELECT source, state, COUNT(*) FROM cmc_events GROUP BY source, state",
        ),
        (
            "mails",
            "SELECT source, state, COUNT(*) FROM cmc_mails GROUP BY source, state",
        ),
        (
            "deliveries",
            "SELECT COALESCE(mailbox, ''), state, COUNT(*) FROM cmc_mail_deliveries \
             GROUP BY COALESCE(mailbox, ''), state",
        ),
    ];
    let mut tally = Tally::new();
    for (table, sql) in QUERIES {
        let rows: Vec<(String, String, i64)> = if url.starts_with("sqlite:") {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
        } else {
            postgres_rows(url, sql).await
        };
        for (scope, state, n) in rows {
            tally.insert((table.to_owned(), scope, state), n);
        }
    }
    tally
}

#[cfg(feature = "postgres")]
async fn postgres_rows(url: &str, sql: &'static str) -> Vec<(String, String, i64)> {
    let mut conn = common::inbox::pg_store(url).await;
    sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
}

#[cfg(not(feature = "postgres"))]
async fn postgres_rows(url: &str, _sql: &'static str) -> Vec<(String, String, i64)> {
    unreachable!("no PostgreSQL store without the feature: {url}")
}

/// What the inbox reads from its counters, in the same shape.
async fn counted(inbox: &Inbox) -> Tally {
    use cmc_webhook::inbox::State;
    let mut tally = Tally::new();
    for (source, counts) in inbox.counts_by_source().await.unwrap() {
        for (table, kind) in [("events", Kind::Event), ("mails", Kind::Mail)] {
            for state in [State::Pending, State::Running, State::Done, State::Dead] {
                let n = counts.of(kind).get(state);
                if n > 0 {
                    tally.insert(
                        (table.to_owned(), source.clone(), state.as_str().to_owned()),
                        n as i64,
                    );
                }
            }
        }
    }
    // The totals agree with the sum of the sources.
    let all = inbox.counts().await.unwrap();
    for (table, kind) in [("events", Kind::Event), ("mails", Kind::Mail)] {
        for state in [State::Pending, State::Running, State::Done, State::Dead] {
            let sum: i64 = tally
                .iter()
                .filter(|((t, _, s), _)| t == table && s == state.as_str())
                .map(|(_, n)| n)
                .sum();
            assert_eq!(all.of(kind).get(state) as i64, sum, "{table} {state:?}");
        }
    }
    for m in inbox.deliveries().counts().await.unwrap() {
        for state in cmc_webhook::inbox::mailbox::DeliveryState::ALL {
            let n = m.get(state);
            if n > 0 {
                tally.insert(
                    (
                        "deliveries".to_owned(),
                        m.mailbox.clone().unwrap_or_default(),
                        state.as_str().to_owned(),
                    ),
                    n as i64,
                );
            }
        }
    }
    tally
}

async fn same(inbox: &Inbox, url: &str, step: &str) -> Tally {
    let real = grouped(url).await;
    assert_eq!(counted(inbox).await, real, "{step} on {url}");
    real
}

/// Waits until the real counts have no pending or running event or mail
/// and no open delivery.
async fn settled(url: &str) -> Tally {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let real = grouped(url).await;
        let open = real.iter().any(|((_, _, state), n)| {
            *n > 0
                && matches!(
                    state.as_str(),
                    "pending" | "running" | "processing" | "failed"
                )
        });
        if !open {
            return real;
        }
        assert!(Instant::now() < deadline, "not settled: {real:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn quick() -> Backoff {
    Backoff::exponential(Duration::from_millis(1))
        .max(Duration::from_millis(5))
        .jitter(0.0)
}

fn mailboxes() -> Mailboxes {
    Mailboxes::new()
        .mailbox(Mailbox::new("fine", |_job: MailJob| async {
            Ok::<(), String>(())
        }))
        .unwrap()
        .mailbox(
            Mailbox::new("doomed", |_job: MailJob| async {
                Err::<(), _>("the ticket system is down")
            })
            .max_attempts(2)
            .backoff(quick()),
        )
        .unwrap()
        .mailbox(Mailbox::new("strict", |_job: MailJob| async {
            Ok::<_, String>(Handled::bounced("no ticket"))
        }))
        .unwrap()
        .route("fine@example.jp", "fine")
        .unwrap()
        .route("doomed@example.jp", "doomed")
        .unwrap()
        .route("strict@example.jp", "strict")
        .unwrap()
}

#[tokio::test]
async fn the_counters_equal_a_group_by_after_a_mixed_workload() {
    let dir = dir();
    for url in common::inbox::stores(
        dir.path(),
        "counters",
        "state counts on PostgreSQL",
        "cmc_counts",
    )
    .await
    {
        let inbox = Inbox::open(&url).await.unwrap();
        same(&inbox, &url, "empty").await;

        // Stores: events from two sources (one batch repeated), mails to
        // three mailboxes and to no mailbox.
        let sandbox = Source::new("sandbox", jiff::tz::TimeZone::UTC, None);
        inbox.store(events(0, 40), None).await.unwrap();
        inbox.store(events(0, 40), None).await.unwrap();
        inbox
            .store_sourced(Sourced(sandbox.clone(), events(100, 15)), None)
            .await
            .unwrap();
        for (i, to) in ["fine", "fine", "doomed", "strict", "nobody"]
            .iter()
            .enumerate()
        {
            let subject = format!("to {to} {i}");
            inbox
                .store(mail(&format!("{to}@example.jp"), &subject), None)
                .await
                .unwrap();
        }
        let stored = same(&inbox, &url, "stored").await;
        assert_eq!(
            stored[&("events".into(), "default".into(), "pending".into())],
            40
        );

        // A worker: events whose number ends in 0 die after 2 attempts,
        // those ending in 1 fail once then succeed, the rest succeed;
        // mails are routed and delivered, bounced or dead.
        let tries = Arc::new(AtomicUsize::new(0));
        let runs = tries.clone();
        let worker = inbox
            .worker(move |job: Job| {
                runs.fetch_add(1, Ordering::SeqCst);
                let id = match &job.item {
                    cmc_webhook::inbox::Item::Event(e) => e.message_id().unwrap_or("").to_owned(),
                    _ => String::new(),
                };
                let n: usize = id
                    .trim_matches(|c| c == '<' || c == '>')
                    .split('@')
                    .next()
                    .unwrap_or("")
                    .parse()
                    .unwrap_or(2);
                let attempt = job.attempt;
                async move {
                    match n % 10 {
                        0 => Err(format!("event {n} cannot be handled")),
                        1 if attempt == 1 => Err(format!("event {n}: not yet")),
                        _ => Ok(()),
                    }
                }
            })
            .max_attempts(2)
            .backoff(quick())
            .concurrency(4)
            .mailboxes(mailboxes())
            .spawn();
        // Compared while it runs too: each claim and settlement is in
        // the transaction of its counter's change.
        for _ in 0..5 {
            let real: i64 = grouped(&url)
                .await
                .iter()
                .filter(|((t, _, _), _)| t == "events")
                .map(|(_, n)| n)
                .sum();
            let seen = inbox.counts().await.unwrap().events.total();
            assert_eq!(
                seen as i64, real,
                "rows appear or vanish while the worker runs"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let real = settled(&url).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        assert_eq!(counted(&inbox).await, real, "after the worker on {url}");
        assert_eq!(real[&("events".into(), "default".into(), "dead".into())], 4);
        assert_eq!(
            real[&("deliveries".into(), "doomed".into(), "dead".into())],
            1
        );
        assert_eq!(
            real[&("deliveries".into(), "strict".into(), "bounced".into())],
            1
        );
        assert_eq!(
            real[&("deliveries".into(), "".into(), "unrouted".into())],
            1
        );

        // Replays: the dead events of one source, the dead delivery.
        assert_eq!(
            inbox
                .replay(&Filter::dead().kind(Kind::Event))
                .await
                .unwrap(),
            4 + 2
        );
        inbox
            .deliveries()
            .replay(&DeliveryFilter::all().mailbox("doomed"))
            .await
            .unwrap();
        same(&inbox, &url, "replayed").await;

        // A worker stopped while its handlers hang: the rows it holds are
        // released to pending.
        let worker = inbox
            .worker(|_job: Job| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<(), String>(())
            })
            .concurrency(2)
            .spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !grouped(&url)
            .await
            .iter()
            .any(|((t, _, s), n)| t == "events" && s == "running" && *n > 0)
        {
            assert!(Instant::now() < deadline, "no row was claimed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        same(&inbox, &url, "claimed").await;
        let _ = worker.shutdown(Duration::from_millis(50)).await;
        same(&inbox, &url, "released").await;

        // Retention: every done event and mail, the fine mailbox's
        // delivered rows (and their mails, by cascade).
        tokio::time::sleep(Duration::from_millis(5)).await;
        inbox
            .deliveries()
            .prune("fine", Duration::ZERO)
            .await
            .unwrap();
        same(&inbox, &url, "deliveries pruned").await;
        let pruned = inbox.prune(Duration::ZERO).await.unwrap();
        assert!(pruned.events > 0, "{pruned:?}");
        same(&inbox, &url, "pruned").await;

        // An application's own SQL on the tables, on its own connection.
        let own = [
            "UPDATE cmc_events SET state = 'dead', last_error = 'by hand' WHERE state = 'pending'",
            "DELETE FROM cmc_events WHERE state = 'dead' AND source = 'sandbox'",
            "UPDATE cmc_events SET source = 'moved' WHERE state = 'dead'",
        ];
        for sql in own {
            if url.starts_with("sqlite:") {
                use sqlx::Connection;
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            } else {
                execute_postgres(&url, sql).await;
            }
            same(&inbox, &url, sql).await;
        }
        // PostgreSQL appends the differences; reading the counts folds
        // them into one row per key.
        if !url.starts_with("sqlite:") {
            inbox.store(events(300, 5), None).await.unwrap();
            inbox.store(events(400, 5), None).await.unwrap();
            let rows =
                || async { scalar_postgres(&url, "SELECT COUNT(*) FROM cmc_state_counts").await };
            let before = rows().await;
            let real = same(&inbox, &url, "stored again").await;
            let after = rows().await;
            assert_eq!(after, real.values().filter(|n| **n != 0).count() as i64);
            // Two appended rows of one key became one.
            assert!(
                before == after + 1,
                "{before} rows before the fold, {after} after"
            );
        }
        inbox.close().await;
        assert!(tries.load(Ordering::SeqCst) > 55);
    }
}

#[cfg(feature = "postgres")]
async fn execute_postgres(url: &str, sql: &'static str) {
    let mut conn = common::inbox::pg_store(url).await;
    sqlx::query(sql).execute(&mut conn).await.unwrap();
}

#[cfg(feature = "postgres")]
async fn scalar_postgres(url: &str, sql: &'static str) -> i64 {
    let mut conn = common::inbox::pg_store(url).await;
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

#[cfg(not(feature = "postgres"))]
async fn scalar_postgres(url: &str, _sql: &'static str) -> i64 {
    unreachable!("no PostgreSQL store without the feature: {url}")
}

#[cfg(not(feature = "postgres"))]
async fn execute_postgres(url: &str, _sql: &'static str) {
    unreachable!("no PostgreSQL store without the feature: {url}")
}

/// What undoes migration 0014 on each backend: the store as the release
/// before it left it.
const UNDO_SQLITE: &[&str] = &[
    "DROP TRIGGER cmc_events_count_insert",
    "DROP TRIGGER cmc_events_count_update",
    "DROP TRIGGER cmc_events_count_delete",
    "DROP TRIGGER cmc_mails_count_insert",
    "DROP TRIGGER cmc_mails_count_update",
    "DROP TRIGGER cmc_mails_count_delete",
    "DROP TRIGGER cmc_mail_deliveries_count_insert",
    "DROP TRIGGER cmc_mail_deliveries_count_update",
    "DROP TRIGGER cmc_mail_deliveries_count_delete",
    "DROP TABLE cmc_state_counts",
    "DROP INDEX cmc_events_dead_source",
    "DROP INDEX cmc_mails_dead_source",
    "DELETE FROM cmc_webhook_migrations WHERE version = 14",
];
const UNDO_POSTGRES: &[&str] = &[
    "DROP FUNCTION cmc_count_rows() CASCADE",
    "DROP FUNCTION cmc_count_deliveries() CASCADE",
    "DROP TABLE cmc_state_counts",
    "DROP INDEX cmc_events_dead_source",
    "DROP INDEX cmc_mails_dead_source",
    "DELETE FROM cmc_webhook_migrations WHERE version = 14",
];

#[tokio::test]
async fn the_migration_counts_the_rows_a_store_already_has() {
    let dir = dir();
    for url in common::inbox::stores(
        dir.path(),
        "migrated",
        "state counts on PostgreSQL",
        "cmc_counts",
    )
    .await
    {
        let inbox = Inbox::open(&url).await.unwrap();
        inbox.store(events(0, 30), None).await.unwrap();
        inbox
            .store(mail("nobody@example.jp", "unrouted"), None)
            .await
            .unwrap();
        inbox
            .store(mail("fine@example.jp", "fine"), None)
            .await
            .unwrap();
        let worker = inbox
            .worker(|_job: Job| async { Ok::<(), String>(()) })
            .mailboxes(mailboxes())
            .spawn();
        settled(&url).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        inbox.store(events(100, 7), None).await.unwrap();
        inbox.close().await;

        // The release before: no counters; then rows change without them.
        let sqlite = url.starts_with("sqlite:");
        let undo = if sqlite { UNDO_SQLITE } else { UNDO_POSTGRES };
        let before_release = [
            "UPDATE cmc_events SET state = 'dead', last_error = 'x' WHERE id % 3 = 0",
            "DELETE FROM cmc_events WHERE id % 5 = 0",
        ];
        for sql in undo.iter().chain(before_release.iter()) {
            if sqlite {
                use sqlx::Connection;
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query(*sql).execute(&mut conn).await.unwrap();
            } else {
                execute_postgres(&url, sql).await;
            }
        }

        // Opening applies 0014 again: it counts what is there.
        let inbox = Inbox::open(&url).await.unwrap();
        let real = same(&inbox, &url, "migrated").await;
        assert!(real[&("events".into(), "default".into(), "dead".into())] > 0);
        assert_eq!(
            real[&("deliveries".into(), "".into(), "unrouted".into())],
            1
        );
        // And keeps them from then on.
        inbox.store(events(200, 3), None).await.unwrap();
        same(&inbox, &url, "stored after the migration").await;
        inbox.close().await;
    }
}

/// Writers and readers at once (on PostgreSQL the readers fold what the
/// writers append, two folds can meet): nothing is counted twice or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_stay_exact_with_writers_and_folds_at_once() {
    let dir = dir();
    for url in common::inbox::stores(
        dir.path(),
        "concurrent",
        "state counts on PostgreSQL",
        "cmc_counts",
    )
    .await
    {
        let inbox = Inbox::open(&url).await.unwrap();
        let worker = inbox
            .worker(|_job: Job| async { Ok::<(), String>(()) })
            .concurrency(8)
            .spawn();
        let mut tasks = Vec::new();
        for w in 0..4 {
            let inbox = inbox.clone();
            tasks.push(tokio::spawn(async move {
                for b in 0..15 {
                    inbox
                        .store(events(10_000 * (w + 1) + b * 10, 10), None)
                        .await
                        .unwrap();
                }
            }));
        }
        for _ in 0..2 {
            let inbox = inbox.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..30 {
                    inbox.counts().await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let real = settled(&url).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            real[&("events".into(), "default".into(), "done".into())],
            600
        );
        same(&inbox, &url, "after writers and folds at once").await;
        inbox.close().await;
    }
}

/// What the counters' triggers cannot see, and the recount that repairs
/// it. On PostgreSQL a `TRUNCATE` (with `CASCADE`: the deliveries too),
/// while folds run, is counted by the triggers of migration 0015; with
/// triggers disabled the counts drift. On SQLite an application's
/// connection without `recursive_triggers` replaces rows (`REPLACE`
/// deletes without the DELETE trigger). `Inbox::recount` rebuilds the
/// counts from the rows and says which were wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_is_counted_and_a_recount_repairs_what_triggers_miss() {
    let dir = dir();
    for url in common::inbox::stores(
        dir.path(),
        "repair",
        "state counts on PostgreSQL",
        "cmc_counts",
    )
    .await
    {
        let inbox = Inbox::open(&url).await.unwrap();
        inbox.store(events(0, 20), None).await.unwrap();
        for i in 0..3 {
            inbox
                .store(mail("nobody@example.jp", &format!("unrouted {i}")), None)
                .await
                .unwrap();
        }
        same(&inbox, &url, "stored").await;
        assert_eq!(inbox.recount().await.unwrap(), []);

        let sqlite = url.starts_with("sqlite:");
        if !sqlite {
            // Folds at the same time as the TRUNCATE.
            let folding = tokio::spawn({
                let inbox = inbox.clone();
                async move {
                    for _ in 0..40 {
                        inbox.counts().await.unwrap();
                    }
                }
            });
            execute_postgres(&url, "TRUNCATE cmc_mails CASCADE").await;
            folding.await.unwrap();
            let real = same(&inbox, &url, "after TRUNCATE").await;
            assert!(
                real.keys().all(|(table, _, _)| table == "events"),
                "{real:?}"
            );
            assert_eq!(inbox.counts().await.unwrap().mails.total(), 0);
            assert_eq!(inbox.recount().await.unwrap(), []);

            for sql in [
                "ALTER TABLE cmc_events DISABLE TRIGGER USER",
                "DELETE FROM cmc_events WHERE id % 2 = 0",
                "ALTER TABLE cmc_events ENABLE TRIGGER USER",
            ] {
                execute_postgres(&url, sql).await;
            }
        } else {
            // (sqlx's connections leave `recursive_triggers` off.)
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("REPLACE INTO cmc_events SELECT * FROM cmc_events WHERE id % 2 = 0")
                .execute(&mut conn)
                .await
                .unwrap();
        }
        let real = grouped(&url).await;
        let key = (
            "events".to_owned(),
            "default".to_owned(),
            "pending".to_owned(),
        );
        assert_eq!(real[&key], if sqlite { 20 } else { 10 });
        assert_ne!(counted(&inbox).await, real, "the counts drifted");

        let fixed = inbox.recount().await.unwrap();
        assert_eq!(fixed.len(), 1, "{fixed:?}");
        assert_eq!(
            (
                fixed[0].table.as_str(),
                fixed[0].scope.as_str(),
                fixed[0].state.as_str()
            ),
            ("events", "default", "pending")
        );
        assert_eq!(
            (fixed[0].was, fixed[0].now),
            (if sqlite { 30 } else { 20 }, real[&key])
        );
        same(&inbox, &url, "recounted").await;
        assert_eq!(inbox.recount().await.unwrap(), []);
        // And the triggers keep them from there.
        inbox.store(events(500, 4), None).await.unwrap();
        same(&inbox, &url, "stored after the recount").await;
        inbox.close().await;
    }
}

/// The key of the advisory lock a PostgreSQL recount takes first (the
/// crate's `RECOUNT_LOCK`): a session of the test holds it to keep a
/// recount waiting.
#[cfg(feature = "postgres")]
const RECOUNT_KEY: i64 = 7301185143226478963;

/// Whether a lock of this database is waited for.
#[cfg(feature = "postgres")]
async fn someone_waits(conn: &mut sqlx::PgConnection) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND database = \
         (SELECT oid FROM pg_database WHERE datname = current_database()))",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}

/// A PostgreSQL recount locks no table: with a worker's round open
/// (deliveries then mails, its order of writes) it neither deadlocks nor
/// waits for it, and while a recount waits (here for another recount,
/// whose lock a session of the test holds) receiving goes on.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recount_locks_no_table_and_receiving_goes_on() {
    use sqlx::Connection;
    let dir = dir();
    for url in common::inbox::stores(
        dir.path(),
        "unlocked",
        "recounts on PostgreSQL",
        "cmc_counts",
    )
    .await
    .into_iter()
    .filter(|url| !url.starts_with("sqlite:"))
    {
        let inbox = Inbox::open(&url).await.unwrap();
        inbox.store(events(0, 5), None).await.unwrap();
        inbox
            .store(mail("nobody@example.jp", "unrouted"), None)
            .await
            .unwrap();

        // A worker's round, left open: deliveries, then mails.
        let mut round = common::inbox::pg_store(&url).await;
        sqlx::query("BEGIN").execute(&mut round).await.unwrap();
        sqlx::query("UPDATE cmc_mail_deliveries SET state = state")
            .execute(&mut round)
            .await
            .unwrap();
        sqlx::query("UPDATE cmc_mails SET state = state")
            .execute(&mut round)
            .await
            .unwrap();

        // Another recount holds the recounts' lock: this one waits.
        let mut other = common::inbox::pg_store(&url).await;
        sqlx::query("BEGIN").execute(&mut other).await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(RECOUNT_KEY)
            .execute(&mut other)
            .await
            .unwrap();
        let recount = tokio::spawn({
            let inbox = inbox.clone();
            async move { inbox.recount().await }
        });
        let mut watch = common::inbox::pg_store(&url).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !someone_waits(&mut watch).await {
            assert!(Instant::now() < deadline, "the recount never waited");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Receiving is not held off by the waiting recount.
        tokio::time::timeout(Duration::from_secs(20), inbox.store(events(100, 3), None))
            .await
            .expect("an insert waited for the recount")
            .unwrap();
        // Nor is the round's own next write (no deadlock).
        sqlx::query(
            "UPDATE cmc_events SET state = state WHERE id = (SELECT MIN(id) FROM cmc_events)",
        )
        .execute(&mut round)
        .await
        .unwrap();

        // Let the recount go: it finishes with the round still open.
        sqlx::query("COMMIT").execute(&mut other).await.unwrap();
        let fixed = tokio::time::timeout(Duration::from_secs(20), recount)
            .await
            .expect("the recount waited for the worker's round")
            .unwrap()
            .unwrap();
        assert_eq!(fixed, [], "nothing was wrong");
        sqlx::query("COMMIT").execute(&mut round).await.unwrap();
        let _ = (
            round.close().await,
            other.close().await,
            watch.close().await,
        );

        // A drift (triggers off), and a recount while writers write: exact.
        for sql in [
            "ALTER TABLE cmc_events DISABLE TRIGGER USER",
            "DELETE FROM cmc_events WHERE id % 2 = 0",
            "ALTER TABLE cmc_events ENABLE TRIGGER USER",
        ] {
            execute_postgres(&url, sql).await;
        }
        let writers = tokio::spawn({
            let inbox = inbox.clone();
            async move {
                for b in 0..20 {
                    inbox.store(events(1000 + b * 10, 10), None).await.unwrap();
                }
            }
        });
        let fixed = inbox.recount().await.unwrap();
        writers.await.unwrap();
        assert_eq!(fixed.len(), 1, "{fixed:?}");
        assert!(fixed[0].was > fixed[0].now, "{fixed:?}");
        same(&inbox, &url, "recounted while writing").await;
        assert_eq!(inbox.recount().await.unwrap(), []);
        inbox.close().await;
    }
}

/// A read of the counts does not wait for the counters' rows another
/// session holds (a fold, a recount of the release before): it reads them
/// unfolded, with the same sums.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn reading_the_counts_does_not_wait_for_a_fold() {
    let dir = dir();
    for url in common::inbox::stores(dir.path(), "nowait", "folds on PostgreSQL", "cmc_counts")
        .await
        .into_iter()
        .filter(|url| !url.starts_with("sqlite:"))
    {
        let inbox = Inbox::open(&url).await.unwrap();
        inbox.store(events(0, 5), None).await.unwrap();
        let mut holder = common::inbox::pg_store(&url).await;
        sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
        sqlx::query("SELECT n FROM cmc_state_counts FOR UPDATE")
            .fetch_all(&mut holder)
            .await
            .unwrap();
        inbox.store(events(100, 2), None).await.unwrap();
        let counts = tokio::time::timeout(Duration::from_secs(20), inbox.counts())
            .await
            .expect("the read waited for the fold's rows")
            .unwrap();
        assert_eq!(counts.events.pending, 7);
        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
        same(&inbox, &url, "after the held rows").await;
        inbox.close().await;
    }
}

/// The counters' functions search the store's schema, then `pg_temp`
/// last: a session's own `TEMP TABLE cmc_state_counts` does not take the
/// counts of its statements, in a store made new and (migration 0017) in
/// one made by the release before.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_temporary_table_does_not_take_the_counts() {
    let dir = dir();
    for url in common::inbox::stores(
        dir.path(),
        "temp",
        "search path on PostgreSQL",
        "cmc_counts",
    )
    .await
    .into_iter()
    .filter(|url| !url.starts_with("sqlite:"))
    {
        let inbox = Inbox::open(&url).await.unwrap();
        inbox.store(events(0, 6), None).await.unwrap();
        inbox.close().await;
        for (step, made_before) in [("a new store", false), ("a store migrated by 0017", true)] {
            if made_before {
                // As the release before left them: the schema alone.
                for sql in [
                    "ALTER FUNCTION cmc_count_rows() SET search_path = cmc_webhook",
                    "ALTER FUNCTION cmc_count_deliveries() SET search_path = cmc_webhook",
                    "ALTER FUNCTION cmc_count_truncate() SET search_path = cmc_webhook",
                    "DELETE FROM cmc_webhook_migrations WHERE version = 17",
                ] {
                    execute_postgres(&url, sql).await;
                }
            }
            let inbox = Inbox::open(&url).await.unwrap();
            let mut session = common::inbox::pg_store(&url).await;
            sqlx::query(
                "CREATE TEMP TABLE cmc_state_counts (tbl TEXT, scope TEXT, state TEXT, n BIGINT)",
            )
            .execute(&mut session)
            .await
            .unwrap();
            sqlx::query(
                "UPDATE cmc_events SET state = 'dead', last_error = 'x' \
                 WHERE id IN (SELECT id FROM cmc_events WHERE state = 'pending' ORDER BY id LIMIT 1)",
            )
            .execute(&mut session)
            .await
            .unwrap();
            let taken: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_temp.cmc_state_counts")
                .fetch_one(&mut session)
                .await
                .unwrap();
            assert_eq!(taken, 0, "{step}: the temporary table took the counts");
            same(&inbox, &url, step).await;
            inbox.close().await;
        }
    }
}

/// A counter whose sum is negative (it missed rows that were inserted
/// with triggers off, then deleted) reads as 0, not as 2^64 - n, until a
/// recount repairs it.
#[tokio::test]
async fn a_negative_counter_reads_as_zero() {
    let dir = dir();
    for url in common::inbox::stores(
        dir.path(),
        "negative",
        "state counts on PostgreSQL",
        "cmc_counts",
    )
    .await
    {
        let inbox = Inbox::open(&url).await.unwrap();
        inbox.store(events(0, 3), None).await.unwrap();
        inbox
            .store(mail("nobody@example.jp", "unrouted"), None)
            .await
            .unwrap();
        let sqlite = url.starts_with("sqlite:");
        // (No worker: the mail is not routed, and has no delivery.)
        // SQLite keeps a row per counter; PostgreSQL appends.
        let drift = if sqlite {
            [
                "UPDATE cmc_state_counts SET n = n - 8 WHERE tbl = 'events' AND state = 'pending'",
                "INSERT INTO cmc_state_counts VALUES ('deliveries', '', 'unrouted', -4)",
            ]
        } else {
            [
                "INSERT INTO cmc_state_counts VALUES ('events', 'default', 'pending', -8)",
                "INSERT INTO cmc_state_counts VALUES ('deliveries', '', 'unrouted', -4)",
            ]
        };
        for sql in drift {
            if sqlite {
                use sqlx::Connection;
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            } else {
                execute_postgres(&url, sql).await;
            }
        }
        let counts = inbox.counts().await.unwrap();
        assert_eq!(counts.events.pending, 0, "{url}");
        assert_eq!(counts.events.total(), 0, "{url}");
        assert_eq!(counts.mails.pending, 1, "{url}");
        let by_source = inbox.counts_by_source().await.unwrap();
        assert_eq!(by_source["default"].events.pending, 0, "{url}");
        let deliveries = inbox.deliveries().counts().await.unwrap();
        let unrouted = cmc_webhook::inbox::mailbox::DeliveryState::Unrouted;
        assert!(
            deliveries.iter().all(|m| m.get(unrouted) == 0),
            "{deliveries:?}"
        );

        let mut fixed = inbox.recount().await.unwrap();
        fixed.sort_by(|a, b| a.table.cmp(&b.table));
        let fixed: Vec<_> = fixed
            .iter()
            .map(|r| (r.table.as_str(), r.state.as_str(), r.was, r.now))
            .collect();
        assert_eq!(
            fixed,
            [
                ("deliveries", "unrouted", -4, 0),
                ("events", "pending", -5, 3)
            ],
            "{url}"
        );
        same(&inbox, &url, "recounted").await;
        inbox.close().await;
    }
}
