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
        let sql = sqlx::AssertSqlSafe(std::sync::Arc::<str>::from(qualify(&self.schema, text)))
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
                built(text.replace('?', "$"))
            });
    }
    let _ = pg;
    built(text.to_owned())
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
/// the columns that summarise a row (the row's JSON, which escapes it,
/// keeps every character, and is what the handler gets).
pub(crate) fn pg_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}
