//! Each webhook as it arrived: raw requests kept with their rows (one
//! transaction), the api_key redacted, attachments stored once and read
//! back byte for byte, their own retention, reparse after a parser change,
//! and refused bodies within their budget. On a SQLite file, and on
//! PostgreSQL when `CMC_POSTGRES_URL` names a server
//! (`scripts/with-postgres.sh cargo test --all-features --test raw_requests`).

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use cmc_webhook::client_ip::ClientIp;
use cmc_webhook::inbox::{
    Inbox, InboxErrorKind, Kind, ManualClock, RawOutcome, RawRequests, RefusedBudget, Reparse,
};
use cmc_webhook::test_util::{encode_inbound, sample_inbound, CmcRequest, WireEncoding};
use cmc_webhook::Policy;
use tower::ServiceExt;

mod common;

const SECRET: &str = "k3y-0f-the-cmc-console";

async fn stores(dir: &std::path::Path, test: &str) -> Vec<String> {
    common::inbox::stores(
        dir,
        test,
        "raw_requests",
        &format!("raw_{}", std::process::id()),
    )
    .await
}

/// A connection to the PostgreSQL store at `url`, in the inbox's schema.
async fn pg(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::raw_sql("SET search_path TO cmc_webhook")
        .execute(&mut c)
        .await
        .unwrap();
    c
}

/// Runs `sql` on the store at `url` (either database): the rows changed.
async fn exec(url: &str, sql: &str) -> u64 {
    use sqlx::Connection;
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if let Some(path) = url.strip_prefix("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
        sqlx::raw_sql(sql)
            .execute(&mut c)
            .await
            .unwrap()
            .rows_affected()
    } else {
        let mut c = pg(url).await;
        sqlx::raw_sql(sql)
            .execute(&mut c)
            .await
            .unwrap()
            .rows_affected()
    }
}

/// The first column of the rows of `sql`, as integers (NULL as -1).
async fn ints(url: &str, sql: &str) -> Vec<i64> {
    use sqlx::Connection;
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if let Some(path) = url.strip_prefix("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
            .await
            .unwrap();
        sqlx::query_scalar::<_, Option<i64>>(sql)
            .fetch_all(&mut c)
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.unwrap_or(-1))
            .collect()
    } else {
        let mut c = pg(url).await;
        sqlx::query_scalar::<_, Option<i64>>(sql)
            .fetch_all(&mut c)
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.unwrap_or(-1))
            .collect()
    }
}

fn two_deliveries(api_key: &str) -> String {
    format!(
        r#"{{"api_key":"{api_key}","event_type":"deliveries","server_composition":"pro","event":{{"deliveries":[
{{"created":"2026-01-01 09:00:00","status":"queued","to":"a@example.jp","messageId":"<1@example.com>","subject":"one"}},
{{"created":"2026-01-01 09:00:01","status":"queued","to":"b@example.jp","messageId":"<2@example.com>","subject":"two"}}]}}}}"#
    )
}

async fn post(inbox: &Inbox, request: http::Request<http_body_util::Full<Bytes>>) -> u16 {
    inbox
        .receive()
        .oneshot(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn from(
    mut request: http::Request<http_body_util::Full<Bytes>>,
    ip: &str,
) -> http::Request<http_body_util::Full<Bytes>> {
    request
        .extensions_mut()
        .insert(ClientIp(ip.parse::<IpAddr>().unwrap()));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_request_is_kept_with_its_rows_its_api_key_redacted_and_once() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for url in stores(dir.path(), "kept").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let body = two_deliveries(SECRET);
        let request = || {
            from(
                CmcRequest::raw("application/json; charset=utf-8", body.clone())
                    .header("transfer-encoding", "identity")
                    .into_request(),
                "203.0.113.9",
            )
        };
        assert_eq!(post(&inbox, request()).await, 200);
        let kept = inbox.raw_requests(0, 10).await.unwrap();
        assert_eq!(kept.len(), 1, "{url}");
        let r = &kept[0];
        assert_eq!(r.outcome, RawOutcome::Stored);
        assert_eq!(r.content_type, "application/json; charset=utf-8");
        assert_eq!(
            r.content_length.as_deref(),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(r.transfer_encoding.as_deref(), Some("identity"));
        assert!(r.user_agent.as_deref().is_some_and(|ua| !ua.is_empty()));
        assert_eq!(r.client.as_deref(), Some("203.0.113.9"));
        let kept_body = inbox.raw_body(r.id).await.unwrap();
        assert_eq!(
            kept_body,
            body.replace(SECRET, "[redacted]").into_bytes(),
            "the body as it arrived, the api_key's value redacted"
        );
        assert!(cmc_webhook::Webhook::parse(&r.content_type, kept_body).is_ok());
        // The rows point to it.
        assert_eq!(
            ints(&url, "SELECT raw_request_id FROM cmc_events ORDER BY id").await,
            vec![r.id, r.id]
        );
        // CMC sends the batch again: no second copy, a repeat counted.
        assert_eq!(post(&inbox, request()).await, 200);
        let again = inbox.raw_requests(0, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].repeats, 1);
        // The secret is nowhere in the store.
        let found = ints(
            &url,
            &format!(
                "SELECT COUNT(*) FROM cmc_raw_requests WHERE body IS NOT NULL \
                 AND {} > 0",
                if url.starts_with("sqlite:") {
                    format!("instr(body, CAST('{SECRET}' AS BLOB))")
                } else {
                    format!("position('{SECRET}'::bytea in body)")
                }
            ),
        )
        .await;
        assert_eq!(found, vec![0]);
        inbox.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_rows_fail_is_not_kept_either() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for url in stores(dir.path(), "one_tx").await {
        let inbox = Inbox::open(&url).await.unwrap();
        if url.starts_with("sqlite:") {
            exec(
                &url,
                "CREATE TRIGGER refuse BEFORE INSERT ON cmc_events \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
            )
            .await;
        } else {
            exec(
                &url,
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN \
                 RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER refuse BEFORE INSERT ON cmc_events \
                 FOR EACH ROW EXECUTE FUNCTION refuse()",
            )
            .await;
        }
        let request = CmcRequest::raw("application/json", two_deliveries(SECRET)).into_request();
        assert_eq!(post(&inbox, request).await, 503, "{url}");
        assert_eq!(
            ints(&url, "SELECT COUNT(*) FROM cmc_raw_requests").await,
            vec![0]
        );
        assert!(inbox.raw_requests(0, 10).await.unwrap().is_empty());
        inbox.close().await;
    }
}

/// Data no layer could compress: a simple generator.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachment_bytes_are_stored_once_and_the_body_reads_back_exact() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for url in stores(dir.path(), "attachments").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let every_byte: Vec<u8> = (0..=255u8).cycle().take(256 * 257).collect();
        for (n, data) in [every_byte, noise(10 << 20)].into_iter().enumerate() {
            let mut mail = sample_inbound(true);
            mail.attachments[0].data = Bytes::from(data.clone());
            mail.subject = format!("attachment {n}").into();
            let wire = encode_inbound(&mail, WireEncoding::Multipart);
            let mut request = from(CmcRequest::body(wire.clone()).into_request(), "203.0.113.9");
            request
                .extensions_mut()
                .insert(Policy::default().body_limit(32 << 20));
            assert_eq!(post(&inbox, request).await, 200, "{url}");
            let r = inbox.raw_requests(0, 10).await.unwrap().pop().unwrap();
            assert_eq!(r.size, wire.body.len() as u64);
            let back = inbox.raw_body(r.id).await.unwrap();
            assert!(
                back == wire.body,
                "{url}: attachment {n} read back byte for byte"
            );
            // The attachment's bytes are not in the raw request's rows.
            let kept = ints(
                &url,
                &format!(
                    "SELECT CAST(COALESCE(SUM(length(data)), 0) AS BIGINT) \
                     FROM cmc_raw_request_parts WHERE request_id = {}",
                    r.id
                ),
            )
            .await[0];
            let whole = ints(
                &url,
                &format!(
                    "SELECT CAST(COALESCE(length(body), 0) AS BIGINT) FROM cmc_raw_requests WHERE id = {}",
                    r.id
                ),
            )
            .await[0];
            assert!(
                ((kept + whole) as usize) < wire.body.len() - data.len() + 1024,
                "{url}: {kept} + {whole} bytes kept for a body of {} with an attachment of {}",
                wire.body.len(),
                data.len()
            );
        }
        inbox.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_requests_are_pruned_after_their_own_retention_and_rows_still_read() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for url in stores(dir.path(), "prune").await {
        let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap());
        let inbox = Inbox::builder(&url)
            .unwrap()
            .clock(clock.clone())
            .raw_requests(RawRequests::default().retention(Duration::from_secs(2 * 24 * 3600)))
            .open()
            .await
            .unwrap();
        let request = CmcRequest::raw("application/json", two_deliveries(SECRET)).into_request();
        assert_eq!(post(&inbox, request).await, 200);
        let id = inbox.raw_requests(0, 1).await.unwrap()[0].id;
        clock.advance(Duration::from_secs(24 * 3600));
        assert_eq!(
            inbox
                .prune(Duration::from_secs(3600))
                .await
                .unwrap()
                .raw_requests,
            0
        );
        clock.advance(Duration::from_secs(2 * 24 * 3600));
        let pruned = inbox
            .prune(Duration::from_secs(30 * 24 * 3600))
            .await
            .unwrap();
        assert_eq!((pruned.raw_requests, pruned.events), (1, 0), "{url}");
        assert!(inbox.raw_requests(0, 10).await.unwrap().is_empty());
        assert_eq!(
            ints(&url, "SELECT COUNT(*) FROM cmc_raw_request_parts").await,
            vec![0]
        );
        let err = inbox.raw_body(id).await.unwrap_err();
        assert_eq!(err.kind(), InboxErrorKind::Invalid);
        // The rows read as before: handled, and in the history.
        let items = common::inbox::handle_all(&inbox, 2).await;
        assert_eq!(items.len(), 2);
        assert_eq!(
            inbox
                .history("<1@example.com>")
                .await
                .unwrap()
                .entries()
                .len(),
            1
        );
        // And prune_raw_requests takes any retention.
        assert_eq!(inbox.prune_raw_requests(Duration::ZERO).await.unwrap(), 0);
        inbox.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reparse_adds_what_an_older_parser_dropped_as_a_dry_run_first_and_once() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for url in stores(dir.path(), "reparse").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let request = CmcRequest::raw("application/json", two_deliveries(SECRET)).into_request();
        assert_eq!(post(&inbox, request).await, 200);
        // The older parser: stored the first record without its subject,
        // and did not store the second at all.
        let ids = ints(&url, "SELECT id FROM cmc_events ORDER BY id").await;
        assert_eq!(ids.len(), 2);
        exec(
            &url,
            &format!("DELETE FROM cmc_events WHERE id = {}", ids[1]),
        )
        .await;
        let json = {
            use sqlx::Connection;
            let sql = format!(
                "SELECT CAST(event AS TEXT) FROM cmc_events WHERE id = {}",
                ids[0]
            );
            if let Some(path) = url.strip_prefix("sqlite:") {
                let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
                    .await
                    .unwrap();
                sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            } else {
                let mut c = pg(&url).await;
                sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.clone()))
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
            }
        };
        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let dropped = drop_subject(&mut value);
        let old = serde_json::to_string(&value).unwrap().replace('\'', "''");
        exec(
            &url,
            &format!(
                "UPDATE cmc_events SET event = '{old}' WHERE id = {}",
                ids[0]
            ),
        )
        .await;

        // A dry run reports and writes nothing.
        let dry = inbox.reparse(&Reparse::dry_run()).await.unwrap();
        assert!(!dry.applied);
        assert_eq!(
            (dry.read, dry.new, dry.changed, dry.added, dry.failed),
            (1, 1, 1, 0, 0),
            "{url}: {dry:?}"
        );
        let r = &dry.requests[0];
        assert_eq!(r.new.len(), 1);
        assert_eq!(r.new[0].0, Kind::Event);
        assert_eq!(r.changed[0].id, ids[0]);
        assert_eq!(r.changed[0].fields, vec![dropped.clone()]);
        assert_eq!(ints(&url, "SELECT COUNT(*) FROM cmc_events").await, vec![1]);

        // The request's hour, as if closed and its events per hour kept
        // (by the console's chart): the rows added are counted again.
        let hour = inbox.raw_requests(0, 1).await.unwrap()[0]
            .received_at
            .as_millisecond()
            .div_euclid(3_600_000);
        exec(
            &url,
            &format!("INSERT INTO cmc_event_hours_done (hour) VALUES ({hour})"),
        )
        .await;
        exec(
            &url,
            &format!(
                "INSERT INTO cmc_event_hours (hour, event_type, status, n) \
                 VALUES ({hour}, 'deliveries', 'queued', 1)"
            ),
        )
        .await;

        // Applied: the missing row is added, pointing to its request; the
        // changed row is left as it is.
        let applied = inbox.reparse(&Reparse::apply()).await.unwrap();
        for table in ["cmc_event_hours_done", "cmc_event_hours"] {
            assert_eq!(
                ints(
                    &url,
                    &format!("SELECT COUNT(*) FROM {table} WHERE hour = {hour}")
                )
                .await,
                vec![0],
                "{url}: {table} forgot the hour the reparse added rows to"
            );
        }
        assert_eq!(
            (applied.new, applied.added, applied.changed),
            (1, 1, 1),
            "{url}"
        );
        assert_eq!(ints(&url, "SELECT COUNT(*) FROM cmc_events").await, vec![2]);
        let raw = inbox.raw_requests(0, 1).await.unwrap()[0].id;
        assert_eq!(
            ints(&url, "SELECT raw_request_id FROM cmc_events ORDER BY id").await,
            vec![raw, raw]
        );
        assert_eq!(
            ints(&url, "SELECT repeats FROM cmc_events ORDER BY id").await,
            vec![0, 0],
            "no existing row was touched"
        );
        let history = inbox.history("<2@example.com>").await.unwrap();
        assert_eq!(history.entries().len(), 1);

        // Again: nothing new, nothing duplicated.
        let twice = inbox.reparse(&Reparse::apply()).await.unwrap();
        assert_eq!((twice.new, twice.added), (0, 0));
        assert_eq!(ints(&url, "SELECT COUNT(*) FROM cmc_events").await, vec![2]);
        // The added row is handed to a worker (the first, whose JSON the
        // test cut, does not read back as an event any more).
        let items = common::inbox::handle_all(&inbox, 1).await;
        match &items[..] {
            [cmc_webhook::inbox::Item::Event(e)] => {
                assert_eq!(e.message_id(), Some("<2@example.com>"))
            }
            other => panic!("{other:?}"),
        }
        inbox.close().await;
    }
}

/// Removes the subject of an event's JSON wherever it is: its path.
fn drop_subject(value: &mut serde_json::Value) -> String {
    fn walk(v: &mut serde_json::Value, path: &str) -> Option<String> {
        let map = v.as_object_mut()?;
        if map.remove("subject").is_some() {
            return Some(if path.is_empty() {
                "subject".to_owned()
            } else {
                format!("{path}.subject")
            });
        }
        for (k, child) in map.iter_mut() {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if let Some(found) = walk(child, &p) {
                return Some(found);
            }
        }
        None
    }
    walk(value, "").expect("the event's JSON has a subject")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_bodies_are_kept_with_their_reason_within_the_budget() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for url in stores(dir.path(), "refused").await {
        let inbox = Inbox::builder(&url)
            .unwrap()
            .raw_requests(
                RawRequests::default().refused(
                    RefusedBudget::default()
                        .per_client(2, 1 << 20)
                        .total(3, 1 << 20),
                ),
            )
            .open()
            .await
            .unwrap();
        let bad = |n: usize| {
            format!(
                r#"{{"api_key":"{SECRET}","event_type":"deliveries","event":{{"deliveries":[{n}]}}}}"#
            )
        };
        for n in 0..4 {
            let request = from(
                CmcRequest::raw("application/json", bad(n)).into_request(),
                "198.51.100.1",
            );
            assert_eq!(post(&inbox, request).await, 400);
        }
        for n in 10..12 {
            let request = from(
                CmcRequest::raw("application/json", bad(n)).into_request(),
                "198.51.100.2",
            );
            assert_eq!(post(&inbox, request).await, 400);
        }
        // Kept on a task of their own: wait for them.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let kept = loop {
            let kept = inbox.raw_requests(0, 100).await.unwrap();
            if kept.len() >= 3 || std::time::Instant::now() > deadline {
                break kept;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let kept_after = inbox.raw_requests(0, 100).await.unwrap();
        assert_eq!(kept.len(), 3, "{url}: {kept:?}");
        assert_eq!(kept_after.len(), 3, "{url}: the budget holds");
        let from_first = kept
            .iter()
            .filter(|r| r.client.as_deref() == Some("198.51.100.1"))
            .count();
        assert_eq!(from_first, 2, "one client gets its share only");
        for r in &kept {
            assert_eq!(r.outcome, RawOutcome::Refused);
            assert!(
                r.reason.as_deref().is_some_and(|s| s.contains("400")),
                "{:?}",
                r.reason
            );
            let body = inbox.raw_body(r.id).await.unwrap();
            assert!(!String::from_utf8_lossy(&body).contains(SECRET));
            assert!(String::from_utf8_lossy(&body).contains("[redacted]"));
        }
        // A 401 (wrong key) is never kept.
        let mut request = from(
            CmcRequest::raw("application/json", two_deliveries("wrong")).into_request(),
            "198.51.100.3",
        );
        request
            .extensions_mut()
            .insert(Policy::default().api_key(SECRET));
        assert_eq!(post(&inbox, request).await, 401);
        // Reparsed, a refused body that still does not parse is reported.
        let report = inbox.reparse(&Reparse::dry_run()).await.unwrap();
        assert_eq!(report.failed, 3);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(inbox.raw_requests(0, 100).await.unwrap().len(), 3);
        inbox.close().await;
    }
}
