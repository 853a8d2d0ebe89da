//! Builders shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;
use vidar_config::Config;

use vidar_protocol::{BBox, CameraId, IdentityId, NodeId, TrackId, UnixMs};
use vidar_store::{
    BoxPoint, CameraRecord, IdentityMerge, IdentityRecord, Record, Sighting, Snapshot, TrackRecord,
    Writer, WriterConfig, WriterTuning,
};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn node(s: &str) -> NodeId {
    NodeId::new(s).expect("valid node id")
}

pub fn cam(s: &str) -> CameraId {
    CameraId::new(s).expect("valid camera id")
}

pub fn db(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// A writer with a short batching delay, so tests do not wait on it.
pub fn writer(path: &Path, node_id: &str) -> Writer {
    let mut c = WriterConfig::new(path, node(node_id));
    c.tuning = WriterTuning {
        max_delay_ms: 5,
        ..WriterTuning::default()
    };
    c.build(&()).expect("writer opens")
}

pub fn writer_with(path: &Path, node_id: &str, max_batch: usize, max_delay: Duration) -> Writer {
    let mut c = WriterConfig::new(path, node(node_id));
    c.tuning.max_batch = max_batch;
    c.tuning.max_delay_ms = max_delay.as_millis() as u64;
    c.build(&()).expect("writer opens")
}

/// A sighting with `points` boxes spread evenly over `[first_ms, last_ms]`.
pub fn sighting(
    identity: u64,
    camera: &str,
    track: u64,
    first_ms: i64,
    last_ms: i64,
    points: usize,
) -> Sighting {
    let span = last_ms - first_ms;
    let path = (0..points)
        .map(|k| BoxPoint {
            t_ms: UnixMs(
                first_ms
                    + if points > 1 {
                        span * k as i64 / (points as i64 - 1)
                    } else {
                        0
                    },
            ),
            bbox: BBox {
                x: k as f32,
                y: 2.0 * k as f32,
                w: 40.5,
                h: 90.25,
            },
        })
        .collect();
    Sighting {
        identity: IdentityId(identity),
        camera: cam(camera),
        track: TrackId(track),
        first_ms: UnixMs(first_ms),
        last_ms: UnixMs(last_ms),
        path,
    }
}

pub fn camera(id: &str, name: &str, t: i64) -> Record {
    Record::Camera(CameraRecord {
        camera: cam(id),
        name: name.to_string(),
        recorded_ms: UnixMs(t),
    })
}

pub fn track(camera: &str, track: u64, first_ms: i64, last_ms: i64) -> Record {
    Record::Track(TrackRecord {
        camera: cam(camera),
        track: TrackId(track),
        first_ms: UnixMs(first_ms),
        last_ms: UnixMs(last_ms),
        identity: Some(IdentityId(u64::MAX - track)),
    })
}

pub fn identity(id: u64, camera: &str, t: i64, dim: usize) -> Record {
    Record::Identity(IdentityRecord {
        identity: IdentityId(id),
        camera: cam(camera),
        first_seen_ms: UnixMs(t),
        embedding: (0..dim).map(|k| (k as f32 * 0.01).sin()).collect(),
        model: "test-model".into(),
    })
}

pub fn snapshot(id: u64, camera: &str, t: i64) -> Record {
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
    jpeg.extend((0..200u32).map(|k| (k * 7 + t as u32) as u8));
    jpeg.extend([0xFF, 0xD9]);
    Record::Snapshot(Snapshot {
        identity: IdentityId(id),
        camera: cam(camera),
        t_ms: UnixMs(t),
        jpeg,
    })
}

pub fn merge(from: u64, into: u64, t: i64) -> Record {
    Record::Merge(IdentityMerge {
        from: IdentityId(from),
        into: IdentityId(into),
        decided_ms: UnixMs(t),
    })
}

/// One record of each kind, times around `t`.
pub fn one_of_each(t: i64) -> Vec<Record> {
    vec![
        camera("cam-a", "Lobby", t),
        track("cam-a", 7, t, t + 900),
        Record::Sighting(sighting(1 << 63 | 5, "cam-a", 7, t, t + 900, 10)),
        identity(1 << 63 | 5, "cam-a", t, 512),
        snapshot(1 << 63 | 5, "cam-a", t + 100),
        merge(4, 1 << 63 | 5, t + 1000),
    ]
}
