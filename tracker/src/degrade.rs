//! Seeded synthetic detector: turns ground truth into degraded detections
//! for evaluation, at named difficulty levels.
//!
//! The model, per ground-truth object, frame by frame (all randomness from
//! one ChaCha8 stream seeded by the caller, so a seed gives the same file on
//! every machine):
//! - **Occlusion bursts**: a two-state Markov chain. A visible object becomes
//!   occluded with probability `occlusion_start` per frame; an occluded one
//!   becomes visible again with probability `1 / occlusion_mean_length`
//!   (burst lengths are geometric with that mean).
//! - **Visible** objects are detected with **jitter proportional to size**:
//!   centre `+ N(0, jitter_position·w)` (x) and `N(0, jitter_position·h)` (y),
//!   width and height `· exp(N(0, jitter_size))`; score
//!   `clamp(N(score_mean, score_std), 0.05, 1)` (**score noise**).
//! - **Occluded** objects are missed, except with probability
//!   `occluded_detection_prob` a partial detection: twice the jitter and a
//!   low score `U(0.15, 0.5)` (what ByteTrack's second stage exists for).
//! - **False positives**: `Poisson(false_positives_per_frame)` per frame,
//!   sized like a random ground-truth box, placed uniformly in the scene's
//!   extent, score `U(0.1, 0.7)`.
//!
//! Detections within a frame are shuffled, so no tracker can exploit the
//! ground truth's order. Pure: works on records, not files.

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::geometry::{BBox, BoxExt};
use crate::mot::{by_frame, MotRecord};

/// Parameters of the synthetic detector (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DegradeConfig {
    /// Centre jitter std as a fraction of box width/height.
    pub jitter_position: f64,
    /// Std of the log-scale jitter of width and height.
    pub jitter_size: f64,
    /// Per-frame probability that a visible object becomes occluded.
    pub occlusion_start: f64,
    /// Mean occlusion burst length (frames, >= 1).
    pub occlusion_mean_length: f64,
    /// Probability that an occluded object still yields a low-score detection.
    pub occluded_detection_prob: f64,
    /// Mean number of false positives per frame.
    pub false_positives_per_frame: f64,
    /// Mean score of a visible object's detection.
    pub score_mean: f64,
    /// Std of a visible object's detection score.
    pub score_std: f64,
}

/// Named difficulty levels used by the evaluation and the integration test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Difficulty {
    /// Small jitter, rare short occlusions, few false positives.
    Easy,
    /// Moderate jitter, occlusions every ~20 frames lasting ~5.
    Medium,
    /// Large jitter, long frequent occlusions, 1.5 false positives per frame.
    Hard,
}

impl Difficulty {
    /// All levels, easiest first.
    pub const ALL: [Difficulty; 3] = [Difficulty::Easy, Difficulty::Medium, Difficulty::Hard];

    /// The level's parameters.
    pub fn config(self) -> DegradeConfig {
        let (jp, js, start, len, fp) = match self {
            Difficulty::Easy => (0.03, 0.03, 0.02, 3.0, 0.3),
            Difficulty::Medium => (0.05, 0.05, 0.05, 5.0, 0.8),
            Difficulty::Hard => (0.08, 0.08, 0.08, 8.0, 1.5),
        };
        DegradeConfig {
            jitter_position: jp,
            jitter_size: js,
            occlusion_start: start,
            occlusion_mean_length: len,
            occluded_detection_prob: 0.5,
            false_positives_per_frame: fp,
            score_mean: 0.8,
            score_std: 0.12,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Difficulty::Easy => "easy",
            Difficulty::Medium => "medium",
            Difficulty::Hard => "hard",
        }
    }
}

impl std::str::FromStr for Difficulty {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Difficulty::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("unknown difficulty {s:?}: expected easy, medium or hard"))
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller; 1 - u keeps the logarithm finite.
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn poisson(rng: &mut ChaCha8Rng, lambda: f64) -> usize {
    // Knuth's method: fine for the small rates used here.
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p = rng.gen::<f64>();
    while p > limit {
        k += 1;
        p *= rng.gen::<f64>();
    }
    k
}

fn jittered(rng: &mut ChaCha8Rng, b: &BBox, pos: f64, size: f64) -> BBox {
    let (cx, cy) = b.center();
    let (w, h) = (f64::from(b.w), f64::from(b.h));
    let cx = f64::from(cx) + normal(rng) * pos * w;
    let cy = f64::from(cy) + normal(rng) * pos * h;
    let w = w * (normal(rng) * size).exp();
    let h = h * (normal(rng) * size).exp();
    BBox::from_center(cx as f32, cy as f32, w as f32, h as f32)
}

/// Degraded detections (`id = -1`, `conf` = score) for the ground-truth
/// records with `conf >= 1`.
pub fn degrade(gt: &[MotRecord], cfg: &DegradeConfig, seed: u64) -> Vec<MotRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let considered: Vec<MotRecord> = gt.iter().filter(|r| r.conf >= 1.0).cloned().collect();
    let (mut max_x, mut max_y) = (1.0_f32, 1.0_f32);
    for r in &considered {
        max_x = max_x.max(r.bbox.x + r.bbox.w);
        max_y = max_y.max(r.bbox.y + r.bbox.h);
    }
    let exit_prob = 1.0 / cfg.occlusion_mean_length.max(1.0);
    let mut occluded: HashMap<i64, bool> = HashMap::new();
    let mut out = Vec::new();
    for (frame, objects) in by_frame(&considered) {
        let mut dets = Vec::new();
        for obj in &objects {
            let state = occluded.entry(obj.id).or_insert(false);
            *state = if *state {
                rng.gen::<f64>() >= exit_prob
            } else {
                rng.gen::<f64>() < cfg.occlusion_start
            };
            if !*state {
                let bbox = jittered(&mut rng, &obj.bbox, cfg.jitter_position, cfg.jitter_size);
                let score = (cfg.score_mean + normal(&mut rng) * cfg.score_std).clamp(0.05, 1.0);
                dets.push(MotRecord::new(frame, -1, bbox, score as f32));
            } else if rng.gen::<f64>() < cfg.occluded_detection_prob {
                let bbox = jittered(
                    &mut rng,
                    &obj.bbox,
                    2.0 * cfg.jitter_position,
                    2.0 * cfg.jitter_size,
                );
                let score = rng.gen_range(0.15..0.5);
                dets.push(MotRecord::new(frame, -1, bbox, score as f32));
            }
        }
        for _ in 0..poisson(&mut rng, cfg.false_positives_per_frame) {
            let Some(like) = considered.choose(&mut rng) else {
                break;
            };
            let (w, h) = (like.bbox.w, like.bbox.h);
            let x = rng.gen::<f32>() * (max_x - w).max(0.0);
            let y = rng.gen::<f32>() * (max_y - h).max(0.0);
            let score = rng.gen_range(0.1..0.7);
            dets.push(MotRecord::new(frame, -1, BBox::new(x, y, w, h), score));
        }
        dets.shuffle(&mut rng);
        out.extend(dets);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn straight_gt(frames: u64, objects: i64) -> Vec<MotRecord> {
        (1..=frames)
            .flat_map(|f| {
                (0..objects).map(move |id| {
                    MotRecord::new(
                        f,
                        id,
                        BBox::new(100.0 * id as f32 + f as f32, 50.0, 40.0, 100.0),
                        1.0,
                    )
                })
            })
            .collect()
    }

    #[test]
    fn same_seed_same_output_different_seed_different_output() {
        let gt = straight_gt(50, 4);
        let cfg = Difficulty::Medium.config();
        assert_eq!(degrade(&gt, &cfg, 7), degrade(&gt, &cfg, 7));
        assert_ne!(degrade(&gt, &cfg, 7), degrade(&gt, &cfg, 8));
    }

    #[test]
    fn rates_follow_the_config() {
        let gt = straight_gt(2000, 5);
        let cfg = Difficulty::Hard.config();
        let dets = degrade(&gt, &cfg, 1);
        assert!(dets
            .iter()
            .all(|d| d.id == -1 && d.bbox.w > 0.0 && (0.05..=1.0).contains(&d.conf)));
        // Stationary fraction occluded: start / (start + exit) = 0.08 / (0.08 + 0.125).
        let occluded = 0.08 / (0.08 + 1.0 / 8.0);
        let expected = gt.len() as f64 * (1.0 - occluded * 0.5) + 2000.0 * 1.5;
        let got = dets.len() as f64;
        assert!(
            (got - expected).abs() / expected < 0.05,
            "got {got}, expected about {expected}"
        );
    }

    #[test]
    fn easy_is_easier_than_hard() {
        let gt = straight_gt(500, 3);
        // Detections that hit a ground-truth box well (IoU >= 0.5).
        let good = |level: Difficulty| {
            let dets = degrade(&gt, &level.config(), 3);
            dets.iter()
                .filter(|d| {
                    gt.iter()
                        .any(|g| g.frame == d.frame && g.bbox.iou(&d.bbox) >= 0.5)
                })
                .count()
        };
        assert!(good(Difficulty::Easy) > good(Difficulty::Medium));
        assert!(good(Difficulty::Medium) > good(Difficulty::Hard));
        assert_eq!("hard".parse::<Difficulty>(), Ok(Difficulty::Hard));
        assert!("extreme".parse::<Difficulty>().is_err());
    }
}
