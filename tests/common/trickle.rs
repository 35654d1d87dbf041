//! A request body whose frames arrive one at a time.

use bytes::Bytes;

/// `body` as a stream of `frame`-byte frames that arrive one at a time:
/// after each, the reader finds nothing more (it is woken again at once),
/// as when a client sends small pieces over TCP. A stream whose frames are
/// all ready at once would let a reader gather them before it looks.
pub fn trickle(
    body: Bytes,
    frame: usize,
) -> impl futures_util::Stream<Item = Result<http_body::Frame<Bytes>, std::convert::Infallible>> {
    futures_util::stream::unfold(0, move |at| {
        let body = body.clone();
        async move {
            if at >= body.len() {
                return None;
            }
            tokio::task::yield_now().await;
            let end = (at + frame).min(body.len());
            Some((Ok(http_body::Frame::data(body.slice(at..end))), end))
        }
    })
}

/// A POST with `content_type` and `body` in frames of `frame` bytes, read
/// within `policy`.
pub fn request(
    content_type: &str,
    body: Vec<u8>,
    frame: usize,
    policy: cmc_webhook::Policy,
) -> http::Request<
    http_body_util::StreamBody<
        impl futures_util::Stream<Item = Result<http_body::Frame<Bytes>, std::convert::Infallible>>,
    >,
> {
    http::Request::post("/mails")
        .header("content-type", content_type)
        .extension(policy)
        .body(http_body_util::StreamBody::new(trickle(
            Bytes::from(body),
            frame,
        )))
        .expect("a request")
}
