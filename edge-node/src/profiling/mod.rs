//! What this node can do, measured at start-up for the master's plans.

use crate::config::EdgeConfig;
use crate::cpu;
use std::time::{Duration, Instant};
use vidar_protocol::messages::NodeCapacity;

/// What this node tells the master it can do: configured rates, or measured
/// here and now on a synthetic frame (detector: two warm-up runs, then the
/// lower quartile of [`DETECT_RUNS`] runs timed one by one, times the
/// detector threads; re-ID: three batches of four crops after one), and
/// what carrying a job's frame to or from another node costs in detector
/// frames (JPEG, the best of three runs).
///
/// Why a quartile of single runs: a node profiles while the rest of its site
/// starts (other nodes profiling, cameras encoding, on shared cores), and a
/// few runs land on a busy moment. With the mean of five, three identical
/// nodes starting together under one quota differed by a median 9.5 % (up
/// to 17 %) on the testbed, and plans moved with it between rounds; with the
/// quartile, by 3.5 % (docs/benchmarks.md, "Start-up profiles of identical
/// nodes"). The same over six re-ID batches spread them more, not less, so
/// re-ID keeps its three.
///
/// Under a CPU quota ([`cpu::quota_cores`]: a container's CPU limit), the
/// detector threads count for the quota at most, and, with one intra-op
/// thread (the work runs on the calling thread), frames are timed in this
/// thread's CPU time: the quota's bursts would otherwise land in a few
/// frames' wall-clock time at random.
pub fn profile(
    config: &EdgeConfig,
    detectors: &mut [Box<dyn vidar_detectors::Detector>],
    embedder: &mut dyn vidar_reid::Embedder,
) -> NodeCapacity {
    let s = &config.sharing;
    let (w, h) = (640u32, 480u32);
    let pixels = textured(w, h);
    let quota = cpu::quota_cores();
    let clock = Clock {
        cpu: quota.is_some() && config.models.runtime.intra_threads == 1,
    };
    if let Some(q) = quota {
        tracing::info!(
            cpu_quota_cores = q,
            timed_in = if clock.cpu {
                "thread CPU time"
            } else {
                "wall-clock time"
            },
            "this node runs under a CPU quota"
        );
    }
    // One detector frame's time on one thread: the unit of the JPEG costs,
    // and of `detect_fps` unless it is configured.
    let detect_s = detectors.first_mut().and_then(|d| {
        let frame: vidar_detectors::Picture<'_> =
            vidar_detectors::RgbFrame::new(w, h, (w * 3) as usize, &pixels)
                .ok()?
                .into();
        let times = timed_runs(clock, 2, DETECT_RUNS, || match d.detect(&[frame]) {
            Ok(_) => Some(()),
            Err(e) => {
                tracing::warn!(error = %e, "profiling the detector failed: no measured detector rate");
                None
            }
        })?;
        let _ = d.take_timings();
        let t = lower_quartile(times);
        tracing::debug!(detect_ms = t * 1e3, runs = DETECT_RUNS, "detector profiled");
        Some(t)
    });
    let detect_cores = (detectors.len().max(1) as f64).min(quota.unwrap_or(f64::INFINITY));
    let detect_fps = if s.detect_fps > 0.0 {
        s.detect_fps
    } else {
        detect_s.map_or(0.0, |t| detect_cores / t)
    };
    let measured = || {
        detect_s
            .and_then(|t| {
                let (enc, dec) = frame_carry_seconds(w, h, &pixels, clock)?;
                let mpx = f64::from(w * h) / 1e6;
                Some((enc / mpx / t, dec / mpx / t))
            })
            .unwrap_or((0.0, 0.0))
    };
    let (jpeg_encode_cost, jpeg_decode_cost) = match (s.jpeg_encode_cost, s.jpeg_decode_cost) {
        (e, d) if e > 0.0 && d > 0.0 => (e, d),
        (e, d) => {
            let (me, md) = measured();
            (if e > 0.0 { e } else { me }, if d > 0.0 { d } else { md })
        }
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
            let t0 = clock.now();
            for _ in 0..3 {
                embedder.embed_into(&crops, &mut out).ok()?;
            }
            let _ = embedder.take_timings();
            // One thread, which a quota below a core cannot keep busy.
            let share = quota.map_or(1.0, |q| q.min(1.0));
            Some(share * 12.0 / clock.seconds_since(t0))
        })()
        .unwrap_or(0.0)
    };
    NodeCapacity {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_mb: memory_mb(),
        detect_fps,
        reid_crops_per_s,
        reid_service: s.reid_service,
        jpeg_encode_cost,
        jpeg_decode_cost,
        detect_cores,
    }
}

/// Detector runs timed for the profile.
pub const DETECT_RUNS: usize = 12;

/// Seconds each of `runs` calls of `f` took on `clock`, after `warmup`
/// calls not timed; `None` when a call fails.
fn timed_runs(
    clock: Clock,
    warmup: usize,
    runs: usize,
    mut f: impl FnMut() -> Option<()>,
) -> Option<Vec<f64>> {
    for _ in 0..warmup {
        f()?;
    }
    (0..runs)
        .map(|_| {
            let t0 = clock.now();
            f()?;
            Some(clock.seconds_since(t0))
        })
        .collect()
}

/// The lower quartile of `times` (the smallest for fewer than four): what a
/// run costs when nothing else disturbs it, without trusting the single
/// luckiest run.
fn lower_quartile(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 4).copied().unwrap_or(f64::INFINITY)
}

/// A `w x h` RGB picture with edges, gradients and grain, so that JPEG
/// works on it about as hard as on a camera's frame (a flat one would
/// encode several times faster).
fn textured(w: u32, h: u32) -> Vec<u8> {
    let mut seed = 0x2545_f491u32;
    let mut out = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let grain = seed & 15;
            let block = if ((x / 40) + (y / 60)) % 2 == 0 {
                60
            } else {
                0
            };
            for c in 0..3u32 {
                let v = (x * (c + 1) / 5 + y / 3 + block + grain) % 256;
                out.push(v as u8);
            }
        }
    }
    out
}

/// Times work on the calling thread: wall-clock, or its CPU time.
#[derive(Debug, Clone, Copy)]
struct Clock {
    cpu: bool,
}

impl Clock {
    fn now(self) -> (Instant, Duration) {
        (
            Instant::now(),
            if self.cpu {
                cpu::thread_cpu()
            } else {
                Duration::ZERO
            },
        )
    }

    /// Seconds since `mark`, never below a microsecond.
    fn seconds_since(self, (wall, cpu_at): (Instant, Duration)) -> f64 {
        let d = if self.cpu {
            cpu::thread_cpu().saturating_sub(cpu_at)
        } else {
            wall.elapsed()
        };
        d.as_secs_f64().max(1e-6)
    }
}

/// Seconds to send one job frame to another node and to take one in, as a
/// job's flow does (`Item::to_wire`, `Item::from_wire`): the best of three.
fn frame_carry_seconds(w: u32, h: u32, pixels: &[u8], clock: Clock) -> Option<(f64, f64)> {
    use crate::analytics::stages::{Data, Item};
    let rgb = image::RgbImage::from_raw(w, h, pixels.to_vec())?;
    let item = Item {
        camera: vidar_protocol::CameraId::new("profile").ok()?,
        seq: 1,
        captured_ms: vidar_protocol::UnixMs(0),
        data: Data::Frame(rgb),
    };
    let job = vidar_protocol::JobId::new("profile").ok()?;
    let stage = vidar_protocol::StageId::new("profile").ok()?;
    let node = vidar_protocol::NodeId::new("profile").ok()?;
    let (mut enc, mut dec) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        let t0 = clock.now();
        let wire = item.to_wire(&job, &stage, &node).ok()?;
        enc = enc.min(clock.seconds_since(t0));
        let t0 = clock.now();
        Item::from_wire(wire).ok()?;
        dec = dec.min(clock.seconds_since(t0));
    }
    Some((enc, dec))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_disturbed_runs_do_not_move_the_profile() {
        // Twelve runs of 10-12 ms, four of them slowed by something else on
        // the cores: the profile stays at the undisturbed runs' cost, where
        // their mean would be 25 ms.
        let times = vec![
            0.010, 0.011, 0.050, 0.010, 0.060, 0.012, 0.010, 0.100, 0.011, 0.010, 0.045, 0.012,
        ];
        assert_eq!(lower_quartile(times), 0.010);
        let slow_half = vec![0.020, 0.010, 0.021, 0.011, 0.022, 0.012, 0.023, 0.013];
        assert_eq!(lower_quartile(slow_half), 0.012);
        assert_eq!(lower_quartile(vec![0.5]), 0.5);
        assert_eq!(lower_quartile(Vec::new()), f64::INFINITY);
    }

    #[test]
    fn every_run_is_timed_after_the_warm_up_and_a_failure_ends_the_profile() {
        let mut calls = 0;
        let times = timed_runs(Clock { cpu: false }, 2, 5, || {
            calls += 1;
            std::thread::sleep(Duration::from_millis(1));
            Some(())
        })
        .expect("timed");
        assert_eq!((calls, times.len()), (7, 5));
        assert!(times.iter().all(|&t| t >= 1e-3), "{times:?}");
        let mut left = 3;
        let failed = timed_runs(Clock { cpu: false }, 1, 5, || {
            left -= 1;
            (left > 0).then_some(())
        });
        assert!(failed.is_none());
    }

    #[test]
    fn a_frames_carry_is_timed_on_a_picture_jpeg_has_to_work_on() {
        let (w, h) = (640u32, 480u32);
        let busy = textured(w, h);
        assert_eq!(busy.len(), (w * h * 3) as usize);
        let jpeg = |px: Vec<u8>| {
            crate::media::encode_rgb(&px, w, h, 80)
                .expect("encodes")
                .len()
        };
        // A flat picture would time the encoder on almost nothing: the
        // textured one compresses like a camera frame (5-15x, not 100x+).
        let (flat, textured_len) = (jpeg(vec![96; busy.len()]), jpeg(busy.clone()));
        assert!(textured_len > 10 * flat, "{textured_len} vs {flat} bytes");
        assert!(busy.len() / textured_len < 20, "{textured_len} bytes");
        for cpu in [false, true] {
            let (enc, dec) = frame_carry_seconds(w, h, &busy, Clock { cpu }).expect("carries");
            eprintln!(
                "{w}x{h}, {}: encode {:.2} ms, decode {:.2} ms",
                if cpu { "thread CPU" } else { "wall clock" },
                enc * 1e3,
                dec * 1e3
            );
            // Timed, not the microsecond floor.
            assert!(
                enc.is_finite() && enc > 1e-5 && dec.is_finite() && dec > 1e-5,
                "{enc} {dec}"
            );
        }
    }
}
