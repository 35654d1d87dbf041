//! Who is calling: the client address, from the connection's peer address
//! and, behind trusted proxies, the forwarding headers.
//!
//! The rules, each a known trap of client-address filters:
//!
//! - Forwarding headers are read **only** when the peer is a trusted proxy;
//!   from anyone else they are ignored, since anyone can send them.
//! - The header is walked **from the right**: each trusted proxy appends the
//!   address it received the request from, so the rightmost entries are the
//!   ones your own proxies wrote. Trusted hops are skipped; the first
//!   untrusted hop is the client. The leftmost entry is whatever the client
//!   chose to send and is never believed on its own.
//! - Several header lines count as one list, in order.
//! - A hop that is not an address (`unknown`, an obfuscated `_hidden`
//!   identifier, garbage) ends the walk with an error: the request is
//!   refused rather than attributed to a guess.
//! - A trusted proxy that sends no header is itself the client; if every
//!   hop is trusted, the leftmost one is.
//! - IPv4-mapped IPv6 addresses are read as IPv4.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

use crate::allowlist::{canonical, IpSet};

/// The client address the [`WebhookLayer`](crate::WebhookLayer) resolved,
/// in the extensions of every request it admits.
///
/// With axum, take it as `Extension(ClientIp(ip)): Extension<ClientIp>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// The header a trusted proxy writes the client address to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default; what most
    /// load balancers write).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name.
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

/// A forwarding header could not be walked to a client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedError {
    header: ForwardedHeader,
    hop: String,
}

impl ForwardedError {
    /// The entry that is not an address, as sent (cut to 64 characters).
    pub fn hop(&self) -> &str {
        &self.hop
    }
}

impl fmt::Display for ForwardedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the {} header has an entry that is not an IP address: `{}`",
            self.header.name(),
            self.hop
        )
    }
}

impl std::error::Error for ForwardedError {}

/// The client address of a request whose connection came from `peer`.
///
/// ```
/// use http::HeaderMap;
/// use cmc_webhook::allowlist::IpSet;
/// use cmc_webhook::client_ip::{client_ip, ForwardedHeader};
///
/// let proxies: IpSet = "10.0.0.0/8".parse()?;
/// let mut headers = HeaderMap::new();
/// // The client claims to be 198.51.100.1; our two proxies saw 203.0.113.9.
/// headers.insert("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.0.0.2".parse()?);
///
/// let via_proxy = client_ip("10.0.0.1".parse()?, &headers, &proxies, ForwardedHeader::XForwardedFor)?;
/// assert_eq!(via_proxy, "203.0.113.9".parse::<std::net::IpAddr>()?);
///
/// // The same header from a peer that is not a trusted proxy is ignored.
/// let direct = client_ip("192.0.2.50".parse()?, &headers, &proxies, ForwardedHeader::XForwardedFor)?;
/// assert_eq!(direct, "192.0.2.50".parse::<std::net::IpAddr>()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted_proxies: &IpSet,
    header: ForwardedHeader,
) -> Result<IpAddr, ForwardedError> {
    let peer = canonical(peer);
    if !trusted_proxies.contains(peer) {
        return Ok(peer);
    }
    let mut client = peer;
    // Header lines from last to first, entries in each from right to left.
    for line in headers.get_all(header.name()).iter().rev() {
        let Ok(line) = line.to_str() else {
            return Err(error(header, &String::from_utf8_lossy(line.as_bytes())));
        };
        for entry in line.rsplit(',') {
            let hop = match header {
                ForwardedHeader::XForwardedFor => parse_hop(entry.trim()),
                ForwardedHeader::Forwarded => match forwarded_for(entry) {
                    Some(Ok(node)) => parse_hop(node),
                    Some(Err(())) => None,
                    None => continue, // an element without `for=` names no hop
                },
            };
            let hop = canonical(hop.ok_or_else(|| error(header, entry.trim()))?);
            client = hop;
            if !trusted_proxies.contains(hop) {
                return Ok(hop);
            }
        }
    }
    Ok(client)
}

fn error(header: ForwardedHeader, hop: &str) -> ForwardedError {
    ForwardedError {
        header,
        hop: hop.chars().take(64).collect(),
    }
}

/// An address, `address:port`, `[v6]` or `[v6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = hop.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    hop.strip_prefix('[')?
        .strip_suffix(']')?
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// The `for=` node of one `Forwarded` element (`for=a;proto=https;by=b`):
/// `None` when the element has no `for`, `Err` when it is unreadable.
fn forwarded_for(element: &str) -> Option<Result<&str, ()>> {
    for pair in element.split(';') {
        let Some((name, value)) = pair.split_once('=') else {
            if pair.trim().is_empty() {
                continue;
            }
            return Some(Err(()));
        };
        if name.trim().eq_ignore_ascii_case("for") {
            let value = value.trim();
            let value = match value.strip_prefix('"') {
                Some(quoted) => match quoted.strip_suffix('"') {
                    Some(inner) => inner,
                    None => return Some(Err(())),
                },
                None => value,
            };
            return Some(Ok(value));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                line.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(peer: &str, trusted: &str, lines: &[&str]) -> Result<IpAddr, ForwardedError> {
        client_ip(
            ip(peer),
            &headers("x-forwarded-for", lines),
            &trusted.parse().unwrap(),
            ForwardedHeader::XForwardedFor,
        )
    }

    fn fwd(peer: &str, trusted: &str, lines: &[&str]) -> Result<IpAddr, ForwardedError> {
        client_ip(
            ip(peer),
            &headers("forwarded", lines),
            &trusted.parse().unwrap(),
            ForwardedHeader::Forwarded,
        )
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        assert_eq!(
            xff("192.0.2.1", "10.0.0.0/8", &["203.0.113.5"]).unwrap(),
            ip("192.0.2.1")
        );
        assert_eq!(xff("192.0.2.1", "", &["garbage"]).unwrap(), ip("192.0.2.1"));
    }

    #[test]
    fn leftmost_entry_is_not_believed() {
        assert_eq!(
            xff("10.0.0.1", "10.0.0.0/8", &["6.6.6.6, 203.0.113.5"]).unwrap(),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn several_trusted_hops_are_skipped() {
        assert_eq!(
            xff(
                "10.0.0.1",
                "10.0.0.0/8, 172.16.0.0/12",
                &["6.6.6.6, 203.0.113.5, 172.16.0.9, 10.2.2.2"]
            )
            .unwrap(),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn several_lines_are_one_list_in_order() {
        assert_eq!(
            xff(
                "10.0.0.1",
                "10.0.0.0/8",
                &["6.6.6.6", "203.0.113.5, 10.1.1.1"]
            )
            .unwrap(),
            ip("203.0.113.5")
        );
        assert_eq!(
            xff("10.0.0.1", "10.0.0.0/8", &["203.0.113.5", "10.1.1.1"]).unwrap(),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn trusted_proxy_without_header_is_the_client() {
        assert_eq!(xff("10.0.0.1", "10.0.0.0/8", &[]).unwrap(), ip("10.0.0.1"));
    }

    #[test]
    fn all_hops_trusted_gives_the_leftmost() {
        assert_eq!(
            xff("10.0.0.1", "10.0.0.0/8", &["10.9.9.9, 10.8.8.8"]).unwrap(),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn malformed_hops_end_the_walk_with_an_error() {
        for bad in ["unknown", "", "_hidden", "1.2.3", "203.0.113.5 extra"] {
            let e = xff("10.0.0.1", "10.0.0.0/8", &[&format!("203.0.113.5, {bad}")]).unwrap_err();
            assert_eq!(e.hop(), bad.trim());
            assert!(e.to_string().contains("x-forwarded-for"), "{e}");
        }
        // A bad hop left of the client is never reached.
        assert_eq!(
            xff("10.0.0.1", "10.0.0.0/8", &["unknown, 203.0.113.5"]).unwrap(),
            ip("203.0.113.5")
        );
    }

    #[test]
    fn ports_brackets_and_mapped_addresses() {
        assert_eq!(
            xff("10.0.0.1", "10.0.0.0/8", &["203.0.113.5:4711"]).unwrap(),
            ip("203.0.113.5")
        );
        assert_eq!(
            xff("10.0.0.1", "10.0.0.0/8", &["[2001:db8::1]:4711"]).unwrap(),
            ip("2001:db8::1")
        );
        assert_eq!(
            xff("10.0.0.1", "10.0.0.0/8", &["[2001:db8::1]"]).unwrap(),
            ip("2001:db8::1")
        );
        assert_eq!(
            xff("10.0.0.1", "10.0.0.0/8", &["::ffff:203.0.113.5"]).unwrap(),
            ip("203.0.113.5")
        );
        assert_eq!(
            xff(
                "::ffff:10.0.0.1",
                "10.0.0.0/8",
                &["203.0.113.5, ::ffff:10.1.1.1"]
            )
            .unwrap(),
            ip("203.0.113.5")
        );
        assert_eq!(
            xff("::ffff:192.0.2.1", "10.0.0.0/8", &["203.0.113.5"]).unwrap(),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn rfc7239_forwarded() {
        assert_eq!(
            fwd(
                "10.0.0.1",
                "10.0.0.0/8",
                &["for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.3;by=10.0.0.1"]
            )
            .unwrap(),
            ip("2001:db8::7")
        );
        assert_eq!(
            fwd("10.0.0.1", "10.0.0.0/8", &["For=203.0.113.5"]).unwrap(),
            ip("203.0.113.5")
        );
        assert_eq!(
            fwd("10.0.0.1", "10.0.0.0/8", &["proto=https"]).unwrap(),
            ip("10.0.0.1")
        );
        assert_eq!(
            fwd("10.0.0.1", "10.0.0.0/8", &["for=_hidden"])
                .unwrap_err()
                .hop(),
            "for=_hidden"
        );
        assert_eq!(
            fwd("10.0.0.1", "10.0.0.0/8", &["for=unknown"])
                .unwrap_err()
                .hop(),
            "for=unknown"
        );
        assert!(fwd("10.0.0.1", "10.0.0.0/8", &["for=\"[2001:db8::7]"]).is_err());
        // X-Forwarded-For is ignored when Forwarded is configured.
        let mut h = headers("x-forwarded-for", &["203.0.113.5"]);
        h.append("forwarded", "for=198.51.100.2".parse().unwrap());
        let got = client_ip(
            ip("10.0.0.1"),
            &h,
            &"10.0.0.0/8".parse().unwrap(),
            ForwardedHeader::Forwarded,
        );
        assert_eq!(got.unwrap(), ip("198.51.100.2"));
    }
}
