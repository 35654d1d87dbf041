//! Reading the rest of a refused request's body before answering, so that
//! a client that writes its whole body before it reads (Apache HttpClient,
//! CMC's client, does) sees the 4xx instead of a reset connection.
//!
//! When a server answers before it has read the body and then closes the
//! connection, the client's next write meets a reset: HttpClient reports
//! "Broken pipe", never reads the status, and sends the request again.
//! hyper reads only what has already arrived before it closes. So the
//! refusal's response body first reads and discards the rest of the
//! request body, within a byte and a time bound (so that draining cannot
//! become a slow-client attack: a client that sends beyond them is cut
//! off), then yields the refusal text. A request with
//! `Expect: 100-continue` is not drained: its client has not sent the body
//! and will not, since no `100 Continue` is sent.

use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::Body;
use sync_wrapper::SyncWrapper;

/// How much of a refused request's body is read at most, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DrainLimits {
    pub(crate) bytes: u64,
    pub(crate) time: Duration,
}

impl Default for DrainLimits {
    /// 8 MiB and 5 seconds.
    fn default() -> Self {
        DrainLimits {
            bytes: 8 << 20,
            time: Duration::from_secs(5),
        }
    }
}

/// A request body whose frames can be read and dropped.
trait Drainable: Send {
    /// The size of the next data frame, `None` at the end (or on an error:
    /// either way there is nothing more to read).
    fn poll_discard(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<usize>>;
}

impl<B> Drainable for B
where
    B: Body + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn poll_discard(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<usize>> {
        match self.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                Poll::Ready(Some(frame.into_data().map_or(0, |d| d.remaining())))
            }
            // A body over the layer's limit goes on failing each frame it
            // drops: read on (its bytes are counted where it is wrapped).
            Poll::Ready(Some(Err(e))) => {
                let e: Box<dyn std::error::Error + Send + Sync> = e.into();
                Poll::Ready(crate::limits::is_length_limit(&*e).then_some(0))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

pin_project_lite::pin_project! {
    /// A body that counts the bytes of its data frames, so that a drain
    /// can bound a body whose limit wrapper no longer reports them.
    pub(crate) struct Counted<B> {
        #[pin]
        inner: B,
        seen: Arc<AtomicU64>,
    }
}

impl<B> Counted<B> {
    pub(crate) fn new(inner: B, seen: Arc<AtomicU64>) -> Self {
        Counted { inner, seen }
    }
}

impl<B: Body> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.seen
                .fetch_add(data.remaining() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The rest of a refused request's body, to be read and dropped.
pub(crate) struct Drain {
    /// Only ever polled through `&mut self`: the wrapper makes `Drain` (and
    /// so the response body carrying it) `Sync` whatever the request body.
    body: SyncWrapper<Pin<Box<dyn Drainable>>>,
    /// The body's byte count, when it keeps one (see [`Counted`]).
    seen: Option<Arc<AtomicU64>>,
    /// The count when draining began, or the bytes drained so far.
    start: u64,
    bytes: u64,
    time: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Drain {
    /// Whether a refused request with these headers may be drained: not
    /// when it declared more than the limits allow (it is then cut off at
    /// once). See [`expects_continue`] for the other case.
    pub(crate) fn wanted(headers: &http::HeaderMap, limits: DrainLimits) -> bool {
        let declared = crate::request::declared_length(headers);
        limits.bytes > 0 && declared.is_none_or(|n| n <= limits.bytes)
    }

    /// A drain of `body` (the caller checked [`Drain::wanted`]); `None`
    /// when nothing is left to read.
    pub(crate) fn of<B>(body: B, seen: Option<Arc<AtomicU64>>, limits: DrainLimits) -> Option<Drain>
    where
        B: Body + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if body.is_end_stream() {
            return None;
        }
        let start = seen.as_ref().map_or(0, |s| s.load(Ordering::Relaxed));
        Some(Drain {
            body: SyncWrapper::new(Box::pin(body)),
            seen,
            start,
            bytes: limits.bytes,
            time: limits.time,
            deadline: None,
        })
    }

    /// Reads until the body ends (ready), or a bound is reached (ready too:
    /// the body is dropped and the server closes the connection).
    pub(crate) fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.deadline.is_none() {
            // The timer needs a Tokio runtime; without one, do not drain.
            if tokio::runtime::Handle::try_current().is_err() {
                return Poll::Ready(());
            }
            self.deadline = Some(Box::pin(tokio::time::sleep(self.time)));
        }
        loop {
            match self.body.get_mut().as_mut().poll_discard(cx) {
                Poll::Ready(Some(n)) => {
                    let drained = match &self.seen {
                        Some(seen) => seen.load(Ordering::Relaxed) - self.start,
                        None => {
                            self.start += n as u64;
                            self.start
                        }
                    };
                    if drained > self.bytes {
                        return Poll::Ready(()); // beyond the byte bound
                    }
                }
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => {
                    let deadline = self.deadline.as_mut().expect("set above");
                    return deadline.as_mut().poll(cx);
                }
            }
        }
    }
}

/// Whether the client waits for `100 Continue` before it sends the body
/// (hyper reads the last `Expect`): such a body is drained only if it was
/// read from, since only then was the client told to send it.
pub(crate) fn expects_continue(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::EXPECT)
        .iter()
        .next_back()
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Where a request body the inner service dropped before its end is put
/// back, for the layer to drain when the answer is a refusal.
pub(crate) type Slot = Arc<Mutex<Option<Drain>>>;
