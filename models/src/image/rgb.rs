//! YUV to RGB for whole rows of pixels or of 2x2 blocks
//! ([`super::space_to_depth`]'s arrangement), with AVX2 where the CPU has
//! it.
//!
//! The arithmetic is [`YuvToRgb::rgb`]'s, the definition (14-bit
//! coefficients, 32-bit sums): the vector code computes the same bytes
//! (tests), 16 pixels at a time from 16-bit values, every two products of
//! a sum one `vpmaddwd` (luma with a chroma term, or a chroma term with the
//! rounding).
//!
//! A row of 2x2 blocks is an ordinary RGB row of a "virtual" row that takes
//! two pixels from the top row, then the two below them, and so on: the
//! blocks are written from the two rows' planes with one 2-byte unpack per
//! plane and the usual RGB interleave, instead of a row of RGB and then a
//! copy per block.

use super::interleave::interleave3;
use super::yuv::YuvToRgb;

/// Pixels per vector step: 32 (two halves of 16 in 16-bit lanes).
const STEP: usize = 32;

/// `y`, `u`, `v` (one value each per pixel) into packed RGB `out`, as many
/// pixels as `out` holds (3 bytes each).
///
/// # Panics
/// If a plane is shorter than `out.len() / 3`.
pub(super) fn convert_row(c: &YuvToRgb, y: &[u8], u: &[u8], v: &[u8], out: &mut [u8]) {
    let n = out.len() / 3;
    let (y, u, v) = (&y[..n], &u[..n], &v[..n]);
    if n >= STEP && avx2::available() {
        avx2::convert_row(c, [y, u, v], out);
        return;
    }
    row_portable(c, [y, u, v], out);
}

/// [`convert_row`] without AVX2.
fn row_portable(c: &YuvToRgb, [y, u, v]: [&[u8]; 3], out: &mut [u8]) {
    portable(c, y.len(), |i| (y[i], u[i], v[i]), out);
}

/// `n` pixels, pixel `i`'s Y, U and V from `pixel(i)`, into packed RGB
/// `out`: the arithmetic on arrays a chunk at a time (so compilers
/// vectorise it), then the bytes interleaved (SSSE3 shuffles on x86).
fn portable(c: &YuvToRgb, n: usize, pixel: impl Fn(usize) -> (u8, u8, u8), out: &mut [u8]) {
    let (mut r, mut g, mut b) = ([0u8; CHUNK], [0u8; CHUNK], [0u8; CHUNK]);
    for (at, o) in (0..n).step_by(CHUNK).zip(out.chunks_mut(3 * CHUNK)) {
        let m = CHUNK.min(n - at);
        for k in 0..m {
            let (y, u, v) = pixel(at + k);
            [r[k], g[k], b[k]] = c.rgb(y, u, v);
        }
        interleave3(&r[..m], &g[..m], &b[..m], &mut o[..3 * m]);
    }
}

/// Pixels per chunk of the portable conversion.
const CHUNK: usize = 64;

/// Two rows of pixels (`top` and `bottom`: their Y, U and V planes, one
/// value each per pixel) into one row of 2x2 blocks in `out`: block `k` is
/// 12 bytes, the RGB of top pixels `2k`, `2k + 1`, then of bottom pixels
/// `2k`, `2k + 1`. As many blocks as `out` holds.
///
/// # Panics
/// If a plane is shorter than `out.len() / 6` pixels.
pub(super) fn convert_blocks(c: &YuvToRgb, top: [&[u8]; 3], bottom: [&[u8]; 3], out: &mut [u8]) {
    let n = out.len() / 12 * 2;
    let [yt, ut, vt] = top.map(|p| &p[..n]);
    let [yb, ub, vb] = bottom.map(|p| &p[..n]);
    if n >= STEP && avx2::available() {
        avx2::convert_blocks(c, [yt, ut, vt], [yb, ub, vb], out);
        return;
    }
    blocks_portable(c, [[yt, ut, vt], [yb, ub, vb]], out);
}

/// [`convert_blocks`] without AVX2: the virtual row (its pixel `i` is
/// block `i / 4`'s pixel `i % 4`: top left, top right, bottom left, bottom
/// right) converted as a row.
fn blocks_portable(c: &YuvToRgb, rows: [[&[u8]; 3]; 2], out: &mut [u8]) {
    let pixel = |i: usize| {
        let ([y, u, v], x) = (rows[i % 4 / 2], 2 * (i / 4) + i % 2);
        (y[x], u[x], v[x])
    };
    portable(c, 2 * rows[0][0].len(), pixel, out);
}

/// Starts of the vector steps over `n >= STEP` pixels: every whole step,
/// then the last `STEP` pixels if a part is left.
fn steps(n: usize) -> impl Iterator<Item = usize> {
    let whole = n / STEP;
    let tail = (n % STEP != 0).then_some(n - STEP);
    (0..whole).map(|k| k * STEP).chain(tail)
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    use super::{YuvToRgb, STEP};
    use crate::image::interleave::interleave_mask;
    use crate::image::yuv::BITS;
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi32, _mm256_cvtepu8_epi16, _mm256_loadu_si256, _mm256_madd_epi16,
        _mm256_or_si256, _mm256_packs_epi32, _mm256_packus_epi16, _mm256_permute2x128_si256,
        _mm256_permute4x64_epi64, _mm256_set1_epi16, _mm256_set1_epi32, _mm256_setzero_si256,
        _mm256_shuffle_epi8, _mm256_srai_epi32, _mm256_storeu_si256, _mm256_sub_epi16,
        _mm256_unpackhi_epi16, _mm256_unpacklo_epi16, _mm_loadu_si128,
    };

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2")
    }

    /// [`super::convert_row`] for `n >= STEP` pixels (the planes cut to
    /// `n`, `out` to `3 * n` bytes at least): whole steps, then the last
    /// step again overlapping the one before (the pixels both cover come
    /// out the same), so no pixel is left to scalar code.
    pub(super) fn convert_row(c: &YuvToRgb, src: [&[u8]; 3], out: &mut [u8]) {
        let n = src[0].len();
        assert!(n >= STEP && src.iter().all(|p| p.len() == n) && out.len() >= 3 * n);
        // SAFETY: callers check `available()`.
        unsafe { convert_row_avx2(c, src, out) }
    }

    #[target_feature(enable = "avx2")]
    fn convert_row_avx2(c: &YuvToRgb, [y, u, v]: [&[u8]; 3], out: &mut [u8]) {
        let masks = Masks::load();
        let k = Pairs::of(c);
        for at in super::steps(y.len()) {
            let [r, g, b] = rgb32(c, &k, [&y[at..], &u[at..], &v[at..]]);
            store_rgb(&mut out[3 * at..3 * (at + STEP)], &masks, [r, g, b]);
        }
    }

    /// [`super::convert_blocks`] for `n >= STEP` pixels a row (`n` even,
    /// the planes cut to `n`, `out` to `6 * n` bytes at least); `steps`
    /// keeps every start even, so blocks stay whole.
    pub(super) fn convert_blocks(
        c: &YuvToRgb,
        top: [&[u8]; 3],
        bottom: [&[u8]; 3],
        out: &mut [u8],
    ) {
        let n = top[0].len();
        assert!(n >= STEP && n % 2 == 0 && out.len() >= 6 * n);
        assert!(top.iter().chain(&bottom).all(|p| p.len() == n));
        // SAFETY: callers check `available()`.
        unsafe { convert_blocks_avx2(c, top, bottom, out) }
    }

    #[target_feature(enable = "avx2")]
    fn convert_blocks_avx2(c: &YuvToRgb, top: [&[u8]; 3], bottom: [&[u8]; 3], out: &mut [u8]) {
        let masks = Masks::load();
        let k = Pairs::of(c);
        let [yt, ut, vt] = top;
        let [yb, ub, vb] = bottom;
        for at in super::steps(yt.len()) {
            let [tr, tg, tb] = rgb32(c, &k, [&yt[at..], &ut[at..], &vt[at..]]);
            let [br, bg, bb] = rgb32(c, &k, [&yb[at..], &ub[at..], &vb[at..]]);
            let (r0, r1) = pairs(tr, br);
            let (g0, g1) = pairs(tg, bg);
            let (b0, b1) = pairs(tb, bb);
            let o = &mut out[6 * at..6 * (at + STEP)];
            let (first, second) = o.split_at_mut(3 * STEP);
            store_rgb(first, &masks, [r0, g0, b0]);
            store_rgb(second, &masks, [r1, g1, b1]);
        }
    }

    /// Pairs of bytes of `t` and `b` alternated (t0 t1 b0 b1 t2 t3 b2 b3
    /// ...): the first 32 bytes and the second.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pairs(t: __m256i, b: __m256i) -> (__m256i, __m256i) {
        // Within each 128-bit lane: pairs 0-3 and 4-7 of the lane.
        let lo = _mm256_unpacklo_epi16(t, b);
        let hi = _mm256_unpackhi_epi16(t, b);
        (
            _mm256_permute2x128_si256::<0x20>(lo, hi),
            _mm256_permute2x128_si256::<0x31>(lo, hi),
        )
    }

    /// Byte shuffles that put 16 pixels' R, G and B bytes where they go in
    /// the 48 bytes of packed RGB: `at[k][c]` fills bytes `16k..16k + 16`
    /// from channel `c` (0x80: a zero, filled by another channel).
    struct Masks {
        at: [[__m256i; 3]; 3],
    }

    /// [`Masks`] as bytes, the same for both lanes.
    const fn mask_bytes() -> [[[u8; 32]; 3]; 3] {
        let mut m = [[[0x80u8; 32]; 3]; 3];
        let mut k = 0;
        while k < 3 {
            let mut c = 0;
            while c < 3 {
                let lane = interleave_mask(c, k);
                let mut i = 0;
                while i < 32 {
                    m[k][c][i] = lane[i % 16];
                    i += 1;
                }
                c += 1;
            }
            k += 1;
        }
        m
    }

    static MASKS: [[[u8; 32]; 3]; 3] = mask_bytes();

    impl Masks {
        #[inline]
        #[target_feature(enable = "avx2")]
        fn load() -> Self {
            let mut at = [[_mm256_setzero_si256(); 3]; 3];
            for (k, chunk) in MASKS.iter().enumerate() {
                for (c, m) in chunk.iter().enumerate() {
                    // SAFETY: an unaligned load of a 32-byte array.
                    at[k][c] = unsafe { _mm256_loadu_si256(m.as_ptr().cast()) };
                }
            }
            Self { at }
        }
    }

    /// One chunk of 16 bytes per lane of packed RGB, from the channels.
    /// (A function, not a closure: closures do not inherit the target
    /// feature, and their intrinsics would be calls.)
    #[inline]
    #[target_feature(enable = "avx2")]
    fn gather([mr, mg, mb]: &[__m256i; 3], r: __m256i, g: __m256i, b: __m256i) -> __m256i {
        _mm256_or_si256(
            _mm256_or_si256(_mm256_shuffle_epi8(r, *mr), _mm256_shuffle_epi8(g, *mg)),
            _mm256_shuffle_epi8(b, *mb),
        )
    }

    /// 32 pixels' R, G and B bytes packed into the 96 bytes of `out`.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn store_rgb(out: &mut [u8], m: &Masks, [r, g, b]: [__m256i; 3]) {
        assert!(out.len() >= 3 * STEP);
        // Each lane packs its own 16 pixels: chunk k of lane 0 is bytes
        // 16k.. of the first 48, of lane 1 of the second 48.
        let (c0, c1, c2) = (
            gather(&m.at[0], r, g, b),
            gather(&m.at[1], r, g, b),
            gather(&m.at[2], r, g, b),
        );
        let p = out.as_mut_ptr();
        // SAFETY: three unaligned stores of 32 bytes within the 96 checked.
        unsafe {
            _mm256_storeu_si256(p.cast(), _mm256_permute2x128_si256::<0x20>(c0, c1));
            _mm256_storeu_si256(p.add(32).cast(), _mm256_permute2x128_si256::<0x30>(c2, c0));
            _mm256_storeu_si256(p.add(64).cast(), _mm256_permute2x128_si256::<0x31>(c1, c2));
        }
    }

    /// R, G and B of the 32 pixels at the start of the planes, in order,
    /// one byte each.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn rgb32(c: &YuvToRgb, k: &Pairs, [y, u, v]: [&[u8]; 3]) -> [__m256i; 3] {
        let [rl, gl, bl] = rgb16(c, k, [y, u, v], 0);
        let [rh, gh, bh] = rgb16(c, k, [y, u, v], 16);
        // Packing works per 128-bit lane: reorder the quarters. (No
        // closures here: they would not inherit the target feature.)
        [
            _mm256_permute4x64_epi64::<0xD8>(_mm256_packus_epi16(rl, rh)),
            _mm256_permute4x64_epi64::<0xD8>(_mm256_packus_epi16(gl, gh)),
            _mm256_permute4x64_epi64::<0xD8>(_mm256_packus_epi16(bl, bh)),
        ]
    }

    /// The 16 bytes of `p` at `at` as 16-bit lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn load16(p: &[u8], at: usize) -> __m256i {
        assert!(at + 16 <= p.len());
        // SAFETY: checked just above.
        _mm256_cvtepu8_epi16(unsafe { _mm_loadu_si128(p.as_ptr().add(at).cast()) })
    }

    /// [`YuvToRgb`]'s coefficients in pairs of 16 bits, each the two
    /// factors of one `vpmaddwd` (the first multiplies the pair's first
    /// value). Blue's U weight (above 2 at limited range) is split into
    /// 16384 and the rest.
    struct Pairs {
        r: __m256i,
        g_yu: __m256i,
        g_v1: __m256i,
        b_yu: __m256i,
        b_u1: __m256i,
    }

    impl Pairs {
        #[inline]
        #[target_feature(enable = "avx2")]
        fn of(c: &YuvToRgb) -> Self {
            let half = 1 << (BITS - 1);
            let full = 1 << BITS;
            Self {
                r: pair(c.y_mul, c.rv),
                g_yu: pair(c.y_mul, -c.gu),
                g_v1: pair(-c.gv, half),
                b_yu: pair(c.y_mul, c.bu - full),
                b_u1: pair(full, half),
            }
        }
    }

    /// `a` and `b` (both within 16 bits: every matrix's are) as one 32-bit
    /// lane, `a` first, in every lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn pair(a: i32, b: i32) -> __m256i {
        assert!(
            i16::try_from(a).is_ok() && i16::try_from(b).is_ok(),
            "{a} {b}"
        );
        _mm256_set1_epi32((b << 16) | (a & 0xFFFF))
    }

    /// R, G and B of the 16 pixels at `at`, as 16-bit values in order:
    /// [`YuvToRgb::rgb`]'s 32-bit arithmetic exactly, every two products
    /// one `vpmaddwd` of 16-bit values by a [`Pairs`] entry.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn rgb16(c: &YuvToRgb, k: &Pairs, [y, u, v]: [&[u8]; 3], at: usize) -> [__m256i; 3] {
        let y = _mm256_sub_epi16(load16(y, at), _mm256_set1_epi16(c.y_offset as i16));
        let centre = _mm256_set1_epi16(128);
        let u = _mm256_sub_epi16(load16(u, at), centre);
        let v = _mm256_sub_epi16(load16(v, at), centre);
        let one = _mm256_set1_epi16(1);
        let half = _mm256_set1_epi32(1 << (BITS - 1));
        // Per 128-bit lane, pixels 0-3 (lo) and 4-7 (hi) as 32-bit pairs;
        // packing per lane puts them back in order.
        let (yv_lo, yv_hi) = (_mm256_unpacklo_epi16(y, v), _mm256_unpackhi_epi16(y, v));
        let r = _mm256_packs_epi32(
            fixed(_mm256_add_epi32(_mm256_madd_epi16(yv_lo, k.r), half)),
            fixed(_mm256_add_epi32(_mm256_madd_epi16(yv_hi, k.r), half)),
        );
        let (yu_lo, yu_hi) = (_mm256_unpacklo_epi16(y, u), _mm256_unpackhi_epi16(y, u));
        let (v1_lo, v1_hi) = (_mm256_unpacklo_epi16(v, one), _mm256_unpackhi_epi16(v, one));
        let g = _mm256_packs_epi32(
            fixed(sum2(yu_lo, k.g_yu, v1_lo, k.g_v1)),
            fixed(sum2(yu_hi, k.g_yu, v1_hi, k.g_v1)),
        );
        let (u1_lo, u1_hi) = (_mm256_unpacklo_epi16(u, one), _mm256_unpackhi_epi16(u, one));
        let b = _mm256_packs_epi32(
            fixed(sum2(yu_lo, k.b_yu, u1_lo, k.b_u1)),
            fixed(sum2(yu_hi, k.b_yu, u1_hi, k.b_u1)),
        );
        [r, g, b]
    }

    /// `a . ka + b . kb`, pairwise products summed into 32-bit lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn sum2(a: __m256i, ka: __m256i, b: __m256i, kb: __m256i) -> __m256i {
        _mm256_add_epi32(_mm256_madd_epi16(a, ka), _mm256_madd_epi16(b, kb))
    }

    /// A fixed-point sum as a whole value (before the clamp to a byte).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn fixed(x: __m256i) -> __m256i {
        _mm256_srai_epi32::<{ BITS as i32 }>(x)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    use super::YuvToRgb;

    pub(super) fn available() -> bool {
        false
    }

    pub(super) fn convert_row(_: &YuvToRgb, _: [&[u8]; 3], _: &mut [u8]) {}

    pub(super) fn convert_blocks(_: &YuvToRgb, _: [&[u8]; 3], _: [&[u8]; 3], _: &mut [u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{space_to_depth, YuvMatrix};

    fn conversions() -> Vec<YuvToRgb> {
        let matrices = [YuvMatrix::Bt601, YuvMatrix::Bt709, YuvMatrix::Bt2020];
        let mut all = Vec::new();
        for full in [false, true] {
            all.extend(matrices.map(|m| YuvToRgb::new(m, full)));
        }
        all
    }

    /// Planes of `n` pixels covering the byte range, extremes included.
    fn planes(n: usize, seed: usize) -> [Vec<u8>; 3] {
        let extreme = |i: usize, k: usize| match (i + k) % 11 {
            0 => 0,
            1 => 255,
            _ => ((i * (7 + 6 * k) + seed * 31 + k * 97) % 256) as u8,
        };
        [0, 1, 2].map(|k| (0..n).map(|i| extreme(i, k)).collect())
    }

    #[test]
    fn every_pixel_of_a_row_is_the_definition_with_and_without_simd() {
        for c in conversions() {
            for n in [1usize, 31, 32, 33, 63, 64, 157, 300] {
                let [y, u, v] = planes(n, n);
                let want: Vec<u8> = (0..n).flat_map(|i| c.rgb(y[i], u[i], v[i])).collect();
                let mut out = vec![0u8; 3 * n];
                convert_row(&c, &y, &u, &v, &mut out);
                assert_eq!(out, want, "{c:?}, {n} pixels");
                let mut portable = vec![0u8; 3 * n];
                row_portable(&c, [&y, &u, &v], &mut portable);
                assert_eq!(portable, want, "{c:?}, {n} pixels, portable");
            }
        }
    }

    #[test]
    fn the_vector_code_computes_the_definition_over_the_whole_cube() {
        if !avx2::available() {
            return;
        }
        // Every Y against U and V every third level and their extremes:
        // 1.9 million pixels, out-of-range colours included.
        let levels: Vec<u8> = (0..=255u8).step_by(3).chain([1, 254, 255]).collect();
        for c in conversions() {
            for &u in &levels {
                let mut y = Vec::new();
                let mut vs = Vec::new();
                for &v in &levels {
                    y.extend(0..=255u8);
                    vs.extend(std::iter::repeat_n(v, 256));
                }
                let us = vec![u; y.len()];
                let mut out = vec![0u8; 3 * y.len()];
                avx2::convert_row(&c, [&y, &us, &vs], &mut out);
                for (i, px) in out.chunks_exact(3).enumerate() {
                    assert_eq!(
                        px,
                        c.rgb(y[i], u, vs[i]),
                        "{c:?} yuv {} {u} {}",
                        y[i],
                        vs[i]
                    );
                }
            }
        }
    }

    #[test]
    fn the_conversion_rounds_the_exact_matrix_to_within_a_level() {
        // The real-valued conversion, rounded: the fixed point differs
        // from it by one level at most, and only next to a half.
        for (matrix, kr, kb) in [
            (YuvMatrix::Bt601, 0.299, 0.114),
            (YuvMatrix::Bt709, 0.2126, 0.0722),
        ] {
            for full in [false, true] {
                let c = YuvToRgb::new(matrix, full);
                let (ys, cs, off) = if full {
                    (1.0, 1.0, 0.0)
                } else {
                    (255.0 / 219.0, 255.0 / 224.0, 16.0)
                };
                let kg = 1.0 - kr - kb;
                let (mut differ, mut total) = (0u32, 0u32);
                for y in (0..=255u8).step_by(5) {
                    for u in (0..=255u8).step_by(5) {
                        for v in (0..=255u8).step_by(5) {
                            let yy = ys * (f64::from(y) - off);
                            let (uu, vv) =
                                (cs * (f64::from(u) - 128.0), cs * (f64::from(v) - 128.0));
                            let exact = [
                                yy + 2.0 * (1.0 - kr) * vv,
                                yy - 2.0 * (1.0 - kb) * kb / kg * uu
                                    - 2.0 * (1.0 - kr) * kr / kg * vv,
                                yy + 2.0 * (1.0 - kb) * uu,
                            ]
                            .map(|x: f64| x.round().clamp(0.0, 255.0) as i32);
                            let got = c.rgb(y, u, v);
                            for k in 0..3 {
                                let d = (i32::from(got[k]) - exact[k]).abs();
                                assert!(d <= 1, "{matrix:?} full {full} yuv {y} {u} {v}");
                                differ += u32::from(d != 0);
                                total += 1;
                            }
                        }
                    }
                }
                assert!(
                    differ * 100 < total,
                    "{matrix:?}: {differ} of {total} off by one"
                );
            }
        }
    }

    #[test]
    fn blocks_are_the_two_rows_converted_and_rearranged() {
        let c = YuvToRgb::new(YuvMatrix::Bt601, false);
        for n in [2usize, 30, 32, 34, 64, 300] {
            let top = planes(n, 1);
            let bottom = planes(n, 2);
            let mut pixels = vec![0u8; 6 * n];
            let (t, b) = pixels.split_at_mut(3 * n);
            convert_row(&c, &top[0], &top[1], &top[2], t);
            convert_row(&c, &bottom[0], &bottom[1], &bottom[2], b);
            let mut want = vec![0u8; 6 * n];
            space_to_depth(&pixels, n, 2, &mut want).expect("even");
            let [yt, ut, vt] = &top;
            let [yb, ub, vb] = &bottom;
            let mut out = vec![0u8; 6 * n];
            convert_blocks(&c, [yt, ut, vt], [yb, ub, vb], &mut out);
            assert_eq!(out, want, "{n} pixels a row");
            let mut portable = vec![0u8; 6 * n];
            blocks_portable(&c, [[yt, ut, vt], [yb, ub, vb]], &mut portable);
            assert_eq!(portable, want, "{n} pixels a row, portable");
        }
    }
}
