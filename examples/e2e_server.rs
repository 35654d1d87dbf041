//! The servers of the end-to-end benchmarks (`benches/e2e.sh`,
//! `benches/inbox.sh`): this crate's layer and extractor, a bare axum
//! `Json<T>` handler with hand-written structs, or the layer in front of the
//! inbox (storing before the 200); all answer 200 to a CMC event batch. And
//! the inbox benchmark's baseline: the same rows inserted by a minimal
//! program, one transaction per batch.
//!
//! ```text
//! e2e_server crate 127.0.0.1:18091
//! e2e_server bare 127.0.0.1:18092
//! e2e_server inbox 127.0.0.1:18093 bench.sqlite3   # stores, and a worker with a no-op handler
//! e2e_server store 127.0.0.1:18093 bench.sqlite3   # stores, no worker
//! e2e_server inbox 127.0.0.1:18093 postgres://...  # the same on PostgreSQL (feature postgres)
//! e2e_server raw bench.sqlite3 100 10              # 100-record batches for 10 s, prints events/s
//! e2e_server raw postgres://... 100 10             # the same rows into PostgreSQL
//! e2e_server body 100 > body.json                  # the request body the benchmarks post
//! ```

use std::net::SocketAddr;

use axum::routing::post;
use axum::{Json, Router};
use cmc_webhook::inbox::{Inbox, Job};
use cmc_webhook::test_util::{encode_events, sample_events, WireEncoding};
use cmc_webhook::{EventBatch, WebhookLayer};
use tower::Layer;

#[path = "../benches/support/baseline.rs"]
mod baseline;

async fn bare(Json(batch): Json<baseline::OwnedBatch>) -> String {
    format!("ok {}\n", batch.event.deliveries.len())
}

async fn with_crate(batch: EventBatch) -> String {
    format!("ok {}\n", batch.events.len())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: e2e_server crate|bare ADDR, e2e_server inbox|store ADDR DB, \
                 e2e_server raw DB RECORDS SECONDS, or e2e_server body RECORDS";
    let layer = || {
        WebhookLayer::builder()
            .allow_cidrs("127.0.0.0/8, ::1")?
            .body_limit(2 << 20)
            .build()
    };
    let mut worker = None;
    let (mode, arg) = match args.as_slice() {
        [mode, arg] => (mode.as_str(), arg.as_str()),
        [mode, db, records, seconds] if mode == "raw" => {
            #[cfg(feature = "postgres")]
            if db.starts_with("postgres") {
                return raw::run_postgres(db, records.parse()?, seconds.parse()?).await;
            }
            return raw::run(db, records.parse()?, seconds.parse()?).await;
        }
        [mode, addr, db] if mode == "inbox" || mode == "store" => {
            let inbox = if db.contains("://") || db.starts_with("sqlite:") {
                Inbox::open(db).await?
            } else {
                Inbox::sqlite(db).open().await?
            };
            if mode == "inbox" {
                worker = Some(
                    inbox
                        .worker(|_job: Job| async { Ok::<(), std::convert::Infallible>(()) })
                        .spawn(),
                );
            }
            let app = Router::new().route_service("/mails", layer()?.layer(inbox.receive()));
            return serve(app, addr).await.map(|()| drop(worker));
        }
        _ => return Err(usage.into()),
    };
    let app = match mode {
        "body" => {
            let body = encode_events(&sample_events(arg.parse()?), WireEncoding::Json).body;
            std::io::Write::write_all(&mut std::io::stdout(), &body)?;
            return Ok(());
        }
        "bare" => Router::new().route("/mails", post(bare)),
        "crate" => Router::new().route("/mails", post(with_crate).layer(layer()?)),
        other => return Err(format!("unknown mode {other}; {usage}").into()),
    };
    serve(app, arg).await
}

async fn serve(app: Router, addr: &str) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(addr.parse::<SocketAddr>()?).await?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// The database's own speed: the rows the inbox stores for a batch,
/// inserted by a minimal program with one transaction per batch, in the
/// same schema at the same durability (WAL, `synchronous = FULL`). The rows
/// are made before each transaction, outside the time measured.
mod raw {
    use std::time::{Duration, Instant};

    use cmc_webhook::inbox::Inbox;
    use cmc_webhook::test_util::sample_events;
    use cmc_webhook::Event;

    struct Row {
        key: String,
        event_type: String,
        message_id: Option<String>,
        recipient: Option<String>,
        status: Option<String>,
        created: Option<String>,
        json: String,
    }

    fn rows(batch_number: u64, records: usize) -> Vec<Row> {
        let mut batch = sample_events(records);
        for (i, event) in batch.events.iter_mut().enumerate() {
            if let Event::Delivery(d) = event {
                d.message_id = format!("<{batch_number:012x}-{i:04x}@raw.example.com>").into();
            }
        }
        batch
            .events
            .iter()
            .map(|e| match e {
                Event::Delivery(d) => Row {
                    key: e.idempotency_key().to_string(),
                    event_type: e.event_type().as_str().to_owned(),
                    message_id: Some(d.message_id.to_string()),
                    recipient: Some(d.to.to_string()),
                    status: Some(d.status.as_str().to_owned()),
                    created: Some(d.created.to_string()),
                    json: serde_json::to_string(e).expect("an event serializes"),
                },
                _ => unreachable!("sample_events makes delivery events"),
            })
            .collect()
    }

    /// PostgreSQL's own speed: the same rows, one multi-row `INSERT`
    /// (`UNNEST` of arrays) and one transaction per batch, from one
    /// connection, into the inbox's schema.
    #[cfg(feature = "postgres")]
    pub async fn run_postgres(
        url: &str,
        records: usize,
        seconds: u64,
    ) -> Result<(), Box<dyn std::error::Error>> {
        use sqlx::Connection;
        Inbox::open(url).await?.close().await;
        let mut conn = sqlx::PgConnection::connect(url).await?;
        // The inbox's tables are in its schema.
        sqlx::Executor::execute(&mut conn, "SET search_path TO cmc_webhook").await?;
        let (mut spent, mut events, mut batch_number) = (Duration::ZERO, 0u64, 0u64);
        let mut latencies = Vec::new();
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let run = std::process::id();
        while spent < Duration::from_secs(seconds) {
            let rows = rows(u64::from(run) << 32 | batch_number, records);
            batch_number += 1;
            let column = |f: fn(&Row) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
            let (keys, types, ids, to, status, created, json) = (
                column(|r| Some(r.key.clone())),
                column(|r| Some(r.event_type.clone())),
                column(|r| r.message_id.clone()),
                column(|r| r.recipient.clone()),
                column(|r| r.status.clone()),
                column(|r| r.created.clone()),
                column(|r| Some(r.json.clone())),
            );
            let start = Instant::now();
            let mut tx = conn.begin().await?;
            sqlx::query(
                "INSERT INTO cmc_events (idempotency_key, event_type, message_id, recipient, \
                 status, created, event, server_composition, client, received_at, run_at) \
                 SELECT k, t, m, r, s, c, e::JSONB, 'pro-bench', '127.0.0.1', \
                 TIMESTAMPTZ 'epoch' + $8 * INTERVAL '1 millisecond', \
                 TIMESTAMPTZ 'epoch' + $8 * INTERVAL '1 millisecond' \
                 FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
                 $6::TEXT[], $7::TEXT[]) AS u(k, t, m, r, s, c, e) \
                 ON CONFLICT (idempotency_key) DO UPDATE SET repeats = cmc_events.repeats + 1",
            )
            .bind(&keys)
            .bind(&types)
            .bind(&ids)
            .bind(&to)
            .bind(&status)
            .bind(&created)
            .bind(&json)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            let took = start.elapsed();
            spent += took;
            latencies.push(took);
            events += rows.len() as u64;
        }
        report(events, spent, latencies);
        Ok(())
    }

    pub async fn run(
        db: &str,
        records: usize,
        seconds: u64,
    ) -> Result<(), Box<dyn std::error::Error>> {
        // The inbox's own migrations make the schema.
        Inbox::sqlite(db).open().await?.close().await;
        let db = db.to_owned();
        tokio::task::spawn_blocking(move || insert(&db, records, seconds))
            .await?
            .map_err(Into::into)
    }

    fn insert(db: &str, records: usize, seconds: u64) -> Result<(), rusqlite::Error> {
        let mut conn = rusqlite::Connection::open(db)?;
        conn.pragma_update(None, "journal_mode", "wal")?;
        conn.pragma_update(None, "synchronous", "full")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        // The inbox's receiving connection has a 32 MiB page cache: so
        // does this one.
        conn.pragma_update(None, "cache_size", -32768)?;
        let (mut spent, mut events, mut batch_number) = (Duration::ZERO, 0u64, 0u64);
        let mut latencies = Vec::new();
        let now_ms = jiff::Timestamp::now().as_millisecond();
        while spent < Duration::from_secs(seconds) {
            let rows = rows(batch_number, records);
            batch_number += 1;
            let start = Instant::now();
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO cmc_events (idempotency_key, event_type, message_id, recipient, \
                     status, created, server_composition, client, received_at, event, run_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?9) \
                     ON CONFLICT (idempotency_key) DO UPDATE SET repeats = repeats + 1",
                )?;
                for r in &rows {
                    insert.execute(rusqlite::params![
                        r.key,
                        r.event_type,
                        r.message_id,
                        r.recipient,
                        r.status,
                        r.created,
                        "pro-bench",
                        "127.0.0.1",
                        now_ms,
                        r.json
                    ])?;
                }
            }
            tx.commit()?;
            let took = start.elapsed();
            spent += took;
            latencies.push(took);
            events += rows.len() as u64;
        }
        report(events, spent, latencies);
        Ok(())
    }

    fn report(events: u64, spent: Duration, mut latencies: Vec<Duration>) {
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        println!(
            "{:.0} events/s, {} transactions, p50 {:.2?}, p99 {:.2?}",
            events as f64 / spent.as_secs_f64(),
            latencies.len(),
            at(0.5),
            at(0.99)
        );
    }
}
