//! The layer's response body can be boxed as plain hyper users box theirs:
//! `http_body_util::BodyExt::boxed` needs `Send + Sync + 'static`, also on a
//! refusal whose request body is drained behind the response.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt};

use cmc_webhook_core::WebhookLayer;
use cmc_webhook_core::layer::{RequestBody, ResponseBody};

fn send_sync<T: Send + Sync + 'static>() {}

#[derive(Clone, Copy)]
struct Peer(IpAddr);

async fn answer(
    status: StatusCode,
    peer: Ipv4Addr,
    body: &'static str,
) -> (StatusCode, BoxBody<Bytes, Infallible>) {
    let layer = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .peer_addr(|ext: &http::Extensions| ext.get::<Peer>().map(|p| p.0))
        .build()
        .unwrap();
    let inner = tower::service_fn(move |_req: Request<RequestBody<Full<Bytes>>>| async move {
        let mut response = Response::new(Full::new(Bytes::from_static(b"stored")));
        *response.status_mut() = status;
        Ok::<_, Infallible>(response)
    });
    let mut request = Request::post("/mails")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    request.extensions_mut().insert(Peer(IpAddr::V4(peer)));
    let response = layer.layer(inner).oneshot(request).await.unwrap();
    let status = response.status();
    // What a hyper service that answers with boxed bodies writes.
    (status, response.into_body().boxed())
}

#[test]
fn the_response_body_is_send_and_sync() {
    send_sync::<ResponseBody<Full<Bytes>>>();
    send_sync::<ResponseBody<BoxBody<Bytes, Infallible>>>();
}

#[tokio::test]
async fn admitted_and_refused_responses_box() {
    let (status, body) = answer(StatusCode::OK, Ipv4Addr::new(203, 0, 113, 9), "{}").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.collect().await.unwrap().to_bytes(), "stored");

    // Refused, with a request body left to drain behind the response.
    let (status, body) = answer(StatusCode::OK, Ipv4Addr::new(198, 51, 100, 1), "{}").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    body.collect().await.unwrap();
}
