//! What a route matches: a [`Pattern`] on the envelope recipient, CMC's
//! `filter`, or both ([`Route`]).

use std::fmt;
use std::str::FromStr;

use crate::inbox::suppression::normalize;

/// An address pattern, matched against a normalised envelope recipient
/// (trimmed and lower-cased, as [`normalize`] makes it).
///
/// | written | matches |
/// |---|---|
/// | `support@example.jp` | that address only (not `support+x@example.jp`) |
/// | `*@support.example.jp` | every address at that domain (not its subdomains) |
/// | `reply+*@example.jp` | every address at that domain whose local part starts with `reply+` |
/// | `/^order-[0-9]+@/` | every address the regular expression finds a match in |
///
/// Addresses and patterns are compared lower-cased: `Support@Example.JP`
/// is the pattern `support@example.jp`. A regular expression (between
/// slashes, [`regex`](https://docs.rs/regex) syntax) matches
/// case-insensitively and is not anchored: write `^` and `$` to match the
/// whole address. It runs in time linear in the address, whatever it is.
///
/// ```
/// use cmc_webhook::inbox::mailbox::Pattern;
///
/// let reply: Pattern = "Reply+*@Example.JP".parse()?;
/// assert!(reply.matches("reply+4711@example.jp"));
/// assert!(!reply.matches("reply@example.jp"));
/// assert_eq!(reply.to_string(), "reply+*@example.jp");
///
/// let orders: Pattern = "/^order-[0-9]+@shop\\.example\\.jp$/".parse()?;
/// assert!(orders.matches("order-12@shop.example.jp"));
/// assert!("not an address".parse::<Pattern>().is_err());
/// # Ok::<(), cmc_webhook::inbox::mailbox::MailboxError>(())
/// ```
#[derive(Clone)]
pub struct Pattern {
    matcher: Matcher,
}

#[derive(Clone)]
enum Matcher {
    Exact(String),
    Domain(String),
    Prefix { local: String, domain: String },
    Regex(regex::Regex),
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
            Matcher::Regex(re) => re.is_match(recipient),
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
            let re = regex::RegexBuilder::new(expression)
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| {
                    // The regex crate's message spans lines (a caret under
                    // the spot): one line here.
                    let one_line = e
                        .to_string()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ");
                    bad(&format!("is not a regular expression: {one_line}"))
                })?;
            return Ok(Pattern {
                matcher: Matcher::Regex(re),
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

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.matcher {
            Matcher::Exact(address) => f.write_str(address),
            Matcher::Domain(domain) => write!(f, "*@{domain}"),
            Matcher::Prefix { local, domain } => write!(f, "{local}*@{domain}"),
            Matcher::Regex(re) => write!(f, "/{}/", re.as_str()),
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
/// through, or both (then both must match).
///
/// Written as text (what [`Mailboxes::route`](super::Mailboxes::route) and
/// the receiver's `--mailbox` take): a pattern, `filter:NAME`, or
/// `filter:NAME pattern`. A filter compares equal ignoring ASCII case and
/// the white space around it.
///
/// ```
/// use cmc_webhook::inbox::mailbox::Route;
///
/// let docs: Route = "filter:documents".parse()?;
/// assert!(docs.matches("anyone@example.jp", "Documents"));
///
/// let both: Route = "filter:documents *@scan.example.jp".parse()?;
/// assert!(both.matches("a@scan.example.jp", "documents"));
/// assert!(!both.matches("a@example.jp", "documents"));
/// # Ok::<(), cmc_webhook::inbox::mailbox::MailboxError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Route {
    pattern: Option<Pattern>,
    filter: Option<String>,
}

impl Route {
    /// Mails whose recipient matches `pattern`.
    pub fn to(pattern: Pattern) -> Route {
        Route {
            pattern: Some(pattern),
            filter: None,
        }
    }

    /// Mails that came through the CMC inbound rule `name`, whatever their
    /// recipients.
    pub fn filter(name: impl Into<String>) -> Route {
        Route {
            pattern: None,
            filter: Some(name.into().trim().to_owned()),
        }
    }

    /// This route, for mails of the CMC inbound rule `name` only.
    pub fn and_filter(mut self, name: impl Into<String>) -> Route {
        self.filter = Some(name.into().trim().to_owned());
        self
    }

    /// Whether a mail that came through `filter` matches for the
    /// normalised `recipient`.
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
        f.write_str(&crate::text::printable(&self.message, 1024))
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
