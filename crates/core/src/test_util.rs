//! Request bodies exactly as Customers Mail Cloud sends them, for tests.
//!
//! Enabled by the `test-util` feature. [`encode_events`] and
//! [`encode_inbound`] write a parsed [`EventBatch`] or [`InboundMail`] back
//! in any of CMC's encodings, the way CMC writes them (version 2 field
//! names; in form and multipart bodies, `<` and `>` inside the JSON text
//! escaped as `\u003C` and `\u003E`). Parsing the result gives the same
//! model back:
//!
//! ```
//! use bytes::Bytes;
//! use cmc_webhook_core::test_util::{encode_events, WireEncoding};
//! use cmc_webhook_core::EventBatch;
//!
//! let json = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
//!   {"created":"2023-01-25 14:03:06","status":"queued","messageId":"<a@example.com>"}]}}"#;
//! let batch = EventBatch::parse("application/json", Bytes::from(json))?;
//! for encoding in [WireEncoding::Json, WireEncoding::Form, WireEncoding::Multipart] {
//!     let request = encode_events(&batch, encoding);
//!     assert_eq!(EventBatch::parse(&request.content_type, request.body)?, batch);
//! }
//! # Ok::<(), cmc_webhook_core::ParseError>(())
//! ```
//!
//! [`CmcRequest`] turns such a body into an `http::Request` for
//! `tower::ServiceExt::oneshot` (with the peer address set, no socket
//! needed) or into the bytes of an HTTP/1.1 request for a real socket;
//! [`sample_events`] and [`sample_inbound`] give realistic payloads.

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::RawJson;
use crate::event::{Bounce, Delivery, Event, EventBatch};
use crate::inbound::InboundMail;

/// One of the encodings CMC posts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireEncoding {
    /// `application/json`.
    Json,
    /// `application/x-www-form-urlencoded`; `event` and `headers` hold JSON
    /// text.
    Form,
    /// `multipart/form-data`, with the same fields as the form encoding and
    /// attachments as file parts.
    Multipart,
}

impl WireEncoding {
    /// Every encoding.
    pub const ALL: [WireEncoding; 3] = [
        WireEncoding::Json,
        WireEncoding::Form,
        WireEncoding::Multipart,
    ];
}

/// A request body and the `Content-Type` to send it with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WireBody {
    /// The `Content-Type` header value (with the boundary, for multipart).
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

fn created(event_created: jiff::civil::DateTime) -> String {
    jiff::fmt::temporal::DateTimePrinter::new()
        .separator(b' ')
        .datetime_to_string(&event_created)
}

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// A kept value as a tree (the parsers only keep valid JSON).
fn raw_value(raw: &RawJson) -> Value {
    raw.to_value().expect("kept values are JSON")
}

fn ip(ip: Option<std::net::IpAddr>) -> Value {
    Value::String(ip.map(|ip| ip.to_string()).unwrap_or_default())
}

fn with_extra(mut object: Map<String, Value>, extra: &BTreeMap<String, RawJson>) -> Value {
    for (k, v) in extra {
        object.insert(k.clone(), raw_value(v));
    }
    Value::Object(object)
}

fn delivery_json(d: &Delivery) -> Value {
    let mut o = Map::new();
    o.insert("created".into(), text(&created(d.created)));
    o.insert("status".into(), text(d.status.as_str()));
    o.insert("returnPath".into(), text(&d.return_path));
    o.insert("from".into(), text(&d.from));
    o.insert("to".into(), text(&d.to));
    o.insert("messageId".into(), text(&d.message_id));
    o.insert("reason".into(), text(&d.reason));
    o.insert("subject".into(), text(&d.subject));
    o.insert("apiData".into(), text(&d.api_data));
    o.insert("sourceIp".into(), ip(d.source_ip));
    o.insert("senderIp".into(), ip(d.sender_ip));
    with_extra(o, &d.extra)
}

fn bounce_json(b: &Bounce) -> Value {
    let mut o = Map::new();
    o.insert("created".into(), text(&created(b.created)));
    o.insert("status".into(), text(b.status.code()));
    o.insert("returnPath".into(), text(&b.return_path));
    o.insert("from".into(), text(&b.from));
    o.insert("to".into(), text(&b.to));
    o.insert("messageId".into(), text(&b.message_id));
    o.insert("reason".into(), text(&b.reason));
    o.insert("subject".into(), text(&b.subject));
    o.insert("apiData".into(), text(&b.api_data));
    with_extra(o, &b.extra)
}

fn record_json(event: &Event) -> Value {
    match event {
        Event::Delivery(d) => delivery_json(d),
        Event::Bounce(b) => bounce_json(b),
        Event::Block(b) => serde_json::from_str(b.raw.get()).expect("a block record is JSON"),
        Event::Unknown(u) => serde_json::from_str(u.raw.get()).expect("a record is JSON"),
    }
}

/// The `event` object: one list per record type, in the order the types
/// first occur.
fn event_object(batch: &EventBatch) -> Value {
    let mut lists: Map<String, Value> = Map::new();
    lists.insert(
        batch.event_type.as_str().to_owned(),
        Value::Array(Vec::new()),
    );
    for event in &batch.events {
        let list = lists
            .entry(event.event_type().as_str().to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(records) = list {
            records.push(record_json(event));
        }
    }
    Value::Object(lists)
}

/// JSON text as CMC writes it inside form fields: `<` and `>` escaped.
fn json_text(value: &Value) -> String {
    serde_json::to_string(value)
        .expect("a Value always serialises")
        .replace('<', "\\u003C")
        .replace('>', "\\u003E")
}

/// Writes either kind of webhook as CMC would post it in `encoding` (see
/// [`encode_events`] and [`encode_inbound`]).
pub fn encode(webhook: &crate::Webhook, encoding: WireEncoding) -> WireBody {
    match webhook {
        crate::Webhook::Events(batch) => encode_events(batch, encoding),
        crate::Webhook::Inbound(mail) => encode_inbound(mail, encoding),
    }
}

/// Writes `batch` as CMC would post it in `encoding`.
///
/// `api_key` is included when set; fields in `extra` are written back.
pub fn encode_events(batch: &EventBatch, encoding: WireEncoding) -> WireBody {
    let mut fields: Vec<(String, Value)> = vec![
        ("event_type".into(), text(batch.event_type.as_str())),
        ("server_composition".into(), text(&batch.server_composition)),
    ];
    if let Some(key) = &batch.api_key {
        fields.push(("api_key".into(), text(key)));
    }
    fields.push(("event".into(), event_object(batch)));
    fields.extend(batch.extra.iter().map(|(k, v)| (k.clone(), raw_value(v))));
    encode_fields(fields, &[], encoding)
}

/// Writes `mail` as CMC would post it in `encoding`.
///
/// JSON mode carries no attachments (as with CMC), and neither can a form
/// body: there they are left out, and so is the `attachments` count.
/// Multipart writes the count and one file part per attachment.
pub fn encode_inbound(mail: &InboundMail, encoding: WireEncoding) -> WireBody {
    let headers: Vec<Value> = mail
        .headers
        .iter()
        .map(|h| {
            let mut o = Map::new();
            o.insert("name".into(), text(&h.name));
            o.insert("value".into(), text(&h.value));
            Value::Object(o)
        })
        .collect();
    let mut fields: Vec<(String, Value)> = vec![
        ("server_composition".into(), text(&mail.server_composition)),
        ("filter".into(), text(&mail.filter)),
        ("headers".into(), Value::Array(headers)),
        ("subject".into(), text(&mail.subject)),
        ("envelope-from".into(), text(&mail.envelope_from)),
        ("envelope-to".into(), text(&mail.envelope_to)),
    ];
    for (name, value) in [("text", &mail.text), ("html", &mail.html)] {
        if let Some(v) = value {
            fields.push((name.into(), text(v)));
        }
    }
    if let Some(key) = &mail.api_key {
        fields.push(("api_key".into(), text(key)));
    }
    let attachments = match encoding {
        WireEncoding::Multipart => {
            fields.push((
                "attachments".into(),
                text(&mail.attachments.len().to_string()),
            ));
            &mail.attachments[..]
        }
        _ => &[][..],
    };
    fields.extend(mail.extra.iter().map(|(k, v)| (k.clone(), raw_value(v))));
    encode_fields(fields, attachments, encoding)
}

fn encode_fields(
    fields: Vec<(String, Value)>,
    files: &[crate::Attachment],
    encoding: WireEncoding,
) -> WireBody {
    // Text form of a field: strings as they are, structures as JSON text.
    let as_text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => json_text(other),
    };
    match encoding {
        WireEncoding::Json => WireBody {
            content_type: "application/json".into(),
            body: Bytes::from(
                serde_json::to_vec(&Value::Object(fields.into_iter().collect())).expect("JSON"),
            ),
        },
        WireEncoding::Form => {
            let mut form = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &fields {
                form.append_pair(k, &as_text(v));
            }
            WireBody {
                content_type: "application/x-www-form-urlencoded".into(),
                body: Bytes::from(form.finish()),
            }
        }
        WireEncoding::Multipart => {
            let texts: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| (k.clone(), as_text(v)))
                .collect();
            let boundary = boundary_for(&texts, files);
            let mut body = Vec::new();
            for (name, value) in &texts {
                let _ = write!(
                    Utf8Sink(&mut body),
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\
                     Content-Type: text/plain; charset=UTF-8\r\n\r\n{value}\r\n",
                    quote(name)
                );
            }
            for file in files {
                let _ = write!(
                    Utf8Sink(&mut body),
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; {}\r\n\
                     Content-Type: {}\r\n\r\n",
                    quote(&file.field_name),
                    filename_parameter(file),
                    file.content_type
                );
                body.extend_from_slice(&file.data);
                body.extend_from_slice(b"\r\n");
            }
            let _ = write!(Utf8Sink(&mut body), "--{boundary}--\r\n");
            WireBody {
                content_type: format!("multipart/form-data; boundary={boundary}"),
                body: Bytes::from(body),
            }
        }
    }
}

/// A quoted-string body: `"` and `\` escaped, line breaks (which cannot
/// stand in a header) percent-encoded as browsers do.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// The file-name parameter in the form it arrived in: `filename*` for an
/// RFC 5987 value, else `filename` (raw UTF-8 or RFC 2047 words).
fn filename_parameter(file: &crate::Attachment) -> String {
    let ext = format!("form-data; filename*={}", file.raw_filename);
    let is_ext = file.raw_filename != file.filename
        && crate::mime::disposition::from_content_disposition(ext.as_bytes(), None)
            .is_some_and(|f| !f.lossy && f.decoded == file.filename.as_str());
    if is_ext {
        format!("filename*={}", file.raw_filename)
    } else {
        format!("filename=\"{}\"", quote(&file.raw_filename))
    }
}

/// A boundary that occurs in none of the parts.
fn boundary_for(texts: &[(String, String)], files: &[crate::Attachment]) -> String {
    (0u32..)
        .map(|n| format!("cmcWebhookBoundary{n:08x}"))
        .find(|b| {
            let b = b.as_bytes();
            let occurs = |hay: &[u8]| hay.windows(b.len()).any(|w| w == b);
            !texts
                .iter()
                .any(|(k, v)| occurs(k.as_bytes()) || occurs(v.as_bytes()))
                && !files
                    .iter()
                    .any(|f| occurs(&f.data) || occurs(f.raw_filename.as_bytes()))
        })
        .expect("some boundary is free")
}

struct Utf8Sink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8Sink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

const QUEUED: &[u8] = include_bytes!("../fixtures/event-v2-json-queued.json");
const SUCCEEDED: &[u8] = include_bytes!("../fixtures/event-v2-json-succeeded.json");
const FAILED: &[u8] = include_bytes!("../fixtures/event-v2-json-failed.json");
const INBOUND_MULTIPART: &[u8] =
    include_bytes!("../fixtures/inbound-multipart-attachment.multipart");
const INBOUND_MULTIPART_TYPE: &str =
    include_str!("../fixtures/inbound-multipart-attachment.content-type");

fn parse_events(json: &'static [u8]) -> EventBatch {
    EventBatch::parse("application/json", Bytes::from_static(json)).expect("the sample parses")
}

/// A `deliveries` batch of `n` records as CMC sends them (from the
/// documented samples): queued, succeeded and failed in turn, each with its
/// own Message-ID.
///
/// ```
/// let batch = cmc_webhook_core::test_util::sample_events(3);
/// assert_eq!(batch.events.len(), 3);
/// assert_eq!(batch.events[2].message_id(), Some("<00000002-06cd-b1ae-9526-011c0b9f1296@example.com>"));
/// ```
pub fn sample_events(n: usize) -> EventBatch {
    let templates: Vec<Event> = [QUEUED, SUCCEEDED, FAILED]
        .into_iter()
        .map(|json| parse_events(json).events.remove(0))
        .collect();
    let mut batch = parse_events(QUEUED);
    batch.events = (0..n)
        .map(|i| {
            let mut event = templates[i % templates.len()].clone();
            if let Event::Delivery(d) = &mut event {
                d.message_id = format!("<{i:08x}-06cd-b1ae-9526-011c0b9f1296@example.com>").into();
            }
            event
        })
        .collect();
    batch
}

/// An inbound mail as CMC sends it (the documented multipart sample, with a
/// PNG attachment named `画像1.png`), or without its attachment.
///
/// ```
/// let mail = cmc_webhook_core::test_util::sample_inbound(true);
/// assert_eq!(mail.attachments[0].filename, "画像1.png");
/// assert!(cmc_webhook_core::test_util::sample_inbound(false).attachments.is_empty());
/// ```
pub fn sample_inbound(with_attachment: bool) -> InboundMail {
    let mut mail = InboundMail::parse(
        INBOUND_MULTIPART_TYPE.trim(),
        Bytes::from_static(INBOUND_MULTIPART),
    )
    .expect("the sample parses");
    if !with_attachment {
        mail.attachments.clear();
    }
    mail
}

/// A webhook request as CMC makes it, for tests of a service.
///
/// ```
/// use cmc_webhook_core::test_util::{sample_events, CmcRequest, WireEncoding};
///
/// let request = CmcRequest::events(&sample_events(2), WireEncoding::Form)
///     .peer("203.0.113.7:41000".parse()?)
///     .uri("/cmc/events")
///     .into_request();
/// assert_eq!(request.method(), "POST");
/// assert_eq!(request.headers()["content-type"], "application/x-www-form-urlencoded");
/// assert!(request.extensions().get::<std::net::SocketAddr>().is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct CmcRequest {
    body: WireBody,
    uri: String,
    peer: Option<SocketAddr>,
    headers: Vec<(String, String)>,
}

impl CmcRequest {
    /// A request carrying `batch` in `encoding`.
    pub fn events(batch: &EventBatch, encoding: WireEncoding) -> CmcRequest {
        CmcRequest::body(encode_events(batch, encoding))
    }

    /// A request carrying `mail` in `encoding`.
    pub fn inbound(mail: &InboundMail, encoding: WireEncoding) -> CmcRequest {
        CmcRequest::body(encode_inbound(mail, encoding))
    }

    /// A request carrying `body` as it is.
    pub fn body(body: WireBody) -> CmcRequest {
        CmcRequest {
            body,
            uri: "/".to_owned(),
            peer: None,
            headers: Vec::new(),
        }
    }

    /// A request with any `Content-Type` and body (for malformed input).
    pub fn raw(content_type: impl Into<String>, body: impl Into<Bytes>) -> CmcRequest {
        CmcRequest::body(WireBody {
            content_type: content_type.into(),
            body: body.into(),
        })
    }

    /// The path (and query) posted to; `/` unless set.
    pub fn uri(mut self, uri: impl Into<String>) -> CmcRequest {
        self.uri = uri.into();
        self
    }

    /// The connection's peer address, recorded the way servers record it
    /// (a `SocketAddr` extension and, with the `axum` feature, axum's
    /// `ConnectInfo`), so that a `WebhookLayer` can be tested without a
    /// socket.
    pub fn peer(mut self, addr: SocketAddr) -> CmcRequest {
        self.peer = Some(addr);
        self
    }

    /// Adds a header (for example `X-Forwarded-For`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> CmcRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds BASIC credentials.
    pub fn basic_auth(self, user: &str, password: &str) -> CmcRequest {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header("authorization", format!("Basic {token}"))
    }

    /// The `Content-Type` and body.
    pub fn wire(&self) -> &WireBody {
        &self.body
    }

    /// The request, for a `tower::Service`.
    pub fn into_request(self) -> http::Request<http_body_util::Full<Bytes>> {
        let mut builder = http::Request::post(&self.uri)
            .header(http::header::CONTENT_TYPE, &self.body.content_type)
            .header(http::header::CONTENT_LENGTH, self.body.body.len())
            .header(http::header::USER_AGENT, USER_AGENT);
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let mut request = builder
            .body(http_body_util::Full::new(self.body.body))
            .expect("a valid request: check the uri and headers given");
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(peer);
            #[cfg(feature = "axum")]
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
        }
        request
    }

    /// The request as HTTP/1.1 bytes for a socket, with `Host: host` and
    /// `Connection: close`.
    pub fn to_http1(&self, host: &str) -> Vec<u8> {
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nContent-Type: {}\r\n\
             Content-Length: {}\r\nAccept-Encoding: gzip, deflate\r\nConnection: close\r\n",
            self.uri,
            self.body.content_type,
            self.body.body.len()
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body.body);
        bytes
    }
}

/// What CMC sends as `User-Agent` (an Apache HttpClient string; never
/// match on it).
const USER_AGENT: &str = "Apache-HttpClient/4.5.13 (Java/1.8.0)";

/// Runs `f` with the parser's fast path turned off on this thread: the
/// general path (serde_json) alone reads every body. For tests that check
/// the fast path (CMC's plain event batches read without serde) gives the
/// same result as the general one, or none.
///
/// ```
/// use bytes::Bytes;
/// use cmc_webhook_core::test_util::without_fast_path;
/// use cmc_webhook_core::Webhook;
///
/// let body = Bytes::from(r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[
///   {"created":"2023-01-25 14:03:09","status":"2","to":"x@example.jp"}]}}"#);
/// let fast = Webhook::parse("application/json", body.clone())?;
/// let general = without_fast_path(|| Webhook::parse("application/json", body))?;
/// assert_eq!(fast, general);
/// # Ok::<(), cmc_webhook_core::ParseError>(())
/// ```
pub fn without_fast_path<T>(f: impl FnOnce() -> T) -> T {
    crate::wire::fast::without(f)
}

/// The steps of work counted so far on this thread by the crate's loops
/// over attacker-controlled input (bytes of body frames collected, of
/// percent escapes decoded and form pairs split, of multipart framing
/// scanned, of encoded words, header parameters and forwarding headers
/// read). The difference over a call is a count of its work that does
/// not depend on the machine's load, for tests that check work grows
/// linearly with the input's size: quadratic work shows as ten times the
/// steps per byte at ten times the size.
///
/// ```
/// use bytes::Bytes;
/// use cmc_webhook_core::test_util::work_steps;
/// use cmc_webhook_core::Webhook;
///
/// let steps = |value: &str| {
///     let body = format!(
///         "event_type=bounces&server_composition=pro&event=%7B%22bounces%22%3A%5B%5D%7D&note={value}"
///     );
///     let before = work_steps();
///     Webhook::parse("application/x-www-form-urlencoded", Bytes::from(body)).unwrap();
///     work_steps() - before
/// };
/// let (small, large) = (steps(&"%41".repeat(1_000)), steps(&"%41".repeat(10_000)));
/// assert!(large > small && large < 11 * small);
/// ```
pub fn work_steps() -> u64 {
    crate::work::steps()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_batch_takes_the_fast_path() {
        let body = encode_events(&sample_events(100), WireEncoding::Json).body;
        let text = crate::Text::try_from_bytes(body).unwrap();
        let budget = crate::wire::budget::Budget::new(Default::default());
        let r = crate::wire::fast::fields(&text, &budget);
        assert!(r.is_ok(), "{}", &text[..300]);
    }
}
