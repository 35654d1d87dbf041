//! The handler targets' states ([`crate::targets`]), written once and
//! expanded for SQLite and PostgreSQL, like `browse.rs`. The rows go out
//! and come back as plain columns: this file imports nothing of the
//! module that gives them meaning.

/// A row of `cmc_target_states`: target, writer, state, failures in a
/// row, until (ms), pauses, changed at (ms).
pub(crate) type RawTargetState = (String, String, String, i64, Option<i64>, i64, i64);

#[allow(unused_macros)] // without a backend
macro_rules! statements {
    (db: $db:ty, pg: $pg:expr, store: $store:ty $(,)?) => {
        use super::RawTargetState;
        use crate::error::InboxError;

        fn sql(s: &str) -> sqlx::SqlStr {
            $crate::store::statement::dialect($pg, s)
        }

        /// Records states (one row per target and writer) in one
        /// transaction that waits at most `limit` for a lock; a change
        /// older than the row's is ignored.
        pub(crate) async fn set(
            s: &$store,
            rows: &[RawTargetState],
            limit: std::time::Duration,
        ) -> Result<(), InboxError> {
            const DOING: &str = "could not record the targets' states";
            s.writing_within(DOING, limit, async |tx| {
                for row in rows {
                    sqlx::query(sql("INSERT INTO cmc_target_states \
                         (target, writer, state, failures, until, pauses, changed_at) \
                         VALUES (?1, ?2, ?3, ?4, @ts(?5), ?6, @ts(?7)) \
                         ON CONFLICT (target, writer) DO UPDATE SET state = excluded.state, \
                         failures = excluded.failures, until = excluded.until, \
                         pauses = excluded.pauses, changed_at = excluded.changed_at \
                         WHERE cmc_target_states.changed_at <= excluded.changed_at"))
                    .bind(&row.0)
                    .bind(&row.1)
                    .bind(&row.2)
                    .bind(row.3)
                    .bind(row.4)
                    .bind(row.5)
                    .bind(row.6)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| InboxError::database(DOING, e))?;
                }
                Ok(())
            })
            .await
        }

        /// Deletes a writer's rows: how many.
        pub(crate) async fn remove(
            s: &$store,
            writer: &str,
            limit: std::time::Duration,
        ) -> Result<u64, InboxError> {
            const DOING: &str = "could not remove a writer's target states";
            s.writing_within(DOING, limit, async |tx| {
                Ok(sqlx::query(sql("DELETE FROM cmc_target_states WHERE writer = ?1"))
                    .bind(writer)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| InboxError::database(DOING, e))?
                    .rows_affected())
            })
            .await
        }

        /// Every row, by target and writer.
        pub(crate) async fn list(
            pool: &sqlx::Pool<$db>,
        ) -> Result<Vec<RawTargetState>, InboxError> {
            sqlx::query_as(sql(
                "SELECT target, writer, state, failures, @ms(until), pauses, @ms(changed_at) \
                 FROM cmc_target_states ORDER BY target, writer",
            ))
            .fetch_all(pool)
            .await
            .map_err(|e| InboxError::database("could not read the targets' states", e))
        }

        /// Deletes the rows unchanged since before `before` whose end, if
        /// any, is past at `now`: how many.
        pub(crate) async fn prune(s: &$store, before: i64, now: i64) -> Result<u64, InboxError> {
            const DOING: &str = "could not prune the targets' states";
            s.writing(DOING, async |tx| {
                Ok(sqlx::query(sql(
                    "DELETE FROM cmc_target_states WHERE changed_at < @ts(?1) \
                     AND (until IS NULL OR until < @ts(?2))",
                ))
                .bind(before)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| InboxError::database(DOING, e))?
                .rows_affected())
            })
            .await
        }
    };
}

#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    statements!(db: sqlx::Sqlite, pg: false, store: crate::store::sqlite::Sqlite);
}

#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    statements!(db: sqlx::Postgres, pg: true, store: crate::store::postgres::Postgres);
}
