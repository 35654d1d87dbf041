//! [`SourceBuilder`]: one named CMC account of a layer with several, and
//! how the layer tells them apart.

use std::fmt;

use ipnet::IpNet;
use jiff::tz::TimeZone;

use crate::Source;
use crate::allowlist::{Allowlist, IpSet};
use crate::auth::{ApiKeys, BasicCredentials};
use crate::request::Policy;

use super::ConfigError;

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
    pub(super) name: String,
    pub(super) api_keys: Vec<String>,
    pub(super) basic: Vec<BasicCredentials>,
    pub(super) allow: Vec<IpNet>,
    pub(super) allowlist: Option<Allowlist>,
    pub(super) time_zone: Option<TimeZone>,
    pub(super) path: Option<String>,
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
        self.allow.extend(super::builder::parse_list(list)?);
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

/// A source as the built layer keeps it.
pub(crate) struct GateSource {
    pub(crate) source: Source,
    pub(crate) basic: Vec<BasicCredentials>,
    /// The keys as given, to check at build time that two sources can be
    /// told apart (never compared at request time: `policy` holds them).
    pub(crate) api_keys: Vec<String>,
    /// Its own list (and networks besides it); `None`: the layer's.
    pub(crate) allowlist: Option<(Allowlist, IpSet)>,
    /// The layer's policy with this source's keys, and the source.
    pub(crate) policy: Policy,
}

impl GateSource {
    /// Whether a request with this source's credentials could carry those
    /// of `other` too, so that the layer could not tell them apart: they
    /// are told apart only by a kind of credential both require, with no
    /// value in common.
    pub(crate) fn indistinguishable_from(&self, other: &GateSource) -> bool {
        let basic_apart = !self.basic.is_empty()
            && !other.basic.is_empty()
            && !self.basic.iter().any(|a| {
                other
                    .basic
                    .iter()
                    .any(|b| a.user() == b.user() && a.password() == b.password())
            });
        let keys_apart = !self.api_keys.is_empty()
            && !other.api_keys.is_empty()
            && !self.api_keys.iter().any(|a| other.api_keys.contains(a));
        !basic_apart && !keys_apart
    }

    pub(crate) fn keys(&self) -> Option<&ApiKeys> {
        self.policy.api_keys.as_ref()
    }
}

impl fmt::Debug for GateSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateSource")
            .field("source", &self.source)
            .field("basic", &self.basic)
            .field("api_keys", &self.api_keys.len())
            .field("own_allowlist", &self.allowlist.as_ref().map(|(l, _)| l))
            .finish()
    }
}
