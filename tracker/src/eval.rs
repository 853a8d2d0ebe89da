//! Scoring of tracker output against ground truth: CLEAR-MOT (MOTA,
//! identity switches) and the identity measures (IDF1), as `motmetrics`
//! 1.4.0 computes them with `compare_to_groundtruth(gt, hyp, 'iou', 0.5)`.
//!
//! Mirrors `MOTAccumulator.update` step for step so the two agree exactly
//! (checked by `tracker/eval/compare.py`):
//! 1. a ground-truth object keeps the hypothesis it was last matched to if
//!    that hypothesis is present and within the distance threshold;
//! 2. the remaining pairs are matched by maximum-cardinality minimum-cost
//!    assignment on distance `1 - IoU`, allowed where `1 - IoU <= 0.5`;
//!    a match to a different hypothesis than last time is a switch;
//! 3. unmatched objects are misses, unmatched hypotheses false positives.
//!
//! IDF1 uses the global one-to-one matching of ground-truth ids to
//! hypothesis ids that maximises the number of frames they overlap
//! (`1 - IoU <= threshold`). Pure: callers read the files.

use std::collections::HashMap;

use crate::assignment::{solve_gated, solve_max_matching, CostMatrix};
use crate::geometry::BoxExt;
use crate::mot::{by_frame, MotRecord};

/// CLEAR-MOT counts and ratios.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClearMot {
    /// Frames in the union of ground-truth and hypothesis frames.
    pub num_frames: usize,
    /// Ground-truth boxes.
    pub num_objects: usize,
    /// Hypothesis boxes.
    pub num_predictions: usize,
    /// Matches that kept the previous identity (or had none).
    pub num_matches: usize,
    /// Matches to a different hypothesis than the object's previous one.
    pub num_switches: usize,
    /// Hypotheses left unmatched.
    pub num_false_positives: usize,
    /// Objects left unmatched.
    pub num_misses: usize,
    /// `1 - (misses + switches + false positives) / objects`.
    pub mota: f64,
    /// Mean distance `1 - IoU` over matches and switches (lower is better).
    pub motp: f64,
}

/// Identity measures after the global id matching.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct IdScores {
    /// Identity true positives.
    pub idtp: usize,
    /// Identity false positives.
    pub idfp: usize,
    /// Identity false negatives.
    pub idfn: usize,
    /// `idtp / (idtp + idfp)`.
    pub idp: f64,
    /// `idtp / (idtp + idfn)`.
    pub idr: f64,
    /// `2 idtp / (2 idtp + idfp + idfn)`.
    pub idf1: f64,
}

/// All scores of one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scores {
    /// CLEAR-MOT.
    pub clear: ClearMot,
    /// Identity measures.
    pub id: IdScores,
}

fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        if num == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        num / den
    }
}

/// Scores `hyp` against `gt`; a pair may match when `1 - IoU <= max_distance`
/// (0.5 is the MOT Challenge standard). Filter the ground truth beforehand
/// (e.g. `conf >= 1`) as the benchmark requires.
pub fn evaluate(gt: &[MotRecord], hyp: &[MotRecord], max_distance: f64) -> Scores {
    let gt_frames = by_frame(gt);
    let hyp_frames = by_frame(hyp);
    let mut frames: Vec<u64> = gt_frames
        .iter()
        .chain(&hyp_frames)
        .map(|(f, _)| *f)
        .collect();
    frames.sort_unstable();
    frames.dedup();
    let gt_map: HashMap<u64, &Vec<&MotRecord>> = gt_frames.iter().map(|(f, v)| (*f, v)).collect();
    let hyp_map: HashMap<u64, &Vec<&MotRecord>> = hyp_frames.iter().map(|(f, v)| (*f, v)).collect();
    let empty: Vec<&MotRecord> = Vec::new();

    let mut clear = ClearMot {
        num_frames: frames.len(),
        num_objects: gt.len(),
        num_predictions: hyp.len(),
        ..ClearMot::default()
    };
    let mut distance_sum = 0.0;
    // Object id -> hypothesis id it was last matched to.
    let mut last_match: HashMap<i64, i64> = HashMap::new();
    // Frames in which each (object, hypothesis) pair was within threshold.
    let mut overlaps: HashMap<(i64, i64), usize> = HashMap::new();
    let mut object_frames: HashMap<i64, usize> = HashMap::new();
    let mut hyp_frames_count: HashMap<i64, usize> = HashMap::new();
    let mut cost = CostMatrix::forbidden(0, 0);

    for f in frames {
        let objs = gt_map.get(&f).copied().unwrap_or(&empty);
        let hyps = hyp_map.get(&f).copied().unwrap_or(&empty);
        for o in objs {
            *object_frames.entry(o.id).or_default() += 1;
        }
        for h in hyps {
            *hyp_frames_count.entry(h.id).or_default() += 1;
        }
        let (no, nh) = (objs.len(), hyps.len());
        cost.reset(no, nh);
        for (i, o) in objs.iter().enumerate() {
            for (j, h) in hyps.iter().enumerate() {
                let d = 1.0 - o.bbox.iou_f64(&h.bbox);
                if d <= max_distance {
                    cost.set(i, j, d);
                    *overlaps.entry((o.id, h.id)).or_default() += 1;
                }
            }
        }
        let mut obj_done = vec![false; no];
        let mut hyp_done = vec![false; nh];
        if no > 0 && nh > 0 {
            // 1. Keep previous correspondences that are still valid.
            for (i, o) in objs.iter().enumerate() {
                let Some(&prev) = last_match.get(&o.id) else {
                    continue;
                };
                let Some(j) = (0..nh).find(|&j| !hyp_done[j] && hyps[j].id == prev) else {
                    continue;
                };
                let d = cost.get(i, j);
                if d.is_finite() {
                    obj_done[i] = true;
                    hyp_done[j] = true;
                    clear.num_matches += 1;
                    distance_sum += d;
                }
            }
            // 2. Optimal assignment of the rest.
            for (i, done) in obj_done.iter().enumerate() {
                for (j, hyp_is_done) in hyp_done.iter().enumerate() {
                    if *done || *hyp_is_done {
                        cost.set(i, j, f64::INFINITY);
                    }
                }
            }
            for &(i, j) in &solve_max_matching(&cost).matches {
                let (o, h) = (objs[i].id, hyps[j].id);
                match last_match.insert(o, h) {
                    Some(prev) if prev != h => clear.num_switches += 1,
                    _ => clear.num_matches += 1,
                }
                distance_sum += cost.get(i, j);
                obj_done[i] = true;
                hyp_done[j] = true;
            }
        }
        clear.num_misses += obj_done.iter().filter(|d| !**d).count();
        clear.num_false_positives += hyp_done.iter().filter(|d| !**d).count();
    }
    clear.mota = 1.0
        - ratio(
            (clear.num_misses + clear.num_switches + clear.num_false_positives) as f64,
            clear.num_objects as f64,
        );
    clear.motp = ratio(
        distance_sum,
        (clear.num_matches + clear.num_switches) as f64,
    );

    let id = identity_scores(&object_frames, &hyp_frames_count, &overlaps);
    Scores { clear, id }
}

fn identity_scores(
    object_frames: &HashMap<i64, usize>,
    hyp_frames: &HashMap<i64, usize>,
    overlaps: &HashMap<(i64, i64), usize>,
) -> IdScores {
    let mut oids: Vec<i64> = object_frames.keys().copied().collect();
    let mut hids: Vec<i64> = hyp_frames.keys().copied().collect();
    oids.sort_unstable();
    hids.sort_unstable();
    let oidx: HashMap<i64, usize> = oids.iter().enumerate().map(|(i, o)| (*o, i)).collect();
    let hidx: HashMap<i64, usize> = hids.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    // Maximise overlapping frames: minimise their negation. Not a
    // maximum-cardinality matching: one long overlap beats two short ones,
    // so every pair is optional (gated assignment with threshold 0).
    let mut cost = CostMatrix::forbidden(oids.len(), hids.len());
    for (&(o, h), &n) in overlaps {
        cost.set(oidx[&o], hidx[&h], -(n as f64));
    }
    let idtp: usize = solve_gated(&cost, 0.0)
        .matches
        .iter()
        .map(|&(r, c)| overlaps[&(oids[r], hids[c])])
        .sum();
    let total_gt: usize = object_frames.values().sum();
    let total_hyp: usize = hyp_frames.values().sum();
    let idfn = total_gt - idtp;
    let idfp = total_hyp - idtp;
    IdScores {
        idtp,
        idfp,
        idfn,
        idp: ratio(idtp as f64, (idtp + idfp) as f64),
        idr: ratio(idtp as f64, (idtp + idfn) as f64),
        idf1: ratio(2.0 * idtp as f64, (2 * idtp + idfp + idfn) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::BBox;

    fn rec(frame: u64, id: i64, x: f32) -> MotRecord {
        MotRecord::new(frame, id, BBox::new(x, 0.0, 10.0, 10.0), 1.0)
    }

    #[test]
    fn perfect_tracking_scores_one() {
        let gt: Vec<_> = (1..=5)
            .flat_map(|f| [rec(f, 1, 0.0), rec(f, 2, 50.0)])
            .collect();
        let hyp: Vec<_> = gt
            .iter()
            .map(|r| MotRecord {
                id: r.id + 10,
                ..r.clone()
            })
            .collect();
        let s = evaluate(&gt, &hyp, 0.5);
        assert_eq!(s.clear.mota, 1.0);
        assert_eq!(s.clear.num_switches, 0);
        assert_eq!(s.id.idf1, 1.0);
        assert_eq!(s.clear.motp, 0.0);
    }

    #[test]
    fn counts_switch_miss_and_false_positive() {
        // Object 1 followed by hyp 10 in frames 1-2, by hyp 11 in frames 3-4.
        // Frame 5: object missed and a stray hypothesis far away.
        let gt: Vec<_> = (1..=5).map(|f| rec(f, 1, 0.0)).collect();
        let hyp = vec![
            rec(1, 10, 0.0),
            rec(2, 10, 1.0),
            rec(3, 11, 0.0),
            rec(4, 11, 0.0),
            rec(5, 12, 100.0),
        ];
        let s = evaluate(&gt, &hyp, 0.5);
        assert_eq!(s.clear.num_switches, 1);
        assert_eq!(s.clear.num_matches, 3);
        assert_eq!(s.clear.num_misses, 1);
        assert_eq!(s.clear.num_false_positives, 1);
        assert!((s.clear.mota - (1.0 - 3.0 / 5.0)).abs() < 1e-12);
        // Best id match covers 2 frames: IDF1 = 2*2 / (5 + 5).
        assert_eq!(s.id.idtp, 2);
        assert!((s.id.idf1 - 0.4).abs() < 1e-12);
    }

    #[test]
    fn identity_matching_prefers_long_overlap_over_more_pairs() {
        // Object 1 overlaps hyp 10 for 4 frames and hyp 11 for 1; object 2
        // overlaps hyp 10 for 1 frame only. Best: (1, 10) alone = 4 frames,
        // not the two-pair matching (1, 11) + (2, 10) = 2 frames.
        let mut gt: Vec<_> = (1..=5).map(|f| rec(f, 1, 0.0)).collect();
        gt.push(rec(6, 2, 0.0));
        let mut hyp: Vec<_> = (1..=4).map(|f| rec(f, 10, 0.0)).collect();
        hyp.push(rec(5, 11, 0.0));
        hyp.push(rec(6, 10, 0.0));
        let s = evaluate(&gt, &hyp, 0.5);
        assert_eq!(s.id.idtp, 4);
    }

    #[test]
    fn previous_correspondence_wins_over_cheaper_pair() {
        // Two objects side by side; hyp 10 follows object 1 even when
        // slightly closer to object 2's box, as long as within threshold.
        let gt = vec![
            rec(1, 1, 0.0),
            rec(1, 2, 4.0),
            rec(2, 1, 0.0),
            rec(2, 2, 4.0),
        ];
        let hyp = vec![
            rec(1, 10, 0.0),
            rec(1, 11, 4.0),
            rec(2, 10, 3.0),
            rec(2, 11, 1.0),
        ];
        let s = evaluate(&gt, &hyp, 0.5);
        assert_eq!(s.clear.num_switches, 0);
        assert_eq!(s.clear.num_matches, 4);
    }
}
