//! The parser's fast path (CMC's plain event batches, read without serde)
//! gives the same result as the general path (serde_json), or leaves the
//! body to it: on the fixtures, on every sample encoding, and on generated
//! batches (a property test) with escapes, surrogates, control characters,
//! odd white space, duplicates, unknown keys, `null`s, numbers and nested
//! values, whole, cut short, or with one byte changed. The fuzz target
//! `fast_path` does the same without end.

mod common;

use bytes::Bytes;
use cmc_webhook::test_util::{encode_events, sample_events, without_fast_path, WireEncoding};
use cmc_webhook::Webhook;
use proptest::prelude::*;

/// Both paths on one body: the same webhook, or the same error.
fn same(content_type: &str, body: &[u8]) -> Result<(), TestCaseError> {
    let body = Bytes::copy_from_slice(body);
    let fast = Webhook::parse(content_type, body.clone());
    let general = without_fast_path(|| Webhook::parse(content_type, body.clone()));
    match (&fast, &general) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
        (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
        _ => prop_assert!(false, "fast {:?} but general {:?}", fast, general),
    }
    Ok(())
}

#[test]
fn fixtures_and_samples_read_the_same_on_both_paths() {
    for path in common::all_bodies() {
        let ct = common::content_type_of(&path);
        same(&ct, &std::fs::read(&path).unwrap()).unwrap();
    }
    for encoding in [
        WireEncoding::Json,
        WireEncoding::Form,
        WireEncoding::Multipart,
    ] {
        for n in [0, 1, 100] {
            let wire = encode_events(&sample_events(n), encoding);
            same(&wire.content_type, &wire.body).unwrap();
        }
    }
}

/// CMC's record keys, keys a byte or two away from one of them (which the
/// fast path's byte-level key match must not take for it), an escaped
/// key, and others; the fuzz target `fast_path` uses the same.
const KEYS: [&str; 22] = [
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
    "statu",
    "sourceIpx",
    "envelopeT",
    "envelopeXTo",
    "t",
    "fromage",
    "other",
    "cre\\u0061ted",
    "",
];

const STRINGS: [&str; 13] = [
    "2023-01-25 14:03:06",
    "queued",
    "2",
    "192.0.2.1",
    "",
    "<a@b>",
    "\\u003Ca@b\\u003E",
    "\\ud83d\\ude00",
    "\\ud83d",
    "\\udc00x",
    "\\n\\t\\\"\\\\\\/\\b\\f\\r",
    "メール\u{1}",
    "2023-13-45 99:99:99",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0..STRINGS.len()).prop_map(|i| format!("\"{}\"", STRINGS[i])),
        2 => any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => Just("null".to_owned()),
        1 => (0u32..100_000).prop_map(|n| n.to_string()),
        1 => Just(r#"{"a":[1,"b"]}"#.to_owned()),
    ]
}

fn record() -> impl Strategy<Value = String> {
    prop::collection::vec((0..KEYS.len(), value()), 0..8).prop_map(|fields| {
        let inner: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("\"{}\":{v}", KEYS[*k]))
            .collect();
        format!("{{{}}}", inner.join(","))
    })
}

prop_compose! {
    fn batch()(
        kind in 0..3usize,
        lists in prop::collection::vec((0..4usize, prop::collection::vec(record(), 0..4)), 0..3),
        top in prop::collection::vec((0..6usize, value()), 0..3),
        space in 0..6usize,
    ) -> String {
        let ws = [" ", "", "\n", "\t", "\r\n ", "\u{a0}"][space];
        let top_keys = ["event_type", "server_composition", "api_key", "event", "x", "headers"];
        let mut s = format!(
            r#"{{"event_type":{ws}"{}","#,
            ["deliveries", "bounces", "blocks"][kind]
        );
        for (k, v) in &top {
            s.push_str(&format!("\"{}\":{ws}{v},", top_keys[*k]));
        }
        let lists: Vec<String> = lists
            .iter()
            .map(|(name, records)| {
                let name = ["deliveries", "bounces", "blocks", "x"][*name];
                format!("{ws}\"{name}\"{ws}:{ws}[{}]", records.join(&format!(",{ws}")))
            })
            .collect();
        s.push_str(&format!("\"event\":{{{}}}}}", lists.join(",")));
        s
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn generated_batches_read_the_same_on_both_paths(
        body in batch(),
        cut in any::<Option<prop::sample::Index>>(),
        flip in any::<Option<(prop::sample::Index, u8)>>(),
        form in any::<bool>(),
    ) {
        let mut bytes = body.into_bytes();
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        if let Some((at, byte)) = flip {
            if !bytes.is_empty() {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
        }
        same("application/json", &bytes)?;
        if form {
            if let Some((_, event)) = std::str::from_utf8(&bytes).ok().and_then(|t| t.split_once(r#""event":"#)) {
                let event = event.strip_suffix('}').unwrap_or(event);
                let body: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("event_type", "deliveries")
                    .append_pair("server_composition", "pro")
                    .append_pair("event", event)
                    .finish();
                same("application/x-www-form-urlencoded", body.as_bytes())?;
            }
        }
    }
}
