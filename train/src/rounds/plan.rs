//! Each round's cuts and link shares, by `vidar_scheduler::edgesplit`
//! (Algorithm 6 or a baseline), from measured inputs:
//!
//! - the trainer times the graph itself at each candidate cut
//!   ([`candidates`]): forward of the layers before the cut and after it,
//!   per crop, the bytes crossing the cut per crop, and the bytes of the
//!   node-side parameters;
//! - each node times its own side at the same cuts (`Profile`: forward and
//!   forward plus backward per crop, under its own CPU limits);
//! - the link the trainer shares among the nodes, bytes/s.
//!
//! The scheduler's model gives device `i` at cut `j` a forward time of
//! `F_j / speed_i` and a backward of twice that. With the trainer's own
//! forward time as `F_j` (one work unit is one trainer-second), a node's
//! speed is the median over the cuts of `3 F_j / t_ij`, where `t_ij` is its
//! measured forward plus backward time: one number per node, as the model
//! has it. The trainer serves the nodes one batch at a time, so the server
//! speed each node sees is `1 / M` of the trainer's (M nodes). Memory is
//! not limited (the nodes do not report what training may use).

use std::time::Instant;

use candle_core::{Device, Tensor};
use vidar_protocol::messages::CutTime;
use vidar_scheduler::edgesplit::{self, SplitAlgorithm, SplitInstance};

use super::trainer::NodePart;
use crate::graph::{Cut, Graph};
use crate::{Result, TrainError};

/// The trainer's own measure of one candidate cut, per crop.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The cut (nodes before it).
    pub cut: usize,
    /// Forward of the layers before the cut on the trainer, seconds per crop.
    pub node_forward_s: f64,
    /// Forward of the layers after it on the trainer, seconds per crop.
    pub rest_forward_s: f64,
    /// Bytes crossing the cut per crop (`f32`).
    pub bytes_per_crop: f64,
    /// Bytes of the node-side trainable parameters.
    pub param_bytes: f64,
}

/// Times `graph` at each of `cuts` on `batch` crops of noise, `h` x `w`
/// (the time does not depend on the pixels).
pub fn candidates(
    graph: &Graph,
    cuts: &[usize],
    batch: usize,
    (h, w): (usize, usize),
) -> Result<Vec<Candidate>> {
    let x = Tensor::randn(0f32, 1.0, (batch, 3, h, w), &Device::Cpu)?;
    warm_up(graph, &x)?;
    let mut out = Vec::with_capacity(cuts.len());
    for &c in cuts {
        let cut = graph.cut(c)?;
        let (act, node_forward) = timed(graph, graph.start(), cut, &x)?;
        let (_, rest) = timed(graph, cut, graph.end(), &act)?;
        let per_crop = act.elem_count() / batch;
        let params: usize = graph
            .params_of(0..cut.at)
            .iter()
            .map(|&p| graph.params()[p].var.elem_count() * 4)
            .sum();
        out.push(Candidate {
            cut: c,
            node_forward_s: node_forward / batch as f64,
            rest_forward_s: if cut.at == graph.len() {
                0.0
            } else {
                rest / batch as f64
            },
            bytes_per_crop: (per_crop * 4) as f64,
            param_bytes: params as f64,
        });
    }
    Ok(out)
}

/// Runs the whole graph once untimed: the first pass allocates.
pub(crate) fn warm_up(graph: &Graph, x: &Tensor) -> Result<()> {
    graph.forward(x)?.sum_all()?.to_scalar::<f32>()?;
    Ok(())
}

/// Runs `graph` from `from` to `to` on `x`: the output and the seconds it
/// took (read back, so the work is done when the clock stops).
pub(crate) fn timed(graph: &Graph, from: Cut, to: Cut, x: &Tensor) -> Result<(Tensor, f64)> {
    let t0 = Instant::now();
    let y = graph.run(from, to, x)?;
    y.sum_all()?.to_scalar::<f32>()?;
    Ok((y, t0.elapsed().as_secs_f64()))
}

/// A round's plan: each node's part, and the round time the model predicts.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundPlan {
    /// Per node, in the order given.
    pub parts: Vec<NodePart>,
    /// The predicted round time, seconds (the slowest node's).
    pub predicted_s: f64,
    /// Each node's predicted time, seconds, in the order given.
    pub node_predicted_s: Vec<f64>,
    /// Each node's speed in the model (trainer = 1).
    pub speeds: Vec<f64>,
}

/// Plans a round with `algorithm`: `nodes` are each node's name and the
/// times it measured at the candidates' cuts; `crops` the crops per batch,
/// `batches` per node, `bandwidth_bytes_s` the trainer's link.
pub fn plan_round(
    candidates: &[Candidate],
    nodes: &[(String, Vec<CutTime>)],
    crops: usize,
    batches: u32,
    bandwidth_bytes_s: f64,
    algorithm: SplitAlgorithm,
) -> Result<RoundPlan> {
    if candidates.is_empty() {
        return Err(TrainError::Invalid("no candidate cut".into()));
    }
    let b = crops as f64;
    let speeds: Vec<f64> = nodes
        .iter()
        .map(|(name, times)| node_speed(candidates, times, b, name))
        .collect::<Result<_>>()?;
    let inst = SplitInstance {
        devices: nodes
            .iter()
            .zip(&speeds)
            .map(|((name, _), &speed)| edgesplit::Device {
                id: name.clone(),
                speed,
                memory: u64::MAX,
            })
            .collect(),
        // The trainer runs one batch at a time for all the nodes, so each
        // node has a share of it (the model's "server speed available to
        // each device").
        server_speed: 1.0 / nodes.len().max(1) as f64,
        model: edgesplit::ModelProfile {
            name: "model".into(),
            cuts: candidates
                .iter()
                .map(|c| edgesplit::Cut {
                    layer: c.cut.to_string(),
                    device_work: c.node_forward_s * b,
                    server_work: c.rest_forward_s * b,
                    activation_bytes: if c.rest_forward_s > 0.0 {
                        c.bytes_per_crop * b
                    } else {
                        0.0
                    },
                    param_bytes: c.param_bytes,
                    train_memory: 0,
                })
                .collect(),
        },
        batches,
        bandwidth: bandwidth_bytes_s,
    };
    let plan = edgesplit::plan(&inst, algorithm).map_err(|e| TrainError::Invalid(e.to_string()))?;
    Ok(RoundPlan {
        parts: plan
            .devices
            .iter()
            .map(|d| NodePart {
                node: d.device.clone(),
                cut: candidates[d.cut].cut,
                share_bytes_s: d.bandwidth,
            })
            .collect(),
        predicted_s: plan.round_time,
        node_predicted_s: plan.devices.iter().map(|d| d.round_time).collect(),
        speeds,
    })
}

/// A node's speed in the model: the median over the candidate cuts it
/// timed of `3 F_j / t_ij` (see the module doc).
fn node_speed(candidates: &[Candidate], times: &[CutTime], crops: f64, name: &str) -> Result<f64> {
    let mut ratios: Vec<f64> = candidates
        .iter()
        .filter_map(|c| {
            let t = times.iter().find(|t| t.cut as usize == c.cut)?;
            (t.train_s > 0.0 && c.node_forward_s > 0.0)
                .then(|| 3.0 * c.node_forward_s * crops / (t.train_s * crops))
        })
        .collect();
    if ratios.is_empty() {
        return Err(TrainError::Invalid(format!(
            "node {name}: no time measured at any candidate cut"
        )));
    }
    ratios.sort_by(f64::total_cmp);
    Ok(ratios[ratios.len() / 2])
}
