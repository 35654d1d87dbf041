//! The schema's version: what opening a store does with its migrations.
//!
//! A store opened to serve ([`InboxBuilder::open`](super::InboxBuilder::open)
//! by default) applies the migrations it has not seen, under the
//! migrator's lock, then proves that it takes writes. A store opened
//! without migrating (`migrate_on_open(false)`, or `read_only(true)`, as
//! the receiver's inspection subcommands do) is only checked: its
//! schema must be the one this version of the crate writes, neither older
//! (run the migrations first: `migrate`) nor newer (a newer version wrote
//! it).

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

use super::error::{InboxError, InboxErrorKind};

/// How an inbox treats its store's schema when it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// Apply what is missing, then prove the store takes writes (a
    /// serving receiver: better to refuse to start than to answer 503 to
    /// everything).
    Migrate,
    /// Check the version; write when asked (replay, prune).
    Check,
    /// Check the version; never write (the store is opened read-only).
    ReadOnly,
}

/// What [`InboxBuilder::migrate`](super::InboxBuilder::migrate) did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migrated {
    /// The versions applied now, in order (empty when the store was up to
    /// date).
    pub applied: Vec<i64>,
    /// The store's version now: the last migration this crate has.
    pub version: i64,
}

/// The last migration `migrator` holds.
pub(crate) fn latest(migrator: &Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Fails unless `applied` (the newest migration the store records, or
/// `None` when it records none) is the newest `migrator` has.
pub(crate) fn check(
    applied: Option<i64>,
    migrator: &Migrator,
    store: &str,
) -> Result<(), InboxError> {
    let expected = latest(migrator);
    match applied {
        Some(v) if v == expected => Ok(()),
        Some(v) if v < expected => Err(InboxError::new(
            InboxErrorKind::Open,
            format!(
                "{store} has the inbox schema of version {v}, older than this version's \
                 {expected}: migrate it first (the receiver's `migrate`, or \
                 InboxBuilder::migrate), then try again"
            ),
        )),
        Some(v) => Err(InboxError::new(
            InboxErrorKind::Open,
            format!(
                "{store} has the inbox schema of version {v}, newer than this version's \
                 {expected}: it was written by a newer version of cmc-webhook; use that \
                 version"
            ),
        )),
        None => Err(InboxError::new(
            InboxErrorKind::Open,
            format!(
                "{store} holds no inbox (no migration was ever applied to it): migrate it \
                 first (the receiver's `migrate`, or InboxBuilder::migrate)"
            ),
        )),
    }
}

/// The table the inbox keeps its migration history in: its own, so that
/// an application's `sqlx::migrate!` (in sqlx's `_sqlx_migrations`) and
/// the inbox's migrations share one database in either order. A store
/// whose history an earlier release kept in `_sqlx_migrations` is adopted
/// when it is next migrated: the inbox's own rows (same version and
/// checksum) move here, and `_sqlx_migrations` is dropped if nothing else
/// is left in it.
pub const MIGRATIONS_TABLE: &str = "cmc_webhook_migrations";

/// The successful migrations recorded in the inbox's table (read into
/// [`effective`]).
pub(crate) const APPLIED: &str = "SELECT version FROM cmc_webhook_migrations WHERE success";

/// The same, in sqlx's default table, for a store the previous release
/// migrated and nobody has migrated since (read, never written, by a
/// store opened without migrating). Only the inbox's own versions count:
/// an application's migrations may share the table.
pub(crate) const APPLIED_LEGACY: &str =
    "SELECT version, checksum FROM _sqlx_migrations WHERE success";

/// The version a store's schema is at, from the versions it records
/// (`None`: none). Not merely the newest: a store that skipped one of
/// `migrator`'s migrations (a store migrated by an unreleased build that
/// had later migrations but not that one) is at the version before the
/// first it lacks, so that it is told to migrate rather than failing on a
/// missing column later. A version newer than any of `migrator`'s is a
/// newer release's store, and reported as such.
pub(crate) fn effective(
    applied: impl IntoIterator<Item = i64>,
    migrator: &Migrator,
) -> Option<i64> {
    let applied: std::collections::BTreeSet<i64> = applied.into_iter().collect();
    let newest = *applied.last()?;
    if newest > latest(migrator) {
        return Some(newest);
    }
    let mut versions: Vec<i64> = migrator.iter().map(|m| m.version).collect();
    versions.sort_unstable();
    let mut at = 0;
    for version in versions.into_iter().take_while(|v| *v <= newest) {
        if !applied.contains(&version) {
            return Some(at);
        }
        at = version;
    }
    Some(at)
}

/// [`effective`] over the rows (version and checksum, read by
/// [`APPLIED_LEGACY`]) that are `migrator`'s own.
pub(crate) fn newest_own(rows: &[(i64, Vec<u8>)], migrator: &Migrator) -> Option<i64> {
    effective(
        rows.iter()
            .filter(|(version, checksum)| {
                migrator
                    .iter()
                    .any(|m| m.version == *version && *m.checksum == **checksum)
            })
            .map(|(version, _)| *version),
        migrator,
    )
}

/// The statements that adopt a history the previous release kept in
/// `_sqlx_migrations`, run in one transaction under the migration lock
/// (written with `?N` parameters): each row that is one of the inbox's own
/// migrations (same version and checksum) is copied into the inbox's
/// table, unless that version is there already, and removed from sqlx's.
pub(crate) const ADOPT: [&str; 2] = [
    "INSERT INTO cmc_webhook_migrations \
     (version, description, installed_on, success, checksum, execution_time) \
     SELECT version, description, installed_on, success, checksum, execution_time \
     FROM _sqlx_migrations o WHERE o.version = ?1 AND o.checksum = ?2 \
     AND NOT EXISTS (SELECT 1 FROM cmc_webhook_migrations n WHERE n.version = ?1)",
    "DELETE FROM _sqlx_migrations WHERE version = ?1 AND checksum = ?2",
];

/// How many rows sqlx's table still holds once adopted: none, and it is
/// dropped (it was the inbox's alone); some, and it stays (they are the
/// application's).
pub(crate) const LEGACY_LEFT: &str = "SELECT COUNT(*) FROM _sqlx_migrations";

/// Drops sqlx's table once it is empty.
pub(crate) const DROP_LEGACY: &str = "DROP TABLE _sqlx_migrations";

/// Whether `e` says the migrations table does not exist.
pub(crate) fn is_missing_table(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let message = db.message();
            // SQLite: "no such table"; PostgreSQL: undefined_table.
            message.contains("no such table") || db.code().as_deref() == Some("42P01")
        }
        _ => false,
    }
}

/// What migrating a store whose newest migration was `before` did.
pub(crate) fn migrated(migrator: &Migrator, before: Option<i64>) -> Migrated {
    let before = before.unwrap_or(i64::MIN);
    Migrated {
        applied: migrator
            .iter()
            .map(|m| m.version)
            .filter(|v| *v > before)
            .collect(),
        version: latest(migrator),
    }
}

/// Which process opened the store, for `cmc_inbox_opened`.
pub(crate) fn process_name() -> String {
    format!("pid {}", std::process::id())
}

/// A migrator of the files named, compiled in: `migrator!("sqlite",
/// "0001_inbox.sql", ...)` reads `migrations/sqlite/0001_inbox.sql`. The
/// migrations are those `sqlx::migrate!` would make of the directory (the
/// version and description from the file's name, the checksum from its
/// text: a store migrated by an earlier build opens), without building
/// sqlx's proc-macros. A test checks the list against the directory.
#[allow(unused_macros)] // without a backend
macro_rules! migrator {
    ($dir:literal, $($file:literal),+ $(,)?) => {
        std::sync::LazyLock::new(|| {
            $crate::schema::migrator_of(&[$((
                $file,
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $dir, "/", $file)),
            )),+])
        })
    };
}
#[allow(unused_imports)] // without a backend
pub(crate) use migrator;

/// The migrator of `files` (name and text), as `sqlx::migrate!` makes it
/// of a directory holding them: `<version>_<description>.sql`, the
/// description's `_` read as spaces.
pub(crate) fn migrator_of(files: &[(&'static str, &'static str)]) -> Migrator {
    let migrations = files
        .iter()
        .map(|&(name, sql)| {
            let (version, rest) = name
                .split_once('_')
                .and_then(|(v, rest)| Some((v.parse::<i64>().ok()?, rest)))
                .unwrap_or_else(|| panic!("{name}: not <version>_<description>.sql"));
            let kind = MigrationType::from_filename(rest);
            let description = rest.trim_end_matches(kind.suffix()).replace('_', " ");
            Migration::new(
                version,
                Cow::Owned(description),
                kind,
                sqlx::SqlStr::from_static(sql),
                sql.starts_with("-- no-transaction"),
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        table_name: Cow::Borrowed(MIGRATIONS_TABLE),
        ..Migrator::DEFAULT
    }
}

/// Checks a compiled-in migrator against its directory, as
/// `sqlx::migrate!` would read it: the same files, versions, descriptions
/// and checksums.
#[cfg(test)]
pub(crate) async fn same_as_directory(migrator: &Migrator, dir: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dir);
    let resolved = Migrator::new(path).await.unwrap();
    let key = |m: &Migration| {
        (
            m.version,
            m.description.to_string(),
            m.checksum.to_vec(),
            m.no_tx,
            m.migration_type.label(),
        )
    };
    let ours: Vec<_> = migrator.iter().map(key).collect();
    let theirs: Vec<_> = resolved.iter().map(key).collect();
    assert!(!ours.is_empty());
    assert_eq!(
        ours, theirs,
        "migrations/{dir} and the files compiled in differ"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_that_skipped_a_migration_is_at_the_version_before_it() {
        let migrator = &migrator_of(&[
            ("0001_first.sql", "SELECT 1"),
            ("0002_second.sql", "SELECT 2"),
            ("0003_third.sql", "SELECT 3"),
            ("0005_fifth.sql", "SELECT 5"),
            ("0006_sixth.sql", "SELECT 6"),
        ]);
        let all: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        let newest = latest(migrator);
        assert_eq!(effective(all.clone(), migrator), Some(newest));
        assert_eq!(effective(Vec::new(), migrator), None);
        // Every migration but one in the middle: at the one before it.
        let gap = all[all.len() / 2];
        let before = all[all.len() / 2 - 1];
        let skipped: Vec<i64> = all.iter().copied().filter(|v| *v != gap).collect();
        assert_eq!(effective(skipped, migrator), Some(before));
        assert!(check(Some(before), migrator, "the store").is_err());
        // The first missing: at nothing.
        assert_eq!(effective(all[1..].to_vec(), migrator), Some(0));
        // A newer release's version is reported as it is.
        assert_eq!(effective([newest + 1], migrator), Some(newest + 1));
        // The previous release's history, in order and whole.
        assert_eq!(effective(all[..3].to_vec(), migrator), Some(all[2]));
    }
}
