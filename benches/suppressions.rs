//! The suppression list's reads: `Suppressions::check` of one address,
//! present and absent, and `check_many` of 10 000 addresses (half present,
//! half absent), on a list of 1 000 000 rows with a warm cache.
//!
//! The rows are written with plain SQL straight into `cmc_suppressions`
//! after `Inbox::open` ran the migrations, once per run and backend: a
//! third counts only (no reason, one soft bounce), a third `hard` (until
//! 89 days ahead) and a third `soft` (until 6 days ahead, five bounces).
//! The SQLite file (210 MiB) lives in a temporary folder under the target
//! folder for the whole run, and is removed at its end.
//!
//! On PostgreSQL (feature `postgres`, a server in `CMC_POSTGRES_URL`): the
//! same on a fresh database, analysed after the load (as autovacuum would).
//!
//! Run: `cargo bench --features sqlite --bench suppressions`, or
//! `scripts/with-postgres.sh cargo bench --features sqlite,postgres --bench suppressions`

use std::cell::OnceCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cmc_webhook::inbox::Inbox;
use criterion::{BenchmarkId, Criterion, Throughput};

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod postgres_db;
use tokio::runtime::Runtime;

/// Rows on the list.
const ROWS: u32 = 1_000_000;
/// Addresses in one bulk check.
const BULK: u32 = 10_000;

/// The address of row `i` (0 ≤ i < `ROWS`), as the list holds it.
fn present(i: u32) -> String {
    format!("user{i:06}@example.jp")
}

/// An address the list does not hold, next to row `i`'s in the order of
/// addresses.
fn absent(i: u32) -> String {
    format!("user{i:06}@example.com")
}

/// Row 123 457 is suppressed (`hard`): every third row from 1.
const ONE_PRESENT: u32 = 123_457;

/// The bulk check: present and absent addresses in turn, both spread over
/// the whole list.
fn bulk() -> Vec<String> {
    let step = ROWS / (BULK / 2);
    (0..BULK / 2)
        .flat_map(|k| [present(k * step + k % 7), absent(k * step + step / 2)])
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Soft bounce times, as the rows' JSON column: `n` in the last hours.
fn soft_times(now: i64, n: i64) -> String {
    let times: Vec<String> = (1..=n).map(|h| (now - h * 3_600_000).to_string()).collect();
    format!("[{}]", times.join(","))
}

/// The load of the SQLite list: `?1` now, `?2` one soft bounce, `?3` five,
/// `?4` the last row's number.
const SQLITE_LOAD: &str = "INSERT INTO cmc_suppressions (recipient, reason, since, until, \
     note, events, hard_count, soft_times, unknown_count, updated_at) \
     WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ?4) \
     SELECT printf('user%06d@example.jp', i), \
       CASE i % 3 WHEN 0 THEN NULL WHEN 1 THEN 'hard' ELSE 'soft' END, \
       CASE i % 3 WHEN 0 THEN NULL ELSE ?1 - 86400000 END, \
       CASE i % 3 WHEN 0 THEN NULL WHEN 1 THEN ?1 + 89 * 86400000 ELSE ?1 + 6 * 86400000 END, \
       NULL, \
       CASE i % 3 WHEN 0 THEN '[]' WHEN 1 THEN printf('[\"%032x\"]', i) \
         ELSE printf('[\"%031x1\",\"%031x2\",\"%031x3\",\"%031x4\",\"%031x5\"]', i, i, i, i, i) END, \
       CASE i % 3 WHEN 1 THEN 1 ELSE 0 END, \
       CASE i % 3 WHEN 0 THEN ?2 WHEN 1 THEN '[]' ELSE ?3 END, \
       0, ?1 \
     FROM n";

/// The same for PostgreSQL.
#[cfg(feature = "postgres")]
const POSTGRES_LOAD: &str = "INSERT INTO cmc_suppressions (recipient, reason, since, until, \
     note, events, hard_count, soft_times, unknown_count, updated_at) \
     SELECT 'user' || lpad(i::text, 6, '0') || '@example.jp', \
       CASE i % 3 WHEN 0 THEN NULL WHEN 1 THEN 'hard' ELSE 'soft' END, \
       CASE i % 3 WHEN 0 THEN NULL ELSE (TIMESTAMPTZ 'epoch' + INTERVAL '1 millisecond' * ($1 - 86400000)) END, \
       CASE i % 3 WHEN 0 THEN NULL WHEN 1 THEN (TIMESTAMPTZ 'epoch' + INTERVAL '1 millisecond' * ($1 + 89 * 86400000::bigint)) ELSE (TIMESTAMPTZ 'epoch' + INTERVAL '1 millisecond' * ($1 + 6 * 86400000::bigint)) END, \
       NULL, \
       (CASE i % 3 WHEN 0 THEN '[]' WHEN 1 THEN '[\"' || lpad(to_hex(i), 32, '0') || '\"]' \
         ELSE format('[\"%1$s1\",\"%1$s2\",\"%1$s3\",\"%1$s4\",\"%1$s5\"]', lpad(to_hex(i), 31, '0')) END)::jsonb, \
       CASE i % 3 WHEN 1 THEN 1 ELSE 0 END, \
       (CASE i % 3 WHEN 0 THEN $2 WHEN 1 THEN '[]' ELSE $3 END)::jsonb, \
       0, (TIMESTAMPTZ 'epoch' + INTERVAL '1 millisecond' * ($1)) \
     FROM generate_series(0, $4) AS i";

/// A loaded list, and what to remove after the run.
struct Loaded {
    inbox: Inbox,
    _dir: Option<tempfile::TempDir>,
    /// The server and the database made for the run.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    database: Option<(String, String)>,
}

/// A SQLite inbox holding `ROWS` rows on its list.
async fn sqlite() -> Loaded {
    use sqlx::{Connection, Executor};
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("suppressions.sqlite3");
    let inbox = Inbox::sqlite(&path).open().await.expect("the inbox opens");
    let now = now_ms();
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(SQLITE_LOAD)
        .bind(now)
        .bind(soft_times(now, 1))
        .bind(soft_times(now, 5))
        .bind(i64::from(ROWS) - 1)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Into the file, as the WAL's checkpoints would have put it.
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        .await
        .unwrap();
    check_loaded(&inbox).await;
    conn.close().await.unwrap();
    eprintln!(
        "suppressions: {ROWS} rows written to SQLite in {:.1} s ({} MiB)",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&path).unwrap().len() >> 20
    );
    Loaded {
        inbox,
        _dir: Some(dir),
        database: None,
    }
}

/// A PostgreSQL inbox on a fresh database of the server at `admin`,
/// holding `ROWS` rows on its list.
#[cfg(feature = "postgres")]
async fn postgres(admin: &str) -> Loaded {
    use sqlx::{Connection, Executor};
    let started = std::time::Instant::now();
    let name = "bench_suppressions";
    let url = postgres_db::fresh_database(admin, name).await;
    let inbox = Inbox::open(&url).await.expect("the inbox opens");
    let now = now_ms();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    // The inbox's tables are in its schema.
    sqlx::Executor::execute(&mut conn, "SET search_path TO cmc_webhook")
        .await
        .unwrap();
    sqlx::query(POSTGRES_LOAD)
        .bind(now)
        .bind(soft_times(now, 1))
        .bind(soft_times(now, 5))
        .bind(i64::from(ROWS) - 1)
        .execute(&mut conn)
        .await
        .unwrap();
    // The statistics and visibility map autovacuum would have made.
    conn.execute("VACUUM ANALYZE cmc_suppressions")
        .await
        .unwrap();
    conn.close().await.unwrap();
    check_loaded(&inbox).await;
    eprintln!(
        "suppressions: {ROWS} rows written to PostgreSQL in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Loaded {
        inbox,
        _dir: None,
        database: Some((admin.to_owned(), name.to_owned())),
    }
}

/// The list reads back as written, once a worker has kept it (as the
/// receiver's does: a list no worker keeps refuses checks).
async fn check_loaded(inbox: &Inbox) {
    inbox
        .worker(|_job| async { Ok::<(), String>(()) })
        .spawn()
        .shutdown(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let list = inbox.suppressions();
    let one = list.check(&present(ONE_PRESENT)).await.unwrap();
    assert!(one.suppressed, "{one:?}");
    assert_eq!(one.reason.map(|r| r.to_string()).as_deref(), Some("hard"));
    assert!(!list.check(&absent(ONE_PRESENT)).await.unwrap().suppressed);
    // Row 999 999 counts a soft bounce only.
    assert!(!list.check(&present(ROWS - 1)).await.unwrap().suppressed);
    let checks = list.check_many(bulk()).await.unwrap();
    assert_eq!(checks.len(), BULK as usize);
    let suppressed = checks.iter().filter(|c| c.suppressed).count();
    // Two present rows in three suppress; no absent one does.
    assert!(
        (3_000..3_700).contains(&suppressed),
        "{suppressed} suppressed"
    );
}

/// The inboxes, loaded on first use: a filter that leaves a backend out
/// never loads it.
struct Places {
    runtime: Runtime,
    sqlite: OnceCell<Loaded>,
    #[cfg(feature = "postgres")]
    postgres: OnceCell<Loaded>,
}

impl Places {
    fn sqlite(&self) -> &Inbox {
        &self
            .sqlite
            .get_or_init(|| self.runtime.block_on(sqlite()))
            .inbox
    }

    /// The PostgreSQL inbox (only called when [`backends`] lists it).
    #[cfg(feature = "postgres")]
    fn postgres(&self) -> &Inbox {
        &self
            .postgres
            .get_or_init(|| {
                let url = std::env::var("CMC_POSTGRES_URL").unwrap();
                self.runtime.block_on(postgres(&url))
            })
            .inbox
    }

    fn inbox(&self, backend: &str) -> &Inbox {
        match backend {
            #[cfg(feature = "postgres")]
            "postgres" => self.postgres(),
            _ => self.sqlite(),
        }
    }

    /// Closes the inboxes and drops the PostgreSQL database.
    fn finish(self) {
        self.runtime.block_on(async {
            if let Some(l) = self.sqlite.get() {
                l.inbox.close().await;
            }
            #[cfg(feature = "postgres")]
            if let Some(l) = self.postgres.get() {
                use sqlx::{Connection, Executor};
                l.inbox.close().await;
                let (admin, name) = l.database.as_ref().unwrap();
                let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name}"
                )))
                .await
                .unwrap();
            }
        });
    }
}

/// `check` of one address, present (suppressed) and absent.
fn check(c: &mut Criterion, places: &Places, backends: &[&'static str]) {
    let mut group = c.benchmark_group("check");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    for &backend in backends {
        for (which, address) in [
            ("present", present(ONE_PRESENT)),
            ("absent", absent(ONE_PRESENT)),
        ] {
            group.bench_function(BenchmarkId::new(backend, which), |b| {
                let list = places.inbox(backend).suppressions();
                b.iter(|| places.runtime.block_on(list.check(&address)).unwrap())
            });
        }
    }
    group.finish();
}

/// `check_many` of `BULK` addresses, half present and half absent.
fn check_many(c: &mut Criterion, places: &Places, backends: &[&'static str]) {
    let mut group = c.benchmark_group("check_many");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(u64::from(BULK)));
    let addresses = bulk();
    for &backend in backends {
        group.bench_function(BenchmarkId::new(backend, BULK), |b| {
            let list = places.inbox(backend).suppressions();
            b.iter(|| {
                places
                    .runtime
                    .block_on(list.check_many(&addresses))
                    .unwrap()
            })
        });
    }
    group.finish();
}

/// SQLite, and PostgreSQL when a server is given (or one line saying why
/// not).
fn backends() -> Vec<&'static str> {
    let url = std::env::var_os("CMC_POSTGRES_URL");
    let why = match (cfg!(feature = "postgres"), url.is_some()) {
        (true, true) => return vec!["sqlite", "postgres"],
        (true, false) => "CMC_POSTGRES_URL is not set",
        (false, true) => "built without the feature `postgres`",
        (false, false) => "CMC_POSTGRES_URL is not set (and built without the feature `postgres`)",
    };
    eprintln!("suppressions on PostgreSQL: skipped, {why}");
    vec!["sqlite"]
}

fn main() {
    let places = Places {
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
        sqlite: OnceCell::new(),
        #[cfg(feature = "postgres")]
        postgres: OnceCell::new(),
    };
    let backends = backends();
    let mut c = Criterion::default().configure_from_args();
    check(&mut c, &places, &backends);
    check_many(&mut c, &places, &backends);
    places.finish();
    c.final_summary();
}
