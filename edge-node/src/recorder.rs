//! The recorder: turns what analysis found into records for the local
//! database (one writer thread, batched). Analysis never waits on SQLite.

use crate::metrics::NodeMetrics;
use anyhow::Result;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use vidar_detectors::RgbFrame;
use vidar_protocol::{BBox, CameraId, IdentityId, NodeId, TrackId};
use vidar_store::{
    BoxPoint, CameraRecord, IdentityRecord, Record, Sighting, Snapshot, TrackRecord, Writer,
    WriterConfig, WriterHandle,
};

/// A finished (or split) sighting of one track.
#[derive(Debug, Clone)]
pub struct SightingOut {
    /// Camera.
    pub camera: CameraId,
    /// Track id within the camera's tracker.
    pub track: u64,
    /// Identity assigned by re-ID, if any.
    pub identity: Option<IdentityId>,
    /// First time, ms since the Unix epoch.
    pub first_ms: u64,
    /// Last time, ms since the Unix epoch.
    pub last_ms: u64,
    /// Box path: (time ms, box).
    pub path: Vec<(u64, BBox)>,
}

/// Writes records through the store's single writer thread (batched
/// transactions). Submitting blocks only when the writer's bounded queue is
/// full, i.e. when the disk cannot keep up: then analysis slows down and the
/// ingest queues drop frames (counted), rather than records being lost.
pub struct Recorder {
    handle: WriterHandle,
    /// The owner of the writer thread (None in shared copies).
    writer: Option<Writer>,
    metrics: Arc<NodeMetrics>,
}

impl Recorder {
    /// Opens (creating or migrating) the database at `path` for `node`.
    pub fn open(path: &Path, node: &NodeId, metrics: Arc<NodeMetrics>) -> Result<Recorder> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let writer = WriterConfig::new(path, node.clone()).build()?;
        Ok(Recorder {
            handle: writer.handle(),
            writer: Some(writer),
            metrics,
        })
    }

    /// A handle on the writer, for its statistics.
    pub fn writer(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Another recorder on the same writer, for another thread. Closing it
    /// does not stop the writer; closing the original does.
    pub fn share(&self) -> Recorder {
        Recorder {
            handle: self.handle.clone(),
            writer: None,
            metrics: Arc::clone(&self.metrics),
        }
    }

    fn submit(&self, record: Record) {
        let kind = record.kind();
        match self.handle.submit(record) {
            Ok(()) => {
                self.metrics.records_written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(kind, error = %e, "record not written");
            }
        }
    }

    /// Records that `camera` is served by this node.
    pub fn camera(&self, camera: &CameraId, name: &str) {
        self.submit(Record::Camera(CameraRecord {
            camera: camera.clone(),
            name: name.chars().take(200).collect(),
            recorded_ms: now_ms(),
        }));
    }

    /// Records a sighting; one without an identity (re-ID never ran, e.g. a
    /// box too small to embed) is kept as a track record only.
    pub fn sighting(&self, s: SightingOut) {
        let track = TrackId(s.track);
        let (first_ms, last_ms) = (s.first_ms as i64, s.last_ms.max(s.first_ms) as i64);
        match s.identity {
            Some(identity) => self.submit(Record::Sighting(Sighting {
                identity,
                camera: s.camera,
                track,
                first_ms,
                last_ms,
                path: s
                    .path
                    .into_iter()
                    .map(|(t, bbox)| BoxPoint {
                        t_ms: t as i64,
                        bbox,
                    })
                    .collect(),
            })),
            None => self.submit(Record::Track(TrackRecord {
                camera: s.camera,
                track,
                first_ms,
                last_ms,
                identity: None,
            })),
        }
    }

    /// Records a new identity with its embedding.
    pub fn identity(
        &self,
        id: IdentityId,
        camera: &CameraId,
        ms: u64,
        embedding: &[f32],
        model: &str,
    ) {
        self.submit(Record::Identity(IdentityRecord {
            identity: id,
            camera: camera.clone(),
            first_seen_ms: ms as i64,
            embedding: embedding.to_vec(),
            model: model.to_owned(),
        }));
    }

    /// Records a snapshot (JPEG) of an identity.
    pub fn snapshot(&self, id: IdentityId, camera: &CameraId, ms: u64, jpeg: Vec<u8>) {
        self.submit(Record::Snapshot(Snapshot {
            identity: id,
            camera: camera.clone(),
            t_ms: ms as i64,
            jpeg,
        }));
    }

    /// Commits everything submitted and stops the writer.
    pub fn close(self) {
        let Some(writer) = self.writer else { return };
        match writer.shutdown() {
            Ok(stats) => tracing::info!(
                records = stats.records,
                last_seq = stats.last_seq,
                "database flushed"
            ),
            Err(e) => tracing::error!(error = %e, "flushing the database failed"),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Longest side of a snapshot, pixels.
pub const SNAPSHOT_MAX_SIDE: u32 = 128;

/// A small JPEG of the box `b` in `frame` (longest side ≤ [`SNAPSHOT_MAX_SIDE`]).
/// The whole person with a margin (10 % of the width on each side, 5 % of
/// the height above and below), so no head or feet are cut off.
pub fn snapshot_jpeg(frame: &RgbFrame<'_>, b: &BBox) -> Option<Vec<u8>> {
    let (mx, my) = (b.w * 0.10, b.h * 0.05);
    let wide = BBox {
        x: b.x - mx,
        y: b.y - my,
        w: b.w + 2.0 * mx,
        h: b.h + 2.0 * my,
    };
    crop_jpeg(frame, &wide, SNAPSHOT_MAX_SIDE, 85)
}

/// A JPEG of the box `b` in `frame`, scaled down so its longest side is at
/// most `max_side`, at `quality` (1-100).
pub fn crop_jpeg(frame: &RgbFrame<'_>, b: &BBox, max_side: u32, quality: u8) -> Option<Vec<u8>> {
    let c = b.clip(frame.width() as f32, frame.height() as f32);
    let (x0, y0) = (c.x as usize, c.y as usize);
    let (w, h) = (c.w as usize, c.h as usize);
    if w < 2 || h < 2 {
        return None;
    }
    let mut crop = Vec::with_capacity(w * h * 3);
    let data = frame.data();
    for y in y0..y0 + h {
        let row = data.get(y * frame.stride() + x0 * 3..y * frame.stride() + (x0 + w) * 3)?;
        crop.extend_from_slice(row);
    }
    let img = image::RgbImage::from_raw(w as u32, h as u32, crop)?;
    let scale = (max_side as f32 / w.max(h) as f32).min(1.0);
    let (tw, th) = (
        ((w as f32 * scale) as u32).max(1),
        ((h as f32 * scale) as u32).max(1),
    );
    let small = image::imageops::resize(&img, tw, th, image::imageops::FilterType::Triangle);
    let mut out = std::io::Cursor::new(Vec::new());
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    small.write_with_encoder(enc).ok()?;
    Some(out.into_inner())
}
