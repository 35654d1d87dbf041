//! The suppression list's statements that both backends run the same
//! way, written once as the mailboxes' are (`mailbox.rs`): the
//! `statements!` macro below is expanded for SQLite
//! (`suppression::sqlite`) and PostgreSQL (`suppression::postgres`), whose
//! SQL differs only in its parameters (`?N` against `$N`) and in how a
//! worker locks the row it updates. Each backend runs them in its own
//! transaction, begun its own way (SQLite's `BEGIN IMMEDIATE` under the
//! store's write lock, PostgreSQL's plain `BEGIN`).

/// Says, once a re-keying committed, how many rows it moved.
pub(crate) fn rekeyed(moved: u64) {
    if moved > 0 {
        tracing::info!(
            moved,
            "moved suppression rows to the addresses' new normal form"
        );
    }
}

/// The statements for one database: `$db` its sqlx type, `$pg` whether
/// parameters are written `$N`.
#[allow(unused_macros)] // without a backend
macro_rules! statements {
    ($db:ty, $pg:expr) => {
        use sqlx::Row;

        use crate::store::types::{Manual, SuppressionQuery};
        use crate::suppression::normal::normalize;
        use crate::suppression::policy::{Observed, SuppressionPolicy as Policy, What};
        use crate::suppression::rows::{RawChange, RawEntry};
        use crate::suppression::{rows, sql};

        type Conn = <$db as sqlx::Database>::Connection;

        fn sql(s: &str) -> sqlx::SqlStr {
            $crate::store::statement::dialect($pg, s)
        }

        /// The rows of the list `filter` chooses, at most 1 000.
        pub(crate) async fn list<'c>(
            conn: impl sqlx::Executor<'c, Database = $db>,
            filter: &SuppressionQuery,
            now: i64,
        ) -> Result<Vec<RawEntry>, sqlx::Error> {
            let found = sqlx::query(sql(sql::LIST))
                .bind(filter.reason)
                .bind(i64::from(filter.suppressed_only))
                .bind(now)
                .bind(filter.after.as_deref())
                .bind(filter.limit.min(1000) as i64)
                .fetch_all(conn)
                .await?;
            found.iter().map(rows::raw_entry).collect()
        }

        /// Records, in the caller's transaction, that a worker keeps the
        /// list (`kept`: the first such record stays) or marks events done
        /// without keeping it (the last such record replaces the one
        /// before), at `now`.
        pub(crate) async fn note_keeping(
            tx: &mut Conn,
            kept: bool,
            now: i64,
        ) -> Result<(), sqlx::Error> {
            let statement = if kept {
                "INSERT INTO cmc_suppression_keeping (fact, at) VALUES ('kept', @ts(?1)) \
                 ON CONFLICT (fact) DO NOTHING"
            } else {
                "INSERT INTO cmc_suppression_keeping (fact, at) VALUES ('skipped', @ts(?1)) \
                 ON CONFLICT (fact) DO UPDATE SET at = excluded.at"
            };
            sqlx::query(sql(statement))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            Ok(())
        }

        /// Since when a worker keeps the list, and when one last started
        /// without keeping it.
        pub(crate) async fn keeping<'c>(
            conn: impl sqlx::Executor<'c, Database = $db>,
        ) -> Result<(Option<i64>, Option<i64>), sqlx::Error> {
            let facts: Vec<(String, i64)> =
                sqlx::query_as(sql("SELECT fact, @ms(at) FROM cmc_suppression_keeping"))
                    .fetch_all(conn)
                    .await?;
            let at = |fact: &str| facts.iter().find(|(f, _)| f == fact).map(|(_, at)| *at);
            Ok((at("kept"), at("skipped")))
        }

        /// Up to `limit` changes of `recipient`'s row older than the
        /// change `before` (`i64::MAX`: the newest), newest first.
        pub(crate) async fn history<'c>(
            conn: impl sqlx::Executor<'c, Database = $db>,
            recipient: &str,
            before: i64,
            limit: i64,
        ) -> Result<Vec<RawChange>, sqlx::Error> {
            let found = sqlx::query(sql(sql::HISTORY))
                .bind(recipient)
                .bind(before)
                .bind(limit)
                .fetch_all(conn)
                .await?;
            found.iter().map(rows::change_row).collect()
        }

        /// How many changes `recipient`'s row has had.
        pub(crate) async fn history_count<'c>(
            conn: impl sqlx::Executor<'c, Database = $db>,
            recipient: &str,
        ) -> Result<i64, sqlx::Error> {
            sqlx::query_scalar(sql(sql::HISTORY_COUNT))
                .bind(recipient)
                .fetch_one(conn)
                .await
        }

        /// A change by hand, with its history row, in the caller's
        /// transaction; `false` when nothing changed (removing an address
        /// the list does not hold).
        pub(crate) async fn change(
            tx: &mut Conn,
            recipient: &str,
            manual: Manual,
            note: &str,
            now: i64,
        ) -> Result<bool, sqlx::Error> {
            let (statement, reason, change) = match manual {
                Manual::Add { .. } => (sql::ADD, Some("manual"), "added"),
                Manual::Remove => (sql::REMOVE, None, "removed"),
            };
            let statement = sql(statement);
            let query = sqlx::query(statement).bind(recipient);
            let query = match manual {
                Manual::Add { until } => query.bind(now).bind(until).bind(note),
                Manual::Remove => query.bind(note).bind(now),
            };
            let changed = query.execute(&mut *tx).await?.rows_affected() > 0;
            if changed {
                sqlx::query(sql(sql::NOTE))
                    .bind(recipient)
                    .bind(change)
                    .bind(reason)
                    .bind(note)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(changed)
        }

        /// Applies one done event to its recipient's row, once, in the
        /// worker's round: the history's unique key makes a second
        /// application of the same event a no-op. On PostgreSQL the row is
        /// locked (created empty first if needed), so that workers of
        /// several receivers never lose each other's updates; SQLite's
        /// round holds the database's write lock already.
        pub(crate) async fn keep(
            tx: &mut Conn,
            policy: &Policy,
            recipient: &str,
            observed: &Observed,
            (change, source): (&str, &str),
            now: i64,
        ) -> Result<(), sqlx::Error> {
            // A success is applied without the history: applying it again
            // changes nothing (it drops the soft bounces before it), and one
            // history row per delivered mail would grow forever. An address
            // the list does not hold gets no row from it.
            let success = observed.what == What::Succeeded;
            if success
                && sqlx::query(sql(sql::EXISTS))
                    .bind(recipient)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_none()
            {
                return Ok(());
            }
            let key = observed.key.to_string();
            if !success {
                let inserted = sqlx::query(sql(
                    "INSERT INTO cmc_suppression_history (recipient, idempotency_key, change, at, \
                     source) VALUES (?1, ?2, ?3, @ts(?4), ?5) ON CONFLICT (idempotency_key) DO NOTHING",
                ))
                .bind(recipient)
                .bind(&key)
                .bind(change)
                .bind(now)
                .bind(source)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    return Ok(());
                }
            }
            if $pg {
                sqlx::query(sql(
                    "INSERT INTO cmc_suppressions (recipient, updated_at) VALUES (?1, @ts(?2)) \
                     ON CONFLICT (recipient) DO NOTHING",
                ))
                .bind(recipient)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let lock = if $pg { " FOR UPDATE" } else { "" };
            let row = sqlx::query(sql(&format!("{}{lock}", sql::REKEY_ONE)))
                .bind(recipient)
                .fetch_optional(&mut *tx)
                .await?;
            let mut state = match row {
                Some(r) => rows::state(&r)?,
                None => Default::default(),
            };
            crate::suppression::policy::apply(&mut state, observed, policy);
            let c = state.to_columns();
            put(tx, recipient, &c, now).await?;
            sqlx::query(sql(
                "UPDATE cmc_suppression_history SET reason = ?1 WHERE idempotency_key = ?2",
            ))
            .bind(c.reason)
            .bind(&key)
            .execute(&mut *tx)
            .await?;
            Ok(())
        }

        /// Writes `recipient`'s row whole, made if it is missing.
        async fn put(
            tx: &mut Conn,
            recipient: &str,
            c: &rows::Columns,
            now: i64,
        ) -> Result<(), sqlx::Error> {
            sqlx::query(sql(sql::REKEY_PUT))
                .bind(recipient)
                .bind(c.reason)
                .bind(c.since)
                .bind(c.until)
                .bind(&c.note)
                .bind(&c.events)
                .bind(c.hard_count)
                .bind(&c.soft_times)
                .bind(c.unknown_count)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            Ok(())
        }

        /// Re-keys the suppression list to the addresses' normal form, once:
        /// the rows whose address is not ASCII and whose form changed move
        /// to their new key (merged with a row already there), with their
        /// history. A row of `cmc_suppressions_rekey` asks for it, and is
        /// deleted in the same transaction. Returns how many moved, and
        /// logs it once committed.
        pub(crate) async fn rekey_once(conn: &mut Conn, now: i64) -> Result<u64, sqlx::Error> {
            use sqlx::Connection;
            let pending: i64 = sqlx::query_scalar(sql(sql::REKEY_PENDING))
                .fetch_one(&mut *conn)
                .await?;
            if pending == 0 {
                return Ok(0);
            }
            // Two processes opening at once: the second waits for the
            // first's lock (SQLite's on the database, PostgreSQL's on the
            // request), then finds the request gone.
            let (begin, lock) = if $pg {
                ("BEGIN", " FOR UPDATE")
            } else {
                ("BEGIN IMMEDIATE", "")
            };
            let mut tx = conn.begin_with(begin).await?;
            let still: Vec<i64> = sqlx::query_scalar(sql(&format!(
                "SELECT CAST(pending AS BIGINT) FROM cmc_suppressions_rekey{lock}"
            )))
            .fetch_all(&mut *tx)
            .await?;
            if still.is_empty() {
                return Ok(0);
            }
            let moved = rekey(&mut tx, now).await?;
            tx.commit().await?;
            crate::store::suppression::rekeyed(moved);
            Ok(moved)
        }

        /// Re-keys the suppression list to the addresses' normal form, in
        /// the caller's transaction, which holds the rekey request locked:
        /// the rows whose address is not ASCII and whose form changed move
        /// to their new key (merged with a row already there), with their
        /// history; the request is then deleted. Returns how many moved
        /// (to log with [`rekeyed`](crate::store::suppression::rekeyed) once committed).
        pub(crate) async fn rekey(tx: &mut Conn, now: i64) -> Result<u64, sqlx::Error> {
            let found = sqlx::query(sql(sql::REKEY_ROWS))
                .fetch_all(&mut *tx)
                .await?;
            let mut moved = 0;
            for r in &found {
                let old: String = r.try_get(8)?;
                let Some(new) = normalize(&old).filter(|new| *new != old) else {
                    continue;
                };
                let mine = rows::state(r)?;
                let theirs = sqlx::query(sql(sql::REKEY_ONE))
                    .bind(&new)
                    .fetch_optional(&mut *tx)
                    .await?;
                let merged = match theirs {
                    Some(t) => rows::state(&t)?.merge(mine),
                    None => mine,
                };
                put(tx, &new, &merged.to_columns(), now).await?;
                sqlx::query(sql(sql::REKEY_DROP))
                    .bind(&old)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sql(sql::REKEY_HISTORY))
                    .bind(&old)
                    .bind(&new)
                    .execute(&mut *tx)
                    .await?;
                moved += 1;
            }
            sqlx::query(sql(sql::REKEY_DONE)).execute(&mut *tx).await?;
            Ok(moved)
        }
    };
}

#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    statements!(sqlx::Sqlite, false);
}

#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    statements!(sqlx::Postgres, true);
}
