//! Inbound mail routed to mailboxes, on real stores: SQLite files, and
//! PostgreSQL when `CMC_POSTGRES_URL` names a server (a fresh database per
//! test). Mails are stored as the inbox stores a webhook, routed by a real
//! worker, and handled by each mailbox's handler.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cmc_webhook::inbox::mailbox::{
    DeliveryFilter, DeliveryState, Handled, MailJob, Mailbox, MailboxDelivery, Mailboxes, Unrouted,
};
use cmc_webhook::inbox::{Backoff, Inbox, Kind, ManualClock, State};
use cmc_webhook::Webhook;

const DAY: Duration = Duration::from_secs(86_400);

/// The stores a test runs on (see `common::inbox::stores`).
async fn stores(dir: &std::path::Path, test: &str) -> Vec<String> {
    common::inbox::stores(dir, test, "mailboxes on PostgreSQL", "cmc_mbox").await
}

fn dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// An inbound mail (JSON, no attachments) to `to` through `filter`.
fn mail(to: &str, filter: &str, subject: &str) -> Webhook {
    let body = serde_json::json!({
        "server_composition": "pro",
        "filter": filter,
        "headers": [{"name": "Subject", "value": subject}],
        "subject": subject,
        "envelope-from": "sender@example.com",
        "envelope-to": to,
        "text": format!("{subject}\r\n"),
    });
    Webhook::parse("application/json", Bytes::from(body.to_string())).unwrap()
}

/// Stores `webhook`, returning its mail's id.
async fn store(inbox: &Inbox, webhook: Webhook) {
    let receipt = inbox.store(webhook, None).await.unwrap();
    assert_eq!(receipt.stored, 1);
}

/// What a test's handlers or hooks collect.
type Shared<T> = Arc<Mutex<Vec<T>>>;

/// What the handlers were handed: (mailbox, subject, recipients).
type Seen = Shared<(String, String, Vec<String>)>;

fn recording(name: &str, seen: &Seen) -> Mailbox {
    let seen = seen.clone();
    Mailbox::new(name, move |job: MailJob| {
        seen.lock().unwrap().push((
            job.mailbox.clone(),
            job.mail.subject.to_string(),
            job.recipients.clone(),
        ));
        async { Ok::<(), String>(()) }
    })
}

/// Mailboxes named `names` that record what they are handed in `seen`
/// (see [`recording`]), and `routes` as (route, mailbox), in their order.
fn recording_routes(seen: &Seen, names: &[&str], routes: &[(&str, &str)]) -> Mailboxes {
    let mut mailboxes = Mailboxes::new();
    for name in names {
        mailboxes = mailboxes.mailbox(recording(name, seen)).unwrap();
    }
    for (route, mailbox) in routes {
        mailboxes = mailboxes.route(*route, mailbox).unwrap();
    }
    mailboxes
}

/// Waits until no delivery is pending, processing or failed, and at least
/// `n` deliveries exist; returns them all.
async fn settled(inbox: &Inbox, n: usize) -> Vec<MailboxDelivery> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The mails first: routing marks a mail done in the transaction
        // that writes its deliveries, so a list read after sees them.
        let waiting_mails = inbox.counts().await.unwrap().mails.get(State::Pending);
        let all = inbox
            .deliveries()
            .list(&DeliveryFilter::all().limit(1000))
            .await
            .unwrap();
        let open = all.iter().any(|d| {
            matches!(
                d.state,
                DeliveryState::Pending | DeliveryState::Processing | DeliveryState::Failed
            )
        });
        if all.len() >= n && !open && waiting_mails == 0 {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} settled deliveries: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn by_subject(seen: &Seen) -> BTreeMap<String, (String, Vec<String>)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(m, s, r)| (s.clone(), (m.clone(), r.clone())))
        .collect()
}

#[tokio::test]
async fn routes_are_tried_in_order_and_the_first_match_wins() {
    let dir = dir();
    for url in stores(dir.path(), "order").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let seen = Seen::default();
        let mailboxes = recording_routes(
            &seen,
            &["support", "general", "replies"],
            &[
                ("Support@Example.JP", "support"),
                ("*@example.jp", "general"),
                // Declared after the domain route, which takes its mails first.
                ("reply+*@example.jp", "replies"),
                ("reply+*@replies.example.jp", "replies"),
            ],
        );
        for (to, subject) in [
            ("SUPPORT@example.jp", "exact, upper case"),
            ("<support@EXAMPLE.jp>", "exact, angle brackets"),
            ("support+x@example.jp", "plus address of exact"),
            ("reply+7@example.jp", "shadowed prefix"),
            ("reply+8@Replies.example.jp", "prefix"),
            ("reply@replies.example.jp", "prefix without plus"),
        ] {
            store(&inbox, mail(to, "f", subject)).await;
        }
        let worker = inbox.mailbox_worker(mailboxes).spawn();
        let all = settled(&inbox, 6).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();

        let seen = by_subject(&seen);
        let to = |s: &str| seen.get(s).map(|(m, _)| m.as_str());
        assert_eq!(to("exact, upper case"), Some("support"), "{url}");
        assert_eq!(to("exact, angle brackets"), Some("support"));
        assert_eq!(to("plus address of exact"), Some("general"));
        assert_eq!(to("shadowed prefix"), Some("general"));
        assert_eq!(to("prefix"), Some("replies"));
        assert_eq!(seen["prefix"].1, ["reply+8@replies.example.jp"]);
        assert_eq!(to("prefix without plus"), None);
        let unrouted: Vec<_> = all
            .iter()
            .filter(|d| d.state == DeliveryState::Unrouted)
            .collect();
        assert_eq!(unrouted.len(), 1, "{all:#?}");
        assert_eq!(unrouted[0].subject, "prefix without plus");
        assert_eq!(unrouted[0].mailbox, None);
        assert_eq!(unrouted[0].recipients, ["reply@replies.example.jp"]);
        let general = all.iter().find(|d| d.subject == "shadowed prefix").unwrap();
        assert_eq!(general.route.as_deref(), Some("*@example.jp"));
        assert_eq!(general.state, DeliveryState::Delivered);
        assert_eq!(general.attempts, 1);
        assert!(general.done_at.is_some());
        inbox.close().await;
    }
}

#[tokio::test]
async fn a_kelvin_sign_reaches_no_ascii_route_and_idn_forms_one_route() {
    let dir = dir();
    for url in stores(dir.path(), "kelvin").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let seen = Seen::default();
        let mailboxes = recording_routes(
            &seen,
            &["kim", "sales", "idn"],
            &[
                ("kim@example.jp", "kim"),
                ("/^SALES@/", "sales"),
                ("*@\u{4F8B}\u{3048}.jp", "idn"),
            ],
        );
        for (to, subject) in [
            ("\u{212A}im@example.jp", "kelvin sign"),
            ("\u{17F}ales@example.jp", "long s"),
            ("Kim@example.jp", "ascii k"),
            ("Sales@example.jp", "ascii s"),
            ("a@xn--r8jz45g.jp", "a-label"),
            ("b@\u{4F8B}\u{3048}.JP", "u-label"),
        ] {
            store(&inbox, mail(to, "f", subject)).await;
        }
        let worker = inbox.mailbox_worker(mailboxes).spawn();
        let all = settled(&inbox, 6).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();

        let seen = by_subject(&seen);
        let to = |s: &str| seen.get(s).map(|(m, _)| m.as_str());
        assert_eq!(to("kelvin sign"), None, "{url}");
        assert_eq!(to("long s"), None, "{url}");
        assert_eq!(to("ascii k"), Some("kim"), "{url}");
        assert_eq!(to("ascii s"), Some("sales"), "{url}");
        assert_eq!(to("a-label"), Some("idn"), "{url}");
        assert_eq!(to("u-label"), Some("idn"), "{url}");
        assert_eq!(seen["u-label"].1, ["b@xn--r8jz45g.jp"]);
        let unrouted: BTreeMap<&str, &Vec<String>> = all
            .iter()
            .filter(|d| d.state == DeliveryState::Unrouted)
            .map(|d| (d.subject.as_str(), &d.recipients))
            .collect();
        assert_eq!(unrouted.len(), 2, "{all:#?}");
        assert_eq!(unrouted["kelvin sign"], &["\u{212A}im@example.jp"]);
        assert_eq!(unrouted["long s"], &["\u{17F}ales@example.jp"]);
        inbox.close().await;
    }
}

#[tokio::test]
async fn unrouted_mails_are_kept_counted_and_routed_again_once_a_fallback_exists() {
    let dir = dir();
    for url in stores(dir.path(), "unrouted").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let seen = Seen::default();
        let hooked: Shared<(String, Vec<String>)> = Arc::default();
        let hook = hooked.clone();
        let mailboxes = recording_routes(&seen, &["support"], &[("support@example.jp", "support")])
            .on_unrouted(move |u: Unrouted| {
                hook.lock()
                    .unwrap()
                    .push((u.mail.subject.to_string(), u.recipients.clone()));
                async {}
            });
        store(&inbox, mail("nobody@example.jp", "f", "lost?")).await;
        store(&inbox, mail("support@example.jp", "f", "found")).await;
        let worker = inbox.mailbox_worker(mailboxes.clone()).spawn();
        let all = settled(&inbox, 2).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while hooked.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the unrouted hook was called");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            *hooked.lock().unwrap(),
            [("lost?".to_string(), vec!["nobody@example.jp".to_string()])]
        );
        let states: Vec<_> = all.iter().map(|d| (d.subject.as_str(), d.state)).collect();
        assert_eq!(
            states,
            [
                ("lost?", DeliveryState::Unrouted),
                ("found", DeliveryState::Delivered)
            ],
            "{url}"
        );
        // The mail is kept (routed, so `done`), and counted apart.
        let counts = inbox.deliveries().counts().await.unwrap();
        assert_eq!(counts.len(), 2);
        assert_eq!(counts[0].mailbox.as_deref(), Some("support"));
        assert_eq!(counts[0].get(DeliveryState::Delivered), 1);
        assert_eq!(counts[1].mailbox, None);
        assert_eq!(counts[1].get(DeliveryState::Unrouted), 1);
        assert_eq!(inbox.counts().await.unwrap().mails.get(State::Done), 2);

        // A fallback now, and the unrouted mail routed again: it reaches
        // the fallback, and the delivered mail is not handled twice.
        let catchall = mailboxes
            .mailbox(recording("catchall", &seen))
            .unwrap()
            .fallback("catchall")
            .unwrap();
        let replayed = inbox
            .deliveries()
            .replay(&DeliveryFilter::unrouted())
            .await
            .unwrap();
        assert_eq!((replayed.deliveries, replayed.rerouted), (0, 1));
        let worker = inbox.mailbox_worker(catchall).spawn();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let counts = inbox.deliveries().counts().await.unwrap();
            if counts.iter().any(|c| {
                c.mailbox.as_deref() == Some("catchall") && c.get(DeliveryState::Delivered) == 1
            }) {
                assert!(counts.iter().all(|c| c.mailbox.is_some()), "{counts:?}");
                break;
            }
            assert!(Instant::now() < deadline, "{counts:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        let seen = by_subject(&seen);
        assert_eq!(seen["lost?"].0, "catchall");
        assert_eq!(seen["found"].0, "support");
        assert_eq!(seen.len(), 2);
        inbox.close().await;
    }
}

#[tokio::test]
async fn a_mail_with_several_recipients_reaches_each_of_their_mailboxes_once() {
    let dir = dir();
    for url in stores(dir.path(), "multi").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let seen = Seen::default();
        let mailboxes = recording_routes(
            &seen,
            &["support", "billing"],
            &[
                ("*@support.example.jp", "support"),
                ("*@billing.example.jp", "billing"),
            ],
        );
        store(
            &inbox,
            mail(
                "a@billing.example.jp, B@support.example.jp, c@nowhere.example.jp, \
                 d@billing.example.jp, a@billing.example.jp",
                "f",
                "to many",
            ),
        )
        .await;
        let worker = inbox.mailbox_worker(mailboxes).spawn();
        let all = settled(&inbox, 3).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();

        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(
            seen,
            [
                (
                    "billing".to_string(),
                    "to many".to_string(),
                    vec![
                        "a@billing.example.jp".to_string(),
                        "d@billing.example.jp".to_string()
                    ]
                ),
                (
                    "support".to_string(),
                    "to many".to_string(),
                    vec!["b@support.example.jp".to_string()]
                ),
            ],
            "{url}"
        );
        assert_eq!(all.len(), 3);
        assert!(all.iter().all(|d| d.mail_id == all[0].mail_id));
        let unrouted = all.iter().find(|d| d.mailbox.is_none()).unwrap();
        assert_eq!(unrouted.recipients, ["c@nowhere.example.jp"]);
        assert_eq!(unrouted.state, DeliveryState::Unrouted);
        // The mail's own deliveries, through the API.
        let of_mail = inbox
            .deliveries()
            .list(&DeliveryFilter::all().mail(all[0].mail_id))
            .await
            .unwrap();
        assert_eq!(of_mail, all);
        inbox.close().await;
    }
}

#[tokio::test]
async fn filter_routes_take_the_mails_of_their_cmc_rule() {
    let dir = dir();
    for url in stores(dir.path(), "filter").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let seen = Seen::default();
        let mailboxes = recording_routes(
            &seen,
            &["scans", "other"],
            &[
                ("filter:scanner *@example.jp", "scans"),
                ("filter:Documents", "scans"),
            ],
        )
        .fallback("other")
        .unwrap();
        store(&inbox, mail("a@example.jp", "scanner", "scanner, address")).await;
        store(
            &inbox,
            mail("a@other.jp", "scanner", "scanner, other address"),
        )
        .await;
        store(&inbox, mail("x@any.jp", "documents", "documents rule")).await;
        store(&inbox, mail("", "documents", "no recipient")).await;
        store(&inbox, mail("a@example.jp", "info", "other rule")).await;
        let worker = inbox.mailbox_worker(mailboxes).spawn();
        settled(&inbox, 5).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        let seen = by_subject(&seen);
        let to = |s: &str| seen[s].0.as_str();
        assert_eq!(to("scanner, address"), "scans", "{url}");
        assert_eq!(to("scanner, other address"), "other");
        assert_eq!(to("documents rule"), "scans");
        assert_eq!(to("no recipient"), "scans");
        assert!(seen["no recipient"].1.is_empty());
        assert_eq!(to("other rule"), "other");
        inbox.close().await;
    }
}

#[tokio::test]
async fn source_routes_take_the_mails_of_their_cmc_account() {
    let dir = dir();
    for url in stores(dir.path(), "source").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let seen = Seen::default();
        let sources: Shared<(String, String)> = Shared::default();
        let recorded = sources.clone();
        let mailboxes = recording_routes(
            &seen,
            &["sandbox", "shop"],
            &[
                ("source:sandbox", "sandbox"),
                ("source:production *@shop.example.jp", "shop"),
            ],
        )
        .on_unrouted(move |mail: Unrouted| {
            recorded
                .lock()
                .unwrap()
                .push((mail.mail.subject.to_string(), mail.source.clone()));
            async {}
        });
        let from = |name: &str, webhook: Webhook| {
            let source = cmc_webhook::Source::new(name, jiff::tz::TimeZone::UTC, None);
            cmc_webhook::Sourced(source, webhook)
        };
        for (source, to, subject) in [
            ("sandbox", "a@shop.example.jp", "sandbox, shop address"),
            (
                "production",
                "a@shop.example.jp",
                "production, shop address",
            ),
            (
                "production",
                "a@other.example.jp",
                "production, other address",
            ),
            ("default", "a@shop.example.jp", "default, shop address"),
        ] {
            let receipt = inbox
                .store_sourced(from(source, mail(to, "f", subject)), None)
                .await
                .unwrap();
            assert_eq!(receipt.stored, 1);
        }
        let worker = inbox.mailbox_worker(mailboxes).spawn();
        settled(&inbox, 4).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        let seen = by_subject(&seen);
        let to = |s: &str| seen.get(s).map(|(m, _)| m.as_str());
        assert_eq!(to("sandbox, shop address"), Some("sandbox"), "{url}");
        assert_eq!(to("production, shop address"), Some("shop"), "{url}");
        assert_eq!(to("production, other address"), None);
        assert_eq!(to("default, shop address"), None);
        let mut unrouted = sources.lock().unwrap().clone();
        unrouted.sort();
        assert_eq!(
            unrouted,
            [
                ("default, shop address".to_owned(), "default".to_owned()),
                (
                    "production, other address".to_owned(),
                    "production".to_owned()
                ),
            ],
            "{url}"
        );
        inbox.close().await;
    }
}

#[tokio::test]
async fn each_mailbox_retries_with_its_own_policy_and_bounces_without_retrying() {
    let dir = dir();
    for url in stores(dir.path(), "retries").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let flaky_runs = Arc::new(AtomicUsize::new(0));
        let bounce_runs = Arc::new(AtomicUsize::new(0));
        let seen = Seen::default();
        let quick = Backoff::exponential(Duration::from_millis(1))
            .max(Duration::from_millis(5))
            .jitter(0.0);
        let runs = flaky_runs.clone();
        let flaky = Mailbox::new("flaky", move |_job: MailJob| {
            let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n < 3 {
                    Err(format!("not yet ({n})"))
                } else {
                    Ok(())
                }
            }
        })
        .max_attempts(5)
        .backoff(quick);
        let doomed = Mailbox::new("doomed", |_job: MailJob| async {
            Err::<(), _>("the ticket system is down")
        })
        .max_attempts(2)
        .backoff(quick);
        let runs = bounce_runs.clone();
        let strict = Mailbox::new("strict", move |job: MailJob| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok::<_, String>(Handled::bounced(format!(
                    "no ticket for {}",
                    job.recipients[0]
                )))
            }
        })
        .backoff(quick);
        let mailboxes = Mailboxes::new()
            .mailbox(flaky)
            .unwrap()
            .mailbox(doomed)
            .unwrap()
            .mailbox(strict)
            .unwrap()
            .mailbox(recording("fine", &seen))
            .unwrap()
            .route("flaky@example.jp", "flaky")
            .unwrap()
            .route("doomed@example.jp", "doomed")
            .unwrap()
            .route("strict@example.jp", "strict")
            .unwrap()
            .route("fine@example.jp", "fine")
            .unwrap();
        for to in ["flaky", "doomed", "strict", "fine"] {
            store(&inbox, mail(&format!("{to}@example.jp"), "f", to)).await;
        }
        let worker = inbox.mailbox_worker(mailboxes).spawn();
        let all = settled(&inbox, 4).await;
        let stopped = worker.shutdown(Duration::from_secs(5)).await.unwrap();
        let state = |s: &str| {
            let d = all.iter().find(|d| d.subject == s).unwrap();
            (
                d.state,
                d.attempts,
                d.last_error.clone(),
                d.bounce_reason.clone(),
            )
        };
        assert_eq!(
            state("flaky"),
            (DeliveryState::Delivered, 3, None, None),
            "{url}"
        );
        assert_eq!(
            state("doomed"),
            (
                DeliveryState::Dead,
                2,
                Some("the ticket system is down".into()),
                None
            )
        );
        assert_eq!(
            state("strict"),
            (
                DeliveryState::Bounced,
                1,
                None,
                Some("no ticket for strict@example.jp".into())
            )
        );
        assert_eq!(state("fine"), (DeliveryState::Delivered, 1, None, None));
        assert_eq!(flaky_runs.load(Ordering::SeqCst), 3);
        assert_eq!(bounce_runs.load(Ordering::SeqCst), 1);
        assert_eq!(
            (stopped.done, stopped.bounced, stopped.failed),
            (2, 1, 4),
            "{stopped:?}"
        );

        // Replaying the dead delivery runs its handler again, from attempt 1.
        let replayed = inbox
            .deliveries()
            .replay(&DeliveryFilter::all().mailbox("doomed"))
            .await
            .unwrap();
        assert_eq!((replayed.deliveries, replayed.rerouted), (1, 0));
        let dead = inbox
            .deliveries()
            .list(&DeliveryFilter::all().states([DeliveryState::Pending]))
            .await
            .unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].subject.as_str(), dead[0].attempts), ("doomed", 0));
        inbox.close().await;
    }
}

#[tokio::test]
async fn a_mailbox_never_runs_more_handlers_than_its_concurrency() {
    let dir = dir();
    for url in stores(dir.path(), "concurrency").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, m) = (now.clone(), most.clone());
        let serial = Mailbox::new("serial", move |_job: MailJob| {
            let (n, m) = (n.clone(), m.clone());
            async move {
                let running = n.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                n.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), String>(())
            }
        })
        .concurrency(2);
        let mailboxes = Mailboxes::new()
            .mailbox(serial)
            .unwrap()
            .fallback("serial")
            .unwrap();
        for i in 0..12 {
            store(&inbox, mail("a@example.jp", "f", &format!("mail {i}"))).await;
        }
        let worker = inbox.mailbox_worker(mailboxes).spawn();
        settled(&inbox, 12).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        assert_eq!(most.load(Ordering::SeqCst), 2, "{url}");
        inbox.close().await;
    }
}

#[tokio::test]
async fn a_worker_with_mailboxes_still_hands_events_to_its_handler() {
    let dir = dir();
    for url in stores(dir.path(), "events").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let seen = Seen::default();
        let events = Arc::new(AtomicUsize::new(0));
        let mailboxes = recording_routes(&seen, &["all"], &[])
            .fallback("all")
            .unwrap();
        let body = r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[
          {"created":"2023-01-25 14:03:09","status":"2015","to":"x@example.jp","messageId":"<1@x>"}]}}"#;
        store(
            &inbox,
            Webhook::parse("application/json", Bytes::from(body)).unwrap(),
        )
        .await;
        store(&inbox, mail("a@example.jp", "f", "one")).await;
        let e = events.clone();
        let worker = inbox
            .worker(move |job: cmc_webhook::inbox::Job| {
                assert_eq!(job.id.kind, Kind::Event, "mails go to the mailboxes");
                e.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), String>(()) }
            })
            .mailboxes(mailboxes)
            .spawn();
        settled(&inbox, 1).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while inbox.counts().await.unwrap().events.get(State::Done) < 1 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        assert_eq!(events.load(Ordering::SeqCst), 1, "{url}");
        assert_eq!(seen.lock().unwrap().len(), 1);

        // A mailbox worker leaves events alone.
        store(
            &inbox,
            Webhook::parse(
                "application/json",
                Bytes::from(body.replace("2015", "2016")),
            )
            .unwrap(),
        )
        .await;
        let worker = inbox
            .mailbox_worker(Mailboxes::new().mailbox(recording("x", &seen)).unwrap())
            .spawn();
        tokio::time::sleep(Duration::from_millis(300)).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        assert_eq!(inbox.counts().await.unwrap().events.get(State::Pending), 1);
        inbox.close().await;
    }
}

#[tokio::test]
async fn delivered_mails_and_their_attachments_go_after_their_mailbox_retention() {
    let dir = dir();
    for url in stores(dir.path(), "retention").await {
        let clock = ManualClock::new("2026-03-01T00:00:00Z".parse().unwrap());
        let inbox = Inbox::builder(&url)
            .unwrap()
            .clock(clock.clone())
            .open()
            .await
            .unwrap();
        let seen = Seen::default();
        let mailboxes = recording_routes(&seen, &["short"], &[])
            .mailbox(recording("long", &seen).retention(90 * DAY))
            .unwrap()
            .mailbox(
                Mailbox::new("refuse", |_j: MailJob| async {
                    Ok::<_, String>(Handled::bounced("no"))
                })
                .retention(DAY),
            )
            .unwrap()
            .route("short@example.jp", "short")
            .unwrap()
            .route("long@example.jp", "long")
            .unwrap()
            .route("refuse@example.jp", "refuse")
            .unwrap()
            .route("both@example.jp", "short")
            .unwrap()
            .route("both@other.jp", "long")
            .unwrap();
        let mut with_attachment = cmc_webhook::test_util::sample_inbound(true);
        with_attachment.envelope_to = "short@example.jp".into();
        store(&inbox, Webhook::Inbound(with_attachment)).await;
        store(&inbox, mail("long@example.jp", "f", "long")).await;
        store(&inbox, mail("refuse@example.jp", "f", "refuse")).await;
        store(&inbox, mail("both@example.jp, both@other.jp", "f", "both")).await;
        let worker = inbox.mailbox_worker(mailboxes).spawn();
        settled(&inbox, 5).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();

        // The inbox's own prune leaves routed mails to their mailboxes.
        clock.advance(31 * DAY);
        let pruned = inbox.prune(DAY).await.unwrap();
        assert_eq!((pruned.events, pruned.mails), (0, 0), "{url}");

        let deliveries = inbox.deliveries();
        let p = deliveries.prune("short", 30 * DAY).await.unwrap();
        // Its two deliveries; the mail to both@ keeps its other one.
        assert_eq!((p.deliveries, p.mails), (2, 1));
        let p = deliveries.prune("refuse", DAY).await.unwrap();
        assert_eq!((p.deliveries, p.mails), (1, 1));
        let p = deliveries.prune("long", 90 * DAY).await.unwrap();
        assert_eq!((p.deliveries, p.mails), (0, 0));
        assert_eq!(inbox.counts().await.unwrap().mails.total(), 2);
        assert_eq!(
            attachment_rows(&url).await,
            0,
            "the attachment went with its mail"
        );

        // The worker prunes by itself, each mailbox after its retention.
        clock.advance(60 * DAY);
        let mailboxes = Mailboxes::new()
            .mailbox(recording("long", &seen).retention(90 * DAY))
            .unwrap()
            .prune_every(Duration::from_secs(1));
        let worker = inbox.mailbox_worker(mailboxes).spawn();
        let deadline = Instant::now() + Duration::from_secs(10);
        while inbox.counts().await.unwrap().mails.total() > 0 {
            assert!(
                Instant::now() < deadline,
                "the worker pruned the long mailbox"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        assert!(inbox
            .deliveries()
            .list(&DeliveryFilter::all())
            .await
            .unwrap()
            .is_empty());
        inbox.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_mails_go_after_their_retention() {
    // No route and no fallback: a stranger's mail to any address is kept
    // unrouted, but not for good.
    let dir = dir();
    for url in stores(dir.path(), "unrouted_retention").await {
        let clock = ManualClock::new("2026-03-01T00:00:00Z".parse().unwrap());
        let inbox = Inbox::builder(&url)
            .unwrap()
            .clock(clock.clone())
            .open()
            .await
            .unwrap();
        let seen = Seen::default();
        let mailboxes = recording_routes(&seen, &["support"], &[("support@example.jp", "support")]);
        let mut stranger = cmc_webhook::test_util::sample_inbound(true);
        stranger.envelope_to = "nobody@example.jp".into();
        store(&inbox, Webhook::Inbound(stranger)).await;
        store(&inbox, mail("other@example.jp", "f", "also lost")).await;
        store(&inbox, mail("support@example.jp", "f", "found")).await;
        let worker = inbox.mailbox_worker(mailboxes.clone()).spawn();
        settled(&inbox, 3).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();

        // Inbox::prune takes them with the mails' retention (the routed
        // mail stays with its mailbox).
        clock.advance(2 * DAY);
        let pruned = inbox.prune(3 * DAY).await.unwrap();
        assert_eq!(pruned.mails, 0, "{url}");
        let pruned = inbox.prune(DAY).await.unwrap();
        assert_eq!(pruned.mails, 2, "{url}");
        assert_eq!(inbox.counts().await.unwrap().mails.total(), 1);
        assert_eq!(attachment_rows(&url).await, 0, "{url}");

        // The mailbox worker prunes them by itself, after
        // `unrouted_retention`.
        store(&inbox, mail("again@example.jp", "f", "lost again")).await;
        let worker = inbox
            .mailbox_worker(
                mailboxes
                    .clone()
                    .unrouted_retention(DAY)
                    .prune_every(Duration::from_secs(1)),
            )
            .spawn();
        settled(&inbox, 2).await;
        clock.advance(2 * DAY);
        let deadline = Instant::now() + Duration::from_secs(10);
        while inbox.counts().await.unwrap().mails.total() > 1 {
            assert!(
                Instant::now() < deadline,
                "the worker pruned the unrouted mail"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        let left = inbox
            .deliveries()
            .list(&DeliveryFilter::all())
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].state, DeliveryState::Delivered);
        inbox.close().await;
    }
}

/// The rows of `cmc_mail_attachments` in the store at `url`.
async fn attachment_rows(url: &str) -> i64 {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let db = rusqlite::Connection::open(path).unwrap();
        return db
            .query_row("SELECT COUNT(*) FROM cmc_mail_attachments", [], |r| {
                r.get(0)
            })
            .unwrap();
    }
    #[cfg(feature = "postgres")]
    {
        let mut conn = common::inbox::pg_store(url).await;
        sqlx::query_scalar("SELECT COUNT(*) FROM cmc_mail_attachments")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
    #[cfg(not(feature = "postgres"))]
    unreachable!("{url} is not SQLite")
}

#[tokio::test]
async fn a_handler_reads_attachments_only_when_it_asks() {
    let dir = dir();
    for url in stores(dir.path(), "lazy").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let mut sent = cmc_webhook::test_util::sample_inbound(true);
        sent.envelope_to = "docs@example.jp".into();
        let data = Bytes::from(
            (0..3_000_000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<_>>(),
        );
        sent.attachments[0].data = data.clone();
        store(&inbox, Webhook::Inbound(sent.clone())).await;
        let got: Shared<(bool, Bytes, bool, String)> = Arc::default();
        let g = got.clone();
        let docs = Mailbox::new("docs", move |mut job: MailJob| {
            let g = g.clone();
            async move {
                let empty_before = job.mail.attachments[0].data.is_empty();
                let one = job.attachment(0).await.map_err(|e| e.to_string())?;
                let missing = job.attachment(1).await.unwrap_err().to_string();
                job.load_attachments().await.map_err(|e| e.to_string())?;
                let loaded = job.mail.attachments[0].data == one;
                g.lock().unwrap().push((empty_before, one, loaded, missing));
                Ok::<(), String>(())
            }
        });
        let mailboxes = Mailboxes::new()
            .mailbox(docs)
            .unwrap()
            .fallback("docs")
            .unwrap();
        let worker = inbox.mailbox_worker(mailboxes).spawn();
        settled(&inbox, 1).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        let got = got.lock().unwrap().clone();
        assert_eq!(got.len(), 1, "{url}");
        let (empty_before, one, loaded, missing) = &got[0];
        assert!(empty_before, "the job came without the attachment's bytes");
        assert!(*one == data, "attachment(0) read the bytes back");
        assert!(loaded);
        assert!(missing.contains("no attachment 1"), "{missing}");
        inbox.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_store_route_and_deliver_each_mail_once() {
    let dir = dir();
    for url in stores(dir.path(), "fleet").await {
        // Two inboxes (two pools, as two processes would have), a mailbox
        // worker on each, while mails keep arriving.
        let first = Inbox::open(&url).await.unwrap();
        let second = Inbox::open(&url).await.unwrap();
        let handled: Shared<(i64, i64)> = Arc::default();
        let fleet = |handled: &Shared<(i64, i64)>| {
            let mut mailboxes = Mailboxes::new();
            for name in ["a", "b"] {
                let handled = handled.clone();
                mailboxes = mailboxes
                    .mailbox(
                        Mailbox::new(name, move |job: MailJob| {
                            handled.lock().unwrap().push((job.id, job.mail_id));
                            async { Ok::<(), String>(()) }
                        })
                        .concurrency(4),
                    )
                    .unwrap();
            }
            mailboxes
                .route("*@a.example.jp", "a")
                .unwrap()
                .route("*@b.example.jp", "b")
                .unwrap()
        };
        let workers = [
            first.mailbox_worker(fleet(&handled)).spawn(),
            second.mailbox_worker(fleet(&handled)).spawn(),
        ];
        const MAILS: usize = 150;
        for i in 0..MAILS {
            // Every third mail goes to both mailboxes.
            let to = match i % 3 {
                0 => format!("x{i}@a.example.jp"),
                1 => format!("x{i}@b.example.jp"),
                _ => format!("x{i}@a.example.jp, x{i}@b.example.jp"),
            };
            let inbox = if i % 2 == 0 { &first } else { &second };
            store(inbox, mail(&to, "f", &format!("mail {i}"))).await;
        }
        let expected = MAILS + MAILS / 3;
        let all = settled(&first, expected).await;
        for w in workers {
            w.shutdown(Duration::from_secs(5)).await.unwrap();
        }
        assert_eq!(all.len(), expected, "{url}");
        assert!(all.iter().all(|d| d.state == DeliveryState::Delivered));
        let mut handled = handled.lock().unwrap().clone();
        assert_eq!(handled.len(), expected, "each delivery handled once");
        handled.sort();
        handled.dedup();
        assert_eq!(handled.len(), expected);
        first.close().await;
        second.close().await;
    }
}

#[tokio::test]
async fn deliveries_waiting_for_a_mailbox_no_longer_declared_are_warned_of() {
    let logs = common::logs::Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let dir = dir();
    let url = format!("sqlite:{}", dir.path().join("renamed.sqlite3").display());
    let inbox = Inbox::open(&url).await.unwrap();
    store(&inbox, mail("a@example.jp", "f", "waits")).await;
    let later = Backoff::exponential(Duration::from_secs(3600)).jitter(0.0);
    let old = Mailboxes::new()
        .mailbox(
            Mailbox::new("old", |_j: MailJob| async { Err::<(), _>("not now") }).backoff(later),
        )
        .unwrap()
        .fallback("old")
        .unwrap();
    let worker = inbox.mailbox_worker(old).spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while inbox
        .deliveries()
        .list(&DeliveryFilter::all().states([DeliveryState::Failed]))
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();

    let seen = Seen::default();
    let renamed = recording_routes(&seen, &["new"], &[])
        .fallback("new")
        .unwrap();
    let worker = inbox.mailbox_worker(renamed).spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !logs.text().contains("deliveries wait for a mailbox") {
        assert!(Instant::now() < deadline, "{}", logs.text());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let line = logs
        .text()
        .lines()
        .find(|l| l.contains("deliveries wait for a mailbox"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("WARN") && line.contains("mailbox=old") && line.contains("waiting=1"),
        "{line}"
    );
    assert!(seen.lock().unwrap().is_empty());
    inbox.close().await;
}

#[tokio::test]
async fn an_events_only_worker_beside_a_mailbox_worker_leaves_every_mail_to_the_mailboxes() {
    let dir = dir();
    for url in stores(dir.path(), "split").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let seen = Seen::default();
        let kinds: Shared<Kind> = Arc::default();
        let k = kinds.clone();
        let events = inbox
            .worker(move |job: cmc_webhook::inbox::Job| {
                k.lock().unwrap().push(job.id.kind);
                async { Ok::<(), String>(()) }
            })
            .events_only()
            .spawn();
        let mails = inbox
            .mailbox_worker(
                recording_routes(&seen, &["all"], &[])
                    .fallback("all")
                    .unwrap(),
            )
            .spawn();
        for i in 0..30 {
            store(
                &inbox,
                mail(&format!("u{i}@example.jp"), "f", &format!("m{i}")),
            )
            .await;
            if i % 6 == 0 {
                let body = format!(
                    r#"{{"event_type":"bounces","server_composition":"pro","event":{{"bounces":[
                    {{"created":"2023-01-25 14:03:09","status":"2015","to":"x{i}@example.jp","messageId":"<{i}@x>"}}]}}}}"#
                );
                store(
                    &inbox,
                    Webhook::parse("application/json", Bytes::from(body)).unwrap(),
                )
                .await;
            }
        }
        settled(&inbox, 30).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while kinds.lock().unwrap().len() < 5 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        events.shutdown(Duration::from_secs(5)).await.unwrap();
        mails.shutdown(Duration::from_secs(5)).await.unwrap();
        assert_eq!(*kinds.lock().unwrap(), [Kind::Event; 5], "{url}");
        assert_eq!(seen.lock().unwrap().len(), 30);
        inbox.close().await;
    }
}

#[tokio::test]
async fn routing_again_reaches_a_mailbox_only_with_the_recipients_it_has_not_had() {
    let dir = dir();
    for url in stores(dir.path(), "reroute").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let seen = Seen::default();
        let first = recording_routes(&seen, &["support"], &[("*@support.example.jp", "support")]);
        store(
            &inbox,
            mail("a@support.example.jp, b@other.example.jp", "f", "two"),
        )
        .await;
        let worker = inbox.mailbox_worker(first.clone()).spawn();
        settled(&inbox, 2).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();

        // The same mailbox becomes the fallback: the unrouted recipient
        // reaches it, on its own; the one it had is not handed again.
        let second = first.fallback("support").unwrap();
        let r = inbox
            .deliveries()
            .replay(&DeliveryFilter::unrouted())
            .await
            .unwrap();
        assert_eq!((r.deliveries, r.rerouted), (0, 1), "{url}");
        let worker = inbox.mailbox_worker(second.clone()).spawn();
        let all = settled(&inbox, 2).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        let rows: Vec<_> = all
            .iter()
            .map(|d| (d.mailbox.as_deref(), d.recipients.clone(), d.state))
            .collect();
        assert_eq!(
            rows,
            [
                (
                    Some("support"),
                    vec!["a@support.example.jp".to_string()],
                    DeliveryState::Delivered
                ),
                (
                    Some("support"),
                    vec!["b@other.example.jp".to_string()],
                    DeliveryState::Delivered
                ),
            ],
            "{url}"
        );
        let handed: Vec<Vec<String>> = seen.lock().unwrap().iter().map(|s| s.2.clone()).collect();
        assert_eq!(
            handed,
            [
                vec!["a@support.example.jp".to_string()],
                vec!["b@other.example.jp".to_string()]
            ]
        );

        // Replaying the mail itself routes it again: every recipient has
        // reached its mailbox, so nothing is handed again.
        let replayed = inbox
            .replay(
                &cmc_webhook::inbox::Filter::dead()
                    .states([State::Done])
                    .kind(Kind::Mail),
            )
            .await
            .unwrap();
        assert_eq!(replayed, 1);
        let worker = inbox.mailbox_worker(second).spawn();
        let again = settled(&inbox, 2).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        assert_eq!(again, all);
        assert_eq!(seen.lock().unwrap().len(), 2);
        inbox.close().await;
    }
}

#[tokio::test]
async fn extreme_settings_are_clamped_not_refused_by_the_database() {
    let dir = dir();
    for url in stores(dir.path(), "extreme").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let seen = Seen::default();
        let mailboxes = Mailboxes::new()
            .mailbox(recording("wide", &seen).concurrency(usize::MAX))
            .unwrap()
            .fallback("wide")
            .unwrap();
        store(&inbox, mail("a@example.jp", "f", "one")).await;
        let worker = inbox.mailbox_worker(mailboxes).spawn();
        settled(&inbox, 1).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 1, "{url}");
        let all = inbox
            .deliveries()
            .list(&DeliveryFilter::all().limit(usize::MAX))
            .await
            .unwrap();
        assert_eq!(all.len(), 1);
        inbox.close().await;
    }
}

#[tokio::test]
async fn shutdown_waits_for_the_unrouted_hooks_running() {
    let dir = dir();
    let url = format!("sqlite:{}", dir.path().join("hooks.sqlite3").display());
    let inbox = Inbox::open(&url).await.unwrap();
    let done: Shared<i64> = Arc::default();
    let d = done.clone();
    let mailboxes = Mailboxes::new().on_unrouted(move |u: Unrouted| {
        let d = d.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            d.lock().unwrap().push(u.mail_id);
        }
    });
    store(&inbox, mail("nobody@example.jp", "f", "hook")).await;
    let worker = inbox.mailbox_worker(mailboxes).spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while inbox
        .deliveries()
        .list(&DeliveryFilter::unrouted())
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        done.lock().unwrap().len(),
        1,
        "the hook finished before the shutdown returned"
    );
    inbox.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_envelope_recipients_are_routed_in_linear_time_and_kept() {
    let dir = dir();
    for url in stores(dir.path(), "hostile").await {
        let inbox = Inbox::open(&url).await.unwrap();
        let seen = Seen::default();
        let mailboxes = recording_routes(
            &seen,
            &["support", "regex"],
            &[
                ("support@example.jp", "support"),
                // Backtracking engines take exponential time on this one.
                ("/(a+)+b$/", "regex"),
            ],
        );
        let many: String = (0..20_000).map(|i| format!("u{i}@x.jp, ")).collect();
        let cases = [
            (format!("{many}Support@Example.JP"), "many"),
            (",".repeat(1 << 20), "commas"),
            ("a".repeat(1 << 20), "token"),
            ("a\u{0}b@example.jp, support@example.jp\u{0}".into(), "nul"),
            ("\u{202e}support@example.jp".into(), "bidi"),
            ("\"support@example.jp\"@evil.example".into(), "quoted"),
        ];
        for (to, subject) in &cases {
            store(&inbox, mail(to, "f", subject)).await;
        }
        // More envelope text than one round reads (4 Mi characters): the
        // rest is routed by the next rounds, at once.
        for i in 0..4 {
            let to = format!("{i}{}", "b".repeat(1 << 20));
            store(&inbox, mail(&to, "f", &format!("big {i}"))).await;
        }
        let started = Instant::now();
        let worker = inbox
            .mailbox_worker(mailboxes)
            .poll_interval(Duration::from_secs(60))
            .spawn();
        let all = settled(&inbox, cases.len() + 1 + 4).await;
        worker.shutdown(Duration::from_secs(5)).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        let of = |subject: &str| -> Vec<(Option<String>, usize)> {
            all.iter()
                .filter(|d| d.subject == subject)
                .map(|d| (d.mailbox.clone(), d.recipients.len()))
                .collect()
        };
        assert_eq!(
            of("many"),
            [(Some("support".into()), 1), (None, 20_000)],
            "{url}"
        );
        assert_eq!(of("commas"), [(None, 0)]);
        for i in 0..4 {
            assert_eq!(of(&format!("big {i}")), [(None, 1)]);
        }
        assert_eq!(of("token"), [(None, 1)]);
        for subject in ["nul", "bidi", "quoted"] {
            assert_eq!(of(subject).len(), 1, "{subject}");
            assert_eq!(of(subject)[0].0, None, "{subject} is no support@ address");
        }
        assert_eq!(seen.lock().unwrap().len(), 1);
        inbox.close().await;
    }
}

/// The warning for a mail stored unrouted names its recipients escaped
/// and cut: a stranger writes the envelope, CR/LF and 2 MB included.
#[tokio::test]
async fn the_unrouted_warning_escapes_and_cuts_the_recipients() {
    let logs = common::logs::Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let dir = dir();
    let url = format!(
        "sqlite:{}",
        dir.path().join("unrouted-log.sqlite3").display()
    );
    let inbox = Inbox::open(&url).await.unwrap();
    let to = format!("evil\r\nforged\u{1b}[2J{}@example.jp", "x".repeat(2 << 20));
    store(&inbox, mail(&to, "f", "long envelope")).await;
    let seen = Seen::default();
    let mailboxes = recording_routes(&seen, &["a"], &[("a@example.jp", "a")]);
    let worker = inbox.mailbox_worker(mailboxes).spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !logs.text().contains("stored unrouted") {
        assert!(Instant::now() < deadline, "no unrouted warning");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("stored unrouted"))
        .unwrap();
    assert!(line.len() < 2_000, "a warning of {} bytes", line.len());
    assert!(
        line.contains("forged\\u{1b}[2J") && line.ends_with("..."),
        "{line}"
    );
    assert!(!text.contains('\u{1b}'));
    inbox.close().await;
}
