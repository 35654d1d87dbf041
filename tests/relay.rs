//! The relay end to end: the receiver's app, inbox and worker relaying to
//! a real HTTP server written in Python (tests/common/relay_target.py),
//! which verifies every request with the `standardwebhooks` package from
//! PyPI, an implementation of Standard Webhooks independent of ours.
//!
//! Without Python or the package, each test says so and passes, unless
//! `CMC_REQUIRE_PYTHON=1` (set by CI), where it fails.

mod common;

use cmc_receiver::relay::record::{RecordingStates, StateRecorder};
use cmc_receiver::relay::{Relay, RelayOptions};
use cmc_receiver::{app, serve};

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cmc_webhook::inbox::{Backoff, Counts, Filter, Inbox};
use cmc_webhook::test_util::CmcRequest;
use cmc_webhook::Webhook;
use serde_json::Value;
use sha2::Digest as _;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_dGhlIG5ldyBzZWNyZXQgb2YgdGhlIHJvdGF0aW9u";

/// The Python target: its port and the requests it reported.
struct Target {
    child: Child,
    port: u16,
    records: Arc<Mutex<Vec<Value>>>,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Target {
    fn records(&self) -> Vec<Value> {
        self.records.lock().unwrap().clone()
    }

    fn url(&self) -> http::Uri {
        format!("http://127.0.0.1:{}/hooks", self.port)
            .parse()
            .unwrap()
    }
}

/// Starts the Python target on `port` (0: any), verifying with each of
/// `secrets`, answering 500 to the first `fail_first` requests of each
/// webhook-id. `None` (the test passes, saying why) when Python or the
/// package is missing, unless CMC_REQUIRE_PYTHON=1.
fn start_target(port: u16, secrets: &[&str], fail_first: u32) -> Option<Target> {
    slow_target(port, secrets, fail_first, 0)
}

/// [`start_target`], answering each request `delay_ms` after it came.
fn slow_target(port: u16, secrets: &[&str], fail_first: u32, delay_ms: u64) -> Option<Target> {
    spawn_target(port, secrets, fail_first, delay_ms, None, false)
}

/// The target, serving HTTPS with `tls` (certificate and key PEM files)
/// when given.
fn spawn_target(
    port: u16,
    secrets: &[&str],
    fail_first: u32,
    delay_ms: u64,
    tls: Option<(&std::path::Path, &std::path::Path)>,
    refuse_mails: bool,
) -> Option<Target> {
    let required = std::env::var("CMC_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    let missing = |why: String| {
        assert!(
            !required,
            "CMC_REQUIRE_PYTHON=1 but the Python relay target cannot run: {why} \
             (pip install standardwebhooks)"
        );
        eprintln!("skipped: the Python relay target cannot run: {why}");
        None
    };
    let script = common::fixtures().join("../common/relay_target.py");
    let mut command = Command::new("python3");
    if refuse_mails {
        command.env("RELAY_TARGET_REFUSE_MAILS", "1");
    }
    if let Some((cert, key)) = tls {
        command.env(
            "RELAY_TARGET_TLS",
            format!("{}:{}", cert.display(), key.display()),
        );
    }
    let mut child = match command
        .arg(&script)
        .arg(port.to_string())
        .arg(serde_json::to_string(secrets).unwrap())
        .arg(fail_first.to_string())
        .arg(delay_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return missing(format!("python3: {e}")),
    };
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = match lines.next() {
        Some(Ok(line)) => serde_json::from_str(&line).unwrap(),
        other => {
            let _ = child.kill();
            panic!("the Python target said nothing: {other:?}");
        }
    };
    if let Some(e) = first.get("import_error") {
        let _ = child.wait();
        return missing(format!("import standardwebhooks: {e}"));
    }
    let port = u16::try_from(first["port"].as_u64().unwrap()).unwrap();
    let records: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = records.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock()
                .unwrap()
                .push(serde_json::from_str(&line).unwrap());
        }
    });
    Some(Target {
        child,
        port,
        records,
    })
}

/// The receiver: its inbox on a SQLite file, a worker relaying with a
/// short backoff, and its HTTP endpoint; returns the endpoint's address.
struct Receiver {
    inbox: Inbox,
    relay: Relay,
    addr: SocketAddr,
    worker: Option<cmc_webhook::inbox::WorkerHandle>,
    _dir: tempfile::TempDir,
}

async fn start_receiver(relay: RelayOptions, max_attempts: u32) -> Receiver {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::sqlite(dir.path().join("cmc-inbox.sqlite3"))
        .open()
        .await
        .unwrap();
    let relay = Relay::new(relay).unwrap();
    let handler = relay.clone();
    let worker = inbox
        .worker(move |job| handler.clone().send(job))
        .backoff(
            Backoff::exponential(Duration::from_millis(20))
                .max(Duration::from_millis(100))
                .jitter(0.0),
        )
        .poll_interval(Duration::from_millis(20))
        .max_attempts(max_attempts)
        .spawn();
    let options = app::Options {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        body_limit: 32 << 20,
        ..app::Options::default()
    };
    let router = app::router(&options, app::Target::Inbox(inbox.clone())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve::serve(
        listener,
        router,
        serve::Limits::default(),
        std::future::pending(),
    ));
    Receiver {
        inbox,
        relay,
        addr,
        worker: Some(worker),
        _dir: dir,
    }
}

fn options(url: http::Uri, secrets: &[&str]) -> RelayOptions {
    RelayOptions::new(url, secrets.iter().map(|s| s.parse().unwrap()).collect())
}

/// What a stored webhook must arrive as: its rows' keys, with the SHA-256
/// of each attachment of a mail.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Event(String),
    Mail(Vec<String>),
}

fn expected(webhook: &Webhook, into: &mut BTreeMap<String, Expected>) {
    match webhook {
        Webhook::Events(batch) => {
            for event in &batch.events {
                into.insert(
                    event.idempotency_key().to_string(),
                    Expected::Event(event.event_type().as_str().to_owned()),
                );
            }
        }
        Webhook::Inbound(mail) => {
            let sums = mail
                .attachments
                .iter()
                .map(|a| hex(&sha2::Sha256::digest(&a.data)))
                .collect();
            into.insert(mail.idempotency_key().to_string(), Expected::Mail(sums));
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Posts a body to the receiver: 200 expected.
/// Records `relay`'s target's states in `states` as `writer`'s, with a
/// recorder of its own.
fn record(relay: &Relay, states: &Inbox, writer: &str) -> RecordingStates {
    let mut recorder = StateRecorder::new(states.clone());
    recorder.watch(relay, writer.to_owned());
    recorder.spawn()
}

async fn post(addr: SocketAddr, content_type: &str, body: Bytes) {
    let raw = CmcRequest::raw(content_type.to_owned(), body)
        .uri("/mails")
        .to_http1("test");
    let reply = common::http::send_raw(addr, &raw).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));
}

/// Posts every fixture once; the rows they make.
async fn post_fixtures(addr: SocketAddr) -> BTreeMap<String, Expected> {
    let mut want = BTreeMap::new();
    for path in common::all_bodies() {
        let content_type = common::content_type_of(&path);
        let body = Bytes::from(std::fs::read(&path).unwrap());
        expected(
            &Webhook::parse(&content_type, body.clone()).unwrap(),
            &mut want,
        );
        post(addr, &content_type, body).await;
    }
    want
}

/// Waits until `done` holds of the target's records (30 s at most).
async fn until(target: &Target, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let records = target.records();
        if done(&records) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 30 s; the target saw {records:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn counts_until(inbox: &Inbox, what: &str, done: impl Fn(&Counts) -> bool) -> Counts {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = inbox.counts().await.unwrap();
        if done(&counts) {
            return counts;
        }
        assert!(Instant::now() < deadline, "{what}: {counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn settled(counts: &Counts) -> bool {
    counts.events.pending + counts.events.running + counts.mails.pending + counts.mails.running == 0
}

/// Checks that each row arrived verified, answered 200 exactly once, as
/// the payload of its kind with the right attachments.
fn check_arrivals(records: &[Value], want: &BTreeMap<String, Expected>, secrets: usize) {
    let mut ok: BTreeMap<String, &Value> = BTreeMap::new();
    for record in records {
        assert!(record.get("parse_error").is_none(), "{record:#}");
        assert_eq!(
            record["verified"],
            Value::from(vec![true; secrets]),
            "{record:#}"
        );
        assert_eq!(record["signatures"], secrets, "{record:#}");
        let id = record["id"].as_str().unwrap().to_owned();
        assert_eq!(record["payload"]["id"], id.as_str());
        assert_eq!(record["payload"]["version"], 1);
        if record["status"] == 200 {
            assert!(
                ok.insert(id.clone(), record).is_none(),
                "{id} arrived twice"
            );
        }
    }
    assert_eq!(
        ok.keys().collect::<BTreeSet<_>>(),
        want.keys().collect::<BTreeSet<_>>()
    );
    for (id, record) in ok {
        let payload = &record["payload"];
        match &want[&id] {
            Expected::Event(event_type) => {
                assert_eq!(payload["type"], "event");
                assert_eq!(payload["event_type"], event_type.as_str());
                assert!(payload["event"].is_object());
                assert_eq!(record["content_type"], "application/json");
            }
            Expected::Mail(sums) => {
                assert_eq!(payload["type"], "inbound");
                let got: Vec<&str> = record["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["sha256"].as_str().unwrap())
                    .collect();
                assert_eq!(&got, sums, "{id}: the attachments");
            }
        }
    }
}

async fn every_fixture_arrives_verified_once(inline_limit: usize) -> Vec<Value> {
    let Some(target) = start_target(0, &[SECRET], 0) else {
        return Vec::new();
    };
    let mut relay = options(target.url(), &[SECRET]);
    relay.inline_limit = inline_limit;
    let receiver = start_receiver(relay, 3).await;
    let want = post_fixtures(receiver.addr).await;
    let counts = counts_until(&receiver.inbox, "the rows settle", settled).await;
    assert_eq!(counts.events.dead + counts.mails.dead, 0, "{counts:?}");
    assert_eq!(
        (counts.events.done + counts.mails.done) as usize,
        want.len(),
        "{counts:?}"
    );
    // A moment for a repeat to show, were there one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let records = target.records();
    check_arrivals(&records, &want, 1);
    assert_eq!(records.len(), want.len(), "no request was repeated");
    records
}

#[tokio::test]
async fn every_fixture_arrives_verified_exactly_once_with_attachments_inline() {
    let records = every_fixture_arrives_verified_once(usize::MAX).await;
    assert!(records
        .iter()
        .all(|r| r["content_type"] == "application/json"));
}

#[tokio::test]
async fn every_fixture_arrives_verified_exactly_once_with_attachments_as_parts() {
    let records = every_fixture_arrives_verified_once(0).await;
    let multipart: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["content_type"]
                .as_str()
                .unwrap()
                .starts_with("multipart/form-data; boundary=")
        })
        .collect();
    // The fixtures hold mails with attachments: each is a multipart body.
    assert!(!multipart.is_empty() || records.is_empty());
    for r in multipart {
        assert!(!r["files"].as_array().unwrap().is_empty(), "{r:#}");
        for file in r["files"].as_array().unwrap() {
            assert!(file["filename"].is_string(), "{r:#}");
        }
    }
}

#[tokio::test]
async fn a_target_failing_three_times_gets_the_same_id_four_times() {
    let Some(target) = start_target(0, &[SECRET], 3) else {
        return;
    };
    let receiver = start_receiver(options(target.url(), &[SECRET]), 5).await;
    let (content_type, body) = common::load("event-v2-json-blocks.json");
    let mut want = BTreeMap::new();
    expected(
        &Webhook::parse(&content_type, body.clone()).unwrap(),
        &mut want,
    );
    post(receiver.addr, &content_type, body).await;
    counts_until(&receiver.inbox, "the rows settle", settled).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let records = target.records();
    for id in want.keys() {
        let tries: Vec<&Value> = records.iter().filter(|r| r["id"] == id.as_str()).collect();
        let statuses: Vec<u64> = tries
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect();
        assert_eq!(statuses, [500, 500, 500, 200], "{id}");
        // The same body at every attempt, each verified.
        assert!(tries
            .iter()
            .all(|r| r["body_sha256"] == tries[0]["body_sha256"]));
        assert!(tries
            .iter()
            .all(|r| r["verified"] == Value::from(vec![true])));
    }
    assert_eq!(records.len(), 4 * want.len());
    let counts = receiver.inbox.counts().await.unwrap();
    assert_eq!(counts.events.done as usize, want.len());
}

#[tokio::test]
async fn during_a_rotation_either_secret_alone_verifies() {
    // The target tries each secret alone.
    let Some(target) = start_target(0, &[SECRET, OTHER_SECRET], 0) else {
        return;
    };
    let receiver = start_receiver(options(target.url(), &[SECRET, OTHER_SECRET]), 3).await;
    let want = post_fixtures(receiver.addr).await;
    counts_until(&receiver.inbox, "the rows settle", settled).await;
    let records = until(&target, "every row", |r| r.len() >= want.len()).await;
    check_arrivals(&records, &want, 2);
    // A target that knows only a third secret verifies nothing.
    let Some(stranger) = start_target(0, &["whsec_c29tZW9uZSBlbHNlJ3Mgc2VjcmV0IGtleQ=="], 0) else {
        return;
    };
    let receiver = start_receiver(options(stranger.url(), &[SECRET, OTHER_SECRET]), 1).await;
    let (content_type, body) = common::load("event-v2-json-blocks.json");
    post(receiver.addr, &content_type, body).await;
    let counts = counts_until(&receiver.inbox, "the rows die", |c| {
        c.events.dead > 0 && settled(c)
    })
    .await;
    assert_eq!(counts.events.done, 0);
    assert!(stranger
        .records()
        .iter()
        .all(|r| r["status"] == 401 && r["verified"] == Value::from(vec![false])));
}

#[tokio::test]
async fn a_target_down_leaves_dead_rows_that_replay_sends_once_it_is_up() {
    // A port nobody listens on, for the target to take later.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url: http::Uri = format!("http://127.0.0.1:{port}/hooks").parse().unwrap();
    let mut relay = options(url, &[SECRET]);
    relay.failure_cap = 0; // never paused: the rows die at once
    let mut receiver = start_receiver(relay, 2).await;
    let want = post_fixtures(receiver.addr).await;
    let counts = counts_until(&receiver.inbox, "every row dead", |c| {
        settled(c) && (c.events.dead + c.mails.dead) as usize == want.len()
    })
    .await;
    assert_eq!(counts.events.done + counts.mails.done, 0);
    // The dead rows say why.
    let dead = receiver.inbox.dead(100).await.unwrap();
    assert!(
        dead.iter().all(|d| d
            .last_error
            .as_deref()
            .unwrap()
            .contains("could not be reached")),
        "{dead:?}"
    );
    let Some(target) = start_target(port, &[SECRET], 0) else {
        receiver.worker.take().unwrap().abort();
        return;
    };
    let replayed = receiver.inbox.replay(&Filter::dead()).await.unwrap();
    assert_eq!(replayed as usize, want.len());
    counts_until(&receiver.inbox, "every row done", |c| {
        settled(c) && (c.events.done + c.mails.done) as usize == want.len()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let records = target.records();
    check_arrivals(&records, &want, 1);
    assert_eq!(records.len(), want.len());
}

#[test]
fn relay_options_refuse_what_cannot_work() {
    use cmc_receiver::relay::target as url;
    assert!(url("https://app.example.jp/hooks", false).is_ok());
    let e = url("http://app.example.jp/hooks", false).unwrap_err();
    assert!(e.contains("--relay-allow-http"), "{e}");
    assert!(url("http://10.0.0.5:8000/hooks", true).is_ok());
    let e = url("https://user:hunter2@app.example.jp/", false).unwrap_err();
    assert!(!e.contains("hunter2"), "{e}");
    assert!(url("ftp://app.example.jp/", false).is_err());
    assert!(url("not a url", false).is_err());
    // No secret: refused.
    let e = Relay::new(RelayOptions::new(
        "https://app.example.jp/".parse().unwrap(),
        Vec::new(),
    ))
    .unwrap_err();
    assert!(e.contains("CMC_RELAY_SECRET"), "{e}");
}

#[test]
fn secrets_come_from_the_environment_or_a_file_and_are_never_shown() {
    use std::ffi::OsString;
    let args = |extra: &[&str]| {
        let mut argv = vec!["cmc-receiver", "--relay", "https://app.example.jp/hooks"];
        argv.extend_from_slice(extra);
        cmc_receiver::file::try_load_from(argv).unwrap()
    };
    let env = |value: &'static str| {
        move |name: &str| (name == "CMC_RELAY_SECRET").then(|| OsString::from(value))
    };
    let none = |_: &str| None::<OsString>;
    // Two secrets, separated by a comma and spaces: both sign.
    let two = format!("{SECRET}, {OTHER_SECRET}");
    let two: &'static str = Box::leak(two.into_boxed_str());
    let options = args(&[]).relay.options(env(two)).unwrap().unwrap();
    assert_eq!(options.secrets.len(), 2);
    // Debug never shows a secret.
    let shown = format!("{options:?}");
    assert!(
        !shown.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "{shown}"
    );
    // None: refused when the relay is built.
    let options = args(&[]).relay.options(none).unwrap().unwrap();
    assert!(Relay::new(options)
        .unwrap_err()
        .contains("CMC_RELAY_SECRET"));
    // A bad one: refused, not shown.
    let e = args(&[])
        .relay
        .options(env("whsec_not-base64-at-all!"))
        .unwrap_err();
    assert!(
        e.contains("CMC_RELAY_SECRET") && !e.contains("not-base64-at-all"),
        "{e}"
    );
    // From a file, one per line.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay-secrets");
    std::fs::write(&file, format!("{SECRET}\r\n\n{OTHER_SECRET}\n")).unwrap();
    let file = file.to_str().unwrap();
    let options = args(&["--relay-secret-file", file])
        .relay
        .options(none)
        .unwrap()
        .unwrap();
    assert_eq!(options.secrets.len(), 2);
    // Both places: refused as ambiguous.
    assert!(args(&["--relay-secret-file", file])
        .relay
        .options(env(SECRET))
        .is_err());
    std::fs::write(dir.path().join("bad"), "whsec_c2hvcnQ=\n").unwrap();
    let bad = dir.path().join("bad");
    let e = args(&["--relay-secret-file", bad.to_str().unwrap()])
        .relay
        .options(none)
        .unwrap_err();
    assert!(e.contains("fewer than 16") && !e.contains("c2hvcnQ"), "{e}");
    // http:// without --relay-allow-http: refused at start.
    let e = cmc_receiver::file::try_load_from(["cmc-receiver", "--relay", "http://10.0.0.5/"])
        .unwrap()
        .relay
        .options(env(SECRET))
        .unwrap_err();
    assert!(e.contains("--relay-allow-http"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_25_mib_mail_arrives_whole() {
    let Some(target) = start_target(0, &[SECRET], 0) else {
        return;
    };
    let receiver = start_receiver(options(target.url(), &[SECRET]), 3).await;
    let (content_type, body) = common::load("inbound-multipart-filenames.multipart");
    let Webhook::Inbound(mut mail) = Webhook::parse(&content_type, body).unwrap() else {
        panic!("the fixture is a mail");
    };
    // 25 MiB that do not compress, and every byte value (a NUL included).
    let mut big = vec![0u8; 25 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in big.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    mail.attachments.truncate(1);
    mail.attachments[0].data = Bytes::from(big);
    let webhook = Webhook::Inbound(mail);
    let mut want = BTreeMap::new();
    expected(&webhook, &mut want);
    let request =
        cmc_webhook::test_util::encode(&webhook, cmc_webhook::test_util::WireEncoding::Multipart);
    let raw = CmcRequest::body(request).uri("/mails").to_http1("test");
    let reply = common::http::send_raw(receiver.addr, &raw).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let records = until(&target, "the mail", |r| {
        r.iter().any(|r| r["status"] == 200)
    })
    .await;
    check_arrivals(&records, &want, 1);
    let record = &records[0];
    assert!(record["content_type"]
        .as_str()
        .unwrap()
        .starts_with("multipart/form-data"));
    assert_eq!(record["files"][0]["size"], 25 << 20);
}

/// The receiver as a process of its own (this binary's ignored test),
/// for the SIGKILL test: its store at `CMC_TEST_STORE`, relaying to
/// `CMC_TEST_TARGET` with 4 requests at once and a lease of 2 s; it
/// announces its port with `PORT <port>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by sigkill_during_relaying_loses_nothing_and_repeats_only_what_was_in_flight"]
async fn relaying_child() {
    let store = std::env::var("CMC_TEST_STORE").unwrap();
    let url: http::Uri = std::env::var("CMC_TEST_TARGET").unwrap().parse().unwrap();
    let inbox = Inbox::sqlite(store).open().await.unwrap();
    let relay = Relay::new(options(url, &[SECRET])).unwrap();
    let _worker = inbox
        .worker(move |job| relay.clone().send(job))
        .concurrency(4)
        .lease(Duration::from_secs(2))
        .backoff(Backoff::exponential(Duration::from_millis(20)).max(Duration::from_millis(100)))
        .poll_interval(Duration::from_millis(20))
        .spawn();
    let options = app::Options {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        body_limit: 1 << 20,
        ..app::Options::default()
    };
    let router = app::router(&options, app::Target::Inbox(inbox.clone())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("PORT {}", listener.local_addr().unwrap().port());
    serve::serve(
        listener,
        router,
        serve::Limits::default(),
        std::future::pending(),
    )
    .await
    .unwrap();
}

fn spawn_child(store: &std::path::Path, target: &Target) -> (common::child::Killed, SocketAddr) {
    let mut child = common::child::test_command("relaying_child")
        .env("CMC_TEST_STORE", store)
        .env("CMC_TEST_TARGET", target.url().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let port = common::child::announced_port(&mut lines).unwrap();
    std::thread::spawn(move || for _ in lines {});
    (
        common::child::Killed(child),
        SocketAddr::from(([127, 0, 0, 1], port)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_relaying_loses_nothing_and_repeats_only_what_was_in_flight() {
    // Each answer takes 1 s: the receiver is killed with requests in flight.
    let Some(target) = slow_target(0, &[SECRET], 0, 1000) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("cmc-inbox.sqlite3");
    let (first, addr) = spawn_child(&store, &target);
    let want = post_fixtures(addr).await;
    assert!(
        want.len() > 8,
        "enough rows to be in flight: {}",
        want.len()
    );
    until(&target, "requests in flight", |r| r.len() >= 4).await;
    drop(first); // SIGKILL, and reaped
    let seen_at_kill = target.records().len();
    // The same store, a new process: the rows the killed one held come
    // back once their lease ends.
    let (_second, _) = spawn_child(&store, &target);
    until(&target, "every row answered 200", |r| {
        let ok: BTreeSet<&str> = r
            .iter()
            .filter(|r| r["status"] == 200)
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        want.keys().all(|k| ok.contains(k.as_str()))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let records = target.records();
    let mut sent: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &records {
        assert_eq!(r["verified"], Value::from(vec![true]), "{r:#}");
        *sent.entry(r["id"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(sent.len(), want.len(), "nothing lost, nothing unknown");
    let repeated: usize = sent.values().map(|n| n - 1).sum();
    eprintln!(
        "{} rows, {seen_at_kill} requests seen at the kill, {repeated} sent again",
        want.len()
    );
    // Only what the killed process had sent and not seen answered is sent
    // again: at most its 4 requests in flight.
    assert!(
        (1..=4).contains(&repeated) && repeated <= seen_at_kill,
        "{repeated} repeats: {sent:?}"
    );
}

#[tokio::test]
async fn a_target_failing_in_a_row_is_paused_and_its_attempts_wait() {
    const FAILURE_CAP: u32 = 2;
    // Fails every request: each row's 3 attempts fail.
    let Some(target) = start_target(0, &[SECRET], 1000) else {
        return;
    };
    let mut relay = options(target.url(), &[SECRET]);
    relay.failure_cap = FAILURE_CAP;
    relay.pause = Duration::from_millis(700);
    let receiver = start_receiver(relay, 3).await;
    let (content_type, body) = common::load("event-v2-json-blocks.json");
    let mut want = BTreeMap::new();
    expected(
        &Webhook::parse(&content_type, body.clone()).unwrap(),
        &mut want,
    );
    post(receiver.addr, &content_type, body).await;
    counts_until(&receiver.inbox, "the rows die", |c| {
        settled(c) && c.events.dead as usize == want.len()
    })
    .await;
    let mut arrived: Vec<f64> = target
        .records()
        .iter()
        .map(|r| r["arrived"].as_f64().unwrap())
        .collect();
    assert_eq!(arrived.len(), 3 * want.len());
    arrived.sort_by(f64::total_cmp);
    // With a 20 ms backoff, the attempts would follow each other at once;
    // paused, the second and third attempts each wait for a pause.
    let pauses = arrived.windows(2).filter(|w| w[1] - w[0] >= 0.6).count();
    assert!(pauses >= 2, "{arrived:?}");
}

/// A target that refuses some rows (413: a body limit in front of the
/// application) is up: the refusals are those rows' failures, and do not
/// pause the target for the others.
#[tokio::test]
async fn rows_the_target_refuses_alone_do_not_pause_it() {
    let Some(target) = spawn_target(0, &[SECRET], 0, 0, None, true) else {
        return;
    };
    let mut relay = options(target.url(), &[SECRET]);
    relay.failure_cap = 2;
    relay.pause = Duration::from_secs(60);
    let receiver = start_receiver(relay, 2).await;
    let want = post_fixtures(receiver.addr).await;
    let mails = want
        .values()
        .filter(|e| matches!(e, Expected::Mail(_)))
        .count();
    assert!(mails > 2, "more refused mails than the cap");
    let counts = counts_until(&receiver.inbox, "the rows settle", settled).await;
    assert_eq!(counts.mails.dead as usize, mails, "{counts:?}");
    assert_eq!(
        counts.events.done as usize,
        want.len() - mails,
        "{counts:?}"
    );
    assert_eq!(receiver.relay.breaker().pauses(), 0, "refusals paused it");
    let refused = target
        .records()
        .iter()
        .filter(|r| r["status"] == 413)
        .count();
    assert_eq!(refused, 2 * mails, "each mail tried twice");
}

#[tokio::test]
async fn each_mailbox_relays_to_its_own_target() {
    let (Some(desk), Some(main)) = (start_target(0, &[SECRET], 0), start_target(0, &[SECRET], 0))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::sqlite(dir.path().join("cmc-inbox.sqlite3"))
        .open()
        .await
        .unwrap();
    let desk_relay = Relay::new(options(desk.url(), &[SECRET])).unwrap();
    let main_relay = Relay::new(options(main.url(), &[SECRET])).unwrap();
    let options_ = app::Options {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        body_limit: 1 << 20,
        ..app::Options::default()
    };
    let printer = app::Printer::new(&options_, Arc::new(|_line| true));
    let flags = ["support=info@example.jp".to_owned(), "rest=*".to_owned()];
    let mailboxes = app::mailboxes_with(&flags, &printer, 3, Duration::from_secs(3600), |name| {
        Some(
            if name == "support" {
                &desk_relay
            } else {
                &main_relay
            }
            .mailbox_handler(),
        )
    })
    .unwrap()
    .unwrap();
    let handler = main_relay.clone();
    let _worker = inbox
        .worker(move |job| handler.clone().send(job))
        .mailboxes(mailboxes)
        .poll_interval(Duration::from_millis(20))
        .spawn();
    let router = app::router(&options_, app::Target::Inbox(inbox.clone())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve::serve(
        listener,
        router,
        serve::Limits::default(),
        std::future::pending(),
    ));

    // Which rows go where: the mails to info@example.jp to the desk,
    // every other mail and every event to the main target.
    let mut to_desk = BTreeSet::new();
    let mut to_main = BTreeSet::new();
    for path in common::all_bodies() {
        let content_type = common::content_type_of(&path);
        let body = Bytes::from(std::fs::read(&path).unwrap());
        let webhook = Webhook::parse(&content_type, body.clone()).unwrap();
        let mut keys = BTreeMap::new();
        expected(&webhook, &mut keys);
        let desk_mail =
            matches!(&webhook, Webhook::Inbound(m) if m.envelope_to == "info@example.jp");
        for key in keys.into_keys() {
            if desk_mail {
                &mut to_desk
            } else {
                &mut to_main
            }
            .insert(key);
        }
        post(addr, &content_type, body).await;
    }
    assert!(!to_desk.is_empty() && !to_main.is_empty());
    // The rows' keys: a mailbox's delivery is signed as KEY.MAILBOX.N,
    // its body's id the mail's key.
    let ids = |records: &[Value]| -> BTreeSet<String> {
        records
            .iter()
            .filter(|r| r["status"] == 200 && r["verified"] == Value::from(vec![true]))
            .map(|r| {
                let key = r["payload"]["id"].as_str().unwrap();
                let id = r["id"].as_str().unwrap();
                match r["payload"]["mailbox"].as_str() {
                    Some(mailbox) => {
                        let n = id
                            .strip_prefix(&format!("{key}.{mailbox}."))
                            .unwrap_or_else(|| panic!("webhook-id {id} of a delivery"));
                        assert!(n.parse::<u64>().is_ok(), "{id}");
                    }
                    None => assert_eq!(id, key),
                }
                key.to_owned()
            })
            .collect()
    };
    let desk_records = until(&desk, "the desk's mails", |r| ids(r) == to_desk).await;
    let main_records = until(&main, "the other rows", |r| ids(r) == to_main).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(desk.records().len(), to_desk.len(), "each once");
    assert_eq!(main.records().len(), to_main.len(), "each once");
    for r in &desk_records {
        assert_eq!(r["payload"]["mailbox"], "support", "{r:#}");
        assert_eq!(r["payload"]["type"], "inbound");
    }
    for r in main_records
        .iter()
        .filter(|r| r["payload"]["type"] == "inbound")
    {
        assert_eq!(r["payload"]["mailbox"], "rest", "{r:#}");
    }
}

/// A mail for two mailboxes that relay to one target reaches it twice,
/// under two webhook-ids: an application that skips repeats, as it
/// should, still takes both.
#[tokio::test]
async fn a_mail_for_two_mailboxes_on_one_target_arrives_as_two_deliveries() {
    let Some(target) = start_target(0, &[SECRET], 0) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::sqlite(dir.path().join("cmc-inbox.sqlite3"))
        .open()
        .await
        .unwrap();
    let relay = Relay::new(options(target.url(), &[SECRET])).unwrap();
    let options_ = app::Options {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        body_limit: 1 << 20,
        ..app::Options::default()
    };
    let printer = app::Printer::new(&options_, Arc::new(|_line| true));
    let flags = [
        "support=support@example.jp".to_owned(),
        "billing=billing@example.jp".to_owned(),
    ];
    let mailboxes = app::mailboxes_with(&flags, &printer, 3, Duration::from_secs(3600), |_| {
        Some(relay.mailbox_handler())
    })
    .unwrap()
    .unwrap();
    let handler = relay.clone();
    let _worker = inbox
        .worker(move |job| handler.clone().send(job))
        .mailboxes(mailboxes)
        .poll_interval(Duration::from_millis(20))
        .spawn();
    let router = app::router(&options_, app::Target::Inbox(inbox.clone())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve::serve(
        listener,
        router,
        serve::Limits::default(),
        std::future::pending(),
    ));
    let body = serde_json::json!({
        "server_composition": "sandbox",
        "filter": "support@example.jp",
        "headers": [{"name": "From", "value": "a@example.com"}],
        "envelope-from": "a@example.com",
        "envelope-to": "support@example.jp, billing@example.jp",
    });
    post(addr, "application/json", Bytes::from(body.to_string())).await;
    let records = until(&target, "both deliveries", |r| {
        r.iter().filter(|r| r["status"] == 200).count() == 2
    })
    .await;
    let ids: BTreeSet<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "two webhook-ids: {records:#?}");
    let keys: BTreeSet<&str> = records
        .iter()
        .map(|r| r["payload"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 1, "one mail: {records:#?}");
    let boxes: BTreeSet<&str> = records
        .iter()
        .map(|r| r["payload"]["mailbox"].as_str().unwrap())
        .collect();
    assert_eq!(boxes, BTreeSet::from(["billing", "support"]));
}

#[test]
fn mailbox_relays_are_checked_at_start() {
    let load = |argv: &[&str]| cmc_receiver::file::try_load_from(argv.iter().copied()).unwrap();
    let env = |name: &str| (name == "CMC_RELAY_SECRET").then(|| std::ffi::OsString::from(SECRET));
    let args = load(&[
        "cmc-receiver",
        "--relay",
        "https://app.example.jp/hooks",
        "--mailbox-relay",
        "support=https://desk.example.jp/in",
    ]);
    let base = args.relay.options(env).unwrap().unwrap();
    let relays = args.relay.mailbox_relays(&base).unwrap();
    assert_eq!(relays.len(), 1);
    assert_eq!(relays[0].0, "support");
    assert_eq!(relays[0].1.url, "https://desk.example.jp/in");
    assert_eq!(relays[0].1.secrets.len(), 1);
    // Without --relay, with http://, without NAME=, or twice: refused.
    let e = load(&[
        "cmc-receiver",
        "--mailbox-relay",
        "support=https://desk.example.jp/",
    ])
    .relay
    .options(env)
    .unwrap_err();
    assert!(e.contains("without --relay"), "{e}");
    for bad in [
        "support=http://desk.example.jp/",
        "support",
        "a=https://x.example/;a=https://y.example/",
    ] {
        let args = load(&[
            "cmc-receiver",
            "--relay",
            "https://app.example.jp/",
            "--mailbox-relay",
            bad,
        ]);
        let base = args.relay.options(env).unwrap().unwrap();
        assert!(args.relay.mailbox_relays(&base).is_err(), "{bad}");
    }
}

#[test]
fn no_secret_is_a_flag_and_help_says_where_secrets_go() {
    use clap::CommandFactory as _;
    let help = cmc_receiver::config::Args::command()
        .render_long_help()
        .to_string();
    assert!(help.contains("CMC_RELAY_SECRET"), "{help}");
    assert!(help.contains("--relay-secret-file"), "{help}");
    // No flag takes a secret's value (it would show in `ps`).
    assert!(!help.contains("--relay-secret "), "{help}");
    assert!(!help.contains("--relay-secret <"), "{help}");
    assert!(
        cmc_receiver::file::try_load_from(["cmc-receiver", "--relay-secret", "whsec_x"]).is_err()
    );
}

#[tokio::test]
async fn https_targets_are_verified_against_the_ca_file_or_the_system_roots() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    // A CA of the test's own, and the target's certificate for 127.0.0.1.
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "relay test CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let (ca_file, cert_file, key_file) = (
        dir.path().join("ca.pem"),
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
    );
    std::fs::write(&ca_file, ca_pem).unwrap();
    std::fs::write(&cert_file, leaf.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let Some(target) = spawn_target(0, &[SECRET], 0, 0, Some((&cert_file, &key_file)), false)
    else {
        return;
    };
    let url: http::Uri = format!("https://127.0.0.1:{}/hooks", target.port)
        .parse()
        .unwrap();
    let (content_type, body) = common::load("event-v2-json-blocks.json");
    let mut want = BTreeMap::new();
    expected(
        &Webhook::parse(&content_type, body.clone()).unwrap(),
        &mut want,
    );

    // Trusting the CA file: every row arrives, over HTTPS.
    let mut trusting = options(url.clone(), &[SECRET]);
    trusting.ca_file = Some(ca_file.clone());
    let receiver = start_receiver(trusting, 3).await;
    post(receiver.addr, &content_type, body.clone()).await;
    counts_until(&receiver.inbox, "the rows settle", settled).await;
    let records = target.records();
    check_arrivals(&records, &want, 1);
    assert_eq!(records.len(), want.len());

    // A CA file that holds no certificate is refused when the relay is made.
    std::fs::write(&ca_file, "not a certificate\n").unwrap();
    let mut bad = options("https://127.0.0.1/".parse().unwrap(), &[SECRET]);
    bad.ca_file = Some(ca_file);
    let e = Relay::new(bad).unwrap_err();
    assert!(e.contains("--relay-ca-file"), "{e}");

    // The system's roots do not know the CA: refused, nothing sent.
    let mut system = options(url, &[SECRET]);
    system.failure_cap = 0;
    if let Err(e) = Relay::new(system.clone()) {
        // A machine without CA certificates: refused at start instead.
        assert!(e.contains("no CA certificate"), "{e}");
        return;
    }
    let receiver = start_receiver(system, 1).await;
    post(receiver.addr, &content_type, body).await;
    counts_until(&receiver.inbox, "the rows die", |c| {
        settled(c) && c.events.dead as usize == want.len()
    })
    .await;
    let dead = receiver.inbox.dead(100).await.unwrap();
    assert!(
        dead.iter()
            .all(|d| d.last_error.as_deref().unwrap().contains("certificate")),
        "{dead:?}"
    );
    assert_eq!(target.records().len(), want.len(), "nothing more arrived");
}

/// The README's Python application (contrib/relay-apps/python/app.py, the
/// section "Running it for a PHP, Java or Python application"), run as
/// written with Flask: every fixture reaches it verified, mails with
/// their attachments inline and as parts, and the README shows the file
/// as it is.
#[tokio::test]
async fn the_readme_python_application_verifies_every_event_and_mail() {
    let root = common::fixtures().join("../..");
    let app = root.join("contrib/relay-apps/python/app.py");
    let code = std::fs::read_to_string(&app).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```python\n{code}```")),
        "README.md does not show {} as it is",
        app.display()
    );
    let required = std::env::var("CMC_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    let probe = Command::new("python3")
        .args(["-c", "import flask, standardwebhooks"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        other => {
            assert!(
                !required,
                "CMC_REQUIRE_PYTHON=1 but Flask or standardwebhooks cannot be imported: {other:?} \
                 (pip install flask standardwebhooks)"
            );
            eprintln!("skipped: Flask or standardwebhooks cannot be imported: {other:?}");
            return;
        }
    }
    for inline_limit in [usize::MAX, 10] {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut flask = Command::new("python3")
            .args(["-m", "flask", "--app"])
            .arg(&app)
            .args(["run", "--port", &port.to_string()])
            .env("CMC_RELAY_SECRET", SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = lines.clone();
        let stdout = flask.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        let _flask = common::child::Killed(flask);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "Flask did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let url: http::Uri = format!("http://127.0.0.1:{port}/cmc-webhooks")
            .parse()
            .unwrap();
        let mut relay = options(url, &[SECRET]);
        relay.inline_limit = inline_limit;
        let receiver = start_receiver(relay, 3).await;
        let want = post_fixtures(receiver.addr).await;
        let counts = counts_until(&receiver.inbox, "the rows settle", settled).await;
        assert_eq!(counts.events.dead + counts.mails.dead, 0, "{counts:?}");
        assert_eq!(
            (counts.events.done + counts.mails.done) as usize,
            want.len()
        );
        let lines = lines.lock().unwrap().clone();
        let events = want
            .values()
            .filter(|e| matches!(e, Expected::Event(_)))
            .count();
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("event ")).count(),
            events,
            "{lines:#?}"
        );
        let mails: Vec<&String> = lines.iter().filter(|l| l.starts_with("mail to ")).collect();
        assert_eq!(mails.len(), want.len() - events, "{lines:#?}");
        // With a limit of 10 bytes every attachment comes as a part, which
        // the application reads from the multipart body.
        let parts = mails.iter().filter(|l| !l.ends_with("in parts []")).count();
        let with_files = want
            .values()
            .filter(|e| matches!(e, Expected::Mail(sums) if !sums.is_empty()))
            .count();
        assert_eq!(
            parts,
            if inline_limit == 10 { with_files } else { 0 },
            "{lines:#?}"
        );
    }
}

/// The breaker's changes are recorded in the store off the attempts' path:
/// a store that cannot take them (its write lock held by another
/// connection) holds up no attempt, and once it can, the latest state is
/// recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_take_the_targets_state_holds_up_no_attempt() {
    use sqlx::Connection as _;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // Nobody listens: every attempt fails at once.
    let mut relay = options(
        format!("http://127.0.0.1:{port}/hooks").parse().unwrap(),
        &[SECRET],
    );
    relay.failure_cap = 1;
    relay.pause = Duration::from_millis(100);
    let receiver = start_receiver(relay, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("states.sqlite3");
    let states = Inbox::sqlite(&path).open().await.unwrap();
    let mut lock = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .unwrap();
    let recording = record(&receiver.relay, &states, "test-writer");
    let started = Instant::now();
    let (content_type, body) = common::load("event-v2-json-blocks.json");
    post(receiver.addr, &content_type, body).await;
    let counts = counts_until(&receiver.inbox, "the rows die", |c| {
        settled(c) && c.events.dead > 0 && c.events.pending == 0
    })
    .await;
    let took = started.elapsed();
    assert!(
        receiver.relay.breaker().pauses() >= 2,
        "paused again at each probe"
    );
    // Three attempts a row, paused 100 ms between: well under the 5 s
    // the store's write waits for its lock (SQLite's busy timeout).
    assert!(took < Duration::from_secs(4), "{took:?} {counts:?}");
    assert_eq!(states.target_states().await.unwrap(), vec![]);
    // The lock goes: the write is tried again, and the latest state lands.
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    let latest = receiver.relay.breaker().changes().borrow().clone().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let recorded = loop {
        let read = states.target_states().await.unwrap();
        // (The store keeps milliseconds.)
        let at = latest.at.as_millisecond();
        if let Some(s) = read.first().filter(|s| s.changed_at.as_millisecond() >= at) {
            break s.clone();
        }
        assert!(Instant::now() < deadline, "never recorded: {read:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(recorded.target, format!("http://127.0.0.1:{port}/hooks"));
    assert_eq!(recorded.writer, "test-writer");
    assert_eq!(recorded.condition, latest.condition);
    assert_eq!(recorded.pauses, latest.pauses);
    recording.abort();
}

/// The times of a recorded state are on the store's clock (on PostgreSQL
/// the server's), which readers on other hosts compare with: here a store
/// whose clock is a day ahead of this host's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_targets_state_is_recorded_on_the_stores_clock() {
    let dir = tempfile::tempdir().unwrap();
    let ahead = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let clock = cmc_webhook::inbox::ManualClock::new(ahead);
    let states = Inbox::sqlite(dir.path().join("states.sqlite3"))
        .clock(clock)
        .open()
        .await
        .unwrap();
    let mut relay = options("http://127.0.0.1:9/hooks".parse().unwrap(), &[SECRET]);
    relay.failure_cap = 1;
    relay.pause = Duration::from_secs(30);
    let relay = Relay::new(relay).unwrap();
    let recording = record(&relay, &states, "test-writer");
    relay.breaker().failure();
    let deadline = Instant::now() + Duration::from_secs(10);
    let recorded = loop {
        if let Some(s) = states.target_states().await.unwrap().pop() {
            break s;
        }
        assert!(Instant::now() < deadline, "never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let off = recorded.changed_at.duration_since(ahead).abs();
    assert!(off < jiff::SignedDuration::from_secs(5), "{recorded:?}");
    let pause = recorded.until.unwrap().duration_since(recorded.changed_at);
    assert!((29..=30).contains(&pause.as_secs()), "{pause:?}");
    // Current by the store's clock, which is what counts compares with.
    assert!(recorded.is_current(states.now()));
    recording.abort();
}

/// A relay to nobody (port 9), paused at its first failure for `pause`.
fn flapping_relay(path: &str, pause: Duration) -> Relay {
    let mut relay = options(
        format!("http://127.0.0.1:9{path}").parse().unwrap(),
        &[SECRET],
    );
    relay.failure_cap = 1;
    relay.pause = pause;
    Relay::new(relay).unwrap()
}

/// Waits until `done` holds of the recorded states (10 s at most).
async fn states_until(
    states: &Inbox,
    what: &str,
    done: impl Fn(&[cmc_webhook::inbox::targets::TargetState]) -> bool,
) -> Vec<cmc_webhook::inbox::targets::TargetState> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let read = states.target_states().await.unwrap();
        if done(&read) {
            return read;
        }
        assert!(Instant::now() < deadline, "{what}: {read:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Many targets changing state while the states' table is locked (on
/// PostgreSQL, `LOCK TABLE` by another program): the one recorder holds
/// one connection of the inbox's pool at a time, for 2 s at most, so the
/// webhooks are still stored at once. (One recording task per target, each
/// waiting on the lock with a connection, used up the pool: 503s.)
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_targets_on_a_locked_states_table_hold_up_no_webhook() {
    use sqlx::Connection as _;
    let Some(admin) = common::inbox::postgres_server("target states on PostgreSQL") else {
        return;
    };
    let url =
        common::inbox::fresh_database(&admin, &format!("relay_states_lock_{}", std::process::id()))
            .await;
    let inbox = Inbox::open(&url).await.unwrap();
    let options = app::Options {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        body_limit: 1 << 20,
        ..app::Options::default()
    };
    let router = app::router(&options, app::Target::Inbox(inbox.clone())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve::serve(
        listener,
        router,
        serve::Limits::default(),
        std::future::pending(),
    ));
    // More targets than the pool has connections (10).
    let relays: Vec<Relay> = (0..16)
        .map(|i| flapping_relay(&format!("/mailbox-{i}"), Duration::from_millis(1)))
        .collect();
    let mut recorder = StateRecorder::new(inbox.clone());
    for (i, relay) in relays.iter().enumerate() {
        recorder.watch(relay, format!("test-writer, mailbox {i}"));
    }
    let recording = recorder.spawn();
    let mut lock = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("LOCK TABLE cmc_webhook.cmc_target_states IN EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    // Every target flaps for 6 s.
    let flapping = {
        let relays = relays.clone();
        tokio::spawn(async move {
            let end = Instant::now() + Duration::from_secs(6);
            while Instant::now() < end {
                for relay in &relays {
                    relay.breaker().failure();
                    relay.breaker().success();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let (content_type, body) = common::load("event-v2-json-blocks.json");
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let raw = CmcRequest::raw(content_type.clone(), body.clone())
            .uri("/mails")
            .to_http1("test");
        let started = Instant::now();
        let reply = common::http::send_raw(addr, &raw).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a webhook took {slowest:?}"
    );
    flapping.await.unwrap();
    sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
    // The lock gone, the latest states land (closed, after the flapping).
    states_until(&inbox, "every target recorded", |read| {
        read.len() == relays.len()
            && read
                .iter()
                .all(|s| s.condition == cmc_webhook::inbox::targets::TargetCondition::Closed)
    })
    .await;
    recording.stop().await;
    assert_eq!(inbox.target_states().await.unwrap(), vec![]);
}

/// A closed state carries a lease (so that a process that stopped without
/// a word reads as unknown once it lapses), and a recorder stopped in good
/// order removes its process's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_state_is_leased_and_a_stopped_recorder_removes_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let states = Inbox::sqlite(dir.path().join("states.sqlite3"))
        .open()
        .await
        .unwrap();
    let relay = flapping_relay("/hooks", Duration::from_secs(30));
    let other = flapping_relay("/other", Duration::from_secs(30));
    let mut recorder = StateRecorder::new(states.clone());
    recorder
        .watch(&relay, "test-writer".to_owned())
        .watch(&other, "test-writer, mailbox support".to_owned());
    let recording = recorder.spawn();
    relay.breaker().failure();
    relay.breaker().success();
    other.breaker().failure();
    let read = states_until(&states, "both recorded", |read| {
        read.len() == 2 && read.iter().any(|s| s.condition.as_str() == "closed")
    })
    .await;
    let closed = read.iter().find(|s| s.writer == "test-writer").unwrap();
    assert_eq!(closed.condition.as_str(), "closed", "{read:?}");
    let lease = closed.until.expect("a lease").duration_since(states.now());
    assert!((9 * 60..=10 * 60).contains(&lease.as_secs()), "{lease:?}");
    assert!(closed.is_current(states.now()));
    let later = states.now() + jiff::SignedDuration::from_secs(11 * 60);
    assert!(!closed.is_current(later));
    assert!(
        cmc_receiver::relay::describe_state(closed, later).contains("state unknown"),
        "{}",
        cmc_receiver::relay::describe_state(closed, later)
    );
    // A row of another process stays.
    let mut theirs = closed.clone();
    theirs.writer = "web-2 pid 1 #00c0ffee".to_owned();
    states.set_target_state(&theirs).await.unwrap();
    recording.stop().await;
    assert_eq!(states.target_states().await.unwrap(), vec![theirs]);
}

/// A target longer than the store keeps (1 000 bytes) is recorded
/// shortened, distinct from another that begins alike; it was refused,
/// and tried again every 10 s, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_longer_than_the_store_keeps_is_recorded_shortened() {
    let dir = tempfile::tempdir().unwrap();
    let states = Inbox::sqlite(dir.path().join("states.sqlite3"))
        .open()
        .await
        .unwrap();
    let long = format!("/{}", "a".repeat(1500));
    let relays = [
        flapping_relay(&long, Duration::from_secs(30)),
        flapping_relay(&format!("{long}b"), Duration::from_secs(30)),
    ];
    let mut recorder = StateRecorder::new(states.clone());
    for relay in &relays {
        recorder.watch(relay, "test-writer".to_owned());
        relay.breaker().failure();
    }
    let recording = recorder.spawn();
    let read = states_until(&states, "both recorded", |read| read.len() == 2).await;
    for s in &read {
        assert!(
            s.target.len() <= cmc_webhook::inbox::targets::MAX_TARGET,
            "{}",
            s.target.len()
        );
        assert!(
            s.target.starts_with("http://127.0.0.1:9/aaaa"),
            "{}",
            s.target
        );
        assert_eq!(s.condition.as_str(), "paused");
    }
    assert_ne!(read[0].target, read[1].target);
    recording.abort();
}

/// A target flapping under a pause of a millisecond is recorded at most
/// once a second (the latest state, coalesced), not once per change: the
/// store's own trigger counts the writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_target_is_recorded_at_most_once_a_second() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("states.sqlite3");
    let states = Inbox::sqlite(&path).open().await.unwrap();
    let mut counter = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE test_writes (n INTEGER)",
        "CREATE TRIGGER test_count_inserts AFTER INSERT ON cmc_target_states \
         BEGIN INSERT INTO test_writes VALUES (1); END",
        "CREATE TRIGGER test_count_updates AFTER UPDATE ON cmc_target_states \
         BEGIN INSERT INTO test_writes VALUES (1); END",
    ] {
        sqlx::query(sql).execute(&mut counter).await.unwrap();
    }
    let relay = flapping_relay("/hooks", Duration::from_millis(1));
    let recording = record(&relay, &states, "test-writer");
    let started = Instant::now();
    let mut changes = 0;
    while started.elapsed() < Duration::from_secs(3) {
        relay.breaker().failure();
        relay.breaker().success();
        changes += 2;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    relay.breaker().failure();
    changes += 1;
    let took = started.elapsed();
    // The latest state lands.
    states_until(&states, "the latest state", |read| {
        read.first()
            .is_some_and(|s| s.condition.as_str() == "paused")
    })
    .await;
    let writes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM test_writes")
        .fetch_one(&mut counter)
        .await
        .unwrap();
    let most = took.as_secs() as i64 + 3;
    assert!(
        (1..=most).contains(&writes),
        "{writes} writes for {changes} changes in {took:?}"
    );
    recording.abort();
}
