//! serde seeds that read CMC's JSON straight into the model.
//!
//! Every seed carries the [`Text`] buffer being parsed, so that strings
//! without escapes become slices of it instead of copies. No intermediate
//! `serde_json::Value` is built for the known parts of a payload.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use jiff::civil::DateTime;
use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess,
    Visitor,
};
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::event::{Block, Bounce, Delivery, DeliveryStatus, Event, UnknownEvent};
use crate::inbound::{Header, Headers};
use crate::{BounceStatus, RawJson, Text};

use super::budget::Budget;
use super::fields::{Fields, Slot};

/// A string value (numbers accepted as their decimal text; `null` read as
/// absent), shared with the buffer when it has no escapes.
#[derive(Clone, Copy)]
pub(crate) struct TextSeed<'a>(pub &'a Text);

impl<'de> DeserializeSeed<'de> for TextSeed<'_> {
    type Value = Option<Text>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Text>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TextSeed<'_> {
    type Value = Option<Text>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(self.0.share(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Text::from(v)))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Text::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Text::from(v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Text::from(v.to_string())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A string value checked and converted by `parse` while it is read, so
/// that an error carries the value's path.
struct ParsedSeed<'a, F>(&'a Text, F);

impl<'de, T, F> DeserializeSeed<'de> for ParsedSeed<'_, F>
where
    F: FnOnce(&str) -> Result<T, String>,
{
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        match TextSeed(self.0).deserialize(d)? {
            Some(text) => (self.1)(&text).map(Some).map_err(D::Error::custom),
            None => Ok(None),
        }
    }
}

/// A value that must be a JSON string (the `api_key`: a number or `null`
/// there is a mistake, not a key).
struct StringSeed<'a>(&'a Text);

impl<'de> DeserializeSeed<'de> for StringSeed<'_> {
    type Value = Text;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Text, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for StringSeed<'_> {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text, E> {
        Ok(self.0.share(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text::from(v))
    }
}

/// Any JSON value, kept as a slice of the buffer ([`RawJson`]) rather than
/// a tree. Checked against [`Limits::MAX_NESTING`](crate::Limits::MAX_NESTING):
/// skipping a value to capture it does not check nesting, and a value that
/// the inbox could store but not read back (its stored JSON wraps the value
/// in two more levels, and `serde_json` reads at most 127) is no value.
pub(crate) struct RawSeed<'a>(pub &'a Text);

impl<'de> DeserializeSeed<'de> for RawSeed<'_> {
    type Value = RawJson;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RawJson, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        check_nesting(raw.get()).map_err(D::Error::custom)?;
        Ok(RawJson::from_text_unchecked(self.0.share(raw.get())))
    }
}

/// The start of the message of a value that nests too deep, by which
/// [`from_json`](super::json::from_json) tells it from other data errors.
pub(crate) const TOO_DEEP: &str = "a value nests deeper than";

/// Checks that the JSON text `raw` nests at most
/// [`Limits::MAX_NESTING`](crate::Limits::MAX_NESTING) arrays and objects
/// deep. It was read once already, so only its depth can fail here; the
/// error's message starts with [`TOO_DEEP`].
fn check_nesting(raw: &str) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_str(raw);
    match Nested(crate::Limits::MAX_NESTING).deserialize(&mut de) {
        Ok(()) => Ok(()),
        Err(e) => {
            let message = e.to_string();
            Err(if message.starts_with(TOO_DEEP) {
                format!(
                    "{TOO_DEEP} {} levels of arrays and objects, which is more than \
                     the inbox can store and read back",
                    crate::Limits::MAX_NESTING
                )
            } else {
                message
            })
        }
    }
}

/// Any JSON value, walked and dropped, refusing what nests deeper than
/// the levels it has left: unlike [`IgnoredAny`] (which serde_json skips
/// without counting depth), it sees every level, and unlike a
/// `serde_json::Value`, it allocates nothing.
#[derive(Clone, Copy)]
struct Nested(usize);

impl<'de> DeserializeSeed<'de> for Nested {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Nested {
    /// The seed for the values one level further in.
    fn enter<E: de::Error>(self) -> Result<Nested, E> {
        match self.0.checked_sub(1) {
            Some(left) => Ok(Nested(left)),
            None => Err(E::custom(TOO_DEEP)),
        }
    }
}

impl<'de> Visitor<'de> for Nested {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.enter()?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// A map key, borrowed from the buffer when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// Sets `slot` once; a second value for the same key is an error, since
/// the two could disagree and neither may be dropped silently.
///
/// Inlined: it runs for every field of every record, and out of line
/// (as the compiler chose once the core became a crate of its own) the
/// call and its error formatting cost about a tenth of an event batch's
/// parse. The error is built out of line.
#[inline]
pub(super) fn set_once<T, E: de::Error>(
    slot: &mut Option<T>,
    value: Option<T>,
    key: &str,
) -> Result<(), E> {
    if slot.is_some() {
        return Err(given_twice(key));
    }
    *slot = value;
    Ok(())
}

#[cold]
#[inline(never)]
fn given_twice<E: de::Error>(key: &str) -> E {
    E::custom(format_args!("field `{key}` is given twice"))
}

pub(super) fn parse_created(text: &str) -> Result<DateTime, String> {
    if let Some(dt) = fixed_created(text.as_bytes()) {
        return Ok(dt);
    }
    text.parse::<DateTime>().map_err(|e| {
        format!("`{text}` is not a date and time of the form YYYY-MM-DD HH:MM:SS ({e})")
    })
}

/// CMC's one format, `YYYY-MM-DD HH:MM:SS`, read by position: most of
/// the cost of a general ISO 8601 parser is in the forms CMC never sends.
/// Anything else (and any out-of-range value, whose error message is
/// jiff's) goes to jiff's parser.
fn fixed_created(b: &[u8]) -> Option<DateTime> {
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i32> {
        b[range].iter().try_fold(0i32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + i32::from(d - b'0'))
        })
    };
    DateTime::new(
        num(0..4)? as i16,
        num(5..7)? as i8,
        num(8..10)? as i8,
        num(11..13)? as i8,
        num(14..16)? as i8,
        num(17..19)? as i8,
        0,
    )
    .ok()
}

/// An address, or `None` for the empty string CMC sends when there is none.
#[inline]
pub(super) fn parse_ip(text: &str) -> Result<Option<IpAddr>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| not_an_ip(text))
}

#[cold]
#[inline(never)]
fn not_an_ip(text: &str) -> String {
    format!("`{text}` is not an IP address")
}

/// The keys of a delivery or bounce record (version 1 and 2 names).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RecordKey {
    Created,
    Status,
    ReturnPath,
    EnvelopeFrom,
    From,
    To,
    EnvelopeTo,
    MessageId,
    Reason,
    Subject,
    ApiData,
    SourceIp,
    SenderIp,
    Other(String),
}

struct RecordKeySeed;

impl<'de> DeserializeSeed<'de> for RecordKeySeed {
    type Value = RecordKey;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<RecordKey, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for RecordKeySeed {
    type Value = RecordKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RecordKey, E> {
        Ok(RecordKey::of(v))
    }
}

impl RecordKey {
    pub(super) fn of(v: &str) -> RecordKey {
        match v {
            "created" => RecordKey::Created,
            "status" => RecordKey::Status,
            "returnPath" => RecordKey::ReturnPath,
            "envelopeFrom" => RecordKey::EnvelopeFrom,
            "from" => RecordKey::From,
            "to" => RecordKey::To,
            "envelopeTo" => RecordKey::EnvelopeTo,
            "messageId" => RecordKey::MessageId,
            "reason" => RecordKey::Reason,
            "subject" => RecordKey::Subject,
            "apiData" => RecordKey::ApiData,
            "sourceIp" => RecordKey::SourceIp,
            "senderIp" => RecordKey::SenderIp,
            other => RecordKey::Other(other.to_owned()),
        }
    }
}

/// The fields shared by delivery and bounce records, as read.
#[derive(Default)]
pub(super) struct RecordFields {
    pub(super) created: Option<DateTime>,
    status: Option<Text>,
    return_path: Option<Text>,
    envelope_from: Option<Text>,
    from: Option<Text>,
    to: Option<Text>,
    envelope_to: Option<Text>,
    message_id: Option<Text>,
    reason: Option<Text>,
    subject: Option<Text>,
    api_data: Option<Text>,
    pub(super) source_ip: Option<Option<IpAddr>>,
    pub(super) sender_ip: Option<Option<IpAddr>>,
    pub(super) extra: BTreeMap<String, RawJson>,
}

impl RecordFields {
    fn read<'de, A: MapAccess<'de>>(
        ctx: &Text,
        budget: &Budget,
        map: &mut A,
    ) -> Result<RecordFields, A::Error> {
        let mut r = RecordFields::default();
        let seed = TextSeed(ctx);
        while let Some(key) = map.next_key_seed(RecordKeySeed)? {
            if let Some((slot, name)) = r.text_slot(&key) {
                let value = map.next_value_seed(seed)?;
                set_once(slot, value, name)?;
                continue;
            }
            match key {
                RecordKey::Created => {
                    let v = map.next_value_seed(ParsedSeed(ctx, parse_created))?;
                    set_once(&mut r.created, v, "created")?;
                }
                RecordKey::SourceIp => {
                    let v = map.next_value_seed(ParsedSeed(ctx, parse_ip))?;
                    set_once(&mut r.source_ip, v, "sourceIp")?;
                }
                RecordKey::SenderIp => {
                    let v = map.next_value_seed(ParsedSeed(ctx, parse_ip))?;
                    set_once(&mut r.sender_ip, v, "senderIp")?;
                }
                RecordKey::Other(name) => {
                    budget.unknown_field().map_err(A::Error::custom)?;
                    let value = map.next_value_seed(RawSeed(ctx))?;
                    if r.extra.insert(name.clone(), value).is_some() {
                        return Err(A::Error::custom(format_args!(
                            "field `{name}` is given twice"
                        )));
                    }
                }
                // The text keys, read above.
                _ => {}
            }
        }
        Ok(r)
    }

    /// The slot of a key whose value is kept as text, and its name; `None`
    /// for `created`, the addresses and unknown keys.
    pub(super) fn text_slot(
        &mut self,
        key: &RecordKey,
    ) -> Option<(&mut Option<Text>, &'static str)> {
        Some(match key {
            RecordKey::Status => (&mut self.status, "status"),
            RecordKey::ReturnPath => (&mut self.return_path, "returnPath"),
            RecordKey::EnvelopeFrom => (&mut self.envelope_from, "envelopeFrom"),
            RecordKey::From => (&mut self.from, "from"),
            RecordKey::To => (&mut self.to, "to"),
            RecordKey::EnvelopeTo => (&mut self.envelope_to, "envelopeTo"),
            RecordKey::MessageId => (&mut self.message_id, "messageId"),
            RecordKey::Reason => (&mut self.reason, "reason"),
            RecordKey::Subject => (&mut self.subject, "subject"),
            RecordKey::ApiData => (&mut self.api_data, "apiData"),
            RecordKey::Created
            | RecordKey::SourceIp
            | RecordKey::SenderIp
            | RecordKey::Other(_) => return None,
        })
    }

    /// The created time, parsed; `created` is required.
    fn created<E: de::Error>(&self) -> Result<DateTime, E> {
        self.created.ok_or_else(|| E::missing_field("created"))
    }

    fn status<E: de::Error>(&mut self) -> Result<Text, E> {
        self.status.take().ok_or_else(|| E::missing_field("status"))
    }

    /// Version 2 name, else version 1 name; both given and different is an
    /// error, since one of them would be lost.
    fn either<E: de::Error>(
        v2: Option<Text>,
        v1: Option<Text>,
        names: (&str, &str),
    ) -> Result<Text, E> {
        match (v2, v1) {
            (Some(a), Some(b)) if a != b => Err(E::custom(format_args!(
                "`{}` and `{}` disagree (`{a}` and `{b}`)",
                names.0, names.1
            ))),
            (Some(a), _) | (None, Some(a)) => Ok(a),
            (None, None) => Ok(Text::new()),
        }
    }

    pub(super) fn into_delivery<E: de::Error>(mut self) -> Result<Delivery, E> {
        Ok(Delivery {
            created: self.created()?,
            status: DeliveryStatus::from_text(self.status()?),
            return_path: Self::either(self.return_path, self.envelope_from, RETURN_PATH)?,
            from: self.from.unwrap_or_default(),
            to: Self::either(self.to, self.envelope_to, TO)?,
            message_id: self.message_id.unwrap_or_default(),
            reason: self.reason.unwrap_or_default(),
            subject: self.subject.unwrap_or_default(),
            api_data: self.api_data.unwrap_or_default(),
            source_ip: self.source_ip.flatten(),
            sender_ip: self.sender_ip.flatten(),
            extra: self.extra,
        })
    }

    pub(super) fn into_bounce<E: de::Error>(mut self) -> Result<Bounce, E> {
        let mut extra = self.extra;
        // Bounce records have no addresses of their own; keep any that come.
        for (key, value) in [("sourceIp", self.source_ip), ("senderIp", self.sender_ip)] {
            if let Some(v) = value {
                let text = v.map(|ip| ip.to_string()).unwrap_or_default();
                extra.insert(key.to_owned(), RawJson::string(&text));
            }
        }
        Ok(Bounce {
            created: self.created.ok_or_else(|| E::missing_field("created"))?,
            status: BounceStatus::from_text(
                self.status
                    .take()
                    .ok_or_else(|| E::missing_field("status"))?,
            ),
            return_path: Self::either(self.return_path, self.envelope_from, RETURN_PATH)?,
            from: self.from.unwrap_or_default(),
            to: Self::either(self.to, self.envelope_to, TO)?,
            message_id: self.message_id.unwrap_or_default(),
            reason: self.reason.unwrap_or_default(),
            subject: self.subject.unwrap_or_default(),
            api_data: self.api_data.unwrap_or_default(),
            extra,
        })
    }
}

/// The version 2 and version 1 names of the fields that have both.
const RETURN_PATH: (&str, &str) = ("returnPath", "envelopeFrom");
const TO: (&str, &str) = ("to", "envelopeTo");

#[derive(Clone, Copy)]
enum RecordKind {
    Delivery,
    Bounce,
}

/// One delivery or bounce record, pushed onto `out` where it is built
/// (returning the record through serde's layers would copy it each time).
struct RecordSeed<'a, 'v> {
    ctx: &'a Text,
    budget: &'a Budget,
    kind: RecordKind,
    out: &'v mut Vec<Event>,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.budget.record().map_err(A::Error::custom)?;
        let fields = RecordFields::read(self.ctx, self.budget, &mut map)?;
        self.out.push(match self.kind {
            RecordKind::Delivery => Event::Delivery(fields.into_delivery()?),
            RecordKind::Bounce => Event::Bounce(fields.into_bounce()?),
        });
        Ok(())
    }
}

/// The fields of a `blocks` record that are read out: strings and
/// numbers (as their JSON text); any other value is left in `raw` only.
/// A key given twice keeps its last value, as JSON readers do.
#[derive(Default)]
struct BlockFields {
    created: Option<Text>,
    email: Option<Text>,
    id: Option<Text>,
    occurred: Option<Text>,
    status: Option<Text>,
}

struct BlockSeed<'a>(&'a Text);

impl<'de> Visitor<'de> for BlockSeed<'_> {
    type Value = BlockFields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BlockFields, A::Error> {
        let mut b = BlockFields::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let slot = match &*key {
                "created" => &mut b.created,
                "email" => &mut b.email,
                "id" => &mut b.id,
                "occurred" => &mut b.occurred,
                "status" => &mut b.status,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value_seed(ScalarSeed(self.0))?;
        }
        Ok(b)
    }
}

/// A string or a number (as its JSON text); `None` for any other value.
struct ScalarSeed<'a>(&'a Text);

impl<'de> DeserializeSeed<'de> for ScalarSeed<'_> {
    type Value = Option<Text>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Text>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed<'_> {
    type Value = Option<Text>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(self.0.share(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Text::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Text::from(v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Text::from(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map(|n| Text::from(n.to_string())))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

/// A record kept raw must be an object.
fn check_object<E: de::Error>(raw: &RawJson) -> Result<(), E> {
    if raw.get().trim_start().starts_with('{') {
        Ok(())
    } else {
        Err(E::custom("a record must be a JSON object"))
    }
}

fn block_from_raw<E: de::Error>(raw: RawJson) -> Result<Event, E> {
    check_object::<E>(&raw)?;
    let text = raw.text().clone();
    let mut de = serde_json::Deserializer::from_str(&text);
    let b = de.deserialize_map(BlockSeed(&text)).map_err(E::custom)?;
    Ok(Event::Block(Block {
        created: b.created,
        email: b.email,
        id: b.id,
        occurred: b.occurred,
        status: b.status,
        raw,
    }))
}

/// Room for the records of a list in `out`. serde_json gives no length
/// for arrays: a delivery record takes 300 to 900 bytes of JSON, so one
/// record per 400 bytes of the text (`hint`) saves most of the copies of
/// growing the vector, and never reserves more memory than the body
/// itself takes (an event is smaller than 400 bytes). Bounded by the
/// records cap, and by 65 536.
pub(super) fn reserve_records(out: &mut Vec<Event>, hint: usize, budget: &Budget) {
    out.reserve(hint.min(budget.limits().records).min(1 << 16));
}

/// One list of records in `event`, read according to its key.
struct RecordsSeed<'a, 'v> {
    ctx: &'a Text,
    budget: &'a Budget,
    event_type: &'a Text,
    out: &'v mut Vec<Event>,
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let hint = seq.size_hint().unwrap_or(self.ctx.len() / 400);
        reserve_records(self.out, hint, self.budget);
        let kind = match self.event_type.as_str() {
            "deliveries" => Some(RecordKind::Delivery),
            "bounces" => Some(RecordKind::Bounce),
            _ => None,
        };
        match kind {
            Some(kind) => {
                while seq
                    .next_element_seed(RecordSeed {
                        ctx: self.ctx,
                        budget: self.budget,
                        kind,
                        out: self.out,
                    })?
                    .is_some()
                {}
            }
            None => {
                let blocks = self.event_type == "blocks";
                while let Some(raw) = seq.next_element_seed(RawSeed(self.ctx))? {
                    self.budget.record().map_err(A::Error::custom)?;
                    self.out.push(if blocks {
                        block_from_raw(raw)?
                    } else {
                        check_object::<A::Error>(&raw)?;
                        Event::Unknown(UnknownEvent {
                            event_type: self.event_type.clone(),
                            raw,
                        })
                    });
                }
            }
        }
        Ok(())
    }
}

/// The `event` object: `{"deliveries": [...]}`. Yields the list names in
/// order and the records of all lists.
pub(crate) struct EventsSeed<'a>(pub &'a Text, pub &'a Budget);

impl<'de> DeserializeSeed<'de> for EventsSeed<'_> {
    type Value = (Vec<Text>, Vec<Event>);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventsSeed<'_> {
    type Value = (Vec<Text>, Vec<Event>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"an object like {"deliveries": [...]}"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut names: Vec<Text> = Vec::with_capacity(1);
        // For the duplicate check: linear even for a hostile object with
        // very many lists.
        let mut seen = std::collections::HashSet::new();
        let mut events = Vec::new();
        while let Some(name) = map.next_key_seed(TextSeed(self.0))? {
            // Each list costs like a field: it counts against that cap.
            self.1.unknown_field().map_err(A::Error::custom)?;
            let name = name.unwrap_or_default();
            if !seen.insert(name.clone()) {
                return Err(A::Error::custom(format_args!(
                    "list `{name}` is given twice"
                )));
            }
            map.next_value_seed(RecordsSeed {
                ctx: self.0,
                budget: self.1,
                event_type: &name,
                out: &mut events,
            })?;
            names.push(name);
        }
        Ok((names, events))
    }
}

/// The `headers` array: `[{"name": ..., "value": ...}, ...]`.
pub(crate) struct HeadersSeed<'a>(pub &'a Text, pub &'a Budget);

impl<'de> DeserializeSeed<'de> for HeadersSeed<'_> {
    type Value = Headers;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Headers, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for HeadersSeed<'_> {
    type Value = Headers;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"an array of {"name": ..., "value": ...} objects"#)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Headers, A::Error> {
        let mut headers = Vec::with_capacity(seq.size_hint().unwrap_or(16));
        while let Some(h) = seq.next_element_seed(HeaderSeed(self.0))? {
            self.1.header().map_err(A::Error::custom)?;
            headers.push(h);
        }
        Ok(Headers::from(headers))
    }
}

struct HeaderSeed<'a>(&'a Text);

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = Header;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Header, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a {"name": ..., "value": ...} object"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let (mut name, mut value) = (None, None);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match &*key {
                "name" => set_once(&mut name, map.next_value_seed(TextSeed(self.0))?, "name")?,
                "value" => set_once(&mut value, map.next_value_seed(TextSeed(self.0))?, "value")?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let name = name.ok_or_else(|| A::Error::missing_field("name"))?;
        Ok(Header::new(name, value.unwrap_or_default()))
    }
}

/// Looks for the `api_key` of a JSON body alone, skipping everything
/// else, and checks it (for a body that failed to parse before its key
/// was read: its error is shown only to a caller with a valid key).
pub(crate) struct KeyScanSeed<'a>(pub &'a Text, pub &'a Budget);

impl<'de> DeserializeSeed<'de> for KeyScanSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for KeyScanSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key == "api_key" {
                let given = map.next_value_seed(StringSeed(self.0))?;
                // The state records the outcome; the scan is done.
                let _ = self.1.check_key(&given);
                return Ok(());
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

/// A whole JSON body: the top-level parameters of either webhook kind.
pub(crate) struct TopLevelSeed<'a>(pub &'a Text, pub &'a Budget);

impl<'de> DeserializeSeed<'de> for TopLevelSeed<'_> {
    type Value = Fields;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Fields, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevelSeed<'_> {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with the webhook's parameters")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let result = match Slot::of(&key) {
                Slot::Event => {
                    let events = map.next_value_seed(EventsSeed(self.0, self.1))?;
                    fields.set_events(events)
                }
                Slot::Headers => {
                    let headers = map.next_value_seed(HeadersSeed(self.0, self.1))?;
                    fields.set_headers(headers)
                }
                Slot::Other => {
                    self.1.unknown_field().map_err(A::Error::custom)?;
                    let value = map.next_value_seed(RawSeed(self.0))?;
                    fields.set_extra(&key, value)
                }
                Slot::ApiKey => {
                    let key = map.next_value_seed(StringSeed(self.0))?;
                    self.1.check_key(&key).map_err(A::Error::custom)?;
                    fields.set_text(Slot::ApiKey, "api_key", key)
                }
                slot => match map.next_value_seed(TextSeed(self.0))? {
                    Some(text) => fields.set_text(slot, &key, text),
                    None => Ok(()),
                },
            };
            result.map_err(A::Error::custom)?;
        }
        Ok(fields)
    }
}
