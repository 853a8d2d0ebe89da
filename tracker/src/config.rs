//! Tracker configuration: every parameter, its unit and its default.
//!
//! Kept apart from the running tracker: it follows the config contract
//! (`vidar_config::Config`): `problems()` names every bad key, `build(&())`
//! refuses a config with problems and returns a [`Tracker`]. Defaults follow ByteTrack's
//! published settings where they exist, and were checked on the TUD
//! evaluation (`tracker/eval/`).

use serde::{Deserialize, Serialize};
use vidar_config::{Config, Problem, Problems};

use crate::error::ConfigError;
use crate::kalman::MotionConfig;
use crate::tracker::Tracker;

/// All parameters of one camera's tracker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerConfig {
    /// Detections with score >= this are "high" and take part in the first
    /// association stage (unitless score). Default 0.5.
    pub high_score_threshold: f32,
    /// Detections with score below this are ignored; those between this and
    /// `high_score_threshold` are only used to continue existing confirmed
    /// tracks (ByteTrack's second stage). Default 0.1.
    pub low_score_threshold: f32,
    /// An unmatched high detection starts a new track only if its score is
    /// >= this. Default 0.6.
    pub new_track_threshold: f32,
    /// Stage 1 (high detections vs confirmed and lost tracks): a pair may
    /// match only if its cost (1 - IoU, possibly fused) is below this. Default 0.8.
    pub match_threshold_high: f32,
    /// Stage 2 (low detections vs still-tracked confirmed tracks): cost
    /// threshold on 1 - IoU. Default 0.5.
    pub match_threshold_low: f32,
    /// Stage 3 (remaining high detections vs tentative tracks): cost
    /// threshold. Default 0.7.
    pub match_threshold_tentative: f32,
    /// Multiply IoU by the detection score before matching in stage 1 and
    /// 3, so confident detections win ties (ByteTrack's `fuse_score`). Default true.
    pub fuse_score: bool,
    /// Number of matched frames (N) after which a tentative track is
    /// confirmed and gets an id. Default 2.
    pub min_hits: u32,
    /// Tentative tracks are removed once unmatched for more than this many
    /// frames (frames). Default 0: a single miss removes them.
    pub max_tentative_misses: u32,
    /// A confirmed track unmatched for more than this many frames (M) is
    /// removed and handed to the caller as ended (frames). Until then it is
    /// "lost" and can be re-activated with its id. Default 30.
    pub max_lost_frames: u32,
    /// A lost track keeps being reported, at its predicted box, for up to
    /// this many frames after its last match (frames), bridging short
    /// occlusions and detector misses. 0 reports matched tracks only.
    /// Default 8 (a third of a second at 25 fps; see tracker/BENCHMARKS.md
    /// for the trade-off between misses and false positives).
    pub report_lost_frames: u32,
    /// A lost track is reported for at most this many frames per frame it
    /// was matched in (and at most `report_lost_frames`): young tracks, often
    /// false positives, are not extrapolated for long (frames per hit).
    /// Default 0.5; a large value gives the plain `report_lost_frames` rule.
    pub report_lost_hit_ratio: f32,
    /// Tracks born on the first frame of a stream are confirmed at once
    /// (there is no earlier frame to confirm them with). Default true.
    pub confirm_on_first_frame: bool,
    /// The camera's resolution, if known. Then a lost track whose predicted
    /// box is less than half inside the frame has left the view: it ends at
    /// once (reason `LeftView`) instead of being reported or re-activated by
    /// someone entering at the same edge. Default none.
    pub frame_size: Option<FrameSize>,
    /// Appearance (re-ID embedding) fusion; used only for pairs where both
    /// the track and the detection carry an embedding.
    pub appearance: AppearanceConfig,
    /// Kalman filter constants and Mahalanobis gate. Default: position
    /// noise 1/40 of the box size, velocity noise 1/160, measurement noise
    /// 1/10, gate chi-square 0.999 (18.47).
    pub motion: MotionConfig,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            high_score_threshold: 0.5,
            low_score_threshold: 0.1,
            new_track_threshold: 0.6,
            match_threshold_high: 0.8,
            match_threshold_low: 0.5,
            match_threshold_tentative: 0.7,
            fuse_score: true,
            min_hits: 2,
            max_tentative_misses: 0,
            max_lost_frames: 30,
            report_lost_frames: 8,
            report_lost_hit_ratio: 0.5,
            confirm_on_first_frame: true,
            frame_size: None,
            appearance: AppearanceConfig::default(),
            motion: MotionConfig::default(),
        }
    }
}

/// A camera's resolution in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameSize {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl FrameSize {
    /// Fraction of a box's area that lies inside the frame, in [0, 1].
    pub fn visible_fraction(&self, b: &crate::geometry::BBox) -> f32 {
        let area = b.area();
        if area <= 0.0 {
            return 0.0;
        }
        let ix = (b.x + b.w).min(self.width as f32) - b.x.max(0.0);
        let iy = (b.y + b.h).min(self.height as f32) - b.y.max(0.0);
        (ix.max(0.0) * iy.max(0.0)) / area
    }
}

/// How appearance embeddings take part in association.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppearanceConfig {
    /// Weight of the cosine distance in the fused cost
    /// `(1 - w)·iou_cost + w·cosine_distance`, in [0, 1]. Default 0.5.
    pub weight: f32,
    /// Pairs whose cosine distance exceeds this may not match, whatever
    /// their overlap (cosine distance, 0..2). Default 0.4.
    pub max_cosine_distance: f32,
    /// Exponential moving average factor for a track's embedding: new =
    /// normalise(momentum·old + (1 - momentum)·detection), in [0, 1). Default 0.9.
    pub momentum: f32,
}

impl Default for AppearanceConfig {
    fn default() -> Self {
        Self {
            weight: 0.5,
            max_cosine_distance: 0.4,
            momentum: 0.9,
        }
    }
}

impl Config for TrackerConfig {
    type Output = Tracker;
    type Context = ();
    type Error = ConfigError;

    fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        for (key, v) in [
            ("high_score_threshold", self.high_score_threshold),
            ("low_score_threshold", self.low_score_threshold),
            ("new_track_threshold", self.new_track_threshold),
            ("match_threshold_high", self.match_threshold_high),
            ("match_threshold_low", self.match_threshold_low),
            ("match_threshold_tentative", self.match_threshold_tentative),
            ("appearance.weight", self.appearance.weight),
        ] {
            p.within(key, v, 0.0, 1.0);
        }
        if self.low_score_threshold > self.high_score_threshold {
            p.push(
                "low_score_threshold",
                format!(
                    "{} must not exceed high_score_threshold ({})",
                    self.low_score_threshold, self.high_score_threshold
                ),
            );
        }
        if self.new_track_threshold < self.high_score_threshold {
            p.push(
                "new_track_threshold",
                format!(
                    "{} must be at least high_score_threshold ({}): only high detections start tracks",
                    self.new_track_threshold, self.high_score_threshold
                ),
            );
        }
        if !(self.report_lost_hit_ratio.is_finite() && self.report_lost_hit_ratio >= 0.0) {
            p.push(
                "report_lost_hit_ratio",
                format!(
                    "must be a non-negative number, got {}",
                    self.report_lost_hit_ratio
                ),
            );
        }
        if self.min_hits == 0 {
            p.push("min_hits", "must be at least 1, got 0");
        }
        if self.report_lost_frames > self.max_lost_frames {
            p.push(
                "report_lost_frames",
                format!(
                    "{} must not exceed max_lost_frames ({})",
                    self.report_lost_frames, self.max_lost_frames
                ),
            );
        }
        if let Some(fs) = &self.frame_size {
            if fs.width == 0 || fs.height == 0 {
                p.push(
                    "frame_size",
                    format!("must be positive, got {}x{}", fs.width, fs.height),
                );
            }
        }
        let a = &self.appearance;
        p.within(
            "appearance.max_cosine_distance",
            a.max_cosine_distance,
            0.0,
            2.0,
        );
        if !(0.0..1.0).contains(&a.momentum) {
            p.push(
                "appearance.momentum",
                format!("must be in [0, 1), got {}", a.momentum),
            );
        }
        let m = &self.motion;
        for (key, v) in [
            ("motion.std_weight_position", m.std_weight_position),
            ("motion.std_weight_velocity", m.std_weight_velocity),
            ("motion.std_weight_measurement", m.std_weight_measurement),
            ("motion.gating_threshold", m.gating_threshold),
        ] {
            if !(v.is_finite() && v > 0.0) {
                p.push(key, format!("must be a positive number, got {v}"));
            }
        }
        p.into_vec()
    }

    /// A tracker for one camera.
    fn build(&self, _: &()) -> Result<Tracker, ConfigError> {
        self.check()?;
        Ok(Tracker::new_unchecked(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_fraction() {
        use crate::geometry::{BBox, BoxExt};
        let fs = FrameSize {
            width: 640,
            height: 480,
        };
        assert_eq!(fs.visible_fraction(&BBox::new(10.0, 10.0, 20.0, 20.0)), 1.0);
        assert_eq!(
            fs.visible_fraction(&BBox::new(-10.0, 10.0, 20.0, 20.0)),
            0.5
        );
        assert_eq!(
            fs.visible_fraction(&BBox::new(700.0, 10.0, 20.0, 20.0)),
            0.0
        );
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(TrackerConfig::default().check(), Ok(()));
    }

    #[test]
    fn every_problem_is_reported() {
        let cfg = TrackerConfig {
            high_score_threshold: 1.5,
            min_hits: 0,
            report_lost_frames: 99,
            appearance: AppearanceConfig {
                momentum: 1.0,
                ..AppearanceConfig::default()
            },
            ..TrackerConfig::default()
        };
        let err = cfg.build(&()).expect_err("invalid");
        let keys: Vec<&str> = err.0.keys().collect();
        assert_eq!(
            keys,
            [
                "high_score_threshold",
                "new_track_threshold",
                "min_hits",
                "report_lost_frames",
                "appearance.momentum"
            ]
        );
        let text = err.to_string();
        for needle in [
            "high_score_threshold: must be in 0..=1, got 1.5",
            "min_hits",
            "report_lost_frames",
            "appearance.momentum",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn toml_round_trip_and_unknown_fields_rejected() {
        let cfg = TrackerConfig::default();
        let text = toml::to_string(&cfg).expect("serialise");
        let back: TrackerConfig = toml::from_str(&text).expect("parse");
        assert_eq!(back, cfg);
        let partial: TrackerConfig =
            toml::from_str("min_hits = 3\n[motion]\ngating_threshold = 13.28\n")
                .expect("partial config uses defaults");
        assert_eq!(partial.min_hits, 3);
        assert_eq!(partial.max_lost_frames, 30);
        assert!(toml::from_str::<TrackerConfig>("min_hitz = 3").is_err());
    }
}
