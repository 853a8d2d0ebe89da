//! Re-identification on its own dedicated thread, so that embedding crops of
//! new tracks overlaps with detecting the next frames instead of delaying them.
//!
//! Identity is decided per track, not per crop. The analysis thread moves a
//! frame (no pixel copy: the frame owns its decoded buffer) with the boxes of
//! the tracks whose crop in it is worth embedding (chosen by quality: size,
//! detection score, not truncated, not overlapping another person; again when
//! the view improves) to the worker; at most [`QUEUE`] such jobs wait, beyond
//! that the job is not sent and those tracks are tried again on a later frame.
//! The worker embeds the crops, keeps a quality-weighted mean per track, and
//! once a track has [`MIN_CROPS`] crops (or the analysis asks, for a track
//! that has been on screen a while) decides its identity from that mean in the
//! gallery (threshold, margin over the runner-up, never an identity held by a
//! concurrent track on the camera, never a physically impossible one). It
//! records new identities (with the model tag), keeps the track's best crop as
//! its snapshot, sends each (camera, track, identity) back, and when the
//! analysis reports the track ended, closes its appearance and folds its final
//! mean into the identity's prototypes.
//!
//! In a cluster the same worker also: sends the crops of a camera whose plan
//! names another node's re-ID service there (JPEG crops, within the plan's
//! bandwidth share, falling back to local embedding on timeout or refusal);
//! serves other nodes' crops; keeps the bounded replica of identities other
//! nodes announce; applies the master's merges; and announces the identities
//! it mints. The gallery has one owner, this thread, so none of this locks.

use crate::metrics::NodeMetrics;
use crate::recorder::{crop_jpeg, snapshot_jpeg, Recorder};
use std::collections::HashMap;
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
use vidar_reid::{
    Assignment, Crop, Embedder, Embedding, Gallery, Identity, Origin, TrackQuery, OPEN,
};

/// Local jobs waiting for the worker before new ones are refused.
pub const QUEUE: usize = 4;
/// Crops of a track embedded before its identity is decided.
pub const MIN_CROPS: u32 = 2;
/// Tracks followed at once by the worker (local and remote); the stalest goes.
const MAX_TRACKS: usize = 4096;
/// A remote track not heard of for this long is closed, ms.
const REMOTE_TRACK_IDLE_MS: u64 = 10_000;
/// A remote track this old (capture time) is decided with one crop, ms.
const REMOTE_DECIDE_AFTER_MS: u64 = 1_000;
/// A better snapshot is written when its quality beats the written one by this factor.
const SNAPSHOT_GAIN: f32 = 1.25;
/// Inputs of every kind waiting for the worker.
const INBOX: usize = 256;
/// Longest side of a crop sent to another node, pixels (the embedder's input
/// is smaller; this keeps detail for it while bounding bandwidth).
pub const REMOTE_CROP_SIDE: u32 = 160;

/// One track's crop in a frame.
#[derive(Debug, Clone, Copy)]
pub struct TrackCrop {
    /// Track id.
    pub track: u64,
    /// Its box in the frame.
    pub bbox: BBox,
    /// Crop quality, 0..1 (the weight of its embedding in the track's mean).
    pub quality: f32,
    /// When the track was first seen, ms.
    pub first_ms: u64,
    /// Decide the identity now even with fewer than [`MIN_CROPS`] crops.
    pub decide: bool,
}

/// Crops of one frame to identify.
pub struct Job {
    /// Key of the camera's slot in the analysis.
    pub camera: usize,
    /// The frame the boxes are in.
    pub frame: Frame,
    /// The tracks' crops.
    pub tracks: Vec<TrackCrop>,
}

/// A track's crop was handled: its identity when decided.
#[derive(Debug, Clone, Copy)]
pub struct Identified {
    /// Key of the camera's slot in the analysis.
    pub camera: usize,
    /// Track id.
    pub track: u64,
    /// Identity assigned, when decided by this crop (None: more crops needed, or decided earlier).
    pub identity: Option<IdentityId>,
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
    /// A local track ended at `last_ms`.
    Ended {
        camera: usize,
        track: u64,
        last_ms: u64,
    },
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
    /// Track ends not yet taken by a full inbox: (camera key, track, last ms).
    ended: Vec<(usize, u64, u64)>,
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
        let model = embedder.model_tag().to_owned();
        let mut worker = Worker {
            embedder,
            model,
            tracks: HashMap::new(),
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
                        Input::Ended {
                            camera,
                            track,
                            last_ms,
                        } => worker.ended(TrackKey::Local(camera, track), Some(last_ms)),
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
            ended: Vec::new(),
        })
    }

    /// Where cluster inputs go.
    pub fn inbox(&self) -> Inbox {
        self.inbox.clone()
    }

    /// Tells the worker a local track ended (so its identity's appearance
    /// closes). Never blocks: when the inbox is full the end is kept and
    /// handed over by a later call or [`Identifier::flush_ended`].
    pub fn ended(&mut self, camera: usize, track: u64, last_ms: u64) {
        self.ended.push((camera, track, last_ms));
        self.flush_ended();
    }

    /// Hands over the track ends the inbox could not take before.
    pub fn flush_ended(&mut self) {
        while let Some(&(camera, track, last_ms)) = self.ended.first() {
            let sent = self.inbox.tx.try_send(Input::Ended {
                camera,
                track,
                last_ms,
            });
            if sent.is_err() {
                break; // full: next round
            }
            self.ended.remove(0);
        }
    }

    /// Offers a job; when the worker is busy, returns the job's tracks (to be
    /// tried again on a later frame) and drops the frame.
    pub fn offer(&self, job: Job) -> Option<Vec<TrackCrop>> {
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

/// Which track: a local one (camera slot key, track id) or another node's
/// (its camera and track id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TrackKey {
    Local(usize, u64),
    Remote(CameraId, u64),
}

/// What the worker knows of a track.
struct TrackState {
    camera: CameraId,
    track: u64,
    /// Quality-weighted sum of its crops' embeddings.
    sum: Vec<f32>,
    crops: u32,
    /// Crops when the identity was decided.
    crops_at_decision: u32,
    identity: Option<IdentityId>,
    first_ms: u64,
    last_ms: u64,
    /// Best crop so far: quality, capture time, JPEG.
    best: Option<(f32, u64, Vec<u8>)>,
    /// Quality of the snapshot written.
    written: f32,
}

impl TrackState {
    fn mean(&self) -> Embedding {
        Embedding::normalized(&self.sum)
    }
}

struct Worker {
    embedder: Box<dyn Embedder>,
    /// The embedder's model tag.
    model: String,
    tracks: HashMap<TrackKey, TrackState>,
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
            .map(|t| Crop {
                frame,
                bbox: t.bbox,
            })
            .collect();
        if !self.embed(&crops) {
            return;
        }
        // Taken out for the loop (the calls need `&mut self`), put back after.
        let embeddings = std::mem::take(&mut self.embeddings);
        for (t, emb) in job.tracks.iter().zip(&embeddings) {
            let key = TrackKey::Local(job.camera, t.track);
            let snapshots = self.snapshots;
            let snapshot = || {
                if snapshots {
                    snapshot_jpeg(&frame, &t.bbox)
                } else {
                    None
                }
            };
            let decided = self.add_crop(
                key, &camera, t.track, t.first_ms, now, emb, t.quality, t.decide, &snapshot,
            );
            let _ = out.send(Identified {
                camera: job.camera,
                track: t.track,
                identity: decided.map(|d| d.0),
            });
        }
        self.embeddings = embeddings;
    }

    /// Folds one crop's embedding into its track; decides the track's
    /// identity when due. Returns the identity when it was decided by this
    /// call (with its similarity, and whether it was minted).
    #[allow(clippy::too_many_arguments)]
    fn add_crop(
        &mut self,
        key: TrackKey,
        camera: &CameraId,
        track: u64,
        first_ms: u64,
        now: u64,
        emb: &Embedding,
        quality: f32,
        decide: bool,
        snapshot: &dyn Fn() -> Option<Vec<u8>>,
    ) -> Option<(IdentityId, f32, bool)> {
        if !self.tracks.contains_key(&key) && self.tracks.len() >= MAX_TRACKS {
            self.evict_stalest();
        }
        let state = self
            .tracks
            .entry(key.clone())
            .or_insert_with(|| TrackState {
                camera: camera.clone(),
                track,
                sum: vec![0.0; emb.len()],
                crops: 0,
                crops_at_decision: 0,
                identity: None,
                first_ms: first_ms.min(now),
                last_ms: now,
                best: None,
                written: 0.0,
            });
        if state.sum.len() != emb.len() {
            return None;
        }
        let w = quality.clamp(0.05, 1.0);
        for (s, x) in state.sum.iter_mut().zip(emb.as_slice()) {
            *s += w * x;
        }
        state.crops += 1;
        state.last_ms = state.last_ms.max(now);
        if state.best.as_ref().is_none_or(|b| quality > b.0) {
            if let Some(jpeg) = snapshot() {
                state.best = Some((quality, now, jpeg));
            }
        }
        if let Some(id) = state.identity {
            // Decided earlier: keep its appearance open (the final mean is
            // folded in when the track ends).
            let q_first = state.first_ms;
            self.gallery.observe(
                id,
                &TrackQuery {
                    embedding: emb,
                    camera,
                    track,
                    first_ms: q_first,
                    last_ms: OPEN,
                },
            );
            return None;
        }
        if state.crops < MIN_CROPS && !decide {
            return None;
        }
        self.decide(&key)
    }

    /// Decides the identity of the track `key` from its mean embedding.
    fn decide(&mut self, key: &TrackKey) -> Option<(IdentityId, f32, bool)> {
        let state = self.tracks.get_mut(key)?;
        let mean = state.mean();
        let q = TrackQuery {
            embedding: &mean,
            camera: &state.camera,
            track: state.track,
            first_ms: state.first_ms,
            last_ms: OPEN,
        };
        let assignment = match self.gallery.assign_track(&q) {
            Ok(a) => a,
            Err(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "gallery refused an embedding");
                return None;
            }
        };
        let id = assignment.id();
        state.identity = Some(id);
        state.crops_at_decision = state.crops;
        let (camera, first_ms) = (state.camera.clone(), state.first_ms);
        let snapshot = state.best.as_ref().map(|b| (b.0, b.1, b.2.clone()));
        if let Some((quality, t, jpeg)) = snapshot {
            state.written = quality;
            self.recorder.snapshot(id, &camera, t, jpeg);
        }
        let (similarity, minted) = match assignment {
            Assignment::Matched { similarity, .. } => (similarity, false),
            Assignment::New { .. } => {
                self.metrics.identities.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(camera = %camera, identity = %id, "new identity");
                self.recorder
                    .identity(id, &camera, first_ms, mean.as_slice(), &self.model);
                if let Some(cluster) = &self.cluster {
                    cluster.announce(&IdentityAnnounce {
                        identity: id,
                        node: cluster.node().clone(),
                        camera: camera.clone(),
                        seen_ms: first_ms,
                        embedding: mean.as_slice().to_vec(),
                        model: self.model.clone(),
                    });
                }
                (1.0, true)
            }
        };
        Some((id, similarity, minted))
    }

    /// The track `key` ended (at `last_ms` when known): closes its
    /// appearance, folds its final mean into the identity, writes a better
    /// snapshot when the view improved.
    fn ended(&mut self, key: TrackKey, last_ms: Option<u64>) {
        let Some(state) = self.tracks.remove(&key) else {
            return;
        };
        let Some(id) = state.identity else {
            return;
        };
        let last = last_ms.unwrap_or(state.last_ms).max(state.last_ms);
        self.gallery
            .close_track(id, &state.camera, state.track, last);
        if state.crops > state.crops_at_decision {
            if let Err(e) = self.gallery.refine(id, &state.mean()) {
                tracing::debug!(identity = %id, error = %e, "track mean not folded in");
            }
        }
        if let Some((quality, t, jpeg)) = state.best {
            if quality > state.written * SNAPSHOT_GAIN {
                self.recorder.snapshot(id, &state.camera, t, jpeg);
            }
        }
    }

    /// Closes the track heard of least recently (the worker's table is full).
    fn evict_stalest(&mut self) {
        if let Some(k) = self
            .tracks
            .iter()
            .min_by_key(|(_, s)| s.last_ms)
            .map(|(k, _)| k.clone())
        {
            self.ended(k, None);
        }
    }

    /// Closes remote tracks not heard of for [`REMOTE_TRACK_IDLE_MS`].
    fn close_idle_remote(&mut self, now: u64) {
        let idle: Vec<TrackKey> = self
            .tracks
            .iter()
            .filter(|(k, s)| {
                matches!(k, TrackKey::Remote(..))
                    && now.saturating_sub(s.last_ms) > REMOTE_TRACK_IDLE_MS
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            self.ended(k, None);
        }
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
        for t in &job.tracks {
            let Some(jpeg) = crop_jpeg(frame, &t.bbox, REMOTE_CROP_SIDE, 90) else {
                continue;
            };
            let (w, h) = jpeg_size(&t.bbox, REMOTE_CROP_SIDE);
            crops.push(WireCrop {
                camera: camera.clone(),
                track: TrackId(t.track),
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
                for t in &job.tracks {
                    let identity = reply
                        .results
                        .iter()
                        .find(|a| a.track.0 == t.track)
                        .map(|a| a.identity);
                    let _ = out.send(Identified {
                        camera: job.camera,
                        track: t.track,
                        identity,
                    });
                }
                true
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
        let mut latest = 0;
        for (i, (c, emb)) in request.crops.iter().zip(&embeddings).enumerate() {
            let frame = frames[i];
            let full = crops[i].bbox;
            let snapshots = self.snapshots;
            let snapshot = || {
                if snapshots {
                    snapshot_jpeg(&frame, &full)
                } else {
                    None
                }
            };
            // Another node's tracks: the same per-track decision, keyed by
            // camera and track; a track on screen for a while is decided
            // with the crops it has.
            let key = TrackKey::Remote(c.camera.clone(), c.track.0);
            let old = self
                .tracks
                .get(&key)
                .is_some_and(|s| c.capture_ms.saturating_sub(s.first_ms) >= REMOTE_DECIDE_AFTER_MS);
            let known = self.tracks.get(&key).and_then(|s| s.identity);
            let decided = self.add_crop(
                key,
                &c.camera,
                c.track.0,
                c.capture_ms,
                c.capture_ms,
                emb,
                1.0,
                old,
                &snapshot,
            );
            latest = latest.max(c.capture_ms);
            let answer = match (decided, known) {
                (Some((id, similarity, minted)), _) => Some((id, similarity, minted)),
                (None, Some(id)) => Some((id, 1.0, false)),
                (None, None) => None,
            };
            if let Some((identity, similarity, minted)) = answer {
                results.push(ReidAnswer {
                    camera: c.camera.clone(),
                    track: c.track,
                    identity,
                    similarity,
                    minted,
                });
            }
        }
        self.embeddings = embeddings;
        self.close_idle_remote(latest);
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
        let ident = Identity::single(
            a.identity,
            Embedding::normalized(&a.embedding),
            &a.model,
            a.camera,
            a.seen_ms,
            Origin::Remote,
        );
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
