//! How fast the console's reads and pages are on a big store: each read
//! the console's pages make, and each page over HTTP (the console served
//! on loopback, logged in), repeated, with the median and the slowest
//! time. A read or a page over 100 ms is marked `SLOW`.
//!
//! Fill a store first (1 000 000 events, about a minute and a half):
//!
//! ```text
//! cargo run --release --features test-util,sqlite --example fill_store
//! cargo bench --features test-util,sqlite --bench console -- [STORE] [REPEATS]
//! ```
//!
//! STORE defaults to the file `fill_store` writes for 1 M events
//! (`$CARGO_TARGET_DIR/console-store/events-1000000.sqlite3`); a
//! `postgres://` address (feature `postgres`) reads a PostgreSQL store.
//! REPEATS defaults to 20. Results: benches/README.md, "Console reads on
//! 1 M events".
//!
//! A read the console gains is one more line in `reads` below.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use cmc_receiver::console::{self, auth::Users, Console};
use cmc_webhook::inbox::browse::{Find, RowQuery, RowStates};
use cmc_webhook::inbox::suppression::{ListFilter, SuppressionReason};
use cmc_webhook::inbox::{Inbox, Kind};
use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Read<'a> = Pin<Box<dyn Future<Output = usize> + 'a>>;

/// Runs `read` once to warm the caches, then `repeats` times; prints the
/// median and the slowest, and how many rows the read returned.
async fn time<'a>(name: &str, repeats: usize, read: impl Fn() -> Read<'a>) -> Duration {
    let rows = read().await;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let start = Instant::now();
        read().await;
        times.push(start.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    let max = *times.last().unwrap();
    println!(
        "| {name} | {rows} | {:.2} | {:.2} |{}",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        if median > Duration::from_millis(100) {
            " SLOW"
        } else {
            ""
        }
    );
    median
}

/// A GET of `path` with the session `cookie`; the status and the body's
/// length.
async fn get(addr: SocketAddr, path: &str, cookie: &str) -> (u16, usize) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await.unwrap();
    let status = std::str::from_utf8(&reply[9..12]).unwrap().parse().unwrap();
    (status, reply.len())
}

/// Logs in as the bench's user; the cookie pair.
async fn login(addr: SocketAddr) -> String {
    let body = "user=bench&password=bench-password-123";
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    let line = reply
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no session: {reply}"));
    line.split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Empties the closed hours kept in the store (`Inbox::hours`), so that
/// the next read counts and keeps them again.
async fn forget_hours(url: &str) {
    use sqlx::Connection;
    const SQL: [&str; 2] = [
        "DELETE FROM cmc_event_hours",
        "DELETE FROM cmc_event_hours_done",
    ];
    if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query("SET search_path TO cmc_webhook")
            .execute(&mut conn)
            .await
            .unwrap();
        for sql in SQL {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    } else {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        for sql in SQL {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
    }
}

/// A page of 100 hard-bounced addresses after `after`.
fn hard(after: Option<String>) -> ListFilter {
    let mut filter = ListFilter::default();
    filter.reason = Some(SuppressionReason::Hard);
    filter.after = after;
    filter.limit = 100;
    filter
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; the rest are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let url = match args.first() {
        Some(u) if u.starts_with("postgres") => u.clone(),
        Some(path) if !path.is_empty() => format!("sqlite:{path}"),
        _ => {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            let path = std::path::Path::new(&target).join("console-store/events-1000000.sqlite3");
            if !path.exists() {
                eprintln!(
                    "no store at {}: fill one first with\n  cargo run --release --features \
                     test-util,sqlite --example fill_store",
                    path.display()
                );
                return;
            }
            format!("sqlite:{}", path.display())
        }
    };
    let repeats: usize = args.get(1).map(|r| r.parse().unwrap()).unwrap_or(20);
    let inbox = Inbox::open(&url).await.expect("the store opens");
    let counts = inbox.counts().await.unwrap();
    println!(
        "{}: {} events, {} mails; {repeats} repeats\n",
        inbox.describe(),
        counts.events.total(),
        counts.mails.total()
    );

    // What to look for: a message with several events, a recipient, a
    // key, a mail's subject words, the last address of a page of the
    // suppression list.
    let sample = inbox
        .rows(
            &RowQuery::new(Kind::Event)
                .before(
                    i64::try_from(counts.events.total() / 2)
                        .unwrap_or(i64::MAX)
                        .max(2),
                )
                .limit(200),
        )
        .await
        .unwrap();
    let with_id = sample
        .iter()
        .filter(|r| r.message_id.is_some())
        .nth(100)
        .expect("stored events with a Message-ID");
    let message_id = with_id.message_id.clone().unwrap();
    let key = with_id.key.parse().expect("a key");
    let recipient = with_id
        .summary
        .split_whitespace()
        .find(|w| w.contains('@'))
        .unwrap_or("user1@example.jp")
        .to_owned();
    // The busiest inbound address `fill_store` writes (a third of its
    // mails).
    let mail_to = "support@example.jp".to_owned();
    let deep_dead = inbox
        .rows(
            &RowQuery::new(Kind::Event)
                .states(RowStates::Dead)
                .limit(500),
        )
        .await
        .unwrap()
        .last()
        .map(|r| r.id.id)
        .unwrap_or(0);
    let page_10 = {
        let mut after = None;
        for _ in 0..9 {
            let page = inbox
                .suppressions()
                .list(&hard(after.clone()))
                .await
                .unwrap();
            after = page.last().map(|e| e.address.clone());
        }
        after
    };
    let now = Timestamp::now();
    let inbox = &inbox;

    println!("| read | rows | median ms | max ms |\n|---|---:|---:|---:|");
    let n = repeats;
    time("counts", n, || {
        Box::pin(async { inbox.counts().await.map(|_| 1).unwrap() })
    })
    .await;
    time("dead(50)", n, || {
        Box::pin(async { inbox.dead(50).await.unwrap().len() })
    })
    .await;
    time("history(message_id)", n, || {
        Box::pin(async { inbox.history(&message_id).await.unwrap().len() })
    })
    .await;
    for (name, after) in [
        ("suppressions().list(hard, 100), first page", None),
        ("suppressions().list(hard, 100), page 10", page_10.clone()),
    ] {
        time(name, n, || {
            let after = after.clone();
            Box::pin(async move { inbox.suppressions().list(&hard(after)).await.unwrap().len() })
        })
        .await;
    }
    time("suppressions().list(any reason, 100)", n, || {
        Box::pin(async {
            inbox
                .suppressions()
                .list(&ListFilter::default())
                .await
                .unwrap()
                .len()
        })
    })
    .await;
    time("raw_requests(0, 50)", n, || {
        Box::pin(async { inbox.raw_requests(0, 50).await.unwrap().len() })
    })
    .await;
    time("deliveries().counts()", n, || {
        Box::pin(async { inbox.deliveries().counts().await.unwrap().len() })
    })
    .await;
    for (name, hours) in [
        ("activity, 24 h", 24),
        ("activity, 7 days", 24 * 7),
        ("activity, 30 days", 24 * 30),
    ] {
        time(name, n, || {
            Box::pin(async move {
                inbox
                    .activity(now - SignedDuration::from_hours(hours), now)
                    .await
                    .unwrap()
                    .len()
            })
        })
        .await;
    }
    // The same week through the hours kept in the store: counted and
    // kept by the first call, read back by the others.
    forget_hours(&url).await;
    let start = Instant::now();
    let week = inbox
        .hours(now - SignedDuration::from_hours(24 * 7), now)
        .await
        .unwrap()
        .len();
    println!(
        "| hours, 7 days, none kept (counts and keeps the closed hours) | {week} | {:.2} | |",
        start.elapsed().as_secs_f64() * 1e3
    );
    time("hours, 7 days, kept", n, || {
        Box::pin(async move {
            inbox
                .hours(now - SignedDuration::from_hours(24 * 7), now)
                .await
                .unwrap()
                .len()
        })
    })
    .await;
    let rows =
        |q: RowQuery| -> Read<'_> { Box::pin(async move { inbox.rows(&q).await.unwrap().len() }) };
    let queries: Vec<(&str, RowQuery)> = vec![
        (
            "rows: events by Message-ID",
            RowQuery::new(Kind::Event).find(Find::MessageId(message_id.clone())),
        ),
        (
            "rows: mails by Message-ID",
            RowQuery::new(Kind::Mail).find(Find::MessageId(message_id.clone())),
        ),
        (
            "rows: events by key",
            RowQuery::new(Kind::Event).find(Find::Key(key)),
        ),
        (
            "rows: events by recipient",
            RowQuery::new(Kind::Event).find(Find::Recipient(recipient.clone())),
        ),
        (
            "rows: mails by recipient (a busy inbound address)",
            RowQuery::new(Kind::Mail).find(Find::Recipient(mail_to.clone())),
        ),
        (
            "rows: mails by subject words",
            RowQuery::new(Kind::Mail).find(Find::Subject(vec!["invoice".into(), "march".into()])),
        ),
        (
            "rows: mails by subject words, none found",
            RowQuery::new(Kind::Mail).find(Find::Subject(vec!["absent".into()])),
        ),
        (
            "rows: dead events, first 50",
            RowQuery::new(Kind::Event).states(RowStates::Dead),
        ),
        (
            "rows: dead events, 50 after the 500th",
            RowQuery::new(Kind::Event)
                .states(RowStates::Dead)
                .before(deep_dead),
        ),
        (
            "rows: dead events, error contains \"timed out\"",
            RowQuery::new(Kind::Event)
                .states(RowStates::Dead)
                .error_contains("timed out"),
        ),
        (
            "rows: dead events, error matching none",
            RowQuery::new(Kind::Event)
                .states(RowStates::Dead)
                .error_contains("no such error text"),
        ),
        (
            "rows: dead mails, first 50",
            RowQuery::new(Kind::Mail).states(RowStates::Dead),
        ),
        (
            "rows: failing events, 500 (the overview's count)",
            RowQuery::new(Kind::Event)
                .states(RowStates::Failing)
                .limit(RowQuery::MAX_LIMIT),
        ),
        (
            "rows: failing events, first 50",
            RowQuery::new(Kind::Event).states(RowStates::Failing),
        ),
        (
            "rows: dead events of source \"default\"",
            RowQuery::new(Kind::Event)
                .states(RowStates::Dead)
                .source("default"),
        ),
        (
            "rows: dead events of a source with none",
            RowQuery::new(Kind::Event)
                .states(RowStates::Dead)
                .source("other"),
        ),
    ];
    for (name, q) in queries {
        time(name, n, || rows(q.clone())).await;
    }

    // The pages, over HTTP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let users = Users::parse_list("bench:bench-password-123").unwrap();
    tokio::spawn(cmc_receiver::serve::serve(
        listener,
        console::router(Console::new(inbox.clone(), users, false)),
        cmc_receiver::serve::Limits::default(),
        std::future::pending(),
    ));
    let cookie = login(addr).await;
    let q = console::html::query_escape;
    let pages = [
        ("page: overview /".to_owned(), "/".to_owned()),
        (
            "page: search by Message-ID".to_owned(),
            format!("/search?q={}", q(&message_id)),
        ),
        (
            "page: search by recipient".to_owned(),
            format!("/search?q={}", q(&recipient)),
        ),
        (
            "page: search by subject words".to_owned(),
            "/search?q=invoice+march".to_owned(),
        ),
        (
            "page: timeline".to_owned(),
            format!("/message?id={}", q(&message_id)),
        ),
        (
            "page: dead events".to_owned(),
            "/rows?kind=event&state=dead".to_owned(),
        ),
        (
            "page: dead events, error filter".to_owned(),
            "/rows?kind=event&state=dead&error=timed+out".to_owned(),
        ),
        (
            "page: failing events".to_owned(),
            "/rows?kind=event&state=failing".to_owned(),
        ),
        (
            "page: dead events, error filter matching none".to_owned(),
            "/rows?kind=event&state=dead&error=no+such+error+text".to_owned(),
        ),
        (
            "page: dead events of a source with none".to_owned(),
            "/rows?kind=event&state=dead&source=other".to_owned(),
        ),
        (
            "page: replay confirmation, a filter".to_owned(),
            "/replay?scope=filter&kind=event&error=timed+out".to_owned(),
        ),
        (
            "page: replay confirmation, a filter matching none".to_owned(),
            "/replay?scope=filter&kind=event&error=no+such+error+text".to_owned(),
        ),
    ];
    println!("\n| page | bytes | median ms | max ms |\n|---|---:|---:|---:|");
    // The overview's first view: a new console each time, whose cache
    // of closed hours is empty (the receiver fills it at start with
    // `Console::warm`; a view before that ends is this one): first with
    // no hour kept in the store (the first view ever, which counts the
    // week's closed hours and keeps them), then with them kept (every
    // first view of a console after that).
    for (what, forget) in [
        ("first view ever (the store's hours emptied first)", true),
        ("first view of a new console (hours kept)", false),
    ] {
        let mut firsts = Vec::new();
        let mut len = 0;
        for _ in 0..n.clamp(1, 5) {
            if forget {
                forget_hours(&url).await;
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let fresh = listener.local_addr().unwrap();
            let users = Users::parse_list("bench:bench-password-123").unwrap();
            tokio::spawn(cmc_receiver::serve::serve(
                listener,
                console::router(Console::new(inbox.clone(), users, false)),
                cmc_receiver::serve::Limits::default(),
                std::future::pending(),
            ));
            let cookie = login(fresh).await;
            let start = Instant::now();
            let (status, bytes) = get(fresh, "/", &cookie).await;
            firsts.push(start.elapsed());
            assert_eq!(status, 200);
            len = bytes;
        }
        firsts.sort();
        println!(
            "| page: overview /, {what} | {len} | {:.2} | {:.2} |",
            firsts[firsts.len() / 2].as_secs_f64() * 1e3,
            firsts.last().unwrap().as_secs_f64() * 1e3
        );
    }
    for (name, path) in pages {
        let cookie = &cookie;
        time(&name, n, || {
            let path = path.clone();
            Box::pin(async move {
                let (status, len) = get(addr, &path, cookie).await;
                assert_eq!(status, 200, "{path}");
                len
            })
        })
        .await;
    }
}
