//! Declaring mailboxes, and the routes that send mails to them.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::super::backoff::Backoff;
use super::super::store::MailboxSlot;
use super::handler::{Handled, Handler, MailJob, Unrouted, UnroutedHook};
use super::{MailboxError, Route, route};

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
            retention: crate::DEFAULT_RETENTION,
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
/// [`Worker::mailboxes`](crate::Worker::mailboxes) or
/// [`Inbox::mailbox_worker`](crate::Inbox::mailbox_worker). See the
/// [module documentation](super).
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
    /// [`Pattern`](super::Pattern), or text: a pattern (`reply+*@example.jp`),
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
