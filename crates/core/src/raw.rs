//! [`RawJson`]: a JSON value kept as the text it arrived as.

use std::fmt;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::Text;

/// A JSON value kept as text: an unknown field, or a record whose schema
/// this crate does not read ([`Block`](crate::Block),
/// [`UnknownEvent`](crate::UnknownEvent)).
///
/// The text is a slice of the request body where it can be (no copy, and
/// no tree of `serde_json::Value`s, which can take twenty times the
/// memory of its text). Read it with [`parse`](RawJson::parse) or
/// [`to_value`](RawJson::to_value) when you need it. It serialises as the
/// JSON value it holds, and two values compare equal when they hold the
/// same JSON, whatever the spacing, key order or escapes.
///
/// ```
/// use cmc_webhook_core::RawJson;
///
/// let raw = RawJson::from_value(&serde_json::json!({"b": [1, 2], "a": "x"}));
/// assert_eq!(raw.get(), r#"{"a":"x","b":[1,2]}"#);
/// assert_eq!(raw.to_value()?["b"][1], 2);
/// let text: String = RawJson::string("form value").parse()?;
/// assert_eq!(text, "form value");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone)]
pub struct RawJson(Text);

impl RawJson {
    /// Wraps text that is known to hold one JSON value.
    pub(crate) fn from_text_unchecked(text: Text) -> RawJson {
        RawJson(text)
    }

    /// The JSON text of `value`.
    pub fn from_value(value: &Value) -> RawJson {
        RawJson(Text::from(value.to_string()))
    }

    /// A JSON string holding `s` (how form and multipart fields this crate
    /// does not know are kept).
    pub fn string(s: &str) -> RawJson {
        // Sized for the common case of nothing to escape: one copy, no
        // growth (a large form field would otherwise cost twice its size).
        let mut out = Vec::with_capacity(s.len() + 2);
        serde_json::to_writer(&mut out, s).expect("a string always serialises");
        RawJson(Text::try_from_bytes(Bytes::from(out)).expect("serde_json writes UTF-8"))
    }

    /// The JSON text, as it was sent.
    pub fn get(&self) -> &str {
        &self.0
    }

    /// The value as a `serde_json::Value` tree.
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.get())
    }

    /// The value read into any type that can be deserialised.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.get())
    }

    pub(crate) fn text(&self) -> &Text {
        &self.0
    }

    /// The JSON text with keys sorted and escapes normalised (the text as
    /// it is when it does not parse, which the parsers never let through).
    pub(crate) fn canonical(&self) -> String {
        match self.to_value() {
            Ok(value) => value.to_string(),
            Err(_) => self.get().to_owned(),
        }
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get() || self.canonical() == other.canonical()
    }
}

impl fmt::Debug for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawJson({})", self.get())
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl From<&Value> for RawJson {
    fn from(value: &Value) -> Self {
        RawJson::from_value(value)
    }
}

impl From<Value> for RawJson {
    fn from(value: Value) -> Self {
        RawJson::from_value(&value)
    }
}

impl<'de> serde::Deserialize<'de> for RawJson {
    /// Any value, kept as its JSON text (keys sorted, escapes
    /// normalised: equal to the original by [`PartialEq`]). Read through a
    /// `serde_json::Value`, so that it also works inside the internally
    /// tagged [`Event`](crate::Event), where serde buffers the content and
    /// a raw value cannot be captured.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawJson, D::Error> {
        Value::deserialize(d).map(|v| RawJson::from_value(&v))
    }
}

impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw: &RawValue = serde_json::from_str(self.get()).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_json_compares_equal_whatever_its_spelling() {
        let a = RawJson::from_text_unchecked(Text::from(r#"{"a": 1, "b": "\u00e9"}"#));
        let b = RawJson::from_text_unchecked(Text::from(r#"{"b":"é","a":1}"#));
        assert_eq!(a, b);
        assert_ne!(a, RawJson::string("x"));
    }

    #[test]
    fn serialises_as_the_value_it_holds() {
        let raw = RawJson::from_text_unchecked(Text::from(r#"[1, {"x": null}]"#));
        let map = std::collections::BTreeMap::from([("k", raw)]);
        assert_eq!(
            serde_json::to_string(&map).unwrap(),
            r#"{"k":[1, {"x": null}]}"#
        );
    }
}
