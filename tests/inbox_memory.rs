//! Peak memory of a 25 MiB inbound mail stored by the inbox and read back
//! by its worker, measured as the process's peak resident set (VmHWM,
//! reset through /proc/self/clear_refs), so that SQLite's own memory
//! counts too. One test in its own binary: nothing else runs meanwhile.
//!
//! `cargo test --release --all-features --test inbox_memory -- --nocapture`
//! prints the figures.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cmc_webhook::inbox::{Inbox, Item, Job};
use cmc_webhook::test_util::{encode_inbound, sample_inbound, CmcRequest, WireEncoding};
use cmc_webhook::Policy;
use tower::ServiceExt;

const SIZE: usize = 25 << 20;

/// A field of /proc/self/status, in bytes.
fn status(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"));
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// Data that no layer could compress or share: a simple generator.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_25_mib_mail_is_stored_and_read_back_within_three_times_its_size() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let inbox = Inbox::sqlite(dir.path().join("inbox.sqlite3"))
        .open()
        .await
        .unwrap();

    // Warm up every part (pools, threads, caches) with a small mail.
    let small = encode_inbound(&sample_inbound(true), WireEncoding::Multipart);
    let response = inbox
        .receive()
        .oneshot(CmcRequest::body(small).into_request())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let data = Bytes::from(noise(SIZE));
    let mut mail = sample_inbound(true);
    mail.attachments[0].data = data.clone();
    let wire = encode_inbound(&mail, WireEncoding::Multipart);
    let body_len = wire.body.len();
    let key = mail.idempotency_key();
    drop(mail);
    assert!(body_len > SIZE);

    // From here on, the peak: the body is in memory (1x) before it starts.
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak needs Linux");
    let before = status("VmRSS:");

    let mut request = CmcRequest::body(wire).into_request();
    // What WebhookLayer::builder().body_limit(32 MiB) puts there.
    request
        .extensions_mut()
        .insert(Policy::default().body_limit(32 << 20));
    let response = inbox.receive().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let after_store = status("VmHWM:");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let worker = {
        let (seen, data) = (seen.clone(), data.clone());
        inbox
            .worker(move |job: Job| {
                if let Item::Mail(m) = &job.item {
                    let equal = m.attachments.first().is_some_and(|a| a.data == data);
                    seen.lock()
                        .unwrap()
                        .push((job.key, m.attachments.len(), equal));
                }
                async { Ok::<(), String>(()) }
            })
            .spawn()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker read both mails back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
    let peak = status("VmHWM:");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[1], (key, 1, true), "the big mail read back equal");

    // The body was resident before (and the test's own copy of the
    // attachment, which is not counted): the body once, and what came on
    // top.
    let baseline = before.saturating_sub(body_len);
    let times = |rss: usize| rss.saturating_sub(baseline) as f64 / body_len as f64;
    eprintln!(
        "25 MiB attachment, body {:.1} MiB: before {:.1} MiB resident (body and attachment \
         copy included), peak while storing {:.1} MiB, peak with the read back {:.1} MiB: \
         {:.2}x the body (stored) and {:.2}x (read back), the body counted once",
        body_len as f64 / 1048576.0,
        before as f64 / 1048576.0,
        after_store as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        times(after_store),
        times(peak),
    );
    assert!(times(peak) < 3.0, "peak {:.2}x the body", times(peak));
}
