//! Who walks where, and when: the seeded schedule and paths of a composite
//! scene, for every camera of the chain. Pure arithmetic on the spec, the
//! frame size and each image's aspect ratio; the same for every mount.
//!
//! Each walk crosses the frame from one side to the other along a slightly
//! slanted feet line inside the walking band, at a constant 1.0..1.5 m/s
//! converted to pixels with the person's current height (1.7 m tall), so
//! people farther up the frame are smaller and slower on screen.

use super::CompositeSpec;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Height of a person in metres, for converting walking speed to pixels.
const PERSON_HEIGHT_M: f32 = 1.7;
/// First arrival at camera 0, seconds after the start.
const FIRST_ARRIVAL_S: f64 = 0.5;

/// Where a person is in one frame: centre x and feet y in pixels, height in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Centre x, pixels.
    pub cx: f32,
    /// Feet y (bottom of the image), pixels.
    pub feet: f32,
    /// Height of the pasted image, pixels.
    pub h: f32,
}

/// One crossing of one camera by one person.
#[derive(Debug, Clone, PartialEq)]
pub struct Walk {
    /// Index of the person in the scene's people.
    pub person: usize,
    /// Scene camera.
    pub camera: u32,
    /// Frame (within the period) of the first pose.
    pub start_frame: u64,
    /// One pose per frame from `start_frame`.
    pub poses: Vec<Pose>,
}

impl Walk {
    /// The frame after the last pose.
    pub fn end_frame(&self) -> u64 {
        self.start_frame + self.poses.len() as u64
    }
    /// The pose at frame `n` of the period, if the walk is under way.
    pub fn pose_at(&self, n: u64) -> Option<Pose> {
        let i = n.checked_sub(self.start_frame)?;
        self.poses.get(usize::try_from(i).ok()?).copied()
    }
}

/// The schedule of every camera of a scene.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// All walks, by person then camera.
    pub walks: Vec<Walk>,
    /// The schedule repeats every this many frames.
    pub period_frames: u64,
}

/// Frame geometry the paths are drawn in.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    width: f32,
    top: f32,
    bottom: f32,
    far_h: f32,
    near_h: f32,
}

impl Geometry {
    fn height_at(&self, feet: f32) -> f32 {
        let t = ((feet - self.top) / (self.bottom - self.top)).clamp(0.0, 1.0);
        self.far_h + (self.near_h - self.far_h) * t
    }
}

impl Plan {
    /// Plans the scene: `aspects[p][k]` is width/height of person `p`'s image
    /// on camera `k`; `(width, height)` the frame size.
    pub fn new(spec: &CompositeSpec, aspects: &[Vec<f32>], width: u32, height: u32) -> Plan {
        let (far_h, near_h) = spec.heights_px(height);
        let g = Geometry {
            width: width as f32,
            top: spec.top * height as f32,
            bottom: spec.bottom * height as f32,
            far_h,
            near_h,
        };
        let fps = f64::from(spec.fps);
        let mut times = ChaCha8Rng::seed_from_u64(spec.seed ^ 0x7133_0000_0000_0001);
        let mut walks = Vec::new();
        let mut arrival = FIRST_ARRIVAL_S;
        for (p, person_aspects) in aspects.iter().enumerate() {
            if p > 0 {
                arrival += spec.gap_s * times.gen_range(0.3..1.7);
            }
            let mut enter = arrival;
            for (k, aspect) in person_aspects
                .iter()
                .enumerate()
                .take(spec.cameras as usize)
            {
                if k > 0 {
                    if !times.gen_bool(spec.onward) {
                        break;
                    }
                    enter += spec.transit_s * times.gen_range(0.7..1.3);
                }
                let mut rng = ChaCha8Rng::seed_from_u64(
                    spec.seed
                        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        .wrapping_add(((p as u64) << 8) | k as u64),
                );
                let start_frame = (enter * fps).round() as u64;
                let poses = walk_poses(&g, *aspect, spec.fps, &mut rng);
                let w = Walk {
                    person: p,
                    camera: k as u32,
                    start_frame,
                    poses,
                };
                enter = w.end_frame() as f64 / fps;
                walks.push(w);
            }
        }
        let last = walks.iter().map(Walk::end_frame).max().unwrap_or(0);
        let period_frames = last + (spec.gap_s * fps).round().max(1.0) as u64;
        Plan {
            walks,
            period_frames,
        }
    }

    /// The walks of camera `camera` under way at frame `n` (any frame number;
    /// the schedule repeats), with their poses.
    pub fn at(&self, camera: u32, n: u64) -> impl Iterator<Item = (&Walk, Pose)> + '_ {
        let local = n % self.period_frames.max(1);
        self.walks
            .iter()
            .filter(move |w| w.camera == camera)
            .filter_map(move |w| w.pose_at(local).map(|p| (w, p)))
    }
}

/// Poses of one crossing, from fully outside one edge to fully outside the other.
fn walk_poses(g: &Geometry, aspect: f32, fps: u32, rng: &mut ChaCha8Rng) -> Vec<Pose> {
    let left_to_right = rng.gen_bool(0.5);
    let band = g.bottom - g.top;
    let y0 = g.top + band * rng.gen_range(0.0..=1.0f32);
    let y1 = (y0 + band * rng.gen_range(-0.25..=0.25f32)).clamp(g.top, g.bottom);
    let speed_mps = rng.gen_range(1.0..1.5f32);
    let half_w = |y: f32| g.height_at(y) * aspect / 2.0 + 1.0;
    let (x0, x1) = if left_to_right {
        (-half_w(y0), g.width + half_w(y1))
    } else {
        (g.width + half_w(y0), -half_w(y1))
    };
    let distance = (x1 - x0).abs();
    let sign = if left_to_right { 1.0 } else { -1.0 };
    let mut poses = Vec::new();
    let mut travelled = 0.0f32;
    while travelled <= distance {
        let progress = travelled / distance;
        let feet = y0 + (y1 - y0) * progress;
        let h = g.height_at(feet);
        poses.push(Pose {
            cx: x0 + sign * travelled,
            feet,
            h,
        });
        let px_per_m = h / PERSON_HEIGHT_M;
        travelled += (speed_mps * px_per_m / fps as f32).max(0.1);
    }
    poses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seed: u64) -> Plan {
        let mut spec = CompositeSpec::new("/d");
        spec.seed = seed;
        spec.cameras = 3;
        Plan::new(&spec, &vec![vec![0.4f32; 3]; 10], 768, 576)
    }

    #[test]
    fn people_reach_later_cameras_after_a_transit() {
        let p = plan(3);
        assert_eq!(p.walks.len(), 30);
        for pair in p.walks.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a.person == b.person {
                assert_eq!(b.camera, a.camera + 1);
                let gap_s = (b.start_frame - a.end_frame()) as f64 / 10.0;
                assert!((5.5..=10.5).contains(&gap_s), "transit {gap_s}");
            }
        }
        assert!(p.period_frames > p.walks.iter().map(Walk::end_frame).max().unwrap_or(0));
        assert_ne!(plan(4), p);
        assert_eq!(plan(3), p);
    }

    #[test]
    fn walks_are_at_walking_pace_and_bigger_lower_down() {
        let p = plan(5);
        for w in &p.walks {
            let s = w.poses.len() as f32 / 10.0;
            // 768 px at 80..160 px per 1.7 m and 1.0..1.5 m/s: 5..17 s.
            assert!((4.0..=18.0).contains(&s), "crossing took {s} s");
            for q in &w.poses {
                assert!((80.0..=160.0).contains(&q.h));
                assert!(q.feet >= 0.4 * 576.0 - 0.01 && q.feet <= 0.98 * 576.0 + 0.01);
            }
        }
        let max_at_once = (0..p.period_frames)
            .map(|n| p.at(0, n).count())
            .max()
            .unwrap_or(0);
        assert!(
            max_at_once >= 3,
            "at most {max_at_once} on camera 0 at once"
        );
    }
}
