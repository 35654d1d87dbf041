//! The deliveries of mails to mailboxes, as an operator reads, replays
//! and prunes them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;

use super::super::clock::{from_millis, millis};
use super::super::error::{InboxError, InboxErrorKind};
use super::super::inbox::Inbox;
use super::super::store::{self, DeliveryQuery, DeliveryReplay, Which};
use super::MailboxError;
use cmc_webhook_core::IdempotencyKey;

/// Where a delivery is in its life, as the `state` column spells it.
///
/// ```text
///                 claim                Ok(())
/// pending ---------------> processing ---------> delivered --> (pruned)
///    ^                       |   |  |  Ok(bounced)
///    |     Err, attempts     |   |  +-----------> bounced ----> (pruned)
///    +---- failed <----------+   | Err on the last attempt
///    |                           v
///    +-------- replay -------- dead
///
/// unrouted --replay--> (the mail is routed again)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DeliveryState {
    /// Waiting for its mailbox's handler.
    Pending,
    /// Its handler is running (a lease until `locked_until`).
    Processing,
    /// Its handler returned `Ok`.
    Delivered,
    /// Its handler failed; another attempt is due at `run_at`.
    Failed,
    /// Its handler refused the mail on purpose ([`Handled::Bounced`](super::Handled::Bounced)).
    Bounced,
    /// Its handler failed on every attempt.
    Dead,
    /// No route took it, and there is no fallback.
    Unrouted,
}

impl DeliveryState {
    /// Every state.
    pub const ALL: [DeliveryState; 7] = [
        DeliveryState::Pending,
        DeliveryState::Processing,
        DeliveryState::Delivered,
        DeliveryState::Failed,
        DeliveryState::Bounced,
        DeliveryState::Dead,
        DeliveryState::Unrouted,
    ];

    /// The state's name in the `state` column.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Processing => "processing",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Bounced => "bounced",
            DeliveryState::Dead => "dead",
            DeliveryState::Unrouted => "unrouted",
        }
    }

    /// Whether a replay takes a delivery in this state back to pending.
    pub(crate) fn is_final(&self) -> bool {
        matches!(
            self,
            DeliveryState::Delivered
                | DeliveryState::Failed
                | DeliveryState::Bounced
                | DeliveryState::Dead
        )
    }

    fn from_column(s: &str) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = MailboxError;

    fn from_str(s: &str) -> Result<DeliveryState, MailboxError> {
        DeliveryState::from_column(s.trim()).ok_or_else(|| {
            MailboxError::new(format!(
                "{s:?} is not a delivery state: pending, processing, delivered, failed, \
                 bounced, dead or unrouted"
            ))
        })
    }
}

/// One mail's delivery to one mailbox (or its unrouted row), as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MailboxDelivery {
    /// The delivery's id (`cmc_mail_deliveries.id`).
    pub id: i64,
    /// The mail's id (`cmc_mails.id`).
    pub mail_id: i64,
    /// The mail's idempotency key.
    pub key: IdempotencyKey,
    /// The mailbox; `None` when unrouted.
    pub mailbox: Option<String>,
    /// The envelope recipients that went this way.
    pub recipients: Vec<String>,
    /// The route that matched, as written (`*` for the fallback).
    pub route: Option<String>,
    /// Where the delivery is.
    pub state: DeliveryState,
    /// Handler runs started.
    pub attempts: u32,
    /// The error of the last failed run.
    pub last_error: Option<String>,
    /// Why the handler bounced the mail.
    pub bounce_reason: Option<String>,
    /// When the mail was routed.
    pub created_at: Timestamp,
    /// When a pending or failed delivery is due.
    pub run_at: Timestamp,
    /// When it was delivered, bounced or dead.
    pub done_at: Option<Timestamp>,
    /// The mail's envelope sender.
    pub envelope_from: String,
    /// The mail's subject.
    pub subject: String,
}

impl MailboxDelivery {
    fn from_raw(r: store::RawDelivery) -> Result<MailboxDelivery, InboxError> {
        let corrupt = |what: String| {
            InboxError::new(
                InboxErrorKind::Corrupt,
                format!("delivery {} does not read back: {what}", r.id),
            )
        };
        Ok(MailboxDelivery {
            id: r.id,
            mail_id: r.mail_id,
            key: r
                .key
                .parse()
                .map_err(|e| corrupt(format!("idempotency_key: {e}")))?,
            mailbox: r.mailbox,
            recipients: serde_json::from_str(&r.recipients)
                .map_err(|e| corrupt(format!("recipients: {e}")))?,
            route: r.route,
            state: DeliveryState::from_column(&r.state)
                .ok_or_else(|| corrupt(format!("state {:?}", r.state)))?,
            attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
            last_error: r.last_error,
            bounce_reason: r.bounce_reason,
            created_at: from_millis(r.created_at),
            run_at: from_millis(r.run_at),
            done_at: r.done_at.map(from_millis),
            envelope_from: r.envelope_from,
            subject: r.subject,
        })
    }
}

/// How many deliveries one mailbox (or the unrouted) has in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MailboxCounts {
    /// The mailbox; `None` for the unrouted mails.
    pub mailbox: Option<String>,
    counts: BTreeMap<DeliveryState, u64>,
}

impl MailboxCounts {
    /// The deliveries in `state`.
    pub fn get(&self, state: DeliveryState) -> u64 {
        self.counts.get(&state).copied().unwrap_or(0)
    }

    /// The deliveries in every state.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Grouped by mailbox (in name order, the unrouted last); states this
    /// crate does not know are left out.
    pub(crate) fn from_rows(rows: Vec<(Option<String>, String, i64)>) -> Vec<MailboxCounts> {
        let mut by: BTreeMap<(bool, Option<String>), MailboxCounts> = BTreeMap::new();
        for (mailbox, state, n) in rows {
            let Some(state) = DeliveryState::from_column(&state) else {
                continue;
            };
            let entry = by
                .entry((mailbox.is_none(), mailbox.clone()))
                .or_insert_with(|| MailboxCounts {
                    mailbox,
                    counts: BTreeMap::new(),
                });
            let n = crate::ops::rows_of("deliveries", state.as_str(), n);
            let count = entry.counts.entry(state).or_default();
            *count = count.saturating_add(n);
        }
        by.into_values().collect()
    }
}

/// Which deliveries [`Deliveries::list`] and [`Deliveries::replay`]
/// take: all mailboxes and states unless narrowed; a list returns at most
/// [`limit`](DeliveryFilter::limit) of them, after the id
/// [`after`](DeliveryFilter::after).
///
/// ```
/// use cmc_webhook_inbox::mailbox::{DeliveryFilter, DeliveryState};
///
/// let dead_tickets = DeliveryFilter::all().mailbox("tickets").states([DeliveryState::Dead]);
/// let unrouted = DeliveryFilter::unrouted();
/// # let _ = (dead_tickets, unrouted);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub(crate) mailbox: Which,
    pub(crate) states: Vec<DeliveryState>,
    pub(crate) mail: Option<i64>,
    pub(crate) after: i64,
    pub(crate) limit: usize,
}

impl DeliveryFilter {
    /// Every delivery (a list: the first 100).
    pub fn all() -> DeliveryFilter {
        DeliveryFilter {
            mailbox: Which::Any,
            states: Vec::new(),
            mail: None,
            after: 0,
            limit: 100,
        }
    }

    /// The unrouted mails.
    pub fn unrouted() -> DeliveryFilter {
        DeliveryFilter {
            mailbox: Which::Unrouted,
            states: vec![DeliveryState::Unrouted],
            ..DeliveryFilter::all()
        }
    }

    /// Only the deliveries of mailbox `name`.
    pub fn mailbox(mut self, name: impl Into<String>) -> DeliveryFilter {
        self.mailbox = Which::Named(name.into());
        self
    }

    /// Only the deliveries in one of `states`.
    pub fn states(mut self, states: impl IntoIterator<Item = DeliveryState>) -> DeliveryFilter {
        self.states = states.into_iter().collect();
        self
    }

    /// Only the deliveries of mail `id` (`cmc_mails.id`).
    pub fn mail(mut self, id: i64) -> DeliveryFilter {
        self.mail = Some(id);
        self
    }

    /// Only deliveries whose id is greater than `id`: the next page.
    pub fn after(mut self, id: i64) -> DeliveryFilter {
        self.after = id;
        self
    }

    /// At most `n` deliveries per list (100 by default).
    pub fn limit(mut self, n: usize) -> DeliveryFilter {
        self.limit = n;
        self
    }
}

impl DeliveryFilter {
    /// The filter as the store's statements read it.
    fn query(&self) -> DeliveryQuery {
        DeliveryQuery {
            mailbox: self.mailbox.clone(),
            states: self.states.iter().map(DeliveryState::as_str).collect(),
            mail: self.mail,
            after: self.after,
            limit: self.limit,
        }
    }

    /// A replay of what the filter takes: its finished deliveries back to
    /// pending, then, when it takes the state `unrouted` and names no
    /// mailbox, the mails of its unrouted ones routed again.
    fn replay(&self) -> DeliveryReplay {
        let mut finished = self.query();
        finished.states = self
            .states
            .iter()
            .filter(|s| s.is_final())
            .map(DeliveryState::as_str)
            .collect();
        DeliveryReplay {
            finished,
            reroute: self.states.contains(&DeliveryState::Unrouted)
                && !matches!(self.mailbox, Which::Named(_)),
        }
    }
}

/// What [`Deliveries::replay`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Replayed {
    /// Deliveries set pending again, their attempts reset.
    pub deliveries: u64,
    /// Unrouted mails set to be routed again.
    pub rerouted: u64,
}

/// What [`Deliveries::prune`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PrunedDeliveries {
    /// Delivered and bounced deliveries.
    pub deliveries: u64,
    /// Mails (with their attachments) that no delivery was left of.
    pub mails: u64,
}

/// The deliveries of an inbox's mails to its mailboxes; made by
/// [`Inbox::deliveries`](crate::Inbox::deliveries).
///
/// ```
/// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
/// use cmc_webhook_inbox::mailbox::{DeliveryFilter, DeliveryState};
///
/// let deliveries = inbox.deliveries();
/// for mailbox in deliveries.counts().await? {
///     println!("{:?}: {} dead", mailbox.mailbox, mailbox.get(DeliveryState::Dead));
/// }
/// let mail = deliveries.list(&DeliveryFilter::all().mail(42)).await?;
/// let replayed = deliveries.replay(&DeliveryFilter::all().states([DeliveryState::Dead])).await?;
/// # let _ = (mail, replayed);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Deliveries {
    inbox: Inbox,
}

impl Deliveries {
    pub(crate) fn new(inbox: Inbox) -> Deliveries {
        Deliveries { inbox }
    }

    /// How many deliveries each mailbox has in each state, in mailbox name
    /// order, the unrouted last.
    pub async fn counts(&self) -> Result<Vec<MailboxCounts>, InboxError> {
        let rows = self.inbox.inner.store.delivery_counts().await?;
        Ok(MailboxCounts::from_rows(rows))
    }

    /// The deliveries `filter` takes, in order of id.
    pub async fn list(&self, filter: &DeliveryFilter) -> Result<Vec<MailboxDelivery>, InboxError> {
        self.inbox
            .inner
            .store
            .delivery_list(&filter.query())
            .await?
            .into_iter()
            .map(MailboxDelivery::from_raw)
            .collect()
    }

    /// Sets the delivered, failed, bounced or dead deliveries `filter`
    /// takes (only those: dead when it names no state) back to pending
    /// with their attempts reset, and routes the mails of its unrouted
    /// ones again (when it takes the state `unrouted`); wakes the workers.
    pub async fn replay(&self, filter: &DeliveryFilter) -> Result<Replayed, InboxError> {
        let mut filter = filter.clone();
        if filter.states.is_empty() {
            filter.states = vec![DeliveryState::Dead];
        }
        let (deliveries, rerouted) = self
            .inbox
            .inner
            .store
            .delivery_replay(&filter.replay(), millis(self.inbox.now()))
            .await?;
        self.inbox.wake();
        Ok(Replayed {
            deliveries,
            rerouted,
        })
    }

    /// Deletes the deliveries of `mailbox` delivered or bounced longer
    /// than `retain` ago, and the mails (with their attachments) that no
    /// delivery is left of.
    pub async fn prune(
        &self,
        mailbox: &str,
        retain: Duration,
    ) -> Result<PrunedDeliveries, InboxError> {
        let before = millis(self.inbox.now())
            .saturating_sub(i64::try_from(retain.as_millis()).unwrap_or(i64::MAX));
        let mut pruned = PrunedDeliveries::default();
        loop {
            let (deliveries, mails) = self
                .inbox
                .inner
                .store
                .delivery_prune(mailbox, before)
                .await?;
            pruned.deliveries += deliveries;
            pruned.mails += mails;
            if deliveries < store::PRUNE_SLICE {
                return Ok(pruned);
            }
        }
    }
}

impl Deliveries {
    /// Deletes the mails no mailbox took (only an unrouted delivery left)
    /// routed longer than `retain` ago, with their attachments, a slice at
    /// a time; returns how many.
    pub async fn prune_unrouted(&self, retain: Duration) -> Result<u64, InboxError> {
        let before = millis(self.inbox.now())
            .saturating_sub(i64::try_from(retain.as_millis()).unwrap_or(i64::MAX));
        let mut pruned = 0;
        loop {
            let mails = self.inbox.inner.store.prune_unrouted(before).await?;
            pruned += mails;
            if mails < store::PRUNE_SLICE {
                return Ok(pruned);
            }
        }
    }
}

impl Inbox {
    /// The deliveries of the inbox's mails to mailboxes: counts, lists,
    /// replay and retention; see [`mailbox`](crate::mailbox).
    pub fn deliveries(&self) -> Deliveries {
        Deliveries::new(self.clone())
    }
}
