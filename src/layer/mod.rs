//! [`WebhookLayer`]: the gate in front of a webhook endpoint.
//!
//! CMC signs nothing, so this layer is what keeps strangers out. Before the
//! inner service runs, it decides from the request line and headers alone:
//!
//! 1. **Who is calling.** The peer address comes from axum's
//!    `ConnectInfo<SocketAddr>`, a `SocketAddr` in the request extensions
//!    (plain hyper), or a function you give. When there is none, the request
//!    is refused with 500 and an error log that says how to fix the set-up:
//!    a request is never let through because its address is unknown. Behind
//!    [trusted proxies](WebhookLayerBuilder::trust_proxy), the forwarding
//!    header is walked from the right (see [`client_ip`](crate::client_ip)).
//! 2. **Whether it may.** The client address must be in the
//!    [allowlist](crate::allowlist): 403 otherwise, logged at `warn` with the
//!    address, because CMC publishes no list of its senders and these lines
//!    are how an operator finds the addresses to allow.
//! 3. **How.** Only `POST` (405 with `Allow: POST`), with BASIC credentials
//!    when configured (401 with `WWW-Authenticate`), a JSON, form or
//!    multipart body (415), and a `Content-Length` within the limit (413).
//!
//! Requests that pass reach the inner service with the body wrapped in a
//! [`RequestBody`] that stops at the limit while streaming (the layer then
//! answers 413 whatever the handler made of it), and with a
//! [`Policy`] in the extensions that tells
//! [`read_webhook`](crate::read_webhook) and the extractors the limit and
//! the accepted `api_key`s (a key sits in the body, so it is checked there,
//! 401 when wrong), and a [`ClientIp`](crate::client_ip::ClientIp).
//!
//! The layer's own refusals answer with `Connection: close`, so that a
//! refused client cannot hold a kept-alive connection by sending more.
//! Every request gets a `tracing` span `cmc_webhook` with the peer, the
//! client and the decision. Bodies and keys are never logged.
//!
//! ```
//! use std::net::SocketAddr;
//! use axum::{routing::post, Router};
//! use cmc_webhook::WebhookLayer;
//!
//! async fn on_webhook() -> &'static str {
//!     "ok"
//! }
//!
//! let layer = WebhookLayer::builder()
//!     .allow("203.0.113.0/24".parse::<ipnet::IpNet>()?)
//!     .trust_proxy("10.0.0.0/8".parse::<ipnet::IpNet>()?)
//!     .body_limit(1 << 20)
//!     .api_key("s3cret")
//!     .build()?;
//! let app: Router = Router::new().route("/mails", post(on_webhook).layer(layer));
//! // Serve with the peer address recorded, or every request gets a 500:
//! let _service = app.into_make_service_with_connect_info::<SocketAddr>();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod body;
mod drain;
mod future;
mod service;

pub use body::{RequestBody, ResponseBody};
pub use future::ResponseFuture;
pub use service::WebhookService;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::StatusCode;
use ipnet::IpNet;

use crate::allowlist::{parse_net, Allowlist, IpSet, IpSetParseError};
use crate::auth::{ApiKeys, BasicCredentials};
use crate::client_ip::ForwardedHeader;
use crate::rejection::{Reason, Statuses};
use crate::request::Policy;

type PeerFn = Arc<dyn Fn(&http::Extensions) -> Option<IpAddr> + Send + Sync>;

/// A tower [`Layer`](tower_layer::Layer) that admits only requests from
/// allowed addresses, with the right method, credentials, media type and
/// size. See the [module docs](self) for the rules.
#[derive(Clone)]
pub struct WebhookLayer {
    config: Arc<Config>,
}

pub(crate) struct Config {
    pub(crate) allowlist: Allowlist,
    pub(crate) trusted_proxies: IpSet,
    pub(crate) forwarded_header: ForwardedHeader,
    pub(crate) basic: Vec<BasicCredentials>,
    pub(crate) policy: Policy,
    pub(crate) peer: Option<PeerFn>,
    pub(crate) drain: drain::DrainLimits,
}

impl WebhookLayer {
    /// Starts the configuration; at least one allowed network is needed.
    pub fn builder() -> WebhookLayerBuilder {
        WebhookLayerBuilder::default()
    }

    /// The allowlist in force: replace its contents while serving, and every
    /// service built from this layer sees the change on its next request.
    ///
    /// ```
    /// let layer = cmc_webhook::WebhookLayer::builder().allow_list("192.0.2.0/24")?.build()?;
    /// let allowlist = layer.allowlist();
    /// allowlist.replace("192.0.2.0/24, 198.51.100.7".parse()?);
    /// assert!(allowlist.contains("198.51.100.7".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allowlist(&self) -> Allowlist {
        self.config.allowlist.clone()
    }

    /// The policy that reaches the body readers through the extensions.
    pub fn policy(&self) -> &Policy {
        &self.config.policy
    }
}

impl<S> tower_layer::Layer<S> for WebhookLayer {
    type Service = WebhookService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WebhookService::new(inner, self.config.clone())
    }
}

impl fmt::Debug for WebhookLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookLayer")
            .field("allowlist", &self.config.allowlist)
            .field("trusted_proxies", &self.config.trusted_proxies)
            .field("forwarded_header", &self.config.forwarded_header)
            .field("basic", &self.config.basic)
            .field("policy", &self.config.policy)
            .field("peer", &self.config.peer.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

/// The configuration of a [`WebhookLayer`]; errors are reported by
/// [`build`](WebhookLayerBuilder::build).
///
/// ```
/// use cmc_webhook::{Reason, WebhookLayer};
/// use http::StatusCode;
///
/// let layer = WebhookLayer::builder()
///     .allow_list(&std::env::var("CMC_ALLOW").unwrap_or("203.0.113.0/24, 2001:db8::/32".into()))?
///     .basic_auth("cmc", "pa55word")
///     .api_key("old-key")
///     .api_key("new-key") // both accepted while the key is rotated
///     .status(Reason::ClientNotAllowed, StatusCode::NOT_FOUND)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct WebhookLayerBuilder {
    allow: Vec<IpNet>,
    allowlist: Option<Allowlist>,
    trusted: Vec<IpNet>,
    forwarded_header: ForwardedHeader,
    basic: Vec<BasicCredentials>,
    api_keys: Vec<String>,
    body_limit: Option<usize>,
    limits: crate::Limits,
    statuses: Statuses,
    peer: Option<PeerFn>,
    drain: drain::DrainLimits,
}

impl WebhookLayerBuilder {
    /// Allows calls from `net` (repeatable). A single address is a /32 or
    /// /128 network.
    pub fn allow(mut self, net: IpNet) -> Self {
        self.allow.push(net);
        self
    }

    /// Allows calls from every network in `nets`.
    pub fn allow_all(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.allow.extend(nets);
        self
    }

    /// Allows the networks of a comma- or space-separated list of CIDRs or
    /// addresses, as an environment variable holds them.
    pub fn allow_list(mut self, list: &str) -> Result<Self, ConfigError> {
        self.allow.extend(parse_list(list)?);
        Ok(self)
    }

    /// Uses `allowlist` (and any networks given with `allow`), sharing it
    /// with whoever holds a clone, for example a reloader that replaces it.
    pub fn allowlist(mut self, allowlist: Allowlist) -> Self {
        self.allowlist = Some(allowlist);
        self
    }

    /// Trusts `net` as a proxy (repeatable): from peers in it, the
    /// forwarding header names the client.
    pub fn trust_proxy(mut self, net: IpNet) -> Self {
        self.trusted.push(net);
        self
    }

    /// Trusts the proxies of a comma- or space-separated list.
    pub fn trust_proxy_list(mut self, list: &str) -> Result<Self, ConfigError> {
        self.trusted.extend(parse_list(list)?);
        Ok(self)
    }

    /// The header trusted proxies write the client to
    /// (`X-Forwarded-For` unless set).
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.forwarded_header = header;
        self
    }

    /// The largest body accepted, in bytes ([`DEFAULT_BODY_LIMIT`] unless
    /// set). Set it per route: inbound mails with attachments need more than
    /// event batches.
    ///
    /// [`DEFAULT_BODY_LIMIT`]: crate::DEFAULT_BODY_LIMIT
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }

    /// The caps on what one body may hold: records, unknown fields,
    /// headers, multipart parts (see [`Limits`](crate::Limits) for each and
    /// its default). A body over a cap is refused with 413 while it is read.
    pub fn limits(mut self, limits: crate::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How much of a refused request's body is read before the refusal
    /// is answered, at most (8 MiB and 5 seconds unless set).
    ///
    /// A client that writes its whole body before it reads the answer (CMC's
    /// Apache HttpClient does) gets a reset connection instead of the status
    /// when the server answers and closes while the body is still coming,
    /// and then sends the request again. So a refusal (the layer's own, or
    /// a 4xx from the inner service that left the body unread) first reads
    /// and discards the rest of the body, within these bounds; a client
    /// that sends more, or for longer, is cut off. A body declared larger
    /// than `bytes`, or sent with `Expect: 100-continue`, is not read.
    /// Draining needs a Tokio runtime for its timer; without one, it is
    /// skipped. `bytes` 0 turns it off.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let layer = cmc_webhook::WebhookLayer::builder()
    ///     .allow_list("192.0.2.0/24")?
    ///     .drain(16 << 20, Duration::from_secs(10))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn drain(mut self, bytes: u64, time: std::time::Duration) -> Self {
        self.drain = drain::DrainLimits { bytes, time };
        self
    }

    /// The most records an event batch may hold (10 000 unless set); more
    /// is refused with 413. CMC sends at most 100 a batch by default.
    pub fn max_records(mut self, records: usize) -> Self {
        self.limits = self.limits.max_records(records);
        self
    }

    /// The most parts a multipart body may have (512 unless set); more is
    /// refused with 413 while the body is read.
    pub fn max_parts(mut self, parts: usize) -> Self {
        self.limits = self.limits.max_parts(parts);
        self
    }

    /// The largest a single multipart part (an attachment) may be, in bytes
    /// (only the body limit unless set); larger is refused with 413.
    pub fn max_part_size(mut self, bytes: u64) -> Self {
        self.limits = self.limits.max_part_size(bytes);
        self
    }

    /// Requires the body's `api_key` to be `key`; repeat for several
    /// accepted keys (rotation). Checked when the body is read: 401.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_keys.push(key.into());
        self
    }

    /// Requires HTTP BASIC auth with `user` and `password`; repeat for
    /// several accepted pairs (rotation). 401 otherwise.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic.push(BasicCredentials::new(user, password));
        self
    }

    /// Answers refusals for `reason` with `status` (see [`Reason`] for the
    /// defaults).
    pub fn status(mut self, reason: Reason, status: StatusCode) -> Self {
        self.statuses = self.statuses.with(reason, status);
        self
    }

    /// Reads the peer address with `f` instead of from `ConnectInfo` or a
    /// `SocketAddr` extension, for servers that record the connection some
    /// other way. `None` refuses the request with 500.
    pub fn peer_addr<F>(mut self, f: F) -> Self
    where
        F: Fn(&http::Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.peer = Some(Arc::new(f));
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// Errors: no allowed network at all, an empty API key, a BASIC user name
    /// with a colon, a body limit of 0. Warns (through `tracing`) when every
    /// address is allowed, when proxies are trusted but not everything they
    /// forward is checked against an allowlist, and when no credentials are
    /// configured (the address is then the only protection).
    pub fn build(self) -> Result<WebhookLayer, ConfigError> {
        let set = IpSet::from_nets(self.allow);
        let allowlist = match self.allowlist {
            Some(shared) => {
                if !set.is_empty() {
                    let merged =
                        IpSet::from_nets(shared.get().nets().into_iter().chain(set.nets()));
                    shared.replace(merged);
                }
                shared
            }
            None if set.is_empty() => return Err(ConfigError::NoAllowlist),
            None => Allowlist::new(set),
        };
        if self.api_keys.iter().any(String::is_empty) {
            return Err(ConfigError::EmptyApiKey);
        }
        if let Some(c) = self.basic.iter().find(|c| c.user().contains(':')) {
            return Err(ConfigError::ColonInUser(c.user().to_owned()));
        }
        if self.body_limit == Some(0) {
            return Err(ConfigError::ZeroBodyLimit);
        }
        let trusted_proxies = IpSet::from_nets(self.trusted);

        let allowed = allowlist.get();
        if let Some(everyone) = allowed.open_to() {
            tracing::warn!(allow = %allowed, "the allowlist allows {everyone}: anyone there can post webhooks");
        }
        if !trusted_proxies.is_empty() && allowed.covers_everything() {
            tracing::warn!(
                trusted_proxies = %trusted_proxies,
                "proxies are trusted but the allowlist allows everyone: forwarded addresses are not checked"
            );
        }
        let api_keys = (!self.api_keys.is_empty()).then(|| ApiKeys::new(self.api_keys));
        if api_keys.is_none() && self.basic.is_empty() {
            tracing::warn!(
                "no api_key and no BASIC credentials configured: the source address is the only protection"
            );
        }
        let mut policy = Policy::default()
            .statuses(self.statuses)
            .limits(self.limits);
        if let Some(limit) = self.body_limit {
            policy = policy.body_limit(limit);
        }
        policy.api_keys = api_keys.filter(|k| !k.is_empty());
        Ok(WebhookLayer {
            config: Arc::new(Config {
                allowlist,
                trusted_proxies,
                forwarded_header: self.forwarded_header,
                basic: self.basic,
                policy,
                peer: self.peer,
                drain: self.drain,
            }),
        })
    }
}

impl fmt::Debug for WebhookLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookLayerBuilder")
            .field("allow", &self.allow)
            .field("trusted", &self.trusted)
            .field("forwarded_header", &self.forwarded_header)
            .field("basic", &self.basic)
            .field(
                "api_keys",
                &self
                    .api_keys
                    .iter()
                    .map(|_| crate::REDACTED)
                    .collect::<Vec<_>>(),
            )
            .field("body_limit", &self.body_limit)
            .finish_non_exhaustive()
    }
}

fn parse_list(list: &str) -> Result<Vec<IpNet>, ConfigError> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| parse_net(s).map_err(ConfigError::Network))
        .collect()
}

/// A [`WebhookLayer`] configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No allowed network: every request would be refused. Call `allow`.
    NoAllowlist,
    /// A list item is not a network.
    Network(IpSetParseError),
    /// An API key is empty.
    EmptyApiKey,
    /// A BASIC user name holds a colon, which the header cannot carry.
    ColonInUser(String),
    /// A body limit of 0 would refuse every webhook.
    ZeroBodyLimit,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoAllowlist => f.write_str(
                "no allowed addresses: call allow(..) or allow_list(..) with the networks CMC posts from \
                 (refused requests are logged with their address)",
            ),
            ConfigError::Network(e) => e.fmt(f),
            ConfigError::EmptyApiKey => f.write_str("an api_key is empty"),
            ConfigError::ColonInUser(user) => {
                write!(f, "the BASIC user name `{user}` contains a colon, which BASIC auth cannot carry")
            }
            ConfigError::ZeroBodyLimit => f.write_str("a body limit of 0 would refuse every webhook"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Network(e) => Some(e),
            _ => None,
        }
    }
}

impl From<IpSetParseError> for ConfigError {
    fn from(e: IpSetParseError) -> Self {
        ConfigError::Network(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_errors() {
        assert_eq!(
            WebhookLayer::builder().build().unwrap_err(),
            ConfigError::NoAllowlist
        );
        let b = || WebhookLayer::builder().allow_list("10.0.0.0/8").unwrap();
        assert_eq!(
            b().api_key("").build().unwrap_err(),
            ConfigError::EmptyApiKey
        );
        assert!(
            matches!(b().basic_auth("a:b", "c").build().unwrap_err(), ConfigError::ColonInUser(u) if u == "a:b")
        );
        assert_eq!(
            b().body_limit(0).build().unwrap_err(),
            ConfigError::ZeroBodyLimit
        );
        let e = WebhookLayer::builder()
            .allow_list("10.0.0.0/8, bogus")
            .unwrap_err();
        assert!(e.to_string().contains("`bogus`"), "{e}");
        assert!(WebhookLayer::builder().trust_proxy_list("nope").is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let layer = WebhookLayer::builder()
            .allow_list("10.0.0.0/8")
            .unwrap()
            .api_key("k-secret-1")
            .basic_auth("u", "p-secret-2")
            .build()
            .unwrap();
        let shown = format!("{layer:?}");
        assert!(
            !shown.contains("k-secret-1") && !shown.contains("p-secret-2"),
            "{shown}"
        );
        let builder = WebhookLayer::builder().api_key("k-secret-1");
        assert!(!format!("{builder:?}").contains("k-secret-1"));
    }

    #[test]
    fn shared_allowlist_takes_extra_networks() {
        let shared = Allowlist::new("192.0.2.0/24".parse().unwrap());
        let layer = WebhookLayer::builder()
            .allowlist(shared.clone())
            .allow("198.51.100.0/24".parse().unwrap())
            .build()
            .unwrap();
        assert!(shared.contains("198.51.100.1".parse().unwrap()));
        assert!(layer.allowlist().contains("192.0.2.1".parse().unwrap()));
    }
}
