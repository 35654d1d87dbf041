//! The web console (`--console ADDR`, or the `console` subcommand): pages
//! server-rendered from askama templates (`templates/console/`) over the
//! same [`Inbox`] the receiver stores into, behind a login.
//!
//! - [`auth`]: the users (from `CMC_CONSOLE_AUTH` or a file), the login
//!   form, the sessions and the [`auth::User`] extractor every page takes;
//! - [`csrf`]: the per-session token of every form, and the refusal of
//!   cross-site POSTs;
//! - [`headers`]: the security headers of every answer;
//! - [`host`]: the `Host` must be the console's (no DNS rebinding);
//! - [`html`]: helpers to show stored text (bounded, control characters
//!   escaped) and to render a template;
//! - [`pages`]: one file per page.
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
pub mod html;
pub mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use cmc_webhook_inbox::Inbox;

use crate::relay::Relay;

/// The style sheet, served at [`STYLE_PATH`].
pub const STYLE: &str = include_str!("../../static/console.css");

/// Where the style sheet is served: its name carries a hash of its text,
/// so that it is cached for long and a new version is fetched at once.
pub static STYLE_PATH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, STYLE.as_bytes());
    let hex: String = digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("/static/console-{hex}.css")
});

/// The most bytes a form posted to the console may have.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What every page reads: the inbox, the users and their sessions, and the
/// relays when the console runs in the receiver's process.
#[derive(Debug, Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    inbox: Inbox,
    users: auth::Users,
    sessions: auth::Sessions,
    logins: auth::Failures,
    secure: bool,
    relays: Vec<Relay>,
}

impl Console {
    /// A console on `inbox` for `users`; `secure` when it is served over
    /// HTTPS (its cookie is then `Secure`).
    pub fn new(inbox: Inbox, users: auth::Users, secure: bool) -> Console {
        Console::with_relays(inbox, users, secure, Vec::new())
    }

    /// [`Console::new`], showing the state of these relays (the
    /// receiver's `--relay` and `--mailbox-relay` targets) on the
    /// overview.
    pub fn with_relays(
        inbox: Inbox,
        users: auth::Users,
        secure: bool,
        relays: Vec<Relay>,
    ) -> Console {
        Console {
            inner: Arc::new(Inner {
                inbox,
                users,
                sessions: auth::Sessions::default(),
                logins: auth::Failures::default(),
                secure,
                relays,
            }),
        }
    }

    /// The inbox it shows.
    pub fn inbox(&self) -> &Inbox {
        &self.inner.inbox
    }

    pub(crate) fn users(&self) -> &auth::Users {
        &self.inner.users
    }

    pub(crate) fn sessions(&self) -> &auth::Sessions {
        &self.inner.sessions
    }

    pub(crate) fn failures(&self) -> &auth::Failures {
        &self.inner.logins
    }

    pub(crate) fn secure(&self) -> bool {
        self.inner.secure
    }

    pub(crate) fn relays(&self) -> &[Relay] {
        &self.inner.relays
    }
}

/// What `console/base.html` shows around a page: who is logged in, the
/// token its forms carry, and where in the menu the page is.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The user logged in (`None` on the login page).
    pub user: Option<String>,
    /// The session's CSRF token, for the logout form.
    pub csrf: String,
    /// The page's name in the menu.
    pub here: &'static str,
    /// The style sheet's path.
    pub style: &'static str,
}

impl Layout {
    /// The layout of a page `here` for `user`.
    pub fn of(user: &auth::User, here: &'static str) -> Layout {
        Layout {
            user: Some(user.name.clone()),
            csrf: user.csrf.clone(),
            here,
            style: STYLE_PATH.as_str(),
        }
    }

    /// The layout of a page shown without a session.
    pub fn anonymous() -> Layout {
        Layout {
            user: None,
            csrf: String::new(),
            here: "",
            style: STYLE_PATH.as_str(),
        }
    }
}

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
        .route(
            "/replay",
            get(pages::rows::confirm).post(pages::rows::replay),
        )
        .route(STYLE_PATH.as_str(), get(style))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn(csrf::same_origin))
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
