//! The console's reads ([`crate::browse`]), written once and expanded
//! for SQLite and PostgreSQL, like `reads.rs`.

#[allow(unused_macros)] // without a backend
macro_rules! statements {
    (db: $db:ty, pg: $pg:expr, text: $text:expr, store: $store:ty $(,)?) => {
        use crate::browse::types::{HourCount, Param, RowSummary, row_summary};
        use crate::error::InboxError;
        use crate::job::Kind;

        type Pool = sqlx::Pool<$db>;

        pub(crate) async fn activity(
            pool: &Pool,
            from: i64,
            to: i64,
        ) -> Result<Vec<HourCount>, InboxError> {
            let rows: Vec<(i64, String, Option<String>, i64)> =
                sqlx::query_as($crate::store::statement::dialect(
                    $pg,
                    if $pg {
                        crate::browse::types::ACTIVITY_SQL_PG
                    } else {
                        crate::browse::types::ACTIVITY_SQL
                    },
                ))
                .bind(from)
                .bind(to)
                .fetch_all(pool)
                .await
                .map_err(|e| InboxError::database("could not count the events per hour", e))?;
            Ok(rows
                .into_iter()
                .map(|(hour, event_type, status, count)| HourCount {
                    hour: crate::clock::from_millis(
                        hour.saturating_mul($crate::browse::types::HOUR_MS),
                    ),
                    event_type,
                    status,
                    count: count as u64,
                })
                .collect())
        }

        /// The hours of `first..end` recorded in `cmc_event_hours_done`,
        /// and their counts.
        pub(crate) async fn hours_kept(
            pool: &Pool,
            first: i64,
            end: i64,
        ) -> Result<(Vec<i64>, Vec<HourCount>), InboxError> {
            let failed = |e| InboxError::database("could not read the hours counted", e);
            // One statement: the markers and the counts in one snapshot
            // (an hour recorded between two reads would be read half).
            let rows: Vec<(i64, Option<String>, Option<String>, Option<i64>)> =
                sqlx::query_as($crate::store::statement::dialect(
                    $pg,
                    "SELECT d.hour, h.event_type, h.status, h.n FROM cmc_event_hours_done d \
                     LEFT JOIN cmc_event_hours h ON h.hour = d.hour \
                     WHERE d.hour >= ?1 AND d.hour < ?2",
                ))
                .bind(first)
                .bind(end)
                .fetch_all(pool)
                .await
                .map_err(failed)?;
            let mut done = Vec::new();
            let mut counts = Vec::new();
            for (hour, event_type, status, n) in rows {
                if done.last() != Some(&hour) {
                    done.push(hour);
                }
                if let (Some(event_type), Some(n)) = (event_type, n) {
                    counts.push(HourCount {
                        hour: crate::clock::from_millis(
                            hour.saturating_mul($crate::browse::types::HOUR_MS),
                        ),
                        event_type,
                        status,
                        count: u64::try_from(n).unwrap_or(0),
                    });
                }
            }
            Ok((done, counts))
        }

        /// Records `hours` as counted, with their counts (`counts`, each
        /// of one of `hours`), in one transaction that waits at most
        /// `limit` for a lock: an hour another reader recorded first is
        /// left as it is (its marker is there: none of its counts are
        /// added). How many hours this call recorded.
        pub(crate) async fn keep_hours(
            s: &$store,
            hours: &[i64],
            counts: &[HourCount],
            limit: std::time::Duration,
        ) -> Result<u64, InboxError> {
            const DOING: &str = "could not record the hours counted";
            let mut by_hour = std::collections::BTreeMap::<i64, Vec<&HourCount>>::new();
            for c in counts {
                by_hour
                    .entry(
                        c.hour
                            .as_millisecond()
                            .div_euclid($crate::browse::types::HOUR_MS),
                    )
                    .or_default()
                    .push(c);
            }
            s.writing_within(DOING, limit, async |tx| {
                let mut kept = 0;
                for &hour in hours {
                    let new = sqlx::query($crate::store::statement::dialect(
                        $pg,
                        "INSERT INTO cmc_event_hours_done (hour) VALUES (?1) \
                         ON CONFLICT (hour) DO NOTHING",
                    ))
                    .bind(hour)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| InboxError::database(DOING, e))?
                    .rows_affected();
                    if new == 0 {
                        continue;
                    }
                    kept += 1;
                    for c in by_hour.get(&hour).into_iter().flatten() {
                        sqlx::query($crate::store::statement::dialect(
                            $pg,
                            "INSERT INTO cmc_event_hours (hour, event_type, status, n) \
                             VALUES (?1, ?2, ?3, ?4)",
                        ))
                        .bind(hour)
                        .bind(c.event_type.as_str())
                        .bind(c.status.as_deref())
                        .bind(i64::try_from(c.count).unwrap_or(i64::MAX))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| InboxError::database(DOING, e))?;
                    }
                }
                Ok(kept)
            })
            .await
        }

        /// Deletes the hours counted that began before `before` (an hour
        /// number) with their counts: how many hours. On PostgreSQL one
        /// statement (one snapshot) deletes both: with two, a reader
        /// keeping an hour between them left its counts without their
        /// marker, and the hour was counted again beside them.
        pub(crate) async fn prune_hours(s: &$store, before: i64) -> Result<u64, InboxError> {
            const DOING: &str = "could not prune the hours counted";
            s.writing(DOING, async |tx| {
                if $pg {
                    let (hours,): (i64,) = sqlx::query_as($crate::store::statement::dialect(
                        $pg,
                        "WITH done AS (DELETE FROM cmc_event_hours_done WHERE hour < ?1 \
                         RETURNING hour), counts AS (DELETE FROM cmc_event_hours \
                         WHERE hour < ?1) SELECT COUNT(*) FROM done",
                    ))
                    .bind(before)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| InboxError::database(DOING, e))?;
                    return Ok(u64::try_from(hours).unwrap_or(0));
                }
                sqlx::query("DELETE FROM cmc_event_hours WHERE hour < ?1")
                    .bind(before)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| InboxError::database(DOING, e))?;
                Ok(
                    sqlx::query("DELETE FROM cmc_event_hours_done WHERE hour < ?1")
                        .bind(before)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| InboxError::database(DOING, e))?
                        .rows_affected(),
                )
            })
            .await
        }

        /// Forgets the counts kept of `hours` (hour numbers), so that they
        /// are counted again: rows were added into them after they closed
        /// (a reparse adds rows at their request's arrival).
        pub(crate) async fn forget_hours(s: &$store, hours: &[i64]) -> Result<(), InboxError> {
            const DOING: &str = "could not forget the hours counted";
            s.writing(DOING, async |tx| {
                for &hour in hours {
                    for statement in [
                        "DELETE FROM cmc_event_hours WHERE hour = ?1",
                        "DELETE FROM cmc_event_hours_done WHERE hour = ?1",
                    ] {
                        sqlx::query($crate::store::statement::dialect($pg, statement))
                            .bind(hour)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| InboxError::database(DOING, e))?;
                    }
                }
                Ok(())
            })
            .await
        }

        pub(crate) async fn rows(
            pool: &Pool,
            kind: Kind,
            statement: &str,
            params: &[Param],
        ) -> Result<Vec<RowSummary>, InboxError> {
            let failed = |e| InboxError::database("could not list the rows", e);
            let mut query = sqlx::query($crate::store::statement::dialect($pg, statement));
            for p in params {
                query = match p {
                    Param::Int(n) => query.bind(*n),
                    Param::Text(t) => query.bind($text(t.as_str()).to_string()),
                };
            }
            let rows = query.fetch_all(pool).await.map_err(failed)?;
            rows.iter()
                .map(|r| row_summary(kind, r).map_err(failed))
                .collect()
        }
    };
}

#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    statements!(
        db: sqlx::Sqlite,
        pg: false,
        text: std::convert::identity::<&str>,
        store: crate::store::sqlite::Sqlite,
    );
}

#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    statements!(
        db: sqlx::Postgres,
        pg: true,
        text: crate::store::postgres::pg_text,
        store: crate::store::postgres::Postgres,
    );
}
