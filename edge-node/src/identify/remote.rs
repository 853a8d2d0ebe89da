//! The re-ID worker's cluster side: crops sent to another node's service,
//! other nodes' crops served here, and the replica of their identities.

use super::jobs::{Identified, Job, RemoteDone, RemoteJob, MAX_REMOTE_IN_FLIGHT};
use super::jobs::{REMOTE_CROP_SIDE, REMOTE_DECIDE_AFTER_MS, SEEN_LEASE_MS};
use super::worker::{Parked, TrackKey, Worker};
use crate::media::{crop_jpeg, decode_crop, snapshot_jpeg};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self};
use std::time::{Duration, Instant};
use vidar_detectors::RgbFrame;
use vidar_protocol::messages::{
    Crop as WireCrop, CropEncoding, IdentityAnnounce, IdentitySeen, ReidAnswer, ReidReply,
    ReidRequest,
};
use vidar_protocol::{BBox, NodeId, TrackId, UnixMs};
use vidar_reid::{Crop, Embedding, Identity, Origin};

impl Worker {
    /// When the plan sends this camera's crops to another node: sends them
    /// and parks the job until the answer comes back as an input
    /// ([`Worker::remote_reply`]); the worker goes on meanwhile. Gives the job
    /// back when it must be identified here (no such plan, share used up,
    /// too many requests in flight, or the request could not be sent).
    #[allow(clippy::result_large_err)]
    pub(super) fn send_elsewhere(&mut self, job: Job) -> Result<(), Job> {
        let Some(cluster) = &self.cluster else {
            return Err(job);
        };
        let camera = &job.frame.camera;
        let Some(to) = cluster.remote_for(camera) else {
            return Err(job);
        };
        if self.remote.len() >= MAX_REMOTE_IN_FLIGHT {
            return Err(job);
        }
        let f = &job.frame;
        let Ok(frame) = crate::media::picture(f) else {
            return Err(job);
        };
        let now = f.captured_ms();
        let mut crops = Vec::with_capacity(job.tracks.len());
        for t in &job.tracks {
            let Some(jpeg) = crop_jpeg(frame, &t.bbox, REMOTE_CROP_SIDE, 90) else {
                continue;
            };
            // Its real size, as the receiver checks it (a box's float size
            // can round differently than the encoder's integer one).
            let Some((w, h)) = vidar_protocol::messages::jpeg_size(&jpeg) else {
                continue;
            };
            crops.push(WireCrop {
                camera: camera.clone(),
                track: t.track,
                capture_ms: now,
                width: w,
                height: h,
                encoding: CropEncoding::Jpeg,
                data: jpeg,
            });
        }
        if crops.is_empty() {
            return Err(job);
        }
        let bytes: usize = crops.iter().map(|c| c.data.len()).sum();
        if !cluster.take_bandwidth(&to, bytes) {
            self.metrics
                .crops_throttled
                .fetch_add(crops.len() as u64, Ordering::Relaxed);
            return Err(job);
        }
        self.next_request = self.next_request.wrapping_add(1);
        let id = self.next_request;
        let request = ReidRequest {
            from: cluster.node().clone(),
            request_id: id,
            crops,
        };
        let post = std::sync::Arc::clone(&self.post_reply);
        let done: RemoteDone = Box::new(move |r| post(id, r));
        // A second past the transport's own timeout: the reply (or its
        // timeout) always comes first; this only guards against a lost one.
        let deadline = Instant::now() + cluster.reply_within() + Duration::from_secs(1);
        match cluster.send_remote(&to, &request, done) {
            Ok(()) => {
                self.remote.insert(
                    id,
                    Parked {
                        job,
                        to,
                        deadline,
                        ended: Vec::new(),
                    },
                );
                Ok(())
            }
            Err(e) => {
                self.remote_failed(&to, &e);
                Err(job)
            }
        }
    }

    /// The answer to remote request `id`: the tracks' identities, or, when
    /// it failed, the job identified here.
    pub(super) fn remote_reply(
        &mut self,
        id: u64,
        answer: Result<ReidReply, String>,
        out: &mpsc::Sender<Identified>,
    ) {
        let Some(Parked { job, to, ended, .. }) = self.remote.remove(&id) else {
            return; // expired already
        };
        match answer {
            Ok(reply) if reply.error.is_none() => {
                self.metrics
                    .crops_remote
                    .fetch_add(reply.results.len() as u64, Ordering::Relaxed);
                for t in &job.tracks {
                    let answer = reply.results.iter().find(|a| a.track == t.track);
                    let _ = out.send(Identified {
                        camera: job.camera,
                        track: t.track,
                        identity: answer.map(|a| a.identity),
                        settled: answer.is_some_and(|a| !a.minted),
                    });
                }
            }
            Ok(reply) => {
                self.remote_failed(&to, reply.error.as_deref().unwrap_or("refused"));
                self.identify_parked_here(job, &ended, out);
            }
            Err(e) => {
                self.remote_failed(&to, &e);
                self.identify_parked_here(job, &ended, out);
            }
        }
    }

    /// A parked job identified here after all; its tracks that ended
    /// meanwhile are closed at once (else their state would wait for an
    /// end that has already come).
    fn identify_parked_here(
        &mut self,
        job: Job,
        ended: &[(TrackId, UnixMs)],
        out: &mpsc::Sender<Identified>,
    ) {
        let camera = job.camera;
        self.identify_here(job, out);
        for &(track, last_ms) in ended {
            self.ended(TrackKey::Local(camera, track), Some(last_ms));
        }
    }

    /// Local track `track` of camera `camera` ended at `last_ms`: closes its
    /// state, and tells the parked jobs that carry it.
    pub(super) fn local_ended(&mut self, camera: usize, track: TrackId, last_ms: UnixMs) {
        for p in self.remote.values_mut() {
            if p.job.camera == camera && p.job.tracks.iter().any(|t| t.track == track) {
                p.ended.push((track, last_ms));
            }
        }
        self.ended(TrackKey::Local(camera, track), Some(last_ms));
    }

    /// Every [`CHORES_EVERY`](super::jobs::CHORES_EVERY): drops identities
    /// unseen for the gallery's `max_age_s` (those on screen stay) and
    /// closes remote tracks whose node went quiet (a node that died sends no
    /// more crops, so [`serve`](Self::serve) never looks at its tracks
    /// again). `now_ms` is wall-clock time.
    /// Also repeats to the other nodes where this node's open tracks'
    /// identities are seen, so their word does not lapse
    /// ([`SEEN_LEASE_MS`]).
    pub(super) fn chores(&mut self, now_ms: UnixMs) {
        let dropped = self.gallery.expire(now_ms);
        if dropped > 0 {
            tracing::debug!(dropped, left = self.gallery.len(), "identities aged out");
        }
        self.close_idle_remote(now_ms);
        if self.cluster.is_some() {
            for s in self.tracks.values() {
                if let Some(id) = s.identity {
                    self.tell_seen(id, s, None);
                }
            }
        }
    }

    /// Another node's word of where an identity is seen, heard at `now`: an
    /// open track counts as on screen until [`SEEN_LEASE_MS`] after `now`
    /// (or after it began, if that is later), unless heard of again. (The
    /// cluster believes a word only from the camera's nodes, and not dated
    /// ahead of this clock: `cluster::Shared::believe_seen`.)
    pub(super) fn seen_elsewhere(&mut self, s: IdentitySeen, now: UnixMs) {
        if self.cluster.as_ref().is_some_and(|c| *c.node() == s.node) {
            return;
        }
        let last = s
            .last_ms
            .unwrap_or_else(|| now.max(s.first_ms) + SEEN_LEASE_MS);
        if !self
            .gallery
            .seen_elsewhere(s.identity, &s.camera, s.track, s.first_ms, last)
        {
            tracing::trace!(identity = %s.identity, "seen elsewhere: not known here");
        }
    }

    /// Identifies here the parked jobs whose answer is overdue.
    /// When the first parked remote job's answer is overdue, if any is parked.
    pub(super) fn next_remote_deadline(&self) -> Option<Instant> {
        self.remote.values().map(|p| p.deadline).min()
    }

    pub(super) fn expire_remote(&mut self, out: &mpsc::Sender<Identified>) {
        if self.remote.is_empty() {
            return;
        }
        let now = Instant::now();
        let overdue: Vec<u64> = self
            .remote
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in overdue {
            self.remote_reply(id, Err("no reply in time".into()), out);
        }
    }

    pub(super) fn remote_failed(&self, to: &NodeId, why: &str) {
        let n = self.metrics.remote_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!(node = %to, error = why, failures = n, "remote re-ID failed; identified locally");
        }
    }

    /// Identifies another node's crops with this node's gallery and answers.
    pub(super) fn serve(&mut self, job: RemoteJob) {
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
                frame: f.into(),
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
        let mut latest = UnixMs::MIN;
        for (i, (c, emb)) in request.crops.iter().zip(&embeddings).enumerate() {
            let frame = frames[i];
            let full = crops[i].bbox;
            let snapshots = self.snapshots;
            let snapshot = || {
                if snapshots {
                    snapshot_jpeg(frame, &full)
                } else {
                    None
                }
            };
            // Another node's tracks: the same per-track decision, keyed by
            // camera and track; a track on screen for a while is decided
            // with the crops it has.
            let key = TrackKey::Remote(c.camera.clone(), c.track);
            let old = self
                .tracks
                .get(&key)
                .is_some_and(|s| c.capture_ms - s.first_ms >= REMOTE_DECIDE_AFTER_MS);
            let known = self.tracks.get(&key).and_then(|s| s.identity);
            let decided = self.add_crop(
                key,
                &c.camera,
                c.track,
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
    pub(super) fn replica(&mut self, a: IdentityAnnounce) {
        if self.cluster.as_ref().is_some_and(|c| *c.node() == a.node) {
            return;
        }
        let identity = a.identity;
        if let Err(e) = self.gallery.upsert_remote(announced(a, Origin::Remote)) {
            tracing::debug!(identity = %identity, error = %e, "announced identity not kept");
        }
    }
}

/// The gallery's identity for an announced one (`origin`: whose it is here).
pub(super) fn announced(a: IdentityAnnounce, origin: Origin) -> Identity {
    Identity::single(
        a.identity,
        Embedding::normalized(&a.embedding),
        &a.model,
        a.camera,
        a.seen_ms,
        origin,
    )
}

#[cfg(test)]
mod tests {
    use super::super::jobs::REMOTE_TRACK_IDLE_MS;
    use super::*;
    use crate::identify::testing::{bare_worker, figure, job};
    use std::time::SystemTime;
    use vidar_protocol::CameraId;
    use vidar_reid::GalleryConfig;

    /// A job parked at another node whose track ends meanwhile, then is
    /// identified here when the other node fails: its track state is closed
    /// with it (it used to stay until the table of 4,096 tracks was full,
    /// since the track's end had already come and gone).
    #[test]
    fn a_parked_job_identified_here_after_its_track_ended_leaves_no_state() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut w = bare_worker(dir.path(), GalleryConfig::default());
        let (out, results) = mpsc::channel();
        let now = SystemTime::now();
        w.remote.insert(
            1,
            Parked {
                job: job(5, figure([200, 30, 30]), now, now, true),
                to: NodeId::new("n2").expect("id"),
                deadline: Instant::now() + Duration::from_secs(60),
                ended: Vec::new(),
            },
        );
        let last = UnixMs::of(now) + 40;
        w.local_ended(0, TrackId(5), last);
        w.remote_reply(1, Err("n2 is gone".into()), &out);
        let answer = results.try_recv().expect("identified here");
        assert_eq!(answer.track, TrackId(5));
        assert!(answer.identity.is_some(), "decided here");
        assert!(w.tracks.is_empty(), "no state outlives its track");
        // The identity's appearance is closed at the track's end.
        let id = answer.identity.expect("identity");
        let appearance = w.gallery.get(id).expect("known").appearances[0].clone();
        assert_eq!(appearance.last_ms, last);
    }

    /// A node that died sends no more crops: its tracks here are closed by
    /// the worker's chores, and identities unseen for max_age_s age out.
    #[test]
    fn chores_close_a_dead_nodes_tracks_and_age_out_identities() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = GalleryConfig {
            max_age_s: 60,
            ..GalleryConfig::default()
        };
        let mut w = bare_worker(dir.path(), cfg);
        let cam = CameraId::new("far").expect("id");
        let e = vidar_reid::Embedding::normalized(&[1.0, 0.0, 0.0, 0.0]);
        let decided = w.add_crop(
            TrackKey::Remote(cam.clone(), TrackId(9)),
            &cam,
            TrackId(9),
            UnixMs(1_000),
            UnixMs(1_000),
            &e,
            0.9,
            true,
            &|| None,
        );
        assert!(decided.is_some(), "decided on its first crop");
        assert_eq!((w.tracks.len(), w.gallery.len()), (1, 1));
        w.chores(UnixMs(1_000 + REMOTE_TRACK_IDLE_MS / 2));
        assert_eq!(w.tracks.len(), 1, "not idle yet");
        w.chores(UnixMs(1_000 + REMOTE_TRACK_IDLE_MS + 1));
        assert!(w.tracks.is_empty(), "closed once idle");
        assert_eq!(w.gallery.len(), 1, "seen 10 s ago: kept");
        w.chores(UnixMs(1_000 + 61_000));
        assert!(w.gallery.is_empty(), "unseen for over max_age_s");
    }
    /// A node tells the others where the identities it decides are seen: on
    /// the decision, again at its chores while the track is open, and at
    /// the track's end; and it holds another node's identity while that
    /// node's track is open (for a lease), never its own word.
    #[test]
    fn where_identities_are_seen_is_told_and_heard() {
        use crate::identify::testing::Alone;
        use vidar_protocol::IdentityId;
        use vidar_reid::TrackQuery;
        let dir = tempfile::tempdir().expect("tmp");
        let mut w = bare_worker(dir.path(), GalleryConfig::default());
        let cluster = Alone::new(NodeId::new("n1").expect("id"), Default::default());
        let told = std::sync::Arc::clone(&cluster.seen);
        w.cluster = Some(Box::new(cluster));
        let cam = CameraId::new("here").expect("id");
        let red = vidar_reid::Embedding::normalized(&[1.0, 0.0, 0.0, 0.0]);
        let decided = w
            .add_crop(
                TrackKey::Remote(cam.clone(), TrackId(4)),
                &cam,
                TrackId(4),
                UnixMs(1_000),
                UnixMs(1_000),
                &red,
                0.9,
                true,
                &|| None,
            )
            .expect("decided");
        w.chores(UnixMs(2_000));
        w.ended(
            TrackKey::Remote(cam.clone(), TrackId(4)),
            Some(UnixMs(3_000)),
        );
        let words: Vec<(IdentityId, u64, UnixMs, Option<UnixMs>)> = told
            .lock()
            .expect("lock")
            .iter()
            .map(|s| (s.identity, s.track.0, s.first_ms, s.last_ms))
            .collect();
        let mine = decided.0;
        assert_eq!(
            words,
            [
                (mine, 4, UnixMs(1_000), None),
                (mine, 4, UnixMs(1_000), None),
                (mine, 4, UnixMs(1_000), Some(UnixMs(3_000))),
            ]
        );

        // Another node's track on its camera carries this identity, open:
        // a look-alike here at once is someone else; its own word is ignored.
        let far = CameraId::new("far").expect("id");
        let from = |node: &str, last_ms| IdentitySeen {
            identity: mine,
            node: NodeId::new(node).expect("id"),
            camera: far.clone(),
            track: TrackId(8),
            first_ms: UnixMs(10_000),
            last_ms,
        };
        w.seen_elsewhere(from("n1", None), UnixMs(10_500));
        assert!(
            !w.gallery
                .get(mine)
                .expect("known")
                .appearances
                .iter()
                .any(|a| a.camera == far),
            "its own word is not news"
        );
        w.seen_elsewhere(from("n2", None), UnixMs(10_500));
        let q = |t: i64| TrackQuery {
            embedding: &red,
            camera: &cam,
            track: Some(TrackId(5)),
            first_ms: UnixMs(t),
            last_ms: vidar_reid::OPEN,
        };
        assert_eq!(
            w.gallery.exclusion(mine, &q(12_000)),
            Some(vidar_reid::Excluded::Elsewhere),
            "on screen at the other node"
        );
        assert_eq!(
            w.gallery.exclusion(mine, &q(10_500 + SEEN_LEASE_MS + 1)),
            None,
            "not beyond the lease when the other node falls silent"
        );
        w.seen_elsewhere(from("n2", Some(UnixMs(11_000))), UnixMs(11_500));
        assert_eq!(
            w.gallery.exclusion(mine, &q(12_000)),
            None,
            "gone from there"
        );
    }
}
