//! The axum extractors through `tower::ServiceExt::oneshot`: each kind,
//! each rejection's status and body.

mod common;

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use cmc_webhook::client_ip::ClientIp;
use cmc_webhook::test_util::{sample_events, sample_inbound, CmcRequest, WireEncoding};
use cmc_webhook::{EventBatch, InboundMail, Webhook, WebhookLayer};
use http::StatusCode;
use tower::ServiceExt;

async fn on_any(webhook: Webhook) -> String {
    match webhook {
        Webhook::Events(batch) => format!("events {}", batch.events.len()),
        Webhook::Inbound(mail) => format!("inbound {}", mail.attachments.len()),
    }
}

async fn on_events(batch: EventBatch) -> String {
    format!("events {}", batch.events.len())
}

async fn on_inbound(mail: InboundMail) -> String {
    format!("inbound {} {}", mail.subject, mail.attachments.len())
}

fn router() -> Router {
    Router::new()
        .route("/any", post(on_any))
        .route("/events", post(on_events))
        .route("/inbound", post(on_inbound))
}

async fn call(
    app: Router,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> (StatusCode, String) {
    let response = app.oneshot(request.map(Body::new)).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn each_extractor_accepts_its_kind_in_every_encoding() {
    for encoding in WireEncoding::ALL {
        let events = CmcRequest::events(&sample_events(5), encoding);
        let mail = CmcRequest::inbound(&sample_inbound(true), encoding);
        let files = if encoding == WireEncoding::Multipart {
            1
        } else {
            0
        };
        assert_eq!(
            call(router(), events.clone().uri("/any").into_request()).await,
            (StatusCode::OK, "events 5".into())
        );
        assert_eq!(
            call(router(), events.uri("/events").into_request()).await,
            (StatusCode::OK, "events 5".into())
        );
        assert_eq!(
            call(router(), mail.clone().uri("/any").into_request()).await,
            (StatusCode::OK, format!("inbound {files}"))
        );
        assert_eq!(
            call(router(), mail.uri("/inbound").into_request()).await,
            (
                StatusCode::OK,
                format!("inbound 添付ファイルテスト {files}")
            )
        );
    }
}

#[tokio::test]
async fn the_other_kind_is_a_400_that_names_what_arrived() {
    let mail = CmcRequest::inbound(&sample_inbound(false), WireEncoding::Json).uri("/events");
    let (status, body) = call(router(), mail.into_request()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        "unexpected webhook kind: expected an event webhook (event_type, event), but the body is an inbound mail (headers, filter, envelope)\n"
    );
    let events = CmcRequest::events(&sample_events(1), WireEncoding::Form).uri("/inbound");
    let (status, body) = call(router(), events.into_request()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.ends_with("but the body is an event webhook (event_type, event)\n"),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_body_is_a_400_with_the_parse_error() {
    let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[{"created":"soon","status":"queued"}]}}"#;
    let request = CmcRequest::raw("application/json", body)
        .uri("/any")
        .into_request();
    let (status, text) = call(router(), request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.starts_with(
            "malformed webhook body: event.deliveries[0].created: `soon` is not a date and time"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn other_media_types_are_a_415() {
    let request = CmcRequest::raw("text/plain", "hello")
        .uri("/events")
        .into_request();
    let (status, text) = call(router(), request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        text,
        "expected application/json, application/x-www-form-urlencoded or multipart/form-data\n"
    );
}

#[tokio::test]
async fn without_the_layer_axums_default_body_limit_applies() {
    let request = || {
        CmcRequest::events(&sample_events(100), WireEncoding::Json)
            .uri("/events")
            .into_request()
    };
    let small = router().layer(DefaultBodyLimit::max(1024));
    let (status, text) = call(small, request()).await;
    assert_eq!(
        (status, text.as_str()),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than allowed\n"
        )
    );
    // The default (2 MB) lets a 100-record batch through.
    assert_eq!(call(router(), request()).await.0, StatusCode::OK);
    // Multipart streams into the parser and is cut the same way.
    let mail = CmcRequest::inbound(&sample_inbound(true), WireEncoding::Multipart)
        .uri("/inbound")
        .into_request();
    let (status, _) = call(router().layer(DefaultBodyLimit::max(100)), mail).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn with_the_layer_its_limit_and_keys_apply() {
    let peer = "127.0.0.1:50000".parse().unwrap();
    let layer = WebhookLayer::builder()
        .allow_cidrs("127.0.0.0/8")
        .unwrap()
        .api_key("k3y")
        .body_limit(4 << 20)
        .build()
        .unwrap();
    // The layer's limit replaces axum's default: 3 MB passes.
    let app = || Router::new().route("/events", post(on_events).layer(layer.clone()));
    let mut batch = sample_events(5_000);
    batch.api_key = Some("k3y".into());
    let big = CmcRequest::events(&batch, WireEncoding::Json)
        .uri("/events")
        .peer(peer);
    assert!(big.wire().body.len() > 2 << 20, "{}", big.wire().body.len());
    assert_eq!(
        call(app(), big.into_request()).await,
        (StatusCode::OK, "events 5000".into())
    );

    // No key, a wrong key: 401 from the extractor.
    let no_key = CmcRequest::events(&sample_events(1), WireEncoding::Form)
        .uri("/events")
        .peer(peer);
    assert_eq!(
        call(app(), no_key.into_request()).await,
        (
            StatusCode::UNAUTHORIZED,
            "missing or wrong api_key\n".into()
        )
    );
    let mut wrong = sample_events(1);
    wrong.api_key = Some("k3y-old".into());
    let wrong = CmcRequest::events(&wrong, WireEncoding::Multipart)
        .uri("/events")
        .peer(peer);
    assert_eq!(
        call(app(), wrong.into_request()).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Without a peer address the layer refuses before the extractor runs.
    let no_peer = CmcRequest::events(&batch, WireEncoding::Json).uri("/events");
    assert_eq!(
        call(app(), no_peer.into_request()).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

async fn on_maybe(batch: Option<EventBatch>) -> String {
    match batch {
        Some(batch) => format!("events {}", batch.events.len()),
        None => "nothing".into(),
    }
}

#[tokio::test]
async fn an_optional_batch_is_none_without_a_content_type_and_refused_when_bad() {
    let app = || Router::new().route("/maybe", post(on_maybe));
    let empty = http::Request::post("/maybe")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(call(app(), empty).await, (StatusCode::OK, "nothing".into()));
    let batch = CmcRequest::events(&sample_events(2), WireEncoding::Form).uri("/maybe");
    assert_eq!(
        call(app(), batch.into_request()).await,
        (StatusCode::OK, "events 2".into())
    );
    // A body that is there but wrong is refused, not taken for none.
    let bad = CmcRequest::raw("application/json", "{").uri("/maybe");
    assert_eq!(
        call(app(), bad.into_request()).await.0,
        StatusCode::BAD_REQUEST
    );
    let mail = CmcRequest::inbound(&sample_inbound(false), WireEncoding::Json).uri("/maybe");
    assert_eq!(
        call(app(), mail.into_request()).await.0,
        StatusCode::BAD_REQUEST
    );
}

async fn on_client(ClientIp(client): ClientIp) -> String {
    client.to_string()
}

#[tokio::test]
async fn client_ip_is_the_layers_client_or_the_peer() {
    // Behind the layer: the client it resolved through the trusted proxy.
    let layer = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .trust_proxy_cidrs("10.0.0.0/8")
        .unwrap()
        .build()
        .unwrap();
    let gated = Router::new().route("/c", post(on_client).layer(layer));
    let request = CmcRequest::events(&sample_events(1), WireEncoding::Json)
        .uri("/c")
        .peer("10.0.0.2:1".parse().unwrap())
        .header("x-forwarded-for", "203.0.113.9");
    assert_eq!(
        call(gated, request.into_request()).await,
        (StatusCode::OK, "203.0.113.9".into())
    );
    // Without it: the connection's peer, a mapped IPv4 address as IPv4.
    let open = || Router::new().route("/c", post(on_client));
    let request = CmcRequest::events(&sample_events(1), WireEncoding::Json)
        .uri("/c")
        .peer("[::ffff:198.51.100.4]:1".parse().unwrap())
        .header("x-forwarded-for", "203.0.113.9");
    assert_eq!(
        call(open(), request.into_request()).await,
        (StatusCode::OK, "198.51.100.4".into())
    );
    // Neither: 500, the deployment's error.
    let request = CmcRequest::events(&sample_events(1), WireEncoding::Json).uri("/c");
    assert_eq!(
        call(open(), request.into_request()).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

#[tokio::test]
async fn the_renamed_builder_methods_and_their_iterator_forms() {
    use cmc_webhook::ipnet::IpNet;
    let nets: Vec<IpNet> = vec!["203.0.113.0/24".parse().unwrap()];
    let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    let layer = WebhookLayer::builder()
        .allow_nets(nets)
        .allow_cidrs("198.51.100.7")
        .unwrap()
        .trust_proxies(proxies)
        .api_keys(["old", "new"])
        .build()
        .unwrap();
    let app = || Router::new().route("/events", post(on_events).layer(layer.clone()));
    for (peer, forwarded, key, status) in [
        ("203.0.113.1:1", None, "old", StatusCode::OK),
        ("198.51.100.7:1", None, "new", StatusCode::OK),
        ("10.0.0.1:1", Some("198.51.100.7"), "new", StatusCode::OK),
        (
            "10.0.0.1:1",
            Some("192.0.2.1"),
            "new",
            StatusCode::FORBIDDEN,
        ),
        ("203.0.113.1:1", None, "other", StatusCode::UNAUTHORIZED),
    ] {
        let mut batch = sample_events(1);
        batch.api_key = Some(key.into());
        let mut request = CmcRequest::events(&batch, WireEncoding::Json)
            .uri("/events")
            .peer(peer.parse().unwrap());
        if let Some(client) = forwarded {
            request = request.header("x-forwarded-for", client);
        }
        assert_eq!(
            call(app(), request.into_request()).await.0,
            status,
            "{peer} {forwarded:?} {key}"
        );
    }
}
