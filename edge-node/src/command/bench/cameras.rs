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
//! Latency is defined identically for both: from the moment the test camera
//! sends a frame to its result, on the machine's monotonic clock
//! ([`super::load::sent_to_result_ms`]). The cameras send on fixed schedules,
//! spread over the frame period ([`super::load::phase_s`]).

use super::harness::{
    box_cpu_seconds, cpu_seconds, monotonic_ms, percentile, precision_line, rss, spawn_camera,
    CameraChild,
};
use super::load::{phase_s, pts_gaps, run_reference, sent_to_result_ms, url, Figures};
pub use super::load::{CamerasBenchArgs, Toggle};
use crate::config::EdgeConfig;
use crate::node;
use crate::telemetry::CameraMetrics;
use anyhow::{bail, Result};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vidar_protocol::StreamState;

pub(super) fn start_camera(args: &CamerasBenchArgs) -> Result<(CameraChild, u16)> {
    let mounts = (0..args.cameras).map(|i| {
        format!(
            "c{i}={}#start={}#phase={:.6}",
            args.video.display(),
            i as f64 * args.offset,
            phase_s(i, args.fps),
        )
    });
    let child = spawn_camera(mounts)?;
    let port = child.1;
    Ok((child, port))
}

/// Vidar, in this process, for the warm-up and the measured window.
pub(super) fn run_vidar(
    args: &CamerasBenchArgs,
    port: u16,
    interval: u32,
    motion: Toggle,
    adaptive: Toggle,
) -> Result<Figures> {
    let db = std::env::temp_dir().join(format!(
        "vidar-bench-cameras-{}-{interval}.db",
        std::process::id()
    ));
    let mut toml = format!(
        "node_id = \"bench\"\ndatabase = \"{db}\"\nmetrics_addr = \"127.0.0.1:0\"\n\
         detection_interval = {interval}\ninference_workers = {workers}\n{depth}[models.runtime]\nintra_threads = {threads}\n\
         [detector]\n{max_batch}{model}{precision}[embedder]\n{reid}[motion]\nenabled = {motion}\n{track_skip}\
         [detection_rate]\nadaptive = {adaptive}\n",
        track_skip = args
            .track_skip
            .map(|k| format!("track_skip = {k}\n"))
            .unwrap_or_default(),
        motion = motion == Toggle::On,
        adaptive = adaptive == Toggle::On,
        db = db.display(),
        precision = precision_line(args.precision.as_ref()),
        model = args
            .detector_model
            .as_ref()
            .map(|m| format!("model = \"{m}\"\n"))
            .unwrap_or_default(),
        reid = precision_line(args.reid_precision.as_ref()),
        threads = args.threads,
        max_batch = args
            .max_batch
            .map(|b| format!("max_batch = {b}\n"))
            .unwrap_or_default(),
        workers = args.workers,
        depth = args
            .depth
            .map(|d| format!("inference_depth = {d}\n"))
            .unwrap_or_default(),
    );
    for i in 0..args.cameras {
        toml.push_str(&format!(
            "[[cameras]]\ncamera = \"c{i}\"\nsource = \"{}\"\ntransport = \"tcp\"\n\
             queue_policy = \"drop_oldest\"\n{}{}{}",
            url(port, i),
            args.queue_capacity
                .map(|q| format!("queue_capacity = {q}\n"))
                .unwrap_or_default(),
            args.decoder_threads
                .map(|t| format!("decoder_threads = {t}\n"))
                .unwrap_or_default(),
            args.pixels.toml_line(),
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
    super::harness::remove_db(&db);
    let (window, mut figures) = result?;
    // Latency samples of the window, per camera against its send schedule.
    for (i, (_, m)) in cams.iter().enumerate() {
        let samples: Vec<_> = m
            .samples
            .samples()
            .into_iter()
            .filter(|s| s.at >= window.0 && s.at <= window.1)
            .filter_map(|s| s.pts.map(|p| (s.at, p.as_secs_f64() * 1000.0)))
            .collect();
        let pts: Vec<f64> = samples.iter().map(|s| s.1).collect();
        let done: Vec<f64> = samples.iter().map(|s| monotonic_ms(s.0)).collect();
        figures.dropped_pts += pts_gaps(&pts, args.fps);
        let latency = sent_to_result_ms(
            &done,
            &pts,
            phase_s(i, args.fps) * 1000.0,
            1000.0 / args.fps,
        );
        for ((at, _), l) in samples.iter().zip(latency) {
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
    let stalls = || node.analysis_stalls.load(Ordering::Relaxed);
    node.take_longest_pass();
    let (t0, c0, a0, e0, d0, b0, s0) = (
        Instant::now(),
        cpu_seconds(),
        analysed(),
        crops(),
        detected(),
        box_cpu_seconds(),
        stalls(),
    );
    std::thread::sleep(Duration::from_secs(args.seconds));
    let (t1, c1, a1, e1, d1, b1, s1) = (
        Instant::now(),
        cpu_seconds(),
        analysed(),
        crops(),
        detected(),
        box_cpu_seconds(),
        stalls(),
    );
    let longest = node.take_longest_pass();
    let window = (t1 - t0).as_secs_f64().max(1e-9);
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
            box_cores: b0
                .zip(b1)
                .map(|(b0, b1)| ((b1.0 - b0.0) / window, (b1.1 - b0.1) / window)),
            analysis_stalls: Some((longest.as_secs_f64() * 1000.0, s1.saturating_sub(s0))),
            ..Figures::default()
        },
    ))
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
            for &adaptive in &args.adaptive {
                eprintln!(
                    "Vidar, detection interval {interval}, motion gating {motion:?}, adaptive rates {adaptive:?}: {} s warm-up + {} s ...",
                    args.warmup, args.seconds
                );
                let f = run_vidar(&args, port, interval, motion, adaptive)?;
                eprintln!(
                    "  {:.1} frames/s, {} dropped{}",
                    f.fps(),
                    f.dropped,
                    box_and_stalls(&f)
                        .map(|s| format!("; {s}"))
                        .unwrap_or_default()
                );
                let gated = if motion == Toggle::On {
                    ", motion-gated"
                } else {
                    ""
                };
                let adapted = if adaptive == Toggle::On {
                    ", adaptive rates"
                } else {
                    ""
                };
                rows.push((
                    format!(
                        "Vidar, one node, detection every {}{gated}{adapted}",
                        nth(interval)
                    ),
                    f,
                ));
                std::thread::sleep(Duration::from_secs(2));
            }
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

/// The box's load and the analysis loop's stalls in a window (None for
/// the reference, which does not measure them).
pub(super) fn box_and_stalls(f: &Figures) -> Option<String> {
    let parts: Vec<String> = [
        f.box_cores
            .map(|(busy, steal)| format!("box {busy:.2} cores busy, {steal:.2} stolen")),
        f.analysis_stalls.map(|(longest, n)| {
            format!("longest analysis pass {longest:.0} ms, {n} of 100 ms or more")
        }),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}
