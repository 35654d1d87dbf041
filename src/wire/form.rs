//! `application/x-www-form-urlencoded` bodies.
//!
//! Decoding is strict, unlike `form_urlencoded::parse`, which replaces
//! invalid UTF-8 with U+FFFD and lets malformed `%` escapes through: both
//! would silently change data here. A bad escape or invalid UTF-8 is an
//! error that names the field. Percent-decoding itself is done by
//! `percent_encoding`, the crate `form_urlencoded` is built on.

use std::borrow::Cow;

use crate::{ParseError, ParseErrorKind, Text};

use super::fields::Fields;

/// Parses a whole form body into its top-level fields.
pub(crate) fn parse(body: &Text) -> Result<Fields, ParseError> {
    let mut fields = Fields::default();
    for pair in body.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(body, name).map_err(|e| e.at(name.to_owned()))?;
        let value = decode(body, value).map_err(|e| e.at(name.as_str()))?;
        fields.set_form_field(&name, value)?;
    }
    Ok(fields)
}

/// Decodes one name or value: `+` is a space, `%XX` a byte; the result
/// shares `body` when nothing needed decoding.
fn decode(body: &Text, raw: &str) -> Result<Text, ParseError> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(body.share(raw));
    }
    let bytes = raw.as_bytes();
    for (i, _) in raw.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3);
        if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
            let shown: String = raw[i..].chars().take(3).collect();
            return Err(ParseError::new(
                ParseErrorKind::Encoding,
                format!("malformed percent-encoding `{shown}` at byte {i}: `%` must be followed by two hex digits"),
            ));
        }
    }
    let plus_free: Cow<'_, [u8]> = if raw.contains('+') {
        Cow::Owned(bytes.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect())
    } else {
        Cow::Borrowed(bytes)
    };
    let decoded: Vec<u8> = percent_encoding::percent_decode(&plus_free).collect();
    String::from_utf8(decoded).map(Text::from).map_err(|e| {
        ParseError::new(
            ParseErrorKind::Encoding,
            format!("percent-decoded value is not UTF-8 ({})", e.utf8_error()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Result<String, ParseError> {
        let body = Text::from(s);
        decode(&body, &body).map(String::from)
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
        let v = decode(&body, &body[2..]).unwrap();
        assert_eq!(v.as_ptr(), body[2..].as_ptr());
    }

    #[test]
    fn rejects_bad_escapes_and_invalid_utf8() {
        for bad in ["%", "%4", "%zz", "a%G1", "%%41"] {
            let e = d(bad).unwrap_err();
            assert_eq!(e.kind(), ParseErrorKind::Encoding, "{bad}");
            assert!(e.message().contains("malformed percent-encoding"), "{bad}: {e}");
        }
        let e = d("%FF%FE").unwrap_err();
        assert!(e.message().contains("not UTF-8"), "{e}");
    }
}
