//! [`WebhookLayerBuilder`]: the configuration of a [`WebhookLayer`], and
//! the [`ConfigError`]s its [`build`](WebhookLayerBuilder::build) reports.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use http::StatusCode;
use ipnet::IpNet;
use jiff::tz::TimeZone;

use crate::allowlist::{Allowlist, IpSet, IpSetParseError, parse_net};
use crate::auth::{ApiKeys, BasicCredentials};
use crate::client_ip::{ClientIpSource, ForwardedHeader};
use crate::rejection::{Reason, Statuses};
use crate::request::Policy;

use super::config::{Config, GateSource, PeerFn};
use super::drain;
use super::layer::WebhookLayer;
use super::unlisted::Unlisted;
use crate::source::{DEFAULT_SOURCE, Source};

// Here rather than beside the layer: the builder depends on the layer, not
// the other way round.
impl WebhookLayer {
    /// Starts the configuration; at least one allowed network is needed
    /// (unless in [report-only](WebhookLayerBuilder::report_only) mode).
    pub fn builder() -> WebhookLayerBuilder {
        WebhookLayerBuilder::default()
    }
}

/// The configuration of a [`WebhookLayer`]; errors are reported by
/// [`build`](WebhookLayerBuilder::build).
///
/// ```
/// use cmc_webhook_core::{Reason, WebhookLayer};
/// use http::StatusCode;
///
/// let layer = WebhookLayer::builder()
///     .allow_cidrs(&std::env::var("CMC_ALLOW").unwrap_or("203.0.113.0/24, 2001:db8::/32".into()))?
///     .basic_auth("cmc", "pa55word")
///     .api_keys(["old-key", "new-key"]) // both accepted while the key is rotated
///     .status(Reason::ClientNotAllowed, StatusCode::NOT_FOUND)
///     .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The builder is `Clone`: configure what routes share once, then give each
/// route its own body limit.
///
/// ```
/// use cmc_webhook_core::WebhookLayer;
///
/// let common = WebhookLayer::builder().allow_cidrs("203.0.113.0/24")?.api_key("k");
/// let events = common.clone().body_limit(1 << 20).build()?;
/// let inbound = common.body_limit(25 << 20).build()?;
/// assert_eq!(inbound.policy().limit(), 25 << 20);
/// # Ok::<(), cmc_webhook_core::ConfigError>(())
/// ```
#[derive(Default, Clone)]
pub struct WebhookLayerBuilder {
    allow: Vec<IpNet>,
    allowlist: Option<Allowlist>,
    report_only: bool,
    trusted: Vec<IpNet>,
    client_ip_source: ClientIpSource,
    /// Whether [`client_ip_source`](Self::client_ip_source) chose it (a
    /// header source then needs a trusted proxy).
    client_ip_source_chosen: bool,
    basic: Vec<BasicCredentials>,
    api_keys: Vec<String>,
    body_limit: Option<usize>,
    limits: crate::Limits,
    statuses: Statuses,
    peer: Option<PeerFn>,
    drain: drain::DrainLimits,
    time_zone: Option<TimeZone>,
    sources: Vec<SourceBuilder>,
}

impl WebhookLayerBuilder {
    /// Allows calls from `net` (repeatable); a single address is a /32 or
    /// /128 network. ([`ipnet`] is re-exported; or give
    /// strings to [`allow_cidrs`](Self::allow_cidrs).)
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use cmc_webhook_core::{ipnet::IpNet, WebhookLayer};
    ///
    /// let layer = WebhookLayer::builder()
    ///     .allow("203.0.113.0/24".parse()?)
    ///     .allow(IpNet::from(std::net::IpAddr::from(Ipv4Addr::new(198, 51, 100, 7))))
    ///     .build()?;
    /// assert!(layer.allowlist().contains("198.51.100.7".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allow(mut self, net: IpNet) -> Self {
        self.allow.push(net);
        self
    }

    /// Allows calls from every network in `nets`.
    ///
    /// ```
    /// use cmc_webhook_core::{ipnet::IpNet, WebhookLayer};
    ///
    /// let nets: Vec<IpNet> = vec!["203.0.113.0/24".parse()?, "2001:db8::/32".parse()?];
    /// let layer = WebhookLayer::builder().allow_nets(nets).build()?;
    /// assert!(layer.allowlist().contains("2001:db8::1".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allow_nets(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.allow.extend(nets);
        self
    }

    /// Allows the networks of a comma- or space-separated list of CIDRs or
    /// addresses, as an environment variable holds them.
    ///
    /// ```
    /// let layer = cmc_webhook_core::WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24, 198.51.100.7 2001:db8::/32")?
    ///     .build()?;
    /// assert!(layer.allowlist().contains("198.51.100.7".parse()?));
    /// assert!(cmc_webhook_core::WebhookLayer::builder().allow_cidrs("203.0.113.0/33").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allow_cidrs(mut self, list: &str) -> Result<Self, ConfigError> {
        self.allow.extend(parse_list(list)?);
        Ok(self)
    }

    /// Checks clients against `allowlist`, shared with whoever holds a
    /// clone of it (a reloader that replaces it, an admin endpoint). The
    /// layer never writes into it: networks also given with
    /// [`allow`](Self::allow) are allowed besides it.
    ///
    /// ```
    /// use cmc_webhook_core::{allowlist::Allowlist, WebhookLayer};
    ///
    /// let shared = Allowlist::new("203.0.113.0/24".parse()?);
    /// let layer = WebhookLayer::builder()
    ///     .shared_allowlist(shared.clone())
    ///     .allow_cidrs("127.0.0.1")? // always allowed, kept out of the shared list
    ///     .build()?;
    /// shared.replace("198.51.100.0/24".parse()?); // say, after a file was edited
    /// assert!(!shared.contains("127.0.0.1".parse()?));
    /// # let _ = layer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shared_allowlist(mut self, allowlist: Allowlist) -> Self {
        self.allowlist = Some(allowlist);
        self
    }

    /// Learning mode: admits clients outside the allowlist instead of
    /// refusing them, and records them, so that an operator can find the
    /// addresses CMC posts from (it publishes none) without losing
    /// webhooks. Every other check (method, BASIC auth, size, media type,
    /// `api_key`) still applies, so configure credentials: they are then the
    /// only protection.
    ///
    /// A client is listed once a webhook of its was read and accepted (the
    /// body reader checked its key), not on any 2xx. Each new address is
    /// logged once at `warn` ("admitted a client outside the allowlist");
    /// [`WebhookLayer::unlisted_clients`] lists them with their counts. The
    /// allowlist may be empty in this mode, but [`build`](Self::build)
    /// refuses it without an `api_key` or BASIC credentials. Switch the
    /// mode off once the list is complete.
    ///
    /// ```
    /// use cmc_webhook_core::WebhookLayer;
    ///
    /// let layer = WebhookLayer::builder().report_only().api_key("s3cret").build()?;
    /// assert!(layer.is_report_only());
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn report_only(mut self) -> Self {
        self.report_only = true;
        self
    }

    /// Trusts `net` as a proxy (repeatable): from peers in it, the
    /// forwarding header names the client.
    ///
    /// ```
    /// use cmc_webhook_core::{ipnet::IpNet, WebhookLayer};
    ///
    /// let layer = WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .trust_proxy("10.0.0.0/8".parse::<IpNet>()?)
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trust_proxy(mut self, net: IpNet) -> Self {
        self.trusted.push(net);
        self
    }

    /// Trusts every network in `nets` as a proxy.
    ///
    /// ```
    /// use cmc_webhook_core::{ipnet::IpNet, WebhookLayer};
    ///
    /// let proxies: [IpNet; 2] = ["10.0.0.0/8".parse()?, "fd00::/8".parse()?];
    /// let layer = WebhookLayer::builder().allow_cidrs("203.0.113.0/24")?.trust_proxies(proxies).build()?;
    /// # let _ = layer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn trust_proxies(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.trusted.extend(nets);
        self
    }

    /// Trusts the proxies of a comma- or space-separated list.
    ///
    /// ```
    /// let layer = cmc_webhook_core::WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .trust_proxy_cidrs("10.0.0.0/8, fd00::/8")?
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn trust_proxy_cidrs(mut self, list: &str) -> Result<Self, ConfigError> {
        self.trusted.extend(parse_list(list)?);
        Ok(self)
    }

    /// Where the client address is read from (see [`ClientIpSource`] for
    /// each, and the README's table of which to choose behind which
    /// platform): the peer, or a header that the trusted proxies
    /// ([`trust_proxy`](Self::trust_proxy)) write. Unless set,
    /// `X-Forwarded-For`, walked from the right, which with no trusted
    /// proxy is the peer.
    ///
    /// A header is believed only from a trusted proxy; from any other peer
    /// the peer is the client. So a header source chosen here with no
    /// trusted proxy would never be read: [`build`](Self::build) refuses it
    /// ([`ConfigError::UntrustedClientIpSource`]).
    ///
    /// ```
    /// use cmc_webhook_core::{client_ip::ClientIpSource, ConfigError, WebhookLayer};
    ///
    /// // Behind Cloudflare (its published ranges, in a file kept up to date).
    /// let layer = WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .trust_proxy_cidrs("173.245.48.0/20, 2400:cb00::/32")?
    ///     .client_ip_source(ClientIpSource::CfConnectingIp)
    ///     .build()?;
    /// # let _ = layer;
    /// let without_proxy = WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .client_ip_source("x-real-ip".parse()?)
    ///     .build();
    /// assert_eq!(
    ///     without_proxy.unwrap_err(),
    ///     ConfigError::UntrustedClientIpSource(ClientIpSource::XRealIp)
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_ip_source(mut self, source: ClientIpSource) -> Self {
        self.client_ip_source = source;
        self.client_ip_source_chosen = true;
        self
    }

    /// The list header trusted proxies write the client to
    /// (`X-Forwarded-For` unless set): the same as
    /// [`client_ip_source`](Self::client_ip_source) with
    /// `ClientIpSource::from(header)`, except that, as before it, a
    /// layer without a trusted proxy is not refused (the header is then
    /// never read).
    ///
    /// ```
    /// # #![allow(deprecated)]
    /// use cmc_webhook_core::{client_ip::ForwardedHeader, WebhookLayer};
    ///
    /// let layer = WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .trust_proxy_cidrs("10.0.0.0/8")?
    ///     .forwarded_header("forwarded".parse::<ForwardedHeader>()?)
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[deprecated(
        note = "use `client_ip_source(ClientIpSource::from(header))`, which has every source"
    )]
    pub fn forwarded_header(mut self, header: ForwardedHeader) -> Self {
        self.client_ip_source = header.into();
        self
    }

    /// The largest body accepted, in bytes ([`DEFAULT_BODY_LIMIT`] unless
    /// set). Set it per route: inbound mails with attachments need more than
    /// event batches.
    ///
    /// ```
    /// let inbound = cmc_webhook_core::WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .body_limit(25 << 20)
    ///     .build()?;
    /// assert_eq!(inbound.policy().limit(), 25 << 20);
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    ///
    /// [`DEFAULT_BODY_LIMIT`]: crate::DEFAULT_BODY_LIMIT
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }

    /// The caps on what one body may hold: records, unknown fields,
    /// headers, multipart parts (see [`Limits`](crate::Limits) for each and
    /// its default). A body over a cap is refused with 413 while it is read.
    ///
    /// ```
    /// use cmc_webhook_core::{Limits, WebhookLayer};
    ///
    /// let layer = WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .limits(Limits::default().max_records(1_000).max_parts(64))
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
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
    /// let layer = cmc_webhook_core::WebhookLayer::builder()
    ///     .allow_cidrs("192.0.2.0/24")?
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
    ///
    /// ```
    /// let layer = cmc_webhook_core::WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .max_records(500)
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn max_records(mut self, records: usize) -> Self {
        self.limits = self.limits.max_records(records);
        self
    }

    /// The most parts a multipart body may have (512 unless set); more is
    /// refused with 413 while the body is read.
    ///
    /// ```
    /// let layer = cmc_webhook_core::WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .max_parts(64)
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn max_parts(mut self, parts: usize) -> Self {
        self.limits = self.limits.max_parts(parts);
        self
    }

    /// The largest a single multipart part (an attachment) may be, in bytes
    /// (only the body limit unless set); larger is refused with 413.
    ///
    /// ```
    /// let layer = cmc_webhook_core::WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .body_limit(25 << 20)
    ///     .max_part_size(10 << 20)
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn max_part_size(mut self, bytes: u64) -> Self {
        self.limits = self.limits.max_part_size(bytes);
        self
    }

    /// Requires the body's `api_key` to be `key`; repeat for several
    /// accepted keys (rotation). Checked when the body is read: 401.
    ///
    /// ```
    /// let layer = cmc_webhook_core::WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .api_key(std::env::var("CMC_API_KEY").unwrap_or("s3cret".into()))
    ///     .build()?;
    /// assert!(!format!("{layer:?}").contains("s3cret"));
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_keys.push(key.into());
        self
    }

    /// Requires the body's `api_key` to be one of `keys` (with any given by
    /// [`api_key`](Self::api_key)).
    ///
    /// ```
    /// let layer = cmc_webhook_core::WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .api_keys(["current-key", "next-key"])
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn api_keys<K: Into<String>>(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        self.api_keys.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Requires HTTP BASIC auth with `user` and `password`; repeat for
    /// several accepted pairs (rotation). 401 otherwise.
    ///
    /// ```
    /// let layer = cmc_webhook_core::WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .basic_auth("cmc", "pa55word")
    ///     .build()?;
    /// assert!(!format!("{layer:?}").contains("pa55word"));
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic.push(BasicCredentials::new(user, password));
        self
    }

    /// The zone set in the CMC console, in which `created` times are
    /// written ([`default_time_zone`](crate::default_time_zone), Asia/Tokyo,
    /// unless set): the zone of the default source, and of every named
    /// source that sets none. Handlers read it from the [`Source`] the
    /// layer puts in the request.
    ///
    /// ```
    /// let layer = cmc_webhook_core::WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .time_zone(jiff::tz::TimeZone::UTC)
    ///     .build()?;
    /// assert_eq!(layer.sources()[0].time_zone(), &jiff::tz::TimeZone::UTC);
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn time_zone(mut self, tz: TimeZone) -> Self {
        self.time_zone = Some(tz);
        self
    }

    /// Adds a named source: another CMC account (contract, server
    /// composition) served by this layer, with its own credentials and,
    /// optionally, its own allowlist, time zone and path (repeatable).
    ///
    /// How a request's source is decided:
    ///
    /// 1. **By path.** A request on a source's own
    ///    [path](SourceBuilder::path) is that source's, or refused (401):
    ///    another source's credentials never admit it. A request on
    ///    another path can be any source without a path of its own
    ///    (refused with 401 when there is none).
    /// 2. **By credentials.** Of those, the sources whose allowlist lists
    ///    the client, then whose BASIC credentials the request carries (a
    ///    source without BASIC credentials stays in), then (the body is
    ///    read) whose `api_key` the body carries. A source requires every
    ///    kind of credential it configures. None left: 401, logged with
    ///    the source (or sources) tried, never the credentials.
    ///
    /// Two sources that one request could match are refused by
    /// [`build`](Self::build) ([`ConfigError::AmbiguousSources`]): two
    /// sources on the same path (or both without one) must both require
    /// BASIC credentials with no pair in common, or both require `api_key`s
    /// with no key in common. So at most one source matches a request.
    ///
    /// The builder's own credentials ([`api_key`](Self::api_key),
    /// [`basic_auth`](Self::basic_auth)) make the source `default`, on no
    /// path of its own; with named sources and none of those, there is no
    /// default source. A source without an allowlist of its own uses the
    /// layer's ([`allow`](Self::allow),
    /// [`shared_allowlist`](Self::shared_allowlist)).
    ///
    /// ```
    /// use cmc_webhook_core::{ConfigError, SourceBuilder, WebhookLayer};
    ///
    /// let layer = WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .source(SourceBuilder::new("brand-a").api_key("key-a"))
    ///     .source(SourceBuilder::new("brand-b").api_key("key-b"))
    ///     .build()?;
    /// # let _ = layer;
    /// // One key for two sources on one path: which account sent it?
    /// let ambiguous = WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .source(SourceBuilder::new("a").api_key("same"))
    ///     .source(SourceBuilder::new("b").api_key("same"))
    ///     .build();
    /// assert!(matches!(ambiguous, Err(ConfigError::AmbiguousSources(..))));
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn source(mut self, source: SourceBuilder) -> Self {
        self.sources.push(source);
        self
    }

    /// Answers refusals for `reason` with `status` (see [`Reason`] for the
    /// defaults).
    ///
    /// ```
    /// use cmc_webhook_core::{Reason, WebhookLayer};
    /// use http::StatusCode;
    ///
    /// // Hide the endpoint from addresses that are not allowed.
    /// let layer = WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .status(Reason::ClientNotAllowed, StatusCode::NOT_FOUND)
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn status(mut self, reason: Reason, status: StatusCode) -> Self {
        self.statuses = self.statuses.with(reason, status);
        self
    }

    /// Reads the peer address with `f` instead of from `ConnectInfo` or a
    /// `SocketAddr` extension, for servers that record the connection some
    /// other way. `None` refuses the request with 500.
    ///
    /// ```
    /// use std::net::IpAddr;
    ///
    /// #[derive(Clone)]
    /// struct Peer(IpAddr); // what a custom server inserts
    ///
    /// let layer = cmc_webhook_core::WebhookLayer::builder()
    ///     .allow_cidrs("203.0.113.0/24")?
    ///     .peer_addr(|ext| ext.get::<Peer>().map(|p| p.0))
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn peer_addr<F>(mut self, f: F) -> Self
    where
        F: Fn(&http::Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.peer = Some(Arc::new(f));
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// Errors: no allowed network at all (outside report-only mode),
    /// report-only mode without an API key or BASIC credentials, a blank
    /// API key or one with white space at either end, a BASIC user name
    /// with a colon, a blank BASIC user name or password or one with white
    /// space at either end, a body limit of 0.
    /// Warns (through `tracing`) when every address is allowed, when proxies
    /// are trusted but not everything they forward is checked against an
    /// allowlist, when no credentials are configured (the address is then
    /// the only protection), and in report-only mode.
    ///
    /// ```
    /// use cmc_webhook_core::{ConfigError, WebhookLayer};
    ///
    /// assert_eq!(WebhookLayer::builder().build().unwrap_err(), ConfigError::NoAllowlist);
    ///
    /// // A key read from a CRLF file keeps its `\r`: refused, not joined.
    /// let crlf = WebhookLayer::builder().allow_cidrs("203.0.113.0/24")?.api_key("s3cret\r");
    /// assert_eq!(crlf.build().unwrap_err(), ConfigError::SpaceAroundApiKey);
    /// let blank = WebhookLayer::builder().report_only().api_key(" ");
    /// assert_eq!(blank.build().unwrap_err(), ConfigError::EmptyApiKey);
    /// # Ok::<(), ConfigError>(())
    /// ```
    pub fn build(self) -> Result<WebhookLayer, ConfigError> {
        let layer_credentials = !self.api_keys.is_empty() || !self.basic.is_empty();
        let mut specs = Vec::with_capacity(self.sources.len() + 1);
        if self.sources.is_empty() || layer_credentials {
            specs.push(SourceBuilder {
                name: DEFAULT_SOURCE.to_owned(),
                api_keys: self.api_keys,
                basic: self.basic,
                allow: Vec::new(),
                allowlist: None,
                time_zone: None,
                path: None,
            });
        }
        specs.extend(self.sources);
        if specs.len() > super::config::MAX_SOURCES {
            return Err(ConfigError::TooManySources);
        }
        let named = specs.iter().any(|s| s.name != DEFAULT_SOURCE) || specs.len() > 1;
        for (i, spec) in specs.iter().enumerate() {
            if named && !valid_name(&spec.name) {
                return Err(ConfigError::SourceName(crate::text::printable(
                    &spec.name, 64,
                )));
            }
            if specs[..i].iter().any(|s| s.name == spec.name) {
                return Err(ConfigError::DuplicateSource(spec.name.clone()));
            }
            if let Some(path) = &spec.path {
                if !valid_path(path) {
                    return Err(ConfigError::SourcePath(crate::text::printable(path, 256)));
                }
                if specs[..i].iter().any(|s| s.path.as_ref() == Some(path)) {
                    return Err(ConfigError::DuplicatePath(path.clone()));
                }
            }
        }
        let uses_layer_list = specs
            .iter()
            .any(|s| s.allow.is_empty() && s.allowlist.is_none());
        let also_allowed = IpSet::from_nets(self.allow);
        let (allowlist, also_allowed) = match self.allowlist {
            Some(shared) => (shared, also_allowed),
            None if also_allowed.is_empty() && !self.report_only && uses_layer_list => {
                return Err(ConfigError::NoAllowlist);
            }
            None => (Allowlist::new(also_allowed), IpSet::new()),
        };
        let api_keys = || specs.iter().flat_map(|s| &s.api_keys);
        if api_keys().any(|k| blank(k)) {
            return Err(ConfigError::EmptyApiKey);
        }
        if api_keys().any(|k| spaced(k)) {
            return Err(ConfigError::SpaceAroundApiKey);
        }
        let basic = || specs.iter().flat_map(|s| &s.basic);
        if let Some(c) = basic().find(|c| c.user().contains(':')) {
            return Err(ConfigError::ColonInUser(c.user().to_owned()));
        }
        if let Some(c) = basic().find(|c| blank(c.user()) || blank(c.password())) {
            return Err(ConfigError::BlankBasicAuth(crate::text::printable(
                c.user(),
                64,
            )));
        }
        if let Some(c) = basic().find(|c| spaced(c.user()) || spaced(c.password())) {
            return Err(ConfigError::SpaceAroundBasicAuth(crate::text::printable(
                c.user(),
                64,
            )));
        }
        if self.body_limit == Some(0) {
            return Err(ConfigError::ZeroBodyLimit);
        }
        let trusted_proxies = IpSet::from_nets(self.trusted);
        if self.client_ip_source_chosen
            && self.client_ip_source != ClientIpSource::Peer
            && trusted_proxies.is_empty()
        {
            return Err(ConfigError::UntrustedClientIpSource(self.client_ip_source));
        }
        if self.client_ip_source == ClientIpSource::Peer && !trusted_proxies.is_empty() {
            tracing::warn!(
                trusted_proxies = %trusted_proxies,
                "the client address source is the peer: the trusted proxies' headers are not read"
            );
        }

        let mut base = Policy::default()
            .statuses(self.statuses)
            .limits(self.limits);
        if let Some(limit) = self.body_limit {
            base = base.body_limit(limit);
        }
        let layer_zone = self.time_zone.unwrap_or_else(crate::default_time_zone);
        let sources: Vec<GateSource> = specs
            .into_iter()
            .map(|spec| {
                let source = Source::new(
                    spec.name,
                    spec.time_zone.unwrap_or_else(|| layer_zone.clone()),
                    spec.path,
                );
                let own = IpSet::from_nets(spec.allow);
                let allowlist = match spec.allowlist {
                    Some(shared) => Some((shared, own)),
                    None if own.is_empty() => None,
                    None => Some((Allowlist::new(own), IpSet::new())),
                };
                let mut policy = base.clone().source(source.clone());
                policy.api_keys = (!spec.api_keys.is_empty())
                    .then(|| ApiKeys::new(spec.api_keys.iter().cloned()));
                GateSource {
                    source,
                    basic: spec.basic,
                    api_keys: spec.api_keys,
                    allowlist,
                    policy,
                }
            })
            .collect();
        for (i, a) in sources.iter().enumerate() {
            if let Some(b) = sources[..i]
                .iter()
                .find(|b| b.source.path() == a.source.path() && b.indistinguishable_from(a))
            {
                return Err(ConfigError::AmbiguousSources(
                    b.source.name().to_owned(),
                    a.source.name().to_owned(),
                ));
            }
        }

        let allowed = IpSet::from_nets(
            allowlist
                .get()
                .nets()
                .into_iter()
                .chain(also_allowed.nets())
                .chain(sources.iter().flat_map(|s| {
                    s.allowlist
                        .iter()
                        .flat_map(|(list, also)| list.get().nets().into_iter().chain(also.nets()))
                })),
        );
        if let Some(everyone) = allowed.open_to() {
            tracing::warn!(allow = %allowed.sample(), "the allowlist allows {everyone}: anyone there can post webhooks");
        }
        if !trusted_proxies.is_empty() && allowed.covers_everything() {
            tracing::warn!(
                trusted_proxies = %trusted_proxies,
                "proxies are trusted but the allowlist allows everyone: forwarded addresses are not checked"
            );
        }
        let unprotected = sources
            .iter()
            .find(|s| s.api_keys.is_empty() && s.basic.is_empty());
        if self.report_only && unprotected.is_some() {
            return Err(ConfigError::ReportOnlyWithoutCredentials);
        }
        if let Some(s) = unprotected {
            tracing::warn!(
                source = s.source.name(),
                "no api_key and no BASIC credentials configured: the source address is the only protection"
            );
        }
        if self.report_only {
            tracing::warn!(
                allow = %allowed.sample(),
                "report-only mode: clients outside the allowlist are admitted and logged once each; \
                 switch it off once the allowlist is complete"
            );
        }
        let policy = match sources.as_slice() {
            [only] => only.policy.clone(),
            _ => base,
        };
        Ok(WebhookLayer::new(Config {
            allowlist,
            also_allowed,
            report_only: self.report_only,
            unlisted: Unlisted::default(),
            trusted_proxies,
            client_ip_source: self.client_ip_source,
            by_path: sources.iter().any(|s| s.source.path().is_some()),
            sources,
            policy,
            peer: self.peer,
            drain: self.drain,
        }))
    }
}

/// One named source (a CMC contract or server composition) of a
/// [`WebhookLayer`](crate::WebhookLayer): its credentials, its allowlist,
/// its console time zone and, optionally, its own path. Give it to
/// [`WebhookLayerBuilder::source`](crate::WebhookLayerBuilder::source).
///
/// ```
/// use cmc_webhook_core::{SourceBuilder, WebhookLayer};
///
/// let layer = WebhookLayer::builder()
///     .allow_cidrs("203.0.113.0/24")? // shared by the sources without a list of their own
///     .source(SourceBuilder::new("production").api_key("prod-key"))
///     .source(
///         SourceBuilder::new("sandbox")
///             .basic_auth("cmc", "pa55word")
///             .time_zone(jiff::tz::TimeZone::UTC)
///             .path("/cmc/sandbox"),
///     )
///     .build()?;
/// assert_eq!(layer.sources().len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SourceBuilder {
    name: String,
    api_keys: Vec<String>,
    basic: Vec<BasicCredentials>,
    allow: Vec<IpNet>,
    allowlist: Option<Allowlist>,
    time_zone: Option<TimeZone>,
    path: Option<String>,
}

impl SourceBuilder {
    /// A source named `name`: 1 to 64 ASCII letters, digits, `_`, `-` or
    /// `.` (it becomes a metrics label and a log field), unique in the
    /// layer. `default` is the name of the source the builder's own
    /// credentials make.
    pub fn new(name: impl Into<String>) -> SourceBuilder {
        SourceBuilder {
            name: name.into(),
            api_keys: Vec::new(),
            basic: Vec::new(),
            allow: Vec::new(),
            allowlist: None,
            time_zone: None,
            path: None,
        }
    }

    /// Requires the body's `api_key` to be `key`; repeat for rotation.
    ///
    /// ```
    /// let source = cmc_webhook_core::SourceBuilder::new("prod").api_key("k1").api_key("k2");
    /// assert!(!format!("{source:?}").contains("k1"));
    /// ```
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_keys.push(key.into());
        self
    }

    /// Requires the body's `api_key` to be one of `keys`.
    ///
    /// ```
    /// let source = cmc_webhook_core::SourceBuilder::new("prod").api_keys(["old", "new"]);
    /// # let _ = source;
    /// ```
    pub fn api_keys<K: Into<String>>(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        self.api_keys.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Requires HTTP BASIC auth with `user` and `password`; repeat for
    /// rotation.
    ///
    /// ```
    /// let source = cmc_webhook_core::SourceBuilder::new("brand-b").basic_auth("cmc", "pa55word");
    /// assert!(!format!("{source:?}").contains("pa55word"));
    /// ```
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic.push(BasicCredentials::new(user, password));
        self
    }

    /// Gives the source an allowlist of its own, with `net` (repeatable):
    /// then the layer's shared list does not apply to it.
    ///
    /// ```
    /// let source = cmc_webhook_core::SourceBuilder::new("prod").allow("203.0.113.0/24".parse()?);
    /// # let _ = source;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allow(mut self, net: IpNet) -> Self {
        self.allow.push(net);
        self
    }

    /// [`allow`](Self::allow) for every network in `nets`.
    ///
    /// ```
    /// let nets: Vec<ipnet::IpNet> = vec!["203.0.113.0/24".parse()?];
    /// let source = cmc_webhook_core::SourceBuilder::new("prod").allow_nets(nets);
    /// # let _ = source;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allow_nets(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.allow.extend(nets);
        self
    }

    /// [`allow`](Self::allow) for a comma- or space-separated list.
    ///
    /// ```
    /// let source = cmc_webhook_core::SourceBuilder::new("prod").allow_cidrs("203.0.113.0/24, 2001:db8::/32")?;
    /// # let _ = source;
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn allow_cidrs(mut self, list: &str) -> Result<Self, ConfigError> {
        self.allow.extend(parse_list(list)?);
        Ok(self)
    }

    /// Checks this source's clients against `allowlist` (shared with a
    /// reloader), instead of the layer's; networks given with
    /// [`allow`](Self::allow) are allowed besides it.
    ///
    /// ```
    /// use cmc_webhook_core::{allowlist::Allowlist, SourceBuilder};
    ///
    /// let list = Allowlist::new("198.51.100.0/24".parse()?);
    /// let source = SourceBuilder::new("sandbox").shared_allowlist(list.clone());
    /// # let _ = source;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shared_allowlist(mut self, allowlist: Allowlist) -> Self {
        self.allowlist = Some(allowlist);
        self
    }

    /// The zone set in this account's CMC console, in which its `created`
    /// times are written ([`default_time_zone`](crate::default_time_zone),
    /// Asia/Tokyo, unless set).
    ///
    /// ```
    /// let tz = jiff::tz::TimeZone::get("Europe/Paris")?;
    /// let source = cmc_webhook_core::SourceBuilder::new("eu").time_zone(tz);
    /// # let _ = source;
    /// # Ok::<(), jiff::Error>(())
    /// ```
    pub fn time_zone(mut self, tz: TimeZone) -> Self {
        self.time_zone = Some(tz);
        self
    }

    /// Serves this source on `path` only (the request's path exactly, as
    /// the layer sees it: inside `Router::nest`, without the prefix). A
    /// request on this path is this source's or refused; its credentials
    /// never admit a request on another source's path.
    ///
    /// ```
    /// let source = cmc_webhook_core::SourceBuilder::new("sandbox").path("/cmc/sandbox");
    /// # let _ = source;
    /// ```
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }
}

impl fmt::Debug for SourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceBuilder")
            .field("name", &self.name)
            .field(
                "api_keys",
                &self
                    .api_keys
                    .iter()
                    .map(|_| crate::REDACTED)
                    .collect::<Vec<_>>(),
            )
            .field("basic", &self.basic)
            .field("allow", &self.allow)
            .field("shared_allowlist", &self.allowlist)
            .field(
                "time_zone",
                &self.time_zone.as_ref().and_then(|t| t.iana_name()),
            )
            .field("path", &self.path)
            .finish()
    }
}

/// A source name: 1 to 64 of `[A-Za-z0-9_.-]`, safe as a metrics label
/// and a log field.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A source path: absolute, without a query or fragment, printable ASCII.
fn valid_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= 1024
        && path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
}

impl fmt::Debug for WebhookLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookLayerBuilder")
            .field("allow", &self.allow)
            .field("shared_allowlist", &self.allowlist)
            .field("report_only", &self.report_only)
            .field("trusted", &self.trusted)
            .field("client_ip_source", &self.client_ip_source)
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
            .field(
                "time_zone",
                &self.time_zone.as_ref().and_then(|t| t.iana_name()),
            )
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

fn parse_list(list: &str) -> Result<Vec<IpNet>, ConfigError> {
    list.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| parse_net(s).map_err(ConfigError::Network))
        .collect()
}

/// Whether a secret is empty or only white space.
fn blank(secret: &str) -> bool {
    secret.trim().is_empty()
}

/// Whether a secret begins or ends with white space: a `\r` left by a
/// CRLF file, a space after a comma. No CMC console value does; taken as
/// a mistake rather than silently part of the secret.
fn spaced(secret: &str) -> bool {
    secret.trim() != secret
}

/// A [`WebhookLayer`] configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// No allowed network: every request would be refused. Call `allow`
    /// (or `report_only` to learn the addresses).
    NoAllowlist,
    /// A list item is not a network.
    Network(IpSetParseError),
    /// An API key is empty or only white space: report-only mode would
    /// admit anyone sending that blank key.
    EmptyApiKey,
    /// An API key begins or ends with white space (a `\r` left by a CRLF
    /// file, a space after a comma): trim it where it is kept.
    SpaceAroundApiKey,
    /// A BASIC user name holds a colon, which the header cannot carry.
    ColonInUser(String),
    /// The BASIC user name or password of this user (escaped) is empty or
    /// only white space.
    BlankBasicAuth(String),
    /// The BASIC user name or password of this user (escaped) begins or
    /// ends with white space.
    SpaceAroundBasicAuth(String),
    /// A body limit of 0 would refuse every webhook.
    ZeroBodyLimit,
    /// A source name (escaped) that is not 1 to 64 ASCII letters, digits,
    /// `_`, `-` or `.`.
    SourceName(String),
    /// Two sources with this name (`default` is the source of the
    /// builder's own credentials).
    DuplicateSource(String),
    /// A source path (escaped) that does not begin with `/`, or holds a
    /// `?`, a `#`, white space or a byte outside printable ASCII.
    SourcePath(String),
    /// Two sources on this path.
    DuplicatePath(String),
    /// More than 64 sources on one layer.
    TooManySources,
    /// These two sources, on the same path (or both on none), could both
    /// match one request: give them BASIC credentials or `api_key`s of
    /// their own (see [`WebhookLayerBuilder::source`]).
    AmbiguousSources(String, String),
    /// Report-only mode without an `api_key` or BASIC credentials would
    /// admit anyone.
    ReportOnlyWithoutCredentials,
    /// This header source was chosen, but no proxy is trusted: the header
    /// is believed only from a trusted proxy, so it would never be read.
    /// Call [`WebhookLayerBuilder::trust_proxy`] with the proxies'
    /// networks, or choose [`ClientIpSource::Peer`].
    UntrustedClientIpSource(ClientIpSource),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NoAllowlist => f.write_str(
                "no allowed addresses: call allow(..) or allow_cidrs(..) with the networks CMC posts from \
                 (or report_only() to learn them: see the README's \"find CMC's addresses\")",
            ),
            ConfigError::Network(e) => e.fmt(f),
            ConfigError::EmptyApiKey => f.write_str("an api_key is empty or only white space"),
            ConfigError::SpaceAroundApiKey => f.write_str(
                "an api_key begins or ends with white space (a \\r from a CRLF file? a space after a comma?): \
                 remove it where the key is kept (the key is not shown)",
            ),
            ConfigError::BlankBasicAuth(user) => {
                write!(f, "the BASIC credentials of user `{user}` have an empty or blank user name or password")
            }
            ConfigError::SpaceAroundBasicAuth(user) => write!(
                f,
                "the BASIC user name or password of user `{user}` begins or ends with white space \
                 (a \\r from a CRLF file?): remove it where it is kept (the password is not shown)"
            ),
            ConfigError::ColonInUser(user) => {
                write!(f, "the BASIC user name `{user}` contains a colon, which BASIC auth cannot carry")
            }
            ConfigError::ZeroBodyLimit => f.write_str("a body limit of 0 would refuse every webhook"),
            ConfigError::SourceName(name) => write!(
                f,
                "the source name `{name}` is not 1 to 64 ASCII letters, digits, `_`, `-` or `.`"
            ),
            ConfigError::DuplicateSource(name) => write!(
                f,
                "two sources are named `{name}` (`default` is the source of the layer's own credentials)"
            ),
            ConfigError::SourcePath(path) => write!(
                f,
                "the source path `{path}` must begin with `/`, without a query, a fragment or white space"
            ),
            ConfigError::TooManySources => f.write_str("more than 64 sources on one layer"),
            ConfigError::DuplicatePath(path) => write!(f, "two sources are served on the path `{path}`"),
            ConfigError::AmbiguousSources(a, b) => write!(
                f,
                "the sources `{a}` and `{b}` could both match one request: on one path (or both on \
                 none), two sources must both require BASIC credentials with no pair in common, or \
                 both require api_keys with no key in common"
            ),
            ConfigError::ReportOnlyWithoutCredentials => f.write_str(
                "report-only mode admits clients outside the allowlist: configure an api_key or \
                 BASIC credentials, which are then the only protection",
            ),
            ConfigError::UntrustedClientIpSource(source) => write!(
                f,
                "the client address source `{source}` is a header, believed only from trusted \
                 proxies, and no proxy is trusted: give the networks of the proxies that write it \
                 (trust_proxy, --trust-proxy), or use the source `peer` when nothing stands in front"
            ),
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
        let b = || WebhookLayer::builder().allow_cidrs("10.0.0.0/8").unwrap();
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
            .allow_cidrs("10.0.0.0/8, bogus")
            .unwrap_err();
        assert!(e.to_string().contains("`bogus`"), "{e}");
        assert!(WebhookLayer::builder().trust_proxy_cidrs("nope").is_err());
        // Learning mode needs no allowlist, but a credential.
        assert!(
            WebhookLayer::builder()
                .report_only()
                .api_key("k")
                .build()
                .is_ok()
        );
        assert_eq!(
            WebhookLayer::builder().report_only().build().unwrap_err(),
            ConfigError::ReportOnlyWithoutCredentials
        );
    }

    #[test]
    fn blank_and_padded_credentials_are_refused_without_showing_them() {
        let b = || WebhookLayer::builder().allow_cidrs("10.0.0.0/8").unwrap();
        // A blank key would let report-only mode admit `"api_key": " "`.
        for blank in [" ", "\t", "\r\n", "\u{3000}"] {
            assert_eq!(
                WebhookLayer::builder()
                    .report_only()
                    .api_key(blank)
                    .build()
                    .unwrap_err(),
                ConfigError::EmptyApiKey
            );
        }
        for padded in ["k3y-secret\r", " k3y-secret", "k3y-secret\n"] {
            let e = b().api_keys(["good", padded]).build().unwrap_err();
            assert_eq!(e, ConfigError::SpaceAroundApiKey);
            assert!(!e.to_string().contains("k3y"), "{e}");
        }
        for (user, password) in [("cmc", " "), ("", "pw"), (" ", "pw")] {
            assert!(matches!(
                b().basic_auth(user, password).build().unwrap_err(),
                ConfigError::BlankBasicAuth(_)
            ));
        }
        let e = b().basic_auth("cmc", "pa55-secret\r").build().unwrap_err();
        assert_eq!(e, ConfigError::SpaceAroundBasicAuth("cmc".into()));
        assert!(!e.to_string().contains("pa55"), "{e}");
        assert!(matches!(
            b().basic_auth("cmc\r", "pw").build().unwrap_err(),
            ConfigError::SpaceAroundBasicAuth(u) if u == "cmc\\u{d}"
        ));
        // Inner spaces are the secret's own.
        assert!(b().api_key("a b").basic_auth("c d", "e f").build().is_ok());
    }

    #[test]
    fn debug_hides_secrets() {
        let layer = WebhookLayer::builder()
            .allow_cidrs("10.0.0.0/8")
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
    fn a_shared_allowlist_is_not_written_into() {
        let shared = Allowlist::new("192.0.2.0/24".parse().unwrap());
        let layer = WebhookLayer::builder()
            .shared_allowlist(shared.clone())
            .allow("198.51.100.0/24".parse::<IpNet>().unwrap())
            .build()
            .unwrap();
        // The extra network is allowed by the layer, not added to the list.
        assert!(!shared.contains("198.51.100.1".parse().unwrap()));
        assert!(layer.config.allows("198.51.100.1".parse().unwrap()));
        assert!(layer.config.allows("192.0.2.1".parse().unwrap()));
        // A replacement of the shared list takes effect; the extra stays.
        shared.replace("203.0.113.0/24".parse().unwrap());
        assert!(!layer.config.allows("192.0.2.1".parse().unwrap()));
        assert!(layer.config.allows("203.0.113.1".parse().unwrap()));
        assert!(layer.config.allows("198.51.100.1".parse().unwrap()));
        assert!(Arc::ptr_eq(&layer.allowlist().get(), &shared.get()));
    }

    #[test]
    fn the_builder_is_clone_and_clones_are_independent() {
        let common = WebhookLayer::builder().allow_cidrs("10.0.0.0/8").unwrap();
        let small = common.clone().body_limit(10).build().unwrap();
        let large = common.body_limit(20).build().unwrap();
        assert_eq!((small.policy().limit(), large.policy().limit()), (10, 20));
        // Each built layer has its own list.
        small.allowlist().replace("192.0.2.0/24".parse().unwrap());
        assert!(large.allowlist().contains("10.1.2.3".parse().unwrap()));
    }
}
