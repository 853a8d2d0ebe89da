//! One camera's tracker: prediction, three-stage association, lifecycle.
//!
//! Owns the tracks of one stream and nothing else: no clocks, no I/O, no
//! threads. The caller feeds one frame's detections at a time with the
//! frame's index; gaps in the index (dropped frames) are predicted through.
//!
//! # Per frame
//! 1. Every track is predicted to this frame (`k` steps for a gap of `k`).
//! 2. Detections are split by score: high (>= `high_score_threshold`), low
//!    (>= `low_score_threshold`), the rest ignored.
//! 3. Stage 1: high detections vs confirmed and lost tracks, on IoU cost
//!    (optionally score-fused and appearance-fused), Mahalanobis-gated.
//! 4. Stage 2: low detections vs confirmed tracks still unmatched (ByteTrack:
//!    an occluded person's detector score drops; keep the track alive with it).
//! 5. Stage 3: remaining high detections vs tentative tracks.
//! 6. Lifecycle: tentative -> confirmed after `min_hits` matches; confirmed ->
//!    lost on a miss; lost -> confirmed again on a match (same id); lost ->
//!    ended after `max_lost_frames`; unmatched high detections above
//!    `new_track_threshold` start tentative tracks.
//! 7. Report: confirmed tracks matched this frame, and lost ones at their
//!    predicted box for up to `report_lost_frames`, but no longer than
//!    `report_lost_hit_ratio` times the frames they were matched in.

use serde::{Deserialize, Serialize};

use crate::assignment::solve_gated_sparse;
use crate::config::TrackerConfig;
use crate::error::TrackError;
use crate::geometry::{BBox, BoxExt};
use crate::kalman::{BoxKalmanFilter, KalmanState, Projection};

/// Identifier of a confirmed track, unique within one camera's tracker
/// (the system-wide newtype from `vidar-protocol`).
pub use vidar_protocol::TrackId;

/// A confirmed track predicted ahead ([`Tracker::predict_confirmed`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Predicted {
    /// The track.
    pub id: TrackId,
    /// Its box at the last frame (the filtered state).
    pub last: BBox,
    /// Its box at the frame predicted to.
    pub now: BBox,
    /// Score of the detection it last matched.
    pub score: f32,
    /// Frames it was matched in.
    pub hits: u32,
}

/// One detector output for one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The detected box.
    pub bbox: BBox,
    /// Detector confidence in [0, 1].
    pub score: f32,
    /// Optional re-ID embedding (any scale; normalised internally).
    pub embedding: Option<Vec<f32>>,
}

impl Detection {
    /// A detection without embedding.
    pub fn new(bbox: BBox, score: f32) -> Self {
        Self {
            bbox,
            score,
            embedding: None,
        }
    }

    /// The same detection with an appearance embedding.
    pub fn with_embedding(mut self, embedding: Vec<f32>) -> Self {
        self.embedding = Some(embedding);
        self
    }
}

/// Where a track is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackStatus {
    /// Born recently; not reported until confirmed.
    Tentative,
    /// Matched in the latest frame (or still within its first miss).
    Confirmed,
    /// Unmatched for at least one frame; predicted, can be re-activated.
    Lost,
}

/// A track as reported for one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackOutput {
    /// The track's id.
    pub id: TrackId,
    /// Filtered box (Kalman posterior if matched this frame, prediction if lost).
    pub bbox: BBox,
    /// Score of the detection that last updated the track.
    pub score: f32,
    /// Index into this frame's detections of the matched detection, if any.
    pub detection: Option<usize>,
    /// `Confirmed` when matched this frame, `Lost` when only predicted.
    pub status: TrackStatus,
    /// Number of frames the track was matched in, including this one.
    pub hits: u32,
}

/// Why a track ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    /// Unmatched for more than `max_lost_frames`.
    Timeout,
    /// The caller flushed the tracker (end of stream, camera removed).
    Flushed,
    /// Lost while its predicted box moved out of the frame (needs `frame_size`).
    LeftView,
}

/// A confirmed track that ended, handed to the caller (re-ID, storage).
#[derive(Debug, Clone, PartialEq)]
pub struct EndedTrack {
    /// The track's id.
    pub id: TrackId,
    /// Frame of the first detection of the track.
    pub first_frame: u64,
    /// Frame of the last matched detection.
    pub last_frame: u64,
    /// Number of frames matched.
    pub hits: u32,
    /// Filtered box at the last match.
    pub last_bbox: BBox,
    /// Smoothed, L2-normalised embedding, if the track had any.
    pub embedding: Option<Vec<f32>>,
    /// Why it ended.
    pub reason: EndReason,
}

/// Everything one frame produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FrameResult {
    /// Confirmed tracks to report for this frame, ascending by id.
    pub tracks: Vec<TrackOutput>,
    /// Tracks that ended at this frame.
    pub ended: Vec<EndedTrack>,
    /// Detections ignored because their box or score was not finite/positive.
    pub rejected_detections: usize,
    /// Embeddings ignored because of a wrong dimension or a zero/NaN norm.
    pub rejected_embeddings: usize,
}

#[derive(Debug, Clone)]
struct Track {
    id: Option<TrackId>,
    status: TrackStatus,
    state: KalmanState,
    hits: u32,
    first_frame: u64,
    last_update: u64,
    last_bbox: BBox,
    score: f32,
    embedding: Option<Vec<f32>>,
}

/// Per-frame scratch: the tracks' predictions and the frame's detections.
struct Scratch<'a> {
    predicted: Vec<BBox>,
    projections: Vec<Option<Projection>>,
    detections: &'a [Detection],
    /// Embedding per detection with the inverse of its norm (None when
    /// absent or rejected); normalised lazily, without copying.
    embeddings: Vec<Option<(&'a [f32], f32)>>,
}

/// Which cost terms a stage uses.
#[derive(Debug, Clone, Copy)]
struct Stage {
    threshold: f32,
    fuse_score: bool,
    appearance: bool,
}

/// The tracker of one camera. Build it with [`TrackerConfig::build`].
#[derive(Debug, Clone)]
pub struct Tracker {
    config: TrackerConfig,
    filter: BoxKalmanFilter,
    tracks: Vec<Track>,
    next_id: u64,
    last_frame: Option<u64>,
    embedding_dim: Option<usize>,
    entries: Vec<(usize, usize, f64)>,
    predicted_buf: Vec<BBox>,
    projection_buf: Vec<Option<Projection>>,
}

/// Dot product with eight independent accumulators: a plain `sum()` is one
/// serial chain of float additions that the compiler may not reorder, which
/// made 512-d embeddings the tracker's bottleneck; this form vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0_f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `1 / |v|`, if the norm is finite and positive.
fn inverse_norm(v: &[f32]) -> Option<f32> {
    let norm = dot(v, v).sqrt();
    (norm.is_finite() && norm > 0.0).then(|| 1.0 / norm)
}

/// Range of detection left edges (`bbox.x`) that can pass a track's gates.
///
/// The Mahalanobis gate bounds the centre's horizontal offset, since a
/// quadratic form is at least its one-dimensional marginal:
/// `dᵀ S⁻¹ d >= dx² / S₀₀`, so `|dx| <= sqrt(gate · S₀₀)`. Without
/// appearance a match also needs overlap (cost `1 - IoU·s < threshold <= 1`
/// implies `IoU > 0`), so the detection must start before the predicted box
/// ends and end after it starts. One pixel of slack absorbs rounding.
fn candidate_range(
    proj: &Projection,
    pred: &BBox,
    gate: f64,
    max_w: f32,
    appearance: bool,
) -> (f32, f32) {
    let reach = (gate * proj.var_cx).sqrt() as f32;
    let cx = proj.mean[0] as f32;
    let mut lo = cx - reach - max_w / 2.0;
    let mut hi = cx + reach;
    if !appearance {
        lo = lo.max(pred.x - max_w);
        hi = hi.min(pred.x + pred.w);
    }
    (lo - 1.0, hi + 1.0)
}

/// Marks a track confirmed, giving it the next id if it has none.
fn confirm(track: &mut Track, next_id: &mut u64) {
    track.status = TrackStatus::Confirmed;
    if track.id.is_none() {
        track.id = Some(TrackId(*next_id));
        *next_id += 1;
    }
}

/// Cosine distance between a unit vector and `b · inv_norm_b`.
fn cosine_distance(unit: &[f32], b: &[f32], inv_norm_b: f32) -> f32 {
    1.0 - dot(unit, b) * inv_norm_b
}

impl Tracker {
    pub(crate) fn new_unchecked(config: TrackerConfig) -> Self {
        Self {
            filter: BoxKalmanFilter::new(config.motion),
            config,
            tracks: Vec::new(),
            next_id: 1,
            last_frame: None,
            embedding_dim: None,
            entries: Vec::new(),
            predicted_buf: Vec::new(),
            projection_buf: Vec::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// The last frame updated, if any since the start or the last flush.
    pub fn last_frame(&self) -> Option<u64> {
        self.last_frame
    }

    /// Number of live tracks (tentative, confirmed and lost).
    pub fn live_tracks(&self) -> usize {
        self.tracks.len()
    }

    /// Where the confirmed tracks the last frame matched will be at `frame`
    /// (a later one), under constant velocity, in `out` (cleared first).
    /// Nothing changes: the next [`Tracker::update`] predicts from the same
    /// state. For the frames the detector skips: the boxes the tracks report
    /// there, and where motion is explained by people already tracked.
    pub fn predict_confirmed(&self, frame: u64, out: &mut Vec<Predicted>) {
        out.clear();
        let Some(last) = self.last_frame else {
            return;
        };
        let steps = frame
            .saturating_sub(last)
            .min(u64::from(self.config.max_lost_frames) + 2) as f64;
        for t in &self.tracks {
            let Some(id) = t.id else {
                continue;
            };
            if t.status != TrackStatus::Confirmed || t.last_update != last {
                continue;
            }
            // The mean moved `steps` frames at its velocity (the covariance
            // is not needed for a box).
            let mut ahead = t.state;
            for i in 0..4 {
                ahead.mean[i] += steps * ahead.mean[i + 4];
            }
            out.push(Predicted {
                id,
                last: t.state.bbox(),
                now: ahead.bbox(),
                score: t.score,
                hits: t.hits,
            });
        }
    }

    /// Processes one frame's detections. `frame` must increase strictly from
    /// call to call; a jump of `k` is treated as `k - 1` dropped frames.
    pub fn update(
        &mut self,
        frame: u64,
        detections: &[Detection],
    ) -> Result<FrameResult, TrackError> {
        let steps = match self.last_frame {
            Some(previous) if frame <= previous => {
                return Err(TrackError::FrameOutOfOrder {
                    previous,
                    got: frame,
                })
            }
            Some(previous) => frame - previous,
            None => 0,
        };
        let first_frame = self.last_frame.is_none();
        self.last_frame = Some(frame);
        let mut result = FrameResult::default();

        // 1. Predict. Beyond max_lost_frames + 1 steps every track is gone anyway.
        let steps = steps.min(u64::from(self.config.max_lost_frames) + 2);
        for track in &mut self.tracks {
            if track.status == TrackStatus::Lost {
                // Do not let a lost box keep growing or shrinking (ByteTrack).
                track.state.mean[6] = 0.0;
                track.state.mean[7] = 0.0;
            }
            for _ in 0..steps {
                track.state = self.filter.predict(&track.state);
            }
        }

        // 2. Validate and split detections.
        // Buffers reused from frame to frame (taken here, returned below).
        let mut predicted = std::mem::take(&mut self.predicted_buf);
        predicted.clear();
        predicted.extend(self.tracks.iter().map(|t| t.state.bbox()));
        let mut projections = std::mem::take(&mut self.projection_buf);
        projections.clear();
        projections.extend(self.tracks.iter().map(|t| self.filter.project(&t.state)));
        let mut scratch = Scratch {
            predicted,
            projections,
            detections,
            embeddings: Vec::with_capacity(detections.len()),
        };
        let (mut high, mut low) = (Vec::new(), Vec::new());
        for (i, det) in detections.iter().enumerate() {
            let emb = det.embedding.as_deref().and_then(|e| {
                let dim_ok = *self.embedding_dim.get_or_insert(e.len()) == e.len();
                let n = if dim_ok {
                    inverse_norm(e).map(|inv| (e, inv))
                } else {
                    None
                };
                if n.is_none() {
                    result.rejected_embeddings += 1;
                }
                n
            });
            scratch.embeddings.push(emb);
            if !det.bbox.is_valid() || !det.score.is_finite() {
                result.rejected_detections += 1;
            } else if det.score >= self.config.high_score_threshold {
                high.push(i);
            } else if det.score >= self.config.low_score_threshold {
                low.push(i);
            }
        }

        let mut matched: Vec<Option<usize>> = vec![None; self.tracks.len()];

        // 3. Stage 1: high detections vs confirmed and lost tracks.
        let pool: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| self.tracks[t].status != TrackStatus::Tentative)
            .collect();
        let stage1 = Stage {
            threshold: self.config.match_threshold_high,
            fuse_score: self.config.fuse_score,
            appearance: true,
        };
        let high_left = self.associate(&pool, &high, &scratch, stage1, &mut matched);

        // 4. Stage 2: low detections vs confirmed tracks not matched yet.
        let tracked_left: Vec<usize> = pool
            .iter()
            .copied()
            .filter(|&t| matched[t].is_none() && self.tracks[t].status == TrackStatus::Confirmed)
            .collect();
        let stage2 = Stage {
            threshold: self.config.match_threshold_low,
            fuse_score: false,
            appearance: false,
        };
        self.associate(&tracked_left, &low, &scratch, stage2, &mut matched);

        // 5. Stage 3: remaining high detections vs tentative tracks.
        let tentative: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| self.tracks[t].status == TrackStatus::Tentative)
            .collect();
        let stage3 = Stage {
            threshold: self.config.match_threshold_tentative,
            fuse_score: self.config.fuse_score,
            appearance: true,
        };
        let unmatched_high = self.associate(&tentative, &high_left, &scratch, stage3, &mut matched);

        // 6. Lifecycle of existing tracks.
        let mut matched_det: Vec<Option<usize>> = Vec::with_capacity(self.tracks.len());
        let mut keep = Vec::with_capacity(self.tracks.len());
        for (t, det) in matched.iter().enumerate() {
            let alive = match *det {
                Some(d) => {
                    let projection = scratch.projections[t].as_ref();
                    self.apply_match(t, frame, &detections[d], projection, scratch.embeddings[d]);
                    true
                }
                None => self.apply_miss(t, frame, &mut result.ended),
            };
            keep.push(alive);
            if alive {
                matched_det.push(*det);
            }
        }
        let mut flags = keep.into_iter();
        self.tracks.retain(|_| flags.next().unwrap_or(false));
        self.predicted_buf = scratch.predicted;
        self.projection_buf = scratch.projections;

        // 7. Births.
        for d in unmatched_high {
            let det = &detections[d];
            if det.score < self.config.new_track_threshold {
                continue;
            }
            let state = self.filter.initiate(&det.bbox);
            let mut track = Track {
                id: None,
                status: TrackStatus::Tentative,
                last_bbox: state.bbox(),
                state,
                hits: 1,
                first_frame: frame,
                last_update: frame,
                score: det.score,
                embedding: scratch.embeddings[d]
                    .map(|(e, inv)| e.iter().map(|x| x * inv).collect()),
            };
            if self.config.min_hits <= 1 || (first_frame && self.config.confirm_on_first_frame) {
                confirm(&mut track, &mut self.next_id);
            }
            self.tracks.push(track);
            matched_det.push(Some(d));
        }

        // 8. Report.
        for (track, det) in self.tracks.iter().zip(&matched_det) {
            let Some(id) = track.id else { continue };
            let since = frame - track.last_update;
            let report = match track.status {
                TrackStatus::Confirmed => since == 0,
                TrackStatus::Lost => since <= self.coast_limit(track.hits),
                TrackStatus::Tentative => false,
            };
            if report {
                result.tracks.push(TrackOutput {
                    id,
                    bbox: track.state.bbox(),
                    score: track.score,
                    detection: *det,
                    status: track.status,
                    hits: track.hits,
                });
            }
        }
        result.tracks.sort_unstable_by_key(|t| t.id);
        Ok(result)
    }

    /// How many frames after its last match a lost track with `hits`
    /// matches is still reported: `report_lost_hit_ratio · hits`, at most
    /// `report_lost_frames`. A track seen for two frames is as likely a
    /// burst of false positives as a person, so it is not extrapolated for
    /// eight; one seen for a second has earned the full bridge.
    fn coast_limit(&self, hits: u32) -> u64 {
        let by_hits = (f64::from(self.config.report_lost_hit_ratio) * f64::from(hits)).floor();
        (by_hits as u64).min(u64::from(self.config.report_lost_frames))
    }

    /// Ends every confirmed or lost track (end of stream) and forgets the rest.
    pub fn flush(&mut self) -> Vec<EndedTrack> {
        let mut ended: Vec<EndedTrack> = self
            .tracks
            .drain(..)
            .filter_map(|t| Self::ended(t, EndReason::Flushed))
            .collect();
        ended.sort_unstable_by_key(|e| e.id);
        self.last_frame = None;
        ended
    }

    fn ended(track: Track, reason: EndReason) -> Option<EndedTrack> {
        Some(EndedTrack {
            id: track.id?,
            first_frame: track.first_frame,
            last_frame: track.last_update,
            hits: track.hits,
            last_bbox: track.last_bbox,
            embedding: track.embedding,
            reason,
        })
    }

    fn apply_match(
        &mut self,
        t: usize,
        frame: u64,
        det: &Detection,
        projection: Option<&Projection>,
        embedding: Option<(&[f32], f32)>,
    ) {
        let momentum = self.config.appearance.momentum;
        let min_hits = self.config.min_hits;
        let track = &mut self.tracks[t];
        track.state = match projection {
            Some(p) => self.filter.update_projected(&track.state, p, &det.bbox),
            None => self.filter.update(&track.state, &det.bbox),
        };
        track.hits += 1;
        track.last_update = frame;
        track.last_bbox = track.state.bbox();
        track.score = det.score;
        if let Some((e, inv)) = embedding {
            match &mut track.embedding {
                None => track.embedding = Some(e.iter().map(|x| x * inv).collect()),
                Some(old) => {
                    let fresh = (1.0 - momentum) * inv;
                    for (o, n) in old.iter_mut().zip(e) {
                        *o = momentum * *o + fresh * n;
                    }
                    match inverse_norm(old) {
                        Some(k) => old.iter_mut().for_each(|x| *x *= k),
                        // Opposite vectors cancelled out: restart from the detection.
                        None => old.iter_mut().zip(e).for_each(|(o, n)| *o = n * inv),
                    }
                }
            }
        }
        match track.status {
            TrackStatus::Tentative if track.hits >= min_hits => confirm(track, &mut self.next_id),
            TrackStatus::Lost => track.status = TrackStatus::Confirmed,
            _ => {}
        }
    }

    /// Returns whether the track stays alive.
    fn apply_miss(&mut self, t: usize, frame: u64, ended: &mut Vec<EndedTrack>) -> bool {
        let track = &mut self.tracks[t];
        let missed = frame - track.last_update;
        match track.status {
            TrackStatus::Tentative => missed <= u64::from(self.config.max_tentative_misses),
            TrackStatus::Confirmed | TrackStatus::Lost => {
                track.status = TrackStatus::Lost;
                let left_view = self
                    .config
                    .frame_size
                    .is_some_and(|fs| fs.visible_fraction(&track.state.bbox()) < 0.5);
                let reason = if left_view {
                    EndReason::LeftView
                } else if missed > u64::from(self.config.max_lost_frames) {
                    EndReason::Timeout
                } else {
                    return true;
                };
                ended.extend(Self::ended(track.clone(), reason));
                false
            }
        }
    }

    /// Matches `tracks` to `dets` (indices into self.tracks / the frame's
    /// detections), records matches in `matched`, returns unmatched detections.
    fn associate(
        &mut self,
        tracks: &[usize],
        dets: &[usize],
        s: &Scratch<'_>,
        stage: Stage,
        matched: &mut [Option<usize>],
    ) -> Vec<usize> {
        if tracks.is_empty() || dets.is_empty() {
            return dets.to_vec();
        }
        let threshold = f64::from(stage.threshold);
        let gate = self.config.motion.gating_threshold;
        let app = self.config.appearance;
        // Detections sorted by left edge, so each track visits only those
        // that can pass its gates (an exact filter: nothing feasible is
        // skipped, see `candidate_range`).
        let mut order: Vec<usize> = (0..dets.len()).collect();
        order.sort_unstable_by(|&a, &b| {
            let (da, db) = (&s.detections[dets[a]].bbox, &s.detections[dets[b]].bbox);
            da.x.total_cmp(&db.x)
        });
        let lefts: Vec<f32> = order
            .iter()
            .map(|&c| s.detections[dets[c]].bbox.x)
            .collect();
        let max_w = dets
            .iter()
            .map(|&d| s.detections[d].bbox.w)
            .fold(0.0_f32, f32::max);
        self.entries.clear();
        for (r, &t) in tracks.iter().enumerate() {
            let Some(proj) = &s.projections[t] else {
                continue;
            };
            let pred = &s.predicted[t];
            let track_emb = if stage.appearance {
                self.tracks[t].embedding.as_deref()
            } else {
                None
            };
            let (lo, hi) = candidate_range(proj, pred, gate, max_w, track_emb.is_some());
            let first = lefts.partition_point(|&x| x < lo);
            let last = lefts.partition_point(|&x| x <= hi);
            for &c in &order[first..last.max(first)] {
                let d = dets[c];
                let det = &s.detections[d];
                let iou = pred.iou(&det.bbox);
                let sim = if stage.fuse_score {
                    iou * det.score
                } else {
                    iou
                };
                let mut cost = 1.0 - sim;
                match (track_emb, s.embeddings[d]) {
                    (Some(te), Some((de, inv))) => {
                        if proj.squared_mahalanobis(&det.bbox) > gate {
                            continue;
                        }
                        let cd = cosine_distance(te, de, inv);
                        if cd > app.max_cosine_distance {
                            continue;
                        }
                        cost = (1.0 - app.weight) * cost + app.weight * cd;
                        if f64::from(cost) >= threshold {
                            continue;
                        }
                    }
                    _ => {
                        if f64::from(cost) >= threshold
                            || proj.squared_mahalanobis(&det.bbox) > gate
                        {
                            continue;
                        }
                    }
                }
                self.entries.push((r, c, f64::from(cost)));
            }
        }
        let assignment = solve_gated_sparse(tracks.len(), dets.len(), &self.entries, threshold);
        for &(r, c) in &assignment.matches {
            matched[tracks[r]] = Some(dets[c]);
        }
        assignment.unmatched_cols.iter().map(|&c| dets[c]).collect()
    }
}

#[cfg(test)]
#[path = "tracker_tests.rs"]
mod tests;
