//! What a finished handler run becomes: the outcome a round records.

use std::fmt;
use std::future::Future;

use tokio::task::JoinError;

use super::super::clock::{millis, millis_after};
use super::super::job::{Job, JobId};
use super::super::mailbox::Handled;
use super::super::store::{DeliveryOutcome, DeliverySettle};
use super::lanes::{Lanes, Target, panic_text};
use super::{Outcome, Settle, Stopped, Worker, truncated};

impl<H, F, E> Worker<H>
where
    H: Fn(Job) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    /// Records a finished (or cancelled) handler run.
    pub(super) fn finished(
        &self,
        result: Result<(tokio::task::Id, Result<Handled, String>), JoinError>,
        lanes: &mut Lanes,
        stats: &mut Stopped,
    ) {
        let mut panicked = false;
        let (task, outcome) = match result {
            Ok((task, outcome)) => (task, outcome),
            Err(e) if e.is_cancelled() => {
                if let Some((target, _, started)) = lanes.release(e.id()) {
                    stats.released += 1;
                    let at = millis(self.inbox.now());
                    match target {
                        Target::Row(id) => {
                            crate::telemetry::handled(
                                id.kind.as_str(),
                                "released",
                                started.elapsed(),
                            );
                            lanes.finished.push(Settle {
                                id,
                                at,
                                outcome: Outcome::Released,
                            });
                        }
                        Target::Delivery { mailbox, id } => {
                            self.count_delivery(mailbox, "released");
                            lanes.delivered.push(DeliverySettle {
                                id,
                                at,
                                outcome: DeliveryOutcome::Released,
                            });
                        }
                    }
                }
                return;
            }
            Err(e) => {
                panicked = true;
                (
                    e.id(),
                    Err(format!("the handler panicked: {}", panic_text(e))),
                )
            }
        };
        let Some((target, attempt, started)) = lanes.release(task) else {
            return;
        };
        match outcome {
            Ok(handled) => {
                stats.done += u64::from(handled == Handled::Delivered);
                stats.bounced += u64::from(handled != Handled::Delivered);
                let at = millis(self.inbox.now());
                match target {
                    Target::Row(id) => {
                        crate::telemetry::handled(id.kind.as_str(), "done", started.elapsed());
                        lanes.finished.push(Settle {
                            id,
                            at,
                            outcome: Outcome::Done,
                        });
                    }
                    Target::Delivery { mailbox, id } => {
                        let outcome = match handled {
                            Handled::Bounced { reason } => {
                                self.count_delivery(mailbox, "bounced");
                                tracing::info!(delivery = id, reason = %reason, "a mailbox's handler bounced its mail");
                                DeliveryOutcome::Bounced { reason }
                            }
                            Handled::Delivered => {
                                self.count_delivery(mailbox, "delivered");
                                DeliveryOutcome::Delivered
                            }
                        };
                        lanes.delivered.push(DeliverySettle { id, at, outcome });
                    }
                }
            }
            Err(error) => {
                stats.failed += 1;
                match target {
                    Target::Row(id) => {
                        let label = if panicked { "panicked" } else { "failed" };
                        crate::telemetry::handled(id.kind.as_str(), label, started.elapsed());
                        lanes.finished.push(self.settle_error(id, attempt, error));
                    }
                    Target::Delivery { mailbox, id } => {
                        let settle = self.delivery_error(mailbox, id, attempt, error, panicked);
                        lanes.delivered.push(settle);
                    }
                }
            }
        }
    }

    /// A failed run: retried after the backoff, or dead on the last attempt.
    pub(super) fn settle_error(&self, id: JobId, attempt: u32, error: String) -> Settle {
        let error = truncated(error);
        let now = self.inbox.now();
        crate::telemetry::failed_row(id.kind.as_str(), attempt >= self.max_attempts);
        let outcome = if attempt >= self.max_attempts {
            tracing::error!(job = %id, attempt, error = %error, "the handler failed on its last attempt: the row is dead");
            Outcome::Dead { error }
        } else {
            let wait = self.backoff.delay(attempt);
            tracing::warn!(job = %id, attempt, error = %error, retry_in = ?wait, "the handler failed; it will be tried again");
            Outcome::Retry {
                at: millis_after(now, wait),
                error,
            }
        };
        Settle {
            id,
            at: millis(now),
            outcome,
        }
    }
}
