//! The parser's fast path (CMC's plain event batches, read without serde)
//! against the general path (serde_json) on the same body: both must give
//! the same `Webhook`, or the same error. Bodies are JSON event batches
//! built from structured input (known and unknown keys, strings with and
//! without escapes, control characters, surrogates, odd white space,
//! duplicates, `null`s and numbers), then maybe cut short or with one byte
//! changed; raw bytes as well; each as a JSON body and as the `event` field
//! of a form body.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use cmc_webhook_core::test_util::without_fast_path;
use cmc_webhook_core::Webhook;
use libfuzzer_sys::fuzz_target;

/// CMC's record keys, then keys that differ from one of them by a byte
/// or two (which the fast path's byte-level key match must not take for
/// it), an escaped key, and others.
const KEYS: [&str; 22] = [
    "created", "status", "returnPath", "envelopeFrom", "from", "to", "envelopeTo", "messageId",
    "reason", "subject", "apiData", "sourceIp", "senderIp", "statu", "sourceIpx", "envelopeT",
    "envelopeXTo", "t", "fromage", "other", "cre\\u0061ted", "",
];

const TOP: [&str; 6] = ["event_type", "server_composition", "api_key", "event", "x", "headers"];

const STRINGS: [&str; 12] = [
    "2023-01-25 14:03:06", "queued", "2", "192.0.2.1", "", "<a@b>", "\\u003Ca@b\\u003E",
    "\\ud83d\\ude00", "\\ud83d", "\\n\\t\\\"\\\\\\/\\b\\f\\r", "メール", "2023-13-45 99:99:99",
];

#[derive(Arbitrary, Debug)]
enum Val {
    Known(u8),
    Text(String),
    Null,
    Number(u16),
    Nested,
}

#[derive(Arbitrary, Debug)]
struct Record {
    fields: Vec<(u8, Val)>,
}

#[derive(Arbitrary, Debug)]
struct Batch {
    kind: u8,
    extra_top: Vec<(u8, Val)>,
    lists: Vec<(u8, Vec<Record>)>,
    space: u8,
    cut: Option<u16>,
    flip: Option<(u16, u8)>,
    form: bool,
}

fn value(v: &Val, out: &mut String) {
    match v {
        Val::Known(i) => {
            out.push('"');
            out.push_str(STRINGS[*i as usize % STRINGS.len()]);
            out.push('"');
        }
        Val::Text(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
        Val::Null => out.push_str("null"),
        Val::Number(n) => out.push_str(&n.to_string()),
        Val::Nested => out.push_str(r#"{"a":[1,"b"]}"#),
    }
}

fn build(b: &Batch) -> Vec<u8> {
    let ws = [" ", "", "\n", "\t", "\r\n ", "\u{a0}"][b.space as usize % 6];
    let mut s = String::from("{");
    s.push_str(&format!(
        r#""event_type":{ws}"{}","#,
        ["deliveries", "bounces", "blocks"][b.kind as usize % 3]
    ));
    for (k, v) in &b.extra_top {
        s.push_str(&format!(r#""{}":{ws}"#, TOP[*k as usize % TOP.len()]));
        value(v, &mut s);
        s.push(',');
    }
    s.push_str(r#""event":{"#);
    for (i, (name, records)) in b.lists.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let name = ["deliveries", "bounces", "blocks", "x"][*name as usize % 4];
        s.push_str(&format!(r#"{ws}"{name}"{ws}:{ws}["#));
        for (j, r) in records.iter().enumerate() {
            if j > 0 {
                s.push_str(&format!(",{ws}"));
            }
            s.push('{');
            for (f, (k, v)) in r.fields.iter().enumerate() {
                if f > 0 {
                    s.push(',');
                }
                s.push_str(&format!(r#""{}"{ws}:"#, KEYS[*k as usize % KEYS.len()]));
                value(v, &mut s);
            }
            s.push('}');
        }
        s.push(']');
    }
    s.push_str("}}");
    let mut bytes = s.into_bytes();
    if let Some(cut) = b.cut {
        bytes.truncate(cut as usize % (bytes.len() + 1));
    }
    if let Some((at, byte)) = b.flip {
        if !bytes.is_empty() {
            let at = at as usize % bytes.len();
            bytes[at] = byte;
        }
    }
    bytes
}

fn same(content_type: &str, body: Vec<u8>) {
    let body = Bytes::from(body);
    let fast = Webhook::parse(content_type, body.clone());
    let general = without_fast_path(|| Webhook::parse(content_type, body.clone()));
    match (&fast, &general) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "different webhooks for {body:?}"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{body:?}"),
        _ => panic!("fast {fast:?} but general {general:?} for {body:?}"),
    }
}

fn check(body: Vec<u8>, form: bool) {
    if form {
        let event = match std::str::from_utf8(&body) {
            Ok(json) => json
                .split_once(r#""event":"#)
                .map(|(_, rest)| rest.strip_suffix('}').unwrap_or(rest).to_owned())
                .unwrap_or_default(),
            Err(_) => return,
        };
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("event_type", "deliveries")
            .append_pair("server_composition", "pro")
            .append_pair("event", &event)
            .finish();
        same("application/x-www-form-urlencoded", form.into_bytes());
    } else {
        same("application/json", body);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode < 64 {
        check(rest.to_vec(), mode % 2 == 1);
        return;
    }
    let mut u = Unstructured::new(rest);
    if let Ok(batch) = Batch::arbitrary(&mut u) {
        let body = build(&batch);
        check(body, batch.form);
    }
});
