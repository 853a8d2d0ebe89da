//! A decoded video frame as handed to analysis.
//!
//! The pixels stay in the GStreamer buffer they were decoded into (mapped
//! read-only, no copy); dropping the frame returns the buffer to its pool.
//! [`Frame::from_rgb`] and [`Frame::from_i420`] build a frame from owned
//! pixels instead, without GStreamer: for tests, and for sources that are not
//! GStreamer pipelines.
//!
//! Pixels are packed RGB or planar I420 ([`Layout`],
//! `IngestConfig::pixel_format`).

use gstreamer as gst;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};
use vidar_protocol::CameraId;

/// The YUV -> RGB matrix of a frame's colorimetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matrix {
    /// ITU-R BT.601 (also for unknown colorimetry, as GStreamer assumes below 720 lines).
    Bt601,
    /// ITU-R BT.709.
    Bt709,
    /// ITU-R BT.2020.
    Bt2020,
}

/// Where an I420 frame's planes lie in its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planes {
    /// Byte offsets of the Y, U and V planes.
    pub offsets: [usize; 3],
    /// Bytes between rows of each plane.
    pub strides: [usize; 3],
    /// The colour matrix.
    pub matrix: Matrix,
    /// Full range (0-255) rather than limited (luma 16-235).
    pub full_range: bool,
}

/// A frame's pixel layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Packed RGB, 3 bytes per pixel, rows `Frame::stride` bytes apart.
    Rgb,
    /// Planar YUV 4:2:0 (`Frame::stride` is the luma plane's).
    I420(Planes),
}

impl Layout {
    /// Bytes a `width` x `height` frame of this layout needs, at least.
    pub fn needed(&self, stride: usize, height: u32) -> usize {
        match self {
            Layout::Rgb => stride * height as usize,
            Layout::I420(p) => {
                let ch = height.div_ceil(2) as usize;
                (0..3)
                    .map(|i| {
                        p.offsets[i] + p.strides[i] * if i == 0 { height as usize } else { ch }
                    })
                    .max()
                    .unwrap_or(0)
            }
        }
    }
}

/// One decoded frame: packed RGB or planar I420 ([`Frame::layout`]).
pub struct Frame {
    /// The camera this frame came from.
    pub camera: CameraId,
    /// Sequence number within the stream, from 0, continuing across reconnects.
    pub seq: u64,
    /// Presentation timestamp within the current connection, when known.
    pub pts: Option<Duration>,
    /// Wall-clock time the frame was captured (for live sources: when its
    /// first packet reached this node; otherwise when it was decoded).
    pub capture_time: SystemTime,
    /// Monotonic time the frame left the decoder, for latency measurements.
    pub decoded_at: Instant,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Bytes between the starts of two rows (of the luma plane, for I420).
    pub stride: usize,
    /// How the pixels are laid out.
    pub layout: Layout,
    pub(crate) data: Pixels,
}

/// Where a frame's pixels live.
pub(crate) enum Pixels {
    /// The decoder's buffer, mapped read-only.
    Gst(gst::MappedBuffer<gst::buffer::Readable>),
    /// Owned bytes.
    Owned(Vec<u8>),
}

/// Why [`Frame::from_rgb`] refused its pixels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{width}x{height} frame with stride {stride} needs {needed} bytes, got {got}")]
pub struct FrameSizeError {
    /// Width asked for.
    pub width: u32,
    /// Height asked for.
    pub height: u32,
    /// Stride asked for.
    pub stride: usize,
    /// Bytes needed.
    pub needed: usize,
    /// Bytes given.
    pub got: usize,
}

impl Frame {
    /// The pixel bytes as [`Frame::layout`] describes them (row padding included).
    pub fn pixels(&self) -> &[u8] {
        match &self.data {
            Pixels::Gst(m) => m.as_slice(),
            Pixels::Owned(v) => v,
        }
    }

    /// A frame of `camera` from owned packed RGB `pixels` (`width * 3` bytes
    /// per row), captured at `capture_time`, decoded now.
    pub fn from_rgb(
        camera: CameraId,
        seq: u64,
        capture_time: SystemTime,
        width: u32,
        height: u32,
        pixels: Vec<u8>,
    ) -> Result<Frame, FrameSizeError> {
        let stride = width as usize * 3;
        Self::owned(
            (camera, seq, capture_time),
            (width, height, stride),
            Layout::Rgb,
            pixels,
        )
    }

    /// A frame of `camera` from owned tightly packed I420 `pixels` (the Y
    /// plane, then U, then V; BT.601, limited range), captured at
    /// `capture_time`, decoded now.
    pub fn from_i420(
        camera: CameraId,
        seq: u64,
        capture_time: SystemTime,
        width: u32,
        height: u32,
        pixels: Vec<u8>,
    ) -> Result<Frame, FrameSizeError> {
        let (w, h) = (width as usize, height as usize);
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let layout = Layout::I420(Planes {
            offsets: [0, w * h, w * h + cw * ch],
            strides: [w, cw, cw],
            matrix: Matrix::Bt601,
            full_range: false,
        });
        Self::owned(
            (camera, seq, capture_time),
            (width, height, w),
            layout,
            pixels,
        )
    }

    /// An owned frame whose `pixels` are exactly what `layout` needs.
    fn owned(
        (camera, seq, capture_time): (CameraId, u64, SystemTime),
        (width, height, stride): (u32, u32, usize),
        layout: Layout,
        pixels: Vec<u8>,
    ) -> Result<Frame, FrameSizeError> {
        let needed = layout.needed(stride, height);
        if width == 0 || height == 0 || pixels.len() != needed {
            return Err(FrameSizeError {
                width,
                height,
                stride,
                needed,
                got: pixels.len(),
            });
        }
        Ok(Frame {
            camera,
            seq,
            pts: None,
            capture_time,
            decoded_at: Instant::now(),
            width,
            height,
            stride,
            layout,
            data: Pixels::Owned(pixels),
        })
    }

    /// The capture time as records carry it (milliseconds since the epoch).
    pub fn captured_ms(&self) -> vidar_protocol::UnixMs {
        vidar_protocol::UnixMs::of(self.capture_time)
    }

    /// Time from capture to now, saturating at zero.
    pub fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.capture_time)
            .unwrap_or_default()
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("camera", &self.camera)
            .field("seq", &self.seq)
            .field("pts", &self.pts)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_from_owned_pixels_check_their_size() {
        let cam = CameraId::new("c").expect("id");
        let t = SystemTime::UNIX_EPOCH;
        let f = Frame::from_rgb(cam.clone(), 7, t, 4, 2, vec![9; 24]).expect("frame");
        assert_eq!((f.width, f.height, f.stride, f.seq), (4, 2, 12, 7));
        assert_eq!(f.pixels().len(), 24);
        let e = Frame::from_rgb(cam.clone(), 0, t, 4, 2, vec![0; 23]).expect_err("short");
        assert_eq!((e.needed, e.got), (24, 23));
        assert!(e.to_string().contains("4x2"), "{e}");
        assert!(Frame::from_rgb(cam.clone(), 0, t, 0, 2, Vec::new()).is_err());
        // I420: 5x3 has 3x2 chroma planes, 15 + 2 * 6 bytes.
        let f = Frame::from_i420(cam.clone(), 0, t, 5, 3, vec![0; 27]).expect("i420");
        let Layout::I420(p) = f.layout else {
            panic!("layout {:?}", f.layout)
        };
        assert_eq!((p.offsets, p.strides), ([0, 15, 21], [5, 3, 3]));
        assert_eq!(f.layout.needed(f.stride, f.height), 27);
        let e = Frame::from_i420(cam, 0, t, 5, 3, vec![0; 26]).expect_err("short");
        assert_eq!((e.needed, e.got), (27, 26));
    }
}
