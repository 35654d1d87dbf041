//! The statements of a worker's round on the job tables (`cmc_events`,
//! `cmc_mails`), written once for both backends as the mailboxes' are
//! (`mailbox.rs`). Each backend expands [`statements!`] in its own file,
//! giving its dialect: how a list of ids is bound and tested, how text is
//! made storable, and the end of a claim's `SELECT` (skipping rows other
//! workers hold); the SQL is written with `?N` parameters, turned into
//! `$N` for PostgreSQL. The expansion calls the backend's
//! `keep_suppression` (the suppression list's `keep`, expanded for the
//! same database), which locks rows its own way.

/// The round's statements for one database: `round_jobs`, run in the
/// round's transaction.
#[allow(unused_macros)] // without a backend
macro_rules! statements {
    (
        db: $db:ty,
        pg: $pg:expr,
        skip: $skip:expr,
        ids: $ids:expr,
        in_ids: $in_ids:expr,
        not_in_ids: $not_in_ids:expr,
        text: $text:expr $(,)?
    ) => {
        /// `s` with its parameters written the database's way.
        fn sql(s: &str) -> sqlx::SqlStr {
            $crate::store::statement::dialect($pg, s)
        }

        /// Records the outcomes of finished jobs, renews the leases of those
        /// still running, marks dead the rows whose lease expired on their
        /// last attempt, and claims due rows, in the round's transaction.
        pub(crate) async fn round_jobs(
            tx: &mut <$db as sqlx::Database>::Connection,
            worker: &str,
            settle: &[Settle],
            renew: Option<&Renew>,
            claim: Option<&Claim>,
            suppress: Option<&Policy>,
        ) -> Result<Vec<Claimed>, InboxError> {
            let failed = |e: sqlx::Error| InboxError::database("the worker's round failed", e);
            let id_list = $ids;
            let in_ids = $in_ids;
            let not_in_ids = $not_in_ids;
            let text = $text;
            for kind in [Kind::Event, Kind::Mail] {
                let done: Vec<i64> = settle
                    .iter()
                    .filter(|s| s.id.kind == kind && matches!(s.outcome, Outcome::Done))
                    .map(|s| s.id.id)
                    .collect();
                if let Some(s) = settle.first().filter(|_| !done.is_empty()) {
                    // Done: the handler returned Ok. The rows this round marked
                    // (not those whose lease was lost) come back for the
                    // suppression list.
                    let returning = if kind == Kind::Event && suppress.is_some() {
                        " RETURNING idempotency_key, event_type, recipient, status, created, @ms(received_at), \
                         source"
                    } else {
                        " RETURNING id"
                    };
                    let marked = sqlx::query(sql(&format!(
                        "UPDATE {} SET state = 'done', done_at = @ts(?1), locked_by = NULL, \
                         locked_until = NULL, last_error = NULL \
                         WHERE id {} AND state = 'running' AND locked_by = ?3{returning}",
                        kind.table(),
                        in_ids("?2"),
                    )))
                    .bind(s.at)
                    .bind(id_list(done.clone()))
                    .bind(worker)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(failed)?;
                    if marked.len() < done.len() {
                        lost_outcomes(kind, done.len() - marked.len(), "done");
                    }
                    if let Some(policy) = suppress.filter(|_| kind == Kind::Event) {
                        let observed =
                            crate::suppression::rows::observed(&marked, policy)
                                .map_err(failed)?;
                        for (recipient, observed, change, source) in observed {
                            keep_suppression(&mut *tx, policy, &recipient, &observed, (&change, &source), s.at)
                                .await
                                .map_err(failed)?;
                        }
                    }
                }
            }
            for s in settle {
                let (state, run_at, done_at, error, given_back) = match &s.outcome {
                    Outcome::Done => continue,
                    // Retry: back to pending, due after the backoff.
                    Outcome::Retry { at, error } => ("pending", *at, None, Some(error.as_str()), 0i64),
                    // Dead: the last attempt failed.
                    Outcome::Dead { error } => ("dead", s.at, Some(s.at), Some(error.as_str()), 0i64),
                    // Released at shutdown: due again at once, and the
                    // cancelled run does not count as an attempt.
                    Outcome::Released => ("pending", s.at, None, None, 1),
                };
                let marked = sqlx::query(sql(&format!(
                    "UPDATE {} SET state = ?1, run_at = @ts(?2), done_at = @ts(?3), \
                     last_error = COALESCE(?4, last_error), locked_by = NULL, locked_until = NULL, \
                     attempts = CASE WHEN attempts > ?7 THEN attempts - ?7 ELSE 0 END \
                     WHERE id = ?5 AND state = 'running' AND locked_by = ?6",
                    s.id.kind.table()
                )))
                .bind(state)
                .bind(run_at)
                .bind(done_at)
                .bind(error.map(text))
                .bind(s.id.id)
                .bind(worker)
                .bind(given_back)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
                if marked.rows_affected() == 0 {
                    lost_outcomes(s.id.kind, 1, state);
                }
            }
            if let Some(r) = renew {
                for kind in [Kind::Event, Kind::Mail] {
                    let ids: Vec<i64> = r
                        .ids
                        .iter()
                        .filter(|id| id.kind == kind)
                        .map(|id| id.id)
                        .collect();
                    if ids.is_empty() {
                        continue;
                    }
                    // Running: the lease of a handler still running is renewed.
                    sqlx::query(sql(&format!(
                        "UPDATE {} SET locked_until = @ts(?1) \
                         WHERE id {} AND state = 'running' AND locked_by = ?3",
                        kind.table(),
                        in_ids("?2"),
                    )))
                    .bind(r.until)
                    .bind(id_list(ids))
                    .bind(worker)
                    .execute(&mut *tx)
                    .await
                    .map_err(failed)?;
                }
            }
            let mut claimed = Vec::new();
            if let Some(c) = claim {
                for kind in c.order {
                    if !c.kinds[kind.slot()] {
                        continue;
                    }
                    let held = id_list(c.held_of(kind));
                    if c.sweep {
                        // Dead: a lease expired on the last attempt (its worker died,
                        // or could not reach the store to renew it).
                        sqlx::query(sql(&format!(
                            "UPDATE {} SET state = 'dead', done_at = @ts(?1), locked_by = NULL, \
                             locked_until = NULL, last_error = 'the lease expired on attempt ' || \
                             attempts || ': its worker stopped, or lost the store, while the handler ran' || \
                             COALESCE(' (before: ' || last_error || ')', '') \
                             WHERE state = 'running' \
                             AND locked_until <= @ts(?1) AND attempts >= ?2 \
                             AND id {}",
                            kind.table(),
                            not_in_ids("?3"),
                        )))
                        .bind(c.now)
                        .bind(i64::from(c.max_attempts))
                        .bind(&held)
                        .execute(&mut *tx)
                        .await
                        .map_err(failed)?;
                    }
                    let room = c.limit.saturating_sub(claimed.len());
                    if room == 0 || !c.due[kind.slot()] {
                        continue;
                    }
                    // Running: claimed, with a lease; a row whose lease expired
                    // is claimed again.
                    let columns = match kind {
                        Kind::Event => "@exact(event)",
                        Kind::Mail => "@exact(mail)",
                    };
                    let rows = sqlx::query(sql(&format!(
                        "UPDATE {table} SET state = 'running', attempts = attempts + 1, \
                         locked_by = ?1, locked_until = @ts(?2) \
                         WHERE id IN (SELECT id FROM {table} WHERE state IN ('pending', 'running') \
                         AND CASE state WHEN 'pending' THEN run_at <= @ts(?3) \
                         ELSE locked_until <= @ts(?3) AND attempts < ?5 \
                         AND id {not_held} END \
                         ORDER BY id LIMIT ?4{skip}) \
                         RETURNING id, idempotency_key, {columns}, server_composition, client, \
                         @ms(received_at), attempts, source",
                        table = kind.table(),
                        not_held = not_in_ids("?6"),
                        skip = $skip,
                    )))
                    .bind(worker)
                    .bind(c.lease_until)
                    .bind(c.now)
                    .bind(i64::try_from(room).unwrap_or(i64::MAX))
                    .bind(i64::from(c.max_attempts))
                    .bind(&held)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(failed)?;
                    let mut batch: Vec<Claimed> = rows.iter().map(|r| claimed_row(kind, r)).collect();
                    batch.sort_by_key(|c| c.id.id);
                    claimed.extend(batch);
                }
            }
            Ok(claimed)
        }
    };
}
pub(crate) use statements;
