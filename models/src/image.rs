//! Borrowed RGB8 frames of any size and row stride, and resizing them (or regions
//! of them) into a model's input with SIMD (`fast_image_resize`), reusing every
//! buffer. Shared by the detectors and the re-ID embedders.

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

/// Resizes frames (or regions of them) into RGB8 destination slices.
///
/// Bilinear convolution, the same filter as Pillow's `Image.resize(BILINEAR)`,
/// which the Python reference fixtures use. Frames whose stride is a multiple
/// of 3 are read in place; others are first packed into a buffer kept between
/// calls, so steady-state resizing allocates nothing.
pub struct FrameResizer {
    resizer: Resizer,
    packed: Vec<u8>,
    alg: ResizeAlg,
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
    /// A resizer using the best SIMD extension of this CPU.
    pub fn new() -> Self {
        Self {
            resizer: Resizer::new(),
            packed: Vec::new(),
            alg: ResizeAlg::Convolution(FilterType::Bilinear),
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
        let (fw, fh) = (frame.width, frame.height);
        let (x, y, w, h) = match region {
            None => (0, 0, fw, fh),
            Some(r) => {
                let x0 = (r.x.round().max(0.0) as u32).min(fw - 1);
                let y0 = (r.y.round().max(0.0) as u32).min(fh - 1);
                let x1 = ((r.x + r.w).round().max(0.0) as u32).clamp(x0 + 1, fw);
                let y1 = ((r.y + r.h).round().max(0.0) as u32).clamp(y0 + 1, fh);
                (x0, y0, x1 - x0, y1 - y0)
            }
        };
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

    #[test]
    fn short_buffers_are_refused() {
        assert!(RgbFrame::new(10, 10, 30, &[0u8; 299]).is_err());
        assert!(RgbFrame::new(10, 10, 29, &[0u8; 300]).is_err());
        assert!(RgbFrame::new(10, 10, 32, &[0u8; 32 * 9 + 30]).is_ok());
    }
}
