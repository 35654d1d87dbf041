//! What the layer logs: a `warn` line per refusal with the client address
//! and the reason (how operators find CMC's addresses), an `error` with the
//! fix when the peer address is missing, start-up warnings for risky
//! configurations, and never a body, a key or a password.

mod common;

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use cmc_webhook::test_util::{sample_events, CmcRequest, WireEncoding};
use cmc_webhook::{EventBatch, WebhookLayer};
use common::logs::Captured;
use tower::ServiceExt;

/// Runs `f` with every log line at `debug` and above captured.
async fn capture<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) -> String {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    f().await;
    drop(guard);
    captured.text()
}

async fn on_events(batch: EventBatch) -> String {
    format!("events {}", batch.events.len())
}

async fn call(app: Router, request: CmcRequest) -> u16 {
    let request = request.uri("/mails").into_request();
    app.oneshot(request.map(Body::new))
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "current_thread")]
async fn refusals_are_logged_with_the_client_and_never_the_secrets() {
    let logs = capture(|| async {
        let layer = WebhookLayer::builder()
            .allow_cidrs("203.0.113.0/24")
            .unwrap()
            .trust_proxy("10.0.0.0/8".parse().unwrap())
            .basic_auth("cmc", "pa55-w0rd-secret")
            .api_key("k3y-secret-value")
            .build()
            .unwrap();
        let app = Router::new().route("/mails", post(on_events).layer(layer));
        let mut batch = sample_events(1);
        batch.api_key = Some("k3y-secret-value".into());
        let request = || CmcRequest::events(&batch, WireEncoding::Form);
        // Not allowed: straight from 198.51.100.7, and through our proxy.
        assert_eq!(
            call(
                app.clone(),
                request().peer("198.51.100.7:5000".parse().unwrap())
            )
            .await,
            403
        );
        let via_proxy = request()
            .peer("10.0.0.1:5000".parse().unwrap())
            .header("x-forwarded-for", "192.0.2.99");
        assert_eq!(call(app.clone(), via_proxy).await, 403);
        // Allowed address, wrong password; then everything right.
        let allowed = || request().peer("203.0.113.5:5000".parse().unwrap());
        assert_eq!(
            call(app.clone(), allowed().basic_auth("cmc", "wrong-secret")).await,
            401
        );
        assert_eq!(
            call(app.clone(), allowed().basic_auth("cmc", "pa55-w0rd-secret")).await,
            200
        );
        // No peer address at all.
        assert_eq!(
            call(app.clone(), request().basic_auth("cmc", "pa55-w0rd-secret")).await,
            500
        );
    })
    .await;

    let warns: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("refused CMC webhook request"))
        .collect();
    assert_eq!(warns.len(), 4, "{logs}");
    assert!(warns.iter().all(|l| l.contains("WARN")), "{logs}");
    assert!(
        warns[0].contains("client=198.51.100.7")
            && warns[0].contains("reason=\"client_not_allowed\"")
            && warns[0].contains("the client address is not allowed"),
        "{}",
        warns[0]
    );
    assert!(
        warns[1].contains("client=192.0.2.99") && warns[1].contains("peer=10.0.0.1"),
        "{}",
        warns[1]
    );
    assert!(
        warns[2].contains("client=203.0.113.5") && warns[2].contains("reason=\"bad_credentials\""),
        "{}",
        warns[2]
    );
    assert!(
        warns[3].contains("reason=\"no_peer_address\"") && !warns[3].contains("client="),
        "{}",
        warns[3]
    );
    assert!(
        logs.contains("ERROR")
            && logs.contains("into_make_service_with_connect_info::<SocketAddr>()"),
        "{logs}"
    );
    for secret in [
        "pa55-w0rd-secret",
        "wrong-secret",
        "k3y-secret-value",
        "server_composition=",
    ] {
        assert!(
            !logs.contains(secret),
            "`{secret}` leaked into the logs:\n{logs}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn allowing_all_of_ipv6_allows_ipv4_clients_and_says_every_address() {
    // On a `[::]` listener IPv4 clients arrive as `::ffff:a.b.c.d`, which
    // `::/0` covers: the warning and the decision agree.
    let logs = capture(|| async {
        WebhookLayer::builder()
            .allow_cidrs("::/0")
            .unwrap()
            .build()
            .unwrap();
    })
    .await;
    assert!(
        logs.contains("the allowlist allows every address:"),
        "{logs}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn risky_configurations_are_warned_about_at_build() {
    let logs = capture(|| async {
        WebhookLayer::builder()
            .allow_cidrs("0.0.0.0/0")
            .unwrap()
            .trust_proxy("10.0.0.0/8".parse().unwrap())
            .build()
            .unwrap();
    })
    .await;
    // 0.0.0.0/0 leaves IPv6 clients out, and the warning says so.
    assert!(
        logs.contains("the allowlist allows every IPv4 address"),
        "{logs}"
    );
    assert!(
        logs.contains("proxies are trusted but the allowlist allows everyone"),
        "{logs}"
    );
    assert!(
        logs.contains("no api_key and no BASIC credentials configured"),
        "{logs}"
    );

    let logs = capture(|| async {
        WebhookLayer::builder()
            .allow_cidrs("203.0.113.0/24")
            .unwrap()
            .api_key("k")
            .build()
            .unwrap();
    })
    .await;
    assert!(
        !logs.contains("WARN"),
        "a careful configuration warns about nothing:\n{logs}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn each_request_gets_a_span_with_the_http_semantic_convention_fields() {
    let logs = capture(|| async {
        let layer = WebhookLayer::builder()
            .allow_cidrs("203.0.113.0/24")
            .unwrap()
            .build()
            .unwrap();
        let app = Router::new().route("/mails", post(on_events).layer(layer));
        let request = CmcRequest::events(&sample_events(1), WireEncoding::Json)
            .peer("198.51.100.7:1".parse().unwrap());
        assert_eq!(call(app, request).await, 403);
    })
    .await;
    let line = logs
        .lines()
        .find(|l| l.contains("refused CMC webhook request"))
        .unwrap();
    for field in [
        "cmc_webhook{otel.kind=\"server\"",
        "otel.name=\"POST\"",
        "http.request.method=\"POST\"",
        "url.path=\"/mails\"",
        "network.peer.address=198.51.100.7",
        "client.address=198.51.100.7",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
}

/// A body the reader refuses is logged once, by the layer, with the client,
/// the reason, and the field path of the parse error, never the body.
#[tokio::test(flavor = "current_thread")]
async fn body_refusals_are_logged_once_with_the_field_path() {
    let logs = capture(|| async {
        let layer = WebhookLayer::builder()
            .allow_cidrs("203.0.113.0/24")
            .unwrap()
            .api_key("the-right-k3y")
            .build()
            .unwrap();
        let app = Router::new().route("/mails", post(on_events).layer(layer));
        let peer = "203.0.113.5:5000".parse().unwrap();
        let body = r#"{"api_key":"the-right-k3y","event_type":"deliveries","server_composition":"pro","event":{"deliveries":[{"created":"2023-01-25 14:03:09","status":"queued","subject":"s3cret-subject"},{"created":"yesterday","status":"queued"}]}}"#;
        let request = CmcRequest::raw("application/json", body.as_bytes().to_vec()).peer(peer);
        assert_eq!(call(app.clone(), request).await, 400);
        let wrong_key = body.replace("the-right-k3y", "a-wrong-k3y");
        let request = CmcRequest::raw("application/json", wrong_key.into_bytes()).peer(peer);
        assert_eq!(call(app.clone(), request).await, 401);
        let request = CmcRequest::raw("application/json", b"[]".to_vec()).peer(peer);
        assert_eq!(call(app, request).await, 401);
    })
    .await;
    let warns: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("refused CMC webhook request"))
        .collect();
    assert_eq!(warns.len(), 3, "{logs}");
    assert!(
        warns[0].contains("client=203.0.113.5")
            && warns[0].contains("reason=\"malformed_body\"")
            && warns[0].contains("field=\"event.deliveries[1].created\"")
            && warns[0].contains("error=InvalidField"),
        "{}",
        warns[0]
    );
    assert!(
        warns[1].contains("reason=\"bad_api_key\"") && !warns[1].contains("field="),
        "{}",
        warns[1]
    );
    for secret in [
        "the-right-k3y",
        "a-wrong-k3y",
        "s3cret-subject",
        "yesterday",
    ] {
        assert!(!logs.contains(secret), "`{secret}` leaked:\n{logs}");
    }
}

/// Without the layer, the extractor logs its refusals itself (there is no
/// client address to add).
#[tokio::test(flavor = "current_thread")]
async fn extractors_without_the_layer_log_their_refusals() {
    let logs = capture(|| async {
        let app = Router::new().route("/mails", post(on_events));
        let request = CmcRequest::raw("application/json", b"{".to_vec())
            .peer("203.0.113.5:5000".parse().unwrap());
        assert_eq!(call(app, request).await, 400);
    })
    .await;
    let warns: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("refused CMC webhook request"))
        .collect();
    assert_eq!(warns.len(), 1, "{logs}");
    assert!(
        warns[0].contains("reason=\"malformed_body\"") && warns[0].contains("error=Json"),
        "{}",
        warns[0]
    );
}

/// Report-only mode admits clients outside the allowlist, logs each address
/// once at `warn`, and lists them with their counts.
#[tokio::test(flavor = "current_thread")]
async fn report_only_admits_and_logs_each_new_address_once() {
    let mut layer = None;
    let logs = capture(|| async {
        let built = WebhookLayer::builder()
            .allow_cidrs("203.0.113.0/24")
            .unwrap()
            .report_only()
            .basic_auth("cmc", "pw")
            .build()
            .unwrap();
        let app = Router::new().route("/mails", post(on_events).layer(built.clone()));
        let batch = sample_events(2);
        let from = |peer: &str| {
            CmcRequest::events(&batch, WireEncoding::Json)
                .peer(peer.parse().unwrap())
                .basic_auth("cmc", "pw")
        };
        for _ in 0..3 {
            assert_eq!(call(app.clone(), from("198.51.100.7:1")).await, 200);
        }
        // A dual-stack listener reports the same client mapped.
        assert_eq!(
            call(app.clone(), from("[::ffff:198.51.100.7]:1")).await,
            200
        );
        assert_eq!(call(app.clone(), from("[2001:db8::5]:1")).await, 200);
        // Listed clients are not recorded.
        assert_eq!(call(app.clone(), from("203.0.113.1:1")).await, 200);
        // Every other check still applies, and a refused client is not
        // recorded: the list holds only clients that passed them.
        let no_auth =
            CmcRequest::events(&batch, WireEncoding::Json).peer("192.0.2.1:1".parse().unwrap());
        assert_eq!(call(app.clone(), no_auth).await, 401);
        layer = Some(built);
    })
    .await;
    let layer = layer.unwrap();
    let admitted: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("admitted a client outside the allowlist") && l.contains("WARN"))
        .collect();
    assert_eq!(admitted.len(), 2, "{logs}");
    assert!(
        admitted[0].contains("client=198.51.100.7"),
        "{}",
        admitted[0]
    );
    assert!(
        admitted[1].contains("client=2001:db8::5"),
        "{}",
        admitted[1]
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("refused CMC webhook request")
                && l.contains("client=192.0.2.1")
                && l.contains("bad_credentials")),
        "{logs}"
    );
    assert!(
        logs.contains("report-only mode: clients outside the allowlist are admitted"),
        "{logs}"
    );
    let seen: Vec<(String, u64)> = layer
        .unlisted_clients()
        .iter()
        .map(|c| (c.addr.to_string(), c.requests))
        .collect();
    assert_eq!(
        seen,
        [
            ("198.51.100.7".to_owned(), 4),
            ("2001:db8::5".to_owned(), 1)
        ]
    );
    assert_eq!(layer.unlisted_overflow(), 0);
}

/// A handler that answers 200 whatever the reader said: the refusal is
/// still logged once, and in report-only mode the client is not listed
/// (only a webhook the reader accepted lists it).
#[tokio::test(flavor = "current_thread")]
async fn a_swallowed_refusal_is_logged_and_lists_nobody() {
    async fn swallow(batch: Result<EventBatch, cmc_webhook::Rejection>) -> &'static str {
        let _ = batch;
        "ok"
    }
    let mut layer = None;
    let logs = capture(|| async {
        let built = WebhookLayer::builder()
            .report_only()
            .api_key("the-k3y")
            .build()
            .unwrap();
        let app = Router::new().route("/mails", post(swallow).layer(built.clone()));
        let mut batch = sample_events(1);
        batch.api_key = Some("not-the-k3y".into());
        let wrong =
            CmcRequest::events(&batch, WireEncoding::Json).peer("198.51.100.66:1".parse().unwrap());
        assert_eq!(call(app.clone(), wrong).await, 200);
        let junk = CmcRequest::raw("application/json", b"{".to_vec())
            .peer("198.51.100.67:1".parse().unwrap());
        assert_eq!(call(app.clone(), junk).await, 200);
        batch.api_key = Some("the-k3y".into());
        let right =
            CmcRequest::events(&batch, WireEncoding::Json).peer("198.51.100.68:1".parse().unwrap());
        assert_eq!(call(app, right).await, 200);
        layer = Some(built);
    })
    .await;
    let layer = layer.unwrap();
    let listed: Vec<String> = layer
        .unlisted_clients()
        .iter()
        .map(|c| c.addr.to_string())
        .collect();
    assert_eq!(listed, ["198.51.100.68"]);
    let refusals: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("refused CMC webhook request"))
        .collect();
    assert_eq!(refusals.len(), 2, "{logs}");
    assert!(refusals[0].contains("client=198.51.100.66") && refusals[0].contains("bad_api_key"));
    assert!(refusals[1].contains("client=198.51.100.67") && refusals[1].contains("bad_api_key"));
    assert!(
        !logs.contains("the-k3y") && !logs.contains("not-the-k3y"),
        "{logs}"
    );
}

/// Outside report-only mode refused clients are logged and counted, never
/// listed: a port scanner must not end up in a list of addresses to allow.
#[tokio::test(flavor = "current_thread")]
async fn refused_clients_are_not_listed() {
    let layer = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .api_key("k")
        .build()
        .unwrap();
    let app = Router::new().route("/mails", post(on_events).layer(layer.clone()));
    let request = CmcRequest::events(&sample_events(1), WireEncoding::Json)
        .peer("198.51.100.7:1".parse().unwrap());
    assert_eq!(call(app, request).await, 403);
    assert!(layer.unlisted_clients().is_empty());
}

/// A request dropped before it is answered (here by a timeout around the
/// layer) is logged with its client.
#[tokio::test(flavor = "current_thread")]
async fn a_request_dropped_before_its_answer_is_logged() {
    async fn slow(_batch: EventBatch) -> &'static str {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        "late"
    }
    let logs = capture(|| async {
        let layer = WebhookLayer::builder()
            .allow_cidrs("203.0.113.0/24")
            .unwrap()
            .build()
            .unwrap();
        let app = Router::new()
            .route("/mails", post(slow).layer(layer))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                http::StatusCode::REQUEST_TIMEOUT,
                std::time::Duration::from_millis(50),
            ));
        let request = CmcRequest::events(&sample_events(1), WireEncoding::Json)
            .peer("203.0.113.9:1".parse().unwrap());
        assert_eq!(call(app, request).await, 408);
    })
    .await;
    let dropped: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("dropped before it was answered"))
        .collect();
    assert_eq!(dropped.len(), 1, "{logs}");
    assert!(
        dropped[0].contains("WARN") && dropped[0].contains("client=203.0.113.9"),
        "{}",
        dropped[0]
    );
}

/// Two layers on one request: said once, at `warn`.
#[tokio::test(flavor = "current_thread")]
async fn two_layers_on_one_request_are_warned_about() {
    let logs = capture(|| async {
        let layer = || {
            WebhookLayer::builder()
                .allow_cidrs("203.0.113.0/24")
                .unwrap()
                .build()
                .unwrap()
        };
        let app = Router::new()
            .route("/mails", post(on_events).layer(layer()))
            .layer(layer());
        for _ in 0..2 {
            let request = CmcRequest::events(&sample_events(1), WireEncoding::Json)
                .peer("203.0.113.9:1".parse().unwrap());
            assert_eq!(call(app.clone(), request).await, 200);
        }
    })
    .await;
    assert_eq!(
        logs.matches("a request went through two WebhookLayers")
            .count(),
        1,
        "{logs}"
    );
}
