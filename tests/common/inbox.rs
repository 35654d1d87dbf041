//! Helpers of the inbox tests: the PostgreSQL test server, a worker that
//! collects what it is handed, and one that kills rows.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cmc_webhook::inbox::{Inbox, Item, Job};

/// The test server's address from `CMC_POSTGRES_URL`, or `None` after one
/// line (past the test harness's capture) saying that `what` is skipped;
/// a failure instead when `CMC_REQUIRE_POSTGRES` is set (CI).
pub fn postgres_server(what: &str) -> Option<String> {
    match std::env::var("CMC_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("CMC_REQUIRE_POSTGRES").is_none(),
                "CMC_REQUIRE_POSTGRES is set but CMC_POSTGRES_URL is not"
            );
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "{what}: SKIPPED, no PostgreSQL (CMC_POSTGRES_URL is not set; \
                     run scripts/with-postgres.sh cargo test --all-features)"
                );
            });
            None
        }
    }
}

/// The stores a test runs on: a SQLite file `{test}.sqlite3` in `dir`,
/// and a fresh PostgreSQL database `{prefix}_{test}` when a server is
/// named (`what` names the tests in the line that says they are skipped).
// Without the `postgres` feature, only the SQLite file: `what` and
// `prefix` go unused, and `urls` is not pushed to.
#[cfg_attr(not(feature = "postgres"), allow(unused_mut, unused_variables))]
pub async fn stores(dir: &std::path::Path, test: &str, what: &str, prefix: &str) -> Vec<String> {
    let mut urls = vec![format!(
        "sqlite:{}",
        dir.join(format!("{test}.sqlite3")).display()
    )];
    #[cfg(feature = "postgres")]
    if let Some(admin) = postgres_server(what) {
        urls.push(fresh_database(&admin, &format!("{prefix}_{test}")).await);
    }
    urls
}

/// A connection of the test's own to the inbox at `url`, whose tables are
/// in the default schema `cmc_webhook`: first on its search path, as a
/// program in another language reading them would set it.
#[cfg(feature = "postgres")]
pub async fn pg_store(url: &str) -> sqlx::PgConnection {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    conn.execute("SET search_path TO cmc_webhook, public")
        .await
        .unwrap();
    conn
}

/// A new, empty database `name` on the server at `admin` (dropped first if
/// a run before left it); returns its address.
#[cfg(feature = "postgres")]
pub async fn fresh_database(admin: &str, name: &str) -> String {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(&*sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}

/// Runs a worker on `inbox` until it has been handed `n` jobs, stops it,
/// and returns their items in the order it was handed them.
pub async fn handle_all(inbox: &Inbox, n: usize) -> Vec<Item> {
    let read: Arc<Mutex<Vec<Item>>> = Arc::default();
    let worker = {
        let read = read.clone();
        inbox
            .worker(move |job: Job| {
                read.lock().unwrap().push(job.item);
                async { Ok::<(), String>(()) }
            })
            .spawn()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while read.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "timed out waiting for {n} jobs");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let items = std::mem::take(&mut *read.lock().unwrap());
    items
}

/// A PostgreSQL store at the database `url` migrated up to `last` (the
/// inbox's own migrations, in schema `cmc_webhook`, their history in its
/// `cmc_webhook_migrations`), as the inbox of that version left it.
pub async fn postgres_store_at(url: &str, last: i64) {
    use sqlx::{Connection, Executor};
    let all = sqlx::migrate::Migrator::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/inbox/migrations/postgres"),
    )
    .await
    .unwrap();
    let migrator = sqlx::migrate::Migrator {
        migrations: all
            .migrations
            .iter()
            .filter(|m| m.version <= last)
            .cloned()
            .collect::<Vec<_>>()
            .into(),
        table_name: "cmc_webhook.cmc_webhook_migrations".into(),
        create_schemas: vec![std::borrow::Cow::Borrowed("cmc_webhook")].into(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    conn.execute("CREATE SCHEMA IF NOT EXISTS cmc_webhook")
        .await
        .unwrap();
    conn.execute("SET search_path TO cmc_webhook")
        .await
        .unwrap();
    migrator.run_direct(None, &mut conn, false).await.unwrap();
}

/// Runs a worker whose handler fails with `error` (one attempt a row)
/// until `rows` rows, events and mails, are dead.
pub async fn kill_rows(inbox: &Inbox, error: impl Into<String>, rows: u64) {
    let error = error.into();
    let worker = inbox
        .worker(move |_job: Job| {
            let error = error.clone();
            async move { Err::<(), String>(error) }
        })
        .max_attempts(1)
        .poll_interval(Duration::from_millis(5))
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let c = inbox.counts().await.unwrap();
        if c.events.dead + c.mails.dead >= rows {
            break;
        }
        assert!(Instant::now() < deadline, "rows never died: {c:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A bounce batch of one record: `message_id` to `to` with `status`.
pub fn bounce(message_id: &str, to: &str, status: &str) -> cmc_webhook::Webhook {
    let body = serde_json::json!({
        "event_type": "bounces",
        "server_composition": "pro",
        "event": {"bounces": [{
            "created": "2023-01-25 14:03:09",
            "status": status,
            "to": to,
            "messageId": message_id,
        }]}
    });
    cmc_webhook::Webhook::parse("application/json", bytes::Bytes::from(body.to_string())).unwrap()
}
