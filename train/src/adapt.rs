//! Adaptation of a re-ID model to a site's own crops: the loop behind
//! `vidar-train adapt`.
//!
//! Every step is split at a cut as EdgeSplit splits it ([`Step::split`]).
//! With the node side frozen (`freeze_node_side`), the node's layers never
//! change, so their output for each crop (and for its mirror image) is
//! computed once and the trainer trains on it: what EdgeSplit-Fix would
//! send once instead of every round.
//!
//! With `cross_camera` set, before every epoch the pseudo-identities of
//! different cameras that are mutual nearest neighbours at or above that
//! cosine are merged ([`crate::pseudo`]) under the current model, and
//! batches are drawn across cameras; otherwise batches stay within one
//! camera and positives are same-camera only.

use candle_core::{DType, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::Rng;
use vidar_reid::eval::{self, Protocol};
use vidar_reid::Embedding;

use crate::data::{self, Preprocess, Sample};
use crate::graph::{Cut, Graph};
use crate::loss::batch_hard_triplet;
use crate::pseudo;
use crate::split::Step;
use crate::{Result, TrainError};

/// How to adapt.
#[derive(Debug, Clone)]
pub struct AdaptConfig {
    /// Epochs.
    pub epochs: usize,
    /// Pseudo-identities per batch (P).
    pub batch_ids: usize,
    /// Crops per pseudo-identity (K).
    pub per_id: usize,
    /// AdamW learning rate (the peak, with a schedule).
    pub lr: f64,
    /// How the learning rate moves over the run.
    pub schedule: Schedule,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Triplet margin.
    pub margin: f64,
    /// Nodes on the edge node's side.
    pub cut: usize,
    /// Leave the edge node's side as it is.
    pub freeze_node_side: bool,
    /// Probability of mirroring a crop.
    pub flip: f64,
    /// Merge pseudo-identities across cameras at this cosine (mutual nearest neighbours).
    pub cross_camera: Option<f32>,
}

/// The learning rate over a run (`vidar-train adapt --lr-schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Schedule {
    /// `lr` throughout.
    #[default]
    Constant,
    /// From `lr` down to 0 along half a cosine, step by step over all the
    /// epochs: late epochs take small steps, so the model settles where
    /// the early ones led instead of wandering around it at full rate.
    Cosine,
}

impl Schedule {
    /// The rate at `progress` (0 at the first step, 1 after the last) of a
    /// run whose peak rate is `lr`.
    pub fn rate(self, lr: f64, progress: f64) -> f64 {
        match self {
            Schedule::Constant => lr,
            Schedule::Cosine => {
                lr * 0.5 * (1.0 + (std::f64::consts::PI * progress.clamp(0.0, 1.0)).cos())
            }
        }
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    /// Mean loss over batches.
    pub loss: f64,
    /// Batches.
    pub batches: usize,
    /// Seconds.
    pub seconds: f64,
    /// Activation bytes sent node to trainer.
    pub up_bytes: usize,
    /// Gradient bytes sent trainer to node.
    pub down_bytes: usize,
    /// Labels that merged pseudo-identities across cameras before the
    /// epoch, and how many of them are one person by the folder's labels
    /// (reported, never used in training).
    pub merged: Option<(usize, Option<usize>)>,
    /// Cross-camera rank-1 on the held-out crops after the epoch.
    pub held_out_rank1: Option<f64>,
}

/// The node side's output for every sample (and mirrored), when frozen.
struct Frozen {
    plain: Tensor,
    mirrored: Tensor,
}

/// Adapts `graph` in place; `report` is called after every epoch (epoch 0:
/// before training, with the held-out rank-1 only).
pub fn adapt(
    graph: &Graph,
    pre: &Preprocess,
    samples: &[Sample],
    held_out: &[Sample],
    config: &AdaptConfig,
    rng: &mut impl Rng,
    mut report: impl FnMut(&EpochReport),
) -> Result<()> {
    let cut = graph.cut(config.cut)?;
    let frozen = if config.freeze_node_side && cut.at > 0 {
        Some(Frozen {
            plain: through(graph, cut, samples, pre, false)?,
            mirrored: through(graph, cut, samples, pre, true)?,
        })
    } else {
        None
    };
    let held = if config.freeze_node_side && cut.at > 0 && !held_out.is_empty() {
        Some(through(graph, cut, held_out, pre, false)?)
    } else {
        None
    };
    let held_rank1 = |g: &Graph| -> Result<Option<f64>> {
        if held_out.is_empty() {
            return Ok(None);
        }
        let e = match &held {
            Some(acts) => embed_rows(g, cut, acts)?,
            None => embed_images(g, held_out, pre)?,
        };
        Ok(Some(rank1(&e, held_out)?))
    };
    report(&EpochReport {
        epoch: 0,
        loss: 0.0,
        batches: 0,
        seconds: 0.0,
        up_bytes: 0,
        down_bytes: 0,
        merged: None,
        held_out_rank1: held_rank1(graph)?,
    });
    let params = ParamsAdamW {
        lr: config.lr,
        weight_decay: config.weight_decay,
        ..ParamsAdamW::default()
    };
    let mut node_opt = AdamW::new(graph.vars(&graph.params_of(0..cut.at)), params.clone())?;
    let mut trainer_opt = AdamW::new(graph.vars(&graph.params_of(cut.at..graph.len())), params)?;
    let own: Vec<u32> = samples.iter().map(|s| s.label).collect();
    for epoch in 1..=config.epochs {
        let start = std::time::Instant::now();
        let (labels, merged) = match config.cross_camera {
            Some(threshold) => {
                let e = match &frozen {
                    Some(f) => embed_rows(graph, cut, &f.plain)?,
                    None => embed_images(graph, samples, pre)?,
                };
                let m = pseudo::merge_across_cameras(samples, &e, threshold)?;
                let groups = merged_groups(samples, &m.labels);
                (m.labels, Some(groups))
            }
            None => (own.clone(), None),
        };
        let batches = if config.cross_camera.is_some() {
            pseudo::epoch_across(samples, &labels, config.batch_ids, config.per_id, rng)
        } else {
            data::epoch(samples, config.batch_ids, config.per_id, rng)
        };
        let (mut loss_sum, mut up, mut down) = (0.0, 0usize, 0usize);
        for (n, b) in batches.iter().enumerate() {
            let progress = (epoch - 1) as f64 / config.epochs as f64
                + n as f64 / (batches.len() * config.epochs) as f64;
            let lr = config.schedule.rate(config.lr, progress);
            node_opt.set_learning_rate(lr);
            trainer_opt.set_learning_rate(lr);
            let batch_labels: Vec<u32> = b.items.iter().map(|&i| labels[i]).collect();
            let loss = |out: &Tensor| batch_hard_triplet(out, &batch_labels, config.margin);
            match &frozen {
                Some(f) => {
                    let rows = b
                        .items
                        .iter()
                        .map(|&i| {
                            let src = if rng.gen_bool(config.flip.clamp(0.0, 1.0)) {
                                &f.mirrored
                            } else {
                                &f.plain
                            };
                            Ok(src.get(i)?)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let x = Tensor::stack(&rows, 0)?;
                    let l = loss(&graph.run(cut, graph.end(), &x)?)?;
                    loss_sum += crate::loss::scalar(&l)?;
                    trainer_opt.backward_step(&l)?;
                }
                None => {
                    let x = data::tensor(samples, b, pre, config.flip, rng, graph.device())?;
                    let step = Step::split(graph, cut, &x, !config.freeze_node_side, loss)?;
                    if let Some(g) = &step.node {
                        node_opt.step(g)?;
                    }
                    trainer_opt.step(&step.trainer)?;
                    loss_sum += step.loss;
                    up += step.up_bytes;
                    down += step.down_bytes;
                }
            }
        }
        report(&EpochReport {
            epoch,
            loss: loss_sum / batches.len().max(1) as f64,
            batches: batches.len(),
            seconds: start.elapsed().as_secs_f64(),
            up_bytes: up,
            down_bytes: down,
            merged,
            held_out_rank1: held_rank1(graph)?,
        });
    }
    Ok(())
}

/// Labels that merged pseudo-identities, and (where the samples know
/// their person) how many of them are one person: a measure of the merge,
/// never an input to training.
fn merged_groups(samples: &[Sample], labels: &[u32]) -> (usize, Option<usize>) {
    use std::collections::{BTreeMap, BTreeSet};
    let mut groups: BTreeMap<u32, (BTreeSet<u32>, BTreeSet<Option<u64>>)> = BTreeMap::new();
    for (s, &l) in samples.iter().zip(labels) {
        let g = groups.entry(l).or_default();
        g.0.insert(s.label);
        g.1.insert(s.person);
    }
    let merged: Vec<_> = groups.values().filter(|g| g.0.len() > 1).collect();
    let known = samples.iter().all(|s| s.person.is_some());
    let pure = merged.iter().filter(|g| g.1.len() == 1).count();
    (merged.len(), known.then_some(pure))
}

/// The node side's output for every sample, in order.
/// What crosses `to` for every sample (mirrored or not), in order, run
/// from the input in chunks.
fn through(
    graph: &Graph,
    to: Cut,
    samples: &[Sample],
    pre: &Preprocess,
    mirrored: bool,
) -> Result<Tensor> {
    let mut parts = Vec::new();
    for chunk in samples.chunks(64) {
        let x = data::input(chunk.iter().map(|s| (s, mirrored)), pre, graph.device())?;
        parts.push(graph.run(graph.start(), to, &x)?.detach());
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// Embeddings from what crosses `cut` (rows of `acts`), in chunks.
fn embed_rows(graph: &Graph, cut: Cut, acts: &Tensor) -> Result<Vec<Embedding>> {
    let n = acts.dim(0)?;
    let mut out = Vec::with_capacity(n);
    let mut at = 0;
    while at < n {
        let len = 128.min(n - at);
        let y = graph.run(cut, graph.end(), &acts.narrow(0, at, len)?)?;
        out.extend(rows(&y)?);
        at += len;
    }
    Ok(out)
}

/// Embeddings of whole crops through the whole graph.
pub fn embed_images(graph: &Graph, samples: &[Sample], pre: &Preprocess) -> Result<Vec<Embedding>> {
    rows(&through(graph, graph.end(), samples, pre, false)?)
}

fn rows(y: &Tensor) -> Result<Vec<Embedding>> {
    Ok(y.detach()
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()?
        .iter()
        .map(|r| Embedding::normalized(r))
        .collect())
}

/// Cross-camera rank-1 (camera 0 queries) of `embeddings` of `samples`,
/// which must know their person.
pub fn rank1(embeddings: &[Embedding], samples: &[Sample]) -> Result<f64> {
    let people = samples
        .iter()
        .map(|s| {
            s.person
                .ok_or_else(|| TrainError::Invalid("held-out crops must be labelled".into()))
        })
        .collect::<Result<Vec<u64>>>()?;
    let cameras: Vec<u32> = samples.iter().map(|s| s.camera).collect();
    let m = eval::evaluate(
        embeddings,
        &people,
        &cameras,
        Protocol {
            query_camera: Some(0),
        },
    )
    .map_err(|e| TrainError::Invalid(e.to_string()))?;
    Ok(m.rank1)
}

#[cfg(test)]
mod tests {
    use super::Schedule;

    #[test]
    fn the_cosine_rate_falls_from_the_peak_to_zero_and_constant_stays() {
        let lr = 1e-4;
        let at = |p| Schedule::Cosine.rate(lr, p);
        assert_eq!(at(0.0), lr);
        assert!((at(0.5) - lr / 2.0).abs() < 1e-12);
        assert!(at(1.0).abs() < 1e-12);
        // Falling all the way, and held inside [0, lr] past the ends.
        let steps: Vec<f64> = (0..=100).map(|i| at(f64::from(i) / 100.0)).collect();
        assert!(steps.windows(2).all(|w| w[1] < w[0]));
        assert_eq!((at(-1.0), at(2.0)), (lr, at(1.0)));
        assert_eq!(Schedule::Constant.rate(lr, 0.7), lr);
    }
}
