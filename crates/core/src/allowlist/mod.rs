//! Sets of IP networks: who may call the endpoint, and which peers are
//! trusted proxies.
//!
//! An [`IpSet`] is built once from CIDRs (via [`ipnet`]): each network is
//! normalised to its range, IPv4-mapped IPv6 networks (`::ffff:a.b.c.d/n`)
//! become IPv4 networks, and overlapping or adjacent ranges are merged.
//! An IPv4-mapped client *is* an IPv4 client, so an IPv6 network that
//! includes part of `::ffff:0:0/96` includes those IPv4 addresses: `::/0`
//! allows every IPv4 client as well, on a dual-stack listener or not
//! (list `2000::/3` for "every public IPv6 address only"). A
//! look-up is a binary search over the merged ranges, so a thousand CIDRs
//! cost about as much as ten.
//!
//! Addresses are matched the way a dual-stack listener needs: an IPv4 client
//! that a `[::]` socket reports as `::ffff:203.0.113.7` matches
//! `203.0.113.0/24` (plain `ipnet` would say it does not).
//!
//! [`Allowlist`] is an [`IpSet`] that can be replaced while serving, for
//! operators who learn a new CMC sender address from the refusal log.
//! [`AllowlistFile`] keeps one in step with a file: read at start, read
//! again when the file changes ([`AllowlistFile::watch`]) or when asked
//! ([`AllowlistFile::reload`], for example on `SIGHUP`).

mod file;
mod set;

pub use file::{AllowlistFile, AllowlistFileError, Reload, WatchHandle};
pub(crate) use set::parse_net;
pub use set::{Allowlist, IpSet, IpSetParseError, canonical};
