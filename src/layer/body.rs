//! The request body the inner service sees, and the response body it
//! answers with.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Full, Limited};
use pin_project_lite::pin_project;

use crate::request::is_length_limit;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// The request body behind a [`WebhookLayer`](super::WebhookLayer): the
    /// original body, cut off with an error
    /// ([`http_body_util::LengthLimitError`], which axum's own extractors
    /// also answer with 413) once more than the limit has streamed in.
    ///
    /// When that happens the layer answers 413 itself, whatever the inner
    /// service made of the error, so a chunked body over the limit never
    /// ends as a 400 or 500.
    #[derive(Debug)]
    pub struct RequestBody<B> {
        #[pin]
        inner: Limited<B>,
        tripped: Arc<AtomicBool>,
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn new(body: B, limit: usize, tripped: Arc<AtomicBool>) -> Self {
        RequestBody {
            inner: Limited::new(body, limit),
            tripped,
        }
    }
}

impl<B> Body for RequestBody<B>
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
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &polled {
            if is_length_limit(&**e) {
                this.tripped.store(true, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The response body of a [`WebhookService`](super::WebhookService):
    /// the inner service's, or the layer's own refusal text.
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Refused { #[pin] body: Full<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn refused(body: Full<Bytes>) -> Self {
        ResponseBody {
            kind: Kind::Refused { body },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Refused { body } => match body.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(Some(Err(never))) => match never {},
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Refused { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Refused { body } => body.size_hint(),
        }
    }
}
