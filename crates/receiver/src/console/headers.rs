//! The headers of every answer of the console: a strict
//! Content-Security-Policy (no script, no inline style, no frame of the
//! console elsewhere), `nosniff`, no referrer, and `no-store` on pages
//! (the style sheet sets its own long cache).

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;

/// The console's Content-Security-Policy. `frame-src 'self'` is kept for a
/// later page that shows a mail's HTML in a sandboxed iframe, served by its
/// own route with `Content-Security-Policy: sandbox`.
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
    headers.insert(
        http::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    headers
        .entry(http::header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
