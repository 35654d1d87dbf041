//! The inbox on an application's PostgreSQL database, at its edges: a
//! schema name PostgreSQL reserves is refused clearly; a pool of one
//! connection stays the application's (the inbox listens on a connection
//! of its own); a role that only reads and writes rows serves a store
//! already migrated; U+0000 in subjects beside other webhooks of the same
//! moment; a row migrated by 0010 keeps a number with an exponent as
//! written. On the server `scripts/with-postgres.sh` starts.
#![cfg(all(feature = "sqlite", feature = "postgres", feature = "test-util"))]

mod common;

use std::time::Duration;

use cmc_webhook::inbox::Inbox;
use cmc_webhook::Webhook;

fn pg_url() -> Option<String> {
    common::inbox::postgres_server("tests/postgres_edges")
}

fn deliveries(subject: &str, n: usize) -> Webhook {
    let body = serde_json::json!({
        "api_key": "k",
        "event_type": "deliveries",
        "server_composition": "pro",
        "event": {"deliveries": [{
            "created": "2026-01-01 09:00:00", "status": "queued",
            "to": format!("a{n}@example.jp"), "messageId": format!("<{n}@example.com>"),
            "subject": subject,
        }]}
    })
    .to_string();
    Webhook::parse("application/json", bytes::Bytes::from(body)).unwrap()
}

async fn fresh_db(url: &str, name: &str) -> String {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut c)
    .await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_names_that_are_sql_keywords() {
    let Some(url) = pg_url() else { return };
    let url = fresh_db(&url, "pe_keywords").await;
    let mut bad = Vec::new();
    for schema in [
        "select",
        "user",
        "order",
        "table",
        "all",
        "end",
        "natural",
        "authorization",
        "current_user",
        "_",
        "a".repeat(63).as_str(),
    ] {
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            Inbox::postgres(url.clone()).schema(schema).migrate(),
        )
        .await
        .expect("no hang");
        let reserved = !matches!(schema, "_") && schema.len() < 63;
        match r {
            Ok(_) => {
                assert!(
                    !reserved,
                    "{schema:?}: a reserved word was taken as a schema"
                );
                let inbox = Inbox::postgres(url.clone())
                    .schema(schema)
                    .open()
                    .await
                    .unwrap();
                inbox.store(deliveries("x", 1), None).await.unwrap();
                assert_eq!(inbox.counts().await.unwrap().events.pending, 1);
                inbox.close().await;
            }
            Err(e) => {
                if !reserved || !matches!(e.kind(), cmc_webhook::inbox::InboxErrorKind::Config) {
                    bad.push(format!("{schema}: {e}"));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "accepted by the check, then a syntax error deep in the migration: {bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pg_pool_of_one_connection() {
    let Some(url) = pg_url() else { return };
    let url = fresh_db(&url, "pe_one").await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(60), async {
        let inbox = Inbox::postgres_pool(pool.clone()).open().await?;
        println!("opened; pool size {} idle {}", pool.size(), pool.num_idle());
        let t = std::time::Instant::now();
        let first = inbox.store(deliveries("one", 1), None).await;
        println!(
            "first store, no worker: {:?} after {:?}",
            first.as_ref().err(),
            t.elapsed()
        );
        first?;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let d = done.clone();
        let worker = inbox
            .worker(move |_job: cmc_webhook::inbox::Job| {
                d.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Ok::<(), String>(()) }
            })
            .spawn();
        for n in 2..20 {
            inbox.store(deliveries("more", n), None).await?;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while done.load(std::sync::atomic::Ordering::SeqCst) < 19
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("handled {}", done.load(std::sync::atomic::Ordering::SeqCst));
        println!("counts {:?}", inbox.counts().await);
        let _ = worker.shutdown(Duration::from_secs(5)).await;
        inbox.close().await;
        Ok::<_, cmc_webhook::inbox::InboxError>(())
    })
    .await;
    println!("pool of one: {r:?}");
    let r = r.expect("no hang on a pool of one connection");
    if let Err(e) = r {
        assert!(
            matches!(e.kind(), cmc_webhook::inbox::InboxErrorKind::Config),
            "{e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_pools_the_inbox_cannot_use() {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cases: Vec<(&str, SqliteConnectOptions, u32)> = vec![
        (
            "delete journal",
            SqliteConnectOptions::new().journal_mode(SqliteJournalMode::Delete),
            4,
        ),
        (
            "fk off",
            SqliteConnectOptions::new()
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(false),
            4,
        ),
        (
            "one conn",
            SqliteConnectOptions::new().journal_mode(SqliteJournalMode::Wal),
            1,
        ),
        (
            "no busy timeout",
            SqliteConnectOptions::new()
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::ZERO),
            4,
        ),
        ("memory", SqliteConnectOptions::new().in_memory(true), 4),
    ];
    for (i, (name, opts, size)) in cases.into_iter().enumerate() {
        let opts = if name == "memory" {
            opts
        } else {
            opts.filename(dir.path().join(format!("s{i}.db")))
                .create_if_missing(true)
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(size)
            .connect_with(opts)
            .await
            .unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            Inbox::sqlite_pool(pool.clone()).open(),
        )
        .await
        .expect("no hang");
        println!("{name}: {:?}", r.as_ref().err());
        match r {
            Ok(inbox) => {
                println!(
                    "  {name} accepted: store {:?}",
                    inbox.store(deliveries("x", 1), None).await.err()
                );
                inbox.close().await;
            }
            Err(e) => assert!(
                matches!(e.kind(), cmc_webhook::inbox::InboxErrorKind::Config),
                "{name}: {e:?}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_subjects_on_postgres_with_others_at_the_same_moment() {
    let Some(url) = pg_url() else { return };
    let url = fresh_db(&url, "pe_nul").await;
    let inbox = Inbox::postgres(url.clone()).open().await.unwrap();
    let weird = ["a\0b", "\0", "\\u0000", "x\u{FFFD}\0y", "\0\0\0 \u{1F600}"];
    let mut tasks = Vec::new();
    for (n, s) in weird.iter().enumerate() {
        let inbox1 = inbox.clone();
        let s = s.to_string();
        tasks.push(tokio::spawn(async move {
            (s.clone(), inbox1.store(deliveries(&s, n), None).await)
        }));
        let inbox2 = inbox.clone();
        tasks.push(tokio::spawn(async move {
            (
                "plain".into(),
                inbox2.store(deliveries("plain", 100 + n), None).await,
            )
        }));
    }
    for t in tasks {
        let (s, r) = t.await.unwrap();
        assert!(r.is_ok(), "{s:?}: {r:?}");
    }
    for (n, s) in weird.iter().enumerate() {
        let h = inbox.history(&format!("<{n}@example.com>")).await.unwrap();
        let got = serde_json::to_value(&h[0].event).unwrap();
        assert_eq!(got["subject"].as_str(), Some(*s), "byte exact");
        println!("{s:?} ok, received_at {}", h[0].received_at);
    }
    // Times: the column equals the API's to the millisecond, in UTC.
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let h = inbox.history("<0@example.com>").await.unwrap();
    let (ms, tz): (i64, String) = sqlx::query_as(
        "SELECT (extract(epoch from received_at) * 1000)::bigint, current_setting('TimeZone') FROM cmc_webhook.cmc_events WHERE message_id = '<0@example.com>'",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    println!(
        "db ms {ms} tz {tz} api {}",
        h[0].received_at.as_millisecond()
    );
    assert_eq!(ms, h[0].received_at.as_millisecond());
    inbox.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_0010_keeps_an_old_rows_exponent_as_written() {
    use sqlx::{Connection, Executor};
    let Some(admin) = pg_url() else { return };
    let url = fresh_db(&admin, "pe_exp").await;
    common::inbox::postgres_store_at(&url, 9).await;
    // The JSON the crate writes for an event with an unknown field 1e300.
    let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
        {"created":"2026-01-01 09:00:00","status":"queued","to":"a@example.jp","messageId":"<big@example.com>","x":1e300,"y":-2.5e-300}]}}"#;
    let Webhook::Events(sent) =
        Webhook::parse("application/json", bytes::Bytes::from(body)).unwrap()
    else {
        unreachable!()
    };
    let event = &sent.events[0];
    let json = serde_json::to_string(event).unwrap();
    println!("json as the previous release stored it: {json}");
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    c.execute("SET search_path TO cmc_webhook").await.unwrap();
    sqlx::query(
        "INSERT INTO cmc_events (idempotency_key, event_type, message_id, recipient, status, \
         created, server_composition, received_at, event, state, attempts, run_at) VALUES ($1, 'deliveries', '<big@example.com>', 'a@example.jp', 'queued', \
         '2026-01-01 09:00:00', 'pro', 1767225600123, $2, 'pending', 0, 1767225600123)",
    )
    .bind(event.idempotency_key().to_string())
    .bind(&json)
    .execute(&mut c)
    .await
    .unwrap();
    let m = Inbox::postgres(url.clone()).migrate().await;
    println!("migrate: {m:?}");
    m.unwrap();
    let exact: Option<String> =
        sqlx::query_scalar("SELECT event_exact FROM cmc_webhook.cmc_events")
            .fetch_one(&mut c)
            .await
            .unwrap();
    // 0010 kept the text as written beside the jsonb copy.
    assert_eq!(exact.as_deref(), Some(json.as_str()));
    let inbox = Inbox::postgres(url.clone()).open().await.unwrap();
    let h = inbox.history("<big@example.com>").await.unwrap();
    let back = serde_json::to_string(&h[0].event).unwrap();
    println!("read back after 0010: {} bytes", back.len());
    // And the event reads back with the same values.
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&back).unwrap(),
        serde_json::from_str::<serde_json::Value>(&json).unwrap(),
        "the row reads back as the previous release stored it"
    );
    inbox.close().await;
}

/// For a manual kill -9 of the 0010 migration: a schema-9 store of
/// `CMC_A25_ROWS` rows in database `pe_big`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dml_only_role_serves_a_migrated_store() {
    use sqlx::{Connection, Executor};
    let Some(admin) = pg_url() else { return };
    let url = fresh_db(&admin, "pe_role").await;
    Inbox::postgres(url.clone()).migrate().await.unwrap();
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    let _ = c.execute("DROP OWNED BY pe_app").await;
    let _ = c.execute("DROP ROLE IF EXISTS pe_app").await;
    c.execute(
        "CREATE ROLE pe_app LOGIN; GRANT USAGE ON SCHEMA cmc_webhook TO pe_app; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA cmc_webhook TO pe_app; \
         GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA cmc_webhook TO pe_app",
    )
    .await
    .unwrap();
    let app = url.replacen("postgres://postgres@", "postgres://pe_app@", 1);
    let checked = Inbox::postgres(app.clone())
        .migrate_on_open(false)
        .open()
        .await;
    println!("migrate_on_open(false): {:?}", checked.as_ref().err());
    checked.unwrap().close().await;
    let default = Inbox::postgres(app.clone()).open().await;
    println!("default open: {:?}", default.as_ref().err());
    default
        .expect("nothing to migrate: opening needs no CREATE privilege")
        .close()
        .await;
}
