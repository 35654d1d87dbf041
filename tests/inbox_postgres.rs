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
use cmc_webhook::inbox::{Filter, Inbox, InboxBuilder, Item, Job, PostgresOptions};
use cmc_webhook::test_util::{encode, sample_inbound, CmcRequest, WireEncoding};
use cmc_webhook::Webhook;
use sqlx::Connection;
use tower::ServiceExt;

mod common;

/// Held for reading by every test, and for writing by the one that stops
/// the server.
static SERVER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A fresh database on the test server, or `None` (skipped).
async fn database(test: &str) -> Option<String> {
    let admin = common::inbox::postgres_server("inbox_postgres")?;
    let name = format!("t_{}_{}", test, std::process::id());
    Some(common::inbox::fresh_database(&admin, &name).await)
}

fn builder(url: &str) -> InboxBuilder<PostgresOptions> {
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
    let mut conn = common::inbox::pg_store(&url).await;
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
        sqlx::query_as("SELECT version, success FROM cmc_webhook_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let mut versions: Vec<i64> = std::fs::read_dir("crates/inbox/migrations/postgres")
        .unwrap()
        .map(|f| {
            let name = f.unwrap().file_name().into_string().unwrap();
            name.split_once('_').unwrap().0.parse().unwrap()
        })
        .collect();
    versions.sort();
    assert_eq!(
        migrations,
        versions.into_iter().map(|v| (v, true)).collect::<Vec<_>>()
    );
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
    let read = common::inbox::handle_all(&inbox, 1).await;
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
async fn a_database_restart_under_load_is_answered_503_and_nothing_acknowledged_is_lost() {
    let _server = SERVER.write().await;
    let Some(url) = database("restart").await else {
        return;
    };
    let Ok(ctl) = std::env::var("CMC_POSTGRES_CTL") else {
        eprintln!("skipped the restart test: CMC_POSTGRES_CTL is not set");
        return;
    };
    let inbox = builder(&url).open().await.unwrap();
    let seen: Seen = Arc::default();
    let worker = inbox.worker(counting(seen.clone())).spawn();
    // Eight clients post batches of ten new events, without pause.
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<(usize, u16)>>> = Arc::default();
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (inbox, next, stop, answers) =
            (inbox.clone(), next.clone(), stop.clone(), answers.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let status = post(&inbox, &numbered(n * 10, 10), WireEncoding::Json).await;
                answers.lock().unwrap().push((n, status));
            }
        }));
    }
    let run = |what: &'static str| {
        let ctl = ctl.clone();
        tokio::task::spawn_blocking(move || {
            let status = std::process::Command::new(&ctl).arg(what).status().unwrap();
            assert!(status.success(), "{ctl} {what}");
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    run("stop").await.unwrap();
    // Down for longer than the inbox waits for a connection (2 s here):
    // requests waiting then are answered 503.
    tokio::time::sleep(Duration::from_secs(3)).await;
    run("start").await.unwrap();
    // Receiving resumes by itself: 200s again after the restart.
    let resumed_from = answers.lock().unwrap().len();
    eventually("200s after the restart", || async {
        answers.lock().unwrap()[resumed_from..]
            .iter()
            .filter(|(_, s)| *s == 200)
            .count()
            >= 20
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let answers = answers.lock().unwrap().clone();
    let refused = answers.iter().filter(|(_, s)| *s == 503).count();
    assert!(refused > 0, "the restart was not seen");
    assert!(
        answers.iter().all(|(_, s)| *s == 200 || *s == 503),
        "only 200 and 503"
    );
    // Every event answered 200 is there (a 503 may have been stored too:
    // its commit can succeed as the connection drops; CMC sends it again
    // and it is counted as a repeat).
    let acknowledged: Vec<usize> = answers
        .iter()
        .filter(|(_, s)| *s == 200)
        .map(|(n, _)| *n)
        .collect();
    for n in &acknowledged {
        for i in 0..10 {
            let id = format!("<{}@example.com>", n * 10 + i);
            assert_eq!(inbox.history(&id).await.unwrap().len(), 1, "{id}");
        }
    }
    // And the worker, woken or polling, handles everything stored.
    let total = inbox.counts().await.unwrap().events.total();
    assert!(total >= 10 * acknowledged.len() as u64);
    eventually("every stored event handled", || async {
        seen.lock().unwrap().len() as u64 == total
    })
    .await;
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
    eprintln!(
        "restart under load: {} batches answered 200, {refused} answered 503",
        acknowledged.len()
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
    // An address the inbox does not know is not echoed with its password,
    // however its scheme is mistyped.
    for url in [
        "mysql://cmc:s3cret-pw@localhost/db",
        "postgres:/cmc:s3cret-pw@127.0.0.1:5432/db",
        "postgres:cmc:s3cret-pw@x",
        "postgres//cmc:s3cret-pw@h/db",
        "postgres://cmc:s3cret-pw/with/slashes@h/db",
    ] {
        let error = Inbox::open(url).await.unwrap_err();
        assert!(!error.to_string().contains("s3cret-pw"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_stored_by_one_instance_wakes_the_workers_of_another() {
    let _server = SERVER.read().await;
    let Some(url) = database("notify").await else {
        return;
    };
    let (a, b) = (
        builder(&url).open().await.unwrap(),
        builder(&url).open().await.unwrap(),
    );
    let seen: Seen = Arc::default();
    // B's worker polls once a minute: only NOTIFY can wake it sooner.
    let worker = b
        .worker(counting(seen.clone()))
        .poll_interval(Duration::from_secs(60))
        .spawn();
    tokio::time::sleep(Duration::from_millis(500)).await; // it has looked once
    for round in 0..3 {
        let stored = Instant::now();
        a.store(numbered(round * 10, 10), None).await.unwrap();
        while seen.lock().unwrap().len() < (round + 1) * 10 {
            assert!(
                stored.elapsed() < Duration::from_secs(10),
                "B's worker was not woken by A's commit"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_with_nul_characters_is_stored_and_handed_over_unchanged() {
    let _server = SERVER.read().await;
    let Some(url) = database("nul").await else {
        return;
    };
    let inbox = builder(&url).open().await.unwrap();
    let events = deliveries(&["<nul\\u0000id@example.com>".to_owned()]);
    let mut mail = sample_inbound(false);
    mail.envelope_from = "a\0b@example.com".into();
    mail.subject = "sub\0ject".into();
    // With other requests in the same commits, concurrently.
    let mut posts = tokio::task::JoinSet::new();
    for n in 0..20 {
        let inbox = inbox.clone();
        let webhook = match n % 4 {
            0 => events.clone(),
            1 => Webhook::Inbound(mail.clone()),
            _ => numbered(n * 10, 10),
        };
        posts.spawn(async move { post(&inbox, &webhook, WireEncoding::Json).await });
    }
    while let Some(status) = posts.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let read = common::inbox::handle_all(&inbox, 1 + 1 + 10 * 10).await;
    let got_mail = read.iter().find_map(|i| match i {
        Item::Mail(m) => Some(m.clone()),
        _ => None,
    });
    assert_eq!(got_mail.unwrap().subject, mail.subject);
    let Webhook::Events(batch) = &events else {
        unreachable!()
    };
    assert!(read
        .iter()
        .any(|i| matches!(i, Item::Event(e) if *e == batch.events[0])));
    // The summary column holds U+FFFD, and history finds it by the id.
    let history = inbox.history("<nul\0id@example.com>").await.unwrap();
    assert_eq!(history.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_keeps_its_deadline_when_the_database_is_down() {
    let _server = SERVER.write().await;
    let Some(url) = database("down").await else {
        return;
    };
    let Ok(ctl) = std::env::var("CMC_POSTGRES_CTL") else {
        return;
    };
    let inbox = Inbox::postgres(&url)
        .connect_timeout(Duration::from_secs(20))
        .open()
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let worker = inbox
        .worker(counting(seen))
        .poll_interval(Duration::from_millis(50))
        .spawn();
    let status = std::process::Command::new(&ctl)
        .arg("stop")
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let stopped = tokio::time::timeout(
        Duration::from_secs(15),
        worker.shutdown(Duration::from_millis(500)),
    )
    .await;
    let status = std::process::Command::new(&ctl)
        .arg("start")
        .status()
        .unwrap();
    assert!(status.success());
    stopped
        .expect("shutdown returned before the pool's 20 s connect timeout")
        .unwrap();
    eprintln!(
        "shutdown with the database down took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_each_request_is_answered_503_within_the_connect_timeout() {
    let _server = SERVER.write().await;
    let Some(url) = database("down_latency").await else {
        return;
    };
    let Ok(ctl) = std::env::var("CMC_POSTGRES_CTL") else {
        return;
    };
    let inbox = builder(&url).open().await.unwrap();
    assert_eq!(
        post(&inbox, &numbered(0, 10), WireEncoding::Json).await,
        200
    );
    assert!(std::process::Command::new(&ctl)
        .arg("stop")
        .status()
        .unwrap()
        .success());
    // Ten requests at once, in one group commit: each gets its 503 after
    // about one connect timeout (2 s here), not one after another.
    let started = Instant::now();
    let mut posts = tokio::task::JoinSet::new();
    for n in 1..=10 {
        let inbox = inbox.clone();
        posts.spawn(async move {
            let status = post(&inbox, &numbered(n * 10, 10), WireEncoding::Json).await;
            (status, started.elapsed())
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(answer) = posts.join_next().await {
        let (status, after) = answer.unwrap();
        assert_eq!(status, 503);
        slowest = slowest.max(after);
    }
    assert!(std::process::Command::new(&ctl)
        .arg("start")
        .status()
        .unwrap()
        .success());
    assert!(
        slowest < Duration::from_secs(8),
        "the last 503 came after {slowest:?}: requests waited for each other"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_role_cannot_serve_but_can_inspect() {
    let _server = SERVER.read().await;
    let Some(url) = database("read_only_role").await else {
        return;
    };
    let inbox = builder(&url).open().await.unwrap();
    inbox.store(numbered(0, 3), None).await.unwrap();
    inbox.close().await;
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let role = format!("cmc_reader_{}", std::process::id());
    for sql in [
        format!("DROP ROLE IF EXISTS {role}"),
        format!("CREATE ROLE {role} LOGIN"),
        format!("GRANT USAGE ON SCHEMA cmc_webhook TO {role}"),
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA cmc_webhook TO {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(&*sql))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let (base, db) = url.rsplit_once('/').unwrap();
    let (scheme, host) = base.split_once("://").unwrap();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let reader_url = format!("{scheme}://{role}@{host}/{db}");
    // Serving needs writes: refused at open, not 503 for every webhook.
    // (The migrator's own table is checked for first: PostgreSQL checks
    // the right to create before whether the table exists.)
    let refused = builder(&reader_url).open().await.unwrap_err();
    assert!(
        refused.to_string().contains("cannot be written")
            || refused.to_string().contains("permission denied"),
        "{refused}"
    );
    // Inspection opens without migrating, and reads.
    let reader = builder(&reader_url).read_only(true).open().await.unwrap();
    assert_eq!(reader.counts().await.unwrap().events.total(), 3);
    assert_eq!(reader.history("<1@example.com>").await.unwrap().len(), 1);
    reader.close().await;
}

/// The child side of the clock-skew test: run under `faketime`, stores
/// an event and exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_child() {
    let Ok(url) = std::env::var("CMC_SKEWED_CHILD_URL") else {
        return;
    };
    started_at();
    let inbox = builder(&url).open().await.unwrap();
    if let Ok(file) = std::env::var("CMC_SKEWED_CHILD_STEP") {
        // The wall clock steps six minutes ahead after the inbox read the
        // server's clock (libfaketime reads this file at every call).
        std::fs::write(file, "+360").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            jiff::Timestamp::now().as_second() - 300 > started_at(),
            "the wall clock did not step"
        );
    }
    inbox.store(numbered(0, 1), None).await.unwrap();
    inbox.close().await;
}

/// When this process started, by its wall clock (read before any step).
fn started_at() -> i64 {
    static AT: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *AT.get_or_init(|| jiff::Timestamp::now().as_second())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_come_from_the_database_server_whatever_the_local_clock_says() {
    // A receiver whose clock is six minutes ahead (faketime) stores an
    // event: its received_at and run_at are the server's time, so the
    // other workers find it due at once.
    let _server = SERVER.read().await;
    let Some(url) = database("skewed_clock").await else {
        return;
    };
    let Some(faketime) = which("faketime") else {
        eprintln!(
            "times_come_from_the_database_server: SKIPPED, no faketime (apt-get install faketime)"
        );
        return;
    };
    let me = std::env::current_exe().unwrap();
    let status = std::process::Command::new(faketime)
        .arg("-f")
        .arg("+360s")
        .arg(&me)
        .args(["--exact", "skewed_child", "--nocapture"])
        .env("CMC_SKEWED_CHILD_URL", &url)
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .status()
        .unwrap();
    assert!(status.success());
    let mut conn = common::inbox::pg_store(&url).await;
    let (received, run_at, server): (i64, i64, i64) = sqlx::query_as(
        "SELECT (extract(epoch FROM received_at) * 1000)::BIGINT, \
         (extract(epoch FROM run_at) * 1000)::BIGINT, \
         (extract(epoch FROM now()) * 1000)::BIGINT FROM cmc_events",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        (server - received).abs() < 60_000,
        "received_at is {} s from the server's clock",
        (received - server) / 1000
    );
    assert!(
        run_at <= server + 5_000,
        "due {} s ahead",
        (run_at - server) / 1000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_stepped_while_running_changes_no_stored_time() {
    // The receiver's wall clock steps six minutes ahead after it opened
    // the inbox: its times still follow the server's (advanced by the
    // monotonic clock, not the wall clock).
    let _server = SERVER.read().await;
    let Some(url) = database("stepped_clock").await else {
        return;
    };
    let library = std::path::Path::new("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1");
    if !library.exists() {
        eprintln!("a_wall_clock_stepped: SKIPPED, no libfaketime (apt-get install faketime)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let step = dir.path().join("faketime");
    std::fs::write(&step, "+0").unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "skewed_child", "--nocapture"])
        .env("CMC_SKEWED_CHILD_URL", &url)
        .env("CMC_SKEWED_CHILD_STEP", &step)
        .env("LD_PRELOAD", library)
        .env("FAKETIME_TIMESTAMP_FILE", &step)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .status()
        .unwrap();
    assert!(status.success());
    let mut conn = common::inbox::pg_store(&url).await;
    let (received, server): (i64, i64) = sqlx::query_as(
        "SELECT (extract(epoch FROM received_at) * 1000)::BIGINT, \
         (extract(epoch FROM now()) * 1000)::BIGINT FROM cmc_events",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        (server - received).abs() < 60_000,
        "received_at is {} s from the server's clock",
        (received - server) / 1000
    );
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|p| p.is_file())
}

#[tokio::test]
async fn an_unknown_address_parameter_is_refused_without_its_value() {
    // sqlx ignores a parameter it does not know and logs it with its
    // value: a misspelt `pasword=` would reach the logs.
    let logs = common::logs::Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let err =
        Inbox::postgres("postgres://cmc@127.0.0.1:1/cmc?sslmode=disable&pasword=s3cret-value")
            .open()
            .await
            .unwrap_err();
    assert_eq!(err.kind(), cmc_webhook::inbox::InboxErrorKind::Config);
    assert!(err.to_string().contains("\"pasword\""), "{err}");
    assert!(!err.to_string().contains("s3cret-value"), "{err}");
    assert!(!logs.text().contains("s3cret-value"), "{}", logs.text());
}
