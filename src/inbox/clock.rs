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
/// use cmc_webhook::inbox::{Clock, SystemClock};
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
/// use cmc_webhook::inbox::{Clock, ManualClock};
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

/// `t` plus `d`, in milliseconds, saturating.
pub(crate) fn millis_after(t: Timestamp, d: Duration) -> i64 {
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    t.as_millisecond().saturating_add(ms)
}

/// The time a column holds.
pub(crate) fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// The system's clock corrected to read another's: the database server's
/// on PostgreSQL, so that every receiver and worker sharing a database
/// decide leases and due times by one clock. The offset is measured at
/// open and again every [`SERVER_CLOCK_EVERY`](super::SERVER_CLOCK_EVERY).
#[cfg(feature = "postgres")]
#[derive(Debug, Default)]
pub(crate) struct ServerClock {
    offset_ms: std::sync::atomic::AtomicI64,
}

#[cfg(feature = "postgres")]
impl ServerClock {
    pub fn set_offset(&self, ms: i64) {
        self.offset_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn offset(&self) -> i64 {
        self.offset_ms.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(feature = "postgres")]
impl Clock for ServerClock {
    fn now(&self) -> Timestamp {
        let now = Timestamp::now()
            .as_millisecond()
            .saturating_add(self.offset());
        from_millis(now)
    }
}
