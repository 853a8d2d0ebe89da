//! Dedicated inference threads: several detector sessions, each on its own
//! thread, so frames that arrive together from several cameras are detected in
//! parallel instead of one after another. The analysis loop hands a worker a
//! batch of frames (frames move, pixels are not copied) and gets the batch back
//! with its detections; each worker reuses its detection vectors.
//!
//! A worker whose detector can prepare its input elsewhere
//! ([`vidar_detectors::Detector::preparer`]) has a second thread that
//! prepares (resizes) each batch, so with a second batch queued the next
//! frames are prepared while the model runs on the last, and the model starts
//! on them the moment it is done: the inference thread runs the model and
//! nothing else. A worker takes at most `depth` batches at once (one running,
//! the rest prepared and waiting); nothing else queues, so a slow detector
//! shows up as frames dropped (and counted) at the ingest queues, not as
//! latency.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::Duration;
use vidar_detectors::{
    DetectError, Detection, Detector, Picture, Prepared, Preparer, StageTimings,
};
use vidar_pipeline::Frame;

/// Frames of one or more cameras detected together: `(camera slot key, frame)`.
#[derive(Debug)]
pub struct Batch {
    /// The frames, in the order their detections come back.
    pub frames: Vec<(usize, Frame)>,
    /// `detections[i]` are the detections of `frames[i]` once done.
    pub detections: Vec<Vec<Detection>>,
    /// The detector's input, when a preparer thread fills it (kept for reuse).
    input: Prepared,
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
    /// The worker that detected it (as [`DetectPool::submit`] returned).
    pub worker: usize,
    /// The worker's thread has ended (its detector panicked).
    fatal: bool,
}

struct Worker {
    jobs: Option<Sender<Batch>>,
    threads: Vec<JoinHandle<()>>,
    /// Batches handed to it and not back yet.
    busy: usize,
}

impl Worker {
    fn alive(&self) -> bool {
        self.jobs.is_some()
    }
}

/// A pool of detector threads.
pub struct DetectPool {
    workers: Vec<Worker>,
    done: Receiver<Done>,
    max_batch: usize,
    depth: usize,
    /// Spare batches (vectors kept for reuse).
    spare: Vec<Batch>,
}

impl std::fmt::Debug for DetectPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetectPool")
            .field("workers", &self.workers.len())
            .field("idle", &self.idle())
            .field("max_batch", &self.max_batch)
            .field("depth", &self.depth)
            .finish()
    }
}

impl DetectPool {
    /// Starts one worker per detector (every detector the same model), each
    /// taking up to `depth` batches at once (at least 1).
    pub fn spawn(detectors: Vec<Box<dyn Detector>>, depth: usize) -> std::io::Result<DetectPool> {
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
            let mut threads = Vec::with_capacity(2);
            let prepared = detector.preparer();
            let has_preparer = prepared.is_some();
            let jobs = match prepared {
                Some(preparer) => {
                    let (ptx, prx) = mpsc::channel::<Batch>();
                    let done_tx = done_tx.clone();
                    threads.push(
                        std::thread::Builder::new()
                            .name(format!("vidar-prep-{i}"))
                            .spawn(move || prepare(i, preparer, rx, ptx, done_tx))?,
                    );
                    prx
                }
                None => rx,
            };
            let done_tx = done_tx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("vidar-detect-{i}"))
                    .spawn(move || work(i, detector, has_preparer, jobs, done_tx))?,
            );
            workers.push(Worker {
                jobs: Some(tx),
                threads,
                busy: 0,
            });
        }
        Ok(DetectPool {
            workers,
            done,
            max_batch,
            depth: depth.max(1),
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
        self.workers
            .iter()
            .filter(|w| w.alive() && w.busy == 0)
            .count()
    }

    /// Whether worker `w` is running a batch and would take another now (to
    /// prepare it while the model runs): see [`DetectPool::submit_to`].
    pub fn can_queue(&self, w: usize) -> bool {
        self.workers
            .get(w)
            .is_some_and(|x| x.alive() && x.busy > 0 && x.busy < self.depth)
    }

    /// Batches a worker takes at once.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// An empty batch (reused vectors when available).
    pub fn batch(&mut self) -> Batch {
        self.spare.pop().unwrap_or_else(|| Batch {
            frames: Vec::with_capacity(self.max_batch),
            detections: Vec::with_capacity(self.max_batch),
            input: Prepared::default(),
        })
    }

    /// Returns a finished batch's vectors for reuse (its frames are dropped).
    pub fn recycle(&mut self, mut batch: Batch) {
        batch.frames.clear();
        self.spare.push(batch);
    }

    /// Hands `batch` to an idle worker and says which; gives it back when none
    /// is idle or the worker has gone.
    pub fn submit(&mut self, batch: Batch) -> Result<usize, Batch> {
        let Some(w) = self.workers.iter().position(|w| w.alive() && w.busy == 0) else {
            return Err(batch);
        };
        self.send(w, batch).map(|()| w)
    }

    /// Queues `batch` behind the one worker `w` is running (frames of a
    /// camera that already has a frame there stay in order: a worker finishes
    /// its batches in the order it took them); gives it back when `w` cannot
    /// take it ([`DetectPool::can_queue`]).
    pub fn submit_to(&mut self, w: usize, batch: Batch) -> Result<(), Batch> {
        if !self.can_queue(w) {
            return Err(batch);
        }
        self.send(w, batch)
    }

    fn send(&mut self, w: usize, batch: Batch) -> Result<(), Batch> {
        let Some(worker) = self.workers.get_mut(w) else {
            return Err(batch);
        };
        let Some(tx) = &worker.jobs else {
            return Err(batch);
        };
        match tx.send(batch) {
            Ok(()) => {
                worker.busy += 1;
                Ok(())
            }
            Err(mpsc::SendError(batch)) => {
                // The worker's threads ended (its detector panicked): never offer it again.
                worker.jobs = None;
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
            w.busy = w.busy.saturating_sub(1);
        }
        Some(done)
    }

    /// Waits for every batch in flight and returns them (shutdown).
    pub fn drain(&mut self) -> Vec<Done> {
        let mut out = Vec::new();
        while self.workers.iter().any(|w| w.busy > 0 && w.alive()) {
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
            for t in w.threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

/// A worker's preparer thread: prepares each batch's input and passes it on
/// to the inference thread (or back as failed). Once either thread has died,
/// every batch still coming is handed back as failed, so none is lost.
fn prepare(
    index: usize,
    mut preparer: Box<dyn Preparer>,
    jobs: Receiver<Batch>,
    ready: Sender<Batch>,
    done: Sender<Done>,
) {
    let mut dead = false;
    while let Ok(mut batch) = jobs.recv() {
        let (result, fatal) = if dead {
            (Err(ENDED.to_string()), true)
        } else {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                rgb_of(&batch.frames)
                    .and_then(|rgb| preparer.prepare(&rgb, &mut batch.input))
                    .map_err(|e| e.to_string())
            }));
            match outcome {
                Ok(Ok(())) => match ready.send(batch) {
                    Ok(()) => continue,
                    Err(mpsc::SendError(back)) => {
                        // The inference thread has ended (it reported why).
                        batch = back;
                        (Err(ENDED.to_string()), true)
                    }
                },
                Ok(Err(e)) => (Err(e), false),
                Err(_) => (Err("the detector's preparer panicked".to_string()), true),
            }
        };
        dead |= fatal;
        if !reply(
            &done,
            index,
            batch,
            (result, fatal),
            StageTimings::default(),
        ) {
            return;
        }
    }
}

/// Hands `batch` back to the pool with its outcome (`result`, and whether
/// the thread that made it has died); false once the pool is gone.
fn reply(
    done: &Sender<Done>,
    worker: usize,
    batch: Batch,
    (result, fatal): (Result<(), String>, bool),
    timings: StageTimings,
) -> bool {
    done.send(Done {
        batch,
        result,
        timings,
        worker,
        fatal,
    })
    .is_ok()
}

/// The frames' pixels as the detector reads them.
fn rgb_of(frames: &[(usize, Frame)]) -> Result<Vec<Picture<'_>>, DetectError> {
    frames
        .iter()
        .map(|(_, f)| crate::media::picture(f))
        .collect::<Result<_, _>>()
        .map_err(DetectError::from)
}

/// Why a batch given to a worker whose threads have died comes back.
const ENDED: &str = "the detector thread has ended";

/// A worker's inference thread: detects each batch (from prepared input when
/// the worker has a preparer thread) and hands it back. After its detector
/// panicked it hands back every batch still coming as failed, until the pool
/// closes its channel, so none is lost.
fn work(
    index: usize,
    mut detector: Box<dyn Detector>,
    prepared: bool,
    jobs: Receiver<Batch>,
    done: Sender<Done>,
) {
    let mut dead = false;
    while let Ok(mut batch) = jobs.recv() {
        let (result, fatal) = if dead {
            (Err(ENDED.to_string()), true)
        } else {
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let Batch {
                    frames,
                    detections,
                    input,
                } = &mut batch;
                if prepared {
                    return detector
                        .detect_prepared(input, detections)
                        .map_err(|e| e.to_string());
                }
                rgb_of(frames)
                    .and_then(|rgb| detector.detect_into(&rgb, detections))
                    .map_err(|e| e.to_string())
            }));
            match outcome {
                Ok(r) => (r, false),
                Err(_) => (Err("the detector panicked".to_string()), true),
            }
        };
        let timings = if fatal {
            StageTimings::default()
        } else {
            detector.take_timings()
        };
        dead |= fatal;
        if !reply(&done, index, batch, (result, fatal), timings) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::{Instant, SystemTime};
    use vidar_protocol::{BBox, CameraId};

    /// What the staged detector's threads did, in order: `(thread name, step, frame tag)`.
    type Log = Arc<Mutex<Vec<(String, &'static str, u8)>>>;

    fn note(log: &Log, step: &'static str, tag: u8) {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name, step, tag));
    }

    /// Prepares a frame as its tag (the first byte of its pixels).
    struct TagPreparer(Log);

    impl Preparer for TagPreparer {
        fn prepare(
            &mut self,
            frames: &[Picture<'_>],
            into: &mut Prepared,
        ) -> Result<(), DetectError> {
            into.data.clear();
            into.sizes.clear();
            for f in frames {
                let Picture::Rgb(rgb) = f else {
                    return Err(vidar_detectors::ImageError("tagged frames are RGB".into()).into());
                };
                let tag = rgb.data()[0];
                note(&self.0, "prepare", tag);
                into.data.push(tag);
                into.sizes.push((f.width(), f.height()));
            }
            Ok(())
        }
    }

    /// Detects one person per frame, scored by the frame's tag, from prepared
    /// input only; waits for a token before each run, and panics on tag 99.
    struct Staged {
        log: Log,
        tokens: Arc<Mutex<Receiver<()>>>,
    }

    impl Detector for Staged {
        fn name(&self) -> &str {
            "staged"
        }
        fn max_batch(&self) -> usize {
            4
        }
        fn detect_into(
            &mut self,
            _: &[Picture<'_>],
            _: &mut Vec<Vec<Detection>>,
        ) -> Result<(), DetectError> {
            panic!("a worker with a preparer detects from prepared input");
        }
        fn take_timings(&mut self) -> StageTimings {
            StageTimings::default()
        }
        fn preparer(&self) -> Option<Box<dyn Preparer>> {
            Some(Box::new(TagPreparer(Arc::clone(&self.log))))
        }
        fn detect_prepared(
            &mut self,
            input: &Prepared,
            out: &mut Vec<Vec<Detection>>,
        ) -> Result<(), DetectError> {
            let first = input.data.first().copied().unwrap_or(0);
            note(&self.log, "waiting", first);
            let _ = self.tokens.lock().unwrap_or_else(|p| p.into_inner()).recv();
            assert_ne!(first, 99, "the detector panics on tag 99");
            out.clear();
            for &tag in &input.data {
                note(&self.log, "detect", tag);
                out.push(vec![Detection {
                    bbox: BBox::from_corners(0.0, 0.0, 4.0, 8.0),
                    score: f32::from(tag),
                    class_id: 0,
                }]);
            }
            Ok(())
        }
    }

    fn frame(tag: u8) -> (usize, Frame) {
        let mut px = vec![0u8; 8 * 8 * 3];
        px[0] = tag;
        let camera = CameraId::new("c").expect("camera id");
        let f =
            Frame::from_rgb(camera, u64::from(tag), SystemTime::now(), 8, 8, px).expect("frame");
        (0, f)
    }

    fn pool() -> (DetectPool, Log, Sender<()>) {
        let log: Log = Arc::default();
        let (tokens, rx) = mpsc::channel();
        let detector = Staged {
            log: Arc::clone(&log),
            tokens: Arc::new(Mutex::new(rx)),
        };
        let pool = DetectPool::spawn(vec![Box::new(detector)], 2).expect("pool");
        (pool, log, tokens)
    }

    fn submit(pool: &mut DetectPool, to: Option<usize>, tag: u8) {
        let mut batch = pool.batch();
        batch.frames.push(frame(tag));
        match to {
            None => assert_eq!(pool.submit(batch).ok(), Some(0)),
            Some(w) => assert!(pool.submit_to(w, batch).is_ok()),
        }
    }

    fn until(log: &Log, what: (&'static str, u8)) {
        let t0 = Instant::now();
        while !log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(_, s, t)| (*s, *t) == what)
        {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no {what:?}: {log:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_next_batch_is_prepared_on_its_own_thread_while_the_model_runs_and_comes_back_in_order() {
        let (mut pool, log, tokens) = pool();
        assert!(!pool.can_queue(0), "nothing to queue behind");
        submit(&mut pool, None, 1);
        assert_eq!(pool.idle(), 0);
        assert!(pool.can_queue(0));
        submit(&mut pool, Some(0), 2);
        assert!(!pool.can_queue(0), "depth 2: one running, one prepared");
        let mut refused = pool.batch();
        refused.frames.push(frame(3));
        assert!(pool.submit_to(0, refused).is_err());
        // Batch 2 is prepared while batch 1 waits in the model.
        until(&log, ("prepare", 2));
        assert!(!log
            .lock()
            .expect("log")
            .iter()
            .any(|(_, s, _)| *s == "detect"));
        tokens.send(()).expect("token");
        tokens.send(()).expect("token");
        let first = pool.next_done(Duration::from_secs(10)).expect("batch 1");
        let second = pool.next_done(Duration::from_secs(10)).expect("batch 2");
        for (done, tag) in [(&first, 1.0), (&second, 2.0)] {
            assert_eq!(done.result, Ok(()));
            assert_eq!(done.batch.detections[0][0].score, tag, "in the order taken");
        }
        assert_eq!(pool.idle(), 1);
        for (thread, step, _) in log.lock().expect("log").iter() {
            let want = if *step == "prepare" {
                "vidar-prep-0"
            } else {
                "vidar-detect-0"
            };
            assert_eq!(thread, want, "{step}");
        }
    }

    #[test]
    fn a_worker_whose_model_panics_hands_back_every_batch_it_held() {
        let (mut pool, log, tokens) = pool();
        submit(&mut pool, None, 99);
        submit(&mut pool, Some(0), 4);
        until(&log, ("prepare", 4));
        tokens.send(()).expect("token");
        let mut back = Vec::new();
        while let Some(done) = pool.next_done(Duration::from_secs(10)) {
            back.push(done);
            if back.len() == 2 {
                break;
            }
        }
        assert_eq!(back.len(), 2, "both batches came back");
        assert!(
            back.iter().all(|d| d.result.is_err()),
            "{:?}",
            back.iter().map(|d| &d.result).collect::<Vec<_>>()
        );
        assert_eq!(pool.idle(), 0, "the worker is gone");
        let mut batch = pool.batch();
        batch.frames.push(frame(5));
        assert!(pool.submit(batch).is_err());
        assert!(pool.drain().is_empty());
    }
}
