//! The adaptation loop on a small graph (every operator the trainer
//! implements) and crops read from a node's real training file (SQLite).

use candle_core::{DType, Device};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vidar_protocol::{CameraId, TrackId, UnixMs};
use vidar_store::training::{Sample as Stored, Tracklet, TrainingBounds, TrainingStore};
use vidar_train::adapt::{adapt, AdaptConfig, EpochReport, Schedule};
use vidar_train::data::{from_training_files, Preprocess, Sample};
use vidar_train::Graph;

mod common;

/// Four people, seen twice by each of two cameras: a pattern per person,
/// a tint per camera, noise per crop.
fn crops(people: std::ops::Range<u32>, seed: u64) -> Vec<Sample> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for person in people {
        for camera in 0..2u32 {
            for _ in 0..2 {
                let chw = (0..3 * 8 * 8)
                    .map(|k| {
                        let on = (k * 7 + person as usize * 13) % 5 < 2;
                        f32::from(u8::from(on))
                            + 0.3 * camera as f32
                            + 0.3 * rng.gen_range(-1.0f32..1.0)
                    })
                    .collect();
                out.push(Sample {
                    chw,
                    label: person * 16 + camera,
                    camera,
                    person: Some(u64::from(person)),
                });
            }
        }
    }
    out
}

fn values(g: &Graph, which: &[usize]) -> Vec<Vec<f64>> {
    which
        .iter()
        .map(|&p| {
            g.params()[p]
                .var
                .as_tensor()
                .flatten_all()
                .and_then(|t| t.to_dtype(DType::F64))
                .and_then(|t| t.to_vec1())
                .expect("values")
        })
        .collect()
}

/// The graph after adapting, the epochs' reports, and the node side's
/// parameters before and after.
type Run = (Graph, Vec<EpochReport>, Vec<Vec<f64>>, Vec<Vec<f64>>);

fn run(freeze: bool, cross_camera: Option<f32>) -> Run {
    let g = Graph::from_model(common::small_model(9), "small", &Device::Cpu, DType::F32)
        .expect("graph");
    let cut = g
        .cuts()
        .iter()
        .find(|c| c.at == 4)
        .copied()
        .expect("a cut after the max pool");
    let (node, trainer) = (g.params_of(0..cut.at), g.params_of(cut.at..g.len()));
    let before = (values(&g, &node), values(&g, &trainer));
    let pre = Preprocess::new(8, 8, [0.0; 3], [1.0; 3]);
    let config = AdaptConfig {
        epochs: 8,
        batch_ids: 4,
        per_id: 2,
        lr: 1e-2,
        schedule: Schedule::Constant,
        weight_decay: 0.0,
        margin: 0.5,
        cut: cut.at,
        freeze_node_side: freeze,
        flip: 0.5,
        cross_camera,
    };
    let mut reports = Vec::new();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    adapt(
        &g,
        &pre,
        &crops(0..8, 1),
        &crops(8..12, 2),
        &config,
        &mut rng,
        |r| reports.push(r.clone()),
    )
    .expect("adapt");
    let after_node = values(&g, &node);
    let after_trainer = values(&g, &trainer);
    assert_ne!(before.1, after_trainer, "the trainer's side must train");
    (g, reports, before.0, after_node)
}

#[test]
fn a_frozen_node_side_stays_as_it_was_and_the_loss_falls() {
    let (_, reports, before, after) = run(true, None);
    assert_eq!(before, after, "a frozen node side changed");
    assert_eq!(reports.len(), 9);
    assert!(reports[0].held_out_rank1.is_some());
    let (first, last) = (reports[1].loss, reports[8].loss);
    assert!(last < first, "loss {first} -> {last}");
    // Frozen: the node's activations are computed once, nothing per step.
    assert!(reports.iter().all(|r| r.up_bytes == 0 && r.down_bytes == 0));
}

#[test]
fn a_training_node_side_changes_and_its_traffic_is_counted() {
    let (_, reports, before, after) = run(false, None);
    assert_ne!(before, after, "the node side did not train");
    let r = &reports[1];
    assert!(r.up_bytes > 0 && r.up_bytes == r.down_bytes, "{r:?}");
    assert!(reports[8].loss < reports[1].loss);
}

#[test]
fn cross_camera_merges_are_reported_with_how_many_are_right() {
    let (_, reports, _, _) = run(true, Some(0.0));
    // At threshold 0 every mutual nearest neighbour merges.
    let (merged, pure) = reports[1].merged.expect("merges reported");
    assert!(merged > 0);
    assert!(pure.is_some_and(|p| p <= merged));
}

fn jpeg(rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(20, 40, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("jpeg");
    out.into_inner()
}

fn tracklet(camera: &str, track: u64, samples: Vec<Vec<u8>>) -> Tracklet {
    Tracklet {
        id: 0,
        camera: CameraId::new(camera).expect("camera"),
        track: TrackId(track),
        identity: None,
        first_ms: UnixMs(1_000),
        last_ms: UnixMs(2_000),
        crops: samples.len() as u32,
        samples: samples
            .into_iter()
            .enumerate()
            .map(|(k, jpeg)| Stored {
                t_ms: UnixMs(1_000 + k as i64),
                quality: 0.9,
                jpeg,
            })
            .collect(),
    }
}

#[test]
fn a_nodes_training_file_gives_one_pseudo_identity_per_tracklet() {
    let dir = tempfile::tempdir().expect("tmp");
    let bounds = TrainingBounds {
        max_samples: 100,
        retention: std::time::Duration::from_secs(3600),
    };
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let mut s = TrainingStore::open(&a, bounds).expect("open");
    s.add(
        &tracklet("door", 1, vec![jpeg([200, 0, 0]), jpeg([190, 10, 0])]),
        UnixMs(3_000),
    )
    .expect("add");
    s.add(&tracklet("door", 2, vec![jpeg([0, 0, 200])]), UnixMs(3_000))
        .expect("add");
    drop(s);
    let mut s = TrainingStore::open(&b, bounds).expect("open");
    s.add(
        &tracklet("yard", 1, vec![jpeg([0, 200, 0]), jpeg([0, 190, 0])]),
        UnixMs(3_000),
    )
    .expect("add");
    drop(s);
    let mut pre = Preprocess::new(16, 8, [0.5; 3], [0.25; 3]);
    let (samples, cameras) = from_training_files(&[a.clone(), b], &mut pre).expect("read");
    assert_eq!(cameras, vec!["door".to_string(), "yard".to_string()]);
    let got: Vec<(u32, u32)> = samples.iter().map(|s| (s.label, s.camera)).collect();
    assert_eq!(got, vec![(0, 0), (0, 0), (1, 0), (2, 1), (2, 1)]);
    assert!(samples
        .iter()
        .all(|s| s.person.is_none() && s.chw.len() == 3 * 16 * 8));
    // The red crop is red after normalisation: (200/255 - 0.5) / 0.25 > 1.
    let red = &samples[0].chw;
    assert!(
        red[0] > 1.0 && red[2 * 16 * 8] < -1.0,
        "{} {}",
        red[0],
        red[2 * 16 * 8]
    );

    // A crop that is not a JPEG is refused with the file and tracklet named.
    let mut s = TrainingStore::open(&a, bounds).expect("open");
    s.add(
        &tracklet("door", 3, vec![b"not a jpeg".to_vec()]),
        UnixMs(3_000),
    )
    .expect("add");
    drop(s);
    let e = from_training_files(std::slice::from_ref(&a), &mut pre).expect_err("refused");
    let text = e.to_string();
    assert!(
        text.contains("a.db") && text.contains("tracklet 3") && text.contains("JPEG"),
        "{text}"
    );
}
