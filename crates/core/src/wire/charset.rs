//! Declared charsets: the request's `charset` parameter is the default for
//! every text value in the body (form fields; multipart parts and file
//! names without a label of their own), a part's own label wins, and
//! labels are read by the WHATWG rules of `encoding_rs`.
//!
//! Without any label, text is UTF-8. Text that is not valid in the charset
//! it is read in is refused (400), with the field and the charset in the
//! message: decoding it with a guessed fallback would change data
//! silently. File names are the exception (see `mime::disposition`): an
//! unreadable one is kept lossily, so that the attachment is not lost.

use bytes::Bytes;
use encoding_rs::Encoding;

use crate::{ParseError, ParseErrorKind, Text};

/// The `charset` parameter of a `Content-Type` value: `Ok(None)` when
/// there is none, an error naming the label when `encoding_rs` does not
/// know it (or maps it to the replacement encoding, which decodes
/// everything to one U+FFFD).
pub(crate) fn of_content_type(content_type: &str) -> Result<Option<&'static Encoding>, ParseError> {
    if !crate::mime::contains_ignore_ascii_case(content_type.as_bytes(), b"charset") {
        return Ok(None);
    }
    let Ok(mime) = content_type.trim().parse::<mime::Mime>() else {
        return Ok(None); // the media type itself is judged elsewhere
    };
    let Some(label) = mime.get_param(mime::CHARSET) else {
        return Ok(None);
    };
    match Encoding::for_label(label.as_str().as_bytes()) {
        Some(e) if e != encoding_rs::REPLACEMENT => Ok(Some(e)),
        _ => Err(ParseError::new(
            ParseErrorKind::Encoding,
            format!(
                "unknown charset `{}`",
                crate::text::printable(label.as_str(), 40)
            ),
        )),
    }
}

/// Where the charset a value is read in came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The value's own label (a multipart part's `Content-Type`).
    Own,
    /// The request's `Content-Type`.
    Request,
    /// No label anywhere: UTF-8.
    Default,
}

/// The charset a value is read in: its own label, else the request's,
/// else UTF-8.
pub(crate) fn choose(
    own: Option<&'static Encoding>,
    request: Option<&'static Encoding>,
) -> (&'static Encoding, Source) {
    match (own, request) {
        (Some(e), _) => (e, Source::Own),
        (None, Some(e)) => (e, Source::Request),
        (None, None) => (encoding_rs::UTF_8, Source::Default),
    }
}

/// Decodes `bytes` in `encoding`, strictly; a UTF-8 value shares `bytes`.
/// The error says which charset was tried and where it came from; the
/// caller adds the field's path.
pub(crate) fn decode(
    bytes: Bytes,
    (encoding, source): (&'static Encoding, Source),
) -> Result<Text, ParseError> {
    let text = if encoding == encoding_rs::UTF_8 {
        Text::try_from_bytes(bytes).ok()
    } else {
        encoding
            .decode_without_bom_handling_and_without_replacement(&bytes)
            .map(|t| Text::from(t.into_owned()))
    };
    text.ok_or_else(|| not_valid(encoding, source))
}

/// Decodes bytes that are not a slice of a shared buffer.
pub(crate) fn decode_vec(
    bytes: Vec<u8>,
    charset: (&'static Encoding, Source),
) -> Result<Text, ParseError> {
    decode(Bytes::from(bytes), charset)
}

fn not_valid(encoding: &'static Encoding, source: Source) -> ParseError {
    let from = match source {
        Source::Own => "the charset its part names",
        Source::Request => "the charset the request's Content-Type names",
        Source::Default => "no charset is named, so UTF-8 is assumed",
    };
    ParseError::new(
        ParseErrorKind::Encoding,
        format!("the value is not valid {} ({from})", encoding.name()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_whatwg_rules() {
        let of = |ct: &str| of_content_type(ct).unwrap().map(Encoding::name);
        assert_eq!(of("application/x-www-form-urlencoded"), None);
        assert_eq!(
            of("application/x-www-form-urlencoded; charset=ISO-8859-1"),
            Some("windows-1252")
        );
        assert_eq!(
            of("multipart/form-data; boundary=b; charset=\"Shift_JIS\""),
            Some("Shift_JIS")
        );
        assert_eq!(
            of("multipart/form-data; charset=x-sjis; boundary=b"),
            Some("Shift_JIS")
        );
        assert_eq!(of("application/json; charset=utf-8"), Some("UTF-8"));
        for bad in [
            "text/plain; charset=klingon",
            "text/plain; charset=iso-2022-kr",
        ] {
            let e = of_content_type(bad).unwrap_err();
            assert!(e.message().starts_with("unknown charset"), "{e}");
        }
    }

    #[test]
    fn errors_name_the_charset_and_where_it_came_from() {
        let e = decode(Bytes::from_static(b"\xff"), choose(None, None)).unwrap_err();
        assert_eq!(
            e.message(),
            "the value is not valid UTF-8 (no charset is named, so UTF-8 is assumed)"
        );
        let e = decode(
            Bytes::from_static(b"\x82"),
            choose(None, Some(encoding_rs::SHIFT_JIS)),
        )
        .unwrap_err();
        assert!(
            e.message().contains("Shift_JIS (the charset the request's"),
            "{e}"
        );
        let ok = decode(
            Bytes::from_static(b"Caf\xe9"),
            choose(Some(encoding_rs::WINDOWS_1252), None),
        );
        assert_eq!(ok.unwrap(), "Café");
    }
}
