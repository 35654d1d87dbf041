//! The suppression list kept by the inbox's worker, on real stores: SQLite
//! files, and PostgreSQL when `CMC_POSTGRES_URL` names a server (a fresh
//! database per test). Scripted event sequences, per recipient, changes by
//! hand, and two properties: replaying a sequence gives the same list, and
//! the list depends only on the distinct events. Time is a `ManualClock`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cmc_webhook::inbox::suppression::{
    AddOutcome, Check, Entry, ListFilter, NotAdded, SuppressionPolicy, SuppressionReason,
};
use cmc_webhook::inbox::{Backoff, Filter, Inbox, InboxErrorKind, ManualClock};
use cmc_webhook::Webhook;
use proptest::prelude::*;

const DAY: Duration = Duration::from_secs(86_400);

/// The stores a test runs on (see `common::inbox::stores`).
async fn stores(dir: &std::path::Path, test: &str) -> Vec<String> {
    common::inbox::stores(dir, test, "suppressions on PostgreSQL", "cmc_supp").await
}

/// A scenario's inbox: its clock set at `start`.
async fn open(url: &str, clock: &ManualClock) -> Inbox {
    Inbox::builder(url)
        .unwrap()
        .clock(clock.clone())
        .open()
        .await
        .unwrap()
}

/// One record, as CMC sends it: a bounce code, or a delivery status.
#[derive(Debug, Clone)]
struct Record {
    kind: &'static str,
    status: String,
    to: String,
    message: u32,
    /// Minutes after 2026-01-01 00:00 (the console's time).
    minute: u32,
}

fn bounce(code: &str, to: &str, message: u32, minute: u32) -> Record {
    Record {
        kind: "bounces",
        status: code.into(),
        to: to.into(),
        message,
        minute,
    }
}

fn delivery(status: &str, to: &str, message: u32, minute: u32) -> Record {
    Record {
        kind: "deliveries",
        status: status.into(),
        to: to.into(),
        message,
        minute,
    }
}

fn batch(records: &[Record]) -> Webhook {
    let list = |kind: &str| -> Vec<serde_json::Value> {
        records
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| {
                let at = jiff::civil::date(2026, 1, 1)
                    .at(0, 0, 0, 0)
                    .checked_add(jiff::Span::new().minutes(i64::from(r.minute)))
                    .unwrap();
                serde_json::json!({
                    "created": at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                    "status": r.status,
                    "to": r.to,
                    "messageId": format!("<m{}@example.com>", r.message),
                })
            })
            .collect()
    };
    let body = serde_json::json!({
        "event_type": "bounces",
        "server_composition": "pro",
        "event": {"bounces": list("bounces"), "deliveries": list("deliveries")},
    });
    Webhook::parse("application/json", Bytes::from(body.to_string())).unwrap()
}

/// Stores the batches, then runs a worker keeping the list under `policy`
/// until every event is done.
async fn handle(inbox: &Inbox, batches: &[Vec<Record>], policy: &SuppressionPolicy) {
    for records in batches {
        inbox.store(batch(records), None).await.unwrap();
    }
    run_worker(inbox, policy, Arc::new(AtomicUsize::new(usize::MAX))).await;
}

/// Runs a worker until nothing is pending or running; its handler fails
/// the first `fail_first` runs.
async fn run_worker(inbox: &Inbox, policy: &SuppressionPolicy, fail_first: Arc<AtomicUsize>) {
    let worker = inbox
        .worker(move |_job| {
            let fail = fail_first.clone();
            async move {
                let left = fail.load(Ordering::SeqCst);
                if left != usize::MAX && left > 0 {
                    fail.fetch_sub(1, Ordering::SeqCst);
                    return Err("not now".to_owned());
                }
                Ok(())
            }
        })
        .suppressions(policy.clone())
        // One at a time: events are applied in the order they were stored.
        .concurrency(1)
        .backoff(Backoff::exponential(Duration::from_millis(1)).max(Duration::from_millis(1)))
        .poll_interval(Duration::from_millis(5))
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = inbox.counts().await.unwrap();
        if c.events.pending + c.events.running == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not settled: {c:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

async fn check(inbox: &Inbox, address: &str) -> Check {
    inbox.suppressions().check(address).await.unwrap()
}

fn at(day: u32) -> jiff::Timestamp {
    // 2026-01-01 00:00 in Tokyo is 2025-12-31T15:00Z.
    let start: jiff::Timestamp = "2025-12-31T15:00:00Z".parse().unwrap();
    start.checked_add(DAY * day).unwrap()
}

#[tokio::test]
async fn scripted_sequences() {
    let dir = tempfile::tempdir().unwrap();
    for url in stores(dir.path(), "scripted").await {
        // The events are received after the last of them happened (a
        // `created` later than a day after receipt is not believed).
        let clock = ManualClock::new(at(61));
        let inbox = open(&url, &clock).await;
        let p = SuppressionPolicy::default();
        const D: u32 = 24 * 60; // minutes a day
        handle(
            &inbox,
            &[
                vec![
                    // A hard bounce, then nothing.
                    bounce("2", "hard@example.jp", 1, 10),
                    // Five soft bounces within the window.
                    bounce("5", "soft5@example.jp", 2, 0),
                    bounce("5", "soft5@example.jp", 3, D),
                    bounce("3", "soft5@example.jp", 4, 2 * D),
                    bounce("4", "soft5@example.jp", 5, 3 * D),
                    bounce("5", "soft5@example.jp", 6, 4 * D),
                    // Five soft bounces over two months: never five in 14 days.
                    bounce("5", "spread@example.jp", 7, 0),
                    bounce("5", "spread@example.jp", 8, 15 * D),
                    bounce("5", "spread@example.jp", 9, 30 * D),
                    bounce("5", "spread@example.jp", 10, 45 * D),
                    bounce("5", "spread@example.jp", 11, 60 * D),
                    // Four soft, then (in the batches below) a success and one
                    // more soft.
                    bounce("5", "healed@example.jp", 12, 0),
                    bounce("5", "healed@example.jp", 13, 1),
                    bounce("5", "healed@example.jp", 14, 2),
                    bounce("5", "healed@example.jp", 15, 3),
                    // Unsubscribed, CMC-suppressed, an unknown code.
                    bounce("11", "unsub@example.jp", 18, 0),
                    bounce("10", "cmc@example.jp", 19, 0),
                    bounce("77", "unknown@example.jp", 20, 0),
                    // Deliveries that say nothing: queued, deferred, failed.
                    delivery("queued", "quiet@example.jp", 21, 0),
                    delivery("deferred", "quiet@example.jp", 21, 1),
                    delivery("failed", "quiet@example.jp", 21, 2),
                ],
                vec![delivery("succeeded", "healed@example.jp", 16, 4)],
                vec![bounce("5", "healed@example.jp", 17, 5)],
            ],
            &p,
        )
        .await;
        clock.set(at(5));
        let c = check(&inbox, "hard@example.jp").await;
        assert_eq!(
            (c.suppressed, c.reason),
            (true, Some(SuppressionReason::Hard)),
            "{url}"
        );
        assert_eq!(c.until, Some(at(90) + Duration::from_secs(600)), "{url}");
        let c = check(&inbox, "soft5@example.jp").await;
        assert_eq!(
            (c.suppressed, c.reason),
            (true, Some(SuppressionReason::Soft)),
            "{url}"
        );
        assert!(
            !check(&inbox, "spread@example.jp").await.suppressed,
            "{url}"
        );
        assert!(
            !check(&inbox, "healed@example.jp").await.suppressed,
            "{url}"
        );
        let c = check(&inbox, "unsub@example.jp").await;
        assert_eq!(
            (c.reason, c.until),
            (Some(SuppressionReason::Unsubscribed), None),
            "{url}"
        );
        let c = check(&inbox, "cmc@example.jp").await;
        assert_eq!(c.reason, Some(SuppressionReason::CmcSuppressed), "{url}");
        assert!(
            !check(&inbox, "unknown@example.jp").await.suppressed,
            "{url}"
        );
        assert!(!check(&inbox, "quiet@example.jp").await.suppressed, "{url}");
        let all = entries(&inbox, true).await;
        let unknown = all
            .iter()
            .find(|e| e.address == "unknown@example.jp")
            .unwrap();
        assert_eq!(
            (unknown.unknown_bounces, unknown.soft_bounces),
            (1, 1),
            "{url}"
        );
        let healed = all
            .iter()
            .find(|e| e.address == "healed@example.jp")
            .unwrap();
        assert_eq!(healed.soft_bounces, 1, "{url}");
        assert!(
            !all.iter().any(|e| e.address == "quiet@example.jp"),
            "{url}"
        );

        // Later: the soft suppression (7 days) and the hard one (90 days)
        // run out; unsubscribed stays.
        clock.set(at(12));
        assert!(!check(&inbox, "soft5@example.jp").await.suppressed, "{url}");
        assert!(check(&inbox, "hard@example.jp").await.suppressed, "{url}");
        clock.set(at(91));
        assert!(!check(&inbox, "hard@example.jp").await.suppressed, "{url}");
        assert!(check(&inbox, "unsub@example.jp").await.suppressed, "{url}");
    }
}

async fn entries(inbox: &Inbox, all: bool) -> Vec<Entry> {
    let mut filter = ListFilter::default();
    filter.suppressed_only = !all;
    filter.limit = 1000;
    inbox.suppressions().list(&filter).await.unwrap()
}

#[tokio::test]
async fn the_same_event_counts_once_sent_twice_or_retried() {
    let dir = tempfile::tempdir().unwrap();
    for url in stores(dir.path(), "once").await {
        let clock = ManualClock::new(at(0));
        let inbox = open(&url, &clock).await;
        // Two hard bounces needed: one bounce, sent twice, is still one.
        let p = SuppressionPolicy::default().hard_after(2);
        let one = vec![bounce("2", "twice@example.jp", 1, 0)];
        handle(&inbox, &[one.clone(), one.clone()], &p).await;
        let c = check(&inbox, "twice@example.jp").await;
        assert!(!c.suppressed, "{url}");
        // A handler that fails first, then succeeds: counted once.
        inbox
            .store(batch(&[bounce("1", "retried@example.jp", 2, 0)]), None)
            .await
            .unwrap();
        let fails = Arc::new(AtomicUsize::new(2));
        let retrying = {
            let clock = clock.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    clock.advance(Duration::from_secs(1));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        run_worker(&inbox, &p, fails.clone()).await;
        retrying.abort();
        assert_eq!(
            fails.load(Ordering::SeqCst),
            0,
            "the handler failed twice first"
        );
        // And replayed by hand: still once.
        inbox
            .replay(&Filter::message_id("<m2@example.com>"))
            .await
            .unwrap();
        run_worker(&inbox, &p, Arc::new(AtomicUsize::new(usize::MAX))).await;
        let all = entries(&inbox, true).await;
        let retried = all
            .iter()
            .find(|e| e.address == "retried@example.jp")
            .unwrap();
        assert_eq!((retried.hard_bounces, retried.reason), (1, None), "{url}");
        let twice = all
            .iter()
            .find(|e| e.address == "twice@example.jp")
            .unwrap();
        assert_eq!(twice.hard_bounces, 1, "{url}");
    }
}

#[tokio::test]
async fn only_the_recipient_that_bounced_is_suppressed() {
    let dir = tempfile::tempdir().unwrap();
    for url in stores(dir.path(), "recipient").await {
        let clock = ManualClock::new(at(0));
        let inbox = open(&url, &clock).await;
        handle(
            &inbox,
            &[vec![
                delivery("succeeded", "a@example.jp", 1, 0),
                delivery("failed", "b@example.jp", 1, 0),
                delivery("succeeded", "c@example.jp", 1, 0),
                bounce("2", "B@Example.JP", 1, 1),
            ]],
            &SuppressionPolicy::default(),
        )
        .await;
        let checks = inbox
            .suppressions()
            .check_many([
                "a@example.jp",
                "b@example.jp",
                "c@example.jp",
                " B@EXAMPLE.jp ",
            ])
            .await
            .unwrap();
        let suppressed: Vec<bool> = checks.iter().map(|c| c.suppressed).collect();
        assert_eq!(suppressed, [false, true, false, true], "{url}");
        assert_eq!(checks[3].address, "b@example.jp");
    }
}

#[tokio::test]
async fn a_kelvin_sign_suppresses_only_itself_and_idn_forms_are_one_recipient() {
    let dir = tempfile::tempdir().unwrap();
    for url in stores(dir.path(), "kelvin").await {
        let clock = ManualClock::new(at(0));
        let inbox = open(&url, &clock).await;
        handle(
            &inbox,
            &[vec![
                // U+212A KELVIN SIGN and U+212B ANGSTROM SIGN: Unicode
                // lower-cases them to `k` and `å`.
                bounce("2", "\u{212A}im@example.jp", 1, 0),
                bounce("2", "\u{212B}sa@example.jp", 1, 1),
                bounce("2", "user@\u{4F8B}\u{3048}.jp", 2, 2),
                bounce("2", "Cafe\u{301}@example.jp", 3, 3),
            ]],
            &SuppressionPolicy::default(),
        )
        .await;
        let checks = inbox
            .suppressions()
            .check_many([
                "kim@example.jp",
                "KIM@example.jp",
                "\u{E5}sa@example.jp",
                "\u{212A}im@example.jp",
                "user@xn--r8jz45g.jp",
                "USER@\u{4F8B}\u{3048}.JP",
                "caf\u{E9}@example.jp",
            ])
            .await
            .unwrap();
        let suppressed: Vec<bool> = checks.iter().map(|c| c.suppressed).collect();
        assert_eq!(
            suppressed,
            [false, false, false, true, true, true, true],
            "{url}"
        );
        assert_eq!(checks[4].address, "user@xn--r8jz45g.jp", "{url}");
        let listed: Vec<String> = entries(&inbox, false)
            .await
            .into_iter()
            .map(|e| e.address)
            .collect();
        assert_eq!(
            listed,
            [
                "caf\u{E9}@example.jp",
                "user@xn--r8jz45g.jp",
                "\u{C5}sa@example.jp",
                "\u{212A}im@example.jp",
            ],
            "{url}"
        );
        // By hand, either IDN form reaches the one row.
        let added = inbox
            .suppressions()
            .add("other@\u{4F8B}\u{3048}.jp", None, "asked")
            .await
            .unwrap();
        assert_eq!(added.address, "other@xn--r8jz45g.jp");
        assert!(
            inbox
                .suppressions()
                .remove("other@xn--r8jz45g.jp", "-")
                .await
                .unwrap(),
            "{url}"
        );
        assert!(!check(&inbox, "other@\u{4F8B}\u{3048}.jp").await.suppressed);
    }
}

#[tokio::test]
async fn add_reports_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    for url in stores(dir.path(), "outcome").await {
        let clock = ManualClock::new(at(0));
        let inbox = open(&url, &clock).await;
        handle(
            &inbox,
            &[vec![
                bounce("11", "unsub@example.jp", 1, 0),
                bounce("2", "hard@example.jp", 1, 1),
            ]],
            &SuppressionPolicy::default(),
        )
        .await;
        let list = inbox.suppressions();
        let history_len = |address: &'static str| {
            let list = list.clone();
            async move { list.history(address).await.unwrap().len() }
        };

        // Unsubscribed: nothing changes, and it says so.
        let before = history_len("unsub@example.jp").await;
        let done = list.add("Unsub@example.jp", None, "by hand").await.unwrap();
        assert_eq!(
            (done.address.as_str(), done.outcome, done.until),
            (
                "unsub@example.jp",
                AddOutcome::Unchanged {
                    because: NotAdded::Unsubscribed
                },
                None
            ),
            "{url}"
        );
        assert_eq!(history_len("unsub@example.jp").await, before, "{url}");
        assert_eq!(
            check(&inbox, "unsub@example.jp").await.reason,
            Some(SuppressionReason::Unsubscribed)
        );

        // A new address: added, with its end.
        let done = list
            .add("new@example.jp", Some(DAY), "holiday")
            .await
            .unwrap();
        assert_eq!(done.outcome, AddOutcome::Added, "{url}");
        assert_eq!(done.until, Some(at(1)), "{url}");

        // A hard bounce (90 days): replaced, and the report names it.
        let done = list.add("hard@example.jp", None, "for good").await.unwrap();
        assert_eq!(
            done.outcome,
            AddOutcome::Replaced {
                previous: SuppressionReason::Hard,
                previous_until: check_until_of_hard(),
            },
            "{url}"
        );

        // An expired entry is not a suppression to replace.
        clock.set(at(2));
        let done = list.add("new@example.jp", None, "again").await.unwrap();
        assert_eq!(done.outcome, AddOutcome::Added, "{url}");

        // Zero time is refused, and changes nothing.
        let err = list
            .add("zero@example.jp", Some(Duration::ZERO), "-")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("ends as it starts"), "{err}");
        assert!(list.history("zero@example.jp").await.unwrap().is_empty());
        assert!(!check(&inbox, "zero@example.jp").await.suppressed);
    }
}

/// When a hard bounce at minute 1 of day 0 ends under the default policy.
fn check_until_of_hard() -> Option<jiff::Timestamp> {
    let bounced = at(0).checked_add(Duration::from_secs(60)).unwrap();
    Some(bounced.checked_add(DAY * 90).unwrap())
}

#[tokio::test]
async fn entries_by_hand_expire_and_can_be_removed() {
    let dir = tempfile::tempdir().unwrap();
    for url in stores(dir.path(), "hand").await {
        let clock = ManualClock::new(at(0));
        let inbox = open(&url, &clock).await;
        // A worker keeps the list (checks of a list nobody keeps fail).
        handle(&inbox, &[], &SuppressionPolicy::default()).await;
        let list = inbox.suppressions();
        list.add("temp@example.jp", Some(DAY), "on holiday")
            .await
            .unwrap();
        list.add("keep@example.jp", None, "asked by phone")
            .await
            .unwrap();
        assert!(check(&inbox, "temp@example.jp").await.suppressed);
        clock.advance(DAY * 2);
        assert!(!check(&inbox, "temp@example.jp").await.suppressed, "{url}");
        let c = check(&inbox, "keep@example.jp").await;
        assert_eq!(
            (c.reason, c.note.as_deref()),
            (Some(SuppressionReason::Manual), Some("asked by phone"))
        );
        // A manual entry is not replaced by a weaker one.
        handle(
            &inbox,
            &[vec![bounce("5", "keep@example.jp", 1, 0)]],
            &SuppressionPolicy::default(),
        )
        .await;
        assert_eq!(
            check(&inbox, "keep@example.jp").await.reason,
            Some(SuppressionReason::Manual)
        );
        assert!(list
            .remove("keep@example.jp", "changed their mind")
            .await
            .unwrap());
        assert!(!check(&inbox, "keep@example.jp").await.suppressed, "{url}");
        let history: Vec<String> = list
            .history("keep@example.jp")
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.change)
            .collect();
        assert_eq!(history, ["added", "bounce 5", "removed"], "{url}");
        assert_eq!(
            entries(&inbox, false).await.len(),
            0,
            "nothing is suppressed now ({url})"
        );
    }
}

/// A random sequence of records over a few recipients and messages.
fn sequence() -> impl Strategy<Value = Vec<Record>> {
    let record = (
        prop::sample::select(vec!["1", "2", "3", "5", "10", "11", "77", "succeeded"]),
        prop::sample::select(vec!["x@example.jp", "y@example.jp", "z@example.jp"]),
        0u32..20,
        0u32..(30 * 24 * 60),
    )
        .prop_map(|(status, to, message, minute)| {
            if status == "succeeded" {
                delivery(status, to, message, minute)
            } else {
                bounce(status, to, message, minute)
            }
        });
    // In the order of their times, as CMC sends them.
    prop::collection::vec(record, 1..25).prop_map(|mut records| {
        records.sort_by_key(|r| r.minute);
        records
    })
}

/// The list as comparable values (the update times aside).
fn snapshot(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            format!(
                "{} {:?} {:?} {:?} {} {} {} {:?}",
                e.address,
                e.reason,
                e.since,
                e.until,
                e.hard_bounces,
                e.soft_bounces,
                e.unknown_bounces,
                e.events
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Replaying every event again leaves the list as it was; and the list
    /// of a sequence with its batches sent twice is the list of the
    /// sequence sent once.
    #[test]
    fn replaying_or_resending_leaves_the_list_as_it_was(records in sequence()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            for url in stores(dir.path(), "prop").await {
                let clock = ManualClock::new(at(40));
                let once = open(&url, &clock).await;
                // One event per batch, in the sequence's order.
                let batches: Vec<Vec<Record>> = records.iter().map(|r| vec![r.clone()]).collect();
                handle(&once, &batches, &SuppressionPolicy::default()).await;
                let first = snapshot(&entries(&once, true).await);
                for m in 0..20 {
                    once.replay(&Filter::message_id(format!("<m{m}@example.com>"))).await.unwrap();
                }
                run_worker(&once, &SuppressionPolicy::default(), Arc::new(AtomicUsize::new(usize::MAX))).await;
                prop_assert_eq!(&snapshot(&entries(&once, true).await), &first, "replayed on {}", url);
            }
            // Sent twice, into a fresh store: the same list.
            let dir2 = tempfile::tempdir().unwrap();
            let dir3 = tempfile::tempdir().unwrap();
            let clock = ManualClock::new(at(40));
            let single = open(&format!("sqlite:{}", dir2.path().join("a.sqlite3").display()), &clock).await;
            let double = open(&format!("sqlite:{}", dir3.path().join("b.sqlite3").display()), &clock).await;
            let batches: Vec<Vec<Record>> = records.iter().map(|r| vec![r.clone()]).collect();
            let doubled: Vec<Vec<Record>> = batches.iter().flat_map(|b| [b.clone(), b.clone()]).collect();
            handle(&single, &batches, &SuppressionPolicy::default()).await;
            handle(&double, &doubled, &SuppressionPolicy::default()).await;
            prop_assert_eq!(
                snapshot(&entries(&single, true).await),
                snapshot(&entries(&double, true).await)
            );
            Ok(())
        })?;
    }
}

/// CMC's own list, from `blocks` records (their schema is not public: the
/// address from `email`, a removal from a `status` such as `delete`).
#[tokio::test]
async fn blocks_mirror_cmcs_list() {
    let dir = tempfile::tempdir().unwrap();
    for url in stores(dir.path(), "blocks").await {
        let clock = ManualClock::new(at(0));
        let inbox = open(&url, &clock).await;
        let blocks = |records: &str| {
            let body = format!(
                r#"{{"event_type":"blocks","server_composition":"pro","event":{{"blocks":[{records}]}}}}"#
            );
            Webhook::parse("application/json", Bytes::from(body)).unwrap()
        };
        inbox
            .store(
                blocks(
                    r#"{"email":"Listed@Example.jp","status":"add","id":1},
                       {"email":"gone-too@example.jp","id":2}"#,
                ),
                None,
            )
            .await
            .unwrap();
        run_worker(
            &inbox,
            &SuppressionPolicy::default(),
            Arc::new(AtomicUsize::new(usize::MAX)),
        )
        .await;
        let c = check(&inbox, "listed@example.jp").await;
        assert_eq!(
            (c.suppressed, c.reason, c.until),
            (true, Some(SuppressionReason::CmcList), None),
            "{url}"
        );
        assert!(
            check(&inbox, "gone-too@example.jp").await.suppressed,
            "{url}"
        );
        inbox
            .store(
                blocks(r#"{"email":"listed@example.jp","status":"delete","id":3}"#),
                None,
            )
            .await
            .unwrap();
        run_worker(
            &inbox,
            &SuppressionPolicy::default(),
            Arc::new(AtomicUsize::new(usize::MAX)),
        )
        .await;
        assert!(
            !check(&inbox, "listed@example.jp").await.suppressed,
            "{url}"
        );
        let history: Vec<String> = inbox
            .suppressions()
            .history("listed@example.jp")
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.change)
            .collect();
        assert_eq!(history, ["cmc_list add", "cmc_list remove"], "{url}");
    }
}

/// Runs a worker built with nothing but a handler (or, `keep` false,
/// `without_suppressions()`) until every event is done.
async fn run_plain_worker(inbox: &Inbox, keep: bool) {
    let mut worker = inbox
        .worker(|_job| async { Ok::<(), String>(()) })
        .poll_interval(Duration::from_millis(5));
    if !keep {
        worker = worker.without_suppressions();
    }
    let worker = worker.spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = inbox.counts().await.unwrap();
        if c.events.pending + c.events.running == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not settled: {c:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_worker_keeps_the_list_by_default_and_a_list_nobody_keeps_says_so() {
    let dir = tempfile::tempdir().unwrap();
    for url in stores(dir.path(), "by_default").await {
        let clock = ManualClock::new(at(0));
        let inbox = open(&url, &clock).await;
        let list = inbox.suppressions();
        let keeping = list.keeping().await.unwrap();
        assert!(!keeping.is_kept(), "{url}: {keeping:?}");
        // Nobody keeps the list: a check says so, not "not suppressed".
        let err = list.check("hard@example.jp").await.unwrap_err();
        assert_eq!(err.kind(), InboxErrorKind::NotKept, "{url}: {err}");
        assert!(err.to_string().contains("no worker keeps"), "{err}");
        let err = list.check_many(["a@example.jp"]).await.unwrap_err();
        assert_eq!(err.kind(), InboxErrorKind::NotKept, "{url}");

        // A worker built without `.suppressions(..)` keeps it.
        inbox
            .store(batch(&[bounce("2", "hard@example.jp", 1, 0)]), None)
            .await
            .unwrap();
        run_plain_worker(&inbox, true).await;
        let c = check(&inbox, "hard@example.jp").await;
        assert_eq!(c.reason, Some(SuppressionReason::Hard), "{url}: {c:?}");

        // Another process on the same store reads it from the store.
        let other = open(&url, &clock).await;
        let keeping = other.suppressions().keeping().await.unwrap();
        assert_eq!(
            (keeping.since, keeping.skipped),
            (Some(at(0)), None),
            "{url}"
        );
        assert!(
            other
                .suppressions()
                .check("Hard@example.jp")
                .await
                .unwrap()
                .suppressed,
            "{url}"
        );
        other.close().await;
        inbox.close().await;
    }
}

#[tokio::test]
async fn a_worker_without_the_list_is_recorded_and_its_bounces_stay_off_it() {
    let dir = tempfile::tempdir().unwrap();
    for url in stores(dir.path(), "opted_out").await {
        let clock = ManualClock::new(at(0));
        let inbox = open(&url, &clock).await;
        inbox
            .store(batch(&[bounce("2", "early@example.jp", 1, 0)]), None)
            .await
            .unwrap();
        run_plain_worker(&inbox, false).await;
        let keeping = inbox.suppressions().keeping().await.unwrap();
        assert_eq!(
            (keeping.since, keeping.skipped),
            (None, Some(at(0))),
            "{url}"
        );
        let err = inbox.suppressions().check("early@example.jp").await;
        assert_eq!(err.unwrap_err().kind(), InboxErrorKind::NotKept, "{url}");

        // Kept from day 1: the bounce done on day 0 is not on the list.
        clock.advance(DAY);
        run_plain_worker(&inbox, true).await;
        let keeping = inbox.suppressions().keeping().await.unwrap();
        assert_eq!(keeping.since, Some(at(1)), "{url}");
        assert!(!keeping.is_skipped_since_kept(), "{url}");
        assert!(!check(&inbox, "early@example.jp").await.suppressed, "{url}");

        // A worker without it on day 2: recorded, and said.
        clock.advance(DAY);
        run_plain_worker(&inbox, false).await;
        let keeping = inbox.suppressions().keeping().await.unwrap();
        assert_eq!(
            (keeping.since, keeping.skipped),
            (Some(at(1)), Some(at(2))),
            "{url}"
        );
        assert!(keeping.is_skipped_since_kept(), "{url}");
        inbox.close().await;
    }
}

/// Runs `sql` (statements separated by `;`) on the store at `url`.
async fn execute(url: &str, sql: &str) {
    use sqlx::Connection;
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        // The inbox's tables are in its schema.
        sqlx::raw_sql("SET search_path TO cmc_webhook")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
}

/// A store whose list a worker kept before the keeping was recorded (its
/// history holds a worker's changes): the migration that adds the record
/// dates the keeping from the first of them, and a list kept only by hand
/// does not count.
#[tokio::test]
async fn the_migration_counts_a_list_kept_before_as_kept() {
    let dir = tempfile::tempdir().unwrap();
    for url in stores(dir.path(), "migrated").await {
        let migration = if url.starts_with("sqlite:") {
            include_str!("../crates/inbox/migrations/sqlite/0011_suppression_keeping.sql")
                .to_owned()
        } else {
            // Its time as the PostgreSQL columns hold it since migration
            // 0010 (timestamptz), so that it runs on this store.
            let text =
                include_str!("../crates/inbox/migrations/postgres/0009_suppression_keeping.sql");
            assert_eq!(text.matches("BIGINT").count(), 1);
            text.replace("BIGINT", "TIMESTAMPTZ")
        };
        let migration = migration.as_str();
        let clock = ManualClock::new(at(0));
        let inbox = open(&url, &clock).await;
        // By hand only: not kept after the migration.
        inbox
            .suppressions()
            .add("hand@example.jp", None, "by hand")
            .await
            .unwrap();
        execute(&url, "DROP TABLE cmc_suppression_keeping").await;
        execute(&url, migration).await;
        let keeping = inbox.suppressions().keeping().await.unwrap();
        assert!(!keeping.is_kept(), "{url}: {keeping:?}");

        // A worker's change on day 3: kept since then.
        clock.advance(DAY * 3);
        inbox
            .store(batch(&[bounce("2", "hard@example.jp", 1, 0)]), None)
            .await
            .unwrap();
        run_plain_worker(&inbox, true).await;
        clock.advance(DAY);
        run_plain_worker(&inbox, true).await;
        execute(&url, "DROP TABLE cmc_suppression_keeping").await;
        execute(&url, migration).await;
        let keeping = inbox.suppressions().keeping().await.unwrap();
        assert_eq!(
            (keeping.since, keeping.skipped),
            (Some(at(3)), None),
            "{url}"
        );
        inbox.close().await;
    }
}

/// A long history is read a page at a time, newest first, through the
/// index: `history_page` says how many changes there are in all and where
/// the next page starts; `history` is bounded to the newest
/// `HISTORY_LIMIT`, oldest first; a page of 0 and an `after` holding
/// U+0000 are refused with `Invalid` on every backend.
#[tokio::test]
async fn a_long_history_is_read_a_page_at_a_time() {
    use cmc_webhook::inbox::suppression::{HistoryPage, HISTORY_PAGE_MAX};
    let dir = tempfile::tempdir().unwrap();
    for url in stores(dir.path(), "history_pages").await {
        let clock = ManualClock::new(jiff::Timestamp::from_second(1_800_000_000).unwrap());
        let inbox = open(&url, &clock).await;
        let list = inbox.suppressions();
        for n in 0..120 {
            list.add("Long@Example.JP", None, &format!("change {n}"))
                .await
                .unwrap();
            clock.advance(Duration::from_secs(1));
        }
        list.add("other@example.jp", None, "elsewhere")
            .await
            .unwrap();

        let mut notes = Vec::new();
        let mut before = None;
        let mut pages = 0;
        loop {
            let page: HistoryPage = list
                .history_page("long@example.jp", before, 50)
                .await
                .unwrap();
            assert_eq!(page.total, 120, "{url}");
            assert!(page.changes.len() <= 50);
            assert!(
                page.changes.windows(2).all(|w| w[0].id > w[1].id),
                "newest first"
            );
            notes.extend(page.changes.iter().map(|c| c.note.clone().unwrap()));
            pages += 1;
            match page.older {
                Some(older) => {
                    assert_eq!(Some(older), page.changes.last().map(|c| c.id));
                    before = Some(older);
                }
                None => break,
            }
        }
        assert_eq!(pages, 3, "{url}: 50, 50, 20");
        let expected: Vec<String> = (0..120).rev().map(|n| format!("change {n}")).collect();
        assert_eq!(notes, expected, "{url}");

        // The whole history, oldest first, as before (under the bound).
        let all = list.history("long@example.jp").await.unwrap();
        assert_eq!(all.len(), 120);
        assert_eq!(all[0].note.as_deref(), Some("change 0"));
        // A page larger than the most is read as the most.
        let big = list
            .history_page("long@example.jp", None, HISTORY_PAGE_MAX * 10)
            .await
            .unwrap();
        assert_eq!((big.changes.len(), big.older), (120, None));
        // An address with no change: an empty page.
        let none = list.history_page("new@example.jp", None, 50).await.unwrap();
        assert_eq!((none.total, none.changes.len(), none.older), (0, 0, None));

        let zero = list
            .history_page("long@example.jp", None, 0)
            .await
            .unwrap_err();
        assert_eq!(zero.kind(), InboxErrorKind::Invalid);
        let mut filter = ListFilter::default();
        filter.after = Some("a\0b@example.jp".into());
        let nul = list.list(&filter).await.unwrap_err();
        assert_eq!(nul.kind(), InboxErrorKind::Invalid, "{url}: {nul}");
        inbox.close().await;
    }
}
