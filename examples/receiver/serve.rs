//! Serving with the timeouts and caps an endpoint on the internet needs.
//!
//! `axum::serve` sets no timer: a client that opens a connection and never
//! finishes its headers holds it (and about 380 KiB of buffer) forever, and
//! it can do so from any address, since the allowlist is checked only once
//! the headers are complete. This loop serves the same router with:
//!
//! - a **header read timeout** (hyper's `header_read_timeout`, with a
//!   timer): a request's headers must arrive within it. It also closes
//!   idle keep-alive connections, since hyper starts it as soon as it
//!   waits for the next request on a connection;
//! - a **body timeout** (tower-http's `TimeoutLayer`, on the route): the
//!   whole request must be read and answered within it, or 408;
//! - a **cap on connections**: at the cap, no new connection is accepted
//!   until one closes (they wait in the kernel's backlog);
//! - a **smaller read buffer** (`max_buf_size`, 64 KiB instead of about
//!   400 KiB), which bounds what one unfinished header block can pin;
//! - keep-alive on, bounded by the header timeout, and a graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// The limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request's headers, and how
    /// long a keep-alive connection may stay idle.
    pub header_timeout: Duration,
    /// How long a request may take from its headers to its answer (the
    /// body must arrive within it): 408 after that.
    pub body_timeout: Duration,
    /// The most connections open at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

/// The most a connection buffers while it reads a request's headers.
const MAX_BUF_SIZE: usize = 64 * 1024;

/// Serves `router` on `listener` within `limits` until `shutdown`
/// completes; then stops accepting and gives open connections up to
/// `limits.body_timeout` to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let router = router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        http::StatusCode::REQUEST_TIMEOUT,
        limits.body_timeout,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Wait for a free slot before accepting, so that the cap holds.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait a moment and go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = router
            .clone()
            .map_request(move |mut request: http::Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true)
            .max_buf_size(MAX_BUF_SIZE)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.body_timeout) => {
            tracing::warn!("connections still open at shutdown were closed");
        }
    }
    Ok(())
}
