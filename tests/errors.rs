//! Bad bodies give a `ParseError` of the right kind that says where.

mod common;

use bytes::Bytes;
use cmc_webhook::{EventBatch, InboundMail, Limits, ParseError, ParseErrorKind, Webhook};

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

fn err(ct: &str, body: impl Into<Bytes>) -> ParseError {
    match Webhook::parse(ct, body.into()) {
        Ok(ok) => panic!("expected an error, parsed {ok:?}"),
        Err(e) => e,
    }
}

fn batch_json(records: &str) -> String {
    format!(
        r#"{{"event_type":"deliveries","server_composition":"pro","event":{{"deliveries":{records}}}}}"#
    )
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[test]
fn truncated_json_is_a_json_error() {
    let (_, body) = common::load("shared/event-v2-json-failed.json");
    for cut in [1, 10, body.len() / 2, body.len() - 3] {
        let e = err(JSON, body.slice(..cut));
        assert_eq!(e.kind(), ParseErrorKind::Json, "cut at {cut}: {e}");
        assert!(e.message().contains("EOF"), "{e}");
    }
}

#[test]
fn trailing_garbage_after_the_object_is_refused() {
    let e = err(JSON, batch_json("[]") + " {}");
    assert_eq!(e.kind(), ParseErrorKind::Json, "{e}");
    assert!(e.message().contains("trailing characters"), "{e}");
}

#[test]
fn body_that_is_not_an_object() {
    for body in ["[]", "\"x\"", "42", "null"] {
        let e = err(JSON, body);
        assert_eq!(e.kind(), ParseErrorKind::InvalidField, "{body}: {e}");
        assert!(e.message().contains("JSON object"), "{body}: {e}");
    }
}

#[test]
fn event_that_is_not_an_object() {
    let e = err(
        JSON,
        r#"{"event_type":"deliveries","server_composition":"pro","event":[1]}"#,
    );
    assert_eq!(e.kind(), ParseErrorKind::InvalidField);
    assert_eq!(e.path(), Some("event"));
    assert!(
        e.message()
            .contains(r#"an object like {"deliveries": [...]}"#),
        "{e}"
    );
}

#[test]
fn records_that_are_not_an_array() {
    let e = err(JSON, batch_json(r#"{"created":"2023-01-01 00:00:00"}"#));
    assert_eq!(e.path(), Some("event.deliveries"));
    assert!(e.message().contains("an array of records"), "{e}");
    let e = err(JSON, batch_json(r#"["not a record"]"#));
    assert_eq!(e.path(), Some("event.deliveries[0]"));
    assert!(e.message().contains("a record object"), "{e}");
}

#[test]
fn wrong_typed_field_names_its_path() {
    let e = err(
        JSON,
        batch_json(
            r#"[{"created":"2023-01-01 00:00:00","status":"queued"},{"created":"2023-01-01 00:00:00","status":"queued","to":["a"]}]"#,
        ),
    );
    assert_eq!(e.kind(), ParseErrorKind::InvalidField);
    assert_eq!(e.path(), Some("event.deliveries[1].to"));
    assert!(
        e.to_string()
            .starts_with("event.deliveries[1].to: invalid type: sequence, expected a string"),
        "{e}"
    );
}

#[test]
fn bad_created_names_its_path() {
    for bad in [
        "2023-13-01 00:00:00",
        "yesterday",
        "",
        "2023/01/01 00:00:00",
    ] {
        let e = err(
            JSON,
            batch_json(&format!(r#"[{{"created":"{bad}","status":"queued"}}]"#)),
        );
        assert_eq!(e.kind(), ParseErrorKind::InvalidField, "{bad}");
        assert_eq!(e.path(), Some("event.deliveries[0].created"), "{bad}");
        assert!(e.message().contains("is not a date and time"), "{e}");
    }
}

#[test]
fn bad_ip_address_names_its_path() {
    let e = err(
        JSON,
        batch_json(
            r#"[{"created":"2023-01-01 00:00:00","status":"queued","senderIp":"300.1.1.1"}]"#,
        ),
    );
    assert_eq!(e.path(), Some("event.deliveries[0].senderIp"));
    assert!(
        e.message().starts_with("`300.1.1.1` is not an IP address"),
        "{e}"
    );
}

#[test]
fn missing_required_fields() {
    let e = err(JSON, batch_json(r#"[{"status":"queued"}]"#));
    assert_eq!(e.kind(), ParseErrorKind::MissingField);
    assert_eq!(e.path(), Some("event.deliveries[0]"));
    assert!(e.message().contains("missing field `created`"), "{e}");

    let e = err(
        JSON,
        r#"{"event_type":"deliveries","event":{"deliveries":[]}}"#,
    );
    assert_eq!(
        (e.kind(), e.path()),
        (ParseErrorKind::MissingField, Some("server_composition"))
    );

    let e = err(
        JSON,
        r#"{"event_type":"deliveries","server_composition":"pro"}"#,
    );
    assert_eq!(
        (e.kind(), e.path()),
        (ParseErrorKind::MissingField, Some("event"))
    );

    let e = err(
        JSON,
        r#"{"server_composition":"pro","filter":"f","envelope-from":"a","envelope-to":"b"}"#,
    );
    assert_eq!(
        (e.kind(), e.path()),
        (ParseErrorKind::MissingField, Some("headers"))
    );
}

#[test]
fn event_list_must_match_event_type() {
    let e = err(
        JSON,
        r#"{"event_type":"bounces","server_composition":"pro","event":{"deliveries":[]}}"#,
    );
    assert_eq!(e.kind(), ParseErrorKind::MissingField);
    assert_eq!(e.path(), Some("event"));
    assert!(
        e.message().contains("`bounces`") && e.message().contains("`deliveries`"),
        "{e}"
    );
}

#[test]
fn fields_given_twice_are_refused() {
    let e = err(
        JSON,
        r#"{"event_type":"deliveries","server_composition":"pro","server_composition":"x","event":{"deliveries":[]}}"#,
    );
    assert_eq!(e.kind(), ParseErrorKind::InvalidField);
    assert!(
        e.to_string().contains("server_composition") && e.to_string().contains("twice"),
        "{e}"
    );

    let e = err(
        JSON,
        batch_json(r#"[{"created":"2023-01-01 00:00:00","status":"queued","to":"a","to":"b"}]"#),
    );
    assert!(e.to_string().contains("`to` is given twice"), "{e}");

    let e = err(
        FORM,
        form(&[
            ("server_composition", "p"),
            ("event_type", "deliveries"),
            ("api_key", "a"),
            ("api_key", "b"),
            ("event", r#"{"deliveries":[]}"#),
        ]),
    );
    assert_eq!(e.kind(), ParseErrorKind::InvalidField);
    assert_eq!(e.path(), Some("api_key"));
}

#[test]
fn version_1_and_2_names_that_disagree_are_refused() {
    let e = err(
        JSON,
        batch_json(
            r#"[{"created":"2023-01-01 00:00:00","status":"queued","to":"a@x","envelopeTo":"b@x"}]"#,
        ),
    );
    assert_eq!(e.path(), Some("event.deliveries[0]"));
    assert!(
        e.message().contains("`to` and `envelopeTo` disagree"),
        "{e}"
    );
}

#[test]
fn invalid_utf8_in_every_encoding() {
    let mut json =
        batch_json(r#"[{"created":"2023-01-01 00:00:00","status":"queued","subject":"XX"}]"#)
            .into_bytes();
    let at = json.windows(2).position(|w| w == b"XX").unwrap();
    json[at] = 0xff;
    let e = err(JSON, json);
    assert_eq!(e.kind(), ParseErrorKind::Encoding);
    assert!(e.message().contains("not UTF-8"), "{e}");

    let e = err(FORM, "server_composition=%FF&event_type=deliveries");
    assert_eq!(
        (e.kind(), e.path()),
        (ParseErrorKind::Encoding, Some("server_composition"))
    );

    let e = err(FORM, &b"server_composition=\xff"[..]);
    assert_eq!(e.kind(), ParseErrorKind::Encoding);

    let body =
        b"--b\r\nContent-Disposition: form-data; name=\"filter\"\r\n\r\n\xff\xfe\r\n--b--\r\n";
    let e = err("multipart/form-data; boundary=b", &body[..]);
    assert_eq!(
        (e.kind(), e.path()),
        (ParseErrorKind::Encoding, Some("filter"))
    );
}

#[test]
fn malformed_percent_encoding() {
    let e = err(
        FORM,
        "server_composition=pro&event_type=deliveries&event=%7B%ZZ",
    );
    assert_eq!(
        (e.kind(), e.path()),
        (ParseErrorKind::Encoding, Some("event"))
    );
    assert!(e.message().contains("`%ZZ`"), "{e}");
}

#[test]
fn invalid_json_inside_a_form_field_names_the_field() {
    let e = err(
        FORM,
        form(&[
            ("server_composition", "p"),
            ("event_type", "deliveries"),
            ("event", r#"{"deliveries":[{"created":1}]}"#),
        ]),
    );
    assert_eq!(e.path(), Some("event.deliveries[0].created"));
    let e = err(
        FORM,
        form(&[
            ("server_composition", "p"),
            ("event_type", "deliveries"),
            ("event", "{"),
        ]),
    );
    assert_eq!((e.kind(), e.path()), (ParseErrorKind::Json, Some("event")));
}

#[test]
fn multipart_without_boundary_or_truncated() {
    let e = err("multipart/form-data", "--b\r\n");
    assert_eq!(e.kind(), ParseErrorKind::Encoding);
    assert!(e.message().contains("boundary"), "{e}");

    let (ct, body) = common::load("shared/inbound-multipart-attachment.multipart");
    for cut in [0, 10, body.len() / 2, body.len() - 10] {
        let e = err(&ct, body.slice(..cut));
        assert_eq!(e.kind(), ParseErrorKind::Encoding, "cut at {cut}: {e}");
        assert!(e.message().starts_with("malformed multipart body"), "{e}");
    }
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    for body in [
        deep.clone(),
        format!(r#"{{"event_type":"x","server_composition":"p","extra":{deep}}}"#),
        batch_json(&format!(
            r#"[{{"created":"2023-01-01 00:00:00","status":"queued","x":{deep}}}]"#
        )),
        format!(
            r#"{{"event_type":"blocks","server_composition":"p","event":{{"blocks":[{deep}]}}}}"#
        ),
    ] {
        let e = err(JSON, body);
        assert!(
            matches!(
                e.kind(),
                ParseErrorKind::Json | ParseErrorKind::InvalidField
            ),
            "{e}"
        );
    }
    let e = err(
        FORM,
        form(&[
            ("server_composition", "p"),
            ("event_type", "unknown"),
            ("event", &format!(r#"{{"unknown":[{deep}]}}"#)),
        ]),
    );
    assert_eq!(e.kind(), ParseErrorKind::Json, "{e}");
    // A record kept whole is held to the depth the inbox can read back.
    assert!(
        e.message()
            .starts_with("a value nests deeper than 64 levels"),
        "{e}"
    );
    assert_eq!(e.path(), Some("event.unknown[0]"));
}

#[test]
fn the_wrong_kind_is_named() {
    let (ct, body) = common::load("shared/inbound-json.json");
    let e = EventBatch::parse(&ct, body).unwrap_err();
    assert_eq!(e.kind(), ParseErrorKind::WrongKind);
    assert_eq!(e.to_string(), "expected an event webhook (event_type, event), but the body is an inbound mail (headers, filter, envelope)");

    let (ct, body) = common::load("shared/event-v2-json-queued.json");
    let e = InboundMail::parse(&ct, body).unwrap_err();
    assert_eq!(e.kind(), ParseErrorKind::WrongKind);
    assert!(
        e.to_string()
            .ends_with("but the body is an event webhook (event_type, event)"),
        "{e}"
    );

    let e = err(JSON, "{}");
    assert_eq!(e.kind(), ParseErrorKind::WrongKind);
    assert!(e.message().contains("neither"), "{e}");
}

#[test]
fn attachment_count_must_match_the_parts() {
    let (ct, body) = common::load("shared/inbound-multipart-attachment.multipart");
    let body = String::from_utf8_lossy(&body).replace("\r\n\r\n1\r\n", "\r\n\r\n2\r\n");
    let e = err(&ct, body);
    assert_eq!(
        (e.kind(), e.path()),
        (ParseErrorKind::InvalidField, Some("attachments"))
    );
    assert!(e.message().contains("says `2` attachments"), "{e}");
}

#[test]
fn unsupported_media_type() {
    for ct in ["text/plain", "", "application/octet-stream", "image/png"] {
        assert_eq!(
            err(ct, "{}").kind(),
            ParseErrorKind::UnsupportedMediaType,
            "{ct}"
        );
    }
}

#[test]
fn many_lists_and_parts_are_checked_in_linear_time() {
    // 50 000 distinct lists in `event`: accepted as unknown types when the
    // record cap allows them, without a duplicate check that grows with the
    // square of the count.
    let lists: Vec<String> = (0..50_000).map(|i| format!(r#""t{i}":[]"#)).collect();
    let body = format!(
        r#"{{"event_type":"t0","server_composition":"p","event":{{{}}}}}"#,
        lists.join(",")
    );
    let roomy = Limits::default().max_unknown_fields(50_000);
    let parsed = Webhook::parse_with_limits(JSON, Bytes::from(body.clone()), roomy);
    let Ok(Webhook::Events(batch)) = parsed else {
        panic!("{parsed:?}")
    };
    assert!(batch.events.is_empty());
    // Each list counts against the default cap of 10 000 unknown fields.
    let e = EventBatch::parse(JSON, Bytes::from(body)).unwrap_err();
    assert_eq!(e.kind(), ParseErrorKind::TooLarge);
    assert!(
        e.message().starts_with("more than 10000 unknown fields"),
        "{e}"
    );

    let mut body = String::new();
    for i in 1..=5_000 {
        body.push_str(&format!("--b\r\nContent-Disposition: form-data; name=\"attachment{i}\"; filename=\"f{i}\"\r\n\r\nx\r\n"));
    }
    for (name, value) in [
        ("server_composition", "s"),
        ("filter", "f"),
        ("headers", "[]"),
        ("envelope-from", "a"),
        ("envelope-to", "b"),
        ("attachments", "5000"),
    ] {
        body.push_str(&format!(
            "--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str("--b--\r\n");
    let limits = Limits::default().max_parts(10_000);
    let parsed = Webhook::parse_with_limits(
        "multipart/form-data; boundary=b",
        Bytes::from(body.clone()),
        limits,
    );
    let Ok(Webhook::Inbound(mail)) = parsed else {
        panic!("{parsed:?}")
    };
    assert_eq!(mail.attachments.len(), 5_000);
    // The default cap refuses so many parts.
    let e = InboundMail::parse("multipart/form-data; boundary=b", Bytes::from(body)).unwrap_err();
    assert_eq!(e.kind(), ParseErrorKind::TooLarge);
    assert_eq!(e.message(), "the multipart body has more than 512 parts");
    assert_eq!(mail.attachments[4_999].filename, "f5000");
}

/// A field name from the body that ends up in an error (here one given
/// twice) has its control and bidirectional characters escaped: the error
/// text cannot forge a log line or reorder one.
#[test]
fn field_names_in_errors_are_escaped() {
    let name = "x%0AINFO+forged%1B%5B2K%E2%80%AE";
    let body =
        format!("event_type=deliveries&server_composition=pro&{name}=1&{name}=2&event=%7B%7D");
    let e = cmc_webhook::Webhook::parse(
        "application/x-www-form-urlencoded",
        bytes::Bytes::from(body),
    )
    .unwrap_err();
    let shown = e.to_string();
    let path = e.path().unwrap_or_default().to_owned();
    for text in [&shown, &path] {
        assert!(
            !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{text:?}"
        );
    }
    assert!(
        shown.contains("x\\u{a}INFO forged\\u{1b}[2K\\u{202e}"),
        "{shown}"
    );
}
