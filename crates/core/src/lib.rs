//! The core of [cmc-webhook](https://docs.rs/cmc-webhook): the webhooks of
//! [Customers Mail Cloud] (CMC) as typed Rust values, the parsers of every
//! wire encoding CMC uses, the gate ([`WebhookLayer`]: allowlist behind
//! proxies, BASIC auth, limits) and the axum extractors, with a
//! middleware's dependencies and no database.
//!
//! Most applications depend on the `cmc-webhook` facade, which re-exports
//! everything here and adds the durable inbox by feature; a library that
//! only needs the model or the gate can depend on this crate alone.
//!
//! ```
//! use bytes::Bytes;
//! use cmc_webhook_core::{Event, Webhook};
//!
//! let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
//!   {"created":"2023-01-25 14:03:09","status":"succeeded","to":"user@example.jp",
//!    "messageId":"<031a32d4@example.com>","senderIp":"100.100.100.3"}]}}"#;
//! match Webhook::parse("application/json; charset=UTF-8", Bytes::from(body))? {
//!     Webhook::Events(batch) => {
//!         for event in &batch.events {
//!             if let Event::Delivery(d) = event {
//!                 println!("{} to {}: {}", d.message_id, d.to, d.status);
//!             }
//!         }
//!     }
//!     Webhook::Inbound(mail) => println!("mail from {}", mail.envelope_from),
//! }
//! # Ok::<(), cmc_webhook_core::ParseError>(())
//! ```
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | no | the extractors (`extract`); the layer reads axum's `ConnectInfo`; [`Rejection`] implements `IntoResponse` |
//! | `metrics` | no | metrics through the `metrics` facade, for any exporter |
//! | `test-util` | no | `test_util`: sample payloads and CMC's requests, byte for byte, for your own tests |
//!
//! # Modules
//!
//! The model lives in [`event`] (event webhook) and [`inbound`] (inbound
//! webhook); [`Webhook`] is either. The gate is [`layer`], built on
//! [`allowlist`] (who may call), [`client_ip`] (who is calling) and
//! [`auth`] (credentials). `extract` (feature `axum`) holds the axum
//! extractors; `test_util` (feature `test-util`) writes CMC requests for
//! tests.
//!
//! [Customers Mail Cloud]: https://www.customers-mail.cloud/
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod allowlist;
pub mod auth;
pub mod client_ip;
mod error;
pub mod event;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
pub mod inbound;
mod invisible;
pub mod japanese;
pub mod layer;
mod limits;
mod mime;
mod raw;
mod rejection;
mod request;
pub mod source;
mod telemetry;
mod text;
mod webhook;
mod wire;
mod work;

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod test_util;

pub use error::{ParseError, ParseErrorKind};
pub use event::{
    Block, Bounce, BounceClass, BounceStatus, CreatedAtError, Delivery, DeliveryStatus, Event,
    EventBatch, EventType, IdempotencyKey, UnknownEvent, default_time_zone,
};
pub use inbound::{Attachment, Header, Headers, InboundMail};
pub use invisible::is_invisible;
pub use layer::{ConfigError, SourceBuilder, WebhookLayer, WebhookLayerBuilder};
pub use limits::Limits;
pub use raw::RawJson;
pub use rejection::{Reason, Rejection, Statuses};
pub use request::{
    DEFAULT_BODY_LIMIT, Policy, Sourced, read_event_batch, read_inbound_mail, read_sourced_webhook,
    read_webhook,
};
pub use source::Source;
#[cfg(feature = "metrics")]
pub use telemetry::describe_metrics;
pub(crate) use text::REDACTED;
pub use text::{Text, printable};

/// The `ipnet` crate, whose `IpNet` the allowlist takes: re-exported so that
/// mounting the layer needs no dependency of its own.
pub use ipnet;
pub use webhook::Webhook;
