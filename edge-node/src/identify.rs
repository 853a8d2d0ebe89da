//! Re-identification on its own dedicated thread, so that embedding crops of
//! new tracks overlaps with detecting the next frames instead of delaying them.
//!
//! The analysis thread moves a frame (no pixel copy: the frame owns its
//! decoded buffer) with the boxes of its tracks that still lack an identity
//! to the worker; at most [`QUEUE`] such jobs wait, beyond that the job is not
//! sent and those tracks are simply tried again on a later frame. The worker
//! crops, embeds, assigns identities in the node's gallery, records new
//! identities and their snapshots, and sends each (camera, track, identity)
//! back.
//!
//! In a cluster the same worker also: sends the crops of a camera whose plan
//! names another node's re-ID service there (JPEG crops, within the plan's
//! bandwidth share, falling back to local embedding on timeout or refusal);
//! serves other nodes' crops; keeps the bounded replica of identities other
//! nodes announce; applies the master's merges; and announces the identities
//! it mints. The gallery has one owner, this thread, so none of this locks.

use crate::metrics::NodeMetrics;
use crate::recorder::{crop_jpeg, snapshot_jpeg, Recorder};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, UNIX_EPOCH};
use vidar_detectors::RgbFrame;
use vidar_pipeline::Frame;
use vidar_protocol::messages::{
    Crop as WireCrop, CropEncoding, IdentityAnnounce, MergeAnnounce, ReidAnswer, ReidReply,
    ReidRequest,
};
use vidar_protocol::{BBox, CameraId, IdentityId, NodeId, TrackId};
use vidar_reid::{Assignment, Crop, Embedder, Embedding, Gallery, Identity, Origin};

/// Local jobs waiting for the worker before new ones are refused.
pub const QUEUE: usize = 4;
/// Inputs of every kind waiting for the worker.
const INBOX: usize = 256;
/// Longest side of a crop sent to another node, pixels (the embedder's input
/// is smaller; this keeps detail for it while bounding bandwidth).
pub const REMOTE_CROP_SIDE: u32 = 160;

/// Crops of one frame to identify.
pub struct Job {
    /// Key of the camera's slot in the analysis.
    pub camera: usize,
    /// The frame the boxes are in.
    pub frame: Frame,
    /// (track id, box) of each track to identify.
    pub tracks: Vec<(u64, BBox)>,
}

/// An identity decided for a track.
#[derive(Debug, Clone, Copy)]
pub struct Identified {
    /// Key of the camera's slot in the analysis.
    pub camera: usize,
    /// Track id.
    pub track: u64,
    /// Identity assigned.
    pub identity: IdentityId,
}

/// Another node's crops to identify here, and how to answer.
pub struct RemoteJob {
    /// The request.
    pub request: ReidRequest,
    /// Sends the reply back.
    pub reply: Box<dyn FnOnce(ReidReply) + Send>,
}

/// What the cluster gives the re-ID worker (implemented over zenoh in
/// `cluster.rs`; absent on a single node).
pub trait ClusterReid: Send {
    /// This node.
    fn node(&self) -> &NodeId;
    /// The node whose re-ID service the plan names for `camera`, when it is
    /// not this one.
    fn remote_for(&self, camera: &CameraId) -> Option<NodeId>;
    /// Takes `bytes` from the bandwidth share towards `to`; false when the
    /// share is used up for now.
    fn take_bandwidth(&self, to: &NodeId, bytes: usize) -> bool;
    /// Asks `to` to identify the crops.
    fn identify_remote(&self, to: &NodeId, request: &ReidRequest) -> Result<ReidReply, String>;
    /// Tells every node about an identity minted here.
    fn announce(&self, identity: &IdentityAnnounce);
}

enum Input {
    Local(Job),
    Remote(RemoteJob),
    Announce(IdentityAnnounce),
    Merge(MergeAnnounce),
    Stop,
}

/// Hands cluster inputs to the re-ID worker (cloneable, for zenoh callbacks).
#[derive(Clone)]
pub struct Inbox {
    tx: SyncSender<Input>,
    metrics: Arc<NodeMetrics>,
}

impl Inbox {
    /// Queues `input`; when the worker is full (or gone) counts it and gives it back.
    // The input comes back whole so a remote job's reply can still be sent.
    #[allow(clippy::result_large_err)]
    fn send(&self, input: Input) -> Result<(), Input> {
        self.tx.try_send(input).map_err(|e| {
            self.metrics.inputs_dropped.fetch_add(1, Ordering::Relaxed);
            match e {
                TrySendError::Full(i) | TrySendError::Disconnected(i) => i,
            }
        })
    }
    /// Queues another node's crops; gives the job back when the worker is full.
    pub fn remote(&self, job: RemoteJob) -> Result<(), RemoteJob> {
        match self.send(Input::Remote(job)) {
            Ok(()) => Ok(()),
            Err(Input::Remote(job)) => Err(job),
            // `send` gives back what it was given, so nothing else comes back.
            Err(_) => Ok(()),
        }
    }
    /// Queues an identity another node announced (dropped, counted, when full).
    pub fn announce(&self, a: IdentityAnnounce) {
        let _ = self.send(Input::Announce(a));
    }
    /// Queues a merge decided by the master (dropped, counted, when full).
    pub fn merge(&self, m: MergeAnnounce) {
        let _ = self.send(Input::Merge(m));
    }
}

/// Handle of the re-ID worker.
pub struct Identifier {
    inbox: Inbox,
    pending: Arc<AtomicUsize>,
    results: Receiver<Identified>,
    thread: Option<JoinHandle<()>>,
}

impl Identifier {
    /// Starts the worker thread.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        node: NodeId,
        embedder: Box<dyn Embedder>,
        gallery: Gallery,
        recorder: Recorder,
        metrics: Arc<NodeMetrics>,
        snapshots: bool,
        cluster: Option<Box<dyn ClusterReid>>,
    ) -> std::io::Result<Identifier> {
        let (tx, rx) = mpsc::sync_channel::<Input>(INBOX);
        let (out, results) = mpsc::channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let mut worker = Worker {
            embedder,
            gallery,
            recorder,
            metrics: Arc::clone(&metrics),
            snapshots,
            embeddings: Vec::new(),
            cluster,
            pending: Arc::clone(&pending),
            node,
        };
        let thread = std::thread::Builder::new()
            .name("reid".into())
            .spawn(move || {
                while let Ok(input) = rx.recv() {
                    match input {
                        Input::Local(job) => {
                            worker.identify(job, &out);
                            worker.pending.fetch_sub(1, Ordering::Relaxed);
                        }
                        Input::Remote(job) => worker.serve(job),
                        Input::Announce(a) => worker.replica(a),
                        Input::Merge(m) => {
                            worker.gallery.merge(m.from, m.into);
                        }
                        Input::Stop => break,
                    }
                }
            })?;
        Ok(Identifier {
            inbox: Inbox { tx, metrics },
            pending,
            results,
            thread: Some(thread),
        })
    }

    /// Where cluster inputs go.
    pub fn inbox(&self) -> Inbox {
        self.inbox.clone()
    }

    /// Offers a job; when the worker is busy, returns the job's tracks (to be
    /// tried again on a later frame) and drops the frame.
    pub fn offer(&self, job: Job) -> Option<Vec<(u64, BBox)>> {
        if self.thread.is_none() || self.pending.load(Ordering::Relaxed) >= QUEUE {
            return Some(job.tracks);
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        match self.inbox.tx.try_send(Input::Local(job)) {
            Ok(()) => None,
            Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) => {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                match back {
                    Input::Local(job) => Some(job.tracks),
                    _ => None,
                }
            }
        }
    }

    /// Identities decided since the last call.
    pub fn results(&self) -> impl Iterator<Item = Identified> + '_ {
        self.results.try_iter()
    }

    /// Finishes the queued jobs, stops the worker and returns the last results.
    pub fn finish(&mut self) -> Vec<Identified> {
        if let Some(t) = self.thread.take() {
            let _ = self.inbox.tx.send(Input::Stop);
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
    cluster: Option<Box<dyn ClusterReid>>,
    pending: Arc<AtomicUsize>,
    node: NodeId,
}

fn ms_of(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Worker {
    fn identify(&mut self, job: Job, out: &mpsc::Sender<Identified>) {
        let f = &job.frame;
        let Ok(frame) = RgbFrame::new(f.width, f.height, f.stride, f.pixels()) else {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let camera = f.camera.clone();
        let now = ms_of(f.capture_time);
        if self.identify_elsewhere(&job, &frame, now, out) {
            return;
        }
        let crops: Vec<Crop<'_>> = job
            .tracks
            .iter()
            .map(|(_, bbox)| Crop { frame, bbox: *bbox })
            .collect();
        if !self.embed(&crops) {
            return;
        }
        // Taken out for the loop (assign needs `&mut self`), put back after.
        let embeddings = std::mem::take(&mut self.embeddings);
        for ((track, bbox), emb) in job.tracks.iter().zip(&embeddings) {
            let Some((assignment, _)) =
                self.assign(emb, &camera, now, &|| snapshot_jpeg(&frame, bbox))
            else {
                continue;
            };
            let _ = out.send(Identified {
                camera: job.camera,
                track: *track,
                identity: assignment.id(),
            });
        }
        self.embeddings = embeddings;
    }

    /// Embeds crops into `self.embeddings`; false (logged, counted) on failure.
    fn embed(&mut self, crops: &[Crop<'_>]) -> bool {
        let t0 = Instant::now();
        if let Err(e) = self.embedder.embed_into(crops, &mut self.embeddings) {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "re-ID embedding failed; the tracks will be tried again");
            return false;
        }
        self.metrics.reid_inference.observe(t0.elapsed());
        self.metrics
            .crops
            .fetch_add(crops.len() as u64, Ordering::Relaxed);
        let _ = self.embedder.take_timings();
        true
    }

    /// Matches or mints; a new identity is recorded (with a snapshot) and
    /// announced to the cluster.
    fn assign(
        &mut self,
        emb: &Embedding,
        camera: &CameraId,
        now: u64,
        snapshot: &dyn Fn() -> Option<Vec<u8>>,
    ) -> Option<(Assignment, f32)> {
        let assignment = match self.gallery.assign(emb, camera, now) {
            Ok(a) => a,
            Err(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "gallery refused an embedding");
                return None;
            }
        };
        let similarity = match assignment {
            Assignment::Matched { similarity, .. } => similarity,
            Assignment::New { id, .. } => {
                self.metrics.identities.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(camera = %camera, identity = %id, "new identity");
                self.recorder.identity(id, camera, now, emb.as_slice());
                if self.snapshots {
                    if let Some(jpeg) = snapshot() {
                        self.recorder.snapshot(id, camera, now, jpeg);
                    }
                }
                if let Some(cluster) = &self.cluster {
                    cluster.announce(&IdentityAnnounce {
                        identity: id,
                        node: cluster.node().clone(),
                        camera: camera.clone(),
                        seen_ms: now,
                        embedding: emb.as_slice().to_vec(),
                    });
                }
                1.0
            }
        };
        Some((assignment, similarity))
    }

    /// When the plan sends this camera's crops to another node: sends them
    /// and reports the answers; false when they must be identified here
    /// (no such plan, share used up, or the request failed).
    fn identify_elsewhere(
        &mut self,
        job: &Job,
        frame: &RgbFrame<'_>,
        now: u64,
        out: &mpsc::Sender<Identified>,
    ) -> bool {
        let Some(cluster) = &self.cluster else {
            return false;
        };
        let camera = &job.frame.camera;
        let Some(to) = cluster.remote_for(camera) else {
            return false;
        };
        let mut crops = Vec::with_capacity(job.tracks.len());
        for (track, bbox) in &job.tracks {
            let Some(jpeg) = crop_jpeg(frame, bbox, REMOTE_CROP_SIDE, 90) else {
                continue;
            };
            let (w, h) = jpeg_size(bbox, REMOTE_CROP_SIDE);
            crops.push(WireCrop {
                camera: camera.clone(),
                track: TrackId(*track),
                capture_ms: now,
                width: w,
                height: h,
                encoding: CropEncoding::Jpeg,
                data: jpeg,
            });
        }
        if crops.is_empty() {
            return false;
        }
        let bytes: usize = crops.iter().map(|c| c.data.len()).sum();
        if !cluster.take_bandwidth(&to, bytes) {
            self.metrics
                .crops_throttled
                .fetch_add(crops.len() as u64, Ordering::Relaxed);
            return false;
        }
        let request = ReidRequest {
            from: cluster.node().clone(),
            request_id: job.frame.seq,
            crops,
        };
        match cluster.identify_remote(&to, &request) {
            Ok(reply) if reply.error.is_none() => {
                self.metrics
                    .crops_remote
                    .fetch_add(reply.results.len() as u64, Ordering::Relaxed);
                for a in &reply.results {
                    let _ = out.send(Identified {
                        camera: job.camera,
                        track: a.track.0,
                        identity: a.identity,
                    });
                }
                !reply.results.is_empty()
            }
            Ok(reply) => {
                self.remote_failed(&to, reply.error.as_deref().unwrap_or("refused"));
                false
            }
            Err(e) => {
                self.remote_failed(&to, &e);
                false
            }
        }
    }

    fn remote_failed(&self, to: &NodeId, why: &str) {
        let n = self.metrics.remote_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(node = %to, error = why, failures = n, "remote re-ID failed; identified locally");
        }
    }

    /// Identifies another node's crops with this node's gallery and answers.
    fn serve(&mut self, job: RemoteJob) {
        let RemoteJob { request, reply } = job;
        let mut images = Vec::with_capacity(request.crops.len());
        for c in &request.crops {
            match decode_crop(c) {
                Ok(img) => images.push(img),
                Err(e) => {
                    reply(ReidReply {
                        request_id: request.request_id,
                        served_by: self.node.clone(),
                        results: Vec::new(),
                        error: Some(format!("crop of track {} on {}: {e}", c.track.0, c.camera)),
                    });
                    return;
                }
            }
        }
        let frames: Vec<RgbFrame<'_>> = images
            .iter()
            .filter_map(|img| {
                RgbFrame::new(
                    img.width(),
                    img.height(),
                    img.width() as usize * 3,
                    img.as_raw(),
                )
                .ok()
            })
            .collect();
        let crops: Vec<Crop<'_>> = frames
            .iter()
            .map(|f| Crop {
                frame: *f,
                bbox: BBox {
                    x: 0.0,
                    y: 0.0,
                    w: f.width() as f32,
                    h: f.height() as f32,
                },
            })
            .collect();
        if crops.len() != request.crops.len() || !self.embed(&crops) {
            reply(ReidReply {
                request_id: request.request_id,
                served_by: self.node.clone(),
                results: Vec::new(),
                error: Some("embedding failed".into()),
            });
            return;
        }
        self.metrics
            .crops_served
            .fetch_add(crops.len() as u64, Ordering::Relaxed);
        let mut results = Vec::with_capacity(crops.len());
        let embeddings = std::mem::take(&mut self.embeddings);
        for (i, (c, emb)) in request.crops.iter().zip(&embeddings).enumerate() {
            let frame = frames[i];
            let full = crops[i].bbox;
            if let Some((a, similarity)) = self.assign(emb, &c.camera, c.capture_ms, &|| {
                snapshot_jpeg(&frame, &full)
            }) {
                results.push(ReidAnswer {
                    camera: c.camera.clone(),
                    track: c.track,
                    identity: a.id(),
                    similarity,
                    minted: matches!(a, Assignment::New { .. }),
                });
            }
        }
        self.embeddings = embeddings;
        reply(ReidReply {
            request_id: request.request_id,
            served_by: self.node.clone(),
            results,
            error: None,
        });
    }

    /// Keeps another node's identity in the bounded replica.
    fn replica(&mut self, a: IdentityAnnounce) {
        if self.cluster.as_ref().is_some_and(|c| *c.node() == a.node) {
            return;
        }
        let ident = Identity {
            id: a.identity,
            embedding: Embedding::normalized(&a.embedding),
            camera: a.camera,
            first_seen_ms: a.seen_ms,
            last_seen_ms: a.seen_ms,
            sightings: 1,
            origin: Origin::Remote,
        };
        if let Err(e) = self.gallery.upsert_remote(ident) {
            tracing::debug!(identity = %a.identity, error = %e, "announced identity not kept");
        }
    }
}

/// Size of a crop of `bbox` scaled as [`crop_jpeg`] scales it.
fn jpeg_size(bbox: &BBox, max_side: u32) -> (u32, u32) {
    let (w, h) = (bbox.w.max(1.0), bbox.h.max(1.0));
    let scale = (max_side as f32 / w.max(h)).min(1.0);
    (((w * scale) as u32).max(1), ((h * scale) as u32).max(1))
}

/// Decodes a crop received from another node into RGB.
fn decode_crop(c: &WireCrop) -> Result<image::RgbImage, String> {
    match c.encoding {
        CropEncoding::Jpeg => {
            image::load_from_memory_with_format(&c.data, image::ImageFormat::Jpeg)
                .map(|i| i.to_rgb8())
                .map_err(|e| format!("not a JPEG: {e}"))
        }
        CropEncoding::Rgb8 => image::RgbImage::from_raw(c.width, c.height, c.data.clone())
            .ok_or_else(|| {
                format!(
                    "{}x{} RGB needs {} bytes, got {}",
                    c.width,
                    c.height,
                    c.width as usize * c.height as usize * 3,
                    c.data.len()
                )
            }),
    }
}
