//! The console's state (the inbox, the users, the sessions, the relays
//! shown) and the layout every page renders with; and how a request
//! finds its user ([`auth::User`] as an extractor).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Redirect, Response};
use cmc_webhook_inbox::Inbox;
use http::request::Parts;

use super::auth::{self, User};
use crate::relay::Relay;

/// The style sheet, served at [`STYLE_PATH`].
pub const STYLE: &str = include_str!("../../static/console.css");

/// Where the style sheet is served: its name carries a hash of its text,
/// so that it is cached for long and a new version is fetched at once.
pub static STYLE_PATH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, STYLE.as_bytes());
    format!(
        "/static/console-{}.css",
        crate::hex::hex(&digest.as_ref()[..6])
    )
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
    chart: super::hours::HourCache,
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
                chart: super::hours::HourCache::default(),
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
    /// [`super::hours::HourCache`]), so that the first load of the
    /// overview is as fast as the next ones: the server spawns it at start.
    pub async fn warm(&self) {
        let started = std::time::Instant::now();
        match self
            .inner
            .chart
            .week(&self.inner.inbox, self.inner.inbox.now())
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

    pub(crate) fn chart(&self) -> &super::hours::HourCache {
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

/// The address a request came from, as the serve loop recorded it.
pub fn client(parts: &Parts) -> Option<std::net::IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

impl FromRequestParts<Console> for User {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<User, Response> {
        if let Some(id) = auth::session_id(&parts.headers)
            && let Some((name, csrf)) = console.sessions().get(&id)
        {
            return Ok(User {
                name,
                csrf,
                session: id,
                client: client(parts),
            });
        }
        let next = match parts.method {
            http::Method::GET => parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/".to_owned()),
            _ => "/".to_owned(),
        };
        let target = format!("/login?next={}", super::html::query_escape(&next));
        Err(Redirect::to(&target).into_response())
    }
}
