//! Whole-detector benchmark (`vidar-edge bench detect`): inference-only frames/s
//! at several batch sizes per model, and pre/post-processing time as a fraction
//! of inference time. It is also the node's start-up capacity profile.

use std::fmt;
use std::time::{Duration, Instant};
use vidar_config::Config;

use vidar_models::image::{I420Frame, Picture, RgbFrame, YuvToRgb};
use vidar_models::SessionFactory;

use crate::{DetectError, Detector, SsdConfig, SsdDetector};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Manifest models to measure.
    pub models: Vec<String>,
    /// Batch sizes (frames per call).
    pub batches: Vec<usize>,
    /// Timed calls per (model, batch) and measurement, after `warmup`.
    pub iterations: usize,
    /// Untimed iterations first.
    pub warmup: usize,
    /// Camera frame size the detector resizes from (width, height).
    pub frame_size: (u32, u32),
    /// How frames are resized into the model's input.
    pub resize: vidar_models::image::Filter,
    /// Frames in planar I420, as a decoder hands them over (a node's
    /// default for cameras), rather than packed RGB.
    pub i420: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            models: vec![
                "ssd-mobilenet-v2-coco".into(),
                "ssd-mobilenet-v2-coco-raw".into(),
                "ssd-mobilenet-v2-person".into(),
            ],
            batches: vec![1, 4, 8],
            iterations: 20,
            warmup: 3,
            frame_size: (1280, 720),
            resize: vidar_models::image::Filter::Antialiased,
            i420: false,
        }
    }
}

/// One measured (model, batch).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    /// Manifest model name.
    pub model: String,
    /// Frames per call.
    pub batch: usize,
    /// ONNX Runtime runs per call (1 when the model batches, `batch` when it runs frame by frame).
    pub runs_per_call: usize,
    /// Inference-only throughput, frames per second (median call).
    pub inference_fps: f64,
    /// End-to-end `detect` throughput (resize + inference + decode), frames per second (median call).
    pub end_to_end_fps: f64,
    /// Pre-processing per frame.
    pub preprocess_per_frame: Duration,
    /// Post-processing per frame.
    pub postprocess_per_frame: Duration,
    /// Pre-processing time / inference time.
    pub preprocess_fraction: f64,
    /// Post-processing time / inference time.
    pub postprocess_fraction: f64,
}

/// The benchmark's result; `Display` prints a Markdown table.
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// Execution provider of the sessions.
    pub provider: String,
    /// ONNX Runtime intra-op threads (0 = one per core).
    pub intra_threads: usize,
    /// Camera frame size used.
    pub frame_size: (u32, u32),
    /// The resize filter used.
    pub resize: vidar_models::image::Filter,
    /// Frames were I420 (else packed RGB).
    pub i420: bool,
    /// Timed iterations per row.
    pub iterations: usize,
    /// One row per (model, batch).
    pub rows: Vec<BenchRow>,
}

/// A deterministic textured RGB frame (gradients plus a hash pattern) of `w` x `h`.
pub fn synthetic_frame(w: u32, h: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let n = (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663)) % 64;
            data.push(((x * 255 / w) as u8).wrapping_add(n as u8));
            data.push(((y * 255 / h) as u8).wrapping_add(n as u8 / 2));
            data.push(((x + y) % 256) as u8);
        }
    }
    data
}

/// [`synthetic_frame`] as I420 (BT.601, limited range; each chroma sample
/// from the top-left pixel of its 2 x 2 block): the Y plane, then U, then V.
pub fn synthetic_i420(w: u32, h: u32) -> Vec<u8> {
    let rgb = synthetic_frame(w, h);
    let (cw, ch) = (w.div_ceil(2) as usize, h.div_ceil(2) as usize);
    let px = |x: usize, y: usize| {
        let i = (y * w as usize + x) * 3;
        (
            f32::from(rgb[i]),
            f32::from(rgb[i + 1]),
            f32::from(rgb[i + 2]),
        )
    };
    let luma = |(r, g, b): (f32, f32, f32)| 0.299 * r + 0.587 * g + 0.114 * b;
    let mut data = Vec::with_capacity(w as usize * h as usize + 2 * cw * ch);
    for y in 0..h as usize {
        for x in 0..w as usize {
            data.push((16.0 + luma(px(x, y)) * 219.0 / 255.0).round() as u8);
        }
    }
    for plane in 0..2 {
        for cy in 0..ch {
            for cx in 0..cw {
                let p = px(cx * 2, cy * 2);
                let y = luma(p);
                let c = if plane == 0 {
                    (p.2 - y) / 1.772
                } else {
                    (p.0 - y) / 1.402
                };
                data.push((128.0 + c * 224.0 / 255.0).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    data
}

/// Median of `samples` (robust to the odd descheduling on a shared machine).
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn measure(
    detector: &mut SsdDetector,
    frames: &[Picture<'_>],
    config: &BenchConfig,
) -> Result<BenchRow, DetectError> {
    let batch = frames.len();
    let per_run = detector.max_batch().min(batch);
    let runs_per_call = batch.div_ceil(per_run);
    // Fill the input buffer with real resized frames, then time the model alone.
    detector.detect(frames)?;
    for _ in 0..config.warmup {
        detector.detect(frames)?;
    }
    detector.take_timings();
    let mut inference = Vec::with_capacity(config.iterations);
    for _ in 0..config.iterations {
        let mut call = Duration::ZERO;
        for r in 0..runs_per_call {
            call += detector.run_inference_only(per_run.min(batch - r * per_run))?;
        }
        inference.push(call);
    }
    let mut wall = Vec::with_capacity(config.iterations);
    for _ in 0..config.iterations {
        let start = Instant::now();
        detector.detect(frames)?;
        wall.push(start.elapsed());
    }
    let t = detector.take_timings();
    let n = (batch * config.iterations) as f64;
    let inf = t.inference.as_secs_f64().max(1e-12);
    Ok(BenchRow {
        model: detector.name().to_owned(),
        batch,
        runs_per_call,
        inference_fps: batch as f64 / median(&mut inference).as_secs_f64().max(1e-12),
        end_to_end_fps: batch as f64 / median(&mut wall).as_secs_f64().max(1e-12),
        preprocess_per_frame: t.preprocess.div_f64(n),
        postprocess_per_frame: t.postprocess.div_f64(n),
        preprocess_fraction: t.preprocess.as_secs_f64() / inf,
        postprocess_fraction: t.postprocess.as_secs_f64() / inf,
    })
}

/// Runs the benchmark on sessions from `factory`.
pub fn run(factory: &SessionFactory, config: &BenchConfig) -> Result<BenchReport, DetectError> {
    let (w, h) = config.frame_size;
    let max_batch = config.batches.iter().copied().max().unwrap_or(1);
    let pixels = if config.i420 {
        synthetic_i420(w, h)
    } else {
        synthetic_frame(w, h)
    };
    let frame: Picture<'_> = if config.i420 {
        I420Frame::packed(w, h, &pixels, YuvToRgb::default())?.into()
    } else {
        RgbFrame::packed(w, h, &pixels)?.into()
    };
    let frames = vec![frame; max_batch];
    let mut rows = Vec::new();
    let mut provider = String::new();
    for model in &config.models {
        let mut detector = SsdConfig {
            model: model.clone(),
            max_batch: Some(max_batch),
            // Count every candidate: the post-processing cost at a low threshold is the worst case.
            score_threshold: 0.3,
            resize: config.resize,
            ..SsdConfig::default()
        }
        .build(factory)?;
        provider = detector.model().provider().to_owned();
        for &batch in &config.batches {
            rows.push(measure(&mut detector, &frames[..batch], config)?);
        }
    }
    Ok(BenchReport {
        provider,
        intra_threads: factory.config().intra_threads,
        frame_size: config.frame_size,
        resize: config.resize,
        i420: config.i420,
        iterations: config.iterations,
        rows,
    })
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "detector benchmark: {}, intra-op threads {} (0 = one per core), camera frames {}x{} {} resized {:?}, median of {} calls per row",
            self.provider,
            self.intra_threads,
            self.frame_size.0,
            self.frame_size.1,
            if self.i420 { "I420" } else { "RGB" },
            self.resize,
            self.iterations
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| model | batch | runs/call | inference-only fps | end-to-end fps | pre ms/frame | post ms/frame | pre / inference | post / inference |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for r in &self.rows {
            writeln!(
                f,
                "| {} | {} | {} | {:.1} | {:.1} | {:.3} | {:.3} | {:.1} % | {:.1} % |",
                r.model,
                r.batch,
                r.runs_per_call,
                r.inference_fps,
                r.end_to_end_fps,
                r.preprocess_per_frame.as_secs_f64() * 1e3,
                r.postprocess_per_frame.as_secs_f64() * 1e3,
                r.preprocess_fraction * 100.0,
                r.postprocess_fraction * 100.0
            )?;
        }
        Ok(())
    }
}
