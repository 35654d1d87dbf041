//! The reads both backends make the same way, outside any write
//! transaction, from the pool the backend reads with: written once as the
//! mailboxes' statements are (`mailbox.rs`), and expanded for SQLite
//! (`reads::sqlite`) and PostgreSQL (`reads::postgres`). [`Store`] calls
//! them through `read!`, with the backend's pool; the SQL is written with
//! `?N` parameters, turned into `$N` for PostgreSQL.
//!
//! [`Store`]: super::Store

/// The reads for one database: `$db` its sqlx type, `$pg` whether
/// parameters are written `$N`, `$backend` the name of its expansions of
/// the other statements, `$text` how it makes a text parameter storable,
/// `$among` the check's statement (`{}` its columns, `?1` a list of
/// addresses) and `$list` how that list is bound.
#[allow(unused_macros)] // without a backend
macro_rules! statements {
    (
        db: $db:ty,
        pg: $pg:expr,
        backend: $backend:ident,
        text: $text:expr,
        among: $among:expr,
        list: $list:expr $(,)?
    ) => {

        use crate::error::{InboxError, InboxErrorKind};
        use crate::job::Kind;
        use crate::ops::{Counts, DEAD_SUMMARIES, DeadRow, History, oldest_dead};
        use crate::rows::{dead_row, history as history_of};
        use crate::store::mailbox::$backend as mailbox_sql;
        use crate::store::suppression::$backend as suppression_sql;
        use crate::store::types::{DeliveryCount, DeliveryQuery, MailRow, RawDelivery, SuppressionQuery};
        use crate::suppression::rows::{RawChange, RawEntry, RawSuppression};

        type Pool = sqlx::Pool<$db>;

        /// `s` with its parameters written the database's way.
        fn sql(s: &str) -> sqlx::SqlStr {
            $crate::store::statement::dialect($pg, s)
        }

        /// PostgreSQL: folds the differences the triggers appended to
        /// `cmc_state_counts` ([`FOLD_COUNTS`](crate::ops::FOLD_COUNTS));
        /// nothing on SQLite, whose triggers update in place. It waits at
        /// most [`FOLD_WAIT`](crate::ops::FOLD_WAIT) for the rows it
        /// folds (another fold holds them): then it leaves them, as the
        /// sums are the same unfolded.
        pub(crate) async fn fold_counts(pool: &Pool) -> Result<(), InboxError> {
            if $pg {
                let failed = |e| InboxError::database("could not fold the rows' counts", e);
                let mut tx = pool.begin().await.map_err(failed)?;
                sqlx::query(sql(crate::ops::FOLD_WAIT))
                    .execute(&mut *tx)
                    .await
                    .map_err(failed)?;
                match sqlx::query(sql(crate::ops::FOLD_COUNTS)).execute(&mut *tx).await {
                    Ok(_) => tx.commit().await.map_err(failed)?,
                    Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("55P03") => {
                        tracing::debug!("the counts were not folded: another fold holds their rows");
                    }
                    Err(e) => return Err(failed(e)),
                }
            }
            Ok(())
        }

        /// Folds the counters before a read of them: housekeeping, as the
        /// sums are the same without it. A store opened read-only (a role
        /// that may only read, a replica) cannot fold, and still reads its
        /// counts.
        async fn fold_before_reading(pool: &Pool) {
            if let Err(e) = fold_counts(pool).await {
                tracing::debug!(error = %e, "the counts of rows per state were read without folding");
            }
        }

        /// The rows per (table, scope, state) of `cmc_state_counts`
        /// (migration 0014), kept by triggers as rows change: a few rows
        /// read, whatever the size of the tables. On PostgreSQL the
        /// triggers append; the callers fold first, once per read
        /// ([`fold_before_reading`]).
        async fn state_counts(
            pool: &Pool,
            table: &str,
        ) -> Result<Vec<(String, String, i64)>, InboxError> {
            sqlx::query_as(sql(crate::ops::STATE_COUNTS))
                .bind($text(table))
                .fetch_all(pool)
                .await
                .map_err(|e| InboxError::database("could not count the rows", e))
        }

        /// The oldest pending row of `kind` (of `source`), if any.
        async fn oldest_pending(
            pool: &Pool,
            kind: Kind,
            source: Option<&str>,
        ) -> Result<Option<i64>, InboxError> {
            let mut oldest =
                sqlx::query_scalar(sql(&crate::ops::oldest_pending_sql(kind, source.is_some())));
            if let Some(source) = source {
                oldest = oldest.bind($text(source));
            }
            oldest
                .fetch_optional(pool)
                .await
                .map_err(|e| InboxError::database("could not read the oldest pending row", e))
        }

        /// The counts of every row, or (`source`) of one source's rows.
        pub(crate) async fn counts(pool: &Pool, source: Option<&str>) -> Result<Counts, InboxError> {
            let mut counts = Counts::default();
            fold_before_reading(pool).await;
            for kind in [Kind::Event, Kind::Mail] {
                let rows = state_counts(pool, kind.counted_as()).await?;
                counts.add_rows(
                    kind,
                    rows.into_iter()
                        .filter(|(scope, _, _)| source.is_none_or(|s| s == scope))
                        .map(|(_, state, n)| (state, n))
                        .collect(),
                );
                if counts.of(kind).pending > 0 {
                    counts.set_oldest_pending(kind, oldest_pending(pool, kind, source).await?);
                }
            }
            Ok(counts)
        }

        /// The counts of each source that has rows, by name.
        pub(crate) async fn counts_by_source(
            pool: &Pool,
        ) -> Result<std::collections::BTreeMap<String, Counts>, InboxError> {
            let mut by_source = std::collections::BTreeMap::<String, Counts>::new();
            fold_before_reading(pool).await;
            for kind in [Kind::Event, Kind::Mail] {
                for (source, state, n) in state_counts(pool, kind.counted_as()).await? {
                    by_source.entry(source).or_default().add_rows(kind, vec![(state, n)]);
                }
            }
            for (source, counts) in &mut by_source {
                for kind in [Kind::Event, Kind::Mail] {
                    if counts.of(kind).pending == 0 {
                        continue;
                    }
                    let oldest = oldest_pending(pool, kind, Some(source.as_str())).await?;
                    counts.set_oldest_pending(kind, oldest);
                }
            }
            Ok(by_source)
        }

        pub(crate) async fn dead(
            pool: &Pool,
            limit: usize,
            source: Option<&str>,
        ) -> Result<Vec<DeadRow>, InboxError> {
            let failed = |e| InboxError::database("could not list the dead rows", e);
            let mut dead = Vec::new();
            for (kind, summary) in DEAD_SUMMARIES {
                let rows = sqlx::query(sql(&format!(
                    "SELECT id, idempotency_key, {summary}, message_id, attempts, last_error, \
                     @ms(received_at), @ms(done_at), source FROM {} WHERE state = 'dead'{} \
                     ORDER BY id LIMIT ?1",
                    kind.table(),
                    crate::ops::source_condition(source, 2),
                )))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX));
                let rows = match source {
                    Some(source) => rows.bind($text(source)),
                    None => rows,
                }
                .fetch_all(pool)
                .await
                .map_err(failed)?;
                for r in rows {
                    dead.push(
                        dead_row(kind, &r).map_err(|e| {
                            InboxError::database("a dead row does not read back", e)
                        })??,
                    );
                }
            }
            Ok(oldest_dead(dead, limit))
        }

        pub(crate) async fn history(
            pool: &Pool,
            message_id: &str,
            source: Option<&str>,
        ) -> Result<History, InboxError> {
            let rows = sqlx::query(sql(&format!(
                "SELECT id, idempotency_key, @exact(event), @ms(received_at), state, attempts, \
                 last_error, source, replayed_by, @ms(replayed_at), raw_request_id FROM cmc_events \
                 WHERE substr(message_id, 1, 200) = substr(?1, 1, 200) \
                 AND message_id = ?1{} ORDER BY created, id",
                crate::ops::source_condition(source, 2),
            )))
            .bind($text(message_id));
            let rows = match source {
                Some(source) => rows.bind($text(source)),
                None => rows,
            }
            .fetch_all(pool)
            .await
            .map_err(|e| InboxError::database("could not read the history", e))?;
            Ok(history_of(&rows))
        }

        /// Text field `field` of event `id` stored apart, a chunk at a
        /// time; `None` when it has none.
        pub(crate) async fn event_text(
            pool: &Pool,
            id: i64,
            field: &str,
        ) -> Result<Option<Vec<u8>>, InboxError> {
            let failed = |e| InboxError::database("could not read an event's text", e);
            let mut conn = pool.acquire().await.map_err(failed)?;
            let starts: Vec<(i64, i64)> = sqlx::query_as(sql(
                "SELECT start, CAST(length(data) AS BIGINT) FROM cmc_event_texts \
                 WHERE event_id = ?1 AND field = ?2 ORDER BY start",
            ))
            .bind(id)
            .bind(field)
            .fetch_all(&mut *conn)
            .await
            .map_err(failed)?;
            if starts.is_empty() {
                return Ok(None);
            }
            let size: i64 = starts.iter().map(|(_, len)| len).sum();
            let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            for (start, _) in starts {
                if usize::try_from(start).ok() != Some(data.len()) {
                    return Err(InboxError::new(
                        InboxErrorKind::Corrupt,
                        format!(
                            "event {id}: its {field} has a chunk at {start} where {} was expected",
                            data.len()
                        ),
                    ));
                }
                let chunk: Vec<u8> = sqlx::query_scalar(sql(
                    "SELECT data FROM cmc_event_texts WHERE event_id = ?1 AND field = ?2 AND start = ?3",
                ))
                .bind(id)
                .bind(field)
                .bind(start)
                .fetch_one(&mut *conn)
                .await
                .map_err(failed)?;
                data.extend_from_slice(&chunk);
            }
            Ok(Some(data))
        }

        /// Attachment `position` of mail `mail`, a chunk at a time.
        pub(crate) async fn attachment(
            pool: &Pool,
            mail: i64,
            position: i64,
        ) -> Result<Option<Vec<u8>>, InboxError> {
            let failed = |e| InboxError::database("could not read the attachment", e);
            let mut conn = pool.acquire().await.map_err(failed)?;
            mailbox_sql::attachment(&mut conn, mail, position)
                .await
                .map_err(failed)
        }

        pub(crate) async fn mail_row(pool: &Pool, id: i64) -> Result<Option<MailRow>, InboxError> {
            let failed = |e| InboxError::database("could not read the mail", e);
            let mut conn = pool.acquire().await.map_err(failed)?;
            mailbox_sql::mail_row(&mut conn, id).await.map_err(failed)
        }

        pub(crate) async fn delivery_counts(pool: &Pool) -> Result<Vec<DeliveryCount>, InboxError> {
            let failed = |e| InboxError::database("could not count the deliveries", e);
            let mut conn = pool.acquire().await.map_err(failed)?;
            mailbox_sql::counts(&mut conn).await.map_err(failed)
        }

        pub(crate) async fn delivery_list(
            pool: &Pool,
            filter: &DeliveryQuery,
        ) -> Result<Vec<RawDelivery>, InboxError> {
            let failed = |e| InboxError::database("could not list the deliveries", e);
            let mut conn = pool.acquire().await.map_err(failed)?;
            mailbox_sql::list(&mut conn, filter).await.map_err(failed)
        }

        /// The suppressions of `recipients`, 1 000 a query: only the rows
        /// with a reason, and only the columns a check reads (rows without
        /// a reason, which every succeeded delivery leaves, would be copied
        /// out and decoded for nothing).
        pub(crate) async fn suppressions_of(
            pool: &Pool,
            recipients: &[String],
        ) -> Result<Vec<RawSuppression>, InboxError> {
            let failed = |e| InboxError::database("could not read the suppression list", e);
            let mut out = Vec::with_capacity(recipients.len());
            for chunk in recipients.chunks(1000) {
                let rows = sqlx::query(sql(
                    &$among.replace("{}", crate::suppression::sql::CHECK_COLUMNS),
                ))
                .bind($list(chunk))
                .fetch_all(pool)
                .await
                .map_err(failed)?;
                for r in &rows {
                    out.push(crate::suppression::rows::raw_suppression(r).map_err(failed)?);
                }
            }
            Ok(out)
        }

        pub(crate) async fn suppression_list(
            pool: &Pool,
            filter: &SuppressionQuery,
            now: i64,
        ) -> Result<Vec<RawEntry>, InboxError> {
            suppression_sql::list(pool, filter, now)
                .await
                .map_err(|e| InboxError::database("could not list the suppression list", e))
        }

        pub(crate) async fn suppression_keeping(
            pool: &Pool,
        ) -> Result<(Option<i64>, Option<i64>), InboxError> {
            suppression_sql::keeping(pool).await.map_err(|e| {
                InboxError::database("could not read who keeps the suppression list", e)
            })
        }

        /// Up to `limit` changes older than `before`, newest first, and
        /// (`count`) how many there are in all.
        pub(crate) async fn suppression_history(
            pool: &Pool,
            recipient: &str,
            before: i64,
            limit: i64,
            count: bool,
        ) -> Result<(Vec<RawChange>, Option<i64>), InboxError> {
            let failed = |e| InboxError::database("could not read the suppression history", e);
            let changes = suppression_sql::history(pool, recipient, before, limit)
                .await
                .map_err(failed)?;
            let total = if count {
                Some(suppression_sql::history_count(pool, recipient).await.map_err(failed)?)
            } else {
                None
            };
            Ok((changes, total))
        }
    };
}

#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    statements!(
        db: sqlx::Sqlite,
        pg: false,
        backend: sqlite,
        text: std::convert::identity::<&str>,
        // The addresses are the outer loop, each a search of the primary
        // key (a join rather than `IN (SELECT ...)`, which builds a
        // temporary index of the list first: a few microseconds of a single
        // check).
        among: "SELECT {} FROM json_each(?1) AS list CROSS JOIN cmc_suppressions \
                ON recipient = list.value WHERE reason IS NOT NULL",
        list: |chunk: &[String]| serde_json::to_string(chunk).unwrap_or_default(),
    );
}

#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    statements!(
        db: sqlx::Postgres,
        pg: true,
        backend: postgres,
        // Text with U+0000, which PostgreSQL refuses.
        text: crate::store::postgres::pg_text,
        among: "SELECT {} FROM cmc_suppressions WHERE recipient = ANY(?1) AND reason IS NOT NULL",
        list: std::convert::identity::<&[String]>,
    );
}
