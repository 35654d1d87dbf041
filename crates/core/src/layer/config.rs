//! What a built [`WebhookLayer`](super::WebhookLayer) holds, shared by
//! its services and their futures.

use std::net::IpAddr;
use std::sync::Arc;

use crate::allowlist::{Allowlist, IpSet};
use crate::client_ip::ForwardedHeader;
use crate::request::Policy;

use super::drain;
use super::source::GateSource;
use super::unlisted::Unlisted;

/// Reads the peer address from a request's extensions.
pub(crate) type PeerFn = Arc<dyn Fn(&http::Extensions) -> Option<IpAddr> + Send + Sync>;

pub(crate) struct Config {
    /// The shared, replaceable list.
    pub(crate) allowlist: Allowlist,
    /// Networks given to the builder besides a shared list: allowed too,
    /// without being written into the shared list.
    pub(crate) also_allowed: IpSet,
    pub(crate) report_only: bool,
    pub(crate) unlisted: Unlisted,
    pub(crate) trusted_proxies: IpSet,
    pub(crate) forwarded_header: ForwardedHeader,
    /// The sources, the default one (the builder's own credentials) first
    /// when there is one. Never empty.
    pub(crate) sources: Vec<GateSource>,
    /// Whether a source has a path of its own.
    pub(crate) by_path: bool,
    /// The policy of the only source, or (several sources) the layer's
    /// limits and statuses without keys: what refusals are answered with.
    pub(crate) policy: Policy,
    pub(crate) peer: Option<PeerFn>,
    pub(crate) drain: drain::DrainLimits,
}

impl Config {
    pub(crate) fn allows(&self, client: IpAddr) -> bool {
        self.also_allowed.contains(client) || self.allowlist.contains(client)
    }

    /// Whether `source` lets `client` call: its own list, or the layer's.
    pub(crate) fn source_allows(&self, source: &GateSource, client: IpAddr) -> bool {
        match &source.allowlist {
            Some((list, also)) => also.contains(client) || list.contains(client),
            None => self.allows(client),
        }
    }

    /// The sources that may have sent a request on `path`: the one whose
    /// path it is, or else those without a path of their own.
    pub(crate) fn candidates(&self, path: &str) -> Vec<&GateSource> {
        if self.by_path
            && let Some(own) = self.sources.iter().find(|s| s.source.path() == Some(path))
        {
            return vec![own];
        }
        self.sources
            .iter()
            .filter(|s| s.source.path().is_none())
            .collect()
    }
}
