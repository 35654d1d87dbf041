//! The inbound webhook: a mail that arrived at an address routed to CMC.
//!
//! CMC posts the mail's envelope, its header fields in mail order, the
//! decoded subject, the text and HTML bodies and, in multipart mode, the
//! attachments as file parts. JSON mode carries no attachments: choose
//! multipart in the console when mails can have them.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::Text;

/// One POST of the inbound webhook: a received mail.
///
/// ```
/// use bytes::Bytes;
/// use cmc_webhook_core::InboundMail;
///
/// let body = r#"{"server_composition":"sandbox","filter":"info@example.jp",
///   "headers":[{"name":"Received","value":"from a"},{"name":"received","value":"from b"},
///              {"name":"Subject","value":"=?UTF-8?B?44OG44K544OI?="}],
///   "subject":"テスト","envelope-from":"sender@example.com","envelope-to":"info@example.jp",
///   "text":"Hello\r\n"}"#;
/// let mail = InboundMail::parse("application/json", Bytes::from(body))?;
/// assert_eq!(mail.envelope_from, "sender@example.com");
/// assert_eq!(mail.headers.get("RECEIVED"), Some("from a"));
/// assert_eq!(mail.headers.get_all("received").collect::<Vec<_>>(), ["from a", "from b"]);
/// assert_eq!(mail.text.as_deref(), Some("Hello\r\n"));
/// assert_eq!(mail.html, None);
/// assert!(mail.attachments.is_empty());
/// # Ok::<(), cmc_webhook_core::ParseError>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct InboundMail {
    /// The name of the CMC server configuration that received the mail.
    pub server_composition: Text,
    /// The name of the inbound rule that matched (often address-like).
    pub filter: Text,
    /// The mail's header fields, in mail order.
    pub headers: Headers,
    /// The subject, decoded.
    pub subject: Text,
    /// The SMTP envelope sender (`envelope-from`).
    pub envelope_from: Text,
    /// The SMTP envelope recipient (`envelope-to`).
    pub envelope_to: Text,
    /// The plain-text body, when the mail has one (may contain CRLF).
    pub text: Option<Text>,
    /// The HTML body, when the mail has one.
    pub html: Option<Text>,
    /// The attachments, ordered by their number (`attachment1` first).
    pub attachments: Vec<Attachment>,
    /// The API key set in the CMC console, when one is set. A credential:
    /// it is left out of `Debug` output and of serialisation.
    #[serde(skip)]
    pub api_key: Option<Text>,
    /// Parameters this crate does not know, kept as they came (text fields
    /// as JSON strings). In JSON mode an `attachments` count that does not
    /// match the (absent) attachment parts is kept here too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, crate::RawJson>,
}

impl InboundMail {
    /// A stable key for this mail, so that a mail CMC sends twice is
    /// recognised (the inbox stores one row per key).
    ///
    /// It hashes what a retry repeats exactly and what a different mail
    /// does not share: the envelope, every header in order, the subject,
    /// both bodies, and each attachment's field, name, type and bytes. The
    /// encoding the mail came in does not matter. Not the `Message-ID`
    /// alone: anybody can write a mail with the `Message-ID` of another,
    /// and that must not make the other vanish as a repeat.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook_core::InboundMail;
    ///
    /// let body = r#"{"server_composition":"pro","filter":"info@example.jp",
    ///   "headers":[{"name":"Message-ID","value":"<1@x>"}],"subject":"Hi",
    ///   "envelope-from":"a@example.com","envelope-to":"info@example.jp","text":"hello"}"#;
    /// let mail = InboundMail::parse("application/json", Bytes::from(body))?;
    /// let again = InboundMail::parse("application/json", Bytes::from(body))?;
    /// assert_eq!(mail.idempotency_key(), again.idempotency_key());
    ///
    /// let mut other = mail.clone();
    /// other.text = Some("another mail, same Message-ID".into());
    /// assert_ne!(mail.idempotency_key(), other.idempotency_key());
    /// # Ok::<(), cmc_webhook_core::ParseError>(())
    /// ```
    pub fn idempotency_key(&self) -> crate::IdempotencyKey {
        // The counts keep the lists apart: a header cannot pass for an
        // attachment.
        let counts =
            [self.headers.len() as u64, self.attachments.len() as u64].map(u64::to_be_bytes);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(10 + 2 * self.headers.len());
        parts.extend([counts[0].as_slice(), counts[1].as_slice()]);
        parts.extend([
            b"inbound".as_slice(),
            self.envelope_from.as_str().as_bytes(),
            self.envelope_to.as_str().as_bytes(),
            self.subject.as_str().as_bytes(),
        ]);
        // An absent body differs from an empty one.
        for body in [&self.text, &self.html] {
            match body {
                Some(t) => parts.extend([b"1".as_slice(), t.as_str().as_bytes()]),
                None => parts.push(b"0"),
            }
        }
        parts.extend(
            self.headers
                .iter()
                .flat_map(|h| [h.name.as_str().as_bytes(), h.value.as_str().as_bytes()]),
        );
        for a in &self.attachments {
            parts.extend([
                b"attachment".as_slice(),
                a.field_name.as_str().as_bytes(),
                &a.raw_filename_bytes,
                a.content_type.as_str().as_bytes(),
                &a.data,
            ]);
        }
        crate::IdempotencyKey::of_bytes(parts)
    }
}

impl fmt::Debug for InboundMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundMail")
            .field("server_composition", &self.server_composition)
            .field("filter", &self.filter)
            .field("headers", &self.headers)
            .field("subject", &self.subject)
            .field("envelope_from", &self.envelope_from)
            .field("envelope_to", &self.envelope_to)
            .field("text", &self.text)
            .field("html", &self.html)
            .field("attachments", &self.attachments)
            .field("api_key", &self.api_key.as_ref().map(|_| crate::REDACTED))
            .field("extra", &self.extra)
            .finish()
    }
}

/// A mail's header fields, in mail order, repeats kept.
///
/// Names keep the case they were sent in; look-ups ignore ASCII case.
///
/// ```
/// use cmc_webhook_core::{Header, Headers};
///
/// let headers: Headers = vec![
///     Header::new("Received", "from a"),
///     Header::new("Subject", "Hi"),
///     Header::new("RECEIVED", "from b"),
/// ]
/// .into_iter()
/// .collect();
/// assert_eq!(headers.get("subject"), Some("Hi"));
/// assert_eq!(headers.get_all("Received").count(), 2);
/// assert_eq!(headers.get("X-Missing"), None);
/// assert_eq!(headers.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), ["Received", "Subject", "RECEIVED"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Headers(Vec<Header>);

impl Headers {
    /// The value of the first field called `name` (ASCII case ignored).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every value of the fields called `name`, in mail order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every field, in mail order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.0.iter()
    }

    /// How many fields there are (repeats counted).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<I: IntoIterator<Item = Header>>(iter: I) -> Self {
        Headers(iter.into_iter().collect())
    }
}

impl From<Vec<Header>> for Headers {
    fn from(v: Vec<Header>) -> Self {
        Headers(v)
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for Headers {
    type Item = Header;
    type IntoIter = std::vec::IntoIter<Header>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// One header field of an [`InboundMail`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Header {
    /// The field name, in the case it was sent in.
    pub name: Text,
    /// The field value as it was sent (RFC 2047 encoded words not decoded).
    pub value: Text,
}

impl Header {
    /// A header field.
    pub fn new(name: impl Into<Text>, value: impl Into<Text>) -> Header {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The value with RFC 2047 encoded words (`=?UTF-8?B?...?=`,
    /// `=?ISO-2022-JP?B?...?=`, `=?...?Q?...?=`) decoded; text that is not
    /// an encoded word is kept as it is.
    ///
    /// ```
    /// let subject = cmc_webhook_core::Header::new("Subject", "=?UTF-8?B?44OG44K544OI44Oh44O844Or?=");
    /// assert_eq!(subject.decoded_value(), "テストメール");
    /// ```
    pub fn decoded_value(&self) -> Cow<'_, str> {
        crate::mime::rfc2047::decode_encoded_words(&self.value)
    }
}

/// A file attached to an [`InboundMail`] (multipart mode only).
///
/// ```
/// use bytes::Bytes;
/// use cmc_webhook_core::InboundMail;
///
/// let body = "--b\r\n\
///     Content-Disposition: form-data; name=\"server_composition\"\r\n\r\nsandbox\r\n--b\r\n\
///     Content-Disposition: form-data; name=\"filter\"\r\n\r\nf\r\n--b\r\n\
///     Content-Disposition: form-data; name=\"headers\"\r\n\r\n[]\r\n--b\r\n\
///     Content-Disposition: form-data; name=\"envelope-from\"\r\n\r\na@example.com\r\n--b\r\n\
///     Content-Disposition: form-data; name=\"envelope-to\"\r\n\r\nb@example.jp\r\n--b\r\n\
///     Content-Disposition: form-data; name=\"attachments\"\r\n\r\n1\r\n--b\r\n\
///     Content-Disposition: form-data; name=\"attachment1\"; filename=\"=?UTF-8?B?5aCx5ZGKLnBkZg==?=\"\r\n\
///     Content-Type: application/pdf\r\n\r\n%PDF-1.4\r\n--b--\r\n";
/// let mail = InboundMail::parse("multipart/form-data; boundary=b", Bytes::from(body))?;
/// let pdf = &mail.attachments[0];
/// assert_eq!(pdf.filename, "報告.pdf");
/// assert_eq!(pdf.raw_filename, "=?UTF-8?B?5aCx5ZGKLnBkZg==?=");
/// assert_eq!(pdf.content_type, "application/pdf");
/// assert_eq!(&pdf.data[..], b"%PDF-1.4");
/// assert_eq!(pdf.safe_filename(), "報告.pdf");
/// # Ok::<(), cmc_webhook_core::ParseError>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Attachment {
    /// The form field the file came in (`attachment1`, `attachment2`, ...).
    pub field_name: Text,
    /// The file name, decoded (from raw UTF-8, an RFC 2231/5987
    /// `filename*` parameter, or RFC 2047 encoded words). Not safe as a
    /// path: use [`safe_filename`](Attachment::safe_filename) to write it.
    pub filename: Text,
    /// The file-name parameter as it was sent, before decoding (the
    /// `filename*` value, or the unquoted `filename`), as text.
    pub raw_filename: Text,
    /// The same parameter's bytes as they were sent. Read them when
    /// [`filename_lossy`](Attachment::filename_lossy) is set: they are then
    /// all there is of the name.
    #[serde(
        serialize_with = "serialize_base64",
        deserialize_with = "deserialize_base64"
    )]
    pub raw_filename_bytes: Bytes,
    /// Whether the name could not be decoded: its bytes are not valid in
    /// the charset the request names (UTF-8 when it names none), or its
    /// `filename*` names an unknown charset. `filename` then shows it with
    /// U+FFFD in place of what could not be read. The attachment is kept
    /// all the same.
    pub filename_lossy: bool,
    /// The part's `Content-Type` (`application/octet-stream` when absent).
    pub content_type: Text,
    /// The file's bytes. Serialised as standard base64.
    #[serde(
        serialize_with = "serialize_base64",
        deserialize_with = "deserialize_base64"
    )]
    pub data: Bytes,
}

impl Attachment {
    /// The file name made safe to use as the name of a file in a directory
    /// of your choice: directories removed (`../../etc/passwd` becomes
    /// `passwd`), control characters and characters that are reserved on
    /// common file systems replaced by `_`, leading dots and trailing dots or
    /// spaces removed, Windows device names prefixed with `_`, at most 200
    /// bytes (the extension kept). An empty result becomes the field name
    /// (`attachment1`).
    ///
    /// ```
    /// # use bytes::Bytes;
    /// # use cmc_webhook_core::InboundMail;
    /// # let body = "--b\r\nContent-Disposition: form-data; name=\"server_composition\"\r\n\r\ns\r\n--b\r\n\
    /// #     Content-Disposition: form-data; name=\"filter\"\r\n\r\nf\r\n--b\r\n\
    /// #     Content-Disposition: form-data; name=\"headers\"\r\n\r\n[]\r\n--b\r\n\
    /// #     Content-Disposition: form-data; name=\"envelope-from\"\r\n\r\na\r\n--b\r\n\
    /// #     Content-Disposition: form-data; name=\"envelope-to\"\r\n\r\nb\r\n--b\r\n\
    /// #     Content-Disposition: form-data; name=\"attachments\"\r\n\r\n1\r\n--b\r\n\
    /// #     Content-Disposition: form-data; name=\"attachment1\"; filename=\"../../etc/passwd\"\r\n\r\nx\r\n--b--\r\n";
    /// # let mail = InboundMail::parse("multipart/form-data; boundary=b", Bytes::from(body))?;
    /// let file = &mail.attachments[0];
    /// assert_eq!(file.filename, "../../etc/passwd");
    /// assert_eq!(file.safe_filename(), "passwd");
    /// # Ok::<(), cmc_webhook_core::ParseError>(())
    /// ```
    pub fn safe_filename(&self) -> String {
        crate::mime::sanitize::sanitize(&self.filename, &self.field_name)
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("field_name", &self.field_name)
            .field("filename", &self.filename)
            .field("raw_filename", &self.raw_filename)
            .field("filename_lossy", &self.filename_lossy)
            .field("content_type", &self.content_type)
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .finish()
    }
}

fn deserialize_base64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
    use base64::Engine as _;
    let text = Text::deserialize(d)?;
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map(Bytes::from)
        .map_err(serde::de::Error::custom)
}

fn serialize_base64<S: serde::Serializer>(data: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    use base64::Engine as _;
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
}
