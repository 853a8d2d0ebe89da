//! Metric values of the edge node: named counters, gauges and latency
//! histograms ([`vidar_runtime::metrics::Histogram`]), written at each scrape
//! by [`super::render`] through the runtime's exposition (served by
//! [`super::server`]).
//!
//! Updating a metric is a relaxed atomic operation: no lock, no allocation,
//! so the per-frame path can afford it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
pub use vidar_runtime::metrics::{F64Gauge, Histogram, LATENCY_BUCKETS};

/// Per-camera analysis metrics (ingest counters come from the stream status).
#[derive(Debug, Default)]
pub struct CameraMetrics {
    /// Frames analysed (detector or tracker-only).
    pub analysed: AtomicU64,
    /// Frames the detector ran on.
    pub detected: AtomicU64,
    /// Due frames the motion gate kept from the detector (nothing moved, or
    /// only tracked people along their paths).
    pub motion_skipped: AtomicU64,
    /// Of those, the frames where tracked people moved along their paths.
    pub tracked_skipped: AtomicU64,
    /// Share of the frame that moved in the last frame the gate judged.
    pub motion_share: F64Gauge,
    /// Confirmed tracks now.
    pub tracks: AtomicU64,
    /// Confirmed tracks summed over the frames the detector ran on (over
    /// `detected`: people in view per frame).
    pub persons_seen: AtomicU64,
    /// Its detection interval now (every Nth frame; `[detection_rate]`).
    pub detection_interval: AtomicU64,
    /// Capture-to-result latency.
    pub latency: Histogram,
    /// Per-frame (stream time, result time) samples; zero capacity (off)
    /// unless built with [`CameraMetrics::with_samples`] (benchmarks).
    pub samples: SampleRing,
}

impl CameraMetrics {
    /// Metrics that also keep the last `capacity` per-frame samples.
    pub fn with_samples(capacity: usize) -> Self {
        CameraMetrics {
            samples: SampleRing::new(capacity),
            ..CameraMetrics::default()
        }
    }
}

/// One analysed frame: its presentation time in the stream and when its
/// result was ready.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Presentation timestamp (None when the stream had none).
    pub pts: Option<Duration>,
    /// When the result was ready.
    pub at: Instant,
}

/// A preallocated ring of per-frame [`Sample`]s: recording is two relaxed
/// atomic stores, no lock and no allocation; the oldest are overwritten.
#[derive(Debug)]
pub struct SampleRing {
    base: Instant,
    next: AtomicU64,
    pts_us: Box<[AtomicU64]>,
    at_us: Box<[AtomicU64]>,
}

impl Default for SampleRing {
    fn default() -> Self {
        SampleRing::new(0)
    }
}

/// Marks a sample without a presentation timestamp.
const NO_PTS: u64 = u64::MAX;

impl SampleRing {
    /// A ring of `capacity` samples (0 = recording is a no-op).
    pub fn new(capacity: usize) -> Self {
        let slots = || (0..capacity).map(|_| AtomicU64::new(0)).collect();
        SampleRing {
            base: Instant::now(),
            next: AtomicU64::new(0),
            pts_us: slots(),
            at_us: slots(),
        }
    }

    /// Records a frame with presentation time `pts` whose result is ready now.
    pub fn record(&self, pts: Option<Duration>) {
        let cap = self.pts_us.len() as u64;
        if cap == 0 {
            return;
        }
        let i = (self.next.fetch_add(1, Ordering::Relaxed) % cap) as usize;
        let pts = pts.map_or(NO_PTS, |p| (p.as_micros() as u64).min(NO_PTS - 1));
        self.pts_us[i].store(pts, Ordering::Relaxed);
        self.at_us[i].store(self.base.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    /// The samples held, oldest first. Read after the writer has stopped (or
    /// accept that the newest one or two may be torn).
    pub fn samples(&self) -> Vec<Sample> {
        let cap = self.pts_us.len() as u64;
        let n = self.next.load(Ordering::Relaxed);
        if cap == 0 {
            return Vec::new();
        }
        (n.saturating_sub(cap)..n)
            .map(|k| {
                let i = (k % cap) as usize;
                let pts = self.pts_us[i].load(Ordering::Relaxed);
                Sample {
                    pts: (pts != NO_PTS).then(|| Duration::from_micros(pts)),
                    at: self.base + Duration::from_micros(self.at_us[i].load(Ordering::Relaxed)),
                }
            })
            .collect()
    }
}

/// Node-wide metrics.
#[derive(Debug, Default)]
pub struct NodeMetrics {
    /// Frames per second the detectors can take, as measured (0 until measured).
    pub detector_capacity: F64Gauge,
    /// Detector inference time per run.
    pub inference: Histogram,
    /// Re-ID inference time per batch.
    pub reid_inference: Histogram,
    /// Pre-processing time per detector run.
    pub preprocess: Histogram,
    /// Post-processing time (decode, thresholds, NMS) per detector run.
    pub postprocess: Histogram,
    /// Records committed to the local database.
    pub records_submitted: AtomicU64,
    /// Identities minted.
    pub identities: AtomicU64,
    /// Minted identities joined to a known one when the track's later views matched it.
    pub reconsidered: AtomicU64,
    /// Crops embedded.
    pub crops: AtomicU64,
    /// Errors in analysis (a failed inference run, a failed write).
    pub errors: AtomicU64,
    /// Crops sent to another node's re-ID service and answered.
    pub crops_remote: AtomicU64,
    /// Remote re-ID requests that failed (timeout, refusal) and were done locally.
    pub remote_failures: AtomicU64,
    /// Crops kept local because the plan's bandwidth share was used up.
    pub crops_throttled: AtomicU64,
    /// Crops other nodes sent here to identify.
    pub crops_served: AtomicU64,
    /// Cluster inputs (announcements, requests) dropped because the re-ID worker was full.
    pub inputs_dropped: AtomicU64,
    /// Identities the re-ID gallery holds now (bounded by `max_identities`).
    pub gallery_identities: AtomicU64,
    /// Times the re-ID worker swapped to a refreshed model.
    pub model_swaps: AtomicU64,
    /// Identities retired from the gallery by model swaps (another model's
    /// vectors, and no snapshot to see them again through the new one).
    pub identities_retired: AtomicU64,
    /// Identities kept across model swaps, re-embedded from their snapshots.
    pub identities_reembedded: AtomicU64,
    /// Model refreshes applied (verified, built and handed to the worker).
    pub model_refreshes_applied: AtomicU64,
    /// Model refreshes refused: not for this node's model or precision, a
    /// file that is not what the master signed, or a graph unlike the model's.
    pub model_refreshes_refused: AtomicU64,
    /// Model refreshes that failed for now (the file could not be fetched or
    /// written); tried again when the master repeats the refresh.
    pub model_refreshes_failed: AtomicU64,
    /// Serial of the last model refresh applied (0: none).
    pub model_refresh_serial: AtomicU64,
    /// Confirmed tracks stored as training samples.
    pub training_tracklets: AtomicU64,
    /// Crops stored as training samples.
    pub training_samples: AtomicU64,
    /// Tracks not stored as training samples (writer queue full, or a write failed).
    pub training_dropped: AtomicU64,
    /// Split training steps this node answered (`[training] rounds`).
    pub training_round_steps: AtomicU64,
    /// Split training steps refused (busy, a bad request, no samples).
    pub training_round_refused: AtomicU64,
    /// Wall-clock time of one pass of the analysis loop (dispatching frames,
    /// tracking finished batches, re-ID hand-off), its wait for the detectors
    /// included. Passes take milliseconds; a long one stalls every camera.
    pub analysis_pass: Histogram,
    /// The longest analysis pass since this was last taken
    /// ([`NodeMetrics::take_longest_pass`]), microseconds.
    pub analysis_pass_longest_us: AtomicU64,
    /// Analysis passes that took longer than [`STALL`].
    pub analysis_stalls: AtomicU64,
}

/// An analysis pass this long holds back every camera's frames for longer
/// than a 10 fps camera's frame period: it is counted and logged.
pub const STALL: Duration = Duration::from_millis(100);

impl NodeMetrics {
    /// Records one analysis pass.
    pub fn analysis_pass(&self, d: Duration) {
        self.analysis_pass.observe(d);
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.analysis_pass_longest_us
            .fetch_max(us, Ordering::Relaxed);
        if d >= STALL {
            self.analysis_stalls.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The longest analysis pass since the last call (and starts again).
    pub fn take_longest_pass(&self) -> Duration {
        Duration::from_micros(self.analysis_pass_longest_us.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_analysis_passes_are_counted_and_the_longest_is_taken_once() {
        let m = NodeMetrics::default();
        for ms in [2, 150, 40, 100, 99] {
            m.analysis_pass(Duration::from_millis(ms));
        }
        assert_eq!(m.analysis_stalls.load(Ordering::Relaxed), 2);
        assert_eq!(m.analysis_pass.count(), 5);
        assert_eq!(m.take_longest_pass(), Duration::from_millis(150));
        assert_eq!(m.take_longest_pass(), Duration::ZERO);
        m.analysis_pass(Duration::from_millis(3));
        assert_eq!(m.take_longest_pass(), Duration::from_millis(3));
    }

    #[test]
    fn sample_ring_keeps_the_newest_in_order() {
        assert!(SampleRing::default().samples().is_empty());
        SampleRing::default().record(None);
        let r = SampleRing::new(3);
        for ms in 0..5u64 {
            r.record(Some(Duration::from_millis(ms * 100)));
        }
        r.record(None);
        let s = r.samples();
        let pts: Vec<_> = s.iter().map(|x| x.pts.map(|p| p.as_millis())).collect();
        assert_eq!(pts, vec![Some(300), Some(400), None]);
        assert!(s.windows(2).all(|w| w[0].at <= w[1].at));
    }
}
