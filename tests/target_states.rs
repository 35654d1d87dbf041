//! The handler targets' states (`Inbox::set_target_state`,
//! `Inbox::target_states`, their pruning) on a real SQLite file and, with
//! a server (`scripts/with-postgres.sh`), a real PostgreSQL database: in
//! the default schema, and on an application's pool in a schema of its
//! choosing.

mod common;

use std::time::Duration;

use cmc_webhook::inbox::targets::{TargetCondition, TargetState, MAX_TARGET, MAX_WRITER};
use cmc_webhook::inbox::{Inbox, InboxErrorKind};
use jiff::{SignedDuration, Timestamp};

const TARGET: &str = "https://app.example.jp/cmc-webhooks";

/// Now, in whole milliseconds (as the store keeps times).
fn base() -> Timestamp {
    Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap()
}

fn paused(writer: &str, changed_at: Timestamp, pause: SignedDuration) -> TargetState {
    let mut s = TargetState::new(TARGET, writer, TargetCondition::Paused, changed_at);
    s.failures = 10;
    s.pauses = 3;
    s.until = Some(changed_at + pause);
    s
}

async fn check_store(inbox: &Inbox, url: &str) {
    assert_eq!(inbox.target_states().await.unwrap(), vec![], "{url}");
    let t = base();
    let at = |ms: i64| t + SignedDuration::from_millis(ms);

    // Two processes relaying to one target: a row each.
    let t0 = at(0);
    let web1 = paused("web-1 pid 10", t0, SignedDuration::from_secs(30));
    let mut web2 = TargetState::new(TARGET, "web-2 pid 20", TargetCondition::Probing, t0);
    web2.failures = 4;
    web2.until = Some(t0 + SignedDuration::from_secs(35));
    inbox.set_target_state(&web2).await.unwrap();
    inbox.set_target_state(&web1).await.unwrap();
    let read = inbox.target_states().await.unwrap();
    assert_eq!(read, vec![web1.clone(), web2.clone()], "{url}");
    assert!(read.iter().all(|s| s.is_current(Timestamp::now())), "{url}");

    // A newer change replaces the writer's row; an older one is ignored
    // (two writes crossing on their way to the store).
    let mut closed = TargetState::new(TARGET, "web-1 pid 10", TargetCondition::Closed, at(5));
    closed.pauses = 3;
    inbox.set_target_state(&closed).await.unwrap();
    let stale = paused("web-1 pid 10", at(1), SignedDuration::from_secs(30));
    inbox.set_target_state(&stale).await.unwrap();
    let read = inbox.target_states().await.unwrap();
    assert_eq!(read, vec![closed.clone(), web2.clone()], "{url}");

    // A pause whose end is past (its writer stopped): not current.
    let dead = paused("web-3 pid 30", at(-60_000), SignedDuration::from_secs(30));
    inbox.set_target_state(&dead).await.unwrap();
    let read = inbox.target_states().await.unwrap();
    let found = read.iter().find(|s| s.writer == "web-3 pid 30").unwrap();
    assert_eq!(found, &dead, "{url}");
    assert!(!found.is_current(Timestamp::now()), "{url}");

    // What cannot be stored is refused with a clear error, and the store
    // goes on.
    let long = "h".repeat(MAX_TARGET + 1);
    let writer_long = "w".repeat(MAX_WRITER + 1);
    for (target, writer, says) in [
        ("", "web-1", "target is empty"),
        ("  ", "web-1", "target is empty"),
        (TARGET, "", "writer is empty"),
        (long.as_str(), "web-1", "at most 1000"),
        (TARGET, writer_long.as_str(), "at most 200"),
        ("https://a.example.jp/\0", "web-1", "control character"),
        (TARGET, "web-1\r\nX-Forged: 1", "control character"),
    ] {
        let bad = TargetState::new(target, writer, TargetCondition::Paused, at(0));
        let e = inbox.set_target_state(&bad).await.unwrap_err();
        assert_eq!(e.kind(), InboxErrorKind::Invalid, "{url}: {e}");
        assert!(e.to_string().contains(says), "{url}: {e}");
    }
    // At the limits, and in any script: stored as given.
    let mut edge = TargetState::new(
        format!("https://{}/", "宛".repeat((MAX_TARGET - 9) / 3)),
        "w".repeat(MAX_WRITER),
        TargetCondition::Closed,
        at(0),
    );
    edge.failures = u64::MAX; // stored as the largest the column holds
    inbox.set_target_state(&edge).await.unwrap();
    let read = inbox.target_states().await.unwrap();
    let found = read.iter().find(|s| s.writer == edge.writer).unwrap();
    assert_eq!(found.target, edge.target, "{url}");
    assert_eq!(found.failures, i64::MAX as u64, "{url}");

    // Rows unchanged for longer than the retention go, by themselves or
    // with the rest of `prune`.
    let old = paused(
        "web-4 pid 40",
        at(-3 * 86_400_000),
        SignedDuration::from_secs(30),
    );
    inbox.set_target_state(&old).await.unwrap();
    let before = inbox.target_states().await.unwrap().len();
    assert_eq!(
        inbox
            .prune_target_states(Duration::from_secs(86_400))
            .await
            .unwrap(),
        1,
        "{url}"
    );
    assert_eq!(inbox.target_states().await.unwrap().len(), before - 1);
    inbox.set_target_state(&old).await.unwrap();
    let pruned = inbox.prune(Duration::from_secs(86_400)).await.unwrap();
    assert_eq!(pruned.target_states, 1, "{url}");
    assert!(inbox
        .target_states()
        .await
        .unwrap()
        .iter()
        .all(|s| s.writer != "web-4 pid 40"));

    // A row unchanged for longer than the retention but not past its end
    // stays: a target paused for longer than a short --retain, a closed
    // state whose lease its writer keeps renewing. Past its end, it goes.
    let now = inbox.now();
    let long_ago = at(-3 * 86_400_000);
    let mut still_paused = paused("web-5 pid 50", long_ago, SignedDuration::from_secs(30));
    still_paused.until = Some(now + SignedDuration::from_secs(3600));
    let mut leased = TargetState::new(TARGET, "web-6 pid 60", TargetCondition::Closed, long_ago);
    leased.until = Some(now + SignedDuration::from_secs(600));
    let mut lapsed = leased.clone();
    lapsed.writer = "web-7 pid 70".to_owned();
    lapsed.until = Some(now - SignedDuration::from_secs(1));
    inbox
        .set_target_states(&[still_paused.clone(), leased.clone(), lapsed.clone()])
        .await
        .unwrap();
    assert_eq!(
        inbox
            .prune_target_states(Duration::from_secs(86_400))
            .await
            .unwrap(),
        1,
        "{url}"
    );
    let writers: Vec<String> = inbox
        .target_states()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.writer)
        .collect();
    assert!(writers.contains(&still_paused.writer), "{url} {writers:?}");
    assert!(writers.contains(&leased.writer), "{url} {writers:?}");
    assert!(!writers.contains(&lapsed.writer), "{url} {writers:?}");
    // A closed state past its lease is not current (its writer stopped).
    assert!(leased.is_current(now));
    assert!(!lapsed.is_current(now));

    // A writer that stops removes its rows, and only its own.
    let others = inbox.target_states().await.unwrap().len();
    let mut other_target = leased.clone();
    other_target.target = "https://other.example.jp/hooks".to_owned();
    inbox.set_target_state(&other_target).await.unwrap();
    assert_eq!(inbox.remove_target_states("web-6 pid 60").await.unwrap(), 2);
    assert_eq!(inbox.target_states().await.unwrap().len(), others - 1);
    assert_eq!(inbox.remove_target_states("web-6 pid 60").await.unwrap(), 0);

    // A batch with one invalid state is refused whole, and writes nothing.
    let mut bad = leased.clone();
    bad.target = "x".repeat(MAX_TARGET + 1);
    let e = inbox
        .set_target_states(&[leased.clone(), bad])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), InboxErrorKind::Invalid, "{url}");
    assert_eq!(inbox.target_states().await.unwrap().len(), others - 1);
}

/// A write of target states on a locked table gives up within its limit
/// (about 2 s) instead of holding a connection of the pool, or SQLite's
/// single writer, for as long as the lock lasts; the lock gone, it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_table_fails_a_targets_state_write_within_its_limit() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("targets_lock_{}", std::process::id());
    for url in
        common::inbox::stores(dir.path(), "locked", "target states on PostgreSQL", &prefix).await
    {
        let inbox = Inbox::open(&url).await.unwrap();
        let state = paused("web-1 pid 10", base(), SignedDuration::from_secs(30));
        // Another connection holds the lock: SQLite's whole file, the
        // table on PostgreSQL.
        let release: Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>> =
            if let Some(path) = url.strip_prefix("sqlite:") {
                let mut lock = sqlx::SqliteConnection::connect(&format!("sqlite:{path}"))
                    .await
                    .unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut lock)
                    .await
                    .unwrap();
                Box::new(move || {
                    Box::pin(async move {
                        sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
                    })
                })
            } else {
                #[cfg(feature = "postgres")]
                {
                    let mut lock = sqlx::PgConnection::connect(&url).await.unwrap();
                    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
                    sqlx::query("LOCK TABLE cmc_webhook.cmc_target_states IN EXCLUSIVE MODE")
                        .execute(&mut lock)
                        .await
                        .unwrap();
                    Box::new(move || {
                        Box::pin(async move {
                            sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
                        })
                    })
                }
                #[cfg(not(feature = "postgres"))]
                unreachable!("{url}")
            };
        let started = std::time::Instant::now();
        let outcome =
            tokio::time::timeout(Duration::from_secs(10), inbox.set_target_state(&state)).await;
        let took = started.elapsed();
        let error = outcome
            .unwrap_or_else(|_| panic!("{url}: still waiting for the lock after {took:?}"))
            .unwrap_err();
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
            "{url}: {took:?} {error}"
        );
        release().await;
        inbox.set_target_state(&state).await.unwrap();
        assert_eq!(inbox.target_states().await.unwrap(), vec![state], "{url}");
        inbox.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_states_are_kept_per_target_and_writer_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("targets_{}", std::process::id());
    for url in common::inbox::stores(
        dir.path(),
        "targets",
        "target states on PostgreSQL",
        &prefix,
    )
    .await
    {
        let inbox = Inbox::open(&url).await.unwrap();
        check_store(&inbox, &url).await;
        // Another handle on the same store (another process would do the
        // same) reads what this one wrote.
        let other = Inbox::open(&url).await.unwrap();
        assert_eq!(
            other.target_states().await.unwrap(),
            inbox.target_states().await.unwrap()
        );
        other.close().await;
        inbox.close().await;
    }
}

/// On an application's pool, in a schema of its own: the table is made and
/// read there, not in the search path's schema.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_states_live_in_the_chosen_schema_of_an_applications_database() {
    let Some(admin) = common::inbox::postgres_server("target states on PostgreSQL") else {
        return;
    };
    let url =
        common::inbox::fresh_database(&admin, &format!("targets_schema_{}", std::process::id()))
            .await;
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let inbox = Inbox::postgres_pool(pool.clone())
        .schema("app_inbox")
        .open()
        .await
        .unwrap();
    check_store(&inbox, &url).await;
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT schemaname::TEXT FROM pg_tables WHERE tablename = 'cmc_target_states'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(schemas, ["app_inbox"]);
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM app_inbox.cmc_target_states")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows as usize, inbox.target_states().await.unwrap().len());
}

/// On SQLite, on an application's own pool: the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_states_on_an_applications_sqlite_pool() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sqlite3");
    let pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal),
    )
    .await
    .unwrap();
    let inbox = Inbox::sqlite_pool(pool.clone()).open().await.unwrap();
    check_store(&inbox, &path.display().to_string()).await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cmc_target_states")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows as usize, inbox.target_states().await.unwrap().len());
}
