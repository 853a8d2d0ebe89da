//! vidar-detectors: the [`Detector`] trait and the SSD-MobileNet-V2 person
//! detector in both model forms, with SIMD pre-processing into reused buffers,
//! batching of frames from several cameras into one run, decoding and NMS.
//!
//! Sessions come from `vidar-models` (the only crate that touches ONNX Runtime);
//! this crate never loads files other than through it and never blocks on I/O.
//! Detection runs on a dedicated inference thread, not on an async executor.

pub mod bench;
pub mod postprocess;
pub mod ssd;

use std::time::Duration;

pub use ssd::{SsdConfig, SsdDetector};
pub use vidar_models::image::{FrameResizer, ImageError, Region, RgbFrame};
pub use vidar_protocol::BBox;

/// One detected object in the pixel coordinates of the frame it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Box in frame pixels, clipped to the frame.
    pub bbox: BBox,
    /// Model score, 0..1.
    pub score: f32,
    /// Model class index (the manifest's `person_class` for persons).
    pub class_id: u32,
}

/// Time spent per stage, summed over runs since the last [`Detector::take_timings`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimings {
    /// Resizing frames into the input tensor.
    pub preprocess: Duration,
    /// ONNX Runtime `run` (including output tensor hand-over).
    pub inference: Duration,
    /// Decoding, thresholds, NMS.
    pub postprocess: Duration,
    /// Frames processed.
    pub frames: usize,
    /// Inference runs.
    pub runs: usize,
}

/// Errors of detectors.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] vidar_models::ModelError),
    /// A frame's size, stride or buffer does not add up.
    #[error(transparent)]
    Image(#[from] vidar_models::ImageError),
    /// The detector config is invalid; every problem is listed.
    #[error("detector config is invalid: {0}")]
    Config(#[from] vidar_config::Invalid),
}

/// A person detector: frames in (any size, one per camera), detections out.
pub trait Detector: Send {
    /// The model's manifest name.
    fn name(&self) -> &str;

    /// Frames per inference run; callers batch up to this many cameras together.
    fn max_batch(&self) -> usize;

    /// Detects persons in every frame; `out[i]` gets frame `i`'s detections (vectors reused).
    fn detect_into(
        &mut self,
        frames: &[RgbFrame<'_>],
        out: &mut Vec<Vec<Detection>>,
    ) -> Result<(), DetectError>;

    /// Detects persons in every frame, allocating the result.
    fn detect(&mut self, frames: &[RgbFrame<'_>]) -> Result<Vec<Vec<Detection>>, DetectError> {
        let mut out = Vec::with_capacity(frames.len());
        self.detect_into(frames, &mut out)?;
        Ok(out)
    }

    /// Stage timings accumulated since the last call, then reset.
    fn take_timings(&mut self) -> StageTimings;
}
