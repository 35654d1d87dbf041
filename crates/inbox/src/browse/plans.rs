//! The plans of the console's reads that an index is there for, from
//! `EXPLAIN QUERY PLAN` (SQLite) and `EXPLAIN` (PostgreSQL, when
//! `CMC_POSTGRES_URL` names a server) on a store with rows in every state:
//! a test of the plan, since what the index buys is the plan (a million
//! rows are `benches/console.rs`'s work).

use bytes::Bytes;
use cmc_webhook_core::Webhook;

use super::types::{Param, RowQuery, RowStates, rows_sql};
use crate::{Inbox, Kind};

/// A batch of `n` events numbered from `from`.
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

/// The states a month of work leaves, in a few thousand rows: most done,
/// some dead with an error, some pending.
const STATES: [&str; 3] = [
    "UPDATE cmc_events SET state = 'done', done_at = received_at WHERE id % 20 <> 0 AND id % 33 <> 0",
    "UPDATE cmc_events SET state = 'dead', last_error = 'timed out ' || id WHERE id % 20 = 0",
    "UPDATE cmc_events SET attempts = 1, last_error = 'refused' WHERE id % 33 = 0",
];

/// The queries and the index each plan must name.
fn queries() -> Vec<(&'static str, RowQuery, &'static str)> {
    vec![
        (
            "dead events of a source",
            RowQuery::new(Kind::Event)
                .states(RowStates::Dead)
                .source("nobody"),
            "cmc_events_dead_source",
        ),
        (
            "dead events of a source, by error text",
            RowQuery::new(Kind::Event)
                .states(RowStates::Dead)
                .source("nobody")
                .error_contains("no such text"),
            "cmc_events_dead_source",
        ),
        (
            "dead events by error text",
            RowQuery::new(Kind::Event)
                .states(RowStates::Dead)
                .error_contains("no such text"),
            "cmc_events_dead",
        ),
    ]
}

async fn store(url: &str) -> Inbox {
    let inbox = Inbox::open(url).await.unwrap();
    for b in 0..10 {
        inbox.store(events(b * 500, 500), None).await.unwrap();
    }
    inbox
}

#[tokio::test]
async fn sqlite_plans_use_the_indexes() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("plans.sqlite3").display());
    let inbox = store(&url).await;
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in STATES.iter().chain(["ANALYZE"].iter()) {
        sqlx::query(*sql).execute(&mut conn).await.unwrap();
    }
    for (what, query, index) in queries() {
        let (statement, params) = rows_sql(&query).unwrap();
        let text = format!(
            "EXPLAIN QUERY PLAN {}",
            crate::store::statement::markers(false, &statement)
        );
        let mut q = sqlx::query_as::<_, (i64, i64, i64, String)>(sqlx::AssertSqlSafe(text));
        for p in params {
            q = match p {
                Param::Int(n) => q.bind(n),
                Param::Text(t) => q.bind(t),
            };
        }
        let plan: Vec<String> = q
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.3)
            .collect();
        let plan = plan.join("\n");
        eprintln!("SQLite, {what}:\n{plan}");
        assert!(plan.contains(index), "{what}: {plan}");
        // No step reads the whole table.
        assert!(
            !plan.contains("SCAN cmc_events\n") && !plan.ends_with("SCAN cmc_events"),
            "{what}: {plan}"
        );
    }
    inbox.close().await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_plans_use_the_indexes() {
    use sqlx::Connection;
    let Ok(admin) = std::env::var("CMC_POSTGRES_URL") else {
        eprintln!("postgres_plans_use_the_indexes: SKIPPED, no CMC_POSTGRES_URL");
        return;
    };
    let name = format!("cmc_plans_unit_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let inbox = store(&url).await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("SET search_path TO cmc_webhook")
        .execute(&mut conn)
        .await
        .unwrap();
    for sql in STATES.iter().chain(["ANALYZE"].iter()) {
        // PostgreSQL keeps times as timestamptz: `done_at = received_at` holds.
        sqlx::query(*sql).execute(&mut conn).await.unwrap();
    }
    for (what, query, index) in queries() {
        let (statement, params) = rows_sql(&query).unwrap();
        let text = format!(
            "EXPLAIN {}",
            crate::store::statement::qualify(
                "cmc_webhook",
                &crate::store::statement::markers(true, &statement)
            )
        );
        let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(text));
        for p in params {
            q = match p {
                Param::Int(n) => q.bind(n),
                Param::Text(t) => q.bind(t),
            };
        }
        let plan = q.fetch_all(&mut conn).await.unwrap().join("\n");
        eprintln!("PostgreSQL, {what}:\n{plan}");
        assert!(plan.contains(index), "{what}: {plan}");
        assert!(!plan.contains("Seq Scan on cmc_events"), "{what}: {plan}");
    }
    inbox.close().await;
}
