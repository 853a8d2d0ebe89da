//! The running ingest of one camera: a supervisor thread that builds the
//! GStreamer pipeline, watches it, and rebuilds it after an error, an end of
//! stream or a stall, with exponential backoff and jitter.
//!
//! Frames leave the appsink callback into a bounded drop-oldest queue; the
//! callback never blocks on the consumer, so a slow consumer costs dropped
//! (counted) frames, never latency.

use crate::build::{self, Built};
use crate::config::IngestConfig;
use crate::error::IngestError;
use crate::frame::Frame;
use crate::queue::DropOldestQueue;
use crate::source::Source;
use gstreamer as gst;
use gstreamer::prelude::*;
use rand::Rng;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vidar_protocol::{CameraId, StreamCounters, StreamState, StreamStatus};

/// A session that streamed at least this long resets the backoff.
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(10);
/// How often the supervisor checks the bus, stalls and shutdown.
const POLL: Duration = Duration::from_millis(100);

/// State shared between the supervisor, the appsink callback and readers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) camera: CameraId,
    pub(crate) queue: DropOldestQueue<Frame>,
    state: AtomicU8,
    pub(crate) frames: AtomicU64,
    pub(crate) next_seq: AtomicU64,
    reconnects: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    /// Encoded video bytes received (RTP), across reconnects.
    pub(crate) bytes: AtomicU64,
    pub(crate) width: AtomicU32,
    pub(crate) height: AtomicU32,
    /// Nanoseconds since `epoch` of the last delivered frame (0 = none yet).
    pub(crate) last_frame_ns: AtomicU64,
    pub(crate) epoch: Instant,
    last_error: Mutex<Option<String>>,
    pub(crate) decoder: Mutex<Option<String>>,
    stop: AtomicBool,
    stop_lock: Mutex<()>,
    stop_cv: Condvar,
}

fn state_from(v: u8) -> StreamState {
    match v {
        0 => StreamState::Connecting,
        1 => StreamState::Streaming,
        2 => StreamState::BackingOff,
        3 => StreamState::Failed,
        _ => StreamState::Stopped,
    }
}

fn state_to(s: StreamState) -> u8 {
    match s {
        StreamState::Connecting => 0,
        StreamState::Streaming => 1,
        StreamState::BackingOff => 2,
        StreamState::Failed => 3,
        StreamState::Stopped => 4,
    }
}

impl Shared {
    pub(crate) fn set_state(&self, s: StreamState) {
        self.state.store(state_to(s), Ordering::Relaxed);
    }
    fn state(&self) -> StreamState {
        state_from(self.state.load(Ordering::Relaxed))
    }
    fn set_error(&self, e: impl Into<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.into());
    }
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    /// Sleeps up to `d`, returning early (true) when asked to stop.
    fn sleep_unless_stopped(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut g = self.stop_lock.lock().unwrap_or_else(|p| p.into_inner());
        while !self.stopping() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self
                .stop_cv
                .wait_timeout(g, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        true
    }
    fn since_last_frame(&self) -> Option<Duration> {
        match self.last_frame_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(
                self.epoch
                    .elapsed()
                    .saturating_sub(Duration::from_nanos(ns)),
            ),
        }
    }
}

/// The running ingest of one camera. Dropping it stops the pipeline.
#[derive(Debug)]
pub struct Ingest {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Ingest {
    /// Validates `config`, initialises GStreamer and starts ingesting in the
    /// background. Connection problems do not fail here: they show in
    /// [`Ingest::status`] and are retried; only invalid configuration and
    /// missing GStreamer elements are errors.
    pub fn start(config: IngestConfig) -> Result<Ingest, IngestError> {
        let source = config.checked_source()?;
        gst::init().map_err(|e| IngestError::Init(e.to_string()))?;
        build::check_elements(&source)?;
        let shared = Arc::new(Shared {
            camera: config.camera.clone(),
            queue: DropOldestQueue::new(config.queue_capacity),
            state: AtomicU8::new(state_to(StreamState::Connecting)),
            frames: AtomicU64::new(0),
            next_seq: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            decode_errors: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            width: AtomicU32::new(0),
            height: AtomicU32::new(0),
            last_frame_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            last_error: Mutex::new(None),
            decoder: Mutex::new(None),
            stop: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            stop_cv: Condvar::new(),
        });
        let sh = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("ingest-{}", config.camera))
            .spawn(move || supervise(&sh, &config, &source))
            .map_err(|e| IngestError::Thread(e.to_string()))?;
        Ok(Ingest {
            shared,
            thread: Some(thread),
        })
    }

    /// The camera this ingest serves.
    pub fn camera(&self) -> &CameraId {
        &self.shared.camera
    }

    /// The oldest waiting frame, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Frame> {
        self.shared.queue.pop_timeout(timeout)
    }

    /// The oldest waiting frame, if any.
    pub fn try_recv(&self) -> Option<Frame> {
        self.shared.queue.try_pop()
    }

    /// Frames waiting in the queue.
    pub fn queued(&self) -> usize {
        self.shared.queue.len()
    }

    /// A snapshot of state and counters.
    pub fn status(&self) -> StreamStatus {
        let s = &self.shared;
        StreamStatus {
            state: s.state(),
            counters: StreamCounters {
                frames: s.frames.load(Ordering::Relaxed),
                dropped: s.queue.dropped(),
                reconnects: s.reconnects.load(Ordering::Relaxed),
                decode_errors: s.decode_errors.load(Ordering::Relaxed),
                bytes: s.bytes.load(Ordering::Relaxed),
            },
            width: s.width.load(Ordering::Relaxed),
            height: s.height.load(Ordering::Relaxed),
            queue_depth: s.queue.len(),
            decoder: s.decoder.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            last_error: s
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Stops the pipeline and waits for the supervisor to finish.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        {
            let _g = self
                .shared
                .stop_lock
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            self.shared.stop.store(true, Ordering::Relaxed);
        }
        self.shared.stop_cv.notify_all();
        self.shared.queue.wake_all();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!(camera = %self.shared.camera, "ingest supervisor panicked");
            }
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// How one pipeline run ended.
enum Outcome {
    /// Asked to stop.
    Shutdown,
    /// A non-looping file reached its end.
    Finished,
    /// Will not get better by retrying (e.g. a file that is not video).
    Fatal(String),
    /// Rebuild after a delay; `streamed` is how long frames flowed.
    Retry { reason: String, streamed: Duration },
}

fn supervise(shared: &Arc<Shared>, config: &IngestConfig, source: &Source) {
    let mut delay = Duration::from_millis(config.backoff_initial_ms);
    let max = Duration::from_millis(config.backoff_max_ms);
    let mut attempt: u64 = 0;
    loop {
        if shared.stopping() {
            break;
        }
        shared.set_state(StreamState::Connecting);
        let outcome = match build::build(shared, config, source) {
            Ok(built) => run_once(shared, config, source, built),
            Err(e @ IngestError::MissingElement { .. }) => Outcome::Fatal(e.to_string()),
            Err(e) if !source.is_live() => Outcome::Fatal(e.to_string()),
            Err(e) => Outcome::Retry {
                reason: e.to_string(),
                streamed: Duration::ZERO,
            },
        };
        match outcome {
            Outcome::Shutdown => break,
            Outcome::Finished => {
                tracing::info!(camera = %shared.camera, "end of file");
                shared.set_state(StreamState::Stopped);
                return;
            }
            Outcome::Fatal(reason) => {
                tracing::error!(camera = %shared.camera, source = %source.describe(), error = %reason, "ingest failed");
                shared.set_error(reason);
                shared.set_state(StreamState::Failed);
                return;
            }
            Outcome::Retry { reason, streamed } => {
                attempt += 1;
                if streamed >= BACKOFF_RESET_AFTER {
                    delay = Duration::from_millis(config.backoff_initial_ms);
                }
                let jitter = rand::thread_rng().gen_range(0.8..1.2);
                let wait = delay.mul_f64(jitter).min(max);
                tracing::warn!(camera = %shared.camera, source = %source.describe(), error = %reason,
                    attempt, retry_in_ms = wait.as_millis() as u64, "stream lost; reconnecting");
                shared.set_error(reason);
                shared.set_state(StreamState::BackingOff);
                if shared.sleep_unless_stopped(wait) {
                    break;
                }
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                delay = (delay * 2).min(max);
            }
        }
    }
    shared.set_state(StreamState::Stopped);
}

fn run_once(shared: &Arc<Shared>, config: &IngestConfig, source: &Source, built: Built) -> Outcome {
    let Built { pipeline, .. } = built;
    let outcome = watch(shared, config, source, &pipeline);
    if pipeline.set_state(gst::State::Null).is_err() {
        tracing::warn!(camera = %shared.camera, "pipeline refused to stop cleanly");
    }
    outcome
}

fn watch(
    shared: &Arc<Shared>,
    config: &IngestConfig,
    source: &Source,
    pipeline: &gst::Pipeline,
) -> Outcome {
    let started = Instant::now();
    let frames_at_start = shared.frames.load(Ordering::Relaxed);
    let Some(bus) = pipeline.bus() else {
        return Outcome::Fatal("pipeline has no bus".into());
    };
    if let Err(e) = pipeline.set_state(gst::State::Playing) {
        // The reason is on the bus; fall through to read it.
        tracing::debug!(camera = %shared.camera, error = %e, "set_state(Playing) failed");
    }
    let mut first_frame_at: Option<Instant> = None;
    loop {
        if shared.stopping() {
            return Outcome::Shutdown;
        }
        let got_frames = shared.frames.load(Ordering::Relaxed) > frames_at_start;
        if got_frames && first_frame_at.is_none() {
            first_frame_at = Some(Instant::now());
            shared.set_state(StreamState::Streaming);
            tracing::info!(camera = %shared.camera, source = %source.describe(),
                connect_ms = started.elapsed().as_millis() as u64, "streaming");
        }
        let streamed = first_frame_at.map(|t| t.elapsed()).unwrap_or_default();
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_nseconds(POLL.as_nanos() as u64)) {
            use gst::MessageView;
            match msg.view() {
                MessageView::Error(err) => {
                    let reason = describe_error(&msg, err.error(), err.debug());
                    return classify_error(source, got_frames, reason, streamed);
                }
                MessageView::Warning(w) => {
                    // Stream-domain warnings are corrupt or undecodable data;
                    // others (latency, buffering advice) are only logged.
                    let corrupt = w.error().is::<gst::StreamError>();
                    if corrupt {
                        shared.decode_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(camera = %shared.camera, corrupt, warning = %describe_error(&msg, w.error(), w.debug()), "stream warning");
                }
                MessageView::Eos(_) => match source {
                    Source::File { .. } if config.loop_file && got_frames => {
                        if let Err(e) = pipeline.seek_simple(
                            gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                            gst::ClockTime::ZERO,
                        ) {
                            return Outcome::Retry {
                                reason: format!("could not loop the file: {e}"),
                                streamed,
                            };
                        }
                    }
                    Source::File { .. } if !got_frames => {
                        return Outcome::Fatal("the file has no decodable video frames".into());
                    }
                    Source::File { .. } => return Outcome::Finished,
                    _ => {
                        return Outcome::Retry {
                            reason: "the server ended the stream (EOS)".into(),
                            streamed,
                        }
                    }
                },
                _ => {}
            }
        }
        match (first_frame_at, shared.since_last_frame()) {
            (None, _) if started.elapsed() >= config.connect_timeout() => {
                let what = if source.is_live() {
                    "the server sent no video"
                } else {
                    "the source produced no frames"
                };
                return Outcome::Retry {
                    reason: format!(
                        "no frame within {} ms of connecting ({what})",
                        config.connect_timeout_ms
                    ),
                    streamed: Duration::ZERO,
                };
            }
            (Some(_), Some(idle)) if idle >= config.stall_timeout() => {
                return Outcome::Retry {
                    reason: format!("stalled: no frame for {} ms", idle.as_millis()),
                    streamed,
                };
            }
            _ => {}
        }
    }
}

fn describe_error(
    msg: &gst::Message,
    err: gst::glib::Error,
    debug: Option<gst::glib::GString>,
) -> String {
    let src = msg
        .src()
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| "pipeline".into());
    let mut text = format!("{src}: {}", err.message());
    if let Some(d) = debug {
        let line = d.lines().last().unwrap_or("");
        let line: String = line.chars().take(200).collect();
        if !line.is_empty() {
            text.push_str(&format!(" ({line})"));
        }
    }
    text
}

fn classify_error(
    source: &Source,
    got_frames: bool,
    reason: String,
    streamed: Duration,
) -> Outcome {
    match source {
        // A file that fails before its first frame will fail again: not video,
        // unreadable, unsupported codec.
        Source::File { .. } if !got_frames => Outcome::Fatal(reason),
        Source::Synthetic(_) => Outcome::Fatal(reason),
        _ => Outcome::Retry { reason, streamed },
    }
}
