//! Peak memory of big inbound mails and events stored by the inbox and
//! read back by its worker. A 25 MiB attachment is measured as the
//! process's peak resident set (VmHWM, reset through
//! /proc/self/clear_refs); 8 MiB text, HTML and subject fields, and an
//! event's 4 MiB subject, as the peak of live heap bytes counted by the
//! allocator plus SQLite's own peak (its memory statistics), so that
//! memory the C allocator keeps after a free cannot hide a copy. The
//! tests take a lock: one runs at a time.
//!
//! `cargo test --release --all-features --test inbox_memory -- --nocapture`
//! prints the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cmc_webhook::inbox::{Inbox, Item, Job};
use cmc_webhook::test_util::{
    encode_events, encode_inbound, sample_events, sample_inbound, CmcRequest, WireBody,
    WireEncoding,
};
use cmc_webhook::{Event, Policy, Text};
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
    let _one = ONE_AT_A_TIME.lock().await;
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

/// Text that no layer could compress or share, and that JSON writes as it
/// is (letters and digits only).
fn letters(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    noise(len)
        .into_iter()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// The tests below measure the whole process: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The stores to measure on: a SQLite file, and PostgreSQL when
/// `CMC_POSTGRES_URL` names a server.
#[cfg_attr(not(feature = "postgres"), allow(unused_mut))]
async fn memory_stores(dir: &std::path::Path, test: &str) -> Vec<String> {
    let mut urls = vec![format!(
        "sqlite:{}",
        dir.join(format!("{test}.sqlite3")).display()
    )];
    #[cfg(feature = "postgres")]
    if let Ok(admin) = std::env::var("CMC_POSTGRES_URL") {
        use sqlx::Connection;
        let name = format!("cmc_memory_{test}");
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(&*sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        urls.push(format!("{}/{name}", admin.rsplit_once('/').unwrap().0));
    } else {
        eprintln!("{test}: PostgreSQL SKIPPED (CMC_POSTGRES_URL is not set)");
    }
    urls
}

/// Live heap bytes of the whole process (every thread), and their peak
/// since the last reset: counted by the allocator, so that memory freed
/// before and kept by the C allocator cannot hide a copy.
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

struct Counting;

fn grow(by: isize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        grow(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as a new block and the old one freed: a copy holds both
        // for a moment.
        grow(new_size as isize);
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        grow(-(layout.size() as isize));
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// SQLite's own memory (it allocates through the C allocator, which the
/// counter above does not see): in use now, and its peak since the last
/// call (which resets it).
fn sqlite_memory() -> (i64, i64) {
    // SAFETY: both only read (and reset) SQLite's memory statistics.
    unsafe {
        (
            rusqlite::ffi::sqlite3_memory_used(),
            rusqlite::ffi::sqlite3_memory_highwater(1),
        )
    }
}

/// Receives `wire` (its body in memory, counted once) into the inbox at
/// `url`, has a worker read it back and `check` the item it is handed,
/// and returns the peaks of the process's memory (the heap's live bytes
/// and SQLite's) above what was in use before, the body counted, as
/// multiples of `size` (the big field's bytes): while storing, and with
/// the read back.
async fn through_the_store(
    url: &str,
    wire: WireBody,
    size: usize,
    check: impl Fn(&Item) -> bool + Send + Sync + 'static,
) -> (f64, f64) {
    let inbox = Inbox::open(url).await.unwrap();
    // Warm up every part (pools, threads, caches) with a small mail.
    let small = encode_inbound(&sample_inbound(true), WireEncoding::Multipart);
    let response = inbox
        .receive()
        .oneshot(CmcRequest::body(small).into_request())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body_len = wire.body.len();
    assert!(body_len >= size);
    let mut request = CmcRequest::body(wire).into_request();
    request
        .extensions_mut()
        .insert(Policy::default().body_limit(32 << 20));

    // From here on, the peaks: the body is in memory (1x) before it starts.
    let live = LIVE.load(Ordering::SeqCst);
    PEAK.store(live, Ordering::SeqCst);
    let (sqlite_before, _) = sqlite_memory();
    let above = |heap_peak: isize, sqlite_peak: i64| {
        let heap = (heap_peak - live).max(0) as usize + body_len;
        let sqlite = (sqlite_peak - sqlite_before).max(0) as usize;
        (heap + sqlite) as f64 / size as f64
    };

    let response = inbox.receive().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let stored = above(PEAK.load(Ordering::SeqCst), sqlite_memory().1);
    let heap_stored = PEAK.load(Ordering::SeqCst);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let worker = {
        let seen = seen.clone();
        inbox
            .worker(move |job: Job| {
                seen.lock().unwrap().push(check(&job.item));
                async { Ok::<(), String>(()) }
            })
            .spawn()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker read both webhooks back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown(Duration::from_secs(10)).await.unwrap();
    let (_, sqlite_read) = sqlite_memory();
    let read = above(PEAK.load(Ordering::SeqCst), sqlite_read).max(stored);
    eprintln!(
        "  heap peak {:.1} MiB while storing, {:.1} MiB in all; SQLite's peak with the read back {:.1} MiB",
        (heap_stored - live) as f64 / 1048576.0,
        (PEAK.load(Ordering::SeqCst) - live) as f64 / 1048576.0,
        (sqlite_read - sqlite_before) as f64 / 1048576.0,
    );
    inbox.close().await;
    // The small mail and the big webhook, in either order (they run side
    // by side).
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen.contains(&true), "the big field read back equal");
    (stored, read)
}

/// An inbound mail in multipart whose `field` (text, html or subject)
/// holds 8 MiB, through every store: within 4x its size.
async fn big_mail_field(test: &str, field: &'static str) {
    let _one = ONE_AT_A_TIME.lock().await;
    const SIZE: usize = 8 << 20;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for url in memory_stores(dir.path(), test).await {
        let big = Text::from(letters(SIZE));
        let mut mail = sample_inbound(false);
        match field {
            "text" => mail.text = Some(big.clone()),
            "html" => mail.html = Some(big.clone()),
            _ => mail.subject = big.clone(),
        }
        let wire = encode_inbound(&mail, WireEncoding::Multipart);
        drop(mail);
        let (stored, read) = through_the_store(&url, wire, SIZE, move |item| match item {
            Item::Mail(m) => match field {
                "text" => m.text.as_ref() == Some(&big),
                "html" => m.html.as_ref() == Some(&big),
                _ => m.subject == big,
            },
            _ => false,
        })
        .await;
        let backend = url.split(':').next().unwrap();
        eprintln!(
            "8 MiB {field} in a multipart mail ({backend}): peak {stored:.2}x while storing, \
             {read:.2}x with the read back"
        );
        assert!(
            read < 4.0,
            "{backend}: 8 MiB {field}: peak {read:.2}x its size"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_mib_text_is_stored_and_read_back_within_four_times_its_size() {
    big_mail_field("big_text", "text").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_mib_html_is_stored_and_read_back_within_four_times_its_size() {
    big_mail_field("big_html", "html").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8_mib_subject_is_stored_and_read_back_within_four_times_its_size() {
    big_mail_field("big_subject", "subject").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_a_4_mib_subject_is_stored_and_read_back_within_four_times_its_size() {
    let _one = ONE_AT_A_TIME.lock().await;
    const SIZE: usize = 4 << 20;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for url in memory_stores(dir.path(), "big_event_subject").await {
        let big = Text::from(letters(SIZE));
        let mut batch = sample_events(1);
        match &mut batch.events[0] {
            Event::Delivery(d) => d.subject = big.clone(),
            other => panic!("a delivery, not {other:?}"),
        }
        let wire = encode_events(&batch, WireEncoding::Json);
        drop(batch);
        let (stored, read) = through_the_store(
            &url,
            wire,
            SIZE,
            move |item| matches!(item, Item::Event(Event::Delivery(d)) if d.subject == big),
        )
        .await;
        let backend = url.split(':').next().unwrap();
        eprintln!(
            "an event with a 4 MiB subject ({backend}): peak {stored:.2}x while storing, \
             {read:.2}x with the read back"
        );
        assert!(
            read < 4.0,
            "{backend}: 4 MiB event subject: peak {read:.2}x its size"
        );
    }
}
