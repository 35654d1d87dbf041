//! The clients seen outside the allowlist: what an operator learns CMC's
//! sender addresses from (see [`report_only`]).
//!
//! [`report_only`]: super::WebhookLayerBuilder::report_only

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;

use crate::allowlist::canonical;

/// How many distinct addresses are remembered at most; requests from
/// further addresses are counted in [`Unlisted::overflow`] only. A
/// stranger spraying requests from a large IPv6 network cannot make the
/// record grow beyond this.
pub(crate) const MAX_UNLISTED: usize = 1024;

/// A client address seen outside the allowlist, with how often and when.
///
/// ```
/// use cmc_webhook_core::WebhookLayer;
///
/// let layer = WebhookLayer::builder().report_only().api_key("s3cret").build()?;
/// // Nothing seen yet; a served layer fills this as requests come.
/// assert!(layer.unlisted_clients().is_empty());
/// # Ok::<(), cmc_webhook_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnlistedClient {
    /// The client address (an IPv4-mapped IPv6 address as IPv4).
    pub addr: IpAddr,
    /// Requests from it since the layer was built.
    pub requests: u64,
    /// The first request from it.
    pub first_seen: Timestamp,
    /// The latest request from it.
    pub last_seen: Timestamp,
}

impl fmt::Display for UnlistedClient {
    /// `203.0.113.7 (12 requests, 2026-11-27T10:00:00Z .. 2026-11-27T11:00:00Z)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} request{}, {} .. {})",
            self.addr,
            self.requests,
            if self.requests == 1 { "" } else { "s" },
            self.first_seen
                .round(jiff::Unit::Second)
                .unwrap_or(self.first_seen),
            self.last_seen
                .round(jiff::Unit::Second)
                .unwrap_or(self.last_seen),
        )
    }
}

/// The record of unlisted clients a layer keeps.
#[derive(Default)]
pub(crate) struct Unlisted {
    seen: Mutex<HashMap<IpAddr, (u64, Timestamp, Timestamp)>>,
    overflow: AtomicU64,
}

/// What recording a request found.
pub(crate) enum Sighting {
    /// The first request from this address.
    New,
    /// An address seen before.
    Again,
    /// The record is full: counted, not remembered.
    Overflow { first: bool },
}

impl Unlisted {
    /// Records a request from `client`.
    pub(crate) fn record(&self, client: IpAddr) -> Sighting {
        let client = canonical(client);
        let now = Timestamp::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = seen.get_mut(&client) {
            entry.0 += 1;
            entry.2 = now;
            return Sighting::Again;
        }
        if seen.len() >= MAX_UNLISTED {
            drop(seen);
            let before = self.overflow.fetch_add(1, Ordering::Relaxed);
            return Sighting::Overflow { first: before == 0 };
        }
        seen.insert(client, (1, now, now));
        crate::telemetry::unlisted_clients(seen.len());
        Sighting::New
    }

    /// The addresses, the most frequent first.
    pub(crate) fn clients(&self) -> Vec<UnlistedClient> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut clients: Vec<UnlistedClient> = seen
            .iter()
            .map(
                |(&addr, &(requests, first_seen, last_seen))| UnlistedClient {
                    addr,
                    requests,
                    first_seen,
                    last_seen,
                },
            )
            .collect();
        drop(seen);
        clients.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.addr.cmp(&b.addr)));
        clients
    }

    /// Requests from addresses beyond [`MAX_UNLISTED`].
    pub(crate) fn overflow(&self) -> u64 {
        self.overflow.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Unlisted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seen = self.seen.lock().map(|s| s.len()).unwrap_or_default();
        f.debug_struct("Unlisted")
            .field("addresses", &seen)
            .field("overflow", &self.overflow())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_stops_growing_at_the_cap() {
        let unlisted = Unlisted::default();
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        assert!(matches!(unlisted.record(a), Sighting::New));
        // The same address, mapped as a dual-stack socket reports it.
        assert!(matches!(
            unlisted.record("::ffff:203.0.113.7".parse().unwrap()),
            Sighting::Again
        ));
        for i in 1..MAX_UNLISTED {
            let ip = IpAddr::from(std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | i as u128));
            assert!(matches!(unlisted.record(ip), Sighting::New));
        }
        let extra: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(matches!(
            unlisted.record(extra),
            Sighting::Overflow { first: true }
        ));
        assert!(matches!(
            unlisted.record(extra),
            Sighting::Overflow { first: false }
        ));
        let clients = unlisted.clients();
        assert_eq!(clients.len(), MAX_UNLISTED);
        assert_eq!((clients[0].addr, clients[0].requests), (a, 2));
        assert_eq!(unlisted.overflow(), 2);
    }
}
