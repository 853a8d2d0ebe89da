//! The ENTS experiment: random connected topologies of average degree 3, a mix
//! of device classes, Poisson arrivals of 10-module attribute-recognition jobs,
//! and a discrete-event simulation of the online schedulers.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{gib, mbit, vary};
use crate::cluster::{Cluster, Link, Node, NodeId};
use crate::ents::{Carry, Job, JobGraph, Policy, State, Task, TaskInput, DEFAULT_K_PATHS};
use crate::error::Result;

/// Bytes of one raw 1080p RGB frame.
pub const RAW_FRAME: f64 = 1920.0 * 1080.0 * 3.0;

/// A random node: single-core 1 GB board (40 %), 6-core 4-8 GB embedded GPU
/// (45 %), or a 64-128-core server (15 %). Capacity in wu/s (1 wu ~ 1 GFLOP).
pub fn random_node<R: Rng>(rng: &mut R, i: usize) -> Node {
    let id = NodeId::new(format!("n{i}")).expect("generated ids are valid");
    let x: f64 = rng.gen();
    let (capacity, memory) = if x < 0.4 {
        (2.0, gib(1.0))
    } else if x < 0.85 {
        (
            40.0,
            if rng.gen_bool(0.5) {
                gib(4.0)
            } else {
                gib(8.0)
            },
        )
    } else {
        let cores = rng.gen_range(64..=128) as f64;
        (cores * 5.0, gib(cores))
    };
    Node {
        id,
        capacity,
        memory,
    }
}

/// A random connected topology of `n` nodes with average degree 3 (a random
/// spanning tree plus random extra links), bandwidth `mean_mbit` ± 30 %.
pub fn random_cluster(seed: u64, n: usize, mean_mbit: f64) -> Cluster {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let nodes: Vec<Node> = (0..n).map(|i| random_node(&mut rng, i)).collect();
    let mut pairs = std::collections::BTreeSet::new();
    for i in 1..n {
        let j = rng.gen_range(0..i);
        pairs.insert((j, i));
    }
    let target = (3 * n / 2).min(n * (n - 1) / 2);
    while pairs.len() < target {
        let (a, b) = (rng.gen_range(0..n), rng.gen_range(0..n));
        if a != b {
            pairs.insert((a.min(b), a.max(b)));
        }
    }
    let links = pairs
        .into_iter()
        .map(|(a, b)| {
            Link::new(
                nodes[a].id.clone(),
                nodes[b].id.clone(),
                vary(&mut rng, mbit(mean_mbit), 0.3),
            )
        })
        .collect();
    Cluster { nodes, links }
}

/// The 10-module object-attribute-recognition job: video source/decoder,
/// MobileNet-V2 detector, 7 ResNet-50 attribute/re-ID models, Kalman tracker;
/// raw 1080p frames at 30 fps from `source`.
pub fn attribute_job(id: usize, source: NodeId) -> Job {
    let task = |name: &str, work: f64, mb: u64, inputs: Vec<(&str, f64)>| Task {
        name: name.into(),
        work,
        memory: mb << 20,
        inputs: inputs
            .into_iter()
            .map(|(from, bytes)| TaskInput {
                from: from.into(),
                bytes,
                carry: Carry::default(),
            })
            .collect(),
    };
    let mut tasks = vec![
        task("decode", 0.3, 100, vec![]),
        task("detect", 1.2, 300, vec![("decode", RAW_FRAME)]),
    ];
    let mut track_inputs = vec![("detect", 2_000.0)];
    let names: Vec<String> = (1..=7).map(|a| format!("attr{a}")).collect();
    for n in &names {
        tasks.push(task(n, 4.1, 200, vec![("detect", 150_000.0)]));
        track_inputs.push((n.as_str(), 1_000.0));
    }
    tasks.push(task("track", 0.05, 50, track_inputs));
    Job {
        id: format!("job{id}"),
        source,
        input_bytes: RAW_FRAME,
        input_carry: Carry::default(),
        rate: 30.0,
        tasks,
    }
}

/// One run's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EntsSetup {
    /// Nodes in the topology.
    pub nodes: usize,
    /// Jobs submitted.
    pub jobs: usize,
    /// Mean link bandwidth (Mbit/s).
    pub bandwidth_mbit: f64,
    /// Poisson arrival rate (jobs/s).
    pub arrival_rate: f64,
    /// How long a placed job runs (s).
    pub duration: f64,
    /// Scheduling period (s).
    pub period: f64,
}

impl Default for EntsSetup {
    fn default() -> Self {
        Self {
            nodes: 30,
            jobs: 50,
            bandwidth_mbit: 1.0,
            arrival_rate: 0.5,
            duration: 120.0,
            period: 1.0,
        }
    }
}

/// What a run measured.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct EntsOutcome {
    /// Mean over placed jobs of their time-averaged throughput (items/s).
    pub mean_throughput: f64,
    /// Mean time from submission to placement (s); jobs never placed count until the horizon.
    pub mean_wait: f64,
    /// Jobs never placed within the horizon.
    pub unplaced: usize,
}

/// Simulates `setup` under `policy`: jobs arrive (Poisson), rounds run every
/// `period`, jobs leave after `duration`; throughput is integrated between rounds.
pub fn simulate(seed: u64, setup: &EntsSetup, policy: Policy) -> Result<EntsOutcome> {
    let cluster = random_cluster(seed, setup.nodes, setup.bandwidth_mbit);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9);
    let mut t = 0.0;
    let mut arrivals = Vec::with_capacity(setup.jobs);
    let mut jobs = Vec::with_capacity(setup.jobs);
    for j in 0..setup.jobs {
        t += -(1.0 - rng.gen::<f64>()).ln() / setup.arrival_rate;
        arrivals.push(t);
        let src = cluster.nodes[rng.gen_range(0..cluster.nodes.len())]
            .id
            .clone();
        jobs.push(attribute_job(j, src));
    }
    let mut state = State::new(&cluster, DEFAULT_K_PATHS)?;
    let graphs = jobs
        .iter()
        .map(|j| JobGraph::new(j, &state.graph.index))
        .collect::<Result<Vec<_>>>()?;
    let horizon = arrivals.last().copied().unwrap_or(0.0) + 20.0 * setup.duration;
    let mut queue = Vec::new();
    let mut next_arrival = 0;
    let mut placed_at = vec![f64::NAN; setup.jobs];
    let mut tp_integral = vec![0.0; setup.jobs];
    let mut now = 0.0;
    let mut done = 0;
    while now <= horizon && done < setup.jobs {
        now += setup.period;
        // Integrate throughput over the period that just ended, then release.
        for r in &state.running {
            let end = placed_at[r.job] + setup.duration;
            let dt = (now.min(end) - (now - setup.period).max(placed_at[r.job])).max(0.0);
            tp_integral[r.job] += state.throughput(r) * dt;
        }
        let finished: Vec<usize> = state
            .running
            .iter()
            .filter(|r| placed_at[r.job] + setup.duration <= now)
            .map(|r| r.job)
            .collect();
        for j in finished {
            state.release(j, policy);
            done += 1;
        }
        while next_arrival < setup.jobs && arrivals[next_arrival] <= now {
            queue.push(next_arrival);
            next_arrival += 1;
        }
        for j in state.schedule(&graphs, &mut queue, policy)? {
            placed_at[j] = now;
        }
    }
    let mut tps = Vec::new();
    let mut waits = Vec::new();
    let mut unplaced = 0;
    for j in 0..setup.jobs {
        if placed_at[j].is_nan() {
            unplaced += 1;
            waits.push(horizon - arrivals[j]);
        } else {
            waits.push(placed_at[j] - arrivals[j]);
            tps.push(tp_integral[j] / setup.duration);
        }
    }
    Ok(EntsOutcome {
        mean_throughput: super::mean(&tps),
        mean_wait: super::mean(&waits),
        unplaced,
    })
}
