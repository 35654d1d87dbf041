//! The inbox in the application's own database: opened on the
//! application's sqlx pool, its migration history in its own table
//! (`cmc_webhook_migrations`) so that the application's migrations and
//! the inbox's run in either order, and a store whose history the
//! previous release kept in `_sqlx_migrations` adopted on migrating. On
//! a SQLite file, and on PostgreSQL when `CMC_POSTGRES_URL` names a server
//! (`scripts/with-postgres.sh cargo test --all-features --test shared_database`).

use std::path::Path;

use cmc_webhook::inbox::{Inbox, InboxBuilder, InboxErrorKind, Item, StoreOptions};
use cmc_webhook::test_util::sample_inbound;
use cmc_webhook::Webhook;
use sqlx::migrate::Migrator;

mod common;

/// The application's migration, in a directory of its own.
fn app_migrations(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("app_migrations");
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(
        path.join("20250101000000_app_users.sql"),
        "CREATE TABLE app_users (id BIGINT PRIMARY KEY, name TEXT NOT NULL);\n",
    )
    .unwrap();
    path
}

/// The inbox's migrations as the previous release ran them: the same
/// files, in sqlx's default table.
async fn previous_release(backend: &str) -> Migrator {
    Migrator::new(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("crates/inbox/migrations/{backend}")),
    )
    .await
    .unwrap()
}

/// The migrations the previous release had (SQLite up to 8, PostgreSQL up
/// to 6), as its migrator applied them: its tables only.
async fn released(backend: &str) -> Migrator {
    let mut migrator = previous_release(backend).await;
    let last = if backend == "sqlite" { 8 } else { 6 };
    migrator.migrations = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= last)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    migrator
}

/// A database of the application: its pool, of either backend.
#[derive(Clone)]
enum App {
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

impl App {
    async fn connect(url: &str) -> App {
        if let Some(path) = url.strip_prefix("sqlite:") {
            use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
            return App::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(
                        SqliteConnectOptions::new()
                            .filename(path)
                            .create_if_missing(true)
                            .journal_mode(SqliteJournalMode::Wal),
                    )
                    .await
                    .unwrap(),
            );
        }
        #[cfg(feature = "postgres")]
        return App::Postgres(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .connect(url)
                .await
                .unwrap(),
        );
        #[allow(unreachable_code)]
        {
            unreachable!("a PostgreSQL store without the feature")
        }
    }

    fn backend(&self) -> &'static str {
        match self {
            App::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            App::Postgres(_) => "postgres",
        }
    }

    fn inbox(&self) -> InboxBuilder<StoreOptions> {
        match self {
            App::Sqlite(pool) => Inbox::sqlite_pool(pool.clone()).into(),
            #[cfg(feature = "postgres")]
            App::Postgres(pool) => Inbox::postgres_pool(pool.clone()).into(),
        }
    }

    async fn migrate(&self, migrator: &Migrator) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            App::Sqlite(pool) => migrator.run(pool).await,
            #[cfg(feature = "postgres")]
            App::Postgres(pool) => migrator.run(pool).await,
        }
    }

    async fn execute(&self, sql: &'static str) {
        match self {
            App::Sqlite(pool) => {
                sqlx::query(sql).execute(pool).await.unwrap();
            }
            #[cfg(feature = "postgres")]
            App::Postgres(pool) => {
                sqlx::query(sql).execute(pool).await.unwrap();
            }
        }
    }

    async fn count(&self, sql: &'static str) -> i64 {
        match self {
            App::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            #[cfg(feature = "postgres")]
            App::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    async fn has_legacy_table(&self) -> bool {
        match self {
            App::Sqlite(_) => {
                self.count("SELECT COUNT(*) FROM sqlite_master WHERE name = '_sqlx_migrations'")
                    .await
                    > 0
            }
            #[cfg(feature = "postgres")]
            App::Postgres(_) => {
                self.count("SELECT COUNT(*) FROM pg_tables WHERE tablename = '_sqlx_migrations'")
                    .await
                    > 0
            }
        }
    }

    /// The rows of the inbox's migration history (on PostgreSQL, in the
    /// default schema).
    async fn history_rows(&self) -> i64 {
        match self {
            App::Sqlite(_) => {
                self.count("SELECT COUNT(*) FROM cmc_webhook_migrations")
                    .await
            }
            #[cfg(feature = "postgres")]
            App::Postgres(_) => {
                self.count("SELECT COUNT(*) FROM cmc_webhook.cmc_webhook_migrations")
                    .await
            }
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            App::Sqlite(pool) => pool.is_closed(),
            #[cfg(feature = "postgres")]
            App::Postgres(pool) => pool.is_closed(),
        }
    }
}

/// Stores a mail through an inbox on the application's pool, has a worker
/// handle it, closes the inbox, and checks that the pool is still open.
async fn inbox_works(app: &App, builder: InboxBuilder<StoreOptions>) {
    let inbox = builder.open().await.unwrap();
    let mail = sample_inbound(false);
    let receipt = inbox
        .store(Webhook::Inbound(mail.clone()), None)
        .await
        .unwrap();
    assert_eq!(receipt.stored, 1);
    let handled = common::inbox::handle_all(&inbox, 1).await;
    assert!(matches!(&handled[..], [Item::Mail(m)] if *m == mail));
    inbox.close().await;
    assert!(
        !app.is_closed(),
        "closing the inbox closed the application's pool"
    );
}

/// The number of the inbox's migration files for `backend`.
fn inbox_migrations(backend: &str) -> i64 {
    std::fs::read_dir(format!("crates/inbox/migrations/{backend}"))
        .unwrap()
        .count() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_applications_migrations_and_the_inboxs_run_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    let app_dir = app_migrations(dir.path());
    for app_first in [true, false] {
        let test = if app_first {
            "app_first"
        } else {
            "inbox_first"
        };
        for url in common::inbox::stores(dir.path(), test, "shared_database", "shared").await {
            let app = App::connect(&url).await;
            let migrator = Migrator::new(app_dir.as_path()).await.unwrap();
            if app_first {
                app.migrate(&migrator).await.unwrap();
                app.inbox().migrate().await.unwrap();
            } else {
                app.inbox().migrate().await.unwrap();
                app.migrate(&migrator).await.unwrap();
            }
            // Each again, in the other order: nothing is missing for either.
            app.inbox().migrate().await.unwrap();
            app.migrate(&migrator).await.unwrap();
            app.execute("INSERT INTO app_users (id, name) VALUES (1, 'a')")
                .await;
            assert_eq!(app.count("SELECT COUNT(*) FROM app_users").await, 1);
            assert_eq!(app.count("SELECT COUNT(*) FROM _sqlx_migrations").await, 1);
            assert_eq!(app.history_rows().await, inbox_migrations(app.backend()));
            inbox_works(&app, app.inbox().migrate_on_open(false)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_the_previous_release_is_adopted_on_migrating() {
    let dir = tempfile::tempdir().unwrap();
    let app_dir = app_migrations(dir.path());
    for (i, url) in common::inbox::stores(dir.path(), "adopt", "shared_database", "shared")
        .await
        .into_iter()
        .enumerate()
    {
        let app = App::connect(&url).await;
        // The previous release migrated the store into `_sqlx_migrations`,
        // and the application ran its own there too (ignoring the inbox's).
        app.migrate(&previous_release(app.backend()).await)
            .await
            .unwrap();
        let mut lenient = Migrator::new(app_dir.as_path()).await.unwrap();
        lenient.set_ignore_missing(true);
        app.migrate(&lenient).await.unwrap();
        // Opened without migrating, it is read and written as it is (a
        // mail stored), and its history is not moved (on PostgreSQL, where
        // the previous release's tables are: in `public`).
        let before = match &app {
            App::Sqlite(_) => app.inbox(),
            #[cfg(feature = "postgres")]
            App::Postgres(pool) => Inbox::postgres_pool(pool.clone()).schema("public").into(),
        };
        let before = before.migrate_on_open(false).open().await.unwrap();
        before
            .store(Webhook::Inbound(sample_inbound(true)), None)
            .await
            .unwrap();
        before.close().await;
        assert_eq!(
            app.count("SELECT COUNT(*) FROM _sqlx_migrations").await,
            inbox_migrations(app.backend()) + 1
        );

        // Migrating adopts the inbox's rows, leaves the application's.
        let migrated = if i == 0 {
            app.inbox().migrate().await.unwrap()
        } else {
            // Two processes at once: one moves the rows, the other finds
            // them moved.
            let (a, b) = tokio::join!(app.inbox().migrate(), app.inbox().migrate());
            b.unwrap();
            a.unwrap()
        };
        assert!(migrated.applied.is_empty(), "{migrated:?}");
        assert_eq!(app.count("SELECT COUNT(*) FROM _sqlx_migrations").await, 1);
        assert_eq!(app.history_rows().await, inbox_migrations(app.backend()));
        // The application's strict migrator is content now.
        app.migrate(&Migrator::new(app_dir.as_path()).await.unwrap())
            .await
            .unwrap();
        // The mail stored before is still there, and handled.
        let inbox = app.inbox().migrate_on_open(false).open().await.unwrap();
        assert_eq!(inbox.counts().await.unwrap().mails.total(), 1);
        let handled = common::inbox::handle_all(&inbox, 1).await;
        assert!(matches!(&handled[..], [Item::Mail(_)]));
        inbox.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_of_the_inbox_alone_is_moved_and_sqlxs_table_dropped() {
    let dir = tempfile::tempdir().unwrap();
    for url in common::inbox::stores(dir.path(), "alone", "shared_database", "shared").await {
        let app = App::connect(&url).await;
        app.migrate(&previous_release(app.backend()).await)
            .await
            .unwrap();
        assert!(app.has_legacy_table().await);
        inbox_works(&app, app.inbox()).await;
        assert!(!app.has_legacy_table().await);
        assert_eq!(app.history_rows().await, inbox_migrations(app.backend()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_pool_without_what_the_inbox_needs_is_refused_with_the_option_to_set() {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| {
        SqliteConnectOptions::new()
            .filename(dir.path().join(name))
            .create_if_missing(true)
    };
    let cases = [
        (
            "journal",
            SqlitePoolOptions::new().max_connections(4),
            file("delete.sqlite3"),
            "journal mode is delete",
        ),
        (
            "foreign keys",
            SqlitePoolOptions::new().max_connections(4),
            file("fk.sqlite3")
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(false),
            "foreign keys",
        ),
        (
            "one connection",
            SqlitePoolOptions::new().max_connections(1),
            file("one.sqlite3").journal_mode(SqliteJournalMode::Wal),
            "at least 2",
        ),
        (
            "busy timeout",
            SqlitePoolOptions::new().max_connections(4),
            file("busy.sqlite3")
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(std::time::Duration::ZERO),
            "busy timeout",
        ),
        (
            "memory",
            SqlitePoolOptions::new().max_connections(4),
            "sqlite::memory:".parse::<SqliteConnectOptions>().unwrap(),
            "in memory",
        ),
    ];
    for (what, pool, options, says) in cases {
        let pool = pool.connect_with(options).await.unwrap();
        let err = Inbox::sqlite_pool(pool.clone()).open().await.unwrap_err();
        assert_eq!(err.kind(), InboxErrorKind::Config, "{what}: {err}");
        assert!(err.to_string().contains(says), "{what}: {err}");
        let err = Inbox::sqlite_pool(pool.clone())
            .migrate()
            .await
            .unwrap_err();
        assert!(err.to_string().contains(says), "{what}: {err}");
        // Nothing of the inbox's was made.
        let tables: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'cmc_%'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(tables, 0, "{what}");
    }
}

/// The PostgreSQL test server, with a fresh database `name`, or `None`.
#[cfg(feature = "postgres")]
async fn postgres(name: &str) -> Option<String> {
    let admin = common::inbox::postgres_server("shared_database")?;
    Some(common::inbox::fresh_database(&admin, &format!("shared_{name}")).await)
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_inboxes_in_two_schemas_of_one_database_are_independent() {
    let Some(url) = postgres("schemas").await else {
        return;
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let a = Inbox::postgres_pool(pool.clone())
        .schema("inbox_a")
        .open()
        .await
        .unwrap();
    let b = Inbox::postgres(url.as_str())
        .schema("inbox_b")
        .open()
        .await
        .unwrap();
    a.store(Webhook::Inbound(sample_inbound(false)), None)
        .await
        .unwrap();
    for _ in 0..2 {
        let receipt = b
            .store(Webhook::Inbound(sample_inbound(true)), None)
            .await
            .unwrap();
        assert_eq!(receipt.stored + receipt.repeated, 1);
    }
    assert_eq!(a.counts().await.unwrap().mails.total(), 1);
    assert_eq!(b.counts().await.unwrap().mails.total(), 1);
    let in_schema = |schema: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM pg_tables WHERE schemaname = $1 AND tablename LIKE 'cmc\\_%'",
            )
            .bind(schema)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert!(in_schema("inbox_a").await >= 9);
    assert_eq!(in_schema("inbox_a").await, in_schema("inbox_b").await);
    assert_eq!(
        in_schema("public").await,
        0,
        "nothing in the search path's schema"
    );
    // Each worker handles its own inbox's mail.
    let handled = common::inbox::handle_all(&a, 1).await;
    assert!(matches!(&handled[..], [Item::Mail(m)] if m.attachments.is_empty()));
    let handled = common::inbox::handle_all(&b, 1).await;
    assert!(matches!(&handled[..], [Item::Mail(m)] if !m.attachments.is_empty()));
    a.close().await;
    b.close().await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_pool_with_another_search_path_and_a_short_timeout_works() {
    use sqlx::Executor;
    let Some(url) = postgres("search_path").await else {
        return;
    };
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    admin.execute("CREATE SCHEMA app").await.unwrap();
    // The application's connections look in its own schema first, and
    // have a statement timeout of their own.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET search_path TO app").await?;
                conn.execute("SET statement_timeout = 5000").await?;
                Ok(())
            })
        })
        .connect(&url)
        .await
        .unwrap();
    let app = App::Postgres(pool.clone());
    let dir = tempfile::tempdir().unwrap();
    app.migrate(&Migrator::new(app_migrations(dir.path())).await.unwrap())
        .await
        .unwrap();
    inbox_works(&app, app.inbox()).await;
    // The application's table is in its schema, the inbox's in theirs, and
    // the application's connections still look where they did.
    let schema_of = |table: &'static str| {
        let admin = admin.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT schemaname::TEXT FROM pg_tables WHERE tablename = $1",
            )
            .bind(table)
            .fetch_all(&admin)
            .await
            .unwrap()
        }
    };
    assert_eq!(schema_of("app_users").await, ["app"]);
    assert_eq!(schema_of("_sqlx_migrations").await, ["app"]);
    assert_eq!(schema_of("cmc_events").await, ["cmc_webhook"]);
    assert_eq!(schema_of("cmc_webhook_migrations").await, ["cmc_webhook"]);
    let path: String = sqlx::query_scalar("SHOW search_path")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(path, "app");
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_that_is_not_a_plain_identifier_is_refused() {
    for schema in [
        "",
        "Inbox",
        "1inbox",
        "a;drop table x",
        "a.b",
        "pg_inbox",
        "a\"b",
        "ü",
    ] {
        let store = Inbox::postgres("postgres://nobody@127.0.0.1:1/none").schema(schema);
        let err = store.clone().migrate().await.unwrap_err();
        assert_eq!(err.kind(), InboxErrorKind::Config, "{schema:?}: {err}");
        let err = store.open().await.unwrap_err();
        assert_eq!(err.kind(), InboxErrorKind::Config, "{schema:?}: {err}");
        assert!(err.to_string().contains("plain identifier"), "{err}");
    }
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_releases_tables_in_public_move_to_the_schema() {
    let Some(url) = postgres("public").await else {
        return;
    };
    let app = App::connect(&url).await;
    app.migrate(&released("postgres").await).await.unwrap();
    // Opened without migrating, it is not read from the wrong place.
    let err = app.inbox().migrate_on_open(false).open().await.unwrap_err();
    assert!(err.to_string().contains("an earlier release"), "{err}");
    let err = app.inbox().read_only(true).open().await.unwrap_err();
    assert!(err.to_string().contains("an earlier release"), "{err}");
    inbox_works(&app, app.inbox()).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'")
            .await,
        0
    );
    // Kept in public when that is the schema chosen.
    let Some(url) = postgres("public_kept").await else {
        return;
    };
    let app = App::connect(&url).await;
    app.migrate(&previous_release("postgres").await)
        .await
        .unwrap();
    let App::Postgres(pool) = &app else {
        unreachable!()
    };
    inbox_works(
        &app,
        Inbox::postgres_pool(pool.clone()).schema("public").into(),
    )
    .await;
    assert!(!app.has_legacy_table().await);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM public.cmc_webhook_migrations")
            .await,
        inbox_migrations("postgres")
    );
}
