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

pub use ssd::{SsdConfig, SsdDetector, SsdPreparer};
pub use vidar_models::image::{
    Filter, FrameResizer, I420Frame, ImageError, Picture, Region, RgbFrame, YuvMatrix, YuvToRgb,
};
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
    /// A prepared input does not fit this detector (see [`Detector::detect_prepared`]).
    #[error("prepared input does not fit detector {detector}: {why}")]
    Prepared {
        /// The detector.
        detector: String,
        /// What does not fit.
        why: String,
    },
}

/// A detector's input prepared from frames (resized into the model's input
/// tensor), possibly on another thread than the one that runs the model.
/// Buffers are kept between uses: preparing allocates only while growing.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The input tensor of every frame, one after another.
    pub data: Vec<u8>,
    /// Each frame's width and height, to map boxes back to its pixels.
    pub sizes: Vec<(u32, u32)>,
    /// Time spent preparing (reported as the pre-processing stage).
    pub took: Duration,
}

/// Prepares frames into a detector's input. It runs on any thread, so the
/// next frames are prepared while the detector runs the model on the last.
pub trait Preparer: Send {
    /// Fills `into` with the input of `frames` (replacing what it held).
    fn prepare(&mut self, frames: &[Picture<'_>], into: &mut Prepared) -> Result<(), DetectError>;
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
        frames: &[Picture<'_>],
        out: &mut Vec<Vec<Detection>>,
    ) -> Result<(), DetectError>;

    /// Detects persons in every frame, allocating the result.
    fn detect(&mut self, frames: &[Picture<'_>]) -> Result<Vec<Vec<Detection>>, DetectError> {
        let mut out = Vec::with_capacity(frames.len());
        self.detect_into(frames, &mut out)?;
        Ok(out)
    }

    /// Stage timings accumulated since the last call, then reset.
    fn take_timings(&mut self) -> StageTimings;

    /// A preparer of this detector's input, when preparing is separable from
    /// running the model: a caller may then run [`Preparer::prepare`] on
    /// another thread and [`Detector::detect_prepared`] here, instead of
    /// [`Detector::detect_into`]. `None` (the default): only `detect_into`.
    fn preparer(&self) -> Option<Box<dyn Preparer>> {
        None
    }

    /// Detects persons in the frames `input` was prepared from (by this
    /// detector's [`Detector::preparer`]); `out[i]` gets frame `i`'s detections.
    fn detect_prepared(
        &mut self,
        input: &Prepared,
        out: &mut Vec<Vec<Detection>>,
    ) -> Result<(), DetectError> {
        let _ = (input, out);
        Err(DetectError::Prepared {
            detector: self.name().to_string(),
            why: "this detector has no preparer".into(),
        })
    }
}
