//! The crate's metrics, through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`): every function here is a no-op without the
//! feature, and costs a look-up in the installed recorder with it (nothing
//! when none is installed).
//!
//! Label values are a closed set (reason names, known event types and
//! statuses, `other` for the rest), so that a body cannot create series.

use crate::Reason;

/// How a request through the layer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered 2xx by the inner service.
    Accepted,
    /// Refused by the layer, the body reader or the inbox, with a reason.
    Refused,
    /// Another answer: the inner service's own error (a 503 of the inbox
    /// with its database down, a 500 of a handler).
    Failed,
    /// Dropped before it was answered: a timeout around the layer, or a
    /// client that closed the connection.
    Abandoned,
}

impl Outcome {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Refused => "refused",
            Outcome::Failed => "failed",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// Names and descriptions, in the order of the README's table.
#[cfg(feature = "metrics")]
pub(crate) mod names {
    pub const REQUESTS: &str = "cmc_webhook_requests_total";
    pub const UNLISTED_REQUESTS: &str = "cmc_webhook_unlisted_requests_total";
    pub const UNLISTED_CLIENTS: &str = "cmc_webhook_unlisted_clients";
    pub const EVENTS: &str = "cmc_webhook_events_total";
    pub const MAILS: &str = "cmc_webhook_mails_total";
    pub const BODY_BYTES: &str = "cmc_webhook_body_bytes_total";
    pub const PARSE_SECONDS: &str = "cmc_webhook_parse_seconds";
    pub const INBOX_STORED: &str = "cmc_webhook_inbox_stored_total";
    pub const INBOX_REPEATS: &str = "cmc_webhook_inbox_repeats_total";
    pub const INBOX_HANDLED: &str = "cmc_webhook_inbox_handled_total";
    pub const INBOX_HANDLER_SECONDS: &str = "cmc_webhook_inbox_handler_seconds";
    pub const INBOX_RETRIES: &str = "cmc_webhook_inbox_retries_total";
    pub const INBOX_DEAD: &str = "cmc_webhook_inbox_dead_total";
    pub const INBOX_ROWS: &str = "cmc_webhook_inbox_rows";
    pub const INBOX_OLDEST_PENDING: &str = "cmc_webhook_inbox_oldest_pending_seconds";
    pub const MAILBOX_ROUTED: &str = "cmc_webhook_mailbox_routed_total";
    pub const MAILBOX_HANDLED: &str = "cmc_webhook_mailbox_handled_total";
}

/// Registers the description and unit of every metric with the installed
/// recorder, so that exporters show them (Prometheus' `# HELP` lines).
/// Call it once, after installing the recorder; metrics are recorded
/// whether or not it is called.
///
/// ```
/// // With metrics-exporter-prometheus, for example:
/// // PrometheusBuilder::new().with_http_listener(addr).install()?;
/// cmc_webhook::describe_metrics();
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    use names::*;
    describe_counter!(
        REQUESTS,
        "Requests through the WebhookLayer, by outcome (accepted, refused, failed, abandoned) and refusal reason"
    );
    describe_counter!(
        UNLISTED_REQUESTS,
        "Requests from clients outside the allowlist (admitted in report-only mode, refused otherwise)"
    );
    describe_gauge!(
        UNLISTED_CLIENTS,
        "Distinct client addresses seen outside the allowlist (at most 1024 are remembered)"
    );
    describe_counter!(
        EVENTS,
        "Event records read from bodies that parsed, by event type and status"
    );
    describe_counter!(MAILS, "Inbound mails read from bodies that parsed");
    describe_counter!(
        BODY_BYTES,
        Unit::Bytes,
        "Body bytes read by the webhook readers, by encoding"
    );
    describe_histogram!(
        PARSE_SECONDS,
        Unit::Seconds,
        "Time spent parsing a body (not waiting for it), by encoding"
    );
    describe_counter!(
        INBOX_STORED,
        "Rows stored by the inbox for the first time, by kind (event, mail)"
    );
    describe_counter!(
        INBOX_REPEATS,
        "Events and mails received again that the inbox had already stored, by kind"
    );
    describe_counter!(
        INBOX_HANDLED,
        "Runs of the inbox worker's handler, by kind and outcome (done, failed, panicked)"
    );
    describe_histogram!(
        INBOX_HANDLER_SECONDS,
        Unit::Seconds,
        "Duration of the inbox worker's handler runs, by kind and outcome"
    );
    describe_counter!(
        INBOX_RETRIES,
        "Failed handler runs scheduled to be tried again, by kind"
    );
    describe_counter!(
        INBOX_DEAD,
        "Rows that became dead (out of attempts, or unreadable), by kind"
    );
    describe_gauge!(
        INBOX_ROWS,
        "Inbox rows by kind and state (pending, running, done, dead), read periodically by the worker"
    );
    describe_gauge!(
        INBOX_OLDEST_PENDING,
        Unit::Seconds,
        "Age of the oldest pending row, by kind (0 when none), read periodically by the worker"
    );
    describe_counter!(
        MAILBOX_ROUTED,
        "Deliveries written by routing inbound mails, by mailbox (\"\" for the unrouted)"
    );
    describe_counter!(
        MAILBOX_HANDLED,
        "Runs of a mailbox's handler, by mailbox and outcome (delivered, bounced, failed or panicked with a retry due, dead, released)"
    );
}

/// A request through the layer ended.
pub(crate) fn request(outcome: Outcome, reason: Option<Reason>) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::REQUESTS,
        "outcome" => outcome.as_str(),
        "reason" => reason.map_or("", Reason::name))
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (outcome, reason);
}

/// A request from a client outside the allowlist.
pub(crate) fn unlisted_request() {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::UNLISTED_REQUESTS).increment(1);
}

/// The number of distinct unlisted addresses remembered.
pub(crate) fn unlisted_clients(n: usize) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(names::UNLISTED_CLIENTS).set(n as f64);
    #[cfg(not(feature = "metrics"))]
    let _ = n;
}

/// A webhook was read: its events or its mail.
pub(crate) fn webhook(webhook: &crate::Webhook) {
    #[cfg(feature = "metrics")]
    match webhook {
        crate::Webhook::Events(batch) => {
            // Counted per (type, status) run, so that a batch of 100
            // records of one kind costs one look-up, not 100.
            let mut run: Option<((&'static str, &'static str), u64)> = None;
            for event in &batch.events {
                let labels = event_labels(event);
                match &mut run {
                    Some((current, n)) if *current == labels => *n += 1,
                    _ => {
                        if let Some(((t, s), n)) = run.take() {
                            metrics::counter!(names::EVENTS, "type" => t, "status" => s)
                                .increment(n);
                        }
                        run = Some((labels, 1));
                    }
                }
            }
            if let Some(((t, s), n)) = run {
                metrics::counter!(names::EVENTS, "type" => t, "status" => s).increment(n);
            }
        }
        crate::Webhook::Inbound(_) => metrics::counter!(names::MAILS).increment(1),
    }
    #[cfg(not(feature = "metrics"))]
    let _ = webhook;
}

/// The labels of an event: its type and status, from closed sets.
#[cfg(feature = "metrics")]
fn event_labels(event: &crate::Event) -> (&'static str, &'static str) {
    use crate::{BounceStatus as B, DeliveryStatus as D, Event};
    match event {
        Event::Delivery(d) => (
            "deliveries",
            match d.status {
                D::Queued => "queued",
                D::Succeeded => "succeeded",
                D::Failed => "failed",
                D::Deferred => "deferred",
                _ => "other",
            },
        ),
        Event::Bounce(b) => (
            "bounces",
            match b.status {
                B::UnknownHost => "1",
                B::UnknownUser => "2",
                B::ResendTimeout => "3",
                B::PolicyRejected => "4",
                B::MailboxFull => "5",
                B::ForwardingError => "6",
                B::ServerMisconfigured => "7",
                B::MessageTooLarge => "8",
                B::InvalidAddress => "9",
                B::Suppressed => "10",
                B::Unsubscribed => "11",
                B::OtherPermanent => "99",
                _ => "other",
            },
        ),
        Event::Block(_) => ("blocks", ""),
        _ => ("other", ""),
    }
}

/// Bytes of a body read, in an encoding (`json`, `form`, `multipart`).
pub(crate) fn body_bytes(encoding: &'static str, n: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::BODY_BYTES, "encoding" => encoding).increment(n);
    #[cfg(not(feature = "metrics"))]
    let _ = (encoding, n);
}

/// Time spent parsing one body.
pub(crate) fn parse_time(encoding: &'static str, spent: std::time::Duration) {
    #[cfg(feature = "metrics")]
    metrics::histogram!(names::PARSE_SECONDS, "encoding" => encoding).record(spent.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (encoding, spent);
}

/// The inbox stored `new` rows and found `repeats` already stored.
#[cfg(feature = "sqlite")]
pub(crate) fn stored(kind: &'static str, new: u64, repeats: u64) {
    #[cfg(feature = "metrics")]
    {
        if new > 0 {
            metrics::counter!(names::INBOX_STORED, "kind" => kind).increment(new);
        }
        if repeats > 0 {
            metrics::counter!(names::INBOX_REPEATS, "kind" => kind).increment(repeats);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, new, repeats);
}

/// A handler run ended.
#[cfg(feature = "sqlite")]
pub(crate) fn handled(kind: &'static str, outcome: &'static str, spent: std::time::Duration) {
    #[cfg(feature = "metrics")]
    {
        metrics::counter!(names::INBOX_HANDLED, "kind" => kind, "outcome" => outcome).increment(1);
        metrics::histogram!(names::INBOX_HANDLER_SECONDS, "kind" => kind, "outcome" => outcome)
            .record(spent.as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, outcome, spent);
}

/// A failed row was scheduled again (`retry`) or became dead.
#[cfg(feature = "sqlite")]
pub(crate) fn failed_row(kind: &'static str, dead: bool) {
    #[cfg(feature = "metrics")]
    {
        let name = if dead {
            names::INBOX_DEAD
        } else {
            names::INBOX_RETRIES
        };
        metrics::counter!(name, "kind" => kind).increment(1);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, dead);
}

/// The rows of a kind in a state (the worker's gauge task).
#[cfg(all(feature = "sqlite", feature = "metrics"))]
pub(crate) fn rows(kind: &'static str, state: &'static str, n: u64) {
    metrics::gauge!(names::INBOX_ROWS, "kind" => kind, "state" => state).set(n as f64);
}

/// The age of the oldest pending row of a kind (0 when there is none).
#[cfg(all(feature = "sqlite", feature = "metrics"))]
pub(crate) fn oldest_pending(kind: &'static str, age: std::time::Duration) {
    metrics::gauge!(names::INBOX_OLDEST_PENDING, "kind" => kind).set(age.as_secs_f64());
}

/// Routing wrote a delivery to `mailbox` (`None`: unrouted).
#[cfg(feature = "sqlite")]
pub(crate) fn routed(mailbox: Option<&str>) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::MAILBOX_ROUTED, "mailbox" => mailbox.unwrap_or("").to_owned())
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = mailbox;
}

/// A mailbox's handler run ended. Mailbox names are the operator's, a
/// closed set.
#[cfg(feature = "sqlite")]
pub(crate) fn mailbox_handled(mailbox: &str, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::MAILBOX_HANDLED, "mailbox" => mailbox.to_owned(), "outcome" => outcome)
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (mailbox, outcome);
}
