//! A mailbox whose handler does not touch a mail's attachments never loads
//! them: shown by an allocation counter over the whole process (every
//! thread, SQLite's included), while a real worker routes and delivers a
//! mail with an 8 MiB attachment. One test in its own binary: nothing
//! else allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cmc_webhook::inbox::mailbox::{DeliveryFilter, DeliveryState, MailJob, Mailbox, Mailboxes};
use cmc_webhook::inbox::Inbox;
use cmc_webhook::Webhook;

/// Bytes allocated, and the largest single allocation, since the last
/// reset; on every thread.
static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: forwards every call to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZE: usize = 8 << 20;

/// Routes and delivers the one stored mail with a mailbox running
/// `handler`, and returns (bytes allocated, largest allocation) meanwhile.
async fn deliver<F, Fut>(inbox: &Inbox, handler: F) -> (usize, usize)
where
    F: Fn(MailJob) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let mailboxes = Mailboxes::new()
        .mailbox(Mailbox::new("docs", handler))
        .unwrap()
        .fallback("docs")
        .unwrap();
    ALLOCATED.store(0, Ordering::SeqCst);
    LARGEST.store(0, Ordering::SeqCst);
    let worker = inbox.mailbox_worker(mailboxes).spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done = inbox
            .deliveries()
            .list(&DeliveryFilter::all().states([DeliveryState::Delivered]))
            .await
            .unwrap();
        if !done.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the mail was delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    (
        ALLOCATED.load(Ordering::SeqCst),
        LARGEST.load(Ordering::SeqCst),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_does_not_touch_attachments_never_loads_them() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = Bytes::from((0..SIZE).map(|i| (i % 253) as u8).collect::<Vec<_>>());
    let mut mail = cmc_webhook::test_util::sample_inbound(true);
    mail.attachments[0].data = data.clone();

    // Without touching the attachment.
    let inbox = Inbox::sqlite(dir.path().join("untouched.sqlite3"))
        .open()
        .await
        .unwrap();
    inbox
        .store(Webhook::Inbound(mail.clone()), None)
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let (untouched, untouched_largest) = deliver(&inbox, move |job: MailJob| {
        s.lock()
            .unwrap()
            .push(job.mail.attachments[0].filename.to_string());
        async { Ok(()) }
    })
    .await;
    inbox.close().await;

    // Reading it, as a contrast: the counter sees the bytes when they are
    // loaded.
    let inbox = Inbox::sqlite(dir.path().join("read.sqlite3"))
        .open()
        .await
        .unwrap();
    inbox.store(Webhook::Inbound(mail), None).await.unwrap();
    let equal = Arc::new(Mutex::new(false));
    let e = equal.clone();
    let (read, read_largest) = deliver(&inbox, move |job: MailJob| {
        let (e, data) = (e.clone(), data.clone());
        async move {
            let bytes = job.attachment(0).await.map_err(|e| e.to_string())?;
            *e.lock().unwrap() = bytes == data;
            Ok(())
        }
    })
    .await;
    inbox.close().await;

    eprintln!(
        "handler without attachments: {untouched} bytes allocated, largest {untouched_largest}; \
         reading the {SIZE}-byte attachment: {read} bytes, largest {read_largest}"
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(*equal.lock().unwrap(), "the attachment read back equal");
    // Chunks are stored 1 MiB each: loading any of them allocates that.
    assert!(
        untouched_largest < 1 << 20,
        "largest allocation {untouched_largest}"
    );
    assert!(untouched < SIZE / 4, "{untouched} bytes allocated");
    assert!(read_largest >= SIZE, "largest allocation {read_largest}");
    assert!(read >= SIZE + (1 << 20), "{read} bytes allocated");
}
