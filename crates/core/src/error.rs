//! [`ParseError`]: why a request body is not a Customers Mail Cloud webhook.

use std::fmt;

/// Why a body could not be parsed, and where.
///
/// The [`Display`](fmt::Display) text names the field and its place in the
/// payload, so it can be returned to the caller or logged as it is:
///
/// ```
/// use bytes::Bytes;
/// use cmc_webhook_core::{ParseErrorKind, Webhook};
///
/// let body = r#"{"event_type":"deliveries","server_composition":"pro",
///     "event":{"deliveries":[{"created":"yesterday","status":"queued"}]}}"#;
/// let err = Webhook::parse("application/json", Bytes::from(body)).unwrap_err();
/// assert_eq!(err.kind(), ParseErrorKind::InvalidField);
/// assert_eq!(err.path(), Some("event.deliveries[0].created"));
/// assert!(err.to_string().starts_with("event.deliveries[0].created: "));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    kind: ParseErrorKind,
    path: Option<String>,
    message: String,
}

/// The class of a [`ParseError`], for callers that answer differently per
/// reason (the HTTP layer maps [`UnsupportedMediaType`] to 415 and
/// [`TooLarge`] to 413, the rest to 400).
///
/// [`UnsupportedMediaType`]: ParseErrorKind::UnsupportedMediaType
/// [`TooLarge`]: ParseErrorKind::TooLarge
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The `Content-Type` is missing, unreadable, or none of JSON,
    /// form-urlencoded and multipart/form-data.
    UnsupportedMediaType,
    /// The body is not well-formed in its encoding: invalid UTF-8, bad
    /// percent-encoding, broken multipart framing, a missing boundary.
    Encoding,
    /// The body (or a field holding JSON text) is not valid JSON, or nests
    /// deeper than the JSON parser allows, or holds a value kept as JSON
    /// text (an unknown field, a block) that nests deeper than
    /// [`Limits::MAX_NESTING`](crate::Limits::MAX_NESTING).
    Json,
    /// A field has the wrong type or a value that cannot be read (a date that
    /// is not a date, an address that is not an IP address, a field given
    /// twice).
    InvalidField,
    /// A required field is absent.
    MissingField,
    /// The body is a webhook of the other kind (an inbound mail where an
    /// event batch was expected, or the reverse), or of neither kind.
    WrongKind,
    /// A configured size or count cap was exceeded.
    TooLarge,
    /// The body stream failed while it was read (the client went away).
    BodyRead,
}

/// The longest message kept, in characters.
const MAX_MESSAGE: usize = 1000;
/// The longest path segment kept, in characters.
const MAX_SEGMENT: usize = 200;

impl ParseError {
    /// The message may quote the body: control and invisible formatting
    /// characters are escaped, so that it cannot forge a log line, and it is
    /// cut after 1 000 characters.
    pub(crate) fn new(kind: ParseErrorKind, message: impl Into<String>) -> Self {
        let message = message.into();
        ParseError {
            kind,
            path: None,
            message: if crate::text::needs_printable(&message, MAX_MESSAGE) {
                crate::text::printable(&message, MAX_MESSAGE)
            } else {
                message
            },
        }
    }

    /// A path segment is a field name from the body: escaped as the
    /// message is, and cut after 200 characters.
    pub(crate) fn at(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        let path = if crate::text::needs_printable(&path, MAX_SEGMENT) {
            crate::text::printable(&path, MAX_SEGMENT)
        } else {
            path
        };
        self.path = Some(match self.path.take() {
            None => path,
            Some(inner) if inner.starts_with('[') => format!("{path}{inner}"),
            Some(inner) => format!("{path}.{inner}"),
        });
        self
    }

    pub(crate) fn missing(field: &str) -> Self {
        ParseError::new(
            ParseErrorKind::MissingField,
            "required field is missing".to_owned(),
        )
        .at(field)
    }

    /// The class of the error.
    pub fn kind(&self) -> ParseErrorKind {
        self.kind
    }

    /// Where in the payload the error is, as a dotted path with indexes
    /// (`event.deliveries[1].created`), when it concerns one field.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// What is wrong, without the path.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{path}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_with_dots_and_brackets() {
        let e = ParseError::new(ParseErrorKind::InvalidField, "bad")
            .at("created")
            .at("[1]")
            .at("deliveries")
            .at("event");
        assert_eq!(e.path(), Some("event.deliveries[1].created"));
        assert_eq!(e.to_string(), "event.deliveries[1].created: bad");
        assert_eq!(e.message(), "bad");
    }

    #[test]
    fn missing_names_the_field() {
        let e = ParseError::missing("filter");
        assert_eq!(e.kind(), ParseErrorKind::MissingField);
        assert_eq!(e.to_string(), "filter: required field is missing");
    }
}
