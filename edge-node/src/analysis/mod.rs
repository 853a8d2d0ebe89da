//! The analysis loop of an edge node, on its own dedicated thread: take the
//! oldest waiting frame of every camera, hand them to the idle detector threads
//! (each batching across cameras, several running at once), track per camera
//! in frame order, embed new confirmed tracks from the full-resolution frame,
//! assign global identities, and hand sightings, identities and snapshots to the
//! recorder. Frames the loop cannot take in time are dropped by the ingest
//! queues (counted), never queued: latency stays bounded by design.
//!
//! Per-frame work reuses its buffers; nothing here logs at info per frame or
//! holds a lock across inference.

pub mod crop_policy;
mod dispatch;
#[cfg(test)]
mod tests;

use crate::cameras::rate::RateController;
pub use crate::cameras::FrameBoxes;
use crate::cameras::{CameraSlot, Control};
use crate::detect_pool::{DetectPool, Done};
use crate::identify::{Identifier, Job, TrackCrop};
use crate::media::{TileFrame, TileSink};
use crate::recorder::Recorder;
use crate::sightings::{OpenTrack, MAX_SIGHTING};
use crate::telemetry::CameraRegistry;
use crate::telemetry::NodeMetrics;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vidar_pipeline::Frame;
use vidar_protocol::BBox;

/// Settings of the loop.
#[derive(Debug, Clone)]
pub struct AnalysisSettings {
    /// Run the detector on every Nth frame of each camera (the shortest
    /// interval; adaptive rates lengthen it under load).
    pub detection_interval: u32,
    /// Adaptive per-camera detection rates.
    pub rate: crate::cameras::rate::RateConfig,
}

/// Everything the loop owns.
#[derive(Debug)]
pub struct Analysis {
    /// Cameras, in configuration order.
    pub cameras: Vec<CameraSlot>,
    /// The detector threads (each batches across cameras).
    pub detectors: DetectPool,
    /// The re-ID worker (embedder and gallery on their own thread).
    pub identifier: Identifier,
    /// Where records go.
    pub recorder: Recorder,
    /// Node-wide metrics.
    pub metrics: Arc<NodeMetrics>,
    /// Settings.
    pub settings: AnalysisSettings,
    /// Camera changes, when the camera set is not fixed.
    pub control: Option<std::sync::mpsc::Receiver<Control>>,
    /// Published camera list.
    pub registry: Arc<CameraRegistry>,
    /// Live tiles for the master's UI (cluster mode).
    pub tiles: Option<TileSink>,
    /// Analytics jobs whose source is one of these cameras take frames here.
    pub jobs: Arc<crate::analytics::Hub>,
    /// Every analysed frame's confirmed tracks, for benchmarks that compare
    /// what two configurations report frame by frame (`bench capacity`'s
    /// agreement): on a detected frame those its detections updated, on a
    /// frame the detector skipped their predicted boxes. Bounded; a full
    /// queue holds the loop, so its reader must drain it. `None` (the node):
    /// nothing is sent or built.
    pub observer: Option<std::sync::mpsc::SyncSender<FrameBoxes>>,
}

/// How long the loop waits for a detector to finish when it has nothing else to do.
const POLL: Duration = Duration::from_millis(2);

/// At most one warning about a long analysis pass in this time.
const STALL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Reusable per-iteration buffers.
#[derive(Default)]
struct Scratch {
    ready: Vec<(usize, Frame)>,
    track_dets: Vec<vidar_tracker::Detection>,
    /// (frame index in the batch, camera key, crop) of every crop for re-ID.
    new_tracks: Vec<(usize, usize, TrackCrop)>,
    /// Boxes of the frame being tracked (for crop quality).
    frame_boxes: Vec<BBox>,
    /// Camera keys of the batch being handed out.
    keys: Vec<usize>,
    /// The camera the next round starts with (fairness when workers are few).
    next_camera: usize,
    /// Detector failures in a row.
    failures: u64,
    /// Adaptive detection rates (set when the loop starts).
    rates: Option<RateController>,
}

impl Analysis {
    /// Runs until `stop` is set, publishing stream statuses to `board` once a
    /// second; then ends every open track and flushes the recorder.
    pub fn run_with_status(
        mut self,
        stop: &vidar_runtime::Shutdown,
        board: &crate::telemetry::StatusBoard,
    ) {
        let mut s = Scratch {
            rates: Some(RateController::new(
                self.settings.rate.clone(),
                self.settings.detection_interval,
                self.detectors.threads(),
            )),
            ..Scratch::default()
        };
        let mut published = Instant::now() - Duration::from_secs(2);
        for cam in &mut self.cameras {
            cam.jobs = Some(Arc::clone(&self.jobs));
            cam.observer.clone_from(&self.observer);
        }
        self.publish_cameras();
        let mut last_stall_log: Option<Instant> = None;
        while !stop.is_triggered() {
            let pass = Instant::now();
            self.apply_controls();
            if published.elapsed() >= Duration::from_secs(1) {
                let elapsed = published.elapsed();
                published = Instant::now();
                let statuses: Vec<_> = self
                    .cameras
                    .iter()
                    .map(|c| (c.source.camera().to_string(), c.source.status()))
                    .collect();
                self.adapt_rates(&mut s, elapsed, &statuses);
                board.publish(statuses);
            }
            let dispatching = Instant::now();
            let dispatched = self.dispatch(&mut s);
            let waiting = Instant::now();
            let mut wait = if dispatched { Duration::ZERO } else { POLL };
            let mut finishing = Duration::ZERO;
            while let Some(done) = self.detectors.next_done(wait) {
                wait = Duration::ZERO;
                let t = Instant::now();
                self.finish_batch(done, &mut s, true);
                finishing += t.elapsed();
            }
            let collecting = Instant::now();
            self.collect_identities();
            self.expire_long_tracks();
            let took = pass.elapsed();
            self.metrics.analysis_pass(took);
            if took >= crate::telemetry::STALL
                && last_stall_log.is_none_or(|t| t.elapsed() >= STALL_LOG_EVERY)
            {
                last_stall_log = Some(Instant::now());
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                let waited = collecting.duration_since(waiting);
                tracing::warn!(
                    pass_ms = ms(took),
                    controls_status_ms = ms(dispatching.duration_since(pass)),
                    dispatch_ms = ms(waiting.duration_since(dispatching)),
                    tracking_ms = ms(finishing),
                    detector_wait_ms = ms(waited.saturating_sub(finishing)),
                    identities_ms = ms(collecting.elapsed()),
                    "an analysis pass held every camera back (counted in vidar_analysis_stalls_total)"
                );
            }
        }
        self.finish(&mut s);
    }

    /// Tracks the frames of a finished batch and hands new tracks to re-ID;
    /// when `more`, first hands the detectors the next frames.
    fn finish_batch(&mut self, done: Done, s: &mut Scratch, more: bool) {
        let Done {
            mut batch,
            result,
            timings,
            ..
        } = done;
        for (ci, _) in &batch.frames {
            if let Some(cam) = self.cameras.iter_mut().find(|c| c.key == *ci) {
                cam.in_flight = cam.in_flight.saturating_sub(1);
            }
        }
        // Hand these cameras' next frames to the now idle detector before
        // tracking this batch: the detector works while this thread tracks.
        // Order holds, since the next batch comes back through this thread
        // only after this one is tracked.
        if more {
            self.dispatch(s);
        }
        if let Err(e) = result {
            // Counted every time; logged on the 1st, 2nd, 4th, 8th... failure in
            // a row, so a persistent fault is visible without flooding the log.
            let n = self.metrics.errors.fetch_add(1, Ordering::Relaxed) + 1;
            s.failures += 1;
            if s.failures.is_power_of_two() {
                tracing::warn!(error = %e, consecutive = s.failures, total_errors = n, "detection failed; frames skipped");
            }
            self.detectors.recycle(batch);
            return;
        }
        if s.failures > 0 {
            tracing::info!(after = s.failures, "detection recovered");
            s.failures = 0;
        }
        if let Some(rates) = s.rates.as_mut() {
            rates.ran(
                batch.frames.len(),
                timings.preprocess + timings.inference + timings.postprocess,
            );
        }
        if timings.runs > 0 {
            self.metrics
                .inference
                .observe(timings.inference / timings.runs as u32);
            self.metrics
                .preprocess
                .observe(timings.preprocess / timings.runs as u32);
            self.metrics
                .postprocess
                .observe(timings.postprocess / timings.runs as u32);
        }
        s.new_tracks.clear();
        for (k, (ci, frame)) in batch.frames.iter().enumerate() {
            // The camera may have been taken away while its frame was at a detector.
            let Some(cam) = self.cameras.iter_mut().find(|c| c.key == *ci) else {
                continue;
            };
            s.track_dets.clear();
            if let Some(dets) = batch.detections.get(k) {
                s.track_dets.extend(
                    dets.iter()
                        .map(|d| vidar_tracker::Detection::new(d.bbox, d.score)),
                );
            }
            let res = match cam.tracker.update(frame.seq, &s.track_dets) {
                Ok(r) => r,
                Err(e) => {
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(camera = %cam.source.camera(), error = %e, "tracker refused a frame");
                    continue;
                }
            };
            let now = frame.captured_ms();
            let (fw, fh) = (frame.width as f32, frame.height as f32);
            s.frame_boxes.clear();
            s.frame_boxes
                .extend(s.track_dets.iter().map(|d| d.bbox.clip(fw, fh)));
            let mut confirmed = 0;
            for tr in &res.tracks {
                let Some(det) = tr.detection else {
                    continue;
                };
                confirmed += 1;
                let bbox = tr.bbox.clip(fw, fh);
                let entry = cam.open.entry(tr.id).or_insert_with(|| OpenTrack {
                    identity: None,
                    pending: false,
                    settled: false,
                    first_ms: now,
                    last_ms: now,
                    path: Vec::with_capacity(64),
                    born_ms: now,
                    crops_sent: 0,
                    best_sent: 0.0,
                    since_sent: 0,
                });
                entry.last_ms = now;
                entry.path.push((now, bbox));
                entry.since_sent = entry.since_sent.saturating_add(1);
                if entry.pending || bbox.w < 8.0 || bbox.h < 16.0 {
                    continue;
                }
                // Quality from the detection's own box (the filtered box lags).
                let (dbox, score) = s
                    .track_dets
                    .get(det)
                    .map_or((bbox, 0.5), |d| (d.bbox.clip(fw, fh), d.score));
                let q = crop_policy::quality(&dbox, score, fw, fh, &s.frame_boxes);
                if crop_policy::wanted(
                    q,
                    entry.crops_sent,
                    entry.best_sent,
                    entry.since_sent,
                    entry.identity.is_some() && entry.settled,
                ) {
                    entry.pending = true;
                    entry.crops_sent += 1;
                    entry.best_sent = entry.best_sent.max(q);
                    entry.since_sent = 0;
                    let decide = entry.identity.is_none()
                        && now - entry.born_ms >= crop_policy::DECIDE_AFTER_MS;
                    s.new_tracks.push((
                        k,
                        *ci,
                        TrackCrop {
                            track: tr.id,
                            bbox: dbox,
                            quality: q,
                            first_ms: entry.born_ms,
                            decide,
                        },
                    ));
                }
            }
            if let Some(tx) = &self.observer {
                let boxes = res
                    .tracks
                    .iter()
                    .filter(|t| t.detection.is_some())
                    .map(|t| t.bbox.clip(fw, fh))
                    .collect();
                // A reader that went away only ends the observation.
                let _ = tx.send(FrameBoxes {
                    camera: cam.source.camera().clone(),
                    seq: frame.seq,
                    boxes,
                });
            }
            cam.metrics.tracks.store(confirmed, Ordering::Relaxed);
            cam.metrics
                .persons_seen
                .fetch_add(confirmed, Ordering::Relaxed);
            for ended in &res.ended {
                let camera = cam.source.camera().clone();
                if let Some(mut open) = cam.open.remove(&ended.id) {
                    if open.crops_sent > 0 {
                        self.identifier.ended(*ci, ended.id, open.last_ms);
                    }
                    self.recorder
                        .sighting(open.take_sighting(&camera, ended.id));
                }
            }
            cam.metrics.analysed.fetch_add(1, Ordering::Relaxed);
            cam.metrics.detected.fetch_add(1, Ordering::Relaxed);
            cam.coast();
        }
        for (ci, frame) in &batch.frames {
            if let Some(cam) = self.cameras.iter().find(|c| c.key == *ci) {
                cam.metrics.latency.observe(frame.age());
                cam.metrics.samples.record(frame.pts);
            }
            self.jobs.offer(frame);
        }
        self.identify(&mut batch.frames, s);
        self.detectors.recycle(batch);
    }

    /// Sends a frame to the tile encoder when its camera's tile is due.
    fn maybe_tile(&mut self, key: usize, frame: Frame) {
        let Some(sink) = &self.tiles else {
            return;
        };
        let Some(cam) = self.cameras.iter_mut().find(|c| c.key == key) else {
            return;
        };
        if cam.last_tile.is_some_and(|t| t.elapsed() < sink.every) {
            return;
        }
        let now = frame.captured_ms();
        let boxes = cam
            .open
            .iter()
            .filter(|(_, o)| o.last_ms == now)
            .filter_map(|(id, o)| o.path.last().map(|(_, b)| (*b, *id, o.identity)))
            .collect();
        cam.last_tile = Some(Instant::now());
        // A busy encoder skips this tile; the next frame will do.
        let _ = sink.tx.try_send(TileFrame { frame, boxes });
    }

    /// Hands frames with tracks that need an identity to the re-ID worker;
    /// when it is busy the tracks are marked for another try.
    fn identify(&mut self, frames: &mut Vec<(usize, Frame)>, s: &mut Scratch) {
        for (k, (ci, frame)) in frames.drain(..).enumerate() {
            if !s.new_tracks.iter().any(|t| t.0 == k) {
                self.maybe_tile(ci, frame);
                continue;
            }
            let tracks: Vec<TrackCrop> = s
                .new_tracks
                .iter()
                .filter(|t| t.0 == k)
                .map(|t| t.2)
                .collect();
            if tracks.is_empty() {
                continue;
            }
            if let Some(refused) = self.identifier.offer(Job {
                camera: ci,
                frame,
                tracks,
            }) {
                for t in refused {
                    if let Some(open) = self
                        .cameras
                        .iter_mut()
                        .find(|c| c.key == ci)
                        .and_then(|c| c.open.get_mut(&t.track))
                    {
                        // Not embedded: it does not count.
                        open.pending = false;
                        open.crops_sent = open.crops_sent.saturating_sub(1);
                    }
                }
            }
        }
    }

    /// Where `camera` is in the list.
    fn position(&self, camera: &vidar_protocol::CameraId) -> Option<usize> {
        self.cameras
            .iter()
            .position(|c| c.source.camera() == camera)
    }

    /// Publishes the camera list for metrics and status.
    fn publish_cameras(&self) {
        self.registry.set(
            self.cameras
                .iter()
                .map(|c| (c.source.camera().clone(), Arc::clone(&c.metrics)))
                .collect(),
        );
    }

    /// Adds and removes cameras as told.
    fn apply_controls(&mut self) {
        let Some(rx) = self.control.take() else {
            return;
        };
        let mut changed = false;
        while let Ok(c) = rx.try_recv() {
            changed = true;
            match c {
                Control::Add(slot) => {
                    let camera = slot.source.camera().clone();
                    if let Some(k) = self.position(&camera) {
                        // Replaced (e.g. a new source URL): the old one ends first.
                        self.retire(k);
                    }
                    tracing::info!(camera = %camera, "camera added");
                    let mut slot = *slot;
                    slot.jobs = Some(Arc::clone(&self.jobs));
                    slot.observer.clone_from(&self.observer);
                    self.cameras.push(slot);
                }
                Control::Remove(camera) => {
                    if let Some(k) = self.position(&camera) {
                        self.retire(k);
                        tracing::info!(camera = %camera, "camera removed");
                    }
                }
            }
        }
        self.control = Some(rx);
        if changed {
            self.publish_cameras();
        }
    }

    /// Records every open track of camera `k` and stops its ingest.
    fn retire(&mut self, k: usize) {
        let mut cam = self.cameras.remove(k);
        let camera = cam.source.camera().clone();
        drop(cam.tracker.flush());
        for (track, mut open) in cam.open.drain() {
            if open.crops_sent > 0 {
                self.identifier.ended(cam.key, track, open.last_ms);
            }
            self.recorder.sighting(open.take_sighting(&camera, track));
        }
        // Dropping the ingest stops its pipeline and supervisor thread.
    }

    /// Applies the identities the re-ID worker decided, and tells it which
    /// tracks ended.
    fn collect_identities(&mut self) {
        for r in self.identifier.results() {
            apply_identity(&mut self.cameras, r);
        }
        self.identifier.flush_ended();
    }

    /// Splits open tracks longer than [`MAX_SIGHTING`] into a recorded
    /// sighting (a minted identity that may still join waits, see
    /// `OpenTrack::due`).
    fn expire_long_tracks(&mut self) {
        let limit = i64::try_from(MAX_SIGHTING.as_millis()).unwrap_or(i64::MAX);
        for cam in &mut self.cameras {
            let camera = cam.source.camera().clone();
            for (track, open) in cam.open.iter_mut() {
                if open.due(limit, crop_policy::MAX_CROPS) {
                    self.recorder.sighting(open.take_sighting(&camera, *track));
                }
            }
        }
    }

    /// Ends every open track and records it (shutdown).
    fn finish(mut self, s: &mut Scratch) {
        for done in self.detectors.drain() {
            self.finish_batch(done, s, false);
        }
        for r in self.identifier.finish() {
            apply_identity(&mut self.cameras, r);
        }
        for cam in &mut self.cameras {
            let camera = cam.source.camera().clone();
            // Flushing ends every track; record all that were open.
            drop(cam.tracker.flush());
            for (track, mut open) in cam.open.drain() {
                self.recorder.sighting(open.take_sighting(&camera, track));
            }
        }
        self.recorder.close();
    }
}

/// Gives an open track the identity the re-ID worker decided for it.
fn apply_identity(cameras: &mut [CameraSlot], r: crate::identify::Identified) {
    if let Some(open) = cameras
        .iter_mut()
        .find(|c| c.key == r.camera)
        .and_then(|c| c.open.get_mut(&r.track))
    {
        if r.identity.is_some() {
            open.identity = r.identity;
            open.settled = r.settled;
        }
        open.pending = false;
    }
}
