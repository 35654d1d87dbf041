//! The inbox's PostgreSQL columns in PostgreSQL's own types: every time
//! `timestamptz`, the rows' JSON `jsonb` (a row whose JSON holds the
//! escape `\u0000`, which `jsonb` refuses, keeps its text exact beside
//! it), the forward migration of a store the previous schema wrote, and
//! the README's queries from another language. On a real server named by
//! `CMC_POSTGRES_URL` (`scripts/with-postgres.sh cargo test --all-features
//! --test native_types`); the README's queries on a SQLite file too.

use bytes::Bytes;
use cmc_webhook::inbox::mailbox::DeliveryFilter;
use cmc_webhook::inbox::suppression::ListFilter;
use cmc_webhook::inbox::{Inbox, Item};
use cmc_webhook::test_util::{encode, sample_inbound, CmcRequest, WireEncoding};
use cmc_webhook::Webhook;
use jiff::Timestamp;
use sqlx::{Connection, Executor, Row};
use tower::ServiceExt;

mod common;

/// A fresh database on the test server, or `None` (skipped).
async fn database(test: &str) -> Option<String> {
    let admin = common::inbox::postgres_server("native_types")?;
    let name = format!("n_{}_{}", test, std::process::id());
    Some(common::inbox::fresh_database(&admin, &name).await)
}

async fn post(inbox: &Inbox, webhook: &Webhook) -> u16 {
    let request = CmcRequest::body(encode(webhook, WireEncoding::Json)).into_request();
    inbox
        .receive()
        .oneshot(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A batch of delivery records, each `(Message-ID, status, recipient)`.
fn batch(records: &[(&str, &str, &str)]) -> Webhook {
    batch_of("deliveries", records)
}

/// A batch of `event_type` records, each `(Message-ID, status, recipient)`.
fn batch_of(event_type: &str, records: &[(&str, &str, &str)]) -> Webhook {
    let records: Vec<String> = records
        .iter()
        .map(|(id, status, to)| {
            format!(
                r#"{{"created":"2026-01-01 09:00:00","status":"{status}","to":"{to}","messageId":"{id}"}}"#
            )
        })
        .collect();
    Webhook::parse(
        "application/json",
        Bytes::from(format!(
            r#"{{"event_type":"{event_type}","server_composition":"pro","event":{{"{event_type}":[{}]}}}}"#,
            records.join(",")
        )),
    )
    .unwrap()
}

fn ms(t: i64) -> Timestamp {
    Timestamp::from_millisecond(t).unwrap()
}

/// `(table, column, data type)` of the inbox's tables in schema
/// `cmc_webhook`.
async fn column_types(url: &str) -> Vec<(String, String, String)> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text \
         FROM information_schema.columns WHERE table_schema = 'cmc_webhook' \
         ORDER BY table_name, column_name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_time_is_timestamptz_and_the_json_is_jsonb() {
    let Some(url) = database("types").await else {
        return;
    };
    Inbox::postgres(&url).migrate().await.unwrap();
    let columns = column_types(&url).await;
    let type_of = |table: &str, column: &str| {
        columns
            .iter()
            .find(|(t, c, _)| t == table && c == column)
            .map(|(_, _, d)| d.as_str())
            .unwrap_or_else(|| panic!("no column {table}.{column}"))
    };
    const TZ: &str = "timestamp with time zone";
    let times = [
        (
            "cmc_events",
            ["received_at", "run_at", "locked_until", "done_at"].as_slice(),
        ),
        (
            "cmc_mails",
            &["received_at", "run_at", "locked_until", "done_at"],
        ),
        (
            "cmc_mail_deliveries",
            &["run_at", "locked_until", "created_at", "done_at"],
        ),
        ("cmc_suppressions", &["since", "until", "updated_at"]),
        ("cmc_suppression_history", &["at"]),
        ("cmc_suppression_keeping", &["at"]),
        ("cmc_inbox_opened", &["at"]),
        ("cmc_raw_requests", &["received_at"]),
    ];
    for (table, names) in times {
        for name in names {
            assert_eq!(type_of(table, name), TZ, "{table}.{name}");
        }
    }
    for (table, name) in [
        ("cmc_events", "event"),
        ("cmc_mails", "mail"),
        ("cmc_suppressions", "events"),
        ("cmc_suppressions", "soft_times"),
    ] {
        assert_eq!(type_of(table, name), "jsonb", "{table}.{name}");
    }
    for (table, name) in [
        ("cmc_events", "event_exact"),
        ("cmc_mails", "mail_exact"),
        // Envelope recipients kept as written (any character): see the README.
        ("cmc_mail_deliveries", "recipients"),
    ] {
        assert_eq!(type_of(table, name), "text", "{table}.{name}");
    }
    // No time is left in milliseconds: every BIGINT is a count or an id.
    let bigints: Vec<String> = columns
        .iter()
        .filter(|(_, c, d)| {
            d == "bigint"
                && (c.ends_with("_at") || c == "at" || c.ends_with("until") || c == "since")
        })
        .map(|(t, c, _)| format!("{t}.{c}"))
        .collect();
    assert!(bigints.is_empty(), "{bigints:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_bodies_are_compressed_with_lz4_where_the_server_has_it() {
    let Some(url) = database("lz4").await else {
        return;
    };
    Inbox::postgres(&url).migrate().await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    // Whether this server was built with LZ4: a column of its own says.
    let has_lz4 = sqlx::query("CREATE TEMP TABLE probe (b bytea COMPRESSION lz4)")
        .execute(&mut conn)
        .await
        .is_ok();
    let methods: Vec<(String, String)> = sqlx::query_as(
        "SELECT attrelid::regclass::text, attcompression::text FROM pg_attribute \
         WHERE attrelid IN ('cmc_webhook.cmc_raw_requests'::regclass, \
                            'cmc_webhook.cmc_raw_request_parts'::regclass) \
           AND attname IN ('body', 'data') ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(methods.len(), 2, "{methods:?}");
    let expected = if version >= 140000 && has_lz4 {
        "l"
    } else {
        ""
    };
    for (table, method) in &methods {
        assert_eq!(method, expected, "{table}: {methods:?} (server {version})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_in_a_mail_and_an_event_is_kept_exact_and_spares_the_rest_of_the_batch() {
    let Some(url) = database("nul").await else {
        return;
    };
    let inbox = Inbox::postgres(&url).open().await.unwrap();
    // One batch: a record with U+0000 in its Message-ID, and two without.
    let events = batch(&[
        ("<nul\\u0000id@example.com>", "queued", "a@example.jp"),
        ("<plain1@example.com>", "queued", "b@example.jp"),
        ("<plain2@example.com>", "queued", "c@example.jp"),
    ]);
    let Webhook::Events(sent) = &events else {
        unreachable!()
    };
    let mut mail = sample_inbound(false);
    mail.subject = "sub\0ject".into();
    mail.text = Some("body\0with a NUL, and \\u0000 as text".into());
    assert_eq!(post(&inbox, &events).await, 200);
    assert_eq!(post(&inbox, &Webhook::Inbound(mail.clone())).await, 200);

    let mut conn = common::inbox::pg_store(&url).await;
    // Only the rows with U+0000 keep an exact copy; every jsonb holds the
    // value (U+FFFD for U+0000), queryable.
    let rows: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT message_id, event_exact, event ->> 'message_id' FROM cmc_events ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[0]
        .1
        .as_deref()
        .unwrap()
        .contains("<nul\\u0000id@example.com>"));
    assert_eq!(rows[0].2, "<nul\u{FFFD}id@example.com>");
    assert_eq!(rows[1].1, None);
    assert_eq!(rows[2].1, None);
    assert_eq!(rows[1].2, "<plain1@example.com>");
    let (exact, subject): (Option<String>, String) =
        sqlx::query_as("SELECT mail_exact, mail ->> 'subject' FROM cmc_mails")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(exact.unwrap().contains("sub\\u0000ject"));
    assert_eq!(subject, "sub\u{FFFD}ject");

    // Handed over byte for byte.
    let read = common::inbox::handle_all(&inbox, 4).await;
    let got: Vec<&Item> = read.iter().collect();
    for e in &sent.events {
        assert!(
            got.iter().any(|i| matches!(i, Item::Event(x) if x == e)),
            "{e:?} not handed over as sent"
        );
    }
    let got_mail = read
        .iter()
        .find_map(|i| match i {
            Item::Mail(m) => Some(m),
            _ => None,
        })
        .unwrap();
    assert_eq!(got_mail.subject, mail.subject);
    assert_eq!(got_mail.text, mail.text);
    assert_eq!(
        serde_json::to_string(&got_mail.text).unwrap(),
        serde_json::to_string(&mail.text).unwrap()
    );
    // Read back by history too, exact.
    let history = inbox.history("<nul\0id@example.com>").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].event, sent.events[0]);
    inbox.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_with_an_exponent_in_an_unknown_field_is_kept_as_written() {
    // An unknown field is kept as written; jsonb would write 1e300 out in
    // full (301 digits), and cannot hold 1e200000 (which the parser
    // refuses already: past f64).
    let Some(url) = database("bignum").await else {
        return;
    };
    let inbox = Inbox::postgres(&url).open().await.unwrap();
    let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
        {"created":"2026-01-01 09:00:00","status":"queued","to":"a@example.jp","messageId":"<big@example.com>","x":1e300,"y":-2.5e-300},
        {"created":"2026-01-01 09:00:00","status":"queued","to":"b@example.jp","messageId":"<fine@example.com>"}]}}"#;
    let events = Webhook::parse("application/json", Bytes::from(body)).unwrap();
    let Webhook::Events(sent) = &events else {
        unreachable!()
    };
    assert_eq!(post(&inbox, &events).await, 200);
    let mut conn = common::inbox::pg_store(&url).await;
    let (x, exact): (String, Option<String>) = sqlx::query_as(
        "SELECT event #>> '{extra,x}', event_exact FROM cmc_events WHERE message_id = '<big@example.com>'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    // A string of the number's text in the jsonb copy, not 301 digits.
    assert_eq!(x.parse::<f64>().unwrap(), 1e300);
    assert!(x.len() < 10, "{x}");
    assert!(exact.is_some());
    let read = common::inbox::handle_all(&inbox, 2).await;
    for e in &sent.events {
        assert!(
            read.iter().any(|i| matches!(i, Item::Event(x) if x == e)),
            "{e:?}"
        );
    }
    let history = inbox.history("<big@example.com>").await.unwrap();
    assert_eq!(history[0].event, sent.events[0]);
    // Read back as stored: the exact text, not jsonb's.
    let stored: String = sqlx::query_scalar(
        "SELECT event_exact FROM cmc_events WHERE message_id = '<big@example.com>'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(serde_json::to_string(&history[0].event).unwrap(), stored);
    inbox.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_times_are_the_inboxs_milliseconds_exactly() {
    let Some(url) = database("times").await else {
        return;
    };
    let inbox = Inbox::postgres(&url).open().await.unwrap();
    assert_eq!(
        post(
            &inbox,
            &batch(&[("<t@example.com>", "queued", "t@example.jp")])
        )
        .await,
        200
    );
    let history = inbox.history("<t@example.com>").await.unwrap();
    let mut conn = common::inbox::pg_store(&url).await;
    let (stored, text): (i64, String) = sqlx::query_as(
        "SELECT (EXTRACT(EPOCH FROM received_at) * 1000)::BIGINT, \
         to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US') FROM cmc_events",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(history[0].received_at.as_millisecond(), stored);
    // Whole milliseconds: no microseconds of a float conversion.
    assert!(text.ends_with("000"), "{text}");
    // A lease set far ahead and an old run_at read back to the millisecond.
    for t in [
        0i64,
        1,
        -1,
        1_767_225_600_123,
        4_102_444_800_999,
        253_402_300_799_999,
    ] {
        let back: i64 = sqlx::query_scalar(
            "SELECT (EXTRACT(EPOCH FROM (TIMESTAMPTZ 'epoch' + ($1) * INTERVAL '1 millisecond')) * 1000)::BIGINT",
        )
        .bind(t)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(back, t);
    }
    inbox.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_and_a_backoff_without_end_are_stored_as_the_last_time() {
    // `Duration::MAX` past now is beyond `timestamptz`: the inbox stores
    // the last time a Timestamp holds instead of failing every round.
    let Some(url) = database("forever").await else {
        return;
    };
    let inbox = Inbox::postgres(&url).open().await.unwrap();
    assert_eq!(
        post(
            &inbox,
            &batch(&[("<f@example.com>", "queued", "f@example.jp")])
        )
        .await,
        200
    );
    let tries = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let worker = {
        let tries = tries.clone();
        inbox
            .worker(move |_job: cmc_webhook::inbox::Job| {
                tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async { Err::<(), String>("not now".into()) }
            })
            .lease(std::time::Duration::MAX)
            .backoff(
                cmc_webhook::inbox::Backoff::exponential(std::time::Duration::MAX)
                    .max(std::time::Duration::MAX),
            )
            .spawn()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut conn = common::inbox::pg_store(&url).await;
    loop {
        let (state, run_at): (String, i64) = sqlx::query_as(
            "SELECT state, (EXTRACT(EPOCH FROM run_at) * 1000)::BIGINT FROM cmc_events",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if state == "pending" && tries.load(std::sync::atomic::Ordering::SeqCst) == 1 {
            assert_eq!(run_at, Timestamp::MAX.as_millisecond());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{state} {run_at}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    worker
        .shutdown(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    inbox.close().await;
}

/// An event row's key, type, Message-ID, recipient and exact JSON.
type EventColumns = (String, String, Option<String>, Option<String>, String);
/// A mail row's key, envelope, subject, filter, attachments, size and
/// exact JSON.
type MailColumns = (String, String, String, String, String, i64, i64, String);

const T0: i64 = 1_767_225_600_123; // 2026-01-01T00:00:00.123Z

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_the_previous_schema_migrates_exactly_with_rows_in_every_state() {
    let Some(source) = database("mig_src").await else {
        return;
    };
    let Some(url) = database("mig").await else {
        return;
    };
    // The rows' JSON and keys as this crate writes them, taken from a
    // store of its own (with U+0000 in an event and a mail).
    let scratch = Inbox::postgres(&source).open().await.unwrap();
    let events = batch(&[
        ("<p@example.com>", "queued", "p@example.jp"),
        ("<r@example.com>", "queued", "r@example.jp"),
        ("<d@example.com>", "queued", "d@example.jp"),
        ("<x@example.com>", "queued", "x@example.jp"),
        ("<n\\u0000@example.com>", "queued", "n@example.jp"),
    ]);
    let Webhook::Events(sent) = &events else {
        unreachable!()
    };
    assert_eq!(post(&scratch, &events).await, 200);
    let mut nul_mail = sample_inbound(false);
    nul_mail.subject = "old\0subject".into();
    let mut done_mail = sample_inbound(false);
    done_mail.subject = "routed before".into();
    assert_eq!(
        post(&scratch, &Webhook::Inbound(nul_mail.clone())).await,
        200
    );
    assert_eq!(post(&scratch, &Webhook::Inbound(done_mail)).await, 200);
    let mut src = common::inbox::pg_store(&source).await;
    let event_rows: Vec<EventColumns> = sqlx::query_as(
        "SELECT idempotency_key, event_type, message_id, recipient, \
         COALESCE(event_exact, event::text) FROM cmc_events ORDER BY id",
    )
    .fetch_all(&mut src)
    .await
    .unwrap();
    let mail_rows: Vec<MailColumns> = sqlx::query_as(
        "SELECT idempotency_key, envelope_from, envelope_to, subject, filter, attachments, size, \
         COALESCE(mail_exact, mail::text) FROM cmc_mails ORDER BY id",
    )
    .fetch_all(&mut src)
    .await
    .unwrap();
    scratch.close().await;

    common::inbox::postgres_store_at(&url, 9).await;
    let mut old = common::inbox::pg_store(&url).await;
    // Events: pending, running (leased), done, dead, and pending with U+0000.
    let states = [
        ("pending", 0, None, None, None),
        ("running", 1, Some("old-worker"), Some(T0 + 60_000), None),
        ("done", 1, None, None, Some(T0 + 5)),
        ("dead", 5, None, None, Some(T0 + 7)),
        ("pending", 0, None, None, None),
    ];
    for (i, ((key, kind, message_id, recipient, json), (state, attempts, by, until, done))) in
        event_rows.iter().zip(states).enumerate()
    {
        sqlx::query(
            "INSERT INTO cmc_events (idempotency_key, event_type, message_id, recipient, status, \
             created, server_composition, received_at, event, state, attempts, run_at, locked_by, \
             locked_until, last_error, done_at) VALUES ($1, $2, $3, $4, 'queued', \
             '2026-01-01 09:00:00', 'pro', $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(key)
        .bind(kind)
        .bind(message_id.as_deref().map(|m| m.replace('\0', "\u{FFFD}")))
        .bind(recipient)
        .bind(T0 + i as i64)
        .bind(json)
        .bind(state)
        .bind(attempts)
        .bind(T0 + 100 + i as i64)
        .bind(by)
        .bind(until)
        .bind((state == "dead").then_some("boom"))
        .bind(done)
        .execute(&mut old)
        .await
        .unwrap();
    }
    // Mails: one pending (with U+0000), one done with deliveries in every
    // state.
    let mut mail_ids = Vec::new();
    for (n, (state, row)) in ["pending", "done"].iter().zip(&mail_rows).enumerate() {
        let (key, from, to, subject, filter, attachments, size, json) = row;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO cmc_mails (idempotency_key, envelope_from, envelope_to, subject, filter, \
             server_composition, received_at, attachments, size, mail, state, run_at, done_at) \
             VALUES ($1, $2, $3, $4, $5, 'pro', $6, $7, $8, $9, $10, $6, $11) RETURNING id",
        )
        .bind(key)
        .bind(from)
        .bind(to)
        .bind(subject.replace('\0', "\u{FFFD}"))
        .bind(filter)
        .bind(T0 + 200 + n as i64)
        .bind(attachments)
        .bind(size)
        .bind(json)
        .bind(state)
        .bind((n == 1).then_some(T0 + 299))
        .fetch_one(&mut old)
        .await
        .unwrap();
        mail_ids.push(id);
    }
    let delivery_states = [
        "pending",
        "processing",
        "delivered",
        "failed",
        "bounced",
        "dead",
        "unrouted",
    ];
    for (i, state) in delivery_states.iter().enumerate() {
        let i = i as i64;
        let finished = matches!(*state, "delivered" | "bounced" | "dead");
        sqlx::query(
            "INSERT INTO cmc_mail_deliveries (mail_id, mailbox, recipients, route, state, attempts, \
             run_at, locked_by, locked_until, created_at, done_at) \
             VALUES ($1, $2, $3, '*', $4, 1, $5, $6, $7, $8, $9)",
        )
        .bind(mail_ids[1])
        .bind((*state != "unrouted").then(|| format!("box{i}")))
        .bind(format!(r#"["u{i}@example.jp"]"#))
        .bind(state)
        .bind(T0 + 300 + i)
        .bind((*state == "processing").then_some("old-worker"))
        .bind((*state == "processing").then_some(T0 + 400 + i))
        .bind(T0 + 500 + i)
        .bind(finished.then_some(T0 + 600 + i))
        .execute(&mut old)
        .await
        .unwrap();
    }
    // The suppression list: with and without `until`, with history; who
    // keeps it; when the inbox was opened; a raw request.
    for sql in [
        format!(
            "INSERT INTO cmc_suppressions (recipient, reason, since, until, note, events, hard_count, \
             soft_times, unknown_count, updated_at) VALUES \
             ('hard@example.jp', 'hard', {a}, NULL, NULL, '[\"0123456789abcdef0123456789abcdef\"]', 1, '[]', 0, {a}), \
             ('manual@example.jp', 'manual', {b}, {c}, 'until spring', '[]', 0, '[{d}]', 0, {b}), \
             ('counts@example.jp', NULL, NULL, NULL, NULL, '[]', 0, '[{d}, {e}]', 2, {e})",
            a = T0 + 700,
            b = T0 + 701,
            c = T0 + 86_400_000_999,
            d = T0 + 702,
            e = T0 + 703
        ),
        format!(
            "INSERT INTO cmc_suppression_history (recipient, idempotency_key, change, reason, note, at) \
             VALUES ('hard@example.jp', '0123456789abcdef0123456789abcdef', 'bounce 2', 'hard', NULL, {}), \
             ('manual@example.jp', NULL, 'added', 'manual', 'until spring', {})",
            T0 + 800,
            T0 + 801
        ),
        format!("INSERT INTO cmc_suppression_keeping (fact, at) VALUES ('kept', {})", T0 + 900),
        format!(
            "INSERT INTO cmc_inbox_opened (id, at, process) VALUES (1, {}, 'old')",
            T0 + 901
        ),
        format!(
            "INSERT INTO cmc_raw_requests (received_at, content_type, outcome, body_sha256, size, body) \
             VALUES ({}, 'application/json', 'stored', 'abc', 2, '\\x7b7d')",
            T0 + 902
        ),
    ] {
        old.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
    }
    // Every time of the old store, in milliseconds, by table and row.
    let times_of = async |conn: &mut sqlx::PgConnection, cast: bool| {
        let c = |col: &str| {
            if cast {
                format!("(EXTRACT(EPOCH FROM {col}) * 1000)::BIGINT")
            } else {
                col.to_owned()
            }
        };
        let mut all: Vec<Vec<Option<i64>>> = Vec::new();
        for (table, cols, order) in [
            (
                "cmc_events",
                "received_at, run_at, locked_until, done_at",
                "id",
            ),
            (
                "cmc_mails",
                "received_at, run_at, locked_until, done_at",
                "id",
            ),
            (
                "cmc_mail_deliveries",
                "run_at, locked_until, created_at, done_at",
                "id",
            ),
            ("cmc_suppressions", "since, until, updated_at", "recipient"),
            ("cmc_suppression_history", "at", "id"),
            ("cmc_suppression_keeping", "at", "fact"),
            ("cmc_raw_requests", "received_at", "id"),
        ] {
            let cols: Vec<String> = cols.split(", ").map(c).collect();
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM {table} ORDER BY {order}",
                cols.join(", ")
            )))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
            for r in rows {
                all.push(
                    (0..cols.len())
                        .map(|i| r.get::<Option<i64>, _>(i))
                        .collect(),
                );
            }
        }
        all
    };
    let before = times_of(&mut old, false).await;
    assert_eq!(before.len(), 5 + 2 + 7 + 3 + 2 + 1 + 1);
    drop(old);

    // The forward migration, then the same times to the millisecond.
    Inbox::postgres(&url).migrate().await.unwrap();
    let mut new = common::inbox::pg_store(&url).await;
    assert_eq!(times_of(&mut new, true).await, before);
    let exact: Vec<Option<String>> =
        sqlx::query_scalar("SELECT event_exact FROM cmc_events ORDER BY id")
            .fetch_all(&mut new)
            .await
            .unwrap();
    assert_eq!(
        exact.iter().map(Option::is_some).collect::<Vec<_>>(),
        [false, false, false, false, true]
    );
    assert_eq!(exact[4].as_deref(), Some(event_rows[4].4.as_str()));
    let mail_exact: Vec<bool> =
        sqlx::query_scalar("SELECT mail_exact IS NOT NULL FROM cmc_mails ORDER BY id")
            .fetch_all(&mut new)
            .await
            .unwrap();
    assert_eq!(mail_exact, [true, false]);
    let hard: String = sqlx::query_scalar(
        "SELECT events ->> 0 FROM cmc_suppressions WHERE recipient = 'hard@example.jp'",
    )
    .fetch_one(&mut new)
    .await
    .unwrap();
    assert_eq!(hard, "0123456789abcdef0123456789abcdef");

    // The inbox reads them with the same values.
    let inbox = Inbox::postgres(&url).open().await.unwrap();
    let counts = inbox.counts().await.unwrap();
    assert_eq!(
        (
            counts.events.pending,
            counts.events.running,
            counts.events.done,
            counts.events.dead
        ),
        (2, 1, 1, 1)
    );
    assert_eq!(counts.events.oldest_pending, Some(ms(T0)));
    let dead = inbox.dead(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].received_at, ms(T0 + 3));
    assert_eq!(dead[0].died_at, Some(ms(T0 + 7)));
    let history = inbox.history("<n\0@example.com>").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].received_at, ms(T0 + 4));
    assert_eq!(history[0].event, sent.events[4]);
    let mut all = ListFilter::default();
    all.suppressed_only = false;
    let list = inbox.suppressions().list(&all).await.unwrap();
    let manual = list
        .iter()
        .find(|e| e.address == "manual@example.jp")
        .unwrap();
    assert_eq!(manual.since, Some(ms(T0 + 701)));
    assert_eq!(manual.until, Some(ms(T0 + 86_400_000_999)));
    assert_eq!(manual.updated_at, ms(T0 + 701));
    let hard = list
        .iter()
        .find(|e| e.address == "hard@example.jp")
        .unwrap();
    assert_eq!((hard.since, hard.until), (Some(ms(T0 + 700)), None));
    assert_eq!(hard.events.len(), 1);
    let counted = list
        .iter()
        .find(|e| e.address == "counts@example.jp")
        .unwrap();
    assert_eq!(counted.soft_bounces, 2);
    let changes = inbox
        .suppressions()
        .history("manual@example.jp")
        .await
        .unwrap();
    assert_eq!(changes[0].at, ms(T0 + 801));
    let keeping = inbox.suppressions().keeping().await.unwrap();
    assert_eq!(keeping.since, Some(ms(T0 + 900)));
    let deliveries = inbox
        .deliveries()
        .list(&DeliveryFilter::all())
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 7);
    for (i, d) in deliveries.iter().enumerate() {
        let i = i as i64;
        assert_eq!(d.run_at, ms(T0 + 300 + i));
        assert_eq!(d.created_at, ms(T0 + 500 + i));
        let finished = matches!(d.state.as_str(), "delivered" | "bounced" | "dead");
        assert_eq!(d.done_at, finished.then(|| ms(T0 + 600 + i)), "{d:?}");
        assert_eq!(d.recipients, [format!("u{i}@example.jp")]);
    }
    let raw = inbox.raw_requests(0, 10).await.unwrap();
    assert_eq!(raw[0].received_at, ms(T0 + 902));

    // And handles them: the pending rows, the running one whose lease
    // ended long ago, and the pending mail, read back exact.
    let read = common::inbox::handle_all(&inbox, 4).await;
    for e in [&sent.events[0], &sent.events[1], &sent.events[4]] {
        assert!(
            read.iter().any(|i| matches!(i, Item::Event(x) if x == e)),
            "{e:?}"
        );
    }
    let got_mail = read
        .iter()
        .find_map(|i| match i {
            Item::Mail(m) => Some(m),
            _ => None,
        })
        .unwrap();
    assert_eq!(got_mail.subject, nul_mail.subject);
    let done: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, (EXTRACT(EPOCH FROM done_at) * 1000)::BIGINT FROM cmc_events \
         WHERE state = 'done' ORDER BY id",
    )
    .fetch_all(&mut new)
    .await
    .unwrap();
    assert_eq!(done.len(), 4);
    let now = Timestamp::now().as_millisecond();
    assert!(
        done.iter()
            .filter(|(_, at)| (now - at).abs() < 600_000)
            .count()
            == 3,
        "{done:?}"
    );
    inbox.close().await;
}

/// The README's two queries from another language.
const LAST_HOUR: &str = "SELECT state, count(*) FROM cmc_webhook.cmc_events \
     WHERE received_at > now() - interval '1 hour' GROUP BY state ORDER BY state";
const BOUNCES_BY_DOMAIN: &str = "SELECT split_part(recipient, '@', 2) AS domain, count(*) \
     FROM cmc_webhook.cmc_events WHERE event_type = 'bounces' \
     GROUP BY domain ORDER BY count(*) DESC, domain";
const LAST_HOUR_SQLITE: &str = "SELECT state, count(*) FROM cmc_events \
     WHERE received_at > (unixepoch('now') - 3600) * 1000 GROUP BY state ORDER BY state";
const BOUNCES_BY_DOMAIN_SQLITE: &str =
    "SELECT substr(recipient, instr(recipient, '@') + 1) AS domain, \
     count(*) FROM cmc_events WHERE event_type = 'bounces' \
     GROUP BY domain ORDER BY count(*) DESC, domain";

async fn readme_rows(inbox: &Inbox) {
    let bounces = batch_of(
        "bounces",
        &[
            ("<b1@example.com>", "2", "one@bounce.example"),
            ("<b2@example.com>", "1", "two@bounce.example"),
            ("<b3@example.com>", "2", "three@other.example"),
        ],
    );
    assert_eq!(post(inbox, &bounces).await, 200);
    let delivered = batch(&[("<ok@example.com>", "queued", "ok@bounce.example")]);
    assert_eq!(post(inbox, &delivered).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_queries_answer_from_another_language() {
    let dir = tempfile_dir("readme");
    let path = dir.join("readme.sqlite3");
    let sqlite = format!("sqlite:{}", path.display());
    let inbox = Inbox::sqlite(&path).open().await.unwrap();
    readme_rows(&inbox).await;
    inbox.close().await;
    let mut lite = sqlx::SqliteConnection::connect(&format!("{sqlite}?mode=ro"))
        .await
        .unwrap();
    let by_state: Vec<(String, i64)> = sqlx::query_as(LAST_HOUR_SQLITE)
        .fetch_all(&mut lite)
        .await
        .unwrap();
    assert_eq!(by_state, [("pending".to_owned(), 4)]);
    let by_domain: Vec<(String, i64)> = sqlx::query_as(BOUNCES_BY_DOMAIN_SQLITE)
        .fetch_all(&mut lite)
        .await
        .unwrap();
    assert_eq!(
        by_domain,
        [
            ("bounce.example".to_owned(), 2),
            ("other.example".to_owned(), 1)
        ]
    );

    let Some(url) = database("readme").await else {
        return;
    };
    let inbox = Inbox::postgres(&url).open().await.unwrap();
    readme_rows(&inbox).await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let by_state: Vec<(String, i64)> = sqlx::query_as(LAST_HOUR)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(by_state, [("pending".to_owned(), 4)]);
    let by_domain: Vec<(String, i64)> = sqlx::query_as(BOUNCES_BY_DOMAIN)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        by_domain,
        [
            ("bounce.example".to_owned(), 2),
            ("other.example".to_owned(), 1)
        ]
    );
    // The same from the event's JSON.
    let from_json: Vec<(String, i64)> = sqlx::query_as(
        "SELECT split_part(event ->> 'to', '@', 2) AS domain, count(*) \
         FROM cmc_webhook.cmc_events WHERE event ->> 'kind' = 'bounce' \
         GROUP BY domain ORDER BY count(*) DESC, domain",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(from_json, by_domain);
    inbox.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cmc_native_{test}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
