//! The node's status, published for the master.

use super::shared::Shared;
use crate::telemetry::CameraRegistry;
use crate::telemetry::{NodeMetrics, StatusBoard};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vidar_protocol::messages::{CameraLoad, NodeCapacity, NodeLoad, NodeStatus};
use vidar_protocol::{CameraId, StreamState, UnixMs};
use vidar_store::WriterHandle;

/// Publishes the node's status.
pub(super) struct Reporter {
    /// The re-ID worker's inbox (its queue depth is reported).
    pub(super) inbox: crate::identify::Inbox,
    pub(super) shared: Arc<Shared>,
    pub(super) capacity: NodeCapacity,
    pub(super) registry: Arc<CameraRegistry>,
    pub(super) board: Arc<StatusBoard>,
    pub(super) metrics: Arc<NodeMetrics>,
    pub(super) store: WriterHandle,
    pub(super) metrics_addr: String,
    pub(super) started_ms: UnixMs,
    pub(super) every: Duration,
    /// camera -> counters at the last report.
    pub(super) last: HashMap<CameraId, Last>,
    /// Analytics jobs' counters (what their flows carry, their CPU).
    pub(super) hub: Arc<crate::analytics::Hub>,
    /// The process's CPU use at the last report.
    pub(super) cpu: CpuUse,
}

/// Seconds over which the process's CPU use is averaged.
const CPU_WINDOW_S: f64 = 30.0;

/// The process's CPU use and its jobs' part of it, smoothed over about
/// [`CPU_WINDOW_S`].
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuUse {
    process: Duration,
    jobs_ns: u64,
    at: Instant,
    cores: f64,
    job_cores: f64,
}

impl CpuUse {
    /// Counting from now; `jobs_ns` is the jobs' CPU so far.
    pub(super) fn start(jobs_ns: u64) -> Self {
        Self {
            process: crate::cpu::process_cpu(),
            jobs_ns,
            at: Instant::now(),
            cores: 0.0,
            job_cores: 0.0,
        }
    }

    /// Cores used, all and the jobs', averaged up to `now`.
    fn sample(&mut self, jobs_ns: u64, now: Instant) -> (f64, f64) {
        let process = crate::cpu::process_cpu();
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        if dt > 0.0 {
            let cores = process.saturating_sub(self.process).as_secs_f64() / dt;
            let jobs = jobs_ns.saturating_sub(self.jobs_ns) as f64 / 1e9 / dt;
            self.cores = smooth(self.cores, cores, dt, CPU_WINDOW_S);
            self.job_cores = smooth(self.job_cores, jobs.min(cores), dt, CPU_WINDOW_S);
        }
        (self.process, self.jobs_ns, self.at) = (process, jobs_ns, now);
        (self.cores, self.job_cores.min(self.cores))
    }
}

/// A camera's counters at the last report, and its smoothed bitrate.
#[derive(Debug, Clone, Copy)]
pub(super) struct Last {
    frames: u64,
    analysed: u64,
    bytes: u64,
    detected: u64,
    persons_seen: u64,
    at: Instant,
    /// Bits per second, averaged over about [`BITRATE_WINDOW_S`].
    bitrate_bps: f64,
    /// People per detected frame, averaged over about [`PERSONS_WINDOW_S`].
    persons: f64,
    /// Detector runs per analysed frame, averaged the same way.
    detect_share: f64,
}

/// Seconds over which a camera's bitrate is averaged (a key frame every
/// second or two makes one status period's figure jump).
const BITRATE_WINDOW_S: f64 = 10.0;
/// Seconds over which a camera's people per frame are averaged.
const PERSONS_WINDOW_S: f64 = 30.0;

/// `last` moved towards `now` by the share `dt / window` (at most all the
/// way); `now` itself when `last` is unset (0).
fn smooth(last: f64, now: f64, dt: f64, window: f64) -> f64 {
    if last == 0.0 {
        now
    } else {
        last + (dt / window).min(1.0) * (now - last)
    }
}

impl Reporter {
    pub(super) fn run(mut self, stop: &vidar_runtime::Shutdown) {
        let key = self.shared.link.keys().status(&self.shared.node);
        let publisher = match self.shared.link.control_publisher::<NodeStatus>(&key) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "status publisher not declared; the master will not see this node's load");
                return;
            }
        };
        let mut busy_last = (
            self.metrics.inference.sum_seconds(),
            self.metrics.reid_inference.sum_seconds(),
            Instant::now(),
        );
        loop {
            let status = self.status(&mut busy_last);
            if let Err(e) = publisher.put(&status) {
                tracing::debug!(error = %e, "status not published");
            }
            if stop.wait_timeout(self.every) {
                break;
            }
        }
    }

    pub(super) fn status(&mut self, busy_last: &mut (f64, f64, Instant)) -> NodeStatus {
        let states: HashMap<String, vidar_protocol::StreamStatus> =
            self.board.snapshot().into_iter().collect();
        let now = Instant::now();
        let mut cameras = Vec::new();
        for (camera, m) in self.registry.snapshot() {
            let st = states.get(camera.as_str());
            let frames = st.map_or(0, |s| s.counters.frames);
            let bytes = st.map_or(0, |s| s.counters.bytes);
            let analysed = m.analysed.load(Ordering::Relaxed);
            let detected = m.detected.load(Ordering::Relaxed);
            let persons_seen = m.persons_seen.load(Ordering::Relaxed);
            let last = self.last.get(&camera).copied().unwrap_or(Last {
                frames,
                analysed,
                bytes,
                detected,
                persons_seen,
                at: now,
                bitrate_bps: 0.0,
                persons: 0.0,
                detect_share: 0.0,
            });
            let dt = now.saturating_duration_since(last.at).as_secs_f64();
            let rate = |a: u64, b: u64| {
                if dt > 0.0 {
                    a.saturating_sub(b) as f64 / dt
                } else {
                    0.0
                }
            };
            // Counters that went down were restarted (a new stream): the
            // figure waits for the next period.
            let bitrate_bps = if dt > 0.0 && bytes >= last.bytes {
                let now_bps = rate(bytes, last.bytes) * 8.0;
                smooth(last.bitrate_bps, now_bps, dt, BITRATE_WINDOW_S)
            } else {
                last.bitrate_bps
            };
            let frames_detected = detected.saturating_sub(last.detected);
            let persons = if frames_detected > 0 && persons_seen >= last.persons_seen {
                let now_persons =
                    (persons_seen - last.persons_seen) as f64 / frames_detected as f64;
                smooth(last.persons, now_persons, dt, PERSONS_WINDOW_S)
            } else {
                last.persons
            };
            let frames_analysed = analysed.saturating_sub(last.analysed);
            let detect_share = if frames_analysed > 0 && detected >= last.detected {
                let now_share = (frames_detected as f64 / frames_analysed as f64).min(1.0);
                smooth(last.detect_share, now_share, dt, PERSONS_WINDOW_S)
            } else {
                last.detect_share
            };
            cameras.push(CameraLoad {
                camera: camera.clone(),
                state: st.map_or(StreamState::Connecting, |s| s.state),
                fps: rate(frames, last.frames),
                analysed_fps: rate(analysed, last.analysed),
                dropped: st.map_or(0, |s| s.counters.dropped),
                reconnects: st.map_or(0, |s| s.counters.reconnects),
                tracks: m.tracks.load(Ordering::Relaxed) as u32,
                bitrate_bps,
                persons,
                detect_share,
            });
            self.last.insert(
                camera,
                Last {
                    frames,
                    analysed,
                    bytes,
                    detected,
                    persons_seen,
                    at: now,
                    bitrate_bps,
                    persons,
                    detect_share,
                },
            );
        }
        let busy_now = self.metrics.inference.sum_seconds();
        let reid_now = self.metrics.reid_inference.sum_seconds();
        let wall = now.saturating_duration_since(busy_last.2).as_secs_f64();
        let threads = f64::from(self.capacity.cores.max(1));
        let share = |busy: f64, of: f64| {
            if wall > 0.0 {
                (busy / wall / of).clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        // Detection: share of the node's cores; re-ID: of its one worker thread.
        let detect_busy = share(busy_now - busy_last.0, threads);
        let reid_busy = share(reid_now - busy_last.1, 1.0);
        *busy_last = (busy_now, reid_now, now);
        let (cpu_cores, job_cpu_cores) = self
            .cpu
            .sample(self.hub.cpu_ns.load(Ordering::Relaxed), now);
        let st = self.store.stats();
        NodeStatus {
            node: self.shared.node.clone(),
            sent_ms: UnixMs::now(),
            started_ms: self.started_ms,
            plan_version: self.shared.plan_version.load(Ordering::Relaxed),
            capacity: self.capacity.clone(),
            load: NodeLoad {
                cameras,
                detect_busy,
                reid_busy,
                cpu_cores,
                job_cpu_cores,
                reid_queue: u32::try_from(self.inbox.crops_waiting()).unwrap_or(u32::MAX),
                records_last_seq: st.last_seq,
                unsynced: st
                    .last_seq
                    .saturating_sub(self.shared.acked.load(Ordering::Relaxed)),
            },
            links: self.shared.links.rates(),
            metrics_addr: Some(self.metrics_addr.clone()),
            job_flows: self.hub.flow_loads(),
        }
    }
}
