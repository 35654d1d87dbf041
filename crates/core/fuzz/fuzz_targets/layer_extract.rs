//! The layer and the `Webhook` extractor end to end through
//! `tower::ServiceExt::oneshot`: any request head and body gets one of the
//! documented statuses, never a panic and never a 500 (the peer address is
//! always set), and the handler runs only for requests it may see.
#![no_main]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::routing::any;
use axum::Router;
use cmc_webhook_core::{Webhook, WebhookLayer};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    content_type: Option<u8>,
    custom_content_type: String,
    forwarded_for: Option<String>,
    authorization: Option<String>,
    api_key_in_body: bool,
    /// Mostly an allowed peer, so that most inputs reach the extractor.
    peer: u8,
    peer_other: [u8; 4],
    body: Vec<u8>,
}

const TYPES: [&str; 5] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=FZ",
    "multipart/form-data",
    "text/plain",
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().unwrap())
}

fuzz_target!(|input: Input| {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let layer = WebhookLayer::builder()
        .allow_cidrs("127.0.0.0/8, 10.0.0.0/8")
        .unwrap()
        .trust_proxy("10.0.0.0/8".parse().unwrap())
        .body_limit(64 << 10)
        .max_parts(32)
        .api_key("k")
        .build()
        .unwrap();
    let app = Router::new().route(
        "/",
        any(move |webhook: Webhook| async move {
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = format!("{webhook:?}");
            "ok"
        })
        .layer(layer),
    );
    let method = ["POST", "POST", "POST", "GET", "PUT", "post"][input.method as usize % 6];
    let mut builder = http::Request::builder().method(method).uri("/");
    let content_type = match input.content_type {
        Some(i) => TYPES[i as usize % TYPES.len()].to_owned(),
        None => input.custom_content_type.clone(),
    };
    builder = builder.header("content-type", content_type.as_str());
    if let Some(xff) = &input.forwarded_for {
        builder = builder.header("x-forwarded-for", xff.as_str());
    }
    if let Some(auth) = &input.authorization {
        builder = builder.header("authorization", auth.as_str());
    }
    let mut body = input.body.clone();
    if input.api_key_in_body {
        body.extend_from_slice(b"&api_key=k");
    }
    let Ok(mut request) = builder.body(Body::from(body)) else { return };
    let ip = match input.peer % 4 {
        0 | 1 => [127, 0, 0, 1],
        2 => [10, 0, 0, 1], // a trusted proxy: the forwarding header decides
        _ => input.peer_other,
    };
    let peer = std::net::SocketAddr::from((ip, 4000));
    request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    let response = runtime().block_on(app.oneshot(request)).unwrap();
    let status = response.status().as_u16();
    assert!(
        matches!(status, 200 | 400 | 401 | 403 | 405 | 413 | 415),
        "unexpected status {status}"
    );
    if status == 200 {
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    } else {
        assert_eq!(calls.load(Ordering::SeqCst), 0, "handler ran for a {status}");
    }
});
