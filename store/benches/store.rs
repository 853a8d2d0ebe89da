//! Store benchmarks: records/s through the writer at batch sizes 1, 64 and 256,
//! and query latency over a database of 100k sightings.
//!
//! `cargo bench -p vidar-store --bench store`; numbers in `store/BENCHMARKS.md`.

#![allow(clippy::unwrap_used)] // a benchmark: a panic is the failure report

use std::time::Duration;
use vidar_config::Config;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use vidar_protocol::{BBox, CameraId, IdentityId, NodeId, TrackId, UnixMs};
use vidar_store::{
    BoxPoint, IdentityMerge, Reader, Record, Sighting, TimeRange, Writer, WriterConfig,
};

/// Records per measured iteration of the writer benchmark.
const RECORDS: usize = 1024;
/// Sightings in the query database.
const SIGHTINGS: u64 = 100_000;
/// Identities they are spread over (so ~50 sightings each).
const IDENTITIES: u64 = 2_000;

fn sighting(identity: u64, camera: u64, track: u64, first_ms: i64, points: usize) -> Record {
    Record::Sighting(Sighting {
        identity: IdentityId(identity),
        camera: CameraId::new(&format!("cam-{camera}")).unwrap(),
        track: TrackId(track),
        first_ms: UnixMs(first_ms),
        last_ms: UnixMs(first_ms + 2_000),
        path: (0..points)
            .map(|k| BoxPoint {
                t_ms: UnixMs(first_ms + 100 * k as i64),
                bbox: BBox {
                    x: k as f32,
                    y: 10.0,
                    w: 40.0,
                    h: 90.0,
                },
            })
            .collect(),
    })
}

fn writer(path: &std::path::Path, max_batch: usize) -> Writer {
    let mut c = WriterConfig::new(path, NodeId::new("edge-1").unwrap());
    c.tuning.max_batch = max_batch;
    c.tuning.max_delay_ms = 100;
    c.tuning.queue_capacity = 8192;
    c.build(&()).unwrap()
}

fn writer_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("writer");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    // A 10 s track at 2 fps: 20 boxes, ~400 bytes of path.
    let records: Vec<Record> = (0..RECORDS as u64)
        .map(|k| sighting(k % 50, k % 4, k, k as i64 * 10, 20))
        .collect();
    for max_batch in [1usize, 64, 256] {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(&dir.path().join("w.db"), max_batch);
        g.bench_function(format!("sightings_batch_{max_batch}"), |b| {
            b.iter_batched(
                || records.clone(),
                |batch| {
                    for r in batch {
                        w.submit(r).unwrap();
                    }
                    w.flush().unwrap()
                },
                BatchSize::LargeInput,
            )
        });
        w.shutdown().unwrap();
    }
    // Baseline: the same rows inserted with plain rusqlite, 256 per transaction, same
    // schema and pragmas, no channel or thread: what the writer's overhead is measured against.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw.db");
    writer(&path, 256).shutdown().unwrap();
    let mut conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = 4000;")
        .unwrap();
    let blob = vec![1u8; 401];
    let mut seq = 0i64;
    g.bench_function("raw_rusqlite_batch_256", |b| {
        b.iter(|| {
            for chunk in 0..RECORDS / 256 {
                let tx = conn.transaction().unwrap();
                {
                    let mut stmt = tx
                        .prepare_cached(
                            "INSERT INTO sightings (node_id, seq, identity_id, camera_id, track_id, first_ms, last_ms, path)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        )
                        .unwrap();
                    for k in 0..256i64 {
                        seq += 1;
                        let i = chunk as i64 * 256 + k;
                        stmt.execute(rusqlite::params!["edge-1", seq, i % 50, format!("cam-{}", i % 4), i, i * 10, i * 10 + 2000, blob])
                            .unwrap();
                    }
                }
                tx.commit().unwrap();
            }
        })
    });
    g.finish();
}

/// 100k sightings over 2000 identities on 10 cameras across ~28 h; every 10th
/// identity merged into the next one.
fn query_db(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("q.db");
    let w = writer(&path, 4096);
    for k in 0..SIGHTINGS {
        let identity = k % IDENTITIES;
        w.submit(sighting(identity, k % 10, k, k as i64 * 1_000, 10))
            .unwrap();
    }
    for i in (0..IDENTITIES).step_by(10) {
        w.submit(Record::Merge(IdentityMerge {
            from: IdentityId(i),
            into: IdentityId(i + 1),
            decided_ms: UnixMs(0),
        }))
        .unwrap();
    }
    w.shutdown().unwrap();
    path
}

fn queries(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = query_db(&dir);
    let r = Reader::open(&path).unwrap();
    let mut g = c.benchmark_group("query_100k_sightings");
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(5));

    let t = r
        .trajectory(IdentityId(1234), TimeRange::all(), 10_000)
        .unwrap();
    assert_eq!(t.len(), 50);
    g.bench_function("trajectory_50_sightings", |b| {
        b.iter(|| {
            r.trajectory(IdentityId(1234), TimeRange::all(), 10_000)
                .unwrap()
        })
    });
    let t = r
        .trajectory(IdentityId(1230), TimeRange::all(), 10_000)
        .unwrap();
    assert_eq!(t.len(), 100, "merged pair");
    g.bench_function("trajectory_merged_100_sightings", |b| {
        b.iter(|| {
            r.trajectory(IdentityId(1230), TimeRange::all(), 10_000)
                .unwrap()
        })
    });
    let hour = TimeRange::new(UnixMs(50_000_000), UnixMs(53_600_000));
    assert_eq!(
        r.sightings_by_camera(&CameraId::new("cam-3").unwrap(), hour, 10_000)
            .unwrap()
            .len(),
        360
    );
    g.bench_function("camera_one_hour_360_sightings", |b| {
        b.iter(|| {
            r.sightings_by_camera(&CameraId::new("cam-3").unwrap(), hour, 10_000)
                .unwrap()
        })
    });
    g.bench_function("identities_in_one_hour", |b| {
        b.iter(|| r.identities_in_range(hour, 10_000).unwrap())
    });
    let node = NodeId::new("edge-1").unwrap();
    g.bench_function("records_after_1000", |b| {
        b.iter(|| r.records_after(&node, 50_000, 1_000).unwrap())
    });
    g.finish();
}

criterion_group!(benches, writer_throughput, queries);
criterion_main!(benches);
