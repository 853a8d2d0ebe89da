//! Split training rounds (EdgeSplit, issue 13): the trainer (the master)
//! drives each taking part node through a round with [`TrainRequest`]
//! queries on `train(node)`; the node answers each with a [`TrainReply`].
//!
//! A round for one node: `Begin` (its cut, the node-side weights to start
//! from, the batch shape, its bandwidth share), then per batch `Forward`
//! (the node draws a batch of its own samples, runs the layers before its
//! cut and answers with the activations and the batch's pseudo-identity
//! labels) and `Backward` (the gradient of the loss for those activations;
//! the node runs its backward pass and steps its optimiser), then `Finish`
//! (the node's trained node-side weights, for FedAvg). Only activations,
//! gradients and node-side weights cross: never a crop. `Profile` asks the
//! node how long its side takes at each candidate cut (EdgeSplit's inputs),
//! `Abort` ends a round early.

use serde::{Deserialize, Serialize};

use super::check_text;
use super::models::MAX_MODEL_NAME;
use crate::wire::{Message, MessageKind};

/// Most values in one tensor of a training message (16 MiB of `f32`, the
/// largest message, is 4 Mi values).
pub const MAX_TENSOR_VALUES: usize = 4 * 1024 * 1024;
/// Most dimensions of a tensor.
pub const MAX_TENSOR_DIMS: usize = 8;
/// Most parameter tensors in one message.
pub const MAX_TRAIN_PARAMS: usize = 4096;
/// Most crops in one batch (and labels in one `Activations`).
pub const MAX_TRAIN_BATCH: usize = 1024;
/// Most candidate cuts in one `Profile` request.
pub const MAX_PROFILE_CUTS: usize = 256;
/// Longest tensor name, bytes.
pub const MAX_TENSOR_NAME: usize = 256;

/// A tensor as it crosses: its name (a parameter's, or empty for
/// activations and gradients), shape and row-major `f32` values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireTensor {
    /// The parameter's name in the ONNX graph (empty for activations).
    pub name: String,
    /// Its shape.
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_TENSOR_DIMS>")]
    pub shape: Vec<u32>,
    /// Its values, row-major.
    #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_TENSOR_VALUES>")]
    pub values: Vec<f32>,
}

impl WireTensor {
    /// Checks the name's length, the shape against the values and that
    /// every value is finite; `field` names the tensor in the error.
    pub fn check(&self, field: &str) -> Result<(), String> {
        check_text(&format!("{field}.name"), &self.name, MAX_TENSOR_NAME)?;
        if self.shape.len() > MAX_TENSOR_DIMS {
            return Err(format!(
                "{field}.shape: {} dimensions, at most {MAX_TENSOR_DIMS}",
                self.shape.len()
            ));
        }
        let n = self
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d as usize));
        if n != Some(self.values.len()) || self.values.len() > MAX_TENSOR_VALUES {
            return Err(format!(
                "{field}: shape {:?} does not hold its {} values (at most {MAX_TENSOR_VALUES})",
                self.shape,
                self.values.len()
            ));
        }
        if let Some(i) = self.values.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "{field}.values[{i}]: {} is not finite",
                self.values[i]
            ));
        }
        Ok(())
    }

    /// Bytes its values take on the wire.
    pub fn bytes(&self) -> usize {
        self.values.len() * 4
    }
}

/// What the trainer asks of a node in a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TrainStep {
    /// How long the node side takes per crop at each of `cuts` (indices
    /// into the model's cuts), forward and forward plus backward, and how
    /// many samples the node holds.
    Profile {
        /// The manifest model.
        model: String,
        /// The candidate cuts, each as the number of graph nodes before it
        /// (as `vidar-train cuts` lists them).
        #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_PROFILE_CUTS>")]
        cuts: Vec<u32>,
        /// Crops per timed batch.
        batch: u32,
    },
    /// Starts a round at `cut` from the node-side weights `params`.
    Begin {
        /// The manifest model (its graph is the node's own file).
        model: String,
        /// The cut, as the number of graph nodes before it (`vidar-train
        /// cuts`); the node trains the layers before it.
        cut: u32,
        /// The node-side parameters to start from, by name.
        #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_TRAIN_PARAMS>")]
        params: Vec<WireTensor>,
        /// Learning rate of the node's optimiser (AdamW).
        lr: f32,
        /// Pseudo-identities per batch.
        ids: u32,
        /// Crops per pseudo-identity.
        per_id: u32,
        /// Seeds the node's batch draws.
        seed: u64,
        /// The node's share of the trainer's link for this round, bytes/s
        /// (0: no limit): it paces what it sends to it.
        share_bytes_s: f64,
    },
    /// Draws batch `batch` and runs the node side on it.
    Forward {
        /// The batch's number in the round.
        batch: u32,
    },
    /// The gradient of the loss for batch `batch`'s activations.
    Backward {
        /// The batch's number.
        batch: u32,
        /// The gradient, shaped as the activations.
        grad: WireTensor,
    },
    /// Ends the round: the node answers with its trained weights.
    Finish,
    /// Ends the round without weights (the trainer dropped the node).
    Abort,
}

/// A trainer's request to a node, within round `round`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRequest {
    /// The round (increasing; a node refuses steps of another round than
    /// the one it began).
    pub round: u64,
    /// What to do.
    pub step: TrainStep,
}

fn check_params(params: &[WireTensor]) -> Result<(), String> {
    if params.len() > MAX_TRAIN_PARAMS {
        return Err(format!(
            "params: {} tensors, at most {MAX_TRAIN_PARAMS}",
            params.len()
        ));
    }
    for (i, p) in params.iter().enumerate() {
        p.check(&format!("params[{i}]"))?;
    }
    Ok(())
}

fn check_model(model: &str) -> Result<(), String> {
    if model.is_empty() {
        return Err("model: empty".into());
    }
    check_text("model", model, MAX_MODEL_NAME)
}

impl Message for TrainRequest {
    const KIND: MessageKind = MessageKind::TrainRequest;

    fn validate(&self) -> Result<(), String> {
        match &self.step {
            TrainStep::Profile { model, cuts, batch } => {
                check_model(model)?;
                if cuts.len() > MAX_PROFILE_CUTS {
                    return Err(format!(
                        "cuts: {} entries, at most {MAX_PROFILE_CUTS}",
                        cuts.len()
                    ));
                }
                if *batch == 0 || *batch as usize > MAX_TRAIN_BATCH {
                    return Err(format!("batch: {batch}, 1..={MAX_TRAIN_BATCH} allowed"));
                }
            }
            TrainStep::Begin {
                model,
                params,
                lr,
                ids,
                per_id,
                share_bytes_s,
                ..
            } => {
                check_model(model)?;
                check_params(params)?;
                if !(lr.is_finite() && *lr >= 0.0 && *lr <= 1.0) {
                    return Err(format!("lr: {lr}, 0..=1 allowed"));
                }
                if *ids < 2 || *per_id < 2 {
                    return Err(format!(
                        "ids {ids}, per_id {per_id}: a triplet batch needs at least 2 of each"
                    ));
                }
                let crops = u64::from(*ids) * u64::from(*per_id);
                if crops > MAX_TRAIN_BATCH as u64 {
                    return Err(format!(
                        "ids x per_id: {crops} crops, at most {MAX_TRAIN_BATCH}"
                    ));
                }
                if !(share_bytes_s.is_finite() && *share_bytes_s >= 0.0) {
                    return Err(format!(
                        "share_bytes_s: {share_bytes_s} is not a finite non-negative number"
                    ));
                }
            }
            TrainStep::Backward { grad, .. } => grad.check("grad")?,
            TrainStep::Forward { .. } | TrainStep::Finish | TrainStep::Abort => {}
        }
        Ok(())
    }
}

/// The node side's time at one cut, seconds per crop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CutTime {
    /// The cut.
    pub cut: u32,
    /// Forward pass.
    pub forward_s: f64,
    /// Forward and backward passes.
    pub train_s: f64,
}

/// A node's answer to a [`TrainRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TrainReply {
    /// The node side's times at the asked cuts.
    Profile {
        /// Samples the node holds (crops of its confirmed tracks).
        samples: u64,
        /// Pseudo-identities (tracklets) with enough crops for a batch.
        tracklets: u64,
        /// Per cut.
        #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_PROFILE_CUTS>")]
        times: Vec<CutTime>,
    },
    /// The round began.
    Begun {
        /// Samples the node trains on this round.
        samples: u64,
        /// Pseudo-identities among them.
        tracklets: u64,
    },
    /// A batch's activations at the node's cut, with its labels.
    Activations {
        /// The batch's number.
        batch: u32,
        /// Each crop's pseudo-identity (the node's own numbering).
        #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_TRAIN_BATCH>")]
        labels: Vec<u32>,
        /// The activations, one row per crop.
        activations: WireTensor,
    },
    /// The batch's backward pass ran and the node side stepped.
    Applied {
        /// The batch's number.
        batch: u32,
    },
    /// The round's node-side weights, after training.
    Weights {
        /// Crops the node trained on this round (FedAvg's weight).
        crops: u64,
        /// The node-side parameters, by name.
        #[serde(deserialize_with = "crate::bounded::vec::<_, _, MAX_TRAIN_PARAMS>")]
        params: Vec<WireTensor>,
    },
    /// The node did not do what was asked, and why.
    Refused {
        /// Why.
        why: String,
    },
}

impl Message for TrainReply {
    const KIND: MessageKind = MessageKind::TrainReply;

    fn validate(&self) -> Result<(), String> {
        match self {
            TrainReply::Profile { times, .. } => {
                if times.len() > MAX_PROFILE_CUTS {
                    return Err(format!(
                        "times: {} entries, at most {MAX_PROFILE_CUTS}",
                        times.len()
                    ));
                }
                for (i, t) in times.iter().enumerate() {
                    if ![t.forward_s, t.train_s]
                        .iter()
                        .all(|v| v.is_finite() && *v >= 0.0)
                    {
                        return Err(format!("times[{i}]: not finite non-negative seconds"));
                    }
                }
            }
            TrainReply::Activations {
                labels,
                activations,
                ..
            } => {
                if labels.len() > MAX_TRAIN_BATCH {
                    return Err(format!(
                        "labels: {} entries, at most {MAX_TRAIN_BATCH}",
                        labels.len()
                    ));
                }
                activations.check("activations")?;
                if activations.shape.first().map(|&d| d as usize) != Some(labels.len()) {
                    return Err(format!(
                        "activations: {:?} rows, {} labels",
                        activations.shape.first(),
                        labels.len()
                    ));
                }
            }
            TrainReply::Weights { params, .. } => {
                check_params(params)?;
            }
            TrainReply::Refused { why } => check_text("why", why, super::MAX_TEXT_LEN)?,
            TrainReply::Begun { .. } | TrainReply::Applied { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    fn tensor(shape: Vec<u32>, values: Vec<f32>) -> WireTensor {
        WireTensor {
            name: String::new(),
            shape,
            values,
        }
    }

    #[test]
    fn requests_and_replies_round_trip() {
        let req = TrainRequest {
            round: 7,
            step: TrainStep::Backward {
                batch: 3,
                grad: tensor(vec![2, 3], vec![0.5; 6]),
            },
        };
        let back: TrainRequest = wire::decode(&wire::encode(&req).unwrap()).unwrap();
        assert_eq!(back, req);
        let rep = TrainReply::Activations {
            batch: 3,
            labels: vec![1, 1],
            activations: tensor(vec![2, 1], vec![1.0, 2.0]),
        };
        let back: TrainReply = wire::decode(&wire::encode(&rep).unwrap()).unwrap();
        assert_eq!(back, rep);
    }

    #[test]
    fn bad_tensors_and_batches_are_refused_by_field() {
        let bad_shape = TrainRequest {
            round: 1,
            step: TrainStep::Backward {
                batch: 0,
                grad: tensor(vec![2, 3], vec![0.0; 5]),
            },
        };
        let e = bad_shape.validate().unwrap_err();
        assert!(e.contains("grad") && e.contains("[2, 3]"), "{e}");
        let nan = TrainReply::Weights {
            crops: 1,
            params: vec![tensor(vec![2], vec![1.0, f32::NAN])],
        };
        let e = nan.validate().unwrap_err();
        assert!(e.contains("params[0].values[1]"), "{e}");
        let rows = TrainReply::Activations {
            batch: 0,
            labels: vec![1, 2, 3],
            activations: tensor(vec![2, 1], vec![1.0, 2.0]),
        };
        assert!(rows.validate().unwrap_err().contains("3 labels"));
        let begin = |ids, per_id, lr| TrainRequest {
            round: 1,
            step: TrainStep::Begin {
                model: "m".into(),
                cut: 1,
                params: vec![],
                lr,
                ids,
                per_id,
                seed: 0,
                share_bytes_s: 0.0,
            },
        };
        assert!(begin(4, 4, 1e-4).validate().is_ok());
        assert!(begin(1, 4, 1e-4).validate().unwrap_err().contains("ids 1"));
        assert!(begin(64, 64, 1e-4)
            .validate()
            .unwrap_err()
            .contains("4096 crops"));
        assert!(begin(4, 4, f32::NAN).validate().unwrap_err().contains("lr"));
        // An overflowing shape is refused, not wrapped.
        let huge = tensor(vec![u32::MAX, u32::MAX, u32::MAX], vec![]);
        assert!(huge.check("t").is_err());
    }
}
