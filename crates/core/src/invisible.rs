//! Which characters are invisible when shown, from Unicode's character
//! properties: shared by [`printable`](crate::printable), the file-name
//! sanitiser and the inbox's address checks.

/// Characters that are not shown as themselves, and so can hide or fake
/// what a name, an address or a log line says, decided from Unicode's
/// character properties (not a list of our own):
///
/// - general category `Cf`, format controls: bidirectional overrides,
///   embeddings and isolates (U+202E shows `evil\u{202E}txt.exe` as
///   `evilexe.txt`), zero-width characters, the soft hyphen, the byte-order
///   mark, tag characters, shorthand and musical symbol format controls;
/// - `Default_Ignorable_Code_Point`: besides those, variation selectors
///   (Mongolian FVS, U+FE00..FE0F, U+E0100..E01EF), the combining grapheme
///   joiner, Hangul fillers, U+17B4 and U+17B5, and the code points Unicode
///   keeps ignorable for later (U+2065, U+FFF0..FFF8, U+E0000..E0FFF);
/// - `Cn`, code points not assigned (yet): nobody can tell how they will be
///   shown;
/// - `Zl` and `Zp`, the line and paragraph separators (U+2028, U+2029),
///   which break a log line.
///
/// [`printable`](crate::printable) escapes these, attachment file names
/// drop them, and the inbox refuses addresses that hold one.
///
/// The tables are those of `regex-syntax` (Unicode 16.0 in its 0.8.12);
/// they are read once, into a sorted list searched by halves.
///
/// ```
/// assert!(cmc_webhook_core::is_invisible('\u{202E}')); // RIGHT-TO-LEFT OVERRIDE
/// assert!(!cmc_webhook_core::is_invisible('あ'));
/// ```
pub fn is_invisible(c: char) -> bool {
    use std::sync::LazyLock;
    static INVISIBLE: LazyLock<Vec<(char, char)>> = LazyLock::new(invisible_ranges);
    if c.is_ascii() {
        return false;
    }
    INVISIBLE
        .binary_search_by(|&(first, last)| {
            if last < c {
                std::cmp::Ordering::Less
            } else if first > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// The ranges of [`is_invisible`], sorted and disjoint.
fn invisible_ranges() -> Vec<(char, char)> {
    use regex_syntax::hir::{Class, HirKind};
    const CLASS: &str = r"[\p{Cf}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]";
    // A constant expression of properties the crate is built with (see the
    // test below): it cannot fail to parse.
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(CLASS)
        .expect("the invisible characters' class parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => class
            .ranges()
            .iter()
            .map(|r| (r.start(), r.end()))
            .collect(),
        other => unreachable!("a class of code points, not {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_come_from_unicode_properties() {
        let invisible = [
            // What the hand-written list had.
            '\u{00AD}',
            '\u{034F}',
            '\u{061C}',
            '\u{115F}',
            '\u{1160}',
            '\u{180E}',
            '\u{200B}',
            '\u{200F}',
            '\u{2028}',
            '\u{202E}',
            '\u{2060}',
            '\u{2064}',
            '\u{2066}',
            '\u{206F}',
            '\u{3164}',
            '\u{FEFF}',
            '\u{FFA0}',
            '\u{FFF9}',
            '\u{FFFB}',
            '\u{E0000}',
            '\u{E0041}',
            '\u{E007F}',
            // What it missed: variation selectors, Mongolian FVS, Khmer
            // inherent vowels, shorthand format controls, musical symbol
            // formats, and code points unassigned or kept ignorable.
            '\u{FE00}',
            '\u{FE0F}',
            '\u{E0100}',
            '\u{E01EF}',
            '\u{180B}',
            '\u{180C}',
            '\u{180D}',
            '\u{180F}',
            '\u{17B4}',
            '\u{17B5}',
            '\u{1BCA0}',
            '\u{1BCA3}',
            '\u{1D173}',
            '\u{1D17A}',
            '\u{2065}',
            '\u{FFF0}',
            '\u{FFF8}',
            '\u{E0080}',
            '\u{E0FFF}',
            '\u{0378}',
            '\u{FFFF}',
            '\u{10FFFF}',
        ];
        for c in invisible {
            assert!(is_invisible(c), "U+{:04X}", c as u32);
        }
        // Letters, marks that combine visibly (the dakuten, an acute),
        // symbols, emoji, and the ASCII range (controls are decided
        // elsewhere).
        for c in [
            'a', 'Z', '~', '\0', '\u{7F}', 'é', 'あ', '画', '\u{3099}', '\u{0301}', '€', '😀', 'Ω',
            '\u{212A}', '\u{FF21}', '\u{3000}', '\u{0600}',
        ] {
            let expected = c == '\u{0600}'; // ARABIC NUMBER SIGN is Cf
            assert_eq!(is_invisible(c), expected, "U+{:04X}", c as u32);
        }
        // Sorted and disjoint, as the search by halves needs.
        let ranges = invisible_ranges();
        assert!(ranges.windows(2).all(|w| w[0].1 < w[1].0));
        assert!(ranges.iter().all(|(a, b)| a <= b));
    }
}
