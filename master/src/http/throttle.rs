//! Progressive slow-down of failed attempts (logins, bearer tokens): never a
//! lockout. After a few free failures, each further attempt must wait 1 s,
//! doubling, at most [`MAX_DELAY`]. Logins are counted per (user, address),
//! per user and per address, but the wider counters only slow an address
//! that has failed for that user itself: a stranger's failures never slow
//! down a user who types the right password, nor everyone behind one proxy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins of one user name from one address before each further
/// attempt from there must wait (1 s, doubling, at most [`MAX_DELAY`]).
pub const MAX_USER_FAILURES: u32 = 5;
/// Failed logins of one user name from any address, and from one address
/// for any user, before further attempts must wait, for addresses that have
/// failed for that user themselves: a stranger's failures never slow down a
/// user who types the right password, nor everyone behind one proxy.
pub const MAX_IP_FAILURES: u32 = 20;
/// Wrong bearer tokens from one address before each further request with a
/// token must wait (1 s, doubling, at most [`MAX_DELAY`]).
pub const MAX_BEARER_FAILURES: u32 = 10;
/// Longest wait between attempts (progressive slow-down, never a lockout).
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// How long failures are remembered after the last one.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Most (user or address) failure counters kept.
const MAX_FAILURE_KEYS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// The last failure.
    last: Instant,
}

/// Whole seconds, rounded up (for `Retry-After`).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Failures {
    /// How long the next attempt must still wait, if at all (failures older
    /// than [`FAILURE_WINDOW`] are forgotten).
    fn left(&self, free: u32) -> Option<Duration> {
        let since = self.last.elapsed();
        let need = self.delay(free);
        (since < FAILURE_WINDOW && since < need).then(|| need - since)
    }

    /// How long after the last failure the next attempt must wait, once
    /// `free` failures are used up: 1 s, doubling, at most [`MAX_DELAY`].
    fn delay(&self, free: u32) -> Duration {
        if self.count < free {
            return Duration::ZERO;
        }
        let doublings = (self.count - free).min(16);
        Duration::from_secs(1u64 << doublings).min(MAX_DELAY)
    }
}

/// The failure counters (bounded: [`MAX_FAILURE_KEYS`]).
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, Failures>>,
}

impl Throttle {
    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(seconds to wait)` when `user` from `ip` must wait before trying
    /// again (progressive slow-down after failures, see [`MAX_USER_FAILURES`]).
    pub fn login_wait(&self, user: &str, ip: Option<IpAddr>) -> Option<u64> {
        let failures = self.failures();
        let keys = failure_keys(user, ip);
        // The pair (user, address) must have failed itself before the wider
        // counters slow it down.
        let pair_failed = keys
            .first()
            .and_then(|(k, _)| failures.get(k))
            .is_some_and(|f| f.count > 0 && f.last.elapsed() < FAILURE_WINDOW);
        let mut wait: Option<Duration> = None;
        for (i, (key, free)) in keys.iter().enumerate() {
            if i > 0 && !pair_failed {
                break;
            }
            if let Some(left) = failures.get(key).and_then(|f| f.left(*free)) {
                wait = Some(wait.map_or(left, |w| w.max(left)));
            }
        }
        wait.map(ceil_secs)
    }

    /// Forgets the user's failures after a successful login from `ip`.
    pub fn login_ok(&self, user: &str, ip: Option<IpAddr>) {
        let mut failures = self.failures();
        for (key, _) in failure_keys(user, ip).into_iter().take(2) {
            failures.remove(&key);
        }
    }

    /// Counts a failed login of `user` from `ip`.
    pub fn login_failed(&self, user: &str, ip: Option<IpAddr>) {
        let now = Instant::now();
        let mut failures = self.failures();
        if failures.len() >= MAX_FAILURE_KEYS {
            failures.retain(|_, f| now.duration_since(f.last) < FAILURE_WINDOW);
            if failures.len() >= MAX_FAILURE_KEYS {
                // Flooded with distinct names: forget the user counters, keep
                // the per-address ones that slow the flood.
                failures.retain(|k, _| k.starts_with("ip:"));
            }
        }
        for (key, _) in failure_keys(user, ip) {
            count(&mut failures, key, now);
        }
    }

    /// `Some(seconds to wait)` when requests with a bearer token from `ip`
    /// must wait after wrong tokens.
    pub fn bearer_wait(&self, ip: Option<IpAddr>) -> Option<u64> {
        let failures = self.failures();
        failures
            .get(&bearer_key(ip))?
            .left(MAX_BEARER_FAILURES)
            .map(ceil_secs)
    }

    /// Counts a wrong bearer token from `ip`.
    pub fn bearer_failed(&self, ip: Option<IpAddr>) {
        let now = Instant::now();
        let mut failures = self.failures();
        if failures.len() >= MAX_FAILURE_KEYS {
            failures.retain(|_, f| now.duration_since(f.last) < FAILURE_WINDOW);
        }
        if failures.len() < MAX_FAILURE_KEYS {
            count(&mut failures, bearer_key(ip), now);
        }
    }

    /// Moves every last failure `d` into the past (tests: waiting without
    /// waiting).
    #[cfg(test)]
    pub fn backdate(&self, d: Duration) {
        for f in self.failures().values_mut() {
            f.last = f.last.checked_sub(d).unwrap_or(f.last);
        }
    }
}

/// Counts one failure under `key` at `now` (a counter idle for
/// [`FAILURE_WINDOW`] starts again).
fn count(failures: &mut HashMap<String, Failures>, key: String, now: Instant) {
    let f = failures.entry(key).or_insert(Failures {
        count: 0,
        last: now,
    });
    if now.duration_since(f.last) >= FAILURE_WINDOW {
        f.count = 0;
    }
    f.count += 1;
    f.last = now;
}

fn bearer_key(ip: Option<IpAddr>) -> String {
    format!(
        "bearer:{}",
        ip.map_or_else(|| "-".to_string(), |ip| ip.to_string())
    )
}

/// The failure counters of an attempt, with their free failures: the pair
/// (user, address) first, then the user from anywhere, then the address for
/// anyone.
fn failure_keys(user: &str, ip: Option<IpAddr>) -> Vec<(String, u32)> {
    let name: String = user.chars().take(64).collect();
    let addr = ip.map_or_else(|| "-".to_string(), |ip| ip.to_string());
    let mut keys = vec![
        (format!("pair:{name}@{addr}"), MAX_USER_FAILURES),
        (format!("user:{name}"), MAX_IP_FAILURES),
    ];
    if let Some(ip) = ip {
        keys.push((format!("ip:{ip}"), MAX_IP_FAILURES));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_and_is_capped() {
        let f = |count| {
            Failures {
                count,
                last: Instant::now(),
            }
            .delay(MAX_USER_FAILURES)
        };
        assert_eq!(f(MAX_USER_FAILURES - 1), Duration::ZERO);
        assert_eq!(f(MAX_USER_FAILURES), Duration::from_secs(1));
        assert_eq!(f(MAX_USER_FAILURES + 2), Duration::from_secs(4));
        assert_eq!(f(MAX_USER_FAILURES + 30), MAX_DELAY);
    }
}
