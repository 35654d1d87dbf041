//! Who may use the console: the users (`user:password` pairs, from the
//! environment or a file, never a flag), the sessions a login opens (a
//! random 256-bit id in an `HttpOnly; SameSite=Strict` cookie, held in
//! memory with an idle timeout and a lifetime, bounded in number), and
//! the slowing of failed logins.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const COOKIE: &str = "cmc_console";

/// A session unused this long ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A session ends this long after its login, used or not.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The most sessions held: a login beyond it ends the oldest.
pub const MAX_SESSIONS: usize = 1000;

/// The users allowed in: names and passwords (only SHA-256 digests of the
/// passwords are kept, compared in constant time). Debug shows the names.
#[derive(Clone)]
pub struct Users {
    users: Vec<(String, [u8; 32])>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.users.iter().map(|(name, _)| name))
            .finish()
    }
}

fn digest(password: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, password.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Users {
    /// The users of `pairs`, each `user:password` (the user without `:`,
    /// neither empty).
    pub fn parse<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Users, String> {
        let mut users = Vec::new();
        for (n, pair) in pairs.into_iter().enumerate() {
            let pair = pair.trim_end_matches(['\r', '\n']);
            let Some((user, password)) = pair.split_once(':') else {
                return Err(format!("pair {}: not USER:PASSWORD", n + 1));
            };
            if user.is_empty() || password.is_empty() {
                return Err(format!(
                    "pair {}: the user and the password must not be empty",
                    n + 1
                ));
            }
            if user.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(format!(
                    "pair {}: a user name has no space or control character",
                    n + 1
                ));
            }
            users.push((user.to_owned(), digest(password)));
        }
        if users.is_empty() {
            return Err("no user".to_owned());
        }
        Ok(Users { users })
    }

    /// The users of a comma-separated list (`CMC_CONSOLE_AUTH`).
    pub fn parse_list(list: &str) -> Result<Users, String> {
        Users::parse(list.split(',').filter(|p| !p.is_empty()))
    }

    /// The user `name` when `password` is theirs. Every user's digest is
    /// compared, in constant time, whatever the name.
    pub fn check(&self, name: &str, password: &str) -> Option<&str> {
        let given = digest(password);
        let mut found = None;
        for (user, expected) in &self.users {
            let same_password =
                aws_lc_rs::constant_time::verify_slices_are_equal(&given, expected).is_ok();
            let same_user = digest(user) == digest(name);
            if same_password && same_user && found.is_none() {
                found = Some(user.as_str());
            }
        }
        found
    }
}

/// A random id of 256 bits, in hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system's random source");
    crate::hex::hex(&bytes)
}

#[derive(Debug, Clone)]
struct Session {
    user: String,
    csrf: String,
    opened: Instant,
    used: Instant,
}

/// The open sessions, by id.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.map.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Sessions").field("open", &n).finish()
    }
}

impl Sessions {
    /// Opens a session for `user`: its id and CSRF token.
    pub fn open(&self, user: &str) -> (String, String) {
        let id = random_token();
        let csrf = random_token();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| live(s, now));
        while map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.opened)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(oldest) => {
                    map.remove(&oldest);
                }
                None => break,
            }
        }
        map.insert(
            id.clone(),
            Session {
                user: user.to_owned(),
                csrf: csrf.clone(),
                opened: now,
                used: now,
            },
        );
        (id, csrf)
    }

    /// The user and CSRF token of session `id` when it is open (and marks
    /// it used).
    pub fn get(&self, id: &str) -> Option<(String, String)> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let session = map.get_mut(id)?;
        if !live(session, now) {
            map.remove(id);
            return None;
        }
        session.used = now;
        Some((session.user.clone(), session.csrf.clone()))
    }

    /// Ends session `id`.
    pub fn close(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.used) < IDLE_TIMEOUT && now.duration_since(s.opened) < LIFETIME
}

/// Failed logins, which hold the next ones back: after a failure, its
/// address may not try again for a while (no password is even checked;
/// the answer is 429 at once, so nothing waits on a connection), growing
/// with its failures in the last [`Failures::WINDOW`]: [`Failures::STEP`],
/// doubled at each failure, up to [`Failures::MAX_WAIT`]. Past
/// [`Failures::GLOBAL_MAX`] failures in a minute from all addresses
/// together, every login waits for the minute to pass (many addresses
/// guessing). At most [`Failures::MAX_ADDRESSES`] addresses are
/// remembered.
#[derive(Debug, Default)]
pub struct Failures {
    state: Mutex<FailureState>,
}

#[derive(Debug, Default)]
struct FailureState {
    /// Per address: failures in the window, the last one, and until when
    /// it may not try.
    addresses: HashMap<IpAddr, (u32, Instant, Instant)>,
    /// The failures of the last minute, from all addresses.
    recent: std::collections::VecDeque<Instant>,
}

impl Failures {
    /// How long a failure counts.
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);
    /// The wait after a first failure.
    pub const STEP: Duration = Duration::from_millis(500);
    /// The longest wait of one address.
    pub const MAX_WAIT: Duration = Duration::from_secs(60);
    /// Failures in a minute, from all addresses, before every login waits.
    pub const GLOBAL_MAX: usize = 100;
    /// The most addresses remembered.
    pub const MAX_ADDRESSES: usize = 10_000;

    fn state(&self) -> std::sync::MutexGuard<'_, FailureState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `ip` must wait before it may try to log in, if it must.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut state = self.state();
        while state
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(60))
        {
            state.recent.pop_front();
        }
        let global = (state.recent.len() >= Self::GLOBAL_MAX)
            .then(|| {
                state
                    .recent
                    .front()
                    .map(|at| *at + Duration::from_secs(60) - now)
            })
            .flatten();
        let own = state
            .addresses
            .get(&ip)
            .and_then(|(_, _, until)| until.checked_duration_since(now))
            .filter(|left| !left.is_zero());
        match (global, own) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counts a failure from `ip`; returns how long it must now wait
    /// before its next try, and how many failures it has in the window.
    pub fn failed(&self, ip: IpAddr) -> (Duration, u32) {
        let now = Instant::now();
        let mut state = self.state();
        if state.recent.len() < Self::GLOBAL_MAX * 2 {
            state.recent.push_back(now);
        }
        let map = &mut state.addresses;
        if map.len() >= Self::MAX_ADDRESSES {
            map.retain(|_, (_, at, _)| now.duration_since(*at) < Self::WINDOW);
            if map.len() >= Self::MAX_ADDRESSES {
                map.clear();
            }
        }
        let entry = map.entry(ip).or_insert((0, now, now));
        if now.duration_since(entry.1) >= Self::WINDOW {
            *entry = (0, now, now);
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        let doublings = entry.0.saturating_sub(1).min(16);
        let wait = Self::STEP
            .saturating_mul(1 << doublings)
            .min(Self::MAX_WAIT);
        entry.2 = now + wait;
        (wait, entry.0)
    }

    /// Forgets `ip`'s failures (after a login).
    pub fn succeeded(&self, ip: IpAddr) {
        self.state().addresses.remove(&ip);
    }
}

/// The session id in a request's cookies.
pub fn session_id(parts: &http::HeaderMap) -> Option<String> {
    for header in parts.get_all(http::header::COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=')
                && name == COOKIE
                && value.len() == 64
                && value.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Some(value.to_owned());
            }
        }
    }
    None
}

/// The user of a request's session: a page's first argument. A request
/// without a valid session is answered with a redirect to the login
/// page (`303 /login?next=<the page>`).
#[derive(Debug, Clone)]
pub struct User {
    /// The user's name.
    pub name: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// The session's id.
    pub session: String,
    /// The address the request came from (when the server gave it).
    pub client: Option<std::net::IpAddr>,
}

/// `next` when it is a path of this console (`/...`, not `//host`, no
/// backslash or control character), else `/`: where a login goes.
pub fn local_path(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && next.len() <= 2000
        && !next.chars().any(|c| c.is_control() || c == '\\');
    if ok { next } else { "/" }
}

/// The `Set-Cookie` value of a session.
pub fn cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn expired_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_checked_by_name_and_password() {
        let users = Users::parse_list("alice:s3cret,bob:pa:ss").unwrap();
        assert_eq!(users.check("alice", "s3cret"), Some("alice"));
        assert_eq!(users.check("bob", "pa:ss"), Some("bob"));
        assert_eq!(users.check("alice", "pa:ss"), None);
        assert_eq!(users.check("carol", "s3cret"), None);
        assert!(!format!("{users:?}").contains("s3cret"));
        assert!(Users::parse_list("").is_err());
        assert!(Users::parse_list("alice").is_err());
        assert!(Users::parse_list(":x").is_err());
    }

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path("/rows?state=dead"), "/rows?state=dead");
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "x",
            "/a\r\nb",
        ] {
            assert_eq!(local_path(bad), "/", "{bad}");
        }
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let (first, _) = sessions.open("a");
        for _ in 0..MAX_SESSIONS {
            sessions.open("b");
        }
        assert!(sessions.get(&first).is_none());
        assert_eq!(sessions.map.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn failures_hold_the_address_back_and_are_bounded() {
        let f = Failures::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(f.blocked(ip).is_none());
        assert_eq!(f.failed(ip).0, Failures::STEP);
        assert!(f.blocked(ip).is_some_and(|d| d <= Failures::STEP));
        assert!(f.blocked(other).is_none(), "another address may try");
        assert_eq!(f.failed(ip).0, Failures::STEP * 2);
        for _ in 0..20 {
            f.failed(ip);
        }
        assert_eq!(f.failed(ip).0, Failures::MAX_WAIT);
        f.succeeded(ip);
        assert!(f.blocked(ip).is_none());
        assert_eq!(f.failed(ip).1, 1);
        // Many addresses failing together hold every login back.
        let g = Failures::default();
        for n in 0..Failures::GLOBAL_MAX {
            let ip = IpAddr::from([10, 0, (n / 256) as u8, (n % 256) as u8]);
            g.failed(ip);
        }
        assert!(g.blocked(other).is_some());
    }
}
