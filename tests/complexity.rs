//! The complexity suite: every reader of attacker-controlled input costs
//! work linear in its size. Each crafted input (the shape that once cost
//! the square of its size) is read at two sizes, ten times apart, and
//! against a plain input of the same size, through the public API.
//!
//! What is compared is counts of work, never wall time, so that a busy
//! machine cannot make a test fail: the steps the crate's own loops count
//! (`test_util::work_steps`: body frames collected, percent escapes,
//! form pairs, multipart framing, encoded words, forwarding headers), and
//! the allocations made and bytes allocated on the reading thread (which
//! a copy per frame or per escape would show). They are the same on every
//! run. Linear work grows about ten times from the small size to the
//! large one; quadratic work grows a hundred times: the bound is 15.
//!
//! One reader's work has no count: `multer`'s own search through the
//! multipart buffer. For it, the multipart test also compares the CPU time
//! of the reading thread (not wall time: time the thread waits for a core
//! does not count), the least of five runs, with generous bounds (30 times
//! for the growth, 40 times a plain input).

use std::time::Duration;

use cmc_webhook::allowlist::IpSet;
use cmc_webhook::client_ip::{client_ip, ForwardedHeader};
use cmc_webhook::test_util::work_steps;
use cmc_webhook::{read_webhook, Header, Policy};

#[path = "common/counting.rs"]
mod counting;
#[path = "common/trickle.rs"]
mod trickle;

const SMALL: usize = 100 * 1024;
const LARGE: usize = 1024 * 1024;

/// The most a count may grow from SMALL to LARGE (linear: about 10).
const GROWTH: f64 = 15.0;

/// The work of one call, counted on this thread.
#[derive(Debug, Clone, Copy)]
struct Work {
    steps: u64,
    allocations: usize,
    bytes: usize,
}

fn work(f: impl FnOnce()) -> Work {
    let before = work_steps();
    let ((), allocations, bytes) = counting::allocated(f);
    Work {
        steps: work_steps() - before,
        allocations,
        bytes,
    }
}

/// Checks that `crafted(size)` costs linear work: the growth of each count
/// from SMALL to LARGE, and its steps and bytes against `plain(LARGE)`
/// (at most `bound` times).
fn assert_linear_within(
    name: &str,
    bound: f64,
    mut crafted: impl FnMut(usize),
    mut plain: impl FnMut(usize),
) {
    let small = work(|| crafted(SMALL));
    let large = work(|| crafted(LARGE));
    let baseline = work(|| plain(LARGE));
    eprintln!("{name}: {small:?} -> {large:?}, plain {baseline:?}");
    // Counts too small to grow with the input (a few allocations) are
    // held to a floor, so that a ratio of small numbers means nothing.
    let counts = [
        (
            "steps",
            small.steps as f64,
            large.steps as f64,
            baseline.steps as f64,
            SMALL as f64,
        ),
        (
            "allocations",
            small.allocations as f64,
            large.allocations as f64,
            baseline.allocations as f64,
            100.0,
        ),
        (
            "bytes allocated",
            small.bytes as f64,
            large.bytes as f64,
            baseline.bytes as f64,
            SMALL as f64,
        ),
    ];
    for (what, small, large, baseline, floor) in counts {
        let growth = large / small.max(floor);
        assert!(
            growth < GROWTH,
            "{name}: ten times the input took {growth:.1}x the {what} ({small} -> {large})"
        );
        if what != "allocations" {
            let against_plain = large / baseline.max(LARGE as f64);
            assert!(
                against_plain < bound,
                "{name}: {against_plain:.1}x the {what} of a plain input of the same size \
                 ({large} against {baseline})"
            );
        }
    }
}

/// [`assert_linear_within`] with the usual bound against a plain input.
fn assert_linear(name: &str, crafted: impl FnMut(usize), plain: impl FnMut(usize)) {
    assert_linear_within(name, 40.0, crafted, plain);
}

/// The CPU time this thread has used (wall time where no such clock is).
fn thread_cpu_time() -> Duration {
    #[cfg(unix)]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid timespec for the call to write.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    }
    #[cfg(not(unix))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed()
    }
}

/// The least CPU time of five runs of `f`.
fn least_cpu_time(mut f: impl FnMut()) -> Duration {
    (0..5)
        .map(|_| {
            let started = thread_cpu_time();
            f();
            thread_cpu_time() - started
        })
        .min()
        .unwrap()
}

/// For work that no count sees: the least CPU time of `crafted` grows
/// less than 30 times from SMALL to LARGE, and stays under 40 times that
/// of `plain(LARGE)`.
fn assert_linear_cpu_time(
    name: &str,
    mut crafted: impl FnMut(usize),
    mut plain: impl FnMut(usize),
) {
    let small = least_cpu_time(|| crafted(SMALL));
    let large = least_cpu_time(|| crafted(LARGE));
    let baseline = least_cpu_time(|| plain(LARGE));
    // Below a clock tick, ratios mean nothing.
    let floor = Duration::from_millis(1);
    let growth = large.as_secs_f64() / small.max(floor).as_secs_f64();
    let against_plain = large.as_secs_f64() / baseline.max(floor).as_secs_f64();
    eprintln!(
        "{name}: CPU {small:?} -> {large:?} ({growth:.1}x), plain {baseline:?} ({against_plain:.1}x)"
    );
    assert!(
        growth < 30.0,
        "{name}: ten times the input took {growth:.1}x the CPU time"
    );
    assert!(
        against_plain < 40.0,
        "{name}: {against_plain:.1}x the CPU time of a plain input of the same size"
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
    // multer's own search through its buffer counts no steps.
    assert_linear_cpu_time(
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
