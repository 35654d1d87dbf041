//! What a route matches: a [`Pattern`] on the envelope recipient, CMC's
//! `filter`, or both ([`Route`]).

use std::fmt;
use std::str::FromStr;

use crate::suppression::normalize;

/// An address pattern, matched against a normalised envelope recipient
/// (as [`normalize`] makes it).
///
/// | written | matches |
/// |---|---|
/// | `support@example.jp` | that address only (not `support+x@example.jp`) |
/// | `*@support.example.jp` | every address at that domain (not its subdomains) |
/// | `reply+*@example.jp` | every address at that domain whose local part starts with `reply+` |
/// | `/^order-[0-9]+@/` | every address the regular expression finds a match in |
///
/// Addresses and patterns are compared in [`normalize`]'s form: ASCII
/// letters lower-cased (`Support@Example.JP` is the pattern
/// `support@example.jp`), other text in NFC and never case-folded, IDN
/// domains as A-labels (`*@例え.jp` is `*@xn--r8jz45g.jp`). A regular
/// expression (between slashes, [`regex`](https://docs.rs/regex) syntax)
/// matches ASCII letters in either case, and only them (`/^kim@/` does not
/// match a Kelvin sign, as Unicode's case folding would), and is not
/// anchored: write `^` and `$` to match the whole address. It sees the
/// normal form, so write an IDN domain in it as its A-label. It runs in
/// time linear in the address, whatever it is.
///
/// ```
/// use cmc_webhook_inbox::mailbox::Pattern;
///
/// let reply: Pattern = "Reply+*@Example.JP".parse()?;
/// assert!(reply.matches("reply+4711@example.jp"));
/// assert!(!reply.matches("reply@example.jp"));
/// assert_eq!(reply.to_string(), "reply+*@example.jp");
///
/// let orders: Pattern = "/^order-[0-9]+@shop\\.example\\.jp$/".parse()?;
/// assert!(orders.matches("order-12@shop.example.jp"));
/// assert!("not an address".parse::<Pattern>().is_err());
/// # Ok::<(), cmc_webhook_inbox::mailbox::MailboxError>(())
/// ```
#[derive(Clone)]
pub struct Pattern {
    matcher: Matcher,
}

#[derive(Clone)]
enum Matcher {
    Exact(String),
    Domain(String),
    Prefix {
        local: String,
        domain: String,
    },
    /// The expression compiled (with ASCII case folded), and as written.
    Regex(regex::Regex, String),
}

/// The longest regular expression taken, compiled, in bytes: a pattern is
/// written by the operator, but a typo should not cost a gigabyte.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl Pattern {
    /// The pattern `text` (see the table above).
    pub fn new(text: &str) -> Result<Pattern, MailboxError> {
        text.parse()
    }

    /// Whether the normalised address `recipient` matches.
    pub fn matches(&self, recipient: &str) -> bool {
        match &self.matcher {
            Matcher::Exact(address) => recipient == address,
            Matcher::Domain(domain) => recipient
                .rsplit_once('@')
                .is_some_and(|(local, d)| !local.is_empty() && d == domain),
            Matcher::Prefix { local, domain } => recipient
                .rsplit_once('@')
                .is_some_and(|(l, d)| d == domain && l.starts_with(local.as_str())),
            Matcher::Regex(re, _) => re.is_match(recipient),
        }
    }
}

impl FromStr for Pattern {
    type Err = MailboxError;

    fn from_str(text: &str) -> Result<Pattern, MailboxError> {
        let bad = |why: &str| MailboxError::new(format!("the pattern {text:?} {why}"));
        let trimmed = text.trim();
        if let Some(expression) = trimmed
            .strip_prefix('/')
            .and_then(|rest| rest.strip_suffix('/'))
        {
            if expression.is_empty() {
                return Err(bad("is an empty regular expression"));
            }
            let not_a_regex = |e: &dyn fmt::Display| {
                // The regex crate's message spans lines (a caret under
                // the spot): one line here.
                let one_line = e
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                bad(&format!("is not a regular expression: {one_line}"))
            };
            let folded = ascii_case_insensitive(expression).map_err(|e| not_a_regex(&e))?;
            let re = regex::RegexBuilder::new(&folded)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| not_a_regex(&e))?;
            return Ok(Pattern {
                matcher: Matcher::Regex(re, expression.to_owned()),
            });
        }
        let address = normalize(trimmed).ok_or_else(|| {
            bad("is not an address pattern: expected local@domain, *@domain, prefix*@domain or /regex/")
        })?;
        let (local, domain) = address
            .rsplit_once('@')
            .expect("a normalised address has an @");
        if domain.contains('*') {
            return Err(bad(
                "has a * in its domain: only the local part may end with *",
            ));
        }
        let matcher = match local.find('*') {
            None => Matcher::Exact(address.clone()),
            Some(at) if at + 1 == local.len() => {
                if at == 0 {
                    Matcher::Domain(domain.to_owned())
                } else {
                    Matcher::Prefix {
                        local: local[..at].to_owned(),
                        domain: domain.to_owned(),
                    }
                }
            }
            Some(_) => return Err(bad("has a * that is not at the end of the local part")),
        };
        Ok(Pattern { matcher })
    }
}

/// `expression` rewritten so that each ASCII letter it writes (alone, in a
/// class or in a range) matches in either case, and nothing else changes
/// (a negated class leaves out both cases): the regex crate's
/// case-insensitive mode folds Unicode's case, where `k` matches the
/// Kelvin sign U+212A and `s` the long s U+017F, which the normal form of
/// an address keeps apart from `k` and `s`. (An expression that writes
/// `(?i)` itself gets Unicode's folding there.)
fn ascii_case_insensitive(expression: &str) -> Result<String, String> {
    use regex_syntax::ast::{
        Ast, ClassBracketed, ClassSet, ClassSetItem, ClassSetRange, ClassSetUnion, Literal,
        LiteralKind,
    };

    /// `lit` in the other case, when it is an ASCII letter.
    fn other_case(lit: &Literal) -> Option<Literal> {
        lit.c.is_ascii_alphabetic().then(|| Literal {
            span: lit.span,
            kind: LiteralKind::Verbatim,
            c: char::from(lit.c as u8 ^ 0x20),
        })
    }

    /// The ranges of the other case of the ASCII letters in `range`.
    fn other_case_ranges(range: &ClassSetRange) -> Vec<ClassSetItem> {
        let (first, last) = (range.start.c, range.end.c);
        [('a', 'z'), ('A', 'Z')]
            .into_iter()
            .filter_map(|(a, z)| {
                let (lo, hi) = (first.max(a), last.min(z));
                (lo <= hi).then(|| {
                    let lit = |c: char| Literal {
                        span: range.span,
                        kind: LiteralKind::Verbatim,
                        c: char::from(c as u8 ^ 0x20),
                    };
                    ClassSetItem::Range(ClassSetRange {
                        span: range.span,
                        start: lit(lo),
                        end: lit(hi),
                    })
                })
            })
            .collect()
    }

    // In place: the syntax tree's nodes free themselves without recursion,
    // so they cannot be taken apart by value.
    fn fold_item(item: &mut ClassSetItem) {
        let extra = match item {
            ClassSetItem::Literal(lit) => other_case(lit).map(|o| vec![ClassSetItem::Literal(o)]),
            ClassSetItem::Range(range) => Some(other_case_ranges(range)),
            ClassSetItem::Bracketed(inner) => {
                fold_set(&mut inner.kind);
                None
            }
            ClassSetItem::Union(union) => {
                union.items.iter_mut().for_each(fold_item);
                None
            }
            _ => None,
        };
        if let Some(extra) = extra.filter(|e| !e.is_empty()) {
            let span = *item.span();
            let this = std::mem::replace(item, ClassSetItem::Empty(span));
            let mut items = vec![this];
            items.extend(extra);
            *item = ClassSetItem::Union(ClassSetUnion { span, items });
        }
    }

    fn fold_set(set: &mut ClassSet) {
        match set {
            ClassSet::Item(item) => fold_item(item),
            ClassSet::BinaryOp(op) => {
                fold_set(&mut op.lhs);
                fold_set(&mut op.rhs);
            }
        }
    }

    fn fold(ast: &mut Ast) {
        match ast {
            Ast::Literal(lit) => {
                if let Some(other) = other_case(lit) {
                    let span = lit.span;
                    let items = vec![
                        ClassSetItem::Literal((**lit).clone()),
                        ClassSetItem::Literal(other),
                    ];
                    *ast = Ast::class_bracketed(ClassBracketed {
                        span,
                        negated: false,
                        kind: ClassSet::Item(ClassSetItem::Union(ClassSetUnion { span, items })),
                    });
                }
            }
            Ast::ClassBracketed(class) => fold_set(&mut class.kind),
            Ast::Repetition(r) => fold(&mut r.ast),
            Ast::Group(g) => fold(&mut g.ast),
            Ast::Alternation(a) => a.asts.iter_mut().for_each(fold),
            Ast::Concat(c) => c.asts.iter_mut().for_each(fold),
            _ => {}
        }
    }

    let mut ast = regex_syntax::ast::parse::ParserBuilder::new()
        .nest_limit(250)
        .build()
        .parse(expression)
        .map_err(|e| e.to_string())?;
    fold(&mut ast);
    let mut out = String::with_capacity(expression.len() * 2);
    regex_syntax::ast::print::Printer::new()
        .print(&ast, &mut out)
        .expect("writing to a String does not fail");
    Ok(out)
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.matcher {
            Matcher::Exact(address) => f.write_str(address),
            Matcher::Domain(domain) => write!(f, "*@{domain}"),
            Matcher::Prefix { local, domain } => write!(f, "{local}*@{domain}"),
            Matcher::Regex(_, written) => write!(f, "/{written}/"),
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({self})")
    }
}

/// What a route matches: an address [`Pattern`] on each envelope
/// recipient, the name of the CMC inbound rule (`filter`) the mail came
/// through, or both (then both must match); and, when it names one, only
/// mails from that source (CMC account, as the layer named it).
///
/// Written as text (what [`Mailboxes::route`](super::Mailboxes::route) and
/// the receiver's `--mailbox` take): a pattern, `filter:NAME`, or
/// `filter:NAME pattern`, each optionally after `source:NAME` (or
/// `source:NAME` alone: every mail of that source). A filter compares
/// equal ignoring ASCII case and the white space around it; a source is
/// compared exactly.
///
/// ```
/// use cmc_webhook_inbox::mailbox::Route;
///
/// let docs: Route = "filter:documents".parse()?;
/// assert!(docs.matches("anyone@example.jp", "Documents"));
///
/// let both: Route = "filter:documents *@scan.example.jp".parse()?;
/// assert!(both.matches("a@scan.example.jp", "documents"));
/// assert!(!both.matches("a@example.jp", "documents"));
///
/// let sandbox: Route = "source:sandbox *@example.jp".parse()?;
/// assert!(sandbox.matches_from("a@example.jp", "", "sandbox"));
/// assert!(!sandbox.matches_from("a@example.jp", "", "production"));
/// # Ok::<(), cmc_webhook_inbox::mailbox::MailboxError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Route {
    pattern: Option<Pattern>,
    filter: Option<String>,
    source: Option<String>,
}

impl Route {
    /// Mails whose recipient matches `pattern`.
    pub fn to(pattern: Pattern) -> Route {
        Route {
            pattern: Some(pattern),
            filter: None,
            source: None,
        }
    }

    /// Mails that came through the CMC inbound rule `name`, whatever their
    /// recipients.
    pub fn filter(name: impl Into<String>) -> Route {
        Route {
            pattern: None,
            filter: Some(name.into().trim().to_owned()),
            source: None,
        }
    }

    /// Every mail from the source (CMC account) named `name`, whatever
    /// its recipients and filter.
    pub fn source(name: impl Into<String>) -> Route {
        Route {
            pattern: None,
            filter: None,
            source: Some(name.into()),
        }
    }

    /// This route, for mails from the source named `name` only.
    pub fn and_source(mut self, name: impl Into<String>) -> Route {
        self.source = Some(name.into());
        self
    }

    /// This route, for mails of the CMC inbound rule `name` only.
    pub fn and_filter(mut self, name: impl Into<String>) -> Route {
        self.filter = Some(name.into().trim().to_owned());
        self
    }

    /// Whether a mail from `source` that came through `filter` matches
    /// for the normalised `recipient`: what routing asks.
    pub fn matches_from(&self, recipient: &str, filter: &str, source: &str) -> bool {
        self.source.as_deref().is_none_or(|name| name == source) && self.matches(recipient, filter)
    }

    /// Whether a mail that came through `filter` matches for the
    /// normalised `recipient`, whatever source the route names (see
    /// [`matches_from`](Route::matches_from)).
    pub fn matches(&self, recipient: &str, filter: &str) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|name| name.eq_ignore_ascii_case(filter.trim()))
            && self.pattern.as_ref().is_none_or(|p| p.matches(recipient))
    }
}

impl From<Pattern> for Route {
    fn from(pattern: Pattern) -> Route {
        Route::to(pattern)
    }
}

impl FromStr for Route {
    type Err = MailboxError;

    fn from_str(text: &str) -> Result<Route, MailboxError> {
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("source:") {
            let (name, rest) = rest
                .trim_start()
                .split_once(char::is_whitespace)
                .unwrap_or((rest.trim_start(), ""));
            if name.is_empty() {
                return Err(MailboxError::new(format!(
                    "the route {text:?} names no source: write source:NAME"
                )));
            }
            let rest = rest.trim();
            if rest.starts_with("source:") {
                return Err(MailboxError::new(format!(
                    "the route {text:?} names two sources"
                )));
            }
            return Ok(if rest.is_empty() {
                Route::source(name)
            } else {
                rest.parse::<Route>()?.and_source(name)
            });
        }
        let Some(rest) = text.strip_prefix("filter:") else {
            return Ok(Route::to(text.parse()?));
        };
        let rest = rest.trim_start();
        let (name, pattern) = match rest.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"').ok_or_else(|| {
                    MailboxError::new(format!("the route {text:?} has an unclosed quote"))
                })?;
                (&quoted[..end], quoted[end + 1..].trim())
            }
            None => rest.split_once(char::is_whitespace).unwrap_or((rest, "")),
        };
        let pattern = Some(pattern.trim()).filter(|p| !p.is_empty());
        if name.trim().is_empty() {
            return Err(MailboxError::new(format!(
                "the route {text:?} names no filter: write filter:NAME"
            )));
        }
        let route = Route::filter(name);
        Ok(match pattern {
            Some(p) => Route {
                pattern: Some(p.parse()?),
                ..route
            },
            None => route,
        })
    }
}

impl TryFrom<&str> for Route {
    type Error = MailboxError;

    fn try_from(text: &str) -> Result<Route, MailboxError> {
        text.parse()
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A name with white space is quoted, as `FromStr` reads it.
        let quoted = |name: &str| {
            if name.contains(char::is_whitespace) {
                format!("\"{name}\"")
            } else {
                name.to_owned()
            }
        };
        if let Some(source) = &self.source {
            write!(f, "source:{source}")?;
            if self.filter.is_none() && self.pattern.is_none() {
                return Ok(());
            }
            f.write_str(" ")?;
        }
        match (&self.filter, &self.pattern) {
            (Some(name), Some(p)) => write!(f, "filter:{} {p}", quoted(name)),
            (Some(name), None) => write!(f, "filter:{}", quoted(name)),
            (None, Some(p)) => write!(f, "{p}"),
            (None, None) => f.write_str("*"),
        }
    }
}

/// A pattern, route, mailbox or state name that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxError {
    message: String,
}

impl MailboxError {
    pub(crate) fn new(message: String) -> MailboxError {
        MailboxError { message }
    }
}

impl fmt::Display for MailboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&cmc_webhook_core::printable(&self.message, 1024))
    }
}

impl std::error::Error for MailboxError {}

/// A [`Route`] or [`Pattern`] given to
/// [`Mailboxes::route`](super::Mailboxes::route) converts without error.
impl From<std::convert::Infallible> for MailboxError {
    fn from(never: std::convert::Infallible) -> MailboxError {
        match never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_normalised_like_addresses() {
        let p: Pattern = " Support@Example.JP. ".parse().unwrap();
        assert_eq!(p.to_string(), "support@example.jp");
        assert!(p.matches("support@example.jp"));
        assert!(!p.matches("support+x@example.jp"));
        assert!(!p.matches("xsupport@example.jp"));
    }

    #[test]
    fn a_domain_pattern_takes_that_domain_only() {
        let p: Pattern = "*@Support.example.jp".parse().unwrap();
        assert!(p.matches("a@support.example.jp"));
        assert!(!p.matches("a@x.support.example.jp"));
        assert!(!p.matches("a@support.example.jp.evil"));
        assert!(!p.matches("support.example.jp"));
    }

    #[test]
    fn a_prefix_pattern_needs_its_prefix_and_domain() {
        let p: Pattern = "reply+*@example.jp".parse().unwrap();
        assert!(p.matches("reply+@example.jp"));
        assert!(p.matches("reply+abc@example.jp"));
        assert!(!p.matches("reply@example.jp"));
        assert!(!p.matches("reply+abc@other.jp"));
        // The last @ splits: a quoted local part may hold one.
        assert!(!p.matches("reply+x@example.jp\"@other.jp"));
    }

    #[test]
    fn bad_patterns_say_why() {
        for (text, why) in [
            ("", "not an address pattern"),
            ("support", "not an address pattern"),
            ("a@*.example.jp", "in its domain"),
            ("a*b@example.jp", "not at the end"),
            ("//", "empty regular expression"),
            ("/(/", "not a regular expression"),
        ] {
            let e = text.parse::<Pattern>().unwrap_err().to_string();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn regexes_ignore_case_and_are_not_anchored() {
        let p: Pattern = "/ORDER-[0-9]+@/".parse().unwrap();
        assert!(p.matches("x-order-1@example.jp"));
        assert!(!p.matches("order-x@example.jp"));
        assert_eq!(p.to_string(), "/ORDER-[0-9]+@/");
    }

    #[test]
    fn a_kelvin_sign_or_a_long_s_reaches_no_ascii_pattern() {
        let kelvin = normalize("\u{212A}im@example.jp").unwrap();
        let long_s = normalize("\u{17F}ales@example.jp").unwrap();
        for text in [
            "kim@example.jp",
            "k*@example.jp",
            "/^kim@/",
            "/^KIM@/",
            "/^[a-z]im@/",
            "/^[K]im@/",
            "/^[j-l]im@/",
        ] {
            let p: Pattern = text.parse().unwrap();
            assert!(!p.matches(&kelvin), "{text} took {kelvin:?}");
            assert!(p.matches("kim@example.jp"), "{text}");
        }
        for text in [
            "sales@example.jp",
            "/^sales@/",
            "/^SALES@/",
            "/^[r-t]ales@/",
        ] {
            let p: Pattern = text.parse().unwrap();
            assert!(!p.matches(&long_s), "{text} took {long_s:?}");
            assert!(p.matches("sales@example.jp"), "{text}");
        }
        // The sign is reached by what names it.
        let p: Pattern = "\u{212A}im@example.jp".parse().unwrap();
        assert!(p.matches(&kelvin) && !p.matches("kim@example.jp"));
        assert!(
            "/^\\x{212A}im@/"
                .parse::<Pattern>()
                .unwrap()
                .matches(&kelvin)
        );
        assert!("/(?i)^kim@/".parse::<Pattern>().unwrap().matches(&kelvin));
    }

    #[test]
    fn regexes_fold_ascii_case_in_literals_and_classes_only() {
        for (text, yes, no) in [
            ("/^Order-[0-9]+@/", "order-1@x.jp", "order-x@x.jp"),
            ("/^[A-C]x@/", "bx@x.jp", "dx@x.jp"),
            ("/^[^a-z]+@/", "123@x.jp", "abc@x.jp"),
            ("/^(?P<t>[A-Z]+)-\\d@/", "ab-1@x.jp", "ab-x@x.jp"),
            ("/^(a|B)c{2,}@/", "bcc@x.jp", "bc@x.jp"),
            ("/^\\p{Lu}@/", "\u{C4}@x.jp", "a@x.jp"),
            ("/^[^x]+@/", "ab@x.jp", "xb@x.jp"),
            ("/^[^X]+@/", "ab@x.jp", "xb@x.jp"),
            ("/^[[:alpha:]&&[^k]]+@/", "ab@x.jp", "kb@x.jp"),
            ("/^\\x61\\u{62}@/", "ab@x.jp", "ac@x.jp"),
            ("/例え/", "a@例え.jp", "a@xn--r8jz45g.jp"),
            ("/@xn--R8JZ45G\\.jp$/", "a@xn--r8jz45g.jp", "a@例え.jp"),
        ] {
            let p: Pattern = text.parse().unwrap();
            assert!(p.matches(yes), "{text} {yes}");
            assert!(!p.matches(no), "{text} {no}");
            assert_eq!(p.to_string(), text, "shown as written");
        }
    }

    #[test]
    fn idn_patterns_take_either_form() {
        let p: Pattern = "*@例え.JP".parse().unwrap();
        assert_eq!(p.to_string(), "*@xn--r8jz45g.jp");
        assert!(p.matches(&normalize("user@xn--r8jz45g.jp").unwrap()));
        assert!(p.matches(&normalize("user@例え.jp").unwrap()));
    }

    #[test]
    fn filter_routes_parse_and_match() {
        let r: Route = "filter: Docs ".parse().unwrap();
        assert!(r.matches("", "docs"));
        assert_eq!(r.to_string(), "filter:Docs");
        let both: Route = "filter:docs reply+*@example.jp".parse().unwrap();
        assert!(both.matches("reply+1@example.jp", "DOCS"));
        assert!(!both.matches("reply+1@example.jp", "other"));
        assert!(!both.matches("info@example.jp", "docs"));
        assert!("filter:".parse::<Route>().is_err());
        let spaced: Route = r#"filter:"Scan Desk" *@example.jp"#.parse().unwrap();
        assert!(spaced.matches("a@example.jp", "scan desk"));
        assert_eq!(spaced.to_string(), r#"filter:"Scan Desk" *@example.jp"#);
        assert_eq!(
            spaced.to_string().parse::<Route>().unwrap().to_string(),
            spaced.to_string()
        );
        assert!(r#"filter:"open"#.parse::<Route>().is_err());
        assert!("filter:docs nope".parse::<Route>().is_err());
    }
}
