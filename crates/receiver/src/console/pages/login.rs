//! `GET /login`, `POST /login` and `POST /logout`.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use serde::Deserialize;

use crate::console::{Console, Layout, auth, csrf, html};

/// The login form.
#[derive(Debug, Template)]
#[template(path = "console/login.html")]
pub struct Login {
    layout: Layout,
    next: String,
    failed: bool,
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
    })
}

/// The login form's fields.
#[derive(Deserialize)]
pub struct Credentials {
    user: String,
    password: String,
    next: Option<String>,
}

/// `POST /login`: a session and a redirect to `next`, or the form again
/// (after a wait that grows with the address's failures).
pub async fn submit(
    State(console): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<Credentials>,
) -> Response {
    let next = auth::local_path(form.next.as_deref().unwrap_or("/")).to_owned();
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
            tracing::warn!(
                user = %html::show(&form.user, 100),
                client = %peer.ip(),
                failures,
                "console: a login failed"
            );
            tokio::time::sleep(wait).await;
            (
                StatusCode::UNAUTHORIZED,
                html::render(&Login {
                    layout: Layout::anonymous(),
                    next,
                    failed: true,
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
        return csrf::refused("logout without the session's token");
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
