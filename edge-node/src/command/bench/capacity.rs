//! `vidar-edge bench capacity`: how many real-time cameras each system
//! sustains on this box.
//!
//! Every probe is one `bench cameras` run at N cameras (the same
//! `vidar-camera` child playing vtest.avi on N mounts at different offsets,
//! the same warm-up and window, the same latency definition). A system
//! sustains N when, over the window, it analysed at least 99 % of the
//! offered frames, lost at most 0.1 % of them (its drop counter plus gaps
//! in the presentation times it analysed) and kept p99 capture-to-result
//! latency under `--p99-ms`. Its capacity is the largest N it sustains: each
//! system doubles N from `--start` until it fails, then bisects down to one
//! camera. The systems take turns probe by probe (A, B, C, A, B, C, ...), so
//! a noisy stretch of the shared machine falls on all of them, not on one.
//!
//! Systems: Vidar with the float SSD, with the int8 SSD, and with the int8
//! SSD and motion-gated detection (re-ID float in all three, the node's
//! default); the Python reference with the float SSD and with the int8 SSD
//! (so a gain is not only the model file's).
//!
//! Before the search, each system's detection agreement: what it reports
//! frame by frame over one pass of the video, against the same system with
//! the float SSD on every frame (`agreement`).

use super::agreement::{self, Agreement, Frames, VidarRun};
use super::cameras::{run_vidar, start_camera, CamerasBenchArgs, Toggle};
use super::harness::percentile;
use super::load::{run_reference, Figures};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `bench capacity`.
#[derive(Args, Debug)]
pub struct CapacityBenchArgs {
    /// The video every camera plays (default: OpenCV's street video, 10 fps).
    #[arg(
        long,
        default_value = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"
    )]
    pub video: PathBuf,
    /// Systems to measure, comma-separated (default: all five).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "vidar-fp32,vidar-int8,vidar-int8-motion,reference-fp32,reference-int8"
    )]
    pub systems: Vec<System>,
    /// Cameras of the first probe.
    #[arg(long, default_value_t = 4)]
    pub start: usize,
    /// Most cameras probed.
    #[arg(long, default_value_t = 48)]
    pub max: usize,
    /// Measured seconds per probe.
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Seconds each probe runs before measuring.
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    /// p99 capture-to-result latency a sustained count stays under, ms.
    #[arg(long, default_value_t = 500.0)]
    pub p99_ms: f64,
    /// Seconds between two cameras' start offsets in the video.
    #[arg(long, default_value_t = 19.0)]
    pub offset: f64,
    /// Nominal frame rate of the video.
    #[arg(long, default_value_t = 10.0)]
    pub fps: f64,
    /// Vidar's ONNX Runtime intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Vidar's detector batch limit, frames of different cameras per run
    /// (default: the node's, which follows the precision: 4 for int8, 1 for
    /// float on a CPU).
    #[arg(long)]
    pub max_batch: Option<usize>,
    /// Vidar int8 + gating: frames in a row the tracker may predict over
    /// when only tracked people move along their paths (`[motion]
    /// track_skip`; default: the node's).
    #[arg(long)]
    pub track_skip: Option<u32>,
    /// Vidar's re-ID precision (fp32, int8; default: the node's default,
    /// float). The reference runs no re-ID at all.
    #[arg(long)]
    pub reid_precision: Option<String>,
    /// Vidar's detector model (a manifest name; default: the node's).
    #[arg(long, value_parser = super::load::model_name)]
    pub detector_model: Option<String>,
    /// Frames each of Vidar's camera queues holds before dropping the oldest
    /// (default: the node's `queue_capacity`).
    #[arg(long)]
    pub queue_capacity: Option<usize>,
    /// Vidar's cameras' pixel layout (`pixel_format`; auto: I420 from the decoder).
    #[arg(long, value_enum, default_value_t = super::pipeline::Pixels::Auto)]
    pub pixels: super::pipeline::Pixels,
    /// The reference's onnxruntime intra-op threads per process.
    #[arg(long, default_value_t = 1)]
    pub reference_threads: usize,
    /// Python of the reference (the venv with deploy/requirements.txt).
    #[arg(long, default_value = ".cache/venv/bin/python")]
    pub python: PathBuf,
    /// The reference script.
    #[arg(long, default_value = "edge-node/bench/reference_pipeline.py")]
    pub script: PathBuf,
    /// Skip the detection-agreement pass.
    #[arg(long, conflicts_with = "agreement_only")]
    pub no_agreement: bool,
    /// Only the detection-agreement pass (no capacity search).
    #[arg(long)]
    pub agreement_only: bool,
}

/// A system `bench capacity` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// Vidar, float SSD.
    VidarFp32,
    /// Vidar, int8 SSD.
    VidarInt8,
    /// Vidar, int8 SSD, motion-gated detection.
    VidarInt8Motion,
    /// The Python reference, float SSD.
    ReferenceFp32,
    /// The Python reference, int8 SSD.
    ReferenceInt8,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::VidarFp32 => "Vidar, fp32 SSD",
            System::VidarInt8 => "Vidar, int8 SSD",
            System::VidarInt8Motion => "Vidar, int8 SSD + motion gating",
            System::ReferenceFp32 => "Python reference, fp32 SSD",
            System::ReferenceInt8 => "Python reference, int8 SSD",
        }
    }

    fn int8(self) -> bool {
        !matches!(self, System::VidarFp32 | System::ReferenceFp32)
    }

    fn vidar(self) -> bool {
        matches!(
            self,
            System::VidarFp32 | System::VidarInt8 | System::VidarInt8Motion
        )
    }
}

/// Each system's agreement with its float every-frame self (see `agreement`).
fn measure_agreement(args: &CapacityBenchArgs) -> Result<Vec<(System, Agreement)>> {
    let mut out = Vec::new();
    let mut vidar_float: Option<Frames> = None;
    let mut reference_float: Option<Frames> = None;
    for &system in &args.systems {
        // The float run: RGB from GStreamer (the conventional path); the
        // system's own: its configured pixels.
        let run = |int8: bool, pixels: vidar_pipeline::PixelFormat| -> Result<Frames> {
            if system.vidar() {
                agreement::vidar(
                    &args.video,
                    VidarRun {
                        int8,
                        motion: int8 && system == System::VidarInt8Motion,
                        track_skip: args.track_skip,
                        threads: args.threads,
                        pixels,
                    },
                )
            } else {
                agreement::reference(
                    &args.python,
                    &args.script,
                    &args.video,
                    int8,
                    args.reference_threads,
                )
            }
        };
        let float = if system.vidar() {
            &mut vidar_float
        } else {
            &mut reference_float
        };
        let float: &Frames = match float {
            Some(f) => f,
            None => float.insert(run(false, vidar_pipeline::PixelFormat::Rgb)?),
        };
        // The float system's own row runs it again: how far identical runs differ.
        let got = run(system.int8(), args.pixels.into())?;
        let a = agreement::agreement(float, &got);
        eprintln!(
            "agreement with float every-frame detection (F1, P, R, boxes (float's), frames): {}",
            agreement_row(system, &a)
        );
        out.push((system, a));
    }
    Ok(out)
}

/// One probe's outcome.
struct Probe {
    cameras: usize,
    fps: f64,
    lost: u64,
    p99: f64,
    cores: f64,
    rss_mib: f64,
    detected_share: Option<f64>,
    /// The box's busy and stolen cores, the longest analysis pass and the
    /// stalls, as `bench cameras` prints them (Vidar only).
    load: Option<String>,
    sustained: bool,
}

/// Where one system's search stands.
struct Search {
    system: System,
    /// Most cameras sustained so far, and fewest not.
    pass: usize,
    fail: Option<usize>,
    probes: Vec<Probe>,
}

impl Search {
    /// The next count to probe, or none when the search is over.
    fn next(&self, start: usize, max: usize) -> Option<usize> {
        let n = match (self.probes.is_empty(), self.fail) {
            (true, _) => start,
            (false, None) => (self.pass * 2).min(max),
            (false, Some(f)) => (self.pass + f) / 2,
        };
        let done = self.fail.is_some_and(|f| f <= self.pass + 1)
            || (self.fail.is_none() && self.pass >= max)
            || n == 0
            || self.probes.iter().any(|p| p.cameras == n);
        (!done).then_some(n)
    }
}

/// `bench capacity`.
pub fn capacity(args: CapacityBenchArgs) -> Result<()> {
    if !args.video.is_file() {
        bail!(
            "no video at {} (install opencv-doc or pass --video)",
            args.video.display()
        );
    }
    if args.start == 0 || args.max < args.start || args.seconds == 0 {
        bail!("--start must be >= 1, --max >= --start, --seconds >= 1");
    }
    let reference = args
        .systems
        .iter()
        .any(|s| matches!(s, System::ReferenceFp32 | System::ReferenceInt8));
    if reference && !(args.python.is_file() && args.script.is_file()) {
        bail!(
            "the reference needs {} and {} (run from the repository root after `make setup`)",
            args.python.display(),
            args.script.display()
        );
    }
    vidar_pipeline::init()?;
    let agreements = if args.no_agreement {
        Vec::new()
    } else {
        measure_agreement(&args)?
    };
    if args.agreement_only {
        print_agreement(&args, &agreements);
        return Ok(());
    }
    let mut searches: Vec<Search> = args
        .systems
        .iter()
        .map(|&system| Search {
            system,
            pass: 0,
            fail: None,
            probes: Vec::new(),
        })
        .collect();
    loop {
        let mut any = false;
        for s in &mut searches {
            let Some(n) = s.next(args.start, args.max) else {
                continue;
            };
            any = true;
            let p = probe(&args, s.system, n)?;
            eprintln!(
                "{} at {n} cameras: {:.1} frames/s of {:.0}, lost {}, p99 {:.0} ms, {:.2} cores{}: {}",
                s.system.name(),
                p.fps,
                n as f64 * args.fps,
                p.lost,
                p.p99,
                p.cores,
                p.load.as_ref().map(|s| format!("; {s}")).unwrap_or_default(),
                if p.sustained { "sustained" } else { "not sustained" }
            );
            if p.sustained {
                s.pass = s.pass.max(n);
            } else {
                s.fail = Some(s.fail.map_or(n, |f| f.min(n)));
            }
            s.probes.push(p);
            std::thread::sleep(Duration::from_secs(2));
        }
        if !any {
            break;
        }
    }
    print_tables(&args, &searches, &agreements);
    Ok(())
}

fn print_agreement(args: &CapacityBenchArgs, agreements: &[(System, Agreement)]) {
    if agreements.is_empty() {
        return;
    }
    println!();
    println!(
        "Detection agreement with float every-frame detection, one pass over {} \
         (Vidar: its recorded boxes against Vidar's with the float SSD on every frame; \
         the reference: its detections against its own with the float SSD; \
         a float row is a second identical run):",
        args.video.display()
    );
    println!();
    println!("| system | F1 | precision | recall | boxes (float's) | frames |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (system, a) in agreements {
        println!("{}", agreement_row(*system, a));
    }
}

/// `| system | F1 | precision | recall | boxes (float's) | frames |`
fn agreement_row(system: System, a: &Agreement) -> String {
    format!(
        "| {} | {:.3} | {:.3} | {:.3} | {} ({}) | {} |",
        system.name(),
        a.f1(),
        a.precision(),
        a.recall(),
        a.reported,
        a.reference,
        a.frames
    )
}

/// One system at `n` cameras.
fn probe(args: &CapacityBenchArgs, system: System, n: usize) -> Result<Probe> {
    let base = CamerasBenchArgs {
        video: args.video.clone(),
        cameras: n,
        offset: args.offset,
        fps: args.fps,
        seconds: args.seconds,
        warmup: args.warmup,
        intervals: vec![1],
        motion: vec![Toggle::Off],
        adaptive: vec![Toggle::Off],
        track_skip: args.track_skip,
        threads: args.threads,
        max_batch: args.max_batch,
        workers: 0,
        depth: None,
        precision: system.int8().then(|| "int8".to_string()),
        reid_precision: args.reid_precision.clone(),
        detector_model: args.detector_model.clone(),
        decoder_threads: None,
        queue_capacity: args.queue_capacity,
        pixels: args.pixels,
        reference_threads: args.reference_threads,
        python: args.python.clone(),
        script: args.script.clone(),
        no_reference: true,
    };
    let (camera, port) = start_camera(&base)?;
    let mut f: Figures = match system {
        // Every frame offered is detected (adaptive rates off): the
        // capacity of detecting every frame, as the reference does.
        System::VidarFp32 | System::VidarInt8 => {
            run_vidar(&base, port, 1, Toggle::Off, Toggle::Off)?
        }
        System::VidarInt8Motion => run_vidar(&base, port, 1, Toggle::On, Toggle::Off)?,
        System::ReferenceFp32 | System::ReferenceInt8 => run_reference(&base, port)?,
    };
    drop(camera);
    let offered = n as f64 * args.fps * f.seconds;
    let lost = f.dropped + f.dropped_pts;
    let p99 = percentile(&mut f.latency_ms, 0.99);
    let sustained = f.frames as f64 >= 0.99 * offered
        && (lost as f64) <= 0.001 * offered
        && p99.is_finite()
        && p99 < args.p99_ms;
    Ok(Probe {
        cameras: n,
        fps: f.fps(),
        lost,
        p99,
        cores: f.cores(),
        rss_mib: f.rss_bytes as f64 / (1024.0 * 1024.0),
        detected_share: f.detected.map(|d| d as f64 / f.frames.max(1) as f64),
        load: super::cameras::box_and_stalls(&f),
        sustained,
    })
}

fn print_tables(args: &CapacityBenchArgs, searches: &[Search], agreements: &[(System, Agreement)]) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!(
        "## Cameras sustained (`vidar-edge bench capacity`, {cores} cores, {:.0} fps cameras, {} s windows, p99 < {:.0} ms)",
        args.fps, args.seconds, args.p99_ms
    );
    println!();
    println!("| system | cameras sustained | frames/s there | p99 there, ms | CPU cores per camera | RSS per camera, MiB | detector calls / frames | agreement F1 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for s in searches {
        let agree = agreements
            .iter()
            .find(|(sys, _)| *sys == s.system)
            .map_or("-".into(), |(_, a)| format!("{:.3}", a.f1()));
        match s.probes.iter().find(|p| p.cameras == s.pass && p.sustained) {
            Some(p) => println!(
                "| {} | **{}** | {:.1} | {:.0} | {:.3} | {:.0} | {} | {agree} |",
                s.system.name(),
                s.pass,
                p.fps,
                p.p99,
                p.cores / p.cameras as f64,
                p.rss_mib / p.cameras as f64,
                p.detected_share
                    .map_or("-".into(), |d| format!("{:.0} %", 100.0 * d))
            ),
            None => println!(
                "| {} | **0** (fewer than {}) | | | | | | {agree} |",
                s.system.name(),
                args.start
            ),
        }
    }
    print_agreement(args, agreements);
    let of = |sys: System| searches.iter().find(|s| s.system == sys).map(|s| s.pass);
    let vidar = of(System::VidarInt8Motion);
    for r in [System::ReferenceFp32, System::ReferenceInt8] {
        if let (Some(v), Some(r_n)) = (vidar, of(r)) {
            println!();
            println!(
                "{} / {}: **{:.2}x** ({v} / {r_n} cameras)",
                System::VidarInt8Motion.name(),
                r.name(),
                v as f64 / r_n.max(1) as f64
            );
        }
    }
    println!();
    println!("Every probe, in the order run:");
    println!();
    println!("| system | cameras | frames/s (offered) | lost | p99, ms | CPU cores | sustained | box and analysis loop |");
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    for s in searches {
        for p in &s.probes {
            println!(
                "| {} | {} | {:.1} ({:.0}) | {} | {:.0} | {:.2} | {} | {} |",
                s.system.name(),
                p.cameras,
                p.fps,
                p.cameras as f64 * args.fps,
                p.lost,
                p.p99,
                p.cores,
                if p.sustained { "yes" } else { "no" },
                p.load.as_deref().unwrap_or_default()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The search against a system that sustains exactly `capacity` cameras.
    fn search(capacity: usize, start: usize, max: usize) -> (usize, Vec<usize>) {
        let mut s = Search {
            system: System::VidarInt8,
            pass: 0,
            fail: None,
            probes: Vec::new(),
        };
        let mut order = Vec::new();
        while let Some(n) = s.next(start, max) {
            order.push(n);
            let sustained = n <= capacity;
            if sustained {
                s.pass = s.pass.max(n);
            } else {
                s.fail = Some(s.fail.map_or(n, |f| f.min(n)));
            }
            s.probes.push(Probe {
                cameras: n,
                fps: 0.0,
                lost: 0,
                p99: 0.0,
                cores: 0.0,
                rss_mib: 0.0,
                detected_share: None,
                load: None,
                sustained,
            });
            assert!(order.len() < 20, "{order:?}");
        }
        (s.pass, order)
    }

    #[test]
    fn the_search_finds_every_capacity_to_one_camera() {
        for capacity in 0..=50 {
            let (found, order) = search(capacity, 4, 48);
            assert_eq!(found, capacity.min(48), "capacity {capacity}: {order:?}");
            assert!(order.len() <= 10, "capacity {capacity}: {order:?}");
        }
        assert_eq!(search(13, 4, 48).1, vec![4, 8, 16, 12, 14, 13]);
    }
}
