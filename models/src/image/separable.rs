//! The antialiased resize of a box-reduced I420 frame, plane by plane and
//! row by row, in 7-bit fixed point: the detector's hot path.
//!
//! The planes are box-reduced one row at a time into a ring of a few rows
//! ([`super::reduce::Blocks`]), blended down the columns (vertical pass),
//! then along the row (horizontal pass), and the three output rows are
//! converted to RGB. What it computes is the bilinear convolution that
//! `fast_image_resize` (as Pillow) computes over the reduced planes, with
//! the same coefficients ([`coefficients`]) rounded to 1/128. Every
//! intermediate is a few rows (tens of kilobytes, in the first- and
//! second-level caches): no reduced frame, no interleaved copy, no second
//! buffer of the output, and the tables are built once per geometry
//! (`fast_image_resize` computes its coefficients into new vectors on
//! every call).
//!
//! The horizontal pass gathers each output's source pixels with a byte
//! shuffle within 16 bytes, so it applies where 8 neighbouring outputs read
//! at most 16 source bytes per pair of taps: a scale of up to about 1.8
//! (1280x720 and 1920x1080 reduced to 320x360 and 480x540 for 300x300;
//! 768x576 to 384x576). [`Tables::build`] says when it does not, and the
//! caller resizes the old way.

use super::reduce::Blocks;
use super::yuv::{Plane, YuvToRgb};
use super::Area;

/// Fixed-point weights: 7 fractional bits (the sum of each output's weights is 128).
const BITS: u32 = 7;
const ONE: i32 = 1 << BITS;

/// Reduced rows kept: at least the vertical window's rows.
const RING: usize = 8;

/// Outputs per lane of the horizontal pass (8 pairs of bytes in 16).
const GROUP: usize = 8;

/// Extra bytes after each row buffer: the widest vector load past the
/// row's last used byte (32-byte stores of the vertical pass, 16-byte loads
/// of the horizontal one).
const SLACK: usize = 32;

/// One output's taps: the first source index and the weights (1/128 each,
/// summing to 128) of the source pixels from there.
#[derive(Debug, Clone, PartialEq)]
struct Taps {
    start: usize,
    weights: Vec<i16>,
}

/// Pillow's (and `fast_image_resize`'s) bilinear coefficients for `out`
/// outputs over `[in0, in1)` of `in_size` source pixels, rounded to 1/128:
/// the triangle filter widened by the downscale factor, clamped at the
/// source's edges, normalised, then rounded so that each output's weights
/// sum to exactly 128 (the rounding's remainder goes to the largest).
fn coefficients(in_size: u32, in0: f64, in1: f64, out: u32) -> Vec<Taps> {
    let scale = (in1 - in0) / f64::from(out);
    let filter_scale = scale.max(1.0);
    let radius = filter_scale;
    (0..out)
        .map(|o| {
            let centre = in0 + (f64::from(o) + 0.5) * scale;
            let lo = (centre - radius).floor().max(0.0) as u32;
            let hi = ((centre + radius).ceil().min(f64::from(in_size)) as u32).max(lo + 1);
            let weights: Vec<f64> = (lo..hi)
                .map(|x| {
                    let d = ((f64::from(x) - (centre - 0.5)) / filter_scale).abs();
                    (1.0 - d).max(0.0)
                })
                .collect();
            let total: f64 = weights.iter().sum();
            let mut q: Vec<i16> = weights
                .iter()
                .map(|w| {
                    if total > 0.0 {
                        (w / total * f64::from(ONE)).round() as i16
                    } else {
                        0
                    }
                })
                .collect();
            let sum: i32 = q.iter().map(|&w| i32::from(w)).sum();
            if let Some(big) = (0..q.len()).max_by_key(|&i| q[i]) {
                q[big] += (ONE - sum) as i16;
            }
            // Weights that rounded to 0 at either end (the triangle's feet,
            // or an edge's clamp) are dropped: at 1080p they are a third of
            // the taps each pass would multiply.
            let first = q.iter().position(|&w| w != 0).unwrap_or(0);
            let last = q.iter().rposition(|&w| w != 0).map_or(q.len(), |i| i + 1);
            Taps {
                start: lo as usize + first,
                weights: q[first..last.max(first + 1)].to_vec(),
            }
        })
        .collect()
}

/// One output row's vertical taps, kept inline (no pointer to follow per row).
#[derive(Debug, Clone, Copy, PartialEq)]
struct RowTaps {
    start: usize,
    len: usize,
    weights: [i16; RING],
}

impl RowTaps {
    fn weights(&self) -> &[i16] {
        &self.weights[..self.len]
    }
}

/// The horizontal pass's table for a pair of lanes (16 outputs) and one
/// pair of taps: each lane's load offset, the shuffle that puts each
/// output's two source bytes side by side, and their weights.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PairStep {
    offsets: [usize; 2],
    shuffle: [u8; 32],
    /// The weights' bit patterns as `i8` (all in 0..128).
    weights: [u8; 32],
}

/// A geometry's tables: the vertical taps per output row, and the
/// horizontal pass as shuffles and weights.
#[derive(Debug, Clone, PartialEq)]
struct Tables {
    rows: Vec<RowTaps>,
    /// `pairs` steps per 16 outputs.
    steps: Vec<PairStep>,
    pairs: usize,
    /// The horizontal taps as built, for the portable pass.
    cols: Vec<Taps>,
}

/// What the tables depend on.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Key {
    width: u32,
    height: u32,
    area: [u64; 4],
    dst_w: u32,
    dst_h: u32,
}

impl Key {
    fn of(blocks: &Blocks, dst_w: u32, dst_h: u32) -> Self {
        let a = blocks.area;
        Self {
            width: blocks.width,
            height: blocks.height,
            area: [a.left, a.top, a.width, a.height].map(f64::to_bits),
            dst_w,
            dst_h,
        }
    }
}

impl Tables {
    /// The tables for resizing `area` of planes of `width` x `height` to
    /// `dst_w` x `dst_h`; `None` where this pass does not apply: a vertical
    /// window longer than the ring, a weight of a whole 128 (an unscaled
    /// axis), or 8 outputs whose pair of taps spans more than 16 bytes.
    fn build(key: Key) -> Option<Self> {
        let [left, top, width, height] = key.area.map(f64::from_bits);
        let rows = coefficients(key.height, top, top + height, key.dst_h);
        let cols = coefficients(key.width, left, left + width, key.dst_w);
        if rows.iter().any(|t| t.weights.len() > RING)
            || rows
                .iter()
                .chain(&cols)
                .flat_map(|t| &t.weights)
                .any(|&w| w >= 128)
        {
            return None;
        }
        let rows = rows
            .iter()
            .map(|t| {
                let mut weights = [0; RING];
                weights[..t.weights.len()].copy_from_slice(&t.weights);
                RowTaps {
                    start: t.start,
                    len: t.weights.len(),
                    weights,
                }
            })
            .collect();
        let taps = cols.iter().map(|t| t.weights.len()).max()?;
        let pairs = taps.div_ceil(2);
        let lanes = cols.len().div_ceil(GROUP);
        let mut steps = Vec::with_capacity(lanes.div_ceil(2) * pairs);
        for lane_pair in 0..lanes.div_ceil(2) {
            for p in 0..pairs {
                let mut step = PairStep {
                    offsets: [0; 2],
                    shuffle: [0; 32],
                    weights: [0; 32],
                };
                for half in 0..2 {
                    let first = (lane_pair * 2 + half) * GROUP;
                    let Some(base) = cols.get(first).map(|t| t.start + 2 * p) else {
                        continue;
                    };
                    step.offsets[half] = base;
                    for i in 0..GROUP {
                        let Some(t) = cols.get(first + i) else {
                            break;
                        };
                        for k in 0..2 {
                            let tap = 2 * p + k;
                            let Some(&w) = t.weights.get(tap) else {
                                continue;
                            };
                            let at = (t.start + tap).checked_sub(base)?;
                            if at >= 16 {
                                return None;
                            }
                            let slot = half * 16 + 2 * i + k;
                            step.shuffle[slot] = at as u8;
                            step.weights[slot] = w as u8;
                        }
                    }
                }
                steps.push(step);
            }
        }
        Some(Self {
            rows,
            steps,
            pairs,
            cols,
        })
    }
}

/// Geometries whose tables (or refusal) are kept: a detector thread serves
/// cameras of a few sizes, and alternating between them must not rebuild
/// tables every frame.
const GEOMETRIES: usize = 4;

/// The resize of box-reduced I420 planes, with its buffers and the tables
/// of the last few geometries kept between calls.
#[derive(Debug, Default)]
pub(super) struct Separable {
    /// The tables of up to [`GEOMETRIES`] geometries, the latest used last;
    /// `None` for one the passes cannot do (so it is not tried every frame).
    tables: Vec<(Key, Option<Tables>)>,
    /// Tables built (or refused) so far: how often a geometry was new.
    builds: u64,
    /// Reduced rows of Y, U and V, `RING` rows each.
    ring: [Vec<u8>; 3],
    /// One row of each plane after the vertical pass.
    column: [Vec<u8>; 3],
    /// One output row of each plane.
    out: [Vec<u8>; 3],
    /// The even row's three planes, for an output of 2x2 blocks.
    above: [Vec<u8>; 3],
    sums: Vec<u16>,
}

impl Separable {
    /// Resizes `area` (luma pixels) of the frame's planes, box-reduced by
    /// `factors`, into `dst` (RGB8, `dst_w` x `dst_h`, as pixels or, with
    /// `blocks_out`, as 2x2 blocks: [`super::space_to_depth`]'s arrangement,
    /// for an even size); `false` (nothing written) where this path does not
    /// apply.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn resize(
        &mut self,
        planes: [&Plane<'_>; 3],
        colour: YuvToRgb,
        area: Area,
        factors: (u32, u32),
        dst: &mut [u8],
        (dst_w, dst_h): (u32, u32),
        blocks_out: bool,
    ) -> bool {
        let Some(blocks) = Blocks::of(planes[0], area, factors) else {
            return false;
        };
        let key = Key::of(&blocks, dst_w, dst_h);
        match self.tables.iter().position(|(k, _)| *k == key) {
            // The latest is last already (one camera size: every frame).
            Some(i) if i + 1 == self.tables.len() => {}
            Some(i) => {
                let found = self.tables.remove(i);
                self.tables.push(found);
            }
            None => {
                if self.tables.len() == GEOMETRIES {
                    self.tables.remove(0);
                }
                self.tables.push((key, Tables::build(key)));
                self.builds += 1;
            }
        }
        let Some((_, Some(tables))) = self.tables.last() else {
            return false;
        };
        let simd = simd::available();
        let (rw, ow) = (blocks.width as usize, dst_w as usize);
        // Whole vectors of the vertical pass, and of the horizontal one's 16 outputs.
        let row_len = rw.next_multiple_of(32) + SLACK;
        let out_len = ow.next_multiple_of(2 * GROUP) + SLACK;
        for ring in &mut self.ring {
            ring.resize(RING * row_len, 0);
        }
        for c in &mut self.column {
            c.resize(row_len, 0);
        }
        // The caller refused an odd size for blocks already.
        debug_assert!(!blocks_out || (dst_w % 2 == 0 && dst_h % 2 == 0));
        for o in self.out.iter_mut().chain(&mut self.above) {
            o.resize(out_len, 0);
        }
        blocks.prefetch_start(planes);
        let mut next = 0;
        for (row, taps) in tables.rows.iter().enumerate() {
            let end = taps.start + taps.len;
            while next < end {
                let slot = (next % RING) * row_len;
                let [ry, ru, rv] = &mut self.ring;
                blocks.reduce_row(
                    planes,
                    next,
                    &mut self.sums,
                    [
                        &mut ry[slot..slot + rw],
                        &mut ru[slot..slot + rw],
                        &mut rv[slot..slot + rw],
                    ],
                );
                next += 1;
            }
            for ((ring, column), out) in self.ring.iter().zip(&mut self.column).zip(&mut self.out) {
                let source: [&[u8]; RING] = std::array::from_fn(|k| {
                    let slot = ((taps.start + k) % RING) * row_len;
                    &ring[slot..slot + row_len]
                });
                let source = &source[..taps.len];
                if simd {
                    simd::vertical(source, taps.weights(), &mut column[..]);
                } else {
                    vertical(source, taps.weights(), &mut column[..rw]);
                    horizontal(column, &tables.cols, &mut out[..ow]);
                }
            }
            if simd {
                // The three planes' rows through each step of the table at once.
                let [cy, cu, cv] = &self.column;
                let [oy, ou, ov] = &mut self.out;
                simd::horizontal([cy, cu, cv], &tables.steps, tables.pairs, [oy, ou, ov]);
            }
            let [y, u, v] = &self.out;
            let (y, u, v) = (&y[..ow], &u[..ow], &v[..ow]);
            if !blocks_out {
                colour.convert_row(y, u, v, &mut dst[row * ow * 3..(row + 1) * ow * 3]);
                continue;
            }
            // 2x2 blocks: the even row's planes wait for the odd row's, then
            // both are converted into one row of blocks.
            if row % 2 == 0 {
                std::mem::swap(&mut self.above, &mut self.out);
                continue;
            }
            let [ay, au, av] = &self.above;
            let at = (row / 2) * 2 * ow * 3;
            super::rgb::convert_blocks(
                &colour,
                [&ay[..ow], &au[..ow], &av[..ow]],
                [y, u, v],
                &mut dst[at..at + 2 * ow * 3],
            );
        }
        true
    }
}

/// `(sum + 64) >> 7` as a byte: the fixed-point result, rounded.
#[inline(always)]
fn round(sum: i32) -> u8 {
    ((sum + ONE / 2) >> BITS).clamp(0, 255) as u8
}

/// The vertical pass in portable code: each column of `out` blended from
/// the rows `source[k]` with `weights[k]`.
fn vertical(source: &[&[u8]], weights: &[i16], out: &mut [u8]) {
    for (x, o) in out.iter_mut().enumerate() {
        let sum: i32 = weights
            .iter()
            .zip(source)
            .map(|(&w, row)| i32::from(w) * i32::from(row[x]))
            .sum();
        *o = round(sum);
    }
}

/// The horizontal pass in portable code.
fn horizontal(row: &[u8], cols: &[Taps], out: &mut [u8]) {
    for (o, t) in out.iter_mut().zip(cols) {
        let sum: i32 = t
            .weights
            .iter()
            .zip(&row[t.start..])
            .map(|(&w, &p)| i32::from(w) * i32::from(p))
            .sum();
        *o = round(sum);
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    use super::PairStep;
    use std::arch::x86_64::{
        __m128i, __m256i, _mm256_add_epi16, _mm256_castsi128_si256, _mm256_castsi256_si128,
        _mm256_extracti128_si256, _mm256_inserti128_si256, _mm256_loadu_si256,
        _mm256_maddubs_epi16, _mm256_packus_epi16, _mm256_set1_epi16, _mm256_setzero_si256,
        _mm256_shuffle_epi8, _mm256_srai_epi16, _mm256_storeu_si256, _mm256_unpackhi_epi8,
        _mm256_unpacklo_epi8, _mm_loadu_si128, _mm_storel_epi64,
    };

    /// Whether this CPU runs the AVX2 passes.
    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2")
    }

    #[inline(always)]
    fn load16(bytes: &[u8], at: usize) -> __m128i {
        let b: &[u8; 16] = bytes[at..at + 16].try_into().expect("16 bytes");
        // SAFETY: an unaligned load of exactly the 16 bytes borrowed.
        unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
    }

    #[inline(always)]
    fn load32(bytes: &[u8]) -> __m256i {
        let b: &[u8; 32] = bytes[..32].try_into().expect("32 bytes");
        // SAFETY: an unaligned load of exactly the 32 bytes borrowed.
        unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
    }

    /// The vertical pass: `out` (a multiple of 32 bytes plus slack) in
    /// blocks of 32 columns, two source rows at a time (their bytes
    /// interleaved and multiplied by their weights in one step).
    pub(super) fn vertical(source: &[&[u8]], weights: &[i16], out: &mut [u8]) {
        // SAFETY: `available()` was checked by the caller.
        unsafe { vertical_avx2(source, weights, out) }
    }

    #[target_feature(enable = "avx2")]
    fn vertical_avx2(source: &[&[u8]], weights: &[i16], out: &mut [u8]) {
        let half = _mm256_set1_epi16((super::ONE / 2) as i16);
        let pairs = weights.len().div_ceil(2).min(super::RING / 2);
        // Each pair's weights as bytes (first row, second row), and its rows
        // (an odd last row paired with itself at weight 0).
        let mut w = [_mm256_setzero_si256(); super::RING / 2];
        let mut rows: [(&[u8], &[u8]); super::RING / 2] = [(&[], &[]); super::RING / 2];
        for p in 0..pairs {
            let (a, b) = (2 * p, (2 * p + 1).min(weights.len() - 1));
            let wb = if b == a { 0 } else { weights[b] };
            w[p] = _mm256_set1_epi16(((wb as u8 as i16) << 8) | i16::from(weights[a] as u8));
            rows[p] = (source[a], source[b]);
        }
        let blocks = (out.len() - super::SLACK) / 32;
        for b in 0..blocks {
            let x = b * 32;
            let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for (&(ra, rb), &wp) in rows[..pairs].iter().zip(&w[..pairs]) {
                let (a, b) = (load32(&ra[x..]), load32(&rb[x..]));
                lo = _mm256_add_epi16(lo, _mm256_maddubs_epi16(_mm256_unpacklo_epi8(a, b), wp));
                hi = _mm256_add_epi16(hi, _mm256_maddubs_epi16(_mm256_unpackhi_epi8(a, b), wp));
            }
            let lo = _mm256_srai_epi16::<{ super::BITS as i32 }>(_mm256_add_epi16(lo, half));
            let hi = _mm256_srai_epi16::<{ super::BITS as i32 }>(_mm256_add_epi16(hi, half));
            // Lane-wise, the low and high halves of each lane's 16 columns:
            // packed back in order.
            let packed = _mm256_packus_epi16(lo, hi);
            let dst: &mut [u8; 32] = (&mut out[x..x + 32]).try_into().expect("32 bytes");
            // SAFETY: an unaligned store of exactly the 32 bytes borrowed.
            unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), packed) };
        }
    }

    /// The horizontal pass over `P` rows (planes) with one table: 16
    /// outputs per group of `pairs` steps, each step's shuffle and weights
    /// loaded once for all the rows.
    pub(super) fn horizontal<const P: usize>(
        rows: [&[u8]; P],
        steps: &[PairStep],
        pairs: usize,
        out: [&mut [u8]; P],
    ) {
        // SAFETY: `available()` was checked by the caller.
        unsafe { horizontal_avx2(rows, steps, pairs, out) }
    }

    #[target_feature(enable = "avx2")]
    fn horizontal_avx2<const P: usize>(
        rows: [&[u8]; P],
        steps: &[PairStep],
        pairs: usize,
        mut out: [&mut [u8]; P],
    ) {
        let half = _mm256_set1_epi16((super::ONE / 2) as i16);
        for (g, group) in steps.chunks_exact(pairs).enumerate() {
            let mut acc = [_mm256_setzero_si256(); P];
            for s in group {
                let shuffle = load32(&s.shuffle);
                let weights = load32(&s.weights);
                for (acc, row) in acc.iter_mut().zip(rows) {
                    let both = _mm256_inserti128_si256::<1>(
                        _mm256_castsi128_si256(load16(row, s.offsets[0])),
                        load16(row, s.offsets[1]),
                    );
                    let picked = _mm256_shuffle_epi8(both, shuffle);
                    *acc = _mm256_add_epi16(*acc, _mm256_maddubs_epi16(picked, weights));
                }
            }
            for (acc, out) in acc.into_iter().zip(out.iter_mut()) {
                let acc = _mm256_srai_epi16::<{ super::BITS as i32 }>(_mm256_add_epi16(acc, half));
                let bytes = _mm256_packus_epi16(acc, acc);
                let dst: &mut [u8; 16] = (&mut out[g * 16..g * 16 + 16])
                    .try_into()
                    .expect("16 bytes");
                // SAFETY: two 8-byte stores into the 16 bytes borrowed.
                unsafe {
                    _mm_storel_epi64(dst.as_mut_ptr().cast(), _mm256_castsi256_si128(bytes));
                    _mm_storel_epi64(
                        dst[8..].as_mut_ptr().cast(),
                        _mm256_extracti128_si256::<1>(bytes),
                    );
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod simd {
    use super::PairStep;

    pub(super) fn available() -> bool {
        false
    }

    pub(super) fn vertical(_: &[&[u8]], _: &[i16], _: &mut [u8]) {}

    pub(super) fn horizontal<const P: usize>(
        _: [&[u8]; P],
        _: &[PairStep],
        _: usize,
        _: [&mut [u8]; P],
    ) {
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The triangle filter's weights by their definition, in floating point.
    fn exact(in_size: u32, in0: f64, in1: f64, out: u32, o: u32) -> Vec<(usize, f64)> {
        let scale = (in1 - in0) / f64::from(out);
        let support = scale.max(1.0);
        let centre = in0 + (f64::from(o) + 0.5) * scale;
        let w: Vec<(usize, f64)> = (0..in_size)
            .map(|x| {
                let d = ((f64::from(x) + 0.5 - centre) / support).abs();
                (x as usize, (1.0 - d).max(0.0))
            })
            .filter(|&(_, w)| w > 0.0)
            .collect();
        let total: f64 = w.iter().map(|p| p.1).sum();
        w.into_iter().map(|(x, v)| (x, v / total)).collect()
    }

    #[test]
    fn weights_are_the_triangle_filter_rounded_to_128ths() {
        for (in_size, in0, in1, out) in [
            (480u32, 0.0, 480.0, 300u32),
            (320, 0.0, 320.0, 300),
            (576, 0.0, 576.0, 300),
            (360, 1.25, 353.5, 300),
            (500, 3.0, 480.0, 150),
        ] {
            let taps = coefficients(in_size, in0, in1, out);
            assert_eq!(taps.len(), out as usize);
            for (o, t) in taps.iter().enumerate() {
                let sum: i32 = t.weights.iter().map(|&w| i32::from(w)).sum();
                assert_eq!(sum, ONE, "output {o}: weights sum to 128");
                for (x, w) in exact(in_size, in0, in1, out, o as u32) {
                    let got = x
                        .checked_sub(t.start)
                        .and_then(|k| t.weights.get(k))
                        .map_or(0, |&w| i32::from(w));
                    assert!(
                        (f64::from(got) - w * 128.0).abs() <= 1.0,
                        "{in_size} over [{in0}, {in1}) to {out}, output {o}, pixel {x}: {got}/128 against {w:.4}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_vector_passes_compute_what_the_portable_ones_do() {
        if !simd::available() {
            eprintln!("no AVX2 on this CPU: the portable passes run alone");
            return;
        }
        let bytes = |n: usize, seed: usize| -> Vec<u8> {
            (0..n)
                .map(|i| ((i * 7919 + seed * 104_729) % 256) as u8)
                .collect()
        };
        for (w, h, dst) in [
            (480u32, 540u32, 300u32),
            (320, 360, 300),
            (384, 576, 300),
            (331, 333, 200),
        ] {
            let key = Key {
                width: w,
                height: h,
                area: [0.0, 0.0, f64::from(w), f64::from(h)].map(f64::to_bits),
                dst_w: dst,
                dst_h: dst,
            };
            let t = Tables::build(key).unwrap_or_else(|| panic!("tables for {w}x{h} to {dst}"));
            let len = (w as usize).next_multiple_of(32) + SLACK;
            let rows: Vec<Vec<u8>> = (0..RING).map(|k| bytes(len, k)).collect();
            for taps in &t.rows {
                let n = taps.len;
                let source: Vec<&[u8]> = rows[..n].iter().map(Vec::as_slice).collect();
                let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
                simd::vertical(&source, taps.weights(), &mut a);
                vertical(&source, taps.weights(), &mut b[..w as usize]);
                assert_eq!(
                    a[..w as usize],
                    b[..w as usize],
                    "{w}x{h}: vertical, weights {:?}",
                    taps.weights()
                );
            }
            let row = bytes(len, 99);
            let out_len = (dst as usize).next_multiple_of(2 * GROUP) + SLACK;
            let (mut a, mut b) = (vec![0u8; out_len], vec![0u8; out_len]);
            simd::horizontal([&row], &t.steps, t.pairs, [&mut a]);
            horizontal(&row, &t.cols, &mut b[..dst as usize]);
            assert_eq!(a[..dst as usize], b[..dst as usize], "{w}x{h}: horizontal");
        }
    }

    #[test]
    fn tables_are_kept_for_a_few_geometries_at_once() {
        // Cameras of two sizes through one detector thread, and one size the
        // passes cannot do: each geometry's tables are built once.
        fn plane(data: &[u8], w: u32, h: u32) -> Plane<'_> {
            Plane {
                data,
                stride: w as usize,
                width: w,
                height: h,
            }
        }
        let (luma, chroma) = (vec![90u8; 2560 * 1440], vec![128u8; 1280 * 720]);
        let mut s = Separable::default();
        let mut dst = vec![0u8; 300 * 300 * 3];
        for round in 0..3 {
            for (w, h, takes) in [(1920, 1080, true), (1280, 720, true), (2560, 1440, false)] {
                let (y, u, v) = (
                    plane(&luma, w, h),
                    plane(&chroma, w / 2, h / 2),
                    plane(&chroma, w / 2, h / 2),
                );
                let area = Area {
                    left: 0.0,
                    top: 0.0,
                    width: f64::from(w),
                    height: f64::from(h),
                };
                let factors = super::super::reduce::factors(w, h, 300, 300).expect("reducible");
                dst.fill(0);
                let done = s.resize(
                    [&y, &u, &v],
                    YuvToRgb::default(),
                    area,
                    factors,
                    &mut dst,
                    (300, 300),
                    false,
                );
                assert_eq!(done, takes, "{w}x{h}, round {round}");
                if takes {
                    // A flat grey frame comes out flat grey.
                    assert!(dst.iter().all(|&b| b == dst[0] && b > 0), "{w}x{h}: flat");
                }
            }
        }
        assert_eq!(
            s.builds, 3,
            "each geometry's tables built once over 3 rounds"
        );
        assert_eq!(s.tables.len(), 3);
    }

    #[test]
    fn tables_refuse_what_the_passes_cannot_do() {
        let key = |w: u32, h: u32, dst: u32| Key {
            width: w,
            height: h,
            area: [0.0, 0.0, f64::from(w), f64::from(h)].map(f64::to_bits),
            dst_w: dst,
            dst_h: dst,
        };
        assert!(Tables::build(key(480, 540, 300)).is_some());
        // 8 outputs 2.13 source pixels apart: a pair of taps spans 17+ bytes.
        assert!(Tables::build(key(640, 360, 300)).is_none());
        // Unscaled: one weight of a whole 128 (no byte holds it).
        assert!(Tables::build(key(300, 300, 300)).is_none());
        // A vertical window longer than the ring (scale 5: 10 rows).
        assert!(Tables::build(key(320, 1500, 300)).is_none());
    }
}
