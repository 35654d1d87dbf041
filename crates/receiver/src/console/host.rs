//! The `Host` a request names must be the console's own: an address
//! (`127.0.0.1:8025`, `[::1]:8025`), `localhost`, or a name the operator
//! gave (`--console-host`, for a proxy or a DNS name in front). Anything
//! else is answered 421 before any page or login: a web page the
//! operator visits could otherwise rebind its own name to 127.0.0.1 and
//! reach a loopback console from the operator's browser (DNS rebinding),
//! with the page's own origin, which the same-origin checks accept.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use http::StatusCode;

/// The names besides addresses and `localhost` that the console answers
/// to, lowercase, without port.
#[derive(Debug, Clone, Default)]
pub struct Hosts(Arc<[String]>);

impl Hosts {
    /// The names given (`--console-host`), any letter case, without port.
    pub fn new(names: impl IntoIterator<Item = String>) -> Hosts {
        Hosts(
            names
                .into_iter()
                .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|n| !n.is_empty())
                .collect(),
        )
    }

    /// Whether a request naming `host` (a `Host` header's value) is for
    /// this console.
    ///
    /// ```
    /// use cmc_receiver::console::host::Hosts;
    ///
    /// let hosts = Hosts::new(["console.example.jp".to_owned()]);
    /// assert!(hosts.allows("127.0.0.1:8025"));
    /// assert!(hosts.allows("[::1]:8025"));
    /// assert!(hosts.allows("localhost:8025"));
    /// assert!(hosts.allows("Console.Example.JP"));
    /// assert!(!hosts.allows("rebind.evil.example:8025"));
    /// ```
    pub fn allows(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            // [v6]:port
            Some(rest) => {
                return rest
                    .split(']')
                    .next()
                    .is_some_and(|ip| ip.parse::<IpAddr>().is_ok());
            }
            None => host.rsplit_once(':').map_or(host, |(name, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    name
                } else {
                    host
                }
            }),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        name.parse::<IpAddr>().is_ok() || name == "localhost" || self.0.contains(&name)
    }
}

/// Refuses a request whose `Host` is not the console's (421).
pub async fn check(State(hosts): State<Hosts>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    match host {
        Some(host) if hosts.allows(host) => next.run(request).await,
        _ => {
            tracing::warn!(
                host = ?host.map(|h| cmc_webhook_core::printable(h, 100)),
                "console: a request for another host was refused (DNS rebinding? add \
                 --console-host NAME for a name in front of the console)"
            );
            (
                StatusCode::MISDIRECTED_REQUEST,
                "this console answers to its address, localhost, or the names given with \
                 --console-host\n",
            )
                .into_response()
        }
    }
}
