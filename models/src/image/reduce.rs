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

use super::interleave::interleave4;
use super::yuv::Plane;
use super::Area;

/// A plane may be reduced to this share of the output's size. Below 1 (a
/// 576-line frame halved for a 300-line input, then enlarged) the picture is
/// blurred more than the direct filter blurs it: at 0.95, detection agreement
/// with float every-frame detection on vtest.avi fell from 0.977 to 0.965
/// (int8, gated) and from 0.985 to 0.976 (float).
const LEAST_LEFT: f64 = 1.0;

/// A frame's rows need not be reduced (factor 1) when it has at least this
/// many times the output's rows: the chroma planes' rows are then each used
/// twice, and still scaled down (to two thirds or less) after that.
const ROWS_KEPT_AT: f64 = 1.5;

/// Luma reduction factors for resizing a `w` x `h` area of the luma plane to
/// `dst_w` x `dst_h`: per axis the largest of 4 and 2 that leaves at least
/// [`LEAST_LEFT`] of the output's size. The rows may also stay as they are
/// (1; at least [`ROWS_KEPT_AT`] times the output's): vtest.avi's 576 lines
/// for a 300-line input. `None` when the columns cannot be halved, or the
/// rows neither halved nor kept (the chroma planes would then be enlarged
/// where the direct filter interpolates them).
pub(super) fn factors(w: u32, h: u32, dst_w: u32, dst_h: u32) -> Option<(u32, u32)> {
    let axis = |len: u32, out: u32| {
        [4, 2]
            .into_iter()
            .find(|&f| f64::from(len / f) >= LEAST_LEFT * f64::from(out))
    };
    let rows = axis(h, dst_h).or((f64::from(h) >= ROWS_KEPT_AT * f64::from(dst_h)).then_some(1))?;
    Some((axis(w, dst_w)?, rows))
}

/// Box-reduced copies of the three planes of an I420 frame, all of one size
/// and interleaved with a fourth byte of 0 (so one four-channel resize does
/// the rest: `fast_image_resize` filters pixels of 4 bytes 1.2-1.4x faster
/// than pixels of 3, docs/benchmarks.md), and the area to resize within
/// them.
#[derive(Debug, Default)]
pub(super) struct Reduced {
    /// Y, U, V and 0 interleaved, `width` x `height` pixels of 4 bytes.
    pub(super) packed: Vec<u8>,
    pub(super) width: u32,
    pub(super) height: u32,
    /// Row sums of the vertical pass.
    sums: Vec<u16>,
    /// One reduced row of each plane, before it is interleaved.
    rows: [Vec<u8>; 3],
}

impl Reduced {
    /// Reduces the blocks of `y`, `u` and `v` that `area` (luma pixels)
    /// touches ([`Blocks::of`]), luma by `(fx, fy)` and chroma by half that;
    /// returns the area in the reduced planes' coordinates.
    pub(super) fn reduce(
        &mut self,
        planes: [&Plane<'_>; 3],
        area: Area,
        factors: (u32, u32),
    ) -> Option<Area> {
        let blocks = Blocks::of(planes[0], area, factors)?;
        self.width = blocks.width;
        self.height = blocks.height;
        let wu = blocks.width as usize;
        self.packed.resize(wu * blocks.height as usize * 4, 0);
        for row in &mut self.rows {
            row.resize(wu, 0);
        }
        for (r, out) in self.packed.chunks_exact_mut(wu * 4).enumerate() {
            let [ry, ru, rv] = &mut self.rows;
            blocks.reduce_row(planes, r, &mut self.sums, [ry, ru, rv]);
            interleave4(ry, ru, rv, out);
        }
        Some(blocks.area)
    }
}

/// Where the blocks of a reduction lie: the blocks of an I420 frame that an
/// area (luma pixels) touches, luma by `(fx, fy)` and chroma by half that
/// (with `fy` 1, each chroma row serves the two luma rows it covers).
/// Blocks start at multiples of the factors; a partial block at the
/// frame's right or bottom edge is left out (the area is cut there, by less
/// than one block).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Blocks {
    /// The first block's luma column and row.
    x0: u32,
    y0: u32,
    fx: u32,
    fy: u32,
    /// Blocks per row and rows of blocks: the reduced planes' size.
    pub(super) width: u32,
    pub(super) height: u32,
    /// The area in the reduced planes' coordinates.
    pub(super) area: Area,
}

impl Blocks {
    /// The blocks of `y` (the luma plane) that `area` touches; `None` when
    /// none is whole.
    pub(super) fn of(y: &Plane<'_>, area: Area, (fx, fy): (u32, u32)) -> Option<Self> {
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
        let left = (area.left - f64::from(x0)) / f64::from(fx);
        let top = (area.top - f64::from(y0)) / f64::from(fy);
        Some(Self {
            x0,
            y0,
            fx,
            fy,
            width: w,
            height: h,
            area: Area {
                left,
                top,
                width: (area.width / f64::from(fx)).min(f64::from(w) - left),
                height: (area.height / f64::from(fy)).min(f64::from(h) - top),
            },
        })
    }

    /// Reduced row `r` of each plane into the first `width` bytes of `out`
    /// (Y, U, V).
    pub(super) fn reduce_row(
        &self,
        [y, u, v]: [&Plane<'_>; 3],
        r: usize,
        sums: &mut Vec<u16>,
        out: [&mut [u8]; 3],
    ) {
        let wu = self.width as usize;
        for ((rows, bx), dst) in self.sources([y, u, v], r).into_iter().zip(out) {
            let dst = &mut dst[..wu];
            match bx {
                1 => reduce_row::<1>(&rows, sums, dst),
                2 => reduce_row::<2>(&rows, sums, dst),
                _ => reduce_row::<4>(&rows, sums, dst),
            }
        }
    }

    /// Asks for the source of the first reduced rows to be fetched: the
    /// reduction prefetches further rows as it goes ([`avx2`]), so only the
    /// first few would wait for memory.
    pub(super) fn prefetch_start(&self, planes: [&Plane<'_>; 3]) {
        for r in 0..avx2::AHEAD.min(self.height as usize) {
            for (rows, _) in self.sources(planes, r) {
                avx2::prefetch(&rows);
            }
        }
    }

    /// Where reduced row `r` of each plane comes from, and the plane's
    /// block width.
    fn sources<'a>(&self, [y, u, v]: [&Plane<'a>; 3], r: usize) -> [(Rows<'a>, u32); 3] {
        let wu = self.width as usize;
        // Per plane: the first column, the block's size, and the shift from
        // luma rows to the plane's.
        let (fx, fy) = (self.fx, self.fy);
        let (cx, cy) = (fx / 2, (fy / 2).max(1));
        let luma_row = self.y0 as usize + r * fy as usize;
        [
            (y, self.x0, (fx, fy), 0),
            (u, self.x0 / 2, (cx, cy), 1),
            (v, self.x0 / 2, (cx, cy), 1),
        ]
        .map(|(plane, px, (bx, by), shift)| {
            let row = luma_row >> shift;
            let rows = Rows {
                data: plane.data,
                stride: plane.stride,
                start: row * plane.stride + px as usize,
                len: wu * bx as usize,
                count: by as usize,
            };
            (rows, bx)
        })
    }
}

/// `count` rows of `len` bytes, `stride` apart from `start`.
#[derive(Clone, Copy)]
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

/// One output row of a plane: `FX` x `rows.count` blocks averaged, rounding
/// to nearest, into `out` (one byte per block). On x86 with AVX2 whole
/// blocks of 32 outputs are summed straight from the source bytes
/// ([`avx2`]); the rest (and every CPU without AVX2) in [`reduce_row_sums`].
fn reduce_row<const FX: usize>(rows: &Rows<'_>, sums: &mut Vec<u16>, out: &mut [u8]) {
    let done = avx2::reduce_row::<FX>(rows, out);
    if done < out.len() {
        let rest = Rows {
            start: rows.start + done * FX,
            len: rows.len - done * FX,
            ..*rows
        };
        reduce_row_sums::<FX>(&rest, sums, &mut out[done..]);
    }
}

/// [`reduce_row`] in portable code: the `fy` source rows summed in 16 bits,
/// then `FX` neighbouring sums added and divided by the block's size.
fn reduce_row_sums<const FX: usize>(rows: &Rows<'_>, sums: &mut Vec<u16>, out: &mut [u8]) {
    if FX == 1 && rows.count == 1 {
        // A chroma row of a frame whose rows are kept: taken as it is.
        out.copy_from_slice(&rows.row(0)[..out.len()]);
        return;
    }
    sums.resize(rows.len, 0);
    for (s, &p) in sums.iter_mut().zip(rows.row(0)) {
        *s = u16::from(p);
    }
    for k in 1..rows.count {
        for (s, &p) in sums.iter_mut().zip(rows.row(k)) {
            *s += u16::from(p);
        }
    }
    let (half, shift) = rounding::<FX>(rows.count);
    for (o, s) in out.iter_mut().zip(sums.chunks_exact(FX)) {
        let mut t = 0u16;
        for &v in s {
            t += v;
        }
        *o = ((t + half) >> shift) as u8;
    }
}

/// Half a block's pixel count and its log2: the block is `FX` x `count`
/// pixels, both powers of two (1, 2 or 4).
fn rounding<const FX: usize>(count: usize) -> (u16, u32) {
    let n = (FX * count) as u16;
    (n / 2, n.trailing_zeros())
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use super::{rounding, Rows};
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi16, _mm256_hadd_epi16, _mm256_loadu_si256, _mm256_maddubs_epi16,
        _mm256_packus_epi16, _mm256_permute4x64_epi64, _mm256_set1_epi16, _mm256_set1_epi8,
        _mm256_setzero_si256, _mm256_srl_epi16, _mm256_storeu_si256, _mm_cvtsi32_si128,
        _mm_prefetch, _MM_HINT_T1,
    };

    /// How far ahead the source is prefetched, in rows of blocks.
    pub(super) const AHEAD: usize = 4;

    /// Prefetches every line of `rows` into the second-level cache.
    pub(super) fn prefetch(rows: &Rows<'_>) {
        for k in 0..rows.count {
            let start = rows.start + k * rows.stride;
            prefetch_bytes(&rows.data[start..start + rows.len]);
        }
    }

    fn prefetch_bytes(bytes: &[u8]) {
        for line in (0..bytes.len()).step_by(64) {
            // SAFETY: SSE is part of every x86-64 CPU, and a prefetch reads
            // nothing architecturally (the address is within `bytes`).
            unsafe { _mm_prefetch::<_MM_HINT_T1>(bytes.as_ptr().add(line).cast()) };
        }
    }

    /// Averages whole groups of 32 blocks of `rows` into `out` when the CPU
    /// has AVX2, `FX` is 2 or 4 and the rows are 1, 2 or 4; returns how many
    /// outputs it wrote.
    pub(super) fn reduce_row<const FX: usize>(rows: &Rows<'_>, out: &mut [u8]) -> usize {
        if !(FX == 2 || FX == 4) || !is_x86_feature_detected!("avx2") {
            return 0;
        }
        // SAFETY: AVX2 was detected.
        unsafe {
            match rows.count {
                1 => reduce_avx2::<FX, 1>(rows, out),
                2 => reduce_avx2::<FX, 2>(rows, out),
                4 => reduce_avx2::<FX, 4>(rows, out),
                _ => 0,
            }
        }
    }

    /// Pair sums of the 32 bytes at `at` of each row, summed over the rows:
    /// 16 sums of 2 x `N` pixels (at most 2,040: no overflow in 16 bits).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pair_sums<const N: usize>(src: &[&[u8]; N], at: usize) -> __m256i {
        let ones = _mm256_set1_epi8(1);
        let mut acc = _mm256_setzero_si256();
        for row in src {
            debug_assert!(at + 32 <= row.len());
            // SAFETY: `reduce_avx2` cut every row to whole groups, and `at`
            // is within one (checked above in debug builds).
            let v = unsafe { _mm256_loadu_si256(row.as_ptr().add(at).cast()) };
            acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(v, ones));
        }
        acc
    }

    /// 16 block sums of 2 x N (FX = 2) or 4 x N (FX = 4) pixels, in order,
    /// from `16 * FX` bytes of each row at `at`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn sums16<const FX: usize, const N: usize>(src: &[&[u8]; N], at: usize) -> __m256i {
        if FX == 2 {
            pair_sums(src, at)
        } else {
            // Lane-wise horizontal adds leave the quarters as a0 b0 a1 b1:
            // put them back in order.
            let q = _mm256_hadd_epi16(pair_sums(src, at), pair_sums(src, at + 32));
            _mm256_permute4x64_epi64::<0xD8>(q)
        }
    }

    /// The rows cut to whole groups of 32 blocks once, so the loop's loads
    /// need no bounds checks of their own.
    #[target_feature(enable = "avx2")]
    fn reduce_avx2<const FX: usize, const N: usize>(rows: &Rows<'_>, out: &mut [u8]) -> usize {
        let (half, shift) = rounding::<FX>(N);
        let half = _mm256_set1_epi16(half as i16);
        let shift = _mm_cvtsi32_si128(shift as i32);
        let groups = (out.len() / 32).min(rows.len / (32 * FX));
        let span = groups * 32 * FX;
        let src: [&[u8]; N] = std::array::from_fn(|k| &rows.row(k)[..span]);
        let ahead = AHEAD * N * rows.stride;
        for (g, dst) in out[..groups * 32].chunks_exact_mut(32).enumerate() {
            let at = g * 32 * FX;
            for row in &src {
                for line in (0..32 * FX).step_by(64) {
                    // A hint only: the address (rows further down, which
                    // may be past the plane) is never read by this code.
                    let p = row.as_ptr().wrapping_add(at + line + ahead);
                    _mm_prefetch::<_MM_HINT_T1>(p.cast());
                }
            }
            let lo = _mm256_srl_epi16(_mm256_add_epi16(sums16::<FX, N>(&src, at), half), shift);
            let hi = _mm256_srl_epi16(
                _mm256_add_epi16(sums16::<FX, N>(&src, at + 16 * FX), half),
                shift,
            );
            let packed = _mm256_permute4x64_epi64::<0xD8>(_mm256_packus_epi16(lo, hi));
            // SAFETY: an unaligned store of exactly the 32 bytes borrowed.
            unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), packed) };
        }
        32 * groups
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    pub(super) const AHEAD: usize = 4;

    pub(super) fn prefetch(_: &super::Rows<'_>) {}

    pub(super) fn reduce_row<const FX: usize>(_: &super::Rows<'_>, _: &mut [u8]) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plane of `w` x `h` with `pad` bytes after each row, in a pattern
    /// whose blocks differ.
    fn plane(w: u32, h: u32, pad: usize, seed: usize) -> (Vec<u8>, usize) {
        let stride = w as usize + pad;
        let data = (0..stride * h as usize)
            .map(|i| ((i * 37 + seed * 101) % 256) as u8)
            .collect();
        (data, stride)
    }

    /// The block average by its definition, rounding halves up.
    fn block_mean(p: &Plane<'_>, x: usize, y: usize, (fx, fy): (usize, usize)) -> u8 {
        let mut sum = 0usize;
        for r in y..y + fy {
            for c in x..x + fx {
                sum += usize::from(p.data[r * p.stride + c]);
            }
        }
        ((sum + fx * fy / 2) / (fx * fy)) as u8
    }

    #[test]
    fn columns_are_always_reduced_and_rows_reduced_or_kept_for_a_smaller_output() {
        assert_eq!(factors(1280, 720, 300, 300), Some((4, 2)));
        assert_eq!(factors(1920, 1080, 300, 300), Some((4, 2)));
        assert_eq!(factors(2560, 1440, 300, 300), Some((4, 4)));
        // vtest.avi: 576 rows halved would be 288 < 300; kept (1.92x).
        assert_eq!(factors(768, 576, 300, 300), Some((2, 1)));
        // 400 rows are under 1.5x 300: neither halved nor kept.
        assert_eq!(factors(768, 400, 300, 300), None);
        // Columns that cannot be halved.
        assert_eq!(factors(500, 1200, 300, 300), None);
        // An enlargement (re-ID crops).
        assert_eq!(factors(80, 200, 128, 256), None);
    }

    #[test]
    fn blocks_are_averaged_exactly_and_interleaved() {
        // Widths that leave partial blocks and tails beyond 16 and 64 bytes;
        // odd offsets of the area.
        for (w, h, (fx, fy), area) in [
            (1280, 720, (4, 2), (0.0, 0.0, 1280.0, 720.0)),
            (1920, 1080, (4, 2), (0.0, 0.0, 1920.0, 1080.0)),
            (646, 330, (2, 2), (5.0, 3.0, 620.0, 310.0)),
            (300, 628, (2, 4), (0.0, 9.5, 290.0, 600.0)),
            // Rows kept: each chroma row serves two luma rows, from an odd
            // first row too.
            (768, 576, (2, 1), (0.0, 0.0, 768.0, 576.0)),
            (768, 576, (2, 1), (6.0, 7.0, 700.0, 500.0)),
        ] {
            let (yd, ys) = plane(w, h, 3, 1);
            let (ud, us) = plane(w / 2, h / 2, 5, 2);
            let (vd, vs) = plane(w / 2, h / 2, 5, 3);
            let y = Plane {
                data: &yd,
                stride: ys,
                width: w,
                height: h,
            };
            let u = Plane {
                data: &ud,
                stride: us,
                width: w / 2,
                height: h / 2,
            };
            let v = Plane {
                data: &vd,
                stride: vs,
                width: w / 2,
                height: h / 2,
            };
            let (left, top, width, height) = area;
            let area = Area {
                left,
                top,
                width,
                height,
            };
            let mut reduced = Reduced::default();
            reduced
                .reduce([&y, &u, &v], area, (fx, fy))
                .expect("reduces");
            let (fx, fy) = (fx as usize, fy as usize);
            let (x0, y0) = ((left as usize / fx) * fx, (top as usize / fy) * fy);
            let (rw, rh) = (reduced.width as usize, reduced.height as usize);
            assert!(rw > 0 && rh > 0);
            assert_eq!(reduced.packed.len(), rw * rh * 4);
            for r in 0..rh {
                for c in 0..rw {
                    let got = &reduced.packed[(r * rw + c) * 4..][..4];
                    // The chroma block under the luma block's first row.
                    let (cx, cy) = (x0 / 2 + c * fx / 2, (y0 + r * fy) / 2);
                    let chroma = (fx / 2, (fy / 2).max(1));
                    let want = [
                        block_mean(&y, x0 + c * fx, y0 + r * fy, (fx, fy)),
                        block_mean(&u, cx, cy, chroma),
                        block_mean(&v, cx, cy, chroma),
                        0,
                    ];
                    assert_eq!(got, want, "{w}x{h} by {fx}x{fy}: pixel ({c}, {r})");
                }
            }
        }
    }
}
