//! The response future of a [`WebhookService`](super::WebhookService).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use pin_project_lite::pin_project;

use super::body::ResponseBody;
use super::config::Config;
use super::drain::{Drain, Slot};
use crate::Source;
use crate::rejection::{Reason, Refused, Rejection, log_refusal};
use crate::request::ReadReport;
use crate::telemetry::Outcome;

pin_project! {
    /// The response future of a [`WebhookService`](super::WebhookService):
    /// the inner service's response, or the layer's refusal.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
        span: tracing::Span,
        // The request's client and peer while it waits for the inner
        // service; taken when it is answered. Dropped with it still there:
        // the request was abandoned (a timeout around the layer, or the
        // client hung up), which is logged.
        pending: Option<(IpAddr, IpAddr)>,
        // The source the gate decided from the head, for the metrics.
        source: Option<Source>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some((peer, client)) = this.pending.take() {
                let _entered = this.span.enter();
                tracing::warn!(
                    client = %client,
                    peer = %peer,
                    "CMC webhook request dropped before it was answered: a timeout around the layer, \
                     or the client closed the connection"
                );
                crate::telemetry::request(Outcome::Abandoned, None, this.source.as_ref());
            }
        }
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
            addresses: (IpAddr, IpAddr, bool),
            report: ReadReport,
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
        // The peer, the client, whether it is listed, and the source the
        // head decided.
        (addresses, source): ((IpAddr, IpAddr, bool), Option<Source>),
        report: ReadReport,
    ) -> Self {
        ResponseFuture {
            kind: Kind::Inner {
                future,
                tripped,
                config,
                slot,
                addresses,
                report,
            },
            span,
            pending: Some((addresses.0, addresses.1)),
            source,
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
            pending: None,
            source: None,
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
                let Some((response, drain)) = response.take() else {
                    panic!("ResponseFuture polled after completion");
                };
                Poll::Ready(Ok(
                    response.map(|body| ResponseBody::refused(body).draining(drain))
                ))
            }
            KindProj::Inner {
                future,
                tripped,
                config,
                slot,
                addresses: &mut (peer, client, listed),
                report,
            } => {
                let response = ready!(future.poll(cx));
                *this.pending = None;
                let response = match response {
                    Ok(response) => response,
                    Err(e) => {
                        // The inner service failed: the server answers (500
                        // in axum and hyper), not this layer.
                        crate::telemetry::request(Outcome::Failed, None, this.source.as_ref());
                        this.span.record("otel.status_code", "ERROR");
                        return Poll::Ready(Err(e));
                    }
                };
                // The rest of a body the inner service dropped unread, for
                // a refusal to drain before it is read.
                let drain = || slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                if tripped.load(Ordering::Relaxed) {
                    // The body went over the limit while streaming: answer 413
                    // whatever the handler made of the error.
                    let reason = Reason::PayloadTooLarge;
                    let refusal = config.policy.reject(Rejection::new(reason));
                    let drain = drain();
                    let response = refusal.into_http_response();
                    this.span
                        .record("http.response.status_code", response.status().as_u16());
                    log_refusal(reason, Some(client), Some(peer), None, None);
                    refused(this.span, reason, this.source.as_ref());
                    return Poll::Ready(Ok(
                        response.map(|body| ResponseBody::refused(body).draining(drain))
                    ));
                }
                let status = response.status();
                this.span
                    .record("http.response.status_code", status.as_u16());
                // What the body reader said, if it read the body: a refusal
                // counts even when the handler answered something else.
                let read = report.take();
                let refused_by = response
                    .extensions()
                    .get::<Refused>()
                    .cloned()
                    .or_else(|| read.clone().and_then(Result::err));
                match refused_by {
                    // A refusal of the body reader (or the inbox): logged and
                    // counted here, where the client is known.
                    Some(refused_by) => {
                        log_refusal(
                            refused_by.reason,
                            Some(client),
                            Some(peer),
                            refused_by.path.as_deref(),
                            refused_by.kind,
                        );
                        refused(this.span, refused_by.reason, this.source.as_ref());
                    }
                    None if status.is_success() => {
                        // The source the body's key decided, or the head.
                        let source = match &read {
                            Some(Ok(source)) => Some(source),
                            _ => this.source.as_ref(),
                        };
                        crate::telemetry::request(Outcome::Accepted, None, source);
                        // Listed only when a webhook was read and accepted
                        // (its key checked), not on any 2xx.
                        if !listed && matches!(read, Some(Ok(_))) {
                            config.note_unlisted(client, peer);
                        }
                    }
                    None => {
                        crate::telemetry::request(Outcome::Failed, None, this.source.as_ref());
                        if status.is_server_error() {
                            this.span.record("otel.status_code", "ERROR");
                        }
                    }
                }
                let drain = status.is_client_error().then(drain).flatten();
                Poll::Ready(Ok(
                    response.map(|body| ResponseBody::inner(body).draining(drain))
                ))
            }
        }
    }
}

/// Records a refusal in the span and the metrics.
fn refused(span: &tracing::Span, reason: Reason, source: Option<&Source>) {
    span.record(
        "decision",
        tracing::field::display(format_args!("refused: {reason}")),
    );
    span.record("error.type", reason.name());
    crate::telemetry::request(Outcome::Refused, Some(reason), source);
}
