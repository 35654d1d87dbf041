//! What a worker asks of the store in a round, and what the store hears
//! back: the claim, the renewal of leases, and the outcomes to record.

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
    tracing::warn!(kind = kind.as_str(), rows, outcome, "outcomes not recorded: the rows are no longer this worker's (their lease ran out and another worker took them, or they were replayed); their handlers may run again");
}
