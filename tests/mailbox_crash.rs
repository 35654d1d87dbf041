//! Durability of mailboxes: a process running a mailbox worker is killed
//! with SIGKILL while its handlers run, and a new process on the same
//! store finishes the work. Every mail is routed once (one delivery per
//! mailbox, never two), every delivery ends delivered, and a handler runs
//! twice only for the deliveries in flight at the kill. On SQLite, and on
//! PostgreSQL when `CMC_POSTGRES_URL` names a server.
//!
//! The worker is this test binary itself, run again with
//! `CMC_MAILBOX_CHILD` set: the ignored test `child_worker` runs then.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cmc_webhook::inbox::mailbox::{DeliveryFilter, DeliveryState, MailJob, Mailbox, Mailboxes};
use cmc_webhook::inbox::Inbox;
use cmc_webhook::Webhook;

const CHILD: &str = "CMC_MAILBOX_CHILD";
const STORE: &str = "CMC_MAILBOX_STORE";
const CONCURRENCY: usize = 4;
const LEASE: Duration = Duration::from_secs(2);
const MAILS: usize = 120;

/// The mailboxes of the child: `a` and `b`, each handler appending
/// `delivery mail` to `handled.log` and then taking 10 ms.
fn mailboxes(log: Arc<Mutex<std::fs::File>>) -> Mailboxes {
    let mut m = Mailboxes::new();
    for name in ["a", "b"] {
        let log = log.clone();
        m = m
            .mailbox(
                Mailbox::new(name, move |job: MailJob| {
                    let line = format!("{} {}\n", job.id, job.mail_id);
                    // One write per line: whole lines survive the kill.
                    let written = log.lock().unwrap().write_all(line.as_bytes());
                    async move {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        written
                    }
                })
                .concurrency(CONCURRENCY),
            )
            .unwrap();
    }
    m.route("*@a.example.jp", "a")
        .unwrap()
        .route("*@b.example.jp", "b")
        .unwrap()
}

#[test]
#[ignore = "run by the crash test in a process of its own"]
fn child_worker() {
    let Some(dir) = std::env::var_os(CHILD).map(PathBuf::from) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let inbox = Inbox::open(&std::env::var(STORE).unwrap()).await.unwrap();
        let log = Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("handled.log"))
                .unwrap(),
        ));
        let _worker = inbox
            .mailbox_worker(mailboxes(log))
            .lease(LEASE)
            .poll_interval(Duration::from_millis(100))
            .spawn();
        println!("STARTED");
        std::io::stdout().flush().unwrap();
        std::future::pending::<()>().await;
    });
}

/// A child worker, killed (SIGKILL) when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, store: &str) -> Worker {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["child_worker", "--exact", "--ignored", "--nocapture"])
        .env(CHILD, dir)
        .env(STORE, store)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Worker(child)
}

/// The lines of the handlers' log: (delivery, mail) per run.
fn handled(dir: &Path) -> Vec<(i64, i64)> {
    std::fs::read_to_string(dir.join("handled.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (d, m) = l.split_once(' ')?;
            Some((d.parse().ok()?, m.parse().ok()?))
        })
        .collect()
}

fn mail(i: usize) -> Webhook {
    let to = match i % 3 {
        0 => format!("x{i}@a.example.jp"),
        1 => format!("x{i}@b.example.jp"),
        _ => format!("x{i}@a.example.jp, x{i}@b.example.jp"),
    };
    let body = serde_json::json!({
        "server_composition": "pro", "filter": "f", "headers": [],
        "subject": format!("mail {i}"), "envelope-from": "s@example.com",
        "envelope-to": to, "text": "hi",
    });
    Webhook::parse("application/json", Bytes::from(body.to_string())).unwrap()
}

async fn crash(dir: &Path, store: &str) {
    let inbox = Inbox::open(store).await.unwrap();
    for i in 0..MAILS {
        inbox.store(mail(i), None).await.unwrap();
    }
    let expected = MAILS + MAILS / 3;

    // Killed with handlers in flight, a third of the way through.
    let mut first = start(dir, store);
    let deadline = Instant::now() + Duration::from_secs(60);
    while handled(dir).len() < expected / 3 {
        assert!(Instant::now() < deadline, "the first worker made progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = first.0.kill();
    let _ = first.0.wait();
    let at_kill = handled(dir).len();
    assert!(at_kill < expected, "killed before the end ({at_kill})");

    // A new process finishes, after the dead one's leases run out.
    let _second = start(dir, store);
    let deadline = Instant::now() + Duration::from_secs(60);
    let all = loop {
        let all = inbox
            .deliveries()
            .list(&DeliveryFilter::all().limit(10_000))
            .await
            .unwrap();
        if all.len() == expected && all.iter().all(|d| d.state == DeliveryState::Delivered) {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "{store}: {} deliveries, states {:?}",
            all.len(),
            inbox.deliveries().counts().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Routed once: one delivery per mail and mailbox.
    let mut per_mail: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for d in &all {
        per_mail
            .entry(d.mail_id)
            .or_default()
            .push(d.mailbox.as_deref().unwrap());
    }
    assert_eq!(per_mail.len(), MAILS, "{store}");
    assert!(per_mail
        .values()
        .all(|m| m.len() == 1 || m == &["a", "b"] || m == &["b", "a"]));

    // Handled at least once each; twice only for those in flight at the
    // kill (running, or finished but not yet recorded: at most the two
    // mailboxes' concurrency each).
    let runs = handled(dir);
    let mut times: BTreeMap<i64, usize> = BTreeMap::new();
    for (delivery, _) in &runs {
        *times.entry(*delivery).or_default() += 1;
    }
    assert!(all.iter().all(|d| times.contains_key(&d.id)), "{store}");
    let again = times.values().filter(|n| **n > 1).count();
    assert!(
        again <= 2 * 2 * CONCURRENCY,
        "{store}: {again} deliveries ran twice"
    );
    assert!(times.values().all(|n| *n <= 2));
    eprintln!(
        "{store}: {} runs for {expected} deliveries; {again} ran again after the kill",
        runs.len()
    );
    inbox.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_worker_killed_mid_handler_loses_nothing_and_routes_once() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = format!("sqlite:{}", dir.path().join("inbox.sqlite3").display());
    crash(dir.path(), &store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_postgresql() {
    let Some(admin) = common::inbox::postgres_server("mailbox crash on PostgreSQL") else {
        return;
    };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = common::inbox::fresh_database(&admin, "cmc_mailbox_crash").await;
    crash(dir.path(), &store).await;
}
