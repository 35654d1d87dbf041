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
}

/// Registers the description and unit of every metric with the installed
/// recorder, so that exporters show them (Prometheus' `# HELP` lines).
/// Call it once, after installing the recorder; metrics are recorded
/// whether or not it is called.
///
/// These are the gate's and the parsers' metrics; the inbox describes its
/// own (`cmc_webhook_inbox::describe_metrics`), and the `cmc-webhook`
/// facade's `describe_metrics` calls both.
///
/// ```
/// // With metrics-exporter-prometheus, for example:
/// // PrometheusBuilder::new().with_http_listener(addr).install()?;
/// cmc_webhook_core::describe_metrics();
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    use names::*;
    describe_counter!(
        REQUESTS,
        "Requests through the WebhookLayer, by outcome (accepted, refused, failed, abandoned), refusal reason and source (a configured name; empty when none was decided)"
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
        "Event records read from bodies that parsed, by event type, status and source"
    );
    describe_counter!(
        MAILS,
        "Inbound mails read from bodies that parsed, by source"
    );
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
}

/// A request through the layer ended; `source` is the configured name of
/// the source it came from, when one was decided (a closed set: the
/// layer's sources, never a value from the request).
pub(crate) fn request(outcome: Outcome, reason: Option<Reason>, source: Option<&crate::Source>) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::REQUESTS,
        "outcome" => outcome.as_str(),
        "reason" => reason.map_or("", Reason::name),
        "source" => source_label(source))
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (outcome, reason, source);
}

/// The `source` label: a configured name (shared, not copied), or empty.
#[cfg(feature = "metrics")]
fn source_label(source: Option<&crate::Source>) -> metrics::SharedString {
    match source {
        Some(source) => metrics::SharedString::from(source.name_arc().clone()),
        None => metrics::SharedString::const_str(""),
    }
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
pub(crate) fn webhook(webhook: &crate::Webhook, source: &crate::Source) {
    #[cfg(not(feature = "metrics"))]
    let _ = source;
    #[cfg(feature = "metrics")]
    let label = source_label(Some(source));
    #[cfg(feature = "metrics")]
    match webhook {
        crate::Webhook::Events(batch) => {
            // Counted per (type, status) pair, so that a batch of 100
            // records costs one look-up per pair it holds, not 100 (a
            // counter's key is hashed and its labels allocated). The pairs
            // are a closed set of a few dozen, so the search is bounded.
            let mut pairs: Vec<((&'static str, &'static str), u64)> = Vec::new();
            for event in &batch.events {
                let labels = event_labels(event);
                match pairs.iter_mut().find(|(pair, _)| *pair == labels) {
                    Some((_, n)) => *n += 1,
                    None => pairs.push((labels, 1)),
                }
            }
            for ((t, s), n) in pairs {
                metrics::counter!(names::EVENTS, "type" => t, "status" => s, "source" => label.clone())
                    .increment(n);
            }
        }
        crate::Webhook::Inbound(_) => {
            metrics::counter!(names::MAILS, "source" => label).increment(1)
        }
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
