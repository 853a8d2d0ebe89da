//! EdgeSplit planning (ALGORITHMS.md section 3): a cut layer per device and a
//! share of the uplink per device, minimising the round time of split federated
//! training. Algorithm 6 (alternating minimisation) with the memory constraint
//! and the exact bisection for bandwidth; baselines Vanilla FL, Adaptive FL and
//! EdgeSplit-Fix.
//!
//! Times come from work: device forward of layers `1..j` takes
//! `F_j / speed_i`, server forward of the rest `S_j / server_speed`, and a
//! backward pass twice its forward. `A_ij = 3 b (F_j / speed_i + S_j / server)`,
//! `C_j = 2 (b O_j + P_j)`, round time `T_i = A_ij + C_j / B_i`.
//!
//! [`splitpipe`] models the server side of a plan (memory and round time
//! under no pipelining, FIFO, BF and RW).

pub mod splitpipe;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SchedError};

/// One cut point: layers `1..=j` on the device, the rest on the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cut {
    /// Name of the last device-side layer.
    pub layer: String,
    /// Device-side forward work per batch, `F_j` (wu).
    pub device_work: f64,
    /// Server-side forward work per batch, `S_j` (wu); 0 for the last cut.
    pub server_work: f64,
    /// Activation bytes per batch at the cut, `O_j` (gradient equal); 0 for the last cut.
    pub activation_bytes: f64,
    /// Bytes of device-side parameters, `P_j`.
    pub param_bytes: f64,
    /// Device memory to train layers `1..=j` (bytes).
    pub train_memory: u64,
}

/// A model's cut points, shallowest first; the last one is the whole model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelProfile {
    /// Model name.
    pub name: String,
    /// Cut points.
    pub cuts: Vec<Cut>,
}

/// One training device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Name.
    pub id: String,
    /// Training speed (wu/s).
    pub speed: f64,
    /// Memory available for training (bytes).
    pub memory: u64,
}

/// A split-training planning problem (the `solve` input for EdgeSplit algorithms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitInstance {
    /// The devices.
    pub devices: Vec<Device>,
    /// Server speed available to each device (wu/s).
    pub server_speed: f64,
    /// The model.
    pub model: ModelProfile,
    /// Batches per round, `b`.
    pub batches: u32,
    /// Total uplink bandwidth `B` (bytes/s).
    pub bandwidth: f64,
}

/// The planners.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitAlgorithm {
    /// Algorithm 6.
    Edgesplit,
    /// Every device cut at half the layers, bandwidth by bisection.
    EdgesplitFix,
    /// Whole model on devices, bandwidth by bisection.
    AdaptiveFl,
    /// Whole model on devices, bandwidth shared equally.
    VanillaFl,
}

impl SplitAlgorithm {
    /// Every planner, in report order.
    pub const ALL: [SplitAlgorithm; 4] = [
        Self::Edgesplit,
        Self::EdgesplitFix,
        Self::AdaptiveFl,
        Self::VanillaFl,
    ];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Edgesplit => "edgesplit",
            Self::EdgesplitFix => "edgesplit_fix",
            Self::AdaptiveFl => "adaptive_fl",
            Self::VanillaFl => "vanilla_fl",
        }
    }
}

/// One device's decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DevicePlan {
    /// The device.
    pub device: String,
    /// Index of its cut in the model's list.
    pub cut: usize,
    /// Name of its last device-side layer.
    pub layer: String,
    /// Its bandwidth share (bytes/s).
    pub bandwidth: f64,
    /// Its round time (s).
    pub round_time: f64,
}

/// A plan and its round time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitPlan {
    /// Planner used.
    pub algorithm: SplitAlgorithm,
    /// Round time, the slowest device's (s).
    pub round_time: f64,
    /// Sum of bandwidth shares (<= `B`).
    pub bandwidth_used: f64,
    /// Per device, input order.
    pub devices: Vec<DevicePlan>,
}

fn validate(inst: &SplitInstance) -> Result<()> {
    let mut p = Vec::new();
    if inst.devices.is_empty() {
        p.push("no devices".to_string());
    }
    if inst.model.cuts.is_empty() {
        p.push(format!("model {} has no cuts", inst.model.name));
    }
    for (what, v) in [
        ("server_speed", inst.server_speed),
        ("bandwidth", inst.bandwidth),
    ] {
        if !(v.is_finite() && v > 0.0) {
            p.push(format!("{what} = {v} must be finite and > 0"));
        }
    }
    for d in &inst.devices {
        if !(d.speed.is_finite() && d.speed > 0.0) {
            p.push(format!(
                "device {}: speed {} must be finite and > 0",
                d.id, d.speed
            ));
        }
    }
    for c in &inst.model.cuts {
        for (what, v) in [
            ("device_work", c.device_work),
            ("server_work", c.server_work),
            ("activation_bytes", c.activation_bytes),
            ("param_bytes", c.param_bytes),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                p.push(format!(
                    "cut {}: {what} = {v} must be finite and >= 0",
                    c.layer
                ));
            }
        }
    }
    if p.is_empty() {
        Ok(())
    } else {
        Err(SchedError::Invalid(p))
    }
}

/// `A_ij`: computing time of device `i` cut at `j` for a round.
pub fn compute_time(inst: &SplitInstance, i: usize, j: usize) -> f64 {
    let c = &inst.model.cuts[j];
    3.0 * inst.batches as f64
        * (c.device_work / inst.devices[i].speed + c.server_work / inst.server_speed)
}

/// `C_j`: bytes exchanged per round at cut `j`.
pub fn comm_bytes(inst: &SplitInstance, j: usize) -> f64 {
    let c = &inst.model.cuts[j];
    2.0 * (inst.batches as f64 * c.activation_bytes + c.param_bytes)
}

/// Round time `A + C / b` (just `A` when nothing is sent).
pub fn device_time(a: f64, c: f64, b: f64) -> f64 {
    if c == 0.0 {
        a
    } else {
        a + c / b
    }
}

/// Exact solution of `min max_i A_i + C_i / B_i` s.t. `sum B_i <= total`:
/// bisection on the round time `T` for `sum C_i / (T - A_i) = total`.
/// Returns `(T, shares)`; leftover bandwidth (when a device with `C = 0` sets
/// `T`) is spread in proportion so that the shares sum to `total`.
pub fn optimal_bandwidth(a: &[f64], c: &[f64], total: f64) -> (f64, Vec<f64>) {
    let need = |t: f64| {
        a.iter()
            .zip(c)
            .filter(|(_, &c)| c > 0.0)
            .map(|(&a, &c)| c / (t - a))
            .sum::<f64>()
    };
    let senders = c.iter().any(|&c| c > 0.0);
    let idle_max = a
        .iter()
        .zip(c)
        .filter(|(_, &c)| c == 0.0)
        .map(|(&a, _)| a)
        .fold(0.0, f64::max);
    if !senders {
        return (idle_max, vec![0.0; a.len()]);
    }
    let mut lo = a
        .iter()
        .zip(c)
        .filter(|(_, &c)| c > 0.0)
        .map(|(&a, _)| a)
        .fold(0.0, f64::max);
    let mut hi = lo + c.iter().sum::<f64>() / total;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if need(mid) > total {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let t = hi.max(idle_max);
    let mut shares: Vec<f64> = a
        .iter()
        .zip(c)
        .map(|(&a, &c)| if c > 0.0 { c / (t - a) } else { 0.0 })
        .collect();
    let sum: f64 = shares.iter().sum();
    if sum > 0.0 {
        let scale = total / sum;
        if scale < 1.0 || t > hi {
            shares.iter_mut().for_each(|b| *b *= scale);
        }
    }
    let t = a
        .iter()
        .zip(c)
        .zip(&shares)
        .map(|((&a, &c), &b)| device_time(a, c, b))
        .fold(0.0, f64::max);
    (t, shares)
}

/// Cuts that fit device `i`'s memory.
fn allowed(inst: &SplitInstance, i: usize) -> impl Iterator<Item = usize> + '_ {
    let mem = inst.devices[i].memory;
    (0..inst.model.cuts.len()).filter(move |&j| inst.model.cuts[j].train_memory <= mem)
}

/// Bandwidth by bisection for fixed cuts; `(round time, shares)`.
fn with_cuts(inst: &SplitInstance, cuts: &[usize]) -> (f64, Vec<f64>) {
    let a: Vec<f64> = cuts
        .iter()
        .enumerate()
        .map(|(i, &j)| compute_time(inst, i, j))
        .collect();
    let c: Vec<f64> = cuts.iter().map(|&j| comm_bytes(inst, j)).collect();
    optimal_bandwidth(&a, &c, inst.bandwidth)
}

/// Alternating minimisation from `cuts`; returns the best `(time, cuts, shares)` seen.
fn alternate(inst: &SplitInstance, mut cuts: Vec<usize>) -> (f64, Vec<usize>, Vec<f64>) {
    let (mut best_t, mut shares) = with_cuts(inst, &cuts);
    let mut best = (best_t, cuts.clone(), shares.clone());
    for _ in 0..50 {
        cuts = (0..inst.devices.len())
            .map(|i| {
                allowed(inst, i)
                    .min_by(|&x, &y| {
                        let t = |j| {
                            device_time(compute_time(inst, i, j), comm_bytes(inst, j), shares[i])
                        };
                        t(x).total_cmp(&t(y))
                    })
                    .expect("every device has an allowed cut (checked)")
            })
            .collect();
        let (t, s) = with_cuts(inst, &cuts);
        shares = s;
        if t < best_t * (1.0 - 1e-12) {
            best_t = t;
            best = (t, cuts.clone(), shares.clone());
        } else {
            break;
        }
    }
    best
}

/// Plans one round with `algo`.
pub fn plan(inst: &SplitInstance, algo: SplitAlgorithm) -> Result<SplitPlan> {
    validate(inst)?;
    let m = inst.devices.len();
    let last = inst.model.cuts.len() - 1;
    let whole_fits = |what: &str| -> Result<()> {
        match (0..m).find(|&i| inst.model.cuts[last].train_memory > inst.devices[i].memory) {
            Some(i) => Err(SchedError::Infeasible(format!(
                "{what}: device {} cannot train the whole of {} in its memory",
                inst.devices[i].id, inst.model.name
            ))),
            None => Ok(()),
        }
    };
    let (cuts, shares) = match algo {
        SplitAlgorithm::VanillaFl => {
            whole_fits("vanilla FL")?;
            (vec![last; m], vec![inst.bandwidth / m as f64; m])
        }
        SplitAlgorithm::AdaptiveFl => {
            whole_fits("adaptive FL")?;
            let cuts = vec![last; m];
            let (_, s) = with_cuts(inst, &cuts);
            (cuts, s)
        }
        SplitAlgorithm::EdgesplitFix => {
            let half = (inst.model.cuts.len() - 1) / 2;
            if let Some(i) =
                (0..m).find(|&i| inst.model.cuts[half].train_memory > inst.devices[i].memory)
            {
                return Err(SchedError::Infeasible(format!(
                    "device {} cannot train up to the middle cut",
                    inst.devices[i].id
                )));
            }
            let cuts = vec![half; m];
            let (_, s) = with_cuts(inst, &cuts);
            (cuts, s)
        }
        SplitAlgorithm::Edgesplit => {
            if let Some(i) = (0..m).find(|&i| allowed(inst, i).next().is_none()) {
                return Err(SchedError::Infeasible(format!(
                    "device {} fits no cut of {}",
                    inst.devices[i].id, inst.model.name
                )));
            }
            // Algorithm 6 from equal shares, and also from the whole-model and
            // half-model plans where they fit, so the result is never worse than
            // Adaptive FL or EdgeSplit-Fix.
            let mut starts = Vec::new();
            let (_, equal) = (0.0, vec![inst.bandwidth / m as f64; m]);
            let first: Vec<usize> = (0..m)
                .map(|i| {
                    allowed(inst, i)
                        .min_by(|&x, &y| {
                            let t = |j| {
                                device_time(compute_time(inst, i, j), comm_bytes(inst, j), equal[i])
                            };
                            t(x).total_cmp(&t(y))
                        })
                        .expect("checked above")
                })
                .collect();
            starts.push(first);
            for j in [last, last / 2] {
                if (0..m).all(|i| inst.model.cuts[j].train_memory <= inst.devices[i].memory) {
                    starts.push(vec![j; m]);
                }
            }
            let best = starts
                .into_iter()
                .map(|s| alternate(inst, s))
                .min_by(|a, b| a.0.total_cmp(&b.0))
                .expect("one start");
            (best.1, best.2)
        }
    };
    let devices: Vec<DevicePlan> = (0..m)
        .map(|i| {
            let j = cuts[i];
            DevicePlan {
                device: inst.devices[i].id.clone(),
                cut: j,
                layer: inst.model.cuts[j].layer.clone(),
                bandwidth: shares[i],
                round_time: device_time(compute_time(inst, i, j), comm_bytes(inst, j), shares[i]),
            }
        })
        .collect();
    Ok(SplitPlan {
        algorithm: algo,
        round_time: devices.iter().map(|d| d.round_time).fold(0.0, f64::max),
        bandwidth_used: shares.iter().sum(),
        devices,
    })
}
