//! Training samples collected by the re-ID worker (`crate::training`), on a
//! real worker and a real training file.

use crate::identify::testing::{answer, figure, job, spawn};
use crate::training::{export, Collector, TrainingConfig};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use vidar_protocol::{TrackId, UnixMs};
use vidar_reid::GalleryConfig;

#[test]
fn a_confirmed_tracks_best_crops_are_kept_and_exported_and_short_tracks_are_not() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut id, metrics, _rec) = spawn(dir.path(), GalleryConfig::default(), false, None);
    let config = TrainingConfig {
        collect: true,
        per_track: 2,
        min_quality: 0.3,
        min_crops: 3,
        ..TrainingConfig::default()
    };
    let database = dir.path().join("e.db");
    let (collector, writer) =
        Collector::start(&config, &database, Arc::clone(&metrics)).expect("collector");
    id.collect_training(collector, writer).expect("collecting");
    let t0 = SystemTime::now() - Duration::from_secs(60);
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    // Track 1: five crops of qualities 0.5, 0.9, 0.2, 0.7, 0.6: kept 0.9
    // and 0.7 (0.2 is under the floor).
    let red = figure([220, 40, 40]);
    for (k, q) in [0.5f32, 0.9, 0.2, 0.7, 0.6].into_iter().enumerate() {
        let mut j = job(1, red, at(0), at(k as u64 * 100), false);
        j.tracks[0].quality = q;
        answer(&mut id, j);
    }
    id.ended(0, TrackId(1), UnixMs::of(at(400)));
    // Track 2: two crops only, not confirmed.
    let blue = figure([40, 40, 220]);
    for k in 0..2 {
        answer(&mut id, job(2, blue, at(1_000), at(1_000 + k * 100), false));
    }
    id.ended(0, TrackId(2), UnixMs::of(at(1_100)));
    id.finish();
    assert_eq!(metrics.training_tracklets.load(Ordering::Relaxed), 1);
    assert_eq!(metrics.training_samples.load(Ordering::Relaxed), 2);
    let got = vidar_store::training::read_training(&config.file(&database), 10).expect("read");
    assert_eq!(got.len(), 1);
    let t = &got[0];
    assert_eq!((t.track, t.crops, t.camera.as_str()), (TrackId(1), 5, "c"));
    assert_eq!(
        t.samples.iter().map(|s| s.quality).collect::<Vec<_>>(),
        vec![0.9, 0.7]
    );
    assert_eq!(t.samples[0].t_ms, UnixMs::of(at(100)));
    assert!(t.identity.is_some(), "decided at its second crop");
    // A real JPEG of the person (red), at most SAMPLE_MAX_SIDE.
    let img = image::load_from_memory(&t.samples[0].jpeg).expect("jpeg");
    let px = img.to_rgb8();
    let mid = px.get_pixel(px.width() / 2, px.height() / 2);
    assert!(mid[0] > 150 && mid[2] < 100, "{mid:?}");
    // Exported in the labels.csv layout of `vidar-edge eval reid`.
    let out = dir.path().join("export");
    assert_eq!(
        export(&config.file(&database), &out).expect("export"),
        (1, 2)
    );
    let csv = std::fs::read_to_string(out.join("labels.csv")).expect("labels");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("file,person_id,camera,"), "{csv}");
    assert_eq!(lines.len(), 3, "{csv}");
    let first = format!("{}_0.jpg,{},c,", t.id, t.id);
    assert!(lines[1].starts_with(&first), "{csv}");
    assert!(out.join(format!("{}_1.jpg", t.id)).is_file());
}
