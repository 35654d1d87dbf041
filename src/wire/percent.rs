//! Strict percent-decoding, shared by form bodies and RFC 5987/2231
//! `filename*` parameters, so that both refuse the same malformed input.
//!
//! `percent_encoding::percent_decode` (and `form_urlencoded`, built on it)
//! passes a malformed `%` through as it is, which would silently change
//! data here; this one reports the position of the first bad escape.

use std::borrow::Cow;

/// The value of an ASCII hex digit. Only `0-9`, `a-f` and `A-F`: no sign,
/// no white space (unlike `u8::from_str_radix`, which takes `+4`).
pub(crate) fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The byte that two hex digits spell, when both are hex digits.
pub(crate) fn hex_pair(hi: u8, lo: u8) -> Option<u8> {
    Some((hex(hi)? << 4) | hex(lo)?)
}

/// Decodes `%XX` escapes (and, with `plus_is_space`, `+` as a space).
///
/// Borrows `raw` when it holds nothing to decode. A `%` not followed by two
/// hex digits is an error carrying its byte offset. One pass: the runs
/// between escapes are copied whole, found with `memchr`.
pub(crate) fn decode(raw: &[u8], plus_is_space: bool) -> Result<Cow<'_, [u8]>, usize> {
    let next = |bytes: &[u8]| {
        if plus_is_space {
            memchr::memchr2(b'%', b'+', bytes)
        } else {
            memchr::memchr(b'%', bytes)
        }
    };
    let Some(first) = next(raw) else {
        return Ok(Cow::Borrowed(raw));
    };
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..first]);
    let mut i = first;
    while i < raw.len() {
        match raw[i] {
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let byte = match raw.get(i + 1..i + 3) {
                    Some(&[hi, lo]) => hex_pair(hi, lo),
                    _ => None,
                };
                out.push(byte.ok_or(i)?);
                i += 3;
            }
            _ => {
                let run = next(&raw[i..]).map_or(raw.len(), |n| i + n);
                out.extend_from_slice(&raw[i..run]);
                i = run;
            }
        }
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_optionally_plus() {
        assert_eq!(
            &*decode(b"a+b%2Bc%e3%83%86", true).unwrap(),
            "a b+cテ".as_bytes()
        );
        assert_eq!(&*decode(b"a+b%20", false).unwrap(), b"a+b ");
        assert!(matches!(decode(b"plain", true).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn malformed_escapes_report_their_offset() {
        for (bad, at) in [
            ("%", 0),
            ("%4", 0),
            ("%zz", 0),
            ("a%G1", 1),
            ("%%41", 0),
            ("ab%+4", 2),
            ("%-1", 0),
            ("% 1", 0),
        ] {
            assert_eq!(decode(bad.as_bytes(), true), Err(at), "{bad}");
            assert_eq!(decode(bad.as_bytes(), false), Err(at), "{bad}");
        }
    }

    #[test]
    fn hex_digits_take_no_sign() {
        assert_eq!(hex_pair(b'+', b'4'), None);
        assert_eq!(hex_pair(b'f', b'F'), Some(0xff));
    }
}
