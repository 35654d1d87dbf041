//! Hostile inputs against the layer and the extractor: each gets a clear
//! 4xx, nothing panics, and the handler never runs for a refused request.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use cmc_webhook::test_util::{
    encode_events, sample_events, sample_inbound, CmcRequest, WireEncoding,
};
use cmc_webhook::{Webhook, WebhookLayer};
use common::http::{post as post_req, send_raw, serve, Calls};
use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;

const PEER: &str = "127.0.0.1:40000";

fn app(calls: &Calls, builder: cmc_webhook::layer::WebhookLayerBuilder) -> Router {
    let calls = calls.clone();
    let handler = move |webhook: Webhook| {
        let calls = calls.clone();
        async move {
            calls.hit();
            match webhook {
                Webhook::Events(b) => format!("events {}", b.events.len()),
                Webhook::Inbound(m) => format!("inbound {}", m.attachments.len()),
            }
        }
    };
    Router::new().route("/mails", post(handler).layer(builder.build().unwrap()))
}

fn layer() -> cmc_webhook::layer::WebhookLayerBuilder {
    WebhookLayer::builder()
        .allow_cidrs("127.0.0.0/8")
        .unwrap()
        .trust_proxy("127.0.0.1/32".parse().unwrap())
        .body_limit(8 << 20)
}

async fn call(app: Router, request: CmcRequest) -> (StatusCode, String) {
    let request = request
        .uri("/mails")
        .peer(PEER.parse().unwrap())
        .into_request();
    let response = app.oneshot(request.map(Body::new)).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A multipart body of the given parts `(headers, data)`.
fn multipart(parts: &[(Vec<u8>, Vec<u8>)]) -> CmcRequest {
    let mut body = Vec::new();
    for (headers, data) in parts {
        body.extend_from_slice(b"--XB\r\n");
        body.extend_from_slice(headers);
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XB--\r\n");
    CmcRequest::raw("multipart/form-data; boundary=XB", body)
}

fn field(name: &str, value: &str) -> (Vec<u8>, Vec<u8>) {
    (
        format!("Content-Disposition: form-data; name=\"{name}\"").into_bytes(),
        value.as_bytes().to_vec(),
    )
}

fn inbound_fields() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        field("server_composition", "s"),
        field("filter", "f@example.jp"),
        field("headers", "[]"),
        field("envelope-from", "a@example.com"),
        field("envelope-to", "f@example.jp"),
    ]
}

fn file(n: usize, name: &str, data: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    (
        format!("Content-Disposition: form-data; name=\"attachment{n}\"; filename=\"{name}\"")
            .into_bytes(),
        data,
    )
}

#[tokio::test]
async fn thousands_of_parts_are_a_413() {
    let calls = Calls::default();
    let mut parts = inbound_fields();
    parts.extend((0..5_000).map(|i| field(&format!("x{i}"), "y")));
    let (status, body) = call(app(&calls, layer()), multipart(&parts)).await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is larger than allowed: the multipart body has more than 512 parts\n"
        )
    );
    // A lower cap, configured on the layer.
    let mut parts = inbound_fields();
    parts.extend((1..=20).map(|i| file(i, "f.bin", vec![1])));
    parts.push(field("attachments", "20"));
    let (status, _) = call(app(&calls, layer().max_parts(16)), multipart(&parts)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = call(app(&calls, layer().max_parts(64)), multipart(&parts)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "inbound 20"));
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn one_huge_part_is_a_413() {
    let calls = Calls::default();
    let mut parts = inbound_fields();
    parts.push(file(1, "big.bin", vec![0; 3 << 20]));
    parts.push(field("attachments", "1"));
    let (status, body) = call(
        app(&calls, layer().max_part_size(1 << 20)),
        multipart(&parts),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    // Over the body limit as a whole.
    let (status, _) = call(app(&calls, layer().body_limit(1 << 20)), multipart(&parts)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Within both: accepted.
    let (status, _) = call(
        app(&calls, layer().max_part_size(4 << 20)),
        multipart(&parts),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn a_field_repeated_with_different_values_is_a_400() {
    let calls = Calls::default();
    let mut parts = inbound_fields();
    parts.push(field("filter", "other@example.jp"));
    let (status, body) = call(app(&calls, layer()), multipart(&parts)).await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "malformed webhook body: filter: field is given twice\n"
        )
    );
    let form = "server_composition=a&server_composition=b&event_type=deliveries&event=%7B%22deliveries%22%3A%5B%5D%7D";
    let (status, _) = call(
        app(&calls, layer()),
        CmcRequest::raw("application/x-www-form-urlencoded", form),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn an_api_key_sent_twice_is_a_400() {
    let calls = Calls::default();
    let form = "server_composition=a&api_key=k&api_key=k&event_type=deliveries&event=%7B%22deliveries%22%3A%5B%5D%7D";
    let (status, body) = call(
        app(&calls, layer().api_key("k")),
        CmcRequest::raw("application/x-www-form-urlencoded", form),
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "malformed webhook body: api_key: field is given twice\n"
        )
    );
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn an_attachment_count_that_disagrees_is_a_400() {
    let calls = Calls::default();
    for (declared, files) in [("3", 2), ("1", 2), ("x", 1), ("0", 1)] {
        let mut parts = inbound_fields();
        parts.extend((1..=files).map(|i| file(i, "f.txt", b"x".to_vec())));
        parts.push(field("attachments", declared));
        let (status, body) = call(app(&calls, layer()), multipart(&parts)).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{declared}/{files}: {body}"
        );
        assert!(body.contains("attachments: says"), "{body}");
    }
    // A gap in the numbers, with a matching count.
    let mut parts = inbound_fields();
    parts.push(file(1, "a", b"x".to_vec()));
    parts.push(file(3, "c", b"x".to_vec()));
    parts.push(field("attachments", "2"));
    assert_eq!(
        call(app(&calls, layer()), multipart(&parts)).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn a_hundred_thousand_records_are_accepted_when_the_record_cap_allows() {
    let calls = Calls::default();
    let body = encode_events(&sample_events(100_000), WireEncoding::Json);
    assert!(body.body.len() < 64 << 20);
    let (status, text) = call(
        app(&calls, layer().body_limit(64 << 20).max_records(100_000)),
        CmcRequest::body(body.clone()),
    )
    .await;
    assert_eq!((status, text.as_str()), (StatusCode::OK, "events 100000"));
    assert_eq!(calls.count(), 1);
    // The default cap, 10 000 records, answers 413 with its reason.
    let (status, text) = call(
        app(&calls, layer().body_limit(64 << 20)),
        CmcRequest::body(body),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(text.contains("more than 10000 records"), "{text}");
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn deep_nesting_is_a_400() {
    let calls = Calls::default();
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    let bodies = [
        format!(r#"{{"event_type":"x","server_composition":"s","event":{{"x":[{deep}]}}}}"#),
        format!(
            r#"{{"event_type":"deliveries","server_composition":"s","event":{{"deliveries":{deep}}}}}"#
        ),
        deep.clone(),
    ];
    for body in bodies {
        let (status, text) = call(
            app(&calls, layer()),
            CmcRequest::raw("application/json", body),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    }
    let form = format!(
        "event_type=x&server_composition=s&event={}",
        "%5B".repeat(100_000)
    );
    assert_eq!(
        call(
            app(&calls, layer()),
            CmcRequest::raw("application/x-www-form-urlencoded", form)
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn invalid_utf8_in_every_kind_of_field_is_a_400() {
    let calls = Calls::default();
    let json = |inner: &[u8]| {
        let mut b = br#"{"event_type":"deliveries","server_composition":""#.to_vec();
        b.extend_from_slice(inner);
        b.extend_from_slice(br#"","event":{"deliveries":[]}}"#);
        b
    };
    let mut cases: Vec<CmcRequest> = vec![
        CmcRequest::raw("application/json", json(b"\xff")),
        CmcRequest::raw("application/json", json(b"\xc3")),
        CmcRequest::raw(
            "application/x-www-form-urlencoded",
            &b"server_composition=\xff"[..],
        ),
        CmcRequest::raw(
            "application/x-www-form-urlencoded",
            "server_composition=%C3%28&event_type=x",
        ),
        CmcRequest::raw("application/x-www-form-urlencoded", "%FF=1&event_type=x"),
    ];
    // Multipart: a text field, the headers JSON. (A file name that is not
    // UTF-8 is kept lossily, not refused: see tests/charsets.rs.)
    let mut parts = inbound_fields();
    parts[0].1 = b"\xfe\xff".to_vec();
    cases.push(multipart(&parts));
    let mut parts = inbound_fields();
    parts[2].1 = b"[{\"name\":\"\xff\",\"value\":\"v\"}]".to_vec();
    cases.push(multipart(&parts));
    for (i, case) in cases.into_iter().enumerate() {
        let (status, body) = call(app(&calls, layer()), case).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "case {i}: {body}");
        assert!(
            body.starts_with("malformed webhook body: "),
            "case {i}: {body}"
        );
    }
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn percent_encoding_errors_are_a_400() {
    let calls = Calls::default();
    for form in [
        "event=%",
        "event=%4",
        "event=%G0",
        "server_composition=100%&event_type=x",
        "a%zz=1",
    ] {
        let (status, body) = call(
            app(&calls, layer()),
            CmcRequest::raw("application/x-www-form-urlencoded", form),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}");
        assert!(
            body.contains("malformed percent-encoding"),
            "{form}: {body}"
        );
    }
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn ten_thousand_forwarded_hops_are_walked_without_trouble() {
    let calls = Calls::default();
    let body = encode_events(&sample_events(1), WireEncoding::Json);
    // All hops are trusted proxies but the leftmost, which is not allowed.
    let chain = std::iter::once("198.51.100.1".to_owned())
        .chain((0..10_000).map(|_| "127.0.0.1".to_owned()))
        .collect::<Vec<_>>()
        .join(", ");
    let (status, _) = call(
        app(&calls, layer()),
        CmcRequest::body(body.clone()).header("x-forwarded-for", chain),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // 10 000 unreadable entries: the rightmost ends the walk.
    let junk = vec!["junk"; 10_000].join(", ");
    let (status, _) = call(
        app(&calls, layer()),
        CmcRequest::body(body).header("x-forwarded-for", junk),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn hostile_file_names_are_kept_as_sent_and_made_safe() {
    // File names are data, not a reason to lose a mail: they are accepted,
    // kept as sent in `filename`, and `safe_filename` is a plain name.
    let calls = Calls::default();
    let mut parts = inbound_fields();
    parts.push(file(1, "../../etc/passwd", b"x".to_vec()));
    parts.push(file(2, "tab\there.txt", b"x".to_vec()));
    parts.push((
        b"Content-Disposition: form-data; name=\"attachment3\"; filename*=UTF-8''..%2F..%2Fevil%00%0D%0Aname.sh".to_vec(),
        b"x".to_vec(),
    ));
    parts.push(field("attachments", "3"));
    let Webhook::Inbound(mail) = Webhook::parse(
        "multipart/form-data; boundary=XB",
        multipart(&parts).wire().body.clone(),
    )
    .unwrap() else {
        panic!("an inbound mail")
    };
    let names: Vec<_> = mail
        .attachments
        .iter()
        .map(|a| (a.filename.to_string(), a.safe_filename()))
        .collect();
    assert_eq!(
        names,
        [
            ("../../etc/passwd".to_owned(), "passwd".to_owned()),
            ("tab\there.txt".to_owned(), "tab_here.txt".to_owned()),
            (
                "../../evil\0\r\nname.sh".to_owned(),
                "evil___name.sh".to_owned()
            ),
        ]
    );
    let (status, body) = call(app(&calls, layer()), multipart(&parts)).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "inbound 3"));
}

#[tokio::test]
async fn a_content_length_that_disagrees_with_the_body() {
    let calls = Calls::default();
    let addr = serve("127.0.0.1:0", app(&calls, layer())).await;
    let body = encode_events(&sample_events(1), WireEncoding::Json).body;
    // Longer than the body, then the client stops sending and closes.
    let mut request = post_req("/mails", &["Content-Type: application/json"], &body);
    let declared = format!("Content-Length: {}", body.len());
    let head_end = request
        .windows(declared.len())
        .position(|w| w == declared.as_bytes())
        .unwrap();
    request.splice(
        head_end..head_end + declared.len(),
        format!("Content-Length: {}", body.len() + 100).into_bytes(),
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    stream.shutdown().await.unwrap();
    let reply = common::http::read_reply(&mut stream).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    // Shorter than the body: the rest is read as a next request, which is
    // not HTTP; the first request is parsed from what was declared.
    let short = post_req(
        "/mails",
        &["Content-Type: application/json"],
        &body[..body.len() - 10],
    );
    let mut bytes = short.clone();
    bytes.extend_from_slice(&body[body.len() - 10..]);
    let reply = send_raw(addr, &bytes).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply.body.starts_with("malformed webhook body: "),
        "{}",
        reply.body
    );
    assert_eq!(calls.count(), 0);
}

#[tokio::test]
async fn a_client_that_closes_mid_body_leaves_the_server_serving() {
    let calls = Calls::default();
    let addr = serve("127.0.0.1:0", app(&calls, layer())).await;
    let body = encode_events(&sample_events(50), WireEncoding::Json).body;
    for cut in [0, 1, body.len() / 2] {
        let request = post_req("/mails", &["Content-Type: application/json"], &body);
        let head = request.len() - body.len();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(&request[..head + cut]).await.unwrap();
        drop(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reply = send_raw(
        addr,
        &post_req("/mails", &["Content-Type: application/json"], &body),
    )
    .await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "events 50"));
    assert_eq!(calls.count(), 1);
}

#[tokio::test]
async fn mails_with_attachments_and_everything_else_still_pass() {
    let calls = Calls::default();
    let request = CmcRequest::inbound(&sample_inbound(true), WireEncoding::Multipart);
    assert_eq!(
        call(app(&calls, layer()), request).await,
        (StatusCode::OK, "inbound 1".to_owned())
    );
    let raw = encode_events(&sample_events(3), WireEncoding::Form).body;
    assert_eq!(
        call(
            app(&calls, layer()),
            CmcRequest::raw("application/x-www-form-urlencoded", raw)
        )
        .await,
        (StatusCode::OK, "events 3".to_owned())
    );
    assert_eq!(calls.count(), 2);
}
