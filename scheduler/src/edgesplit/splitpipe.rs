//! SplitPipe: the server side of split training as a discrete-event model of
//! its memory and round time (ALGORITHMS.md section 3, Table 4.5).
//!
//! Model (our reading of the spec; the published text leaves details open):
//! - Each device keeps its own server-side weights (that is what makes split
//!   training compute the same gradients as local training); a weight set
//!   costs 16 B per parameter (weights, gradients, two optimiser moments).
//! - The server is one processor of speed `server_speed * M` (the capacity the
//!   plan assumed, pooled) that runs one task at a time, without preemption.
//!   A backward task costs twice its forward, as in the planner.
//! - A batch caches its activations on the server from the start of a
//!   forward task to the end of the matching backward task: twice the bytes of
//!   the inputs of every block in the task (the planner's training-memory rule).
//! - Devices run batches one after another: forward, upload the activation,
//!   wait for the gradient, backward; after `b` batches they exchange weights.
//!
//! Policies ([`PipePolicy`]):
//! - **NoPipe**: one partial model per device (its own instance with
//!   `instance_bytes` of runtime/workspace), a batch's server part one forward
//!   and one backward task, FIFO.
//! - **FIFO**: one instance of the deepest partial model split into segments at
//!   the distinct cuts; a device's batch enters the segment after its cut and
//!   flows down and back; each segment task is queued, first come first served.
//! - **BF**: as FIFO, but queued backward tasks run before forward ones, so
//!   batches finish sooner and release their activations.
//! - **RW**: as BF, but each segment keeps one device's weight set in memory;
//!   a task of another device first saves the resident set and loads its own
//!   (`2 * set bytes / disk_bandwidth`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use super::{SplitInstance, SplitPlan};

/// Bytes of training state per parameter byte of `param_bytes` (fp32 weights,
/// gradients and two optimiser moments: 16 B per 4 B parameter).
const STATE_PER_PARAM_BYTE: f64 = 4.0;

/// Server-side execution policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipePolicy {
    /// One partial model per device, no pipelining.
    NoPipe,
    /// Segmented pipeline, first come first served.
    Fifo,
    /// Segmented pipeline, backward tasks first.
    Bf,
    /// Backward first, one resident weight set per segment, the others on disk.
    Rw,
}

impl PipePolicy {
    /// Every policy, in report order.
    pub const ALL: [PipePolicy; 4] = [Self::NoPipe, Self::Fifo, Self::Bf, Self::Rw];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::NoPipe => "no_pipe",
            Self::Fifo => "fifo",
            Self::Bf => "bf",
            Self::Rw => "rw",
        }
    }
}

/// Server parameters of the model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipeConfig {
    /// Runtime and workspace of one model instance on the server (bytes); default 300 MB.
    pub instance_bytes: f64,
    /// Disk bandwidth for RW's weight swaps (bytes/s); default 1 GB/s.
    pub disk_bandwidth: f64,
}

impl Default for PipeConfig {
    fn default() -> Self {
        Self {
            instance_bytes: 300e6,
            disk_bandwidth: 1e9,
        }
    }
}

/// Memory and time of one round under a policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipeOutcome {
    /// The policy.
    pub policy: PipePolicy,
    /// Peak server memory (bytes).
    pub peak_memory: f64,
    /// Resident weight sets and instances (bytes), the part that does not vary over the round.
    pub static_memory: f64,
    /// Round time: the last device's end of round (s).
    pub round_time: f64,
    /// Weight swaps RW made (0 for the others).
    pub swaps: u64,
}

/// A queued server task.
#[derive(Clone, Copy, Debug)]
struct Task {
    ready: f64,
    seq: u64,
    device: usize,
    segment: usize,
    backward: bool,
}

/// Simulates one round of `plan` (its cuts and bandwidth shares) under `policy`.
pub fn simulate(
    inst: &SplitInstance,
    plan: &SplitPlan,
    policy: PipePolicy,
    cfg: &PipeConfig,
) -> PipeOutcome {
    let cuts = &inst.model.cuts;
    let last = cuts.len() - 1;
    let m = inst.devices.len();
    let b = inst.batches as usize;
    let speed = inst.server_speed * m as f64;
    let dev_cut: Vec<usize> = plan.devices.iter().map(|d| d.cut).collect();
    let share: Vec<f64> = plan.devices.iter().map(|d| d.bandwidth).collect();
    // Segment boundaries: the distinct cuts of devices with a server part
    // (NoPipe: each device's own span), then `last`.
    let mut bounds: Vec<usize> = dev_cut.iter().copied().filter(|&j| j < last).collect();
    bounds.sort_unstable();
    bounds.dedup();
    let segs = bounds.len();
    bounds.push(last);
    let seg_of = |j: usize| bounds.iter().position(|&c| c == j);
    // Per segment [lo, hi): forward work, cached bytes, weight-set bytes.
    let span = |lo: usize, hi: usize| {
        let work = cuts[lo].server_work - cuts[hi].server_work;
        let cache = 2.0 * (lo..hi).map(|j| cuts[j].activation_bytes).sum::<f64>();
        let state = STATE_PER_PARAM_BYTE * (cuts[hi].param_bytes - cuts[lo].param_bytes);
        (work, cache, state)
    };
    let comm_share = |i: usize, bytes: f64| if bytes == 0.0 { 0.0 } else { bytes / share[i] };
    let dev_fwd = |i: usize| cuts[dev_cut[i]].device_work / inst.devices[i].speed;
    let up = |i: usize| comm_share(i, cuts[dev_cut[i]].activation_bytes);

    let mut static_memory = 0.0;
    let servers: Vec<usize> = (0..m).filter(|&i| dev_cut[i] < last).collect();
    match policy {
        PipePolicy::NoPipe => {
            for &i in &servers {
                static_memory += cfg.instance_bytes + span(dev_cut[i], last).2;
            }
        }
        PipePolicy::Fifo | PipePolicy::Bf => {
            static_memory += if servers.is_empty() {
                0.0
            } else {
                cfg.instance_bytes
            };
            for &i in &servers {
                static_memory += span(dev_cut[i], last).2;
            }
        }
        PipePolicy::Rw => {
            static_memory += if servers.is_empty() {
                0.0
            } else {
                cfg.instance_bytes
            };
            static_memory += (0..segs)
                .map(|s| span(bounds[s], bounds[s + 1]).2)
                .sum::<f64>();
        }
    }
    // Task geometry: (first segment, last segment + 1) per device, and per segment span.
    let pipe = policy != PipePolicy::NoPipe;
    let task_span = |i: usize, s: usize| {
        if pipe {
            span(bounds[s], bounds[s + 1])
        } else {
            span(dev_cut[i], last)
        }
    };
    let entry = |i: usize| {
        if pipe {
            seg_of(dev_cut[i]).unwrap_or(0)
        } else {
            0
        }
    };
    let exit = if pipe { segs.max(1) - 1 } else { 0 };

    let mut seq = 0u64;
    let mut queue: Vec<Task> = Vec::new();
    // Device events: (time, device) when a batch's activation reaches the server.
    let mut arrivals: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let key = |t: f64| t.to_bits(); // non-negative floats order like their bits
    let mut batches_left = vec![b; m];
    let mut finish = vec![0.0f64; m];
    for i in 0..m {
        let params = 2.0 * comm_share(i, cuts[dev_cut[i]].param_bytes);
        if dev_cut[i] == last || b == 0 {
            finish[i] = b as f64 * 3.0 * dev_fwd(i) + params;
            batches_left[i] = 0;
        } else {
            arrivals.push(Reverse((key(dev_fwd(i) + up(i)), seq, i)));
            seq += 1;
        }
    }
    let mut now = 0.0f64;
    let mut memory = static_memory;
    let mut peak = memory;
    let mut resident: Vec<Option<usize>> = vec![None; segs.max(1)];
    let mut swaps = 0;
    loop {
        // Admit every arrival up to `now`; if the server would idle, jump to the next one.
        while let Some(&Reverse((t, _, i))) = arrivals.peek() {
            let t = f64::from_bits(t);
            if t > now && !queue.is_empty() {
                break;
            }
            arrivals.pop();
            now = now.max(t);
            queue.push(Task {
                ready: t,
                seq,
                device: i,
                segment: entry(i),
                backward: false,
            });
            seq += 1;
        }
        if queue.is_empty() {
            break;
        }
        let bf = matches!(policy, PipePolicy::Bf | PipePolicy::Rw);
        let pick = (0..queue.len())
            .min_by(|&x, &y| {
                let (a, c) = (&queue[x], &queue[y]);
                let pa = (bf && !a.backward, a.ready, a.seq);
                let pc = (bf && !c.backward, c.ready, c.seq);
                pa.partial_cmp(&pc).unwrap_or(std::cmp::Ordering::Equal)
            })
            .expect("queue is not empty");
        let task = queue.swap_remove(pick);
        let (work, cache, state) = task_span(task.device, task.segment);
        let mut dur = work * if task.backward { 2.0 } else { 1.0 } / speed;
        if policy == PipePolicy::Rw && resident[task.segment] != Some(task.device) {
            if resident[task.segment].is_some() {
                dur += 2.0 * state / cfg.disk_bandwidth;
                swaps += 1;
            }
            resident[task.segment] = Some(task.device);
        }
        if !task.backward {
            memory += cache;
            peak = peak.max(memory);
        }
        now += dur;
        if task.backward {
            memory -= cache;
        }
        let i = task.device;
        let next = |segment, backward| Task {
            ready: now,
            seq: 0,
            device: i,
            segment,
            backward,
        };
        let follow = match (task.backward, task.segment) {
            (false, s) if s < exit => Some(next(s + 1, false)),
            (false, s) => Some(next(s, true)),
            (true, s) if s > entry(i) => Some(next(s - 1, true)),
            (true, _) => None,
        };
        match follow {
            Some(mut t) => {
                t.seq = seq;
                seq += 1;
                queue.push(t);
            }
            None => {
                // Gradient down, device backward; then the next batch or the weight exchange.
                let back = now + up(i) + 2.0 * dev_fwd(i);
                batches_left[i] -= 1;
                if batches_left[i] == 0 {
                    finish[i] = back + 2.0 * comm_share(i, cuts[dev_cut[i]].param_bytes);
                } else {
                    arrivals.push(Reverse((key(back + dev_fwd(i) + up(i)), seq, i)));
                    seq += 1;
                }
            }
        }
    }
    PipeOutcome {
        policy,
        peak_memory: peak,
        static_memory,
        round_time: finish.iter().copied().fold(0.0, f64::max),
        swaps,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::edgesplit::{compute_time, plan, SplitAlgorithm};
    use crate::sim::split::{instance, MODELS};

    #[test]
    fn one_device_matches_the_planner_round_time() {
        for model in MODELS {
            let inst = instance(3, model, 1, 30.0, 20).expect("known model");
            let p = plan(&inst, SplitAlgorithm::EdgesplitFix).expect("feasible");
            for policy in PipePolicy::ALL {
                let o = simulate(&inst, &p, policy, &PipeConfig::default());
                let rel = (o.round_time - p.round_time).abs() / p.round_time;
                assert!(
                    rel < 1e-9,
                    "{model} {policy:?}: {} vs {}",
                    o.round_time,
                    p.round_time
                );
                assert_eq!(o.swaps, 0);
            }
        }
    }

    #[test]
    fn backward_first_and_rw_save_memory_on_the_published_setup() {
        for model in ["vgg16", "resnet50", "resnet101"] {
            for seed in 0..10 {
                let inst = instance(seed, model, 8, 30.0, 40).expect("known model");
                let p = plan(&inst, SplitAlgorithm::Edgesplit).expect("feasible");
                let o: Vec<PipeOutcome> = PipePolicy::ALL
                    .iter()
                    .map(|&policy| simulate(&inst, &p, policy, &PipeConfig::default()))
                    .collect();
                let peak = |i: usize| o[i].peak_memory;
                assert!(
                    peak(1) <= peak(0),
                    "{model} {seed}: FIFO above no pipelining"
                );
                assert!(peak(2) <= peak(1), "{model} {seed}: BF above FIFO");
                assert!(peak(3) <= peak(2), "{model} {seed}: RW above BF");
                assert!(
                    o[3].round_time >= o[2].round_time * (1.0 - 1e-12),
                    "{model} {seed}: RW faster than BF"
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn every_policy_finishes_within_bounds(seed in 0u64..1000, m in 1usize..10, model in 0usize..4, mbit in 5.0f64..50.0) {
            let inst = instance(seed, MODELS[model], m, mbit, 10).expect("known model");
            let Ok(p) = plan(&inst, SplitAlgorithm::Edgesplit) else { return Ok(()) };
            let speed = inst.server_speed * m as f64;
            let mut statics = Vec::new();
            for policy in PipePolicy::ALL {
                let o = simulate(&inst, &p, policy, &PipeConfig::default());
                prop_assert!(o.peak_memory >= o.static_memory);
                for (i, d) in p.devices.iter().enumerate() {
                    // The device's own work and transfers, plus its server work at full speed.
                    let c = &inst.model.cuts[d.cut];
                    let own = compute_time(&inst, i, d.cut) - 3.0 * inst.batches as f64 * c.server_work / inst.server_speed;
                    let comm = if d.bandwidth > 0.0 { crate::edgesplit::comm_bytes(&inst, d.cut) / d.bandwidth } else { 0.0 };
                    let lb = own + comm + 3.0 * inst.batches as f64 * c.server_work / speed;
                    prop_assert!(o.round_time >= lb * (1.0 - 1e-9), "{:?}: {} < {}", policy, o.round_time, lb);
                }
                statics.push(o.static_memory);
            }
            // One instance instead of one per device; RW holds one weight set per segment.
            prop_assert!(statics[1] <= statics[0] + 1e-6);
            prop_assert!(statics[2] == statics[1]);
            prop_assert!(statics[3] <= statics[2] + 1e-6);
        }
    }
}
