//! RFC 2231 / RFC 5987 extended parameters (`filename*=UTF-8''%E7%94%BB`)
//! and their continuations (`filename*0*=...; filename*1=...`): a charset,
//! an optional language and percent-encoded text, decoded by `encoding_rs`.

use encoding_rs::Encoding;

use crate::mime::percent;
use crate::work;

/// An extended parameter's value, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtValue {
    /// The text, decoded; with U+FFFD where it could not be read.
    pub decoded: String,
    /// The value as sent (continuations joined, still percent-encoded), as
    /// text.
    pub raw: String,
    /// Whether it could not be decoded: its charset is unknown, the value
    /// is malformed (no `charset'language'` prefix, a bad `%` escape), or
    /// its bytes are invalid in its charset.
    pub lossy: bool,
}

/// The extended parameter `name*` (`name` lowercase), or its RFC 2231
/// continuations `name*0*`, `name*1`, ..., decoded, from `params` (names
/// lowercased, quoted strings unquoted); `None` when there is none.
///
/// A single `name*` wins over continuations. Continuations are joined in
/// the order of their numbers up to the first gap, as RFC 2231 says; the
/// first one carries the charset, `*`-marked ones are percent-encoded and
/// plain ones are taken as they are. Escapes are decoded over the joined
/// text, since a segment may end in the middle of a character.
pub(crate) fn parameter(params: &[(String, Vec<u8>)], name: &str) -> Option<ExtValue> {
    let star = format!("{name}*");
    if let Some((_, v)) = params.iter().find(|(n, _)| *n == star) {
        let raw = String::from_utf8_lossy(v).into_owned();
        return Some(decode(&raw, split(v).map(|(e, text)| (e, text.to_vec()))));
    }
    // RFC 2231 continuations: filename*0*=UTF-8''%E3..; filename*1*=%81..; filename*2="plain"
    let mut segments: Vec<(u32, bool, &[u8])> = params
        .iter()
        .filter_map(|(n, v)| {
            let rest = n.strip_prefix(star.as_str())?;
            let (num, encoded) = match rest.strip_suffix('*') {
                Some(num) => (num, true),
                None => (rest, false),
            };
            Some((num.parse().ok()?, encoded, v.as_slice()))
        })
        .collect();
    if segments.is_empty() {
        return None;
    }
    segments.sort_by_key(|s| s.0);
    let mut raw = String::new();
    let mut joined = Vec::new();
    let mut charset = Some(encoding_rs::UTF_8);
    for (i, &(num, encoded, value)) in segments.iter().enumerate() {
        work::tick(value.len() + 1);
        if num as usize != i {
            break; // a gap ends the value, as RFC 2231 says
        }
        raw.push_str(&String::from_utf8_lossy(value));
        let mut value = value;
        if i == 0 && encoded {
            match split(value) {
                Some((cs, text)) => {
                    charset = Some(cs);
                    value = text;
                }
                None => charset = None,
            }
        }
        if encoded {
            // Escapes are decoded at the end, over the joined text: a
            // segment may end in the middle of a character.
            joined.extend_from_slice(value);
        } else {
            // A plain segment: its `%` is a `%`.
            for &b in value {
                if b == b'%' {
                    joined.extend_from_slice(b"%25");
                } else {
                    joined.push(b);
                }
            }
        }
    }
    Some(decode(&raw, charset.map(|c| (c, joined))))
}

/// Decodes a value split into its charset and its percent-encoded text
/// (`None`: it could not be split); a lossy value when that fails.
fn decode(raw: &str, split: Option<(&'static Encoding, Vec<u8>)>) -> ExtValue {
    let lossy = |bytes: &[u8], encoding: &'static Encoding| ExtValue {
        decoded: encoding.decode_without_bom_handling(bytes).0.into_owned(),
        raw: raw.to_owned(),
        lossy: true,
    };
    let Some((encoding, text)) = split else {
        return lossy(raw.as_bytes(), encoding_rs::UTF_8);
    };
    let bytes = match percent::decode(&text, false) {
        Ok(bytes) => bytes,
        Err(_) => return lossy(&text, encoding),
    };
    match encoding.decode_without_bom_handling_and_without_replacement(&bytes) {
        Some(decoded) => ExtValue {
            decoded: decoded.into_owned(),
            raw: raw.to_owned(),
            lossy: false,
        },
        None => lossy(&bytes, encoding),
    }
}

/// Splits `charset'language'text` into the charset (UTF-8 when empty) and
/// the text; `None` when a quote is missing or the charset is unknown to
/// `encoding_rs` (or is one it decodes to a single U+FFFD).
fn split(value: &[u8]) -> Option<(&'static Encoding, &[u8])> {
    let first = memchr::memchr(b'\'', value)?;
    let second = first + 1 + memchr::memchr(b'\'', &value[first + 1..])?;
    let charset = &value[..first];
    let encoding = if charset.is_empty() {
        encoding_rs::UTF_8
    } else {
        Encoding::for_label(charset).filter(|e| *e != encoding_rs::REPLACEMENT)?
    };
    Some((encoding, &value[second + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameters as `disposition` hands them over.
    fn params(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn read(list: &[(&str, &str)]) -> Option<ExtValue> {
        parameter(&params(list), "filename")
    }

    #[test]
    fn rfc5987_with_language_and_shift_jis() {
        // 画像 in Shift_JIS is 89 E6 91 9C.
        let v = read(&[("filename*", "Shift_JIS'ja'%89%E6%91%9C.png")]).unwrap();
        assert_eq!((v.decoded.as_str(), v.lossy), ("画像.png", false));
        assert_eq!(v.raw, "Shift_JIS'ja'%89%E6%91%9C.png");
        // An empty charset is UTF-8.
        let v = read(&[("filename*", "''%E7%94%BB")]).unwrap();
        assert_eq!((v.decoded.as_str(), v.lossy), ("画", false));
    }

    #[test]
    fn rfc2231_continuations_are_joined_in_order() {
        let v = read(&[
            ("filename*1*", "%83%8F1.png"),
            ("filename*0*", "UTF-8''%E7%94%BB%E5"),
        ])
        .unwrap();
        assert_eq!((v.decoded.as_str(), v.lossy), ("画像1.png", false));
        assert_eq!(v.raw, "UTF-8''%E7%94%BB%E5%83%8F1.png");
        let v = read(&[("filename*0", "long "), ("filename*1", "name.txt")]).unwrap();
        assert_eq!(v.decoded, "long name.txt");
        // A plain segment's `%` is a `%`; a gap ends the value.
        let v = read(&[
            ("filename*0*", "UTF-8''a%41"),
            ("filename*1", "100%"),
            ("filename*3", "lost"),
        ])
        .unwrap();
        assert_eq!((v.decoded.as_str(), v.lossy), ("aA100%", false));
    }

    #[test]
    fn a_single_extended_value_wins_over_continuations_and_other_names_are_ignored() {
        let v = read(&[
            ("filename*0*", "UTF-8''x"),
            ("filename*", "UTF-8''y"),
            ("name*", "UTF-8''z"),
        ])
        .unwrap();
        assert_eq!(v.decoded, "y");
        assert_eq!(read(&[("name*", "UTF-8''z"), ("filename", "a")]), None);
        assert_eq!(read(&[("filename*x", "UTF-8''z")]), None);
        assert_eq!(
            parameter(&params(&[("name*", "UTF-8''z")]), "name").map(|v| v.decoded),
            Some("z".to_owned())
        );
    }

    #[test]
    fn undecodable_values_are_lossy_with_their_text() {
        for (value, decoded) in [
            ("x-nope''abc", "x-nope''abc"),       // unknown charset
            ("UTF-8", "UTF-8"),                   // no quotes
            ("UTF-8''a%FFb", "a\u{FFFD}b"),       // invalid in the charset
            ("UTF-8''%E7%9", "%E7%9"),            // a bad escape
            ("ISO-2022-KR''a", "ISO-2022-KR''a"), // the replacement encoding
        ] {
            let v = read(&[("filename*", value)]).unwrap();
            assert_eq!((v.decoded.as_str(), v.lossy), (decoded, true), "{value}");
            assert_eq!(v.raw, value);
        }
        let v = read(&[("filename*0*", "UTF-8''%E7%zz"), ("filename*1", "b")]).unwrap();
        assert!(v.lossy, "{v:?}");
    }
}
