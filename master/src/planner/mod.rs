//! The master's planner: turns the cluster's current state (cameras, live nodes,
//! measured links) into a stream plan with JSTSH (`vidar_scheduler::jstsh`).
//!
//! Pure and synchronous: no I/O, no clocks; the same inputs and seed give the
//! same plan. It owns the mapping from what nodes report onto the scheduler's
//! model and the stability policy; it must not reimplement the algorithm.
//!
//! Split along its concerns: this module holds the inputs, the output and the
//! policy ([`plan`]); [`model`] maps the inputs onto the scheduler's units
//! (its doc states the rate model); `placement` checks and searches
//! placements (feasibility, one stream's cheapest spot, the previous plan kept
//! where still good); `output` turns a placement back into protocol terms
//! with the link shares of the crop flows.
//!
//! # Policy
//! - No nodes: [`PlanError::NoNodes`]. No cameras: an empty plan.
//! - A camera pinned to a node that is absent (or cannot detect) is placed
//!   anywhere, with a warning: the operator would rather see it analysed from
//!   another node than not at all; if it is really unreachable that node's
//!   stream status says so.
//! - Stability: moving a camera costs a reconnect. The previous placement of
//!   every camera whose nodes are still live and allowed is kept; cameras without
//!   one are placed one by one at their cheapest spot. That plan is returned
//!   (reason `kept` when nothing moved) unless it is infeasible, or overloaded
//!   (a node above utilisation 1) while the fresh plan is cheaper and ends the
//!   overload or lowers it by more than [`OVERLOAD_MARGIN`], or the fresh
//!   JSTSH plan is cheaper by more than [`CHURN_THRESHOLD`].
//!
//! How rates, capacities and links are derived is in [`model`].

pub mod model;
mod output;
mod placement;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use vidar_protocol::{CameraId, JobId, NodeId, StageId};
use vidar_scheduler::jstsh::{solve_indexed, Objective, StreamAlgorithm};
use vidar_scheduler::SchedError;

use model::Mapped;
pub use model::{
    crop_work, ordered, pair_rates, BITS_PER_PIXEL, CROP_BYTES, DEFAULT_LINK_MBIT_S,
    DETECTOR_MEMORY_MB, MIN_DETECT_SHARE, REID_CROPS_PER_PERSON_S, REID_MEMORY_MB,
};

/// A fresh plan replaces the previous one only when cheaper by more than this fraction.
pub const CHURN_THRESHOLD: f64 = 0.15;

/// An overloaded previous plan is replaced by a cheaper fresh one only when
/// the fresh plan ends the overload or lowers the highest utilisation by more
/// than this fraction.
pub const OVERLOAD_MARGIN: f64 = 0.10;

/// Whether moving from a plan whose busiest node is at `old` to one at `new`
/// is worth the reconnects: when a site has more work than capacity every
/// plan overloads some node, and trading one overloaded node for another
/// about as loaded only moves cameras back and forth (each move costs the
/// camera a reconnect and its tracks).
fn relieves_overload(old: f64, new: f64) -> bool {
    old > 1.0 && (new <= 1.0 || new < (1.0 - OVERLOAD_MARGIN) * old)
}

fn default_persons() -> f64 {
    2.0
}

fn default_detect_share() -> f64 {
    1.0
}

/// A camera the site wants analysed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteCamera {
    /// The camera.
    pub camera: CameraId,
    /// Its source URL (`rtsp://...`, `file://...`).
    pub source: String,
    /// Frames per second it sends (> 0).
    pub fps: f64,
    /// Expected people per frame (>= 0); default 2. Planned with until the
    /// node that ingests the camera measures it (`plans::measured::measured_persons`).
    #[serde(default = "default_persons")]
    pub persons: f64,
    /// Detector runs per frame it sends (0..=1]; default 1, every frame.
    /// Planned with until the node that ingests the camera measures it
    /// (`plans::measured::measured_detect_shares`): a node that detects every n-th
    /// frame, or whose motion gate skips still ones, spends that share of
    /// a detector frame per camera frame.
    #[serde(default = "default_detect_share")]
    pub detect_share: f64,
    /// Detector frames of the rest of a frame's work on the node that
    /// ingests it (receiving and decoding the stream, tracking, crops and
    /// their JPEGs, storage), whether or not the detector runs on it; >= 0,
    /// default 0. Planned with from what that node's CPU measures
    /// (`plans::measured::measured_frame_work`).
    #[serde(default)]
    pub ingest_work: f64,
    /// Frame width, pixels.
    pub width: u32,
    /// Frame height, pixels.
    pub height: u32,
    /// The node that must ingest it (e.g. the camera is on that node's LAN); default none.
    #[serde(default)]
    pub pinned: Option<NodeId>,
}

impl SiteCamera {
    /// Detector frames one of its frames costs the detector: its
    /// `detect_share`, at least [`MIN_DETECT_SHARE`].
    pub fn detect_work(&self) -> f64 {
        self.detect_share.clamp(MIN_DETECT_SHARE, 1.0)
    }

    /// Detector frames one of its frames costs the node that ingests it in
    /// all: [`detect_work`](Self::detect_work) and its `ingest_work`.
    pub fn frame_work(&self) -> f64 {
        self.detect_work() + self.ingest_work
    }

    /// Re-ID crops per second it sends: [`REID_CROPS_PER_PERSON_S`] for
    /// each person in view.
    pub fn reid_crops_per_s(&self) -> f64 {
        self.persons * REID_CROPS_PER_PERSON_S
    }
}

/// A live node as the master sees it from its status reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeView {
    /// The node.
    pub node: NodeId,
    /// CPU cores available (informational; the profiled rates include it).
    pub cores: u32,
    /// Memory available for models, MiB.
    pub memory_mb: u64,
    /// Profiled detector throughput, frames/s (0: cannot detect).
    pub detect_fps: f64,
    /// Profiled re-ID throughput, crops/s (0: no re-ID model).
    pub reid_crops_per_s: f64,
    /// Whether it serves re-ID for other nodes' cameras.
    pub reid_service: bool,
    /// Detector frames to JPEG-encode one megapixel of a job's frame for
    /// another node (`NodeCapacity::jpeg_encode_cost`; 0: not measured).
    #[serde(default)]
    pub jpeg_encode_cost: f64,
    /// The same to decode one from another node.
    #[serde(default)]
    pub jpeg_decode_cost: f64,
    /// What the node's own work (everything but its analytics jobs:
    /// ingest, decoding, detection, tracking, re-ID, storage) used over
    /// about its last half minute, in detector frames/s: its process's CPU
    /// less its jobs' threads', over the cores `detect_fps` spans
    /// (`NodeLoad::cpu_cores`, `NodeCapacity::detect_cores`; 0: not
    /// measured). Jobs plan with what is left of `detect_fps` by this or by
    /// the model of its cameras' work, whichever is more.
    #[serde(default)]
    pub own_work_fps: f64,
    /// Measured rates to peers, Mbit/s; a missing peer is assumed at [`DEFAULT_LINK_MBIT_S`].
    #[serde(default)]
    pub links: Vec<(NodeId, f64)>,
    /// Its upload as its probes saw it, Mbit/s: their bytes and all its
    /// jobs sent meanwhile (`LinkRate::upload_mbit_s`, the highest).
    #[serde(default)]
    pub upload_mbit_s: Option<f64>,
    /// The measured bitrate of each camera it ingests, bits/s.
    #[serde(default)]
    pub camera_bitrates: Vec<(CameraId, f64)>,
    /// The measured people per frame of each camera it ingests (those that
    /// saw anyone yet).
    #[serde(default)]
    pub camera_persons: Vec<(CameraId, f64)>,
    /// The measured detector runs per analysed frame of each camera it
    /// ingests (those it analysed frames of yet).
    #[serde(default)]
    pub camera_detect_shares: Vec<(CameraId, f64)>,
    /// The frames/s arriving from each camera it ingests (those sending).
    #[serde(default)]
    pub camera_fps: Vec<(CameraId, f64)>,
    /// What each job flow from it needs: `(job, stage fed, items offered,
    /// bytes per item)`.
    #[serde(default)]
    pub job_flows: Vec<(JobId, StageId, u64, f64)>,
}

/// One camera's placement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    /// The camera.
    pub camera: CameraId,
    /// Its source URL.
    pub source: String,
    /// The node that ingests, detects and tracks it.
    pub node: NodeId,
    /// The node where its crops are embedded and matched (may be `node`).
    pub reid_node: NodeId,
}

/// A stream plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanOutput {
    /// One entry per camera, in the order the cameras were given.
    pub streams: Vec<Placed>,
    /// `(from, to, bytes/s)`: the link share of each cross-node crop flow, sorted.
    pub bandwidth: Vec<(NodeId, NodeId, u64)>,
    /// JSTSH load-aware objective of this plan (sum of per-frame latencies, s).
    pub cost: f64,
    /// Every objective value of this plan under the scheduler's model.
    pub predicted: Objective,
    /// Why this plan: `kept`, `no cameras`, or what changed.
    pub reason: String,
}

/// Why no plan could be made.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PlanError {
    /// There is no live node to place anything on.
    #[error("no live nodes: cannot place {cameras} camera(s)")]
    NoNodes {
        /// Cameras waiting for a node.
        cameras: usize,
    },
    /// The inputs are inconsistent; every problem found is listed.
    #[error("invalid planner input: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The scheduler rejected the instance or found no feasible placement.
    #[error("scheduler: {0}")]
    Scheduler(#[from] SchedError),
}

/// Plans `cameras` onto `nodes` with JSTSH, keeping `previous` where it is still good.
pub fn plan(
    cameras: &[SiteCamera],
    nodes: &[NodeView],
    previous: Option<&PlanOutput>,
    seed: u64,
) -> Result<PlanOutput, PlanError> {
    plan_with(cameras, nodes, previous, seed, StreamAlgorithm::Jstsh)
}

/// Plans with `algorithm` (JSTSH or one of the scheduler's baselines, for
/// comparisons on a testbed), keeping `previous` where it is still good by
/// the same rules whatever the algorithm.
pub fn plan_with(
    cameras: &[SiteCamera],
    nodes: &[NodeView],
    previous: Option<&PlanOutput>,
    seed: u64,
    algorithm: StreamAlgorithm,
) -> Result<PlanOutput, PlanError> {
    if nodes.is_empty() {
        return Err(PlanError::NoNodes {
            cameras: cameras.len(),
        });
    }
    validate(cameras, nodes)?;
    if cameras.is_empty() {
        return Ok(PlanOutput {
            streams: Vec::new(),
            bandwidth: Vec::new(),
            cost: 0.0,
            predicted: Objective::default(),
            reason: "no cameras".into(),
        });
    }
    let m = Mapped::new(cameras, nodes)?;
    let p = &m.problem;

    let mut fresh = solve_indexed(p, algorithm, seed)?;
    for k in 0..p.k() {
        if !m.reid_allowed(fresh[k].0, fresh[k].1) {
            fresh[k] = m.best_spot(&fresh, k, false).ok_or_else(|| {
                SchedError::Infeasible(format!(
                    "camera {}: no node can run its re-ID",
                    cameras[k].camera
                ))
            })?;
        }
    }
    let fresh_obj = Objective::of(p, &fresh);

    let (assign, reason) = match previous.and_then(|prev| m.sticky(prev, &fresh)) {
        Some((sticky, moved)) => {
            let obj = Objective::of(p, &sticky);
            let (old, new) = (obj.load_aware_cost, fresh_obj.load_aware_cost);
            if !m.feasible(&sticky) {
                (fresh, "replanned: previous plan is infeasible".to_string())
            } else if relieves_overload(obj.max_utilisation, fresh_obj.max_utilisation) && new < old
            {
                (
                    fresh,
                    format!(
                        "replanned: previous plan overloads a node (utilisation {:.2})",
                        obj.max_utilisation
                    ),
                )
            } else if new < (1.0 - CHURN_THRESHOLD) * old {
                (
                    fresh,
                    format!(
                        "replanned: {:.0} % cheaper than the previous plan",
                        100.0 * (1.0 - new / old)
                    ),
                )
            } else if moved == 0 {
                (sticky, "kept".to_string())
            } else {
                (
                    sticky,
                    format!(
                        "kept {} placement(s), placed {moved} camera(s)",
                        p.k() - moved
                    ),
                )
            }
        }
        None if previous.is_some() => (
            fresh,
            "replanned: nothing of the previous plan is usable".into(),
        ),
        None => (fresh, "initial plan".into()),
    };
    Ok(m.output(cameras, &assign, reason))
}

/// Reports every problem in the inputs at once.
fn validate(cameras: &[SiteCamera], nodes: &[NodeView]) -> Result<(), PlanError> {
    let mut problems = Vec::new();
    let mut seen = HashMap::new();
    for c in cameras {
        if seen.insert(&c.camera, ()).is_some() {
            problems.push(format!("camera {} appears twice", c.camera));
        }
        if !(c.fps.is_finite() && c.fps > 0.0) {
            problems.push(format!("camera {}: fps {} must be > 0", c.camera, c.fps));
        }
        if !(c.persons.is_finite() && c.persons >= 0.0) {
            problems.push(format!(
                "camera {}: persons {} must be >= 0",
                c.camera, c.persons
            ));
        }
        if !(c.detect_share.is_finite() && c.detect_share > 0.0 && c.detect_share <= 1.0) {
            problems.push(format!(
                "camera {}: detect_share {} must be in (0, 1]",
                c.camera, c.detect_share
            ));
        }
        if !(c.ingest_work.is_finite() && c.ingest_work >= 0.0) {
            problems.push(format!(
                "camera {}: ingest_work {} must be >= 0",
                c.camera, c.ingest_work
            ));
        }
        if c.width == 0 || c.height == 0 {
            problems.push(format!(
                "camera {}: size {}x{} must be positive",
                c.camera, c.width, c.height
            ));
        }
    }
    let mut seen = HashMap::new();
    for n in nodes {
        if seen.insert(&n.node, ()).is_some() {
            problems.push(format!("node {} appears twice", n.node));
        }
        for (what, v) in [
            ("detect_fps", n.detect_fps),
            ("reid_crops_per_s", n.reid_crops_per_s),
            ("jpeg_encode_cost", n.jpeg_encode_cost),
            ("jpeg_decode_cost", n.jpeg_decode_cost),
            ("own_work_fps", n.own_work_fps),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                problems.push(format!("node {}: {what} {v} must be >= 0", n.node));
            }
        }
        for (peer, r) in &n.links {
            if !(r.is_finite() && *r > 0.0) {
                problems.push(format!(
                    "node {}: link to {peer} {r} Mbit/s must be > 0",
                    n.node
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PlanError::Invalid(problems))
    }
}
