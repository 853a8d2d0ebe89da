//! End-to-end test of the `vidar-track-eval` binary: degrade, track, score.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vidar-track-eval"))
}

fn gt() -> PathBuf {
    [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "data",
        "TUD-Campus",
        "gt.txt",
    ]
    .iter()
    .collect()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("binary runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn field(json: &str, key: &str) -> f64 {
    let start = json
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("{key} missing in {json}"))
        + key.len()
        + 3;
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|e| panic!("{key} in {json}: {e}"))
}

fn path_arg(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn degrade_track_score_round_trip() {
    let dir = tempfile::tempdir().expect("temp dir");
    let det = dir.path().join("det.txt");
    let res = dir.path().join("res.txt");
    let gt = gt();
    run(bin().args([
        "degrade",
        "--gt",
        path_arg(&gt),
        "--level",
        "easy",
        "--seed",
        "3",
        "--out",
        path_arg(&det),
    ]));
    let timing = run(bin().args([
        "track",
        "--detections",
        path_arg(&det),
        "--out",
        path_arg(&res),
        "--frame-size",
        "640x480",
    ]));
    assert_eq!(field(&timing, "frames"), 71.0);
    assert!(field(&timing, "fps") > 0.0);
    let scores = run(bin().args(["score", "--gt", path_arg(&gt), "--results", path_arg(&res)]));
    assert!(field(&scores, "mota") > 0.85, "{scores}");
    assert!(field(&scores, "idf1") > 0.85, "{scores}");
    assert_eq!(field(&scores, "num_objects"), 359.0);
    // The ground truth scored against itself is perfect.
    let perfect = run(bin().args(["score", "--gt", path_arg(&gt), "--results", path_arg(&gt)]));
    assert_eq!(field(&perfect, "mota"), 1.0);
    assert_eq!(field(&perfect, "idf1"), 1.0);
}

#[test]
fn harsh_level_is_offered_and_seeded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let gt = gt();
    let degrade = |seed: &str, out: &Path| {
        run(bin().args([
            "degrade",
            "--gt",
            path_arg(&gt),
            "--level",
            "harsh",
            "--seed",
            seed,
            "--out",
            path_arg(out),
        ]));
        std::fs::read_to_string(out).expect("detections written")
    };
    let a = degrade("2", &dir.path().join("a.txt"));
    let b = degrade("2", &dir.path().join("b.txt"));
    let c = degrade("3", &dir.path().join("c.txt"));
    assert_eq!(a, b);
    assert_ne!(a, c);
    // 71 frames, 359 true boxes: about 280 detected plus about 140 false.
    let n = a.lines().count();
    assert!((330..=520).contains(&n), "{n} detections");
}

#[test]
fn bad_input_fails_with_a_message_naming_the_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "1,-1,10,20,30\n").expect("write");
    let out = bin()
        .args([
            "track",
            "--detections",
            path_arg(&bad),
            "--out",
            path_arg(&dir.path().join("r.txt")),
        ])
        .output()
        .expect("binary runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.txt") && err.contains("line 1"), "{err}");

    let out = bin()
        .args([
            "track",
            "--detections",
            path_arg(&bad),
            "--out",
            "r.txt",
            "--frame-size",
            "640by480",
        ])
        .output()
        .expect("binary runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("WIDTHxHEIGHT"));
}
