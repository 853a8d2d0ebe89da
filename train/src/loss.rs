//! The training loss: batch-hard triplet loss (Hermans et al., 2017) on
//! L2-normalised embeddings.
//!
//! Why triplet and not cross-entropy over pseudo-identities: a node's
//! pseudo-identities are its own tracks, a new set every round and on every
//! node, so a classifier layer over them would be a different layer on
//! every node, which FedAvg cannot average and the deployed model does not
//! have. The triplet loss needs only the embedding the gallery compares
//! (cosine, hence the normalisation), and a batch drawn from one camera
//! never holds two tracks of one person as negatives when the camera sees
//! each person once at a time (tracks that overlap in time are certain
//! negatives).

use candle_core::{DType, Tensor};

use crate::{Result, TrainError};

/// Mean over anchors of `max(0, margin + d(a, hardest positive) - d(a,
/// hardest negative))`, distances Euclidean between L2-normalised rows of
/// `embeddings` ([B, D]). Every label must appear at least twice, and at
/// least two labels must be present.
pub fn batch_hard_triplet(embeddings: &Tensor, labels: &[u32], margin: f64) -> Result<Tensor> {
    let (b, _) = embeddings.dims2()?;
    if b != labels.len() {
        return Err(TrainError::Invalid(format!(
            "{b} embeddings for {} labels",
            labels.len()
        )));
    }
    let mut pos = vec![0f32; b * b];
    let mut neg = vec![0f32; b * b];
    for i in 0..b {
        let mut positives = 0;
        for j in 0..b {
            if labels[i] == labels[j] {
                if i != j {
                    pos[i * b + j] = 1.0;
                    positives += 1;
                }
            } else {
                neg[i * b + j] = 1.0;
            }
        }
        if positives == 0 {
            return Err(TrainError::Invalid(format!(
                "label {} has one sample in the batch: a triplet needs a positive",
                labels[i]
            )));
        }
    }
    if neg.iter().all(|&x| x == 0.0) {
        return Err(TrainError::Invalid(
            "one label in the batch: a triplet needs a negative".into(),
        ));
    }
    let dtype = embeddings.dtype();
    let device = embeddings.device();
    let mask = |v: Vec<f32>| -> Result<Tensor> {
        Ok(Tensor::from_vec(v, (b, b), device)?.to_dtype(dtype)?)
    };
    let (pos, neg) = (mask(pos)?, mask(neg)?);
    let norm = (embeddings.sqr()?.sum_keepdim(1)? + 1e-12)?.sqrt()?;
    let e = embeddings.broadcast_div(&norm)?;
    let sim = e.matmul(&e.t()?)?;
    // |a - b|^2 = 2 - 2 cos for unit vectors; clamped so sqrt has a gradient.
    let dist = sim.affine(-2.0, 2.0)?.maximum(1e-12)?.sqrt()?;
    let hardest_pos = (&dist * &pos)?.max_keepdim(1)?;
    // Distances are at most 2: adding 4 where not a negative removes those.
    let not_neg = neg.affine(-4.0, 4.0)?;
    let hardest_neg = (&dist + &not_neg)?.min_keepdim(1)?;
    let loss = ((hardest_pos - hardest_neg)? + margin)?
        .relu()?
        .mean_all()?;
    Ok(loss)
}

/// A scalar tensor's value.
pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}
