//! The planner's inputs mapped onto JSTSH's index form (`Mapped`): the
//! rate model, node capacities, the link mesh, each camera's stream and the
//! re-ID offloads a node refuses. Placement and output read what it built.
//!
//! # Mapping onto the scheduler's units
//! - **Work unit (wu)** = one detector pass over one frame. Detection + tracking
//!   of a frame is `CL1 = s wu`, `s` the camera's detector runs per frame
//!   (`SiteCamera::detect_share`: 1 until its node measures it; below 1 where
//!   the node detects every n-th frame or its motion gate skips still ones,
//!   the tracker predicting over the rest; at least [`MIN_DETECT_SHARE`]).
//!   The detector resizes to its input, so the resolution does not change
//!   it. The rest of a frame's work on that node (receiving and decoding the
//!   stream, crops and their JPEGs, storage) is the camera's `ingest_work`
//!   (0 until measured: the node's CPU in detector frames, less what this
//!   model charges it, over the frames it ingests;
//!   `plans::measured::measured_frame_work`). It goes to the scheduler as
//!   the stream's `ingest_work`: it loads the node (its utilisation, so its
//!   stages' inflation and the throughput bound) but is not a stage time of
//!   the frame, since other threads do it alongside (a frame's decoding is
//!   pipelined ahead of its detection).
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
//! - **Frames**: `frame_bytes` is the camera's measured bitrate (reported by
//!   the node that ingests it) / 8 / fps; until one is measured, `width *
//!   height * BITS_PER_PIXEL / 8` (an H.264 frame; low for busy scenes: the
//!   testbed's 768x576 cameras send 2.2 Mbit/s where it says 0.44). An
//!   unpinned camera is reachable by every node over the site network, so
//!   it reaches node `i` at most at `i`'s own link: the fastest rate a peer
//!   measured to `i` (else from `i` to a peer; its access link, when a peer
//!   is as fast);
//!   while `i` measured none, the median of the other nodes' (so a node back
//!   from a partition does not look fastest), [`DEFAULT_LINK_MBIT_S`] while
//!   no node measured any; plus the bitrates of the cameras `i` ingests now
//!   (its probes share the link with them, so they measure what is left).
//!   The streams a node ingests share that link (the scheduler's
//!   `shared_ingress`): it loads with their bitrates as a processor with
//!   work, and a plan that overfills it is seen as overloaded. A pinned camera
//!   (e.g. on its node's LAN) reaches only its node. Crops: `D = c *
//!   CROP_BYTES` bytes per frame.
//! - **Links**: every pair of nodes gets the direct rate measured between them
//!   (the lower of the two ends' reports), [`DEFAULT_LINK_MBIT_S`] when neither
//!   measured it. They go to the scheduler as its `rates` (end-to-end, used as
//!   given), not as links: crops go straight from one node to another, never
//!   relayed through a third, so the widest path over links would overrate a
//!   pair.
//! - **No re-ID service**: a node with `reid_service = false` (or no re-ID
//!   model) is unreachable for other nodes' crops (`R_ji = 0`), so JSTSH never
//!   offloads to it; a stream detected on a node without a re-ID model has its
//!   re-ID moved to the cheapest allowed node after the search.

use std::collections::{BTreeMap, HashMap};

use vidar_protocol::{CameraId, NodeId};
use vidar_scheduler::jstsh::{
    CameraStream, CostModel, DirectRates, ModelMemory, Problem, StreamInstance,
};
use vidar_scheduler::{Cluster, Node};

use super::{NodeView, PlanError, SiteCamera};

/// Link rate assumed between nodes (and from cameras) nobody measured, Mbit/s.
pub const DEFAULT_LINK_MBIT_S: f64 = 100.0;
/// A pair of nodes in name order (the key of [`pair_rates`]).
pub fn ordered(a: &NodeId, b: &NodeId) -> (NodeId, NodeId) {
    if a < b {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

/// The measured rate of every pair among `views` (Mbit/s, by pair in name
/// order): the lower of the two ends' reports. Reports about nodes outside
/// `views` are left out. The planner plans with these, and the plan service
/// replans when they move (`plans::policy::link_shift`).
pub fn pair_rates<'a>(
    views: impl IntoIterator<Item = &'a NodeView> + Clone,
) -> BTreeMap<(NodeId, NodeId), f64> {
    let known: std::collections::BTreeSet<&NodeId> =
        views.clone().into_iter().map(|v| &v.node).collect();
    let mut out = BTreeMap::new();
    for v in views {
        for (to, r) in &v.links {
            if *to == v.node || !known.contains(to) {
                continue;
            }
            let e = out.entry(ordered(&v.node, to)).or_insert(f64::INFINITY);
            *e = r.min(*e);
        }
    }
    out
}

/// The fastest of `rates` (Mbit/s) that is a real rate, if any.
pub(crate) fn fastest(rates: impl Iterator<Item = f64>) -> Option<f64> {
    rates
        .filter(|r| r.is_finite() && *r > 0.0)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))
}

/// What one re-ID crop costs in detector frames (`rho`): the geometric
/// mean over `nodes` that profiled both models of `detect_fps /
/// reid_crops_per_s`; 1 when none did.
pub fn crop_work<'a>(nodes: impl IntoIterator<Item = &'a NodeView>) -> f64 {
    let ratios: Vec<f64> = nodes
        .into_iter()
        .filter(|n| n.detect_fps > 0.0 && n.reid_crops_per_s > 0.0)
        .map(|n| (n.detect_fps / n.reid_crops_per_s).ln())
        .collect();
    if ratios.is_empty() {
        1.0
    } else {
        (ratios.iter().sum::<f64>() / ratios.len() as f64).exp()
    }
}

/// The least detector work a camera is planned with, in detector frames
/// per frame it sends: a camera whose motion gate skipped everything for a
/// while still has its periodic full detections, and a camera planned at
/// no cost at all would pile onto one node.
pub const MIN_DETECT_SHARE: f64 = 0.05;

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

/// Bytes in a MiB.
const MIB: u64 = 1 << 20;
/// Bytes per second in a Mbit/s.
pub(super) const MBIT: f64 = 1e6 / 8.0;

/// The inputs mapped onto the scheduler's index form.
#[derive(Debug)]
pub(super) struct Mapped {
    /// The indexed problem (with forbidden re-ID offloads at rate 0).
    pub(super) problem: Problem,
    /// Protocol id of scheduler node `i`.
    pub(super) ids: Vec<NodeId>,
    /// Scheduler index by node.
    pub(super) index: HashMap<NodeId, usize>,
    /// Node `i` has a re-ID model.
    pub(super) has_reid: Vec<bool>,
    /// Node `i` runs re-ID for other nodes' cameras.
    pub(super) serves: Vec<bool>,
    /// Link rate between `i` and `j`, bytes/s.
    pub(super) link: Vec<Vec<f64>>,
    /// Camera id of stream `k`.
    pub(super) cameras: Vec<CameraId>,
}

fn sched_id(n: &NodeId) -> Result<vidar_scheduler::NodeId, PlanError> {
    Ok(vidar_scheduler::NodeId::new(n.as_str())?)
}

impl Mapped {
    /// Maps `cameras` and `nodes` (validated) onto the scheduler's problem.
    pub(super) fn new(cameras: &[SiteCamera], nodes: &[NodeView]) -> Result<Self, PlanError> {
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
            .map(|c| c.reid_crops_per_s() / c.fps)
            .collect();
        let rho = crop_work(usable.iter().copied());
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
        let measured = pair_rates(usable.iter().copied());
        let mm = usable.len();
        let mut link = vec![vec![f64::INFINITY; mm]; mm];
        // Direct rates, not links: crops go straight from one node to the
        // other (through the router), never relayed by a third node.
        let mut rates = DirectRates::new();
        for a in 0..mm {
            for b in a + 1..mm {
                let r = measured
                    .get(&ordered(&ids[a], &ids[b]))
                    .copied()
                    .unwrap_or(DEFAULT_LINK_MBIT_S)
                    * MBIT;
                link[a][b] = r;
                link[b][a] = r;
                rates
                    .entry(sched_nodes[a].id.clone())
                    .or_default()
                    .insert(sched_nodes[b].id.clone(), r);
            }
        }

        let detectors: Vec<usize> = (0..mm).filter(|&i| usable[i].detect_fps > 0.0).collect();
        if detectors.is_empty() {
            return Err(PlanError::Invalid(vec![
                "no node reports detector throughput".into(),
            ]));
        }
        // Each node's own link, as cameras use it: the fastest rate a peer
        // measured *to* it (those bytes cross the link the way camera
        // frames do, into the node), else the fastest it measured to a
        // peer. A node that measured none yet (it just joined, or came
        // back from a partition) is taken at the median of the others, not
        // at the default: an unmeasured link must not look like the best one.
        let measured_access: Vec<Option<f64>> = usable
            .iter()
            .map(|n| {
                let inbound = usable
                    .iter()
                    .filter(|v| v.node != n.node)
                    .flat_map(|v| v.links.iter().filter(|(to, _)| *to == n.node))
                    .map(|(_, r)| *r);
                let outbound = (n.links.iter())
                    .filter(|(to, _)| index.contains_key(to))
                    .map(|(_, r)| *r);
                fastest(inbound).or_else(|| fastest(outbound))
            })
            .collect();
        let mut known: Vec<f64> = measured_access.iter().flatten().copied().collect();
        known.sort_by(f64::total_cmp);
        let typical = if known.is_empty() {
            DEFAULT_LINK_MBIT_S
        } else {
            known[known.len() / 2]
        };
        // A probe into the node shares its link with the camera streams it
        // already ingests, so it measures what they leave over: the link
        // carries that plus their bitrates (what the node reports of them),
        // and the planner, which loads each link with the streams placed on
        // it, must not count them twice.
        let access: Vec<f64> = measured_access
            .iter()
            .zip(&usable)
            .map(|(a, n)| {
                let ingest: f64 = (n.camera_bitrates.iter())
                    .map(|(_, b)| *b)
                    .filter(|b| b.is_finite() && *b > 0.0)
                    .sum();
                a.unwrap_or(typical) + ingest / 1e6
            })
            .collect();
        // A camera's bitrate as its node measures it (the highest report
        // while two nodes both ingest it, in a hand-over).
        let mut bitrate: HashMap<&CameraId, f64> = HashMap::new();
        for n in &usable {
            for (c, b) in &n.camera_bitrates {
                let e = bitrate.entry(c).or_insert(0.0);
                *e = e.max(*b);
            }
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
                frame_bytes: match bitrate.get(&c.camera) {
                    Some(&b) if b > 0.0 => b / 8.0 / c.fps,
                    _ => f64::from(c.width) * f64::from(c.height) * BITS_PER_PIXEL / 8.0,
                },
                camera_rates: reach
                    .into_iter()
                    .map(|i| {
                        let mbit = if pin.is_some() {
                            DEFAULT_LINK_MBIT_S
                        } else {
                            access[i]
                        };
                        (sched_nodes[i].id.clone(), mbit * MBIT)
                    })
                    .collect(),
                detect_work: c.detect_work(),
                ingest_work: c.ingest_work,
                reid_work: x * rho,
                // At least a byte, so a forbidden hop costs infinity, never 0/0.
                crop_bytes: (x * CROP_BYTES).max(1.0),
            });
        }
        let inst = StreamInstance {
            cluster: Cluster {
                nodes: sched_nodes,
                links: Vec::new(),
            },
            rates: Some(rates),
            models: ModelMemory {
                detector: DETECTOR_MEMORY_MB * MIB,
                reid: REID_MEMORY_MB * MIB,
            },
            streams,
            cost: CostModel::LoadAware,
            // Cameras reach a node through its access link, shared by all
            // it ingests (pinned ones through its LAN, counted the same).
            shared_ingress: true,
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
}
