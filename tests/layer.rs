//! The layer over real TCP on loopback: every rule, and proof that refused
//! requests never reach the handler.

mod common;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use cmc_webhook::client_ip::ClientIp;
use cmc_webhook::{read_webhook, Reason, Webhook, WebhookLayer};
use common::http::{
    post as post_req, post_chunked, send_raw, serve, serve_without_connect_info, Calls,
};

const JSON: &str = "Content-Type: application/json";

fn fixture(name: &str) -> Vec<u8> {
    common::load(name).1.to_vec()
}

/// Reads the webhook and answers 200 with what arrived and who sent it.
async fn handler(
    State(calls): State<Calls>,
    Extension(ClientIp(client)): Extension<ClientIp>,
    request: Request,
) -> Response {
    calls.hit();
    match read_webhook(request).await {
        Ok(Webhook::Events(batch)) => {
            format!("events {} from {client}", batch.events.len()).into_response()
        }
        Ok(Webhook::Inbound(mail)) => {
            format!("inbound {} from {client}", mail.attachments.len()).into_response()
        }
        Err(rejection) => rejection.into_response(),
    }
}

/// What a careless handler does: reads the body itself and answers 500
/// when reading fails.
async fn naive_handler(State(calls): State<Calls>, request: Request) -> Response {
    calls.hit();
    match axum::body::to_bytes(request.into_body(), usize::MAX).await {
        Ok(bytes) => format!("read {}", bytes.len()).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn app(layer: WebhookLayer, calls: &Calls) -> Router {
    Router::new()
        .route("/mails", post(handler).layer(layer))
        .with_state(calls.clone())
}

fn loopback() -> cmc_webhook::layer::WebhookLayerBuilder {
    WebhookLayer::builder()
        .allow_cidrs("127.0.0.0/8, ::1")
        .unwrap()
}

#[tokio::test]
async fn allowed_client_reaches_the_handler() {
    let calls = Calls::default();
    let addr = serve("127.0.0.1:0", app(loopback().build().unwrap(), &calls)).await;
    let reply = send_raw(
        addr,
        &post_req(
            "/mails",
            &[JSON],
            &fixture("shared/event-v2-json-queued.json"),
        ),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "events 1 from 127.0.0.1")
    );
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn address_not_allowed_is_refused_before_the_handler() {
    let calls = Calls::default();
    let layer = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .build()
        .unwrap();
    let addr = serve("127.0.0.1:0", app(layer, &calls)).await;
    let reply = send_raw(
        addr,
        &post_req(
            "/mails",
            &[JSON],
            &fixture("shared/event-v2-json-queued.json"),
        ),
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.body, "the client address is not allowed\n");
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // A refused client gets no kept-alive connection.
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    let calls = Calls::default();
    // The spoofed address is allowed, the real peer (loopback) is not.
    let layer = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .trust_proxy("10.0.0.0/8".parse().unwrap())
        .build()
        .unwrap();
    let addr = serve("127.0.0.1:0", app(layer, &calls)).await;
    for spoof in ["X-Forwarded-For: 203.0.113.5", "Forwarded: for=203.0.113.5"] {
        let reply = send_raw(addr, &post_req("/mails", &[JSON, spoof], b"{}")).await;
        assert_eq!(reply.status, 403, "{spoof}");
    }
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn multi_hop_chains_are_walked_from_the_right() {
    let calls = Calls::default();
    let layer = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .trust_proxy_cidrs("127.0.0.1, 10.0.0.0/8")
        .unwrap()
        .build()
        .unwrap();
    let addr = serve("127.0.0.1:0", app(layer, &calls)).await;
    let body = fixture("shared/event-v2-json-succeeded.json");

    // Leftmost entry spoofed by the client; the proxies saw 203.0.113.9.
    let reply = send_raw(
        addr,
        &post_req(
            "/mails",
            &[
                JSON,
                "X-Forwarded-For: 198.51.100.66, 203.0.113.9, 10.0.0.2",
            ],
            &body,
        ),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "events 1 from 203.0.113.9")
    );

    // Two header lines are one list.
    let reply = send_raw(
        addr,
        &post_req(
            "/mails",
            &[
                JSON,
                "X-Forwarded-For: 198.51.100.66",
                "X-Forwarded-For: 203.0.113.9, 10.0.0.2",
            ],
            &body,
        ),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "events 1 from 203.0.113.9")
    );

    // An allowed address on the left does not help a client that is not.
    let reply = send_raw(
        addr,
        &post_req(
            "/mails",
            &[
                JSON,
                "X-Forwarded-For: 203.0.113.9, 198.51.100.66, 10.0.0.2",
            ],
            &body,
        ),
    )
    .await;
    assert_eq!(reply.status, 403);

    // A single rightmost entry is wrong behind two proxies: the first
    // untrusted hop counts, not the last entry.
    let reply = send_raw(
        addr,
        &post_req(
            "/mails",
            &[JSON, "X-Forwarded-For: 203.0.113.9, 10.9.9.9"],
            &body,
        ),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "events 1 from 203.0.113.9")
    );

    // A trusted proxy that sends no header is itself the client.
    let reply = send_raw(addr, &post_req("/mails", &[JSON], &body)).await;
    assert_eq!(reply.status, 403);

    // A malformed hop ends the walk with a refusal.
    let reply = send_raw(
        addr,
        &post_req(
            "/mails",
            &[JSON, "X-Forwarded-For: 203.0.113.9, unknown"],
            &body,
        ),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (400, "the forwarding header is malformed\n")
    );
    assert_eq!(calls.count(), 3);
}

#[tokio::test]
async fn rfc7239_forwarded_when_configured() {
    let calls = Calls::default();
    let layer = WebhookLayer::builder()
        .allow_cidrs("2001:db8::/32")
        .unwrap()
        .trust_proxy("127.0.0.1/32".parse().unwrap())
        .client_ip_source(cmc_webhook::client_ip::ClientIpSource::Forwarded)
        .build()
        .unwrap();
    let addr = serve("127.0.0.1:0", app(layer, &calls)).await;
    let reply = send_raw(
        addr,
        &post_req(
            "/mails",
            &[
                JSON,
                "Forwarded: for=198.51.100.1, for=\"[2001:db8::7]:4711\";proto=https",
            ],
            &fixture("shared/event-v2-json-queued.json"),
        ),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "events 1 from 2001:db8::7")
    );
    let reply = send_raw(
        addr,
        &post_req("/mails", &[JSON, "Forwarded: for=_hidden"], b"{}"),
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn mapped_ipv4_peer_on_a_dual_stack_listener_matches_ipv4_rules() {
    let calls = Calls::default();
    let layer = WebhookLayer::builder()
        .allow_cidrs("127.0.0.0/8")
        .unwrap()
        .build()
        .unwrap();
    let Ok(bound) = tokio::net::TcpListener::bind("[::]:0").await else {
        eprintln!("no IPv6 on this machine: the dual-stack case cannot be tried");
        return;
    };
    drop(bound);
    let addr = serve("[::]:0", app(layer, &calls)).await;
    // Connect over IPv4: the [::] socket reports ::ffff:127.0.0.1.
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()));
    let reply = send_raw(
        v4,
        &post_req(
            "/mails",
            &[JSON],
            &fixture("shared/event-v2-json-queued.json"),
        ),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "events 1 from 127.0.0.1")
    );
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn only_post_is_accepted() {
    let calls = Calls::default();
    let app = Router::new()
        .route(
            "/mails",
            axum::routing::any(handler).layer(loopback().build().unwrap()),
        )
        .with_state(calls.clone());
    let addr = serve("127.0.0.1:0", app).await;
    let reply = send_raw(
        addr,
        b"GET /mails HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST"));
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn unsupported_media_type() {
    let calls = Calls::default();
    let addr = serve("127.0.0.1:0", app(loopback().build().unwrap(), &calls)).await;
    for ct in ["Content-Type: text/plain", "Content-Type: application/xml"] {
        let reply = send_raw(addr, &post_req("/mails", &[ct], b"{}")).await;
        assert_eq!(reply.status, 415, "{ct}");
    }
    let reply = send_raw(addr, &post_req("/mails", &[], b"{}")).await;
    assert_eq!(reply.status, 415);
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn declared_length_over_the_limit_is_refused_before_the_handler() {
    let calls = Calls::default();
    let addr = serve(
        "127.0.0.1:0",
        app(loopback().body_limit(100).build().unwrap(), &calls),
    )
    .await;
    let reply = send_raw(addr, &post_req("/mails", &[JSON], &[b' '; 101])).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (413, "the body is larger than allowed\n")
    );
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn body_exactly_at_the_limit_passes() {
    let calls = Calls::default();
    let body = fixture("shared/event-v2-json-queued.json");
    let addr = serve(
        "127.0.0.1:0",
        app(loopback().body_limit(body.len()).build().unwrap(), &calls),
    )
    .await;
    let reply = send_raw(addr, &post_req("/mails", &[JSON], &body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (a, b) = body.split_at(body.len() / 2);
    let reply = send_raw(addr, &post_chunked("/mails", &[JSON], &[a, b])).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(calls.count(), 2);
}

#[tokio::test]
async fn chunked_overflow_ends_as_413_whatever_the_handler_answers() {
    let calls = Calls::default();
    let layer = loopback().body_limit(64).build().unwrap();
    let app = Router::new()
        .route("/read", post(handler).layer(layer.clone()))
        .route("/naive", post(naive_handler).layer(layer))
        .with_state(calls.clone());
    let addr = serve("127.0.0.1:0", app).await;
    let chunks: [&[u8]; 3] = [&[b' '; 40], &[b' '; 40], b"{}"];
    for path in ["/read", "/naive"] {
        let reply = send_raw(addr, &post_chunked(path, &[JSON], &chunks)).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (413, "the body is larger than allowed\n"),
            "{path}"
        );
    }
    // The handlers ran (the size was not known in advance), and their
    // answers were replaced.
    assert_eq!(calls.count(), 2);
    // Multipart streams into the parser: over the limit is 413 as well.
    let (ct, body) = common::load("shared/inbound-multipart-attachment.multipart");
    let header = format!("Content-Type: {ct}");
    let reply = send_raw(addr, &post_chunked("/read", &[&header], &[&body[..]])).await;
    assert_eq!(reply.status, 413);
}

#[tokio::test]
async fn basic_auth_when_configured() {
    use base64::Engine as _;
    let calls = Calls::default();
    let layer = loopback()
        .basic_auth("cmc", "old")
        .basic_auth("cmc", "new")
        .build()
        .unwrap();
    let addr = serve("127.0.0.1:0", app(layer, &calls)).await;
    let body = fixture("shared/event-v2-json-queued.json");
    let reply = send_raw(addr, &post_req("/mails", &[JSON], &body)).await;
    assert_eq!(reply.status, 401);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic realm="));
    let wrong = format!(
        "Authorization: Basic {}",
        base64::engine::general_purpose::STANDARD.encode("cmc:nope")
    );
    assert_eq!(
        send_raw(addr, &post_req("/mails", &[JSON, &wrong], &body))
            .await
            .status,
        401
    );
    assert_eq!(calls.count(), 0);
    for password in ["old", "new"] {
        let auth = format!(
            "Authorization: Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("cmc:{password}"))
        );
        assert_eq!(
            send_raw(addr, &post_req("/mails", &[JSON, &auth], &body))
                .await
                .status,
            200
        );
    }
    assert_eq!(calls.count(), 2);
}

#[tokio::test]
async fn api_key_is_checked_when_the_body_is_read() {
    let calls = Calls::default();
    let layer = loopback().api_key("k3y-For-Tests").build().unwrap();
    let addr = serve("127.0.0.1:0", app(layer, &calls)).await;
    let (ct, with_key) = common::load("event-v2-multipart-bounces.multipart");
    let header = format!("Content-Type: {ct}");
    let reply = send_raw(addr, &post_req("/mails", &[&header], &with_key)).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "events 2 from 127.0.0.1")
    );
    let reply = send_raw(
        addr,
        &post_req(
            "/mails",
            &[JSON],
            &fixture("shared/event-v2-json-queued.json"),
        ),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (401, "missing or wrong api_key\n")
    );
    assert!(reply.header("www-authenticate").is_none());
    let wrong = fixture("event-v2-json-unknown-status-api-key.json");
    assert_eq!(
        send_raw(addr, &post_req("/mails", &[JSON], &wrong))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn missing_peer_address_is_a_500_and_never_let_through() {
    let calls = Calls::default();
    let addr = serve_without_connect_info(app(loopback().build().unwrap(), &calls)).await;
    let reply = send_raw(
        addr,
        &post_req(
            "/mails",
            &[JSON],
            &fixture("shared/event-v2-json-queued.json"),
        ),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (500, "the server could not determine the client address\n")
    );
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn statuses_are_configurable_per_reason() {
    let calls = Calls::default();
    let layer = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .status(Reason::ClientNotAllowed, StatusCode::NOT_FOUND)
        .build()
        .unwrap();
    let addr = serve("127.0.0.1:0", app(layer, &calls)).await;
    assert_eq!(
        send_raw(addr, &post_req("/mails", &[JSON], b"{}"))
            .await
            .status,
        404
    );
    let layer = loopback()
        .status(Reason::MalformedBody, StatusCode::UNPROCESSABLE_ENTITY)
        .build()
        .unwrap();
    let addr = serve("127.0.0.1:0", app(layer, &calls)).await;
    let reply = send_raw(addr, &post_req("/mails", &[JSON], b"{\"event_type\":")).await;
    assert_eq!(reply.status, 422);
    assert!(
        reply.body.starts_with("malformed webhook body: "),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn allowlist_can_be_replaced_while_serving() {
    let calls = Calls::default();
    let layer = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .build()
        .unwrap();
    let allowlist = layer.allowlist();
    let addr = serve("127.0.0.1:0", app(layer, &calls)).await;
    let body = fixture("shared/event-v2-json-queued.json");
    assert_eq!(
        send_raw(addr, &post_req("/mails", &[JSON], &body))
            .await
            .status,
        403
    );
    allowlist.replace("203.0.113.0/24, 127.0.0.1".parse().unwrap());
    assert_eq!(
        send_raw(addr, &post_req("/mails", &[JSON], &body))
            .await
            .status,
        200
    );
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn plain_hyper_server_with_a_socket_addr_extension() {
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;
    use tower::ServiceBuilder;

    let calls = Calls::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = loopback().build().unwrap();
    let counted = calls.clone();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let calls = counted.clone();
            let service = ServiceBuilder::new()
                .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer);
                    req
                })
                .layer(layer.clone())
                .service_fn(move |req| {
                    let calls = calls.clone();
                    async move {
                        calls.hit();
                        let text = match read_webhook(req).await {
                            Ok(Webhook::Events(b)) => format!("events {}", b.events.len()),
                            Ok(_) => "other".to_owned(),
                            Err(r) => r.to_string(),
                        };
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(text)),
                        ))
                    }
                });
            tokio::spawn(http1::Builder::new().serve_connection(
                TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            ));
        }
    });
    let reply = send_raw(
        addr,
        &post_req(
            "/",
            &[JSON],
            &fixture("shared/event-v2-form-two-records.form"),
        ),
    )
    .await;
    // A form body with a JSON content type: malformed, answered by the reader.
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.starts_with("malformed webhook body (400)"),
        "{}",
        reply.body
    );
    let reply = send_raw(
        addr,
        &post_req(
            "/",
            &["Content-Type: application/x-www-form-urlencoded"],
            &fixture("shared/event-v2-form-two-records.form"),
        ),
    )
    .await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "events 2"));
    assert_eq!(calls.count(), 2);
}
