//! A decoded video frame as handed to analysis.
//!
//! The pixels stay in the GStreamer buffer they were decoded into (mapped
//! read-only, no copy); dropping the frame returns the buffer to its pool.

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
    pub(crate) data: gst::MappedBuffer<gst::buffer::Readable>,
}

impl Frame {
    /// The packed RGB pixels, `stride * height` bytes (row padding included).
    pub fn pixels(&self) -> &[u8] {
        self.data.as_slice()
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
