//! The handlers in flight: which row or delivery each works on, and how
//! one is run.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use super::super::job::{Item, Job, JobId};
use super::super::mailbox::{Handled, Mailboxes};
use super::super::store::{DeliverySettle, Store};
use super::Settle;

/// What a running handler works on: a row of the inbox, or a delivery to
/// a mailbox (by index).
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    Row(JobId),
    Delivery { mailbox: usize, id: i64 },
}

/// The worker's handlers in flight and their outcomes not yet recorded.
pub(super) struct Lanes {
    pub(super) running: JoinSet<Result<Handled, String>>,
    pub(super) held: HashMap<tokio::task::Id, (Target, u32, Instant)>,
    /// Handlers of rows running.
    pub(super) rows: usize,
    /// Handlers of each mailbox running.
    pub(super) busy: Vec<usize>,
    /// Whether each mailbox may have due deliveries.
    pub(super) due: Vec<bool>,
    /// Concurrency of each mailbox.
    pub(super) limits: Vec<usize>,
    pub(super) finished: Vec<Settle>,
    pub(super) delivered: Vec<DeliverySettle>,
    /// The unrouted hooks running: given until the shutdown deadline.
    pub(super) hooks: JoinSet<()>,
}

impl Lanes {
    pub(super) fn new(mailboxes: Option<&Mailboxes>) -> Lanes {
        let limits: Vec<usize> = mailboxes
            .map(|m| m.boxes.iter().map(|b| b.concurrency).collect())
            .unwrap_or_default();
        Lanes {
            running: JoinSet::new(),
            held: HashMap::new(),
            rows: 0,
            busy: vec![0; limits.len()],
            due: vec![true; limits.len()],
            limits,
            finished: Vec::new(),
            delivered: Vec::new(),
            hooks: JoinSet::new(),
        }
    }

    pub(super) fn hold(&mut self, task: tokio::task::Id, target: Target, attempt: u32) {
        match target {
            Target::Row(_) => self.rows += 1,
            Target::Delivery { mailbox, .. } => self.busy[mailbox] += 1,
        }
        self.held.insert(task, (target, attempt, Instant::now()));
    }

    pub(super) fn release(&mut self, task: tokio::task::Id) -> Option<(Target, u32, Instant)> {
        let held = self.held.remove(&task)?;
        match held.0 {
            Target::Row(_) => self.rows -= 1,
            Target::Delivery { mailbox, .. } => self.busy[mailbox] -= 1,
        }
        Some(held)
    }

    /// Lets the unrouted hooks still running finish, until `deadline` (a
    /// second at least); cancels the rest.
    pub(super) async fn wait_hooks(&mut self, deadline: Option<Instant>) {
        let until = deadline
            .unwrap_or_else(Instant::now)
            .max(Instant::now() + Duration::from_secs(1));
        let hooks = &mut self.hooks;
        let all = async { while hooks.join_next().await.is_some() {} };
        if tokio::time::timeout_at(until, all).await.is_err() {
            tracing::warn!(
                cancelled = self.hooks.len(),
                "unrouted hooks still running at the shutdown deadline were cancelled"
            );
            self.hooks.abort_all();
        }
    }

    pub(super) fn all_due(&mut self) {
        self.due.iter_mut().for_each(|d| *d = true);
    }

    /// For each mailbox, how many deliveries to claim: its free room, when
    /// it may have due ones and a quarter of its concurrency is free (or
    /// nothing of it runs).
    pub(super) fn claims(&self, mailboxes: &Mailboxes) -> Vec<(usize, usize)> {
        (0..mailboxes.boxes.len())
            .map(|i| {
                let room = self.limits[i] - self.busy[i];
                let wanted = self.due[i]
                    && room > 0
                    && (self.busy[i] == 0 || room >= self.limits[i].div_ceil(4));
                (i, if wanted { room } else { 0 })
            })
            .collect()
    }

    pub(super) fn held_rows(&self) -> Vec<JobId> {
        self.held
            .values()
            .filter_map(|(t, _, _)| match t {
                Target::Row(id) => Some(*id),
                Target::Delivery { .. } => None,
            })
            .collect()
    }

    pub(super) fn held_deliveries(&self) -> Vec<i64> {
        self.held
            .values()
            .filter_map(|(t, _, _)| match t {
                Target::Delivery { id, .. } => Some(*id),
                Target::Row(_) => None,
            })
            .collect()
    }
}

/// One handler run, its error as text. A mail's attachments are read
/// first (so that only the mails being handled are in memory); a failed
/// read is a failed attempt.
pub(super) async fn call<H, F, E>(
    handler: Arc<H>,
    store: Store,
    mut job: Job,
) -> Result<Handled, String>
where
    H: Fn(Job) -> F,
    F: Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    if let Item::Event(event) = &mut job.item {
        store
            .load_event_apart(job.id.id, event)
            .await
            .map_err(|e| e.to_string())?;
    }
    if let Item::Mail(mail) = &mut job.item {
        store
            .load_mail_apart(job.id.id, mail)
            .await
            .map_err(|e| e.to_string())?;
        if !mail.attachments.is_empty() {
            let data = store
                .attachments(job.id.id)
                .await
                .map_err(|e| e.to_string())?;
            if data.len() != mail.attachments.len() {
                return Err(format!(
                    "the mail lists {} attachments, cmc_mail_attachments holds {}",
                    mail.attachments.len(),
                    data.len()
                ));
            }
            for (a, data) in mail.attachments.iter_mut().zip(data) {
                a.data = Bytes::from(data);
            }
        }
    }
    match handler(job).await {
        Ok(()) => Ok(Handled::Delivered),
        Err(e) => Err(e.to_string()),
    }
}

/// `run`, cancelled past `limit` as a failed attempt.
pub(super) async fn within<T>(
    limit: Duration,
    run: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
        Err(format!(
            "the handler did not finish within {limit:?} (the worker's handler_timeout): \
             cancelled, and counted as a failed attempt"
        ))
    })
}

pub(super) fn panic_text(e: JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned()),
        Err(e) => e.to_string(),
    }
}
