//! Training crops as the model's input, and batches.
//!
//! Crops are resized and normalised exactly as the node's embedder does
//! (`vidar_models::image::FrameResizer`, antialiased, then the manifest's
//! mean and standard deviation), so the model trains on what it will see.
//!
//! Batches are P x K: P pseudo-identities of one camera, K crops each. One
//! camera per batch, because a site's labels are per camera (a track is a
//! pseudo-identity): two tracks of one person on two cameras carry two
//! labels, and in one batch they would be pushed apart as negatives.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::Rng;
use vidar_models::image::{FrameResizer, RgbFrame};
use vidar_models::ModelSpec;

use crate::{Result, TrainError};

/// One crop, ready for the model.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Planar RGB, normalised, 3 x height x width.
    pub chw: Vec<f32>,
    /// Its pseudo-identity (a track).
    pub label: u32,
    /// Its camera (a node's).
    pub camera: u32,
    /// The person, where a labelled folder says so: for measuring only
    /// (held-out rank-1, how right merges are), never for training.
    pub person: Option<u64>,
}

/// The model's input geometry and normalisation.
#[derive(Debug)]
pub struct Preprocess {
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    mean: [f32; 3],
    std: [f32; 3],
    resizer: FrameResizer,
    rgb: Vec<u8>,
}

impl Preprocess {
    /// As the manifest states it for `spec`.
    pub fn for_model(spec: &ModelSpec) -> Result<Self> {
        let (height, width) = spec.input_hw().ok_or_else(|| {
            TrainError::Invalid(format!(
                "model {}: no input size in the manifest",
                spec.name
            ))
        })?;
        Ok(Self::new(
            height,
            width,
            spec.mean.unwrap_or([0.0; 3]),
            spec.std.unwrap_or([1.0; 3]),
        ))
    }

    /// Input `height` x `width`; per-channel `mean` and `std` after scaling to 0..1.
    pub fn new(height: usize, width: usize, mean: [f32; 3], std: [f32; 3]) -> Self {
        Self {
            height,
            width,
            mean,
            std,
            resizer: FrameResizer::new(),
            rgb: Vec::new(),
        }
    }

    /// An RGB8 image (`width` x `height`, packed) as the model's input.
    pub fn chw(&mut self, width: u32, height: u32, rgb: &[u8]) -> Result<Vec<f32>> {
        let frame = RgbFrame::packed(width, height, rgb)
            .map_err(|e| TrainError::Invalid(format!("a crop: {e}")))?;
        let (w, h) = (self.width, self.height);
        self.rgb.resize(w * h * 3, 0);
        self.resizer
            .resize(frame, None, &mut self.rgb, w as u32, h as u32)
            .map_err(|e| TrainError::Invalid(format!("resizing a crop: {e}")))?;
        let plane = w * h;
        let mut out = vec![0f32; 3 * plane];
        for (p, px) in self.rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + p] = (f32::from(px[c]) / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        Ok(out)
    }

    /// Reads an image file as the model's input.
    pub fn file(&mut self, path: &Path) -> Result<Vec<f32>> {
        let img = image::ImageReader::open(path)
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?
            .with_guessed_format()
            .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?
            .decode()
            .map_err(|e| {
                TrainError::Invalid(format!("{}: not a decodable image: {e}", path.display()))
            })?
            .to_rgb8();
        let (w, h) = img.dimensions();
        self.chw(w, h, img.as_raw())
    }

    /// A JPEG (a training sample's crop) as the model's input; `what` names
    /// it in errors.
    pub fn jpeg(&mut self, bytes: &[u8], what: &str) -> Result<Vec<f32>> {
        let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
            .map_err(|e| TrainError::Invalid(format!("{what}: not a decodable JPEG: {e}")))?
            .to_rgb8();
        let (w, h) = img.dimensions();
        self.chw(w, h, img.as_raw())
    }
}

/// The crops of nodes' training files (`[training] collect`): each
/// tracklet one pseudo-identity (labels 0, 1, ... over all files, in
/// order), cameras numbered by name over all files. Returns the samples
/// and the camera names in index order. Crops that do not decode are
/// refused with the file and tracklet named.
pub fn from_training_files(
    files: &[std::path::PathBuf],
    pre: &mut Preprocess,
) -> Result<(Vec<Sample>, Vec<String>)> {
    let mut cameras: Vec<String> = Vec::new();
    let mut samples = Vec::new();
    let mut label = 0u32;
    for f in files {
        let tracklets = vidar_store::training::read_training(f, usize::MAX)
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
        for t in tracklets {
            let name = t.camera.as_str().to_string();
            let camera = match cameras.iter().position(|c| *c == name) {
                Some(i) => i,
                None => {
                    cameras.push(name);
                    cameras.len() - 1
                }
            };
            for (k, s) in t.samples.iter().enumerate() {
                let what = format!("{}: tracklet {} sample {k}", f.display(), t.id);
                samples.push(Sample {
                    chw: pre.jpeg(&s.jpeg, &what)?,
                    label,
                    camera: u32::try_from(camera).unwrap_or(u32::MAX),
                    person: None,
                });
            }
            label = label
                .checked_add(1)
                .ok_or_else(|| TrainError::Invalid("more than 2^32 tracklets".into()))?;
        }
    }
    Ok((samples, cameras))
}

/// One batch: indices into the samples, all of one camera.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The camera.
    pub camera: u32,
    /// Sample indices, K per label, labels adjacent.
    pub items: Vec<usize>,
}

/// One epoch of P x K batches, every camera's labels shuffled and cut into
/// groups of P (a last group of fewer than two labels is dropped); labels
/// with fewer than K crops are skipped, those with more give K at random.
/// Batches of different cameras are interleaved.
pub fn epoch(samples: &[Sample], p: usize, k: usize, rng: &mut impl Rng) -> Vec<Batch> {
    let mut by_camera: BTreeMap<u32, BTreeMap<u32, Vec<usize>>> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate() {
        by_camera
            .entry(s.camera)
            .or_default()
            .entry(s.label)
            .or_default()
            .push(i);
    }
    let mut per_camera: Vec<Vec<Batch>> = Vec::new();
    for (camera, labels) in by_camera {
        let mut labels: Vec<Vec<usize>> = labels.into_values().filter(|v| v.len() >= k).collect();
        labels.shuffle(rng);
        let mut batches = Vec::new();
        for group in labels.chunks(p.max(2)) {
            if group.len() < 2 {
                continue;
            }
            let mut items = Vec::with_capacity(group.len() * k);
            for members in group {
                let mut m = members.clone();
                m.shuffle(rng);
                items.extend_from_slice(&m[..k]);
            }
            batches.push(Batch { camera, items });
        }
        per_camera.push(batches);
    }
    let mut out = Vec::new();
    let longest = per_camera.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for batches in &per_camera {
            if let Some(b) = batches.get(i) {
                out.push(b.clone());
            }
        }
    }
    out
}

/// The model's input [N, 3, H, W] for `crops`, each as it is or mirrored
/// (every row reversed) when its flag says so.
pub fn input<'a>(
    crops: impl ExactSizeIterator<Item = (&'a Sample, bool)>,
    pre: &Preprocess,
    device: &Device,
) -> Result<Tensor> {
    let (h, w) = (pre.height, pre.width);
    let n = crops.len();
    let mut data = Vec::with_capacity(n * 3 * h * w);
    for (s, mirrored) in crops {
        if mirrored {
            for row in s.chw.chunks_exact(w) {
                data.extend(row.iter().rev());
            }
        } else {
            data.extend_from_slice(&s.chw);
        }
    }
    Ok(Tensor::from_vec(data, (n, 3, h, w), device)?)
}

/// The batch's input, each crop mirrored with probability `flip`.
pub fn tensor(
    samples: &[Sample],
    batch: &Batch,
    pre: &Preprocess,
    flip: f64,
    rng: &mut impl Rng,
    device: &Device,
) -> Result<Tensor> {
    let p = flip.clamp(0.0, 1.0);
    let crops: Vec<(&Sample, bool)> = batch
        .items
        .iter()
        .map(|&i| (&samples[i], rng.gen_bool(p)))
        .collect();
    input(crops.into_iter(), pre, device)
}
