//! The headers of every answer of the console: a strict
//! Content-Security-Policy (no script, no inline style, no frame of the
//! console elsewhere), `nosniff`, no referrer, and `no-store` on pages
//! (the style sheet sets its own long cache). A route that sets its own
//! Content-Security-Policy or `X-Frame-Options` keeps them: a mail's HTML
//! body has a `sandbox` policy and may be framed by the console's page.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;

/// The console's Content-Security-Policy. `frame-src 'self'` is for the
/// mail page's sandboxed iframe of the mail's HTML body, served by its own
/// route with `Content-Security-Policy: sandbox; ...`
/// ([`MAIL_HTML_CSP`](super::pages::mails::MAIL_HTML_CSP)).
pub const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
                       img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
                       base-uri 'none'; frame-src 'self'";

/// Adds the security headers to every answer.
pub async fn secure(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .entry(http::header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    headers.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(http::header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    headers
        .entry(http::header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
