//! The writes both backends make the same way, each slice in one write
//! transaction: written once as the mailboxes' statements are
//! (`mailbox.rs`), and expanded for SQLite (`writes::sqlite`) and
//! PostgreSQL (`writes::postgres`). What differs stays with the backend:
//! how a write transaction is begun and locked (`writing`: SQLite's
//! `BEGIN IMMEDIATE` under the store's write lock, PostgreSQL's `BEGIN`),
//! and `wake`, which tells PostgreSQL's listening workers that rows became
//! due (SQLite's workers poll).

/// The writes for one database: `$db` its sqlx type, `$pg` whether
/// parameters are written `$N`, `$backend` the name of its file and of its
/// expansions of the other statements, `$store` its store's type, `$text`
/// how it makes a text parameter storable, `$cascade` whether deleting a
/// mail deletes its attachments.
#[allow(unused_macros)] // without a backend
macro_rules! statements {
    (
        db: $db:ty,
        pg: $pg:expr,
        backend: $backend:ident,
        store: $store:ty,
        text: $text:expr,
        cascade: $cascade:expr $(,)?
    ) => {
        use crate::error::InboxError;
        use crate::job::Kind;
        use crate::ops::{Filter, Pruned};
        use crate::rows::Claimed;
        use crate::store::mailbox::$backend as mailbox_sql;
        use crate::store::suppression::$backend as suppression_sql;
        use crate::store::types::{
            Claim, DeliveryReplay, DeliveryRound, DeliveryStep, Manual, Renew, ReplayCursor, Settle,
        };
        use crate::store::$backend::round_jobs;
        use crate::suppression::policy::SuppressionPolicy as Policy;

        type Store = $store;

        /// `s` with its parameters written the database's way.
        fn sql(s: &str) -> sqlx::SqlStr {
            $crate::store::statement::dialect($pg, s)
        }

        /// One round of a worker, in one transaction: records the outcomes
        /// of finished jobs, renews leases, marks dead the rows whose lease
        /// expired on their last attempt, and claims due rows (on
        /// PostgreSQL, skipping those another worker is claiming at the
        /// same moment), then the mailboxes' deliveries.
        pub(crate) async fn round(
            s: &Store,
            worker: &str,
            settle: &[Settle],
            renew: Option<&Renew>,
            claim: Option<&Claim>,
            suppress: Option<&Policy>,
            deliveries: Option<&DeliveryRound<'_>>,
        ) -> Result<(Vec<Claimed>, DeliveryStep), InboxError> {
            let failed = |e| InboxError::database("the worker's round failed", e);
            s.writing("the worker's round failed", async |tx| {
                let claimed = round_jobs(tx, worker, settle, renew, claim, suppress).await?;
                let step = match deliveries {
                    Some(d) => mailbox_sql::round(tx, worker, d).await.map_err(failed)?,
                    None => DeliveryStep::default(),
                };
                Ok((claimed, step))
            })
            .await
        }

        /// Replays deliveries a slice at a time, each slice its own
        /// transaction, so that receiving waits for one slice at most.
        pub(crate) async fn delivery_replay(
            s: &Store,
            filter: &DeliveryReplay,
            now: i64,
        ) -> Result<(u64, u64), InboxError> {
            const DOING: &str = "could not replay the deliveries";
            let failed = |e| InboxError::database(DOING, e);
            let mut cursor = ReplayCursor::default();
            let mut total = (0, 0);
            while !cursor.done {
                let (replayed, rerouted) = s
                    .writing(DOING, async |tx| {
                        let n = mailbox_sql::replay(tx, filter, now, &mut cursor)
                            .await
                            .map_err(failed)?;
                        if n.0 + n.1 > 0 {
                            wake(tx).await.map_err(failed)?;
                        }
                        Ok(n)
                    })
                    .await?;
                total.0 += replayed;
                total.1 += rerouted;
            }
            Ok(total)
        }

        /// One slice of a mailbox's prune: (deliveries, mails) deleted.
        pub(crate) async fn delivery_prune(
            s: &Store,
            mailbox: &str,
            before: i64,
        ) -> Result<(u64, u64), InboxError> {
            const DOING: &str = "could not prune the deliveries";
            s.writing(DOING, async |tx| {
                mailbox_sql::prune(tx, mailbox, before)
                    .await
                    .map_err(|e| InboxError::database(DOING, e))
            })
            .await
        }

        /// Sets the rows `filter` takes back to pending, due at `now`, with
        /// their attempts reset; returns how many. A slice at a time, each
        /// its own transaction (SQLite's write lock let go between them), so
        /// that receiving never waits for more than one slice: by the key's
        /// or the Message-ID's index when the filter has one, else by
        /// windows of ids.
        pub(crate) async fn replay(
            s: &Store,
            filter: &Filter,
            now: i64,
            actor: Option<&str>,
        ) -> Result<u64, InboxError> {
            const DOING: &str = "could not replay";
            let failed = |e| InboxError::database(DOING, e);
            let mut replayed = 0;
            for kind in &filter.kinds {
                let Some((statement, walk)) = crate::ops::replay_sql(*kind, filter) else {
                    continue;
                };
                let statement = sql(&statement);
                let last: i64 = sqlx::query_scalar(sql(&format!(
                    "SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM {}",
                    kind.table()
                )))
                .fetch_one(s.reads())
                .await
                .map_err(failed)?;
                let last = filter.up_to.map_or(last, |up_to| last.min(up_to));
                let mut after = 0i64;
                loop {
                    let bound = walk.bound(after);
                    let ids = s
                        .writing(DOING, async |tx| {
                            let mut query = sqlx::query_scalar::<_, i64>(statement.clone())
                                .bind(now)
                                .bind(after)
                                .bind(bound);
                            if let Some(key) = filter.key {
                                query = query.bind(key.to_string());
                            }
                            if let Some(id) = &filter.message_id {
                                query = query.bind($text(id).to_string());
                            }
                            if let Some(source) = &filter.source {
                                query = query.bind($text(source).to_string());
                            }
                            if let Some(pattern) = &filter.error {
                                query = query.bind($text(pattern).to_string());
                            }
                            query = query.bind(actor.map(|a| $text(a).to_string()));
                            let ids = query.fetch_all(&mut *tx).await.map_err(failed)?;
                            if !ids.is_empty() {
                                wake(tx).await.map_err(failed)?;
                            }
                            Ok(ids)
                        })
                        .await?;
                    replayed += ids.len() as u64;
                    match walk.next(&ids, bound, last) {
                        Some(next) => after = next,
                        None => break,
                    }
                }
            }
            Ok(replayed)
        }

        /// A change by hand, with its history row, in one transaction;
        /// `false` when nothing changed (removing an address the list does
        /// not hold).
        pub(crate) async fn suppression_change(
            s: &Store,
            recipient: &str,
            manual: Manual,
            note: &str,
            now: i64,
        ) -> Result<bool, InboxError> {
            const DOING: &str = "could not change the suppression list";
            s.writing(DOING, async |tx| {
                suppression_sql::change(tx, recipient, manual, note, now)
                    .await
                    .map_err(|e| InboxError::database(DOING, e))
            })
            .await
        }

        /// Records whether a worker keeps the suppression list (see
        /// `suppression_sql::note_keeping`).
        pub(crate) async fn note_keeping(
            s: &Store,
            kept: bool,
            now: i64,
        ) -> Result<(), InboxError> {
            const DOING: &str = "could not record who keeps the suppression list";
            s.writing(DOING, async |tx| {
                suppression_sql::note_keeping(tx, kept, now)
                    .await
                    .map_err(|e| InboxError::database(DOING, e))
            })
            .await
        }

        /// Deletes the rows done before `before`, in slices of 10 000 rows,
        /// each its own transaction, so that receiving is never held up for
        /// long.
        pub(crate) async fn prune(s: &Store, before: i64) -> Result<Pruned, InboxError> {
            const DOING: &str = "could not prune";
            let failed = |e| InboxError::database(DOING, e);
            let mut pruned = Pruned::default();
            for kind in [Kind::Event, Kind::Mail] {
                loop {
                    let slice = format!(
                        "SELECT id FROM {} WHERE state = 'done' AND done_at < @ts(?1){} LIMIT 10000",
                        kind.table(),
                        crate::store::mailbox::routed_mails_kept(kind)
                    );
                    let n = s
                        .writing(DOING, async |tx| {
                            // Where the schema does not cascade, attachments
                            // go first.
                            if kind == Kind::Mail && !$cascade {
                                sqlx::query(sql(&format!(
                                    "DELETE FROM cmc_mail_attachments WHERE mail_id IN ({slice})"
                                )))
                                .bind(before)
                                .execute(&mut *tx)
                                .await
                                .map_err(failed)?;
                            }
                            Ok(sqlx::query(sql(&format!(
                                "DELETE FROM {} WHERE id IN ({slice})",
                                kind.table()
                            )))
                            .bind(before)
                            .execute(&mut *tx)
                            .await
                            .map_err(failed)?
                            .rows_affected())
                        })
                        .await?;
                    match kind {
                        Kind::Event => pruned.events += n,
                        Kind::Mail => pruned.mails += n,
                    }
                    if n < 10_000 {
                        break;
                    }
                }
            }
            Ok(pruned)
        }

        /// Deletes the requests received before `before`, 1000 at a time,
        /// each slice its own transaction: how many.
        pub(crate) async fn raw_prune(s: &Store, before: i64) -> Result<u64, InboxError> {
            const DOING: &str = "could not prune the raw requests";
            let failed = |e| InboxError::database(DOING, e);
            let slice = "SELECT id FROM cmc_raw_requests WHERE received_at < @ts(?1) LIMIT 1000";
            let mut pruned = 0;
            loop {
                let n = s
                    .writing(DOING, async |tx| {
                        sqlx::query(sql(&format!(
                            "DELETE FROM cmc_raw_request_parts WHERE request_id IN ({slice})"
                        )))
                        .bind(before)
                        .execute(&mut *tx)
                        .await
                        .map_err(failed)?;
                        Ok(sqlx::query(sql(&format!(
                            "DELETE FROM cmc_raw_requests WHERE id IN ({slice})"
                        )))
                        .bind(before)
                        .execute(&mut *tx)
                        .await
                        .map_err(failed)?
                        .rows_affected())
                    })
                    .await?;
                pruned += n;
                if n == 0 {
                    return Ok(pruned);
                }
            }
        }

        /// Stores a refused request on its own (not through the group
        /// commit): its id.
        pub(crate) async fn raw_insert_refused(
            s: &Store,
            raw: &crate::raw::types::NewRaw,
        ) -> Result<i64, InboxError> {
            const DOING: &str = "could not keep a refused request";
            s.writing(DOING, async |tx| {
                crate::store::raw::$backend::insert_request(tx, raw)
                    .await
                    .map_err(|e| InboxError::database(DOING, e))
            })
            .await
        }

        /// Rebuilds `cmc_state_counts` from a `GROUP BY` of the counted
        /// tables. SQLite: in one write transaction that holds off the
        /// writers (`BEGIN IMMEDIATE` under the store's write lock).
        /// PostgreSQL: under an advisory lock that only recounts take
        /// ([`RECOUNT_LOCK`](crate::ops::RECOUNT_LOCK)), one statement
        /// appends the corrections ([`RECOUNT_PG`](crate::ops::RECOUNT_PG)):
        /// no table is locked, writers and readers go on. Returns the
        /// counters that were wrong, with what they said and what they say.
        pub(crate) async fn recount(s: &Store) -> Result<Vec<crate::ops::Recounted>, InboxError> {
            const DOING: &str = "could not recount the rows per state";
            let failed = |e| InboxError::database(DOING, e);
            s.writing(DOING, async |tx| {
                if $pg {
                    // Each statement its own snapshot, taken after the lock.
                    for first in [
                        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
                        crate::ops::RECOUNT_LOCK,
                    ] {
                        sqlx::query(sql(first)).execute(&mut *tx).await.map_err(failed)?;
                    }
                    let fixed: Vec<(String, String, String, i64, i64)> =
                        sqlx::query_as(sql(crate::ops::RECOUNT_PG))
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(failed)?;
                    return Ok(fixed
                        .into_iter()
                        .map(|(table, scope, state, was, now)| {
                            crate::ops::Recounted::new(table, scope, state, was, now)
                        })
                        .collect());
                }
                let before: Vec<(String, String, String, i64)> =
                    sqlx::query_as(sql(crate::ops::ALL_STATE_COUNTS))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(failed)?;
                sqlx::query(sql("DELETE FROM cmc_state_counts"))
                    .execute(&mut *tx)
                    .await
                    .map_err(failed)?;
                for rebuild in crate::ops::RECOUNT {
                    sqlx::query(sql(rebuild)).execute(&mut *tx).await.map_err(failed)?;
                }
                let after: Vec<(String, String, String, i64)> =
                    sqlx::query_as(sql(crate::ops::ALL_STATE_COUNTS))
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(failed)?;
                Ok(crate::ops::Recounted::changes(before, after))
            })
            .await
        }
    };
}

#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    statements!(
        db: sqlx::Sqlite,
        pg: false,
        backend: sqlite,
        store: crate::store::sqlite::Sqlite,
        text: std::convert::identity::<&str>,
        cascade: false,
    );

    /// SQLite's workers poll: there is no one to wake.
    async fn wake(_: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
        Ok(())
    }
}

#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    statements!(
        db: sqlx::Postgres,
        pg: true,
        backend: postgres,
        store: crate::store::postgres::Postgres,
        // Text with U+0000, which PostgreSQL refuses.
        text: crate::store::postgres::pg_text,
        // Attachments go with their mails (ON DELETE CASCADE).
        cascade: true,
    );

    use crate::store::postgres::notify as wake;
}
