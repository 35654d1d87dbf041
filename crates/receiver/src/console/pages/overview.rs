//! `GET /`: rows per state, events per hour as bar charts drawn on the
//! server (with a table of the same numbers), bounces by class, and the
//! relays' state.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use cmc_webhook_core::BounceStatus;
use cmc_webhook_inbox::browse::{HourCount, RowQuery, RowStates};
use cmc_webhook_inbox::mailbox::DeliveryState;
use cmc_webhook_inbox::{Kind, StateCounts};

use crate::console::state::{Console, Layout};
use crate::console::{auth, html};

/// One table's row of counts.
#[derive(Debug)]
pub struct StateRow {
    name: &'static str,
    kind: &'static str,
    pending: u64,
    running: u64,
    done: u64,
    dead: u64,
    failing: usize,
    failing_more: bool,
    oldest: String,
}

/// A mailbox's deliveries per state.
#[derive(Debug)]
pub struct MailboxRow {
    name: String,
    counts: Vec<u64>,
}

/// A bar of a chart.
#[derive(Debug)]
pub struct Bar {
    class: &'static str,
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    title: String,
}

/// A series of a chart.
#[derive(Debug)]
pub struct Legend {
    class: &'static str,
    name: &'static str,
    count: u64,
}

/// An hour of a chart's table.
#[derive(Debug)]
pub struct HourRow {
    hour: String,
    counts: Vec<u64>,
}

/// A chart of events per hour.
#[derive(Debug)]
pub struct Chart {
    id: &'static str,
    label: &'static str,
    width: u32,
    height: u32,
    total: u64,
    max: u64,
    bars: Vec<Bar>,
    legend: Vec<Legend>,
    rows: Vec<HourRow>,
}

/// A relay target's state.
#[derive(Debug)]
pub struct RelayRow {
    target: String,
    state: String,
    ok: u64,
    failed: u64,
    pauses: u64,
}

/// A target's state as a receiver recorded it in the store.
#[derive(Debug)]
pub struct TargetRow {
    target: String,
    state: String,
    writer: String,
    pauses: u64,
}

/// The overview.
#[derive(Debug, Template)]
#[template(path = "console/overview.html")]
pub struct Overview {
    layout: Layout,
    store: String,
    states: Vec<StateRow>,
    delivery_states: Vec<&'static str>,
    mailboxes: Vec<MailboxRow>,
    charts: Vec<Chart>,
    bounces: Vec<(String, u64)>,
    relays: Vec<RelayRow>,
    targets: Vec<TargetRow>,
}

/// The series of the charts: (class, name).
const SERIES: [(&str, &str); 4] = [
    ("ok", "delivered"),
    ("wait", "queued or deferred"),
    ("bad", "failed, bounced or blocked"),
    ("other", "other"),
];

/// Which series an event of this type and status belongs to.
fn series(event_type: &str, status: Option<&str>) -> usize {
    match (event_type, status) {
        ("deliveries", Some("succeeded")) => 0,
        ("deliveries", Some("queued" | "deferred")) => 1,
        ("deliveries", Some("failed")) | ("bounces" | "blocks", _) => 2,
        _ => 3,
    }
}

/// The chart of `counts` over the `hours` hours before `now`'s hour.
pub fn chart(
    id: &'static str,
    label: &'static str,
    counts: &[HourCount],
    now: jiff::Timestamp,
    hours: i64,
) -> Chart {
    let this_hour = now.as_millisecond().div_euclid(3_600_000);
    let first = this_hour - hours + 1;
    let mut per_hour = vec![[0u64; 4]; hours as usize];
    for c in counts {
        let h = c.hour.as_millisecond().div_euclid(3_600_000) - first;
        if (0..hours).contains(&h) {
            per_hour[h as usize][series(&c.event_type, c.status.as_deref())] += c.count;
        }
    }
    let max = per_hour
        .iter()
        .map(|h| h.iter().sum::<u64>())
        .max()
        .unwrap_or(0);
    let (bar_w, height) = (if hours <= 24 { 20 } else { 4 }, 100u32);
    let mut bars = Vec::new();
    let mut totals = [0u64; 4];
    let mut rows = Vec::new();
    for (i, h) in per_hour.iter().enumerate() {
        let start =
            jiff::Timestamp::from_millisecond((first + i as i64) * 3_600_000).unwrap_or(now);
        let mut y = height;
        for (s, &n) in h.iter().enumerate() {
            totals[s] += n;
            if n == 0 || max == 0 {
                continue;
            }
            let bar_h = ((n as f64 / max as f64) * f64::from(height)).ceil() as u32;
            let bar_h = bar_h.clamp(1, y);
            y -= bar_h;
            bars.push(Bar {
                class: SERIES[s].0,
                x: i as u32 * bar_w,
                y,
                w: bar_w.saturating_sub(1).max(1),
                h: bar_h,
                title: format!("{}: {n} {}", html::time(start), SERIES[s].1),
            });
        }
        if h.iter().any(|&n| n > 0) {
            rows.push(HourRow {
                hour: html::time(start),
                counts: h.to_vec(),
            });
        }
    }
    Chart {
        id,
        label,
        width: hours as u32 * bar_w,
        height,
        total: totals.iter().sum(),
        max,
        bars,
        legend: SERIES
            .iter()
            .zip(totals)
            .map(|(&(class, name), count)| Legend { class, name, count })
            .collect(),
        rows,
    }
}

fn state_row(name: &'static str, kind: Kind, c: &StateCounts, failing: usize) -> StateRow {
    StateRow {
        name,
        kind: kind.as_str(),
        pending: c.pending,
        running: c.running,
        done: c.done,
        dead: c.dead,
        failing,
        failing_more: failing >= RowQuery::MAX_LIMIT,
        oldest: c.oldest_pending.map(html::time).unwrap_or_default(),
    }
}

/// `GET /`.
pub async fn page(State(console): State<Console>, user: auth::User) -> Response {
    let inbox = console.inbox();
    let counts = match inbox.counts().await {
        Ok(c) => c,
        Err(e) => return html::failed(&e),
    };
    let mut states = Vec::new();
    for (name, kind) in [("events", Kind::Event), ("mails", Kind::Mail)] {
        let failing = match inbox
            .rows(
                &RowQuery::new(kind)
                    .states(RowStates::Failing)
                    .limit(RowQuery::MAX_LIMIT),
            )
            .await
        {
            Ok(rows) => rows.len(),
            Err(e) => return html::failed(&e),
        };
        states.push(state_row(name, kind, counts.of(kind), failing));
    }
    let mailboxes = match inbox.deliveries().counts().await {
        Ok(c) => c
            .into_iter()
            .map(|m| MailboxRow {
                name: m
                    .mailbox
                    .as_deref()
                    .map(html::short)
                    .unwrap_or_else(|| "(unrouted)".to_owned()),
                counts: DeliveryState::ALL.iter().map(|s| m.get(*s)).collect(),
            })
            .collect(),
        Err(e) => return html::failed(&e),
    };
    // The store's clock: the inbox decides by it which hours are closed.
    let now = inbox.now();
    let week = match console.chart().week(inbox, now).await {
        Ok(w) => w,
        Err(e) => return html::failed(&e),
    };
    let charts = vec![
        chart("day", "last 24 hours", &week, now, 24),
        chart("week", "last 7 days", &week, now, 24 * 7),
    ];
    let mut bounces = BTreeMap::<String, u64>::new();
    for c in week.iter().filter(|c| c.event_type == "bounces") {
        let class = BounceStatus::from_code(c.status.as_deref().unwrap_or("")).class();
        *bounces.entry(class.to_string()).or_default() += c.count;
    }
    let relays = console
        .relays()
        .iter()
        .map(|r| {
            let (ok, failed) = r.attempts();
            RelayRow {
                target: html::short(r.target()),
                state: match r.breaker().paused_for() {
                    Some(left) => format!("paused ({}s left)", left.as_secs()),
                    None => "sending".to_owned(),
                },
                ok,
                failed,
                pauses: r.breaker().pauses(),
            }
        })
        .collect();
    // The targets' states as every receiver on the store recorded them:
    // what a console of its own can know of them.
    let targets = match inbox.target_states().await {
        Ok(states) => states
            .iter()
            .map(|s| TargetRow {
                target: html::short(&s.target),
                state: crate::relay::describe_state(s, inbox.now()),
                writer: html::short(&s.writer),
                pauses: s.pauses,
            })
            .collect(),
        Err(e) => return html::failed(&e),
    };
    html::render(&Overview {
        layout: Layout::of(&user, "overview"),
        store: html::short(inbox.describe()),
        states,
        delivery_states: DeliveryState::ALL.iter().map(|s| s.as_str()).collect(),
        mailboxes,
        charts,
        bounces: bounces.into_iter().collect(),
        relays,
        targets,
    })
}
