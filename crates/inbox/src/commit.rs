//! The group commit: the writer task that commits the rows of concurrent
//! requests together, each request told once its rows are committed.

use tokio::sync::{mpsc, oneshot, watch};

use crate::error::InboxError;
use crate::ops::Receipt;
use crate::rows::Arrival;
use crate::store::Store;

/// One request's rows, waiting for the writer.
pub(crate) struct Pending {
    pub arrival: Arrival,
    pub reply: oneshot::Sender<Result<Receipt, InboxError>>,
}

/// The most requests one commit takes.
const MAX_GROUP: usize = 256;
/// The most rows one commit takes (a request's rows are never split).
const MAX_GROUP_ROWS: usize = 20_000;

/// The writer: takes the requests that arrived while it was committing
/// and stores them in one transaction (group commit), then answers each
/// and wakes the workers.
pub(crate) async fn write_loop(
    store: Store,
    mut queue: mpsc::Receiver<Pending>,
    wake: watch::Sender<u64>,
) {
    while let Some(first) = queue.recv().await {
        let mut rows = first.arrival.rows();
        let mut group = vec![first];
        while group.len() < MAX_GROUP && rows < MAX_GROUP_ROWS {
            match queue.try_recv() {
                Ok(next) => {
                    rows += next.arrival.rows();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let arrivals: Vec<&Arrival> = group.iter().map(|p| &p.arrival).collect();
        match store.insert(&arrivals).await {
            Ok(receipts) => {
                for (pending, receipt) in group.into_iter().zip(receipts) {
                    let _ = pending.reply.send(Ok(receipt));
                }
                wake.send_modify(|n| *n = n.wrapping_add(1));
            }
            Err(e) if group.len() == 1 || !e.is_statement_error() => {
                for pending in group {
                    let _ = pending.reply.send(Err(e.clone()));
                }
            }
            Err(_) => {
                // One request's rows may be what failed the group (a
                // statement error, of any class but those that mean the
                // store is unavailable): each is stored on its own, so
                // that only that one is answered 503.
                let mut stored = false;
                for pending in group {
                    let result = store
                        .insert(&[&pending.arrival])
                        .await
                        .map(|mut r| r.remove(0));
                    stored |= result.is_ok();
                    let _ = pending.reply.send(result);
                }
                if stored {
                    wake.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        }
    }
}
