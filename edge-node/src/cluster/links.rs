//! Link probes: how fast this node's bytes reach each peer, measured along
//! the path they really take (through the master's zenoh router when the
//! nodes are its clients, straight across when peers connect directly).
//!
//! A round times requests to one peer's probe queryable
//! (`probe/<peer>/<self>`): an empty one (the round trip), one padded to the
//! peer's probe size (the round trip plus the transfer of the padding), and
//! an empty one again. The rate is `size / (t_padded - base)`, where the
//! base is the least round trip seen (see [`PeerLink::observe`]). Rate and
//! round trip are smoothed per peer ([`ALPHA`]) and reported in the status
//! (`NodeStatus::links`); the master plans with them as the direct rate
//! between the two nodes. Each round also gives a figure for this node's own
//! upload ([`PeerLink::upload`]): the probe's bytes plus all its jobs sent
//! to any peer meanwhile. The rate to one peer is what is left of the path
//! once those flows took theirs, so where every byte goes through the
//! master's router it reads low for the node's link as the jobs fill it,
//! and a master planning the link from it would give the jobs less each
//! round (session 34's testbed: 5.7 of 8 Mbit/s, and a job at 2 of its
//! planned 9 frames/s).
//!
//! Bounded traffic: rounds go to one peer at a time (the peers are the nodes
//! the plan in force names), and after a round of `b` bytes to a peer
//! measured at `r` bytes/s the prober waits `b / (BUDGET * r)`, within
//! [`MIN_GAP`]..[`MAX_GAP`], and never sends more than [`MAX_PROBE_RATE`]
//! on average; so probes take at most [`BUDGET`] of the rate they measure.
//! The padding adapts per peer: within a round it doubles while the
//! transfer takes under [`SHORT`] (up to [`MAX_PROBE`]), and the next
//! round's halves when it took over [`LONG`] (down to [`MIN_PROBE`]):
//! large enough that the transfer is not lost in the round trip's jitter on
//! a fast link, small enough to stay cheap on a slow one.
//!
//! This module is the bookkeeping (pure); `probe` does the rounds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vidar_protocol::messages::{LinkRate, MAX_PROBE_BYTES};
use vidar_protocol::NodeId;

/// Share of a link's measured rate that probes may take.
pub const BUDGET: f64 = 0.005;
/// Most probe traffic, bytes/s, however fast the link: a LAN's 0.5 % would
/// be megabits of TLS work a second for a figure no plan needs exactly.
pub const MAX_PROBE_RATE: f64 = 8.0 * 1024.0;
/// Least time between two probe rounds (to any peer).
pub const MIN_GAP: Duration = Duration::from_secs(2);
/// Most time between two probe rounds while the plan names peers.
pub const MAX_GAP: Duration = Duration::from_secs(60);
/// Time after a round to a peer whose rate is not known yet.
const UNKNOWN_GAP: Duration = Duration::from_secs(10);
/// Smallest padding, bytes.
pub const MIN_PROBE: usize = 16 * 1024;
/// Padding of a peer's first round, bytes.
pub const FIRST_PROBE: usize = 64 * 1024;
/// Largest padding, bytes: a link faster than this in a quarter of
/// [`SHORT`] (about 210 Mbit/s) is ample for any plan, and bigger probes
/// would only cost the router TLS work.
pub const MAX_PROBE: usize = 128 * 1024;
const _: () = assert!(MAX_PROBE <= MAX_PROBE_BYTES);
/// A transfer shorter than this is mostly jitter: the round goes on with
/// twice the padding.
pub const SHORT: Duration = Duration::from_millis(20);
/// A transfer longer than this costs more than it tells: the next probe halves.
pub const LONG: Duration = Duration::from_millis(200);
/// Weight of a new sample in the smoothed rate and round trip.
pub const ALPHA: f64 = 0.3;
/// How much the base round trip may rise a round (a changed route).
pub const BASE_DRIFT: f64 = 1.1;
/// Rounds in a row that fail before a peer's link is no longer reported.
const FORGET_AFTER: u32 = 3;

/// What the probes know of the link to one peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerLink {
    /// Smoothed rate, bytes/s (`None` until a round measured it).
    pub rate: Option<f64>,
    /// Smoothed round trip, ms.
    pub rtt_ms: Option<f64>,
    /// The round trip with no queue on the path: the least seen, allowed
    /// to creep up by [`BASE_DRIFT`] a round so that it follows a slower
    /// route.
    pub base_rtt: Option<Duration>,
    /// Padding of the next round, bytes.
    pub size: usize,
    /// Rounds in a row that failed.
    pub failures: u32,
    /// Smoothed upload of this node as the rounds to this peer saw it,
    /// bytes/s: the probe's bytes and [`Also::all`] over the transfer time.
    pub upload: Option<f64>,
}

/// This node's own job bytes that left while a probe was timed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Also {
    /// Sent to the probe's peer: they took the probe's whole path.
    pub peer: usize,
    /// Sent to any peer (`peer` included): they took this node's link.
    pub all: usize,
}

impl Default for PeerLink {
    fn default() -> Self {
        PeerLink {
            rate: None,
            rtt_ms: None,
            base_rtt: None,
            size: FIRST_PROBE,
            failures: 0,
            upload: None,
        }
    }
}

fn smooth(old: Option<f64>, sample: f64) -> f64 {
    old.map_or(sample, |o| o + ALPHA * (sample - o))
}

impl PeerLink {
    /// Takes one round: the empty probe's round trip `rtt`, and the padded
    /// one's `padded` for `bytes` of padding. The transfer is `padded` less
    /// the base round trip, not less this round's: a queue that came or went
    /// between the two probes (other traffic) would otherwise make the rate
    /// anything; measured from the base, traffic queued ahead of the padding
    /// only lowers the rate, as it lowers what crops get. A transfer under a
    /// quarter of [`SHORT`] is jitter, not time: it counts as that quarter,
    /// so a link faster than [`MAX_PROBE`] bytes in it is reported at that
    /// floor (about 210 Mbit/s), ample for any plan.
    pub fn observe(&mut self, rtt: Duration, padded: Duration, bytes: usize) {
        self.observe_sharing(rtt, padded, bytes, Also::default());
    }

    /// [`PeerLink::observe`], when `also` bytes of this node's own other
    /// traffic (its jobs' flows) left while the probe was timed: those to
    /// the peer count toward the rate, all of them toward the upload, none
    /// toward the next probe's size.
    pub fn observe_sharing(&mut self, rtt: Duration, padded: Duration, bytes: usize, also: Also) {
        self.failures = 0;
        self.rtt_ms = Some(smooth(self.rtt_ms, rtt.as_secs_f64() * 1000.0));
        let base = self
            .base_rtt
            .map_or(rtt, |b| rtt.min(b.mul_f64(BASE_DRIFT)));
        self.base_rtt = Some(base);
        let transfer = padded.saturating_sub(base).max(SHORT / 4);
        let secs = transfer.as_secs_f64();
        let sample = bytes.saturating_add(also.peer) as f64 / secs;
        self.rate = Some(smooth(self.rate, sample));
        let upload = bytes.saturating_add(also.all.max(also.peer)) as f64 / secs;
        self.upload = Some(smooth(self.upload, upload));
        self.size = if transfer > LONG {
            (bytes / 2).max(MIN_PROBE)
        } else {
            bytes.clamp(MIN_PROBE, MAX_PROBE)
        };
    }

    /// The padding to time next within the same round, when `bytes` went
    /// across in too short a time to tell from the round trip's jitter
    /// (doubled, up to [`MAX_PROBE`]); `None` when the round is done.
    pub fn grow(rtt: Duration, padded: Duration, bytes: usize) -> Option<usize> {
        (padded.saturating_sub(rtt) < SHORT && bytes < MAX_PROBE)
            .then(|| (bytes * 2).min(MAX_PROBE))
    }

    /// Notes a failed round.
    pub fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// The link as reported, when the probes know its rate and it answers.
    pub fn report(&self, to: &NodeId) -> Option<LinkRate> {
        if self.failures >= FORGET_AFTER {
            return None;
        }
        let mbit_s = self.rate? * 8.0 / 1e6;
        Some(LinkRate {
            to: to.clone(),
            mbit_s,
            rtt_ms: self.rtt_ms?,
            upload_mbit_s: self.upload.map_or(mbit_s, |u| (u * 8.0 / 1e6).max(mbit_s)),
        })
    }

    /// How long to wait after a round of `bytes` to this peer.
    pub fn gap_after(&self, bytes: usize) -> Duration {
        match self.rate {
            Some(r) if r > 0.0 && self.failures == 0 => {
                let b = bytes as f64;
                Duration::from_secs_f64((b / (BUDGET * r)).max(b / MAX_PROBE_RATE))
                    .clamp(MIN_GAP, MAX_GAP)
            }
            _ => UNKNOWN_GAP,
        }
    }
}

/// The probes' findings per peer, shared with the status reporter.
#[derive(Debug, Default)]
pub struct LinkTable {
    peers: Mutex<BTreeMap<NodeId, PeerLink>>,
    /// Bytes of probes sent: padding plus [`PROBE_OVERHEAD`] a probe.
    sent: AtomicU64,
    /// Bytes this node's analytics jobs sent to each other node. Those to
    /// a probe's peer take the whole path the probe takes: what they sent
    /// while the probe was timed is added to the probe's bytes, so a pair a
    /// job fills still reads at its rate (as a camera's bitrate is added
    /// back for ingest). Bytes to other peers are not: they share only
    /// this node's own link, and where the probe's peer's link is the
    /// narrower, adding them would read the pair faster than it is. They
    /// are added to the node's upload ([`PeerLink::upload`]), which is
    /// that link.
    pub(crate) job_bytes: Arc<crate::bandwidth::SentTo>,
}

/// Bytes a probe is counted for besides its padding (header, ids, seq:
/// about 30 on the wire, rounded up).
pub const PROBE_OVERHEAD: u64 = 64;

impl LinkTable {
    pub(super) fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<NodeId, PeerLink>) -> T) -> T {
        f(&mut self.peers.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The links to report: every peer whose rate is known and that answers.
    pub fn rates(&self) -> Vec<LinkRate> {
        self.with(|m| m.iter().filter_map(|(to, l)| l.report(to)).collect())
    }

    /// Counts one probe of `pad` bytes of padding sent.
    pub(super) fn sent(&self, pad: usize) {
        let bytes = u64::try_from(pad)
            .unwrap_or(u64::MAX)
            .saturating_add(PROBE_OVERHEAD);
        self.sent.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes of probes sent so far (see [`PROBE_OVERHEAD`]).
    pub fn probe_bytes(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn a_round_reads_the_rate_from_the_padded_probe_less_the_round_trip() {
        let mut l = PeerLink::default();
        // 64 KiB in 100 ms more than the 20 ms round trip: 655,360 B/s.
        l.observe(ms(20), ms(120), FIRST_PROBE);
        assert_eq!(l.rate, Some(655_360.0));
        assert_eq!(l.rtt_ms, Some(20.0));
        assert_eq!(l.size, FIRST_PROBE, "a 100 ms transfer keeps its size");
        let r = l.report(&NodeId::new("b").expect("id")).expect("known");
        assert!((r.mbit_s - 5.24288).abs() < 1e-9, "{r:?}");
        // The next sample moves the estimate by ALPHA of the difference
        // (its transfer counted from the base round trip, 22 ms: the least
        // seen, 20 ms, risen by a tenth).
        l.observe(ms(30), ms(30 + 200), FIRST_PROBE);
        let want = 655_360.0 + ALPHA * (65_536.0 / 0.208 - 655_360.0);
        assert!((l.rate.expect("rate") - want).abs() < 1e-6);
        assert!((l.rtt_ms.expect("rtt") - 23.0).abs() < 1e-9);
    }

    #[test]
    fn a_queue_on_the_path_lowers_the_rate_and_never_raises_it() {
        let mut l = PeerLink::default();
        // 64 KiB in 100 ms over a 10 ms path.
        l.observe(ms(10), ms(110), FIRST_PROBE);
        // A job's flow to the peer that left meanwhile counts toward the
        // rate, not the size.
        let mut shared = PeerLink::default();
        let to_peer = Also {
            peer: FIRST_PROBE,
            all: FIRST_PROBE,
        };
        shared.observe_sharing(ms(10), ms(110), FIRST_PROBE, to_peer);
        let mut alone = PeerLink::default();
        alone.observe(ms(10), ms(110), FIRST_PROBE);
        let (s, a) = (shared.rate.expect("rate"), alone.rate.expect("rate"));
        assert!((s / a - 2.0).abs() < 1e-9, "{s} vs {a}");
        assert_eq!(shared.size, alone.size);
        // Flows to other peers: the rate to this one is what they left, and
        // they count toward the node's upload, which is reported with it.
        let mut others = PeerLink::default();
        let elsewhere = Also {
            peer: 0,
            all: 3 * FIRST_PROBE,
        };
        others.observe_sharing(ms(10), ms(110), FIRST_PROBE, elsewhere);
        assert_eq!(others.rate, alone.rate);
        let up = others.upload.expect("upload");
        assert!((up / a - 4.0).abs() < 1e-9, "{up} vs {a}");
        let r = others
            .report(&NodeId::new("b").expect("id"))
            .expect("known");
        assert!((r.upload_mbit_s / r.mbit_s - 4.0).abs() < 1e-9, "{r:?}");
        assert_eq!(alone.upload, alone.rate, "alone, the upload is the rate");
        assert_eq!(l.base_rtt, Some(ms(10)));
        let clear = l.rate.expect("rate");
        // The empty probe waited 60 ms behind other traffic that was gone
        // by the time the padded one went: read from this round's round
        // trip that would be 64 KiB in 50 ms, twice the link. From the base
        // it is what it was.
        let mut queued = l.clone();
        queued.observe(ms(70), ms(120), FIRST_PROBE);
        assert!(queued.rate.expect("rate") <= clear, "{queued:?}");
        assert_eq!(
            queued.base_rtt,
            Some(ms(11)),
            "risen by a tenth, not to 70 ms"
        );
        // Traffic ahead of the padding: a lower rate.
        let mut busy = l.clone();
        busy.observe(ms(10), ms(210), FIRST_PROBE);
        assert!(busy.rate.expect("rate") < clear);
        // A slower route: the base follows, a tenth a round at most.
        let mut moved = l.clone();
        moved.observe(ms(40), ms(140), FIRST_PROBE);
        assert_eq!(moved.base_rtt, Some(ms(11)));
    }

    #[test]
    fn the_probe_grows_on_a_fast_link_and_shrinks_on_a_slow_one() {
        // Too quick to time: the round goes on with twice the padding, up to the cap.
        assert_eq!(
            PeerLink::grow(ms(5), ms(10), FIRST_PROBE),
            Some(2 * FIRST_PROBE)
        );
        assert_eq!(
            PeerLink::grow(ms(5), ms(10), MAX_PROBE - 1),
            Some(MAX_PROBE)
        );
        assert_eq!(PeerLink::grow(ms(5), ms(10), MAX_PROBE), None);
        assert_eq!(PeerLink::grow(ms(5), ms(40), FIRST_PROBE), None, "timed");
        // Faster than the largest probe can time: reported at the floor.
        let mut fast = PeerLink::default();
        fast.observe(ms(1), ms(1), MAX_PROBE);
        let floor = MAX_PROBE as f64 / (SHORT / 4).as_secs_f64();
        assert_eq!(fast.rate, Some(floor));
        assert_eq!(fast.size, MAX_PROBE, "the next round starts large");
        // Over the 100 Mbit/s above which the master ignores a link's jitter.
        assert!(floor * 8.0 / 1e6 > 200.0, "the floor is over 200 Mbit/s");
        // Slow: the padding halves down to the least.
        let mut slow = PeerLink::default();
        for _ in 0..10 {
            slow.observe(ms(5), ms(5 + 900), slow.size);
        }
        assert_eq!(slow.size, MIN_PROBE);
        let rate = slow.rate.expect("rate");
        assert!((rate - MIN_PROBE as f64 / 0.9).abs() / rate < 0.5, "{rate}");
    }

    #[test]
    fn probes_take_at_most_the_budget_of_the_rate_they_measure() {
        let mut l = PeerLink::default();
        // No rate yet: a fixed, modest gap.
        assert_eq!(l.gap_after(FIRST_PROBE), UNKNOWN_GAP);
        // 5 Mbit/s: 64 KiB every ~21 s is 0.5 % of it.
        l.observe(ms(10), ms(10 + 105), FIRST_PROBE);
        let rate = l.rate.expect("rate");
        let gap = l.gap_after(FIRST_PROBE);
        let share = FIRST_PROBE as f64 / gap.as_secs_f64() / rate;
        assert!((share - BUDGET).abs() < 1e-9, "{share}");
        // A fast link is still probed at most every MIN_GAP, and with no
        // more than MAX_PROBE_RATE; a very slow one at least every MAX_GAP.
        l.rate = Some(1e9);
        assert_eq!(l.gap_after(1024), MIN_GAP);
        assert_eq!(
            l.gap_after(MAX_PROBE),
            Duration::from_secs_f64(MAX_PROBE as f64 / MAX_PROBE_RATE)
        );
        l.rate = Some(10.0);
        assert_eq!(l.gap_after(FIRST_PROBE), MAX_GAP);
    }

    #[test]
    fn a_peer_that_stops_answering_is_no_longer_reported() {
        let b = NodeId::new("b").expect("id");
        let mut l = PeerLink::default();
        assert_eq!(l.report(&b), None, "nothing measured yet");
        l.observe(ms(10), ms(110), FIRST_PROBE);
        for _ in 0..FORGET_AFTER - 1 {
            l.failed();
            assert!(l.report(&b).is_some());
        }
        l.failed();
        assert_eq!(l.report(&b), None);
        assert_eq!(l.gap_after(FIRST_PROBE), UNKNOWN_GAP);
        // One answered round brings it back.
        l.observe(ms(10), ms(110), FIRST_PROBE);
        assert!(l.report(&b).is_some());
    }
}
