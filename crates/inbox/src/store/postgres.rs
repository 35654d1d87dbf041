//! The PostgreSQL backend: one database shared by any number of receivers
//! and workers, the schema of `migrations/postgres/`.
//!
//! - A duplicate (the same event sent to two instances) meets the unique
//!   index on `idempotency_key`: the insert counts it in `repeats` instead
//!   of failing.
//! - Workers claim with `FOR UPDATE SKIP LOCKED`, so two workers never take
//!   the same row, and wake on `NOTIFY cmc_inbox`, sent by every commit
//!   that stored something.
//! - Migrations take sqlx's advisory lock: instances that start at once
//!   migrate one after the other.
//! - A lost connection fails the statements that needed it (503 while
//!   receiving); the pool connects again by itself.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Executor, Row};

use super::mailbox::postgres as mailbox_sql;
use super::raw::postgres as raw_sql;
use super::suppression::postgres as suppression_sql;
use super::types::{Claim, Outcome, Renew, Settle, lost_outcomes};
use crate::error::{InboxError, InboxErrorKind};
use crate::job::Kind;
use crate::ops::Receipt;
use crate::rows::{Arrival, Assembly, Claimed, NewEvent, chunks, claimed_row};
use crate::schema::{self, Migrated, Opening};
use crate::suppression::policy::SuppressionPolicy as Policy;
use suppression_sql::rekey_once as rekey_suppressions;

/// The channel of `LISTEN`/`NOTIFY` on which commits wake workers.
const CHANNEL: &str = "cmc_inbox";

/// The migrations of `migrations/postgres/`, compiled in.
static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> = schema::migrator!(
    "postgres",
    "0001_inbox.sql",
    "0002_suppressions.sql",
    "0003_mail_deliveries.sql",
    "0004_message_id_prefix.sql",
    "0005_address_form.sql",
    "0006_event_texts.sql",
    "0007_raw_requests.sql",
    "0008_sources.sql",
    "0009_suppression_keeping.sql",
    "0010_native_types.sql",
    "0011_raw_body_lz4.sql",
    "0012_console.sql",
    "0013_target_states.sql",
    "0014_state_counts.sql",
    "0015_count_truncate.sql",
    "0016_event_hours.sql",
    "0017_count_search_path.sql",
);

/// The schema of the inbox's tables when none is chosen.
pub(crate) const DEFAULT_SCHEMA: &str = "cmc_webhook";

/// The inbox's tables (before 0.2 in whatever schema the search path gave
/// first): those the adoption moves into the chosen schema.
const TABLES: [&str; 13] = [
    "cmc_events",
    "cmc_mails",
    "cmc_mail_attachments",
    "cmc_suppressions",
    "cmc_suppression_history",
    "cmc_mail_deliveries",
    "cmc_inbox_opened",
    "cmc_suppressions_rekey",
    "cmc_event_texts",
    "cmc_raw_requests",
    "cmc_raw_request_parts",
    "cmc_suppression_keeping",
    "cmc_state_counts",
];

/// The functions of the counters' triggers (migrations 0014 and 0015),
/// made with the search path of their schema: the adoption moves them
/// with the tables and points them at the chosen schema.
const FUNCTIONS: [&str; 3] = [
    "cmc_count_rows",
    "cmc_count_deliveries",
    "cmc_count_truncate",
];

/// Fails unless `schema` is a plain identifier: a lowercase ASCII letter
/// or `_`, then lowercase letters, digits or `_`, at most 63 bytes (what
/// PostgreSQL reads the same quoted or not), and not one of PostgreSQL's
/// own (`pg_*`, `information_schema`).
pub(crate) fn check_schema(schema: &str) -> Result<(), InboxError> {
    let plain = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !plain || schema.starts_with("pg_") || schema == "information_schema" {
        return Err(InboxError::new(
            InboxErrorKind::Config,
            format!(
                "{:?} is not a schema the inbox can use: a plain identifier is expected \
                 (lowercase ASCII letters, digits and _, not starting with a digit, at most \
                 63 bytes, not pg_* or information_schema)",
                cmc_webhook_core::printable(schema, 80)
            ),
        ));
    }
    Ok(())
}

/// Fails when `schema`, a plain identifier ([`check_schema`]), is a word
/// PostgreSQL reserves (`select`, `user`, `order`, ...), which cannot
/// name a schema unquoted: the server's own list decides.
async fn refuse_keyword(pool: &PgPool, schema: &str) -> Result<(), InboxError> {
    let reserved: Option<String> = sqlx::query_scalar(
        "SELECT catdesc::text FROM pg_get_keywords() WHERE word = $1 AND catcode IN ('R', 'T')",
    )
    .bind(schema)
    .fetch_optional(pool)
    .await
    .map_err(|e| InboxError::database("could not read PostgreSQL's reserved words", e))?;
    match reserved {
        Some(kind) => Err(InboxError::new(
            InboxErrorKind::Config,
            format!(
                "{schema:?} cannot be the inbox's schema: PostgreSQL reserves the word ({kind}); \
                 choose another name"
            ),
        )),
        None => Ok(()),
    }
}

/// The inbox's migrator for `schema`: its history in
/// `schema.cmc_webhook_migrations`, the schema made if missing.
fn migrator(schema: &str) -> sqlx::migrate::Migrator {
    sqlx::migrate::Migrator {
        migrations: MIGRATOR.migrations.clone(),
        table_name: format!("{schema}.{}", schema::MIGRATIONS_TABLE).into(),
        create_schemas: vec![std::borrow::Cow::Owned(schema.to_owned())].into(),
        ..sqlx::migrate::Migrator::DEFAULT
    }
}

/// A pool of up to `size` connections to `options.url`, each with the
/// statement timeout (and read-only when the inbox opens read-only).
async fn connect(options: &Options, size: u32) -> Result<PgPool, InboxError> {
    if let Some(pool) = &options.pool {
        return Ok(pool.clone());
    }
    check_parameters(&options.url)?;
    let connect: PgConnectOptions = options.url.parse().map_err(|e| {
        InboxError::new(
            InboxErrorKind::Config,
            format!("{} is not a PostgreSQL address: {e}", redact(&options.url)),
        )
    })?;
    let timeout_ms = options.statement_timeout.as_millis();
    let read_only = options.opening == Opening::ReadOnly;
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(options.connect_timeout)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                conn.execute(super::statement::built(format!(
                    "SET statement_timeout = {timeout_ms}"
                )))
                .await?;
                if read_only {
                    conn.execute("SET default_transaction_read_only = on")
                        .await?;
                }
                Ok(())
            })
        })
        .connect_with(connect)
        .await
        .map_err(|e| {
            InboxError::new(
                InboxErrorKind::Open,
                format!("could not connect to {}: {e}", redact(&options.url)),
            )
            .with_source(e)
        })
}

/// The version the store's schema is at ([`schema::effective`]; `None`: none, or no table),
/// in the inbox's table, or else in sqlx's default table where the
/// previous release kept it.
async fn applied_version(pool: &PgPool) -> Result<Option<i64>, sqlx::Error> {
    match sqlx::query_scalar::<_, i64>(super::statement::dialect(true, schema::APPLIED))
        .fetch_all(pool)
        .await
    {
        Ok(versions) => Ok(schema::effective(versions, &MIGRATOR)),
        Err(e) if schema::is_missing_table(&e) => {
            match sqlx::query_as::<_, (i64, Vec<u8>)>(schema::APPLIED_LEGACY)
                .fetch_all(pool)
                .await
            {
                // Only if its tables are already where this inbox looks
                // for them (the schema chosen is the one they are in);
                // otherwise migrating moves them first.
                Ok(rows) if tables_in_schema(pool).await? => {
                    Ok(schema::newest_own(&rows, &MIGRATOR))
                }
                Ok(_) => Ok(None),
                Err(e) if schema::is_missing_table(&e) => Ok(None),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Whether sqlx's default table holds a history of the inbox's (an
/// earlier release's store, not adopted yet).
async fn earlier_release(pool: &PgPool) -> Option<i64> {
    match sqlx::query_as::<_, (i64, Vec<u8>)>(schema::APPLIED_LEGACY)
        .fetch_all(pool)
        .await
    {
        Ok(rows) => schema::newest_own(&rows, &MIGRATOR),
        Err(_) => None,
    }
}

/// Whether the inbox's tables are in the store's schema.
async fn tables_in_schema(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(format!("{}.cmc_events", current_schema()))
        .fetch_one(pool)
        .await
}

/// The schema of the store the current call runs on.
fn current_schema() -> String {
    super::statement::PG_TABLES
        .try_with(|t| t.schema.clone())
        .unwrap_or_else(|_| DEFAULT_SCHEMA.to_owned())
}

/// Whether sqlx's default migrations table is on the connection's search
/// path (where the previous release, given the same address, made it).
async fn has_legacy_table(conn: &mut sqlx::PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
}

/// Moves the inbox's own rows of a history the previous release kept in
/// `_sqlx_migrations` into `cmc_webhook_migrations` (see
/// [`schema::ADOPT`]), in one transaction, under sqlx's migration lock
/// (the advisory lock every sqlx migrator of this database takes, the
/// application's too): a second process opening at once waits for it,
/// then finds nothing to move.
async fn adopt_history(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::migrate::MigrateError> {
    use sqlx::Connection;
    use sqlx::migrate::Migrate;
    if !has_legacy_table(conn).await? {
        return Ok(());
    }
    let target = current_schema();
    conn.lock().await?;
    let result = async {
        let mut tx = conn.begin().await?;
        if !has_legacy_table(&mut tx).await? {
            return Ok(());
        }
        // The tables, from the schema the search path gave the previous
        // release into the one chosen now (unless they are there already).
        let from: Option<String> = sqlx::query_scalar(
            super::statement::dialect(true, "SELECT n.nspname::TEXT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.oid = to_regclass('cmc_events')"),
        )
        .fetch_optional(&mut *tx)
        .await?;
        tx.create_schema_if_not_exists(&target).await?;
        if let Some(from) = from.filter(|from| *from != target) {
            let there: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(format!("{target}.cmc_events"))
                .fetch_one(&mut *tx)
                .await?;
            if !there {
                for table in TABLES {
                    let exists: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = $2)",
                    )
                    .bind(&from)
                    .bind(table)
                    .fetch_one(&mut *tx)
                    .await?;
                    if exists {
                        sqlx::query(super::statement::built(format!(
                            "ALTER TABLE \"{}\".{table} SET SCHEMA {target}",
                            from.replace('"', "\"\"")
                        )))
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                for function in FUNCTIONS {
                    let exists: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n \
                         ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proname = $2)",
                    )
                    .bind(&from)
                    .bind(function)
                    .fetch_one(&mut *tx)
                    .await?;
                    if exists {
                        for sql in [
                            format!(
                                "ALTER FUNCTION \"{}\".{function}() SET SCHEMA {target}",
                                from.replace('"', "\"\"")
                            ),
                            format!(
                                "ALTER FUNCTION {target}.{function}() SET search_path = {target}, pg_temp"
                            ),
                        ] {
                            sqlx::query(super::statement::built(sql))
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                }
            }
        }
        tx.ensure_migrations_table(&format!("{target}.{}", schema::MIGRATIONS_TABLE))
            .await?;
        for m in MIGRATOR.iter() {
            for statement in schema::ADOPT {
                sqlx::query(super::statement::dialect(true, statement))
                    .bind(m.version)
                    .bind(&*m.checksum)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let left: i64 = sqlx::query_scalar(schema::LEGACY_LEFT)
            .fetch_one(&mut *tx)
            .await?;
        if left == 0 {
            sqlx::query(schema::DROP_LEGACY).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok::<_, sqlx::migrate::MigrateError>(())
    }
    .await;
    let unlocked = conn.unlock().await;
    result.and(unlocked)
}

/// Adopts a history kept by the previous release, then applies the
/// migrations the database has not seen, under sqlx's advisory lock:
/// instances starting at once take turns.
///
/// On a connection of its own (the pool's options): the migrations' bare
/// table names are made in the store's schema by setting the search path
/// of that connection only, which is then closed.
///
/// The search path is the schema, then `pg_temp` explicitly last: the
/// counters' functions keep it (`SET search_path FROM CURRENT`), and
/// without `pg_temp` named PostgreSQL would search a session's temporary
/// tables first (a `TEMP TABLE cmc_state_counts` would take the counts).
///
/// A migration that deadlocks with a writer of the release before
/// (migrations 0014 and 0015 lock the tables a worker's round writes, in
/// another order, during a rolling upgrade) was rolled back whole (each
/// migration is its own transaction): it is tried again, up to
/// [`MIGRATION_TRIES`] times.
async fn run_migrations(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut tries = 1;
    loop {
        match run_migrations_once(pool).await {
            Err(e) if tries < MIGRATION_TRIES && is_deadlock(&e) => {
                tracing::warn!(
                    error = %e,
                    try_number = tries,
                    "a migration deadlocked with another writer and was rolled back; trying again"
                );
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100 * tries)).await;
            }
            result => return result,
        }
    }
}

/// How many times [`run_migrations`] tries a migration that deadlocked.
const MIGRATION_TRIES: u64 = 5;

/// Whether a migration failed on a deadlock (SQLSTATE 40P01).
fn is_deadlock(e: &sqlx::migrate::MigrateError) -> bool {
    use sqlx::migrate::MigrateError;
    match e {
        MigrateError::Execute(sqlx::Error::Database(db))
        | MigrateError::ExecuteMigration(sqlx::Error::Database(db), _) => {
            db.code().as_deref() == Some("40P01")
        }
        _ => false,
    }
}

/// One try of [`run_migrations`], on a connection of its own (closed
/// after, which also ends any advisory lock a failure left held).
async fn run_migrations_once(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    use sqlx::Connection;
    let target = current_schema();
    let mut conn = sqlx::PgConnection::connect_with(&pool.connect_options()).await?;
    let result = async {
        adopt_history(&mut conn).await?;
        conn.execute(super::statement::built(format!(
            "SET search_path TO {target}, pg_temp"
        )))
        .await?;
        migrator(&target).run_direct(None, &mut conn, false).await
    }
    .await;
    let _ = conn.close().await;
    result
}

/// Applies the migrations the database has not seen; opens nothing else.
pub(crate) async fn migrate(options: &Options) -> Result<Migrated, InboxError> {
    check_schema(&options.schema)?;
    let tables = std::sync::Arc::new(super::statement::Tables::new(&options.schema));
    super::statement::PG_TABLES
        .scope(tables, migrate_in(options))
        .await
}

async fn migrate_in(options: &Options) -> Result<Migrated, InboxError> {
    let pool = connect(options, 1).await?;
    if let Err(e) = refuse_keyword(&pool, &options.schema).await {
        if options.pool.is_none() {
            pool.close().await;
        }
        return Err(e);
    }
    let store = options.describe();
    let result = async {
        let before = match applied_version(&pool).await? {
            Some(version) => Some(version),
            None => earlier_release(&pool).await,
        };
        run_migrations(&pool).await?;
        let mut conn = pool.acquire().await?;
        rekey_suppressions(&mut conn, crate::clock::millis(jiff::Timestamp::now())).await?;
        drop(conn);
        Ok::<_, sqlx::migrate::MigrateError>(schema::migrated(&MIGRATOR, before))
    }
    .await;
    if options.pool.is_none() {
        pool.close().await;
    }
    result.map_err(|e| {
        InboxError::new(
            InboxErrorKind::Open,
            format!("could not migrate {store}: {e}"),
        )
        .with_source(e)
    })
}

/// What a PostgreSQL inbox is opened with.
#[derive(Clone)]
pub(crate) struct Options {
    pub url: String,
    pub pool_size: u32,
    pub statement_timeout: Duration,
    pub connect_timeout: Duration,
    pub opening: Opening,
    /// The application's pool, when the inbox opens on it rather than on
    /// connections of its own to `url` (then empty).
    pub pool: Option<PgPool>,
    /// The schema of the inbox's tables.
    pub schema: String,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("Options")
            .field("url", &redact(&self.url))
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("opening", &self.opening)
            .field("pool", &self.pool.as_ref().map(|_| "the application's"))
            .field("schema", &self.schema)
            .finish()
    }
}

/// `url` without its password.
pub(crate) fn redact(url: &str) -> String {
    // Without the parameters: sqlx would log an unknown one with its value.
    let url = url.split_once('?').map_or(url, |(address, _)| address);
    match url.parse::<PgConnectOptions>() {
        Ok(o) => format!(
            "postgres://{}@{}:{}/{}",
            o.get_username(),
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("")
        ),
        Err(_) => "postgres://(unreadable address)".to_owned(),
    }
}

impl Options {
    pub fn new(url: String) -> Options {
        Options {
            url,
            pool_size: 10,
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            opening: Opening::Migrate,
            pool: None,
            schema: DEFAULT_SCHEMA.to_owned(),
        }
    }

    /// The inbox on the application's `pool`.
    pub fn on_pool(pool: PgPool) -> Options {
        Options {
            pool: Some(pool),
            ..Options::new(String::new())
        }
    }

    /// The database, without a password, for messages.
    fn describe(&self) -> String {
        match &self.pool {
            Some(pool) => {
                let o = pool.connect_options();
                format!(
                    "postgres://{}@{}:{}/{} (the application's pool)",
                    o.get_username(),
                    o.get_host(),
                    o.get_port(),
                    o.get_database().unwrap_or("")
                )
            }
            None => redact(&self.url),
        }
    }
}

/// An open PostgreSQL inbox.
#[derive(Debug, Clone)]
pub(crate) struct Postgres {
    pool: PgPool,
    options: Options,
    tables: std::sync::Arc<super::statement::Tables>,
    /// Set by `close`: the pool may be the application's, which stays
    /// open, and the inbox's tasks stop on this.
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Postgres {
    pub async fn open(options: &Options) -> Result<Postgres, InboxError> {
        check_schema(&options.schema)?;
        let tables = std::sync::Arc::new(super::statement::Tables::new(&options.schema));
        super::statement::PG_TABLES
            .scope(tables.clone(), Postgres::open_in(options, tables))
            .await
    }

    /// The statements of this store.
    pub(crate) fn tables(&self) -> std::sync::Arc<super::statement::Tables> {
        self.tables.clone()
    }

    async fn open_in(
        options: &Options,
        tables: std::sync::Arc<super::statement::Tables>,
    ) -> Result<Postgres, InboxError> {
        let pool = connect(options, options.pool_size.max(2)).await?;
        let store = options.describe();
        refuse_keyword(&pool, &options.schema).await?;
        // A store this version has migrated whole needs no migrator (whose
        // `CREATE SCHEMA IF NOT EXISTS` alone needs a right on the
        // database that a role that only reads and writes rows lacks).
        // Only the inbox's own history counts here: a store whose history
        // is still in sqlx's default table needs the migrator to adopt it.
        let current = matches!(
            sqlx::query_scalar::<_, i64>(super::statement::dialect(true, schema::APPLIED))
                .fetch_all(&pool)
                .await,
            Ok(versions) if schema::effective(versions.iter().copied(), &MIGRATOR) == Some(schema::latest(&MIGRATOR))
        );
        match options.opening {
            Opening::Migrate => {
                // sqlx's migrator holds an advisory lock while it runs:
                // instances starting at once take turns.
                if !current {
                    run_migrations(&pool).await.map_err(|e| {
                        InboxError::new(
                            InboxErrorKind::Open,
                            format!("could not migrate {store}: {e}"),
                        )
                        .with_source(e)
                    })?;
                }
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(|e| InboxError::database(&format!("could not migrate {store}"), e))?;
                rekey_suppressions(&mut conn, crate::clock::millis(jiff::Timestamp::now()))
                    .await
                    .map_err(|e| InboxError::database(&format!("could not migrate {store}"), e))?;
                drop(conn);
            }
            Opening::Check | Opening::ReadOnly => {
                let applied = applied_version(&pool).await.map_err(|e| {
                    InboxError::new(
                        InboxErrorKind::Open,
                        format!("could not read the schema version of {store}: {e}"),
                    )
                    .with_source(e)
                })?;
                if applied.is_none() && earlier_release(&pool).await.is_some() {
                    return Err(InboxError::new(
                        InboxErrorKind::Open,
                        format!(
                            "{store} holds the inbox of an earlier release, its tables outside \
                             schema {}: migrate it first (the receiver's `migrate`, or \
                             InboxBuilder::migrate), which moves them there",
                            options.schema
                        ),
                    ));
                }
                schema::check(applied, &MIGRATOR, &store)?;
            }
        }
        if options.opening != Opening::ReadOnly {
            // Refuse to start on a store that cannot be written (a
            // read-only role, a replica) rather than answer 503 to
            // every webhook.
            sqlx::query(super::statement::dialect(
                true,
                "INSERT INTO cmc_inbox_opened (id, at, process) VALUES (1, @ts($1), $2) \
                 ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at, process = EXCLUDED.process",
            ))
            .bind(crate::clock::millis(jiff::Timestamp::now()))
            .bind(schema::process_name())
            .execute(&pool)
            .await
            .map_err(|e| {
                InboxError::new(
                    InboxErrorKind::Open,
                    format!("{store} cannot be written: {e}"),
                )
                .with_source(e)
            })?;
        }
        Ok(Postgres {
            pool,
            options: options.clone(),
            tables,
            closed: Default::default(),
        })
    }

    /// The database server's time in milliseconds, the moment of this
    /// process it was read at (the middle of the round trip), and the
    /// round trip's length. The connection is taken first, so that a wait
    /// for the pool is not counted.
    pub async fn server_time(&self) -> Result<(i64, std::time::Instant, Duration), InboxError> {
        let failed = |e| InboxError::database("could not read the database's clock", e);
        let mut conn = self.pool.acquire().await.map_err(failed)?;
        let before = std::time::Instant::now();
        let server: i64 =
            sqlx::query_scalar("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT")
                .fetch_one(&mut *conn)
                .await
                .map_err(failed)?;
        let round_trip = before.elapsed();
        Ok((server, before + round_trip / 2, round_trip))
    }

    /// Whether the pool was closed (the inbox closed).
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Relaxed) || self.pool.is_closed()
    }

    /// Calls `wake` on every `NOTIFY cmc_inbox` (and once after each
    /// reconnection, for what was stored meanwhile), until it returns
    /// `false` (the inbox is gone) or the pool is closed; a lost
    /// connection is made again (the workers poll meanwhile).
    ///
    /// The listening connection is one of its own, made with the pool's
    /// options, never one of the pool's: an application's pool given to
    /// the inbox keeps every connection it was built with.
    pub fn listen(&self, wake: impl Fn() -> bool + Send + 'static) {
        let options = (*self.pool.connect_options()).clone();
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if this.is_closed() {
                    return;
                }
                let own = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect_lazy_with(options.clone());
                let mut listener = match PgListener::connect_with(&own).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::debug!(error = %e, "the inbox could not listen for new rows; polling");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if listener.listen(CHANNEL).await.is_err() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                if !wake() {
                    return;
                }
                // Until the connection is lost (then: listen again).
                while let Ok(Some(_)) = listener.try_recv().await {
                    if this.is_closed() || !wake() {
                        return;
                    }
                }
            }
        });
    }

    /// Stores the arrivals in one transaction: one receipt each, or one
    /// error for all.
    ///
    /// Two instances storing the same events at once lock their rows in
    /// the order each received them, which can deadlock; PostgreSQL then
    /// aborts one transaction, which is tried again here (up to five
    /// times) rather than answered 503.
    pub async fn insert(&self, arrivals: &[&Arrival]) -> Result<Vec<Receipt>, InboxError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.insert_once(arrivals).await {
                Err(e) if tries < 5 && is_conflict(&e) => {
                    tracing::debug!(error = %e, tries, "storing met a deadlock; trying again");
                    tokio::time::sleep(Duration::from_millis(5 * tries)).await;
                }
                result => return result,
            }
        }
    }

    async fn insert_once(&self, arrivals: &[&Arrival]) -> Result<Vec<Receipt>, InboxError> {
        let failed = |e: sqlx::Error| InboxError::database("could not store the webhook", e);
        let mut tx = self.pool.begin().await.map_err(failed)?;
        let mut receipts = vec![Receipt::default(); arrivals.len()];
        let raw_ids = raw_sql::insert_requests(&mut tx, arrivals)
            .await
            .map_err(failed)?;
        insert_events(&mut tx, arrivals, &raw_ids, &mut receipts)
            .await
            .map_err(failed)?;
        for ((arrival, receipt), raw_id) in arrivals.iter().zip(&mut receipts).zip(&raw_ids) {
            let Some(m) = &arrival.mail else { continue };
            // JSON with `\u0000`, which jsonb refuses: kept exact apart.
            let (json, exact) = pg_json(&m.json);
            let row = sqlx::query(super::statement::dialect(
                true,
                "INSERT INTO cmc_mails (idempotency_key, message_id, envelope_from, \
                 envelope_to, subject, filter, server_composition, client, received_at, \
                 attachments, size, mail, run_at, raw_request_id, mail_exact, source) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, @ts($9), $10, $11, @jsonb($12), \
                 @ts($9), $13, $14, $15) \
                 ON CONFLICT (idempotency_key) DO UPDATE SET repeats = cmc_mails.repeats + 1 \
                 RETURNING id, (xmax = 0) AS inserted",
            ))
            .bind(&m.key)
            .bind(pg_opt(&m.message_id))
            .bind(pg_text(&m.envelope_from))
            .bind(pg_text(&m.envelope_to))
            .bind(pg_text(&m.subject))
            .bind(pg_text(&m.filter))
            .bind(pg_text(&arrival.server_composition))
            .bind(&arrival.client)
            .bind(arrival.received_at)
            .bind(m.attachments.len() as i64)
            .bind(m.size)
            .bind(json.as_ref())
            .bind(raw_id)
            .bind(exact)
            .bind(pg_text(&arrival.source))
            .fetch_one(&mut *tx)
            .await
            .map_err(failed)?;
            let (id, inserted): (i64, bool) = (
                row.try_get(0).map_err(failed)?,
                row.try_get(1).map_err(failed)?,
            );
            if let (crate::rows::RawRef::Keep(raw), Some(raw_id)) = (&arrival.raw, raw_id)
                && raw.refers_to_attachments()
            {
                raw_sql::set_mail(&mut tx, *raw_id, id)
                    .await
                    .map_err(failed)?;
            }
            if inserted {
                for (position, data) in m.stored_apart() {
                    for (start, chunk) in chunks(data) {
                        sqlx::query(super::statement::dialect(
                            true,
                            "INSERT INTO cmc_mail_attachments (mail_id, position, start, data) \
                             VALUES ($1, $2, $3, $4)",
                        ))
                        .bind(id)
                        .bind(position)
                        .bind(start as i64)
                        .bind(chunk)
                        .execute(&mut *tx)
                        .await
                        .map_err(failed)?;
                    }
                }
                receipt.stored += 1;
            } else {
                receipt.repeated += 1;
            }
        }
        if receipts.iter().any(|r| r.stored > 0) {
            notify(&mut tx).await.map_err(failed)?;
        }
        tx.commit().await.map_err(failed)?;
        Ok(receipts)
    }

    /// The attachments of mail `id`, each assembled from its chunks.
    pub async fn attachments(&self, id: i64) -> Result<Vec<Vec<u8>>, InboxError> {
        let failed = |e: sqlx::Error| InboxError::database("could not read the attachments", e);
        let sizes: Vec<(i64, i64)> = sqlx::query_as(super::statement::dialect(
            true,
            "SELECT position, SUM(length(data))::BIGINT FROM cmc_mail_attachments \
             WHERE mail_id = $1 AND position >= 0 GROUP BY position ORDER BY position",
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(failed)?;
        let corrupt = |why: String| InboxError::new(InboxErrorKind::Corrupt, why);
        let mut assembly = Assembly::new(id, &sizes).map_err(corrupt)?;
        // One chunk at a time (each its own query: a cursor would hold a
        // transaction open for the whole read).
        for position in 0..assembly.count() as i64 {
            let starts: Vec<i64> = sqlx::query_scalar(super::statement::dialect(
                true,
                "SELECT start FROM cmc_mail_attachments WHERE mail_id = $1 AND position = $2 \
                 ORDER BY start",
            ))
            .bind(id)
            .bind(position)
            .fetch_all(&self.pool)
            .await
            .map_err(failed)?;
            for start in starts {
                let data: Vec<u8> = sqlx::query_scalar(super::statement::dialect(
                    true,
                    "SELECT data FROM cmc_mail_attachments \
                     WHERE mail_id = $1 AND position = $2 AND start = $3",
                ))
                .bind(id)
                .bind(position)
                .bind(start)
                .fetch_one(&self.pool)
                .await
                .map_err(failed)?;
                assembly.push(position, start, &data).map_err(corrupt)?;
            }
        }
        Ok(assembly.finish())
    }

    /// One slice of the unrouted mails' retention.
    pub async fn prune_unrouted(&self, before: i64) -> Result<u64, InboxError> {
        let failed = |e| InboxError::database("could not prune the unrouted mails", e);
        let mut conn = self.pool.acquire().await.map_err(failed)?;
        mailbox_sql::prune_unrouted(&mut conn, before)
            .await
            .map_err(failed)
    }

    /// Runs `body` in a transaction and commits it; the rows it updates
    /// are locked by its own statements (`FOR UPDATE`, `SKIP LOCKED`).
    /// `doing` says what failed.
    pub(crate) async fn writing<T>(
        &self,
        doing: &str,
        body: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, InboxError>,
    ) -> Result<T, InboxError> {
        let failed = |e| InboxError::database(doing, e);
        let mut tx = self.pool.begin().await.map_err(failed)?;
        let out = body(&mut tx).await?;
        tx.commit().await.map_err(failed)?;
        Ok(out)
    }

    /// [`writing`](Self::writing) for a write that must not hold a
    /// connection long (the targets' states): its statements wait at most
    /// `limit` for a lock, and run at most `limit` each (`SET LOCAL`: for
    /// this transaction only).
    pub(crate) async fn writing_within<T>(
        &self,
        doing: &str,
        limit: std::time::Duration,
        body: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, InboxError>,
    ) -> Result<T, InboxError> {
        let failed = |e| InboxError::database(doing, e);
        let mut tx = self.pool.begin().await.map_err(failed)?;
        let ms = limit.as_millis().max(1);
        for setting in ["lock_timeout", "statement_timeout"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("SET LOCAL {setting} = {ms}")))
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        let out = body(&mut tx).await?;
        tx.commit().await.map_err(failed)?;
        Ok(out)
    }

    /// The pool the shared reads (`reads.rs`) use, outside any write
    /// transaction.
    pub(crate) fn reads(&self) -> &sqlx::Pool<sqlx::Postgres> {
        &self.pool
    }

    pub async fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if self.options.pool.is_none() {
            self.pool.close().await;
        }
    }

    /// The address, without its password.
    pub fn describe(&self) -> String {
        self.options.describe()
    }
}

/// Inserts the events of all `arrivals` with one statement per 1 000
/// distinct keys (`UNNEST` of arrays), in order of arrival, and counts each
/// in its arrival's receipt.
///
/// PostgreSQL refuses an `ON CONFLICT DO UPDATE` that meets the same row
/// twice in one statement, so repeats within the group are folded first:
/// each distinct key is inserted once, carrying how many more times it
/// came; `xmax = 0` tells a new row from an existing one.
async fn insert_events(
    tx: &mut sqlx::PgConnection,
    arrivals: &[&Arrival],
    raw_ids: &[Option<i64>],
    receipts: &mut [Receipt],
) -> Result<(), sqlx::Error> {
    let mut first: HashMap<&str, (usize, &NewEvent, i64)> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    let mut occurrences: Vec<(usize, &str)> = Vec::new();
    for (i, a) in arrivals.iter().enumerate() {
        for e in &a.events {
            occurrences.push((i, &e.key));
            match first.get_mut(e.key.as_str()) {
                Some(entry) => entry.2 += 1,
                None => {
                    first.insert(&e.key, (i, e, 0));
                    order.push(&e.key);
                }
            }
        }
    }
    let mut inserted: HashMap<String, bool> = HashMap::with_capacity(order.len());
    for chunk in order.chunks(1000) {
        let mut cols: [Vec<Option<String>>; 7] = Default::default();
        let (mut received, mut dups, mut clients): (Vec<i64>, Vec<i64>, Vec<Option<String>>) =
            (Vec::new(), Vec::new(), Vec::new());
        let mut raws: Vec<Option<i64>> = Vec::new();
        let mut exact: Vec<Option<String>> = Vec::new();
        let mut compositions: Vec<String> = Vec::new();
        let mut sources: Vec<String> = Vec::new();
        for key in chunk {
            let (i, e, extra) = first[key];
            let a = arrivals[i];
            cols[0].push(Some(e.key.clone()));
            cols[1].push(Some(pg_text(&e.event_type).into_owned()));
            cols[2].push(pg_opt(&e.message_id));
            cols[3].push(pg_opt(&e.recipient));
            cols[4].push(pg_opt(&e.status));
            cols[5].push(pg_opt(&e.created));
            // JSON with `\u0000`, which jsonb refuses: kept exact apart.
            let (json, kept) = pg_json(&e.json);
            cols[6].push(Some(json.into_owned()));
            exact.push(kept.map(str::to_owned));
            compositions.push(pg_text(&a.server_composition).into_owned());
            sources.push(pg_text(&a.source).into_owned());
            clients.push(a.client.clone());
            received.push(a.received_at);
            dups.push(extra);
            raws.push(raw_ids[i]);
        }
        let rows = sqlx::query(super::statement::dialect(
            true,
            "INSERT INTO cmc_events (idempotency_key, event_type, message_id, recipient, \
             status, created, event, server_composition, client, received_at, run_at, repeats, \
             raw_request_id, event_exact, source) \
             SELECT k, t, m, r, s, c, @jsonb(e), sc, cl, @ts(ra), @ts(ra), d, rr, ex, so \
             FROM UNNEST($1::TEXT[], $2::TEXT[], \
             $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], \
             $9::TEXT[], $10::BIGINT[], $11::BIGINT[], $12::BIGINT[], $13::TEXT[], $14::TEXT[]) \
             AS u(k, t, m, r, s, c, e, sc, cl, ra, d, rr, ex, so) \
             ON CONFLICT (idempotency_key) \
             DO UPDATE SET repeats = cmc_events.repeats + 1 + EXCLUDED.repeats \
             RETURNING idempotency_key, (xmax = 0) AS inserted, id",
        ))
        .bind(&cols[0])
        .bind(&cols[1])
        .bind(&cols[2])
        .bind(&cols[3])
        .bind(&cols[4])
        .bind(&cols[5])
        .bind(&cols[6])
        .bind(&compositions)
        .bind(&clients)
        .bind(&received)
        .bind(&dups)
        .bind(&raws)
        .bind(&exact)
        .bind(&sources)
        .fetch_all(&mut *tx)
        .await?;
        for row in rows {
            let (key, new, id): (String, bool, i64) =
                (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            // A long subject goes apart, once, with the row that is new.
            if let Some(subject) = first[key.as_str()].1.subject.as_ref().filter(|_| new) {
                for (start, chunk) in chunks(subject) {
                    sqlx::query(super::statement::dialect(
                        true,
                        "INSERT INTO cmc_event_texts (event_id, field, start, data) \
                         VALUES ($1, 'subject', $2, $3)",
                    ))
                    .bind(id)
                    .bind(start as i64)
                    .bind(chunk)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            inserted.insert(key, new);
        }
    }
    // In order of arrival: a new key's first occurrence is stored, every
    // other occurrence repeated.
    let mut seen: HashMap<&str, ()> = HashMap::with_capacity(order.len());
    for (i, key) in occurrences {
        let new = inserted
            .get(key)
            .copied()
            .ok_or_else(|| sqlx::Error::Protocol("an inserted event was not returned".into()))?;
        if new && seen.insert(key, ()).is_none() {
            receipts[i].stored += 1;
        } else {
            receipts[i].repeated += 1;
        }
    }
    Ok(())
}

pub(crate) use super::statement::{pg_json, pg_text};

fn pg_opt(text: &Option<String>) -> Option<String> {
    text.as_deref().map(|t| pg_text(t).into_owned())
}

/// Whether `e` is a deadlock or a serialization failure: the transaction
/// was aborted and may be tried again.
fn is_conflict(e: &InboxError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(sqlx::Error::Database(db)) = s.downcast_ref::<sqlx::Error>() {
            return matches!(db.code().as_deref(), Some("40P01" | "40001"));
        }
        source = s.source();
    }
    false
}

/// Wakes the workers listening on [`CHANNEL`] once `tx` commits.
pub(crate) async fn notify(tx: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(&mut *tx)
        .await
        .map(|_| ())
}

/// The parameters sqlx reads from a PostgreSQL address.
const PARAMETERS: [&str; 19] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
    "options[",
];

/// Refuses an address with a parameter sqlx does not know, naming the
/// parameter but never its value: sqlx would ignore it and log it with
/// its value (a misspelt `pasword=` would put the password in the logs).
fn check_parameters(url: &str) -> Result<(), InboxError> {
    let Some((_, query)) = url.split_once('?') else {
        return Ok(());
    };
    for (key, _) in form_urlencoded::parse(query.as_bytes()) {
        let known = PARAMETERS
            .iter()
            .any(|p| *p == key || (p.ends_with('[') && key.starts_with(p) && key.ends_with(']')));
        if !known {
            return Err(InboxError::new(
                InboxErrorKind::Config,
                format!(
                    "{} has a parameter this inbox does not know: {:?} (its value is not \
                     shown); known: {}",
                    redact(url),
                    cmc_webhook_core::printable(&key, 64),
                    PARAMETERS[..18].join(", ")
                ),
            ));
        }
    }
    Ok(())
}

// The round on the job tables, in this database's dialect.
super::jobs::statements! {
    db: sqlx::Postgres,
    pg: true,
    skip: " FOR UPDATE SKIP LOCKED",
    ids: std::convert::identity::<Vec<i64>>,
    in_ids: |p: &str| format!("= ANY({p})"),
    not_in_ids: |p: &str| format!("<> ALL({p})"),
    // A handler's error text may hold U+0000 too.
    text: pg_text,
}

use suppression_sql::keep as keep_suppression;

#[cfg(test)]
mod tables {
    use super::check_schema;
    use crate::store::statement::qualify;

    #[test]
    fn the_tables_are_named_with_the_schema_and_nothing_else_is() {
        assert_eq!(
            qualify(
                "inbox",
                "INSERT INTO cmc_mails (a) VALUES (?1) ON CONFLICT (k) DO UPDATE SET \
                 repeats = cmc_mails.repeats + 1 RETURNING id, 'cmc_list', x.cmc_y"
            ),
            "INSERT INTO inbox.cmc_mails (a) VALUES ($1) ON CONFLICT (k) DO UPDATE SET \
             repeats = cmc_mails.repeats + 1 RETURNING id, 'cmc_list', x.cmc_y"
        );
        assert_eq!(
            qualify(
                "s",
                "SELECT 1 FROM cmc_events e JOIN cmc_event_texts t ON t.event_id = e.id"
            ),
            "SELECT 1 FROM s.cmc_events e JOIN s.cmc_event_texts t ON t.event_id = e.id"
        );
        assert_eq!(qualify("s", "cmc_a,cmc_b"), "s.cmc_a,s.cmc_b");
        assert_eq!(qualify("s", "my_cmc_a \"cmc_b\""), "my_cmc_a \"cmc_b\"");
    }

    #[test]
    fn only_plain_identifiers_are_schemas() {
        for good in ["cmc_webhook", "public", "_x", "a1"] {
            check_schema(good).unwrap();
        }
        for bad in [
            "",
            "A",
            "1a",
            "a-b",
            "a b",
            "a;b",
            "pg_x",
            "information_schema",
            "é",
        ] {
            check_schema(bad).unwrap_err();
        }
        check_schema(&"a".repeat(64)).unwrap_err();
    }
}

#[cfg(test)]
mod migrations {
    #[tokio::test]
    async fn the_compiled_in_migrations_are_the_directory_s() {
        crate::schema::same_as_directory(&super::MIGRATOR, "postgres").await;
    }
}
