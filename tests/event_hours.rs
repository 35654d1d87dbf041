//! The events per hour of the closed hours are counted once and kept in
//! the store (`cmc_event_hours`, migration 0016) by `Inbox::hours`: read
//! back equal to a live `GROUP BY`, an hour without events recorded as
//! counted, the open hour never kept, two readers filling at once, a
//! read-only store answering, and the retention dropping old hours. On a
//! SQLite file, and on PostgreSQL when `CMC_POSTGRES_URL` names a server.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cmc_webhook::inbox::browse::HourCount;
use cmc_webhook::inbox::{Inbox, ManualClock};
use cmc_webhook::Webhook;
use jiff::{SignedDuration, Timestamp};

fn dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// The start of the test's first hour.
fn t0() -> Timestamp {
    "2026-03-02T00:00:00Z".parse().unwrap()
}

fn at(hours: i64, minutes: i64) -> Timestamp {
    t0() + SignedDuration::from_hours(hours) + SignedDuration::from_mins(minutes)
}

/// A batch of delivery events numbered from `from`, cycling `statuses`.
fn events(from: usize, n: usize, statuses: &[&str]) -> Webhook {
    let records: Vec<String> = (from..from + n)
        .map(|i| {
            format!(
                r#"{{"created":"2026-03-02 09:00:00","status":"{}","to":"u{i}@example.jp","messageId":"<{i}@example.com>"}}"#,
                statuses[i % statuses.len()]
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

/// Counts in one order, for comparing.
fn sorted(mut counts: Vec<HourCount>) -> Vec<(Timestamp, String, Option<String>, u64)> {
    let mut out: Vec<_> = counts
        .drain(..)
        .map(|c| (c.hour, c.event_type, c.status, c.count))
        .collect();
    out.sort();
    out
}

async fn open(url: &str, clock: &ManualClock) -> Inbox {
    Inbox::builder(url)
        .unwrap()
        .clock(clock.clone())
        .open()
        .await
        .unwrap()
}

/// One number from the store, on a connection of the test's own.
async fn scalar(url: &str, sql: &'static str) -> i64 {
    if url.starts_with("sqlite:") {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        return sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
    }
    scalar_postgres(url, sql).await
}

async fn execute(url: &str, sql: &'static str) {
    if url.starts_with("sqlite:") {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut conn).await.unwrap();
        return;
    }
    execute_postgres(url, sql).await
}

#[cfg(feature = "postgres")]
async fn scalar_postgres(url: &str, sql: &'static str) -> i64 {
    let mut conn = common::inbox::pg_store(url).await;
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

#[cfg(feature = "postgres")]
async fn execute_postgres(url: &str, sql: &'static str) {
    let mut conn = common::inbox::pg_store(url).await;
    sqlx::query(sql).execute(&mut conn).await.unwrap();
}

#[cfg(not(feature = "postgres"))]
async fn scalar_postgres(url: &str, _sql: &'static str) -> i64 {
    unreachable!("no PostgreSQL store without the feature: {url}")
}

#[cfg(not(feature = "postgres"))]
async fn execute_postgres(url: &str, _sql: &'static str) {
    unreachable!("no PostgreSQL store without the feature: {url}")
}

/// Hours 0 and 2 hold events, 1, 3 and 4 none, 5 (the open hour at 5:30)
/// some; the clock is left at 5:30.
async fn fill(inbox: &Inbox, clock: &ManualClock) {
    clock.set(at(0, 10));
    inbox
        .store(events(0, 30, &["queued", "succeeded", "failed"]), None)
        .await
        .unwrap();
    clock.set(at(0, 59));
    inbox
        .store(events(30, 4, &["deferred"]), None)
        .await
        .unwrap();
    clock.set(at(2, 0));
    inbox
        .store(events(40, 7, &["queued", "succeeded"]), None)
        .await
        .unwrap();
    clock.set(at(5, 1));
    inbox.store(events(50, 3, &["queued"]), None).await.unwrap();
    clock.set(at(5, 30));
}

#[tokio::test]
async fn closed_hours_are_counted_once_and_read_back_equal_to_a_group_by() {
    let dir = dir();
    for url in
        common::inbox::stores(dir.path(), "once", "event hours on PostgreSQL", "cmc_hours").await
    {
        let clock = ManualClock::new(at(0, 0));
        let inbox = open(&url, &clock).await;
        fill(&inbox, &clock).await;
        let live = sorted(inbox.activity(at(0, 0), at(6, 0)).await.unwrap());
        assert_eq!(live.iter().map(|c| c.3).sum::<u64>(), 44, "{url}");
        let first = sorted(inbox.hours(at(0, 0), at(6, 0)).await.unwrap());
        assert_eq!(
            first, live,
            "{url}: the first read (which counts and keeps)"
        );

        // Hours 0 to 4 are closed at 5:30 (ended more than 5 minutes ago):
        // each recorded once, the empty ones included; hour 5 is open.
        let base = t0().as_millisecond() / 3_600_000;
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM cmc_event_hours_done").await,
            5,
            "{url}"
        );
        assert_eq!(
            scalar(&url, "SELECT MIN(hour) FROM cmc_event_hours_done").await,
            base,
            "{url}"
        );
        assert_eq!(
            scalar(&url, "SELECT MAX(hour) FROM cmc_event_hours_done").await,
            base + 4,
            "{url}: the open hour is never kept"
        );
        assert_eq!(
            scalar(&url, "SELECT CAST(SUM(n) AS BIGINT) FROM cmc_event_hours").await,
            41,
            "{url}: the closed hours' events, once"
        );

        // Read back from the store, not counted again: the events change
        // under it (as no real write does), the closed hours do not, the
        // open hour does; a second inbox (another console) reads the same.
        execute(&url, "UPDATE cmc_events SET event_type = 'moved'").await;
        let again = sorted(inbox.hours(at(0, 0), at(6, 0)).await.unwrap());
        let other = open(&url, &clock).await;
        let theirs = sorted(other.hours(at(0, 0), at(6, 0)).await.unwrap());
        assert_eq!(again, theirs, "{url}");
        let (closed, open_hour): (Vec<_>, Vec<_>) = again.into_iter().partition(|c| c.0 < at(5, 0));
        let expected: Vec<_> = live.iter().filter(|c| c.0 < at(5, 0)).cloned().collect();
        assert_eq!(closed, expected, "{url}: the closed hours as kept");
        assert_eq!(
            open_hour,
            vec![(at(5, 0), "moved".to_owned(), Some("queued".to_owned()), 3)],
            "{url}: the open hour counted live"
        );
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM cmc_event_hours_done").await,
            5,
            "{url}: nothing recorded twice"
        );

        // A range starting inside a kept range, and one past the hours
        // kept: hour 5 closes at 6:05.
        clock.set(at(6, 6));
        let later = sorted(inbox.hours(at(2, 30), at(6, 6)).await.unwrap());
        assert_eq!(
            later.iter().map(|c| c.3).sum::<u64>(),
            10,
            "{url}: hours 2 to 6 (7 kept, 3 counted now)"
        );
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM cmc_event_hours_done").await,
            6,
            "{url}: hour 5 recorded once closed; hour 6 is open"
        );
        inbox.close().await;
        other.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_readers_filling_at_once_keep_each_hour_once() {
    let dir = dir();
    for url in
        common::inbox::stores(dir.path(), "race", "event hours on PostgreSQL", "cmc_hours").await
    {
        let clock = ManualClock::new(at(0, 0));
        let inbox = open(&url, &clock).await;
        for h in 0..48 {
            clock.set(at(h, 7));
            inbox
                .store(
                    events(h as usize * 10, 1 + h as usize % 5, &["queued", "failed"]),
                    None,
                )
                .await
                .unwrap();
        }
        clock.set(at(48, 30));
        let live = sorted(inbox.activity(at(0, 0), at(49, 0)).await.unwrap());
        let others = [
            open(&url, &clock).await,
            open(&url, &clock).await,
            open(&url, &clock).await,
        ];
        let (a, b, c, d) = tokio::join!(
            inbox.hours(at(0, 0), at(49, 0)),
            others[0].hours(at(0, 0), at(49, 0)),
            others[1].hours(at(10, 0), at(49, 0)),
            others[2].hours(at(0, 0), at(30, 0)),
        );
        assert_eq!(sorted(a.unwrap()), live, "{url}");
        assert_eq!(sorted(b.unwrap()), live, "{url}");
        let from_10: Vec<_> = live.iter().filter(|x| x.0 >= at(10, 0)).cloned().collect();
        assert_eq!(sorted(c.unwrap()), from_10, "{url}");
        let to_30: Vec<_> = live.iter().filter(|x| x.0 < at(30, 0)).cloned().collect();
        assert_eq!(sorted(d.unwrap()), to_30, "{url}");
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM cmc_event_hours_done").await,
            48,
            "{url}"
        );
        assert_eq!(
            scalar(&url, "SELECT CAST(SUM(n) AS BIGINT) FROM cmc_event_hours").await,
            live.iter()
                .filter(|x| x.0 < at(48, 0))
                .map(|x| x.3 as i64)
                .sum::<i64>(),
            "{url}: no hour counted twice"
        );
        assert_eq!(
            sorted(inbox.hours(at(0, 0), at(49, 0)).await.unwrap()),
            live,
            "{url}"
        );
        for o in others {
            o.close().await;
        }
        inbox.close().await;
    }
}

#[tokio::test]
async fn a_read_only_store_answers_with_the_hours_counted() {
    let dir = dir();
    for url in
        common::inbox::stores(dir.path(), "ro", "event hours on PostgreSQL", "cmc_hours").await
    {
        let clock = ManualClock::new(at(0, 0));
        let inbox = open(&url, &clock).await;
        fill(&inbox, &clock).await;
        let live = sorted(inbox.activity(at(0, 0), at(6, 0)).await.unwrap());
        let reader = Inbox::builder(&url)
            .unwrap()
            .clock(clock.clone())
            .read_only(true)
            .open()
            .await
            .unwrap();
        for round in 0..2 {
            assert_eq!(
                sorted(reader.hours(at(0, 0), at(6, 0)).await.unwrap()),
                live,
                "{url}: read {round}"
            );
        }
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM cmc_event_hours_done").await,
            0,
            "{url}: nothing written by a read-only store"
        );
        // The writable one keeps them; the read-only one then reads them.
        inbox.hours(at(0, 0), at(6, 0)).await.unwrap();
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM cmc_event_hours_done").await,
            5,
            "{url}"
        );
        assert_eq!(
            sorted(reader.hours(at(0, 0), at(6, 0)).await.unwrap()),
            live,
            "{url}"
        );
        reader.close().await;
        inbox.close().await;
    }
}

#[tokio::test]
async fn the_retention_drops_the_hours_it_prunes() {
    let dir = dir();
    for url in common::inbox::stores(
        dir.path(),
        "prune",
        "event hours on PostgreSQL",
        "cmc_hours",
    )
    .await
    {
        let clock = ManualClock::new(at(0, 0));
        let inbox = open(&url, &clock).await;
        fill(&inbox, &clock).await;
        inbox.hours(at(0, 0), at(6, 0)).await.unwrap();
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM cmc_event_hours_done").await,
            5,
            "{url}"
        );
        // Retain 3 hours at 5:30: the hours that ended by 2:30 go (0, 1).
        inbox.prune(Duration::from_secs(3 * 3600)).await.unwrap();
        let base = t0().as_millisecond() / 3_600_000;
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM cmc_event_hours_done").await,
            3,
            "{url}"
        );
        assert_eq!(
            scalar(&url, "SELECT MIN(hour) FROM cmc_event_hours_done").await,
            base + 2,
            "{url}"
        );
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM cmc_event_hours WHERE hour < (SELECT MIN(hour) FROM cmc_event_hours_done)").await,
            0,
            "{url}: the counts go with their hours"
        );
        assert_eq!(
            scalar(&url, "SELECT CAST(SUM(n) AS BIGINT) FROM cmc_event_hours").await,
            7,
            "{url}: hour 2's events stay"
        );
        inbox.close().await;
    }
}

#[tokio::test]
async fn a_worker_keeps_the_last_closed_hours() {
    let dir = dir();
    for url in common::inbox::stores(
        dir.path(),
        "worker",
        "event hours on PostgreSQL",
        "cmc_hours",
    )
    .await
    {
        let clock = ManualClock::new(at(0, 0));
        let inbox = open(&url, &clock).await;
        fill(&inbox, &clock).await;
        // At 5:30 the last three closed hours are 2, 3 and 4.
        let worker = inbox
            .worker(|_job: cmc_webhook::inbox::Job| async { Ok::<(), String>(()) })
            .spawn();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while scalar(&url, "SELECT COUNT(*) FROM cmc_event_hours_done").await < 3 {
            assert!(std::time::Instant::now() < deadline, "{url}: no hour kept");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        let base = t0().as_millisecond() / 3_600_000;
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM cmc_event_hours_done").await,
            3,
            "{url}"
        );
        assert_eq!(
            scalar(&url, "SELECT MIN(hour) FROM cmc_event_hours_done").await,
            base + 2,
            "{url}"
        );
        assert_eq!(
            scalar(&url, "SELECT CAST(SUM(n) AS BIGINT) FROM cmc_event_hours").await,
            7,
            "{url}: hour 2's events"
        );
        inbox.close().await;
    }
}

#[tokio::test]
async fn an_hour_of_too_many_distinct_statuses_is_answered_and_not_kept() {
    let dir = dir();
    for url in
        common::inbox::stores(dir.path(), "many", "event hours on PostgreSQL", "cmc_hours").await
    {
        let clock = ManualClock::new(at(0, 10));
        let inbox = open(&url, &clock).await;
        // Hour 0: 20 040 events, each with its own status (the senders'
        // text); hour 1: two.
        let statuses: Vec<String> = (0..20_040).map(|i| format!("s{i}")).collect();
        let names: Vec<&str> = statuses.iter().map(String::as_str).collect();
        for b in 0..40 {
            let from = b * 501;
            inbox
                .store(events(from, 501, &names[from..from + 501]), None)
                .await
                .unwrap();
        }
        clock.set(at(1, 10));
        inbox
            .store(events(30_000, 2, &["queued"]), None)
            .await
            .unwrap();
        clock.set(at(2, 30));
        let live = sorted(inbox.activity(at(0, 0), at(3, 0)).await.unwrap());
        assert_eq!(live.len(), 20_041, "{url}");
        assert_eq!(
            sorted(inbox.hours(at(0, 0), at(3, 0)).await.unwrap()),
            live,
            "{url}"
        );
        let base = t0().as_millisecond() / 3_600_000;
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM cmc_event_hours_done").await,
            1,
            "{url}"
        );
        assert_eq!(
            scalar(&url, "SELECT MIN(hour) FROM cmc_event_hours_done").await,
            base + 1,
            "{url}"
        );
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM cmc_event_hours").await,
            1,
            "{url}"
        );
        assert_eq!(
            sorted(inbox.hours(at(0, 0), at(3, 0)).await.unwrap()),
            live,
            "{url}: again"
        );
        inbox.close().await;
    }
}

/// An hour of too many distinct statuses newer than an ordinary one: the
/// ordinary hour is still kept (the bound leaves out the hour that does
/// not fit, not every hour after it).
#[tokio::test]
async fn an_hour_too_big_to_keep_does_not_stop_the_older_hours_being_kept() {
    let dir = dir();
    for url in common::inbox::stores(
        dir.path(),
        "many_newer",
        "event hours on PostgreSQL",
        "cmc_hours_newer",
    )
    .await
    {
        let clock = ManualClock::new(at(0, 10));
        let inbox = open(&url, &clock).await;
        // Hour 0: two events; hour 1: 20 040, each with its own status.
        inbox
            .store(events(30_000, 2, &["queued"]), None)
            .await
            .unwrap();
        clock.set(at(1, 10));
        let statuses: Vec<String> = (0..20_040).map(|i| format!("s{i}")).collect();
        let names: Vec<&str> = statuses.iter().map(String::as_str).collect();
        for b in 0..40 {
            let from = b * 501;
            inbox
                .store(events(from, 501, &names[from..from + 501]), None)
                .await
                .unwrap();
        }
        clock.set(at(2, 30));
        let live = sorted(inbox.activity(at(0, 0), at(3, 0)).await.unwrap());
        assert_eq!(
            sorted(inbox.hours(at(0, 0), at(3, 0)).await.unwrap()),
            live,
            "{url}"
        );
        let base = t0().as_millisecond() / 3_600_000;
        assert_eq!(
            scalar(&url, "SELECT COUNT(*) FROM cmc_event_hours_done").await,
            1,
            "{url}"
        );
        assert_eq!(
            scalar(&url, "SELECT MIN(hour) FROM cmc_event_hours_done").await,
            base,
            "{url}"
        );
        inbox.close().await;
    }
}
