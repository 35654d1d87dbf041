//! What the inbox holds and hands out: a row's [`State`], its [`Kind`]
//! and [`JobId`], and the [`Job`] a handler receives.

use std::fmt;
use std::net::IpAddr;

use jiff::Timestamp;

use cmc_webhook_core::{Event, IdempotencyKey, InboundMail, Text};

/// Which table a row lives in: `cmc_events` or `cmc_mails`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// One record of an event batch (`cmc_events`).
    Event,
    /// One inbound mail (`cmc_mails`, its bytes in `cmc_mail_attachments`).
    Mail,
}

impl Kind {
    /// Its index in per-kind arrays: events 0, mails 1.
    pub(crate) fn slot(self) -> usize {
        match self {
            Kind::Event => 0,
            Kind::Mail => 1,
        }
    }

    /// `event` or `mail`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Mail => "mail",
        }
    }

    pub(crate) fn table(&self) -> &'static str {
        match self {
            Kind::Event => "cmc_events",
            Kind::Mail => "cmc_mails",
        }
    }

    /// The `tbl` of this kind's rows in `cmc_state_counts` (migration 0014).
    pub(crate) fn counted_as(&self) -> &'static str {
        match self {
            Kind::Event => "events",
            Kind::Mail => "mails",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a row is in its life, as the `state` column spells it.
///
/// ```text
///            claim               Ok
/// pending ----------> running ---------> done ----> (pruned)
///    ^                 |   |
///    |  Err, attempts  |   | Err on the last attempt,
///    +-- left ---------+   | or its lease expired then
///    |                     v
///    +------ replay ----- dead
/// ```
///
/// A `running` row whose lease has expired (its worker died) is claimed
/// again as if it were `pending`. Replay also takes `done` rows back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Waiting for a worker, due from its `run_at`.
    Pending,
    /// Claimed by a worker whose lease runs until `locked_until`.
    Running,
    /// Its handler returned `Ok`.
    Done,
    /// Its handler failed on every attempt; `last_error` says why.
    Dead,
}

impl State {
    /// Every state, in the order of a row's life.
    pub const ALL: [State; 4] = [State::Pending, State::Running, State::Done, State::Dead];

    /// `pending`, `running`, `done` or `dead`.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Done => "done",
            State::Dead => "dead",
        }
    }

    pub(crate) fn from_column(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row of the inbox: its table and its `id` there.
///
/// ```
/// use cmc_webhook_inbox::{JobId, Kind};
///
/// let id = JobId { kind: Kind::Event, id: 42 };
/// assert_eq!(id.to_string(), "event/42");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId {
    /// The table.
    pub kind: Kind,
    /// The `id` column.
    pub id: i64,
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.id)
    }
}

/// A stored event or mail, handed to the worker's handler.
///
/// ```
/// use cmc_webhook_inbox::{Item, Job};
///
/// async fn handle(job: Job) -> Result<(), String> {
///     match &job.item {
///         Item::Event(event) => println!("{} {:?}", job.key, event.message_id()),
///         Item::Mail(mail) => println!("mail to {}", mail.envelope_to),
///         _ => {}
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Job {
    /// The row.
    pub id: JobId,
    /// The row's `idempotency_key`.
    pub key: IdempotencyKey,
    /// Which run of the handler this is: 1 the first time.
    pub attempt: u32,
    /// When the webhook was stored.
    pub received_at: Timestamp,
    /// The address the webhook came from, as the layer saw it.
    pub client: Option<IpAddr>,
    /// The `server_composition` of the batch or mail.
    pub server_composition: Text,
    /// The name of the source (CMC account) the webhook came from, as the
    /// layer decided it ([`Source::name`](cmc_webhook_core::Source::name)):
    /// `default` for a layer configured for one account, and for rows
    /// stored before sources existed. Look up the source's console zone by
    /// this name to read the event's `created`.
    pub source: String,
    /// The event or the mail.
    pub item: Item,
}

/// What a [`Job`] carries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Item {
    /// One event of a batch.
    Event(Event),
    /// One inbound mail, with its attachments' bytes.
    Mail(InboundMail),
}
