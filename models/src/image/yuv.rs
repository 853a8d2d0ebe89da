//! Planar YUV 4:2:0 frames (I420) as video decoders deliver them, and their
//! conversion to RGB.
//!
//! A node reads camera frames in the decoder's own format
//! (`[cameras] pixel_format`): the full-frame conversion to packed RGB, which
//! cost more than decoding's last step and the detector's resize together,
//! is skipped, and RGB is made only where a model or a picture needs it: for
//! the detector's 300 x 300 input and re-ID's 256 x 128 crops, after the
//! resize (resizing is linear and the YUV -> RGB matrix affine, so resizing
//! the planes and then converting is converting and then resizing, up to
//! rounding), and for a JPEG crop, of its own pixels only.

use super::interleave::deinterleave4;
use super::ImageError;

/// The matrix a frame's YUV values were encoded with (its colorimetry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YuvMatrix {
    /// ITU-R BT.601 (standard definition; GStreamer's default below 720 lines).
    Bt601,
    /// ITU-R BT.709 (high definition).
    Bt709,
    /// ITU-R BT.2020.
    Bt2020,
}

/// Fractional bits of [`YuvToRgb`]'s fixed-point coefficients.
pub(super) const BITS: u32 = 14;

/// Fixed-point YUV -> RGB conversion for one matrix and range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YuvToRgb {
    pub(super) y_offset: i32,
    pub(super) y_mul: i32,
    pub(super) rv: i32,
    pub(super) gu: i32,
    pub(super) gv: i32,
    pub(super) bu: i32,
}

impl YuvToRgb {
    /// The conversion for `matrix`, limited range (luma 16-235, chroma
    /// 16-240, as cameras send) unless `full_range`.
    pub fn new(matrix: YuvMatrix, full_range: bool) -> Self {
        let (kr, kb) = match matrix {
            YuvMatrix::Bt601 => (0.299, 0.114),
            YuvMatrix::Bt709 => (0.2126, 0.0722),
            YuvMatrix::Bt2020 => (0.2627, 0.0593),
        };
        let kg = 1.0 - kr - kb;
        let (ys, cs, y_offset) = if full_range {
            (1.0, 1.0, 0)
        } else {
            (255.0 / 219.0, 255.0 / 224.0, 16)
        };
        let q = |v: f64| (v * f64::from(1u32 << BITS)).round() as i32;
        Self {
            y_offset,
            y_mul: q(ys),
            rv: q(cs * 2.0 * (1.0 - kr)),
            gu: q(cs * 2.0 * (1.0 - kb) * kb / kg),
            gv: q(cs * 2.0 * (1.0 - kr) * kr / kg),
            bu: q(cs * 2.0 * (1.0 - kb)),
        }
    }

    /// One pixel: the definition every row and block conversion computes
    /// byte for byte (`super::rgb`).
    #[inline(always)]
    pub fn rgb(&self, y: u8, u: u8, v: u8) -> [u8; 3] {
        let y = self.luma(y);
        let (u, v) = (i32::from(u) - 128, i32::from(v) - 128);
        [
            clamp(y + self.rv * v),
            clamp(y - self.gu * u - self.gv * v),
            clamp(y + self.bu * u),
        ]
    }

    /// Luma in fixed point, offset and scaled to 0-255, rounding included.
    #[inline(always)]
    fn luma(&self, y: u8) -> i32 {
        (i32::from(y) - self.y_offset) * self.y_mul + (1 << (BITS - 1))
    }

    /// A row of pixels from its planar `y`, `u` and `v` (one value each per
    /// pixel) into packed RGB `out` (3 bytes per pixel, as many as `out`
    /// holds); the same results as [`Self::rgb`].
    pub fn convert_row(&self, y: &[u8], u: &[u8], v: &[u8], out: &mut [u8]) {
        super::rgb::convert_row(self, y, u, v, out);
    }

    /// Interleaved YUV pixels of 4 bytes (Y, U, V, anything) into packed
    /// RGB `out`, in place of [`Self::convert_row`] for an interleaved source.
    pub(crate) fn convert_padded(&self, yuv: &[u8], out: &mut [u8]) {
        const N: usize = 64;
        let (mut y, mut u, mut v) = ([0u8; N], [0u8; N], [0u8; N]);
        for (i, o) in yuv.chunks(4 * N).zip(out.chunks_mut(3 * N)) {
            let n = (i.len() / 4).min(o.len() / 3);
            let (y, u, v) = (&mut y[..n], &mut u[..n], &mut v[..n]);
            deinterleave4(&i[..4 * n], y, u, v);
            super::rgb::convert_row(self, y, u, v, &mut o[..3 * n]);
        }
    }

    /// Luma scaled to 0-255 (what a grey image of the RGB would hold, up to
    /// rounding).
    #[inline]
    pub fn grey(&self, y: u8) -> u8 {
        clamp(self.luma(y))
    }
}

/// A fixed-point value as a byte.
#[inline(always)]
fn clamp(x: i32) -> u8 {
    (x >> BITS).clamp(0, 255) as u8
}

impl Default for YuvToRgb {
    /// BT.601, limited range.
    fn default() -> Self {
        Self::new(YuvMatrix::Bt601, false)
    }
}

/// One plane of a planar frame: `height` rows of `stride` bytes, the first
/// `width` of each used.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plane<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) stride: usize,
    pub(crate) width: u32,
    pub(crate) height: u32,
}

impl<'a> Plane<'a> {
    fn new(
        name: &str,
        data: &'a [u8],
        stride: usize,
        width: u32,
        height: u32,
    ) -> Result<Self, ImageError> {
        let needed = stride * height as usize;
        if stride < width as usize || data.len() < needed {
            return Err(ImageError(format!(
                "{name} plane: {width}x{height} with stride {stride} needs {needed} bytes, got {}",
                data.len()
            )));
        }
        Ok(Self {
            data,
            stride,
            width,
            height,
        })
    }
}

/// A borrowed I420 frame: a full-resolution luma plane and two chroma planes
/// of half the width and height (rounded up), each with its own stride, and
/// the conversion its colorimetry asks for.
#[derive(Debug, Clone, Copy)]
pub struct I420Frame<'a> {
    pub(crate) y: Plane<'a>,
    pub(crate) u: Plane<'a>,
    pub(crate) v: Plane<'a>,
    pub(crate) colour: YuvToRgb,
}

impl<'a> I420Frame<'a> {
    /// Checks that each plane holds its rows in full (`stride * rows` bytes).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        width: u32,
        height: u32,
        y: &'a [u8],
        y_stride: usize,
        u: &'a [u8],
        v: &'a [u8],
        uv_stride: usize,
        colour: YuvToRgb,
    ) -> Result<Self, ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError(format!("{width}x{height} I420 frame is empty")));
        }
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        Ok(Self {
            y: Plane::new("Y", y, y_stride, width, height)?,
            u: Plane::new("U", u, uv_stride, cw, ch)?,
            v: Plane::new("V", v, uv_stride, cw, ch)?,
            colour,
        })
    }

    /// A tightly packed frame in one buffer: the Y plane, then U, then V,
    /// each row as wide as its plane (as `RgbFrame::packed` for RGB).
    pub fn packed(
        width: u32,
        height: u32,
        data: &'a [u8],
        colour: YuvToRgb,
    ) -> Result<Self, ImageError> {
        let (w, cw, ch) = (
            width as usize,
            width.div_ceil(2) as usize,
            height.div_ceil(2) as usize,
        );
        let y_len = w * height as usize;
        let offsets = [0, y_len, y_len + cw * ch];
        Self::from_buffer(width, height, data, offsets, [w, cw, cw], colour)
    }

    /// A frame from one buffer holding the three planes at `offsets`, with
    /// `strides` (as a decoder's buffer and its video info describe it).
    pub fn from_buffer(
        width: u32,
        height: u32,
        data: &'a [u8],
        offsets: [usize; 3],
        strides: [usize; 3],
        colour: YuvToRgb,
    ) -> Result<Self, ImageError> {
        if strides[1] != strides[2] {
            return Err(ImageError(format!(
                "I420 chroma strides differ: U {} and V {}",
                strides[1], strides[2]
            )));
        }
        let plane = |i: usize| {
            data.get(offsets[i]..).ok_or_else(|| {
                ImageError(format!(
                    "I420 plane {i} at offset {} is past the {}-byte buffer",
                    offsets[i],
                    data.len()
                ))
            })
        };
        Self::new(
            width,
            height,
            plane(0)?,
            strides[0],
            plane(1)?,
            plane(2)?,
            strides[1],
            colour,
        )
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.y.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.y.height
    }

    /// The conversion to RGB.
    pub fn colour(&self) -> YuvToRgb {
        self.colour
    }

    /// The luma plane and its stride.
    pub fn luma(&self) -> (&'a [u8], usize) {
        (self.y.data, self.y.stride)
    }

    /// Packed RGB of the pixels `(x, y, w, h)` (inside the frame), appended
    /// to `out`; each pixel with the chroma sample it lies in.
    pub(crate) fn append_rgb(&self, (x, y, w, h): (u32, u32, u32, u32), out: &mut Vec<u8>) {
        out.reserve(w as usize * h as usize * 3);
        for row in y..y + h {
            let luma = &self.y.data[row as usize * self.y.stride..][..(x + w) as usize];
            let cy = (row / 2) as usize;
            let u = &self.u.data[cy * self.u.stride..][..self.u.width as usize];
            let v = &self.v.data[cy * self.v.stride..][..self.v.width as usize];
            for col in x..x + w {
                let c = (col / 2) as usize;
                out.extend_from_slice(&self.colour.rgb(luma[col as usize], u[c], v[c]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RGB -> YUV in floating point, limited range: the inverse of the conversion.
    fn yuv_of(rgb: [u8; 3], kr: f64, kb: f64) -> [u8; 3] {
        let [r, g, b] = rgb.map(f64::from);
        let y = kr * r + (1.0 - kr - kb) * g + kb * b;
        let u = (b - y) / (2.0 * (1.0 - kb));
        let v = (r - y) / (2.0 * (1.0 - kr));
        let q = |x: f64| x.round().clamp(0.0, 255.0) as u8;
        [
            q(16.0 + y * 219.0 / 255.0),
            q(128.0 + u * 224.0 / 255.0),
            q(128.0 + v * 224.0 / 255.0),
        ]
    }

    #[test]
    fn conversion_inverts_the_encoding_within_rounding() {
        for (matrix, kr, kb) in [
            (YuvMatrix::Bt601, 0.299, 0.114),
            (YuvMatrix::Bt709, 0.2126, 0.0722),
            (YuvMatrix::Bt2020, 0.2627, 0.0593),
        ] {
            let c = YuvToRgb::new(matrix, false);
            for rgb in [
                [0u8, 0, 0],
                [255, 255, 255],
                [200, 30, 60],
                [17, 130, 250],
                [90, 90, 90],
            ] {
                let [y, u, v] = yuv_of(rgb, kr, kb);
                let back = c.rgb(y, u, v);
                for k in 0..3 {
                    // Quantising Y, U and V to 8 bits loses up to about 2 levels in RGB.
                    assert!(
                        (i32::from(back[k]) - i32::from(rgb[k])).abs() <= 3,
                        "{matrix:?} {rgb:?} -> {:?} -> {back:?}",
                        [y, u, v]
                    );
                }
            }
            assert_eq!(c.grey(16), 0);
            assert_eq!(c.grey(235), 255);
        }
        let full = YuvToRgb::new(YuvMatrix::Bt601, true);
        assert_eq!(full.rgb(77, 128, 128), [77, 77, 77]);
        assert_eq!(full.grey(77), 77);
    }

    #[test]
    fn rows_convert_as_single_pixels_do() {
        let c = YuvToRgb::new(YuvMatrix::Bt709, false);
        // A remainder alone, one block of 64, two blocks and a remainder
        // (the remainder of each SIMD interleave inside a block too).
        for n in [37usize, 64, 157] {
            let y: Vec<u8> = (0..n).map(|i| (i * 7 % 256) as u8).collect();
            let u: Vec<u8> = (0..n).map(|i| (255 - i * 11 % 256) as u8).collect();
            let v: Vec<u8> = (0..n).map(|i| (i * 29 % 256) as u8).collect();
            let mut out = vec![0u8; n * 3];
            c.convert_row(&y, &u, &v, &mut out);
            for (i, px) in out.chunks(3).enumerate() {
                assert_eq!(px, c.rgb(y[i], u[i], v[i]), "{n} pixels: pixel {i}");
            }
            // The same pixels interleaved 4 bytes each, the fourth ignored.
            let padded: Vec<u8> = (0..n).flat_map(|i| [y[i], u[i], v[i], 0xA5]).collect();
            let mut from_padded = vec![0u8; n * 3];
            c.convert_padded(&padded, &mut from_padded);
            assert_eq!(from_padded, out, "{n} pixels of 4 bytes");
        }
    }

    #[test]
    fn short_planes_and_unequal_chroma_strides_are_refused_and_named() {
        let data = vec![0u8; 4 * 4 + 2 * 2 * 2];
        let c = YuvToRgb::default();
        assert!(I420Frame::from_buffer(4, 4, &data, [0, 16, 20], [4, 2, 2], c).is_ok());
        let e = I420Frame::from_buffer(4, 4, &data[..23], [0, 16, 20], [4, 2, 2], c)
            .expect_err("short V");
        assert!(e.to_string().contains("V plane"), "{e}");
        let e = I420Frame::from_buffer(4, 4, &data, [0, 16, 30], [4, 2, 2], c).expect_err("offset");
        assert!(e.to_string().contains("offset 30"), "{e}");
        let e =
            I420Frame::from_buffer(4, 4, &data, [0, 16, 20], [4, 2, 3], c).expect_err("strides");
        assert!(e.to_string().contains("differ"), "{e}");
        // Odd sizes round the chroma planes up.
        let odd = vec![0u8; 5 * 3 + 3 * 2 * 2];
        let f = I420Frame::from_buffer(5, 3, &odd, [0, 15, 21], [5, 3, 3], c).expect("odd");
        assert_eq!((f.u.width, f.u.height), (3, 2));
    }
}
