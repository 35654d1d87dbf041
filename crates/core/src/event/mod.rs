//! The event webhook: delivery-status changes of mails the customer sent.
//!
//! Customers Mail Cloud collects status changes and posts them in batches
//! (one to about a hundred records, all of one [`EventType`]) when a mail is
//! queued, delivered, refused or deferred ([`Delivery`]), when it bounces
//! ([`Bounce`]), and on the Pro plan when the suppression list changes
//! ([`Block`]). Records of a type this crate does not know yet arrive as
//! [`UnknownEvent`]s, with their JSON intact.
//!
//! Dates in the payload are civil times in the time zone set in the CMC
//! console, which the payload does not name: convert them with
//! [`Event::created_at`] and the zone you configured
//! ([`default_time_zone`] is Asia/Tokyo).
//!
//! CMC sends no event id and may deliver a batch more than once; use
//! [`Event::idempotency_key`] to drop repeats.

mod key;
mod records;
mod status;
mod time;

use std::collections::BTreeMap;
use std::fmt;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::{RawJson, Text};

pub use key::{IdempotencyKey, InvalidKey};
pub use records::{Block, Bounce, Delivery, UnknownEvent};
pub use status::{BounceClass, BounceStatus, DeliveryStatus};
pub use time::{CreatedAtError, default_time_zone, format_created};

/// One POST of the event webhook: a batch of status-change records.
///
/// Serialisable, and readable back into an equal value (the `api_key` is
/// never serialised), to keep in a queue or a store:
///
/// ```
/// # use bytes::Bytes;
/// # use cmc_webhook_core::EventBatch;
/// # let body = r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[
/// #   {"created":"2023-01-25 14:06:07","status":"2","to":"a@example.jp","x":[1]}]}}"#;
/// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
/// let stored = serde_json::to_string(&batch)?;
/// let again: EventBatch = serde_json::from_str(&stored)?;
/// assert_eq!(again, batch);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// ```
/// use bytes::Bytes;
/// use cmc_webhook_core::{DeliveryStatus, Event, EventBatch};
///
/// let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
///   {"created":"2023-01-25 14:03:06","status":"queued","returnPath":"info@return.pro.smtps.jp",
///    "from":"info@example.com","to":"user@example.jp","messageId":"<a@example.com>",
///    "reason":"","subject":"Hello","apiData":"","sourceIp":"192.0.2.1","senderIp":""}]}}"#;
/// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
/// assert_eq!(batch.server_composition, "pro");
/// let Event::Delivery(delivery) = &batch.events[0] else { panic!("a delivery") };
/// assert_eq!(delivery.status, DeliveryStatus::Queued);
/// assert_eq!(delivery.to, "user@example.jp");
/// assert_eq!(delivery.source_ip, Some("192.0.2.1".parse()?));
/// assert_eq!(delivery.sender_ip, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventBatch {
    /// Which kind of records the batch carries (`deliveries`, `bounces`,
    /// `blocks`, or a type added later).
    pub event_type: EventType,
    /// The name of the CMC server configuration the events happened on
    /// (free text, for example `pro` or `sandbox`).
    pub server_composition: Text,
    /// The API key set in the CMC console, when one is set. A credential:
    /// it is left out of `Debug` output and of serialisation.
    #[serde(skip)]
    pub api_key: Option<Text>,
    /// The records, in the order they were sent.
    pub events: Vec<Event>,
    /// Top-level parameters this crate does not know, kept as they came
    /// (form fields as JSON strings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, RawJson>,
}

impl fmt::Debug for EventBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBatch")
            .field("event_type", &self.event_type)
            .field("server_composition", &self.server_composition)
            .field("api_key", &self.api_key.as_ref().map(|_| crate::REDACTED))
            .field("events", &self.events)
            .field("extra", &self.extra)
            .finish()
    }
}

/// The `event_type` of a batch.
///
/// ```
/// use cmc_webhook_core::EventType;
///
/// assert_eq!(EventType::from_wire("bounces"), EventType::Bounces);
/// assert_eq!(EventType::from_wire("unsubscribes").as_str(), "unsubscribes");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventType {
    /// `deliveries`: status changes of sent mails.
    Deliveries,
    /// `bounces`: error notifications for mails that could not be delivered.
    Bounces,
    /// `blocks`: changes of the suppression list (Pro plan).
    Blocks,
    /// A type this crate does not know yet, as it was sent.
    Other(Text),
}

impl EventType {
    /// Reads the wire name; unknown names are kept in [`EventType::Other`].
    pub fn from_wire(name: &str) -> EventType {
        Self::from_text(Text::from(name))
    }

    pub(crate) fn from_text(name: Text) -> EventType {
        match name.as_str() {
            "deliveries" => EventType::Deliveries,
            "bounces" => EventType::Bounces,
            "blocks" => EventType::Blocks,
            _ => EventType::Other(name),
        }
    }

    /// The wire name (`deliveries`, `bounces`, `blocks`, or the unknown name).
    pub fn as_str(&self) -> &str {
        match self {
            EventType::Deliveries => "deliveries",
            EventType::Bounces => "bounces",
            EventType::Blocks => "blocks",
            EventType::Other(name) => name,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Text::deserialize(d).map(EventType::from_text)
    }
}

impl Serialize for EventType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One record of an [`EventBatch`].
///
/// ```
/// use bytes::Bytes;
/// use cmc_webhook_core::{BounceStatus, Event, EventBatch};
///
/// let body = r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[
///   {"created":"2023-01-25 14:06:07","status":"2","to":"no-user@example.jp",
///    "messageId":"<b@example.com>","reason":"550 5.1.1 unknown"}]}}"#;
/// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
/// match &batch.events[0] {
///     Event::Bounce(b) => {
///         assert_eq!(b.status, BounceStatus::UnknownUser);
///         assert_eq!(b.status.code(), "2");
///         assert_eq!(b.from, ""); // absent optional fields are empty
///     }
///     other => panic!("expected a bounce, got {other:?}"),
/// }
/// assert_eq!(batch.events[0].message_id(), Some("<b@example.com>"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A status change of a sent mail (`deliveries`).
    Delivery(Delivery),
    /// A bounce notification (`bounces`).
    Bounce(Bounce),
    /// A suppression-list change (`blocks`, Pro plan).
    Block(Block),
    /// A record of an `event_type` this crate does not know.
    Unknown(UnknownEvent),
}

impl Event {
    /// The record's type: [`EventType::Deliveries`], [`EventType::Bounces`],
    /// [`EventType::Blocks`], or [`EventType::Other`] with the name an
    /// [`UnknownEvent`] came under. [`EventType::as_str`] gives the wire
    /// name.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook_core::{EventBatch, EventType};
    ///
    /// let body = r#"{"event_type":"unsubscribes","server_composition":"pro","event":{"unsubscribes":[
    ///   {"to":"x@example.jp"}]}}"#;
    /// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
    /// let event_type = batch.events[0].event_type();
    /// assert_eq!(event_type, EventType::Other("unsubscribes".into()));
    /// assert_eq!(event_type.as_str(), "unsubscribes");
    /// assert_eq!(event_type, batch.event_type);
    /// # Ok::<(), cmc_webhook_core::ParseError>(())
    /// ```
    pub fn event_type(&self) -> EventType {
        match self {
            Event::Delivery(_) => EventType::Deliveries,
            Event::Bounce(_) => EventType::Bounces,
            Event::Block(_) => EventType::Blocks,
            // Read like a batch's `event_type`, so that the two compare equal.
            Event::Unknown(u) => EventType::from_text(u.event_type.clone()),
        }
    }

    /// The `Message-ID` the record is about, when the record has one.
    pub fn message_id(&self) -> Option<&str> {
        match self {
            Event::Delivery(d) => Some(&d.message_id),
            Event::Bounce(b) => Some(&b.message_id),
            Event::Block(_) | Event::Unknown(_) => None,
        }
    }

    /// When the event happened, as civil time in the console's time zone
    /// (`None` for records whose schema this crate does not read).
    pub fn created(&self) -> Option<DateTime> {
        match self {
            Event::Delivery(d) => Some(d.created),
            Event::Bounce(b) => Some(b.created),
            Event::Block(_) | Event::Unknown(_) => None,
        }
    }

    /// When the event happened, as an instant, reading `created` in `tz`
    /// (the zone set in the CMC console; see [`default_time_zone`]).
    ///
    /// A civil time that the zone skips (a daylight-saving gap) is moved
    /// forward by the gap's length, and one it repeats is read at its first
    /// occurrence, as [`jiff::civil::DateTime::to_zoned_datetime`] does.
    ///
    /// # Errors
    ///
    /// [`CreatedAtError::Unavailable`] for [`Block`] and [`UnknownEvent`]
    /// records, whose `created` this crate does not read;
    /// [`CreatedAtError::OutOfRange`] when the instant lies outside the
    /// range [`jiff::Timestamp`] holds.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook_core::{default_time_zone, CreatedAtError, EventBatch};
    ///
    /// let tz = default_time_zone();
    /// let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
    ///   {"created":"2023-01-25 14:03:06","status":"succeeded"},
    ///   {"created":"9999-12-31 23:59:59","status":"succeeded"}]}}"#;
    /// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
    /// let at = batch.events[0].created_at(&tz)?;
    /// assert_eq!(at.to_string(), "2023-01-25T05:03:06Z");
    /// // Too late for jiff::Timestamp once read at +09:00.
    /// assert!(matches!(batch.events[1].created_at(&tz), Err(CreatedAtError::OutOfRange(_))));
    ///
    /// let body = r#"{"event_type":"blocks","server_composition":"pro","event":{"blocks":[
    ///   {"created":"2023-03-01 12:00:00","email":"user@example.jp"}]}}"#;
    /// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
    /// match batch.events[0].created_at(&tz) {
    ///     Ok(at) => println!("at {at}"),
    ///     Err(CreatedAtError::Unavailable) => println!("no time to read"),
    ///     Err(e) => return Err(e.into()),
    /// }
    /// assert!(matches!(batch.events[0].created_at(&tz), Err(CreatedAtError::Unavailable)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn created_at(&self, tz: &TimeZone) -> Result<jiff::Timestamp, CreatedAtError> {
        let created = self.created().ok_or(CreatedAtError::Unavailable)?;
        created
            .to_zoned_datetime(tz.clone())
            .map(|z| z.timestamp())
            .map_err(CreatedAtError::OutOfRange)
    }

    /// The recipient the record is about: `to` of a [`Delivery`] or
    /// [`Bounce`], `email` of a [`Block`]; `None` when the field is absent
    /// or empty, and for [`UnknownEvent`]s.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook_core::EventBatch;
    ///
    /// let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
    ///   {"created":"2023-01-25 14:03:06","status":"queued","to":"user@example.jp"},
    ///   {"created":"2023-01-25 14:03:07","status":"queued","to":""}]}}"#;
    /// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
    /// assert_eq!(batch.events[0].recipient(), Some("user@example.jp"));
    /// assert_eq!(batch.events[1].recipient(), None);
    /// # Ok::<(), cmc_webhook_core::ParseError>(())
    /// ```
    pub fn recipient(&self) -> Option<&str> {
        let to = match self {
            Event::Delivery(d) => &d.to,
            Event::Bounce(b) => &b.to,
            Event::Block(b) => b.email.as_ref()?,
            Event::Unknown(_) => return None,
        };
        non_empty(to)
    }

    /// Why the mail was refused, deferred or bounced: the destination
    /// server's reply or CMC's description (`reason` of a [`Delivery`] or
    /// [`Bounce`]); `None` when it is empty (as for queued and succeeded
    /// deliveries), and for [`Block`] and [`UnknownEvent`] records.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook_core::EventBatch;
    ///
    /// let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
    ///   {"created":"2023-01-25 14:06:06","status":"failed","reason":"550 5.1.1 unknown user"},
    ///   {"created":"2023-01-25 14:03:09","status":"succeeded","reason":""}]}}"#;
    /// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
    /// assert_eq!(batch.events[0].reason(), Some("550 5.1.1 unknown user"));
    /// assert_eq!(batch.events[1].reason(), None);
    /// # Ok::<(), cmc_webhook_core::ParseError>(())
    /// ```
    pub fn reason(&self) -> Option<&str> {
        match self {
            Event::Delivery(d) => non_empty(&d.reason),
            Event::Bounce(b) => non_empty(&b.reason),
            Event::Block(_) | Event::Unknown(_) => None,
        }
    }

    /// The value the sender put in the mail's `X-Api-Data` header, to match
    /// the event with their own records (`apiData` of a [`Delivery`] or
    /// [`Bounce`]); `None` when it is empty (always in version 1 payloads),
    /// and for [`Block`] and [`UnknownEvent`] records.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook_core::EventBatch;
    ///
    /// let body = r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[
    ///   {"created":"2023-01-25 14:06:07","status":"5","apiData":"campaign-7"},
    ///   {"created":"2023-01-25 14:06:08","status":"5","apiData":""}]}}"#;
    /// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
    /// assert_eq!(batch.events[0].api_data(), Some("campaign-7"));
    /// assert_eq!(batch.events[1].api_data(), None);
    /// # Ok::<(), cmc_webhook_core::ParseError>(())
    /// ```
    pub fn api_data(&self) -> Option<&str> {
        match self {
            Event::Delivery(d) => non_empty(&d.api_data),
            Event::Bounce(b) => non_empty(&b.api_data),
            Event::Block(_) | Event::Unknown(_) => None,
        }
    }

    /// The class of a bounce's error code ([`BounceStatus::class`]); `None`
    /// for records that are not bounces.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook_core::{BounceClass, EventBatch};
    ///
    /// let body = r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[
    ///   {"created":"2023-01-25 14:06:07","status":"2","to":"no-user@example.jp"},
    ///   {"created":"2023-01-25 14:06:08","status":"5","to":"full@example.jp"}]}}"#;
    /// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
    /// assert_eq!(batch.events[0].bounce_class(), Some(BounceClass::Hard));
    /// assert_eq!(batch.events[1].bounce_class(), Some(BounceClass::Soft));
    ///
    /// let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
    ///   {"created":"2023-01-25 14:06:06","status":"failed"}]}}"#;
    /// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
    /// assert_eq!(batch.events[0].bounce_class(), None);
    /// # Ok::<(), cmc_webhook_core::ParseError>(())
    /// ```
    pub fn bounce_class(&self) -> Option<BounceClass> {
        match self {
            Event::Bounce(b) => Some(b.status.class()),
            Event::Delivery(_) | Event::Block(_) | Event::Unknown(_) => None,
        }
    }

    /// A key that is the same every time CMC sends this event, and differs
    /// between events: store it to drop deliveries of a batch that was sent
    /// again.
    ///
    /// It is built from the record type, `messageId`, `to`, `status` and
    /// `created` (what identifies an event); for [`Block`] and
    /// [`UnknownEvent`] records, from the record's JSON (with keys sorted
    /// and escapes normalised, so that the encoding does not matter). The
    /// value is stable across processes and versions of this crate.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook_core::EventBatch;
    ///
    /// let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
    ///   {"created":"2023-01-25 14:03:06","status":"queued","to":"a@example.jp","messageId":"<1@x>"},
    ///   {"created":"2023-01-25 14:03:09","status":"succeeded","to":"a@example.jp","messageId":"<1@x>"}]}}"#;
    /// let first = EventBatch::parse("application/json", Bytes::from(body))?;
    /// let again = EventBatch::parse("application/json", Bytes::from(body))?;
    /// assert_eq!(first.events[0].idempotency_key(), again.events[0].idempotency_key());
    /// assert_ne!(first.events[0].idempotency_key(), first.events[1].idempotency_key());
    /// assert_eq!(first.events[0].idempotency_key().to_string().len(), 32);
    /// # Ok::<(), cmc_webhook_core::ParseError>(())
    /// ```
    pub fn idempotency_key(&self) -> IdempotencyKey {
        match self {
            Event::Delivery(d) => IdempotencyKey::of(&[
                "deliveries",
                &d.message_id,
                &d.to,
                d.status.as_str(),
                &format_created(d.created),
            ]),
            Event::Bounce(b) => IdempotencyKey::of(&[
                "bounces",
                &b.message_id,
                &b.to,
                b.status.code(),
                &format_created(b.created),
            ]),
            Event::Block(b) => IdempotencyKey::of(&["blocks", &b.raw.canonical()]),
            Event::Unknown(u) => IdempotencyKey::of(&[&u.event_type, &u.raw.canonical()]),
        }
    }
}

/// `Some(text)` unless the text is empty.
fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Event::Delivery(a), Event::Delivery(b)) => a == b,
            (Event::Bounce(a), Event::Bounce(b)) => a == b,
            (Event::Block(a), Event::Block(b)) => a == b,
            (Event::Unknown(a), Event::Unknown(b)) => a == b,
            _ => false,
        }
    }
}

impl PartialEq for EventBatch {
    fn eq(&self, other: &Self) -> bool {
        self.event_type == other.event_type
            && self.server_composition == other.server_composition
            && self.api_key == other.api_key
            && self.events == other.events
            && self.extra == other.extra
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn parse(body: &str) -> EventBatch {
        EventBatch::parse("application/json", Bytes::from(body.to_owned())).unwrap()
    }

    #[test]
    fn accessors_on_a_delivery() {
        let batch = parse(
            r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
              {"created":"2023-01-25 14:06:06","status":"failed","to":"user@example.jp",
               "reason":"550 5.1.1 unknown user","apiData":"order-17"},
              {"created":"2023-01-25 14:03:09","status":"succeeded","to":"","reason":"","apiData":""},
              {"created":"2023-01-25 14:03:09","status":"queued"}]}}"#,
        );
        let [full, empty, absent] = &batch.events[..] else {
            panic!("three records")
        };
        assert_eq!(full.event_type(), EventType::Deliveries);
        assert_eq!(full.recipient(), Some("user@example.jp"));
        assert_eq!(full.reason(), Some("550 5.1.1 unknown user"));
        assert_eq!(full.api_data(), Some("order-17"));
        assert_eq!(full.bounce_class(), None);
        for event in [empty, absent] {
            assert_eq!(event.recipient(), None);
            assert_eq!(event.reason(), None);
            assert_eq!(event.api_data(), None);
            assert_eq!(event.bounce_class(), None);
        }
    }

    #[test]
    fn accessors_on_a_bounce() {
        let batch = parse(
            r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[
              {"created":"2023-01-25 14:06:07","status":"2","to":"no-user@example.jp",
               "reason":"550 5.1.1 unknown","apiData":"campaign-7"},
              {"created":"2023-01-25 14:06:08","status":"42","to":"","reason":"","apiData":""}]}}"#,
        );
        let [full, empty] = &batch.events[..] else {
            panic!("two records")
        };
        assert_eq!(full.event_type(), EventType::Bounces);
        assert_eq!(full.recipient(), Some("no-user@example.jp"));
        assert_eq!(full.reason(), Some("550 5.1.1 unknown"));
        assert_eq!(full.api_data(), Some("campaign-7"));
        assert_eq!(full.bounce_class(), Some(BounceClass::Hard));
        assert_eq!(empty.recipient(), None);
        assert_eq!(empty.reason(), None);
        assert_eq!(empty.api_data(), None);
        assert_eq!(empty.bounce_class(), Some(BounceClass::Unknown));
    }

    #[test]
    fn accessors_on_a_block() {
        let batch = parse(
            r#"{"event_type":"blocks","server_composition":"pro","event":{"blocks":[
              {"email":"stop@example.jp","status":"add","reason":"x","apiData":"y"},
              {"email":"","status":"add"},
              {"status":"delete"}]}}"#,
        );
        let [with_email, empty, absent] = &batch.events[..] else {
            panic!("three records")
        };
        assert_eq!(with_email.event_type(), EventType::Blocks);
        assert_eq!(with_email.recipient(), Some("stop@example.jp"));
        assert_eq!(empty.recipient(), None);
        assert_eq!(absent.recipient(), None);
        for event in [with_email, empty, absent] {
            // Fields of other record types are not read from a block.
            assert_eq!(event.reason(), None);
            assert_eq!(event.api_data(), None);
            assert_eq!(event.bounce_class(), None);
            assert!(matches!(
                event.created_at(&default_time_zone()),
                Err(CreatedAtError::Unavailable)
            ));
        }
    }

    #[test]
    fn accessors_on_an_unknown_record() {
        let batch = parse(
            r#"{"event_type":"unsubscribes","server_composition":"pro","event":{"unsubscribes":[
              {"created":"2024-05-05 05:05:05","to":"x@example.jp","email":"x@example.jp",
               "reason":"r","apiData":"a","status":"2"}]}}"#,
        );
        let event = &batch.events[0];
        assert_eq!(event.event_type(), EventType::Other("unsubscribes".into()));
        assert_eq!(event.recipient(), None);
        assert_eq!(event.reason(), None);
        assert_eq!(event.api_data(), None);
        assert_eq!(event.bounce_class(), None);
        assert!(matches!(
            event.created_at(&default_time_zone()),
            Err(CreatedAtError::Unavailable)
        ));
    }

    #[test]
    fn an_unknown_record_under_a_known_name_has_the_known_type() {
        // Only a hand-written or stored value can hold one; its type reads
        // as the batch's `event_type` would.
        let event: Event =
            serde_json::from_str(r#"{"kind":"unknown","event_type":"bounces","raw":{}}"#).unwrap();
        assert_eq!(event.event_type(), EventType::Bounces);
    }

    #[test]
    fn created_at_out_of_range_keeps_jiffs_error() {
        let body = r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[
              {"created":"9999-12-31 23:59:59","status":"2"}]}}"#;
        let batch = EventBatch::parse("application/json", bytes::Bytes::from(body)).unwrap();
        let err = batch.events[0]
            .created_at(&default_time_zone())
            .unwrap_err();
        assert!(matches!(err, CreatedAtError::OutOfRange(_)));
        assert!(std::error::Error::source(&err).is_some());
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn idempotency_keys_are_pinned() {
        // The key is a promise across versions: these values must not change.
        let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
          {"created":"2023-01-25 14:03:06","status":"queued","to":"user@example.jp","messageId":"<a@example.com>"}]}}"#;
        let batch = EventBatch::parse("application/json", bytes::Bytes::from(body)).unwrap();
        // SHA-256 over the length-prefixed parts ("deliveries", messageId,
        // to, status, created), first 16 bytes; computed independently.
        let expected = "a0e6bbca3a90d8ce05ddd8d9190ed2da";
        assert_eq!(batch.events[0].idempotency_key().to_string(), expected);
    }
}
