//! Receiving into the inbox: [`Receive`], a tower service that reads a
//! webhook, stores it, and answers 200 only after the commit; and the
//! writer task that commits concurrent requests together.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::Full;
use tokio::sync::{mpsc, oneshot, watch};

use super::Inbox;
use super::error::InboxError;
use super::ops::Receipt;
use super::rows::Arrival;
use super::store::Store;
use cmc_webhook_core::client_ip::ClientIp;

/// One request's rows, waiting for the writer.
pub(crate) struct Pending {
    pub arrival: Arrival,
    pub reply: oneshot::Sender<Result<Receipt, InboxError>>,
}

/// The most requests one commit takes.
const MAX_GROUP: usize = 256;
/// The most rows one commit takes (a request's rows are never split).
const MAX_GROUP_ROWS: usize = 20_000;

/// The writer: takes the requests that arrived while it was committing
/// and stores them in one transaction (group commit), then answers each
/// and wakes the workers.
pub(crate) async fn write_loop(
    store: Store,
    mut queue: mpsc::Receiver<Pending>,
    wake: watch::Sender<u64>,
) {
    while let Some(first) = queue.recv().await {
        let mut rows = first.arrival.rows();
        let mut group = vec![first];
        while group.len() < MAX_GROUP && rows < MAX_GROUP_ROWS {
            match queue.try_recv() {
                Ok(next) => {
                    rows += next.arrival.rows();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let arrivals: Vec<&Arrival> = group.iter().map(|p| &p.arrival).collect();
        match store.insert(&arrivals).await {
            Ok(receipts) => {
                for (pending, receipt) in group.into_iter().zip(receipts) {
                    let _ = pending.reply.send(Ok(receipt));
                }
                wake.send_modify(|n| *n = n.wrapping_add(1));
            }
            Err(e) if group.len() == 1 || !e.is_statement_error() => {
                for pending in group {
                    let _ = pending.reply.send(Err(e.clone()));
                }
            }
            Err(_) => {
                // One request's rows may be what failed the group (a
                // statement error, of any class but those that mean the
                // store is unavailable): each is stored on its own, so
                // that only that one is answered 503.
                let mut stored = false;
                for pending in group {
                    let result = store
                        .insert(&[&pending.arrival])
                        .await
                        .map(|mut r| r.remove(0));
                    stored |= result.is_ok();
                    let _ = pending.reply.send(result);
                }
                if stored {
                    wake.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        }
    }
}

/// A tower service that stores each webhook in the inbox and answers `200
/// ok` once it is committed: the endpoint of an application that receives
/// CMC through the inbox. Made by [`Inbox::receive`].
///
/// It reads the request as [`read_webhook`](cmc_webhook_core::read_webhook) does
/// (within the [`Policy`](cmc_webhook_core::Policy) the [`WebhookLayer`] put in the
/// request, refusals answered with their status), and takes the client
/// address from the layer's [`ClientIp`]. Put it behind the layer: the
/// layer decides who may call.
///
/// - Events already stored (CMC sends batches again) are counted and
///   answered 200, not stored twice.
/// - When the store fails, it answers `503 Service Unavailable` and logs
///   why, so that CMC sends the webhook again. Nothing that was not
///   committed is acknowledged.
///
/// ```
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
    let webhook = match cmc_webhook_core::read_webhook(request).await {
        Ok(webhook) => webhook,
        Err(rejection) => return rejection.into_http_response(),
    };
    match inbox.store(webhook, client).await {
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
