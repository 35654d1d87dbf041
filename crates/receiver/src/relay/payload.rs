//! What the relay POSTs: one stored event or mail as JSON, version 1.
//!
//! An event:
//!
//! ```json
//! {"version": 1, "type": "event", "id": "<the row's idempotency key>",
//!  "received_at": "2026-...Z", "client": "203.0.113.7",
//!  "server_composition": "...", "event_type": "deliveries",
//!  "at": "2023-01-25T14:03:09+09:00[Asia/Tokyo]", "event": {...}}
//! ```
//!
//! A mail (`"type": "inbound"`), with the core's serialisation of
//! [`InboundMail`] under `"mail"`; each attachment carries its `size`, and
//! either its bytes as base64 (`"data"`, when all of the mail's attachments
//! together hold at most the inline limit) or the name of the
//! multipart/form-data part that holds them (`"part"`): the body is then
//! multipart, the JSON first (part `payload`), then one part per
//! attachment (`attachment1`, ...), in order.

use bytes::{BufMut as _, Bytes, BytesMut};
use cmc_webhook_core::{Event, InboundMail, default_time_zone};
use cmc_webhook_inbox::mailbox::MailJob;
use cmc_webhook_inbox::{Item, Job};
use serde_json::{Value, json};

/// The version of the payload: a field of every body.
pub const VERSION: u32 = 1;

/// A body ready to be signed and sent.
#[derive(Debug, Clone)]
pub struct Payload {
    /// Its `Content-Type`.
    pub content_type: String,
    /// Its bytes, as signed.
    pub body: Bytes,
}

/// The payload of a job; `inline_limit` is the most attachment bytes a
/// mail carries inline (base64 in the JSON), above which it is sent as
/// multipart/form-data.
pub fn payload(job: &Job, inline_limit: usize) -> Result<Payload, String> {
    let client = job.client.map(|c| c.to_string());
    let received_at = job.received_at.to_string();
    match &job.item {
        Item::Event(event) => Ok(json_payload(&event_json(
            event,
            &job.key.to_string(),
            &received_at,
            client.as_deref(),
            &job.server_composition,
        ))),
        Item::Mail(mail) => {
            let total: usize = mail.attachments.iter().map(|a| a.data.len()).sum();
            let inline = total <= inline_limit;
            let value = mail_json(
                mail,
                &job.key.to_string(),
                &received_at,
                client.as_deref(),
                inline,
            )?;
            if inline {
                Ok(json_payload(&value))
            } else {
                Ok(multipart(&value, mail))
            }
        }
        other => Err(format!("the relay does not know {other:?}")),
    }
}

/// The payload of a mailbox's delivery: a mail's, with its `"mailbox"`
/// (its attachments read already: [`MailJob::load_attachments`]).
pub fn mail_job_payload(job: &MailJob, inline_limit: usize) -> Result<Payload, String> {
    let mail = &job.mail;
    let total: usize = mail.attachments.iter().map(|a| a.data.len()).sum();
    let inline = total <= inline_limit;
    let client = job.client.map(|c| c.to_string());
    let mut value = mail_json(
        mail,
        &job.key.to_string(),
        &job.received_at.to_string(),
        client.as_deref(),
        inline,
    )?;
    value["mailbox"] = json!(job.mailbox);
    Ok(if inline {
        json_payload(&value)
    } else {
        multipart(&value, mail)
    })
}

fn json_payload(value: &Value) -> Payload {
    Payload {
        content_type: "application/json".to_owned(),
        body: Bytes::from(value.to_string()),
    }
}

/// An event's JSON.
pub fn event_json(
    event: &Event,
    key: &str,
    received_at: &str,
    client: Option<&str>,
    server_composition: &str,
) -> Value {
    json!({
        "version": VERSION,
        "type": "event",
        "id": key,
        "received_at": received_at,
        "client": client,
        "server_composition": server_composition,
        "event_type": event.event_type().as_str(),
        "at": event.created_at(&default_time_zone()).ok().map(|t| t.to_string()),
        "event": event,
    })
}

/// A mail's JSON; without `inline`, each attachment names its part
/// instead of carrying its bytes.
pub fn mail_json(
    mail: &InboundMail,
    key: &str,
    received_at: &str,
    client: Option<&str>,
    inline: bool,
) -> Result<Value, String> {
    // Sent as parts, the attachments' bytes are not written into the JSON
    // (base64) only to be taken out again: a copy without them (the
    // bytes are shared, not copied) is written instead.
    let light;
    let written = if inline {
        mail
    } else {
        let mut copy = mail.clone();
        for attachment in &mut copy.attachments {
            attachment.data = Bytes::new();
        }
        light = copy;
        &light
    };
    let mut value = serde_json::to_value(written)
        .map_err(|e| format!("could not write the mail's JSON: {e}"))?;
    if let Some(list) = value.get_mut("attachments").and_then(Value::as_array_mut) {
        for (i, (item, attachment)) in list.iter_mut().zip(&mail.attachments).enumerate() {
            if let Some(object) = item.as_object_mut() {
                object.insert("size".into(), json!(attachment.data.len()));
                if !inline {
                    object.remove("data");
                    object.insert("part".into(), json!(part_name(i)));
                }
            }
        }
    }
    Ok(json!({
        "version": VERSION,
        "type": "inbound",
        "id": key,
        "received_at": received_at,
        "client": client,
        "message_id": mail.headers.get("Message-ID"),
        "mail": value,
    }))
}

/// The multipart part of the `index`th attachment (from 0).
fn part_name(index: usize) -> String {
    format!("attachment{}", index + 1)
}

/// The JSON (part `payload`), then each attachment's bytes.
fn multipart(value: &Value, mail: &InboundMail) -> Payload {
    let boundary = boundary();
    let json = value.to_string();
    let size: usize = mail.attachments.iter().map(|a| a.data.len() + 512).sum();
    let mut body = BytesMut::with_capacity(json.len() + size + 512);
    body.put_slice(format!("--{boundary}\r\n").as_bytes());
    body.put_slice(
        b"Content-Disposition: form-data; name=\"payload\"\r\nContent-Type: application/json\r\n\r\n",
    );
    body.put_slice(json.as_bytes());
    for (i, attachment) in mail.attachments.iter().enumerate() {
        body.put_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        body.put_slice(
            format!(
                "Content-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
                part_name(i),
                quoted(&attachment.safe_filename()),
                media_type(&attachment.content_type)
            )
            .as_bytes(),
        );
        body.put_slice(&attachment.data);
    }
    body.put_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Payload {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        body: body.freeze(),
    }
}

/// A boundary nobody can predict (128 random bits), so that no
/// attachment, written by a stranger, can hold it on purpose.
fn boundary() -> String {
    let mut bytes = [0u8; 16];
    // The system's random source; should it fail, the time (still unknown
    // to the sender of a mail stored earlier).
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        let now = jiff::Timestamp::now().as_nanosecond().to_le_bytes();
        bytes.copy_from_slice(&now);
    }
    format!("cmc-relay-{}", crate::hex::hex(&bytes))
}

/// A file name inside a quoted parameter: `"`, `\`, CR and LF
/// percent-encoded, as browsers write them (the WHATWG form encoding).
fn quoted(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '"' => out.push_str("%22"),
            '\\' => out.push_str("%5C"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

/// The attachment's media type as a part's `Content-Type`: its
/// `type/subtype` and its `charset`, when they are tokens; nothing else of
/// what a stranger wrote (a CR LF would add headers to the part, a
/// `name="payload"` parameter would mislead a parser that reads names
/// from it). Anything else is `application/octet-stream`.
fn media_type(value: &str) -> String {
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let mut params = value.split(';');
    let essence = params.next().unwrap_or_default().trim();
    let valid = essence
        .split_once('/')
        .is_some_and(|(t, s)| token(t) && token(s));
    if !valid {
        return "application/octet-stream".to_owned();
    }
    let mut out = essence.to_ascii_lowercase();
    for param in params {
        if let Some((name, v)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("charset")
        {
            let v = v.trim().trim_matches('"');
            if token(v) {
                out.push_str("; charset=");
                out.push_str(v);
            }
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_headers_cannot_be_forged() {
        assert_eq!(
            media_type("text/plain; charset=utf-8"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            media_type("text/plain\r\nX-Evil: 1"),
            "application/octet-stream"
        );
        assert_eq!(
            media_type("Text/Plain; name=\"payload\"; charset=\"UTF-8\""),
            "text/plain; charset=UTF-8"
        );
        assert_eq!(
            media_type("text/plain; charset=\"UTF-8\"\r\nX: 1"),
            "text/plain"
        );
        assert_eq!(media_type("text/plain; name=\"payload\""), "text/plain");
        assert_eq!(media_type("a b/c"), "application/octet-stream");
        assert_eq!(media_type(""), "application/octet-stream");
        assert_eq!(quoted("a\"b\\c\r\n.txt"), "a%22b%5Cc%0D%0A.txt");
    }

    #[test]
    fn boundaries_differ() {
        assert_ne!(boundary(), boundary());
        assert_eq!(boundary().len(), "cmc-relay-".len() + 32);
    }
}
