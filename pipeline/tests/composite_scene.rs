//! The composite scene on generated labelled folders (solid-colour "people"
//! written to a temp dir; no real data): determinism, ground truth against the
//! pasted pixels, transit between cameras, crowding, bad input, truth files,
//! and the real `vidar-camera` serving a composite mount over RTSP.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use vidar_pipeline::composite::{
    parse_source, write_mot_ground_truth, Background, CompositeError, CompositeScene,
    CompositeSpec, GroundTruthWriter, TruthBox,
};
use vidar_pipeline::Ingest;
use vidar_protocol::ids::IdRange;
use vidar_protocol::{StreamState, UnixMs};

const W: u32 = 320;
const H: u32 = 240;

/// The colour of person `p` on data-set camera `k`: unique, never black.
fn colour(p: u64, k: u32) -> [u8; 3] {
    [
        (40 + p * 13 % 200) as u8,
        (60 + k * 90) as u8,
        (30 + p * 37 % 220) as u8,
    ]
}

/// Writes `people` solid-colour 20x50 PNGs per camera `0..cameras` and a
/// `labels.csv` (with an extra column, in a shuffled column order).
fn folder(dir: &Path, people: u64, cameras: u32) -> PathBuf {
    let d = dir.join("people");
    std::fs::create_dir_all(&d).expect("mkdir");
    let mut labels = String::from("camera,sha256,file,person_id\n");
    for p in 1..=people {
        for k in 0..cameras {
            let file = format!("{p:04}_{k}.png");
            let img = image::RgbImage::from_pixel(20, 50, image::Rgb(colour(p, k)));
            img.save(d.join(&file)).expect("png");
            labels.push_str(&format!("{k},x,{file},{p:04}\n"));
        }
    }
    std::fs::write(d.join("labels.csv"), labels).expect("labels");
    d
}

fn spec(dir: &Path, camera: u32) -> CompositeSpec {
    let mut s = CompositeSpec::new(dir);
    s.camera = camera;
    s.count = 10;
    s.gap_s = 1.5;
    s.transit_s = 4.0;
    s.feather = 0;
    s.near_px = Some(70);
    s.far_px = Some(35);
    s
}

fn scene(s: CompositeSpec) -> CompositeScene {
    CompositeScene::open_with_background(s, Background::solid(W, H, [0, 0, 0]).expect("bg"))
        .expect("scene")
}

fn frame(scene: &CompositeScene, n: u64) -> (Vec<u8>, Vec<TruthBox>) {
    let mut buf = vec![0u8; (W * H * 3) as usize];
    let truth = scene.render(n, &mut buf, (W * 3) as usize);
    (buf, truth)
}

#[test]
fn frames_are_a_pure_function_of_spec_and_frame_number() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = folder(tmp.path(), 20, 2);
    let (a, b) = (scene(spec(&dir, 0)), scene(spec(&dir, 0)));
    let n = (0..400)
        .find(|&n| a.truth(n).len() >= 2)
        .expect("busy frame");
    assert_eq!(frame(&a, n), frame(&b, n));
    assert_ne!(frame(&a, n).0, frame(&a, n + 1).0, "people move");
    let mut other = spec(&dir, 0);
    other.seed = 2;
    assert_ne!(frame(&a, n).0, frame(&scene(other), n).0, "another seed");
    // The schedule repeats.
    let p = a.period_frames();
    assert_eq!(frame(&a, n), frame(&a, n + p));
}

#[test]
fn truth_boxes_are_where_the_people_were_pasted() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = folder(tmp.path(), 20, 2);
    for camera in [0, 1] {
        let sc = scene(spec(&dir, camera));
        let colours: std::collections::HashMap<u64, [u8; 3]> = sc
            .people()
            .iter()
            .map(|p| (p.person_id, colour(p.person_id, camera)))
            .collect();
        let (mut occluded, mut boxes) = (0, 0);
        for n in (0..sc.period_frames()).step_by(3) {
            let (buf, truth) = frame(&sc, n);
            let mut covered = vec![false; (W * H) as usize];
            for b in &truth {
                boxes += 1;
                assert!(
                    b.w > 0 && b.h > 0 && b.x + b.w <= W && b.y + b.h <= H,
                    "{b:?}"
                );
                assert!((0.0..=1.0).contains(&b.visibility));
                let inside = b.x > 0 && b.y > 0 && b.x + b.w < W && b.y + b.h < H;
                if inside && b.visibility < 0.999 {
                    occluded += 1;
                }
                for y in b.y..b.y + b.h {
                    for x in b.x..b.x + b.w {
                        covered[(y * W + x) as usize] = true;
                    }
                }
                if b.visibility >= 0.999 {
                    let c = colours[&b.person_id];
                    for y in b.y..b.y + b.h {
                        for x in b.x..b.x + b.w {
                            let i = ((y * W + x) * 3) as usize;
                            assert_eq!(buf[i..i + 3], c, "frame {n} {b:?} pixel {x},{y}");
                        }
                    }
                }
            }
            for (i, c) in covered.iter().enumerate() {
                if !c {
                    assert_eq!(
                        buf[i * 3..i * 3 + 3],
                        [0, 0, 0],
                        "frame {n}: paint outside boxes"
                    );
                }
            }
        }
        assert!(boxes > 100, "{boxes} boxes");
        assert!(occluded > 0, "some people occlude others");
    }
}

#[test]
fn several_people_at_once_and_later_cameras_after_transit() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = folder(tmp.path(), 20, 2);
    let (c0, c1) = (scene(spec(&dir, 0)), scene(spec(&dir, 1)));
    assert_eq!(c0.period_frames(), c1.period_frames());
    assert_eq!(
        c0.people().iter().map(|p| p.person_id).collect::<Vec<_>>(),
        c1.people().iter().map(|p| p.person_id).collect::<Vec<_>>(),
        "both cameras show the same people"
    );
    let period = c0.period_frames();
    let span = |sc: &CompositeScene, id: u64| {
        let frames: Vec<u64> = (0..period)
            .filter(|&n| sc.truth(n).iter().any(|b| b.person_id == id))
            .collect();
        (frames[0], frames[frames.len() - 1])
    };
    let mut crowded = 0;
    for n in 0..period {
        if c0.truth(n).len() >= 3 {
            crowded += 1;
        }
    }
    assert!(crowded > 10, "3+ people on screen in only {crowded} frames");
    for p in c0.people() {
        let (_, last0) = span(&c0, p.person_id);
        let (first1, _) = span(&c1, p.person_id);
        // transit 4 s * 0.7..1.3 at 10 fps, counted from leaving the frame.
        let gap = first1 as f64 - last0 as f64;
        assert!(
            (25.0..=55.0).contains(&gap),
            "person {} gap {gap} frames",
            p.person_id
        );
    }
}

#[test]
fn bad_input_names_the_path_or_parameter() {
    let tmp = tempfile::tempdir().expect("tmp");
    let bg = || Background::solid(W, H, [0, 0, 0]).expect("bg");
    let open = |s: CompositeSpec| CompositeScene::open_with_background(s, bg()).map(|_| ());
    let msg = |r: Result<(), CompositeError>| r.expect_err("must fail").to_string();

    let missing = tmp.path().join("nowhere");
    let e = msg(open(CompositeSpec::new(&missing)));
    assert!(
        e.contains("nowhere") && e.contains("no such directory"),
        "{e}"
    );

    let dir = folder(tmp.path(), 3, 2);
    let e = msg(open({
        let mut s = CompositeSpec::new(&dir);
        s.count = 5;
        s
    }));
    assert!(e.contains("count=5") && e.contains("3 found"), "{e}");

    let e = msg(open({
        let mut s = CompositeSpec::new(&dir);
        s.count = 2;
        s.cameras = 3;
        s
    }));
    assert!(e.contains("0 found") && e.contains("{0, 1}"), "{e}");

    std::fs::remove_file(dir.join("0002_1.png")).expect("rm");
    let e = msg(open({
        let mut s = CompositeSpec::new(&dir);
        s.count = 3;
        s
    }));
    assert!(
        e.contains("0002_1.png") && e.contains("no such file"),
        "{e}"
    );

    std::fs::write(dir.join("labels.csv"), "file,camera\na.png,0\n").expect("write");
    let e = msg(open(CompositeSpec::new(&dir)));
    assert!(e.contains("labels.csv") && e.contains("person_id"), "{e}");
    std::fs::remove_file(dir.join("labels.csv")).expect("rm");
    let e = msg(open(CompositeSpec::new(&dir)));
    assert!(e.contains("labels.csv"), "{e}");

    let e = parse_source("composite:?people=/x&fps=0")
        .expect("composite")
        .expect_err("fps")
        .to_string();
    assert!(e.contains("fps"), "{e}");
    let e = Background::load(&tmp.path().join("bg.png"), 10)
        .expect_err("missing background")
        .to_string();
    assert!(e.contains("bg.png"), "{e}");
}

#[test]
fn writes_mot_and_live_ground_truth_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = folder(tmp.path(), 12, 2);
    let sc = scene(spec(&dir, 1));
    let out = tmp.path().join("gt.txt");
    write_mot_ground_truth(&sc, 200, &out).expect("mot");
    let text = std::fs::read_to_string(&out).expect("read");
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert!(!rows.is_empty());
    let total: usize = (0..200).map(|n| sc.truth(n).len()).sum();
    assert_eq!(rows.len(), total);
    for r in &rows {
        assert_eq!(r.len(), 10);
        assert_eq!(&r[6..], ["1", "-1", "-1", "-1"]);
        let f: u64 = r[0].parse().expect("frame");
        assert!((1..=200).contains(&f), "frames count from 1");
    }
    let mut w = GroundTruthWriter::create(tmp.path(), "cam").expect("writer");
    let n = (0..200)
        .find(|&n| !sc.truth(n).is_empty())
        .expect("someone");
    w.record(0, UnixMs(1_000), &[]).expect("record");
    w.record(n, UnixMs(2_000), &sc.truth(n)).expect("record");
    w.flush().expect("flush");
    let gt = std::fs::read_to_string(tmp.path().join("cam.gt.csv")).expect("gt");
    let frames = std::fs::read_to_string(tmp.path().join("cam.frames.csv")).expect("frames");
    assert_eq!(
        frames,
        "frame,unix_ms\n0,1000\n".to_string() + &format!("{n},2000\n")
    );
    assert!(gt.starts_with("frame,unix_ms,person_id,x,y,w,h,visibility\n"));
    assert_eq!(gt.lines().count(), 1 + sc.truth(n).len());
}

/// Starts the real binary; returns the child and the port once it is ready.
fn start_camera(args: &[&str]) -> (std::process::Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vidar-camera"))
        .args(["--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vidar-camera");
    let stdout = child.stdout.take().expect("stdout");
    let port = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("ready port=")
                .and_then(|p| p.trim().parse().ok())
        });
    match port {
        Some(p) => (child, p),
        None => {
            let _ = child.kill();
            panic!("vidar-camera did not start");
        }
    }
}

#[test]
fn vidar_camera_serves_composite_mounts_with_ground_truth() {
    let _g = serial();
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = folder(tmp.path(), 12, 2);
    let bg = tmp.path().join("street.png");
    image::RgbImage::from_pixel(W, H, image::Rgb([90, 90, 90]))
        .save(&bg)
        .expect("bg");
    let gt_dir = tmp.path().join("gt");
    let mount = |name: &str, k: u32| {
        format!(
            "{name}=composite:?people={}&camera={k}&seed=3&fps=10&count=6&gap=1&transit=2&background={}",
            dir.display(),
            bg.display()
        )
    };
    let (m0, m1) = (mount("c0", 0), mount("c1", 1));
    let gt_arg = gt_dir.display().to_string();
    let (mut child, port) =
        start_camera(&["--ground-truth", &gt_arg, "--mount", &m0, "--mount", &m1]);
    let url = format!("rtsp://127.0.0.1:{port}/c0");
    let ingest = Ingest::start(fast_config("comp0", &url)).expect("ingest");
    let st = wait_status(&ingest, Duration::from_secs(10), |s| {
        s.state == StreamState::Streaming
    });
    assert_eq!(st.state, StreamState::Streaming, "{st:?}");
    let sizes = collect_for(&ingest, Duration::from_secs(3), |f| (f.width, f.height));
    drop(ingest);
    let _ = child.kill();
    let _ = child.wait();
    assert!(sizes.len() >= 15, "{} frames in 3 s at 10 fps", sizes.len());
    assert!(sizes.iter().all(|&s| s == (W, H)));
    let frames = std::fs::read_to_string(gt_dir.join("c0.frames.csv")).expect("frames.csv");
    assert!(frames.lines().count() > 15, "{frames}");
    let gt = std::fs::read_to_string(gt_dir.join("c0.gt.csv")).expect("gt.csv");
    assert!(
        gt.lines().count() > 2,
        "people walked in the first seconds: {gt}"
    );
    let people = std::fs::read_to_string(gt_dir.join("c1.people.csv")).expect("people.csv");
    assert_eq!(people.lines().count(), 1 + 6 * 2);
}

#[test]
fn vidar_camera_exits_non_zero_naming_the_bad_input() {
    let tmp = tempfile::tempdir().expect("tmp");
    let missing = tmp.path().join("no-such-people");
    let bg = tmp.path().join("street.png");
    image::RgbImage::from_pixel(W, H, image::Rgb([90, 90, 90]))
        .save(&bg)
        .expect("bg");
    for (m, what) in [
        (
            format!(
                "c0=composite:?people={}&background={}",
                missing.display(),
                bg.display()
            ),
            "no-such-people".to_string(),
        ),
        (
            "c0=composite:?people=/x&count=zero".to_string(),
            "count".to_string(),
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_vidar-camera"))
            .args(["--port", "0", "--mount", &m])
            .output()
            .expect("run");
        assert!(!out.status.success(), "{m}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&what), "{m}: {err}");
    }
}

#[test]
fn people_are_drawn_only_from_the_ids_asked_for() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = folder(tmp.path(), 30, 2);
    let mut s = spec(&dir, 0);
    s.ids = Some(IdRange { lo: 12, hi: 25 });
    let sc = scene(s.clone());
    let ids: Vec<u64> = sc.people().iter().map(|p| p.person_id).collect();
    assert_eq!(ids.len(), 10, "{ids:?}");
    assert!(ids.iter().all(|id| (12..=25).contains(id)), "{ids:?}");
    // Fewer people in the range than asked for: refused, naming the range.
    s.ids = Some(IdRange { lo: 28, hi: 40 });
    let e =
        CompositeScene::open_with_background(s, Background::solid(W, H, [0, 0, 0]).expect("bg"))
            .expect_err("3 people in 28-40")
            .to_string();
    assert!(e.contains("ids 28-40") && e.contains("3 found"), "{e}");
}
