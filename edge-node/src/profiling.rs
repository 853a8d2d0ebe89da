//! What this node can do, measured at start-up for the master's plans.

use crate::config::EdgeConfig;
use std::time::Instant;
use vidar_protocol::messages::NodeCapacity;

/// What this node tells the master it can do: configured rates, or measured
/// here and now on a synthetic frame (detector: one warm-up and five timed
/// runs on each detector thread's model, times the threads; re-ID: batches of
/// four crops).
pub fn profile(
    config: &EdgeConfig,
    detectors: &mut [Box<dyn vidar_detectors::Detector>],
    embedder: &mut dyn vidar_reid::Embedder,
) -> NodeCapacity {
    let s = &config.sharing;
    let (w, h) = (640u32, 480u32);
    let pixels = vec![96u8; (w * h * 3) as usize];
    let detect_fps = if s.detect_fps > 0.0 {
        s.detect_fps
    } else {
        let threads = detectors.len().max(1) as f64;
        detectors
            .first_mut()
            .and_then(|d| {
                let frame: vidar_detectors::Picture<'_> =
                    vidar_detectors::RgbFrame::new(w, h, (w * 3) as usize, &pixels)
                        .ok()?
                        .into();
                d.detect(&[frame]).ok()?;
                let t0 = Instant::now();
                for _ in 0..5 {
                    d.detect(&[frame]).ok()?;
                }
                let _ = d.take_timings();
                Some(threads * 5.0 / t0.elapsed().as_secs_f64().max(1e-6))
            })
            .unwrap_or(0.0)
    };
    let reid_crops_per_s = if s.reid_crops_per_s > 0.0 {
        s.reid_crops_per_s
    } else {
        (|| {
            let frame = vidar_detectors::RgbFrame::new(w, h, (w * 3) as usize, &pixels).ok()?;
            let bbox = vidar_protocol::BBox {
                x: 100.0,
                y: 100.0,
                w: 64.0,
                h: 160.0,
            };
            let crops = vec![
                vidar_reid::Crop {
                    frame: frame.into(),
                    bbox
                };
                4
            ];
            let mut out = Vec::new();
            embedder.embed_into(&crops, &mut out).ok()?;
            let t0 = Instant::now();
            for _ in 0..3 {
                embedder.embed_into(&crops, &mut out).ok()?;
            }
            let _ = embedder.take_timings();
            Some(12.0 / t0.elapsed().as_secs_f64().max(1e-6))
        })()
        .unwrap_or(0.0)
    };
    NodeCapacity {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_mb: memory_mb(),
        detect_fps,
        reid_crops_per_s,
        reid_service: s.reid_service,
    }
}

/// Total memory of the machine, MiB (0 when unknown).
fn memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}
