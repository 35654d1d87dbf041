//! [`Limits`]: the caps that bound what one body may cost to parse.

/// Caps on what one body may hold, so that no body within the body limit
/// costs more than a small constant plus a few times its size in memory.
///
/// Each cap bounds something that costs far more to hold than to send: a
/// two-byte `{}` record becomes an event of a few hundred bytes, a
/// five-byte `a1=&` form field an entry in a map. A body over a cap is
/// refused with [`ParseErrorKind::TooLarge`](crate::ParseErrorKind::TooLarge)
/// (413 over HTTP) and a message naming the cap. The defaults are far
/// above anything CMC sends (at most 100 records a batch by default, about
/// ten fields and a few dozen headers a mail).
///
/// | cap | default | bounds |
/// |---|---:|---|
/// | [`max_records`](Limits::max_records) | 10 000 | records in one event batch |
/// | [`max_unknown_fields`](Limits::max_unknown_fields) | 10 000 | fields this crate does not know, kept in `extra` maps, in the whole body (the lists in `event` count too) |
/// | [`max_headers`](Limits::max_headers) | 10 000 | header fields of an inbound mail |
/// | [`max_parts`](Limits::max_parts) | 512 | parts of a multipart body |
/// | [`max_part_header_size`](Limits::max_part_header_size) | 16 KiB | the header block of one multipart part |
/// | [`max_part_size`](Limits::max_part_size) | none (the body limit) | one multipart part |
///
/// One bound is fixed: a JSON value kept as text (an unknown field, a
/// [`Block`](crate::Block), a record of an unknown type) nests at most
/// [`MAX_NESTING`](Limits::MAX_NESTING) arrays and objects deep. Deeper is
/// refused with [`ParseErrorKind::Json`](crate::ParseErrorKind::Json) (400
/// over HTTP), since the inbox could store it but not read it back.
///
/// ```
/// use bytes::Bytes;
/// use cmc_webhook_core::{Limits, ParseErrorKind, Webhook};
///
/// let limits = Limits::default().max_records(1);
/// let body = r#"{"event_type":"blocks","server_composition":"pro","event":{"blocks":[{},{}]}}"#;
/// let err = Webhook::parse_with_limits("application/json", Bytes::from(body), limits).unwrap_err();
/// assert_eq!(err.kind(), ParseErrorKind::TooLarge);
/// assert!(err.to_string().contains("more than 1 record"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub(crate) records: usize,
    pub(crate) unknown_fields: usize,
    pub(crate) headers: usize,
    pub(crate) parts: usize,
    pub(crate) part_header_size: usize,
    pub(crate) part_size: Option<u64>,
}

impl Default for Limits {
    /// See the table in the [type docs](Limits).
    fn default() -> Self {
        Limits {
            records: 10_000,
            unknown_fields: 10_000,
            headers: 10_000,
            parts: 512,
            part_header_size: 16 * 1024,
            part_size: None,
        }
    }
}

impl Limits {
    /// How many arrays and objects deep a JSON value kept as text (an
    /// unknown field, a [`Block`](crate::Block), a record of an unknown
    /// type) may nest: 64. Not a setting: the inbox stores an event or a
    /// mail as JSON that wraps such a value in two more levels, and
    /// `serde_json` reads back at most 127, so a deeper value would be
    /// acknowledged, stored, and then never handled. 64 leaves room for
    /// that and for applications that wrap the model's JSON in their own.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use cmc_webhook_core::{Limits, ParseErrorKind, Webhook};
    ///
    /// let nested = |levels: usize| {
    ///     let value = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
    ///     format!(r#"{{"server_composition":"pro","filter":"f","headers":[],
    ///         "envelope-from":"a@example.com","envelope-to":"b@example.jp","x":{value}}}"#)
    /// };
    /// let deepest = nested(Limits::MAX_NESTING);
    /// assert!(Webhook::parse("application/json", Bytes::from(deepest)).is_ok());
    /// let deeper = nested(Limits::MAX_NESTING + 1);
    /// let err = Webhook::parse("application/json", Bytes::from(deeper)).unwrap_err();
    /// assert_eq!(err.kind(), ParseErrorKind::Json);
    /// assert_eq!(err.path(), Some("x"));
    /// assert!(err.message().contains("nests deeper than 64 levels"));
    /// ```
    pub const MAX_NESTING: usize = 64;

    /// The most records one event batch may hold.
    pub fn max_records(mut self, records: usize) -> Self {
        self.records = records;
        self
    }

    /// The most fields this crate does not know (kept in the `extra` maps)
    /// one body may hold, top-level and in records together. The lists in
    /// an event batch's `event` object count too.
    pub fn max_unknown_fields(mut self, fields: usize) -> Self {
        self.unknown_fields = fields;
        self
    }

    /// The most header fields an inbound mail may have.
    pub fn max_headers(mut self, headers: usize) -> Self {
        self.headers = headers;
        self
    }

    /// The most parts (fields and files) a multipart body may have.
    pub fn max_parts(mut self, parts: usize) -> Self {
        self.parts = parts;
        self
    }

    /// The largest header block of one multipart part, in bytes (from the
    /// boundary line to the blank line that ends the headers). The body
    /// before the first boundary (the preamble) is held to it too.
    pub fn max_part_header_size(mut self, bytes: usize) -> Self {
        self.part_header_size = bytes;
        self
    }

    /// The largest a single multipart part (an attachment, say) may be, in
    /// bytes.
    pub fn max_part_size(mut self, bytes: u64) -> Self {
        self.part_size = Some(bytes);
        self
    }

    /// The record cap.
    pub fn records(&self) -> usize {
        self.records
    }

    /// The unknown-field cap.
    pub fn unknown_fields(&self) -> usize {
        self.unknown_fields
    }

    /// The header cap.
    pub fn headers(&self) -> usize {
        self.headers
    }

    /// The part-count cap.
    pub fn parts(&self) -> usize {
        self.parts
    }

    /// The cap on one part's header block.
    pub fn part_header_size(&self) -> usize {
        self.part_header_size
    }

    /// The per-part cap, when one is set.
    pub fn part_size(&self) -> Option<u64> {
        self.part_size
    }
}

/// Whether a body-reading error is (or wraps) `http_body_util`'s
/// [`LengthLimitError`](http_body_util::LengthLimitError): the body went
/// past the size limit, as opposed to a failed read.
pub(crate) fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}
