//! Inbound mail routed to a handler per address (feature `sqlite`): the
//! inbox's answer to Rails ActionMailbox.
//!
//! - **Routes** ([`Mailboxes::route`]) match a mail's envelope recipient
//!   (`envelope-to`, never the `To:` header, which anybody can write)
//!   with an address [`Pattern`]: an exact address, a whole domain
//!   (`*@support.example.jp`), a local-part prefix or plus-address
//!   (`reply+*@example.jp`), or a regular expression; or CMC's `filter`
//!   (the inbound rule the mail came through); or both ([`Route`]). They
//!   are tried in the order they were declared; the first match wins, then
//!   the [fallback](Mailboxes::fallback). Addresses match lower-cased,
//!   normalised as the [suppression list](super::suppression::normalize)
//!   does.
//! - **Mailboxes** ([`Mailbox`]) each have an async handler, a
//!   concurrency, a retry policy and a retention. They run on the inbox's
//!   [`Worker`](super::Worker): [`Worker::mailboxes`](super::Worker::mailboxes)
//!   (beside an event handler) or [`Inbox::mailbox_worker`](super::Inbox::mailbox_worker)
//!   (mails only).
//! - **Deliveries**: routing a stored mail writes one row per mailbox it
//!   reaches (`cmc_mail_deliveries`), in the transaction that marks the
//!   mail routed. Each has its own [`DeliveryState`]: `pending`,
//!   `processing`, `delivered`, `failed` (a retry is due), `bounced`
//!   (refused on purpose by its handler, with [`Handled::bounced`]),
//!   `dead` (after its last attempt), or `unrouted`: no route took it and
//!   there is no fallback. An unrouted mail is kept and counted, never
//!   dropped; [`Deliveries::replay`] routes it again once a route exists.
//!   [`Inbox::deliveries`](super::Inbox::deliveries) reads and replays
//!   them.
//!
//! **A mail with several envelope recipients** (`a@x.jp, b@y.jp`, split at
//! commas, semicolons and white space outside quotes) is routed one
//! recipient at a time, and reaches each mailbox one of its recipients
//! routes to **once**, with the recipients that went there
//! ([`MailJob::recipients`]): a mail to `support@` and `billing@` reaches
//! both mailboxes, not the first one declared (rails#37852). Recipients
//! that no route takes, with no fallback, make one `unrouted` row. A mail
//! routed again (after a replay) reaches a mailbox only with the
//! recipients that have not reached it yet. The row's `route` is the route
//! of the first of its recipients.
//!
//! **Data**: a handler gets the parsed [`InboundMail`](cmc_webhook_core::InboundMail) read back from the
//! store, without its attachments' bytes: [`MailJob::attachment`] reads one
//! when asked, so a mailbox that does not need them never loads 25 MiB.
//!
//! **Retention**: a mailbox's delivered and bounced deliveries are deleted
//! after its [retention](Mailbox::retention) (30 days by default), and the
//! mail with its attachments once no delivery is left of it. The worker
//! does it every hour ([`Mailboxes::prune_every`]); dead and unrouted
//! deliveries stay until they are replayed.
//!
#![cfg_attr(feature = "sqlite", doc = "```")]
#![cfg_attr(not(feature = "sqlite"), doc = "```ignore")]
//! use std::time::Duration;
//! use cmc_webhook_inbox::mailbox::{Handled, MailJob, Mailbox, Mailboxes};
//! use cmc_webhook_inbox::Inbox;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! # let dir = tempfile_dir("cmc-doc-mailbox")?;
//! let inbox = Inbox::sqlite(dir.join("inbox.sqlite3")).open().await?;
//! let mailboxes = Mailboxes::new()
//!     .mailbox(Mailbox::new("replies", |job: MailJob| async move {
//!         let ticket = job.recipients[0].trim_start_matches("reply+");
//!         println!("reply to ticket {ticket}: {}", job.mail.subject);
//!         Ok::<_, std::io::Error>(())
//!     }).concurrency(4))?
//!     .mailbox(Mailbox::new("documents", |job: MailJob| async move {
//!         if job.mail.attachments.is_empty() {
//!             return Ok(Handled::bounced("no document attached"));
//!         }
//!         let pdf = job.attachment(0).await?; // read from the store now
//!         println!("{} bytes", pdf.len());
//!         Ok::<_, cmc_webhook_inbox::InboxError>(Handled::Delivered)
//!     }).max_attempts(3).retention(Duration::from_secs(7 * 24 * 3600)))?
//!     .route("reply+*@example.jp", "replies")?
//!     .route("filter:scans", "documents")?
//!     .route("*@docs.example.jp", "documents")?
//!     .fallback("replies")?;
//! let worker = inbox.mailbox_worker(mailboxes).spawn();
//! // ... serve inbox.receive() behind the WebhookLayer ...
//! worker.shutdown(Duration::from_secs(10)).await?;
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # fn tempfile_dir(name: &str) -> std::io::Result<std::path::PathBuf> {
//! #     let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
//! #     std::fs::create_dir_all(&dir)?;
//! #     Ok(dir)
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod deliveries;
mod handler;
mod mailboxes;
mod pattern;
mod route;

pub use deliveries::{
    Deliveries, DeliveryFilter, DeliveryState, MailboxCounts, MailboxDelivery, PrunedDeliveries,
    Replayed,
};
pub use handler::{Handled, MailJob, StoredMail, Unrouted};
pub(crate) use handler::{into_job, unrouted};
pub use mailboxes::{Mailbox, Mailboxes};
pub use pattern::{MailboxError, Pattern, Route};

/// The former name of [`MailboxDelivery`], renamed because
/// `cmc_webhook::Delivery` is CMC's delivery event. It names the same
/// type, and warns:
///
/// ```
/// # #[allow(deprecated)]
/// # mod old {
/// use cmc_webhook_inbox::mailbox::{Delivery, MailboxDelivery};
///
/// fn same(d: Delivery) -> MailboxDelivery {
///     d
/// }
/// # }
/// ```
///
/// ```compile_fail
/// #![deny(deprecated)]
/// fn f(_: cmc_webhook_inbox::mailbox::Delivery) {}
/// ```
#[deprecated(
    since = "0.2.0",
    note = "renamed `MailboxDelivery`: `cmc_webhook::Delivery` is CMC's delivery event"
)]
pub type Delivery = MailboxDelivery;
