//! The mailboxes' statements, written once for both backends: the
//! `statements!` macro below is expanded for SQLite (`mailbox::sqlite`)
//! and PostgreSQL (`mailbox::postgres`), whose SQL differs only in its
//! parameters (`?N` against `$N`) and in skipping rows other workers hold.
//! Each backend runs them in its own transaction.

use super::types::{
    ClaimedDelivery, DeliveryCount, DeliveryOutcome, DeliveryQuery, DeliveryReplay, DeliveryRound,
    DeliveryStep, MailRow, REPLAY_SLICE, RawDelivery, ReplayCursor, Which,
};

/// Text as both databases take it: PostgreSQL refuses U+0000 in text.
fn text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

/// The job columns of mails: `{ids}` is the list of their ids.
const MAIL_ROWS: &str = "SELECT id, idempotency_key, @exact(mail), client, @ms(received_at), source \
     FROM cmc_mails WHERE id IN {ids}";
const DUE_MAILS: &str = "SELECT id, CAST(octet_length(envelope_to) + octet_length(filter) AS BIGINT) FROM cmc_mails \
     WHERE state IN ('pending', 'running') \
     AND CASE state WHEN 'pending' THEN run_at <= @ts(?1) ELSE locked_until <= @ts(?1) END \
     ORDER BY id LIMIT ?2";
/// What routing reads of the mails chosen.
const ROUTING_COLUMNS: &str =
    "SELECT id, envelope_to, filter, source FROM cmc_mails WHERE id IN {ids}";
/// The most envelope and filter text one round reads, in bytes
/// (`octet_length`: SQLite's `length` of text stops at the first U+0000,
/// so a NUL would hide the rest of an envelope from the budget), but at
/// least one mail's: a mail can name any number of recipients.
const ROUTING_BUDGET: i64 = 4 << 20;
/// Routing a mail again (it was replayed) replaces its unrouted row; the
/// recipients that reached a mailbox keep their rows (see `REACHED`).
const FORGET_UNROUTED: &str =
    "DELETE FROM cmc_mail_deliveries WHERE mailbox IS NULL AND mail_id IN {ids}";
/// The deliveries the mails being routed already have (routed before,
/// then replayed).
const REACHED: &str = "SELECT mail_id, mailbox, recipients FROM cmc_mail_deliveries \
     WHERE mailbox IS NOT NULL AND mail_id IN {ids}";
/// Followed by one `(?, ?, ?, ?, ?, 0, ?, ?)` per row.
const INSERT: &str = "INSERT INTO cmc_mail_deliveries \
     (mail_id, mailbox, recipients, route, state, attempts, run_at, created_at) VALUES ";
/// Rows per `INSERT` (7 parameters each).
const INSERT_ROWS: usize = 100;
const ROUTED: &str = "UPDATE cmc_mails SET state = 'done', done_at = @ts(?1), \
     attempts = attempts + 1, locked_by = NULL, locked_until = NULL, last_error = NULL \
     WHERE id IN {ids}";
/// The common outcome, for many deliveries at once.
const DELIVERED: &str = "UPDATE cmc_mail_deliveries SET state = 'delivered', run_at = @ts(?1), \
     done_at = @ts(?1), last_error = NULL, bounce_reason = NULL, locked_by = NULL, \
     locked_until = NULL WHERE id IN {ids} AND state = 'processing' AND locked_by = ?3";
const SETTLE: &str = "UPDATE cmc_mail_deliveries SET state = ?1, run_at = @ts(?2), done_at = @ts(?3), \
     last_error = CASE WHEN ?1 = 'delivered' THEN NULL ELSE COALESCE(?4, last_error) END, \
     bounce_reason = ?5, locked_by = NULL, locked_until = NULL, \
     attempts = CASE WHEN attempts > ?6 THEN attempts - ?6 ELSE 0 END \
     WHERE id = ?7 AND state = 'processing' AND locked_by = ?8";
const RENEW: &str = "UPDATE cmc_mail_deliveries SET locked_until = @ts(?1) \
     WHERE id IN {ids} AND state = 'processing' AND locked_by = ?3";
const SWEEP: &str = "UPDATE cmc_mail_deliveries SET state = 'dead', done_at = @ts(?1), \
     locked_by = NULL, locked_until = NULL, last_error = 'the lease expired on attempt ' || \
     attempts || ': its worker stopped, or lost the store, while the handler ran' || \
     COALESCE(' (before: ' || last_error || ')', '') \
     WHERE mailbox = ?4 AND state = 'processing' AND locked_until <= @ts(?1) AND attempts >= ?2 \
     AND id NOT IN {ids}";
const CLAIM: &str = "UPDATE cmc_mail_deliveries SET state = 'processing', \
     attempts = attempts + 1, locked_by = ?1, locked_until = @ts(?2) \
     WHERE id IN (SELECT id FROM cmc_mail_deliveries \
     WHERE mailbox = ?3 AND state IN ('pending', 'failed', 'processing') \
     AND CASE state WHEN 'processing' \
     THEN locked_until <= @ts(?4) AND id NOT IN {ids} AND attempts < ?6 \
     ELSE run_at <= @ts(?4) END ORDER BY id LIMIT ?5";
/// From the counts the triggers of migration 0014 keep ('' is an
/// unrouted delivery's mailbox: a mailbox's name is never empty).
const COUNTS: &str = "SELECT NULLIF(scope, ''), state, CAST(SUM(n) AS BIGINT) \
     FROM cmc_state_counts WHERE tbl = 'deliveries' GROUP BY scope, state HAVING SUM(n) <> 0";
const LIST: &str = "SELECT d.id, d.mail_id, d.mailbox, d.recipients, d.route, d.state, \
     d.attempts, d.last_error, d.bounce_reason, @ms(d.created_at), @ms(d.run_at), @ms(d.done_at), \
     m.envelope_from, m.subject, m.idempotency_key \
     FROM cmc_mail_deliveries d JOIN cmc_mails m ON m.id = d.mail_id";
const PRUNE: &str = "DELETE FROM cmc_mail_deliveries WHERE id IN (SELECT id \
     FROM cmc_mail_deliveries WHERE mailbox = ?1 AND state IN ('delivered', 'bounced') \
     AND done_at < @ts(?2) ORDER BY id LIMIT 1000) RETURNING mail_id";
/// Mails no mailbox took (an unrouted delivery and no other), routed
/// before `?1`: their deliveries and attachments go with them (`ON DELETE
/// CASCADE`).
const PRUNE_UNROUTED: &str = "DELETE FROM cmc_mails WHERE id IN (SELECT m.id FROM cmc_mails m \
     WHERE m.state = 'done' AND m.done_at < @ts(?1) \
     AND EXISTS (SELECT 1 FROM cmc_mail_deliveries d WHERE d.mail_id = m.id AND d.mailbox IS NULL) \
     AND NOT EXISTS (SELECT 1 FROM cmc_mail_deliveries d WHERE d.mail_id = m.id \
     AND d.mailbox IS NOT NULL) ORDER BY m.id LIMIT 1000)";

/// Replayed: back to pending, attempts reset.
const REPLAYED: &str = "UPDATE cmc_mail_deliveries SET state = 'pending', attempts = 0, \
     run_at = @ts(?1), done_at = NULL, locked_by = NULL, locked_until = NULL WHERE id IN {ids}";
/// Routed again: the mails of unrouted deliveries back to pending.
const REROUTED: &str = "UPDATE cmc_mails SET state = 'pending', attempts = 0, run_at = @ts(?1), \
     done_at = NULL, locked_by = NULL, locked_until = NULL WHERE state = 'done' AND id IN {ids}";
const ORPHAN_ATTACHMENTS: &str = "DELETE FROM cmc_mail_attachments WHERE mail_id = ?1 \
     AND NOT EXISTS (SELECT 1 FROM cmc_mail_deliveries WHERE mail_id = ?1) \
     AND EXISTS (SELECT 1 FROM cmc_mails WHERE id = ?1 AND state = 'done')";
const ORPHAN_MAIL: &str = "DELETE FROM cmc_mails WHERE id = ?1 AND state = 'done' \
     AND NOT EXISTS (SELECT 1 FROM cmc_mail_deliveries WHERE mail_id = ?1)";
const ATTACHMENT_SIZE: &str = "SELECT COUNT(*), COALESCE(SUM(length(data)), 0) \
     FROM cmc_mail_attachments WHERE mail_id = ?1 AND position = ?2";
const ATTACHMENT_STARTS: &str = "SELECT start FROM cmc_mail_attachments \
     WHERE mail_id = ?1 AND position = ?2 ORDER BY start";
const ATTACHMENT_CHUNK: &str = "SELECT data FROM cmc_mail_attachments \
     WHERE mail_id = ?1 AND position = ?2 AND start = ?3";

/// The condition that keeps a routed mail from `Inbox::prune` on either
/// backend: its mailboxes' retention decides when it goes
/// (`Deliveries::prune`). A mail no mailbox
/// took (only its unrouted row) has no mailbox to keep it: it goes with
/// the mails' retention, its unrouted row with it (`ON DELETE CASCADE`).
pub(crate) fn routed_mails_kept(kind: crate::job::Kind) -> &'static str {
    match kind {
        crate::job::Kind::Event => "",
        crate::job::Kind::Mail => {
            " AND NOT EXISTS (SELECT 1 FROM cmc_mail_deliveries d WHERE d.mail_id = cmc_mails.id \
             AND d.mailbox IS NOT NULL)"
        }
    }
}

/// A `WHERE` clause from a [`DeliveryQuery`], with its parameters from
/// `?first` on.
fn filter_clause(filter: &DeliveryQuery, first: usize) -> (String, Vec<Bind>) {
    let mut clauses = Vec::new();
    let mut binds = Vec::new();
    let next = |bind: Bind, binds: &mut Vec<Bind>| {
        binds.push(bind);
        format!("?{}", first + binds.len() - 1)
    };
    match &filter.mailbox {
        Which::Any => {}
        Which::Unrouted => clauses.push("d.mailbox IS NULL".to_owned()),
        Which::Named(name) => {
            let p = next(Bind::Text(name.clone()), &mut binds);
            clauses.push(format!("d.mailbox = {p}"));
        }
    }
    if let Some(mail) = filter.mail {
        let p = next(Bind::Int(mail), &mut binds);
        clauses.push(format!("d.mail_id = {p}"));
    }
    if !filter.states.is_empty() {
        // The states are this crate's names (`&'static str`), never the
        // caller's text.
        let names: Vec<String> = filter.states.iter().map(|s| format!("'{s}'")).collect();
        clauses.push(format!("d.state IN ({})", names.join(", ")));
    }
    if clauses.is_empty() {
        clauses.push("1 = 1".to_owned());
    }
    (clauses.join(" AND "), binds)
}

enum Bind {
    Int(i64),
    Text(String),
}

/// The statements for one database: `$db` its sqlx type, `$pg` whether
/// parameters are written `$N`, `$skip` the end of a claim's `SELECT`.
#[allow(unused_macros)] // without a backend
macro_rules! statements {
    ($db:ty, $pg:expr, $skip:expr) => {
        use std::collections::{HashMap, HashSet};

        use sqlx::Row;

        // The file this macro is written in (its expansions are its children).
        use crate::store::mailbox::*;

        type Conn = <$db as sqlx::Database>::Connection;

        fn sql(s: &str) -> sqlx::SqlStr {
            $crate::store::statement::dialect($pg, s)
        }

        /// `statement` with `{ids}` replaced by the list of ids bound (as
        /// JSON text) to `param` (`?1`, `?2`).
        fn with_ids(statement: &str, param: &str) -> String {
            let list = if $pg {
                format!(
                    "(SELECT value::bigint FROM json_array_elements_text(CAST({param} AS json)))"
                )
            } else {
                format!("(SELECT value FROM json_each({param}))")
            };
            statement.replace("{ids}", &list)
        }

        /// The job columns of the mails `ids` that exist, by id.
        async fn mail_rows(
            conn: &mut Conn,
            ids: impl IntoIterator<Item = i64>,
        ) -> Result<HashMap<i64, MailRow>, sqlx::Error> {
            let rows = sqlx::query(sql(&with_ids(MAIL_ROWS, "?1")))
                .bind(ids_json(ids))
                .fetch_all(&mut *conn)
                .await?;
            let mut mails = HashMap::with_capacity(rows.len());
            for row in rows {
                let id: i64 = row.try_get(0)?;
                mails.insert(
                    id,
                    MailRow {
                        key: row.try_get(1)?,
                        json: row.try_get(2)?,
                        client: row.try_get(3)?,
                        received_at: row.try_get(4)?,
                        source: row.try_get(5)?,
                    },
                );
            }
            Ok(mails)
        }

        fn ids_json(ids: impl IntoIterator<Item = i64>) -> String {
            serde_json::to_string(&ids.into_iter().collect::<Vec<i64>>())
                .unwrap_or_else(|_| "[]".into())
        }

        fn bind<'q>(
            mut q: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments>,
            binds: Vec<Bind>,
        ) -> sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments> {
            for b in binds {
                q = match b {
                    Bind::Int(i) => q.bind(i),
                    Bind::Text(t) => q.bind(t),
                };
            }
            q
        }

        fn bind_scalar<'q, O>(
            mut q: sqlx::query::QueryScalar<'q, $db, O, <$db as sqlx::Database>::Arguments>,
            binds: Vec<Bind>,
        ) -> sqlx::query::QueryScalar<'q, $db, O, <$db as sqlx::Database>::Arguments> {
            for b in binds {
                q = match b {
                    Bind::Int(i) => q.bind(i),
                    Bind::Text(t) => q.bind(t),
                };
            }
            q
        }

        fn bind_as<'q, O>(
            mut q: sqlx::query::QueryAs<'q, $db, O, <$db as sqlx::Database>::Arguments>,
            binds: Vec<Bind>,
        ) -> sqlx::query::QueryAs<'q, $db, O, <$db as sqlx::Database>::Arguments> {
            for b in binds {
                q = match b {
                    Bind::Int(i) => q.bind(i),
                    Bind::Text(t) => q.bind(t),
                };
            }
            q
        }

        /// The mailboxes' part of a worker's round: outcomes, leases,
        /// routing and claims, on the round's transaction.
        pub(crate) async fn round(
            conn: &mut Conn,
            worker: &str,
            r: &DeliveryRound<'_>,
        ) -> Result<DeliveryStep, sqlx::Error> {
            let mut step = DeliveryStep::default();
            let delivered: Vec<i64> = r
                .settle
                .iter()
                .filter(|s| matches!(s.outcome, DeliveryOutcome::Delivered))
                .map(|s| s.id)
                .collect();
            if let Some(first) = r.settle.first().filter(|_| !delivered.is_empty()) {
                sqlx::query(sql(&with_ids(DELIVERED, "?2")))
                    .bind(first.at)
                    .bind(ids_json(delivered))
                    .bind(worker)
                    .execute(&mut *conn)
                    .await?;
            }
            for s in r.settle {
                let (state, run_at, done_at, error, reason, given_back) = match &s.outcome {
                    DeliveryOutcome::Delivered => continue,
                    DeliveryOutcome::Bounced { reason } => {
                        ("bounced", s.at, Some(s.at), None, Some(text(reason)), 0)
                    }
                    DeliveryOutcome::Failed { retry_at, error } => {
                        ("failed", *retry_at, None, Some(text(error)), None, 0)
                    }
                    DeliveryOutcome::Dead { error } => {
                        ("dead", s.at, Some(s.at), Some(text(error)), None, 0)
                    }
                    // Released at shutdown: due again at once, and the
                    // cancelled run is not counted as an attempt.
                    DeliveryOutcome::Released => ("pending", s.at, None, None, None, 1i64),
                };
                sqlx::query(sql(SETTLE))
                    .bind(state)
                    .bind(run_at)
                    .bind(done_at)
                    .bind(error)
                    .bind(reason)
                    .bind(given_back)
                    .bind(s.id)
                    .bind(worker)
                    .execute(&mut *conn)
                    .await?;
            }
            if let Some((ids, until)) = r.renew.filter(|(ids, _)| !ids.is_empty()) {
                sqlx::query(sql(&with_ids(RENEW, "?2")))
                    .bind(until)
                    .bind(ids_json(ids.iter().copied()))
                    .bind(worker)
                    .execute(&mut *conn)
                    .await?;
            }
            if r.route > 0 {
                route_mails(conn, r, &mut step).await?;
            }
            let held = ids_json(r.held.iter().copied());
            for &(index, room) in r.claims {
                let mailbox = &r.mailboxes[index];
                if r.sweep {
                    sqlx::query(sql(&with_ids(SWEEP, "?3")))
                        .bind(r.now)
                        .bind(i64::from(mailbox.max_attempts))
                        .bind(&held)
                        .bind(mailbox.name.as_str())
                        .execute(&mut *conn)
                        .await?;
                }
                if room == 0 {
                    continue;
                }
                let rows = sqlx::query(sql(&format!(
                    "{}{}) RETURNING id, mail_id, recipients, attempts",
                    with_ids(CLAIM, "?7"),
                    $skip
                )))
                .bind(worker)
                .bind(r.lease_until)
                .bind(mailbox.name.as_str())
                .bind(r.now)
                .bind(i64::try_from(room).unwrap_or(i64::MAX))
                .bind(i64::from(mailbox.max_attempts))
                .bind(&held)
                .fetch_all(&mut *conn)
                .await?;
                let mut batch = Vec::with_capacity(rows.len());
                for row in rows {
                    batch.push(ClaimedDelivery {
                        id: row.try_get(0)?,
                        mail_id: row.try_get(1)?,
                        mailbox: index,
                        recipients: row.try_get(2)?,
                        attempts: row.try_get(3)?,
                        mail: None,
                    });
                }
                batch.sort_by_key(|d| d.id);
                if !batch.is_empty() {
                    let mut mails = mail_rows(conn, batch.iter().map(|d| d.mail_id)).await?;
                    for d in &mut batch {
                        d.mail = mails.remove(&d.mail_id);
                    }
                }
                step.claimed.extend(batch);
            }
            Ok(step)
        }

        /// Routes the due mails: their deliveries are inserted and the
        /// mails marked done, in the round's transaction.
        async fn route_mails(
            conn: &mut Conn,
            r: &DeliveryRound<'_>,
            step: &mut DeliveryStep,
        ) -> Result<(), sqlx::Error> {
            let sizes: Vec<(i64, i64)> = sqlx::query_as(sql(&format!("{DUE_MAILS}{}", $skip)))
                .bind(r.now)
                .bind(i64::try_from(r.route).unwrap_or(i64::MAX))
                .fetch_all(&mut *conn)
                .await?;
            // As many as the budget holds, the first one in any case.
            let mut spent = 0i64;
            let chosen: Vec<i64> = sizes
                .iter()
                .take_while(|(_, size)| {
                    let first = spent == 0;
                    spent = spent.saturating_add((*size).max(1));
                    first || spent <= ROUTING_BUDGET
                })
                .map(|(id, _)| *id)
                .collect();
            if chosen.is_empty() {
                return Ok(());
            }
            let ids = ids_json(chosen.iter().copied());
            let mut due: Vec<(i64, String, String, String)> =
                sqlx::query_as(sql(&with_ids(ROUTING_COLUMNS, "?1")))
                    .bind(&ids)
                    .fetch_all(&mut *conn)
                    .await?;
            due.sort_by_key(|(id, _, _, _)| *id);
            // A mail routed again (it was replayed) gets a new unrouted
            // row; the mailboxes it reached keep theirs.
            sqlx::query(sql(&with_ids(FORGET_UNROUTED, "?1")))
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
            // What each (mail, mailbox) holds already: a recipient reaches
            // its mailbox once, however often its mail is routed.
            let mut reached: HashMap<(i64, String), HashSet<String>> = HashMap::new();
            let before: Vec<(i64, String, String)> = sqlx::query_as(sql(&with_ids(REACHED, "?1")))
                .bind(&ids)
                .fetch_all(&mut *conn)
                .await?;
            for (mail_id, mailbox, recipients) in before {
                let list: Vec<String> = serde_json::from_str(&recipients).unwrap_or_default();
                reached.entry((mail_id, mailbox)).or_default().extend(list);
            }
            let boxes = r.mailboxes;
            let mut rows = Vec::new();
            for (mail_id, envelope_to, filter, source) in &due {
                for mut group in r.router.route(envelope_to, filter, source) {
                    if let Some(i) = group.mailbox {
                        if let Some(held) = reached.get(&(*mail_id, boxes[i].name.clone())) {
                            // A mail without recipients reached it already.
                            if group.recipients.is_empty() {
                                continue;
                            }
                            group.recipients.retain(|r| !held.contains(r));
                            if group.recipients.is_empty() {
                                continue;
                            }
                        }
                    }
                    let (mailbox, state) = match group.mailbox {
                        Some(i) => (Some(boxes[i].name.clone()), "pending"),
                        None => (None, "unrouted"),
                    };
                    let recipients =
                        serde_json::to_string(&group.recipients).unwrap_or_else(|_| "[]".into());
                    rows.push((
                        *mail_id,
                        mailbox,
                        text(&recipients),
                        group.route.as_deref().map(text),
                        state,
                    ));
                    step.reached.push(group.mailbox);
                    if group.mailbox.is_none() {
                        step.unrouted.push((*mail_id, group.recipients));
                    }
                }
            }
            for chunk in rows.chunks(INSERT_ROWS) {
                let values: Vec<String> = (0..chunk.len())
                    .map(|i| {
                        let p = i * 7;
                        format!(
                            "(?{}, ?{}, ?{}, ?{}, ?{}, 0, @ts(?{}), @ts(?{}))",
                            p + 1,
                            p + 2,
                            p + 3,
                            p + 4,
                            p + 5,
                            p + 6,
                            p + 7
                        )
                    })
                    .collect();
                let statement = sql(&format!("{INSERT}{}", values.join(", ")));
                let mut q = sqlx::query(statement);
                for (mail_id, mailbox, recipients, route, state) in chunk {
                    q = q
                        .bind(*mail_id)
                        .bind(mailbox.clone())
                        .bind(recipients.clone())
                        .bind(route.clone())
                        .bind(*state)
                        .bind(r.now)
                        .bind(r.now);
                }
                q.execute(&mut *conn).await?;
            }
            sqlx::query(sql(&with_ids(ROUTED, "?2")))
                .bind(r.now)
                .bind(&ids)
                .execute(&mut *conn)
                .await?;
            step.routed = due.len();
            step.more = chosen.len() < sizes.len() || sizes.len() == r.route;
            Ok(())
        }

        /// The job columns of mail `id`, if its row exists.
        pub(crate) async fn mail_row(
            conn: &mut Conn,
            id: i64,
        ) -> Result<Option<MailRow>, sqlx::Error> {
            Ok(mail_rows(conn, [id]).await?.remove(&id))
        }

        /// How many deliveries each mailbox has in each state.
        pub(crate) async fn counts(conn: &mut Conn) -> Result<Vec<DeliveryCount>, sqlx::Error> {
            sqlx::query_as(sql(COUNTS)).fetch_all(&mut *conn).await
        }

        /// The deliveries `filter` takes, in order of id.
        pub(crate) async fn list(
            conn: &mut Conn,
            filter: &DeliveryQuery,
        ) -> Result<Vec<RawDelivery>, sqlx::Error> {
            let (clause, binds) = filter_clause(filter, 3);
            let statement = format!("{LIST} WHERE d.id > ?1 AND {clause} ORDER BY d.id LIMIT ?2");
            let statement = sql(&statement);
            let q = sqlx::query(statement)
                .bind(filter.after)
                .bind(i64::try_from(filter.limit).unwrap_or(i64::MAX));
            let rows = bind(q, binds).fetch_all(&mut *conn).await?;
            rows.iter()
                .map(|row| {
                    Ok(RawDelivery {
                        id: row.try_get(0)?,
                        mail_id: row.try_get(1)?,
                        mailbox: row.try_get(2)?,
                        recipients: row.try_get(3)?,
                        route: row.try_get(4)?,
                        state: row.try_get(5)?,
                        attempts: row.try_get(6)?,
                        last_error: row.try_get(7)?,
                        bounce_reason: row.try_get(8)?,
                        created_at: row.try_get(9)?,
                        run_at: row.try_get(10)?,
                        done_at: row.try_get(11)?,
                        envelope_from: row.try_get(12)?,
                        subject: row.try_get(13)?,
                        key: row.try_get(14)?,
                    })
                })
                .collect()
        }

        /// One slice of a replay: sets up to [`REPLAY_SLICE`] finished
        /// deliveries `filter` takes (with ids past `cursor.after`) back to
        /// pending (attempts reset), or, once those are through, the mails
        /// of as many unrouted ones back to pending to be routed again;
        /// returns how many of each, and moves the cursor on. The caller
        /// commits each slice on its own, so that a replay of a million
        /// rows never holds the database for long.
        pub(crate) async fn replay(
            conn: &mut Conn,
            replay: &DeliveryReplay,
            now: i64,
            cursor: &mut ReplayCursor,
        ) -> Result<(u64, u64), sqlx::Error> {
            let mut filter = replay.finished.clone();
            let reroute = replay.reroute;
            if !cursor.rerouting {
                if filter.states.is_empty() {
                    cursor.next_pass(reroute);
                    return Ok((0, 0));
                }
                let (clause, binds) = filter_clause(&filter, 3);
                let statement = format!(
                    "SELECT d.id FROM cmc_mail_deliveries d WHERE d.id > ?1 AND {clause} \
                     ORDER BY d.id LIMIT ?2"
                );
                let statement = sql(&statement);
                let q = sqlx::query_scalar(statement)
                    .bind(cursor.after)
                    .bind(REPLAY_SLICE as i64);
                let ids: Vec<i64> = bind_scalar(q, binds).fetch_all(&mut *conn).await?;
                let replayed = if ids.is_empty() {
                    0
                } else {
                    sqlx::query(sql(&with_ids(REPLAYED, "?2")))
                        .bind(now)
                        .bind(ids_json(ids.iter().copied()))
                        .execute(&mut *conn)
                        .await?
                        .rows_affected()
                };
                match ids.last() {
                    Some(last) if ids.len() as u64 == REPLAY_SLICE => cursor.after = *last,
                    _ => cursor.next_pass(reroute),
                }
                return Ok((replayed, 0));
            }
            filter.states = vec!["unrouted"];
            filter.mailbox = Which::Unrouted;
            let (clause, binds) = filter_clause(&filter, 3);
            let statement = format!(
                "SELECT d.id, d.mail_id FROM cmc_mail_deliveries d WHERE d.id > ?1 AND {clause} \
                 ORDER BY d.id LIMIT ?2"
            );
            let statement = sql(&statement);
            let q = sqlx::query_as(statement)
                .bind(cursor.after)
                .bind(REPLAY_SLICE as i64);
            let rows: Vec<(i64, i64)> = bind_as(q, binds).fetch_all(&mut *conn).await?;
            let rerouted = if rows.is_empty() {
                0
            } else {
                sqlx::query(sql(&with_ids(REROUTED, "?2")))
                    .bind(now)
                    .bind(ids_json(rows.iter().map(|(_, mail)| *mail)))
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            };
            match rows.last() {
                Some((last, _)) if rows.len() as u64 == REPLAY_SLICE => cursor.after = *last,
                _ => cursor.done = true,
            }
            Ok((0, rerouted))
        }

        /// Deletes up to 1 000 of `mailbox`'s deliveries finished (delivered
        /// or bounced) before `before`, and the mails (with their
        /// attachments) no delivery is left of; returns how many of each.
        pub(crate) async fn prune(
            conn: &mut Conn,
            mailbox: &str,
            before: i64,
        ) -> Result<(u64, u64), sqlx::Error> {
            let mut mails: Vec<i64> = sqlx::query_scalar(sql(PRUNE))
                .bind(mailbox)
                .bind(before)
                .fetch_all(&mut *conn)
                .await?;
            let deliveries = mails.len() as u64;
            mails.sort_unstable();
            mails.dedup();
            let mut deleted = 0;
            for id in mails {
                sqlx::query(sql(ORPHAN_ATTACHMENTS))
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                deleted += sqlx::query(sql(ORPHAN_MAIL))
                    .bind(id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
            }
            Ok((deliveries, deleted))
        }

        /// Deletes up to 1 000 mails no mailbox took, routed before
        /// `before`; returns how many.
        pub(crate) async fn prune_unrouted(
            conn: &mut Conn,
            before: i64,
        ) -> Result<u64, sqlx::Error> {
            Ok(sqlx::query(sql(PRUNE_UNROUTED))
                .bind(before)
                .execute(&mut *conn)
                .await?
                .rows_affected())
        }

        /// The bytes of attachment `position` of mail `mail`, assembled
        /// from its chunks (read one at a time); `None` when it has none.
        pub(crate) async fn attachment(
            conn: &mut Conn,
            mail: i64,
            position: i64,
        ) -> Result<Option<Vec<u8>>, sqlx::Error> {
            let (chunks, size): (i64, i64) = sqlx::query_as(sql(ATTACHMENT_SIZE))
                .bind(mail)
                .bind(position)
                .fetch_one(&mut *conn)
                .await?;
            if chunks == 0 {
                return Ok(None);
            }
            let starts: Vec<i64> = sqlx::query_scalar(sql(ATTACHMENT_STARTS))
                .bind(mail)
                .bind(position)
                .fetch_all(&mut *conn)
                .await?;
            let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            for start in starts {
                if usize::try_from(start).ok() != Some(data.len()) {
                    return Err(sqlx::Error::Protocol(format!(
                        "attachment {position} of mail {mail} has a chunk at {start} \
                         where {} was expected",
                        data.len()
                    )));
                }
                let chunk: Vec<u8> = sqlx::query_scalar(sql(ATTACHMENT_CHUNK))
                    .bind(mail)
                    .bind(position)
                    .bind(start)
                    .fetch_one(&mut *conn)
                    .await?;
                data.extend_from_slice(&chunk);
            }
            Ok(Some(data))
        }
    };
}

#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    statements!(sqlx::Sqlite, false, "");
}

#[cfg(feature = "postgres")]
pub(crate) mod postgres {
    statements!(sqlx::Postgres, true, " FOR UPDATE SKIP LOCKED");
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use sqlx::Connection;

    use super::*;

    #[tokio::test]
    async fn the_routing_budget_counts_every_byte_of_an_envelope_past_a_nul() {
        // SQLite's `length` of text stops at the first U+0000: a NUL at the
        // front of a 3 MiB envelope made it count 3 characters, and 16
        // such mails were routed in one locked round.
        let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE cmc_mails (id INTEGER PRIMARY KEY, envelope_to TEXT, filter TEXT, \
             state TEXT, run_at INTEGER, locked_until INTEGER)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let envelope = format!("a@x\0{}", "b".repeat(3 << 20));
        sqlx::query(
            "INSERT INTO cmc_mails (envelope_to, filter, state, run_at) \
             VALUES (?1, ?2, 'pending', 0)",
        )
        .bind(&envelope)
        .bind("f\0ilter")
        .execute(&mut conn)
        .await
        .unwrap();
        let sizes: Vec<(i64, i64)> =
            sqlx::query_as(crate::store::statement::dialect(false, DUE_MAILS))
                .bind(1i64)
                .bind(10i64)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(sizes, [(1, envelope.len() as i64 + 7)]);
    }
}
