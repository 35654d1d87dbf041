//! Helpers for the pages: stored text made safe and bounded to show
//! (askama escapes it for HTML; these make it readable: control and
//! invisible characters, CR/LF, U+0000 and bidirectional overrides
//! written as `\u{..}`, long values cut with a visible marker), query
//! strings, times, and rendering a template into an answer.

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use http::StatusCode;

/// The most characters of one value a page shows.
pub const SHOW: usize = 500;

/// `text` to show: control and invisible characters escaped, cut after
/// `max` characters with a marker saying how long it was.
pub fn show(text: &str, max: usize) -> String {
    let shown = cmc_webhook_core::printable(text, max);
    if text.chars().nth(max).is_some() {
        let total = text.chars().count();
        format!("{shown} [cut: {total} characters in all]")
    } else {
        shown
    }
}

/// What an operator typed into a box (a search, a filter), without the
/// characters no search needs and a page must not echo: control
/// characters (CR, LF, U+0000, ...) and invisible formatting ones
/// (bidirectional overrides, zero-width characters); at most `max`
/// characters.
pub fn clean_input(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| {
            !c.is_control()
                && cmc_webhook_core::printable(c.encode_utf8(&mut [0; 4]), 2).len() == c.len_utf8()
        })
        .take(max)
        .collect()
}

/// [`show`] with [`SHOW`].
pub fn short(text: &str) -> String {
    show(text, SHOW)
}

/// `text` percent-encoded for a query string's value.
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A time to show: UTC, to the second.
pub fn time(at: jiff::Timestamp) -> String {
    at.round(jiff::Unit::Second)
        .unwrap_or(at)
        .strftime("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// A rendered template as an HTML answer (500 if it fails to render).
pub fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console: a page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

/// An inbox error as an answer (logged; the page says it failed).
pub fn failed(e: &cmc_webhook_inbox::InboxError) -> Response {
    tracing::error!(error = %e, "console: a read of the inbox failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("the inbox could not be read: {}\n", short(&e.to_string())),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_hostile_text_is_bounded_and_visible() {
        let long = "x".repeat(1_000_000);
        let shown = show(&long, 10);
        assert!(shown.len() < 80, "{shown}");
        assert!(shown.contains("[cut: 1000000 characters in all]"));
        let hostile = show("a\r\nb\u{202e}c\u{0}", 100);
        assert!(
            !hostile.contains('\n') && !hostile.contains('\u{202e}') && !hostile.contains('\0')
        );
    }

    #[test]
    fn input_loses_controls_and_invisible_characters() {
        assert_eq!(clean_input("a\r\nb\u{202e}c\u{0}d\u{200b}é", 100), "abcdé");
        assert_eq!(clean_input("abcdef", 3), "abc");
    }

    #[test]
    fn queries_are_escaped() {
        assert_eq!(query_escape("<a b>&"), "%3Ca%20b%3E%26");
    }
}
