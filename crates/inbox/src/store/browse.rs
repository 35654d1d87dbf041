//! The console's reads ([`crate::browse`]), written once and expanded
//! for SQLite and PostgreSQL, like `reads.rs`.

#[allow(unused_macros)] // without a backend
macro_rules! statements {
    (db: $db:ty, pg: $pg:expr, text: $text:expr $(,)?) => {
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
                    hour: crate::clock::from_millis(hour.saturating_mul(3_600_000)),
                    event_type,
                    status,
                    count: count as u64,
                })
                .collect())
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
    statements!(db: sqlx::Sqlite, pg: false, text: std::convert::identity::<&str>);
}

#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    statements!(db: sqlx::Postgres, pg: true, text: crate::store::postgres::pg_text);
}
