//! A decoded video frame as handed to analysis.
//!
//! The pixels stay in the GStreamer buffer they were decoded into (mapped
//! read-only, no copy); dropping the frame returns the buffer to its pool.
//! [`Frame::from_rgb`] builds a frame from owned pixels instead, without
//! GStreamer: for tests, and for sources that are not GStreamer pipelines.

use gstreamer as gst;
use std::fmt;
use std::time::{Duration, Instant, SystemTime};
use vidar_protocol::CameraId;

/// One decoded frame, packed RGB (3 bytes per pixel, rows `stride` bytes apart).
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
    /// Bytes between the starts of two rows.
    pub stride: usize,
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
#[error("{width}x{height} RGB with stride {stride} needs {needed} bytes, got {got}")]
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
    /// The packed RGB pixels, `stride * height` bytes (row padding included).
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
        let needed = stride * height as usize;
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
        assert!(Frame::from_rgb(cam, 0, t, 0, 2, Vec::new()).is_err());
    }
}
