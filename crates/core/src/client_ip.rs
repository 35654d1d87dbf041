//! Who is calling: the client address, from the connection's peer address
//! and, behind trusted proxies, the header the proxy writes it to.
//!
//! Where the address comes from is a [`ClientIpSource`]: the peer itself,
//! a list header walked from the right (`X-Forwarded-For`, `Forwarded`), or
//! a single-value header that one platform writes (`X-Real-IP`,
//! `CF-Connecting-IP`, `True-Client-IP`, `Fly-Client-IP`,
//! `CloudFront-Viewer-Address`).
//!
//! The rules of the list headers, each a known trap of client-address
//! filters:
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
//! - RFC 7239 `Forwarded` is read by its grammar (quoted values may hold
//!   `,` and `;`). An element without `for=` reached in the walk ends it
//!   with an error too: a trusted proxy wrote it without naming its
//!   client, and skipping it would believe the element to its left, which
//!   the client may have written. The request is refused rather than
//!   attributed to the proxy, which would be a guess as well.
//! - Entries quoted in errors and logs have control and bidirectional
//!   formatting characters escaped.
//! - IPv4-mapped IPv6 addresses are read as IPv4.
//!
//! The rules of the single-value headers:
//!
//! - Like the list headers, they are read **only** when the peer is a
//!   trusted proxy. From any other peer the header is ignored and the peer
//!   is the client: a request that reaches the server without the platform
//!   in between is checked by the address it really comes from, which is
//!   what the allowlist means, and a header its sender wrote decides
//!   nothing.
//! - The platform overwrites the header with the address it saw; so, from
//!   a trusted proxy, its value **is** the client (it is not walked
//!   further, whatever it names).
//! - From a trusted proxy, the header must be there exactly once, and be
//!   one address: a missing header (the platform is not set to send it), a
//!   second line (someone besides the platform wrote one), an empty value,
//!   a list, garbage, or a port where the platform writes none refuse the
//!   request (400, [`Reason::BadForwardedHeader`]) rather than guess.
//! - `CloudFront-Viewer-Address` is `address:port`: `198.51.100.10:46532`,
//!   or for IPv6 the address unbracketed followed by `:port`
//!   (`2001:db8::1:46532`, the last `:` separates the port), or
//!   `[2001:db8::1]:46532`. The port is required (1 to 5 digits, at most
//!   65535) and dropped.
//!
//! [`Reason::BadForwardedHeader`]: crate::Reason::BadForwardedHeader

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

use crate::allowlist::{IpSet, canonical};
use crate::work;

/// The client address the [`WebhookLayer`](crate::WebhookLayer) resolved,
/// in the extensions of every request it admits.
///
/// With axum (feature `axum`), it is an extractor: behind the layer, the
/// address the layer checked (the forwarding header walked through trusted
/// proxies); without it, the connection's peer from `ConnectInfo`. A
/// request with neither is refused with 500 ([`Reason::NoPeerAddress`]).
///
/// Any service behind the layer finds it in the request's extensions (an
/// axum handler takes `ClientIp(client): ClientIp` as an argument instead):
///
/// ```
/// use cmc_webhook_core::client_ip::ClientIp;
/// use http::Request;
///
/// fn client_of<B>(request: &Request<B>) -> Option<ClientIp> {
///     request.extensions().get::<ClientIp>().copied()
/// }
///
/// // What the layer inserts into a request it admits:
/// let mut request = Request::new(());
/// request.extensions_mut().insert(ClientIp("203.0.113.7".parse()?));
/// assert_eq!(client_of(&request).map(|c| c.to_string()).as_deref(), Some("203.0.113.7"));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
///
/// [`Reason::NoPeerAddress`]: crate::Reason::NoPeerAddress
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The list header a trusted proxy writes the client address to: the two
/// [`ClientIpSource`]s that [`client_ip`] and the builder's (deprecated)
/// `forwarded_header` take. [`ClientIpSource`] has every source.
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

impl std::str::FromStr for ForwardedHeader {
    type Err = UnknownForwardedHeader;

    /// `x-forwarded-for` or `forwarded`, in any letter case.
    ///
    /// ```
    /// use cmc_webhook_core::client_ip::ForwardedHeader;
    ///
    /// assert_eq!("Forwarded".parse(), Ok(ForwardedHeader::Forwarded));
    /// assert_eq!("x-forwarded-for".parse(), Ok(ForwardedHeader::XForwardedFor));
    /// assert!("x-real-ip".parse::<ForwardedHeader>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("x-forwarded-for") {
            Ok(ForwardedHeader::XForwardedFor)
        } else if s.eq_ignore_ascii_case("forwarded") {
            Ok(ForwardedHeader::Forwarded)
        } else {
            Err(UnknownForwardedHeader)
        }
    }
}

impl fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A forwarding header name that is neither `x-forwarded-for` nor
/// `forwarded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownForwardedHeader;

impl fmt::Display for UnknownForwardedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the forwarding header is `x-forwarded-for` or `forwarded`")
    }
}

impl std::error::Error for UnknownForwardedHeader {}

impl ForwardedHeader {
    /// The header's name.
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

impl From<ForwardedHeader> for ClientIpSource {
    fn from(header: ForwardedHeader) -> Self {
        match header {
            ForwardedHeader::XForwardedFor => ClientIpSource::XForwardedFor,
            ForwardedHeader::Forwarded => ClientIpSource::Forwarded,
        }
    }
}

/// Where the [`WebhookLayer`](crate::WebhookLayer) reads the client
/// address from: the connection's peer, or a header that trusted proxies
/// write (see [`WebhookLayerBuilder::client_ip_source`] and the README's
/// table of which to choose behind which platform).
///
/// A header is believed only from a peer in the trusted proxy networks
/// ([`trust_proxy`]); from anyone else the peer is the client. Choose the
/// header your platform **overwrites**: a header it passes through is
/// written by the client, who then picks the address the allowlist sees.
///
/// Parsed from its name (the header's, in any letter case, or `peer`);
/// displayed as that name in lower case.
///
/// ```
/// use cmc_webhook_core::client_ip::ClientIpSource;
///
/// let source: ClientIpSource = "CF-Connecting-IP".parse()?;
/// assert_eq!(source, ClientIpSource::CfConnectingIp);
/// assert_eq!(source.to_string(), "cf-connecting-ip");
/// assert_eq!(source.header(), Some("cf-connecting-ip"));
/// assert_eq!("peer".parse::<ClientIpSource>()?.header(), None);
/// assert!("x-client-ip".parse::<ClientIpSource>().is_err());
/// # Ok::<(), cmc_webhook_core::client_ip::UnknownClientIpSource>(())
/// ```
///
/// [`WebhookLayerBuilder::client_ip_source`]: crate::WebhookLayerBuilder::client_ip_source
/// [`trust_proxy`]: crate::WebhookLayerBuilder::trust_proxy
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ClientIpSource {
    /// The connection's peer address; every header is ignored. For a
    /// server that CMC reaches with no proxy in between.
    Peer,
    /// `X-Forwarded-For`, walked from the right past the trusted proxies
    /// (the default: what most load balancers and nginx's
    /// `$proxy_add_x_forwarded_for` append to). With no trusted proxy, the
    /// peer.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded`, its `for=` nodes walked from the right past
    /// the trusted proxies.
    Forwarded,
    /// `X-Real-IP`, one address (nginx with `proxy_set_header X-Real-IP
    /// $remote_addr`).
    XRealIp,
    /// `CF-Connecting-IP`, one address (Cloudflare).
    CfConnectingIp,
    /// `True-Client-IP`, one address (Akamai; Cloudflare Enterprise).
    TrueClientIp,
    /// `Fly-Client-IP`, one address (Fly.io's proxy).
    FlyClientIp,
    /// `CloudFront-Viewer-Address`, `address:port` (Amazon CloudFront, once
    /// an origin request policy adds it).
    CloudFrontViewerAddress,
}

impl ClientIpSource {
    /// Every source, in the order of the documentation.
    pub const ALL: [ClientIpSource; 8] = [
        ClientIpSource::Peer,
        ClientIpSource::XForwardedFor,
        ClientIpSource::Forwarded,
        ClientIpSource::XRealIp,
        ClientIpSource::CfConnectingIp,
        ClientIpSource::TrueClientIp,
        ClientIpSource::FlyClientIp,
        ClientIpSource::CloudFrontViewerAddress,
    ];

    /// Its name: `peer`, or the header's name in lower case.
    pub fn name(self) -> &'static str {
        match self {
            ClientIpSource::Peer => "peer",
            ClientIpSource::XForwardedFor => "x-forwarded-for",
            ClientIpSource::Forwarded => "forwarded",
            ClientIpSource::XRealIp => "x-real-ip",
            ClientIpSource::CfConnectingIp => "cf-connecting-ip",
            ClientIpSource::TrueClientIp => "true-client-ip",
            ClientIpSource::FlyClientIp => "fly-client-ip",
            ClientIpSource::CloudFrontViewerAddress => "cloudfront-viewer-address",
        }
    }

    /// The header it reads, `None` for the peer.
    pub fn header(self) -> Option<&'static str> {
        match self {
            ClientIpSource::Peer => None,
            other => Some(other.name()),
        }
    }

    /// Whether it is a header that holds one address, which the platform
    /// overwrites (rather than a list that each proxy appends to).
    pub fn is_single_value(self) -> bool {
        !matches!(
            self,
            ClientIpSource::Peer | ClientIpSource::XForwardedFor | ClientIpSource::Forwarded
        )
    }

    /// The client address of a request whose connection came from `peer`,
    /// read from this source (see the [module](self) for the rules).
    ///
    /// ```
    /// use http::HeaderMap;
    /// use cmc_webhook_core::allowlist::IpSet;
    /// use cmc_webhook_core::client_ip::ClientIpSource;
    ///
    /// let cloudflare: IpSet = "173.245.48.0/20, 2400:cb00::/32".parse()?;
    /// let mut headers = HeaderMap::new();
    /// headers.insert("cf-connecting-ip", "2001:db8::7".parse()?);
    ///
    /// let source = ClientIpSource::CfConnectingIp;
    /// let via_cloudflare = source.client_ip("173.245.48.10".parse()?, &headers, &cloudflare)?;
    /// assert_eq!(via_cloudflare, "2001:db8::7".parse::<std::net::IpAddr>()?);
    ///
    /// // Straight to the server, past Cloudflare: the header is the sender's own.
    /// let direct = source.client_ip("192.0.2.50".parse()?, &headers, &cloudflare)?;
    /// assert_eq!(direct, "192.0.2.50".parse::<std::net::IpAddr>()?);
    ///
    /// // Written twice: refused.
    /// headers.append("cf-connecting-ip", "203.0.113.5".parse()?);
    /// assert!(source.client_ip("173.245.48.10".parse()?, &headers, &cloudflare).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_ip(
        self,
        peer: IpAddr,
        headers: &HeaderMap,
        trusted_proxies: &IpSet,
    ) -> Result<IpAddr, ForwardedError> {
        let peer = canonical(peer);
        if self == ClientIpSource::Peer || !trusted_proxies.contains(peer) {
            return Ok(peer);
        }
        match self {
            ClientIpSource::XForwardedFor | ClientIpSource::Forwarded => {
                walk(peer, headers, trusted_proxies, self)
            }
            _ => single(headers, self),
        }
    }
}

impl std::str::FromStr for ClientIpSource {
    type Err = UnknownClientIpSource;

    /// `peer` or a header's name, in any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClientIpSource::ALL
            .into_iter()
            .find(|source| source.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownClientIpSource(crate::text::printable(s, 64)))
    }
}

impl fmt::Display for ClientIpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A client address source name that is none of [`ClientIpSource`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownClientIpSource(String);

impl fmt::Display for UnknownClientIpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a client address source: one of ", self.0)?;
        for (i, source) in ClientIpSource::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(source.name())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownClientIpSource {}

/// A trusted proxy's header could not be read as a client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedError {
    source: ClientIpSource,
    hop: String,
    kind: ErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrorKind {
    /// A list entry, or the single value, is not an address.
    NotAnAddress,
    /// A single-value header missing from a trusted proxy's request.
    Missing,
    /// A single-value header sent this many times.
    Repeated(usize),
    /// A single-value header with nothing in it.
    Empty,
    /// An address with a port, where the platform writes none.
    UnexpectedPort,
    /// `CloudFront-Viewer-Address` without its port.
    MissingPort,
}

impl ForwardedError {
    /// The entry that is not an address, as sent (cut to 64 characters);
    /// empty when the header is missing, empty or repeated.
    pub fn hop(&self) -> &str {
        &self.hop
    }

    /// The source whose header it is.
    pub fn source(&self) -> ClientIpSource {
        self.source
    }
}

impl fmt::Display for ForwardedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = self.source.name();
        let hop = &self.hop;
        match self.kind {
            ErrorKind::NotAnAddress if self.source.is_single_value() => {
                write!(f, "the {header} header is not an IP address: `{hop}`")
            }
            ErrorKind::NotAnAddress => write!(
                f,
                "the {header} header has an entry that is not an IP address: `{hop}`"
            ),
            ErrorKind::Missing => write!(
                f,
                "a trusted proxy sent no {header} header: is the proxy set to send it, and is \
                 {header} the right client address source for it?"
            ),
            ErrorKind::Repeated(n) => write!(
                f,
                "the {header} header was sent {n} times: the proxy writes one, so another was \
                 written by someone else"
            ),
            ErrorKind::Empty => write!(f, "the {header} header is empty"),
            ErrorKind::UnexpectedPort => write!(
                f,
                "the {header} header has a port or brackets, which it is not written with: `{hop}`"
            ),
            ErrorKind::MissingPort => write!(
                f,
                "the {header} header has no port, which it is always written with: `{hop}`"
            ),
        }
    }
}

impl std::error::Error for ForwardedError {}

/// The client address of a request whose connection came from `peer`,
/// read from a list header: [`ClientIpSource::client_ip`] with
/// [`ClientIpSource::XForwardedFor`] or [`ClientIpSource::Forwarded`].
///
/// ```
/// use http::HeaderMap;
/// use cmc_webhook_core::allowlist::IpSet;
/// use cmc_webhook_core::client_ip::{client_ip, ForwardedHeader};
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
    ClientIpSource::from(header).client_ip(peer, headers, trusted_proxies)
}

/// Walks a list header from the right, from a trusted `peer`.
fn walk(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted_proxies: &IpSet,
    source: ClientIpSource,
) -> Result<IpAddr, ForwardedError> {
    let mut client = peer;
    // Header lines from last to first, entries in each from right to left.
    for line in headers.get_all(source.name()).iter().rev() {
        let Ok(line) = line.to_str() else {
            return Err(error(source, &String::from_utf8_lossy(line.as_bytes())));
        };
        if source == ClientIpSource::XForwardedFor {
            for entry in line.rsplit(',') {
                work::tick(entry.len() + 1);
                let hop = parse_hop(entry.trim()).ok_or_else(|| error(source, entry.trim()))?;
                client = canonical(hop);
                if !trusted_proxies.contains(client) {
                    return Ok(client);
                }
            }
        } else {
            let elements = forwarded_elements(line).map_err(|()| error(source, line))?;
            for element in elements.iter().rev() {
                // An element without `for=` was written by a trusted
                // proxy that did not say whom it received the request
                // from: the walk cannot go on, and guessing (skipping
                // it would believe whatever stands left of it) could
                // admit a forged address. Refused, like `unknown`.
                let hop = element
                    .node
                    .as_deref()
                    .and_then(parse_hop)
                    .ok_or_else(|| error(source, &line[element.span.clone()]))?;
                client = canonical(hop);
                if !trusted_proxies.contains(client) {
                    return Ok(client);
                }
            }
        }
    }
    Ok(client)
}

/// Reads a single-value header a trusted proxy wrote.
fn single(headers: &HeaderMap, source: ClientIpSource) -> Result<IpAddr, ForwardedError> {
    let refuse = |kind, hop: &str| ForwardedError {
        source,
        hop: crate::text::printable(hop, 64),
        kind,
    };
    let mut values = headers.get_all(source.name()).iter();
    let Some(value) = values.next() else {
        return Err(refuse(ErrorKind::Missing, ""));
    };
    let more = values.count();
    if more > 0 {
        return Err(refuse(ErrorKind::Repeated(more + 1), ""));
    }
    let Ok(text) = value.to_str() else {
        return Err(refuse(
            ErrorKind::NotAnAddress,
            &String::from_utf8_lossy(value.as_bytes()),
        ));
    };
    // Optional white space around a field value is not part of it.
    let text = text.trim_matches([' ', '\t']);
    work::tick(text.len() + 1);
    if text.is_empty() {
        return Err(refuse(ErrorKind::Empty, ""));
    }
    let ip = if source == ClientIpSource::CloudFrontViewerAddress {
        viewer_address(text).map_err(|kind| refuse(kind, text))?
    } else {
        match text.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) if parse_hop(text).is_some() => {
                return Err(refuse(ErrorKind::UnexpectedPort, text));
            }
            Err(_) => return Err(refuse(ErrorKind::NotAnAddress, text)),
        }
    };
    Ok(canonical(ip))
}

/// A `CloudFront-Viewer-Address` value: `198.51.100.10:46532`,
/// `2001:db8::1:46532` (IPv6 unbracketed, the port after the last `:`) or
/// `[2001:db8::1]:46532`.
fn viewer_address(text: &str) -> Result<IpAddr, ErrorKind> {
    let (address, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((address, port)) = rest.split_once("]:") else {
            let bracketed = rest.strip_suffix(']');
            return Err(
                if bracketed.is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok()) {
                    ErrorKind::MissingPort
                } else {
                    ErrorKind::NotAnAddress
                },
            );
        };
        let v6 = address
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| ErrorKind::NotAnAddress)?;
        (IpAddr::V6(v6), port)
    } else {
        let (address, port) = text.rsplit_once(':').ok_or(ErrorKind::MissingPort)?;
        let ip = address.parse::<IpAddr>().map_err(|_| {
            // `2001:db8::1` alone splits into `2001:db8:` and `1`.
            if text.parse::<IpAddr>().is_ok() {
                ErrorKind::MissingPort
            } else {
                ErrorKind::NotAnAddress
            }
        })?;
        (ip, port)
    };
    let digits = (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit());
    if !digits || port.parse::<u16>().is_err() {
        return Err(ErrorKind::NotAnAddress);
    }
    Ok(address)
}

fn error(source: ClientIpSource, hop: &str) -> ForwardedError {
    ForwardedError {
        source,
        hop: crate::text::printable(hop.trim(), 64),
        kind: ErrorKind::NotAnAddress,
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

/// One element of a `Forwarded` header: where it stands in the line, and
/// its `for=` node (unquoted), when it has one.
#[derive(Debug, PartialEq, Eq)]
struct Element {
    span: std::ops::Range<usize>,
    node: Option<String>,
}

/// Splits a `Forwarded` line into its elements by RFC 7239's grammar:
///
/// ```text
/// Forwarded         = 1#forwarded-element
/// forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
/// forwarded-pair    = token "=" value
/// value             = token / quoted-string
/// ```
///
/// so that a `,` or `;` inside a quoted value (`by="a,b"`) splits nothing.
/// Empty list elements are skipped, as RFC 7230's list rule allows. A
/// line that does not follow the grammar, or an element that names `for`
/// twice, is an error: its elements cannot be told apart reliably. One
/// pass over the line.
fn forwarded_elements(line: &str) -> Result<Vec<Element>, ()> {
    let b = line.as_bytes();
    let mut i = 0;
    let mut elements = Vec::new();
    let skip_ows = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t') {
            work::tick(1);
            *i += 1;
        }
    };
    loop {
        skip_ows(&mut i);
        let start = i;
        let mut node = None;
        let mut pairs = 0;
        loop {
            skip_ows(&mut i);
            match b.get(i) {
                None | Some(b',') => break,
                Some(b';') => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let name = token(b, &mut i).ok_or(())?;
            if b.get(i) != Some(&b'=') {
                return Err(());
            }
            i += 1;
            let value = match b.get(i) {
                Some(b'"') => quoted_string(b, &mut i).ok_or(())?,
                _ => token(b, &mut i).ok_or(())?.to_owned(),
            };
            if name.eq_ignore_ascii_case("for") {
                if node.is_some() {
                    return Err(());
                }
                node = Some(value);
            }
            pairs += 1;
            skip_ows(&mut i);
            match b.get(i) {
                None | Some(b',') => break,
                Some(b';') => i += 1,
                _ => return Err(()),
            }
        }
        if pairs > 0 {
            let end = line[..i].trim_end().len();
            elements.push(Element {
                span: start..end,
                node,
            });
        }
        if i >= b.len() {
            return Ok(elements);
        }
        i += 1; // the `,`
    }
}

/// A `token` (RFC 7230 `tchar`s) at `b[*i..]`, at least one character.
fn token<'a>(b: &'a [u8], i: &mut usize) -> Option<&'a str> {
    let start = *i;
    while *i < b.len() && (b[*i].is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b[*i])) {
        work::tick(1);
        *i += 1;
    }
    // Only ASCII was taken, so this is a char boundary.
    (*i > start).then(|| std::str::from_utf8(&b[start..*i]).ok())?
}

/// A `quoted-string` at `b[*i..]` (which starts with `"`), unquoted.
fn quoted_string(b: &[u8], i: &mut usize) -> Option<String> {
    let mut out = Vec::new();
    *i += 1;
    while let Some(&c) = b.get(*i) {
        work::tick(1);
        match c {
            b'"' => {
                *i += 1;
                return String::from_utf8(out).ok();
            }
            b'\\' => {
                out.push(*b.get(*i + 1)?);
                *i += 2;
            }
            b'\t' | b' '..=b'~' | 0x80..=0xff => {
                out.push(c);
                *i += 1;
            }
            _ => return None,
        }
    }
    None // unclosed
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

    fn from(
        source: ClientIpSource,
        peer: &str,
        trusted: &str,
        lines: &[&str],
    ) -> Result<IpAddr, ForwardedError> {
        let h = match source.header() {
            Some(name) => headers(name, lines),
            None => HeaderMap::new(),
        };
        source.client_ip(ip(peer), &h, &trusted.parse().unwrap())
    }

    const SINGLE: [ClientIpSource; 5] = [
        ClientIpSource::XRealIp,
        ClientIpSource::CfConnectingIp,
        ClientIpSource::TrueClientIp,
        ClientIpSource::FlyClientIp,
        ClientIpSource::CloudFrontViewerAddress,
    ];

    /// The value a platform writes for `client`.
    fn written(source: ClientIpSource, client: &str) -> String {
        match (source, client.contains(':')) {
            (ClientIpSource::CloudFrontViewerAddress, _) => format!("{client}:46532"),
            _ => client.to_owned(),
        }
    }

    #[test]
    fn names_parse_in_any_case_and_display_in_lower_case() {
        for source in ClientIpSource::ALL {
            assert_eq!(source.to_string().parse::<ClientIpSource>(), Ok(source));
            assert_eq!(
                source.name().to_uppercase().parse::<ClientIpSource>(),
                Ok(source)
            );
        }
        assert_eq!(
            "CloudFront-Viewer-Address".parse(),
            Ok(ClientIpSource::CloudFrontViewerAddress)
        );
        assert_eq!("X-Real-IP".parse(), Ok(ClientIpSource::XRealIp));
        let e = "x-client-ip".parse::<ClientIpSource>().unwrap_err();
        assert!(e.to_string().contains("`x-client-ip`") && e.to_string().contains("fly-client-ip"));
        assert_eq!(
            ClientIpSource::from(ForwardedHeader::Forwarded),
            ClientIpSource::Forwarded
        );
        assert_eq!(ClientIpSource::default(), ClientIpSource::XForwardedFor);
    }

    #[test]
    fn single_value_headers_from_a_trusted_proxy_name_the_client() {
        for source in SINGLE {
            for client in ["203.0.113.5", "2001:db8::7", "::ffff:203.0.113.6"] {
                let want = canonical(ip(client));
                assert_eq!(
                    from(
                        source,
                        "10.0.0.1",
                        "10.0.0.0/8",
                        &[&written(source, client)]
                    )
                    .unwrap(),
                    want,
                    "{source} {client}"
                );
                // Behind an IPv6 proxy too, and with white space around.
                let padded = format!(" {}\t", written(source, client));
                assert_eq!(
                    from(source, "fd00::1", "fd00::/8", &[&padded]).unwrap(),
                    want,
                    "{source} {client}"
                );
            }
            // The value is the client, even when it names a trusted address:
            // the platform wrote what it saw.
            assert_eq!(
                from(
                    source,
                    "10.0.0.1",
                    "10.0.0.0/8",
                    &[&written(source, "10.9.9.9")]
                )
                .unwrap(),
                ip("10.9.9.9")
            );
        }
    }

    #[test]
    fn single_value_headers_from_an_untrusted_peer_are_ignored() {
        for source in SINGLE {
            // A client connecting directly writes the header itself.
            for trusted in ["10.0.0.0/8", ""] {
                assert_eq!(
                    from(
                        source,
                        "192.0.2.1",
                        trusted,
                        &[&written(source, "203.0.113.5")]
                    )
                    .unwrap(),
                    ip("192.0.2.1"),
                    "{source}"
                );
                // Nor is garbage or a second line from it refused: it is not read.
                assert_eq!(
                    from(source, "192.0.2.1", trusted, &["garbage", "x"]).unwrap(),
                    ip("192.0.2.1")
                );
            }
            assert_eq!(
                from(source, "::ffff:192.0.2.1", "10.0.0.0/8", &["203.0.113.5"]).unwrap(),
                ip("192.0.2.1")
            );
        }
    }

    #[test]
    fn single_value_headers_are_refused_when_missing_repeated_empty_or_not_one_address() {
        for source in SINGLE {
            let e = from(source, "10.0.0.1", "10.0.0.0/8", &[]).unwrap_err();
            assert!(e.to_string().contains("sent no"), "{e}");
            assert_eq!(e.source(), source);
            // A client-written line besides the platform's.
            let e = from(
                source,
                "10.0.0.1",
                "10.0.0.0/8",
                &[&written(source, "6.6.6.6"), &written(source, "203.0.113.5")],
            )
            .unwrap_err();
            assert!(e.to_string().contains("sent 2 times"), "{e}");
            for empty in ["", "  "] {
                let e = from(source, "10.0.0.1", "10.0.0.0/8", &[empty]).unwrap_err();
                assert!(e.to_string().contains("is empty"), "{e}");
            }
            for bad in [
                "unknown",
                "_hidden",
                "1.2.3",
                "6.6.6.6, 203.0.113.5",
                "203.0.113.5 x",
                "fe80::1%eth0",
                "[1.2.3.4]:80",
            ] {
                let e = from(source, "10.0.0.1", "10.0.0.0/8", &[bad]).unwrap_err();
                assert!(!e.to_string().is_empty(), "{source} {bad}");
            }
        }
        // A port where the platform writes none.
        for source in &SINGLE[..4] {
            for with_port in ["203.0.113.5:4711", "[2001:db8::1]:4711", "[2001:db8::1]"] {
                let e = from(*source, "10.0.0.1", "10.0.0.0/8", &[with_port]).unwrap_err();
                assert!(e.to_string().contains("port"), "{e}");
                assert_eq!(e.hop(), with_port);
            }
        }
        let e = from(
            ClientIpSource::XRealIp,
            "10.0.0.1",
            "10.0.0.0/8",
            &["203.0.113.5, 6.6.6.6"],
        )
        .unwrap_err();
        assert_eq!(e.hop(), "203.0.113.5, 6.6.6.6");
        assert!(
            e.to_string()
                .contains("x-real-ip header is not an IP address"),
            "{e}"
        );
    }

    #[test]
    fn cloudfront_viewer_address_is_address_and_port() {
        let cf = |value: &str| {
            from(
                ClientIpSource::CloudFrontViewerAddress,
                "10.0.0.1",
                "10.0.0.0/8",
                &[value],
            )
        };
        assert_eq!(cf("198.51.100.10:46532").unwrap(), ip("198.51.100.10"));
        assert_eq!(cf("2001:db8::1:46532").unwrap(), ip("2001:db8::1"));
        assert_eq!(
            cf("0000:0000:0000:0000:0000:0000:0000:0001:52325").unwrap(),
            ip("::1")
        );
        assert_eq!(cf("[2001:db8::1]:443").unwrap(), ip("2001:db8::1"));
        assert_eq!(cf("::ffff:198.51.100.10:1").unwrap(), ip("198.51.100.10"));
        assert_eq!(cf("198.51.100.10:65535").unwrap(), ip("198.51.100.10"));
        for no_port in ["198.51.100.10", "[2001:db8::1]", "2001:db8::1"] {
            let e = cf(no_port).unwrap_err();
            assert!(e.to_string().contains("no port"), "{no_port}: {e}");
        }
        for bad in [
            "198.51.100.10:",
            "198.51.100.10:65536",
            "198.51.100.10:+80",
            "198.51.100.10:123456",
            "198.51.100.10:80:80",
            "198.51.100.10 :80",
            "[198.51.100.10]:80",
            "[2001:db8::1]:",
            "[2001:db8::1]x:80",
            "host.example:80",
            ":80",
        ] {
            let e = cf(bad).unwrap_err();
            assert!(e.to_string().contains("not an IP address"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_peer_source_reads_no_header() {
        let mut h = headers("x-forwarded-for", &["203.0.113.5"]);
        h.append("x-real-ip", "203.0.113.5".parse().unwrap());
        for peer in ["10.0.0.1", "192.0.2.1"] {
            assert_eq!(
                ClientIpSource::Peer
                    .client_ip(ip(peer), &h, &"10.0.0.0/8".parse().unwrap())
                    .unwrap(),
                ip(peer)
            );
        }
    }

    #[test]
    fn a_source_reads_its_own_header_only() {
        // Behind a proxy that sets X-Real-IP, a client-written
        // X-Forwarded-For or CF-Connecting-IP decides nothing.
        let mut h = headers("x-real-ip", &["203.0.113.5"]);
        h.append("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.append("cf-connecting-ip", "6.6.6.6".parse().unwrap());
        h.append("forwarded", "for=6.6.6.6".parse().unwrap());
        let trusted: IpSet = "10.0.0.0/8".parse().unwrap();
        assert_eq!(
            ClientIpSource::XRealIp
                .client_ip(ip("10.0.0.1"), &h, &trusted)
                .unwrap(),
            ip("203.0.113.5")
        );
        assert!(
            ClientIpSource::FlyClientIp
                .client_ip(ip("10.0.0.1"), &h, &trusted)
                .is_err()
        );
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
            fwd("10.0.0.1", "10.0.0.0/8", &["proto=https"])
                .unwrap_err()
                .hop(),
            "proto=https"
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

    #[test]
    fn forwarded_element_without_for_from_a_trusted_hop_is_refused() {
        // The client wrote `for=203.0.113.5`; the trusted proxy wrote an
        // element naming no client. Skipping it would believe the client.
        let e = fwd("10.0.0.1", "10.0.0.0/8", &["for=203.0.113.5, proto=https"]).unwrap_err();
        assert_eq!(e.hop(), "proto=https");
        // Left of the first untrusted hop, such elements are never reached.
        assert_eq!(
            fwd(
                "10.0.0.1",
                "10.0.0.0/8",
                &["proto=http, for=198.51.100.4;proto=https"]
            )
            .unwrap(),
            ip("198.51.100.4")
        );
    }

    #[test]
    fn forwarded_quoted_values_may_hold_commas_and_semicolons() {
        assert_eq!(
            fwd("10.0.0.1", "10.0.0.0/8", &[r#"for=203.0.113.9;by="a,b;c""#]).unwrap(),
            ip("203.0.113.9")
        );
        assert_eq!(
            fwd(
                "10.0.0.1",
                "10.0.0.0/8",
                &[r#"for=6.6.6.6;host="x,\"y", for="203.0.113.9:80";proto=https , for=10.1.1.1"#]
            )
            .unwrap(),
            ip("203.0.113.9")
        );
        // Empty list elements are skipped.
        assert_eq!(
            fwd("10.0.0.1", "10.0.0.0/8", &["for=203.0.113.9,, ,"]).unwrap(),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn forwarded_lines_off_the_grammar_are_refused() {
        for bad in [
            r#"for="203.0.113.9"#,          // unclosed quote
            "for=203.0.113.9;for=10.0.0.2", // `for` twice
            "for 203.0.113.9",
            "for=",
            "=203.0.113.9",
            "for=203.0.113.9 x",
        ] {
            assert!(fwd("10.0.0.1", "10.0.0.0/8", &[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn hops_in_errors_have_controls_and_bidi_overrides_escaped() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            http::HeaderValue::from_bytes("203.0.113.5, evil\u{202E}1.2\u{85}x".as_bytes())
                .unwrap(),
        );
        let e = client_ip(
            ip("10.0.0.1"),
            &h,
            &"10.0.0.0/8".parse().unwrap(),
            ForwardedHeader::XForwardedFor,
        )
        .unwrap_err();
        assert_eq!(e.hop(), "203.0.113.5, evil\\u{202e}1.2\\u{85}x");
        assert!(!e.to_string().contains('\u{202E}'));
    }

    #[test]
    fn the_walk_is_linear_in_the_header() {
        work::assert_linear(
            "Forwarded with quoted commas",
            1_000,
            4.0,
            |n| format!("{}for=203.0.113.5", "for=10.0.0.1;by=\"a,b\", ".repeat(n)),
            |line| {
                assert_eq!(
                    fwd("10.0.0.1", "10.0.0.0/8", &[line]).unwrap(),
                    ip("203.0.113.5")
                )
            },
        );
    }
}
