//! The analysis loop of an edge node, on its own dedicated thread: take the
//! freshest frame of every camera, detect persons in one batch across cameras,
//! track per camera, embed new confirmed tracks from the full-resolution frame,
//! assign global identities, and hand sightings, identities and snapshots to the
//! recorder. Frames the loop cannot take in time are dropped by the ingest
//! queues (counted), never queued: latency stays bounded by design.
//!
//! Per-frame work reuses its buffers; nothing here logs at info per frame or
//! holds a lock across inference.

use crate::metrics::{CameraMetrics, NodeMetrics};
use crate::recorder::{Recorder, SightingOut};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vidar_detectors::{Detection, Detector, RgbFrame};
use vidar_pipeline::{Frame, Ingest};
use vidar_protocol::{BBox, CameraId, IdentityId};
use vidar_reid::{Assignment, Crop, Embedder, Embedding, Gallery};
use vidar_tracker::{EndedTrack, Tracker};

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
    first_ms: u64,
    last_ms: u64,
    path: Vec<(u64, BBox)>,
}

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct AnalysisSettings {
    /// Run the detector on every Nth frame of each camera.
    pub detection_interval: u32,
    /// Save a JPEG crop of each new identity.
    pub snapshots: bool,
}

/// Everything the loop owns.
pub struct Analysis {
    /// Cameras, in configuration order.
    pub cameras: Vec<CameraSlot>,
    /// The detector (batched across cameras).
    pub detector: Box<dyn Detector>,
    /// The re-ID embedder.
    pub embedder: Box<dyn Embedder>,
    /// This node's identity gallery.
    pub gallery: Gallery,
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
    embeddings: Vec<Embedding>,
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
            let Some(f) = cam.ingest.try_recv() else { continue };
            cam.taken += 1;
            if (cam.taken - 1) % interval == 0 {
                s.frames.push((i, f));
            } else {
                cam.metrics.analysed.fetch_add(1, Ordering::Relaxed);
                cam.metrics.latency.observe(f.age());
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
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "detection failed; frames skipped");
            s.frames.clear();
            return;
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
                    first_ms: now,
                    last_ms: now,
                    path: Vec::with_capacity(64),
                });
                entry.last_ms = now;
                entry.path.push((now, bbox));
                if entry.identity.is_none() && bbox.w >= 8.0 && bbox.h >= 16.0 {
                    s.new_tracks.push((k, *ci, tr.id.0, bbox));
                }
            }
            cam.metrics.tracks.store(confirmed, Ordering::Relaxed);
            for ended in &res.ended {
                let camera = cam.ingest.camera().clone();
                if let Some(open) = cam.open.remove(&ended.id.0) {
                    self.recorder
                        .sighting(close(&camera, ended.id.0, open, ended));
                }
            }
            cam.metrics.analysed.fetch_add(1, Ordering::Relaxed);
            cam.metrics.detected.fetch_add(1, Ordering::Relaxed);
        }
        self.identify(s);
        for (ci, frame) in s.frames.drain(..) {
            self.cameras[ci].metrics.latency.observe(frame.age());
        }
    }

    /// Embeds the crops of tracks without identity and assigns identities.
    fn identify(&mut self, s: &mut Scratch) {
        if s.new_tracks.is_empty() {
            return;
        }
        let crops: Vec<Crop<'_>> = s
            .new_tracks
            .iter()
            .filter_map(|(k, _, _, bbox)| {
                let (_, f) = &s.frames[*k];
                RgbFrame::new(f.width, f.height, f.stride, f.pixels())
                    .ok()
                    .map(|frame| Crop { frame, bbox: *bbox })
            })
            .collect();
        if crops.len() != s.new_tracks.len() {
            return;
        }
        let t0 = Instant::now();
        if let Err(e) = self.embedder.embed_into(&crops, &mut s.embeddings) {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "re-ID embedding failed; will retry on the next frame");
            return;
        }
        self.metrics.reid_inference.observe(t0.elapsed());
        self.metrics
            .crops
            .fetch_add(crops.len() as u64, Ordering::Relaxed);
        let _ = self.embedder.take_timings();
        for (((k, ci, track, bbox), emb), crop) in
            s.new_tracks.iter().zip(&s.embeddings).zip(&crops)
        {
            let (_, frame) = &s.frames[*k];
            let camera = self.cameras[*ci].ingest.camera().clone();
            let now = ms(frame.capture_time);
            let assignment = match self.gallery.assign(emb, &camera, now) {
                Ok(a) => a,
                Err(e) => {
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "gallery refused an embedding");
                    continue;
                }
            };
            if let Some(open) = self.cameras[*ci].open.get_mut(track) {
                open.identity = Some(assignment.id());
            }
            if let Assignment::New { id, .. } = assignment {
                self.metrics.identities.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(camera = %camera, identity = %id, "new identity");
                self.recorder.identity(id, &camera, now, emb.as_slice());
                if self.settings.snapshots {
                    if let Some(jpeg) = crate::recorder::snapshot_jpeg(&crop.frame, bbox) {
                        self.recorder.snapshot(id, &camera, now, jpeg);
                    }
                }
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
                    let part = OpenTrack {
                        identity: open.identity,
                        first_ms: open.first_ms,
                        last_ms: open.last_ms,
                        path: std::mem::take(&mut open.path),
                    };
                    open.first_ms = open.last_ms;
                    self.recorder.sighting(SightingOut {
                        camera: camera.clone(),
                        track: *track,
                        identity: part.identity,
                        first_ms: part.first_ms,
                        last_ms: part.last_ms,
                        path: part.path,
                    });
                }
            }
        }
    }

    /// Ends every open track and records it (shutdown).
    fn finish(mut self) {
        for cam in &mut self.cameras {
            let camera = cam.ingest.camera().clone();
            for ended in cam.tracker.flush() {
                if let Some(open) = cam.open.remove(&ended.id.0) {
                    self.recorder
                        .sighting(close(&camera, ended.id.0, open, &ended));
                }
            }
            for (track, open) in cam.open.drain() {
                self.recorder.sighting(SightingOut {
                    camera: camera.clone(),
                    track,
                    identity: open.identity,
                    first_ms: open.first_ms,
                    last_ms: open.last_ms,
                    path: open.path,
                });
            }
        }
        self.recorder.close();
    }
}

fn close(camera: &CameraId, track: u64, open: OpenTrack, _ended: &EndedTrack) -> SightingOut {
    SightingOut {
        camera: camera.clone(),
        track,
        identity: open.identity,
        first_ms: open.first_ms,
        last_ms: open.last_ms,
        path: open.path,
    }
}
