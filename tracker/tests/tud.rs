//! Integration test: the tracker on real MOT ground truth (TUD sequences,
//! from the motmetrics 1.4.0 wheel, see `tests/data/README.md`) degraded by
//! the seeded synthetic detector, scored with the crate's CLEAR-MOT/IDF1
//! (which `tracker/eval/compare.py` checks against motmetrics).
//!
//! Floors are the measured scores minus a small margin, so a regression in
//! filtering, association or lifecycle fails the build.

use std::fs::File;
use std::path::PathBuf;
use vidar_config::Config;

use vidar_tracker::degrade::{degrade, Difficulty};
use vidar_tracker::eval::{evaluate, Scores};
use vidar_tracker::mot::{by_frame, read_mot, MotRecord};
use vidar_tracker::{Detection, FrameSize, TrackerConfig};

fn ground_truth(sequence: &str) -> Vec<MotRecord> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "data",
        sequence,
        "gt.txt",
    ]
    .iter()
    .collect();
    let file = File::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    read_mot(file).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn track_and_score(sequence: &str, level: Difficulty, seed: u64) -> Scores {
    let gt = ground_truth(sequence);
    let detections = degrade(&gt, &level.config(), seed);
    let config = TrackerConfig {
        frame_size: Some(FrameSize {
            width: 640,
            height: 480,
        }),
        ..TrackerConfig::default()
    };
    let mut tracker = config.build(&()).expect("default config is valid");
    let frames = by_frame(&detections);
    let last = gt
        .iter()
        .map(|r| r.frame)
        .max()
        .expect("non-empty ground truth");
    let mut results = Vec::new();
    let mut next = frames.iter().peekable();
    for frame in 1..=last {
        let dets: Vec<Detection> = match next.peek() {
            Some((f, recs)) if *f == frame => {
                next.next();
                recs.iter()
                    .map(|r| Detection::new(r.bbox, r.conf))
                    .collect()
            }
            _ => Vec::new(),
        };
        let out = tracker.update(frame, &dets).expect("frames in order");
        results.extend(
            out.tracks
                .iter()
                .map(|t| MotRecord::new(frame, t.id.0 as i64, t.bbox, t.score)),
        );
    }
    let scores = evaluate(&gt, &results, 0.5);
    eprintln!(
        "{sequence} {}: MOTA {:.4} IDF1 {:.4} IDsw {} FP {} FN {}",
        level.name(),
        scores.clear.mota,
        scores.id.idf1,
        scores.clear.num_switches,
        scores.clear.num_false_positives,
        scores.clear.num_misses
    );
    scores
}

#[test]
fn tud_stadtmitte_medium_meets_floor() {
    // Measured: MOTA 0.9221, IDF1 0.9546, 1 switch.
    let s = track_and_score("TUD-Stadtmitte", Difficulty::Medium, 1);
    assert!(
        s.clear.mota >= 0.90,
        "MOTA {:.4} below floor 0.90",
        s.clear.mota
    );
    assert!(s.id.idf1 >= 0.93, "IDF1 {:.4} below floor 0.93", s.id.idf1);
    assert!(
        s.clear.num_switches <= 3,
        "{} identity switches",
        s.clear.num_switches
    );
}

#[test]
fn tud_campus_hard_meets_floor() {
    // Measured: MOTA 0.7827, IDF1 0.8791, 4 switches.
    let s = track_and_score("TUD-Campus", Difficulty::Hard, 1);
    assert!(
        s.clear.mota >= 0.76,
        "MOTA {:.4} below floor 0.76",
        s.clear.mota
    );
    assert!(s.id.idf1 >= 0.85, "IDF1 {:.4} below floor 0.85", s.id.idf1);
    assert!(
        s.clear.num_switches <= 6,
        "{} identity switches",
        s.clear.num_switches
    );
}

#[test]
fn tud_campus_harsh_meets_floor() {
    // Measured: MOTA 0.7382, IDF1 0.7864, 5 switches, 39 false positives.
    let s = track_and_score("TUD-Campus", Difficulty::Harsh, 1);
    assert!(
        s.clear.mota >= 0.71,
        "MOTA {:.4} below floor 0.71",
        s.clear.mota
    );
    assert!(s.id.idf1 >= 0.76, "IDF1 {:.4} below floor 0.76", s.id.idf1);
    assert!(
        s.clear.num_switches <= 7,
        "{} identity switches",
        s.clear.num_switches
    );
    assert!(
        s.clear.num_false_positives <= 50,
        "{} false positives",
        s.clear.num_false_positives
    );
}

/// Per level: MOTA floor, IDF1 floor, most false positives, most switches,
/// pooled over both sequences and seeds 1-3. Measured (MOTA, IDF1, FP,
/// IDsw): easy 0.966 0.980 101 1, medium 0.916 0.944 130 6, hard 0.789
/// 0.779 208 29, harsh 0.850 0.884 401 18. The best-tuned peer in
/// tracker/eval/results.md (seeds 1-5) stays below every floor.
const POOLED_FLOORS: [(Difficulty, f64, f64, usize, usize); 4] = [
    (Difficulty::Easy, 0.955, 0.97, 115, 3),
    (Difficulty::Medium, 0.90, 0.93, 150, 9),
    (Difficulty::Hard, 0.775, 0.765, 235, 35),
    (Difficulty::Harsh, 0.835, 0.87, 440, 23),
];

#[test]
fn one_default_config_meets_every_level_floor() {
    let mut failures = Vec::new();
    for (level, mota_floor, idf1_floor, max_fp, max_sw) in POOLED_FLOORS {
        let (mut objects, mut errors, mut fp, mut sw) = (0, 0, 0, 0);
        let (mut idtp, mut predictions) = (0, 0);
        for sequence in ["TUD-Campus", "TUD-Stadtmitte"] {
            for seed in 1..=3 {
                let s = track_and_score(sequence, level, seed);
                objects += s.clear.num_objects;
                errors += s.clear.num_misses + s.clear.num_switches + s.clear.num_false_positives;
                fp += s.clear.num_false_positives;
                sw += s.clear.num_switches;
                idtp += s.id.idtp;
                predictions += s.clear.num_predictions;
            }
        }
        let mota = 1.0 - errors as f64 / objects as f64;
        let idf1 = 2.0 * idtp as f64 / (objects + predictions) as f64;
        eprintln!(
            "pooled {}: MOTA {mota:.4} IDF1 {idf1:.4} FP {fp} IDsw {sw}",
            level.name()
        );
        if mota < mota_floor || idf1 < idf1_floor || fp > max_fp || sw > max_sw {
            failures.push(format!(
                "{}: MOTA {mota:.4} (floor {mota_floor}), IDF1 {idf1:.4} (floor {idf1_floor}), FP {fp} (max {max_fp}), IDsw {sw} (max {max_sw})",
                level.name()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn perfect_detections_give_near_perfect_tracking() {
    // The undegraded ground truth as detections, matched tracks only
    // reported. Measured: TUD-Stadtmitte MOTA 0.9974, IDF1 0.9987, no
    // switch; TUD-Campus MOTA 0.9777, IDF1 0.8731, 3 switches, all on two
    // people annotated with almost the same box (frames 28-33). Which of
    // them keeps which id there is a coin flip for a tracker without
    // appearance: the IDF1 of that sequence went from 0.962 (SORT's noise
    // constants) to 0.873 (ours) to 0.990 (position noise 1/40 with
    // measurement noise 1/20) without any other change.
    for (sequence, max_switches, mota_floor, idf1_floor) in [
        ("TUD-Stadtmitte", 0, 0.99, 0.99),
        ("TUD-Campus", 4, 0.97, 0.85),
    ] {
        let gt = ground_truth(sequence);
        let config = TrackerConfig {
            report_lost_frames: 0,
            ..TrackerConfig::default()
        };
        let mut tracker = config.build(&()).expect("valid");
        let mut results = Vec::new();
        for (frame, recs) in by_frame(&gt) {
            let dets: Vec<Detection> = recs.iter().map(|r| Detection::new(r.bbox, 0.9)).collect();
            for t in tracker.update(frame, &dets).expect("in order").tracks {
                results.push(MotRecord::new(frame, t.id.0 as i64, t.bbox, t.score));
            }
        }
        let s = evaluate(&gt, &results, 0.5);
        assert!(
            s.clear.num_switches <= max_switches,
            "{sequence}: {} identity switches",
            s.clear.num_switches
        );
        assert!(
            s.clear.mota >= mota_floor,
            "{sequence}: MOTA {:.4}",
            s.clear.mota
        );
        assert!(s.id.idf1 >= idf1_floor, "{sequence}: IDF1 {:.4}", s.id.idf1);
    }
}

#[test]
fn config_cases_parse_and_validate_as_named() {
    let dir: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "config"]
        .iter()
        .collect();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/config exists") {
        let path = entry.expect("readable entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let text = std::fs::read_to_string(&path).expect("readable file");
        let parsed = toml::from_str::<TrackerConfig>(&text)
            .map_err(|e| e.to_string())
            .and_then(|c| c.check().map_err(|e| e.to_string()));
        if name.starts_with("valid-") {
            assert!(parsed.is_ok(), "{name}: {parsed:?}");
        } else if name.starts_with("invalid-") {
            assert!(parsed.is_err(), "{name} should be rejected");
        } else {
            continue;
        }
        seen += 1;
    }
    assert!(
        seen >= 5,
        "only {seen} config cases found in {}",
        dir.display()
    );
}
