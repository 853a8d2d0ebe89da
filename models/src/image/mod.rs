//! Borrowed frames of any size and row stride, packed RGB8 or planar I420
//! ([`Picture`]), and resizing them (or regions of them) into a model's RGB8
//! input, reusing every buffer. Shared by the detectors and the re-ID embedders.
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

mod blocks;
mod interleave;
mod reduce;
mod rgb;
mod sampled;
mod separable;
#[cfg(test)]
mod tests;
mod yuv;
pub use blocks::space_to_depth;
use sampled::Sampled;
use yuv::Plane;
pub use yuv::{I420Frame, YuvMatrix, YuvToRgb};

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

/// A borrowed frame in either layout a node reads: packed RGB, or the
/// decoder's planar I420 (see [`yuv`]).
#[derive(Debug, Clone, Copy)]
pub enum Picture<'a> {
    /// Packed RGB8.
    Rgb(RgbFrame<'a>),
    /// Planar YUV 4:2:0.
    I420(I420Frame<'a>),
}

impl<'a> Picture<'a> {
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        match self {
            Picture::Rgb(f) => f.width,
            Picture::I420(f) => f.width(),
        }
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        match self {
            Picture::Rgb(f) => f.height,
            Picture::I420(f) => f.height(),
        }
    }

    /// Packed RGB8 of `region` (the whole frame when `None`; rounded and
    /// clamped as [`FrameResizer::resize`] does) into `out`, which is
    /// cleared first; returns its width and height.
    pub fn region_rgb(&self, region: Option<Region>, out: &mut Vec<u8>) -> (u32, u32) {
        let (x, y, w, h) = pixel_region(self.width(), self.height(), region);
        out.clear();
        match self {
            Picture::Rgb(f) => {
                out.reserve(w as usize * h as usize * 3);
                for row in y..y + h {
                    let start = row as usize * f.stride + x as usize * 3;
                    out.extend_from_slice(&f.data[start..start + w as usize * 3]);
                }
            }
            Picture::I420(f) => f.append_rgb((x, y, w, h), out),
        }
        (w, h)
    }

    /// The whole frame as packed RGB8 (owned: for tests and pictures, not
    /// for the per-frame path).
    pub fn to_rgb(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.region_rgb(None, &mut out);
        out
    }
}

impl<'a> From<RgbFrame<'a>> for Picture<'a> {
    fn from(f: RgbFrame<'a>) -> Self {
        Picture::Rgb(f)
    }
}

impl<'a> From<&RgbFrame<'a>> for Picture<'a> {
    fn from(f: &RgbFrame<'a>) -> Self {
        Picture::Rgb(*f)
    }
}

impl<'a> From<I420Frame<'a>> for Picture<'a> {
    fn from(f: I420Frame<'a>) -> Self {
        Picture::I420(f)
    }
}

impl<'a> From<&Picture<'a>> for Picture<'a> {
    fn from(f: &Picture<'a>) -> Self {
        *f
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

/// How [`FrameResizer::resize_into`] arranges its RGB8 output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrangement {
    /// Packed pixels, row by row.
    Pixels,
    /// 2x2 pixel blocks ([`space_to_depth`]: `nhwc-s2d2` models' input);
    /// the width and height must be even.
    Blocks,
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
/// With [`Filter::Antialiased`], RGB frames whose stride is a multiple of 3
/// are read in place; others are first packed into a buffer kept between
/// calls. [`Filter::Sampled`] reads any stride in place and keeps its
/// coordinate tables between calls of the same geometry. I420 frames are
/// box-reduced and resized together, or resized plane by plane, into
/// buffers kept between calls, and converted to RGB at the destination's
/// size. So steady-state resizing keeps its buffers. (`fast_image_resize`
/// computes its filter's coefficients into new vectors on every call: about
/// 4 % of a 720p resize.)
pub struct FrameResizer {
    resizer: Resizer,
    packed: Vec<u8>,
    alg: ResizeAlg,
    filter: Filter,
    sampled: Sampled,
    /// I420: the chroma planes' tables (the luma plane uses `sampled`).
    sampled_chroma: Sampled,
    /// I420: Y, U and V at the destination's size.
    planes: [Vec<u8>; 3],
    /// I420, antialiased: the planes box-reduced first, when the frame is
    /// at least about twice the destination's width, and twice or 1.5x its
    /// height (`reduce::factors`).
    reduced: reduce::Reduced,
    /// I420, reduced: Y, U, V and 0 interleaved at the destination's size.
    yuv: Vec<u8>,
    /// I420, antialiased: reduced and resized row by row (`separable`),
    /// where its tables apply; `reduced` otherwise.
    separable: separable::Separable,
    /// Pixels resized for [`Arrangement::Blocks`] where they are not
    /// written as blocks row by row.
    block_pixels: Vec<u8>,
}

impl std::fmt::Debug for FrameResizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameResizer")
            .field("cpu_extensions", &self.resizer.cpu_extensions())
            .field("filter", &self.filter)
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
            sampled_chroma: Sampled::default(),
            planes: Default::default(),
            reduced: reduce::Reduced::default(),
            yuv: Vec::new(),
            separable: separable::Separable::default(),
            block_pixels: Vec::new(),
        }
    }

    /// Resizes `region` of `frame` (whole frame when `None`) into `dst`
    /// (`dst_w * dst_h * 3` bytes, RGB8).
    pub fn resize<'f>(
        &mut self,
        frame: impl Into<Picture<'f>>,
        region: Option<Region>,
        dst: &mut [u8],
        dst_w: u32,
        dst_h: u32,
    ) -> Result<(), ImageError> {
        self.resize_into(
            frame.into(),
            region,
            dst,
            (dst_w, dst_h),
            Arrangement::Pixels,
        )
    }

    /// As [`Self::resize`], in `arrangement`. As [`Arrangement::Blocks`], a reduced
    /// I420 frame is written as blocks row by row; other frames are resized
    /// into a buffer kept between calls, then rewritten.
    pub fn resize_into(
        &mut self,
        frame: Picture<'_>,
        region: Option<Region>,
        dst: &mut [u8],
        (dst_w, dst_h): (u32, u32),
        arrangement: Arrangement,
    ) -> Result<(), ImageError> {
        let needed = dst_w as usize * dst_h as usize * 3;
        if dst_w == 0 || dst_h == 0 || dst.len() < needed {
            return Err(ImageError(format!(
                "destination: {dst_w}x{dst_h} RGB8 needs {needed} bytes, got {}",
                dst.len()
            )));
        }
        let dst = &mut dst[..needed];
        let blocks = arrangement == Arrangement::Blocks;
        if blocks && (dst_w % 2 != 0 || dst_h % 2 != 0) {
            return Err(ImageError(format!(
                "destination: {dst_w}x{dst_h}: 2x2 blocks need an even width and height"
            )));
        }
        let px = pixel_region(frame.width(), frame.height(), region);
        if blocks {
            if let Picture::I420(f) = frame {
                if self.resize_separable(&f, px, dst, (dst_w, dst_h), true) {
                    return Ok(());
                }
            }
            let mut pixels = std::mem::take(&mut self.block_pixels);
            pixels.resize(needed, 0);
            let done = self
                .resize_into(
                    frame,
                    region,
                    &mut pixels,
                    (dst_w, dst_h),
                    Arrangement::Pixels,
                )
                .and_then(|()| space_to_depth(&pixels, dst_w as usize, dst_h as usize, dst));
            self.block_pixels = pixels;
            return done;
        }
        match frame {
            Picture::Rgb(f) if self.filter == Filter::Sampled => {
                let plane = Plane {
                    data: f.data,
                    stride: f.stride,
                    width: f.width,
                    height: f.height,
                };
                self.sampled
                    .resize::<3>(&plane, Area::of(px), dst, dst_w, dst_h);
                Ok(())
            }
            Picture::Rgb(f) => self.convolve_rgb(&f, px, dst, dst_w, dst_h),
            Picture::I420(f) => self.resize_i420(&f, px, dst, dst_w, dst_h),
        }
    }

    fn convolve_rgb(
        &mut self,
        frame: &RgbFrame<'_>,
        (x, y, w, h): (u32, u32, u32, u32),
        dst: &mut [u8],
        dst_w: u32,
        dst_h: u32,
    ) -> Result<(), ImageError> {
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
        let view =
            CroppedImage::new(&src, x, y, w, h).map_err(|e| ImageError(format!("crop: {e}")))?;
        let mut out = Image::from_slice_u8(dst_w, dst_h, dst, PixelType::U8x3)
            .map_err(|e| ImageError(format!("destination: {e}")))?;
        let options = ResizeOptions::new().resize_alg(self.alg);
        self.resizer
            .resize(&view, &mut out, &options)
            .map_err(|e| ImageError(format!("resize: {e}")))
    }

    /// Antialiased, from a frame at least about twice the destination's
    /// width, and twice or 1.5x its height: the planes box-reduced to one
    /// size first (`reduce`), then resized together as pixels of 4 bytes.
    /// Otherwise each plane resized to the destination's size (the chroma
    /// planes over the same area of the picture, in their own half-size
    /// coordinates), then converted to RGB row by row.
    fn resize_i420(
        &mut self,
        frame: &I420Frame<'_>,
        px: (u32, u32, u32, u32),
        dst: &mut [u8],
        dst_w: u32,
        dst_h: u32,
    ) -> Result<(), ImageError> {
        let luma = Area::of(px);
        if self.filter == Filter::Antialiased {
            if self.resize_separable(frame, px, dst, (dst_w, dst_h), false) {
                return Ok(());
            }
            let planes = [&frame.y, &frame.u, &frame.v];
            if let Some(f) = reduce::factors(px.2, px.3, dst_w, dst_h) {
                if let Some(area) = self.reduced.reduce(planes, luma, f) {
                    return self.resize_reduced(frame.colour, area, dst, dst_w, dst_h);
                }
            }
        }
        let chroma = Area {
            left: luma.left / 2.0,
            top: luma.top / 2.0,
            width: luma.width / 2.0,
            height: luma.height / 2.0,
        };
        // Chroma at the output's full size too: what resizing the frame's
        // full-size RGB would give (the conversion is linear), and so what
        // the models saw in training, where pictures were decoded to RGB
        // before they were scaled down. (Chroma kept at half the output's
        // size, 4:2:0 at the model's input, lost 0.009 detection F1 on
        // vtest.avi: docs/benchmarks.md.)
        let n = dst_w as usize * dst_h as usize;
        let [py, pu, pv] = &mut self.planes;
        for p in [&mut *py, &mut *pu, &mut *pv] {
            p.resize(n, 0);
        }
        if self.filter == Filter::Sampled {
            self.sampled.resize::<1>(&frame.y, luma, py, dst_w, dst_h);
            self.sampled_chroma
                .resize::<1>(&frame.u, chroma, pu, dst_w, dst_h);
            self.sampled_chroma
                .resize::<1>(&frame.v, chroma, pv, dst_w, dst_h);
        } else {
            for (plane, area, out) in [
                (&frame.y, luma, &mut *py),
                (&frame.u, chroma, &mut *pu),
                (&frame.v, chroma, &mut *pv),
            ] {
                convolve_plane(&mut self.resizer, self.alg, plane, area, out, dst_w, dst_h)?;
            }
        }
        let w = dst_w as usize;
        for (((out, y), u), v) in dst
            .chunks_exact_mut(w * 3)
            .zip(py.chunks_exact(w))
            .zip(pu.chunks_exact(w))
            .zip(pv.chunks_exact(w))
        {
            frame.colour.convert_row(y, u, v, out);
        }
        Ok(())
    }

    /// Antialiased, from a frame that can be box-reduced: reduced and
    /// resized row by row ([`separable`]) where its tables apply;
    /// `false` (nothing written) otherwise.
    fn resize_separable(
        &mut self,
        frame: &I420Frame<'_>,
        px: (u32, u32, u32, u32),
        dst: &mut [u8],
        size: (u32, u32),
        blocks: bool,
    ) -> bool {
        if self.filter != Filter::Antialiased {
            return false;
        }
        let Some(factors) = reduce::factors(px.2, px.3, size.0, size.1) else {
            return false;
        };
        let planes = [&frame.y, &frame.u, &frame.v];
        self.separable.resize(
            planes,
            frame.colour,
            Area::of(px),
            factors,
            dst,
            size,
            blocks,
        )
    }

    /// The antialiased resize of the box-reduced planes (`self.reduced`,
    /// pixels of 4 bytes, of which `area` is resized): one four-channel
    /// convolution (the fourth channel is 0 and not an alpha), then the
    /// conversion to RGB.
    fn resize_reduced(
        &mut self,
        colour: YuvToRgb,
        area: Area,
        dst: &mut [u8],
        dst_w: u32,
        dst_h: u32,
    ) -> Result<(), ImageError> {
        let r = &self.reduced;
        let src = ImageRef::new(r.width, r.height, &r.packed, PixelType::U8x4)
            .map_err(|e| ImageError(e.to_string()))?;
        self.yuv.resize(dst_w as usize * dst_h as usize * 4, 0);
        let mut image = Image::from_slice_u8(dst_w, dst_h, &mut self.yuv, PixelType::U8x4)
            .map_err(|e| ImageError(format!("destination: {e}")))?;
        let options = ResizeOptions::new()
            .resize_alg(self.alg)
            .use_alpha(false)
            .crop(area.left, area.top, area.width, area.height);
        self.resizer
            .resize(&src, &mut image, &options)
            .map_err(|e| ImageError(format!("resize: {e}")))?;
        colour.convert_padded(&self.yuv, dst);
        Ok(())
    }
}

/// Antialiased resize of `area` of one 8-bit plane into `out` (`dst_w * dst_h`).
fn convolve_plane(
    resizer: &mut Resizer,
    alg: ResizeAlg,
    plane: &Plane<'_>,
    area: Area,
    out: &mut [u8],
    dst_w: u32,
    dst_h: u32,
) -> Result<(), ImageError> {
    let bytes = &plane.data[..plane.stride * plane.height as usize];
    let src = ImageRef::new(plane.stride as u32, plane.height, bytes, PixelType::U8)
        .map_err(|e| ImageError(e.to_string()))?;
    // The whole pixels the area touches, as a view the filter clamps at;
    // the area's fractional part as the resize's crop box within it.
    let (cols, rows) = (area.span_x(plane.width), area.span_y(plane.height));
    let view = CroppedImage::new(
        &src,
        cols.0,
        rows.0,
        cols.1 - cols.0 + 1,
        rows.1 - rows.0 + 1,
    )
    .map_err(|e| ImageError(format!("crop: {e}")))?;
    let mut image = Image::from_slice_u8(dst_w, dst_h, out, PixelType::U8)
        .map_err(|e| ImageError(format!("destination: {e}")))?;
    let options = ResizeOptions::new().resize_alg(alg).crop(
        area.left - f64::from(cols.0),
        area.top - f64::from(rows.0),
        area.width,
        area.height,
    );
    resizer
        .resize(&view, &mut image, &options)
        .map_err(|e| ImageError(format!("resize: {e}")))
}

/// `region` of a `fw` x `fh` frame in whole pixels, clamped to the frame and
/// at least one pixel: (x, y, w, h).
fn pixel_region(fw: u32, fh: u32, region: Option<Region>) -> (u32, u32, u32, u32) {
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

/// An area of a plane in its own pixel coordinates (fractional for chroma
/// planes of an odd region).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Area {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl Area {
    fn of((x, y, w, h): (u32, u32, u32, u32)) -> Self {
        Self {
            left: f64::from(x),
            top: f64::from(y),
            width: f64::from(w),
            height: f64::from(h),
        }
    }

    /// First and last whole columns the area touches, within `0..len`.
    fn span_x(&self, len: u32) -> (u32, u32) {
        span(self.left, self.width, len)
    }

    /// First and last whole rows the area touches, within `0..len`.
    fn span_y(&self, len: u32) -> (u32, u32) {
        span(self.top, self.height, len)
    }
}

fn span(start: f64, extent: f64, len: u32) -> (u32, u32) {
    let last = len.saturating_sub(1);
    let first = (start.floor().max(0.0) as u32).min(last);
    let end = ((start + extent).ceil().max(0.0) as u32).clamp(first + 1, len);
    (first, end - 1)
}
