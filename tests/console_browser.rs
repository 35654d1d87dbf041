//! The web console in a real browser: headless Chromium (Debian's
//! `chromium` and `chromium-driver`) driven over WebDriver against the
//! console served on loopback, on a SQLite store filled through the
//! inbox's API. It logs in, finds a message by Message-ID, replays a
//! dead row and sees it done, and checks that hostile stored text shows
//! as text and runs nothing; every page is checked for its landmarks and
//! labels, and for fitting a 320 px wide screen.
//!
//! Screenshots of every step: `<target dir>/console-screenshots/<test>/`
//! (`target/console-screenshots/...`, or under `CARGO_TARGET_DIR`).
//! Skipped with a line saying so when Chromium is not installed, unless
//! `CMC_REQUIRE_BROWSER` is set (CI).

#[path = "common/browser.rs"]
mod browser;
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use browser::Browser;
use bytes::Bytes;
use cmc_receiver::console::{self, auth::Users, Console};
use cmc_receiver::serve;
use cmc_webhook::inbox::{Inbox, Job};
use cmc_webhook::test_util::sample_inbound;
use cmc_webhook::Webhook;
use common::inbox::kill_rows;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";

/// Stored text that runs script if a page puts it in as markup: each way
/// sets `window.__cmcPwned` (and the script the title).
const HOSTILE: &str = "<script>window.__cmcPwned='script';document.title='pwned'</script>\
<img src=x onerror=\"window.__cmcPwned='img'\"><svg onload=\"window.__cmcPwned='svg'\"></svg>\
\"'><b>bold?</b>";

/// What the page's scripts did: `[__cmcPwned or null, document.title]`.
const PROBE: &str = "return [typeof window.__cmcPwned === 'undefined' ? null : \
                     String(window.__cmcPwned), document.title];";

/// The page's accessibility problems found by script: landmarks, one
/// heading of level one, a label for every field, and (at a narrow
/// width) no sideways scrolling of the page.
const A11Y: &str = r#"
const problems = [];
if (!document.documentElement.lang) problems.push('no lang on <html>');
if (document.querySelectorAll('main').length !== 1) problems.push('not one <main>');
if (document.querySelectorAll('h1').length !== 1) problems.push('not one <h1>');
for (const f of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
  const labelled = (f.labels && f.labels.length > 0) || f.getAttribute('aria-label')
    || f.getAttribute('aria-labelledby');
  if (!labelled) problems.push('a field without a label: ' + (f.name || f.outerHTML.slice(0, 80)));
}
for (const b of document.querySelectorAll('button, a[href]')) {
  if (!b.textContent.trim() && !b.getAttribute('aria-label')) problems.push('a control without text: ' + b.outerHTML.slice(0, 80));
}
if (document.documentElement.scrollWidth > window.innerWidth + 1)
  problems.push('the page scrolls sideways: ' + document.documentElement.scrollWidth + ' px in ' + window.innerWidth);
return problems;
"#;

fn bounce(message_id: &str, to: &str, status: &str) -> Webhook {
    let body = serde_json::json!({
        "event_type": "bounces",
        "server_composition": "pro",
        "event": {"bounces": [{
            "created": "2023-01-25 14:03:09",
            "status": status,
            "to": to,
            "messageId": message_id,
        }]}
    });
    Webhook::parse("application/json", Bytes::from(body.to_string())).unwrap()
}

async fn serve_console(inbox: Inbox) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let users = Users::parse_list(&format!("{USER}:{PASSWORD}")).unwrap();
    let router = console::router(Console::new(inbox, users, false));
    tokio::spawn(serve::serve(
        listener,
        router,
        serve::Limits::default(),
        std::future::pending(),
    ));
    addr
}

/// Asserts that no hostile script ran on the page shown.
async fn assert_nothing_ran(b: &Browser, page: &str) {
    let probe = b.eval(PROBE).await;
    assert_eq!(
        probe[0],
        serde_json::Value::Null,
        "{page}: a script ran: {probe}"
    );
    assert!(
        !probe[1].as_str().unwrap_or_default().contains("pwned"),
        "{page}: the title was changed: {probe}"
    );
}

/// Asserts the page has no accessibility problem [`A11Y`] finds.
async fn assert_accessible(b: &Browser, page: &str) {
    let problems = b.eval(A11Y).await;
    assert_eq!(problems, serde_json::json!([]), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_logs_in_finds_a_message_replays_a_dead_row_and_hostile_text_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A long file name, shown unbroken on the overview: it must wrap at
    // 320 px.
    let inbox = Inbox::sqlite(
        dir.path()
            .join("a-store-with-a-rather-long-file-name.sqlite3"),
    )
    .open()
    .await
    .unwrap();
    // Event 1 is the one to find and replay.
    inbox
        .store(
            bounce("<find.me@example.com>", "someone@example.jp", "2"),
            None,
        )
        .await
        .unwrap();
    for n in 0..3 {
        inbox
            .store(
                bounce(&format!("<{n}@example.com>"), "other@example.jp", "5"),
                None,
            )
            .await
            .unwrap();
    }
    inbox
        .store(
            bounce(&format!("<{HOSTILE}@example.com>"), HOSTILE, HOSTILE),
            None,
        )
        .await
        .unwrap();
    let mut mail = sample_inbound(false);
    mail.subject = HOSTILE.into();
    mail.envelope_from = HOSTILE.into();
    inbox.store(Webhook::Inbound(mail), None).await.unwrap();
    kill_rows(&inbox, "relay timed out after 10 s", 6).await;
    let addr = serve_console(inbox.clone()).await;

    let Some(mut b) = Browser::start(
        "an_operator_logs_in_finds_a_message_replays_a_dead_row_and_hostile_text_runs_nothing",
        addr,
    )
    .await
    else {
        return;
    };

    // The probe sees a script that runs: a page of its own, first.
    b.client()
        .goto("data:text/html,<title>control</title><script>window.__cmcPwned='control'</script>")
        .await
        .unwrap();
    assert_eq!(
        b.eval(PROBE).await[0],
        "control",
        "the probe would miss a script"
    );

    // Without a session: the login page.
    b.open("/rows?state=dead").await;
    assert!(
        b.path().await.starts_with("/login?next="),
        "{}",
        b.path().await
    );
    assert_eq!(b.text("h1").await, "Log in");
    assert_accessible(&b, "login").await;
    b.shot("login").await;
    // A wrong password is refused.
    b.fill("#user", USER).await;
    b.fill("#password", "wrong").await;
    b.click_and_wait("main form button[type=submit]").await;
    b.shot("login-refused").await;
    let refused = b.text("main").await;
    assert!(refused.contains("Wrong user name or password"), "{refused}");
    // Tried again at once, it is held back (the address waits a moment
    // after a failure), and says so.
    b.fill("#user", USER).await;
    b.fill("#password", PASSWORD).await;
    b.click_and_wait("main form button[type=submit]").await;
    b.shot("login-held-back").await;
    let held = b.text("main").await;
    assert!(held.contains("Too many failed logins"), "{held}");
    tokio::time::sleep(cmc_receiver::console::auth::Failures::STEP + Duration::from_millis(200))
        .await;
    // The right one opens the page asked for first, then the overview.
    b.fill("#user", USER).await;
    b.fill("#password", PASSWORD).await;
    b.click_and_wait("main form button[type=submit]").await;
    assert_eq!(b.path().await, "/rows?state=dead");
    assert!(b.text("header").await.contains(USER));
    b.click_and_wait("nav a[href='/']").await;
    assert_eq!(b.path().await, "/");
    assert_eq!(b.text("h1").await, "Overview");
    assert!(b.text("header").await.contains(USER));
    assert!(b.text("main").await.contains("Rows per state"));
    assert_nothing_ran(&b, "overview").await;
    assert_accessible(&b, "overview").await;
    b.shot("overview").await;

    // Search by Message-ID, then the message's timeline.
    b.click_and_wait("nav a[href='/search']").await;
    b.fill("#q", "<find.me@example.com>").await;
    b.click_and_wait("form[role=search] button").await;
    let found = b.text("main").await;
    assert!(found.contains("find.me@example.com"), "{found}");
    assert!(!found.contains("<0@example.com>"), "{found}");
    assert_accessible(&b, "search").await;
    b.shot("search").await;
    b.click_and_wait("main a[href^='/message?id=']").await;
    assert!(b.text("h1").await.contains("<find.me@example.com>"));
    let timeline = b.text("main").await;
    assert!(timeline.contains("State dead"), "{timeline}");
    assert!(
        timeline.contains("relay timed out after 10 s"),
        "{timeline}"
    );
    assert_accessible(&b, "timeline").await;
    b.shot("timeline-dead").await;

    // Dead rows: select event 1, confirm, replay.
    b.click_and_wait("nav a[href='/rows?state=dead']").await;
    assert_accessible(&b, "dead rows").await;
    b.shot("dead-rows").await;
    b.click("#pick-event-1").await;
    b.click_and_wait("button[name=scope][value=selected]").await;
    assert_eq!(b.text("h1").await, "Replay 1 event row?");
    assert_accessible(&b, "confirmation").await;
    b.shot("replay-confirm").await;
    b.click_and_wait("main form[action='/replay'] button[type=submit]")
        .await;
    let done = b.text("main").await;
    assert!(
        done.contains("1 event row(s) set back to pending, replayed by alice"),
        "{done}"
    );
    b.shot("replay-done").await;
    let counts = inbox.counts().await.unwrap();
    assert_eq!(
        (counts.events.dead, counts.events.pending),
        (4, 1),
        "{counts:?}"
    );
    // The timeline says who replayed it.
    b.open("/message?id=%3Cfind.me%40example.com%3E").await;
    let timeline = b.text("main").await;
    assert!(timeline.contains("State pending"), "{timeline}");
    assert!(timeline.contains("by alice"), "{timeline}");
    b.shot("timeline-replayed").await;
    // The row is no longer among the dead.
    b.open("/rows?kind=event&state=dead").await;
    assert!(
        b.client()
            .find(fantoccini::Locator::Css("#pick-event-1"))
            .await
            .is_err(),
        "event 1 is still listed as dead"
    );

    // Hostile stored text: shown as text, run nowhere.
    for (path, label) in [
        ("/rows?kind=mail&state=dead", "hostile-mail-row"),
        ("/rows?kind=event&state=dead", "hostile-event-row"),
        ("/search?q=other%40example.jp", "hostile-search"),
        ("/", "hostile-overview"),
    ] {
        b.open(path).await;
        assert_nothing_ran(&b, path).await;
        b.shot(label).await;
    }
    b.open("/rows?kind=mail&state=dead").await;
    let shown = b.text("main").await;
    assert!(
        shown.contains("<script>window.__cmcPwned='script'"),
        "the subject is shown as text: {shown}"
    );
    assert_eq!(
        b.eval("return document.querySelectorAll('main script, main img, main svg:not(.chart), main b').length")
            .await,
        0,
        "stored markup became elements"
    );
    let search = format!(
        "/message?id={}",
        console::html::query_escape(&format!("<{HOSTILE}@example.com>"))
    );
    b.open(&search).await;
    assert!(b.text("h1").await.contains("<script>"));
    assert_nothing_ran(&b, "hostile timeline").await;
    b.shot("hostile-timeline").await;

    // A phone's width: every page fits, nothing scrolls sideways but the
    // tables' own boxes.
    b.resize(320, 800).await;
    let width = b.eval("return window.innerWidth").await;
    for (path, label) in [
        ("/", "narrow-overview"),
        ("/search?q=%3Cfind.me%40example.com%3E", "narrow-search"),
        ("/rows?kind=event&state=dead", "narrow-dead-rows"),
        ("/message?id=%3Cfind.me%40example.com%3E", "narrow-timeline"),
    ] {
        b.open(path).await;
        assert_accessible(&b, &format!("{path} at {width} px")).await;
        b.shot(label).await;
    }

    let shots = b.shots().to_owned();
    b.close().await;
    let saved = std::fs::read_dir(&shots).unwrap().count();
    assert!(saved >= 18, "{saved} screenshots in {}", shots.display());
    eprintln!("screenshots: {}", shots.display());
}

/// What the browser test found: a browser posts the console's own forms
/// with `Origin: null` (its `Referrer-Policy: no-referrer`), which passes
/// only with `Sec-Fetch-Site: same-origin`; without it, or from another
/// site, `Origin: null` is refused. Over TCP, no browser needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_origin_passes_only_when_the_browser_says_same_origin() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::sqlite(dir.path().join("inbox.sqlite3"))
        .open()
        .await
        .unwrap();
    let addr = serve_console(inbox).await;
    let body = format!(
        "user={USER}&password={}",
        console::html::query_escape(PASSWORD)
    );
    let status = |extra: &'static str| {
        let body = body.clone();
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                format!(
                    "POST /login HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: \
                     application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).await.unwrap();
            reply[9..12].to_owned()
        }
    };
    // As Chromium sends the login form.
    assert_eq!(
        status("Origin: null\r\nSec-Fetch-Site: same-origin\r\n").await,
        "303"
    );
    for refused in [
        "Origin: null\r\n",
        "Origin: null\r\nSec-Fetch-Site: same-site\r\n",
        "Origin: null\r\nSec-Fetch-Site: none\r\n",
        "Origin: null\r\nSec-Fetch-Site: cross-site\r\n",
        "Origin: http://evil.example\r\nSec-Fetch-Site: same-origin\r\n",
    ] {
        assert_eq!(status(refused).await, "403", "{refused:?}");
    }
}
