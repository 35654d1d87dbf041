//! The relay: events relayed per second to a local target that answers
//! 200 at once, beside that target's own ceiling measured the same way
//! (the same HTTP client, the same concurrency, bodies of the same size),
//! and beside the inbox's worker with a no-op handler, in one run.
//!
//! - `target ceiling`: hyper-util's client POSTs `EVENTS` bodies of a
//!   relayed event's size to the target, 16 at once;
//! - `worker, no-op handler`: the inbox's worker hands `EVENTS` stored
//!   events (a fresh SQLite file, filled outside the time measured) to a
//!   handler that does nothing, at concurrency 16;
//! - `relay`: the same worker with the relay as its handler: each event's
//!   JSON written, signed (HMAC-SHA256) and POSTed to the target, 2xx
//!   marking the row done.
//!
//! Each line gives events/s, the wall time per event, and the process's CPU
//! time per event (user + system; the target serves in the same process,
//! so its share is in every line). Goal: the relay at 0.5x the target's
//! ceiling or better at concurrency 16.
//!
//! Run: `cargo bench --features test-util,sqlite --bench relay`
//! (`-- 20000` for another number of events).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cmc_receiver::relay::{Relay, RelayOptions};
use cmc_webhook::inbox::{Backoff, Inbox, Job};
use cmc_webhook::test_util::sample_events;
use cmc_webhook::{Event, Webhook};
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

const CONCURRENCY: usize = 16;
const BATCH: usize = 100;
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A target answering 200 at once to every request (its body read
/// whole); returns its address and its request count.
async fn target() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            let count = count.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let count = count.clone();
                    async move {
                        let _ = request.into_body().collect().await;
                        count.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(
                            b"ok",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, served)
}

/// The process's CPU time so far (user + system), from /proc (Linux).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Clock ticks: 100 per second on Linux.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// What one run measured.
struct Run {
    events: u64,
    wall: Duration,
    cpu: Option<Duration>,
}

impl Run {
    fn rate(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }

    fn line(&self, name: &str, ceiling: Option<f64>) -> String {
        let per = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6 / self.events as f64);
        format!(
            "{name:<24} {:>9.0} events/s  {:>10} wall/event  {:>10} CPU/event{}",
            self.rate(),
            per(self.wall),
            self.cpu.map_or_else(|| "n/a".to_owned(), per),
            ceiling.map_or_else(String::new, |c| format!(
                "  {:.2}x the ceiling",
                self.rate() / c
            ))
        )
    }
}

async fn measure<F: std::future::Future<Output = ()>>(events: u64, work: F) -> Run {
    let cpu = cpu_time();
    let start = Instant::now();
    work.await;
    let wall = start.elapsed();
    Run {
        events,
        wall,
        cpu: cpu.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a)),
    }
}

/// A fresh inbox holding `events` pending events.
async fn filled(dir: &std::path::Path, round: &str, events: u64) -> Inbox {
    let inbox = Inbox::sqlite(dir.join(format!("relay-{round}.sqlite3")))
        .open()
        .await
        .unwrap();
    for b in 0..events / BATCH as u64 {
        let mut batch = sample_events(BATCH);
        for (i, event) in batch.events.iter_mut().enumerate() {
            if let Event::Delivery(d) = event {
                d.message_id = format!("<{b:06}-{i:03}@bench.example.com>").into();
            }
        }
        inbox.store(Webhook::Events(batch), None).await.unwrap();
    }
    assert_eq!(inbox.counts().await.unwrap().events.total(), events);
    inbox
}

/// Runs the worker over `inbox` with `handler` until every row is done:
/// the handler's returns are counted in the process (polling the store's
/// counts, a scan of the table, would take a share of the CPU measured),
/// and once all `events` have returned, the shutdown records the outcomes
/// still waiting; the store's counts are checked after.
async fn drain<H, F>(inbox: &Inbox, events: u64, handler: H)
where
    H: Fn(Job) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let returned = Arc::new(AtomicU64::new(0));
    let all = Arc::new(tokio::sync::Notify::new());
    let (count, told) = (returned.clone(), all.clone());
    let worker = inbox
        .worker(move |job: Job| {
            let run = handler(job);
            let (count, told) = (count.clone(), told.clone());
            async move {
                let result = run.await;
                if result.is_ok() && count.fetch_add(1, Ordering::Relaxed) + 1 == events {
                    told.notify_one();
                }
                result
            }
        })
        .concurrency(CONCURRENCY)
        .backoff(Backoff::exponential(Duration::from_millis(10)))
        .without_suppressions()
        .spawn();
    all.notified().await;
    let stopped = worker.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!(stopped.done, events, "{stopped:?}");
    let counts = inbox.counts().await.unwrap();
    assert_eq!(counts.events.done, events, "{counts:?}");
    assert_eq!(returned.load(Ordering::Relaxed), events);
}

fn main() {
    let events: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5_000);
    let events = events.max(BATCH as u64) / BATCH as u64 * BATCH as u64;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    runtime.block_on(async {
        let (addr, served) = target().await;
        let url: http::Uri = format!("http://{addr}/hooks").parse().unwrap();

        // The largest relayed event body, for the ceiling's requests.
        let sample = filled(dir.path(), "sample", BATCH as u64).await;
        let size = Arc::new(AtomicU64::new(0));
        let seen = size.clone();
        drain(&sample, BATCH as u64, move |job: Job| {
            let body = cmc_receiver::relay::payload::payload(&job, usize::MAX).unwrap();
            seen.fetch_max(body.body.len() as u64, Ordering::Relaxed);
            async { Ok(()) }
        })
        .await;
        let body = Bytes::from(vec![b'x'; size.load(Ordering::Relaxed) as usize]);

        // The target's ceiling: the same client (hyper-util's, without
        // Nagle, as the relay's), without TLS, 16 at once.
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
        let before = served.load(Ordering::Relaxed);
        let ceiling = measure(events, async {
            let next = Arc::new(AtomicU64::new(0));
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..CONCURRENCY {
                let (client, next, body, url) =
                    (client.clone(), next.clone(), body.clone(), url.clone());
                tasks.spawn(async move {
                    while next.fetch_add(1, Ordering::Relaxed) < events {
                        let request = http::Request::post(url.clone())
                            .header("content-type", "application/json")
                            .body(Full::new(body.clone()))
                            .unwrap();
                        let response = client.request(request).await.unwrap();
                        assert!(response.status().is_success());
                        let _ = response.into_body().collect().await;
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
        })
        .await;
        assert_eq!(served.load(Ordering::Relaxed) - before, events);

        // The worker alone.
        let inbox = filled(dir.path(), "noop", events).await;
        let noop = measure(events, drain(&inbox, events, |_job: Job| async { Ok(()) })).await;
        inbox.close().await;

        // The relay.
        let inbox = filled(dir.path(), "relay", events).await;
        let relay = Relay::new(RelayOptions::new(
            url.clone(),
            vec![SECRET.parse().unwrap()],
        ))
        .unwrap();
        let before = served.load(Ordering::Relaxed);
        let relayed = measure(
            events,
            drain(&inbox, events, move |job: Job| relay.clone().send(job)),
        )
        .await;
        assert_eq!(served.load(Ordering::Relaxed) - before, events);
        inbox.close().await;

        println!(
            "{events} events, {} bytes each relayed, concurrency {CONCURRENCY}, SQLite",
            body.len()
        );
        println!("{}", ceiling.line("target ceiling", None));
        println!("{}", noop.line("worker, no-op handler", None));
        println!("{}", relayed.line("relay", Some(ceiling.rate())));
    });
}
