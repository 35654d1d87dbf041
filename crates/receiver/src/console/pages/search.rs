//! `GET /search?q=`: one box for a Message-ID, a key, a recipient or
//! words of a subject; and `GET /message?id=`: a message's timeline.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use cmc_webhook_core::IdempotencyKey;
use cmc_webhook_inbox::Kind;
use cmc_webhook_inbox::browse::{Find, RowQuery, SUBJECT_WINDOW};
use serde::Deserialize;

use super::rows::{RowView, Table};
use crate::console::state::{Console, Layout};
use crate::console::{auth, html};

/// Results of one kind.
#[derive(Debug)]
pub struct Section {
    kind: &'static str,
    title: &'static str,
    table: Table,
    next: Option<String>,
}

/// The search page.
#[derive(Debug, Template)]
#[template(path = "console/search.html")]
pub struct Search {
    layout: Layout,
    q: String,
    what: String,
    timeline: Option<String>,
    sections: Vec<Section>,
}

/// The search's query.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    before: Option<i64>,
    mail_before: Option<i64>,
}

/// The most characters of a search taken.
const MAX_QUERY: usize = 1000;

/// What the box holds.
pub fn classify(q: &str) -> Find {
    let q = q.trim();
    if q.len() == 32
        && let Ok(key) = q.parse::<IdempotencyKey>()
    {
        return Find::Key(key);
    }
    if q.starts_with('<') && q.ends_with('>') && !q.contains(char::is_whitespace) {
        return Find::MessageId(q.to_owned());
    }
    if !q.contains(char::is_whitespace) && q.contains('@') {
        // Also taken as a Message-ID without its brackets (`page`).
        return Find::Recipient(q.to_owned());
    }
    Find::Subject(q.split_whitespace().map(str::to_owned).collect())
}

/// `GET /search`.
pub async fn page(
    State(console): State<Console>,
    user: auth::User,
    Query(query): Query<SearchQuery>,
) -> Response {
    let q = html::clean_input(&query.q.unwrap_or_default(), MAX_QUERY);
    let mut sections = Vec::new();
    let mut what = String::new();
    let mut timeline = None;
    if !q.trim().is_empty() {
        let mut finds = vec![classify(&q)];
        // An address-like text may be a Message-ID without its brackets.
        if let Find::Recipient(text) = &finds[0] {
            finds.push(Find::MessageId(format!("<{text}>")));
        }
        what = match &finds[0] {
            Find::Key(_) => "Looking for the row with this key.".to_owned(),
            Find::MessageId(_) => "Looking for the rows of this Message-ID.".to_owned(),
            Find::Recipient(_) => {
                "Looking for events to this recipient, mails to this address, and the rows of the \
                 Message-ID <…> of this text."
                    .to_owned()
            }
            Find::Subject(_) => format!(
                "Looking for mails whose subject holds every word, among the {SUBJECT_WINDOW} \
                 most recent mails (events are not searched by subject)."
            ),
            _ => String::new(),
        };
        if let Find::MessageId(id) = finds.last().expect("one at least") {
            timeline = Some(format!("/message?id={}", html::query_escape(id)));
        }
        for (kind, title, before) in [
            (Kind::Event, "Events", query.before),
            (Kind::Mail, "Inbound mails", query.mail_before),
        ] {
            let mut rows = Vec::new();
            for find in &finds {
                let mut rq = RowQuery::new(kind).find(find.clone()).limit(50);
                if let Some(before) = before {
                    rq = rq.before(before);
                }
                match console.inbox().rows(&rq).await {
                    Ok(found) => rows.extend(found),
                    Err(e) => return html::failed(&e),
                }
            }
            rows.truncate(50);
            let next = (rows.len() == 50).then(|| {
                let last = rows.last().map(|r| r.id.id).unwrap_or(0);
                let param = if kind == Kind::Event {
                    "before"
                } else {
                    "mail_before"
                };
                format!("/search?q={}&{param}={last}", html::query_escape(&q))
            });
            sections.push(Section {
                kind: kind.as_str(),
                title,
                table: Table::of(&rows),
                next,
            });
        }
    }
    html::render(&Search {
        layout: Layout::of(&user, "search"),
        q,
        what,
        timeline,
        sections,
    })
}

/// An event's delivery status or bounce code.
fn status(event: &cmc_webhook_core::Event) -> &str {
    match event {
        cmc_webhook_core::Event::Delivery(d) => d.status.as_str(),
        cmc_webhook_core::Event::Bounce(b) => b.status.code(),
        _ => "-",
    }
}

/// An event of a timeline.
#[derive(Debug)]
pub struct Step {
    what: String,
    created: String,
    received_at: String,
    source: String,
    state: &'static str,
    attempts: u32,
    last_error: Option<String>,
    replayed: Option<String>,
    key: String,
    raw_request: Option<i64>,
}

/// A message's timeline.
#[derive(Debug, Template)]
#[template(path = "console/timeline.html")]
pub struct Timeline {
    layout: Layout,
    message_id: String,
    events: Vec<Step>,
    unreadable: Vec<String>,
    mails: Vec<RowView>,
}

/// The timeline's query.
#[derive(Debug, Deserialize)]
pub struct MessageQuery {
    id: Option<String>,
}

/// `GET /message?id=`: every event of a Message-ID in CMC's order, and
/// the inbound mails of that Message-ID.
pub async fn timeline(
    State(console): State<Console>,
    user: auth::User,
    Query(query): Query<MessageQuery>,
) -> Response {
    // Taken as it is (a link of a page may carry any stored Message-ID),
    // and only ever shown through `html::short`.
    let mut id: String = query
        .id
        .unwrap_or_default()
        .trim()
        .chars()
        .take(MAX_QUERY)
        .collect();
    if !id.is_empty() && !id.starts_with('<') {
        id = format!("<{id}>");
    }
    let history = match console.inbox().history(&id).await {
        Ok(h) => h,
        Err(e) => return html::failed(&e),
    };
    let events = history
        .iter()
        .map(|e| Step {
            what: html::short(&format!(
                "{} {} {}",
                e.event.event_type().as_str(),
                e.event.recipient().unwrap_or("-"),
                status(&e.event)
            )),
            created: e
                .event
                .created()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "(no time)".to_owned()),
            received_at: html::time(e.received_at),
            source: html::short(&e.source),
            state: e.state.as_str(),
            attempts: e.attempts,
            last_error: e.last_error.as_deref().map(html::short),
            replayed: e.replayed.as_ref().map(|r| {
                format!(
                    "at {} by {}",
                    html::time(r.at),
                    r.by.as_deref()
                        .map(html::short)
                        .unwrap_or_else(|| "(no name)".into())
                )
            }),
            key: e.key.to_string(),
            raw_request: e.raw_request,
        })
        .collect();
    let unreadable = history
        .unreadable()
        .iter()
        .map(|u| html::short(&format!("{}: {}", u.id, u.error)))
        .collect();
    let mails = match console
        .inbox()
        .rows(&RowQuery::new(Kind::Mail).find(Find::MessageId(id.clone())))
        .await
    {
        Ok(rows) => Table::of(&rows).rows,
        Err(e) => return html::failed(&e),
    };
    html::render(&Timeline {
        layout: Layout::of(&user, "search"),
        message_id: html::short(&id),
        events,
        unreadable,
        mails,
    })
}
