//! The mailboxes' side of a round: starting the deliveries it claimed,
//! and the outcome of a failed delivery.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use super::super::clock::{millis, millis_after};
use super::super::job::Job;
use super::super::mailbox::Mailboxes;
use super::super::store::{DeliveryOutcome, DeliverySettle, DeliveryStep};
use super::Worker;
use super::lanes::{Lanes, Target, within};
use super::truncated;

/// Mails routed per round at most.
pub(super) const ROUTE_BATCH: usize = 64;

impl<H, F, E> Worker<H>
where
    H: Fn(Job) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    /// After a round: counts what it routed, calls the unrouted hook, and
    /// starts the handlers of the deliveries it claimed.
    pub(super) fn started_deliveries(
        &self,
        mailboxes: &Arc<Mailboxes>,
        claims: &[(usize, usize)],
        step: DeliveryStep,
        lanes: &mut Lanes,
    ) {
        for reached in &step.reached {
            crate::telemetry::routed(reached.map(|i| mailboxes.boxes[i].name.as_str()));
        }
        if step.routed > 0 {
            // New deliveries: every mailbox may have some due.
            lanes.all_due();
        }
        for &(index, room) in claims {
            let got = step.claimed.iter().filter(|d| d.mailbox == index).count();
            if room > 0 && got < room && step.routed == 0 {
                lanes.due[index] = false;
            }
        }
        for (mail_id, recipients) in step.unrouted {
            // A stranger writes the envelope: escaped and cut (it may be 20 MB).
            let shown: Vec<String> = recipients
                .iter()
                .take(5)
                .map(|r| cmc_webhook_core::printable(r, 200))
                .collect();
            tracing::warn!(mail = mail_id, recipients = recipients.len(), first = %shown.join(", "), "an inbound mail was stored unrouted: no route takes it and there is no fallback");
            if let Some(hook) = mailboxes.unrouted.clone() {
                // At most as many hooks at once as handlers: each holds
                // its mail, and strangers' mails arrive at their pace.
                if lanes.hooks.len() >= self.concurrency {
                    tracing::warn!(
                        mail = mail_id,
                        running = lanes.hooks.len(),
                        "the unrouted hook was not called for this mail: as many hooks run as the worker's concurrency (the mail is kept, unrouted)"
                    );
                    continue;
                }
                let store = self.inbox.inner.store.clone();
                let limit = self.handler_timeout;
                lanes.hooks.spawn(async move {
                    match crate::mailbox::unrouted(&store, mail_id, recipients).await {
                        Ok(mail) => {
                            if tokio::time::timeout(limit, hook(mail)).await.is_err() {
                                tracing::error!(mail = mail_id, limit = ?limit, "the unrouted hook did not finish in time: cancelled");
                            }
                        }
                        Err(e) => {
                            tracing::error!(mail = mail_id, error = %e, "could not read an unrouted mail back for the hook")
                        }
                    }
                });
            }
        }
        for claimed in step.claimed {
            let (index, id, attempts) = (claimed.mailbox, claimed.id, claimed.attempts);
            let attempt = u32::try_from(attempts).unwrap_or(u32::MAX);
            let mailbox = mailboxes.boxes[index].name.clone();
            match crate::mailbox::into_job(claimed, mailbox, &self.inbox.inner.store) {
                Ok(job) => {
                    let handler = mailboxes.boxes[index].handler.clone();
                    let store = self.inbox.inner.store.clone();
                    let run = async move {
                        let mut job = job;
                        store
                            .load_mail_apart(job.mail_id, &mut job.mail)
                            .await
                            .map_err(|e| e.to_string())?;
                        handler(job).await
                    };
                    let task = lanes.running.spawn(within(self.handler_timeout, run));
                    lanes.hold(task.id(), Target::Delivery { mailbox: index, id }, attempt);
                }
                Err(why) => {
                    tracing::error!(delivery = id, error = %why, "a delivery is dead: it does not read back");
                    crate::telemetry::mailbox_handled(&mailboxes.boxes[index].name, "dead");
                    lanes.delivered.push(DeliverySettle {
                        id,
                        at: millis(self.inbox.now()),
                        outcome: DeliveryOutcome::Dead { error: why },
                    });
                }
            }
        }
    }

    pub(super) fn count_delivery(&self, mailbox: usize, outcome: &'static str) {
        if let Some(m) = &self.mailboxes {
            crate::telemetry::mailbox_handled(&m.boxes[mailbox].name, outcome);
        }
    }

    /// A failed mailbox handler run: retried after its mailbox's backoff,
    /// or dead on its mailbox's last attempt.
    pub(super) fn delivery_error(
        &self,
        mailbox: usize,
        id: i64,
        attempt: u32,
        error: String,
        panicked: bool,
    ) -> DeliverySettle {
        let error = truncated(error);
        let now = self.inbox.now();
        let Some(m) = self.mailboxes.as_ref().map(|m| &m.boxes[mailbox]) else {
            // Deliveries are only claimed by a worker with mailboxes.
            return DeliverySettle {
                id,
                at: millis(now),
                outcome: DeliveryOutcome::Released,
            };
        };
        let outcome = if attempt >= m.max_attempts {
            crate::telemetry::mailbox_handled(&m.name, "dead");
            tracing::error!(mailbox = %m.name, delivery = id, attempt, error = %error, "a mailbox's handler failed on its last attempt: the delivery is dead");
            DeliveryOutcome::Dead { error }
        } else {
            let label = if panicked { "panicked" } else { "failed" };
            crate::telemetry::mailbox_handled(&m.name, label);
            let wait = m.backoff.delay(attempt);
            tracing::warn!(mailbox = %m.name, delivery = id, attempt, error = %error, retry_in = ?wait, "a mailbox's handler failed; it will be tried again");
            DeliveryOutcome::Failed {
                retry_at: millis_after(now, wait),
                error,
            }
        };
        DeliverySettle {
            id,
            at: millis(now),
            outcome,
        }
    }
}
