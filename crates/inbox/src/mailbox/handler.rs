//! What a mailbox's handler and the unrouted hook are given, and how a
//! claimed delivery becomes a handler's job.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use jiff::Timestamp;

use super::super::clock::from_millis;
use super::super::error::{InboxError, InboxErrorKind};
use super::super::store::Store;
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
pub(super) type Handler = Arc<dyn Fn(MailJob) -> HandlerFuture + Send + Sync>;
pub(super) type UnroutedHook =
    Arc<dyn Fn(Unrouted) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

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
    /// The name of the source (CMC account) the mail came from.
    pub source: String,
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
            .field("source", &self.source)
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
/// [`on_unrouted`](crate::mailbox::Mailboxes::on_unrouted) hook.
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
    /// The name of the source (CMC account) the mail came from.
    pub source: String,
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
            .field("source", &self.source)
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

/// A mail read back from the inbox by its id, with its text fields
/// stored apart read in; its attachments' bytes are read when asked for
/// ([`attachment`](StoredMail::attachment)). From
/// [`Inbox::mail`](crate::Inbox::mail).
///
/// ```
/// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
/// if let Some(stored) = inbox.mail(7).await? {
///     println!("{} from {}", stored.mail.subject, stored.mail.envelope_from);
///     for (n, a) in stored.mail.attachments.iter().enumerate() {
///         println!("{}: {} bytes", a.safe_filename(), stored.attachment(n).await?.len());
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct StoredMail {
    /// The mail's id (`cmc_mails.id`).
    pub mail_id: i64,
    /// The mail's idempotency key.
    pub key: IdempotencyKey,
    /// When the webhook was stored.
    pub received_at: Timestamp,
    /// The address the webhook came from, as the layer saw it.
    pub client: Option<IpAddr>,
    /// The name of the source (CMC account) the mail came from.
    pub source: String,
    /// The mail. Its attachments' `data` are empty: read them with
    /// [`attachment`](StoredMail::attachment).
    pub mail: InboundMail,
    store: Store,
}

impl fmt::Debug for StoredMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredMail")
            .field("mail_id", &self.mail_id)
            .field("key", &self.key)
            .field("received_at", &self.received_at)
            .field("client", &self.client)
            .field("source", &self.source)
            .field("mail", &self.mail)
            .finish()
    }
}

impl StoredMail {
    /// The bytes of attachment `index` (0 for `attachment1`), read from the
    /// store now; an error of kind `Invalid` when the mail has no such
    /// attachment.
    pub async fn attachment(&self, index: usize) -> Result<Bytes, InboxError> {
        read_attachment(&self.store, self.mail_id, &self.mail, index).await
    }
}

impl crate::Inbox {
    /// The mail of row `id` of `cmc_mails`, read back (`None` when there
    /// is no such row, or it was pruned): what a console shows of a mail.
    /// A row whose columns do not read back is an error of kind
    /// `Corrupt`.
    pub async fn mail(&self, id: i64) -> Result<Option<StoredMail>, InboxError> {
        let store = &self.inner.store;
        let Some(row) = store.mail_row(id).await? else {
            return Ok(None);
        };
        let mut read = ReadMail::from_row(row).map_err(|what| {
            InboxError::new(InboxErrorKind::Corrupt, format!("mail {id}: {what}"))
        })?;
        store.load_mail_apart(id, &mut read.mail).await?;
        Ok(Some(StoredMail {
            mail_id: id,
            key: read.key,
            received_at: read.received_at,
            client: read.client,
            source: read.source,
            mail: read.mail,
            store: store.clone(),
        }))
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
    source: String,
}

impl ReadMail {
    fn from_row(row: crate::store::MailRow) -> Result<ReadMail, String> {
        Ok(ReadMail {
            key: row
                .key
                .parse()
                .map_err(|e| format!("idempotency_key: {e}"))?,
            mail: serde_json::from_str(&row.json).map_err(|e| format!("mail: {e}"))?,
            received_at: from_millis(row.received_at),
            client: row.client.and_then(|c| c.parse().ok()),
            source: row.source,
        })
    }
}

/// A claimed delivery as the job of the handler of `mailbox` (its name),
/// or why it does not read back.
pub(crate) fn into_job(
    d: crate::store::ClaimedDelivery,
    mailbox: String,
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
        mailbox,
        recipients: serde_json::from_str(&d.recipients)
            .map_err(|e| corrupt(format!("recipients: {e}")))?,
        attempt: u32::try_from(d.attempts).unwrap_or(u32::MAX),
        received_at: read.received_at,
        client: read.client,
        source: read.source,
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
        source: read.source,
        mail: read.mail,
        store: store.clone(),
    })
}
