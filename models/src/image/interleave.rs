//! Packing three planes of bytes into one interleaved buffer and back: the
//! step between the planar YUV a decoder gives, the packed pixels a resize
//! filters, and the packed RGB a model reads.
//!
//! - [`interleave3`]: `a0 b0 c0 a1 b1 c1 ...` (RGB8 for a model);
//! - [`interleave4`] and [`deinterleave4`]: `a0 b0 c0 0 a1 b1 c1 0 ...`, four
//!   bytes a pixel, which `fast_image_resize` filters faster than three
//!   (docs/benchmarks.md, "The I420 resize, vectorised").
//!
//! Compilers leave these byte gathers and scatters scalar (a store per
//! byte). On x86 they are byte shuffles here: SSSE3 (every x86-64 CPU since
//! 2006 but the first), chosen at run time, or SSE2 unpacks. Elsewhere
//! (ARM) the scalar loops run.

/// Packs `a`, `b` and `c` (one byte each per pixel, as many as `out` holds
/// pixels of 3 bytes) into `out`.
///
/// # Panics
/// If a plane is shorter than `out.len() / 3`.
pub(crate) fn interleave3(a: &[u8], b: &[u8], c: &[u8], out: &mut [u8]) {
    interleave::<3>(a, b, c, out);
}

/// Packs `a`, `b` and `c` into pixels of 4 bytes, the fourth 0 (as many as
/// `out` holds).
///
/// # Panics
/// If a plane is shorter than `out.len() / 4`.
pub(crate) fn interleave4(a: &[u8], b: &[u8], c: &[u8], out: &mut [u8]) {
    interleave::<4>(a, b, c, out);
}

/// Pixels of `C` bytes (3, or 4 with a fourth byte of 0): whole blocks of 16
/// pixels with SIMD, the rest here.
fn interleave<const C: usize>(a: &[u8], b: &[u8], c: &[u8], out: &mut [u8]) {
    let n = out.len() / C;
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    let done = if C == 3 {
        sse::interleave(a, b, c, out)
    } else {
        sse::interleave4(a, b, c, out)
    };
    for (((o, &a), &b), &c) in out[C * done..]
        .chunks_exact_mut(C)
        .zip(&a[done..])
        .zip(&b[done..])
        .zip(&c[done..])
    {
        o[..3].copy_from_slice(&[a, b, c]);
        o[3..].fill(0);
    }
}

/// Splits pixels of 4 bytes (`src`, as many as `a` holds) into the planes
/// `a`, `b` and `c`; the fourth bytes are dropped.
///
/// # Panics
/// If `src` or a plane is shorter than `a`'s pixels need.
pub(crate) fn deinterleave4(src: &[u8], a: &mut [u8], b: &mut [u8], c: &mut [u8]) {
    let n = a.len();
    let (src, b, c) = (&src[..4 * n], &mut b[..n], &mut c[..n]);
    let done = sse::deinterleave4(src, a, b, c);
    for (((p, a), b), c) in src[4 * done..]
        .chunks_exact(4)
        .zip(&mut a[done..])
        .zip(&mut b[done..])
        .zip(&mut c[done..])
    {
        (*a, *b, *c) = (p[0], p[1], p[2]);
    }
}

/// Byte `i` of a 48-byte block of 16 interleaved pixels holds channel
/// `i % 3` of pixel `i / 3`. The shuffle that moves channel `ch`'s bytes
/// into output chunk `chunk` (bytes `16 * chunk..`), zeroing the others
/// (`0x80`).
pub(super) const fn interleave_mask(ch: usize, chunk: usize) -> [u8; 16] {
    let mut m = [0x80u8; 16];
    let mut p = 0;
    while p < 16 {
        let i = 16 * chunk + p;
        if i % 3 == ch {
            m[p] = (i / 3) as u8;
        }
        p += 1;
    }
    m
}

/// Within 16 bytes of 4 pixels of 4 bytes, the shuffle that groups each
/// channel's bytes: `a0 a1 a2 a3 b0 .. b3 c0 .. c3`, then zeros.
const GROUP4: [u8; 16] = [
    0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 0x80, 0x80, 0x80, 0x80,
];

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod sse {
    use super::{interleave_mask, GROUP4};
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_or_si128, _mm_setzero_si128, _mm_shuffle_epi8,
        _mm_storeu_si128, _mm_unpackhi_epi16, _mm_unpackhi_epi32, _mm_unpackhi_epi64,
        _mm_unpackhi_epi8, _mm_unpacklo_epi16, _mm_unpacklo_epi32, _mm_unpacklo_epi64,
        _mm_unpacklo_epi8,
    };

    /// `INTERLEAVE[chunk][ch]`.
    const INTERLEAVE: [[[u8; 16]; 3]; 3] = [
        [
            interleave_mask(0, 0),
            interleave_mask(1, 0),
            interleave_mask(2, 0),
        ],
        [
            interleave_mask(0, 1),
            interleave_mask(1, 1),
            interleave_mask(2, 1),
        ],
        [
            interleave_mask(0, 2),
            interleave_mask(1, 2),
            interleave_mask(2, 2),
        ],
    ];

    #[inline(always)]
    fn load(bytes: &[u8; 16]) -> __m128i {
        // SAFETY: an unaligned load of exactly the 16 bytes borrowed.
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    }

    #[inline(always)]
    fn store(bytes: &mut [u8], v: __m128i) {
        let bytes: &mut [u8; 16] = (&mut bytes[..16]).try_into().expect("16 bytes");
        // SAFETY: an unaligned store of exactly the 16 bytes borrowed.
        unsafe { _mm_storeu_si128(bytes.as_mut_ptr().cast(), v) }
    }

    #[inline(always)]
    fn block(s: &[u8], k: usize) -> &[u8; 16] {
        s[16 * k..16 * k + 16].try_into().expect("16 bytes")
    }

    /// Interleaves whole blocks of 16 pixels into 3 bytes each; returns how
    /// many pixels.
    pub(super) fn interleave(a: &[u8], b: &[u8], c: &[u8], out: &mut [u8]) -> usize {
        if !is_x86_feature_detected!("ssse3") {
            return 0;
        }
        // SAFETY: SSSE3 was detected.
        unsafe { interleave_ssse3(a, b, c, out) }
    }

    #[target_feature(enable = "ssse3")]
    fn interleave_ssse3(a: &[u8], b: &[u8], c: &[u8], out: &mut [u8]) -> usize {
        let blocks = out.len() / 48;
        for k in 0..blocks {
            let src = [load(block(a, k)), load(block(b, k)), load(block(c, k))];
            for (j, masks) in INTERLEAVE.iter().enumerate() {
                let v = _mm_or_si128(
                    _mm_or_si128(
                        _mm_shuffle_epi8(src[0], load(&masks[0])),
                        _mm_shuffle_epi8(src[1], load(&masks[1])),
                    ),
                    _mm_shuffle_epi8(src[2], load(&masks[2])),
                );
                store(&mut out[48 * k + 16 * j..], v);
            }
        }
        16 * blocks
    }

    /// Interleaves whole blocks of 16 pixels into 4 bytes each (SSE2, every
    /// x86-64 CPU); returns how many pixels.
    pub(super) fn interleave4(a: &[u8], b: &[u8], c: &[u8], out: &mut [u8]) -> usize {
        // SAFETY: SSE2 is part of x86-64.
        unsafe { interleave4_sse2(a, b, c, out) }
    }

    #[target_feature(enable = "sse2")]
    fn interleave4_sse2(a: &[u8], b: &[u8], c: &[u8], out: &mut [u8]) -> usize {
        let blocks = out.len() / 64;
        let zero = _mm_setzero_si128();
        for k in 0..blocks {
            let (a, b, c) = (load(block(a, k)), load(block(b, k)), load(block(c, k)));
            let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
            let (c_lo, c_hi) = (_mm_unpacklo_epi8(c, zero), _mm_unpackhi_epi8(c, zero));
            let out = &mut out[64 * k..];
            store(out, _mm_unpacklo_epi16(ab_lo, c_lo));
            store(&mut out[16..], _mm_unpackhi_epi16(ab_lo, c_lo));
            store(&mut out[32..], _mm_unpacklo_epi16(ab_hi, c_hi));
            store(&mut out[48..], _mm_unpackhi_epi16(ab_hi, c_hi));
        }
        16 * blocks
    }

    /// Splits whole blocks of 16 pixels of 4 bytes; returns how many pixels.
    pub(super) fn deinterleave4(src: &[u8], a: &mut [u8], b: &mut [u8], c: &mut [u8]) -> usize {
        if !is_x86_feature_detected!("ssse3") {
            return 0;
        }
        // SAFETY: SSSE3 was detected.
        unsafe { deinterleave4_ssse3(src, a, b, c) }
    }

    #[target_feature(enable = "ssse3")]
    fn deinterleave4_ssse3(src: &[u8], a: &mut [u8], b: &mut [u8], c: &mut [u8]) -> usize {
        let blocks = a.len() / 16;
        let group = load(&GROUP4);
        for k in 0..blocks {
            // Each 16 bytes: a0-3 b0-3 c0-3 (pixels 4q..4q+3), then zeros.
            let [p0, p1, p2, p3] =
                [0, 1, 2, 3].map(|q| _mm_shuffle_epi8(load(block(src, 4 * k + q)), group));
            // a0-7 b0-7 and a8-15 b8-15; c0-7 and c8-15, each then zeros.
            let (lo, hi) = (_mm_unpacklo_epi32(p0, p1), _mm_unpacklo_epi32(p2, p3));
            let (clo, chi) = (_mm_unpackhi_epi32(p0, p1), _mm_unpackhi_epi32(p2, p3));
            store(&mut a[16 * k..], _mm_unpacklo_epi64(lo, hi));
            store(&mut b[16 * k..], _mm_unpackhi_epi64(lo, hi));
            store(&mut c[16 * k..], _mm_unpacklo_epi64(clo, chi));
        }
        16 * blocks
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod sse {
    pub(super) fn interleave(_: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> usize {
        0
    }

    pub(super) fn interleave4(_: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> usize {
        0
    }

    pub(super) fn deinterleave4(_: &[u8], _: &mut [u8], _: &mut [u8], _: &mut [u8]) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_interleave_and_split_back_at_every_length() {
        for n in [0usize, 1, 15, 16, 17, 31, 32, 33, 300, 301] {
            let a: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let b: Vec<u8> = (0..n).map(|i| (i * 11 % 241 + 3) as u8).collect();
            let c: Vec<u8> = (0..n).map(|i| (255 - i % 256) as u8).collect();
            let mut packed = vec![0u8; 3 * n];
            interleave3(&a, &b, &c, &mut packed);
            let expected: Vec<u8> = (0..n).flat_map(|i| [a[i], b[i], c[i]]).collect();
            assert_eq!(packed, expected, "{n} pixels");
            let mut padded = vec![9u8; 4 * n];
            interleave4(&a, &b, &c, &mut padded);
            let expected: Vec<u8> = (0..n).flat_map(|i| [a[i], b[i], c[i], 0]).collect();
            assert_eq!(padded, expected, "{n} pixels of 4 bytes");
            // The fourth bytes are ignored on the way back.
            for p in padded.chunks_exact_mut(4) {
                p[3] = 0xEE;
            }
            let (mut x, mut y, mut z) = (vec![0u8; n], vec![0u8; n], vec![0u8; n]);
            deinterleave4(&padded, &mut x, &mut y, &mut z);
            assert_eq!((x, y, z), (a, b, c), "{n} pixels");
        }
    }

    #[test]
    fn the_masks_move_every_byte_once() {
        for chunk in 0..3 {
            let mut seen = [0; 16];
            for ch in 0..3 {
                for (p, &m) in interleave_mask(ch, chunk).iter().enumerate() {
                    if m != 0x80 {
                        seen[p] += 1;
                        assert_eq!(usize::from(m) * 3 + ch, 16 * chunk + p);
                    }
                }
            }
            assert_eq!(seen, [1; 16], "output chunk {chunk}");
        }
    }
}
