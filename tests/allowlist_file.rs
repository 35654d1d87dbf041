//! An allowlist read from a file: opened, read again on request and when
//! the file changes (in place, by a rename, deleted and back), with a bad
//! or empty file leaving the list in force, and what each step logs.

mod common;

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cmc_webhook::allowlist::{AllowlistFile, AllowlistFileError};
use common::logs::Captured;

/// The interval of the watches under test.
const EVERY: Duration = Duration::from_millis(20);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A fresh directory with `allow.txt` holding `text`.
fn dir_with(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allow.txt");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Replaces the file the way an editor or a ConfigMap does: a new file
/// renamed over the old one.
fn replace_by_rename(path: &Path, text: &str) {
    let next = path.with_extension("txt.new");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// Waits until `done` holds, failing after a generous deadline with what
/// was logged so far.
async fn until(what: &str, logs: &Captured, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "gave up waiting: {what}; the logs:\n{}",
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Lets a watch check the file several times: nothing is asserted about
/// when; a slower machine checks fewer times, which the tests allow.
async fn let_it_check_a_few_times() {
    tokio::time::sleep(EVERY * 8).await;
}

/// Captures every log line at `debug` and above while the guard lives, on
/// this thread (a current-thread runtime) and on the watch's blocking
/// threads (which log to the subscriber current when `watch` was called).
///
/// Every test of this file captures, even those that read no log: `tracing`
/// caches whether a log statement is wanted when it first runs, from the
/// subscribers alive then. A test running without one could have the
/// statement cached as unwanted while another test's subscriber was being
/// set up, and that test would then miss its lines.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[test]
fn a_good_file_is_read() {
    let (_logs, _guard) = capture();
    let (_dir, path) = dir_with(
        "# CMC's senders\n\
         203.0.113.0/24\n\
         \n\
         198.51.100.7, 198.51.100.8   # two addresses\n\
         2001:db8:cafe::/48\n",
    );
    let file = AllowlistFile::open(&path).unwrap();
    assert_eq!(file.path(), path);
    let list = file.allowlist();
    for allowed in [
        "203.0.113.200",
        "198.51.100.7",
        "198.51.100.8",
        "::ffff:203.0.113.1",
        "2001:db8:cafe::9",
    ] {
        assert!(list.contains(ip(allowed)), "{allowed}");
    }
    for refused in ["198.51.100.9", "192.0.2.1", "2001:db8::1"] {
        assert!(!list.contains(ip(refused)), "{refused}");
    }
    assert_eq!(
        list.get().to_string(),
        "198.51.100.7/32, 198.51.100.8/32, 203.0.113.0/24, 2001:db8:cafe::/48"
    );
    let debug = format!("{file:?}");
    assert!(debug.starts_with("AllowlistFile { path: "), "{debug}");
    assert!(debug.contains("203.0.113.0/24"), "{debug}");
}

#[test]
fn a_reload_puts_added_and_removed_networks_in_force() {
    let (_logs, _guard) = capture();
    let (_dir, path) = dir_with("203.0.113.0/24\n198.51.100.7\n");
    let file = AllowlistFile::open(&path).unwrap();
    let list = file.allowlist();
    assert!(list.contains(ip("198.51.100.7")));
    assert!(!list.contains(ip("192.0.2.1")));

    std::fs::write(&path, "203.0.113.0/24\n192.0.2.0/24\n").unwrap();
    let reload = file.reload().unwrap();
    assert!(reload.changed());
    assert_eq!(reload.added.to_string(), "192.0.2.0/24");
    assert_eq!(reload.removed.to_string(), "198.51.100.7/32");
    assert_eq!(reload.set.to_string(), "192.0.2.0/24, 203.0.113.0/24");
    assert!(list.contains(ip("192.0.2.1")));
    assert!(!list.contains(ip("198.51.100.7")));
    assert!(list.contains(ip("203.0.113.1")));

    // The same addresses, written otherwise: no change.
    std::fs::write(&path, "192.0.2.0/25 192.0.2.128/25, 203.0.113.0/24").unwrap();
    let reload = file.reload().unwrap();
    assert!(!reload.changed());
    assert!(reload.added.is_empty() && reload.removed.is_empty());
}

#[test]
fn a_bad_file_keeps_the_list_and_names_the_line_and_the_item() {
    let (_logs, _guard) = capture();
    let (_dir, path) = dir_with("203.0.113.0/24\n");
    let file = AllowlistFile::open(&path).unwrap();
    std::fs::write(
        &path,
        "203.0.113.0/24\n# CMC's new range\n192.0.2.0/24, 192.0.2.300\n",
    )
    .unwrap();
    let e = file.reload().unwrap_err();
    match &e {
        AllowlistFileError::Invalid {
            path: p,
            line,
            item,
            ..
        } => {
            assert_eq!(p, &path);
            assert_eq!(*line, 3);
            assert_eq!(item, "192.0.2.300");
        }
        other => panic!("{other:?}"),
    }
    let message = e.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("line 3: `192.0.2.300` is not an IP network"),
        "{message}"
    );
    assert!(std::error::Error::source(&e).is_some());
    // Nothing of the bad file is in force, not even its good lines.
    assert!(file.allowlist().contains(ip("203.0.113.1")));
    assert!(!file.allowlist().contains(ip("192.0.2.1")));
    // And the same file is refused at start.
    assert!(matches!(
        AllowlistFile::open(&path),
        Err(AllowlistFileError::Invalid { line: 3, .. })
    ));
}

#[test]
fn an_empty_or_comments_only_file_is_refused_and_keeps_the_list() {
    let (_logs, _guard) = capture();
    for empty in [
        "",
        "\n\n",
        "# nothing yet\n   \n# still nothing\n",
        " , ,\n",
    ] {
        let (_dir, path) = dir_with(empty);
        let e = AllowlistFile::open(&path).unwrap_err();
        assert!(
            matches!(&e, AllowlistFileError::Empty { path: p, .. } if p == &path),
            "{empty:?}: {e:?}"
        );
        assert!(e.to_string().contains("holds no network"), "{e}");
        assert_eq!(e.path(), Some(path.as_path()));

        std::fs::write(&path, "203.0.113.0/24").unwrap();
        let file = AllowlistFile::open(&path).unwrap();
        std::fs::write(&path, empty).unwrap();
        assert!(matches!(
            file.reload(),
            Err(AllowlistFileError::Empty { .. })
        ));
        assert!(file.allowlist().contains(ip("203.0.113.1")), "{empty:?}");
        assert_eq!(file.allowlist().get().len(), 1);
    }
}

#[test]
fn a_missing_a_too_large_and_a_directory_are_refused() {
    let (_logs, _guard) = capture();
    let dir = tempfile::tempdir().unwrap();
    let missing = AllowlistFile::open(dir.path().join("missing.txt")).unwrap_err();
    assert!(
        matches!(missing, AllowlistFileError::Read { .. }),
        "{missing:?}"
    );
    assert!(
        missing
            .to_string()
            .starts_with("cannot read the allowlist file "),
        "{missing}"
    );
    assert!(std::error::Error::source(&missing).is_some());

    let directory = AllowlistFile::open(dir.path()).unwrap_err();
    assert!(
        matches!(directory, AllowlistFileError::Read { .. }),
        "{directory:?}"
    );
    assert!(
        directory.to_string().contains("not a regular file"),
        "{directory}"
    );

    // Valid networks, but more of them than any allowlist holds.
    let big = dir.path().join("big.txt");
    let line = "203.0.113.0/24\n";
    let lines = (AllowlistFile::MAX_SIZE as usize) / line.len() + 1;
    std::fs::write(&big, line.repeat(lines)).unwrap();
    let e = AllowlistFile::open(&big).unwrap_err();
    assert!(
        matches!(e, AllowlistFileError::TooLarge { size, .. } if size > AllowlistFile::MAX_SIZE),
        "{e:?}"
    );
    // One line fewer than the limit is fine.
    std::fs::write(&big, line.repeat(lines - 2)).unwrap();
    assert_eq!(
        AllowlistFile::open(&big).unwrap().allowlist().get().len(),
        1
    );
}

#[test]
fn watching_needs_a_runtime() {
    let (_logs, _guard) = capture();
    let (_dir, path) = dir_with("203.0.113.0/24");
    let e = AllowlistFile::open(&path)
        .unwrap()
        .watch(EVERY)
        .unwrap_err();
    assert!(matches!(e, AllowlistFileError::NoRuntime), "{e:?}");
    assert!(e.to_string().contains("Tokio runtime"), "{e}");
    assert_eq!(e.path(), None);
}

#[tokio::test(flavor = "current_thread")]
async fn a_file_replaced_by_a_rename_is_picked_up_by_the_watch() {
    let (logs, _guard) = capture();
    let (_dir, path) = dir_with("203.0.113.0/24\n198.51.100.7\n");
    let file = AllowlistFile::open(&path).unwrap();
    let list = file.allowlist();
    let watch = file.watch(EVERY).unwrap();
    let debug = format!("{watch:?}");
    assert!(debug.contains("running: true"), "{debug}");

    replace_by_rename(&path, "203.0.113.0/24\n192.0.2.0/24\n");
    until("the renamed file in force", &logs, || {
        list.contains(ip("192.0.2.1"))
    })
    .await;
    assert!(!list.contains(ip("198.51.100.7")));
    assert!(list.contains(ip("203.0.113.1")));

    // Written in place, as `echo >>` does.
    let mut appended = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    appended.write_all(b"2001:db8::/32\n").unwrap();
    drop(appended);
    until("the appended network in force", &logs, || {
        list.contains(ip("2001:db8::1"))
    })
    .await;

    let text = logs.text();
    let changed = text
        .lines()
        .find(|l| l.contains("allowlist file read again") && l.contains("INFO"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        changed.contains("added=192.0.2.0/24") && changed.contains("removed=198.51.100.7/32"),
        "{changed}"
    );
    assert!(changed.contains(&path.display().to_string()), "{changed}");
    assert!(logs.errors().is_empty(), "{text}");

    // The handle gives the file back for a reload on request.
    replace_by_rename(&path, "198.51.100.0/24\n");
    watch.file().reload().unwrap();
    assert!(list.contains(ip("198.51.100.1")));
    assert!(!list.contains(ip("203.0.113.1")));
    watch.stop();
}

#[tokio::test(flavor = "current_thread")]
async fn a_deleted_file_keeps_the_list_and_its_return_is_picked_up() {
    let (logs, _guard) = capture();
    let (_dir, path) = dir_with("203.0.113.0/24\n");
    let file = AllowlistFile::open(&path).unwrap();
    let list = file.allowlist();
    let _watch = file.watch(EVERY).unwrap();

    std::fs::remove_file(&path).unwrap();
    until("the missing file reported", &logs, || {
        !logs.errors().is_empty()
    })
    .await;
    let_it_check_a_few_times().await;
    let errors = logs.errors();
    assert_eq!(
        errors.len(),
        1,
        "reported once, not at every check:\n{}",
        logs.text()
    );
    assert!(
        errors[0].contains("allowlist file not reloaded: keeping the 1 network in force")
            && errors[0].contains("error=cannot read the allowlist file ")
            && errors[0].contains(&path.display().to_string()),
        "{}",
        errors[0]
    );
    assert!(list.contains(ip("203.0.113.1")), "the list stays in force");

    std::fs::write(&path, "192.0.2.0/24\n").unwrap();
    until("the returned file in force", &logs, || {
        list.contains(ip("192.0.2.1"))
    })
    .await;
    assert!(!list.contains(ip("203.0.113.1")));
    assert!(logs.text().contains("the allowlist file is there again"));

    // Gone again: reported again, once.
    std::fs::remove_file(&path).unwrap();
    until("the second absence reported", &logs, || {
        logs.errors().len() == 2
    })
    .await;
    let_it_check_a_few_times().await;
    assert_eq!(logs.errors().len(), 2, "{}", logs.text());
    assert!(list.contains(ip("192.0.2.1")));
}

#[tokio::test(flavor = "current_thread")]
async fn a_bad_file_is_logged_once_and_its_fix_is_picked_up() {
    let (logs, _guard) = capture();
    let (_dir, path) = dir_with("203.0.113.0/24, 198.51.100.7\n");
    let file = AllowlistFile::open(&path).unwrap();
    let list = file.allowlist();
    let _watch = file.watch(EVERY).unwrap();

    replace_by_rename(&path, "203.0.113.0/24\n198.51.100.7\n192.0.2.0/42\n");
    until("the bad file reported", &logs, || !logs.errors().is_empty()).await;
    let_it_check_a_few_times().await;
    let errors = logs.errors();
    assert_eq!(
        errors.len(),
        1,
        "one error for one bad file:\n{}",
        logs.text()
    );
    let error = &errors[0];
    assert!(
        error.contains("keeping the 2 networks in force")
            && error.contains("line 3: `192.0.2.0/42` is not an IP network")
            && error.contains(&path.display().to_string()),
        "{error}"
    );
    assert!(list.contains(ip("198.51.100.7")));
    assert!(!list.contains(ip("192.0.2.1")));

    // A comments-only file is refused as well, and logged once more.
    replace_by_rename(&path, "# emptied by mistake\n");
    until("the empty file reported", &logs, || {
        logs.errors().len() == 2
    })
    .await;
    assert!(
        logs.errors()[1].contains("holds no network"),
        "{}",
        logs.text()
    );
    assert!(list.contains(ip("203.0.113.1")));

    replace_by_rename(&path, "203.0.113.0/24\n198.51.100.7\n192.0.2.0/24\n");
    until("the fixed file in force", &logs, || {
        list.contains(ip("192.0.2.1"))
    })
    .await;
    assert_eq!(logs.errors().len(), 2, "{}", logs.text());
}

#[tokio::test(flavor = "current_thread")]
async fn a_stopped_watch_reads_nothing_more() {
    let (logs, _guard) = capture();
    let (_dir, path) = dir_with("203.0.113.0/24\n");
    let file = AllowlistFile::open(&path).unwrap();
    let list = file.allowlist();
    // Shown working first, so that what follows is not a watch that never ran.
    let watch = file.clone().watch(EVERY).unwrap();
    replace_by_rename(&path, "192.0.2.0/24\n");
    until("the first change in force", &logs, || {
        list.contains(ip("192.0.2.1"))
    })
    .await;
    drop(watch);
    replace_by_rename(&path, "198.51.100.0/24\n");
    let_it_check_a_few_times().await;
    assert!(
        list.contains(ip("192.0.2.1")),
        "a dropped watch changed the list"
    );
    // The file itself still reloads on request.
    assert!(file.reload().unwrap().changed());
    assert!(list.contains(ip("198.51.100.1")));
}

/// A CIDR with bits set after its prefix is refused, not widened: a line
/// cut while the file was written (`203.0.113.0/2` of `203.0.113.0/24`)
/// would otherwise allow a quarter of IPv4.
#[test]
fn a_cidr_with_host_bits_is_refused_not_widened() {
    let (_logs, _guard) = capture();
    let (_dir, path) = dir_with("127.0.0.0/8\n203.0.113.0/24\n");
    let file = AllowlistFile::open(&path).unwrap();
    for (text, item, network) in [
        ("127.0.0.0/8\n203.0.113.0/2", "203.0.113.0/2", "192.0.0.0/2"),
        ("10.0.0.1/8\n", "10.0.0.1/8", "10.0.0.0/8"),
        ("2001:db8::/3\n", "2001:db8::/3", "2000::/3"),
    ] {
        std::fs::write(&path, text).unwrap();
        let e = file.reload().unwrap_err();
        assert!(
            matches!(&e, AllowlistFileError::Invalid { item: i, .. } if i == item),
            "{e:?}"
        );
        let message = e.to_string();
        assert!(
            message.contains("has bits set after its prefix") && message.contains(network),
            "{message}"
        );
        assert!(!file.allowlist().contains(ip("192.0.2.1")));
        assert!(file.allowlist().contains(ip("203.0.113.1")));
    }
}

/// A path that is a FIFO is refused at once, never waited on (opening one
/// blocks until a writer comes).
#[cfg(unix)]
#[test]
fn a_fifo_is_refused_without_waiting() {
    let (_logs, _guard) = capture();
    let (dir, path) = dir_with("203.0.113.0/24\n");
    let file = AllowlistFile::open(&path).unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: mkfifo is not available");
        return;
    }
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(&fifo, &path).unwrap();
    let started = Instant::now();
    let e = file.reload().unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(file.allowlist().contains(ip("203.0.113.1")));
}

/// A file of 70 000 networks is logged by its count and a few of its
/// networks, on open and on reload: never all of them on one line.
#[test]
fn a_large_file_is_logged_by_count_and_a_bounded_sample() {
    let (logs, _guard) = capture();
    // Every other address of 10.0.0.0/8: no two merge into one network.
    let large: String = (0..70_000u32)
        .map(|i| format!("{}\n", std::net::Ipv4Addr::from(0x0a00_0000 + 2 * i)))
        .collect();
    let (_dir, path) = dir_with(&large);
    let file = AllowlistFile::open(&path).unwrap();
    replace_by_rename(&path, "203.0.113.0/24\n");
    file.reload().unwrap();
    replace_by_rename(&path, &large);
    file.reload().unwrap();
    let text = logs.text();
    assert!(text.contains("70000 networks"), "{text}");
    assert!(text.contains("and 69992 more"), "{text}");
    let longest = text.lines().map(str::len).max().unwrap();
    assert!(longest < 2_000, "a log line of {longest} bytes");
}
