//! The worker's loop: rounds with the store, and waits between them.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};

use super::super::clock::{millis, millis_after};
use super::super::error::InboxError;
use super::super::job::{Job, Kind};
use super::super::mailbox::store::DeliveryRound;
use super::deliveries::ROUTE_BATCH;
use super::lanes::{call, within, Lanes, Target};
use super::{Claim, Renew, Stopped, Worker, SETTLE_WAIT};

impl<H, F, E> Worker<H>
where
    H: Fn(Job) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    /// The worker's loop, until `stop` holds a deadline and the handlers in
    /// flight have finished (or the deadline has passed).
    pub(super) async fn run(self, mut stop: watch::Receiver<Option<Duration>>) -> Stopped {
        let me = worker_name();
        let mut wake = self.inbox.subscribe();
        let mut lanes = Lanes::new(self.mailboxes.as_deref());
        let mut stats = Stopped::default();
        let mut deadline: Option<Instant> = None;
        let mut turn = 0usize;
        let renew_every = self.lease / 3;
        let mut renewed = Instant::now();
        let mut swept: Option<Instant> = None;
        // Which kinds may have due rows (event, mail); with mailboxes, the
        // mails' flag says whether mails may wait to be routed.
        let mut due = [true; 2];
        let kinds = [self.events, self.mailboxes.is_none() && self.mails];
        let mut first_finished: Option<Instant> = None;
        loop {
            if deadline.is_none() {
                deadline = stop.borrow().map(|d| Instant::now() + d);
            }
            let free = self.concurrency - lanes.rows;
            let sweep_due = swept.is_none_or(|at| at.elapsed() >= self.poll_interval);
            let wanted = [due[0] && kinds[0], due[1] && kinds[1]];
            let claim = (deadline.is_none()
                && ((lanes.rows == 0 || free >= self.concurrency.div_ceil(4))
                    && wanted.contains(&true)
                    || sweep_due))
                .then(|| {
                    turn += 1;
                    let now = self.inbox.now();
                    if sweep_due {
                        swept = Some(Instant::now());
                    }
                    Claim {
                        sweep: sweep_due,
                        held: lanes.held_rows(),
                        kinds,
                        due: wanted,
                        order: [[Kind::Event, Kind::Mail], [Kind::Mail, Kind::Event]][turn % 2],
                        limit: free,
                        now: millis(now),
                        lease_until: millis_after(now, self.lease),
                        max_attempts: self.max_attempts,
                    }
                });
            // The mailboxes: what each may claim, and whether mails wait
            // to be routed.
            let boxes = self.mailboxes.as_deref();
            let box_claims: Vec<(usize, usize)> = match (boxes, deadline) {
                (Some(m), None) => lanes.claims(m),
                _ => Vec::new(),
            };
            let route = if boxes.is_some() && deadline.is_none() && due[1] {
                ROUTE_BATCH
            } else {
                0
            };
            let renew_due = !lanes.held.is_empty() && renewed.elapsed() >= renew_every;
            let renew = renew_due.then(|| Renew {
                ids: lanes.held_rows(),
                until: millis_after(self.inbox.now(), self.lease),
            });
            let renew_boxes = if renew_due {
                lanes.held_deliveries()
            } else {
                Vec::new()
            };
            // Outcomes wait for the next claim (so that each round records
            // several), unless nothing else runs, the worker is stopping,
            // or the oldest has waited SETTLE_WAIT.
            let unsettled = !lanes.finished.is_empty() || !lanes.delivered.is_empty();
            let settle_now = unsettled
                && (lanes.running.is_empty()
                    || deadline.is_some()
                    || first_finished.is_some_and(|at| at.elapsed() >= SETTLE_WAIT));
            let box_work = box_claims.iter().any(|(_, room)| *room > 0) || route > 0;
            let held_boxes = if boxes.is_some() {
                lanes.held_deliveries()
            } else {
                Vec::new()
            };
            if settle_now || claim.is_some() || renew.is_some() || box_work {
                let now = self.inbox.now();
                let deliveries = boxes.map(|mailboxes| DeliveryRound {
                    mailboxes,
                    settle: &lanes.delivered,
                    renew: renew.as_ref().map(|r| (renew_boxes.as_slice(), r.until)),
                    route,
                    claims: &box_claims,
                    sweep: claim.as_ref().is_some_and(|c| c.sweep),
                    held: &held_boxes,
                    now: millis(now),
                    lease_until: millis_after(now, self.lease),
                });
                let result = {
                    let round = self.inbox.inner.store.round(
                        &me,
                        &lanes.finished,
                        renew.as_ref(),
                        claim.as_ref(),
                        self.suppressions.as_ref(),
                        deliveries.as_ref(),
                    );
                    // Stopping: a round that waits for an unreachable store
                    // (the pool's connect timeout) gives up at the deadline, a
                    // second past it at least, to record what the deadline
                    // itself released. A stop that comes during a round sets
                    // the deadline at once.
                    let mut round = std::pin::pin!(round);
                    let mut early = None;
                    if deadline.is_none() {
                        tokio::select! {
                            biased;
                            result = &mut round => early = Some(result),
                            Ok(()) = stop.changed() => {
                                deadline = stop.borrow().map(|d| Instant::now() + d);
                            }
                        }
                    }
                    let result = match (early, deadline) {
                        (Some(result), _) => result,
                        (None, Some(at)) => tokio::time::timeout_at(
                            at.max(Instant::now() + Duration::from_secs(1)),
                            &mut round,
                        )
                        .await
                        .unwrap_or_else(|_| {
                            Err(InboxError::new(
                                crate::InboxErrorKind::Database,
                                "the store did not answer before the shutdown deadline",
                            ))
                        }),
                        (None, None) => round.await,
                    };
                    result
                };
                match result {
                    Ok((claimed, step)) => {
                        lanes.finished.clear();
                        lanes.delivered.clear();
                        first_finished = None;
                        if let Some(c) = &claim {
                            // A kind that returned fewer rows than it had
                            // room for has no more due now.
                            let mut room = c.limit;
                            for kind in c.order {
                                if !c.due[kind.slot()] {
                                    continue;
                                }
                                let got = claimed.iter().filter(|r| r.id.kind == kind).count();
                                if got < room {
                                    due[kind.slot()] = false;
                                }
                                room = room.saturating_sub(got);
                            }
                        }
                        if renew.is_some() {
                            renewed = Instant::now();
                        }
                        for row in claimed {
                            match row.into_job() {
                                Ok(job) => {
                                    let (id, attempt) = (job.id, job.attempt);
                                    let task = lanes.running.spawn(within(
                                        self.handler_timeout,
                                        call(
                                            self.handler.clone(),
                                            self.inbox.inner.store.clone(),
                                            job,
                                        ),
                                    ));
                                    lanes.hold(task.id(), Target::Row(id), attempt);
                                }
                                Err((id, why)) => {
                                    tracing::error!(job = %id, error = %why, "a stored row is dead: it does not read back");
                                    lanes.finished.push(self.settle_error(id, u32::MAX, why));
                                }
                            }
                        }
                        if let Some(mailboxes) = &self.mailboxes {
                            if route > 0 && !step.more {
                                due[1] = false;
                            }
                            self.started_deliveries(mailboxes, &box_claims, step, &mut lanes);
                        }
                    }
                    Err(e) => {
                        if let Some(at) = deadline.filter(|at| Instant::now() >= *at) {
                            // Shutting down, out of time, and the store is
                            // unreachable: stop; the rows come back when
                            // their leases run out.
                            lanes.running.abort_all();
                            while let Some(result) = lanes.running.join_next_with_id().await {
                                self.finished(result, &mut lanes, &mut stats);
                            }
                            stats.unrecorded =
                                (lanes.finished.len() + lanes.delivered.len()) as u64;
                            lanes.wait_hooks(deadline).await;
                            tracing::error!(error = %e, unrecorded = stats.unrecorded, past = ?at.elapsed(), "the inbox worker stopped at its deadline without recording every outcome: the store is unreachable");
                            return stats;
                        }
                        tracing::error!(error = %e, "the inbox worker could not reach its store; trying again");
                        let pause = Instant::now() + self.poll_interval.min(Duration::from_secs(1));
                        sleep_until(deadline.map_or(pause, |d| d.max(Instant::now()).min(pause)))
                            .await;
                        continue;
                    }
                }
            }
            if deadline.is_some()
                && lanes.running.is_empty()
                && lanes.finished.is_empty()
                && lanes.delivered.is_empty()
            {
                lanes.wait_hooks(deadline).await;
                return stats;
            }
            while lanes.hooks.try_join_next().is_some() {}
            tokio::select! {
                Some(result) = lanes.running.join_next_with_id(), if !lanes.running.is_empty() => {
                    self.finished(result, &mut lanes, &mut stats);
                    while let Some(result) = lanes.running.try_join_next_with_id() {
                        self.finished(result, &mut lanes, &mut stats);
                    }
                    first_finished.get_or_insert_with(Instant::now);
                }
                () = sleep_until(first_finished.map_or_else(Instant::now, |at| at + SETTLE_WAIT)),
                    if first_finished.is_some() && deadline.is_none() => {}
                Ok(()) = wake.changed(), if deadline.is_none() => {
                    due = [true; 2];
                    lanes.all_due();
                }
                () = sleep(self.poll_interval), if deadline.is_none() => {
                    due = [true; 2];
                    lanes.all_due();
                }
                Ok(()) = stop.changed(), if deadline.is_none() => {}
                () = sleep_until(renewed + renew_every), if !lanes.held.is_empty() => {}
                () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    lanes.running.abort_all();
                    while let Some(result) = lanes.running.join_next_with_id().await {
                        self.finished(result, &mut lanes, &mut stats);
                    }
                }
            }
        }
    }
}

/// The `locked_by` of this worker: the process and a number, unique on
/// the host.
fn worker_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "pid{}-w{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        jiff::Timestamp::now().as_millisecond()
    )
}
