//! MIME and URL decoders: pure functions from bytes to text, shared by the
//! parsers (`wire`) and by the model's accessors. Nothing here knows the
//! model or the parsers.
//!
//! - [`percent`]: strict `%XX` decoding (form bodies, `filename*`);
//! - [`rfc2047`]: encoded words (`=?UTF-8?B?...?=`) in header values and
//!   plain `filename` parameters;
//! - [`rfc2231`]: extended parameters (`filename*=UTF-8''...`) and their
//!   continuations;
//! - [`disposition`]: the file name of a `Content-Disposition` value, read
//!   in its charset, built on the two above;
//! - [`sanitize`]: a file name made safe to write to disk.

pub(crate) mod disposition;
pub(crate) mod percent;
pub(crate) mod rfc2047;
pub(crate) mod rfc2231;
pub(crate) mod sanitize;

/// Whether `needle` (lowercase ASCII) occurs in `hay`, ignoring ASCII case.
pub(crate) fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}
