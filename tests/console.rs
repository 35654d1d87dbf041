//! The web console over TCP: a real SQLite store filled through the
//! inbox's API, the console's router on a loopback port with the serve
//! loop of the receiver, and a raw HTTP client. Login, sessions, CSRF,
//! the security headers, escaping of hostile stored text, the pages, and
//! a replay recorded with who did it; then the program refusing to start
//! a console without its users.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use cmc_receiver::console::{self, auth::Users, Console};
use cmc_receiver::serve;
use cmc_webhook::inbox::{Inbox, Job};
use cmc_webhook::test_util::sample_inbound;
use cmc_webhook::Webhook;
use common::http::{send_raw, Reply};
use common::inbox::{bounce, kill_rows};

const USER: &str = "alice";
const PASSWORD: &str = "correct horse battery staple";

/// A hostile text: markup, quotes, CR/LF, a bidi override, U+0000.
const HOSTILE: &str =
    "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>\r\nX-Forged: 1\u{202e}gnp.exe\u{0}";

async fn inbox(dir: &std::path::Path) -> Inbox {
    Inbox::sqlite(dir.join("inbox.sqlite3"))
        .open()
        .await
        .unwrap()
}

async fn serve_console(inbox: Inbox) -> SocketAddr {
    serve_this(console_of(inbox)).await
}

fn console_of(inbox: Inbox) -> Console {
    let users = Users::parse_list(&format!("{USER}:{PASSWORD},bob:other")).unwrap();
    Console::new(inbox, users, false)
}

async fn serve_this(console: Console) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = console::router(console);
    tokio::spawn(serve::serve(
        listener,
        router,
        serve::Limits::default(),
        std::future::pending(),
    ));
    addr
}

async fn get(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Reply {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    send_raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
}

async fn post(
    addr: SocketAddr,
    path: &str,
    cookie: Option<&str>,
    extra: &str,
    body: &str,
) -> Reply {
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    send_raw(
        addr,
        format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{cookie}{extra}Content-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", console::html::query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Logs in; returns the cookie pair and the CSRF token of the session.
async fn login(addr: SocketAddr) -> (String, String) {
    let reply = post(
        addr,
        "/login",
        None,
        "",
        &form(&[("user", USER), ("password", PASSWORD), ("next", "/rows")]),
    )
    .await;
    assert_eq!(reply.status, 303, "{reply:?}");
    assert_eq!(reply.header("location"), Some("/rows"));
    let set = reply.header("set-cookie").unwrap().to_owned();
    let pair = set.split(';').next().unwrap().to_owned();
    let page = get(addr, "/", Some(&pair)).await;
    assert_eq!(page.status, 200, "{page:?}");
    let csrf = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    (pair, csrf)
}

/// The headers every answer carries.
fn assert_secure_headers(reply: &Reply) {
    let csp = reply
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{reply:?}"));
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("referrer-policy"), Some("no-referrer"));
}

/// The body has no markup of the hostile text, and no raw control
/// character.
fn assert_inert(body: &str) {
    assert!(!body.contains("<script>alert"), "a script tag came through");
    assert!(!body.contains("<img src=x"), "an img tag came through");
    assert!(!body.contains("\"'><"), "a quote broke out of an attribute");
    if let Some(at) = body.find('\u{202e}') {
        let mut start = at.saturating_sub(200);
        while !body.is_char_boundary(start) {
            start -= 1;
        }
        panic!("a bidi override came through: {:?}", &body[start..at]);
    }
    assert!(!body.contains('\u{0}'), "U+0000 came through");
    assert!(!body.contains("\r\nX-Forged"), "CR/LF came through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_every_page_sends_to_the_login_and_answers_carry_the_headers() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve_console(inbox(dir.path()).await).await;
    for path in [
        "/",
        "/search?q=x",
        "/rows?state=dead",
        "/message?id=%3Ca%40b%3E",
        "/raw/1",
        "/raw/1/download",
        "/replay?scope=filter",
        "/mails/1",
        "/mails/1/html",
        "/mails/1/attachments/1",
        "/suppressions?address=a%40b.jp",
        "/learning",
    ] {
        let reply = get(addr, path, None).await;
        assert_eq!(reply.status, 303, "{path}: {reply:?}");
        let location = reply.header("location").unwrap();
        assert!(location.starts_with("/login?next=%2F"), "{location}");
        assert_secure_headers(&reply);
    }
    // A made-up session is no session.
    let forged = get(addr, "/", Some(&format!("cmc_console={}", "a".repeat(64)))).await;
    assert_eq!(forged.status, 303);
    let login = get(addr, "/login?next=//evil.example/", None).await;
    assert_eq!(login.status, 200);
    assert_secure_headers(&login);
    assert_eq!(login.header("cache-control"), Some("no-store"));
    assert!(
        !login.body.contains("evil.example"),
        "a foreign next was kept"
    );
    assert!(login.body.contains("<label for=\"password\">"));
    // The style sheet: long cache, same headers.
    let style_path = login
        .body
        .split("href=\"/static/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let style = get(addr, &format!("/static/{style_path}"), None).await;
    assert_eq!(style.status, 200);
    assert!(style.header("cache-control").unwrap().contains("immutable"));
    assert_secure_headers(&style);
    assert_eq!(get(addr, "/nothing", None).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_opens_a_strict_session_and_a_wrong_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve_console(inbox(dir.path()).await).await;
    let wrong = post(
        addr,
        "/login",
        None,
        "",
        &form(&[("user", USER), ("password", "nope")]),
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    assert!(wrong.body.contains("Wrong user name or password"));
    assert_eq!(wrong.header("retry-after"), Some("1"));
    // Right after a failure, the address is held back: even the right
    // password is not looked at (429 at once, nothing to guess with).
    let held = post(
        addr,
        "/login",
        None,
        "",
        &form(&[("user", USER), ("password", PASSWORD)]),
    )
    .await;
    assert_eq!(held.status, 429);
    assert!(held.header("set-cookie").is_none());
    assert!(held.header("retry-after").is_some());
    assert!(held.body.contains("Too many failed logins"));
    tokio::time::sleep(console::auth::Failures::STEP + Duration::from_millis(100)).await;
    // bob's password is not alice's; the second failure waits twice as long.
    let crossed = post(
        addr,
        "/login",
        None,
        "",
        &form(&[("user", USER), ("password", "other")]),
    )
    .await;
    assert_eq!(crossed.status, 401);
    tokio::time::sleep(console::auth::Failures::STEP * 2 + Duration::from_millis(100)).await;

    let reply = post(
        addr,
        "/login",
        None,
        "",
        &form(&[
            ("user", USER),
            ("password", PASSWORD),
            ("next", "https://evil.example/"),
        ]),
    )
    .await;
    assert_eq!(reply.status, 303);
    assert_eq!(
        reply.header("location"),
        Some("/"),
        "only a local next is followed"
    );
    let cookie = reply.header("set-cookie").unwrap();
    let (pair, attributes) = cookie.split_once(';').unwrap();
    let id = pair.strip_prefix("cmc_console=").unwrap();
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(attribute), "{cookie}");
    }
    assert!(!attributes.contains("Secure"), "plain HTTP: no Secure");
    let page = get(addr, "/", Some(pair)).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<main"));
    assert!(page.body.contains(USER));

    // Logout needs the token, then ends the session.
    let (pair, csrf) = login(addr).await;
    assert_eq!(
        post(addr, "/logout", Some(&pair), "", "csrf=wrong")
            .await
            .status,
        403
    );
    assert_eq!(get(addr, "/", Some(&pair)).await.status, 200);
    let out = post(addr, "/logout", Some(&pair), "", &form(&[("csrf", &csrf)])).await;
    assert_eq!(out.status, 303);
    assert_eq!(get(addr, "/", Some(&pair)).await.status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_counts_rows_and_draws_the_hours() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(dir.path()).await;
    for n in 0..5 {
        inbox
            .store(
                bounce(&format!("<{n}@example.com>"), "user@example.jp", "2015"),
                None,
            )
            .await
            .unwrap();
    }
    inbox
        .store(bounce("<soft@example.com>", "user@example.jp", "1"), None)
        .await
        .unwrap();
    let addr = serve_console(inbox.clone()).await;
    let (pair, _) = login(addr).await;
    let page = get(addr, "/", Some(&pair)).await;
    assert_eq!(page.status, 200);
    assert_secure_headers(&page);
    assert!(
        page.body
            .contains("<th scope=\"row\">events</th><td>6</td>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<svg class=\"chart\""));
    assert!(
        page.body.contains("6 events"),
        "the chart's title counts them"
    );
    assert!(page.body.contains("<rect class=\"s-bad\""));
    assert!(page.body.contains("Bounces by class"));
    // The hour's counts in the table too.
    let hours = inbox
        .activity(
            jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1),
            jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1),
        )
        .await
        .unwrap();
    assert_eq!(hours.iter().map(|h| h.count).sum::<u64>(), 6);
    assert!(hours.iter().all(|h| h.event_type == "bounces"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_by_message_id_key_recipient_and_subject_and_shows_the_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(dir.path()).await;
    inbox
        .store(
            bounce("<find.me@example.com>", "Someone@Example.jp", "2015"),
            None,
        )
        .await
        .unwrap();
    inbox
        .store(
            bounce("<other@example.com>", "nobody@example.jp", "2015"),
            None,
        )
        .await
        .unwrap();
    let mut mail = sample_inbound(false);
    mail.subject = "Quarterly invoice for March".into();
    inbox.store(Webhook::Inbound(mail), None).await.unwrap();
    let addr = serve_console(inbox.clone()).await;
    let (pair, _) = login(addr).await;

    let by_id = get(addr, "/search?q=%3Cfind.me%40example.com%3E", Some(&pair)).await;
    assert_eq!(by_id.status, 200);
    assert!(by_id.body.contains("find.me@example.com"));
    assert!(!by_id.body.contains("other@example.com"));
    let without_brackets = get(addr, "/search?q=find.me%40example.com", Some(&pair)).await;
    assert!(without_brackets
        .body
        .contains("/message?id=%3Cfind.me%40example.com%3E"));
    let by_recipient = get(addr, "/search?q=someone%40example.JP", Some(&pair)).await;
    assert!(
        by_recipient.body.contains("find.me@example.com"),
        "recipient, case aside"
    );
    let key = inbox.history("<find.me@example.com>").await.unwrap()[0]
        .key
        .to_string();
    let by_key = get(addr, &format!("/search?q={key}"), Some(&pair)).await;
    assert!(by_key.body.contains("find.me@example.com"));
    let by_subject = get(addr, "/search?q=invoice+march", Some(&pair)).await;
    assert!(by_subject.body.contains("Quarterly invoice for March"));
    assert!(
        by_subject.body.contains("most recent mails"),
        "the bound is said"
    );
    let none = get(addr, "/search?q=absent+words", Some(&pair)).await;
    assert!(none.body.contains("None found"));

    let timeline = get(addr, "/message?id=%3Cfind.me%40example.com%3E", Some(&pair)).await;
    assert_eq!(timeline.status, 200);
    assert!(
        timeline.body.contains("bounces someone@example.jp 2015")
            || timeline.body.contains("bounces Someone@Example.jp 2015"),
        "{}",
        timeline.body
    );
    assert!(timeline.body.contains("State pending, 0 attempts"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_stored_text_is_escaped_bounded_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(dir.path()).await;
    let huge = format!("{HOSTILE}{}", "x".repeat(1_000_000));
    inbox
        .store(
            bounce(&format!("<{HOSTILE}@example.com>"), HOSTILE, HOSTILE),
            None,
        )
        .await
        .unwrap();
    let mut mail = sample_inbound(false);
    mail.subject = huge.as_str().into();
    inbox.store(Webhook::Inbound(mail), None).await.unwrap();
    kill_rows(&inbox, huge.clone(), 2).await;
    let addr = serve_console(inbox.clone()).await;
    let (pair, _) = login(addr).await;
    for kind in ["event", "mail"] {
        let page = get(addr, &format!("/rows?kind={kind}&state=dead"), Some(&pair)).await;
        assert_eq!(page.status, 200);
        assert_inert(&page.body);
        assert_secure_headers(&page);
        assert!(
            page.body.contains("&lt;script&gt;") || page.body.contains("&#60;script&#62;"),
            "shown, escaped"
        );
        assert!(
            page.body.contains("\\u{202e}"),
            "the override shown as an escape"
        );
        // The 1 MB subject and error reach the page cut (the worker
        // keeps an error's start, the store reads at most TEXT_LIMIT
        // characters, the page shows at most SHOW).
        assert!(page.body.len() < 100_000, "{} bytes", page.body.len());
    }
    let search = get(
        addr,
        &format!("/search?q={}", console::html::query_escape(HOSTILE)),
        Some(&pair),
    )
    .await;
    assert_eq!(search.status, 200);
    assert_inert(&search.body);
    let search = get(
        addr,
        &format!(
            "/search?q={}",
            console::html::query_escape(&format!("<{HOSTILE}@example.com>"))
        ),
        Some(&pair),
    )
    .await;
    assert_eq!(search.status, 200);
    assert_inert(&search.body);
    let timeline = get(
        addr,
        &format!(
            "/message?id={}",
            console::html::query_escape(&format!("<{HOSTILE}@example.com>"))
        ),
        Some(&pair),
    )
    .await;
    assert_eq!(timeline.status, 200);
    assert_inert(&timeline.body);
    assert!(timeline.body.contains("bounces"), "{}", timeline.body);
    let overview = get(addr, "/", Some(&pair)).await;
    assert_inert(&overview.body);
    // A hostile search query: escaped in the box, bounded.
    let q = console::html::query_escape(&format!("{HOSTILE}{}", "y".repeat(100_000)));
    let echoed = get(
        addr,
        &format!("/search?q={}", &q[..q.len().min(30_000)]),
        Some(&pair),
    )
    .await;
    assert_eq!(echoed.status, 200);
    assert_inert(&echoed.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_is_confirmed_needs_its_token_and_records_who() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(dir.path()).await;
    for n in 0..3 {
        inbox
            .store(
                bounce(&format!("<{n}@example.com>"), "u@example.jp", "2015"),
                None,
            )
            .await
            .unwrap();
    }
    kill_rows(&inbox, "relay timed out".to_owned(), 3).await;
    let addr = serve_console(inbox.clone()).await;
    let (pair, csrf) = login(addr).await;
    let page = get(addr, "/rows?kind=event&state=dead&error=TIMED", Some(&pair)).await;
    assert_eq!(page.status, 200);
    assert!(page
        .body
        .contains("type=\"checkbox\" name=\"id\" value=\"1\""));
    let none = get(
        addr,
        "/rows?kind=event&state=dead&error=refused",
        Some(&pair),
    )
    .await;
    assert!(none.body.contains("No row."));

    let confirm = get(
        addr,
        "/replay?scope=filter&kind=event&error=timed",
        Some(&pair),
    )
    .await;
    assert_eq!(confirm.status, 200);
    assert!(
        confirm.body.contains("Replay 3 event rows?"),
        "{}",
        confirm.body
    );

    // Refused: no token, a wrong one, another origin, a cross-site fetch,
    // no session. Nothing is replayed.
    let body = form(&[("scope", "selected"), ("kind", "event"), ("id", "1")]);
    assert_eq!(
        post(addr, "/replay", Some(&pair), "", &body).await.status,
        403
    );
    let wrong = format!("{body}&csrf={}", "0".repeat(64));
    assert_eq!(
        post(addr, "/replay", Some(&pair), "", &wrong).await.status,
        403
    );
    let right = format!("{body}&csrf={csrf}");
    assert_eq!(
        post(
            addr,
            "/replay",
            Some(&pair),
            "Origin: http://evil.example\r\n",
            &right
        )
        .await
        .status,
        403
    );
    assert_eq!(
        post(
            addr,
            "/replay",
            Some(&pair),
            "Sec-Fetch-Site: cross-site\r\n",
            &right
        )
        .await
        .status,
        403
    );
    assert_eq!(post(addr, "/replay", None, "", &right).await.status, 303);
    assert_eq!(
        inbox.counts().await.unwrap().events.dead,
        3,
        "nothing replayed"
    );

    // One row, with its token and the console's own origin.
    let origin = format!("Origin: http://{addr}\r\n");
    let done = post(addr, "/replay", Some(&pair), &origin, &right).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert!(done
        .body
        .contains("1 event row(s) set back to pending, replayed by alice"));
    assert_eq!(inbox.counts().await.unwrap().events.dead, 2);
    let history = inbox.history("<0@example.com>").await.unwrap();
    let replayed = history[0]
        .replayed
        .as_ref()
        .expect("the replay is in the row's history");
    assert_eq!(replayed.by.as_deref(), Some(USER));
    let timeline = get(addr, "/message?id=%3C0%40example.com%3E", Some(&pair)).await;
    assert!(timeline.body.contains("by alice"), "{}", timeline.body);

    // Everything the filter takes.
    assert!(confirm.body.contains("name=\"upto\" value=\"3\""));
    let all = form(&[
        ("scope", "filter"),
        ("kind", "event"),
        ("error", "timed"),
        ("upto", "3"),
        ("csrf", &csrf),
    ]);
    let done = post(addr, "/replay", Some(&pair), "", &all).await;
    assert!(done.body.contains("2 event row(s)"), "{done:?}");
    assert_eq!(inbox.counts().await.unwrap().events.dead, 0);
    assert_eq!(inbox.counts().await.unwrap().events.pending, 3);
}

/// A replay of a filter takes only the rows its confirmation counted: a
/// row that died after the page was shown is left dead, and a replay of a
/// filter without the bound its confirmation gave is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_a_filter_takes_no_row_dead_since_its_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(dir.path()).await;
    for n in 0..2 {
        inbox
            .store(
                bounce(&format!("<{n}@example.com>"), "u@example.jp", "5"),
                None,
            )
            .await
            .unwrap();
    }
    kill_rows(&inbox, "relay timed out", 2).await;
    let addr = serve_console(inbox.clone()).await;
    let (pair, csrf) = login(addr).await;
    let confirm = get(
        addr,
        "/replay?scope=filter&kind=event&error=timed&upto=999",
        Some(&pair),
    )
    .await;
    assert!(
        confirm.body.contains("Replay 2 event rows?"),
        "{}",
        confirm.body
    );
    // The newest row counted, whatever the query said.
    assert!(
        confirm
            .body
            .contains("<input type=\"hidden\" name=\"upto\" value=\"2\">"),
        "{}",
        confirm.body
    );
    // A third row dies while the page is shown.
    inbox
        .store(bounce("<late@example.com>", "u@example.jp", "5"), None)
        .await
        .unwrap();
    kill_rows(&inbox, "relay timed out", 3).await;
    let filter = [
        ("scope", "filter"),
        ("kind", "event"),
        ("error", "timed"),
        ("csrf", csrf.as_str()),
    ];
    // Without the bound: refused, nothing replayed.
    let unbounded = post(addr, "/replay", Some(&pair), "", &form(&filter)).await;
    assert_eq!(unbounded.status, 400, "{unbounded:?}");
    assert!(unbounded.body.contains("open the confirmation again"));
    assert_eq!(inbox.counts().await.unwrap().events.dead, 3);
    let mut bounded = filter.to_vec();
    bounded.push(("upto", "2"));
    let done = post(addr, "/replay", Some(&pair), "", &form(&bounded)).await;
    assert_eq!(done.status, 200, "{done:?}");
    assert!(
        done.body.contains("2 event row(s) set back"),
        "{}",
        done.body
    );
    let counts = inbox.counts().await.unwrap();
    assert_eq!(
        (counts.events.dead, counts.events.pending),
        (1, 2),
        "{counts:?}"
    );
    let late = inbox.history("<late@example.com>").await.unwrap();
    assert_eq!(late[0].state, cmc_webhook::inbox::State::Dead);
}

/// A refused POST is logged with who sent it and from where, never with
/// a token.
#[tokio::test(flavor = "current_thread")]
async fn a_csrf_refusal_is_logged_with_the_user_and_the_client_address() {
    let logs = common::logs::Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(dir.path()).await;
    let addr = serve_console(inbox).await;
    let (pair, csrf) = login(addr).await;
    let refusals = |logs: &common::logs::Captured| {
        logs.text()
            .lines()
            .filter(|l| l.contains("a POST was refused (CSRF)"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    // A wrong token, in a handler.
    let wrong = "f".repeat(64);
    let reply = post(
        addr,
        "/suppressions/add",
        Some(&pair),
        "",
        &form(&[("csrf", &wrong), ("address", "a@example.jp"), ("note", "n")]),
    )
    .await;
    assert_eq!(reply.status, 403);
    // Another site, refused before any handler, with and without a
    // session.
    let right = form(&[
        ("scope", "selected"),
        ("kind", "event"),
        ("id", "1"),
        ("csrf", &csrf),
    ]);
    let cross = "Origin: http://evil.example\r\n";
    let r = post(addr, "/replay", Some(&pair), cross, &right).await;
    assert_eq!(r.status, 403);
    assert_eq!(post(addr, "/replay", None, cross, &right).await.status, 403);
    let lines = refusals(&logs);
    assert_eq!(lines.len(), 3, "{}", logs.text());
    for line in &lines {
        assert!(line.contains("client=127.0.0.1"), "{line}");
        assert!(!line.contains(&wrong) && !line.contains(&csrf), "{line}");
        let session = pair.split('=').nth(1).unwrap();
        assert!(!line.contains(session), "{line}");
    }
    assert!(lines[0].contains("user=\"alice\""), "{}", lines[0]);
    assert!(lines[0].contains("suppression list without the session's token"));
    assert!(lines[1].contains("user=\"alice\""), "{}", lines[1]);
    assert!(lines[1].contains("Origin is not the console's"));
    assert!(lines[2].contains("user=\"(no session)\""), "{}", lines[2]);
}

/// A body nested 100 000 deep (which an HTML parser would take minutes
/// to build) is answered at once with a line saying why it is not shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_whose_html_nests_too_deep_is_answered_at_once_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(dir.path()).await;
    let mut mail = sample_inbound(false);
    mail.html = Some(format!("{}<script>alert(1)</script>", "<div>".repeat(100_000)).into());
    inbox.store(Webhook::Inbound(mail), None).await.unwrap();
    let id = only_mail(&inbox).await;
    let addr = serve_console(inbox.clone()).await;
    let (pair, _) = login(addr).await;
    let started = std::time::Instant::now();
    let body = get(addr, &format!("/mails/{id}/html"), Some(&pair)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(body.status, 200);
    assert_eq!(
        body.header("content-security-policy"),
        Some(console::pages::mails::MAIL_HTML_CSP)
    );
    assert!(
        body.body
            .contains("Not shown: this HTML body nests its elements more than 512 deep"),
        "{}",
        body.body
    );
    assert!(!body.body.contains("<div") && !body.body.contains("<script"));
}

/// A mail's HTML body that tries every way to act or fetch.
const HOSTILE_HTML: &str = "<html><head>\
<meta http-equiv=\"refresh\" content=\"0;url=https://evil.example/refresh\">\
<base href=\"https://evil.example/\"><link rel=prefetch href=https://evil.example/prefetch>\
<link rel=dns-prefetch href=//evil.example><style>body{background:url(https://evil.example/css)}</style>\
</head><body onload=\"alert(0)\"><script>alert(1)</script><img src=x onerror=alert(2)>\
<p>hello</p><b>bold</b> <a href=\"https://evil.example/\" target=_top>a link</a>\
<form action=https://evil.example/form><input name=q><button>go</button></form>\
<iframe src=https://evil.example/frame></iframe><svg onload=alert(3)></svg>\
<img src=https://evil.example/pixel.gif><p style=\"background:url(https://evil.example/s)\">s</p>\
<a href=\"javascript:alert(4)\">j</a>\u{0}</body></html>";

/// The id of the only mail of `inbox`.
/// A filter by error text looks at the last 10 000 dead rows only (no
/// index serves a text inside the error), and the rows page and the
/// replay's confirmation say so: a match older than that is not listed
/// nor counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_filter_looks_at_the_last_dead_rows_and_says_so() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(dir.path()).await;
    for batch in 0..21 {
        let records: Vec<String> = (0..500)
            .map(|i| {
                format!(
                    r#"{{"created":"2026-01-01 09:00:00","status":"failed","to":"u@example.jp","messageId":"<{batch}.{i}@example.com>"}}"#
                )
            })
            .collect();
        let body = format!(
            r#"{{"event_type":"deliveries","server_composition":"pro","event":{{"deliveries":[{}]}}}}"#,
            records.join(",")
        );
        inbox
            .store(
                Webhook::parse("application/json", Bytes::from(body)).unwrap(),
                None,
            )
            .await
            .unwrap();
    }
    let url = format!("sqlite:{}", dir.path().join("inbox.sqlite3").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in [
        "UPDATE cmc_events SET state = 'dead', attempts = 1, last_error = 'relay timed out'",
        "UPDATE cmc_events SET last_error = 'needle ' || id WHERE id IN (1, 10500)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    let addr = serve_console(inbox.clone()).await;
    let (pair, _) = login(addr).await;

    let page = get(
        addr,
        "/rows?kind=event&state=dead&error=needle",
        Some(&pair),
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("value=\"10500\""), "{}", page.body);
    assert!(!page.body.contains("value=\"1\""), "{}", page.body);
    assert!(
        page.body.contains(
            "The error filter looked at the last 10000 dead event rows only, of 10500: older \
             ones were not searched."
        ),
        "{}",
        page.body
    );
    let confirm = get(
        addr,
        "/replay?scope=filter&kind=event&error=needle",
        Some(&pair),
    )
    .await;
    assert!(
        confirm.body.contains("Replay 1 event row?"),
        "{}",
        confirm.body
    );
    assert!(
        confirm
            .body
            .contains("looked at the last 10000 dead event rows only"),
        "{}",
        confirm.body
    );
    // Without a text filter every row is read in pages, and nothing is said.
    let all = get(addr, "/rows?kind=event&state=dead", Some(&pair)).await;
    assert!(!all.body.contains("looked at the last"), "{}", all.body);
    // With a source, the window is that source's dead rows, and the note names it;
    // the failing rows (none here) are fewer than the window: nothing is said.
    let few = get(
        addr,
        "/rows?kind=event&state=dead&source=default&error=needle",
        Some(&pair),
    )
    .await;
    assert!(
        few.body
            .contains("looked at the last 10000 dead event rows of source default"),
        "{}",
        few.body
    );
    let none = get(
        addr,
        "/rows?kind=event&state=failing&error=needle",
        Some(&pair),
    )
    .await;
    assert!(!none.body.contains("looked at the last"), "{}", none.body);
}

async fn only_mail(inbox: &Inbox) -> i64 {
    use cmc_webhook::inbox::browse::RowQuery;
    use cmc_webhook::inbox::Kind;
    let rows = inbox.rows(&RowQuery::new(Kind::Mail)).await.unwrap();
    assert_eq!(rows.len(), 1);
    rows[0].id.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_shows_escaped_its_html_only_in_a_sandbox_and_its_files_as_downloads() {
    use cmc_webhook::inbox::mailbox::{DeliveryFilter, DeliveryState, MailJob, Mailbox, Mailboxes};
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(dir.path()).await;
    let huge = format!("{HOSTILE}{}", "h".repeat(1_000_000));
    let mut mail = sample_inbound(true);
    mail.subject = HOSTILE.into();
    mail.envelope_from = HOSTILE.into();
    mail.envelope_to = "support@example.jp".into();
    let mut headers: Vec<cmc_webhook::Header> = mail
        .headers
        .clone()
        .into_iter()
        .filter(|h| !h.name.eq_ignore_ascii_case("message-id"))
        .collect();
    headers.push(cmc_webhook::Header::new("X-Hostile", HOSTILE));
    headers.push(cmc_webhook::Header::new("X-Huge", huge.as_str()));
    headers.push(cmc_webhook::Header::new(
        "Message-ID",
        "<mail-page@example.com>",
    ));
    mail.headers = headers.into();
    mail.text = Some(format!("first line\nsecond {HOSTILE}").into());
    mail.html = Some(HOSTILE_HTML.into());
    let file = &mut mail.attachments[0];
    file.filename = format!("../../{HOSTILE}.pdf").into();
    file.content_type = HOSTILE.into();
    file.data = Bytes::from_static(b"%PDF-1.4 the file's bytes");
    inbox.store(Webhook::Inbound(mail), None).await.unwrap();
    let id = only_mail(&inbox).await;
    // A mailbox delivers it.
    let mailboxes = Mailboxes::new()
        .mailbox(Mailbox::new("support", |_job: MailJob| async {
            Ok::<(), String>(())
        }))
        .unwrap()
        .route("support@example.jp", "support")
        .unwrap();
    let worker = inbox.mailbox_worker(mailboxes).spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let d = inbox
            .deliveries()
            .list(&DeliveryFilter::all().mail(id))
            .await
            .unwrap();
        if d.iter().any(|d| d.state == DeliveryState::Delivered) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();

    let addr = serve_console(inbox.clone()).await;
    let (pair, _) = login(addr).await;
    // Search results link to the mail's page.
    let found = get(addr, "/search?q=support%40example.jp", Some(&pair)).await;
    assert!(
        found
            .body
            .contains(&format!("<a href=\"/mails/{id}\">mail {id}</a>")),
        "{}",
        found.body
    );
    let page = get(addr, &format!("/mails/{id}"), Some(&pair)).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert_secure_headers(&page);
    assert_inert(&page.body);
    assert!(page.body.len() < 100_000, "{} bytes", page.body.len());
    assert!(page.body.contains("&lt;script&gt;") || page.body.contains("&#60;script&#62;"));
    assert!(page.body.contains("[cut: 1000"), "the huge header is cut");
    assert!(page.body.contains("first line\nsecond "), "the text body");
    assert!(page
        .body
        .contains("/message?id=%3Cmail-page%40example.com%3E"));
    // The HTML body only in a sandboxed frame, never inline.
    assert!(!page.body.contains("<p>hello</p>"));
    let frame = page
        .body
        .split("<iframe")
        .nth(1)
        .expect("a frame")
        .split('>')
        .next()
        .unwrap();
    assert!(
        frame.contains(&format!("sandbox=\"\" src=\"/mails/{id}/html\"")),
        "{frame}"
    );
    assert!(frame.contains("referrerpolicy=\"no-referrer\""), "{frame}");
    assert!(frame.contains("loading=\"lazy\""), "{frame}");
    assert!(!frame.contains("allow-"), "{frame}");
    // The attachment, by its safe name; the delivery with its state.
    assert!(page
        .body
        .contains(&format!("href=\"/mails/{id}/attachments/1\"")));
    assert!(page.body.contains("delivered") && page.body.contains("support"));

    let body = get(addr, &format!("/mails/{id}/html"), Some(&pair)).await;
    assert_eq!(body.status, 200);
    assert_eq!(
        body.header("content-security-policy"),
        Some(console::pages::mails::MAIL_HTML_CSP)
    );
    let csp = body.header("content-security-policy").unwrap();
    assert!(
        csp.starts_with("sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:")
    );
    assert!(!csp.contains("allow-scripts") && !csp.contains("script-src"));
    assert_eq!(body.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(body.header("x-frame-options"), Some("SAMEORIGIN"));
    assert!(body
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    // Sanitised: the text and formatting kept, nothing that acts or
    // fetches.
    assert!(body.body.contains("<p>hello</p>"), "{}", body.body);
    assert!(body.body.contains("<b>bold</b>"), "{}", body.body);
    assert!(body.body.contains("<a>a link</a>"), "{}", body.body);
    let lower = body.body.to_ascii_lowercase();
    for gone in [
        "<script",
        "onerror",
        "onload",
        "javascript:",
        "<meta",
        "refresh",
        "<base",
        "<form",
        "<input",
        "<iframe",
        "<link",
        "prefetch",
        "<svg",
        "<style",
        "url(",
        "href",
        "target",
        "evil.example",
        "\u{0}",
    ] {
        assert!(!lower.contains(gone), "{gone:?} in {}", body.body);
    }
    // Every other page keeps the console's policy and refuses frames.
    assert_eq!(page.header("x-frame-options"), Some("DENY"));

    let download = get(addr, &format!("/mails/{id}/attachments/1"), Some(&pair)).await;
    assert_eq!(download.status, 200);
    assert_eq!(
        download.header("content-type"),
        Some("application/octet-stream")
    );
    let disposition = download.header("content-disposition").unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\""),
        "{disposition}"
    );
    assert!(disposition.contains("; filename*=UTF-8''"), "{disposition}");
    assert!(
        !disposition.contains('/') || !disposition.contains(".."),
        "{disposition}"
    );
    assert!(!disposition.contains("../"), "{disposition}");
    assert!(
        disposition.is_ascii() && !disposition.contains('\r'),
        "{disposition}"
    );
    assert_eq!(download.body, "%PDF-1.4 the file's bytes");
    for missing in [
        format!("/mails/{id}/attachments/0"),
        format!("/mails/{id}/attachments/2"),
        "/mails/999999".to_owned(),
        "/mails/999999/html".to_owned(),
        "/mails/999999/attachments/1".to_owned(),
    ] {
        let reply = get(addr, &missing, Some(&pair)).await;
        assert_eq!(reply.status, 404, "{missing}: {reply:?}");
    }
    assert_eq!(get(addr, "/mails/x", Some(&pair)).await.status, 400);
}

/// Makes the inbox's suppression list kept (a worker ran once).
async fn keep_the_list(inbox: &Inbox) {
    let worker = inbox
        .worker(|_job: Job| async { Ok::<(), String>(()) })
        .poll_interval(Duration::from_millis(5))
        .spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !inbox.suppressions().keeping().await.unwrap().is_kept() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suppression_list_is_looked_up_paged_and_changed_with_a_note_by_a_named_user() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(dir.path()).await;
    keep_the_list(&inbox).await;
    let list = inbox.suppressions();
    for n in 0..60 {
        list.add(&format!("user{n:02}@example.jp"), None, "bulk")
            .await
            .unwrap();
    }
    let addr = serve_console(inbox.clone()).await;
    let (pair, csrf) = login(addr).await;

    // Paged by reason.
    let first = get(addr, "/suppressions?reason=manual", Some(&pair)).await;
    assert_eq!(first.status, 200);
    let rows = |body: &str| {
        body.matches("<tr><th scope=\"row\" class=\"text\"><a href=\"/suppressions?address=")
            .count()
    };
    assert_eq!(rows(&first.body), 50);
    let next = first
        .body
        .split("id=\"next\"")
        .next()
        .unwrap()
        .rsplit("href=\"")
        .next()
        .unwrap();
    let next = next
        .split('"')
        .next()
        .unwrap()
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let second = get(addr, &next, Some(&pair)).await;
    assert_eq!(rows(&second.body), 10, "{next}");
    assert!(second.body.contains("user59@example.jp"));
    assert!(!second.body.contains("user49@example.jp"));
    assert_eq!(
        rows(
            &get(addr, "/suppressions?reason=hard", Some(&pair))
                .await
                .body
        ),
        0
    );

    // A change without the token changes nothing.
    let target = "Gone@Example.JP";
    let refused = post(
        addr,
        "/suppressions/add",
        Some(&pair),
        "",
        &form(&[("csrf", "wrong"), ("address", target), ("note", "x")]),
    )
    .await;
    assert_eq!(refused.status, 403);
    let cross = post(
        addr,
        "/suppressions/remove",
        Some(&pair),
        "Origin: http://evil.example\r\n",
        &form(&[
            ("csrf", &csrf),
            ("address", "user00@example.jp"),
            ("note", "x"),
        ]),
    )
    .await;
    assert_eq!(cross.status, 403);
    assert!(list.history("gone@example.jp").await.unwrap().is_empty());
    assert!(list.check("user00@example.jp").await.unwrap().suppressed);
    // Without a note: refused.
    let bare = post(
        addr,
        "/suppressions/add",
        Some(&pair),
        "",
        &form(&[("csrf", &csrf), ("address", target), ("note", " ")]),
    )
    .await;
    assert_eq!(bare.status, 400);
    let bad_days = post(
        addr,
        "/suppressions/add",
        Some(&pair),
        "",
        &form(&[
            ("csrf", &csrf),
            ("address", target),
            ("note", "n"),
            ("days", "-1"),
        ]),
    )
    .await;
    assert_eq!(bad_days.status, 400);
    assert!(list.history("gone@example.jp").await.unwrap().is_empty());

    // Added with a hostile note, by alice.
    let note = format!("customer asked {HOSTILE}");
    let added = post(
        addr,
        "/suppressions/add",
        Some(&pair),
        "",
        &form(&[
            ("csrf", &csrf),
            ("address", target),
            ("note", &note),
            ("days", "30"),
        ]),
    )
    .await;
    assert_eq!(added.status, 303, "{added:?}");
    let location = added.header("location").unwrap().to_owned();
    assert_eq!(
        location,
        "/suppressions?address=gone%40example.jp&done=added"
    );
    let check = list.check("gone@example.jp").await.unwrap();
    assert!(check.suppressed);
    assert!(check.until.is_some());
    let history = list.history("gone@example.jp").await.unwrap();
    assert_eq!(history.len(), 1);
    let recorded = history[0].note.clone().unwrap();
    assert!(
        recorded.starts_with("alice: customer asked <script>"),
        "{recorded}"
    );
    assert!(
        !recorded.contains(['\r', '\n', '\u{0}', '\u{202e}']),
        "{recorded:?}"
    );
    let shown = get(addr, &location, Some(&pair)).await;
    assert_eq!(shown.status, 200);
    assert_inert(&shown.body);
    assert!(shown.body.contains("<strong>Suppressed</strong>"));
    assert!(
        shown.body.contains("alice: customer asked &"),
        "{}",
        shown.body
    );

    // Lifted with a note, seen in the history.
    let removed = post(
        addr,
        "/suppressions/remove",
        Some(&pair),
        "",
        &form(&[
            ("csrf", &csrf),
            ("address", "gone@example.jp"),
            ("note", "lifted after a call"),
        ]),
    )
    .await;
    assert_eq!(removed.status, 303);
    assert!(!list.check("gone@example.jp").await.unwrap().suppressed);
    let page = get(addr, "/suppressions?address=gone%40example.jp", Some(&pair)).await;
    assert!(page.body.contains("Not suppressed"));
    assert!(page.body.contains("alice: lifted after a call"));
    let history = list.history("gone@example.jp").await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].change, "removed");
    // An address the list cannot take: a clear refusal, never a 500.
    let odd = post(
        addr,
        "/suppressions/add",
        Some(&pair),
        "",
        &form(&[("csrf", &csrf), ("address", "no at sign"), ("note", "n")]),
    )
    .await;
    assert_eq!(odd.status, 400, "{odd:?}");
    let looked = get(
        addr,
        &format!(
            "/suppressions?address={}",
            console::html::query_escape(&format!("{HOSTILE}{}", "a".repeat(20_000)))
        ),
        Some(&pair),
    )
    .await;
    assert_eq!(looked.status, 200);
    assert_inert(&looked.body);
    // A megabyte form is refused by the body limit.
    let big = post(
        addr,
        "/suppressions/add",
        Some(&pair),
        "",
        &form(&[
            ("csrf", &csrf),
            ("address", target),
            ("note", &"n".repeat(1_000_000)),
        ]),
    )
    .await;
    assert_eq!(big.status, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learning_mode_lists_the_unlisted_clients_in_the_receivers_process_only() {
    use axum::body::Body;
    use cmc_webhook::test_util::{sample_events, CmcRequest, WireEncoding};
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(dir.path()).await;
    // Alone: a sentence.
    let alone = serve_console(inbox.clone()).await;
    let (pair, _) = login(alone).await;
    let page = get(alone, "/learning", Some(&pair)).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"learning-alone\""));
    assert!(!page.body.contains("<textarea"));

    // In the receiver's process, with --report-only.
    let layer = cmc_webhook::WebhookLayer::builder()
        .allow_cidrs("203.0.113.0/24")
        .unwrap()
        .report_only()
        .basic_auth("cmc", "pw")
        .build()
        .unwrap();
    let app = axum::Router::new().route(
        "/cmc",
        axum::routing::post(|batch: cmc_webhook::EventBatch| async move {
            format!("{} events", batch.events.len())
        })
        .layer(layer.clone()),
    );
    let batch = sample_events(1);
    for (peer, times) in [
        ("198.51.100.7:1", 3),
        ("[2001:db8::5]:1", 1),
        ("203.0.113.1:1", 2),
    ] {
        for _ in 0..times {
            let request = CmcRequest::events(&batch, WireEncoding::Json)
                .peer(peer.parse().unwrap())
                .basic_auth("cmc", "pw")
                .uri("/cmc")
                .into_request();
            let status = app
                .clone()
                .oneshot(request.map(Body::new))
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200);
        }
    }
    let console = console_of(inbox);
    console.learn_from(layer);
    let addr = serve_this(console).await;
    let (pair, _) = login(addr).await;
    let page = get(addr, "/learning", Some(&pair)).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("--report-only"));
    assert!(
        page.body
            .contains("<th scope=\"row\">198.51.100.7</th><td>3</td>"),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains("<th scope=\"row\">2001:db8::5</th><td>1</td>"));
    assert!(
        !page.body.contains("203.0.113.1"),
        "a listed client is not shown"
    );
    assert!(
        page.body.contains("<textarea id=\"allow\" readonly rows=\"3\" cols=\"60\">--allow 198.51.100.7,2001:db8::5</textarea>"),
        "{}",
        page.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_counts_closed_hours_once_and_the_open_hour_at_every_load() {
    use cmc_webhook::inbox::ManualClock;
    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now();
    let before = now - jiff::SignedDuration::from_hours(3);
    let clock = ManualClock::new(before);
    let inbox = Inbox::sqlite(dir.path().join("inbox.sqlite3"))
        .clock(clock.clone())
        .open()
        .await
        .unwrap();
    for n in 0..4 {
        inbox
            .store(
                bounce(&format!("<old{n}@example.com>"), "a@example.jp", "2015"),
                None,
            )
            .await
            .unwrap();
    }
    // Three hours later on the store's clock, which the console follows:
    // the hour of those rows is closed.
    clock.set(now);
    let console = console_of(inbox.clone());
    console.warm().await;
    let addr = serve_this(console).await;
    let (pair, _) = login(addr).await;
    let total = |body: &str| -> u64 {
        body.split("last 7 days: ")
            .nth(1)
            .unwrap()
            .split(" events")
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(total(&get(addr, "/", Some(&pair)).await.body), 4);
    // A row written into that closed hour (stamped by a writer whose
    // clock is 3 hours behind) is not counted again: the hour was counted
    // once.
    clock.set(before);
    inbox
        .store(bounce("<late@example.com>", "a@example.jp", "2015"), None)
        .await
        .unwrap();
    clock.set(now);
    assert_eq!(total(&get(addr, "/", Some(&pair)).await.body), 4);
    // Rows of the open hour are counted at every load.
    for n in 0..2 {
        inbox
            .store(
                bounce(&format!("<new{n}@example.com>"), "a@example.jp", "2015"),
                None,
            )
            .await
            .unwrap();
    }
    let overview = get(addr, "/", Some(&pair)).await;
    assert_eq!(total(&overview.body), 6);
    assert!(
        overview.body.contains("last 24 hours: 6 events"),
        "the day chart too"
    );
    // A console started now reads the closed hours the store kept (the
    // late row's hour among them, counted before it came) and counts the
    // open one.
    let fresh = serve_console(inbox.clone()).await;
    let (pair, _) = login(fresh).await;
    assert_eq!(total(&get(fresh, "/", Some(&pair)).await.body), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_reads_back_whole_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("console_mail_{}", std::process::id());
    for url in common::inbox::stores(
        dir.path(),
        "console_mail",
        "console mail on PostgreSQL",
        &prefix,
    )
    .await
    {
        let inbox = Inbox::open(&url).await.unwrap();
        assert!(inbox.mail(1).await.unwrap().is_none(), "{url}");
        let mut mail = sample_inbound(true);
        // A megabyte text (stored apart), U+0000 and a bidi override in it.
        let text = format!("{HOSTILE}\n{}", "t".repeat(1_000_000));
        mail.text = Some(text.as_str().into());
        mail.html = Some(format!("<p>{HOSTILE}</p>").as_str().into());
        let data: Vec<u8> = (0..300_000u32).map(|n| (n % 251) as u8).collect();
        mail.attachments[0].data = Bytes::from(data.clone());
        mail.attachments[0].filename = "..\\..\\boot.ini\u{202e}fdp.exe".into();
        inbox
            .store(Webhook::Inbound(mail.clone()), None)
            .await
            .unwrap();
        let id = only_mail(&inbox).await;
        let stored = inbox.mail(id).await.unwrap().expect("the mail");
        assert_eq!(stored.mail.text, mail.text, "{url}");
        assert_eq!(stored.mail.html, mail.html);
        assert_eq!(stored.mail.subject, mail.subject);
        assert_eq!(stored.mail.headers, mail.headers);
        assert_eq!(stored.mail.attachments.len(), 1);
        assert_eq!(&stored.attachment(0).await.unwrap()[..], &data[..]);
        assert!(stored.attachment(1).await.is_err());
        let addr = serve_console(inbox.clone()).await;
        let (pair, _) = login(addr).await;
        let page = get(addr, &format!("/mails/{id}"), Some(&pair)).await;
        assert_eq!(page.status, 200, "{url}");
        assert_inert(&page.body);
        assert!(page.body.contains("bytes in all]"), "the text is cut");
        assert!(page.body.len() < 400_000, "{}", page.body.len());
        let file = get(addr, &format!("/mails/{id}/attachments/1"), Some(&pair)).await;
        assert_eq!(file.status, 200);
        let disposition = file.header("content-disposition").unwrap();
        assert!(
            !disposition.contains('\\') && !disposition.contains(".."),
            "{disposition}"
        );
        assert!(
            !disposition.contains("%E2%80%AE"),
            "no bidi override: {disposition}"
        );
        assert!(disposition.contains("boot.inifdp.exe"), "{disposition}");
        inbox.close().await;
    }
}

/// The receiver program `cargo test` built beside this test.
fn receiver_program() -> std::path::PathBuf {
    let me = std::env::current_exe().unwrap();
    let dir = me.parent().unwrap().parent().unwrap();
    dir.join("examples")
        .join(format!("receiver{}", std::env::consts::EXE_SUFFIX))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_program_refuses_a_console_without_users_and_logs_no_password() {
    let program = receiver_program();
    if !program.exists() {
        eprintln!("SKIPPED: {} was not built", program.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite:{}", dir.path().join("inbox.sqlite3").display());
    // Beside the receiver, on an address any host reaches: refused.
    let out = std::process::Command::new(&program)
        .env_clear()
        .env("CMC_STORE", &store)
        .args(["--listen", "127.0.0.1:0", "--console", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CMC_CONSOLE_AUTH"), "{stderr}");
    // Alone: refused the same way.
    let out = std::process::Command::new(&program)
        .env_clear()
        .env("CMC_STORE", &store)
        .args(["console", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CMC_CONSOLE_AUTH"));

    // With a user: it serves; a failed login is logged without the
    // password.
    inbox(dir.path()).await.close().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = std::process::Command::new(&program)
        .env_clear()
        .env("CMC_STORE", &store)
        .env("CMC_CONSOLE_AUTH", format!("{USER}:{PASSWORD}"))
        .args(["console", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed and reaped however the test ends; its log read meanwhile.
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let child = common::child::Killed(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the console never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secret_attempt = "Sup3rSecretGuess";
    let wrong = post(
        addr,
        "/login",
        None,
        "",
        &form(&[("user", USER), ("password", secret_attempt)]),
    )
    .await;
    assert_eq!(wrong.status, 401);
    // The address is held back for a moment after a failure.
    tokio::time::sleep(console::auth::Failures::STEP + Duration::from_millis(100)).await;
    let (pair, _) = login(addr).await;
    assert_eq!(get(addr, "/", Some(&pair)).await.status, 200);
    drop(child);
    let stderr = log.join().unwrap();
    assert!(stderr.contains("a login failed"), "{stderr}");
    assert!(!stderr.contains(secret_attempt), "{stderr}");
    assert!(!stderr.contains(PASSWORD), "{stderr}");
}

/// The console's reads and the replay with a user, on SQLite and (with a
/// server) PostgreSQL: the same answers from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_reads_and_a_replay_by_a_user_on_every_backend() {
    use cmc_webhook::inbox::browse::{Find, RowQuery, RowStates};
    use cmc_webhook::inbox::{Filter, Kind};
    let dir = tempfile::tempdir().unwrap();
    let test = "console_reads";
    let prefix = format!("console_{}", std::process::id());
    for url in common::inbox::stores(dir.path(), test, "console reads on PostgreSQL", &prefix).await
    {
        let inbox = Inbox::open(&url).await.unwrap();
        for n in 0..4 {
            let to = if n == 0 {
                format!("{HOSTILE}@example.jp")
            } else {
                format!("user{n}@Example.jp")
            };
            inbox
                .store(bounce(&format!("<{n}@example.com>"), &to, "2015"), None)
                .await
                .unwrap();
        }
        let mut mail = sample_inbound(false);
        mail.subject = format!("Invoice 50% off_{HOSTILE}").as_str().into();
        inbox.store(Webhook::Inbound(mail), None).await.unwrap();
        kill_rows(&inbox, format!("timed out {HOSTILE}"), 5).await;

        // Events per hour: all five in this hour, by type and status.
        let now = jiff::Timestamp::now();
        let hours = inbox
            .activity(
                now - jiff::SignedDuration::from_hours(2),
                now + jiff::SignedDuration::from_hours(1),
            )
            .await
            .unwrap();
        assert_eq!(hours.len(), 1, "{url}: {hours:?}");
        assert_eq!(
            (hours[0].count, hours[0].status.as_deref()),
            (4, Some("2015"))
        );
        let earlier = inbox
            .activity(
                now - jiff::SignedDuration::from_hours(48),
                now - jiff::SignedDuration::from_hours(24),
            )
            .await
            .unwrap();
        assert!(earlier.is_empty(), "{url}");

        // Finding rows.
        let dead = RowQuery::new(Kind::Event).states(RowStates::Dead);
        let page = inbox.rows(&dead.clone().limit(3)).await.unwrap();
        assert_eq!(
            page.iter().map(|r| r.id.id).collect::<Vec<_>>(),
            [4, 3, 2],
            "{url}"
        );
        let next = inbox.rows(&dead.clone().before(2)).await.unwrap();
        assert_eq!(next.len(), 1, "{url}");
        let to = inbox
            .rows(&RowQuery::new(Kind::Event).find(Find::Recipient("USER2@example.JP".into())))
            .await
            .unwrap();
        assert_eq!(to.len(), 1, "{url}: ASCII case aside");
        let hostile = inbox
            .rows(
                &RowQuery::new(Kind::Event).find(Find::Recipient(format!("{HOSTILE}@example.jp"))),
            )
            .await
            .unwrap();
        assert_eq!(hostile.len(), 1, "{url}");
        let subject = inbox
            .rows(&RowQuery::new(Kind::Mail).find(Find::Subject(vec!["50%".into(), "OFF_".into()])))
            .await
            .unwrap();
        assert_eq!(subject.len(), 1, "{url}: % and _ taken as they are");
        let wildcard = inbox
            .rows(&RowQuery::new(Kind::Mail).find(Find::Subject(vec!["5_%".into()])))
            .await
            .unwrap();
        assert!(wildcard.is_empty(), "{url}");
        let by_id = inbox
            .rows(&RowQuery::new(Kind::Event).find(Find::MessageId("<1@example.com>".into())))
            .await
            .unwrap();
        assert_eq!(by_id.len(), 1, "{url}");
        let errors = inbox
            .rows(&dead.clone().error_contains("TIMED OUT"))
            .await
            .unwrap();
        assert_eq!(errors.len(), 4, "{url}");
        assert!(inbox
            .rows(&dead.clone().error_contains("refused"))
            .await
            .unwrap()
            .is_empty());

        // A replay of a selection, then of a filter, each by a user.
        assert_eq!(
            inbox
                .replay_by(
                    &Filter::ids(Kind::Event, [1, 2]).states([cmc_webhook::inbox::State::Dead]),
                    "alice"
                )
                .await
                .unwrap(),
            2,
            "{url}"
        );
        let replayed = inbox.history("<1@example.com>").await.unwrap()[0]
            .replayed
            .clone()
            .unwrap();
        assert_eq!(replayed.by.as_deref(), Some("alice"), "{url}");
        assert!(inbox.history("<3@example.com>").await.unwrap()[0]
            .replayed
            .is_none());
        // Bounded by the newest id a confirmation showed: event 3 of the
        // two dead (3 and 4).
        let timed_out = Filter::dead().kind(Kind::Event).error_contains("timed out");
        let n = inbox
            .replay_by(&timed_out.clone().up_to(3), &format!("bob{HOSTILE}"))
            .await
            .unwrap();
        assert_eq!(n, 1, "{url}");
        assert_eq!(
            inbox.history("<3@example.com>").await.unwrap()[0].state,
            cmc_webhook::inbox::State::Dead,
            "{url}: event 4 is past the bound"
        );
        let n = inbox
            .replay_by(&timed_out, &format!("bob{HOSTILE}"))
            .await
            .unwrap();
        assert_eq!(n, 1, "{url}");
        let row = inbox
            .rows(&RowQuery::new(Kind::Event).find(Find::MessageId("<3@example.com>".into())))
            .await
            .unwrap();
        assert_eq!(
            row[0]
                .replayed
                .as_ref()
                .unwrap()
                .by
                .as_deref()
                .map(|b| b.starts_with("bob<script>")),
            Some(true),
            "{url}"
        );
        // A replay without a user records the time only.
        assert_eq!(
            inbox.replay(&Filter::dead()).await.unwrap(),
            1,
            "{url}: the mail"
        );
        let mail = inbox.rows(&RowQuery::new(Kind::Mail)).await.unwrap();
        assert_eq!(mail[0].replayed.as_ref().unwrap().by, None, "{url}");
        inbox.close().await;
    }
}

/// The console's reads on a store of 200 000 events received over the
/// last 7 days (a batch of 1 000 every 50 minutes): prints how long each
/// takes, the overview's hours read whole (`Inbox::activity`) and through
/// the console's cache of closed hours. `cargo test --release --all-features --test console -- --ignored
/// measure --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it by name"]
async fn measure_the_console_reads_on_200k_events() {
    use cmc_webhook::inbox::browse::{Find, RowQuery, RowStates};
    use cmc_webhook::inbox::Kind;
    use cmc_webhook::test_util::sample_events;
    use cmc_webhook::Event;
    let dir = tempfile::tempdir().unwrap();
    // Spread over the last 7 days: a batch every 50 minutes.
    let clock = cmc_webhook::inbox::ManualClock::new(
        jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 7 - 1),
    );
    let inbox = Inbox::sqlite(dir.path().join("inbox.sqlite3"))
        .clock(clock.clone())
        .open()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    for b in 0..200 {
        clock.advance(Duration::from_secs(50 * 60));
        let mut batch = sample_events(1000);
        for (i, event) in batch.events.iter_mut().enumerate() {
            if let Event::Delivery(d) = event {
                d.message_id = format!("<{b}-{i}@example.com>").into();
            }
        }
        inbox.store(Webhook::Events(batch), None).await.unwrap();
    }
    println!("stored 200 000 events in {:?}", started.elapsed());
    let now = jiff::Timestamp::now();
    let timed = |what: &str, took: Duration| println!("{what}: {took:?}");
    let t = std::time::Instant::now();
    let week = inbox
        .activity(
            now - jiff::SignedDuration::from_hours(24 * 7),
            now + jiff::SignedDuration::from_hours(1),
        )
        .await
        .unwrap();
    timed(
        "activity over 7 days (200 000 events in range)",
        t.elapsed(),
    );
    assert_eq!(week.iter().map(|h| h.count).sum::<u64>(), 200_000);
    let cache = console::hours::HourCache::default();
    for what in [
        "the overview's hours, first load (closed hours counted)",
        "the overview's hours, next load (the open hours only)",
    ] {
        let t = std::time::Instant::now();
        let week = cache.week(&inbox, now).await.unwrap();
        timed(what, t.elapsed());
        assert_eq!(week.iter().map(|h| h.count).sum::<u64>(), 200_000);
    }
    let t = std::time::Instant::now();
    inbox.counts().await.unwrap();
    timed("counts", t.elapsed());
    let t = std::time::Instant::now();
    let page = inbox
        .rows(&RowQuery::new(Kind::Event).limit(50))
        .await
        .unwrap();
    timed("a page of 50 rows", t.elapsed());
    assert_eq!(page.len(), 50);
    let t = std::time::Instant::now();
    inbox
        .rows(
            &RowQuery::new(Kind::Event)
                .states(RowStates::Failing)
                .limit(500),
        )
        .await
        .unwrap();
    timed(
        "failing rows (none, through the index of active rows)",
        t.elapsed(),
    );
    let t = std::time::Instant::now();
    let found = inbox
        .rows(&RowQuery::new(Kind::Event).find(Find::MessageId("<150-7@example.com>".into())))
        .await
        .unwrap();
    timed("by Message-ID", t.elapsed());
    assert_eq!(found.len(), 1);
    let t = std::time::Instant::now();
    inbox
        .rows(&RowQuery::new(Kind::Event).find(Find::Recipient("nobody@example.jp".into())))
        .await
        .unwrap();
    timed("by recipient", t.elapsed());
    let t = std::time::Instant::now();
    inbox
        .rows(
            &RowQuery::new(Kind::Event)
                .states(RowStates::Dead)
                .error_contains("x"),
        )
        .await
        .unwrap();
    timed("dead rows by error text (none dead)", t.elapsed());
}

/// A request naming another host (a page that rebound its DNS name to
/// the console's address) is refused before any page or login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_another_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve_console(inbox(dir.path()).await).await;
    let port = addr.port();
    for host in [
        format!("rebind.evil.example:{port}"),
        "rebind.evil.example".to_owned(),
        format!("127.0.0.1.evil.example:{port}"),
    ] {
        let login = send_raw(
            addr,
            format!(
                "POST /login HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nContent-Type: \
                 application/x-www-form-urlencoded\r\nContent-Length: 30\r\nConnection: close\r\n\r\n\
                 user=alice&password=0123456789"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(login.status, 421, "{host}");
        assert!(login.header("set-cookie").is_none());
        assert!(login.header("content-security-policy").is_some());
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "LOCALHOST".to_owned(),
    ] {
        let page = send_raw(
            addr,
            format!("GET /login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(page.status, 200, "{host}");
    }
    // A name given with --console-host is the console's too.
    let hosts = console::host::Hosts::new(["console.example.jp".to_owned()]);
    assert!(hosts.allows(&format!("console.example.jp:{port}")));
    assert!(!hosts.allows(&format!("other.example.jp:{port}")));
}

/// A free port on loopback (bound, then let go).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The relay target is down: the receiver's breaker pauses it, and
/// `cmc-receiver counts` and a console of its own, each another process
/// on the same store, show it paused; once the target is back, closed.
/// The token in the target's query is shown and stored nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_relay_target_shows_in_counts_and_in_a_console_of_its_own() {
    let program = receiver_program();
    if !program.exists() {
        eprintln!("SKIPPED: {} was not built", program.display());
        return;
    }
    const TOKEN: &str = "s3cretT0kenInTheQuery";
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(dir.path()).await;
    for n in 0..6 {
        inbox
            .store(
                bounce(&format!("<{n}@example.com>"), "user@example.jp", "2015"),
                None,
            )
            .await
            .unwrap();
    }
    let store = format!("sqlite:{}", dir.path().join("inbox.sqlite3").display());
    let target_port = free_port();
    let shown = format!("http://127.0.0.1:{target_port}/hooks");
    let mut receiver = std::process::Command::new(&program)
        .env_clear()
        .env("CMC_STORE", &store)
        .env("CMC_RELAY_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .args([
            "--listen",
            "127.0.0.1:0",
            "--relay",
            &format!("{shown}?token={TOKEN}"),
            "--relay-allow-http",
            "--relay-failure-cap",
            "2",
            "--relay-pause",
            "3s",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let receiver_pid = receiver.id();
    let stderr = receiver.stderr.take().unwrap();
    let log = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let receiver = common::child::Killed(receiver);

    let console_port = free_port();
    let console_child = std::process::Command::new(&program)
        .env_clear()
        .env("CMC_STORE", &store)
        .env("CMC_CONSOLE_AUTH", format!("{USER}:{PASSWORD}"))
        .args(["console", "--listen", &format!("127.0.0.1:{console_port}")])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _console_child = common::child::Killed(console_child);
    let console: SocketAddr = format!("127.0.0.1:{console_port}").parse().unwrap();

    let counts = || {
        let out = std::process::Command::new(&program)
            .env_clear()
            .env("CMC_STORE", &store)
            .arg("counts")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // Polls `counts` until a line of the target says `state`.
    let until_counts = async |state: &str, within: Duration| -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let out = counts();
            if let Some(line) = out
                .lines()
                .find(|l| l.starts_with(&format!("target {shown}  {state}")))
            {
                return line.to_owned();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "counts never said {state:?}: {out}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let paused = until_counts("paused until", Duration::from_secs(30)).await;
    assert!(paused.contains("failures in a row"), "{paused}");
    assert!(
        paused.contains(&format!("pid {receiver_pid}")),
        "the writer named: {paused}"
    );
    assert!(!paused.contains(TOKEN), "{paused}");

    // The console of its own reads the same.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(console).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "no console");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (pair, _) = login(console).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = get(console, "/", Some(&pair)).await;
        assert_eq!(page.status, 200);
        assert!(!page.body.contains(TOKEN));
        if page.body.contains("Relay target states recorded")
            && page.body.contains(&shown)
            && page.body.contains("paused until")
            && !page.body.contains("was paused until")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the console never showed the pause: {}",
            page.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The target comes back: the next probe closes the breaker (the rows'
    // backoff is 10 s at first).
    common::http::serve(
        &format!("127.0.0.1:{target_port}"),
        axum::Router::new().route("/hooks", axum::routing::post(|| async { "ok" })),
    )
    .await;
    let closed = until_counts("closed (sending)", Duration::from_secs(60)).await;
    assert!(closed.contains(" pauses)"), "{closed}");
    eprintln!("counts said:\n{paused}\n{closed}");
    let page = get(console, "/", Some(&pair)).await;
    assert!(page.body.contains("closed (sending)"), "{}", page.body);

    // Nothing stored holds the token either.
    let states = inbox.target_states().await.unwrap();
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!(states[0].target, shown);
    // A row written by hand with an escape sequence: `counts` escapes it.
    {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&store).await.unwrap();
        sqlx::query(
            "INSERT INTO cmc_target_states (target, writer, state, failures, until, pauses, changed_at) \
             VALUES ('https://x.example.jp/' || char(27) || '[2J', 'hand' || char(10) || 'forged', 'closed', 0, NULL, 0, 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let out = counts();
    assert!(!out.contains('\u{1b}'), "{out:?}");
    assert!(out.contains("https://x.example.jp/\\u{1b}[2J"), "{out}");
    assert!(out.contains("hand\\u{a}forged"), "{out}");
    // Stopped in good order (SIGTERM), the receiver removes its own row,
    // not the others': no "closed (sending)" left behind for a process
    // that no longer sends.
    let mut receiver = receiver;
    let term = std::process::Command::new("kill")
        .args(["-TERM", &receiver_pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while receiver.0.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the receiver never stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left: Vec<String> = inbox
        .target_states()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.writer)
        .collect();
    assert_eq!(left, ["hand\nforged"]);
    let out = counts();
    assert!(!out.contains(&format!("target {shown}")), "{out}");
    drop(receiver);
    let log = log.join().unwrap();
    assert!(!log.contains(TOKEN), "{log}");
    inbox.close().await;
}

/// U+0000, which PostgreSQL's text refuses, in every query parameter and
/// form field of the console that reaches a statement: never a 500 (a
/// clean answer, or a 400), on every backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u0000_in_any_parameter_is_answered_without_a_database_error() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("console_nul_{}", std::process::id());
    for url in
        common::inbox::stores(dir.path(), "nul", "console inputs on PostgreSQL", &prefix).await
    {
        let inbox = Inbox::open(&url).await.unwrap();
        inbox
            .store(bounce("<1@example.com>", "user@example.jp", "2015"), None)
            .await
            .unwrap();
        inbox
            .store(Webhook::Inbound(sample_inbound(false)), None)
            .await
            .unwrap();
        kill_rows(&inbox, "timed out".to_owned(), 2).await;
        inbox
            .suppressions()
            .add("user@example.jp", None, "n")
            .await
            .unwrap();
        let addr = serve_console(inbox.clone()).await;
        let (pair, csrf) = login(addr).await;
        for path in [
            "/search?q=%00",
            "/search?q=a%00b%40example.jp",
            "/search?q=%3Ca%00%40x%3E",
            "/search?q=subject%00word+other",
            "/search?q=0123456789abcdef0123456789abcde%00",
            "/search?q=x&before=%00&mail_before=%00",
            "/message?id=%00",
            "/message?id=%3Ca%00%40x%3E",
            "/rows?source=%00",
            "/rows?error=%00",
            "/rows?kind=mail&source=a%00&error=b%00",
            "/rows?state=failing&source=%00&error=%00&before=%00",
            "/replay?scope=filter&source=%00&error=%00",
            "/replay?scope=selected&id=%00",
            "/raw/%00",
            "/mails/%00",
            "/mails/1/attachments/%00",
            "/suppressions?address=%00",
            "/suppressions?address=user%00%40example.jp",
            "/suppressions?address=user%40example.jp&before=%00",
            "/suppressions?after=%00",
            "/suppressions?reason=%00&all=%00&after=a%00b",
            "/learning?x=%00",
        ] {
            let reply = get(addr, path, Some(&pair)).await;
            assert!(
                matches!(reply.status, 200 | 303 | 400 | 404),
                "{url} {path}: {} {}",
                reply.status,
                reply.body
            );
        }
        for (action, address) in [
            ("/suppressions/add", "a\0b@example.jp"),
            ("/suppressions/remove", "nobody\0@example.jp"),
        ] {
            let reply = post(
                addr,
                action,
                Some(&pair),
                "",
                &form(&[("csrf", &csrf), ("address", address), ("note", "n\0o")]),
            )
            .await;
            assert!(
                matches!(reply.status, 303 | 400),
                "{url} {action}: {reply:?}"
            );
        }
        // The list still answers, and a cleaned `after` pages as typed.
        let page = get(addr, "/suppressions?after=a%00", Some(&pair)).await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("user@example.jp"), "{url}");
        inbox.close().await;
    }
}

/// An address's history is shown 50 changes a page, newest first, with
/// how many there are in all and a link to older ones; lifting an address
/// typed in capitals logs and redirects with the address as the list
/// keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_suppression_history_is_paged_and_a_lift_answers_with_the_normalised_address() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = inbox(dir.path()).await;
    keep_the_list(&inbox).await;
    let list = inbox.suppressions();
    for n in 0..120 {
        list.add("long@example.jp", None, &format!("change number {n}"))
            .await
            .unwrap();
    }
    let addr = serve_console(inbox.clone()).await;
    let (pair, csrf) = login(addr).await;
    let changes = |body: &str| {
        let table = body.split("id=\"history\"").nth(1).unwrap();
        table
            .split("</table>")
            .next()
            .unwrap()
            .matches("change number ")
            .count()
    };
    let older = |body: &str| {
        body.split("id=\"older\"")
            .next()
            .unwrap()
            .rsplit("href=\"")
            .next()
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .replace("&#38;", "&")
            .replace("&amp;", "&")
    };
    let first = get(addr, "/suppressions?address=long%40example.jp", Some(&pair)).await;
    assert_eq!(first.status, 200);
    assert_eq!(changes(&first.body), 50);
    assert!(
        first
            .body
            .contains("120 changes in all; 50 here, newest first."),
        "{}",
        first.body
    );
    assert!(first.body.contains("change number 119<"));
    assert!(!first.body.contains("change number 69<"));
    let link = older(&first.body);
    assert!(
        link.starts_with("/suppressions?address=long%40example.jp&before="),
        "{link}"
    );
    let second = get(addr, &link, Some(&pair)).await;
    assert_eq!(changes(&second.body), 50);
    assert!(second.body.contains("change number 69<"));
    assert!(second.body.contains("Newest changes"));
    let third = get(addr, &older(&second.body), Some(&pair)).await;
    assert_eq!(changes(&third.body), 20);
    assert!(third.body.contains("change number 0<"));
    assert!(!third.body.contains("id=\"older\""));

    // Lifted as typed in capitals: answered with the list's form.
    let lifted = post(
        addr,
        "/suppressions/remove",
        Some(&pair),
        "",
        &form(&[
            ("csrf", &csrf),
            ("address", "LONG@EXAMPLE.JP"),
            ("note", "lifted"),
        ]),
    )
    .await;
    assert_eq!(lifted.status, 303, "{lifted:?}");
    assert_eq!(
        lifted.header("location"),
        Some("/suppressions?address=long%40example.jp&done=removed")
    );
}
