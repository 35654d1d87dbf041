//! Receive the webhooks of [Customers Mail Cloud] (CMC), the Japanese email
//! delivery service, as typed Rust values.
//!
//! CMC calls your HTTPS endpoint in two cases:
//!
//! - the **event webhook**, when a mail you sent changes state: a batch of
//!   [`Delivery`] records (queued, succeeded, failed, deferred), [`Bounce`]
//!   records with an error code, or [`Block`] records on the Pro plan;
//! - the **inbound webhook**, when a mail arrives: an [`InboundMail`] with
//!   envelope, [`Headers`], bodies and [`Attachment`]s.
//!
//! It posts them in three encodings: JSON, form-urlencoded whose `event`
//! (or `headers`) field holds JSON text, and multipart/form-data. The
//! parsers here read all three into the same model, from the request's
//! `Content-Type` and body, without a web framework:
//!
//! ```
//! use bytes::Bytes;
//! use cmc_webhook::{Event, Webhook};
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
//! # Ok::<(), cmc_webhook::ParseError>(())
//! ```
//!
//! # Receiving over HTTP
//!
//! CMC signs nothing, so an endpoint needs a gate: [`WebhookLayer`] admits
//! only CMC's source addresses (behind trusted proxies too), checks BASIC
//! auth and the body size, and tells the body readers which `api_key`s to
//! accept. Behind it, take an [`EventBatch`], [`InboundMail`] or [`Webhook`]
//! as an axum handler argument ([`extract`]), or call [`read_webhook`] from
//! any tower or hyper service. Refusals are [`Rejection`]s with a
//! [`Reason`] and a configurable status.
//!
//! ```
//! use axum::{routing::post, Router};
//! use cmc_webhook::{EventBatch, WebhookLayer};
//!
//! async fn on_webhook(batch: EventBatch) -> &'static str {
//!     println!("{} events", batch.events.len());
//!     "ok"
//! }
//!
//! let gate = WebhookLayer::builder().allow_cidrs("203.0.113.0/24, 2001:db8::/32")?.build()?;
//! let app: Router = Router::new().route("/mails", post(on_webhook).layer(gate));
//! // Serve with app.into_make_service_with_connect_info::<std::net::SocketAddr>().
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Storing before the 200
//!
//! A handler that does its work before answering can lose events in a
//! crash or do them twice when CMC sends a batch again. The [`inbox`]
//! (feature `sqlite` or `postgres`) stores every event and mail in SQLite or PostgreSQL
//! before the 200, never twice, and runs your handler afterwards with
//! retries, leases, dead rows, replay and retention:
//! `post_service(inbox.receive()).layer(gate)` and
//! `inbox.worker(handler).spawn()`. On top of it, the
//! [suppression list][suppression] keeps the recipients that
//! bounced, and [mailboxes][mailbox] route each inbound mail by its
//! envelope recipient to a handler per address.
//!
//! # What the crate promises
//!
//! - Every bad body is a [`ParseError`] that says what is wrong and where
//!   (`event.deliveries[1].created: ...`); no input makes a parser panic.
//! - No body costs more than time linear in its size, or memory beyond a
//!   few times its size plus what the [`Limits`] allow (records, unknown
//!   fields, headers, multipart parts: 413 beyond them).
//! - Nothing valid is dropped: unknown event types, statuses, bounce codes
//!   and fields are kept ([`Event::Unknown`], [`DeliveryStatus::Other`],
//!   [`BounceStatus::Other`], the `extra` maps of [`RawJson`]).
//! - `created` stays civil time, as sent; [`Event::created_at`] converts it
//!   with the time zone you set in the CMC console ([`default_time_zone`]).
//! - CMC sends no event ids and may repeat a batch:
//!   [`Event::idempotency_key`] is a stable key per event.
//! - The `api_key` and BASIC credentials are never shown by `Debug`, never
//!   logged, never serialised.
//! - Text fields are [`Text`]: slices of the request body where possible,
//!   so parsing copies little.
//!
//! # Running it
//!
//! CMC publishes no list of its sender addresses:
//! [`report_only`](layer::WebhookLayerBuilder::report_only) admits and
//! lists the clients outside the allowlist while you learn them, and
//! [`allowlist::AllowlistFile`] keeps the list in a file that is read again
//! when it changes. Every refusal is logged once at `warn` with the client
//! and the reason; the layer's span carries OpenTelemetry's HTTP fields;
//! with the `metrics` feature, counters and histograms named
//! `cmc_webhook_*` go through the `metrics` facade (`describe_metrics`).
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | yes | the extractors ([`extract`]); the layer reads axum's `ConnectInfo`; [`Rejection`] implements `IntoResponse` |
//! | `sqlite` | no | the [`inbox`] on SQLite (compiled in: nothing to install) |
//! | `postgres` | no | the inbox on PostgreSQL, for a fleet of receivers on one database (without SQLite unless `sqlite` is on too) |
//! | `metrics` | no | metrics through the `metrics` facade, for any exporter |
//! | `test-util` | no | `test_util`: sample payloads and CMC's requests, byte for byte, for your own tests |
//!
//! # Crates
//!
//! This crate is a facade over three others, so that each user compiles
//! only what they use:
//!
//! - `cmc-webhook-core`: the model, the parsers, the gate and the
//!   extractors, with a middleware's dependencies (no database). Everything
//!   at this crate's root is re-exported from it.
//! - `cmc-webhook-inbox`: the durable inbox, the suppression list and the
//!   mailboxes; re-exported here as [`inbox`] by the features `sqlite` and
//!   `postgres`.
//! - `cmc-receiver`: the installable operator tool (`cargo install
//!   cmc-receiver`), for teams in any language.
//!
//! # Modules
//!
//! The model lives in [`event`] (event webhook) and [`inbound`] (inbound
//! webhook); [`Webhook`] is either. The gate is [`layer`], built on
//! [`allowlist`] (who may call), [`client_ip`] (who is calling) and
//! [`auth`] (credentials). [`extract`] holds the axum extractors;
//! `test_util` (feature `test-util`) writes CMC requests for tests.
//!
//! [Customers Mail Cloud]: https://www.customers-mail.cloud/
#![cfg_attr(
    any(feature = "sqlite", feature = "postgres"),
    doc = "[`inbox`]: crate::inbox\n[suppression]: crate::inbox::suppression\n[mailbox]: crate::inbox::mailbox"
)]
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    doc = "[`inbox`]: https://docs.rs/cmc-webhook-inbox\n[suppression]: https://docs.rs/cmc-webhook-inbox/latest/cmc_webhook_inbox/suppression/\n[mailbox]: https://docs.rs/cmc-webhook-inbox/latest/cmc_webhook_inbox/mailbox/"
)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use cmc_webhook_core::*;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
#[doc(inline)]
pub use cmc_webhook_inbox as inbox;

/// Registers the description and unit of every metric, the gate's and
/// (with an inbox feature) the inbox's, with the installed recorder, so
/// that exporters show them (Prometheus' `# HELP` lines). Call it once,
/// after installing the recorder; metrics are recorded whether or not it
/// is called.
///
/// ```
/// // With metrics-exporter-prometheus, for example:
/// // PrometheusBuilder::new().with_http_listener(addr).install()?;
/// cmc_webhook::describe_metrics();
/// ```
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub fn describe_metrics() {
    cmc_webhook_core::describe_metrics();
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    cmc_webhook_inbox::describe_metrics();
}

/// The README's examples, compiled and run as doc tests so that the README
/// stays true to the code.
#[cfg(all(doctest, feature = "axum", feature = "sqlite", feature = "test-util"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// SECURITY.md's example, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../SECURITY.md")]
struct SecurityDoctests;
