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

mod access;
pub(crate) mod arrival;
pub(crate) mod budget;
pub(crate) mod keep;
mod reparse;
pub(crate) mod tee;
pub(crate) mod types;

pub use budget::RefusedBudget;
pub use reparse::{Changed, Reparse, ReparseReport, Reparsed};
pub use types::{DEFAULT_RAW_RETENTION, RawOutcome, RawRequest, RawRequests};
