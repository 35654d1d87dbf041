//! The statuses a record carries: [`DeliveryStatus`] of a delivery,
//! [`BounceStatus`] (CMC's error-status code) of a bounce, and the
//! [`BounceClass`] that a bounce code says about the address.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Text;

/// The `status` of a [`Delivery`](crate::Delivery).
///
/// ```
/// use cmc_webhook_core::DeliveryStatus;
///
/// assert_eq!(DeliveryStatus::from_wire("deferred"), DeliveryStatus::Deferred);
/// let new = DeliveryStatus::from_wire("expired");
/// assert_eq!(new.as_str(), "expired");
/// assert!(matches!(new, DeliveryStatus::Other(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeliveryStatus {
    /// Accepted from the relay source.
    Queued,
    /// The destination server accepted the mail.
    Succeeded,
    /// The destination server refused the mail.
    Failed,
    /// A temporary error; the mail is queued for another attempt.
    Deferred,
    /// A status this crate does not know, as it was sent.
    Other(Text),
}

impl DeliveryStatus {
    /// Reads the wire value; unknown values are kept in
    /// [`DeliveryStatus::Other`].
    pub fn from_wire(value: &str) -> DeliveryStatus {
        Self::from_text(Text::from(value))
    }

    pub(crate) fn from_text(value: Text) -> DeliveryStatus {
        match value.as_str() {
            "queued" => DeliveryStatus::Queued,
            "succeeded" => DeliveryStatus::Succeeded,
            "failed" => DeliveryStatus::Failed,
            "deferred" => DeliveryStatus::Deferred,
            _ => DeliveryStatus::Other(value),
        }
    }

    /// The wire value.
    pub fn as_str(&self) -> &str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Deferred => "deferred",
            DeliveryStatus::Other(value) => value,
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeliveryStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Text::deserialize(d).map(DeliveryStatus::from_text)
    }
}

impl Serialize for DeliveryStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

macro_rules! bounce_codes {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, )*) => {
        /// The error status of a [`Bounce`](crate::Bounce): CMC's error-status code.
        ///
        /// ```
        /// use cmc_webhook_core::BounceStatus;
        ///
        /// assert_eq!(BounceStatus::from_code("5"), BounceStatus::MailboxFull);
        /// assert_eq!(BounceStatus::UnknownUser.code(), "2");
        /// // Codes added to the service later are kept, not refused.
        /// let new = BounceStatus::from_code("42");
        /// assert_eq!(new.code(), "42");
        /// assert!(!new.is_known());
        /// ```
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum BounceStatus {
            $( $(#[$doc])* $variant, )*
            /// A code this crate does not know, as it was sent.
            Other(Text),
        }

        impl BounceStatus {
            /// Reads the wire code; unknown codes are kept in
            /// [`BounceStatus::Other`].
            pub fn from_code(code: &str) -> BounceStatus {
                Self::from_text(Text::from(code))
            }

            pub(crate) fn from_text(code: Text) -> BounceStatus {
                match code.as_str() {
                    $( $code => BounceStatus::$variant, )*
                    _ => BounceStatus::Other(code),
                }
            }

            /// The wire code: `"2"` for [`BounceStatus::UnknownUser`], the
            /// code as sent for [`BounceStatus::Other`].
            pub fn code(&self) -> &str {
                match self {
                    $( BounceStatus::$variant => $code, )*
                    BounceStatus::Other(code) => code,
                }
            }
        }
    };
}

bounce_codes! {
    /// `1`: unknown host (DNS resolution of the domain failed).
    UnknownHost = "1",
    /// `2`: unknown user (the mailbox does not exist).
    UnknownUser = "2",
    /// `3`: resend timeout (not delivered before the retry period ran out).
    ResendTimeout = "3",
    /// `4`: refused by the receiving side's policy.
    PolicyRejected = "4",
    /// `5`: mailbox full.
    MailboxFull = "5",
    /// `6`: forwarding error.
    ForwardingError = "6",
    /// `7`: the receiving server is misconfigured.
    ServerMisconfigured = "7",
    /// `8`: message too large.
    MessageTooLarge = "8",
    /// `9`: address format error (for example `user@example`).
    InvalidAddress = "9",
    /// `10`: address suppressed (blocked after earlier errors).
    Suppressed = "10",
    /// `11`: address unsubscribed (one-click unsubscribe).
    Unsubscribed = "11",
    /// `99`: another permanent error.
    OtherPermanent = "99",
}

impl BounceStatus {
    /// Whether the code is one of the documented ones.
    pub fn is_known(&self) -> bool {
        !matches!(self, BounceStatus::Other(_))
    }

    /// What the code says about the address: see [`BounceClass`] for the
    /// class of every code.
    ///
    /// ```
    /// use cmc_webhook_core::{BounceClass, BounceStatus};
    ///
    /// assert_eq!(BounceStatus::UnknownUser.class(), BounceClass::Hard);
    /// assert_eq!(BounceStatus::MailboxFull.class(), BounceClass::Soft);
    /// assert_eq!(BounceStatus::from_code("10").class(), BounceClass::Blocked);
    /// assert_eq!(BounceStatus::from_code("42").class(), BounceClass::Unknown);
    /// ```
    pub fn class(&self) -> BounceClass {
        match self {
            BounceStatus::UnknownHost
            | BounceStatus::UnknownUser
            | BounceStatus::InvalidAddress
            | BounceStatus::OtherPermanent => BounceClass::Hard,
            BounceStatus::ResendTimeout
            | BounceStatus::MailboxFull
            | BounceStatus::ForwardingError
            | BounceStatus::ServerMisconfigured
            | BounceStatus::MessageTooLarge => BounceClass::Soft,
            BounceStatus::PolicyRejected | BounceStatus::Suppressed => BounceClass::Blocked,
            BounceStatus::Unsubscribed => BounceClass::Unsubscribed,
            BounceStatus::Other(_) => BounceClass::Unknown,
        }
    }
}

/// What a bounce says about its address, from CMC's error-status code:
/// whether to stop mailing it, try again later, or look at why it was
/// refused. Given by [`BounceStatus::class`] and [`Event::bounce_class`](crate::Event::bounce_class).
///
/// Each code, its meaning, and its class:
///
/// | code | meaning | class | why |
/// |---|---|---|---|
/// | 1 | unknown host (the domain does not resolve) | `Hard` | no server takes mail for the address |
/// | 2 | unknown user (the mailbox does not exist) | `Hard` | the address does not work |
/// | 3 | resend timeout (not delivered before the retry period ran out) | `Soft` | the failures were temporary; the address may work later |
/// | 4 | refused by the receiving side's policy | `Blocked` | the address may exist; the sender or the content was refused |
/// | 5 | mailbox full | `Soft` | the mailbox exists and may have room later |
/// | 6 | forwarding error | `Soft` | the address exists; its forwarding failed this time |
/// | 7 | receiving server misconfigured | `Soft` | the receiving side's fault, which it may fix |
/// | 8 | message too large | `Soft` | this message failed, not the address |
/// | 9 | address format error (`user@example`) | `Hard` | the address cannot work |
/// | 10 | address suppressed (blocked after earlier errors) | `Blocked` | CMC did not try: its suppression list holds the address |
/// | 11 | address unsubscribed (one-click unsubscribe) | `Unsubscribed` | the recipient asked not to be mailed |
/// | 99 | other permanent error | `Hard` | CMC calls it permanent |
/// | any other | a code added after this crate ([`BounceStatus::Other`]) | `Unknown` | no meaning to go by |
///
/// Serialises as its [`as_str`](BounceClass::as_str) name, and reads back
/// from it (a name this version does not know reads as
/// [`BounceClass::Unknown`]).
///
/// ```
/// use cmc_webhook_core::{BounceClass, BounceStatus};
///
/// let class = BounceStatus::from_code("4").class();
/// assert_eq!(class, BounceClass::Blocked);
/// assert_eq!(class.as_str(), "blocked");
/// assert_eq!(class.to_string(), "blocked");
/// assert_eq!(serde_json::to_string(&class)?, r#""blocked""#);
/// assert_eq!(serde_json::from_str::<BounceClass>(r#""blocked""#)?, class);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BounceClass {
    /// The address does not work: stop mailing it (codes 1, 2, 9, 99).
    Hard,
    /// The address may work later, or the problem was this message
    /// (codes 3, 5, 6, 7, 8).
    Soft,
    /// Refused by policy, or suppressed by CMC (codes 4, 10).
    Blocked,
    /// The recipient unsubscribed (code 11).
    Unsubscribed,
    /// A code this crate does not know ([`BounceStatus::Other`]).
    Unknown,
}

impl BounceClass {
    /// The class's name: `hard`, `soft`, `blocked`, `unsubscribed` or
    /// `unknown`.
    ///
    /// ```
    /// assert_eq!(cmc_webhook_core::BounceClass::Hard.as_str(), "hard");
    /// ```
    pub fn as_str(&self) -> &'static str {
        match self {
            BounceClass::Hard => "hard",
            BounceClass::Soft => "soft",
            BounceClass::Blocked => "blocked",
            BounceClass::Unsubscribed => "unsubscribed",
            BounceClass::Unknown => "unknown",
        }
    }

    fn from_name(name: &str) -> BounceClass {
        match name {
            "hard" => BounceClass::Hard,
            "soft" => BounceClass::Soft,
            "blocked" => BounceClass::Blocked,
            "unsubscribed" => BounceClass::Unsubscribed,
            _ => BounceClass::Unknown,
        }
    }
}

impl fmt::Display for BounceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for BounceClass {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for BounceClass {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Text::deserialize(d).map(|name| BounceClass::from_name(&name))
    }
}

impl fmt::Display for BounceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl<'de> Deserialize<'de> for BounceStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Text::deserialize(d).map(BounceStatus::from_text)
    }
}

impl Serialize for BounceStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bounce_code_has_its_class() {
        let table = [
            ("1", BounceClass::Hard),
            ("2", BounceClass::Hard),
            ("3", BounceClass::Soft),
            ("4", BounceClass::Blocked),
            ("5", BounceClass::Soft),
            ("6", BounceClass::Soft),
            ("7", BounceClass::Soft),
            ("8", BounceClass::Soft),
            ("9", BounceClass::Hard),
            ("10", BounceClass::Blocked),
            ("11", BounceClass::Unsubscribed),
            ("99", BounceClass::Hard),
        ];
        for (code, class) in table {
            let status = BounceStatus::from_code(code);
            assert!(status.is_known(), "{code}");
            assert_eq!(status.class(), class, "code {code}");
        }
        for code in ["0", "12", "42", "98", "100", "", "two", " 2"] {
            assert_eq!(
                BounceStatus::from_code(code).class(),
                BounceClass::Unknown,
                "{code:?}"
            );
        }
    }

    #[test]
    fn bounce_class_names_and_serde() {
        let all = [
            (BounceClass::Hard, "hard"),
            (BounceClass::Soft, "soft"),
            (BounceClass::Blocked, "blocked"),
            (BounceClass::Unsubscribed, "unsubscribed"),
            (BounceClass::Unknown, "unknown"),
        ];
        for (class, name) in all {
            assert_eq!(class.as_str(), name);
            assert_eq!(class.to_string(), name);
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<BounceClass>(&json).unwrap(), class);
        }
        // A name from a later version reads as Unknown rather than failing.
        let later: BounceClass = serde_json::from_str(r#""greylisted""#).unwrap();
        assert_eq!(later, BounceClass::Unknown);
    }
}
