//! The receiver's configuration file: every flag as a key, `[[source]]`
//! tables for several CMC accounts, flags and environment variables over
//! the file, unknown keys refused with their line, secrets never printed;
//! and a file with two sources served by the receiver over TCP.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cmc_receiver::{app, config, file, serve};
use cmc_webhook::test_util::CmcRequest;
use serde_json::Value;
use tokio::net::TcpListener;

/// The tests here read `CMC_*` variables (clap does): one at a time.
static ENV: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ENV.lock().unwrap_or_else(|e| e.into_inner())
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path.display().to_string()
}

fn load(args: &[&str]) -> Result<config::Args, String> {
    file::try_load_from(std::iter::once("cmc-receiver").chain(args.iter().copied()))
}

/// A batch created at 2023-01-25 14:03:06 console time.
fn body(api_key: &str) -> String {
    format!(
        r#"{{"api_key":"{api_key}","event_type":"deliveries","server_composition":"pro","event":{{"deliveries":[
        {{"created":"2023-01-25 14:03:06","status":"queued","to":"user@example.jp","messageId":"<m@x>"}}]}}}}"#
    )
}

#[tokio::test]
async fn a_file_with_two_sources_is_served_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = write(dir.path(), "sandbox.key", "sandbox-key-from-file\n");
    let file = write(
        dir.path(),
        "receiver.toml",
        &format!(
            r#"# Two CMC accounts on one receiver.
store = "none"
allow = ["127.0.0.0/8"]
body_limit = "1MiB"
format = "json"
max_connections = 8
time_zone = "UTC"

[[source]]
name = "production"
api_key = ["prod-key-1", "prod-key-2"]
time_zone = "Asia/Tokyo"

[[source]]
name = "sandbox"
api_key_file = "{key_file}"
basic_auth = "cmc:sandbox-pass"
path = "/mails/sandbox"
"#
        ),
    );
    // The environment is read while the arguments are.
    let args = {
        let _env = lock();
        load(&["--config", &file]).unwrap()
    };
    assert_eq!(args.body_limit, 1 << 20);
    assert_eq!(args.max_connections, 8);
    let debug = format!("{args:?}");
    for secret in ["prod-key-1", "sandbox-pass", "sandbox-key-from-file"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    let (options, _) = args.options().unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink_lines = lines.clone();
    let printer = app::Printer::new(
        &options,
        Arc::new(move |line| {
            sink_lines.lock().unwrap().push(line);
            true
        }),
    );
    let router = app::router(&options, app::Target::Print(printer)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve::serve(
        listener,
        router,
        serve::Limits::default(),
        std::future::pending(),
    ));
    let post = |path: &str, key: &str, basic: Option<(&str, &str)>| {
        let mut request = CmcRequest::raw("application/json", body(key)).uri(path);
        if let Some((user, password)) = basic {
            request = request.basic_auth(user, password);
        }
        let bytes = request.to_http1("test");
        async move { common::http::send_raw(addr, &bytes).await.status }
    };
    let sandbox = Some(("cmc", "sandbox-pass"));
    assert_eq!(post("/mails", "prod-key-2", None).await, 200);
    assert_eq!(
        post("/mails/sandbox", "sandbox-key-from-file", sandbox).await,
        200
    );
    // One account's key on the other's path, and the reverse.
    assert_eq!(post("/mails/sandbox", "prod-key-1", sandbox).await, 401);
    assert_eq!(post("/mails", "sandbox-key-from-file", sandbox).await, 401);
    // The sandbox without its BASIC credentials.
    assert_eq!(
        post("/mails/sandbox", "sandbox-key-from-file", None).await,
        401
    );

    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = lines.lock().unwrap().clone();
    let events: Vec<Value> = lines
        .iter()
        .flat_map(|l| l.lines())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{lines:?}");
    // Each line names its source, with `created` read in its zone:
    // Tokyo for production, the receiver's UTC for the sandbox.
    assert_eq!(
        (events[0]["source"].as_str(), events[0]["at"].as_str()),
        (Some("production"), Some("2023-01-25T05:03:06Z"))
    );
    assert_eq!(
        (events[1]["source"].as_str(), events[1]["at"].as_str()),
        (Some("sandbox"), Some("2023-01-25T14:03:06Z"))
    );
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let _env = lock();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "receiver.toml",
        "body_limit = \"1MiB\"\nconcurrency = 3\nretain = \"7d\"\nreport-only = true\napi_key = [\"file-key\"]\nstore_file = \"/nowhere\"\n",
    );
    let from_file = load(&["--config", &file]).unwrap();
    assert_eq!(
        (
            from_file.body_limit,
            from_file.concurrency,
            from_file.report_only
        ),
        (1 << 20, 3, true)
    );
    assert_eq!(from_file.retain, Duration::from_secs(7 * 86_400));
    assert_eq!(from_file.api_key.len(), 1);
    // The flag wins over the file.
    let flag = load(&["--config", &file, "--body-limit", "2MiB"]).unwrap();
    assert_eq!((flag.body_limit, flag.concurrency), (2 << 20, 3));
    // The environment wins over the file, the flag over both; a
    // repeatable flag's values replace the file's, not add to them.
    std::env::set_var("CMC_CONCURRENCY", "5");
    std::env::set_var("CMC_API_KEY", "env-key-1,env-key-2");
    // `store` in the environment overrides the file's `store_file`, with
    // which it conflicts.
    std::env::set_var("CMC_STORE", "none");
    let env = load(&["--config", &file]);
    let both = load(&["--config", &file, "--concurrency", "9"]);
    // CMC_CONFIG names the file too.
    std::env::set_var("CMC_CONFIG", &file);
    let by_env = load(&[]);
    for name in ["CMC_CONCURRENCY", "CMC_API_KEY", "CMC_STORE", "CMC_CONFIG"] {
        std::env::remove_var(name);
    }
    let env = env.unwrap();
    assert_eq!((env.concurrency, env.api_key.len()), (5, 2));
    assert_eq!(env.store().unwrap(), "none");
    assert_eq!(both.unwrap().concurrency, 9);
    assert_eq!(by_env.unwrap().concurrency, 5);
}

#[test]
fn unknown_keys_and_bad_values_are_refused_with_their_line_and_no_secret() {
    let _env = lock();
    let dir = tempfile::tempdir().unwrap();
    let refused = |text: &str| {
        let file = write(dir.path(), "bad.toml", text);
        load(&["--config", &file]).unwrap_err()
    };
    let e = refused("body_limit = \"1MiB\"\n\nbody_limt = \"2MiB\"\n");
    assert!(
        e.contains("bad.toml:3:") && e.contains("unknown key `body_limt`"),
        "{e}"
    );
    let e =
        refused("[[source]]\nname = \"a\"\napi_key = \"k\"\npath = \"/a\"\ntimezone = \"UTC\"\n");
    assert!(e.contains("bad.toml:5:") && e.contains("timezone"), "{e}");
    let e = refused("concurrency = 0\n");
    assert!(
        e.contains("bad.toml:1:") && e.contains("concurrency"),
        "{e}"
    );
    let e = refused("listen = \"127.0.0.1:8080\"\nlisten-x = 1\n");
    assert!(e.contains(":2:") && e.contains("listen-x"), "{e}");
    let e = refused("body_limit = \"1MiB\"\nbody-limit = \"2MiB\"\n");
    assert!(e.contains(":2:") && e.contains("twice"), "{e}");
    let e = refused("listen = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n");
    assert!(e.contains(":1:") && e.contains("not an array"), "{e}");
    let e = refused("report_only = \"yes\"\n");
    assert!(e.contains("switch"), "{e}");
    // Secrets are not repeated, whatever goes wrong around them.
    for text in [
        "api_key = \"s3cret-one\n",
        "api_key = [\"s3cret-one,s3cret-two\"]\n",
        "[[source]]\nname = \"a\"\napi_key = { x = \"s3cret-one\" }\n",
        "[[source]]\nname = 5\napi_key = \"s3cret-one\"\n",
    ] {
        let e = refused(text);
        assert!(!e.contains("s3cret"), "{text:?}: {e}");
        assert!(e.contains("bad.toml:"), "{text:?}: {e}");
    }
    // A source is checked when the options are built.
    let file = write(
        dir.path(),
        "nokey.toml",
        "[[source]]\nname = \"a\"\ntime_zone = \"Mars/Olympus\"\napi_key = \"k\"\n",
    );
    let e = load(&["--config", &file]).unwrap().options().unwrap_err();
    assert!(e.contains("`a`") && e.contains("Mars/Olympus"), "{e}");
    let file = write(dir.path(), "nocreds.toml", "[[source]]\nname = \"a\"\n");
    let e = load(&["--config", &file]).unwrap().options().unwrap_err();
    assert!(e.contains("no api_key"), "{e}");
    // Two sources that cannot be told apart: the gate refuses them.
    let file = write(
        dir.path(),
        "same.toml",
        "[[source]]\nname = \"a\"\napi_key = \"k\"\n[[source]]\nname = \"b\"\napi_key = \"k\"\n",
    );
    let (options, _) = load(&["--config", &file]).unwrap().options().unwrap();
    let e = app::layer(&options).unwrap_err().to_string();
    assert!(
        e.contains("`a`") && e.contains("`b`") && !e.contains("\"k\""),
        "{e}"
    );
    assert!(load(&["--config", "/nonexistent/receiver.toml"]).is_err());
}

#[test]
fn the_example_file_parses_and_builds_a_gate() {
    let _env = lock();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/receiver/cmc-receiver.example.toml"
    );
    let dir = tempfile::tempdir().unwrap();
    // Its secret files, where the example says they are, are not here:
    // the file is read with them pointed at temporary ones.
    let text = std::fs::read_to_string(path).unwrap();
    let key = write(dir.path(), "key", "example-key\n");
    let url = write(dir.path(), "url", "none\n");
    let relay_secrets = write(
        dir.path(),
        "relay-secrets",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
    );
    let text = text
        .replace("/etc/cmc-receiver/production.key", &key)
        .replace("/etc/cmc-receiver/store-url", &url)
        .replace("/etc/cmc-receiver/relay-secrets", &relay_secrets);
    let file = write(dir.path(), "example.toml", &text);
    let args = load(&["--config", &file]).unwrap();
    let (options, _) = args.options().unwrap();
    let layer = app::layer(&options).unwrap();
    assert!(layer.sources().len() >= 2, "{layer:?}");
    // The relay's keys: its URL, and its secrets from the file.
    let relay = args.relay.options(|_| None).unwrap().unwrap();
    assert_eq!(relay.url, "https://app.internal.example.jp/cmc-webhooks");
    assert_eq!(relay.secrets.len(), 1);
}

/// With a store, the worker prints each stored event's `created` in the
/// zone of the configured source its row names; a row of a source this
/// configuration no longer has is read in the default source's zone, with
/// a note. The inspection subcommands take `--source`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_rows_are_printed_in_their_sources_zone() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("inbox.sqlite3");
    let file = write(
        dir.path(),
        "receiver.toml",
        &format!(
            r#"store = "sqlite:{}"
allow = ["127.0.0.0/8"]
time_zone = "UTC"

[[source]]
name = "production"
api_key = "prod-key"
time_zone = "Asia/Tokyo"

[[source]]
name = "newyork"
api_key = "ny-key"
time_zone = "America/New_York"
path = "/mails/ny"
"#,
            store.display()
        ),
    );
    let args = {
        let _env = lock();
        load(&["--config", &file]).unwrap()
    };
    let (options, _) = args.options().unwrap();
    let inbox = cmc_webhook::inbox::Inbox::sqlite(&store)
        .open()
        .await
        .unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink_lines = lines.clone();
    let printer = app::Printer::new(
        &options,
        Arc::new(move |line| {
            sink_lines.lock().unwrap().push(line);
            true
        }),
    );
    let router = app::router(&options, app::Target::Inbox(inbox.clone())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve::serve(
        listener,
        router,
        serve::Limits::default(),
        std::future::pending(),
    ));
    let post = |path: &str, body: String| {
        let bytes = CmcRequest::raw("application/json", body)
            .uri(path)
            .to_http1("test");
        async move { common::http::send_raw(addr, &bytes).await.status }
    };
    let event = |key: &str, id: &str| {
        format!(
            r#"{{"api_key":"{key}","event_type":"deliveries","server_composition":"pro","event":{{"deliveries":[
            {{"created":"2023-01-25 14:03:06","status":"queued","to":"user@example.jp","messageId":"{id}"}}]}}}}"#
        )
    };
    assert_eq!(post("/mails", event("prod-key", "<p@x>")).await, 200);
    assert_eq!(post("/mails/ny", event("ny-key", "<n@x>")).await, 200);
    // A row stored under a source since removed from the configuration.
    let retired = cmc_webhook::Source::new("retired", jiff::tz::TimeZone::UTC, None);
    let webhook =
        cmc_webhook::Webhook::parse("application/json", bytes::Bytes::from(event("k", "<r@x>")))
            .unwrap();
    inbox
        .store_sourced(cmc_webhook::Sourced(retired, webhook), None)
        .await
        .unwrap();

    // A stored mail of a named source names it too.
    let production = cmc_webhook::Source::new("production", jiff::tz::TimeZone::UTC, None);
    inbox
        .store_sourced(
            cmc_webhook::Sourced(
                production,
                cmc_webhook::Webhook::Inbound(cmc_webhook::test_util::sample_inbound(false)),
            ),
            None,
        )
        .await
        .unwrap();
    let worker = inbox.worker(move |job| printer.clone().handle(job)).spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while lines.lock().unwrap().len() < 4 {
        assert!(std::time::Instant::now() < deadline, "not printed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let lines = lines.lock().unwrap().clone();
    let (mails, events): (Vec<&String>, Vec<&String>) = lines
        .iter()
        .partition(|l| l.contains(r#""type":"inbound""#));
    assert_eq!(mails.len(), 1, "{lines:?}");
    let mail: Value = serde_json::from_str(mails[0]).unwrap();
    assert_eq!(mail["source"], "production", "{mail}");
    let mut printed: Vec<(String, String, bool)> = events
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["source"].as_str().unwrap_or("-").to_owned(),
                v["at"].as_str().unwrap().to_owned(),
                v["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("not configured")),
            )
        })
        .collect();
    printed.sort();
    assert_eq!(
        printed,
        [
            // New York is -05:00 in January.
            (
                "newyork".to_owned(),
                "2023-01-25T19:03:06Z".to_owned(),
                false
            ),
            (
                "production".to_owned(),
                "2023-01-25T05:03:06Z".to_owned(),
                false
            ),
            // Unknown: the default source's zone (the file's UTC), noted.
            (
                "retired".to_owned(),
                "2023-01-25T14:03:06Z".to_owned(),
                true
            ),
        ]
    );
    inbox.close().await;

    // The inspection subcommands take --source.
    let _env = lock();
    for args in [
        &["counts", "--source", "production"][..],
        &["dead", "--source", "production"],
        &["replay", "--dead", "--source", "production"],
        &["history", "<p@x>", "--source", "production"],
    ] {
        let parsed = load(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert!(format!("{parsed:?}").contains("\"production\""), "{args:?}");
    }
}

/// Serves the receiver the arguments describe; its address and the lines
/// it printed.
async fn serve_args(args: &config::Args) -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let (options, _) = args.options().unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink_lines = lines.clone();
    let printer = app::Printer::new(
        &options,
        Arc::new(move |line| {
            sink_lines.lock().unwrap().push(line);
            true
        }),
    );
    let router = app::router(&options, app::Target::Print(printer)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve::serve(
        listener,
        router,
        serve::Limits::default(),
        std::future::pending(),
    ));
    (addr, lines)
}

/// The status of a webhook posted to `addr` over TCP with `headers`.
async fn status_with(addr: std::net::SocketAddr, headers: &[(&str, &str)]) -> u16 {
    let mut request = CmcRequest::raw("application/json", body("k")).uri("/mails");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    common::http::send_raw(addr, &request.to_http1("test"))
        .await
        .status
}

#[tokio::test]
async fn a_client_ip_source_from_the_file_decides_the_allowlist_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    // Loopback stands for CloudFront: the test connects from it.
    let trusted = write(
        dir.path(),
        "cloudfront.toml",
        r#"store = "none"
allow = ["203.0.113.0/24", "2001:db8:cafe::/48"]
trust_proxy = ["127.0.0.1/32"]
client_ip_source = "CloudFront-Viewer-Address"
api_key = "k"
"#,
    );
    let args = {
        let _env = lock();
        load(&["--config", &trusted]).unwrap()
    };
    assert_eq!(
        args.client_ip_source,
        Some(cmc_webhook::client_ip::ClientIpSource::CloudFrontViewerAddress)
    );
    let (addr, lines) = serve_args(&args).await;
    let cf = "cloudfront-viewer-address";
    assert_eq!(status_with(addr, &[(cf, "203.0.113.9:46532")]).await, 200);
    assert_eq!(
        status_with(addr, &[(cf, "2001:db8:cafe::9:46532")]).await,
        200
    );
    assert_eq!(
        status_with(addr, &[(cf, "[2001:db8:cafe::9]:443")]).await,
        200
    );
    // Outside the list, though the peer (the proxy) is trusted.
    assert_eq!(status_with(addr, &[(cf, "198.51.100.1:46532")]).await, 403);
    // A client-written X-Forwarded-For decides nothing.
    assert_eq!(
        status_with(
            addr,
            &[
                ("x-forwarded-for", "203.0.113.9"),
                (cf, "198.51.100.1:46532")
            ]
        )
        .await,
        403
    );
    // Missing, written twice, without its port, garbage: 400.
    assert_eq!(status_with(addr, &[]).await, 400);
    assert_eq!(
        status_with(addr, &[(cf, "203.0.113.9:1"), (cf, "198.51.100.1:1")]).await,
        400
    );
    assert_eq!(status_with(addr, &[(cf, "203.0.113.9")]).await, 400);
    assert_eq!(status_with(addr, &[(cf, "203.0.113.9:99999")]).await, 400);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Each printed with the client the header named.
    let clients: Vec<String> = lines
        .lock()
        .unwrap()
        .iter()
        .flat_map(|l| l.lines().map(str::to_owned).collect::<Vec<_>>())
        .map(|l| serde_json::from_str::<Value>(&l).unwrap()["client"].to_string())
        .collect();
    assert_eq!(
        clients,
        [
            r#""203.0.113.9""#,
            r#""2001:db8:cafe::9""#,
            r#""2001:db8:cafe::9""#
        ]
    );

    // The same header from a peer that is not a trusted proxy: the peer
    // (loopback, not allowed) is the client, whatever the header says.
    let untrusted = write(
        dir.path(),
        "untrusted.toml",
        r#"store = "none"
allow = ["203.0.113.0/24"]
trust_proxy = ["10.0.0.0/8"]
client_ip_source = "cf-connecting-ip"
api_key = "k"
"#,
    );
    let args = {
        let _env = lock();
        load(&["--config", &untrusted]).unwrap()
    };
    let (addr, _) = serve_args(&args).await;
    let spoof = "cf-connecting-ip";
    assert_eq!(status_with(addr, &[(spoof, "203.0.113.9")]).await, 403);
    assert_eq!(
        status_with(addr, &[(spoof, "203.0.113.9"), (spoof, "x")]).await,
        403
    );
}

#[test]
fn a_header_client_ip_source_needs_a_trusted_proxy() {
    let _env = lock();
    for name in [
        "X-Real-IP",
        "cf-connecting-ip",
        "x-forwarded-for",
        "fly-client-ip",
    ] {
        let e = load(&["--client-ip-source", name])
            .unwrap()
            .options()
            .unwrap_err();
        assert!(
            e.contains("--trust-proxy") && e.contains(&name.to_lowercase()),
            "{e}"
        );
    }
    let ok = load(&[
        "--client-ip-source",
        "true-client-ip",
        "--trust-proxy",
        "10.0.0.0/8",
    ]);
    let (options, _) = ok.unwrap().options().unwrap();
    assert_eq!(
        app::layer(&options).unwrap().client_ip_source(),
        cmc_webhook::client_ip::ClientIpSource::TrueClientIp
    );
    // No proxy in front: the peer needs none.
    assert!(load(&["--client-ip-source", "peer"])
        .unwrap()
        .options()
        .is_ok());
    // An unknown name is refused by the command line, naming the choices.
    let e = load(&["--client-ip-source", "x-client-ip"]).unwrap_err();
    assert!(
        e.contains("x-client-ip") && e.contains("cloudfront-viewer-address"),
        "{e}"
    );
    // The older flag alone still works; a contradiction is refused.
    let (options, _) = load(&["--forwarded-header", "forwarded"])
        .unwrap()
        .options()
        .unwrap();
    assert_eq!(
        app::layer(&options).unwrap().client_ip_source(),
        cmc_webhook::client_ip::ClientIpSource::Forwarded
    );
    let e = load(&[
        "--forwarded-header",
        "forwarded",
        "--client-ip-source",
        "x-real-ip",
        "--trust-proxy",
        "10.0.0.0/8",
    ])
    .unwrap()
    .options()
    .unwrap_err();
    assert!(e.contains("disagree"), "{e}");
    // From the environment.
    std::env::set_var("CMC_CLIENT_IP_SOURCE", "Fly-Client-IP");
    let from_env = load(&["--trust-proxy", "172.16.0.0/12"]);
    std::env::remove_var("CMC_CLIENT_IP_SOURCE");
    assert_eq!(
        from_env.unwrap().client_ip_source,
        Some(cmc_webhook::client_ip::ClientIpSource::FlyClientIp)
    );
}
