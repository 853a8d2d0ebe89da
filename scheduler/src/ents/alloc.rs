//! Algorithm 1: greedy task allocation in topological order, load-aware (work
//! already on a node, from this job or running ones, counts).

use super::JobGraph;
use crate::cluster::Graph;

/// Places every task of `job`, or `None` when some task fits no node's free memory.
/// `avg_bw[u][v]`: mean bandwidth along the fewest-hop path (0 = unreachable).
pub fn allocate(
    g: &Graph,
    avg_bw: &[Vec<f64>],
    mem_free: &[u64],
    work_on: &[f64],
    job: &JobGraph,
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
    for &i in &job.topo {
        let mut best = (f64::INFINITY, usize::MAX);
        for u in 0..n {
            if free[u] < job.memory[i] {
                continue;
            }
            let input = if job.preds[i].is_empty() {
                xfer(job.source, u, job.input_bytes)
            } else {
                job.preds[i]
                    .iter()
                    .map(|&(p, d)| xfer(place[p], u, d))
                    .fold(0.0, f64::max)
            };
            let t = (work[u] + job.work[i]) / g.capacity[u] + input;
            if t < best.0 {
                best = (t, u);
            }
        }
        if best.1 == usize::MAX {
            return None;
        }
        let u = best.1;
        place[i] = u;
        free[u] -= job.memory[i];
        work[u] += job.work[i];
    }
    Some(place)
}
