//! The master's planner: turns the cluster's current state (cameras, live nodes,
//! measured links) into a stream plan with JSTSH (`vidar_scheduler::jstsh`).
//!
//! Pure and synchronous: no I/O, no clocks; the same inputs and seed give the
//! same plan. It owns the mapping from what nodes report onto the scheduler's
//! model and the stability policy; it must not reimplement the algorithm.
//!
//! # Mapping onto the scheduler's units
//! - **Work unit (wu)** = one detector pass over one frame. Detection + tracking
//!   of a frame is `CL1 = 1 wu` (the detector resizes to its input, so the
//!   resolution does not change it; tracking is included in the profiled rate).
//! - **Re-ID**: re-ID runs on new or uncertain tracks, not on every frame. Each
//!   person in view costs [`REID_CROPS_PER_PERSON_S`] crops per second, so a
//!   stream sends `c = persons * REID_CROPS_PER_PERSON_S / fps` crops per frame.
//!   One crop costs `rho` wu, where `rho` is the geometric mean over nodes of
//!   `detect_fps / reid_crops_per_s` (how many detector frames one crop is
//!   worth); `CL2 = c * rho`.
//! - **Capacity `PS_i`** (wu/s): the scheduler has one processor per node, so a
//!   node's two profiled rates are combined for the cluster's work mix: with
//!   `f` the share of all work that is detection,
//!   `PS_i = 1 / (f / detect_fps_i + (1 - f) / (reid_crops_per_s_i * rho))`
//!   (exact when the node runs that mix). A node without a re-ID model
//!   (`reid_crops_per_s = 0`) gets `PS_i = detect_fps_i` and never runs re-ID;
//!   one without a detector (`detect_fps = 0`) gets `reid_crops_per_s_i * rho`
//!   and ingests no camera; one with neither is left out (warned). `cores` is
//!   informational: the profiled rates already reflect it.
//! - **Memory** `memory_mb` MiB; a detector + tracker takes [`DETECTOR_MEMORY_MB`],
//!   a re-ID model [`REID_MEMORY_MB`].
//! - **Frames**: `frame_bytes = width * height * BITS_PER_PIXEL / 8` (an H.264
//!   frame); cameras reach every node at [`DEFAULT_LINK_MBIT_S`], a pinned
//!   camera only its node. Crops: `D = c * CROP_BYTES` bytes per frame.
//! - **Links**: every pair of nodes is linked at the measured rate (the lower of
//!   the two ends' reports), [`DEFAULT_LINK_MBIT_S`] when neither measured it.
//! - **No re-ID service**: a node with `reid_service = false` (or no re-ID
//!   model) is unreachable for other nodes' crops (`R_ji = 0`), so JSTSH never
//!   offloads to it; a stream detected on a node without a re-ID model has its
//!   re-ID moved to the cheapest allowed node after the search.
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
//!   (a node above utilisation 1) while the fresh plan is cheaper, or the fresh
//!   JSTSH plan is cheaper by more than [`CHURN_THRESHOLD`].

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use vidar_protocol::{CameraId, NodeId};
use vidar_scheduler::jstsh::{
    solve_indexed, CameraStream, CostModel, Loads, ModelMemory, Objective, Problem,
    StreamAlgorithm, StreamInstance,
};
use vidar_scheduler::{Cluster, Link, Node, SchedError};

/// Link rate assumed between nodes (and from cameras) nobody measured, Mbit/s.
pub const DEFAULT_LINK_MBIT_S: f64 = 100.0;
/// Re-ID crops per second per person in view (new and uncertain tracks).
pub const REID_CROPS_PER_PERSON_S: f64 = 0.5;
/// Bytes of one person crop sent for re-ID (a JPEG of about 100x250 pixels).
pub const CROP_BYTES: f64 = 24_000.0;
/// Bits per pixel of an encoded camera frame (H.264 at moderate quality).
pub const BITS_PER_PIXEL: f64 = 0.1;
/// Memory of one detector + tracker instance, MiB.
pub const DETECTOR_MEMORY_MB: u64 = 512;
/// Memory of one re-ID model instance, MiB.
pub const REID_MEMORY_MB: u64 = 256;
/// A fresh plan replaces the previous one only when cheaper by more than this fraction.
pub const CHURN_THRESHOLD: f64 = 0.15;

const MIB: u64 = 1 << 20;
const MBIT: f64 = 1e6 / 8.0;

fn default_persons() -> f64 {
    2.0
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
    /// Expected people per frame (>= 0); default 2.
    #[serde(default = "default_persons")]
    pub persons: f64,
    /// Frame width, pixels.
    pub width: u32,
    /// Frame height, pixels.
    pub height: u32,
    /// The node that must ingest it (e.g. the camera is on that node's LAN); default none.
    #[serde(default)]
    pub pinned: Option<NodeId>,
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
    /// Measured rates to peers, Mbit/s; a missing peer is assumed at [`DEFAULT_LINK_MBIT_S`].
    #[serde(default)]
    pub links: Vec<(NodeId, f64)>,
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
            reason: "no cameras".into(),
        });
    }
    let m = Mapped::new(cameras, nodes)?;
    let p = &m.problem;

    let mut fresh = solve_indexed(p, StreamAlgorithm::Jstsh, seed)?;
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
            } else if obj.max_utilisation > 1.0 && new < old {
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

/// The inputs mapped onto the scheduler's index form.
#[derive(Debug)]
struct Mapped {
    /// The indexed problem (with forbidden re-ID offloads at rate 0).
    problem: Problem,
    /// Protocol id of scheduler node `i`.
    ids: Vec<NodeId>,
    /// Scheduler index by node.
    index: HashMap<NodeId, usize>,
    /// Node `i` has a re-ID model.
    has_reid: Vec<bool>,
    /// Node `i` runs re-ID for other nodes' cameras.
    serves: Vec<bool>,
    /// Link rate between `i` and `j`, bytes/s.
    link: Vec<Vec<f64>>,
    /// Camera id of stream `k`.
    cameras: Vec<CameraId>,
}

fn sched_id(n: &NodeId) -> Result<vidar_scheduler::NodeId, PlanError> {
    Ok(vidar_scheduler::NodeId::new(n.as_str())?)
}

impl Mapped {
    fn new(cameras: &[SiteCamera], nodes: &[NodeView]) -> Result<Self, PlanError> {
        let usable: Vec<&NodeView> = nodes
            .iter()
            .filter(|n| {
                let ok = n.detect_fps > 0.0 || n.reid_crops_per_s > 0.0;
                if !ok {
                    tracing::warn!(node = %n.node, "node has neither detector nor re-ID throughput; left out of the plan");
                }
                ok
            })
            .collect();
        if usable.is_empty() {
            return Err(PlanError::Invalid(vec![
                "no node reports detector or re-ID throughput".into(),
            ]));
        }
        let ids: Vec<NodeId> = usable.iter().map(|n| n.node.clone()).collect();
        let index: HashMap<NodeId, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();

        // Crops per frame, wu per crop, and the detection share of the work.
        let crops: Vec<f64> = cameras
            .iter()
            .map(|c| c.persons * REID_CROPS_PER_PERSON_S / c.fps)
            .collect();
        let ratios: Vec<f64> = usable
            .iter()
            .filter(|n| n.detect_fps > 0.0 && n.reid_crops_per_s > 0.0)
            .map(|n| (n.detect_fps / n.reid_crops_per_s).ln())
            .collect();
        let rho = if ratios.is_empty() {
            1.0
        } else {
            (ratios.iter().sum::<f64>() / ratios.len() as f64).exp()
        };
        let det_work: f64 = cameras.iter().map(|c| c.fps).sum();
        let reid_work: f64 = cameras
            .iter()
            .zip(&crops)
            .map(|(c, x)| c.fps * x * rho)
            .sum();
        let f = det_work / (det_work + reid_work);

        let capacity = |n: &NodeView| match (n.detect_fps > 0.0, n.reid_crops_per_s > 0.0) {
            (true, true) => 1.0 / (f / n.detect_fps + (1.0 - f) / (n.reid_crops_per_s * rho)),
            (true, false) => n.detect_fps,
            _ => n.reid_crops_per_s * rho,
        };
        let mut sched_nodes = Vec::with_capacity(usable.len());
        for n in &usable {
            sched_nodes.push(Node {
                id: sched_id(&n.node)?,
                capacity: capacity(n),
                memory: n.memory_mb.saturating_mul(MIB),
            });
        }

        // Full mesh: the lower of the two ends' measurements, else the default.
        let mut measured: BTreeMap<(usize, usize), f64> = BTreeMap::new();
        for (a, n) in usable.iter().enumerate() {
            for (peer, r) in &n.links {
                if let Some(&b) = index.get(peer).filter(|&&b| b != a) {
                    let e = measured
                        .entry((a.min(b), a.max(b)))
                        .or_insert(f64::INFINITY);
                    *e = e.min(*r);
                }
            }
        }
        let mm = usable.len();
        let mut link = vec![vec![f64::INFINITY; mm]; mm];
        let mut links = Vec::new();
        for a in 0..mm {
            for b in a + 1..mm {
                let r = measured
                    .get(&(a, b))
                    .copied()
                    .unwrap_or(DEFAULT_LINK_MBIT_S)
                    * MBIT;
                link[a][b] = r;
                link[b][a] = r;
                links.push(Link {
                    a: sched_nodes[a].id.clone(),
                    b: sched_nodes[b].id.clone(),
                    bandwidth: r,
                });
            }
        }

        let detectors: Vec<usize> = (0..mm).filter(|&i| usable[i].detect_fps > 0.0).collect();
        if detectors.is_empty() {
            return Err(PlanError::Invalid(vec![
                "no node reports detector throughput".into(),
            ]));
        }
        let mut streams = Vec::with_capacity(cameras.len());
        for (c, x) in cameras.iter().zip(&crops) {
            let pin = c.pinned.as_ref().and_then(|p| index.get(p).copied());
            let reach: Vec<usize> = match pin {
                Some(i) if usable[i].detect_fps > 0.0 => vec![i],
                _ => {
                    if let Some(p) = &c.pinned {
                        tracing::warn!(camera = %c.camera, node = %p, "camera pinned to a node that is absent or cannot detect; placing it elsewhere");
                    }
                    detectors.clone()
                }
            };
            streams.push(CameraStream {
                id: c.camera.as_str().to_string(),
                fps: c.fps,
                frame_bytes: f64::from(c.width) * f64::from(c.height) * BITS_PER_PIXEL / 8.0,
                camera_rates: reach
                    .into_iter()
                    .map(|i| (sched_nodes[i].id.clone(), DEFAULT_LINK_MBIT_S * MBIT))
                    .collect(),
                detect_work: 1.0,
                reid_work: x * rho,
                // At least a byte, so a forbidden hop costs infinity, never 0/0.
                crop_bytes: (x * CROP_BYTES).max(1.0),
            });
        }
        let inst = StreamInstance {
            cluster: Cluster {
                nodes: sched_nodes,
                links,
            },
            models: ModelMemory {
                detector: DETECTOR_MEMORY_MB * MIB,
                reid: REID_MEMORY_MB * MIB,
            },
            streams,
            cost: CostModel::LoadAware,
        };
        let mut problem = Problem::new(&inst)?;
        let has_reid: Vec<bool> = usable.iter().map(|n| n.reid_crops_per_s > 0.0).collect();
        let serves: Vec<bool> = usable
            .iter()
            .zip(&has_reid)
            .map(|(n, &r)| r && n.reid_service)
            .collect();
        for (j, &s) in serves.iter().enumerate() {
            if !s {
                for (i, row) in problem.rate.iter_mut().enumerate() {
                    if i != j {
                        row[j] = 0.0;
                    }
                }
            }
        }
        Ok(Self {
            problem,
            ids,
            index,
            has_reid,
            serves,
            link,
            cameras: cameras.iter().map(|c| c.camera.clone()).collect(),
        })
    }

    /// May a stream detected on `x` run its re-ID on `y`?
    fn reid_allowed(&self, x: usize, y: usize) -> bool {
        if x == y {
            self.has_reid[y]
        } else {
            self.serves[y]
        }
    }

    /// Models fit every node, every stream reaches its nodes, re-ID rules hold.
    fn feasible(&self, a: &[(usize, usize)]) -> bool {
        let p = &self.problem;
        let loads = Loads::of(p, a);
        (0..p.m).all(|i| loads.fits(p, i))
            && a.iter().enumerate().all(|(k, &(x, y))| {
                self.reid_allowed(x, y) && (p.t[k][x] + p.hop(k, x, y)).is_finite()
            })
    }

    /// The cheapest feasible `(detect, re-ID)` for stream `k`, all others fixed;
    /// with `move_detect` false only its re-ID node changes.
    fn best_spot(
        &self,
        a: &[(usize, usize)],
        k: usize,
        move_detect: bool,
    ) -> Option<(usize, usize)> {
        let p = &self.problem;
        let xs: Vec<usize> = if move_detect {
            (0..p.m).filter(|&i| p.t[k][i].is_finite()).collect()
        } else {
            vec![a[k].0]
        };
        let mut trial = a.to_vec();
        let mut best: Option<((usize, usize), f64)> = None;
        for &x in &xs {
            for y in (0..p.m).filter(|&y| self.reid_allowed(x, y)) {
                trial[k] = (x, y);
                if !self.feasible(&trial) {
                    continue;
                }
                let c = Objective::of(p, &trial).load_aware_cost;
                if c.is_finite() && best.is_none_or(|(_, b)| c < b) {
                    best = Some(((x, y), c));
                }
            }
        }
        best.map(|(s, _)| s)
    }

    /// The previous plan where still valid, the rest placed one by one at their
    /// cheapest spot (starting from `fresh`); with how many cameras moved.
    /// `None` when no previous placement is usable.
    fn sticky(
        &self,
        prev: &PlanOutput,
        fresh: &[(usize, usize)],
    ) -> Option<(Vec<(usize, usize)>, usize)> {
        let p = &self.problem;
        let before: HashMap<&str, (Option<usize>, Option<usize>)> = prev
            .streams
            .iter()
            .map(|s| {
                (
                    s.camera.as_str(),
                    (
                        self.index.get(&s.node).copied(),
                        self.index.get(&s.reid_node).copied(),
                    ),
                )
            })
            .collect();
        let mut a = fresh.to_vec();
        let mut moved = Vec::new();
        for (k, id) in self.cameras.iter().enumerate() {
            match before.get(id.as_str()) {
                Some(&(Some(x), Some(y))) if p.t[k][x].is_finite() && self.reid_allowed(x, y) => {
                    a[k] = (x, y);
                }
                _ => moved.push(k),
            }
        }
        if moved.len() == p.k() {
            return None;
        }
        for &k in &moved {
            if let Some(s) = self.best_spot(&a, k, true) {
                a[k] = s;
            }
        }
        Some((a, moved.len()))
    }

    /// The plan in protocol terms, with link shares for the crop flows.
    fn output(&self, cameras: &[SiteCamera], a: &[(usize, usize)], reason: String) -> PlanOutput {
        let streams = cameras
            .iter()
            .zip(a)
            .map(|(c, &(x, y))| Placed {
                camera: c.camera.clone(),
                source: c.source.clone(),
                node: self.ids[x].clone(),
                reid_node: self.ids[y].clone(),
            })
            .collect();
        // Crop flows between node pairs; each crosses the direct link, shared
        // fairly by every flow on it (both directions share a link).
        let mut flows: Vec<(usize, usize)> = a.iter().copied().filter(|(x, y)| x != y).collect();
        flows.sort_unstable();
        flows.dedup();
        let mut per_link: HashMap<(usize, usize), u32> = HashMap::new();
        for &(x, y) in &flows {
            *per_link.entry((x.min(y), x.max(y))).or_default() += 1;
        }
        let mut bandwidth: Vec<(NodeId, NodeId, u64)> = flows
            .iter()
            .map(|&(x, y)| {
                let n = per_link[&(x.min(y), x.max(y))];
                (
                    self.ids[x].clone(),
                    self.ids[y].clone(),
                    (self.link[x][y] / f64::from(n)) as u64,
                )
            })
            .collect();
        bandwidth.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        PlanOutput {
            streams,
            bandwidth,
            cost: Objective::of(&self.problem, a).load_aware_cost,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, detect: f64, reid: f64) -> NodeView {
        NodeView {
            node: NodeId::new(name).unwrap(),
            cores: 4,
            memory_mb: 4096,
            detect_fps: detect,
            reid_crops_per_s: reid,
            reid_service: true,
            links: Vec::new(),
        }
    }

    fn cam(name: &str, fps: f64) -> SiteCamera {
        SiteCamera {
            camera: CameraId::new(name).unwrap(),
            source: format!("rtsp://cams/{name}"),
            fps,
            persons: 2.0,
            width: 1280,
            height: 720,
            pinned: None,
        }
    }

    fn cams(n: usize) -> Vec<SiteCamera> {
        (0..n).map(|i| cam(&format!("cam{i}"), 10.0)).collect()
    }

    /// Two fast nodes and one 12x slower.
    fn site() -> Vec<NodeView> {
        vec![
            node("fast-a", 60.0, 60.0),
            node("slow", 5.0, 5.0),
            node("fast-b", 60.0, 60.0),
        ]
    }

    fn count_on(out: &PlanOutput, n: &str) -> usize {
        out.streams.iter().filter(|s| s.node.as_str() == n).count()
    }

    fn assert_each_once(out: &PlanOutput, cameras: &[SiteCamera]) {
        assert_eq!(out.streams.len(), cameras.len());
        for c in cameras {
            assert_eq!(
                out.streams.iter().filter(|s| s.camera == c.camera).count(),
                1,
                "{} placed once",
                c.camera
            );
        }
    }

    #[test]
    fn every_camera_placed_exactly_once() {
        let cameras = cams(9);
        let out = plan(&cameras, &site(), None, 1).unwrap();
        assert_each_once(&out, &cameras);
        assert!(out.cost.is_finite() && out.cost > 0.0);
        for (s, c) in out.streams.iter().zip(&cameras) {
            assert_eq!(s.source, c.source);
        }
    }

    #[test]
    fn slow_node_gets_fewer_streams_and_offloads_reid() {
        let cameras = cams(4);
        let out = plan(&cameras, &site(), None, 7).unwrap();
        assert_each_once(&out, &cameras);
        let slow = count_on(&out, "slow");
        assert!(slow < count_on(&out, "fast-a"), "{out:?}");
        assert!(slow < count_on(&out, "fast-b"), "{out:?}");
        for s in out.streams.iter().filter(|s| s.node.as_str() == "slow") {
            assert_ne!(s.reid_node.as_str(), "slow", "{out:?}");
        }
        assert!(out.streams.iter().all(|s| s.reid_node.as_str() != "slow"));
    }

    #[test]
    fn pinned_camera_on_slow_node_offloads_its_reid() {
        let mut cameras = cams(4);
        cameras[2].pinned = Some(NodeId::new("slow").unwrap());
        let out = plan(&cameras, &site(), None, 7).unwrap();
        assert_each_once(&out, &cameras);
        let s = &out.streams[2];
        assert_eq!(s.node.as_str(), "slow");
        assert_ne!(s.reid_node.as_str(), "slow");
        // Its crops cross a link that carries no other flow: it has the whole link.
        let flow = out
            .bandwidth
            .iter()
            .find(|f| f.0 == s.node && f.1 == s.reid_node)
            .expect("a flow for the offloaded crops");
        assert_eq!(flow.2, (DEFAULT_LINK_MBIT_S * MBIT) as u64);
        assert_eq!(count_on(&out, "slow"), 1);
    }

    #[test]
    fn pinned_cameras_are_honoured() {
        let mut cameras = cams(6);
        for c in &mut cameras {
            c.pinned = Some(NodeId::new("fast-b").unwrap());
        }
        cameras[0].pinned = Some(NodeId::new("slow").unwrap());
        let out = plan(&cameras, &site(), None, 3).unwrap();
        assert_eq!(out.streams[0].node.as_str(), "slow");
        for s in &out.streams[1..] {
            assert_eq!(s.node.as_str(), "fast-b");
        }
    }

    #[test]
    fn camera_pinned_to_absent_node_is_placed_elsewhere() {
        let mut cameras = cams(2);
        cameras[0].pinned = Some(NodeId::new("gone").unwrap());
        let out = plan(&cameras, &site(), None, 3).unwrap();
        assert_each_once(&out, &cameras);
        assert_ne!(out.streams[0].node.as_str(), "gone");
    }

    #[test]
    fn removed_node_cameras_move_to_remaining_nodes() {
        let cameras = cams(6);
        let nodes = site();
        let before = plan(&cameras, &nodes, None, 5).unwrap();
        assert!(count_on(&before, "fast-b") > 0);
        let left: Vec<NodeView> = nodes
            .into_iter()
            .filter(|n| n.node.as_str() != "fast-b")
            .collect();
        for prev in [None, Some(&before)] {
            let out = plan(&cameras, &left, prev, 5).unwrap();
            assert_each_once(&out, &cameras);
            for s in &out.streams {
                assert_ne!(s.node.as_str(), "fast-b");
                assert_ne!(s.reid_node.as_str(), "fast-b");
            }
            assert!(out
                .bandwidth
                .iter()
                .all(|b| b.0.as_str() != "fast-b" && b.1.as_str() != "fast-b"));
        }
    }

    #[test]
    fn same_inputs_with_previous_are_kept() {
        let cameras = cams(5);
        let first = plan(&cameras, &site(), None, 9).unwrap();
        let second = plan(&cameras, &site(), Some(&first), 9).unwrap();
        assert_eq!(second.reason, "kept");
        assert_eq!(second.streams, first.streams);
        assert_eq!(second.bandwidth, first.bandwidth);
        assert!((second.cost - first.cost).abs() < 1e-12);
    }

    #[test]
    fn much_worse_previous_is_replaced() {
        let cameras = cams(4);
        let first = plan(&cameras, &site(), None, 9).unwrap();
        let mut bad = first.clone();
        for s in &mut bad.streams {
            s.node = NodeId::new("slow").unwrap();
            s.reid_node = NodeId::new("slow").unwrap();
        }
        let out = plan(&cameras, &site(), Some(&bad), 9).unwrap();
        assert!(out.reason.starts_with("replanned"), "{}", out.reason);
        assert_eq!(out.streams, first.streams);
    }

    #[test]
    fn new_camera_keeps_the_others_in_place() {
        let cameras = cams(4);
        let first = plan(&cameras, &site(), None, 2).unwrap();
        let more = cams(5);
        let out = plan(&more, &site(), Some(&first), 2).unwrap();
        assert_each_once(&out, &more);
        assert_eq!(out.streams[..4], first.streams[..]);
        assert!(out.reason.starts_with("kept 4"), "{}", out.reason);
    }

    #[test]
    fn no_reid_service_node_serves_only_its_own_streams() {
        let mut nodes = vec![node("weak", 60.0, 1.0), node("big", 60.0, 600.0)];
        nodes[1].reid_service = false;
        let mut cameras = cams(3);
        cameras[0].pinned = Some(NodeId::new("weak").unwrap());
        let out = plan(&cameras, &nodes, None, 1).unwrap();
        for s in &out.streams {
            if s.reid_node.as_str() == "big" {
                assert_eq!(s.node.as_str(), "big", "{out:?}");
            }
        }
        // With the service on, the weak node's re-ID goes to the big one.
        nodes[1].reid_service = true;
        let out = plan(&cameras, &nodes, None, 1).unwrap();
        assert_eq!(out.streams[0].reid_node.as_str(), "big", "{out:?}");
    }

    #[test]
    fn node_without_reid_model_never_runs_reid() {
        let nodes = vec![node("a", 60.0, 0.0), node("b", 60.0, 60.0)];
        let mut cameras = cams(3);
        cameras[0].pinned = Some(NodeId::new("a").unwrap());
        let out = plan(&cameras, &nodes, None, 1).unwrap();
        assert_eq!(out.streams[0].node.as_str(), "a");
        assert!(
            out.streams.iter().all(|s| s.reid_node.as_str() == "b"),
            "{out:?}"
        );
    }

    #[test]
    fn empty_node_list_errors_clearly() {
        let err = plan(&cams(2), &[], None, 0).unwrap_err();
        assert_eq!(err, PlanError::NoNodes { cameras: 2 });
        assert!(err.to_string().contains("no live nodes"));
    }

    #[test]
    fn no_cameras_gives_an_empty_plan() {
        let out = plan(&[], &site(), None, 0).unwrap();
        assert!(out.streams.is_empty() && out.bandwidth.is_empty());
        assert_eq!(out.cost, 0.0);
    }

    #[test]
    fn bad_inputs_are_all_reported() {
        let mut cameras = cams(2);
        cameras[0].fps = 0.0;
        cameras[1].camera = cameras[0].camera.clone();
        let mut nodes = site();
        nodes[0].detect_fps = f64::NAN;
        let PlanError::Invalid(problems) = plan(&cameras, &nodes, None, 0).unwrap_err() else {
            panic!("expected Invalid");
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

    #[test]
    fn deterministic_for_a_seed() {
        let cameras = cams(12);
        let a = plan(&cameras, &site(), None, 42).unwrap();
        let b = plan(&cameras, &site(), None, 42).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn measured_links_set_the_shares() {
        let mut nodes = vec![
            node("a", 60.0, 1.0),
            node("b", 60.0, 600.0),
            node("c", 60.0, 1.0),
        ];
        nodes[0].links = vec![(NodeId::new("b").unwrap(), 40.0)];
        nodes[1].links = vec![(NodeId::new("a").unwrap(), 80.0)];
        let mut cameras = cams(2);
        cameras[0].pinned = Some(NodeId::new("a").unwrap());
        cameras[1].pinned = Some(NodeId::new("c").unwrap());
        let out = plan(&cameras, &nodes, None, 1).unwrap();
        let a_b = out
            .bandwidth
            .iter()
            .find(|f| f.0.as_str() == "a" && f.1.as_str() == "b")
            .expect("a offloads to b");
        assert_eq!(a_b.2, (40.0 * MBIT) as u64);
    }

    #[test]
    fn plan_output_round_trips_through_json() {
        let out = plan(&cams(3), &site(), None, 1).unwrap();
        let json = serde_json::to_string(&out).unwrap();
        let back: PlanOutput = serde_json::from_str(&json).unwrap();
        assert_eq!(back, out);
        let c: SiteCamera = serde_json::from_str(
            r#"{"camera":"c1","source":"rtsp://x","fps":10,"width":640,"height":480}"#,
        )
        .unwrap();
        assert_eq!(c.persons, 2.0);
        assert_eq!(c.pinned, None);
    }
}
