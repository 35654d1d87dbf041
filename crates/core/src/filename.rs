//! Attachment file names: the `Content-Disposition` parameters that carry
//! them (raw UTF-8, RFC 2231/5987 `filename*`, RFC 2047 encoded words), and
//! the sanitised form that is safe to write to disk.
//!
//! multer reads only the plain `filename="..."` parameter (and gives up on
//! `filename*`), so the file-name parameter is read here from the part's
//! raw header. Charsets are decoded by `encoding_rs` (Japanese mail often
//! uses ISO-2022-JP or Shift_JIS), base64 by `base64`.

use std::borrow::Cow;

use base64::Engine as _;
use encoding_rs::Encoding;

use crate::mime::percent;
use crate::wire::framing::uncarry;
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

/// Reads the file name of a `Content-Disposition` header value, whose
/// bytes are UTF-8 or text in `charset` (the request's `charset`
/// parameter; UTF-8 when there is none).
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
    // A header with control bytes (raw ISO-2022-JP) reached `multer` with
    // them carried (see `wire::framing::CARRIER`): give them back.
    let restored = uncarry(value);
    let value = restored.as_deref().unwrap_or(value);
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
    let ext = extended_filename(&params);
    if let Some(Ok(name)) = ext {
        return Some(name);
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
            let decoded = decode_encoded_words(&raw).into_owned();
            let raw_bytes = raw_bytes("filename", &raw);
            Some(FileName {
                decoded,
                raw,
                raw_bytes,
                lossy: !readable,
            })
        }
        None => match ext {
            // Only an undecodable `filename*`: its text as far as it goes.
            Some(Err(unreadable)) => Some(unreadable),
            _ => None,
        },
    }
}

/// Whether `needle` (lowercase ASCII) occurs in `hay`, ignoring ASCII case.
pub(crate) fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
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

/// `filename*` or its continuations, decoded; `None` when there is none,
/// `Err` with a lossy name (U+FFFD in place of what could not be read)
/// when its charset is unknown or its bytes are invalid in it.
fn extended_filename(params: &[(String, Vec<u8>)]) -> Option<Result<FileName, FileName>> {
    if let Some((_, v)) = params.iter().find(|(n, _)| n == "filename*") {
        let raw = String::from_utf8_lossy(v).into_owned();
        return Some(decode_ext(
            &raw,
            split_ext_value(v).map(|(e, text)| (e, text.to_vec())),
        ));
    }
    // RFC 2231 continuations: filename*0*=UTF-8''%E3..; filename*1*=%81..; filename*2="plain"
    let mut segments: Vec<(u32, bool, &[u8])> = params
        .iter()
        .filter_map(|(n, v)| {
            let rest = n.strip_prefix("filename*")?;
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
    let mut charset: Result<&'static Encoding, String> = Ok(encoding_rs::UTF_8);
    for (i, &(num, encoded, value)) in segments.iter().enumerate() {
        work::tick(value.len() + 1);
        if num as usize != i {
            break; // a gap ends the name, as RFC 2231 says
        }
        raw.push_str(&String::from_utf8_lossy(value));
        let mut value = value;
        if i == 0 && encoded {
            match split_ext_value(value) {
                Ok((cs, text)) => {
                    charset = Ok(cs);
                    value = text;
                }
                Err(why) => charset = Err(why),
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
    Some(decode_ext(&raw, charset.map(|c| (c, joined))))
}

/// Decodes a `filename*` value split into its charset and its
/// percent-encoded text; a lossy name when that fails.
fn decode_ext(
    raw: &str,
    split: Result<(&'static Encoding, Vec<u8>), String>,
) -> Result<FileName, FileName> {
    let lossy = |bytes: &[u8], encoding: &'static Encoding| FileName {
        decoded: encoding.decode_without_bom_handling(bytes).0.into_owned(),
        raw: raw.to_owned(),
        raw_bytes: raw.as_bytes().to_vec(),
        lossy: true,
    };
    let (encoding, text) = match split {
        Ok(split) => split,
        Err(_) => return Err(lossy(raw.as_bytes(), encoding_rs::UTF_8)),
    };
    let bytes = match percent::decode(&text, false) {
        Ok(bytes) => bytes,
        Err(_) => return Err(lossy(&text, encoding)),
    };
    match encoding.decode_without_bom_handling_and_without_replacement(&bytes) {
        Some(decoded) => Ok(FileName {
            decoded: decoded.into_owned(),
            raw: raw.to_owned(),
            raw_bytes: raw.as_bytes().to_vec(),
            lossy: false,
        }),
        None => Err(lossy(&bytes, encoding)),
    }
}

fn split_ext_value(value: &[u8]) -> Result<(&'static Encoding, &[u8]), String> {
    let malformed = || "malformed filename* parameter: expected charset'language'value".to_owned();
    let first = memchr::memchr(b'\'', value).ok_or_else(malformed)?;
    let second = first + 1 + memchr::memchr(b'\'', &value[first + 1..]).ok_or_else(malformed)?;
    let charset = &value[..first];
    let encoding = if charset.is_empty() {
        encoding_rs::UTF_8
    } else {
        Encoding::for_label(charset)
            .filter(|e| *e != encoding_rs::REPLACEMENT)
            .ok_or_else(|| {
                format!(
                    "unknown charset `{}` in filename*",
                    String::from_utf8_lossy(charset)
                )
            })?
    };
    Ok((encoding, &value[second + 1..]))
}

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

/// The longest sanitised name, in bytes; below the 255 of common file
/// systems, with room for a prefix or a counter the caller may add.
const MAX_SAFE_LEN: usize = 200;

/// See [`crate::Attachment::safe_filename`].
pub(crate) fn sanitize(name: &str, fallback: &str) -> String {
    // The last path component, for both separators.
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut out: String = base
        .chars()
        .filter(|&c| !crate::invisible::is_invisible_format(c))
        .map(|c| match c {
            c if c.is_control() => '_', // C0, DEL and C1
            '<' | '>' | ':' | '"' | '|' | '?' | '*' => '_',
            c => c,
        })
        .collect();
    let trimmed = out
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' '])
        .to_owned();
    out = trimmed;
    if out.is_empty() {
        out = sanitize_fallback(fallback);
    }
    let stem = out.split('.').next().unwrap_or("");
    const DEVICES: [&str; 22] = [
        "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
        "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
    ];
    if DEVICES
        .iter()
        .any(|d| d.eq_ignore_ascii_case(stem.trim_end()))
    {
        out.insert(0, '_');
    }
    truncate_keeping_extension(out, MAX_SAFE_LEN)
}

fn sanitize_fallback(fallback: &str) -> String {
    let clean: String = fallback
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    if clean.is_empty() {
        "attachment".to_owned()
    } else {
        clean
    }
}

fn truncate_keeping_extension(name: String, max: usize) -> String {
    if name.len() <= max {
        return name;
    }
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if name.len() - dot <= 16 && dot > 0 => name.split_at(dot),
        _ => (name.as_str(), ""),
    };
    let mut cut = max - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &stem[..cut], ext)
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
        // As multer hands it over: the 0xFF byte carried as FF FF.
        let f = lossy(b"form-data; filename=\"\xff\xff\xfe.txt\"", None);
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
    fn rfc5987_with_language_and_shift_jis() {
        // 画像 in Shift_JIS is 89 E6 91 9C.
        assert_eq!(
            name("attachment; filename*=Shift_JIS'ja'%89%E6%91%9C.png")
                .unwrap()
                .0,
            "画像.png"
        );
    }

    #[test]
    fn rfc2231_continuations_are_joined_in_order() {
        let h = "form-data; filename*1*=%83%8F1.png; filename*0*=UTF-8''%E7%94%BB%E5";
        assert_eq!(name(h).unwrap().0, "画像1.png");
        let h = "form-data; filename*0=\"long \"; filename*1=\"name.txt\"";
        assert_eq!(name(h).unwrap().0, "long name.txt");
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

    #[test]
    fn sanitize_strips_directories_and_dangerous_characters() {
        assert_eq!(sanitize("../../etc/passwd", "attachment1"), "passwd");
        assert_eq!(sanitize("..\\..\\boot.ini", "attachment1"), "boot.ini");
        assert_eq!(sanitize("a\0b\r\nc.txt", "attachment1"), "a_b__c.txt");
        assert_eq!(sanitize("what?<>.txt", "attachment1"), "what___.txt");
        assert_eq!(sanitize("..", "attachment1"), "attachment1");
        assert_eq!(sanitize("", "attachment2"), "attachment2");
        assert_eq!(sanitize(".hidden", "attachment1"), "hidden");
        assert_eq!(sanitize("trailing. ", "attachment1"), "trailing");
        assert_eq!(sanitize("CON.txt", "attachment1"), "_CON.txt");
        assert_eq!(sanitize("画像1.png", "attachment1"), "画像1.png");
        assert_eq!(sanitize("x/", "../evil"), "evil");
        assert_eq!(sanitize("invoice\u{202E}fdp.exe", "a"), "invoicefdp.exe");
        assert_eq!(sanitize("a\u{200B}b\u{2066}c\u{85}d", "a"), "abc_d");
        assert_eq!(
            sanitize("a\u{2028}b\u{E0041}c\u{3164}d.txt", "a"),
            "abcd.txt"
        );
    }

    #[test]
    fn sanitize_drops_every_invisible_character() {
        assert_eq!(
            sanitize(
                "a\u{FE0F}b\u{180B}c\u{17B4}d\u{1BCA1}e\u{1D175}f\u{2065}g\u{FFF3}h.txt",
                "x"
            ),
            "abcdefgh.txt"
        );
        assert_eq!(crate::text::printable("a\u{E0100}b", 10), "a\\u{e0100}b");
    }

    #[test]
    fn sanitize_truncates_long_names_keeping_the_extension() {
        let long = format!("{}.pdf", "あ".repeat(100));
        let safe = sanitize(&long, "attachment1");
        assert!(safe.len() <= MAX_SAFE_LEN, "{}", safe.len());
        assert!(safe.ends_with(".pdf"));
        assert!(safe.starts_with("あああ"));
    }
}
