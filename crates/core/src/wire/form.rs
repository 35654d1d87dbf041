//! `application/x-www-form-urlencoded` bodies.
//!
//! Decoding is strict, unlike `form_urlencoded::parse` (and
//! `percent_encoding`, which it is built on): those replace invalid UTF-8
//! with U+FFFD and let malformed `%` escapes through, which would silently
//! change data here. So the few lines of percent-decoding live here: a bad
//! escape or invalid UTF-8 is an error that names the field. The decoder
//! ([`crate::mime::percent`]) is shared with `filename*` parameters.
//!
//! A form field holds text; `event` and `headers` hold JSON text, read here
//! for both form bodies and multipart text parts.

use std::borrow::Cow;

use crate::{ParseError, ParseErrorKind, Text};

use crate::RawJson;
use crate::mime::percent;

use super::budget::{Budget, too_large};
use super::charset;
use super::de::HeadersSeed;
use super::fields::{Fields, Slot};
use super::json::{self, from_json};

impl Fields {
    /// Stores a parameter that arrived as text (a form field or a multipart
    /// text part): `event` and `headers` hold JSON text, parsed here.
    pub(crate) fn set_form_field(
        &mut self,
        key: &str,
        value: Text,
        budget: &Budget,
    ) -> Result<(), ParseError> {
        match Slot::of(key) {
            Slot::Event => {
                let events = json::events(&value, budget).map_err(|e| e.at("event"))?;
                self.set_events(events)
            }
            Slot::Headers => {
                let headers = from_json(&value, budget, || HeadersSeed(&value, budget))
                    .map_err(|e| e.at("headers"))?;
                self.set_headers(headers)
            }
            Slot::Other => {
                budget.unknown_field().map_err(too_large)?;
                self.set_extra(key, RawJson::string(&value))
            }
            slot => self.set_text(slot, key, value),
        }
    }
}

/// Parses a whole form body into its top-level fields.
/// The body is UTF-8, and so are the bytes its escapes spell (a body in
/// another charset goes to [`parse_bytes`]).
pub(crate) fn parse(body: &Text, budget: &Budget) -> Result<Fields, ParseError> {
    let charset = charset::choose(None, None);
    read_pairs(
        || {
            // Split at an ASCII byte, a range of `body` starts and ends on
            // character boundaries: `get` always succeeds.
            split_at_byte(body.as_bytes(), b'&')
                .filter_map(|range| body.get(range))
                .filter(|p| !p.is_empty())
                .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        },
        |raw: &str| decode(body, raw, charset),
        |raw: &str| raw.to_owned(),
        budget,
    )
}

/// Parses a form body whose charset is not UTF-8, from its bytes: raw
/// bytes and `%XX` escapes alike spell text in `charset` (decoding the
/// body first and its escapes after would read raw bytes twice).
pub(crate) fn parse_bytes(
    body: &[u8],
    charset: &'static encoding_rs::Encoding,
    budget: &Budget,
) -> Result<Fields, ParseError> {
    let charset = charset::choose(None, Some(charset));
    read_pairs(
        || {
            split_at_byte(body, b'&')
                .map(|range| &body[range])
                .filter(|p| !p.is_empty())
                .map(|pair| match memchr::memchr(b'=', pair) {
                    Some(at) => (&pair[..at], &pair[at + 1..]),
                    None => (pair, &[][..]),
                })
        },
        |raw: &[u8]| decode_bytes(raw, charset),
        |raw: &[u8]| String::from_utf8_lossy(raw).into_owned(),
        budget,
    )
}

/// The ranges of `bytes` between occurrences of `sep`, found with
/// `memchr`'s vector search (a form body is one long `event` value with
/// a few short fields around it).
fn split_at_byte(bytes: &[u8], sep: u8) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut start = Some(0);
    std::iter::from_fn(move || {
        let from = start?;
        let end = memchr::memchr(sep, bytes.get(from..)?).map(|i| from + i);
        crate::work::tick(end.unwrap_or(bytes.len()) - from + 1);
        start = end.map(|end| end + 1);
        Some(from..end.unwrap_or(bytes.len()))
    })
}

/// Reads the `name=value` pairs of a body into its fields, each name and
/// value through `decode` (`shown` names an undecodable name in errors).
///
/// When a key is required, the `api_key` is found and checked before any
/// other value is decoded, so that a caller without a valid key costs one
/// scan and learns nothing of the rest of the body. Its state is in
/// `budget`; the error is the caller's to hide.
fn read_pairs<R, I>(
    pairs: impl Fn() -> I,
    decode: impl Fn(R) -> Result<Text, ParseError>,
    shown: impl Fn(R) -> String,
    budget: &Budget,
) -> Result<Fields, ParseError>
where
    R: Copy,
    I: Iterator<Item = (R, R)>,
{
    if budget.needs_key() {
        let (_, key) = pairs()
            .find(|&(name, _)| decode(name).is_ok_and(|n| n == "api_key"))
            .ok_or_else(|| ParseError::missing("api_key"))?;
        let key = decode(key).map_err(|e| e.at("api_key"))?;
        budget
            .check_key(&key)
            .map_err(|m| ParseError::new(ParseErrorKind::InvalidField, m).at("api_key"))?;
    }
    let mut fields = Fields::default();
    for (name, value) in pairs() {
        let name = decode(name).map_err(|e| e.at(shown(name)))?;
        let value = decode(value).map_err(|e| e.at(name.as_str()))?;
        fields.set_form_field(&name, value, budget)?;
    }
    Ok(fields)
}

/// Decodes one raw name or value of [`parse_bytes`].
fn decode_bytes(raw: &[u8], charset: Charset) -> Result<Text, ParseError> {
    match percent::decode(raw, true) {
        Ok(bytes) => charset::decode_vec(bytes.into_owned(), charset),
        Err(at) => Err(bad_escape_bytes(raw, at)),
    }
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
    bad_escape_bytes(raw.as_bytes(), at)
}

fn bad_escape_bytes(raw: &[u8], at: usize) -> ParseError {
    let shown = String::from_utf8_lossy(&raw[at.min(raw.len())..(at + 3).min(raw.len())]);
    ParseError::new(
        ParseErrorKind::Encoding,
        format!(
            "malformed percent-encoding `{shown}` at byte {at}: `%` must be followed by two hex digits"
        ),
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
    fn splits_at_every_separator() {
        fn split(s: &str) -> Vec<&str> {
            split_at_byte(s.as_bytes(), b'&').map(|r| &s[r]).collect()
        }
        assert_eq!(split(""), [""]);
        assert_eq!(split("a=1"), ["a=1"]);
        assert_eq!(split("&a=1&&b&"), ["", "a=1", "", "b", ""]);
        assert_eq!(split("ä=ö&ü"), ["ä=ö", "ü"]);
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
