//! [`IpSet`], an immutable set of networks searched by halves, and
//! [`Allowlist`], one that can be replaced while serving.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use ipnet::IpNet;

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it
/// carries; any other address unchanged.
///
/// ```
/// use std::net::IpAddr;
/// use cmc_webhook_core::allowlist::canonical;
///
/// let mapped: IpAddr = "::ffff:203.0.113.7".parse()?;
/// assert_eq!(canonical(mapped), "203.0.113.7".parse::<IpAddr>()?);
/// let v6: IpAddr = "2001:db8::1".parse()?;
/// assert_eq!(canonical(v6), v6);
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// A set of IP networks with fast membership tests.
///
/// ```
/// use cmc_webhook_core::allowlist::IpSet;
///
/// let set: IpSet = "203.0.113.0/25, 203.0.113.128/25, 2001:db8::/32".parse()?;
/// assert!(set.contains("203.0.113.200".parse()?));
/// assert!(set.contains("::ffff:203.0.113.1".parse()?)); // mapped IPv4 matches
/// assert!(set.contains("2001:db8:1::9".parse()?));
/// assert!(!set.contains("198.51.100.1".parse()?));
/// // The two halves were merged into one network.
/// assert_eq!(set.to_string(), "203.0.113.0/24, 2001:db8::/32");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    /// Sorted, disjoint, non-adjacent inclusive ranges.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpSet {
    /// An empty set.
    pub fn new() -> IpSet {
        IpSet::default()
    }

    /// The set of the given networks.
    ///
    /// ```
    /// use cmc_webhook_core::allowlist::IpSet;
    /// let set = IpSet::from_nets(["10.0.0.0/8".parse()?, "10.1.0.0/16".parse()?]);
    /// assert_eq!(set.len(), 1);
    /// # Ok::<(), ipnet::AddrParseError>(())
    /// ```
    pub fn from_nets(nets: impl IntoIterator<Item = IpNet>) -> IpSet {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => {
                    let (start, end) = (u128::from(n.network()), u128::from(n.broadcast()));
                    // The part inside ::ffff:0:0/96 is IPv4 in disguise, and
                    // clients there are looked up as IPv4: a network that
                    // covers it (`::/0`) covers those IPv4 addresses too.
                    const MAPPED: (u128, u128) = (0xffff_0000_0000, 0xffff_ffff_ffff);
                    let (lo, hi) = (start.max(MAPPED.0), end.min(MAPPED.1));
                    if lo <= hi {
                        v4.push((lo as u32, hi as u32));
                    }
                    if !(MAPPED.0 <= start && end <= MAPPED.1) {
                        v6.push((start, end));
                    }
                }
            }
        }
        IpSet {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    /// Whether `ip` is in the set; an IPv4-mapped IPv6 address is looked up
    /// as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(v4) => find(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => find(&self.v6, u128::from(v6)),
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// The number of merged ranges.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Whether the set holds every IPv4 or every IPv6 address (an
    /// allowlist that allows everyone).
    pub fn covers_everything(&self) -> bool {
        self.open_to().is_some()
    }

    /// Which whole address family the set covers, in words for a warning:
    /// "every address", "every IPv4 address" or "every IPv6 address".
    pub(crate) fn open_to(&self) -> Option<&'static str> {
        let v4 = self.v4.first() == Some(&(0, u32::MAX));
        let v6 = self.v6.first() == Some(&(0, u128::MAX));
        match (v4, v6) {
            (true, true) => Some("every address"),
            (true, false) => Some("every IPv4 address"),
            // Every IPv6 address includes the mapped IPv4 ones: unreachable
            // through `from_nets`, kept for completeness.
            (false, true) => Some("every IPv6 address"),
            (false, false) => None,
        }
    }

    /// The set as the fewest CIDR networks.
    pub fn nets(&self) -> Vec<IpNet> {
        let mut out = Vec::new();
        for &(start, end) in &self.v4 {
            out.extend(
                ipnet::Ipv4Subnets::new(Ipv4Addr::from(start), Ipv4Addr::from(end), 0)
                    .map(IpNet::V4),
            );
        }
        for &(start, end) in &self.v6 {
            out.extend(
                ipnet::Ipv6Subnets::new(Ipv6Addr::from(start), Ipv6Addr::from(end), 0)
                    .map(IpNet::V6),
            );
        }
        out
    }

    /// The addresses of `self` that are not in `other`.
    pub(crate) fn difference(&self, other: &IpSet) -> IpSet {
        IpSet {
            v4: subtract(&self.v4, &other.v4),
            v6: subtract(&self.v6, &other.v6),
        }
    }
}

fn merge<T: Copy + Ord + num::Successor>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if last.1.successor().is_none_or(|next| start <= next) => {
                last.1 = last.1.max(end);
            }
            _ => out.push((start, end)),
        }
    }
    out
}

/// The parts of the ranges `a` outside the ranges `b`; both sorted,
/// disjoint and non-adjacent, as the result is.
fn subtract<T: Copy + Ord + num::Successor>(a: &[(T, T)], b: &[(T, T)]) -> Vec<(T, T)> {
    let mut out = Vec::new();
    // The first range of `b` that may overlap the current range of `a`:
    // ranges of `b` ending before it end before every later one too.
    let mut first = 0;
    for &(start, end) in a {
        while first < b.len() && b[first].1 < start {
            first += 1;
        }
        // The first address of the range not yet handled, if any is left.
        let mut at = Some(start);
        for &(cut_start, cut_end) in b[first..].iter().take_while(|&&(s, _)| s <= end) {
            let Some(from) = at else { break };
            if from < cut_start
                && let Some(before) = cut_start.predecessor()
            {
                out.push((from, before));
            }
            // A cut ending at or past `end` leaves nothing; otherwise the
            // rest starts after it (later cuts start further on).
            at = if cut_end < end {
                cut_end.successor().map(|next| next.max(from))
            } else {
                None
            };
        }
        if let Some(from) = at {
            out.push((from, end));
        }
    }
    out
}

fn find<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    // The first range that starts after x; the one before it may hold x.
    let i = ranges.partition_point(|&(start, _)| start <= x);
    i > 0 && x <= ranges[i - 1].1
}

mod num {
    pub trait Successor: Sized {
        fn successor(self) -> Option<Self>;
        fn predecessor(self) -> Option<Self>;
    }
    impl Successor for u32 {
        fn successor(self) -> Option<u32> {
            self.checked_add(1)
        }
        fn predecessor(self) -> Option<u32> {
            self.checked_sub(1)
        }
    }
    impl Successor for u128 {
        fn successor(self) -> Option<u128> {
            self.checked_add(1)
        }
        fn predecessor(self) -> Option<u128> {
            self.checked_sub(1)
        }
    }
}

impl FromIterator<IpNet> for IpSet {
    fn from_iter<I: IntoIterator<Item = IpNet>>(iter: I) -> Self {
        IpSet::from_nets(iter)
    }
}

/// A CIDR list could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSetParseError {
    item: String,
    /// The network meant, when the item is a CIDR with host bits set.
    network: Option<IpNet>,
}

impl IpSetParseError {
    /// For a CIDR with bits set after its prefix (refused in allowlist
    /// files), the network it would be.
    pub fn network(&self) -> Option<IpNet> {
        self.network
    }
}

impl fmt::Display for IpSetParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.network {
            Some(network) => write!(
                f,
                "`{}` has bits set after its prefix (a line cut off while it was written, or a typo): \
                 write the network, {network}",
                self.item
            ),
            None => write!(
                f,
                "`{}` is not an IP network: write CIDRs like 203.0.113.0/24 or 2001:db8::/32, or single addresses",
                self.item
            ),
        }
    }
}

impl std::error::Error for IpSetParseError {}

/// Reads one network strictly: as [`parse_net`], but a CIDR with bits set
/// after its prefix (`10.0.0.1/8`, or `203.0.113.0/2` cut from
/// `203.0.113.0/24` while a file was written) is refused rather than
/// widened to its network.
pub(crate) fn parse_net_strict(item: &str) -> Result<IpNet, IpSetParseError> {
    let net = parse_net(item)?;
    if net.trunc() != net {
        return Err(IpSetParseError {
            item: crate::text::printable(item.trim(), 64),
            network: Some(net.trunc()),
        });
    }
    Ok(net)
}

/// Reads one network: a CIDR, or a single address (as /32 or /128).
pub(crate) fn parse_net(item: &str) -> Result<IpNet, IpSetParseError> {
    let item = item.trim();
    item.parse::<IpNet>()
        .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| IpSetParseError {
            network: None,
            item: item.to_owned(),
        })
}

/// Reads a comma- or whitespace-separated list of CIDRs or single addresses
/// (the form an environment variable holds).
impl FromStr for IpSet {
    type Err = IpSetParseError;

    fn from_str(s: &str) -> Result<IpSet, IpSetParseError> {
        s.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|item| !item.is_empty())
            .map(parse_net)
            .collect()
    }
}

impl fmt::Display for IpSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.nets().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// The most networks of a set that one log line shows; the others are
/// counted (an allowlist file may hold tens of thousands).
pub(crate) const LOG_SAMPLE: usize = 8;

impl IpSet {
    /// The set for a log line: its first [`LOG_SAMPLE`] networks, then
    /// how many more there are.
    pub(crate) fn sample(&self) -> Sample<'_> {
        Sample(self)
    }
}

/// An [`IpSet`] shown in a log line: a bounded sample and a count.
pub(crate) struct Sample<'a>(&'a IpSet);

impl fmt::Display for Sample<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nets = self.0.nets();
        for (i, net) in nets.iter().take(LOG_SAMPLE).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        if nets.len() > LOG_SAMPLE {
            write!(f, ", and {} more", nets.len() - LOG_SAMPLE)?;
        }
        Ok(())
    }
}

impl fmt::Debug for IpSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpSet[{self}]")
    }
}

/// The addresses allowed to call the endpoint; cheap to read on every
/// request, and replaceable while serving.
///
/// Clones share the same list: replace it through any clone (for example
/// one kept by an admin endpoint or a configuration reloader) and every
/// service built from the layer sees the new list on its next request.
///
/// ```
/// use cmc_webhook_core::allowlist::{Allowlist, IpSet};
///
/// let list = Allowlist::new("203.0.113.0/24".parse::<IpSet>()?);
/// let admin = list.clone();
/// assert!(!list.contains("198.51.100.9".parse()?));
/// admin.replace("203.0.113.0/24, 198.51.100.0/24".parse()?);
/// assert!(list.contains("198.51.100.9".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Allowlist {
    current: Arc<ArcSwap<IpSet>>,
}

impl Allowlist {
    /// An allowlist holding `set`.
    pub fn new(set: IpSet) -> Allowlist {
        Allowlist {
            current: Arc::new(ArcSwap::from_pointee(set)),
        }
    }

    /// Whether `ip` is allowed now.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.current.load().contains(ip)
    }

    /// The list in force now.
    pub fn get(&self) -> Arc<IpSet> {
        self.current.load_full()
    }

    /// Replaces the list; requests already being checked finish with the
    /// old one. An empty set refuses everyone.
    pub fn replace(&self, set: IpSet) {
        if let Some(everyone) = set.open_to() {
            tracing::warn!(allow = %set.sample(), "the new allowlist allows {everyone}");
        }
        tracing::info!(allow = %set.sample(), "allowlist replaced");
        self.current.store(Arc::new(set));
    }

    /// Replaces the list, warning (only) when it allows a whole address
    /// family: for callers that log the change themselves.
    pub(crate) fn store(&self, set: Arc<IpSet>) {
        if let Some(everyone) = set.open_to() {
            tracing::warn!(allow = %set.sample(), "the new allowlist allows {everyone}");
        }
        self.current.store(set);
    }
}

impl fmt::Debug for Allowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Allowlist")
            .field(&*self.current.load())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> IpSet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_are_normalised_and_merged() {
        assert_eq!(set("10.0.0.7/8").to_string(), "10.0.0.0/8");
        assert_eq!(set("10.0.0.0/8, 10.1.0.0/16").to_string(), "10.0.0.0/8");
        assert_eq!(
            set("192.0.2.0/25, 192.0.2.128/25").to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(set("192.0.2.0/26, 192.0.2.128/26").len(), 2);
        assert_eq!(
            set("192.0.2.1 192.0.2.2\n192.0.2.3").to_string(),
            "192.0.2.1/32, 192.0.2.2/31"
        );
        assert_eq!(set("::ffff:192.0.2.0/120").to_string(), "192.0.2.0/24");
        assert_eq!(
            set("0.0.0.0/0, 255.255.255.255/32").to_string(),
            "0.0.0.0/0"
        );
        assert_eq!(set("").len(), 0);
    }

    #[test]
    fn ipv6_networks_covering_mapped_addresses_cover_ipv4() {
        // `--allow ::/0` on a `[::]` listener: IPv4 clients arrive mapped
        // and are looked up as IPv4; `::/0` includes them.
        let all6 = set("::/0");
        assert!(all6.contains(ip("::ffff:203.0.113.7")));
        assert!(all6.contains(ip("203.0.113.7")));
        assert!(all6.contains(ip("2001:db8::1")));
        assert!(all6.covers_everything());
        assert_eq!(all6.open_to(), Some("every address"));
        assert_eq!(set("0.0.0.0/0").open_to(), Some("every IPv4 address"));
        assert_eq!(set("2000::/3").open_to(), None);
        assert_eq!(all6.to_string(), "0.0.0.0/0, ::/0");
        // A public-IPv6-only network does not.
        let public6 = set("2000::/3");
        assert!(!public6.contains(ip("::ffff:203.0.113.7")));
        assert!(!public6.contains(ip("203.0.113.7")));
        // A network straddling the edge of the mapped range takes its part.
        let edge = set("::ffff:ffff:0/95");
        assert!(edge.contains(ip("255.255.0.1")));
        assert!(edge.contains(ip("::fffe:0:1")));
        assert!(!edge.contains(ip("::1:0:0:0")));
    }

    #[test]
    fn membership_at_the_edges() {
        let s = set("192.0.2.16/28, 2001:db8::/127");
        assert!(!s.contains(ip("192.0.2.15")));
        assert!(s.contains(ip("192.0.2.16")));
        assert!(s.contains(ip("192.0.2.31")));
        assert!(!s.contains(ip("192.0.2.32")));
        assert!(s.contains(ip("2001:db8::1")));
        assert!(!s.contains(ip("2001:db8::2")));
        assert!(!s.contains(ip("::ffff:192.0.2.15")));
        assert!(s.contains(ip("::ffff:192.0.2.20")));
        assert!(!IpSet::new().contains(ip("192.0.2.16")));
    }

    #[test]
    fn everything_is_recognised() {
        assert!(set("0.0.0.0/0").covers_everything());
        assert!(set("::/0").covers_everything());
        assert!(!set("0.0.0.0/1").covers_everything());
        // ::/0 includes the mapped range, so mapped IPv4 peers match it too.
        assert!(set("::/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn bad_items_are_named() {
        let e = "10.0.0.0/8, nonsense".parse::<IpSet>().unwrap_err();
        assert!(
            e.to_string().starts_with("`nonsense` is not an IP network"),
            "{e}"
        );
        assert!("10.0.0.0/33".parse::<IpSet>().is_err());
    }

    #[test]
    fn difference_at_the_edges() {
        let d = |a: &str, b: &str| set(a).difference(&set(b)).to_string();
        assert_eq!(d("10.0.0.0/8", "10.0.0.0/8"), "");
        assert_eq!(d("10.0.0.0/8", "0.0.0.0/0"), "");
        assert_eq!(d("10.0.0.0/8", ""), "10.0.0.0/8");
        assert_eq!(d("", "10.0.0.0/8"), "");
        assert_eq!(d("10.0.0.0/31", "10.0.0.0/32"), "10.0.0.1/32");
        assert_eq!(d("10.0.0.0/31", "10.0.0.1/32"), "10.0.0.0/32");
        assert_eq!(
            d("192.0.2.0/24", "192.0.2.64/26"),
            "192.0.2.0/26, 192.0.2.128/25"
        );
        assert_eq!(
            d(
                "192.0.2.0/24, 198.51.100.0/24",
                "192.0.2.128/25, 198.51.100.0/25"
            ),
            "192.0.2.0/25, 198.51.100.128/25"
        );
        assert_eq!(d("0.0.0.0/0", "0.0.0.0/1"), "128.0.0.0/1");
        assert_eq!(d("0.0.0.0/0", "128.0.0.0/1"), "0.0.0.0/1");
        assert_eq!(d("::/0", "::/0"), "");
        assert_eq!(d("2001:db8::/32, 192.0.2.1", "192.0.2.1"), "2001:db8::/32");
        assert_eq!(d("::/0", "0.0.0.0/0, 8000::/1"), "::/1");
    }

    #[test]
    fn difference_agrees_with_membership_for_random_networks() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let random_set = |next: &mut dyn FnMut() -> u64| {
            let nets: Vec<IpNet> = (0..(next() % 12))
                .map(|_| {
                    let addr = Ipv4Addr::from((next() as u32) & 0xC0A8_00FF);
                    IpNet::V4(
                        ipnet::Ipv4Net::new(addr, 24 + (next() % 9) as u8)
                            .unwrap()
                            .trunc(),
                    )
                })
                .collect();
            IpSet::from_nets(nets)
        };
        for _ in 0..300 {
            let a = random_set(&mut next);
            let b = random_set(&mut next);
            let d = a.difference(&b);
            assert_eq!(d, IpSet::from_nets(d.nets()), "{a} - {b} is normalised");
            for last in 0..=255u32 {
                let probe = IpAddr::V4(Ipv4Addr::from(0xC0A8_0000 | last));
                assert_eq!(
                    d.contains(probe),
                    a.contains(probe) && !b.contains(probe),
                    "{probe} in {a} - {b} = {d}"
                );
            }
        }
    }

    #[test]
    fn membership_agrees_with_ipnet_for_random_networks() {
        // A small deterministic generator: no dependency for the test.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200 {
            let nets: Vec<IpNet> = (0..(next() % 20))
                .map(|_| {
                    let addr = Ipv4Addr::from((next() as u32) & 0xC0A8_FFFF);
                    IpNet::V4(
                        ipnet::Ipv4Net::new(addr, 16 + (next() % 17) as u8)
                            .unwrap()
                            .trunc(),
                    )
                })
                .collect();
            let s = IpSet::from_nets(nets.clone());
            for _ in 0..50 {
                let probe = IpAddr::V4(Ipv4Addr::from((next() as u32) & 0xC0A8_FFFF));
                assert_eq!(
                    s.contains(probe),
                    nets.iter().any(|n| n.contains(&probe)),
                    "{probe} in {nets:?}"
                );
            }
        }
    }
}
