//! The durable inbox of [cmc-webhook](https://docs.rs/cmc-webhook), on
//! SQLite (feature `sqlite`, on by default) or PostgreSQL (feature
//! `postgres`): every accepted event and mail is
//! stored before the webhook is answered 200, never twice, then handed to
//! your handler with retries.
//!
//! CMC sends each webhook once it is answered 200 and never again, repeats
//! batches, and gives events no ids. So a receiver that crashes after the
//! 200 loses events for good, and one that handles events inline handles
//! some twice. The inbox closes both gaps:
//!
//! 1. **Receiving** ([`Inbox::receive`], a tower service behind the
//!    [`WebhookLayer`]): the webhook is parsed and its rows committed in
//!    one transaction, then answered 200. Concurrent requests share a
//!    commit. An event is keyed by its [`idempotency_key`], a mail by
//!    [its own](cmc_webhook_core::InboundMail::idempotency_key); a key already
//!    stored is counted in the row's `repeats` and not stored again. When
//!    the store fails the answer is 503, and CMC sends the webhook again.
//! 2. **Processing** ([`Inbox::worker`]): a worker claims due rows in
//!    order of arrival, runs your async handler on each ([`Job`]), and
//!    records the outcome: `done`, a retry after a [`Backoff`], or `dead`
//!    after the last attempt. Claims are leases: the rows of a worker that
//!    died are claimed again when the lease runs out.
//! 3. **Operating**: [`counts`](Inbox::counts), the [`dead`](Inbox::dead)
//!    rows, [`replay`](Inbox::replay), a sent mail's
//!    [`history`](Inbox::history), and [`prune`](Inbox::prune) of done rows
//!    after a retention.
//! 4. **Evidence** ([`raw`]): each request as it arrived is kept with its
//!    rows for 7 days (its `api_key` redacted, attachments stored once),
//!    refused bodies within a budget, and [`reparse`](Inbox::reparse)
//!    reads them again with the current parser, adding what is new.
//!
//! The tables (`cmc_events`, `cmc_mails`, `cmc_mail_attachments`,
//! `cmc_raw_requests`, ...) are a
//! public contract, documented in the README; migrations only move forward
//! and run when the inbox opens.
//!
#![cfg_attr(feature = "sqlite", doc = "```")]
#![cfg_attr(not(feature = "sqlite"), doc = "```ignore")]
//! use std::time::Duration;
//! use axum::{routing::post_service, Router};
//! use cmc_webhook_inbox::{Inbox, Item, Job};
//! use cmc_webhook_core::WebhookLayer;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! # let dir = std::env::temp_dir().join(format!("cmc-doc-inbox-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! let inbox = Inbox::open(&format!("sqlite:{}", dir.join("cmc-inbox.sqlite3").display())).await?;
//!
//! // Receive: stored before the 200.
//! let gate = WebhookLayer::builder().allow("203.0.113.0/24".parse::<ipnet::IpNet>()?).build()?;
//! let app: Router = Router::new().route("/mails", post_service(inbox.receive()).layer(gate));
//!
//! // Process: at least once, in order of arrival, with retries.
//! let worker = inbox
//!     .worker(|job: Job| async move {
//!         match &job.item {
//!             Item::Event(event) => println!("{} {}", event.event_type(), job.key),
//!             Item::Mail(mail) => println!("mail for {}", mail.envelope_to),
//!             _ => {}
//!         }
//!         Ok::<(), std::convert::Infallible>(())
//!     })
//!     .spawn();
//! # let _ = app;
//! worker.shutdown(Duration::from_secs(10)).await?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`WebhookLayer`]: cmc_webhook_core::WebhookLayer
//! [`idempotency_key`]: cmc_webhook_core::Event::idempotency_key

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without a backend the contract, the types and the statements still
// compile (so that a build missing one is checked), but nothing can open
// a store, so most of the storage code has no caller.
#![cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(dead_code, unused_imports, unused_variables, unreachable_code)
)]

mod backoff;
pub mod browse;
mod builder;
mod clock;
mod commit;
mod error;
mod inbox;
mod job;
pub mod mailbox;
mod ops;
mod options;
pub mod raw;
mod receive;
mod rows;
mod schema;
mod store;
pub mod suppression;
pub mod targets;
mod telemetry;
mod worker;

pub use backoff::Backoff;
pub use builder::InboxBuilder;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{InboxError, InboxErrorKind};
pub use inbox::{DEFAULT_RETENTION, Inbox};
pub use job::{Item, Job, JobId, Kind, State};
pub use ops::{
    Counts, DeadRow, Filter, History, HistoryEntry, Pruned, Receipt, Recounted, Replayed,
    StateCounts, Unreadable,
};
pub use options::StoreOptions;
#[cfg(feature = "postgres")]
pub use options::{PgPoolStore, PostgresOptions};
#[cfg(feature = "sqlite")]
pub use options::{SqliteOptions, SqlitePoolStore};
pub use raw::{
    DEFAULT_RAW_RETENTION, RawOutcome, RawRequest, RawRequests, RefusedBudget, Reparse,
    ReparseReport, Reparsed,
};
pub use receive::{Receive, ResponseFuture};
pub use schema::{MIGRATIONS_TABLE, Migrated};
#[cfg(feature = "sqlite")]
pub use store::sqlite::Synchronous;
#[cfg(feature = "metrics")]
pub use telemetry::describe_metrics;
pub use worker::{NoEvents, Stopped, Worker, WorkerHandle};
