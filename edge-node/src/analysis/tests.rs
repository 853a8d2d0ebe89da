//! The analysis loop with its real detector pool, trackers, re-ID worker,
//! gallery and recorder (SQLite in a temporary directory), fed frames built in
//! memory: no GStreamer, no ONNX Runtime, no network. The detector and
//! embedder are the testkit's fakes, which really see the people drawn in the
//! frames (solid colour rectangles).

use super::*;
use crate::cameras::FrameSource;
use crate::telemetry::StatusBoard;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::time::SystemTime;
use vidar_config::Config;
use vidar_protocol::{CameraId, IdentityId, NodeId, StreamState, StreamStatus};
use vidar_reid::{Gallery, GalleryConfig};
use vidar_testkit::fakes::{draw, ColorBlobDetector, ColorEmbedder, DetectorLog, Figure, Gate};

const W: u32 = 320;
const H: u32 = 240;
/// Capture times step this much per frame, ms (10 fps).
const STEP_MS: u64 = 100;

/// Frames pushed by the test; counts what the loop took; notes its drop.
#[derive(Debug)]
struct Script {
    camera: CameraId,
    rx: Mutex<Receiver<Frame>>,
    sent: Arc<AtomicU64>,
    taken: Arc<AtomicU64>,
    dropped: Arc<AtomicBool>,
}

impl FrameSource for Script {
    fn camera(&self) -> &CameraId {
        &self.camera
    }
    fn try_recv(&self) -> Option<Frame> {
        let f = self.rx.lock().ok()?.try_recv().ok()?;
        self.taken.fetch_add(1, Ordering::SeqCst);
        Some(f)
    }
    fn waiting(&self) -> usize {
        let sent = self.sent.load(Ordering::SeqCst);
        sent.saturating_sub(self.taken.load(Ordering::SeqCst)) as usize
    }
    fn status(&self) -> StreamStatus {
        StreamStatus {
            state: StreamState::Streaming,
            counters: vidar_protocol::StreamCounters {
                frames: self.sent.load(Ordering::SeqCst),
                ..Default::default()
            },
            width: W,
            height: H,
            queue_depth: 0,
            decoder: None,
            last_error: None,
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

/// The test's end of one camera.
struct Cam {
    id: CameraId,
    tx: Sender<Frame>,
    taken: Arc<AtomicU64>,
    dropped: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    /// Added to the sequence number in each frame's tag.
    tag_base: u32,
}

impl Cam {
    fn new(name: &str) -> (Cam, CameraSlot) {
        let id = CameraId::new(name).expect("camera id");
        let (tx, rx) = mpsc::channel();
        let taken = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let source = Script {
            camera: id.clone(),
            rx: Mutex::new(rx),
            sent: Arc::clone(&sent),
            taken: Arc::clone(&taken),
            dropped: Arc::clone(&dropped),
        };
        let tracker = vidar_tracker::TrackerConfig::default()
            .build(&())
            .expect("tracker");
        let slot = CameraSlot::new(Box::new(source), tracker);
        (
            Cam {
                id,
                tx,
                taken,
                dropped,
                sent,
                tag_base: 0,
            },
            slot,
        )
    }

    /// Frames sent so far.
    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Sends the next frame (tagged with its sequence number) showing `figures`,
    /// captured at `t0 + seq * STEP_MS`.
    fn send(&mut self, t0: SystemTime, figures: &[Figure]) {
        let seq = self.sent.load(Ordering::SeqCst);
        let px = draw(W, H, self.tag_base + seq as u32, figures);
        let at = t0 + Duration::from_millis(seq * STEP_MS);
        let f = Frame::from_rgb(self.id.clone(), seq, at, W, H, px).expect("frame");
        self.tx.send(f).expect("the loop holds the source");
        self.sent.fetch_add(1, Ordering::SeqCst);
    }
}

/// A running analysis loop.
struct Loop {
    stop: vidar_runtime::Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
    control: Sender<Control>,
    registry: Arc<CameraRegistry>,
    log: Arc<DetectorLog>,
    db: PathBuf,
    _dir: tempfile::TempDir,
}

fn start(cams: Vec<CameraSlot>, interval: u32, gate: Option<Arc<Gate>>) -> Loop {
    start_with_depth(cams, interval, gate, 2)
}

fn start_with_depth(
    cams: Vec<CameraSlot>,
    interval: u32,
    gate: Option<Arc<Gate>>,
    depth: usize,
) -> Loop {
    start_pool(cams, interval, gate, depth, 2, 4)
}

// Where the loop started next on this thread reports its frames (`Analysis::observer`).
thread_local! {
    static OBSERVER: std::cell::RefCell<Option<mpsc::SyncSender<FrameBoxes>>> =
        const { std::cell::RefCell::new(None) };
}

/// A loop with `workers` detector threads of batch size `max_batch`, taking
/// `depth` batches each.
fn start_pool(
    cams: Vec<CameraSlot>,
    interval: u32,
    gate: Option<Arc<Gate>>,
    depth: usize,
    workers: usize,
    max_batch: usize,
) -> Loop {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("edge.db");
    let node = NodeId::new("edge-test").expect("node id");
    let metrics = Arc::new(NodeMetrics::default());
    let recorder = Recorder::open(&db, &node, Arc::clone(&metrics)).expect("recorder");
    let log = Arc::new(DetectorLog::default());
    let detectors: Vec<Box<dyn vidar_detectors::Detector>> = (0..workers)
        .map(|_| {
            let d = ColorBlobDetector::new(Arc::clone(&log), max_batch);
            let d = match &gate {
                Some(g) => d.with_gate(Arc::clone(g)),
                None => d,
            };
            Box::new(d) as Box<dyn vidar_detectors::Detector>
        })
        .collect();
    let gallery =
        Gallery::with_model(GalleryConfig::default(), ColorEmbedder::TAG).expect("gallery");
    let identifier = Identifier::spawn(
        node,
        Box::new(ColorEmbedder::default()),
        gallery,
        recorder.share(),
        Arc::clone(&metrics),
        false,
        None,
    )
    .expect("re-ID worker");
    let (control, control_rx) = mpsc::channel();
    let registry = Arc::new(CameraRegistry::default());
    let analysis = Analysis {
        cameras: cams,
        detectors: DetectPool::spawn(detectors, depth).expect("detector threads"),
        identifier,
        recorder,
        metrics,
        settings: AnalysisSettings {
            detection_interval: interval,
            // On (not the default), as `rate_tests` needs: it changes
            // nothing where the fake detector keeps up.
            rate: crate::cameras::rate::RateConfig {
                adaptive: true,
                ..crate::cameras::rate::RateConfig::default()
            },
        },
        control: Some(control_rx),
        registry: Arc::clone(&registry),
        tiles: None,
        jobs: Default::default(),
        observer: OBSERVER.with(|o| o.borrow_mut().take()),
    };
    let stop = vidar_runtime::Shutdown::new();
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        analysis.run_with_status(&s, &StatusBoard::default());
    });
    Loop {
        stop,
        thread: Some(thread),
        control,
        registry,
        log,
        db,
        _dir: dir,
    }
}

impl Loop {
    /// Frames analysed so far on `camera`.
    fn analysed(&self, camera: &CameraId) -> u64 {
        self.registry
            .snapshot()
            .iter()
            .find(|(c, _)| c == camera)
            .map_or(0, |(_, m)| m.analysed.load(Ordering::SeqCst))
    }

    /// Stops the loop (every open track is recorded, the recorder flushed).
    fn finish(mut self) -> (Vec<vidar_store::Sighting>, PathBuf, tempfile::TempDir) {
        self.stop.trigger("test done");
        if let Some(t) = self.thread.take() {
            t.join().expect("analysis thread");
        }
        let sightings = all_sightings(&self.db);
        (sightings, self.db.clone(), self._dir)
    }
}

fn all_sightings(db: &Path) -> Vec<vidar_store::Sighting> {
    vidar_store::Reader::open(db)
        .expect("reader")
        .sightings_in_range(
            vidar_store::TimeRange::new(vidar_protocol::UnixMs::EPOCH, vidar_protocol::UnixMs::MAX),
            10_000,
        )
        .expect("sightings")
        .into_iter()
        .map(|s| s.value)
        .collect()
}

/// Waits up to 20 s for `cond`.
fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn person(color: [u8; 3], x: f32, y: f32) -> Figure {
    Figure {
        color,
        bbox: BBox {
            x,
            y,
            w: 40.0,
            h: 100.0,
        },
    }
}

const RED: [u8; 3] = [230, 40, 40];
const GREEN: [u8; 3] = [40, 230, 40];

/// A capture time far enough in the past that every frame is "old".
fn t0() -> SystemTime {
    SystemTime::now() - Duration::from_secs(3600)
}

#[test]
fn the_detector_runs_on_every_nth_frame_and_every_frame_counts_as_analysed() {
    let (mut cam, slot) = Cam::new("door");
    let lp = start(vec![slot], 3, None);
    let t0 = t0();
    for i in 0..9 {
        cam.send(t0, &[person(RED, 20.0 + i as f32, 60.0)]);
        // One at a time, so the loop never finds two waiting.
        until("the frame taken", || cam.taken.load(Ordering::SeqCst) > i);
    }
    until("9 frames analysed", || lp.analysed(&cam.id) == 9);
    assert_eq!(lp.log.tags(), vec![0, 3, 6], "detected frames");
    let _ = lp.finish();
}

/// Two cameras, 2 detector threads taking `depth` batches each, blocked:
/// each camera has `depth` frames at its detector and no more; once
/// unblocked, every frame is analysed in order.
fn frames_at_a_detector_stay_bounded_and_in_order(depth: usize) {
    let gate = Gate::closed();
    let (mut a, slot_a) = Cam::new("a");
    let (mut b, slot_b) = Cam::new("b");
    b.tag_base = 1000;
    let lp = start_with_depth(vec![slot_a, slot_b], 1, Some(Arc::clone(&gate)), depth);
    let t0 = t0();
    for _ in 0..5 {
        a.send(t0, &[person(RED, 30.0, 60.0)]);
        b.send(t0, &[person(GREEN, 30.0, 60.0)]);
    }
    // Both cameras have a frame at the (blocked) detectors, and with depth 2
    // another queued behind it; nothing more is taken.
    until("a frame of each camera at a detector", || {
        lp.log.waiting.load(Ordering::SeqCst) == 2
    });
    until("the queued frames taken", || {
        a.taken.load(Ordering::SeqCst) == depth as u64
            && b.taken.load(Ordering::SeqCst) == depth as u64
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(a.taken.load(Ordering::SeqCst), depth as u64);
    assert_eq!(b.taken.load(Ordering::SeqCst), depth as u64);
    gate.open();
    until("every frame analysed", || {
        lp.analysed(&a.id) == 5 && lp.analysed(&b.id) == 5
    });
    let tags = lp.log.tags();
    assert_eq!(tags.len(), 10, "{tags:?}");
    let _ = lp.finish();
    let of_a: Vec<u32> = tags.iter().copied().filter(|t| *t < 1000).collect();
    let of_b: Vec<u32> = tags.iter().copied().filter(|t| *t >= 1000).collect();
    assert_eq!(of_a, vec![0, 1, 2, 3, 4], "camera a in order");
    assert_eq!(
        of_b,
        vec![1000, 1001, 1002, 1003, 1004],
        "camera b in order"
    );
}

#[test]
fn a_camera_has_at_most_one_frame_at_a_detector_of_depth_1_and_its_frames_stay_in_order() {
    frames_at_a_detector_stay_bounded_and_in_order(1);
}

#[test]
fn a_camera_has_at_most_two_frames_at_a_detector_of_depth_2_and_its_frames_stay_in_order() {
    frames_at_a_detector_stay_bounded_and_in_order(2);
}

/// One detector thread taking one frame at a time, with a batch queued behind
/// the running one, and three cameras whose frames are always waiting: the
/// cameras take turns. (The queued batch once went to the running batch's
/// camera every time, so one camera had the detector and the others none.)
#[test]
fn cameras_take_turns_at_a_single_detector_that_queues_the_next_batch() {
    let mut cams = Vec::new();
    let mut slots = Vec::new();
    for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
        let (mut cam, slot) = Cam::new(name);
        cam.tag_base = 1000 * i as u32;
        cams.push(cam);
        slots.push(slot);
    }
    // Every frame waits before the loop starts, so no camera is ever short
    // of a due frame.
    let t0 = t0();
    for _ in 0..12 {
        for (i, cam) in cams.iter_mut().enumerate() {
            cam.send(t0, &[person(RED, 30.0 + 60.0 * i as f32, 60.0)]);
        }
    }
    let lp = start_pool(slots, 1, None, 2, 1, 1);
    until("every frame analysed", || {
        cams.iter().all(|c| lp.analysed(&c.id) == 12)
    });
    let tags = lp.log.tags();
    let _ = lp.finish();
    assert_eq!(tags.len(), 36, "{tags:?}");
    // Every window of 6 detections holds 2 of each camera (turns, in order).
    for w in tags.windows(6) {
        for i in 0..3u32 {
            let of = w.iter().filter(|t| **t / 1000 == i).count();
            assert_eq!(of, 2, "camera {i} in {w:?}; all: {tags:?}");
        }
    }
    for i in 0..3u32 {
        let of: Vec<u32> = tags.iter().copied().filter(|t| *t / 1000 == i).collect();
        let want: Vec<u32> = (0..12).map(|s| 1000 * i + s).collect();
        assert_eq!(of, want, "camera {i} in order");
    }
}

#[test]
fn a_person_keeps_one_identity_across_cameras_and_two_people_on_screen_get_two() {
    let (mut c1, s1) = Cam::new("hall");
    let (mut c2, s2) = Cam::new("yard");
    let lp = start(vec![s1, s2], 1, None);
    let t0 = t0();
    // Red walks across the hall for 3 s, then the hall is empty long enough
    // for the track to end.
    for i in 0..30 {
        c1.send(t0, &[person(RED, 20.0 + 4.0 * i as f32, 60.0)]);
        until("hall frame analysed", || lp.analysed(&c1.id) == c1.sent());
    }
    for _ in 0..40 {
        c1.send(t0, &[]);
        until("hall frame analysed", || lp.analysed(&c1.id) == c1.sent());
    }
    // Then red and green are in the yard together.
    for _ in 0..70 {
        c2.send(t0, &[]);
    }
    until("yard idle frames analysed", || lp.analysed(&c2.id) == 70);
    for i in 0..30 {
        c2.send(
            t0,
            &[
                person(RED, 20.0 + 3.0 * i as f32, 40.0),
                person(GREEN, 200.0, 60.0 + i as f32),
            ],
        );
        until("yard frame analysed", || lp.analysed(&c2.id) == c2.sent());
    }
    let (sightings, _, _dir) = lp.finish();
    let of = |cam: &CameraId| -> Vec<IdentityId> {
        let mut ids: Vec<IdentityId> = sightings
            .iter()
            .filter(|s| s.camera == *cam)
            .map(|s| s.identity)
            .collect();
        ids.dedup();
        ids
    };
    let hall = of(&c1.id);
    assert_eq!(hall.len(), 1, "one identity in the hall: {sightings:?}");
    let yard = of(&c2.id);
    let mut distinct = yard.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 2, "two people in the yard: {sightings:?}");
    assert!(
        yard.contains(&hall[0]),
        "red keeps the hall's identity in the yard: {sightings:?}"
    );
}

#[test]
fn a_removed_camera_records_its_open_tracks_and_stops_its_source() {
    let (mut c1, s1) = Cam::new("gate");
    let (mut c2, s2) = Cam::new("shop");
    let lp = start(vec![s1, s2], 1, None);
    let t0 = t0();
    for i in 0..25 {
        c1.send(t0, &[person(RED, 20.0 + 2.0 * i as f32, 60.0)]);
        c2.send(t0, &[]);
        until("frames analysed", || {
            lp.analysed(&c1.id) == c1.sent() && lp.analysed(&c2.id) == c2.sent()
        });
    }
    lp.control
        .send(Control::Remove(c1.id.clone()))
        .expect("control");
    until("the camera gone from the registry", || {
        lp.registry.snapshot().iter().all(|(c, _)| *c != c1.id)
    });
    until("its source dropped", || c1.dropped.load(Ordering::SeqCst));
    // The loop goes on with the other camera.
    c2.send(t0, &[]);
    until("the other camera still analysed", || {
        lp.analysed(&c2.id) == c2.sent()
    });
    let (sightings, _, _dir) = lp.finish();
    let gate: Vec<_> = sightings.iter().filter(|s| s.camera == c1.id).collect();
    assert_eq!(gate.len(), 1, "the open track was recorded: {sightings:?}");
    assert!(gate[0].path.len() >= 20, "{:?}", gate[0]);
}

#[test]
fn a_long_track_is_split_into_contiguous_sightings() {
    let (mut c, s) = Cam::new("aisle");
    let lp = start(vec![s], 1, None);
    let t0 = t0();
    // 13 s of capture time: one split at 10 s, the rest at the end.
    for i in 0..130 {
        c.send(t0, &[person(RED, 20.0 + 1.5 * i as f32, 60.0)]);
        until("frame analysed", || lp.analysed(&c.id) == c.sent());
    }
    let (mut sightings, _, _dir) = lp.finish();
    sightings.sort_by_key(|s| s.first_ms);
    assert_eq!(sightings.len(), 2, "{sightings:?}");
    let (a, b) = (&sightings[0], &sightings[1]);
    assert_eq!(a.track, b.track);
    assert_eq!(a.identity, b.identity);
    assert!(a.last_ms - a.first_ms >= MAX_SIGHTING.as_millis() as i64);
    assert_eq!(a.last_ms, b.first_ms, "contiguous");
    assert!(b.last_ms - a.first_ms >= 12_000, "{a:?} {b:?}");
}

/// The observer gets every analysed frame, in order: a detected one with
/// the boxes of the confirmed tracks it updated, one the interval skipped
/// with their predicted boxes; what the sighting's path records.
#[test]
fn an_observer_sees_each_frames_confirmed_tracks() {
    let (tx, rx) = mpsc::sync_channel(64);
    OBSERVER.with(|o| *o.borrow_mut() = Some(tx));
    let (mut cam, slot) = Cam::new("hall");
    let lp = start(vec![slot], 2, None);
    let t0 = t0();
    for i in 0..12 {
        cam.send(t0, &[person(RED, 20.0 + 4.0 * i as f32, 60.0)]);
        until("frame analysed", || lp.analysed(&cam.id) == cam.sent());
    }
    let (sightings, _, _dir) = lp.finish();
    let seen: Vec<FrameBoxes> = rx.try_iter().collect();
    let seqs: Vec<u64> = seen.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, (0..12).collect::<Vec<u64>>(), "every frame, in order");
    assert!(seen.iter().all(|f| f.camera == cam.id));
    // Once confirmed, one box a frame, on the person drawn in it (predicted
    // on the odd frames).
    let boxed: Vec<&FrameBoxes> = seen.iter().filter(|f| !f.boxes.is_empty()).collect();
    assert!(boxed.len() >= 3, "{seen:?}");
    for f in &boxed {
        assert_eq!(f.boxes.len(), 1, "{f:?}");
        let drawn = person(RED, 20.0 + 4.0 * f.seq as f32, 60.0).bbox;
        assert!(f.boxes[0].iou(&drawn) > 0.7, "{f:?} against {drawn:?}");
    }
    // The same boxes the recorded path holds.
    let path: usize = sightings.iter().map(|s| s.path.len()).sum();
    assert_eq!(path, boxed.len(), "{sightings:?}");
}

#[path = "motion_tests.rs"]
mod motion;

#[path = "rate_tests.rs"]
mod rate;
