//! Every metric's value after a scripted sequence of requests, read from a
//! recorder: the layer's requests by outcome and reason, the unlisted
//! clients, the events and mails read, the body bytes and parse times per
//! encoding, and the inbox's rows, repeats, handler runs, retries, dead
//! rows and gauges, on a real SQLite file.
//!
//! The recorder is global to this test binary, so it holds one test.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::post_service;
use axum::Router;
use cmc_webhook::inbox::{Backoff, Inbox, Item};
use cmc_webhook::test_util::{sample_inbound, CmcRequest, WireEncoding};
use cmc_webhook::WebhookLayer;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::ServiceExt;

/// What the recorder held. A snapshot of the debugging recorder drains it
/// (counters and gauges back to 0, histograms emptied): counters and
/// histograms are summed here over snapshots; gauges are read from one
/// snapshot, taken once they have been set.
#[derive(Default)]
struct Seen {
    counters: BTreeMap<String, u64>,
    gauges: BTreeMap<String, f64>,
    histograms: BTreeMap<String, Vec<f64>>,
}

impl Seen {
    fn take(&mut self, snapshotter: &Snapshotter) {
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            match value {
                DebugValue::Counter(n) => *self.counters.entry(name).or_default() += n,
                DebugValue::Gauge(g) => {
                    self.gauges.insert(name, g.into_inner());
                }
                DebugValue::Histogram(values) => self
                    .histograms
                    .entry(name)
                    .or_default()
                    .extend(values.into_iter().map(|v| v.into_inner())),
            }
        }
    }

    fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    fn samples(&self, name: &str) -> &[f64] {
        self.histograms.get(name).map_or(&[], Vec::as_slice)
    }
}

async fn post(app: &Router, request: CmcRequest) -> u16 {
    app.clone()
        .oneshot(request.uri("/mails").into_request().map(Body::new))
        .await
        .unwrap()
        .status()
        .as_u16()
}

const ALLOWED: &str = "203.0.113.5:4000";

fn deliveries(key: &str) -> String {
    format!(
        r#"{{"api_key":"{key}","event_type":"deliveries","server_composition":"pro","event":{{"deliveries":[
        {{"created":"2026-01-01 09:00:00","status":"queued","to":"a@example.jp","messageId":"<1@x>"}},
        {{"created":"2026-01-01 09:00:01","status":"succeeded","to":"a@example.jp","messageId":"<1@x>"}},
        {{"created":"2026-01-01 09:00:02","status":"succeeded","to":"b@example.jp","messageId":"<2@x>"}},
        {{"created":"2026-01-01 09:00:03","status":"expired","to":"c@example.jp","messageId":"<3@x>"}}]}}}}"#
    )
}

const BOUNCE: &str = r#"{"api_key":"k","event_type":"bounces","server_composition":"pro","event":{"bounces":[
    {"created":"2026-01-01 09:00:04","status":"2","to":"gone@example.jp","messageId":"<4@x>"}]}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_after_a_scripted_sequence() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");
    cmc_webhook::describe_metrics();

    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::sqlite(dir.path().join("inbox.sqlite3"))
        .open()
        .await
        .unwrap();
    let layer = WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .api_key("k")
        .build()
        .unwrap();
    let app = Router::new().route("/mails", post_service(inbox.receive()).layer(layer));

    let mut json_bytes = 0;
    let json = |body: String| CmcRequest::raw("application/json", body.into_bytes());

    // Accepted: four deliveries (one of a status this crate does not know),
    // the same four again (repeats), a bounce, and an inbound mail.
    let body = deliveries("k");
    json_bytes += body.len() * 2;
    assert_eq!(
        post(&app, json(body.clone()).peer(ALLOWED.parse().unwrap())).await,
        200
    );
    assert_eq!(
        post(&app, json(body).peer(ALLOWED.parse().unwrap())).await,
        200
    );
    json_bytes += BOUNCE.len();
    assert_eq!(
        post(&app, json(BOUNCE.into()).peer(ALLOWED.parse().unwrap())).await,
        200
    );
    let mut mail = sample_inbound(true);
    mail.api_key = Some("k".into());
    let mail_request = CmcRequest::inbound(&mail, WireEncoding::Multipart);
    let multipart_bytes = mail_request.wire().body.len();
    assert_eq!(
        post(&app, mail_request.peer(ALLOWED.parse().unwrap())).await,
        200
    );

    // Refused by the layer: a stranger (twice, one address), and a GET.
    let stranger = || json(deliveries("k")).peer("198.51.100.7:1".parse().unwrap());
    assert_eq!(post(&app, stranger()).await, 403);
    assert_eq!(post(&app, stranger()).await, 403);
    let get = app
        .clone()
        .oneshot(
            http::Request::get("/mails")
                .extension(std::net::SocketAddr::from(([203, 0, 113, 5], 1)))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    // Refused by the reader: a malformed body, and a wrong key.
    let malformed =
        r#"{"api_key":"k","event_type":"deliveries","event":{"deliveries":[{"created":"later"}]}}"#;
    json_bytes += malformed.len();
    assert_eq!(
        post(&app, json(malformed.into()).peer(ALLOWED.parse().unwrap())).await,
        400
    );
    let wrong_key = deliveries("not-the-key");
    json_bytes += wrong_key.len();
    assert_eq!(
        post(&app, json(wrong_key).peer(ALLOWED.parse().unwrap())).await,
        401
    );

    // The worker: the bounce fails once then succeeds (a retry), the mail
    // fails twice (dead at max_attempts 2), the deliveries succeed.
    let bounce_runs = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let worker = {
        let bounce_runs = bounce_runs.clone();
        let errors = errors.clone();
        inbox
            .worker(move |job| {
                let bounce_runs = bounce_runs.clone();
                let errors = errors.clone();
                async move {
                    match &job.item {
                        Item::Mail(_) => Err("no mailbox configured".to_owned()),
                        Item::Event(e) if e.message_id() == Some("<4@x>") => {
                            if bounce_runs.fetch_add(1, Ordering::SeqCst) == 0 {
                                Err("try again".to_owned())
                            } else {
                                Ok(())
                            }
                        }
                        Item::Event(_) => Ok(()),
                        other => {
                            errors.lock().unwrap().push(format!("{other:?}"));
                            Ok(())
                        }
                    }
                }
            })
            .max_attempts(2)
            .backoff(Backoff::exponential(Duration::from_millis(1)).max(Duration::from_millis(1)))
            .poll_interval(Duration::from_millis(20))
            .gauges_every(Duration::from_millis(20))
            .spawn()
    };

    // Wait until every row is settled (5 events done, the mail dead), then
    // for a few readings of the gauges.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = inbox.counts().await.unwrap();
        if counts.events.done == 5 && counts.mails.dead == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "not settled: {counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut seen = Seen::default();
    seen.take(&snapshotter);
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    assert!(errors.lock().unwrap().is_empty());

    // The layer's requests.
    let expected_requests = [
        (
            "cmc_webhook_requests_total{outcome=accepted,reason=,source=default}",
            4,
        ),
        (
            "cmc_webhook_requests_total{outcome=refused,reason=client_not_allowed,source=default}",
            2,
        ),
        (
            "cmc_webhook_requests_total{outcome=refused,reason=method_not_allowed,source=default}",
            1,
        ),
        (
            "cmc_webhook_requests_total{outcome=refused,reason=malformed_body,source=default}",
            1,
        ),
        (
            "cmc_webhook_requests_total{outcome=refused,reason=bad_api_key,source=default}",
            1,
        ),
        ("cmc_webhook_unlisted_requests_total{}", 2),
        // What was read: each delivery twice (the batch came twice).
        (
            "cmc_webhook_events_total{source=default,status=queued,type=deliveries}",
            2,
        ),
        (
            "cmc_webhook_events_total{source=default,status=succeeded,type=deliveries}",
            4,
        ),
        (
            "cmc_webhook_events_total{source=default,status=other,type=deliveries}",
            2,
        ),
        (
            "cmc_webhook_events_total{source=default,status=2,type=bounces}",
            1,
        ),
        ("cmc_webhook_mails_total{source=default}", 1),
        (
            "cmc_webhook_body_bytes_total{encoding=json}",
            json_bytes as u64,
        ),
        (
            "cmc_webhook_body_bytes_total{encoding=multipart}",
            multipart_bytes as u64,
        ),
        // The inbox.
        (
            "cmc_webhook_inbox_stored_total{kind=event,source=default}",
            5,
        ),
        (
            "cmc_webhook_inbox_repeats_total{kind=event,source=default}",
            4,
        ),
        (
            "cmc_webhook_inbox_stored_total{kind=mail,source=default}",
            1,
        ),
        (
            "cmc_webhook_inbox_handled_total{kind=event,outcome=done}",
            5,
        ),
        (
            "cmc_webhook_inbox_handled_total{kind=event,outcome=failed}",
            1,
        ),
        (
            "cmc_webhook_inbox_handled_total{kind=mail,outcome=failed}",
            2,
        ),
        ("cmc_webhook_inbox_retries_total{kind=event}", 1),
        ("cmc_webhook_inbox_retries_total{kind=mail}", 1),
        ("cmc_webhook_inbox_dead_total{kind=mail}", 1),
    ];
    for (name, value) in expected_requests {
        assert_eq!(seen.counter(name), value, "{name}: {:#?}", seen.counters);
    }
    // No other series of these counters (nothing counted twice, no label
    // from a body).
    let expected: std::collections::BTreeSet<&str> =
        expected_requests.iter().map(|(n, _)| *n).collect();
    let unexpected: Vec<(&String, &u64)> = seen
        .counters
        .iter()
        .filter(|(name, n)| **n > 0 && !expected.contains(name.as_str()))
        .collect();
    assert!(unexpected.is_empty(), "unexpected series: {unexpected:?}");

    // Refused strangers are counted, not listed: no list outside
    // report-only mode.
    assert!(!seen.gauges.contains_key("cmc_webhook_unlisted_clients{}"));
    for (state, events, mails) in [
        ("pending", 0.0, 0.0),
        ("running", 0.0, 0.0),
        ("done", 5.0, 0.0),
        ("dead", 0.0, 1.0),
    ] {
        assert_eq!(
            seen.gauges
                [&format!("cmc_webhook_inbox_rows{{kind=event,source=default,state={state}}}")],
            events
        );
        assert_eq!(
            seen.gauges
                [&format!("cmc_webhook_inbox_rows{{kind=mail,source=default,state={state}}}")],
            mails
        );
    }
    assert_eq!(
        seen.gauges["cmc_webhook_inbox_oldest_pending_seconds{kind=event,source=default}"],
        0.0
    );
    assert_eq!(
        seen.gauges["cmc_webhook_inbox_oldest_pending_seconds{kind=mail,source=default}"],
        0.0
    );

    // Histograms: one parse time per body read (five JSON, one multipart),
    // one handler time per run.
    let json_parses = seen.samples("cmc_webhook_parse_seconds{encoding=json}");
    assert_eq!(json_parses.len(), 5, "{json_parses:?}");
    assert!(json_parses.iter().all(|s| *s > 0.0 && *s < 5.0));
    assert_eq!(
        seen.samples("cmc_webhook_parse_seconds{encoding=multipart}")
            .len(),
        1
    );
    assert_eq!(
        seen.samples("cmc_webhook_inbox_handler_seconds{kind=event,outcome=done}")
            .len(),
        5
    );
    assert_eq!(
        seen.samples("cmc_webhook_inbox_handler_seconds{kind=mail,outcome=failed}")
            .len(),
        2
    );
}
