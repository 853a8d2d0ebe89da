//! Record sync throughput: an edge database pre-filled with records, a real
//! `vidar-edge` serving it (cluster mode, no cameras) and a real
//! `vidar-master` pulling it: records/s from the first to the last record
//! committed in the global database.

use std::path::Path;
use std::time::{Duration, Instant};
use vidar_config::Config;

use anyhow::Result;
use vidar_protocol::record::{BoxPoint, IdentityRecord, Record, Sighting};
use vidar_protocol::{BBox, CameraId, IdentityId, NodeId, TrackId, UnixMs};

use crate::harness::{http_get, metric, wait_for, Site};

/// Syncs `records` records from one edge and measures the rate.
pub fn throughput(
    records: usize,
    dir: &Path,
    rows: &mut Vec<(String, String, String)>,
) -> Result<()> {
    let (rate, secs) = measure(records, dir, false)?;
    rows.push((
        "sync throughput, records/s".into(),
        format!("{rate:.0}"),
        format!(
            "{} records (90 % sightings with 20-box paths, 10 % identities with 512-d embeddings) from a real vidar-edge to a real vidar-master, batches of 5000; {:.1} s from first to last commit",
            records, secs
        ),
    ));
    eprintln!("sync done: {rate:.0} records/s");
    Ok(())
}

/// One run: records/s and the seconds from the first to the last commit;
/// `secure`: the master and the edge over mutual TLS with a fresh site CA.
pub fn measure(records: usize, dir: &Path, secure: bool) -> Result<(f64, f64)> {
    let node = NodeId::new("bench-edge")?;
    let db = dir.join("bench-edge.db");
    {
        let writer = vidar_store::WriterConfig::new(&db, node.clone()).build(&())?;
        let h = writer.handle();
        let camera = CameraId::new("cam")?;
        let t0 = 1_700_000_000_000i64;
        for i in 0..records {
            let record = if i % 10 == 0 {
                Record::Identity(IdentityRecord {
                    identity: IdentityId(i as u64),
                    camera: camera.clone(),
                    first_seen_ms: UnixMs(t0 + i as i64 * 100),
                    embedding: (0..512).map(|k| ((k + i) % 7) as f32 / 7.0).collect(),
                    model: "bench-model".into(),
                })
            } else {
                Record::Sighting(Sighting {
                    identity: IdentityId((i / 10 * 10) as u64),
                    camera: camera.clone(),
                    track: TrackId(i as u64),
                    first_ms: UnixMs(t0 + i as i64 * 100),
                    last_ms: UnixMs(t0 + i as i64 * 100 + 2000),
                    path: (0..20)
                        .map(|k| BoxPoint {
                            t_ms: UnixMs(t0 + i as i64 * 100 + k * 100),
                            bbox: BBox {
                                x: 10.0 + k as f32,
                                y: 20.0,
                                w: 40.0,
                                h: 100.0,
                            },
                        })
                        .collect(),
                })
            };
            h.submit(record)?;
        }
        h.flush()?;
        writer.shutdown()?;
    }
    eprintln!("edge database pre-filled with {} records", records);
    let mut site = if secure {
        Site::secure(dir, &[node.as_str()])?
    } else {
        Site::new()?
    };
    let _master = site.master(dir, &[], 0.5)?;
    let t_start = Instant::now();
    let _edge = site.edge(dir, node.as_str(), &db, 0)?;
    let total = records as f64;
    let mut first: Option<Instant> = None;
    let done = wait_for("every record synced", Duration::from_secs(300), || {
        let m = http_get(site.http, "/metrics")?;
        let n = metric(&m, "vidar_master_sync_records_total")?;
        if n > 0.0 && first.is_none() {
            first = Some(Instant::now());
        }
        (n >= total).then(Instant::now)
    })?;
    let first = first.unwrap_or(t_start);
    let secs = done.duration_since(first).as_secs_f64().max(1e-3);
    Ok((total / secs, secs))
}
