//! The states of the targets handlers send to, kept in the store so that
//! programs other than the one sending see them.
//!
//! A handler that sends rows somewhere (the receiver's relay, which POSTs
//! each row to an application) may stop for a while after failures in a
//! row: a circuit breaker pauses the target, then lets one attempt probe
//! it, then closes again when it answers. That state lives in the sending
//! process; a program that reads the same store from elsewhere (the
//! receiver's `counts` subcommand on another host, a console of its own)
//! would otherwise see rows waiting with no reason given. So the sender
//! records each change of state here ([`Inbox::set_target_state`]), and
//! the others read them ([`Inbox::target_states`]).
//!
//! - **When**: only when the state changes (paused, probing, closed),
//!   never per attempt: a store write per attempt would slow every row.
//! - **Several writers**: one row per target and writer (the process, as
//!   it names itself), so processes sending to one target from one
//!   PostgreSQL store each show their own state; a change older than the
//!   row's is ignored.
//! - **One clock**: the times are the store's ([`Inbox::now`](crate::Inbox::now):
//!   on PostgreSQL the server's), so that a reader on another host
//!   compares them with its own `inbox.now()`, whatever the hosts' clocks.
//! - **Writers that stop**: every state carries the time it ends unless
//!   renewed ([`TargetState::until`]): a paused or probing state's end,
//!   and for a closed one a lease the writer renews now and then (the
//!   receiver: 10 minutes, renewed every 5). Once past, the row tells no
//!   more than that ([`TargetState::is_current`] is false; its writer may
//!   have stopped). A writer that stops in good order removes its rows
//!   ([`Inbox::remove_target_states`]); rows unchanged for longer than the
//!   retention, and past their end, are deleted by [`Inbox::prune`].
//! - **Short writes**: a write waits at most [`WRITE_LIMIT`] for a lock
//!   (on PostgreSQL `lock_timeout` and `statement_timeout`, on SQLite the
//!   busy timeout), so that a locked table holds no connection of the
//!   pool, nor SQLite's single writer, for long; [`Inbox::set_target_states`]
//!   writes several states in one transaction.
//! - **What is stored** is shown to operators: the target is given
//!   without credentials or query (a token there would be stored in the
//!   clear), and both texts are short, printable and given by the
//!   program, not by a webhook's sender.
//!
//! ```
//! # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
//! use cmc_webhook_inbox::targets::{TargetCondition, TargetState};
//!
//! let now = inbox.now();
//! let mut paused = TargetState::new(
//!     "https://app.example.jp/hooks",
//!     "web-1 pid 4242",
//!     TargetCondition::Paused,
//!     now,
//! );
//! paused.failures = 10;
//! paused.pauses = 1;
//! paused.until = Some(now + jiff::SignedDuration::from_secs(30));
//! inbox.set_target_state(&paused).await?;
//!
//! for state in inbox.target_states().await? {
//!     if state.is_current(inbox.now()) {
//!         println!("{} {} by {}", state.target, state.condition, state.writer);
//!     }
//! }
//! # Ok(()) }
//! ```

use std::time::Duration;

use jiff::Timestamp;

#[cfg(doc)]
use crate::Inbox;
use crate::error::{InboxError, InboxErrorKind};
use crate::store::targets::RawTargetState;

/// The longest target stored, in bytes (it is part of the table's key).
pub const MAX_TARGET: usize = 1000;
/// The longest writer name stored, in bytes.
pub const MAX_WRITER: usize = 200;

/// The longest a write of target states waits for a lock (and, on
/// PostgreSQL, any of its statements runs) before it fails.
pub const WRITE_LIMIT: Duration = Duration::from_secs(2);

/// Where a target's circuit breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TargetCondition {
    /// Attempts go freely (after a pause: the target answered again).
    Closed,
    /// Attempts wait, until [`TargetState::until`].
    Paused,
    /// After a pause, one attempt tests the target; the others wait for
    /// its answer (due by [`TargetState::until`]).
    Probing,
}

impl TargetCondition {
    /// The name stored and shown: `closed`, `paused`, `probing`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetCondition::Closed => "closed",
            TargetCondition::Paused => "paused",
            TargetCondition::Probing => "probing",
        }
    }

    fn parse(s: &str) -> Option<TargetCondition> {
        Some(match s {
            "closed" => TargetCondition::Closed,
            "paused" => TargetCondition::Paused,
            "probing" => TargetCondition::Probing,
            _ => return None,
        })
    }
}

impl std::fmt::Display for TargetCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A target's state as one writer last recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TargetState {
    /// The target, as shown (no credentials, no query): at most
    /// [`MAX_TARGET`] bytes.
    pub target: String,
    /// Who recorded it (a host and process): at most [`MAX_WRITER`] bytes.
    pub writer: String,
    /// Where the breaker stands.
    pub condition: TargetCondition,
    /// Failed attempts in a row when it changed.
    pub failures: u64,
    /// When the state ends unless the writer records another: a pause's
    /// end, a probe's deadline, a closed state's lease (which its writer
    /// renews while it runs). `None`: no end (a closed state recorded
    /// without a lease stays current until replaced or pruned).
    pub until: Option<Timestamp>,
    /// How many times the writer paused the target (since it started).
    pub pauses: u64,
    /// When the state changed (on the store's clock, as every time here:
    /// [`Inbox::now`](crate::Inbox::now)).
    pub changed_at: Timestamp,
}

impl TargetState {
    /// A state with no failures, pauses or end: set the fields that apply.
    pub fn new(
        target: impl Into<String>,
        writer: impl Into<String>,
        condition: TargetCondition,
        changed_at: Timestamp,
    ) -> TargetState {
        TargetState {
            target: target.into(),
            writer: writer.into(),
            condition,
            failures: 0,
            until: None,
            pauses: 0,
            changed_at,
        }
    }

    /// Whether the state holds at `now` by a writer that is keeping the
    /// row up to date: false once [`until`](Self::until) is past (the
    /// writer would have recorded the next state, or renewed this one, by
    /// then, unless it stopped). A paused or probing state without an end
    /// is not current; a closed one without an end is.
    ///
    /// ```
    /// use cmc_webhook_inbox::targets::{TargetCondition, TargetState};
    ///
    /// let t0: jiff::Timestamp = "2026-04-01T00:00:00Z".parse().unwrap();
    /// let mut s = TargetState::new("https://app.example.jp/hooks", "web-1", TargetCondition::Paused, t0);
    /// s.until = Some(t0 + jiff::SignedDuration::from_secs(30));
    /// assert!(s.is_current(t0 + jiff::SignedDuration::from_secs(10)));
    /// assert!(!s.is_current(t0 + jiff::SignedDuration::from_secs(31)));
    /// ```
    pub fn is_current(&self, now: Timestamp) -> bool {
        match (self.condition, self.until) {
            (_, Some(until)) => until > now,
            (TargetCondition::Closed, None) => true,
            (_, None) => false,
        }
    }

    /// Whether the state can be stored: an empty, overlong or
    /// control-holding target or writer is refused
    /// ([`InboxErrorKind::Invalid`], which no retry changes).
    ///
    /// ```
    /// use cmc_webhook_inbox::targets::{TargetCondition, TargetState, MAX_TARGET};
    ///
    /// let long = format!("https://app.example.jp/{}", "a".repeat(MAX_TARGET));
    /// let s = TargetState::new(long, "web-1", TargetCondition::Closed, jiff::Timestamp::now());
    /// assert!(s.check().is_err());
    /// ```
    pub fn check(&self) -> Result<(), InboxError> {
        for (what, text, max) in [
            ("target", &self.target, MAX_TARGET),
            ("writer", &self.writer, MAX_WRITER),
        ] {
            if text.trim().is_empty() {
                return Err(InboxError::new(
                    InboxErrorKind::Invalid,
                    format!("a target state's {what} is empty"),
                ));
            }
            if text.len() > max {
                return Err(InboxError::new(
                    InboxErrorKind::Invalid,
                    format!(
                        "a target state's {what} is {} bytes long: at most {max}",
                        text.len()
                    ),
                ));
            }
            if text.chars().any(char::is_control) {
                return Err(InboxError::new(
                    InboxErrorKind::Invalid,
                    format!("a target state's {what} holds a control character"),
                ));
            }
        }
        Ok(())
    }

    fn raw(&self) -> RawTargetState {
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        (
            self.target.clone(),
            self.writer.clone(),
            self.condition.as_str().to_owned(),
            count(self.failures),
            self.until.map(|t| t.as_millisecond()),
            count(self.pauses),
            self.changed_at.as_millisecond(),
        )
    }

    fn from_raw(raw: RawTargetState) -> Result<TargetState, InboxError> {
        let (target, writer, condition, failures, until, pauses, changed_at) = raw;
        let corrupt = |what: &str| {
            InboxError::new(
                InboxErrorKind::Corrupt,
                format!("the state of target {target:?} by {writer:?}: {what}"),
            )
        };
        let condition = TargetCondition::parse(&condition)
            .ok_or_else(|| corrupt(&format!("unknown state {condition:?}")))?;
        let time = |ms: i64| crate::clock::from_millis(ms);
        Ok(TargetState {
            condition,
            failures: u64::try_from(failures).unwrap_or(0),
            until: until.map(time),
            pauses: u64::try_from(pauses).unwrap_or(0),
            changed_at: time(changed_at),
            target,
            writer,
        })
    }
}

impl crate::Inbox {
    /// Records `state` as its writer's state of its target, replacing the
    /// writer's row for that target unless the row changed later. Call it
    /// when the state changes, not per attempt, and off the path of the
    /// attempts: it is a write transaction (waiting at most [`WRITE_LIMIT`]
    /// for a lock). A state that fails [`TargetState::check`] is refused
    /// ([`InboxErrorKind::Invalid`]).
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// use cmc_webhook_inbox::targets::{TargetCondition, TargetState};
    ///
    /// let now = inbox.now();
    /// let mut closed = TargetState::new(
    ///     "https://app.example.jp/hooks",
    ///     "web-1 pid 4242",
    ///     TargetCondition::Closed,
    ///     now,
    /// );
    /// closed.until = Some(now + jiff::SignedDuration::from_mins(10));
    /// inbox.set_target_state(&closed).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_target_state(&self, state: &TargetState) -> Result<(), InboxError> {
        self.set_target_states(std::slice::from_ref(state)).await
    }

    /// Records several states ([`set_target_state`](Self::set_target_state)
    /// each) in one transaction, on one connection: all or none. Refused
    /// whole ([`InboxErrorKind::Invalid`]) if one fails
    /// [`TargetState::check`].
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// use cmc_webhook_inbox::targets::{TargetCondition, TargetState};
    ///
    /// let now = inbox.now();
    /// let states: Vec<TargetState> = ["https://a.example.jp/hooks", "https://b.example.jp/hooks"]
    ///     .into_iter()
    ///     .map(|t| TargetState::new(t, "web-1 pid 4242", TargetCondition::Closed, now))
    ///     .collect();
    /// inbox.set_target_states(&states).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_target_states(&self, states: &[TargetState]) -> Result<(), InboxError> {
        let rows = states
            .iter()
            .map(|s| s.check().map(|()| s.raw()))
            .collect::<Result<Vec<_>, _>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        self.inner.store.target_states_set(&rows, WRITE_LIMIT).await
    }

    /// Deletes `writer`'s rows, whatever their target: how many. A writer
    /// that stops in good order calls it, so that its last states are not
    /// shown beside the live writers' (waits at most [`WRITE_LIMIT`] for a
    /// lock).
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// let gone = inbox.remove_target_states("web-1 pid 4242").await?;
    /// # let _ = gone;
    /// # Ok(()) }
    /// ```
    pub async fn remove_target_states(&self, writer: &str) -> Result<u64, InboxError> {
        self.inner
            .store
            .target_states_remove(writer, WRITE_LIMIT)
            .await
    }

    /// The targets' states, by target and writer: every row, current or
    /// not (see [`TargetState::is_current`]).
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// let now = inbox.now();
    /// let paused = inbox
    ///     .target_states()
    ///     .await?
    ///     .into_iter()
    ///     .filter(|s| s.until.is_some() && s.is_current(now))
    ///     .count();
    /// println!("{paused} targets paused");
    /// # Ok(()) }
    /// ```
    pub async fn target_states(&self) -> Result<Vec<TargetState>, InboxError> {
        self.inner
            .store
            .target_states()
            .await?
            .into_iter()
            .map(TargetState::from_raw)
            .collect()
    }

    /// Deletes the target states unchanged for longer than `retain` and
    /// past their end ([`TargetState::until`]; a state without an end, by
    /// age alone): how many. A paused state, or a closed one whose lease its
    /// writer keeps renewing, stays however short `retain` is.
    /// [`Inbox::prune`] does it with its own `retain`.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// let gone = inbox
    ///     .prune_target_states(std::time::Duration::from_secs(7 * 86_400))
    ///     .await?;
    /// # let _ = gone;
    /// # Ok(()) }
    /// ```
    pub async fn prune_target_states(&self, retain: Duration) -> Result<u64, InboxError> {
        self.inner
            .store
            .target_states_prune(self.before(retain), self.now().as_millisecond())
            .await
    }
}
