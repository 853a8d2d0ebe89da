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

mod yuv;
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
/// resized plane by plane into buffers kept between calls and converted to
/// RGB at the destination's size. So steady-state resizing allocates
/// nothing either way.
pub struct FrameResizer {
    resizer: Resizer,
    packed: Vec<u8>,
    alg: ResizeAlg,
    filter: Filter,
    sampled: Sampled,
    /// I420: the chroma planes' tables (the luma plane uses `sampled`).
    sampled_chroma: Sampled,
    /// I420: Y at the destination's size, U and V at half of it.
    planes: [Vec<u8>; 3],
    /// I420: one output row's chroma, upsampled.
    rows: ChromaRows,
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
            rows: ChromaRows::default(),
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
        let frame = frame.into();
        let needed = dst_w as usize * dst_h as usize * 3;
        if dst_w == 0 || dst_h == 0 || dst.len() < needed {
            return Err(ImageError(format!(
                "destination: {dst_w}x{dst_h} RGB8 needs {needed} bytes, got {}",
                dst.len()
            )));
        }
        let dst = &mut dst[..needed];
        let px = pixel_region(frame.width(), frame.height(), region);
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

    /// Each plane resized to the destination's size (the chroma planes over
    /// the same area of the picture, in their own half-size coordinates),
    /// then converted to RGB pixel by pixel.
    fn resize_i420(
        &mut self,
        frame: &I420Frame<'_>,
        px: (u32, u32, u32, u32),
        dst: &mut [u8],
        dst_w: u32,
        dst_h: u32,
    ) -> Result<(), ImageError> {
        let luma = Area::of(px);
        let chroma = Area {
            left: luma.left / 2.0,
            top: luma.top / 2.0,
            width: luma.width / 2.0,
            height: luma.height / 2.0,
        };
        // Chroma at half the output's size: 4:2:0 at the model's input, as
        // the JPEG pictures the models were trained on hold it (and a
        // quarter of the filtering).
        let (cw, ch) = (dst_w.div_ceil(2), dst_h.div_ceil(2));
        let [py, pu, pv] = &mut self.planes;
        py.resize(dst_w as usize * dst_h as usize, 0);
        pu.resize(cw as usize * ch as usize, 0);
        pv.resize(cw as usize * ch as usize, 0);
        if self.filter == Filter::Sampled {
            self.sampled.resize::<1>(&frame.y, luma, py, dst_w, dst_h);
            self.sampled_chroma
                .resize::<1>(&frame.u, chroma, pu, cw, ch);
            self.sampled_chroma
                .resize::<1>(&frame.v, chroma, pv, cw, ch);
        } else {
            let alg = self.alg;
            convolve_plane(&mut self.resizer, alg, &frame.y, luma, py, dst_w, dst_h)?;
            convolve_plane(&mut self.resizer, alg, &frame.u, chroma, pu, cw, ch)?;
            convolve_plane(&mut self.resizer, alg, &frame.v, chroma, pv, cw, ch)?;
        }
        let rows = &mut self.rows;
        let (w, cw) = (dst_w as usize, cw as usize);
        rows.resize(w, cw);
        for (j, (out, y)) in dst
            .chunks_exact_mut(w * 3)
            .zip(py.chunks_exact(w))
            .enumerate()
        {
            rows.upsample(pu, cw, ch as usize, j, true);
            rows.upsample(pv, cw, ch as usize, j, false);
            frame.colour.convert_row(y, &rows.u, &rows.v, out);
        }
        Ok(())
    }
}

/// Chroma rows of one output row, upsampled from half size as libjpeg's
/// "fancy" upsampling does (a triangle filter: each output sample 3/4 of the
/// nearest chroma sample and 1/4 of the next nearest, across and down).
#[derive(Debug, Default)]
struct ChromaRows {
    /// Vertically blended half-width row.
    half: Vec<u16>,
    /// Full-width U and V.
    u: Vec<u8>,
    v: Vec<u8>,
}

impl ChromaRows {
    fn resize(&mut self, w: usize, cw: usize) {
        self.half.resize(cw, 0);
        self.u.resize(w, 0);
        self.v.resize(w, 0);
    }

    /// Output row `j`'s U (or V) from the `cw` x `ch` half-size `plane`.
    fn upsample(&mut self, plane: &[u8], cw: usize, ch: usize, j: usize, u: bool) {
        let out = if u { &mut self.u } else { &mut self.v };
        upsample_row(&mut self.half, out, plane, (cw, ch), j);
    }
}

/// [`ChromaRows::upsample`], compiled for AVX2 too (chosen at run time).
#[allow(unsafe_code)]
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn upsample_row(
    half: &mut [u16],
    out: &mut [u8],
    plane: &[u8],
    (cw, ch): (usize, usize),
    j: usize,
) {
    let m = (j / 2).min(ch - 1);
    // Even rows lie a quarter above their chroma row, odd ones a quarter below.
    let n = if j % 2 == 0 {
        m.saturating_sub(1)
    } else {
        (m + 1).min(ch - 1)
    };
    let (near, far) = (&plane[m * cw..][..cw], &plane[n * cw..][..cw]);
    // Down: 4 x the value (3 near + 1 far), kept unrounded.
    for ((h, &a), &b) in half.iter_mut().zip(near).zip(far) {
        *h = 3 * u16::from(a) + u16::from(b);
    }
    let h = &half[..cw];
    // Across: 16 x the value, rounded once. Output pixels 2k and 2k + 1
    // lie a quarter left and right of chroma sample k.
    let prev = std::iter::once(h[0]).chain(h[..cw - 1].iter().copied());
    let next = h[1..].iter().copied().chain(std::iter::once(h[cw - 1]));
    let mut pairs = out.chunks_exact_mut(2);
    for (((o, &c), p), n) in (&mut pairs).zip(h).zip(prev).zip(next) {
        o[0] = ((3 * c + p + 8) >> 4) as u8;
        o[1] = ((3 * c + n + 8) >> 4) as u8;
    }
    // An odd width's last pixel: the left one of a pair.
    if let [o] = pairs.into_remainder() {
        let (c, p) = (h[cw - 1], h[cw.saturating_sub(2)]);
        *o = ((3 * c + p + 8) >> 4) as u8;
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
struct Sampled {
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
    fn resize<const C: usize>(
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
                RgbFrame::packed(w, h, &packed).expect("frame"),
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
                .resize(frame, None, &mut got, 30, 20)
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
            .resize(frame, Some(region), &mut out, 8, 8)
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
                .resize(frame, region, &mut got, dw, dh)
                .expect("resize");
            let want = sampled_reference(&frame, pixel_region(w, h, region), dw, dh);
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
        resizer.resize(frame, None, &mut out, 7, 5).expect("resize");
        assert!(out.chunks(3).all(|p| p == [17, 130, 250]), "{out:?}");
        let e = resizer
            .resize(frame, None, &mut out[1..], 7, 5)
            .expect_err("short");
        assert!(e.to_string().contains("7x5"), "{e}");
    }

    #[test]
    fn short_buffers_are_refused() {
        assert!(RgbFrame::new(10, 10, 30, &[0u8; 299]).is_err());
        assert!(RgbFrame::new(10, 10, 29, &[0u8; 300]).is_err());
        assert!(RgbFrame::new(10, 10, 32, &[0u8; 32 * 9 + 30]).is_ok());
    }

    /// An I420 frame of `w` x `h` with padded strides: luma from `luma(x, y)`,
    /// chroma from `chroma(cx, cy)` (U, V), garbage in the padding.
    fn i420(
        w: u32,
        h: u32,
        luma: impl Fn(u32, u32) -> u8,
        chroma: impl Fn(u32, u32) -> (u8, u8),
    ) -> (Vec<u8>, [usize; 3], [usize; 3]) {
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let (ys, cs) = (w as usize + 7, cw as usize + 5);
        let offsets = [0, ys * h as usize, ys * h as usize + cs * ch as usize];
        let mut data = vec![251u8; offsets[2] + cs * ch as usize];
        for y in 0..h {
            for x in 0..w {
                data[y as usize * ys + x as usize] = luma(x, y);
            }
        }
        for y in 0..ch {
            for x in 0..cw {
                let (u, v) = chroma(x, y);
                data[offsets[1] + y as usize * cs + x as usize] = u;
                data[offsets[2] + y as usize * cs + x as usize] = v;
            }
        }
        (data, offsets, [ys, cs, cs])
    }

    #[test]
    fn i420_resizes_as_its_rgb_conversion_does_when_chroma_is_flat() {
        // With flat chroma (and no channel clamped at 0 or 255) the
        // conversion is affine in luma alone, so resizing the planes and then
        // converting equals converting and then resizing, up to rounding.
        let colour = YuvToRgb::new(YuvMatrix::Bt601, false);
        for (w, h) in [(96u32, 64u32), (77, 51)] {
            let (data, offsets, strides) = i420(
                w,
                h,
                |x, y| (40 + (x * 7 + y * 13) % 180) as u8,
                |_, _| (120, 136),
            );
            let frame =
                I420Frame::from_buffer(w, h, &data, offsets, strides, colour).expect("i420");
            let rgb = Picture::from(frame).to_rgb();
            let packed = RgbFrame::packed(w, h, &rgb).expect("rgb");
            for filter in [Filter::Antialiased, Filter::Sampled] {
                let mut resizer = FrameResizer::with_filter(filter);
                for region in [
                    None,
                    Some(Region {
                        x: 11.0,
                        y: 7.0,
                        w: 33.0,
                        h: 29.0,
                    }),
                ] {
                    let (mut want, mut got) = (vec![0u8; 30 * 20 * 3], vec![0u8; 30 * 20 * 3]);
                    resizer
                        .resize(packed, region, &mut want, 30, 20)
                        .expect("rgb resize");
                    resizer
                        .resize(frame, region, &mut got, 30, 20)
                        .expect("i420 resize");
                    let worst = got
                        .iter()
                        .zip(&want)
                        .map(|(&g, &r)| (i32::from(g) - i32::from(r)).abs())
                        .max()
                        .unwrap_or(0);
                    assert!(worst <= 2, "{w}x{h} {filter:?} {region:?}: off by {worst}");
                }
            }
        }
    }

    #[test]
    fn i420_regions_read_their_own_chroma_at_odd_edges_too() {
        // Left half red, right half blue, split at column 40 (chroma column 20).
        let colour = YuvToRgb::new(YuvMatrix::Bt601, true);
        let (red, blue) = ([76u8, 85, 255], [29u8, 255, 107]);
        let (data, offsets, strides) = i420(
            80,
            40,
            |x, _| if x < 40 { red[0] } else { blue[0] },
            |cx, _| {
                let c = if cx < 20 { red } else { blue };
                (c[1], c[2])
            },
        );
        let frame = I420Frame::from_buffer(80, 40, &data, offsets, strides, colour).expect("i420");
        let want_red = colour.rgb(red[0], red[1], red[2]);
        let want_blue = colour.rgb(blue[0], blue[1], blue[2]);
        for filter in [Filter::Antialiased, Filter::Sampled] {
            let mut resizer = FrameResizer::with_filter(filter);
            for (x, want) in [
                (40.0, want_blue),
                (41.0, want_blue),
                (0.0, want_red),
                (1.0, want_red),
            ] {
                let mut out = vec![0u8; 8 * 8 * 3];
                let region = Region {
                    x,
                    y: 1.0,
                    w: 37.0,
                    h: 37.0,
                };
                resizer
                    .resize(frame, Some(region), &mut out, 8, 8)
                    .expect("resize");
                for p in out.chunks(3) {
                    for k in 0..3 {
                        assert!(
                            (i32::from(p[k]) - i32::from(want[k])).abs() <= 1,
                            "{filter:?} x {x}: {p:?}, want {want:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn region_rgb_copies_the_rounded_region() {
        let data: Vec<u8> = (0..6 * 4 * 3).map(|i| i as u8).collect();
        let frame = RgbFrame::packed(6, 4, &data).expect("frame");
        let mut out = vec![9u8; 3];
        let region = Region {
            x: 1.4,
            y: 2.0,
            w: 2.0,
            h: 5.0,
        };
        let size = Picture::from(frame).region_rgb(Some(region), &mut out);
        assert_eq!(size, (2, 2));
        assert_eq!(out, [39, 40, 41, 42, 43, 44, 57, 58, 59, 60, 61, 62]);
    }
}
