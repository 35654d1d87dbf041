//! Several CMC accounts (sources) on one layer: each request gets its
//! source, by path or by credentials; `created` is read in the source's
//! zone; one source's credentials never admit a request to another's
//! path; configurations that could not tell two sources apart are
//! refused when the layer is built; credentials never reach a log line.

mod common;

use axum::body::Body;
use axum::routing::post;
use axum::{Extension, Router};
use cmc_webhook::test_util::CmcRequest;
use cmc_webhook::{ConfigError, EventBatch, Source, SourceBuilder, Sourced, Webhook, WebhookLayer};
use common::logs::Captured;
use tower::ServiceExt;

const PEER: &str = "203.0.113.5:4000";

/// A deliveries batch created at 2023-01-25 14:03:06 (console time),
/// with `api_key` when given.
fn body(api_key: Option<&str>) -> String {
    let key = api_key.map_or(String::new(), |k| format!(r#""api_key":"{k}","#));
    format!(
        r#"{{{key}"event_type":"deliveries","server_composition":"pro","event":{{"deliveries":[
        {{"created":"2023-01-25 14:03:06","status":"queued","to":"user@example.jp"}}]}}}}"#
    )
}

fn request(path: &str, api_key: Option<&str>) -> CmcRequest {
    CmcRequest::raw("application/json", body(api_key))
        .uri(path)
        .peer(PEER.parse().unwrap())
}

/// Answers `source-name created-at-instant`.
async fn on_events(Sourced(source, batch): Sourced<EventBatch>) -> String {
    let at = source.created_at(&batch.events[0]).unwrap();
    format!("{} {at}", source.name())
}

async fn call(app: &Router, request: CmcRequest) -> (u16, String) {
    let response = app
        .clone()
        .oneshot(request.into_request().map(Body::new))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn tz(name: &str) -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get(name).unwrap()
}

/// Production on /cmc/prod (api_key, Tokyo), sandbox on /cmc/sandbox
/// (BASIC, UTC), and two brands on /cmc told apart by their keys (one also
/// by BASIC), in New York and Paris.
fn layer() -> WebhookLayer {
    WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .source(
            SourceBuilder::new("prod")
                .api_key("prod-key")
                .path("/cmc/prod"),
        )
        .source(
            SourceBuilder::new("sandbox")
                .basic_auth("sandbox", "sandbox-pass")
                .time_zone(jiff::tz::TimeZone::UTC)
                .path("/cmc/sandbox"),
        )
        .source(
            SourceBuilder::new("brand-a")
                .api_key("key-a")
                .time_zone(tz("America/New_York")),
        )
        .source(
            SourceBuilder::new("brand-b")
                .api_keys(["key-b", "key-b-next"])
                .basic_auth("brand-b", "b-pass")
                .time_zone(tz("Europe/Paris")),
        )
        .build()
        .unwrap()
}

fn app() -> Router {
    let layer = layer();
    Router::new()
        .route("/cmc/prod", post(on_events))
        .route("/cmc/sandbox", post(on_events))
        .route("/cmc", post(on_events))
        .layer(layer)
}

#[tokio::test]
async fn each_request_gets_its_source_and_its_zone() {
    let app = app();
    // By path, with the source's key: Tokyo is +09:00.
    assert_eq!(
        call(&app, request("/cmc/prod", Some("prod-key"))).await,
        (200, "prod 2023-01-25T05:03:06Z".to_owned())
    );
    // By path, with BASIC only: UTC.
    assert_eq!(
        call(
            &app,
            request("/cmc/sandbox", None).basic_auth("sandbox", "sandbox-pass")
        )
        .await,
        (200, "sandbox 2023-01-25T14:03:06Z".to_owned())
    );
    // No path of its own: the body's key decides. New York is -05:00 in
    // January.
    assert_eq!(
        call(&app, request("/cmc", Some("key-a"))).await,
        (200, "brand-a 2023-01-25T19:03:06Z".to_owned())
    );
    // BASIC and api_key mixed: both are required (Paris is +01:00), and
    // either key of the rotation works.
    for key in ["key-b", "key-b-next"] {
        assert_eq!(
            call(
                &app,
                request("/cmc", Some(key)).basic_auth("brand-b", "b-pass")
            )
            .await,
            (200, "brand-b 2023-01-25T13:03:06Z".to_owned())
        );
    }
    assert_eq!(call(&app, request("/cmc", Some("key-b"))).await.0, 401);
    // brand-a requires its key only: an Authorization header it does not
    // ask for changes nothing, and the key names brand-a.
    assert_eq!(
        call(
            &app,
            request("/cmc", Some("key-a")).basic_auth("brand-b", "b-pass")
        )
        .await
        .1,
        "brand-a 2023-01-25T19:03:06Z"
    );
}

#[tokio::test]
async fn one_sources_credentials_never_admit_a_body_to_anothers_path() {
    let app = app();
    // prod's key on the sandbox's path, and with it brand-a's.
    for key in ["prod-key", "key-a"] {
        assert_eq!(
            call(
                &app,
                request("/cmc/sandbox", Some(key)).basic_auth("sandbox", "wrong")
            )
            .await
            .0,
            401
        );
    }
    // The sandbox's BASIC on prod's path, without prod's key.
    assert_eq!(
        call(
            &app,
            request("/cmc/prod", None).basic_auth("sandbox", "sandbox-pass")
        )
        .await
        .0,
        401
    );
    // Brands' keys on prod's path, and prod's key on the shared path.
    assert_eq!(call(&app, request("/cmc/prod", Some("key-a"))).await.0, 401);
    assert_eq!(call(&app, request("/cmc", Some("prod-key"))).await.0, 401);
    // A body carrying two valid keys of two sources names no one account.
    let two_keys = r#"{"api_key":"key-a","api_key":"key-b","event_type":"deliveries","server_composition":"pro","event":{"deliveries":[]}}"#;
    let request = CmcRequest::raw("application/json", two_keys)
        .uri("/cmc")
        .peer(PEER.parse().unwrap())
        .basic_auth("brand-b", "b-pass");
    assert_eq!(call(&app, request).await.0, 401);
}

#[tokio::test]
async fn a_source_decided_by_the_head_is_in_the_extensions() {
    async fn handler(Extension(source): Extension<Source>, _: Webhook) -> String {
        source.name().to_owned()
    }
    let app = Router::new()
        .route("/cmc/sandbox", post(handler))
        .layer(layer());
    assert_eq!(
        call(
            &app,
            request("/cmc/sandbox", None).basic_auth("sandbox", "sandbox-pass")
        )
        .await,
        (200, "sandbox".to_owned())
    );
}

#[tokio::test]
async fn a_source_with_its_own_allowlist_ignores_the_shared_one() {
    let layer = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .source(SourceBuilder::new("shared").api_key("k1"))
        .source(
            SourceBuilder::new("own")
                .api_key("k2")
                .allow_cidrs("198.51.100.0/24")
                .unwrap(),
        )
        .build()
        .unwrap();
    let app = Router::new().route("/", post(on_events)).layer(layer);
    let from = |peer: &str, key: &str| {
        CmcRequest::raw("application/json", body(Some(key))).peer(peer.parse().unwrap())
    };
    assert_eq!(call(&app, from("203.0.113.5:1", "k1")).await.0, 200);
    assert_eq!(call(&app, from("198.51.100.5:1", "k2")).await.0, 200);
    // Each source's key from the other's network.
    assert_eq!(call(&app, from("198.51.100.5:1", "k1")).await.0, 401);
    assert_eq!(call(&app, from("203.0.113.5:1", "k2")).await.0, 401);
    // Neither network.
    assert_eq!(call(&app, from("192.0.2.1:1", "k1")).await.0, 403);
}

#[tokio::test]
async fn the_one_account_builder_is_the_default_source() {
    let layer = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .api_key("only-key")
        .build()
        .unwrap();
    assert_eq!(layer.sources().len(), 1);
    assert!(layer.sources()[0].is_default());
    let app = Router::new()
        .route("/anything", post(on_events))
        .layer(layer);
    assert_eq!(
        call(&app, request("/anything", Some("only-key"))).await,
        (200, "default 2023-01-25T05:03:06Z".to_owned())
    );
    assert_eq!(call(&app, request("/anything", Some("other"))).await.0, 401);
    // The builder's credentials beside named sources: one more source.
    let layer = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .api_key("default-key")
        .time_zone(jiff::tz::TimeZone::UTC)
        .source(SourceBuilder::new("other").api_key("other-key"))
        .build()
        .unwrap();
    let names: Vec<String> = layer
        .sources()
        .iter()
        .map(|s| s.name().to_owned())
        .collect();
    assert_eq!(names, ["default", "other"]);
    // The layer's zone is that of named sources setting none.
    assert_eq!(layer.sources()[1].time_zone(), &jiff::tz::TimeZone::UTC);
    let app = Router::new().route("/", post(on_events)).layer(layer);
    let at = |key| CmcRequest::raw("application/json", body(Some(key))).peer(PEER.parse().unwrap());
    assert_eq!(
        call(&app, at("default-key")).await.1,
        "default 2023-01-25T14:03:06Z"
    );
    assert_eq!(
        call(&app, at("other-key")).await.1,
        "other 2023-01-25T14:03:06Z"
    );
}

#[test]
fn configurations_that_cannot_tell_sources_apart_are_refused() {
    let base = || {
        WebhookLayer::builder()
            .allow_cidrs("203.0.113.0/24")
            .unwrap()
    };
    let ambiguous = |a: SourceBuilder, b: SourceBuilder| {
        matches!(
            base().source(a).source(b).build(),
            Err(ConfigError::AmbiguousSources(..))
        )
    };
    let s = SourceBuilder::new;
    // One key shared by two sources on one path.
    assert!(ambiguous(s("a").api_key("k"), s("b").api_keys(["x", "k"])));
    // BASIC for one, a key for the other: a request could carry both.
    assert!(ambiguous(s("a").basic_auth("u", "p"), s("b").api_key("k")));
    // A source without credentials matches anything.
    assert!(ambiguous(s("a"), s("b").api_key("k")));
    // The builder's own key against a named source's.
    assert!(matches!(
        base().api_key("k").source(s("b").api_key("k")).build(),
        Err(ConfigError::AmbiguousSources(a, b)) if a == "default" && b == "b"
    ));
    // Told apart: by keys, by BASIC, by path.
    assert!(!ambiguous(s("a").api_key("k1"), s("b").api_key("k2")));
    assert!(!ambiguous(
        s("a").basic_auth("u", "p1").api_key("k"),
        s("b").basic_auth("u", "p2").api_key("k")
    ));
    assert!(!ambiguous(
        s("a").api_key("k").path("/a"),
        s("b").api_key("k")
    ));
    // Names and paths.
    let err = |b: SourceBuilder| {
        base()
            .source(s("a").api_key("k1"))
            .source(b)
            .build()
            .unwrap_err()
    };
    assert_eq!(
        err(s("a").api_key("k2")),
        ConfigError::DuplicateSource("a".into())
    );
    assert!(matches!(
        err(s("a b").api_key("k2")),
        ConfigError::SourceName(_)
    ));
    assert!(matches!(
        err(s("").api_key("k2")),
        ConfigError::SourceName(_)
    ));
    assert!(matches!(
        err(s("b").api_key("k2").path("cmc")),
        ConfigError::SourcePath(_)
    ));
    assert!(matches!(
        err(s("b").api_key("k2").path("/x?y")),
        ConfigError::SourcePath(_)
    ));
    let dup = base()
        .source(s("a").api_key("k1").path("/p"))
        .source(s("b").api_key("k2").path("/p"))
        .build()
        .unwrap_err();
    assert_eq!(dup, ConfigError::DuplicatePath("/p".into()));
    // A source's credentials are checked as the builder's are.
    assert_eq!(err(s("b").api_key("k2\r")), ConfigError::SpaceAroundApiKey);
    assert!(matches!(
        err(s("b").basic_auth("u:v", "p")),
        ConfigError::ColonInUser(_)
    ));
    // Every source has its own list: no shared one is needed.
    assert!(WebhookLayer::builder()
        .source(s("a").api_key("k1").allow_cidrs("192.0.2.0/24").unwrap())
        .build()
        .is_ok());
    assert_eq!(
        WebhookLayer::builder()
            .source(s("a").api_key("k1"))
            .build()
            .unwrap_err(),
        ConfigError::NoAllowlist
    );
}

#[tokio::test(flavor = "current_thread")]
async fn refusals_name_the_source_tried_and_never_a_credential() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let layer = layer();
    let debug = format!("{layer:?}");
    let app = Router::new()
        .route("/cmc/prod", post(on_events))
        .route("/cmc", post(on_events))
        .layer(layer);
    assert_eq!(call(&app, request("/cmc/prod", Some("key-a"))).await.0, 401);
    assert_eq!(
        call(
            &app,
            request("/cmc", None).basic_auth("brand-b", "wrong-pass")
        )
        .await
        .0,
        401
    );
    drop(guard);
    let logs = captured.text();
    let refusals: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("refused CMC webhook request"))
        .collect();
    assert_eq!(refusals.len(), 2, "{logs}");
    assert!(refusals[0].contains("cmc.source=prod"), "{}", refusals[0]);
    assert!(
        refusals[1].contains("cmc.source=brand-a|brand-b"),
        "{}",
        refusals[1]
    );
    for secret in [
        "prod-key",
        "key-a",
        "key-b",
        "b-pass",
        "sandbox-pass",
        "wrong-pass",
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs: {logs}");
        assert!(!debug.contains(secret), "{secret} in Debug: {debug}");
    }
    assert!(
        debug.contains("brand-a") && debug.contains("America/New_York"),
        "{debug}"
    );
}

/// The request, event and mail counters carry the source: a configured
/// name, decided by path, by BASIC or by the body's key; empty for a
/// refusal no single source was tried for.
#[cfg(feature = "metrics")]
#[test]
fn metrics_are_labelled_with_configured_source_names_only() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    // A subscriber of its own: a callsite first reached on a thread with
    // none could be cached as disabled while the logging test runs.
    let _logs = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .finish(),
    );
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let app = app();
            assert_eq!(
                call(&app, request("/cmc/prod", Some("prod-key"))).await.0,
                200
            );
            assert_eq!(call(&app, request("/cmc", Some("key-a"))).await.0, 200);
            assert_eq!(call(&app, request("/cmc/prod", Some("key-a"))).await.0, 401);
            // An unknown key on the shared path: without brand-b's BASIC,
            // only brand-a was left to try; with it, both were.
            assert_eq!(call(&app, request("/cmc", Some("nobody"))).await.0, 401);
            let both = request("/cmc", Some("nobody")).basic_auth("brand-b", "b-pass");
            assert_eq!(call(&app, both).await.0, 401);
            // A path no source has, from a stranger's address.
            let stranger = request("/cmc/evil", Some("x")).peer("192.0.2.1:1".parse().unwrap());
            assert_eq!(call(&app, stranger).await.0, 403);
        });
    });
    let mut seen: Vec<String> = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let DebugValue::Counter(n) = value else {
            continue;
        };
        let key = key.key();
        if !key.name().starts_with("cmc_webhook_requests")
            && !key.name().starts_with("cmc_webhook_events")
        {
            continue;
        }
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        seen.push(format!("{}{{{}}} {n}", key.name(), labels.join(",")));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "cmc_webhook_events_total{source=brand-a,status=queued,type=deliveries} 1",
            "cmc_webhook_events_total{source=prod,status=queued,type=deliveries} 1",
            "cmc_webhook_requests_total{outcome=accepted,reason=,source=brand-a} 1",
            "cmc_webhook_requests_total{outcome=accepted,reason=,source=prod} 1",
            "cmc_webhook_requests_total{outcome=refused,reason=bad_api_key,source=brand-a} 1",
            "cmc_webhook_requests_total{outcome=refused,reason=bad_api_key,source=prod} 1",
            "cmc_webhook_requests_total{outcome=refused,reason=bad_api_key,source=} 1",
            "cmc_webhook_requests_total{outcome=refused,reason=client_not_allowed,source=} 1",
        ]
    );
}

#[tokio::test]
async fn a_single_source_with_a_path_refuses_other_paths() {
    let layer = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .source(SourceBuilder::new("only").api_key("k").path("/cmc/only"))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/cmc/only", post(on_events))
        .route("/cmc/other", post(on_events))
        .layer(layer);
    assert_eq!(
        call(&app, request("/cmc/only", Some("k"))).await,
        (200, "only 2023-01-25T05:03:06Z".to_owned())
    );
    assert_eq!(call(&app, request("/cmc/other", Some("k"))).await.0, 401);
    // Sixty-five sources are more than one layer serves.
    let many = (0..65).fold(
        WebhookLayer::builder()
            .allow_cidrs("203.0.113.0/24")
            .unwrap(),
        |b, i| b.source(SourceBuilder::new(format!("s{i}")).api_key(format!("k{i}"))),
    );
    assert_eq!(many.build().unwrap_err(), ConfigError::TooManySources);
}

/// Two sources served through the layer into the inbox, over TCP, on a
/// real SQLite file and (with `CMC_POSTGRES_URL`) a real PostgreSQL
/// server: each row records its source, and is read and scoped by it.
#[cfg(feature = "sqlite")]
mod stored {
    use std::collections::HashMap;
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use axum::routing::post_service;
    use axum::Router;
    use cmc_webhook::inbox::{Filter, Inbox, InboxBuilder, Item, Job, StoreOptions};
    use cmc_webhook::{Source, SourceBuilder, WebhookLayer};

    use super::{common, tz};

    /// Tokyo on its own path (its key), New York on the shared path (its
    /// key decides).
    fn layer() -> WebhookLayer {
        WebhookLayer::builder()
            .allow_cidrs("127.0.0.0/8")
            .unwrap()
            .source(
                SourceBuilder::new("tokyo")
                    .api_key("tokyo-key")
                    .time_zone(tz("Asia/Tokyo"))
                    .path("/cmc/tokyo"),
            )
            .source(
                SourceBuilder::new("ny")
                    .api_key("ny-key")
                    .time_zone(tz("America/New_York")),
            )
            .build()
            .unwrap()
    }

    fn builder(url: &str) -> InboxBuilder<StoreOptions> {
        match url.strip_prefix("sqlite:") {
            Some(path) => Inbox::sqlite(path).into(),
            #[cfg(feature = "postgres")]
            None => Inbox::postgres(url).into(),
            #[cfg(not(feature = "postgres"))]
            None => unreachable!("a PostgreSQL store without the feature"),
        }
    }

    /// A bounce of `message_id` created 2023-01-25 14:03:06 (console time).
    fn bounce(api_key: &str, message_id: &str, to: &str) -> Vec<u8> {
        format!(
            r#"{{"api_key":"{api_key}","event_type":"bounces","server_composition":"pro","event":{{"bounces":[
            {{"created":"2023-01-25 14:03:06","status":"2015","to":"{to}","messageId":"{message_id}"}}]}}}}"#
        )
        .into_bytes()
    }

    async fn send(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> u16 {
        common::http::send_raw(
            addr,
            &common::http::post(path, &["Content-Type: application/json"], body),
        )
        .await
        .status
    }

    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_row_carries_its_source_and_is_scoped_by_it() {
        let dir = tempfile::tempdir().unwrap();
        for url in common::inbox::stores(dir.path(), "sourced", "sources", "sources").await {
            let inbox = builder(&url).open().await.unwrap();
            let layer = layer();
            let zones: HashMap<String, Source> = layer
                .sources()
                .into_iter()
                .map(|s| (s.name().to_owned(), s))
                .collect();
            let app = Router::new()
                .route("/cmc/tokyo", post_service(inbox.receive()))
                .route("/cmc", post_service(inbox.receive()))
                .layer(layer);
            let addr = common::http::serve("127.0.0.1:0", app).await;

            assert_eq!(
                send(
                    addr,
                    "/cmc/tokyo",
                    &bounce("tokyo-key", "<t@x>", "t@example.jp")
                )
                .await,
                200,
                "{url}"
            );
            assert_eq!(
                send(addr, "/cmc", &bounce("ny-key", "<n@x>", "n@example.jp")).await,
                200,
                "{url}"
            );
            // One source's key on the other's path: refused at the gate,
            // and nothing is stored.
            assert_eq!(
                send(
                    addr,
                    "/cmc/tokyo",
                    &bounce("ny-key", "<x1@x>", "x@example.jp")
                )
                .await,
                401
            );
            assert_eq!(
                send(addr, "/cmc", &bounce("tokyo-key", "<x2@x>", "x@example.jp")).await,
                401
            );
            assert_eq!(inbox.counts().await.unwrap().events.total(), 2, "{url}");
            assert!(inbox.history("<x1@x>").await.unwrap().is_empty());
            assert!(inbox.history("<x2@x>").await.unwrap().is_empty());

            // Counts by source.
            assert_eq!(inbox.counts_of("tokyo").await.unwrap().events.pending, 1);
            assert_eq!(inbox.counts_of("ny").await.unwrap().events.pending, 1);
            assert_eq!(inbox.counts_of("default").await.unwrap().events.total(), 0);
            let by_source = inbox.counts_by_source().await.unwrap();
            assert_eq!(
                by_source.keys().map(String::as_str).collect::<Vec<_>>(),
                ["ny", "tokyo"]
            );
            assert!(by_source["tokyo"].events.oldest_pending.is_some());

            // The raw requests kept name their source.
            let raw = inbox.raw_requests(0, 10).await.unwrap();
            let mut raw_sources: Vec<_> = raw.iter().map(|r| r.source.clone()).collect();
            raw_sources.sort();
            assert_eq!(
                raw_sources,
                [Some("ny".to_owned()), Some("tokyo".to_owned())],
                "{url}"
            );

            // The handler gets each row's source, and reads `created` in
            // its zone; New York's fails (dead after one attempt).
            let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
            let worker = {
                let seen = seen.clone();
                inbox
                    .worker(move |job: Job| {
                        let Item::Event(event) = &job.item else {
                            panic!("an event was expected")
                        };
                        let at = zones[&job.source].created_at(event).unwrap();
                        seen.lock()
                            .unwrap()
                            .push((job.source.clone(), at.to_string()));
                        let fail = job.source == "ny";
                        async move {
                            if fail {
                                Err("ny's handler is down".to_owned())
                            } else {
                                Ok(())
                            }
                        }
                    })
                    .max_attempts(1)
                    .spawn()
            };
            eventually("two rows handled", || seen.lock().unwrap().len() == 2).await;
            let deadline = Instant::now() + Duration::from_secs(30);
            while inbox.counts().await.unwrap().events.dead == 0 {
                assert!(Instant::now() < deadline, "the row did not die");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            worker.shutdown(Duration::from_secs(5)).await.unwrap();
            let mut seen = std::mem::take(&mut *seen.lock().unwrap());
            seen.sort();
            assert_eq!(
                seen,
                [
                    ("ny".to_owned(), "2023-01-25T19:03:06Z".to_owned()),
                    ("tokyo".to_owned(), "2023-01-25T05:03:06Z".to_owned()),
                ],
                "{url}"
            );

            // Dead rows, by source.
            let dead = inbox.dead(10).await.unwrap();
            assert_eq!(dead.len(), 1);
            assert_eq!(dead[0].source, "ny");
            assert_eq!(inbox.dead_of("ny", 10).await.unwrap().len(), 1);
            assert!(inbox.dead_of("tokyo", 10).await.unwrap().is_empty());
            assert_eq!(inbox.counts_of("ny").await.unwrap().events.dead, 1);
            assert_eq!(inbox.counts_of("tokyo").await.unwrap().events.done, 1);

            // History, by source.
            let history = inbox.history("<n@x>").await.unwrap();
            assert_eq!(history.len(), 1);
            assert_eq!(history[0].source, "ny");
            assert!(inbox.history_of("tokyo", "<n@x>").await.unwrap().is_empty());
            assert_eq!(inbox.history_of("ny", "<n@x>").await.unwrap().len(), 1);

            // Replay, by source: tokyo's done row, not ny's dead one.
            let all = Filter::dead().states([
                cmc_webhook::inbox::State::Done,
                cmc_webhook::inbox::State::Dead,
            ]);
            assert_eq!(
                inbox.replay(&all.clone().source("nobody")).await.unwrap(),
                0
            );
            assert_eq!(
                inbox.replay(&Filter::dead().source("tokyo")).await.unwrap(),
                0
            );
            assert_eq!(inbox.replay(&all.clone().source("tokyo")).await.unwrap(), 1);
            assert_eq!(inbox.counts_of("tokyo").await.unwrap().events.pending, 1);
            assert_eq!(inbox.counts_of("ny").await.unwrap().events.dead, 1);
            assert_eq!(inbox.replay(&Filter::dead().source("ny")).await.unwrap(), 1);
            assert_eq!(inbox.counts().await.unwrap().events.pending, 2);
            inbox.close().await;
        }
    }

    /// The suppression list is shared by the sources: a hard bounce from
    /// one suppresses the address for all; its history names the source
    /// whose event made the change, and `created` is read in that source's
    /// zone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_suppression_list_is_shared_and_its_history_names_the_source() {
        use cmc_webhook::inbox::suppression::SuppressionPolicy;
        let dir = tempfile::tempdir().unwrap();
        for url in common::inbox::stores(dir.path(), "suppressed", "sources", "sources").await {
            let inbox = builder(&url).open().await.unwrap();
            // A day ago (a suppression lasts from when the bounce was
            // created), as a console would write it.
            let civil = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24))
                .round(jiff::Unit::Second)
                .unwrap()
                .in_tz("UTC")
                .unwrap()
                .datetime();
            let created = civil.strftime("%Y-%m-%d %H:%M:%S").to_string();
            let in_zone = |zone: &str| tz(zone).to_timestamp(civil).unwrap().to_string();
            let hard = |to: &str| {
                cmc_webhook::Webhook::parse(
                    "application/json",
                    bytes::Bytes::from(format!(
                        r#"{{"event_type":"bounces","server_composition":"pro","event":{{"bounces":[
                        {{"created":"{created}","status":"1","to":"{to}","messageId":"<h@x>"}}]}}}}"#
                    )),
                )
                .unwrap()
            };
            let ny = Source::new("ny", tz("America/New_York"), None);
            inbox
                .store_sourced(cmc_webhook::Sourced(ny, hard("gone@example.jp")), None)
                .await
                .unwrap();
            inbox.store(hard("old@example.jp"), None).await.unwrap();
            let policy = SuppressionPolicy::default()
                .time_zone(jiff::tz::TimeZone::UTC)
                .source_time_zone("ny", tz("America/New_York"));
            let worker = inbox
                .worker(|_job: Job| async { Ok::<(), String>(()) })
                .suppressions(policy)
                .spawn();
            let deadline = Instant::now() + Duration::from_secs(30);
            while inbox.counts().await.unwrap().events.done < 2 {
                assert!(Instant::now() < deadline, "not handled");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            worker.shutdown(Duration::from_secs(5)).await.unwrap();
            let list = inbox.suppressions();
            let gone = list.check("gone@example.jp").await.unwrap();
            assert!(gone.suppressed, "{url}");
            // Read in New York's zone (the policy's own is UTC).
            assert_eq!(
                gone.since.unwrap().to_string(),
                in_zone("America/New_York"),
                "{url}"
            );
            let old = list.check("old@example.jp").await.unwrap();
            assert!(old.suppressed, "{url}");
            assert_eq!(old.since.unwrap().to_string(), in_zone("UTC"), "{url}");
            let history = list.history("gone@example.jp").await.unwrap();
            assert_eq!(history.len(), 1);
            assert_eq!(history[0].source.as_deref(), Some("ny"));
            let history = list.history("old@example.jp").await.unwrap();
            assert_eq!(history[0].source.as_deref(), Some("default"));
            // A change by hand names no source.
            list.add("hand@example.jp", None, "by hand").await.unwrap();
            assert_eq!(
                list.history("hand@example.jp").await.unwrap()[0].source,
                None
            );
            inbox.close().await;
        }
    }

    /// The store library call: `store` records `default`, `store_sourced`
    /// the source given.
    #[tokio::test]
    async fn the_library_call_stores_with_a_source() {
        let dir = tempfile::tempdir().unwrap();
        for url in common::inbox::stores(dir.path(), "library", "sources", "sources").await {
            let inbox = builder(&url).open().await.unwrap();
            let parse = |body: Vec<u8>| {
                cmc_webhook::Webhook::parse("application/json", bytes::Bytes::from(body)).unwrap()
            };
            inbox
                .store(parse(bounce("k", "<a@x>", "a@example.jp")), None)
                .await
                .unwrap();
            let sandbox = Source::new("sandbox", jiff::tz::TimeZone::UTC, None);
            inbox
                .store_sourced(
                    cmc_webhook::Sourced(
                        sandbox.clone(),
                        parse(bounce("k", "<b@x>", "b@example.jp")),
                    ),
                    None,
                )
                .await
                .unwrap();
            // The same event from another source is a repeat, and keeps the
            // source it was first stored with.
            let again = inbox
                .store_sourced(
                    cmc_webhook::Sourced(sandbox, parse(bounce("k", "<a@x>", "a@example.jp"))),
                    None,
                )
                .await
                .unwrap();
            assert_eq!((again.stored, again.repeated), (0, 1));
            assert_eq!(
                inbox.counts_of("default").await.unwrap().events.pending,
                1,
                "{url}"
            );
            assert_eq!(
                inbox.counts_of("sandbox").await.unwrap().events.pending,
                1,
                "{url}"
            );
            assert_eq!(inbox.history("<a@x>").await.unwrap()[0].source, "default");
            assert_eq!(inbox.history("<b@x>").await.unwrap()[0].source, "sandbox");
            inbox.close().await;
        }
    }

    /// A store of the schema before sources, with rows in every state (and
    /// raw requests stored and refused): migrated, its rows are the
    /// `default` source's.
    #[tokio::test]
    async fn rows_stored_before_sources_are_the_default_source() {
        let dir = tempfile::tempdir().unwrap();
        for url in common::inbox::stores(dir.path(), "before", "sources", "sources").await {
            let backend = if url.starts_with("sqlite:") {
                "sqlite"
            } else {
                "postgres"
            };
            let mut previous = sqlx::migrate::Migrator::new(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join(format!("crates/inbox/migrations/{backend}")),
            )
            .await
            .unwrap();
            let sources = if backend == "sqlite" { 10 } else { 8 };
            let latest = previous.migrations.iter().map(|m| m.version).max().unwrap();
            previous.migrations = previous
                .migrations
                .iter()
                // Before sources, and on PostgreSQL before its native
                // types too (the rows below are written as BIGINT times);
                // never the state counters (0014), which count by source.
                .filter(|m| {
                    m.version != sources
                        && m.version < 14
                        && (backend == "sqlite" || m.version < 10)
                })
                .cloned()
                .collect::<Vec<_>>()
                .into();
            let batch = cmc_webhook::test_util::sample_events(4);
            let mut statements = Vec::new();
            for (event, state) in batch
                .events
                .iter()
                .zip(["pending", "running", "done", "dead"])
            {
                let json = serde_json::to_string(event).unwrap().replace('\'', "''");
                statements.push(format!(
                    "INSERT INTO cmc_events (idempotency_key, event_type, server_composition, \
                     received_at, event, run_at, state, attempts, done_at) VALUES ('{}', '{}', \
                     'pro', 1000, '{json}', 1000, '{state}', 1, 2000)",
                    event.idempotency_key(),
                    event.event_type().as_str(),
                ));
            }
            let mail = cmc_webhook::test_util::sample_inbound(false);
            statements.push(format!(
                "INSERT INTO cmc_mails (idempotency_key, envelope_from, envelope_to, subject, \
                 filter, server_composition, received_at, attachments, size, mail, run_at) \
                 VALUES ('{}', 'a@example.com', 'b@example.jp', 's', 'f', 'pro', 1000, 0, 0, '{}', 1000)",
                mail.idempotency_key(),
                serde_json::to_string(&mail).unwrap().replace('\'', "''"),
            ));
            for (outcome, sha) in [("stored", "a"), ("refused", "b")] {
                statements.push(format!(
                    "INSERT INTO cmc_raw_requests (received_at, content_type, outcome, \
                     body_sha256, size) VALUES (1000, 'application/json', '{outcome}', '{}', 0)",
                    sha.repeat(64)
                ));
            }
            let inbox = match url.strip_prefix("sqlite:") {
                Some(path) => {
                    let pool = sqlx::SqlitePool::connect_with(
                        sqlx::sqlite::SqliteConnectOptions::new()
                            .filename(path)
                            .create_if_missing(true),
                    )
                    .await
                    .unwrap();
                    previous.run(&pool).await.unwrap();
                    for s in &statements {
                        sqlx::query(sqlx::AssertSqlSafe(s.as_str()))
                            .execute(&pool)
                            .await
                            .unwrap();
                    }
                    pool.close().await;
                    let migrated = Inbox::sqlite(path).migrate().await.unwrap();
                    assert_eq!(migrated.version, latest);
                    assert!(migrated.applied.contains(&sources), "{migrated:?}");
                    Inbox::sqlite(path)
                        .migrate_on_open(false)
                        .open()
                        .await
                        .unwrap()
                }
                #[cfg(not(feature = "postgres"))]
                None => unreachable!("a PostgreSQL store without the feature"),
                #[cfg(feature = "postgres")]
                None => {
                    let pool = sqlx::PgPool::connect(&url).await.unwrap();
                    previous.run(&pool).await.unwrap();
                    for s in &statements {
                        sqlx::query(sqlx::AssertSqlSafe(s.as_str()))
                            .execute(&pool)
                            .await
                            .unwrap();
                    }
                    pool.close().await;
                    Inbox::postgres(&url)
                        .schema("public")
                        .migrate()
                        .await
                        .unwrap();
                    Inbox::postgres(&url)
                        .schema("public")
                        .migrate_on_open(false)
                        .open()
                        .await
                        .unwrap()
                }
            };
            let all = inbox.counts().await.unwrap();
            assert_eq!((all.events.total(), all.mails.total()), (4, 1), "{url}");
            assert_eq!(inbox.counts_of("default").await.unwrap(), all, "{url}");
            assert_eq!(inbox.counts_by_source().await.unwrap().len(), 1);
            assert_eq!(inbox.dead_of("default", 10).await.unwrap().len(), 1);
            assert_eq!(inbox.dead(10).await.unwrap()[0].source, "default");
            let raw = inbox.raw_requests(0, 10).await.unwrap();
            let raw: Vec<_> = raw
                .iter()
                .map(|r| (r.outcome, r.source.as_deref()))
                .collect();
            assert_eq!(
                raw,
                [
                    (cmc_webhook::inbox::RawOutcome::Stored, Some("default")),
                    (cmc_webhook::inbox::RawOutcome::Refused, None),
                ],
                "{url}"
            );
            // The worker hands the pending rows out as the default source's.
            let sources: Arc<Mutex<Vec<String>>> = Arc::default();
            let worker = {
                let sources = sources.clone();
                inbox
                    .worker(move |job: Job| {
                        sources.lock().unwrap().push(job.source.clone());
                        async { Ok::<(), String>(()) }
                    })
                    .spawn()
            };
            eventually("the pending event and mail", || {
                sources.lock().unwrap().len() >= 2
            })
            .await;
            worker.shutdown(Duration::from_secs(5)).await.unwrap();
            assert!(sources.lock().unwrap().iter().all(|s| s == "default"));
            inbox.close().await;
        }
    }
}
