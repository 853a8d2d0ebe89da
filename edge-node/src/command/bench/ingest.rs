//! `vidar-edge bench ingest`: whole-system ingest figures, printed as a table.
//!
//! Two measurements in one run, each against its bound on the same machine:
//! 1. Throughput: decode a 1080p30 H.264 clip as fast as possible through
//!    Vidar's ingest (appsink -> frame queue -> consumer thread) and through the
//!    same GStreamer pipeline ending in `fakesink`. Runs alternate, median of
//!    `--rounds`.
//! 2. Real time: `--streams` 1080p30 RTSP streams from `vidar-camera`
//!    (passthrough of the same clip, so the camera spends almost nothing) ingested
//!    for `--seconds`; CPU per stream, capture-to-consumer latency, and the number
//!    of such streams one core can ingest, again against fakesink pipelines.

use super::harness::{cpu_seconds, percentile, spawn_camera};
use anyhow::{bail, Context, Result};
use clap::Args;
use gstreamer::prelude::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vidar_pipeline::camera::encode_scene_to_file;
use vidar_pipeline::{build::build_bound, Ingest, IngestConfig, SceneSpec, Transport};
use vidar_protocol::{CameraId, StreamState};

/// Arguments of `bench ingest`.
#[derive(Args, Debug)]
pub struct IngestBenchArgs {
    /// Frame width of the test clip.
    #[arg(long, default_value_t = 1920)]
    pub width: u32,
    /// Frame height of the test clip.
    #[arg(long, default_value_t = 1080)]
    pub height: u32,
    /// Frames in the test clip (at 30 fps).
    #[arg(long, default_value_t = 300)]
    pub frames: u64,
    /// Alternating rounds of the throughput test (median reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Real-time RTSP streams ingested at once.
    #[arg(long, default_value_t = 2)]
    pub streams: usize,
    /// Seconds of the real-time test, per side.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Where the test clip is cached.
    #[arg(long, default_value = ".cache/bench")]
    pub cache: PathBuf,
}

fn clip(args: &IngestBenchArgs) -> Result<PathBuf> {
    std::fs::create_dir_all(&args.cache)
        .with_context(|| format!("creating {}", args.cache.display()))?;
    let path = args.cache.join(format!(
        "synthetic-{}x{}-{}f.mkv",
        args.width, args.height, args.frames
    ));
    if !path.is_file() {
        let spec = SceneSpec {
            width: args.width,
            height: args.height,
            fps: 30,
            seed: 11,
            people: 6,
            switch_every: None,
        };
        eprintln!("encoding the test clip {} ...", path.display());
        encode_scene_to_file(&spec, args.frames, &path).context("encoding the test clip")?;
    }
    Ok(path)
}

struct Run {
    frames: u64,
    wall: f64,
    cpu: f64,
}

fn file_config(path: &Path) -> Result<IngestConfig> {
    let mut cfg = IngestConfig::new(CameraId::new("bench")?, path.to_string_lossy());
    cfg.realtime = false;
    cfg.loop_file = false;
    cfg.queue_capacity = 32;
    Ok(cfg)
}

fn run_vidar_file(path: &Path) -> Result<Run> {
    let cfg = file_config(path)?;
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let ingest = Ingest::start(cfg)?;
    let mut frames = 0u64;
    let mut checksum = 0u64;
    loop {
        if let Some(f) = ingest.recv_timeout(Duration::from_millis(20)) {
            frames += 1;
            checksum = checksum.wrapping_add(u64::from(f.pixels()[f.pixels().len() / 2]));
            continue;
        }
        let st = ingest.status();
        if matches!(st.state, StreamState::Stopped | StreamState::Failed)
            && ingest.try_recv().is_none()
        {
            if st.state == StreamState::Failed {
                bail!("ingest failed: {:?}", st.last_error);
            }
            break;
        }
    }
    let run = Run {
        frames,
        wall: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c0,
    };
    ingest.stop();
    std::hint::black_box(checksum);
    Ok(run)
}

fn run_bound_pipeline(pipeline: &gstreamer::Pipeline, until: Option<Duration>) -> Result<()> {
    pipeline.set_state(gstreamer::State::Playing)?;
    let bus = pipeline.bus().context("pipeline without bus")?;
    let start = Instant::now();
    let result = loop {
        if until.is_some_and(|d| start.elapsed() >= d) {
            break Ok(());
        }
        let Some(msg) = bus.timed_pop(gstreamer::ClockTime::from_mseconds(50)) else {
            continue;
        };
        match msg.view() {
            gstreamer::MessageView::Eos(_) => break Ok(()),
            gstreamer::MessageView::Error(e) => {
                break Err(anyhow::anyhow!("bound pipeline: {}", e.error()))
            }
            _ => {}
        }
    };
    pipeline.set_state(gstreamer::State::Null)?;
    result
}

fn run_bound_file(path: &Path, frames: u64) -> Result<Run> {
    let pipeline = build_bound(&file_config(path)?)?;
    let (t0, c0) = (Instant::now(), cpu_seconds());
    run_bound_pipeline(&pipeline, None)?;
    Ok(Run {
        frames,
        wall: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - c0,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

struct LiveRun {
    fps: f64,
    cpu_cores: f64,
    p50_ms: f64,
    p99_ms: f64,
    dropped: u64,
}

fn rtsp_config(port: u16, i: usize) -> Result<IngestConfig> {
    let mut cfg = IngestConfig::new(
        CameraId::new(&format!("s{i}"))?,
        format!("rtsp://127.0.0.1:{port}/s{i}"),
    );
    cfg.transport = Transport::Tcp;
    Ok(cfg)
}

fn live_vidar(port: u16, streams: usize, secs: u64) -> Result<LiveRun> {
    let ingests: Vec<Ingest> = (0..streams)
        .map(|i| Ok(Ingest::start(rtsp_config(port, i)?)?))
        .collect::<Result<_>>()?;
    // Warm up until every stream flows.
    let warm = Instant::now();
    while ingests
        .iter()
        .any(|g| g.status().state != StreamState::Streaming)
    {
        for g in &ingests {
            while g.try_recv().is_some() {}
        }
        if warm.elapsed() > Duration::from_secs(20) {
            bail!(
                "streams did not start: {:?}",
                ingests.iter().map(|g| g.status()).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(1));
    let frames0: u64 = ingests.iter().map(|g| g.status().counters.frames).sum();
    let dropped0: u64 = ingests.iter().map(|g| g.status().counters.dropped).sum();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let mut ages = Vec::with_capacity(secs as usize * 30 * streams);
    while t0.elapsed() < Duration::from_secs(secs) {
        let mut got = false;
        for g in &ingests {
            if let Some(f) = g.try_recv() {
                ages.push(f.age().as_secs_f64() * 1000.0);
                got = true;
            }
        }
        if !got {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - c0;
    let frames: u64 = ingests
        .iter()
        .map(|g| g.status().counters.frames)
        .sum::<u64>()
        - frames0;
    let dropped: u64 = ingests
        .iter()
        .map(|g| g.status().counters.dropped)
        .sum::<u64>()
        - dropped0;
    for g in ingests {
        g.stop();
    }
    Ok(LiveRun {
        fps: frames as f64 / wall,
        cpu_cores: cpu / wall,
        p50_ms: percentile(&mut ages, 0.5),
        p99_ms: percentile(&mut ages, 0.99),
        dropped,
    })
}

fn live_bound(port: u16, streams: usize, secs: u64) -> Result<f64> {
    let pipes: Vec<_> = (0..streams)
        .map(|i| Ok(build_bound(&rtsp_config(port, i)?)?))
        .collect::<Result<_>>()?;
    for p in &pipes {
        p.set_state(gstreamer::State::Playing)?;
    }
    std::thread::sleep(Duration::from_secs(3));
    let (t0, c0) = (Instant::now(), cpu_seconds());
    std::thread::sleep(Duration::from_secs(secs));
    let cores = (cpu_seconds() - c0) / t0.elapsed().as_secs_f64();
    for p in &pipes {
        p.set_state(gstreamer::State::Null)?;
    }
    Ok(cores)
}

/// Runs `bench ingest`.
pub fn ingest(args: IngestBenchArgs) -> Result<()> {
    vidar_pipeline::init()?;
    let clip = clip(&args)?;
    let (mut ours, mut bound) = (Vec::new(), Vec::new());
    let (mut ours_cpu, mut bound_cpu) = (Vec::new(), Vec::new());
    for round in 0..args.rounds.max(1) {
        let b = run_bound_file(&clip, args.frames)?;
        let v = run_vidar_file(&clip)?;
        if v.frames != args.frames {
            bail!(
                "round {round}: Vidar delivered {} of {} frames",
                v.frames,
                args.frames
            );
        }
        eprintln!(
            "round {round}: vidar {:.1} fps, fakesink {:.1} fps",
            v.frames as f64 / v.wall,
            b.frames as f64 / b.wall
        );
        ours.push(v.frames as f64 / v.wall);
        bound.push(b.frames as f64 / b.wall);
        ours_cpu.push(v.cpu / v.frames as f64 * 1000.0);
        bound_cpu.push(b.cpu / b.frames as f64 * 1000.0);
    }
    let (fo, fb) = (median(ours), median(bound));
    let cam = spawn_camera((0..args.streams).map(|i| format!("s{i}={}", clip.display())))?;
    let live = live_vidar(cam.1, args.streams, args.seconds)?;
    let live_b = live_bound(cam.1, args.streams, args.seconds)?;
    drop(cam);
    let per_stream = live.cpu_cores / args.streams as f64;
    let per_stream_b = live_b / args.streams as f64;
    let (w, h) = (args.width, args.height);
    println!();
    println!(
        "## Ingest benchmark: {w}x{h} H.264, `vidar-edge bench ingest` ({} cores)",
        num_cpus()
    );
    println!();
    println!("| measure | Vidar ingest | same pipeline -> fakesink (bound) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| decode throughput, frames/s (median of {}) | {fo:.1} | {fb:.1} | {:.3} |",
        args.rounds,
        fo / fb
    );
    println!(
        "| CPU per frame, ms (median) | {:.2} | {:.2} | {:.3} |",
        median(ours_cpu.clone()),
        median(bound_cpu.clone()),
        median(ours_cpu) / median(bound_cpu).max(1e-9)
    );
    println!(
        "| {}x RTSP {w}x{h}@30 real time: CPU cores per stream | {per_stream:.3} | {per_stream_b:.3} | {:.3} |",
        args.streams,
        per_stream / per_stream_b.max(1e-9)
    );
    println!(
        "| streams of {w}x{h}@30 one core can ingest | {:.1} | {:.1} | |",
        1.0 / per_stream.max(1e-9),
        1.0 / per_stream_b.max(1e-9)
    );
    println!(
        "| real time: delivered frames/s (all streams) | {:.1} | | |",
        live.fps
    );
    println!(
        "| real time: capture-to-consumer latency p50 / p99, ms | {:.1} / {:.1} | | |",
        live.p50_ms, live.p99_ms
    );
    println!("| real time: frames dropped | {} | | |", live.dropped);
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
