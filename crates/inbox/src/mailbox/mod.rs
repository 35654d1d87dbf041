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
//! **Data**: a handler gets the parsed [`InboundMail`] read back from the
//! store, without its attachments' bytes: [`MailJob::attachment`] reads one
//! when asked, so a mailbox that does not need them never loads 25 MiB.
//!
//! **Retention**: a mailbox's delivered and bounced deliveries are deleted
//! after its [retention](Mailbox::retention) (30 days by default), and the
//! mail with its attachments once no delivery is left of it. The worker
//! does it every hour ([`Mailboxes::prune_every`]); dead and unrouted
//! deliveries stay until they are replayed.
//!
//! ```
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

mod pattern;
mod route;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;

pub use pattern::{MailboxError, Pattern, Route};

use super::backoff::Backoff;
use super::clock::{from_millis, millis};
use super::error::{InboxError, InboxErrorKind};
use super::store::{self, DeliveryQuery, DeliveryReplay, MailboxSlot, Store, Which};
use super::Inbox;
use cmc_webhook_core::{IdempotencyKey, InboundMail};

/// What a mailbox's handler made of a mail, when it did not fail.
///
/// `Ok(())` from a handler means [`Delivered`](Handled::Delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Handled {
    /// Processed: the delivery is `delivered`.
    Delivered,
    /// Refused on purpose (an unknown ticket, a sender not allowed): the
    /// delivery is `bounced`, with this reason, and is not retried.
    Bounced {
        /// Why, kept in the delivery's `bounce_reason`.
        reason: String,
    },
}

impl Handled {
    /// Refused on purpose, for `reason`.
    ///
    /// ```
    /// use cmc_webhook_inbox::mailbox::Handled;
    ///
    /// let refused = Handled::bounced("unknown ticket 4711");
    /// assert_eq!(refused, Handled::Bounced { reason: "unknown ticket 4711".into() });
    /// ```
    pub fn bounced(reason: impl Into<String>) -> Handled {
        Handled::Bounced {
            reason: reason.into(),
        }
    }
}

impl From<()> for Handled {
    fn from((): ()) -> Handled {
        Handled::Delivered
    }
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<Handled, String>> + Send>>;
type Handler = Arc<dyn Fn(MailJob) -> HandlerFuture + Send + Sync>;
type UnroutedHook = Arc<dyn Fn(Unrouted) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A mailbox: a name, the async handler its mails go to, and how it runs
/// them. Declared on [`Mailboxes`].
///
/// The handler returns `Ok(())` or `Ok(Handled::Delivered)` when the mail
/// is processed, `Ok(Handled::bounced(reason))` to refuse it without a
/// retry, and `Err(e)` to try again after the [`Backoff`]; after
/// [`max_attempts`](Mailbox::max_attempts) the delivery is `dead` with
/// `e` as its last error. A handler that panics counts as an `Err`. Like
/// the worker's, a handler runs at least once per delivery: make it
/// idempotent (the [`MailJob::id`] is stable).
///
/// ```
/// use std::time::Duration;
/// use cmc_webhook_inbox::{mailbox::{MailJob, Mailbox}, Backoff};
///
/// let tickets = Mailbox::new("tickets", |job: MailJob| async move {
///     println!("{}: {}", job.mail.envelope_from, job.mail.subject);
///     Ok::<(), String>(())
/// })
/// .concurrency(4)
/// .max_attempts(5)
/// .backoff(Backoff::exponential(Duration::from_secs(30)))
/// .retention(Duration::from_secs(90 * 24 * 3600));
/// assert_eq!(tickets.name(), "tickets");
/// ```
#[derive(Clone)]
pub struct Mailbox {
    pub(crate) name: String,
    pub(crate) handler: Handler,
    pub(crate) concurrency: usize,
    pub(crate) max_attempts: u32,
    pub(crate) backoff: Backoff,
    pub(crate) retention: Duration,
}

impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("name", &self.name)
            .field("concurrency", &self.concurrency)
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// The longest mailbox name, in bytes.
const MAX_NAME: usize = 64;

impl Mailbox {
    /// The mailbox `name` (1 to 64 letters, digits, `-`, `_` or `.`),
    /// whose mails go to `handler`: 4 at once, 12 attempts, the
    /// [default backoff](Backoff::default), kept 30 days once delivered.
    pub fn new<H, F, R, E>(name: impl Into<String>, handler: H) -> Mailbox
    where
        H: Fn(MailJob) -> F + Send + Sync + 'static,
        F: Future<Output = Result<R, E>> + Send + 'static,
        R: Into<Handled>,
        E: fmt::Display + Send + 'static,
    {
        let handler = Arc::new(handler);
        Mailbox {
            name: name.into(),
            handler: Arc::new(move |job| {
                let run = handler(job);
                Box::pin(async move {
                    match run.await {
                        Ok(r) => Ok(r.into()),
                        Err(e) => Err(e.to_string()),
                    }
                })
            }),
            concurrency: 4,
            max_attempts: 12,
            backoff: Backoff::default(),
            retention: super::DEFAULT_RETENTION,
        }
    }

    /// The mailbox's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many of its mails are handled at once (4 by default, at least
    /// 1), on top of the worker's own concurrency.
    pub fn concurrency(mut self, n: usize) -> Mailbox {
        self.concurrency = n.max(1);
        self
    }

    /// Runs of the handler per mail before its delivery is dead (12 by
    /// default, at least 1).
    pub fn max_attempts(mut self, n: u32) -> Mailbox {
        self.max_attempts = n.max(1);
        self
    }

    /// The wait before each retry.
    pub fn backoff(mut self, backoff: Backoff) -> Mailbox {
        self.backoff = backoff;
        self
    }

    /// How long a delivered or bounced mail is kept (30 days by default,
    /// ActionMailbox's incineration).
    pub fn retention(mut self, retain: Duration) -> Mailbox {
        self.retention = retain;
        self
    }
}

/// The mailboxes and the routes to them; give them to a worker with
/// [`Worker::mailboxes`](super::Worker::mailboxes) or
/// [`Inbox::mailbox_worker`](super::Inbox::mailbox_worker). See the
/// [module documentation](self).
///
/// ```
/// use cmc_webhook_inbox::mailbox::{Mailbox, Mailboxes, Pattern, Route};
///
/// let print = |job: cmc_webhook_inbox::mailbox::MailJob| async move {
///     println!("{} for {:?}", job.mailbox, job.recipients);
///     Ok::<(), String>(())
/// };
/// let mailboxes = Mailboxes::new()
///     .mailbox(Mailbox::new("support", print))?
///     .mailbox(Mailbox::new("orders", print))?
///     .route("Support@Example.JP", "support")?
///     .route(Route::to(Pattern::new("/^order-[0-9]+@/")?).and_filter("shop"), "orders")?
///     .fallback("support")?;
/// assert_eq!(mailboxes.routes().collect::<Vec<_>>(), [
///     ("support@example.jp".to_string(), "support"),
///     ("filter:shop /^order-[0-9]+@/".to_string(), "orders"),
///     ("*".to_string(), "support"),
/// ]);
///
/// let typo = Mailboxes::new().mailbox(Mailbox::new("support", print))?.route("*@example.jp", "suport");
/// assert!(typo.unwrap_err().to_string().contains("suport"));
/// # Ok::<(), cmc_webhook_inbox::mailbox::MailboxError>(())
/// ```
#[derive(Clone)]
pub struct Mailboxes {
    pub(crate) boxes: Vec<Mailbox>,
    pub(crate) routes: Vec<(Route, usize)>,
    pub(crate) fallback: Option<usize>,
    pub(crate) unrouted: Option<UnroutedHook>,
    pub(crate) prune_every: Duration,
    pub(crate) unrouted_retention: Duration,
}

impl fmt::Debug for Mailboxes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailboxes")
            .field("mailboxes", &self.boxes)
            .field("routes", &self.routes().collect::<Vec<_>>())
            .field("prune_every", &self.prune_every)
            .field("unrouted_retention", &self.unrouted_retention)
            .finish_non_exhaustive()
    }
}

impl Default for Mailboxes {
    fn default() -> Mailboxes {
        Mailboxes::new()
    }
}

impl Mailboxes {
    /// No mailbox, no route: every mail would be unrouted.
    pub fn new() -> Mailboxes {
        Mailboxes {
            boxes: Vec::new(),
            routes: Vec::new(),
            fallback: None,
            unrouted: None,
            prune_every: Duration::from_secs(3600),
            unrouted_retention: crate::DEFAULT_RETENTION,
        }
    }

    /// Declares `mailbox`; its name must be new and well-formed.
    pub fn mailbox(mut self, mailbox: Mailbox) -> Result<Mailboxes, MailboxError> {
        let name = &mailbox.name;
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(MailboxError::new(format!(
                "the mailbox name {name:?} is not 1 to {MAX_NAME} letters, digits, '-', '_' or '.'"
            )));
        }
        if self.index(name).is_some() {
            return Err(MailboxError::new(format!(
                "the mailbox {name:?} is declared twice"
            )));
        }
        self.boxes.push(mailbox);
        Ok(self)
    }

    /// Routes the mails `route` matches to the declared mailbox `mailbox`,
    /// after the routes declared before. `route` is a [`Route`], a
    /// [`Pattern`], or text: a pattern (`reply+*@example.jp`),
    /// `filter:NAME`, or `filter:NAME pattern`.
    pub fn route<R>(mut self, route: R, mailbox: &str) -> Result<Mailboxes, MailboxError>
    where
        R: TryInto<Route>,
        R::Error: Into<MailboxError>,
    {
        let route = route.try_into().map_err(Into::into)?;
        let index = self.declared(mailbox)?;
        self.routes.push((route, index));
        Ok(self)
    }

    /// The mailbox of the mails (or recipients) that no route matches;
    /// without one they are stored `unrouted`. There is one fallback: a
    /// second is an error (rather than the last one silently winning).
    ///
    /// ```
    /// use cmc_webhook_inbox::mailbox::{MailJob, Mailbox, Mailboxes};
    ///
    /// let print = |job: MailJob| async move { println!("{}", job.mail.subject); Ok::<(), String>(()) };
    /// let mailboxes = Mailboxes::new()
    ///     .mailbox(Mailbox::new("a", print))?
    ///     .mailbox(Mailbox::new("b", print))?
    ///     .fallback("a")?;
    /// let twice = mailboxes.fallback("b").unwrap_err();
    /// assert!(twice.to_string().contains("one fallback"), "{twice}");
    /// # Ok::<(), cmc_webhook_inbox::mailbox::MailboxError>(())
    /// ```
    pub fn fallback(mut self, mailbox: &str) -> Result<Mailboxes, MailboxError> {
        let index = self.declared(mailbox)?;
        if let Some(first) = self.fallback {
            return Err(MailboxError::new(format!(
                "the fallback (`*`) is given twice, to {:?} and to {mailbox:?}: there is one fallback",
                self.boxes[first].name
            )));
        }
        self.fallback = Some(index);
        Ok(self)
    }

    /// Runs `hook` (on the worker's runtime, after the routing is
    /// committed) on each mail stored unrouted: to alert, or to print. It
    /// runs once per routing and is not retried; the unrouted delivery is
    /// stored in any case. At most the worker's concurrency of hooks run at
    /// once (each holds its mail): past that, the hook is skipped for the
    /// mail, with a warning, and each run is cancelled past the worker's
    /// handler timeout.
    ///
    /// ```
    /// use cmc_webhook_inbox::mailbox::{Mailboxes, Unrouted};
    ///
    /// let mailboxes = Mailboxes::new().on_unrouted(|mail: Unrouted| async move {
    ///     eprintln!("nobody takes mail {} for {:?}", mail.mail_id, mail.recipients);
    /// });
    /// # let _ = mailboxes;
    /// ```
    pub fn on_unrouted<F, Fut>(mut self, hook: F) -> Mailboxes
    where
        F: Fn(Unrouted) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.unrouted = Some(Arc::new(move |mail| Box::pin(hook(mail))));
        self
    }

    /// How often the worker deletes the deliveries (and mails) past their
    /// mailbox's retention (every hour by default, at least every second).
    pub fn prune_every(mut self, every: Duration) -> Mailboxes {
        self.prune_every = every.max(Duration::from_secs(1));
        self
    }

    /// How long a mail no mailbox took (stored `unrouted`, wholly) is
    /// kept once it was routed, before the worker deletes it with its
    /// attachments: [`DEFAULT_RETENTION`](crate::DEFAULT_RETENTION)
    /// (30 days, that of the mails) by default. A catch-all inbound rule
    /// with no fallback mailbox would otherwise keep every stranger's mail
    /// for good. [`Inbox::prune`](crate::Inbox::prune) deletes them
    /// too, with the retention it is given.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cmc_webhook_inbox::mailbox::Mailboxes;
    ///
    /// let mailboxes = Mailboxes::new().unrouted_retention(Duration::from_secs(7 * 24 * 3600));
    /// # let _ = mailboxes;
    /// ```
    pub fn unrouted_retention(mut self, retain: Duration) -> Mailboxes {
        self.unrouted_retention = retain;
        self
    }

    /// The declared mailboxes, in order.
    pub fn mailboxes(&self) -> impl Iterator<Item = &Mailbox> {
        self.boxes.iter()
    }

    /// The routes as written, with their mailbox, in the order they are
    /// tried; the fallback last, as `*`.
    pub fn routes(&self) -> impl Iterator<Item = (String, &str)> {
        self.routes
            .iter()
            .map(|(r, i)| (r.to_string(), self.boxes[*i].name.as_str()))
            .chain(
                self.fallback
                    .map(|i| ("*".to_owned(), self.boxes[i].name.as_str())),
            )
    }

    /// The mailboxes as a round's statements see them, by index.
    pub(crate) fn slots(&self) -> Vec<MailboxSlot> {
        self.boxes
            .iter()
            .map(|b| MailboxSlot {
                name: b.name.clone(),
                max_attempts: b.max_attempts,
            })
            .collect()
    }

    /// The routing table a round routes the due mails with.
    pub(crate) fn routing(&self) -> route::Routing<'_> {
        route::Routing {
            routes: &self.routes,
            fallback: self.fallback,
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.boxes.iter().position(|b| b.name == name)
    }

    fn declared(&self, name: &str) -> Result<usize, MailboxError> {
        self.index(name).ok_or_else(|| {
            MailboxError::new(format!(
                "no mailbox is named {name:?}: declare it with Mailboxes::mailbox first"
            ))
        })
    }
}

/// A mail for a mailbox's handler: one row of `cmc_mail_deliveries`, and
/// the mail it delivers.
///
/// ```
/// use cmc_webhook_inbox::mailbox::MailJob;
///
/// async fn handle(mut job: MailJob) -> Result<(), cmc_webhook_inbox::InboxError> {
///     println!("{} in {} for {:?}", job.mail_id, job.mailbox, job.recipients);
///     // Attachments are read when asked for: one at a time ...
///     if let Some(first) = job.mail.attachments.first() {
///         println!("{}: {} bytes", first.filename, job.attachment(0).await?.len());
///     }
///     // ... or all into the mail.
///     job.load_attachments().await?;
///     Ok(())
/// }
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct MailJob {
    /// The delivery's id (`cmc_mail_deliveries.id`): stable across
    /// retries.
    pub id: i64,
    /// The mail's id (`cmc_mails.id`).
    pub mail_id: i64,
    /// The mail's idempotency key.
    pub key: IdempotencyKey,
    /// The mailbox.
    pub mailbox: String,
    /// The envelope recipients that routed to this mailbox (normalised);
    /// empty when the mail named none.
    pub recipients: Vec<String>,
    /// Which run of the handler this is: 1 the first time.
    pub attempt: u32,
    /// When the webhook was stored.
    pub received_at: Timestamp,
    /// The address the webhook came from, as the layer saw it.
    pub client: Option<IpAddr>,
    /// The mail. Its attachments' `data` are empty until
    /// [`load_attachments`](MailJob::load_attachments).
    pub mail: InboundMail,
    store: Store,
}

impl fmt::Debug for MailJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailJob")
            .field("id", &self.id)
            .field("mail_id", &self.mail_id)
            .field("key", &self.key)
            .field("mailbox", &self.mailbox)
            .field("recipients", &self.recipients)
            .field("attempt", &self.attempt)
            .field("received_at", &self.received_at)
            .field("client", &self.client)
            .field("mail", &self.mail)
            .finish()
    }
}

impl MailJob {
    /// The bytes of attachment `index` (0 for `attachment1`), read from the
    /// store now (a chunk at a time, into one buffer of its size); the
    /// mail keeps nothing of them.
    pub async fn attachment(&self, index: usize) -> Result<Bytes, InboxError> {
        read_attachment(&self.store, self.mail_id, &self.mail, index).await
    }

    /// Reads every attachment's bytes into [`mail`](MailJob::mail).
    pub async fn load_attachments(&mut self) -> Result<(), InboxError> {
        load_attachments(&self.store, self.mail_id, &mut self.mail).await
    }
}

async fn read_attachment(
    store: &Store,
    mail_id: i64,
    mail: &InboundMail,
    index: usize,
) -> Result<Bytes, InboxError> {
    let Some(attachment) = mail.attachments.get(index) else {
        return Err(InboxError::new(
            InboxErrorKind::Invalid,
            format!(
                "the mail has {} attachments: there is no attachment {index}",
                mail.attachments.len()
            ),
        ));
    };
    if !attachment.data.is_empty() {
        return Ok(attachment.data.clone());
    }
    match store.attachment(mail_id, index as i64).await? {
        Some(data) => Ok(Bytes::from(data)),
        None => Err(InboxError::new(
            InboxErrorKind::Corrupt,
            format!("cmc_mail_attachments holds no attachment {index} of mail {mail_id}"),
        )),
    }
}

async fn load_attachments(
    store: &Store,
    mail_id: i64,
    mail: &mut InboundMail,
) -> Result<(), InboxError> {
    for i in 0..mail.attachments.len() {
        if mail.attachments[i].data.is_empty() {
            mail.attachments[i].data = read_attachment(store, mail_id, mail, i).await?;
        }
    }
    Ok(())
}

/// A mail that no route took, given to the
/// [`on_unrouted`](Mailboxes::on_unrouted) hook.
#[derive(Clone)]
#[non_exhaustive]
pub struct Unrouted {
    /// The mail's id (`cmc_mails.id`).
    pub mail_id: i64,
    /// The mail's idempotency key.
    pub key: IdempotencyKey,
    /// The recipients no route took (all of them, or those of a mail whose
    /// other recipients were routed); empty when the mail named none.
    pub recipients: Vec<String>,
    /// When the webhook was stored.
    pub received_at: Timestamp,
    /// The address the webhook came from, as the layer saw it.
    pub client: Option<IpAddr>,
    /// The mail. Its attachments' `data` are empty until
    /// [`load_attachments`](Unrouted::load_attachments).
    pub mail: InboundMail,
    store: Store,
}

impl fmt::Debug for Unrouted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unrouted")
            .field("mail_id", &self.mail_id)
            .field("key", &self.key)
            .field("recipients", &self.recipients)
            .field("received_at", &self.received_at)
            .field("client", &self.client)
            .field("mail", &self.mail)
            .finish()
    }
}

impl Unrouted {
    /// The bytes of attachment `index`, read from the store now; see
    /// [`MailJob::attachment`].
    pub async fn attachment(&self, index: usize) -> Result<Bytes, InboxError> {
        read_attachment(&self.store, self.mail_id, &self.mail, index).await
    }

    /// Reads every attachment's bytes into [`mail`](Unrouted::mail).
    pub async fn load_attachments(&mut self) -> Result<(), InboxError> {
        load_attachments(&self.store, self.mail_id, &mut self.mail).await
    }
}

/// Where a delivery is in its life, as the `state` column spells it.
///
/// ```text
///                 claim                Ok(())
/// pending ---------------> processing ---------> delivered --> (pruned)
///    ^                       |   |  |  Ok(bounced)
///    |     Err, attempts     |   |  +-----------> bounced ----> (pruned)
///    +---- failed <----------+   | Err on the last attempt
///    |                           v
///    +-------- replay -------- dead
///
/// unrouted --replay--> (the mail is routed again)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DeliveryState {
    /// Waiting for its mailbox's handler.
    Pending,
    /// Its handler is running (a lease until `locked_until`).
    Processing,
    /// Its handler returned `Ok`.
    Delivered,
    /// Its handler failed; another attempt is due at `run_at`.
    Failed,
    /// Its handler refused the mail on purpose ([`Handled::Bounced`]).
    Bounced,
    /// Its handler failed on every attempt.
    Dead,
    /// No route took it, and there is no fallback.
    Unrouted,
}

impl DeliveryState {
    /// Every state.
    pub const ALL: [DeliveryState; 7] = [
        DeliveryState::Pending,
        DeliveryState::Processing,
        DeliveryState::Delivered,
        DeliveryState::Failed,
        DeliveryState::Bounced,
        DeliveryState::Dead,
        DeliveryState::Unrouted,
    ];

    /// The state's name in the `state` column.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Processing => "processing",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Bounced => "bounced",
            DeliveryState::Dead => "dead",
            DeliveryState::Unrouted => "unrouted",
        }
    }

    /// Whether a replay takes a delivery in this state back to pending.
    pub(crate) fn is_final(&self) -> bool {
        matches!(
            self,
            DeliveryState::Delivered
                | DeliveryState::Failed
                | DeliveryState::Bounced
                | DeliveryState::Dead
        )
    }

    fn from_column(s: &str) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DeliveryState {
    type Err = MailboxError;

    fn from_str(s: &str) -> Result<DeliveryState, MailboxError> {
        DeliveryState::from_column(s.trim()).ok_or_else(|| {
            MailboxError::new(format!(
                "{s:?} is not a delivery state: pending, processing, delivered, failed, \
                 bounced, dead or unrouted"
            ))
        })
    }
}

/// One mail's delivery to one mailbox (or its unrouted row), as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// The delivery's id (`cmc_mail_deliveries.id`).
    pub id: i64,
    /// The mail's id (`cmc_mails.id`).
    pub mail_id: i64,
    /// The mail's idempotency key.
    pub key: IdempotencyKey,
    /// The mailbox; `None` when unrouted.
    pub mailbox: Option<String>,
    /// The envelope recipients that went this way.
    pub recipients: Vec<String>,
    /// The route that matched, as written (`*` for the fallback).
    pub route: Option<String>,
    /// Where the delivery is.
    pub state: DeliveryState,
    /// Handler runs started.
    pub attempts: u32,
    /// The error of the last failed run.
    pub last_error: Option<String>,
    /// Why the handler bounced the mail.
    pub bounce_reason: Option<String>,
    /// When the mail was routed.
    pub created_at: Timestamp,
    /// When a pending or failed delivery is due.
    pub run_at: Timestamp,
    /// When it was delivered, bounced or dead.
    pub done_at: Option<Timestamp>,
    /// The mail's envelope sender.
    pub envelope_from: String,
    /// The mail's subject.
    pub subject: String,
}

impl Delivery {
    fn from_raw(r: store::RawDelivery) -> Result<Delivery, InboxError> {
        let corrupt = |what: String| {
            InboxError::new(
                InboxErrorKind::Corrupt,
                format!("delivery {} does not read back: {what}", r.id),
            )
        };
        Ok(Delivery {
            id: r.id,
            mail_id: r.mail_id,
            key: r
                .key
                .parse()
                .map_err(|e| corrupt(format!("idempotency_key: {e}")))?,
            mailbox: r.mailbox,
            recipients: serde_json::from_str(&r.recipients)
                .map_err(|e| corrupt(format!("recipients: {e}")))?,
            route: r.route,
            state: DeliveryState::from_column(&r.state)
                .ok_or_else(|| corrupt(format!("state {:?}", r.state)))?,
            attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
            last_error: r.last_error,
            bounce_reason: r.bounce_reason,
            created_at: from_millis(r.created_at),
            run_at: from_millis(r.run_at),
            done_at: r.done_at.map(from_millis),
            envelope_from: r.envelope_from,
            subject: r.subject,
        })
    }
}

/// How many deliveries one mailbox (or the unrouted) has in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MailboxCounts {
    /// The mailbox; `None` for the unrouted mails.
    pub mailbox: Option<String>,
    counts: BTreeMap<DeliveryState, u64>,
}

impl MailboxCounts {
    /// The deliveries in `state`.
    pub fn get(&self, state: DeliveryState) -> u64 {
        self.counts.get(&state).copied().unwrap_or(0)
    }

    /// The deliveries in every state.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Grouped by mailbox (in name order, the unrouted last); states this
    /// crate does not know are left out.
    pub(crate) fn from_rows(rows: Vec<(Option<String>, String, i64)>) -> Vec<MailboxCounts> {
        let mut by: BTreeMap<(bool, Option<String>), MailboxCounts> = BTreeMap::new();
        for (mailbox, state, n) in rows {
            let Some(state) = DeliveryState::from_column(&state) else {
                continue;
            };
            let entry = by
                .entry((mailbox.is_none(), mailbox.clone()))
                .or_insert_with(|| MailboxCounts {
                    mailbox,
                    counts: BTreeMap::new(),
                });
            *entry.counts.entry(state).or_default() += u64::try_from(n).unwrap_or(0);
        }
        by.into_values().collect()
    }
}

/// Which deliveries [`Deliveries::list`] and [`Deliveries::replay`]
/// take: all mailboxes and states unless narrowed; a list returns at most
/// [`limit`](DeliveryFilter::limit) of them, after the id
/// [`after`](DeliveryFilter::after).
///
/// ```
/// use cmc_webhook_inbox::mailbox::{DeliveryFilter, DeliveryState};
///
/// let dead_tickets = DeliveryFilter::all().mailbox("tickets").states([DeliveryState::Dead]);
/// let unrouted = DeliveryFilter::unrouted();
/// # let _ = (dead_tickets, unrouted);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub(crate) mailbox: Which,
    pub(crate) states: Vec<DeliveryState>,
    pub(crate) mail: Option<i64>,
    pub(crate) after: i64,
    pub(crate) limit: usize,
}

impl DeliveryFilter {
    /// Every delivery (a list: the first 100).
    pub fn all() -> DeliveryFilter {
        DeliveryFilter {
            mailbox: Which::Any,
            states: Vec::new(),
            mail: None,
            after: 0,
            limit: 100,
        }
    }

    /// The unrouted mails.
    pub fn unrouted() -> DeliveryFilter {
        DeliveryFilter {
            mailbox: Which::Unrouted,
            states: vec![DeliveryState::Unrouted],
            ..DeliveryFilter::all()
        }
    }

    /// Only the deliveries of mailbox `name`.
    pub fn mailbox(mut self, name: impl Into<String>) -> DeliveryFilter {
        self.mailbox = Which::Named(name.into());
        self
    }

    /// Only the deliveries in one of `states`.
    pub fn states(mut self, states: impl IntoIterator<Item = DeliveryState>) -> DeliveryFilter {
        self.states = states.into_iter().collect();
        self
    }

    /// Only the deliveries of mail `id` (`cmc_mails.id`).
    pub fn mail(mut self, id: i64) -> DeliveryFilter {
        self.mail = Some(id);
        self
    }

    /// Only deliveries whose id is greater than `id`: the next page.
    pub fn after(mut self, id: i64) -> DeliveryFilter {
        self.after = id;
        self
    }

    /// At most `n` deliveries per list (100 by default).
    pub fn limit(mut self, n: usize) -> DeliveryFilter {
        self.limit = n;
        self
    }
}

impl DeliveryFilter {
    /// The filter as the store's statements read it.
    fn query(&self) -> DeliveryQuery {
        DeliveryQuery {
            mailbox: self.mailbox.clone(),
            states: self.states.iter().map(DeliveryState::as_str).collect(),
            mail: self.mail,
            after: self.after,
            limit: self.limit,
        }
    }

    /// A replay of what the filter takes: its finished deliveries back to
    /// pending, then, when it takes the state `unrouted` and names no
    /// mailbox, the mails of its unrouted ones routed again.
    fn replay(&self) -> DeliveryReplay {
        let mut finished = self.query();
        finished.states = self
            .states
            .iter()
            .filter(|s| s.is_final())
            .map(DeliveryState::as_str)
            .collect();
        DeliveryReplay {
            finished,
            reroute: self.states.contains(&DeliveryState::Unrouted)
                && !matches!(self.mailbox, Which::Named(_)),
        }
    }
}

/// What [`Deliveries::replay`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Replayed {
    /// Deliveries set pending again, their attempts reset.
    pub deliveries: u64,
    /// Unrouted mails set to be routed again.
    pub rerouted: u64,
}

/// What [`Deliveries::prune`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PrunedDeliveries {
    /// Delivered and bounced deliveries.
    pub deliveries: u64,
    /// Mails (with their attachments) that no delivery was left of.
    pub mails: u64,
}

/// The deliveries of an inbox's mails to its mailboxes; made by
/// [`Inbox::deliveries`](super::Inbox::deliveries).
///
/// ```
/// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
/// use cmc_webhook_inbox::mailbox::{DeliveryFilter, DeliveryState};
///
/// let deliveries = inbox.deliveries();
/// for mailbox in deliveries.counts().await? {
///     println!("{:?}: {} dead", mailbox.mailbox, mailbox.get(DeliveryState::Dead));
/// }
/// let mail = deliveries.list(&DeliveryFilter::all().mail(42)).await?;
/// let replayed = deliveries.replay(&DeliveryFilter::all().states([DeliveryState::Dead])).await?;
/// # let _ = (mail, replayed);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Deliveries {
    inbox: Inbox,
}

impl Deliveries {
    pub(crate) fn new(inbox: Inbox) -> Deliveries {
        Deliveries { inbox }
    }

    /// How many deliveries each mailbox has in each state, in mailbox name
    /// order, the unrouted last.
    pub async fn counts(&self) -> Result<Vec<MailboxCounts>, InboxError> {
        let rows = self.inbox.inner.store.delivery_counts().await?;
        Ok(MailboxCounts::from_rows(rows))
    }

    /// The deliveries `filter` takes, in order of id.
    pub async fn list(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, InboxError> {
        self.inbox
            .inner
            .store
            .delivery_list(&filter.query())
            .await?
            .into_iter()
            .map(Delivery::from_raw)
            .collect()
    }

    /// Sets the delivered, failed, bounced or dead deliveries `filter`
    /// takes (only those: dead when it names no state) back to pending
    /// with their attempts reset, and routes the mails of its unrouted
    /// ones again (when it takes the state `unrouted`); wakes the workers.
    pub async fn replay(&self, filter: &DeliveryFilter) -> Result<Replayed, InboxError> {
        let mut filter = filter.clone();
        if filter.states.is_empty() {
            filter.states = vec![DeliveryState::Dead];
        }
        let (deliveries, rerouted) = self
            .inbox
            .inner
            .store
            .delivery_replay(&filter.replay(), millis(self.inbox.now()))
            .await?;
        self.inbox.wake();
        Ok(Replayed {
            deliveries,
            rerouted,
        })
    }

    /// Deletes the deliveries of `mailbox` delivered or bounced longer
    /// than `retain` ago, and the mails (with their attachments) that no
    /// delivery is left of.
    pub async fn prune(
        &self,
        mailbox: &str,
        retain: Duration,
    ) -> Result<PrunedDeliveries, InboxError> {
        let before = millis(self.inbox.now())
            .saturating_sub(i64::try_from(retain.as_millis()).unwrap_or(i64::MAX));
        let mut pruned = PrunedDeliveries::default();
        loop {
            let (deliveries, mails) = self
                .inbox
                .inner
                .store
                .delivery_prune(mailbox, before)
                .await?;
            pruned.deliveries += deliveries;
            pruned.mails += mails;
            if deliveries < store::PRUNE_SLICE {
                return Ok(pruned);
            }
        }
    }
}

impl Deliveries {
    /// Deletes the mails no mailbox took (only an unrouted delivery left)
    /// routed longer than `retain` ago, with their attachments, a slice at
    /// a time; returns how many.
    pub async fn prune_unrouted(&self, retain: Duration) -> Result<u64, InboxError> {
        let before = millis(self.inbox.now())
            .saturating_sub(i64::try_from(retain.as_millis()).unwrap_or(i64::MAX));
        let mut pruned = 0;
        loop {
            let mails = self.inbox.inner.store.prune_unrouted(before).await?;
            pruned += mails;
            if mails < store::PRUNE_SLICE {
                return Ok(pruned);
            }
        }
    }
}

/// What a job and the unrouted hook take from a mail's row: its key, the
/// mail, when it was stored and where it came from; or which column does
/// not read back.
struct ReadMail {
    key: IdempotencyKey,
    mail: InboundMail,
    received_at: Timestamp,
    client: Option<IpAddr>,
}

impl ReadMail {
    fn from_row(row: store::MailRow) -> Result<ReadMail, String> {
        Ok(ReadMail {
            key: row
                .key
                .parse()
                .map_err(|e| format!("idempotency_key: {e}"))?,
            mail: serde_json::from_str(&row.json).map_err(|e| format!("mail: {e}"))?,
            received_at: from_millis(row.received_at),
            client: row.client.and_then(|c| c.parse().ok()),
        })
    }
}

/// A claimed delivery as its handler's job, or why it does not read back.
pub(crate) fn into_job(
    d: store::ClaimedDelivery,
    mailboxes: &Mailboxes,
    store: &Store,
) -> Result<MailJob, String> {
    let corrupt = |what: String| format!("the stored delivery does not read back: {what}");
    let row = d
        .mail
        .ok_or_else(|| corrupt(format!("its mail {} is gone", d.mail_id)))?;
    let read = ReadMail::from_row(row).map_err(corrupt)?;
    Ok(MailJob {
        id: d.id,
        mail_id: d.mail_id,
        key: read.key,
        mailbox: mailboxes.boxes[d.mailbox].name.clone(),
        recipients: serde_json::from_str(&d.recipients)
            .map_err(|e| corrupt(format!("recipients: {e}")))?,
        attempt: u32::try_from(d.attempts).unwrap_or(u32::MAX),
        received_at: read.received_at,
        client: read.client,
        mail: read.mail,
        store: store.clone(),
    })
}

/// The unrouted mail `mail_id` for the hook, read back.
pub(crate) async fn unrouted(
    store: &Store,
    mail_id: i64,
    recipients: Vec<String>,
) -> Result<Unrouted, InboxError> {
    let corrupt =
        |what: String| InboxError::new(InboxErrorKind::Corrupt, format!("mail {mail_id}: {what}"));
    let row = store
        .mail_row(mail_id)
        .await?
        .ok_or_else(|| corrupt("the row is gone".into()))?;
    let mut read = ReadMail::from_row(row).map_err(corrupt)?;
    store.load_mail_apart(mail_id, &mut read.mail).await?;
    Ok(Unrouted {
        mail_id,
        key: read.key,
        recipients,
        received_at: read.received_at,
        client: read.client,
        mail: read.mail,
        store: store.clone(),
    })
}
