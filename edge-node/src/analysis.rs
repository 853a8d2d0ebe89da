//! The analysis loop of an edge node, on its own dedicated thread: take the
//! freshest frame of every camera, detect persons in one batch across cameras,
//! track per camera, embed new confirmed tracks from the full-resolution frame,
//! assign global identities, and hand sightings, identities and snapshots to the
//! recorder. Frames the loop cannot take in time are dropped by the ingest
//! queues (counted), never queued: latency stays bounded by design.
//!
//! Per-frame work reuses its buffers; nothing here logs at info per frame or
//! holds a lock across inference.

use crate::identify::{Identifier, Job};
use crate::metrics::{CameraMetrics, NodeMetrics};
use crate::recorder::{Recorder, SightingOut};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vidar_detectors::{Detection, Detector, RgbFrame};
use vidar_pipeline::{Frame, Ingest};
use vidar_protocol::{BBox, CameraId, IdentityId};
use vidar_tracker::Tracker;

/// A sighting longer than this is split, so a crash loses at most this much of
/// a track that is still open.
pub const MAX_SIGHTING: Duration = Duration::from_secs(10);

/// One camera as the loop sees it.
pub struct CameraSlot {
    /// Its ingest.
    pub ingest: Ingest,
    /// Its tracker.
    pub tracker: Tracker,
    /// Its analysis metrics.
    pub metrics: Arc<CameraMetrics>,
    /// Frames taken from the queue (for the detection interval).
    taken: u64,
    open: HashMap<u64, OpenTrack>,
}

impl CameraSlot {
    /// A slot for `ingest` with its own `tracker`.
    pub fn new(ingest: Ingest, tracker: Tracker) -> Self {
        CameraSlot {
            ingest,
            tracker,
            metrics: Arc::new(CameraMetrics::default()),
            taken: 0,
            open: HashMap::new(),
        }
    }
}

/// A confirmed track being followed: its identity and box path so far.
#[derive(Debug)]
struct OpenTrack {
    identity: Option<IdentityId>,
    /// A re-ID job for this track is in flight.
    pending: bool,
    first_ms: u64,
    last_ms: u64,
    path: Vec<(u64, BBox)>,
}

impl OpenTrack {
    /// The sighting so far, taking the box path; the track continues from its last time.
    fn take_sighting(&mut self, camera: &CameraId, track: u64) -> SightingOut {
        let out = SightingOut {
            camera: camera.clone(),
            track,
            identity: self.identity,
            first_ms: self.first_ms,
            last_ms: self.last_ms,
            path: std::mem::take(&mut self.path),
        };
        self.first_ms = self.last_ms;
        out
    }
}

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct AnalysisSettings {
    /// Run the detector on every Nth frame of each camera.
    pub detection_interval: u32,
}

/// Everything the loop owns.
pub struct Analysis {
    /// Cameras, in configuration order.
    pub cameras: Vec<CameraSlot>,
    /// The detector (batched across cameras).
    pub detector: Box<dyn Detector>,
    /// The re-ID worker (embedder and gallery on their own thread).
    pub identifier: Identifier,
    /// Where records go.
    pub recorder: Recorder,
    /// Node-wide metrics.
    pub metrics: Arc<NodeMetrics>,
    /// Settings.
    pub settings: AnalysisSettings,
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Reusable per-iteration buffers.
#[derive(Default)]
struct Scratch {
    frames: Vec<(usize, Frame)>,
    detections: Vec<Vec<Detection>>,
    track_dets: Vec<vidar_tracker::Detection>,
    new_tracks: Vec<(usize, usize, u64, BBox)>,
    /// Detector failures in a row.
    failures: u64,
}

impl Analysis {
    /// Runs until `stop` is set, publishing stream statuses to `board` once a
    /// second; then ends every open track and flushes the recorder.
    pub fn run_with_status(mut self, stop: &AtomicBool, board: &crate::node::StatusBoard) {
        let mut s = Scratch::default();
        let mut published = Instant::now() - Duration::from_secs(2);
        while !stop.load(Ordering::Relaxed) {
            if published.elapsed() >= Duration::from_secs(1) {
                published = Instant::now();
                board.publish(
                    self.cameras
                        .iter()
                        .map(|c| (c.ingest.camera().to_string(), c.ingest.status()))
                        .collect(),
                );
            }
            if !self.step(&mut s) {
                // Nothing arrived: wait briefly on the first camera's queue.
                if let Some(first) = self.cameras.first() {
                    if let Some(f) = first.ingest.recv_timeout(Duration::from_millis(20)) {
                        s.frames.push((0, f));
                        self.process(&mut s);
                    }
                }
            }
            self.collect_identities();
            self.expire_long_tracks();
        }
        self.finish();
    }

    /// Takes the freshest due frame of every camera and processes them as one
    /// batch; false when no frame was waiting.
    fn step(&mut self, s: &mut Scratch) -> bool {
        s.frames.clear();
        let interval = u64::from(self.settings.detection_interval.max(1));
        let max = self.detector.max_batch().max(1);
        for (i, cam) in self.cameras.iter_mut().enumerate() {
            // One frame per camera per round, oldest first: the ingest queue is
            // small and drops (and counts) the oldest when analysis falls
            // behind, so every frame is either analysed or counted as dropped.
            let Some(f) = cam.ingest.try_recv() else {
                continue;
            };
            cam.taken += 1;
            if (cam.taken - 1) % interval == 0 {
                s.frames.push((i, f));
            } else {
                cam.metrics.analysed.fetch_add(1, Ordering::Relaxed);
                cam.metrics.latency.observe(f.age());
                cam.metrics.samples.record(f.pts);
            }
            if s.frames.len() >= max {
                break;
            }
        }
        if s.frames.is_empty() {
            return false;
        }
        self.process(s);
        true
    }

    fn process(&mut self, s: &mut Scratch) {
        let started = Instant::now();
        let rgb: Result<Vec<RgbFrame<'_>>, _> = s
            .frames
            .iter()
            .map(|(_, f)| RgbFrame::new(f.width, f.height, f.stride, f.pixels()))
            .collect();
        let result = rgb
            .map_err(vidar_detectors::DetectError::from)
            .and_then(|rgb| self.detector.detect_into(&rgb, &mut s.detections));
        if let Err(e) = result {
            // Counted every time; logged on the 1st, 2nd, 4th, 8th... failure in
            // a row, so a persistent fault is visible without flooding the log.
            let n = self.metrics.errors.fetch_add(1, Ordering::Relaxed) + 1;
            s.failures += 1;
            if s.failures.is_power_of_two() {
                tracing::warn!(error = %e, consecutive = s.failures, total_errors = n, "detection failed; frames skipped");
            }
            s.frames.clear();
            return;
        }
        if s.failures > 0 {
            tracing::info!(after = s.failures, "detection recovered");
            s.failures = 0;
        }
        let t = self.detector.take_timings();
        if t.runs > 0 {
            self.metrics.inference.observe(t.inference / t.runs as u32);
            self.metrics
                .preprocess
                .observe(t.preprocess / t.runs as u32);
        }
        let _ = started;
        s.new_tracks.clear();
        for (k, (ci, frame)) in s.frames.iter().enumerate() {
            let cam = &mut self.cameras[*ci];
            s.track_dets.clear();
            if let Some(dets) = s.detections.get(k) {
                s.track_dets.extend(
                    dets.iter()
                        .map(|d| vidar_tracker::Detection::new(d.bbox, d.score)),
                );
            }
            let res = match cam.tracker.update(frame.seq, &s.track_dets) {
                Ok(r) => r,
                Err(e) => {
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(camera = %cam.ingest.camera(), error = %e, "tracker refused a frame");
                    continue;
                }
            };
            let now = ms(frame.capture_time);
            let mut confirmed = 0;
            for tr in &res.tracks {
                if tr.detection.is_none() {
                    continue;
                }
                confirmed += 1;
                let bbox = tr.bbox.clip(frame.width as f32, frame.height as f32);
                let entry = cam.open.entry(tr.id.0).or_insert_with(|| OpenTrack {
                    identity: None,
                    pending: false,
                    first_ms: now,
                    last_ms: now,
                    path: Vec::with_capacity(64),
                });
                entry.last_ms = now;
                entry.path.push((now, bbox));
                if entry.identity.is_none() && !entry.pending && bbox.w >= 8.0 && bbox.h >= 16.0 {
                    entry.pending = true;
                    s.new_tracks.push((k, *ci, tr.id.0, bbox));
                }
            }
            cam.metrics.tracks.store(confirmed, Ordering::Relaxed);
            for ended in &res.ended {
                let camera = cam.ingest.camera().clone();
                if let Some(mut open) = cam.open.remove(&ended.id.0) {
                    self.recorder
                        .sighting(open.take_sighting(&camera, ended.id.0));
                }
            }
            cam.metrics.analysed.fetch_add(1, Ordering::Relaxed);
            cam.metrics.detected.fetch_add(1, Ordering::Relaxed);
        }
        for (ci, frame) in &s.frames {
            let m = &self.cameras[*ci].metrics;
            m.latency.observe(frame.age());
            m.samples.record(frame.pts);
        }
        self.identify(s);
    }

    /// Hands frames with tracks that need an identity to the re-ID worker;
    /// when it is busy the tracks are marked for another try.
    fn identify(&mut self, s: &mut Scratch) {
        for (k, (ci, frame)) in s.frames.drain(..).enumerate() {
            if !s.new_tracks.iter().any(|t| t.0 == k) {
                continue;
            }
            let tracks: Vec<(u64, BBox)> = s
                .new_tracks
                .iter()
                .filter(|t| t.0 == k)
                .map(|t| (t.2, t.3))
                .collect();
            if tracks.is_empty() {
                continue;
            }
            if let Some(refused) = self.identifier.offer(Job {
                camera: ci,
                frame,
                tracks,
            }) {
                for (t, _) in refused {
                    if let Some(open) = self.cameras[ci].open.get_mut(&t) {
                        open.pending = false;
                    }
                }
            }
        }
    }

    /// Applies the identities the re-ID worker decided.
    fn collect_identities(&mut self) {
        for r in self.identifier.results() {
            if let Some(open) = self
                .cameras
                .get_mut(r.camera)
                .and_then(|c| c.open.get_mut(&r.track))
            {
                open.identity = Some(r.identity);
                open.pending = false;
            }
        }
    }

    /// Splits open tracks longer than [`MAX_SIGHTING`] into a recorded sighting.
    fn expire_long_tracks(&mut self) {
        let limit = MAX_SIGHTING.as_millis() as u64;
        for cam in &mut self.cameras {
            let camera = cam.ingest.camera().clone();
            for (track, open) in cam.open.iter_mut() {
                if open.identity.is_some() && open.last_ms.saturating_sub(open.first_ms) >= limit {
                    self.recorder.sighting(open.take_sighting(&camera, *track));
                }
            }
        }
    }

    /// Ends every open track and records it (shutdown).
    fn finish(mut self) {
        for r in self.identifier.finish() {
            if let Some(open) = self
                .cameras
                .get_mut(r.camera)
                .and_then(|c| c.open.get_mut(&r.track))
            {
                open.identity = Some(r.identity);
            }
        }
        for cam in &mut self.cameras {
            let camera = cam.ingest.camera().clone();
            // Flushing ends every track; record all that were open.
            drop(cam.tracker.flush());
            for (track, mut open) in cam.open.drain() {
                self.recorder.sighting(open.take_sighting(&camera, track));
            }
        }
        self.recorder.close();
    }
}
