//! A webhook as the rows it is stored in, and rows back as [`Job`]s: the
//! same for every backend.

use std::net::IpAddr;

use bytes::Bytes;
use jiff::Timestamp;

use super::error::{InboxError, InboxErrorKind};
use super::job::{Item, Job, JobId, Kind, State};
use super::ops::{DeadRow, HistoryEntry};
use cmc_webhook_core::{Event, IdempotencyKey, InboundMail, Text, Webhook};

/// One event's row, before it is inserted.
#[derive(Debug)]
pub(crate) struct NewEvent {
    pub key: String,
    pub event_type: String,
    pub message_id: Option<String>,
    pub recipient: Option<String>,
    pub status: Option<String>,
    pub created: Option<String>,
    pub json: String,
    /// The subject, when it is long: stored apart (`cmc_event_texts`),
    /// and empty in `json`.
    pub subject: Option<Bytes>,
}

/// The subject of `event`, for the kinds that have one.
pub(crate) fn subject_mut(event: &mut Event) -> Option<&mut Text> {
    match event {
        Event::Delivery(d) => Some(&mut d.subject),
        Event::Bounce(b) => Some(&mut b.subject),
        _ => None,
    }
}

/// One mail's row and its attachments' bytes, before they are inserted.
#[derive(Debug)]
pub(crate) struct NewMail {
    pub key: String,
    pub message_id: Option<String>,
    pub envelope_from: String,
    pub envelope_to: String,
    pub subject: String,
    pub filter: String,
    pub json: String,
    /// The attachments' bytes, still shared with the request's buffers.
    pub attachments: Vec<Bytes>,
    pub size: i64,
    /// The text fields stored apart (see [`APART`]), as `(position,
    /// bytes)`, still shared with the request's buffers.
    pub apart: Vec<(i64, Bytes)>,
}

impl NewMail {
    /// Every value stored in `cmc_mail_attachments`, as `(position,
    /// bytes)`: the attachments, then the text fields stored apart.
    pub fn stored_apart(&self) -> impl Iterator<Item = (i64, &Bytes)> {
        self.attachments
            .iter()
            .enumerate()
            .map(|(p, d)| (p as i64, d))
            .chain(self.apart.iter().map(|(p, d)| (*p, d)))
    }
}

/// A text field longer than this is stored apart from the row's JSON, in
/// chunks like an attachment's: written whole into one value, SQLite and
/// sqlx each copied it several times.
pub(crate) const INLINE_TEXT: usize = 64 << 10;

/// The longest prefix of a long subject kept in `cmc_mails.subject` (a
/// summary for listings; the whole subject is stored apart).
pub(crate) const SUBJECT_PREFIX: usize = 1000;

/// The positions in `cmc_mail_attachments` of a mail's text fields stored
/// apart (attachments take 0, 1, ...).
pub(crate) const APART: [(i64, MailText); 3] = [
    (-1, MailText::Text),
    (-2, MailText::Html),
    (-3, MailText::Subject),
];

/// A text field of a mail that may be stored apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MailText {
    Text,
    Html,
    Subject,
}

impl MailText {
    /// Takes the field out of `mail` when it is long, leaving it empty.
    fn take_long(self, mail: &mut InboundMail) -> Option<Text> {
        let field = match self {
            MailText::Text => &mut mail.text,
            MailText::Html => &mut mail.html,
            MailText::Subject => {
                if mail.subject.len() <= INLINE_TEXT {
                    return None;
                }
                return Some(std::mem::take(&mut mail.subject));
            }
        };
        if field.as_ref().is_some_and(|t| t.len() > INLINE_TEXT) {
            field.take()
        } else {
            None
        }
    }

    /// Whether the mail's row left this field empty (so it may be stored
    /// apart).
    pub fn is_empty_in(self, mail: &InboundMail) -> bool {
        match self {
            MailText::Text => mail.text.is_none(),
            MailText::Html => mail.html.is_none(),
            MailText::Subject => mail.subject.is_empty(),
        }
    }

    /// Puts a field read back into `mail`.
    pub fn put(self, mail: &mut InboundMail, text: Text) {
        match self {
            MailText::Text => mail.text = Some(text),
            MailText::Html => mail.html = Some(text),
            MailText::Subject => mail.subject = text,
        }
    }
}

/// The longest prefix of `s` within `max` bytes, cut at a character.
pub(crate) fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The largest chunk of an attachment stored in one row.
pub(crate) const ATTACHMENT_CHUNK: usize = 1 << 20;

/// The chunks an attachment is stored in, as `(start, bytes)`: at most
/// [`ATTACHMENT_CHUNK`] bytes each, and one empty chunk for an empty
/// attachment (so that every attachment has a row).
pub(crate) fn chunks(data: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let count = data.len().div_ceil(ATTACHMENT_CHUNK).max(1);
    (0..count).map(move |i| {
        let start = i * ATTACHMENT_CHUNK;
        (
            start,
            &data[start..data.len().min(start + ATTACHMENT_CHUNK)],
        )
    })
}

/// A mail's attachments assembled from their chunks: one buffer of its
/// exact size per attachment, each chunk checked to come in its place.
pub(crate) struct Assembly {
    mail: i64,
    attachments: Vec<Vec<u8>>,
}

impl Assembly {
    /// Buffers for the `(position, total size)` of each attachment of
    /// `mail`, in order of position.
    pub fn new(mail: i64, sizes: &[(i64, i64)]) -> Result<Assembly, String> {
        let mut attachments: Vec<Vec<u8>> = Vec::with_capacity(sizes.len());
        for (position, size) in sizes {
            if *position != attachments.len() as i64 {
                return Err(format!(
                    "attachment {} of mail {mail} is missing",
                    attachments.len()
                ));
            }
            attachments.push(Vec::with_capacity(usize::try_from(*size).unwrap_or(0)));
        }
        Ok(Assembly { mail, attachments })
    }

    /// How many attachments the mail has.
    #[cfg(feature = "postgres")]
    pub fn count(&self) -> usize {
        self.attachments.len()
    }

    /// Appends the chunk of attachment `position` that starts at `start`.
    pub fn push(&mut self, position: i64, start: i64, data: &[u8]) -> Result<(), String> {
        let mail = self.mail;
        let buffer = usize::try_from(position)
            .ok()
            .and_then(|p| self.attachments.get_mut(p))
            .filter(|b| b.len() as i64 == start)
            .ok_or_else(|| {
                format!("mail {mail}: a chunk of attachment {position} at {start} is out of place")
            })?;
        buffer.extend_from_slice(data);
        Ok(())
    }

    /// The attachments' bytes, in order.
    pub fn finish(self) -> Vec<Vec<u8>> {
        self.attachments
    }
}

/// Everything one request stores, in one transaction.
#[derive(Debug)]
pub(crate) struct Arrival {
    /// The name of the source (CMC account) it came from.
    pub source: String,
    pub server_composition: String,
    pub client: Option<String>,
    pub received_at: i64,
    pub events: Vec<NewEvent>,
    pub mail: Option<NewMail>,
    /// The request it arrived in, kept with its rows.
    pub raw: RawRef,
}

/// The raw request an arrival's rows point to.
#[derive(Debug)]
pub(crate) enum RawRef {
    /// None kept.
    None,
    /// To store with the rows.
    Keep(Box<crate::raw::types::NewRaw>),
    /// Stored already (rows added by a reparse).
    Existing(i64),
}

impl Arrival {
    /// The rows of `webhook`. The mail's attachment bytes move into the
    /// rows (without a copy where the buffer is not shared).
    pub fn new(
        source: &str,
        webhook: Webhook,
        client: Option<IpAddr>,
        received_at: Timestamp,
    ) -> Result<Arrival, InboxError> {
        let source = source.to_owned();
        let client = client.map(|ip| ip.to_string());
        let received_at = received_at.as_millisecond();
        match webhook {
            Webhook::Events(batch) => Ok(Arrival {
                source,
                server_composition: batch.server_composition.to_string(),
                client,
                received_at,
                events: batch
                    .events
                    .iter()
                    .map(new_event)
                    .collect::<Result<_, _>>()?,
                mail: None,
                raw: RawRef::None,
            }),
            Webhook::Inbound(mail) => Ok(Arrival {
                source,
                server_composition: mail.server_composition.to_string(),
                client,
                received_at,
                events: Vec::new(),
                mail: Some(new_mail(mail)?),
                raw: RawRef::None,
            }),
        }
    }

    /// How many rows (events, or the mail) it holds.
    pub fn rows(&self) -> usize {
        self.events.len() + usize::from(self.mail.is_some())
    }
}

fn new_event(event: &Event) -> Result<NewEvent, InboxError> {
    // A long subject goes apart: the JSON is written from a copy that
    // shares every field's bytes, its subject empty.
    let long = match event {
        Event::Delivery(d) => d.subject.len() > INLINE_TEXT,
        Event::Bounce(b) => b.subject.len() > INLINE_TEXT,
        _ => false,
    };
    let mut stripped;
    let (event, subject) = if long {
        stripped = event.clone();
        let subject = subject_mut(&mut stripped).map(|s| std::mem::take(s).as_bytes().clone());
        (&stripped, subject)
    } else {
        (event, None)
    };
    let (recipient, status, created) = match event {
        Event::Delivery(d) => (
            Some(d.to.to_string()),
            Some(d.status.as_str().to_owned()),
            Some(cmc_webhook_core::event::format_created(d.created)),
        ),
        Event::Bounce(b) => (
            Some(b.to.to_string()),
            Some(b.status.code().to_owned()),
            Some(cmc_webhook_core::event::format_created(b.created)),
        ),
        Event::Block(b) => (
            b.email.as_ref().map(|t| t.to_string()),
            b.status.as_ref().map(|t| t.to_string()),
            b.created.as_ref().map(|t| t.to_string()),
        ),
        _ => (None, None, None),
    };
    Ok(NewEvent {
        key: event.idempotency_key().to_string(),
        event_type: event.event_type().as_str().to_owned(),
        message_id: event
            .message_id()
            .filter(|m| !m.is_empty())
            .map(str::to_owned),
        recipient,
        status,
        created,
        json: serde_json::to_string(event).map_err(|e| {
            InboxError::new(
                InboxErrorKind::Corrupt,
                format!("could not write the event: {e}"),
            )
        })?,
        subject,
    })
}

fn new_mail(mut mail: InboundMail) -> Result<NewMail, InboxError> {
    let key = mail.idempotency_key().to_string();
    let mut attachments = Vec::with_capacity(mail.attachments.len());
    let mut size = 0i64;
    for a in &mut mail.attachments {
        let data = std::mem::take(&mut a.data);
        size = size.saturating_add(data.len() as i64);
        attachments.push(data);
    }
    let subject = prefix(&mail.subject, SUBJECT_PREFIX).to_owned();
    let apart = APART
        .iter()
        .filter_map(|(position, field)| {
            field
                .take_long(&mut mail)
                .map(|t| (*position, t.as_bytes().clone()))
        })
        .collect();
    Ok(NewMail {
        key,
        message_id: mail.headers.get("Message-ID").map(str::to_owned),
        envelope_from: mail.envelope_from.to_string(),
        envelope_to: mail.envelope_to.to_string(),
        subject,
        filter: mail.filter.to_string(),
        json: serde_json::to_string(&mail).map_err(|e| {
            InboxError::new(
                InboxErrorKind::Corrupt,
                format!("could not write the mail: {e}"),
            )
        })?,
        attachments,
        size,
        apart,
    })
}

/// A claimed row, as read back.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub id: JobId,
    pub key: String,
    pub json: String,
    pub server_composition: String,
    pub client: Option<String>,
    pub received_at: i64,
    pub attempts: i64,
    pub source: String,
    /// Why the row's columns could not be read, if they could not: the
    /// row is dead.
    pub unreadable: Option<String>,
}

impl Claimed {
    /// The job (a mail's attachments without their bytes, which the job's
    /// task reads when it starts), or why the row does not read back.
    pub fn into_job(self) -> Result<Job, (JobId, String)> {
        let id = self.id;
        let corrupt = |what: String| (id, format!("the stored row does not read back: {what}"));
        if let Some(why) = self.unreadable {
            return Err(corrupt(why));
        }
        let key: IdempotencyKey = self
            .key
            .parse()
            .map_err(|e| corrupt(format!("idempotency_key: {e}")))?;
        let item = match id.kind {
            Kind::Event => Item::Event(
                serde_json::from_str::<Event>(&self.json)
                    .map_err(|e| corrupt(format!("event: {e}")))?,
            ),
            Kind::Mail => Item::Mail(
                serde_json::from_str::<InboundMail>(&self.json)
                    .map_err(|e| corrupt(format!("mail: {e}")))?,
            ),
        };
        Ok(Job {
            id,
            key,
            attempt: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            received_at: super::clock::from_millis(self.received_at),
            client: self.client.and_then(|c| c.parse().ok()),
            server_composition: Text::from(self.server_composition),
            source: self.source,
            item,
        })
    }
}

/// A claimed row as read; a row whose columns do not decode (written by
/// hand) comes back with the reason, so that the worker marks it dead
/// rather than stalling on it.
pub(crate) fn claimed_row<R>(kind: Kind, r: &R) -> Claimed
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let id = JobId {
        kind,
        id: r.try_get(0).unwrap_or_default(),
    };
    let read = || -> Result<Claimed, sqlx::Error> {
        Ok(Claimed {
            id,
            key: r.try_get(1)?,
            json: r.try_get(2)?,
            server_composition: r.try_get(3)?,
            client: r.try_get(4)?,
            received_at: r.try_get(5)?,
            attempts: r.try_get(6)?,
            source: r.try_get(7)?,
            unreadable: None,
        })
    };
    read().unwrap_or_else(|e| Claimed {
        id,
        key: String::new(),
        json: String::new(),
        server_composition: String::new(),
        client: None,
        received_at: 0,
        attempts: r.try_get(6).unwrap_or(1),
        source: String::new(),
        unreadable: Some(e.to_string()),
    })
}

pub(crate) fn dead_row<R>(kind: Kind, r: &R) -> Result<Result<DeadRow, InboxError>, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let key = match parse_key(&r.try_get::<String, _>(1)?) {
        Ok(key) => key,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(DeadRow {
        id: JobId {
            kind,
            id: r.try_get(0)?,
        },
        key,
        summary: r.try_get(2)?,
        message_id: r.try_get(3)?,
        attempts: u32::try_from(r.try_get::<i64, _>(4)?).unwrap_or(u32::MAX),
        last_error: r.try_get(5)?,
        received_at: super::clock::from_millis(r.try_get(6)?),
        died_at: r
            .try_get::<Option<i64>, _>(7)?
            .map(super::clock::from_millis),
        source: r.try_get(8)?,
    }))
}

/// The history of rows read for one Message-ID: each row that does not
/// read back is logged and set aside, not an error for all.
pub(crate) fn history<R>(rows: &[R]) -> super::ops::History
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let mut history = super::ops::History::default();
    for r in rows {
        let error = match history_entry(r) {
            Ok(Ok(entry)) => {
                history.entries.push(entry);
                continue;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        let id = JobId {
            kind: Kind::Event,
            id: r.try_get(0).unwrap_or(0),
        };
        tracing::warn!(row = %id, error = %cmc_webhook_core::printable(&error, 300), "a row of the history does not read back: skipped");
        history
            .unreadable
            .push(super::ops::Unreadable { id, error });
    }
    history
}

pub(crate) fn history_entry<R>(r: &R) -> Result<Result<HistoryEntry, InboxError>, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let id = JobId {
        kind: Kind::Event,
        id: r.try_get(0)?,
    };
    let corrupt = |what: String| {
        InboxError::new(
            InboxErrorKind::Corrupt,
            format!("{id} does not read back: {what}"),
        )
    };
    let key = match parse_key(&r.try_get::<String, _>(1)?) {
        Ok(key) => key,
        Err(e) => return Ok(Err(e)),
    };
    let event = match serde_json::from_str::<Event>(&r.try_get::<String, _>(2)?) {
        Ok(event) => event,
        Err(e) => return Ok(Err(corrupt(e.to_string()))),
    };
    let state: String = r.try_get(4)?;
    let Some(state) = State::from_column(&state) else {
        return Ok(Err(corrupt(format!("state {state:?}"))));
    };
    Ok(Ok(HistoryEntry {
        id,
        key,
        event,
        received_at: super::clock::from_millis(r.try_get(3)?),
        state,
        attempts: u32::try_from(r.try_get::<i64, _>(5)?).unwrap_or(u32::MAX),
        last_error: r.try_get(6)?,
        source: r.try_get(7)?,
        replayed: super::ops::Replayed::of(r.try_get(8)?, r.try_get(9)?),
        raw_request: r.try_get(10)?,
    }))
}

pub(crate) fn parse_key(text: &str) -> Result<IdempotencyKey, InboxError> {
    text.parse::<IdempotencyKey>().map_err(|e| {
        InboxError::new(
            InboxErrorKind::Corrupt,
            format!("idempotency_key {text:?}: {e}"),
        )
    })
}
