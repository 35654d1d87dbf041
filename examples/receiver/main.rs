//! Receives CMC webhooks and prints them: one JSON line per event and per
//! inbound mail on stdout, logs on stderr.
//!
//! ```text
//! cargo run --example receiver                       # 127.0.0.1:8080, loopback allowed
//! cargo run --example receiver -- --listen '[::]:8080' --allow 203.0.113.0/24 --api-key KEY
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

use clap::Parser;
use ipnet::IpNet;

/// Receive Customers Mail Cloud webhooks on POST /mails and print them as
/// JSON lines (events and inbound mails) on stdout; logs go to stderr.
#[derive(Debug, Parser)]
#[command(name = "receiver")]
struct Args {
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
        // Refuse to start rather than answer 500 to every mail later.
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
    let router = app::router(&options, sink)?;

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let allowed: Vec<String> = options.allow.iter().map(ToString::to_string).collect();
    tracing::info!(
        "listening on http://{}/mails, allowing {}",
        listener.local_addr()?,
        allowed.join(", ")
    );
    let limits = serve::Limits {
        header_timeout: std::time::Duration::from_secs(args.header_timeout),
        body_timeout: std::time::Duration::from_secs(args.body_timeout),
        max_connections: args.max_connections,
        max_requests_per_connection: args.max_requests_per_connection,
        max_connection_age: std::time::Duration::from_secs(args.max_connection_age),
    };
    serve::serve(listener, router, limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
