//! Process helpers shared by the benchmarks: CPU time, percentiles, and
//! `vidar-camera` children.

use anyhow::{bail, Context, Result};
use std::process::{Child, Command, Stdio};

/// Removes a benchmark's SQLite database and its WAL files (what is not there is fine).
pub fn remove_db(db: &std::path::Path) {
    let _ = std::fs::remove_file(db);
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
}

/// The whole box's CPU since boot, seconds summed over cores, from
/// `/proc/stat`: busy (user, nice, system, irq, softirq: every process,
/// the benchmark's test camera and anything else included) and stolen by
/// the hypervisor. None where `/proc/stat` cannot be read or parsed (the
/// benchmarks then leave the figure out rather than print zeros).
pub fn box_cpu_seconds() -> Option<(f64, f64)> {
    box_cpu_of(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn box_cpu_of(stat: &str) -> Option<(f64, f64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|v| v.parse::<f64>().ok().map(|t| t / 100.0))
        .collect::<Option<Vec<f64>>>()?;
    // user nice system idle iowait irq softirq steal
    let [user, nice, system, _idle, _iowait, irq, softirq, steal] = f[..] else {
        return None;
    };
    Some((user + nice + system + irq + softirq, steal))
}

#[cfg(test)]
mod box_tests {
    #[test]
    fn box_cpu_counts_busy_and_stolen_ticks() {
        let stat = "cpu  100 20 30 4000 50 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let (busy, steal) = super::box_cpu_of(stat).expect("parsed");
        assert!((busy - 1.63).abs() < 1e-9, "{busy}");
        assert!((steal - 0.08).abs() < 1e-9, "{steal}");
        assert_eq!(super::box_cpu_of("intr 1 2\n"), None);
        assert_eq!(super::box_cpu_of("cpu  1 2 3\n"), None, "too few fields");
        assert_eq!(super::box_cpu_of("cpu  1 x 3 4 5 6 7 8\n"), None);
    }
}

/// CPU seconds used by this process so far (user + system), from /proc.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at ')'.
    let Some(rest) = stat.rsplit_once(')').map(|r| r.1) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the full line: 12 and 13 here.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// `at` on the monotonic clock (`CLOCK_MONOTONIC`, which `Instant`,
/// GStreamer's system clock and Python's `time.monotonic` read), ms.
/// GStreamer must be initialised.
pub fn monotonic_ms(at: std::time::Instant) -> f64 {
    use gstreamer::prelude::ClockExt;
    let now = std::time::Instant::now();
    let now_ms = gstreamer::SystemClock::obtain().time().nseconds() as f64 / 1e6;
    if at <= now {
        now_ms - now.duration_since(at).as_secs_f64() * 1000.0
    } else {
        now_ms + at.duration_since(now).as_secs_f64() * 1000.0
    }
}

/// The `p` quantile (0..=1) of `v` (sorted in place); NaN when empty.
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A `vidar-camera` child process and the port it serves; killed on drop.
#[derive(Debug)]
pub struct CameraChild(Child, pub u16);

impl Drop for CameraChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `vidar-camera` (next to this binary) on a free port with `mounts`
/// (`NAME=SOURCE`), returning once it serves.
pub fn spawn_camera(mounts: impl IntoIterator<Item = String>) -> Result<CameraChild> {
    spawn_camera_with(&[], mounts)
}

/// The binary `name` next to this one (benchmarks start the others).
pub fn sibling(name: &str) -> Result<std::path::PathBuf> {
    let p = std::env::current_exe()?.with_file_name(name);
    if !p.is_file() {
        bail!(
            "{} not found: build every binary (`cargo build --release --bins`)",
            p.display()
        );
    }
    Ok(p)
}

/// [`spawn_camera`] with extra arguments before the mounts.
pub fn spawn_camera_with(
    extra: &[String],
    mounts: impl IntoIterator<Item = String>,
) -> Result<CameraChild> {
    let cam = sibling("vidar-camera")?;
    let mut cmd = Command::new(&cam);
    cmd.arg("--port").arg("0").args(extra);
    for m in mounts {
        cmd.arg("--mount").arg(m);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let out = child.stdout.take().context("camera stdout")?;
    let mut child = CameraChild(child, 0);
    use std::io::BufRead;
    for line in std::io::BufReader::new(out).lines() {
        let line = line?;
        if let Some(p) = line.strip_prefix("ready port=") {
            child.1 = p
                .trim()
                .parse()
                .with_context(|| format!("vidar-camera printed {line:?}"))?;
            return Ok(child);
        }
    }
    bail!("vidar-camera exited before it was ready")
}

/// The `precision = ...` line of a config table (`[detector]`, `[embedder]`)
/// for a bench's precision option, or nothing.
pub fn precision_line(precision: Option<&String>) -> String {
    precision
        .map(|p| format!("precision = {p:?}\n"))
        .unwrap_or_default()
}

/// `VmRSS` and `VmHWM` (peak) of this process, bytes.
pub fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
