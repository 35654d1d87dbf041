//! What a built [`WebhookLayer`](super::WebhookLayer) holds, shared by
//! its services and their futures.

use std::net::IpAddr;
use std::sync::Arc;

use crate::Source;
use crate::allowlist::{Allowlist, IpSet};
use crate::auth::{ApiKeys, BasicCredentials};
use crate::client_ip::ClientIpSource;
use crate::request::Policy;

use super::drain;
use super::unlisted::{Sighting, Unlisted};

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
    pub(crate) client_ip_source: ClientIpSource,
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

    /// The sources that may have sent a request on `path`, as a set of
    /// positions in `sources` (at most 64): the one whose path it is, or
    /// else those without a path of their own.
    pub(crate) fn candidates(&self, path: &str) -> Sources {
        if self.by_path
            && let Some(own) = self
                .sources
                .iter()
                .position(|s| s.source.path() == Some(path))
        {
            return Sources(1 << own);
        }
        Sources(
            self.sources
                .iter()
                .enumerate()
                .filter(|(_, s)| s.source.path().is_none())
                .fold(0, |set, (i, _)| set | 1 << i),
        )
    }
}

/// A set of sources, by their positions in the layer's list: chosen
/// without allocating on every request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sources(pub(crate) u64);

impl Sources {
    /// The positions in the set, in order.
    pub(crate) fn iter(self) -> impl Iterator<Item = usize> {
        (0..64).filter(move |i| self.0 & (1 << i) != 0)
    }

    /// Keeps the positions for which `keep` is true; each is asked (no
    /// early exit).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(usize) -> bool) {
        for i in self.iter() {
            if !keep(i) {
                self.0 &= !(1 << i);
            }
        }
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The only position, when there is one.
    pub(crate) fn only(self) -> Option<usize> {
        (self.0.count_ones() == 1).then(|| self.0.trailing_zeros() as usize)
    }
}

/// The most sources one layer serves.
pub(crate) const MAX_SOURCES: usize = 64;

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

impl std::fmt::Debug for GateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateSource")
            .field("source", &self.source)
            .field("basic", &self.basic)
            .field("api_keys", &self.api_keys.len())
            .field("own_allowlist", &self.allowlist.as_ref().map(|(l, _)| l))
            .finish()
    }
}

impl Config {
    /// Counts a client outside the allowlist: refused, or (report-only)
    /// accepted, and then listed, its first request logged at `warn`.
    pub(crate) fn note_unlisted(&self, client: IpAddr, peer: IpAddr) {
        crate::telemetry::unlisted_request();
        if !self.report_only {
            // Refused: logged with the refusal, and not listed, since a
            // port scanner would qualify.
            return;
        }
        match self.unlisted.record(client) {
            Sighting::New => tracing::warn!(
                client = %client,
                peer = %peer,
                "admitted a client outside the allowlist (report-only mode): \
                 if it is CMC, add it to the allowlist"
            ),
            Sighting::Overflow { first: true } => tracing::warn!(
                client = %client,
                "report-only mode: {} addresses outside the allowlist are recorded, \
                 the most kept; further ones are counted, not listed",
                super::unlisted::MAX_UNLISTED
            ),
            Sighting::Again | Sighting::Overflow { .. } => {
                tracing::debug!(client = %client, "admitted a client outside the allowlist (report-only mode)")
            }
        }
    }
}
