//! The web console (`--console ADDR`, or the `console` subcommand): pages
//! server-rendered from askama templates (`templates/console/`) over the
//! same [`Inbox`](cmc_webhook_inbox::Inbox) the receiver stores into, behind a login.
//!
//! - [`auth`]: the users (from `CMC_CONSOLE_AUTH` or a file), the login
//!   form, the sessions and the [`auth::User`] extractor every page takes;
//! - [`csrf`]: the per-session token of every form, and the refusal of
//!   cross-site POSTs;
//! - [`headers`]: the security headers of every answer;
//! - [`host`]: the `Host` must be the console's (no DNS rebinding);
//! - [`html`]: helpers to show stored text (bounded, control characters
//!   escaped) and to render a template;
//! - [`pages`]: one file per page;
//! - [`sanitize`]: a mail's HTML body made safe to show.
//!
//! A page is a handler taking [`auth::User`] (which answers a request
//! without a session with a redirect to the login page), reading the
//! [`Console`] state, and rendering a template that extends
//! `console/base.html` with a [`Layout`]; an action is a POST handler
//! that checks [`csrf::check`] first. Add its route in [`router`].
//!
//! ```no_run
//! # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), Box<dyn std::error::Error>> {
//! use cmc_receiver::console::{Console, auth::Users};
//!
//! let users = Users::parse_list("alice:correct horse battery staple")?;
//! let console = Console::new(inbox, users, false);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8025").await?;
//! cmc_receiver::serve::serve(
//!     listener,
//!     cmc_receiver::console::router(console),
//!     cmc_receiver::serve::Limits::default(),
//!     std::future::pending(),
//! )
//! .await?;
//! # Ok(()) }
//! ```

pub mod auth;
pub mod csrf;
pub mod headers;
pub mod host;
pub mod hours;
pub mod html;
pub mod pages;
pub mod sanitize;
pub mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use state::{BODY_LIMIT, Console, Layout, STYLE, STYLE_PATH};

/// The console's routes, with its security headers, its refusal of
/// cross-site POSTs and its body limit.
///
/// | route | page |
/// |---|---|
/// | `GET /login`, `POST /login`, `POST /logout` | [`pages::login`] |
/// | `GET /` | [`pages::overview`] |
/// | `GET /search?q=` | [`pages::search`] |
/// | `GET /message?id=` | [`pages::search::timeline`] |
/// | `GET /raw/{id}`, `GET /raw/{id}/download` | [`pages::raw`] |
/// | `GET /rows?kind=&state=&source=&error=&before=` | [`pages::rows`] |
/// | `GET /replay?...` (confirmation), `POST /replay` | [`pages::rows`] |
/// | `GET /mails/{id}`, `GET /mails/{id}/html`, `GET /mails/{id}/attachments/{n}` | [`pages::mails`] |
/// | `GET /suppressions?address=&reason=&after=`, `POST /suppressions/add`, `POST /suppressions/remove` | [`pages::suppressions`] |
/// | `GET /learning` | [`pages::learning`] |
/// | `GET /static/console-<hash>.css` | the style sheet |
pub fn router(console: Console) -> Router {
    router_for(console, host::Hosts::default())
}

/// [`router`], answering to `hosts` besides addresses and `localhost`
/// (`--console-host`).
pub fn router_for(console: Console, hosts: host::Hosts) -> Router {
    Router::new()
        .route("/", get(pages::overview::page))
        .route("/login", get(pages::login::form).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .route("/search", get(pages::search::page))
        .route("/message", get(pages::search::timeline))
        .route("/raw/{id}", get(pages::raw::page))
        .route("/raw/{id}/download", get(pages::raw::download))
        .route("/rows", get(pages::rows::page))
        .route("/mails/{id}", get(pages::mails::page))
        .route("/mails/{id}/html", get(pages::mails::html_body))
        .route("/mails/{id}/attachments/{n}", get(pages::mails::attachment))
        .route("/suppressions", get(pages::suppressions::page))
        .route("/suppressions/add", post(pages::suppressions::add))
        .route("/suppressions/remove", post(pages::suppressions::remove))
        .route("/learning", get(pages::learning::page))
        .route(
            "/replay",
            get(pages::rows::confirm).post(pages::rows::replay),
        )
        .route(STYLE_PATH.as_str(), get(style))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            csrf::same_origin,
        ))
        .layer(axum::middleware::from_fn_with_state(hosts, host::check))
        .layer(axum::middleware::from_fn(headers::secure))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(console)
}

async fn style() -> impl axum::response::IntoResponse {
    (
        [
            (http::header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (
                http::header::CACHE_CONTROL,
                "public, max-age=31536000, immutable",
            ),
        ],
        STYLE,
    )
}
