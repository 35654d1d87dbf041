//! The record types of an event batch: [`Delivery`], [`Bounce`],
//! [`Block`], and [`UnknownEvent`] for a type this crate does not know.

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::civil::DateTime;
use serde::{Deserialize, Serialize};

use super::status::{BounceStatus, DeliveryStatus};
use crate::{RawJson, Text};

/// A status change of a sent mail (a `deliveries` record).
///
/// Version 1 payloads (`envelopeFrom`, `envelopeTo`, no `from` or
/// `apiData`) fill the same struct: `return_path` and `to` take the
/// envelope addresses, `from` and `api_data` stay empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Delivery {
    /// When the status changed, civil time in the console's time zone.
    pub created: DateTime,
    /// The new status.
    pub status: DeliveryStatus,
    /// The envelope sender (`returnPath`, version 1 `envelopeFrom`).
    pub return_path: Text,
    /// The header From address (empty in version 1).
    pub from: Text,
    /// The recipient (`to`, version 1 `envelopeTo`).
    pub to: Text,
    /// The mail's Message-ID, with its angle brackets.
    pub message_id: Text,
    /// The destination server's reply; empty for queued and succeeded.
    pub reason: Text,
    /// The mail's subject, decoded.
    pub subject: Text,
    /// The sender's `X-Api-Data` header value (empty in version 1).
    pub api_data: Text,
    /// On `queued`, the address that submitted the mail to CMC.
    pub source_ip: Option<IpAddr>,
    /// Once sent, the address of the CMC server that sent it.
    pub sender_ip: Option<IpAddr>,
    /// Fields of the record this crate does not know, kept as they came.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, RawJson>,
}

/// A bounce notification (a `bounces` record): a mail that could not be
/// delivered, with the error-status code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Bounce {
    /// When the bounce was recorded, civil time in the console's time zone.
    pub created: DateTime,
    /// The error status.
    pub status: BounceStatus,
    /// The envelope sender (`returnPath`, version 1 `envelopeFrom`).
    pub return_path: Text,
    /// The header From address (empty in version 1).
    pub from: Text,
    /// The recipient (`to`, version 1 `envelopeTo`).
    pub to: Text,
    /// The mail's Message-ID, with its angle brackets.
    pub message_id: Text,
    /// The destination server's reply, or CMC's description.
    pub reason: Text,
    /// The mail's subject, decoded.
    pub subject: Text,
    /// The sender's `X-Api-Data` header value (empty in version 1).
    pub api_data: Text,
    /// Fields of the record this crate does not know, kept as they came.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, RawJson>,
}

/// A suppression-list change (a `blocks` record, Pro plan).
///
/// CMC does not publish this record's schema, so the record is kept whole
/// in [`raw`](Block::raw), and the fields other CMC block records carry are
/// read out when present as strings or numbers (numbers as their JSON
/// text).
///
/// ```
/// use bytes::Bytes;
/// use cmc_webhook_core::{Event, EventBatch};
///
/// let body = r#"{"event_type":"blocks","server_composition":"pro","event":{"blocks":[
///   {"email":"user@example.jp","id":17,"status":"add","extra":{"x":1}}]}}"#;
/// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
/// let Event::Block(block) = &batch.events[0] else { panic!("a block") };
/// assert_eq!(block.email.as_deref(), Some("user@example.jp"));
/// assert_eq!(block.id.as_deref(), Some("17"));
/// assert_eq!(block.created, None);
/// assert!(block.raw.get().contains(r#""extra":{"x":1}"#));
/// # Ok::<(), cmc_webhook_core::ParseError>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Block {
    /// `created`, when present.
    pub created: Option<Text>,
    /// `email`, when present.
    pub email: Option<Text>,
    /// `id`, when present.
    pub id: Option<Text>,
    /// `occurred`, when present.
    pub occurred: Option<Text>,
    /// `status`, when present.
    pub status: Option<Text>,
    /// The whole record, as JSON text.
    pub raw: RawJson,
}

impl PartialEq for Block {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

/// A record of an `event_type` this crate does not know, kept whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UnknownEvent {
    /// The `event_type` (the key of the record's list in `event`).
    pub event_type: Text,
    /// The record, as JSON text.
    pub raw: RawJson,
}

impl PartialEq for UnknownEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event_type == other.event_type && self.raw == other.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounce_reads_back_from_its_serialised_form() {
        let bounce = Bounce {
            created: jiff::civil::date(2023, 1, 25).at(14, 6, 7, 0),
            status: BounceStatus::from_code("42"),
            return_path: Text::from("r@example.com"),
            from: Text::default(),
            to: Text::from("a@example.jp"),
            message_id: Text::from("<b@example.com>"),
            reason: Text::from("550"),
            subject: Text::from("件名"),
            api_data: Text::default(),
            extra: BTreeMap::from([("x".to_owned(), serde_json::from_str("[1]").unwrap())]),
        };
        let json = serde_json::to_string(&bounce).unwrap();
        assert_eq!(serde_json::from_str::<Bounce>(&json).unwrap(), bounce);
        // Without extra fields, `extra` is left out.
        let plain = Bounce {
            extra: BTreeMap::new(),
            ..bounce
        };
        assert!(!serde_json::to_string(&plain).unwrap().contains("extra"));
    }

    #[test]
    fn blocks_and_unknown_records_are_equal_when_their_json_is() {
        let block = |json: &str| serde_json::from_str::<Block>(json).unwrap();
        // The typed fields are views of `raw`: only `raw` counts.
        let a = block(r#"{"email":"a@example.jp","raw":{"email":"a@example.jp","status":"add"}}"#);
        let b = block(r#"{"raw":{"email":"a@example.jp","status":"add"}}"#);
        let c =
            block(r#"{"email":"a@example.jp","raw":{"email":"a@example.jp","status":"delete"}}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let unknown = |kind: &str, raw: &str| {
            serde_json::from_str::<UnknownEvent>(&format!(
                r#"{{"event_type":"{kind}","raw":{raw}}}"#
            ))
            .unwrap()
        };
        assert_eq!(unknown("u", "{}"), unknown("u", "{}"));
        assert_ne!(unknown("u", "{}"), unknown("v", "{}"));
        assert_ne!(unknown("u", "{}"), unknown("u", "[]"));
    }
}
