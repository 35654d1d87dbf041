//! The web console in a real browser: headless Chromium (Debian's
//! `chromium` and `chromium-driver`) driven over WebDriver against the
//! console served on loopback, on a SQLite store filled through the
//! inbox's API. It logs in, finds a message by Message-ID, replays a
//! dead row and sees it done, and checks that hostile stored text shows
//! as text and runs nothing; it lifts a suppression with a note and sees
//! it in the history, and opens a hostile mail whose HTML body tries to
//! run, navigate and fetch (toward a listener of the test's own, which
//! must see no request); every page is checked for its landmarks and
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
use cmc_receiver::console::{self, auth::Users, Console};
use cmc_receiver::serve;
use cmc_webhook::inbox::Inbox;
use cmc_webhook::test_util::sample_inbound;
use cmc_webhook::Webhook;
use common::inbox::{bounce, kill_rows};

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
    // The address waits a moment after a failure (an attempt within it
    // is answered 429 at once: tests/console.rs checks it over HTTP, where
    // the retry is sure to come within the moment; a browser's steps on a
    // loaded machine may not be).
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

/// A listener the hostile mail points every URL at: it counts what the
/// browser asks of it (a navigation, a fetch, a prefetch, an image, a
/// form, a frame), and answers each with an empty page.
async fn beacon() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut head = vec![0u8; 4096];
                let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut head))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let line = String::from_utf8_lossy(&head[..n])
                    .lines()
                    .next()
                    .unwrap_or("(a connection)")
                    .to_owned();
                kept.lock().unwrap().push(line);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A mail's HTML body that tries every way to run, navigate or fetch,
/// each toward `b` (the beacon).
fn hostile_html(b: &str) -> String {
    format!(
        "<html><head><meta http-equiv=\"refresh\" content=\"0;url={b}/refresh\">\
         <base href=\"{b}/base/\"><link rel=\"prefetch\" href=\"{b}/prefetch\">\
         <link rel=\"stylesheet\" href=\"{b}/css\"><link rel=\"dns-prefetch\" href=\"{b}/dns\">\
         <style>body{{background:url({b}/style-url)}}</style>\
         <script>window.top.document.title='pwned';window.top.location='{b}/top';\
         fetch('{b}/fetch')</script></head>\
         <body onload=\"window.top.location='{b}/onload'\">\
         <p id=\"hello\">hello from the mail</p>\
         <img src=\"{b}/img\" onerror=\"window.top.location='{b}/onerror'\"><img src=\"relative.png\">\
         <p style=\"background-image:url({b}/inline-style)\">styled</p>\
         <form id=\"f\" action=\"{b}/form\" method=\"post\"><input name=\"a\" value=\"b\"></form>\
         <script>document.getElementById('f').submit()</script>\
         <a href=\"{b}/link\" target=\"_top\">a link to click</a>\
         <iframe src=\"{b}/frame\"></iframe>\
         <svg onload=\"window.top.location='{b}/svg'\"><image href=\"{b}/svg-image\"/></svg>\
         <table border=\"1\"><tr><td><b>kept</b> formatting</td></tr></table></body></html>"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lifts_a_suppression_and_a_hostile_mails_html_runs_and_fetches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::sqlite(dir.path().join("inbox.sqlite3"))
        .open()
        .await
        .unwrap();
    let (beacon, seen) = beacon().await;
    let mut mail = sample_inbound(false);
    mail.subject = "An offer you cannot refuse".into();
    mail.html = Some(hostile_html(&format!("http://{beacon}")).into());
    inbox.store(Webhook::Inbound(mail), None).await.unwrap();
    // A worker runs (and so keeps the suppression list) until the mail
    // is dead.
    kill_rows(&inbox, "no mailbox", 1).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !inbox.suppressions().keeping().await.unwrap().is_kept() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let list = inbox.suppressions();
    for n in 0..3 {
        list.add(&format!("kept{n}@example.jp"), None, "asked by phone")
            .await
            .unwrap();
    }
    list.add("gone@example.jp", None, "bounced twice")
        .await
        .unwrap();
    let id = {
        use cmc_webhook::inbox::browse::RowQuery;
        inbox
            .rows(&RowQuery::new(cmc_webhook::inbox::Kind::Mail))
            .await
            .unwrap()[0]
            .id
            .id
    };
    let addr = serve_console(inbox.clone()).await;
    let Some(mut b) = Browser::start(
        "an_operator_lifts_a_suppression_and_a_hostile_mails_html_runs_and_fetches_nothing",
        addr,
    )
    .await
    else {
        return;
    };
    b.open("/login").await;
    b.fill("#user", USER).await;
    b.fill("#password", PASSWORD).await;
    b.click_and_wait("main form button[type=submit]").await;
    assert_eq!(b.path().await, "/");

    // The hostile mail's page: its HTML in the sandboxed frame.
    let page = format!("/mails/{id}");
    b.open(&page).await;
    // The frame loads lazily: shown, it loads.
    b.eval("document.getElementById('html-body').scrollIntoView(); return null;")
        .await;
    // Time for a refresh, a script, a form or a prefetch to act.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(b.path().await, page, "the page was navigated away");
    assert_nothing_ran(&b, "the mail's page").await;
    assert_eq!(
        b.text("h1").await,
        format!("Mail {id}: An offer you cannot refuse")
    );
    assert_accessible(&b, "the mail's page").await;
    b.shot("hostile-mail").await;
    // Inside the frame: the text and formatting, nothing else.
    b.client().enter_frame(0).await.expect("the mail's frame");
    assert_eq!(b.text("p").await, "hello from the mail");
    assert_eq!(b.text("td").await, "kept formatting");
    // Its link is inert: clicked, nothing opens.
    b.click("a").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.client().enter_parent_frame().await.unwrap();
    assert_eq!(b.path().await, page, "the link navigated the page");
    let windows = b.client().windows().await.unwrap();
    assert_eq!(windows.len(), 1, "the link opened a window");
    assert_nothing_ran(&b, "the mail's page after the click").await;
    assert_eq!(
        *seen.lock().unwrap(),
        Vec::<String>::new(),
        "the browser asked the beacon for something"
    );

    // Look up an address, lift its suppression with a note, see it in
    // the history.
    b.click_and_wait("nav a[href='/suppressions']").await;
    b.fill("#address", "Gone@Example.JP").await;
    b.click_and_wait("form[role=search] button").await;
    assert!(
        b.text("#standing-text")
            .await
            .starts_with("Suppressed: gone@example.jp"),
        "{}",
        b.text("#standing-text").await
    );
    assert_accessible(&b, "suppression lookup").await;
    b.shot("suppression-lookup").await;
    b.fill("#remove-note", "lifted after a call").await;
    b.click_and_wait("#remove-form button[type=submit]").await;
    assert!(b.text("#standing-text").await.starts_with("Not suppressed"));
    let history = b.text("#history").await;
    assert!(history.contains("alice: lifted after a call"), "{history}");
    assert!(history.contains("removed"), "{history}");
    assert!(history.contains("bounced twice"), "{history}");
    assert_accessible(&b, "suppression history").await;
    b.shot("suppression-history").await;
    assert!(!list.check("gone@example.jp").await.unwrap().suppressed);
    // The list by reason: the lifted address is no longer on it.
    b.open("/suppressions?reason=manual").await;
    let entries = b.text("#entries").await;
    assert!(entries.contains("kept0@example.jp"), "{entries}");
    assert!(!entries.contains("gone@example.jp"), "{entries}");
    assert_accessible(&b, "suppressions by reason").await;
    b.shot("suppressions-by-reason").await;
    assert_eq!(*seen.lock().unwrap(), Vec::<String>::new());

    let shots = b.shots().to_owned();
    b.close().await;
    let saved = std::fs::read_dir(&shots).unwrap().count();
    assert_eq!(saved, 4, "{saved} screenshots in {}", shots.display());
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
