//! Seeded synthetic detector: turns ground truth into degraded detections
//! for evaluation, at named difficulty levels.
//!
//! The model, per ground-truth object, frame by frame (all randomness from
//! one ChaCha8 stream seeded by the caller, so a seed gives the same file on
//! every machine):
//! - **Occlusion bursts**: a two-state Markov chain. A visible object becomes
//!   occluded with probability `occlusion_start` per frame; an occluded one
//!   becomes visible again with probability `1 / occlusion_mean_length`
//!   (burst lengths are geometric with that mean), and at the latest after
//!   `occlusion_max_length` frames when that is set.
//! - **Visible** objects are detected with **jitter proportional to size**:
//!   centre `+ N(0, jitter_position·w)` (x) and `N(0, jitter_position·h)` (y),
//!   width and height `· exp(N(0, jitter_size))`; score
//!   `clamp(N(score_mean, score_std), 0.05, 1)` (**score noise**). With
//!   `jitter_per_object = [lo, hi]`, each object instead draws one jitter
//!   std `U(lo, hi)` when it first appears and uses it for centre and size
//!   (some people are detected worse than others, all frames long).
//! - **Occluded** objects are missed, except with probability
//!   `occluded_detection_prob` a partial detection: twice the jitter and a
//!   low score `U(0.15, 0.5)` (what ByteTrack's second stage exists for).
//! - **False positives**: `Poisson(false_positives_per_frame)` per frame,
//!   sized like a random ground-truth box, placed uniformly in the scene's
//!   extent, score `U(false_positive_score)` (`[0.1, 0.7]` up to `hard`,
//!   `[0.3, 0.9]` for `harsh`, overlapping the true detections' scores).
//!
//! Levels up to `hard` predate the optional fields (`jitter_per_object`,
//! `occlusion_max_length`): with them unset the random stream is consumed
//! exactly as before, so a seed gives the same detections it always gave
//! and earlier results stay comparable (a unit test pins a checksum).
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
    /// False positives' scores are uniform in `[lo, hi)`.
    pub false_positive_score: [f32; 2],
    /// If set, each object draws its own jitter std uniformly in `[lo, hi]`
    /// on first appearance, used for both centre (fraction of size) and
    /// log-size; `jitter_position` and `jitter_size` are then ignored.
    #[serde(default)]
    pub jitter_per_object: Option<[f64; 2]>,
    /// If set, an occlusion burst ends after at most this many frames.
    #[serde(default)]
    pub occlusion_max_length: Option<u32>,
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
    /// Jitter 7-12% of box size per object, occlusion bursts of up to 9
    /// frames with nothing detected (about a fifth of true boxes missed), 2
    /// false positives per frame scored like true detections.
    Harsh,
}

impl Difficulty {
    /// All levels, easiest first.
    pub const ALL: [Difficulty; 4] = [
        Difficulty::Easy,
        Difficulty::Medium,
        Difficulty::Hard,
        Difficulty::Harsh,
    ];

    /// The level's parameters.
    pub fn config(self) -> DegradeConfig {
        let (jp, js, start, len, fp) = match self {
            Difficulty::Easy => (0.03, 0.03, 0.02, 3.0, 0.3),
            Difficulty::Medium => (0.05, 0.05, 0.05, 5.0, 0.8),
            Difficulty::Hard => (0.08, 0.08, 0.08, 8.0, 1.5),
            Difficulty::Harsh => {
                // Bursts: geometric with mean 6, cut at 9 frames (mean 4.8);
                // a new one starts every 1 / 0.06 visible frames on average,
                // so about 22% of an object's frames are missed outright.
                return DegradeConfig {
                    jitter_position: 0.1,
                    jitter_size: 0.1,
                    occlusion_start: 0.06,
                    occlusion_mean_length: 6.0,
                    occluded_detection_prob: 0.0,
                    false_positives_per_frame: 2.0,
                    score_mean: 0.75,
                    score_std: 0.15,
                    false_positive_score: [0.3, 0.9],
                    jitter_per_object: Some([0.07, 0.12]),
                    occlusion_max_length: Some(9),
                };
            }
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
            false_positive_score: [0.1, 0.7],
            jitter_per_object: None,
            occlusion_max_length: None,
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Difficulty::Easy => "easy",
            Difficulty::Medium => "medium",
            Difficulty::Hard => "hard",
            Difficulty::Harsh => "harsh",
        }
    }
}

impl std::str::FromStr for Difficulty {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Difficulty::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                format!("unknown difficulty {s:?}: expected easy, medium, hard or harsh")
            })
    }
}

/// Per-object state of the synthetic detector.
struct ObjectState {
    /// Frames the current occlusion burst has lasted (0: visible).
    occluded_for: u32,
    /// Centre and log-size jitter std of this object.
    jitter: (f64, f64),
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
    let mut objects_state: HashMap<i64, ObjectState> = HashMap::new();
    let mut out = Vec::new();
    for (frame, objects) in by_frame(&considered) {
        let mut dets = Vec::new();
        for obj in &objects {
            let state = objects_state.entry(obj.id).or_insert_with(|| {
                // Drawn only when configured: levels without it consume the
                // random stream exactly as they always did.
                let jitter = match cfg.jitter_per_object {
                    Some([lo, hi]) => {
                        let j = lo + (hi - lo) * rng.gen::<f64>();
                        (j, j)
                    }
                    None => (cfg.jitter_position, cfg.jitter_size),
                };
                ObjectState {
                    occluded_for: 0,
                    jitter,
                }
            });
            let was_occluded = state.occluded_for > 0;
            let mut occluded = if was_occluded {
                rng.gen::<f64>() >= exit_prob
            } else {
                rng.gen::<f64>() < cfg.occlusion_start
            };
            if occluded
                && cfg
                    .occlusion_max_length
                    .is_some_and(|max| state.occluded_for >= max)
            {
                occluded = false;
            }
            state.occluded_for = if occluded { state.occluded_for + 1 } else { 0 };
            let (jp, js) = state.jitter;
            if !occluded {
                let bbox = jittered(&mut rng, &obj.bbox, jp, js);
                let score = (cfg.score_mean + normal(&mut rng) * cfg.score_std).clamp(0.05, 1.0);
                dets.push(MotRecord::new(frame, -1, bbox, score as f32));
            } else if rng.gen::<f64>() < cfg.occluded_detection_prob {
                let bbox = jittered(&mut rng, &obj.bbox, 2.0 * jp, 2.0 * js);
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
            let [lo, hi] = cfg.false_positive_score;
            let score = rng.gen_range(lo..hi);
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

    // Computed with the code as of bb7eaa0 (see the test below).
    const EASY_LEN: usize = 1008;
    const EASY_SUM: u64 = 0x1c03_b77e_32ea_5ef1;
    const MEDIUM_LEN: usize = 1041;
    const MEDIUM_SUM: u64 = 0x77cb_dbcd_327a_b0b3;
    const HARD_LEN: usize = 1079;
    const HARD_SUM: u64 = 0x5f06_9d8f_d006_5a14;

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
        assert_eq!("harsh".parse::<Difficulty>(), Ok(Difficulty::Harsh));
        assert!("extreme".parse::<Difficulty>().is_err());
    }

    /// FNV-1a over every detection's frame, box and score bits.
    fn checksum(dets: &[MotRecord]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for r in dets {
            for v in [
                r.frame,
                u64::from(r.bbox.x.to_bits()),
                u64::from(r.bbox.y.to_bits()),
                u64::from(r.bbox.w.to_bits()),
                u64::from(r.bbox.h.to_bits()),
                u64::from(r.conf.to_bits()),
            ] {
                h ^= v;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        h
    }

    #[test]
    fn levels_up_to_hard_give_the_detections_they_always_gave() {
        // Checksums of the output of the code before `harsh` existed
        // (commit bb7eaa0), so results measured then stay comparable.
        let gt = straight_gt(200, 5);
        for (level, len, sum) in [
            (Difficulty::Easy, EASY_LEN, EASY_SUM),
            (Difficulty::Medium, MEDIUM_LEN, MEDIUM_SUM),
            (Difficulty::Hard, HARD_LEN, HARD_SUM),
        ] {
            let dets = degrade(&gt, &level.config(), 1);
            assert_eq!((dets.len(), checksum(&dets)), (len, sum), "{level:?}");
        }
    }

    /// Per object and frame of `gt`: whether some detection of the frame
    /// overlaps its box with IoU >= 0.3 (false positives rarely do).
    fn detected(gt: &[MotRecord], dets: &[MotRecord]) -> HashMap<i64, Vec<bool>> {
        let by: HashMap<u64, Vec<&MotRecord>> = dets.iter().fold(HashMap::new(), |mut m, d| {
            m.entry(d.frame).or_default().push(d);
            m
        });
        let mut out: HashMap<i64, Vec<bool>> = HashMap::new();
        for g in gt {
            let hit = by
                .get(&g.frame)
                .is_some_and(|ds| ds.iter().any(|d| d.bbox.iou(&g.bbox) >= 0.3));
            out.entry(g.id).or_default().push(hit);
        }
        out
    }

    #[test]
    fn harsh_misses_a_fifth_in_bursts_of_at_most_nine_frames() {
        let gt = straight_gt(3000, 5);
        let cfg = Difficulty::Harsh.config();
        let dets = degrade(&gt, &cfg, 11);
        assert_eq!(dets, degrade(&gt, &cfg, 11), "same seed, same detections");
        assert_ne!(dets, degrade(&gt, &cfg, 12));
        let hits = detected(&gt, &dets);
        let missed = hits.values().flatten().filter(|h| !**h).count();
        let share = missed as f64 / gt.len() as f64;
        assert!((0.15..=0.30).contains(&share), "missed share {share:.3}");
        let mut longest = 0;
        for frames in hits.values() {
            let mut run = 0;
            for h in frames {
                run = if *h { 0 } else { run + 1 };
                longest = longest.max(run);
            }
        }
        assert!(longest <= 9, "a burst of {longest} missed frames");
        assert!(longest >= 7, "bursts never get long: longest {longest}");
    }

    #[test]
    fn harsh_has_two_false_positives_per_frame_scored_like_true_ones() {
        let frames = 3000;
        let gt = straight_gt(frames, 5);
        let dets = degrade(&gt, &Difficulty::Harsh.config(), 4);
        // A detection is false when it overlaps no ground-truth box of its frame.
        let (mut fp_scores, mut true_scores) = (Vec::new(), Vec::new());
        for d in &dets {
            let is_true = gt
                .iter()
                .filter(|g| g.frame == d.frame)
                .any(|g| g.bbox.iou(&d.bbox) > 0.0);
            if is_true {
                &mut true_scores
            } else {
                &mut fp_scores
            }
            .push(d.conf);
        }
        // Some false positives land on a person; those are counted as true.
        let rate = fp_scores.len() as f64 / frames as f64;
        assert!(
            (1.6..=2.1).contains(&rate),
            "{rate:.2} false positives per frame"
        );
        true_scores.sort_by(f32::total_cmp);
        let median_true = true_scores[true_scores.len() / 2];
        let above = fp_scores.iter().filter(|s| **s >= median_true).count();
        let share = above as f64 / fp_scores.len() as f64;
        assert!(
            share >= 0.15,
            "only {share:.2} of false positives score above the median true detection"
        );
    }

    #[test]
    fn harsh_jitter_is_seven_to_twelve_percent_of_size() {
        // One object standing still: its detections' horizontal centre
        // offsets have the std it drew, as a fraction of its width.
        // A second object far away widens the scene, so that false
        // positives (placed anywhere in it) rarely land on the first.
        let gt: Vec<MotRecord> = (1..=4000)
            .flat_map(|f| {
                [
                    MotRecord::new(f, 1, BBox::new(100.0, 50.0, 40.0, 100.0), 1.0),
                    MotRecord::new(f, 2, BBox::new(1500.0, 1000.0, 40.0, 100.0), 1.0),
                ]
            })
            .collect();
        let mut stds = Vec::new();
        for seed in 0..12 {
            let dets = degrade(&gt, &Difficulty::Harsh.config(), seed);
            let offsets: Vec<f64> = dets
                .iter()
                .filter(|d| d.bbox.iou(&gt[0].bbox) > 0.2)
                .map(|d| (f64::from(d.bbox.center().0) - 120.0) / 40.0)
                .collect();
            let n = offsets.len() as f64;
            stds.push((offsets.iter().map(|o| o * o).sum::<f64>() / n).sqrt());
        }
        for s in &stds {
            assert!(
                (0.065..=0.125).contains(s),
                "jitter std {s:.3} of size: {stds:?}"
            );
        }
        let spread =
            stds.iter().copied().fold(0.0, f64::max) - stds.iter().copied().fold(1.0, f64::min);
        assert!(spread > 0.015, "every object jitters alike: {stds:?}");
    }
}
