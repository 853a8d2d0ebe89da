//! JSTSH: joint stream mapping and task scheduling (ALGORITHMS.md section 1).
//!
//! Decides, for every camera stream, the node that ingests it and runs detection
//! and tracking (`x`), and the node that runs its re-ID (`y`). One detector and
//! one re-ID model per node serve every stream placed there, so a node's memory
//! holds `Rdet` if it detects for any stream plus `Rreid` if it re-identifies for
//! any stream (this is how the spec's "reuse a deployed re-ID model" reads when
//! models are shared).
//!
//! Cost models ([`CostModel`]): the published per-frame latency sum, and the
//! load-aware one (default) where a stage on node `i` takes
//! `CL / PS_i / (1 - U_i)` with `U_i` the node's utilisation
//! (`sum fps_k * CL_k / PS_i` over the work placed on it), an M/D/1-style
//! inflation; above `U = 0.95` it continues linearly along its tangent, so an
//! overloaded node has a finite but growing latency. Overload also shows in
//! throughput: a stream gets `fps / max(1, U_x, U_y)`.

mod baselines;
mod eval;
mod exact;
mod greedy;
mod improve;
mod search;

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, Graph, NodeId};
use crate::error::{Result, SchedError};

pub use eval::{Loads, Objective};
pub use exact::exact;

/// Cap on utilisation in the load-aware latency inflation.
pub const UTILISATION_CAP: f64 = 0.95;

/// Which per-frame latency the algorithms minimise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostModel {
    /// Stage times inflated by node utilisation (this project's realism fix).
    #[default]
    LoadAware,
    /// The published cost: `T_ik + CL1/PS_i + CL2/PS_j + [i != j] D/R_ij`.
    Published,
}

/// Memory needed to host one model instance.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMemory {
    /// Detector + tracker (`Rdet`), bytes.
    pub detector: u64,
    /// Re-ID model (`Rreid`), bytes.
    pub reid: u64,
}

/// One camera stream and its current workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraStream {
    /// Unique name.
    pub id: String,
    /// Frames per second the camera sends.
    pub fps: f64,
    /// Bytes of one encoded frame as sent by the camera.
    pub frame_bytes: f64,
    /// Camera-to-node rate (bytes/s) for each node it can reach; others are unreachable.
    pub camera_rates: BTreeMap<NodeId, f64>,
    /// Detection + tracking work per frame, `CL1` (wu).
    pub detect_work: f64,
    /// The rest of a frame's work on the detection node that is not in
    /// the frame's own path (receiving and decoding the stream, crops and
    /// their JPEGs, storage: other threads, alongside), wu per frame;
    /// default 0. It loads the node (its utilisation, and so every stage
    /// time's inflation there) without being a stage time itself.
    #[serde(default)]
    pub ingest_work: f64,
    /// Re-ID work per frame, `CL2` (wu), averaged over frames (grows with people in view).
    pub reid_work: f64,
    /// Bytes per frame from the detection node to the re-ID node (crops), `D`.
    pub crop_bytes: f64,
}

/// A JSTSH problem: cluster + models + streams.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamInstance {
    /// Nodes and links. Without `rates`, `R_ij` is the bottleneck of the
    /// widest path over the links: it assumes crops are relayed through the
    /// best third node, which the running system never does.
    pub cluster: Cluster,
    /// Direct end-to-end rates between nodes, bytes/s: `rates[a][b]` is what
    /// `a` sends to `b` along the path its bytes really take (through the
    /// zenoh router, say), as the nodes measure it. When given, `R_ij` is
    /// exactly these rates and `links` do not enter it. A pair given one way
    /// only holds both ways; a pair given neither way, or as 0, is
    /// unreachable (no crops cross it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rates: Option<DirectRates>,
    /// Model memory footprints.
    pub models: ModelMemory,
    /// The camera streams.
    pub streams: Vec<CameraStream>,
    /// Cost to minimise; default `load_aware`.
    #[serde(default)]
    pub cost: CostModel,
    /// The streams a node ingests share one link into it, whose rate is
    /// each stream's `camera_rates` entry for that node (the running
    /// system's model: an unpinned camera reaches a node at the node's own
    /// access link). The link then loads like a processor: its utilisation
    /// is `sum of fps_k * T_ik` over the streams detected on the node, the
    /// load-aware cost inflates their transfer times by it as stage times
    /// by a node's, and above 1 the streams' throughput drops to `fps /
    /// utilisation`. Default false: each stream has its camera-to-node rate
    /// to itself (the published model, and the simulator's experiments).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_ingress: bool,
}

/// Direct rates by sending node, then receiving node (bytes/s).
pub type DirectRates = BTreeMap<NodeId, BTreeMap<NodeId, f64>>;

/// `rates` in index form (`INFINITY` on the diagonal, 0 where unreachable);
/// every problem with them goes to `problems`, naming the pair.
fn direct_rates(g: &Graph, rates: &DirectRates, problems: &mut Vec<String>) -> Vec<Vec<f64>> {
    let n = g.len();
    let mut given: Vec<Vec<Option<f64>>> = vec![vec![None; n]; n];
    for (a, row) in rates {
        let Some(&i) = g.index.get(a) else {
            problems.push(format!("rates: unknown node {a}"));
            continue;
        };
        for (b, &r) in row {
            let Some(&j) = g.index.get(b) else {
                problems.push(format!("rates {a} -> {b}: unknown node {b}"));
                continue;
            };
            if i == j {
                problems.push(format!(
                    "rates {a} -> {b}: a node's rate to itself is not a link"
                ));
            } else if !(r.is_finite() && r >= 0.0) {
                problems.push(format!("rates {a} -> {b}: {r} must be finite and >= 0"));
            } else {
                given[i][j] = Some(r);
            }
        }
    }
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    if i == j {
                        f64::INFINITY
                    } else {
                        given[i][j].or(given[j][i]).unwrap_or(0.0)
                    }
                })
                .collect()
        })
        .collect()
}

/// The algorithms that place streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamAlgorithm {
    /// Two-stage greedy followed by local search (WMWO).
    Jstsh,
    /// The published two-stage greedy alone.
    JstshGreedy,
    /// Random stream placement, re-ID local.
    Nmno,
    /// Stream to the nearest node (smallest `T_ik`), re-ID local.
    Wmno,
    /// Random stream placement, re-ID by stage 2.
    Nmwo,
    /// Branch and bound: the exact optimum (small instances only).
    Exact,
}

impl StreamAlgorithm {
    /// Every algorithm, in report order.
    pub const ALL: [StreamAlgorithm; 6] = [
        Self::Jstsh,
        Self::JstshGreedy,
        Self::Nmno,
        Self::Wmno,
        Self::Nmwo,
        Self::Exact,
    ];

    /// Short name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Jstsh => "jstsh",
            Self::JstshGreedy => "jstsh_greedy",
            Self::Nmno => "nmno",
            Self::Wmno => "wmno",
            Self::Nmwo => "nmwo",
            Self::Exact => "exact",
        }
    }
}

/// Where one stream runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamAssignment {
    /// The stream.
    pub stream: String,
    /// Node that ingests it and runs detection + tracking.
    pub detect_node: NodeId,
    /// Node that runs its re-ID.
    pub reid_node: NodeId,
}

/// A placed plan with its objective values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamPlan {
    /// Algorithm that produced it.
    pub algorithm: StreamAlgorithm,
    /// Cost model it minimised.
    pub cost: CostModel,
    /// One entry per stream, in input order.
    pub assignments: Vec<StreamAssignment>,
    /// Objective values under both cost models.
    pub objective: Objective,
}

/// The instance in index form.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Number of nodes.
    pub m: usize,
    /// `t[k][i]`: seconds to move one frame of stream `k` to node `i` (`INFINITY` = unreachable).
    pub t: Vec<Vec<f64>>,
    /// `rate[i][j]` bytes/s, `INFINITY` on the diagonal, 0 when unreachable.
    pub rate: Vec<Vec<f64>>,
    /// Node capacities.
    pub ps: Vec<f64>,
    /// Node memory.
    pub mem: Vec<u64>,
    /// Per-stream fps.
    pub fps: Vec<f64>,
    /// Per-stream detection work.
    pub cl1: Vec<f64>,
    /// Per-stream ingest work: loads the detection node, not a stage.
    pub cl0: Vec<f64>,
    /// Per-stream re-ID work.
    pub cl2: Vec<f64>,
    /// Per-stream crop bytes.
    pub d: Vec<f64>,
    /// Model memory.
    pub models: ModelMemory,
    /// Cost model minimised.
    pub cost: CostModel,
    /// Streams on a node share its ingress link (see [`StreamInstance::shared_ingress`]).
    pub shared_ingress: bool,
}

impl Problem {
    /// Validates an instance (every problem at once) and indexes it.
    pub fn new(inst: &StreamInstance) -> Result<Self> {
        let mut problems = inst.cluster.problems();
        for l in inst.cluster.links.iter().filter(|l| l.one_way) {
            problems.push(format!(
                "link {}-{}: one-way links are for job instances; JSTSH needs one rate \
                 per pair (give `rates`)",
                l.a, l.b
            ));
        }
        let graph = problems.is_empty().then(|| inst.cluster.index_unchecked());
        let m = graph.as_ref().map_or(0, |g| g.len());
        let mut ids = HashSet::new();
        let mut t = Vec::with_capacity(inst.streams.len());
        for s in &inst.streams {
            if !ids.insert(&s.id) {
                problems.push(format!("stream {} appears twice", s.id));
            }
            for (what, v) in [
                ("fps", s.fps),
                ("frame_bytes", s.frame_bytes),
                ("detect_work", s.detect_work),
                ("ingest_work", s.ingest_work),
                ("reid_work", s.reid_work),
                ("crop_bytes", s.crop_bytes),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    problems.push(format!(
                        "stream {}: {what} = {v} must be finite and >= 0",
                        s.id
                    ));
                }
            }
            if s.fps <= 0.0 {
                problems.push(format!("stream {}: fps must be > 0", s.id));
            }
            let mut row = vec![f64::INFINITY; m];
            // Both maps are sorted by id: one merge finds every node's index.
            let mut nodes = graph.iter().flat_map(|g| g.index.iter()).peekable();
            for (n, r) in &s.camera_rates {
                while nodes.next_if(|(id, _)| *id < n).is_some() {}
                match nodes.peek() {
                    Some((id, &i)) if *id == n => row[i] = s.frame_bytes / r,
                    _ if graph.is_some() => {
                        problems.push(format!("stream {}: camera rate for unknown node {n}", s.id))
                    }
                    _ => {}
                }
                if !(r.is_finite() && *r > 0.0) {
                    problems.push(format!(
                        "stream {}: camera rate to {n} = {r} must be finite and > 0",
                        s.id
                    ));
                }
            }
            if s.camera_rates.is_empty() {
                problems.push(format!(
                    "stream {}: reaches no node (camera_rates is empty)",
                    s.id
                ));
            }
            t.push(row);
        }
        let rate = match (&graph, &inst.rates) {
            (Some(g), Some(r)) => Some(direct_rates(g, r, &mut problems)),
            _ => None,
        };
        let Some(g) = graph.filter(|_| problems.is_empty()) else {
            return Err(SchedError::Invalid(problems));
        };
        Ok(Self {
            m,
            t,
            rate: rate.unwrap_or_else(|| g.widest_rates()),
            ps: g.capacity.clone(),
            mem: g.memory.clone(),
            fps: inst.streams.iter().map(|s| s.fps).collect(),
            cl1: inst.streams.iter().map(|s| s.detect_work).collect(),
            cl0: inst.streams.iter().map(|s| s.ingest_work).collect(),
            cl2: inst.streams.iter().map(|s| s.reid_work).collect(),
            d: inst.streams.iter().map(|s| s.crop_bytes).collect(),
            models: inst.models,
            cost: inst.cost,
            shared_ingress: inst.shared_ingress,
        })
    }

    /// Number of streams.
    pub fn k(&self) -> usize {
        self.fps.len()
    }

    /// Seconds to move stream `k`'s crops from `i` to `j` (0 when co-located).
    pub fn hop(&self, k: usize, i: usize, j: usize) -> f64 {
        if i == j {
            0.0
        } else {
            self.d[k] / self.rate[i][j]
        }
    }

    /// Streams by workload `CL1 + CL2`, highest first (stable on ties).
    pub fn order(&self) -> Vec<usize> {
        let mut o: Vec<usize> = (0..self.k()).collect();
        o.sort_by(|&a, &b| (self.cl1[b] + self.cl2[b]).total_cmp(&(self.cl1[a] + self.cl2[a])));
        o
    }
}

/// Runs `algo` on `inst`. `seed` drives the random baselines only.
pub fn solve(inst: &StreamInstance, algo: StreamAlgorithm, seed: u64) -> Result<StreamPlan> {
    let p = Problem::new(inst)?;
    let assign = solve_indexed(&p, algo, seed)?;
    Ok(plan(inst, &p, algo, &assign))
}

/// Runs `algo` on an indexed problem; returns `(detect node, re-ID node)` per stream.
pub fn solve_indexed(p: &Problem, algo: StreamAlgorithm, seed: u64) -> Result<Vec<(usize, usize)>> {
    Ok(match algo {
        StreamAlgorithm::Jstsh => improve::improve(p, greedy::greedy(p)?),
        StreamAlgorithm::JstshGreedy => greedy::greedy(p)?,
        StreamAlgorithm::Nmno => baselines::nmno(p, seed)?,
        StreamAlgorithm::Wmno => baselines::wmno(p)?,
        StreamAlgorithm::Nmwo => baselines::nmwo(p, seed)?,
        StreamAlgorithm::Exact => exact(p, 50_000_000)?,
    })
}

/// Greedy + iterated local search on `scale` times the default work budget,
/// without the exact polish of tiny instances (for gap and budget reports).
pub fn local_search_only(p: &Problem, scale: f64) -> Result<Vec<(usize, usize)>> {
    let budget = (improve::work_budget(p.k(), p.m) as f64 * scale) as u64;
    Ok(improve::local_search(p, greedy::greedy(p)?, budget))
}

/// Work units the improvement phase may spend on `p` (see the `improve` module).
pub fn work_budget(p: &Problem) -> u64 {
    improve::work_budget(p.k(), p.m)
}

/// Builds the plan (ids + objective values) from an index assignment.
pub fn plan(
    inst: &StreamInstance,
    p: &Problem,
    algo: StreamAlgorithm,
    assign: &[(usize, usize)],
) -> StreamPlan {
    let nodes = &inst.cluster.nodes;
    StreamPlan {
        algorithm: algo,
        cost: p.cost,
        assignments: inst
            .streams
            .iter()
            .zip(assign)
            .map(|(s, &(x, y))| StreamAssignment {
                stream: s.id.clone(),
                detect_node: nodes[x].id.clone(),
                reid_node: nodes[y].id.clone(),
            })
            .collect(),
        objective: Objective::of(p, assign),
    }
}

#[cfg(test)]
mod tests;
