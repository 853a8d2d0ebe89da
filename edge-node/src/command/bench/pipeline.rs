//! `vidar-edge bench pipeline|detect|reid`: whole-node and model figures.
//!
//! `pipeline` runs one video through the real node (ingest with back-pressure,
//! batched detection, tracking, re-ID, gallery, SQLite recording) as fast as it
//! goes, and in the same run measures the detector's inference-only rate on the
//! same model file: the ratio is the node's overhead.

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

/// `bench pipeline`.
pub fn pipeline(args: PipelineBenchArgs) -> Result<()> {
    if !args.video.is_file() {
        anyhow::bail!(
            "no video at {} (install opencv-doc or pass --video)",
            args.video.display()
        );
    }
    let db = std::env::temp_dir().join(format!("vidar-bench-{}.db", std::process::id()));
    let toml = format!(
        "node_id = \"bench\"\ndatabase = \"{db}\"\nmetrics_addr = \"127.0.0.1:0\"\n\
         [models.runtime]\nintra_threads = {threads}\n[detector]\nmodel = \"{model}\"\n\
         [[cameras]]\ncamera = \"bench\"\nsource = \"{video}\"\nrealtime = false\nloop_file = false\n\
         queue_policy = \"block\"\nqueue_capacity = 4\n",
        db = db.display(),
        threads = args.threads,
        model = args.model,
        video = args.video.display()
    );
    let config = EdgeConfig::parse(&toml, "bench pipeline")?;
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
    let mean_inf = metrics.inference.mean();
    let _ = std::fs::remove_file(&db);
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }

    // The bound: the same model file, inference only, batch 1, same threads.
    let factory = factory(args.threads)?;
    let mut det = vidar_detectors::SsdConfig {
        model: args.model.clone(),
        ..Default::default()
    }
    .build(&factory)
    .context("building the detector for the bound")?;
    for _ in 0..5 {
        det.run_inference_only(1)?;
    }
    let mut total = Duration::ZERO;
    for _ in 0..args.iterations {
        total += det.run_inference_only(1)?;
    }
    let bound_fps = args.iterations as f64 / total.as_secs_f64();
    let fps = frames as f64 / wall.as_secs_f64();
    println!();
    println!("## Pipeline benchmark: one stream as fast as it goes (`vidar-edge bench pipeline`)");
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| video | {} ({frames} frames, {dropped} dropped) |",
        args.video.display()
    );
    println!(
        "| model | {} (ONNX Runtime CPU, intra threads {}) |",
        args.model, args.threads
    );
    println!("| pipeline frames/s (ingest + detect + track + re-ID + SQLite) | {fps:.1} |");
    println!("| inference-only frames/s, batch 1 (bound) | {bound_fps:.1} |");
    println!(
        "| **ratio pipeline / inference-only** | **{:.3}** |",
        fps / bound_fps
    );
    println!(
        "| mean detector inference inside the pipeline, ms | {:.2} |",
        mean_inf * 1000.0
    );
    println!(
        "| identities minted | {} |",
        metrics.identities.load(Ordering::Relaxed)
    );
    println!(
        "| crops embedded | {} |",
        metrics.crops.load(Ordering::Relaxed)
    );
    println!(
        "| records submitted | {} |",
        metrics.records_submitted.load(Ordering::Relaxed)
    );
    Ok(())
}
