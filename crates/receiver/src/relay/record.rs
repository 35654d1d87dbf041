//! The relay targets' states, recorded in the store for `counts` and
//! consoles in other processes ([`Inbox::set_target_states`]).
//!
//! One [`StateRecorder`] per process, whatever the number of targets (the
//! main relay and each mailbox's): a task of its own reads every target's
//! breaker ([`Breaker::changes`](super::breaker::Breaker::changes), a watch
//! that keeps the latest change) at most once per [`RECORD_EVERY`], and
//! writes what changed in one transaction, on one connection of the
//! inbox's pool at a time, which waits at most
//! [`WRITE_LIMIT`](cmc_webhook_inbox::targets::WRITE_LIMIT) for a lock.
//! So a locked table, or a target flapping under a pause of a millisecond,
//! costs at most one short write per second and one connection: never the
//! pool the webhooks are stored with. Changes made meanwhile are
//! coalesced, never lost: the latest is written.
//!
//! - A closed state is written with a lease ([`LEASE`]), renewed every
//!   [`RENEW_EVERY`] while the process runs: once the process stops, its
//!   rows read "state unknown" instead of "closed (sending)".
//! - [`RecordingStates::stop`], on a graceful shutdown, removes the
//!   process's rows.
//! - A target longer than the store keeps is stored shortened
//!   ([`stored_text`]); a state the store refuses as invalid is warned
//!   about once and not tried again.
//!
//! [`Inbox::set_target_states`]: cmc_webhook_inbox::Inbox::set_target_states
//!
//! ```no_run
//! # async fn f(inbox: cmc_webhook_inbox::Inbox, relay: cmc_receiver::relay::Relay) {
//! use cmc_receiver::relay::record::StateRecorder;
//!
//! let me = cmc_receiver::relay::writer_name();
//! let mut recorder = StateRecorder::new(inbox);
//! recorder.watch(&relay, me.clone());
//! let recording = recorder.spawn();
//! // ... on a graceful shutdown:
//! recording.stop().await;
//! # }
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use cmc_webhook_inbox::targets::{MAX_TARGET, MAX_WRITER, TargetCondition, TargetState};
use cmc_webhook_inbox::{Inbox, InboxErrorKind};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Relay;
use super::breaker::Change;

/// How often the recorder looks for changes: at most one write per this
/// (and per target, at most one record).
pub const RECORD_EVERY: Duration = Duration::from_secs(1);

/// How long a closed state holds unless renewed.
pub const LEASE: Duration = Duration::from_secs(600);

/// How often the closed states' leases are renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(300);

/// How long a failed write waits before it is tried again (sooner at the
/// next change).
const RECORD_RETRY: Duration = Duration::from_secs(10);

/// The longest one write may take, the pool's wait for a connection
/// included (the store's own limit bounds the locks it waits for).
const RECORD_LIMIT: Duration = Duration::from_secs(5);

/// `text` as stored where at most `max` bytes are kept: unchanged when it
/// fits; else its beginning, `...` and a hash of the whole (so that two
/// long targets that begin alike stay two rows), `max` bytes at most.
///
/// ```
/// use cmc_receiver::relay::record::stored_text;
///
/// let long = format!("https://app.example.jp/{}", "a".repeat(2000));
/// let stored = stored_text(&long, 1000);
/// assert!(stored.len() <= 1000);
/// assert!(stored.starts_with("https://app.example.jp/aaa"));
/// assert_ne!(stored, stored_text(&format!("{long}b"), 1000));
/// assert_eq!(stored_text("https://app.example.jp/hooks", 1000), "https://app.example.jp/hooks");
/// ```
pub fn stored_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    let tail = format!("... (sha256 {})", crate::hex::hex(&digest.as_ref()[..8]));
    let mut end = max.saturating_sub(tail.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{tail}", &text[..end])
}

/// One watched target.
#[derive(Debug)]
struct Watched {
    /// As stored (shortened to fit).
    target: String,
    writer: String,
    changes: watch::Receiver<Option<Change>>,
    /// The latest change read, and whether it is yet to be written.
    latest: Option<Change>,
    pending: bool,
    /// Refused by the store as invalid: not tried again.
    refused: bool,
    /// Its relay is gone (nothing more will change).
    gone: bool,
}

/// Gathers the targets whose states one process records (see the
/// [module](self)): [`watch`](Self::watch) each, then
/// [`spawn`](Self::spawn) the one task.
#[derive(Debug)]
pub struct StateRecorder {
    inbox: Inbox,
    watched: Vec<Watched>,
}

impl StateRecorder {
    /// A recorder writing to `inbox`.
    pub fn new(inbox: Inbox) -> StateRecorder {
        StateRecorder {
            inbox,
            watched: Vec::new(),
        }
    }

    /// Records `relay`'s target's changes as `writer`'s. The target is
    /// stored as logged (without query, nor credentials, which
    /// [`super::target`] refuses), and it and `writer` are shortened to
    /// fit the store ([`stored_text`]).
    pub fn watch(&mut self, relay: &Relay, writer: String) -> &mut StateRecorder {
        self.watched.push(Watched {
            target: stored_text(relay.target(), MAX_TARGET),
            writer: stored_text(&writer, MAX_WRITER),
            changes: relay.breaker().changes(),
            latest: None,
            pending: false,
            refused: false,
            gone: false,
        });
        self
    }

    /// Starts the task. It ends at [`RecordingStates::stop`], or once
    /// every watched relay is dropped.
    pub fn spawn(self) -> RecordingStates {
        let (stop, stopped) = watch::channel(false);
        let writers: BTreeSet<String> = self.watched.iter().map(|w| w.writer.clone()).collect();
        let inbox = self.inbox.clone();
        let task = tokio::spawn(self.run(stopped));
        RecordingStates {
            stop,
            task,
            inbox,
            writers: writers.into_iter().collect(),
        }
    }

    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(RECORD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed = Instant::now();
        // Since when writes fail (then tried again after RECORD_RETRY).
        let mut failing: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => return,
            }
            let mut changed = false;
            for w in &mut self.watched {
                match w.changes.has_changed() {
                    Ok(true) => {
                        w.latest = w.changes.borrow_and_update().clone();
                        w.pending = w.latest.is_some();
                        changed |= w.pending;
                    }
                    Ok(false) => {}
                    Err(_) => w.gone = true,
                }
            }
            if self.watched.iter().all(|w| w.gone && !w.pending) {
                return;
            }
            // The closed states' leases.
            let renewing = renewed.elapsed() >= RENEW_EVERY;
            if renewing {
                for w in &mut self.watched {
                    if w.latest
                        .as_ref()
                        .is_some_and(|c| c.condition == TargetCondition::Closed)
                    {
                        w.pending = true;
                    }
                }
            }
            if let Some(since) = failing
                && !changed
                && since.elapsed() < RECORD_RETRY
            {
                continue;
            }
            if self.watched.iter().any(|w| w.pending && !w.refused) {
                let ok = self.write(failing.is_some()).await;
                failing = (!ok).then(Instant::now);
            }
            if renewing && failing.is_none() {
                renewed = Instant::now();
            }
        }
    }

    /// Writes the pending states in one transaction: whether it went.
    async fn write(&mut self, failing: bool) -> bool {
        // On the store's clock (on PostgreSQL the server's), which readers
        // on other hosts compare with.
        let now = self.inbox.now();
        let skew = now.duration_since(jiff::Timestamp::now());
        let shift = |t: jiff::Timestamp| t.saturating_add(skew).unwrap_or(t);
        let lease = jiff::SignedDuration::try_from(LEASE).unwrap_or_default();
        let mut states = Vec::new();
        let mut which = Vec::new();
        for (i, w) in self.watched.iter_mut().enumerate() {
            let Some(change) = w.latest.as_ref().filter(|_| w.pending && !w.refused) else {
                continue;
            };
            let mut state = TargetState::new(
                w.target.clone(),
                w.writer.clone(),
                change.condition,
                shift(change.at),
            );
            state.failures = u64::from(change.failures);
            state.until = match change.condition {
                TargetCondition::Closed => now.saturating_add(lease).ok(),
                _ => change.until.map(shift),
            };
            state.pauses = change.pauses;
            if let Err(e) = state.check() {
                // Permanent: no retry makes it valid.
                w.refused = true;
                tracing::warn!(target_url = %w.target, error = %e, "the relay target's state cannot be recorded in the store (not tried again)");
                continue;
            }
            states.push(state);
            which.push(i);
        }
        if states.is_empty() {
            return true;
        }
        let error = match tokio::time::timeout(RECORD_LIMIT, self.inbox.set_target_states(&states))
            .await
        {
            Ok(Ok(())) => None,
            Ok(Err(e)) if e.kind() == InboxErrorKind::Invalid => {
                for &i in &which {
                    self.watched[i].refused = true;
                }
                tracing::warn!(error = %e, "the relay targets' states cannot be recorded in the store (not tried again)");
                return true;
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!("no answer within {}s", RECORD_LIMIT.as_secs())),
        };
        match error {
            None => {
                for &i in &which {
                    self.watched[i].pending = false;
                }
                tracing::debug!(states = states.len(), "recorded the relay targets' states");
                true
            }
            Some(error) if failing => {
                tracing::debug!(%error, "could not record the relay targets' states, again");
                false
            }
            Some(error) => {
                tracing::warn!(%error, states = states.len(), "could not record the relay targets' states in the store (relaying goes on; tried again)");
                false
            }
        }
    }
}

/// The running recorder ([`StateRecorder::spawn`]).
#[derive(Debug)]
pub struct RecordingStates {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    inbox: Inbox,
    writers: Vec<String>,
}

impl RecordingStates {
    /// Stops recording, and removes this process's rows from the store
    /// ([`Inbox::remove_target_states`], each bounded in time), so that
    /// they are not shown beside the live processes'. A failure is
    /// logged: the rows then expire with their leases.
    ///
    /// [`Inbox::remove_target_states`]: cmc_webhook_inbox::Inbox::remove_target_states
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        for writer in &self.writers {
            match tokio::time::timeout(RECORD_LIMIT, self.inbox.remove_target_states(writer)).await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(%writer, error = %e, "could not remove the relay targets' states")
                }
                Err(_) => {
                    tracing::warn!(%writer, "could not remove the relay targets' states in time")
                }
            }
        }
    }

    /// Stops recording, leaving the rows (they expire with their leases).
    pub fn abort(self) {
        self.task.abort();
    }
}
