//! Point-sampled bilinear resizing ([`super::Filter::Sampled`]): coordinate
//! tables built once per geometry, then a vertical pass in 16 bits and a
//! horizontal pass per output row, in fixed point.

use super::yuv::Plane;
use super::Area;

/// Fixed-point weights: 11 bits, as OpenCV's `INTER_RESIZE_COEF_BITS`.
pub(super) const COEF_BITS: u32 = 11;
pub(super) const COEF_ONE: u32 = 1 << COEF_BITS;
/// Weights of the vertical pass: 8 bits, so a blended row fits 16 bits.
const ROW_BITS: u32 = 8;
const ROW_ONE: u32 = 1 << ROW_BITS;

/// One axis of a point-sampled bilinear resize: for each output coordinate,
/// the two source coordinates it reads and the weight of the first (the second
/// gets `COEF_ONE` minus it).
#[derive(Debug, Default, Clone, PartialEq)]
struct Axis {
    first: Vec<u32>,
    second: Vec<u32>,
    weight: Vec<u32>,
}

impl Axis {
    /// Source `start..start + len` (in plane coordinates) onto `out`
    /// outputs, reading only `lo..=hi`, each coordinate given relative to
    /// `origin`. Half-pixel centres; beyond `lo` and `hi` the edge pixel is
    /// used, as OpenCV does at a frame's edges.
    fn build(&mut self, start: f64, len: f64, out: u32, (lo, hi): (u32, u32), origin: u32) {
        self.first.clear();
        self.second.clear();
        self.weight.clear();
        let scale = len / f64::from(out);
        for d in 0..out {
            let s = start + (f64::from(d) + 0.5) * scale - 0.5;
            let (i, frac) = if s <= f64::from(lo) {
                (lo, 0.0)
            } else if s >= f64::from(hi) {
                (hi, 0.0)
            } else {
                let base = s.floor();
                (base as u32, s - base)
            };
            self.first.push(i - origin);
            self.second.push((i + 1).min(hi) - origin);
            self.weight
                .push((((1.0 - frac) * f64::from(COEF_ONE)).round() as u32).min(COEF_ONE));
        }
    }
}

/// The area resized, the plane's size, the output's size and the channels.
type Geometry = (Area, (u32, u32), (u32, u32), usize);

/// Point-sampled bilinear resizing: coordinate tables for the last geometry,
/// and one row of vertically interpolated values.
#[derive(Debug, Default)]
pub(super) struct Sampled {
    geometry: Option<Geometry>,
    /// First and last columns read.
    cols: (u32, u32),
    xs: Axis,
    ys: Axis,
    blended: Vec<u16>,
}

impl Sampled {
    /// Builds the tables for `area` of a plane of `C` interleaved channels
    /// onto `dst_w` x `dst_h`, unless they are for that already.
    fn prepare<const C: usize>(&mut self, plane: &Plane<'_>, area: Area, dst_w: u32, dst_h: u32) {
        let geometry = (area, (plane.width, plane.height), (dst_w, dst_h), C);
        if self.geometry == Some(geometry) {
            return;
        }
        let cols = area.span_x(plane.width);
        let rows = area.span_y(plane.height);
        // Columns relative to the first one read: the blended row starts there.
        self.xs.build(area.left, area.width, dst_w, cols, cols.0);
        self.ys.build(area.top, area.height, dst_h, rows, 0);
        // Rows blend in 16 bits (so the pass vectorises 16 lanes wide): 8-bit weights.
        for wy in &mut self.ys.weight {
            *wy = (*wy + (1 << (COEF_BITS - ROW_BITS - 1))) >> (COEF_BITS - ROW_BITS);
        }
        self.cols = cols;
        self.blended.resize(self.row_len::<C>(), 0);
        self.geometry = Some(geometry);
    }

    /// Values in a blended row.
    fn row_len<const C: usize>(&self) -> usize {
        (self.cols.1 - self.cols.0 + 1) as usize * C
    }

    /// The vertical pass for output row `j` into `into` (`row_len` values):
    /// the two source rows it lies between, blended in 16 bits.
    #[inline(always)]
    fn blend_row<const C: usize>(&self, plane: &Plane<'_>, j: usize, into: &mut [u16]) {
        let span = self.cols.0 as usize * C..(self.cols.1 + 1) as usize * C;
        let row_at = |sy: u32| {
            let start = sy as usize * plane.stride;
            &plane.data[start + span.start..start + span.end]
        };
        let wy = self.ys.weight[j];
        let (wa, wb) = (wy as u16, (ROW_ONE - wy) as u16);
        let (a, b) = (row_at(self.ys.first[j]), row_at(self.ys.second[j]));
        for ((v, &a), &b) in into.iter_mut().zip(a).zip(b) {
            *v = u16::from(a) * wa + u16::from(b) * wb;
        }
    }

    /// The horizontal pass: a blended row of `C` channels into `out`
    /// (`dst_w * C` bytes).
    #[inline(always)]
    fn horizontal<const C: usize>(&self, row: &[u16], out: &mut [u8]) {
        let shift = COEF_BITS + ROW_BITS;
        let round = 1u32 << (shift - 1);
        for (((o, &sx0), &sx1), &wx) in out
            .chunks_exact_mut(C)
            .zip(&self.xs.first)
            .zip(&self.xs.second)
            .zip(&self.xs.weight)
        {
            let (p, q) = (sx0 as usize * C, sx1 as usize * C);
            let (a, b) = (&row[p..p + C], &row[q..q + C]);
            let w1 = COEF_ONE - wx;
            for c in 0..C {
                let v = u32::from(a[c]) * wx + u32::from(b[c]) * w1;
                o[c] = ((v + round) >> shift) as u8;
            }
        }
    }

    /// `area` of a plane of `C` interleaved 8-bit channels into `dst`
    /// (`dst_w * dst_h * C`). Vertical pass first, over the area's whole
    /// rows (contiguous, so it vectorises), then the horizontal pass on that
    /// one row.
    pub(super) fn resize<const C: usize>(
        &mut self,
        plane: &Plane<'_>,
        area: Area,
        dst: &mut [u8],
        dst_w: u32,
        dst_h: u32,
    ) {
        self.prepare::<C>(plane, area, dst_w, dst_h);
        let mut blended = std::mem::take(&mut self.blended);
        sampled_passes::<C>(self, plane, &mut blended, dst, dst_w);
        self.blended = blended;
    }
}

/// Both passes of [`Sampled::resize`] over every output row, compiled for
/// AVX2 too (chosen at run time).
#[allow(unsafe_code)]
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn sampled_passes<const C: usize>(
    s: &Sampled,
    plane: &Plane<'_>,
    blended: &mut [u16],
    dst: &mut [u8],
    dst_w: u32,
) {
    for (j, out) in dst.chunks_exact_mut(dst_w as usize * C).enumerate() {
        s.blend_row::<C>(plane, j, blended);
        s.horizontal::<C>(blended, out);
    }
}
