//! `GET /rows`: dead and failing rows, filtered by kind, source and error
//! text, 50 a page; `GET /replay`: the confirmation of a replay (one row,
//! a selection, or every row the filter takes), with how many rows it
//! takes; `POST /replay`: the replay, by the user logged in (recorded in
//! each row's `replayed_by`, and logged).

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::Response;
use cmc_webhook_inbox::browse::{ERROR_WINDOW, RowQuery, RowStates, RowSummary};
use cmc_webhook_inbox::{Filter, Kind, State as RowState};
use http::StatusCode;

use super::Message;
use crate::console::state::{Console, Layout};
use crate::console::{auth, csrf, html};

/// A Message-ID to show and to link.
#[derive(Debug)]
pub struct MessageLink {
    pub(crate) shown: String,
    pub(crate) query: String,
}

/// A row as the tables show it.
#[derive(Debug)]
pub struct RowView {
    pub(crate) kind: &'static str,
    pub(crate) id: i64,
    pub(crate) key: String,
    pub(crate) state: &'static str,
    pub(crate) summary: String,
    pub(crate) message_id: Option<MessageLink>,
    pub(crate) attempts: u32,
    pub(crate) last_error: String,
    pub(crate) received_at: String,
    pub(crate) source: String,
    pub(crate) replayed: String,
    pub(crate) raw_request: Option<i64>,
}

impl RowView {
    /// The view of a row read back.
    pub fn of(r: &RowSummary) -> RowView {
        let cut = if r.cut { " [cut]" } else { "" };
        RowView {
            kind: r.id.kind.as_str(),
            id: r.id.id,
            key: html::short(&r.key),
            state: r.state.as_str(),
            summary: format!("{}{cut}", html::short(&r.summary)),
            message_id: r.message_id.as_deref().map(|m| MessageLink {
                shown: html::short(m),
                query: html::query_escape(m),
            }),
            attempts: r.attempts,
            last_error: r.last_error.as_deref().map(html::short).unwrap_or_default(),
            received_at: html::time(r.received_at),
            source: html::short(&r.source),
            replayed: r
                .replayed
                .as_ref()
                .map(|p| {
                    format!(
                        "{} by {}",
                        html::time(p.at),
                        p.by.as_deref()
                            .map(html::short)
                            .unwrap_or_else(|| "(no name)".into())
                    )
                })
                .unwrap_or_default(),
            raw_request: r.raw_request,
        }
    }
}

/// Rows for `console/rows_table.html`.
#[derive(Debug)]
pub struct Table {
    /// The rows.
    pub rows: Vec<RowView>,
}

impl Table {
    /// The table of `rows`.
    pub fn of(rows: &[RowSummary]) -> Table {
        Table {
            rows: rows.iter().map(RowView::of).collect(),
        }
    }
}

/// The filter of the rows page and of a replay.
#[derive(Debug, Clone)]
pub struct RowFilter {
    kind: Kind,
    dead: bool,
    source: String,
    error: String,
    before: Option<i64>,
    scope: String,
    ids: Vec<i64>,
    csrf: Option<String>,
    /// The highest id a replay of the filter takes (the newest row its
    /// confirmation counted).
    upto: Option<i64>,
}

impl RowFilter {
    /// Reads the pairs of a query or a form.
    pub fn of(pairs: &[(String, String)]) -> RowFilter {
        let mut f = RowFilter {
            kind: Kind::Event,
            dead: true,
            source: String::new(),
            error: String::new(),
            before: None,
            scope: String::new(),
            ids: Vec::new(),
            csrf: None,
            upto: None,
        };
        for (name, value) in pairs {
            match name.as_str() {
                "kind" if value == "mail" => f.kind = Kind::Mail,
                "state" => f.dead = value != "failing",
                "source" => f.source = html::clean_input(value, 200),
                "error" => f.error = html::clean_input(value, 1000),
                "before" => f.before = value.parse().ok(),
                "scope" => f.scope = value.chars().take(20).collect(),
                "id" => {
                    if let Ok(id) = value.parse()
                        && f.ids.len() < Filter::MAX_IDS
                    {
                        f.ids.push(id);
                    }
                }
                "csrf" => f.csrf = Some(value.clone()),
                "upto" => f.upto = value.parse().ok(),
                _ => {}
            }
        }
        f
    }

    fn query(&self) -> RowQuery {
        let mut q = RowQuery::new(self.kind).states(if self.dead {
            RowStates::Dead
        } else {
            RowStates::Failing
        });
        if !self.source.is_empty() {
            q = q.source(self.source.clone());
        }
        if !self.error.is_empty() {
            q = q.error_contains(&self.error);
        }
        q
    }

    /// The query string of this filter (without paging).
    fn link(&self) -> String {
        format!(
            "kind={}&state={}&source={}&error={}",
            self.kind.as_str(),
            if self.dead { "dead" } else { "failing" },
            html::query_escape(&self.source),
            html::query_escape(&self.error)
        )
    }

    /// What a replay with this filter takes.
    fn replay_filter(&self) -> Filter {
        if self.scope == "filter" {
            let mut f = Filter::dead().kind(self.kind);
            if !self.source.is_empty() {
                f = f.source(self.source.clone());
            }
            if !self.error.is_empty() {
                f = f.error_contains(&self.error);
            }
            // Checked present by the replay: rows stored (and dead)
            // since the confirmation are not taken.
            f.up_to(self.upto.unwrap_or(0))
        } else {
            Filter::ids(self.kind, self.ids.iter().copied()).states([RowState::Dead])
        }
    }
}

/// When `f` filters by error text and its states hold more rows than
/// [`ERROR_WINDOW`]: what the filter looked at (the most recent rows
/// only), for the page to say.
async fn window_note(
    inbox: &cmc_webhook_inbox::Inbox,
    f: &RowFilter,
) -> Result<Option<String>, cmc_webhook_inbox::InboxError> {
    if f.error.is_empty() {
        return Ok(None);
    }
    let counts = if f.source.is_empty() {
        inbox.counts().await?
    } else {
        inbox.counts_of(&f.source).await?
    };
    let c = counts.of(f.kind);
    let (rows, what) = if f.dead {
        (c.dead, "dead")
    } else {
        (c.pending + c.running, "pending or running")
    };
    Ok((rows > ERROR_WINDOW as u64).then(|| {
        format!(
            "The error filter looked at the last {ERROR_WINDOW} {what} {} rows{} only, of {rows}: \
             older ones were not searched. Refine the filter.",
            f.kind.as_str(),
            if f.source.is_empty() {
                String::new()
            } else {
                format!(" of source {}", html::short(&f.source))
            }
        )
    }))
}

/// The rows page.
#[derive(Debug, Template)]
#[template(path = "console/rows.html")]
pub struct Rows {
    layout: Layout,
    heading: String,
    kind: &'static str,
    state: &'static str,
    source: String,
    error: String,
    table: Table,
    next: Option<String>,
    replay_all: String,
    /// What a filter by error text looked at, when it did not look at all.
    window: Option<String>,
}

/// `GET /rows`.
pub async fn page(
    State(console): State<Console>,
    user: auth::User,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let f = RowFilter::of(&pairs);
    let mut q = f.query().limit(50);
    if let Some(before) = f.before {
        q = q.before(before);
    }
    let rows = match console.inbox().rows(&q).await {
        Ok(rows) => rows,
        Err(e) => return html::failed(&e),
    };
    let window = match window_note(console.inbox(), &f).await {
        Ok(w) => w,
        Err(e) => return html::failed(&e),
    };
    let next = (rows.len() == 50).then(|| {
        format!(
            "/rows?{}&before={}",
            f.link(),
            rows.last().map(|r| r.id.id).unwrap_or(0)
        )
    });
    html::render(&Rows {
        layout: Layout::of(&user, "rows"),
        heading: format!(
            "{} {}",
            if f.dead { "Dead" } else { "Failing" },
            if f.kind == Kind::Event {
                "events"
            } else {
                "mails"
            }
        ),
        kind: f.kind.as_str(),
        state: if f.dead { "dead" } else { "failing" },
        source: f.source.clone(),
        error: f.error.clone(),
        table: Table::of(&rows),
        next,
        replay_all: format!("/replay?scope=filter&{}", f.link()),
        window,
    })
}

/// The confirmation of a replay.
#[derive(Debug, Template)]
#[template(path = "console/confirm.html")]
pub struct Confirm {
    layout: Layout,
    count: usize,
    /// More rows may match than were counted.
    more: bool,
    kind: &'static str,
    what: String,
    csrf: String,
    scope: String,
    ids: Vec<i64>,
    source: String,
    error: String,
    back: String,
    upto: Option<i64>,
}

/// The most dead rows a confirmation counts one by one (10 pages).
const COUNTED: usize = 10 * RowQuery::MAX_LIMIT;

/// `GET /replay`: how many rows a replay would take, and the form that
/// does it.
pub async fn confirm(
    State(console): State<Console>,
    user: auth::User,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let mut f = RowFilter::of(&pairs);
    f.dead = true;
    f.upto = None;
    let (count, more, what) = if f.scope == "filter" {
        // Counted a page at a time, up to COUNTED.
        let mut count = 0;
        let mut before = None;
        loop {
            let mut q = f.query().limit(RowQuery::MAX_LIMIT);
            if let Some(b) = before {
                q = q.before(b);
            }
            let page = match console.inbox().rows(&q).await {
                Ok(p) => p,
                Err(e) => return html::failed(&e),
            };
            count += page.len();
            f.upto = f.upto.max(page.iter().map(|r| r.id.id).max());
            before = page.last().map(|r| r.id.id);
            if page.len() < RowQuery::MAX_LIMIT || count >= COUNTED {
                break;
            }
        }
        let window = match window_note(console.inbox(), &f).await {
            Ok(w) => w.map(|w| format!(" {w} The replay takes older matching rows too.")),
            Err(e) => return html::failed(&e),
        };
        let more = if count >= COUNTED {
            " (at least; more may match)"
        } else {
            ""
        };
        (
            count,
            count >= COUNTED,
            format!(
                "Every dead {} row{}{}: {count} now{more}. They are set back to pending and \
                 handled again.{}",
                f.kind.as_str(),
                if f.source.is_empty() {
                    String::new()
                } else {
                    format!(" of source {}", html::short(&f.source))
                },
                if f.error.is_empty() {
                    String::new()
                } else {
                    format!(
                        " whose last error contains \u{201c}{}\u{201d}",
                        html::short(&f.error)
                    )
                },
                window.unwrap_or_default(),
            ),
        )
    } else {
        f.scope = "selected".to_owned();
        f.ids.sort_unstable();
        f.ids.dedup();
        (
            f.ids.len(),
            false,
            format!(
                "The {} selected row(s) ({}), those of them still dead, are set back to pending \
                 and handled again.",
                f.ids.len(),
                f.ids
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    };
    html::render(&Confirm {
        layout: Layout::of(&user, "rows"),
        count,
        more,
        kind: f.kind.as_str(),
        what,
        csrf: user.csrf.clone(),
        scope: f.scope.clone(),
        ids: f.ids.clone(),
        source: f.source.clone(),
        error: f.error.clone(),
        back: format!("/rows?{}", f.link()),
        upto: f.upto,
    })
}

/// `POST /replay`: the replay, after the CSRF check.
pub async fn replay(
    State(console): State<Console>,
    user: auth::User,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let mut f = RowFilter::of(&pairs);
    if !csrf::check(&user.csrf, f.csrf.as_deref()) {
        return csrf::refused_for("a replay without the session's token", &user);
    }
    f.dead = true;
    if f.scope == "filter" && f.upto.is_none() {
        return Message {
            layout: Layout::of(&user, "rows"),
            title: "Nothing replayed".into(),
            text: "This replay does not say which rows its confirmation counted: open the \
                   confirmation again."
                .into(),
            back: Some(format!("/rows?{}", f.link())),
        }
        .answer(StatusCode::BAD_REQUEST);
    }
    if f.scope != "filter" && f.ids.is_empty() {
        return Message {
            layout: Layout::of(&user, "rows"),
            title: "Nothing to replay".into(),
            text: "No row was selected.".into(),
            back: Some(format!("/rows?{}", f.link())),
        }
        .answer(StatusCode::BAD_REQUEST);
    }
    match console
        .inbox()
        .replay_by(&f.replay_filter(), &user.name)
        .await
    {
        Ok(n) => {
            tracing::info!(
                user = user.name,
                kind = f.kind.as_str(),
                scope = %html::short(&f.scope),
                source = %html::short(&f.source),
                error = %html::short(&f.error),
                ids = ?f.ids,
                upto = ?f.upto,
                replayed = n,
                "console: rows replayed"
            );
            Message {
                layout: Layout::of(&user, "rows"),
                title: "Replayed".into(),
                text: format!(
                    "{n} {} row(s) set back to pending, replayed by {}.",
                    f.kind.as_str(),
                    html::short(&user.name)
                ),
                back: Some(format!("/rows?{}", f.link())),
            }
            .answer(StatusCode::OK)
        }
        Err(e) => html::failed(&e),
    }
}
