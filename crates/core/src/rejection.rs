//! [`Rejection`]: why a request was refused, as an HTTP response.
//!
//! The [`WebhookLayer`](crate::WebhookLayer) refuses requests before any
//! handler runs (address, method, BASIC auth, media type, declared size);
//! reading the body ([`read_webhook`](crate::read_webhook) and the axum
//! extractors) refuses what only the body shows (size while streaming,
//! malformed content, the `api_key`). Both answer the same way: a status
//! (configurable per [`Reason`]) and a one-line plain-text body that names
//! the reason and never internals.

use std::fmt;
use std::net::IpAddr;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::{ParseError, ParseErrorKind};

/// Why a request was refused.
///
/// ```
/// use cmc_webhook_core::Reason;
/// use http::StatusCode;
///
/// assert_eq!(Reason::ClientNotAllowed.default_status(), StatusCode::FORBIDDEN);
/// assert_eq!(Reason::PayloadTooLarge.default_status(), StatusCode::PAYLOAD_TOO_LARGE);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// The server did not record the connection's peer address (for axum:
    /// serve with `into_make_service_with_connect_info::<SocketAddr>()`).
    /// 500: a deployment error, never the caller's.
    NoPeerAddress,
    /// The client address is not in the allowlist. 403.
    ClientNotAllowed,
    /// A trusted proxy's forwarding header has an entry that is not an
    /// address. 400.
    BadForwardedHeader,
    /// Not a `POST`. 405, with `Allow: POST`.
    MethodNotAllowed,
    /// BASIC credentials are configured and the request's are missing or
    /// wrong. 401, with `WWW-Authenticate`.
    BadCredentials,
    /// The `api_key` body parameter is required and missing or wrong. 401.
    BadApiKey,
    /// The `Content-Type` is none of JSON, form-urlencoded and
    /// multipart/form-data. 415.
    UnsupportedMediaType,
    /// The body is larger than the limit (declared or while streaming), or a
    /// multipart cap was exceeded. 413.
    PayloadTooLarge,
    /// The body is not a valid CMC webhook (the message says where). 400.
    MalformedBody,
    /// The body is a webhook of the other kind than the endpoint expects. 400.
    WrongKind,
    /// The body could not be read (the client closed the connection, or the
    /// server's body stream failed). 400.
    BodyRead,
}

/// Every reason, in declaration order.
const ALL: [Reason; 11] = [
    Reason::NoPeerAddress,
    Reason::ClientNotAllowed,
    Reason::BadForwardedHeader,
    Reason::MethodNotAllowed,
    Reason::BadCredentials,
    Reason::BadApiKey,
    Reason::UnsupportedMediaType,
    Reason::PayloadTooLarge,
    Reason::MalformedBody,
    Reason::WrongKind,
    Reason::BodyRead,
];

impl Reason {
    /// Every reason this version knows, in declaration order (later
    /// versions may add more).
    ///
    /// ```
    /// use cmc_webhook_core::Reason;
    ///
    /// assert!(Reason::iter().any(|r| r == Reason::BadApiKey));
    /// assert!(Reason::iter().all(|r| r.default_status().is_client_error()
    ///     || r == Reason::NoPeerAddress));
    /// ```
    pub fn iter() -> impl Iterator<Item = Reason> + Clone {
        ALL.into_iter()
    }

    /// The status answered unless configured otherwise.
    pub const fn default_status(self) -> StatusCode {
        match self {
            Reason::NoPeerAddress => StatusCode::INTERNAL_SERVER_ERROR,
            Reason::ClientNotAllowed => StatusCode::FORBIDDEN,
            Reason::BadForwardedHeader => StatusCode::BAD_REQUEST,
            Reason::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reason::BadCredentials | Reason::BadApiKey => StatusCode::UNAUTHORIZED,
            Reason::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reason::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::MalformedBody | Reason::WrongKind | Reason::BodyRead => StatusCode::BAD_REQUEST,
        }
    }

    /// A stable `snake_case` name (`client_not_allowed`, `bad_api_key`, ...),
    /// the `reason` of refusal logs and of the `cmc_webhook_requests_total`
    /// metric.
    ///
    /// ```
    /// assert_eq!(cmc_webhook_core::Reason::PayloadTooLarge.name(), "payload_too_large");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Reason::NoPeerAddress => "no_peer_address",
            Reason::ClientNotAllowed => "client_not_allowed",
            Reason::BadForwardedHeader => "bad_forwarded_header",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::BadCredentials => "bad_credentials",
            Reason::BadApiKey => "bad_api_key",
            Reason::UnsupportedMediaType => "unsupported_media_type",
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::MalformedBody => "malformed_body",
            Reason::WrongKind => "wrong_kind",
            Reason::BodyRead => "body_read",
        }
    }

    /// A short description, the start of the response body.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::NoPeerAddress => "the server could not determine the client address",
            Reason::ClientNotAllowed => "the client address is not allowed",
            Reason::BadForwardedHeader => "the forwarding header is malformed",
            Reason::MethodNotAllowed => "only POST is accepted",
            Reason::BadCredentials => "missing or wrong credentials",
            Reason::BadApiKey => "missing or wrong api_key",
            Reason::UnsupportedMediaType => {
                "expected application/json, application/x-www-form-urlencoded or multipart/form-data"
            }
            Reason::PayloadTooLarge => "the body is larger than allowed",
            Reason::MalformedBody => "malformed webhook body",
            Reason::WrongKind => "unexpected webhook kind",
            Reason::BodyRead => "the body could not be read",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Logs a refusal: the one `warn` line each refused request gets.
pub(crate) fn log_refusal(
    reason: Reason,
    client: Option<IpAddr>,
    peer: Option<IpAddr>,
    path: Option<&str>,
    kind: Option<ParseErrorKind>,
) {
    let client = client.map(tracing::field::display);
    let peer = peer.map(tracing::field::display);
    let kind = kind.map(tracing::field::debug);
    tracing::warn!(
        client,
        peer,
        reason = reason.name(),
        field = path,
        error = kind,
        "refused CMC webhook request: {reason}"
    );
}

/// The status answered for each [`Reason`].
///
/// ```
/// use cmc_webhook_core::{Reason, Statuses};
/// use http::StatusCode;
///
/// // Hide the endpoint from addresses that are not allowed.
/// let statuses = Statuses::default().with(Reason::ClientNotAllowed, StatusCode::NOT_FOUND);
/// assert_eq!(statuses.get(Reason::ClientNotAllowed), StatusCode::NOT_FOUND);
/// assert_eq!(statuses.get(Reason::BadApiKey), StatusCode::UNAUTHORIZED);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statuses([StatusCode; ALL.len()]);

impl Default for Statuses {
    fn default() -> Self {
        Statuses(ALL.map(Reason::default_status))
    }
}

impl Statuses {
    /// The same, with `reason` answered by `status`.
    pub fn with(mut self, reason: Reason, status: StatusCode) -> Statuses {
        self.0[reason.index()] = status;
        self
    }

    /// The status for `reason`.
    pub fn get(&self, reason: Reason) -> StatusCode {
        self.0[reason.index()]
    }
}

/// A refused request: the [`Reason`], the status to answer, and for bodies
/// that do not parse, what is wrong with them.
///
/// Turn it into a response with [`Rejection::into_http_response`] (or, with the
/// `axum` feature, return it from a handler: it implements
/// `IntoResponse`).
///
/// ```
/// use cmc_webhook_core::{Reason, Rejection};
/// use http::StatusCode;
///
/// let rejection = Rejection::new(Reason::UnsupportedMediaType);
/// assert_eq!(rejection.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
/// let response = rejection.into_http_response();
/// assert_eq!(response.status(), 415);
/// assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    reason: Reason,
    status: StatusCode,
    detail: Option<String>,
    source: Option<ParseError>,
}

/// What a refusal response carries in its extensions, for the layer's log
/// line and metrics: the reason, and for a body that does not parse, the
/// field path and the class of the error (never the message, which may
/// quote the body).
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    pub(crate) reason: Reason,
    pub(crate) path: Option<String>,
    pub(crate) kind: Option<ParseErrorKind>,
}

impl Rejection {
    /// A rejection with the reason's default status.
    pub fn new(reason: Reason) -> Rejection {
        Rejection {
            reason,
            status: reason.default_status(),
            detail: None,
            source: None,
        }
    }

    pub(crate) fn with_status(mut self, statuses: &Statuses) -> Rejection {
        self.status = statuses.get(self.reason);
        self
    }

    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Rejection {
        self.detail = Some(detail.into());
        self
    }

    /// Why the request was refused.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The status to answer.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What is wrong with the body, for [`Reason::MalformedBody`] and
    /// [`Reason::WrongKind`] (the [`ParseError`] text).
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    /// The parse error behind the refusal, when the body was read and did
    /// not parse (also the refusal's [`source`](std::error::Error::source)).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook_core::{ParseErrorKind, Reason, Rejection, Webhook};
    ///
    /// let error = Webhook::parse("application/json", Bytes::from_static(b"{")).unwrap_err();
    /// let rejection = Rejection::from(error);
    /// assert_eq!(rejection.reason(), Reason::MalformedBody);
    /// assert_eq!(rejection.parse_error().map(|e| e.kind()), Some(ParseErrorKind::Json));
    /// assert!(std::error::Error::source(&rejection).is_some());
    /// ```
    pub fn parse_error(&self) -> Option<&ParseError> {
        self.source.as_ref()
    }

    /// What the response carries for the layer's log and metrics.
    pub(crate) fn refused(&self) -> Refused {
        Refused {
            reason: self.reason,
            // Field names come from the body: a log line takes at most 200
            // characters of the path.
            path: self.source.as_ref().and_then(|e| {
                e.path().map(|p| match p.char_indices().nth(200) {
                    Some((end, _)) => format!("{}...", &p[..end]),
                    None => p.to_owned(),
                })
            }),
            kind: self.source.as_ref().map(ParseError::kind),
        }
    }

    /// The response: the status, `text/plain`, and the reason (with the
    /// detail after a colon); `Allow: POST` on 405 and `WWW-Authenticate`
    /// on 401 for BASIC credentials.
    ///
    /// The response also carries, in its extensions, what the
    /// [`WebhookLayer`](crate::WebhookLayer) needs to log and count the
    /// refusal.
    pub fn into_http_response(self) -> Response<Full<Bytes>> {
        let refused = self.refused();
        let body = match &self.detail {
            Some(detail) => format!("{}: {detail}\n", self.reason),
            None => format!("{}\n", self.reason),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.status;
        response.extensions_mut().insert(refused);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        if self.status == StatusCode::UNAUTHORIZED && self.reason == Reason::BadCredentials {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"cmc-webhook\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(detail) => write!(f, "{} ({}): {detail}", self.reason, self.status.as_u16()),
            None => write!(f, "{} ({})", self.reason, self.status.as_u16()),
        }
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

impl From<ParseError> for Rejection {
    fn from(e: ParseError) -> Rejection {
        let reason = match e.kind() {
            ParseErrorKind::UnsupportedMediaType => Reason::UnsupportedMediaType,
            ParseErrorKind::TooLarge => Reason::PayloadTooLarge,
            ParseErrorKind::WrongKind => Reason::WrongKind,
            ParseErrorKind::BodyRead => Reason::BodyRead,
            _ => Reason::MalformedBody,
        };
        let rejection = match reason {
            // The reason already says what is expected.
            Reason::UnsupportedMediaType => Rejection::new(reason),
            _ => Rejection::new(reason).with_detail(e.to_string()),
        };
        Rejection {
            source: Some(e),
            ..rejection
        }
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Rejection {
    fn into_response(self) -> axum_core::response::Response {
        self.into_http_response().map(axum_core::body::Body::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_index_their_own_slot() {
        for (i, r) in Reason::iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let names: std::collections::HashSet<_> = Reason::iter().map(Reason::name).collect();
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn responses_carry_the_headers_their_status_needs() {
        let r = Rejection::new(Reason::MethodNotAllowed).into_http_response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()["allow"], "POST");
        let r = Rejection::new(Reason::BadCredentials).into_http_response();
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic realm=")
        );
        let r = Rejection::new(Reason::BadApiKey).into_http_response();
        assert!(!r.headers().contains_key("www-authenticate"));
        let statuses = Statuses::default().with(Reason::ClientNotAllowed, StatusCode::NOT_FOUND);
        let r = Rejection::new(Reason::ClientNotAllowed).with_status(&statuses);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn parse_errors_map_to_reasons() {
        let e = ParseError::new(ParseErrorKind::TooLarge, "cap");
        assert_eq!(Rejection::from(e).reason(), Reason::PayloadTooLarge);
        let e = ParseError::new(ParseErrorKind::Json, "EOF");
        let r = Rejection::from(e);
        assert_eq!(
            (r.reason(), r.status(), r.detail()),
            (Reason::MalformedBody, StatusCode::BAD_REQUEST, Some("EOF"))
        );
    }
}
