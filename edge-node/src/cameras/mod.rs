//! The cameras of a node: one slot per camera being analysed (its frame
//! source, tracker, metrics and open tracks), the changes a plan makes, and
//! the one way to start a camera ([`CameraSlot::start`], used by the config
//! and by plans alike).
//!
//! The analysis loop sees a camera only through [`FrameSource`]: an RTSP or
//! file [`Ingest`] in a node, frames built in memory in tests.

pub mod motion;
pub mod rate;

use crate::sightings::OpenTrack;
use crate::telemetry::CameraMetrics;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use vidar_config::Config;
use vidar_pipeline::{Frame, Ingest, IngestConfig};
use vidar_protocol::{BBox, CameraId, StreamStatus, TrackId};
use vidar_tracker::{Tracker, TrackerConfig};

/// Where a camera's frames come from. Dropping it stops the source.
pub trait FrameSource: Send + std::fmt::Debug {
    /// The camera.
    fn camera(&self) -> &CameraId;
    /// The oldest waiting frame, without blocking.
    fn try_recv(&self) -> Option<Frame>;
    /// Frames waiting.
    fn waiting(&self) -> usize;
    /// The stream's state and counters.
    fn status(&self) -> StreamStatus;
}

impl FrameSource for Ingest {
    fn camera(&self) -> &CameraId {
        Ingest::camera(self)
    }
    fn try_recv(&self) -> Option<Frame> {
        Ingest::try_recv(self)
    }
    fn waiting(&self) -> usize {
        Ingest::queued(self)
    }
    fn status(&self) -> StreamStatus {
        Ingest::status(self)
    }
}

/// One camera as the loop sees it.
#[derive(Debug)]
pub struct CameraSlot {
    /// Unique for the life of the node (never reused, unlike positions, which
    /// shift when a camera is taken away); frames and re-ID jobs carry it.
    pub(crate) key: usize,
    /// Its frames.
    pub source: Box<dyn FrameSource>,
    /// Its tracker.
    pub tracker: Tracker,
    /// Its analysis metrics.
    pub metrics: Arc<CameraMetrics>,
    /// Frames taken from the queue (for the detection interval).
    pub(crate) taken: u64,
    /// Frames of this camera at a detector (all at one worker).
    pub(crate) in_flight: usize,
    /// The worker they are at.
    pub(crate) at_worker: usize,
    /// When this camera's last live tile was taken.
    pub(crate) last_tile: Option<Instant>,
    pub(crate) open: HashMap<TrackId, OpenTrack>,
    /// Motion gating (`[motion]`), when on.
    pub(crate) gate: Option<motion::MotionGate>,
    /// A frame taken from the source and found due (and moving), not yet
    /// handed to a detector.
    pub(crate) due: Option<Frame>,
    /// Its adaptive detection rate (`[detection_rate]`); interval 0 until
    /// the controller's first look.
    pub(crate) rate: rate::CameraRate,
    /// Analytics jobs: the frames the detector skips are offered here too
    /// (set by the analysis loop).
    pub(crate) jobs: Option<Arc<crate::analytics::Hub>>,
    /// The tracks' paths to the frame being judged (reused buffer): box at
    /// the last detection, predicted box now.
    paths: Vec<vidar_tracker::Predicted>,
    /// The last frame handed to a detector.
    handed: Option<u64>,
    /// Skipped frames not recorded yet ([`CameraSlot::coast`]), oldest first.
    coasting: Vec<Coast>,
    /// The analysis loop's observer (benchmarks), for the frames the
    /// detector skips: they report the tracks' predicted boxes.
    pub(crate) observer: Option<std::sync::mpsc::SyncSender<FrameBoxes>>,
}

impl CameraSlot {
    /// Starts ingesting the camera `config` describes, with a tracker built
    /// from `tracker`: the one way a node starts a camera.
    pub fn start(
        config: IngestConfig,
        tracker: &TrackerConfig,
        motion: &motion::MotionConfig,
    ) -> Result<Self> {
        let tracker = tracker.build(&())?;
        let camera = config.camera.clone();
        // Frames read as fast as they decode, or never dropped, are all
        // detected: adaptive rates are for sources that go on without us.
        let live = vidar_pipeline::Source::parse(&config.source).is_ok_and(|s| s.is_live());
        let fixed = config.queue_policy == vidar_pipeline::QueuePolicy::Block
            || (!live && !config.realtime);
        let ingest = Ingest::start(config).with_context(|| format!("starting camera {camera}"))?;
        let mut slot = CameraSlot::new(Box::new(ingest), tracker);
        slot.gate = motion.gate(camera.as_str());
        slot.rate.fixed = fixed;
        Ok(slot)
    }

    /// A slot for `source` with its own `tracker`.
    pub fn new(source: Box<dyn FrameSource>, tracker: Tracker) -> Self {
        static NEXT_KEY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        CameraSlot {
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            source,
            tracker,
            metrics: Arc::new(CameraMetrics::default()),
            taken: 0,
            in_flight: 0,
            at_worker: 0,
            last_tile: None,
            open: HashMap::new(),
            gate: None,
            due: None,
            rate: rate::CameraRate::default(),
            jobs: None,
            paths: Vec::new(),
            handed: None,
            coasting: Vec::new(),
            observer: None,
        }
    }
}

/// What an analysed frame reported: on a detected frame the boxes of the
/// confirmed tracks its detections updated (the boxes a sighting's path
/// records); on a frame the detector skipped, those of the confirmed tracks
/// the last detection updated, predicted to it at constant velocity (what
/// a live overlay would draw there).
#[derive(Debug, Clone, PartialEq)]
pub struct FrameBoxes {
    /// The camera.
    pub camera: vidar_protocol::CameraId,
    /// The frame's sequence number at its source (0 for the first decoded).
    pub seq: u64,
    /// Boxes, pixels, clipped to the frame.
    pub boxes: Vec<BBox>,
}

/// A frame the detector skipped, waiting for the tracker to catch up.
#[derive(Debug, Clone, Copy)]
struct Coast {
    /// The last frame handed to a detector before it.
    after: Option<u64>,
    seq: u64,
    at: vidar_protocol::UnixMs,
    /// Its size, pixels.
    size: (f32, f32),
}

/// Most skipped frames waiting to be recorded per camera.
const MAX_COASTING: usize = 64;

impl CameraSlot {
    /// Takes the waiting frames the detector skips (all but every
    /// `interval`th, and with motion gating those where nothing moves or
    /// only tracked people move along their paths: they count as analysed,
    /// the tracker predicts over them), and says whether a frame is due for
    /// detection.
    pub(crate) fn skip_to_due(&mut self, interval: u64) -> bool {
        loop {
            if self.due.is_some() {
                return true;
            }
            if self.source.waiting() == 0 {
                return false;
            }
            let nth = self.taken.is_multiple_of(interval);
            // Without a gate a due frame stays queued until a detector takes
            // it (the queue may still drop it for a newer one); the gate must
            // see it first, and holds it once it moves.
            if nth && self.gate.is_none() {
                return true;
            }
            let Some(f) = self.source.try_recv() else {
                return false;
            };
            self.taken += 1;
            if let (true, Some(gate)) = (nth, &mut self.gate) {
                self.tracker.predict_confirmed(f.seq, &mut self.paths);
                // A frame the gate cannot read is detected.
                let v = crate::media::picture(&f)
                    .map(|p| gate.judge(&p, f.captured_ms().0, &self.paths))
                    .ok();
                if let Some(v) = v {
                    self.metrics.motion_share.set(f64::from(v.share));
                }
                if v.is_none_or(|v| v.detect()) {
                    self.due = Some(f);
                    return true;
                }
                self.metrics.motion_skipped.fetch_add(1, Ordering::Relaxed);
                if v.is_some_and(|v| v.why == motion::Why::Tracked) {
                    self.metrics.tracked_skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
            if self.coasting.len() >= MAX_COASTING {
                // The tracker is stuck behind (a refused frame): these go unrecorded.
                self.coasting.remove(0);
            }
            self.coasting.push(Coast {
                after: self.handed,
                seq: f.seq,
                at: f.captured_ms(),
                size: (f.width as f32, f.height as f32),
            });
            self.coast();
            self.metrics.analysed.fetch_add(1, Ordering::Relaxed);
            self.metrics.latency.observe(f.age());
            self.metrics.samples.record(f.pts);
            if let Some(jobs) = &self.jobs {
                jobs.offer(&f);
            }
        }
    }

    /// The next frame due for detection, taking the skipped ones before it.
    pub(crate) fn take_due(&mut self, interval: u64) -> Option<Frame> {
        if !self.skip_to_due(interval) {
            return None;
        }
        let f = match self.due.take() {
            Some(f) => f,
            None => {
                let f = self.source.try_recv()?;
                self.taken += 1;
                f
            }
        };
        self.handed = Some(f.seq);
        Some(f)
    }

    /// Records the skipped frames the tracker has caught up with (every
    /// frame handed to a detector before them tracked): the confirmed
    /// tracks' boxes predicted to each join their paths, and go to the
    /// observer. Called when a frame is skipped and after each tracked one;
    /// a skipped frame taken while an earlier one is still at a detector
    /// waits for its result, so paths stay in time order.
    pub(crate) fn coast(&mut self) {
        let last = self.tracker.last_frame();
        let mut done = 0;
        for c in &self.coasting {
            if c.after > last {
                break;
            }
            done += 1;
            self.tracker.predict_confirmed(c.seq, &mut self.paths);
            let (w, h) = c.size;
            for p in &self.paths {
                if let Some(open) = self.open.get_mut(&p.id) {
                    open.coast(c.at, p.now.clip(w, h));
                }
            }
            if let Some(tx) = &self.observer {
                let boxes = self.paths.iter().map(|p| p.now.clip(w, h)).collect();
                // A reader that went away only ends the observation.
                let _ = tx.send(FrameBoxes {
                    camera: self.source.camera().clone(),
                    seq: c.seq,
                    boxes,
                });
            }
        }
        self.coasting.drain(..done);
    }
}

/// Changes to the camera set while running (cluster mode: the master's plan).
#[derive(Debug)]
pub enum Control {
    /// Start analysing this camera (its ingest already started).
    Add(Box<CameraSlot>),
    /// Stop analysing this camera: its open tracks are recorded, its ingest stopped.
    Remove(CameraId),
}

/// The source without credentials, for the camera record.
pub fn source_name(source: &str) -> String {
    vidar_pipeline::Source::parse(source)
        .map(|s| s.describe())
        .unwrap_or_default()
}

/// The ingest settings of a planned camera: the template plus camera and source.
pub fn ingest_config(
    template: &toml::Table,
    camera: &CameraId,
    source: &str,
) -> Result<IngestConfig> {
    let mut table = template.clone();
    table.insert("camera".into(), toml::Value::String(camera.to_string()));
    table.insert("source".into(), toml::Value::String(source.to_string()));
    let cfg: IngestConfig = toml::Value::Table(table)
        .try_into()
        .context("sharing.ingest is not a valid camera template")?;
    if let Err(invalid) = cfg.check() {
        anyhow::bail!("camera {camera} from the plan: {invalid}");
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_cameras_take_the_ingest_template() {
        let mut template = toml::Table::new();
        template.insert("transport".into(), toml::Value::String("tcp".into()));
        let cam = CameraId::new("lobby").expect("id");
        let cfg = ingest_config(&template, &cam, "rtsp://10.0.0.5/s1").expect("valid");
        assert_eq!(cfg.camera, cam);
        assert_eq!(cfg.source, "rtsp://10.0.0.5/s1");
        template.insert("queue_capacity".into(), toml::Value::Integer(0));
        let err = ingest_config(&template, &cam, "rtsp://10.0.0.5/s1")
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("queue_capacity"), "{err}");
    }
}
