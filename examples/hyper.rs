//! A CMC webhook endpoint on plain hyper 1 and tower, without axum.
//!
//! ```text
//! cargo run --example hyper                      # listens on 127.0.0.1:8080, allows loopback
//! curl -H 'Content-Type: application/json' \
//!      --data-binary @tests/fixtures/shared/event-v2-json-queued.json http://127.0.0.1:8080/
//! ```
//!
//! Environment: `LISTEN` (default `127.0.0.1:8080`), `CMC_ALLOW` (allowed
//! CIDRs, default `127.0.0.0/8, ::1`), `CMC_TRUST_PROXY` (trusted proxy
//! CIDRs), `CMC_API_KEY`. Each connection's peer address is put into the
//! request extensions as a `SocketAddr`, where the layer finds it.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use cmc_webhook::{read_webhook, Webhook, WebhookLayer};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

/// The endpoint: read the webhook, print it, answer 200 (CMC wants 200;
/// an error status makes it try again).
async fn on_webhook<B>(request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let response = match read_webhook(request).await {
        Ok(Webhook::Events(batch)) => {
            for event in &batch.events {
                println!(
                    "{}",
                    serde_json::to_string(event).expect("events serialise")
                );
            }
            Response::new(Full::new(Bytes::from_static(b"ok\n")))
        }
        Ok(Webhook::Inbound(mail)) => {
            println!(
                "{}",
                serde_json::json!({"inbound": {"from": mail.envelope_from, "to": mail.envelope_to,
                    "subject": mail.subject, "attachments": mail.attachments.len()}})
            );
            Response::new(Full::new(Bytes::from_static(b"ok\n")))
        }
        Err(rejection) => {
            eprintln!("refused: {rejection}");
            rejection.into_http_response()
        }
    };
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let listen: SocketAddr = std::env::var("LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:8080".into())
        .parse()?;
    let mut builder = WebhookLayer::builder()
        .allow_cidrs(&std::env::var("CMC_ALLOW").unwrap_or_else(|_| "127.0.0.0/8, ::1".into()))?
        .trust_proxy_cidrs(&std::env::var("CMC_TRUST_PROXY").unwrap_or_default())?;
    if let Ok(key) = std::env::var("CMC_API_KEY") {
        builder = builder.api_key(key);
    }
    let layer = builder.build()?;

    let listener = TcpListener::bind(listen).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, peer) = listener.accept().await?;
        let service = ServiceBuilder::new()
            // Record the peer address where the layer looks for it.
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(peer);
                request
            })
            .layer(layer.clone())
            .service_fn(on_webhook);
        tokio::spawn(async move {
            let served = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
            if let Err(e) = served {
                eprintln!("connection from {peer}: {e}");
            }
        });
    }
}
