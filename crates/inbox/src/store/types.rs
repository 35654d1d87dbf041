//! The values the backends take and give: what a worker's round records
//! and claims, what the mailboxes' part of it does, and the rows read back
//! for the worker, the mailboxes and the operations. Plain data, so that
//! the worker and the mailboxes depend on the store and never the reverse.

use super::super::job::{JobId, Kind};

/// The outcome of one handler run, as the backend records it.
#[derive(Debug)]
pub(crate) struct Settle {
    pub id: JobId,
    /// When it finished, in the store's milliseconds.
    pub at: i64,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub(crate) enum Outcome {
    Done,
    Retry { at: i64, error: String },
    Dead { error: String },
    Released,
}

/// The leases a round extends: those of the rows whose handlers still run.
#[derive(Debug)]
pub(crate) struct Renew {
    pub ids: Vec<JobId>,
    pub until: i64,
}

/// What a round claims.
#[derive(Debug)]
pub(crate) struct Claim {
    /// Which table first: the two take turns, so that neither starves.
    pub order: [Kind; 2],
    pub limit: usize,
    pub now: i64,
    pub lease_until: i64,
    pub max_attempts: u32,
    /// Whether to mark dead the rows whose lease ran out on their last
    /// attempt: once per poll interval, not on every round.
    pub sweep: bool,
    /// The rows this worker's handlers still run: neither claimed again
    /// nor swept, even when their lease ran out (a renewal that could not
    /// reach the store). Every other row whose lease ran out is free,
    /// those `locked_by` this worker included: a claim whose answer was
    /// lost leaves rows under this worker's name that it never ran.
    pub held: Vec<JobId>,
    /// Which kinds (event, mail) this worker's handler takes at all: a
    /// mailbox worker takes no events, and routes mails instead.
    pub kinds: [bool; 2],
    /// Which kinds may have due rows (event, mail): a kind whose last claim
    /// came back short is not asked again until something is stored, the
    /// poll interval passes, or a row is replayed.
    pub due: [bool; 2],
}

impl Claim {
    /// The ids of the rows of `kind` this worker holds.
    pub(crate) fn held_of(&self, kind: Kind) -> Vec<i64> {
        self.held
            .iter()
            .filter(|id| id.kind == kind)
            .map(|id| id.id)
            .collect()
    }
}

/// Logs outcomes a round could not record: their rows are no longer
/// this worker's (the lease ran out and another worker took them, or an
/// operator replayed them), so their handlers may run again elsewhere.
pub(crate) fn lost_outcomes(kind: Kind, rows: usize, outcome: &str) {
    tracing::warn!(
        kind = kind.as_str(),
        rows,
        outcome,
        "outcomes not recorded: the rows are no longer this worker's (their lease ran out and another worker took them, or they were replayed); their handlers may run again"
    );
}

/// The outcome of one mailbox handler run, as the round records it.
#[derive(Debug)]
pub(crate) struct DeliverySettle {
    pub id: i64,
    pub at: i64,
    pub outcome: DeliveryOutcome,
}

#[derive(Debug)]
pub(crate) enum DeliveryOutcome {
    Delivered,
    Bounced { reason: String },
    Failed { retry_at: i64, error: String },
    Dead { error: String },
    Released,
}

/// A mailbox as a round's statements see it: its name (the `mailbox`
/// column) and how many attempts its deliveries get. The mailboxes are
/// named by their index in the worker's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MailboxSlot {
    pub name: String,
    pub max_attempts: u32,
}

/// Where some of a mail's recipients go: a mailbox (its index among the
/// declared ones), or none (unrouted), with the route that took them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Routed {
    pub mailbox: Option<usize>,
    /// The route as written (`*` for the fallback); `None` when unrouted.
    pub route: Option<String>,
    pub recipients: Vec<String>,
}

/// Routes one mail (its `envelope-to` and `filter` columns) to the
/// mailboxes, in the round's transaction: the mailboxes' routing table,
/// without their handlers.
pub(crate) trait Router: Sync + std::fmt::Debug {
    fn route(&self, envelope_to: &str, filter: &str, source: &str) -> Vec<Routed>;
}

/// What a worker's round does for its mailboxes, in its transaction.
#[derive(Debug)]
pub(crate) struct DeliveryRound<'a> {
    /// The mailboxes, by index.
    pub mailboxes: &'a [MailboxSlot],
    pub router: &'a dyn Router,
    pub settle: &'a [DeliverySettle],
    /// The deliveries whose handlers still run, and their lease's new end.
    pub renew: Option<(&'a [i64], i64)>,
    /// Route up to this many due mails.
    pub route: usize,
    /// For each mailbox (by index), how many deliveries to claim.
    pub claims: &'a [(usize, usize)],
    /// Mark dead the deliveries whose lease ran out on their last attempt.
    pub sweep: bool,
    /// The deliveries this worker's handlers still run: neither claimed
    /// again nor swept, even when their lease ran out.
    pub held: &'a [i64],
    pub now: i64,
    pub lease_until: i64,
}

/// What a round's mailbox step did.
#[derive(Debug, Default)]
pub(crate) struct DeliveryStep {
    /// Mails routed.
    pub routed: usize,
    /// Whether more mails may wait to be routed.
    pub more: bool,
    /// Where each group of recipients went (a mailbox's index, or none).
    pub reached: Vec<Option<usize>>,
    /// The mails stored unrouted (wholly or in part), with the recipients
    /// no route took.
    pub unrouted: Vec<(i64, Vec<String>)>,
    pub claimed: Vec<ClaimedDelivery>,
}

/// A claimed delivery and its mail's row, as read.
#[derive(Debug)]
pub(crate) struct ClaimedDelivery {
    pub id: i64,
    pub mail_id: i64,
    pub mailbox: usize,
    pub recipients: String,
    pub attempts: i64,
    /// `None` when the mail's row is gone.
    pub mail: Option<MailRow>,
}

/// The columns of a `cmc_mails` row a handler's job is made from.
#[derive(Debug)]
pub(crate) struct MailRow {
    pub key: String,
    pub json: String,
    pub client: Option<String>,
    pub received_at: i64,
    pub source: String,
}

/// A `cmc_mail_deliveries` row joined with its mail, as listed.
#[derive(Debug)]
pub(crate) struct RawDelivery {
    pub id: i64,
    pub mail_id: i64,
    pub mailbox: Option<String>,
    pub recipients: String,
    pub route: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub bounce_reason: Option<String>,
    pub created_at: i64,
    pub run_at: i64,
    pub done_at: Option<i64>,
    pub envelope_from: String,
    pub subject: String,
    pub key: String,
}

/// How many deliveries of one mailbox (`None`: the unrouted) are in one
/// state (the `state` column), as counted.
pub(crate) type DeliveryCount = (Option<String>, String, i64);

/// Which mailbox's deliveries a query takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Which {
    Any,
    Unrouted,
    Named(String),
}

/// Which deliveries a list or a replay takes, as the statements read it:
/// the states by their column names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeliveryQuery {
    pub mailbox: Which,
    /// Empty: every state.
    pub states: Vec<&'static str>,
    pub mail: Option<i64>,
    pub after: i64,
    pub limit: usize,
}

/// A replay of deliveries: the finished ones `finished` takes back to
/// pending, then (with `reroute`) the mails of the unrouted ones of
/// `finished`'s mail routed again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeliveryReplay {
    /// Its states are those a replay takes back to pending (none: this
    /// pass is skipped).
    pub finished: DeliveryQuery,
    pub reroute: bool,
}

/// The most deliveries one slice of a replay takes, each slice its own
/// transaction: a replay never holds the database long.
pub(crate) const REPLAY_SLICE: u64 = 1000;

/// Where a sliced replay of deliveries is: the last id a slice took, and
/// which pass (the finished deliveries first, then the unrouted mails).
#[derive(Debug, Default)]
pub(crate) struct ReplayCursor {
    pub after: i64,
    pub rerouting: bool,
    pub done: bool,
}

impl ReplayCursor {
    pub(crate) fn next_pass(&mut self, reroute: bool) {
        if reroute && !self.rerouting {
            self.rerouting = true;
            self.after = 0;
        } else {
            self.done = true;
        }
    }
}

/// The most deliveries one `PRUNE` deletes (its `LIMIT`).
pub(crate) const PRUNE_SLICE: u64 = 1000;

/// A change of the suppression list by hand.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Manual {
    Add { until: Option<i64> },
    Remove,
}

/// Which rows of the suppression list a listing takes, as its statement
/// binds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SuppressionQuery {
    /// Only rows with this reason (its column value).
    pub reason: Option<&'static str>,
    /// Only rows that suppress their address now.
    pub suppressed_only: bool,
    /// Rows after this address.
    pub after: Option<String>,
    pub limit: usize,
}
