//! What one body may still hold, counted while it is parsed (see
//! [`Limits`]).

use std::cell::Cell;

use crate::{Limits, ParseError, ParseErrorKind};

/// The caps of a [`Limits`], counted down while one body is parsed. Shared
/// by every field of the body (a form body's `event` and its other fields
/// draw on the same counts).
#[derive(Debug)]
pub(crate) struct Budget {
    limits: Limits,
    records: Cell<usize>,
    unknown_fields: Cell<usize>,
    headers: Cell<usize>,
    tripped: Cell<bool>,
}

/// The counts of a [`Budget`] at one moment, to parse the same text again.
pub(crate) struct Snapshot([usize; 3]);

impl Budget {
    pub(crate) fn new(limits: Limits) -> Budget {
        Budget {
            limits,
            records: Cell::new(0),
            unknown_fields: Cell::new(0),
            headers: Cell::new(0),
            tripped: Cell::new(false),
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether a cap was exceeded: the error being raised is a 413.
    pub(crate) fn tripped(&self) -> bool {
        self.tripped.get()
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot([
            self.records.get(),
            self.unknown_fields.get(),
            self.headers.get(),
        ])
    }

    pub(crate) fn restore(&self, s: Snapshot) {
        self.records.set(s.0[0]);
        self.unknown_fields.set(s.0[1]);
        self.headers.set(s.0[2]);
        self.tripped.set(false);
    }

    fn take(
        &self,
        count: &Cell<usize>,
        cap: usize,
        what: &str,
        setter: &str,
    ) -> Result<(), String> {
        let n = count.get() + 1;
        if n > cap {
            self.tripped.set(true);
            return Err(format!(
                "more than {cap} {what}{} in one body (the cap is Limits::{setter})",
                if cap == 1 { "" } else { "s" }
            ));
        }
        count.set(n);
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
