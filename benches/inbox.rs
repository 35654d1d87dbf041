//! Worker throughput: events per second handed from a SQLite inbox to a
//! no-op handler. Each sample stores 20 000 new events (100-event batches,
//! outside the time measured) in a fresh file, then times a worker from
//! its start until its handler has seen every event and the worker has
//! stopped (every `done` recorded), at the default concurrency (16) and at
//! 256.
//!
//! Run: `cargo bench --features test-util --bench inbox`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmc_webhook::inbox::{Inbox, Job};
use cmc_webhook::test_util::sample_events;
use cmc_webhook::{Event, Webhook};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const EVENTS: u64 = 20_000;
const BATCH: usize = 100;

/// A fresh inbox holding `EVENTS` pending events.
async fn filled(dir: &tempfile::TempDir, round: u64) -> Inbox {
    let inbox = Inbox::sqlite(dir.path().join(format!("bench-{round}.sqlite3")))
        .open()
        .await
        .expect("the inbox opens");
    let mut stores = tokio::task::JoinSet::new();
    for b in 0..EVENTS / BATCH as u64 {
        let mut batch = sample_events(BATCH);
        for (i, event) in batch.events.iter_mut().enumerate() {
            if let Event::Delivery(d) = event {
                d.message_id = format!("<{b:06}-{i:03}@bench.example.com>").into();
            }
        }
        let inbox = inbox.clone();
        stores.spawn(async move { inbox.store(Webhook::Events(batch), None).await });
        if stores.len() >= 32 {
            stores.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(r) = stores.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(inbox.counts().await.unwrap().events.total(), EVENTS);
    inbox
}

fn worker(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut group = c.benchmark_group("worker");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(EVENTS));
    let mut round = 0;
    for concurrency in [16usize, 256] {
        group.bench_with_input(
            BenchmarkId::new("noop_handler", format!("concurrency_{concurrency}")),
            &concurrency,
            |b, &concurrency| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            round += 1;
                            let inbox = filled(&dir, round).await;
                            let seen = Arc::new(AtomicU64::new(0));
                            let all = Arc::new(tokio::sync::Notify::new());
                            let start = Instant::now();
                            let handle = {
                                let (seen, all) = (seen.clone(), all.clone());
                                inbox
                                    .worker(move |_job: Job| {
                                        if seen.fetch_add(1, Ordering::Relaxed) + 1 == EVENTS {
                                            all.notify_one();
                                        }
                                        async { Ok::<(), std::convert::Infallible>(()) }
                                    })
                                    .concurrency(concurrency)
                                    .spawn()
                            };
                            all.notified().await;
                            let stopped = handle.shutdown(Duration::from_secs(30)).await.unwrap();
                            total += start.elapsed();
                            assert_eq!(stopped.done, EVENTS);
                            let counts = inbox.counts().await.unwrap();
                            assert_eq!(counts.events.done, EVENTS, "every event is done");
                            inbox.close().await;
                            let _ = std::fs::remove_file(
                                dir.path().join(format!("bench-{round}.sqlite3")),
                            );
                        }
                        total
                    })
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, worker);
criterion_main!(benches);
