//! Cross-site request forgery: every form carries its session's token
//! (a hidden field `csrf`), which each action checks in constant time
//! ([`check`]); and every POST whose `Origin` is not the console's own,
//! or whose `Sec-Fetch-Site` is `cross-site`, is refused before any
//! handler runs ([`same_origin`]). Both answer 403 and change nothing.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::Console;
use super::auth::{self, User};

/// Whether `given` is the session's token `expected` (constant time).
pub fn check(expected: &str, given: Option<&str>) -> bool {
    let Some(given) = given else { return false };
    !expected.is_empty()
        && aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), given.as_bytes())
            .is_ok()
}

/// The answer to a POST that fails a check, logged with why, the user
/// whose session sent it (`(no session)` when none) and the client's
/// address (never a token).
pub fn refused(why: &str, user: Option<&str>, client: Option<IpAddr>) -> Response {
    tracing::warn!(
        why,
        user = user.unwrap_or("(no session)"),
        client = %client.map_or_else(|| "unknown".to_owned(), |c| c.to_string()),
        "console: a POST was refused (CSRF)"
    );
    (
        StatusCode::FORBIDDEN,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "403 Forbidden: this form did not come from this console's page; reload the page and try again\n",
    )
        .into_response()
}

/// [`refused`] for a logged-in user.
pub fn refused_for(why: &str, user: &User) -> Response {
    refused(why, Some(&user.name), user.client)
}

/// Refuses a POST sent from another site: its `Sec-Fetch-Site` is
/// `cross-site`, or its `Origin` (when present) names another host than
/// the request's `Host` (`Origin: null` passes only with
/// `Sec-Fetch-Site: same-origin`, as a browser sends the console's own
/// forms under its `no-referrer` policy).
pub async fn same_origin(State(console): State<Console>, request: Request, next: Next) -> Response {
    if request.method() == http::Method::POST {
        let headers = request.headers();
        let refuse = |why: &str| {
            let user = auth::session_id(headers).and_then(|id| console.sessions().get(&id));
            refused(
                why,
                user.as_ref().map(|(name, _)| name.as_str()),
                request
                    .extensions()
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip()),
            )
        };
        if headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
        {
            return refuse("Sec-Fetch-Site: cross-site");
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
                return refuse("Origin is not the console's");
            }
        }
    }
    next.run(request).await
}
