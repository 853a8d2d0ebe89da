//! Bandwidth shares: the token bucket that holds a flow to its share (re-ID
//! crops to another node, analytics jobs' flows), and the bytes the jobs
//! sent to each peer (which the link prober adds back).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vidar_protocol::NodeId;

/// What this node's analytics jobs send one receiving node.
#[derive(Debug, Default)]
pub struct PeerSent {
    /// Bytes handed the link so far.
    pub bytes: AtomicU64,
    /// The shares of the flows to it now, bytes/s together.
    pub share: AtomicU64,
}

/// [`PeerSent`] for each receiving node. A flow takes its peer's entry once
/// ([`SentTo::counter`]) and adds to it without a lock; the link prober
/// reads a peer's entry around a probe to that peer ([`SentTo::get`]).
#[derive(Debug, Default)]
pub struct SentTo {
    peers: Mutex<HashMap<NodeId, Arc<PeerSent>>>,
}

impl SentTo {
    /// The entry of `peer` (created on first use).
    pub fn counter(&self, peer: &NodeId) -> Arc<PeerSent> {
        let mut m = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(m.entry(peer.clone()).or_default())
    }

    /// Bytes sent to every peer so far, and the flows' shares now
    /// (bytes/s), all together.
    pub fn total(&self) -> (u64, u64) {
        let m = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        m.values().fold((0, 0), |(b, s), c| {
            (
                b.saturating_add(c.bytes.load(Ordering::Relaxed)),
                s.saturating_add(c.share.load(Ordering::Relaxed)),
            )
        })
    }

    /// Bytes sent to `peer` so far, and the flows' shares to it now (bytes/s).
    pub fn get(&self, peer: &NodeId) -> (u64, u64) {
        let m = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        m.get(peer).map_or((0, 0), |c| {
            (
                c.bytes.load(Ordering::Relaxed),
                c.share.load(Ordering::Relaxed),
            )
        })
    }
}

/// A token bucket: `rate` bytes/s, holding at most one second's worth (and
/// never less than one request's worth, so a share below one crop per second
/// still lets a crop through now and then).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` bytes per second.
    pub fn new(rate: u64) -> Self {
        let rate = rate as f64;
        let burst = rate.max(64.0 * 1024.0);
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes `bytes` if the bucket holds them at `now`.
    pub fn take_at(&mut self, bytes: usize, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= bytes as f64 {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }

    /// Takes `bytes` at `now` if the bucket holds them, or holds a full
    /// burst when `bytes` is more than a burst (the bucket then owes the
    /// rest, repaid before anything else passes): items larger than a
    /// second of the rate (frames on a slow flow) still pass, at the rate.
    pub fn take_owing_at(&mut self, bytes: usize, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= (bytes as f64).min(self.burst) {
            self.tokens -= bytes as f64;
            true
        } else {
            false
        }
    }

    /// Changes the rate, keeping the tokens already earned (up to the new burst).
    pub fn set_rate(&mut self, rate: u64) {
        self.rate = rate as f64;
        self.burst = self.rate.max(64.0 * 1024.0);
        self.tokens = self.tokens.min(self.burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bytes_sent_are_counted_per_receiving_node() {
        let sent = SentTo::default();
        let (b, c) = (NodeId::new("b").expect("id"), NodeId::new("c").expect("id"));
        // Two flows to b share its counter; c has its own.
        let (to_b1, to_b2, to_c) = (sent.counter(&b), sent.counter(&b), sent.counter(&c));
        to_b1.bytes.fetch_add(1000, Ordering::Relaxed);
        to_b1.share.fetch_add(300, Ordering::Relaxed);
        to_b2.bytes.fetch_add(500, Ordering::Relaxed);
        to_b2.share.fetch_add(200, Ordering::Relaxed);
        to_c.bytes.fetch_add(7, Ordering::Relaxed);
        assert_eq!(sent.get(&b), (1500, 500));
        assert_eq!(sent.get(&c), (7, 0));
        assert_eq!(sent.get(&NodeId::new("d").expect("id")), (0, 0));
    }

    #[test]
    fn token_bucket_enforces_the_share_over_time() {
        let t0 = Instant::now();
        // 100 KB/s: a full bucket (1 s worth) lets 100 KB through at once...
        let mut b = TokenBucket::new(100_000);
        let mut sent = 0usize;
        while b.take_at(10_000, t0) {
            sent += 10_000;
        }
        assert_eq!(sent, 100_000);
        // ...then the rate: over 10 simulated seconds about 1 MB more, not more.
        let mut t = t0;
        for _ in 0..1000 {
            t += Duration::from_millis(10);
            while b.take_at(1_000, t) {
                sent += 1_000;
            }
        }
        assert!((1_090_000..=1_110_000).contains(&sent), "{sent}");
        // A share below one crop per second still lets a crop through now and then.
        let mut slow = TokenBucket::new(100);
        assert!(slow.take_at(6_000, t0));
        slow.set_rate(100);
        assert!(!slow.take_at(64 * 1024, t0 + Duration::from_secs(1)));
    }
}
