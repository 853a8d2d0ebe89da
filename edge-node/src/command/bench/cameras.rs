//! `vidar-edge bench cameras`: four cameras at once, Vidar against the Python
//! reference a user would deploy (issue 5).
//!
//! `vidar-camera` (a child process) plays one video on every mount in real time
//! over RTSP, each from a different offset. Then, on the same camera:
//! 1. Vidar, in this process: one node, its detector threads (`--workers`, each
//!    batching across cameras), `drop_oldest` queues, for `--seconds`
//!    after `--warmup` (once per `--intervals` entry);
//! 2. the reference: one `edge-node/bench/reference_pipeline.py` process per
//!    camera (OpenCV capture + onnxruntime on the same SSD file + norfair), for
//!    the same duration, reporting JSON.
//!
//! Latency is defined identically for both: for frame i of a camera,
//! (result_i - result_first) - (pts_i - pts_first), the delay against the
//! stream clock, first = the camera's first frame of the measured window. It
//! stays flat when a system keeps up and grows when frames queue.

use super::harness::{cpu_seconds, percentile, precision_line, rss, spawn_camera, CameraChild};
use crate::config::EdgeConfig;
use crate::node;
use crate::telemetry::CameraMetrics;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vidar_protocol::StreamState;

/// Arguments of `bench cameras`.
#[derive(Args, Debug)]
pub struct CamerasBenchArgs {
    /// The video every camera plays (default: OpenCV's street video, 10 fps).
    #[arg(
        long,
        default_value = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
    )]
    pub video: PathBuf,
    /// Cameras (mounts of the video at different offsets).
    #[arg(long, default_value_t = 4)]
    pub cameras: usize,
    /// Seconds between two cameras' start offsets in the video.
    #[arg(long, default_value_t = 19.0)]
    pub offset: f64,
    /// Nominal frame rate of the video (for frames dropped from pts gaps).
    #[arg(long, default_value_t = 10.0)]
    pub fps: f64,
    /// Measured seconds, per system.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Seconds each system runs before measuring.
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    /// Vidar runs, one per detection interval (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub intervals: Vec<u32>,
    /// Vidar runs with motion-gated detection off and/or on (`off,on`: both,
    /// in that order, for each interval).
    #[arg(long, value_delimiter = ',', default_value = "off")]
    pub motion: Vec<Toggle>,
    /// Vidar's ONNX Runtime intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Vidar's detector batch limit (frames of different cameras per run). On a
    /// CPU batching adds latency without adding throughput; 4-8 pays on a GPU.
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// Vidar's detector threads (0 = automatic: cores / --threads, one when --threads is 0).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Batches each detector thread takes at once (the node's `inference_depth`; default: the node's).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Detector precision (fp32, int8: the reference too; fp16 with TensorRT; default: float).
    #[arg(long)]
    pub precision: Option<String>,
    /// Vidar's re-ID precision (fp32, int8; default: float; the reference has no re-ID).
    #[arg(long)]
    pub reid_precision: Option<String>,
    /// The reference's onnxruntime intra-op threads per process (0 = its default).
    #[arg(long, default_value_t = 0)]
    pub reference_threads: usize,
    /// Python of the reference (the venv with deploy/requirements.txt).
    #[arg(long, default_value = ".cache/venv/bin/python")]
    pub python: PathBuf,
    /// The reference script.
    #[arg(long, default_value = "edge-node/bench/reference_pipeline.py")]
    pub script: PathBuf,
    /// Skip the reference (Vidar rows only).
    #[arg(long)]
    pub no_reference: bool,
}

/// One system's figures over the measured window.
#[derive(Debug, Default)]
struct Figures {
    frames: u64,
    seconds: f64,
    dropped: u64,
    dropped_pts: u64,
    latency_ms: Vec<f64>,
    /// Latency samples per 30 s of the window (Vidar only), to show it stays flat.
    windows: Vec<Vec<f64>>,
    cpu_seconds: f64,
    rss_bytes: u64,
    peak_rss_bytes: u64,
    persons: Option<u64>,
    /// Crops the re-ID worker embedded in the window (Vidar only): the re-ID
    /// work, which the identity policy sets, read beside the CPU.
    crops: Option<u64>,
    /// Frames the detector ran on in the window (Vidar only).
    detected: Option<u64>,
}

/// `off` or `on`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Toggle {
    /// Off.
    Off,
    /// On.
    On,
}

impl Figures {
    fn fps(&self) -> f64 {
        self.frames as f64 / self.seconds.max(1e-9)
    }
    fn cores(&self) -> f64 {
        self.cpu_seconds / self.seconds.max(1e-9)
    }
}

/// Frames missing between consecutive presentation times at `fps`.
fn pts_gaps(pts_ms: &[f64], fps: f64) -> u64 {
    let step = 1000.0 / fps;
    pts_ms
        .windows(2)
        .map(|w| (((w[1] - w[0]) / step).round() - 1.0).max(0.0) as u64)
        .sum()
}

fn start_camera(args: &CamerasBenchArgs) -> Result<(CameraChild, u16)> {
    let mounts = (0..args.cameras).map(|i| {
        format!(
            "c{i}={}#start={}",
            args.video.display(),
            i as f64 * args.offset
        )
    });
    let child = spawn_camera(mounts)?;
    let port = child.1;
    Ok((child, port))
}

fn url(port: u16, i: usize) -> String {
    format!("rtsp://127.0.0.1:{port}/c{i}")
}

/// Vidar, in this process, for the warm-up and the measured window.
fn run_vidar(args: &CamerasBenchArgs, port: u16, interval: u32, motion: Toggle) -> Result<Figures> {
    let db = std::env::temp_dir().join(format!(
        "vidar-bench-cameras-{}-{interval}.db",
        std::process::id()
    ));
    let mut toml = format!(
        "node_id = \"bench\"\ndatabase = \"{db}\"\nmetrics_addr = \"127.0.0.1:0\"\n\
         detection_interval = {interval}\ninference_workers = {workers}\n{depth}[models.runtime]\nintra_threads = {threads}\n\
         [detector]\nmax_batch = {max_batch}\n{precision}[embedder]\n{reid}[motion]\nenabled = {motion}\n",
        motion = motion == Toggle::On,
        db = db.display(),
        precision = precision_line(args.precision.as_ref()),
        reid = precision_line(args.reid_precision.as_ref()),
        threads = args.threads,
        max_batch = args.max_batch,
        workers = args.workers,
        depth = args
            .depth
            .map(|d| format!("inference_depth = {d}\n"))
            .unwrap_or_default(),
    );
    for i in 0..args.cameras {
        toml.push_str(&format!(
            "[[cameras]]\ncamera = \"c{i}\"\nsource = \"{}\"\ntransport = \"tcp\"\n\
             queue_policy = \"drop_oldest\"\n",
            url(port, i)
        ));
    }
    let config = EdgeConfig::parse(&toml, "bench cameras")?;
    let mut built = node::build(&config)?;
    // Per-frame samples for the latency definition: preallocated, enough for
    // the whole run at 3x the nominal rate.
    let capacity = ((args.warmup + args.seconds + 60) as f64 * args.fps * 3.0) as usize;
    built.cameras.clear();
    for slot in &mut built.analysis.cameras {
        slot.metrics = Arc::new(CameraMetrics::with_samples(capacity));
        built
            .cameras
            .push((slot.source.camera().clone(), Arc::clone(&slot.metrics)));
    }
    let (statuses, cams) = (Arc::clone(&built.statuses), built.cameras.clone());
    let node_metrics = Arc::clone(&built.metrics);
    let stop = vidar_runtime::Shutdown::new();
    let (st, board) = (stop.clone(), Arc::clone(&statuses));
    let analysis = built.analysis;
    let worker = std::thread::Builder::new()
        .name("analysis".into())
        .spawn(move || analysis.run_with_status(&st, &board))?;
    let result = measure_vidar(args, &statuses, &cams, &node_metrics);
    stop.trigger("benchmark done");
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("analysis panicked"))?;
    let _ = std::fs::remove_file(&db);
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    let (window, mut figures) = result?;
    // Latency samples of the window, per camera against its first frame.
    for (_, m) in &cams {
        let samples: Vec<_> = m
            .samples
            .samples()
            .into_iter()
            .filter(|s| s.at >= window.0 && s.at <= window.1)
            .filter_map(|s| s.pts.map(|p| (s.at, p.as_secs_f64() * 1000.0)))
            .collect();
        let Some(&(at0, pts0)) = samples.first() else {
            continue;
        };
        let pts: Vec<f64> = samples.iter().map(|s| s.1).collect();
        figures.dropped_pts += pts_gaps(&pts, args.fps);
        for (at, p) in &samples {
            let l = at.duration_since(at0).as_secs_f64() * 1000.0 - (p - pts0);
            figures.latency_ms.push(l);
            let w = (at.duration_since(window.0).as_secs() / 30) as usize;
            if figures.windows.len() <= w {
                figures.windows.resize(w + 1, Vec::new());
            }
            figures.windows[w].push(l);
        }
    }
    Ok(figures)
}

type Cams = [(vidar_protocol::CameraId, Arc<CameraMetrics>)];

fn measure_vidar(
    args: &CamerasBenchArgs,
    statuses: &crate::telemetry::StatusBoard,
    cams: &Cams,
    node: &crate::telemetry::NodeMetrics,
) -> Result<((Instant, Instant), Figures)> {
    let t = Instant::now();
    loop {
        let snap = statuses.snapshot();
        if snap.len() == args.cameras && snap.iter().all(|(_, s)| s.state == StreamState::Streaming)
        {
            break;
        }
        if let Some((cam, s)) = snap.iter().find(|(_, s)| s.state == StreamState::Failed) {
            bail!("camera {cam} failed: {:?}", s.last_error);
        }
        if t.elapsed() > Duration::from_secs(60) {
            bail!("cameras did not start streaming in 60 s: {snap:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(args.warmup));
    // Ingest counters come from the board, published once a second: both
    // ends of the window are read the same way.
    let counters = |f: &dyn Fn(&vidar_protocol::StreamStatus) -> u64| -> u64 {
        statuses.snapshot().iter().map(|(_, s)| f(s)).sum()
    };
    let analysed = || -> u64 {
        cams.iter()
            .map(|(_, m)| m.analysed.load(Ordering::Relaxed))
            .sum()
    };
    let detected = || -> u64 {
        cams.iter()
            .map(|(_, m)| m.detected.load(Ordering::Relaxed))
            .sum()
    };
    let (dropped0, reconnects0) = (
        counters(&|s| s.counters.dropped),
        counters(&|s| s.counters.reconnects),
    );
    let crops = || node.crops.load(Ordering::Relaxed);
    let (t0, c0, a0, e0, d0) = (
        Instant::now(),
        cpu_seconds(),
        analysed(),
        crops(),
        detected(),
    );
    std::thread::sleep(Duration::from_secs(args.seconds));
    let (t1, c1, a1, e1, d1) = (
        Instant::now(),
        cpu_seconds(),
        analysed(),
        crops(),
        detected(),
    );
    let (rss_bytes, peak_rss_bytes) = rss();
    let dropped = counters(&|s| s.counters.dropped).saturating_sub(dropped0);
    let reconnects = counters(&|s| s.counters.reconnects).saturating_sub(reconnects0);
    if reconnects > 0 {
        eprintln!("warning: {reconnects} reconnects during the window");
    }
    Ok((
        (t0, t1),
        Figures {
            frames: a1 - a0,
            seconds: (t1 - t0).as_secs_f64(),
            dropped,
            cpu_seconds: c1 - c0,
            rss_bytes,
            peak_rss_bytes,
            crops: Some(e1.saturating_sub(e0)),
            detected: Some(d1.saturating_sub(d0)),
            ..Figures::default()
        },
    ))
}

/// One reference process per camera, all at once; their JSON reports summed.
fn run_reference(args: &CamerasBenchArgs, port: u16) -> Result<Figures> {
    let dir = std::env::temp_dir().join(format!("vidar-bench-ref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut children = Vec::with_capacity(args.cameras);
    for i in 0..args.cameras {
        let out = dir.join(format!("c{i}.json"));
        let child = Command::new(&args.python)
            .arg(&args.script)
            .args(["--url", &url(port, i)])
            .args(["--seconds", &args.seconds.to_string()])
            .args(["--warmup", &args.warmup.to_string()])
            .args(["--threads", &args.reference_threads.to_string()])
            .args(["--fps", &args.fps.to_string()])
            .args((args.precision.as_deref() == Some("int8")).then_some("--int8"))
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} {}",
                    args.python.display(),
                    args.script.display()
                )
            })?;
        children.push((ChildGuard(child), out));
    }
    let deadline = Instant::now() + Duration::from_secs(args.warmup + args.seconds + 180);
    let mut figures = Figures {
        persons: Some(0),
        ..Figures::default()
    };
    let mut seconds = Vec::new();
    for (mut child, out) in children {
        let status = loop {
            if let Some(s) = child.0.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                bail!("a reference process did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if !status.success() {
            bail!("reference process for {} failed: {status}", out.display());
        }
        let r = read_report(&out, args.fps)?;
        seconds.push(r.seconds);
        figures.frames += r.frames;
        figures.dropped += r.dropped;
        figures.dropped_pts += r.dropped_pts;
        figures.latency_ms.extend(r.latency_ms);
        figures.cpu_seconds += r.cpu_seconds;
        figures.rss_bytes += r.rss_bytes;
        figures.peak_rss_bytes += r.peak_rss_bytes;
        figures.persons = figures.persons.zip(r.persons).map(|(a, b)| a + b);
    }
    let _ = std::fs::remove_dir_all(&dir);
    // Windows start within a second of each other; frames/s and cores are
    // sums of per-process rates, so take the mean window.
    let mean = seconds.iter().sum::<f64>() / seconds.len().max(1) as f64;
    figures.seconds = mean;
    Ok(figures)
}

/// Kills a reference process that is still running on an early return.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn read_report(path: &Path, fps: f64) -> Result<Figures> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let num = |key: &str| -> Result<f64> {
        v.get(key)
            .and_then(serde_json::Value::as_f64)
            .with_context(|| format!("{}: no number {key:?}", path.display()))
    };
    let list = |key: &str| -> Result<Vec<f64>> {
        v.get(key)
            .and_then(serde_json::Value::as_array)
            .with_context(|| format!("{}: no list {key:?}", path.display()))?
            .iter()
            .map(|x| {
                x.as_f64()
                    .with_context(|| format!("{}: {key} holds a non-number", path.display()))
            })
            .collect()
    };
    let pts = list("pts_ms")?;
    Ok(Figures {
        frames: num("frames")? as u64,
        seconds: num("seconds")?,
        dropped: num("dropped")? as u64,
        dropped_pts: pts_gaps(&pts, fps),
        latency_ms: list("latency_ms")?,
        windows: Vec::new(),
        cpu_seconds: num("cpu_seconds")?,
        rss_bytes: num("rss_bytes").unwrap_or(0.0) as u64,
        peak_rss_bytes: num("peak_rss_bytes")? as u64,
        persons: num("persons_detected").ok().map(|p| p as u64),
        crops: None,
        detected: None,
    })
}

/// `bench cameras`.
pub fn cameras(args: CamerasBenchArgs) -> Result<()> {
    if !args.video.is_file() {
        bail!(
            "no video at {} (install opencv-doc or pass --video)",
            args.video.display()
        );
    }
    if args.cameras == 0 || args.seconds == 0 || !args.fps.is_finite() || args.fps <= 0.0 {
        bail!("--cameras, --seconds and --fps must be positive");
    }
    let have_reference = args.python.is_file() && args.script.is_file();
    if !args.no_reference && !have_reference {
        bail!(
            "the reference needs {} and {} (run from the repository root after `make setup`, \
             or pass --python/--script, or --no-reference)",
            args.python.display(),
            args.script.display()
        );
    }
    vidar_pipeline::init()?;
    let (camera, port) = start_camera(&args)?;
    let mut rows = Vec::new();
    for &interval in &args.intervals {
        for &motion in &args.motion {
            eprintln!(
                "Vidar, detection interval {interval}, motion gating {motion:?}: {} s warm-up + {} s ...",
                args.warmup, args.seconds
            );
            let f = run_vidar(&args, port, interval, motion)?;
            eprintln!("  {:.1} frames/s, {} dropped", f.fps(), f.dropped);
            let gated = if motion == Toggle::On {
                ", motion-gated"
            } else {
                ""
            };
            rows.push((
                format!("Vidar, one node, detection every {}{gated}", nth(interval)),
                f,
            ));
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    let reference = if args.no_reference {
        None
    } else {
        eprintln!(
            "reference: {} Python processes, {} s warm-up + {} s ...",
            args.cameras, args.warmup, args.seconds
        );
        let f = run_reference(&args, port)?;
        eprintln!("  {:.1} frames/s, {} dropped", f.fps(), f.dropped);
        Some(f)
    };
    drop(camera);
    print_table(&args, &mut rows, reference);
    Ok(())
}

fn nth(interval: u32) -> String {
    match interval {
        1 => "frame".into(),
        2 => "2nd frame".into(),
        3 => "3rd frame".into(),
        n => format!("{n}th frame"),
    }
}

fn print_table(
    args: &CamerasBenchArgs,
    rows: &mut [(String, Figures)],
    reference: Option<Figures>,
) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let n = args.cameras;
    println!();
    println!(
        "## {n} cameras at once vs the Python reference (`vidar-edge bench cameras`, {} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!(
        "{n} x `{}` over RTSP/TCP from `vidar-camera`, {:.0} fps each ({:.0} frames/s offered), \
         {} s measured after {} s warm-up per system.",
        args.video.file_name().map_or_else(
            || args.video.display().to_string(),
            |f| f.to_string_lossy().into_owned()
        ),
        args.fps,
        args.fps * n as f64,
        args.seconds,
        args.warmup
    );
    println!();
    println!("| system | analysed frames/s (all cameras) | frames dropped (counter / pts gaps) | latency p50 / p99, ms | CPU cores | RSS end / peak, MiB |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut lines = Vec::new();
    let mut line = |name: &str, f: &mut Figures| {
        let (p50, p99) = (
            percentile(&mut f.latency_ms, 0.5),
            percentile(&mut f.latency_ms, 0.99),
        );
        println!(
            "| {name} | {:.1} | {} / {} | {p50:.0} / {p99:.0} | {:.2} | {:.0} / {:.0} |",
            f.fps(),
            f.dropped,
            f.dropped_pts,
            f.cores(),
            mib(f.rss_bytes),
            mib(f.peak_rss_bytes)
        );
        lines.push((f.fps(), p50, p99, f.cores(), f.rss_bytes));
    };
    for (name, f) in rows.iter_mut() {
        line(name, f);
    }
    // After the table, so it stays one Markdown table.
    let mut windows = Vec::new();
    for (name, f) in rows.iter_mut() {
        if f.windows.len() > 1 {
            let p99s: Vec<String> = f
                .windows
                .iter_mut()
                .map(|w| format!("{:.0}", percentile(w, 0.99)))
                .collect();
            windows.push(format!(
                "{name}: p99 latency per 30 s of the window, ms: {}",
                p99s.join(" / ")
            ));
        }
        if let Some(d) = f.detected {
            windows.push(format!(
                "{name}: detector calls in the window: {d} ({:.1}/s, {:.1} % of the frames analysed)",
                d as f64 / f.seconds.max(1e-9),
                100.0 * d as f64 / f.frames.max(1) as f64
            ));
        }
        if let Some(c) = f.crops {
            windows.push(format!(
                "{name}: re-ID crops embedded in the window: {c} ({:.1}/s)",
                c as f64 / f.seconds.max(1e-9)
            ));
        }
    }
    let print_windows = |windows: &[String]| {
        for w in windows {
            println!();
            println!("{w}");
        }
    };
    let Some(mut r) = reference else {
        print_windows(&windows);
        return;
    };
    line(
        &format!("Python reference, {n} processes (OpenCV + onnxruntime + norfair)"),
        &mut r,
    );
    let Some(&(rf, r50, r99, rc, rr)) = lines.last() else {
        return;
    };
    for (i, (name, _)) in rows.iter().enumerate() {
        let Some(&(vf, v50, v99, vc, vr)) = lines.get(i) else {
            continue;
        };
        println!(
            "| **ratio {} / reference** | **{:.2}x** | | {:.2}x / **{:.2}x** | {:.2}x | {:.2}x (end) |",
            name.trim_start_matches("Vidar, one node, "),
            vf / rf.max(1e-9),
            v50 / r50,
            v99 / r99,
            vc / rc.max(1e-9),
            vr as f64 / (rr as f64).max(1.0)
        );
    }
    if let Some(&(vf, _, v99, _, _)) = lines.first() {
        let fr = vf / rf.max(1e-9);
        let lr = v99 / r99;
        println!();
        println!(
            "Goals (detection every frame): analysed frames/s >= 1.5x the reference: {:.2}x, {}; \
             p99 latency <= 0.5x the reference: {:.2}x, {}.",
            fr,
            if fr >= 1.5 { "met" } else { "missed" },
            lr,
            if lr <= 0.5 { "met" } else { "missed" }
        );
    }
    if let Some(p) = r.persons {
        println!(
            "Reference person detections in the window: {p} ({:.1} per frame).",
            p as f64 / r.frames.max(1) as f64
        );
    }
    print_windows(&windows);
}
