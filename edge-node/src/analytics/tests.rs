use super::*;

fn frame(camera: &str, ms: i64) -> Frame {
    Frame::from_rgb(
        CameraId::new(camera).expect("id"),
        0,
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64),
        4,
        2,
        vec![7u8; 4 * 2 * 3],
    )
    .expect("frame")
}

#[test]
fn a_source_takes_a_frame_at_most_every_one_over_its_rate_and_never_blocks() {
    let hub = Hub::default();
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    let job = JobId::new("j").expect("id");
    hub.tap(&job, &CameraId::new("cam").expect("id"), 2.0, tx);
    // 10 fps for 1 s: at 2 items/s, the frames at 0 and 500 ms are taken.
    for k in 0..10 {
        hub.offer(&frame("cam", 1_000 + k * 100));
        hub.offer(&frame("other", 1_000 + k * 100));
    }
    let got: Vec<i64> = rx
        .try_iter()
        .map(|i| match i {
            Input::Frame(f) => f.captured_ms,
            Input::Remote(_) | Input::Shares(_) => -1,
        })
        .collect();
    assert_eq!(got, vec![1_000, 1_500]);
    // A full queue drops (and counts), it does not block the analysis loop.
    for k in 0..6 {
        hub.offer(&frame("cam", 3_000 + k * 500));
    }
    assert_eq!(hub.frames_dropped.load(Ordering::Relaxed), 4);
    hub.untap(&job);
    assert_eq!(rx.try_iter().count(), 2);
    // 4 a second from a 10 fps camera: 4 a second on average, not one
    // every 300 ms (3.3 a second).
    let (tx, rx) = std::sync::mpsc::sync_channel(100);
    hub.tap(&job, &CameraId::new("cam").expect("id"), 4.0, tx);
    for k in 0..100 {
        hub.offer(&frame("cam", 20_000 + k * 100));
    }
    assert_eq!(rx.try_iter().count(), 40);
    hub.untap(&job);
    hub.offer(&frame("cam", 90_000));
    assert_eq!(rx.try_iter().count(), 0);
}

#[test]
fn a_tracker_stage_starts_afresh_when_its_source_restarts() {
    use super::stages::{Data, Exec, Item};
    use vidar_protocol::messages::{DataKind, JobCrop};
    let mut exec = Exec::Track(
        std::collections::HashMap::new(),
        vidar_tracker::TrackerConfig::default(),
    );
    let (job, stage) = (
        JobId::new("j").expect("id"),
        vidar_protocol::StageId::new("trk").expect("id"),
    );
    let me = vidar_protocol::NodeId::new("edge-1").expect("id");
    let item = |seq: u64| Item {
        camera: CameraId::new("cam").expect("id"),
        seq,
        captured_ms: vidar_protocol::UnixMs(seq as i64 * 250),
        data: Data::Crops(vec![JobCrop {
            bbox: vidar_protocol::BBox {
                x: 10.0,
                y: 10.0,
                w: 40.0,
                h: 90.0,
            },
            score: 0.9,
            track: None,
            width: 40,
            height: 90,
            jpeg: Vec::new(),
        }]),
    };
    for seq in 1..=300 {
        exec.run(item(seq), Some(DataKind::Crops), &job, &stage, &me)
            .expect("in order");
    }
    // The source's worker restarted: its frames count from 1 again. They
    // are tracked (a new tracker), not refused one by one.
    for seq in 1..=5 {
        let out = exec
            .run(item(seq), Some(DataKind::Crops), &job, &stage, &me)
            .expect("a restarted source is a new stream");
        assert!(out.is_some());
    }
}
