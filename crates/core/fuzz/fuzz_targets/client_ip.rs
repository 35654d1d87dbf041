//! The client-address walk over arbitrary peers, trusted sets and
//! forwarding headers: never a panic, and the answer is always the peer or
//! one of the header's hops.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use cmc_webhook_core::allowlist::{canonical, IpSet};
use cmc_webhook_core::client_ip::{client_ip, ForwardedHeader};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
    Mapped([u8; 4]),
}

impl Addr {
    fn ip(&self) -> IpAddr {
        match self {
            Addr::V4(o) => IpAddr::V4(Ipv4Addr::from(*o)),
            Addr::V6(o) => IpAddr::V6(Ipv6Addr::from(*o)),
            Addr::Mapped(o) => IpAddr::V6(Ipv4Addr::from(*o).to_ipv6_mapped()),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Hop {
    Addr(Addr, u8),
    Text(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    peer: Addr,
    trusted: Vec<(Addr, u8)>,
    lines: Vec<Vec<Hop>>,
    forwarded: bool,
}

fn render(hop: &Hop, forwarded: bool) -> String {
    let node = match hop {
        Hop::Addr(a, style) => match (a.ip(), style % 3) {
            (IpAddr::V6(v6), 1) => format!("[{v6}]"),
            (IpAddr::V6(v6), 2) => format!("[{v6}]:{style}"),
            (ip, _) => ip.to_string(),
        },
        Hop::Text(t) => t.clone(),
    };
    if forwarded { format!("for=\"{node}\"") } else { node }
}

fuzz_target!(|input: Input| {
    let trusted: IpSet = input
        .trusted
        .iter()
        .filter_map(|(a, prefix)| ipnet::IpNet::new(a.ip(), prefix % 129).ok())
        .collect();
    let header = if input.forwarded { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor };
    let mut headers = http::HeaderMap::new();
    let mut hops = Vec::new();
    for line in &input.lines {
        let text = line.iter().map(|h| render(h, input.forwarded)).collect::<Vec<_>>().join(", ");
        if let Ok(value) = http::HeaderValue::from_str(&text) {
            headers.append(header.name(), value);
            hops.extend(line.iter().filter_map(|h| match h {
                Hop::Addr(a, _) => Some(canonical(a.ip())),
                Hop::Text(t) => t.trim().trim_matches(|c| c == '[' || c == ']').parse().ok().map(canonical),
            }));
        }
    }
    let peer = input.peer.ip();
    if let Ok(client) = client_ip(peer, &headers, &trusted, header) {
        assert!(client == canonical(peer) || hops.contains(&client) || !trusted.contains(peer), "{client}");
        if !trusted.contains(peer) {
            assert_eq!(client, canonical(peer));
        }
    } else {
        assert!(trusted.contains(peer), "an untrusted peer's headers are never read");
    }
});
