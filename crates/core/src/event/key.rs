//! The idempotency key of an event: CMC sends no event id and may deliver
//! a batch more than once, so a stable key is derived from what identifies
//! a record.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Text;

/// A stable 128-bit key for one event; see [`Event::idempotency_key`](crate::Event::idempotency_key).
///
/// Displays (and serialises) as 32 lowercase hex digits.
///
/// ```
/// # use bytes::Bytes;
/// # let body = r#"{"event_type":"deliveries","server_composition":"pro","event":{"deliveries":[
/// #   {"created":"2023-01-25 14:03:06","status":"queued"}]}}"#;
/// # let batch = cmc_webhook_core::EventBatch::parse("application/json", Bytes::from(body))?;
/// let key = batch.events[0].idempotency_key();
/// let hex = key.to_string();
/// assert!(hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
/// assert_eq!(key.as_bytes().len(), 16);
/// # Ok::<(), cmc_webhook_core::ParseError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey([u8; 16]);

impl IdempotencyKey {
    pub(super) fn of(parts: &[&str]) -> IdempotencyKey {
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
    /// use cmc_webhook_core::IdempotencyKey;
    ///
    /// let key: IdempotencyKey = "00112233445566778899AABBCCDDEEFF".parse()?;
    /// assert_eq!(key.to_string(), "00112233445566778899aabbccddeeff");
    /// assert!("0011".parse::<IdempotencyKey>().is_err());
    /// # Ok::<(), cmc_webhook_core::event::InvalidKey>(())
    /// ```
    fn from_str(hex: &str) -> Result<IdempotencyKey, InvalidKey> {
        let bytes = hex.as_bytes();
        if bytes.len() != 32 {
            return Err(InvalidKey);
        }
        let mut key = [0; 16];
        for (i, pair) in bytes.chunks(2).enumerate() {
            key[i] = crate::mime::percent::hex_pair(pair[0], pair[1]).ok_or(InvalidKey)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_pinned() {
        // The key is a promise across versions: SHA-256 over the
        // length-prefixed parts, first 16 bytes; computed independently.
        let parts = [
            "deliveries",
            "<a@example.com>",
            "user@example.jp",
            "queued",
            "2023-01-25 14:03:06",
        ];
        let expected = "a0e6bbca3a90d8ce05ddd8d9190ed2da";
        assert_eq!(IdempotencyKey::of(&parts).to_string(), expected);
    }

    #[test]
    fn parts_are_length_prefixed_and_keys_read_back_from_hex() {
        assert_ne!(
            IdempotencyKey::of(&["ab", "c"]),
            IdempotencyKey::of(&["a", "bc"])
        );
        assert_ne!(IdempotencyKey::of(&["a"]), IdempotencyKey::of(&["a", ""]));
        let key = IdempotencyKey::of(&["deliveries", "x"]);
        let hex = key.to_string();
        assert_eq!(hex.parse::<IdempotencyKey>(), Ok(key));
        assert_eq!(hex.to_uppercase().parse::<IdempotencyKey>(), Ok(key));
        assert_eq!(format!("{key:?}"), format!("IdempotencyKey({hex})"));
        for bad in [
            "",
            "0011",
            &hex[1..],
            &format!("{hex}0"),
            &format!("+{}", &hex[1..]),
            &format!("{}g", &hex[..31]),
        ] {
            assert_eq!(bad.parse::<IdempotencyKey>(), Err(InvalidKey), "{bad:?}");
        }
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, format!("\"{hex}\""));
        assert_eq!(serde_json::from_str::<IdempotencyKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<IdempotencyKey>("\"zz\"").is_err());
    }
}
