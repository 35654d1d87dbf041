//! `multipart/form-data` bodies, read by `multer` (axum's own multipart
//! parser).
//!
//! Text parts are top-level parameters (the same layout as the form
//! encoding: `event` and `headers` hold JSON text); parts named
//! `attachmentN`, or carrying a file name, are attachments.

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;

use crate::inbound::Attachment;
use crate::mime::disposition::{self, FileName};
use crate::{Limits, ParseError, ParseErrorKind, Text};

use super::budget::{Budget, Key};
use super::charset;
use super::fields::{Fields, attachment_number};
use super::framing::{Framing, Guarded, HeaderTooLarge, uncarry};

/// Parses a whole multipart body held in memory.
pub(crate) fn parse(
    boundary: &str,
    charset: Option<&'static encoding_rs::Encoding>,
    body: Bytes,
    limits: Limits,
) -> Result<Fields, ParseError> {
    let stream = futures_util::stream::once(std::future::ready(Ok::<Bytes, Infallible>(body)));
    // The stream is always ready, so the parse never waits: polling it once
    // with a waker that does nothing drives it to the end.
    let budget = Budget::new(limits);
    let future = pin!(parse_stream(stream, boundary, charset, &budget));
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(ParseError::new(
            ParseErrorKind::Encoding,
            "the multipart parser waited on a body that was already complete",
        )),
    }
}

/// Parses a multipart body from a stream of chunks, within `budget` (its
/// limits, and the `api_key` the body must carry, if any).
///
/// A wrong `api_key` part ends the parse at once. When a part fails before
/// a valid key was seen, the rest of the body is read for the key alone:
/// the caller shows the failure only to a client that proved its key.
pub(crate) async fn parse_stream<S, E>(
    stream: S,
    boundary: &str,
    charset: Option<&'static encoding_rs::Encoding>,
    budget: &Budget,
) -> Result<Fields, ParseError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let limits = *budget.limits();
    let mut constraints = multer::Constraints::new();
    if let Some(max) = limits.part_size {
        constraints = constraints.size_limit(multer::SizeLimit::new().per_field(max));
    }
    let guarded = Guarded::new(
        Box::pin(stream),
        Framing::new(boundary, limits.part_header_size),
    );
    let mut multipart = multer::Multipart::with_constraints(guarded, boundary, constraints);
    let mut fields = Fields::multipart();
    let mut failed: Option<ParseError> = None;
    let mut parts = 0;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(failed.unwrap_or_else(|| multer_error(e))),
        };
        parts += 1;
        if parts > limits.parts {
            return Err(failed.unwrap_or_else(|| {
                ParseError::new(
                    ParseErrorKind::TooLarge,
                    format!("the multipart body has more than {} parts", limits.parts),
                )
            }));
        }
        if failed.is_some() {
            // Only the key matters now; other parts are skipped unread.
            if field.name() == Some("api_key") {
                if let Ok((_, text)) = read_part(field, charset).await.and_then(|(name, p)| {
                    decode_text(p.data, p.content_type.as_deref(), charset).map(|t| (name, t))
                }) {
                    let _ = budget.check_key(&text);
                }
                break;
            }
            continue;
        }
        if let Err(e) = add_part(field, &mut fields, charset, budget).await {
            if budget.needs_key() && budget.key() == Key::Unseen {
                failed = Some(e);
                continue;
            }
            return Err(e);
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(fields),
    }
}

/// One part as read: its data and the headers the model needs.
struct Part {
    file: Option<FileName>,
    content_type: Option<String>,
    data: Bytes,
}

/// The file name of a part's `Content-Disposition` value as `multer`
/// hands it over: a header with control bytes (raw ISO-2022-JP) reached
/// `multer` with them carried (see [`super::framing::CARRIER`]), so they
/// are given back before the value is read.
fn file_name(value: &[u8], charset: Option<&'static encoding_rs::Encoding>) -> Option<FileName> {
    let restored = uncarry(value);
    disposition::from_content_disposition(restored.as_deref().unwrap_or(value), charset)
}

/// Reads one part whole: its name and [`Part`].
async fn read_part(
    mut field: multer::Field<'_>,
    charset: Option<&'static encoding_rs::Encoding>,
) -> Result<(String, Part), ParseError> {
    let name = field.name().unwrap_or_default().to_owned();
    let headers = field.headers();
    let file = headers
        .get(http::header::CONTENT_DISPOSITION)
        .and_then(|v| file_name(v.as_bytes(), charset));
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    // Collect the part's chunks; a part that arrives in one chunk is
    // handed out without a copy.
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| multer_error(e).at(name.as_str()))?
    {
        match &first {
            None => first = Some(chunk),
            Some(f) => {
                if rest.is_empty() {
                    rest.extend_from_slice(f);
                }
                rest.extend_from_slice(&chunk);
            }
        }
    }
    let data = if rest.is_empty() {
        first.unwrap_or_default()
    } else {
        rest.freeze()
    };
    Ok((
        name,
        Part {
            file,
            content_type,
            data,
        },
    ))
}

/// Reads one part into `fields`: an attachment, or a parameter.
async fn add_part(
    field: multer::Field<'_>,
    fields: &mut Fields,
    charset: Option<&'static encoding_rs::Encoding>,
    budget: &Budget,
) -> Result<(), ParseError> {
    let (name, part) = read_part(field, charset).await?;
    let number = attachment_number(&name);
    if number.is_some() || part.file.is_some() {
        let file = part.file.unwrap_or_default();
        fields.add_attachment(
            number,
            Attachment {
                field_name: Text::from(name),
                filename: Text::from(file.decoded),
                raw_filename: Text::from(file.raw),
                raw_filename_bytes: Bytes::from(file.raw_bytes),
                filename_lossy: file.lossy,
                content_type: Text::from(
                    part.content_type
                        .unwrap_or_else(|| "application/octet-stream".to_owned()),
                ),
                data: part.data,
            },
        )
    } else {
        let text = decode_text(part.data, part.content_type.as_deref(), charset)
            .map_err(|e| e.at(name.as_str()))?;
        if name == "api_key" {
            budget
                .check_key(&text)
                .map_err(|m| ParseError::new(ParseErrorKind::InvalidField, m).at("api_key"))?;
        }
        fields.set_form_field(&name, text, budget)
    }
}

/// A text part's value, in its own charset, else the request's, else
/// UTF-8.
fn decode_text(
    data: Bytes,
    content_type: Option<&str>,
    request: Option<&'static encoding_rs::Encoding>,
) -> Result<Text, ParseError> {
    let own = match content_type {
        Some(ct) => charset::of_content_type(ct)?,
        None => None,
    };
    charset::decode(data, charset::choose(own, request))
}

fn multer_error(e: multer::Error) -> ParseError {
    match &e {
        multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
            ParseError::new(
                ParseErrorKind::TooLarge,
                format!("multipart body too large: {e}"),
            )
        }
        multer::Error::StreamReadFailed(inner) if inner.is::<HeaderTooLarge>() => {
            ParseError::new(ParseErrorKind::TooLarge, inner.to_string())
        }
        multer::Error::StreamReadFailed(inner) if crate::limits::is_length_limit(&**inner) => {
            ParseError::new(
                ParseErrorKind::TooLarge,
                "the body is larger than the limit",
            )
        }
        multer::Error::StreamReadFailed(_) => ParseError::new(
            ParseErrorKind::BodyRead,
            format!("the body could not be read: {e}"),
        ),
        _ => ParseError::new(
            ParseErrorKind::Encoding,
            format!("malformed multipart body: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_read_from_the_header_with_carried_bytes_given_back() {
        // The 0xFF byte carried as FF FF: not UTF-8, kept lossily with its
        // bytes as sent.
        let f = file_name(b"form-data; filename=\"\xff\xff\xfe.txt\"", None).unwrap();
        assert_eq!(
            (f.decoded.as_str(), f.lossy),
            ("\u{FFFD}\u{FFFD}.txt", true)
        );
        assert_eq!(f.raw_bytes, b"\xff\xfe.txt");
        // Raw ISO-2022-JP, its ESC bytes carried as FF 5B: ※ is 22 28
        // inside the escaped run.
        let carried = b"form-data; filename=\"\xff\x5b$B\x22(\xff\x5b(Ba.txt\"";
        let f = file_name(carried, None).unwrap();
        assert_eq!((f.decoded.as_str(), f.lossy), ("※a.txt", false));
        assert_eq!(f.raw_bytes, b"\x1b$B\x22(\x1b(Ba.txt");
        assert_eq!(file_name(b"form-data; name=\"a\"", None), None);
    }
}
