//! [`Inbox::reparse`]: the kept requests read again with the current
//! parser, what differs reported, and what is new added.

use std::net::IpAddr;

use cmc_webhook_core::{IdempotencyKey, Limits, Webhook};

use super::types::{RawOutcome, RawRequest};
use crate::error::InboxError;
use crate::inbox::Inbox;
use crate::job::Kind;
use crate::rows::{Arrival, RawRef};

/// What [`Inbox::reparse`] reads and whether it writes: a dry run of
/// every kept request by default.
///
/// ```
/// use cmc_webhook_inbox::Reparse;
///
/// let dry = Reparse::dry_run();
/// let apply = Reparse::apply().ids([12, 13]);
/// # let _ = (dry, apply);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Reparse {
    apply: bool,
    ids: Option<Vec<i64>>,
    after: i64,
    limits: Limits,
}

impl Reparse {
    /// Reports what differs; writes nothing.
    pub fn dry_run() -> Reparse {
        Reparse::default()
    }

    /// Reports what differs and adds the rows that are new.
    pub fn apply() -> Reparse {
        Reparse {
            apply: true,
            ..Reparse::default()
        }
    }

    /// Only these requests (by [`RawRequest::id`]).
    pub fn ids(mut self, ids: impl IntoIterator<Item = i64>) -> Reparse {
        self.ids = Some(ids.into_iter().collect());
        self
    }

    /// Only the requests with an id above `id`.
    pub fn after(mut self, id: i64) -> Reparse {
        self.after = id;
        self
    }

    /// The caps on what one body may hold when it is read again (the
    /// [defaults](Limits::default) otherwise; give the receiver's own if
    /// it raised them).
    pub fn limits(mut self, limits: Limits) -> Reparse {
        self.limits = limits;
        self
    }

    /// Whether it adds rows.
    pub fn is_applied(&self) -> bool {
        self.apply
    }
}

/// What [`Inbox::reparse`] found, over all the requests it read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReparseReport {
    /// Whether rows were added (not a dry run).
    pub applied: bool,
    /// The requests read.
    pub read: u64,
    /// The requests in which something differs, or that do not parse:
    /// those with nothing new are left out.
    pub requests: Vec<Reparsed>,
    /// The events and mails the current parser reads that no row holds.
    pub new: u64,
    /// The rows added (applied; fewer than `new` when another request
    /// stored the same key meanwhile).
    pub added: u64,
    /// The rows whose stored JSON differs from what the parser reads now
    /// (reported, never changed).
    pub changed: u64,
    /// The requests that do not parse (or do not read back).
    pub failed: u64,
}

/// One request of a [`ReparseReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reparsed {
    /// The raw request.
    pub id: i64,
    /// What it was answered when it arrived.
    pub outcome: RawOutcome,
    /// Why it does not parse now, or does not read back.
    pub error: Option<String>,
    /// The events and mails it holds that no row holds.
    pub new: Vec<(Kind, IdempotencyKey)>,
    /// Its rows stored already whose JSON differs.
    pub changed: Vec<Changed>,
    /// Its rows stored already and equal.
    pub unchanged: usize,
    /// The rows added.
    pub added: usize,
}

/// A row stored already that the current parser reads differently: only
/// reported (a row that was handled is never changed).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Changed {
    /// The row.
    pub kind: Kind,
    /// Its id.
    pub id: i64,
    /// Its idempotency key.
    pub key: IdempotencyKey,
    /// The members of its JSON that differ (added, removed or changed).
    pub fields: Vec<String>,
}

/// How many requests are listed at a time.
const PAGE: i64 = 100;

impl Inbox {
    /// Reads the kept requests again with the current parser, and reports
    /// per request what differs from the rows stored: events and mails no
    /// row holds (new), and rows whose JSON differs (changed). Applied
    /// ([`Reparse::apply`]), it adds the new rows, pointing to their raw
    /// request, with the request's arrival time and client, for the
    /// workers to handle; a key stored already is never stored again, and
    /// a changed row is only reported, never changed. Running it again
    /// adds nothing more.
    ///
    /// Refused requests are read too: a body refused by an older parser
    /// that the current one reads adds its rows.
    ///
    /// ```
    /// # async fn f(inbox: cmc_webhook_inbox::Inbox) -> Result<(), cmc_webhook_inbox::InboxError> {
    /// use cmc_webhook_inbox::Reparse;
    ///
    /// let dry = inbox.reparse(&Reparse::dry_run()).await?;
    /// println!("{} new, {} changed", dry.new, dry.changed);
    /// if dry.new > 0 {
    ///     let applied = inbox.reparse(&Reparse::apply()).await?;
    ///     println!("{} rows added", applied.added);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn reparse(&self, options: &Reparse) -> Result<ReparseReport, InboxError> {
        let mut report = ReparseReport {
            applied: options.apply,
            ..ReparseReport::default()
        };
        let mut after = options.after;
        loop {
            let rows = self
                .inner
                .store
                .raw_list(after, PAGE, options.ids.as_deref())
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.id;
            for row in rows {
                report.read += 1;
                let one = self.reparse_one(&row, options).await?;
                report.new += one.new.len() as u64;
                report.changed += one.changed.len() as u64;
                report.added += one.added as u64;
                report.failed += u64::from(one.error.is_some());
                if one.error.is_some() || !one.new.is_empty() || !one.changed.is_empty() {
                    report.requests.push(one);
                }
            }
        }
        if report.added > 0 {
            self.wake();
        }
        Ok(report)
    }

    async fn reparse_one(
        &self,
        row: &RawRequest,
        options: &Reparse,
    ) -> Result<Reparsed, InboxError> {
        let mut out = Reparsed {
            id: row.id,
            outcome: row.outcome,
            error: None,
            new: Vec::new(),
            changed: Vec::new(),
            unchanged: 0,
            added: 0,
        };
        let body = match self.read_raw_body(row).await {
            Ok(body) => body,
            Err(e) if e.kind() == crate::InboxErrorKind::Database => return Err(e),
            Err(e) => {
                out.error = Some(e.to_string());
                return Ok(out);
            }
        };
        let webhook = match Webhook::parse_with_limits(&row.content_type, body, options.limits) {
            Ok(webhook) => webhook,
            Err(e) => {
                out.error = Some(format!("does not parse: {e}"));
                return Ok(out);
            }
        };
        let client: Option<IpAddr> = row.client.as_deref().and_then(|c| c.parse().ok());
        // A refused body the layer had not decided a source for is
        // read as the default source's.
        let source = row
            .source
            .as_deref()
            .unwrap_or(cmc_webhook_core::source::DEFAULT_SOURCE);
        let mut arrival = Arrival::new(source, webhook, client, row.received_at)?;
        let store = &self.inner.store;
        let mut new_events = Vec::new();
        for e in std::mem::take(&mut arrival.events) {
            match store.existing(Kind::Event, &e.key).await? {
                None => {
                    out.new.push((Kind::Event, crate::rows::parse_key(&e.key)?));
                    new_events.push(e);
                }
                Some((id, json)) => compare(&mut out, Kind::Event, id, &e.key, &json, &e.json)?,
            }
        }
        arrival.events = new_events;
        if let Some(m) = arrival.mail.take() {
            match store.existing(Kind::Mail, &m.key).await? {
                None => {
                    out.new.push((Kind::Mail, crate::rows::parse_key(&m.key)?));
                    arrival.mail = Some(m);
                }
                Some((id, json)) => compare(&mut out, Kind::Mail, id, &m.key, &json, &m.json)?,
            }
        }
        if options.apply && arrival.rows() > 0 {
            arrival.raw = RawRef::Existing(row.id);
            let receipt = store.insert(&[&arrival]).await?.remove(0);
            out.added = receipt.stored;
            if out.added > 0 {
                // The rows are the request's hour's, which may be closed
                // and its events per hour kept: counted again at the next
                // read.
                let hour = row
                    .received_at
                    .as_millisecond()
                    .div_euclid(crate::browse::types::HOUR_MS);
                store.forget_hours(&[hour]).await?;
            }
        }
        Ok(out)
    }
}

/// Records row `id` as changed when its stored JSON differs from `now`.
fn compare(
    out: &mut Reparsed,
    kind: Kind,
    id: i64,
    key: &str,
    stored: &str,
    now: &str,
) -> Result<(), InboxError> {
    if stored == now {
        out.unchanged += 1;
        return Ok(());
    }
    let stored: serde_json::Value = serde_json::from_str(stored).unwrap_or_default();
    let now: serde_json::Value = serde_json::from_str(now).unwrap_or_default();
    let fields = differing(&stored, &now, "");
    if fields.is_empty() {
        out.unchanged += 1;
    } else {
        out.changed.push(Changed {
            kind,
            id,
            key: crate::rows::parse_key(key)?,
            fields,
        });
    }
    Ok(())
}

/// The paths of the members that differ between two JSON values, objects
/// compared member by member.
fn differing(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> Vec<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .flat_map(|k| {
                    let path = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    match (a.get(k), b.get(k)) {
                        (Some(x), Some(y)) => differing(x, y, &path),
                        _ => vec![path],
                    }
                })
                .collect()
        }
        _ if a == b => Vec::new(),
        _ => vec![if path.is_empty() {
            "(all)".to_owned()
        } else {
            path.to_owned()
        }],
    }
}
