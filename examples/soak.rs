//! Soak test of the receiver: runs `examples/receiver` on loopback, sends
//! a bounded mix of every fixture (in every encoding) and of hostile inputs
//! from several connections for a fixed time, then checks that nothing
//! answered 5xx, no connection failed, every hostile input got its 4xx, and
//! resident memory stayed flat after warm-up.
//!
//! By default the receiver stores into an inbox in a temporary directory:
//! the fixtures repeat, so every distinct event and mail that was accepted
//! must be handled (printed by the worker) exactly once, however often it was
//! sent. With `--store none` the receiver prints before each 200, and every
//! accepted request must have printed its lines.
//!
//! ```text
//! bash benches/soak.sh              # release build, 5 minutes
//! cargo run --features test-util --example soak -- --seconds 10 --receiver target/debug/examples/receiver
//! ```

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use cmc_webhook::test_util::{encode, CmcRequest, WireEncoding};
use cmc_webhook::Webhook;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Soak the receiver with fixtures and hostile inputs.
#[derive(Debug, Parser)]
struct Args {
    /// The receiver binary (built by `cargo build --example receiver`).
    #[arg(long, default_value = "target/release/examples/receiver")]
    receiver: PathBuf,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Loopback port for the receiver.
    #[arg(long, default_value_t = 18_180)]
    port: u16,
    /// `inbox` (a fresh SQLite inbox in a temporary directory) or `none`.
    #[arg(long, default_value = "inbox")]
    store: String,
}

/// One request of the mix and what must come of it.
struct Case {
    what: String,
    bytes: Vec<u8>,
    /// `Some(lines)` when it must be accepted (200) and print these lines;
    /// `None` when it must be refused with a 4xx.
    expect: Option<Vec<String>>,
}

/// The keys of the lines a webhook prints: it is parsed from the bytes that
/// are sent, as the receiver sees it.
fn line_key(content_type: &str, body: Bytes) -> Vec<String> {
    match Webhook::parse(content_type, body).expect("a body that parses") {
        Webhook::Events(batch) => batch
            .events
            .iter()
            .map(|e| format!("event {}", e.idempotency_key()))
            .collect(),
        Webhook::Inbound(mail) => vec![format!("inbound {}", mail.idempotency_key())],
    }
}

fn printed_key(line: &serde_json::Value) -> Option<String> {
    match line["type"].as_str()? {
        "event" => Some(format!("event {}", line["key"].as_str()?)),
        "inbound" => Some(format!("inbound {}", line["key"].as_str()?)),
        _ => None,
    }
}

fn content_type_of(path: &Path) -> Option<String> {
    match path.extension()?.to_str()? {
        "json" => Some("application/json".into()),
        "form" => Some("application/x-www-form-urlencoded".into()),
        "multipart" => Some(
            std::fs::read_to_string(path.with_extension("content-type"))
                .ok()?
                .trim()
                .to_owned(),
        ),
        _ => None,
    }
}

fn cases(host: &str) -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<PathBuf> = [root.clone(), root.join("shared")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| {
            content_type_of(p).is_some() && p.extension().is_some_and(|e| e != "content-type")
        })
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let ct = content_type_of(&path).unwrap();
        let body = Bytes::from(std::fs::read(&path).unwrap());
        let webhook = Webhook::parse(&ct, body.clone()).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        cases.push(Case {
            what: name.clone(),
            expect: Some(line_key(&ct, body.clone())),
            bytes: CmcRequest::raw(ct, body).uri("/mails").to_http1(host),
        });
        for encoding in WireEncoding::ALL {
            let wire = encode(&webhook, encoding);
            cases.push(Case {
                what: format!("{name} as {encoding:?}"),
                expect: Some(line_key(&wire.content_type, wire.body.clone())),
                bytes: CmcRequest::body(wire).uri("/mails").to_http1(host),
            });
        }
    }
    let hostile: Vec<(&str, CmcRequest)> = vec![
        (
            "truncated JSON",
            CmcRequest::raw("application/json", r#"{"event_type":"deliveries","#),
        ),
        ("wrong media type", CmcRequest::raw("text/plain", "hello")),
        (
            "invalid UTF-8",
            CmcRequest::raw("application/json", &b"{\"event_type\":\"\xff\"}"[..]),
        ),
        (
            "bad percent-encoding",
            CmcRequest::raw("application/x-www-form-urlencoded", "event=%ZZ"),
        ),
        (
            "deep nesting",
            CmcRequest::raw("application/json", "[".repeat(50_000)),
        ),
        (
            "field twice",
            CmcRequest::raw("application/x-www-form-urlencoded", "api_key=a&api_key=b"),
        ),
        (
            "thousands of parts",
            CmcRequest::raw(
                "multipart/form-data; boundary=Z",
                "--Z\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\ny\r\n".repeat(2_000)
                    + "--Z--\r\n",
            ),
        ),
        (
            "multipart without boundary",
            CmcRequest::raw("multipart/form-data", "--Z--"),
        ),
        ("neither kind", CmcRequest::raw("application/json", "{}")),
        // Crafted to cost more than their size, each refused by a cap.
        (
            "10 001 empty records",
            CmcRequest::raw(
                "application/json",
                format!(
                    r#"{{"event_type":"blocks","server_composition":"p","event":{{"blocks":[{}{{}}]}}}}"#,
                    "{},".repeat(10_000)
                ),
            ),
        ),
        (
            "10 001 tiny form fields",
            CmcRequest::raw(
                "application/x-www-form-urlencoded",
                (0..10_001)
                    .map(|i| format!("a{i}="))
                    .collect::<Vec<_>>()
                    .join("&"),
            ),
        ),
        (
            "an endless part header block",
            CmcRequest::raw(
                "multipart/form-data; boundary=Z",
                format!("--Z\r\nX-Long: {}", "a".repeat(100_000)),
            ),
        ),
        (
            "a numeric api_key",
            CmcRequest::raw(
                "application/json",
                r#"{"event_type":"bounces","server_composition":"p","api_key":12345,"event":{"bounces":[]}}"#,
            ),
        ),
    ];
    // Crafted, and accepted: they must cost no more than plain bodies.
    let crafted_accepted = [
        (
            "a file name of unclosed encoded words",
            "multipart/form-data; boundary=Z".to_owned(),
            format!(
                "--Z\r\nContent-Disposition: form-data; name=\"attachment1\"; filename=\"{}\"\r\n\r\nx\r\n{}--Z--\r\n",
                "=?x?y".repeat(3_000),
                [("server_composition", "p"), ("filter", "f"), ("envelope-from", "a@x"), ("envelope-to", "b@y"), ("headers", "[]"), ("attachments", "1")]
                    .iter()
                    .map(|(n, v)| format!("--Z\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n"))
                    .collect::<String>()
            ),
        ),
        (
            "an unknown field holding a 200 KB array",
            "application/json".to_owned(),
            format!(
                r#"{{"event_type":"bounces","server_composition":"p","event":{{"bounces":[]}},"x":[{}0]}}"#,
                "0,".repeat(100_000)
            ),
        ),
    ];
    for (what, ct, body) in crafted_accepted {
        let body = Bytes::from(body);
        cases.push(Case {
            what: what.to_owned(),
            expect: Some(line_key(&ct, body.clone())),
            bytes: CmcRequest::raw(ct, body).uri("/mails").to_http1(host),
        });
    }
    for (what, request) in hostile {
        cases.push(Case {
            what: what.to_owned(),
            bytes: request.uri("/mails").to_http1(host),
            expect: None,
        });
    }
    cases.push(Case {
        what: "GET".into(),
        bytes: format!("GET /mails HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .into_bytes(),
        expect: None,
    });
    cases.push(Case {
        what: "declared length over the limit".into(),
        bytes: format!("POST /mails HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\nConnection: close\r\n\r\n{{}}").into_bytes(),
        expect: None,
    });
    cases
}

async fn send(port: u16, bytes: &[u8]) -> std::io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(bytes).await?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut reply))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 30 s"))??;
    let text = String::from_utf8_lossy(&reply);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "no status line"))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmRSS:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

#[derive(Default)]
struct Tally {
    sent: u64,
    accepted: u64,
    refused: u64,
    server_errors: Vec<String>,
    connection_errors: Vec<String>,
    wrong: Vec<String>,
    expected: BTreeMap<String, u64>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (store, inbox) = match args.store.as_str() {
        "inbox" => (
            format!("sqlite:{}", dir.path().join("soak.sqlite3").display()),
            true,
        ),
        "none" => ("none".to_owned(), false),
        other => {
            eprintln!("--store {other}: expected inbox or none");
            return ExitCode::from(2);
        }
    };
    // Another program on the port would answer in the receiver's place.
    if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", args.port)) {
        eprintln!(
            "port {} is not free ({e}): pass another with --port",
            args.port
        );
        return ExitCode::from(2);
    }
    // The receiver runs in the temporary directory: resolve its path first.
    let receiver = std::path::absolute(&args.receiver).unwrap_or(args.receiver.clone());
    let mut child = match Command::new(&receiver)
        .args([
            "--listen",
            &format!("127.0.0.1:{}", args.port),
            "--body-limit",
            "4194304",
            "--store",
            &store,
        ])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!(
                "cannot start {}: {e} (build it with cargo build --example receiver)",
                args.receiver.display()
            );
            return ExitCode::from(2);
        }
    };
    let pid = child.id();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let reader = {
        let stdout = child.stdout.take().unwrap();
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let ready = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", args.port))
        .await
        .is_err()
    {
        if ready.elapsed() > Duration::from_secs(20) {
            eprintln!("the receiver did not start listening");
            let _ = child.kill();
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if let Ok(Some(status)) = child.try_wait() {
        eprintln!("the receiver exited ({status}) instead of serving");
        return ExitCode::FAILURE;
    }

    let cases = Arc::new(cases(&format!("127.0.0.1:{}", args.port)));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut rss = Vec::new();
    let mut tasks = Vec::new();
    for worker in 0..args.connections {
        let (cases, tally, port) = (cases.clone(), tally.clone(), args.port);
        tasks.push(tokio::spawn(async move {
            let mut i = worker * 7;
            while Instant::now() < deadline {
                let case = &cases[i % cases.len()];
                i += 1;
                let result = send(port, &case.bytes).await;
                let mut t = tally.lock().unwrap();
                t.sent += 1;
                match (result, &case.expect) {
                    (Err(e), _) => t.connection_errors.push(format!("{}: {e}", case.what)),
                    (Ok(s), _) if s >= 500 => t.server_errors.push(format!("{}: {s}", case.what)),
                    (Ok(200), Some(keys)) => {
                        t.accepted += 1;
                        for k in keys {
                            *t.expected.entry(k.clone()).or_default() += 1;
                        }
                    }
                    (Ok(s), None) if (400..500).contains(&s) => t.refused += 1,
                    (Ok(s), _) => t.wrong.push(format!("{}: {s}", case.what)),
                }
            }
        }));
    }
    let started = Instant::now();
    while Instant::now() < deadline {
        if let Some(kib) = rss_kib(pid) {
            rss.push((started.elapsed().as_secs_f64(), kib));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    if inbox {
        // The worker prints after the 200: wait until every distinct key
        // accepted has been printed (or 30 s have passed), then a moment
        // more so that a second print of any of them would show.
        let want = tally.lock().unwrap().expected.len();
        let waited = Instant::now();
        while waited.elapsed() < Duration::from_secs(30) && lines.lock().unwrap().len() < want {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Every line of a 200 without the inbox was written before the 200;
    // give the pipe a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let exited = child.try_wait().ok().flatten();
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();

    let tally = tally.lock().unwrap();
    let mut printed: BTreeMap<String, u64> = BTreeMap::new();
    let mut unreadable = 0;
    for line in lines.lock().unwrap().iter() {
        match serde_json::from_str(line)
            .ok()
            .as_ref()
            .and_then(printed_key)
        {
            Some(key) => *printed.entry(key).or_default() += 1,
            None => unreadable += 1,
        }
    }
    let warm = rss.len() / 5;
    let warm_rss = rss.get(warm).map_or(0, |r| r.1);
    let late_max = rss[warm..].iter().map(|r| r.1).max().unwrap_or(0);
    let final_rss = rss.last().map_or(0, |r| r.1);
    let flat = late_max <= warm_rss + warm_rss / 4 + 4096;

    println!(
        "{} s, {} connections: {} requests ({:.0}/s), {} accepted, {} refused as expected",
        args.seconds,
        args.connections,
        tally.sent,
        tally.sent as f64 / args.seconds as f64,
        tally.accepted,
        tally.refused
    );
    // With the inbox, each distinct event or mail is handled once however
    // often it was accepted.
    let expected: BTreeMap<String, u64> = if inbox {
        tally.expected.keys().map(|k| (k.clone(), 1)).collect()
    } else {
        tally.expected.clone()
    };
    println!(
        "lines printed: {} (expected {}), distinct events/mails: {} (accepted {} times)",
        printed.values().sum::<u64>(),
        expected.values().sum::<u64>(),
        printed.len(),
        tally.expected.values().sum::<u64>(),
    );
    println!("resident memory: {warm_rss} KiB after warm-up, at most {late_max} KiB after, {final_rss} KiB at the end");
    let mut ok = true;
    for (what, list) in [
        ("5xx answers", &tally.server_errors),
        ("connection errors", &tally.connection_errors),
        ("unexpected statuses", &tally.wrong),
    ] {
        if !list.is_empty() {
            ok = false;
            println!("FAIL {} {what}, first: {}", list.len(), list[0]);
        }
    }
    if printed != expected || unreadable > 0 {
        ok = false;
        let missing = expected
            .iter()
            .filter(|(k, n)| printed.get(*k) != Some(n))
            .count();
        println!("FAIL printed lines differ from the accepted requests ({missing} keys differ, {unreadable} unreadable lines)");
    }
    if !flat {
        ok = false;
        println!("FAIL resident memory grew after warm-up");
    }
    if let Some(status) = exited {
        ok = false;
        println!("FAIL the receiver exited during the run ({status})");
    }
    if tally.accepted == 0 || tally.refused == 0 {
        ok = false;
        println!("FAIL nothing was accepted or nothing refused: the mix did not run");
    }
    if ok {
        println!("soak passed");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
