//! [`WebhookLayer`]: the gate in front of a webhook endpoint.
//!
//! CMC signs nothing, so this layer is what keeps strangers out. Before the
//! inner service runs, it decides from the request line and headers alone:
//!
//! 1. **Who is calling.** The peer address comes from axum's
//!    `ConnectInfo<SocketAddr>`, a `SocketAddr` in the request extensions
//!    (plain hyper), or a function you give. When there is none, the request
//!    is refused with 500 and an error log that says how to fix the set-up:
//!    a request is never let through because its address is unknown. Behind
//!    [trusted proxies](WebhookLayerBuilder::trust_proxy), the forwarding
//!    header is walked from the right (see [`client_ip`](crate::client_ip)).
//! 2. **Whether it may.** The client address must be in the
//!    [allowlist](crate::allowlist): 403 otherwise, logged at `warn` with the
//!    address, because CMC publishes no list of its senders and these lines
//!    are how an operator finds the addresses to allow.
//! 3. **How.** Only `POST` (405 with `Allow: POST`), with BASIC credentials
//!    when configured (401 with `WWW-Authenticate`), a JSON, form or
//!    multipart body (415), and a `Content-Length` within the limit (413).
//!
//! Requests that pass reach the inner service with the body wrapped in a
//! [`RequestBody`] that stops at the limit while streaming (the layer then
//! answers 413 whatever the handler made of it), and with a
//! [`Policy`](crate::Policy) in the extensions that tells
//! [`read_webhook`](crate::read_webhook) and the extractors the limit and
//! the accepted `api_key`s (a key sits in the body, so it is checked there,
//! 401 when wrong), and a [`ClientIp`](crate::client_ip::ClientIp).
//!
//! The layer's own refusals answer with `Connection: close`, so that a
//! refused client cannot hold a kept-alive connection by sending more.
//! Every request gets a `tracing` span `cmc_webhook` with the peer, the
//! client and the decision. Bodies and keys are never logged.
//!
//! ```
//! use std::net::SocketAddr;
//! use axum::{routing::post, Router};
//! use cmc_webhook_core::WebhookLayer;
//!
//! async fn on_webhook() -> &'static str {
//!     "ok"
//! }
//!
//! let layer = WebhookLayer::builder()
//!     .allow("203.0.113.0/24".parse::<ipnet::IpNet>()?)
//!     .trust_proxy("10.0.0.0/8".parse::<ipnet::IpNet>()?)
//!     .body_limit(1 << 20)
//!     .api_key("s3cret")
//!     .build()?;
//! let app: Router = Router::new().route("/mails", post(on_webhook).layer(layer));
//! // Serve with the peer address recorded, or every request gets a 500:
//! let _service = app.into_make_service_with_connect_info::<SocketAddr>();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod body;
mod budget;
mod builder;
mod config;
mod drain;
mod future;
#[allow(clippy::module_inception)] // the layer, beside its builder and service
mod layer;
mod service;
mod unlisted;

pub use body::{RequestBody, ResponseBody};
pub use budget::{
    BudgetBody, BudgetFuture, InflightBudget, InflightBudgetService, InflightBudgetSpent,
};
pub use builder::{ConfigError, SourceBuilder, WebhookLayerBuilder};
pub use future::ResponseFuture;
pub use layer::WebhookLayer;
pub use service::WebhookService;
pub use unlisted::UnlistedClient;
