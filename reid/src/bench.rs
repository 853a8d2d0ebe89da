//! Whole-embedder benchmark (`vidar-edge bench reid`): inference-only crops/s at
//! several batch sizes, and pre/post-processing time as a fraction of inference.

use std::fmt;
use std::time::{Duration, Instant};
use vidar_config::Config;

use vidar_models::image::RgbFrame;
use vidar_models::SessionFactory;
use vidar_protocol::BBox;

use crate::{Crop, Embedder, EmbedderConfig, ReidError};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Manifest embedding models to measure.
    pub models: Vec<String>,
    /// Batch sizes (crops per call).
    pub batches: Vec<usize>,
    /// Timed iterations per (model, batch), after `warmup`.
    pub iterations: usize,
    /// Untimed iterations first.
    pub warmup: usize,
    /// Camera frame size the crops are cut from (width, height).
    pub frame_size: (u32, u32),
    /// Size of each person box in the frame (width, height), pixels.
    pub crop_size: (f32, f32),
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            models: vec![EmbedderConfig::default().model],
            batches: vec![1, 4, 8],
            iterations: 20,
            warmup: 3,
            frame_size: (1280, 720),
            crop_size: (80.0, 200.0),
        }
    }
}

/// One measured (model, batch).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    /// Manifest model name.
    pub model: String,
    /// Crops per call.
    pub batch: usize,
    /// Inference-only throughput, crops per second (median call).
    pub inference_cps: f64,
    /// End-to-end `embed` throughput, crops per second (median call).
    pub end_to_end_cps: f64,
    /// Pre-processing per crop.
    pub preprocess_per_crop: Duration,
    /// Post-processing per crop.
    pub postprocess_per_crop: Duration,
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
    /// Model input size (height, width) of the last model.
    pub input_hw: (usize, usize),
    /// Timed iterations per row.
    pub iterations: usize,
    /// One row per (model, batch).
    pub rows: Vec<BenchRow>,
}

/// Median of `samples` (robust to the odd descheduling on a shared machine).
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Runs the benchmark on sessions from `factory`.
pub fn run(factory: &SessionFactory, config: &BenchConfig) -> Result<BenchReport, ReidError> {
    let (w, h) = config.frame_size;
    let pixels: Vec<u8> = (0..w * h * 3)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let frame = RgbFrame::packed(w, h, &pixels)?;
    let max_batch = config.batches.iter().copied().max().unwrap_or(1);
    let (cw, ch) = config.crop_size;
    let crops: Vec<Crop<'_>> = (0..max_batch)
        .map(|i| Crop {
            frame: frame.into(),
            bbox: BBox {
                x: (i as f32 * 97.0) % (w as f32 - cw).max(1.0),
                y: (i as f32 * 53.0) % (h as f32 - ch).max(1.0),
                w: cw,
                h: ch,
            },
        })
        .collect();
    let mut rows = Vec::new();
    let (mut provider, mut input_hw) = (String::new(), (0, 0));
    for model in &config.models {
        let mut embedder = EmbedderConfig {
            model: model.clone(),
            max_batch,
            ..EmbedderConfig::default()
        }
        .build(factory)?;
        provider = embedder.model().provider().to_owned();
        input_hw = embedder.model().spec().input_hw().unwrap_or_default();
        for &batch in &config.batches {
            let crops = &crops[..batch];
            for _ in 0..=config.warmup {
                embedder.embed(crops)?;
            }
            embedder.take_timings();
            let mut inference = Vec::with_capacity(config.iterations);
            for _ in 0..config.iterations {
                inference.push(embedder.run_inference_only(batch)?);
            }
            let mut wall = Vec::with_capacity(config.iterations);
            for _ in 0..config.iterations {
                let start = Instant::now();
                embedder.embed(crops)?;
                wall.push(start.elapsed());
            }
            let t = embedder.take_timings();
            let n = (batch * config.iterations) as f64;
            let inf = t.inference.as_secs_f64().max(1e-12);
            rows.push(BenchRow {
                model: model.clone(),
                batch,
                inference_cps: batch as f64 / median(&mut inference).as_secs_f64().max(1e-12),
                end_to_end_cps: batch as f64 / median(&mut wall).as_secs_f64().max(1e-12),
                preprocess_per_crop: t.preprocess.div_f64(n),
                postprocess_per_crop: t.postprocess.div_f64(n),
                preprocess_fraction: t.preprocess.as_secs_f64() / inf,
                postprocess_fraction: t.postprocess.as_secs_f64() / inf,
            });
        }
    }
    Ok(BenchReport {
        provider,
        intra_threads: factory.config().intra_threads,
        input_hw,
        iterations: config.iterations,
        rows,
    })
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "re-ID benchmark: {}, intra-op threads {} (0 = one per core), input {}x{} (HxW), median of {} calls per row",
            self.provider, self.intra_threads, self.input_hw.0, self.input_hw.1, self.iterations
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| model | batch | inference-only crops/s | end-to-end crops/s | pre ms/crop | post ms/crop | pre / inference | post / inference |"
        )?;
        writeln!(f, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
        for r in &self.rows {
            writeln!(
                f,
                "| {} | {} | {:.1} | {:.1} | {:.3} | {:.3} | {:.1} % | {:.1} % |",
                r.model,
                r.batch,
                r.inference_cps,
                r.end_to_end_cps,
                r.preprocess_per_crop.as_secs_f64() * 1e3,
                r.postprocess_per_crop.as_secs_f64() * 1e3,
                r.preprocess_fraction * 100.0,
                r.postprocess_fraction * 100.0
            )?;
        }
        Ok(())
    }
}
