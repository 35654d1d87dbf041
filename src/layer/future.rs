//! The response future of a [`WebhookService`](super::WebhookService).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::drain::{Drain, Slot};
use super::Config;
use crate::rejection::{Reason, Rejection};

pin_project! {
    /// The response future of a [`WebhookService`](super::WebhookService):
    /// the inner service's response, or the layer's refusal.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
        span: tracing::Span,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner {
            #[pin]
            future: F,
            tripped: Arc<AtomicBool>,
            config: Arc<Config>,
            slot: Slot,
        },
        Refused {
            response: Option<(Response<Full<Bytes>>, Option<Drain>)>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(
        future: F,
        tripped: Arc<AtomicBool>,
        config: Arc<Config>,
        slot: Slot,
        span: tracing::Span,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Inner {
                future,
                tripped,
                config,
                slot,
            },
            span,
        }
    }

    pub(crate) fn refused(
        response: Response<Full<Bytes>>,
        drain: Option<Drain>,
        span: tracing::Span,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Refused {
                response: Some((response, drain)),
            },
            span,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        match this.kind.project() {
            KindProj::Refused { response } => {
                let (response, drain) = response.take().expect("polled after completion");
                Poll::Ready(Ok(
                    response.map(|body| ResponseBody::refused(body).draining(drain))
                ))
            }
            KindProj::Inner {
                future,
                tripped,
                config,
                slot,
            } => {
                let response = ready!(future.poll(cx))?;
                // The rest of a body the inner service dropped unread, for
                // a refusal to drain before it is read.
                let drain = || slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                if tripped.load(Ordering::Relaxed) {
                    // The body went over the limit while streaming: answer 413
                    // whatever the handler made of the error.
                    tracing::warn!(
                        reason = %Reason::PayloadTooLarge,
                        limit = config.policy.limit(),
                        "refused CMC webhook request"
                    );
                    this.span.record("decision", "refused: body over the limit");
                    let refusal = config
                        .policy
                        .reject(Rejection::new(Reason::PayloadTooLarge));
                    let drain = drain();
                    return Poll::Ready(Ok(refusal
                        .into_http_response()
                        .map(|body| ResponseBody::refused(body).draining(drain))));
                }
                let drain = response.status().is_client_error().then(drain).flatten();
                Poll::Ready(Ok(
                    response.map(|body| ResponseBody::inner(body).draining(drain))
                ))
            }
        }
    }
}
