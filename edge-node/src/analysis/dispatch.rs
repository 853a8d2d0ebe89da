//! What the analysis loop hands the detectors: each camera's due frames
//! (its detection interval, lengthened by the adaptive rates when on) to the
//! idle workers, and a busy worker's cameras' next frames behind its batch.

use super::{Analysis, Scratch};
use crate::cameras::rate::Counters;
use crate::detect_pool;
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Analysis {
    /// One look of the adaptive detection rates (once a second), from the
    /// streams' counters in `statuses` (one per camera, in order).
    pub(super) fn adapt_rates(
        &mut self,
        s: &mut Scratch,
        elapsed: Duration,
        statuses: &[(String, vidar_protocol::StreamStatus)],
    ) {
        let Some(rates) = s.rates.as_mut() else {
            return;
        };
        rates.look(
            elapsed,
            self.cameras.iter_mut().zip(statuses).map(|(c, (_, st))| {
                let now = Counters {
                    frames: st.counters.frames,
                    detected: c.metrics.detected.load(Ordering::Relaxed),
                    skipped: c.metrics.motion_skipped.load(Ordering::Relaxed),
                    tracks: c.metrics.tracks.load(Ordering::Relaxed),
                };
                (&mut c.rate, now)
            }),
        );
        for c in &self.cameras {
            c.metrics
                .detection_interval
                .store(c.rate.interval, Ordering::Relaxed);
        }
        self.metrics
            .detector_capacity
            .set(rates.capacity().unwrap_or(0.0));
    }

    /// Hands the detectors what they can take now: the next due frame of every
    /// camera with no frame at a detector, to the idle workers
    /// ([`Analysis::dispatch_idle`]), and a busy worker's cameras' next frames
    /// behind its batch ([`Analysis::queue_ahead`]); false when nothing was
    /// handed out.
    pub(super) fn dispatch(&mut self, s: &mut Scratch) -> bool {
        let handed = self.dispatch_idle(s);
        let queued = self.detectors.depth() > 1 && self.queue_ahead(s);
        handed || queued
    }

    /// Takes the next due frame of every camera that has no frame at a
    /// detector, and hands them to the idle detector threads, spread evenly.
    fn dispatch_idle(&mut self, s: &mut Scratch) -> bool {
        let idle = self.detectors.idle();
        if idle == 0 {
            return false;
        }
        let base = u64::from(self.settings.detection_interval.max(1));
        let max = self.detectors.max_batch();
        let capacity = idle * max;
        s.ready.clear();
        let n = self.cameras.len();
        for k in 0..n {
            let i = (s.next_camera + k) % n;
            let cam = &mut self.cameras[i];
            // A camera's frames at the detectors are all at one worker, which
            // finishes them in order, so they are tracked in order. The ingest
            // queue is small and drops (and counts) the oldest while the camera
            // waits: every frame is either analysed or counted as dropped.
            if cam.in_flight > 0 {
                continue;
            }
            let Some(f) = cam.take_due(cam.rate.interval.max(base)) else {
                continue;
            };
            s.ready.push((cam.key, f));
            if s.ready.len() >= capacity {
                s.next_camera = (i + 1) % n;
                break;
            }
        }
        if s.ready.is_empty() {
            return false;
        }
        let per = s.ready.len().div_ceil(idle).min(max);
        while !s.ready.is_empty() {
            let mut batch = self.detectors.batch();
            let take = per.min(s.ready.len());
            batch.frames.extend(s.ready.drain(..take));
            self.hand(None, batch, s);
        }
        true
    }

    /// Queues a batch behind the one a busy worker runs, taken as an idle
    /// worker would take it: round robin from where the last batch stopped,
    /// over the cameras whose frames are at that worker and those with no
    /// frame at any detector, at most a batch's worth. It waits while one of
    /// that worker's cameras has no due frame yet and the batch would not be
    /// full (the batch the worker would get when done, no fuller for waiting
    /// longer). The worker prepares it while its model runs and starts on it
    /// the moment it is done; a camera's frames stay at one worker, in order.
    /// Cameras take turns: the queued batch is not its running batch's
    /// cameras' by right, or one camera would keep a lone worker forever.
    fn queue_ahead(&mut self, s: &mut Scratch) -> bool {
        let base = u64::from(self.settings.detection_interval.max(1));
        let max = self.detectors.max_batch();
        let n = self.cameras.len();
        let mut any = false;
        for w in 0..self.detectors.threads() {
            if !self.detectors.can_queue(w) {
                continue;
            }
            let (mut due, mut behind) = (0, false);
            for cam in &mut self.cameras {
                let mine = cam.in_flight == 1 && cam.at_worker == w;
                if !(mine || cam.in_flight == 0) {
                    continue;
                }
                if cam.skip_to_due(cam.rate.interval.max(base)) {
                    due += 1;
                } else if mine {
                    behind = true;
                }
            }
            if due == 0 || (behind && due < max) {
                continue;
            }
            let mut batch = self.detectors.batch();
            for k in 0..n {
                let i = (s.next_camera + k) % n;
                let cam = &mut self.cameras[i];
                let mine = cam.in_flight == 1 && cam.at_worker == w;
                if !(mine || cam.in_flight == 0) {
                    continue;
                }
                if let Some(f) = cam.take_due(cam.rate.interval.max(base)) {
                    batch.frames.push((cam.key, f));
                    if batch.frames.len() >= max {
                        s.next_camera = (i + 1) % n;
                        break;
                    }
                }
            }
            if batch.frames.is_empty() {
                self.detectors.recycle(batch);
                continue;
            }
            self.hand(Some(w), batch, s);
            any = true;
        }
        any
    }

    /// Hands `batch` to an idle worker (`to` = `None`) or queues it at worker
    /// `to`, and notes where its cameras' frames are; a batch no worker can
    /// take has its frames counted as dropped.
    fn hand(&mut self, to: Option<usize>, batch: detect_pool::Batch, s: &mut Scratch) {
        s.keys.clear();
        s.keys.extend(batch.frames.iter().map(|(k, _)| *k));
        let outcome = match to {
            None => self.detectors.submit(batch),
            Some(w) => self.detectors.submit_to(w, batch).map(|()| w),
        };
        match outcome {
            Ok(w) => {
                for key in &s.keys {
                    if let Some(cam) = self.cameras.iter_mut().find(|c| c.key == *key) {
                        cam.in_flight += 1;
                        cam.at_worker = w;
                    }
                }
            }
            Err(refused) => {
                // No detector thread left to take it: count the frames as dropped.
                self.metrics
                    .errors
                    .fetch_add(refused.frames.len() as u64, Ordering::Relaxed);
                self.detectors.recycle(refused);
            }
        }
    }
}
