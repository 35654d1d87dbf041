//! Cross-site request forgery: every form carries its session's token
//! (a hidden field `csrf`), which each action checks in constant time
//! ([`check`]); and every POST whose `Origin` is not the console's own,
//! or whose `Sec-Fetch-Site` is `cross-site`, is refused before any
//! handler runs ([`same_origin`]). Both answer 403 and change nothing.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

/// Whether `given` is the session's token `expected` (constant time).
pub fn check(expected: &str, given: Option<&str>) -> bool {
    let Some(given) = given else { return false };
    !expected.is_empty()
        && aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), given.as_bytes())
            .is_ok()
}

/// The answer to a POST that fails a check.
pub fn refused(why: &str) -> Response {
    tracing::warn!(why, "console: a POST was refused (CSRF)");
    (
        StatusCode::FORBIDDEN,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "403 Forbidden: this form did not come from this console's page; reload the page and try again\n",
    )
        .into_response()
}

/// Refuses a POST sent from another site: its `Sec-Fetch-Site` is
/// `cross-site`, or its `Origin` (when present) names another host than
/// the request's `Host` (`Origin: null` passes only with
/// `Sec-Fetch-Site: same-origin`, as a browser sends the console's own
/// forms under its `no-referrer` policy).
pub async fn same_origin(request: Request, next: Next) -> Response {
    if request.method() == http::Method::POST {
        let headers = request.headers();
        if headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
        {
            return refused("Sec-Fetch-Site: cross-site");
        }
        // Under the console's `Referrer-Policy: no-referrer`, browsers
        // send its own forms with `Origin: null` (the Fetch standard
        // serialises the origin so under that policy): taken as the
        // console's only when the browser says the request is
        // same-origin, refused otherwise.
        let null_but_same_site = headers
            .get(http::header::ORIGIN)
            .is_some_and(|o| o.as_bytes() == b"null")
            && headers
                .get("sec-fetch-site")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"same-origin"));
        if let Some(origin) = headers
            .get(http::header::ORIGIN)
            .filter(|_| !null_but_same_site)
        {
            let host = headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let origin = origin.to_str().unwrap_or("");
            let origin_host = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            if host.is_empty() || origin_host != Some(host) {
                return refused("Origin is not the console's");
            }
        }
    }
    next.run(request).await
}
