//! The receiver's application: a `POST /mails` route behind a
//! `WebhookLayer` that stores both CMC webhooks in the inbox, and the
//! worker's handler that writes one JSON line per event and per inbound
//! mail (and saves attachments). Without a store (`--store none`) the
//! route writes the lines itself. Kept apart from `main.rs` so that the
//! end-to-end tests run the same code.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::routing::{post, post_service};
use axum::{Extension, Router};
use cmc_webhook_core::allowlist::Allowlist;
use cmc_webhook_core::client_ip::{ClientIp, ClientIpSource, ForwardedHeader};
use cmc_webhook_core::ipnet::IpNet;
use cmc_webhook_core::{
    Attachment, ConfigError, Event, InboundMail, Source, SourceBuilder, Sourced, Webhook,
    WebhookLayer, default_time_zone, source::DEFAULT_SOURCE,
};
use cmc_webhook_inbox::mailbox::{MailJob, Mailbox, Mailboxes, Unrouted};
use cmc_webhook_inbox::{Inbox, Item, Job};
use serde_json::{Value, json};

use crate::output::{Lines, Stalled};

/// What the receiver is configured with (its command-line flags).
///
/// [`Options::default`] is what the flags give when none is set: no
/// allowlist, no credentials, and the `--body-limit` default,
/// [`DEFAULT_BODY_LIMIT`] (25 MiB, room for CMC's largest mails).
///
/// ```
/// let options = cmc_receiver::app::Options::default();
/// assert_eq!(options.body_limit, cmc_receiver::app::DEFAULT_BODY_LIMIT);
/// assert!(options.allow.is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    /// The networks allowed to call (`--allow`).
    pub allow: Vec<IpNet>,
    /// A list shared with a reloader (`--allow-file`), allowed besides
    /// `allow`.
    pub allowlist: Option<Allowlist>,
    /// Admit and list clients outside the allowlist (`--report-only`).
    pub report_only: bool,
    /// The proxies whose forwarded header is believed (`--trust-proxy`).
    pub trust_proxy: Vec<IpNet>,
    /// The list header that names the client behind a trusted proxy
    /// (`--forwarded-header`), when `client_ip_source` is not set.
    pub forwarded_header: ForwardedHeader,
    /// Where the client address is read from (`--client-ip-source`); a
    /// header source needs `trust_proxy`.
    pub client_ip_source: Option<ClientIpSource>,
    /// The largest request body accepted, in bytes (`--body-limit`).
    pub body_limit: usize,
    /// The `api_key`s accepted in a body (none: not checked).
    pub api_keys: Vec<String>,
    /// BASIC credentials (user, password).
    pub basic_auth: Vec<(String, String)>,
    /// Where inbound attachments are saved (`--save-dir`).
    pub save_dir: Option<PathBuf>,
    /// How lines are written (`--format`).
    pub format: Format,
    /// The in-flight budget of request body bytes (0: none).
    pub max_inflight_bytes: usize,
    /// The console's time zone of the default source (`--time-zone`).
    pub time_zone: Option<jiff::tz::TimeZone>,
    /// Named sources (`[[source]]` tables of the configuration file).
    pub sources: Vec<SourceOptions>,
}

/// The largest request body the receiver accepts unless told otherwise
/// (`--body-limit`'s default): 25 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 25 * 1024 * 1024;

impl Default for Options {
    fn default() -> Options {
        Options {
            allow: Vec::new(),
            allowlist: None,
            report_only: false,
            trust_proxy: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            client_ip_source: None,
            body_limit: DEFAULT_BODY_LIMIT,
            api_keys: Vec::new(),
            basic_auth: Vec::new(),
            save_dir: None,
            format: Format::default(),
            max_inflight_bytes: 0,
            time_zone: None,
            sources: Vec::new(),
        }
    }
}

/// A named source: one CMC account served beside the others.
#[derive(Clone)]
pub struct SourceOptions {
    /// Its name.
    pub name: String,
    /// Its `api_key`s.
    pub api_keys: Vec<String>,
    /// Its BASIC credentials (user, password).
    pub basic_auth: Vec<(String, String)>,
    /// Its own allowlist (empty: the receiver's).
    pub allow: Vec<IpNet>,
    /// Its console's time zone (none: the receiver's).
    pub time_zone: Option<jiff::tz::TimeZone>,
    /// Its own path, beside `/mails`.
    pub path: Option<String>,
}

impl std::fmt::Debug for SourceOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceOptions")
            .field("name", &self.name)
            .field("api_keys", &self.api_keys.len())
            .field(
                "basic_auth",
                &self.basic_auth.iter().map(|(u, _)| u).collect::<Vec<_>>(),
            )
            .field("allow", &self.allow)
            .field(
                "time_zone",
                &self.time_zone.as_ref().and_then(|t| t.iana_name()),
            )
            .field("path", &self.path)
            .finish()
    }
}

/// How events and mails are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// One JSON line per event and per mail.
    #[default]
    Json,
    /// One short human line per event (time, type, status, recipient) and
    /// per mail.
    Compact,
}

/// Where the JSON lines go (stdout in the example, a buffer in tests),
/// written on a thread of their own: see [`crate::output`].
pub type Sink = crate::output::Sink;

/// Where accepted webhooks go.
#[derive(Debug)]
pub enum Target {
    /// Stored in the inbox before the 200; its worker prints them.
    Inbox(Inbox),
    /// Printed before the 200, not stored.
    Print(Printer),
}

/// The gate the options describe.
pub fn layer(options: &Options) -> Result<WebhookLayer, ConfigError> {
    let mut layer = WebhookLayer::builder()
        .allow_nets(options.allow.iter().copied())
        .trust_proxies(options.trust_proxy.iter().copied())
        .body_limit(options.body_limit)
        .api_keys(options.api_keys.iter().cloned());
    for (user, password) in &options.basic_auth {
        layer = layer.basic_auth(user.clone(), password.clone());
    }
    if let Some(shared) = &options.allowlist {
        layer = layer.shared_allowlist(shared.clone());
    }
    if options.report_only {
        layer = layer.report_only();
    }
    layer = match options.client_ip_source {
        Some(source) => layer.client_ip_source(source),
        // As `--forwarded-header` always was: not refused without a proxy.
        #[allow(deprecated)]
        None => layer.forwarded_header(options.forwarded_header),
    };
    if let Some(tz) = &options.time_zone {
        layer = layer.time_zone(tz.clone());
    }
    for source in &options.sources {
        let mut named = SourceBuilder::new(source.name.clone())
            .api_keys(source.api_keys.iter().cloned())
            .allow_nets(source.allow.iter().copied());
        for (user, password) in &source.basic_auth {
            named = named.basic_auth(user.clone(), password.clone());
        }
        if let Some(tz) = &source.time_zone {
            named = named.time_zone(tz.clone());
        }
        if let Some(path) = &source.path {
            named = named.path(path.clone());
        }
        layer = layer.source(named);
    }
    layer.build()
}

/// The router: `POST /mails` behind the layer.
#[allow(dead_code)] // the tests build it from options
pub fn router(options: &Options, target: Target) -> Result<Router, ConfigError> {
    Ok(router_with(layer(options)?, target, budget(options)))
}

/// The in-flight budget of request body bytes (`--max-inflight-bytes`),
/// if any: made once, its clones share it.
pub fn budget(options: &Options) -> Option<cmc_webhook_core::layer::InflightBudget> {
    (options.max_inflight_bytes > 0)
        .then(|| cmc_webhook_core::layer::InflightBudget::new(options.max_inflight_bytes))
}

/// The router behind a layer built already (whose unlisted clients the
/// caller reads), with the budget inside the layer: requests the gate
/// refuses (outside the allowlist, without credentials, declaring a body
/// over the limit) neither spend it nor wait for it.
pub fn router_with(
    layer: WebhookLayer,
    target: Target,
    budget: Option<cmc_webhook_core::layer::InflightBudget>,
) -> Router {
    // `/mails`, and the path of each source that has one of its own.
    let mut paths = vec!["/mails".to_owned()];
    for source in layer.sources() {
        if let Some(path) = source.path()
            && !paths.iter().any(|p| p == path)
        {
            paths.push(path.to_owned());
        }
    }
    match target {
        Target::Inbox(inbox) => paths.iter().fold(Router::new(), |router, path| {
            router.route(
                path,
                guarded(post_service(inbox.receive()), layer.clone(), budget.clone()),
            )
        }),
        Target::Print(printer) => paths
            .iter()
            .fold(Router::new(), |router, path| {
                router.route(
                    path,
                    guarded(post(on_webhook), layer.clone(), budget.clone()),
                )
            })
            .with_state(printer),
    }
}

/// `route` behind the layer, and the budget inside it.
fn guarded<S>(
    route: axum::routing::MethodRouter<S>,
    layer: WebhookLayer,
    budget: Option<cmc_webhook_core::layer::InflightBudget>,
) -> axum::routing::MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    match budget {
        Some(budget) => route
            .layer::<_, std::convert::Infallible>(budget)
            .layer(layer),
        None => route.layer(layer),
    }
}

/// Writes the lines of webhooks, and saves attachments. The lines go
/// through a queue to a writer thread ([`crate::output::Lines`]): a stdout
/// that nobody reads makes the printers wait asynchronously, then fail
/// (the row is tried again, or the request answered 503), and never
/// blocks a runtime thread.
#[derive(Clone)]
pub struct Printer {
    lines: Lines,
    /// Lines of unrouted mails dropped because stdout was not read.
    dropped: Arc<AtomicU64>,
    save_dir: Option<Arc<PathBuf>>,
    format: Format,
    mails: Arc<AtomicU64>,
    /// Events and mails printed.
    printed: Arc<[AtomicU64; 2]>,
    /// The configured sources by name, the default one among them: a
    /// stored row's `created` is read in its source's zone.
    sources: Arc<std::collections::HashMap<String, Source>>,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Printer")
            .field("save_dir", &self.save_dir)
            .field("format", &self.format)
            .field("dropped", &self.dropped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Printer {
    /// A printer writing its lines to `sink`.
    pub fn new(options: &Options, sink: Sink) -> Printer {
        Printer::with_lines(options, Lines::new(sink))
    }

    /// A printer writing through `lines`.
    pub fn with_lines(options: &Options, lines: Lines) -> Printer {
        Printer {
            lines,
            dropped: Arc::default(),
            save_dir: options.save_dir.clone().map(Arc::new),
            format: options.format,
            mails: Arc::default(),
            printed: Arc::default(),
            sources: Arc::new(configured_sources(options)),
        }
    }

    /// The configured source a stored row names, or (a name this
    /// configuration does not have: the row was stored under another)
    /// the default source's zone under that name, with a note saying so.
    fn stored_source(&self, name: &str) -> (Source, Option<String>) {
        if let Some(source) = self.sources.get(name) {
            return (source.clone(), None);
        }
        let fallback = self
            .sources
            .get(DEFAULT_SOURCE)
            .map_or_else(default_time_zone, |s| s.time_zone().clone());
        (
            Source::new(name, fallback, None),
            Some(format!(
                "source {:?} is not configured: created read in the default source's zone",
                cmc_webhook_core::printable(name, 64)
            )),
        )
    }

    /// Events and mails printed so far.
    pub fn printed(&self) -> (u64, u64) {
        (
            self.printed[0].load(Ordering::Relaxed),
            self.printed[1].load(Ordering::Relaxed),
        )
    }

    /// Lines of unrouted mails dropped because stdout was not read.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The lines of events, written together (all or none).
    async fn events<'a>(
        &self,
        client: &str,
        server_composition: &str,
        events: impl IntoIterator<Item = &'a Event>,
        source: Option<&Source>,
    ) -> Result<(), Stalled> {
        let mut text = String::new();
        let mut n: u64 = 0;
        for event in events {
            if n > 0 {
                text.push('\n');
            }
            match self.format {
                Format::Json => text
                    .push_str(&event_line(client, server_composition, event, source).to_string()),
                Format::Compact => text.push_str(&compact_event(event)),
            }
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        self.lines.print(text).await?;
        self.printed[0].fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// A stored event's line: `created` read in its source's zone, and
    /// the note when that source is not configured.
    async fn stored_event(
        &self,
        client: &str,
        server_composition: &str,
        event: &Event,
        source: &Source,
        note: Option<String>,
    ) -> Result<(), Stalled> {
        let Some(note) = note.filter(|_| self.format == Format::Json) else {
            return self
                .events(client, server_composition, [event], Some(source))
                .await;
        };
        let mut line = event_line(client, server_composition, event, Some(source));
        line["note"] = json!(note);
        self.lines.print(line.to_string()).await?;
        self.printed[0].fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn mail(
        &self,
        mail: &InboundMail,
        client: &str,
        saved: Vec<Value>,
        source: &Source,
    ) -> Result<(), Stalled> {
        let line = match self.format {
            Format::Json if !source.is_default() => {
                let mut line = inbound_line(mail, client, saved);
                line["source"] = json!(source.name());
                line.to_string()
            }
            _ => return self.routed_mail(mail, client, saved, None, None).await,
        };
        self.lines.print(line).await?;
        self.printed[1].fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A mail's line; with `mailbox` (routing is on), its mailbox or null;
    /// a stored mail of a named source (not `default`) names it.
    async fn routed_mail(
        &self,
        mail: &InboundMail,
        client: &str,
        saved: Vec<Value>,
        mailbox: Option<Option<&str>>,
        source: Option<&str>,
    ) -> Result<(), Stalled> {
        let line = match self.format {
            Format::Json => {
                let mut line = inbound_line(mail, client, saved);
                if let Some(mailbox) = mailbox {
                    line["mailbox"] = json!(mailbox);
                }
                if let Some(source) = source.filter(|s| *s != DEFAULT_SOURCE) {
                    line["source"] = json!(source);
                }
                line.to_string()
            }
            Format::Compact => match mailbox {
                Some(m) => format!("{}  mailbox {}", compact_mail(mail), m.unwrap_or("-")),
                None => compact_mail(mail),
            },
        };
        self.lines.print(line).await?;
        self.printed[1].fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The worker's handler: the line of a stored event or mail. A mail
    /// whose attachments cannot be saved fails, and is tried again; so
    /// does a line stdout does not take in time ([`Stalled`]).
    pub async fn handle(self, job: Job) -> Result<(), String> {
        let client = job.client.map(|c| c.to_string()).unwrap_or_default();
        match &job.item {
            Item::Event(event) => {
                let (source, note) = self.stored_source(&job.source);
                self.stored_event(&client, &job.server_composition, event, &source, note)
                    .await
                    .map_err(|e| e.to_string())?
            }
            Item::Mail(mail) => {
                let number = u64::try_from(job.id.id).unwrap_or_default();
                let saved = self.save(number, mail).await?;
                self.routed_mail(mail, &client, saved, None, Some(&job.source))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            other => return Err(format!("the receiver does not know {other:?}")),
        }
        Ok(())
    }

    /// A mailbox's handler: the mail's line with its mailbox. The
    /// attachments are read from the store (the line shows their sizes).
    pub async fn mailbox_mail(self, mut job: MailJob) -> Result<(), String> {
        job.load_attachments().await.map_err(|e| e.to_string())?;
        let client = job.client.map(|c| c.to_string()).unwrap_or_default();
        let number = u64::try_from(job.mail_id).unwrap_or_default();
        let saved = self.save(number, &job.mail).await?;
        self.routed_mail(
            &job.mail,
            &client,
            saved,
            Some(Some(&job.mailbox)),
            Some(&job.source),
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// The line of a mail no route took (`"mailbox": null`). The hook is
    /// not retried: when stdout does not take the line in time, it is
    /// dropped and counted (the mail is kept: `mailboxes --unrouted
    /// --list` shows it).
    pub async fn unrouted(self, mut mail: Unrouted) {
        if let Err(e) = mail.load_attachments().await {
            tracing::error!(mail = mail.mail_id, error = %e, "could not read an unrouted mail's attachments");
        }
        let client = mail.client.map(|c| c.to_string()).unwrap_or_default();
        let printed = self
            .routed_mail(
                &mail.mail,
                &client,
                vec![Value::Null; mail.mail.attachments.len()],
                Some(None),
                Some(&mail.source),
            )
            .await;
        if printed.is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                mail = mail.mail_id,
                "stdout is not being read: the line of an unrouted mail is dropped (the mail is kept)"
            );
        }
    }

    /// Saves a mail's attachments when a directory is set.
    async fn save(&self, number: u64, mail: &InboundMail) -> Result<Vec<Value>, String> {
        match &self.save_dir {
            // A mail without attachments never touches the directory.
            Some(dir) if !mail.attachments.is_empty() => save_attachments(dir, number, mail)
                .await
                .map_err(|e| format!("could not save the attachments: {e}")),
            _ => Ok(vec![Value::Null; mail.attachments.len()]),
        }
    }
}

/// The mailboxes of `--mailbox NAME=PATTERN` flags, each printing its
/// mails; `None` without any. A pattern of `*` is the fallback.
pub fn mailboxes(
    flags: &[String],
    printer: &Printer,
    max_attempts: u32,
    retain: std::time::Duration,
) -> Result<Option<Mailboxes>, String> {
    mailboxes_with(flags, printer, max_attempts, retain, |_| None)
}

/// A mailbox's handler other than the printer (the relay's).
pub type MailboxHandler = Arc<
    dyn Fn(
            MailJob,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// [`mailboxes`], where `handler_of(name)` may give a mailbox a handler
/// of its own instead of the printer.
pub fn mailboxes_with(
    flags: &[String],
    printer: &Printer,
    max_attempts: u32,
    retain: std::time::Duration,
    handler_of: impl Fn(&str) -> Option<MailboxHandler>,
) -> Result<Option<Mailboxes>, String> {
    if flags.is_empty() {
        return Ok(None);
    }
    let mut routes = Vec::new();
    for flag in flags {
        let (name, pattern) = flag
            .split_once('=')
            .ok_or_else(|| format!("--mailbox {flag:?}: expected NAME=PATTERN"))?;
        routes.push((name.trim(), pattern.trim()));
    }
    let mut mailboxes = Mailboxes::new();
    let mut declared: Vec<&str> = Vec::new();
    for (name, _) in &routes {
        if declared.contains(name) {
            continue;
        }
        declared.push(name);
        let mailbox = match handler_of(name) {
            Some(handler) => Mailbox::new(*name, move |job: MailJob| handler(job)),
            None => {
                let printer = printer.clone();
                Mailbox::new(*name, move |job: MailJob| printer.clone().mailbox_mail(job))
            }
        }
        .max_attempts(max_attempts)
        .retention(retain);
        mailboxes = mailboxes
            .mailbox(mailbox)
            .map_err(|e| format!("--mailbox: {e}"))?;
    }
    for (name, pattern) in &routes {
        mailboxes = if *pattern == "*" {
            mailboxes.fallback(name)
        } else {
            mailboxes.route(*pattern, name)
        }
        .map_err(|e| format!("--mailbox {name}={pattern}: {e}"))?;
    }
    let printer = printer.clone();
    Ok(Some(mailboxes.on_unrouted(move |mail: Unrouted| {
        printer.clone().unrouted(mail)
    })))
}

/// The route without a store: prints, then answers. When stdout does
/// not take the lines in time, 503 with `Retry-After` (CMC sends the
/// webhook again): the 200 is never given before the lines are written.
async fn on_webhook(
    State(printer): State<Printer>,
    Extension(ClientIp(client)): Extension<ClientIp>,
    Sourced(source, webhook): Sourced<Webhook>,
) -> Result<&'static str, Response> {
    let client = client.to_string();
    let stalled = |_: Stalled| {
        tracing::warn!("stdout is not being read: a webhook is answered 503, to be sent again");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(http::header::RETRY_AFTER, "10")],
            "stdout is not being read: try again later\n",
        )
            .into_response()
    };
    match webhook {
        Webhook::Events(batch) => {
            printer
                .events(
                    &client,
                    &batch.server_composition,
                    &batch.events,
                    Some(&source),
                )
                .await
                .map_err(stalled)?;
        }
        Webhook::Inbound(mail) => {
            let number = printer.mails.fetch_add(1, Ordering::Relaxed);
            // An attachment that cannot be stored is a 500: CMC sends the
            // mail again later.
            let saved = printer.save(number, &mail).await.map_err(|e| {
                tracing::error!(error = %e, "could not save the attachments");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "could not store the mail\n".to_owned(),
                )
                    .into_response()
            })?;
            printer
                .mail(&mail, &client, saved, &source)
                .await
                .map_err(stalled)?;
        }
    }
    Ok("ok\n")
}

/// The suppression list's policy: the default one, with each configured
/// source's events read in its console zone.
pub fn suppression_policy(options: &Options) -> cmc_webhook_inbox::suppression::SuppressionPolicy {
    let sources = configured_sources(options);
    let mut policy = cmc_webhook_inbox::suppression::SuppressionPolicy::default();
    for (name, source) in sources {
        policy = if name == DEFAULT_SOURCE {
            policy.time_zone(source.time_zone().clone())
        } else {
            policy.source_time_zone(name, source.time_zone().clone())
        };
    }
    policy
}

/// The sources `options` configure, by name: the default one (its zone
/// `--time-zone`, or Asia/Tokyo) and each `[[source]]` table (its zone,
/// or the default one's).
fn configured_sources(options: &Options) -> std::collections::HashMap<String, Source> {
    let default_zone = options.time_zone.clone().unwrap_or_else(default_time_zone);
    let mut sources = std::collections::HashMap::new();
    sources.insert(
        DEFAULT_SOURCE.to_owned(),
        Source::new(DEFAULT_SOURCE, default_zone.clone(), None),
    );
    for s in &options.sources {
        let zone = s.time_zone.clone().unwrap_or_else(|| default_zone.clone());
        sources.insert(
            s.name.clone(),
            Source::new(s.name.clone(), zone, s.path.clone()),
        );
    }
    sources
}

/// An event's line; `at` is `created` read in the zone of its source
/// (without one, the default zone), and a named source is named.
fn event_line(
    client: &str,
    server_composition: &str,
    event: &Event,
    source: Option<&Source>,
) -> Value {
    let at = match source {
        Some(source) => source.created_at(event),
        None => event.created_at(&default_time_zone()),
    };
    let mut line = json!({
        "type": "event",
        "client": client,
        "server_composition": server_composition,
        "event_type": event.event_type().as_str(),
        "key": event.idempotency_key(),
        "at": at.ok().map(|t| t.to_string()),
        "event": event,
    });
    if let Some(source) = source.filter(|s| !s.is_default()) {
        line["source"] = json!(source.name());
    }
    line
}

/// `2023-01-25 14:03:09  deliveries  succeeded  user@example.jp`: the
/// time as CMC sent it (the console's zone), the type, the status (a
/// bounce's code and class), the recipient.
fn compact_event(event: &Event) -> String {
    let at = event.created().map_or_else(
        || "-".to_owned(),
        |c| c.strftime("%Y-%m-%d %H:%M:%S").to_string(),
    );
    let status = match event {
        Event::Delivery(d) => d.status.to_string(),
        Event::Bounce(b) => format!("{} ({})", b.status.code(), b.status.class()),
        Event::Block(b) => b.status.as_deref().unwrap_or("-").to_owned(),
        _ => "-".to_owned(),
    };
    format!(
        "{at}  {:<10}  {:<9}  {}",
        clean(event.event_type().as_str()),
        clean(&status),
        clean(event.recipient().unwrap_or("-"))
    )
}

/// The most characters `dead` prints of a row's summary, and of its error.
pub const DEAD_SUMMARY: usize = 200;
/// See [`DEAD_SUMMARY`].
pub const DEAD_ERROR: usize = 500;

/// The line `dead` prints of a dead row: id, key, source, summary,
/// attempts, last error, separated by tabs. The summary (a subject, an address) and the
/// error come from webhooks: escaped (a CR or LF cannot forge a row, an
/// escape sequence cannot reach the terminal, a tab cannot shift the
/// columns) and cut.
pub fn dead_line(row: &cmc_webhook_inbox::DeadRow) -> String {
    format!(
        "{}\t{}\t{}\t{}\tattempts {}\t{}",
        row.id,
        row.key,
        cmc_webhook_core::printable(&row.source, 64),
        cmc_webhook_core::printable(&row.summary, DEAD_SUMMARY),
        row.attempts,
        row.last_error.as_deref().map_or_else(
            || "-".to_owned(),
            |e| cmc_webhook_core::printable(e, DEAD_ERROR)
        )
    )
}

/// The most characters of one field of a compact line.
const COMPACT_FIELD: usize = 200;

/// Text from a body, with control and other invisible characters escaped,
/// so that a line cannot move the terminal's cursor or forge another line,
/// and cut after [`COMPACT_FIELD`] characters (a subject may be 20 MB).
fn clean(s: &str) -> String {
    cmc_webhook_core::printable(s, COMPACT_FIELD)
}

/// `2026-11-27 10:00:00  inbound  from a@example.com to b@example.jp  "subject"  1 attachment`.
fn compact_mail(mail: &InboundMail) -> String {
    let now = jiff::ZonedDateTime::now().with_time_zone(default_time_zone());
    let n = mail.attachments.len();
    format!(
        "{}  {:<10}  from {} to {}  \"{}\"  {n} attachment{}",
        now.strftime("%Y-%m-%d %H:%M:%S"),
        "inbound",
        clean(&mail.envelope_from),
        clean(&mail.envelope_to),
        clean(&mail.subject),
        if n == 1 { "" } else { "s" }
    )
}

fn inbound_line(mail: &InboundMail, client: &str, saved: Vec<Value>) -> Value {
    let attachments: Vec<Value> = mail
        .attachments
        .iter()
        .zip(saved)
        .map(|(a, saved)| {
            let mut o = json!({"filename": a.filename, "content_type": a.content_type, "size": a.data.len()});
            if !saved.is_null() {
                o["saved"] = saved;
            }
            o
        })
        .collect();
    json!({
        "type": "inbound",
        "client": client,
        "server_composition": mail.server_composition,
        "filter": mail.filter,
        "from": mail.envelope_from,
        "to": mail.envelope_to,
        "subject": mail.subject,
        "message_id": mail.headers.get("Message-ID"),
        "key": mail.idempotency_key(),
        "headers": mail.headers.len(),
        "text": mail.text,
        "html": mail.html,
        "attachments": attachments,
    })
}

/// Checks at start-up that attachments can be saved in `dir`: creates it
/// if needed, then writes, syncs and removes a probe file.
pub fn check_save_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    let result =
        std::fs::write(&probe, b"probe").and_then(|()| std::fs::File::open(&probe)?.sync_all());
    let _ = std::fs::remove_file(&probe);
    result
}

/// Writes each attachment under its sanitised name, prefixed with the
/// mail's and the attachment's number so that names never collide, and
/// never overwrites a file.
///
/// Each file is written under a temporary name, flushed and synced, then
/// given its name: a reader never finds a partial file under the final
/// name, and the line naming the file is printed only once it is complete.
/// When the mail is not saved whole (a write fails, or the request is
/// dropped half-way: a timeout, a client that hung up), every file it
/// wrote is removed, so that a mail CMC sends again leaves no orphans.
///
/// The files are written on a blocking thread, which runs on when the
/// request is dropped; the two sides share a `Save` under a lock, so that
/// every file is removed by whichever side learns last that the save was
/// abandoned.
pub async fn save_attachments(
    dir: &Path,
    mail: u64,
    inbound: &InboundMail,
) -> std::io::Result<Vec<Value>> {
    let stamp = jiff::Timestamp::now().as_millisecond();
    let files: Vec<(PathBuf, bytes::Bytes)> = inbound
        .attachments
        .iter()
        .enumerate()
        .map(|(i, a)| (dir.join(file_name(stamp, mail, i, a)), a.data.clone()))
        .collect();
    let save = Arc::new(Mutex::new(Save::default()));
    let guard = Abandon {
        save: save.clone(),
        finished: false,
    };
    let dir = dir.to_owned();
    let task = save.clone();
    tokio::task::spawn_blocking(move || write_all(&dir, files, &task))
        .await
        .map_err(std::io::Error::other)??;
    let paths = guard.finish();
    Ok(paths
        .into_iter()
        .map(|p| Value::String(p.display().to_string()))
        .collect())
}

/// What a save wrote, and whether it was abandoned.
#[derive(Default)]
struct Save {
    written: Vec<PathBuf>,
    abandoned: bool,
}

impl Save {
    /// Records a name just created; `false` (and the name removed) when the
    /// save was abandoned meanwhile.
    fn created(save: &Mutex<Save>, path: &Path) -> bool {
        let mut save = save.lock().unwrap_or_else(|e| e.into_inner());
        if save.abandoned {
            let _ = std::fs::remove_file(path);
            return false;
        }
        save.written.push(path.to_owned());
        true
    }

    /// Removes every name written and marks the save abandoned.
    fn abandon(save: &Mutex<Save>) {
        let mut save = save.lock().unwrap_or_else(|e| e.into_inner());
        save.abandoned = true;
        for path in save.written.drain(..) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Abandons the save when dropped before [`Abandon::finish`]: the request
/// was dropped (or the save failed).
struct Abandon {
    save: Arc<Mutex<Save>>,
    finished: bool,
}

impl Abandon {
    /// The final names of a save that completed; nothing is removed.
    fn finish(mut self) -> Vec<PathBuf> {
        self.finished = true;
        let mut save = self.save.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut save.written)
            .into_iter()
            .filter(|p| p.extension().is_none_or(|e| e != "part"))
            .collect()
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if !self.finished {
            Save::abandon(&self.save);
        }
    }
}

/// The blocking side of [`save_attachments`].
fn write_all(
    dir: &Path,
    files: Vec<(PathBuf, bytes::Bytes)>,
    save: &Mutex<Save>,
) -> std::io::Result<()> {
    use std::io::Write as _;
    let abandoned =
        || std::io::Error::new(std::io::ErrorKind::Interrupted, "the request was dropped");
    for (path, data) in files {
        let temp = dir.join(format!(
            ".{}.part",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("attachment")
        ));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        if !Save::created(save, &temp) {
            return Err(abandoned());
        }
        file.write_all(&data)?;
        file.flush()?;
        file.sync_all()?;
        // A hard link, unlike a rename, fails when `path` exists: no file
        // is ever replaced.
        std::fs::hard_link(&temp, &path)?;
        if !Save::created(save, &path) {
            return Err(abandoned());
        }
        // The new name is durable once the directory is synced.
        std::fs::File::open(dir)?.sync_all()?;
        std::fs::remove_file(&temp)?;
    }
    Ok(())
}

fn file_name(stamp: i64, mail: u64, index: usize, attachment: &Attachment) -> String {
    format!(
        "{stamp}-{mail}-{}-{}",
        index + 1,
        attachment.safe_filename()
    )
}
