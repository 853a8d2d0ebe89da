//! Split training rounds on this node (EdgeSplit, issue 13; `[training]
//! rounds`): the master's [`TrainRequest`]s on `train(node)`, answered by
//! `vidar_train`'s node side with this node's own training samples. Only
//! activations, their gradients and the node-side weights cross; a crop
//! never leaves the node (the node side refuses a cut of 0).
//!
//! Requests run one at a time on a thread of their own, with candle's
//! parallel work in a pool of its own; every one of those threads runs
//! under `SCHED_IDLE`, so they get only the CPU live analysis leaves: a
//! round slows down when the cameras need the cores, it never slows them.
//! The zenoh callback only queues the request (two at most; more are
//! answered "busy"), so a round never blocks zenoh's threads.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use vidar_link::Responder;
use vidar_protocol::messages::{TrainReply, TrainRequest};
use vidar_train::data::Preprocess;
use vidar_train::rounds::{crops_from_training_file, NodeTrainer};

use crate::telemetry::NodeMetrics;

/// Requests queued for the training thread; more are answered "busy".
const QUEUE: usize = 2;
/// Most tracklets read from the samples' file for one round.
const MAX_TRACKLETS: usize = 20_000;

type Job = (TrainRequest, Responder<TrainReply>);

/// Declares `train(node)` and starts the thread that answers it; `None`
/// (logged) when this node's model cannot be trained.
pub(super) fn start(
    net: &vidar_link::Link,
    key: &str,
    parts: &super::Parts,
    stop: vidar_runtime::Shutdown,
) -> anyhow::Result<Option<(vidar_link::Service, std::thread::JoinHandle<()>)>> {
    let (model, path, spec) = match parts.refresher.training_model() {
        Ok(m) => m,
        Err(why) => {
            tracing::warn!(%why, "split training rounds are on, but this node's re-ID model cannot be trained: not taking part");
            return Ok(None);
        }
    };
    let pre = Preprocess::for_model(&spec)?;
    let samples = parts.config.training.file(&parts.config.database);
    let source = Box::new(move || crops_from_training_file(&samples, MAX_TRACKLETS));
    let trainer = NodeTrainer::new(&model, &path, pre, source);
    let threads = match parts.config.training.round_threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("train-{i}"))
        .start_handler(|_| idle_priority())
        .build()?;
    let (tx, rx) = sync_channel::<Job>(QUEUE);
    let metrics = Arc::clone(&parts.metrics);
    let busy = Arc::clone(&parts.metrics);
    let service = net.serve(
        key,
        move |req: TrainRequest, answer: Responder<TrainReply>| {
            if let Err(TrySendError::Full((_, answer)) | TrySendError::Disconnected((_, answer))) =
                tx.try_send((req, answer))
            {
                busy.training_round_refused.fetch_add(1, Ordering::Relaxed);
                answer.reply(Ok(TrainReply::Refused {
                    why: "busy: a training step is already queued".into(),
                }));
            }
        },
    )?;
    let thread = std::thread::Builder::new()
        .name("train".into())
        .spawn(move || {
            idle_priority();
            run(trainer, &pool, &rx, &metrics, &stop);
        })?;
    tracing::info!(model, file = %path.display(), threads, "taking part in split training rounds");
    Ok(Some((service, thread)))
}

fn run(
    mut trainer: NodeTrainer,
    pool: &rayon::ThreadPool,
    rx: &Receiver<Job>,
    metrics: &NodeMetrics,
    stop: &vidar_runtime::Shutdown,
) {
    while !stop.is_triggered() {
        let (req, answer) = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(j) => j,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let round = req.round;
        let reply = pool.install(|| trainer.handle(req));
        match &reply {
            TrainReply::Refused { why } => {
                metrics
                    .training_round_refused
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(round, %why, "split training step refused");
            }
            _ => {
                metrics.training_round_steps.fetch_add(1, Ordering::Relaxed);
            }
        }
        answer.reply(Ok(reply));
    }
}

/// Puts the calling thread under `SCHED_IDLE`; logged, not fatal, where
/// refused.
fn idle_priority() {
    if let Err(e) = vidar_runtime::priority::idle_thread() {
        tracing::debug!(error = %e, "SCHED_IDLE refused; training threads run at normal priority");
    }
}
