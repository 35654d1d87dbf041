//! The inbox's time: every time it writes (`received_at`, `run_at`, leases,
//! `done_at`) and every "now" it compares with comes from a [`Clock`], so
//! that tests can move time by hand.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

/// Where the inbox reads the time.
///
/// [`SystemClock`] is the default; [`ManualClock`] moves only when told,
/// for tests of retries, leases and retention.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's clock.
///
/// ```
/// use cmc_webhook_inbox::{Clock, SystemClock};
///
/// assert!(SystemClock.now() > jiff::Timestamp::UNIX_EPOCH);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until it is moved; clones share the time.
///
/// ```
/// use std::time::Duration;
/// use cmc_webhook_inbox::{Clock, ManualClock};
///
/// let clock = ManualClock::new("2026-01-01T00:00:00Z".parse()?);
/// let same = clock.clone();
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(same.now().to_string(), "2026-01-01T00:01:30Z");
/// # Ok::<(), jiff::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<Timestamp>>);

impl ManualClock {
    /// A clock showing `at`.
    pub fn new(at: Timestamp) -> ManualClock {
        ManualClock(Arc::new(Mutex::new(at)))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now = now.saturating_add(by).unwrap_or(Timestamp::MAX);
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Milliseconds since the Unix epoch, as the tables store times.
pub(crate) fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// `t` plus `d`, in milliseconds, saturating at the last time a
/// [`Timestamp`] holds (9999-12-31): every database stores it
/// (PostgreSQL's `timestamptz` ends in the year 294276, and refuses a
/// lease or a backoff of `Duration::MAX` past it), and it reads back as
/// itself.
pub(crate) fn millis_after(t: Timestamp, d: Duration) -> i64 {
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    t.as_millisecond()
        .saturating_add(ms)
        .min(Timestamp::MAX.as_millisecond())
}

/// The time a column holds.
pub(crate) fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// The database server's clock, on PostgreSQL: every receiver and worker
/// sharing a database decide leases and due times by one clock. It is
/// read at open and again every
/// [`SERVER_CLOCK_EVERY`](super::SERVER_CLOCK_EVERY), and between two
/// readings advanced by this process's monotonic clock, never by its wall
/// clock: a wall clock stepped by hours (by NTP, by hand) changes nothing.
#[cfg(feature = "postgres")]
#[derive(Debug)]
pub(crate) struct ServerClock {
    /// The server's time, in milliseconds, at a moment of this process.
    anchor: Mutex<(i64, std::time::Instant)>,
}

#[cfg(feature = "postgres")]
impl ServerClock {
    pub fn new(server_ms: i64, at: std::time::Instant) -> ServerClock {
        ServerClock {
            anchor: Mutex::new((server_ms, at)),
        }
    }

    /// A new reading: the server showed `server_ms` at `at`.
    pub fn set(&self, server_ms: i64, at: std::time::Instant) {
        *self.anchor.lock().unwrap_or_else(|e| e.into_inner()) = (server_ms, at);
    }

    /// What this clock says it was at `at`, in milliseconds.
    pub fn millis_at(&self, at: std::time::Instant) -> i64 {
        let (server_ms, then) = *self.anchor.lock().unwrap_or_else(|e| e.into_inner());
        let since = match at.checked_duration_since(then) {
            Some(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            None => -i64::try_from(then.duration_since(at).as_millis()).unwrap_or(i64::MAX),
        };
        server_ms.saturating_add(since)
    }
}

#[cfg(feature = "postgres")]
impl Clock for ServerClock {
    fn now(&self) -> Timestamp {
        from_millis(self.millis_at(std::time::Instant::now()))
    }
}
