//! vidar-models: the model manifest (`models/manifest.toml`), verified model files,
//! and the one ONNX Runtime session factory of Vidar.
//!
//! It owns everything that touches ONNX Runtime: loading the shared library named
//! by `ORT_DYLIB_PATH` (fetched by `deploy/setup.sh`, never downloaded at run
//! time), choosing execution providers (CPU, CUDA, TensorRT) with CPU fallback,
//! and checking each session against the manifest's tensor spec. It does not
//! pre- or post-process images; `vidar-detectors` and `vidar-reid` do.

pub mod denormal;
pub mod error;
pub mod image;
pub mod manifest;
pub mod runtime;
pub mod store;

pub use denormal::FlushDenormals;
pub use error::ModelError;
pub use image::{
    Filter, FrameResizer, I420Frame, ImageError, Picture, Region, RgbFrame, YuvMatrix, YuvToRgb,
};
pub use manifest::{
    DType, FileEntry, Format, Layout, Manifest, ModelSpec, Precision, Task, TensorSpec,
};
pub use runtime::{
    environment, environment_from, Model, Outputs, ProviderConfig, RuntimeConfig, SessionFactory,
    ORT_DYLIB_ENV,
};
pub use store::{read_npy_f32_2d, ModelStore, MODEL_DIR_ENV};
