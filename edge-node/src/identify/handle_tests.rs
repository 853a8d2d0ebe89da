//! Tests of `handle`.
use super::*;
use crate::identify::testing::Loopback;
use crate::identify::{Job, TrackCrop};
use std::time::{Duration, SystemTime};
use vidar_pipeline::Frame;
use vidar_protocol::{BBox, CameraId};
use vidar_reid::GalleryConfig;
use vidar_testkit::fakes::{draw, ColorEmbedder, Figure, Gate};

/// A job of frame `seq`: one track per figure (track ids from `first_track`).
fn job(seq: u64, figures: &[Figure], first_track: u64, decide: bool) -> Job {
    let px = draw(240, 160, seq as u32, figures);
    let frame = Frame::from_rgb(
        CameraId::new("c").expect("id"),
        seq,
        SystemTime::now(),
        240,
        160,
        px,
    )
    .expect("frame");
    let tracks = figures
        .iter()
        .enumerate()
        .map(|(t, fig)| TrackCrop {
            track: TrackId(first_track + t as u64),
            bbox: fig.bbox,
            quality: 0.9,
            first_ms: UnixMs(0),
            decide,
        })
        .collect();
    Job {
        camera: 0,
        frame,
        tracks,
    }
}

#[test]
fn the_inbox_reports_the_crops_waiting_for_re_id() {
    let dir = tempfile::tempdir().expect("tmp");
    let node = NodeId::new("n1").expect("id");
    let metrics = Arc::new(NodeMetrics::default());
    let rec =
        Recorder::open(&dir.path().join("e.db"), &node, Arc::clone(&metrics)).expect("recorder");
    let gate = Gate::closed();
    let embedder = ColorEmbedder::default().with_gate(Arc::clone(&gate));
    let gallery =
        Gallery::with_model(GalleryConfig::default(), ColorEmbedder::TAG).expect("gallery");
    let mut id = Identifier::spawn(
        node,
        Box::new(embedder),
        gallery,
        rec.share(),
        metrics,
        false,
        None,
    )
    .expect("worker");
    let inbox = id.inbox();
    assert_eq!(inbox.crops_waiting(), 0);
    let figures: Vec<Figure> = (0..3)
        .map(|k| Figure {
            color: [200, 40 + 60 * k as u8, 40],
            bbox: BBox {
                x: 10.0 + 60.0 * k as f32,
                y: 20.0,
                w: 40.0,
                h: 100.0,
            },
        })
        .collect();
    assert!(id.offer(job(0, &figures, 0, false)).is_none(), "taken");
    // Held at the embedder: three crops wait.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(inbox.crops_waiting(), 3);
    gate.open();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while inbox.crops_waiting() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "still {}",
            inbox.crops_waiting()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    id.finish();
}

#[test]
fn a_track_that_minted_for_want_of_a_clear_view_joins_the_known_identity_its_later_views_match() {
    use crate::identify::testing::{answer, figure, job, spawn, Alone};
    let dir = tempfile::tempdir().expect("tmp");
    let cluster = Alone::new(NodeId::new("n1").expect("id"), Arc::default());
    let joins = Arc::clone(&cluster.joined);
    // Red and magenta are two people (cosine 0.90 < 0.92); a purple view
    // is close to both (0.97, 0.98): too close to call.
    let cfg = GalleryConfig {
        match_threshold: 0.92,
        confident_threshold: 0.99,
        ambiguity_margin: 0.05,
        // One camera throughout, colours for people: no same-camera margin.
        same_camera_margin: 0.0,
        ..GalleryConfig::default()
    };
    let (mut id, metrics, _rec) = spawn(dir.path(), cfg, false, Some(Box::new(cluster)));
    let (red, magenta, purple) = (
        figure([220, 40, 40]),
        figure([220, 40, 160]),
        figure([220, 40, 100]),
    );
    let t0 = SystemTime::now() - Duration::from_secs(600);
    let s = |secs: u64| t0 + Duration::from_secs(secs);
    let ann = answer(&mut id, job(1, red, s(0), s(0), true))
        .identity
        .expect("ann");
    id.ended(0, TrackId(1), UnixMs(0));
    let bea = answer(&mut id, job(2, magenta, s(10), s(10), true))
        .identity
        .expect("bea");
    id.ended(0, TrackId(2), UnixMs(0));
    assert_ne!(ann, bea);
    // Track 3 first shows only its ambiguous view: a new identity, not settled.
    let first = answer(&mut id, job(3, purple, s(20), s(20), true));
    let minted = first.identity.expect("decided");
    assert!(
        minted != ann && minted != bea && !first.settled,
        "{first:?}"
    );
    // Its next views are red: once they outweigh the first, it is Ann.
    let mut last = first;
    for k in 0..3 {
        let r = answer(&mut id, job(3, red, s(20), s(21 + k), false));
        if r.identity.is_some() {
            last = r;
            break;
        }
    }
    assert_eq!((last.identity, last.settled), (Some(ann), true), "{last:?}");
    assert_eq!(metrics.reconsidered.load(Ordering::Relaxed), 1);
    // The master is told, so it joins the minted identity for everyone.
    let told: Vec<(
        vidar_protocol::IdentityId,
        vidar_protocol::IdentityId,
        String,
    )> = joins
        .lock()
        .expect("lock")
        .iter()
        .map(|j| (j.from, j.into, j.node.to_string()))
        .collect();
    assert_eq!(told, [(minted, ann, "n1".to_string())]);
    id.finish();
}

fn worker(
    name: &str,
    peer_name: &str,
    dir: &std::path::Path,
) -> (
    Identifier,
    Arc<NodeMetrics>,
    Arc<std::sync::Mutex<Option<Inbox>>>,
) {
    let node = NodeId::new(name).expect("id");
    let metrics = Arc::new(NodeMetrics::default());
    let rec = Recorder::open(&dir.join(format!("{name}.db")), &node, Arc::clone(&metrics))
        .expect("recorder");
    let cfg = GalleryConfig {
        node_prefix: if name == "a" { 1 } else { 2 },
        ..GalleryConfig::default()
    };
    let gallery = Gallery::with_model(cfg, ColorEmbedder::TAG).expect("gallery");
    let peer = Arc::new(std::sync::Mutex::new(None));
    let link = Loopback {
        node: node.clone(),
        to: NodeId::new(peer_name).expect("id"),
        peer: Arc::clone(&peer),
    };
    let id = Identifier::spawn(
        node,
        Box::new(ColorEmbedder::default()),
        gallery,
        rec.share(),
        Arc::clone(&metrics),
        false,
        Some(Box::new(link)),
    )
    .expect("worker");
    (id, metrics, peer)
}

#[test]
fn two_nodes_offloading_to_each_other_at_full_rate_do_not_stall() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut a, ma, peer_of_a) = worker("a", "b", dir.path());
    let (mut b, mb, peer_of_b) = worker("b", "a", dir.path());
    *peer_of_a.lock().unwrap() = Some(b.inbox());
    *peer_of_b.lock().unwrap() = Some(a.inbox());
    const JOBS: u64 = 40;
    let figures = [
        Figure {
            color: [220, 40, 40],
            bbox: BBox {
                x: 10.0,
                y: 20.0,
                w: 40.0,
                h: 100.0,
            },
        },
        Figure {
            color: [40, 40, 220],
            bbox: BBox {
                x: 120.0,
                y: 20.0,
                w: 40.0,
                h: 100.0,
            },
        },
    ];
    let frame = |k: u64| job(k, &figures, k * 2, true);
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(20);
    let (mut done_a, mut done_b) = (0u64, 0u64);
    let (mut sent_a, mut sent_b) = (0u64, 0u64);
    while done_a < 2 * JOBS || done_b < 2 * JOBS {
        assert!(
            std::time::Instant::now() < deadline,
            "stalled: a {done_a}/{} b {done_b}/{} answered",
            2 * JOBS,
            2 * JOBS
        );
        // Full rate: offer a job to each whenever it takes one.
        if sent_a < JOBS && a.offer(frame(sent_a)).is_none() {
            sent_a += 1;
        }
        if sent_b < JOBS && b.offer(frame(sent_b)).is_none() {
            sent_b += 1;
        }
        done_a += a.results().count() as u64;
        done_b += b.results().count() as u64;
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = started.elapsed();
    for (name, m) in [("a", &ma), ("b", &mb)] {
        assert_eq!(
            m.remote_failures.load(Ordering::SeqCst),
            0,
            "{name}: no request failed"
        );
        // Both really offloaded to each other (beyond MAX_REMOTE_IN_FLIGHT
        // requests at once a job is identified locally, by design).
        let served = m.crops_served.load(Ordering::SeqCst);
        assert!(
            served >= JOBS,
            "{name}: served only {served} of the other's crops"
        );
    }
    // Far below one reply timeout (5 s): nobody waited on anybody.
    assert!(took < Duration::from_secs(5), "{took:?}");
    a.finish();
    b.finish();
}

/// The colour embedder under another model tag, its vectors rotated: a
/// refreshed model whose space is not the old one's (blue under it
/// points where red did under the old model).
struct Rotated(ColorEmbedder);

impl Embedder for Rotated {
    fn name(&self) -> &str {
        "fake-color"
    }
    fn model_tag(&self) -> &str {
        "fake-color@rotated00000"
    }
    fn dim(&self) -> usize {
        3
    }
    fn max_batch(&self) -> usize {
        8
    }
    fn embed_into(
        &mut self,
        crops: &[vidar_reid::Crop<'_>],
        out: &mut Vec<vidar_reid::Embedding>,
    ) -> Result<(), vidar_reid::ReidError> {
        self.0.embed_into(crops, out)?;
        for e in out.iter_mut() {
            let v = e.as_slice();
            *e = vidar_reid::Embedding::normalized(&[v[2], v[0], v[1]]);
        }
        Ok(())
    }
    fn take_timings(&mut self) -> vidar_reid::EmbedTimings {
        self.0.take_timings()
    }
}

/// Bob (blue) and Ann (red) seen by a worker before a model swap; Bob's
/// track has ended, Ann's is still on screen.
struct BeforeSwap {
    id: Identifier,
    metrics: Arc<NodeMetrics>,
    rec: Recorder,
    dir: tempfile::TempDir,
    red: Figure,
    blue: Figure,
    t0: SystemTime,
    ann: vidar_protocol::IdentityId,
    bob: vidar_protocol::IdentityId,
}

impl BeforeSwap {
    fn new(snapshots: bool) -> BeforeSwap {
        use crate::identify::testing::{figure, spawn};
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = GalleryConfig {
            node_prefix: 1,
            ..GalleryConfig::default()
        };
        let (id, metrics, rec) = spawn(dir.path(), cfg, snapshots, None);
        let mut s = BeforeSwap {
            id,
            metrics,
            rec,
            dir,
            red: figure([220, 40, 40]),
            blue: figure([40, 40, 220]),
            t0: SystemTime::now() - Duration::from_secs(120),
            ann: vidar_protocol::IdentityId(0),
            bob: vidar_protocol::IdentityId(0),
        };
        s.bob = s.decided(1, s.blue, 0, 0);
        s.id.ended(0, TrackId(1), UnixMs(0));
        s.ann = s.decided(2, s.red, 10, 10);
        s
    }

    fn at(&self, s: u64) -> SystemTime {
        self.t0 + Duration::from_secs(s)
    }

    /// Track `track` of figure `f` (first seen at second `first`) at second `s`.
    fn job(&self, track: u64, f: Figure, first: u64, s: u64, decide: bool) -> Job {
        crate::identify::testing::job(track, f, self.at(first), self.at(s), decide)
    }

    /// The identity decided for that track at once.
    fn decided(&mut self, track: u64, f: Figure, first: u64, s: u64) -> vidar_protocol::IdentityId {
        let j = self.job(track, f, first, s, true);
        crate::identify::testing::answer(&mut self.id, j)
            .identity
            .expect("decided")
    }

    fn swap(&self, mut swap: ModelSwap) {
        while let Err(back) = self.id.inbox().model(swap) {
            swap = back;
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn a_model_swap_between_jobs_keeps_the_people_on_screen_and_never_mixes_models() {
    let mut w = BeforeSwap::new(false);
    let (ann, bob, red, blue) = (w.ann, w.bob, w.red, w.blue);
    w.swap(ModelSwap {
        embedder: Box::new(Rotated(ColorEmbedder::default())),
        views: Vec::new(),
    });
    // Ann's track goes on under the new model: views enough to put her back.
    for s in 11..14 {
        let j = w.job(2, red, 10, s, false);
        let r = crate::identify::testing::answer(&mut w.id, j);
        assert_eq!(r.identity, None, "decided before the swap: not again");
    }
    w.id.ended(0, TrackId(2), UnixMs(0));
    // Red again: still Ann, known now by the new model's view of her.
    assert_eq!(w.decided(3, red, 30, 30), ann);
    w.id.ended(0, TrackId(3), UnixMs(0));
    // Blue again: under the new model blue looks like the old red, so a
    // gallery that mixed models would call him Ann; and Bob's old vectors
    // are retired, so he is someone new.
    let bob_again = w.decided(4, blue, 40, 40);
    assert!(
        bob_again != ann && bob_again != bob,
        "{bob_again} (Ann {ann}, Bob {bob})"
    );
    assert!(bob_again.0 > ann.0, "ids are never reused");
    w.id.finish();
    assert_eq!(w.metrics.model_swaps.load(Ordering::Relaxed), 1);
    assert_eq!(w.metrics.identities_retired.load(Ordering::Relaxed), 2);
}

#[test]
fn identities_seen_before_a_model_swap_are_known_again_from_their_snapshots() {
    let mut w = BeforeSwap::new(true);
    let (ann, bob, red, blue) = (w.ann, w.bob, w.red, w.blue);
    w.id.ended(0, TrackId(2), UnixMs(0));
    // The new model sees this node's identities in their snapshots.
    w.rec.writer().flush().expect("flush");
    let cfg = GalleryConfig::default();
    let mut embedder: Box<dyn Embedder> = Box::new(Rotated(ColorEmbedder::default()));
    let views = crate::refresh::reembed(
        embedder.as_mut(),
        &w.dir.path().join("e.db"),
        cfg.max_age_s,
        cfg.max_identities,
        UnixMs::now(),
    )
    .expect("re-embedded");
    let mut got: Vec<_> = views.iter().map(|(i, _)| *i).collect();
    got.sort();
    assert_eq!(got, vec![bob, ann]);
    w.swap(ModelSwap { embedder, views });
    // Both are known again under the new model, though no track of
    // theirs was on screen at the swap.
    assert_eq!(w.decided(3, blue, 30, 30), bob);
    w.id.ended(0, TrackId(3), UnixMs(0));
    assert_eq!(w.decided(4, red, 40, 40), ann);
    w.id.finish();
    assert_eq!(w.metrics.identities_reembedded.load(Ordering::Relaxed), 2);
    assert_eq!(w.metrics.identities_retired.load(Ordering::Relaxed), 0);
    // Their records under the new model are written (a restart restores them).
    w.rec.writer().flush().expect("flush");
    let r = vidar_store::Reader::open(w.dir.path().join("e.db")).expect("reader");
    let last = r
        .identity_records(bob)
        .expect("read")
        .pop()
        .expect("a record");
    assert_eq!(last.value.model, "fake-color@rotated00000");
}
