//! Learning from operators' corrections, on the re-ID worker's thread.
//!
//! Merges decided by an operator arrive as the master's merges and are
//! applied like them. A split ([`SplitAnnounce`]) is learned by the node
//! that recorded the sighting: it reads the sighting and the snapshot of
//! its track from its own database, embeds that crop, and tells the gallery
//! (`Gallery::split_off`): the track's appearance leaves the old identity,
//! the old identity's views that look like the split-off person go, and the
//! person is known from now on as the new identity, which is recorded and
//! announced like one minted here (other nodes and the master learn it
//! from that). A node that was down when a split was made is sent it again
//! by the master when it comes back; each split is learned once. Without a
//! snapshot (snapshots off, or pruned) only the appearance moves.
//!
//! An operator who undoes their merge ([`KeepApart`]) has the two taken
//! apart again here: the merged identity loses the views that look like the
//! other person's last recorded appearance, and that person is known again
//! by it (`Gallery::keep_apart`).

use std::sync::atomic::Ordering;

use vidar_detectors::RgbFrame;
use vidar_protocol::messages::{CropEncoding, IdentityAnnounce, KeepApart, SplitAnnounce};
use vidar_reid::{Appearance, Crop, Embedding, Origin};
use vidar_store::Reader;

use super::worker::Worker;
use crate::media::decode_crop;

/// Splits remembered as learned (beyond, forgotten: learning one again
/// changes little).
const MAX_LEARNED: usize = 10_000;

/// How far from the sighting's span its track's snapshot may be, ms.
const SNAPSHOT_SLACK_MS: i64 = 2_000;

impl Worker {
    /// Learns an operator's split of one of this node's sightings (others'
    /// are learned from the announcement of the node that recorded them).
    pub(super) fn learn_split(&mut self, s: SplitAnnounce) {
        if s.sighting.node != self.node {
            return;
        }
        if !self.learned_splits.insert((s.sighting.clone(), s.into)) {
            return; // sent again (this node came back): learned already
        }
        if self.learned_splits.len() > MAX_LEARNED {
            self.learned_splits.clear();
        }
        let view = match self.split_view(&s) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(sighting = %format!("{}/{}", s.sighting.node, s.sighting.seq), error = %e, "split learned without the person's view");
                None
            }
        };
        let seen = Appearance {
            camera: s.camera.clone(),
            track: Some(s.track),
            first_ms: s.first_ms,
            last_ms: s.last_ms,
        };
        match self.gallery.split_off(s.from, s.into, &seen, view.as_ref()) {
            Ok(true) => {
                let Some(e) = view else { return };
                self.recorder
                    .identity(s.into, &s.camera, seen.first_ms, e.as_slice(), &self.model);
                if let Some(cluster) = &self.cluster {
                    cluster.announce(&IdentityAnnounce {
                        identity: s.into,
                        node: cluster.node().clone(),
                        camera: s.camera.clone(),
                        seen_ms: seen.first_ms,
                        embedding: e.as_slice().to_vec(),
                        model: self.model.clone(),
                    });
                }
                tracing::info!(from = %s.from, into = %s.into, "an operator's split learned: the person is known apart");
            }
            Ok(false) => {
                tracing::info!(from = %s.from, into = %s.into, "an operator's split learned");
            }
            Err(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "the gallery refused the split's view");
            }
        }
    }

    /// Learns an operator's undone merge: `from` is taken out of `into`
    /// again (when this gallery had joined them).
    pub(super) fn learn_keep_apart(&mut self, k: KeepApart) {
        let view = k.view.map(|a| {
            let origin = if a.node == self.node {
                Origin::Local
            } else {
                Origin::Remote
            };
            super::remote::announced(a, origin)
        });
        match self.gallery.keep_apart(k.from, k.into, view) {
            Ok(true) => {
                tracing::info!(from = %k.from, into = %k.into, "an operator's undone merge learned: the two are apart again");
            }
            Ok(false) => {
                tracing::debug!(from = %k.from, into = %k.into, "an undone merge: nothing joined here");
            }
            Err(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "the gallery refused the undone merge's view");
            }
        }
    }

    /// The embedding of the split sighting's track, from its snapshot in
    /// this node's database (None when there is none).
    fn split_view(&mut self, s: &SplitAnnounce) -> Result<Option<Embedding>, String> {
        let path = self.recorder.writer().path().to_path_buf();
        let reader = Reader::open(&path).map_err(|e| e.to_string())?;
        let Some(sighting) = reader.sighting(&s.sighting).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let v = &sighting.value;
        let shot = reader
            .snapshot_near(v.identity, Some(&v.camera), Some(v.first_ms))
            .map_err(|e| e.to_string())?;
        let Some(shot) = shot.filter(|x| {
            x.value.camera == v.camera
                && x.value.t_ms >= v.first_ms - SNAPSHOT_SLACK_MS
                && x.value.t_ms <= v.last_ms + SNAPSHOT_SLACK_MS
        }) else {
            return Ok(None);
        };
        drop(reader);
        let jpeg = shot.value.jpeg;
        let (width, height) = vidar_protocol::messages::jpeg_size(&jpeg)
            .ok_or_else(|| "the snapshot is not a JPEG".to_string())?;
        let image = decode_crop(&vidar_protocol::messages::Crop {
            camera: v.camera.clone(),
            track: v.track,
            capture_ms: shot.value.t_ms,
            width,
            height,
            encoding: CropEncoding::Jpeg,
            data: jpeg,
        })?;
        let (w, h) = (image.width(), image.height());
        let frame =
            RgbFrame::new(w, h, w as usize * 3, image.as_raw()).map_err(|e| e.to_string())?;
        let crop = Crop {
            frame: frame.into(),
            bbox: vidar_protocol::BBox {
                x: 0.0,
                y: 0.0,
                w: w as f32,
                h: h as f32,
            },
        };
        if !self.embed(&[crop]) {
            return Err("embedding the snapshot failed".into());
        }
        Ok(self.embeddings.first().cloned())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant, SystemTime};

    use vidar_protocol::{CameraId, IdentityId, NodeId, TrackId};
    use vidar_reid::GalleryConfig;
    use vidar_store::{Record, RecordKey, Sighting};

    use super::*;
    use crate::identify::testing::{answer, figure, job, spawn, Alone};
    use crate::identify::{Identifier, Job};
    use vidar_protocol::UnixMs;

    fn identity_of(id: &mut Identifier, j: Job) -> IdentityId {
        answer(id, j).identity.expect("decided at once")
    }

    #[test]
    fn a_split_of_this_nodes_sighting_teaches_the_gallery_the_person() {
        let dir = tempfile::tempdir().expect("tmp");
        let node = NodeId::new("n1").expect("id");
        // Loose enough that a blue person is wrongly taken for the red one
        // (cosine 0.37): the mistake an operator corrects.
        let cfg = GalleryConfig {
            match_threshold: 0.3,
            ambiguity_margin: 0.0,
            same_camera_margin: 0.0,
            node_prefix: 1,
            ..GalleryConfig::default()
        };
        let heard = Arc::new(Mutex::new(Vec::new()));
        let cluster = Alone::new(node.clone(), heard.clone());
        let (mut id, metrics, rec) = spawn(dir.path(), cfg, true, Some(Box::new(cluster)));
        let (red, blue) = (figure([220, 40, 40]), figure([40, 40, 220]));
        let t0 = SystemTime::now() - Duration::from_secs(60);
        let ann = identity_of(&mut id, job(1, red, t0, t0, true));
        id.ended(0, TrackId(1), UnixMs(0));
        let t1 = t0 + Duration::from_secs(20);
        assert_eq!(
            identity_of(&mut id, job(2, blue, t1, t1, true)),
            ann,
            "the mistake"
        );
        id.ended(0, TrackId(2), UnixMs(0));
        // The sighting of track 2 the node recorded, and its snapshot.
        let ms = UnixMs::of(t1);
        let key = rec
            .writer()
            .write(Record::Sighting(Sighting {
                identity: ann,
                camera: CameraId::new("c").expect("id"),
                track: TrackId(2),
                first_ms: ms - 100,
                last_ms: ms + 100,
                path: Vec::new(),
            }))
            .expect("sighting");
        rec.writer().flush().expect("flush");

        let bob = IdentityId(7);
        let split = SplitAnnounce {
            sighting: key,
            camera: CameraId::new("c").expect("id"),
            track: TrackId(2),
            first_ms: ms - 100,
            last_ms: ms + 100,
            from: ann,
            into: bob,
            decided_ms: UnixMs(0),
        };
        id.inbox().split(split.clone());
        // The person is recorded and announced under the new identity ...
        let end = Instant::now() + Duration::from_secs(10);
        while !heard
            .lock()
            .expect("lock")
            .iter()
            .any(|a| a.identity == bob)
        {
            assert!(Instant::now() < end, "{:?}", heard.lock().expect("lock"));
            std::thread::sleep(Duration::from_millis(5));
        }
        rec.writer().flush().expect("flush");
        let r = Reader::open(dir.path().join("e.db")).expect("reader");
        assert_eq!(r.identity_records(bob).expect("read").len(), 1);
        // Sent again (this node came back to the master): learned once.
        let crops = metrics.crops.load(std::sync::atomic::Ordering::Relaxed);
        id.inbox().split(split);
        // ... and the blue person's next track is theirs, the red one's Ann's.
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(identity_of(&mut id, job(3, blue, t2, t2, true)), bob);
        assert_eq!(
            metrics.crops.load(std::sync::atomic::Ordering::Relaxed),
            crops + 1,
            "the split sent again was not embedded again, the track's crop was"
        );
        id.ended(0, TrackId(3), UnixMs(0));
        let t3 = t2 + Duration::from_secs(20);
        assert_eq!(identity_of(&mut id, job(4, red, t3, t3, true)), ann);
        // Another node's sighting is not this node's to learn.
        let before = heard.lock().expect("lock").len();
        id.inbox().split(SplitAnnounce {
            sighting: RecordKey {
                node: NodeId::new("n2").expect("id"),
                seq: 1,
            },
            camera: CameraId::new("c").expect("id"),
            track: TrackId(9),
            first_ms: UnixMs(0),
            last_ms: UnixMs(1),
            from: ann,
            into: IdentityId(8),
            decided_ms: UnixMs(0),
        });
        id.finish();
        assert_eq!(heard.lock().expect("lock").len(), before);
        let bobs = heard
            .lock()
            .expect("lock")
            .iter()
            .filter(|a| a.identity == bob)
            .count();
        assert_eq!(bobs, 1, "a split sent again is learned once");
        assert_eq!(r.identity_records(bob).expect("read").len(), 1);
    }

    #[test]
    fn an_undone_merge_takes_the_person_apart_in_this_gallery() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = GalleryConfig {
            node_prefix: 1,
            ..GalleryConfig::default()
        };
        let (mut id, _metrics, rec) = spawn(dir.path(), cfg, false, None);
        let (red, blue) = (figure([220, 40, 40]), figure([40, 40, 220]));
        let t0 = SystemTime::now() - Duration::from_secs(120);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let ann = identity_of(&mut id, job(1, red, at(0), at(0), true));
        id.ended(0, TrackId(1), UnixMs(0));
        let bob = identity_of(&mut id, job(2, blue, at(20), at(20), true));
        id.ended(0, TrackId(2), UnixMs(0));
        assert_ne!(ann, bob);
        // An operator's wrong merge: Bob's next track is Ann's.
        id.inbox().merge(vidar_protocol::messages::MergeAnnounce {
            from: bob,
            into: ann,
            decided_ms: UnixMs(0),
        });
        assert_eq!(
            identity_of(&mut id, job(3, blue, at(40), at(40), true)),
            ann
        );
        id.ended(0, TrackId(3), UnixMs(0));
        // Undone, with Bob's view as the master read it from the records.
        rec.writer().flush().expect("flush");
        let r = Reader::open(dir.path().join("e.db")).expect("reader");
        let last = r
            .identity_records(bob)
            .expect("read")
            .pop()
            .expect("Bob was recorded");
        id.inbox().keep_apart(KeepApart {
            from: bob,
            into: ann,
            view: Some(IdentityAnnounce {
                identity: bob,
                node: last.key.node,
                camera: last.value.camera,
                seen_ms: last.value.first_seen_ms,
                embedding: last.value.embedding,
                model: last.value.model,
            }),
            decided_ms: UnixMs(0),
        });
        assert_eq!(
            identity_of(&mut id, job(4, blue, at(60), at(60), true)),
            bob
        );
        id.ended(0, TrackId(4), UnixMs(0));
        assert_eq!(identity_of(&mut id, job(5, red, at(80), at(80), true)), ann);
        id.finish();
    }
}
