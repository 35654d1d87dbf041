//! [`WebhookLayer`]: the built gate, a tower layer that wraps services.

use std::fmt;
use std::sync::Arc;

use crate::allowlist::Allowlist;
use crate::request::Policy;

use super::config::Config;
use super::service::WebhookService;
use super::unlisted::UnlistedClient;

/// A tower [`Layer`](tower_layer::Layer) that admits only requests from
/// allowed addresses, with the right method, credentials, media type and
/// size. See the [module docs](crate::layer) for the rules.
#[derive(Clone)]
pub struct WebhookLayer {
    pub(super) config: Arc<Config>,
}

impl WebhookLayer {
    /// The layer of a configuration that [`build`](crate::WebhookLayerBuilder::build)
    /// checked.
    pub(super) fn new(config: Config) -> WebhookLayer {
        WebhookLayer {
            config: Arc::new(config),
        }
    }

    /// The allowlist in force: replace its contents while serving, and every
    /// service built from this layer sees the change on its next request.
    ///
    /// ```
    /// let layer = cmc_webhook_core::WebhookLayer::builder().allow_cidrs("192.0.2.0/24")?.build()?;
    /// let allowlist = layer.allowlist();
    /// allowlist.replace("192.0.2.0/24, 198.51.100.7".parse()?);
    /// assert!(allowlist.contains("198.51.100.7".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// When the layer was given a [shared
    /// list](crate::WebhookLayerBuilder::shared_allowlist), this is that list;
    /// networks given with [`allow`](crate::WebhookLayerBuilder::allow) besides it
    /// are allowed too, but are not part of it.
    pub fn allowlist(&self) -> Allowlist {
        self.config.allowlist.clone()
    }

    /// Whether the layer admits clients outside the allowlist (see
    /// [`report_only`](crate::WebhookLayerBuilder::report_only)).
    pub fn is_report_only(&self) -> bool {
        self.config.report_only
    }

    /// In [report-only](crate::WebhookLayerBuilder::report_only) mode, the client
    /// addresses outside the allowlist whose webhooks were read and
    /// accepted (their credentials checked) since the layer was built, the
    /// most frequent first. Refused requests are never listed (a port
    /// scanner would be); outside report-only mode the list stays empty.
    /// At most 1 024 addresses are remembered, the first come; requests
    /// from further ones are only counted
    /// ([`unlisted_overflow`](Self::unlisted_overflow)).
    ///
    /// ```
    /// use cmc_webhook_core::WebhookLayer;
    ///
    /// let layer = WebhookLayer::builder().report_only().api_key("s3cret").build()?;
    /// // After serving for a while, print what to allow:
    /// let seen: Vec<String> = layer.unlisted_clients().iter().map(|c| c.addr.to_string()).collect();
    /// println!("--allow {}", seen.join(","));
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn unlisted_clients(&self) -> Vec<UnlistedClient> {
        self.config.unlisted.clients()
    }

    /// Requests from unlisted addresses beyond the 1 024 remembered by
    /// [`unlisted_clients`](Self::unlisted_clients).
    pub fn unlisted_overflow(&self) -> u64 {
        self.config.unlisted.overflow()
    }

    /// The sources this layer serves: the default one (its own
    /// credentials) first when there is one.
    ///
    /// ```
    /// let layer = cmc_webhook_core::WebhookLayer::builder().allow_cidrs("203.0.113.0/24")?.build()?;
    /// assert!(layer.sources()[0].is_default());
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn sources(&self) -> Vec<crate::Source> {
        self.config
            .sources
            .iter()
            .map(|s| s.source.clone())
            .collect()
    }

    /// Where the client address is read from.
    ///
    /// ```
    /// use cmc_webhook_core::{client_ip::ClientIpSource, WebhookLayer};
    ///
    /// let layer = WebhookLayer::builder().allow_cidrs("203.0.113.0/24")?.build()?;
    /// assert_eq!(layer.client_ip_source(), ClientIpSource::XForwardedFor);
    /// # Ok::<(), cmc_webhook_core::ConfigError>(())
    /// ```
    pub fn client_ip_source(&self) -> crate::client_ip::ClientIpSource {
        self.config.client_ip_source
    }

    /// The policy that reaches the body readers through the extensions
    /// (with several sources, each request gets its source's: this one has
    /// the limits and statuses, and no keys).
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
            .field("also_allowed", &self.config.also_allowed)
            .field("report_only", &self.config.report_only)
            .field("unlisted", &self.config.unlisted)
            .field("trusted_proxies", &self.config.trusted_proxies)
            .field("client_ip_source", &self.config.client_ip_source)
            .field("sources", &self.config.sources)
            .field("policy", &self.config.policy)
            .field("peer", &self.config.peer.as_ref().map(|_| "<fn>"))
            .finish()
    }
}
