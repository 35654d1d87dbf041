//! `cmc-receiver`: receives the webhooks of Customers Mail Cloud (CMC) for
//! teams in any language. It serves the webhook endpoint behind the
//! [`WebhookLayer`](cmc_webhook_core::WebhookLayer), stores every event and
//! inbound mail in the durable inbox (SQLite or PostgreSQL) before the 200,
//! then prints one JSON line per event and per mail, written by the inbox's
//! worker after the commit; it keeps the suppression list from bounces and
//! routes inbound mail to mailboxes.
//!
//! Install the program with `cargo install cmc-receiver` (or
//! `cargo install --locked --path crates/receiver` from a checkout) and run
//! `cmc-receiver --help`. This library is the program's own code, kept
//! apart so that its tests (and the checkout's `examples/receiver`) run
//! the same code:
//!
//! - [`cli`]: the command line and the subcommands ([`cli::main`]);
//! - [`config`]: the flags, the environment and secrets from files;
//! - [`app`]: the route, the layer and the handlers that write lines;
//! - [`serve`]: the HTTP server loop, with its timeouts and limits, and
//!   the metrics endpoint;
//! - [`tls`]: HTTPS, its certificate and key read again when they change;
//! - [`relay`]: each stored event and mail POSTed to the team's
//!   application (`--relay`), signed as Standard Webhooks specifies;
//! - `console` (feature `console`, on by default): the web console
//!   (`--console ADDR`, `cmc-receiver console`);
//! - [`output`]: stdout and stderr through queues that never stall a
//!   request.
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     cmc_receiver::cli::main()
//! }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

pub mod app;
pub mod cli;
pub mod config;
#[cfg(feature = "console")]
pub mod console;
pub mod file;
mod hex;
pub mod output;
pub mod read;
pub mod relay;
pub mod serve;
pub mod tls;
