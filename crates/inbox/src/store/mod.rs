//! The storage contract: [`Store`], the backend an inbox runs on, and the
//! values it takes and gives (`types.rs`). Each backend has its own file
//! (`sqlite.rs`, `postgres.rs`) for what it does its own way: opening,
//! receiving and the transactions that write, each begun and locked the
//! database's way. The statements, written once for both, are expanded per
//! database: the worker's round (`jobs.rs`), the mailboxes' (`mailbox.rs`),
//! the suppression list's (`suppression.rs`), the reads made outside a
//! transaction (`reads.rs`, which this enum calls with the backend's pool)
//! and the writes made a slice at a time (`writes.rs`, in the backend's
//! write transactions).
//! This enum forwards to the backend, so that the inbox, the receiving
//! side and the worker are written once.
//!
//! The layers point one way: the worker, the mailboxes and the
//! suppression list depend on this module; nothing here imports them.

mod browse;
mod jobs;
pub(crate) mod mailbox;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
pub(crate) mod raw;
mod reads;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
pub(crate) mod statement;
mod suppression;
pub(crate) mod targets;
mod types;
mod writes;

pub(crate) use types::*;

use super::error::{InboxError, InboxErrorKind};
use super::ops::{Counts, DeadRow, Filter, History, Pruned, Receipt};
use super::rows::{APART, Arrival, Claimed};
use super::suppression::policy::SuppressionPolicy as Policy;
use super::suppression::rows::{RawChange, RawEntry, RawSuppression};
use cmc_webhook_core::{Event, InboundMail, Text};

/// An open store, on one of the backends this build has. Without a
/// backend there is none to open: the type is empty, and opening fails
/// before one would be made (see `StoreOptions`).
#[derive(Debug, Clone)]
pub(crate) enum Store {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::Sqlite),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Postgres),
}

impl Store {
    /// Whether this is a PostgreSQL store.
    pub(crate) fn is_postgres(&self) -> bool {
        match *self {
            #[cfg(feature = "sqlite")]
            Store::Sqlite(_) => false,
            #[cfg(feature = "postgres")]
            Store::Postgres(_) => true,
        }
    }
}

/// `$body` with `$s` the backend of `$store`: the one place that lists
/// the backends.
macro_rules! each {
    ($store:expr, $s:ident => $body:expr) => {
        match *$store {
            #[cfg(feature = "sqlite")]
            Store::Sqlite(ref $s) => $body,
            #[cfg(feature = "postgres")]
            Store::Postgres(ref $s) => {
                statement::PG_TABLES
                    .scope($s.tables(), async { $body })
                    .await
            }
        }
    };
}

/// `$body` with `$pool` the pool the backend of `$store` reads with and
/// `$sql` its expansion of the shared reads (`reads.rs`).
macro_rules! read {
    ($store:expr, $pool:ident, $sql:ident => $body:expr) => {
        match *$store {
            #[cfg(feature = "sqlite")]
            Store::Sqlite(ref s) => {
                use reads::sqlite as $sql;
                let $pool = s.reads();
                $body
            }
            #[cfg(feature = "postgres")]
            Store::Postgres(ref s) => {
                use reads::postgres as $sql;
                let $pool = s.reads();
                statement::PG_TABLES
                    .scope(s.tables(), async { $body })
                    .await
            }
        }
    };
}

/// `$body` with `$s` the backend of `$store` and `$sql` its expansion of
/// the statements of `$file` (`writes.rs`: the shared writes; `raw.rs`:
/// the raw requests'), on PostgreSQL in the store's schema.
macro_rules! with {
    ($file:ident, $store:expr, $s:ident, $sql:ident => $body:expr) => {
        match *$store {
            #[cfg(feature = "sqlite")]
            Store::Sqlite(ref $s) => {
                use $file::sqlite as $sql;
                $body
            }
            #[cfg(feature = "postgres")]
            Store::Postgres(ref $s) => {
                use $file::postgres as $sql;
                statement::PG_TABLES
                    .scope($s.tables(), async { $body })
                    .await
            }
        }
    };
}

impl Store {
    /// Stores the arrivals in one transaction.
    pub async fn insert(&self, arrivals: &[&Arrival]) -> Result<Vec<Receipt>, InboxError> {
        each!(self, s => s.insert(arrivals).await)
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
        with!(writes, self, s, sql => sql::round(s, worker, settle, renew, claim, suppress, deliveries).await)
    }

    /// Attachment `position` of mail `mail`, if it has one.
    pub async fn attachment(
        &self,
        mail: i64,
        position: i64,
    ) -> Result<Option<Vec<u8>>, InboxError> {
        read!(self, pool, sql => sql::attachment(pool, mail, position).await)
    }

    /// Text field `field` of event `id` stored apart, if it has one.
    pub async fn event_text(&self, id: i64, field: &str) -> Result<Option<Vec<u8>>, InboxError> {
        read!(self, pool, sql => sql::event_text(pool, id, field).await)
    }

    /// The job columns of mail `id`, if its row exists.
    pub async fn mail_row(&self, id: i64) -> Result<Option<MailRow>, InboxError> {
        read!(self, pool, sql => sql::mail_row(pool, id).await)
    }

    pub async fn delivery_counts(&self) -> Result<Vec<DeliveryCount>, InboxError> {
        read!(self, pool, sql => sql::delivery_counts(pool).await)
    }

    pub async fn delivery_list(
        &self,
        filter: &DeliveryQuery,
    ) -> Result<Vec<RawDelivery>, InboxError> {
        read!(self, pool, sql => sql::delivery_list(pool, filter).await)
    }

    pub async fn delivery_replay(
        &self,
        filter: &DeliveryReplay,
        now: i64,
    ) -> Result<(u64, u64), InboxError> {
        with!(writes, self, s, sql => sql::delivery_replay(s, filter, now).await)
    }

    /// One slice of a mailbox's prune: (deliveries, mails) deleted.
    pub async fn delivery_prune(
        &self,
        mailbox: &str,
        before: i64,
    ) -> Result<(u64, u64), InboxError> {
        with!(writes, self, s, sql => sql::delivery_prune(s, mailbox, before).await)
    }

    /// One slice of the unrouted mails' retention: how many went.
    pub async fn prune_unrouted(&self, before: i64) -> Result<u64, InboxError> {
        each!(self, s => s.prune_unrouted(before).await)
    }

    /// The attachments of a mail, in order.
    pub async fn attachments(&self, id: i64) -> Result<Vec<Vec<u8>>, InboxError> {
        each!(self, s => s.attachments(id).await)
    }

    /// Folds the counters' appended rows (PostgreSQL; nothing on SQLite).
    pub async fn fold_counts(&self) -> Result<(), InboxError> {
        read!(self, pool, sql => sql::fold_counts(pool).await)
    }

    /// Rebuilds the counters from the rows: those that were wrong.
    pub async fn recount(&self) -> Result<Vec<crate::ops::Recounted>, InboxError> {
        with!(writes, self, s, sql => sql::recount(s).await)
    }

    pub async fn counts(&self, source: Option<&str>) -> Result<Counts, InboxError> {
        read!(self, pool, sql => sql::counts(pool, source).await)
    }

    pub async fn counts_by_source(
        &self,
    ) -> Result<std::collections::BTreeMap<String, Counts>, InboxError> {
        read!(self, pool, sql => sql::counts_by_source(pool).await)
    }

    pub async fn dead(
        &self,
        limit: usize,
        source: Option<&str>,
    ) -> Result<Vec<DeadRow>, InboxError> {
        read!(self, pool, sql => sql::dead(pool, limit, source).await)
    }

    pub async fn replay(
        &self,
        filter: &Filter,
        now: i64,
        actor: Option<&str>,
    ) -> Result<u64, InboxError> {
        with!(writes, self, s, sql => sql::replay(s, filter, now, actor).await)
    }

    /// Events per hour, type and status from `from` to `to`.
    pub async fn activity(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<crate::browse::types::HourCount>, InboxError> {
        with!(browse, self, s, sql => sql::activity(s.reads(), from, to).await)
    }

    /// The hours of `first..end` (hour numbers) already counted, and
    /// their counts.
    pub async fn hours_kept(
        &self,
        first: i64,
        end: i64,
    ) -> Result<(Vec<i64>, Vec<crate::browse::types::HourCount>), InboxError> {
        with!(browse, self, s, sql => sql::hours_kept(s.reads(), first, end).await)
    }

    /// Records closed hours as counted, with their counts, in one
    /// transaction waiting at most `limit` for a lock.
    pub async fn keep_hours(
        &self,
        hours: &[i64],
        counts: &[crate::browse::types::HourCount],
        limit: std::time::Duration,
    ) -> Result<u64, InboxError> {
        with!(browse, self, s, sql => sql::keep_hours(s, hours, counts, limit).await)
    }

    /// Deletes the hours counted that began before the hour `before`.
    pub async fn prune_hours(&self, before: i64) -> Result<u64, InboxError> {
        with!(browse, self, s, sql => sql::prune_hours(s, before).await)
    }

    /// Forgets the counts kept of `hours`, to be counted again.
    pub async fn forget_hours(&self, hours: &[i64]) -> Result<(), InboxError> {
        with!(browse, self, s, sql => sql::forget_hours(s, hours).await)
    }

    /// The rows of a built [`crate::browse::types::RowQuery`].
    pub async fn browse_rows(
        &self,
        kind: crate::job::Kind,
        statement: &str,
        params: &[crate::browse::types::Param],
    ) -> Result<Vec<crate::browse::types::RowSummary>, InboxError> {
        with!(browse, self, s, sql => sql::rows(s.reads(), kind, statement, params).await)
    }

    /// Records the states of handlers' targets, in one transaction that
    /// waits at most `limit` for a lock.
    pub async fn target_states_set(
        &self,
        rows: &[targets::RawTargetState],
        limit: std::time::Duration,
    ) -> Result<(), InboxError> {
        with!(targets, self, s, sql => sql::set(s, rows, limit).await)
    }

    /// Deletes a writer's target states.
    pub async fn target_states_remove(
        &self,
        writer: &str,
        limit: std::time::Duration,
    ) -> Result<u64, InboxError> {
        with!(targets, self, s, sql => sql::remove(s, writer, limit).await)
    }

    /// The handler targets' states.
    pub async fn target_states(&self) -> Result<Vec<targets::RawTargetState>, InboxError> {
        with!(targets, self, s, sql => sql::list(s.reads()).await)
    }

    /// Deletes the target states unchanged since before `before`.
    pub async fn target_states_prune(&self, before: i64, now: i64) -> Result<u64, InboxError> {
        with!(targets, self, s, sql => sql::prune(s, before, now).await)
    }

    pub async fn history(
        &self,
        message_id: &str,
        source: Option<&str>,
    ) -> Result<History, InboxError> {
        read!(self, pool, sql => sql::history(pool, message_id, source).await)
    }

    pub async fn prune(&self, before: i64) -> Result<Pruned, InboxError> {
        with!(writes, self, s, sql => sql::prune(s, before).await)
    }

    pub async fn close(&self) {
        each!(self, s => s.close().await)
    }

    /// Keeps a refused request, in a transaction of its own.
    pub async fn insert_refused(&self, r: &crate::raw::types::NewRaw) -> Result<i64, InboxError> {
        with!(writes, self, s, sql => sql::raw_insert_refused(s, r).await)
    }

    /// Kept requests after id `after` (only `ids` when given).
    pub async fn raw_list(
        &self,
        after: i64,
        limit: i64,
        ids: Option<&[i64]>,
    ) -> Result<Vec<crate::raw::types::RawRequest>, InboxError> {
        with!(raw, self, s, sql => sql::list(s.reads(), after, limit, ids).await)
    }

    /// The kept body of request `id`: whole, or its parts.
    #[allow(clippy::type_complexity)]
    pub async fn raw_body(
        &self,
        id: i64,
    ) -> Result<Result<Vec<u8>, Vec<(i64, i64, crate::raw::types::StoredPart)>>, InboxError> {
        with!(raw, self, s, sql => sql::body(s.reads(), id).await)
    }

    /// The id and JSON of the row of `kind` keyed `key`.
    pub async fn existing(
        &self,
        kind: crate::job::Kind,
        key: &str,
    ) -> Result<Option<(i64, String)>, InboxError> {
        with!(raw, self, s, sql => sql::existing(s.reads(), kind, key).await)
    }

    /// Deletes the kept requests received before `before`.
    pub async fn prune_raw(&self, before: i64) -> Result<u64, InboxError> {
        with!(writes, self, s, sql => sql::raw_prune(s, before).await)
    }

    /// The suppressions of `recipients` (normalised, distinct): their rows
    /// that have a reason, as a check reads them.
    pub async fn suppressions_of(
        &self,
        recipients: &[String],
    ) -> Result<Vec<RawSuppression>, InboxError> {
        read!(self, pool, sql => sql::suppressions_of(pool, recipients).await)
    }

    pub async fn suppression_list(
        &self,
        filter: &SuppressionQuery,
        now: i64,
    ) -> Result<Vec<RawEntry>, InboxError> {
        read!(self, pool, sql => sql::suppression_list(pool, filter, now).await)
    }

    pub async fn suppression_change(
        &self,
        recipient: &str,
        manual: Manual,
        note: &str,
        now: i64,
    ) -> Result<bool, InboxError> {
        with!(writes, self, s, sql => sql::suppression_change(s, recipient, manual, note, now).await)
    }

    /// Records whether a worker keeps the suppression list.
    pub async fn note_keeping(&self, kept: bool, now: i64) -> Result<(), InboxError> {
        with!(writes, self, s, sql => sql::note_keeping(s, kept, now).await)
    }

    /// Since when a worker keeps the suppression list, and when one last
    /// started without it.
    pub async fn suppression_keeping(&self) -> Result<(Option<i64>, Option<i64>), InboxError> {
        read!(self, pool, sql => sql::suppression_keeping(pool).await)
    }

    /// Up to `limit` changes of `recipient`'s row older than `before`,
    /// newest first, and (`count`) how many it has had.
    pub async fn suppression_history(
        &self,
        recipient: &str,
        before: i64,
        limit: i64,
        count: bool,
    ) -> Result<(Vec<RawChange>, Option<i64>), InboxError> {
        read!(self, pool, sql => sql::suppression_history(pool, recipient, before, limit, count).await)
    }

    /// Reads back into `mail` (row `id`) its text fields stored apart: each
    /// assembled a chunk at a time into one buffer of its size. Only the
    /// fields the row's JSON left empty are looked up; a mail stored before
    /// fields were stored apart has none.
    pub async fn load_mail_apart(&self, id: i64, mail: &mut InboundMail) -> Result<(), InboxError> {
        for (position, field) in APART {
            if !field.is_empty_in(mail) {
                continue;
            }
            if let Some(data) = self.attachment(id, position).await? {
                let text = String::from_utf8(data).map_err(|e| {
                    InboxError::new(
                        InboxErrorKind::Corrupt,
                        format!(
                            "mail {id}: the text stored at position {position} is not UTF-8: {e}"
                        ),
                    )
                })?;
                field.put(mail, Text::from(text));
            }
        }
        Ok(())
    }

    /// Reads back into `event` (row `id`) its subject stored apart, if the
    /// row's JSON left it empty and `cmc_event_texts` holds one.
    pub async fn load_event_apart(&self, id: i64, event: &mut Event) -> Result<(), InboxError> {
        let Some(subject) = super::rows::subject_mut(event).filter(|s| s.is_empty()) else {
            return Ok(());
        };
        if let Some(data) = self.event_text(id, "subject").await? {
            let text = String::from_utf8(data).map_err(|e| {
                InboxError::new(
                    InboxErrorKind::Corrupt,
                    format!("event {id}: its subject stored apart is not UTF-8: {e}"),
                )
            })?;
            *subject = Text::from(text);
        }
        Ok(())
    }
}
