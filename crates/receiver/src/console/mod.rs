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
    layer: std::sync::OnceLock<cmc_webhook_core::WebhookLayer>,
    chart: pages::overview::HourCache,
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
                layer: std::sync::OnceLock::new(),
                chart: pages::overview::HourCache::default(),
            }),
        }
    }

    /// The inbox it shows.
    pub fn inbox(&self) -> &Inbox {
        &self.inner.inbox
    }

    /// Shows on the "Learning mode" page the clients outside the
    /// allowlist that `layer` (the receiver's, in this process) has seen:
    /// with `--report-only`, what to copy into `--allow`. A console
    /// without it (one running alone) says that the list lives in the
    /// receiver's memory. Set once: a later call changes nothing.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), Box<dyn std::error::Error>> {
    /// use cmc_receiver::console::{Console, auth::Users};
    ///
    /// let layer = cmc_webhook_core::WebhookLayer::builder().report_only().api_key("s3cret").build()?;
    /// let console = Console::new(inbox, Users::parse_list("alice:pw")?, false);
    /// console.learn_from(layer.clone());
    /// # Ok(()) }
    /// ```
    pub fn learn_from(&self, layer: cmc_webhook_core::WebhookLayer) {
        let _ = self.inner.layer.set(layer);
    }

    /// Counts the closed hours of the overview's chart now (see
    /// [`pages::overview::HourCache`]), so that the first load of the
    /// overview is as fast as the next ones: the server spawns it at start.
    pub async fn warm(&self) {
        let started = std::time::Instant::now();
        match self
            .inner
            .chart
            .week(&self.inner.inbox, jiff::Timestamp::now())
            .await
        {
            Ok(_) => {
                tracing::debug!(took = ?started.elapsed(), "console: the chart's hours counted")
            }
            Err(e) => {
                tracing::warn!(error = %e, "console: could not count the chart's hours; the overview will")
            }
        }
    }

    pub(crate) fn layer(&self) -> Option<&cmc_webhook_core::WebhookLayer> {
        self.inner.layer.get()
    }

    pub(crate) fn chart(&self) -> &pages::overview::HourCache {
        &self.inner.chart
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
