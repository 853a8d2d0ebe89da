//! Crop embedding: person crops (frame + box) -> resized, normalised NCHW batch ->
//! ONNX model -> L2-normalised vectors. Buffers are sized once at build.

use std::time::{Duration, Instant};

use serde::Deserialize;
use vidar_config::{Config, Invalid, Problem, Problems};
use vidar_models::image::{FrameResizer, Picture, Region};
use vidar_models::{Format, Model, Precision, SessionFactory};
use vidar_protocol::BBox;

use crate::{Embedding, ReidError};

/// A person crop: a box in a frame's pixel coordinates.
#[derive(Debug, Clone, Copy)]
pub struct Crop<'a> {
    /// The full-resolution frame.
    pub frame: Picture<'a>,
    /// The person's box in `frame`.
    pub bbox: BBox,
}

/// Time spent per stage, summed since the last [`Embedder::take_timings`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EmbedTimings {
    /// Crop, resize and normalisation.
    pub preprocess: Duration,
    /// ONNX Runtime `run`.
    pub inference: Duration,
    /// Copy out and L2 normalisation.
    pub postprocess: Duration,
    /// Crops embedded.
    pub crops: usize,
    /// Inference runs.
    pub runs: usize,
}

/// Turns person crops into appearance embeddings.
pub trait Embedder: Send {
    /// The model's manifest name.
    fn name(&self) -> &str;

    /// Tag of the exact model (name and file checksum): embeddings of
    /// different tags are never compared.
    fn model_tag(&self) -> &str;

    /// Length of every embedding.
    fn dim(&self) -> usize;

    /// Crops per inference run.
    fn max_batch(&self) -> usize;

    /// Embeds every crop; `out` is cleared and gets one L2-normalised embedding per crop.
    fn embed_into(&mut self, crops: &[Crop<'_>], out: &mut Vec<Embedding>)
        -> Result<(), ReidError>;

    /// Embeds every crop, allocating the result.
    fn embed(&mut self, crops: &[Crop<'_>]) -> Result<Vec<Embedding>, ReidError> {
        let mut out = Vec::with_capacity(crops.len());
        self.embed_into(crops, &mut out)?;
        Ok(out)
    }

    /// Stage timings since the last call, then reset.
    fn take_timings(&mut self) -> EmbedTimings;
}

/// The default re-ID model (manifest name).
pub const DEFAULT_MODEL: &str = "osnet-x0-25-msmt17-combineall";

/// Settings of an ONNX embedder.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbedderConfig {
    /// Manifest model name. Default `osnet-x0-25-msmt17-combineall` (OSNet x0.25
    /// trained for re-ID; the best of the manifest's models on CUHK01, see
    /// docs/benchmarks.md); `mobilenetv2-deepsort` is the untrained-for-re-ID alternative.
    pub model: String,
    /// Crops per inference run; more are split. Default 16.
    pub max_batch: usize,
    /// Numeric precision, as the detector's: `"int8"` runs the manifest's
    /// int8 variant of `model` (its embeddings carry their own model tag, so
    /// every node of a site must use the same precision to share
    /// identities), `"fp16"` TensorRT fp16 engines. Default: the float model.
    pub precision: Option<Precision>,
    /// Embed each crop and its mirror image and keep the normalised sum
    /// (flip test-time augmentation, as torchreid's evaluation offers): a
    /// person seen walking left and walking right gets closer vectors. It
    /// doubles the model's work per crop and halves the crops per run.
    /// Flipped embeddings carry their own model tag (`+flip`), so every node
    /// of a site must agree. Default: off; on CUHK01 it lifts rank-1 by
    /// 0.5-1 point at twice the re-ID work (docs/benchmarks.md).
    pub flip: bool,
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        Self {
            model: DEFAULT_MODEL.into(),
            max_batch: 16,
            precision: None,
            flip: false,
        }
    }
}

impl Config for EmbedderConfig {
    type Output = OnnxEmbedder;
    type Context = SessionFactory;
    type Error = ReidError;

    fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        if self.model.is_empty() {
            p.push("model", "must name a manifest model");
        }
        if self.max_batch == 0 || self.max_batch > 256 {
            p.push(
                "max_batch",
                format!("must be in 1..=256, got {}", self.max_batch),
            );
        }
        p.into_vec()
    }

    /// Loads the model through `factory` and builds the embedder.
    fn build(&self, factory: &SessionFactory) -> Result<OnnxEmbedder, ReidError> {
        self.check()?;
        let model = factory.load_at(&self.model, self.precision)?;
        let spec = model.spec();
        if spec.format != Format::Embedding {
            return Err(model_problem(format!(
                "{} has format {}, not an embedding model",
                spec.name, spec.format
            )));
        }
        let (h, w) = spec
            .input_hw()
            .ok_or_else(|| model_problem(format!("{}: input size unknown", spec.name)))?;
        let dim = spec.outputs[0].shape[1];
        if dim <= 0 {
            return Err(model_problem(format!(
                "{}: embedding size is dynamic",
                spec.name
            )));
        }
        let (mean, std) = (spec.mean.unwrap_or([0.0; 3]), spec.std.unwrap_or([1.0; 3]));
        // (pixel / 255 - mean) / std for every byte value, per channel.
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, x) in table.iter_mut().enumerate() {
                *x = (v as f32 / 255.0 - mean[c]) / std[c];
            }
        }
        let batch = self.max_batch.min(model.max_batch());
        // With flip each crop takes two rows of a run.
        let rows = if self.flip { 2 } else { 1 };
        if model.max_batch() < rows {
            return Err(ReidError::Config(Invalid {
                problems: vec![Problem::new(
                    "flip",
                    format!(
                        "{} takes one crop per run; flip needs two (set flip = false)",
                        spec.name
                    ),
                )],
            }));
        }
        let batch = (batch * rows).min(model.max_batch()) / rows;
        let sha = factory
            .store()
            .manifest()
            .file(&spec.file)
            .map(|f| f.sha256.get(..12).unwrap_or(&f.sha256).to_owned())
            .unwrap_or_default();
        Ok(OnnxEmbedder {
            tag: format!(
                "{}@{sha}{}",
                spec.name,
                if self.flip { "+flip" } else { "" }
            ),
            name: spec.name.clone(),
            rgb: vec![0u8; h * w * 3],
            input: vec![0f32; batch * rows * 3 * h * w],
            sum: vec![0f32; dim as usize],
            dim: dim as usize,
            batch,
            rows,
            h,
            w,
            lut: Box::new(lut),
            model,
            resizer: FrameResizer::new(),
            timings: EmbedTimings::default(),
        })
    }
}

/// The inverse of `v`'s L2 norm, 0 for a zero vector.
fn inv_norm(v: &[f32]) -> f32 {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        1.0 / n
    } else {
        0.0
    }
}

/// The model the `model` key names cannot embed: `message` says why.
fn model_problem(message: String) -> ReidError {
    ReidError::Config(Invalid {
        problems: vec![Problem::new("model", message)],
    })
}

/// An embedder on one ONNX Runtime session (MobileNetV2 bottleneck, OSNet, ...).
#[derive(Debug)]
pub struct OnnxEmbedder {
    model: Model,
    name: String,
    tag: String,
    dim: usize,
    /// Crops per run.
    batch: usize,
    /// Input rows per crop: 2 with flip (the crop, then its mirror), else 1.
    rows: usize,
    /// One embedding's sum of rows, reused.
    sum: Vec<f32>,
    h: usize,
    w: usize,
    lut: Box<[[f32; 256]; 3]>,
    rgb: Vec<u8>,
    input: Vec<f32>,
    resizer: FrameResizer,
    timings: EmbedTimings,
}

impl OnnxEmbedder {
    /// The loaded model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Runs the model alone on the current input buffer for `n` crops (benchmarks).
    pub fn run_inference_only(&mut self, n: usize) -> Result<Duration, ReidError> {
        let n = n.min(self.batch) * self.rows;
        let plane = self.h * self.w;
        let start = Instant::now();
        self.model.run(
            &[n, 3, self.h, self.w],
            &self.input[..n * 3 * plane],
            |_| Ok(()),
        )?;
        Ok(start.elapsed())
    }

    fn run_chunk(&mut self, crops: &[Crop<'_>], out: &mut Vec<Embedding>) -> Result<(), ReidError> {
        let n = crops.len();
        let rows = self.rows;
        let plane = self.h * self.w;
        let t0 = Instant::now();
        for (i, crop) in crops.iter().enumerate() {
            let region = Region {
                x: f64::from(crop.bbox.x),
                y: f64::from(crop.bbox.y),
                w: f64::from(crop.bbox.w),
                h: f64::from(crop.bbox.h),
            };
            self.resizer.resize(
                crop.frame,
                Some(region),
                &mut self.rgb,
                self.w as u32,
                self.h as u32,
            )?;
            let at = i * rows * 3 * plane;
            let dst = &mut self.input[at..at + rows * 3 * plane];
            let (this, mirror) = dst.split_at_mut(3 * plane);
            let (r, rest) = this.split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            for (p, px) in self.rgb.chunks_exact(3).enumerate() {
                r[p] = self.lut[0][px[0] as usize];
                g[p] = self.lut[1][px[1] as usize];
                b[p] = self.lut[2][px[2] as usize];
            }
            if rows == 2 {
                // The same planes with every row reversed.
                for (src, dst) in this
                    .chunks_exact(self.w)
                    .zip(mirror.chunks_exact_mut(self.w))
                {
                    dst.iter_mut()
                        .zip(src.iter().rev())
                        .for_each(|(d, s)| *d = *s);
                }
            }
        }
        let t1 = Instant::now();
        let dim = self.dim;
        let name = &self.name;
        let sum = &mut self.sum;
        let m = n * rows;
        let post = self.model.run(
            &[m, 3, self.h, self.w],
            &self.input[..m * 3 * plane],
            |outputs| {
                let p0 = Instant::now();
                let (shape, data) = outputs.f32(0)?;
                if shape != [m as i64, dim as i64] {
                    return Err(vidar_models::ModelError::Inference {
                        model: name.clone(),
                        message: format!(
                            "embedding output has shape {shape:?}, expected [{m}, {dim}]"
                        ),
                    });
                }
                if rows == 1 {
                    out.extend(data.chunks_exact(dim).map(Embedding::normalized));
                } else {
                    // Each view normalised, then their sum normalised: the
                    // two views weigh the same whatever their norms.
                    for pair in data.chunks_exact(rows * dim) {
                        let (a, b) = pair.split_at(dim);
                        let (na, nb) = (inv_norm(a), inv_norm(b));
                        for ((s, x), y) in sum.iter_mut().zip(a).zip(b) {
                            *s = x * na + y * nb;
                        }
                        out.push(Embedding::normalized(sum));
                    }
                }
                Ok(p0.elapsed())
            },
        )?;
        let total = t1.elapsed();
        self.timings.preprocess += t1 - t0;
        self.timings.inference += total.saturating_sub(post);
        self.timings.postprocess += post;
        self.timings.crops += n;
        self.timings.runs += 1;
        Ok(())
    }
}

impl Embedder for OnnxEmbedder {
    fn name(&self) -> &str {
        &self.model.spec().name
    }

    fn model_tag(&self) -> &str {
        &self.tag
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn max_batch(&self) -> usize {
        self.batch
    }

    fn embed_into(
        &mut self,
        crops: &[Crop<'_>],
        out: &mut Vec<Embedding>,
    ) -> Result<(), ReidError> {
        out.clear();
        for chunk in crops.chunks(self.batch) {
            self.run_chunk(chunk, out)?;
        }
        Ok(())
    }

    fn take_timings(&mut self) -> EmbedTimings {
        std::mem::take(&mut self.timings)
    }
}
