//! Property tests of the forwarding-header walk.

use std::net::{IpAddr, Ipv4Addr};

use cmc_webhook::allowlist::IpSet;
use cmc_webhook::client_ip::{client_ip, ForwardedHeader};
use http::HeaderMap;
use proptest::prelude::*;

/// Trusted proxies live in 10.0.0.0/8; everything else is untrusted.
fn trusted() -> IpSet {
    "10.0.0.0/8".parse().unwrap()
}

fn proxy() -> impl Strategy<Value = IpAddr> {
    any::<[u8; 3]>().prop_map(|[a, b, c]| IpAddr::V4(Ipv4Addr::new(10, a, b, c)))
}

fn outsider() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>()
            .prop_filter("not 10/8", |o| o[0] != 10)
            .prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<u128>()
            .prop_filter("not mapped", |v| v >> 32 != 0xffff)
            .prop_map(|v| IpAddr::V6(v.into())),
    ]
}

fn hop() -> impl Strategy<Value = IpAddr> {
    prop_oneof![proxy(), outsider()]
}

fn render(ip: IpAddr, style: u8) -> String {
    match (ip, style % 3) {
        (IpAddr::V6(v6), 1) => format!("[{v6}]"),
        (IpAddr::V6(v6), 2) => format!("[{v6}]:4711"),
        (IpAddr::V4(v4), 2) => format!("{v4}:4711"),
        (ip, _) => ip.to_string(),
    }
}

/// The chain split over `lines` header lines.
fn headers(chain: &[(IpAddr, u8)], lines: usize, forwarded: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    let name = if forwarded {
        "forwarded"
    } else {
        "x-forwarded-for"
    };
    let per_line = chain.len().div_ceil(lines.max(1)).max(1);
    for part in chain.chunks(per_line) {
        let line = part
            .iter()
            .map(|&(ip, style)| {
                let node = render(ip, style);
                if forwarded {
                    if node.contains(':') {
                        format!("for=\"{node}\";proto=https")
                    } else {
                        format!("for={node}")
                    }
                } else {
                    node
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        h.append(name, line.parse().unwrap());
    }
    h
}

fn expected(peer: IpAddr, chain: &[(IpAddr, u8)], set: &IpSet) -> IpAddr {
    if !set.contains(peer) {
        return peer;
    }
    chain
        .iter()
        .rev()
        .find(|(ip, _)| !set.contains(*ip))
        .or(chain.first())
        .map_or(peer, |(ip, _)| *ip)
}

proptest! {
    #[test]
    fn the_client_is_the_rightmost_untrusted_hop(
        peer in hop(),
        chain in prop::collection::vec((hop(), any::<u8>()), 0..8),
        lines in 1usize..4,
        forwarded in any::<bool>(),
    ) {
        let set = trusted();
        let header = if forwarded { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor };
        let got = client_ip(peer, &headers(&chain, lines, forwarded), &set, header).unwrap();
        prop_assert_eq!(got, expected(peer, &chain, &set));
    }

    #[test]
    fn entries_left_of_the_client_never_matter(
        proxies in prop::collection::vec(proxy(), 1..4),
        client in outsider(),
        spoof in prop::collection::vec((hop(), any::<u8>()), 0..6),
        garbage in "[a-z_]{1,8}",
    ) {
        let set = trusted();
        let mut chain = spoof.clone();
        chain.push((client, 0));
        chain.extend(proxies[1..].iter().map(|&p| (p, 0)));
        let got = client_ip(proxies[0], &headers(&chain, 1, false), &set, ForwardedHeader::XForwardedFor).unwrap();
        prop_assert_eq!(got, client);
        // Not even unreadable ones.
        let mut h = headers(&chain, 1, false);
        let line = format!("{garbage}, {}", h.get("x-forwarded-for").unwrap().to_str().unwrap());
        h.insert("x-forwarded-for", line.parse().unwrap());
        prop_assert_eq!(client_ip(proxies[0], &h, &set, ForwardedHeader::XForwardedFor).unwrap(), client);
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends(peer in outsider(), chain in prop::collection::vec((hop(), any::<u8>()), 0..8)) {
        let got = client_ip(peer, &headers(&chain, 2, false), &trusted(), ForwardedHeader::XForwardedFor).unwrap();
        prop_assert_eq!(got, peer);
    }

    #[test]
    fn arbitrary_header_text_never_panics(value in "[ -~]{0,200}", forwarded in any::<bool>()) {
        let mut h = HeaderMap::new();
        let name = if forwarded { "forwarded" } else { "x-forwarded-for" };
        if let Ok(v) = value.parse() {
            h.insert(name, v);
        }
        let header = if forwarded { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor };
        let _ = client_ip("10.0.0.1".parse().unwrap(), &h, &trusted(), header);
    }
}
