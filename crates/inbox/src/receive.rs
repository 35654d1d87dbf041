//! Receiving into the inbox: [`Receive`], a tower service that reads a
//! webhook, stores it, and answers 200 only after the commit (the writer
//! task that commits concurrent requests together is in `commit.rs`).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::Full;

use crate::inbox::Inbox;
use crate::raw::tee::Tee;
use crate::raw::types::Headers;
use cmc_webhook_core::client_ip::ClientIp;
use cmc_webhook_core::{Source, Sourced};

impl Inbox {
    /// The tower service that stores webhooks; see [`Receive`].
    pub fn receive(&self) -> Receive {
        Receive::new(self.clone())
    }
}

/// A tower service that stores each webhook in the inbox and answers `200
/// ok` once it is committed: the endpoint of an application that receives
/// CMC through the inbox. Made by [`Inbox::receive`].
///
/// It reads the request as [`read_sourced_webhook`](cmc_webhook_core::read_sourced_webhook) does
/// (within the [`Policy`](cmc_webhook_core::Policy) the [`WebhookLayer`] put in the
/// request, refusals answered with their status), and takes the client
/// address from the layer's [`ClientIp`]. Put it behind the layer: the
/// layer decides who may call, and from which of its
/// [sources](cmc_webhook_core::WebhookLayerBuilder::source) (CMC
/// accounts): each row records the source's name (`default` for a layer
/// configured for one account).
///
/// - Events already stored (CMC sends batches again) are counted and
///   answered 200, not stored twice.
/// - When the store fails, it answers `503 Service Unavailable` and logs
///   why, so that CMC sends the webhook again. Nothing that was not
///   committed is acknowledged.
///
#[cfg_attr(feature = "sqlite", doc = "```")]
#[cfg_attr(not(feature = "sqlite"), doc = "```ignore")]
/// use axum::{routing::post_service, Router};
/// use cmc_webhook_core::WebhookLayer;
/// use cmc_webhook_inbox::Inbox;
///
/// # async fn app(dir: &std::path::Path) -> Result<Router, Box<dyn std::error::Error>> {
/// let inbox = Inbox::sqlite(dir.join("cmc-inbox.sqlite3")).open().await?;
/// let gate = WebhookLayer::builder().allow("203.0.113.0/24".parse::<ipnet::IpNet>()?).build()?;
/// let app = Router::new().route("/mails", post_service(inbox.receive()).layer(gate));
/// # Ok(app)
/// # }
/// ```
///
/// [`WebhookLayer`]: cmc_webhook_core::WebhookLayer
#[derive(Debug, Clone)]
pub struct Receive {
    inbox: Inbox,
}

impl Receive {
    pub(crate) fn new(inbox: Inbox) -> Receive {
        Receive { inbox }
    }
}

impl<B> tower_service::Service<Request<B>> for Receive
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture {
        let inbox = self.inbox.clone();
        ResponseFuture {
            inner: Box::pin(async move { Ok(receive(inbox, request).await) }),
        }
    }
}

type Answer = Result<Response<Full<Bytes>>, Infallible>;

/// The response future of [`Receive`].
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = Answer> + Send>>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Answer;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

async fn receive<B>(inbox: Inbox, request: Request<B>) -> Response<Full<Bytes>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let client = request.extensions().get::<ClientIp>().map(|c| c.0);
    if !inbox.inner.raw.keep {
        let webhook = match cmc_webhook_core::read_sourced_webhook(request).await {
            Ok(webhook) => webhook,
            Err(rejection) => return rejection.into_http_response(),
        };
        return stored(inbox.store_sourced(webhook, client).await);
    }
    // The source the layer decided from the request's head, if it did
    // (kept with a refused body).
    let decided = request.extensions().get::<Source>().cloned();
    // The body as it arrived is recorded while the parser reads it, for
    // the raw request kept with the rows (or with the refusal).
    let headers = Headers::of(request.headers());
    let (parts, body) = request.into_parts();
    let (body, record) = Tee::new(body);
    let seen = move || {
        record
            .lock()
            .map(|mut seen| std::mem::take(&mut *seen).into_bytes())
            .unwrap_or_default()
    };
    let request = Request::from_parts(parts, body);
    let Sourced(source, webhook) = match cmc_webhook_core::read_sourced_webhook(request).await {
        Ok(webhook) => webhook,
        Err(rejection) => {
            if rejection.status() == StatusCode::BAD_REQUEST {
                inbox.keep_refused(
                    seen(),
                    headers,
                    client,
                    rejection.to_string(),
                    decided.as_ref().map(Source::name),
                );
            }
            return rejection.into_http_response();
        }
    };
    stored(
        inbox
            .store_kept(source.name(), webhook, client, Some((seen(), headers)))
            .await,
    )
}

/// The answer once the store is done: 200, or 503 so that CMC sends the
/// webhook again.
fn stored(result: Result<crate::ops::Receipt, crate::InboxError>) -> Response<Full<Bytes>> {
    match result {
        Ok(receipt) => {
            tracing::debug!(
                stored = receipt.stored,
                repeated = receipt.repeated,
                "webhook stored"
            );
            text(StatusCode::OK, "ok\n")
        }
        Err(e) => {
            tracing::error!(error = %e, "the inbox could not store a webhook: answered 503, CMC will send it again");
            let mut response = text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the webhook could not be stored; send it again\n",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            response
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
