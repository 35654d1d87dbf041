//! RFC 2047 encoded words decoded as Python's reference decoder decodes them.
//!
//! `fixtures/encoded_words/corpus.tsv` holds header values as real mail
//! writes them: Japanese subjects and attachment names in UTF-8,
//! ISO-2022-JP, Shift_JIS and EUC-JP, French and German in ISO-8859-1 and
//! Russian in KOI8-R, each in B and Q, in one word and split over several,
//! with plain text around them and words of different charsets side by
//! side. The values were encoded by Python's `email.header` and each
//! expected text is Python's decoding,
//! `str(make_header(decode_header(value)))`, checked against the original.
//!
//! The corpus is generated once and checked in. To regenerate it (stdlib
//! only), from the crate root:
//!
//! ```text
//! python3 tests/fixtures/encoded_words/generate.py
//! ```
//!
//! Characters that Python's codecs and the WHATWG tables the crate decodes
//! with map differently (wave dash, full-width tilde, minus, dashes, ...)
//! are kept out of the corpus; that difference is a separate decision.

use cmc_webhook::Header;

/// One case per line: `name`, `encoded`, `expected`, separated by tabs, with
/// `\\`, `\t`, `\n` and `\r` escaped in the two values. Lines starting with
/// `#` are comments.
const CORPUS: &str = include_str!("fixtures/encoded_words/corpus.tsv");

/// The generator writes about a hundred cases; fewer than this means the
/// corpus was truncated or is being misread.
const MIN_CASES: usize = 75;

/// One line of the corpus.
struct Case {
    name: &'static str,
    /// The header value, folding collapsed to single spaces.
    encoded: String,
    /// Python's decoding of `encoded`.
    expected: String,
}

/// Every case of the corpus, in file order.
fn corpus() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for (index, line) in CORPUS.lines().enumerate() {
        let line_no = index + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let columns: Vec<&str> = line.split('\t').collect();
        let [name, encoded, expected] = columns[..] else {
            panic!(
                "corpus.tsv line {line_no}: expected 3 tab-separated columns, found {}",
                columns.len()
            );
        };
        assert!(
            cases.iter().all(|case| case.name != name),
            "corpus.tsv line {line_no}: case name `{name}` appears twice"
        );
        cases.push(Case {
            name,
            encoded: unescape(encoded, line_no),
            expected: unescape(expected, line_no),
        });
    }
    cases
}

/// Reverses the generator's escaping: `\\`, `\t`, `\n`, `\r`.
fn unescape(value: &str, line_no: usize) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => {
                panic!("corpus.tsv line {line_no}: unknown escape `\\{other}` in {value:?}")
            }
            None => panic!("corpus.tsv line {line_no}: trailing backslash in {value:?}"),
        }
    }
    out
}

#[test]
fn decoded_values_match_python_email_header() {
    let cases = corpus();
    assert!(
        cases.len() >= MIN_CASES,
        "corpus.tsv has {} cases, expected at least {MIN_CASES}",
        cases.len()
    );
    // Every case is checked before failing, so that one run lists them all.
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let header = Header::new("Subject", case.encoded.as_str());
            let got = header.decoded_value();
            (got != case.expected.as_str()).then(|| {
                format!(
                    "{}\n  encoded:  {:?}\n  expected: {:?}\n  got:      {:?}",
                    case.name, case.encoded, case.expected, got
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases decode differently from Python's email.header:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
