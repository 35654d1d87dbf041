//! The suppression list's statements that both backends run the same
//! way, written once as the mailboxes' are (`mailbox.rs`): the
//! `statements!` macro below is expanded for SQLite
//! (`suppression::sqlite`) and PostgreSQL (`suppression::postgres`), whose
//! SQL differs only in its parameters (`?N` against `$N`). Each backend
//! runs them in its own transaction, locked its own way.

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
        use std::borrow::Cow;

        use sqlx::Row;

        use crate::suppression::normal::normalize;
        use crate::suppression::{rows, sql};

        type Conn = <$db as sqlx::Database>::Connection;

        fn sql(s: &str) -> Cow<'_, str> {
            if $pg {
                Cow::Owned(s.replace('?', "$"))
            } else {
                Cow::Borrowed(s)
            }
        }

        /// Re-keys the suppression list to the addresses' normal form, in
        /// the caller's transaction, which holds the rekey request locked:
        /// the rows whose address is not ASCII and whose form changed move
        /// to their new key (merged with a row already there), with their
        /// history; the request is then deleted. Returns how many moved
        /// (to log with [`rekeyed`](super::rekeyed) once committed).
        pub(crate) async fn rekey(tx: &mut Conn, now: i64) -> Result<u64, sqlx::Error> {
            let found = sqlx::query(&sql(sql::REKEY_ROWS))
                .fetch_all(&mut *tx)
                .await?;
            let mut moved = 0;
            for r in &found {
                let old: String = r.try_get(8)?;
                let Some(new) = normalize(&old).filter(|new| *new != old) else {
                    continue;
                };
                let mine = rows::state(r)?;
                let theirs = sqlx::query(&sql(sql::REKEY_ONE))
                    .bind(&new)
                    .fetch_optional(&mut *tx)
                    .await?;
                let merged = match theirs {
                    Some(t) => rows::state(&t)?.merge(mine),
                    None => mine,
                };
                let c = merged.to_columns();
                sqlx::query(&sql(sql::REKEY_PUT))
                    .bind(&new)
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
                sqlx::query(&sql(sql::REKEY_DROP))
                    .bind(&old)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(&sql(sql::REKEY_HISTORY))
                    .bind(&old)
                    .bind(&new)
                    .execute(&mut *tx)
                    .await?;
                moved += 1;
            }
            sqlx::query(&sql(sql::REKEY_DONE)).execute(&mut *tx).await?;
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
