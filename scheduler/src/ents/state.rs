//! The cluster as the online schedulers see it: free memory, work per node,
//! running jobs with their flows. OTFS, OTFA and the baselines LR, BR and TP are
//! policies of one scheduling round over a wait queue.

use serde::{Deserialize, Serialize};

use super::alloc::allocate;
use super::jrba::{equal_shares, jrba, FlowDemand};
use super::paths::{k_shortest_paths, nodes_of};
use super::{FlowPlan, Job, JobGraph, JobPlacement};
use crate::cluster::{Cluster, Graph};
use crate::error::Result;

/// How a scheduling round places jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Task allocation + JRBA per job on the remaining bandwidth.
    Otfs,
    /// Like OTFS, then JRBA once over all running and new flows.
    Otfa,
    /// Task allocation, fewest-hop routes, links shared equally.
    Tp,
    /// Whole job on the node with the largest free fraction (Kubernetes LeastRequested).
    Lr,
    /// Whole job where CPU and memory fractions end closest (Kubernetes BalancedResource).
    Br,
}

impl Policy {
    /// Every policy, in report order.
    pub const ALL: [Policy; 5] = [Self::Otfa, Self::Otfs, Self::Tp, Self::Lr, Self::Br];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Otfs => "otfs",
            Self::Otfa => "otfa",
            Self::Tp => "tp",
            Self::Lr => "lr",
            Self::Br => "br",
        }
    }
}

/// A placed, running job.
#[derive(Clone, Debug)]
pub struct RunningJob {
    /// The caller's job index.
    pub job: usize,
    /// Node of every task.
    pub place: Vec<usize>,
    /// Cross-node flows.
    pub flows: Vec<FlowDemand>,
    /// Route per flow (link indices).
    pub paths: Vec<Vec<usize>>,
    /// Bandwidth per flow (bytes/s).
    pub bandwidth: Vec<f64>,
    /// Requested items/s.
    pub rate: f64,
    /// Memory per task (to release).
    memory: Vec<u64>,
    /// Work per task (to release).
    work: Vec<f64>,
    /// Requested CPU (wu/s) for LR/BR.
    cpu_request: f64,
}

/// Cluster state across scheduling rounds.
#[derive(Clone, Debug)]
pub struct State {
    /// The network.
    pub graph: Graph,
    /// Candidate paths per flow.
    pub k_paths: usize,
    /// Mean bandwidth on the fewest-hop path between every pair (0 = unreachable).
    avg_bw: Vec<Vec<f64>>,
    /// Free memory per node.
    pub mem_free: Vec<u64>,
    /// Work per item placed on each node (all jobs).
    pub work_on: Vec<f64>,
    /// CPU requested on each node (wu/s), for LR/BR.
    cpu_req: Vec<f64>,
    /// Running jobs.
    pub running: Vec<RunningJob>,
    /// LP optimum of the last JRBA run.
    pub last_lp_bound: Option<f64>,
}

impl State {
    /// An empty cluster.
    pub fn new(c: &Cluster, k_paths: usize) -> Result<Self> {
        let graph = c.index()?;
        let n = graph.len();
        let mut avg_bw = vec![vec![0.0; n]; n];
        for (s, row) in avg_bw.iter_mut().enumerate() {
            for (t, cell) in row.iter_mut().enumerate() {
                if let Some(p) = graph.bfs_path(s, t, &|_| true) {
                    *cell = if p.is_empty() {
                        f64::INFINITY
                    } else {
                        p.iter().map(|&l| graph.bandwidth[l]).sum::<f64>() / p.len() as f64
                    };
                }
            }
        }
        Ok(Self {
            k_paths,
            avg_bw,
            mem_free: graph.memory.clone(),
            work_on: vec![0.0; n],
            cpu_req: vec![0.0; n],
            graph,
            running: Vec::new(),
            last_lp_bound: None,
        })
    }

    /// Bandwidth not allocated to running flows, per link.
    pub fn residual(&self) -> Vec<f64> {
        let mut r = self.graph.bandwidth.clone();
        for j in &self.running {
            for (p, b) in j.paths.iter().zip(&j.bandwidth) {
                for &l in p {
                    r[l] -= b;
                }
            }
        }
        r.iter().map(|&x| x.max(0.0)).collect()
    }

    /// Items/s a running job achieves now.
    pub fn throughput(&self, j: &RunningJob) -> f64 {
        let node = j
            .place
            .iter()
            .map(|&u| self.work_on[u] / self.graph.capacity[u])
            .fold(0.0, f64::max);
        let flow = j
            .flows
            .iter()
            .zip(&j.bandwidth)
            .map(|(f, b)| f.volume / b)
            .fold(0.0, f64::max);
        let t = node.max(flow);
        if t > 0.0 {
            j.rate.min(1.0 / t)
        } else {
            j.rate
        }
    }

    /// Items/s the job's compute allows (bandwidth above `V * this` is wasted).
    fn compute_rate(&self, j: &RunningJob) -> f64 {
        let node = j
            .place
            .iter()
            .map(|&u| self.work_on[u] / self.graph.capacity[u])
            .fold(0.0, f64::max);
        if node > 0.0 {
            j.rate.min(1.0 / node)
        } else {
            j.rate
        }
    }

    /// `max V_f / b_f` over running flows.
    pub fn transfer_period(&self) -> f64 {
        self.running
            .iter()
            .flat_map(|j| j.flows.iter().zip(&j.bandwidth).map(|(f, b)| f.volume / b))
            .fold(0.0, f64::max)
    }

    /// Ends job `job` (caller's index), releasing memory, work and bandwidth.
    pub fn release(&mut self, job: usize, policy: Policy) {
        let Some(pos) = self.running.iter().position(|r| r.job == job) else {
            return;
        };
        let r = self.running.remove(pos);
        for (i, &u) in r.place.iter().enumerate() {
            self.mem_free[u] += r.memory[i];
            self.work_on[u] -= r.work[i];
            if self.work_on[u] < 1e-12 {
                self.work_on[u] = 0.0;
            }
        }
        self.cpu_req[r.place[0]] -= r.cpu_request;
        if matches!(policy, Policy::Tp | Policy::Lr | Policy::Br) {
            self.reshare_equal();
        }
    }

    fn reshare_equal(&mut self) {
        let paths: Vec<Vec<usize>> = self
            .running
            .iter()
            .flat_map(|j| j.paths.iter().cloned())
            .collect();
        let shares = equal_shares(&self.graph.bandwidth, &paths);
        let mut it = shares.into_iter();
        for j in &mut self.running {
            for b in &mut j.bandwidth {
                *b = it.next().unwrap_or(0.0);
            }
        }
    }

    /// Whole-job node for LR/BR, or `None` when the job fits nowhere.
    fn whole_job_node(&self, job: &JobGraph, policy: Policy) -> Option<usize> {
        let mem = job.total_memory();
        let cpu = job.rate * job.total_work();
        let score = |u: usize| {
            let cap = self.graph.capacity[u];
            let total_mem = self.graph.memory[u].max(1) as f64;
            let cpu_frac = ((self.cpu_req[u] + cpu) / cap).min(1.0);
            let mem_frac = (total_mem - (self.mem_free[u] - mem) as f64) / total_mem;
            match policy {
                Policy::Br => 1.0 - (cpu_frac - mem_frac).abs(),
                _ => ((1.0 - cpu_frac) + (1.0 - mem_frac)) / 2.0,
            }
        };
        (0..self.graph.len())
            .filter(|&u| self.mem_free[u] >= mem && self.avg_bw[job.source][u] > 0.0)
            .max_by(|&a, &b| score(a).total_cmp(&score(b)).then(b.cmp(&a)))
    }

    /// One scheduling round: tries every job in `queue` (longest waiting first),
    /// removes the placed ones from it and returns them.
    pub fn schedule(
        &mut self,
        graphs: &[JobGraph],
        queue: &mut Vec<usize>,
        policy: Policy,
    ) -> Result<Vec<usize>> {
        let mut placed = Vec::new();
        for &j in queue.iter() {
            let job = &graphs[j];
            let place = match policy {
                Policy::Lr | Policy::Br => self
                    .whole_job_node(job, policy)
                    .map(|u| vec![u; job.work.len()]),
                _ => allocate(
                    &self.graph,
                    &self.avg_bw,
                    &self.mem_free,
                    &self.work_on,
                    job,
                ),
            };
            let Some(place) = place else { continue };
            let flows: Vec<FlowDemand> = job
                .flows(&place)
                .into_iter()
                .map(|(src, dst, volume)| FlowDemand { src, dst, volume })
                .collect();
            let (paths, bandwidth) = if policy == Policy::Otfs {
                let Some(r) = jrba(&self.graph, &self.residual(), &flows, self.k_paths)? else {
                    continue;
                };
                self.last_lp_bound = Some(r.lp_bound);
                (r.paths, r.bandwidth)
            } else {
                let mut paths = Vec::with_capacity(flows.len());
                for f in &flows {
                    match k_shortest_paths(&self.graph, f.src, f.dst, 1, &|_| true).pop() {
                        Some(p) => paths.push(p),
                        None => break,
                    }
                }
                if paths.len() < flows.len() {
                    continue;
                }
                let n = paths.len();
                (paths, vec![0.0; n])
            };
            for (i, &u) in place.iter().enumerate() {
                self.mem_free[u] -= job.memory[i];
                self.work_on[u] += job.work[i];
            }
            let cpu_request = job.rate * job.total_work();
            self.cpu_req[place[0]] += cpu_request;
            let run = RunningJob {
                job: j,
                place,
                flows,
                paths,
                bandwidth,
                rate: job.rate,
                memory: job.memory.clone(),
                work: job.work.clone(),
                cpu_request,
            };
            self.running.push(run);
            placed.push(j);
            if policy == Policy::Otfs {
                self.cap_last();
            }
        }
        queue.retain(|j| !placed.contains(j));
        match policy {
            Policy::Otfa if !placed.is_empty() => self.readjust_all()?,
            Policy::Tp | Policy::Lr | Policy::Br => self.reshare_equal(),
            _ => {}
        }
        Ok(placed)
    }

    /// Caps the newest job's flows at what its compute can use, returning the rest to the pool.
    fn cap_last(&mut self) {
        let Some(j) = self.running.last() else { return };
        let r = self.compute_rate(j);
        let j = self.running.last_mut().expect("checked above");
        for (f, b) in j.flows.iter().zip(j.bandwidth.iter_mut()) {
            *b = b.min(f.volume * r);
        }
    }

    /// OTFA's adjustment: JRBA over every running flow on the full bandwidth,
    /// then each flow capped at what its job's compute can use.
    fn readjust_all(&mut self) -> Result<()> {
        let flows: Vec<FlowDemand> = self
            .running
            .iter()
            .flat_map(|j| j.flows.iter().copied())
            .collect();
        let Some(r) = jrba(&self.graph, &self.graph.bandwidth, &flows, self.k_paths)? else {
            return Ok(()); // unreachable: every flow had a route when placed
        };
        self.last_lp_bound = Some(r.lp_bound);
        let rates: Vec<f64> = self.running.iter().map(|j| self.compute_rate(j)).collect();
        let mut it = r.paths.into_iter().zip(r.bandwidth);
        for (j, rate) in self.running.iter_mut().zip(rates) {
            for ((f, p), b) in j
                .flows
                .iter()
                .zip(j.paths.iter_mut())
                .zip(j.bandwidth.iter_mut())
            {
                let (np, nb) = it.next().expect("one result per flow");
                *p = np;
                *b = nb.min(f.volume * rate);
            }
        }
        Ok(())
    }

    /// The running jobs as id-named placements.
    pub fn placements(&self, c: &Cluster, jobs: &[Job]) -> Vec<JobPlacement> {
        let id = |u: usize| c.nodes[u].id.clone();
        self.running
            .iter()
            .map(|r| JobPlacement {
                job: jobs[r.job].id.clone(),
                tasks: jobs[r.job]
                    .tasks
                    .iter()
                    .zip(&r.place)
                    .map(|(t, &u)| (t.name.clone(), id(u)))
                    .collect(),
                flows: r
                    .flows
                    .iter()
                    .zip(&r.paths)
                    .zip(&r.bandwidth)
                    .map(|((f, p), &b)| FlowPlan {
                        from: id(f.src),
                        to: id(f.dst),
                        bytes: f.volume,
                        route: nodes_of(&self.graph, f.src, p)
                            .into_iter()
                            .map(id)
                            .collect(),
                        bandwidth: b,
                    })
                    .collect(),
                throughput: self.throughput(r),
            })
            .collect()
    }
}
