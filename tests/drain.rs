//! Early refusals a client can read: a client that writes its whole body
//! before it reads the answer (Apache HttpClient, CMC's client, does) gets
//! the 4xx or 413, not a reset connection, because a refusal reads the
//! rest of the body first, within bounds; a client that sends beyond them
//! is cut off.

mod common;

use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use cmc_webhook::{Webhook, WebhookLayer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn accept(webhook: Webhook) -> &'static str {
    let _ = webhook;
    "ok\n"
}

fn app(layer: WebhookLayer) -> Router {
    Router::new().route("/mails", post(accept).layer(layer))
}

fn layer(body_limit: usize) -> cmc_webhook::layer::WebhookLayerBuilder {
    WebhookLayer::builder()
        .allow_cidrs("127.0.0.0/8")
        .unwrap()
        .body_limit(body_limit)
}

/// Small socket buffers on both sides, so that the kernel cannot take in
/// a body the server stopped reading (loopback buffers hold megabytes,
/// which would hide the reset a real network shows).
const BUFFER: u32 = 16 * 1024;

/// Serves `app` on loopback with a small receive buffer.
async fn serve(app: Router) -> std::net::SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(BUFFER).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(64).unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

async fn connect(addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_send_buffer_size(BUFFER)?;
    socket.connect(addr).await
}

/// Writes the whole request, then reads the whole answer, as HttpClient
/// does; the status, or the error that stopped it.
async fn write_then_read(
    addr: std::net::SocketAddr,
    request: &[u8],
) -> Result<u16, std::io::Error> {
    let mut stream = connect(addr).await?;
    // In pieces, as a client streams a body.
    for piece in request.chunks(64 * 1024) {
        stream.write_all(piece).await?;
    }
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut reply))
        .await
        .expect("an answer within 20 s")?;
    let head = String::from_utf8_lossy(&reply);
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))
}

fn request(content_type: &str, body: &[u8]) -> Vec<u8> {
    common::http::post("/mails", &[&format!("Content-Type: {content_type}")], body)
}

/// One 64 KiB chunk of a chunked body, with its framing.
fn chunk_of_64k() -> Vec<u8> {
    [
        format!("{:x}\r\n", 64 * 1024).into_bytes(),
        vec![b'{'; 64 * 1024],
        b"\r\n".to_vec(),
    ]
    .concat()
}

/// 3 MiB of multipart whose first part is malformed: refused as soon as
/// that part is read.
fn malformed_first_part() -> Vec<u8> {
    let mut body = b"--b\r\nthis is not a header\r\n\r\nx\r\n--b\r\nContent-Disposition: form-data; name=\"pad\"\r\n\r\n".to_vec();
    body.resize(3 << 20, b'p');
    body.extend_from_slice(b"\r\n--b--\r\n");
    body
}

#[tokio::test]
async fn a_malformed_first_part_is_a_readable_400() {
    let addr = serve(app(layer(8 << 20).build().unwrap())).await;
    for _ in 0..5 {
        let status = write_then_read(
            addr,
            &request("multipart/form-data; boundary=b", &malformed_first_part()),
        )
        .await;
        assert_eq!(status.unwrap(), 400);
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_readable_413() {
    let addr = serve(app(layer(1 << 20).build().unwrap())).await;
    let body = vec![b'{'; 3 << 20];
    for _ in 0..5 {
        // Declared over the limit: refused by the layer before the body.
        let status = write_then_read(addr, &request("application/json", &body)).await;
        assert_eq!(status.unwrap(), 413);
        // Chunked, so that the limit trips while streaming.
        let chunked = common::http::post_chunked(
            "/mails",
            &["Content-Type: application/json"],
            &body.chunks(64 * 1024).collect::<Vec<_>>(),
        );
        assert_eq!(write_then_read(addr, &chunked).await.unwrap(), 413);
    }
}

#[tokio::test]
async fn a_client_sending_beyond_the_drain_bound_is_cut_off() {
    let gate = layer(1 << 20)
        .drain(2 << 20, Duration::from_secs(2))
        .build()
        .unwrap();
    let addr = serve(app(gate)).await;
    // Declared larger than the drain bound: not read at all.
    let body = vec![b'{'; 16 << 20];
    assert!(write_then_read(addr, &request("application/json", &body))
        .await
        .is_err());
    // Chunked and endless: read up to the bound, then cut off.
    let mut stream = connect(addr).await.unwrap();
    stream
        .write_all(b"POST /mails HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let chunk = chunk_of_64k();
    let mut sent = 0usize;
    let cut = loop {
        if let Err(e) = stream.write_all(&chunk).await {
            break e;
        }
        sent += chunk.len();
        assert!(sent < 256 << 20, "256 MiB accepted: never cut off");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not cut off after 30 s"
        );
    };
    assert!(
        matches!(
            cut.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "{cut}"
    );
    assert!(sent < 16 << 20, "{sent} bytes went through before the cut");
}

#[tokio::test]
async fn expect_100_continue_is_refused_before_the_body() {
    let addr = serve(app(layer(1 << 20).build().unwrap())).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /mails HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 3145728\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let mut reply = vec![0; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut reply))
        .await
        .expect("answered without the body")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
}

#[tokio::test]
async fn a_bare_status_from_the_handler_is_drained_too() {
    // A handler that answers 403 without a body and without reading the
    // request's: the response's size must not end it before the drain.
    let gate = layer(8 << 20).build().unwrap();
    let app = Router::new().route(
        "/mails",
        post(|| async { axum::http::StatusCode::FORBIDDEN }).layer(gate),
    );
    let addr = serve(app).await;
    let body = vec![b'{'; 3 << 20];
    for _ in 0..3 {
        let status = write_then_read(addr, &request("application/json", &body)).await;
        assert_eq!(status.unwrap(), 403);
    }
}

#[tokio::test]
async fn a_body_refused_after_100_continue_is_drained() {
    // The extractor read the body, so hyper sent 100 Continue and the
    // client sends it all: the 413 must be readable.
    let addr = serve(app(layer(1 << 20).build().unwrap())).await;
    let mut stream = connect(addr).await.unwrap();
    stream
        .write_all(b"POST /mails HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let mut interim = [0; 64];
    let n = stream.read(&mut interim).await.unwrap();
    assert!(String::from_utf8_lossy(&interim[..n]).starts_with("HTTP/1.1 100"));
    let chunk = chunk_of_64k();
    for _ in 0..48 {
        stream
            .write_all(&chunk)
            .await
            .expect("the whole 3 MiB is taken in");
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    // The body was read to its end, so the connection may stay open:
    // read the status line only.
    let mut reply = [0; 64];
    let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut reply))
        .await
        .expect("an answer within 20 s")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
}
