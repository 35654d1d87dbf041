//! End to end: the receiver's app (the `cmc-receiver` crate), inbox and serve loop on a
//! random port, every fixture posted over TCP in every encoding (and as it
//! was captured), and the JSON lines its worker prints checked for count
//! and content: each event and mail once, whatever the encoding; then its
//! timeouts, connection cap and attachment saving.

mod common;

use cmc_receiver::{app, config, output, serve};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use bytes::Bytes;
use cmc_webhook::inbox::Inbox;
use cmc_webhook::test_util::{encode, sample_events, CmcRequest, WireEncoding};
use cmc_webhook::Webhook;
use serde_json::Value;

/// The lines a webhook must produce once stored: one per event key and
/// per mail key, whatever the encoding and however often it was posted.
fn expected_lines(webhook: &Webhook, into: &mut BTreeMap<String, String>, attachments: bool) {
    match webhook {
        Webhook::Events(batch) => {
            for event in &batch.events {
                let key = event.idempotency_key().to_string();
                into.insert(key.clone(), format!("event {} {key}", event.event_type()));
            }
        }
        Webhook::Inbound(mail) => {
            let mut mail = mail.clone();
            if !attachments {
                mail.attachments.clear();
            }
            let key = mail.idempotency_key().to_string();
            let files = mail.attachments.len();
            into.insert(
                key.clone(),
                format!("inbound {} {} {files} {key}", mail.filter, mail.subject),
            );
        }
    }
}

fn printed(line: &Value) -> String {
    match line["type"].as_str() {
        Some("event") => format!(
            "event {} {}",
            line["event_type"].as_str().unwrap(),
            line["key"].as_str().unwrap()
        ),
        Some("inbound") => format!(
            "inbound {} {} {} {}",
            line["filter"].as_str().unwrap(),
            line["subject"].as_str().unwrap(),
            line["attachments"].as_array().unwrap().len(),
            line["key"].as_str().unwrap()
        ),
        other => panic!("unexpected line type {other:?}: {line}"),
    }
}

/// Lines written to a buffer.
fn buffer() -> (Arc<Mutex<Vec<String>>>, app::Sink) {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink_lines = lines.clone();
    (
        lines,
        Arc::new(move |line| {
            sink_lines.lock().unwrap().push(line);
            true
        }),
    )
}

/// Waits until the inbox holds no pending or running row.
async fn drained(inbox: &Inbox) -> cmc_webhook::inbox::Counts {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = inbox.counts().await.unwrap();
        if counts.events.pending
            + counts.events.running
            + counts.mails.pending
            + counts.mails.running
            == 0
        {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not finish: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_fixture_in_every_encoding_is_stored_once_and_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::sqlite(dir.path().join("cmc-inbox.sqlite3"))
        .open()
        .await
        .unwrap();
    let (lines, sink) = buffer();
    let options = app::Options {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        body_limit: 1 << 20,
        ..app::Options::default()
    };
    let printer = app::Printer::new(&options, sink);
    let worker = inbox.worker(move |job| printer.clone().handle(job)).spawn();
    let router = app::router(&options, app::Target::Inbox(inbox.clone())).unwrap();
    let addr = start(router, serve::Limits::default()).await;

    let mut expected = BTreeMap::new();
    let mut posted = 0;
    for path in common::all_bodies() {
        let content_type = common::content_type_of(&path);
        let body = Bytes::from(std::fs::read(&path).unwrap());
        let webhook = Webhook::parse(&content_type, body.clone()).unwrap();
        let mut requests = vec![(CmcRequest::raw(content_type, body), true)];
        for encoding in WireEncoding::ALL {
            requests.push((
                CmcRequest::body(encode(&webhook, encoding)),
                encoding == WireEncoding::Multipart,
            ));
        }
        for (request, carries_files) in requests {
            let raw = request.uri("/mails").to_http1("test");
            let reply = common::http::send_raw(addr, &raw).await;
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (200, "ok\n"),
                "{}",
                path.display()
            );
            expected_lines(&webhook, &mut expected, carries_files);
            posted += 1;
        }
    }
    assert_eq!(posted, 4 * common::all_bodies().len());

    let counts = drained(&inbox).await;
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let events = expected.values().filter(|l| l.starts_with("event")).count() as u64;
    assert_eq!(counts.events.done, events);
    assert_eq!(counts.mails.done, expected.len() as u64 - events);
    let lines = lines.lock().unwrap();
    let mut got = BTreeMap::new();
    for line in lines.iter() {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(value["client"], "127.0.0.1");
        let key = value["key"].as_str().unwrap().to_owned();
        assert!(
            got.insert(key, printed(&value)).is_none(),
            "printed twice: {line}"
        );
    }
    assert_eq!(got, expected);
}

/// Serves `router` with the receiver's own serve loop; returns the address.
async fn start(router: axum::Router, limits: serve::Limits) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve::serve(
        listener,
        router,
        limits,
        std::future::pending(),
    ));
    addr
}

/// The receiver without a store: these tests are about serving.
fn receiver(options: app::Options) -> axum::Router {
    let printer = app::Printer::new(&options, Arc::new(|_line| true));
    app::router(&options, app::Target::Print(printer)).unwrap()
}

fn loopback() -> app::Options {
    app::Options {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        body_limit: 1 << 20,
        ..app::Options::default()
    }
}

fn short(header: u64, body: u64, connections: usize) -> serve::Limits {
    serve::Limits {
        header_timeout: Duration::from_secs(header),
        body_timeout: Duration::from_secs(body),
        max_connections: connections,
        ..serve::Limits::default()
    }
}

/// A request the receiver answers 200.
fn sample_request() -> Vec<u8> {
    let (ct, body) = common::load("shared/event-v2-json-succeeded.json");
    CmcRequest::raw(ct, body).uri("/mails").to_http1("test")
}

/// The same request, leaving the connection open for the next.
fn keep_alive_request() -> String {
    String::from_utf8(sample_request())
        .unwrap()
        .replace("Connection: close\r\n", "")
}

/// Waits until the server closes `stream`; returns how long that took.
async fn closed_after(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut sink = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut sink))
        .await
        .expect("the server closes the connection")
        .ok();
    started.elapsed()
}

#[tokio::test]
async fn unfinished_headers_are_cut_off_while_normal_requests_are_served() {
    let addr = start(receiver(loopback()), short(1, 60, 64)).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"POST /mails HTTP/1.1\r\nHost: test\r\nContent-Type: applic")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    // Meanwhile a normal request is answered at once.
    let started = Instant::now();
    let reply = common::http::send_raw(addr, &sample_request()).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Then the slow client and the idle one are cut off after the timeout.
    let slow_for = closed_after(&mut slow).await;
    let idle_for = closed_after(&mut idle).await;
    assert!(slow_for < Duration::from_secs(5), "{slow_for:?}");
    assert!(idle_for < Duration::from_secs(5), "{idle_for:?}");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_header_timeout() {
    let addr = start(receiver(loopback()), short(1, 60, 64)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = keep_alive_request();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The connection stays open for another request, but not forever.
    let idle_for = closed_after(&mut stream).await;
    assert!(idle_for < Duration::from_secs(5), "{idle_for:?}");
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_408() {
    let addr = start(receiver(loopback()), short(10, 1, 64)).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /mails HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"event_type\"")
        .await
        .unwrap();
    let started = Instant::now();
    let reply = common::http::read_reply(&mut stream).await;
    assert_eq!(reply.status, 408);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn at_the_connection_cap_new_connections_wait_for_a_free_slot() {
    let addr = start(receiver(loopback()), short(2, 60, 2)).await;
    let _a = TcpStream::connect(addr).await.unwrap();
    let _b = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Both slots are held by idle connections: the third waits until the
    // header timeout frees one, then is served.
    let started = Instant::now();
    let reply = common::http::send_raw(addr, &sample_request()).await;
    assert_eq!(reply.status, 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "served before a slot was free: {waited:?}"
    );
    assert!(waited < Duration::from_secs(8), "{waited:?}");
}

fn inbound_request(with_attachment: bool) -> Vec<u8> {
    let mut mail = cmc_webhook::test_util::sample_inbound(with_attachment);
    if with_attachment {
        mail.attachments.truncate(1);
    }
    CmcRequest::body(cmc_webhook::test_util::encode_inbound(
        &mail,
        WireEncoding::Multipart,
    ))
    .uri("/mails")
    .to_http1("test")
}

#[tokio::test]
async fn attachments_are_saved_whole_under_their_final_name_only() {
    let dir = std::env::temp_dir().join(format!("cmc-receiver-save-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    app::check_save_dir(&dir).unwrap();
    let store = tempfile::tempdir().unwrap();
    let inbox = Inbox::sqlite(store.path().join("cmc-inbox.sqlite3"))
        .open()
        .await
        .unwrap();
    let (lines, sink) = buffer();
    let options = app::Options {
        save_dir: Some(dir.clone()),
        ..loopback()
    };
    let printer = app::Printer::new(&options, sink);
    let worker = inbox.worker(move |job| printer.clone().handle(job)).spawn();
    let router = app::router(&options, app::Target::Inbox(inbox.clone())).unwrap();
    let addr = start(router, serve::Limits::default()).await;
    let reply = common::http::send_raw(addr, &inbound_request(true)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(drained(&inbox).await.mails.done, 1);
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let line: Value = serde_json::from_str(&lines.lock().unwrap()[0]).unwrap();
    let saved = line["attachments"][0]["saved"].as_str().unwrap().to_owned();
    let size = line["attachments"][0]["size"].as_u64().unwrap();
    // Complete as soon as the line is printed; no temporary file left.
    assert_eq!(std::fs::metadata(&saved).unwrap().len(), size);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(!names[0].starts_with('.'), "{names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn an_unusable_save_dir_fails_at_start_up_and_never_costs_mails_without_files() {
    // A directory below a regular file cannot exist, even for root.
    let file = std::env::temp_dir().join(format!("cmc-receiver-file-{}", std::process::id()));
    std::fs::write(&file, b"x").unwrap();
    let dir = file.join("attachments");
    assert!(app::check_save_dir(&dir).is_err());
    let options = app::Options {
        save_dir: Some(dir.clone()),
        ..loopback()
    };
    // Without a store, the route saves before it answers.
    let addr = start(receiver(options), serve::Limits::default()).await;
    // A mail without attachments is accepted...
    let reply = common::http::send_raw(addr, &inbound_request(false)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // ... one with attachments is a 500, so that CMC sends it again.
    let reply = common::http::send_raw(addr, &inbound_request(true)).await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    std::fs::remove_file(&file).unwrap();
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_after_the_write_timeout() {
    // A peer that never reads: once its buffer is full, writes wait, where
    // no timer of hyper's runs. The deadline fails the write instead.
    let (near, _far) = tokio::io::duplex(4096);
    let mut conn = serve::WriteDeadline::new(near, Duration::from_millis(300));
    let started = Instant::now();
    let written = tokio::time::timeout(Duration::from_secs(10), conn.write_all(&[b'x'; 1 << 20]))
        .await
        .expect("the write gives up by itself");
    assert_eq!(written.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // A peer that reads slowly but steadily is not cut off.
    let (near, mut far) = tokio::io::duplex(4096);
    let reader = tokio::spawn(async move {
        let mut buf = [0; 1024];
        let mut total = 0;
        while total < 64 * 1024 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            total += far.read(&mut buf).await.unwrap();
        }
        total
    });
    let mut conn = serve::WriteDeadline::new(near, Duration::from_millis(300));
    conn.write_all(&[b'x'; 64 * 1024]).await.unwrap();
    assert_eq!(reader.await.unwrap(), 64 * 1024);
}

#[tokio::test]
async fn connections_close_after_their_request_budget() {
    let limits = serve::Limits {
        max_requests_per_connection: 2,
        ..serve::Limits::default()
    };
    let addr = start(receiver(loopback()), limits).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let one = keep_alive_request();
    stream.write_all(one.repeat(3).as_bytes()).await.unwrap();
    let mut replies = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut replies))
        .await
        .expect("closed after the second answer")
        .ok();
    let replies = String::from_utf8_lossy(&replies);
    assert_eq!(replies.matches("HTTP/1.1 200").count(), 2, "{replies}");
    assert!(
        replies.to_ascii_lowercase().contains("connection: close"),
        "{replies}"
    );
}

#[tokio::test]
async fn requests_the_gate_refuses_close_their_connection() {
    let addr = start(receiver(loopback()), serve::Limits::default()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Two GETs on one connection: the first is refused (405) and the
    // connection closed, so the second is never answered.
    stream
        .write_all(b"GET /mails HTTP/1.1\r\nHost: t\r\n\r\nGET /mails HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut replies = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut replies))
        .await
        .expect("closed after the refusal")
        .ok();
    let replies = String::from_utf8_lossy(&replies);
    assert_eq!(replies.matches("HTTP/1.1 405").count(), 1, "{replies}");
}

#[tokio::test]
async fn a_save_dropped_half_way_leaves_no_file() {
    let dir = std::env::temp_dir().join(format!("cmc-receiver-cancel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    app::check_save_dir(&dir).unwrap();
    let mut mail = cmc_webhook::test_util::sample_inbound(true);
    let first = mail.attachments[0].clone();
    mail.attachments = (0..200).map(|_| first.clone()).collect();
    // Give the save more time each round until a round is cut off
    // half-way; after every cut, nothing may be left.
    let mut cut = 0;
    for round in 0..40u64 {
        let micros = 50u64 << (round / 4);
        // Each round is its own mail: its files never share a name with
        // those of a round still being undone.
        let save = app::save_attachments(&dir, round, &mail);
        match tokio::time::timeout(Duration::from_micros(micros), save).await {
            Err(_) => {
                cut += 1;
                // The blocking writer may still be finishing the file it
                // was on; it removes that one itself.
                let mut left = usize::MAX;
                for _ in 0..200 {
                    left = std::fs::read_dir(&dir).unwrap().count();
                    if left == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                assert_eq!(left, 0, "cut after {micros} µs, files left behind");
            }
            Ok(saved) => {
                assert_eq!(saved.unwrap().len(), 200);
                break;
            }
        }
    }
    assert!(cut > 0, "no round was cut off");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every flag can come from its `CMC_` environment variable, a flag on
/// the command line wins, and the receiver built from them enforces them:
/// an allowlist without loopback, BASIC credentials, a body limit, the
/// compact format. (The only test of this binary that sets variables.)
#[tokio::test]
async fn flags_come_from_the_environment() {
    use clap::Parser as _;
    let dir = tempfile::tempdir().unwrap();
    let allow_file = dir.path().join("allow.txt");
    std::fs::write(&allow_file, "# CMC\n192.0.2.0/24\n").unwrap();
    let vars = [
        ("CMC_ALLOW", "198.51.100.0/24 203.0.113.7".to_owned()),
        ("CMC_ALLOW_FILE", allow_file.display().to_string()),
        ("CMC_API_KEY", "old-key,new-key".to_owned()),
        ("CMC_BASIC_AUTH", "cmc:pa:ss".to_owned()),
        ("CMC_BODY_LIMIT", "64KiB".to_owned()),
        ("CMC_FORMAT", "compact".to_owned()),
        ("CMC_FORWARDED_HEADER", "forwarded".to_owned()),
        ("CMC_TRUST_PROXY", "10.0.0.0/8".to_owned()),
        ("CMC_HEADER_TIMEOUT", "5s".to_owned()),
        ("CMC_REPORT_ONLY", "false".to_owned()),
        ("CMC_STORE", "none".to_owned()),
        ("CMC_LISTEN", "[::1]:9999".to_owned()),
    ];
    for (name, value) in &vars {
        std::env::set_var(name, value);
    }
    let args = config::Args::try_parse_from(["receiver"]);
    let flag_wins =
        config::Args::try_parse_from(["receiver", "--body-limit", "2MiB", "--report-only"]);
    std::env::set_var("CMC_BODY_LIMIT", "lots");
    let bad = config::Args::try_parse_from(["receiver"]);
    std::env::set_var("CMC_BODY_LIMIT", "64KiB");
    std::env::set_var("CMC_REPORT_ONLY", "disabled");
    let not_a_bool = config::Args::try_parse_from(["receiver"]);
    std::env::set_var("CMC_REPORT_ONLY", "1");
    std::env::remove_var("CMC_API_KEY");
    std::env::remove_var("CMC_BASIC_AUTH");
    let open_report_only = config::Args::try_parse_from(["receiver"]);
    std::env::set_var("CMC_BASIC_AUTH", "just-a-secret-no-colon");
    let bad_basic = config::Args::try_parse_from(["receiver"]);
    // A blank key, and a key with the \r of a CRLF env file, are refused.
    std::env::remove_var("CMC_BASIC_AUTH");
    std::env::set_var("CMC_API_KEY", " ");
    let blank_key = config::Args::try_parse_from(["receiver"]);
    std::env::set_var("CMC_API_KEY", "s3cret-key\r");
    let crlf_key = config::Args::try_parse_from(["receiver"]);
    std::env::set_var("CMC_API_KEY", "k1, k2");
    let spaced_keys = config::Args::try_parse_from(["receiver"]);
    std::env::remove_var("CMC_API_KEY");
    // Secrets from files named in the environment.
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, "file-key-1\r\nfile-key-2\n\n").unwrap();
    std::env::set_var("CMC_API_KEY_FILE", &key_file);
    let basic_file = dir.path().join("basic");
    std::fs::write(&basic_file, "cmc:file-pa55\n").unwrap();
    std::env::set_var("CMC_BASIC_AUTH_FILE", &basic_file);
    let store_file = dir.path().join("store");
    std::fs::write(&store_file, "sqlite:from-a-file.sqlite3\n").unwrap();
    std::env::set_var("CMC_STORE_FILE", &store_file);
    std::env::remove_var("CMC_STORE");
    let from_files = config::Args::try_parse_from(["receiver", "--metrics", "127.0.0.1:0"]);
    for name in ["CMC_API_KEY_FILE", "CMC_BASIC_AUTH_FILE", "CMC_STORE_FILE"] {
        std::env::remove_var(name);
    }
    std::env::set_var("CMC_STORE", "none");
    for (name, _) in &vars {
        std::env::remove_var(name);
    }
    // A value that is not a yes or a no is refused, not taken for yes.
    assert!(not_a_bool.is_err());
    for (args, why) in [
        (blank_key, "empty or only white space"),
        (crlf_key, "white space"),
        (spaced_keys, "white space"),
    ] {
        let e = args.unwrap().options().unwrap_err();
        assert!(e.contains("--api-key") && e.contains(why), "{e}");
        assert!(!e.contains("s3cret") && !e.contains("k2"), "{e}");
    }
    let from_files = from_files.unwrap();
    assert_eq!(from_files.store().unwrap(), "sqlite:from-a-file.sqlite3");
    let (files, _) = from_files.options().unwrap();
    assert_eq!(files.api_keys, ["file-key-1", "file-key-2"]);
    assert_eq!(
        files.basic_auth,
        [("cmc".to_owned(), "file-pa55".to_owned())]
    );
    // The metrics credentials: from the environment (no flag) or a file.
    let env = |value: &'static str| {
        move |name: &str| (name == "CMC_METRICS_AUTH").then(|| value.to_owned())
    };
    let metrics_auth = from_files.metrics_auth(env("prom:pw")).unwrap();
    assert_eq!(
        (
            metrics_auth[0].user.as_str(),
            metrics_auth[0].password.as_str()
        ),
        ("prom", "pw")
    );
    let e = from_files.metrics_auth(env("prom:pw\r")).unwrap_err();
    assert!(e.contains("CMC_METRICS_AUTH") && !e.contains("pw"), "{e}");
    // Report-only without a credential would admit anyone: refused.
    let e = open_report_only.unwrap().options().unwrap_err();
    assert!(
        e.contains("--report-only") && e.contains("--api-key"),
        "{e}"
    );
    // A malformed credential is refused without being repeated.
    let e = bad_basic.unwrap().options().unwrap_err();
    assert!(
        e.contains("--basic-auth") && !e.contains("just-a-secret"),
        "{e}"
    );
    let args = args.unwrap();
    assert_eq!(args.store().unwrap(), "none");
    assert_eq!(args.listen, "[::1]:9999".parse::<SocketAddr>().unwrap());
    assert_eq!(args.body_limit, 64 << 10);
    assert_eq!(args.header_timeout, Duration::from_secs(5));
    assert_eq!(args.format, app::Format::Compact);
    assert!(!args.report_only);
    assert_eq!(
        args.forwarded_header(),
        cmc_webhook::client_ip::ForwardedHeader::Forwarded
    );
    assert_eq!(args.api_key.len(), 2);
    assert!(!format!("{args:?}").contains("old-key") && !format!("{args:?}").contains("pa:ss"));
    let flag_wins = flag_wins.unwrap();
    assert_eq!(flag_wins.body_limit, 2 << 20);
    assert!(flag_wins.report_only);
    let bad = bad.unwrap_err().to_string();
    assert!(
        bad.contains("lots") && bad.contains("--body-limit"),
        "{bad}"
    );

    let (options, file) = args.options().unwrap();
    assert!(file.is_some());
    assert_eq!(options.basic_auth, [("cmc".to_owned(), "pa:ss".to_owned())]);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink: app::Sink = {
        let lines = lines.clone();
        Arc::new(move |line| {
            lines.lock().unwrap().push(line);
            true
        })
    };
    let printer = app::Printer::new(&options, sink);
    let router = app::router(&options, app::Target::Print(printer.clone())).unwrap();
    let addr = start(router, serve::Limits::default()).await;
    let (ct, body) = common::load("shared/event-v2-json-succeeded.json");
    let mut webhook = Webhook::parse(&ct, body).unwrap();
    let Webhook::Events(batch) = &mut webhook else {
        panic!("an event batch")
    };
    batch.api_key = Some("new-key".into());
    let request = || CmcRequest::events(batch, WireEncoding::Json).uri("/mails");
    // Loopback is not in CMC_ALLOW: refused, even with every credential.
    let reply =
        common::http::send_raw(addr, &request().basic_auth("cmc", "pa:ss").to_http1("test")).await;
    assert_eq!(reply.status, 403);
    // Through a trusted proxy, the RFC 7239 header names an allowed client;
    // the credentials and the key are still checked.
    let forwarded = |r: CmcRequest| r.header("forwarded", "for=203.0.113.7");
    let proxied = |r: CmcRequest| r.peer("10.1.2.3:1".parse().unwrap());
    let router_request = |r: CmcRequest| {
        let router = app::router(&options, app::Target::Print(printer.clone())).unwrap();
        async move {
            use tower::ServiceExt as _;
            router
                .oneshot(r.into_request().map(axum::body::Body::new))
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(router_request(forwarded(proxied(request()))).await, 401);
    assert_eq!(
        router_request(forwarded(proxied(request().basic_auth("cmc", "pa:ss")))).await,
        200
    );
    // The allowlist file's network is allowed too.
    let from_file = request()
        .basic_auth("cmc", "pa:ss")
        .header("forwarded", "for=192.0.2.9")
        .peer("10.1.2.3:1".parse().unwrap());
    assert_eq!(router_request(from_file).await, 200);
    // Over the body limit (64 KiB): 413.
    let big = CmcRequest::raw("application/json", vec![b' '; 70 << 10])
        .uri("/mails")
        .basic_auth("cmc", "pa:ss")
        .header("forwarded", "for=203.0.113.7")
        .peer("10.1.2.3:1".parse().unwrap());
    assert_eq!(router_request(big).await, 413);
    // Two accepted requests of one event each, printed in the compact form:
    // time as sent, type, status, recipient.
    let lines = lines.lock().unwrap().clone();
    let Webhook::Events(batch) = &webhook else {
        unreachable!()
    };
    let event = &batch.events[0];
    let expected = format!(
        "{}  deliveries  succeeded  {}",
        event.created().unwrap().strftime("%Y-%m-%d %H:%M:%S"),
        event.recipient().unwrap()
    );
    assert_eq!(lines, [expected.clone(), expected]);
}

/// `--mailbox NAME=PATTERN`: mails posted over TCP are stored, routed and
/// printed with their mailbox; the one no route takes is printed with a
/// null mailbox and kept as unrouted; a bad flag is refused at start.
#[tokio::test]
async fn mailbox_flags_route_mails_and_print_their_mailbox() {
    use clap::Parser as _;
    use cmc_webhook::inbox::mailbox::DeliveryState;

    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::sqlite(dir.path().join("cmc-inbox.sqlite3"))
        .open()
        .await
        .unwrap();
    let args = config::Args::try_parse_from([
        "receiver",
        "--mailbox",
        "support=Support@Example.JP",
        "--mailbox",
        "replies=reply+*@example.jp",
        "--mailbox",
        "support=filter:helpdesk",
    ])
    .unwrap();
    let (lines, sink) = buffer();
    let options = loopback();
    let printer = app::Printer::new(&options, sink);
    let mailboxes = app::mailboxes(&args.mailbox, &printer, 3, Duration::from_secs(3600))
        .unwrap()
        .unwrap();
    assert_eq!(
        mailboxes.routes().collect::<Vec<_>>(),
        [
            ("support@example.jp".to_string(), "support"),
            ("reply+*@example.jp".to_string(), "replies"),
            ("filter:helpdesk".to_string(), "support"),
        ]
    );
    let handler = printer.clone();
    let worker = inbox
        .worker(move |job| handler.clone().handle(job))
        .mailboxes(mailboxes)
        .spawn();
    let addr = start(
        app::router(&options, app::Target::Inbox(inbox.clone())).unwrap(),
        serve::Limits::default(),
    )
    .await;
    for (to, filter) in [
        ("support@example.jp", "info"),
        ("reply+42@example.jp", "info"),
        ("stranger@example.jp", "info"),
        ("desk@example.jp", "helpdesk"),
    ] {
        let mut mail = cmc_webhook::test_util::sample_inbound(true);
        mail.attachments.truncate(1);
        mail.envelope_to = to.into();
        mail.filter = filter.into();
        let request = CmcRequest::body(cmc_webhook::test_util::encode_inbound(
            &mail,
            WireEncoding::Multipart,
        ))
        .uri("/mails")
        .to_http1("test");
        let reply = common::http::send_raw(addr, &request).await;
        assert_eq!(reply.status, 200, "{to}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines.lock().unwrap().len() < 4 {
        assert!(Instant::now() < deadline, "{:?}", lines.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let mut printed: Vec<(String, Value, String, u64)> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["to"].as_str().unwrap().to_owned(),
                v["mailbox"].clone(),
                v["filter"].as_str().unwrap().to_owned(),
                v["attachments"][0]["size"].as_u64().unwrap(),
            )
        })
        .collect();
    printed.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    for line in lines.lock().unwrap().iter() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["client"], "127.0.0.1", "{line}");
    }
    let size = cmc_webhook::test_util::sample_inbound(true).attachments[0]
        .data
        .len() as u64;
    assert_eq!(
        printed,
        [
            (
                "desk@example.jp".into(),
                "support".into(),
                "helpdesk".into(),
                size
            ),
            (
                "reply+42@example.jp".into(),
                "replies".into(),
                "info".into(),
                size
            ),
            (
                "stranger@example.jp".into(),
                Value::Null,
                "info".into(),
                size
            ),
            (
                "support@example.jp".into(),
                "support".into(),
                "info".into(),
                size
            ),
        ]
    );
    let counts = inbox.deliveries().counts().await.unwrap();
    let of = |name: Option<&str>, state| {
        counts
            .iter()
            .find(|c| c.mailbox.as_deref() == name)
            .map_or(0, |c| c.get(state))
    };
    assert_eq!(of(Some("support"), DeliveryState::Delivered), 2);
    assert_eq!(of(Some("replies"), DeliveryState::Delivered), 1);
    assert_eq!(of(None, DeliveryState::Unrouted), 1);

    // Flags that cannot be used are refused before serving.
    for (flag, why) in [
        ("support", "expected NAME=PATTERN"),
        ("bad name=a@example.jp", "mailbox name"),
        ("x=not-an-address", "not an address pattern"),
        ("x=/(/", "not a regular expression"),
    ] {
        let e = app::mailboxes(&[flag.to_owned()], &printer, 3, Duration::from_secs(1))
            .err()
            .unwrap_or_else(|| panic!("{flag} was taken"));
        assert!(e.contains(why), "{flag}: {e}");
    }
    let listed = config::Args::try_parse_from([
        "receiver",
        "mailboxes",
        "--list",
        "--name",
        "support",
        "--state",
        "dead",
    ])
    .unwrap();
    assert!(matches!(
        listed.command,
        Some(config::Command::Mailboxes { list: true, .. })
    ));
}

/// Zeros that would do nothing (or cut off every request) are refused
/// with the flag's name, not raised silently; so are two `*` routes.
#[test]
fn nonsensical_values_are_refused_at_start() {
    use clap::Parser as _;
    for (flag, value) in [
        ("--body-timeout", "0s"),
        ("--header-timeout", "0"),
        ("--max-connection-age", "0ms"),
        ("--max-connections", "0"),
        ("--max-requests-per-connection", "0"),
        ("--concurrency", "0"),
        ("--max-attempts", "0"),
    ] {
        let e = config::Args::try_parse_from(["receiver", flag, value])
            .unwrap_err()
            .to_string();
        assert!(e.contains(flag) && e.contains('0'), "{flag}: {e}");
    }
    for sub in [vec!["dead"], vec!["mailboxes", "--list"]] {
        let mut argv = vec!["receiver"];
        argv.extend(sub);
        argv.extend(["--limit", "0"]);
        assert!(config::Args::try_parse_from(argv).is_err());
    }
    // The sensible values still parse.
    let args = config::Args::try_parse_from([
        "receiver",
        "--body-timeout",
        "500ms",
        "--concurrency",
        "1",
        "--max-attempts",
        "1",
    ])
    .unwrap();
    assert_eq!(args.body_timeout, Duration::from_millis(500));
    assert_eq!((args.concurrency, args.max_attempts), (1, 1));
    // Two fallbacks: refused, naming both.
    let printer = app::Printer::new(&loopback(), Arc::new(|_| true));
    let e = app::mailboxes(
        &["a=*".to_owned(), "b=*".to_owned()],
        &printer,
        3,
        Duration::from_secs(60),
    )
    .unwrap_err();
    assert!(e.contains("b=*") && e.contains("\"a\""), "{e}");
}

/// `--help` tells to keep secrets out of flags.
#[test]
fn help_says_to_give_secrets_in_the_environment_or_a_file() {
    use clap::CommandFactory as _;
    let help = config::Args::command().render_long_help().to_string();
    for flag in [
        "--api-key-file",
        "--basic-auth-file",
        "--store-file",
        "--metrics-auth-file",
        "CMC_METRICS_AUTH",
    ] {
        assert!(help.contains(flag), "{flag} in --help");
    }
    assert!(help.contains("show in `ps`"), "{help}");
}

/// A secrets file: line ends are not part of a secret, a padded or blank
/// line is refused without being shown, an empty file is refused.
#[test]
fn secret_files_are_read_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let file = |text: &str| {
        let path = dir.path().join(format!("secret-{}", text.len()));
        std::fs::write(&path, text).unwrap();
        path
    };
    assert_eq!(
        config::read_secrets("--api-key-file", &file("a\r\n\r\nb\n")).unwrap(),
        ["a", "b"]
    );
    for bad in ["a\n s3cret\n", "s3cret \n", "\t\n", "\n\n"] {
        let e = config::read_secrets("--api-key-file", &file(bad)).unwrap_err();
        assert!(e.contains("--api-key-file") && !e.contains("s3cret"), "{e}");
    }
    let missing = config::read_secrets("--api-key-file", &dir.path().join("nope"));
    assert!(missing.unwrap_err().contains("nope"));
}

/// The line `dead` prints of a row whose subject and error came from a
/// webhook: one line (no CR or LF to forge a row, no escape sequence
/// reaches the terminal), cut, however long the stored values.
#[tokio::test]
async fn dead_rows_print_escaped_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::sqlite(dir.path().join("cmc-inbox.sqlite3"))
        .open()
        .await
        .unwrap();
    let to = format!(
        "evil@example.jp\\r\\n1\\tforged\\u001b[2J{}",
        "x".repeat(500_000)
    );
    let body = format!(
        r#"{{"event_type":"deliveries","server_composition":"pro","event":{{"deliveries":[{{"created":"2026-01-01 09:00:00","status":"queued","to":"{to}","messageId":"<1@x>"}}]}}}}"#
    );
    let router = app::router(&loopback(), app::Target::Inbox(inbox.clone())).unwrap();
    let addr = start(router, serve::Limits::default()).await;
    let raw = CmcRequest::raw("application/json", body.into_bytes())
        .uri("/mails")
        .to_http1("test");
    assert_eq!(common::http::send_raw(addr, &raw).await.status, 200);
    let worker = inbox
        .worker(|_job| async {
            Err::<(), String>(format!(
                "boom\r\n2\tforged\u{1b}[31m{}",
                "y".repeat(1 << 20)
            ))
        })
        .max_attempts(1)
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = inbox.dead(10).await.unwrap();
        if !rows.is_empty() {
            break rows;
        }
        assert!(Instant::now() < deadline, "the row did not die");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let line = app::dead_line(&rows[0]);
    assert!(!line.contains(['\r', '\n', '\u{1b}']), "{line:?}");
    assert_eq!(line.matches('\t').count(), 5, "{line:?}");
    assert!(line.contains("\tdefault\t"), "{line:?}");
    assert!(
        line.contains("\\u{d}\\u{a}1\\u{9}forged\\u{1b}[2J"),
        "{line:?}"
    );
    assert!(
        line.contains("boom\\u{d}\\u{a}2\\u{9}forged\\u{1b}[31m"),
        "{line:?}"
    );
    assert!(line.len() < 2_000, "{} bytes", line.len());
}

/// Without a store, a stdout that does not take the lines makes the
/// request wait (asynchronously), then answers 503 with `Retry-After`,
/// never 200 before the line is written; once stdout is read again, 200.
#[tokio::test]
async fn without_a_store_a_stalled_stdout_answers_503() {
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let blocked = Mutex::new(blocked);
    let written = Arc::new(Mutex::new(0usize));
    let count = written.clone();
    // A sink that blocks until released, like a pipe nobody reads.
    let sink: app::Sink = Arc::new(move |_line| {
        let _ = blocked.lock().unwrap().recv();
        *count.lock().unwrap() += 1;
        true
    });
    let lines = output::Lines::with_limits(sink, 4096, Duration::from_millis(300));
    let options = loopback();
    let printer = app::Printer::with_lines(&options, lines);
    let router = app::router(&options, app::Target::Print(printer)).unwrap();
    let addr = start(router, serve::Limits::default()).await;
    for _ in 0..3 {
        let started = Instant::now();
        let reply = common::http::send_raw(addr, &sample_request()).await;
        assert_eq!(reply.status, 503, "{reply:?}");
        assert_eq!(reply.header("retry-after"), Some("10"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // Read again: the line in the writer's hands is written, then the
    // next request's.
    release.send(()).unwrap();
    release.send(()).unwrap();
    let reply = common::http::send_raw(addr, &sample_request()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(*written.lock().unwrap(), 2);
}

/// Environment variable that turns a run of this binary into the child
/// receiver of `webhooks_are_answered_while_stdout_is_not_read`.
const UNREAD_STDOUT_CHILD: &str = "CMC_TEST_UNREAD_STDOUT_CHILD";

/// The child: the receiver's app, inbox, worker and serve loop, printing
/// to its real stdout (a pipe the parent never reads) as the receiver
/// does, on a runtime of two threads; its port on stderr.
#[test]
#[ignore = "the child process of webhooks_are_answered_while_stdout_is_not_read"]
fn child_receiver_with_unread_stdout() {
    let Some(dir) = std::env::var_os(UNREAD_STDOUT_CHILD) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let inbox = Inbox::sqlite(std::path::Path::new(&dir).join("inbox.sqlite3"))
            .open()
            .await
            .unwrap();
        let options = loopback();
        let printer = app::Printer::new(&options, output::stdout());
        let _worker = inbox
            .worker(move |job| printer.clone().handle(job))
            .concurrency(16)
            .spawn();
        let router = app::router(&options, app::Target::Inbox(inbox.clone())).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        eprintln!("PORT {}", listener.local_addr().unwrap().port());
        serve::serve(
            listener,
            router,
            serve::Limits::default(),
            std::future::pending(),
        )
        .await
        .unwrap();
    });
}

/// A receiver whose stdout is a pipe nobody reads keeps answering
/// webhooks: far more lines than the pipe holds are printed while every
/// request is answered 200 in time; the rows wait in the inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_answered_while_stdout_is_not_read() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::child::test_command("child_receiver_with_unread_stdout")
        .env(UNREAD_STDOUT_CHILD, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Held open, never read.
    let _unread = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let child = common::child::Killed(child);
    let port = common::child::announced_port(&mut lines).expect("the child printed its port");
    std::thread::spawn(move || for _ in lines {});
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // 40 batches of 50 events of about 1 KiB each: some 2 MB of lines, 30
    // times what a pipe holds.
    let padding = "p".repeat(600);
    for n in 0..40 {
        let records: Vec<String> = (0..50)
            .map(|i| format!(r#"{{"created":"2026-01-01 09:00:00","status":"queued","to":"u{i}@example.jp","subject":"{padding}","messageId":"<{n}.{i}@example.com>"}}"#))
            .collect();
        let body = format!(
            r#"{{"event_type":"deliveries","server_composition":"pro","event":{{"deliveries":[{}]}}}}"#,
            records.join(",")
        );
        let raw = CmcRequest::raw("application/json", body.into_bytes())
            .uri("/mails")
            .to_http1("test");
        let reply =
            tokio::time::timeout(Duration::from_secs(10), common::http::send_raw(addr, &raw))
                .await
                .unwrap_or_else(|_| panic!("batch {n} was not answered within 10 s"));
        assert_eq!(reply.status, 200, "batch {n}: {reply:?}");
    }
    // The pipe is full: rows wait in the inbox, none lost.
    let inbox = Inbox::sqlite(dir.path().join("inbox.sqlite3"))
        .open()
        .await
        .unwrap();
    let counts = inbox.counts().await.unwrap().events;
    assert_eq!(counts.total(), 2000);
    assert!(counts.done < 2000, "{counts:?}");
    assert_eq!(counts.dead, 0, "{counts:?}");
    drop(child);
}

/// The metrics endpoint: `GET /metrics` only (404 for another path, 405
/// for another method), and BASIC auth when credentials are set.
#[tokio::test]
async fn metrics_answer_get_metrics_only_and_check_credentials() {
    use cmc_webhook::auth::BasicCredentials;
    let render: Arc<dyn Fn() -> String + Send + Sync> =
        Arc::new(|| "cmc_webhook_test_total 3\n".to_owned());
    let request = |method: &str, path: &str, auth: Option<(&str, &str)>| {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        if let Some((user, password)) = auth {
            use base64::Engine as _;
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            raw.push_str(&format!("Authorization: Basic {token}\r\n"));
        }
        raw.push_str("Content-Length: 0\r\n\r\n");
        raw.into_bytes()
    };
    let open = start(
        serve::metrics_router(render.clone(), Vec::new()),
        serve::Limits::default(),
    )
    .await;
    let reply = common::http::send_raw(open, &request("GET", "/metrics", None)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("cmc_webhook_test_total 3"));
    assert!(reply
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    for (method, path, status) in [
        ("GET", "/", 404),
        ("GET", "/metrics/x", 404),
        ("GET", "/mails", 404),
        ("POST", "/metrics", 405),
        ("DELETE", "/metrics", 405),
    ] {
        let reply = common::http::send_raw(open, &request(method, path, None)).await;
        assert_eq!(reply.status, status, "{method} {path}");
    }
    let locked = start(
        serve::metrics_router(render, vec![BasicCredentials::new("prom", "pa55")]),
        serve::Limits::default(),
    )
    .await;
    for auth in [None, Some(("prom", "wrong")), Some(("other", "pa55"))] {
        let reply = common::http::send_raw(locked, &request("GET", "/metrics", auth)).await;
        assert_eq!(reply.status, 401, "{auth:?}");
        assert!(reply.header("www-authenticate").is_some());
        assert!(!reply.body.contains("cmc_webhook"));
    }
    let reply =
        common::http::send_raw(locked, &request("GET", "/metrics", Some(("prom", "pa55")))).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("cmc_webhook_test_total 3"));
}

/// Idle and half-open connections to the metrics listener are capped
/// and timed out: beyond the cap they wait in the backlog, each is closed
/// after the header timeout, and the webhook listener beside it answers
/// throughout.
#[tokio::test]
async fn metrics_connections_are_capped_and_timed_out() {
    let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(|| "up 1\n".to_owned());
    let limits = serve::Limits {
        header_timeout: Duration::from_secs(1),
        max_connections: 4,
        ..serve::Limits::default()
    };
    let metrics = start(serve::metrics_router(render, Vec::new()), limits).await;
    let webhooks = start(receiver(loopback()), serve::Limits::default()).await;
    // Four connections at the cap: two idle, two half-open.
    let mut held = Vec::new();
    for i in 0..4 {
        let mut stream = TcpStream::connect(metrics).await.unwrap();
        if i % 2 == 1 {
            stream.write_all(b"GET /metr").await.unwrap();
        }
        held.push(stream);
    }
    // Plus many more, waiting in the backlog.
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(TcpStream::connect(metrics).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A scrape beyond the cap waits for a free slot.
    let scrape = tokio::spawn(async move {
        common::http::send_raw(
            metrics,
            b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .await
    });
    // Meanwhile webhooks are answered at once.
    let reply = tokio::time::timeout(
        Duration::from_secs(2),
        common::http::send_raw(webhooks, &sample_request()),
    )
    .await
    .expect("the webhook listener answers");
    assert_eq!(reply.status, 200);
    assert!(
        !scrape.is_finished(),
        "a connection beyond the cap was served at once"
    );
    // The four held connections are closed after the header timeout.
    for stream in &mut held {
        let took = closed_after(stream).await;
        assert!(took < Duration::from_secs(5), "closed after {took:?}");
    }
    drop(flood);
    let reply = tokio::time::timeout(Duration::from_secs(30), scrape)
        .await
        .expect("the scrape is answered once slots are free")
        .unwrap();
    assert_eq!(reply.status, 200);
}

/// Failed accepts (out of file descriptors) wait longer each time, up to
/// a second, and log one line per ten seconds with the count, never a
/// line per failure.
#[test]
fn failed_accepts_back_off_and_log_rarely() {
    let mut backoff = serve::AcceptBackoff::default();
    let start = tokio::time::Instant::now();
    let mut logged = Vec::new();
    let mut waited = Duration::ZERO;
    for _ in 0..100_000 {
        let (wait, log) = backoff.failed(start + waited);
        assert!(wait <= serve::AcceptBackoff::MAX);
        waited += wait;
        logged.extend(log);
    }
    // 100 000 failures, back to back, take about 100 000 s of waiting, and
    // are logged about once per ten seconds of it, not 100 000 times.
    assert!(waited > Duration::from_secs(90_000), "{waited:?}");
    assert!(logged.len() <= 10_001, "{} lines", logged.len());
    assert!(logged.iter().sum::<u64>() <= 100_000);
    let mut quick = serve::AcceptBackoff::default();
    let (first, log) = quick.failed(start);
    assert_eq!((first, log), (serve::AcceptBackoff::FIRST, Some(1)));
    let (second, log) = quick.failed(start);
    assert_eq!((second, log), (serve::AcceptBackoff::FIRST * 2, None));
    quick.accepted();
    assert_eq!(quick.failed(start).0, serve::AcceptBackoff::FIRST);
}

/// The receiver program `cargo test` built beside this test.
fn receiver_program() -> std::path::PathBuf {
    let me = std::env::current_exe().unwrap();
    let dir = me.parent().unwrap().parent().unwrap();
    dir.join("examples")
        .join(format!("receiver{}", std::env::consts::EXE_SUFFIX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subcommands_never_migrate_and_migrate_is_a_step_of_its_own() {
    let program = receiver_program();
    if !program.exists() {
        eprintln!("SKIPPED: {} was not built", program.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("inbox.sqlite3").display());
    let run = |args: &[&str]| {
        std::process::Command::new(&program)
            .env_clear()
            .env("CMC_STORE", &store)
            .args(args)
            .output()
            .unwrap()
    };
    // No store yet: inspection does not make one.
    let counts = run(&["counts"]);
    assert!(!counts.status.success());
    assert!(!dir.path().join("inbox.sqlite3").exists());

    let migrated = run(&["migrate"]);
    assert!(migrated.status.success(), "{migrated:?}");
    let line: Value = serde_json::from_slice(&migrated.stdout).unwrap();
    assert!(line["applied"].as_array().unwrap().len() >= 7, "{line}");
    let again: Value = serde_json::from_slice(&run(&["migrate"]).stdout).unwrap();
    assert_eq!(again["applied"], serde_json::json!([]));
    assert_eq!(again["version"], line["version"]);
    assert!(run(&["counts"]).status.success());

    // A count that no row backs (written by hand): `counts --recount`
    // rebuilds the counts and prints what changed, then nothing more.
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&store).await.unwrap();
        sqlx::query("INSERT INTO cmc_state_counts (tbl, scope, state, n) VALUES ('events', 'default', 'dead', 4)")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let recount = run(&["counts", "--recount"]);
    assert!(recount.status.success(), "{recount:?}");
    let out = String::from_utf8(recount.stdout).unwrap();
    assert!(
        out.contains("recount: events default dead: 4 -> 0\n"),
        "{out}"
    );
    let events = out.lines().find(|l| l.starts_with("events")).unwrap();
    let words: Vec<&str> = events.split_whitespace().collect();
    assert!(words.windows(2).any(|w| w == ["dead", "0"]), "{out}");
    let out = String::from_utf8(run(&["counts", "--recount"]).stdout).unwrap();
    assert!(out.starts_with("recount: every count was right\n"), "{out}");

    // A suppression history a page at a time, newest first.
    for note in ["first", "second", "third"] {
        let added = run(&["suppressions", "add", "Pages@Example.JP", "--note", note]);
        assert!(added.status.success(), "{added:?}");
    }
    let page = run(&[
        "suppressions",
        "history",
        "pages@example.jp",
        "--limit",
        "2",
    ]);
    assert!(page.status.success(), "{page:?}");
    let lines: Vec<Value> = String::from_utf8(page.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[0]["note"].as_str(), lines[1]["note"].as_str()),
        (Some("third"), Some("second"))
    );
    let said = String::from_utf8(page.stderr).unwrap();
    let before = lines[1]["id"].as_i64().unwrap().to_string();
    assert!(
        said.contains(&format!("3 changes in all; older ones: --before {before}")),
        "{said}"
    );
    let rest = run(&[
        "suppressions",
        "history",
        "pages@example.jp",
        "--before",
        &before,
    ]);
    let rest = String::from_utf8(rest.stdout).unwrap();
    assert_eq!(rest.lines().count(), 1);
    assert!(rest.contains("\"first\""), "{rest}");
    assert!(!run(&[
        "suppressions",
        "history",
        "pages@example.jp",
        "--limit",
        "0"
    ])
    .status
    .success());

    // A store a newer version migrated: inspected by nobody, changed by
    // nobody.
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&store).await.unwrap();
    sqlx::query(
        "INSERT INTO cmc_webhook_migrations (version, description, success, checksum, execution_time) \
         VALUES (999999, 'from the future', 1, x'00', 0)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    for args in [
        &["counts"][..],
        &["dead"],
        &["replay", "--dead"],
        &["prune"],
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("newer"), "{args:?}: {err}");
    }
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cmc_webhook_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        applied,
        line["applied"].as_array().unwrap().len() as i64 + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reparse_is_a_dry_run_unless_applied_and_adds_what_is_missing_once() {
    let program = receiver_program();
    if !program.exists() {
        eprintln!("SKIPPED: {} was not built", program.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("inbox.sqlite3").display());
    {
        let inbox = Inbox::open(&store).await.unwrap();
        let request = CmcRequest::events(&sample_events(3), WireEncoding::Json).into_request();
        let response = tower::ServiceExt::oneshot(inbox.receive(), request)
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        inbox.close().await;
    }
    // An older parser's store: the last record was not stored.
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&store).await.unwrap();
    sqlx::query("DELETE FROM cmc_events WHERE id = (SELECT MAX(id) FROM cmc_events)")
        .execute(&mut conn)
        .await
        .unwrap();
    const COUNT: &str = "SELECT COUNT(*) FROM cmc_events";
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&program)
            .env_clear()
            .env("CMC_STORE", &store)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        let lines: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        lines
    };
    let dry = run(&["reparse"]);
    assert_eq!(dry.len(), 2, "{dry:?}");
    assert_eq!(dry[0]["new"].as_array().unwrap().len(), 1);
    assert_eq!(dry[0]["unchanged"], 2);
    assert_eq!(dry[1]["applied"], false);
    assert_eq!(
        sqlx::query_scalar::<_, i64>(COUNT)
            .fetch_one(&mut conn)
            .await
            .unwrap(),
        2,
        "a dry run writes nothing"
    );

    let applied = run(&["reparse", "--apply"]);
    assert_eq!(applied.last().unwrap()["added"], 1, "{applied:?}");
    assert_eq!(
        sqlx::query_scalar::<_, i64>(COUNT)
            .fetch_one(&mut conn)
            .await
            .unwrap(),
        3
    );
    let again = run(&["reparse", "--apply"]);
    assert_eq!(again.len(), 1, "nothing differs any more: {again:?}");
    assert_eq!(again[0]["added"], 0);
    assert_eq!(
        sqlx::query_scalar::<_, i64>(COUNT)
            .fetch_one(&mut conn)
            .await
            .unwrap(),
        3
    );
}

/// A stdout that is closed (its reader died) marks no row done: the
/// lines that could not be written leave their rows to be tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_marks_no_row_done() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::sqlite(dir.path().join("inbox.sqlite3"))
        .open()
        .await
        .unwrap();
    // A sink whose every write fails, as on a pipe whose reader is gone.
    let sink: app::Sink = Arc::new(|_line| false);
    let lines = output::Lines::with_limits(sink, 4096, Duration::from_millis(300));
    let options = loopback();
    let printer = app::Printer::with_lines(&options, lines);
    let handler = printer.clone();
    let worker = inbox
        .worker(move |job| handler.clone().handle(job))
        .max_attempts(3)
        .spawn();
    inbox
        .store(
            Webhook::parse(
                "application/json",
                Bytes::from(
                    r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[{"created":"2026-01-01 09:00:00","status":"queued","to":"u@example.jp","messageId":"<m@x>"}]}}"#,
                ),
            )
            .unwrap(),
            None,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let counts = inbox.counts().await.unwrap().events;
    assert_eq!(counts.done, 0, "{counts:?}");
    assert_eq!(counts.total(), 1);
}

/// `migrate` and the subcommands put and look for the inbox's tables in
/// the PostgreSQL schema of `--pg-schema` (or `CMC_PG_SCHEMA`).
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_schema_is_chosen_by_flag_or_environment() {
    let program = receiver_program();
    if !program.exists() {
        eprintln!("SKIPPED: {} was not built", program.display());
        return;
    }
    let Some(admin) = common::inbox::postgres_server("receiver") else {
        return;
    };
    let url = common::inbox::fresh_database(&admin, "receiver_pg_schema").await;
    let run = |args: &[&str], env: Option<&str>| {
        let mut command = std::process::Command::new(&program);
        command.env_clear().env("CMC_STORE", &url).args(args);
        if let Some(schema) = env {
            command.env("CMC_PG_SCHEMA", schema);
        }
        command.output().unwrap()
    };
    let migrated = run(&["migrate", "--pg-schema", "by_flag"], None);
    assert!(migrated.status.success(), "{migrated:?}");
    let migrated = run(&["migrate"], Some("by_env"));
    assert!(migrated.status.success(), "{migrated:?}");
    assert!(run(&["counts", "--pg-schema", "by_flag"], None)
        .status
        .success());
    // Not migrated in the default schema: `counts` says to migrate.
    let counts = run(&["counts"], None);
    assert!(!counts.status.success());
    assert!(String::from_utf8_lossy(&counts.stderr).contains("migrate"));
    let refused = run(&["migrate", "--pg-schema", "Bad;Schema"], None);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("plain identifier"));
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT schemaname::TEXT FROM pg_tables WHERE tablename = 'cmc_events' \
         ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(schemas, ["by_env", "by_flag"]);
}

/// `counts`, `dead`, `history` and `replay` take `--source NAME`: each
/// reads or changes that source's rows only, and `dead` and `history`
/// show each row's source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspection_subcommands_are_scoped_by_source() {
    let program = receiver_program();
    if !program.exists() {
        eprintln!("SKIPPED: {} was not built", program.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.sqlite3");
    let inbox = Inbox::sqlite(&path).open().await.unwrap();
    let batch = |id: &str| {
        Webhook::parse(
            "application/json",
            Bytes::from(format!(
                r#"{{"event_type":"bounces","server_composition":"pro","event":{{"bounces":[
                {{"created":"2023-01-25 14:03:06","status":"2015","to":"u@example.jp","messageId":"{id}"}}]}}}}"#
            )),
        )
        .unwrap()
    };
    for (source, id) in [("alpha", "<a@x>"), ("beta", "<b@x>")] {
        let source = cmc_webhook::Source::new(source, jiff::tz::TimeZone::UTC, None);
        inbox
            .store_sourced(cmc_webhook::Sourced(source, batch(id)), None)
            .await
            .unwrap();
    }
    let worker = inbox
        .worker(|_job| async { Err::<(), String>("down".to_owned()) })
        .max_attempts(1)
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while inbox.counts().await.unwrap().events.dead < 2 {
        assert!(Instant::now() < deadline, "the rows did not die");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    inbox.close().await;

    let store = format!("sqlite:{}", path.display());
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&program)
            .env_clear()
            .env("CMC_STORE", &store)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let dead_of = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("events"))
            .map(|l| l.contains("dead        1"))
            .collect::<Vec<_>>()
    };
    assert_eq!(dead_of(&run(&["counts", "--source", "alpha"])), [true]);
    assert!(run(&["counts", "--source", "nobody"]).contains("dead        0"));
    let dead = run(&["dead", "--source", "beta"]);
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(dead.contains("\tbeta\t"), "{dead}");
    assert_eq!(run(&["dead"]).lines().count(), 2);
    let history: Value =
        serde_json::from_str(run(&["history", "<a@x>", "--source", "alpha"]).trim()).unwrap();
    assert_eq!(history["source"], "alpha");
    assert_eq!(run(&["history", "<a@x>", "--source", "beta"]), "");
    assert_eq!(
        run(&["replay", "--dead", "--source", "beta"]).trim(),
        "1 rows replayed"
    );
    assert!(run(&["counts", "--source", "beta"]).contains("pending        1"));
    assert!(run(&["counts", "--source", "alpha"]).contains("pending        0"));
}
