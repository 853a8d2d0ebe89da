//! What the load benchmarks (`bench cameras`, `bench capacity`) measure of
//! a system over its window ([`Figures`]), and the Python reference they
//! measure Vidar against: one `edge-node/bench/reference_pipeline.py` process
//! per camera (OpenCV capture + onnxruntime on the same SSD file + norfair),
//! each reporting JSON.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Arguments of `bench cameras`.
#[derive(Args, Debug, Clone)]
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
    #[arg(long, value_delimiter = ',', default_value = "on")]
    pub motion: Vec<Toggle>,
    /// Vidar runs with adaptive per-camera detection rates off and/or on
    /// (`[detection_rate] adaptive`; `off,on`: both, in that order, for
    /// each interval and motion setting; the node's default: off).
    #[arg(long, value_delimiter = ',', default_value = "off")]
    pub adaptive: Vec<Toggle>,
    /// With motion gating, frames in a row the tracker may predict over
    /// when only tracked people move along their paths (`[motion]
    /// track_skip`; default: the node's).
    #[arg(long)]
    pub track_skip: Option<u32>,
    /// Vidar's ONNX Runtime intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Vidar's detector batch limit, frames of different cameras per run
    /// (default: the node's, which follows the precision: 4 for int8, 1 for
    /// float on a CPU).
    #[arg(long)]
    pub max_batch: Option<usize>,
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
    /// Vidar's detector model (a manifest name; default: the node's). The
    /// reference keeps its own (`reference_pipeline.py --int8-model`).
    #[arg(long, value_parser = model_name)]
    pub detector_model: Option<String>,
    /// Worker threads of each camera's software decoder (the cameras'
    /// `decoder_threads`; 0 = one per core; default: the node's).
    #[arg(long)]
    pub decoder_threads: Option<u32>,
    /// Frames each of Vidar's camera queues holds before dropping the oldest
    /// (the cameras' `queue_capacity`; default: the node's).
    #[arg(long)]
    pub queue_capacity: Option<usize>,
    /// Vidar's cameras' pixel layout (`pixel_format`; auto: I420 from the decoder).
    #[arg(long, value_enum, default_value_t = super::pipeline::Pixels::Auto)]
    pub pixels: super::pipeline::Pixels,
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

/// The RTSP address of camera `i` of the test camera at `port`.
pub(super) fn url(port: u16, i: usize) -> String {
    format!("rtsp://127.0.0.1:{port}/c{i}")
}

/// One system's figures over the measured window.
#[derive(Debug, Default)]
pub(super) struct Figures {
    pub(super) frames: u64,
    pub(super) seconds: f64,
    pub(super) dropped: u64,
    pub(super) dropped_pts: u64,
    pub(super) latency_ms: Vec<f64>,
    /// Latency samples per 30 s of the window (Vidar only), to show it stays flat.
    pub(super) windows: Vec<Vec<f64>>,
    pub(super) cpu_seconds: f64,
    pub(super) rss_bytes: u64,
    pub(super) peak_rss_bytes: u64,
    pub(super) persons: Option<u64>,
    /// Crops the re-ID worker embedded in the window (Vidar only): the re-ID
    /// work, which the identity policy sets, read beside the CPU.
    pub(super) crops: Option<u64>,
    /// Frames the detector ran on in the window (Vidar only).
    pub(super) detected: Option<u64>,
    /// The whole box in the window (Vidar only): cores busy (every process)
    /// and cores stolen by the hypervisor.
    pub(super) box_cores: Option<(f64, f64)>,
    /// The longest pass of the analysis loop in the window, ms, and the
    /// passes of 100 ms or more (Vidar only).
    pub(super) analysis_stalls: Option<(f64, u64)>,
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
    pub(super) fn fps(&self) -> f64 {
        self.frames as f64 / self.seconds.max(1e-9)
    }
    pub(super) fn cores(&self) -> f64 {
        self.cpu_seconds / self.seconds.max(1e-9)
    }
}

/// Frames missing between consecutive presentation times at `fps`.
pub(super) fn pts_gaps(pts_ms: &[f64], fps: f64) -> u64 {
    let step = 1000.0 / fps;
    pts_ms
        .windows(2)
        .map(|w| (((w[1] - w[0]) / step).round() - 1.0).max(0.0) as u64)
        .sum()
}

/// Where camera `i`'s frames fall within a frame period, seconds: spread by
/// the golden ratio, so any number of cameras is spread about evenly, as
/// free-running cameras are. `vidar-camera` sends frames on this schedule
/// (`#phase=`), so both systems see the same one. Without it every stream is
/// timed from when its client connected, and a node that connects to all its
/// cameras at once gets all their frames at once.
pub(super) fn phase_s(i: usize, fps: f64) -> f64 {
    const GOLDEN: f64 = 0.618_033_988_749_895;
    (i as f64 * GOLDEN).fract() / fps.max(1e-3)
}

/// Sent-to-result latency of one camera's frames, ms.
///
/// `vidar-camera` sends camera `i`'s frames at times of the monotonic clock
/// that fall [`phase_s`] into each frame period (`#phase=`). Given each
/// frame's result time on that clock (`done_ms`) and its presentation time
/// (`pts_ms`, exact frame spacing from the RTP timestamps), latency is
/// `done - pts` up to one constant per stream. The constant comes from the
/// frame with the least `done - pts`: that frame's latency is its result time
/// past the last send time of the schedule. This assumes the least delayed
/// frame of the window took less than one frame period; a system that has
/// idle time drains any queue, so its least delayed frame was not queued.
/// Unlike a delay against the window's first frame, this is never negative
/// and does not hide a constant delay (a buffer) that a system always adds.
pub(super) fn sent_to_result_ms(
    done_ms: &[f64],
    pts_ms: &[f64],
    phase_ms: f64,
    period_ms: f64,
) -> Vec<f64> {
    let d: Vec<f64> = done_ms.iter().zip(pts_ms).map(|(a, p)| a - p).collect();
    let Some((j, &dj)) = d.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)) else {
        return Vec::new();
    };
    let lj = (done_ms[j] - phase_ms).rem_euclid(period_ms);
    d.iter().map(|di| di - dj + lj).collect()
}

/// One reference process per camera, all at once; their JSON reports summed.
pub(super) fn run_reference(args: &CamerasBenchArgs, port: u16) -> Result<Figures> {
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
    for (i, (mut child, out)) in children.into_iter().enumerate() {
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
        let r = read_report(&out, args.fps, phase_s(i, args.fps))?;
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

fn read_report(path: &Path, fps: f64, phase_s: f64) -> Result<Figures> {
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
    let done = list("done_ms")?;
    if done.len() != pts.len() {
        bail!(
            "{}: {} result times for {} frames",
            path.display(),
            done.len(),
            pts.len()
        );
    }
    Ok(Figures {
        frames: num("frames")? as u64,
        seconds: num("seconds")?,
        dropped: num("dropped")? as u64,
        dropped_pts: pts_gaps(&pts, fps),
        latency_ms: sent_to_result_ms(&done, &pts, phase_s * 1000.0, 1000.0 / fps),
        windows: Vec::new(),
        cpu_seconds: num("cpu_seconds")?,
        rss_bytes: num("rss_bytes").unwrap_or(0.0) as u64,
        peak_rss_bytes: num("peak_rss_bytes")? as u64,
        persons: num("persons_detected").ok().map(|p| p as u64),
        crops: None,
        detected: None,
        box_cores: None,
        analysis_stalls: None,
    })
}

/// A manifest model name as `--detector-model` takes it: letters, digits,
/// `-`, `_` and `.` (it goes into the node's TOML as it is).
pub(super) fn model_name(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a model name (letters, digits, '-', '_', '.')"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detector_model_name_cannot_carry_toml() {
        assert_eq!(
            model_name("ssd-mobilenet-v2-coco-raw").as_deref(),
            Ok("ssd-mobilenet-v2-coco-raw")
        );
        for bad in ["", "a\"\nprecision = \"fp16", "x y"] {
            let e = model_name(bad).expect_err(bad);
            assert!(e.contains("not a model name"), "{e}");
        }
    }

    #[test]
    fn latency_is_measured_from_the_send_schedule_not_the_first_frame() {
        // Frames sent at 37 ms + k x 100 ms; the receiver's pts start
        // anywhere. The first frame of the window waited in a queue (45 ms),
        // later ones did not.
        let (phase, period) = (37.0, 100.0);
        let truth = [45.0, 9.0, 11.0, 8.5, 60.0, 10.0];
        let done: Vec<f64> = truth
            .iter()
            .enumerate()
            .map(|(k, l)| 5_000_000.0 + phase + (k + 3) as f64 * period + l)
            .collect();
        let pts: Vec<f64> = (0..truth.len())
            .map(|k| 812.5 + k as f64 * period)
            .collect();
        let got = sent_to_result_ms(&done, &pts, phase, period);
        for (g, t) in got.iter().zip(truth) {
            assert!((g - t).abs() < 1e-6, "{got:?} against {truth:?}");
        }
        // The same frames against their window's first frame, as before:
        // negative for all but the spikes.
        let relative: Vec<f64> = (0..truth.len())
            .map(|k| (done[k] - done[0]) - (pts[k] - pts[0]))
            .collect();
        assert!(relative[1] < 0.0, "{relative:?}");
        assert!(sent_to_result_ms(&[], &[], phase, period).is_empty());
    }

    #[test]
    fn phases_spread_cameras_over_the_frame_period() {
        let mut p: Vec<f64> = (0..8).map(|i| phase_s(i, 10.0) * 1000.0).collect();
        assert!(p.iter().all(|x| (0.0..100.0).contains(x)), "{p:?}");
        p.sort_by(f64::total_cmp);
        let gap = p
            .windows(2)
            .map(|w| w[1] - w[0])
            .fold(f64::INFINITY, f64::min);
        assert!(gap > 5.0, "8 cameras at least 5 ms apart: {p:?}");
    }
}
