//! vidar-reid: person re-identification. The [`Embedder`] trait and the ONNX
//! embedder (batched crops, L2-normalised vectors; MobileNetV2 by default, OSNet
//! through the manifest), and the [`Gallery`] that turns embeddings into global
//! identities across cameras and nodes.
//!
//! Sessions come from `vidar-models`; the gallery is pure and synchronous (time
//! is an argument), so it tests in microseconds. No networking here: replicas
//! and merges arrive through the edge node.

pub mod bench;
pub mod embedder;
pub mod eval;
pub mod gallery;

pub use embedder::{Crop, EmbedTimings, Embedder, EmbedderConfig, OnnxEmbedder};
pub use gallery::{
    Appearance, Assignment, Candidate, Excluded, Gallery, GalleryConfig, Identity, Origin,
    Prototype, TrackQuery, OPEN,
};

/// Errors of embedders and the gallery.
#[derive(Debug, thiserror::Error)]
pub enum ReidError {
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] vidar_models::ModelError),
    /// A crop's frame or box cannot be read.
    #[error(transparent)]
    Image(#[from] vidar_models::ImageError),
    /// A config is invalid; every problem is listed.
    #[error("re-ID config is invalid: {0}")]
    Config(#[from] vidar_config::Invalid),
    /// An embedding made by another model than the gallery's: never compared.
    #[error("embedding made by model {actual:?}, the gallery holds {expected:?}'s")]
    ModelMismatch {
        /// The gallery's model tag.
        expected: String,
        /// The offending one's.
        actual: String,
    },
    /// An embedding of another length than the gallery's.
    #[error("embedding has {actual} dimensions, the gallery holds {expected}")]
    Dimension {
        /// The gallery's.
        expected: usize,
        /// The offending one's.
        actual: usize,
    },
}

/// An L2-normalised appearance vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// Normalises `v` to unit length (a zero vector stays zero).
    pub fn normalized(v: &[f32]) -> Self {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let inv = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        Self(v.iter().map(|x| x * inv).collect())
    }

    /// The components.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Number of components.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty vector.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Cosine similarity (a dot product: both are unit vectors), -1..1; 0 when lengths differ.
    pub fn cosine(&self, other: &Embedding) -> f32 {
        if self.0.len() != other.0.len() {
            return 0.0;
        }
        dot(&self.0, &other.0)
    }

    /// `(1 - w) * self + w * other`, renormalised.
    pub fn blend(&self, other: &Embedding, w: f32) -> Embedding {
        let mixed: Vec<f32> = self
            .0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (1.0 - w) * a + w * b)
            .collect();
        Embedding::normalized(&mixed)
    }
}

/// Dot product with eight independent accumulators, so the compiler can vectorise it
/// (a single running sum is a dependency chain of float additions it may not reorder).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn normalised_vectors_have_unit_length_and_bounded_cosine(
            a in proptest::collection::vec(-100f32..100.0, 8),
            b in proptest::collection::vec(-100f32..100.0, 8),
        ) {
            let (ea, eb) = (Embedding::normalized(&a), Embedding::normalized(&b));
            let na: f32 = ea.as_slice().iter().map(|x| x * x).sum();
            prop_assume!(a.iter().any(|x| x.abs() > 1e-3) && b.iter().any(|x| x.abs() > 1e-3));
            prop_assert!((na - 1.0).abs() < 1e-4);
            let c = ea.cosine(&eb);
            prop_assert!((-1.0001..=1.0001).contains(&c));
            prop_assert!((ea.cosine(&ea) - 1.0).abs() < 1e-4);
            prop_assert!((c - eb.cosine(&ea)).abs() < 1e-6);
        }

        #[test]
        fn vectorised_dot_equals_the_plain_sum(
            a in proptest::collection::vec(-1f32..1.0, 0..40),
        ) {
            let b: Vec<f32> = a.iter().rev().copied().collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            prop_assert!((dot(&a, &b) - plain).abs() < 1e-4);
        }
    }
}
