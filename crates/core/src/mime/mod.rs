//! MIME and URL decoders: pure functions from bytes to text, shared by the
//! parsers (`wire`) and by the model's accessors. Nothing here knows the
//! model or the parsers.

pub(crate) mod percent;
