//! Algorithm 1: greedy task allocation in topological order, load-aware (work
//! already on a node, from this job or running ones, counts), in one of two
//! forms ([`Allocation`]).

use serde::{Deserialize, Serialize};

use super::{Carry, JobGraph};
use crate::cluster::Graph;

/// How Algorithm 1 chooses each task's node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allocation {
    /// ALGORITHMS.md's rule, load-aware: the node with the smallest
    /// `(work on u + C_i) / PS_u + max over inputs of D / bw`. What the
    /// simulator's figures use.
    #[default]
    FinishTime,
    /// Among the nodes that leave the job's period (its slowest node or
    /// flow so far, carry work counted on both ends) within
    /// [`PERIOD_TOLERANCE`] of the smallest, those whose inputs move the
    /// fewest bytes across nodes; among those, the rule as written (with
    /// the receive carry in the node's work). What the running master
    /// uses.
    ///
    /// Why: the finish-time rule compares a node's whole load, so a light
    /// task (a tracker) leaves the node of the detector that feeds it for
    /// any idler node, although staying there slows the job by its own tiny
    /// work only, and moving adds a flow: a hop whose per-item cost
    /// (serialising, a publish through the router, a share that can drop
    /// items) the model does not count. On the testbed such scattered
    /// plans delivered less than whole-job ones (docs/benchmarks.md). Where
    /// every near choice moves the same bytes (a detector fed from a camera
    /// elsewhere), the load decides as before, so a second job's detector
    /// does not pile onto the first one's node.
    Period,
}

/// Nodes whose job period is within this fraction of the best are equally
/// good to [`Allocation::Period`]: a new hop must buy more than this.
pub const PERIOD_TOLERANCE: f64 = 0.05;

/// Places every task of `job`, or `None` when some task fits no node's free memory.
/// `avg_bw[u][v]`: mean bandwidth along the fewest-hop path (0 = unreachable).
pub fn allocate(
    g: &Graph,
    avg_bw: &[Vec<f64>],
    mem_free: &[u64],
    work_on: &[f64],
    job: &JobGraph,
    rule: Allocation,
) -> Option<Vec<usize>> {
    let n = g.len();
    let mut free = mem_free.to_vec();
    let mut work = work_on.to_vec();
    let mut place = vec![usize::MAX; job.work.len()];
    let xfer = |from: usize, to: usize, bytes: f64| {
        if from == to || bytes == 0.0 {
            0.0
        } else if avg_bw[from][to] > 0.0 {
            bytes / avg_bw[from][to]
        } else {
            f64::INFINITY
        }
    };
    // The job so far (Period): nodes carrying its work, slowest flow.
    let mut used: Vec<usize> = Vec::new();
    let mut flow_period = 0.0f64;
    let mut inputs: Vec<(usize, f64, Carry)> = Vec::new();
    // (node, finish time, job period, bytes an item its inputs move)
    let mut scored: Vec<(usize, f64, f64, f64)> = Vec::with_capacity(n);
    for &i in &job.topo {
        inputs.clear();
        if job.preds[i].is_empty() {
            inputs.push((job.source, job.input_bytes, job.input_carry));
        } else {
            inputs.extend(job.preds[i].iter().map(|&(p, d, c)| (place[p], d, c)));
        }
        scored.clear();
        for u in 0..n {
            if free[u] < job.memory[i] {
                continue;
            }
            let input = inputs
                .iter()
                .map(|&(from, d, _)| xfer(from, u, d))
                .fold(0.0, f64::max);
            let (recv, moved) = inputs
                .iter()
                .filter(|&&(from, d, _)| from != u && d > 0.0)
                .fold((0.0, 0.0), |(r, m), x| (r + x.2.recv, m + x.1));
            let finish = (work[u] + job.work[i] + recv) / g.capacity[u] + input;
            let period = match rule {
                Allocation::FinishTime => 0.0,
                Allocation::Period => {
                    // Work this choice adds, per node: the task and its
                    // inputs' carry.
                    let added = |v: usize| {
                        let task = if v == u { job.work[i] } else { 0.0 };
                        let carried = inputs
                            .iter()
                            .filter_map(|&(from, d, c)| c.loads(from, u, d));
                        task + carried
                            .flatten()
                            .filter(|l| l.0 == v)
                            .map(|l| l.1)
                            .sum::<f64>()
                    };
                    let time = |v: usize| (work[v] + added(v)) / g.capacity[v];
                    let senders = inputs
                        .iter()
                        .filter(|&&(from, d, c)| from != u && d > 0.0 && c.send > 0.0)
                        .map(|x| x.0);
                    let touched = used.iter().copied().chain([u]).chain(senders);
                    touched.map(time).fold(flow_period.max(input), f64::max)
                }
            };
            scored.push((u, finish, period, moved));
        }
        let best = match rule {
            Allocation::FinishTime => scored
                .iter()
                .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
                .filter(|s| s.1 < f64::INFINITY),
            Allocation::Period => {
                let least = scored.iter().map(|s| s.2).fold(f64::INFINITY, f64::min);
                let near: Vec<_> = scored
                    .iter()
                    .filter(|s| s.2 <= least * (1.0 + PERIOD_TOLERANCE))
                    .collect();
                let least_moved = near.iter().map(|s| s.3).fold(f64::INFINITY, f64::min);
                near.into_iter()
                    .filter(|s| s.3 <= least_moved)
                    .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
                    .filter(|s| s.2 < f64::INFINITY)
            }
        };
        let u = best?.0;
        place[i] = u;
        free[u] -= job.memory[i];
        work[u] += job.work[i];
        if !used.contains(&u) {
            used.push(u);
        }
        for &(from, d, c) in &inputs {
            if let Some(loads) = c.loads(from, u, d) {
                for (v, w) in loads {
                    work[v] += w;
                }
                flow_period = flow_period.max(xfer(from, u, d));
                if c.send > 0.0 && !used.contains(&from) {
                    used.push(from);
                }
            }
        }
    }
    Some(place)
}
