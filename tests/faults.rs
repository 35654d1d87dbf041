//! Fault injection on real processes and servers: receivers (this test
//! binary run again as a child process, with the inbox, a worker and
//! `POST /mails`) under concurrent load from a dozen clients, while a fault
//! is injected:
//!
//! - SIGKILL of a receiver, several times (SQLite: the receiver is started
//!   again on the same file; PostgreSQL: two receivers serve, and the killed
//!   one is started again while the other goes on);
//! - PostgreSQL restarted with `pg_ctl restart -m fast` and `-m immediate`;
//! - `pg_terminate_backend` of every connection of the receivers;
//! - a full disk (SQLite on a small tmpfs, space given back later);
//! - a file system that turns read-only mid-run (SQLite on an ext4 loop
//!   device whose error behaviour is `remount-ro`, made to fail through
//!   `/sys/fs/ext4/*/trigger_fs_error`), where a receiver started then must
//!   refuse to start; and PostgreSQL turned read-only mid-run.
//!
//! After each fault CMC (the test) sends again what was not answered 200,
//! and a few batches that were, and every row is handled. Each run counts
//! the events acknowledged (200), the rows stored, the rows stored twice,
//! the events acknowledged but never handled, and the events handed to a
//! handler twice, and asserts the README's promises: every 200 is stored
//! exactly once and handled at least once, and a handler runs again only
//! for a row that was in flight (`running` in the store) at a fault.
//!
//! Short by default (a few faults each, for CI); `FAULTS_LONG=1` runs the
//! long form (20 kills, five restarts of each mode, 20 rounds of
//! terminations, three fills of the disk). The PostgreSQL tests need
//! `CMC_POSTGRES_URL` and `CMC_POSTGRES_CTL`:
//! `scripts/with-postgres.sh cargo test --all-features --test faults`.
//! Mounting needs root: without it the file-system tests say in one line
//! that they are skipped.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post_service;
use axum::Router;
use bytes::Bytes;
use cmc_webhook::inbox::{InboxBuilder, Job, StoreOptions};
use cmc_webhook::{Webhook, WebhookLayer};
use sqlx::Connection;

/// Set in the child: the store it serves.
const CHILD: &str = "CMC_FAULTS_STORE";
/// Set in the child: the file it appends each handled key to.
const LOG: &str = "CMC_FAULTS_LOG";
/// The child's worker concurrency: at most this many rows in flight each.
const CONCURRENCY: usize = 8;
/// The child's lease: longer than a restart of the database server takes,
/// so that a row in flight at a fault is still `running` when the test
/// looks right after it.
const LEASE: Duration = Duration::from_secs(5);
/// Events per batch.
const BATCH: usize = 10;
/// Clients posting at once.
const CLIENTS: usize = 12;
/// Batches acknowledged between two faults.
const BETWEEN: usize = 60;
/// The longest any wait of the suite takes before it fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// The long form (`FAULTS_LONG=1`) or the short one.
fn long() -> bool {
    std::env::var_os("FAULTS_LONG").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `short` faults, or `long` ones in the long form.
fn faults(short: usize, long_form: usize) -> usize {
    if long() {
        long_form
    } else {
        short
    }
}

/// One scenario at a time: they share two cores, and a restart of the
/// database server reaches every database on it.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The batch numbered `n`: `BATCH` events with message ids of their own,
/// `<n.i@example.com>`; its body and its events' idempotency keys.
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

/// The receiver of the child process: the inbox at `CMC_FAULTS_STORE`
/// (opened as a serving receiver opens it: migrated, and refused when it
/// cannot be written), a worker that appends each handled key to
/// `CMC_FAULTS_LOG` before it does the work, and `POST /mails` on a free
/// port, which it prints. When the store is refused it prints `REFUSED`
/// and why, and exits.
#[test]
#[ignore = "run by the fault tests in a process of their own"]
fn child_receiver() {
    let Ok(store) = std::env::var(CHILD) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let opened = async {
            let store: StoreOptions = store.parse()?;
            // Requests wait at most this for a connection to a database
            // that is down, then get 503.
            #[cfg(feature = "postgres")]
            let store = match store {
                StoreOptions::Postgres(o) => o.connect_timeout(Duration::from_secs(2)).into(),
                other => other,
            };
            InboxBuilder::new(store).open().await
        };
        let inbox = match opened.await {
            Ok(inbox) => inbox,
            Err(e) => {
                println!("REFUSED {e}");
                return;
            }
        };
        let log = Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(std::env::var(LOG).unwrap())
                .unwrap(),
        ));
        let _worker = inbox
            .worker(move |job: Job| {
                // Logged when handed over, one write per line: whole lines
                // survive a kill, and a handler killed before it finished
                // counts as handed over.
                let line = format!("{}\n", job.key);
                let written = log.lock().unwrap().write_all(line.as_bytes());
                async move {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    written
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

/// A child receiver, killed (SIGKILL) when dropped.
type Receiver = common::child::Killed;

/// Starts a child receiver on `store`, appending what it handles to `log`:
/// it and its address, or why it refused to start.
fn spawn(store: &str, log: &Path) -> Result<(Receiver, SocketAddr), String> {
    let mut child = common::child::test_command("child_receiver")
        .env(CHILD, store)
        .env(LOG, log)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let child = common::child::Killed(child);
    let port = common::child::announced_port(&mut lines)?;
    // Keep reading its output so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok((child, SocketAddr::from(([127, 0, 0, 1], port))))
}

/// The receivers of one run, by slot: the load goes to slot `n % slots`
/// for batch `n`. Each life of a receiver logs into a file of its own in
/// `logs`.
struct Fleet {
    started: Instant,
    store: String,
    logs: PathBuf,
    lives: usize,
    slots: Vec<Option<Receiver>>,
    addrs: Arc<Mutex<Vec<Option<SocketAddr>>>>,
}

impl Fleet {
    fn new(store: &str, logs: &Path, slots: usize) -> Fleet {
        let mut fleet = Fleet {
            started: Instant::now(),
            store: store.to_owned(),
            logs: logs.to_owned(),
            lives: 0,
            slots: (0..slots).map(|_| None).collect(),
            addrs: Arc::new(Mutex::new(vec![None; slots])),
        };
        for slot in 0..slots {
            fleet.start(slot).expect("the receiver starts");
        }
        fleet
    }

    /// Starts the receiver of `slot` (again), or says why it refused.
    fn start(&mut self, slot: usize) -> Result<(), String> {
        self.lives += 1;
        let log = self.logs.join(format!("handled-{}.log", self.lives));
        let (receiver, addr) = spawn(&self.store, &log)?;
        self.slots[slot] = Some(receiver);
        self.addrs.lock().unwrap()[slot] = Some(addr);
        Ok(())
    }

    /// SIGKILL to the receiver of `slot`.
    fn kill(&mut self, slot: usize) {
        self.addrs.lock().unwrap()[slot] = None;
        self.slots[slot] = None;
    }

    fn kill_all(&mut self) {
        for slot in 0..self.slots.len() {
            self.kill(slot);
        }
    }

    /// The address of a receiver that serves.
    fn live(&self) -> SocketAddr {
        self.addrs
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .next()
            .copied()
            .expect("a receiver serves")
    }

    /// How many times each key was handed to a handler, over every life.
    fn handled(&self) -> BTreeMap<String, usize> {
        let mut handled = BTreeMap::new();
        for entry in std::fs::read_dir(&self.logs).unwrap() {
            let path = entry.unwrap().path();
            if !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("handled-")
            {
                continue;
            }
            for key in std::fs::read_to_string(&path).unwrap().lines() {
                *handled.entry(key.to_owned()).or_default() += 1;
            }
        }
        handled
    }
}

/// Posts batch `n` to `addr` on a connection of its own: `Some(status)`,
/// or `None` when no answer came (refused, cut off, or 10 s passed).
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

/// Every answer of a run: the batch and its status (`None`: no answer).
type Answers = Arc<Mutex<Vec<(usize, Option<u16>)>>>;

/// `CLIENTS` clients posting new batches without pause, to the receiver
/// of slot `n % slots` for batch `n` (no answer when it is down).
struct Load {
    stop: Arc<AtomicBool>,
    answers: Answers,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the clients, numbering their batches from `first`.
    fn start(fleet: &Fleet, first: usize) -> Load {
        let next = Arc::new(AtomicUsize::new(first));
        let stop = Arc::new(AtomicBool::new(false));
        let answers: Answers = Arc::default();
        let clients = (0..CLIENTS)
            .map(|_| {
                let (next, stop, answers, addrs) = (
                    next.clone(),
                    stop.clone(),
                    answers.clone(),
                    fleet.addrs.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) {
                        let n = next.fetch_add(1, Ordering::SeqCst);
                        let addr = {
                            let addrs = addrs.lock().unwrap();
                            addrs[n % addrs.len()]
                        };
                        let status = match addr {
                            Some(addr) => post(addr, n).await,
                            None => {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                None
                            }
                        };
                        answers.lock().unwrap().push((n, status));
                    }
                })
            })
            .collect();
        Load {
            stop,
            answers,
            clients,
        }
    }

    /// Answers so far with this status.
    fn count(&self, status: Option<u16>) -> usize {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| *s == status)
            .count()
    }

    /// Waits (at most `PATIENCE`) until `more` further answers with
    /// `status` came.
    async fn more(&self, more: usize, status: Option<u16>, what: &str) {
        let target = self.count(status) + more;
        let started = Instant::now();
        while self.count(status) < target {
            assert!(
                started.elapsed() < PATIENCE,
                "{what}: {} of {more} answers {status:?} in {PATIENCE:?}",
                more + self.count(status) - target
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) -> Vec<(usize, Option<u16>)> {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.clients {
            c.await.unwrap();
        }
        let answers = self.answers.lock().unwrap().clone();
        answers
    }
}

/// Reads the store beside the receivers, with connections of its own.
struct Store(String);

impl Store {
    /// Every event row: its message id, key and state.
    async fn rows(&self) -> Vec<(String, String, String)> {
        let sql = "SELECT message_id, idempotency_key, state FROM cmc_events";
        if self.0.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(&self.0).await.unwrap();
            sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
        } else {
            #[cfg(feature = "postgres")]
            {
                let mut conn = common::inbox::pg_store(&self.0).await;
                sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap()
            }
            #[cfg(not(feature = "postgres"))]
            unreachable!("a PostgreSQL store without the postgres feature")
        }
    }

    /// The keys of the rows in `state` now.
    async fn keys(&self, state: &str) -> BTreeSet<String> {
        self.rows()
            .await
            .into_iter()
            .filter(|(_, _, s)| s == state)
            .map(|(_, key, _)| key)
            .collect()
    }

    /// Runs one statement (PostgreSQL).
    #[cfg(feature = "postgres")]
    async fn execute(&self, sql: &str) {
        let mut conn = common::inbox::pg_store(&self.0).await;
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// The rows a fault may make run again: those handed over by the end of
/// the fault that were not done at its start (their outcome may not have
/// been recorded). Made at the start of a fault, closed at its end, once
/// the store is back.
struct Window(BTreeSet<String>);

impl Window {
    async fn open(store: &Store) -> Window {
        Window(store.keys("done").await)
    }

    fn close(self, fleet: &Fleet, in_flight: &mut BTreeSet<String>) {
        in_flight.extend(
            fleet
                .handled()
                .into_keys()
                .filter(|key| !self.0.contains(key)),
        );
    }
}

/// What one run counted.
#[derive(Default)]
struct Tally {
    /// Faults injected.
    faults: usize,
    /// Batches answered 200, 503 and not at all while the faults went on.
    answered_200: usize,
    answered_503: usize,
    unanswered: usize,
    /// Batches sent again afterwards (the unacknowledged, and some
    /// acknowledged ones).
    resent: usize,
    /// Events acknowledged (answered 200, at any send).
    acknowledged: usize,
    /// Event rows in the store.
    stored: usize,
    /// Rows beyond the first of one event (stored twice).
    duplicated: usize,
    /// Acknowledged events without a row.
    lost: usize,
    /// Acknowledged events never handed to a handler.
    never_handled: usize,
    /// Events handed to a handler more than once.
    handled_twice: usize,
    /// Of those, the ones that were not in flight at any fault.
    twice_not_in_flight: usize,
    /// Rows in flight (`running`) at the faults, all together.
    in_flight: usize,
    /// The most times one event was handed over.
    most_handled: usize,
    /// From the start of the receivers to the end of the count.
    took: Duration,
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} faults; batches answered 200: {}, 503: {}, not at all: {}; resent {}; \
             events acknowledged {}, stored {}, stored twice {}, lost {}, never handled {}, \
             handed over twice {} (of {} in flight at the faults; {} not in flight), \
             at most {} times; {:.1?}",
            self.faults,
            self.answered_200,
            self.answered_503,
            self.unanswered,
            self.resent,
            self.acknowledged,
            self.stored,
            self.duplicated,
            self.lost,
            self.never_handled,
            self.handled_twice,
            self.in_flight,
            self.twice_not_in_flight,
            self.most_handled,
            self.took
        )
    }
}

/// The end of a run: stops the load, sends again (as CMC would) every
/// batch not answered 200 and every tenth that was, until each is
/// answered 200; waits until every row is done; stops the receivers;
/// counts; and asserts the README's promises.
async fn settle(
    name: &str,
    mut fleet: Fleet,
    load: Load,
    in_flight: BTreeSet<String>,
    faults: usize,
) -> Tally {
    let mut answers = load.stop().await;
    let mut tally = Tally {
        faults,
        answered_200: answers.iter().filter(|(_, s)| *s == Some(200)).count(),
        answered_503: answers.iter().filter(|(_, s)| *s == Some(503)).count(),
        unanswered: answers.iter().filter(|(_, s)| s.is_none()).count(),
        in_flight: in_flight.len(),
        ..Tally::default()
    };
    let odd: Vec<_> = answers
        .iter()
        .filter(|(_, s)| !matches!(s, None | Some(200 | 503)))
        .collect();
    assert!(
        odd.is_empty(),
        "{name}: answers other than 200 and 503: {odd:?}"
    );

    let acknowledged: BTreeSet<usize> = answers
        .iter()
        .filter(|(_, s)| *s == Some(200))
        .map(|(n, _)| *n)
        .collect();
    let sent: BTreeSet<usize> = answers.iter().map(|(n, _)| *n).collect();
    let resend: Vec<usize> = sent
        .difference(&acknowledged)
        .copied()
        .chain(acknowledged.iter().copied().step_by(10))
        .collect();
    tally.resent = resend.len();
    for n in resend {
        let started = Instant::now();
        loop {
            let status = post(fleet.live(), n).await;
            answers.push((n, status));
            if status == Some(200) {
                break;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{name}: batch {n} sent again: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Every row done: the rows in flight at a fault once their lease ran
    // out, the rest at once.
    let store = Store(fleet.store.clone());
    let started = Instant::now();
    let rows = loop {
        let rows = store.rows().await;
        let left = rows.iter().filter(|(_, _, s)| s != "done").count();
        if left == 0 {
            break rows;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{name}: {left} rows never done: {:?}",
            rows.iter()
                .filter(|(_, _, s)| s != "done")
                .take(5)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    fleet.kill_all();

    let mut per_message: BTreeMap<&str, usize> = BTreeMap::new();
    for (message_id, _, _) in &rows {
        *per_message.entry(message_id.as_str()).or_default() += 1;
    }
    let handled = fleet.handled();
    let acknowledged: BTreeSet<usize> = answers
        .iter()
        .filter(|(_, s)| *s == Some(200))
        .map(|(n, _)| *n)
        .collect();
    tally.acknowledged = acknowledged.len() * BATCH;
    tally.stored = rows.len();
    tally.duplicated = per_message.values().map(|c| c - 1).sum();
    for n in &acknowledged {
        let (_, keys) = batch(*n);
        for (i, key) in keys.iter().enumerate() {
            if !per_message.contains_key(format!("<{n}.{i}@example.com>").as_str()) {
                tally.lost += 1;
            }
            if !handled.contains_key(key) {
                tally.never_handled += 1;
            }
        }
    }
    let twice: Vec<&String> = handled
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(k, _)| k)
        .collect();
    tally.handled_twice = twice.len();
    tally.twice_not_in_flight = twice.iter().filter(|k| !in_flight.contains(**k)).count();
    tally.most_handled = handled.values().copied().max().unwrap_or(0);
    tally.took = fleet.started.elapsed();
    eprintln!("{name}: {tally}");

    // The promises.
    assert_eq!(tally.lost, 0, "{name}: acknowledged events lost");
    assert_eq!(tally.duplicated, 0, "{name}: events stored twice");
    assert_eq!(
        tally.stored,
        sent.len() * BATCH,
        "{name}: one row per event sent, whatever the times it was sent"
    );
    assert_eq!(
        tally.never_handled, 0,
        "{name}: acknowledged events never handled"
    );
    let unhandled = rows
        .iter()
        .filter(|(_, k, _)| !handled.contains_key(k))
        .count();
    assert_eq!(unhandled, 0, "{name}: rows done without their handler");
    assert_eq!(
        tally.twice_not_in_flight, 0,
        "{name}: handed over twice without being in flight at a fault"
    );
    assert!(
        tally.most_handled <= 1 + faults,
        "{name}: an event handed over {} times in {faults} faults",
        tally.most_handled
    );
    tally
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_on_sqlite() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("inbox.sqlite3").display());
    sigkill(dir.path(), &store, 1).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_on_postgres() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(store) = database("sigkill").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    sigkill(dir.path(), &store, 2).await;
}

/// Kills a receiver (each in turn) with SIGKILL under load, looks at what
/// was in flight, and starts it again; with two receivers the other
/// serves all along and takes over the killed one's leased rows.
async fn sigkill(logs: &Path, store: &str, receivers: usize) {
    let kills = faults(3, 20);
    let mut fleet = Fleet::new(store, logs, receivers);
    let load = Load::start(&fleet, 0);
    let db = Store(store.to_owned());
    let mut in_flight = BTreeSet::new();
    for kill in 0..kills {
        load.more(BETWEEN, Some(200), "load before a kill").await;
        let slot = kill % receivers;
        fleet.kill(slot);
        // The rows in flight: the killed receiver's stay `running` until
        // their lease runs out (with two receivers, the other's running
        // rows are in the set too, which only widens it).
        in_flight.extend(db.keys("running").await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        fleet.start(slot).expect("the receiver starts again");
    }
    load.more(BETWEEN, Some(200), "load after the last kill")
        .await;
    let tally = settle(
        &format!("SIGKILL x{kills}, {receivers} receiver(s)"),
        fleet,
        load,
        in_flight,
        kills,
    )
    .await;
    assert!(tally.in_flight > 0, "no kill came while handlers ran");
}

/// A fresh database on the test server, or `None` (skipped, in one line).
#[cfg(feature = "postgres")]
async fn database(test: &str) -> Option<String> {
    let admin = common::inbox::postgres_server("faults (PostgreSQL)")?;
    let name = format!("t_faults_{}_{}", test, std::process::id());
    Some(common::inbox::fresh_database(&admin, &name).await)
}

/// `CMC_POSTGRES_CTL`, the command that stops, starts and restarts the
/// test server, or `None` after a line saying `what` is skipped.
#[cfg(feature = "postgres")]
fn server_ctl(what: &str) -> Option<String> {
    let ctl = std::env::var("CMC_POSTGRES_CTL").ok();
    if ctl.is_none() {
        assert!(
            std::env::var_os("CMC_REQUIRE_POSTGRES").is_none(),
            "CMC_REQUIRE_POSTGRES is set but CMC_POSTGRES_CTL is not"
        );
        eprintln!(
            "{what}: SKIPPED, CMC_POSTGRES_CTL is not set (scripts/with-postgres.sh sets it)"
        );
    }
    ctl
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_fast_under_load() {
    let _one = ONE_AT_A_TIME.lock().await;
    restart("fast").await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_immediate_under_load() {
    let _one = ONE_AT_A_TIME.lock().await;
    restart("immediate").await;
}

/// Restarts the server (`pg_ctl restart -m mode`) under the load of two
/// receivers; the rows in flight are those `running` just before and
/// just after.
#[cfg(feature = "postgres")]
async fn restart(mode: &str) {
    let what = format!("PostgreSQL restarted -m {mode}");
    let Some(ctl) = server_ctl(&what) else {
        return;
    };
    let Some(store) = database(&format!("restart_{mode}")).await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let restarts = faults(1, 5);
    let fleet = Fleet::new(&store, logs.path(), 2);
    let load = Load::start(&fleet, 0);
    let db = Store(store.clone());
    let mut in_flight = BTreeSet::new();
    for _ in 0..restarts {
        load.more(BETWEEN, Some(200), "load before a restart").await;
        let window = Window::open(&db).await;
        let status = tokio::task::spawn_blocking({
            let (ctl, mode) = (ctl.clone(), mode.to_owned());
            move || {
                Command::new(&ctl)
                    .args(["restart", &mode])
                    .status()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(status.success(), "{ctl} restart {mode}");
        window.close(&fleet, &mut in_flight);
        // Receiving resumes by itself.
        load.more(BETWEEN, Some(200), "200s after the restart")
            .await;
    }
    let tally = settle(&what, fleet, load, in_flight, restarts).await;
    assert!(
        tally.answered_503 + tally.unanswered > 0,
        "{what}: the restart was not seen"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_terminate_backend_under_load() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(store) = database("terminate").await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let rounds = faults(3, 20);
    let fleet = Fleet::new(&store, logs.path(), 2);
    let load = Load::start(&fleet, 0);
    let db = Store(store.clone());
    let mut in_flight = BTreeSet::new();
    let mut terminated = 0i64;
    for _ in 0..rounds {
        load.more(BETWEEN, Some(200), "load before the terminations")
            .await;
        let window = Window::open(&db).await;
        let mut conn = sqlx::PgConnection::connect(&store).await.unwrap();
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
        terminated += killed.iter().filter(|k| **k).count() as i64;
        window.close(&fleet, &mut in_flight);
    }
    load.more(BETWEEN, Some(200), "load after the terminations")
        .await;
    settle(
        &format!("pg_terminate_backend x{rounds} ({terminated} connections)"),
        fleet,
        load,
        in_flight,
        rounds,
    )
    .await;
    assert!(terminated > 0, "no connection was terminated");
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_turned_read_only_under_load() {
    // The database is made read-only (as a failover to a replica would),
    // and its connections are cut so that new sessions see it: requests
    // get 503, a receiver started then refuses to start, and once the
    // database is writable again nothing acknowledged is missing.
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(store) = database("read_only").await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let mut fleet = Fleet::new(&store, logs.path(), 1);
    let load = Load::start(&fleet, 0);
    let db = Store(store.clone());
    let name = store.rsplit_once('/').unwrap().1.to_owned();
    load.more(BETWEEN, Some(200), "load before").await;
    let mut in_flight = BTreeSet::new();
    let window = Window::open(&db).await;
    db.execute(&format!(
        "ALTER DATABASE {name} SET default_transaction_read_only = on"
    ))
    .await;
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;
    load.more(20, Some(503), "503s while read-only").await;
    let refused = spawn(&store, &logs.path().join("refused.log"))
        .err()
        .expect("a receiver started on a read-only database refuses to start");
    assert!(
        refused.contains("cannot be written") || refused.contains("read-only"),
        "{refused}"
    );
    // Writable again, as a new primary would be.
    {
        let mut conn = sqlx::PgConnection::connect(&store).await.unwrap();
        sqlx::query("SET default_transaction_read_only = off")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(&*format!(
            "ALTER DATABASE {name} RESET default_transaction_read_only"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;
    window.close(&fleet, &mut in_flight);
    load.more(BETWEEN, Some(200), "200s once writable").await;
    // The receiver that served through it is killed and started again, to
    // be sure a new process serves too.
    fleet.kill(0);
    in_flight.extend(db.keys("running").await);
    fleet
        .start(0)
        .expect("the receiver starts on a writable database");
    settle("PostgreSQL read-only mid-run", fleet, load, in_flight, 2).await;
}

/// Runs a command; `Err` with its output when it fails or cannot run.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("{program}: {e}")),
    }
}

/// A file system mounted for one test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    /// A tmpfs of `size` at `dir`.
    fn tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(dir).unwrap();
        let mount = dir.to_str().unwrap();
        run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", mount],
        )?;
        Ok(Mount(dir.to_owned()))
    }

    /// An ext4 file system in the file `image` at `dir`, through a loop
    /// device, that turns read-only on an error.
    fn ext4(image: &Path, dir: &Path) -> Result<Mount, String> {
        std::fs::create_dir_all(dir).unwrap();
        let (image, mount) = (image.to_str().unwrap(), dir.to_str().unwrap());
        run("mount", &["-o", "loop,errors=remount-ro", image, mount])?;
        Ok(Mount(dir.to_owned()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazily: a receiver a failing test has not killed yet may still
        // hold files open.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_on_a_small_tmpfs() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let disk = match Mount::tmpfs(&dir.path().join("disk"), "16m") {
        Ok(disk) => disk,
        Err(e) => {
            eprintln!("full_disk_on_a_small_tmpfs: SKIPPED, cannot mount a tmpfs here ({e})");
            return;
        }
    };
    let store = format!("sqlite:{}", disk.0.join("inbox.sqlite3").display());
    let fleet = Fleet::new(&store, &logs, 1);
    let load = Load::start(&fleet, 0);
    let db = Store(store.clone());
    let fills = faults(1, 3);
    let mut in_flight = BTreeSet::new();
    for fill in 0..fills {
        load.more(BETWEEN, Some(200), "load before the disk fills")
            .await;
        let window = Window::open(&db).await;
        // Ballast up to the last byte: the store's next pages do not fit.
        let ballast = disk.0.join(format!("ballast-{fill}"));
        let mut file = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0u8; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.write_all(&[0u8; 512]);
        drop(file);
        load.more(20, Some(503), "503s on the full disk").await;
        std::fs::remove_file(&ballast).unwrap();
        window.close(&fleet, &mut in_flight);
        load.more(BETWEEN, Some(200), "200s once space is back")
            .await;
    }
    settle(
        &format!("a full disk x{fills}"),
        fleet,
        load,
        in_flight,
        fills,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_system_turned_read_only_under_load() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let mnt = dir.path().join("disk");
    let disk = run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()])
        .and_then(|()| Mount::ext4(&image, &mnt));
    let mut disk = match disk {
        Ok(disk) => Some(disk),
        Err(e) => {
            eprintln!(
                "file_system_turned_read_only_under_load: SKIPPED, cannot mount an ext4 loop device here ({e})"
            );
            return;
        }
    };
    // The device's error switch: /sys/fs/ext4/loopN/trigger_fs_error.
    let device = Command::new("findmnt")
        .args(["-n", "-o", "SOURCE"])
        .arg(&mnt)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    let trigger = Path::new("/sys/fs/ext4")
        .join(Path::new(&device).file_name().unwrap_or_default())
        .join("trigger_fs_error");
    if device.is_empty() || !trigger.is_file() || run("e2fsck", &["-V"]).is_err() {
        eprintln!(
            "file_system_turned_read_only_under_load: SKIPPED, no trigger_fs_error for the loop device ({device:?}) or no e2fsck"
        );
        return;
    }
    let store = format!("sqlite:{}", mnt.join("inbox.sqlite3").display());
    let mut fleet = Fleet::new(&store, &logs, 1);
    let load = Load::start(&fleet, 0);
    load.more(BETWEEN, Some(200), "load before").await;
    // The file system fails and turns read-only, with the store open.
    std::fs::write(&trigger, "1").unwrap();
    let acknowledged_before = load.count(Some(200));
    load.more(20, Some(503), "503s on the read-only file system")
        .await;
    let late = load.count(Some(200)) - acknowledged_before;
    // A receiver started now refuses to start.
    let refused = spawn(&store, &logs.join("refused.log"))
        .err()
        .expect("a receiver started on a read-only file system refuses to start");
    assert!(refused.contains("cannot be written"), "{refused}");
    let answers = load.stop().await;
    fleet.kill_all();

    // Repaired and mounted again, writable: the rows in flight are the
    // ones `running` in what the disk kept.
    disk.take();
    let repaired = Command::new("e2fsck")
        .args(["-f", "-y"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        repaired.status.code().is_some_and(|c| c <= 1),
        "e2fsck: {}",
        String::from_utf8_lossy(&repaired.stdout)
    );
    let _disk = Mount::ext4(&image, &mnt).expect("mounted again");
    // The worker's claims and marks are not synced (`NORMAL`): an error
    // of the file system loses the last of them as a power loss would,
    // and the README allows their handlers to run again. In flight then:
    // the rows the disk kept as `running`, and the rows handed over before
    // whose claim the disk did not keep (`pending` again).
    let kept = Store(store.clone()).rows().await;
    let handed = fleet.handled();
    let in_flight: BTreeSet<String> = kept
        .iter()
        .filter(|(_, key, state)| {
            state == "running" || (state == "pending" && handed.contains_key(key))
        })
        .map(|(_, key, _)| key.clone())
        .collect();
    fleet
        .start(0)
        .expect("the receiver starts on the repaired disk");
    // The answers so far go on in a new load's record.
    let first = answers.iter().map(|(n, _)| n + 1).max().unwrap_or(0);
    let load = Load::start(&fleet, first);
    load.answers.lock().unwrap().splice(0..0, answers);
    load.more(BETWEEN, Some(200), "200s on the repaired disk")
        .await;
    settle(
        &format!("a file system turned read-only ({late} 200s after the switch)"),
        fleet,
        load,
        in_flight,
        1,
    )
    .await;
}
