//! [`Webhook`]: either kind of call, detected from the body.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{EventBatch, InboundMail, Limits, ParseError};

/// One call of either webhook, for endpoints that receive both.
///
/// ```
/// use bytes::Bytes;
/// use cmc_webhook_core::Webhook;
///
/// let body = "server_composition=pro&event_type=deliveries\
///             &event=%7B%22deliveries%22%3A%5B%5D%7D&api_key=s3cret";
/// match Webhook::parse("application/x-www-form-urlencoded", Bytes::from(body))? {
///     Webhook::Events(batch) => {
///         assert_eq!(batch.api_key.as_deref(), Some("s3cret"));
///         assert!(!format!("{batch:?}").contains("s3cret"));
///     }
///     Webhook::Inbound(mail) => panic!("not an inbound mail: {mail:?}"),
/// }
/// # Ok::<(), cmc_webhook_core::ParseError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "webhook", content = "body", rename_all = "snake_case")]
pub enum Webhook {
    /// An event-webhook batch (delivery status changes).
    Events(EventBatch),
    /// An inbound-webhook mail.
    Inbound(InboundMail),
}

impl Webhook {
    /// Parses a body of either kind in any of CMC's encodings.
    ///
    /// `content_type` is the request's `Content-Type` value; the media type
    /// is matched in any letter case and may carry parameters. The kind is
    /// read from the parameters present: `event_type`/`event` for events,
    /// `headers`/`filter`/`envelope-*` for inbound mail.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook_core::{ParseErrorKind, Webhook};
    ///
    /// let err = Webhook::parse("text/plain", Bytes::from_static(b"hi")).unwrap_err();
    /// assert_eq!(err.kind(), ParseErrorKind::UnsupportedMediaType);
    /// ```
    pub fn parse(content_type: &str, body: Bytes) -> Result<Webhook, ParseError> {
        crate::wire::parse(content_type, body, None, Limits::default())
    }

    /// [`Webhook::parse`] with other caps on multipart bodies than the
    /// [defaults](Limits::default).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook_core::{Limits, ParseErrorKind, Webhook};
    ///
    /// let body = "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n\
    ///             --b\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n2\r\n--b--\r\n";
    /// let limits = Limits::default().max_parts(1);
    /// let err = Webhook::parse_with_limits("multipart/form-data; boundary=b", Bytes::from(body), limits)
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), ParseErrorKind::TooLarge);
    /// ```
    pub fn parse_with_limits(
        content_type: &str,
        body: Bytes,
        limits: Limits,
    ) -> Result<Webhook, ParseError> {
        crate::wire::parse(content_type, body, None, limits)
    }
}

impl Webhook {
    /// The event batch, or the error for a body of the other kind.
    pub(crate) fn into_events(self) -> Result<EventBatch, ParseError> {
        match self {
            Webhook::Events(batch) => Ok(batch),
            Webhook::Inbound(_) => Err(Kind::Events.mismatch()),
        }
    }

    /// The inbound mail, or the error for a body of the other kind.
    pub(crate) fn into_inbound(self) -> Result<InboundMail, ParseError> {
        match self {
            Webhook::Inbound(mail) => Ok(mail),
            Webhook::Events(_) => Err(Kind::Inbound.mismatch()),
        }
    }
}

/// Which kind of webhook a body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Events,
    Inbound,
}

impl Kind {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::Events => "an event webhook (event_type, event)",
            Kind::Inbound => "an inbound mail (headers, filter, envelope)",
        }
    }

    fn other(self) -> Kind {
        match self {
            Kind::Events => Kind::Inbound,
            Kind::Inbound => Kind::Events,
        }
    }

    /// The error for a body of the other kind, where `self` was expected.
    pub(crate) fn mismatch(self) -> ParseError {
        ParseError::new(
            crate::ParseErrorKind::WrongKind,
            format!(
                "expected {}, but the body is {}",
                self.describe(),
                self.other().describe()
            ),
        )
    }
}
