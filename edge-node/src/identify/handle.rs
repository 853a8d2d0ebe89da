//! The analysis side's handle of the re-ID worker, and the inbox cluster
//! callbacks queue into.

use super::jobs::{ClusterReid, Identified, Job, RemoteJob, TrackCrop};
use super::jobs::{INBOX, QUEUE};
use super::worker::{TrackKey, Worker};
use crate::recorder::Recorder;
use crate::telemetry::NodeMetrics;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use vidar_protocol::messages::{IdentityAnnounce, MergeAnnounce};
use vidar_protocol::NodeId;
use vidar_reid::{Embedder, Gallery};

pub(super) enum Input {
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
#[derive(Clone, Debug)]
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
#[derive(Debug)]
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
