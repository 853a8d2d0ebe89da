//! Cost evaluation: per-node load bookkeeping that makes a move's cost change O(1).
//!
//! Both cost models decompose into a per-stream part (`T_ik + [i != j] D/R_ij`)
//! plus a per-node part `W_i / PS_i * f(U_i)`, with `W_i` the per-frame work
//! placed on `i`, `U_i` its utilisation (which also counts each stream's
//! ingest work `CL0`, work alongside its frames on the node that detects
//! it, not a stage time) and `f = 1` (published) or
//! `1 / (1 - min(U, cap))` (load-aware). With a shared ingress link
//! ([`Problem::shared_ingress`]) the load-aware node part also holds
//! `S_i * (f(V_i) - 1)`: `S_i` the sum of `T_ik` over the streams detected on
//! `i`, `V_i` the sum of `fps_k * T_ik`, the utilisation of `i`'s link, so
//! that those transfer times are inflated by the link's load as stage times
//! are by the processor's.

use serde::{Deserialize, Serialize};

use super::{CostModel, Problem, UTILISATION_CAP};

/// Load-aware inflation of a stage time on a node with utilisation `u`:
/// `1 / (1 - u)` up to the cap, then continued along its tangent so that
/// overload keeps costing more (a flat cap would make the optimiser blind to
/// throughput lost on overloaded nodes). Continuous, increasing and convex.
pub fn inflation(u: f64) -> f64 {
    let c = UTILISATION_CAP;
    if u <= c {
        1.0 / (1.0 - u)
    } else {
        1.0 / (1.0 - c) + (u - c) / ((1.0 - c) * (1.0 - c))
    }
}

/// Per-node load of a (partial) assignment.
#[derive(Clone, Debug)]
pub struct Loads {
    /// Per-frame work placed on each node (wu).
    pub work: Vec<f64>,
    /// Utilisation of each node.
    pub util: Vec<f64>,
    /// Streams detected on each node.
    pub ndet: Vec<u32>,
    /// Streams re-identified on each node.
    pub nreid: Vec<u32>,
    /// Sum of `T_ik` over the streams detected on each node (s/frame).
    pub tsum: Vec<f64>,
    /// Utilisation of each node's ingress link (`sum of fps_k * T_ik`).
    pub link: Vec<f64>,
}

impl Loads {
    /// Empty loads for `p`.
    pub fn new(p: &Problem) -> Self {
        Self {
            work: vec![0.0; p.m],
            util: vec![0.0; p.m],
            ndet: vec![0; p.m],
            nreid: vec![0; p.m],
            tsum: vec![0.0; p.m],
            link: vec![0.0; p.m],
        }
    }

    /// Loads of a full assignment.
    pub fn of(p: &Problem, assign: &[(usize, usize)]) -> Self {
        let mut l = Self::new(p);
        for (k, &(x, y)) in assign.iter().enumerate() {
            l.add(p, k, x, y);
        }
        l
    }

    /// Places stream `k` with detection on `x`, re-ID on `y`.
    pub fn add(&mut self, p: &Problem, k: usize, x: usize, y: usize) {
        self.det(p, k, x, 1.0);
        self.reid(p, k, y, 1.0);
    }

    /// Removes stream `k` from `(x, y)`.
    pub fn remove(&mut self, p: &Problem, k: usize, x: usize, y: usize) {
        self.det(p, k, x, -1.0);
        self.reid(p, k, y, -1.0);
    }

    /// Adds (`sign = 1`) or removes (`-1`) stream `k`'s detection on `x`.
    pub fn det(&mut self, p: &Problem, k: usize, x: usize, sign: f64) {
        self.work[x] += sign * p.cl1[k];
        self.util[x] += sign * p.fps[k] * (p.cl1[k] + p.cl0[k]) / p.ps[x];
        self.ndet[x] = (self.ndet[x] as i64 + sign as i64) as u32;
        let t = transfer(p, k, x);
        self.tsum[x] += sign * t;
        self.link[x] += sign * p.fps[k] * t;
    }

    /// Adds (`sign = 1`) or removes (`-1`) stream `k`'s re-ID on `y`.
    pub fn reid(&mut self, p: &Problem, k: usize, y: usize, sign: f64) {
        self.work[y] += sign * p.cl2[k];
        self.util[y] += sign * p.fps[k] * p.cl2[k] / p.ps[y];
        self.nreid[y] = (self.nreid[y] as i64 + sign as i64) as u32;
    }

    /// Memory node `i` needs for the models it hosts.
    pub fn memory(&self, p: &Problem, i: usize) -> u64 {
        let mut m = 0;
        if self.ndet[i] > 0 {
            m += p.models.detector;
        }
        if self.nreid[i] > 0 {
            m += p.models.reid;
        }
        m
    }

    /// True when node `i`'s models fit its memory.
    pub fn fits(&self, p: &Problem, i: usize) -> bool {
        self.memory(p, i) <= p.mem[i]
    }

    /// Node `i`'s share of the objective under `cost`.
    pub fn node_term(&self, p: &Problem, i: usize, cost: CostModel) -> f64 {
        let ingress = Ingress {
            tsum: self.tsum[i],
            link: self.link[i],
        };
        node_term(p, i, self.work[i], self.util[i], ingress, cost)
    }

    /// Utilisation of node `i` and, with a shared ingress, of its link: the
    /// busier of the two bounds its streams' throughput.
    pub fn busiest(&self, p: &Problem, i: usize) -> f64 {
        if p.shared_ingress {
            self.util[i].max(self.link[i])
        } else {
            self.util[i]
        }
    }
}

/// `T_ik`, 0 where `k` cannot reach `i` (such a placement is infeasible by
/// its stream term already; 0 keeps the link sums finite).
#[inline]
pub fn transfer(p: &Problem, k: usize, i: usize) -> f64 {
    let t = p.t[k][i];
    if t.is_finite() {
        t
    } else {
        0.0
    }
}

/// What the streams detected on a node put on its ingress link.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ingress {
    /// Sum of their `T_ik` (s/frame).
    pub tsum: f64,
    /// The link's utilisation, sum of `fps_k * T_ik`.
    pub link: f64,
}

/// Node `i`'s share of the objective with per-frame `work` and utilisation
/// `util` on it, and `ingress` on its link.
#[inline]
pub fn node_term(
    p: &Problem,
    i: usize,
    work: f64,
    util: f64,
    ingress: Ingress,
    cost: CostModel,
) -> f64 {
    // Clamp round-off from repeated add/remove to exact zero.
    let w = if work < 1e-12 { 0.0 } else { work };
    match cost {
        CostModel::Published => w / p.ps[i],
        CostModel::LoadAware => {
            let cpu = w / p.ps[i] * inflation(util);
            if p.shared_ingress && ingress.tsum > 1e-12 {
                cpu + ingress.tsum * (inflation(ingress.link.max(0.0)) - 1.0)
            } else {
                cpu
            }
        }
    }
}

/// True when node `i` can host the models for `ndet` detections and `nreid` re-IDs.
#[inline]
pub fn fits_counts(p: &Problem, i: usize, ndet: u32, nreid: u32) -> bool {
    let mut m = 0;
    if ndet > 0 {
        m += p.models.detector;
    }
    if nreid > 0 {
        m += p.models.reid;
    }
    m <= p.mem[i]
}

/// Per-stream part of the objective.
pub fn stream_term(p: &Problem, k: usize, x: usize, y: usize) -> f64 {
    p.t[k][x] + p.hop(k, x, y)
}

/// Total objective of an assignment under `cost` (sum of per-frame latencies).
pub fn total(p: &Problem, assign: &[(usize, usize)], cost: CostModel) -> f64 {
    let loads = Loads::of(p, assign);
    let s: f64 = assign
        .iter()
        .enumerate()
        .map(|(k, &(x, y))| stream_term(p, k, x, y))
        .sum();
    s + (0..p.m).map(|i| loads.node_term(p, i, cost)).sum::<f64>()
}

/// True when every node's models fit and every stream can reach its nodes.
pub fn feasible(p: &Problem, assign: &[(usize, usize)]) -> bool {
    let loads = Loads::of(p, assign);
    (0..p.m).all(|i| loads.fits(p, i))
        && assign
            .iter()
            .enumerate()
            .all(|(k, &(x, y))| stream_term(p, k, x, y).is_finite())
}

/// Objective values of a plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    /// Sum over streams of the published per-frame latency (s).
    pub published_cost: f64,
    /// Sum over streams of the load-aware per-frame latency (s).
    pub load_aware_cost: f64,
    /// Mean load-aware end-to-end latency per frame (s).
    pub mean_latency: f64,
    /// The part of [`Objective::mean_latency`] up to a frame's detection
    /// result (s): its transfer to the detection node (inflated by that
    /// node's link where streams share it) and its detection stage there.
    /// The rest is the re-ID stage and the crops' hop, which follow the
    /// result; so this is what a node's capture-to-result latency measures.
    #[serde(default)]
    pub mean_frame_latency: f64,
    /// Mean throughput over streams (frames/s) under the load-aware model.
    pub mean_fps: f64,
    /// Highest node utilisation (or, with a shared ingress, link utilisation).
    pub max_utilisation: f64,
}

impl Objective {
    /// Evaluates an assignment.
    pub fn of(p: &Problem, assign: &[(usize, usize)]) -> Self {
        let loads = Loads::of(p, assign);
        let k = assign.len().max(1) as f64;
        let load_aware_cost = total(p, assign, CostModel::LoadAware);
        let mean_fps = assign
            .iter()
            .enumerate()
            .map(|(k, &(x, y))| p.fps[k] / loads.busiest(p, x).max(loads.util[y]).max(1.0))
            .sum::<f64>()
            / k;
        let frame_latency = assign
            .iter()
            .enumerate()
            .map(|(k, &(x, _))| {
                let t = transfer(p, k, x);
                let t = if p.shared_ingress {
                    t * inflation(loads.link[x].max(0.0))
                } else {
                    t
                };
                t + p.cl1[k] / p.ps[x] * inflation(loads.util[x])
            })
            .sum::<f64>();
        Self {
            published_cost: total(p, assign, CostModel::Published),
            load_aware_cost,
            mean_latency: load_aware_cost / k,
            mean_frame_latency: frame_latency / k,
            mean_fps,
            max_utilisation: (0..p.m).map(|i| loads.busiest(p, i)).fold(0.0, f64::max),
        }
    }
}
