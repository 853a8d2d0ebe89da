//! Analytics jobs on this node: the stages the master's plan places here
//! (`Plan::jobs`, placed by OTFA), fed by this node's cameras and by other
//! nodes, their outputs passed on within the node or sent to the node of
//! the next stage at the flow's share.
//!
//! - [`Hub`]: shared by the analysis loop (which offers it every frame it
//!   takes from a camera, detected or skipped: a job's source takes one at
//!   most every `1 / rate` s, copied only then), the runtime, and the metrics.
//! - [`runtime::JobRuntime`]: follows the plan (starts, restarts and stops a
//!   worker per job with a stage here) and takes the items other nodes send
//!   (`job/<this node>/<sender>`): refused, and counted, unless the key's
//!   sender is the item's, the plan places the item's stage here and its
//!   input's stage at the sender, and the item carries what the stage takes.
//! - [`worker`]: one thread per job: runs its stages here in order, with
//!   models loaded when the job starts; a flow to another node goes through
//!   a token bucket at its share (an item that does not fit is dropped and
//!   counted: a stream keeps its latency, it does not queue).
//! - [`stages`]: what each stage kind does.

pub mod runtime;
pub mod stages;
#[cfg(test)]
mod tests;
pub mod worker;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};

use vidar_pipeline::Frame;
use vidar_protocol::{CameraId, JobId, StageId};
use vidar_runtime::metrics::Families;

/// Frames waiting for a job's worker; more are dropped (and counted).
pub const WORKER_QUEUE: usize = 8;

/// A frame a job's source took, copied out of the analysis loop.
#[derive(Debug)]
pub struct SourceFrame {
    /// Its camera.
    pub camera: CameraId,
    /// Capture time, ms since the epoch.
    pub captured_ms: i64,
    /// The pixels.
    pub rgb: image::RgbImage,
}

/// What a job's worker is sent.
#[derive(Debug)]
pub enum Input {
    /// A frame from this node's camera, for the job's source.
    Frame(SourceFrame),
    /// An item from another node.
    Remote(Box<vidar_protocol::messages::JobItem>),
    /// New shares for the flows out (the placement did not move).
    Shares(Vec<vidar_protocol::messages::JobFlow>),
}

struct Tap {
    job: JobId,
    every_ms: i64,
    next_ms: AtomicI64,
    tx: SyncSender<Input>,
}

/// Counters of one stage (or of the flow into it) on this node.
#[derive(Debug, Default)]
pub struct StageStats {
    /// Items the stage processed here.
    pub items: AtomicU64,
    /// Items it failed on (a model error, an undecodable frame).
    pub errors: AtomicU64,
    /// Bytes sent to the node of this stage (the flow into it, from here).
    pub flow_bytes: AtomicU64,
    /// Items not sent to it: over the flow's share, or the send failed.
    pub flow_dropped: AtomicU64,
    /// The flow's share, bytes/s (0: no flow from here).
    pub share: AtomicU64,
    /// Items offered to the flow into it from here (sent or not).
    pub offered_items: AtomicU64,
    /// Their encoded bytes.
    pub offered_bytes: AtomicU64,
}

/// Shared by the analysis loop, the job runtime and the metrics.
#[derive(Default)]
pub struct Hub {
    taps: RwLock<HashMap<CameraId, Vec<Tap>>>,
    any: AtomicBool,
    stats: Mutex<BTreeMap<(JobId, StageId), Arc<StageStats>>>,
    /// Frames a job's source could not hand its worker (its queue full).
    pub frames_dropped: AtomicU64,
    /// Items from other nodes refused (see the module documentation).
    pub refused: AtomicU64,
    /// CPU time the jobs' workers have used, ns (the status reports it
    /// apart from the node's own work).
    pub cpu_ns: AtomicU64,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("any", &self.any.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// Offers a frame the analysis loop took: each job whose source is its
    /// camera and is due takes a copy, `rate` a second on average. Costs an
    /// atomic load when no job runs here; never blocks.
    pub fn offer(&self, frame: &Frame) {
        if !self.any.load(Ordering::Relaxed) {
            return;
        }
        let taps = self.taps.read().unwrap_or_else(|p| p.into_inner());
        let Some(list) = taps.get(&frame.camera) else {
            return;
        };
        let now = frame.captured_ms().ms();
        for t in list {
            let next = t.next_ms.load(Ordering::Relaxed);
            if now < next {
                continue;
            }
            // The next one is due a period after this one was: frames come
            // at the camera's pace, so a source at 4/s on a 10 fps camera
            // takes frames 300 and 200 ms apart, 4 a second on average (not
            // one every 300 ms). After a gap (no frames for a period) it
            // starts afresh from this frame.
            let due = if now.saturating_sub(next) >= t.every_ms {
                now + t.every_ms
            } else {
                next + t.every_ms
            };
            t.next_ms.store(due, Ordering::Relaxed);
            let Some(rgb) = copy_rgb(frame) else {
                continue;
            };
            let input = Input::Frame(SourceFrame {
                camera: frame.camera.clone(),
                captured_ms: now,
                rgb,
            });
            match t.tx.try_send(input) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.frames_dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(job = %t.job, "job worker busy: frame dropped");
                }
            }
        }
    }

    /// Sets job `job`'s tap on `camera` (one frame every `1 / rate` s to
    /// `tx`), replacing any it had.
    pub(crate) fn tap(&self, job: &JobId, camera: &CameraId, rate: f64, tx: SyncSender<Input>) {
        let mut taps = self.taps.write().unwrap_or_else(|p| p.into_inner());
        for list in taps.values_mut() {
            list.retain(|t| &t.job != job);
        }
        taps.entry(camera.clone()).or_default().push(Tap {
            job: job.clone(),
            every_ms: (1000.0 / rate.max(1e-3)).round() as i64,
            next_ms: AtomicI64::new(i64::MIN),
            tx,
        });
        taps.retain(|_, l| !l.is_empty());
        self.any.store(!taps.is_empty(), Ordering::Relaxed);
    }

    /// Removes job `job`'s tap.
    pub(crate) fn untap(&self, job: &JobId) {
        let mut taps = self.taps.write().unwrap_or_else(|p| p.into_inner());
        for list in taps.values_mut() {
            list.retain(|t| &t.job != job);
        }
        taps.retain(|_, l| !l.is_empty());
        self.any.store(!taps.is_empty(), Ordering::Relaxed);
    }

    /// The counters of `stage` of `job` (created on first use).
    pub fn stats(&self, job: &JobId, stage: &StageId) -> Arc<StageStats> {
        let mut m = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(m.entry((job.clone(), stage.clone())).or_default())
    }

    /// What each job flow from this node was offered, for the master (it
    /// plans with the measured bytes per item).
    pub fn flow_loads(&self) -> Vec<vidar_protocol::messages::JobFlowLoad> {
        let m = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .filter_map(|((job, stage), s)| {
                let items = s.offered_items.load(Ordering::Relaxed);
                (items > 0).then(|| vidar_protocol::messages::JobFlowLoad {
                    job: job.clone(),
                    to_stage: stage.clone(),
                    items,
                    bytes: s.offered_bytes.load(Ordering::Relaxed),
                })
            })
            .take(vidar_protocol::messages::MAX_JOB_FLOW_LOADS)
            .collect()
    }

    /// Forgets the counters of a job no longer here.
    pub(crate) fn forget(&self, job: &JobId) {
        let mut m = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|(j, _), _| j != job);
    }

    /// The job families of the node's metrics.
    pub fn render(&self, f: &mut Families<'_>) -> fmt::Result {
        let all: Vec<(JobId, StageId, Arc<StageStats>)> = self
            .stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|((j, s), v)| (j.clone(), s.clone(), Arc::clone(v)))
            .collect();
        let of = |get: fn(&StageStats) -> u64| {
            all.iter()
                .map(move |(j, s, v)| ([("job", j.as_str()), ("stage", s.as_str())], get(v)))
        };
        f.counters(
            "vidar_job_stage_items",
            "Items a job's stage processed on this node.",
            of(|s| s.items.load(Ordering::Relaxed)),
        )?;
        f.counters(
            "vidar_job_stage_errors",
            "Items a job's stage failed on, on this node.",
            of(|s| s.errors.load(Ordering::Relaxed)),
        )?;
        f.counters(
            "vidar_job_flow_bytes",
            "Bytes this node sent to the node of a job's stage (its input flow).",
            of(|s| s.flow_bytes.load(Ordering::Relaxed)),
        )?;
        f.counters(
            "vidar_job_flow_dropped",
            "Items this node did not send to a job's stage: over the flow's share, or the send failed.",
            of(|s| s.flow_dropped.load(Ordering::Relaxed)),
        )?;
        f.gauges(
            "vidar_job_flow_share_bytes_per_s",
            "The plan's share of the flow from this node into a job's stage, bytes/s.",
            of(|s| s.share.load(Ordering::Relaxed)),
        )?;
        f.counter(
            "vidar_job_frames_dropped",
            "Frames a job's source could not hand its worker (busy).",
            self.frames_dropped.load(Ordering::Relaxed),
        )?;
        f.counter(
            "vidar_job_items_refused",
            "Job items from other nodes refused (wrong sender, stage not placed here, wrong kind).",
            self.refused.load(Ordering::Relaxed),
        )
    }
}

/// The frame's pixels as packed RGB, whatever layout ingest handed over
/// (I420 frames are converted here, once per frame a job takes).
fn copy_rgb(frame: &Frame) -> Option<image::RgbImage> {
    let picture = crate::media::picture(frame)
        .inspect_err(|e| tracing::warn!(camera = %frame.camera, "job source frame refused: {e}"))
        .ok()?;
    image::RgbImage::from_raw(frame.width, frame.height, picture.to_rgb())
}
