//! Motion-gated detection (`[motion]`) through the real loop: the still
//! scene gate, and frames the tracker predicts over where only tracked
//! people move (`track_skip`).

use super::*;

/// A gated camera (`track_skip`) in a running loop, sent `frames` frames of
/// a person at x `x_at(frame)`, each taken before the next is sent; the
/// camera, its metrics, the loop and the capture time of frame 0.
fn walk(
    track_skip: u32,
    frames: u64,
    x_at: impl Fn(u64) -> f32,
) -> (Cam, Arc<crate::telemetry::CameraMetrics>, Loop, SystemTime) {
    let (mut cam, mut slot) = Cam::new("hall");
    slot.gate = crate::cameras::motion::MotionConfig {
        enabled: true,
        track_skip,
        ..Default::default()
    }
    .gate("hall");
    let metrics = Arc::clone(&slot.metrics);
    let lp = start(vec![slot], 1, None);
    let t0 = t0();
    for i in 0..frames {
        cam.send(t0, &[person(RED, x_at(i), 60.0)]);
        until("the frame taken", || cam.taken.load(Ordering::SeqCst) > i);
    }
    (cam, metrics, lp, t0)
}

/// With `[motion]` on, the detector sees the first frame, every frame where
/// the person walks, and a still scene once a second; every frame counts as
/// analysed, the skipped ones as calls saved, and the person who stood,
/// walked and stood again is one track, not three.
#[test]
fn motion_gating_detects_where_something_moves_and_keeps_still_people_tracked() {
    // 0-14 standing at x 40, 15-19 walking 8 px a frame, 20-39 standing.
    let x_at = |i: u64| 40.0 + 8.0 * (i.clamp(14, 19) - 14) as f32;
    let (cam, metrics, lp, _) = walk(0, 40, x_at);
    until("40 frames analysed", || lp.analysed(&cam.id) == 40);
    let tags = lp.log.tags();
    // Frame 0 (start), 10 (a second later), the walk 15-19 (and the
    // background catching up behind it), then a second after the last.
    for want in [0, 10, 15, 16, 17, 18, 19] {
        assert!(tags.contains(&want), "frame {want} not detected: {tags:?}");
    }
    assert!(!tags.iter().any(|t| (1..10).contains(t)), "{tags:?}");
    let saved = metrics.motion_skipped.load(Ordering::SeqCst);
    assert_eq!(saved + tags.len() as u64, 40, "{tags:?}");
    assert!(saved >= 20, "only {saved} calls saved: {tags:?}");
    let (sightings, _, _dir) = lp.finish();
    let tracks: std::collections::BTreeSet<_> = sightings.iter().map(|s| s.track).collect();
    assert_eq!(tracks.len(), 1, "{sightings:?}");
}

/// With `track_skip = 1`, a person walking along the tracker's prediction
/// is detected every other frame; the frames between count as calls saved
/// (tracked), and the sighting's path holds a box for every frame, the
/// predicted ones on the person drawn there.
#[test]
fn a_tracked_walk_is_detected_every_other_frame_and_its_path_has_every_frame() {
    // Walking 6 px a frame all along.
    let x_at = |i: u64| 20.0 + 6.0 * i as f32;
    let (cam, metrics, lp, t0) = walk(1, 30, x_at);
    until("30 frames analysed", || lp.analysed(&cam.id) == 30);
    let tags = lp.log.tags();
    let tracked = metrics.tracked_skipped.load(Ordering::SeqCst);
    assert_eq!(tracked + tags.len() as u64, 30, "{tags:?}");
    assert!(
        tracked >= 10,
        "only {tracked} frames tracked over: {tags:?}"
    );
    // Never two frames in a row without the detector.
    for w in tags.windows(2) {
        assert!(w[1] - w[0] <= 2, "{tags:?}");
    }
    let (sightings, _, _dir) = lp.finish();
    assert_eq!(sightings.len(), 1, "{sightings:?}");
    let path = &sightings[0].path;
    // From its confirmation on, every frame.
    assert!(path.len() >= 27, "{} points: {path:?}", path.len());
    let t0_ms = t0
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    for p in path {
        let i = ((p.t_ms.0 - t0_ms) / STEP_MS as i64) as u64;
        let drawn = person(RED, x_at(i), 60.0).bbox;
        let b = p.bbox;
        assert!(b.iou(&drawn) > 0.6, "frame {i}: {b:?} against {drawn:?}");
    }
}
