//! `Webhook::parse` on every media type, from raw bodies (the fixtures are
//! the seeds) and from structured inputs that reach deep into form fields,
//! multipart parts and file-name parameters.
//!
//! Input: a mode byte. Below 128: a `Content-Type` line, `\n`, the body.
//! From 128: the rest is read by `arbitrary` into a `Structured` body.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use cmc_webhook_core::{Limits, Webhook};
use libfuzzer_sys::fuzz_target;

const FIELDS: [&str; 16] = [
    "event_type", "server_composition", "api_key", "event", "filter", "headers", "subject",
    "envelope-from", "envelope-to", "text", "html", "attachments", "attachment1", "attachment2",
    "attachment10", "other",
];

const EVENTS: [&str; 6] = [
    r#"{"deliveries":[{"created":"2023-01-25 14:03:06","status":"queued","sourceIp":"192.0.2.1"}]}"#,
    r#"{"bounces":[{"created":"2023-01-25 14:03:06","status":"2","to":"a@b"}]}"#,
    r#"{"blocks":[{"email":"a@b","id":1}]}"#,
    r#"{"x":[{}]}"#,
    r#"[{"name":"Subject","value":"=?UTF-8?B?44OG44K544OI?="}]"#,
    r#"{"deliveries":[]}"#,
];

#[derive(Arbitrary, Debug)]
enum Value {
    Text(String),
    Bytes(Vec<u8>),
    /// One of the well-formed `event`/`headers` JSON texts, maybe cut short.
    Known(u8, u16),
}

#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum FileName {
    Plain(String),
    Ext(String, Vec<u8>),
    Word(bool, Vec<u8>),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Part {
    name: Name,
    file: Option<FileName>,
    content_type: Option<String>,
    value: Value,
}

#[derive(Arbitrary, Debug)]
enum Structured {
    Form(Vec<(Name, Value, bool)>),
    Multipart(Vec<Part>, bool),
    Json(Vec<(Name, Value)>),
}

fn name(n: &Name) -> String {
    match n {
        Name::Known(i) => FIELDS[*i as usize % FIELDS.len()].to_owned(),
        Name::Other(s) => s.clone(),
    }
}

fn value(v: &Value) -> Vec<u8> {
    match v {
        Value::Text(s) => s.as_bytes().to_vec(),
        Value::Bytes(b) => b.clone(),
        Value::Known(i, cut) => {
            let text = EVENTS[*i as usize % EVENTS.len()].as_bytes();
            let cut = (*cut as usize).min(text.len() + 1);
            if cut == 0 { text.to_vec() } else { text[..cut - 1].to_vec() }
        }
    }
}

fn percent(bytes: &[u8], raw: bool) -> String {
    if raw {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

fn build(s: &Structured) -> (String, Vec<u8>) {
    match s {
        Structured::Form(fields) => {
            let body = fields
                .iter()
                .map(|(n, v, raw)| format!("{}={}", percent(name(n).as_bytes(), *raw), percent(&value(v), *raw)))
                .collect::<Vec<_>>()
                .join("&");
            ("application/x-www-form-urlencoded".into(), body.into_bytes())
        }
        Structured::Multipart(parts, close) => {
            let mut body = Vec::new();
            for part in parts {
                body.extend_from_slice(b"--FZ\r\nContent-Disposition: form-data; name=\"");
                body.extend_from_slice(name(&part.name).as_bytes());
                body.push(b'"');
                match &part.file {
                    Some(FileName::Plain(s)) => body.extend_from_slice(format!("; filename=\"{s}\"").as_bytes()),
                    Some(FileName::Ext(cs, b)) => body.extend_from_slice(format!("; filename*={cs}''{}", percent(b, false)).as_bytes()),
                    Some(FileName::Word(q, b)) => {
                        let text = if *q { percent(b, false).replace('%', "=") } else { String::from_utf8_lossy(b).into_owned() };
                        body.extend_from_slice(format!("; filename=\"=?UTF-8?{}?{text}?=\"", if *q { "Q" } else { "B" }).as_bytes());
                    }
                    Some(FileName::Raw(b)) => {
                        body.extend_from_slice(b"; filename=\"");
                        body.extend_from_slice(b);
                        body.push(b'"');
                    }
                    None => {}
                }
                if let Some(ct) = &part.content_type {
                    body.extend_from_slice(format!("\r\nContent-Type: {ct}").as_bytes());
                }
                body.extend_from_slice(b"\r\n\r\n");
                body.extend_from_slice(&value(&part.value));
                body.extend_from_slice(b"\r\n");
            }
            if *close {
                body.extend_from_slice(b"--FZ--\r\n");
            }
            ("multipart/form-data; boundary=FZ".into(), body)
        }
        Structured::Json(fields) => {
            let mut body = b"{".to_vec();
            for (i, (n, v)) in fields.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(serde_json_string(&name(n)).as_bytes());
                body.push(b':');
                let v = value(v);
                match v.first() {
                    Some(b'{' | b'[') => body.extend_from_slice(&v),
                    _ => body.extend_from_slice(serde_json_string(&String::from_utf8_lossy(&v)).as_bytes()),
                }
            }
            body.push(b'}');
            ("application/json".into(), body)
        }
    }
}

fn serde_json_string(s: &str) -> String {
    format!("{s:?}") // Rust's escapes are close enough to JSON's for a fuzzer
}

fn check(content_type: &str, body: Vec<u8>) {
    let limits = Limits::default().max_parts(64);
    if let Ok(webhook) = Webhook::parse_with_limits(content_type, Bytes::from(body), limits) {
        // Whatever parses can be shown, keyed and serialised.
        let _ = format!("{webhook:?}");
        if let Webhook::Events(batch) = &webhook {
            for event in &batch.events {
                let _ = event.idempotency_key();
                let _ = event.created_at(&cmc_webhook_core::default_time_zone());
                let _ = (event.event_type(), event.recipient(), event.reason());
                let _ = (event.api_data(), event.bounce_class());
            }
        }
        if let Webhook::Inbound(mail) = &webhook {
            for header in mail.headers.iter() {
                let _ = header.decoded_value();
            }
            for file in &mail.attachments {
                let safe = file.safe_filename();
                assert!(!safe.is_empty() && !safe.contains('/') && !safe.contains('\\') && safe != "..", "{safe:?}");
                // Nothing that changes how the name is shown.
                assert!(
                    !safe.chars().any(|c| c.is_control()
                        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')),
                    "{safe:?}"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode < 128 {
        let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let content_type = String::from_utf8_lossy(&rest[..split]).into_owned();
        let body = rest.get(split + 1..).unwrap_or_default().to_vec();
        check(&content_type, body);
    } else if let Ok(structured) = Structured::arbitrary(&mut Unstructured::new(rest)) {
        let (content_type, body) = build(&structured);
        check(&content_type, body);
    }
});
