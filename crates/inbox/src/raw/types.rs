//! The raw requests' values: the options ([`RawRequests`]), what is
//! kept and read back, and the headers that matter.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;

use super::budget::RefusedBudget;
use super::keep::{KeptBody, Piece, sha256};

/// How long raw requests are kept by default: 7 days.
pub const DEFAULT_RAW_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// What an inbox keeps of each request as it arrived; see the
/// [module](crate::raw). On by default, for [`DEFAULT_RAW_RETENTION`].
///
#[cfg_attr(feature = "sqlite", doc = "```")]
#[cfg_attr(not(feature = "sqlite"), doc = "```ignore")]
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
    /// The name of the source (CMC account) it came from; `None` for a
    /// refused body whose source the layer had not decided (the body's
    /// `api_key` decides it, and the body was not read).
    pub source: Option<String>,
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
    pub source: Option<String>,
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
        source: Option<&str>,
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
            source: source.map(str::to_owned),
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
