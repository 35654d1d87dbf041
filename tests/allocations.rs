//! Allocations per record and peak memory, counted by a global allocator
//! (per thread, so that tests running in parallel do not mix their
//! counts). These are counts, not timings: they are the same on every run.
//!
//! `cargo test --release --all-features --test allocations -- --nocapture`
//! prints the figures.

use bytes::Bytes;
use cmc_webhook::test_util::{
    encode_events, encode_inbound, sample_events, sample_inbound, WireEncoding,
};
use cmc_webhook::Webhook;

#[path = "common/counting.rs"]
mod counting;

use counting::measure;

fn per_record(encoding: WireEncoding, n: usize) -> f64 {
    let request = encode_events(&sample_events(n), encoding);
    let (ct, body) = (request.content_type, request.body);
    let (parsed, allocations, _) = measure(|| Webhook::parse(&ct, body.clone()).unwrap());
    let Webhook::Events(batch) = &parsed else {
        panic!("an event batch")
    };
    assert_eq!(batch.events.len(), n);
    let per = allocations as f64 / n as f64;
    eprintln!("{encoding:?} {n:>5} records: {allocations:>5} allocations, {per:.2} per record");
    per
}

#[path = "../benches/support/baseline.rs"]
mod baseline;

#[test]
fn an_owned_serde_struct_for_comparison() {
    let body = encode_events(&sample_events(100), WireEncoding::Json).body;
    let (parsed, allocations, _) =
        measure(|| serde_json::from_slice::<baseline::OwnedBatch>(&body).unwrap());
    assert_eq!(parsed.event.deliveries.len(), 100);
    eprintln!(
        "owned serde struct, 100 records: {allocations} allocations, {:.2} per record",
        allocations as f64 / 100.0
    );
    // Every non-empty field is a String of its own.
    assert!(allocations >= 700, "{allocations}");
}

#[test]
fn json_batches_allocate_at_most_three_times_per_delivery_record() {
    for n in [100, 1000] {
        let per = per_record(WireEncoding::Json, n);
        assert!(per <= 3.0, "{per} allocations per record on the JSON path");
    }
}

#[test]
fn form_and_multipart_batches_allocation_counts() {
    // Reported, and bounded loosely: these paths copy the decoded `event`
    // JSON once, and the escaped Message-IDs (`\u003C`) need their own text.
    for encoding in [WireEncoding::Form, WireEncoding::Multipart] {
        for n in [100, 1000] {
            let per = per_record(encoding, n);
            assert!(per <= 4.0, "{per} allocations per record for {encoding:?}");
        }
    }
}

#[test]
fn a_ten_megabyte_attachment_peaks_below_two_and_a_half_times_the_body() {
    let mut mail = sample_inbound(true);
    mail.attachments[0].data = Bytes::from(vec![0x5a; 10 << 20]);
    let request = encode_inbound(&mail, WireEncoding::Multipart);
    let (ct, body) = (request.content_type, request.body);
    let len = body.len();
    // The body is moved in, as a server hands it over: its bytes count as
    // live at the start, and whatever the parse keeps or copies on top of
    // them is the peak above that.
    let (parsed, allocations, peak_above) = measure(move || Webhook::parse(&ct, body).unwrap());
    let Webhook::Inbound(parsed) = &parsed else {
        panic!("an inbound mail")
    };
    assert_eq!(parsed.attachments[0].data.len(), 10 << 20);
    let peak = (len + peak_above) as f64 / len as f64;
    eprintln!(
        "10 MiB attachment: body {len} bytes, {allocations} allocations, peak {peak:.2}x the body"
    );
    assert!(peak < 2.5, "peak memory {peak:.2}x the body");
}
