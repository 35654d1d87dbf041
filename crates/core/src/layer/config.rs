//! What a built [`WebhookLayer`](super::WebhookLayer) holds, shared by
//! its services and their futures.

use std::net::IpAddr;
use std::sync::Arc;

use crate::allowlist::{Allowlist, IpSet};
use crate::auth::BasicCredentials;
use crate::client_ip::ForwardedHeader;
use crate::request::Policy;

use super::drain;
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
    pub(crate) basic: Vec<BasicCredentials>,
    pub(crate) policy: Policy,
    pub(crate) peer: Option<PeerFn>,
    pub(crate) drain: drain::DrainLimits,
}

impl Config {
    pub(crate) fn allows(&self, client: IpAddr) -> bool {
        self.also_allowed.contains(client) || self.allowlist.contains(client)
    }
}
