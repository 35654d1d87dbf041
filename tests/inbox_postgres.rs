//! The inbox on a real PostgreSQL server, given by `CMC_POSTGRES_URL`
//! (`scripts/with-postgres.sh cargo test --all-features` starts one). Each
//! test works in a database of its own. Without a URL every test prints
//! one line saying it was skipped; with `CMC_REQUIRE_POSTGRES` set (CI)
//! a missing URL fails instead.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cmc_webhook::inbox::{Filter, Inbox, InboxBuilder, Item, Job};
use cmc_webhook::test_util::{encode, sample_inbound, CmcRequest, WireEncoding};
use cmc_webhook::Webhook;
use sqlx::Connection;
use tower::ServiceExt;

/// Held for reading by every test, and for writing by the one that stops
/// the server.
static SERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A fresh database on the test server, or `None` (skipped).
async fn database(test: &str) -> Option<String> {
    let Ok(admin) = std::env::var("CMC_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CMC_REQUIRE_POSTGRES").is_none(),
            "CMC_REQUIRE_POSTGRES is set but CMC_POSTGRES_URL is not"
        );
        // Past the test harness's capture, once: a skip must be seen.
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "inbox_postgres: SKIPPED, no PostgreSQL (CMC_POSTGRES_URL is not set; \
                 run scripts/with-postgres.sh cargo test --all-features)"
            );
        });
        let _ = test;
        return None;
    };
    let name = format!("t_{}_{}", test, std::process::id());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some(format!("{base}/{name}"))
}

fn builder(url: &str) -> InboxBuilder {
    Inbox::postgres(url).connect_timeout(Duration::from_secs(2))
}

fn deliveries(ids: &[String]) -> Webhook {
    let records: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(
                r#"{{"created":"2026-01-01 09:00:00","status":"queued","to":"u@example.jp","messageId":"{id}"}}"#
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

fn numbered(from: usize, n: usize) -> Webhook {
    deliveries(
        &(from..from + n)
            .map(|i| format!("<{i}@example.com>"))
            .collect::<Vec<_>>(),
    )
}

async fn post(inbox: &Inbox, webhook: &Webhook, encoding: WireEncoding) -> u16 {
    let request = CmcRequest::body(encode(webhook, encoding)).into_request();
    inbox
        .receive()
        .oneshot(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type Seen = Arc<Mutex<BTreeMap<String, usize>>>;

fn counting(seen: Seen) -> impl Fn(Job) -> std::future::Ready<Result<(), String>> + Send + Sync {
    move |job: Job| {
        *seen.lock().unwrap().entry(job.key.to_string()).or_default() += 1;
        std::future::ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_store_each_event_once_and_handle_it_once() {
    let _server = SERVER.read().await;
    let Some(url) = database("two_instances").await else {
        return;
    };
    // Two instances start at once on an empty database: both migrate.
    let (a, b) = tokio::join!(builder(&url).open(), builder(&url).open());
    let (a, b) = (a.unwrap(), b.unwrap());
    let seen: Seen = Arc::default();
    let workers = [
        a.worker(counting(seen.clone())).spawn(),
        b.worker(counting(seen.clone())).spawn(),
    ];
    // The same 40 batches of 25 events to both, in different encodings,
    // at once.
    let mut posts = tokio::task::JoinSet::new();
    for n in 0..40 {
        for (inbox, encoding) in [
            (a.clone(), WireEncoding::Json),
            (b.clone(), WireEncoding::Form),
        ] {
            posts.spawn(async move { post(&inbox, &numbered(n * 25, 25), encoding).await });
        }
    }
    while let Some(status) = posts.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let counts = a.counts().await.unwrap();
    assert_eq!(counts.events.total(), 1000);
    eventually("every event handled", || async {
        seen.lock().unwrap().len() == 1000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for w in workers {
        w.shutdown(Duration::from_secs(10)).await.unwrap();
    }
    assert!(
        seen.lock().unwrap().values().all(|n| *n == 1),
        "an event was handled twice"
    );
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let repeats: i64 = sqlx::query_scalar("SELECT SUM(repeats)::BIGINT FROM cmc_events")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(repeats, 1000, "each event arrived twice");
    let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cmc_events WHERE state = 'done'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(done, 1000);
    // The two instances that started at once applied each migration once.
    let migrations: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(migrations, vec![(1, true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_within_one_batch_and_receipts_are_counted() {
    let _server = SERVER.read().await;
    let Some(url) = database("repeats").await else {
        return;
    };
    let inbox = builder(&url).open().await.unwrap();
    let ids: Vec<String> = ["<a@x>", "<b@x>", "<a@x>", "<a@x>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let receipt = inbox.store(deliveries(&ids), None).await.unwrap();
    assert_eq!((receipt.stored, receipt.repeated), (2, 2));
    let receipt = inbox.store(deliveries(&ids), None).await.unwrap();
    assert_eq!((receipt.stored, receipt.repeated), (0, 4));
    assert_eq!(inbox.counts().await.unwrap().events.total(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_with_attachments_of_several_chunks_reads_back_equal() {
    let _server = SERVER.read().await;
    let Some(url) = database("mail").await else {
        return;
    };
    let inbox = builder(&url).open().await.unwrap();
    let mut mail = sample_inbound(true);
    let template = mail.attachments[0].clone();
    mail.attachments = vec![template.clone(), template];
    mail.attachments[0].data = Bytes::from(
        (0..(5 << 19) + 3)
            .map(|i| (i * 7 % 253) as u8)
            .collect::<Vec<u8>>(),
    );
    mail.attachments[1].data = Bytes::new();
    let first = inbox
        .store(Webhook::Inbound(mail.clone()), None)
        .await
        .unwrap();
    let again = inbox
        .store(Webhook::Inbound(mail.clone()), None)
        .await
        .unwrap();
    assert_eq!((first.stored, again.repeated), (1, 1));
    assert_eq!(inbox.counts().await.unwrap().mails.total(), 1);
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
    eventually("the mail is handled", || async {
        read.lock().unwrap().len() == 1
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let read = read.lock().unwrap();
    let Item::Mail(got) = &read[0] else {
        panic!("a mail")
    };
    assert_eq!(got.attachments, mail.attachments);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_go_dead_and_replay_history_and_prune_work() {
    let _server = SERVER.read().await;
    let Some(url) = database("ops").await else {
        return;
    };
    let inbox = builder(&url).open().await.unwrap();
    inbox.store(numbered(0, 3), None).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let worker = {
        let calls = calls.clone();
        inbox
            .worker(move |_job: Job| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>("downstream is down") }
            })
            .max_attempts(1)
            .spawn()
    };
    eventually("three dead rows", || async {
        inbox.counts().await.unwrap().events.dead == 3
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let dead = inbox.dead(10).await.unwrap();
    assert_eq!(dead.len(), 3);
    assert_eq!(dead[0].last_error.as_deref(), Some("downstream is down"));
    let history = inbox.history("<1@example.com>").await.unwrap();
    assert_eq!(history.len(), 1);

    assert_eq!(inbox.replay(&Filter::dead()).await.unwrap(), 3);
    let seen: Seen = Arc::default();
    let worker = inbox.worker(counting(seen.clone())).spawn();
    eventually("replayed and done", || async {
        inbox.counts().await.unwrap().events.done == 3
    })
    .await;
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let pruned = inbox.prune(Duration::ZERO).await.unwrap();
    assert_eq!(pruned.events, 3);
    assert_eq!(inbox.counts().await.unwrap().events.total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_is_answered_503_and_then_receiving_resumes() {
    let _server = SERVER.write().await;
    let Some(url) = database("restart").await else {
        return;
    };
    let Ok(ctl) = std::env::var("CMC_POSTGRES_CTL") else {
        eprintln!("skipped the restart test: CMC_POSTGRES_CTL is not set");
        return;
    };
    let inbox = builder(&url).open().await.unwrap();
    assert_eq!(
        post(&inbox, &numbered(0, 10), WireEncoding::Json).await,
        200
    );
    let run = |what: &str| {
        let status = std::process::Command::new(&ctl).arg(what).status().unwrap();
        assert!(status.success(), "{ctl} {what}");
    };
    run("stop");
    assert_eq!(
        post(&inbox, &numbered(10, 10), WireEncoding::Json).await,
        503
    );
    run("start");
    let mut acknowledged = 10;
    eventually("receiving resumes", || {
        let inbox = inbox.clone();
        async move { post(&inbox, &numbered(20, 10), WireEncoding::Json).await == 200 }
    })
    .await;
    acknowledged += 10;
    assert_eq!(
        inbox.counts().await.unwrap().events.total(),
        acknowledged as u64
    );
}

#[tokio::test]
async fn the_password_of_the_address_is_never_shown() {
    let builder = Inbox::postgres("postgres://cmc:s3cret-pw@127.0.0.1:1/db")
        .connect_timeout(Duration::from_millis(200));
    assert!(!format!("{builder:?}").contains("s3cret-pw"), "{builder:?}");
    // Nothing listens on port 1: the error names the address, not the
    // password.
    let error = builder.open().await.unwrap_err();
    assert!(!error.to_string().contains("s3cret-pw"), "{error}");
    assert!(error.to_string().contains("127.0.0.1"), "{error}");
    // An address the inbox does not know is not echoed with its password.
    let error = Inbox::open("mysql://cmc:s3cret-pw@localhost/db")
        .await
        .unwrap_err();
    assert!(!error.to_string().contains("s3cret-pw"), "{error}");
}
