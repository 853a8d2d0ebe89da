//! Adaptive per-camera detection rates (`[detection_rate]`, issue 14 item 3).
//!
//! While the detectors keep up, every camera is detected at the configured
//! `detection_interval` and nothing here changes anything. When the cameras
//! offer more detection work than the detectors can do, the loop would drop
//! frames at random cameras (the ingest queues keep the newest). Instead,
//! once a second, the controller:
//! - measures the detectors' capacity: frames per second of detector time
//!   per frame (pre-processing, inference and decoding of the outputs, as
//!   the workers time them), times the number of workers;
//! - measures each camera's offered frame rate (frames its decoder
//!   delivered, dropped ones included) and, with motion gating, the share
//!   of its due frames that moved;
//! - and gives each camera a detection interval so that the detection work
//!   fits `utilisation` of that capacity, taking rate first from the
//!   cameras where it costs least: few people on screen, many frames to
//!   save. Each camera keeps at least `min_fps` (or its configured rate,
//!   if lower).
//!
//! The allocation maximises the sum over cameras of `(1 + tracks) *
//! ln(rate)`: proportional fairness weighted by how many people a camera
//! shows, so a busy camera keeps its rate longest and two equally busy
//! cameras are slowed alike. Greedily, one interval step at a time, the
//! step that loses the least weighted log-rate per detection saved.
//!
//! The capacity is measured in wall-clock detector time, so CPU that other
//! work (decoding, re-ID, other processes) takes from the detectors shows
//! as a higher cost per frame and a lower capacity. Frames the ingest
//! queues still drop do not cut the budget further: on a box whose CPU is
//! short for other reasons than detection, cutting detection for them
//! detected half the frames the detectors could do and lost half the
//! people (docs/benchmarks.md, "Adaptive per-camera detection rates");
//! a capacity estimated too high only falls back to what the node does
//! without this controller, the queues dropping the oldest frames.
//!
//! The master's plan (JSTSH) decides which cameras a node analyses from
//! predicted loads; this controller absorbs what the prediction does not
//! see (people coming and going, motion), within the node, second by
//! second, and never moves a camera.

use serde::Deserialize;
use std::time::Duration;
use vidar_config::{Problem, Problems};

/// Settings of the adaptive detection rates.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateConfig {
    /// Adapt each camera's detection interval to the detectors' measured
    /// capacity. Default false: on the composite scenes under overload it
    /// detected fewer frames than letting the ingest queues drop the
    /// oldest, and lost people (docs/benchmarks.md, "Adaptive per-camera
    /// detection rates").
    pub adaptive: bool,
    /// The lowest detection rate a camera is brought to, frames per second
    /// (a camera configured slower keeps its own rate). Default 2.
    pub min_fps: f64,
    /// Share of the measured detector capacity the cameras may take, 0..1.
    /// Default 0.9.
    pub utilisation: f64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            adaptive: false,
            min_fps: 2.0,
            utilisation: 0.9,
        }
    }
}

impl RateConfig {
    /// What is wrong with these settings, by key.
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        if !(self.min_fps.is_finite() && self.min_fps > 0.0) {
            p.push("min_fps", format!("{} must be > 0", self.min_fps));
        }
        if !(self.utilisation > 0.0 && self.utilisation <= 1.0) {
            p.push(
                "utilisation",
                format!("{} must be in (0, 1]", self.utilisation),
            );
        }
        p.into_vec()
    }
}

/// What one camera asks of the detectors, as the controller measured it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// Frames per second its decoder delivers.
    pub fps: f64,
    /// Share of its due frames that reach the detector (1 without motion
    /// gating; the moving share with it).
    pub pass: f64,
    /// People on screen (confirmed tracks, smoothed).
    pub activity: f64,
    /// Its rate may change: a live source. A file read as fast as it
    /// decodes, or one whose queue never drops, is detected at the
    /// configured interval whatever the load.
    pub adaptive: bool,
}

/// The detection interval of every camera such that their detection work,
/// `sum(fps * pass / interval)`, fits `budget` frames per second, each at
/// least `base` and at most what keeps `min_fps` (never below `base`);
/// written to `out`, one per camera in order. See the module docs for the
/// rule. When even the longest intervals do not fit, all are at their
/// longest.
pub fn allocate(demands: &[Demand], base: u64, min_fps: f64, budget: f64, out: &mut Vec<u64>) {
    let base = base.max(1);
    out.clear();
    out.resize(demands.len(), base);
    let load = |d: &Demand, k: u64| d.fps * d.pass / k as f64;
    let longest = |d: &Demand| {
        if d.adaptive {
            ((d.fps / min_fps).floor() as u64).max(base)
        } else {
            base
        }
    };
    let mut total: f64 = demands.iter().map(|d| load(d, base)).sum();
    while total > budget {
        // The step losing the least weighted log-rate per frame saved.
        let mut best: Option<(usize, f64, f64)> = None;
        for (i, d) in demands.iter().enumerate() {
            let k = out[i];
            if k >= longest(d) {
                continue;
            }
            let saved = load(d, k) - load(d, k + 1);
            if saved <= 0.0 {
                continue;
            }
            let lost = (1.0 + d.activity) * ((k + 1) as f64 / k as f64).ln();
            let price = lost / saved;
            if best.is_none_or(|(_, p, _)| price < p) {
                best = Some((i, price, saved));
            }
        }
        let Some((i, _, saved)) = best else {
            break;
        };
        out[i] += 1;
        total -= saved;
    }
}

/// A camera's counters at the last look, and what was measured from them.
#[derive(Debug, Clone, Default)]
pub struct CameraRate {
    /// Its detection interval now.
    pub interval: u64,
    /// Never adapted (see [`Demand::adaptive`]).
    pub fixed: bool,
    /// Counters noted at least once.
    seen: bool,
    frames: u64,
    detected: u64,
    skipped: u64,
    fps: Option<f64>,
    pass: f64,
    activity: f64,
}

/// One look at a camera: its counters now.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counters {
    /// Frames its decoder delivered, since it started.
    pub frames: u64,
    /// Frames the detector ran on, since it started.
    pub detected: u64,
    /// Due frames the motion gate kept from the detector, since it started.
    pub skipped: u64,
    /// Confirmed tracks now.
    pub tracks: u64,
}

/// Weight of the newest second in the smoothed measurements.
const ALPHA: f64 = 0.3;
/// The node's controller: the detectors' measured cost per frame, and the
/// cameras' measured demands.
#[derive(Debug, Clone)]
pub struct RateController {
    config: RateConfig,
    base: u64,
    workers: usize,
    /// Detector time and frames since the last look.
    busy: Duration,
    frames: u64,
    /// Seconds of detector time per frame, smoothed.
    cost: Option<f64>,
    demands: Vec<Demand>,
    intervals: Vec<u64>,
}

impl RateController {
    /// A controller for `workers` detector threads and cameras configured
    /// at `base` (`detection_interval`).
    pub fn new(config: RateConfig, base: u32, workers: usize) -> Self {
        RateController {
            config,
            base: u64::from(base.max(1)),
            workers: workers.max(1),
            busy: Duration::ZERO,
            frames: 0,
            cost: None,
            demands: Vec::new(),
            intervals: Vec::new(),
        }
    }

    /// The interval a new camera starts at.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Notes a finished detector run: `frames` frames in `busy` time.
    pub fn ran(&mut self, frames: usize, busy: Duration) {
        self.frames += frames as u64;
        self.busy += busy;
    }

    /// Detector capacity, frames per second, when measured.
    pub fn capacity(&self) -> Option<f64> {
        self.cost
            .filter(|c| *c > 0.0)
            .map(|c| self.workers as f64 / c)
    }

    /// One look, `elapsed` after the last: updates every camera's
    /// measurements from its `counters` and sets its interval. `cams`
    /// yields each camera's state and counters; returns nothing, the
    /// intervals are in the states.
    pub fn look<'a>(
        &mut self,
        elapsed: Duration,
        cams: impl Iterator<Item = (&'a mut CameraRate, Counters)>,
    ) {
        let secs = elapsed.as_secs_f64();
        if self.frames > 0 {
            let c = self.busy.as_secs_f64() / self.frames as f64;
            self.cost = Some(self.cost.map_or(c, |old| old + ALPHA * (c - old)));
        }
        self.busy = Duration::ZERO;
        self.frames = 0;
        let mut states: Vec<&'a mut CameraRate> = Vec::new();
        self.demands.clear();
        for (state, now) in cams {
            if state.interval == 0 {
                state.interval = self.base;
            }
            let first = !state.seen;
            state.seen = true;
            let d_frames = now.frames.saturating_sub(state.frames);
            let d_detected = now.detected.saturating_sub(state.detected);
            let d_skipped = now.skipped.saturating_sub(state.skipped);
            (state.frames, state.detected, state.skipped) = (now.frames, now.detected, now.skipped);
            if !first && secs > 0.0 {
                let fps = d_frames as f64 / secs;
                state.fps = Some(state.fps.map_or(fps, |f| f + ALPHA * (fps - f)));
                let judged = d_detected + d_skipped;
                if judged > 0 {
                    let pass = d_detected as f64 / judged as f64;
                    state.pass += ALPHA * (pass - state.pass);
                }
            } else {
                state.pass = 1.0;
            }
            // People who come are weighed at once; who left, gradually.
            let tracks = now.tracks as f64;
            state.activity = tracks.max(state.activity + ALPHA * (tracks - state.activity));
            self.demands.push(Demand {
                fps: state.fps.unwrap_or(0.0),
                pass: state.pass,
                activity: state.activity,
                adaptive: !state.fixed,
            });
            states.push(state);
        }
        if !self.config.adaptive {
            return;
        }
        let Some(capacity) = self.capacity() else {
            return;
        };
        let budget = capacity * self.config.utilisation;
        allocate(
            &self.demands,
            self.base,
            self.config.min_fps,
            budget,
            &mut self.intervals,
        );
        for (state, k) in states.into_iter().zip(&self.intervals) {
            state.interval = *k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam(fps: f64, pass: f64, activity: f64) -> Demand {
        Demand {
            fps,
            pass,
            activity,
            adaptive: true,
        }
    }

    fn load(d: &[Demand], k: &[u64]) -> f64 {
        d.iter()
            .zip(k)
            .map(|(d, k)| d.fps * d.pass / *k as f64)
            .sum()
    }

    #[test]
    fn cameras_that_fit_keep_the_configured_interval() {
        let d = [cam(10.0, 1.0, 0.0), cam(10.0, 1.0, 3.0)];
        let mut k = Vec::new();
        allocate(&d, 1, 2.0, 20.0, &mut k);
        assert_eq!(k, [1, 1]);
        allocate(&d, 2, 2.0, 10.0, &mut k);
        assert_eq!(k, [2, 2], "the configured interval is the shortest");
    }

    #[test]
    fn the_quiet_camera_gives_up_rate_first_and_the_busy_one_last() {
        // Three 10 fps cameras, 30 frames/s of work, room for 20.
        let d = [
            cam(10.0, 1.0, 0.0),
            cam(10.0, 1.0, 4.0),
            cam(10.0, 1.0, 0.5),
        ];
        let mut k = Vec::new();
        allocate(&d, 1, 2.0, 20.0, &mut k);
        assert!(load(&d, &k) <= 20.0, "{k:?}");
        assert_eq!(k[1], 1, "the busy camera keeps every frame: {k:?}");
        assert!(k[0] >= k[2] && k[0] > 1, "{k:?}");
        // Tighter: the busy camera slows too, never below 2 fps anywhere.
        allocate(&d, 1, 2.0, 9.0, &mut k);
        assert!(load(&d, &k) <= 9.0, "{k:?}");
        assert!(k.iter().all(|&k| k <= 5), "{k:?}");
        assert!(k[1] > 1 && k[1] <= k[2] && k[2] <= k[0], "{k:?}");
    }

    #[test]
    fn motion_gated_cameras_cost_what_reaches_the_detector() {
        // A still camera (5 % of due frames move) saves almost nothing by
        // slowing: the moving one, equally quiet, is slowed instead.
        let d = [cam(10.0, 0.05, 0.0), cam(10.0, 1.0, 0.0)];
        let mut k = Vec::new();
        allocate(&d, 1, 2.0, 8.0, &mut k);
        assert_eq!(k[0], 1, "{k:?}");
        assert!(k[1] >= 2, "{k:?}");
    }

    #[test]
    fn when_nothing_fits_every_camera_runs_at_its_minimum() {
        let offline = Demand {
            adaptive: false,
            ..cam(30.0, 1.0, 0.0)
        };
        let d = [
            cam(10.0, 1.0, 1.0),
            cam(25.0, 1.0, 9.0),
            cam(1.0, 1.0, 0.0),
            offline,
        ];
        let mut k = Vec::new();
        allocate(&d, 1, 2.0, 0.5, &mut k);
        assert_eq!(
            k,
            [5, 12, 1, 1],
            "2 fps each, the 1 fps camera as it is, the offline file untouched"
        );
    }

    fn counters(frames: u64, detected: u64, tracks: u64) -> Counters {
        Counters {
            frames,
            detected,
            skipped: 0,
            tracks,
        }
    }

    #[test]
    fn the_controller_slows_the_quiet_camera_when_the_detectors_fall_behind() {
        // One worker at 50 ms a frame: 20 frames/s; two 15 fps cameras.
        let on = RateConfig {
            adaptive: true,
            ..RateConfig::default()
        };
        let mut c = RateController::new(on.clone(), 1, 1);
        let (mut quiet, mut busy) = (CameraRate::default(), CameraRate::default());
        let sec = Duration::from_secs(1);
        let mut look = |c: &mut RateController, s: u64, frame_ms: u64| {
            c.ran(20, Duration::from_millis(20 * frame_ms));
            c.look(
                sec,
                [
                    (&mut quiet, counters(15 * s, 10 * s, 0)),
                    (&mut busy, counters(15 * s, 10 * s, 3)),
                ]
                .into_iter(),
            );
            (quiet.interval, busy.interval)
        };
        assert_eq!(look(&mut c, 0, 50), (1, 1), "nothing measured yet");
        let mut intervals = (0, 0);
        for s in 1..=10 {
            intervals = look(&mut c, s, 50);
        }
        let cap = c.capacity().expect("measured");
        assert!((cap - 20.0).abs() < 1e-9, "{cap}");
        assert_eq!(intervals.1, 1, "the busy camera keeps its rate");
        // 15 + 15 / k within 0.9 * 20.
        assert!(intervals.0 >= 5, "{intervals:?}");
        // The detectors get twice as fast (another process on the box
        // ended): 40 frames/s, both cameras fit again.
        for s in 11..=30 {
            intervals = look(&mut c, s, 25);
        }
        assert_eq!(intervals, (1, 1), "capacity {:?}", c.capacity());

        // Off: measured, never changed.
        let mut off = RateController::new(
            RateConfig {
                adaptive: false,
                ..RateConfig::default()
            },
            1,
            1,
        );
        let mut q = CameraRate::default();
        for s in 0..5u64 {
            off.ran(20, Duration::from_millis(1000));
            off.look(sec, std::iter::once((&mut q, counters(15 * s, 10 * s, 0))));
        }
        assert_eq!(q.interval, 1);
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = RateConfig {
            adaptive: true,
            min_fps: 0.0,
            utilisation: 1.5,
        };
        let p: Vec<String> = bad.problems().iter().map(|p| p.to_string()).collect();
        assert!(p.iter().any(|p| p.contains("min_fps")), "{p:?}");
        assert!(p.iter().any(|p| p.contains("utilisation")), "{p:?}");
        assert!(RateConfig::default().problems().is_empty());
    }
}
