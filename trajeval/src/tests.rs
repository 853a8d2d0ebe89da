//! Hand-made cases whose scores are known.

use super::*;

/// Two cameras, 10 frames each 100 ms apart; persons 1 and 2 walk side by
/// side on camera "a" (t = 1000..1900) and later on camera "b" (5000..5900).
fn gt() -> Vec<GtFrame> {
    let mut v = Vec::new();
    for (cam, t0) in [("a", UnixMs(1000)), ("b", UnixMs(5000))] {
        for k in 0..10u64 {
            v.push(GtFrame {
                camera: cam.into(),
                frame: k,
                unix_ms: t0 + 100 * k as i64,
                boxes: [1u64, 2]
                    .iter()
                    .map(|&p| GtBox {
                        person_id: p,
                        bbox: person_box(p, k),
                        visibility: 1.0,
                    })
                    .collect(),
            });
        }
    }
    v
}

fn person_box(p: u64, k: u64) -> BBox {
    BBox {
        x: 10.0 * k as f32 + 200.0 * p as f32,
        y: 100.0,
        w: 40.0,
        h: 100.0,
    }
}

/// A sighting that follows person `p` exactly on the frames `k` with `keep(k)`.
fn follow(cam: &str, track: u64, identity: Option<u64>, p: u64, keep: fn(u64) -> bool) -> Sighting {
    let t0 = UnixMs(if cam == "a" { 1000 } else { 5000 });
    Sighting {
        camera: cam.into(),
        track_id: track,
        identity,
        path: (0..10u64)
            .filter(|&k| keep(k))
            .map(|k| (t0 + 100 * k as i64 + 20, person_box(p, k)))
            .collect(),
    }
}

fn all(_: u64) -> bool {
    true
}

fn run(s: &[Sighting]) -> Report {
    evaluate(&gt(), s, None, &EvalConfig::default()).expect("evaluate")
}

#[test]
fn perfect_tracking_scores_one_everywhere() {
    let r = run(&[
        follow("a", 1, Some(100), 1, all),
        follow("a", 2, Some(200), 2, all),
        follow("b", 1, Some(100), 1, all),
        follow("b", 2, Some(200), 2, all),
    ]);
    assert_eq!(r.detection.recall, Some(1.0));
    assert_eq!(r.detection.precision, Some(1.0));
    assert_eq!(r.detection.scored_frames, 20);
    for c in &r.cameras {
        assert_eq!(c.mota, Some(1.0), "{c:?}");
        assert_eq!(c.idf1, Some(1.0), "{c:?}");
        assert_eq!(c.time_tolerance_ms, 50);
    }
    assert_eq!(r.cross_camera.pairs, 4);
    assert_eq!(r.cross_camera.same_person, 2);
    assert_eq!(r.cross_camera.f1, Some(1.0));
    assert_eq!(r.same_camera.same_person, 0);
    assert_eq!(r.same_camera.precision, None, "no pair shares an identity");
    assert_eq!(r.mean_completeness, Some(1.0));
    assert_eq!(r.mean_purity, Some(1.0));
    assert_eq!(r.concurrent_conflicts, 0);
    assert!(serde_json::to_string(&r).is_ok_and(|j| j.contains("cross_camera")));
}

#[test]
fn merged_people_lower_precision_and_conflict() {
    let r = run(&[
        follow("a", 1, Some(100), 1, all),
        follow("a", 2, Some(100), 2, all),
        follow("b", 1, Some(100), 1, all),
        follow("b", 2, Some(100), 2, all),
    ]);
    assert_eq!(r.cross_camera.same_identity, 4);
    assert_eq!(r.cross_camera.precision, Some(0.5));
    assert_eq!(r.cross_camera.recall, Some(1.0));
    assert_eq!(r.same_camera.precision, Some(0.0));
    assert_eq!(r.identities.len(), 1);
    assert_eq!(r.identities[0].purity, 0.5);
    assert_eq!(r.mean_completeness, Some(1.0));
    // Both people carry identity 100 at once, on each camera.
    assert_eq!(r.concurrent_conflicts, 1);
    assert_eq!(r.conflicts.len(), 2);
    assert_eq!((r.conflicts[0].person_a, r.conflicts[0].person_b), (1, 2));
    assert_eq!(r.conflicts[0].overlap_ms, 900);
}

#[test]
fn split_identities_lower_recall_and_completeness() {
    let r = run(&[
        follow("a", 1, Some(100), 1, all),
        follow("a", 2, Some(200), 2, all),
        follow("b", 1, Some(300), 1, all),
        follow("b", 2, None, 2, all),
    ]);
    assert_eq!(r.cross_camera.recall, Some(0.0));
    assert_eq!(r.cross_camera.precision, None);
    assert_eq!(r.cross_camera.f1, None);
    assert_eq!(r.mean_completeness, Some(0.5));
    assert_eq!(r.mean_purity, Some(1.0));
    assert_eq!(r.sightings_without_identity, 1);
    assert_eq!(r.concurrent_conflicts, 0);
    // Within a camera the tracks themselves are perfect.
    assert!(r.cameras.iter().all(|c| c.idf1 == Some(1.0)));
    // Each person's trail shows where their trajectory broke, in time order.
    let p1 = r
        .people
        .iter()
        .find(|p| p.person_id == 1)
        .expect("person 1");
    let trail: Vec<(&str, u64, Option<u64>)> = p1
        .trail
        .iter()
        .map(|t| (t.camera.as_str(), t.track_id, t.identity))
        .collect();
    assert_eq!(trail, [("a", 1, Some(100)), ("b", 1, Some(300))]);
    assert_eq!(p1.trail[0].first_ms, Some(UnixMs(1020)));
    assert_eq!(p1.trail[1].last_ms, Some(UnixMs(5920)));
    let p2 = r
        .people
        .iter()
        .find(|p| p.person_id == 2)
        .expect("person 2");
    assert_eq!(p2.trail[1].identity, None);
}

#[test]
fn subsampled_recording_scores_only_recorded_frames() {
    let r = run(&[
        follow("a", 1, Some(1), 1, |k| k % 3 == 0),
        follow("a", 2, Some(2), 2, |k| k % 3 == 0),
    ]);
    let a = &r.cameras[0];
    assert_eq!(a.detection.scored_frames, 4);
    assert_eq!(a.detection.recall, Some(1.0));
    assert_eq!(r.cameras[1].detection.scored_frames, 0);
    assert_eq!(r.detection.recall, Some(1.0));
    // Declaring every frame of "b" processed turns its people into misses.
    let processed: Vec<(String, UnixMs)> = (0..10)
        .map(|k| ("b".to_string(), UnixMs(5000 + 100 * k)))
        .collect();
    let s = [
        follow("a", 1, Some(1), 1, |k| k % 3 == 0),
        follow("a", 2, Some(2), 2, |k| k % 3 == 0),
    ];
    let r = evaluate(&gt(), &s, Some(&processed), &EvalConfig::default()).expect("evaluate");
    assert_eq!(r.cameras[1].detection.false_negatives, 20);
    assert_eq!(r.cameras[1].mota, Some(0.0));
    assert_eq!(r.detection.recall, Some(8.0 / 28.0));
}

#[test]
fn misses_false_positives_and_switches_are_counted() {
    let mut wrong = follow("a", 9, Some(9), 1, all);
    for (_, b) in &mut wrong.path {
        b.y += 300.0;
    }
    let r = run(&[
        follow("a", 1, Some(1), 1, |k| k < 5),
        follow("a", 3, Some(1), 1, |k| k >= 5),
        wrong,
    ]);
    let a = &r.cameras[0];
    assert_eq!(a.detection.true_positives, 10);
    assert_eq!(a.detection.false_negatives, 10, "person 2 never detected");
    assert_eq!(a.detection.false_positives, 10);
    assert_eq!(a.id_switches, 1);
    assert!(
        a.mota
            .is_some_and(|m| (m - (1.0 - 21.0 / 20.0)).abs() < 1e-9),
        "{a:?}"
    );
    assert_eq!(r.unmatched_sightings, 1);
    // Tracks 1 and 3 of one person under one identity: a true same-camera pair.
    assert_eq!(r.same_camera.true_pairs, 1);
}

#[test]
fn boxes_out_of_time_tolerance_are_not_scored() {
    let no_shift = EvalConfig {
        time_offset_ms: Some(0),
        ..EvalConfig::default()
    };
    let mut s = follow("a", 1, Some(1), 1, all);
    for (t, _) in &mut s.path {
        *t += 40; // 60 ms after the frame: past half the 100 ms period
    }
    let r = evaluate(&gt(), &[s], None, &no_shift).expect("evaluate");
    // Each box is now 40 ms before the next frame (within 50 ms) and is put
    // there; the last one is 60 ms after frame 9 and is not scored.
    assert_eq!(r.detection.scored_frames, 9);
    assert_eq!(r.detection.off_frame_boxes, 1);
    let cfg = EvalConfig {
        time_tolerance_ms: Some(10),
        ..no_shift
    };
    let r = evaluate(&gt(), &[follow("a", 1, None, 1, all)], None, &cfg).expect("evaluate");
    assert_eq!(r.detection.scored_frames, 0);
    assert_eq!(r.detection.off_frame_boxes, 10);
}

#[test]
fn receiver_latency_is_estimated_and_removed() {
    // Boxes stamped 320 ms after the frames were pushed (encode + network).
    let late = |mut s: Sighting| {
        for (t, _) in &mut s.path {
            *t += 300;
        }
        s
    };
    let s = [
        late(follow("a", 1, Some(1), 1, all)),
        late(follow("a", 2, Some(2), 2, all)),
    ];
    let r = run(&s);
    let a = &r.cameras[0];
    // Any shift that puts every box within 50 ms of its own frame is right.
    assert!(
        (270..=370).contains(&a.time_offset_ms),
        "{}",
        a.time_offset_ms
    );
    assert_eq!(a.detection.true_positives, 20);
    assert_eq!(a.mota, Some(1.0));
    assert_eq!(a.motp, Some(0.0));
    // Without the shift, boxes land on later frames and match worse.
    let cfg = EvalConfig {
        time_offset_ms: Some(0),
        ..EvalConfig::default()
    };
    let r = evaluate(&gt(), &s, None, &cfg).expect("evaluate");
    assert!(r.cameras[0].detection.true_positives < 20);
}

#[test]
fn low_visibility_boxes_are_dont_care() {
    let mut g = gt();
    for f in &mut g {
        f.boxes[1].visibility = 0.1;
    }
    let cfg = EvalConfig {
        min_visibility: 0.5,
        ..EvalConfig::default()
    };
    let s = [
        follow("a", 1, None, 1, all),
        follow("a", 2, None, 2, |k| k < 3),
    ];
    let r = evaluate(&g, &s, None, &cfg).expect("evaluate");
    let a = &r.cameras[0];
    assert_eq!((a.detection.gt_boxes, a.detection.true_positives), (10, 10));
    assert_eq!(a.detection.false_positives, 0);
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let e = evaluate(
        &gt(),
        &[follow("z", 1, None, 1, all)],
        None,
        &EvalConfig::default(),
    );
    assert!(matches!(e, Err(EvalError::UnknownCamera { .. })));
    let cfg = EvalConfig {
        iou_threshold: 0.0,
        ..EvalConfig::default()
    };
    assert!(evaluate(&gt(), &[], None, &cfg).is_err());
}

#[test]
fn parses_the_camera_files() {
    let frames = "frame,unix_ms\n0,1000\n1,1100\n2,1200\n";
    let gt_csv = "frame,unix_ms,person_id,x,y,w,h,visibility\n0,1000,7,1,2,30,60,1.000\n2,1200,7,5,2,30,60,0.500\r\n";
    let g = parse_ground_truth("a", frames, gt_csv).expect("parse");
    assert_eq!(g.len(), 3);
    assert!(g[1].boxes.is_empty());
    assert_eq!(g[2].boxes[0].visibility, 0.5);
    assert_eq!(g[2].boxes[0].bbox.x, 5.0);
    let e = parse_ground_truth("a", frames, "frame,person_id\n").expect_err("columns");
    assert!(e.to_string().contains("\"x\""), "{e}");
    let e = parse_ground_truth(
        "a",
        frames,
        "frame,person_id,x,y,w,h,visibility\n9,7,1,2,3,4,1\n",
    )
    .expect_err("frame");
    assert!(
        e.to_string().contains("line 2") && e.to_string().contains("frame 9"),
        "{e}"
    );
    let e = parse_ground_truth("a", "frame,unix_ms\nx,1\n", "").expect_err("number");
    assert!(e.to_string().contains("frames.csv line 2"), "{e}");
}
