//! What one body may still hold, counted while it is parsed (see
//! [`Limits`]).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::Relaxed};

use crate::auth::ApiKeys;
use crate::{Limits, ParseError, ParseErrorKind};

/// What the body said of its `api_key` so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Unseen = 0,
    Valid = 1,
    Invalid = 2,
}

/// The caps of a [`Limits`], counted down while one body is parsed. Shared
/// by every field of the body (a form body's `event` and its other fields
/// draw on the same counts).
///
/// One parse uses it from one task at a time; the counters are atomics
/// only so that a reference may be held across an `.await` in a `Send`
/// future (plain loads and stores, no read-modify-write).
#[derive(Debug)]
pub(crate) struct Budget {
    limits: Limits,
    records: AtomicUsize,
    unknown_fields: AtomicUsize,
    headers: AtomicUsize,
    tripped: AtomicBool,
    /// The accepted keys, when the body must carry one.
    keys: Option<ApiKeys>,
    key: AtomicU8,
    /// The position of the valid key among `keys`, once one was seen.
    matched: AtomicUsize,
}

/// The counts of a [`Budget`] at one moment, to parse the same text again.
pub(crate) struct Snapshot([usize; 3], u8, usize);

impl Budget {
    pub(crate) fn new(limits: Limits) -> Budget {
        Budget {
            limits,
            records: AtomicUsize::new(0),
            unknown_fields: AtomicUsize::new(0),
            headers: AtomicUsize::new(0),
            tripped: AtomicBool::new(false),
            keys: None,
            key: AtomicU8::new(Key::Unseen as u8),
            matched: AtomicUsize::new(usize::MAX),
        }
    }

    /// Requires the body's `api_key` to be one of `keys`: the parsers check
    /// it as soon as they read it, and stop at a wrong one.
    pub(crate) fn with_keys(mut self, keys: Option<ApiKeys>) -> Budget {
        self.keys = keys;
        self
    }

    /// Whether the body must carry a key and has not shown a valid one yet.
    pub(crate) fn needs_key(&self) -> bool {
        self.keys.is_some() && self.key() != Key::Valid
    }

    pub(crate) fn key(&self) -> Key {
        match self.key.load(Relaxed) {
            1 => Key::Valid,
            2 => Key::Invalid,
            _ => Key::Unseen,
        }
    }

    /// Checks an `api_key` value the moment it is read; a wrong one ends
    /// the parse.
    pub(crate) fn check_key(&self, given: &str) -> Result<(), String> {
        let Some(keys) = &self.keys else {
            return Ok(());
        };
        let before = self.matched.load(Relaxed);
        // A body carrying two different valid keys (of two sources, say)
        // names no one account: refused like a wrong key.
        if let Some(position) = keys
            .position(given)
            .filter(|&p| before == usize::MAX || before == p)
        {
            self.key.store(Key::Valid as u8, Relaxed);
            self.matched.store(position, Relaxed);
            Ok(())
        } else {
            self.key.store(Key::Invalid as u8, Relaxed);
            Err("the api_key is not an accepted key".to_owned())
        }
    }

    /// The position among the keys of the valid key the body carried.
    pub(crate) fn matched_key(&self) -> Option<usize> {
        match self.matched.load(Relaxed) {
            usize::MAX => None,
            i if self.key() == Key::Valid => Some(i),
            _ => None,
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether a cap was exceeded: the error being raised is a 413.
    pub(crate) fn tripped(&self) -> bool {
        self.tripped.load(Relaxed)
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot(
            [
                self.records.load(Relaxed),
                self.unknown_fields.load(Relaxed),
                self.headers.load(Relaxed),
            ],
            self.key.load(Relaxed),
            self.matched.load(Relaxed),
        )
    }

    /// Back to `s`: the counts, the tripped flag and the state of the
    /// `api_key` check, for a second reading of the same text.
    pub(crate) fn restore(&self, s: Snapshot) {
        self.records.store(s.0[0], Relaxed);
        self.unknown_fields.store(s.0[1], Relaxed);
        self.headers.store(s.0[2], Relaxed);
        self.key.store(s.1, Relaxed);
        self.matched.store(s.2, Relaxed);
        self.tripped.store(false, Relaxed);
    }

    fn take(
        &self,
        count: &AtomicUsize,
        cap: usize,
        what: &str,
        setter: &str,
    ) -> Result<(), String> {
        let n = count.load(Relaxed) + 1;
        if n > cap {
            self.tripped.store(true, Relaxed);
            return Err(format!(
                "more than {cap} {what}{} in one body (the cap is Limits::{setter})",
                if cap == 1 { "" } else { "s" }
            ));
        }
        count.store(n, Relaxed);
        Ok(())
    }

    /// Counts one record (or one list of records).
    pub(crate) fn record(&self) -> Result<(), String> {
        self.take(&self.records, self.limits.records, "record", "max_records")
    }

    /// Counts one field kept in an `extra` map.
    pub(crate) fn unknown_field(&self) -> Result<(), String> {
        self.take(
            &self.unknown_fields,
            self.limits.unknown_fields,
            "unknown field",
            "max_unknown_fields",
        )
    }

    /// Counts one header field of an inbound mail.
    pub(crate) fn header(&self) -> Result<(), String> {
        self.take(
            &self.headers,
            self.limits.headers,
            "header field",
            "max_headers",
        )
    }
}

/// The error for a cap exceeded outside a JSON parse.
pub(crate) fn too_large(message: String) -> ParseError {
    ParseError::new(ParseErrorKind::TooLarge, message)
}
