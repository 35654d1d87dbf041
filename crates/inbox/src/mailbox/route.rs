//! Routing one mail: its envelope recipients, each routed on its own, and
//! grouped by the mailbox they reach.

use std::collections::HashSet;

use super::pattern::Route;
use crate::store::{Routed, Router};
use crate::suppression::normalize;

/// The mailboxes' routing table, without their handlers: what a worker's
/// round routes the due mails with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Routing<'a> {
    pub routes: &'a [(Route, usize)],
    pub fallback: Option<usize>,
}

impl Router for Routing<'_> {
    fn route(&self, envelope_to: &str, filter: &str, source: &str) -> Vec<Routed> {
        route(self.routes, self.fallback, envelope_to, filter, source)
    }
}

/// The envelope recipients of a mail: `envelope-to` split at commas,
/// semicolons and white space outside double quotes (`"john doe"@x` is
/// one address), each without its angle brackets, normalised when it is an
/// address (lower-cased and trimmed as [`normalize`] does; kept as
/// written, trimmed, otherwise), each once, in the order they came. Linear
/// in the length of `envelope_to`.
pub(crate) fn recipients(envelope_to: &str) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    let mut push = |piece: &str| {
        let r = piece.trim();
        let r = r
            .strip_prefix('<')
            .and_then(|r| r.strip_suffix('>'))
            .unwrap_or(r);
        if !r.is_empty() {
            all.push(normalize(r).unwrap_or_else(|| r.to_owned()));
        }
    };
    for (i, c) in envelope_to.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && (c == ',' || c == ';' || c.is_whitespace()) {
            push(&envelope_to[start..i]);
            start = i + c.len_utf8();
        }
    }
    push(&envelope_to[start..]);
    // Each once: the first of each, in order.
    let keep: Vec<bool> = {
        let mut seen = HashSet::with_capacity(all.len());
        all.iter().map(|r| seen.insert(r.as_str())).collect()
    };
    all.into_iter()
        .zip(keep)
        .filter_map(|(r, keep)| keep.then_some(r))
        .collect()
}

/// Routes each recipient of a mail from `source`: the first route (in
/// `routes`' order) that matches it wins, then the fallback. Recipients that reach the
/// same mailbox are grouped, in the order the mailboxes were first
/// reached; the unrouted ones come last. A mail without a recipient is
/// routed once, as the empty address (so that `filter` routes and the
/// fallback still take it).
pub(crate) fn route(
    routes: &[(Route, usize)],
    fallback: Option<usize>,
    envelope_to: &str,
    filter: &str,
    source: &str,
) -> Vec<Routed> {
    let recipients = recipients(envelope_to);
    let mut out: Vec<Routed> = Vec::new();
    let mut place = |mailbox: Option<usize>, route: Option<String>, recipient: Option<&str>| {
        let group = match out.iter_mut().find(|g| g.mailbox == mailbox) {
            Some(group) => group,
            None => {
                out.push(Routed {
                    mailbox,
                    route,
                    recipients: Vec::new(),
                });
                out.last_mut().expect("just pushed")
            }
        };
        if let Some(r) = recipient {
            group.recipients.push(r.to_owned());
        }
    };
    let one = |recipient: &str| -> (Option<usize>, Option<String>) {
        match routes
            .iter()
            .find(|(r, _)| r.matches_from(recipient, filter, source))
        {
            Some((r, mailbox)) => (Some(*mailbox), Some(r.to_string())),
            None => (fallback, fallback.map(|_| "*".to_owned())),
        }
    };
    if recipients.is_empty() {
        let (mailbox, route) = one("");
        place(mailbox, route, None);
    }
    for recipient in &recipients {
        let (mailbox, route) = one(recipient);
        place(mailbox, route, Some(recipient));
    }
    // Unrouted last.
    out.sort_by_key(|g| g.mailbox.is_none());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(list: &[(&str, usize)]) -> Vec<(Route, usize)> {
        list.iter().map(|(r, m)| (r.parse().unwrap(), *m)).collect()
    }

    #[test]
    fn recipients_are_split_normalised_and_distinct() {
        assert_eq!(
            recipients(" <Info@Example.JP>, sales@example.jp;info@example.jp\tx "),
            ["info@example.jp", "sales@example.jp", "x"]
        );
        assert!(recipients(" , ;").is_empty());
        // Quoted local parts keep their spaces, commas and escaped quotes.
        assert_eq!(
            recipients(r#""john doe"@example.jp, "a,\"b"@example.jp x@y.jp"#),
            [
                r#""john doe"@example.jp"#,
                r#""a,\"b"@example.jp"#,
                "x@y.jp"
            ]
        );
    }

    #[test]
    fn the_first_matching_route_wins() {
        let table = routes(&[("support@example.jp", 0), ("*@example.jp", 1)]);
        let got = route(&table, None, "Support@example.jp", "f", "default");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].mailbox, Some(0));
        let got = route(&table, None, "other@example.jp", "f", "default");
        assert_eq!(got[0].mailbox, Some(1));
        assert_eq!(got[0].route.as_deref(), Some("*@example.jp"));
    }

    #[test]
    fn each_recipient_is_routed_and_grouped_by_mailbox() {
        let table = routes(&[("*@support.example.jp", 0), ("*@billing.example.jp", 1)]);
        let got = route(
            &table,
            None,
            "a@billing.example.jp, b@support.example.jp, c@nowhere.jp, d@billing.example.jp",
            "f",
            "default",
        );
        assert_eq!(
            got,
            [
                Routed {
                    mailbox: Some(1),
                    route: Some("*@billing.example.jp".into()),
                    recipients: vec!["a@billing.example.jp".into(), "d@billing.example.jp".into()]
                },
                Routed {
                    mailbox: Some(0),
                    route: Some("*@support.example.jp".into()),
                    recipients: vec!["b@support.example.jp".into()]
                },
                Routed {
                    mailbox: None,
                    route: None,
                    recipients: vec!["c@nowhere.jp".into()]
                },
            ]
        );
    }

    #[test]
    fn a_route_of_a_source_takes_that_sources_mails_only() {
        let table = routes(&[("source:sandbox *@example.jp", 0), ("source:prod", 1)]);
        assert_eq!(
            route(&table, None, "a@example.jp", "f", "sandbox")[0].mailbox,
            Some(0)
        );
        assert_eq!(
            route(&table, None, "a@example.jp", "f", "prod")[0].mailbox,
            Some(1)
        );
        assert_eq!(
            route(&table, Some(2), "a@example.jp", "f", "default")[0].mailbox,
            Some(2)
        );
        // Written back as read.
        assert_eq!(table[0].0.to_string(), "source:sandbox *@example.jp");
        assert_eq!(table[1].0.to_string(), "source:prod");
        let with_filter: Route = "source:a filter:docs".parse().unwrap();
        assert_eq!(with_filter.to_string(), "source:a filter:docs");
        assert!("source:".parse::<Route>().is_err());
        assert!("source:a source:b".parse::<Route>().is_err());
    }

    #[test]
    fn a_mail_without_recipients_still_reaches_filter_routes_and_the_fallback() {
        let table = routes(&[("filter:docs", 0)]);
        assert_eq!(
            route(&table, Some(1), "", "docs", "default")[0].mailbox,
            Some(0)
        );
        assert_eq!(
            route(&table, Some(1), "", "other", "default")[0].mailbox,
            Some(1)
        );
        let none = route(&table, None, "", "other", "default");
        assert_eq!(none[0].mailbox, None);
        assert!(none[0].recipients.is_empty());
    }
}
