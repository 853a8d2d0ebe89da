//! The re-ID worker: per-track state, embedding, and identity decisions.

use super::jobs::{ClusterReid, Identified, Job};
use super::jobs::{MAX_TRACKS, MIN_CROPS, REMOTE_TRACK_IDLE_MS, SNAPSHOT_GAIN};
use crate::media::snapshot_jpeg;
use crate::recorder::Recorder;
use crate::telemetry::NodeMetrics;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self};
use std::sync::Arc;
use std::time::Instant;
use vidar_protocol::messages::{IdentityAnnounce, IdentityJoined, IdentitySeen};
use vidar_protocol::{CameraId, IdentityId, NodeId, TrackId, UnixMs};
use vidar_reid::{Assignment, Crop, Embedder, Embedding, Gallery, TrackQuery, OPEN};

/// Which track: a local one (camera slot key, track id) or another node's
/// (its camera and track id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum TrackKey {
    Local(usize, TrackId),
    Remote(CameraId, TrackId),
}

/// What the worker knows of a track.
pub(super) struct TrackState {
    pub(super) camera: CameraId,
    pub(super) track: TrackId,
    /// Quality-weighted sum of its crops' embeddings.
    pub(super) sum: Vec<f32>,
    pub(super) crops: u32,
    /// Crops when the identity was decided.
    pub(super) crops_at_decision: u32,
    pub(super) identity: Option<IdentityId>,
    pub(super) first_ms: UnixMs,
    pub(super) last_ms: UnixMs,
    /// Best crop so far: quality, capture time, JPEG.
    pub(super) best: Option<(f32, UnixMs, Vec<u8>)>,
    /// Quality of the snapshot written.
    pub(super) written: f32,
    /// Its identity was minted by its own decision: later views may still
    /// match a known identity ([`Worker::reconsider`]).
    pub(super) minted: bool,
    /// Decided before a model refresh retired its identity from the
    /// gallery: the identity is put back, from this track's views under
    /// the new model, once it has enough of them ([`TrackState::reseed`]).
    pub(super) reseed: Option<vidar_reid::Origin>,
    /// Similarity of the decision (1 for a mint).
    pub(super) similarity: f32,
    /// Its best crops for training (only with `[training] collect`).
    pub(super) samples: Vec<vidar_store::training::Sample>,
}

impl TrackState {
    /// Puts this track's identity, decided before a model refresh, back
    /// into `gallery` (of the model tagged `model`) from the track's views
    /// under the new model: the people on screen at the swap keep their
    /// identities.
    pub(super) fn reseed(&mut self, gallery: &mut vidar_reid::Gallery, model: &str) {
        let (Some(origin), Some(id)) = (self.reseed.take(), self.identity) else {
            return;
        };
        if self.crops == 0 {
            return;
        }
        self.crops_at_decision = self.crops;
        let ident = vidar_reid::Identity::single(
            id,
            self.mean(),
            model,
            self.camera.clone(),
            self.first_ms,
            origin,
        );
        if let Err(e) = gallery.restore(ident) {
            tracing::debug!(identity = %id, error = %e, "identity not put back after a model refresh");
        }
    }

    pub(super) fn mean(&self) -> Embedding {
        Embedding::normalized(&self.sum)
    }

    /// The track as the gallery sees it, with `mean` its mean embedding
    /// (still on screen: its appearance is open).
    pub(super) fn query<'a>(&'a self, mean: &'a Embedding) -> TrackQuery<'a> {
        TrackQuery {
            embedding: mean,
            camera: &self.camera,
            track: Some(self.track),
            first_ms: self.first_ms,
            last_ms: OPEN,
        }
    }
}

pub(super) struct Worker {
    pub(super) embedder: Box<dyn Embedder>,
    /// The embedder's model tag.
    pub(super) model: String,
    pub(super) tracks: HashMap<TrackKey, TrackState>,
    pub(super) gallery: Gallery,
    pub(super) recorder: Recorder,
    pub(super) metrics: Arc<NodeMetrics>,
    pub(super) snapshots: bool,
    pub(super) embeddings: Vec<Embedding>,
    pub(super) cluster: Option<Box<dyn ClusterReid>>,
    pub(super) pending: Arc<AtomicUsize>,
    pub(super) node: NodeId,
    /// Jobs whose crops are at another node, by request id.
    pub(super) remote: HashMap<u64, Parked>,
    /// Id of the last remote request.
    pub(super) next_request: u64,
    /// Posts a remote answer back to this worker's inbox.
    pub(super) post_reply: PostReply,
    /// Operators' splits learned (sighting, new identity): the master sends
    /// them again when this node comes back, and each is learned once.
    pub(super) learned_splits: std::collections::HashSet<(vidar_store::RecordKey, IdentityId)>,
    /// Collects training samples from local tracks, when configured.
    pub(super) training: Option<crate::training::Collector>,
}

/// Posts the answer to remote request `id` to the worker's inbox.
pub(super) type PostReply =
    Arc<dyn Fn(u64, Result<vidar_protocol::messages::ReidReply, String>) + Send + Sync>;

/// A job whose crops are at another node's re-ID service.
pub(super) struct Parked {
    /// The job, identified here if the answer fails.
    pub(super) job: Job,
    /// The node asked.
    pub(super) to: NodeId,
    /// When to stop waiting.
    pub(super) deadline: std::time::Instant,
    /// Its tracks that ended while it was away (track, last seen ms): if
    /// the job is identified here after all, they are closed right after,
    /// so no track state outlives its track.
    pub(super) ended: Vec<(TrackId, UnixMs)>,
}

impl Worker {
    /// Identifies a job's crops: at the node the plan names, or here.
    pub(super) fn identify(&mut self, job: Job, out: &mpsc::Sender<Identified>) {
        if let Err(job) = self.send_elsewhere(job) {
            self.identify_here(job, out);
        }
    }

    /// Embeds a job's crops here and decides their tracks' identities.
    pub(super) fn identify_here(&mut self, job: Job, out: &mpsc::Sender<Identified>) {
        let f = &job.frame;
        let Ok(frame) = crate::media::picture(f) else {
            self.metrics.errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let camera = f.camera.clone();
        let now = f.captured_ms();
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
                    snapshot_jpeg(frame, &t.bbox)
                } else {
                    None
                }
            };
            let decided = self.add_crop(
                key, &camera, t.track, t.first_ms, now, emb, t.quality, t.decide, &snapshot,
            );
            // Encoded only when it is among the track's best so far (and
            // the track looked up only when samples are collected).
            if let Some(c) = &self.training {
                let key = TrackKey::Local(job.camera, t.track);
                if let Some(state) = self
                    .tracks
                    .get_mut(&key)
                    .filter(|s| c.wants(&s.samples, t.quality))
                {
                    if let Some(jpeg) = crate::media::crop_jpeg(
                        frame,
                        &t.bbox,
                        crate::training::SAMPLE_MAX_SIDE,
                        crate::training::SAMPLE_QUALITY,
                    ) {
                        c.keep(
                            &mut state.samples,
                            vidar_store::training::Sample {
                                t_ms: now,
                                quality: t.quality,
                                jpeg,
                            },
                        );
                    }
                }
            }
            let _ = out.send(Identified {
                camera: job.camera,
                track: t.track,
                identity: decided.map(|d| d.0),
                settled: decided.is_some_and(|d| !d.2),
            });
        }
        self.embeddings = embeddings;
    }

    /// Folds one crop's embedding into its track; decides the track's
    /// identity when due. Returns the identity when it was decided by this
    /// call (with its similarity, and whether it was minted).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_crop(
        &mut self,
        key: TrackKey,
        camera: &CameraId,
        track: TrackId,
        first_ms: UnixMs,
        now: UnixMs,
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
                minted: false,
                reseed: None,
                similarity: 0.0,
                samples: Vec::new(),
            });
        if state.sum.is_empty() {
            // Views before a model refresh were dropped: start again.
            state.sum.resize(emb.len(), 0.0);
        }
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
        if state.reseed.is_some() && state.crops >= MIN_CROPS {
            state.reseed(&mut self.gallery, &self.model);
        }
        if let Some(id) = state.identity {
            // Decided earlier: keep its appearance open (the final mean is
            // folded in when the track ends).
            let (q_first, minted) = (state.first_ms, state.minted);
            self.gallery.observe(
                id,
                &TrackQuery {
                    embedding: emb,
                    camera,
                    track: Some(track),
                    first_ms: q_first,
                    last_ms: OPEN,
                },
            );
            return if minted { self.reconsider(&key) } else { None };
        }
        if state.crops < MIN_CROPS && !decide {
            return None;
        }
        self.decide(&key)
    }

    /// Decides the identity of the track `key` from its mean embedding.
    pub(super) fn decide(&mut self, key: &TrackKey) -> Option<(IdentityId, f32, bool)> {
        let state = self.tracks.get_mut(key)?;
        let mean = state.mean();
        let q = state.query(&mean);
        // What the decision weighs, for diagnosis (debug logs only).
        let weighed =
            tracing::enabled!(tracing::Level::DEBUG).then(|| self.gallery.candidates(&q, 3));
        let assignment = match self.gallery.assign_track(&q) {
            Ok(a) => a,
            Err(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "gallery refused an embedding");
                return None;
            }
        };
        self.metrics
            .gallery_identities
            .store(self.gallery.len() as u64, Ordering::Relaxed);
        let id = assignment.id();
        state.minted = matches!(assignment, Assignment::New { .. });
        if let Some(w) = weighed {
            tracing::debug!(camera = %state.camera, track = %state.track, identity = %id, minted = matches!(assignment, Assignment::New { .. }), candidates = ?w, "track identity decided");
        }
        state.identity = Some(id);
        state.similarity = match assignment {
            Assignment::Matched { similarity, .. } => similarity,
            Assignment::New { .. } => 1.0,
        };
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
        if let Some(state) = self.tracks.get(key) {
            self.tell_seen(id, state, None);
        }
        Some((id, similarity, minted))
    }

    /// Tells the other nodes that the track `state` carries `id`: on screen
    /// (`last_ms` None) or ended at `last_ms`.
    pub(super) fn tell_seen(&self, id: IdentityId, state: &TrackState, last_ms: Option<UnixMs>) {
        if let Some(cluster) = &self.cluster {
            cluster.seen(&IdentitySeen {
                identity: id,
                node: cluster.node().clone(),
                camera: state.camera.clone(),
                track: state.track,
                first_ms: state.first_ms,
                last_ms: last_ms.map(|l| l.max(state.first_ms)),
            });
        }
    }

    /// A track whose decision minted a new identity, seen again: when its
    /// mean over every view so far now clearly matches a known identity, the
    /// minted identity joins that one. Returns the identity when it changed.
    ///
    /// A decision looked at again with each new view would, at the first
    /// decision's threshold (1 % false matches), gather false matches with
    /// every look (measured: purity fell from 0.98 to 0.91 on the composite
    /// scenes). It takes the confident threshold instead (0.1 % false
    /// matches): with at most `MAX_CROPS` views a track, the chance of any
    /// false join stays below the first decision's 1 %. In a crowd the
    /// threshold rises as the first decision's does
    /// ([`vidar_reid::Gallery::crowd_raise`]). The margin and the hard rules
    /// hold as for any decision.
    pub(super) fn reconsider(&mut self, key: &TrackKey) -> Option<(IdentityId, f32, bool)> {
        let state = self.tracks.get(key)?;
        let own = state.identity?;
        let mean = state.mean();
        let q = state.query(&mean);
        let (known, similarity, second, crowd) = self.gallery.closest(&q, Some(own))?;
        let config = self.gallery.config();
        let clear = second.is_none_or(|s| similarity - s >= config.ambiguity_margin);
        let threshold = config.confident_threshold + self.gallery.crowd_raise(crowd);
        if similarity < threshold || !clear {
            return None;
        }
        self.gallery.merge(own, known);
        // `own` was announced when minted, and other nodes may already name
        // the person by it: the master joins it for everyone.
        if let Some(cluster) = &self.cluster {
            cluster.joined(&IdentityJoined {
                from: own,
                into: known,
                node: cluster.node().clone(),
                decided_ms: UnixMs::now(),
            });
        }
        let state = self.tracks.get_mut(key)?;
        state.identity = Some(known);
        state.minted = false;
        let state = self.tracks.get(key)?;
        self.tell_seen(known, state, None);
        self.metrics.reconsidered.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(camera = %state.camera, track = %state.track, minted = %own, identity = %known, similarity, "a minted track's later views match a known identity");
        Some((known, similarity, false))
    }

    /// The embedder now runs another model (a model refresh, built and
    /// checked off this thread): taken between two jobs, so no crop is
    /// embedded half by one model and half by the other. The gallery drops
    /// the old model's vectors ([`vidar_reid::Gallery::remodel`]); the
    /// identities in `views` (this node's recent ones, seen through the new
    /// model in their snapshots) are kept with those views, recorded and,
    /// when minted here, announced again; tracks on screen drop their old
    /// views, and those already decided keep their identity, put back from
    /// their new views if it was not kept ([`TrackState::reseed`]). Any other
    /// identity is retired.
    pub(super) fn swap_model(
        &mut self,
        embedder: Box<dyn Embedder>,
        views: Vec<(IdentityId, vidar_reid::Embedding)>,
    ) {
        let tag = embedder.model_tag().to_owned();
        if tag == self.model {
            return;
        }
        for state in self.tracks.values_mut() {
            state.reseed = state
                .identity
                .and_then(|id| self.gallery.get(id))
                .map(|i| i.origin)
                .or(state.reseed);
            state.sum.clear();
            state.crops = 0;
            state.crops_at_decision = 0;
        }
        let mut old: HashMap<IdentityId, vidar_reid::Identity> = views
            .iter()
            .filter_map(|(id, _)| self.gallery.get(*id).map(|i| (*id, i.clone())))
            .collect();
        let dropped = self.gallery.remodel(&tag);
        self.embedder = embedder;
        self.model = tag;
        let mut kept = 0usize;
        for (id, view) in views {
            let Some(mut ident) = old.remove(&id) else {
                continue; // aged out of the gallery meanwhile
            };
            // A view of the snapshots: the cameras are not told apart.
            ident.prototypes = vec![vidar_reid::Prototype::new(view.clone(), None)];
            ident.embedding = view;
            ident.model = self.model.clone();
            if let Err(e) = self.gallery.restore(ident.clone()) {
                tracing::debug!(identity = %id, error = %e, "re-embedded identity not kept");
                continue;
            }
            kept += 1;
            if ident.origin == vidar_reid::Origin::Local {
                // Its record under the new model (restored after a restart)
                // and its announcement (other nodes' galleries dropped the
                // old one at their own swap).
                self.recorder.identity(
                    id,
                    &ident.camera,
                    ident.first_seen_ms,
                    ident.embedding.as_slice(),
                    &self.model,
                );
                if let Some(cluster) = &self.cluster {
                    cluster.announce(&IdentityAnnounce {
                        identity: id,
                        node: cluster.node().clone(),
                        camera: ident.camera.clone(),
                        seen_ms: ident.first_seen_ms,
                        embedding: ident.embedding.as_slice().to_vec(),
                        model: self.model.clone(),
                    });
                }
            }
        }
        let retired = dropped.saturating_sub(kept);
        tracing::info!(to = %self.model, kept, retired, "re-ID model swapped");
        self.metrics
            .identities_retired
            .fetch_add(retired as u64, Ordering::Relaxed);
        self.metrics
            .identities_reembedded
            .fetch_add(kept as u64, Ordering::Relaxed);
        self.metrics.model_swaps.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .gallery_identities
            .store(self.gallery.len() as u64, Ordering::Relaxed);
    }

    /// The track `key` ended (at `last_ms` when known): closes its
    /// appearance, folds its final mean into the identity, writes a better
    /// snapshot when the view improved.
    pub(super) fn ended(&mut self, key: TrackKey, last_ms: Option<UnixMs>) {
        let Some(mut state) = self.tracks.remove(&key) else {
            return;
        };
        state.reseed(&mut self.gallery, &self.model);
        let last = last_ms.unwrap_or(state.last_ms).max(state.last_ms);
        if let (Some(c), TrackKey::Local(..)) = (&self.training, &key) {
            c.finish(vidar_store::training::Tracklet {
                id: 0,
                camera: state.camera.clone(),
                track: state.track,
                identity: state.identity.map(|i| (i, state.similarity)),
                first_ms: state.first_ms,
                last_ms: last,
                crops: state.crops,
                samples: std::mem::take(&mut state.samples),
            });
        }
        let Some(id) = state.identity else {
            return;
        };
        self.gallery
            .close_track(id, &state.camera, state.track, last);
        self.tell_seen(id, &state, Some(last));
        if state.crops > state.crops_at_decision {
            if let Err(e) = self.gallery.refine(id, &state.mean(), &state.camera) {
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
    pub(super) fn evict_stalest(&mut self) {
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
    pub(super) fn close_idle_remote(&mut self, now: UnixMs) {
        let idle: Vec<TrackKey> = self
            .tracks
            .iter()
            .filter(|(k, s)| {
                matches!(k, TrackKey::Remote(..)) && now - s.last_ms > REMOTE_TRACK_IDLE_MS
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in idle {
            self.ended(k, None);
        }
    }

    /// Embeds crops into `self.embeddings`; false (logged, counted) on failure.
    pub(super) fn embed(&mut self, crops: &[Crop<'_>]) -> bool {
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
}
