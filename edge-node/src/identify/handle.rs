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
#[path = "handle_tests.rs"]
mod tests;
