//! The list kept by a worker and read through the API, on each backend.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::policy::SuppressionPolicy;
use super::{ListFilter, SuppressionReason};
use crate::{Filter, Inbox};
use cmc_webhook_core::Webhook;

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
    const ROWS: &str = "SELECT recipient, reason, hard_count, CAST(soft_times AS TEXT) FROM cmc_suppressions \
         ORDER BY recipient";
    const HISTORY: &str = "SELECT COUNT(*) FROM cmc_suppression_history";
    let (rows, history): (RawRows, i64) = if url.starts_with("postgres") {
        #[cfg(feature = "postgres")]
        {
            // The inbox's tables are in its schema.
            let pool = sqlx::postgres::PgPoolOptions::new()
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::Executor::execute(conn, "SET search_path TO cmc_webhook").await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await
                .unwrap();
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
            sqlx::query(sqlx::AssertSqlSafe(&*sql))
                .execute(&mut conn)
                .await
                .unwrap();
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
        let clock = crate::ManualClock::new("2026-01-02T00:00:00Z".parse().unwrap());
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
            .suppressions(SuppressionPolicy::default())
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
        let standing: Vec<(&str, bool, Option<SuppressionReason>)> = checks
            .iter()
            .map(|c| (c.address.as_str(), c.suppressed, c.reason))
            .collect();
        assert_eq!(
            standing,
            [
                ("gone@example.jp", true, Some(SuppressionReason::Hard)),
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
            (true, Some(SuppressionReason::Manual), None)
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
        assert!(
            list.remove("gone@example.jp", "the mailbox exists again")
                .await
                .unwrap()
        );
        assert!(!list.remove("never@example.jp", "-").await.unwrap());
        assert!(!list.check("gone@example.jp").await.unwrap().suppressed);
        let changes: Vec<(String, Option<SuppressionReason>)> = list
            .history("gone@example.jp")
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.change, c.reason))
            .collect();
        assert_eq!(
            changes,
            [
                ("bounce 2".to_owned(), Some(SuppressionReason::Hard)),
                ("removed".to_owned(), None)
            ]
        );
    }
}
