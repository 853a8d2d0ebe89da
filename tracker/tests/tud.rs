//! Integration test: the tracker on real MOT ground truth (TUD sequences,
//! from the motmetrics 1.4.0 wheel, see `tests/data/README.md`) degraded by
//! the seeded synthetic detector, scored with the crate's CLEAR-MOT/IDF1
//! (which `tracker/eval/compare.py` checks against motmetrics).
//!
//! Floors are the measured scores minus a small margin, so a regression in
//! filtering, association or lifecycle fails the build.

use std::fs::File;
use std::path::PathBuf;

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
    let mut tracker = config.build().expect("default config is valid");
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
    // Measured: MOTA 0.9144, IDF1 0.8890, 2 switches.
    let s = track_and_score("TUD-Stadtmitte", Difficulty::Medium, 1);
    assert!(
        s.clear.mota >= 0.89,
        "MOTA {:.4} below floor 0.89",
        s.clear.mota
    );
    assert!(s.id.idf1 >= 0.86, "IDF1 {:.4} below floor 0.86", s.id.idf1);
    assert!(
        s.clear.num_switches <= 5,
        "{} identity switches",
        s.clear.num_switches
    );
}

#[test]
fn tud_campus_hard_meets_floor() {
    // Measured: MOTA 0.6407, IDF1 0.8091, 3 switches.
    let s = track_and_score("TUD-Campus", Difficulty::Hard, 1);
    assert!(
        s.clear.mota >= 0.61,
        "MOTA {:.4} below floor 0.61",
        s.clear.mota
    );
    assert!(s.id.idf1 >= 0.78, "IDF1 {:.4} below floor 0.78", s.id.idf1);
    assert!(
        s.clear.num_switches <= 6,
        "{} identity switches",
        s.clear.num_switches
    );
}

#[test]
fn perfect_detections_give_near_perfect_tracking() {
    // The undegraded ground truth as detections, matched tracks only
    // reported. Measured: MOTA 0.9805, IDF1 0.9622, 4 switches, all on two
    // people annotated with almost the same box (frames 28-33).
    let gt = ground_truth("TUD-Campus");
    let config = TrackerConfig {
        report_lost_frames: 0,
        ..TrackerConfig::default()
    };
    let mut tracker = config.build().expect("valid");
    let mut results = Vec::new();
    for (frame, recs) in by_frame(&gt) {
        let dets: Vec<Detection> = recs.iter().map(|r| Detection::new(r.bbox, 0.9)).collect();
        for t in tracker.update(frame, &dets).expect("in order").tracks {
            results.push(MotRecord::new(frame, t.id.0 as i64, t.bbox, t.score));
        }
    }
    let s = evaluate(&gt, &results, 0.5);
    assert!(
        s.clear.num_switches <= 4,
        "{} identity switches",
        s.clear.num_switches
    );
    assert!(s.clear.mota >= 0.97, "MOTA {:.4}", s.clear.mota);
    assert!(s.id.idf1 >= 0.95, "IDF1 {:.4}", s.id.idf1);
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
            .and_then(|c| c.validate().map_err(|e| e.to_string()));
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
