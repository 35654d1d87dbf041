//! The command line: reads the arguments and the environment, then serves
//! or runs a subcommand.
//!
//! ```text
//! cmc-receiver                                    # 127.0.0.1:8080, loopback allowed,
//!                                                 # stored in ./cmc-inbox.sqlite3
//! CMC_API_KEY=KEY cmc-receiver --listen '[::]:8080' --allow 203.0.113.0/24
//! cmc-receiver counts                             # rows per state, relay targets' states
//! cmc-receiver counts --source sandbox            # ...of one CMC account ([[source]])
//! cmc-receiver dead                               # dead rows and their errors
//! cmc-receiver replay --dead                      # handle them again
//! cmc-receiver history '<id@example.com>'
//! cmc-receiver prune --retain 30d                # and raw requests past --raw-retain
//! cmc-receiver reparse                            # kept requests read again: a dry run
//! cmc-receiver reparse --apply                    # ...adding what is new
//! cmc-receiver migrate                            # the schema's migrations, then exit
//! ```
//!
//! From a checkout, `cargo run --example receiver -- ARGS` runs the same
//! program. Try it from a second terminal with the sample requests:
//! `cargo run --features test-util --example post`.

use std::time::Duration;

use crate::config::{self, Args, Command, SuppressionCommand};
use crate::{app, output, relay, serve, tls};
use cmc_webhook_core::WebhookLayer;
use cmc_webhook_core::allowlist::AllowlistFile;
use cmc_webhook_inbox::mailbox::{DeliveryFilter, DeliveryState};
use cmc_webhook_inbox::{Filter, Inbox, InboxBuilder, Kind, StoreOptions, suppression};

/// The `cmc-receiver` program: reads the command line and the environment,
/// then serves or runs the subcommand; the exit code says how it ended.
#[tokio::main]
pub async fn main() -> std::process::ExitCode {
    // Logs go through a queue to a thread of their own: a stderr that
    // nobody reads drops log lines (counted), never stalls a request.
    let logs = output::Logs::stderr();
    tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let result = run(&logs).await;
    logs.flush(Duration::from_secs(2));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The error's own words, not its Debug form.
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Warns about each secret given as a flag on the command line (rather
/// than in the environment or a file): its value shows in `ps`.
fn warn_secret_flags() {
    use clap::CommandFactory as _;
    let matches = Args::command().ignore_errors(true).get_matches();
    for (id, instead) in [
        ("api_key", "CMC_API_KEY or --api-key-file"),
        ("basic_auth", "CMC_BASIC_AUTH or --basic-auth-file"),
        ("store", "CMC_STORE or --store-file"),
    ] {
        // A store URL is a secret only when it carries a password.
        let secret = id != "store"
            || matches
                .get_one::<config::Secret>(id)
                .is_some_and(|url| url.0.contains('@') || url.0.contains("password"));
        if secret && matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            tracing::warn!(
                "--{} was given on the command line, where every user of the machine sees it \
                 (ps): use {instead}",
                id.replace('_', "-")
            );
        }
    }
}

/// `store` with its tables in `schema`, if it is on PostgreSQL.
fn in_schema(store: StoreOptions, schema: &str) -> StoreOptions {
    match store {
        StoreOptions::Postgres(o) => StoreOptions::Postgres(o.schema(schema)),
        other => other,
    }
}

async fn run(logs: &output::Logs) -> Result<(), Box<dyn std::error::Error>> {
    let args = crate::file::load()?;
    warn_secret_flags();
    let url = args.store()?;
    // The console's users are read first: without them it never starts.
    let console_users = console_users(&args)?;

    if let Some(Command::Migrate) = &args.command {
        if url == "none" {
            return Err("migrate needs a store: --store sqlite:PATH or postgres://...".into());
        }
        let store: StoreOptions = url.parse().map_err(|e| format!("--store: {e}"))?;
        let migrated = InboxBuilder::new(in_schema(store, &args.pg_schema))
            .migrate()
            .await
            .map_err(|e| format!("--store: {e}"))?;
        println!(
            "{}",
            serde_json::json!({"applied": migrated.applied, "version": migrated.version})
        );
        return Ok(());
    }
    let store = match url.as_str() {
        "none" => None,
        url => {
            let store: StoreOptions = url.parse().map_err(|e| format!("--store: {e}"))?;
            let store = in_schema(store, &args.pg_schema);
            let raw = cmc_webhook_inbox::RawRequests::default()
                .keep(!args.no_raw_requests)
                .retention(args.raw_retain);
            let builder = match &args.command {
                // Serving migrates, and proves the store takes writes.
                None => InboxBuilder::new(store),
                // The subcommands open an inbox that exists (a mistyped
                // path is an error, not an empty report), never migrate,
                // and only those that change something may write.
                Some(command) => InboxBuilder::new(match store {
                    StoreOptions::Sqlite(o) => StoreOptions::Sqlite(o.create_if_missing(false)),
                    other => other,
                })
                .migrate_on_open(false)
                .read_only(!command.writes()),
            };
            Some(
                builder
                    .raw_requests(raw)
                    .open()
                    .await
                    .map_err(|e| format!("--store: {e}"))?,
            )
        }
    };
    if let Some(command) = &args.command {
        let inbox =
            store.ok_or("the subcommands need a store: --store sqlite:PATH or postgres://...")?;
        if let Command::Console { listen } = command {
            return console_alone(&args, inbox, console_users, *listen).await;
        }
        return operate(&inbox, command, args.retain).await;
    }

    let (options, allow_file) = args.options()?;
    if let Some(dir) = &options.save_dir {
        // Refuse to start rather than fail every mail later.
        app::check_save_dir(dir).map_err(|e| format!("--save-dir {}: {e}", dir.display()))?;
    }
    let limits = serve::Limits {
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        max_connections: args.max_connections,
        max_requests_per_connection: args.max_requests_per_connection,
        max_connection_age: args.max_connection_age,
    };
    // A value that is not Unicode is refused, not taken as absent (which
    // would serve the metrics without the credentials meant for them).
    if std::env::var_os("CMC_METRICS_AUTH").is_some_and(|v| v.to_str().is_none()) {
        return Err("CMC_METRICS_AUTH is not valid UTF-8".into());
    }
    let metrics_auth = args.metrics_auth(|name| std::env::var(name).ok())?;
    if let Some(addr) = args.metrics {
        serve_metrics(addr, metrics_auth, limits).await?;
    }
    // The lines are written by a thread of their own (see `output`); a
    // closed stdout (`receiver | head`) does not fail the requests: the
    // lines are lost, and said so once.
    let sink = output::stdout();
    let layer = app::layer(&options).map_err(|e| format!("the gate: {e}"))?;
    let printer = app::Printer::new(&options, sink.clone());
    // With --relay, the worker POSTs each row to the team's application
    // instead of printing it, and each mailbox its mails (to its own
    // --mailbox-relay URL, if it has one).
    let relay_options = args.relay.options(|name| std::env::var_os(name))?;
    if relay_options.is_some() && store.is_none() {
        return Err("--relay sends stored rows: it needs a store, not --store none".into());
    }
    let mut handler_timeout = None;
    let mut mailbox_relays = Vec::new();
    let handler = match relay_options {
        Some(options) => {
            handler_timeout = Some(options.handler_timeout());
            for (name, options) in args.relay.mailbox_relays(&options)? {
                if !args
                    .mailbox
                    .iter()
                    .any(|m| m.split_once('=').is_some_and(|(n, _)| n.trim() == name))
                {
                    return Err(
                        format!("--mailbox-relay {name}: no --mailbox {name}=PATTERN").into(),
                    );
                }
                let relay = relay::Relay::new(options)?;
                tracing::info!(
                    mailbox = name,
                    target_url = relay.target(),
                    "relaying a mailbox's mails"
                );
                mailbox_relays.push((name, relay));
            }
            let relay = relay::Relay::new(options)?;
            tracing::info!(target_url = relay.target(), "relaying each event and mail");
            relay::Handler::Relay(relay)
        }
        None => relay::Handler::Print(printer.clone()),
    };
    let relayed = match &handler {
        relay::Handler::Relay(relay) => Some(relay.clone()),
        relay::Handler::Print(_) => None,
    };
    // Each relay target's changes of state (paused, probing, closed) go
    // to the store, for `counts` and consoles in other processes; one row
    // per target and process (a mailbox's own relay is named apart, its
    // breaker being its own).
    // One recorder for all of them: one short write at a time, at most one
    // a second, on one connection of the pool.
    let recording = match &store {
        Some(inbox) if relayed.is_some() || !mailbox_relays.is_empty() => {
            let me = relay::writer_name();
            let mut recorder = relay::record::StateRecorder::new(inbox.clone());
            if let Some(relay) = &relayed {
                recorder.watch(relay, me.clone());
            }
            for (name, relay) in &mailbox_relays {
                recorder.watch(relay, format!("{me}, mailbox {name}"));
            }
            Some(recorder.spawn())
        }
        _ => None,
    };
    let mailboxes = app::mailboxes_with(
        &args.mailbox,
        &printer,
        args.max_attempts,
        args.retain,
        |name| {
            let own = mailbox_relays
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, r)| r);
            own.or(relayed.as_ref()).map(relay::Relay::mailbox_handler)
        },
    )?;
    if mailboxes.is_some() && store.is_none() {
        return Err("--mailbox routes stored mails: it needs a store, not --store none".into());
    }
    let (router, worker) = match &store {
        Some(inbox) => {
            let mut worker = inbox
                .worker(move |job| handler.clone().handle(job))
                .concurrency(args.concurrency)
                .max_attempts(args.max_attempts)
                .suppressions(app::suppression_policy(&options));
            if let Some(limit) = handler_timeout {
                worker = worker.handler_timeout(limit);
            }
            if let Some(mailboxes) = mailboxes {
                worker = worker.mailboxes(mailboxes);
            }
            let worker = worker.spawn();
            (
                app::router_with(
                    layer.clone(),
                    app::Target::Inbox(inbox.clone()),
                    app::budget(&options),
                ),
                Some(worker),
            )
        }
        None => (
            app::router_with(
                layer.clone(),
                app::Target::Print(printer.clone()),
                app::budget(&options),
            ),
            None,
        ),
    };
    // The answers of this run, by status, for the summary on exit.
    let answered = serve::Tally::default();
    if let Some(inbox) = store.clone() {
        let retain = args.retain;
        tokio::spawn(async move {
            let mut hourly = tokio::time::interval(Duration::from_secs(3600));
            loop {
                hourly.tick().await;
                match inbox.prune(retain).await {
                    Ok(p) if p.events + p.mails + p.raw_requests > 0 => {
                        tracing::info!(
                            events = p.events,
                            mails = p.mails,
                            raw_requests = p.raw_requests,
                            "pruned done rows and raw requests"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "could not prune"),
                }
            }
        });
    }
    // The allowlist file: read again when it changes, and on SIGHUP.
    let watch = match allow_file {
        Some(file) => Some(file.watch(Duration::from_secs(2))?),
        None => None,
    };
    // The certificate and key: refused at start if they cannot be served,
    // then read again when they change, and on SIGHUP.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(tls::Tls::load(cert, key).map_err(|e| format!("--tls-cert, --tls-key: {e}"))?)
        }
        _ => None,
    };
    let tls_watch = tls.as_ref().map(|t| t.watch(tls::WATCH_EVERY));
    signals(
        watch.as_ref().map(|w| w.file().clone()),
        tls.clone(),
        layer.clone(),
    );

    if let Some(addr) = args.console {
        let inbox = store
            .clone()
            .ok_or("--console shows a store: it needs one, not --store none")?;
        let mut relays: Vec<relay::Relay> = relayed.iter().cloned().collect();
        relays.extend(mailbox_relays.iter().map(|(_, r)| r.clone()));
        serve_console(
            addr,
            inbox,
            console_users,
            ConsoleSides {
                relays,
                layer: Some(layer.clone()),
                hosts: args.console_host.clone(),
            },
            limits,
            tls.clone(),
        )
        .await?;
    }

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let mut allowed: Vec<String> = options.allow.iter().map(ToString::to_string).collect();
    if let Some(path) = &args.allow_file {
        allowed.push(format!("the networks of {}", path.display()));
    }
    tracing::info!(
        "listening on {}://{}/mails, allowing {}{}, storing in {}",
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        if allowed.is_empty() {
            "nobody".to_owned()
        } else {
            allowed.join(", ")
        },
        if args.report_only {
            " (report-only: everyone else admitted and listed)"
        } else {
            ""
        },
        store
            .as_ref()
            .map_or("nowhere (printed before the 200)", |i| i.describe())
    );
    if !options.sources.is_empty() {
        for source in layer.sources() {
            tracing::info!(
                source = source.name(),
                path = source.path().unwrap_or("/mails"),
                time_zone = source.time_zone().iana_name().unwrap_or("(fixed offset)"),
                "serving a CMC account"
            );
        }
    }
    serve::serve_with(
        listener,
        router,
        limits,
        stop_signal(),
        answered.clone(),
        tls.as_ref(),
    )
    .await?;
    drop(tls_watch);
    let mut stopped = None;
    if let Some(worker) = worker {
        tracing::info!("stopped receiving; letting the handlers in flight finish");
        stopped = Some(worker.shutdown(args.shutdown_timeout).await?);
    }
    // This process's targets' states go with it: not shown beside the
    // live processes' as if it still sent.
    if let Some(recording) = recording {
        recording.stop().await;
    }
    drop(watch);
    let mut out = String::new();
    summary(
        &mut out,
        &answered,
        &printer,
        stopped,
        store.as_ref(),
        &layer,
    )
    .await;
    if let Some(relay) = relayed {
        let (ok, failed) = relay.attempts();
        say!(
            out,
            "relay      {ok} attempts answered 2xx, {failed} failed, paused {} times ({})",
            relay.breaker().pauses(),
            relay.target()
        );
    }
    logs.flush(Duration::from_secs(2));
    if logs.dropped() > 0 {
        say!(
            out,
            "logs       {} lines dropped: stderr was not being read",
            logs.dropped()
        );
    }
    // Written by a thread of its own, waited for 5 s at most: a stderr
    // nobody reads must not keep the process from exiting.
    write_stderr_within(out, Duration::from_secs(5));
    Ok(())
}

/// A line into `out` (a summary built first, written at once).
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}
use say;

/// Writes `text` to stderr on a thread of its own, and waits for it at
/// most `wait`.
fn write_stderr_within(text: String, wait: Duration) {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let _ = std::thread::Builder::new()
        .name("summary-writer".into())
        .spawn(move || {
            use std::io::Write as _;
            let _ = std::io::stderr().write_all(text.as_bytes());
            let _ = done.send(());
        });
    let _ = finished.recv_timeout(wait);
}

/// What this run did, for stderr: the answers by status, what was printed,
/// the inbox's rows, and the clients seen outside the allowlist.
async fn summary(
    out: &mut String,
    answered: &serve::Tally,
    printer: &app::Printer,
    stopped: Option<cmc_webhook_inbox::Stopped>,
    inbox: Option<&Inbox>,
    layer: &WebhookLayer,
) {
    let answered = answered.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let total: u64 = answered.values().sum();
    let by_status: Vec<String> = answered.iter().map(|(s, n)| format!("{n} x {s}")).collect();
    let (events, mails) = printer.printed();
    say!(out, "--- this run ---");
    say!(
        out,
        "requests   {total}{}",
        if by_status.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_status.join(", "))
        }
    );
    say!(out, "printed    {events} events, {mails} mails");
    if printer.dropped() > 0 {
        say!(
            out,
            "dropped    {} lines of unrouted mails: stdout was not being read (the mails are kept)",
            printer.dropped()
        );
    }
    if let Some(s) = stopped {
        say!(
            out,
            "worker     {} done, {} bounced, {} failed, {} released at shutdown",
            s.done,
            s.bounced,
            s.failed,
            s.released
        );
    }
    if let Some(inbox) = inbox {
        match inbox.counts().await {
            Ok(counts) => {
                for line in counts.to_string().lines() {
                    say!(out, "inbox      {line}");
                }
            }
            Err(e) => say!(out, "inbox      could not be counted: {e}"),
        }
        if let Ok(boxes) = inbox.deliveries().counts().await {
            for c in boxes {
                let states: Vec<String> = DeliveryState::ALL
                    .iter()
                    .filter(|s| c.get(**s) > 0)
                    .map(|s| format!("{s} {}", c.get(*s)))
                    .collect();
                say!(
                    out,
                    "mailbox    {}: {}",
                    c.mailbox.as_deref().unwrap_or("(unrouted)"),
                    states.join(", ")
                );
            }
        }
    }
    print_unlisted(out, layer);
}

/// The clients seen outside the allowlist, ready to paste into --allow.
fn print_unlisted(out: &mut String, layer: &WebhookLayer) {
    let clients = layer.unlisted_clients();
    if clients.is_empty() {
        if layer.is_report_only() {
            say!(
                out,
                "unlisted   no client outside the allowlist sent an accepted webhook"
            );
        }
        return;
    }
    say!(
        out,
        "unlisted   {} client{} outside the allowlist ({}):",
        clients.len(),
        if clients.len() == 1 { "" } else { "s" },
        if layer.is_report_only() {
            "admitted, report-only"
        } else {
            "refused"
        }
    );
    for client in &clients {
        say!(out, "             {client}");
    }
    if layer.unlisted_overflow() > 0 {
        say!(
            out,
            "             and {} requests from further addresses, not listed",
            layer.unlisted_overflow()
        );
    }
    let addresses: Vec<String> = clients.iter().map(|c| c.addr.to_string()).collect();
    say!(out, "             --allow {}", addresses.join(","));
}

/// SIGHUP reloads the allowlist file and the certificate; SIGUSR1 prints
/// the unlisted clients.
fn signals(file: Option<AllowlistFile>, tls: Option<tls::Tls>, layer: WebhookLayer) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    if file.is_none() && tls.is_none() {
                        tracing::info!("SIGHUP: no --allow-file or --tls-cert to read again");
                    }
                    // A failed reload logs why and keeps what is in force.
                    // Off the runtime's threads: a slow disk must not stall
                    // the requests.
                    if let Some(file) = &file {
                        let file = file.clone();
                        let _ = tokio::task::spawn_blocking(move || file.reload()).await;
                    }
                    if let Some(tls) = &tls {
                        let tls = tls.clone();
                        let _ = tokio::task::spawn_blocking(move || match tls.reload() {
                            Ok(()) => tracing::info!(
                                cert = %tls.cert_path().display(),
                                "SIGHUP: read the certificate and key again; new connections get them"
                            ),
                            Err(e) => tracing::warn!(
                                error = %e,
                                "SIGHUP: the certificate or key cannot be served; keeping the pair in use"
                            ),
                        })
                        .await;
                    }
                }
            });
        }
        if let Ok(mut usr1) = signal(SignalKind::user_defined1()) {
            tokio::spawn(async move {
                while usr1.recv().await.is_some() {
                    // Off the runtime's threads: stderr may not be read.
                    let layer = layer.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        if layer.is_report_only() {
                            let mut out = String::new();
                            print_unlisted(&mut out, &layer);
                            eprint!("{out}");
                        } else {
                            eprintln!(
                                "unlisted   not in report-only mode: refused clients are in the log"
                            );
                        }
                    })
                    .await;
                }
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (file, layer);
}

/// The console's users when the console is asked for (`--console` or the
/// `console` subcommand): an error when it is asked for without them, or
/// when this build has no console.
#[cfg(feature = "console")]
type ConsoleUsers = Option<crate::console::auth::Users>;
#[cfg(not(feature = "console"))]
type ConsoleUsers = Option<std::convert::Infallible>;

fn console_users(args: &Args) -> Result<ConsoleUsers, String> {
    let wanted = args.console.is_some() || matches!(args.command, Some(Command::Console { .. }));
    if !wanted {
        return Ok(None);
    }
    #[cfg(feature = "console")]
    {
        if std::env::var_os("CMC_CONSOLE_AUTH").is_some_and(|v| v.to_str().is_none()) {
            return Err("CMC_CONSOLE_AUTH is not valid UTF-8".into());
        }
        args.console_users(|name| std::env::var(name).ok())
            .map(Some)
    }
    #[cfg(not(feature = "console"))]
    Err("this build of cmc-receiver has no console (the feature `console` is off)".into())
}

/// The limits of the serve loop from the flags.
fn limits_of(args: &Args) -> serve::Limits {
    serve::Limits {
        header_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        max_connections: args.max_connections.min(CONSOLE_CONNECTIONS),
        max_requests_per_connection: args.max_requests_per_connection,
        max_connection_age: args.max_connection_age,
    }
}

/// The most connections the console serves at once.
const CONSOLE_CONNECTIONS: usize = 64;

/// What the console shows besides the store, and the names it answers to.
/// (Without the feature `console`, built and refused unread.)
#[cfg_attr(not(feature = "console"), allow(dead_code))]
struct ConsoleSides {
    /// The relay targets whose state the overview shows.
    relays: Vec<relay::Relay>,
    /// The receiver's layer, for learning mode (none when alone).
    layer: Option<WebhookLayer>,
    /// `--console-host`.
    hosts: Vec<String>,
}

/// Serves the console on `addr` on a task of its own, beside the
/// receiver: over HTTPS when the receiver's `tls` is set.
#[cfg(feature = "console")]
async fn serve_console(
    addr: std::net::SocketAddr,
    inbox: Inbox,
    users: ConsoleUsers,
    sides: ConsoleSides,
    limits: serve::Limits,
    tls: Option<tls::Tls>,
) -> Result<(), Box<dyn std::error::Error>> {
    let ConsoleSides {
        relays,
        layer,
        hosts,
    } = sides;
    let users = users.ok_or("the console needs its users")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--console {addr}: {e}"))?;
    let console = crate::console::Console::with_relays(inbox, users, tls.is_some(), relays);
    if let Some(layer) = layer {
        console.learn_from(layer);
    }
    // The chart's closed hours are counted in the background at start.
    let warm = console.clone();
    tokio::spawn(async move { warm.warm().await });
    tracing::info!(
        "console on {}://{}/",
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr()?
    );
    let limits = serve::Limits {
        max_connections: limits.max_connections.min(CONSOLE_CONNECTIONS),
        ..limits
    };
    tokio::spawn(async move {
        if let Err(e) = serve::serve_with(
            listener,
            crate::console::router_for(console, crate::console::host::Hosts::new(hosts)),
            limits,
            stop_signal(),
            serve::Tally::default(),
            tls.as_ref(),
        )
        .await
        {
            tracing::error!(error = %e, "the console's listener stopped");
        }
    });
    Ok(())
}

#[cfg(not(feature = "console"))]
async fn serve_console(
    _addr: std::net::SocketAddr,
    _inbox: Inbox,
    _users: ConsoleUsers,
    _sides: ConsoleSides,
    _limits: serve::Limits,
    _tls: Option<tls::Tls>,
) -> Result<(), Box<dyn std::error::Error>> {
    Err("this build of cmc-receiver has no console (the feature `console` is off)".into())
}

/// `cmc-receiver console`: only the console, until a signal.
async fn console_alone(
    args: &Args,
    inbox: Inbox,
    users: ConsoleUsers,
    listen: std::net::SocketAddr,
) -> Result<(), Box<dyn std::error::Error>> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(tls::Tls::load(cert, key).map_err(|e| format!("--tls-cert, --tls-key: {e}"))?)
        }
        _ => None,
    };
    let _watch = tls.as_ref().map(|t| t.watch(tls::WATCH_EVERY));
    serve_console(
        listen,
        inbox,
        users,
        ConsoleSides {
            relays: Vec::new(),
            layer: None,
            hosts: args.console_host.clone(),
        },
        limits_of(args),
        tls,
    )
    .await?;
    stop_signal().await;
    Ok(())
}

/// Installs the Prometheus recorder and serves `GET /metrics` on `addr`
/// with the receiver's own serve loop: the main listener's timeouts, a cap
/// of [`serve::METRICS_MAX_CONNECTIONS`], and `auth` when given.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    auth: Vec<config::Basic>,
    limits: serve::Limits,
) -> Result<(), Box<dyn std::error::Error>> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("--metrics {addr}: {e}"))?;
    cmc_webhook_core::describe_metrics();
    cmc_webhook_inbox::describe_metrics();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--metrics {addr}: {e}"))?;
    // Without the exporter's own listener, its upkeep (draining the
    // histograms) is ours to run.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let protected = !auth.is_empty();
    let auth = auth
        .into_iter()
        .map(|b| cmc_webhook_core::auth::BasicCredentials::new(b.user, b.password))
        .collect();
    let router = serve::metrics_router(std::sync::Arc::new(move || handle.render()), auth);
    let limits = serve::Limits {
        max_connections: serve::METRICS_MAX_CONNECTIONS.min(limits.max_connections),
        ..limits
    };
    tokio::spawn(async move {
        if let Err(e) = serve::serve(listener, router, limits, std::future::pending()).await {
            tracing::error!(error = %e, "the metrics listener stopped");
        }
    });
    tracing::info!(
        "metrics on http://{addr}/metrics{}",
        if protected {
            " (BASIC auth)"
        } else {
            " (no auth: keep it on an internal address)"
        }
    );
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
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
        Command::Counts { source, recount } => {
            if *recount {
                let fixed = inbox.recount().await?;
                if fixed.is_empty() {
                    println!("recount: every count was right");
                }
                // (Scopes are sources and mailboxes, names from the
                // configuration, or as stored: printed escaped.)
                for c in fixed {
                    println!(
                        "recount: {} {} {}: {} -> {}",
                        c.table,
                        cmc_webhook_core::printable(&c.scope, 200),
                        cmc_webhook_core::printable(&c.state, 40),
                        c.was,
                        c.now
                    );
                }
            }
            match source {
                Some(source) => print!("{}", inbox.counts_of(source).await?),
                None => print!("{}", inbox.counts().await?),
            }
            // The relay targets' states, as the receivers recorded them
            // (every source's: a target is not one account's), against
            // the store's clock, which they were recorded on.
            let now = inbox.now();
            // (The texts written as stored, control characters escaped: a
            // row written by hand cannot reach the terminal.)
            for state in inbox.target_states().await? {
                println!(
                    "target {}  {}  (by {}, changed {:.0}, {} pauses)",
                    cmc_webhook_core::printable(&state.target, 1000),
                    relay::describe_state(&state, now),
                    cmc_webhook_core::printable(&state.writer, 200),
                    state.changed_at,
                    state.pauses
                );
            }
        }
        Command::Dead { limit, source } => {
            let rows = match source {
                Some(source) => inbox.dead_of(source, *limit).await?,
                None => inbox.dead(*limit).await?,
            };
            for row in rows {
                println!("{}", app::dead_line(&row));
            }
        }
        Command::Replay {
            key,
            message_id,
            dead,
            kind,
            source,
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
            if let Some(source) = source {
                filter = filter.source(source.clone());
            }
            println!("{} rows replayed", inbox.replay(&filter).await?);
        }
        Command::History { message_id, source } => {
            let history = match source {
                Some(source) => inbox.history_of(source, message_id).await?,
                None => inbox.history(message_id).await?,
            };
            for bad in history.unreadable() {
                eprintln!(
                    "row {} does not read back, skipped: {}",
                    bad.id,
                    cmc_webhook_core::printable(&bad.error, 500)
                );
            }
            for entry in history {
                let line = serde_json::json!({
                    "key": entry.key,
                    "source": entry.source,
                    "received_at": entry.received_at.to_string(),
                    "state": entry.state.as_str(),
                    "attempts": entry.attempts,
                    "last_error": entry.last_error,
                    "event": entry.event,
                });
                println!("{line}");
            }
        }
        Command::Suppressions { action } => suppressions(inbox, action).await?,
        Command::Mailboxes {
            list,
            name,
            unrouted,
            state,
            limit,
            after,
            replay,
        } => {
            let mut filter = if *unrouted {
                DeliveryFilter::unrouted()
            } else {
                DeliveryFilter::all()
            };
            if let Some(name) = name {
                filter = filter.mailbox(name.clone());
            }
            let state = state
                .as_deref()
                .map(str::parse::<DeliveryState>)
                .transpose()?;
            if let Some(state) = state {
                filter = filter.states([state]);
            }
            let deliveries = inbox.deliveries();
            if *replay {
                let r = deliveries.replay(&filter).await?;
                println!(
                    "{} deliveries replayed, {} mails routed again",
                    r.deliveries, r.rerouted
                );
            } else if *list {
                for d in deliveries.list(&filter.limit(*limit).after(*after)).await? {
                    let line = serde_json::json!({
                        "id": d.id,
                        "mail": d.mail_id,
                        "mailbox": d.mailbox,
                        "state": d.state.as_str(),
                        "recipients": d.recipients,
                        "route": d.route,
                        "from": d.envelope_from,
                        "subject": d.subject,
                        "attempts": d.attempts,
                        "last_error": d.last_error,
                        "bounce_reason": d.bounce_reason,
                        "routed_at": d.created_at.to_string(),
                        "done_at": d.done_at.map(|t| t.to_string()),
                    });
                    println!("{line}");
                }
            } else {
                let wanted = |c: &cmc_webhook_inbox::mailbox::MailboxCounts| match (name, unrouted)
                {
                    (Some(name), _) => c.mailbox.as_deref() == Some(name.as_str()),
                    (None, true) => c.mailbox.is_none(),
                    (None, false) => true,
                };
                for c in deliveries.counts().await?.into_iter().filter(wanted) {
                    let states: Vec<String> = DeliveryState::ALL
                        .iter()
                        .filter(|s| c.get(**s) > 0 && state.is_none_or(|only| only == **s))
                        .map(|s| format!("{s} {}", c.get(*s)))
                        .collect();
                    println!(
                        "{}\t{}",
                        c.mailbox.as_deref().unwrap_or("(unrouted)"),
                        states.join("\t")
                    );
                }
            }
        }
        // Handled before the store is opened.
        Command::Migrate => unreachable!("migrate opens no inbox"),
        Command::Console { .. } => unreachable!("the console is served by `run`"),
        Command::Prune => {
            let pruned = inbox.prune(retain).await?;
            println!(
                "pruned {} events, {} mails, {} raw requests and {} target states",
                pruned.events, pruned.mails, pruned.raw_requests, pruned.target_states
            );
        }
        Command::Reparse { apply, id, after } => {
            let mut options = if *apply {
                cmc_webhook_inbox::Reparse::apply()
            } else {
                cmc_webhook_inbox::Reparse::dry_run()
            }
            .after(*after);
            if !id.is_empty() {
                options = options.ids(id.iter().copied());
            }
            let report = inbox.reparse(&options).await?;
            for r in &report.requests {
                let new: Vec<serde_json::Value> = r
                    .new
                    .iter()
                    .map(|(kind, key)| serde_json::json!({"kind": kind.as_str(), "key": key.to_string()}))
                    .collect();
                let changed: Vec<serde_json::Value> = r
                    .changed
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "kind": c.kind.as_str(), "id": c.id,
                            "key": c.key.to_string(), "fields": c.fields,
                        })
                    })
                    .collect();
                let line = serde_json::json!({
                    "raw_request": r.id,
                    "outcome": match r.outcome {
                        cmc_webhook_inbox::RawOutcome::Refused => "refused",
                        _ => "stored",
                    },
                    "error": r.error,
                    "new": new,
                    "changed": changed,
                    "unchanged": r.unchanged,
                    "added": r.added,
                });
                println!("{line}");
            }
            println!(
                "{}",
                serde_json::json!({
                    "applied": report.applied, "read": report.read, "new": report.new,
                    "added": report.added, "changed": report.changed, "failed": report.failed,
                })
            );
        }
    }
    Ok(())
}

/// The `suppressions` subcommands: JSON lines on stdout.
async fn suppressions(
    inbox: &Inbox,
    action: &SuppressionCommand,
) -> Result<(), Box<dyn std::error::Error>> {
    let list = inbox.suppressions();
    let time = |t: Option<jiff::Timestamp>| t.map(|t| t.to_string());
    match action {
        SuppressionCommand::Check { address } => {
            let c = list.check(address).await?;
            let keeping = list.keeping().await?;
            if keeping.is_skipped_since_kept() {
                eprintln!(
                    "warning: a worker without the suppression list started at {} (after the \
                     list was first kept, at {}): bounces it handled are not on the list",
                    time(keeping.skipped).unwrap_or_default(),
                    time(keeping.since).unwrap_or_default(),
                );
            }
            let line = serde_json::json!({
                "address": c.address,
                "suppressed": c.suppressed,
                "reason": c.reason.map(|r| r.as_str()),
                "since": time(c.since),
                "until": time(c.until),
                "note": c.note,
                "list_kept_since": time(keeping.since),
            });
            out(line)?;
        }
        SuppressionCommand::List {
            all,
            reason,
            after,
            limit,
        } => {
            let mut filter = suppression::ListFilter::default();
            filter.suppressed_only = !all;
            filter.reason = match reason {
                Some(r) => Some(
                    suppression::SuppressionReason::from_column(r)
                        .ok_or_else(|| format!("--reason {r:?}: hard, soft, cmc_suppressed, unsubscribed, cmc_list or manual"))?,
                ),
                None => None,
            };
            filter.after = after.clone();
            filter.limit = *limit;
            for e in list.list(&filter).await? {
                let line = serde_json::json!({
                    "address": e.address,
                    "reason": e.reason.map(|r| r.as_str()),
                    "since": time(e.since),
                    "until": time(e.until),
                    "note": e.note,
                    "hard_bounces": e.hard_bounces,
                    "soft_bounces": e.soft_bounces,
                    "unknown_bounces": e.unknown_bounces,
                    "events": e.events.iter().map(ToString::to_string).collect::<Vec<_>>(),
                });
                out(line)?;
            }
        }
        SuppressionCommand::Add {
            address,
            note,
            lasts,
        } => {
            // What happened, truthfully: `added` is true only when the
            // list now suppresses the address because of this entry.
            let done = list.add(address, *lasts, note).await?;
            let mut line = serde_json::json!({
                "address": done.address,
                "added": !matches!(done.outcome, suppression::AddOutcome::Unchanged { .. }),
                "outcome": done.outcome.as_str(),
                "until": time(done.until),
            });
            match done.outcome {
                suppression::AddOutcome::Replaced {
                    previous,
                    previous_until,
                } => {
                    line["previous"] = previous.as_str().into();
                    line["previous_until"] = time(previous_until).into();
                }
                suppression::AddOutcome::Unchanged { because } => {
                    line["because"] = because.as_str().into();
                }
                _ => {}
            }
            out(line)?;
        }
        SuppressionCommand::Remove { address, note } => {
            let removed = list.remove(address, note).await?;
            println!(
                "{}",
                serde_json::json!({"address": address, "removed": removed})
            );
        }
        SuppressionCommand::History {
            address,
            limit,
            before,
        } => {
            let page = list
                .history_page(address, *before, usize::from(*limit))
                .await?;
            match page.older {
                Some(older) => eprintln!(
                    "{} changes in all; older ones: --before {older}",
                    page.total
                ),
                None => eprintln!("{} changes in all", page.total),
            }
            for c in page.changes {
                let line = serde_json::json!({
                    "id": c.id,
                    "change": c.change,
                    "key": c.key.map(|k| k.to_string()),
                    "reason": c.reason.map(|r| r.as_str()),
                    "note": c.note,
                    "at": c.at.to_string(),
                    "source": c.source,
                });
                out(line)?;
            }
        }
    }
    Ok(())
}

/// Writes a JSON line on stdout; a closed stdout (`| head`) ends the
/// output quietly instead of panicking.
fn out(line: serde_json::Value) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write as _;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => Ok(other?),
    }
}
