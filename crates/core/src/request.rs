//! Reading a webhook from an `http::Request`, for any tower or hyper
//! service: the body within its limit, the parse, and the `api_key`.
//!
//! The limits and keys come from the request's [`Policy`] extension, which
//! the [`WebhookLayer`](crate::WebhookLayer) inserts; without the layer the
//! [`Policy::default`] applies (a body limit of [`DEFAULT_BODY_LIMIT`], no
//! `api_key` check, and no address check at all: see the layer).

use bytes::{Buf, Bytes, BytesMut};
use http::Request;
use http_body::Body;
use http_body_util::{BodyExt, BodyStream, Limited};

use std::sync::Arc;

use crate::Source;
use crate::auth::ApiKeys;
use crate::limits::is_length_limit;
use crate::rejection::{Reason, Refused, Rejection, Statuses, log_refusal};
use crate::webhook::Kind;
use crate::wire::budget::{Budget, Key};
use crate::wire::{self, Encoding};
use crate::{EventBatch, InboundMail, Limits, Webhook};

/// The body limit when none is configured: 2 MiB, as axum's. Event batches
/// are far smaller (about 60 KB for 100 records); inbound mails with
/// attachments can be larger, so raise it on inbound routes.
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// How a webhook request is read: the body limit, the accepted `api_key`s,
/// and the status for each refusal.
///
/// The [`WebhookLayer`](crate::WebhookLayer) puts its policy in the request
/// extensions, where [`read_webhook`] and the extractors find it. Without
/// the layer, insert one yourself to change the defaults:
///
/// ```
/// use cmc_webhook_core::Policy;
///
/// let policy = Policy::default().body_limit(10 << 20).api_key("s3cret");
/// let mut request = http::Request::new(String::new());
/// request.extensions_mut().insert(policy);
/// ```
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) body_limit: usize,
    pub(crate) limits: Limits,
    pub(crate) api_keys: Option<ApiKeys>,
    pub(crate) statuses: Statuses,
    /// The source the layer decided from the request's head, if it did.
    pub(crate) source: Option<Source>,
    /// When the body's `api_key` decides the source: the source of each
    /// of `api_keys`, in order.
    pub(crate) key_sources: Option<Arc<[Source]>>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            body_limit: DEFAULT_BODY_LIMIT,
            limits: Limits::default(),
            api_keys: None,
            statuses: Statuses::default(),
            source: None,
            key_sources: None,
        }
    }
}

impl Policy {
    /// The largest body accepted, in bytes (a body of exactly this size
    /// passes).
    pub fn body_limit(mut self, bytes: usize) -> Policy {
        self.body_limit = bytes;
        self
    }

    /// Requires the body's `api_key` to be `key` (or another key given the
    /// same way: each call adds one, for rotation).
    pub fn api_key(mut self, key: impl Into<String>) -> Policy {
        self.api_keys = Some(match self.api_keys.take() {
            Some(keys) => keys.with(key.into()),
            None => ApiKeys::new([key.into()]),
        });
        self
    }

    /// The caps on what one body may hold (records, unknown fields,
    /// headers, multipart parts); see [`Limits`].
    pub fn limits(mut self, limits: Limits) -> Policy {
        self.limits = limits;
        self
    }

    /// The statuses answered per reason.
    pub fn statuses(mut self, statuses: Statuses) -> Policy {
        self.statuses = statuses;
        self
    }

    /// The body limit in force.
    pub fn limit(&self) -> usize {
        self.body_limit
    }

    /// Reads webhooks as coming from `source` (the layer sets it to the
    /// source it decided; without it, the [default](Source::default)).
    pub fn source(mut self, source: Source) -> Policy {
        self.source = Some(source);
        self
    }

    /// The source of a body read within this policy, once the position of
    /// its valid key is known.
    fn source_of(&self, key: Option<usize>) -> Source {
        if let (Some(owners), Some(i)) = (&self.key_sources, key)
            && let Some(source) = owners.get(i)
        {
            return source.clone();
        }
        self.source.clone().unwrap_or_default()
    }

    pub(crate) fn reject(&self, rejection: Rejection) -> Rejection {
        rejection.with_status(&self.statuses)
    }
}

/// Reads an event batch or an inbound mail from a request.
///
/// Refuses (with the status of the [`Policy`] in the request's extensions,
/// or the defaults): a `Content-Type` that is not one of CMC's (415), a
/// body over the limit, declared or while streaming (413), a body that is
/// not a webhook (400, with the parse error's text), and a missing or
/// wrong `api_key` when keys are configured (401). Multipart bodies are
/// parsed as they stream in.
///
/// ```
/// use cmc_webhook_core::{read_webhook, Webhook};
///
/// # tokio_test_block_on(async {
/// let request = http::Request::post("/mails")
///     .header("content-type", "application/json")
///     .body(http_body_util::Full::new(bytes::Bytes::from_static(
///         br#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[]}}"#,
///     )))?;
/// let Webhook::Events(batch) = read_webhook(request).await? else { panic!() };
/// assert!(batch.events.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub async fn read_webhook<B>(request: Request<B>) -> Result<Webhook, Rejection>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    read(request, None).await
}

/// Reads an event batch; an inbound mail is refused (400, naming what
/// arrived). See [`read_webhook`].
pub async fn read_event_batch<B>(request: Request<B>) -> Result<EventBatch, Rejection>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Ok(read(request, Some(Kind::Events)).await?.into_events()?)
}

/// Reads an inbound mail; an event batch is refused (400, naming what
/// arrived). See [`read_webhook`].
pub async fn read_inbound_mail<B>(request: Request<B>) -> Result<InboundMail, Rejection>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Ok(read(request, Some(Kind::Inbound)).await?.into_inbound()?)
}

/// A webhook (or an [`EventBatch`], an [`InboundMail`]) and the
/// [`Source`] it came from: what [`read_sourced_webhook`] gives, and an
/// axum extractor (feature `axum`) for handlers behind a layer with
/// several [sources](crate::WebhookLayerBuilder::source).
///
/// ```
/// use cmc_webhook_core::{EventBatch, Sourced};
///
/// async fn on_events(Sourced(source, batch): Sourced<EventBatch>) -> &'static str {
///     for event in &batch.events {
///         // `created` in the zone of the account the batch came from.
///         println!("{}: {:?}", source.name(), source.created_at(event));
///     }
///     "ok"
/// }
/// # #[cfg(feature = "axum")]
/// # let _: axum::Router = axum::Router::new().route("/", axum::routing::post(on_events));
/// ```
#[derive(Debug, Clone)]
pub struct Sourced<T>(pub Source, pub T);

/// Reads a webhook as [`read_webhook`] does, with the [`Source`] it came
/// from: the one the layer decided from the request's head, or the one
/// whose `api_key` the body carried, or (without a layer) the
/// [default](Source::default).
///
/// ```
/// use cmc_webhook_core::{read_sourced_webhook, Sourced};
///
/// # tokio_test_block_on(async {
/// let request = http::Request::post("/mails")
///     .header("content-type", "application/json")
///     .body(http_body_util::Full::new(bytes::Bytes::from_static(
///         br#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[]}}"#,
///     )))?;
/// let Sourced(source, _webhook) = read_sourced_webhook(request).await?;
/// assert!(source.is_default());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
pub async fn read_sourced_webhook<B>(request: Request<B>) -> Result<Sourced<Webhook>, Rejection>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let policy = request
        .extensions()
        .get::<Policy>()
        .cloned()
        .unwrap_or_default();
    read_with_policy(request, None, &policy).await
}

pub(crate) async fn read<B>(
    request: Request<B>,
    expected: Option<Kind>,
) -> Result<Webhook, Rejection>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let policy = request
        .extensions()
        .get::<Policy>()
        .cloned()
        .unwrap_or_default();
    Ok(read_with_policy(request, expected, &policy).await?.1)
}

/// Reads within `policy`; refusals carry its statuses.
pub(crate) async fn read_with_policy<B>(
    request: Request<B>,
    expected: Option<Kind>,
    policy: &Policy,
) -> Result<Sourced<Webhook>, Rejection>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let report = request.extensions().get::<ReadReport>().cloned();
    let result = read_with(request, expected, policy)
        .await
        .map(|(webhook, key)| Sourced(policy.source_of(key), webhook));
    if let Ok(Sourced(source, webhook)) = &result {
        crate::telemetry::webhook(webhook, source);
    }
    match report {
        // Behind the layer, the layer logs and counts the refusal (with the
        // client address) when the request ends, whatever the handler
        // answers.
        Some(report) => report.set(
            result
                .as_ref()
                .map(|Sourced(source, _)| source.clone())
                .map_err(Rejection::refused),
        ),
        None => {
            if let Err(r) = &result {
                let refused = r.refused();
                log_refusal(
                    refused.reason,
                    None,
                    None,
                    refused.path.as_deref(),
                    refused.kind,
                );
            }
        }
    }
    result.map_err(|rejection| policy.reject(rejection))
}

async fn read_with<B>(
    request: Request<B>,
    expected: Option<Kind>,
    policy: &Policy,
) -> Result<(Webhook, Option<usize>), Rejection>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let encoding = Encoding::from_content_type(content_type)?;
    let charset = wire::charset::of_content_type(content_type)?;
    let declared = declared_length(request.headers());
    if declared.is_some_and(|len| len > policy.body_limit as u64) {
        return Err(Rejection::new(Reason::PayloadTooLarge));
    }
    let body = Limited::new(request.into_body(), policy.body_limit);
    let budget = Budget::new(policy.limits).with_keys(policy.api_keys.clone());
    let mut json_text = None;
    let label = encoding.label();
    let mut clock = ParseClock::default();
    let parsed = match encoding {
        Encoding::Multipart { boundary } => {
            let stream =
                futures_util::TryStreamExt::try_filter_map(BodyStream::new(body), |frame| {
                    std::future::ready(Ok(frame
                        .into_data()
                        .ok()
                        .map(|mut d| d.copy_to_bytes(d.remaining()))))
                });
            let meter = std::sync::Arc::new(Meter::default());
            let stream = Timed::new(stream, meter.clone());
            let parsed = wire::multipart::parse_stream(stream, &boundary, charset, &budget)
                .await
                .map_err(Rejection::from);
            clock.add(&meter);
            parsed
        }
        Encoding::Form => {
            let bytes = collect(body).await?;
            clock.bytes = bytes.len() as u64;
            clock.run(|| wire::parse_form(bytes, charset, &budget).map_err(Rejection::from))
        }
        Encoding::Json => {
            let bytes = collect(body).await?;
            clock.bytes = bytes.len() as u64;
            clock.run(|| {
                wire::body_text(bytes)
                    .map_err(Rejection::from)
                    .and_then(|text| {
                        let parsed = wire::json::parse(&text, &budget).map_err(Rejection::from);
                        json_text = Some(text);
                        parsed
                    })
            })
        }
    };
    let parsed = clock.run(|| parsed.and_then(|fields| Ok(fields.into_webhook(expected)?)));
    crate::telemetry::body_bytes(label, clock.bytes);
    crate::telemetry::parse_time(label, clock.spent);
    if budget.needs_key()
        && let (Err(_), Some(text), Key::Unseen) = (&parsed, &json_text, budget.key())
    {
        // The parse failed before it reached the key: look for it alone.
        wire::json::scan_key(text, &budget);
    }
    if budget.needs_key() {
        // No valid key: the caller learns nothing about the body, except
        // that it was too large or could not be read (not a parse detail).
        return match parsed {
            // Without the detail: which cap, and where, is the body's business.
            Err(r) if matches!(r.reason(), Reason::PayloadTooLarge | Reason::BodyRead) => {
                Err(Rejection::new(r.reason()))
            }
            _ => Err(Rejection::new(Reason::BadApiKey)),
        };
    }
    parsed.map(|webhook| (webhook, budget.matched_key()))
}

/// Reads the whole body into one buffer.
///
/// Large frames are kept as they come (no copy); runs of small frames are
/// copied into buffers of 64 KiB. Keeping every small frame instead (as
/// `http_body_util::Collected` does) costs a record per frame and pins the
/// buffer each was cut from: a body sent in one-byte chunks then held 38
/// times its size. At the end the pieces are joined in one buffer of the
/// exact size (a body that came in one piece is kept without a copy).
async fn collect<B>(body: Limited<B>) -> Result<Bytes, Rejection>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    const SMALL: usize = 4 * 1024;
    const RUN: usize = 64 * 1024;
    let mut body = std::pin::pin!(body);
    let mut pieces: Vec<Bytes> = Vec::new();
    let mut run = BytesMut::new();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(&*e))?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers
        };
        let len = data.remaining();
        crate::work::tick(len + 1);
        total += len;
        if len >= SMALL {
            // `split` hands over the bytes so far and keeps the rest of the
            // buffer for the next small frames: alternating large and tiny
            // frames never leave a 64 KiB buffer holding one byte.
            if !run.is_empty() {
                pieces.push(run.split().freeze());
            }
            pieces.push(data.copy_to_bytes(len));
            continue;
        }
        if run.capacity() - run.len() < len {
            if !run.is_empty() {
                pieces.push(run.split().freeze());
            }
            run.reserve(RUN);
        }
        while data.has_remaining() {
            let chunk = data.chunk();
            let n = chunk.len();
            run.extend_from_slice(chunk);
            data.advance(n);
        }
    }
    if !run.is_empty() {
        pieces.push(run.freeze());
    }
    Ok(match pieces.len() {
        0 => Bytes::new(),
        1 => pieces.pop().unwrap_or_default(),
        _ => {
            let mut whole = BytesMut::with_capacity(total);
            for piece in pieces {
                whole.extend_from_slice(&piece);
            }
            whole.freeze()
        }
    })
}

/// 413 when the error is (or wraps) the length limit, else a read failure.
pub(crate) fn body_error(e: &(dyn std::error::Error + 'static)) -> Rejection {
    if is_length_limit(e) {
        Rejection::new(Reason::PayloadTooLarge)
    } else {
        Rejection::new(Reason::BodyRead)
    }
}

/// The `Content-Length`, when there is exactly one readable value.
pub(crate) fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(http::header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()?.trim().parse().ok()
}

/// What the body reader made of a request's body, for the layer in front:
/// put in the request by the layer, filled by the reader.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadReport(std::sync::Arc<std::sync::Mutex<Option<Result<Source, Refused>>>>);

impl ReadReport {
    fn set(&self, outcome: Result<Source, Refused>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
    }

    /// The outcome of the last read, if the body was read.
    pub(crate) fn take(&self) -> Option<Result<Source, Refused>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The bytes of a body and the time spent parsing it, for the metrics.
#[derive(Debug, Default)]
struct ParseClock {
    bytes: u64,
    spent: std::time::Duration,
}

impl ParseClock {
    /// Runs `f`, adding its time.
    fn run<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let start = std::time::Instant::now();
        let out = f();
        self.spent += start.elapsed();
        out
    }
}

/// What a [`Timed`] stream measured; shared, since the multipart reader
/// wants a `'static` stream.
#[derive(Debug, Default)]
struct Meter {
    bytes: std::sync::atomic::AtomicU64,
    nanos: std::sync::atomic::AtomicU64,
}

impl ParseClock {
    fn add(&mut self, meter: &Meter) {
        use std::sync::atomic::Ordering::Relaxed;
        self.bytes += meter.bytes.load(Relaxed);
        self.spent += std::time::Duration::from_nanos(meter.nanos.load(Relaxed));
    }
}

impl Meter {
    fn spent_since(&self, at: std::time::Instant) {
        let nanos = u64::try_from(at.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos
            .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A body stream that counts its bytes and the time its reader spends
    /// between taking a piece and asking for the next: the time spent
    /// parsing a streamed body, without the waits for the network.
    struct Timed<S> {
        #[pin]
        inner: S,
        meter: std::sync::Arc<Meter>,
        // When the reader got the latest piece.
        handed: Option<std::time::Instant>,
    }

    impl<S> PinnedDrop for Timed<S> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(at) = this.handed.take() {
                this.meter.spent_since(at);
            }
        }
    }
}

impl<S> Timed<S> {
    fn new(inner: S, meter: std::sync::Arc<Meter>) -> Self {
        Timed {
            inner,
            meter,
            handed: None,
        }
    }
}

impl<S, E> futures_util::Stream for Timed<S>
where
    S: futures_util::Stream<Item = Result<Bytes, E>>,
{
    type Item = Result<Bytes, E>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = self.project();
        if let Some(at) = this.handed.take() {
            this.meter.spent_since(at);
        }
        let item = std::task::ready!(this.inner.poll_next(cx));
        if let Some(Ok(piece)) = &item {
            this.meter
                .bytes
                .fetch_add(piece.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        *this.handed = Some(std::time::Instant::now());
        std::task::Poll::Ready(item)
    }
}
