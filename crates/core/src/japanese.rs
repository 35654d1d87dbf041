//! The Japanese character tables: which form of seven characters the
//! crate returns, and how to get the other.
//!
//! Shift_JIS, EUC-JP and ISO-2022-JP are decoded by `encoding_rs` under
//! the WHATWG (browser) tables, which follow Windows' code page 932. Seven
//! byte sequences of the JIS X 0208 set decode there to the full-width or
//! Windows forms, where Java's and Python's default tables (and the JIS
//! standard) give other characters:
//!
//! | JIS X 0208 | the crate (WHATWG, Windows) | Java, Python (JIS) |
//! |---|---|---|
//! | 1-33 (Shift_JIS `81 60`) | ～ U+FF5E FULLWIDTH TILDE | 〜 U+301C WAVE DASH |
//! | 1-61 (`81 7C`) | － U+FF0D FULLWIDTH HYPHEN-MINUS | − U+2212 MINUS SIGN |
//! | 1-34 (`81 61`) | ∥ U+2225 PARALLEL TO | ‖ U+2016 DOUBLE VERTICAL LINE |
//! | 1-29 (`81 5C`) | ― U+2015 HORIZONTAL BAR | — U+2014 EM DASH |
//! | 1-81 (`81 91`) | ￠ U+FFE0 FULLWIDTH CENT SIGN | ¢ U+00A2 CENT SIGN |
//! | 1-82 (`81 92`) | ￡ U+FFE1 FULLWIDTH POUND SIGN | £ U+00A3 POUND SIGN |
//! | 2-44 (`81 CA`) | ￢ U+FFE2 FULLWIDTH NOT SIGN | ¬ U+00AC NOT SIGN |
//!
//! The crate returns the WHATWG forms: they are what browsers, Windows
//! and most Japanese mail software produce and show, and they are what
//! the same text sent as UTF-8 by those programs contains, so a subject
//! reads the same whichever charset it came in. Text that must match the
//! JIS forms (a comparison with data written by a Java or Python program
//! that decoded the same bytes) can be mapped with [`to_jis_forms`]. The
//! same choice applies to RFC 2047 subjects and file names.

use std::borrow::Cow;

/// The seven characters, WHATWG form first, JIS form second.
const FORMS: [(char, char); 7] = [
    ('\u{FF5E}', '\u{301C}'),
    ('\u{FF0D}', '\u{2212}'),
    ('\u{2225}', '\u{2016}'),
    ('\u{2015}', '\u{2014}'),
    ('\u{FFE0}', '\u{00A2}'),
    ('\u{FFE1}', '\u{00A3}'),
    ('\u{FFE2}', '\u{00AC}'),
];

/// `text` with the seven WHATWG forms of the table above replaced by
/// their JIS forms (as Java's and Python's Shift_JIS, EUC-JP and
/// ISO-2022-JP decoders give them). Borrows `text` when none occurs.
///
/// Apply it only to text that was decoded from a Japanese charset: the
/// full-width forms are also ordinary characters that UTF-8 text may hold.
///
/// ```
/// use cmc_webhook_core::japanese::to_jis_forms;
///
/// assert_eq!(to_jis_forms("10時～12時"), "10時〜12時");
/// assert!(matches!(to_jis_forms("テスト"), std::borrow::Cow::Borrowed(_)));
/// ```
pub fn to_jis_forms(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| FORMS.iter().any(|(w, _)| *w == c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| FORMS.iter().find(|(w, _)| *w == c).map_or(c, |(_, j)| *j))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_what_encoding_rs_decodes() {
        // The Shift_JIS bytes of each row, decoded by encoding_rs.
        let bytes = [
            [0x81, 0x60],
            [0x81, 0x7C],
            [0x81, 0x61],
            [0x81, 0x5C],
            [0x81, 0x91],
            [0x81, 0x92],
            [0x81, 0xCA],
        ];
        for (pair, (whatwg, jis)) in bytes.iter().zip(FORMS) {
            let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(pair);
            assert!(!bad);
            assert_eq!(text.chars().next(), Some(whatwg), "{pair:02X?}");
            assert_eq!(to_jis_forms(&text), jis.to_string());
        }
    }
}
