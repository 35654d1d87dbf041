//! Parsing throughput: this crate beside `serde_json::Value` and a
//! hand-written serde struct, on the same bytes, for each encoding.
//!
//! Run: `cargo bench --all-features --bench parse`

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use cmc_webhook::test_util::{
    encode_events, encode_inbound, sample_events, sample_inbound, WireEncoding,
};
use cmc_webhook::{InboundMail, Webhook};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/shared/");

#[path = "support/baseline.rs"]
mod baseline;
#[path = "support/ready.rs"]
mod support;

use baseline::{BorrowedBatch, BorrowedEvent, OwnedBatch, OwnedEvent};
use support::ready;

/// The `event` field of a form body, decoded by `form_urlencoded`.
fn form_event(body: &[u8]) -> String {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "event")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

/// The `event` part of a multipart body, read by multer.
fn multipart_event(content_type: &str, body: Bytes) -> String {
    let boundary = multer::parse_boundary(content_type).unwrap();
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let run = async move {
        while let Some(field) = multipart.next_field().await.unwrap() {
            if field.name() == Some("event") {
                return field.text().await.unwrap();
            }
        }
        panic!("no event part")
    };
    ready(run)
}

/// The `event` JSON of a body, taken out the way a user would (for form
/// and multipart, decoded); what the baselines parse.
fn event_json(encoding: WireEncoding, content_type: &str, body: &Bytes) -> Bytes {
    match encoding {
        WireEncoding::Json => body.clone(),
        WireEncoding::Form => Bytes::from(form_event(body)),
        _ => Bytes::from(multipart_event(content_type, body.clone())),
    }
}

/// The bytes of every key and string value of an event batch, visited
/// with sonic-rs's lazy iterators (the top level, then `event`, each list
/// and each record).
fn sonic_walk(body: &[u8]) -> usize {
    use sonic_rs::JsonValueTrait;
    let mut n = 0;
    for item in sonic_rs::to_object_iter(body) {
        let (key, value) = item.unwrap();
        if key != "event" {
            n += value.as_str().map_or(0, str::len);
            continue;
        }
        for list in sonic_rs::to_object_iter(value.as_raw_str().as_bytes()) {
            let (_, list) = list.unwrap();
            for record in sonic_rs::to_array_iter(list.as_raw_str().as_bytes()) {
                let record = record.unwrap();
                for field in sonic_rs::to_object_iter(record.as_raw_str().as_bytes()) {
                    let (key, value) = field.unwrap();
                    n += key.len() + value.as_str().map_or(0, str::len);
                }
            }
        }
    }
    n
}

/// The bytes of every string on simd-json's tape of `json`.
fn simd_json_walk(json: &mut [u8]) -> usize {
    let tape = simd_json::to_tape(json).unwrap();
    tape.0
        .iter()
        .map(|node| match node {
            simd_json::Node::String(s) => s.len(),
            _ => 0,
        })
        .sum()
}

/// How many delivery records a baseline reads from `json` with `$reader`'s
/// `from_slice`: into `$batch` (the whole batch) for a JSON body, into
/// `$event` (the `event` field, taken out first) for the others.
macro_rules! deliveries {
    ($reader:ident, $batch:ty, $event:ty, $encoding:expr, $json:expr) => {
        if $encoding == WireEncoding::Json {
            $reader::from_slice::<$batch>($json)
                .unwrap()
                .event
                .deliveries
                .len()
        } else {
            $reader::from_slice::<$event>($json)
                .unwrap()
                .deliveries
                .len()
        }
    };
}

fn events(c: &mut Criterion) {
    for encoding in WireEncoding::ALL {
        let name = format!("events/{encoding:?}").to_lowercase();
        let mut group = c.benchmark_group(name);
        for n in [1usize, 100, 1000] {
            let request = encode_events(&sample_events(n), encoding);
            let (ct, body) = (request.content_type.clone(), request.body.clone());
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_with_input(BenchmarkId::new("cmc_webhook", n), &n, |b, _| {
                b.iter(|| Webhook::parse(black_box(&ct), black_box(body.clone())).unwrap())
            });
            // JSON bodies are parsed whole; form and multipart bodies are
            // decoded first, inside the timed loop, as the user would have to.
            group.bench_with_input(BenchmarkId::new("serde_json_value", n), &n, |b, _| {
                b.iter(|| {
                    let json = event_json(encoding, &ct, black_box(&body));
                    serde_json::from_slice::<serde_json::Value>(&json).unwrap()
                })
            });
            group.bench_with_input(BenchmarkId::new("serde_owned_struct", n), &n, |b, _| {
                b.iter(|| {
                    let json = event_json(encoding, &ct, black_box(&body));
                    deliveries!(serde_json, OwnedBatch, OwnedEvent, encoding, &json)
                })
            });
            group.bench_with_input(BenchmarkId::new("sonic_borrowed_struct", n), &n, |b, _| {
                b.iter(|| {
                    let json = event_json(encoding, &ct, black_box(&body));
                    deliveries!(
                        sonic_rs,
                        BorrowedBatch<'_>,
                        BorrowedEvent<'_>,
                        encoding,
                        &json
                    )
                })
            });
            if encoding == WireEncoding::Json {
                // Lower bounds of a scanner built on another reader's own
                // API: every string of the body visited, nothing built.
                group.bench_with_input(BenchmarkId::new("sonic_lazy_walk", n), &n, |b, _| {
                    b.iter(|| sonic_walk(black_box(&body)))
                });
                group.bench_with_input(BenchmarkId::new("simd_json_tape", n), &n, |b, _| {
                    b.iter(|| {
                        // simd-json parses in place: a copy of the body.
                        let mut json = black_box(&body).to_vec();
                        simd_json_walk(&mut json)
                    })
                });
            }
            group.bench_with_input(BenchmarkId::new("serde_borrowed_struct", n), &n, |b, _| {
                b.iter(|| {
                    let json = event_json(encoding, &ct, black_box(&body));
                    deliveries!(
                        serde_json,
                        BorrowedBatch<'_>,
                        BorrowedEvent<'_>,
                        encoding,
                        &json
                    )
                })
            });
        }
        group.finish();
    }
}

/// The multipart sample mail with one attachment of `size` bytes (none for 0).
fn inbound_multipart(size: usize) -> (String, Bytes) {
    let mut mail = sample_inbound(size > 0);
    if let Some(file) = mail.attachments.first_mut() {
        file.data = Bytes::from((0..size).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>());
    }
    let request = encode_inbound(&mail, WireEncoding::Multipart);
    (request.content_type, request.body)
}

fn inbound(c: &mut Criterion) {
    let mut group = c.benchmark_group("inbound/multipart");
    for (label, size) in [("0MB", 0), ("1MB", 1 << 20), ("10MB", 10 << 20)] {
        let (ct, body) = inbound_multipart(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("cmc_webhook", label), &size, |b, _| {
            b.iter(|| InboundMail::parse(black_box(&ct), black_box(body.clone())).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("multer_bytes", label), &size, |b, _| {
            b.iter(|| {
                let boundary = multer::parse_boundary(&ct).unwrap();
                let body = black_box(body.clone());
                let stream =
                    futures_util::stream::once(
                        async move { Ok::<_, std::convert::Infallible>(body) },
                    );
                let mut multipart = multer::Multipart::new(stream, boundary);
                ready(async move {
                    let mut total = 0;
                    while let Some(field) = multipart.next_field().await.unwrap() {
                        total += field.bytes().await.unwrap().len();
                    }
                    total
                })
            })
        });
    }
    group.finish();

    let json = std::fs::read(format!("{FIXTURES}inbound-json.json")).unwrap();
    let json = Bytes::from(json);
    let mut group = c.benchmark_group("inbound/json");
    group.throughput(Throughput::Bytes(json.len() as u64));
    group.bench_function("cmc_webhook", |b| {
        b.iter(|| InboundMail::parse("application/json", black_box(json.clone())).unwrap())
    });
    group.bench_function("serde_json_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&json)).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40);
    targets = events, inbound
}
criterion_main!(benches);
