//! Helpers for integration tests: a real `vidar-camera` process on 127.0.0.1.
#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vidar_pipeline::{Frame, Ingest, IngestConfig};
use vidar_protocol::{CameraId, StreamStatus};

/// A `vidar-camera` child process, killed on drop.
pub struct CameraProc {
    pub child: Child,
    pub port: u16,
}

impl CameraProc {
    /// Starts the camera on `port` (0 = any) with `mounts` (NAME=SOURCE).
    pub fn start(port: u16, mounts: &[&str]) -> CameraProc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vidar-camera"));
        cmd.arg("--port").arg(port.to_string());
        for m in mounts {
            cmd.arg("--mount").arg(m);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn vidar-camera");
        let stdout = child.stdout.take().expect("camera stdout");
        let mut port_seen = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("camera output");
            if let Some(p) = line.strip_prefix("ready port=") {
                port_seen = Some(p.trim().parse().expect("port number"));
                break;
            }
        }
        CameraProc {
            child,
            port: port_seen.expect("camera printed its port"),
        }
    }

    pub fn url(&self, mount: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{}", self.port, mount)
    }

    /// SIGKILL, as a crash or power cut would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for CameraProc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub use vidar_testkit::ports::unused_port;

pub fn cam(id: &str) -> CameraId {
    CameraId::new(id).expect("camera id")
}

/// A config with short timeouts suitable for tests.
pub fn fast_config(id: &str, source: &str) -> IngestConfig {
    let mut c = IngestConfig::new(cam(id), source);
    c.connect_timeout_ms = 4000;
    c.stall_timeout_ms = 2000;
    c.backoff_initial_ms = 200;
    c.backoff_max_ms = 1000;
    c.transport = vidar_pipeline::Transport::Tcp;
    c
}

/// Polls `ingest.status()` until `pred` holds or `timeout` passes.
pub fn wait_status(
    ingest: &Ingest,
    timeout: Duration,
    pred: impl Fn(&StreamStatus) -> bool,
) -> StreamStatus {
    let start = Instant::now();
    loop {
        let st = ingest.status();
        if pred(&st) || start.elapsed() > timeout {
            return st;
        }
        // Keep the queue drained so the stream is not throttled by drops.
        while ingest.try_recv().is_some() {}
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Receives frames for `d`, returning them (pixels dropped after inspection
/// by `keep`).
pub fn collect_for<T>(ingest: &Ingest, d: Duration, mut keep: impl FnMut(&Frame) -> T) -> Vec<T> {
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < d {
        if let Some(f) = ingest.recv_timeout(Duration::from_millis(100)) {
            out.push(keep(&f));
        }
    }
    out
}

/// Resident set size of this process, KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Serialises the tests of one binary that stream video, so that timing
/// assertions are not distorted by two encoders fighting over two cores.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}
