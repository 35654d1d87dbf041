//! The suppression list: per recipient, kept from CMC's bounce, delivery
//! and `blocks` events by the inbox's worker, so that a sender stops
//! mailing addresses that cannot or must not receive mail.
//!
//! - **Kept once.** A worker given a [`Policy`]
//!   ([`Worker::suppressions`](crate::Worker::suppressions)) applies
//!   each bounce, succeeded delivery and `blocks` record to its recipient's
//!   row in the transaction that marks the event done. The event's
//!   idempotency key is written to `cmc_suppression_history` under a unique
//!   index first, so an event counts once however often CMC sends it, the
//!   handler is retried, or the row is replayed.
//! - **Per recipient.** The row is keyed by the recipient of the event (the
//!   `to` of a bounce, never the other recipients of the message),
//!   normalised: trimmed, and lower-cased whole (see [`normalize`]).
//! - **The policy is data.** [`Policy`] maps each CMC bounce code to a
//!   [`Class`] and sets the thresholds and how long each [`Reason`] lasts;
//!   its documentation has the table of codes and the defaults, with
//!   Postal's for comparison.
//! - **By hand.** [`Suppressions::add`] and [`Suppressions::remove`] with a
//!   note; [`Suppressions::history`] lists every change.
//!
//! Before sending, check the recipients in one call:
//!
//! ```
//! use cmc_webhook_inbox::Inbox;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! # let dir = tempfile::tempdir()?;
//! # let inbox = Inbox::open(&format!("sqlite:{}", dir.path().join("inbox.sqlite3").display())).await?;
//! inbox.suppressions().add("gone@example.jp", None, "asked us to stop").await?;
//!
//! let recipients = ["user@example.jp", "Gone@Example.jp"];
//! let checks = inbox.suppressions().check_many(recipients).await?;
//! let to_send: Vec<&str> = recipients.iter().zip(&checks).filter(|(_, c)| !c.suppressed).map(|(r, _)| *r).collect();
//! assert_eq!(to_send, ["user@example.jp"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

pub use policy::{Class, Policy, Reason};

pub(crate) mod policy;

/// An address's standing on the list, from [`Suppressions::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Check {
    /// The address, normalised (trimmed, lower-cased).
    pub address: String,
    /// Whether mail to it must not be sent now.
    pub suppressed: bool,
    /// Why, when suppressed.
    pub reason: Option<Reason>,
    /// Since when, when suppressed.
    pub since: Option<Timestamp>,
    /// Until when, when suppressed (`None`: until removed by hand).
    pub until: Option<Timestamp>,
    /// The note of an entry added by hand.
    pub note: Option<String>,
}

/// A recipient's row on the list, from [`Suppressions::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// The address, normalised.
    pub address: String,
    /// The suppression, if one was ever set and not removed (see
    /// [`Entry::suppressed_at`]: it may have expired).
    pub reason: Option<Reason>,
    /// Since when.
    pub since: Option<Timestamp>,
    /// Until when (`None` with a reason: until removed by hand).
    pub until: Option<Timestamp>,
    /// A note.
    pub note: Option<String>,
    /// The events behind the suppression, by idempotency key.
    pub events: Vec<IdempotencyKey>,
    /// Hard bounces counted.
    pub hard_bounces: u32,
    /// Soft bounces within the window.
    pub soft_bounces: u32,
    /// Bounces with codes this crate does not know.
    pub unknown_bounces: u32,
    /// The last change.
    pub updated_at: Timestamp,
}

impl Entry {
    /// Whether the entry suppresses its address at `now`.
    pub fn suppressed_at(&self, now: Timestamp) -> bool {
        self.reason.is_some() && self.until.is_none_or(|until| now < until)
    }
}

/// One change of an address's row: an event applied, or a change by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// What happened: `bounce 2`, `succeeded`, `cmc_list add`,
    /// `cmc_list remove`, `added`, `removed`.
    pub change: String,
    /// The event's key (`None` for a change by hand).
    pub key: Option<IdempotencyKey>,
    /// The suppression after the change.
    pub reason: Option<Reason>,
    /// The note of a change by hand.
    pub note: Option<String>,
    /// When the change was made.
    pub at: Timestamp,
}

/// Which rows [`Suppressions::list`] returns, and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListFilter {
    /// Only rows with this reason.
    pub reason: Option<Reason>,
    /// Only rows that suppress their address now (not counts only, not
    /// expired).
    pub suppressed_only: bool,
    /// Rows after this address, in the order of addresses (paging).
    pub after: Option<String>,
    /// The most rows returned (1 000 at most).
    pub limit: usize,
}

impl Default for ListFilter {
    fn default() -> Self {
        ListFilter {
            reason: None,
            suppressed_only: true,
            after: None,
            limit: 100,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recipient address in the list's normal form, or `None` for text that
/// is not an address (no `@`, nothing on one side of it, a domain ending
/// in two dots, longer than 254 bytes, or white space, a control or an
/// invisible character inside).
///
/// The normal form, which the suppression list and the mailboxes' routes
/// compare:
///
/// - **Trimmed**, and the root's dot after the domain (`example.jp.`)
///   dropped.
/// - **ASCII letters lower-cased, and only they.** `User@Example.JP` is
///   `user@example.jp`. Other characters are never case-folded, and never
///   become ASCII: the Kelvin sign U+212A (which Unicode lower-cases to
///   `k`) stays a Kelvin sign, so `\u{212A}im@example.jp` is not
///   `kim@example.jp`, and U+212B is not `å`.
/// - **Non-ASCII text in NFC**, so that `é` written as `e` and a combining
///   accent is the `é` written as one character. The few characters whose
///   canonical form is ASCII (U+212A KELVIN SIGN, U+037E GREEK QUESTION
///   MARK, U+1FEF GREEK VARIA) are kept as they are, for the reason above.
/// - **Domains in one IDNA form, the ASCII one** (A-labels, UTS 46
///   processing through the `idna` crate): `user@例え.jp` and
///   `user@xn--r8jz45g.jp` are one recipient, `user@xn--r8jz45g.jp`. The
///   A-label is the form DNS and SMTP use, it compares byte for byte, and
///   it shows a look-alike domain (a Cyrillic `а` in `exаmple.jp`) as
///   what it is, `xn--exmple-4nf.jp`, where the Unicode form would look
///   like the real one in a list. A domain that IDNA cannot encode, or
///   whose IDNA mapping would make a non-ASCII character ASCII (a
///   full-width `ｊｐ`, a Kelvin sign, an ideographic full stop), is kept
///   as written (lower-cased ASCII, NFC) and compared so.
/// - **Invisible characters refused**, decided from Unicode's properties:
///   format controls (`Cf`), default-ignorable and unassigned code points,
///   line and paragraph separators.
///
/// ```
/// use cmc_webhook_inbox::suppression::normalize;
///
/// assert_eq!(normalize(" User@Example.JP ").as_deref(), Some("user@example.jp"));
/// assert_eq!(normalize("user@例え.JP").as_deref(), Some("user@xn--r8jz45g.jp"));
/// assert_eq!(normalize("user@XN--R8JZ45G.jp").as_deref(), Some("user@xn--r8jz45g.jp"));
/// // Not `kim@example.jp`.
/// assert_eq!(normalize("\u{212A}im@example.jp").as_deref(), Some("\u{212A}im@example.jp"));
/// assert_eq!(normalize("no-at-sign"), None);
/// assert_eq!(normalize("a\u{FE0F}b@example.jp"), None);
/// ```
///
/// The local part's ASCII letters are lower-cased too, although RFC 5321
/// lets a server treat `John@` and `john@` as two mailboxes: virtually
/// every mailbox provider treats them as one, and suppressing both is the
/// safe mistake (mailing an address that bounced is what costs
/// reputation).
pub fn normalize(address: &str) -> Option<String> {
    let address = address.trim();
    let (local, domain) = address.rsplit_once('@')?;
    // The root's dot (`example.jp.`) names the same domain.
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if local.is_empty()
        || domain.is_empty()
        || domain.ends_with('.')
        || address.len() > MAX_ADDRESS
        || address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || cmc_webhook_core::is_invisible(c))
    {
        return None;
    }
    // Lower-cased before NFC: `H` and a combining macron below stay two
    // characters, `h` and the same mark are U+1E96, so the other order
    // would not give the same address twice.
    let local = address::nfc(&local.to_ascii_lowercase()).into_owned();
    let domain = address::domain(domain);
    let normal = format!("{local}@{domain}");
    // The cap holds for the normal form too (NFC and IDNA can make an
    // address longer), so that the form is an address again.
    (normal.len() <= MAX_ADDRESS).then_some(normal)
}

/// The parts of [`normalize`]: NFC that never makes ASCII, and domains.
mod address {
    use std::borrow::Cow;

    use icu_normalizer::ComposingNormalizerBorrowed;
    use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

    const NFC: ComposingNormalizerBorrowed<'static> = ComposingNormalizerBorrowed::new_nfc();

    /// Whether NFC turns `c` (not ASCII) into ASCII: the Kelvin sign and
    /// two Greek punctuation marks, whose canonical forms are `K`, `;` and
    /// a backquote.
    fn becomes_ascii(c: char) -> bool {
        let mut buf = [0; 4];
        !c.is_ascii()
            && NFC
                .normalize(c.encode_utf8(&mut buf))
                .bytes()
                .any(|b| b.is_ascii())
    }

    /// `text` in NFC, except that the characters NFC would make ASCII are
    /// kept as they are (the text between them is normalised on its own).
    /// Idempotent: NFC never writes such a character, so a second pass
    /// cuts the text at the same places.
    pub(super) fn nfc(text: &str) -> Cow<'_, str> {
        if text.is_ascii() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut start = 0;
        for (i, c) in text.char_indices() {
            if becomes_ascii(c) {
                out.push_str(&NFC.normalize(&text[start..i]));
                out.push(c);
                start = i + c.len_utf8();
            }
        }
        if start == 0 {
            return NFC.normalize(text);
        }
        out.push_str(&NFC.normalize(&text[start..]));
        Cow::Owned(out)
    }

    /// A domain in the normal form: its A-labels when IDNA maps it without
    /// making a non-ASCII character ASCII, else as written (NFC, ASCII
    /// lower-cased).
    pub(super) fn domain(domain: &str) -> String {
        let written = nfc(&domain.to_ascii_lowercase()).into_owned();
        let has_a_label = |d: &str| d.split('.').any(|l| l.starts_with("xn--"));
        if written.is_ascii() && !has_a_label(&written) {
            return written; // nothing IDNA would change (the common case)
        }
        let uts46 = Uts46::new();
        let Ok(ascii) = uts46.to_ascii(
            written.as_bytes(),
            AsciiDenyList::EMPTY,
            Hyphens::Allow,
            DnsLength::Ignore,
        ) else {
            return written;
        };
        let (unicode, errors) =
            uts46.to_unicode(ascii.as_bytes(), AsciiDenyList::EMPTY, Hyphens::Allow);
        if errors.is_err() {
            return written;
        }
        // Label by label: an ASCII label must come out as it went in, and
        // a label with other characters may change only in them (case,
        // width of non-ASCII forms), never gain or lose ASCII.
        let ascii_of = |l: &str| l.chars().filter(char::is_ascii).collect::<String>();
        let (w, a, u): (Vec<&str>, Vec<&str>, Vec<&str>) = (
            written.split('.').collect(),
            ascii.split('.').collect(),
            unicode.split('.').collect(),
        );
        let same = w.len() == a.len()
            && w.len() == u.len()
            && w.iter().zip(&a).zip(&u).all(|((w, a), u)| {
                if w.is_ascii() {
                    w == a
                } else {
                    ascii_of(w) == ascii_of(u)
                }
            });
        if same {
            ascii.into_owned()
        } else {
            written
        }
    }
}

/// The longest address taken, in bytes: RFC 5321's path holds 256 octets,
/// two of them the angle brackets.
const MAX_ADDRESS: usize = 254;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_that_nfc_makes_too_long_is_no_address() {
        // 60 musical notes (U+1D160, 4 bytes, 3 code points in NFC).
        let long = format!("{}@example.jp", "\u{1D160}".repeat(60));
        assert!(long.len() <= MAX_ADDRESS);
        assert_eq!(normalize(&long), None);
        let fits = format!("{}@example.jp", "\u{1D160}".repeat(10));
        let normal = normalize(&fits).unwrap();
        assert_eq!(normalize(&normal).as_deref(), Some(normal.as_str()));
    }

    #[test]
    fn recipients_are_trimmed_and_lower_cased() {
        assert_eq!(
            normalize(" User@Example.JP ").as_deref(),
            Some("user@example.jp")
        );
        assert_eq!(
            normalize("\"a@b\"@example.jp").as_deref(),
            Some("\"a@b\"@example.jp")
        );
        assert_eq!(
            normalize("ユーザー@例え.JP").as_deref(),
            Some("ユーザー@xn--r8jz45g.jp")
        );
        assert_eq!(
            normalize("user@Example.jp.").as_deref(),
            Some("user@example.jp")
        );
        let long = format!("{}@example.jp", "a".repeat(300));
        for bad in [
            "",
            "user",
            "@example.jp",
            "user@",
            "user@.",
            "user@..",
            "user@example.jp..",
            "a b@example.jp",
            "a\0b@x.jp",
            "a\u{200b}b@x.jp",
            "a\u{FE0F}b@x.jp",
            "a\u{180B}b@x.jp",
            "a\u{17B4}b@x.jp",
            "a\u{1BCA0}b@x.jp",
            "a\u{1D173}b@x.jp",
            "a\u{2065}b@x.jp",
            "a\u{FFF0}b@x.jp",
            "a@x\u{E0100}.jp",
            "a\u{2028}b@x.jp",
            &long,
        ] {
            assert_eq!(normalize(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_ascii_is_lower_cased_and_nothing_becomes_ascii() {
        // Unicode lower-cases the Kelvin sign to `k` and the Angstrom sign
        // to `å`: neither may stand for an address it is not.
        for (sign, plain) in [
            ("\u{212A}im@example.jp", "kim@example.jp"),
            ("\u{212B}sa@example.jp", "\u{e5}sa@example.jp"),
            ("a\u{037E}b@example.jp", "a;b@example.jp"),
            ("\u{017F}ales@example.jp", "sales@example.jp"),
            ("kim@\u{212A}example.jp", "kim@kexample.jp"),
            ("kim@example.\u{FF4A}\u{FF50}", "kim@example.jp"),
            ("kim@example\u{3002}jp", "kim@example.jp"),
        ] {
            let normal = normalize(sign).unwrap();
            assert_ne!(normal, normalize(plain).unwrap(), "{sign:?}");
            assert!(!normal.is_ascii(), "{sign:?} became {normal:?}");
        }
        // The Kelvin sign stays itself; the Angstrom sign is `Å` (its
        // canonical form, not ASCII), not lower-cased.
        assert_eq!(
            normalize("\u{212A}IM@example.jp").as_deref(),
            Some("\u{212A}im@example.jp")
        );
        assert_eq!(
            normalize("\u{212B}sa@example.jp").as_deref(),
            Some("\u{C5}sa@example.jp")
        );
        // Other letters keep their case.
        assert_eq!(normalize("Äbc@x.jp").as_deref(), Some("Äbc@x.jp"));
        assert_ne!(normalize("Äbc@x.jp"), normalize("äbc@x.jp"));
    }

    #[test]
    fn non_ascii_compares_in_nfc() {
        let composed = normalize("caf\u{E9}@example.jp").unwrap();
        assert_eq!(normalize("cafe\u{301}@example.jp").unwrap(), composed);
        assert_eq!(normalize("CAFE\u{301}@example.jp").unwrap(), composed);
        // A mark on a Kelvin sign: the sign is kept, the mark too.
        assert_eq!(
            normalize("\u{212A}\u{301}@example.jp").as_deref(),
            Some("\u{212A}\u{301}@example.jp")
        );
        // Lower-cased first: `h` and U+0331 compose, `H` and U+0331 do not.
        assert_eq!(
            normalize("H\u{331}@example.jp").as_deref(),
            Some("\u{1E96}@example.jp")
        );
    }

    #[test]
    fn idn_domains_compare_in_their_ascii_form() {
        let one = Some("user@xn--r8jz45g.jp".to_owned());
        for written in [
            "user@例え.jp",
            "user@例え.JP",
            "user@xn--r8jz45g.jp",
            "USER@XN--R8JZ45G.JP.",
        ] {
            assert_eq!(normalize(written), one, "{written:?}");
        }
        // Upper-case letters of an IDN are IDNA's to fold (the domain is
        // the same in DNS), and compared in that form.
        assert_eq!(normalize("a@MÜNCHEN.de"), normalize("a@münchen.de"),);
        assert_eq!(
            normalize("a@münchen.de").as_deref(),
            Some("a@xn--mnchen-3ya.de")
        );
        // A look-alike shows as what it is.
        assert_eq!(
            normalize("a@ex\u{430}mple.jp").as_deref(),
            Some("a@xn--exmple-4nf.jp")
        );
        // What IDNA cannot encode is kept as written.
        assert_eq!(normalize("a@xn--zz.jp").as_deref(), Some("a@xn--zz.jp"));
        assert_eq!(normalize("a@[192.0.2.1]").as_deref(), Some("a@[192.0.2.1]"));
        assert_eq!(
            normalize("a@under_score.jp").as_deref(),
            Some("a@under_score.jp")
        );
    }

    use proptest::prelude::*;

    /// Addresses made of the characters that matter: ASCII letters of both
    /// cases, the signs and marks NFC and case treat specially, Japanese,
    /// IDN-looking labels, dots and `@`.
    fn any_address() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "a", "K", "k", "H", "h", "\u{212A}", "\u{212B}", "\u{C5}", "\u{E5}", "e", "\u{301}",
            "\u{331}", "\u{323}", "\u{302}", "\u{E9}", "\u{1E96}", "\u{37E}", "\u{1FEF}",
            "\u{17F}", "例", "え", "\u{3099}", "カ", "Ä", "ü", "\u{FF4A}", "\u{3002}", ".", "-",
            "xn--", "r8jz45g", "+", "\"", "@", "ß", "\u{3C2}", "\u{130}", "\u{2126}", "\u{F900}",
        ]);
        (
            prop::collection::vec(piece.clone(), 1..8),
            prop::collection::vec(piece, 1..8),
        )
            .prop_map(|(l, d)| format!("{}@{}", l.concat(), d.concat()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The normal form is a fixed point: normalising it again changes
        /// nothing, so a stored address is found by itself.
        #[test]
        fn normalize_is_idempotent(address in any_address()) {
            if let Some(normal) = normalize(&address) {
                prop_assert_eq!(normalize(&normal), Some(normal.clone()), "{:?}", address);
                // No ASCII letter comes from anything but an ASCII letter
                // in the local part (the domain's may be an A-label).
                let letters = |a: &str| {
                    let local = a.trim().rsplit_once('@').map_or("", |(l, _)| l);
                    local.chars().filter(char::is_ascii_alphabetic).count()
                };
                prop_assert!(letters(&normal) <= letters(&address), "{:?} became {:?}", address, normal);
            }
        }

        #[test]
        fn normalize_is_idempotent_on_any_text(address in "\\PC{0,12}@\\PC{1,12}") {
            if let Some(normal) = normalize(&address) {
                prop_assert_eq!(normalize(&normal), Some(normal.clone()), "{:?}", address);
            }
        }
    }
}

use jiff::tz::TimeZone;
use jiff::Timestamp;

use cmc_webhook_core::IdempotencyKey;
use policy::{Observed, State, Suppressed, What};

/// What a done event's row says, for the policy: the recipient, the event
/// as the policy sees it, and the change as the history writes it. `None`
/// for rows that say nothing about suppression.
pub(crate) fn observed_from_columns(
    event_type: &str,
    recipient: Option<&str>,
    status: Option<&str>,
    created: Option<&str>,
    key: &str,
    received_at: i64,
    tz: &TimeZone,
) -> Option<(String, Observed, String)> {
    let recipient = normalize(recipient?)?;
    let key: IdempotencyKey = key.parse().ok()?;
    let (what, change) = match (event_type, status) {
        ("bounces", Some(code)) => (What::Bounce(code.to_owned()), format!("bounce {code}")),
        ("deliveries", Some("succeeded")) => (What::Succeeded, "succeeded".to_owned()),
        ("blocks", status) => {
            let removed = status.is_some_and(policy::means_removed);
            (
                What::CmcList { removed },
                if removed {
                    "cmc_list remove"
                } else {
                    "cmc_list add"
                }
                .to_owned(),
            )
        }
        _ => return None,
    };
    // When it happened: `created` in the console's zone, else when it was
    // stored.
    // A `created` later than a day after the event was stored is not
    // believed (a clock far off, or a made-up date): the time it was stored
    // is used instead.
    let stored = Timestamp::from_millisecond(received_at).ok()?;
    let at = created
        .and_then(|c| c.parse::<jiff::civil::DateTime>().ok())
        .and_then(|c| c.to_zoned_datetime(tz.clone()).ok())
        .map(|z| z.timestamp())
        .filter(|at| {
            *at <= stored
                .checked_add(jiff::SignedDuration::from_hours(24))
                .unwrap_or(Timestamp::MAX)
        })
        .unwrap_or(stored);
    Some((recipient, Observed { key, at, what }, change))
}

/// A `cmc_suppressions` row's columns, as the backends bind them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Columns {
    pub reason: Option<&'static str>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub note: Option<String>,
    pub events: String,
    pub hard_count: i64,
    pub soft_times: String,
    pub unknown_count: i64,
}

impl State {
    pub(crate) fn to_columns(&self) -> Columns {
        let s = self.suppression.as_ref();
        Columns {
            reason: s.map(|s| s.reason.as_str()),
            since: s.map(|s| s.since.as_millisecond()),
            until: s.and_then(|s| s.until).map(|t| t.as_millisecond()),
            note: s.and_then(|s| s.note.clone()),
            events: serde_json::to_string(
                &s.map(|s| s.events.iter().map(ToString::to_string).collect::<Vec<_>>())
                    .unwrap_or_default(),
            )
            .unwrap_or_else(|_| "[]".into()),
            hard_count: i64::from(self.hard),
            soft_times: serde_json::to_string(
                &self
                    .soft
                    .iter()
                    .map(|t| t.as_millisecond())
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_else(|_| "[]".into()),
            unknown_count: i64::from(self.unknown),
        }
    }

    /// The state a row holds; unreadable parts read as empty.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_columns(
        reason: Option<&str>,
        since: Option<i64>,
        until: Option<i64>,
        note: Option<String>,
        events: &str,
        hard_count: i64,
        soft_times: &str,
        unknown_count: i64,
    ) -> State {
        let ms = |v: i64| Timestamp::from_millisecond(v).ok();
        let suppression = reason
            .and_then(policy::Reason::from_column)
            .map(|reason| Suppressed {
                reason,
                since: since.and_then(ms).unwrap_or(Timestamp::UNIX_EPOCH),
                until: until.and_then(ms),
                events: serde_json::from_str::<Vec<String>>(events)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|k| k.parse().ok())
                    .collect(),
                note,
            });
        State {
            hard: u32::try_from(hard_count).unwrap_or(0),
            soft: serde_json::from_str::<Vec<i64>>(soft_times)
                .unwrap_or_default()
                .into_iter()
                .filter_map(ms)
                .collect(),
            unknown: u32::try_from(unknown_count).unwrap_or(0),
            suppression,
        }
    }
}

#[cfg(test)]
mod store_tests {
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::policy::Policy;
    use super::{ListFilter, Reason};
    use crate::Webhook;
    use crate::{Filter, Inbox};

    const BATCH: &str = r#"{"event_type":"bounces","server_composition":"pro","event":{"bounces":[
      {"created":"2026-01-01 09:00:00","status":"2","to":"Gone@Example.JP","messageId":"<m1@x>"},
      {"created":"2026-01-01 09:00:01","status":"5","to":"full@example.jp","messageId":"<m1@x>"}],
      "deliveries":[
      {"created":"2026-01-01 08:59:00","status":"succeeded","to":"fine@example.jp","messageId":"<m1@x>"}]}}"#;

    async fn settle(inbox: &Inbox, done: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while inbox.counts().await.unwrap().events.done < done {
            assert!(Instant::now() < deadline, "not done");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The recipients' rows as (recipient, reason, hard count, soft
    /// bounces in the window), and the number of history rows.
    type Rows = Vec<(String, Option<String>, i64, usize)>;
    /// The same, as read: the soft bounces as their JSON column.
    type RawRows = Vec<(String, Option<String>, i64, String)>;

    async fn read_back(url: &str) -> (Rows, i64) {
        const ROWS: &str = "SELECT recipient, reason, hard_count, soft_times FROM cmc_suppressions ORDER BY recipient";
        const HISTORY: &str = "SELECT COUNT(*) FROM cmc_suppression_history";
        let (rows, history): (RawRows, i64) = if url.starts_with("postgres") {
            #[cfg(feature = "postgres")]
            {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                (
                    sqlx::query_as(ROWS).fetch_all(&pool).await.unwrap(),
                    sqlx::query_scalar(HISTORY).fetch_one(&pool).await.unwrap(),
                )
            }
            #[cfg(not(feature = "postgres"))]
            unreachable!()
        } else {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            (
                sqlx::query_as(ROWS).fetch_all(&pool).await.unwrap(),
                sqlx::query_scalar(HISTORY).fetch_one(&pool).await.unwrap(),
            )
        };
        let rows = rows
            .into_iter()
            .map(|(r, reason, hard, soft)| {
                let soft: Vec<i64> = serde_json::from_str(&soft).unwrap();
                (r, reason, hard, soft.len())
            })
            .collect();
        (rows, history)
    }

    /// Where the test runs: a SQLite file, and a fresh PostgreSQL database
    /// when `CMC_POSTGRES_URL` names a server.
    async fn places(dir: &std::path::Path) -> Vec<String> {
        // Only pushed to with the `postgres` feature.
        #[cfg_attr(not(feature = "postgres"), allow(unused_mut))]
        let mut urls = vec![format!("sqlite:{}", dir.join("inbox.sqlite3").display())];
        #[cfg(feature = "postgres")]
        if let Ok(admin) = std::env::var("CMC_POSTGRES_URL") {
            use sqlx::Connection;
            let name = format!("cmc_suppression_unit_{}", std::process::id());
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
            for sql in [
                format!("DROP DATABASE IF EXISTS {name}"),
                format!("CREATE DATABASE {name}"),
            ] {
                sqlx::query(&sql).execute(&mut conn).await.unwrap();
            }
            urls.push(format!("{}/{name}", admin.rsplit_once('/').unwrap().0));
        }
        urls
    }

    /// The worker keeps the list in the round that marks events done: only
    /// the recipient that bounced hard is suppressed, and the same events
    /// sent again or replayed never count twice.
    #[tokio::test]
    async fn the_worker_keeps_the_list_once_per_event() {
        let dir = tempfile::tempdir().unwrap();
        for url in places(dir.path()).await {
            // The events happened on 2026-01-01; it is the day after.
            let clock = crate::ManualClock::new("2026-01-02T00:00:00Z".parse().unwrap());
            let inbox = Inbox::builder(&url)
                .unwrap()
                .clock(clock)
                .open()
                .await
                .unwrap();
            let webhook =
                Webhook::parse("application/json", Bytes::from_static(BATCH.as_bytes())).unwrap();
            inbox.store(webhook.clone(), None).await.unwrap();
            let worker = inbox
                .worker(|_job| async { Ok::<(), String>(()) })
                .suppressions(Policy::default())
                .poll_interval(Duration::from_millis(10))
                .spawn();
            settle(&inbox, 3).await;
            // Sent again (stored once), and replayed (handled again).
            inbox.store(webhook, None).await.unwrap();
            assert_eq!(
                inbox.replay(&Filter::message_id("<m1@x>")).await.unwrap(),
                3
            );
            settle(&inbox, 3).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            worker.shutdown(Duration::from_secs(5)).await.unwrap();
            let (rows, history) = read_back(&url).await;
            let rows: Vec<(&str, Option<&str>, i64, usize)> = rows
                .iter()
                .map(|(r, reason, hard, soft)| (r.as_str(), reason.as_deref(), *hard, *soft))
                .collect();
            assert_eq!(
                rows,
                [
                    ("full@example.jp", None, 0, 1),
                    ("gone@example.jp", Some("hard"), 1, 0),
                ],
                "{url}"
            );
            // A success for an address the list does not hold writes
            // nothing.
            assert_eq!(history, 2, "{url}");

            // The API over the same rows.
            let list = inbox.suppressions();
            let checks = list
                .check_many(["GONE@example.jp", "full@example.jp", "new@example.jp"])
                .await
                .unwrap();
            let standing: Vec<(&str, bool, Option<Reason>)> = checks
                .iter()
                .map(|c| (c.address.as_str(), c.suppressed, c.reason))
                .collect();
            assert_eq!(
                standing,
                [
                    ("gone@example.jp", true, Some(Reason::Hard)),
                    ("full@example.jp", false, None),
                    ("new@example.jp", false, None),
                ]
            );
            assert!(list.check("not an address").await.is_err());
            list.add("New@Example.jp", None, "asked by phone")
                .await
                .unwrap();
            let check = list.check("new@example.jp").await.unwrap();
            assert_eq!(
                (check.suppressed, check.reason, check.until),
                (true, Some(Reason::Manual), None)
            );
            assert_eq!(check.note.as_deref(), Some("asked by phone"));
            let suppressed: Vec<String> = list
                .list(&ListFilter::default())
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.address)
                .collect();
            assert_eq!(suppressed, ["gone@example.jp", "new@example.jp"]);
            assert!(list
                .remove("gone@example.jp", "the mailbox exists again")
                .await
                .unwrap());
            assert!(!list.remove("never@example.jp", "-").await.unwrap());
            assert!(!list.check("gone@example.jp").await.unwrap().suppressed);
            let changes: Vec<(String, Option<Reason>)> = list
                .history("gone@example.jp")
                .await
                .unwrap()
                .into_iter()
                .map(|c| (c.change, c.reason))
                .collect();
            assert_eq!(
                changes,
                [
                    ("bounce 2".to_owned(), Some(Reason::Hard)),
                    ("removed".to_owned(), None)
                ]
            );
        }
    }
}

/// The columns a check selects, in this order: a row's suppression, not
/// its counts and events, which a check does not read.
pub(crate) const CHECK_COLUMNS: &str = "recipient, reason, since, until, note";

/// A `cmc_suppressions` row as a check reads it, selected with
/// `CHECK_COLUMNS` and only when it has a reason: a row without one (counts
/// only) suppresses nothing, as a missing row.
#[derive(Debug, Clone)]
pub(crate) struct RawSuppression {
    pub recipient: String,
    pub reason: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub note: Option<String>,
}

impl RawSuppression {
    /// The row as an entry, read as [`RawEntry::into_entry`] reads it,
    /// with no counts and no events.
    pub(crate) fn into_entry(self) -> Entry {
        RawEntry {
            recipient: self.recipient,
            reason: self.reason,
            since: self.since,
            until: self.until,
            note: self.note,
            events: String::new(),
            hard_count: 0,
            soft_times: String::new(),
            unknown_count: 0,
            updated_at: 0,
        }
        .into_entry()
    }
}

/// A `cmc_suppressions` row as the backends read it, with the columns of
/// `sql::LIST` in their order.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    pub recipient: String,
    pub reason: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub note: Option<String>,
    pub events: String,
    pub hard_count: i64,
    pub soft_times: String,
    pub unknown_count: i64,
    pub updated_at: i64,
}

impl RawEntry {
    pub(crate) fn into_entry(self) -> Entry {
        let state = State::from_columns(
            self.reason.as_deref(),
            self.since,
            self.until,
            self.note,
            &self.events,
            self.hard_count,
            &self.soft_times,
            self.unknown_count,
        );
        let s = state.suppression;
        Entry {
            address: self.recipient,
            reason: s.as_ref().map(|s| s.reason),
            since: s.as_ref().map(|s| s.since),
            until: s.as_ref().and_then(|s| s.until),
            note: s.as_ref().and_then(|s| s.note.clone()),
            events: s.map(|s| s.events).unwrap_or_default(),
            hard_bounces: state.hard,
            soft_bounces: u32::try_from(state.soft.len()).unwrap_or(u32::MAX),
            unknown_bounces: state.unknown,
            updated_at: Timestamp::from_millisecond(self.updated_at)
                .unwrap_or(Timestamp::UNIX_EPOCH),
        }
    }
}

impl Check {
    /// The standing of `address` at `now`, given its row.
    pub(crate) fn of(address: String, entry: Option<&Entry>, now: Timestamp) -> Check {
        match entry.filter(|e| e.suppressed_at(now)) {
            Some(e) => Check {
                address,
                suppressed: true,
                reason: e.reason,
                since: e.since,
                until: e.until,
                note: e.note.clone(),
            },
            None => Check {
                address,
                suppressed: false,
                reason: None,
                since: None,
                until: None,
                note: None,
            },
        }
    }
}

/// The statements both backends run, with `?N` parameters (PostgreSQL
/// turns them into `$N`).
pub(crate) mod sql {
    /// The rows of chosen addresses: `IN` a list the backend binds its way.
    pub const LIST: &str = "SELECT recipient, reason, since, until, note, events, hard_count, \
         soft_times, unknown_count, updated_at FROM cmc_suppressions \
         WHERE (?1 IS NULL OR reason = ?1) \
         AND (?2 = 0 OR (reason IS NOT NULL AND (until IS NULL OR until > ?3))) \
         AND (?4 IS NULL OR recipient > ?4) ORDER BY recipient LIMIT ?5";
    pub const HISTORY: &str = "SELECT change, idempotency_key, reason, note, at \
         FROM cmc_suppression_history WHERE recipient = ?1 ORDER BY id";
    /// An unsubscribed address stays so: an entry by hand would end it.
    pub const ADD: &str = "INSERT INTO cmc_suppressions (recipient, reason, since, until, note, \
         events, updated_at) VALUES (?1, 'manual', ?2, ?3, ?4, '[]', ?2) \
         ON CONFLICT (recipient) DO UPDATE SET reason = 'manual', since = ?2, until = ?3, \
         note = ?4, events = '[]', updated_at = ?2 \
         WHERE cmc_suppressions.reason IS DISTINCT FROM 'unsubscribed'";
    pub const REMOVE: &str = "UPDATE cmc_suppressions SET reason = NULL, since = NULL, \
         until = NULL, note = ?2, events = '[]', hard_count = 0, soft_times = '[]', \
         unknown_count = 0, updated_at = ?3 WHERE recipient = ?1";
    /// Whether a row exists (a success for an address without one changes
    /// nothing, and is not written down).
    pub const EXISTS: &str = "SELECT 1 FROM cmc_suppressions WHERE recipient = ?1";
    pub const NOTE: &str = "INSERT INTO cmc_suppression_history (recipient, idempotency_key, \
         change, reason, note, at) VALUES (?1, NULL, ?2, ?3, ?4, ?5)";

    /// Whether the list waits to be re-keyed to the addresses' new form.
    pub const REKEY_PENDING: &str = "SELECT COUNT(*) FROM cmc_suppressions_rekey";
    /// The rows whose address may change form: those that are not ASCII.
    pub const REKEY_ROWS: &str = "SELECT reason, since, until, note, events, hard_count, \
         soft_times, unknown_count, recipient FROM cmc_suppressions \
         WHERE octet_length(recipient) <> length(recipient)";
    pub const REKEY_ONE: &str = "SELECT reason, since, until, note, events, hard_count, \
         soft_times, unknown_count FROM cmc_suppressions WHERE recipient = ?1";
    pub const REKEY_PUT: &str = "INSERT INTO cmc_suppressions (recipient, reason, since, until, \
         note, events, hard_count, soft_times, unknown_count, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (recipient) DO UPDATE \
         SET reason = ?2, since = ?3, until = ?4, note = ?5, events = ?6, hard_count = ?7, \
         soft_times = ?8, unknown_count = ?9, updated_at = ?10";
    pub const REKEY_DROP: &str = "DELETE FROM cmc_suppressions WHERE recipient = ?1";
    pub const REKEY_HISTORY: &str =
        "UPDATE cmc_suppression_history SET recipient = ?2 WHERE recipient = ?1";
    pub const REKEY_DONE: &str = "DELETE FROM cmc_suppressions_rekey";

    /// `sql` with PostgreSQL's `$N` parameters.
    #[cfg(feature = "postgres")]
    pub fn pg(sql: &str) -> String {
        sql.replace('?', "$")
    }
}

/// The suppression list of an inbox: kept by its workers (see
/// [`Worker::suppressions`](crate::Worker::suppressions)), read and
/// changed by hand here.
#[derive(Debug, Clone)]
pub struct Suppressions {
    inbox: crate::Inbox,
}

impl crate::Inbox {
    /// The suppression list kept in this inbox.
    pub fn suppressions(&self) -> Suppressions {
        Suppressions {
            inbox: self.clone(),
        }
    }
}

fn invalid(address: &str) -> crate::InboxError {
    crate::InboxError::new(
        crate::InboxErrorKind::Invalid,
        format!(
            "`{}` is not an email address",
            cmc_webhook_core::printable(address, 100)
        ),
    )
}

impl Suppressions {
    /// Whether mail to `address` must not be sent now, why, and until when.
    pub async fn check(&self, address: &str) -> Result<Check, crate::InboxError> {
        let mut checks = self.check_many([address]).await?;
        checks.pop().ok_or_else(|| invalid(address))
    }

    /// [`check`](Self::check) for many addresses at once, in their order
    /// (one query per 1 000 addresses): the check of a send loop.
    pub async fn check_many<S: AsRef<str>>(
        &self,
        addresses: impl IntoIterator<Item = S>,
    ) -> Result<Vec<Check>, crate::InboxError> {
        let normal: Vec<String> = addresses
            .into_iter()
            .map(|a| normalize(a.as_ref()).ok_or_else(|| invalid(a.as_ref())))
            .collect::<Result<_, _>>()?;
        let mut unique = normal.clone();
        unique.sort();
        unique.dedup();
        let rows = self.inbox.inner.store.suppressions_of(&unique).await?;
        let entries: std::collections::HashMap<String, Entry> = rows
            .into_iter()
            .map(|r| {
                let e = r.into_entry();
                (e.address.clone(), e)
            })
            .collect();
        let now = self.inbox.now();
        Ok(normal
            .into_iter()
            .map(|a| {
                let entry = entries.get(&a);
                Check::of(a, entry, now)
            })
            .collect())
    }

    /// The rows `filter` takes, in the order of addresses.
    pub async fn list(&self, filter: &ListFilter) -> Result<Vec<Entry>, crate::InboxError> {
        let now = self.inbox.now().as_millisecond();
        Ok(self
            .inbox
            .inner
            .store
            .suppression_list(filter, now)
            .await?
            .into_iter()
            .map(RawEntry::into_entry)
            .collect())
    }

    /// Suppresses `address` by hand, for `lasts` (`None`: until removed),
    /// with a note, and says what that did ([`Added`]): the address as the
    /// list keeps it, and whether it was suppressed anew, an earlier
    /// suppression replaced, or nothing changed because the address is
    /// unsubscribed (an unsubscribe is for good, and outranks an entry by
    /// hand). A `lasts` of zero is refused: it would end as it starts.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cmc_webhook_inbox::suppression::AddOutcome;
    /// # use cmc_webhook_inbox::Inbox;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// # let inbox = Inbox::open(&format!("sqlite:{}", dir.path().join("inbox.sqlite3").display())).await?;
    /// let list = inbox.suppressions();
    /// let added = list.add("Gone@Example.JP", None, "asked us to stop").await?;
    /// assert_eq!(added.address, "gone@example.jp");
    /// assert_eq!(added.outcome, AddOutcome::Added);
    ///
    /// let again = list.add("gone@example.jp", Some(Duration::from_secs(3600)), "for an hour").await?;
    /// assert!(matches!(again.outcome, AddOutcome::Replaced { .. }));
    /// assert!(list.add("gone@example.jp", Some(Duration::ZERO), "-").await.is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn add(
        &self,
        address: &str,
        lasts: Option<std::time::Duration>,
        note: &str,
    ) -> Result<Added, crate::InboxError> {
        let address = normalize(address).ok_or_else(|| invalid(address))?;
        if lasts.is_some_and(|d| d.as_millis() == 0) {
            return Err(crate::InboxError::new(
                crate::InboxErrorKind::Invalid,
                "a suppression that lasts less than a millisecond ends as it starts: \
                 give a longer time, or none for one that lasts until removed"
                    .to_owned(),
            ));
        }
        let now = self.inbox.now();
        let until = lasts.map(|d| {
            now.checked_add(d)
                .unwrap_or(Timestamp::MAX)
                .as_millisecond()
        });
        // What stood before, for the report: read outside the change's
        // transaction, so a change made in between by a worker may be
        // missed in it (never in the list).
        let before = self
            .inbox
            .inner
            .store
            .suppressions_of(std::slice::from_ref(&address))
            .await?
            .into_iter()
            .map(RawSuppression::into_entry)
            .find(|e| e.address == address && e.suppressed_at(now));
        let changed = self
            .inbox
            .inner
            .store
            .suppression_change(&address, Manual::Add { until }, note, now.as_millisecond())
            .await?;
        let outcome = match (changed, before) {
            (false, _) => AddOutcome::Unchanged {
                because: NotAdded::Unsubscribed,
            },
            (true, Some(e)) => AddOutcome::Replaced {
                previous: e.reason.unwrap_or(Reason::Manual),
                previous_until: e.until,
            },
            (true, None) => AddOutcome::Added,
        };
        Ok(Added {
            until: match outcome {
                AddOutcome::Unchanged { .. } => None,
                _ => until.and_then(|u| Timestamp::from_millisecond(u).ok()),
            },
            address,
            outcome,
        })
    }

    /// Lifts the suppression of `address` and clears its counts, with a
    /// note; `false` when the list held nothing for it.
    pub async fn remove(&self, address: &str, note: &str) -> Result<bool, crate::InboxError> {
        let address = normalize(address).ok_or_else(|| invalid(address))?;
        let now = self.inbox.now().as_millisecond();
        self.inbox
            .inner
            .store
            .suppression_change(&address, Manual::Remove, note, now)
            .await
    }

    /// Every change of `address`'s row, oldest first.
    pub async fn history(&self, address: &str) -> Result<Vec<Change>, crate::InboxError> {
        let address = normalize(address).ok_or_else(|| invalid(address))?;
        self.inbox.inner.store.suppression_history(&address).await
    }
}

/// What [`Suppressions::add`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Added {
    /// The address, normalised as the list keeps it.
    pub address: String,
    /// Whether the list changed, and how.
    pub outcome: AddOutcome,
    /// Until when the entry by hand suppresses the address (`None`: until
    /// removed, or nothing was added).
    pub until: Option<Timestamp>,
}

/// How [`Suppressions::add`] changed the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddOutcome {
    /// The address was not suppressed; it is now.
    Added,
    /// The address was suppressed already; the entry by hand took the
    /// place of that suppression (its reason and end are here), whether it
    /// ends sooner or later.
    Replaced {
        /// The reason it was suppressed for.
        previous: Reason,
        /// When that suppression would have ended (`None`: never).
        previous_until: Option<Timestamp>,
    },
    /// Nothing changed, and no history row was written.
    Unchanged {
        /// Why.
        because: NotAdded,
    },
}

/// Why [`Suppressions::add`] changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotAdded {
    /// The address is unsubscribed, which is for good and outranks an
    /// entry by hand.
    Unsubscribed,
}

impl AddOutcome {
    /// `added`, `replaced` or `unchanged`.
    pub fn as_str(&self) -> &'static str {
        match self {
            AddOutcome::Added => "added",
            AddOutcome::Replaced { .. } => "replaced",
            AddOutcome::Unchanged { .. } => "unchanged",
        }
    }
}

impl NotAdded {
    /// `unsubscribed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            NotAdded::Unsubscribed => "unsubscribed",
        }
    }
}

/// A change by hand.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Manual {
    Add { until: Option<i64> },
    Remove,
}

/// A history row, selected with the columns of `sql::HISTORY`.
pub(crate) fn change_row<R>(r: &R) -> Result<Change, sqlx::Error>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Change {
        change: r.try_get(0)?,
        key: r
            .try_get::<Option<String>, _>(1)?
            .and_then(|k| k.parse().ok()),
        reason: r
            .try_get::<Option<String>, _>(2)?
            .as_deref()
            .and_then(Reason::from_column),
        note: r.try_get(3)?,
        at: Timestamp::from_millisecond(r.try_get(4)?).unwrap_or(Timestamp::UNIX_EPOCH),
    })
}

/// The rows of `cmc_suppressions` and of done events, as both backends
/// read them (the same columns in the same order).
pub(crate) mod rows {
    use jiff::tz::TimeZone;

    use super::policy::{Observed, State};
    use super::{RawEntry, RawSuppression};

    /// A row selected with `CHECK_COLUMNS`.
    pub(crate) fn raw_suppression<R>(r: &R) -> Result<RawSuppression, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(RawSuppression {
            recipient: r.try_get(0)?,
            reason: r.try_get(1)?,
            since: r.try_get(2)?,
            until: r.try_get(3)?,
            note: r.try_get(4)?,
        })
    }

    /// A row selected with the columns of `sql::LIST`.
    pub(crate) fn raw_entry<R>(r: &R) -> Result<RawEntry, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(RawEntry {
            recipient: r.try_get(0)?,
            reason: r.try_get(1)?,
            since: r.try_get(2)?,
            until: r.try_get(3)?,
            note: r.try_get(4)?,
            events: r.try_get(5)?,
            hard_count: r.try_get(6)?,
            soft_times: r.try_get(7)?,
            unknown_count: r.try_get(8)?,
            updated_at: r.try_get(9)?,
        })
    }

    /// A recipient's state, selected as `reason, since, until, note,
    /// events, hard_count, soft_times, unknown_count`.
    pub(crate) fn state<R>(r: &R) -> Result<State, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(State::from_columns(
            r.try_get::<Option<String>, _>(0)?.as_deref(),
            r.try_get(1)?,
            r.try_get(2)?,
            r.try_get(3)?,
            &r.try_get::<String, _>(4)?,
            r.try_get(5)?,
            &r.try_get::<String, _>(6)?,
            r.try_get(7)?,
        ))
    }

    /// What the done events a round marked say for the list, in the order
    /// of recipients (so that two workers lock the rows they share in the
    /// same order): rows returned as `idempotency_key, event_type,
    /// recipient, status, created, received_at`.
    pub(crate) fn observed<R>(
        rows: &[R],
        tz: &TimeZone,
    ) -> Result<Vec<(String, Observed, String)>, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
        for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    {
        let mut all = Vec::new();
        for r in rows {
            all.extend(super::observed_from_columns(
                &r.try_get::<String, _>(1)?,
                r.try_get::<Option<String>, _>(2)?.as_deref(),
                r.try_get::<Option<String>, _>(3)?.as_deref(),
                r.try_get::<Option<String>, _>(4)?.as_deref(),
                &r.try_get::<String, _>(0)?,
                r.try_get(5)?,
                tz,
            ));
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }
}
