//! Fills a store with a realistic month of webhooks, for measuring the
//! console's reads (`benches/console.rs`) on a store the size of a busy
//! account's: N events (1 000 000 by default) and one inbound mail per
//! 100 events.
//!
//! ```text
//! cargo run --release --features test-util,sqlite --example fill_store -- [N] [STORE]
//! ```
//!
//! STORE is a SQLite file path (default `$CARGO_TARGET_DIR/console-store/events-N.sqlite3`,
//! `target/...` without the variable) or a `postgres://` address (feature
//! `postgres`; the inbox's tables are made there in the default schema).
//! A SQLite file that exists is replaced; a PostgreSQL database must be
//! empty.
//!
//! What it writes:
//!
//! - every row through [`Inbox::store`], 500 records a batch, with the
//!   inbox's clock moved across the last 30 days (so `received_at`
//!   spreads over 720 hours, busier in the day in Japan than at night);
//! - sent mails' events as CMC sends them: `queued`, then `succeeded`
//!   (most), `deferred` then `succeeded`, or `failed` and a bounce with a
//!   code of every class; a `blocks` record now and then. A Message-ID
//!   recurs across its message's events; recipients are drawn from
//!   200 000 addresses, so that an address has several events;
//! - inbound mails with varied subjects, senders and Message-IDs;
//! - then, in one transaction of plain `UPDATE`s (the worker's way is
//!   one run per row, minutes for a million), the states a month of
//!   work leaves: 90 % done, 5 % dead with a dozen kinds of error
//!   text (some holding the row's number, so that they differ), 2 %
//!   failing (pending, attempts made, an error, due later), 3 % pending
//!   and never tried;
//! - the suppression list a worker keeping it would have from those
//!   bounces: an entry per bounced address (hard, soft with an end,
//!   suppressed by CMC, unsubscribed, or counts only) and a history
//!   line per bounce.
//!
//! It prints how long each step took and the file's size.

use std::time::Instant;

use bytes::Bytes;
use cmc_webhook::inbox::{Inbox, ManualClock, Synchronous};
use cmc_webhook::Webhook;
use jiff::{SignedDuration, Timestamp};

/// Records per stored batch.
const BATCH: usize = 500;
/// Distinct recipient addresses.
const RECIPIENTS: u64 = 200_000;
/// Bounce codes, weighted by how often they come (1 to 11, 99, and an
/// unknown one).
const BOUNCE_CODES: &[&str] = &[
    "2", "2", "2", "2", "1", "1", "3", "5", "5", "4", "9", "10", "11", "99", "42",
];

/// A small deterministic generator (splitmix64): the same store each run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[self.below(of.len() as u64) as usize]
    }
}

const SUBJECT_WORDS: &[&str] = &[
    "invoice",
    "order",
    "shipping",
    "password",
    "reset",
    "newsletter",
    "March",
    "April",
    "receipt",
    "ご注文",
    "確認",
    "のお知らせ",
    "キャンペーン",
    "welcome",
    "renewal",
];

/// A subject of three to five words.
fn subject(rng: &mut Rng) -> String {
    let n = 3 + rng.below(3);
    (0..n)
        .map(|_| rng.pick(SUBJECT_WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

fn recipient(rng: &mut Rng) -> String {
    let n = rng.below(RECIPIENTS);
    let domain = [
        "example.jp",
        "example.com",
        "mail.example.net",
        "example.co.jp",
    ][(n % 4) as usize];
    format!("user{n}@{domain}")
}

/// CMC's time of a record: civil time in Japan.
fn created(at: Timestamp) -> String {
    jiff::tz::TimeZone::fixed(jiff::tz::offset(9))
        .to_datetime(at)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// The records waiting to be stored, by event type, and how many were
/// stored.
struct Pending {
    inbox: Inbox,
    clock: ManualClock,
    deliveries: Vec<serde_json::Value>,
    bounces: Vec<serde_json::Value>,
    blocks: Vec<serde_json::Value>,
    stored: u64,
}

impl Pending {
    async fn push(&mut self, kind: &str, record: serde_json::Value) {
        let buffer = match kind {
            "deliveries" => &mut self.deliveries,
            "bounces" => &mut self.bounces,
            _ => &mut self.blocks,
        };
        buffer.push(record);
        if buffer.len() >= BATCH {
            self.flush(kind).await;
        }
    }

    async fn flush(&mut self, kind: &str) {
        let records = std::mem::take(match kind {
            "deliveries" => &mut self.deliveries,
            "bounces" => &mut self.bounces,
            _ => &mut self.blocks,
        });
        if records.is_empty() {
            return;
        }
        let body = serde_json::json!({
            "event_type": kind,
            "server_composition": "pro",
            "event": { kind: records },
        });
        let webhook = Webhook::parse("application/json", Bytes::from(body.to_string()))
            .expect("the generated batch parses");
        let receipt = self
            .inbox
            .store(webhook, Some([203, 0, 113, 7].into()))
            .await
            .expect("the batch is stored");
        self.stored += receipt.stored as u64;
    }

    async fn mail(&mut self, rng: &mut Rng, n: u64) {
        let from = format!("customer{}@example.org", rng.below(50_000));
        let to = [
            "support@example.jp",
            "info@example.jp",
            "billing@example.jp",
        ][(n % 3) as usize];
        let subject = format!("Re: {} #{n}", subject(rng));
        let body = serde_json::json!({
            "filter": to,
            "headers": [
                {"name": "From", "value": from},
                {"name": "To", "value": to},
                {"name": "Subject", "value": subject},
                {"name": "Message-ID", "value": format!("<in-{n}.{}@mail.example.org>", rng.next() % 1_000_000)},
            ],
            "subject": subject,
            "envelope-to": to,
            "envelope-from": from,
            "server_composition": "pro",
            "text": format!("Hello,\r\n\r\nabout order {n}.\r\n"),
            "html": format!("<p>Hello,</p><p>about order {n}.</p>"),
        });
        let webhook = Webhook::parse("application/json", Bytes::from(body.to_string()))
            .expect("the generated mail parses");
        self.inbox
            .store(webhook, Some([203, 0, 113, 7].into()))
            .await
            .expect("the mail is stored");
    }
}

/// The hour's weight: busier from 8 to 22 in Japan.
fn busy(at: Timestamp) -> bool {
    let hour = (at.as_second().rem_euclid(86_400) / 3600 + 9) % 24;
    (8..22).contains(&hour)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = match args.next() {
        Some(a) => a
            .replace('_', "")
            .parse()
            .map_err(|e| format!("N must be a number of events: {e}"))?,
        None => 1_000_000,
    };
    let url = match args.next() {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => u,
        Some(path) => format!("sqlite:{path}"),
        None => {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            let dir = std::path::Path::new(&target).join("console-store");
            std::fs::create_dir_all(&dir)?;
            format!(
                "sqlite:{}",
                dir.join(format!("events-{n}.sqlite3")).display()
            )
        }
    };
    if let Some(path) = url.strip_prefix("sqlite:") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
    }
    let now = Timestamp::now();
    let start = now - SignedDuration::from_hours(24 * 30);
    let clock = ManualClock::new(start);
    // SQLite: `synchronous = NORMAL` (no flush per batch; a generated
    // store needs no durability), which the receiver offers too.
    let inbox = match url.strip_prefix("sqlite:") {
        Some(path) => {
            Inbox::sqlite(path)
                .synchronous(Synchronous::Normal)
                .clock(clock.clone())
                .open()
                .await?
        }
        None => Inbox::builder(&url)?.clock(clock.clone()).open().await?,
    };
    eprintln!("filling {} with {n} events", inbox.describe());

    let began = Instant::now();
    let mut rng = Rng(27);
    let mut pending = Pending {
        inbox: inbox.clone(),
        clock: clock.clone(),
        deliveries: Vec::new(),
        bounces: Vec::new(),
        blocks: Vec::new(),
        stored: 0,
    };
    let span = (now - start).as_millis() as f64;
    let mut message = 0u64;
    let mut mails = 0u64;
    let mut records = 0u64;
    while records < n {
        // Time moves with the records made; the quiet hours are skipped
        // over faster (a third of the records go to them).
        let mut at = start + SignedDuration::from_millis((span * records as f64 / n as f64) as i64);
        if !busy(at) && rng.below(3) != 0 {
            at += SignedDuration::from_mins(rng.below(120) as i64);
            at = at.min(now);
        }
        pending.clock.set(at);
        message += 1;
        let id = format!(
            "<{message:08x}.{:04x}@send.example.com>",
            rng.below(0x10000)
        );
        let to = recipient(&mut rng);
        let subject = subject(&mut rng);
        let base = serde_json::json!({
            "created": created(at),
            "messageId": id,
            "to": to,
            "from": "info@example.com",
            "returnPath": "info@return.pro.smtps.jp",
            "subject": subject,
            "apiData": format!("campaign-{}", message % 40),
            "senderIp": "100.100.100.3",
            "sourceIp": "",
        });
        let with = |status: &str, reason: Option<&str>| {
            let mut r = base.clone();
            r["status"] = status.into();
            if let Some(reason) = reason {
                r["reason"] = reason.into();
            }
            r
        };
        pending.push("deliveries", with("queued", None)).await;
        records += 1;
        let roll = rng.below(100);
        if roll < 85 {
            pending
                .push("deliveries", with("succeeded", Some("250 2.0.0 OK")))
                .await;
            records += 1;
        } else if roll < 92 {
            pending
                .push(
                    "deliveries",
                    with(
                        "deferred",
                        Some("451 4.7.1 Greylisted, please try again later"),
                    ),
                )
                .await;
            pending
                .push("deliveries", with("succeeded", Some("250 2.0.0 OK")))
                .await;
            records += 2;
        } else {
            let code = rng.pick(BOUNCE_CODES);
            let reason = format!("550 5.1.1 <{to}>: Recipient address rejected (code {code})");
            pending
                .push("deliveries", with("failed", Some(&reason)))
                .await;
            let mut bounce = with(code, Some(&reason));
            for field in ["senderIp", "sourceIp"] {
                bounce.as_object_mut().unwrap().remove(field);
            }
            pending.push("bounces", bounce).await;
            records += 2;
        }
        if rng.below(200) == 0 {
            let block = serde_json::json!({
                "created": created(at),
                "email": recipient(&mut rng),
                "id": message,
                "occurred": created(at),
                "status": if rng.below(4) == 0 { "delete" } else { "add" },
            });
            pending.push("blocks", block).await;
            records += 1;
        }
        if message.is_multiple_of(50) {
            pending.mail(&mut rng, message).await;
            mails += 1;
        }
        if message.is_multiple_of(50_000) {
            eprintln!(
                "  {records} records, {:.0} records/s",
                records as f64 / began.elapsed().as_secs_f64()
            );
        }
    }
    for kind in ["deliveries", "bounces", "blocks"] {
        pending.flush(kind).await;
    }
    let stored_in = began.elapsed();
    let counts = inbox.counts().await?;
    eprintln!(
        "stored {} events and {mails} mails in {:.1} s ({:.0} events/s)",
        counts.events.total(),
        stored_in.as_secs_f64(),
        counts.events.total() as f64 / stored_in.as_secs_f64()
    );

    let began = Instant::now();
    settle(&url, now).await?;
    eprintln!(
        "states and suppressions in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    let counts = inbox.counts().await?;
    eprintln!("{counts:?}");
    inbox.close().await;
    if let Some(path) = url.strip_prefix("sqlite:") {
        let size = std::fs::metadata(path)?.len();
        eprintln!("{path}: {:.0} MiB", size as f64 / 1024.0 / 1024.0);
        println!("{path}");
    } else {
        println!("{url}");
    }
    Ok(())
}

/// The error texts of dead and failing rows, by `id % 12`; `{id}` is the
/// row's number.
const ERRORS: &[&str] = &[
    "relay: connection refused (os error 111) to http://app.internal:8080/cmc",
    "relay: timed out after 10 s waiting for http://app.internal:8080/cmc",
    "relay: answered 500 Internal Server Error",
    "relay: answered 502 Bad Gateway",
    "relay: answered 429 Too Many Requests",
    "handler: customer {id} not found",
    "handler: could not update order {id}: deadlock detected",
    "handler: the CRM answered 401 Unauthorized",
    "mailbox: attachment too large for the ticket system (25 MiB)",
    "handler: invalid address in `to`: user{id}@",
    "relay: TLS handshake failed: certificate has expired",
    "handler: panicked at 'called `Option::unwrap()` on a `None` value', src/handler.rs:{id}",
];

/// Moves the stored rows to the states a month of work leaves, and
/// writes the suppression list a worker would have kept, in SQL of the
/// store's own schema.
async fn settle(url: &str, now: Timestamp) -> Result<(), Box<dyn std::error::Error>> {
    let pg = !url.starts_with("sqlite:");
    // Milliseconds `x` after the time column `col`, as the column stores
    // a time (SQLite: milliseconds; PostgreSQL: timestamptz).
    let later = |col: &str, ms: &str| {
        if pg {
            format!("{col} + ({ms}) * INTERVAL '1 millisecond'")
        } else {
            format!("{col} + ({ms})")
        }
    };
    let time = |ms: i64| {
        if pg {
            format!("(TIMESTAMPTZ 'epoch' + {ms} * INTERVAL '1 millisecond')")
        } else {
            ms.to_string()
        }
    };
    let error = {
        let mut case = String::from("CASE id % 12");
        for (i, text) in ERRORS.iter().enumerate() {
            let parts: Vec<String> = text
                .split("{id}")
                .map(|p| format!("'{}'", p.replace('\'', "''")))
                .collect();
            let expr = parts.join(" || CAST(id AS TEXT) || ");
            case.push_str(&format!(" WHEN {i} THEN {expr}"));
        }
        case.push_str(" END");
        case
    };
    // A row's bucket out of 1 000: a fixed scatter of ids.
    let bucket = "((id * 2654435761) % 1000)";
    let due = time((now + SignedDuration::from_hours(1)).as_millisecond());
    let mut statements = Vec::new();
    for table in ["cmc_events", "cmc_mails"] {
        statements.push(format!(
            "UPDATE {table} SET state = 'done', attempts = 1, done_at = {} WHERE {bucket} >= 100",
            later("received_at", "1500 + id % 5000")
        ));
        statements.push(format!(
            "UPDATE {table} SET state = 'dead', attempts = 1 + id % 8, last_error = {error}, \
             done_at = {} WHERE {bucket} < 50",
            later("received_at", "600000 + id % 3600000")
        ));
        statements.push(format!(
            "UPDATE {table} SET state = 'pending', attempts = 1 + id % 3, last_error = {error}, \
             run_at = {due} WHERE {bucket} >= 50 AND {bucket} < 70"
        ));
    }
    let reason = "CASE MIN(status) WHEN '1' THEN 'hard' WHEN '2' THEN 'hard' WHEN '9' THEN 'hard' \
                  WHEN '99' THEN 'hard' WHEN '3' THEN 'soft' WHEN '5' THEN 'soft' \
                  WHEN '10' THEN 'cmc_suppressed' WHEN '11' THEN 'unsubscribed' END";
    statements.push(format!(
        "INSERT INTO cmc_suppressions (recipient, reason, since, until, events, hard_count, \
         soft_times, unknown_count, updated_at) \
         SELECT lower(recipient), {reason}, \
         CASE WHEN {reason} IS NULL THEN NULL ELSE MIN(received_at) END, \
         CASE WHEN {reason} = 'soft' THEN {} END, {}, \
         SUM(CASE WHEN status IN ('1', '2', '9', '99') THEN 1 ELSE 0 END), {}, \
         SUM(CASE WHEN status = '42' THEN 1 ELSE 0 END), MAX(received_at) \
         FROM cmc_events WHERE event_type = 'bounces' GROUP BY lower(recipient)",
        later("MIN(received_at)", "7 * 86400000"),
        if pg { "'[]'::jsonb" } else { "'[]'" },
        if pg { "'[]'::jsonb" } else { "'[]'" },
    ));
    statements.push(
        "INSERT INTO cmc_suppression_history (recipient, idempotency_key, change, reason, at) \
         SELECT lower(e.recipient), e.idempotency_key, 'bounce ' || e.status, s.reason, e.received_at \
         FROM cmc_events e JOIN cmc_suppressions s ON s.recipient = lower(e.recipient) \
         WHERE e.event_type = 'bounces' ORDER BY e.id"
            .to_owned(),
    );
    statements.push(
        "INSERT INTO cmc_suppression_keeping (fact, at) \
         SELECT 'kept', MIN(at) FROM cmc_suppression_history HAVING COUNT(*) > 0 \
         ON CONFLICT (fact) DO NOTHING"
            .to_owned(),
    );
    if pg {
        #[cfg(feature = "postgres")]
        {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let mut tx = conn.begin().await?;
            sqlx::query("SET LOCAL search_path TO cmc_webhook")
                .execute(&mut *tx)
                .await?;
            for s in &statements {
                sqlx::query(sqlx::AssertSqlSafe(s.as_str()))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            // Autovacuum would have analysed a month's table.
            sqlx::query("ANALYZE").execute(&mut conn).await?;
        }
        #[cfg(not(feature = "postgres"))]
        return Err("a PostgreSQL store needs the feature `postgres`".into());
    } else {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(url).await?;
        let mut tx = conn.begin().await?;
        for s in &statements {
            sqlx::query(sqlx::AssertSqlSafe(s.as_str()))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        // No ANALYZE: the inbox never runs it, so a real store's planner
        // has no statistics either.
    }
    Ok(())
}
