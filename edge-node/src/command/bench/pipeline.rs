//! `vidar-edge bench pipeline|detect|reid`: whole-node and model figures.
//!
//! `pipeline` runs one video through the real node (ingest with back-pressure,
//! batched detection, tracking, re-ID, gallery, SQLite recording) as fast as it
//! goes, and in the same run measures the detector's inference-only rate on the
//! same model file, in interleaved rounds: the ratio is the node's overhead.

use super::harness::percentile;
use crate::config::EdgeConfig;
use crate::node;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vidar_config::Config;
use vidar_models::{ModelStore, RuntimeConfig, SessionFactory};
use vidar_protocol::StreamState;

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
    #[arg(long, default_value = "ssd-mobilenet-v2-coco-raw")]
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
    /// Manifest models, comma-separated (`bench reid` only; default: the default re-ID model).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
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
        ..Default::default()
    };
    if !args.batches.is_empty() {
        config.batches = args.batches.clone();
    }
    let report = vidar_detectors::bench::run(&factory(args.threads)?, &config)?;
    println!("{report}");
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
    let db = std::env::temp_dir().join(format!("vidar-bench-{}.db", std::process::id()));
    let toml = format!(
        "node_id = \"bench\"\ndatabase = \"{db}\"\nmetrics_addr = \"127.0.0.1:0\"\n\
         inference_depth = {depth}\n\
         [models.runtime]\nintra_threads = {threads}\n[detector]\nmodel = \"{model}\"\n\
         [[cameras]]\ncamera = \"bench\"\nsource = \"{video}\"\nrealtime = false\nloop_file = false\n\
         queue_policy = \"block\"\nqueue_capacity = 4\n\
         [motion]\nenabled = false\n[detection_rate]\nadaptive = false\n",
        db = db.display(),
        depth = args.depth,
        threads = args.threads,
        model = args.model,
        video = args.video.display()
    );
    let config = EdgeConfig::parse(&toml, "bench pipeline")?;
    let depth = config.detector_depth();
    let built = node::build(&config)?;
    let (statuses, cams, metrics) = (
        Arc::clone(&built.statuses),
        built.cameras.clone(),
        Arc::clone(&built.metrics),
    );
    let stop = vidar_runtime::Shutdown::new();
    let st = stop.clone();
    let board = Arc::clone(&statuses);
    let t0 = Instant::now();
    let worker = std::thread::spawn(move || built.analysis.run_with_status(&st, &board));
    let analysed = || cams[0].1.analysed.load(Ordering::Relaxed);
    let wall = loop {
        std::thread::sleep(Duration::from_millis(100));
        let snap = statuses.snapshot();
        let Some((_, status)) = snap.first() else {
            continue;
        };
        if status.state == StreamState::Failed {
            anyhow::bail!("ingest failed: {:?}", status.last_error);
        }
        if status.state == StreamState::Stopped && analysed() >= status.counters.frames {
            break t0.elapsed();
        }
        if t0.elapsed() > Duration::from_secs(1800) {
            anyhow::bail!("pipeline did not finish in 30 min");
        }
    };
    stop.trigger("benchmark done");
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("analysis panicked"))?;
    let frames = analysed();
    let dropped = statuses
        .snapshot()
        .first()
        .map(|(_, s)| s.counters.dropped)
        .unwrap_or(0);
    let _ = std::fs::remove_file(&db);
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    Ok(PipelineRun {
        fps: frames as f64 / wall.as_secs_f64(),
        frames,
        dropped,
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
