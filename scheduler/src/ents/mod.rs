//! ENTS: streaming job DAGs over a multi-hop edge network (ALGORITHMS.md
//! section 2): task allocation, Yen's K shortest paths, JRBA (an LP solved with
//! `good_lp`'s pure-Rust microlp backend, then rounded), the online schedulers
//! OTFS and OTFA, and the baselines LR, BR and TP.
//!
//! Realism fix: tasks (of one or several jobs) on one node share it, so a job's
//! compute time per item on node `u` is `(all work placed on u) / PS_u`; flows
//! get explicit bandwidth shares, and a job's throughput is
//! `min(rate, 1 / max(node times, flow times))`.
//!
//! Bandwidth sharing (where we depart from the text): the figures measure the
//! mean per-job throughput, which JRBA's `min max V/b` with volume-proportional
//! shares does not serve (it slows every job on a link to the pace of its
//! heaviest flow). OTFA keeps JRBA for the routes (or the fewest-hop routes
//! when they score better) and divides links by per-job fair shares
//! ([`share`]); OTFS reserves, per job, at most half of each link's free
//! bandwidth, so later jobs still find a route. JRBA itself
//! ([`jrba()`]) is implemented as specified, with proportional shares.

mod alloc;
mod jrba;
mod paths;
mod share;
mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, NodeId};
use crate::error::{Result, SchedError};

pub use alloc::{allocate, Allocation, PERIOD_TOLERANCE};
pub use jrba::{jrba, FlowDemand, JrbaResult};
pub use paths::k_shortest_paths;
pub use state::{Policy, RunningJob, State};

/// Default number of candidate paths per flow.
pub const DEFAULT_K_PATHS: usize = 3;

/// One input of a task: bytes per item from another task of the same job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskInput {
    /// Name of the producing task.
    pub from: String,
    /// Bytes per item (`D_pi`).
    pub bytes: f64,
    /// Work to carry it between two nodes (none when both tasks share one).
    #[serde(default)]
    pub carry: Carry,
}

/// Work per item that carrying an input between nodes costs, beyond ALGORITHMS.md's model (which counts
/// only the tasks' work): encoding it on the sending node and decoding it
/// on the receiving one (for example JPEG for frames). Counted on those
/// nodes' loads, like task work, only when the two ends are on different
/// nodes. Zero (the default) is the model as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Carry {
    /// Work on the sending node, wu per item.
    #[serde(default)]
    pub send: f64,
    /// Work on the receiving node, wu per item.
    #[serde(default)]
    pub recv: f64,
}

impl Carry {
    /// `(node, work per item)` on the sender and on the receiver when an
    /// input of `bytes` an item goes from node `from` to node `to`; `None`
    /// when it stays on one node or has no bytes to carry.
    pub fn loads(self, from: usize, to: usize, bytes: f64) -> Option<[(usize, f64); 2]> {
        (from != to && bytes > 0.0).then_some([(from, self.send), (to, self.recv)])
    }

    fn valid(self) -> bool {
        [self.send, self.recv]
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0)
    }
}

/// One task (module) of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Name, unique in the job.
    pub name: String,
    /// Work per item, `C_i` (wu).
    pub work: f64,
    /// Memory to host it, `Rreq_i` (bytes).
    pub memory: u64,
    /// Inputs from other tasks; a task without inputs is an entry task and
    /// receives the job's raw input from the source node.
    #[serde(default)]
    pub inputs: Vec<TaskInput>,
}

/// A streaming job: a DAG of tasks fed from a source node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Unique name.
    pub id: String,
    /// Node where the raw input (the camera) is, `s_J`.
    pub source: NodeId,
    /// Bytes per item of raw input sent to each entry task, `D_in`.
    pub input_bytes: f64,
    /// Work to carry the raw input to an entry task on another node.
    #[serde(default)]
    pub input_carry: Carry,
    /// Items per second the source produces (caps throughput; used as the CPU request by LR/BR).
    pub rate: f64,
    /// The tasks, any order (validated acyclic).
    pub tasks: Vec<Task>,
}

/// A batch of jobs to place on a cluster (the `solve` input for ENTS algorithms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobInstance {
    /// Nodes and links.
    pub cluster: Cluster,
    /// Jobs, in arrival order (the longest-waiting first).
    pub jobs: Vec<Job>,
    /// Candidate paths per flow (default 3).
    #[serde(default = "default_k")]
    pub k_paths: usize,
    /// How Algorithm 1 chooses a task's node (default: as written).
    #[serde(default)]
    pub allocation: Allocation,
}

fn default_k() -> usize {
    DEFAULT_K_PATHS
}

/// A job in index form.
#[derive(Clone, Debug)]
pub struct JobGraph {
    /// Source node index.
    pub source: usize,
    /// Raw input bytes per item.
    pub input_bytes: f64,
    /// Work to carry the raw input off the source node.
    pub input_carry: Carry,
    /// Requested items/s.
    pub rate: f64,
    /// Work per task.
    pub work: Vec<f64>,
    /// Memory per task.
    pub memory: Vec<u64>,
    /// `(predecessor, bytes, carry)` per task; empty for entry tasks.
    pub preds: Vec<Vec<(usize, f64, Carry)>>,
    /// A topological order.
    pub topo: Vec<usize>,
}

impl JobGraph {
    /// Validates `job` against the node index (every problem at once) and indexes it.
    pub fn new(job: &Job, nodes: &BTreeMap<NodeId, usize>) -> Result<Self> {
        let mut problems = Vec::new();
        let names: HashMap<&str, usize> = job
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        if names.len() != job.tasks.len() {
            problems.push(format!("job {}: task names are not unique", job.id));
        }
        if job.tasks.is_empty() {
            problems.push(format!("job {}: has no tasks", job.id));
        }
        let source = nodes.get(&job.source).copied();
        if source.is_none() {
            problems.push(format!(
                "job {}: unknown source node {}",
                job.id, job.source
            ));
        }
        for (what, v) in [("input_bytes", job.input_bytes), ("rate", job.rate)] {
            if !(v.is_finite() && v >= 0.0) {
                problems.push(format!(
                    "job {}: {what} = {v} must be finite and >= 0",
                    job.id
                ));
            }
        }
        if !job.input_carry.valid() {
            problems.push(format!(
                "job {}: input_carry {:?} must be finite and >= 0",
                job.id, job.input_carry
            ));
        }
        let mut preds = vec![Vec::new(); job.tasks.len()];
        for (i, t) in job.tasks.iter().enumerate() {
            if !(t.work.is_finite() && t.work >= 0.0) {
                problems.push(format!(
                    "job {} task {}: work = {} must be finite and >= 0",
                    job.id, t.name, t.work
                ));
            }
            for inp in &t.inputs {
                match names.get(inp.from.as_str()) {
                    Some(&p) if inp.bytes.is_finite() && inp.bytes >= 0.0 && inp.carry.valid() => {
                        preds[i].push((p, inp.bytes, inp.carry))
                    }
                    Some(_) => problems.push(format!(
                        "job {} task {}: input from {}: bytes {} or carry {:?} invalid \
                         (finite and >= 0)",
                        job.id, t.name, inp.from, inp.bytes, inp.carry
                    )),
                    None => problems.push(format!(
                        "job {} task {}: unknown input task {}",
                        job.id, t.name, inp.from
                    )),
                }
            }
        }
        // Kahn's algorithm; smallest index first for determinism.
        let mut indeg: Vec<usize> = preds.iter().map(Vec::len).collect();
        let mut succ = vec![Vec::new(); preds.len()];
        for (i, ps) in preds.iter().enumerate() {
            for &(p, _, _) in ps {
                succ[p].push(i);
            }
        }
        let mut ready: std::collections::BTreeSet<usize> =
            (0..preds.len()).filter(|&i| indeg[i] == 0).collect();
        let mut topo = Vec::with_capacity(preds.len());
        while let Some(i) = ready.pop_first() {
            topo.push(i);
            for &s in &succ[i] {
                indeg[s] -= 1;
                if indeg[s] == 0 {
                    ready.insert(s);
                }
            }
        }
        if topo.len() != preds.len() && problems.is_empty() {
            problems.push(format!("job {}: the task graph has a cycle", job.id));
        }
        match source {
            Some(source) if problems.is_empty() => Ok(Self {
                source,
                input_bytes: job.input_bytes,
                input_carry: job.input_carry,
                rate: job.rate,
                work: job.tasks.iter().map(|t| t.work).collect(),
                memory: job.tasks.iter().map(|t| t.memory).collect(),
                preds,
                topo,
            }),
            _ => Err(SchedError::Invalid(problems)),
        }
    }

    /// Total memory of the job's tasks.
    pub fn total_memory(&self) -> u64 {
        self.memory.iter().sum()
    }

    /// Total work per item.
    pub fn total_work(&self) -> f64 {
        self.work.iter().sum()
    }

    /// Cross-node flows of a placement, merged per `(src, dst)`: `(src, dst, bytes per item)`.
    pub fn flows(&self, place: &[usize]) -> Vec<(usize, usize, f64)> {
        let mut m: BTreeMap<(usize, usize), f64> = BTreeMap::new();
        for (i, ps) in self.preds.iter().enumerate() {
            if ps.is_empty() && place[i] != self.source && self.input_bytes > 0.0 {
                *m.entry((self.source, place[i])).or_default() += self.input_bytes;
            }
            for &(p, bytes, _) in ps {
                if place[p] != place[i] && bytes > 0.0 {
                    *m.entry((place[p], place[i])).or_default() += bytes;
                }
            }
        }
        m.into_iter().map(|((s, d), v)| (s, d, v)).collect()
    }

    /// Work per item the job puts on each node under `place`: its tasks'
    /// and, for every input crossing nodes with bytes to carry, the carry's
    /// send work on the sender and receive work on the receiver. Sorted by
    /// node, each node once.
    pub fn node_work(&self, place: &[usize]) -> Vec<(usize, f64)> {
        let mut m: BTreeMap<usize, f64> = BTreeMap::new();
        // A node with no task of the job counts only if it carries work.
        let carry = |m: &mut BTreeMap<usize, f64>, loads: Option<[(usize, f64); 2]>| {
            for (u, w) in loads.into_iter().flatten() {
                if w > 0.0 {
                    *m.entry(u).or_default() += w;
                }
            }
        };
        for (i, ps) in self.preds.iter().enumerate() {
            *m.entry(place[i]).or_default() += self.work[i];
            if ps.is_empty() {
                let loads = self
                    .input_carry
                    .loads(self.source, place[i], self.input_bytes);
                carry(&mut m, loads);
            }
            for &(p, bytes, c) in ps {
                carry(&mut m, c.loads(place[p], place[i], bytes));
            }
        }
        m.into_iter().collect()
    }
}

/// One routed flow of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowPlan {
    /// Sending node.
    pub from: NodeId,
    /// Receiving node.
    pub to: NodeId,
    /// Bytes per item.
    pub bytes: f64,
    /// Nodes along the route, ends included.
    pub route: Vec<NodeId>,
    /// Bandwidth share, bytes/s.
    pub bandwidth: f64,
}

/// Where one job runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobPlacement {
    /// The job.
    pub job: String,
    /// Node of every task, by task name.
    pub tasks: BTreeMap<String, NodeId>,
    /// Cross-node flows with routes and shares.
    pub flows: Vec<FlowPlan>,
    /// Items per second the job achieves in this plan.
    pub throughput: f64,
}

/// The result of placing a batch of jobs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobPlan {
    /// Scheduler used.
    pub algorithm: Policy,
    /// Placed jobs.
    pub placed: Vec<JobPlacement>,
    /// Jobs left waiting (no memory or no route).
    pub waiting: Vec<String>,
    /// Mean throughput over placed jobs (items/s).
    pub mean_throughput: f64,
    /// Largest per-item transfer time over all flows, `max V_f / b_f` (s).
    pub transfer_period: f64,
    /// JRBA's LP optimum of the last JRBA run (a lower bound on `transfer_period`), when one ran.
    pub lp_bound: Option<f64>,
}

/// Places `inst.jobs` on an empty cluster with `policy` (one scheduling round).
pub fn solve(inst: &JobInstance, policy: Policy) -> Result<JobPlan> {
    solve_keeping(inst, policy, &BTreeMap::new())
}

/// [`solve`], except that a job named in `keep` has its tasks placed on the
/// nodes given there (task name -> node) when every task is named, the nodes
/// exist and have the memory; routes and shares are set by `policy` as for
/// any placement. The running system compares this with [`solve`] to move
/// jobs only when that pays.
pub fn solve_keeping(
    inst: &JobInstance,
    policy: Policy,
    keep: &BTreeMap<String, BTreeMap<String, NodeId>>,
) -> Result<JobPlan> {
    let mut state = State::new(&inst.cluster, inst.k_paths)?;
    state.allocation = inst.allocation;
    let graphs = inst
        .jobs
        .iter()
        .map(|j| JobGraph::new(j, &state.graph.index))
        .collect::<Result<Vec<_>>>()?;
    let pinned: Vec<Option<Vec<usize>>> = inst
        .jobs
        .iter()
        .map(|j| {
            let k = keep.get(&j.id)?;
            j.tasks
                .iter()
                .map(|t| {
                    k.get(&t.name)
                        .and_then(|n| state.graph.index.get(n).copied())
                })
                .collect()
        })
        .collect();
    let mut queue: Vec<usize> = (0..graphs.len()).collect();
    let placed = state.schedule_keeping(&graphs, &mut queue, policy, &pinned)?;
    let out = state.placements(&inst.cluster, &inst.jobs);
    let mean = if placed.is_empty() {
        0.0
    } else {
        out.iter().map(|p| p.throughput).sum::<f64>() / out.len() as f64
    };
    Ok(JobPlan {
        algorithm: policy,
        transfer_period: state.transfer_period(),
        lp_bound: state.last_lp_bound,
        placed: out,
        waiting: queue.iter().map(|&j| inst.jobs[j].id.clone()).collect(),
        mean_throughput: mean,
    })
}
