//! Property tests: a model written in any wire encoding parses back to the
//! same model, and no input makes a parser panic.

mod common;

use bytes::Bytes;
use cmc_webhook::test_util::{encode_events, encode_inbound, WireEncoding};
use cmc_webhook::{EventBatch, InboundMail, Webhook};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const KNOWN_RECORD_KEYS: [&str; 13] = [
    "created",
    "status",
    "returnPath",
    "envelopeFrom",
    "from",
    "to",
    "envelopeTo",
    "messageId",
    "reason",
    "subject",
    "apiData",
    "sourceIp",
    "senderIp",
];
const KNOWN_TOP_KEYS: [&str; 12] = [
    "event_type",
    "server_composition",
    "api_key",
    "event",
    "filter",
    "headers",
    "subject",
    "envelope-from",
    "envelope-to",
    "text",
    "html",
    "attachments",
];

/// Text as CMC might send it: anything, with the characters that need
/// escaping in each encoding over-represented.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9@.<>\"\\\\&=+%; \r\n\t]{0,24}",
        "[ぁ-んァ-ン一-龥]{0,8}",
        Just(String::new()),
    ]
}

fn created() -> impl Strategy<Value = String> {
    (1970i16..2100, 1i8..=12, 1i8..=28, 0i8..24, 0i8..60, 0i8..60)
        .prop_map(|(y, mo, d, h, mi, s)| format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"))
}

fn ip() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        any::<std::net::Ipv4Addr>().prop_map(|a| a.to_string()),
        any::<std::net::Ipv6Addr>().prop_map(|a| a.to_string()),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn extra(known: &'static [&'static str]) -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-zA-Z_]{1,10}", json_value(), 0..3).prop_map(move |m| {
        m.into_iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .collect()
    })
}

fn delivery() -> impl Strategy<Value = Value> {
    (
        created(),
        prop_oneof![
            Just("queued"),
            Just("succeeded"),
            Just("failed"),
            Just("deferred"),
            Just("expired")
        ],
        prop::collection::vec(text(), 7),
        ip(),
        ip(),
        extra(&KNOWN_RECORD_KEYS),
    )
        .prop_map(|(created, status, t, source, sender, extra)| {
            let mut o = json!({
                "created": created, "status": status, "returnPath": t[0], "from": t[1], "to": t[2],
                "messageId": t[3], "reason": t[4], "subject": t[5], "apiData": t[6],
                "sourceIp": source, "senderIp": sender,
            });
            o.as_object_mut().unwrap().extend(extra);
            o
        })
}

fn bounce() -> impl Strategy<Value = Value> {
    (
        created(),
        prop_oneof![
            (1u32..=11).prop_map(|c| c.to_string()),
            Just("99".to_owned()),
            "[0-9]{1,3}"
        ],
        prop::collection::vec(text(), 7),
        extra(&KNOWN_RECORD_KEYS),
    )
        .prop_map(|(created, status, t, extra)| {
            let mut o = json!({
                "created": created, "status": status, "returnPath": t[0], "from": t[1], "to": t[2],
                "messageId": t[3], "reason": t[4], "subject": t[5], "apiData": t[6],
            });
            o.as_object_mut().unwrap().extend(extra);
            o
        })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map("[a-z]{1,8}", json_value(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// An event batch as CMC's JSON encoding would carry it.
fn batch_json() -> impl Strategy<Value = Value> {
    let records = prop_oneof![
        prop::collection::vec(delivery(), 0..5).prop_map(|r| ("deliveries".to_owned(), r)),
        prop::collection::vec(bounce(), 0..5).prop_map(|r| ("bounces".to_owned(), r)),
        prop::collection::vec(object(), 0..4).prop_map(|r| ("blocks".to_owned(), r)),
        ("[a-z]{3,10}", prop::collection::vec(object(), 0..4)).prop_filter(
            "an unknown type",
            |(t, _)| !["deliveries", "bounces", "blocks"].contains(&t.as_str())
        ),
    ];
    (
        records,
        text(),
        prop::option::of(text()),
        prop::collection::btree_map("[a-z_]{1,10}", text(), 0..3),
    )
        .prop_map(|((event_type, records), server, api_key, extra)| {
            let mut o = json!({
                "event_type": event_type, "server_composition": server,
                "event": { event_type.clone(): records },
            });
            let map = o.as_object_mut().unwrap();
            if let Some(key) = api_key {
                map.insert("api_key".into(), key.into());
            }
            for (k, v) in extra {
                if !KNOWN_TOP_KEYS.contains(&k.as_str()) {
                    map.insert(k, v.into());
                }
            }
            o
        })
}

fn parse_json_batch(wire: &Value) -> EventBatch {
    let body = serde_json::to_vec(wire).unwrap();
    EventBatch::parse("application/json", Bytes::from(body))
        .unwrap_or_else(|e| panic!("{e}: {wire}"))
}

/// A filename in one of the three encodings CMC uses: raw, RFC 5987,
/// RFC 2047 base64. Returns the header parameter and the decoded name.
fn file_name() -> impl Strategy<Value = (String, String)> {
    use base64::Engine as _;
    ("[a-zA-Z0-9 ._\\-ぁ-んァ-ン一-龥]{1,12}", 0..3u8).prop_map(|(name, how)| {
        let param = match how {
            0 => format!("filename=\"{name}\""),
            1 => format!("filename*=UTF-8''{}", percent_encode(&name)),
            _ => format!(
                "filename=\"=?UTF-8?B?{}?=\"",
                base64::engine::general_purpose::STANDARD.encode(&name)
            ),
        };
        (param, name)
    })
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An inbound mail as CMC's multipart encoding would carry it.
fn inbound_multipart() -> impl Strategy<Value = (String, Bytes)> {
    (
        prop::collection::vec(text(), 6),
        prop::collection::vec((text(), text()), 0..6),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::collection::vec((file_name(), prop::collection::vec(any::<u8>(), 0..64)), 0..4),
    )
        .prop_map(|(t, headers, text_body, html, files)| {
            let headers: Vec<Value> = headers.into_iter().map(|(n, v)| json!({"name": n, "value": v})).collect();
            let mut fields = vec![
                ("server_composition", t[0].clone()),
                ("filter", t[1].clone()),
                ("headers", serde_json::to_string(&headers).unwrap()),
                ("subject", t[2].clone()),
                ("envelope-from", t[3].clone()),
                ("envelope-to", t[4].clone()),
                ("api_key", t[5].clone()),
                ("attachments", files.len().to_string()),
            ];
            if let Some(b) = text_body {
                fields.push(("text", b));
            }
            if let Some(h) = html {
                fields.push(("html", h));
            }
            let boundary = "xYzBoundary0123456789xYz";
            let mut body = Vec::new();
            for (name, value) in &fields {
                body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes());
                body.extend_from_slice(value.as_bytes());
                body.extend_from_slice(b"\r\n");
            }
            for (i, ((param, _), data)) in files.iter().enumerate() {
                body.extend_from_slice(
                    format!("--{boundary}\r\nContent-Disposition: form-data; name=\"attachment{}\"; {param}\r\nContent-Type: application/octet-stream\r\n\r\n", i + 1).as_bytes(),
                );
                body.extend_from_slice(data);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
            let parts = fields.len() + files.len();
            (format!("multipart/form-data; boundary={boundary}"), Bytes::from(body), parts)
        })
        .prop_filter("the boundary occurs in no part", |(_, body, parts)| {
            let b = b"xYzBoundary0123456789xYz";
            body.windows(b.len()).filter(|w| w == b).count() == parts + 1
        })
        .prop_map(|(ct, body, _)| (ct, body))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn event_batches_survive_every_encoding(wire in batch_json()) {
        let batch = parse_json_batch(&wire);
        for encoding in WireEncoding::ALL {
            let request = encode_events(&batch, encoding);
            let again = EventBatch::parse(&request.content_type, request.body.clone())
                .unwrap_or_else(|e| panic!("{encoding:?}: {e}\n{:?}", request.body));
            prop_assert_eq!(&again, &batch, "{:?}", encoding);
            let keys: Vec<_> = batch.events.iter().map(|e| e.idempotency_key()).collect();
            let again_keys: Vec<_> = again.events.iter().map(|e| e.idempotency_key()).collect();
            prop_assert_eq!(keys, again_keys);
        }
    }

    #[test]
    fn inbound_mails_survive_every_encoding((ct, body) in inbound_multipart()) {
        let mail = InboundMail::parse(&ct, body).unwrap_or_else(|e| panic!("{e}"));
        for encoding in WireEncoding::ALL {
            let request = encode_inbound(&mail, encoding);
            let again = InboundMail::parse(&request.content_type, request.body.clone())
                .unwrap_or_else(|e| panic!("{encoding:?}: {e}"));
            let mut expected = mail.clone();
            if encoding != WireEncoding::Multipart {
                expected.attachments.clear(); // JSON and form bodies carry no files
            }
            prop_assert_eq!(again, expected, "{:?}", encoding);
        }
    }

    #[test]
    fn event_batches_read_back_from_their_serialised_form(wire in batch_json()) {
        // What a store keeps: the crate's serialised form, read back into
        // the same value (the api_key is never serialised).
        let mut batch = parse_json_batch(&wire);
        batch.api_key = None;
        let stored = serde_json::to_string(&batch).unwrap();
        let again: EventBatch = serde_json::from_str(&stored).unwrap_or_else(|e| panic!("{e}\n{stored}"));
        prop_assert_eq!(&again, &batch);
        for (event, stored) in batch.events.iter().zip(&again.events) {
            prop_assert_eq!(event.idempotency_key(), stored.idempotency_key());
            let one = serde_json::to_string(event).unwrap();
            let event_again: cmc_webhook::Event = serde_json::from_str(&one).unwrap();
            prop_assert_eq!(&event_again, event);
            let key = serde_json::to_string(&event.idempotency_key()).unwrap();
            let key_again: cmc_webhook::IdempotencyKey = serde_json::from_str(&key).unwrap();
            prop_assert_eq!(key_again, event.idempotency_key());
        }
    }

    #[test]
    fn inbound_mails_read_back_from_their_serialised_form((ct, body) in inbound_multipart()) {
        let mut mail = InboundMail::parse(&ct, body).unwrap_or_else(|e| panic!("{e}"));
        mail.api_key = None;
        let stored = serde_json::to_string(&mail).unwrap();
        let again: InboundMail = serde_json::from_str(&stored).unwrap_or_else(|e| panic!("{e}\n{stored}"));
        prop_assert_eq!(&again, &mail);
        let webhook = cmc_webhook::Webhook::Inbound(mail);
        let stored = serde_json::to_string(&webhook).unwrap();
        let again: cmc_webhook::Webhook = serde_json::from_str(&stored).unwrap();
        prop_assert_eq!(again, webhook);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), which in 0..4usize) {
        let ct = ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b", "text/plain"][which];
        let _ = Webhook::parse(ct, Bytes::from(body));
    }

    #[test]
    fn mutated_fixtures_never_panic(index in any::<prop::sample::Index>(), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let all = common::all_bodies();
        let path = index.get(&all);
        let ct = common::content_type_of(path);
        let mut body = std::fs::read(path).unwrap();
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        body.truncate(cut.index(body.len() + 1).max(body.len() / 2));
        let _ = Webhook::parse(&ct, Bytes::from(body));
    }
}
