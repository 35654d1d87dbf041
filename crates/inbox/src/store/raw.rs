//! The raw requests' statements (`cmc_raw_requests` and its parts), both
//! databases: written once with `?N` parameters, expanded for SQLite
//! (`raw::sqlite`) and PostgreSQL (`raw::postgres`), as the other
//! statement files are.

use crate::raw::keep::Piece;
use crate::rows::ATTACHMENT_CHUNK;

/// Where a part's bytes are, as a row says it.
pub(crate) enum PartRow<'a> {
    Bytes(&'a [u8]),
    Attachment(i64),
    EventText(&'a str),
}

/// A kept body's parts as rows: `(start, length, part)`, byte pieces cut
/// in chunks of at most [`ATTACHMENT_CHUNK`].
pub(crate) fn part_rows(pieces: &[Piece]) -> Vec<(i64, i64, PartRow<'_>)> {
    let mut rows = Vec::new();
    let mut at = 0usize;
    for piece in pieces {
        match piece {
            Piece::Bytes(b) => {
                for (start, chunk) in crate::rows::chunks(b) {
                    if chunk.is_empty() {
                        continue;
                    }
                    rows.push((
                        (at + start) as i64,
                        chunk.len() as i64,
                        PartRow::Bytes(chunk),
                    ));
                }
            }
            Piece::Attachment { position, len } => {
                rows.push((at as i64, *len as i64, PartRow::Attachment(*position)))
            }
            Piece::EventText { key, len } => {
                rows.push((at as i64, *len as i64, PartRow::EventText(key)))
            }
        }
        at += piece.len();
    }
    rows
}

/// Whether a kept body is kept whole in its request's row: one piece of
/// bytes, at most a chunk long.
pub(crate) fn inline(pieces: &[Piece]) -> Option<&[u8]> {
    match pieces {
        [Piece::Bytes(b)] if b.len() <= ATTACHMENT_CHUNK => Some(b),
        _ => None,
    }
}

/// The statements for one database: `$db` its sqlx type, `$pg` whether
/// parameters are written `$N`, `$text` how it makes
/// a text parameter storable.
#[allow(unused_macros)] // without a backend
macro_rules! statements {
    (db: $db:ty, pg: $pg:expr, text: $text:expr $(,)?) => {

        use sqlx::Row;

        use crate::error::{InboxError, InboxErrorKind};
        use crate::job::Kind;
        use crate::raw::types::{NewRaw, RawOutcome, RawRow};
        use crate::rows::Arrival;
        use crate::raw::types::StoredPart;
        use crate::store::raw::{PartRow, inline, part_rows};

        type Conn = <$db as sqlx::Database>::Connection;
        type Pool = sqlx::Pool<$db>;

        fn sql(s: &str) -> sqlx::SqlStr {
            $crate::store::statement::dialect($pg, s)
        }

        fn opt(text: &Option<String>) -> Option<String> {
            text.as_deref().map(|t| $text(t).into_owned())
        }

        /// Stores a kept request (or counts it again when the same body is
        /// stored already): its id.
        pub(crate) async fn insert_request(
            conn: &mut Conn,
            raw: &NewRaw,
        ) -> Result<i64, sqlx::Error> {
            let body = inline(&raw.body.pieces);
            let row = sqlx::query(sql(
                "INSERT INTO cmc_raw_requests (received_at, client, content_type, user_agent, \
                 content_length, transfer_encoding, outcome, reason, body_sha256, size, body, \
                 source) VALUES (@ts(?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                 ON CONFLICT (body_sha256) DO UPDATE SET repeats = cmc_raw_requests.repeats + 1, \
                 source = COALESCE(cmc_raw_requests.source, excluded.source), \
                 outcome = CASE WHEN excluded.outcome = 'stored' THEN 'stored' \
                 ELSE cmc_raw_requests.outcome END \
                 RETURNING id, repeats",
            ))
            .bind(raw.received_at)
            .bind(opt(&raw.client))
            .bind($text(&raw.content_type))
            .bind(opt(&raw.user_agent))
            .bind(opt(&raw.content_length))
            .bind(opt(&raw.transfer_encoding))
            .bind(raw.outcome.as_str())
            .bind(opt(&raw.reason))
            .bind(&raw.body.sha256)
            .bind(raw.body.size as i64)
            .bind(body)
            .bind(opt(&raw.source))
            .fetch_one(&mut *conn)
            .await?;
            let (id, repeats): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
            if repeats == 0 && body.is_none() {
                for (start, length, part) in part_rows(&raw.body.pieces) {
                    let (data, attachment, event_key) = match part {
                        PartRow::Bytes(bytes) => (Some(bytes), None, None),
                        PartRow::Attachment(position) => (None, Some(position), None),
                        PartRow::EventText(key) => (None, None, Some(key)),
                    };
                    sqlx::query(sql(
                        "INSERT INTO cmc_raw_request_parts \
                         (request_id, start, length, data, attachment, event_key) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    ))
                    .bind(id)
                    .bind(start)
                    .bind(length)
                    .bind(data)
                    .bind(attachment)
                    .bind(event_key)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            Ok(id)
        }

        /// The raw request of each arrival, stored first in the arrivals'
        /// transaction: its id, or `None` when it has none.
        pub(crate) async fn insert_requests(
            conn: &mut Conn,
            arrivals: &[&Arrival],
        ) -> Result<Vec<Option<i64>>, sqlx::Error> {
            let mut ids = Vec::with_capacity(arrivals.len());
            for a in arrivals {
                ids.push(match &a.raw {
                    crate::rows::RawRef::None => None,
                    crate::rows::RawRef::Existing(id) => Some(*id),
                    crate::rows::RawRef::Keep(raw) => Some(insert_request(conn, raw).await?),
                });
            }
            Ok(ids)
        }

        /// Records `mail` as the mail whose attachments the parts of
        /// request `id` refer to (a request stored again keeps its first).
        pub(crate) async fn set_mail(conn: &mut Conn, id: i64, mail: i64) -> Result<(), sqlx::Error> {
            sqlx::query(sql(
                "UPDATE cmc_raw_requests SET mail_id = ?1 WHERE id = ?2 AND mail_id IS NULL",
            ))
            .bind(mail)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        /// Up to `limit` requests after id `after`, in order of id (only
        /// those of `ids` when given).
        pub(crate) async fn list(
            pool: &Pool,
            after: i64,
            limit: i64,
            ids: Option<&[i64]>,
        ) -> Result<Vec<RawRow>, InboxError> {
            let failed = |e| InboxError::database("could not list the raw requests", e);
            let columns = "SELECT id, @ms(received_at), client, content_type, user_agent, content_length, \
                 transfer_encoding, outcome, reason, body_sha256, size, mail_id, repeats, \
                 source FROM cmc_raw_requests";
            let rows = match ids {
                Some(ids) => {
                    let mut rows = Vec::new();
                    for id in ids.iter().filter(|id| **id > after) {
                        rows.extend(
                            sqlx::query(sql(&format!("{columns} WHERE id = ?1")))
                                .bind(*id)
                                .fetch_optional(pool)
                                .await
                                .map_err(failed)?,
                        );
                    }
                    rows.sort_by_key(|r| r.try_get::<i64, _>(0).unwrap_or(0));
                    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
                    rows
                }
                None => sqlx::query(sql(&format!(
                    "{columns} WHERE id > ?1 ORDER BY id LIMIT ?2"
                )))
                .bind(after)
                .bind(limit)
                .fetch_all(pool)
                .await
                .map_err(failed)?,
            };
            rows.iter()
                .map(|r| {
                    let outcome: String = r.try_get(7)?;
                    Ok(RawRow {
                        id: r.try_get(0)?,
                        received_at: crate::clock::from_millis(r.try_get(1)?),
                        client: r.try_get(2)?,
                        content_type: r.try_get(3)?,
                        user_agent: r.try_get(4)?,
                        content_length: r.try_get(5)?,
                        transfer_encoding: r.try_get(6)?,
                        outcome: if outcome == "refused" {
                            RawOutcome::Refused
                        } else {
                            RawOutcome::Stored
                        },
                        reason: r.try_get(8)?,
                        sha256: r.try_get(9)?,
                        size: u64::try_from(r.try_get::<i64, _>(10)?).unwrap_or(0),
                        mail: r.try_get(11)?,
                        repeats: u64::try_from(r.try_get::<i64, _>(12)?).unwrap_or(0),
                        source: r.try_get(13)?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(|e| InboxError::database("a raw request does not read back", e))
        }

        /// The kept body of request `id` as stored: whole, or its parts in
        /// order (`Err(position)` an attachment of its mail, with its
        /// length).
        pub(crate) async fn body(
            pool: &Pool,
            id: i64,
        ) -> Result<Result<Vec<u8>, Vec<(i64, i64, StoredPart)>>, InboxError> {
            let failed = |e| InboxError::database("could not read a raw request's body", e);
            let whole: Option<Vec<u8>> =
                sqlx::query_scalar(sql("SELECT body FROM cmc_raw_requests WHERE id = ?1"))
                    .bind(id)
                    .fetch_optional(pool)
                    .await
                    .map_err(failed)?
                    .ok_or_else(|| {
                        InboxError::new(
                            InboxErrorKind::Invalid,
                            format!("raw request {id} is not stored (pruned?)"),
                        )
                    })?;
            if let Some(whole) = whole {
                return Ok(Ok(whole));
            }
            let starts: Vec<(i64, i64, Option<i64>, Option<String>)> = sqlx::query_as(sql(
                "SELECT start, length, attachment, event_key FROM cmc_raw_request_parts \
                 WHERE request_id = ?1 ORDER BY start",
            ))
            .bind(id)
            .fetch_all(pool)
            .await
            .map_err(failed)?;
            let mut parts = Vec::with_capacity(starts.len());
            for (start, length, attachment, event_key) in starts {
                let data = match (attachment, event_key) {
                    (Some(position), _) => StoredPart::Attachment(position),
                    (None, Some(key)) => StoredPart::EventText(key),
                    (None, None) => StoredPart::Bytes(sqlx::query_scalar::<_, Vec<u8>>(sql(
                        "SELECT data FROM cmc_raw_request_parts \
                         WHERE request_id = ?1 AND start = ?2",
                    ))
                    .bind(id)
                    .bind(start)
                    .fetch_one(pool)
                    .await
                    .map_err(failed)?),
                };
                parts.push((start, length, data));
            }
            Ok(Err(parts))
        }

        /// The id and JSON of the row of `kind` keyed `key`, if one is
        /// stored.
        pub(crate) async fn existing(
            pool: &Pool,
            kind: Kind,
            key: &str,
        ) -> Result<Option<(i64, String)>, InboxError> {
            let column = match kind {
                Kind::Event => "@exact(event)",
                Kind::Mail => "@exact(mail)",
            };
            sqlx::query_as(sql(&format!(
                "SELECT id, {column} FROM {} WHERE idempotency_key = ?1",
                kind.table()
            )))
            .bind(key)
            .fetch_optional(pool)
            .await
            .map_err(|e| InboxError::database("could not look up a row by its key", e))
        }
    };
}

#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    statements!(
        db: sqlx::Sqlite,
        pg: false,
        text: |t: &str| std::borrow::Cow::<str>::Owned(t.to_owned()),
    );
}

#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    statements!(
        db: sqlx::Postgres,
        pg: true,
        // Text with U+0000, which PostgreSQL refuses.
        text: crate::store::statement::pg_text,
    );
}
