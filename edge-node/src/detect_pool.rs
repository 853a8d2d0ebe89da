//! Dedicated inference threads: several detector sessions, each on its own
//! thread, so frames that arrive together from several cameras are detected in
//! parallel instead of one after another. The analysis loop hands a worker a
//! batch of frames (frames move, pixels are not copied) and gets the batch back
//! with its detections; each worker reuses its detection vectors.
//!
//! The pool never queues: a batch is handed only to an idle worker, so a slow
//! detector shows up as frames dropped (and counted) at the ingest queues, not
//! as latency.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;
use vidar_detectors::{DetectError, Detection, Detector, RgbFrame, StageTimings};
use vidar_pipeline::Frame;

/// Frames of one or more cameras detected together: `(camera slot key, frame)`.
#[derive(Debug)]
pub struct Batch {
    /// The frames, in the order their detections come back.
    pub frames: Vec<(usize, Frame)>,
    /// `detections[i]` are the detections of `frames[i]` once done.
    pub detections: Vec<Vec<Detection>>,
}

/// A batch back from a worker.
#[derive(Debug)]
pub struct Done {
    /// The batch with its detections filled in (when `result` is `Ok`).
    pub batch: Batch,
    /// Whether detection succeeded (the error, rendered, when not).
    pub result: Result<(), String>,
    /// Stage timings of this batch.
    pub timings: StageTimings,
    worker: usize,
    /// The worker's thread has ended (its detector panicked).
    fatal: bool,
}

struct Worker {
    jobs: Option<Sender<Batch>>,
    thread: Option<JoinHandle<()>>,
    idle: bool,
}

/// A pool of detector threads.
pub struct DetectPool {
    workers: Vec<Worker>,
    done: Receiver<Done>,
    max_batch: usize,
    /// Spare batches (vectors kept for reuse).
    spare: Vec<Batch>,
}

impl std::fmt::Debug for DetectPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectPool")
            .field("workers", &self.workers.len())
            .field("idle", &self.idle())
            .field("max_batch", &self.max_batch)
            .finish()
    }
}

impl DetectPool {
    /// Starts one thread per detector. Every detector must be the same model.
    pub fn spawn(detectors: Vec<Box<dyn Detector>>) -> std::io::Result<DetectPool> {
        let max_batch = detectors
            .iter()
            .map(|d| d.max_batch())
            .min()
            .unwrap_or(1)
            .max(1);
        let (done_tx, done) = mpsc::channel();
        let mut workers = Vec::with_capacity(detectors.len());
        for (i, detector) in detectors.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel::<Batch>();
            let done_tx = done_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("vidar-detect-{i}"))
                .spawn(move || work(i, detector, rx, done_tx))?;
            workers.push(Worker {
                jobs: Some(tx),
                thread: Some(thread),
                idle: true,
            });
        }
        Ok(DetectPool {
            workers,
            done,
            max_batch,
            spare: Vec::new(),
        })
    }

    /// Frames one worker takes at once.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Detector threads started.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Workers waiting for a batch.
    pub fn idle(&self) -> usize {
        self.workers.iter().filter(|w| w.idle).count()
    }

    /// An empty batch (reused vectors when available).
    pub fn batch(&mut self) -> Batch {
        self.spare.pop().unwrap_or_else(|| Batch {
            frames: Vec::with_capacity(self.max_batch),
            detections: Vec::with_capacity(self.max_batch),
        })
    }

    /// Returns a finished batch's vectors for reuse (its frames are dropped).
    pub fn recycle(&mut self, mut batch: Batch) {
        batch.frames.clear();
        self.spare.push(batch);
    }

    /// Hands `batch` to an idle worker; gives it back when none is idle or the
    /// worker has gone.
    pub fn submit(&mut self, batch: Batch) -> Result<(), Batch> {
        let Some(w) = self.workers.iter_mut().find(|w| w.idle) else {
            return Err(batch);
        };
        let Some(tx) = &w.jobs else {
            return Err(batch);
        };
        match tx.send(batch) {
            Ok(()) => {
                w.idle = false;
                Ok(())
            }
            Err(mpsc::SendError(batch)) => {
                // The worker thread ended (it panicked): never offer it again.
                w.jobs = None;
                w.idle = false;
                tracing::error!("a detector thread has ended; continuing with the others");
                Err(batch)
            }
        }
    }

    /// A finished batch, waiting up to `wait`.
    pub fn next_done(&mut self, wait: Duration) -> Option<Done> {
        let done = if wait.is_zero() {
            self.done.try_recv().ok()
        } else {
            self.done.recv_timeout(wait).ok()
        }?;
        if let Some(w) = self.workers.get_mut(done.worker) {
            if done.fatal {
                w.jobs = None;
                tracing::error!(
                    worker = done.worker,
                    "a detector thread has ended; continuing with the others"
                );
            }
            w.idle = w.jobs.is_some();
        }
        Some(done)
    }

    /// Waits for every batch in flight and returns them (shutdown).
    pub fn drain(&mut self) -> Vec<Done> {
        let mut out = Vec::new();
        while self.workers.iter().any(|w| !w.idle && w.jobs.is_some()) {
            match self.next_done(Duration::from_secs(30)) {
                Some(d) => out.push(d),
                None => break,
            }
        }
        out
    }
}

impl Drop for DetectPool {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.jobs = None;
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn work(index: usize, mut detector: Box<dyn Detector>, jobs: Receiver<Batch>, done: Sender<Done>) {
    while let Ok(mut batch) = jobs.recv() {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let rgb: Result<Vec<RgbFrame<'_>>, _> = batch
                .frames
                .iter()
                .map(|(_, f)| RgbFrame::new(f.width, f.height, f.stride, f.pixels()))
                .collect();
            rgb.map_err(DetectError::from)
                .and_then(|rgb| detector.detect_into(&rgb, &mut batch.detections))
                .map_err(|e| e.to_string())
        }));
        let (result, fatal) = match outcome {
            Ok(r) => (r, false),
            Err(_) => (Err("the detector panicked".to_string()), true),
        };
        let timings = if fatal {
            StageTimings::default()
        } else {
            detector.take_timings()
        };
        let sent = done.send(Done {
            batch,
            result,
            timings,
            worker: index,
            fatal,
        });
        if sent.is_err() || fatal {
            return;
        }
    }
}
