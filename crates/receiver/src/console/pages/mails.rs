//! `GET /mails/{id}`: an inbound mail: its envelope, its headers, its
//! text body, its HTML body in a sandboxed frame, its attachments and its
//! mailbox deliveries; `GET /mails/{id}/html`: the HTML body alone,
//! sanitised ([`sanitize`]), for that frame,
//! under a `sandbox` Content-Security-Policy (never run, never loading
//! anything from the network); `GET /mails/{id}/attachments/{n}`:
//! attachment `n` (1 for CMC's `attachment1`) as a download with a safe
//! name.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use cmc_webhook_inbox::mailbox::{DeliveryFilter, StoredMail};
use http::{HeaderValue, StatusCode};

use super::Message;
use super::raw::preview;
use crate::console::state::{Console, Layout};
use crate::console::{auth, html, sanitize};

/// The Content-Security-Policy of a mail's HTML body: a sandbox (no
/// script, no form, no plugin, an origin of its own), nothing loaded but
/// inline style and `data:` images, framed only by the console.
pub const MAIL_HTML_CSP: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'; \
                                 img-src data:; frame-ancestors 'self'";

/// The most characters of a header field's value shown (the rest cut with
/// a marker).
pub const HEADER_SHOWN: usize = 2000;

/// The most header fields shown.
pub const HEADERS_SHOWN: usize = 500;

/// The most bytes of the text body shown.
pub const TEXT_SHOWN: usize = 256 * 1024;

/// The most mailbox deliveries of a mail listed.
pub const DELIVERIES_SHOWN: usize = 100;

/// An attachment as the page lists it.
#[derive(Debug)]
pub struct AttachmentView {
    n: usize,
    name: String,
    safe_name: String,
    content_type: String,
    lossy: bool,
}

/// A mailbox delivery as the page lists it.
#[derive(Debug)]
pub struct DeliveryView {
    id: i64,
    mailbox: String,
    recipients: String,
    route: String,
    state: &'static str,
    attempts: u32,
    last_error: String,
    bounce_reason: String,
    created_at: String,
    done_at: String,
}

/// The mail's page.
#[derive(Debug, Template)]
#[template(path = "console/mail.html")]
pub struct MailPage {
    layout: Layout,
    id: i64,
    subject: String,
    envelope: Vec<(&'static str, String)>,
    message_id: Option<(String, String)>,
    headers: Vec<(String, String)>,
    headers_more: usize,
    text: Option<String>,
    text_cut: Option<usize>,
    has_html: bool,
    html_size: usize,
    attachments: Vec<AttachmentView>,
    deliveries: Vec<DeliveryView>,
    deliveries_more: bool,
}

fn gone(user: &auth::User, id: i64) -> Response {
    Message {
        layout: Layout::of(user, "search"),
        title: format!("Mail {id}"),
        text: "This mail is not stored (pruned, or never received).".into(),
        back: Some("/search".into()),
    }
    .answer(StatusCode::NOT_FOUND)
}

async fn read(console: &Console, user: &auth::User, id: i64) -> Result<StoredMail, Response> {
    match console.inbox().mail(id).await {
        Ok(Some(mail)) => Ok(mail),
        Ok(None) => Err(gone(user, id)),
        Err(e) => Err(html::failed(&e)),
    }
}

/// `GET /mails/{id}`.
pub async fn page(
    State(console): State<Console>,
    user: auth::User,
    Path(id): Path<i64>,
) -> Response {
    let stored = match read(&console, &user, id).await {
        Ok(m) => m,
        Err(answer) => return answer,
    };
    let deliveries = match console
        .inbox()
        .deliveries()
        .list(&DeliveryFilter::all().mail(id).limit(DELIVERIES_SHOWN + 1))
        .await
    {
        Ok(d) => d,
        Err(e) => return html::failed(&e),
    };
    let mail = &stored.mail;
    let text_cut = mail
        .text
        .as_ref()
        .filter(|t| t.len() > TEXT_SHOWN)
        .map(|t| t.len());
    let text = mail.text.as_ref().map(|t| {
        let mut end = t.len().min(TEXT_SHOWN);
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        preview(t[..end].as_bytes()).0
    });
    let headers: Vec<(String, String)> = (&mail.headers)
        .into_iter()
        .take(HEADERS_SHOWN)
        .map(|h| (html::short(&h.name), html::show(&h.value, HEADER_SHOWN)))
        .collect();
    let headers_more = (&mail.headers).into_iter().count() - headers.len();
    let message_id = mail.headers.get("Message-ID").map(|m| {
        let m = m.trim();
        (html::short(m), html::query_escape(m))
    });
    html::render(&MailPage {
        layout: Layout::of(&user, "search"),
        id,
        subject: html::short(&mail.subject),
        envelope: vec![
            ("From (envelope)", html::short(&mail.envelope_from)),
            ("To (envelope)", html::short(&mail.envelope_to)),
            ("Received", html::time(stored.received_at)),
            (
                "Client",
                stored.client.map(|c| c.to_string()).unwrap_or_default(),
            ),
            ("Source", html::short(&stored.source)),
            (
                "Server configuration",
                html::short(&mail.server_composition),
            ),
            ("Inbound rule", html::short(&mail.filter)),
            ("Key", stored.key.to_string()),
        ],
        message_id,
        headers,
        headers_more,
        text,
        text_cut,
        has_html: mail.html.is_some(),
        html_size: mail.html.as_ref().map(|h| h.len()).unwrap_or(0),
        attachments: mail
            .attachments
            .iter()
            .enumerate()
            .map(|(i, a)| AttachmentView {
                n: i + 1,
                name: html::short(&a.filename),
                safe_name: html::short(&a.safe_filename()),
                content_type: html::short(&a.content_type),
                lossy: a.filename_lossy,
            })
            .collect(),
        deliveries_more: deliveries.len() > DELIVERIES_SHOWN,
        deliveries: deliveries
            .iter()
            .take(DELIVERIES_SHOWN)
            .map(|d| DeliveryView {
                id: d.id,
                mailbox: d
                    .mailbox
                    .as_deref()
                    .map(html::short)
                    .unwrap_or_else(|| "(unrouted)".to_owned()),
                recipients: html::short(&d.recipients.join(", ")),
                route: d.route.as_deref().map(html::short).unwrap_or_default(),
                state: d.state.as_str(),
                attempts: d.attempts,
                last_error: d.last_error.as_deref().map(html::short).unwrap_or_default(),
                bounce_reason: d
                    .bounce_reason
                    .as_deref()
                    .map(html::short)
                    .unwrap_or_default(),
                created_at: html::time(d.created_at),
                done_at: d.done_at.map(html::time).unwrap_or_default(),
            })
            .collect(),
    })
}

/// How many HTML bodies are sanitised at once (each on a blocking
/// thread that holds its turn until it is done, even when the client
/// has gone; the others wait).
static SANITISING: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Semaphore::new(1)));

/// `GET /mails/{id}/html`: the HTML body sanitised
/// ([`sanitize::mail_html`]: no script, handler, form, frame, meta, base,
/// link or remote URL left; links inert, remote images as placeholders),
/// under [`MAIL_HTML_CSP`]; the console's frame also has an empty
/// `sandbox` attribute: three locks, each enough to keep a script from
/// running. A body the sanitiser refuses (too large, too deep, too many
/// elements) is answered with a line saying why.
pub async fn html_body(
    State(console): State<Console>,
    user: auth::User,
    Path(id): Path<i64>,
) -> Response {
    let stored = match read(&console, &user, id).await {
        Ok(m) => m,
        Err(answer) => return answer,
    };
    let Some(body) = stored.mail.html else {
        return gone(&user, id);
    };
    let sanitised = match SANITISING.clone().acquire_owned().await {
        Ok(turn) => tokio::task::spawn_blocking(move || {
            let shown = sanitize::mail_html(&body);
            drop(turn);
            shown
        })
        .await
        .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let shown = match sanitised {
        Ok(Ok(shown)) => shown,
        Ok(Err(refused)) => {
            tracing::info!(mail = id, %refused, "console: an HTML body not shown");
            format!(
                "<p>Not shown: {refused}. Its text body is on the mail's page, and its raw \
                 request when one is kept.</p>"
            )
        }
        Err(e) => {
            tracing::error!(mail = id, error = %e, "console: the HTML sanitiser failed");
            "<p>The HTML body could not be shown.</p>".to_owned()
        }
    };
    let mut answer = (
        [(http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        shown,
    )
        .into_response();
    let headers = answer.headers_mut();
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(MAIL_HTML_CSP),
    );
    headers.insert(
        http::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    answer
}

/// `filename*` of RFC 6266 (RFC 8187's `UTF-8''` and percent-encoding).
fn ext_value(name: &str) -> String {
    let mut out = String::from("UTF-8''");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `Content-Disposition` of an attachment named `safe` (already made
/// safe): a quoted ASCII `filename` for old clients (other characters as
/// `_`), and the whole name in `filename*`.
pub fn disposition(safe: &str) -> String {
    let ascii: String = safe
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{ascii}\"; filename*={}",
        ext_value(safe)
    )
}

/// `GET /mails/{id}/attachments/{n}`: attachment `n` (from 1) as
/// `application/octet-stream`, whatever type the sender gave it.
pub async fn attachment(
    State(console): State<Console>,
    user: auth::User,
    Path((id, n)): Path<(i64, usize)>,
) -> Response {
    let stored = match read(&console, &user, id).await {
        Ok(m) => m,
        Err(answer) => return answer,
    };
    let Some(file) = n
        .checked_sub(1)
        .and_then(|i| stored.mail.attachments.get(i))
    else {
        return Message {
            layout: Layout::of(&user, "search"),
            title: format!("Mail {id}"),
            text: format!(
                "This mail has {} attachment(s): there is no attachment {n}.",
                stored.mail.attachments.len()
            ),
            back: Some(format!("/mails/{id}")),
        }
        .answer(StatusCode::NOT_FOUND);
    };
    // The core's safe name, without the invisible characters it keeps
    // (a bidirectional override would show `evil\u{202e}fdp.exe` as
    // `evilexe.pdf` in a downloads list).
    let name = match html::clean_input(&file.safe_filename(), 255) {
        name if name.trim().is_empty() => format!("attachment{n}"),
        name => name,
    };
    match stored.attachment(n - 1).await {
        Ok(bytes) => {
            tracing::info!(
                user = user.name,
                mail = id,
                attachment = n,
                "console: an attachment downloaded"
            );
            let disposition = HeaderValue::from_str(&disposition(&name))
                .unwrap_or(HeaderValue::from_static("attachment"));
            (
                [
                    (
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    ),
                    (http::header::CONTENT_DISPOSITION, disposition),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e) => html::failed(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disposition_is_one_line_of_ascii_with_the_name_in_full() {
        let d = disposition("報告 \"x\".pdf");
        assert!(
            d.is_ascii() && !d.contains('\r') && !d.contains('\n'),
            "{d}"
        );
        assert!(
            d.starts_with("attachment; filename=\"__ _x_.pdf\"; "),
            "{d}"
        );
        assert!(
            d.ends_with("filename*=UTF-8''%E5%A0%B1%E5%91%8A%20%22x%22.pdf"),
            "{d}"
        );
        assert!(HeaderValue::from_str(&d).is_ok());
    }
}
