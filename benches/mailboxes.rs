//! Mailboxes: what routing inbound mail costs.
//!
//! - `match`: one address against one [`Pattern`] of each kind (exact,
//!   domain, prefix, regular expression) and against the first-match walk
//!   of 100 routes that all miss (the worst case of a long route table).
//! - `deliver`: each sample stores 2 000 inbound mails (JSON, no
//!   attachments) in a fresh SQLite file, outside the time measured, then
//!   times a worker from its start until every mail was handed to a no-op
//!   handler and `shutdown` returned: the inbox's own worker handing the
//!   mails to its handler (`plain_worker`), and a mailbox worker routing
//!   each mail (10 routes, the match in the middle) and delivering it to
//!   its mailbox (`mailboxes`), both at concurrency 16.
//!
//! The same on PostgreSQL (a fresh database per sample) with the feature
//! `postgres` and a server in `CMC_POSTGRES_URL`.
//!
//! Run: `cargo bench --features sqlite --bench mailboxes`, or
//! `scripts/with-postgres.sh cargo bench --features sqlite,postgres --bench mailboxes -- deliver`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cmc_webhook::inbox::mailbox::{MailJob, Mailbox, Mailboxes, Pattern, Route};
use cmc_webhook::inbox::{Inbox, Job};
use cmc_webhook::Webhook;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod postgres_db;

const MAILS: usize = 2_000;

fn matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("match");
    let address = "reply+4711@support.example.jp";
    for (name, pattern) in [
        ("exact", "reply+4711@support.example.jp"),
        ("domain", "*@support.example.jp"),
        ("prefix", "reply+*@support.example.jp"),
        ("regex", "/^reply\\+[0-9]+@support\\.example\\.jp$/"),
    ] {
        let p: Pattern = pattern.parse().unwrap();
        group.bench_function(name, |b| {
            b.iter(|| p.matches(std::hint::black_box(address)))
        });
    }
    let routes: Vec<Route> = (0..100)
        .map(|i| format!("*@team{i}.example.jp").parse().unwrap())
        .collect();
    group.bench_function("100_routes_all_missing", |b| {
        b.iter(|| {
            routes
                .iter()
                .position(|r| r.matches(std::hint::black_box(address), "info"))
        })
    });
    group.finish();
}

fn mail(i: usize) -> Webhook {
    let body = serde_json::json!({
        "server_composition": "pro",
        "filter": "info",
        "headers": [{"name": "Subject", "value": format!("mail {i}")}],
        "subject": format!("mail {i}"),
        "envelope-from": "sender@example.com",
        "envelope-to": format!("user{i}@team5.example.jp"),
        "text": "hello\r\n",
    });
    Webhook::parse("application/json", Bytes::from(body.to_string())).unwrap()
}

/// A fresh store for sample `round`: a new SQLite file in `dir`, or a new
/// PostgreSQL database on the server at `postgres` (the admin address).
async fn fresh(dir: &std::path::Path, postgres: Option<&str>, round: usize) -> String {
    match postgres {
        None => format!(
            "sqlite:{}",
            dir.join(format!("bench-{round}.sqlite3")).display()
        ),
        #[cfg(feature = "postgres")]
        Some(admin) => {
            postgres_db::fresh_database(admin, &format!("bench_mailboxes_{round}")).await
        }
        #[cfg(not(feature = "postgres"))]
        Some(_) => unreachable!("PostgreSQL needs the feature postgres"),
    }
}

/// A fresh inbox at `url` holding `MAILS` pending mails.
async fn filled(url: &str) -> Inbox {
    let inbox = Inbox::open(url).await.unwrap();
    for i in 0..MAILS {
        inbox.store(mail(i), None).await.unwrap();
    }
    inbox
}

fn deliver(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut group = c.benchmark_group("deliver");
    group.sample_size(10);
    group.throughput(Throughput::Elements(MAILS as u64));
    let mut round = 0;
    let mut backends: Vec<(&str, Option<String>)> = vec![("sqlite", None)];
    match std::env::var("CMC_POSTGRES_URL") {
        Ok(url) if cfg!(feature = "postgres") => backends.push(("postgres", Some(url))),
        _ => eprintln!("deliver on PostgreSQL: skipped (feature postgres and CMC_POSTGRES_URL)"),
    }
    for (backend, postgres) in &backends {
        for way in ["plain_worker", "mailboxes"] {
            group.bench_function(BenchmarkId::new(format!("{backend}/{way}"), MAILS), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        round += 1;
                        spent += runtime.block_on(async {
                            let url = fresh(dir.path(), postgres.as_deref(), round).await;
                            let inbox = filled(&url).await;
                            let seen = Arc::new(AtomicUsize::new(0));
                            let start = Instant::now();
                            let worker = if way == "plain_worker" {
                                let seen = seen.clone();
                                inbox
                                    .worker(move |_job: Job| {
                                        seen.fetch_add(1, Ordering::Relaxed);
                                        async { Ok::<(), String>(()) }
                                    })
                                    .spawn()
                            } else {
                                let mut mailboxes = Mailboxes::new();
                                for t in 0..10 {
                                    let seen = seen.clone();
                                    mailboxes = mailboxes
                                        .mailbox(
                                            Mailbox::new(
                                                format!("team{t}"),
                                                move |_job: MailJob| {
                                                    seen.fetch_add(1, Ordering::Relaxed);
                                                    async { Ok::<(), String>(()) }
                                                },
                                            )
                                            .concurrency(16),
                                        )
                                        .unwrap()
                                        .route(
                                            format!("*@team{t}.example.jp").as_str(),
                                            &format!("team{t}"),
                                        )
                                        .unwrap();
                                }
                                inbox.mailbox_worker(mailboxes).spawn()
                            };
                            while seen.load(Ordering::Relaxed) < MAILS {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                            worker.shutdown(Duration::from_secs(10)).await.unwrap();
                            let spent = start.elapsed();
                            inbox.close().await;
                            spent
                        });
                    }
                    spent
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, matching, deliver);
criterion_main!(benches);
