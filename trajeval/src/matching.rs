//! Recorded boxes onto ground truth: by time to the nearest ground-truth frame
//! of the same camera, then one to one by IoU; detection counts and the
//! CLEAR-MOT / identity scores of each camera (via `vidar-tracker`'s scorer,
//! which mirrors `motmetrics`).

use crate::{ratio, BBox, EvalConfig, EvalError, GtFrame, Sighting, UnixMs};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use vidar_tracker::assignment::{solve_gated, CostMatrix};
use vidar_tracker::mot::MotRecord;

/// Detection counts over scored frames.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DetectionScores {
    /// Ground-truth frames (all pushed frames).
    pub gt_frames: usize,
    /// Ground-truth frames scored (a recorded box, or a declared processed
    /// frame, within the time tolerance).
    pub scored_frames: usize,
    /// Ground-truth boxes in scored frames that count (visible enough).
    pub gt_boxes: usize,
    /// Recorded boxes put on scored frames, less those matched to
    /// "don't care" boxes.
    pub detections: usize,
    /// Recorded boxes matched to a counted ground-truth box.
    pub true_positives: usize,
    /// Recorded boxes matched to nothing.
    pub false_positives: usize,
    /// Counted ground-truth boxes matched to nothing.
    pub false_negatives: usize,
    /// Recorded boxes not scored: farther in time than the tolerance from
    /// every frame, or a second box of one track on one frame (the nearer
    /// in time is kept).
    pub off_frame_boxes: usize,
    /// `true_positives / gt_boxes`.
    pub recall: Option<f64>,
    /// `true_positives / detections`.
    pub precision: Option<f64>,
}

impl DetectionScores {
    fn finish(&mut self) {
        self.recall = ratio(self.true_positives, self.gt_boxes);
        self.precision = ratio(self.true_positives, self.detections);
    }
    fn add(&mut self, o: &DetectionScores) {
        self.gt_frames += o.gt_frames;
        self.scored_frames += o.scored_frames;
        self.gt_boxes += o.gt_boxes;
        self.detections += o.detections;
        self.true_positives += o.true_positives;
        self.false_positives += o.false_positives;
        self.false_negatives += o.false_negatives;
        self.off_frame_boxes += o.off_frame_boxes;
    }
}

/// Scores of one camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraScores {
    /// Camera (mount) name.
    pub camera: String,
    /// Time tolerance used, ms.
    pub time_tolerance_ms: u64,
    /// Recorded minus ground-truth time used (given or estimated), ms.
    pub time_offset_ms: i64,
    /// Detection counts.
    pub detection: DetectionScores,
    /// Tracks (sightings) recorded on this camera.
    pub tracks: usize,
    /// `1 - (misses + switches + false positives) / objects`; `None` without objects.
    pub mota: Option<f64>,
    /// Mean `1 - IoU` of matches (lower is better); `None` without matches.
    pub motp: Option<f64>,
    /// Identity switches of CLEAR-MOT.
    pub id_switches: usize,
    /// Identity F1 with track ids as hypothesis ids; `None` without boxes.
    pub idf1: Option<f64>,
    /// Identity precision.
    pub idp: Option<f64>,
    /// Identity recall.
    pub idr: Option<f64>,
}

/// The result of matching every camera.
#[derive(Debug)]
pub(crate) struct Matched {
    pub total: DetectionScores,
    pub cameras: Vec<CameraScores>,
    /// Majority true person of each sighting's matched boxes (ties: the
    /// smaller id); `None` when none matched.
    pub sighting_persons: Vec<Option<u64>>,
}

/// Half the median frame period of sorted times, at least 1 ms.
fn default_tolerance(times: &[UnixMs]) -> u64 {
    let mut d: Vec<u64> = times
        .windows(2)
        .map(|w| w[1].abs_diff(w[0]))
        .filter(|d| *d > 0)
        .collect();
    if d.is_empty() {
        return 50;
    }
    d.sort_unstable();
    (d[d.len() / 2] / 2).max(1)
}

/// Most boxes looked at when estimating a camera's time offset.
const OFFSET_SAMPLE: usize = 4000;

/// The offset (recorded minus ground-truth time, ms) in `-max..=max` that
/// maximises the summed best IoU of recorded boxes with the ground truth of
/// their nearest frame; ties go to the smallest offset in magnitude.
fn estimate_offset(
    frames: &[&GtFrame],
    times: &[UnixMs],
    tol: u64,
    boxes: &[(UnixMs, BBox)],
    config: &EvalConfig,
) -> i64 {
    let max = i64::try_from(config.max_offset_ms).unwrap_or(i64::MAX);
    let step = i64::try_from(tol / 2).unwrap_or(i64::MAX).max(1);
    let every = boxes.len().div_ceil(OFFSET_SAMPLE).max(1);
    let sample: Vec<&(UnixMs, BBox)> = boxes.iter().step_by(every).collect();
    let mut best = (0.0f64, 0i64);
    let mut candidates: Vec<i64> = (0..=max / step)
        .flat_map(|k| [k * step, -k * step])
        .collect();
    candidates.dedup();
    for off in candidates {
        let mut score = 0.0;
        for (t, b) in &sample {
            let Some(j) = nearest(times, t.add_ms(-off), tol) else {
                continue;
            };
            let iou = frames[j]
                .boxes
                .iter()
                .map(|g| f64::from(g.bbox.iou(b)))
                .fold(0.0, f64::max);
            if iou >= config.iou_threshold {
                score += iou;
            }
        }
        if score > best.0 + 1e-9 {
            best = (score, off);
        }
    }
    best.1
}

/// Index of the frame nearest `t` in sorted `times`, if within `tol`.
fn nearest(times: &[UnixMs], t: UnixMs, tol: u64) -> Option<usize> {
    let i = times.partition_point(|&x| x < t);
    let best = [i.checked_sub(1), (i < times.len()).then_some(i)]
        .into_iter()
        .flatten()
        .min_by_key(|&j| times[j].abs_diff(t))?;
    (times[best].abs_diff(t) <= tol).then_some(best)
}

pub(crate) fn match_all(
    gt: &[GtFrame],
    sightings: &[Sighting],
    processed: Option<&[(String, UnixMs)]>,
    config: &EvalConfig,
) -> Result<Matched, EvalError> {
    let mut by_camera: BTreeMap<&str, Vec<&GtFrame>> = BTreeMap::new();
    for f in gt {
        by_camera.entry(f.camera.as_str()).or_default().push(f);
    }
    for s in sightings {
        if !by_camera.contains_key(s.camera.as_str()) {
            return Err(EvalError::UnknownCamera {
                camera: s.camera.clone(),
                track_id: s.track_id,
            });
        }
    }
    let mut votes: Vec<HashMap<u64, usize>> = vec![HashMap::new(); sightings.len()];
    let mut total = DetectionScores::default();
    let mut cameras = Vec::new();
    let gate = (1.0 - config.iou_threshold) + 1e-9;
    for (camera, mut frames) in by_camera {
        frames.sort_by_key(|f| (f.unix_ms, f.frame));
        let times: Vec<UnixMs> = frames.iter().map(|f| f.unix_ms).collect();
        let tol = config
            .time_tolerance_ms
            .unwrap_or_else(|| default_tolerance(&times));
        let offset = match config.time_offset_ms {
            Some(o) => o,
            None => {
                let boxes: Vec<(UnixMs, BBox)> = sightings
                    .iter()
                    .filter(|s| s.camera == camera)
                    .flat_map(|s| s.path.iter().copied())
                    .collect();
                estimate_offset(&frames, &times, tol, &boxes, config)
            }
        };
        let mut det = DetectionScores {
            gt_frames: frames.len(),
            ..DetectionScores::default()
        };
        // Per frame: (sighting, box index in its path, |dt|), one per sighting.
        let mut obs: Vec<Vec<(usize, usize, u64)>> = vec![Vec::new(); frames.len()];
        let mut scored = vec![false; frames.len()];
        let mut tracks = 0;
        for (si, s) in sightings.iter().enumerate() {
            if s.camera != camera {
                continue;
            }
            tracks += 1;
            for (bi, (t, _)) in s.path.iter().enumerate() {
                let t = t.add_ms(-offset);
                let Some(j) = nearest(&times, t, tol) else {
                    det.off_frame_boxes += 1;
                    continue;
                };
                let dt = times[j].abs_diff(t);
                scored[j] = true;
                match obs[j].iter_mut().find(|o| o.0 == si) {
                    Some(o) if o.2 <= dt => det.off_frame_boxes += 1,
                    Some(o) => {
                        *o = (si, bi, dt);
                        det.off_frame_boxes += 1;
                    }
                    None => obs[j].push((si, bi, dt)),
                }
            }
        }
        for (c, t) in processed.unwrap_or(&[]) {
            if c == camera {
                if let Some(j) = nearest(&times, t.add_ms(-offset), tol) {
                    scored[j] = true;
                }
            }
        }
        let mut gt_mot = Vec::new();
        let mut hyp_mot = Vec::new();
        let mut cost = CostMatrix::forbidden(0, 0);
        for (j, f) in frames.iter().enumerate() {
            if !scored[j] {
                continue;
            }
            det.scored_frames += 1;
            let frame_no = j as u64 + 1;
            let o = &obs[j];
            cost.reset(f.boxes.len(), o.len());
            for (gi, g) in f.boxes.iter().enumerate() {
                for (oi, &(si, bi, _)) in o.iter().enumerate() {
                    let iou = f64::from(g.bbox.iou(&sightings[si].path[bi].1));
                    if iou >= config.iou_threshold {
                        cost.set(gi, oi, 1.0 - iou);
                    }
                }
            }
            let a = solve_gated(&cost, gate);
            let mut hyp_ignored = vec![false; o.len()];
            for &(gi, oi) in &a.matches {
                let g = &f.boxes[gi];
                *votes[o[oi].0].entry(g.person_id).or_default() += 1;
                if g.visibility >= config.min_visibility {
                    det.true_positives += 1;
                } else {
                    hyp_ignored[oi] = true;
                }
            }
            for g in &f.boxes {
                if g.visibility >= config.min_visibility {
                    det.gt_boxes += 1;
                    gt_mot.push(MotRecord::new(frame_no, g.person_id as i64, g.bbox, 1.0));
                }
            }
            for (oi, &(si, bi, _)) in o.iter().enumerate() {
                if !hyp_ignored[oi] {
                    det.detections += 1;
                    let s = &sightings[si];
                    hyp_mot.push(MotRecord::new(
                        frame_no,
                        s.track_id as i64,
                        s.path[bi].1,
                        1.0,
                    ));
                }
            }
        }
        det.false_positives = det.detections - det.true_positives;
        det.false_negatives = det.gt_boxes - det.true_positives;
        det.finish();
        total.add(&det);
        let scores = vidar_tracker::eval::evaluate(&gt_mot, &hyp_mot, 1.0 - config.iou_threshold);
        let matches = scores.clear.num_matches + scores.clear.num_switches;
        let any = !gt_mot.is_empty() || !hyp_mot.is_empty();
        cameras.push(CameraScores {
            camera: camera.to_string(),
            time_tolerance_ms: tol,
            time_offset_ms: offset,
            detection: det,
            tracks,
            mota: (!gt_mot.is_empty()).then_some(scores.clear.mota),
            motp: (matches > 0).then_some(scores.clear.motp),
            id_switches: scores.clear.num_switches,
            idf1: any.then_some(scores.id.idf1),
            idp: (!hyp_mot.is_empty()).then_some(scores.id.idp),
            idr: (!gt_mot.is_empty()).then_some(scores.id.idr),
        });
    }
    total.finish();
    let sighting_persons = votes
        .into_iter()
        .map(|v| {
            v.into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                .map(|(p, _)| p)
        })
        .collect();
    Ok(Matched {
        total,
        cameras,
        sighting_persons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_frame_within_tolerance() {
        let t = [UnixMs(100), UnixMs(200), UnixMs(300)];
        assert_eq!(nearest(&t, UnixMs(149), 50), Some(0));
        assert_eq!(nearest(&t, UnixMs(151), 50), Some(1));
        assert_eq!(nearest(&t, UnixMs(360), 50), None);
        assert_eq!(nearest(&t, UnixMs(40), 50), None);
        assert_eq!(nearest(&[], UnixMs(40), 50), None);
        assert_eq!(
            default_tolerance(&[UnixMs(0), UnixMs(100), UnixMs(200), UnixMs(300)]),
            50
        );
    }
}
