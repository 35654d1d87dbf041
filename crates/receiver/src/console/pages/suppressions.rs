//! `GET /suppressions`: the suppression list: an address looked up (its
//! standing and its history, 50 changes a page, newest first, older ones
//! by `before=ID`), or the rows listed by reason, 50 a page in the order
//! of addresses; `POST /suppressions/add` and
//! `POST /suppressions/remove`: an entry added or lifted by hand, with a
//! note, recorded in the address's history as `USER: NOTE` (and logged).

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use cmc_webhook_inbox::InboxErrorKind;
use cmc_webhook_inbox::suppression::{ListFilter, SuppressionReason};
use http::StatusCode;
use serde::Deserialize;

use super::Message;
use crate::console::state::{Console, Layout};
use crate::console::{auth, csrf, html};

/// Rows a page of the list shows.
pub const PAGE: usize = 50;

/// The most characters of an address taken from a box.
const MAX_ADDRESS: usize = 1000;

/// The most characters of a note taken.
pub const MAX_NOTE: usize = 1000;

/// The reasons a list may be filtered by, as the box offers them.
const REASONS: [&str; 6] = [
    "hard",
    "soft",
    "cmc_suppressed",
    "unsubscribed",
    "cmc_list",
    "manual",
];

/// An address's standing, as the page shows it.
#[derive(Debug)]
pub struct Standing {
    address: String,
    suppressed: bool,
    reason: String,
    since: String,
    until: String,
    note: String,
}

/// A change of the history.
#[derive(Debug)]
pub struct ChangeView {
    at: String,
    change: String,
    reason: String,
    note: String,
    source: String,
    key: String,
}

/// A row of the list.
#[derive(Debug)]
pub struct EntryView {
    address: String,
    query: String,
    reason: String,
    since: String,
    until: String,
    note: String,
    bounces: String,
}

/// The page.
#[derive(Debug, Template)]
#[template(path = "console/suppressions.html")]
pub struct Page {
    layout: Layout,
    address: String,
    done: String,
    error: String,
    standing: Option<Standing>,
    history: Vec<ChangeView>,
    /// How many changes the address has had in all, and which this page
    /// shows (empty: none read).
    changes: String,
    /// The link to the page of older changes.
    older: Option<String>,
    /// The link to the newest changes, from an older page.
    newest: Option<String>,
    reasons: Vec<(&'static str, bool)>,
    all: bool,
    entries: Vec<EntryView>,
    next: Option<String>,
    csrf: String,
}

/// The page's query.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    address: Option<String>,
    /// The history's page: changes older than this one (its id).
    before: Option<String>,
    reason: Option<String>,
    after: Option<String>,
    all: Option<String>,
    done: Option<String>,
}

fn time(t: Option<jiff::Timestamp>) -> String {
    t.map(html::time).unwrap_or_default()
}

fn reason(r: Option<SuppressionReason>) -> String {
    r.map(|r| r.as_str().to_owned()).unwrap_or_default()
}

/// `GET /suppressions`.
pub async fn page(
    State(console): State<Console>,
    user: auth::User,
    Query(query): Query<PageQuery>,
) -> Response {
    let list = console.inbox().suppressions();
    let address = html::clean_input(query.address.as_deref().unwrap_or(""), MAX_ADDRESS)
        .trim()
        .to_owned();
    let mut error = String::new();
    let mut standing = None;
    let mut history = Vec::new();
    let mut changes = String::new();
    let mut older = None;
    let mut newest = None;
    // (A `before` that is not a change's number reads the newest page.)
    let before = query
        .before
        .as_deref()
        .and_then(|b| b.trim().parse::<i64>().ok());
    if !address.is_empty() {
        match list.check(&address).await {
            Ok(c) => {
                standing = Some(Standing {
                    address: html::short(&c.address),
                    suppressed: c.suppressed,
                    reason: reason(c.reason),
                    since: time(c.since),
                    until: if c.suppressed && c.until.is_none() {
                        "until removed".to_owned()
                    } else {
                        time(c.until)
                    },
                    note: c.note.as_deref().map(html::short).unwrap_or_default(),
                })
            }
            Err(e) if matches!(e.kind(), InboxErrorKind::Invalid | InboxErrorKind::NotKept) => {
                error = html::short(&e.to_string());
            }
            Err(e) => return html::failed(&e),
        }
        match list.history_page(&address, before, PAGE).await {
            Ok(page) => {
                changes = match (page.total, before) {
                    (1, _) => "1 change in all.".to_owned(),
                    (n, None) if n as usize <= page.changes.len() => {
                        format!("{n} changes in all.")
                    }
                    (n, _) => format!(
                        "{n} changes in all; {} here, newest first.",
                        page.changes.len()
                    ),
                };
                if before.is_some() {
                    newest = Some(format!(
                        "/suppressions?address={}",
                        html::query_escape(&address)
                    ));
                }
                older = page.older.map(|id| {
                    format!(
                        "/suppressions?address={}&before={id}",
                        html::query_escape(&address)
                    )
                });
                history = page
                    .changes
                    .iter()
                    .map(|c| ChangeView {
                        at: html::time(c.at),
                        change: html::short(&c.change),
                        reason: reason(c.reason),
                        note: c.note.as_deref().map(html::short).unwrap_or_default(),
                        source: c.source.as_deref().map(html::short).unwrap_or_default(),
                        key: c.key.map(|k| k.to_string()).unwrap_or_default(),
                    })
                    .collect()
            }
            Err(e) if e.kind() == InboxErrorKind::Invalid => {}
            Err(e) => return html::failed(&e),
        }
    }
    let chosen = query
        .reason
        .as_deref()
        .and_then(SuppressionReason::from_column);
    let all = query.all.as_deref() == Some("1");
    let mut filter = ListFilter::default();
    filter.reason = chosen;
    filter.suppressed_only = !all;
    // (Cleaned as the address box is: U+0000, which PostgreSQL's text
    // refuses, or any control character is in no address.)
    filter.after = query
        .after
        .as_deref()
        .map(|a| html::clean_input(a, MAX_ADDRESS));
    filter.limit = PAGE + 1;
    let mut rows = match list.list(&filter).await {
        Ok(rows) => rows,
        Err(e) => return html::failed(&e),
    };
    let more = rows.len() > PAGE;
    rows.truncate(PAGE);
    let reason_name = chosen.map(|r| r.as_str().to_owned()).unwrap_or_default();
    let next = more.then(|| {
        format!(
            "/suppressions?reason={}&all={}&after={}",
            reason_name,
            u8::from(all),
            html::query_escape(&rows.last().map(|r| r.address.clone()).unwrap_or_default())
        )
    });
    let entries = rows
        .iter()
        .map(|e| EntryView {
            address: html::short(&e.address),
            query: html::query_escape(&e.address),
            reason: reason(e.reason),
            since: time(e.since),
            until: if e.reason.is_some() && e.until.is_none() {
                "until removed".to_owned()
            } else {
                time(e.until)
            },
            note: e.note.as_deref().map(html::short).unwrap_or_default(),
            bounces: format!(
                "{} hard, {} soft, {} unknown",
                e.hard_bounces, e.soft_bounces, e.unknown_bounces
            ),
        })
        .collect();
    let done = match query.done.as_deref() {
        Some("added") => "Added.",
        Some("replaced") => "Added, in the place of the earlier suppression.",
        Some("unchanged") => "Nothing changed: the address is unsubscribed, which is for good.",
        Some("removed") => "Removed.",
        Some("absent") => "Nothing to remove: the list held nothing for this address.",
        _ => "",
    };
    html::render(&Page {
        layout: Layout::of(&user, "suppressions"),
        address,
        done: done.to_owned(),
        error,
        standing,
        history,
        changes,
        older,
        newest,
        reasons: REASONS.iter().map(|r| (*r, *r == reason_name)).collect(),
        all,
        entries,
        next,
        csrf: user.csrf.clone(),
    })
}

/// The form of an addition or a removal.
#[derive(Debug, Deserialize)]
pub struct ChangeForm {
    csrf: Option<String>,
    address: Option<String>,
    note: Option<String>,
    days: Option<String>,
}

/// What the user asked, checked: the address, and the note to record
/// (`USER: NOTE`); or the answer that refuses it.
fn checked(user: &auth::User, form: &ChangeForm) -> Result<(String, String), Box<Response>> {
    if !csrf::check(&user.csrf, form.csrf.as_deref()) {
        return Err(Box::new(csrf::refused_for(
            "a change of the suppression list without the session's token",
            user,
        )));
    }
    let address = html::clean_input(form.address.as_deref().unwrap_or(""), MAX_ADDRESS)
        .trim()
        .to_owned();
    let note = html::clean_input(form.note.as_deref().unwrap_or(""), MAX_NOTE)
        .trim()
        .to_owned();
    let refuse = |text: &str| {
        Message {
            layout: Layout::of(user, "suppressions"),
            title: "Not changed".into(),
            text: text.to_owned(),
            back: Some(format!(
                "/suppressions?address={}",
                html::query_escape(&address)
            )),
        }
        .answer(StatusCode::BAD_REQUEST)
    };
    if address.is_empty() {
        return Err(Box::new(refuse("Give an address.")));
    }
    if note.is_empty() {
        return Err(Box::new(refuse(
            "Give a note: it is kept in the address's history.",
        )));
    }
    Ok((address, format!("{}: {note}", user.name)))
}

fn invalid(user: &auth::User, address: &str, e: &cmc_webhook_inbox::InboxError) -> Response {
    if e.kind() == InboxErrorKind::Invalid {
        Message {
            layout: Layout::of(user, "suppressions"),
            title: "Not changed".into(),
            text: html::short(&e.to_string()),
            back: Some(format!(
                "/suppressions?address={}",
                html::query_escape(address)
            )),
        }
        .answer(StatusCode::BAD_REQUEST)
    } else {
        html::failed(e)
    }
}

fn back(address: &str, done: &str) -> Response {
    Redirect::to(&format!(
        "/suppressions?address={}&done={done}",
        html::query_escape(address)
    ))
    .into_response()
}

/// `POST /suppressions/add`: fields `csrf`, `address`, `note`, and `days`
/// (empty: until removed).
pub async fn add(
    State(console): State<Console>,
    user: auth::User,
    Form(form): Form<ChangeForm>,
) -> Response {
    let (address, note) = match checked(&user, &form) {
        Ok(c) => c,
        Err(answer) => return *answer,
    };
    let days = form.days.as_deref().map(str::trim).unwrap_or("");
    let lasts = if days.is_empty() {
        None
    } else {
        match days.parse::<u64>() {
            Ok(d @ 1..=36_500) => Some(std::time::Duration::from_secs(d * 86_400)),
            _ => {
                return Message {
                    layout: Layout::of(&user, "suppressions"),
                    title: "Not changed".into(),
                    text: "Days: a whole number from 1 to 36500, or empty for until removed."
                        .into(),
                    back: Some(format!(
                        "/suppressions?address={}",
                        html::query_escape(&address)
                    )),
                }
                .answer(StatusCode::BAD_REQUEST);
            }
        }
    };
    match console
        .inbox()
        .suppressions()
        .add(&address, lasts, &note)
        .await
    {
        Ok(added) => {
            tracing::info!(
                user = user.name,
                address = %html::short(&added.address),
                outcome = added.outcome.as_str(),
                "console: an address suppressed by hand"
            );
            back(&added.address, added.outcome.as_str())
        }
        Err(e) => invalid(&user, &address, &e),
    }
}

/// `POST /suppressions/remove`: fields `csrf`, `address`, `note`.
pub async fn remove(
    State(console): State<Console>,
    user: auth::User,
    Form(form): Form<ChangeForm>,
) -> Response {
    let (address, note) = match checked(&user, &form) {
        Ok(c) => c,
        Err(answer) => return *answer,
    };
    // Logged and shown as the list keeps it (`User@EXAMPLE.JP` is
    // `User@example.jp`), as an addition is.
    let address = cmc_webhook_inbox::suppression::normalize(&address).unwrap_or(address);
    match console.inbox().suppressions().remove(&address, &note).await {
        Ok(removed) => {
            tracing::info!(
                user = user.name,
                address = %html::short(&address),
                removed,
                "console: a suppression lifted by hand"
            );
            back(&address, if removed { "removed" } else { "absent" })
        }
        Err(e) => invalid(&user, &address, &e),
    }
}
