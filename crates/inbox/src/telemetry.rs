//! The inbox's metrics, through the [`metrics`](https://docs.rs/metrics)
//! facade (feature `metrics`): every function here is a no-op without the
//! feature. Label values are closed sets (kinds, states, outcomes, and
//! the operator's mailbox and source names).

/// Names, in the order of the README's table.
#[cfg(feature = "metrics")]
pub(crate) mod names {
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

/// Registers the description and unit of each of the inbox's metrics with
/// the installed recorder, so that exporters show them (Prometheus'
/// `# HELP` lines). Call it once, after installing the recorder; metrics
/// are recorded whether or not it is called. (`cmc_webhook_core::describe_metrics`
/// describes the gate's too.)
///
/// ```
/// cmc_webhook_inbox::describe_metrics();
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    use names::*;
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

/// The inbox stored `new` rows from `source` and found `repeats` already
/// stored. Source names are those the layer was configured with (or the
/// application passed to `store_sourced`), a closed set.
pub(crate) fn stored(kind: &'static str, source: &str, new: u64, repeats: u64) {
    #[cfg(feature = "metrics")]
    {
        if new > 0 {
            metrics::counter!(names::INBOX_STORED, "kind" => kind, "source" => source.to_owned())
                .increment(new);
        }
        if repeats > 0 {
            metrics::counter!(names::INBOX_REPEATS, "kind" => kind, "source" => source.to_owned())
                .increment(repeats);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, source, new, repeats);
}

/// A handler run ended.
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

/// The rows of a kind in a state from a source (the worker's gauge
/// task; source names are read from the rows, which hold the names the
/// layer was configured with).
#[cfg(feature = "metrics")]
pub(crate) fn rows(kind: &'static str, source: &str, state: &'static str, n: u64) {
    metrics::gauge!(names::INBOX_ROWS, "kind" => kind, "source" => source.to_owned(), "state" => state)
        .set(n as f64);
}

/// The age of the oldest pending row of a kind from a source (0 when
/// there is none).
#[cfg(feature = "metrics")]
pub(crate) fn oldest_pending(kind: &'static str, source: &str, age: std::time::Duration) {
    metrics::gauge!(names::INBOX_OLDEST_PENDING, "kind" => kind, "source" => source.to_owned())
        .set(age.as_secs_f64());
}

/// Routing wrote a delivery to `mailbox` (`None`: unrouted).
pub(crate) fn routed(mailbox: Option<&str>) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::MAILBOX_ROUTED, "mailbox" => mailbox.unwrap_or("").to_owned())
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = mailbox;
}

/// A mailbox's handler run ended. Mailbox names are the operator's, a
/// closed set.
pub(crate) fn mailbox_handled(mailbox: &str, outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(names::MAILBOX_HANDLED, "mailbox" => mailbox.to_owned(), "outcome" => outcome)
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (mailbox, outcome);
}
