//! Worker throughput: events per second handed from a SQLite inbox to a
//! no-op handler. Each sample stores 20 000 new events (100-event batches,
//! outside the time measured) in a fresh file, then times a worker from
//! its start until its handler has seen every event and the worker has
//! stopped (every `done` recorded), at the default concurrency (16) and at
//! 256.
//!
//! On PostgreSQL (feature `postgres`, a server in `CMC_POSTGRES_URL`):
//! the same with one worker and with two workers (two inboxes, as two
//! processes would be) on one database, at the default concurrency.
//!
//! Run: `cargo bench --features test-util,sqlite --bench inbox`, or
//! `scripts/with-postgres.sh cargo bench --all-features --bench inbox`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmc_webhook::inbox::{Inbox, Job};
use cmc_webhook::test_util::sample_events;
use cmc_webhook::{Event, Webhook};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod postgres_db;

const EVENTS: u64 = 20_000;
const BATCH: usize = 100;

/// A fresh SQLite inbox holding `EVENTS` pending events.
async fn filled(dir: &tempfile::TempDir, round: u64) -> Inbox {
    let inbox = Inbox::sqlite(dir.path().join(format!("bench-{round}.sqlite3")))
        .open()
        .await
        .expect("the inbox opens");
    fill(inbox).await
}

/// Stores `EVENTS` new events into `inbox`.
async fn fill(inbox: Inbox) -> Inbox {
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
                            total += drain(std::slice::from_ref(&inbox), concurrency).await;
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

/// Drains `EVENTS` events with one worker per inbox in `inboxes` (all on
/// one database); returns the time from their start until every event
/// was handled and every worker stopped.
async fn drain(inboxes: &[Inbox], concurrency: usize) -> Duration {
    let seen = Arc::new(AtomicU64::new(0));
    let all = Arc::new(tokio::sync::Notify::new());
    let start = Instant::now();
    let handles: Vec<_> = inboxes
        .iter()
        .map(|inbox| {
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
        })
        .collect();
    all.notified().await;
    let mut done = 0;
    for handle in handles {
        done += handle.shutdown(Duration::from_secs(30)).await.unwrap().done;
    }
    let took = start.elapsed();
    assert_eq!(done, EVENTS);
    assert_eq!(
        seen.load(Ordering::Relaxed),
        EVENTS,
        "each event handled once"
    );
    took
}

#[cfg(feature = "postgres")]
fn worker_postgres(c: &mut Criterion) {
    use sqlx::Connection;
    let Ok(admin) = std::env::var("CMC_POSTGRES_URL") else {
        eprintln!("worker_postgres: skipped, CMC_POSTGRES_URL is not set");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("worker_postgres");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(EVENTS));
    let mut round = 0u64;
    for workers in [1usize, 2] {
        group.bench_with_input(
            BenchmarkId::new("noop_handler", format!("{workers}_workers")),
            &workers,
            |b, &workers| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            round += 1;
                            let name = format!("bench_worker_{round}");
                            let url = postgres_db::fresh_database(&admin, &name).await;
                            let first = fill(Inbox::open(&url).await.unwrap()).await;
                            let mut inboxes = vec![first];
                            for _ in 1..workers {
                                inboxes.push(Inbox::open(&url).await.unwrap());
                            }
                            total += drain(&inboxes, 16).await;
                            for inbox in inboxes {
                                inbox.close().await;
                            }
                            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
                            sqlx::query(sqlx::AssertSqlSafe(&*format!("DROP DATABASE {name}")))
                                .execute(&mut conn)
                                .await
                                .unwrap();
                        }
                        total
                    })
                })
            },
        );
    }
    group.finish();
}

#[cfg(not(feature = "postgres"))]
fn worker_postgres(_: &mut Criterion) {}

criterion_group!(benches, worker, worker_postgres);
criterion_main!(benches);
