//! A webhook as the rows it is stored in, and rows back as [`Job`]s: the
//! same for every backend.

use std::net::IpAddr;

use bytes::Bytes;
use jiff::Timestamp;

use super::error::{InboxError, InboxErrorKind};
use super::job::{Item, Job, JobId, Kind};
use crate::{Event, IdempotencyKey, InboundMail, Text, Webhook};

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
}

/// Everything one request stores, in one transaction.
#[derive(Debug)]
pub(crate) struct Arrival {
    pub server_composition: String,
    pub client: Option<String>,
    pub received_at: i64,
    pub events: Vec<NewEvent>,
    pub mail: Option<NewMail>,
}

impl Arrival {
    /// The rows of `webhook`. The mail's attachment bytes move into the
    /// rows (without a copy where the buffer is not shared).
    pub fn new(
        webhook: Webhook,
        client: Option<IpAddr>,
        received_at: Timestamp,
    ) -> Result<Arrival, InboxError> {
        let client = client.map(|ip| ip.to_string());
        let received_at = received_at.as_millisecond();
        match webhook {
            Webhook::Events(batch) => Ok(Arrival {
                server_composition: batch.server_composition.to_string(),
                client,
                received_at,
                events: batch
                    .events
                    .iter()
                    .map(new_event)
                    .collect::<Result<_, _>>()?,
                mail: None,
            }),
            Webhook::Inbound(mail) => Ok(Arrival {
                server_composition: mail.server_composition.to_string(),
                client,
                received_at,
                events: Vec::new(),
                mail: Some(new_mail(mail)?),
            }),
        }
    }

    /// How many rows (events, or the mail) it holds.
    pub fn rows(&self) -> usize {
        self.events.len() + usize::from(self.mail.is_some())
    }
}

fn new_event(event: &Event) -> Result<NewEvent, InboxError> {
    let (recipient, status, created) = match event {
        Event::Delivery(d) => (
            Some(d.to.to_string()),
            Some(d.status.as_str().to_owned()),
            Some(crate::event::key_time(d.created)),
        ),
        Event::Bounce(b) => (
            Some(b.to.to_string()),
            Some(b.status.code().to_owned()),
            Some(crate::event::key_time(b.created)),
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
        event_type: event.event_type().to_owned(),
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
    Ok(NewMail {
        key,
        message_id: mail.headers.get("Message-ID").map(str::to_owned),
        envelope_from: mail.envelope_from.to_string(),
        envelope_to: mail.envelope_to.to_string(),
        subject: mail.subject.to_string(),
        filter: mail.filter.to_string(),
        json: serde_json::to_string(&mail).map_err(|e| {
            InboxError::new(
                InboxErrorKind::Corrupt,
                format!("could not write the mail: {e}"),
            )
        })?,
        attachments,
        size,
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
            item,
        })
    }
}
