//! A deterministic synthetic scene: person-shaped figures walking over a static
//! background. Used by the test camera, the tests and the benchmarks, so that
//! nothing depends on footage that cannot be shipped.
//!
//! Frame `n` of a scene is a pure function of the spec (seed included) and `n`;
//! rendering reuses the caller's buffer and allocates nothing per frame.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Largest accepted synthetic frame side, pixels.
pub const MAX_SIDE: u32 = 7680;

/// Parameters of a synthetic scene.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SceneSpec {
    /// Frame width, pixels (even, 16..=7680). Default 1280.
    pub width: u32,
    /// Frame height, pixels (even, 16..=7680). Default 720.
    pub height: u32,
    /// Frames per second (1..=240). Default 30.
    pub fps: u32,
    /// Seed of the scene layout and motion. Default 1.
    pub seed: u64,
    /// Number of walking figures (0..=64). Default 4.
    pub people: u32,
    /// When set, the resolution alternates between full and half size every
    /// this many frames (exercises decoders with mid-stream caps changes).
    pub switch_every: Option<u32>,
}

impl Default for SceneSpec {
    fn default() -> Self {
        SceneSpec {
            width: 1280,
            height: 720,
            fps: 30,
            seed: 1,
            people: 4,
            switch_every: None,
        }
    }
}

impl SceneSpec {
    /// Parses `key=value&...` (keys: width, height, fps, seed, people, switch).
    pub fn from_query(query: &str) -> Result<SceneSpec, String> {
        let mut spec = SceneSpec::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("parameter {pair:?} is not key=value"))?;
            let num = |what: &str| -> Result<u64, String> {
                v.parse::<u64>()
                    .map_err(|_| format!("{what}={v:?} is not a non-negative integer"))
            };
            match k {
                "width" | "w" => {
                    spec.width = num("width")?.try_into().map_err(|_| "width too large")?
                }
                "height" | "h" => {
                    spec.height = num("height")?.try_into().map_err(|_| "height too large")?
                }
                "fps" => spec.fps = num("fps")?.try_into().map_err(|_| "fps too large")?,
                "seed" => spec.seed = num("seed")?,
                "people" => {
                    spec.people = num("people")?.try_into().map_err(|_| "people too large")?
                }
                "switch" => {
                    let n = num("switch")?;
                    spec.switch_every = if n == 0 {
                        None
                    } else {
                        Some(n.try_into().map_err(|_| "switch too large")?)
                    };
                }
                other => {
                    return Err(format!(
                    "unknown parameter {other:?} (known: width, height, fps, seed, people, switch)"
                ))
                }
            }
        }
        spec.validate()?;
        Ok(spec)
    }

    /// Checks ranges; the message names the bad parameter.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [("width", self.width), ("height", self.height)] {
            if !(16..=MAX_SIDE).contains(&v) || v % 4 != 0 {
                return Err(format!(
                    "{name}={v} must be a multiple of 4 in 16..={MAX_SIDE}"
                ));
            }
        }
        if !(1..=240).contains(&self.fps) {
            return Err(format!("fps={} must be in 1..=240", self.fps));
        }
        if self.people > 64 {
            return Err(format!("people={} must be at most 64", self.people));
        }
        Ok(())
    }

    /// Frame size of frame `n` (changes when `switch_every` is set).
    pub fn size_of(&self, n: u64) -> (u32, u32) {
        match self.switch_every {
            Some(k) if (n / u64::from(k)) % 2 == 1 => {
                ((self.width / 2) & !3, (self.height / 2) & !3)
            }
            _ => (self.width, self.height),
        }
    }
}

#[derive(Debug, Clone)]
struct Figure {
    // Position of the feet centre and velocity, in units of frame width/height.
    x: f32,
    y: f32,
    vx: f32,
    vy: f32,
    // Height as a fraction of the frame height.
    h: f32,
    shirt: [u8; 3],
    trousers: [u8; 3],
    phase: f32,
}

/// A renderer for one scene spec.
#[derive(Debug)]
pub struct Scene {
    spec: SceneSpec,
    figures: Vec<Figure>,
    /// Pre-rendered backgrounds at full and (when switching) half size.
    background: (Vec<u8>, Vec<u8>),
}

impl Scene {
    /// Builds the scene; figure layout is drawn from the seed.
    pub fn new(spec: SceneSpec) -> Scene {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let figures = (0..spec.people)
            .map(|_| {
                let dir = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
                Figure {
                    x: rng.gen_range(0.05..0.95),
                    y: rng.gen_range(0.55..0.95),
                    vx: dir * rng.gen_range(0.02..0.08),
                    vy: rng.gen_range(-0.01..0.01),
                    h: rng.gen_range(0.25..0.45),
                    shirt: [
                        rng.gen_range(40..230),
                        rng.gen_range(40..230),
                        rng.gen_range(40..230),
                    ],
                    trousers: [
                        rng.gen_range(20..90),
                        rng.gen_range(20..90),
                        rng.gen_range(40..120),
                    ],
                    phase: rng.gen_range(0.0..std::f32::consts::TAU),
                }
            })
            .collect();
        let full = background(spec.seed, spec.width, spec.height);
        let half = match spec.switch_every {
            Some(k) => {
                let (w, h) = spec.size_of(u64::from(k));
                background(spec.seed, w, h)
            }
            None => Vec::new(),
        };
        Scene {
            spec,
            figures,
            background: (full, half),
        }
    }

    /// The spec this scene renders.
    pub fn spec(&self) -> &SceneSpec {
        &self.spec
    }

    /// Bounding boxes (x, y, w, h in pixels) of the figures in frame `n`, for
    /// tests that check detections against the truth.
    pub fn boxes(&self, n: u64) -> Vec<(f32, f32, f32, f32)> {
        let (w, h) = self.spec.size_of(n);
        let t = n as f32 / self.spec.fps as f32;
        self.figures
            .iter()
            .map(|f| {
                let (cx, feet, fh) = pose(f, t);
                let (cx, feet, fh) = (cx * w as f32, feet * h as f32, fh * h as f32);
                let fw = fh * 0.4;
                (cx - fw / 2.0, feet - fh, fw, fh)
            })
            .collect()
    }

    /// Renders frame `n` as packed RGB into `buf` (row stride `stride` bytes).
    /// Returns the frame size. `buf` must hold `stride * height` bytes for the
    /// size returned by [`SceneSpec::size_of`]; a smaller buffer is left as is.
    pub fn render(&self, n: u64, buf: &mut [u8], stride: usize) -> (u32, u32) {
        let (w, h) = self.spec.size_of(n);
        let (wu, hu) = (w as usize, h as usize);
        if buf.len() < stride * hu || stride < wu * 3 {
            return (w, h);
        }
        let bg = if (w, h) == (self.spec.width, self.spec.height) {
            &self.background.0
        } else {
            &self.background.1
        };
        for (y, src) in bg.chunks_exact(wu * 3).take(hu).enumerate() {
            buf[y * stride..y * stride + wu * 3].copy_from_slice(src);
        }
        let t = n as f32 / self.spec.fps as f32;
        for f in &self.figures {
            let (cx, feet, fh) = pose(f, t);
            let (cx, feet, fh) = (cx * w as f32, feet * h as f32, fh * h as f32);
            let fw = fh * 0.4;
            let stride_phase = (t * 6.0 + f.phase).sin();
            // Legs (alternating), torso, arms, head.
            let leg_w = fw * 0.3;
            let leg_h = fh * 0.45;
            let off = stride_phase * fw * 0.15;
            let sz = (w, h);
            fill_rect(
                buf,
                stride,
                sz,
                (cx - fw * 0.35 + off, feet - leg_h, leg_w, leg_h),
                f.trousers,
            );
            fill_rect(
                buf,
                stride,
                sz,
                (cx + fw * 0.05 - off, feet - leg_h, leg_w, leg_h),
                f.trousers,
            );
            fill_rect(
                buf,
                stride,
                sz,
                (cx - fw * 0.4, feet - fh * 0.82, fw * 0.8, fh * 0.4),
                f.shirt,
            );
            fill_rect(
                buf,
                stride,
                sz,
                (cx - fw * 0.55, feet - fh * 0.8, fw * 0.15, fh * 0.35),
                f.shirt,
            );
            fill_rect(
                buf,
                stride,
                sz,
                (cx + fw * 0.4, feet - fh * 0.8, fw * 0.15, fh * 0.35),
                f.shirt,
            );
            fill_disc(
                buf,
                stride,
                sz,
                (cx, feet - fh * 0.9),
                fh * 0.09,
                [224, 180, 150],
            );
        }
        (w, h)
    }
}

/// The static background (sky, pavement, seeded building blocks), packed RGB.
fn background(seed: u64, w: u32, h: u32) -> Vec<u8> {
    let (wu, hu) = (w as usize, h as usize);
    let stride = wu * 3;
    let mut buf = vec![0u8; stride * hu];
    let horizon = hu * 45 / 100;
    for y in 0..hu {
        let c: [u8; 3] = if y < horizon {
            let k = (y * 80 / horizon.max(1)) as u8;
            [120 + k / 2, 160 + k / 2, 220 - k / 3]
        } else {
            let k = ((y - horizon) * 60 / (hu - horizon).max(1)) as u8;
            [110 + k, 110 + k, 105 + k]
        };
        for px in buf[y * stride..(y + 1) * stride].chunks_exact_mut(3) {
            px.copy_from_slice(&c);
        }
    }
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for _ in 0..6 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let bx = (s % 1000) as f32 / 1000.0;
        let bw = 0.08 + ((s >> 10) % 100) as f32 / 1000.0;
        let bh = 0.15 + ((s >> 20) % 200) as f32 / 1000.0;
        let shade = 60 + ((s >> 30) % 100) as u8;
        let r = (
            bx * w as f32,
            (0.45 - bh) * h as f32,
            bw * w as f32,
            bh * h as f32,
        );
        fill_rect(&mut buf, stride, (w, h), r, [shade, shade - 10, shade + 20]);
    }
    buf
}

/// Centre x and feet y (fractions of the frame) and height fraction at time `t`.
/// Figures bounce off the left and right edges.
fn pose(f: &Figure, t: f32) -> (f32, f32, f32) {
    let bounce = |p: f32| {
        let m = p.rem_euclid(2.0);
        if m > 1.0 {
            2.0 - m
        } else {
            m
        }
    };
    let x = 0.05 + 0.9 * bounce(f.x + f.vx * t);
    let y = 0.55 + 0.4 * bounce((f.y - 0.55) / 0.4 + f.vy * t);
    // Farther (higher in the frame) figures are smaller.
    let h = f.h * (0.6 + 0.4 * (y - 0.55) / 0.4);
    (x, y, h)
}

fn fill_rect(
    buf: &mut [u8],
    stride: usize,
    (w, h): (u32, u32),
    r: (f32, f32, f32, f32),
    c: [u8; 3],
) {
    let x0 = r.0.max(0.0) as usize;
    let y0 = r.1.max(0.0) as usize;
    let x1 = ((r.0 + r.2).max(0.0) as usize).min(w as usize);
    let y1 = ((r.1 + r.3).max(0.0) as usize).min(h as usize);
    for y in y0..y1 {
        let row = &mut buf[y * stride..];
        for x in x0..x1 {
            row[x * 3..x * 3 + 3].copy_from_slice(&c);
        }
    }
}

fn fill_disc(
    buf: &mut [u8],
    stride: usize,
    (w, h): (u32, u32),
    c: (f32, f32),
    r: f32,
    col: [u8; 3],
) {
    let x0 = (c.0 - r).max(0.0) as usize;
    let x1 = ((c.0 + r).max(0.0) as usize).min(w as usize);
    let y0 = (c.1 - r).max(0.0) as usize;
    let y1 = ((c.1 + r).max(0.0) as usize).min(h as usize);
    for y in y0..y1 {
        for x in x0..x1 {
            let dx = x as f32 + 0.5 - c.0;
            let dy = y as f32 + 0.5 - c.1;
            if dx * dx + dy * dy <= r * r {
                buf[y * stride + x * 3..y * stride + x * 3 + 3].copy_from_slice(&col);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_from_seed_and_frame() {
        let spec = SceneSpec {
            width: 64,
            height: 48,
            ..Default::default()
        };
        let (a, b) = (Scene::new(spec.clone()), Scene::new(spec.clone()));
        let mut fa = vec![0u8; 64 * 48 * 3];
        let mut fb = vec![0u8; 64 * 48 * 3];
        a.render(17, &mut fa, 64 * 3);
        b.render(17, &mut fb, 64 * 3);
        assert_eq!(fa, fb);
        b.render(18, &mut fb, 64 * 3);
        assert_ne!(fa, fb, "figures move between frames");
        let other = Scene::new(SceneSpec { seed: 2, ..spec });
        other.render(17, &mut fb, 64 * 3);
        assert_ne!(fa, fb, "another seed gives another scene");
    }

    #[test]
    fn figures_stay_in_frame_and_switch_halves_size() {
        let spec = SceneSpec {
            switch_every: Some(10),
            ..Default::default()
        };
        assert_eq!(spec.size_of(5), (1280, 720));
        assert_eq!(spec.size_of(15), (640, 360));
        let scene = Scene::new(spec);
        for n in (0..2000).step_by(37) {
            for (x, y, w, h) in scene.boxes(n) {
                let (fw, fh) = scene.spec().size_of(n);
                assert!(x + w / 2.0 >= 0.0 && x + w / 2.0 <= fw as f32);
                assert!(y >= 0.0 && y + h <= fh as f32 + 1.0);
            }
        }
    }
}
