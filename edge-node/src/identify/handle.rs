//! The analysis side's handle of the re-ID worker, and the inbox cluster
//! callbacks queue into.

use super::jobs::{ClusterReid, Identified, Job, RemoteJob, TrackCrop};
use super::jobs::{CHORES_EVERY, INBOX, QUEUE};
use super::worker::{PostReply, Worker};
use crate::recorder::Recorder;
use crate::telemetry::NodeMetrics;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use vidar_protocol::messages::{
    IdentityAnnounce, IdentitySeen, KeepApart, MergeAnnounce, ReidReply, SplitAnnounce,
};
use vidar_protocol::{NodeId, TrackId, UnixMs};
use vidar_reid::{Embedder, Gallery};

/// A refreshed model for the re-ID worker: its embedder, and this node's
/// recent identities as it sees them ([`crate::refresh::reembed`]).
pub struct ModelSwap {
    /// The new model's embedder.
    pub embedder: Box<dyn Embedder>,
    /// Identities re-embedded by it: kept across the swap.
    pub views: Vec<(vidar_protocol::IdentityId, vidar_reid::Embedding)>,
}

impl std::fmt::Debug for ModelSwap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSwap")
            .field("model", &self.embedder.model_tag())
            .field("views", &self.views.len())
            .finish()
    }
}

pub(super) enum Input {
    Local(Job),
    /// A local track ended at `last_ms`.
    Ended {
        camera: usize,
        track: TrackId,
        last_ms: UnixMs,
    },
    Remote(RemoteJob),
    /// The answer to this worker's remote request `id`.
    RemoteReply {
        id: u64,
        answer: Result<ReidReply, String>,
    },
    Announce(IdentityAnnounce),
    Seen(IdentitySeen),
    Merge(MergeAnnounce),
    Split(SplitAnnounce),
    KeepApart(KeepApart),
    /// A refreshed model's embedder, built and checked elsewhere.
    Model(ModelSwap),
    /// Start collecting training samples.
    Training(crate::training::Collector),
    Stop,
}

/// Hands cluster inputs to the re-ID worker (cloneable, for zenoh callbacks).
#[derive(Clone, Debug)]
pub struct Inbox {
    tx: SyncSender<Input>,
    metrics: Arc<NodeMetrics>,
    /// Crops queued or being embedded (local and other nodes').
    crops: Arc<AtomicUsize>,
}

/// Crops an input carries.
fn crops_in(input: &Input) -> usize {
    match input {
        Input::Local(job) => job.tracks.len(),
        Input::Remote(job) => job.request.crops.len(),
        _ => 0,
    }
}

impl Inbox {
    /// Queues `input` if there is room, counting its crops.
    #[allow(clippy::result_large_err)]
    fn try_put(&self, input: Input) -> Result<(), TrySendError<Input>> {
        let n = crops_in(&input);
        self.crops.fetch_add(n, Ordering::Relaxed);
        self.tx.try_send(input).inspect_err(|_| {
            self.crops.fetch_sub(n, Ordering::Relaxed);
        })
    }

    /// Crops waiting for re-ID on this node (queued or being embedded).
    pub fn crops_waiting(&self) -> usize {
        self.crops.load(Ordering::Relaxed)
    }

    /// Queues `input`; when the worker is full (or gone) counts it and gives it back.
    // The input comes back whole so a remote job's reply can still be sent.
    #[allow(clippy::result_large_err)]
    fn send(&self, input: Input) -> Result<(), Input> {
        self.try_put(input).map_err(|e| {
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
    /// Queues another node's word of where an identity is seen (dropped,
    /// counted, when full).
    pub fn seen(&self, s: IdentitySeen) {
        let _ = self.send(Input::Seen(s));
    }
    /// Queues a merge decided by the master (dropped, counted, when full).
    pub fn merge(&self, m: MergeAnnounce) {
        let _ = self.send(Input::Merge(m));
    }
    /// Queues an operator's split (dropped, counted, when full).
    pub fn split(&self, s: SplitAnnounce) {
        let _ = self.send(Input::Split(s));
    }
    /// Queues an operator's undone merge (dropped, counted, when full).
    pub fn keep_apart(&self, k: KeepApart) {
        let _ = self.send(Input::KeepApart(k));
    }
    /// Hands a refreshed model's embedder to the worker, which swaps to it
    /// between two jobs; gives it back when the inbox is full (to be
    /// offered again) or the worker is gone.
    #[allow(clippy::result_large_err)]
    pub fn model(&self, swap: ModelSwap) -> Result<(), ModelSwap> {
        match self.try_put(Input::Model(swap)) {
            Ok(()) => Ok(()),
            Err(
                TrySendError::Full(Input::Model(e)) | TrySendError::Disconnected(Input::Model(e)),
            ) => Err(e),
            // `try_put` gives back what it was given.
            Err(_) => Ok(()),
        }
    }
}

/// Handle of the re-ID worker.
#[derive(Debug)]
pub struct Identifier {
    inbox: Inbox,
    pending: Arc<AtomicUsize>,
    results: Receiver<Identified>,
    thread: Option<JoinHandle<()>>,
    /// Track ends not yet taken by a full inbox: (camera key, track, last ms).
    ended: Vec<(usize, TrackId, UnixMs)>,
    /// The training samples' writer, joined after the worker.
    training: Option<JoinHandle<()>>,
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
        let crops = Arc::new(AtomicUsize::new(0));
        let inbox = Inbox {
            tx,
            metrics: Arc::clone(&metrics),
            crops: Arc::clone(&crops),
        };
        // Remote answers come back as inputs: a full inbox drops one
        // (counted) and its job is identified here at its deadline.
        let own = inbox.clone();
        let post_reply: PostReply = Arc::new(move |id, answer| {
            let _ = own.send(Input::RemoteReply { id, answer });
        });
        let mut worker = Worker {
            learned_splits: Default::default(),
            remote: HashMap::new(),
            next_request: 0,
            post_reply,
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
            training: None,
        };
        let waiting = Arc::clone(&crops);
        let thread = std::thread::Builder::new()
            .name("reid".into())
            .spawn(move || {
                let mut chores_at = std::time::Instant::now() + CHORES_EVERY;
                loop {
                    let now = std::time::Instant::now();
                    if now >= chores_at {
                        worker.chores(UnixMs::now());
                        chores_at = now + CHORES_EVERY;
                    }
                    // Overdue remote answers are given up (and identified
                    // here) when due, whether or not inputs keep coming.
                    let mut remote_due = worker.next_remote_deadline();
                    if remote_due.is_some_and(|d| d <= now) {
                        worker.expire_remote(&out);
                        remote_due = worker.next_remote_deadline();
                    }
                    // Sleeps until an input, the next remote deadline or
                    // the chores: no polling.
                    let until = remote_due.map_or(chores_at, |d| d.min(chores_at));
                    let input = match rx.recv_timeout(until.saturating_duration_since(now)) {
                        Ok(i) => i,
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    {
                        let n = crops_in(&input);
                        match input {
                            Input::Local(job) => {
                                worker.identify(job, &out);
                                worker.pending.fetch_sub(1, Ordering::Relaxed);
                            }
                            Input::Ended {
                                camera,
                                track,
                                last_ms,
                            } => worker.local_ended(camera, track, last_ms),
                            Input::Remote(job) => worker.serve(job),
                            Input::RemoteReply { id, answer } => {
                                worker.remote_reply(id, answer, &out)
                            }
                            Input::Announce(a) => worker.replica(a),
                            Input::Seen(s) => worker.seen_elsewhere(s, UnixMs::now()),
                            Input::Merge(m) => {
                                worker.gallery.merge(m.from, m.into);
                            }
                            Input::Split(s) => worker.learn_split(s),
                            Input::KeepApart(k) => worker.learn_keep_apart(k),
                            Input::Model(m) => worker.swap_model(m.embedder, m.views),
                            Input::Training(c) => worker.training = Some(c),
                            Input::Stop => {
                                // Parked jobs are identified here: nothing waits on a reply.
                                let ids: Vec<u64> = worker.remote.keys().copied().collect();
                                for id in ids {
                                    worker.remote_reply(id, Err("stopping".into()), &out);
                                }
                                break;
                            }
                        }
                        waiting.fetch_sub(n, Ordering::Relaxed);
                        worker.expire_remote(&out);
                    }
                }
            })?;
        Ok(Identifier {
            inbox,
            pending,
            results,
            thread: Some(thread),
            ended: Vec::new(),
            training: None,
        })
    }

    /// Has the worker collect training samples from local tracks from now
    /// on; `writer` (the samples' writer thread) is joined by
    /// [`Identifier::finish`] once the worker, and with it the collector, is gone.
    pub fn collect_training(
        &mut self,
        c: crate::training::Collector,
        writer: JoinHandle<()>,
    ) -> std::io::Result<()> {
        self.training = Some(writer);
        self.inbox
            .tx
            .send(Input::Training(c))
            .map_err(|_| std::io::Error::other("the re-ID worker has stopped"))
    }

    /// Where cluster inputs go.
    pub fn inbox(&self) -> Inbox {
        self.inbox.clone()
    }

    /// Tells the worker a local track ended (so its identity's appearance
    /// closes). Never blocks: when the inbox is full the end is kept and
    /// handed over by a later call or [`Identifier::flush_ended`].
    pub fn ended(&mut self, camera: usize, track: TrackId, last_ms: UnixMs) {
        self.ended.push((camera, track, last_ms));
        self.flush_ended();
    }

    /// Hands over the track ends the inbox could not take before.
    pub fn flush_ended(&mut self) {
        while let Some(&(camera, track, last_ms)) = self.ended.first() {
            let sent = self.inbox.try_put(Input::Ended {
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
        match self.inbox.try_put(Input::Local(job)) {
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
        if let Some(t) = self.training.take() {
            if t.join().is_err() {
                tracing::error!("training samples' writer panicked");
            }
        }
        self.results.try_iter().collect()
    }
}

#[cfg(test)]
mod tests {
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
        let rec = Recorder::open(&dir.path().join("e.db"), &node, Arc::clone(&metrics))
            .expect("recorder");
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
    fn a_track_that_minted_for_want_of_a_clear_view_joins_the_known_identity_its_later_views_match()
    {
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

    #[test]
    fn a_model_swap_between_jobs_keeps_the_people_on_screen_and_never_mixes_models() {
        use crate::identify::testing::{answer, figure, job as one, spawn};
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = GalleryConfig {
            node_prefix: 1,
            ..GalleryConfig::default()
        };
        let (mut id, metrics, _rec) = spawn(dir.path(), cfg, false, None);
        let (red, blue) = (figure([220, 40, 40]), figure([40, 40, 220]));
        let t0 = SystemTime::now() - Duration::from_secs(120);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let decided = |id: &mut Identifier, j: Job| answer(id, j).identity.expect("decided");
        // Bob (blue) came and went; Ann (red) is on screen at the swap.
        let bob = decided(&mut id, one(1, blue, at(0), at(0), true));
        id.ended(0, TrackId(1), UnixMs(0));
        let ann = decided(&mut id, one(2, red, at(10), at(10), true));
        let mut refreshed = ModelSwap {
            embedder: Box::new(Rotated(ColorEmbedder::default())),
            views: Vec::new(),
        };
        while let Err(back) = id.inbox().model(refreshed) {
            refreshed = back;
            std::thread::sleep(Duration::from_millis(5));
        }
        // Ann's track goes on under the new model: views enough to put her back.
        for s in 11..14 {
            let r = answer(&mut id, one(2, red, at(10), at(s), false));
            assert_eq!(r.identity, None, "decided before the swap: not again");
        }
        id.ended(0, TrackId(2), UnixMs(0));
        // Red again: still Ann, known now by the new model's view of her.
        assert_eq!(decided(&mut id, one(3, red, at(30), at(30), true)), ann);
        id.ended(0, TrackId(3), UnixMs(0));
        // Blue again: under the new model blue looks like the old red, so a
        // gallery that mixed models would call him Ann; and Bob's old vectors
        // are retired, so he is someone new.
        let bob_again = decided(&mut id, one(4, blue, at(40), at(40), true));
        assert!(
            bob_again != ann && bob_again != bob,
            "{bob_again} (Ann {ann}, Bob {bob})"
        );
        assert!(bob_again.0 > ann.0, "ids are never reused");
        id.finish();
        assert_eq!(metrics.model_swaps.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.identities_retired.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn identities_seen_before_a_model_swap_are_known_again_from_their_snapshots() {
        use crate::identify::testing::{answer, figure, job as one, spawn};
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = GalleryConfig {
            node_prefix: 1,
            ..GalleryConfig::default()
        };
        let (mut id, metrics, rec) = spawn(dir.path(), cfg.clone(), true, None);
        let (red, blue) = (figure([220, 40, 40]), figure([40, 40, 220]));
        let t0 = SystemTime::now() - Duration::from_secs(120);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let decided = |id: &mut Identifier, j: Job| answer(id, j).identity.expect("decided");
        let bob = decided(&mut id, one(1, blue, at(0), at(0), true));
        id.ended(0, TrackId(1), UnixMs(0));
        let ann = decided(&mut id, one(2, red, at(10), at(10), true));
        id.ended(0, TrackId(2), UnixMs(0));
        // The new model sees this node's identities in their snapshots.
        rec.writer().flush().expect("flush");
        let mut embedder: Box<dyn Embedder> = Box::new(Rotated(ColorEmbedder::default()));
        let views = crate::refresh::reembed(
            embedder.as_mut(),
            &dir.path().join("e.db"),
            cfg.max_age_s,
            cfg.max_identities,
            UnixMs::now(),
        )
        .expect("re-embedded");
        let mut got: Vec<_> = views.iter().map(|(i, _)| *i).collect();
        got.sort();
        assert_eq!(got, vec![bob, ann]);
        let mut swap = ModelSwap { embedder, views };
        while let Err(back) = id.inbox().model(swap) {
            swap = back;
            std::thread::sleep(Duration::from_millis(5));
        }
        // Both are known again under the new model, though no track of
        // theirs was on screen at the swap.
        assert_eq!(decided(&mut id, one(3, blue, at(30), at(30), true)), bob);
        id.ended(0, TrackId(3), UnixMs(0));
        assert_eq!(decided(&mut id, one(4, red, at(40), at(40), true)), ann);
        id.finish();
        assert_eq!(metrics.identities_reembedded.load(Ordering::Relaxed), 2);
        assert_eq!(metrics.identities_retired.load(Ordering::Relaxed), 0);
        // Their records under the new model are written (a restart restores them).
        rec.writer().flush().expect("flush");
        let r = vidar_store::Reader::open(dir.path().join("e.db")).expect("reader");
        let last = r
            .identity_records(bob)
            .expect("read")
            .pop()
            .expect("a record");
        assert_eq!(last.value.model, "fake-color@rotated00000");
    }
}
