//! How a statement written by this crate reaches the database: `?N`
//! parameters as the database writes them, and on PostgreSQL the inbox's
//! tables named with the store's schema ([`Tables`], found through
//! [`PG_TABLES`], which the `Store` methods set). A leaf: the backends and
//! the shared statement files use it; it imports none of them.

#[cfg(feature = "postgres")]
use std::collections::HashMap;

/// The statements of one store, its tables named with its schema: each
/// text (written with `?N` parameters and bare `cmc_*` table names) is
/// expanded the first time it is run, and looked up afterwards, so that
/// a statement on the hot path builds no string.
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub(crate) struct Tables {
    pub(crate) schema: String,
    expanded: std::sync::RwLock<HashMap<Box<str>, sqlx::SqlStr>>,
}

/// The most statement texts a store keeps expanded (the texts are the
/// crate's own, a few hundred at most; past this they are expanded on
/// each call).
#[cfg(feature = "postgres")]
const EXPANDED: usize = 2048;

#[cfg(feature = "postgres")]
impl Tables {
    pub(crate) fn new(schema: &str) -> Tables {
        Tables {
            schema: schema.to_owned(),
            expanded: Default::default(),
        }
    }

    /// `text` as this store runs it.
    pub(crate) fn expand(&self, text: &str) -> sqlx::SqlStr {
        let read = self.expanded.read().unwrap_or_else(|e| e.into_inner());
        if let Some(sql) = read.get(text) {
            return sql.clone();
        }
        drop(read);
        use sqlx::SqlSafeStr;
        let sql = sqlx::AssertSqlSafe(std::sync::Arc::<str>::from(qualify(
            &self.schema,
            &markers(true, text),
        )))
        .into_sql_str();
        let mut write = self.expanded.write().unwrap_or_else(|e| e.into_inner());
        if write.len() < EXPANDED {
            write.insert(text.into(), sql.clone());
        }
        sql
    }
}

/// `text` with its parameters written `$N` and each table of the inbox
/// (a word `cmc_*` outside quotes, not after or before a `.`) named with
/// `schema`: `FROM cmc_events` becomes `FROM cmc_webhook.cmc_events`,
/// while `cmc_mails.repeats` (a column of the table an `INSERT` names)
/// and `'cmc_list'` stay as they are.
#[cfg(feature = "postgres")]
pub(crate) fn qualify(schema: &str, text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 8 * schema.len());
    let mut quoted = false;
    let mut i = 0;
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\'' {
            quoted = !quoted;
        } else if !quoted
            && text[i..].starts_with("cmc_")
            && (i == 0 || !(word(bytes[i - 1]) || matches!(bytes[i - 1], b'.' | b'"' | b'$')))
        {
            let end = text[i..]
                .bytes()
                .position(|b| !word(b))
                .map_or(text.len(), |n| i + n);
            if bytes.get(end) != Some(&b'.') {
                out.push_str(schema);
                out.push('.');
            }
            out.push_str(&text[i..end]);
            i = end;
            continue;
        }
        if b == b'?' && !quoted {
            out.push('$');
        } else {
            // Whole characters: the texts are ASCII but for comments.
            let len = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[i..i + len]);
            i += len;
            continue;
        }
        i += 1;
    }
    out
}

/// `text`, SQL written by this crate with `?N` parameters, as the
/// database runs it (`$N` on PostgreSQL): the one place where a statement
/// built at run time is declared safe to sqlx. What is built into the
/// texts is this crate's own (table names, placeholders, lists of
/// placeholders, a column chosen from a fixed set); every value is bound.
///
/// On PostgreSQL the tables are named with the store's schema too: the
/// texts are expanded once per store, and looked up afterwards (see
/// [`Tables`]), from the store the call runs on
/// ([`PG_TABLES`], set by the `Store` methods).
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn dialect(pg: bool, text: &str) -> sqlx::SqlStr {
    #[cfg(feature = "postgres")]
    if pg {
        return PG_TABLES
            .try_with(|tables| tables.expand(text))
            .unwrap_or_else(|_| {
                debug_assert!(
                    false,
                    "a PostgreSQL statement run outside its store: {text}"
                );
                built(markers(true, text).replace('?', "$"))
            });
    }
    let _ = pg;
    built(markers(false, text).into_owned())
}

/// `text` with its type markers expanded for the database: the times of
/// the inbox are milliseconds since the epoch in the statements and in
/// Rust (`i64`), `timestamptz` in PostgreSQL's columns and `INTEGER` in
/// SQLite's; its JSON is `jsonb` in PostgreSQL and `TEXT` in SQLite.
///
/// - `@ts(x)`: milliseconds `x` (a parameter, an expression) as the
///   column stores a time: `(TIMESTAMPTZ 'epoch' + (x) * INTERVAL '1
///   millisecond')` on PostgreSQL (exact: the product is a whole number
///   of microseconds far below 2^53);
/// - `@ms(x)`: a time column (or expression) as milliseconds:
///   `(EXTRACT(EPOCH FROM x) * 1000)::BIGINT` (`EXTRACT` is `numeric`,
///   exact, since PostgreSQL 14);
/// - `@jsonb(x)`: JSON text `x` as the column stores it: `CAST(x AS
///   JSONB)`;
/// - `@json(x)`: a JSON column as text: `CAST(x AS TEXT)`;
/// - `@exact(c)`: a row's JSON column `c` as text, exact: the text kept in
///   `c_exact` when the JSON holds a `\u0000` (which `jsonb` refuses, see
///   [`pg_json`]), else `c` as text.
///
/// On SQLite each marker is its argument. Markers are written only by
/// this crate; text in quotes is left alone.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn markers(pg: bool, text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('@') {
        return std::borrow::Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 64);
    let mut quoted = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\'' {
            quoted = !quoted;
        } else if b == b'@' && !quoted {
            let name_end = text[i + 1..]
                .find('(')
                .map(|n| i + 1 + n)
                .filter(|&e| text[i + 1..e].bytes().all(|c| c.is_ascii_lowercase()));
            if let Some(open) = name_end {
                // The matching parenthesis, quotes skipped.
                let (mut depth, mut q, mut close) = (0usize, false, None);
                for (j, &c) in bytes.iter().enumerate().skip(open) {
                    match c {
                        b'\'' => q = !q,
                        b'(' if !q => depth += 1,
                        b')' if !q => {
                            depth -= 1;
                            if depth == 0 {
                                close = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(close) = close {
                    let name = &text[i + 1..open];
                    let inner = markers(pg, &text[open + 1..close]);
                    let inner = inner.as_ref();
                    match (pg, name) {
                        (false, _) => out.push_str(inner),
                        (true, "ts") => {
                            out.push_str("(TIMESTAMPTZ 'epoch' + (");
                            out.push_str(inner);
                            out.push_str(") * INTERVAL '1 millisecond')");
                        }
                        (true, "ms") => {
                            out.push_str("(EXTRACT(EPOCH FROM ");
                            out.push_str(inner);
                            out.push_str(") * 1000)::BIGINT");
                        }
                        (true, "jsonb") => {
                            out.push_str("CAST(");
                            out.push_str(inner);
                            out.push_str(" AS JSONB)");
                        }
                        (true, "json") => {
                            out.push_str("CAST(");
                            out.push_str(inner);
                            out.push_str(" AS TEXT)");
                        }
                        (true, "exact") => {
                            out.push_str("COALESCE(");
                            out.push_str(inner);
                            out.push_str("_exact, CAST(");
                            out.push_str(inner);
                            out.push_str(" AS TEXT))");
                        }
                        _ => {
                            debug_assert!(false, "an unknown marker @{name} in {text}");
                            out.push_str(&text[i..=close]);
                        }
                    }
                    i = close + 1;
                    continue;
                }
            }
        }
        let len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + len]);
        i += len;
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(feature = "postgres")]
tokio::task_local! {
    /// The statements of the PostgreSQL store the current call runs on.
    pub(crate) static PG_TABLES: std::sync::Arc<Tables>;
}

/// A statement this crate built at run time, already in the database's
/// dialect (see [`dialect`]).
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
pub(crate) fn built(text: String) -> sqlx::SqlStr {
    use sqlx::SqlSafeStr;
    sqlx::AssertSqlSafe(text).into_sql_str()
}

#[cfg(feature = "postgres")]
/// `text` as PostgreSQL can hold it: `TEXT` refuses U+0000, which a
/// mail's headers or an event's fields may carry, so it becomes U+FFFD in
/// the columns that summarise a row (the row's JSON keeps every character,
/// exactly, and is what the handler gets: see [`pg_json`]).
pub(crate) fn pg_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

#[cfg(feature = "postgres")]
/// JSON text `json` (written by serde_json, so valid) as PostgreSQL can
/// hold it. `jsonb` refuses the escape `\u0000`, which a stranger's mail
/// or event text may carry, and a number past `numeric`'s range
/// (`1e200000`, which an unknown field kept as written may hold; a
/// smaller exponent is written out in full, `1e100000` read back as
/// 100 001 digits). Such JSON is stored twice: the `jsonb` column holds
/// it with each U+0000 made U+FFFD and each number with an exponent, or
/// longer than 64 characters, made a string of its text (for queries),
/// and the `*_exact` column (the second value, `None` for every other
/// row) keeps the text as written, which reads take first. An escaped
/// backslash followed by `u0000` (the text `\u0000`) is not the escape.
pub(crate) fn pg_json(json: &str) -> (std::borrow::Cow<'_, str>, Option<&str>) {
    let bytes = json.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' if json[i..].starts_with("\\u0000") => {
                    out.push_str(&json[copied..i]);
                    out.push_str("\\ufffd");
                    i += 6;
                    copied = i;
                    continue;
                }
                // Any other escape: two bytes (the rest of `\uXXXX` is hex).
                b'\\' => i += 2,
                b'"' => {
                    in_string = false;
                    i += 1;
                }
                _ => i += 1,
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let end = bytes[i..]
                    .iter()
                    .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .map_or(bytes.len(), |n| i + n);
                let number = &json[i..end];
                if number.len() > 64 || number.contains(['e', 'E']) {
                    out.push_str(&json[copied..i]);
                    out.push('"');
                    out.push_str(number);
                    out.push('"');
                    copied = end;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if copied == 0 {
        return (std::borrow::Cow::Borrowed(json), None);
    }
    out.push_str(&json[copied.min(json.len())..]);
    (std::borrow::Cow::Owned(out), Some(json))
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::{markers, pg_json};

    #[test]
    fn markers_expand_per_database() {
        let text = "UPDATE t SET done_at = @ts(?1) WHERE @ms(run_at) < ?2 AND x = '@ts(y)' \
                    RETURNING @exact(event) AS event, @jsonb(CAST(?3 AS TEXT)), @json(events)";
        assert_eq!(
            markers(false, text),
            "UPDATE t SET done_at = ?1 WHERE run_at < ?2 AND x = '@ts(y)' \
                    RETURNING event AS event, CAST(?3 AS TEXT), events"
        );
        assert_eq!(
            markers(true, text),
            "UPDATE t SET done_at = (TIMESTAMPTZ 'epoch' + (?1) * INTERVAL '1 millisecond') \
             WHERE (EXTRACT(EPOCH FROM run_at) * 1000)::BIGINT < ?2 AND x = '@ts(y)' \
                    RETURNING COALESCE(event_exact, CAST(event AS TEXT)) AS event, \
             CAST(CAST(?3 AS TEXT) AS JSONB), CAST(events AS TEXT)"
        );
        assert_eq!(
            markers(true, "GREATEST(@ts(MAX(a)), @ts(?1))"),
            "GREATEST((TIMESTAMPTZ 'epoch' + (MAX(a)) * INTERVAL '1 millisecond'), \
             (TIMESTAMPTZ 'epoch' + (?1) * INTERVAL '1 millisecond'))"
        );
    }

    #[test]
    fn json_with_nul_is_kept_exact() {
        assert_eq!(pg_json(r#"{"a":"b"}"#), (r#"{"a":"b"}"#.into(), None));
        let nul = serde_json::to_string("x\0y\\u0000z\0").unwrap();
        assert_eq!(nul, r#""x\u0000y\\u0000z\u0000""#);
        let (jsonb, exact) = pg_json(&nul);
        assert_eq!(jsonb, r#""x\ufffdy\\u0000z\ufffd""#);
        assert_eq!(exact, Some(nul.as_str()));
        // The text `\u0000` alone is no escape: nothing to keep apart.
        let text = serde_json::to_string("\\u0000").unwrap();
        assert_eq!(pg_json(&text), (text.as_str().into(), None));
        // Numbers past numeric's range, or written out huge: strings in the
        // jsonb copy, exact apart; every other number as it is.
        let big = r#"{"a":1e200000,"b":[-2.5E-3,12],"c":"1e5","d":1.5}"#;
        let (jsonb, exact) = pg_json(big);
        assert_eq!(
            jsonb,
            r#"{"a":"1e200000","b":["-2.5E-3",12],"c":"1e5","d":1.5}"#
        );
        assert_eq!(exact, Some(big));
        let long = format!("[{}]", "9".repeat(65));
        assert_eq!(pg_json(&long).0, format!("[\"{}\"]", "9".repeat(65)));
        let plain = r#"{"n":-12.75,"s":"x\"1e5"}"#;
        assert_eq!(pg_json(plain), (plain.into(), None));
    }
}
