//! [`Store`]: the backend an inbox runs on. Each backend has its own file
//! (`sqlite.rs`); this enum forwards to it, so that the inbox, the
//! receiving side and the worker are written once.

use super::error::InboxError;
use super::mailbox::store::{DeliveryRound, DeliveryStep, MailRow, RawDelivery};
use super::mailbox::{DeliveryFilter, MailboxCounts};
use super::ops::{Counts, DeadRow, Filter, History, Pruned, Receipt};
use super::rows::{Arrival, Claimed};
use super::sqlite::Sqlite;
use super::suppression::SuppressionPolicy as Policy;
use super::suppression::{Change, ListFilter, Manual, RawEntry, RawSuppression};
use super::worker::{Claim, Renew, Settle};

#[derive(Debug, Clone)]
pub(crate) enum Store {
    Sqlite(Sqlite),
    #[cfg(feature = "postgres")]
    Postgres(super::postgres::Postgres),
}

impl Store {
    /// Stores the arrivals in one transaction.
    pub async fn insert(&self, arrivals: &[&Arrival]) -> Result<Vec<Receipt>, InboxError> {
        match self {
            Store::Sqlite(s) => s.insert(arrivals).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.insert(arrivals).await,
        }
    }

    /// Records outcomes, renews leases and claims due rows, in one
    /// transaction.
    pub async fn round(
        &self,
        worker: &str,
        settle: &[Settle],
        renew: Option<&Renew>,
        claim: Option<&Claim>,
        suppress: Option<&Policy>,
        deliveries: Option<&DeliveryRound<'_>>,
    ) -> Result<(Vec<Claimed>, DeliveryStep), InboxError> {
        match self {
            Store::Sqlite(s) => {
                s.round(worker, settle, renew, claim, suppress, deliveries)
                    .await
            }
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => {
                s.round(worker, settle, renew, claim, suppress, deliveries)
                    .await
            }
        }
    }

    /// Attachment `position` of mail `mail`, if it has one.
    pub async fn attachment(
        &self,
        mail: i64,
        position: i64,
    ) -> Result<Option<Vec<u8>>, InboxError> {
        match self {
            Store::Sqlite(s) => s.attachment(mail, position).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.attachment(mail, position).await,
        }
    }

    /// Text field `field` of event `id` stored apart, if it has one.
    pub async fn event_text(&self, id: i64, field: &str) -> Result<Option<Vec<u8>>, InboxError> {
        match self {
            Store::Sqlite(s) => s.event_text(id, field).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.event_text(id, field).await,
        }
    }

    /// The job columns of mail `id`, if its row exists.
    pub async fn mail_row(&self, id: i64) -> Result<Option<MailRow>, InboxError> {
        match self {
            Store::Sqlite(s) => s.mail_row(id).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.mail_row(id).await,
        }
    }

    pub async fn delivery_counts(&self) -> Result<Vec<MailboxCounts>, InboxError> {
        match self {
            Store::Sqlite(s) => s.delivery_counts().await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.delivery_counts().await,
        }
    }

    pub async fn delivery_list(
        &self,
        filter: &DeliveryFilter,
    ) -> Result<Vec<RawDelivery>, InboxError> {
        match self {
            Store::Sqlite(s) => s.delivery_list(filter).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.delivery_list(filter).await,
        }
    }

    pub async fn delivery_replay(
        &self,
        filter: &DeliveryFilter,
        now: i64,
    ) -> Result<(u64, u64), InboxError> {
        match self {
            Store::Sqlite(s) => s.delivery_replay(filter, now).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.delivery_replay(filter, now).await,
        }
    }

    /// One slice of a mailbox's prune: (deliveries, mails) deleted.
    pub async fn delivery_prune(
        &self,
        mailbox: &str,
        before: i64,
    ) -> Result<(u64, u64), InboxError> {
        match self {
            Store::Sqlite(s) => s.delivery_prune(mailbox, before).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.delivery_prune(mailbox, before).await,
        }
    }

    /// One slice of the unrouted mails' retention: how many went.
    pub async fn prune_unrouted(&self, before: i64) -> Result<u64, InboxError> {
        match self {
            Store::Sqlite(s) => s.prune_unrouted(before).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.prune_unrouted(before).await,
        }
    }

    /// The attachments of a mail, in order.
    pub async fn attachments(&self, id: i64) -> Result<Vec<Vec<u8>>, InboxError> {
        match self {
            Store::Sqlite(s) => s.attachments(id).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.attachments(id).await,
        }
    }

    pub async fn counts(&self) -> Result<Counts, InboxError> {
        match self {
            Store::Sqlite(s) => s.counts().await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.counts().await,
        }
    }

    pub async fn dead(&self, limit: usize) -> Result<Vec<DeadRow>, InboxError> {
        match self {
            Store::Sqlite(s) => s.dead(limit).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.dead(limit).await,
        }
    }

    pub async fn replay(&self, filter: &Filter, now: i64) -> Result<u64, InboxError> {
        match self {
            Store::Sqlite(s) => s.replay(filter, now).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.replay(filter, now).await,
        }
    }

    pub async fn history(&self, message_id: &str) -> Result<History, InboxError> {
        match self {
            Store::Sqlite(s) => s.history(message_id).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.history(message_id).await,
        }
    }

    pub async fn prune(&self, before: i64) -> Result<Pruned, InboxError> {
        match self {
            Store::Sqlite(s) => s.prune(before).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.prune(before).await,
        }
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.close().await,
        }
    }

    /// The suppressions of `recipients` (normalised, distinct): their rows
    /// that have a reason, as a check reads them.
    pub async fn suppressions_of(
        &self,
        recipients: &[String],
    ) -> Result<Vec<RawSuppression>, InboxError> {
        match self {
            Store::Sqlite(s) => s.suppressions_of(recipients).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.suppressions_of(recipients).await,
        }
    }

    pub async fn suppression_list(
        &self,
        filter: &ListFilter,
        now: i64,
    ) -> Result<Vec<RawEntry>, InboxError> {
        match self {
            Store::Sqlite(s) => s.suppression_list(filter, now).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.suppression_list(filter, now).await,
        }
    }

    pub async fn suppression_change(
        &self,
        recipient: &str,
        manual: Manual,
        note: &str,
        now: i64,
    ) -> Result<bool, InboxError> {
        match self {
            Store::Sqlite(s) => s.suppression_change(recipient, manual, note, now).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.suppression_change(recipient, manual, note, now).await,
        }
    }

    pub async fn suppression_history(&self, recipient: &str) -> Result<Vec<Change>, InboxError> {
        match self {
            Store::Sqlite(s) => s.suppression_history(recipient).await,
            #[cfg(feature = "postgres")]
            Store::Postgres(s) => s.suppression_history(recipient).await,
        }
    }
}
