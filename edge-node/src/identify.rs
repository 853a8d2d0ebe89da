//! Re-identification on its own dedicated thread, so that embedding crops of
//! new tracks overlaps with detecting the next frames instead of delaying them.
//!
//! The analysis thread moves a frame (no pixel copy: the frame owns its
//! decoded buffer) with the boxes of its tracks that still lack an identity
//! into a small bounded queue; when the queue is full the job is not sent and
//! those tracks are simply tried again on a later frame. The worker crops,
//! embeds, assigns identities in the node's gallery, records new identities
//! and their snapshots, and sends each (camera, track, identity) back.

use crate::metrics::NodeMetrics;
use crate::recorder::{snapshot_jpeg, Recorder};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, UNIX_EPOCH};
use vidar_detectors::RgbFrame;
use vidar_pipeline::Frame;
use vidar_protocol::{BBox, IdentityId};
use vidar_reid::{Assignment, Crop, Embedder, Embedding, Gallery};

/// Jobs waiting for the worker before new ones are refused.
pub const QUEUE: usize = 4;

/// Crops of one frame to identify.
pub struct Job {
    /// Index of the camera in the analysis.
    pub camera: usize,
    /// The frame the boxes are in.
    pub frame: Frame,
    /// (track id, box) of each track to identify.
    pub tracks: Vec<(u64, BBox)>,
}

/// An identity decided for a track.
#[derive(Debug, Clone, Copy)]
pub struct Identified {
    /// Index of the camera in the analysis.
    pub camera: usize,
    /// Track id.
    pub track: u64,
    /// Identity assigned.
    pub identity: IdentityId,
}

/// Handle of the re-ID worker.
pub struct Identifier {
    jobs: Option<SyncSender<Job>>,
    results: Receiver<Identified>,
    thread: Option<JoinHandle<()>>,
}

impl Identifier {
    /// Starts the worker thread.
    pub fn spawn(
        embedder: Box<dyn Embedder>,
        gallery: Gallery,
        recorder: Recorder,
        metrics: Arc<NodeMetrics>,
        snapshots: bool,
    ) -> std::io::Result<Identifier> {
        let (jobs, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let (tx, results) = mpsc::channel();
        let mut worker = Worker {
            embedder,
            gallery,
            recorder,
            metrics,
            snapshots,
            embeddings: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("reid".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    worker.identify(job, &tx);
                }
            })?;
        Ok(Identifier {
            jobs: Some(jobs),
            results,
            thread: Some(thread),
        })
    }

    /// Offers a job; when the worker is busy, returns the job's tracks (to be
    /// tried again on a later frame) and drops the frame.
    pub fn offer(&self, job: Job) -> Option<Vec<(u64, BBox)>> {
        let jobs = self.jobs.as_ref()?;
        match jobs.try_send(job) {
            Ok(()) => None,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Some(job.tracks),
        }
    }

    /// Identities decided since the last call.
    pub fn results(&self) -> impl Iterator<Item = Identified> + '_ {
        self.results.try_iter()
    }

    /// Finishes the queued jobs, stops the worker and returns the last results.
    pub fn finish(&mut self) -> Vec<Identified> {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("re-ID worker panicked");
            }
        }
        self.results.try_iter().collect()
    }
}

struct Worker {
    embedder: Box<dyn Embedder>,
    gallery: Gallery,
    recorder: Recorder,
    metrics: Arc<NodeMetrics>,
    snapshots: bool,
    embeddings: Vec<Embedding>,
}

impl Worker {
    fn identify(&mut self, job: Job, out: &mpsc::Sender<Identified>) {
        let f = &job.frame;
        let Ok(frame) = RgbFrame::new(f.width, f.height, f.stride, f.pixels()) else {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let crops: Vec<Crop<'_>> = job
            .tracks
            .iter()
            .map(|(_, bbox)| Crop { frame, bbox: *bbox })
            .collect();
        let t0 = Instant::now();
        if let Err(e) = self.embedder.embed_into(&crops, &mut self.embeddings) {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "re-ID embedding failed; the tracks will be tried again");
            return;
        }
        self.metrics.reid_inference.observe(t0.elapsed());
        self.metrics
            .crops
            .fetch_add(crops.len() as u64, Ordering::Relaxed);
        let _ = self.embedder.take_timings();
        let camera = f.camera.clone();
        let now = f
            .capture_time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        for ((track, bbox), emb) in job.tracks.iter().zip(&self.embeddings) {
            let assignment = match self.gallery.assign(emb, &camera, now) {
                Ok(a) => a,
                Err(e) => {
                    self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "gallery refused an embedding");
                    continue;
                }
            };
            if let Assignment::New { id, .. } = assignment {
                self.metrics.identities.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(camera = %camera, identity = %id, "new identity");
                self.recorder.identity(id, &camera, now, emb.as_slice());
                if self.snapshots {
                    if let Some(jpeg) = snapshot_jpeg(&frame, bbox) {
                        self.recorder.snapshot(id, &camera, now, jpeg);
                    }
                }
            }
            let _ = out.send(Identified {
                camera: job.camera,
                track: *track,
                identity: assignment.id(),
            });
        }
    }
}
