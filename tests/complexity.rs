//! The complexity suite: every reader of attacker-controlled input costs
//! time linear in its size. Each crafted input (the shape that once cost
//! the square of its size) is timed at two sizes, ten times apart, and
//! against a plain input of the same size.
//!
//! Linear work grows about ten times from the small size to the large one;
//! quadratic work grows a hundred times. The bounds are generous (30 times,
//! and 40 times the plain input) so that a loaded machine cannot make them
//! flake, and each time is the best of several runs. The crate's own
//! decoders are also checked by counting their steps, in the unit tests
//! (`work::measure`); these tests cover the whole path through the public
//! API, including `multer`, which only a clock can measure.

use std::time::{Duration, Instant};

use cmc_webhook::allowlist::IpSet;
use cmc_webhook::client_ip::{client_ip, ForwardedHeader};
use cmc_webhook::{read_webhook, Header, Policy};

#[path = "common/trickle.rs"]
mod trickle;

const SMALL: usize = 100 * 1024;
const LARGE: usize = 1024 * 1024;

/// The best of five runs of `f`.
fn best(mut f: impl FnMut()) -> Duration {
    (0..5)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .min()
        .unwrap()
}

/// Checks that `crafted(size)` costs linear time: its growth from SMALL to
/// LARGE, and its cost against `plain(LARGE)`.
fn assert_linear(name: &str, crafted: impl FnMut(usize), plain: impl FnMut(usize)) {
    assert_linear_within(name, 40.0, crafted, plain);
}

/// [`assert_linear`] with another bound against the plain input, for
/// inputs whose fixed cost per piece is high in a debug build.
fn assert_linear_within(
    name: &str,
    bound: f64,
    mut crafted: impl FnMut(usize),
    mut plain: impl FnMut(usize),
) {
    let small = best(|| crafted(SMALL));
    let large = best(|| crafted(LARGE));
    let baseline = best(|| plain(LARGE));
    // Below the clock's useful resolution, ratios mean nothing.
    let floor = Duration::from_micros(200);
    let growth = large.as_secs_f64() / small.max(floor).as_secs_f64();
    let against_plain = large.as_secs_f64() / baseline.max(floor).as_secs_f64();
    eprintln!(
        "{name}: {small:?} -> {large:?} ({growth:.1}x), plain {baseline:?} ({against_plain:.1}x)"
    );
    assert!(
        growth < 30.0,
        "{name}: ten times the input took {growth:.1}x the time"
    );
    assert!(
        against_plain < bound,
        "{name}: {against_plain:.1}x the time of a plain input of the same size"
    );
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// Reads `body` as a webhook, sent in frames of `frame` bytes.
fn read(content_type: &str, body: Vec<u8>, frame: usize) -> Result<(), cmc_webhook::Rejection> {
    let request = trickle::request(
        content_type,
        body,
        frame,
        Policy::default().body_limit(64 << 20),
    );
    block_on(read_webhook(request)).map(drop)
}

fn repeat_to(unit: &str, size: usize) -> String {
    unit.repeat(size / unit.len())
}

#[test]
fn encoded_words_in_header_values() {
    for unit in ["=?x?y", "=?UTF-8?B?", "=?a?Q?=", "=?=?"] {
        assert_linear(
            &format!("decoded_value of `{unit}`..."),
            |n| {
                let _ = Header::new("Subject", repeat_to(unit, n)).decoded_value();
            },
            |n| {
                let _ = Header::new("Subject", repeat_to("=?UTF-8?Q?abc?= ", n)).decoded_value();
            },
        );
    }
}

#[test]
fn percent_escapes_in_form_bodies() {
    let form = |value: String| {
        format!("event_type=bounces&server_composition=pro&event=%7B%22bounces%22%3A%5B%5D%7D&note={value}")
            .into_bytes()
    };
    assert_linear(
        "form value of `%41`...",
        |n| {
            read(
                "application/x-www-form-urlencoded",
                form(repeat_to("%41", n)),
                64 << 10,
            )
            .unwrap()
        },
        |n| {
            read(
                "application/x-www-form-urlencoded",
                form(repeat_to("A", n)),
                64 << 10,
            )
            .unwrap()
        },
    );
}

#[test]
fn json_bodies_in_one_byte_frames() {
    let json = |n: usize| {
        format!(
            r#"{{"event_type":"bounces","server_composition":"pro","event":{{"bounces":[]}},"note":"{}"}}"#,
            "a".repeat(n)
        )
        .into_bytes()
    };
    // Each frame has a fixed cost: a million of them cost more than sixteen,
    // but no more per byte at a million than at a hundred thousand.
    assert_linear_within(
        "JSON in 1-byte frames",
        200.0,
        |n| read("application/json", json(n), 1).unwrap(),
        |n| read("application/json", json(n), 64 << 10).unwrap(),
    );
}

#[test]
fn multipart_header_blocks_in_small_pieces() {
    // Parts whose header blocks are just under the cap (16 KiB), sent in
    // 64-byte pieces: multer searched its whole buffer again for each.
    let parts = |n: usize| {
        let mut body = String::new();
        for i in 0..(n / (15 * 1024)).max(1) {
            body.push_str(&format!(
                "--b\r\nContent-Disposition: form-data; name=\"f{i}\"\r\nX-Pad: {}\r\n\r\nv\r\n",
                "p".repeat(15 * 1024)
            ));
        }
        (body + "--b--\r\n").into_bytes()
    };
    let ct = "multipart/form-data; boundary=b";
    assert_linear(
        "multipart header blocks in 64-byte pieces",
        |n| {
            let _ = read(ct, parts(n), 64);
        },
        |n| {
            let _ = read(ct, parts(n), 64 << 10);
        },
    );
    // A header block with no end is cut off at the cap, whatever follows.
    let endless = |n: usize| {
        let mut body = b"--b\r\nX: ".to_vec();
        body.resize(n, b'a');
        body
    };
    assert_linear(
        "an endless multipart header block in 4 KiB pieces",
        |n| assert_eq!(read(ct, endless(n), 4096).unwrap_err().status(), 413),
        |n| {
            let _ = read(ct, parts(n), 4096);
        },
    );
}

#[test]
fn forwarding_headers_with_quoted_values() {
    let trusted: IpSet = "10.0.0.0/8".parse().unwrap();
    let walk = |header: ForwardedHeader, value: String| {
        let mut headers = http::HeaderMap::new();
        headers.insert(header.name(), value.parse().unwrap());
        client_ip("10.0.0.1".parse().unwrap(), &headers, &trusted, header).unwrap()
    };
    assert_linear(
        "Forwarded with quoted commas",
        |n| {
            let value = repeat_to(r#"for=10.0.0.1;by="a,b;c", "#, n) + "for=10.0.0.2";
            assert_eq!(
                walk(ForwardedHeader::Forwarded, value),
                std::net::IpAddr::from([10, 0, 0, 1])
            );
        },
        |n| {
            let value = repeat_to("10.0.0.1, ", n) + "10.0.0.2";
            assert_eq!(
                walk(ForwardedHeader::XForwardedFor, value),
                std::net::IpAddr::from([10, 0, 0, 1])
            );
        },
    );
}
