//! `application/json` bodies, and the JSON text inside form fields.

use serde::de::DeserializeSeed;

use crate::event::Event;
use crate::{ParseError, ParseErrorKind, Text};

use super::budget::Budget;
use super::de::{EventsSeed, KeyScanSeed, TopLevelSeed};
use super::fields::Fields;

/// Parses a whole JSON body into its top-level fields.
pub(crate) fn parse(body: &Text, budget: &Budget) -> Result<Fields, ParseError> {
    fast_or_general(
        budget,
        || super::fast::fields(body, budget),
        || from_json(body, budget, || TopLevelSeed(body, budget)),
    )
}

/// The `event` JSON text of a form or multipart body: its lists' names and
/// records.
pub(crate) fn events(text: &Text, budget: &Budget) -> Result<(Vec<Text>, Vec<Event>), ParseError> {
    fast_or_general(
        budget,
        || super::fast::events(text, budget),
        || from_json(text, budget, || EventsSeed(text, budget)),
    )
}

/// The fast path's result, or, when it gives up, the general path's from
/// the start, with the budget as it was before the fast path.
fn fast_or_general<T>(
    budget: &Budget,
    fast: impl FnOnce() -> Result<T, super::fast::GiveUp>,
    general: impl FnOnce() -> Result<T, ParseError>,
) -> Result<T, ParseError> {
    let before = budget.snapshot();
    match fast() {
        Ok(value) => Ok(value),
        Err(super::fast::GiveUp) => {
            budget.restore(before);
            general()
        }
    }
}

/// Looks for the `api_key` of a body that failed to parse before its key
/// was read, and checks it; the outcome is in `budget`.
pub(crate) fn scan_key(body: &Text, budget: &Budget) {
    let mut de = serde_json::Deserializer::from_str(body);
    let _ = KeyScanSeed(body, budget).deserialize(&mut de);
}

/// Runs `seed` over the JSON text `text`, which must hold one value and
/// nothing after it.
///
/// The fast path tracks no position. When it fails, the same text is parsed
/// again with `serde_path_to_error`, which records where the error is
/// (`deliveries[1].created`); errors are rare, so only they pay for it.
///
/// A cap of the [`Budget`] exceeded is a [`ParseErrorKind::TooLarge`]
/// error, without the second pass.
pub(crate) fn from_json<T, S, F>(text: &Text, budget: &Budget, seed: F) -> Result<T, ParseError>
where
    F: Fn() -> S,
    S: for<'de> DeserializeSeed<'de, Value = T>,
{
    let before = budget.snapshot();
    let mut de = serde_json::Deserializer::from_str(text);
    let first = seed()
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    let err = match first {
        Ok(value) => return Ok(value),
        Err(err) => err,
    };
    if budget.tripped() {
        return Err(ParseError::new(ParseErrorKind::TooLarge, err.to_string()));
    }
    budget.restore(before);
    let mut de = serde_json::Deserializer::from_str(text);
    let mut track = serde_path_to_error::Track::new();
    let again = seed().deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track));
    let path = path_string(&track.path());
    let err = match again {
        // The same input fails the same way; fall back to the first error if not.
        Err(again) => again,
        Ok(_) => err,
    };
    let kind = match err.classify() {
        // Raised by `raw_record` for a record kept raw, as a data error.
        serde_json::error::Category::Data
            if err.to_string().starts_with("recursion limit exceeded")
                || err.to_string().starts_with(super::de::TOO_DEEP) =>
        {
            ParseErrorKind::Json
        }
        serde_json::error::Category::Data if err.to_string().starts_with("missing field") => {
            ParseErrorKind::MissingField
        }
        serde_json::error::Category::Data => ParseErrorKind::InvalidField,
        _ => ParseErrorKind::Json,
    };
    let error = ParseError::new(kind, err.to_string());
    Err(if path.is_empty() {
        error
    } else {
        error.at(path)
    })
}

/// `event.deliveries[1].created`; ends before a segment the tracker could
/// not name (an error inside a key).
fn path_string(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => break,
        }
    }
    out
}
