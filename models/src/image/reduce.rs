//! Box reduction of an I420 frame's planes by whole factors before the
//! antialiased resize, as Pillow's `Image.resize(reducing_gap=...)` does.
//!
//! Scaling a camera frame to a detector's input (1280x720 or 1920x1080 to
//! 300x300) is a 2-6x reduction. The convolution's cost grows with the source
//! it reads and the support of its filter; averaging blocks of 2 or 4 pixels
//! first reads the frame once in a cheap pass, and leaves the convolution a
//! source about the size of its output. The luma plane is reduced twice as
//! much as the chroma planes, so all three come out the same size.
//!
//! What it changes: the filter becomes a box of the reduction factor followed
//! by the bilinear convolution over what is left, instead of one bilinear
//! convolution over the whole factor. Both average every source pixel; the
//! box weighs a block's pixels equally. Against the direct convolution the
//! pixels differ by a few levels (`image::tests`), and detection agrees as
//! before (docs/benchmarks.md, "Reducing before resizing").

use super::yuv::Plane;
use super::Area;

/// A plane may be reduced to this share of the output's size. Below 1 (a
/// 576-line frame halved for a 300-line input, then enlarged) the picture is
/// blurred more than the direct filter blurs it: at 0.95, detection agreement
/// with float every-frame detection on vtest.avi fell from 0.977 to 0.965
/// (int8, gated) and from 0.985 to 0.976 (float).
const LEAST_LEFT: f64 = 1.0;

/// Luma reduction factors (per axis, 2 or 4) for resizing a `w` x `h` area of
/// the luma plane to `dst_w` x `dst_h`: the largest that leaves at least
/// [`LEAST_LEFT`] of the output's size. `None` when either axis cannot be
/// halved (the chroma planes would then need no reduction or an enlargement).
pub(super) fn factors(w: u32, h: u32, dst_w: u32, dst_h: u32) -> Option<(u32, u32)> {
    let axis = |len: u32, out: u32| {
        [4, 2]
            .into_iter()
            .find(|&f| f64::from(len / f) >= LEAST_LEFT * f64::from(out))
    };
    Some((axis(w, dst_w)?, axis(h, dst_h)?))
}

/// Box-reduced copies of the three planes of an I420 frame, all of one size
/// and interleaved (so one three-channel resize does the rest), and the area
/// to resize within them.
#[derive(Debug, Default)]
pub(super) struct Reduced {
    /// Y, U and V interleaved, `width` x `height` pixels of 3 bytes.
    pub(super) packed: Vec<u8>,
    pub(super) width: u32,
    pub(super) height: u32,
    /// Row sums of the vertical pass.
    sums: Vec<u16>,
}

impl Reduced {
    /// Reduces the blocks of `y`, `u` and `v` that `area` (luma pixels)
    /// touches, luma by `(fx, fy)` and chroma by half that; returns the area in
    /// the reduced planes' coordinates. Blocks start at multiples of the
    /// factors; a partial block at the frame's right or bottom edge is left
    /// out (the area is cut there, by less than one block).
    pub(super) fn reduce(
        &mut self,
        [y, u, v]: [&Plane<'_>; 3],
        area: Area,
        (fx, fy): (u32, u32),
    ) -> Option<Area> {
        let x0 = (area.left as u32 / fx) * fx;
        let y0 = (area.top as u32 / fy) * fy;
        let full_w = y.width.checked_sub(x0)? / fx;
        let full_h = y.height.checked_sub(y0)? / fy;
        let want_w = ((area.left + area.width - f64::from(x0)) / f64::from(fx)).ceil() as u32;
        let want_h = ((area.top + area.height - f64::from(y0)) / f64::from(fy)).ceil() as u32;
        let (w, h) = (want_w.min(full_w), want_h.min(full_h));
        if w == 0 || h == 0 {
            return None;
        }
        self.width = w;
        self.height = h;
        self.packed.resize(w as usize * h as usize * 3, 0);
        let (out, sums) = (&mut self.packed, &mut self.sums);
        box_reduce(y, (x0, y0), (fx, fy), (w, h), (out, 0), sums);
        let (cx, cy) = (fx / 2, fy / 2);
        box_reduce(u, (x0 / 2, y0 / 2), (cx, cy), (w, h), (out, 1), sums);
        box_reduce(v, (x0 / 2, y0 / 2), (cx, cy), (w, h), (out, 2), sums);
        let left = (area.left - f64::from(x0)) / f64::from(fx);
        let top = (area.top - f64::from(y0)) / f64::from(fy);
        Some(Area {
            left,
            top,
            width: (area.width / f64::from(fx)).min(f64::from(w) - left),
            height: (area.height / f64::from(fy)).min(f64::from(h) - top),
        })
    }
}

/// Averages `fx` x `fy` blocks of `plane` from `(x0, y0)` into channel `c`
/// of `out` (`w` x `h` pixels of 3 bytes), rounding to nearest. The caller
/// checked that the blocks lie inside the plane.
fn box_reduce(
    plane: &Plane<'_>,
    (x0, y0): (u32, u32),
    (fx, fy): (u32, u32),
    (w, h): (u32, u32),
    (out, c): (&mut [u8], usize),
    sums: &mut Vec<u16>,
) {
    let (x0, y0, w, h) = (x0 as usize, y0 as usize, w as usize, h as usize);
    let (fx, fy) = (fx as usize, fy as usize);
    sums.resize(w * fx, 0);
    for (r, out_row) in out.chunks_exact_mut(w * 3).take(h).enumerate() {
        let rows = Rows {
            data: plane.data,
            stride: plane.stride,
            start: (y0 + r * fy) * plane.stride + x0,
            len: w * fx,
            count: fy,
        };
        let out_row = &mut out_row[c..];
        match fx {
            1 => reduce_row::<1>(&rows, sums, out_row),
            2 => reduce_row::<2>(&rows, sums, out_row),
            _ => reduce_row::<4>(&rows, sums, out_row),
        }
    }
}

/// `count` rows of `len` bytes, `stride` apart from `start`.
struct Rows<'a> {
    data: &'a [u8],
    stride: usize,
    start: usize,
    len: usize,
    count: usize,
}

impl Rows<'_> {
    fn row(&self, k: usize) -> &[u8] {
        let start = self.start + k * self.stride;
        &self.data[start..start + self.len]
    }
}

/// One output row: the `fy` source rows summed in 16 bits, then `FX`
/// neighbouring sums added and divided by the block's size, rounding to
/// nearest, into every third byte of `out`. Compiled for AVX2 too (chosen
/// at run time).
#[allow(unsafe_code)]
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn reduce_row<const FX: usize>(rows: &Rows<'_>, sums: &mut [u16], out: &mut [u8]) {
    for (s, &p) in sums.iter_mut().zip(rows.row(0)) {
        *s = u16::from(p);
    }
    for k in 1..rows.count {
        for (s, &p) in sums.iter_mut().zip(rows.row(k)) {
            *s += u16::from(p);
        }
    }
    let n = (FX * rows.count) as u16;
    let half = n / 2;
    // n is 1, 2, 4, 8 or 16: a shift.
    let shift = n.trailing_zeros();
    // Contiguous blocks of 16 outputs (so the sums vectorise), then spread
    // to every third byte.
    const N: usize = 16;
    let mut block = [0u8; N];
    let mut outs = out.chunks_mut(3 * N);
    for chunk in sums.chunks_exact(FX * N) {
        let Some(o) = outs.next() else { return };
        for (b, s) in block.iter_mut().zip(chunk.chunks_exact(FX)) {
            let mut t = 0u16;
            for &v in s {
                t += v;
            }
            *b = ((t + half) >> shift) as u8;
        }
        for (o, &b) in o.iter_mut().step_by(3).zip(&block) {
            *o = b;
        }
    }
    let done = sums.len() / (FX * N) * N;
    let rest = sums[done * FX..].chunks_exact(FX);
    let tail = out.get_mut(done * 3..).unwrap_or_default();
    for (o, s) in tail.iter_mut().step_by(3).zip(rest) {
        let t: u16 = s.iter().sum();
        *o = ((t + half) >> shift) as u8;
    }
}
