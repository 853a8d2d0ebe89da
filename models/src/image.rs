//! Borrowed RGB8 frames of any size and row stride, and resizing them (or regions
//! of them) into a model's input, reusing every buffer. Shared by the detectors
//! and the re-ID embedders.
//!
//! Two filters ([`Filter`]): antialiased bilinear convolution with SIMD
//! (`fast_image_resize`, as Pillow's `resize(BILINEAR)`), and point-sampled
//! bilinear interpolation (as OpenCV's `INTER_LINEAR` and TensorFlow's
//! `resize_bilinear`, which the SSD was trained and calibrated with), written
//! here because no crate we found does it without a convolution pass over
//! every source row: it reads only the two source rows around each output
//! row, in about half the convolution's time on camera frames
//! (docs/benchmarks.md, "Pre-processing").

use fast_image_resize::images::{CroppedImage, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// A frame or region that cannot be read or resized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad image: {0}")]
pub struct ImageError(pub String);

/// A borrowed packed RGB8 image: `height` rows of `stride` bytes, the first `width * 3` of each used.
#[derive(Debug, Clone, Copy)]
pub struct RgbFrame<'a> {
    width: u32,
    height: u32,
    stride: usize,
    data: &'a [u8],
}

impl<'a> RgbFrame<'a> {
    /// Checks that `data` holds `height` rows of `stride` bytes (the last row may stop at `width * 3`).
    pub fn new(width: u32, height: u32, stride: usize, data: &'a [u8]) -> Result<Self, ImageError> {
        let row = width as usize * 3;
        let needed = if height == 0 {
            0
        } else {
            stride * (height as usize - 1) + row
        };
        if width == 0 || height == 0 || stride < row || data.len() < needed {
            return Err(ImageError(format!(
                "{width}x{height} RGB8 with stride {stride} needs {needed} bytes, got {}",
                data.len()
            )));
        }
        Ok(Self {
            width,
            height,
            stride,
            data,
        })
    }

    /// A tightly packed frame (`stride = width * 3`).
    pub fn packed(width: u32, height: u32, data: &'a [u8]) -> Result<Self, ImageError> {
        Self::new(width, height, width as usize * 3, data)
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes per row.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// The pixel bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}

/// A region of a frame in pixels (rounded to whole pixels and clamped to the frame when used).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

/// How [`FrameResizer`] filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// Bilinear convolution whose support grows with the downscale factor, as
    /// Pillow's `Image.resize(BILINEAR)`: every source pixel contributes.
    #[default]
    Antialiased,
    /// Bilinear interpolation between the four source pixels around each
    /// output pixel's centre, as OpenCV's `cv2.resize(INTER_LINEAR)` and
    /// TensorFlow's `resize_bilinear` (half-pixel centres, edges clamped),
    /// in 11-bit fixed point: what the TF Object Detection API's SSDs were
    /// trained with.
    Sampled,
}

/// Resizes frames (or regions of them) into RGB8 destination slices.
///
/// With [`Filter::Antialiased`], frames whose stride is a multiple of 3 are
/// read in place; others are first packed into a buffer kept between calls.
/// [`Filter::Sampled`] reads any stride in place and keeps its coordinate
/// tables between calls of the same geometry, so steady-state resizing
/// allocates nothing either way.
pub struct FrameResizer {
    resizer: Resizer,
    packed: Vec<u8>,
    alg: ResizeAlg,
    filter: Filter,
    sampled: Sampled,
}

impl std::fmt::Debug for FrameResizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameResizer")
            .field("cpu_extensions", &self.resizer.cpu_extensions())
            .field("packed_capacity", &self.packed.capacity())
            .finish()
    }
}

impl Default for FrameResizer {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameResizer {
    /// An antialiasing resizer using the best SIMD extension of this CPU.
    pub fn new() -> Self {
        Self::with_filter(Filter::Antialiased)
    }

    /// A resizer with `filter`.
    pub fn with_filter(filter: Filter) -> Self {
        Self {
            resizer: Resizer::new(),
            packed: Vec::new(),
            alg: ResizeAlg::Convolution(FilterType::Bilinear),
            filter,
            sampled: Sampled::default(),
        }
    }

    /// Resizes `region` of `frame` (whole frame when `None`) into `dst` (`dst_w * dst_h * 3` bytes, RGB8).
    pub fn resize(
        &mut self,
        frame: &RgbFrame<'_>,
        region: Option<Region>,
        dst: &mut [u8],
        dst_w: u32,
        dst_h: u32,
    ) -> Result<(), ImageError> {
        let needed = dst_w as usize * dst_h as usize * 3;
        if dst_w == 0 || dst_h == 0 || dst.len() < needed {
            return Err(ImageError(format!(
                "destination: {dst_w}x{dst_h} RGB8 needs {needed} bytes, got {}",
                dst.len()
            )));
        }
        if self.filter == Filter::Sampled {
            let region = pixel_region(frame, region);
            self.sampled
                .resize(frame, region, &mut dst[..needed], dst_w, dst_h);
            return Ok(());
        }
        let row = frame.width as usize * 3;
        let (src_w, buffer): (u32, &[u8]) = if frame.stride == row {
            (frame.width, frame.data)
        } else if frame.stride % 3 == 0 && frame.data.len() >= frame.stride * frame.height as usize
        {
            // Treat the padding as extra columns and crop them away.
            ((frame.stride / 3) as u32, frame.data)
        } else {
            self.packed.clear();
            for y in 0..frame.height as usize {
                let start = y * frame.stride;
                self.packed
                    .extend_from_slice(&frame.data[start..start + row]);
            }
            (frame.width, &self.packed)
        };
        let src = ImageRef::new(src_w, frame.height, buffer, PixelType::U8x3)
            .map_err(|e| ImageError(e.to_string()))?;
        // Integer crop as a view: the filter clamps at the crop's edges (like
        // cropping first, then resizing) and never reads row padding.
        let (x, y, w, h) = pixel_region(frame, region);
        let view =
            CroppedImage::new(&src, x, y, w, h).map_err(|e| ImageError(format!("crop: {e}")))?;
        let mut out = Image::from_slice_u8(dst_w, dst_h, dst, PixelType::U8x3)
            .map_err(|e| ImageError(format!("destination: {e}")))?;
        let options = ResizeOptions::new().resize_alg(self.alg);
        self.resizer
            .resize(&view, &mut out, &options)
            .map_err(|e| ImageError(format!("resize: {e}")))
    }
}

/// `region` of `frame` in whole pixels, clamped to the frame and at least one pixel: (x, y, w, h).
fn pixel_region(frame: &RgbFrame<'_>, region: Option<Region>) -> (u32, u32, u32, u32) {
    let (fw, fh) = (frame.width, frame.height);
    match region {
        None => (0, 0, fw, fh),
        Some(r) => {
            let x0 = (r.x.round().max(0.0) as u32).min(fw - 1);
            let y0 = (r.y.round().max(0.0) as u32).min(fh - 1);
            let x1 = ((r.x + r.w).round().max(0.0) as u32).clamp(x0 + 1, fw);
            let y1 = ((r.y + r.h).round().max(0.0) as u32).clamp(y0 + 1, fh);
            (x0, y0, x1 - x0, y1 - y0)
        }
    }
}

/// Fixed-point weights: 11 bits, as OpenCV's `INTER_RESIZE_COEF_BITS`.
const COEF_BITS: u32 = 11;
const COEF_ONE: u32 = 1 << COEF_BITS;
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
    /// Source `start..start + len` onto `out` outputs. Half-pixel centres;
    /// beyond the first and last source centres the edge pixel is used, as
    /// OpenCV does.
    fn build(&mut self, start: u32, len: u32, out: u32) {
        self.first.clear();
        self.second.clear();
        self.weight.clear();
        let scale = f64::from(len) / f64::from(out);
        let last = len - 1;
        for d in 0..out {
            let s = (f64::from(d) + 0.5) * scale - 0.5;
            let (i, frac) = if s <= 0.0 {
                (0, 0.0)
            } else if s >= f64::from(last) {
                (last, 0.0)
            } else {
                let base = s.floor();
                (base as u32, s - base)
            };
            self.first.push(start + i);
            self.second.push(start + (i + 1).min(last));
            self.weight
                .push((((1.0 - frac) * f64::from(COEF_ONE)).round() as u32).min(COEF_ONE));
        }
    }
}

/// A source region (x, y, w, h) and an output size (w, h).
type Geometry = ((u32, u32, u32, u32), (u32, u32));

/// Point-sampled bilinear resizing: coordinate tables for the last geometry,
/// and one row of vertically interpolated values.
#[derive(Debug, Default)]
struct Sampled {
    /// The source region (x, y, w, h) and output size the tables are for.
    geometry: Option<Geometry>,
    xs: Axis,
    ys: Axis,
    blended: Vec<u16>,
}

impl Sampled {
    /// Vertical pass first, over the region's whole rows (contiguous, so it
    /// vectorises), then the horizontal pass on that one row.
    fn resize(
        &mut self,
        frame: &RgbFrame<'_>,
        region: (u32, u32, u32, u32),
        dst: &mut [u8],
        dst_w: u32,
        dst_h: u32,
    ) {
        let (x, y, w, h) = region;
        if self.geometry != Some((region, (dst_w, dst_h))) {
            // Columns relative to the region: the blended row starts at its left edge.
            self.xs.build(0, w, dst_w);
            self.ys.build(y, h, dst_h);
            // Rows blend in 16 bits (so the pass vectorises 16 lanes wide): 8-bit weights.
            for wy in &mut self.ys.weight {
                *wy = (*wy + (1 << (COEF_BITS - ROW_BITS - 1))) >> (COEF_BITS - ROW_BITS);
            }
            self.blended.resize(w as usize * 3, 0);
            self.geometry = Some((region, (dst_w, dst_h)));
        }
        let span = x as usize * 3..(x + w) as usize * 3;
        let row_at = |sy: u32| {
            let start = sy as usize * frame.stride;
            &frame.data[start + span.start..start + span.end]
        };
        let shift = COEF_BITS + ROW_BITS;
        let round = 1u32 << (shift - 1);
        for (((out, &sy0), &sy1), &wy) in dst
            .chunks_exact_mut(dst_w as usize * 3)
            .zip(&self.ys.first)
            .zip(&self.ys.second)
            .zip(&self.ys.weight)
        {
            let (wa, wb) = (wy as u16, (ROW_ONE - wy) as u16);
            for ((v, &a), &b) in self.blended.iter_mut().zip(row_at(sy0)).zip(row_at(sy1)) {
                *v = u16::from(a) * wa + u16::from(b) * wb;
            }
            let row = &self.blended[..];
            for (((o, &sx0), &sx1), &wx) in out
                .chunks_exact_mut(3)
                .zip(&self.xs.first)
                .zip(&self.xs.second)
                .zip(&self.xs.weight)
            {
                let (p, q) = (sx0 as usize * 3, sx1 as usize * 3);
                let (a, b) = (&row[p..p + 3], &row[q..q + 3]);
                let w1 = COEF_ONE - wx;
                for c in 0..3 {
                    let v = u32::from(a[c]) * wx + u32::from(b[c]) * w1;
                    o[c] = ((v + round) >> shift) as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32, stride: usize) -> Vec<u8> {
        let mut data = vec![0u8; stride * h as usize];
        for y in 0..h as usize {
            for x in 0..w as usize {
                let p = y * stride + x * 3;
                data[p] = (x * 255 / w as usize) as u8;
                data[p + 1] = (y * 255 / h as usize) as u8;
                data[p + 2] = 77;
            }
            // Garbage in the padding must not leak into the output.
            for b in &mut data[y * stride + w as usize * 3..(y + 1) * stride] {
                *b = 255;
            }
        }
        data
    }

    #[test]
    fn padded_strides_resize_like_packed_frames() {
        let (w, h) = (64u32, 48u32);
        let packed = gradient(w, h, w as usize * 3);
        let mut resizer = FrameResizer::new();
        let mut want = vec![0u8; 30 * 20 * 3];
        resizer
            .resize(
                &RgbFrame::packed(w, h, &packed).expect("frame"),
                None,
                &mut want,
                30,
                20,
            )
            .expect("resize");
        for stride in [w as usize * 3 + 3, w as usize * 3 + 4, w as usize * 3 + 64] {
            let data = gradient(w, h, stride);
            let frame = RgbFrame::new(w, h, stride, &data).expect("frame");
            let mut got = vec![0u8; 30 * 20 * 3];
            resizer
                .resize(&frame, None, &mut got, 30, 20)
                .expect("resize");
            assert_eq!(got, want, "stride {stride}");
        }
    }

    #[test]
    fn region_crop_reads_the_region() {
        let (w, h) = (40u32, 40u32);
        let mut data = vec![0u8; (w * h * 3) as usize];
        // Right half red, left half black.
        for y in 0..h as usize {
            for x in 20..w as usize {
                data[(y * w as usize + x) * 3] = 200;
            }
        }
        let frame = RgbFrame::packed(w, h, &data).expect("frame");
        let mut out = vec![0u8; 8 * 8 * 3];
        let region = Region {
            x: 20.0,
            y: 0.0,
            w: 20.0,
            h: 40.0,
        };
        FrameResizer::new()
            .resize(&frame, Some(region), &mut out, 8, 8)
            .expect("resize");
        assert!(out.chunks(3).all(|p| p[0] == 200 && p[1] == 0));
    }

    /// Point-sampled bilinear in floating point: the definition `Filter::Sampled` computes in fixed point.
    fn sampled_reference(
        frame: &RgbFrame<'_>,
        (x, y, w, h): (u32, u32, u32, u32),
        dst_w: u32,
        dst_h: u32,
    ) -> Vec<f64> {
        let taps = |d: u32, len: u32, out: u32| {
            let s = (f64::from(d) + 0.5) * f64::from(len) / f64::from(out) - 0.5;
            let s = s.clamp(0.0, f64::from(len - 1));
            let i = s.floor() as u32;
            (i, (i + 1).min(len - 1), s - f64::from(i))
        };
        let px = |sx: u32, sy: u32, c: usize| {
            f64::from(frame.data[(y + sy) as usize * frame.stride + (x + sx) as usize * 3 + c])
        };
        let mut out = Vec::new();
        for dy in 0..dst_h {
            let (y0, y1, fy) = taps(dy, h, dst_h);
            for dx in 0..dst_w {
                let (x0, x1, fx) = taps(dx, w, dst_w);
                for c in 0..3 {
                    let top = px(x0, y0, c) * (1.0 - fx) + px(x1, y0, c) * fx;
                    let bottom = px(x0, y1, c) * (1.0 - fx) + px(x1, y1, c) * fx;
                    out.push(top * (1.0 - fy) + bottom * fy);
                }
            }
        }
        out
    }

    #[test]
    fn sampled_bilinear_matches_its_definition_within_one_level() {
        let noise = |h: u32, stride: usize| {
            let mut data = vec![0u8; stride * h as usize];
            let mut state = 0x2545_f491_u32;
            for b in &mut data {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *b = (state >> 24) as u8;
            }
            data
        };
        let mut resizer = FrameResizer::with_filter(Filter::Sampled);
        // Downscales as cameras into detectors, odd ratios, upscales, one-pixel
        // edges, padded strides and regions, reusing one resizer throughout.
        let cases = [
            (192, 108, 192 * 3, None, 30, 30),
            (77, 51, 77 * 3 + 5, None, 30, 20),
            (40, 30, 40 * 3, None, 64, 48),
            (1, 9, 3, None, 4, 4),
            (9, 1, 27, None, 4, 4),
            (
                64,
                48,
                64 * 3 + 64,
                Some(Region {
                    x: 10.0,
                    y: 5.0,
                    w: 21.0,
                    h: 33.0,
                }),
                16,
                32,
            ),
            (192, 108, 192 * 3, None, 30, 30),
        ];
        for (w, h, stride, region, dw, dh) in cases {
            let data = noise(h, stride);
            let frame = RgbFrame::new(w, h, stride, &data).expect("frame");
            let mut got = vec![0u8; (dw * dh * 3) as usize];
            resizer
                .resize(&frame, region, &mut got, dw, dh)
                .expect("resize");
            let want = sampled_reference(&frame, pixel_region(&frame, region), dw, dh);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(&g, &r)| (f64::from(g) - r).abs())
                .fold(0.0, f64::max);
            assert!(
                worst <= 1.0,
                "{w}x{h} -> {dw}x{dh} {region:?}: off by {worst}"
            );
        }
    }

    #[test]
    fn sampled_bilinear_keeps_flat_colours_and_refuses_a_short_destination() {
        let data = [17u8, 130, 250].repeat(50 * 40);
        let frame = RgbFrame::packed(50, 40, &data).expect("frame");
        let mut resizer = FrameResizer::with_filter(Filter::Sampled);
        let mut out = vec![0u8; 7 * 5 * 3];
        resizer
            .resize(&frame, None, &mut out, 7, 5)
            .expect("resize");
        assert!(out.chunks(3).all(|p| p == [17, 130, 250]), "{out:?}");
        let e = resizer
            .resize(&frame, None, &mut out[1..], 7, 5)
            .expect_err("short");
        assert!(e.to_string().contains("7x5"), "{e}");
    }

    #[test]
    fn short_buffers_are_refused() {
        assert!(RgbFrame::new(10, 10, 30, &[0u8; 299]).is_err());
        assert!(RgbFrame::new(10, 10, 29, &[0u8; 300]).is_err());
        assert!(RgbFrame::new(10, 10, 32, &[0u8; 32 * 9 + 30]).is_ok());
    }
}
