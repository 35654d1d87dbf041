//! [`Webhook`]: either kind of call, detected from the body.

use serde::{Deserialize, Serialize};

use crate::{EventBatch, InboundMail, ParseError};

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
