//! [`Text`]: the immutable string type of every text field in the model.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;
use bytestring::ByteString;

/// An immutable UTF-8 string that can share the request body's memory.
///
/// Most values in a Customers Mail Cloud payload are plain JSON strings
/// without escapes. The parsers hand those out as slices of the request body
/// (a reference-count increment, no copy); only escaped or percent-encoded
/// values get their own buffer. A `Text` derefs to [`str`], so it reads like
/// a `&str` everywhere, compares equal with `&str` and [`String`], and
/// serialises as a plain string.
///
/// A `Text` that shares the body keeps the whole body alive. Call
/// [`Text::compact`] (or convert it to a [`String`]) before storing a few
/// small values for a long time.
///
/// ```
/// use cmc_webhook_core::Text;
///
/// let text = Text::from("info@example.com");
/// assert_eq!(text, "info@example.com");
/// assert_eq!(text.len(), 16);
/// assert!(text.ends_with(".com"));
/// assert_eq!(text.to_string(), "info@example.com");
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text(ByteString);

impl Text {
    /// An empty text.
    ///
    /// ```
    /// assert!(cmc_webhook_core::Text::new().is_empty());
    /// ```
    pub const fn new() -> Self {
        Text(ByteString::new())
    }

    /// A text that points at a `'static` string, without copying it.
    ///
    /// ```
    /// let text = cmc_webhook_core::Text::from_static("queued");
    /// assert_eq!(text, "queued");
    /// ```
    pub const fn from_static(s: &'static str) -> Self {
        Text(ByteString::from_static(s))
    }

    /// The text as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text's bytes, sharing its buffer.
    ///
    /// ```
    /// let text = cmc_webhook_core::Text::from("abc");
    /// assert_eq!(&text.as_bytes()[..], b"abc");
    /// ```
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }

    /// A copy of this text in a buffer of its own, so that it no longer keeps
    /// the request body alive.
    ///
    /// ```
    /// let text = cmc_webhook_core::Text::from("abc");
    /// assert_eq!(text.compact(), "abc");
    /// ```
    pub fn compact(&self) -> Text {
        Text::from(self.as_str().to_owned())
    }

    /// Checks that `bytes` is UTF-8 and wraps it without copying.
    pub(crate) fn try_from_bytes(bytes: Bytes) -> Result<Text, std::str::Utf8Error> {
        ByteString::try_from(bytes).map(Text)
    }

    /// The part of `self` that `subset` points into, sharing memory; a copy
    /// when `subset` does not lie inside `self` (never a panic).
    pub(crate) fn share(&self, subset: &str) -> Text {
        if subset.is_empty() {
            return Text::new();
        }
        let whole = self.as_str().as_bytes().as_ptr_range();
        let part = subset.as_bytes().as_ptr_range();
        if whole.start <= part.start && part.end <= whole.end {
            Text(self.0.slice_ref(subset))
        } else {
            Text::from(subset)
        }
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(ByteString::from(s))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(ByteString::from(s))
    }
}

impl From<Box<str>> for Text {
    fn from(s: Box<str>) -> Self {
        Text(ByteString::from(s))
    }
}

impl From<std::borrow::Cow<'_, str>> for Text {
    fn from(s: std::borrow::Cow<'_, str>) -> Self {
        match s {
            std::borrow::Cow::Borrowed(s) => Text::from(s),
            std::borrow::Cow::Owned(s) => Text::from(s),
        }
    }
}

impl From<Text> for String {
    fn from(t: Text) -> Self {
        t.as_str().to_owned()
    }
}

impl From<Text> for Bytes {
    fn from(t: Text) -> Self {
        t.0.into_bytes()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        String::deserialize(deserializer).map(Text::from)
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What `Debug` shows in place of a secret.
pub(crate) const REDACTED: &str = "<redacted>";

/// Whether [`printable`] would change `s`.
pub(crate) fn needs_printable(s: &str, max_chars: usize) -> bool {
    s.chars()
        .enumerate()
        .any(|(n, c)| n == max_chars || c.is_control() || crate::invisible::is_invisible(c))
}

/// `s` made safe to show in a log line, an error message or a terminal:
/// control characters (C0 such as CR, LF and ESC, DEL, C1) and invisible
/// formatting characters (bidirectional overrides, zero-width characters)
/// written as `\u{..}` escapes, and the result cut after `max_chars`
/// characters (with `...`).
///
/// For text that came from a webhook (a subject, an address, a stored
/// error): a CR or LF cannot forge another line, an escape sequence cannot
/// reach the terminal, and a 20 MB value does not make a 20 MB line.
///
/// ```
/// use cmc_webhook_core::printable;
///
/// assert_eq!(printable("Hello\r\nforged line\u{1b}[2J", 64), "Hello\\u{d}\\u{a}forged line\\u{1b}[2J");
/// assert_eq!(printable(&"x".repeat(20_000_000), 5), "xxxxx...");
/// assert_eq!(printable("plain", 5), "plain");
/// ```
pub fn printable(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars * 4));
    for (n, c) in s.chars().enumerate() {
        if n == max_chars {
            out.push_str("...");
            break;
        }
        if c.is_control() || crate::invisible::is_invisible(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_points_into_the_same_buffer() {
        let whole = Text::from("hello world");
        let part = whole.share(&whole[6..]);
        assert_eq!(part, "world");
        assert_eq!(part.as_ptr(), whole[6..].as_ptr());
    }

    #[test]
    fn printable_escapes_controls_and_bidi_overrides() {
        assert_eq!(
            printable("a\u{202E}b\u{85}c\nd\u{1b}", 64),
            "a\\u{202e}b\\u{85}c\\u{a}d\\u{1b}"
        );
        assert_eq!(printable("日本語テキスト", 3), "日本語...");
        assert_eq!(printable("plain", 5), "plain");
    }

    #[test]
    fn share_copies_a_foreign_slice_instead_of_panicking() {
        let whole = Text::from("hello");
        let other = String::from("elsewhere");
        let part = whole.share(&other);
        assert_eq!(part, "elsewhere");
        assert_ne!(part.as_ptr(), other.as_ptr());
    }

    #[test]
    fn try_from_bytes_rejects_invalid_utf8() {
        assert!(Text::try_from_bytes(Bytes::from_static(b"ok")).is_ok());
        assert!(Text::try_from_bytes(Bytes::from_static(b"\xff\xfe")).is_err());
    }

    #[test]
    fn compares_with_str_and_string_both_ways() {
        let t = Text::from("abc");
        let owned = String::from("abc");
        assert_eq!(t, "abc");
        assert_eq!("abc", t);
        assert_eq!(t, owned);
        assert_eq!(owned, t);
        assert_eq!(t, *"abc");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"abc\"");
        assert_eq!(format!("{t:?}"), "\"abc\"");
    }
}
