//! The request body the inner service sees, and the response body it
//! answers with.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Full, Limited};
use pin_project_lite::pin_project;

use super::drain::{Counted, Drain};
use crate::limits::is_length_limit;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body behind a [`WebhookLayer`](super::WebhookLayer): the
/// original body, cut off with an error
/// ([`http_body_util::LengthLimitError`], which axum's own extractors also
/// answer with 413) once more than the limit has streamed in.
///
/// When that happens the layer answers 413 itself, whatever the inner
/// service made of the error, so a chunked body over the limit never ends
/// as a 400 or 500. When the inner service drops the body before its end
/// and answers with a refusal, the layer reads the rest before answering
/// (see the layer's docs).
pub struct RequestBody<B> {
    inner: Option<Pin<Box<Limited<Counted<B>>>>>,
    tripped: Arc<AtomicBool>,
    give_back: Option<GiveBack<B>>,
    /// Whether the body was read from (for `Expect: 100-continue`, the
    /// server then told the client to send it).
    polled: bool,
}

/// Where a body dropped before its end goes (see [`RequestBody`]), with
/// whether it was read from.
pub(crate) type GiveBack<B> = Box<dyn FnOnce(Pin<Box<Limited<Counted<B>>>>, bool) + Send>;

impl<B> RequestBody<B> {
    pub(crate) fn new(
        body: B,
        limit: usize,
        tripped: Arc<AtomicBool>,
        seen: Arc<AtomicU64>,
        give_back: Option<GiveBack<B>>,
    ) -> Self {
        RequestBody {
            inner: Some(Box::pin(Limited::new(Counted::new(body, seen), limit))),
            tripped,
            give_back,
            polled: false,
        }
    }
}

impl<B> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody").finish_non_exhaustive()
    }
}

impl<B> Drop for RequestBody<B> {
    fn drop(&mut self) {
        if let (Some(inner), Some(give_back)) = (self.inner.take(), self.give_back.take()) {
            give_back(inner, self.polled);
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
        let this = self.get_mut();
        this.polled = true;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = inner.as_mut().poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &polled
            && is_length_limit(&**e)
        {
            this.tripped.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

pin_project! {
    /// The response body of a [`WebhookService`](super::WebhookService):
    /// the inner service's, or the layer's own refusal text.
    #[derive(Debug)]
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
        drain: Option<Drain>,
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
            drain: None,
        }
    }

    pub(crate) fn refused(body: Full<Bytes>) -> Self {
        ResponseBody {
            kind: Kind::Refused { body },
            drain: None,
        }
    }

    /// Reads the rest of the refused request's body before the first frame.
    pub(crate) fn draining(mut self, drain: Option<Drain>) -> Self {
        self.drain = drain;
        self
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
        let this = self.project();
        if let Some(drain) = this.drain.as_mut() {
            std::task::ready!(drain.poll_done(cx));
            *this.drain = None;
        }
        match this.kind.project() {
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
        if self.drain.is_some() {
            return false;
        }
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Refused { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let hint = match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Refused { body } => body.size_hint(),
        };
        if self.drain.is_some() {
            // Not exact while the request body is drained: an exact size
            // (0 for a bare status) would let hyper finish the response
            // without polling this body, and so without draining.
            let mut open = SizeHint::new();
            open.set_lower(hint.lower());
            return open;
        }
        hint
    }
}
