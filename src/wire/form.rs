//! `application/x-www-form-urlencoded` bodies.
//!
//! Decoding is strict, unlike `form_urlencoded::parse` (and
//! `percent_encoding`, which it is built on): those replace invalid UTF-8
//! with U+FFFD and let malformed `%` escapes through, which would silently
//! change data here. So the few lines of percent-decoding live here: a bad
//! escape or invalid UTF-8 is an error that names the field. The decoder
//! ([`super::percent`]) is shared with `filename*` parameters.

use std::borrow::Cow;

use crate::{ParseError, ParseErrorKind, Text};

use super::budget::Budget;
use super::charset;
use super::fields::Fields;
use super::percent;

/// Parses a whole form body into its top-level fields.
///
/// `charset` is the one the request names: the bytes that percent-escapes
/// spell are text in it (UTF-8 when it names none), as browsers and
/// HttpClient write them.
pub(crate) fn parse(
    body: &Text,
    charset: Option<&'static encoding_rs::Encoding>,
    budget: &Budget,
) -> Result<Fields, ParseError> {
    let charset = charset::choose(None, charset);
    if budget.needs_key() {
        check_key_first(body, charset, budget)?;
    }
    let mut fields = Fields::default();
    for pair in body.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(body, name, charset).map_err(|e| e.at(name.to_owned()))?;
        let value = decode(body, value, charset).map_err(|e| e.at(name.as_str()))?;
        fields.set_form_field(&name, value, budget)?;
    }
    Ok(fields)
}

/// Finds and checks the `api_key` before anything else is decoded, so
/// that a caller without a valid key costs one scan and learns nothing of
/// the rest of the body. Its state is in `budget`; the error is the
/// caller's to hide.
fn check_key_first(body: &Text, charset: Charset, budget: &Budget) -> Result<(), ParseError> {
    for pair in body.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let is_key = name == "api_key"
            || (name.contains(['%', '+'])
                && decode(body, name, charset).is_ok_and(|n| n == "api_key"));
        if is_key {
            let value = decode(body, value, charset).map_err(|e| e.at("api_key"))?;
            return budget
                .check_key(&value)
                .map_err(|m| ParseError::new(ParseErrorKind::InvalidField, m).at("api_key"));
        }
    }
    Err(ParseError::missing("api_key"))
}

/// A charset and where it came from.
type Charset = (&'static encoding_rs::Encoding, charset::Source);

/// Decodes one name or value: `+` is a space, `%XX` a byte, and the bytes
/// are text in `charset`; the result shares `body` when nothing needed
/// decoding.
fn decode(body: &Text, raw: &str, charset: Charset) -> Result<Text, ParseError> {
    match percent::decode(raw.as_bytes(), true) {
        Ok(Cow::Borrowed(_)) => Ok(body.share(raw)),
        Ok(Cow::Owned(bytes)) => charset::decode_vec(bytes, charset),
        Err(at) => Err(bad_escape(raw, at)),
    }
}

fn bad_escape(raw: &str, at: usize) -> ParseError {
    let shown: String = raw[at..].chars().take(3).collect();
    ParseError::new(
        ParseErrorKind::Encoding,
        format!("malformed percent-encoding `{shown}` at byte {at}: `%` must be followed by two hex digits"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<String, ParseError> {
        let body = Text::from(s);
        decode(&body, &body, charset::choose(None, None)).map(String::from)
    }

    #[test]
    fn decodes_plus_and_percent() {
        assert_eq!(d("a+b%2Bc%E3%83%86").unwrap(), "a b+cテ");
        assert_eq!(d("plain").unwrap(), "plain");
        assert_eq!(d("").unwrap(), "");
    }

    #[test]
    fn unescaped_values_share_the_body() {
        let body = Text::from("k=value");
        let v = decode(&body, &body[2..], charset::choose(None, None)).unwrap();
        assert_eq!(v.as_ptr(), body[2..].as_ptr());
    }

    #[test]
    fn rejects_bad_escapes_and_invalid_utf8() {
        for bad in ["%", "%4", "%zz", "a%G1", "%%41"] {
            let e = d(bad).unwrap_err();
            assert_eq!(e.kind(), ParseErrorKind::Encoding, "{bad}");
            assert!(
                e.message().contains("malformed percent-encoding"),
                "{bad}: {e}"
            );
        }
        let e = d("%FF%FE").unwrap_err();
        assert!(e.message().contains("not valid UTF-8"), "{e}");
    }
}
