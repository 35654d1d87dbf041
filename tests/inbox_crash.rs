//! Durability: a receiver process with the inbox, killed with SIGKILL
//! under concurrent load, then started again on the same store while CMC
//! (this test) sends again what was not acknowledged. Every event answered
//! 200 is stored exactly once and reaches the handler at least once;
//! handlers run twice only for the rows in flight at the kill. On SQLite
//! the same receiver starts again; on PostgreSQL (`CMC_POSTGRES_URL`) a
//! second instance serves all along, takes the resent batches, and handles
//! the killed one's leased rows once their lease runs out.
//!
//! The receiver is this test binary itself, run again with
//! `CMC_CRASH_CHILD` set: the ignored test `child_receiver` serves then.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post_service;
use axum::Router;
use bytes::Bytes;
use cmc_webhook::inbox::{Inbox, Job};
use cmc_webhook::{Webhook, WebhookLayer};

const CHILD: &str = "CMC_CRASH_CHILD";
/// The child's store (an inbox URL) and the name of its log file.
const STORE: &str = "CMC_CRASH_STORE";
const LOG: &str = "CMC_CRASH_LOG";
/// The child's worker concurrency: at most this many rows are in flight.
const CONCURRENCY: usize = 8;
/// The child's lease: the rows in flight at the kill are claimed again
/// this long after they were claimed.
const LEASE: Duration = Duration::from_secs(2);
const BATCH: usize = 10;
const CLIENTS: usize = 16;

/// The batch numbered `n`: `BATCH` events with message ids of their own.
fn batch(n: usize) -> (String, Vec<String>) {
    let records: Vec<String> = (0..BATCH)
        .map(|i| {
            format!(
                r#"{{"created":"2026-01-01 09:00:00","status":"queued","to":"u{i}@example.jp","messageId":"<{n}.{i}@example.com>"}}"#
            )
        })
        .collect();
    let body = format!(
        r#"{{"event_type":"deliveries","server_composition":"pro","event":{{"deliveries":[{}]}}}}"#,
        records.join(",")
    );
    let Webhook::Events(parsed) =
        Webhook::parse("application/json", Bytes::from(body.clone())).unwrap()
    else {
        unreachable!()
    };
    let keys = parsed
        .events
        .iter()
        .map(|e| e.idempotency_key().to_string())
        .collect();
    (body, keys)
}

/// The receiver of the child process: the inbox in `dir`, a worker that
/// appends each handled key to `handled.log`, and `POST /mails` on a free
/// port, which it prints.
#[test]
#[ignore = "run by the crash test in a process of its own"]
fn child_receiver() {
    let Some(dir) = std::env::var_os(CHILD).map(PathBuf::from) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = std::env::var(STORE).unwrap();
        let inbox = Inbox::open(&store).await.unwrap();
        let log = Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(std::env::var(LOG).unwrap()))
                .unwrap(),
        ));
        let _worker = inbox
            .worker(move |job: Job| {
                let log = log.clone();
                async move {
                    // One write per line: whole lines survive the kill.
                    let line = format!("{}\n", job.key);
                    log.lock().unwrap().write_all(line.as_bytes())
                }
            })
            .concurrency(CONCURRENCY)
            .lease(LEASE)
            .poll_interval(Duration::from_millis(100))
            .spawn();
        let gate = WebhookLayer::builder()
            .allow("127.0.0.0/8".parse::<ipnet::IpNet>().unwrap())
            .build()
            .unwrap();
        let app = Router::new().route("/mails", post_service(inbox.receive()).layer(gate));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("PORT {}", listener.local_addr().unwrap().port());
        std::io::stdout().flush().unwrap();
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
}

/// A child receiver, killed (SIGKILL) when dropped, so that a failing
/// test leaves no process behind.
struct Receiver(Child);

impl Receiver {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a child receiver on `store`, logging into `dir/log`; returns
/// it and its address.
fn start(dir: &Path, store: &str, log: &str) -> (Receiver, SocketAddr) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_receiver", "--exact", "--ignored", "--nocapture"])
        .env(CHILD, dir)
        .env(STORE, store)
        .env(LOG, log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let port = loop {
        let line = lines.next().expect("the child printed its port").unwrap();
        if let Some(port) = line.strip_prefix("PORT ") {
            break port.parse::<u16>().unwrap();
        }
    };
    // Keep reading its output so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Receiver(child), SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Posts batch `n`; `Some(status)` when an answer came.
async fn post(addr: SocketAddr, n: usize) -> Option<u16> {
    let (body, _) = batch(n);
    let raw = common::http::post(
        "/mails",
        &["Content-Type: application/json"],
        body.as_bytes(),
    );
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        tokio::io::AsyncWriteExt::write_all(&mut stream, &raw)
            .await
            .ok()?;
        let mut reply = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut reply)
            .await
            .ok()?;
        let text = String::from_utf8_lossy(&reply);
        text.split(' ').nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
}

/// Rows not done yet, and all rows, read through an inbox of the test's
/// own on the same store.
async fn progress(inbox: &Inbox) -> (u64, u64) {
    let counts = inbox.counts().await.unwrap().events;
    (counts.total() - counts.done, counts.total())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_answered_200_survives_sigkill_stored_once_and_handled() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("inbox.sqlite3").display());
    crash(dir.path(), &store, false).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_killed_instance_s_rows_are_handled_by_the_other() {
    let Some(admin) = common::inbox::postgres_server("inbox_crash (PostgreSQL variant)") else {
        return;
    };
    let name = format!("t_crash_{}", std::process::id());
    let store = common::inbox::fresh_database(&admin, &name).await;
    let dir = tempfile::tempdir().unwrap();
    crash(dir.path(), &store, true).await;
}

/// The crash test on `store`; with `fleet`, a second instance serves from
/// the start and takes over, else the killed one is started again.
async fn crash(dir: &Path, store: &str, fleet: bool) {
    let (mut child, addr) = start(dir, store, "first.log");
    let other = fleet.then(|| start(dir, store, "second.log"));

    // Load from CLIENTS tasks; the child is killed while they post.
    let acknowledged: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
    let unanswered: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (ack, lost, next, stop) = (
            acknowledged.clone(),
            unanswered.clone(),
            next.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                match post(addr, n).await {
                    Some(200) => {
                        ack.lock().unwrap().insert(n);
                    }
                    Some(other) => panic!("batch {n}: status {other}"),
                    None => {
                        lost.lock().unwrap().insert(n);
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 300 {
        assert!(started.elapsed() < Duration::from_secs(60), "too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill(); // SIGKILL
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let unanswered = unanswered.lock().unwrap().clone();
    assert!(
        !unanswered.is_empty(),
        "the kill should have cut requests off"
    );

    // Started again (or the other instance): CMC sends what was not
    // acknowledged, and repeats some of what was.
    let (mut child, addr) = match other {
        Some(other) => other,
        None => start(dir, store, "second.log"),
    };
    let resent: Vec<usize> = unanswered
        .iter()
        .copied()
        .chain(acknowledged.iter().copied().step_by(10))
        .collect();
    for n in &resent {
        assert_eq!(post(addr, *n).await, Some(200), "batch {n} sent again");
    }
    let observer = Inbox::open(store).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let total = loop {
        let (left, total) = progress(&observer).await;
        if left == 0 {
            break total;
        }
        assert!(Instant::now() < deadline, "{left} rows never done");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill();

    // Stored exactly once: one row per event sent, whichever times (and
    // every key sent was handled, so every key sent has its row).
    let sent: BTreeSet<usize> = acknowledged.union(&unanswered).copied().collect();
    assert_eq!(total as usize, sent.len() * BATCH);
    // Handled at least once, and twice only within the in-flight window.
    let log = ["first.log", "second.log"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
        .collect::<String>();
    let mut handled: BTreeMap<&str, usize> = BTreeMap::new();
    for key in log.lines() {
        *handled.entry(key).or_default() += 1;
    }
    for n in &sent {
        for key in batch(*n).1 {
            assert!(
                handled.contains_key(key.as_str()),
                "batch {n}: {key} never handled"
            );
        }
    }
    let twice = handled.values().filter(|c| **c > 1).count();
    assert!(
        twice <= CONCURRENCY,
        "{twice} events handled twice; at most {CONCURRENCY} were in flight"
    );
    assert!(handled.values().all(|c| *c <= 2));
    eprintln!(
        "acknowledged {} batches, cut off {}, resent {}; {} events handled twice",
        acknowledged.len(),
        unanswered.len(),
        resent.len(),
        twice
    );
}
