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

/// A file name as sent and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileName {
    pub decoded: String,
    pub raw: String,
}

/// Reads the file name of a `Content-Disposition` header value.
///
/// `filename*` (and its RFC 2231 continuations `filename*0*`, `filename*1`,
/// ...) wins over `filename`, as RFC 6266 says; when it cannot be decoded
/// (an unknown charset, bytes invalid in it), the plain `filename` is the
/// fallback. The plain parameter may hold RFC 2047 encoded words, which are
/// decoded. A name that cannot be read at all (raw bytes that are not
/// UTF-8, an undecodable `filename*` with no fallback) is an error: the
/// part would otherwise be stored under a name it does not have.
pub(crate) fn from_content_disposition(value: &[u8]) -> Result<Option<FileName>, String> {
    if !contains_ignore_ascii_case(value, b"filename") {
        return Ok(None); // the common case of a text part: nothing to parse
    }
    let params = parameters(value);
    let ext = extended_filename(&params);
    if let Some(Ok(name)) = ext {
        return Ok(Some(name));
    }
    match params.iter().find(|(name, _)| name == "filename") {
        Some((_, plain)) => {
            let raw = String::from_utf8(plain.clone()).map_err(|_| {
                "the file name is neither UTF-8 nor encoded (RFC 2047 or RFC 5987)".to_owned()
            })?;
            let decoded = decode_encoded_words(&raw).into_owned();
            Ok(Some(FileName { decoded, raw }))
        }
        None => match ext {
            Some(Err(why)) => Err(why),
            _ => Ok(None),
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
            rest = &rest[next..];
        } else {
            let end = memchr::memchr(b';', after_eq).unwrap_or(after_eq.len());
            value = after_eq[..end].trim_ascii().to_vec();
            rest = &after_eq[end..];
        }
        params.push((name, value));
    }
}

/// `filename*` or its continuations, decoded; `None` when there is none.
fn extended_filename(params: &[(String, Vec<u8>)]) -> Option<Result<FileName, String>> {
    if let Some((_, v)) = params.iter().find(|(n, _)| n == "filename*") {
        let raw = String::from_utf8_lossy(v).into_owned();
        return Some(decode_ext_value(v).map(|decoded| FileName { decoded, raw }));
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
    let mut bytes = Vec::new();
    let mut charset: Option<&'static Encoding> = None;
    for (i, &(num, encoded, value)) in segments.iter().enumerate() {
        if num as usize != i {
            break; // a gap ends the name, as RFC 2231 says
        }
        raw.push_str(&String::from_utf8_lossy(value));
        let mut value = value;
        if i == 0 && encoded {
            let (cs, text) = match split_ext_value(value) {
                Ok(split) => split,
                Err(why) => return Some(Err(why)),
            };
            charset = Some(cs);
            value = text;
        }
        if encoded {
            bytes.extend(percent_encoding::percent_decode(value));
        } else {
            bytes.extend_from_slice(value);
        }
    }
    let encoding = charset.unwrap_or(encoding_rs::UTF_8);
    Some(strict_decode(encoding, &bytes).map(|decoded| FileName { decoded, raw }))
}

/// `charset'language'percent-encoded` (RFC 5987), decoded.
fn decode_ext_value(value: &[u8]) -> Result<String, String> {
    let (encoding, text) = split_ext_value(value)?;
    let bytes: Vec<u8> = percent_encoding::percent_decode(text).collect();
    strict_decode(encoding, &bytes)
}

fn strict_decode(encoding: &'static Encoding, bytes: &[u8]) -> Result<String, String> {
    encoding
        .decode_without_bom_handling_and_without_replacement(bytes)
        .map(|s| s.into_owned())
        .ok_or_else(|| format!("the file name is not valid {}", encoding.name()))
}

fn split_ext_value(value: &[u8]) -> Result<(&'static Encoding, &[u8]), String> {
    let malformed = || "malformed filename* parameter: expected charset'language'value".to_owned();
    let first = memchr::memchr(b'\'', value).ok_or_else(malformed)?;
    let second = first + 1 + memchr::memchr(b'\'', &value[first + 1..]).ok_or_else(malformed)?;
    let charset = &value[..first];
    let encoding = if charset.is_empty() {
        encoding_rs::UTF_8
    } else {
        Encoding::for_label(charset).ok_or_else(|| {
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
/// it, and the bytes of adjacent words in one charset are decoded together
/// (encoders split multi-byte characters across words). A word that cannot
/// be decoded (unknown charset, bad base64) is kept as it was sent.
pub(crate) fn decode_encoded_words(input: &str) -> Cow<'_, str> {
    if !input.contains("=?") {
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
    while let Some(start) = rest.find("=?") {
        let before = &rest[..start];
        let candidate = &rest[start..];
        match encoded_word(candidate) {
            Some((encoding, bytes, len)) => {
                if !(after_word
                    && before
                        .chars()
                        .all(|c| c == ' ' || c == '\t' || c == '\r' || c == '\n'))
                {
                    flush(&mut out, &mut pending);
                    out.push_str(before);
                }
                match &mut pending {
                    Some((e, buf)) if *e == encoding => buf.extend_from_slice(&bytes),
                    _ => {
                        flush(&mut out, &mut pending);
                        pending = Some((encoding, bytes));
                    }
                }
                after_word = true;
                rest = &candidate[len..];
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

/// Reads one `=?charset?B|Q?text?=` at the start of `s`: the charset, the
/// decoded bytes, and the word's length.
fn encoded_word(s: &str) -> Option<(&'static Encoding, Vec<u8>, usize)> {
    let body = s.strip_prefix("=?")?;
    let q1 = body.find('?')?;
    let charset = &body[..q1];
    let after_charset = &body[q1 + 1..];
    let q2 = after_charset.find('?')?;
    let enc = &after_charset[..q2];
    let text_and_rest = &after_charset[q2 + 1..];
    let end = text_and_rest.find("?=")?;
    let text = &text_and_rest[..end];
    if charset.is_empty() || text.contains(|c: char| c.is_ascii_whitespace() || !c.is_ascii()) {
        return None;
    }
    // RFC 2231 section 5: `charset*language`.
    let charset = charset.split('*').next().unwrap_or(charset);
    let encoding = Encoding::for_label(charset.as_bytes())?;
    let bytes = match enc {
        "B" | "b" => BASE64_LENIENT.decode(text).ok()?,
        "Q" | "q" => decode_q(text)?,
        _ => return None,
    };
    let len = 2 + q1 + 1 + q2 + 1 + end + 2;
    Some((encoding, bytes, len))
}

const BASE64_LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn decode_q(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
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
        .map(|c| match c {
            c if c.is_control() => '_',
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
        from_content_disposition(header.as_bytes())
            .unwrap()
            .map(|f| (f.decoded, f.raw))
    }

    #[test]
    fn unreadable_names_are_errors_unless_a_fallback_exists() {
        assert!(from_content_disposition(b"form-data; filename=\"\xff\xfe.txt\"").is_err());
        assert!(from_content_disposition(b"form-data; filename*=x-nope''abc").is_err());
        assert!(from_content_disposition(b"form-data; filename*=UTF-8''%FF").is_err());
        assert!(from_content_disposition(b"form-data; filename*=UTF-8").is_err());
        let fallback =
            from_content_disposition(b"form-data; filename=\"ok.txt\"; filename*=x-nope''abc");
        assert_eq!(fallback.unwrap().unwrap().decoded, "ok.txt");
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
            "a =?UTF-8?X?a?= b",
        ] {
            assert_eq!(decode_encoded_words(s), s, "{s}");
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
