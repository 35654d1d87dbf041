//! The memory suite: no body within the limits makes the reader hold more
//! than a few times the body's size. Each crafted body (a shape that once
//! cost 10 to 120 times its size) is read through `read_webhook` while a
//! counting allocator records the peak of live heap memory.
//!
//! The bound, with the body itself counted: **peak <= 4 x body + C**. The
//! body is held by the caller (as a server holds what it read), the
//! collected copy takes up to twice its size while it grows, and the model
//! holds slices of it. The constant C is what the caps allow whatever the
//! body's size: 10 000 events and 10 000 headers (each vector up to twice
//! its length while it grows), plus 1 MiB for the fixed cost of a parse.
//! It is about 9 MiB: a two-byte `{}` record becomes an event of a few
//! hundred bytes, and only the record cap bounds how many there are.
//!
//! The peak is counted, byte for byte, on the reading thread (the reader
//! runs on a current-thread runtime): the same on every run, however busy
//! the machine, so these tests cannot flake under load.

use cmc_webhook::{read_webhook, Policy};

#[path = "common/counting.rs"]
mod counting;
#[path = "common/trickle.rs"]
mod trickle;

const MIB: usize = 1 << 20;
const K: usize = 4;

/// What the default caps allow whatever the body's size (see the module docs).
fn constant() -> usize {
    let per_record = std::mem::size_of::<cmc_webhook::Event>();
    let per_header = std::mem::size_of::<cmc_webhook::Header>();
    MIB + 2 * 10_000 * (per_record + per_header)
}

/// Reads `body` (sent in frames of `frame` bytes) on this thread and
/// checks the peak: the body's own bytes plus everything allocated while
/// reading it. Returns the HTTP status of the outcome (200 when accepted).
fn peak_within_bound(name: &str, content_type: &str, body: Vec<u8>, frame: usize) -> u16 {
    let size = body.len();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let request = trickle::request(
        content_type,
        body,
        frame,
        Policy::default().body_limit(64 * MIB),
    );
    let (status, _, above) = counting::measure(|| match runtime.block_on(read_webhook(request)) {
        Ok(_) => 200,
        Err(e) => e.status().as_u16(),
    });
    // The body was allocated before the measure began: count it once.
    let peak = size + above;
    let ratio = peak as f64 / size as f64;
    eprintln!("{name}: {size} bytes, peak {peak} ({ratio:.2}x), status {status}");
    let c = constant();
    assert!(
        peak <= K * size + c,
        "{name}: peak {peak} bytes is {ratio:.2}x the body of {size} (bound {K}x + {c})"
    );
    status
}

fn blocks(records: &str) -> Vec<u8> {
    format!(
        r#"{{"event_type":"blocks","server_composition":"pro","event":{{"blocks":[{records}]}}}}"#
    )
    .into_bytes()
}

#[test]
fn empty_records_of_an_unknown_type_or_blocks() {
    let records = "{},".repeat(8 * MIB / 3);
    let body = blocks(&records[..records.len() - 1]);
    assert_eq!(
        peak_within_bound("8 MiB of {} blocks", "application/json", body, 64 << 10),
        413
    );
    // Within the record cap, they are accepted, and still bounded.
    let records = "{},".repeat(9_999);
    let body = blocks(&records[..records.len() - 1]);
    assert_eq!(
        peak_within_bound("9 999 {} blocks", "application/json", body, 64 << 10),
        200
    );
    let unknown = format!(
        r#"{{"event_type":"x","server_composition":"pro","event":{{"x":[{}{{}}]}}}}"#,
        "{},".repeat(9_999)
    );
    assert_eq!(
        peak_within_bound(
            "10 000 {} unknown records",
            "application/json",
            unknown.into_bytes(),
            64 << 10
        ),
        200
    );
}

#[test]
fn small_delivery_records_up_to_the_cap() {
    // The smallest valid delivery record, 10 000 times: each event is far
    // larger than its 47 bytes of JSON, so the cap is what bounds them.
    let record = r#"{"created":"2023-01-25 14:03:06","status":"x"},"#;
    let records = record.repeat(10_000);
    let body = format!(
        r#"{{"event_type":"deliveries","server_composition":"pro","event":{{"deliveries":[{}]}}}}"#,
        &records[..records.len() - 1]
    );
    assert_eq!(
        peak_within_bound(
            "10 000 minimal deliveries",
            "application/json",
            body.into_bytes(),
            64 << 10
        ),
        200
    );
}

#[test]
fn an_unknown_field_holding_a_huge_array() {
    let zeros = "0,".repeat(8 * MIB / 2);
    for nested in [
        zeros[..zeros.len() - 1].to_owned(),
        "[],".repeat(8 * MIB / 3) + "[]",
    ] {
        let body = format!(
            r#"{{"event_type":"bounces","server_composition":"pro","event":{{"bounces":[]}},"x":[{nested}]}}"#
        );
        assert_eq!(
            peak_within_bound(
                "an 8 MiB unknown array",
                "application/json",
                body.into_bytes(),
                64 << 10
            ),
            200
        );
    }
    // The same array inside a record's unknown field.
    let body = format!(
        r#"{{"event_type":"deliveries","server_composition":"pro","event":{{"deliveries":[{{"created":"2023-01-25 14:03:06","status":"queued","x":[{}]}}]}}}}"#,
        &zeros[..zeros.len() - 1]
    );
    assert_eq!(
        peak_within_bound(
            "an 8 MiB array in a record",
            "application/json",
            body.into_bytes(),
            64 << 10
        ),
        200
    );
}

#[test]
fn form_bodies_with_millions_of_tiny_fields() {
    let mut body = String::from(
        "event_type=bounces&server_composition=pro&event=%7B%22bounces%22%3A%5B%5D%7D",
    );
    let mut i = 0u64;
    while body.len() < 8 * MIB {
        body.push_str(&format!("&a{i}="));
        i += 1;
    }
    let form = "application/x-www-form-urlencoded";
    assert_eq!(
        peak_within_bound(
            "8 MiB of tiny form fields",
            form,
            body.into_bytes(),
            64 << 10
        ),
        413
    );
    // Empty pairs cost nothing at all.
    let body = "event_type=bounces&server_composition=pro&event=%7B%22bounces%22%3A%5B%5D%7D"
        .to_owned()
        + &"&".repeat(8 * MIB);
    assert_eq!(
        peak_within_bound(
            "8 MiB of empty form pairs",
            form,
            body.into_bytes(),
            64 << 10
        ),
        200
    );
}

#[test]
fn bodies_sent_in_one_byte_frames() {
    let json = format!(
        r#"{{"event_type":"bounces","server_composition":"pro","event":{{"bounces":[]}},"note":"{}"}}"#,
        "a".repeat(MIB)
    );
    assert_eq!(
        peak_within_bound(
            "1 MiB of JSON in 1-byte frames",
            "application/json",
            json.into_bytes(),
            1
        ),
        200
    );
    let form = format!(
        "event_type=bounces&server_composition=pro&event=%7B%22bounces%22%3A%5B%5D%7D&note={}",
        "a".repeat(MIB)
    );
    assert_eq!(
        peak_within_bound(
            "1 MiB of form in 1-byte frames",
            "application/x-www-form-urlencoded",
            form.into_bytes(),
            1
        ),
        200
    );
}

#[test]
fn inbound_mails_with_many_headers_or_parts() {
    // 8 MiB of minimal header objects: capped at 10 000 headers.
    let headers = r#"{"name":"a"},"#.repeat(8 * MIB / 13);
    let body = format!(
        r#"{{"server_composition":"pro","filter":"f","envelope-from":"a@x","envelope-to":"b@y","headers":[{}]}}"#,
        &headers[..headers.len() - 1]
    );
    assert_eq!(
        peak_within_bound(
            "8 MiB of tiny headers",
            "application/json",
            body.into_bytes(),
            64 << 10
        ),
        413
    );
    // A multipart mail of 500 small attachments in small pieces.
    let mut body = String::new();
    for (name, value) in [
        ("server_composition", "pro"),
        ("filter", "f"),
        ("envelope-from", "a@x"),
        ("envelope-to", "b@y"),
        ("headers", "[]"),
    ] {
        body.push_str(&format!(
            "--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    for i in 1..=500 {
        body.push_str(&format!(
            "--b\r\nContent-Disposition: form-data; name=\"attachment{i}\"; filename=\"f{i}.txt\"\r\n\r\n{}\r\n",
            "d".repeat(2048)
        ));
    }
    body.push_str("--b--\r\n");
    assert_eq!(
        peak_within_bound(
            "500 attachments in 100-byte pieces",
            "multipart/form-data; boundary=b",
            body.into_bytes(),
            100
        ),
        200
    );
}
