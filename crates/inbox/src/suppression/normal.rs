//! The address normal form the suppression list and the mailboxes' routes
//! compare: [`normalize`] and its parts.

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
        if same { ascii.into_owned() } else { written }
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
