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
