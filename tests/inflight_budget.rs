//! The in-flight budget of request body bytes, with real concurrent
//! requests on a real server: requests held by the service keep their
//! bytes; one more past the budget is answered 503 with Retry-After at
//! once (its body unread), and taken again once the others are answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::{routing::post, Router};
use bytes::Bytes;
use cmc_webhook::layer::InflightBudget;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

const BODY: usize = 1 << 20;

/// A server whose one route reads the body, then waits for a permit of
/// `gate` before it answers 200.
async fn server(budget: InflightBudget, gate: Arc<Semaphore>) -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/hold",
            post(move |body: Bytes| {
                let gate = gate.clone();
                async move {
                    gate.acquire().await.unwrap().forget();
                    format!("{} bytes\n", body.len())
                }
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(4 * BODY))
        .layer(budget);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Sends a POST of `len` bytes (with a Content-Length, or chunked) and
/// returns the answer's head and body as text.
async fn post_body(addr: std::net::SocketAddr, len: usize, chunked: bool) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = vec![b'x'; len];
    let head = if chunked {
        "POST /hold HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_string()
    } else {
        format!("POST /hold HTTP/1.1\r\nhost: x\r\ncontent-length: {len}\r\n\r\n")
    };
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (and close) before the body is sent: a
    // refused request's body is never read.
    let sent = async {
        if chunked {
            for piece in body.chunks(64 << 10) {
                stream
                    .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                    .await?;
                stream.write_all(piece).await?;
                stream.write_all(b"\r\n").await?;
            }
            stream.write_all(b"0\r\n\r\n").await
        } else {
            stream.write_all(&body).await
        }
    };
    let _ = sent.await;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&answer);
                if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                    let length = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    });
                    if length.is_some_and(|l| rest.len() >= l) {
                        break;
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_budget_requests_are_answered_503_with_retry_after_until_bytes_come_back() {
    let budget = InflightBudget::new(2 * BODY + BODY / 2);
    let gate = Arc::new(Semaphore::new(0));
    let addr = server(budget.clone(), gate.clone()).await;

    // Two bodies held by the service: 2 MiB of the 2.5 MiB budget.
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(post_body(addr, BODY, false)))
        .collect();
    until("both requests are in flight", || {
        budget.in_flight() == 2 * BODY
    })
    .await;

    // A third with a Content-Length: refused at once, its body unread.
    let refused = post_body(addr, BODY, false).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let lower = refused.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 5"), "{refused}");
    assert!(lower.contains("connection: close"), "{refused}");
    // A chunked one: taken frame by frame until it does not fit.
    let chunked = post_body(addr, BODY, true).await;
    assert!(chunked.starts_with("HTTP/1.1 503"), "{chunked}");
    assert!(
        chunked.to_ascii_lowercase().contains("retry-after: 5"),
        "{chunked}"
    );
    assert_eq!(budget.refused(), 2);
    until("the refused chunked body's bytes came back", || {
        budget.in_flight() == 2 * BODY
    })
    .await;

    // The held ones are answered; their bytes come back.
    gate.add_permits(2);
    for answer in held {
        let answer = answer.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with(&format!("{BODY} bytes\n")), "{answer}");
    }
    until("the budget is free again", || budget.in_flight() == 0).await;

    // Sent again, both kinds are taken.
    gate.add_permits(2);
    let again = post_body(addr, BODY, false).await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    let again = post_body(addr, BODY, true).await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    until("the budget is free again", || budget.in_flight() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_larger_than_the_whole_budget_is_taken_when_nothing_else_is_in_flight() {
    let budget = InflightBudget::new(BODY / 2);
    let gate = Arc::new(Semaphore::new(4));
    let addr = server(budget.clone(), gate).await;
    let answer = post_body(addr, BODY, false).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    until("the budget is free again", || budget.in_flight() == 0).await;
}
