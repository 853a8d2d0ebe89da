//! Cross-camera positives for adaptation without labels across cameras.
//!
//! A node's pseudo-identities are its tracks: they never say that a track
//! on one camera is the same person as a track on another. The issue allows
//! "cross-camera matches above a high threshold" as positives; here they
//! are pseudo-identities of two cameras whose mean embeddings are each
//! other's nearest neighbour among the other camera's, with cosine at or
//! above a threshold (mutual nearest neighbours, the usual rule of
//! clustering-based domain adaptation, stricter than a threshold alone).
//! Matched pseudo-identities take one label (union-find over every camera
//! pair), so a batch can hold a person's crops from both cameras as
//! positives.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::Rng;
use vidar_reid::Embedding;

use crate::data::{Batch, Sample};
use crate::{Result, TrainError};

/// What [`merge_across_cameras`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// Per sample, its label after merging (the smallest original label of
    /// its group).
    pub labels: Vec<u32>,
    /// Pairs of pseudo-identities matched across cameras.
    pub pairs: usize,
}

/// Index of the largest value (the first of equals), `None` when empty.
fn argmax(values: impl Iterator<Item = f32>) -> Option<usize> {
    values
        .enumerate()
        .fold(None, |best: Option<(usize, f32)>, (i, v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        })
        .map(|(i, _)| i)
}

/// Merges pseudo-identities of different cameras that are mutual nearest
/// neighbours with cosine >= `threshold`; `embeddings` are the samples',
/// in order (one each, or an error).
pub fn merge_across_cameras(
    samples: &[Sample],
    embeddings: &[Embedding],
    threshold: f32,
) -> Result<Merged> {
    if samples.len() != embeddings.len() {
        return Err(TrainError::Invalid(format!(
            "{} embeddings for {} samples",
            embeddings.len(),
            samples.len()
        )));
    }
    // Mean embedding of each pseudo-identity, per camera.
    let mut groups: BTreeMap<u32, (u32, Vec<f32>)> = BTreeMap::new();
    for (s, e) in samples.iter().zip(embeddings) {
        let g = groups
            .entry(s.label)
            .or_insert_with(|| (s.camera, vec![0.0; e.as_slice().len()]));
        for (a, b) in g.1.iter_mut().zip(e.as_slice()) {
            *a += b;
        }
    }
    let labels: Vec<u32> = groups.keys().copied().collect();
    let means: Vec<(u32, Embedding)> = groups
        .values()
        .map(|(c, v)| (*c, Embedding::normalized(v)))
        .collect();
    let index: BTreeMap<u32, usize> = labels.iter().enumerate().map(|(i, l)| (*l, i)).collect();
    let mut parent: Vec<usize> = (0..labels.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let cameras: Vec<u32> = {
        let mut c: Vec<u32> = means.iter().map(|m| m.0).collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let mut pairs = 0;
    for (ai, &a) in cameras.iter().enumerate() {
        for &b in &cameras[ai + 1..] {
            let of = |cam: u32| -> Vec<usize> {
                (0..means.len()).filter(|&i| means[i].0 == cam).collect()
            };
            let (xs, ys) = (of(a), of(b));
            // Each pair's cosine once; nearest neighbours both ways from it.
            let sim: Vec<Vec<f32>> = xs
                .iter()
                .map(|&i| ys.iter().map(|&j| means[i].1.cosine(&means[j].1)).collect())
                .collect();
            let col = |y: usize| argmax(sim.iter().map(|row| row[y]));
            for (x, row) in sim.iter().enumerate() {
                let Some(y) = argmax(row.iter().copied()) else {
                    continue;
                };
                if row[y] >= threshold && col(y) == Some(x) {
                    let (ri, rj) = (root(&mut parent, xs[x]), root(&mut parent, ys[y]));
                    if ri != rj {
                        parent[ri.max(rj)] = ri.min(rj);
                        pairs += 1;
                    }
                }
            }
        }
    }
    let merged = samples
        .iter()
        .map(|s| {
            let r = root(&mut parent, index[&s.label]);
            labels[r]
        })
        .collect();
    Ok(Merged {
        labels: merged,
        pairs,
    })
}

/// One epoch of P x K batches over the whole site under `labels` (one per
/// sample): labels with at least K samples, shuffled, in groups of P; each
/// label's K samples are taken round-robin over its cameras, so a label
/// seen by two cameras gives positives across them.
pub fn epoch_across(
    samples: &[Sample],
    labels: &[u32],
    p: usize,
    k: usize,
    rng: &mut impl Rng,
) -> Vec<Batch> {
    let mut by_label: BTreeMap<u32, BTreeMap<u32, Vec<usize>>> = BTreeMap::new();
    for (i, (s, &l)) in samples.iter().zip(labels).enumerate() {
        by_label
            .entry(l)
            .or_default()
            .entry(s.camera)
            .or_default()
            .push(i);
    }
    let mut groups: Vec<Vec<Vec<usize>>> = by_label
        .into_values()
        .map(|cams| cams.into_values().collect::<Vec<_>>())
        .filter(|cams| cams.iter().map(Vec::len).sum::<usize>() >= k)
        .collect();
    groups.shuffle(rng);
    let mut out = Vec::new();
    for group in groups.chunks(p.max(2)) {
        if group.len() < 2 {
            continue;
        }
        let mut items = Vec::with_capacity(group.len() * k);
        for cams in group {
            let mut cams: Vec<Vec<usize>> = cams.clone();
            cams.shuffle(rng);
            for c in &mut cams {
                c.shuffle(rng);
            }
            let mut taken = 0;
            let mut depth = 0;
            while taken < k {
                for c in &cams {
                    if taken < k {
                        if let Some(&i) = c.get(depth) {
                            items.push(i);
                            taken += 1;
                        }
                    }
                }
                depth += 1;
            }
        }
        out.push(Batch {
            camera: u32::MAX,
            items,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn sample(label: u32, camera: u32) -> Sample {
        Sample {
            chw: Vec::new(),
            label,
            camera,
            person: None,
        }
    }

    #[test]
    fn mutual_neighbours_above_the_threshold_merge_and_others_do_not() {
        // Cameras 0 and 1; labels 10/11 on camera 0, 20/21/22 on camera 1.
        let samples = vec![
            sample(10, 0),
            sample(11, 0),
            sample(20, 1),
            sample(21, 1),
            sample(22, 1),
        ];
        let e = |v: [f32; 3]| Embedding::normalized(&v);
        let embeddings = vec![
            e([1.0, 0.0, 0.0]),  // 10
            e([0.0, 1.0, 0.0]),  // 11
            e([0.95, 0.1, 0.0]), // 20: 10's mutual neighbour
            e([0.0, 0.6, 0.8]),  // 21: nearest to 11 but only at 0.6
            e([0.9, 0.0, 0.3]),  // 22: nearest to 10, but 10 prefers 20
        ];
        let m = merge_across_cameras(&samples, &embeddings, 0.7).expect("merge");
        assert_eq!(m.pairs, 1);
        assert_eq!(m.labels, vec![10, 11, 10, 21, 22]);
        let m = merge_across_cameras(&samples, &embeddings, 0.5).expect("merge");
        // One embedding per sample, or a clear refusal.
        let short = merge_across_cameras(&samples, &embeddings[..2], 0.5).expect_err("refused");
        assert!(
            short.to_string().contains("2 embeddings for 5 samples"),
            "{short}"
        );
        assert_eq!(m.pairs, 2);
        assert_eq!(m.labels, vec![10, 11, 10, 11, 22]);
    }

    #[test]
    fn batches_across_cameras_take_both_cameras_of_a_merged_label() {
        let mut samples = Vec::new();
        let mut labels = Vec::new();
        for person in 0..8u32 {
            for camera in 0..2 {
                for _ in 0..2 {
                    samples.push(sample(person * 16 + camera, camera));
                    labels.push(person * 16);
                }
            }
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let batches = epoch_across(&samples, &labels, 4, 2, &mut rng);
        assert_eq!(batches.len(), 2);
        for b in &batches {
            assert_eq!(b.items.len(), 8);
            for pair in b.items.chunks(2) {
                assert_eq!(labels[pair[0]], labels[pair[1]]);
                assert_ne!(samples[pair[0]].camera, samples[pair[1]].camera);
            }
        }
    }
}
