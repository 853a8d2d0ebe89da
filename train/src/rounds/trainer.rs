//! The trainer's side of split training rounds: drives every node of a
//! round through its batches at the cut the round's plan gave it, runs the
//! layers after each node's cut on the activations it sends (one batch at
//! a time over all nodes, in the order they arrive: SplitPipe's FIFO), sends
//! back their gradient, and at the end averages the weights (FedAvg).
//!
//! Each node is driven from a thread of its own, so a slow node holds up
//! only itself until the end of the round. A node that fails a step (an
//! error, a refusal, no answer within the timeout) is dropped from the
//! round: the others finish it, and FedAvg leaves the dropped node's
//! weights out. What it contributed to the trainer's layers stays (those
//! steps were taken).
//!
//! FedAvg per parameter: every node that trained it on its side gives its
//! copy, weighted by the crops it trained on; the trainer's own copy counts
//! for the crops of the nodes whose cut left that parameter to the trainer.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use candle_core::{Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use vidar_protocol::messages::{TrainReply, TrainRequest, TrainStep, WireTensor};

use super::node::{from_wire, params_to_wire, tensors_for, wire};
use crate::graph::Graph;
use crate::loss::batch_hard_triplet;
use crate::split::trainer_half;
use crate::{Result, TrainError};

/// How the trainer reaches the nodes: one request, its reply, or why none.
pub trait Transport: Sync {
    /// Sends `req` to `node` and waits up to `timeout` for its reply.
    fn ask(
        &self,
        node: &str,
        req: &TrainRequest,
        timeout: Duration,
    ) -> std::result::Result<TrainReply, String>;
}

/// One node's part in a round: where it is cut and its share of the
/// trainer's link.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePart {
    /// The node.
    pub node: String,
    /// Its cut (nodes of the graph before it).
    pub cut: usize,
    /// Its share of the link, bytes/s (0: no limit).
    pub share_bytes_s: f64,
}

/// A round's settings.
#[derive(Debug, Clone)]
pub struct RoundConfig {
    /// The manifest model.
    pub model: String,
    /// Batches per node.
    pub batches: u32,
    /// Pseudo-identities per batch.
    pub ids: u32,
    /// Crops per pseudo-identity.
    pub per_id: u32,
    /// Learning rate (AdamW, both sides).
    pub lr: f64,
    /// Triplet margin.
    pub margin: f64,
    /// How long a node may take over one step.
    pub timeout: Duration,
}

/// What one node did in a round.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeOutcome {
    /// The node.
    pub node: String,
    /// Its cut.
    pub cut: usize,
    /// Batches it completed (forward and backward).
    pub batches: u32,
    /// Crops it trained on (its FedAvg weight).
    pub crops: u64,
    /// Bytes it sent the trainer (activations and weights).
    pub up_bytes: u64,
    /// Bytes the trainer sent it (weights and gradients).
    pub down_bytes: u64,
    /// Mean loss over its batches.
    pub loss: f64,
    /// Its round time, seconds (from `Begin` to its weights).
    pub seconds: f64,
    /// Why it was dropped, if it was.
    pub dropped: Option<String>,
}

/// A finished round.
#[derive(Debug, Clone)]
pub struct RoundReport {
    /// The round.
    pub round: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Every node's part.
    pub nodes: Vec<NodeOutcome>,
}

impl RoundReport {
    /// Mean loss over the batches of every node.
    pub fn loss(&self) -> f64 {
        let (sum, n) = self.nodes.iter().fold((0.0, 0u32), |(s, n), o| {
            (s + o.loss * f64::from(o.batches), n + o.batches)
        });
        if n == 0 {
            0.0
        } else {
            sum / f64::from(n)
        }
    }

    /// Nodes whose weights went into the average.
    pub fn completed(&self) -> usize {
        self.nodes.iter().filter(|o| o.dropped.is_none()).count()
    }
}

/// The trainer: the model being trained and its optimiser.
pub struct Trainer {
    graph: Graph,
    opt: Mutex<AdamW>,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer").finish_non_exhaustive()
    }
}

/// Weights a node sent back, to average.
struct Returned {
    params: Vec<usize>,
    copy: Vec<Tensor>,
    crops: u64,
}

impl Trainer {
    /// Trains `graph` with AdamW on the trainer's side, at each round's
    /// `RoundConfig::lr` (the rate the nodes get too).
    pub fn new(graph: Graph) -> Result<Self> {
        let all: Vec<usize> = graph.params_of(0..graph.len());
        let opt = AdamW::new(
            graph.vars(&all),
            ParamsAdamW {
                weight_decay: 5e-4,
                ..ParamsAdamW::default()
            },
        )?;
        Ok(Self {
            graph,
            opt: Mutex::new(opt),
        })
    }

    /// The model as trained so far.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Runs round `round`: every node in `parts` through `config.batches`
    /// batches, then FedAvg. Fails only when no node completed it (the
    /// model is then as before the node-side average).
    pub fn round(
        &self,
        round: u64,
        parts: &[NodePart],
        config: &RoundConfig,
        transport: &dyn Transport,
        seed: u64,
    ) -> Result<RoundReport> {
        for p in parts {
            if p.cut == 0 || p.cut > self.graph.len() {
                return Err(TrainError::Invalid(format!(
                    "node {}: cut {} is not a node-side cut (1..={})",
                    p.node,
                    p.cut,
                    self.graph.len()
                )));
            }
            self.graph.cut(p.cut)?;
        }
        self.opt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set_learning_rate(config.lr);
        let start = Instant::now();
        let results: Vec<(NodeOutcome, Option<Returned>)> = std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let seed = seed
                        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        .wrapping_add(i as u64);
                    s.spawn(move || self.drive(round, p, config, transport, seed))
                })
                .collect();
            handles
                .into_iter()
                .zip(parts)
                .map(|(h, p)| {
                    h.join()
                        .unwrap_or_else(|_| (outcome(p, Some("its driver panicked".into())), None))
                })
                .collect()
        });
        let returned: Vec<&Returned> = results.iter().filter_map(|(_, r)| r.as_ref()).collect();
        if returned.is_empty() {
            return Err(TrainError::Invalid(format!(
                "round {round}: no node completed it ({})",
                results
                    .iter()
                    .map(|(o, _)| format!("{}: {}", o.node, o.dropped.as_deref().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join("; ")
            )));
        }
        self.average(&returned)?;
        Ok(RoundReport {
            round,
            seconds: start.elapsed().as_secs_f64(),
            nodes: results.into_iter().map(|(o, _)| o).collect(),
        })
    }

    /// FedAvg (see the module doc).
    fn average(&self, returned: &[&Returned]) -> Result<()> {
        let all = self.graph.params_of(0..self.graph.len());
        for p in all {
            let mut parts: Vec<(Tensor, f64)> = Vec::new();
            let mut trainer_crops = 0u64;
            for r in returned {
                match r.params.iter().position(|&q| q == p) {
                    Some(i) => parts.push((r.copy[i].clone(), r.crops as f64)),
                    None => trainer_crops += r.crops,
                }
            }
            if parts.is_empty() {
                continue;
            }
            let var: &Var = &self.graph.params()[p].var;
            if trainer_crops > 0 {
                parts.push((var.as_tensor().clone(), trainer_crops as f64));
            }
            let total: f64 = parts.iter().map(|(_, w)| w).sum();
            if total <= 0.0 {
                continue;
            }
            let mut acc: Option<Tensor> = None;
            for (t, w) in parts {
                let t = t.affine(w / total, 0.0)?;
                acc = Some(match acc {
                    None => t,
                    Some(a) => (a + t)?,
                });
            }
            if let Some(a) = acc {
                var.set(&a.to_dtype(var.dtype())?)?;
            }
        }
        Ok(())
    }

    /// One node's part of the round; never panics on what the node says.
    fn drive(
        &self,
        round: u64,
        part: &NodePart,
        config: &RoundConfig,
        transport: &dyn Transport,
        seed: u64,
    ) -> (NodeOutcome, Option<Returned>) {
        let mut o = outcome(part, None);
        let started = Instant::now();
        let result = self.drive_steps(round, part, config, transport, seed, &mut o);
        o.seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(r) => (o, Some(r)),
            Err(why) => {
                // Best effort: the node may be gone.
                let abort = TrainRequest {
                    round,
                    step: TrainStep::Abort,
                };
                let _ = transport.ask(&part.node, &abort, Duration::from_secs(2));
                o.dropped = Some(why);
                (o, None)
            }
        }
    }

    fn drive_steps(
        &self,
        round: u64,
        part: &NodePart,
        config: &RoundConfig,
        transport: &dyn Transport,
        seed: u64,
        o: &mut NodeOutcome,
    ) -> std::result::Result<Returned, String> {
        let ask = |step: TrainStep| -> std::result::Result<TrainReply, String> {
            match transport.ask(&part.node, &TrainRequest { round, step }, config.timeout)? {
                TrainReply::Refused { why } => Err(format!("refused: {why}")),
                r => Ok(r),
            }
        };
        let mine = self.graph.params_of(0..part.cut);
        let params = params_to_wire(&self.graph, &mine).map_err(|e| e.to_string())?;
        o.down_bytes += params.iter().map(|t| t.bytes() as u64).sum::<u64>();
        let begin = TrainStep::Begin {
            model: config.model.clone(),
            cut: part.cut as u32,
            params,
            lr: config.lr as f32,
            ids: config.ids,
            per_id: config.per_id,
            seed,
            share_bytes_s: part.share_bytes_s,
        };
        match ask(begin)? {
            TrainReply::Begun { .. } => {}
            other => return Err(unexpected("Begun", &other)),
        }
        let cut = self.graph.cut(part.cut).map_err(|e| e.to_string())?;
        let mut loss_sum = 0.0;
        for batch in 0..config.batches {
            let (labels, activations) = match ask(TrainStep::Forward { batch })? {
                TrainReply::Activations {
                    batch: b,
                    labels,
                    activations,
                } if b == batch => (labels, activations),
                other => return Err(unexpected("Activations", &other)),
            };
            o.up_bytes += activations.bytes() as u64;
            let (loss, grad) = self
                .trainer_step(cut, activations, &labels, config.margin)
                .map_err(|e| format!("batch {batch}: {e}"))?;
            loss_sum += loss;
            o.down_bytes += grad.bytes() as u64;
            match ask(TrainStep::Backward { batch, grad })? {
                TrainReply::Applied { batch: b } if b == batch => {}
                other => return Err(unexpected("Applied", &other)),
            }
            o.batches += 1;
            o.loss = loss_sum / f64::from(o.batches);
        }
        let (crops, params) = match ask(TrainStep::Finish)? {
            TrainReply::Weights { crops, params } => (crops, params),
            other => return Err(unexpected("Weights", &other)),
        };
        o.up_bytes += params.iter().map(|t| t.bytes() as u64).sum::<u64>();
        o.crops = crops;
        // Checked by name and shape against this side's graph, held apart
        // until every node is done.
        let copy =
            tensors_for(&self.graph, &mine, params).map_err(|e| format!("its weights: {e}"))?;
        Ok(Returned {
            params: mine,
            copy,
            crops,
        })
    }

    /// The layers after `cut` on one batch, their step, and the gradient
    /// for the node.
    fn trainer_step(
        &self,
        cut: crate::Cut,
        activations: WireTensor,
        labels: &[u32],
        margin: f64,
    ) -> Result<(f64, WireTensor)> {
        let x = from_wire(activations, self.graph.device())?;
        // One batch at a time on the trainer's layers.
        let mut opt = self.opt.lock().unwrap_or_else(|p| p.into_inner());
        let (loss, grads, back) = trainer_half(&self.graph, cut, &x, |out| {
            batch_hard_triplet(out, labels, margin)
        })?;
        opt.step(&grads)?;
        drop(opt);
        Ok((loss, wire(&back, "")?))
    }
}

fn outcome(part: &NodePart, dropped: Option<String>) -> NodeOutcome {
    NodeOutcome {
        node: part.node.clone(),
        cut: part.cut,
        batches: 0,
        crops: 0,
        up_bytes: 0,
        down_bytes: 0,
        loss: 0.0,
        seconds: 0.0,
        dropped,
    }
}

fn unexpected(want: &str, got: &TrainReply) -> String {
    let what = match got {
        TrainReply::Profile { .. } => "Profile",
        TrainReply::Begun { .. } => "Begun",
        TrainReply::Activations { .. } => "Activations (of another batch)",
        TrainReply::Applied { .. } => "Applied (of another batch)",
        TrainReply::Weights { .. } => "Weights",
        TrainReply::Refused { .. } => "Refused",
    };
    format!("expected {want}, got {what}")
}
