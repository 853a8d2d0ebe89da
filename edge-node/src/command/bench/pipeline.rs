//! `vidar-edge bench pipeline|detect|reid`: whole-node and model figures.
//!
//! `pipeline` runs one video through the real node (ingest with back-pressure,
//! batched detection, tracking, re-ID, gallery, SQLite recording) as fast as it
//! goes, and in the same run measures the detector's inference-only rate on the
//! same model file, in interleaved rounds: the ratio is the node's overhead.

use super::harness::percentile;
use crate::node;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use vidar_config::Config;
use vidar_models::{ModelStore, RuntimeConfig, SessionFactory};

/// Arguments of `bench pipeline`.
#[derive(Args, Debug)]
pub struct PipelineBenchArgs {
    /// The video (default: OpenCV's street video).
    #[arg(
        long,
        default_value = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
    )]
    pub video: PathBuf,
    /// Detector model (manifest name).
    #[arg(long, default_value = "ssd-mobilenet-v2-person")]
    pub model: String,
    /// ONNX Runtime intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Inference-only runs for the bound.
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
    /// Rounds of pipeline and bound, interleaved; the ratio's median and spread are reported.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Batches each detector thread takes at once (the node's `inference_depth`; 0 = automatic).
    #[arg(long, default_value_t = 0)]
    pub depth: usize,
    /// How frames are resized into the detector's input (`[detector] resize`).
    #[arg(long, value_enum, default_value_t = Resize::Antialiased)]
    pub resize: Resize,
    /// The frames' pixel layout (the camera's `pixel_format`; auto: I420
    /// from the decoder).
    #[arg(long, value_enum, default_value_t = Pixels::Auto)]
    pub pixels: Pixels,
}

/// A camera's `pixel_format` on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pixels {
    /// The source's own (I420 for decoded video; the node's default).
    Auto,
    /// Packed RGB, converted by GStreamer.
    Rgb,
    /// Planar I420.
    I420,
}

impl From<Pixels> for vidar_pipeline::PixelFormat {
    fn from(p: Pixels) -> Self {
        match p {
            Pixels::Auto => Self::Auto,
            Pixels::Rgb => Self::Rgb,
            Pixels::I420 => Self::I420,
        }
    }
}

impl Pixels {
    /// The config line setting it (none for the default).
    pub(super) fn toml_line(self) -> &'static str {
        match self {
            Pixels::Auto => "",
            Pixels::Rgb => "pixel_format = \"rgb\"\n",
            Pixels::I420 => "pixel_format = \"i420\"\n",
        }
    }
}

/// `[detector] resize` on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resize {
    /// Bilinear convolution over every source pixel (the default).
    Antialiased,
    /// Bilinear between the four pixels around each input pixel (OpenCV's INTER_LINEAR).
    Sampled,
}

impl From<Resize> for vidar_models::image::Filter {
    fn from(r: Resize) -> Self {
        match r {
            Resize::Antialiased => Self::Antialiased,
            Resize::Sampled => Self::Sampled,
        }
    }
}

/// Arguments of `bench detect|reid`.
#[derive(Args, Debug)]
pub struct ModelBenchArgs {
    /// Timed runs per batch size.
    #[arg(long, default_value_t = 20)]
    pub iterations: usize,
    /// ONNX Runtime intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Batch sizes, comma-separated (default: the benchmark's own).
    #[arg(long, value_delimiter = ',')]
    pub batches: Vec<usize>,
    /// Manifest models, comma-separated (default: the float SSD's two forms for
    /// `bench detect`, the default re-ID model for `bench reid`).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Camera frame sizes the detector resizes from, comma-separated `WxH`
    /// (`bench detect` only; default 1280x720). One table per size.
    #[arg(long, value_delimiter = ',', value_parser = parse_size)]
    pub frame_sizes: Vec<(u32, u32)>,
    /// How frames are resized into the detector's input (`bench detect` only).
    #[arg(long, value_enum, default_value_t = Resize::Antialiased)]
    pub resize: Resize,
    /// Camera frames' layout (`bench detect` only): I420 as a decoder
    /// hands them over (the node's default for cameras), or packed RGB.
    #[arg(long, value_enum, default_value_t = Pixels::I420)]
    pub pixels: Pixels,
}

/// `WxH`, both from 1 to 16384 pixels.
fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("frame size `{text}`: expected WxH in pixels, e.g. 1920x1080");
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (
        w.trim().parse().map_err(|_| bad())?,
        h.trim().parse().map_err(|_| bad())?,
    );
    if !(1..=16384).contains(&w) || !(1..=16384).contains(&h) {
        return Err(format!(
            "frame size `{text}`: each side must be 1 to 16384 pixels"
        ));
    }
    Ok((w, h))
}

fn factory(threads: usize) -> Result<SessionFactory> {
    let runtime = RuntimeConfig {
        intra_threads: threads,
        ..RuntimeConfig::default()
    };
    Ok(SessionFactory::new(ModelStore::from_env()?, runtime)?)
}

/// `bench detect`.
pub fn detect(args: ModelBenchArgs) -> Result<()> {
    let mut config = vidar_detectors::bench::BenchConfig {
        iterations: args.iterations,
        resize: args.resize.into(),
        i420: args.pixels != Pixels::Rgb,
        ..Default::default()
    };
    if !args.batches.is_empty() {
        config.batches = args.batches.clone();
    }
    if !args.models.is_empty() {
        config.models = args.models.clone();
    }
    let sizes = if args.frame_sizes.is_empty() {
        vec![config.frame_size]
    } else {
        args.frame_sizes.clone()
    };
    let factory = factory(args.threads)?;
    for size in sizes {
        config.frame_size = size;
        let report = vidar_detectors::bench::run(&factory, &config)?;
        println!("{report}");
    }
    Ok(())
}

/// `bench reid`.
pub fn reid(args: ModelBenchArgs) -> Result<()> {
    let mut config = vidar_reid::bench::BenchConfig {
        iterations: args.iterations,
        ..Default::default()
    };
    if !args.batches.is_empty() {
        config.batches = args.batches.clone();
    }
    if !args.models.is_empty() {
        config.models = args.models.clone();
    }
    if !args.frame_sizes.is_empty()
        || args.resize != Resize::Antialiased
        || args.pixels != Pixels::I420
    {
        anyhow::bail!(
            "--frame-sizes, --resize and --pixels are for `bench detect`; `bench reid` embeds crops of its own size"
        );
    }
    let report = vidar_reid::bench::run(&factory(args.threads)?, &config)?;
    println!("{report}");
    Ok(())
}

/// One pass of the video through the node.
struct PipelineRun {
    fps: f64,
    frames: u64,
    dropped: u64,
    /// The node's inference depth.
    depth: usize,
    /// Mean detector inference, pre- and post-processing inside the pipeline, s.
    inference: f64,
    preprocess: f64,
    postprocess: f64,
    identities: u64,
    crops: u64,
    records: u64,
}

/// Runs the video once through a node built from `args` (and `depth`).
fn run_pipeline(args: &PipelineBenchArgs) -> Result<PipelineRun> {
    let (mut config, db) = super::file_run::file_config("bench", &args.video, args.threads)?;
    config.inference_depth = args.depth;
    config.detector.model = args.model.clone();
    config.detector.resize = args.resize.into();
    for camera in &mut config.cameras {
        camera.pixel_format = args.pixels.into();
    }
    let depth = config.detector_depth();
    let built = node::build(&config)?;
    let metrics = Arc::clone(&built.metrics);
    let pass = super::file_run::play_file(built, &db, || {})?;
    Ok(PipelineRun {
        fps: pass.decoded as f64 / pass.wall.as_secs_f64(),
        frames: pass.decoded,
        dropped: pass.dropped,
        depth,
        inference: metrics.inference.mean(),
        preprocess: metrics.preprocess.mean(),
        postprocess: metrics.postprocess.mean(),
        identities: metrics.identities.load(Ordering::Relaxed),
        crops: metrics.crops.load(Ordering::Relaxed),
        records: metrics.records_submitted.load(Ordering::Relaxed),
    })
}

/// The bound: the same model file, inference only, batch 1, same threads.
fn run_bound(det: &mut vidar_detectors::SsdDetector, iterations: usize) -> Result<f64> {
    for _ in 0..5 {
        det.run_inference_only(1)?;
    }
    let mut total = Duration::ZERO;
    for _ in 0..iterations {
        total += det.run_inference_only(1)?;
    }
    Ok(iterations as f64 / total.as_secs_f64())
}

/// Median, least and greatest of `v`.
fn spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    (
        percentile(&mut v, 0.5),
        percentile(&mut v, 0.0),
        percentile(&mut v, 1.0),
    )
}

/// `bench pipeline`: `rounds` rounds, each the pipeline and the bound one
/// after the other, in alternating order (pipeline first in odd rounds), so
/// drift of a shared machine falls on both sides; the ratio is reported per
/// round and as the median with its spread.
pub fn pipeline(args: PipelineBenchArgs) -> Result<()> {
    if !args.video.is_file() {
        anyhow::bail!(
            "no video at {} (install opencv-doc or pass --video)",
            args.video.display()
        );
    }
    let factory = factory(args.threads)?;
    let mut det = vidar_detectors::SsdConfig {
        model: args.model.clone(),
        ..Default::default()
    }
    .build(&factory)
    .context("building the detector for the bound")?;
    let rounds = args.rounds.max(1);
    let mut runs = Vec::with_capacity(rounds);
    let mut bounds = Vec::with_capacity(rounds);
    for r in 0..rounds {
        if r % 2 == 0 {
            runs.push(run_pipeline(&args)?);
            bounds.push(run_bound(&mut det, args.iterations)?);
        } else {
            bounds.push(run_bound(&mut det, args.iterations)?);
            runs.push(run_pipeline(&args)?);
        }
    }
    let ratios: Vec<f64> = runs.iter().zip(&bounds).map(|(p, b)| p.fps / b).collect();
    let beyond: Vec<f64> = runs
        .iter()
        .map(|p| (1.0 / p.fps - p.inference) * 1000.0)
        .collect();
    println!();
    println!("## Pipeline benchmark: one stream as fast as it goes (`vidar-edge bench pipeline`)");
    println!();
    println!("| round | order | pipeline frames/s | bound frames/s | ratio | inference / pre / post in the pipeline, ms | per frame beyond inference, ms |");
    println!("|---|---|---:|---:|---:|---|---:|");
    for (r, ((p, b), x)) in runs.iter().zip(&bounds).zip(&beyond).enumerate() {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.3} | {:.2} / {:.2} / {:.2} | {:.2} |",
            r + 1,
            if r % 2 == 0 {
                "pipeline, bound"
            } else {
                "bound, pipeline"
            },
            p.fps,
            b,
            p.fps / b,
            p.inference * 1000.0,
            p.preprocess * 1000.0,
            p.postprocess * 1000.0,
            x
        );
    }
    let last = runs.last().context("no round ran")?;
    let (fps, _, _) = spread(runs.iter().map(|p| p.fps).collect());
    let (bound, _, _) = spread(bounds.clone());
    let (ratio, rmin, rmax) = spread(ratios);
    let (extra, xmin, xmax) = spread(beyond);
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| video | {} ({} frames, {} dropped) |",
        args.video.display(),
        last.frames,
        last.dropped
    );
    println!(
        "| model | {} (ONNX Runtime CPU, intra threads {}, inference depth {}) |",
        args.model, args.threads, last.depth
    );
    println!("| pipeline frames/s (ingest + detect + track + re-ID + SQLite) | {fps:.1} |");
    println!("| inference-only frames/s, batch 1 (bound) | {bound:.1} |");
    println!("| **ratio pipeline / inference-only** | **{ratio:.3}** |");
    println!("| ratio spread over {rounds} rounds (least - greatest) | {rmin:.3} - {rmax:.3} |");
    println!(
        "| pipeline time per frame beyond inference, ms (median, least - greatest) | {extra:.2} ({xmin:.2} - {xmax:.2}) |"
    );
    println!("| identities minted | {} |", last.identities);
    println!("| crops embedded | {} |", last.crops);
    println!("| records submitted | {} |", last.records);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn frame_sizes_parse_and_bad_ones_are_named() {
        assert_eq!(parse_size("1920x1080"), Ok((1920, 1080)));
        assert_eq!(parse_size("640X480"), Ok((640, 480)));
        for bad in ["1920", "x1080", "1920x", "0x10", "10x99999", "axb"] {
            let e = parse_size(bad).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
    }
}
