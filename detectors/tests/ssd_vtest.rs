//! The SSD detector on real frames of OpenCV's vtest.avi, against the Python
//! onnxruntime reference committed in fixtures/vtest_ssd_expected.json
//! (regenerate with fixtures/make_vtest_fixture.py).

mod common;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use vidar_config::Config;
use vidar_detectors::{
    BBox, DetectError, Detection, Detector, Filter, Picture, Prepared, RgbFrame, SsdConfig,
};

#[derive(Deserialize)]
struct Fixture {
    score_threshold: f32,
    nms_iou: f32,
    max_detections: usize,
    frames: Vec<FixtureFrame>,
}

#[derive(Deserialize)]
struct FixtureFrame {
    file: String,
    width: u32,
    height: u32,
    rgb_sha256: String,
    postprocessed: Vec<Expected>,
    raw: Vec<Expected>,
    raw_sampled: Vec<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    #[serde(rename = "box")]
    bbox: [f32; 4],
    score: f32,
}

const FIXTURE: &str = include_str!("fixtures/vtest_ssd_expected.json");

fn corners(b: &BBox) -> [f32; 4] {
    [b.x, b.y, b.x + b.w, b.y + b.h]
}

fn max_corner_diff(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every expected box has a detection within `tol` px (matched one-to-one, closest first), same count.
fn assert_matches(what: &str, got: &[Detection], want: &[[f32; 4]], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: got {got:?}, want {want:?}");
    let mut used = vec![false; got.len()];
    for w in want {
        let (best, diff) = got
            .iter()
            .enumerate()
            .filter(|(i, _)| !used[*i])
            .map(|(i, d)| (i, max_corner_diff(&corners(&d.bbox), w)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("a detection left");
        assert!(
            diff <= tol,
            "{what}: box {w:?} nearest detection {:?} is {diff:.2} px off",
            got[best]
        );
        used[best] = true;
    }
}

fn config(model: &str, fixture: &Fixture) -> SsdConfig {
    SsdConfig {
        model: model.into(),
        score_threshold: fixture.score_threshold,
        nms_iou: fixture.nms_iou,
        max_detections: fixture.max_detections,
        max_batch: Some(8),
        precision: None,
        resize: Filter::Antialiased,
    }
}

#[test]
fn both_forms_match_python_onnxruntime_and_each_other() {
    let fixture: Fixture = serde_json::from_str(FIXTURE).expect("fixture");
    let factory = common::factory();
    let mut post = config("ssd-mobilenet-v2-coco", &fixture)
        .build(&factory)
        .expect("post");
    let mut raw = config("ssd-mobilenet-v2-coco-raw", &fixture)
        .build(&factory)
        .expect("raw");
    assert_eq!(post.max_batch(), 1);
    assert_eq!(raw.max_batch(), 8);

    let decoded: Vec<_> = fixture
        .frames
        .iter()
        .map(|f| common::load_frame(&f.file))
        .collect();
    for (f, (w, h, rgb)) in fixture.frames.iter().zip(&decoded) {
        assert_eq!((*w, *h), (f.width, f.height), "{}", f.file);
        let sha: String = Sha256::digest(rgb)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            sha, f.rgb_sha256,
            "{}: not the frame the fixture was made from",
            f.file
        );
    }
    let frames: Vec<Picture<'_>> = decoded
        .iter()
        .map(|(w, h, rgb)| RgbFrame::packed(*w, *h, rgb).expect("frame").into())
        .collect();

    // All six frames in one call: the raw form runs them as one batch.
    let got_post = post.detect(&frames).expect("detect post");
    let got_raw = raw.detect(&frames).expect("detect raw");
    let t = raw.take_timings();
    assert_eq!((t.frames, t.runs), (6, 1));
    let t = post.take_timings();
    assert_eq!((t.frames, t.runs), (6, 6));

    let mut total = 0;
    for (i, f) in fixture.frames.iter().enumerate() {
        let want_post: Vec<[f32; 4]> = f.postprocessed.iter().map(|e| e.bbox).collect();
        let want_raw: Vec<[f32; 4]> = f.raw.iter().map(|e| e.bbox).collect();
        assert_matches(
            &format!("{} post-processed vs Python", f.file),
            &got_post[i],
            &want_post,
            1.0,
        );
        assert_matches(
            &format!("{} raw vs Python", f.file),
            &got_raw[i],
            &want_raw,
            1.0,
        );
        let raw_boxes: Vec<[f32; 4]> = got_raw[i].iter().map(|d| corners(&d.bbox)).collect();
        assert_matches(
            &format!("{} post-processed vs raw", f.file),
            &got_post[i],
            &raw_boxes,
            1.0,
        );
        for (d, e) in got_post[i].iter().zip(&f.postprocessed) {
            assert!(d.score >= fixture.score_threshold && d.class_id == 0);
            assert!((0.0..=1.0).contains(&e.score));
        }
        assert!(got_raw[i].iter().all(|d| d.class_id == 1));
        total += got_post[i].len();
    }
    // People walk through every one of these frames.
    assert!(total >= 20, "only {total} persons in 6 frames");
}

#[test]
fn sampled_resizing_matches_python_on_opencv_resized_frames() {
    let fixture: Fixture = serde_json::from_str(FIXTURE).expect("fixture");
    let factory = common::factory();
    let mut raw = SsdConfig {
        resize: Filter::Sampled,
        ..config("ssd-mobilenet-v2-coco-raw", &fixture)
    }
    .build(&factory)
    .expect("raw");
    let mut differs = 0;
    for f in &fixture.frames {
        let (w, h, rgb) = common::load_frame(&f.file);
        let frame = RgbFrame::packed(w, h, &rgb).expect("frame").into();
        let got = raw.detect(&[frame]).expect("detect");
        let want: Vec<[f32; 4]> = f.raw_sampled.iter().map(|e| e.bbox).collect();
        assert_matches(
            &format!("{} sampled vs OpenCV", f.file),
            &got[0],
            &want,
            1.0,
        );
        differs += usize::from(f.raw_sampled.len() != f.raw.len());
    }
    // The two filters give the model different input: the fixture shows it.
    assert!(
        differs > 0,
        "the sampled fixture equals the antialiased one"
    );
}

#[test]
fn batching_and_row_stride_do_not_change_results() {
    let fixture: Fixture = serde_json::from_str(FIXTURE).expect("fixture");
    let factory = common::factory();
    let mut raw = config("ssd-mobilenet-v2-coco-raw", &fixture)
        .build(&factory)
        .expect("raw");
    let (w, h, rgb) = common::load_frame("frame_0030.png");
    let (w2, h2, rgb2) = common::load_frame("frame_0090.png");
    let frame = RgbFrame::packed(w, h, &rgb).expect("frame").into();
    let other = RgbFrame::packed(w2, h2, &rgb2).expect("frame").into();
    let alone = raw.detect(&[frame]).expect("alone");

    // Same frame with 64 bytes of padding per row (as GStreamer may deliver), in a batch of 3.
    let stride = w as usize * 3 + 64;
    let mut padded = vec![0xAAu8; stride * h as usize];
    for y in 0..h as usize {
        padded[y * stride..y * stride + w as usize * 3]
            .copy_from_slice(&rgb[y * w as usize * 3..(y + 1) * w as usize * 3]);
    }
    let padded_frame = RgbFrame::new(w, h, stride, &padded).expect("padded").into();
    let batch = raw.detect(&[other, padded_frame, frame]).expect("batch");
    assert!(!alone[0].is_empty());
    for got in [&batch[1], &batch[2]] {
        assert_eq!(got.len(), alone[0].len());
        for (a, b) in got.iter().zip(&alone[0]) {
            assert!(max_corner_diff(&corners(&a.bbox), &corners(&b.bbox)) < 0.01);
            assert!((a.score - b.score).abs() < 1e-4);
        }
    }
    // A frame of a different size in the same batch is scaled to its own size.
    let small: Vec<u8> = (0..320 * 240 * 3).map(|i| (i % 251) as u8).collect();
    let out = raw
        .detect(&[
            RgbFrame::packed(320, 240, &small).expect("small").into(),
            frame,
        ])
        .expect("mixed");
    assert!(out[0]
        .iter()
        .all(|d| d.bbox.x + d.bbox.w <= 320.0 && d.bbox.y + d.bbox.h <= 240.0));
    assert_eq!(out[1].len(), alone[0].len());
}

#[test]
fn input_prepared_on_another_thread_detects_the_same_and_a_misfit_is_refused() {
    let fixture: Fixture = serde_json::from_str(FIXTURE).expect("fixture");
    let factory = common::factory();
    let mut raw = SsdConfig {
        max_batch: Some(2),
        ..config("ssd-mobilenet-v2-coco-raw", &fixture)
    }
    .build(&factory)
    .expect("raw");
    let (w, h, rgb) = common::load_frame("frame_0030.png");
    let (w2, h2, rgb2) = common::load_frame("frame_0090.png");
    // Three frames: more than one batch of 2, so the prepared input is split.
    let frames = [
        RgbFrame::packed(w, h, &rgb).expect("frame").into(),
        RgbFrame::packed(w2, h2, &rgb2).expect("frame").into(),
        RgbFrame::packed(w, h, &rgb).expect("frame").into(),
    ];
    let direct = raw.detect(&frames).expect("detect");
    assert!(direct.iter().all(|d| !d.is_empty()), "{direct:?}");
    raw.take_timings();

    let mut preparer = raw.preparer().expect("the SSD has a preparer");
    let (rgb_a, rgb_b) = (rgb.clone(), rgb2.clone());
    let input = std::thread::spawn(move || {
        let frames = [
            RgbFrame::packed(w, h, &rgb_a).expect("frame").into(),
            RgbFrame::packed(w2, h2, &rgb_b).expect("frame").into(),
            RgbFrame::packed(w, h, &rgb_a).expect("frame").into(),
        ];
        let mut input = Prepared::default();
        preparer.prepare(&frames, &mut input).expect("prepare");
        input
    })
    .join()
    .expect("preparer thread");
    assert_eq!(input.sizes, vec![(w, h), (w2, h2), (w, h)]);
    let mut out = vec![vec![]; 7];
    raw.detect_prepared(&input, &mut out)
        .expect("detect prepared");
    assert_eq!(out, direct, "prepared elsewhere, detected the same");
    let t = raw.take_timings();
    assert_eq!((t.frames, t.runs), (3, 2));
    assert_eq!(
        t.preprocess, input.took,
        "the preparation counts as pre-processing"
    );

    // An input too short for the frames it names is refused, naming the detector.
    let short = Prepared {
        data: vec![0; 10],
        sizes: vec![(w, h)],
        ..Prepared::default()
    };
    let e = raw.detect_prepared(&short, &mut out).expect_err("misfit");
    assert!(matches!(e, DetectError::Prepared { .. }), "{e}");
    assert!(e.to_string().contains("ssd-mobilenet-v2-coco-raw"), "{e}");
}

#[test]
fn threshold_filters_and_invalid_configs_are_reported() {
    let factory = common::factory();
    let (w, h, rgb) = common::load_frame("frame_0090.png");
    let frame = RgbFrame::packed(w, h, &rgb).expect("frame").into();
    let mut low = SsdConfig {
        score_threshold: 0.3,
        ..SsdConfig::default()
    }
    .build(&factory)
    .expect("low");
    let mut high = SsdConfig {
        score_threshold: 0.7,
        ..SsdConfig::default()
    }
    .build(&factory)
    .expect("high");
    let many = low.detect(&[frame]).expect("low")[0].clone();
    let few = high.detect(&[frame]).expect("high")[0].clone();
    assert!(many.len() > few.len(), "{} vs {}", many.len(), few.len());
    assert!(few.iter().all(|d| d.score >= 0.7));

    let err = SsdConfig {
        score_threshold: 1.5,
        max_batch: Some(0),
        ..SsdConfig::default()
    }
    .build(&factory)
    .expect_err("invalid")
    .to_string();
    assert!(
        err.contains("score_threshold") && err.contains("max_batch"),
        "{err}"
    );
    let err = SsdConfig {
        model: "mobilenetv2-deepsort".into(),
        ..SsdConfig::default()
    }
    .build(&factory)
    .expect_err("not a detector")
    .to_string();
    assert!(err.contains("not a detector"), "{err}");
}

#[test]
fn bench_measures_every_model_and_batch() {
    use vidar_detectors::bench::{run, BenchConfig};
    let config = BenchConfig {
        batches: vec![1, 2],
        iterations: 2,
        warmup: 0,
        frame_size: (320, 240),
        ..BenchConfig::default()
    };
    let report = run(&common::factory(), &config).expect("bench");
    assert_eq!(report.rows.len(), 6);
    for r in &report.rows {
        assert!(r.inference_fps > 0.0 && r.end_to_end_fps > 0.0, "{r:?}");
        assert!(
            r.preprocess_fraction > 0.0 && r.postprocess_fraction > 0.0,
            "{r:?}"
        );
    }
    let raw2 = &report.rows[3];
    assert_eq!(
        (raw2.model.as_str(), raw2.batch, raw2.runs_per_call),
        ("ssd-mobilenet-v2-coco-raw", 2, 1)
    );
    let person2 = &report.rows[5];
    assert_eq!(
        (person2.model.as_str(), person2.batch, person2.runs_per_call),
        ("ssd-mobilenet-v2-person", 2, 1)
    );
    assert_eq!(
        report.rows[1].runs_per_call, 2,
        "the post-processed form runs frame by frame"
    );
    let table = report.to_string();
    assert!(
        table.contains("| ssd-mobilenet-v2-coco-raw | 2 | 1 |"),
        "{table}"
    );
}

/// A detector of `model` at `precision`, with the default settings (and
/// `max_batch` when given).
fn ssd(
    factory: &vidar_models::SessionFactory,
    model: &str,
    precision: Option<vidar_models::Precision>,
    max_batch: Option<usize>,
) -> Result<vidar_detectors::SsdDetector, vidar_detectors::DetectError> {
    let default = SsdConfig::default();
    SsdConfig {
        model: model.into(),
        precision,
        max_batch: max_batch.or(default.max_batch),
        ..default
    }
    .build(factory)
}

/// The six vtest frames `make models` writes: (width, height, RGB).
fn six_frames() -> Vec<(u32, u32, Vec<u8>)> {
    [0, 2, 4, 30, 60, 90]
        .map(|i| common::load_frame(&format!("frame_{i:04}.png")))
        .into()
}

/// Packed RGB pictures of loaded frames.
fn pictures(loaded: &[(u32, u32, Vec<u8>)]) -> Vec<Picture<'_>> {
    loaded
        .iter()
        .map(|(w, h, rgb)| RgbFrame::packed(*w, *h, rgb).expect("frame").into())
        .collect()
}

/// Without `max_batch`, an int8 detector on the CPU runs up to 4 frames at
/// once and a float one 1 (docs/benchmarks.md, "Batches across cameras");
/// a GPU provider 8; a configured limit is kept whatever the model.
#[test]
fn the_batch_limit_follows_the_precision_unless_configured() {
    use vidar_models::{Precision, ProviderConfig};
    let factory = common::factory();
    let model = "ssd-mobilenet-v2-person";
    let limit = |precision, batch| {
        ssd(&factory, model, precision, batch)
            .expect(model)
            .max_batch()
    };
    assert_eq!(limit(None, None), 1, "float on the CPU");
    assert_eq!(limit(Some(Precision::Int8), None), 4, "int8 on the CPU");
    assert_eq!(limit(Some(Precision::Int8), Some(2)), 2);
    assert_eq!(limit(None, Some(3)), 3);
    let unset: SsdConfig = toml::from_str("model = \"m\"").expect("config");
    assert_eq!(unset.max_batch, None);
    let gpu = ProviderConfig::Cuda { device_id: 0 };
    assert_eq!(unset.batch_limit(Precision::Fp16, gpu.name()), 8);
    let set: SsdConfig = toml::from_str("max_batch = 5").expect("config");
    assert_eq!(set.batch_limit(Precision::Fp32, gpu.name()), 5);
    let zero: SsdConfig = toml::from_str("max_batch = 0").expect("config");
    let err = zero.check().expect_err("0 frames").to_string();
    assert!(err.contains("max_batch") && err.contains("got 0"), "{err}");
}

/// Batching does not change what a frame reports: the shipped person SSD,
/// int8 (batches of 4 by default on a CPU) and float, finds on each of the
/// six vtest frames run together what it finds on the frame alone, to 1e-5
/// in score and box.
#[test]
fn batched_frames_report_what_single_frames_report() {
    use vidar_models::Precision;
    let factory = common::factory();
    let model = "ssd-mobilenet-v2-person";
    let loaded = six_frames();
    let frames = pictures(&loaded);
    for precision in [Some(Precision::Int8), None] {
        let mut one = ssd(&factory, model, precision, Some(1)).expect(model);
        let mut six = ssd(&factory, model, precision, Some(6)).expect(model);
        let batched = six.detect(&frames).expect("batch of six");
        let mut persons = 0;
        for (i, (frame, got)) in frames.iter().zip(&batched).enumerate() {
            let alone = one.detect(std::slice::from_ref(frame)).expect("one frame");
            let want = &alone[0];
            assert_eq!(got.len(), want.len(), "{precision:?}, frame {i}");
            for (g, w) in got.iter().zip(want) {
                let (gb, wb) = (&g.bbox, &w.bbox);
                let worst = [
                    g.score - w.score,
                    gb.x - wb.x,
                    gb.y - wb.y,
                    gb.w - wb.w,
                    gb.h - wb.h,
                ]
                .into_iter()
                .fold(0f32, |m, d| m.max(d.abs()));
                assert!(
                    worst <= 1e-5,
                    "{precision:?}, frame {i}: {g:?} against {w:?}"
                );
            }
            persons += want.len();
        }
        assert!(persons >= 20, "{precision:?}: only {persons} persons");
    }
}

/// The int8 variant (`precision = "int8"`) finds the float model's persons
/// on the six vtest frames, in one batch; precisions that cannot run are
/// refused by name.
#[test]
fn the_int8_detector_agrees_with_the_float_one_and_impossible_precisions_are_named() {
    use vidar_models::Precision;
    let factory = common::factory();
    let build = |model: &str, precision| ssd(&factory, model, precision, Some(6));
    let mut fp32 = build("ssd-mobilenet-v2-coco-raw", None).expect("fp32");
    let mut int8 = build("ssd-mobilenet-v2-coco-raw", Some(Precision::Int8)).expect("int8");
    assert_eq!(int8.model().spec().name, "ssd-mobilenet-v2-coco-raw-int8");
    assert_eq!(int8.model().spec().precision, Precision::Int8);
    let loaded = six_frames();
    let frames = pictures(&loaded);
    let want = fp32.detect(&frames).expect("fp32 detects");
    let got = int8.detect(&frames).expect("int8 detects");
    let (mut tp, mut fn_, mut fp) = (0usize, 0usize, 0usize);
    for (w, g) in want.iter().zip(&got) {
        let mut used = vec![false; g.len()];
        for a in w {
            let hit = (0..g.len()).find(|&j| !used[j] && a.bbox.iou(&g[j].bbox) >= 0.5);
            match hit {
                Some(j) => {
                    used[j] = true;
                    tp += 1;
                }
                None => fn_ += 1,
            }
        }
        fp += used.iter().filter(|u| !**u).count();
    }
    let f1 = 2.0 * tp as f64 / (2 * tp + fn_ + fp) as f64;
    assert!(tp >= 20, "only {tp} persons matched");
    assert!(
        f1 >= 0.9,
        "int8 against fp32: F1 {f1:.3} (tp {tp}, missed {fn_}, extra {fp})"
    );

    // fp16 needs TensorRT; a model with no int8 variant says which it has.
    let Err(err) = build("ssd-mobilenet-v2-coco-raw", Some(Precision::Fp16)) else {
        panic!("fp16 on CPU accepted");
    };
    let err = err.to_string();
    assert!(err.contains("fp16") && err.contains("TensorRT"), "{err}");
    let Err(err) = build("ssd-mobilenet-v2-coco", Some(Precision::Int8)) else {
        panic!("an int8 variant of the post-processed SSD");
    };
    let err = err.to_string();
    assert!(
        err.contains("no int8 variant") && err.contains("fp32"),
        "{err}"
    );
}

/// The person SSD (the default: person head only, input as 2x2 pixel
/// blocks) reports the raw SSD's persons on the vtest frames, in batches
/// and through a preparer of its own (as the node's preparation threads):
/// the same boxes and scores to the bit in int8 (the same integer
/// arithmetic), within float rounding in fp32 (the first convolution adds
/// the same products in another order).
#[test]
fn the_person_ssd_reports_the_raw_ssds_persons() {
    use vidar_models::Precision;
    let factory = common::factory();
    let build = |model: &str, precision| ssd(&factory, model, precision, Some(3)).expect(model);
    assert_eq!(SsdConfig::default().model, "ssd-mobilenet-v2-person");
    let loaded = six_frames();
    let frames = pictures(&loaded);
    for (precision, tol) in [(Some(Precision::Int8), 0.0f32), (None, 0.01)] {
        let mut raw = build("ssd-mobilenet-v2-coco-raw", precision);
        let mut person = build("ssd-mobilenet-v2-person", precision);
        assert_eq!(
            person.model().spec().input.shape,
            vec![-1, 150, 150, 12],
            "{precision:?}"
        );
        let want = raw.detect(&frames).expect("raw detects");
        let mut prep = person.preparer().expect("a preparer");
        let mut input = Prepared::default();
        prep.prepare(&frames, &mut input).expect("prepares");
        let mut got = Vec::new();
        person
            .detect_prepared(&input, &mut got)
            .expect("person detects");
        let mut persons = 0;
        for (i, (w, g)) in want.iter().zip(&got).enumerate() {
            if precision.is_some() {
                assert_eq!(w, g, "int8 frame {i}");
            } else {
                let boxes: Vec<[f32; 4]> = w.iter().map(|d| corners(&d.bbox)).collect();
                assert_matches(&format!("fp32 frame {i}"), g, &boxes, tol);
            }
            persons += w.len();
        }
        assert!(persons >= 20, "{precision:?}: only {persons} persons");
    }
}
