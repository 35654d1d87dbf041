//! The three encodings CMC posts in, and the dispatch between them.
//!
//! - [`json`]: `application/json` (event webhook version 2 with "use JSON
//!   format", inbound webhook in JSON mode);
//! - [`form`]: `application/x-www-form-urlencoded` (the event webhook's
//!   default; `event` holds JSON text);
//! - [`multipart`]: `multipart/form-data` (inbound mails with attachments,
//!   and the event webhook as some CMC posts describe it).
//!
//! All three feed [`fields::Fields`], which builds the model, so every
//! encoding gives the same result for the same parameters.

pub(crate) mod budget;
pub(crate) mod charset;
pub(crate) mod de;
pub(crate) mod fast;
pub(crate) mod fields;
pub(crate) mod form;
pub(crate) mod framing;
pub(crate) mod json;
pub(crate) mod multipart;

use bytes::Bytes;

use crate::event::EventBatch;
use crate::inbound::InboundMail;
use crate::webhook::{Kind, Webhook};
use crate::{Limits, ParseError, ParseErrorKind, Text};

/// The encoding of a body, read from its `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Encoding {
    Json,
    Form,
    Multipart { boundary: String },
}

impl Encoding {
    /// The encoding's name in metrics: `json`, `form` or `multipart`.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Form => "form",
            Encoding::Multipart { .. } => "multipart",
        }
    }

    /// Reads the media type (any letter case, with parameters).
    pub(crate) fn from_content_type(content_type: &str) -> Result<Encoding, ParseError> {
        let unsupported = |why: String| ParseError::new(ParseErrorKind::UnsupportedMediaType, why);
        let mime: mime::Mime = content_type
            .trim()
            .parse()
            .map_err(|e| unsupported(format!("unreadable Content-Type `{content_type}`: {e}")))?;
        let (ty, sub) = (mime.type_(), mime.subtype());
        if ty == mime::APPLICATION && (sub == mime::JSON || mime.suffix() == Some(mime::JSON)) {
            Ok(Encoding::Json)
        } else if ty == mime::APPLICATION && sub == mime::WWW_FORM_URLENCODED {
            Ok(Encoding::Form)
        } else if ty == mime::MULTIPART && sub == mime::FORM_DATA {
            match mime.get_param(mime::BOUNDARY) {
                // RFC 2046: 1 to 70 characters. A longer one would make each
                // piece of a streamed body cost its length to search.
                Some(b) if b.as_str().len() > 70 => Err(ParseError::new(
                    ParseErrorKind::Encoding,
                    "the multipart boundary is longer than 70 characters (RFC 2046)",
                )),
                Some(b) if !b.as_str().is_empty() => Ok(Encoding::Multipart {
                    boundary: b.as_str().to_owned(),
                }),
                _ => Err(ParseError::new(
                    ParseErrorKind::Encoding,
                    "multipart/form-data without a boundary parameter",
                )),
            }
        } else {
            Err(unsupported(format!(
                "unsupported Content-Type `{content_type}`: expected application/json, application/x-www-form-urlencoded or multipart/form-data"
            )))
        }
    }
}

/// Parses a body of the given `Content-Type`; with `expected`, a body of the
/// other webhook kind is an error.
pub(crate) fn parse(
    content_type: &str,
    body: Bytes,
    expected: Option<Kind>,
    limits: Limits,
) -> Result<Webhook, ParseError> {
    let budget = budget::Budget::new(limits);
    let encoding = Encoding::from_content_type(content_type)?;
    let charset = charset::of_content_type(content_type)?;
    let fields = match encoding {
        Encoding::Json => json::parse(&body_text(body)?, &budget)?,
        Encoding::Form => parse_form(body, charset, &budget)?,
        Encoding::Multipart { boundary } => multipart::parse(&boundary, charset, body, limits)?,
    };
    fields.into_webhook(expected)
}

// The model's public `parse` constructors live here, on the parser's side,
// so that the model files import nothing from the parsers.

impl EventBatch {
    /// Parses an event-webhook body in any of its encodings (JSON,
    /// form-urlencoded with the `event` field holding JSON text, or
    /// multipart/form-data with the same fields).
    ///
    /// `content_type` is the request's `Content-Type` header value. A body
    /// that is an inbound mail is refused with
    /// [`ParseErrorKind::WrongKind`].
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook_core::EventBatch;
    ///
    /// let body = "server_composition=pro&event_type=bounces&event=%7B%22bounces%22%3A%5B%5D%7D";
    /// let batch = EventBatch::parse("application/x-www-form-urlencoded", Bytes::from(body))?;
    /// assert!(batch.events.is_empty());
    /// # Ok::<(), cmc_webhook_core::ParseError>(())
    /// ```
    pub fn parse(content_type: &str, body: Bytes) -> Result<EventBatch, ParseError> {
        parse(content_type, body, Some(Kind::Events), Default::default())?.into_events()
    }
}

impl InboundMail {
    /// Parses an inbound-webhook body: JSON (no attachments), or
    /// multipart/form-data (attachments as file parts); form-urlencoded with
    /// the same fields is accepted too.
    ///
    /// A body that is an event batch is refused with
    /// [`ParseErrorKind::WrongKind`].
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook_core::{InboundMail, ParseErrorKind};
    ///
    /// let events = r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[]}}"#;
    /// let err = InboundMail::parse("application/json", Bytes::from(events)).unwrap_err();
    /// assert_eq!(err.kind(), ParseErrorKind::WrongKind);
    /// ```
    pub fn parse(content_type: &str, body: Bytes) -> Result<InboundMail, ParseError> {
        parse(content_type, body, Some(Kind::Inbound), Default::default())?.into_inbound()
    }
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
        parse(content_type, body, None, Limits::default())
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
        parse(content_type, body, None, limits)
    }
}

/// A form body, in the charset the request names: UTF-8 (sharing the
/// body), or read from its bytes in another charset.
pub(crate) fn parse_form(
    body: Bytes,
    charset: Option<&'static encoding_rs::Encoding>,
    budget: &budget::Budget,
) -> Result<fields::Fields, ParseError> {
    match charset {
        Some(c) if c != encoding_rs::UTF_8 => form::parse_bytes(&body, c, budget),
        _ => form::parse(&body_text(body)?, budget),
    }
}

/// A UTF-8 JSON or form body as text, sharing the body; a byte-order mark
/// at its start is dropped (RFC 8259 lets a JSON reader ignore it).
///
/// JSON is UTF-8 whatever `charset` the request names: RFC 8259 defines
/// no such parameter, and a UTF-8 body labelled otherwise would be read as
/// mojibake without an error.
pub(crate) fn body_text(body: Bytes) -> Result<Text, ParseError> {
    let body = match body.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => body.slice_ref(rest),
        None => body,
    };
    Text::try_from_bytes(body).map_err(|e| {
        ParseError::new(
            ParseErrorKind::Encoding,
            format!("the body is not UTF-8 ({e})"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_are_matched_case_insensitively_with_parameters() {
        assert_eq!(
            Encoding::from_content_type("application/json").unwrap(),
            Encoding::Json
        );
        assert_eq!(
            Encoding::from_content_type("Application/JSON; charset=UTF-8").unwrap(),
            Encoding::Json
        );
        assert_eq!(
            Encoding::from_content_type("application/vnd.cmc+json").unwrap(),
            Encoding::Json
        );
        assert_eq!(
            Encoding::from_content_type("APPLICATION/X-WWW-FORM-URLENCODED;charset=utf-8").unwrap(),
            Encoding::Form
        );
        assert_eq!(
            Encoding::from_content_type("Multipart/Form-Data; boundary=\"a b\"").unwrap(),
            Encoding::Multipart {
                boundary: "a b".into()
            }
        );
    }

    #[test]
    fn other_media_types_are_unsupported() {
        for ct in [
            "text/plain",
            "",
            "application/xml",
            "multipart/mixed; boundary=x",
            ";;",
        ] {
            let e = Encoding::from_content_type(ct).unwrap_err();
            assert_eq!(e.kind(), ParseErrorKind::UnsupportedMediaType, "{ct}");
        }
        let e = Encoding::from_content_type("multipart/form-data").unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::Encoding);
        assert!(e.message().contains("boundary"));
        let long = format!("multipart/form-data; boundary={}", "b".repeat(71));
        let e = Encoding::from_content_type(&long).unwrap_err();
        assert!(e.message().contains("longer than 70"), "{e}");
        let ok = format!("multipart/form-data; boundary={}", "b".repeat(70));
        assert!(Encoding::from_content_type(&ok).is_ok());
    }
}
