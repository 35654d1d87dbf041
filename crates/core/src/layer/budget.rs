//! [`InflightBudget`]: a bound on the request body bytes of all requests
//! in flight at once, shared by every route it is put on.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::request::declared_length;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What `Retry-After` says when the budget is spent, in seconds.
const RETRY_AFTER: &str = "5";

/// A tower layer that bounds the request body bytes held by all the
/// requests in flight at once, whatever their number: memory then grows
/// with this budget, not with connections times the body limit.
///
/// A request with a `Content-Length` reserves that many bytes (at most
/// the whole budget) before its body is read; one without (chunked)
/// reserves each frame's bytes as they arrive. Past the budget, the
/// request is answered `503 Service Unavailable` with `Retry-After: 5`
/// and `Connection: close` (its body unread), so that CMC sends it again
/// later; it is never buffered. The bytes are given back when the inner
/// service has answered (or the request is dropped).
///
/// Clones share one budget: put the same budget on every route (events
/// and inbound mails), inside the [`WebhookLayer`](crate::WebhookLayer),
/// so that requests the gate refuses (outside the allowlist, without
/// BASIC credentials, declaring a body over the limit, which get their
/// 403, 401 or 413) neither spend it nor wait for it.
/// Give it at least the largest body limit: a request reserves at most the
/// whole budget, so one such body is still taken when nothing else is in
/// flight. The budget counts the bodies only; what a service builds from
/// a body comes on top (the inbox holds at most about 4 times a body while
/// storing and reading it back).
///
/// ```
/// use axum::{routing::post, Router};
/// use cmc_webhook_core::{layer::InflightBudget, WebhookLayer};
/// use tower::ServiceBuilder;
///
/// async fn on_webhook(body: axum::body::Bytes) -> &'static str {
///     "ok"
/// }
///
/// # fn app() -> Result<Router, Box<dyn std::error::Error>> {
/// let gate = WebhookLayer::builder()
///     .allow_cidrs("203.0.113.0/24")?
///     .body_limit(25 << 20)
///     .build()?;
/// // At most 200 MiB of bodies in memory at once, on every route.
/// let budget = InflightBudget::new(200 << 20);
/// let app = Router::new().route(
///     "/mails",
///     post(on_webhook).layer(ServiceBuilder::new().layer(gate).layer(budget.clone())),
/// );
/// assert_eq!(budget.in_flight(), 0);
/// # Ok(app)
/// # }
/// ```
#[derive(Clone)]
pub struct InflightBudget {
    shared: Arc<Shared>,
}

struct Shared {
    total: usize,
    used: AtomicUsize,
    refused: AtomicU64,
}

impl InflightBudget {
    /// A budget of `bytes` request body bytes in flight at once (at least
    /// 1).
    ///
    /// ```
    /// let budget = cmc_webhook_core::layer::InflightBudget::new(64 << 20);
    /// assert_eq!(budget.total(), 64 << 20);
    /// ```
    pub fn new(bytes: usize) -> InflightBudget {
        InflightBudget {
            shared: Arc::new(Shared {
                total: bytes.max(1),
                used: AtomicUsize::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// The budget, in bytes.
    pub fn total(&self) -> usize {
        self.shared.total
    }

    /// The bytes reserved by the requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.shared.used.load(Ordering::Relaxed)
    }

    /// How many requests were answered 503 because the budget was spent.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for InflightBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InflightBudget")
            .field("total", &self.total())
            .field("in_flight", &self.in_flight())
            .field("refused", &self.refused())
            .finish()
    }
}

impl Shared {
    /// Takes `bytes` (at most the whole budget) if that many are free.
    fn try_take(&self, bytes: usize) -> Option<usize> {
        let bytes = bytes.min(self.total);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + bytes <= self.total).then_some(used + bytes)
            })
            .ok()
            .map(|_| bytes)
    }
}

/// The bytes one request holds; given back when the last of its holders
/// (the response future, the body) goes.
struct Reservation {
    shared: Arc<Shared>,
    bytes: AtomicUsize,
    /// Set when a chunked body's frame did not fit.
    spent: AtomicBool,
}

impl Reservation {
    fn grow(&self, bytes: usize) -> bool {
        match self.shared.try_take(bytes) {
            Some(taken) => {
                self.bytes.fetch_add(taken, Ordering::AcqRel);
                true
            }
            None => false,
        }
    }

    fn release(&self) {
        let bytes = self.bytes.swap(0, Ordering::AcqRel);
        self.shared.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release();
    }
}

impl<S> Layer<S> for InflightBudget {
    type Service = InflightBudgetService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InflightBudgetService {
            inner,
            budget: self.clone(),
        }
    }
}

/// The service an [`InflightBudget`] wraps around another.
#[derive(Clone, Debug)]
pub struct InflightBudgetService<S> {
    inner: S,
    budget: InflightBudget,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for InflightBudgetService<S>
where
    S: Service<Request<BudgetBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<Either<ResBody, Full<Bytes>>>;
    type Error = S::Error;
    type Future = BudgetFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.budget.shared;
        let reservation = Arc::new(Reservation {
            shared: shared.clone(),
            bytes: AtomicUsize::new(0),
            spent: AtomicBool::new(false),
        });
        let declared = declared_length(request.headers());
        if let Some(len) = declared {
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if !reservation.grow(len) {
                refused(shared, len);
                return BudgetFuture {
                    kind: FutureKind::Refused {
                        response: Some(busy()),
                    },
                };
            }
        }
        let (parts, body) = request.into_parts();
        let body = BudgetBody {
            inner: body,
            reservation: declared.is_none().then(|| reservation.clone()),
        };
        BudgetFuture {
            kind: FutureKind::Inner {
                future: self.inner.call(Request::from_parts(parts, body)),
                reservation: Some(reservation),
            },
        }
    }
}

fn refused(shared: &Shared, bytes: usize) {
    shared.refused.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        bytes,
        in_flight = shared.used.load(Ordering::Relaxed),
        budget = shared.total,
        "answered 503: the request bodies in flight would exceed the in-flight budget; CMC sends it again"
    );
}

fn busy() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(
        b"too many request bytes in flight; send it again later\n",
    )));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pin_project! {
    /// The response future of an [`InflightBudgetService`].
    pub struct BudgetFuture<F> {
        #[pin]
        kind: FutureKind<F>,
    }
}

pin_project! {
    #[project = FutureKindProj]
    enum FutureKind<F> {
        Inner {
            #[pin]
            future: F,
            reservation: Option<Arc<Reservation>>,
        },
        Refused {
            response: Option<Response<Full<Bytes>>>,
        },
    }
}

impl<F> fmt::Debug for BudgetFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetFuture").finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for BudgetFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<Either<ResBody, Full<Bytes>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutureKindProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .expect("polled after completion")
                .map(Either::Right))),
            FutureKindProj::Inner {
                future,
                reservation,
            } => {
                let answer = ready!(future.poll(cx));
                let spent = reservation.take().is_some_and(|r| {
                    r.release();
                    r.spent.load(Ordering::Acquire)
                });
                Poll::Ready(answer.map(|response| {
                    if spent {
                        // A chunked body ran past the budget: whatever the
                        // inner service made of its cut-off body, the
                        // answer is to come again.
                        busy().map(Either::Right)
                    } else {
                        response.map(Either::Left)
                    }
                }))
            }
        }
    }
}

pin_project! {
    /// The request body behind an [`InflightBudget`]: the original body,
    /// which reserves each frame's bytes when the request declared no
    /// length, and ends with an [`InflightBudgetSpent`] error once a frame
    /// does not fit.
    pub struct BudgetBody<B> {
        #[pin]
        inner: B,
        reservation: Option<Arc<Reservation>>,
    }
}

impl<B> fmt::Debug for BudgetBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetBody").finish_non_exhaustive()
    }
}

/// The error a [`BudgetBody`] ends with when the in-flight budget is
/// spent before the body's end (the request is then answered 503).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InflightBudgetSpent;

impl fmt::Display for InflightBudgetSpent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request bodies in flight exceed the in-flight budget")
    }
}

impl std::error::Error for InflightBudgetSpent {}

impl<B> Body for BudgetBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let Some(reservation) = this.reservation.as_ref() else {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        };
        match frame {
            Some(Ok(frame)) => {
                let len = frame.data_ref().map_or(0, Buf::remaining);
                if len > 0 && !reservation.grow(len) {
                    reservation.spent.store(true, Ordering::Release);
                    refused(&reservation.shared, len);
                    return Poll::Ready(Some(Err(Box::new(InflightBudgetSpent))));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
