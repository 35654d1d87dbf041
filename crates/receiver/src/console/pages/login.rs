//! `GET /login`, `POST /login` and `POST /logout`.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use serde::Deserialize;

use crate::console::state::{Console, Layout};
use crate::console::{auth, csrf, html};

/// The login form.
#[derive(Debug, Template)]
#[template(path = "console/login.html")]
pub struct Login {
    layout: Layout,
    next: String,
    failed: bool,
    /// Seconds before the next try is taken, after failures.
    retry_after: Option<u64>,
}

/// The login page's query.
#[derive(Debug, Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// `GET /login`.
pub async fn form(Query(q): Query<Next>) -> Response {
    html::render(&Login {
        layout: Layout::anonymous(),
        next: auth::local_path(q.next.as_deref().unwrap_or("/")).to_owned(),
        failed: false,
        retry_after: None,
    })
}

/// The login form's fields.
#[derive(Deserialize)]
pub struct Credentials {
    user: String,
    password: String,
    next: Option<String>,
}

/// `POST /login`: a session and a redirect to `next`, or the form again;
/// an address that failed must wait before its next try (429 at once
/// meanwhile: [`auth::Failures`]).
pub async fn submit(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<Credentials>,
) -> Response {
    let next = auth::local_path(form.next.as_deref().unwrap_or("/")).to_owned();
    if let Some(left) = console.failures().blocked(peer.ip()) {
        // Too soon after a failure: refused at once, the password not
        // even looked at, so guessing gains nothing and holds nothing.
        let seconds = left.as_secs() + 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(http::header::RETRY_AFTER, seconds.to_string())],
            html::render(&Login {
                layout: Layout::anonymous(),
                next,
                failed: false,
                retry_after: Some(seconds),
            }),
        )
            .into_response();
    }
    match console.users().check(&form.user, &form.password) {
        Some(user) => {
            console.failures().succeeded(peer.ip());
            let (id, _) = console.sessions().open(user);
            tracing::info!(user, client = %peer.ip(), "console: logged in");
            (
                [(
                    http::header::SET_COOKIE,
                    auth::cookie(&id, console.secure()),
                )],
                Redirect::to(&next),
            )
                .into_response()
        }
        None => {
            let (wait, failures) = console.failures().failed(peer.ip());
            // The user name as Debug: quoted, so that what a stranger
            // typed cannot look like other fields of the line.
            tracing::warn!(
                user = ?html::show(&form.user, 100),
                client = %peer.ip(),
                failures,
                "console: a login failed"
            );
            (
                StatusCode::UNAUTHORIZED,
                [(http::header::RETRY_AFTER, (wait.as_secs() + 1).to_string())],
                html::render(&Login {
                    layout: Layout::anonymous(),
                    next,
                    failed: true,
                    retry_after: None,
                }),
            )
                .into_response()
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"(hidden)")
            .finish()
    }
}

/// The logout form's field.
#[derive(Debug, Deserialize)]
pub struct Token {
    csrf: Option<String>,
}

/// `POST /logout`: ends the session.
pub async fn logout(
    State(console): State<Console>,
    user: auth::User,
    Form(form): Form<Token>,
) -> Response {
    if !csrf::check(&user.csrf, form.csrf.as_deref()) {
        return csrf::refused_for("logout without the session's token", &user);
    }
    console.sessions().close(&user.session);
    tracing::info!(user = user.name, "console: logged out");
    (
        [(
            http::header::SET_COOKIE,
            auth::expired_cookie(console.secure()),
        )],
        Redirect::to("/login"),
    )
        .into_response()
}
