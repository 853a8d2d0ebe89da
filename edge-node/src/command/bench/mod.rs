//! `vidar-edge bench`: whole-system benchmarks that print a table.

mod agreement;
pub mod cameras;
pub mod capacity;
mod file_run;
pub mod harness;
pub mod ingest;
mod load;
pub mod pipeline;
mod site;
pub mod trajectories;

use anyhow::Result;
use clap::{Args, Subcommand};

/// Arguments of `bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

/// Which benchmark.
#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Ingest throughput and CPU per 1080p30 stream, against fakesink bounds.
    Ingest(ingest::IngestBenchArgs),
    /// One stream through the whole node as fast as it goes, against the
    /// detector's inference-only rate on the same model file.
    Pipeline(pipeline::PipelineBenchArgs),
    /// Detector inference-only frames/s at batch 1/4/8 (the node's capacity profile).
    Detect(pipeline::ModelBenchArgs),
    /// Re-ID inference-only crops/s at batch 1/4/8.
    Reid(pipeline::ModelBenchArgs),
    /// Four real-time cameras: Vidar against one Python process per camera.
    Cameras(cameras::CamerasBenchArgs),
    /// Cameras each system sustains in real time (Vidar fp32, int8, int8 +
    /// motion gating; the Python reference fp32 and int8).
    Capacity(capacity::CapacityBenchArgs),
    /// Identity accuracy from pixels to trajectory on a composite scene with ground truth.
    Trajectories(trajectories::TrajectoriesBenchArgs),
}

/// Runs the chosen benchmark.
pub fn run(args: BenchArgs) -> Result<()> {
    match args.what {
        BenchWhat::Ingest(a) => ingest::ingest(a),
        BenchWhat::Pipeline(a) => pipeline::pipeline(a),
        BenchWhat::Detect(a) => pipeline::detect(a),
        BenchWhat::Reid(a) => pipeline::reid(a),
        BenchWhat::Cameras(a) => cameras::cameras(a),
        BenchWhat::Capacity(a) => capacity::capacity(a),
        BenchWhat::Trajectories(a) => trajectories::trajectories(a),
    }
}
