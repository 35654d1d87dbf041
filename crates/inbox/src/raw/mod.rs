//! Each webhook as it arrived: the raw requests the inbox keeps (their
//! options, [`RawRequests`], and what is read back, [`RawRequest`]), and
//! [`Inbox::reparse`](crate::Inbox::reparse), which reads them again with
//! the current parser.
//!
//! - **What is kept.** Each request whose rows are stored, in the same
//!   transaction as its rows (which point to it: `raw_request_id`), with
//!   the headers that matter: `Content-Type`, `User-Agent`,
//!   `Content-Length`, `Transfer-Encoding` and the client's address. Never
//!   `Authorization`.
//! - **The `api_key`.** CMC sends it in the body. The kept body has the
//!   value of every `api_key` field (JSON member at any depth, form field,
//!   multipart part) replaced by `[redacted]`, the rest byte for byte, so
//!   that it still parses (reparsing checks no key). A body whose parsed
//!   `api_key` could not be found to redact is not kept (a warning says
//!   so): a secret is never stored.
//! - **Attachments stored once.** A multipart part whose content is, byte
//!   for byte, an attachment of the mail stored with it (512 bytes or
//!   more) is kept as a reference to that attachment's chunks in
//!   `cmc_mail_attachments`; reading the body back puts the bytes in
//!   again, checked against the kept body's SHA-256.
//! - **Repeats.** The same kept body arriving again (CMC resends a batch)
//!   is stored once, by its SHA-256, and counted in its `repeats`.
//! - **Refused bodies.** A body the parser refused (400) is kept with the
//!   reason, within a budget per client and time window (see
//!   [`RefusedBudget`]), so that "CMC says it sent it, we said 400" can
//!   be read and reparsed once the parser is fixed. Other refusals (401,
//!   413, 415) are not kept.
//! - **Retention.** Their own: 7 days by default
//!   ([`DEFAULT_RAW_RETENTION`]), applied by [`Inbox::prune`](crate::Inbox::prune).
//!   A row whose raw request was pruned reads as before.

mod budget;
mod keep;
mod reparse;
pub(crate) mod tee;

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;

pub(crate) use budget::Budget;
pub use budget::RefusedBudget;
pub(crate) use keep::{KeptBody, Piece, Stored, keep, sha256};
pub use reparse::{Changed, Reparse, ReparseReport, Reparsed};

/// How long raw requests are kept by default: 7 days.
pub const DEFAULT_RAW_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What an inbox keeps of each request as it arrived; see the
/// [module](self). On by default, for [`DEFAULT_RAW_RETENTION`].
///
/// ```
/// use std::time::Duration;
/// use cmc_webhook_inbox::{Inbox, RawRequests, RefusedBudget};
///
/// let builder = Inbox::sqlite("inbox.sqlite3").raw_requests(
///     RawRequests::default()
///         .retention(Duration::from_secs(3 * 24 * 3600))
///         .refused(RefusedBudget::default().per_client(10, 256 << 10)),
/// );
/// # let _ = builder;
/// ```
#[derive(Debug, Clone)]
pub struct RawRequests {
    pub(crate) keep: bool,
    pub(crate) retention: Duration,
    pub(crate) refused: RefusedBudget,
}

impl Default for RawRequests {
    fn default() -> Self {
        RawRequests {
            keep: true,
            retention: DEFAULT_RAW_RETENTION,
            refused: RefusedBudget::default(),
        }
    }
}

impl RawRequests {
    /// Whether requests are kept at all (`true` by default). Off, rows
    /// are stored as before, without a `raw_request_id`.
    pub fn keep(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// How long a raw request is kept after it arrived ([`Inbox::prune`](crate::Inbox::prune)
    /// deletes it after that).
    pub fn retention(mut self, retain: Duration) -> Self {
        self.retention = retain;
        self
    }

    /// The budget of refused bodies kept.
    pub fn refused(mut self, budget: RefusedBudget) -> Self {
        self.refused = budget;
        self
    }

    /// The retention in force.
    pub fn retention_period(&self) -> Duration {
        self.retention
    }
}

/// What the inbox answered a kept request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RawOutcome {
    /// Its rows were stored (200).
    Stored,
    /// The parser refused it (400); `reason` says why.
    Refused,
}

impl RawOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RawOutcome::Stored => "stored",
            RawOutcome::Refused => "refused",
        }
    }
}

/// A kept request as listed (its body is read by [`Inbox::raw_body`](crate::Inbox::raw_body)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawRequest {
    /// Its id, which rows name in `raw_request_id`.
    pub id: i64,
    /// When it (first) arrived.
    pub received_at: Timestamp,
    /// The client's address.
    pub client: Option<String>,
    /// The headers kept.
    pub content_type: String,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// `Content-Length`, as sent.
    pub content_length: Option<String>,
    /// `Transfer-Encoding`, as sent.
    pub transfer_encoding: Option<String>,
    /// What it was answered.
    pub outcome: RawOutcome,
    /// Why it was refused.
    pub reason: Option<String>,
    /// The SHA-256 of the kept body, 64 hex digits.
    pub sha256: String,
    /// The kept body's length.
    pub size: u64,
    /// The mail whose attachments its body refers to.
    pub mail: Option<i64>,
    /// Times the same body arrived again.
    pub repeats: u64,
}

pub(crate) type RawRow = RawRequest;

/// The headers of a request that are kept.
#[derive(Debug, Clone, Default)]
pub(crate) struct Headers {
    pub content_type: String,
    pub user_agent: Option<String>,
    pub content_length: Option<String>,
    pub transfer_encoding: Option<String>,
}

impl Headers {
    pub fn of(headers: &http::HeaderMap) -> Headers {
        let get = |name: http::header::HeaderName| {
            headers
                .get(name)
                .map(|v| cmc_webhook_core::printable(&String::from_utf8_lossy(v.as_bytes()), 300))
        };
        Headers {
            content_type: get(http::header::CONTENT_TYPE).unwrap_or_default(),
            user_agent: get(http::header::USER_AGENT),
            content_length: get(http::header::CONTENT_LENGTH),
            transfer_encoding: get(http::header::TRANSFER_ENCODING),
        }
    }
}

/// A raw request to store.
pub(crate) struct NewRaw {
    pub received_at: i64,
    pub client: Option<String>,
    pub content_type: String,
    pub user_agent: Option<String>,
    pub content_length: Option<String>,
    pub transfer_encoding: Option<String>,
    pub outcome: RawOutcome,
    pub reason: Option<String>,
    pub body: KeptBody,
}

impl fmt::Debug for NewRaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewRaw")
            .field("content_type", &self.content_type)
            .field("outcome", &self.outcome)
            .field("size", &self.body.size)
            .field("sha256", &self.body.sha256)
            .finish_non_exhaustive()
    }
}

impl NewRaw {
    pub fn new(
        headers: Headers,
        client: Option<IpAddr>,
        received_at: Timestamp,
        outcome: RawOutcome,
        reason: Option<String>,
        body: KeptBody,
    ) -> NewRaw {
        NewRaw {
            received_at: received_at.as_millisecond(),
            client: client.map(|c| c.to_string()),
            content_type: headers.content_type,
            user_agent: headers.user_agent,
            content_length: headers.content_length,
            transfer_encoding: headers.transfer_encoding,
            outcome,
            reason,
            body,
        }
    }

    /// Whether the kept body refers to what its mail stores apart.
    pub fn refers_to_attachments(&self) -> bool {
        self.body
            .pieces
            .iter()
            .any(|p| matches!(p, Piece::Attachment { .. }))
    }
}

/// A part of a kept body as stored: its bytes, or where they are.
#[derive(Debug)]
pub(crate) enum StoredPart {
    Bytes(Vec<u8>),
    /// At this position in `cmc_mail_attachments`, for the request's mail.
    Attachment(i64),
    /// The subject of the event with this key, in `cmc_event_texts`.
    EventText(String),
}

/// Fails unless `body` is the kept body recorded.
pub(crate) fn check(id: i64, body: &[u8], size: u64, expected: &str) -> Result<(), String> {
    if body.len() as u64 != size || sha256(body) != expected {
        return Err(format!(
            "raw request {id} does not read back: {} bytes, not the {size} bytes of SHA-256 {expected}",
            body.len()
        ));
    }
    Ok(())
}

/// The rows of `webhook`, with the request it arrived in when `raw` holds
/// its body and headers. A body whose parsed `api_key` was not found to
/// redact is not kept (a warning says so).
pub(crate) fn arrival(
    webhook: cmc_webhook_core::Webhook,
    client: Option<IpAddr>,
    now: Timestamp,
    raw: Option<(Bytes, Headers)>,
) -> Result<crate::rows::Arrival, crate::error::InboxError> {
    let api_key = match &webhook {
        cmc_webhook_core::Webhook::Events(b) => b.api_key.clone(),
        cmc_webhook_core::Webhook::Inbound(m) => m.api_key.clone(),
    };
    let mut arrival = crate::rows::Arrival::new(webhook, client, now)?;
    let Some((body, headers)) = raw else {
        return Ok(arrival);
    };
    let mut stored = Stored::default();
    if let Some(m) = &arrival.mail {
        stored.attachments = m.attachments.iter().map(|a| &a[..]).collect();
        stored.texts = m.apart.iter().map(|(p, b)| (*p, &b[..])).collect();
    }
    stored.subjects = arrival
        .events
        .iter()
        .filter_map(|e| e.subject.as_ref().map(|s| (e.key.as_str(), &s[..])))
        .collect();
    let kept = keep(&body, &headers.content_type, &stored);
    drop(stored);
    drop(body);
    let secret_left = api_key.as_deref().is_some_and(|key| {
        !key.is_empty()
            && (kept.redacted == 0
                || (key.len() >= 8
                    && kept.pieces.iter().any(|p| match p {
                        Piece::Bytes(b) => memchr::memmem::find(b, key.as_bytes()).is_some(),
                        Piece::Attachment { .. } | Piece::EventText { .. } => false,
                    })))
    });
    if secret_left {
        tracing::warn!(
            content_type = %headers.content_type,
            "the request's api_key could not be found to redact: its body is not kept"
        );
        return Ok(arrival);
    }
    arrival.raw = crate::rows::RawRef::Keep(Box::new(NewRaw::new(
        headers,
        client,
        now,
        RawOutcome::Stored,
        None,
        kept,
    )));
    Ok(arrival)
}

/// The spellings of `api_key` a refused body may hold that the scan
/// redacts: a body holding more of them than it redacted is not kept.
const API_KEY_SPELLINGS: [&[u8]; 3] = [b"api_key", b"api%5fkey", b"api\\u005fkey"];

/// The kept form of a refused body, unless it may hold an `api_key` the
/// scan did not redact (a body cut short, or not well formed).
pub(crate) fn refused(body: &Bytes, content_type: &str) -> Option<KeptBody> {
    let kept = keep(body, content_type, &Stored::default());
    let lower = body.to_ascii_lowercase();
    let mentions: usize = API_KEY_SPELLINGS
        .iter()
        .map(|s| memchr::memmem::find_iter(&lower, s).count())
        .sum();
    (mentions <= kept.redacted).then_some(kept)
}

impl crate::Inbox {
    /// Keeps a body the parser refused, within the budget, on a task of
    /// its own (the refusal is answered at once).
    pub(crate) fn keep_refused(
        &self,
        body: Bytes,
        headers: Headers,
        client: Option<IpAddr>,
        reason: String,
    ) {
        if !self.inner.raw.keep {
            return;
        }
        let max = self.inner.refused.max_body();
        let (body, reason) = if body.len() > max {
            let total = body.len();
            (
                body.slice(..max),
                format!("{reason} (the first {max} of {total} bytes kept)"),
            )
        } else {
            (body, reason)
        };
        if !self.inner.refused.take(client, body.len()) {
            tracing::debug!(client = ?client, "a refused body is over the budget of refused bodies: not kept");
            return;
        }
        let Some(kept) = refused(&body, &headers.content_type) else {
            tracing::debug!(
                "a refused body may hold an api_key that could not be redacted: not kept"
            );
            return;
        };
        let raw = NewRaw::new(
            headers,
            client,
            self.now(),
            RawOutcome::Refused,
            Some(cmc_webhook_core::printable(&reason, 1000)),
            kept,
        );
        let store = self.inner.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.insert_refused(&raw).await {
                tracing::warn!(error = %e, "could not keep a refused body");
            }
        });
    }

    /// Up to `limit` kept requests with an id above `after`, in order of
    /// id: what arrived, and what it was answered.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// for r in inbox.raw_requests(0, 100).await? {
    ///     println!("{} {} {:?} {} bytes", r.id, r.received_at, r.outcome, r.size);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn raw_requests(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<RawRequest>, crate::error::InboxError> {
        self.inner
            .store
            .raw_list(after, i64::try_from(limit).unwrap_or(i64::MAX), None)
            .await
    }

    /// The kept body of raw request `id`, byte for byte (its `api_key`
    /// values redacted), its attachments read back from the mail's: an
    /// error of kind [`Invalid`](crate::InboxErrorKind::Invalid) when it is
    /// not stored (pruned), [`Corrupt`](crate::InboxErrorKind::Corrupt)
    /// when it does not read back (its mail pruned first).
    pub async fn raw_body(&self, id: i64) -> Result<Bytes, crate::error::InboxError> {
        let row = self
            .inner
            .store
            .raw_list(id - 1, 1, Some(&[id]))
            .await?
            .pop()
            .ok_or_else(|| {
                crate::error::InboxError::new(
                    crate::error::InboxErrorKind::Invalid,
                    format!("raw request {id} is not stored (pruned?)"),
                )
            })?;
        self.read_raw_body(&row).await
    }

    pub(crate) async fn read_raw_body(
        &self,
        row: &RawRequest,
    ) -> Result<Bytes, crate::error::InboxError> {
        let corrupt =
            |why: String| crate::error::InboxError::new(crate::error::InboxErrorKind::Corrupt, why);
        match self.inner.store.raw_body(row.id).await? {
            Ok(whole) => {
                check(row.id, &whole, row.size, &row.sha256).map_err(corrupt)?;
                Ok(Bytes::from(whole))
            }
            Err(parts) => {
                // Put back together a part at a time, each reference read
                // from where its bytes are stored.
                let id = row.id;
                let mut body = Vec::with_capacity(usize::try_from(row.size).unwrap_or(0));
                for (start, length, part) in parts {
                    if start != body.len() as i64 {
                        return Err(corrupt(format!(
                            "raw request {id}: a part at {start} is out of place"
                        )));
                    }
                    let gone = |what: String| {
                        corrupt(format!(
                            "raw request {id}: {what} is no longer stored (pruned before it?)"
                        ))
                    };
                    let bytes = match part {
                        StoredPart::Bytes(bytes) => bytes,
                        StoredPart::Attachment(position) => {
                            let mail = row.mail.ok_or_else(|| gone("its mail".into()))?;
                            self.inner
                                .store
                                .attachment(mail, position)
                                .await?
                                .ok_or_else(|| gone(format!("mail {mail}'s part {position}")))?
                        }
                        StoredPart::EventText(key) => {
                            let event = self
                                .inner
                                .store
                                .existing(crate::job::Kind::Event, &key)
                                .await?
                                .ok_or_else(|| gone(format!("event {key}")))?
                                .0;
                            self.inner
                                .store
                                .event_text(event, "subject")
                                .await?
                                .ok_or_else(|| gone(format!("event {key}'s subject")))?
                        }
                    };
                    if bytes.len() as i64 != length {
                        return Err(corrupt(format!(
                            "raw request {id}: the part at {start} is {} bytes, not {length}",
                            bytes.len()
                        )));
                    }
                    body.extend_from_slice(&bytes);
                }
                check(id, &body, row.size, &row.sha256).map_err(corrupt)?;
                Ok(Bytes::from(body))
            }
        }
    }
}
