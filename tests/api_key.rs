//! The `api_key` rules: the key is checked as soon as the encoding lets
//! it be read, it must be a string, and a caller without a valid key
//! learns nothing about the body (401 without detail), while a caller with
//! one gets the parse error.

use bytes::Bytes;
use cmc_webhook::{read_webhook, Policy, Reason, Rejection, Webhook};
use http_body_util::Full;

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";
const MULTIPART: &str = "multipart/form-data; boundary=b";

async fn read(
    content_type: &str,
    body: &str,
    policy: Option<Policy>,
) -> Result<Webhook, Rejection> {
    let mut request = http::Request::post("/")
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    if let Some(policy) = policy {
        request.extensions_mut().insert(policy);
    }
    read_webhook(request).await
}

fn keyed() -> Option<Policy> {
    Some(Policy::default().api_key("good-key"))
}

fn json(api_key: &str, event: &str) -> String {
    format!(r#"{{{api_key}"event_type":"bounces","server_composition":"pro","event":{event}}}"#)
}

/// A refusal without a word about the body.
fn assert_bare_401(got: Result<Webhook, Rejection>) {
    let e = got.expect_err("refused");
    assert_eq!(e.reason(), Reason::BadApiKey, "{e}");
    assert_eq!(e.status(), 401);
    assert_eq!(e.detail(), None, "{e}");
}

#[tokio::test]
async fn json_with_the_right_key_anywhere_is_accepted() {
    for body in [
        json(r#""api_key":"good-key","#, r#"{"bounces":[]}"#),
        r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[]},"api_key":"good-key"}"#.to_owned(),
    ] {
        assert!(matches!(read(JSON, &body, keyed()).await, Ok(Webhook::Events(_))), "{body}");
    }
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_a_bare_401_whatever_the_body() {
    let broken_event = r#"{"bounces":[{"created":"not a date","status":"2"}]}"#;
    for body in [
        json("", r#"{"bounces":[]}"#),
        json(r#""api_key":"wrong","#, r#"{"bounces":[]}"#),
        json("", broken_event),
        json(r#""api_key":"wrong","#, broken_event),
        format!("{}garbage", json("", r#"{"bounces":[]}"#)),
        "not json at all".to_owned(),
    ] {
        assert_bare_401(read(JSON, &body, keyed()).await);
    }
}

#[tokio::test]
async fn a_caller_with_the_key_gets_the_parse_error() {
    // The error comes before the key: the body is scanned for the key alone.
    let body = r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[{"created":"not a date","status":"2"}]},"api_key":"good-key"}"#;
    let e = read(JSON, body, keyed()).await.unwrap_err();
    assert_eq!(e.reason(), Reason::MalformedBody);
    assert!(
        e.detail().unwrap().contains("event.bounces[0].created"),
        "{e}"
    );
}

#[tokio::test]
async fn the_key_must_be_a_string() {
    for body in [
        json(r#""api_key":12345,"#, r#"{"bounces":[]}"#),
        json(
            r#""api_key":null,"api_key":"good-key","#,
            r#"{"bounces":[]}"#,
        ),
        json(r#""api_key":["good-key"],"#, r#"{"bounces":[]}"#),
    ] {
        // With a key configured: not a key, so 401.
        assert_bare_401(read(JSON, &body, keyed()).await);
        // Without one: a bad field, named.
        let e = read(JSON, &body, None).await.unwrap_err();
        assert_eq!(e.reason(), Reason::MalformedBody, "{body}");
        assert!(e.detail().unwrap().starts_with("api_key"), "{e}");
    }
    // A valid key given twice, once as null, is a duplicate, not a key.
    let body = json(
        r#""api_key":"good-key","api_key":null,"#,
        r#"{"bounces":[]}"#,
    );
    let e = read(JSON, &body, keyed()).await.unwrap_err();
    assert_eq!(e.reason(), Reason::MalformedBody, "{e}");
}

#[tokio::test]
async fn form_bodies_are_checked_for_the_key_before_anything_else() {
    let event = "event=%7B%22bounces%22%3A%5B%5D%7D";
    let broken = "event=%7Bnot-json";
    let ok = format!("server_composition=pro&event_type=bounces&{event}&api_key=good-key");
    assert!(matches!(
        read(FORM, &ok, keyed()).await,
        Ok(Webhook::Events(_))
    ));
    // The name may be percent-encoded too.
    let encoded = format!("server_composition=pro&event_type=bounces&{event}&api%5Fkey=good-key");
    assert!(matches!(
        read(FORM, &encoded, keyed()).await,
        Ok(Webhook::Events(_))
    ));
    for body in [
        format!("server_composition=pro&event_type=bounces&{event}"),
        format!("server_composition=pro&event_type=bounces&{event}&api_key=wrong"),
        format!("server_composition=pro&event_type=bounces&{broken}&api_key=wrong"),
        format!("server_composition=pro&event_type=bounces&{broken}&%zz=1"),
    ] {
        assert_bare_401(read(FORM, &body, keyed()).await);
    }
    let body = format!("server_composition=pro&event_type=bounces&{broken}&api_key=good-key");
    let e = read(FORM, &body, keyed()).await.unwrap_err();
    assert_eq!(e.reason(), Reason::MalformedBody);
    assert!(e.detail().unwrap().starts_with("event"), "{e}");
}

fn multipart(parts: &[(&str, &str)]) -> String {
    let mut body = String::new();
    for (name, value) in parts {
        body.push_str(&format!(
            "--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body + "--b--\r\n"
}

#[tokio::test]
async fn multipart_keys_are_checked_when_their_part_arrives() {
    let good = [
        ("server_composition", "pro"),
        ("event_type", "bounces"),
        ("event", r#"{"bounces":[]}"#),
        ("api_key", "good-key"),
    ];
    assert!(matches!(
        read(MULTIPART, &multipart(&good), keyed()).await,
        Ok(Webhook::Events(_))
    ));
    let broken_first = [
        ("event", r#"{"bounces":[{"created":"x","status":"2"}]}"#),
        ("server_composition", "pro"),
        ("event_type", "bounces"),
        ("api_key", "good-key"),
    ];
    // A failing part before a valid key: the caller proved it, so it learns why.
    let e = read(MULTIPART, &multipart(&broken_first), keyed())
        .await
        .unwrap_err();
    assert_eq!(e.reason(), Reason::MalformedBody);
    assert!(
        e.detail().unwrap().contains("event.bounces[0].created"),
        "{e}"
    );
    // The same with a wrong key, or none: a bare 401.
    let mut wrong = broken_first;
    wrong[3].1 = "wrong";
    assert_bare_401(read(MULTIPART, &multipart(&wrong), keyed()).await);
    assert_bare_401(read(MULTIPART, &multipart(&broken_first[..3]), keyed()).await);
    // A wrong key first ends the parse before the rest is looked at.
    let wrong_first = [("api_key", "wrong"), ("event", "{not json")];
    assert_bare_401(read(MULTIPART, &multipart(&wrong_first), keyed()).await);
}
