//! `GET /raw/{id}`: a kept raw request shown as text (escaped; bytes that
//! are not UTF-8 written as `\xNN`), and `GET /raw/{id}/download`: its
//! body as an `application/octet-stream` attachment.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::Message;
use crate::console::state::{Console, Layout};
use crate::console::{auth, html};

/// The most bytes of a body a page shows.
pub const SHOWN: usize = 256 * 1024;

/// The raw request page.
#[derive(Debug, Template)]
#[template(path = "console/raw.html")]
pub struct Raw {
    layout: Layout,
    id: i64,
    facts: Vec<(&'static str, String)>,
    size: u64,
    binary: bool,
    body: String,
    cut: bool,
    shown: usize,
}

fn gone(user: &auth::User, id: i64) -> Response {
    Message {
        layout: Layout::of(user, "search"),
        title: format!("Raw request {id}"),
        text: "This raw request is not stored (pruned, or never kept).".into(),
        back: Some("/search".into()),
    }
    .answer(StatusCode::NOT_FOUND)
}

/// `bytes` as text: UTF-8 shown as it is (with control characters other
/// than tab and line ends escaped), other bytes as `\xNN`.
pub fn preview(bytes: &[u8]) -> (String, bool) {
    let mut out = String::with_capacity(bytes.len());
    let mut binary = false;
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\n' || c == '\t' {
                out.push(c);
            } else if c == '\r' {
                out.push_str("\\r");
            } else if c.is_control() || cmc_webhook_core::printable(&c.to_string(), 2).len() > 4 {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            binary = true;
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    (out, binary)
}

/// `GET /raw/{id}`.
pub async fn page(
    State(console): State<Console>,
    user: auth::User,
    Path(id): Path<i64>,
) -> Response {
    let inbox = console.inbox();
    let row = match inbox.raw_requests(id.saturating_sub(1), 1).await {
        Ok(rows) => rows.into_iter().find(|r| r.id == id),
        Err(e) => return html::failed(&e),
    };
    let Some(row) = row else {
        return gone(&user, id);
    };
    let body = match inbox.raw_body(id).await {
        Ok(body) => body,
        Err(e) if e.kind() == cmc_webhook_inbox::InboxErrorKind::Invalid => return gone(&user, id),
        Err(e) => return html::failed(&e),
    };
    let cut = body.len() > SHOWN;
    let shown = body.len().min(SHOWN);
    let (text, binary) = preview(&body[..shown]);
    let opt = |v: &Option<String>| v.as_deref().map(html::short).unwrap_or_default();
    html::render(&Raw {
        layout: Layout::of(&user, "search"),
        id,
        facts: vec![
            ("Received", html::time(row.received_at)),
            ("From", opt(&row.client)),
            ("Source", opt(&row.source)),
            ("Outcome", format!("{:?}", row.outcome)),
            ("Reason", opt(&row.reason)),
            ("Content-Type", html::short(&row.content_type)),
            ("User-Agent", opt(&row.user_agent)),
            ("SHA-256", row.sha256.clone()),
            ("Repeats", row.repeats.to_string()),
        ],
        size: row.size,
        binary,
        body: text,
        cut,
        shown,
    })
}

/// `GET /raw/{id}/download`: the body, as a download named
/// `raw-request-<id>.bin`.
pub async fn download(
    State(console): State<Console>,
    user: auth::User,
    Path(id): Path<i64>,
) -> Response {
    match console.inbox().raw_body(id).await {
        Ok(body) => {
            tracing::info!(
                user = user.name,
                raw_request = id,
                "console: a raw request downloaded"
            );
            (
                [
                    (
                        http::header::CONTENT_TYPE,
                        "application/octet-stream".to_owned(),
                    ),
                    (
                        http::header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"raw-request-{id}.bin\""),
                    ),
                ],
                body,
            )
                .into_response()
        }
        Err(e) if e.kind() == cmc_webhook_inbox::InboxErrorKind::Invalid => gone(&user, id),
        Err(e) => html::failed(&e),
    }
}
