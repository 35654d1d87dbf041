//! A request body that keeps a copy of what the parser reads: the bytes
//! of the request as it arrived, for the raw request.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

/// What a [`Tee`] has seen: the first frame shared (a body of one frame
/// is not copied), later frames appended to one buffer.
#[derive(Debug, Default)]
pub(crate) enum Seen {
    #[default]
    Nothing,
    One(Bytes),
    Many(BytesMut),
}

impl Seen {
    fn push(&mut self, data: &Bytes) {
        match self {
            Seen::Nothing => *self = Seen::One(data.clone()),
            Seen::One(first) => {
                let mut all = BytesMut::with_capacity(first.len() + data.len());
                all.extend_from_slice(first);
                all.extend_from_slice(data);
                *self = Seen::Many(all);
            }
            Seen::Many(all) => all.extend_from_slice(data),
        }
    }

    /// The bytes seen, in one buffer.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Seen::Nothing => Bytes::new(),
            Seen::One(b) => b,
            Seen::Many(b) => b.freeze(),
        }
    }
}

/// The shared record of a [`Tee`].
pub(crate) type Record = Arc<Mutex<Seen>>;

/// `B`, its data frames recorded as they are read.
pub(crate) struct Tee<B> {
    inner: Pin<Box<B>>,
    record: Record,
}

impl<B> Tee<B> {
    pub fn new(inner: B) -> (Tee<B>, Record) {
        let record = Record::default();
        (
            Tee {
                inner: Box::pin(inner),
                record: record.clone(),
            },
            record,
        )
    }
}

impl<B> Body for Tee<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = frame.map_data(|mut d| d.copy_to_bytes(d.remaining()));
                if let (Some(data), Ok(mut seen)) = (frame.data_ref(), self.record.lock()) {
                    seen.push(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other
                .map(|o| o.map(|r| r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining()))))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
