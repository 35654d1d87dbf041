//! [`WebhookService`]: the service a [`WebhookLayer`](super::WebhookLayer)
//! wraps around yours.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;
use tracing::field;

use super::body::{GiveBack, RequestBody, ResponseBody};
use super::config::{Config, Sources};
use super::drain::{Drain, Slot, expects_continue};
use super::future::ResponseFuture;
use crate::Source;
use crate::auth::ApiKeys;
use crate::client_ip::ClientIp;
use crate::rejection::{Reason, Rejection, log_refusal};
use crate::request::{Policy, ReadReport, declared_length};
use crate::wire::Encoding;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The middleware built by [`WebhookLayer`](super::WebhookLayer).
#[derive(Clone)]
pub struct WebhookService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> WebhookService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        WebhookService { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> std::fmt::Debug for WebhookService<S>
where
    S: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The connection's peer address, from the places servers put it.
fn peer_addr(config: &Config, extensions: &http::Extensions) -> Option<IpAddr> {
    if let Some(f) = &config.peer {
        return f(extensions);
    }
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) =
        extensions.get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(addr.ip());
    }
    extensions
        .get::<SocketAddr>()
        .map(SocketAddr::ip)
        .or_else(|| extensions.get::<IpAddr>().copied())
}

const NO_PEER_HELP: &str = "no peer address in the request: with axum, serve the app with \
    `into_make_service_with_connect_info::<SocketAddr>()`; with hyper, insert the connection's \
    SocketAddr into each request's extensions; or give WebhookLayer::builder().peer_addr(..)";

impl Config {
    /// The layer's decision on a request, from its head alone.
    /// `tried` is set to the source the request is refused for, when
    /// there is a single one (for the metrics).
    fn admit<B>(
        &self,
        request: &Request<B>,
        span: &tracing::Span,
        tried: &mut Option<Source>,
    ) -> Result<Admitted, Rejection> {
        if let [only] = self.sources.as_slice() {
            *tried = Some(only.source.clone());
        }
        let Some(peer) = peer_addr(self, request.extensions()) else {
            tracing::error!("{NO_PEER_HELP}");
            log_refusal(Reason::NoPeerAddress, None, None, None, None);
            return Err(Rejection::new(Reason::NoPeerAddress));
        };
        span.record("network.peer.address", field::display(peer));
        let client = self
            .client_ip_source
            .client_ip(peer, request.headers(), &self.trusted_proxies)
            .map_err(|e| {
                tracing::warn!(peer = %peer, reason = Reason::BadForwardedHeader.name(), error = %e, "refused CMC webhook request: {}", Reason::BadForwardedHeader);
                Rejection::new(Reason::BadForwardedHeader)
            })?;
        span.record("client.address", field::display(client));
        let refuse = |reason: Reason| {
            log_refusal(reason, Some(client), Some(peer), None, None);
            Rejection::new(reason)
        };
        let several = self.sources.len() > 1;
        let mut candidates = self.candidates(request.uri().path());
        if several || self.by_path {
            // The source (or sources) this request may be, by its path:
            // the log says which one it tried, never its credentials.
            span.record("cmc.source", field::display(Names(self, candidates)));
        }
        if let Some(only) = candidates.only() {
            *tried = Some(self.sources[only].source.clone());
        }
        let allows = |i: usize| self.source_allows(&self.sources[i], client);
        // On a path no source serves, a client no source lists is refused
        // as any stranger is (403); a listed one is told of its path (401).
        let listed = if candidates.is_empty() {
            (0..self.sources.len()).any(allows)
        } else {
            candidates.iter().any(allows)
        };
        // In report-only mode an unlisted client is noted once its request
        // is accepted, so that what the list shows passed every other check.
        if !listed && !self.report_only {
            self.note_unlisted(client, peer);
            return Err(refuse(Reason::ClientNotAllowed));
        }
        if listed {
            candidates.retain(allows);
        }
        if request.method() != Method::POST {
            return Err(refuse(Reason::MethodNotAllowed));
        }
        if candidates.is_empty() {
            tracing::warn!(
                path = %crate::text::printable(request.uri().path(), 256),
                "no source is served on this path"
            );
            return Err(refuse(Reason::BadCredentials));
        }
        // Every candidate is checked (no early exit on a match), each in
        // constant time.
        let authorization = request.headers().get(http::header::AUTHORIZATION);
        candidates.retain(|i| {
            let basic = &self.sources[i].basic;
            basic.is_empty() || crate::auth::basic_matches(basic, authorization)
        });
        if candidates.is_empty() {
            return Err(refuse(Reason::BadCredentials));
        }
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match Encoding::from_content_type(content_type) {
            Err(e) if e.kind() == crate::ParseErrorKind::UnsupportedMediaType => {
                return Err(refuse(Reason::UnsupportedMediaType));
            }
            // A multipart type without a boundary is the body reader's 400.
            _ => {}
        }
        if declared_length(request.headers()).is_some_and(|len| len > self.policy.limit() as u64) {
            return Err(refuse(Reason::PayloadTooLarge));
        }
        let policy = match candidates.only() {
            Some(only) => {
                let only = &self.sources[only];
                if several {
                    span.record("cmc.source", only.source.name());
                }
                only.policy.clone()
            }
            // Told apart by the body's api_key (build checked that they
            // are): the reader learns which source each key is.
            None => {
                let mut keys = Vec::new();
                let mut owners = Vec::new();
                for s in candidates.iter().map(|i| &self.sources[i]) {
                    for key in s.keys().into_iter().flat_map(ApiKeys::secrets) {
                        keys.push(key.clone());
                        owners.push(s.source.clone());
                    }
                }
                let mut policy = self.policy.clone();
                policy.api_keys = Some(ApiKeys::from_secrets(keys));
                policy.key_sources = Some(owners.into());
                policy
            }
        };
        Ok(Admitted {
            peer,
            client,
            listed,
            policy,
        })
    }
}

/// What the gate let through: the addresses, whether the client is in the
/// allowlist (it may be admitted without in report-only mode), and the
/// policy of its source (or sources, when the body's key decides).
pub(crate) struct Admitted {
    peer: IpAddr,
    client: IpAddr,
    listed: bool,
    policy: Policy,
}

/// Source names for a log field: `a`, or `a|b` when the body decides.
struct Names<'a>(&'a Config, Sources);

impl std::fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.1.is_empty() {
            return f.write_str("(none on this path)");
        }
        for (n, i) in self.1.iter().enumerate() {
            if n > 0 {
                f.write_str("|")?;
            }
            f.write_str(self.0.sources[i].source.name())?;
        }
        Ok(())
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for WebhookService<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The fields of OpenTelemetry's HTTP server semantic conventions,
        // for exporters such as tracing-opentelemetry.
        let span = tracing::info_span!(
            "cmc_webhook",
            otel.kind = "server",
            otel.name = request.method().as_str(),
            otel.status_code = field::Empty,
            http.request.method = request.method().as_str(),
            url.path = request.uri().path(),
            network.peer.address = field::Empty,
            client.address = field::Empty,
            http.response.status_code = field::Empty,
            error.r#type = field::Empty,
            decision = field::Empty,
            cmc.source = field::Empty,
        );
        let mut tried = None;
        let admitted = span.in_scope(|| self.config.admit(&request, &span, &mut tried));
        match admitted {
            Err(rejection) => {
                let reason = rejection.reason();
                span.record(
                    "decision",
                    field::display(format_args!("refused: {reason}")),
                );
                span.record("error.type", reason.name());
                crate::telemetry::request(
                    crate::telemetry::Outcome::Refused,
                    Some(reason),
                    tried.as_ref(),
                );
                let mut response = self.config.policy.reject(rejection).into_http_response();
                span.record("http.response.status_code", response.status().as_u16());
                // A client the gate refused gets no kept-alive connection:
                // it cannot hold one of the server's connections open by
                // sending refused requests on it.
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
                let limits = self.config.drain;
                // Refused before the body was read: a client waiting for
                // `100 Continue` has sent nothing, and is sent nothing.
                let drain = (Drain::wanted(request.headers(), limits)
                    && !expects_continue(request.headers()))
                .then(|| Drain::of(request.into_body(), None, limits))
                .flatten();
                ResponseFuture::refused(response, drain, span)
            }
            Ok(Admitted {
                peer,
                client,
                listed,
                policy,
            }) => {
                span.record(
                    "decision",
                    if listed {
                        "admitted"
                    } else {
                        "admitted (report-only: not in the allowlist)"
                    },
                );
                let tripped = Arc::new(AtomicBool::new(false));
                let limit = self.config.policy.limit();
                let (mut parts, body) = request.into_parts();
                if parts.extensions.get::<ReadReport>().is_some() {
                    nested_layers();
                }
                let report = ReadReport::default();
                parts.extensions.insert(report.clone());
                let source = policy.source.clone();
                if let Some(source) = &source {
                    parts.extensions.insert(source.clone());
                }
                parts.extensions.insert(policy);
                parts.extensions.insert(ClientIp(client));
                // A body the inner service drops before its end comes back
                // here, to be drained if the answer is a refusal.
                let slot = Slot::default();
                let limits = self.config.drain;
                let seen = Arc::new(AtomicU64::new(0));
                let waits = expects_continue(&parts.headers);
                let give_back: Option<GiveBack<ReqBody>> = Drain::wanted(&parts.headers, limits)
                    .then(|| {
                        let (slot, seen) = (slot.clone(), seen.clone());
                        Box::new(move |body, polled: bool| {
                            if waits && !polled {
                                return; // the client was never told to send it
                            }
                            if let Some(drain) = Drain::of(body, Some(seen), limits) {
                                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(drain);
                            }
                        }) as GiveBack<ReqBody>
                    });
                let body = RequestBody::new(body, limit, tripped.clone(), seen, give_back);
                let request = Request::from_parts(parts, body);
                let future = span.in_scope(|| self.inner.call(request));
                ResponseFuture::inner(
                    future,
                    tripped,
                    self.config.clone(),
                    slot,
                    span,
                    ((peer, client, listed), source),
                    report,
                )
            }
        }
    }
}

/// A request that went through two `WebhookLayer`s: said once per process.
fn nested_layers() {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "a request went through two WebhookLayers (one on the route, one on the router?): \
             each checks, logs and counts it; mount the layer once per route"
        );
    }
}
