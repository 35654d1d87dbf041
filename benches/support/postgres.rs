//! Throwaway PostgreSQL databases for the benchmarks that also run on
//! PostgreSQL (the server is the one `scripts/with-postgres.sh` starts).

use sqlx::Connection;

/// A new, empty database `name` on the server at `admin` (dropped first if
/// a run before left it); returns its address.
pub async fn fresh_database(admin: &str, name: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(&*sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
    format!("{}/{name}", admin.rsplit_once('/').unwrap().0)
}
