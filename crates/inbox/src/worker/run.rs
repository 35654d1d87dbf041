//! The worker's loop: rounds with the store, and waits between them.
//!
//! `Worker::run` reads as its steps: `plan` what the next round asks of
//! the store, run the `round`, start what it `claimed` (or, the store
//! unreachable, pause, or `give_up` at the deadline), and `wait` for the
//! next thing to happen.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until};

use super::super::clock::{millis, millis_after};
use super::super::error::InboxError;
use super::super::job::{Job, Kind};
use super::super::mailbox::Mailboxes;
use super::super::rows::Claimed;
use super::super::store::{DeliveryRound, DeliveryStep, MailboxSlot};
use super::deliveries::ROUTE_BATCH;
use super::lanes::{Lanes, Target, call, within};
use super::{Claim, Renew, SETTLE_WAIT, Stopped, Worker};

/// What the loop keeps from one round to the next, apart from the
/// handlers in flight ([`Lanes`]).
struct Pace {
    /// This worker's `locked_by`.
    me: String,
    /// When the handlers in flight are cancelled: set once a stop comes.
    deadline: Option<Instant>,
    /// Claims made, to alternate which table goes first.
    turn: usize,
    renew_every: Duration,
    renewed: Instant,
    swept: Option<Instant>,
    /// Which kinds may have due rows (event, mail); with mailboxes, the
    /// mails' flag says whether mails may wait to be routed.
    due: [bool; 2],
    /// Which kinds this worker's handler takes (event, mail).
    kinds: [bool; 2],
    /// When the oldest outcome not yet recorded came in.
    first_finished: Option<Instant>,
    /// The mailboxes as the round's statements see them.
    slots: Vec<MailboxSlot>,
    /// Whether the store knows if this worker keeps the suppression list
    /// (a worker that takes no events has nothing to say).
    keeping_noted: bool,
}

/// What one round asks of the store.
struct Plan {
    claim: Option<Claim>,
    /// For each mailbox, how many deliveries to claim.
    box_claims: Vec<(usize, usize)>,
    /// How many mails to route.
    route: usize,
    renew: Option<Renew>,
    renew_boxes: Vec<i64>,
    held_boxes: Vec<i64>,
    /// Whether the outcomes waiting are recorded now.
    settle_now: bool,
}

impl Plan {
    /// Whether the round is worth running.
    fn has_work(&self) -> bool {
        let box_work = self.box_claims.iter().any(|(_, room)| *room > 0) || self.route > 0;
        self.settle_now || self.claim.is_some() || self.renew.is_some() || box_work
    }
}

impl<H, F, E> Worker<H>
where
    H: Fn(Job) -> F + Send + Sync + 'static,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    /// The worker's loop, until `stop` holds a deadline and the handlers in
    /// flight have finished (or the deadline has passed).
    pub(super) async fn run(self, mut stop: watch::Receiver<Option<Duration>>) -> Stopped {
        let mut wake = self.inbox.subscribe();
        let mut lanes = Lanes::new(self.mailboxes.as_deref());
        let mut stats = Stopped::default();
        let mut pace = Pace {
            me: worker_name(),
            deadline: None,
            turn: 0,
            renew_every: self.lease / 3,
            renewed: Instant::now(),
            swept: None,
            due: [true; 2],
            kinds: [self.events, self.mailboxes.is_none() && self.mails],
            first_finished: None,
            slots: self
                .mailboxes
                .as_deref()
                .map(Mailboxes::slots)
                .unwrap_or_default(),
            keeping_noted: !self.events,
        };
        loop {
            if pace.deadline.is_none() {
                pace.deadline = stop.borrow().map(|d| Instant::now() + d);
            }
            if !pace.keeping_noted {
                pace.keeping_noted = self.note_keeping().await;
            }
            let plan = self.plan(&mut pace, &lanes);
            if plan.has_work() {
                match self.round(&plan, &mut pace, &lanes, &mut stop).await {
                    Ok((claimed, step)) => self.claimed(plan, claimed, step, &mut pace, &mut lanes),
                    Err(e) => {
                        if let Some(at) = pace.deadline.filter(|at| Instant::now() >= *at) {
                            return self.give_up(e, at, lanes, stats).await;
                        }
                        tracing::error!(error = %e, "the inbox worker could not reach its store; trying again");
                        let pause = Instant::now() + self.poll_interval.min(Duration::from_secs(1));
                        let deadline = pace.deadline;
                        sleep_until(deadline.map_or(pause, |d| d.max(Instant::now()).min(pause)))
                            .await;
                        continue;
                    }
                }
            }
            if pace.deadline.is_some()
                && lanes.running.is_empty()
                && lanes.finished.is_empty()
                && lanes.delivered.is_empty()
            {
                lanes.wait_hooks(pace.deadline).await;
                return stats;
            }
            self.wait(&mut pace, &mut lanes, &mut stats, &mut wake, &mut stop)
                .await;
        }
    }

    /// Records in the store whether this worker keeps the suppression
    /// list, so that a check elsewhere can tell a list nobody keeps from
    /// an empty one; `false` when the store could not take it (the next
    /// time round tries again; the round's own error is logged).
    async fn note_keeping(&self) -> bool {
        let kept = self.suppressions.is_some();
        match self
            .inbox
            .inner
            .store
            .note_keeping(kept, millis(self.inbox.now()))
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "could not record whether this worker keeps the suppression list");
                false
            }
        }
    }

    /// What the next round asks: rows to claim (and whether to sweep the
    /// rows whose last lease ran out), deliveries to claim and mails to
    /// route, leases to renew, and whether to record the outcomes waiting.
    fn plan(&self, pace: &mut Pace, lanes: &Lanes) -> Plan {
        let deadline = pace.deadline;
        let free = self.concurrency - lanes.rows;
        let sweep_due = pace
            .swept
            .is_none_or(|at| at.elapsed() >= self.poll_interval);
        let due = pace.due;
        let kinds = pace.kinds;
        let wanted = [due[0] && kinds[0], due[1] && kinds[1]];
        let claim = (deadline.is_none()
            && ((lanes.rows == 0 || free >= self.concurrency.div_ceil(4))
                && wanted.contains(&true)
                || sweep_due))
            .then(|| {
                pace.turn += 1;
                let now = self.inbox.now();
                if sweep_due {
                    pace.swept = Some(Instant::now());
                }
                Claim {
                    sweep: sweep_due,
                    held: lanes.held_rows(),
                    kinds,
                    due: wanted,
                    order: [[Kind::Event, Kind::Mail], [Kind::Mail, Kind::Event]][pace.turn % 2],
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
        let renew_due = !lanes.held.is_empty() && pace.renewed.elapsed() >= pace.renew_every;
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
                || pace
                    .first_finished
                    .is_some_and(|at| at.elapsed() >= SETTLE_WAIT));
        let held_boxes = if boxes.is_some() {
            lanes.held_deliveries()
        } else {
            Vec::new()
        };
        Plan {
            claim,
            box_claims,
            route,
            renew,
            renew_boxes,
            held_boxes,
            settle_now,
        }
    }

    /// One round with the store: records the outcomes waiting, renews,
    /// claims and routes, in one call of the backend.
    ///
    /// Stopping: a round that waits for an unreachable store (the pool's
    /// connect timeout) gives up at the deadline, a second past it at
    /// least, to record what the deadline itself released. A stop that
    /// comes during a round sets the deadline at once.
    async fn round(
        &self,
        plan: &Plan,
        pace: &mut Pace,
        lanes: &Lanes,
        stop: &mut watch::Receiver<Option<Duration>>,
    ) -> Result<(Vec<Claimed>, DeliveryStep), InboxError> {
        let now = self.inbox.now();
        let routing = self.mailboxes.as_deref().map(Mailboxes::routing);
        let deliveries = routing.as_ref().map(|router| DeliveryRound {
            mailboxes: &pace.slots,
            router,
            settle: &lanes.delivered,
            renew: plan
                .renew
                .as_ref()
                .map(|r| (plan.renew_boxes.as_slice(), r.until)),
            route: plan.route,
            claims: &plan.box_claims,
            sweep: plan.claim.as_ref().is_some_and(|c| c.sweep),
            held: &plan.held_boxes,
            now: millis(now),
            lease_until: millis_after(now, self.lease),
        });
        let round = self.inbox.inner.store.round(
            &pace.me,
            &lanes.finished,
            plan.renew.as_ref(),
            plan.claim.as_ref(),
            self.suppressions.as_ref(),
            deliveries.as_ref(),
        );
        let mut round = std::pin::pin!(round);
        let mut early = None;
        if pace.deadline.is_none() {
            tokio::select! {
                biased;
                result = &mut round => early = Some(result),
                Ok(()) = stop.changed() => {
                    pace.deadline = stop.borrow().map(|d| Instant::now() + d);
                }
            }
        }
        match (early, pace.deadline) {
            (Some(result), _) => result,
            (None, Some(at)) => {
                tokio::time::timeout_at(at.max(Instant::now() + Duration::from_secs(1)), &mut round)
                    .await
                    .unwrap_or_else(|_| {
                        Err(InboxError::new(
                            crate::InboxErrorKind::Database,
                            "the store did not answer before the shutdown deadline",
                        ))
                    })
            }
            (None, None) => round.await,
        }
    }

    /// After a round that reached the store: its outcomes are recorded,
    /// a kind that came back short is not due, and the handlers of what it
    /// claimed start.
    fn claimed(
        &self,
        plan: Plan,
        claimed: Vec<Claimed>,
        step: DeliveryStep,
        pace: &mut Pace,
        lanes: &mut Lanes,
    ) {
        lanes.finished.clear();
        lanes.delivered.clear();
        pace.first_finished = None;
        if let Some(c) = &plan.claim {
            // A kind that returned fewer rows than it had
            // room for has no more due now.
            let mut room = c.limit;
            for kind in c.order {
                if !c.due[kind.slot()] {
                    continue;
                }
                let got = claimed.iter().filter(|r| r.id.kind == kind).count();
                if got < room {
                    pace.due[kind.slot()] = false;
                }
                room = room.saturating_sub(got);
            }
        }
        if plan.renew.is_some() {
            pace.renewed = Instant::now();
        }
        for row in claimed {
            match row.into_job() {
                Ok(job) => {
                    let (id, attempt) = (job.id, job.attempt);
                    let task = lanes.running.spawn(within(
                        self.handler_timeout,
                        call(self.handler.clone(), self.inbox.inner.store.clone(), job),
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
            if plan.route > 0 && !step.more {
                pace.due[1] = false;
            }
            self.started_deliveries(mailboxes, &plan.box_claims, step, lanes);
        }
    }

    /// Shutting down, out of time, and the store is unreachable: stops;
    /// the rows come back when their leases run out.
    async fn give_up(
        &self,
        e: InboxError,
        at: Instant,
        mut lanes: Lanes,
        mut stats: Stopped,
    ) -> Stopped {
        lanes.running.abort_all();
        while let Some(result) = lanes.running.join_next_with_id().await {
            self.finished(result, &mut lanes, &mut stats);
        }
        stats.unrecorded = (lanes.finished.len() + lanes.delivered.len()) as u64;
        lanes.wait_hooks(Some(at)).await;
        tracing::error!(error = %e, unrecorded = stats.unrecorded, past = ?at.elapsed(), "the inbox worker stopped at its deadline without recording every outcome: the store is unreachable");
        stats
    }

    /// Waits for the next thing to do: a handler that finishes, an
    /// outcome that has waited long enough, a row stored, the poll
    /// interval, a stop, a lease to renew, or the deadline (which cancels
    /// the handlers still running).
    async fn wait(
        &self,
        pace: &mut Pace,
        lanes: &mut Lanes,
        stats: &mut Stopped,
        wake: &mut watch::Receiver<u64>,
        stop: &mut watch::Receiver<Option<Duration>>,
    ) {
        let deadline = pace.deadline;
        while lanes.hooks.try_join_next().is_some() {}
        tokio::select! {
            Some(result) = lanes.running.join_next_with_id(), if !lanes.running.is_empty() => {
                self.finished(result, lanes, stats);
                while let Some(result) = lanes.running.try_join_next_with_id() {
                    self.finished(result, lanes, stats);
                }
                pace.first_finished.get_or_insert_with(Instant::now);
            }
            () = sleep_until(pace.first_finished.map_or_else(Instant::now, |at| at + SETTLE_WAIT)),
                if pace.first_finished.is_some() && deadline.is_none() => {}
            Ok(()) = wake.changed(), if deadline.is_none() => {
                pace.due = [true; 2];
                lanes.all_due();
            }
            () = sleep(self.poll_interval), if deadline.is_none() => {
                pace.due = [true; 2];
                lanes.all_due();
            }
            Ok(()) = stop.changed(), if deadline.is_none() => {}
            () = sleep_until(pace.renewed + pace.renew_every), if !lanes.held.is_empty() => {}
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                lanes.running.abort_all();
                while let Some(result) = lanes.running.join_next_with_id().await {
                    self.finished(result, lanes, stats);
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
