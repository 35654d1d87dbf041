//! The mailboxes' retention, run on its own task.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::super::Inbox;
use super::super::mailbox::{DeliveryState, Mailboxes};

/// Deletes the deliveries past their mailbox's retention, every
/// `prune_every`, until the worker is told to stop.
pub(super) async fn retention(
    inbox: Inbox,
    mailboxes: Arc<Mailboxes>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let mut tick = tokio::time::interval(mailboxes.prune_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let deliveries = inbox.deliveries();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = stop.changed() => if changed.is_err() || stop.borrow().is_some() {
                return;
            },
        }
        // Deliveries waiting for a mailbox that this worker does not
        // declare (renamed, or removed) would wait unseen.
        if let Ok(counts) = deliveries.counts().await {
            for c in counts {
                let Some(name) = c.mailbox.as_deref() else {
                    continue;
                };
                let waiting = c.get(DeliveryState::Pending) + c.get(DeliveryState::Failed);
                if waiting > 0 && !mailboxes.boxes.iter().any(|b| b.name == name) {
                    tracing::warn!(mailbox = %name, waiting, "deliveries wait for a mailbox this worker does not declare: declare it again, or run a worker that does");
                }
            }
        }
        match deliveries
            .prune_unrouted(mailboxes.unrouted_retention)
            .await
        {
            Ok(0) => {}
            Ok(mails) => tracing::info!(mails, "deleted the unrouted mails past their retention"),
            Err(e) => {
                tracing::warn!(error = %e, "could not delete the unrouted mails past their retention")
            }
        }
        for mailbox in &mailboxes.boxes {
            match deliveries.prune(&mailbox.name, mailbox.retention).await {
                Ok(p) if p.deliveries > 0 => {
                    tracing::info!(mailbox = %mailbox.name, deliveries = p.deliveries, mails = p.mails, "deleted the deliveries past the mailbox's retention")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(mailbox = %mailbox.name, error = %e, "could not delete the deliveries past the mailbox's retention")
                }
            }
        }
    }
}
