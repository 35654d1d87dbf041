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

use std::fmt;
use std::net::IpAddr;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{RawJson, Text};

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

/// A `created` time as CMC writes it, and as the idempotency key hashes
/// it: `YYYY-MM-DD HH:MM:SS` (with nanoseconds only when there are any),
/// written here rather than by a library's `Display`, whose format could
/// change under the key.
///
/// ```
/// let t = jiff::civil::date(2023, 1, 25).at(14, 3, 9, 0);
/// assert_eq!(cmc_webhook_core::event::format_created(t), "2023-01-25 14:03:09");
/// ```
pub fn format_created(t: DateTime) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if t.subsec_nanosecond() != 0 {
        s.push_str(&format!(".{:09}", t.subsec_nanosecond()));
    }
    s
}

/// `Some(text)` unless the text is empty.
fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// Why [`Event::created_at`] gives no instant.
///
/// ```
/// use bytes::Bytes;
/// use cmc_webhook_core::{default_time_zone, CreatedAtError, EventBatch};
///
/// let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
///   {"created":"9999-12-31 23:59:59","status":"queued"}]}}"#;
/// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
/// let err = batch.events[0].created_at(&default_time_zone()).unwrap_err();
/// assert!(matches!(err, CreatedAtError::OutOfRange(_)));
/// assert!(std::error::Error::source(&err).is_some()); // jiff's own error
///
/// let body = r#"{"event_type":"blocks","server_composition":"pro","event":{"blocks":[{}]}}"#;
/// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
/// let err = batch.events[0].created_at(&default_time_zone()).unwrap_err();
/// assert!(matches!(err, CreatedAtError::Unavailable));
/// assert!(std::error::Error::source(&err).is_none());
/// # Ok::<(), cmc_webhook_core::ParseError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CreatedAtError {
    /// The record carries no `created` this crate reads: a [`Block`]
    /// (whose `created`, when present, stays text: the record's schema is
    /// not published) or an [`UnknownEvent`].
    Unavailable,
    /// `created` read in the time zone is an instant outside the range of
    /// [`jiff::Timestamp`] (about the years -9999 to 9999); the error is
    /// jiff's.
    OutOfRange(jiff::Error),
}

impl fmt::Display for CreatedAtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CreatedAtError::Unavailable => {
                f.write_str("the record carries no `created` time this crate reads")
            }
            CreatedAtError::OutOfRange(_) => {
                f.write_str("`created` in the time zone is out of the supported range")
            }
        }
    }
}

impl std::error::Error for CreatedAtError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CreatedAtError::Unavailable => None,
            CreatedAtError::OutOfRange(e) => Some(e),
        }
    }
}

/// The time zone this crate assumes for `created` when the caller names
/// none: Asia/Tokyo, the documented default of CMC's Japanese customers.
///
/// Taken from the system's time-zone database; where there is none, the
/// fixed offset +09:00, which equals Asia/Tokyo for every date since 1951.
///
/// ```
/// let tz = cmc_webhook_core::default_time_zone();
/// let civil = jiff::civil::date(2023, 1, 25).at(14, 3, 6, 0);
/// let at = civil.to_zoned_datetime(tz)?.timestamp();
/// assert_eq!(at.to_string(), "2023-01-25T05:03:06Z");
/// # Ok::<(), jiff::Error>(())
/// ```
pub fn default_time_zone() -> TimeZone {
    TimeZone::get("Asia/Tokyo").unwrap_or_else(|_| TimeZone::fixed(jiff::tz::Offset::constant(9)))
}

/// A stable 128-bit key for one event; see [`Event::idempotency_key`].
///
/// Displays (and serialises) as 32 lowercase hex digits.
///
/// ```
/// # use bytes::Bytes;
/// # let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
/// #   {"created":"2023-01-25 14:03:06","status":"queued"}]}}"#;
/// # let batch = cmc_webhook_core::EventBatch::parse("application/json", Bytes::from(body))?;
/// let key = batch.events[0].idempotency_key();
/// let hex = key.to_string();
/// assert!(hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
/// assert_eq!(key.as_bytes().len(), 16);
/// # Ok::<(), cmc_webhook_core::ParseError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey([u8; 16]);

impl IdempotencyKey {
    fn of(parts: &[&str]) -> IdempotencyKey {
        IdempotencyKey::of_bytes(parts.iter().map(|p| p.as_bytes()))
    }

    /// The first 16 bytes of the SHA-256 of the parts, each prefixed with
    /// its length.
    pub(crate) fn of_bytes<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> IdempotencyKey {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for part in parts {
            // Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut key = [0; 16];
        key.copy_from_slice(&digest[..16]);
        IdempotencyKey(key)
    }

    /// The key's 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({self})")
    }
}

/// A text that is not an [`IdempotencyKey`]: not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidKey;

impl fmt::Display for InvalidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an idempotency key is 32 hex digits")
    }
}

impl std::error::Error for InvalidKey {}

impl std::str::FromStr for IdempotencyKey {
    type Err = InvalidKey;

    /// From its 32 hex digits, in either letter case.
    ///
    /// ```
    /// use cmc_webhook_core::IdempotencyKey;
    ///
    /// let key: IdempotencyKey = "00112233445566778899AABBCCDDEEFF".parse()?;
    /// assert_eq!(key.to_string(), "00112233445566778899aabbccddeeff");
    /// assert!("0011".parse::<IdempotencyKey>().is_err());
    /// # Ok::<(), cmc_webhook_core::event::InvalidKey>(())
    /// ```
    fn from_str(hex: &str) -> Result<IdempotencyKey, InvalidKey> {
        let bytes = hex.as_bytes();
        if bytes.len() != 32 {
            return Err(InvalidKey);
        }
        let mut key = [0; 16];
        for (i, pair) in bytes.chunks(2).enumerate() {
            key[i] = crate::mime::percent::hex_pair(pair[0], pair[1]).ok_or(InvalidKey)?;
        }
        Ok(IdempotencyKey(key))
    }
}

impl<'de> Deserialize<'de> for IdempotencyKey {
    /// From its 32 hex digits.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hex = Text::deserialize(d)?;
        hex.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for IdempotencyKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

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

/// The `status` of a [`Delivery`].
///
/// ```
/// use cmc_webhook_core::DeliveryStatus;
///
/// assert_eq!(DeliveryStatus::from_wire("deferred"), DeliveryStatus::Deferred);
/// let new = DeliveryStatus::from_wire("expired");
/// assert_eq!(new.as_str(), "expired");
/// assert!(matches!(new, DeliveryStatus::Other(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeliveryStatus {
    /// Accepted from the relay source.
    Queued,
    /// The destination server accepted the mail.
    Succeeded,
    /// The destination server refused the mail.
    Failed,
    /// A temporary error; the mail is queued for another attempt.
    Deferred,
    /// A status this crate does not know, as it was sent.
    Other(Text),
}

impl DeliveryStatus {
    /// Reads the wire value; unknown values are kept in
    /// [`DeliveryStatus::Other`].
    pub fn from_wire(value: &str) -> DeliveryStatus {
        Self::from_text(Text::from(value))
    }

    pub(crate) fn from_text(value: Text) -> DeliveryStatus {
        match value.as_str() {
            "queued" => DeliveryStatus::Queued,
            "succeeded" => DeliveryStatus::Succeeded,
            "failed" => DeliveryStatus::Failed,
            "deferred" => DeliveryStatus::Deferred,
            _ => DeliveryStatus::Other(value),
        }
    }

    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Deferred => "deferred",
            DeliveryStatus::Other(value) => value,
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeliveryStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Text::deserialize(d).map(DeliveryStatus::from_text)
    }
}

impl Serialize for DeliveryStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
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

macro_rules! bounce_codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, )*) => {
        /// The error status of a [`Bounce`]: CMC's error-status code.
        ///
        /// ```
        /// use cmc_webhook_core::BounceStatus;
        ///
        /// assert_eq!(BounceStatus::from_code("5"), BounceStatus::MailboxFull);
        /// assert_eq!(BounceStatus::UnknownUser.code(), "2");
        /// // Codes added to the service later are kept, not refused.
        /// let new = BounceStatus::from_code("42");
        /// assert_eq!(new.code(), "42");
        /// assert!(!new.is_known());
        /// ```
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum BounceStatus {
            $( $(#[$doc])* $variant, )*
            /// A code this crate does not know, as it was sent.
            Other(Text),
        }

        impl BounceStatus {
            /// Reads the wire code; unknown codes are kept in
            /// [`BounceStatus::Other`].
            pub fn from_code(code: &str) -> BounceStatus {
                Self::from_text(Text::from(code))
            }

            pub(crate) fn from_text(code: Text) -> BounceStatus {
                match code.as_str() {
                    $( $code => BounceStatus::$variant, )*
                    _ => BounceStatus::Other(code),
                }
            }

            /// The wire code: `"2"` for [`BounceStatus::UnknownUser`], the
            /// code as sent for [`BounceStatus::Other`].
            pub fn code(&self) -> &str {
                match self {
                    $( BounceStatus::$variant => $code, )*
                    BounceStatus::Other(code) => code,
                }
            }
        }
    };
}

bounce_codes! {
    /// `1`: unknown host (DNS resolution of the domain failed).
    UnknownHost = "1",
    /// `2`: unknown user (the mailbox does not exist).
    UnknownUser = "2",
    /// `3`: resend timeout (not delivered before the retry period ran out).
    ResendTimeout = "3",
    /// `4`: refused by the receiving side's policy.
    PolicyRejected = "4",
    /// `5`: mailbox full.
    MailboxFull = "5",
    /// `6`: forwarding error.
    ForwardingError = "6",
    /// `7`: the receiving server is misconfigured.
    ServerMisconfigured = "7",
    /// `8`: message too large.
    MessageTooLarge = "8",
    /// `9`: address format error (for example `user@example`).
    InvalidAddress = "9",
    /// `10`: address suppressed (blocked after earlier errors).
    Suppressed = "10",
    /// `11`: address unsubscribed (one-click unsubscribe).
    Unsubscribed = "11",
    /// `99`: another permanent error.
    OtherPermanent = "99",
}

impl BounceStatus {
    /// Whether the code is one of the documented ones.
    pub fn is_known(&self) -> bool {
        !matches!(self, BounceStatus::Other(_))
    }

    /// What the code says about the address: see [`BounceClass`] for the
    /// class of every code.
    ///
    /// ```
    /// use cmc_webhook_core::{BounceClass, BounceStatus};
    ///
    /// assert_eq!(BounceStatus::UnknownUser.class(), BounceClass::Hard);
    /// assert_eq!(BounceStatus::MailboxFull.class(), BounceClass::Soft);
    /// assert_eq!(BounceStatus::from_code("10").class(), BounceClass::Blocked);
    /// assert_eq!(BounceStatus::from_code("42").class(), BounceClass::Unknown);
    /// ```
    pub fn class(&self) -> BounceClass {
        match self {
            BounceStatus::UnknownHost
            | BounceStatus::UnknownUser
            | BounceStatus::InvalidAddress
            | BounceStatus::OtherPermanent => BounceClass::Hard,
            BounceStatus::ResendTimeout
            | BounceStatus::MailboxFull
            | BounceStatus::ForwardingError
            | BounceStatus::ServerMisconfigured
            | BounceStatus::MessageTooLarge => BounceClass::Soft,
            BounceStatus::PolicyRejected | BounceStatus::Suppressed => BounceClass::Blocked,
            BounceStatus::Unsubscribed => BounceClass::Unsubscribed,
            BounceStatus::Other(_) => BounceClass::Unknown,
        }
    }
}

/// What a bounce says about its address, from CMC's error-status code:
/// whether to stop mailing it, try again later, or look at why it was
/// refused. Given by [`BounceStatus::class`] and [`Event::bounce_class`].
///
/// Each code, its meaning, and its class:
///
/// | code | meaning | class | why |
/// |---|---|---|---|
/// | 1 | unknown host (the domain does not resolve) | `Hard` | no server takes mail for the address |
/// | 2 | unknown user (the mailbox does not exist) | `Hard` | the address does not work |
/// | 3 | resend timeout (not delivered before the retry period ran out) | `Soft` | the failures were temporary; the address may work later |
/// | 4 | refused by the receiving side's policy | `Blocked` | the address may exist; the sender or the content was refused |
/// | 5 | mailbox full | `Soft` | the mailbox exists and may have room later |
/// | 6 | forwarding error | `Soft` | the address exists; its forwarding failed this time |
/// | 7 | receiving server misconfigured | `Soft` | the receiving side's fault, which it may fix |
/// | 8 | message too large | `Soft` | this message failed, not the address |
/// | 9 | address format error (`user@example`) | `Hard` | the address cannot work |
/// | 10 | address suppressed (blocked after earlier errors) | `Blocked` | CMC did not try: its suppression list holds the address |
/// | 11 | address unsubscribed (one-click unsubscribe) | `Unsubscribed` | the recipient asked not to be mailed |
/// | 99 | other permanent error | `Hard` | CMC calls it permanent |
/// | any other | a code added after this crate ([`BounceStatus::Other`]) | `Unknown` | no meaning to go by |
///
/// Serialises as its [`as_str`](BounceClass::as_str) name, and reads back
/// from it (a name this version does not know reads as
/// [`BounceClass::Unknown`]).
///
/// ```
/// use cmc_webhook_core::{BounceClass, BounceStatus};
///
/// let class = BounceStatus::from_code("4").class();
/// assert_eq!(class, BounceClass::Blocked);
/// assert_eq!(class.as_str(), "blocked");
/// assert_eq!(class.to_string(), "blocked");
/// assert_eq!(serde_json::to_string(&class)?, r#""blocked""#);
/// assert_eq!(serde_json::from_str::<BounceClass>(r#""blocked""#)?, class);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BounceClass {
    /// The address does not work: stop mailing it (codes 1, 2, 9, 99).
    Hard,
    /// The address may work later, or the problem was this message
    /// (codes 3, 5, 6, 7, 8).
    Soft,
    /// Refused by policy, or suppressed by CMC (codes 4, 10).
    Blocked,
    /// The recipient unsubscribed (code 11).
    Unsubscribed,
    /// A code this crate does not know ([`BounceStatus::Other`]).
    Unknown,
}

impl BounceClass {
    /// The class's name: `hard`, `soft`, `blocked`, `unsubscribed` or
    /// `unknown`.
    ///
    /// ```
    /// assert_eq!(cmc_webhook_core::BounceClass::Hard.as_str(), "hard");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            BounceClass::Hard => "hard",
            BounceClass::Soft => "soft",
            BounceClass::Blocked => "blocked",
            BounceClass::Unsubscribed => "unsubscribed",
            BounceClass::Unknown => "unknown",
        }
    }

    fn from_name(name: &str) -> BounceClass {
        match name {
            "hard" => BounceClass::Hard,
            "soft" => BounceClass::Soft,
            "blocked" => BounceClass::Blocked,
            "unsubscribed" => BounceClass::Unsubscribed,
            _ => BounceClass::Unknown,
        }
    }
}

impl fmt::Display for BounceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for BounceClass {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for BounceClass {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Text::deserialize(d).map(|name| BounceClass::from_name(&name))
    }
}

impl fmt::Display for BounceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl<'de> Deserialize<'de> for BounceStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Text::deserialize(d).map(BounceStatus::from_text)
    }
}

impl Serialize for BounceStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
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

    #[test]
    fn format_created_is_cmcs_format() {
        let t = jiff::civil::date(2023, 1, 5).at(4, 3, 6, 0);
        assert_eq!(format_created(t), "2023-01-05 04:03:06");
        let t = jiff::civil::date(2023, 1, 5).at(4, 3, 6, 120);
        assert_eq!(format_created(t), "2023-01-05 04:03:06.000000120");
    }

    fn parse(body: &str) -> EventBatch {
        EventBatch::parse("application/json", Bytes::from(body.to_owned())).unwrap()
    }

    #[test]
    fn every_bounce_code_has_its_class() {
        let table = [
            ("1", BounceClass::Hard),
            ("2", BounceClass::Hard),
            ("3", BounceClass::Soft),
            ("4", BounceClass::Blocked),
            ("5", BounceClass::Soft),
            ("6", BounceClass::Soft),
            ("7", BounceClass::Soft),
            ("8", BounceClass::Soft),
            ("9", BounceClass::Hard),
            ("10", BounceClass::Blocked),
            ("11", BounceClass::Unsubscribed),
            ("99", BounceClass::Hard),
        ];
        for (code, class) in table {
            let status = BounceStatus::from_code(code);
            assert!(status.is_known(), "{code}");
            assert_eq!(status.class(), class, "code {code}");
        }
        for code in ["0", "12", "42", "98", "100", "", "two", " 2"] {
            assert_eq!(
                BounceStatus::from_code(code).class(),
                BounceClass::Unknown,
                "{code:?}"
            );
        }
    }

    #[test]
    fn bounce_class_names_and_serde() {
        let all = [
            (BounceClass::Hard, "hard"),
            (BounceClass::Soft, "soft"),
            (BounceClass::Blocked, "blocked"),
            (BounceClass::Unsubscribed, "unsubscribed"),
            (BounceClass::Unknown, "unknown"),
        ];
        for (class, name) in all {
            assert_eq!(class.as_str(), name);
            assert_eq!(class.to_string(), name);
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<BounceClass>(&json).unwrap(), class);
        }
        // A name from a later version reads as Unknown rather than failing.
        let later: BounceClass = serde_json::from_str(r#""greylisted""#).unwrap();
        assert_eq!(later, BounceClass::Unknown);
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
        let batch = parse(
            r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[
              {"created":"9999-12-31 23:59:59","status":"2"}]}}"#,
        );
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
