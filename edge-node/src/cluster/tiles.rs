//! Encodes and publishes live tiles for the master's UI.

use super::shared::Shared;
use crate::media::TILE_MAX_SIDE;
use crate::telemetry::StatusBoard;
use std::collections::HashMap;
use std::time::Instant;
use vidar_protocol::{CameraId, StreamState};

/// Encodes and publishes live tiles until the analysis side hangs up.
pub(super) fn publish_tiles(
    shared: &Shared,
    board: &StatusBoard,
    rx: std::sync::mpsc::Receiver<crate::media::TileFrame>,
) {
    use vidar_protocol::messages::{CameraTile, TileBox};
    // camera -> (frames decoded, when, frame rate then), for its frame rate.
    let mut rates: HashMap<CameraId, (u64, Instant, f64)> = HashMap::new();
    while let Ok(t) = rx.recv() {
        let f = &t.frame;
        let Ok(rgb) = crate::media::picture(f) else {
            continue;
        };
        let full = vidar_protocol::BBox {
            x: 0.0,
            y: 0.0,
            w: f.width as f32,
            h: f.height as f32,
        };
        let Some(jpeg) = crate::media::crop_jpeg(rgb, &full, TILE_MAX_SIDE, 70) else {
            continue;
        };
        // The tile's size is its JPEG's (the master checks it); boxes are in
        // its pixels.
        let Some((tw, th)) = vidar_protocol::messages::jpeg_size(&jpeg) else {
            continue;
        };
        let (sx, sy) = (tw as f32 / f.width as f32, th as f32 / f.height as f32);
        let status = board
            .snapshot()
            .into_iter()
            .find(|(c, _)| c == f.camera.as_str())
            .map(|(_, s)| s);
        // Over at least 5 s: the stream counters are published once a second,
        // so a shorter window would jitter between one and two updates.
        let frames = status.as_ref().map_or(0, |s| s.counters.frames);
        let now = Instant::now();
        let (before, at, last_fps) = rates.get(&f.camera).copied().unwrap_or((frames, now, 0.0));
        let elapsed = now.saturating_duration_since(at).as_secs_f64();
        let fps = if elapsed >= 5.0 {
            let fps = frames.saturating_sub(before) as f64 / elapsed;
            rates.insert(f.camera.clone(), (frames, now, fps));
            fps
        } else {
            rates.entry(f.camera.clone()).or_insert((frames, now, 0.0));
            last_fps
        };
        let tile = CameraTile {
            camera: f.camera.clone(),
            node: shared.node.clone(),
            captured_ms: f.captured_ms(),
            state: status.as_ref().map_or(StreamState::Streaming, |s| s.state),
            fps,
            dropped: status.as_ref().map_or(0, |s| s.counters.dropped),
            width: tw,
            height: th,
            jpeg,
            boxes: t
                .boxes
                .iter()
                .map(|(b, track, identity)| TileBox {
                    bbox: vidar_protocol::BBox {
                        x: b.x * sx,
                        y: b.y * sy,
                        w: b.w * sx,
                        h: b.h * sy,
                    },
                    track: *track,
                    identity: *identity,
                })
                .collect(),
        };
        drop(t);
        let key = shared.link.keys().tile(&shared.node, &tile.camera);
        if let Err(e) = shared.link.put(&key, &tile) {
            tracing::debug!(error = %e, "tile not published");
        }
    }
}
