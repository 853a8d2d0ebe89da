//! The motion gate on frames drawn in memory: a static scene, a person
//! walking in, masks, noise, and bad settings.

use super::*;
use vidar_detectors::{I420Frame, RgbFrame, YuvToRgb};
use vidar_protocol::BBox;

const W: u32 = 640;
const H: u32 = 480;

/// A textured street (so a grey person differs from it), with `noise`
/// grey levels of per-pixel jitter drawn from `seed`, and dark people at
/// the given boxes `(x, y, w, h)`.
fn frame(people: &[(usize, usize, usize, usize)], noise: u8, seed: u64) -> Vec<u8> {
    let mut px = vec![0u8; (W * H * 3) as usize];
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    for y in 0..H as usize {
        for x in 0..W as usize {
            let base = 120 + ((x / 40 + y / 40) % 2) as i32 * 60;
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let j = if noise == 0 {
                0
            } else {
                ((s >> 33) % (2 * u64::from(noise) + 1)) as i32 - i32::from(noise)
            };
            let v = (base + j).clamp(0, 255) as u8;
            let at = (y * W as usize + x) * 3;
            px[at..at + 3].copy_from_slice(&[v, v, v]);
        }
    }
    for &(bx, by, bw, bh) in people {
        for y in by..(by + bh).min(H as usize) {
            for x in bx..(bx + bw).min(W as usize) {
                let at = (y * W as usize + x) * 3;
                px[at..at + 3].copy_from_slice(&[30, 40, 50]);
            }
        }
    }
    px
}

fn on() -> MotionConfig {
    MotionConfig {
        enabled: true,
        ..MotionConfig::default()
    }
}

fn judge(g: &mut MotionGate, px: &[u8], ms: i64) -> Verdict {
    judge_tracked(g, px, ms, &[])
}

fn judge_tracked(g: &mut MotionGate, px: &[u8], ms: i64, paths: &[Predicted]) -> Verdict {
    g.judge(&RgbFrame::packed(W, H, px).unwrap().into(), ms, paths)
}

/// A person's box as the tracker would hold it.
fn bbox(p: (usize, usize, usize, usize)) -> BBox {
    BBox {
        x: p.0 as f32,
        y: p.1 as f32,
        w: p.2 as f32,
        h: p.3 as f32,
    }
}

/// Verdicts over a person walking right `speed` px a frame from x = 100
/// (after a background frame), the tracker predicting them `predicted_dx`
/// px a frame from their last box, and `others` walking left 12 px a frame
/// from frame 3 on, untracked.
fn walk(
    track_skip: u32,
    speed: usize,
    predicted_dx: f32,
    others: &[(usize, usize, usize, usize)],
) -> Vec<Why> {
    walk_tracked(track_skip, speed, predicted_dx, others, (0.9, 10))
}

/// [`walk`] with the track's last detection score and hits.
fn walk_tracked(
    track_skip: u32,
    speed: usize,
    predicted_dx: f32,
    others: &[(usize, usize, usize, usize)],
    (score, hits): (f32, u32),
) -> Vec<Why> {
    let mut g = MotionConfig { track_skip, ..on() }.gate("c1").unwrap();
    judge(&mut g, &frame(&[], 2, 0), 0);
    let at = |k: usize| (100 + speed * k, 150, 40, 120);
    let mut verdicts = Vec::new();
    for k in 1..=8usize {
        let mut people = vec![at(k)];
        if k >= 3 {
            people.extend(others.iter().map(|&(x, y, w, h)| (x - 12 * k, y, w, h)));
        }
        let last = bbox(at(k - 1));
        let predicted = BBox {
            x: last.x + predicted_dx,
            ..last
        };
        // The first frame with the person has no track yet.
        let paths = if k == 1 {
            Vec::new()
        } else {
            vec![Predicted {
                id: vidar_protocol::TrackId(1),
                last,
                now: predicted,
                score,
                hits,
            }]
        };
        let v = judge_tracked(&mut g, &frame(&people, 2, k as u64), k as i64 * 100, &paths);
        verdicts.push(v.why);
    }
    verdicts
}

/// A grey RGB frame as a decoder would hand it over: I420, limited range.
fn i420_of(px: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = px
        .chunks_exact(3)
        .map(|p| (16 + u32::from(p[0]) * 219 / 255) as u8)
        .collect();
    out.resize(out.len() + 2 * (W as usize / 2) * (H as usize / 2), 128);
    out
}

fn judge_i420(g: &mut MotionGate, px: &[u8], ms: i64) -> Verdict {
    let y = (W * H) as usize;
    let c = y / 4;
    let w = W as usize;
    let f = I420Frame::from_buffer(
        W,
        H,
        px,
        [0, y, y + c],
        [w, w / 2, w / 2],
        YuvToRgb::default(),
    )
    .unwrap();
    g.judge(&f.into(), ms, &[])
}

#[test]
fn i420_frames_are_judged_as_their_rgb_is() {
    // The same scene as RGB and as I420, a person walking in: the same
    // verdicts, frame by frame.
    let (mut rgb, mut yuv) = (on().gate("c1").unwrap(), on().gate("c2").unwrap());
    for i in 0..12u64 {
        let people: Vec<_> = if i < 6 {
            Vec::new()
        } else {
            vec![(100 + 20 * i as usize, 120, 60, 160)]
        };
        let px = frame(&people, 3, i);
        let ms = i as i64 * 100;
        let (a, b) = (
            judge(&mut rgb, &px, ms),
            judge_i420(&mut yuv, &i420_of(&px), ms),
        );
        assert_eq!((a.why, a.regions), (b.why, b.regions), "frame {i}");
        assert_eq!(
            a.why,
            if i < 6 {
                if i == 0 {
                    Why::Start
                } else {
                    Why::Still
                }
            } else {
                Why::Motion
            },
            "frame {i}"
        );
    }
}

#[test]
fn a_static_scene_calls_the_detector_only_periodically() {
    let mut g = on().gate("c1").unwrap();
    let mut detected = Vec::new();
    // 10 fps for 5 s, sensor noise of +-4 grey levels.
    for i in 0..50 {
        let v = judge(&mut g, &frame(&[], 4, i), i as i64 * 100);
        if i == 0 {
            assert_eq!(v.why, Why::Start);
        }
        if v.detect() {
            detected.push((i, v.why));
        }
        assert!(v.share < 0.01, "frame {i}: share {}", v.share);
    }
    // Frame 0 (the background), then every 1000 ms.
    assert_eq!(
        detected,
        vec![
            (0, Why::Start),
            (10, Why::Periodic),
            (20, Why::Periodic),
            (30, Why::Periodic),
            (40, Why::Periodic)
        ]
    );
}

#[test]
fn a_person_walking_in_is_detected_on_the_first_frame_they_show() {
    let mut g = on().gate("c1").unwrap();
    for i in 0..5 {
        assert!(
            !judge(&mut g, &frame(&[], 3, i), 100 + i as i64 * 100).detect() || i == 0,
            "frame {i}"
        );
    }
    // A 24 x 64 person steps in from the left edge, 12 px a frame.
    for step in 0..10usize {
        let x = step * 12;
        let v = judge(
            &mut g,
            &frame(&[(x, 200, 24, 64)], 3, 10 + step as u64),
            600 + step as i64 * 100,
        );
        assert_eq!(v.why, Why::Motion, "step {step}: {v:?}");
        assert!(v.regions >= 1 && v.share > 0.0);
    }
}

#[test]
fn motion_under_a_mask_is_ignored_and_elsewhere_is_not() {
    let mut cfg = on();
    // The left quarter of the frame: a tree in the wind.
    cfg.masks.insert("c1".into(), vec![[0.0, 0.0, 0.25, 1.0]]);
    let mut g = cfg.gate("c1").unwrap();
    let mut other = cfg.gate("c2").unwrap();
    judge(&mut g, &frame(&[], 0, 0), 0);
    judge(&mut other, &frame(&[], 0, 0), 0);
    for step in 1..6usize {
        let px = frame(&[(20 + step * 10, 100, 60, 120)], 0, 0);
        let v = judge(&mut g, &px, step as i64 * 100);
        assert_eq!(v.why, Why::Still, "masked step {step}: {v:?}");
        // The mask is c1's: c2 sees the same motion.
        assert_eq!(judge(&mut other, &px, step as i64 * 100).why, Why::Motion);
    }
    // The same shape right of the mask moves.
    let v = judge(&mut g, &frame(&[(400, 100, 60, 120)], 0, 0), 600);
    assert_eq!(v.why, Why::Motion, "{v:?}");
}

#[test]
fn one_noisy_cell_is_not_motion() {
    let mut g = on().gate("c1").unwrap();
    judge(&mut g, &frame(&[], 0, 0), 0);
    // A 2 x 2 pixel speck on one sample of one cell (cells of 6 px here,
    // sampled at 1 and 4): that cell moves, alone.
    let v = judge(&mut g, &frame(&[(322, 244, 2, 2)], 0, 0), 100);
    assert_eq!((v.why, v.share * 8480.0), (Why::Still, 1.0), "{v:?}");
    // Two people are two regions.
    let v = judge(
        &mut g,
        &frame(&[(50, 50, 30, 80), (400, 300, 30, 80)], 0, 0),
        200,
    );
    assert_eq!((v.why, v.regions), (Why::Motion, 2), "{v:?}");
}

#[test]
fn a_new_resolution_starts_over_and_off_means_no_gate() {
    let mut g = on().gate("c1").unwrap();
    judge(&mut g, &frame(&[], 0, 0), 0);
    assert_eq!(judge(&mut g, &frame(&[], 0, 0), 100).why, Why::Still);
    let small = vec![128u8; 320 * 240 * 3];
    let small = RgbFrame::packed(320, 240, &small).unwrap().into();
    assert_eq!(g.judge(&small, 200, &[]).why, Why::Start);
    let off = MotionConfig {
        enabled: false,
        ..MotionConfig::default()
    };
    assert!(off.gate("c1").is_none());
}

#[test]
fn bad_settings_are_named() {
    let mut cfg = on();
    cfg.grid_width = 2;
    cfg.threshold = 0;
    cfg.min_cells = 0;
    cfg.learn_rate = 1.5;
    cfg.full_every_ms = 10;
    cfg.track_skip = MAX_TRACK_SKIP + 1;
    cfg.masks.insert("door".into(), vec![[0.5, 0.0, 0.2, 1.0]]);
    let keys: Vec<String> = cfg.problems().iter().map(|p| p.key.clone()).collect();
    for want in [
        "grid_width",
        "threshold",
        "min_cells",
        "learn_rate",
        "full_every_ms",
        "track_skip",
        "masks.door[0]",
    ] {
        assert!(keys.iter().any(|k| k == want), "{want} not in {keys:?}");
    }
    assert!(on().problems().is_empty());
}

#[test]
fn motion_along_tracked_paths_is_skipped_at_most_track_skip_frames_in_a_row() {
    use Why::{Motion as M, Tracked as T};
    assert_eq!(walk(1, 12, 12.0, &[]), vec![M, T, M, T, M, T, M, T]);
    assert_eq!(walk(2, 12, 12.0, &[]), vec![M, T, T, M, T, T, M, T]);
    assert_eq!(walk(0, 12, 12.0, &[]), vec![M; 8]);
    // Without a track the same walk is motion on every frame.
    let mut g = on().gate("c1").unwrap();
    judge(&mut g, &frame(&[], 2, 0), 0);
    for k in 1..=4usize {
        let v = judge(
            &mut g,
            &frame(&[(100 + 12 * k, 150, 40, 120)], 2, k as u64),
            k as i64 * 100,
        );
        assert_eq!((v.why, v.untracked), (M, v.regions), "frame {k}: {v:?}");
    }
}

#[test]
fn a_person_coming_in_beside_a_tracked_one_is_detected_at_once() {
    use Why::{Motion as M, Tracked as T};
    // From frame 3 a second, untracked person walks in at the right.
    assert_eq!(
        walk(2, 12, 12.0, &[(560, 200, 30, 90)]),
        vec![M, T, M, M, M, M, M, M]
    );
}

#[test]
fn a_tracked_person_off_their_predicted_path_is_detected() {
    // They walk right 30 px a frame where the tracker expects them to walk
    // left: their leading edge lies off the predicted span.
    assert_eq!(walk(2, 30, -30.0, &[]), vec![Why::Motion; 8]);
    // Predicted right, they pass.
    assert_eq!(walk(2, 30, 30.0, &[])[1], Why::Tracked);
}

#[test]
fn only_confident_established_tracks_explain_motion() {
    use Why::{Motion as M, Tracked as T};
    assert_eq!(walk_tracked(1, 12, 12.0, &[], (0.7, 3))[..4], [M, T, M, T]);
    // A detection near the threshold, or a track two frames old: detected.
    assert_eq!(walk_tracked(1, 12, 12.0, &[], (0.6, 10)), vec![M; 8]);
    assert_eq!(walk_tracked(1, 12, 12.0, &[], (0.9, 2)), vec![M; 8]);
}
