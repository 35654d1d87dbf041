//! Nesting that the inbox can store and read back. A JSON value the crate
//! keeps as text (an unknown field, a block, a record of an unknown type)
//! goes into the stored row wrapped in more levels (the event or mail
//! object, its `extra` map), and `serde_json` reads back at most 127: a
//! value accepted at the edge of that would be acknowledged, stored, and
//! then dead. So the parsers refuse, with 400, any kept value deeper than
//! `Limits::MAX_NESTING`, and the deepest one they accept round-trips the
//! way the inbox stores it (`serde_json::to_string` of the event or mail)
//! and the worker reads it (`serde_json::from_str`).

use bytes::Bytes;
use cmc_webhook::{read_webhook, Event, InboundMail, Limits, ParseErrorKind, Webhook};
use http_body_util::Full;

const MAX: usize = Limits::MAX_NESTING;

/// A JSON value that nests `levels` arrays and objects deep, both kinds
/// and a scalar at the bottom: `{"a":[{"a":[...1...]}]}`.
fn nested(levels: usize) -> String {
    let mut open = String::new();
    let mut close = String::new();
    for level in 0..levels {
        if level % 2 == 0 {
            open.push_str(r#"{"a":"#);
            close.insert(0, '}');
        } else {
            open.push('[');
            close.insert(0, ']');
        }
    }
    format!("{open}1{close}")
}

/// The percent-encoding of a form value (every byte that is not
/// alphanumeric is escaped).
fn percent(s: &str) -> String {
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

fn multipart(fields: &[(&str, &str)]) -> String {
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body + "--b--\r\n"
}

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const MULTIPART: &str = "multipart/form-data; boundary=b";

/// Event bodies in every encoding, each holding one kept value that
/// nests `levels` deep somewhere that is stored: `(what, content type,
/// body)`.
fn event_bodies(levels: usize) -> Vec<(String, &'static str, String)> {
    // The `event` object of a batch, with the value in a record's unknown
    // field, or a record kept whole (a block, a record of an unknown
    // type), which is one level more than its field.
    let value = nested(levels);
    let field = nested(levels - 1);
    let events = [
        (
            "a delivery's unknown field",
            "deliveries",
            format!(
                r#"{{"deliveries":[{{"created":"2023-01-25 14:03:06","status":"queued","x":{value}}}]}}"#
            ),
        ),
        (
            "a bounce's unknown field",
            "bounces",
            format!(
                r#"{{"bounces":[{{"created":"2023-01-25 14:03:06","status":"1","x":{value}}}]}}"#
            ),
        ),
        (
            "a block",
            "blocks",
            format!(r#"{{"blocks":[{{"email":"a@example.jp","x":{field}}}]}}"#),
        ),
        (
            "a record of an unknown type",
            "newtype",
            format!(r#"{{"newtype":[{{"x":{field}}}]}}"#),
        ),
    ];
    let mut out = Vec::new();
    for (what, event_type, event) in events {
        out.push((
            format!("{what}, JSON"),
            JSON,
            format!(
                r#"{{"event_type":"{event_type}","server_composition":"pro","event":{event}}}"#
            ),
        ));
        out.push((
            format!("{what}, form"),
            FORM,
            format!(
                "event_type={event_type}&server_composition=pro&event={}",
                percent(&event)
            ),
        ));
        out.push((
            format!("{what}, multipart"),
            MULTIPART,
            multipart(&[
                ("event_type", event_type),
                ("server_composition", "pro"),
                ("event", &event),
            ]),
        ));
    }
    out
}

/// An inbound mail with an unknown field holding `value` (JSON is the one
/// encoding of a mail where a field can nest: form and multipart fields
/// are text).
fn mail_body(value: &str) -> String {
    format!(
        r#"{{"server_composition":"pro","filter":"f","headers":[{{"name":"Subject","value":"s"}}],"envelope-from":"a@example.com","envelope-to":"b@example.jp","x":{value}}}"#
    )
}

/// Every body, with a kept value `levels` deep: the events' and the
/// mail's.
fn bodies(levels: usize) -> Vec<(String, &'static str, String)> {
    let mut out = event_bodies(levels);
    out.push((
        "a mail's unknown field, JSON".to_owned(),
        JSON,
        mail_body(&nested(levels)),
    ));
    out
}

/// What the worker reads back from what the inbox stores.
fn event_round_trip(event: &Event) -> Event {
    let stored = serde_json::to_string(event).expect("the inbox writes the event");
    serde_json::from_str(&stored)
        .unwrap_or_else(|e| panic!("the stored event does not read back: {e}"))
}

fn mail_round_trip(mail: &InboundMail) -> InboundMail {
    let stored = serde_json::to_string(mail).expect("the inbox writes the mail");
    serde_json::from_str(&stored)
        .unwrap_or_else(|e| panic!("the stored mail does not read back: {e}"))
}

fn read(content_type: &str, body: String) -> Result<Webhook, cmc_webhook::Rejection> {
    let request = http::Request::post("/")
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(read_webhook(request))
}

#[test]
fn the_deepest_value_accepted_round_trips_through_the_stored_json() {
    for (what, content_type, body) in bodies(MAX) {
        let webhook = read(content_type, body)
            .unwrap_or_else(|e| panic!("{what}: {MAX} levels refused: {e}"));
        match webhook {
            Webhook::Events(batch) => {
                assert_eq!(batch.events.len(), 1, "{what}");
                for event in &batch.events {
                    assert_eq!(&event_round_trip(event), event, "{what}");
                }
            }
            Webhook::Inbound(mail) => assert_eq!(mail_round_trip(&mail), mail, "{what}"),
        }
    }
}

#[test]
fn one_level_deeper_is_refused_with_400() {
    // One level over, the depths that passed before and failed to read
    // back (126, 127), and far deeper.
    for levels in [MAX + 1, 126, 127, 128, 1_000] {
        for (what, content_type, body) in bodies(levels) {
            let rejection =
                read(content_type, body).expect_err(&format!("{what}: {levels} levels accepted"));
            assert_eq!(rejection.status(), 400, "{what}, {levels} levels");
            let error = rejection
                .parse_error()
                .unwrap_or_else(|| panic!("{what}: {rejection:?}"));
            assert_eq!(error.kind(), ParseErrorKind::Json, "{what}: {error}");
            assert!(
                error
                    .message()
                    .starts_with(&format!("a value nests deeper than {MAX} levels")),
                "{what}: {error}"
            );
            // The path names the field, or the record kept whole.
            let path = error.path().unwrap_or_default();
            assert!(
                path.ends_with('x') || path.ends_with("[0]"),
                "{what}: {path}"
            );
        }
    }
}

#[test]
fn a_top_level_unknown_field_of_a_batch_is_held_to_the_same_depth() {
    let body = |levels: usize| {
        format!(
            r#"{{"event_type":"bounces","server_composition":"pro","event":{{"bounces":[]}},"x":{}}}"#,
            nested(levels)
        )
    };
    let Webhook::Events(batch) = read(JSON, body(MAX)).unwrap() else {
        panic!("not events")
    };
    assert!(batch.extra.contains_key("x"));
    let rejection = read(JSON, body(MAX + 1)).unwrap_err();
    assert_eq!(rejection.status(), 400);
}

#[test]
fn values_that_nest_within_the_limit_are_kept_as_sent() {
    // The check reads the value through and keeps the text: scalars,
    // empty and wide containers at every depth up to the limit.
    for levels in [0, 1, 2, MAX - 1, MAX] {
        let value = nested(levels);
        let Webhook::Inbound(mail) = read(JSON, mail_body(&value)).unwrap() else {
            panic!("not a mail")
        };
        assert_eq!(mail.extra["x"].get(), value);
    }
    let wide = format!("[{}]", vec!["{\"a\":[[],{}]}"; 1_000].join(","));
    let Webhook::Inbound(mail) = read(JSON, mail_body(&wide)).unwrap() else {
        panic!("not a mail")
    };
    assert_eq!(mail.extra["x"].get(), wide);
}
