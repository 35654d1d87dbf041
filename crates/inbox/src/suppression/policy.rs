//! The suppression policy as data, and the one function that applies an
//! event to a recipient's state. Pure: no clock, no store. The stores call
//! [`apply`] inside the transaction that marks the event done, once per
//! distinct event (their history table holds each event's key once).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use cmc_webhook_core::IdempotencyKey;

/// What a bounce code means for suppression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Class {
    /// The address does not work.
    Hard,
    /// The address may work later.
    Soft,
    /// CMC suppresses the address itself (code 10).
    CmcSuppressed,
    /// The recipient unsubscribed (code 11).
    Unsubscribed,
    /// A code this crate does not know: counted as soft, and apart.
    Unknown,
}

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum SuppressionReason {
    /// Hard bounces reached the threshold.
    Hard,
    /// Soft bounces reached the threshold within the window.
    Soft,
    /// CMC refused to send to the address (code 10).
    CmcSuppressed,
    /// The recipient unsubscribed (code 11).
    Unsubscribed,
    /// CMC's own list holds the address (a `blocks` record).
    CmcList,
    /// Added by hand.
    Manual,
}

impl SuppressionReason {
    /// The column value: `hard`, `soft`, `cmc_suppressed`, `unsubscribed`,
    /// `cmc_list`, `manual`.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::Hard => "hard",
            SuppressionReason::Soft => "soft",
            SuppressionReason::CmcSuppressed => "cmc_suppressed",
            SuppressionReason::Unsubscribed => "unsubscribed",
            SuppressionReason::CmcList => "cmc_list",
            SuppressionReason::Manual => "manual",
        }
    }

    /// Reads a column value.
    pub fn from_column(s: &str) -> Option<SuppressionReason> {
        [
            SuppressionReason::Hard,
            SuppressionReason::Soft,
            SuppressionReason::CmcSuppressed,
            SuppressionReason::Unsubscribed,
            SuppressionReason::CmcList,
            SuppressionReason::Manual,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// The rules: the class of each code, the thresholds, and how long each
/// kind of suppression lasts (`None`: until removed by hand).
///
/// # The classes of CMC's bounce codes (defaults)
///
/// | code | meaning | class | why |
/// |---|---|---|---|
/// | 1 | unknown host | hard | the domain does not resolve |
/// | 2 | unknown user | hard | the mailbox does not exist |
/// | 9 | address format error | hard | the address cannot work |
/// | 99 | other permanent error | hard | CMC calls it permanent |
/// | 3 | resend timeout | soft | CMC retried for its retry period; the host may come back |
/// | 4 | refused by policy | soft | often the message or the sending IP, not the address |
/// | 5 | mailbox full | soft | the owner may empty it |
/// | 6 | forwarding error | soft | a relay's problem |
/// | 7 | receiving server misconfigured | soft | may be fixed |
/// | 8 | message too large | soft | this message, not the address |
/// | 10 | address suppressed by CMC | CMC-suppressed | CMC will not send to it |
/// | 11 | unsubscribed | unsubscribed | the recipient asked; never expires by itself |
/// | other | a code this crate does not know | unknown | counted as soft, and counted apart |
///
/// # Thresholds (defaults, with Postal's for comparison)
///
/// | rule | here | Postal |
/// |---|---|---|
/// | hard bounces before suppression | 1 | 2 |
/// | soft bounces before suppression | 5 within 14 days | 18 |
/// | hard suppression lasts | 90 days | 30 days |
/// | soft suppression lasts | 7 days | 30 days |
/// | CMC-suppressed lasts | 30 days | |
/// | unsubscribed lasts | until removed by hand | |
///
/// CMC's codes are specific (a code 2 is a `5.1.1` reply that CMC read),
/// so one hard bounce is enough, where Postal, which reads raw SMTP
/// replies, waits for two. Soft bounces reach CMC's webhook only after
/// CMC's own retries have failed, so five of them in two weeks is strong
/// evidence; they expire after a week, when a full mailbox or a broken
/// server has usually been fixed. A `succeeded` delivery clears the soft
/// count and lifts a soft suppression: the address works.
///
/// Change any of them:
///
/// ```
/// use std::time::Duration;
/// use cmc_webhook_inbox::suppression::{Class, SuppressionPolicy, SuppressionReason};
///
/// let policy = SuppressionPolicy::default()
///     .hard_after(2) // as Postal
///     .soft_after(10, Duration::from_secs(30 * 86_400))
///     .with_class("4", Class::Hard) // policy refusals count as hard
///     .with_expiry(SuppressionReason::Hard, None); // hard suppressions never expire
/// assert_eq!(policy.class("4"), Class::Hard);
/// assert_eq!(policy.lasts(SuppressionReason::Hard), None);
/// assert_eq!(policy.lasts(SuppressionReason::Soft), Some(Duration::from_secs(7 * 86_400)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionPolicy {
    classes: BTreeMap<String, Class>,
    /// Hard bounces before the address is suppressed.
    pub(crate) hard_after: u32,
    /// Soft (and unknown) bounces within `soft_window` before the address
    /// is suppressed.
    pub(crate) soft_after: u32,
    /// The window soft bounces are counted in.
    pub(crate) soft_window: Duration,
    /// How long each reason lasts (`None`: until removed by hand).
    expiry: BTreeMap<SuppressionReason, Option<Duration>>,
    /// The zone `created` is read in (the CMC console's).
    pub(crate) time_zone: jiff::tz::TimeZone,
    /// The zones of named sources whose console differs, by name.
    source_zones: BTreeMap<String, jiff::tz::TimeZone>,
}

const DAY: u64 = 86_400;

impl Default for SuppressionPolicy {
    fn default() -> Self {
        let classes = [
            ("1", Class::Hard),
            ("2", Class::Hard),
            ("9", Class::Hard),
            ("99", Class::Hard),
            ("3", Class::Soft),
            ("4", Class::Soft),
            ("5", Class::Soft),
            ("6", Class::Soft),
            ("7", Class::Soft),
            ("8", Class::Soft),
            ("10", Class::CmcSuppressed),
            ("11", Class::Unsubscribed),
        ]
        .into_iter()
        .map(|(code, class)| (code.to_owned(), class))
        .collect();
        let days = |n: u64| Some(Duration::from_secs(n * DAY));
        SuppressionPolicy {
            classes,
            hard_after: 1,
            soft_after: 5,
            soft_window: Duration::from_secs(14 * DAY),
            expiry: [
                (SuppressionReason::Hard, days(90)),
                (SuppressionReason::Soft, days(7)),
                (SuppressionReason::CmcSuppressed, days(30)),
                (SuppressionReason::Unsubscribed, None),
                (SuppressionReason::CmcList, None),
                (SuppressionReason::Manual, None),
            ]
            .into_iter()
            .collect(),
            time_zone: cmc_webhook_core::default_time_zone(),
            source_zones: BTreeMap::new(),
        }
    }
}

impl SuppressionPolicy {
    /// The class of a bounce code (unknown codes: [`Class::Unknown`]). A
    /// number is read as a number: `" 02"` is code 2.
    pub fn class(&self, code: &str) -> Class {
        let code = code.trim();
        let number = code.parse::<u64>().map(|n| n.to_string());
        self.classes
            .get(number.as_deref().unwrap_or(code))
            .copied()
            .unwrap_or(Class::Unknown)
    }

    /// Suppresses after `n` hard bounces (1 by default: at once).
    pub fn hard_after(mut self, n: u32) -> SuppressionPolicy {
        self.hard_after = n.max(1);
        self
    }

    /// Suppresses after `n` soft (or unknown) bounces within `window` (5
    /// within 14 days by default).
    pub fn soft_after(mut self, n: u32, window: Duration) -> SuppressionPolicy {
        self.soft_after = n.max(1);
        self.soft_window = window;
        self
    }

    /// Reads CMC's `created` times in `tz`, the zone set in the CMC console
    /// ([`default_time_zone`](cmc_webhook_core::default_time_zone) unless set).
    pub fn time_zone(mut self, tz: jiff::tz::TimeZone) -> SuppressionPolicy {
        self.time_zone = tz;
        self
    }

    /// Reads the `created` times of the events of the source (CMC
    /// account) named `name` in `tz`, that account's console zone; the
    /// events of sources not named here are read in
    /// [`time_zone`](SuppressionPolicy::time_zone). The list itself is
    /// shared by every source: a recipient that bounced is the same
    /// recipient whichever account sent to it.
    ///
    /// ```
    /// use cmc_webhook_inbox::suppression::SuppressionPolicy;
    ///
    /// let policy = SuppressionPolicy::default()
    ///     .source_time_zone("us-brand", jiff::tz::TimeZone::get("America/New_York")?);
    /// # let _ = policy;
    /// # Ok::<(), jiff::Error>(())
    /// ```
    pub fn source_time_zone(
        mut self,
        name: impl Into<String>,
        tz: jiff::tz::TimeZone,
    ) -> SuppressionPolicy {
        self.source_zones.insert(name.into(), tz);
        self
    }

    /// The zone the `created` times of `source`'s events are read in.
    pub(crate) fn zone_of(&self, source: &str) -> &jiff::tz::TimeZone {
        self.source_zones.get(source).unwrap_or(&self.time_zone)
    }

    /// The same policy with `code` in `class`.
    pub fn with_class(mut self, code: impl Into<String>, class: Class) -> SuppressionPolicy {
        self.classes.insert(code.into(), class);
        self
    }

    /// How long a suppression for `reason` lasts (`None`: until removed).
    pub fn lasts(&self, reason: SuppressionReason) -> Option<Duration> {
        self.expiry.get(&reason).copied().flatten()
    }

    /// The same policy with suppressions for `reason` lasting `lasts`
    /// (`None`: until removed by hand).
    pub fn with_expiry(
        mut self,
        reason: SuppressionReason,
        lasts: Option<Duration>,
    ) -> SuppressionPolicy {
        self.expiry.insert(reason, lasts);
        self
    }
}

/// What a recipient's row holds: the counts, and the suppression if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    /// Hard bounces (a success does not clear them: a hard bounce says the
    /// address was gone; a removal by hand does).
    pub hard: u32,
    /// The times of the soft (and unknown) bounces within the window before
    /// the latest of them, oldest first, at most `soft_after` of them.
    pub soft: Vec<Timestamp>,
    /// Bounces with codes this crate does not know.
    pub unknown: u32,
    /// The suppression in force (or expired: see [`State::suppressed_at`]).
    pub suppression: Option<Suppressed>,
}

/// A suppression: why, since and until when, and the events behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppressed {
    /// Why.
    pub reason: SuppressionReason,
    /// Since when.
    pub since: Timestamp,
    /// Until when (`None`: until removed by hand).
    pub until: Option<Timestamp>,
    /// The events that caused it, by idempotency key (at most 16 kept).
    pub events: Vec<IdempotencyKey>,
    /// A note (for entries added or removed by hand, and CMC's list).
    pub note: Option<String>,
}

/// The most event keys an entry keeps.
const MAX_EVENTS: usize = 16;

impl State {
    /// The suppression in force at `now`, if any.
    #[cfg(test)]
    pub fn suppressed_at(&self, now: Timestamp) -> Option<&Suppressed> {
        self.suppression
            .as_ref()
            .filter(|s| s.until.is_none_or(|until| now < until))
    }
}

/// An event, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The event's idempotency key.
    pub key: IdempotencyKey,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    pub what: What,
}

/// What an event says about its recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A bounce with its code.
    Bounce(String),
    /// A delivery that succeeded.
    Succeeded,
    /// CMC's list added the address (`removed: false`) or removed it.
    CmcList {
        /// Whether the record says the address left CMC's list.
        removed: bool,
    },
}

/// Whether a `blocks` record's `status` says the address left the list.
/// The schema is not public: the words a removal is likely written with.
pub(crate) fn means_removed(status: &str) -> bool {
    let s = status.trim().to_ascii_lowercase();
    matches!(
        s.as_str(),
        "delete"
            | "deleted"
            | "remove"
            | "removed"
            | "released"
            | "release"
            | "unblock"
            | "unblocked"
    )
}

/// Applies one event to a recipient's state.
pub fn apply(state: &mut State, event: &Observed, policy: &SuppressionPolicy) {
    let suppress = |state: &mut State, reason: SuppressionReason, at: Timestamp| {
        // An expiry past the end of time is the end of time, not "never".
        let until = policy
            .lasts(reason)
            .map(|d| at.checked_add(d).unwrap_or(Timestamp::MAX));
        // A suppression that has run out by then counts as none.
        let active = state
            .suppression
            .as_ref()
            .filter(|s| s.until.is_none_or(|until| at < until));
        match active {
            // Already suppressed for the same reason: extended, its events
            // kept.
            Some(s) if s.reason == reason => {
                let s = state.suppression.as_mut().expect("active is Some");
                s.until = match (s.until, until) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                if s.events.len() < MAX_EVENTS && !s.events.contains(&event.key) {
                    s.events.push(event.key);
                }
            }
            // A stronger suppression in force is not replaced by a weaker
            // one (a suppression by hand, or the recipient's own wish).
            Some(s) if rank(s.reason) > rank(reason) => {}
            _ => {
                state.suppression = Some(Suppressed {
                    reason,
                    since: at,
                    until,
                    events: vec![event.key],
                    note: None,
                })
            }
        }
    };
    match &event.what {
        What::Bounce(code) => match policy.class(code) {
            Class::Hard => {
                state.hard = state.hard.saturating_add(1);
                if state.hard >= policy.hard_after.max(1) {
                    suppress(state, SuppressionReason::Hard, event.at);
                }
            }
            class @ (Class::Soft | Class::Unknown) => {
                if class == Class::Unknown {
                    state.unknown = state.unknown.saturating_add(1);
                }
                // The soft bounces within a window of the latest one,
                // sorted, the most recent `soft_after` of them.
                let at = state.soft.partition_point(|t| *t <= event.at);
                state.soft.insert(at, event.at);
                let latest = state.soft.last().copied().unwrap_or(event.at);
                let from = latest
                    .checked_sub(policy.soft_window)
                    .unwrap_or(Timestamp::MIN);
                state.soft.retain(|t| *t > from);
                let keep = policy.soft_after.max(1) as usize;
                if state.soft.len() > keep {
                    let extra = state.soft.len() - keep;
                    state.soft.drain(..extra);
                }
                if state.soft.len() >= keep {
                    suppress(state, SuppressionReason::Soft, latest);
                }
            }
            Class::CmcSuppressed => suppress(state, SuppressionReason::CmcSuppressed, event.at),
            Class::Unsubscribed => suppress(state, SuppressionReason::Unsubscribed, event.at),
        },
        // A success says the address worked then: the soft bounces before
        // it no longer count, and a soft suppression from before it is
        // lifted. (Events may be applied out of order: a late success does
        // not erase later bounces.)
        What::Succeeded => {
            state.soft.retain(|t| *t > event.at);
            if state
                .suppression
                .as_ref()
                .is_some_and(|s| s.reason == SuppressionReason::Soft && s.since <= event.at)
            {
                state.suppression = None;
            }
        }
        What::CmcList { removed: false } => suppress(state, SuppressionReason::CmcList, event.at),
        What::CmcList { removed: true } => {
            if state
                .suppression
                .as_ref()
                .is_some_and(|s| s.reason == SuppressionReason::CmcList)
            {
                state.suppression = None;
            }
        }
    }
}

impl State {
    /// One state for two rows that turn out to be one recipient (their
    /// addresses have one normal form): the counts add up, the soft
    /// bounces are kept in order (as many as the longer list held), and
    /// the stronger suppression stays; of two equally strong, the one
    /// that lasts longer (`None`: until removed by hand).
    pub(crate) fn merge(self, other: State) -> State {
        let keep = self.soft.len().max(other.soft.len());
        let mut soft: Vec<Timestamp> = self.soft.into_iter().chain(other.soft).collect();
        soft.sort();
        let soft = soft.split_off(soft.len() - keep);
        let suppression = match (self.suppression, other.suppression) {
            (Some(a), Some(b)) => {
                let lasts = |s: &Suppressed| s.until.unwrap_or(Timestamp::MAX);
                if (rank(a.reason), lasts(&a)) >= (rank(b.reason), lasts(&b)) {
                    Some(a)
                } else {
                    Some(b)
                }
            }
            (a, b) => a.or(b),
        };
        State {
            hard: self.hard.saturating_add(other.hard),
            soft,
            unknown: self.unknown.saturating_add(other.unknown),
            suppression,
        }
    }
}

/// Which suppression wins when two apply: the stronger stays.
/// CMC's list ranks below a hard suppression: a `blocks` removal must not
/// lift what a hard bounce said.
fn rank(reason: SuppressionReason) -> u8 {
    match reason {
        SuppressionReason::Soft => 0,
        SuppressionReason::CmcSuppressed => 1,
        SuppressionReason::CmcList => 2,
        SuppressionReason::Hard => 3,
        SuppressionReason::Unsubscribed => 4,
        SuppressionReason::Manual => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn key(n: u8) -> IdempotencyKey {
        format!("{n:032x}").parse().unwrap()
    }

    fn bounce(n: u8, at: &str, code: &str) -> Observed {
        Observed {
            key: key(n),
            at: t(at),
            what: What::Bounce(code.into()),
        }
    }

    fn run(events: &[Observed], policy: &SuppressionPolicy) -> State {
        let mut state = State::default();
        for e in events {
            apply(&mut state, e, policy);
        }
        state
    }

    #[test]
    fn the_table_of_codes() {
        let p = SuppressionPolicy::default();
        for (code, class) in [
            ("1", Class::Hard),
            ("2", Class::Hard),
            ("3", Class::Soft),
            ("4", Class::Soft),
            ("5", Class::Soft),
            ("6", Class::Soft),
            ("7", Class::Soft),
            ("8", Class::Soft),
            ("9", Class::Hard),
            ("10", Class::CmcSuppressed),
            ("11", Class::Unsubscribed),
            ("99", Class::Hard),
            ("42", Class::Unknown),
            ("", Class::Unknown),
            (" 02", Class::Hard),
        ] {
            assert_eq!(p.class(code), class, "{code}");
        }
        assert_eq!(p.with_class("4", Class::Hard).class("4"), Class::Hard);
    }

    #[test]
    fn one_hard_bounce_suppresses_for_ninety_days() {
        let s = run(
            &[bounce(1, "2026-01-01T00:00:00Z", "2")],
            &SuppressionPolicy::default(),
        );
        let sup = s.suppressed_at(t("2026-01-02T00:00:00Z")).unwrap();
        assert_eq!(sup.reason, SuppressionReason::Hard);
        assert_eq!(sup.until, Some(t("2026-04-01T00:00:00Z")));
        assert_eq!(sup.events, [key(1)]);
        assert!(s.suppressed_at(t("2026-04-01T00:00:00Z")).is_none());
        // Two, when the policy says so.
        let two = SuppressionPolicy {
            hard_after: 2,
            ..SuppressionPolicy::default()
        };
        let s = run(&[bounce(1, "2026-01-01T00:00:00Z", "1")], &two);
        assert!(s.suppression.is_none());
    }

    #[test]
    fn soft_bounces_count_within_the_window_only() {
        let p = SuppressionPolicy::default();
        let inside: Vec<Observed> = (0..5)
            .map(|i| bounce(i, &format!("2026-01-0{}T00:00:00Z", i + 1), "5"))
            .collect();
        let s = run(&inside, &p);
        let sup = s.suppressed_at(t("2026-01-06T00:00:00Z")).unwrap();
        assert_eq!(
            (sup.reason, sup.until),
            (SuppressionReason::Soft, Some(t("2026-01-12T00:00:00Z")))
        );
        // Five spread over more than the window: never five within it.
        let spread: Vec<Observed> = (0..5)
            .map(|i| bounce(i, &format!("2026-{:02}-01T00:00:00Z", i + 1), "3"))
            .collect();
        let s = run(&spread, &p);
        assert!(s.suppression.is_none());
        assert_eq!(s.soft.len(), 1);
    }

    #[test]
    fn a_success_clears_the_soft_count_and_lifts_a_soft_suppression() {
        let p = SuppressionPolicy::default();
        let mut events: Vec<Observed> = (0..4)
            .map(|i| bounce(i, &format!("2026-01-0{}T00:00:00Z", i + 1), "5"))
            .collect();
        events.push(Observed {
            key: key(9),
            at: t("2026-01-05T00:00:00Z"),
            what: What::Succeeded,
        });
        events.push(bounce(10, "2026-01-06T00:00:00Z", "5"));
        let s = run(&events, &p);
        assert_eq!(s.soft.len(), 1);
        assert!(s.suppression.is_none());
        // A hard suppression stays.
        let s = run(
            &[
                bounce(1, "2026-01-01T00:00:00Z", "2"),
                Observed {
                    key: key(2),
                    at: t("2026-01-02T00:00:00Z"),
                    what: What::Succeeded,
                },
            ],
            &p,
        );
        assert_eq!(s.suppression.unwrap().reason, SuppressionReason::Hard);
    }

    #[test]
    fn unsubscribed_never_expires_and_is_not_weakened() {
        let p = SuppressionPolicy::default();
        let s = run(
            &[
                bounce(1, "2026-01-01T00:00:00Z", "11"),
                bounce(2, "2026-01-02T00:00:00Z", "2"),
            ],
            &p,
        );
        let sup = s.suppressed_at(t("2099-01-01T00:00:00Z")).unwrap();
        assert_eq!(
            (sup.reason, sup.until),
            (SuppressionReason::Unsubscribed, None)
        );
        assert_eq!(s.hard, 1);
    }

    #[test]
    fn cmc_suppressed_unknown_codes_and_cmc_list() {
        let p = SuppressionPolicy::default();
        let s = run(&[bounce(1, "2026-01-01T00:00:00Z", "10")], &p);
        assert_eq!(
            s.suppression.unwrap().reason,
            SuppressionReason::CmcSuppressed
        );
        let s = run(&[bounce(1, "2026-01-01T00:00:00Z", "77")], &p);
        assert_eq!((s.unknown, s.soft.len()), (1, 1));
        assert!(s.suppression.is_none());
        let listed = Observed {
            key: key(1),
            at: t("2026-01-01T00:00:00Z"),
            what: What::CmcList { removed: false },
        };
        let unlisted = Observed {
            key: key(2),
            at: t("2026-01-02T00:00:00Z"),
            what: What::CmcList { removed: true },
        };
        let s = run(std::slice::from_ref(&listed), &p);
        assert_eq!(s.suppression.as_ref().unwrap().until, None);
        assert!(run(&[listed, unlisted], &p).suppression.is_none());
        assert!(means_removed(" Deleted ") && !means_removed("add"));
    }

    fn success(n: u8, at: &str) -> Observed {
        Observed {
            key: key(n),
            at: t(at),
            what: What::Succeeded,
        }
    }

    #[test]
    fn an_expired_suppression_counts_as_none() {
        let p = SuppressionPolicy::default();
        // Hard on day 0 (90 days), then five soft bounces on days 100-104.
        let mut events = vec![bounce(1, "2026-01-01T00:00:00Z", "2")];
        events.extend(
            (0..5).map(|i| bounce(10 + i, &format!("2026-04-{:02}T00:00:00Z", 11 + i), "5")),
        );
        let s = run(&events, &p);
        assert_eq!(
            s.suppression.as_ref().unwrap().reason,
            SuppressionReason::Soft
        );
        assert!(s.suppressed_at(t("2026-04-16T00:00:00Z")).is_some());
        // Unsubscribed, an expired weaker entry in between: unsubscribed again.
        let mut state = State {
            suppression: Some(Suppressed {
                reason: SuppressionReason::Manual,
                since: t("2026-01-01T00:00:00Z"),
                until: Some(t("2026-01-02T00:00:00Z")),
                events: vec![],
                note: None,
            }),
            ..State::default()
        };
        apply(&mut state, &bounce(2, "2026-01-03T00:00:00Z", "11"), &p);
        assert_eq!(
            state.suppression.unwrap().reason,
            SuppressionReason::Unsubscribed
        );
    }

    #[test]
    fn a_late_success_does_not_erase_later_bounces() {
        let p = SuppressionPolicy::default();
        let mut events: Vec<Observed> = (0..4)
            .map(|i| bounce(i, &format!("2026-01-{:02}T00:00:00Z", 10 + i), "5"))
            .collect();
        events.push(success(9, "2026-01-01T00:00:00Z"));
        events.push(bounce(20, "2026-01-14T00:00:00Z", "5"));
        let s = run(&events, &p);
        assert_eq!(s.suppression.unwrap().reason, SuppressionReason::Soft);
    }

    #[test]
    fn a_cmc_list_removal_does_not_lift_a_hard_suppression() {
        let p = SuppressionPolicy::default();
        let list = |n: u8, at: &str, removed: bool| Observed {
            key: key(n),
            at: t(at),
            what: What::CmcList { removed },
        };
        let s = run(
            &[
                bounce(1, "2026-01-01T00:00:00Z", "2"),
                list(2, "2026-01-02T00:00:00Z", false),
                list(3, "2026-01-03T00:00:00Z", true),
            ],
            &p,
        );
        assert_eq!(
            s.suppressed_at(t("2026-01-04T00:00:00Z")).unwrap().reason,
            SuppressionReason::Hard
        );
    }

    #[test]
    fn an_expiry_past_the_end_of_time_is_the_end_of_time() {
        let s = run(
            &[bounce(1, "9999-12-30T00:00:00Z", "2")],
            &SuppressionPolicy::default(),
        );
        assert_eq!(s.suppression.unwrap().until, Some(Timestamp::MAX));
    }

    use proptest::prelude::*;

    fn any_event() -> impl Strategy<Value = Observed> {
        let what = prop_oneof![
            4 => prop::sample::select(vec!["1", "2", "3", "4", "5", "8", "10", "11", "77"])
                .prop_map(|c| What::Bounce(c.to_owned())),
            1 => Just(What::Succeeded),
            1 => any::<bool>().prop_map(|removed| What::CmcList { removed }),
        ];
        (any::<u8>(), 0i64..120 * DAY as i64, what).prop_map(|(n, secs, what)| Observed {
            key: key(n),
            at: Timestamp::from_second(1_767_225_600 + secs).unwrap(),
            what,
        })
    }

    proptest! {
        /// Whatever the sequence, the state stays bounded and consistent.
        #[test]
        fn the_state_stays_bounded(events in prop::collection::vec(any_event(), 0..200),
                                   soft_after in 1u32..8) {
            let policy = SuppressionPolicy { soft_after, ..SuppressionPolicy::default() };
            let s = run(&events, &policy);
            prop_assert!(s.soft.len() <= soft_after as usize);
            prop_assert!(s.soft.windows(2).all(|w| w[0] <= w[1]));
            if let Some(sup) = &s.suppression {
                prop_assert!(sup.events.len() <= MAX_EVENTS);
                prop_assert!(sup.until.is_none_or(|u| u > sup.since));
            }
            // The same sequence gives the same state.
            prop_assert_eq!(run(&events, &policy), s);
        }
    }
}
