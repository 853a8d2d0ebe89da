//! Rendering a composite frame and its ground truth. People are pasted far to
//! near (by feet line), so nearer people occlude farther ones; a box's
//! visibility is the share of its pixels that are inside the frame and not
//! covered by a nearer person's box.

use super::labels::{PersonImages, RgbImage};
use super::plan::{Plan, Pose};
use super::{Background, CompositeError, CompositeSpec, Labels};

/// One ground-truth box of one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TruthBox {
    /// Person id from the labels.
    pub person_id: u64,
    /// Left edge, pixels (clipped to the frame).
    pub x: u32,
    /// Top edge, pixels (clipped to the frame).
    pub y: u32,
    /// Width, pixels (clipped to the frame).
    pub w: u32,
    /// Height, pixels (clipped to the frame).
    pub h: u32,
    /// Share of the whole (unclipped) person box that is in the frame and
    /// not hidden by nearer people, 0..=1.
    pub visibility: f32,
}

/// Where one person's image goes in a frame (unclipped), in paste order.
#[derive(Debug, Clone, Copy)]
struct Placement {
    person: usize,
    x: i64,
    y: i64,
    w: i64,
    h: i64,
}

/// A composite scene as one camera sees it.
#[derive(Debug)]
pub struct CompositeScene {
    spec: CompositeSpec,
    background: Background,
    people: Vec<PersonImages>,
    plan: Plan,
}

impl CompositeScene {
    /// Builds the scene from selected people and a background.
    pub fn new(
        spec: CompositeSpec,
        people: Vec<PersonImages>,
        background: Background,
    ) -> Result<CompositeScene, CompositeError> {
        spec.validate()?;
        if people.is_empty() {
            return Err(CompositeError::NoPeople {
                path: spec.people.clone(),
                reason: "no people selected".into(),
            });
        }
        let aspects: Vec<Vec<f32>> = people
            .iter()
            .map(|p| {
                p.images
                    .iter()
                    .map(|i| i.width as f32 / i.height as f32)
                    .collect()
            })
            .collect();
        if let Some(p) = people
            .iter()
            .find(|p| p.images.len() < spec.cameras as usize)
        {
            return Err(CompositeError::NoPeople {
                path: spec.people.clone(),
                reason: format!(
                    "person {} has {} camera images, the scene has {} cameras",
                    p.person_id,
                    p.images.len(),
                    spec.cameras
                ),
            });
        }
        let plan = Plan::new(&spec, &aspects, background.width, background.height);
        Ok(CompositeScene {
            spec,
            background,
            people,
            plan,
        })
    }

    /// Reads the labels, selects and decodes the people, and loads the
    /// background (a video is decoded with GStreamer).
    pub fn open(spec: CompositeSpec) -> Result<CompositeScene, CompositeError> {
        let background = Background::load(&spec.background_path(), spec.bg_frames)?;
        CompositeScene::open_with_background(spec, background)
    }

    /// Like [`CompositeScene::open`] with a background already loaded.
    pub fn open_with_background(
        spec: CompositeSpec,
        background: Background,
    ) -> Result<CompositeScene, CompositeError> {
        spec.validate()?;
        let labels = Labels::read(&spec.people)?;
        let people = labels.select(spec.cameras, spec.count, spec.seed, spec.ids)?;
        CompositeScene::new(spec, people, background)
    }

    /// The spec.
    pub fn spec(&self) -> &CompositeSpec {
        &self.spec
    }
    /// Frame size (the background's).
    pub fn size(&self) -> (u32, u32) {
        (self.background.width, self.background.height)
    }
    /// The people of the scene, in selection order.
    pub fn people(&self) -> &[PersonImages] {
        &self.people
    }
    /// The schedule of every camera.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
    /// The schedule repeats every this many frames.
    pub fn period_frames(&self) -> u64 {
        self.plan.period_frames
    }

    fn image(&self, person: usize) -> &RgbImage {
        &self.people[person].images[self.spec.camera as usize]
    }

    fn placements(&self, n: u64) -> Vec<Placement> {
        let (fw, fh) = self.size();
        let mut v: Vec<(f32, Placement)> = self
            .plan
            .at(self.spec.camera, n)
            .map(|(walk, pose): (_, Pose)| {
                let img = self.image(walk.person);
                let h = (pose.h.round() as i64).max(2);
                let w = ((pose.h * img.width as f32 / img.height as f32).round() as i64).max(2);
                let x = (pose.cx - w as f32 / 2.0).round() as i64;
                let y = pose.feet.round() as i64 - h;
                (
                    pose.feet,
                    Placement {
                        person: walk.person,
                        x,
                        y,
                        w,
                        h,
                    },
                )
            })
            .filter(|(_, p)| {
                p.x < i64::from(fw) && p.y < i64::from(fh) && p.x + p.w > 0 && p.y + p.h > 0
            })
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.person.cmp(&b.1.person)));
        v.into_iter().map(|(_, p)| p).collect()
    }

    fn truth_of(&self, placed: &[Placement]) -> Vec<TruthBox> {
        let (fw, fh) = self.size();
        let clip = |p: &Placement| {
            let x0 = p.x.clamp(0, i64::from(fw));
            let y0 = p.y.clamp(0, i64::from(fh));
            let x1 = (p.x + p.w).clamp(0, i64::from(fw));
            let y1 = (p.y + p.h).clamp(0, i64::from(fh));
            (x0, y0, x1, y1)
        };
        placed
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let (x0, y0, x1, y1) = clip(p);
                if x1 <= x0 || y1 <= y0 {
                    return None;
                }
                let nearer: Vec<_> = placed[i + 1..].iter().map(clip).collect();
                let mut visible = 0i64;
                let mut spans: Vec<(i64, i64)> = Vec::with_capacity(nearer.len());
                for y in y0..y1 {
                    spans.clear();
                    spans.extend(
                        nearer
                            .iter()
                            .filter(|r| r.1 <= y && y < r.3)
                            .map(|r| (r.0.max(x0), r.2.min(x1)))
                            .filter(|s| s.0 < s.1),
                    );
                    spans.sort_unstable();
                    let (mut covered, mut end) = (0i64, x0);
                    for &(a, b) in &spans {
                        let a = a.max(end);
                        if b > a {
                            covered += b - a;
                            end = b;
                        }
                    }
                    visible += (x1 - x0) - covered;
                }
                Some(TruthBox {
                    person_id: self.people[p.person].person_id,
                    x: x0 as u32,
                    y: y0 as u32,
                    w: (x1 - x0) as u32,
                    h: (y1 - y0) as u32,
                    visibility: visible as f32 / (p.w * p.h) as f32,
                })
            })
            .collect()
    }

    /// Ground truth of frame `n`: one box per person at least partly in the
    /// frame, far to near.
    pub fn truth(&self, n: u64) -> Vec<TruthBox> {
        self.truth_of(&self.placements(n))
    }

    /// Renders frame `n` as packed RGB into `buf` (row stride `stride` bytes)
    /// and returns its ground truth. A buffer too small for [`Self::size`] is
    /// left as is (the truth is still returned).
    pub fn render(&self, n: u64, buf: &mut [u8], stride: usize) -> Vec<TruthBox> {
        let placed = self.placements(n);
        let (fw, fh) = self.size();
        let (wu, hu) = (fw as usize, fh as usize);
        if stride < wu * 3 || buf.len() < stride * (hu - 1) + wu * 3 {
            return self.truth_of(&placed);
        }
        for (y, src) in self.background.rgb.chunks_exact(wu * 3).enumerate() {
            buf[y * stride..y * stride + wu * 3].copy_from_slice(src);
        }
        let feather = self.spec.feather as i64;
        for p in &placed {
            let scaled = resize_rgb(self.image(p.person), p.w as u32, p.h as u32);
            for sy in 0..p.h {
                let y = p.y + sy;
                if y < 0 || y >= i64::from(fh) {
                    continue;
                }
                let row = &mut buf[y as usize * stride..];
                for sx in 0..p.w {
                    let x = p.x + sx;
                    if x < 0 || x >= i64::from(fw) {
                        continue;
                    }
                    let s = ((sy * p.w + sx) * 3) as usize;
                    let d = x as usize * 3;
                    let edge = sx.min(p.w - 1 - sx).min(sy).min(p.h - 1 - sy);
                    if edge >= feather {
                        row[d..d + 3].copy_from_slice(&scaled[s..s + 3]);
                    } else {
                        let a = (edge + 1) as f32 / (feather + 1) as f32;
                        for c in 0..3 {
                            let v =
                                a * f32::from(scaled[s + c]) + (1.0 - a) * f32::from(row[d + c]);
                            row[d + c] = v.round().clamp(0.0, 255.0) as u8;
                        }
                    }
                }
            }
        }
        self.truth_of(&placed)
    }
}

/// Resamples an RGB image to `dw x dh` with a triangle (bilinear) filter
/// widened when shrinking, so downscaling averages instead of aliasing.
pub fn resize_rgb(img: &RgbImage, dw: u32, dh: u32) -> Vec<u8> {
    let (sw, sh) = (img.width as usize, img.height as usize);
    let (dw, dh) = (dw.max(1) as usize, dh.max(1) as usize);
    let xw = weights(sw, dw);
    let yw = weights(sh, dh);
    // Horizontal pass: sh rows of dw pixels.
    let mut tmp = vec![0f32; sh * dw * 3];
    for y in 0..sh {
        let src = &img.rgb[y * sw * 3..(y + 1) * sw * 3];
        for (x, (first, ws)) in xw.iter().enumerate() {
            let mut acc = [0f32; 3];
            for (i, w) in ws.iter().enumerate() {
                let s = (first + i) * 3;
                for c in 0..3 {
                    acc[c] += w * f32::from(src[s + c]);
                }
            }
            tmp[(y * dw + x) * 3..(y * dw + x) * 3 + 3].copy_from_slice(&acc);
        }
    }
    let mut out = vec![0u8; dw * dh * 3];
    for (y, (first, ws)) in yw.iter().enumerate() {
        for x in 0..dw {
            let mut acc = [0f32; 3];
            for (i, w) in ws.iter().enumerate() {
                let s = ((first + i) * dw + x) * 3;
                for c in 0..3 {
                    acc[c] += w * tmp[s + c];
                }
            }
            for c in 0..3 {
                out[(y * dw + x) * 3 + c] = acc[c].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// For each destination index: the first source index and normalised weights.
fn weights(src: usize, dst: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = src as f32 / dst as f32;
    let support = scale.max(1.0);
    (0..dst)
        .map(|d| {
            let centre = (d as f32 + 0.5) * scale;
            let lo = ((centre - support).floor().max(0.0)) as usize;
            let hi = ((centre + support).ceil() as usize).min(src);
            let mut ws: Vec<f32> = (lo..hi)
                .map(|s| (1.0 - ((s as f32 + 0.5 - centre) / support).abs()).max(0.0))
                .collect();
            let sum: f32 = ws.iter().sum();
            if sum > 0.0 {
                ws.iter_mut().for_each(|w| *w /= sum);
            } else {
                ws = vec![0.0; hi - lo];
                let nearest = (centre as usize).clamp(lo, hi.saturating_sub(1));
                ws[nearest - lo] = 1.0;
            }
            (lo, ws)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_flat_colour_and_averages_when_shrinking() {
        let img = RgbImage {
            width: 6,
            height: 16,
            rgb: [10u8, 200, 30].repeat(96),
        };
        let out = resize_rgb(&img, 3, 9);
        assert!(out.chunks_exact(3).all(|p| p == [10, 200, 30]));
        // Alternating black/white columns average to grey at half width.
        let mut rgb = Vec::new();
        for _ in 0..4 {
            for x in 0..8 {
                rgb.extend_from_slice(&[if x % 2 == 0 { 0u8 } else { 255 }; 3]);
            }
        }
        let img = RgbImage {
            width: 8,
            height: 4,
            rgb,
        };
        let out = resize_rgb(&img, 4, 4);
        for p in out.chunks_exact(3).skip(1).take(2) {
            assert!((100..=155).contains(&p[0]), "{p:?}");
        }
    }
}
