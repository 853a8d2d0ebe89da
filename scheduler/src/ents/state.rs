//! The cluster as the online schedulers see it: free memory, work per node,
//! running jobs with their flows. OTFS, OTFA and the baselines LR, BR and TP are
//! policies of one scheduling round over a wait queue.

use serde::{Deserialize, Serialize};

use super::alloc::{allocate, Allocation};
use super::jrba::{equal_shares, jrba, FlowDemand};
use super::paths::{k_shortest_paths, nodes_of};
use super::share::{fair_rates, JobDemand};
use super::{FlowPlan, Job, JobGraph, JobPlacement};
use crate::cluster::{Cluster, Graph};
use crate::error::Result;

/// Fraction of each link's free bandwidth an OTFS job may reserve.
pub const OTFS_RESERVE: f64 = 0.5;

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
    /// Work per item on each node it uses: its tasks' and their inputs'
    /// carry (to release, and for its node times).
    node_work: Vec<(usize, f64)>,
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
    /// How Algorithm 1 chooses nodes.
    pub allocation: Allocation,
}

impl State {
    /// An empty cluster.
    pub fn new(c: &Cluster, k_paths: usize) -> Result<Self> {
        let graph = c.index()?;
        let n = graph.len();
        // One BFS per source: its tree holds the same fewest-hop path to every
        // node as `Graph::bfs_path` (same visiting order, same ties).
        let mut avg_bw = vec![vec![0.0; n]; n];
        let mut queue = std::collections::VecDeque::with_capacity(n);
        for (s, row) in avg_bw.iter_mut().enumerate() {
            // (hops, bandwidth sum) of the path to each reached node.
            let mut reach: Vec<Option<(usize, f64)>> = vec![None; n];
            reach[s] = Some((0, 0.0));
            queue.push_back(s);
            while let Some(u) = queue.pop_front() {
                let (hops, sum) = reach[u].expect("queued nodes are reached");
                for &(v, l) in &graph.adj[u] {
                    if reach[v].is_none() {
                        reach[v] = Some((hops + 1, sum + graph.bandwidth[l]));
                        queue.push_back(v);
                    }
                }
            }
            for (cell, r) in row.iter_mut().zip(reach) {
                *cell = match r {
                    Some((0, _)) => f64::INFINITY,
                    Some((hops, sum)) => sum / hops as f64,
                    None => 0.0,
                };
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
            allocation: Allocation::default(),
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
        let node = self.node_period(j);
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
        let node = self.node_period(j);
        if node > 0.0 {
            j.rate.min(1.0 / node)
        } else {
            j.rate
        }
    }

    /// Seconds per item of the slowest node the job uses (all work on it).
    fn node_period(&self, j: &RunningJob) -> f64 {
        j.node_work
            .iter()
            .map(|&(u, _)| self.work_on[u] / self.graph.capacity[u])
            .fold(0.0, f64::max)
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
        }
        for &(u, w) in &r.node_work {
            self.work_on[u] -= w;
            if self.work_on[u] < 1e-12 {
                self.work_on[u] = 0.0;
            }
        }
        self.cpu_req[r.place[0]] -= r.cpu_request;
        match policy {
            Policy::Tp | Policy::Lr | Policy::Br => self.reshare_equal(),
            Policy::Otfa => self.reshare_fair(),
            Policy::Otfs => {}
        }
    }

    /// Per-job fair rates of the running jobs on `paths` (one route list per job).
    fn fair(&self, paths: &[Vec<Vec<usize>>]) -> Vec<f64> {
        let demands: Vec<JobDemand> = self
            .running
            .iter()
            .zip(paths)
            .map(|(j, p)| JobDemand {
                cap: self.compute_rate(j),
                flows: &j.flows,
                paths: p,
            })
            .collect();
        fair_rates(&self.graph.bandwidth, &demands)
    }

    /// Gives every running flow `V_f * x_j` with `x` the per-job fair rates on the current routes.
    fn reshare_fair(&mut self) {
        let paths: Vec<Vec<Vec<usize>>> = self.running.iter().map(|j| j.paths.clone()).collect();
        let x = self.fair(&paths);
        for (j, x) in self.running.iter_mut().zip(x) {
            for (f, b) in j.flows.iter().zip(j.bandwidth.iter_mut()) {
                *b = f.volume * x;
            }
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

    /// Whether `place` (a node per task) is valid for `job` and its nodes
    /// have the memory.
    fn fits(&self, job: &JobGraph, place: &[usize]) -> bool {
        if place.len() != job.work.len() || place.iter().any(|&u| u >= self.graph.len()) {
            return false;
        }
        let mut need = vec![0u64; self.graph.len()];
        for (i, &u) in place.iter().enumerate() {
            need[u] += job.memory[i];
        }
        need.iter().zip(&self.mem_free).all(|(n, f)| n <= f)
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
        self.schedule_keeping(graphs, queue, policy, &[])
    }

    /// [`State::schedule`], except that job `j` goes where `keep[j]` says
    /// (a node per task) when it is given and its nodes have the memory:
    /// routes and shares are then set by `policy` as for any placement.
    pub fn schedule_keeping(
        &mut self,
        graphs: &[JobGraph],
        queue: &mut Vec<usize>,
        policy: Policy,
        keep: &[Option<Vec<usize>>],
    ) -> Result<Vec<usize>> {
        let mut placed = Vec::new();
        for &j in queue.iter() {
            let job = &graphs[j];
            let kept = keep
                .get(j)
                .and_then(Option::as_ref)
                .filter(|p| self.fits(job, p))
                .cloned();
            let place = match policy {
                _ if kept.is_some() => kept,
                Policy::Lr | Policy::Br => self
                    .whole_job_node(job, policy)
                    .map(|u| vec![u; job.work.len()]),
                _ => allocate(
                    &self.graph,
                    &self.avg_bw,
                    &self.mem_free,
                    &self.work_on,
                    job,
                    self.allocation,
                ),
            };
            let Some(place) = place else { continue };
            let flows: Vec<FlowDemand> = job
                .flows(&place)
                .into_iter()
                .map(|(src, dst, volume)| FlowDemand { src, dst, volume })
                .collect();
            let residual = self.residual();
            let (paths, bandwidth) = if policy == Policy::Otfs {
                let Some(r) = jrba(&self.graph, &residual, &flows, self.k_paths)? else {
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
            }
            let node_work = job.node_work(&place);
            for &(u, w) in &node_work {
                self.work_on[u] += w;
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
                node_work,
                cpu_request,
            };
            self.running.push(run);
            placed.push(j);
            if policy == Policy::Otfs {
                self.reserve_last(&residual);
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

    /// OTFS's reservation for the newest job, on its JRBA routes: the rate its
    /// compute can use, but at most [`OTFS_RESERVE`] of what is free on each link
    /// it crosses (OTFS never re-divides running flows, so a job that took all
    /// free bandwidth would block every later job on its links).
    fn reserve_last(&mut self, residual: &[f64]) {
        let Some(j) = self.running.last() else { return };
        let cap = self.compute_rate(j);
        let avail: Vec<f64> = residual.iter().map(|r| r * OTFS_RESERVE).collect();
        let demand = [JobDemand {
            cap,
            flows: &j.flows,
            paths: &j.paths,
        }];
        let x = fair_rates(&avail, &demand)[0];
        let j = self.running.last_mut().expect("checked above");
        for (f, b) in j.flows.iter().zip(j.bandwidth.iter_mut()) {
            *b = f.volume * x;
        }
    }

    /// OTFA's adjustment: JRBA over every running flow on the full bandwidth
    /// chooses the routes, then per-job fair shares divide the links. The
    /// fewest-hop routes are scored the same way and kept when their mean
    /// throughput is higher (the LP minimises the worst flow's transfer time,
    /// which is not the figure of merit, and its rounding can lengthen routes).
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
        let mut it = r.paths.into_iter();
        let lp: Vec<Vec<Vec<usize>>> = self
            .running
            .iter()
            .map(|j| j.flows.iter().map_while(|_| it.next()).collect())
            .collect();
        let short: Vec<Vec<Vec<usize>>> = self
            .running
            .iter()
            .map(|j| {
                j.flows
                    .iter()
                    .map(|f| {
                        k_shortest_paths(&self.graph, f.src, f.dst, 1, &|_| true)
                            .pop()
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .collect();
        let (x_lp, x_short) = (self.fair(&lp), self.fair(&short));
        let sum = |x: &[f64]| x.iter().sum::<f64>();
        let (paths, x) = if sum(&x_short) > sum(&x_lp) {
            (short, x_short)
        } else {
            (lp, x_lp)
        };
        for ((j, p), x) in self.running.iter_mut().zip(paths).zip(x) {
            j.paths = p;
            for (f, b) in j.flows.iter().zip(j.bandwidth.iter_mut()) {
                *b = f.volume * x;
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
