//! Receives CMC webhooks, stores them in the inbox before answering 200,
//! and prints them: one JSON line per event and per inbound mail on stdout
//! (written by the inbox's worker, after the commit), logs on stderr.
//!
//! ```text
//! cargo run --example receiver                       # 127.0.0.1:8080, loopback allowed,
//!                                                    # stored in ./cmc-inbox.sqlite3
//! cargo run --example receiver -- --listen '[::]:8080' --allow 203.0.113.0/24 --api-key KEY
//! cargo run --example receiver -- counts             # rows per state
//! cargo run --example receiver -- dead               # dead rows and their errors
//! cargo run --example receiver -- replay --dead      # handle them again
//! cargo run --example receiver -- history '<id@example.com>'
//! cargo run --example receiver -- prune --retain 30d
//! ```
//!
//! Try it from a second terminal with the sample requests:
//! `cargo run --features test-util --example post`.

#[path = "app.rs"]
mod app;
#[path = "serve.rs"]
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use cmc_webhook::inbox::{Filter, Inbox, Kind};
use cmc_webhook::IdempotencyKey;
use ipnet::IpNet;

/// Receive Customers Mail Cloud webhooks on POST /mails, store them in the
/// inbox before answering 200, and print them as JSON lines (events and
/// inbound mails) on stdout; logs go to stderr.
#[derive(Debug, Parser)]
#[command(name = "receiver")]
struct Args {
    /// Where webhooks are stored: sqlite:PATH, postgres://USER@HOST:PORT/DB
    /// (built with --features postgres; several receivers may share one
    /// database), or none (printed before the 200, not stored).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = "sqlite:cmc-inbox.sqlite3"
    )]
    store: String,

    /// Done rows older than this are deleted (hourly while serving, and by
    /// `prune`): 30d, 12h, 90m, 3600s.
    #[arg(long, global = true, value_name = "AGE", default_value = "30d", value_parser = parse_age)]
    retain: Duration,

    #[command(subcommand)]
    command: Option<Command>,

    /// Address to listen on: IPv4 or IPv6, e.g. 0.0.0.0:8080 or [::]:8080.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Allowed client network (CIDR or address); repeatable. Default:
    /// loopback only (127.0.0.0/8 and ::1).
    #[arg(long, value_name = "CIDR")]
    allow: Vec<IpNet>,

    /// Trusted proxy network whose X-Forwarded-For is believed; repeatable.
    #[arg(long, value_name = "CIDR")]
    trust_proxy: Vec<IpNet>,

    /// Largest accepted body in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 25 * 1024 * 1024)]
    body_limit: usize,

    /// Required api_key (as set in the CMC console); repeatable for rotation.
    #[arg(long, value_name = "KEY")]
    api_key: Vec<String>,

    /// Write inbound attachments into this directory, under sanitised names.
    #[arg(long, value_name = "DIR")]
    save_dir: Option<PathBuf>,

    /// Seconds a client may take to send a request's headers (and a
    /// keep-alive connection may stay idle).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    header_timeout: u64,

    /// Seconds a request may take from its headers to its answer; the body
    /// must arrive within it (408 otherwise).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    body_timeout: u64,

    /// The most connections open at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = 512)]
    max_connections: usize,

    /// The most requests one connection may carry before it is closed.
    #[arg(long, value_name = "N", default_value_t = 100)]
    max_requests_per_connection: usize,

    /// Seconds a connection may stay open; it is closed after the request
    /// it is carrying then.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    max_connection_age: u64,

    /// Handlers the worker runs at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    concurrency: usize,

    /// Runs of the handler per row before it is dead.
    #[arg(long, value_name = "N", default_value_t = 12)]
    max_attempts: u32,

    /// Seconds the handlers in flight get to finish at shutdown.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    shutdown_timeout: u64,
}

/// Operations on the store (without a subcommand, the receiver serves).
#[derive(Debug, Subcommand)]
enum Command {
    /// Rows per state.
    Counts,
    /// The dead rows, with their last errors.
    Dead {
        /// The most rows listed.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Sets done or dead rows back to pending, to be handled again.
    Replay {
        /// The row with this idempotency key (32 hex digits).
        #[arg(long, conflicts_with_all = ["message_id", "dead"])]
        key: Option<IdempotencyKey>,
        /// The rows of this sent mail's Message-ID.
        #[arg(long, conflicts_with = "dead")]
        message_id: Option<String>,
        /// Every dead row.
        #[arg(long)]
        dead: bool,
        /// Only events, or only mails.
        #[arg(long, value_parser = ["event", "mail"])]
        kind: Option<String>,
    },
    /// Every event stored for a sent mail, in order.
    History {
        /// The Message-ID, with its angle brackets.
        message_id: String,
    },
    /// Deletes the rows done before --retain.
    Prune,
}

/// `30d`, `12h`, `90m`, `3600s` (or a bare number of seconds).
fn parse_age(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and d, h, m or s"))?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => return Err(format!("{s:?}: the unit is d, h, m or s")),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let store = match args.store.as_str() {
        "none" => None,
        url => Some(
            Inbox::builder(url)
                // The subcommands read an inbox that exists: a mistyped
                // path is an error, not an empty report.
                .map(|b| b.create_if_missing(args.command.is_none()))
                .map_err(|e| format!("--store: {e}"))?
                .open()
                .await
                .map_err(|e| format!("--store: {e}"))?,
        ),
    };
    if let Some(command) = &args.command {
        let inbox =
            store.ok_or("the subcommands need a store: --store sqlite:PATH or postgres://...")?;
        return operate(&inbox, command, args.retain).await;
    }

    let allow = if args.allow.is_empty() {
        vec!["127.0.0.0/8".parse()?, "::1/128".parse()?]
    } else {
        args.allow
    };
    let options = app::Options {
        allow,
        trust_proxy: args.trust_proxy,
        body_limit: args.body_limit,
        api_keys: args.api_key,
        save_dir: args.save_dir,
    };
    if let Some(dir) = &options.save_dir {
        // Refuse to start rather than fail every mail later.
        app::check_save_dir(dir).map_err(|e| format!("--save-dir {}: {e}", dir.display()))?;
    }
    // A closed stdout (`receiver | head`) must not fail the requests: the
    // lines are lost, and said so once.
    let warned = std::sync::atomic::AtomicBool::new(false);
    let sink: app::Sink = Arc::new(move |line| {
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), "{line}").is_err()
            && !warned.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::error!("stdout is closed: the lines of accepted webhooks are lost");
        }
    });
    let (router, worker) = match &store {
        Some(inbox) => {
            let printer = app::Printer::new(&options, sink);
            let worker = inbox
                .worker(move |job| printer.clone().handle(job))
                .concurrency(args.concurrency)
                .max_attempts(args.max_attempts)
                .spawn();
            (
                app::router(&options, app::Target::Inbox(inbox.clone()))?,
                Some(worker),
            )
        }
        None => (app::router(&options, app::Target::Print(sink))?, None),
    };
    if let Some(inbox) = store.clone() {
        let retain = args.retain;
        tokio::spawn(async move {
            let mut hourly = tokio::time::interval(Duration::from_secs(3600));
            loop {
                hourly.tick().await;
                match inbox.prune(retain).await {
                    Ok(p) if p.events + p.mails > 0 => {
                        tracing::info!(events = p.events, mails = p.mails, "pruned done rows")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "could not prune"),
                }
            }
        });
    }

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let allowed: Vec<String> = options.allow.iter().map(ToString::to_string).collect();
    tracing::info!(
        "listening on http://{}/mails, allowing {}, storing in {}",
        listener.local_addr()?,
        allowed.join(", "),
        store
            .as_ref()
            .map_or("nowhere (printed before the 200)", |i| i.describe())
    );
    let limits = serve::Limits {
        header_timeout: Duration::from_secs(args.header_timeout),
        body_timeout: Duration::from_secs(args.body_timeout),
        max_connections: args.max_connections,
        max_requests_per_connection: args.max_requests_per_connection,
        max_connection_age: Duration::from_secs(args.max_connection_age),
    };
    serve::serve(listener, router, limits, stop_signal()).await?;
    if let Some(worker) = worker {
        tracing::info!("stopped receiving; letting the handlers in flight finish");
        let stopped = worker
            .shutdown(Duration::from_secs(args.shutdown_timeout))
            .await?;
        tracing::info!(
            done = stopped.done,
            failed = stopped.failed,
            released = stopped.released,
            "the worker has stopped"
        );
    }
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The subcommands.
async fn operate(
    inbox: &Inbox,
    command: &Command,
    retain: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Counts => print!("{}", inbox.counts().await?),
        Command::Dead { limit } => {
            for row in inbox.dead(*limit).await? {
                println!(
                    "{}\t{}\t{}\tattempts {}\t{}",
                    row.id,
                    row.key,
                    row.summary,
                    row.attempts,
                    row.last_error.as_deref().unwrap_or("-")
                );
            }
        }
        Command::Replay {
            key,
            message_id,
            dead,
            kind,
        } => {
            let mut filter = match (key, message_id, dead) {
                (Some(key), _, _) => Filter::key(*key),
                (_, Some(id), _) => Filter::message_id(id.clone()),
                (_, _, true) => Filter::dead(),
                _ => return Err("replay what? --key KEY, --message-id ID or --dead".into()),
            };
            if let Some(kind) = kind {
                filter = filter.kind(if kind == "mail" {
                    Kind::Mail
                } else {
                    Kind::Event
                });
            }
            println!("{} rows replayed", inbox.replay(&filter).await?);
        }
        Command::History { message_id } => {
            for entry in inbox.history(message_id).await? {
                let line = serde_json::json!({
                    "key": entry.key,
                    "received_at": entry.received_at.to_string(),
                    "state": entry.state.as_str(),
                    "attempts": entry.attempts,
                    "last_error": entry.last_error,
                    "event": entry.event,
                });
                println!("{line}");
            }
        }
        Command::Prune => {
            let pruned = inbox.prune(retain).await?;
            println!("pruned {} events and {} mails", pruned.events, pruned.mails);
        }
    }
    Ok(())
}
