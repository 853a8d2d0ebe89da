//! Scores recorded trajectories against the ground truth of a composite
//! scene (`vidar-camera` `composite:` mounts): detection recall/precision,
//! per-camera MOTA and IDF1, pairwise identity precision/recall/F1 across and
//! within cameras, per-person completeness, per-identity purity, and
//! identities given to two people at once.
//!
//! Pure and synchronous: callers read the files and pass the text
//! ([`input`]) or the values. What every number means is in `README.md`.
//!
//! Matching, in [`matching`]: recorded times are shifted by the camera's
//! latency (given, or estimated as the shift that best aligns the boxes);
//! each recorded box is put on the ground-truth frame of its camera nearest
//! in time (within a tolerance, default half the frame period); only ground-truth frames that received a recorded box (or
//! were declared processed) are scored; in each, boxes are matched one to
//! one by maximum total IoU with IoU >= 0.5. A sighting's true person is the
//! majority person of its matched boxes ([`identity`]).

pub mod identity;
pub mod input;
pub mod matching;

pub use identity::{Conflict, IdentityScore, PairScores, PersonScore, TrailEntry};
pub use input::{parse_ground_truth, InputError};
pub use matching::{CameraScores, DetectionScores};

use serde::{Deserialize, Serialize};
pub use vidar_protocol::BBox;
pub use vidar_protocol::UnixMs;

/// One ground-truth box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GtBox {
    /// True person.
    pub person_id: u64,
    /// Box, pixels.
    pub bbox: BBox,
    /// Visible share of the person, 0..=1.
    pub visibility: f32,
}

/// One pushed frame of one camera with its ground truth (maybe no boxes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GtFrame {
    /// Camera (mount) name.
    pub camera: String,
    /// Frame number on that camera.
    pub frame: u64,
    /// Wall-clock time the frame was sent.
    pub unix_ms: UnixMs,
    /// People in the frame.
    pub boxes: Vec<GtBox>,
}

/// One recorded sighting: a track on one camera with its box path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sighting {
    /// Camera (mount) name, as in the ground truth.
    pub camera: String,
    /// Track id on that camera (the hypothesis id of MOTA/IDF1).
    pub track_id: u64,
    /// Global identity the system gave it, if any.
    pub identity: Option<u64>,
    /// Boxes with their capture times, ms since the Unix epoch.
    pub path: Vec<(UnixMs, BBox)>,
}

/// Scoring settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Largest time difference between a recorded box and its ground-truth
    /// frame, ms. Default: half the median frame period of the camera.
    pub time_tolerance_ms: Option<u64>,
    /// Smallest IoU of a match. Default 0.5.
    pub iou_threshold: f64,
    /// Recorded times minus ground-truth times (the latency from pushing a
    /// frame to its capture time at the receiver), ms. Default: estimated per
    /// camera within `max_offset_ms` as the shift that best aligns the boxes.
    pub time_offset_ms: Option<i64>,
    /// Largest offset tried when estimating it, ms. Default 1000.
    pub max_offset_ms: u64,
    /// Ground-truth boxes less visible than this are "don't care": missing
    /// them is no miss, and a box matched to them is no false positive.
    /// Default 0.0 (every box counts).
    pub min_visibility: f32,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            time_tolerance_ms: None,
            iou_threshold: 0.5,
            time_offset_ms: None,
            max_offset_ms: 1000,
            min_visibility: 0.0,
        }
    }
}

/// Everything the benchmark reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Detection over all cameras.
    pub detection: DetectionScores,
    /// Per camera: detection, MOTA, IDF1.
    pub cameras: Vec<CameraScores>,
    /// Pairs of sightings on different cameras.
    pub cross_camera: PairScores,
    /// Pairs of sightings on the same camera.
    pub same_camera: PairScores,
    /// Per true person.
    pub people: Vec<PersonScore>,
    /// Per identity.
    pub identities: Vec<IdentityScore>,
    /// Mean of `people[].completeness`; `None` without people.
    pub mean_completeness: Option<f64>,
    /// Mean of `identities[].purity`; `None` without identities.
    pub mean_purity: Option<f64>,
    /// Recorded sightings.
    pub sightings: usize,
    /// Sightings none of whose boxes matched a ground-truth box (left out of
    /// the identity measures).
    pub unmatched_sightings: usize,
    /// Matched sightings without an identity (each counts as its own).
    pub sightings_without_identity: usize,
    /// Identities given to two different people whose sightings overlap in
    /// time (goal: zero).
    pub concurrent_conflicts: usize,
    /// The overlapping pairs behind `concurrent_conflicts`.
    pub conflicts: Vec<Conflict>,
}

/// Why scoring refused its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The configuration is out of range.
    #[error("invalid trajectory-evaluation config: {0}")]
    Config(String),
    /// A sighting names a camera without ground truth.
    #[error("sighting of track {track_id} is on camera {camera:?}, which has no ground truth")]
    UnknownCamera {
        /// The camera.
        camera: String,
        /// The track.
        track_id: u64,
    },
}

/// Scores `sightings` against `gt`. `processed`, when given, lists
/// `(camera, unix_ms)` of frames the system analysed: their nearest
/// ground-truth frames are scored even where nothing was recorded.
pub fn evaluate(
    gt: &[GtFrame],
    sightings: &[Sighting],
    processed: Option<&[(String, UnixMs)]>,
    config: &EvalConfig,
) -> Result<Report, EvalError> {
    if !(config.iou_threshold > 0.0 && config.iou_threshold <= 1.0) {
        return Err(EvalError::Config(format!(
            "iou_threshold {} must be in (0, 1]",
            config.iou_threshold
        )));
    }
    if config.max_offset_ms > 60_000 {
        return Err(EvalError::Config(format!(
            "max_offset_ms {} must be at most 60000",
            config.max_offset_ms
        )));
    }
    if !(0.0..=1.0).contains(&config.min_visibility) {
        return Err(EvalError::Config(format!(
            "min_visibility {} must be in 0..=1",
            config.min_visibility
        )));
    }
    let matched = matching::match_all(gt, sightings, processed, config)?;
    let id = identity::score(sightings, &matched.sighting_persons);
    Ok(Report {
        detection: matched.total,
        cameras: matched.cameras,
        cross_camera: id.cross_camera,
        same_camera: id.same_camera,
        mean_completeness: mean(id.people.iter().map(|p| p.completeness)),
        mean_purity: mean(id.identities.iter().map(|i| i.purity)),
        people: id.people,
        identities: id.identities,
        sightings: sightings.len(),
        unmatched_sightings: id.unmatched,
        sightings_without_identity: id.without_identity,
        concurrent_conflicts: id.conflicting_identities,
        conflicts: id.conflicts,
    })
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// `num / den`, or `None` when `den` is zero.
pub(crate) fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

#[cfg(test)]
mod tests;
