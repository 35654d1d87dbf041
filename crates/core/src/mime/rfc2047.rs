//! RFC 2047 encoded words (`=?UTF-8?B?...?=`, `=?ISO-2022-JP?B?...?=`,
//! `=?...?Q?...?=`), as header values (a mail's `Subject`) and plain
//! `filename` parameters carry them. Charsets are decoded by `encoding_rs`,
//! base64 by `base64`.

use std::borrow::Cow;

use base64::Engine as _;
use encoding_rs::Encoding;

use crate::mime::percent;
use crate::work;

/// Decodes RFC 2047 encoded words in `input`; everything else is kept.
///
/// Adjacent encoded words separated only by white space are joined without
/// it. The bytes of adjacent words in one charset are decoded together,
/// because encoders split multi-byte characters across words; for the one
/// stateful charset, ISO-2022-JP, where each word is self-contained
/// (RFC 2047 section 5) and ends by switching back to ASCII, that closing
/// escape sequence is dropped when the next word opens with its own, so
/// that the two escapes do not meet (WHATWG's decoder reads back-to-back
/// escapes as an error). A word that cannot be decoded (unknown charset,
/// bad base64 or Q escape) is kept as it was sent.
///
/// Linear in the input: each candidate word is scanned only up to the next
/// `?` or a character no encoded word may hold, so a run of unclosed
/// `=?x?y` fragments costs one pass, not one pass per fragment.
pub(crate) fn decode_encoded_words(input: &str) -> Cow<'_, str> {
    let finder = memchr::memmem::Finder::new(b"=?");
    if finder.find(input.as_bytes()).is_none() {
        return Cow::Borrowed(input);
    }
    let mut out = String::with_capacity(input.len());
    let mut pending: Option<(&'static Encoding, Vec<u8>)> = None;
    let mut rest = input;
    let mut after_word = false;
    let flush = |out: &mut String, pending: &mut Option<(&'static Encoding, Vec<u8>)>| {
        if let Some((encoding, bytes)) = pending.take() {
            out.push_str(&encoding.decode_without_bom_handling(&bytes).0);
        }
    };
    while let Some(start) = finder.find(rest.as_bytes()) {
        work::tick(start + 1);
        let before = &rest[..start];
        let candidate = &rest[start..];
        match encoded_word(candidate) {
            Some(word) => {
                if !(after_word
                    && before
                        .bytes()
                        .all(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n')))
                {
                    flush(&mut out, &mut pending);
                    out.push_str(before);
                }
                match &mut pending {
                    Some((encoding, buf)) if *encoding == word.encoding => {
                        append_word(word.encoding, buf, &word.bytes);
                    }
                    _ => {
                        flush(&mut out, &mut pending);
                        pending = Some((word.encoding, word.bytes));
                    }
                }
                after_word = true;
                rest = &candidate[word.len..];
            }
            None => {
                flush(&mut out, &mut pending);
                out.push_str(before);
                out.push_str("=?");
                after_word = false;
                rest = &candidate[2..];
            }
        }
    }
    flush(&mut out, &mut pending);
    out.push_str(rest);
    Cow::Owned(out)
}

/// The ISO-2022-JP escape sequences a word may end with (ESC `(B`, `(J`,
/// `$@`, `$B`): each is three bytes.
const ISO_2022_JP_ESCAPES: [[u8; 3]; 4] = [*b"\x1b(B", *b"\x1b(J", *b"\x1b$@", *b"\x1b$B"];

/// Appends the bytes of a word to those of the previous word in the same
/// charset (see [`decode_encoded_words`] for ISO-2022-JP).
fn append_word(encoding: &'static Encoding, buf: &mut Vec<u8>, bytes: &[u8]) {
    if encoding == encoding_rs::ISO_2022_JP
        && bytes.first() == Some(&0x1b)
        && buf.len() >= 3
        && ISO_2022_JP_ESCAPES.iter().any(|e| buf.ends_with(e))
    {
        buf.truncate(buf.len() - 3);
    }
    buf.extend_from_slice(bytes);
}

/// One decoded `=?charset?B|Q?text?=`.
struct Word {
    encoding: &'static Encoding,
    bytes: Vec<u8>,
    /// The length of the word in the input.
    len: usize,
}

/// Reads one encoded word at the start of `s` (which starts with `=?`).
///
/// Every scan stops at the first `?`, or at a byte no encoded word may
/// contain (white space, controls, non-ASCII, and `=` in the charset), so
/// the work is bounded by the distance to the next `?`.
fn encoded_word(s: &str) -> Option<Word> {
    let b = s.as_bytes();
    let mut i = 2;
    // charset (with an optional RFC 2231 `*language`)
    let charset_start = i;
    while i < b.len() && b[i] != b'?' {
        work::tick(1);
        if !b[i].is_ascii_graphic() || b[i] == b'=' {
            return None;
        }
        i += 1;
    }
    let charset = &s[charset_start..i];
    // `?`, one letter, `?`
    let enc = *b.get(i + 1)?;
    if b.get(i) != Some(&b'?') || b.get(i + 2) != Some(&b'?') {
        return None;
    }
    i += 3;
    let text_start = i;
    while i < b.len() && b[i] != b'?' {
        work::tick(1);
        if !b[i].is_ascii_graphic() {
            return None;
        }
        i += 1;
    }
    if b.get(i + 1) != Some(&b'=') {
        return None;
    }
    let text = &b[text_start..i];
    let charset = charset.split('*').next().unwrap_or(charset);
    if charset.is_empty() {
        return None;
    }
    let encoding = Encoding::for_label(charset.as_bytes())?;
    if encoding == encoding_rs::REPLACEMENT {
        // ISO-2022-KR, HZ and the like: WHATWG decodes them to a single
        // U+FFFD, which would lose the text. Keep the word as sent.
        return None;
    }
    let bytes = match enc {
        b'B' | b'b' => BASE64_LENIENT.decode(text).ok()?,
        b'Q' | b'q' => decode_q(text)?,
        _ => return None,
    };
    Some(Word {
        encoding,
        bytes,
        len: i + 2,
    })
}

const BASE64_LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The `Q` encoding: `_` is a space, `=XX` a byte (two hex digits, strictly).
fn decode_q(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'_' => out.push(b' '),
            b'=' => {
                out.push(percent::hex_pair(*text.get(i + 1)?, *text.get(i + 2)?)?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_join_split_multibyte_characters() {
        // テスト split after its first byte across two words.
        let s = "=?UTF-8?B?4w==?= =?UTF-8?B?g4bjgrnjg4g=?=";
        assert_eq!(decode_encoded_words(s), "テスト");
    }

    #[test]
    fn iso_2022_jp_encoded_word() {
        // "テスト" in ISO-2022-JP, base64.
        assert_eq!(
            decode_encoded_words("=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?="),
            "テスト"
        );
    }

    #[test]
    fn text_around_words_is_kept_and_whitespace_between_words_dropped() {
        assert_eq!(
            decode_encoded_words("Re: =?UTF-8?Q?a?= =?UTF-8?Q?b?= end"),
            "Re: ab end"
        );
        assert_eq!(decode_encoded_words("no words here"), "no words here");
        assert!(matches!(decode_encoded_words("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn broken_words_are_kept_verbatim() {
        for s in [
            "=?",
            "=?UTF-8?B?",
            "=?x-unknown?B?YQ==?=",
            "=?UTF-8?B?***?=",
            "=?UTF-8?Q?=Z?=",
            "=?UTF-8?Q?=+4?=",
            "=?UTF-8?Q?=-1?=",
            "=?UTF-8?Q?= 1?=",
            "=?ISO-2022-KR?B?YQ==?=",
            "=?UTF-8?B?YQ ==?=",
            "a =?UTF-8?X?a?= b",
        ] {
            assert_eq!(decode_encoded_words(s), s, "{s}");
        }
    }

    #[test]
    fn iso_2022_jp_words_each_closing_in_ascii_join_without_a_replacement_character() {
        // Python's email package (and Japanese mailers) split the subject
        // into words that each switch back to ASCII (ESC ( B) at the end;
        // the next opens with ESC $ B. Decoding the joined bytes would meet
        // two escapes in a row, which WHATWG's decoder reads as U+FFFD.
        let s = "=?iso-2022-jp?b?GyRCJCpMZCQkOWckbyQ7ISdDbUo4SFY5ZhsoQjEy?=\n =?iso-2022-jp?b?MzQ1GyRCJEskRCQkJEYbKEI=?=";
        assert_eq!(
            decode_encoded_words(s),
            "お問い合わせ：注文番号12345について"
        );
        // One character a word (Python with a short line length).
        let s = "=?iso-2022-jp?b?GyRCJCobKEI=?=\n =?iso-2022-jp?b?GyRCTGQbKEI=?=\n =?iso-2022-jp?b?GyRCJCQbKEI=?=\n =?iso-2022-jp?b?GyRCOWcbKEI=?=";
        assert_eq!(decode_encoded_words(s), "お問い合");
        // A word that ends inside a JIS run (no escape back) goes on in the next.
        let split = "=?ISO-2022-JP?B?GyRCJUYlOQ==?= =?ISO-2022-JP?B?JUgbKEI=?=";
        assert_eq!(decode_encoded_words(split), "テスト");
    }

    #[test]
    fn unclosed_encoded_words_cost_linear_work() {
        for unit in ["=?x?y", "=?UTF-8?B?", "=?UTF-8?Q?a", "=?=?", "=?a?B?AAAA=?"] {
            work::assert_linear(
                unit,
                20_000,
                4.0,
                |n| unit.repeat(n),
                |input| {
                    assert_eq!(decode_encoded_words(input), *input, "kept as sent");
                },
            );
        }
    }
}
