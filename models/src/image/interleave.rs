//! Packing three planes of bytes into one interleaved buffer (`a0 b0 c0 a1
//! b1 c1 ...`) and back: the step between the planar YUV a decoder gives and
//! the packed pixels a three-channel resize or a model reads.
//!
//! Compilers leave these byte gathers and scatters scalar (a store per
//! byte); on x86 with SSSE3 (every x86-64 CPU since 2006 but the first) they
//! are three byte shuffles per 16 pixels here, chosen at run time. Elsewhere
//! (ARM) the scalar loop runs.

/// Packs `a`, `b` and `c` (one byte each per pixel, as many as `out` holds
/// pixels of 3 bytes) into `out`.
///
/// # Panics
/// If a plane is shorter than `out.len() / 3`.
pub(crate) fn interleave3(a: &[u8], b: &[u8], c: &[u8], out: &mut [u8]) {
    let n = out.len() / 3;
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    let done = ssse3::interleave(a, b, c, out);
    for (((o, &a), &b), &c) in out[3 * done..]
        .chunks_exact_mut(3)
        .zip(&a[done..])
        .zip(&b[done..])
        .zip(&c[done..])
    {
        o.copy_from_slice(&[a, b, c]);
    }
}

/// Splits interleaved pixels of 3 bytes (`src`, as many as `a` holds) into
/// the planes `a`, `b` and `c`.
///
/// # Panics
/// If `src` or a plane is shorter than `a`'s pixels need.
pub(crate) fn deinterleave3(src: &[u8], a: &mut [u8], b: &mut [u8], c: &mut [u8]) {
    let n = a.len();
    let (src, b, c) = (&src[..3 * n], &mut b[..n], &mut c[..n]);
    let done = ssse3::deinterleave(src, a, b, c);
    for (((p, a), b), c) in src[3 * done..]
        .chunks_exact(3)
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
const fn interleave_mask(ch: usize, chunk: usize) -> [u8; 16] {
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

/// The shuffle that gathers channel `ch`'s bytes out of input chunk `chunk`
/// into their pixels' positions, zeroing the others.
const fn deinterleave_mask(ch: usize, chunk: usize) -> [u8; 16] {
    let mut m = [0x80u8; 16];
    let mut k = 0;
    while k < 16 {
        let i = 3 * k + ch;
        if i / 16 == chunk {
            m[k] = (i % 16) as u8;
        }
        k += 1;
    }
    m
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod ssse3 {
    use super::{deinterleave_mask, interleave_mask};
    use std::arch::x86_64::{
        __m128i, _mm_loadu_si128, _mm_or_si128, _mm_shuffle_epi8, _mm_storeu_si128,
    };

    /// `INTERLEAVE[chunk][ch]`, `DEINTERLEAVE[ch][chunk]`.
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
    const DEINTERLEAVE: [[[u8; 16]; 3]; 3] = [
        [
            deinterleave_mask(0, 0),
            deinterleave_mask(0, 1),
            deinterleave_mask(0, 2),
        ],
        [
            deinterleave_mask(1, 0),
            deinterleave_mask(1, 1),
            deinterleave_mask(1, 2),
        ],
        [
            deinterleave_mask(2, 0),
            deinterleave_mask(2, 1),
            deinterleave_mask(2, 2),
        ],
    ];

    #[inline(always)]
    fn load(bytes: &[u8; 16]) -> __m128i {
        // SAFETY: an unaligned load of exactly the 16 bytes borrowed.
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    }

    #[inline(always)]
    fn store(bytes: &mut [u8; 16], v: __m128i) {
        // SAFETY: an unaligned store of exactly the 16 bytes borrowed.
        unsafe { _mm_storeu_si128(bytes.as_mut_ptr().cast(), v) }
    }

    #[inline(always)]
    fn block(s: &[u8], k: usize) -> &[u8; 16] {
        s[16 * k..16 * k + 16].try_into().expect("16 bytes")
    }

    /// Interleaves whole blocks of 16 pixels; returns how many pixels.
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
                let at = 48 * k + 16 * j;
                store((&mut out[at..at + 16]).try_into().expect("16 bytes"), v);
            }
        }
        16 * blocks
    }

    /// Deinterleaves whole blocks of 16 pixels; returns how many pixels.
    pub(super) fn deinterleave(src: &[u8], a: &mut [u8], b: &mut [u8], c: &mut [u8]) -> usize {
        if !is_x86_feature_detected!("ssse3") {
            return 0;
        }
        // SAFETY: SSSE3 was detected.
        unsafe { deinterleave_ssse3(src, a, b, c) }
    }

    #[target_feature(enable = "ssse3")]
    fn deinterleave_ssse3(src: &[u8], a: &mut [u8], b: &mut [u8], c: &mut [u8]) -> usize {
        let blocks = a.len() / 16;
        for k in 0..blocks {
            let s = [
                load(block(src, 3 * k)),
                load(block(src, 3 * k + 1)),
                load(block(src, 3 * k + 2)),
            ];
            for (masks, out) in DEINTERLEAVE.iter().zip([&mut *a, &mut *b, &mut *c]) {
                let v = _mm_or_si128(
                    _mm_or_si128(
                        _mm_shuffle_epi8(s[0], load(&masks[0])),
                        _mm_shuffle_epi8(s[1], load(&masks[1])),
                    ),
                    _mm_shuffle_epi8(s[2], load(&masks[2])),
                );
                store(
                    (&mut out[16 * k..16 * k + 16])
                        .try_into()
                        .expect("16 bytes"),
                    v,
                );
            }
        }
        16 * blocks
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod ssse3 {
    pub(super) fn interleave(_: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> usize {
        0
    }

    pub(super) fn deinterleave(_: &[u8], _: &mut [u8], _: &mut [u8], _: &mut [u8]) -> usize {
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
            let (mut x, mut y, mut z) = (vec![0u8; n], vec![0u8; n], vec![0u8; n]);
            deinterleave3(&packed, &mut x, &mut y, &mut z);
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
