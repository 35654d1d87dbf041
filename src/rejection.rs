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

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::{ParseError, ParseErrorKind};

/// Why a request was refused.
///
/// ```
/// use cmc_webhook::Reason;
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

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 11] = [
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

/// The status answered for each [`Reason`].
///
/// ```
/// use cmc_webhook::{Reason, Statuses};
/// use http::StatusCode;
///
/// // Hide the endpoint from addresses that are not allowed.
/// let statuses = Statuses::default().with(Reason::ClientNotAllowed, StatusCode::NOT_FOUND);
/// assert_eq!(statuses.get(Reason::ClientNotAllowed), StatusCode::NOT_FOUND);
/// assert_eq!(statuses.get(Reason::BadApiKey), StatusCode::UNAUTHORIZED);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statuses([StatusCode; Reason::ALL.len()]);

impl Default for Statuses {
    fn default() -> Self {
        Statuses(Reason::ALL.map(Reason::default_status))
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
/// use cmc_webhook::{Reason, Rejection};
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
}

impl Rejection {
    /// A rejection with the reason's default status.
    pub fn new(reason: Reason) -> Rejection {
        Rejection {
            reason,
            status: reason.default_status(),
            detail: None,
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

    /// The response: the status, `text/plain`, and the reason (with the
    /// detail after a colon); `Allow: POST` on 405 and `WWW-Authenticate`
    /// on 401 for BASIC credentials.
    pub fn into_http_response(self) -> Response<Full<Bytes>> {
        let body = match &self.detail {
            Some(detail) => format!("{}: {detail}\n", self.reason),
            None => format!("{}\n", self.reason),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.status;
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

impl std::error::Error for Rejection {}

impl From<ParseError> for Rejection {
    fn from(e: ParseError) -> Rejection {
        let reason = match e.kind() {
            ParseErrorKind::UnsupportedMediaType => Reason::UnsupportedMediaType,
            ParseErrorKind::TooLarge => Reason::PayloadTooLarge,
            ParseErrorKind::WrongKind => Reason::WrongKind,
            ParseErrorKind::BodyRead => Reason::BodyRead,
            _ => Reason::MalformedBody,
        };
        match reason {
            // The reason already says what is expected.
            Reason::UnsupportedMediaType => Rejection::new(reason),
            _ => Rejection::new(reason).with_detail(e.to_string()),
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
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn responses_carry_the_headers_their_status_needs() {
        let r = Rejection::new(Reason::MethodNotAllowed).into_http_response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()["allow"], "POST");
        let r = Rejection::new(Reason::BadCredentials).into_http_response();
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm="));
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
