//! SSD-MobileNet-V2 (COCO) person detector, both model forms of the manifest:
//! `ssd-postprocessed` (in-graph NMS, batch 1: a batch of frames runs frame by
//! frame) and `ssd-raw` (dynamic batch: one run for all frames, decode + NMS here).

use std::time::{Duration, Instant};

use serde::Deserialize;
use vidar_config::{Config, Invalid, Problem, Problems};
use vidar_models::{Format, Model, Precision, ProviderConfig, SessionFactory, Task};

use crate::postprocess::{decode_raw, Anchor, Candidate, DecodeParams, NormBox, RawSsd};
use crate::{DetectError, Detection, Detector, Prepared, Preparer, StageTimings};
use vidar_models::image::{Arrangement, Filter, FrameResizer, Picture};
use vidar_models::Layout;

/// Settings of an SSD detector.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SsdConfig {
    /// Manifest model name. Default `ssd-mobilenet-v2-person` (the raw SSD
    /// cut to its person head, input as 2x2 pixel blocks: batches; decode +
    /// NMS in Rust).
    pub model: String,
    /// Minimum person score, 0..1. Default 0.5.
    pub score_threshold: f32,
    /// NMS IoU threshold for the raw form, 0..1. Default 0.6 (as the in-graph post-processing).
    pub nms_iou: f32,
    /// Most persons reported per frame. Default 50.
    pub max_detections: usize,
    /// Most frames per inference run (the raw form); more frames are split.
    /// The detector threads batch only frames already waiting, never waiting
    /// for a batch to fill, so a node with time to spare runs one frame at a
    /// time either way. Default ([`SsdConfig::batch_limit`]): 8 with a GPU
    /// provider; on a CPU 4 for an int8 model (an overloaded node analysed
    /// 8-17 % more frames than with 1, as many as with 8 at less memory and
    /// latency) and 1 for a float one (batches brought no frames, cost
    /// latency, and 160 MiB of memory at 4): docs/benchmarks.md, "Batches
    /// across cameras".
    pub max_batch: Option<usize>,
    /// Numeric precision: `"int8"` runs the manifest's int8 variant of
    /// `model` (about twice as fast on CPUs with VNNI or AMX, docs/benchmarks.md),
    /// `"fp16"` builds TensorRT fp16 engines (TensorRT only), `"fp32"` the
    /// float model with TensorRT's fp16 off. Default: the float model, with
    /// the providers' own settings.
    pub precision: Option<Precision>,
    /// How frames are resized into the model's input: `"antialiased"`
    /// (bilinear convolution over every source pixel, as Pillow) or
    /// `"sampled"` (bilinear between the four pixels around each input pixel,
    /// as OpenCV's `INTER_LINEAR` and the SSD's training: about half the cost
    /// at camera resolutions, and about 1 point less recall on small people
    /// far downscaled; docs/benchmarks.md, "Pre-processing"). Default
    /// `"antialiased"`.
    pub resize: Filter,
}

impl Default for SsdConfig {
    fn default() -> Self {
        Self {
            model: "ssd-mobilenet-v2-person".into(),
            score_threshold: 0.5,
            nms_iou: 0.6,
            max_detections: 50,
            max_batch: None,
            precision: None,
            resize: Filter::Antialiased,
        }
    }
}

impl SsdConfig {
    /// Frames per inference run for a model of `precision` on ONNX Runtime's
    /// `provider`: `max_batch` when set, else the default it describes.
    pub fn batch_limit(&self, precision: Precision, provider: &str) -> usize {
        self.max_batch
            .unwrap_or(if provider != ProviderConfig::Cpu.name() {
                8
            } else if precision == Precision::Int8 {
                4
            } else {
                1
            })
    }
}

/// The model the `model` key names cannot detect: `message` says why.
fn model_problem(message: String) -> DetectError {
    DetectError::Config(Invalid {
        problems: vec![Problem::new("model", message)],
    })
}

impl Config for SsdConfig {
    type Output = SsdDetector;
    type Context = SessionFactory;
    type Error = DetectError;

    fn problems(&self) -> Vec<Problem> {
        let mut p = Problems::new();
        if self.model.is_empty() {
            p.push("model", "must name a manifest model");
        }
        p.within("score_threshold", self.score_threshold, 0.0, 1.0);
        p.within("nms_iou", self.nms_iou, 0.0, 1.0);
        if self.max_detections == 0 {
            p.push("max_detections", "must be > 0");
        }
        if let Some(batch) = self.max_batch.filter(|b| !(1..=64).contains(b)) {
            p.push("max_batch", format!("must be in 1..=64, got {batch}"));
        }
        p.into_vec()
    }

    /// Loads the model through `factory` and builds the detector.
    fn build(&self, factory: &SessionFactory) -> Result<SsdDetector, DetectError> {
        self.check()?;
        let model = factory.load_at(&self.model, self.precision)?;
        let spec = model.spec().clone();
        if spec.task != Task::Detection {
            return Err(model_problem(format!("{} is not a detector", spec.name)));
        }
        let form = match spec.format {
            Format::SsdPostprocessed => Form::Postprocessed,
            Format::SsdRaw => {
                let file = spec.anchors.as_deref().unwrap_or_default();
                let path = factory.store().verified_path(file)?;
                let (rows, cols, data) = vidar_models::read_npy_f32_2d(&path)?;
                let want = spec.outputs[0].shape.get(1).copied().unwrap_or(-1);
                if cols != 4 || rows as i64 != want {
                    return Err(model_problem(format!(
                        "{}: anchors are {rows}x{cols}, the model has {want} boxes of 4",
                        path.display()
                    )));
                }
                let anchors = data
                    .chunks_exact(4)
                    .map(|a| Anchor {
                        yc: a[0],
                        xc: a[1],
                        h: a[2],
                        w: a[3],
                    })
                    .collect();
                Form::Raw {
                    anchors,
                    scales: spec.box_scales.unwrap_or([10.0, 10.0, 5.0, 5.0]),
                }
            }
            Format::Embedding => return Err(model_problem(format!("{} is not an SSD", spec.name))),
        };
        let (in_h, in_w) = spec
            .input_hw()
            .ok_or_else(|| model_problem(format!("{}: input size unknown", spec.name)))?;
        let block = spec.input.layout.map_or(1, Layout::block);
        let batch = self
            .batch_limit(spec.precision, model.provider())
            .min(model.max_batch());
        let mut input = Prepared::default();
        input.data.resize(batch * in_h * in_w * 3, 0);
        Ok(SsdDetector {
            person_class: spec.person_class.unwrap_or(0),
            input,
            batch,
            in_h,
            in_w,
            block,
            model,
            form,
            config: self.clone(),
            own: SsdPreparer::new(in_w, in_h, block, self.resize),
            scratch: Vec::new(),
            timings: StageTimings::default(),
        })
    }
}

#[derive(Debug)]
enum Form {
    Postprocessed,
    Raw {
        anchors: Vec<Anchor>,
        scales: [f32; 4],
    },
}

/// An SSD person detector on one ONNX Runtime session. Buffers are sized once at build.
#[derive(Debug)]
pub struct SsdDetector {
    model: Model,
    form: Form,
    config: SsdConfig,
    person_class: u32,
    batch: usize,
    /// Input image size, pixels.
    in_h: usize,
    in_w: usize,
    /// Side of the pixel blocks the model's input holds (1: pixels; 2:
    /// `nhwc-s2d2`).
    block: usize,
    /// The input `detect_into` prepares (with `own`) and runs.
    input: Prepared,
    own: SsdPreparer,
    scratch: Vec<Candidate>,
    timings: StageTimings,
}

/// Resizes frames into an SSD's input tensor (RGB8, NHWC, or 2x2 pixel
/// blocks for `nhwc-s2d2` models), on any thread, with the configured [`Filter`].
#[derive(Debug)]
pub struct SsdPreparer {
    in_w: usize,
    in_h: usize,
    block: usize,
    resizer: FrameResizer,
}

impl SsdPreparer {
    fn new(in_w: usize, in_h: usize, block: usize, filter: Filter) -> Self {
        Self {
            in_w,
            in_h,
            block,
            resizer: FrameResizer::with_filter(filter),
        }
    }
}

impl Preparer for SsdPreparer {
    fn prepare(&mut self, frames: &[Picture<'_>], into: &mut Prepared) -> Result<(), DetectError> {
        let t0 = Instant::now();
        let size = self.in_h * self.in_w * 3;
        into.data.resize(frames.len() * size, 0);
        into.sizes.clear();
        let (w, h) = (self.in_w as u32, self.in_h as u32);
        for (frame, dst) in frames.iter().zip(into.data.chunks_exact_mut(size)) {
            let arrangement = if self.block == 1 {
                Arrangement::Pixels
            } else {
                Arrangement::Blocks
            };
            self.resizer
                .resize_into(*frame, None, dst, (w, h), arrangement)?;
            into.sizes.push((frame.width(), frame.height()));
        }
        into.took = t0.elapsed();
        Ok(())
    }
}

impl SsdDetector {
    /// The input tensor's shape for `n` frames: pixels, or 2x2 blocks of them.
    fn input_shape(&self, n: usize) -> [usize; 4] {
        let b = self.block;
        [n, self.in_h / b, self.in_w / b, 3 * b * b]
    }

    /// The loaded model (spec, provider).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Runs the model alone on the current input buffer for `n` frames (benchmarks).
    pub fn run_inference_only(&mut self, n: usize) -> Result<Duration, DetectError> {
        let n = n.min(self.batch);
        let shape = self.input_shape(n);
        let len = n * self.in_h * self.in_w * 3;
        if self.input.data.len() < len {
            self.input.data.resize(len, 0);
        }
        let start = Instant::now();
        self.model
            .run(&shape, &self.input.data[..len], |_| Ok(()))?;
        Ok(start.elapsed())
    }

    /// Runs the model on `data` (the input of the frames of `sizes`, at most
    /// one batch) and decodes each frame's persons into `out`.
    fn run_chunk(
        &mut self,
        data: &[u8],
        sizes: &[(u32, u32)],
        out: &mut [Vec<Detection>],
    ) -> Result<(), DetectError> {
        let n = sizes.len();
        let t1 = Instant::now();
        let shape = self.input_shape(n);
        let (form, config, scratch, person) = (
            &self.form,
            &self.config,
            &mut self.scratch,
            self.person_class,
        );
        let post = self.model.run(&shape, data, |outputs| {
            let p0 = Instant::now();
            match form {
                Form::Postprocessed => {
                    let (_, boxes) = outputs.f32(0)?;
                    let (_, classes) = outputs.f32(1)?;
                    let (_, scores) = outputs.f32(2)?;
                    let (_, count) = outputs.f32(3)?;
                    let per = scores.len() / n;
                    for (b, (&(fw, fh), dets)) in sizes.iter().zip(out.iter_mut()).enumerate() {
                        let count = (count[b].max(0.0) as usize).min(per);
                        for i in b * per..b * per + count {
                            if classes[i] as u32 != person || scores[i] < config.score_threshold {
                                continue;
                            }
                            let bx = &boxes[i * 4..i * 4 + 4];
                            let nb = NormBox {
                                ymin: bx[0],
                                xmin: bx[1],
                                ymax: bx[2],
                                xmax: bx[3],
                            };
                            dets.push(Detection {
                                bbox: nb.to_pixels(fw, fh),
                                score: scores[i],
                                class_id: person,
                            });
                        }
                        dets.truncate(config.max_detections);
                    }
                }
                Form::Raw { anchors, scales } => {
                    let (eshape, encodings) = outputs.f32(0)?;
                    let (sshape, scores) = outputs.f32(1)?;
                    let (boxes, classes) = (eshape[1] as usize, sshape[2] as usize);
                    let params = DecodeParams {
                        class: person as usize,
                        score_threshold: config.score_threshold,
                        iou_threshold: config.nms_iou,
                        max_detections: config.max_detections,
                        scales: *scales,
                    };
                    for (b, (&(fw, fh), dets)) in sizes.iter().zip(out.iter_mut()).enumerate() {
                        let raw = RawSsd {
                            encodings: &encodings[b * boxes * 4..(b + 1) * boxes * 4],
                            scores: &scores[b * boxes * classes..(b + 1) * boxes * classes],
                            classes,
                        };
                        decode_raw(raw, anchors, &params, fw, fh, scratch, dets);
                    }
                }
            }
            Ok(p0.elapsed())
        })?;
        let total = t1.elapsed();
        self.timings.inference += total.saturating_sub(post);
        self.timings.postprocess += post;
        self.timings.frames += n;
        self.timings.runs += 1;
        Ok(())
    }
}

impl Detector for SsdDetector {
    fn name(&self) -> &str {
        &self.model.spec().name
    }

    fn max_batch(&self) -> usize {
        self.batch
    }

    fn detect_into(
        &mut self,
        frames: &[Picture<'_>],
        out: &mut Vec<Vec<Detection>>,
    ) -> Result<(), DetectError> {
        let mut input = std::mem::take(&mut self.input);
        let result = self
            .own
            .prepare(frames, &mut input)
            .and_then(|()| self.detect_prepared(&input, out));
        self.input = input;
        result
    }

    fn preparer(&self) -> Option<Box<dyn Preparer>> {
        Some(Box::new(SsdPreparer::new(
            self.in_w,
            self.in_h,
            self.block,
            self.config.resize,
        )))
    }

    fn detect_prepared(
        &mut self,
        input: &Prepared,
        out: &mut Vec<Vec<Detection>>,
    ) -> Result<(), DetectError> {
        let size = self.in_h * self.in_w * 3;
        if input.data.len() < input.sizes.len() * size {
            return Err(DetectError::Prepared {
                detector: self.model.spec().name.clone(),
                why: format!(
                    "{} bytes for {} frames of {}x{}x3",
                    input.data.len(),
                    input.sizes.len(),
                    self.in_w,
                    self.in_h
                ),
            });
        }
        let n = input.sizes.len();
        out.resize_with(n, Vec::new);
        out.iter_mut().for_each(Vec::clear);
        self.timings.preprocess += input.took;
        for (k, dets) in out.chunks_mut(self.batch).enumerate() {
            let first = k * self.batch;
            let sizes = &input.sizes[first..first + dets.len()];
            let data = &input.data[first * size..(first + dets.len()) * size];
            self.run_chunk(data, sizes, dets)?;
        }
        Ok(())
    }

    fn take_timings(&mut self) -> StageTimings {
        std::mem::take(&mut self.timings)
    }
}
