//! Measures what crafted bodies cost to read: the time and the peak of
//! live heap memory (counted by a global allocator), against the body's
//! size. These are the inputs of the hardening review: each once cost far
//! more than its size. The figures in the security notes come from here.
//!
//! ```text
//! cargo run --release --features test-util --example crafted            # every case
//! cargo run --release --features test-util --example crafted -- form    # cases whose name contains "form"
//! ```
//!
//! It uses only the public reading API (`read_webhook` with a `Policy`,
//! `Header::decoded_value`), so that it runs unchanged against older
//! versions of the crate too.

use std::time::{Duration, Instant};

use cmc_webhook::{read_webhook, Header, Policy};

#[path = "../tests/common/counting.rs"]
mod counting;
#[path = "../tests/common/trickle.rs"]
mod trickle;

const MIB: usize = 1 << 20;

/// One crafted input: how it is read.
enum Input {
    /// A body read by `read_webhook`, sent in frames of `frame` bytes.
    Body {
        content_type: String,
        body: Vec<u8>,
        frame: usize,
    },
    /// A header value decoded with `Header::decoded_value`.
    HeaderValue(String),
}

struct Case {
    name: &'static str,
    what: &'static str,
    input: Input,
}

fn repeat_to(unit: &str, size: usize) -> String {
    unit.repeat(size / unit.len())
}

fn cases() -> Vec<Case> {
    let events = |event: &str| {
        format!(
            r#"{{"event_type":"blocks","server_composition":"pro","event":{{"blocks":[{event}]}}}}"#
        )
    };
    let mut cases = vec![
        Case {
            name: "rfc2047-header-value",
            what: "a header value of 320 KB of unclosed `=?x?y` encoded words",
            input: Input::HeaderValue(repeat_to("=?x?y", 320 * 1024)),
        },
        Case {
            name: "rfc2047-filename",
            what: "an attachment whose file name is 320 KB of `=?x?y`",
            input: {
                let name = repeat_to("=?x?y", 320 * 1024);
                let body = format!(
                    "--b\r\nContent-Disposition: form-data; name=\"attachment1\"; filename=\"{name}\"\r\n\r\nx\r\n--b--\r\n"
                );
                Input::Body {
                    content_type: "multipart/form-data; boundary=b".into(),
                    body: body.into_bytes(),
                    frame: 64 * 1024,
                }
            },
        },
        Case {
            name: "json-empty-records",
            what: "25 MiB of `{}` records in a `blocks` batch",
            input: Input::Body {
                content_type: "application/json".into(),
                body: {
                    let records = "{},".repeat(25 * MIB / 3);
                    events(&records[..records.len() - 1]).into_bytes()
                },
                frame: 64 * 1024,
            },
        },
        Case {
            name: "json-extra-array",
            what: "an unknown top-level field holding a 25 MiB array of zeros",
            input: Input::Body {
                content_type: "application/json".into(),
                body: {
                    let zeros = "0,".repeat(25 * MIB / 2);
                    format!(
                        r#"{{"event_type":"bounces","server_composition":"pro","event":{{"bounces":[]}},"x":[{}]}}"#,
                        &zeros[..zeros.len() - 1]
                    )
                    .into_bytes()
                },
                frame: 64 * 1024,
            },
        },
        Case {
            name: "form-tiny-fields",
            what: "25 MiB of distinct empty form fields (`a1=&a2=&...`)",
            input: Input::Body {
                content_type: "application/x-www-form-urlencoded".into(),
                body: {
                    let mut body = String::from("event_type=bounces&server_composition=pro&event=%7B%22bounces%22%3A%5B%5D%7D");
                    let mut i = 0u64;
                    while body.len() < 25 * MIB {
                        body.push_str(&format!("&a{i}="));
                        i += 1;
                    }
                    body.into_bytes()
                },
                frame: 64 * 1024,
            },
        },
    ];
    let big_string = {
        let text = "a".repeat(25 * MIB);
        format!(
            r#"{{"event_type":"bounces","server_composition":"pro","event":{{"bounces":[]}},"note":"{text}"}}"#
        )
        .into_bytes()
    };
    for frame in [64 * 1024, 1] {
        cases.push(Case {
            name: if frame == 1 {
                "json-1-byte-frames"
            } else {
                "json-64k-frames"
            },
            what: if frame == 1 {
                "a 25 MiB JSON body sent in 1-byte chunked frames"
            } else {
                "the same body in 64 KiB frames, for comparison"
            },
            input: Input::Body {
                content_type: "application/json".into(),
                body: big_string.clone(),
                frame,
            },
        });
    }
    let header_block = {
        let mut body = b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Long: ".to_vec();
        body.resize(8 * MIB, b'a');
        body
    };
    cases.push(Case {
        name: "multipart-header-block",
        what: "an 8 MB multipart header block without a blank line, in 4 KB pieces",
        input: Input::Body {
            content_type: "multipart/form-data; boundary=b".into(),
            body: header_block,
            frame: 4 * 1024,
        },
    });
    cases.push(Case {
        name: "multipart-many-headers",
        what: "512 parts, each with a 15 KiB header block, in 64-byte pieces",
        input: Input::Body {
            content_type: "multipart/form-data; boundary=b".into(),
            body: {
                let mut body = String::new();
                for i in 0..512 {
                    body.push_str(&format!(
                        "--b\r\nContent-Disposition: form-data; name=\"f{i}\"\r\nX-Pad: {}\r\n\r\nv\r\n",
                        "p".repeat(15 * 1024)
                    ));
                }
                body.push_str("--b--\r\n");
                body.into_bytes()
            },
            frame: 64,
        },
    });
    cases
}

async fn run(input: Input) -> String {
    match input {
        Input::HeaderValue(value) => {
            let header = Header::new("Subject", value);
            format!("decoded to {} bytes", header.decoded_value().len())
        }
        Input::Body {
            content_type,
            body,
            frame,
        } => {
            // Frames arrive one at a time, cut from the body as a server
            // cuts them from its read buffer.
            let request = trickle::request(
                &content_type,
                body,
                frame,
                Policy::default().body_limit(64 * MIB),
            );
            match read_webhook(request).await {
                Ok(_) => "accepted".to_owned(),
                Err(e) => format!("{} {}", e.status().as_u16(), e.detail().unwrap_or("")),
            }
        }
    }
}

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    println!(
        "| case | input | body | time | peak heap beyond the body | ratio to the body | outcome |"
    );
    println!("|---|---|---:|---:|---:|---:|---|");
    for case in cases().into_iter().filter(|c| c.name.contains(&filter)) {
        let size = match &case.input {
            Input::Body { body, .. } => body.len(),
            Input::HeaderValue(v) => v.len(),
        };
        let started = Instant::now();
        // The input is allocated before the measure begins: the peak is
        // what reading it cost on top of it.
        let (outcome, _, peak) = counting::measure(|| runtime.block_on(run(case.input)));
        let elapsed = started.elapsed();
        let mut outcome: String = outcome.chars().take(90).collect();
        outcome = outcome.replace('|', "/");
        println!(
            "| {} | {} | {} | {} | {} | {:.1}x | {} |",
            case.name,
            case.what,
            bytes(size),
            time(elapsed),
            bytes(peak),
            peak as f64 / size as f64,
            outcome
        );
    }
}

fn bytes(n: usize) -> String {
    if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else {
        format!("{:.0} KiB", n as f64 / 1024.0)
    }
}

fn time(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}
