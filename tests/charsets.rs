//! Real senders: the raw requests that Apache HttpClient 4.5 / HttpMime
//! 4.5 (CMC's client) writes for CMC-shaped webhooks, replayed byte for
//! byte over TCP, and every field compared with what was sent. The
//! captures and what they carry are in `tests/fixtures/httpclient/`
//! (`manifest.json`), made by `scripts/capture-httpclient/capture.sh`; no
//! Java is needed here.
//!
//! The rules they check: the request's `charset` is the default for every
//! text value and file name, a part's own label wins, unlabelled text is
//! UTF-8 and refused with a 400 that names the field and the charset when
//! it is not, and a file name that cannot be read is kept lossily with its
//! bytes, never losing the mail.

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use cmc_webhook::{Webhook, WebhookLayer};
use serde_json::Value;

type Received = Arc<Mutex<Vec<Webhook>>>;

async fn keep(State(received): State<Received>, webhook: Webhook) -> &'static str {
    received.lock().unwrap().push(webhook);
    "ok\n"
}

fn app(received: &Received) -> Router {
    let layer = WebhookLayer::builder()
        .allow_cidrs("127.0.0.0/8")
        .unwrap()
        .body_limit(4 << 20)
        .build()
        .unwrap();
    Router::new()
        .route("/mails", post(keep).layer(layer))
        .with_state(received.clone())
}

fn manifest() -> Vec<Value> {
    let text =
        std::fs::read_to_string(common::fixtures().join("httpclient/manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The request as captured, told to close the connection after the answer
/// (the body is untouched).
fn replay_bytes(case: &Value) -> Vec<u8> {
    let file = case["file"].as_str().unwrap();
    let raw = std::fs::read(common::fixtures().join("httpclient").join(file)).unwrap();
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
    assert!(head.contains("Connection: Keep-Alive\r\n"), "{file}");
    let mut out = head
        .replace("Connection: Keep-Alive\r\n", "Connection: close\r\n")
        .into_bytes();
    out.extend_from_slice(&raw[head_end..]);
    out
}

/// What a correct reading gives, written as a UTF-8 body this crate reads
/// without any charset rule: multipart with `filename*` names, or form.
fn expected_webhook(case: &Value) -> Webhook {
    // The crate's table choice (WHATWG) where it differs from Java's.
    let expected = match &case["expected_whatwg"] {
        Value::Null => &case["expected"],
        whatwg => whatwg,
    };
    let fields: Vec<(String, String)> = expected["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_owned(),
                p[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let sent_files = case["sent"]["files"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let files = expected["files"].as_array().cloned().unwrap_or_default();
    let mode = case["mode"].as_str().unwrap();
    if mode == "json" {
        // The whole body is one "field".
        let (_, body) = &fields[0];
        return Webhook::parse("application/json", Bytes::from(body.clone())).unwrap();
    }
    if mode == "form" {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter())
            .finish();
        return Webhook::parse("application/x-www-form-urlencoded", Bytes::from(body)).unwrap();
    }
    let mut body = Vec::new();
    for (name, value) in &fields {
        body.extend_from_slice(
            format!("--X\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    for (file, sent) in files.iter().zip(&sent_files) {
        let name: String =
            form_urlencoded::byte_serialize(file["filename"].as_str().unwrap().as_bytes())
                .collect::<String>()
                .replace('+', "%20");
        let data = base64::engine::general_purpose::STANDARD
            .decode(sent["data_base64"].as_str().unwrap())
            .unwrap();
        body.extend_from_slice(
            format!(
                "--X\r\nContent-Disposition: form-data; name=\"{}\"; filename*=UTF-8''{name}\r\nContent-Type: {}\r\n\r\n",
                file["field"].as_str().unwrap(),
                file["content_type"].as_str().unwrap()
            )
            .as_bytes(),
        );
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--X--\r\n");
    Webhook::parse("multipart/form-data; boundary=X", Bytes::from(body)).unwrap()
}

/// Compares what was received with what was sent, ignoring what only the
/// wire form carries (a file name's raw form, the charset label on a
/// part's Content-Type is kept as sent on both sides).
fn assert_same(case: &str, got: &Webhook, want: &Webhook) {
    match (got, want) {
        (Webhook::Events(got), Webhook::Events(want)) => {
            assert_eq!(got, want, "{case}");
        }
        (Webhook::Inbound(got), Webhook::Inbound(want)) => {
            assert_eq!(got.server_composition, want.server_composition, "{case}");
            assert_eq!(got.filter, want.filter, "{case}");
            assert_eq!(got.headers, want.headers, "{case}");
            assert_eq!(got.subject, want.subject, "{case}");
            assert_eq!(got.envelope_from, want.envelope_from, "{case}");
            assert_eq!(got.envelope_to, want.envelope_to, "{case}");
            assert_eq!(got.text, want.text, "{case}");
            assert_eq!(got.html, want.html, "{case}");
            assert_eq!(got.api_key, want.api_key, "{case}");
            assert_eq!(got.extra, want.extra, "{case}");
            assert_eq!(got.attachments.len(), want.attachments.len(), "{case}");
            for (g, w) in got.attachments.iter().zip(&want.attachments) {
                assert_eq!(g.field_name, w.field_name, "{case}");
                assert_eq!(g.filename, w.filename, "{case}");
                assert!(!g.filename_lossy, "{case}: {g:?}");
                assert_eq!(g.content_type, w.content_type, "{case}");
                assert_eq!(g.data, w.data, "{case}: {}", g.field_name);
            }
        }
        _ => panic!("{case}: got {got:?}, want {want:?}"),
    }
}

/// The final answer, after a `100 Continue` for `Expect: 100-continue`.
fn final_reply(reply: common::http::Reply) -> common::http::Reply {
    if reply.status != 100 {
        return reply;
    }
    let (head, body) = reply
        .body
        .split_once("\r\n\r\n")
        .unwrap_or((&reply.body, ""));
    common::http::Reply {
        status: head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// The captures a strict reader refuses, and why (the message names the
/// field and the charset tried).
const REFUSED: [(&str, &str); 2] = [
    // HttpMime's plain addTextBody writes ISO-8859-1 under a request that
    // says UTF-8: the label is wrong, and the crate follows labels.
    (
        "multipart-browser-utf8-plain-textbody-mislabelled",
        "is not valid UTF-8 (the charset the request's Content-Type names)",
    ),
    // UrlEncodedFormEntity without a charset: ISO-8859-1, unlabelled.
    (
        "form-default-charset-latin1-unlabelled",
        "is not valid UTF-8 (no charset is named, so UTF-8 is assumed)",
    ),
];

#[tokio::test]
async fn every_httpclient_capture_reads_back_what_was_sent() {
    let received: Received = Arc::default();
    let addr = common::http::serve("127.0.0.1:0", app(&received)).await;
    let cases = manifest();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut compared = 0;
    for case in &cases {
        let name = case["case"].as_str().unwrap();
        received.lock().unwrap().clear();
        let reply = common::http::send_raw(addr, &replay_bytes(case)).await;
        let reply = final_reply(reply);
        if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
            assert_eq!(reply.status, 400, "{name}: {}", reply.body);
            assert!(reply.body.contains(why), "{name}: {}", reply.body);
            continue;
        }
        assert_eq!((reply.status, reply.body.as_str()), (200, "ok\n"), "{name}");
        let got = received.lock().unwrap().pop().expect("the handler ran");
        assert_same(name, &got, &expected_webhook(case));
        compared += 1;
    }
    assert_eq!(compared, cases.len() - REFUSED.len());
}

#[tokio::test]
async fn an_unreadable_file_name_keeps_the_mail_and_its_bytes() {
    let body = b"--b\r\nContent-Disposition: form-data; name=\"server_composition\"\r\n\r\ns\r\n\
--b\r\nContent-Disposition: form-data; name=\"filter\"\r\n\r\nf\r\n\
--b\r\nContent-Disposition: form-data; name=\"headers\"\r\n\r\n[]\r\n\
--b\r\nContent-Disposition: form-data; name=\"envelope-from\"\r\n\r\na@x\r\n\
--b\r\nContent-Disposition: form-data; name=\"envelope-to\"\r\n\r\nb@y\r\n\
--b\r\nContent-Disposition: form-data; name=\"attachments\"\r\n\r\n2\r\n\
--b\r\nContent-Disposition: form-data; name=\"attachment1\"; filename=\"\xff\xfe.txt\"\r\n\r\none\r\n\
--b\r\nContent-Disposition: form-data; name=\"attachment2\"; filename=\"ok.txt\"\r\n\r\ntwo\r\n--b--\r\n";
    let mail = cmc_webhook::InboundMail::parse(
        "multipart/form-data; boundary=b",
        Bytes::from_static(body),
    )
    .expect("the mail is kept");
    let [first, second] = &mail.attachments[..] else {
        panic!("two attachments")
    };
    assert_eq!(first.filename, "\u{FFFD}\u{FFFD}.txt");
    assert!(first.filename_lossy);
    assert_eq!(&first.raw_filename_bytes[..], b"\xff\xfe.txt");
    assert_eq!(&first.data[..], b"one");
    assert_eq!(first.safe_filename(), "\u{FFFD}\u{FFFD}.txt");
    assert_eq!(
        (second.filename.as_str(), second.filename_lossy),
        ("ok.txt", false)
    );
}

#[test]
fn json_is_utf8_whatever_its_label_and_may_start_with_a_bom() {
    let body = r#"{"event_type":"bounces","server_composition":"café","event":{"bounces":[]}}"#;
    for ct in ["application/json; charset=ISO-8859-1", "application/json"] {
        let Webhook::Events(batch) = Webhook::parse(ct, Bytes::from(body)).unwrap() else {
            panic!("an event batch")
        };
        assert_eq!(batch.server_composition, "café", "{ct}");
    }
    let with_bom = [&b"\xEF\xBB\xBF"[..], body.as_bytes()].concat();
    assert!(Webhook::parse("application/json", Bytes::from(with_bom)).is_ok());
}

#[test]
fn raw_and_escaped_bytes_of_a_form_body_are_read_once_in_its_charset() {
    let body = &b"event_type=bounces&server_composition=Caf\xe9+%E9t%E9&event=%7B%22bounces%22%3A%5B%5D%7D"[..];
    let ct = "application/x-www-form-urlencoded; charset=ISO-8859-1";
    let Webhook::Events(batch) = Webhook::parse(ct, Bytes::from_static(body)).unwrap() else {
        panic!("an event batch")
    };
    assert_eq!(batch.server_composition, "Café été");
    // Raw Shift_JIS with a `+`: テスト 1.
    let sjis = &b"event_type=bounces&server_composition=\x83e\x83X\x83g+1&event=%7B%22bounces%22%3A%5B%5D%7D"[..];
    let ct = "application/x-www-form-urlencoded; charset=Shift_JIS";
    let Webhook::Events(batch) = Webhook::parse(ct, Bytes::from_static(sjis)).unwrap() else {
        panic!("an event batch")
    };
    assert_eq!(batch.server_composition, "テスト 1");
}

#[test]
fn raw_iso_2022_jp_file_names_keep_the_mail_under_any_label() {
    // ESC bytes in a part header: multer's parser would refuse the block.
    let name = b"\x1b$B%F%9%H\x1b(B.txt"; // テスト.txt
    for ct in [
        "multipart/form-data; boundary=b",
        "multipart/form-data; boundary=b; charset=UTF-8",
    ] {
        let body = [
            &b"--b\r\nContent-Disposition: form-data; name=\"server_composition\"\r\n\r\ns\r\n\
--b\r\nContent-Disposition: form-data; name=\"filter\"\r\n\r\nf\r\n\
--b\r\nContent-Disposition: form-data; name=\"headers\"\r\n\r\n[]\r\n\
--b\r\nContent-Disposition: form-data; name=\"envelope-from\"\r\n\r\na@x\r\n\
--b\r\nContent-Disposition: form-data; name=\"envelope-to\"\r\n\r\nb@y\r\n\
--b\r\nContent-Disposition: form-data; name=\"attachment1\"; filename=\""[..],
            name,
            b"\"\r\n\r\none\r\n--b--\r\n",
        ]
        .concat();
        let mail = cmc_webhook::InboundMail::parse(ct, Bytes::from(body)).expect(ct);
        let file = &mail.attachments[0];
        assert_eq!(
            (file.filename.as_str(), file.filename_lossy),
            ("テスト.txt", false),
            "{ct}"
        );
        assert_eq!(&file.raw_filename_bytes[..], name);
    }
}
