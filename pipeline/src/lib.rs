//! Vidar ingest: camera streams into Rust frames, reliably.
//!
//! This crate owns everything GStreamer: RTSP/file/synthetic sources, decoder
//! choice (hardware first, software fallback), conversion to packed RGB, the
//! bounded drop-oldest frame queue, reconnection with backoff, per-stream
//! state and counters, and the `vidar-camera` test RTSP server. Nothing else in
//! Vidar links GStreamer. It does not analyse frames.

pub mod build;
pub mod camera;
pub mod composite;
pub mod config;
pub mod error;
pub mod frame;
pub mod ingest;
pub mod queue;
pub mod source;
pub mod synthetic;

pub use config::{DecoderChoice, IngestConfig, PixelFormat, QueuePolicy, Transport};
pub use error::{IngestError, SourceError};
pub use frame::{Frame, FrameSizeError, Layout, Matrix, Planes};
pub use ingest::Ingest;
pub use queue::DropOldestQueue;
pub use source::Source;
pub use synthetic::{Scene, SceneSpec};

/// Initialises GStreamer (idempotent), with a clear error when it is missing.
pub fn init() -> Result<(), IngestError> {
    gstreamer::init().map_err(|e| IngestError::Init(e.to_string()))
}
