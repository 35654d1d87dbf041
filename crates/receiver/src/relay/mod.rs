//! The relay (`--relay URL`): the inbox's worker POSTs each stored event
//! and mail to the team's application, signed as Standard Webhooks
//! specifies, instead of printing its line. A 2xx answer marks the row
//! done; any other status, a timeout (`--relay-timeout`) or a connection
//! that fails is an error, so the worker retries the row with its backoff,
//! makes it dead after `--max-attempts`, and `replay` sends it again.
//!
//! - [`sign`]: the secrets (`whsec_...`) and the `webhook-signature`;
//! - [`payload`]: the JSON of one event or mail (version 1), and the
//!   multipart body of a mail whose attachments are too large to inline;
//! - [`client`]: hyper's client over rustls, verifying certificates;
//! - [`breaker`]: the target paused after failures in a row.
//!
//! Every attempt carries `webhook-id` (the row's idempotency key, or for a
//! mailbox's delivery `KEY.MAILBOX.N`, N the delivery's number: the same
//! for every attempt, and for a replay, so that the application can skip
//! what it has seen, and different for each delivery of one mail),
//! `webhook-timestamp` (the attempt's time, in seconds) and
//! `webhook-signature` (one `v1,` signature per secret, for rotation).
//! The JSON of a row is the same at every attempt (a multipart body's
//! boundary is drawn at each).
//!
//! ```no_run
//! # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), String> {
//! use cmc_receiver::relay::{Relay, RelayOptions};
//!
//! let relay = Relay::new(RelayOptions::new(
//!     "https://app.example.jp/cmc-webhooks".parse().map_err(|e| format!("{e}"))?,
//!     cmc_receiver::relay::sign::Signer::parse_list("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?,
//! ))?;
//! let worker = inbox.worker(move |job| relay.clone().send(job)).spawn();
//! # worker.abort();
//! # Ok(())
//! # }
//! ```

pub mod breaker;
pub mod client;
pub mod payload;
pub mod record;
pub mod sign;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cmc_webhook_inbox::Job;
use cmc_webhook_inbox::mailbox::MailJob;
use http::Uri;
use http_body_util::{BodyExt as _, Full};

use crate::app::Printer;
use cmc_webhook_inbox::targets::{TargetCondition, TargetState};
use sign::{Signer, SigningSecret};

/// This process as the writer of the targets' states it records: the
/// host's name (when it can be read), the process id, and an instance id
/// drawn at random once per process (containers that share a host name
/// all run as pid 1), so that the processes relaying from one store each
/// keep their own rows. The same for every call in one process.
///
/// ```
/// let me = cmc_receiver::relay::writer_name();
/// assert!(me.contains(&format!("pid {} #", std::process::id())));
/// assert_eq!(me, cmc_receiver::relay::writer_name());
/// ```
pub fn writer_name() -> String {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| {
                h.trim()
                    .chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(100)
                    .collect::<String>()
            })
            .unwrap_or_default();
        let mut id = [0u8; 4];
        if aws_lc_rs::rand::fill(&mut id).is_err() {
            // (Never seen: then the clock's nanoseconds.)
            id = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
                .to_le_bytes();
        }
        let id = crate::hex::hex(&id);
        let pid = std::process::id();
        if host.is_empty() {
            format!("pid {pid} #{id}")
        } else {
            format!("{host} pid {pid} #{id}")
        }
    })
    .clone()
}

/// A target's recorded state as `counts` and the console show it, at
/// `now`: a paused or probing state past its end reads as unknown, since
/// its writer would have recorded the next one by then unless it stopped.
///
/// ```
/// use cmc_webhook_inbox::targets::{TargetCondition, TargetState};
///
/// let t0: jiff::Timestamp = "2026-04-01T00:00:00Z".parse().unwrap();
/// let mut s = TargetState::new("https://app.example.jp/hooks", "web-1 pid 7", TargetCondition::Paused, t0);
/// s.failures = 10;
/// s.until = Some(t0 + jiff::SignedDuration::from_secs(30));
/// let shown = cmc_receiver::relay::describe_state(&s, t0);
/// assert!(shown.starts_with("paused until 2026-04-01T00:00:30Z"), "{shown}");
/// let later = cmc_receiver::relay::describe_state(&s, t0 + jiff::SignedDuration::from_secs(60));
/// assert!(later.starts_with("was paused until"), "{later}");
/// ```
pub fn describe_state(state: &TargetState, now: jiff::Timestamp) -> String {
    let time = |t: jiff::Timestamp| format!("{:.0}", t);
    let until = state.until.map(time).unwrap_or_else(|| "?".to_owned());
    if !state.is_current(now) {
        return format!(
            "was {} until {until}, no change recorded since: state unknown (no attempt since, or its process stopped)",
            state.condition
        );
    }
    match state.condition {
        TargetCondition::Closed => "closed (sending)".to_owned(),
        TargetCondition::Paused => format!(
            "paused until {until} after {} failures in a row",
            state.failures
        ),
        TargetCondition::Probing => format!("probing: one attempt tests it, due by {until}"),
        _ => state.condition.to_string(),
    }
}

/// A relay URL: `https://`, or `http://` when allowed; with a host; no
/// user or password (they would show in `ps` and in logs).
pub fn target(url: &str, allow_http: bool) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("--relay: not a URL ({e})"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if allow_http => {}
        Some("http") => {
            return Err(
                "--relay: an http:// URL sends the webhooks in clear text: use https://, or \
                 --relay-allow-http for an internal target"
                    .to_owned(),
            );
        }
        _ => return Err("--relay: expected an https:// URL".to_owned()),
    }
    let Some(authority) = uri.authority() else {
        return Err("--relay: the URL has no host".to_owned());
    };
    if authority.as_str().contains('@') {
        return Err(
            "--relay: a user or password in the URL is not supported (it would show in ps \
             and in logs): authenticate with the signature"
                .to_owned(),
        );
    }
    if authority.host().is_empty() {
        return Err("--relay: the URL has no host".to_owned());
    }
    Ok(uri)
}

/// What a [`Relay`] is made from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RelayOptions {
    /// Where to POST.
    pub url: Uri,
    /// The signing secrets (at least one).
    pub secrets: Vec<SigningSecret>,
    /// The longest one attempt may take (30 s by default).
    pub timeout: Duration,
    /// CA certificates instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Whether `http://` is allowed: by default, when the URL given to
    /// [`RelayOptions::new`] is `http://` (the program asks for
    /// `--relay-allow-http` first).
    pub allow_http: bool,
    /// The most attachment bytes sent inline (1 MiB by default).
    pub inline_limit: usize,
    /// Failed attempts in a row before the target is paused (10 by
    /// default; 0: never paused).
    pub failure_cap: u32,
    /// How long the target is paused (30 s by default, at most
    /// [`MAX_PAUSE`]): attempts wait meanwhile.
    pub pause: Duration,
}

/// The longest pause of a target: attempts wait through it, within the
/// worker's handler timeout.
pub const MAX_PAUSE: Duration = Duration::from_secs(120);

/// Past its attempt's timeout, how long more a probe is given before the
/// state recorded for it reads as lost.
const PROBE_MARGIN: Duration = Duration::from_secs(5);

/// The default of [`RelayOptions::inline_limit`].
pub const DEFAULT_INLINE_LIMIT: usize = 1 << 20;

impl RelayOptions {
    /// Options with their defaults.
    pub fn new(url: Uri, secrets: Vec<SigningSecret>) -> RelayOptions {
        RelayOptions {
            allow_http: url.scheme_str() == Some("http"),
            url,
            secrets,
            timeout: Duration::from_secs(30),
            ca_file: None,
            inline_limit: DEFAULT_INLINE_LIMIT,
            failure_cap: 10,
            pause: Duration::from_secs(30),
        }
    }

    /// The longest one run of the handler may take: a pause, then an
    /// attempt, and a margin (the worker's handler timeout).
    pub fn handler_timeout(&self) -> Duration {
        self.pause.min(MAX_PAUSE) + self.timeout + Duration::from_secs(30)
    }
}

/// The most bytes of a target's answer read (the rest is not read, and
/// the connection not reused).
const MAX_ANSWER: usize = 64 << 10;
/// The most characters of a target's answer kept in a row's error.
const ANSWER_IN_ERROR: usize = 200;

/// Sends rows to one target; clones share the client and its connections.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    url: Uri,
    /// The URL without its query, for logs (a query may hold a token).
    shown: String,
    client: client::HttpClient,
    signer: Signer,
    timeout: Duration,
    inline_limit: usize,
    user_agent: http::HeaderValue,
    breaker: breaker::Breaker,
    /// Attempts answered 2xx, and failed.
    sent: [std::sync::atomic::AtomicU64; 2],
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("url", &self.inner.shown)
            .field("secrets", &self.inner.signer.len())
            .field("timeout", &self.inner.timeout)
            .field("inline_limit", &self.inner.inline_limit)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay: checks the URL and the secrets, and reads the CA
    /// certificates.
    pub fn new(options: RelayOptions) -> Result<Relay, String> {
        let url = target(&options.url.to_string(), options.allow_http)?;
        let signer = Signer::new(options.secrets)?;
        let https = url.scheme_str() == Some("https");
        let client = client::client(options.ca_file.as_deref(), options.allow_http, https)?;
        let shown = format!(
            "{}://{}{}",
            url.scheme_str().unwrap_or("https"),
            url.authority().map_or("", |a| a.as_str()),
            url.path()
        );
        // A probe is one attempt: lost past its timeout (and a margin).
        let breaker =
            breaker::Breaker::new(options.failure_cap, options.pause.min(MAX_PAUSE), &shown)
                .with_probe_limit(options.timeout + PROBE_MARGIN);
        Ok(Relay {
            inner: Arc::new(Inner {
                breaker,
                sent: Default::default(),
                url,
                shown,
                client,
                signer,
                timeout: options.timeout.max(Duration::from_millis(1)),
                inline_limit: options.inline_limit,
                user_agent: http::HeaderValue::from_static(concat!(
                    "cmc-receiver/",
                    env!("CARGO_PKG_VERSION")
                )),
            }),
        })
    }

    /// The target, without its query (for logs).
    pub fn target(&self) -> &str {
        &self.inner.shown
    }

    /// Attempts answered 2xx, and attempts that failed, so far.
    pub fn attempts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.inner.sent[0].load(Relaxed),
            self.inner.sent[1].load(Relaxed),
        )
    }

    /// The target's circuit breaker.
    pub fn breaker(&self) -> &breaker::Breaker {
        &self.inner.breaker
    }

    /// The worker's handler: POSTs the row, signed; `Ok` on a 2xx answer.
    pub async fn send(self, job: Job) -> Result<(), String> {
        let payload = payload::payload(&job, self.inner.inline_limit)?;
        self.post(job.key.to_string(), job.attempt, payload).await
    }

    /// A mailbox's handler: POSTs the mail routed to it (with its
    /// `"mailbox"`), its attachments read from the store first.
    pub async fn send_mail(self, mut job: MailJob) -> Result<(), String> {
        job.load_attachments().await.map_err(|e| e.to_string())?;
        let payload = payload::mail_job_payload(&job, self.inner.inline_limit)?;
        self.post(delivery_id(&job), job.attempt, payload).await
    }

    /// [`Relay::send_mail`] as a mailbox's handler.
    pub fn mailbox_handler(&self) -> crate::app::MailboxHandler {
        let relay = self.clone();
        Arc::new(move |job| Box::pin(relay.clone().send_mail(job)))
    }

    async fn post(self, id: String, attempt: u32, payload: payload::Payload) -> Result<(), String> {
        let inner = &self.inner;
        // A paused target: wait for the pause to end (the row keeps its
        // lease, and no attempt is spent on a target known to be down),
        // and after it for the probe's answer.
        let admission = inner.breaker.admit().await;
        let timestamp = jiff::Timestamp::now().as_second();
        let signature = inner.signer.signature(&id, timestamp, &payload.body);
        let request = http::Request::post(inner.url.clone())
            .header(http::header::CONTENT_TYPE, payload.content_type)
            .header(http::header::USER_AGENT, inner.user_agent.clone())
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", signature)
            .body(Full::new(payload.body))
            .map_err(|e| format!("could not build the relay request: {e}"))?;
        let started = Instant::now();
        let outcome = tokio::time::timeout(inner.timeout, self.exchange(request)).await;
        let elapsed = started.elapsed();
        let result = match outcome {
            Err(_) => Err(Failure::Timeout),
            Ok(result) => result,
        };
        record(&result, elapsed, &inner.shown);
        let slot = usize::from(result.is_err());
        inner.sent[slot].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match result {
            Ok(status) => {
                admission.answered();
                tracing::debug!(target_url = %inner.shown, id, attempt, status = status.as_u16(), ms = elapsed.as_millis() as u64, "relayed");
                Ok(())
            }
            Err(failure) => {
                if failure.is_the_targets() {
                    admission.failed();
                } else {
                    admission.answered();
                }
                let message = failure.message(inner.timeout, timestamp);
                tracing::warn!(target_url = %inner.shown, id, attempt, ms = elapsed.as_millis() as u64, error = %message, "relay attempt failed");
                Err(message)
            }
        }
    }

    /// One request and its answer: the status when 2xx.
    async fn exchange(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::StatusCode, Failure> {
        let response = self
            .inner
            .client
            .request(request)
            .await
            .map_err(|e| Failure::Connect(chain(&e)))?;
        let status = response.status();
        // The answer is read (up to a limit) so that the connection can
        // serve the next request; its text goes into the error of a row
        // the target refused.
        let mut body = response.into_body();
        let mut answer = Vec::new();
        while answer.len() <= MAX_ANSWER {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        answer.extend_from_slice(data);
                    }
                }
                Some(Err(e)) if status.is_success() => {
                    // A 2xx whose body broke off: the target said yes.
                    tracing::debug!(error = %e, "the relay target's answer broke off");
                    break;
                }
                Some(Err(e)) => return Err(Failure::Status(status, chain(&e))),
                None => break,
            }
        }
        if status.is_success() {
            Ok(status)
        } else {
            let text = String::from_utf8_lossy(&answer);
            Err(Failure::Status(
                status,
                cmc_webhook_core::printable(text.trim(), ANSWER_IN_ERROR),
            ))
        }
    }
}

/// Why an attempt failed.
enum Failure {
    Timeout,
    Connect(String),
    Status(http::StatusCode, String),
}

impl Failure {
    /// Whether the failure says the target as a whole is unwell (it counts
    /// towards the breaker), rather than that it refused this row alone
    /// (400, 413, 422, ...: the target is up).
    fn is_the_targets(&self) -> bool {
        match self {
            Failure::Timeout | Failure::Connect(_) => true,
            Failure::Status(status, _) => {
                status.is_server_error()
                    || matches!(status.as_u16(), 401 | 403 | 404 | 405 | 408 | 429)
            }
        }
    }

    fn message(&self, timeout: Duration, timestamp: i64) -> String {
        match self {
            Failure::Timeout => format!("the relay target did not answer within {timeout:?}"),
            Failure::Connect(e) if e.contains("CaUsedAsEndEntity") => format!(
                "the relay target could not be reached: {e} (its certificate is a CA \
                 certificate, CA:TRUE, as `openssl req -x509` makes by default, which is not \
                 accepted as a server's: serve a certificate made with \
                 basicConstraints=CA:FALSE, signed by the CA given to --relay-ca-file)"
            ),
            Failure::Connect(e) => format!("the relay target could not be reached: {e}"),
            Failure::Status(status, text) if matches!(status.as_u16(), 401 | 403) => {
                format!(
                    "the relay target answered {status}{}{text} (a signature it does not \
                     accept: a secret other than its own, or clocks more than 5 minutes apart; \
                     this attempt's webhook-timestamp was {timestamp})",
                    if text.is_empty() { "" } else { ": " }
                )
            }
            Failure::Status(status, text) if text.is_empty() => {
                format!("the relay target answered {status}")
            }
            Failure::Status(status, text) => {
                format!("the relay target answered {status}: {text}")
            }
        }
    }
}

/// The `webhook-id` of a mailbox's delivery: the mail's key, the
/// mailbox and the delivery's number, so that each delivery of one mail
/// (to two mailboxes on one target, or again after a new route) is one
/// the application does not take for a repeat.
fn delivery_id(job: &MailJob) -> String {
    format!("{}.{}.{}", job.key, job.mailbox, job.id)
}

/// An error and its sources, `: `-separated (hyper's own words are terse).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// `cmc_receiver_relay_attempts_total{target, result, status}` (`ok`,
/// `refused` for a status other than 2xx, `timeout`, `unreachable`; the
/// answer's status, or empty) and `cmc_receiver_relay_seconds{target}`
/// (each attempt's time).
fn record(result: &Result<http::StatusCode, Failure>, elapsed: Duration, target: &str) {
    let label = match result {
        Ok(_) => "ok",
        Err(Failure::Status(..)) => "refused",
        Err(Failure::Timeout) => "timeout",
        Err(Failure::Connect(_)) => "unreachable",
    };
    let status = match result {
        Ok(status) | Err(Failure::Status(status, _)) => status.as_str().to_owned(),
        Err(_) => String::new(),
    };
    metrics::counter!(
        "cmc_receiver_relay_attempts_total",
        "target" => target.to_owned(),
        "result" => label,
        "status" => status
    )
    .increment(1);
    metrics::histogram!("cmc_receiver_relay_seconds", "target" => target.to_owned())
        .record(elapsed.as_secs_f64());
}

/// The worker's handler: prints each row, or relays it.
#[derive(Debug, Clone)]
pub enum Handler {
    /// Prints the row's line (without `--relay`).
    Print(Printer),
    /// POSTs it (`--relay`).
    Relay(Relay),
}

impl Handler {
    /// Handles one row.
    pub async fn handle(self, job: Job) -> Result<(), String> {
        match self {
            Handler::Print(printer) => printer.handle(job).await,
            Handler::Relay(relay) => relay.send(job).await,
        }
    }
}
