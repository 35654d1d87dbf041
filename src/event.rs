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

use bytes::Bytes;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::{ParseError, RawJson, Text};

/// One POST of the event webhook: a batch of status-change records.
///
/// Serialisable, and readable back into an equal value (the `api_key` is
/// never serialised), to keep in a queue or a store:
///
/// ```
/// # use bytes::Bytes;
/// # use cmc_webhook::EventBatch;
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
/// use cmc_webhook::{DeliveryStatus, Event, EventBatch};
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

impl EventBatch {
    /// Parses an event-webhook body in any of its encodings (JSON,
    /// form-urlencoded with the `event` field holding JSON text, or
    /// multipart/form-data with the same fields).
    ///
    /// `content_type` is the request's `Content-Type` header value. A body
    /// that is an inbound mail is refused with
    /// [`ParseErrorKind::WrongKind`](crate::ParseErrorKind::WrongKind).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook::EventBatch;
    ///
    /// let body = "server_composition=pro&event_type=bounces&event=%7B%22bounces%22%3A%5B%5D%7D";
    /// let batch = EventBatch::parse("application/x-www-form-urlencoded", Bytes::from(body))?;
    /// assert!(batch.events.is_empty());
    /// # Ok::<(), cmc_webhook::ParseError>(())
    /// ```
    pub fn parse(content_type: &str, body: Bytes) -> Result<EventBatch, ParseError> {
        crate::wire::parse(
            content_type,
            body,
            Some(crate::webhook::Kind::Events),
            Default::default(),
        )?
        .into_events()
    }
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
/// use cmc_webhook::EventType;
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
/// use cmc_webhook::{BounceStatus, Event, EventBatch};
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
    /// The wire name of the record's type (`deliveries`, `bounces`, ...).
    pub fn event_type(&self) -> &str {
        match self {
            Event::Delivery(_) => "deliveries",
            Event::Bounce(_) => "bounces",
            Event::Block(_) => "blocks",
            Event::Unknown(u) => &u.event_type,
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
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook::{default_time_zone, EventBatch};
    ///
    /// let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
    ///   {"created":"2023-01-25 14:03:06","status":"succeeded"}]}}"#;
    /// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
    /// let at = batch.events[0].created_at(&default_time_zone()).unwrap()?;
    /// assert_eq!(at.to_string(), "2023-01-25T05:03:06Z");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn created_at(&self, tz: &TimeZone) -> Option<Result<jiff::Timestamp, jiff::Error>> {
        self.created()
            .map(|c| c.to_zoned_datetime(tz.clone()).map(|z| z.timestamp()))
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
    /// use cmc_webhook::EventBatch;
    ///
    /// let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
    ///   {"created":"2023-01-25 14:03:06","status":"queued","to":"a@example.jp","messageId":"<1@x>"},
    ///   {"created":"2023-01-25 14:03:09","status":"succeeded","to":"a@example.jp","messageId":"<1@x>"}]}}"#;
    /// let first = EventBatch::parse("application/json", Bytes::from(body))?;
    /// let again = EventBatch::parse("application/json", Bytes::from(body))?;
    /// assert_eq!(first.events[0].idempotency_key(), again.events[0].idempotency_key());
    /// assert_ne!(first.events[0].idempotency_key(), first.events[1].idempotency_key());
    /// assert_eq!(first.events[0].idempotency_key().to_string().len(), 32);
    /// # Ok::<(), cmc_webhook::ParseError>(())
    /// ```
    pub fn idempotency_key(&self) -> IdempotencyKey {
        match self {
            Event::Delivery(d) => IdempotencyKey::of(&[
                "deliveries",
                &d.message_id,
                &d.to,
                d.status.as_str(),
                &key_time(d.created),
            ]),
            Event::Bounce(b) => IdempotencyKey::of(&[
                "bounces",
                &b.message_id,
                &b.to,
                b.status.code(),
                &key_time(b.created),
            ]),
            Event::Block(b) => IdempotencyKey::of(&["blocks", &b.raw.canonical()]),
            Event::Unknown(u) => IdempotencyKey::of(&[&u.event_type, &u.raw.canonical()]),
        }
    }
}

/// `created` as the key hashes it: CMC's own `YYYY-MM-DD HH:MM:SS` (with
/// nanoseconds only when there are any), written here rather than by a
/// library's `Display`, whose format could change under the key.
pub(crate) fn key_time(t: DateTime) -> String {
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

/// The time zone this crate assumes for `created` when the caller names
/// none: Asia/Tokyo, the documented default of CMC's Japanese customers.
///
/// Taken from the system's time-zone database; where there is none, the
/// fixed offset +09:00, which equals Asia/Tokyo for every date since 1951.
///
/// ```
/// let tz = cmc_webhook::default_time_zone();
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
/// # let batch = cmc_webhook::EventBatch::parse("application/json", Bytes::from(body))?;
/// let key = batch.events[0].idempotency_key();
/// let hex = key.to_string();
/// assert!(hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
/// assert_eq!(key.as_bytes().len(), 16);
/// # Ok::<(), cmc_webhook::ParseError>(())
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
    /// use cmc_webhook::IdempotencyKey;
    ///
    /// let key: IdempotencyKey = "00112233445566778899AABBCCDDEEFF".parse()?;
    /// assert_eq!(key.to_string(), "00112233445566778899aabbccddeeff");
    /// assert!("0011".parse::<IdempotencyKey>().is_err());
    /// # Ok::<(), cmc_webhook::event::InvalidKey>(())
    /// ```
    fn from_str(hex: &str) -> Result<IdempotencyKey, InvalidKey> {
        let bytes = hex.as_bytes();
        if bytes.len() != 32 {
            return Err(InvalidKey);
        }
        let mut key = [0; 16];
        for (i, pair) in bytes.chunks(2).enumerate() {
            key[i] = crate::wire::percent::hex_pair(pair[0], pair[1]).ok_or(InvalidKey)?;
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
/// use cmc_webhook::DeliveryStatus;
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
        /// use cmc_webhook::BounceStatus;
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
/// use cmc_webhook::{Event, EventBatch};
///
/// let body = r#"{"event_type":"blocks","server_composition":"pro","event":{"blocks":[
///   {"email":"user@example.jp","id":17,"status":"add","extra":{"x":1}}]}}"#;
/// let batch = EventBatch::parse("application/json", Bytes::from(body))?;
/// let Event::Block(block) = &batch.events[0] else { panic!("a block") };
/// assert_eq!(block.email.as_deref(), Some("user@example.jp"));
/// assert_eq!(block.id.as_deref(), Some("17"));
/// assert_eq!(block.created, None);
/// assert!(block.raw.get().contains(r#""extra":{"x":1}"#));
/// # Ok::<(), cmc_webhook::ParseError>(())
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

    #[test]
    fn key_time_is_cmcs_format() {
        let t = jiff::civil::date(2023, 1, 5).at(4, 3, 6, 0);
        assert_eq!(key_time(t), "2023-01-05 04:03:06");
        let t = jiff::civil::date(2023, 1, 5).at(4, 3, 6, 120);
        assert_eq!(key_time(t), "2023-01-05 04:03:06.000000120");
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
