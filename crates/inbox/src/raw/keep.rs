//! The kept form of a request's body: its `api_key` values redacted and
//! its attachments' bytes replaced by references to the mail's stored
//! attachments, as a list of pieces that share the request's buffers.

use std::ops::Range;

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// What an `api_key`'s value becomes in the kept body.
pub(crate) const REDACTED: &[u8] = b"[redacted]";

/// Attachments shorter than this stay in the kept body as bytes: a
/// reference would save nothing.
pub(crate) const MIN_REFERENCE: usize = 512;

/// A piece of a kept body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Bytes of the body.
    Bytes(Bytes),
    /// The bytes stored at `position` in `cmc_mail_attachments` for the
    /// request's mail (an attachment, or at -1, -2, -3 a text field stored
    /// apart), `len` long.
    Attachment { position: i64, len: usize },
    /// The subject of the event keyed `key`, stored apart in
    /// `cmc_event_texts`, `len` long.
    EventText { key: String, len: usize },
}

impl Piece {
    pub fn len(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len(),
            Piece::Attachment { len, .. } | Piece::EventText { len, .. } => *len,
        }
    }
}

/// What a request's rows store apart from their JSON, which its kept body
/// may refer to rather than hold again.
#[derive(Debug, Default)]
pub(crate) struct Stored<'a> {
    /// The mail's attachments, in order.
    pub attachments: Vec<&'a [u8]>,
    /// The mail's text fields stored apart: `(position, bytes)`.
    pub texts: Vec<(i64, &'a [u8])>,
    /// The events' subjects stored apart: `(key, bytes)`, in order.
    pub subjects: Vec<(&'a str, &'a [u8])>,
}

impl Stored<'_> {
    fn bytes<'p>(&'p self, piece: &'p Piece) -> &'p [u8] {
        match piece {
            Piece::Bytes(b) => b,
            Piece::Attachment { position, .. } if *position >= 0 => {
                self.attachments[*position as usize]
            }
            Piece::Attachment { position, .. } => self
                .texts
                .iter()
                .find(|(p, _)| p == position)
                .map(|(_, b)| *b)
                .unwrap_or_default(),
            Piece::EventText { key, .. } => self
                .subjects
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, b)| *b)
                .unwrap_or_default(),
        }
    }
}

/// A kept body: its pieces, its length and the SHA-256 of the whole.
#[derive(Debug, Clone)]
pub(crate) struct KeptBody {
    pub pieces: Vec<Piece>,
    pub size: usize,
    pub sha256: String,
    /// How many `api_key` values were redacted.
    pub redacted: usize,
}

/// The encoding a `Content-Type` names, as far as keeping is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Encoding {
    Json,
    Form,
    Multipart(Vec<u8>),
    Other,
}

fn encoding(content_type: &str) -> Encoding {
    let mut params = content_type.split(';');
    let media = params.next().unwrap_or("").trim().to_ascii_lowercase();
    match media.as_str() {
        "application/json" => Encoding::Json,
        "application/x-www-form-urlencoded" => Encoding::Form,
        "multipart/form-data" => params
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| Encoding::Multipart(v.trim().trim_matches('"').as_bytes().to_vec()))
            .unwrap_or(Encoding::Other),
        _ => Encoding::Other,
    }
}

/// The kept form of `body` (sent with `content_type`): every `api_key`
/// value redacted, and what the rows store apart (`stored`) made a
/// reference where the body holds it byte for byte: a multipart part that
/// is an attachment or a long text field, or a long event subject or mail
/// text in a JSON body. When it refers to anything, its byte pieces are
/// copied out of `body` (so that the body's buffer can go before the
/// commit); otherwise they share it.
pub(crate) fn keep(body: &Bytes, content_type: &str, stored: &Stored<'_>) -> KeptBody {
    let mut replaced: Vec<(Range<usize>, Piece)> = Vec::new();
    let redact = |range: Range<usize>| (range, Piece::Bytes(Bytes::from_static(REDACTED)));
    match encoding(content_type) {
        Encoding::Json => {
            replaced.extend(json_api_keys(body).into_iter().map(redact));
            // The long values, in order: each searched from where the last
            // was found; the search stops at the first not found (a value
            // written with escapes), so that it stays linear.
            let mut from = 0;
            let values = stored
                .subjects
                .iter()
                .map(|(k, b)| {
                    (
                        Piece::EventText {
                            key: (*k).to_owned(),
                            len: b.len(),
                        },
                        *b,
                    )
                })
                .chain(stored.texts.iter().map(|(p, b)| {
                    (
                        Piece::Attachment {
                            position: *p,
                            len: b.len(),
                        },
                        *b,
                    )
                }));
            for (piece, value) in values {
                if value.len() < MIN_REFERENCE {
                    continue;
                }
                match memchr::memmem::find(&body[from..], value) {
                    Some(at) => {
                        let start = from + at;
                        replaced.push((start..start + value.len(), piece));
                        from = start + value.len();
                    }
                    None => break,
                }
            }
        }
        Encoding::Form => replaced.extend(form_api_keys(body).into_iter().map(redact)),
        Encoding::Multipart(boundary) => {
            let mut next = 0usize;
            for part in multipart_parts(body, &boundary) {
                let content = &body[part.content.clone()];
                if part.file {
                    // Attachments come in the order of their parts: each
                    // part is compared with the next attachment only (one
                    // comparison per part, whatever a stranger sends). A
                    // part that is not its bytes (a transfer encoding, or a
                    // part the parser did not take) stays as it is.
                    let position = next;
                    if stored
                        .attachments
                        .get(position)
                        .is_some_and(|a| a.len() == content.len() && *a == content)
                    {
                        next += 1;
                        if content.len() >= MIN_REFERENCE {
                            replaced.push((
                                part.content,
                                Piece::Attachment {
                                    position: position as i64,
                                    len: content.len(),
                                },
                            ));
                        }
                    }
                } else if part.api_key {
                    replaced.push(redact(part.content));
                } else if content.len() >= MIN_REFERENCE {
                    // A long text field, when the part holds its UTF-8 as
                    // it is (at most three comparisons per part).
                    if let Some((position, _)) = stored.texts.iter().find(|(_, t)| *t == content) {
                        replaced.push((
                            part.content,
                            Piece::Attachment {
                                position: *position,
                                len: content.len(),
                            },
                        ));
                    }
                }
            }
        }
        Encoding::Other => {}
    }
    let redacted = replaced
        .iter()
        .filter(|(_, p)| matches!(p, Piece::Bytes(_)))
        .count();
    let refers = replaced.len() > redacted;
    replaced.sort_by_key(|(r, _)| r.start);
    let mut pieces = Vec::with_capacity(replaced.len() * 2 + 1);
    let slice = |range: Range<usize>| {
        if refers {
            Bytes::copy_from_slice(&body[range])
        } else {
            body.slice(range)
        }
    };
    let mut at = 0;
    for (range, piece) in replaced {
        if range.start < at {
            continue; // overlapping (cannot happen): the first wins
        }
        if range.start > at {
            pieces.push(Piece::Bytes(slice(at..range.start)));
        }
        at = range.end;
        pieces.push(piece);
    }
    if at < body.len() || pieces.is_empty() {
        pieces.push(Piece::Bytes(slice(at..body.len())));
    }
    let mut hasher = Sha256::new();
    let mut size = 0;
    for piece in &pieces {
        size += piece.len();
        hasher.update(stored.bytes(piece));
    }
    KeptBody {
        pieces,
        size,
        sha256: hex(&hasher.finalize()),
        redacted,
    }
}

/// The SHA-256 of `data`, as 64 hex digits.
pub(crate) fn sha256(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The ranges of the values of every `api_key` member of a JSON body, at
/// any depth: a string's content (between its quotes), or a whole value of
/// another kind. A member name written with escapes is decoded first.
fn json_api_keys(body: &[u8]) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(quote) = memchr::memchr(b'"', &body[i..]) {
        let start = i + quote;
        let Some(end) = string_end(body, start) else {
            break;
        };
        i = end;
        let mut j = skip_ws(body, end);
        if body.get(j) != Some(&b':') {
            continue;
        }
        let name = &body[start..end];
        let is_key = name == b"\"api_key\""
            || (name.contains(&b'\\')
                && serde_json::from_slice::<String>(name).is_ok_and(|n| n == "api_key"));
        if !is_key {
            continue;
        }
        j = skip_ws(body, j + 1);
        match body.get(j) {
            Some(b'"') => {
                if let Some(value_end) = string_end(body, j) {
                    found.push(j + 1..value_end - 1);
                    i = value_end;
                }
            }
            Some(_) => {
                // A number, a literal, an object or an array: the whole
                // value (the parser refuses it; the body may still be kept
                // as refused).
                let value_end = value_end(body, j);
                found.push(j..value_end);
                i = value_end;
            }
            None => {}
        }
    }
    found
}

/// The end (one past the closing quote) of the JSON string opening at
/// `start`.
fn string_end(body: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        let at = i + memchr::memchr2(b'"', b'\\', &body[i..])?;
        if body[at] == b'\\' {
            i = at + 2;
            if i > body.len() {
                return None;
            }
        } else {
            return Some(at + 1);
        }
    }
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while body
        .get(i)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        i += 1;
    }
    i
}

/// The end of the JSON value of another kind than a string starting at
/// `start`: brackets balanced (strings inside skipped), or the scalar.
fn value_end(body: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < body.len() {
        match body[i] {
            b'"' => match string_end(body, i) {
                Some(end) => {
                    i = end;
                    if depth == 0 {
                        return i;
                    }
                    continue;
                }
                None => return body.len(),
            },
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth <= 1 {
                    return if depth == 1 { i + 1 } else { i };
                }
                depth -= 1;
            }
            b',' | b' ' | b'\t' | b'\r' | b'\n' if depth == 0 => return i,
            _ => {}
        }
        i += 1;
    }
    body.len()
}

/// The ranges of the values of every `api_key` field of a form body (its
/// name compared decoded, `%XX` and `+`).
fn form_api_keys(body: &[u8]) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let mut start = 0;
    for pair in body.split(|b| *b == b'&') {
        let end = start + pair.len();
        if let Some(eq) = memchr::memchr(b'=', pair) {
            let name: Vec<u8> = form_urlencoded::parse(&pair[..eq])
                .next()
                .map(|(n, _)| n.into_owned().into_bytes())
                .unwrap_or_default();
            if name == b"api_key" {
                found.push(start + eq + 1..end);
            }
        }
        start = end + 1;
    }
    found
}

/// A part of a multipart body.
#[derive(Debug)]
struct Part {
    content: Range<usize>,
    /// A file part (its disposition has a file name).
    file: bool,
    /// Its name is `api_key` (or written encoded: any non-file part whose
    /// headers mention it).
    api_key: bool,
}

/// The parts of a multipart body, as far as they can be found: the
/// content between each delimiter line's end and the CRLF before the next.
/// What this does not find stays in the kept body as bytes.
fn multipart_parts(body: &[u8], boundary: &[u8]) -> Vec<Part> {
    let mut delimiter = Vec::with_capacity(boundary.len() + 2);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary);
    let finder = memchr::memmem::Finder::new(&delimiter);
    let starts: Vec<usize> = finder
        .find_iter(body)
        .filter(|&p| p == 0 || body[..p].ends_with(b"\r\n"))
        .collect();
    let mut parts = Vec::new();
    for pair in starts.windows(2) {
        let (this, next) = (pair[0], pair[1]);
        let Some(line_end) = memchr::memmem::find(&body[this..next], b"\r\n") else {
            continue;
        };
        let headers_start = this + line_end + 2;
        let Some(blank) = memchr::memmem::find(&body[headers_start..next], b"\r\n\r\n") else {
            continue;
        };
        let content_start = headers_start + blank + 4;
        let content_end = next - 2; // the CRLF before the delimiter
        if content_end < content_start {
            continue;
        }
        let headers = body[headers_start..headers_start + blank].to_ascii_lowercase();
        let has = |needle: &[u8]| memchr::memmem::find(&headers, needle).is_some();
        let file = has(b"filename");
        parts.push(Part {
            content: content_start..content_end,
            file,
            api_key: !file && (has(b"api_key") || has(b"api%5fkey")),
        });
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(kept: &KeptBody, attachments: &[&[u8]]) -> Vec<u8> {
        let stored = Stored {
            attachments: attachments.to_vec(),
            ..Stored::default()
        };
        let mut out = Vec::new();
        for p in &kept.pieces {
            out.extend_from_slice(stored.bytes(p));
        }
        out
    }

    fn none() -> Stored<'static> {
        Stored::default()
    }

    #[test]
    fn json_api_keys_are_redacted_at_any_depth_and_in_any_spelling() {
        let body = Bytes::from_static(
            br#"{"api_key" : "s3cret","x":{"api\u005fkey":"two"},"s":"\"api_key\":\"no\"","api_key2":"k"}"#,
        );
        let kept = keep(&body, "application/json; charset=utf-8", &none());
        let out = String::from_utf8(whole(&kept, &[])).unwrap();
        assert_eq!(
            out,
            r#"{"api_key" : "[redacted]","x":{"api\u005fkey":"[redacted]"},"s":"\"api_key\":\"no\"","api_key2":"k"}"#
        );
        assert_eq!(kept.redacted, 2);
        assert_eq!(kept.size, out.len());
        assert_eq!(kept.sha256, sha256(out.as_bytes()));
    }

    #[test]
    fn a_json_api_key_of_another_kind_is_redacted_whole() {
        let body = Bytes::from_static(br#"{"api_key":{"a":"s3cret"},"b":1}"#);
        let kept = keep(&body, "application/json", &none());
        assert_eq!(whole(&kept, &[]), br#"{"api_key":[redacted],"b":1}"#);
    }

    #[test]
    fn form_api_keys_are_redacted_by_their_decoded_name() {
        let body = Bytes::from_static(b"a=1&api%5Fkey=s3cret&api_key=two&b=api_key");
        let kept = keep(&body, "application/x-www-form-urlencoded", &none());
        assert_eq!(
            whole(&kept, &[]),
            b"a=1&api%5Fkey=[redacted]&api_key=[redacted]&b=api_key"
        );
    }

    #[test]
    fn multipart_attachments_become_references_and_come_back_exact() {
        let data: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let mut body = Vec::new();
        body.extend_from_slice(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"api_key\"\r\n\r\ns3cret\r\n\
              --XyZ\r\nContent-Disposition: form-data; name=\"attachment1\"; filename=\"a.bin\"\r\n\
              Content-Type: application/octet-stream\r\n\r\n",
        );
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        let body = Bytes::from(body);
        let stored = Stored {
            attachments: vec![&data[..]],
            ..Stored::default()
        };
        let kept = keep(&body, "multipart/form-data; boundary=\"XyZ\"", &stored);
        assert!(kept.pieces.contains(&Piece::Attachment {
            position: 0,
            len: 4096
        }));
        let stored: usize = kept
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Bytes(b) => b.len(),
                _ => 0,
            })
            .sum();
        assert!(stored < 300, "the attachment is not kept twice: {stored}");
        let out = whole(&kept, &[&data]);
        let at = memchr::memmem::find(&body, b"s3cret").unwrap();
        let expected = [&body[..at], b"[redacted]", &body[at + 6..]].concat();
        assert_eq!(out, expected);
        assert_eq!(kept.sha256, sha256(&expected));
    }

    #[test]
    fn a_long_subject_in_a_json_body_is_a_reference_and_the_search_stays_linear() {
        let subject = "s".repeat(4096);
        let body = Bytes::from(format!(
            r#"{{"event":[{{"subject":"{subject}"}},{{"subject":"{subject}"}}]}}"#
        ));
        let other = "x".repeat(4096);
        let stored = Stored {
            subjects: vec![
                ("k1", subject.as_bytes()),
                ("k2", other.as_bytes()),
                ("k3", subject.as_bytes()),
            ],
            ..Stored::default()
        };
        let kept = keep(&body, "application/json", &stored);
        // The first is found; the second is not, and the search stops there.
        let refs: Vec<&Piece> = kept
            .pieces
            .iter()
            .filter(|p| !matches!(p, Piece::Bytes(_)))
            .collect();
        assert_eq!(
            refs,
            vec![&Piece::EventText {
                key: "k1".into(),
                len: 4096
            }]
        );
        assert_eq!(kept.sha256, sha256(&body));
        assert_eq!(kept.size, body.len());
    }

    #[test]
    fn a_body_of_no_known_encoding_is_kept_whole() {
        let body = Bytes::from_static(b"\0\xff api_key=x");
        let kept = keep(&body, "text/plain", &none());
        assert_eq!(kept.pieces, vec![Piece::Bytes(body.clone())]);
        let empty = keep(&Bytes::new(), "application/json", &none());
        assert_eq!(empty.size, 0);
        assert_eq!(empty.pieces.len(), 1);
    }
}
