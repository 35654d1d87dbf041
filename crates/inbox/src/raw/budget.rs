//! The budget of refused bodies kept: per client and in all, per window.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many refused (400) bodies an inbox keeps, per client address and in
/// all, in each window of time; what is over the budget is refused as
/// before and not kept (a debug log says so). A body longer than
/// [`max_body`](RefusedBudget::max_body) is kept cut to that length (its
/// reason says so).
///
/// The defaults: per client 20 bodies and 1 MiB, in all 200 bodies and 16
/// MiB, per hour; a body kept to 256 KiB. A stranger's flood costs at
/// most the total per hour, on a task of its own: other requests do not
/// wait for it.
///
/// ```
/// use std::time::Duration;
/// use cmc_webhook_inbox::RefusedBudget;
///
/// let budget = RefusedBudget::default()
///     .per_client(5, 64 << 10)
///     .total(50, 4 << 20)
///     .window(Duration::from_secs(600));
/// # let _ = budget;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedBudget {
    pub(crate) client_count: u32,
    pub(crate) client_bytes: usize,
    pub(crate) total_count: u32,
    pub(crate) total_bytes: usize,
    pub(crate) window: Duration,
    pub(crate) max_body: usize,
}

impl Default for RefusedBudget {
    fn default() -> Self {
        RefusedBudget {
            client_count: 20,
            client_bytes: 1 << 20,
            total_count: 200,
            total_bytes: 16 << 20,
            window: Duration::from_secs(3600),
            max_body: 256 << 10,
        }
    }
}

impl RefusedBudget {
    /// No refused body kept.
    pub fn none() -> Self {
        RefusedBudget {
            client_count: 0,
            total_count: 0,
            ..RefusedBudget::default()
        }
    }

    /// At most `count` bodies and `bytes` bytes from one client address
    /// per window.
    pub fn per_client(mut self, count: u32, bytes: usize) -> Self {
        self.client_count = count;
        self.client_bytes = bytes;
        self
    }

    /// At most `count` bodies and `bytes` bytes from all clients per
    /// window.
    pub fn total(mut self, count: u32, bytes: usize) -> Self {
        self.total_count = count;
        self.total_bytes = bytes;
        self
    }

    /// The window the counts are kept for (an hour by default).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The most bytes of one refused body kept (256 KiB by default).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

/// The budget's use in the current window.
#[derive(Debug)]
pub(crate) struct Budget {
    limits: RefusedBudget,
    used: Mutex<Used>,
}

#[derive(Debug)]
struct Used {
    since: Instant,
    count: u32,
    bytes: usize,
    /// Only clients that were admitted: at most `total_count` entries.
    clients: HashMap<Option<IpAddr>, (u32, usize)>,
}

impl Budget {
    pub fn new(limits: RefusedBudget) -> Budget {
        Budget {
            limits,
            used: Mutex::new(Used {
                since: Instant::now(),
                count: 0,
                bytes: 0,
                clients: HashMap::new(),
            }),
        }
    }

    pub fn max_body(&self) -> usize {
        self.limits.max_body
    }

    /// Takes `bytes` for one body of `client`, if the budget has them.
    pub fn take(&self, client: Option<IpAddr>, bytes: usize) -> bool {
        let l = &self.limits;
        let Ok(mut used) = self.used.lock() else {
            return false;
        };
        if used.since.elapsed() >= l.window {
            used.since = Instant::now();
            used.count = 0;
            used.bytes = 0;
            used.clients.clear();
        }
        if used.count >= l.total_count || used.bytes.saturating_add(bytes) > l.total_bytes {
            return false;
        }
        let (count, sum) = used.clients.get(&client).copied().unwrap_or((0, 0));
        if count >= l.client_count || sum.saturating_add(bytes) > l.client_bytes {
            return false;
        }
        used.clients.insert(client, (count + 1, sum + bytes));
        used.count += 1;
        used.bytes += bytes;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_held_to_its_share_and_all_to_the_total() {
        let budget = Budget::new(
            RefusedBudget::default()
                .per_client(2, 100)
                .total(3, 1000)
                .window(Duration::from_secs(3600)),
        );
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        let c = Some("192.0.2.3".parse().unwrap());
        assert!(budget.take(a, 40));
        assert!(!budget.take(a, 70), "over the client's bytes");
        assert!(budget.take(a, 60));
        assert!(!budget.take(a, 1), "over the client's count");
        assert!(budget.take(b, 10));
        assert!(!budget.take(c, 10), "over the total count");
    }

    #[test]
    fn the_window_starts_afresh() {
        let budget = Budget::new(
            RefusedBudget::default()
                .per_client(1, 100)
                .window(Duration::from_millis(20)),
        );
        assert!(budget.take(None, 10));
        assert!(!budget.take(None, 10));
        std::thread::sleep(Duration::from_millis(30));
        assert!(budget.take(None, 10));
    }
}
