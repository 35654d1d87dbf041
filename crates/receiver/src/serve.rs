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
//! - a **write timeout**: a connection whose client stops reading (say,
//!   after pipelining thousands of requests) is closed once a write has
//!   made no progress for the body timeout; no timer of hyper's covers it;
//! - **bounded connections**: at most `max_requests_per_connection`
//!   requests, and `max_connection_age`, after which the connection is
//!   closed once its current request is answered (the layer's refusals
//!   close theirs at once). Together they keep any client from holding a
//!   connection slot for long;
//! - a **cap on connections**: at the cap, no new connection is accepted
//!   until one closes (they wait in the kernel's backlog);
//! - a **smaller read buffer** (`max_buf_size`, 64 KiB instead of about
//!   400 KiB), which bounds what one unfinished header block can pin;
//! - a graceful shutdown;
//! - a **back-off on failed accepts** (out of file descriptors): the
//!   loop waits longer after each failure in a row, up to a second, and
//!   logs at most one line per [`AcceptBackoff::LOG_EVERY`] with the
//!   count of failures, never a tight loop of log lines.
//!
//! The metrics listener ([`metrics_router`]) is served by the same loop,
//! with the same timeouts and its own, smaller, connection cap.

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

/// The limits of [`serve`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request's headers, and how
    /// long a keep-alive connection may stay idle.
    pub header_timeout: Duration,
    /// How long a request may take from its headers to its answer (the
    /// body must arrive within it): 408 after that. Also how long a write
    /// to a client may make no progress.
    pub body_timeout: Duration,
    /// The most connections open at once.
    pub max_connections: usize,
    /// The most requests one connection may carry.
    pub max_requests_per_connection: usize,
    /// How long a connection may stay open.
    pub max_connection_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_connections: 512,
            max_requests_per_connection: 100,
            max_connection_age: Duration::from_secs(60),
        }
    }
}

/// The most a connection buffers while it reads a request's headers.
const MAX_BUF_SIZE: usize = 64 * 1024;

/// Answers by status, counted outside every layer (408s of the body
/// timeout included).
pub type Tally = Arc<std::sync::Mutex<std::collections::BTreeMap<u16, u64>>>;

/// Serves `router` on `listener` within `limits` until `shutdown`
/// completes; then stops accepting and gives open connections up to
/// `limits.body_timeout` to finish their requests.
#[allow(dead_code)] // the tests serve without counting
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    serve_counting(listener, router, limits, shutdown, Tally::default()).await
}

/// [`serve`], counting the answers by status in `tally`.
pub async fn serve_counting(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
    tally: Tally,
) -> io::Result<()> {
    serve_with(listener, router, limits, shutdown, tally, None).await
}

/// [`serve_counting`], over HTTPS when `tls` is given: each connection
/// makes its TLS handshake (within `limits.header_timeout`) with the pair
/// `tls` holds at that moment, so that a [reload](crate::tls::Tls::reload)
/// takes effect for new connections while open ones finish with the
/// pair they began with.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()>,
    tally: Tally,
    tls: Option<&crate::tls::Tls>,
) -> io::Result<()> {
    let router = router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        http::StatusCode::REQUEST_TIMEOUT,
        limits.body_timeout,
    ));
    let max_connections = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = AcceptBackoff::default();
    let acceptor = tls.map(crate::tls::Tls::acceptor);
    loop {
        // Wait for a free slot before accepting, so that the cap holds.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff.accepted();
                    accepted
                }
                Err(e) => {
                    // Out of file descriptors, or a connection reset before
                    // it was accepted: wait, longer each time, and go on.
                    let (wait, log) = backoff.failed(Instant::now());
                    if let Some(failures) = log {
                        tracing::warn!(
                            error = %e,
                            failures,
                            "accept failed; waiting before the next (out of file descriptors? \
                             raise `ulimit -n` or lower --max-connections)"
                        );
                    }
                    drop(permit);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = &mut shutdown => break,
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let served = Arc::new(AtomicUsize::new(0));
        let max_requests = limits.max_requests_per_connection.max(1);
        let tally = tally.clone();
        let service = router
            .clone()
            .map_request(move |mut request: http::Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            })
            .map_response(move |mut response: axum::response::Response| {
                *tally
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(response.status().as_u16())
                    .or_default() += 1;
                if served.fetch_add(1, Ordering::Relaxed) + 1 >= max_requests {
                    response.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                response
            });
        let io = WriteDeadline::new(stream, limits.body_timeout);
        let mut stopping = stopping.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                None => connection(io, service, limits, stopping, peer).await,
                Some(acceptor) => {
                    // The handshake, like a request's headers, must be done
                    // within the header timeout.
                    let handshake = tokio::select! {
                        done = tokio::time::timeout(limits.header_timeout, acceptor.accept(io)) => done,
                        _ = stopping.wait_for(|stop| *stop) => {
                            drop(permit);
                            return;
                        }
                    };
                    match handshake {
                        Ok(Ok(tls)) => connection(tls, service, limits, stopping, peer).await,
                        // Scanners and plain-HTTP clients fail here all day:
                        // not worth more than a debug line.
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(peer = %peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    // Stop: tell the connections, then wait until every slot is free again.
    let _ = stop.send(true);
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.body_timeout, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open at shutdown were closed");
    }
    Ok(())
}

/// Serves one connection (plain or TLS) until it ends, or until its age
/// or the shutdown closes it after its current request.
async fn connection<I, S>(
    io: I,
    service: S,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<
            http::Request<Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_BUF_SIZE)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    let mut connection = std::pin::pin!(connection);
    let ended = tokio::select! {
        result = connection.as_mut() => Some(result),
        () = tokio::time::sleep(limits.max_connection_age) => None,
        _ = stopping.wait_for(|stop| *stop) => None,
    };
    let result = match ended {
        Some(result) => result,
        None => {
            // Answer the current request, then close; drop the
            // connection if that takes longer than the body timeout.
            connection.as_mut().graceful_shutdown();
            tokio::time::timeout(limits.body_timeout, connection.as_mut())
                .await
                .unwrap_or(Ok(()))
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

/// The waits and log lines of failed accepts: the first failure waits
/// [`AcceptBackoff::FIRST`], each further one in a row twice as long, up to
/// [`AcceptBackoff::MAX`]; a line is logged for the first failure and then
/// at most once per [`AcceptBackoff::LOG_EVERY`], with the failures since.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    in_a_row: u32,
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl AcceptBackoff {
    /// The first pause after a failed accept.
    pub const FIRST: Duration = Duration::from_millis(10);
    /// The longest pause, reached by doubling.
    pub const MAX: Duration = Duration::from_secs(1);
    /// At most one log line per this long.
    pub const LOG_EVERY: Duration = Duration::from_secs(10);

    /// A failed accept at `now`: how long to wait, and the number of
    /// failures to log (`None`: no line now).
    pub fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        let wait = Self::FIRST
            .saturating_mul(1 << self.in_a_row.min(16))
            .min(Self::MAX);
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.unlogged += 1;
        let log = match self.logged_at {
            Some(at) if now.saturating_duration_since(at) < Self::LOG_EVERY => None,
            _ => {
                self.logged_at = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        };
        (wait, log)
    }

    /// An accept succeeded: the next failure waits the shortest again.
    pub fn accepted(&mut self) {
        self.in_a_row = 0;
    }
}

/// The most connections the metrics listener keeps open (a scraper needs
/// one): idle or half-open connections beyond it wait in the kernel's
/// backlog, and cannot take the descriptors the webhooks need.
pub const METRICS_MAX_CONNECTIONS: usize = 16;

/// The metrics endpoint: `GET /metrics` answers `render()` in
/// Prometheus' text format; another path is 404, another method 405.
/// With `auth`, BASIC credentials are required (401 otherwise; the
/// path and method are checked first, so a 401 says nothing more).
/// Serve it with [`serve`], with the main listener's limits and
/// [`METRICS_MAX_CONNECTIONS`].
pub fn metrics_router(
    render: Arc<dyn Fn() -> String + Send + Sync>,
    auth: Vec<cmc_webhook_core::auth::BasicCredentials>,
) -> Router {
    use axum::response::IntoResponse as _;
    let auth = Arc::new(auth);
    let metrics = move |headers: http::HeaderMap| {
        let render = render.clone();
        let auth = auth.clone();
        async move {
            if !auth.is_empty()
                && !cmc_webhook_core::auth::BasicCredentials::any_match(
                    &auth,
                    headers.get(http::header::AUTHORIZATION),
                )
            {
                return (
                    http::StatusCode::UNAUTHORIZED,
                    [(http::header::WWW_AUTHENTICATE, "Basic realm=\"metrics\"")],
                    "unauthorized\n",
                )
                    .into_response();
            }
            (
                [(
                    http::header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                render(),
            )
                .into_response()
        }
    };
    Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .fallback(|| async { (http::StatusCode::NOT_FOUND, "not found\n") })
}

/// A stream whose writes fail with `TimedOut` once one has made no
/// progress for `timeout`: the peer stopped reading.
pub struct WriteDeadline<S> {
    inner: S,
    sleep: Pin<Box<Sleep>>,
    armed: bool,
    timeout: Duration,
}

impl<S> std::fmt::Debug for WriteDeadline<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteDeadline")
            .field("armed", &self.armed)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<S> WriteDeadline<S> {
    /// `inner`, whose writes fail when one makes no progress for `timeout`.
    pub fn new(inner: S, timeout: Duration) -> Self {
        WriteDeadline {
            inner,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
            timeout,
        }
    }
}

/// After a write returned `Pending`: starts the clock if it is not
/// running, and fails once it has run out.
fn stalled<T>(
    sleep: &mut Pin<Box<Sleep>>,
    armed: &mut bool,
    timeout: Duration,
    cx: &mut Context<'_>,
) -> Poll<io::Result<T>> {
    if !*armed {
        sleep.as_mut().reset(Instant::now() + timeout);
        *armed = true;
    }
    match sleep.as_mut().poll(cx) {
        Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading",
        ))),
        Poll::Pending => Poll::Pending,
    }
}

/// Runs one write operation of the inner stream under the deadline.
macro_rules! deadline {
    ($self:ident, $cx:ident, |$inner:ident| $op:expr) => {{
        let this = $self.get_mut();
        let $inner = Pin::new(&mut this.inner);
        match $op {
            Poll::Pending => stalled(&mut this.sleep, &mut this.armed, this.timeout, $cx),
            ready => {
                this.armed = false;
                ready
            }
        }
    }};
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        deadline!(self, cx, |inner| inner.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        deadline!(self, cx, |inner| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        deadline!(self, cx, |inner| inner.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        deadline!(self, cx, |inner| inner.poll_shutdown(cx))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}
