//! End to end: the receiver example's app on a random port, every fixture
//! posted over TCP in every encoding (and as it was captured), and the JSON
//! lines it prints checked for count and content.

mod common;

#[allow(dead_code)]
#[path = "../examples/receiver/app.rs"]
mod app;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cmc_webhook::test_util::{encode, CmcRequest, WireEncoding};
use cmc_webhook::Webhook;
use serde_json::Value;

/// The line a webhook must produce, as (kind, identity) pairs, counted.
fn expected_lines(webhook: &Webhook, into: &mut BTreeMap<String, usize>, attachments: bool) {
    match webhook {
        Webhook::Events(batch) => {
            for event in &batch.events {
                *into
                    .entry(format!(
                        "event {} {}",
                        event.event_type(),
                        event.idempotency_key()
                    ))
                    .or_default() += 1;
            }
        }
        Webhook::Inbound(mail) => {
            let files = if attachments {
                mail.attachments.len()
            } else {
                0
            };
            *into
                .entry(format!("inbound {} {} {files}", mail.filter, mail.subject))
                .or_default() += 1;
        }
    }
}

fn printed(line: &Value) -> String {
    match line["type"].as_str() {
        Some("event") => format!(
            "event {} {}",
            line["event_type"].as_str().unwrap(),
            line["key"].as_str().unwrap()
        ),
        Some("inbound") => format!(
            "inbound {} {} {}",
            line["filter"].as_str().unwrap(),
            line["subject"].as_str().unwrap(),
            line["attachments"].as_array().unwrap().len()
        ),
        other => panic!("unexpected line type {other:?}: {line}"),
    }
}

#[tokio::test]
async fn every_fixture_in_every_encoding_prints_its_lines() {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink_lines = lines.clone();
    let options = app::Options {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        body_limit: 1 << 20,
        ..app::Options::default()
    };
    let router = app::router(
        &options,
        Arc::new(move |line| sink_lines.lock().unwrap().push(line)),
    )
    .unwrap();
    let addr = common::http::serve("127.0.0.1:0", router).await;

    let mut expected = BTreeMap::new();
    let mut posted = 0;
    for path in common::all_bodies() {
        let content_type = common::content_type_of(&path);
        let body = Bytes::from(std::fs::read(&path).unwrap());
        let webhook = Webhook::parse(&content_type, body.clone()).unwrap();
        let mut requests = vec![(CmcRequest::raw(content_type, body), true)];
        for encoding in WireEncoding::ALL {
            requests.push((
                CmcRequest::body(encode(&webhook, encoding)),
                encoding == WireEncoding::Multipart,
            ));
        }
        for (request, carries_files) in requests {
            let raw = request.uri("/mails").to_http1("test");
            let reply = common::http::send_raw(addr, &raw).await;
            assert_eq!(
                (reply.status, reply.body.as_str()),
                (200, "ok\n"),
                "{}",
                path.display()
            );
            expected_lines(&webhook, &mut expected, carries_files);
            posted += 1;
        }
    }
    assert_eq!(posted, 4 * common::all_bodies().len());

    let lines = lines.lock().unwrap();
    let mut got = BTreeMap::new();
    for line in lines.iter() {
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(value["client"], "127.0.0.1");
        *got.entry(printed(&value)).or_insert(0usize) += 1;
    }
    assert_eq!(lines.len(), expected.values().sum::<usize>());
    assert_eq!(got, expected);
}
