//! Attachment file names from `Content-Disposition` header values: the
//! header read in its charset, its parameters split, and the name taken
//! from `filename*` (RFC 2231/5987, see [`super::rfc2231`]) or `filename`
//! (raw text, or RFC 2047 encoded words, see [`super::rfc2047`]).
//!
//! multer reads only the plain `filename="..."` parameter (and gives up on
//! `filename*`), so the file-name parameter is read here from the part's
//! raw header. Charsets are decoded by `encoding_rs` (Japanese mail often
//! uses ISO-2022-JP or Shift_JIS).

use std::borrow::Cow;

use encoding_rs::Encoding;

use crate::mime::{contains_ignore_ascii_case, rfc2047, rfc2231};
use crate::work;

/// A file name as sent and decoded (empty for a part without one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FileName {
    /// The name, decoded; with U+FFFD where it could not be read.
    pub decoded: String,
    /// The parameter as sent (the `filename*` value, or the unquoted
    /// `filename`), as text.
    pub raw: String,
    /// The parameter's bytes as sent.
    pub raw_bytes: Vec<u8>,
    /// Whether part of the name could not be decoded.
    pub lossy: bool,
}

impl FileName {
    /// A name from `filename*`: its bytes as sent are its text, which is
    /// ASCII (percent-encoded) unless the sender broke the rules.
    fn from_extended(ext: rfc2231::ExtValue) -> FileName {
        FileName {
            raw_bytes: ext.raw.as_bytes().to_vec(),
            decoded: ext.decoded,
            raw: ext.raw,
            lossy: ext.lossy,
        }
    }
}

/// Reads the file name of a `Content-Disposition` header value, whose
/// bytes are UTF-8 or text in `charset` (the request's `charset`
/// parameter; UTF-8 when there is none). The value is as sent: a parser
/// that disguised bytes on the way (see `wire::framing::uncarry`) gives
/// them back first.
///
/// The header is decoded before its parameters are looked for: in
/// Shift_JIS a `\` or `"` byte may be the second byte of a character
/// (表 is `95 5C`), and in ISO-2022-JP `"` and `;` bytes stand inside
/// escaped runs, so a byte-level reading would cut names short or eat
/// characters. `filename*` (and its RFC 2231 continuations `filename*0*`,
/// `filename*1`, ...) wins over `filename`, as RFC 6266 says; when it
/// cannot be decoded (an unknown charset, bytes invalid in it), the plain
/// `filename` is the fallback. The plain parameter may hold RFC 2047
/// encoded words, which are decoded.
///
/// A name is never refused: one that cannot be decoded is returned with
/// U+FFFD in place of what could not be read, its bytes as sent, and
/// `lossy` set, so that the attachment (and the mail) is kept.
pub(crate) fn from_content_disposition(
    value: &[u8],
    charset: Option<&'static Encoding>,
) -> Option<FileName> {
    if !contains_ignore_ascii_case(value, b"filename") {
        return None; // the common case of a text part: nothing to parse
    }
    let encoding = charset.unwrap_or(encoding_rs::UTF_8);
    // ASCII without an escape is the same text in every charset a header
    // can be in; ISO-2022-JP is ASCII bytes too, but ESC switches it away.
    //
    // Bytes that are valid UTF-8 are read as UTF-8 whatever the request
    // names: RFC 7578 makes UTF-8 the file names' charset, and HttpMime's
    // RFC6532 mode writes them so under any `charset`. Text in another
    // charset is almost never valid UTF-8 by chance.
    // `read_in` is the charset the header was read in, to write the name
    // back in as its bytes.
    let (text, read_in) = match std::str::from_utf8(value) {
        Ok(ascii) if value.is_ascii() && !value.contains(&0x1b) => {
            (Cow::Borrowed(ascii), Some(encoding_rs::UTF_8))
        }
        Ok(utf8) if !value.is_ascii() => (Cow::Borrowed(utf8), Some(encoding_rs::UTF_8)),
        // ESC sequences in 7-bit bytes are ISO-2022-JP, as Japanese mailers
        // write it raw, whatever the request's label says.
        _ if value.is_ascii()
            && encoding_rs::ISO_2022_JP
                .decode_without_bom_handling_and_without_replacement(value)
                .is_some() =>
        {
            let text = encoding_rs::ISO_2022_JP
                .decode_without_bom_handling(value)
                .0;
            (text, Some(encoding_rs::ISO_2022_JP))
        }
        _ => match encoding.decode_without_bom_handling_and_without_replacement(value) {
            Some(text) => (text, Some(encoding)),
            None => (encoding.decode_without_bom_handling(value).0, None),
        },
    };
    let readable = read_in.is_some();
    let params = parameters(text.as_bytes());
    let ext = rfc2231::parameter(&params, "filename");
    if let Some(name) = ext.as_ref().filter(|name| !name.lossy) {
        return Some(FileName::from_extended(name.clone()));
    }
    // The bytes as sent: the decoded text written back in its charset, or,
    // when the header could not be decoded, the parameter read from the
    // raw bytes (exact unless a byte of a character looks like a quote).
    let raw_bytes = |name: &str, decoded: &str| -> Vec<u8> {
        if let Some(read_in) = read_in {
            read_in.encode(decoded).0.into_owned()
        } else {
            parameters(value)
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .unwrap_or_default()
        }
    };
    match params.iter().find(|(name, _)| name == "filename") {
        Some((_, plain)) => {
            let raw = String::from_utf8_lossy(plain).into_owned();
            let decoded = rfc2047::decode_encoded_words(&raw).into_owned();
            let raw_bytes = raw_bytes("filename", &raw);
            Some(FileName {
                decoded,
                raw,
                raw_bytes,
                lossy: !readable,
            })
        }
        // Only an undecodable `filename*`: its text as far as it goes.
        None => ext.map(FileName::from_extended),
    }
}

/// `name=value` parameters after the disposition type; names lowercased,
/// quoted strings unquoted. Never fails: what cannot be read is skipped.
fn parameters(value: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut params = Vec::new();
    let mut rest = match memchr::memchr(b';', value) {
        Some(i) => &value[i + 1..],
        None => return params,
    };
    loop {
        rest = rest.trim_ascii_start();
        while let Some(r) = rest.strip_prefix(b";") {
            rest = r.trim_ascii_start();
        }
        if rest.is_empty() {
            return params;
        }
        let name_end = rest
            .iter()
            .position(|&b| b == b'=' || b == b';')
            .unwrap_or(rest.len());
        work::tick(name_end + 1);
        let name = String::from_utf8_lossy(rest[..name_end].trim_ascii()).to_ascii_lowercase();
        rest = &rest[name_end..];
        let Some(after_eq) = rest.strip_prefix(b"=") else {
            continue; // a bare token without a value
        };
        let after_eq = after_eq.trim_ascii_start();
        let value;
        if let Some(quoted) = after_eq.strip_prefix(b"\"") {
            let mut out = Vec::new();
            let mut i = 0;
            while i < quoted.len() {
                work::tick(1);
                match quoted[i] {
                    b'\\' if i + 1 < quoted.len() => {
                        out.push(quoted[i + 1]);
                        i += 2;
                    }
                    b'"' => break,
                    b => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            value = out;
            rest = quoted.get(i + 1..).unwrap_or_default();
            // Skip whatever stands between the closing quote and the next `;`.
            let next = memchr::memchr(b';', rest).unwrap_or(rest.len());
            work::tick(next);
            rest = &rest[next..];
        } else {
            let end = memchr::memchr(b';', after_eq).unwrap_or(after_eq.len());
            work::tick(end);
            value = after_eq[..end].trim_ascii().to_vec();
            rest = &after_eq[end..];
        }
        params.push((name, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(header: &str) -> Option<(String, String)> {
        from_content_disposition(header.as_bytes(), None).map(|f| {
            assert!(!f.lossy, "{header}: {f:?}");
            (f.decoded, f.raw)
        })
    }

    fn lossy(header: &[u8], charset: Option<&'static Encoding>) -> FileName {
        let f = from_content_disposition(header, charset).expect("a name");
        assert!(f.lossy, "{f:?}");
        f
    }

    #[test]
    fn unreadable_names_are_kept_lossily_with_their_bytes_unless_a_fallback_exists() {
        let f = lossy(b"form-data; filename=\"\xff\xfe.txt\"", None);
        assert_eq!(f.decoded, "\u{FFFD}\u{FFFD}.txt");
        assert_eq!(f.raw_bytes, b"\xff\xfe.txt");
        assert_eq!(
            lossy(b"form-data; filename*=x-nope''abc", None).decoded,
            "x-nope''abc"
        );
        let f = lossy(b"form-data; filename*=UTF-8''a%FFb", None);
        assert_eq!(f.decoded, "a\u{FFFD}b");
        assert_eq!(f.raw_bytes, b"UTF-8''a%FFb");
        assert_eq!(lossy(b"form-data; filename*=UTF-8", None).decoded, "UTF-8");
        let fallback = from_content_disposition(
            b"form-data; filename=\"ok.txt\"; filename*=x-nope''abc",
            None,
        )
        .unwrap();
        assert_eq!(
            (fallback.decoded.as_str(), fallback.lossy),
            ("ok.txt", false)
        );
    }

    #[test]
    fn names_are_read_in_the_request_charset_before_quotes_and_backslashes() {
        // 表 in Shift_JIS is 95 5C: a backslash byte right before the
        // closing quote, as HttpMime writes it.
        let sjis = b"form-data; name=\"attachment1\"; filename=\"\x95\x5c.pdf\"";
        let f = from_content_disposition(sjis, Some(encoding_rs::SHIFT_JIS)).unwrap();
        assert_eq!((f.decoded.as_str(), f.lossy), ("表.pdf", false));
        assert_eq!(f.raw_bytes, b"\x95\x5c.pdf");
        // ISO-2022-JP: ※ is 22 28 inside an escaped run, a quote byte.
        let jis = b"form-data; filename=\"\x1b$B\x22(\x1b(Ba;b.txt\"";
        let f = from_content_disposition(jis, Some(encoding_rs::ISO_2022_JP)).unwrap();
        assert_eq!((f.decoded.as_str(), f.lossy), ("※a;b.txt", false));
        // Raw ISO-2022-JP is read as such under any label, or none.
        for charset in [None, Some(encoding_rs::UTF_8), Some(encoding_rs::SHIFT_JIS)] {
            let f = from_content_disposition(jis, charset).unwrap();
            assert_eq!((f.decoded.as_str(), f.lossy), ("※a;b.txt", false));
            assert_eq!(f.raw_bytes, b"\x1b$B\x22(\x1b(Ba;b.txt");
        }
        // A UTF-8 name under another label keeps its UTF-8 bytes.
        let utf8 = "form-data; filename=\"naïveÿ.txt\"".as_bytes();
        let f = from_content_disposition(utf8, Some(encoding_rs::ISO_2022_JP)).unwrap();
        assert_eq!(
            (f.decoded.as_str(), f.raw_bytes.as_slice()),
            ("naïveÿ.txt", "naïveÿ.txt".as_bytes())
        );
        // Without the charset the same bytes are not UTF-8: kept, lossily.
        let f = lossy(sjis, None);
        assert!(f.decoded.contains('\u{FFFD}'), "{f:?}");
    }

    #[test]
    fn plain_utf8_filename_is_kept() {
        assert_eq!(
            name(r#"form-data; name="attachment1"; filename="画像1.png""#),
            Some(("画像1.png".into(), "画像1.png".into()))
        );
    }

    #[test]
    fn quoted_string_escapes_are_removed() {
        assert_eq!(
            name(r#"form-data; name="a"; filename="say \"hi\"; ok.txt""#)
                .unwrap()
                .0,
            r#"say "hi"; ok.txt"#
        );
    }

    #[test]
    fn unquoted_filename_is_read() {
        assert_eq!(
            name("form-data; filename=report.pdf; name=a").unwrap().0,
            "report.pdf"
        );
    }

    #[test]
    fn rfc5987_ext_value_wins_over_plain() {
        let h = r#"form-data; name="attachment1"; filename="fallback.png"; filename*=UTF-8''%E7%94%BB%E5%83%8F1.png"#;
        assert_eq!(
            name(h),
            Some(("画像1.png".into(), "UTF-8''%E7%94%BB%E5%83%8F1.png".into()))
        );
    }

    #[test]
    fn rfc2047_base64_and_q_words_are_decoded() {
        assert_eq!(
            name(r#"form-data; filename="=?UTF-8?B?55S75YOPMS5wbmc=?=""#),
            Some(("画像1.png".into(), "=?UTF-8?B?55S75YOPMS5wbmc=?=".into()))
        );
        assert_eq!(
            name(r#"form-data; filename="=?utf-8?q?caf=C3=A9_menu.txt?=""#)
                .unwrap()
                .0,
            "café menu.txt"
        );
    }

    #[test]
    fn rfc2231_and_rfc5987_names_with_malformed_escapes_are_lossy_like_form_bodies() {
        lossy(b"form-data; filename*=UTF-8''%E7%9", None);
        lossy(b"form-data; filename*=UTF-8''a%+4", None);
        lossy(b"form-data; filename*0*=UTF-8''%E7%zz; filename*1=b", None);
        // The plain name is the fallback, as for an unknown charset.
        assert_eq!(
            name("form-data; filename=\"ok.txt\"; filename*=UTF-8''%E7%9")
                .unwrap()
                .0,
            "ok.txt"
        );
    }

    #[test]
    fn header_parameters_cost_linear_work() {
        for unit in ["; a=\"\\\\\"", "; filename*1*=%41", ";;;;", "; x"] {
            work::assert_linear(
                unit,
                5_000,
                8.0,
                |n| format!("form-data; filename=x{}", unit.repeat(n)),
                |input| {
                    let _ = from_content_disposition(input.as_bytes(), None);
                },
            );
        }
    }

    #[test]
    fn missing_filename_is_none() {
        assert_eq!(name(r#"form-data; name="text""#), None);
        assert_eq!(name("form-data"), None);
        assert_eq!(name(""), None);
    }
}
